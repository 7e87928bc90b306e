/* ring_fixture.h — what the data-plane tests share: a real loop (ring opened as the worker opens
 * it, buffer rings, wheel), bounded turns of it, sockets on 127.0.0.1 and socketpairs, a byte
 * pattern to check order with, and segments queued from test bytes. Header-only: each test file
 * is its own program. */
#ifndef RINGWAY_TEST_RING_FIXTURE_H
#define RINGWAY_TEST_RING_FIXTURE_H

#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "ring.h"
#include "sock.h"
#include "timer.h"

/* Every wait in the tests is bounded by this many turns and this much time. */
#define FX_MAX_TURNS 20000
#define FX_MAX_MS 10000

/* Opens the ring in the fastest mode the kernel accepts, sees whether it can splice, and sets up
 * the loop as a worker does (heap buffers sized for 16 KiB heads). */
/* A test this host cannot run skips, saying why; under CI (CI=true) it fails instead, so a skip
 * never passes a CI run as green. */
#define FX_SKIP_OR_FAIL(why)                                                                       \
	do {                                                                                       \
		const char *ci_ = getenv("CI");                                                    \
		if (ci_ && !strcmp(ci_, "true"))                                                   \
			cr_assert_fail("%s; CI=true: failing, not skipping", (why));               \
		cr_skip_test("%s", (why));                                                         \
	} while (0)

/* The sock_ops table of a test that names its handlers t_data, t_eof, t_sent, t_send_error,
 * t_connected, t_splice, t_stopped and t_free. */
#define FX_SOCK_OPS(name)                                                                          \
	static const struct sock_ops name = {                                                      \
		.on_data = t_data,                                                                 \
		.on_eof = t_eof,                                                                   \
		.on_sent = t_sent,                                                                 \
		.on_send_error = t_send_error,                                                     \
		.on_connected = t_connected,                                                       \
		.on_splice = t_splice,                                                             \
		.on_recv_stopped = t_stopped,                                                      \
		.on_free = t_free,                                                                 \
	}

static inline void fx_loop_open(struct loop *l)
{
	memset(l, 0, sizeof *l);
	log_set_level(LOG_ERROR);
	unsigned features = 0;
	int mode = ring_open(&l->ring, &features);
	cr_assert_geq(mode, 0, "ring_open: %s", strerror(-mode));
	struct io_uring_probe *p = io_uring_get_probe_ring(&l->ring);
	cr_assert_not_null(p);
	l->can_splice = io_uring_opcode_supported(p, IORING_OP_SPLICE);
	io_uring_free_probe(p);
	int ret = loop_init(l, LOOP_BUFS_WORKER, 16384, 1);
	cr_assert_eq(ret, 0, "loop_init: %s", strerror(-ret));
}

/* One turn of the loop that cannot wait for ever: a timeout that ends at the first other
 * completion, or after 20 ms, is queued first (its user_data 0 makes the loop ignore it). */
static inline void fx_turn(struct loop *l)
{
	static struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 20 * 1000000L };
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_timeout(sqe, &ts, 1, 0);
	io_uring_sqe_set_data64(sqe, 0);
	cr_assert_eq(loop_run_once(l), 0);
}

static inline uint64_t fx_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs bounded turns of l until cond holds (each turn first runs `between`, the test's own side of
 * the traffic). Evaluates to cond. */
#define FX_RUN_UNTIL_DO(l, cond, between)                                                          \
	({                                                                                         \
		uint64_t fx_t0_ = fx_ms();                                                         \
		for (int fx_i_ = 0; !(cond) && fx_i_ < FX_MAX_TURNS && fx_ms() - fx_t0_ < FX_MAX_MS; \
		     fx_i_++) {                                                                    \
			between;                                                                   \
			fx_turn(l);                                                                \
		}                                                                                  \
		(bool)(cond);                                                                      \
	})
#define FX_RUN_UNTIL(l, cond) FX_RUN_UNTIL_DO(l, cond, (void)0)

/* The byte at offset i of a test stream: order and loss both show. */
static inline uint8_t fx_byte(uint64_t i)
{
	return (uint8_t)((i * 131u) ^ (i >> 9) ^ (i >> 17));
}
static inline void fx_fill(uint8_t *p, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = fx_byte(off + i);
}
/* Index of the first byte of p (at stream offset off) that is not the pattern, or n. */
static inline size_t fx_check(const uint8_t *p, uint64_t off, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != fx_byte(off + i))
			return i;
	return n;
}

/* Writes pattern bytes from stream offset *off up to end into fd, as far as it takes them without
 * blocking (*off advances). */
static inline void fx_peer_write(int fd, uint64_t *off, uint64_t end)
{
	uint8_t chunk[65536];
	while (*off < end) {
		size_t k = end - *off < sizeof chunk ? end - *off : sizeof chunk;
		fx_fill(chunk, *off, k);
		ssize_t w = write(fd, chunk, k);
		if (w <= 0)
			return;
		*off += (uint64_t)w;
	}
}

/* Queues n pattern bytes (from stream offset off) on q in heap segments of at most seg bytes. */
static inline void fx_queue(struct loop *l, struct segq *q, uint64_t off, uint64_t n, uint32_t seg)
{
	while (n) {
		uint32_t id = buf_heap_get(&l->bufs);
		cr_assert_neq(id, UINT32_MAX);
		uint32_t k = seg < buf_cap(&l->bufs, id) ? seg : buf_cap(&l->bufs, id);
		if (k > n)
			k = (uint32_t)n;
		fx_fill((uint8_t *)buf_ptr(&l->bufs, id), off, k);
		cr_assert(segq_push(&l->bufs, q, id, 0, k));
		off += k;
		n -= k;
	}
}

/* Takes every byte of q into dst (growing *len, at most cap), releasing the buffers. */
static inline void fx_take(struct loop *l, struct segq *q, uint8_t *dst, size_t *len, size_t cap)
{
	while (q->head) {
		struct seg *g = q->head;
		cr_assert_leq(*len + g->len, cap, "more bytes than were sent");
		memcpy(dst + *len, seg_ptr(&l->bufs, g), g->len);
		*len += g->len;
		segq_consume(&l->bufs, q, g->len);
	}
}

static inline void fx_nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

/* A listening TCP socket on 127.0.0.1 and a free port (*port, host order). Non-blocking. */
static inline int fx_listen(uint16_t *port, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	socklen_t len = sizeof a;
	getsockname(fd, (struct sockaddr *)&a, &len);
	*port = ntohs(a.sin_port);
	return fd;
}

/* A connected TCP pair on 127.0.0.1, both ends non-blocking. */
static inline void fx_tcp_pair(int *a, int *b)
{
	uint16_t port;
	int lfd = fx_listen(&port, 4);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(c, (struct sockaddr *)&sa, sizeof sa), 0);
	fx_nonblock(lfd);
	int s = -1;
	for (int i = 0; i < 1000 && s < 0; i++)
		s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	cr_assert_geq(s, 0);
	close(lfd);
	fx_nonblock(c);
	*a = c;
	*b = s;
}

/* A free TCP port on 127.0.0.1 (nothing listens on it once this returns). */
static inline uint16_t fx_free_port(void)
{
	uint16_t port;
	close(fx_listen(&port, 1));
	return port;
}

/* A configuration from yaml, which must load without an error (the caller unrefs it). */
static inline struct rw_config *fx_config(const char *yaml)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
	for (uint32_t i = 0; i < errs.count; i++)
		cr_log_error("%s", errs.lines[i]);
	cr_assert_not_null(cfg);
	config_errors_free(&errs);
	return cfg;
}

#endif
