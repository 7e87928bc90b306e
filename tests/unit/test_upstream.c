/* test_upstream.c — a worker's upstream pools through a real io_uring (upstream.c): round robin and
 * least connections over a snapshot's view, the keep-alive pool (reuse, its `keepalive` bound, a
 * pooled connection the upstream closes), pools keyed by address and so shared by the views of two
 * snapshots, connection structures reused from the free list, a refused connect and a connect
 * timeout reported to the owner, and what each of these adds to the target's counters (metrics.h).
 * The targets are listening sockets of the test on 127.0.0.1. */
#include "ring_fixture.h"

#include <stdio.h>

#include "config.h"
#include "metrics.h"
#include "upstream.h"

static struct metrics *M;
static struct loop L;
static struct upstream_pools P;
static struct upstream_view V;
static struct rw_config *CFG;

/* What an owner (an exchange's leg) is told; it lets its connection go on eof and timeout. */
struct owner {
	struct upconn *u;
	int nconnected, neof, eof_err, ntimeout;
};

static void o_connected(void *arg)
{
	((struct owner *)arg)->nconnected++;
}
static void o_data(void *arg)
{
}
static void o_eof(void *arg, int err)
{
	struct owner *o = arg;
	o->neof++;
	o->eof_err = err;
	upstream_release(o->u, false);
	o->u = NULL;
}
static void o_timeout(void *arg)
{
	struct owner *o = arg;
	o->ntimeout++;
	upstream_release(o->u, false);
	o->u = NULL;
}
static void o_drained(void *arg)
{
}
static void o_splice(void *arg, bool is_in, int res)
{
}
static void o_stopped(void *arg)
{
}

static const struct upconn_owner_ops o_ops = {
	.connected = o_connected,
	.data = o_data,
	.eof = o_eof,
	.timeout = o_timeout,
	.drained = o_drained,
	.splice = o_splice,
	.recv_stopped = o_stopped,
};

static struct rw_config *load(const char *targets, const char *extra)
{
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
		 "workers: 1\n"
		 "access_log: off\n"
		 "upstreams:\n"
		 "  u:\n"
		 "    targets: [%s]\n"
		 "%s"
		 "frontends:\n"
		 "  - name: f\n"
		 "    listen: [\"127.0.0.1:1\"]\n"
		 "    routes:\n"
		 "      - { name: r, match: { path_prefix: / }, upstream: u }\n",
		 targets, extra);
	struct rw_config *cfg = fx_config(yaml);
	cr_assert_eq(metrics_bind(M, cfg), 0);
	return cfg;
}

/* The worker's (the test's) counters of the first target of CFG's upstream. */
static struct target_slot *TARGET(void)
{
	return &CFG->upstreams[0].targets[0].stats->slot[0];
}

static uint64_t rd(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* n listeners on 127.0.0.1 (lfd[i]) and the configuration of an upstream over them. */
static void start(int *lfd, int n, const char *extra)
{
	char targets[256] = "";
	size_t len = 0;
	for (int i = 0; i < n; i++) {
		uint16_t port;
		lfd[i] = fx_listen(&port, 16);
		len += (size_t)snprintf(targets + len, sizeof targets - len, "%s\"127.0.0.1:%u\"",
					i ? ", " : "", port);
	}
	CFG = load(targets, extra);
	cr_assert_eq(upstream_view_build(&V, &P, CFG, 0), 0);
}

static void setup(void)
{
	fx_loop_open(&L);
	upstream_pools_init(&P, &L);
	M = metrics_new(1);
	cr_assert_not_null(M);
}
static void teardown(void)
{
	FX_RUN_UNTIL(&L, L.nclosing == 0);
	upstream_view_free(&V);
	upstream_pools_destroy(&P);
	if (CFG)
		config_unref(CFG);
	CFG = NULL;
	loop_destroy(&L);
	metrics_free(M);
}

TestSuite(upstream, .init = setup, .fini = teardown, .timeout = 30);

static const struct rw_upstream *UP(void)
{
	return &CFG->upstreams[0];
}

static struct upconn *acquire(struct owner *o)
{
	enum rw_reason why = 0;
	o->u = upstream_acquire(&P, &V, UP(), -1, false, &o_ops, o, &why);
	cr_assert_not_null(o->u, "no connection (reason %d)", why);
	return o->u;
}

static void wait_connected(struct owner *o)
{
	cr_assert(FX_RUN_UNTIL(&L, o->nconnected || o->neof || o->ntimeout));
	cr_assert_eq(o->nconnected, 1, "eof %d (%s), timeout %d", o->neof, strerror(o->eof_err),
		     o->ntimeout);
}

/* Accepts every connection waiting on lfd (non-blocking, at most ACCEPT_MAX); returns how many,
 * closing them unless fds (ACCEPT_MAX of them) is given. */
#define ACCEPT_MAX 8
static int accept_all(int lfd, int *fds)
{
	int n = 0, fd;
	while (n < ACCEPT_MAX && (fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		if (fds)
			fds[n] = fd;
		else
			close(fd);
		n++;
	}
	return n;
}

/* A connection for o, connected, and the upstream's end of it (*srv; closed when srv is NULL). */
static struct upconn *connect_one(int lfd, struct owner *o, int *srv)
{
	struct upconn *u = acquire(o);
	wait_connected(o);
	int fds[ACCEPT_MAX];
	cr_assert_eq(accept_all(lfd, fds), 1, "not one new connection");
	if (srv)
		*srv = fds[0];
	else
		close(fds[0]);
	return u;
}

static void release(struct owner *o, bool reusable)
{
	upstream_release(o->u, reusable);
	o->u = NULL;
}

Test(upstream, round_robin_alternates_targets)
{
	int lfd[2];
	start(lfd, 2, "    balance: round_robin\n");
	struct owner o[4] = { 0 };
	int t[4];
	for (int i = 0; i < 4; i++) {
		acquire(&o[i]);
		t[i] = upstream_target_index(o[i].u, &V, UP());
		wait_connected(&o[i]);
	}
	cr_assert_neq(t[0], t[1]);
	cr_assert_eq(t[0], t[2]);
	cr_assert_eq(t[1], t[3]);
	cr_assert_eq(accept_all(lfd[0], NULL), 2, "target 0 got other than half");
	cr_assert_eq(accept_all(lfd[1], NULL), 2, "target 1 got other than half");
	for (int i = 0; i < 4; i++)
		release(&o[i], false);
	close(lfd[0]);
	close(lfd[1]);
}

Test(upstream, least_conn_picks_the_target_with_fewer_active_connections)
{
	int lfd[2];
	start(lfd, 2, "    balance: least_conn\n");
	struct owner a = { 0 }, b = { 0 }, c = { 0 };
	acquire(&a);
	acquire(&b);
	int ta = upstream_target_index(a.u, &V, UP()), tb = upstream_target_index(b.u, &V, UP());
	cr_assert_neq(ta, tb);
	wait_connected(&a);
	wait_connected(&b);
	release(&b, false); /* ta has one active connection, tb none */
	/* round robin would come back to ta now */
	acquire(&c);
	cr_assert_eq(upstream_target_index(c.u, &V, UP()), tb);
	cr_assert_eq(V.pools[0][ta]->active, 1);
	cr_assert_eq(V.pools[0][tb]->active, 1);
	wait_connected(&c);
	release(&a, false);
	release(&c, false);
	close(lfd[0]);
	close(lfd[1]);
}

Test(upstream, released_connection_is_reused_from_the_pool)
{
	int lfd;
	start(&lfd, 1, "");
	struct owner a = { 0 }, b = { 0 };
	int srv;
	struct upconn *u = connect_one(lfd, &a, &srv);
	cr_assert(!u->reused);
	release(&a, true);
	struct target_pool *pool = V.pools[0][0];
	cr_assert_eq(pool->nidle, 1);
	cr_assert_eq(pool->active, 0);
	cr_assert_eq(rd(&TARGET()->idle), 1, "the idle gauge follows the pool");
	cr_assert_eq(rd(&TARGET()->active), 0);
	fx_turn(&L);
	cr_assert_eq(acquire(&b), u, "the pooled connection is taken again");
	cr_assert(u->reused);
	cr_assert_eq(pool->nidle, 0);
	cr_assert_eq(rd(&TARGET()->idle), 0);
	cr_assert_eq(rd(&TARGET()->active), 1);
	cr_assert_eq(rd(&TARGET()->connects), 1);
	cr_assert_eq(rd(&TARGET()->reused), 1);
	cr_assert_neq(rd(&TARGET()->last_success_ms), 0, "a connect is a sign of health");
	fx_turn(&L);
	cr_assert_eq(accept_all(lfd, NULL), 0, "a new connection was opened");
	release(&b, false);
	close(srv);
	close(lfd);
}

Test(upstream, keepalive_bounds_the_idle_pool)
{
	int lfd;
	start(&lfd, 1, "    keepalive: 1\n");
	struct owner a = { 0 }, b = { 0 };
	acquire(&a);
	acquire(&b);
	wait_connected(&a);
	wait_connected(&b);
	int srv[ACCEPT_MAX];
	cr_assert_eq(accept_all(lfd, srv), 2);
	release(&a, true);
	release(&b, true);
	cr_assert_eq(V.pools[0][0]->nidle, 1, "more idle connections than keepalive");
	/* the one beyond the bound is closed: one of the upstream's ends sees EOF */
	int eofs = 0;
	char c;
	cr_assert(FX_RUN_UNTIL(&L, L.nclosing == 0 && P.free));
	for (int i = 0; i < 2; i++) {
		fx_nonblock(srv[i]);
		if (read(srv[i], &c, 1) == 0)
			eofs++;
		close(srv[i]);
	}
	cr_assert_eq(eofs, 1);
	close(lfd);
}

Test(upstream, pooled_connection_closed_by_the_upstream_leaves_the_pool)
{
	int lfd;
	start(&lfd, 1, "");
	struct owner a = { 0 }, b = { 0 };
	int srv;
	struct upconn *u = connect_one(lfd, &a, &srv);
	release(&a, true);
	struct target_pool *pool = V.pools[0][0];
	cr_assert_eq(pool->nidle, 1);
	close(srv); /* the upstream closes its idle connection */
	cr_assert(FX_RUN_UNTIL(&L, pool->nidle == 0));
	cr_assert(FX_RUN_UNTIL(&L, L.nclosing == 0));
	connect_one(lfd, &b, &srv); /* a new connection: the closed one is not handed out */
	cr_assert(!b.u->reused, "a connection the upstream closed was handed out");
	cr_assert_eq(b.u, u, "the freed structure came back from the free list");
	release(&b, false);
	close(srv);
	close(lfd);
}

Test(upstream, views_of_two_snapshots_share_the_pools_of_one_address)
{
	int lfd;
	uint16_t other;
	start(&lfd, 1, "");
	int lo = fx_listen(&other, 4);
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	char targets[128];
	snprintf(targets, sizeof targets, "\"127.0.0.1:%u\", \"127.0.0.1:%u\"", other,
		 ntohs(sa.sin_port));
	struct rw_config *cfg2 = load(targets, "    keepalive: 8\n");
	struct upstream_view v2;
	cr_assert_eq(upstream_view_build(&v2, &P, cfg2, 0), 0);
	cr_assert_eq(v2.pools[0][1], V.pools[0][0], "the same address has one pool");
	cr_assert_neq(v2.pools[0][0], V.pools[0][0]);
	/* a connection pooled under the old snapshot serves the new one */
	struct owner a = { 0 }, b = { 0 };
	int srv;
	struct upconn *u = connect_one(lfd, &a, &srv);
	release(&a, true);
	enum rw_reason why;
	b.u = upstream_acquire(&P, &v2, &cfg2->upstreams[0], 0, false, &o_ops, &b, &why);
	cr_assert_eq(b.u, u, "the new snapshot's view did not reuse the pooled connection");
	cr_assert(b.u->reused);
	release(&b, false);
	upstream_view_free(&v2);
	config_unref(cfg2);
	close(srv);
	close(lfd);
	close(lo);
}

Test(upstream, connection_structures_come_back_on_the_free_list)
{
	int lfd;
	start(&lfd, 1, "");
	struct owner a = { 0 }, b = { 0 };
	struct upconn *u = connect_one(lfd, &a, NULL);
	release(&a, false);
	cr_assert(FX_RUN_UNTIL(&L, P.free == u));
	enum rw_reason why;
	b.u = upstream_acquire(&P, &V, UP(), -1, true, &o_ops, &b, &why);
	cr_assert_eq(b.u, u, "a freed connection structure was not reused");
	cr_assert(!b.u->reused);
	wait_connected(&b);
	cr_assert_eq(accept_all(lfd, NULL), 1);
	release(&b, false);
	close(lfd);
}

Test(upstream, connect_refused_reaches_the_owner_as_eof)
{
	int lfd;
	start(&lfd, 1, "");
	close(lfd); /* nothing listens on the target's port any more */
	struct owner a = { 0 };
	acquire(&a);
	cr_assert(FX_RUN_UNTIL(&L, a.neof || a.nconnected || a.ntimeout));
	cr_assert_eq(a.neof, 1);
	cr_assert_eq(a.eof_err, ECONNREFUSED, "%s", strerror(a.eof_err));
	cr_assert_eq(a.nconnected, 0);
	cr_assert_eq(rd(&TARGET()->connect_failures), 1);
	cr_assert_neq(rd(&TARGET()->last_failure_ms), 0, "the target is seen failing");
	cr_assert_eq(rd(&TARGET()->last_success_ms), 0);
	cr_assert(FX_RUN_UNTIL(&L, L.nclosing == 0 && P.free));
}

Test(upstream, connect_timeout_reaches_the_owner)
{
	/* A listener with a full accept queue on 127.0.0.1: the kernel drops further SYNs, so a
	 * connect to it hangs. */
	int lfd;
	start(&lfd, 1, "    connect_timeout: 50ms\n");
	struct sockaddr_in sa;
	socklen_t len = sizeof sa;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	listen(lfd, 0);
	int fill[4];
	for (int i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		connect(fill[i], (struct sockaddr *)&sa, sizeof sa);
	}
	struct owner a = { 0 };
	acquire(&a);
	cr_assert(FX_RUN_UNTIL(&L, a.neof || a.nconnected || a.ntimeout));
	for (int i = 0; i < 4; i++)
		close(fill[i]);
	if (a.nconnected) {
		release(&a, false);
		close(lfd);
		FX_SKIP_OR_FAIL("a connect to a full listener did not hang on this host");
	}
	cr_assert_eq(a.ntimeout, 1);
	cr_assert_eq(a.neof, 0);
	cr_assert_eq(rd(&TARGET()->connect_timeouts), 1);
	cr_assert_eq(rd(&TARGET()->connect_failures), 0);
	cr_assert_neq(rd(&TARGET()->last_failure_ms), 0);
	cr_assert(FX_RUN_UNTIL(&L, L.nclosing == 0 && P.free));
	close(lfd);
}
