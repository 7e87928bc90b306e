/* upstream.h — connections to upstream targets: per-worker keep-alive pools per target, target
 * choice (round robin, random, least connections), non-blocking connect through the ring with a
 * connect timeout, and noticing when a pooled connection is closed by the upstream. */
#ifndef RINGWAY_UPSTREAM_H
#define RINGWAY_UPSTREAM_H

#include <stdbool.h>

#include "config.h"
#include "reason.h"
#include "sock.h"

struct worker;
struct exchange;

enum upconn_state { U_CONNECTING = 0, U_BUSY, U_IDLE };

struct upconn {
	struct sock s; /* first */
	struct worker *w;
	struct exchange *x; /* NULL while idle */
	struct target_pool *pool;
	const struct rw_sockaddr *target;
	uint8_t state;
	bool reused;                /* taken from the keep-alive pool */
	struct upconn *prev, *next; /* the pool's idle list */
};

struct target_pool {
	struct upconn *idle;
	uint32_t nidle;
	uint32_t active; /* connections in use, for least_conn */
	uint32_t max_idle;
};

int upstream_pools_init(struct worker *w);
void upstream_pools_destroy(struct worker *w);

/* Picks a target of up (skipping `avoid` when there is another) and returns a connection to it:
 * a pooled one unless `fresh`, or a new one being connected. NULL with *why set when none can be
 * had. */
struct upconn *upstream_acquire(struct worker *w, const struct rw_upstream *up, int avoid,
				bool fresh, enum rw_reason *why);
/* Index of the target a connection goes to. */
int upstream_target_index(const struct upconn *u, const struct rw_upstream *up);
/* The exchange is done with u: keep it in the pool if reusable, else close it. */
void upstream_release(struct upconn *u, bool reusable);

/* Arms u's deadline (connect, then response); on expiry the exchange is told. */
void upconn_arm_timer(struct upconn *u, uint32_t ms);
void upconn_on_connected(struct upconn *u, int res);
void upconn_on_data(struct upconn *u);
void upconn_on_eof(struct upconn *u, int err);
void upconn_on_sent(struct upconn *u);
void upconn_free(struct upconn *u);

#endif
