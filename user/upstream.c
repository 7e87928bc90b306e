/* upstream.c — per-worker connections to upstream targets: pools keyed by address (LIFO, bounded by
 * `keepalive`), a free list of connection structures, target choice through a snapshot's view,
 * connect through the ring with a connect timeout, and closing pooled connections that the
 * upstream closed. */
#include "upstream.h"

#include <errno.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "tls.h"
#include "transport.h"

void upstream_pools_init(struct upstream_pools *p, struct loop *l)
{
	memset(p, 0, sizeof *p);
	p->loop = l;
}

void upstream_pools_destroy(struct upstream_pools *p)
{
	while (p->list) {
		struct target_pool *pool = p->list;
		p->list = pool->next;
		for (struct upconn *u = pool->idle, *next; u; u = next) {
			next = u->next;
			close(u->s.fd);
			if (u->s.tx->release) /* a TLS connection's state */
				u->s.tx->release(p->loop, &u->s);
			segq_clear(&p->loop->bufs, &u->s.in);
			free(u->s.sc);
			free(u);
		}
		free(pool);
	}
	while (p->free) {
		struct upconn *u = p->free;
		p->free = u->next;
		free(u);
	}
}

static struct target_pool *pool_for(struct upstream_pools *p, const struct rw_sockaddr *a,
				     unsigned worker_id)
{
	for (struct target_pool *pool = p->list; pool; pool = pool->next)
		if (rw_sockaddr_is(a, &pool->addr, pool->addrlen))
			return pool;
	struct target_pool *pool = calloc(1, sizeof *pool);
	if (!pool)
		return NULL;
	memcpy(&pool->addr, &a->addr, a->addrlen);
	pool->addrlen = a->addrlen;
	snprintf(pool->text, sizeof pool->text, "%s", a->text);
	pool->stats = &a->stats->slot[worker_id];
	pool->next = p->list;
	p->list = pool;
	return pool;
}

int upstream_view_build(struct upstream_view *v, struct upstream_pools *p, const struct rw_config *cfg,
			unsigned worker_id)
{
	memset(v, 0, sizeof *v);
	uint32_t n = cfg->nupstreams;
	v->pools = calloc(n ? n : 1, sizeof *v->pools);
	v->rr = calloc(n ? n : 1, sizeof *v->rr);
	if (!v->pools || !v->rr) {
		upstream_view_free(v);
		return -1;
	}
	v->nupstreams = n;
	for (uint32_t i = 0; i < n; i++) {
		const struct rw_upstream *up = &cfg->upstreams[i];
		v->pools[i] = calloc(up->ntargets, sizeof *v->pools[i]);
		if (!v->pools[i]) {
			upstream_view_free(v);
			return -1;
		}
		for (uint32_t t = 0; t < up->ntargets; t++) {
			struct target_pool *pool = pool_for(p, &up->targets[t], worker_id);
			if (!pool) {
				upstream_view_free(v);
				return -1;
			}
			pool->max_idle = up->keepalive;
			v->pools[i][t] = pool;
		}
		/* workers start at different targets so that round robin spreads from the start */
		v->rr[i] = worker_id % up->ntargets;
	}
	return 0;
}

void upstream_view_free(struct upstream_view *v)
{
	if (v->pools)
		for (uint32_t i = 0; i < v->nupstreams; i++)
			free(v->pools[i]);
	free(v->pools);
	free(v->rr);
	memset(v, 0, sizeof *v);
}

static uint32_t pick_target(struct upstream_pools *p, struct upstream_view *v,
			    const struct rw_upstream *up, int avoid)
{
	uint32_t n = up->ntargets, t;
	struct target_pool **pools = v->pools[up->index];
	switch (up->balance) {
	case BALANCE_RANDOM:
		t = (uint32_t)(loop_random(p->loop) % n);
		break;
	case BALANCE_LEAST_CONN: {
		uint32_t start = v->rr[up->index]++ % n;
		t = start;
		for (uint32_t k = 1; k < n; k++) {
			uint32_t i = (start + k) % n;
			if (pools[i]->active < pools[t]->active)
				t = i;
		}
		break;
	}
	default:
		t = v->rr[up->index]++ % n;
		break;
	}
	if (n > 1 && (int)t == avoid)
		t = (t + 1) % n;
	return t;
}

/* The pool's gauges, for the scrape. */
static void pool_counted(struct target_pool *pool)
{
	stat_set(&pool->stats->active, pool->active);
	stat_set(&pool->stats->idle, pool->nidle);
}

void upconn_target_health(struct upconn *u, bool healthy)
{
	struct target_slot *t = u->pool->stats;
	uint64_t now = u->pools->loop->wheel.now_ms;
	stat_set(healthy ? &t->last_success_ms : &t->last_failure_ms, now ? now : 1);
}

static void pool_remove(struct upconn *u)
{
	struct target_pool *pool = u->pool;
	if (u->prev)
		u->prev->next = u->next;
	else
		pool->idle = u->next;
	if (u->next)
		u->next->prev = u->prev;
	u->next = u->prev = NULL;
	pool->nidle--;
	pool_counted(pool);
}

static void upconn_on_data(struct sock *s)
{
	struct upconn *u = (struct upconn *)s;
	if (u->owner) {
		u->owner_ops->data(u->owner);
		return;
	}
	/* an idle pooled connection must stay silent */
	log_warn("upstream %s sent %llu bytes on an idle connection: closing it", upconn_target(u),
		 (unsigned long long)u->s.in.bytes);
	pool_remove(u);
	sock_close(u->pools->loop, &u->s);
}

static void upconn_on_eof(struct sock *s, int err)
{
	struct upconn *u = (struct upconn *)s;
	u->s.eof = true;
	if (u->owner) {
		u->owner_ops->eof(u->owner, err);
		return;
	}
	if (u->state == U_IDLE)
		pool_remove(u);
	sock_close(u->pools->loop, &u->s);
}

static void upconn_on_sent(struct sock *s)
{
	struct upconn *u = (struct upconn *)s;
	if (u->owner)
		u->owner_ops->drained(u->owner);
}

static void upconn_on_connected(struct sock *s, int res)
{
	struct upconn *u = (struct upconn *)s;
	struct loop *l = u->pools->loop;
	if (res < 0) {
		stat_add(&u->pool->stats->connect_failures, 1);
		upconn_target_health(u, false);
		upconn_on_eof(s, -res);
		return;
	}
	upconn_target_health(u, true);
	u->s.connected = true;
	u->state = U_BUSY;
	if (u->owner)
		u->owner_ops->connected(u->owner);
	sock_arm_recv(l, &u->s);
	sock_flush(l, &u->s);
}

static void upconn_on_splice(struct sock *s, bool is_in, int res)
{
	struct upconn *u = (struct upconn *)s;
	if (u->owner)
		u->owner_ops->splice(u->owner, is_in, res);
}

static void upconn_on_recv_stopped(struct sock *s)
{
	struct upconn *u = (struct upconn *)s;
	if (u->owner)
		u->owner_ops->recv_stopped(u->owner);
}

static void upconn_on_free(struct sock *s)
{
	struct upconn *u = (struct upconn *)s;
	u->next = u->pools->free;
	u->pools->free = u;
}

static const struct sock_ops upconn_sock_ops = {
	.on_data = upconn_on_data,
	.on_eof = upconn_on_eof,
	.on_sent = upconn_on_sent,
	.on_send_error = upconn_on_eof,
	.on_connected = upconn_on_connected,
	.on_splice = upconn_on_splice,
	.on_recv_stopped = upconn_on_recv_stopped,
	.on_free = upconn_on_free,
};

static void upconn_timer_fired(struct timer *tm)
{
	struct upconn *u = container_of(tm, struct upconn, s.tm);
	if (u->state == U_CONNECTING) {
		stat_add(&u->pool->stats->connect_timeouts, 1);
		upconn_target_health(u, false);
	}
	if (u->owner)
		u->owner_ops->timeout(u->owner);
	else
		sock_close(u->pools->loop, &u->s);
}

void upconn_arm_timer(struct upconn *u, uint32_t ms)
{
	timer_arm(&u->pools->loop->wheel, &u->s.tm, ms, upconn_timer_fired);
}

static struct upconn *connect_new(struct upstream_pools *p, const struct rw_upstream *up,
				  struct target_pool *pool, enum rw_reason *why)
{
	int fd = socket(pool->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("upstream %s: socket: %s", pool->text, strerror(errno));
		*why = RW_UPSTREAM_UNAVAILABLE;
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct upconn *u = p->free;
	if (u)
		p->free = u->next;
	else if (!(u = malloc(sizeof *u))) {
		log_error("upstream %s: out of memory", pool->text);
		close(fd);
		*why = RW_UPSTREAM_UNAVAILABLE;
		return NULL;
	}
	memset(u, 0, sizeof *u);
	sock_init(&u->s, fd, BUF_GROUP_UPSTREAM, &upconn_sock_ops, &transport_plain);
	if (up->tls && up->tls->rt && tls_connect(p->loop, &u->s, up->tls->rt)) {
		log_error("upstream %s: out of memory for TLS", pool->text);
		close(fd);
		u->next = p->free;
		p->free = u;
		*why = RW_UPSTREAM_UNAVAILABLE;
		return NULL;
	}
	u->pools = p;
	u->pool = pool;
	u->state = U_CONNECTING;
	sock_connect(p->loop, &u->s, (const struct sockaddr *)&pool->addr, pool->addrlen);
	stat_add(&pool->stats->connects, 1);
	upconn_arm_timer(u, up->connect_timeout_ms);
	return u;
}

struct upconn *upstream_acquire(struct upstream_pools *p, struct upstream_view *v,
				const struct rw_upstream *up, int avoid, bool fresh,
				const struct upconn_owner_ops *ops, void *owner, enum rw_reason *why)
{
	uint32_t t = pick_target(p, v, up, avoid);
	struct target_pool *pool = v->pools[up->index][t];
	struct upconn *u = fresh ? NULL : pool->idle;
	if (u) {
		pool->idle = u->next;
		if (pool->idle)
			pool->idle->prev = NULL;
		pool->nidle--;
		u->next = u->prev = NULL;
		u->state = U_BUSY;
		u->reused = true;
		stat_add(&pool->stats->reused, 1);
	} else if (!(u = connect_new(p, up, pool, why))) {
		return NULL;
	}
	u->owner_ops = ops;
	u->owner = owner;
	pool->active++;
	pool_counted(pool);
	return u;
}

int upstream_target_index(const struct upconn *u, const struct upstream_view *v,
			  const struct rw_upstream *up)
{
	for (uint32_t t = 0; t < up->ntargets; t++)
		if (v->pools[up->index][t] == u->pool)
			return (int)t;
	return -1;
}

void upstream_release(struct upconn *u, bool reusable)
{
	struct upstream_pools *p = u->pools;
	struct loop *l = p->loop;
	struct target_pool *pool = u->pool;
	u->owner = NULL;
	u->owner_ops = NULL;
	pool->active--;
	pool_counted(pool);
	timer_cancel(&l->wheel, &u->s.tm);
	if (!reusable || p->stopping || pool->nidle >= pool->max_idle || u->s.closing ||
	    u->s.eof || u->s.in.bytes || u->s.out.bytes) {
		sock_close(l, &u->s);
		return;
	}
	u->state = U_IDLE;
	u->prev = NULL;
	u->next = pool->idle;
	if (pool->idle)
		pool->idle->prev = u;
	pool->idle = u;
	pool->nidle++;
	pool_counted(pool);
	sock_resume(l, &u->s); /* an armed recv tells us when the upstream closes it */
}
