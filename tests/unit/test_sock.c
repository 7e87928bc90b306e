/* test_sock.c — a socket driven by a real io_uring (sock.c, transport.c, loop.c): multishot recv
 * into the buffer ring, sends of one segment and of several (sendmsg), a large queue to a slow
 * peer, pause and resume, the peer's EOF, a send error, the write side shut down, a close with
 * operations in flight, buffer-ring exhaustion and recovery, and the tick that runs only while a
 * timer is pending. The peer is the other end of a socketpair, read and written by the test. */
#include "ring_fixture.h"

#include "transport.h"

/* A socket and what its sock_ops were told. */
struct tsock {
	struct sock s; /* first */
	struct loop *l;
	bool hold;     /* on_data leaves bytes in s->in (holding their ring buffers) */
	uint8_t *got;  /* bytes taken from s->in */
	size_t ngot, cap;
	int ndata, neof, eof_err, nsent, nsend_err, send_err, nstopped, nfree;
	uint16_t inflight_at_free;
} RING_ALIGNED;

static void t_data(struct sock *s)
{
	struct tsock *t = (struct tsock *)s;
	t->ndata++;
	if (!t->hold)
		fx_take(t->l, &s->in, t->got, &t->ngot, t->cap);
}
static void t_eof(struct sock *s, int err)
{
	struct tsock *t = (struct tsock *)s;
	t->neof++;
	t->eof_err = err;
}
static void t_sent(struct sock *s)
{
	((struct tsock *)s)->nsent++;
}
static void t_send_error(struct sock *s, int err)
{
	struct tsock *t = (struct tsock *)s;
	t->nsend_err++;
	t->send_err = err;
}
static void t_connected(struct sock *s, int res)
{
}
static void t_splice(struct sock *s, bool is_in, int res)
{
}
static void t_stopped(struct sock *s)
{
	((struct tsock *)s)->nstopped++;
}
static void t_free(struct sock *s)
{
	struct tsock *t = (struct tsock *)s;
	t->nfree++;
	t->inflight_at_free = s->inflight;
}

FX_SOCK_OPS(t_ops);

static struct loop L;

static void setup(void)
{
	fx_loop_open(&L);
}
static void teardown(void)
{
	loop_destroy(&L);
}

TestSuite(sock, .init = setup, .fini = teardown, .timeout = 30);

/* A socket on one end of a socketpair (the other end, *peer, is the test's), connected as an
 * accepted client is. */
static struct tsock *tsock_new(int *peer, size_t cap)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	struct tsock *t = calloc(1, sizeof *t);
	sock_init(&t->s, sv[0], BUF_GROUP_CLIENT, &t_ops, &transport_plain);
	t->s.connected = true;
	t->l = &L;
	t->cap = cap;
	t->got = cap ? malloc(cap) : NULL;
	*peer = sv[1];
	return t;
}

/* Closes t and runs the loop until it is freed. */
static void tsock_free(struct tsock *t)
{
	sock_close(&L, &t->s);
	cr_assert(FX_RUN_UNTIL(&L, t->nfree == 1));
	free(t->got);
	free(t);
}

/* Reads what fd has into dst, at most max bytes in all (non-blocking). */
static void peer_read(int fd, uint8_t *dst, size_t *len, size_t cap, size_t max_per_call)
{
	while (*len < cap) {
		size_t want = cap - *len < max_per_call ? cap - *len : max_per_call;
		ssize_t r = read(fd, dst + *len, want);
		if (r <= 0)
			return;
		*len += (size_t)r;
		if (max_per_call < 65536)
			return; /* a slow reader: one read per turn */
	}
}

Test(sock, multishot_recv_delivers_every_byte_across_ring_buffers)
{
	int peer;
	const size_t n = 5 * 20000; /* several writes, several 16 KiB ring buffers */
	struct tsock *t = tsock_new(&peer, n);
	sock_arm_recv(&L, &t->s);
	uint64_t off = 0;
	for (int i = 1; i <= 5; i++) {
		fx_peer_write(peer, &off, (uint64_t)i * 20000);
		cr_assert(FX_RUN_UNTIL(&L, t->ngot == off));
	}
	cr_assert_eq(t->ngot, n);
	cr_assert_eq(fx_check(t->got, 0, n), n, "bytes out of order or lost");
	cr_assert_geq(t->ndata, 7, "%d recv completions for %zu bytes", t->ndata, n);
	cr_assert(t->s.recv_armed, "one multishot recv stays armed");
	cr_assert_eq(t->neof, 0);
	close(peer);
	tsock_free(t);
}

/* Queues n bytes in segments of seg bytes on t, flushes, and checks the peer reads exactly them. */
static void send_and_check(struct tsock *t, int peer, uint64_t n, uint32_t seg)
{
	fx_queue(&L, &t->s.out, 0, n, seg);
	sock_flush(&L, &t->s);
	cr_assert(t->s.send_busy);
	uint8_t *got = malloc(n + 1);
	size_t ngot = 0;
	cr_assert(FX_RUN_UNTIL_DO(&L, ngot >= n && t->s.out.bytes == 0 && !t->s.send_busy,
				  peer_read(peer, got, &ngot, n + 1, 1 << 20)));
	peer_read(peer, got, &ngot, n + 1, 1 << 20);
	cr_assert_eq(ngot, n, "the peer read %zu bytes of %llu", ngot, (unsigned long long)n);
	cr_assert_eq(fx_check(got, 0, n), n);
	cr_assert_geq(t->nsent, 1);
	cr_assert_null(t->s.sc, "an idle socket keeps no send context");
	free(got);
}

Test(sock, flush_sends_several_segments)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 0);
	send_and_check(t, peer, 5 * 1000 + 333, 1000); /* six segments: sendmsg */
	close(peer);
	tsock_free(t);
}

Test(sock, flush_sends_one_segment)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 0);
	send_and_check(t, peer, 5000, 8192);
	cr_assert_eq(t->nsent, 1);
	close(peer);
	tsock_free(t);
}

Test(sock, large_queue_to_a_slow_peer_arrives_whole_and_in_order)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 0);
	const uint64_t n = 1u << 20; /* far more than the socket buffer: short sends */
	int small = 32768;
	setsockopt(t->s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
	fx_queue(&L, &t->s.out, 0, n, 20000); /* 16 segments (320000 bytes) at most per sendmsg */
	sock_flush(&L, &t->s);
	uint8_t *got = malloc(n + 1);
	size_t ngot = 0;
	cr_assert(FX_RUN_UNTIL_DO(&L, ngot >= n && t->s.out.bytes == 0,
				  peer_read(peer, got, &ngot, n + 1, 32768)));
	peer_read(peer, got, &ngot, n + 1, 1 << 20);
	cr_assert_eq(ngot, n);
	cr_assert_eq(fx_check(got, 0, n), n, "bytes out of order or lost");
	cr_assert_gt(t->nsent, 4, "no short send happened (%d sends)", t->nsent);
	cr_assert_eq(t->nsend_err, 0);
	free(got);
	close(peer);
	tsock_free(t);
}

Test(sock, pause_stops_on_data_until_resume)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 4096);
	sock_arm_recv(&L, &t->s);
	cr_assert_eq(write(peer, "abc", 3), 3);
	cr_assert(FX_RUN_UNTIL(&L, t->ngot == 3));
	sock_pause(&L, &t->s);
	cr_assert(FX_RUN_UNTIL(&L, !t->s.recv_armed));
	cr_assert_eq(t->nstopped, 1, "the owner is told the recv stopped while paused");
	int ndata = t->ndata;
	cr_assert_eq(write(peer, "defg", 4), 4);
	for (int i = 0; i < 5; i++)
		fx_turn(&L);
	cr_assert_eq(t->ndata, ndata, "on_data while paused");
	cr_assert_eq(t->ngot, 3);
	sock_resume(&L, &t->s);
	cr_assert(FX_RUN_UNTIL(&L, t->ngot == 7));
	cr_assert_eq(memcmp(t->got, "abcdefg", 7), 0);
	close(peer);
	tsock_free(t);
}

Test(sock, peer_close_is_eof_0)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 16);
	sock_arm_recv(&L, &t->s);
	cr_assert_eq(write(peer, "x", 1), 1);
	close(peer);
	cr_assert(FX_RUN_UNTIL(&L, t->neof > 0));
	cr_assert_eq(t->neof, 1);
	cr_assert_eq(t->eof_err, 0);
	cr_assert_eq(t->ngot, 1, "the bytes before the EOF were delivered");
	cr_assert(t->s.eof);
	tsock_free(t);
}

Test(sock, send_to_a_closed_peer_is_a_send_error)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 0);
	close(peer);
	fx_queue(&L, &t->s.out, 0, 1000, 1000);
	sock_flush(&L, &t->s);
	cr_assert(FX_RUN_UNTIL(&L, t->nsend_err > 0));
	cr_assert_eq(t->nsend_err, 1);
	cr_assert(t->send_err == EPIPE || t->send_err == ECONNRESET, "error %d", t->send_err);
	cr_assert_eq(t->s.out.bytes, 0, "the queue is dropped");
	cr_assert_eq(t->nsent, 0);
	tsock_free(t);
}

Test(sock, shutdown_write_gives_the_peer_eof_and_reading_goes_on)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 64);
	sock_arm_recv(&L, &t->s);
	fx_queue(&L, &t->s.out, 0, 100, 100);
	sock_flush(&L, &t->s);
	cr_assert(FX_RUN_UNTIL(&L, t->s.out.bytes == 0 && !t->s.send_busy));
	sock_shutdown_write(&L, &t->s);
	uint8_t got[200];
	size_t ngot = 0;
	ssize_t r;
	while ((r = read(peer, got + ngot, sizeof got - ngot)) > 0)
		ngot += (size_t)r;
	cr_assert_eq(r, 0, "the peer sees EOF");
	cr_assert_eq(ngot, 100);
	cr_assert_eq(fx_check(got, 0, 100), 100);
	cr_assert_eq(write(peer, "still", 5), 5);
	cr_assert(FX_RUN_UNTIL(&L, t->ngot == 5));
	cr_assert_eq(memcmp(t->got, "still", 5), 0);
	cr_assert_eq(t->neof, 0);
	close(peer);
	tsock_free(t);
}

Test(sock, close_with_operations_in_flight_frees_once_after_they_end)
{
	int peer;
	struct tsock *t = tsock_new(&peer, 0);
	sock_arm_recv(&L, &t->s);
	fx_queue(&L, &t->s.out, 0, 4u << 20, 30000); /* the peer never reads: a send stays in flight */
	sock_flush(&L, &t->s);
	for (int i = 0; i < 5; i++)
		fx_turn(&L);
	cr_assert(t->s.send_busy && t->s.recv_armed);
	cr_assert_geq(t->s.inflight, 2);
	sock_close(&L, &t->s);
	sock_free_closed(&L, true); /* the end of the turn a handler closed it in */
	cr_assert_eq(t->nfree, 0, "freed with operations in flight");
	cr_assert_eq(L.nclosing, 1);
	cr_assert(FX_RUN_UNTIL(&L, t->nfree > 0));
	cr_assert_eq(t->inflight_at_free, 0);
	for (int i = 0; i < 5; i++)
		fx_turn(&L);
	cr_assert_eq(t->nfree, 1);
	cr_assert_eq(L.nclosing, 0);
	cr_assert_eq(t->nsend_err + t->neof, 0, "a closing socket's owner is told nothing");
	close(peer);
	free(t);
}

Test(sock, exhausted_buffer_ring_loses_no_bytes_once_buffers_come_back)
{
	/* A holds every client ring buffer; B, on the same group, starves too. Once A lets go,
	 * both are re-armed and get every byte their peers wrote, in order. */
	int pa, pb;
	const uint64_t n = 10u << 20; /* more than the 512 x 16 KiB client buffers */
	struct tsock *a = tsock_new(&pa, n), *b = tsock_new(&pb, 1 << 20);
	a->hold = true;
	sock_arm_recv(&L, &a->s);
	sock_arm_recv(&L, &b->s);
	uint64_t offa = 0, offb = 0;
	bool starved = FX_RUN_UNTIL_DO(&L, a->s.starved, fx_peer_write(pa, &offa, n));
	cr_assert(starved, "the buffer ring never ran out (%llu bytes held)",
		  (unsigned long long)a->s.in.bytes);
	cr_assert_lt(L.bufs.ring_free[BUF_GROUP_CLIENT], 8);
	fx_peer_write(pb, &offb, 100000);
	cr_assert(FX_RUN_UNTIL(&L, b->s.starved || b->ngot == offb));
	cr_assert(b->s.starved, "B got buffers from an empty ring");
	a->hold = false;
	fx_take(&L, &a->s.in, a->got, &a->ngot, a->cap); /* the buffers go back */
	cr_assert(FX_RUN_UNTIL_DO(&L, a->ngot == n && b->ngot == offb, fx_peer_write(pa, &offa, n)));
	cr_assert_eq(a->ngot, n);
	cr_assert_eq(fx_check(a->got, 0, n), n, "A lost or reordered bytes");
	cr_assert_eq(b->ngot, 100000);
	cr_assert_eq(fx_check(b->got, 0, b->ngot), b->ngot, "B lost or reordered bytes");
	cr_assert(!a->s.starved && !b->s.starved);
	close(pa);
	close(pb);
	tsock_free(a);
	tsock_free(b);
}

static int fired;
static void on_fire(struct timer *tm)
{
	fired++;
}

Test(sock, tick_only_while_a_timer_is_pending)
{
	fx_turn(&L);
	cr_assert(!L.tick_armed, "no timer pending: an idle loop must not tick");
	struct timer tm = { 0 };
	timer_arm(&L.wheel, &tm, 30, on_fire);
	fx_turn(&L);
	cr_assert(L.tick_armed, "a timer is pending: the tick is armed");
	/* only the tick can end these waits now: the loop's own turns, unbounded but few */
	for (int i = 0; i < 1000 && !fired; i++)
		cr_assert_eq(loop_run_once(&L), 0);
	cr_assert_eq(fired, 1);
	for (int i = 0; i < 1000 && L.tick_armed; i++)
		cr_assert_eq(loop_run_once(&L), 0);
	cr_assert(!L.tick_armed, "the last timer fired: the tick stops");
}
