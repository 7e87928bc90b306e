/* test_splice.c — bodies moved socket -> pooled pipe -> socket by IORING_OP_SPLICE (splice.c),
 * driven as the exchange drives a request body: the sockets' splice completions go to
 * splice_in_done / splice_out_done and the next splice_step, as do a stopped recv and a drained
 * send. Two TCP connections on 127.0.0.1: the test writes into one and reads from the other. */
#include "ring_fixture.h"

#include "splice.h"
#include "transport.h"

struct xfer; /* one transfer: what exchange.c keeps for a request body */

struct tsock {
	struct sock s; /* first */
	struct xfer *x;
	int nfree;
} RING_ALIGNED;

struct xfer {
	struct tsock src, dst;
	struct splice_leg sl;
	int64_t remaining;
	uint64_t moved;
	enum splice_status st;
	int nsteps_done;
	bool abandoned;
};

static struct loop L;

static void step(struct xfer *x)
{
	if (!splice_active(&x->sl) || x->abandoned)
		return;
	x->st = splice_step(&L, &x->sl, &x->src.s, &x->dst.s, &x->remaining, &x->moved);
	if (x->st == SPLICE_DONE)
		x->nsteps_done++;
}

static void t_data(struct sock *s)
{
	step(((struct tsock *)s)->x); /* bytes that came before the recv stopped */
}
static void t_eof(struct sock *s, int err)
{
}
static void t_sent(struct sock *s)
{
	step(((struct tsock *)s)->x);
}
static void t_send_error(struct sock *s, int err)
{
	cr_assert_fail("send error %d", err);
}
static void t_connected(struct sock *s, int res)
{
}
static void t_splice(struct sock *s, bool is_in, int res)
{
	struct xfer *x = ((struct tsock *)s)->x;
	if (is_in)
		splice_in_done(&x->sl, res, &x->remaining);
	else
		splice_out_done(&x->sl, res);
	step(x);
}
static void t_stopped(struct sock *s)
{
	step(((struct tsock *)s)->x);
}
static void t_free(struct sock *s)
{
	((struct tsock *)s)->nfree++;
}

static const struct sock_ops t_ops = {
	.on_data = t_data,
	.on_eof = t_eof,
	.on_sent = t_sent,
	.on_send_error = t_send_error,
	.on_connected = t_connected,
	.on_splice = t_splice,
	.on_recv_stopped = t_stopped,
	.on_free = t_free,
};

static void setup(void)
{
	fx_loop_open(&L);
	if (!L.can_splice)
		cr_skip_test("this kernel's io_uring has no splice operation");
}
static void teardown(void)
{
	loop_destroy(&L);
}

TestSuite(splice, .init = setup, .fini = teardown, .timeout = 60);

/* src's peer is *in (the test writes the body there), dst's peer is *out (the test reads it). */
static struct xfer *xfer_new(int *in, int *out, int64_t body, const struct transport_ops *tx)
{
	struct xfer *x = calloc(1, sizeof *x);
	int a, b;
	fx_tcp_pair(in, &a);
	fx_tcp_pair(&b, out);
	sock_init(&x->src.s, a, BUF_GROUP_CLIENT, &t_ops, tx);
	sock_init(&x->dst.s, b, BUF_GROUP_UPSTREAM, &t_ops, &transport_plain);
	x->src.s.connected = x->dst.s.connected = true;
	x->src.x = x->dst.x = x;
	x->remaining = body;
	return x;
}

static void xfer_free(struct xfer *x)
{
	sock_close(&L, &x->src.s);
	sock_close(&L, &x->dst.s);
	cr_assert(FX_RUN_UNTIL(&L, x->src.nfree && x->dst.nfree));
	free(x);
}

static void peer_write(int fd, uint64_t *off, uint64_t end)
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

static void peer_read(int fd, uint8_t *dst, size_t *len, size_t cap)
{
	ssize_t r;
	while (*len < cap && (r = read(fd, dst + *len, cap - *len)) > 0)
		*len += (size_t)r;
}

Test(splice, moves_a_body_larger_than_a_pipe_in_order_and_returns_the_pipe)
{
	const uint64_t n = 3u << 20;
	int in, out;
	struct xfer *x = xfer_new(&in, &out, (int64_t)n, &transport_plain);
	uint8_t *got = malloc(n + 1);
	size_t ngot = 0;
	uint64_t off = 0;
	/* the first bytes arrive through the ring, as a head and its first body bytes do */
	sock_arm_recv(&L, &x->src.s);
	peer_write(in, &off, 1000);
	cr_assert(FX_RUN_UNTIL(&L, x->src.s.in.bytes == 1000));
	uint32_t free_before = L.nfree_pipes;
	cr_assert(splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	cr_assert_eq(L.nsplices, 1);
	cr_assert(x->src.s.paused, "the source's recv stops while the body is spliced");
	step(x);
	cr_assert(FX_RUN_UNTIL_DO(&L, ngot >= n && x->nsteps_done,
				  (peer_write(in, &off, n), peer_read(out, got, &ngot, n + 1))));
	peer_read(out, got, &ngot, n + 1);
	cr_assert_eq(ngot, n, "%zu of %llu bytes arrived", ngot, (unsigned long long)n);
	cr_assert_eq(fx_check(got, 0, n), n, "bytes out of order or lost");
	cr_assert_eq(x->st, SPLICE_DONE);
	cr_assert_eq(x->nsteps_done, 1);
	cr_assert_eq(x->moved, 1000, "the bytes received before the recv stopped went through the queue");
	cr_assert_eq(x->remaining, 0);
	cr_assert(!splice_active(&x->sl));
	cr_assert_eq(L.nsplices, 0);
	cr_assert_eq(L.nfree_pipes, free_before + 1, "the pipe went back to the pool");
	free(got);
	close(in);
	close(out);
	xfer_free(x);
}

Test(splice, abandoned_mid_transfer_leaks_no_pipe)
{
	const uint64_t n = 3u << 20;
	int in, out;
	struct xfer *x = xfer_new(&in, &out, (int64_t)n, &transport_plain);
	uint8_t *got = malloc(n + 1);
	size_t ngot = 0;
	uint64_t off = 0;
	cr_assert(splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	step(x);
	/* run until some bytes went through and a splice is in flight */
	cr_assert(FX_RUN_UNTIL_DO(&L, ngot > 300000 && (x->sl.in_busy || x->sl.out_busy),
				  (peer_write(in, &off, n), peer_read(out, got, &ngot, n + 1))));
	cr_assert_lt(ngot, n);
	cr_assert_eq(L.nsplices, 1);
	x->abandoned = true;
	splice_abandon(&L, &x->sl);
	cr_assert(!splice_active(&x->sl));
	/* the exchange ends: both sockets close, their splices end */
	sock_close(&L, &x->src.s);
	sock_close(&L, &x->dst.s);
	cr_assert(FX_RUN_UNTIL(&L, x->src.nfree && x->dst.nfree));
	cr_assert_eq(L.nsplices, 0, "a pipe is still counted in use");
	cr_assert_eq(L.nclosing, 0);
	free(got);
	free(x);
	close(in);
	close(out);
}

Test(splice, refused_when_the_transport_must_see_the_bytes)
{
	struct transport_ops sealed = transport_plain;
	sealed.name = "sealed";
	sealed.splice_ok = false;
	int in, out;
	struct xfer *x = xfer_new(&in, &out, 1 << 20, &sealed);
	sock_arm_recv(&L, &x->src.s);
	cr_assert(!splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	cr_assert(!splice_active(&x->sl));
	cr_assert_eq(L.nsplices, 0);
	cr_assert(!x->src.s.paused, "a refused splice leaves the recv running");
	/* and the other way round: a plain source, a destination that must see the bytes */
	x->src.s.tx = &transport_plain;
	x->dst.s.tx = &sealed;
	cr_assert(!splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	cr_assert_eq(L.nsplices, 0);
	close(in);
	close(out);
	xfer_free(x);
}
