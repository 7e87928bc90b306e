/* access_log.c — the worker's access-log writer (see access_log.h): buffers filled with records,
 * queued, and written one at a time through the ring; short writes resumed; reopening. */
#include "access_log.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct access_log_buf {
	struct access_log_buf *next;
	uint32_t len;  /* bytes filled */
	uint32_t sent; /* bytes written */
	char data[ACCESS_LOG_BUF_SIZE];
};

#define RECORD_MAX 4096 /* a record that does not fit in this is dropped (log.c says so) */

static bool is_pipe_or_tty(int fd)
{
	struct stat st;
	return fd >= 0 && fstat(fd, &st) == 0 && !S_ISREG(st.st_mode);
}

static void on_written(struct loop_task *t, struct io_uring_cqe *cqe);
static void flush_due(struct timer *t);

void access_log_init(struct access_log *al, struct loop *l, int fd)
{
	memset(al, 0, sizeof *al);
	al->fd = fd;
	al->next_fd = -2;
	al->loop = l;
	al->whole_lines = is_pipe_or_tty(fd);
	al->task.fn = on_written;
}

static struct access_log_buf *get_buf(struct access_log *al)
{
	struct access_log_buf *b = al->spare;
	if (b) {
		al->spare = b->next;
	} else {
		if (al->nbufs >= ACCESS_LOG_MAX_BUFS || !(b = malloc(sizeof *b)))
			return NULL;
		al->nbufs++;
	}
	b->next = NULL;
	b->len = b->sent = 0;
	return b;
}

static void put_buf(struct access_log *al, struct access_log_buf *b)
{
	b->next = al->spare;
	al->spare = b;
}

/* The filled buffer joins the queue. */
static void queue_fill(struct access_log *al)
{
	struct access_log_buf *b = al->fill;
	al->fill = NULL;
	timer_cancel(&al->loop->wheel, &al->flush_tm);
	if (al->queue_tail)
		al->queue_tail->next = b;
	else
		al->queue = b;
	al->queue_tail = b;
}

/* How much of b goes in one write: all of it to a file; whole lines of at most PIPE_BUF bytes to
 * a pipe (a single longer line goes whole). */
static uint32_t write_size(const struct access_log *al, const struct access_log_buf *b)
{
	uint32_t n = b->len - b->sent;
	if (!al->whole_lines || n <= PIPE_BUF)
		return n;
	uint32_t cut = PIPE_BUF;
	while (cut > 0 && b->data[b->sent + cut - 1] != '\n')
		cut--;
	return cut ? cut : n;
}

static void start_write(struct access_log *al)
{
	struct access_log_buf *b = al->queue;
	if (al->writing || !b || al->fd < 0)
		return;
	struct io_uring_sqe *sqe = loop_sqe(al->loop);
	/* offset -1: the file's position (with O_APPEND, its end) */
	io_uring_prep_write(sqe, al->fd, b->data + b->sent, write_size(al, b), (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, UD(&al->task, OP_TASK));
	al->writing = true;
}

/* A reopened log takes over once everything recorded before the reopening is out on the old one. */
static void take_next_fd(struct access_log *al)
{
	if (al->next_fd == -2 || al->writing || al->queue)
		return;
	if (al->fd > STDERR_FILENO)
		close(al->fd);
	al->fd = al->next_fd;
	al->next_fd = -2;
	al->whole_lines = is_pipe_or_tty(al->fd);
}

static void on_written(struct loop_task *t, struct io_uring_cqe *cqe)
{
	struct access_log *al = container_of(t, struct access_log, task);
	struct access_log_buf *b = al->queue;
	al->writing = false;
	if (cqe->res > 0) {
		b->sent += (uint32_t)cqe->res;
	} else if (cqe->res != -EINTR && cqe->res != -EAGAIN) {
		/* a full disk or a closed pipe must not stop the gateway: this buffer is dropped */
		uint64_t now = monotonic_ms();
		if (now - al->drop_warned_ms >= 1000) {
			log_warn("access log: write failed: %s; records dropped",
				 strerror(cqe->res ? -cqe->res : EIO));
			al->drop_warned_ms = now;
		}
		b->sent = b->len;
	}
	if (b->sent == b->len) {
		al->queue = b->next;
		if (!al->queue)
			al->queue_tail = NULL;
		put_buf(al, b);
	}
	take_next_fd(al);
	start_write(al);
}

void access_log_write(struct access_log *al, const struct access_record *r)
{
	if (al->fd < 0 && al->next_fd < 0)
		return;
	if (al->fill && ACCESS_LOG_BUF_SIZE - al->fill->len < RECORD_MAX)
		queue_fill(al);
	if (!al->fill && !(al->fill = get_buf(al))) {
		al->dropped++;
		uint64_t now = monotonic_ms();
		if (now - al->drop_warned_ms >= 1000) {
			log_warn("access log: cannot keep up; %llu records dropped so far",
				 (unsigned long long)al->dropped);
			al->drop_warned_ms = now;
		}
		return;
	}
	struct access_log_buf *b = al->fill;
	if (b->len == 0)
		timer_arm(&al->loop->wheel, &al->flush_tm, ACCESS_LOG_FLUSH_MS, flush_due);
	b->len += (uint32_t)access_record_format(r, b->data + b->len, RECORD_MAX);
}

void access_log_flush(struct access_log *al)
{
	if (al->writing)
		return;
	if (!al->queue && al->fill && al->fill->len >= ACCESS_LOG_FLUSH_BYTES)
		queue_fill(al);
	start_write(al);
}

/* The records in fill have waited long enough. */
static void flush_due(struct timer *t)
{
	struct access_log *al = container_of(t, struct access_log, flush_tm);
	if (al->fill && al->fill->len)
		queue_fill(al);
	start_write(al);
}

void access_log_reopen(struct access_log *al, int fd)
{
	if (al->next_fd > STDERR_FILENO) /* reopened twice before the first took over */
		close(al->next_fd);
	al->next_fd = fd;
	if (al->fill && al->fill->len) /* what was recorded until now belongs to the old log */
		queue_fill(al);
	take_next_fd(al);
	start_write(al);
}

bool access_log_idle(const struct access_log *al)
{
	return !al->writing && !al->queue && (!al->fill || !al->fill->len);
}

static void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

void access_log_close(struct access_log *al)
{
	if (al->loop)
		timer_cancel(&al->loop->wheel, &al->flush_tm);
	al->writing = false; /* the loop has ended: nothing is in flight any more */
	if (al->fill)
		queue_fill(al);
	while (al->queue) {
		struct access_log_buf *b = al->queue;
		al->queue = b->next;
		if (al->fd >= 0)
			write_all(al->fd, b->data + b->sent, b->len - b->sent);
		free(b);
	}
	al->queue_tail = NULL;
	take_next_fd(al); /* reopened at the very end: only to close it */
	while (al->spare) {
		struct access_log_buf *b = al->spare;
		al->spare = b->next;
		free(b);
	}
	if (al->fd > STDERR_FILENO)
		close(al->fd);
	al->fd = -1;
}
