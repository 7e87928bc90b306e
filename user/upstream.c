/* upstream.c — per-worker connections to upstream targets: target choice, keep-alive pools (LIFO,
 * bounded by `keepalive`), connect through the ring with a connect timeout, and closing pooled
 * connections that the upstream closed. */
#include "upstream.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proxy.h"
#include "worker.h"

int upstream_pools_init(struct worker *w)
{
	const struct rw_config *cfg = w->cfg;
	w->pools = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof *w->pools);
	w->rr = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof *w->rr);
	if (!w->pools || !w->rr)
		return -1;
	for (uint32_t i = 0; i < cfg->nupstreams; i++) {
		const struct rw_upstream *up = &cfg->upstreams[i];
		w->pools[i] = calloc(up->ntargets, sizeof *w->pools[i]);
		if (!w->pools[i])
			return -1;
		for (uint32_t t = 0; t < up->ntargets; t++)
			w->pools[i][t].max_idle = up->keepalive;
		/* workers start at different targets so that round robin spreads from the start */
		w->rr[i] = w->id % up->ntargets;
	}
	return 0;
}

void upstream_pools_destroy(struct worker *w)
{
	if (!w->pools)
		return;
	for (uint32_t i = 0; i < w->cfg->nupstreams; i++) {
		if (!w->pools[i])
			continue;
		for (uint32_t t = 0; t < w->cfg->upstreams[i].ntargets; t++) {
			struct upconn *u = w->pools[i][t].idle;
			while (u) {
				struct upconn *next = u->next;
				close(u->s.fd);
				segq_clear(&w->bufs, &u->s.in);
				free(u->s.sc);
				free(u);
				u = next;
			}
		}
		free(w->pools[i]);
	}
	free(w->pools);
	free(w->rr);
	w->pools = NULL;
	w->rr = NULL;
}

static uint32_t pick_target(struct worker *w, const struct rw_upstream *up, int avoid)
{
	uint32_t n = up->ntargets, t;
	struct target_pool *pools = w->pools[up->index];
	switch (up->balance) {
	case BALANCE_RANDOM:
		t = (uint32_t)rand() % n;
		break;
	case BALANCE_LEAST_CONN: {
		uint32_t start = w->rr[up->index]++ % n;
		t = start;
		for (uint32_t k = 1; k < n; k++) {
			uint32_t i = (start + k) % n;
			if (pools[i].active < pools[t].active)
				t = i;
		}
		break;
	}
	default:
		t = w->rr[up->index]++ % n;
		break;
	}
	if (n > 1 && (int)t == avoid)
		t = (t + 1) % n;
	return t;
}

static void upconn_timer_fired(struct timer *tm)
{
	struct upconn *u = container_of(tm, struct upconn, s.tm);
	if (u->x)
		proxy_on_upstream_timeout(u->x);
	else
		sock_close(u->w, &u->s);
}

void upconn_arm_timer(struct upconn *u, uint32_t ms)
{
	timer_arm(&u->w->wheel, &u->s.tm, ms, upconn_timer_fired);
}

static struct upconn *connect_new(struct worker *w, const struct rw_upstream *up,
				  struct target_pool *pool, const struct rw_sockaddr *target,
				  enum rw_reason *why)
{
	int fd = socket(target->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_error("upstream %s: socket: %s", target->text, strerror(errno));
		*why = RW_UPSTREAM_UNAVAILABLE;
		return NULL;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct upconn *u = malloc(sizeof *u);
	if (!u) {
		close(fd);
		*why = RW_UPSTREAM_UNAVAILABLE;
		return NULL;
	}
	memset(u, 0, sizeof *u);
	sock_init(&u->s, fd, SOCK_UPSTREAM);
	u->w = w;
	u->pool = pool;
	u->target = target;
	u->state = U_CONNECTING;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&target->addr, target->addrlen);
	io_uring_sqe_set_data64(sqe, UD(&u->s, OP_CONNECT));
	u->s.inflight++;
	upconn_arm_timer(u, up->connect_timeout_ms);
	return u;
}

struct upconn *upstream_acquire(struct worker *w, const struct rw_upstream *up, int avoid,
				bool fresh, enum rw_reason *why)
{
	uint32_t t = pick_target(w, up, avoid);
	struct target_pool *pool = &w->pools[up->index][t];
	struct upconn *u = fresh ? NULL : pool->idle;
	if (u) {
		pool->idle = u->next;
		if (pool->idle)
			pool->idle->prev = NULL;
		pool->nidle--;
		u->next = u->prev = NULL;
		u->state = U_BUSY;
		u->reused = true;
	} else {
		u = connect_new(w, up, pool, &up->targets[t], why);
		if (!u)
			return NULL;
	}
	pool->active++;
	return u;
}

int upstream_target_index(const struct upconn *u, const struct rw_upstream *up)
{
	return (int)(u->target - up->targets);
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
}

void upstream_release(struct upconn *u, bool reusable)
{
	struct worker *w = u->w;
	struct target_pool *pool = u->pool;
	u->x = NULL;
	pool->active--;
	timer_cancel(&w->wheel, &u->s.tm);
	if (!reusable || w->stopping || pool->nidle >= pool->max_idle || u->s.closing ||
	    u->s.eof || u->s.in.bytes || u->s.out.bytes) {
		sock_close(w, &u->s);
		return;
	}
	u->state = U_IDLE;
	u->prev = NULL;
	u->next = pool->idle;
	if (pool->idle)
		pool->idle->prev = u;
	pool->idle = u;
	pool->nidle++;
	sock_resume(w, &u->s); /* an armed recv tells us when the upstream closes it */
}

void upconn_on_connected(struct upconn *u, int res)
{
	struct worker *w = u->w;
	if (res < 0) {
		u->s.eof = true;
		if (u->x)
			proxy_on_upstream_eof(u->x, -res);
		else
			sock_close(w, &u->s);
		return;
	}
	u->s.connected = true;
	u->state = U_BUSY;
	if (u->x)
		proxy_on_upstream_connected(u->x);
	sock_arm_recv(w, &u->s);
	sock_flush(w, &u->s);
}

void upconn_on_data(struct upconn *u)
{
	if (u->x) {
		proxy_on_upstream_data(u->x);
		return;
	}
	/* an idle pooled connection must stay silent */
	log_warn("upstream %s sent %llu bytes on an idle connection: closing it", u->target->text,
		 (unsigned long long)u->s.in.bytes);
	pool_remove(u);
	sock_close(u->w, &u->s);
}

void upconn_on_eof(struct upconn *u, int err)
{
	u->s.eof = true;
	if (u->x) {
		proxy_on_upstream_eof(u->x, err);
		return;
	}
	if (u->state == U_IDLE)
		pool_remove(u);
	sock_close(u->w, &u->s);
}

void upconn_on_sent(struct upconn *u)
{
	if (u->x)
		proxy_on_upstream_drained(u->x);
}

void upconn_free(struct upconn *u)
{
	free(u);
}
