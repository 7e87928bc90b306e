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
	/* the test's side: it writes the body into `in` and reads what arrives from `out` */
	int in, out;
	uint64_t n, off;
	uint8_t *got;
	size_t ngot;
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

FX_SOCK_OPS(t_ops);

static void setup(void)
{
	fx_loop_open(&L);
	if (!L.can_splice)
		FX_SKIP_OR_FAIL("this kernel's io_uring has no splice operation");
}
static void teardown(void)
{
	loop_destroy(&L);
}

TestSuite(splice, .init = setup, .fini = teardown, .timeout = 60);

/* A transfer of a body of n bytes from src (whose peer is x->in) to dst (whose peer is x->out). */
static struct xfer *xfer_new(uint64_t n, const struct transport_ops *tx)
{
	struct xfer *x = calloc(1, sizeof *x);
	int a, b;
	fx_tcp_pair(&x->in, &a);
	fx_tcp_pair(&b, &x->out);
	sock_init(&x->src.s, a, BUF_GROUP_CLIENT, &t_ops, tx);
	sock_init(&x->dst.s, b, BUF_GROUP_UPSTREAM, &t_ops, &transport_plain);
	x->src.s.connected = x->dst.s.connected = true;
	x->src.x = x->dst.x = x;
	x->remaining = (int64_t)n;
	x->n = n;
	x->got = malloc(n + 1);
	return x;
}

static void xfer_free(struct xfer *x)
{
	sock_close(&L, &x->src.s);
	sock_close(&L, &x->dst.s);
	cr_assert(FX_RUN_UNTIL(&L, x->src.nfree && x->dst.nfree));
	close(x->in);
	close(x->out);
	free(x->got);
	free(x);
}

/* The test's side of one turn: more of the body in, what arrived out. */
static void peers(struct xfer *x)
{
	fx_peer_write(x->in, &x->off, x->n);
	ssize_t r;
	while (x->ngot <= x->n && (r = read(x->out, x->got + x->ngot, x->n + 1 - x->ngot)) > 0)
		x->ngot += (size_t)r;
}

Test(splice, moves_a_body_larger_than_a_pipe_in_order_and_returns_the_pipe)
{
	const uint64_t n = 3u << 20;
	struct xfer *x = xfer_new(n, &transport_plain);
	/* the first bytes arrive through the ring, as a head and its first body bytes do */
	sock_arm_recv(&L, &x->src.s);
	fx_peer_write(x->in, &x->off, 1000);
	cr_assert(FX_RUN_UNTIL(&L, x->src.s.in.bytes == 1000));
	uint32_t free_before = L.nfree_pipes;
	cr_assert(splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	cr_assert_eq(L.nsplices, 1);
	cr_assert(x->src.s.paused, "the source's recv stops while the body is spliced");
	step(x);
	cr_assert(FX_RUN_UNTIL_DO(&L, x->ngot >= n && x->nsteps_done, peers(x)));
	peers(x);
	cr_assert_eq(x->ngot, n, "%zu of %llu bytes arrived", x->ngot, (unsigned long long)n);
	cr_assert_eq(fx_check(x->got, 0, n), n, "bytes out of order or lost");
	cr_assert_eq(x->st, SPLICE_DONE);
	cr_assert_eq(x->nsteps_done, 1);
	cr_assert_eq(x->moved, 1000, "the bytes received before the recv stopped went through the queue");
	cr_assert_eq(x->remaining, 0);
	cr_assert(!splice_active(&x->sl));
	cr_assert_eq(L.nsplices, 0);
	cr_assert_eq(L.nfree_pipes, free_before + 1, "the pipe went back to the pool");
	xfer_free(x);
}

Test(splice, abandoned_mid_transfer_leaks_no_pipe)
{
	const uint64_t n = 3u << 20;
	struct xfer *x = xfer_new(n, &transport_plain);
	cr_assert(splice_begin(&L, &x->sl, &x->src.s, &x->dst.s));
	step(x);
	/* run until some bytes went through and a splice is in flight */
	cr_assert(FX_RUN_UNTIL_DO(&L, x->ngot > 300000 && (x->sl.in_busy || x->sl.out_busy),
				  peers(x)));
	cr_assert_lt(x->ngot, n);
	cr_assert_eq(L.nsplices, 1);
	x->abandoned = true;
	splice_abandon(&L, &x->sl);
	cr_assert(!splice_active(&x->sl));
	/* the exchange ends: both sockets close, their splices end */
	xfer_free(x);
	cr_assert_eq(L.nsplices, 0, "a pipe is still counted in use");
	cr_assert_eq(L.nclosing, 0);
}

Test(splice, refused_when_the_transport_must_see_the_bytes)
{
	struct transport_ops sealed = transport_plain;
	sealed.name = "sealed";
	sealed.splice_ok = false;
	struct xfer *x = xfer_new(1 << 20, &sealed);
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
	xfer_free(x);
}
