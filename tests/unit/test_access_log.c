/* test_access_log.c — the worker's access-log writer on a real ring: records reach the file in
 * order, whole; a pipe gets whole lines of at most PIPE_BUF bytes per write; a reopened log takes
 * the records from then on while the old descriptor gets everything written before; a log that
 * cannot keep up drops (and counts) records instead of blocking the worker; what is left at the
 * end is written out. */
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>

#include "access_log.h"
#include "ring_fixture.h"

static struct loop L;

static void setup(void)
{
	fx_loop_open(&L);
}

static void teardown(void)
{
	loop_destroy(&L);
}

TestSuite(access_log, .init = setup, .fini = teardown);

static struct access_record record(unsigned i, char *path, size_t cap)
{
	int n = snprintf(path, cap, "/r/%u", i);
	return (struct access_record){
		.client = "127.0.0.1:1", .method = "GET", .method_len = 3, .path = path,
		.path_len = (uint32_t)n, .status = 200, .reason = "ok", .upstream_ms = -1,
	};
}

static void write_records(struct access_log *al, unsigned from, unsigned n)
{
	char path[32];
	for (unsigned i = from; i < from + n; i++) {
		struct access_record r = record(i, path, sizeof path);
		access_log_write(al, &r);
	}
}

/* Reads fd (a file from its start, or a pipe until it is empty) into buf; returns the bytes. */
static size_t slurp(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	ssize_t got;
	while (n < cap && (got = read(fd, buf + n, cap - n)) > 0)
		n += (size_t)got;
	return n;
}

/* The paths of the records in text, which must be whole lines, checked against from.. in order. */
static unsigned check_lines(const char *text, size_t len, unsigned from)
{
	unsigned seen = 0;
	const char *p = text, *end = text + len;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		cr_assert_not_null(nl, "a line without its end: %.60s", p);
		char want[48];
		snprintf(want, sizeof want, "\"path\":\"/r/%u\"", from + seen);
		cr_assert(memmem(p, (size_t)(nl - p), want, strlen(want)), "line %u: %.*s", seen,
			  (int)(nl - p), p);
		seen++;
		p = nl + 1;
	}
	return seen;
}

Test(access_log, records_reach_a_file_whole_and_in_order)
{
	char name[] = "/tmp/ringway-alog-XXXXXX";
	int fd = mkstemp(name);
	cr_assert_geq(fd, 0);
	unlink(name);
	struct access_log al;
	access_log_init(&al, &L, dup(fd));
	cr_assert_not(al.whole_lines, "a file is written in big writes");
	for (unsigned round = 0; round < 5; round++) {
		write_records(&al, round * 2000, 2000); /* more than one buffer each round */
		access_log_flush(&al);
		cr_assert(FX_RUN_UNTIL_DO(&L, access_log_idle(&al), access_log_flush(&al)));
	}
	cr_assert_eq(al.dropped, 0);
	access_log_close(&al);
	static char text[8 << 20];
	size_t n = (size_t)pread(fd, text, sizeof text, 0);
	cr_assert_eq(check_lines(text, n, 0), 10000);
	close(fd);
}

Test(access_log, a_pipe_gets_whole_lines_of_at_most_pipe_buf)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	struct access_log al;
	access_log_init(&al, &L, p[1]);
	cr_assert(al.whole_lines);
	write_records(&al, 0, 300); /* about 50 KiB: many PIPE_BUF writes */
	access_log_flush(&al);
	static char text[1 << 20];
	size_t n = 0;
	cr_assert(FX_RUN_UNTIL_DO(&L, access_log_idle(&al), {
		/* every read of a pipe returns what whole writes put there: each ends a line */
		ssize_t got = read(p[0], text + n, sizeof text - n);
		if (got > 0) {
			cr_assert_eq(text[n + (size_t)got - 1], '\n', "a write cut a line");
			n += (size_t)got;
		}
	}));
	n += slurp(p[0], text + n, sizeof text - n);
	cr_assert_eq(check_lines(text, n, 0), 300);
	access_log_close(&al);
	close(p[0]);
}

Test(access_log, a_reopened_log_takes_the_records_from_then_on)
{
	char a[] = "/tmp/ringway-alog-a-XXXXXX", b[] = "/tmp/ringway-alog-b-XXXXXX";
	int fa = mkstemp(a), fb = mkstemp(b);
	cr_assert(fa >= 0 && fb >= 0);
	unlink(a);
	unlink(b);
	struct access_log al;
	access_log_init(&al, &L, dup(fa));
	write_records(&al, 0, 100);
	access_log_flush(&al); /* not written yet (batched): they still go to the old log */
	access_log_reopen(&al, dup(fb));
	cr_assert_eq(al.fd >= 0 && al.fd != al.next_fd, true);
	write_records(&al, 100, 50);
	access_log_flush(&al);
	cr_assert(FX_RUN_UNTIL_DO(&L, access_log_idle(&al), access_log_flush(&al)));
	access_log_close(&al);
	static char text[1 << 20];
	size_t n = (size_t)pread(fa, text, sizeof text, 0);
	cr_assert_eq(check_lines(text, n, 0), 100);
	n = (size_t)pread(fb, text, sizeof text, 0);
	cr_assert_eq(check_lines(text, n, 100), 50);
	close(fa);
	close(fb);
}

Test(access_log, a_log_that_cannot_keep_up_drops_records_and_never_blocks)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	struct access_log al;
	access_log_init(&al, &L, p[1]);
	/* nobody reads the pipe: the first write fills it and waits in the kernel, not here */
	for (unsigned i = 0; i < 40; i++) {
		write_records(&al, i * 1000, 1000);
		access_log_flush(&al);
		fx_turn(&L);
	}
	cr_assert_gt(al.dropped, 0, "40000 records cannot wait in %u buffers", ACCESS_LOG_MAX_BUFS);
	cr_assert_leq(al.nbufs, ACCESS_LOG_MAX_BUFS);
	/* once the pipe is read again, what was kept goes out, whole lines, in order */
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	static char text[4 << 20];
	size_t n = 0;
	cr_assert(FX_RUN_UNTIL_DO(&L, access_log_idle(&al), {
		access_log_flush(&al);
		n += slurp(p[0], text + n, sizeof text - n);
	}));
	n += slurp(p[0], text + n, sizeof text - n);
	const char *first = strstr(text, "\"path\":\"/r/0\"");
	cr_assert_not_null(first, "the first record was kept");
	access_log_close(&al);
	close(p[0]);
}

Test(access_log, a_few_records_go_out_after_the_flush_delay_without_more_traffic)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	struct access_log al;
	access_log_init(&al, &L, p[1]);
	write_records(&al, 0, 3);
	access_log_flush(&al); /* batched: a few hundred bytes do not make a write yet */
	static char text[1 << 16];
	cr_assert_eq(slurp(p[0], text, sizeof text), 0);
	cr_assert(timer_armed(&al.flush_tm));
	size_t n = 0;
	cr_assert(FX_RUN_UNTIL_DO(&L, n > 0 && !al.writing, {
		access_log_flush(&al);
		n += slurp(p[0], text + n, sizeof text - n);
	}), "the records never went out");
	cr_assert_eq(check_lines(text, n, 0), 3);
	access_log_close(&al);
	close(p[0]);
}

Test(access_log, what_is_left_at_the_end_is_written)
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	struct access_log al;
	access_log_init(&al, &L, p[1]); /* closed by access_log_close */
	write_records(&al, 0, 20);      /* never flushed through the ring */
	access_log_close(&al);
	static char text[1 << 16];
	size_t n = slurp(p[0], text, sizeof text);
	cr_assert_eq(check_lines(text, n, 0), 20);
	close(p[0]);
}
