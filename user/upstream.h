/* upstream.h — connections to upstream targets: per-worker keep-alive pools keyed by the target's
 * address (so they outlive a config snapshot), target choice (round robin, random, least
 * connections) through a per-snapshot view, non-blocking connect through the ring with a connect
 * timeout, and noticing when a pooled connection is closed by the upstream. A connection in use
 * reports to its owner (an exchange's leg) through an owner ops table. */
#ifndef RINGWAY_UPSTREAM_H
#define RINGWAY_UPSTREAM_H

#include <netinet/in.h>
#include <stdbool.h>

#include "config.h"
#include "reason.h"
#include "sock.h"

/* What the owner of a connection in use is told. */
struct upconn_owner_ops {
	void (*connected)(void *owner);
	void (*data)(void *owner);              /* response bytes in u->s.in */
	void (*eof)(void *owner, int err);      /* closed by the upstream, reset, or connect failed */
	void (*timeout)(void *owner);           /* the deadline of upconn_arm_timer passed */
	void (*drained)(void *owner);           /* a send completed */
	void (*splice)(void *owner, bool is_in, int res);
	void (*recv_stopped)(void *owner);
};

enum upconn_state { U_CONNECTING = 0, U_BUSY, U_IDLE };

struct upstream_pools;

/* The connections of one worker to one target address. */
struct target_pool {
	struct target_pool *next; /* the worker's list */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[64];            /* "127.0.0.1:9101", for logs */
	struct upconn *idle;
	uint32_t nidle;
	uint32_t active;          /* connections in use, for least_conn */
	uint32_t max_idle;
	struct target_slot *stats; /* this worker's counters of the address (metrics.h) */
};

struct upconn {
	struct sock s; /* first */
	struct upstream_pools *pools;
	const struct upconn_owner_ops *owner_ops;
	void *owner;                /* NULL while idle */
	struct target_pool *pool;
	uint8_t state;
	bool reused;                /* taken from the keep-alive pool */
	struct upconn *prev, *next; /* the pool's idle list, or the free list */
};

/* A worker's pools, and its free connection structures (no malloc per connection). */
struct upstream_pools {
	struct loop *loop;
	struct target_pool *list;
	struct upconn *free;
	bool stopping;              /* draining: nothing goes back to a pool */
};

/* One snapshot's upstreams seen through a worker's pools: pools[upstream][target], and the
 * round-robin position of each upstream. */
struct upstream_view {
	struct target_pool ***pools;
	uint32_t *rr;
	uint32_t nupstreams;
};

void upstream_pools_init(struct upstream_pools *p, struct loop *l);
/* Closes idle connections, frees pools and free structures (after the loop has ended). */
void upstream_pools_destroy(struct upstream_pools *p);
/* The view of cfg's upstreams (bound: metrics_bind); pools for new addresses are created, with
 * worker_id's slot of their target's stats. worker_id also spreads round robin across workers. 0,
 * or -1 when out of memory. */
int upstream_view_build(struct upstream_view *v, struct upstream_pools *p, const struct rw_config *cfg,
			unsigned worker_id);
void upstream_view_free(struct upstream_view *v);

/* Picks a target of up (skipping `avoid` when there is another) and returns a connection to it
 * for owner: a pooled one unless `fresh`, or a new one being connected. NULL with *why set when
 * none can be had. */
struct upconn *upstream_acquire(struct upstream_pools *p, struct upstream_view *v,
				const struct rw_upstream *up, int avoid, bool fresh,
				const struct upconn_owner_ops *ops, void *owner, enum rw_reason *why);
/* Index of the target of up a connection goes to (-1: none of them). */
int upstream_target_index(const struct upconn *u, const struct upstream_view *v,
			  const struct rw_upstream *up);
/* The owner is done with u: keep it in the pool if reusable, else close it. */
void upstream_release(struct upconn *u, bool reusable);
/* Passive health of u's target: it sent a response head on u (healthy), or reset u before one. */
void upconn_target_health(struct upconn *u, bool healthy);
/* Arms u's deadline (connect, then response); on expiry the owner is told. */
void upconn_arm_timer(struct upconn *u, uint32_t ms);
/* The target's address as text. */
static inline const char *upconn_target(const struct upconn *u)
{
	return u->pool->text;
}

#endif
