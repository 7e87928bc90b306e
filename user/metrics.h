/* metrics.h — the gateway's counters and their exposition. Every label set (a route, an upstream,
 * a target, a worker) has one slot per worker, on cache lines of its own; only that worker writes
 * its slot, with a relaxed load and a relaxed store (no shared read-modify-write on the request
 * path); a scrape adds the slots up with relaxed loads. The registry (control thread) gives a
 * snapshot's routes, upstreams and targets their stats objects by name, so a reload that keeps a
 * name keeps its counters; the worker only follows the pointers of its bound snapshot. The
 * renderers write the Prometheus text format (0.0.4) and the JSON of GET /upstreams. */
#ifndef RINGWAY_METRICS_H
#define RINGWAY_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "reason.h"

#define METRICS_LINE 64          /* a cache line: the slots of two workers never share one */
#define METRICS_BUCKETS 15       /* duration histogram buckets, the last one +Inf */
#define METRICS_TLS_COUNTS 3 /* enum tls_count (tls.h) */
#define METRICS_BUF_GROUPS 2     /* buffer rings: client (0) and upstream (1), as in buf.h */
#define METRICS_UNTIMED UINT64_MAX /* a duration that is not known */
#define METRICS_AUTH_METHODS 4   /* api_key, jwt, basic, mtls: the bit number of AUTH_* (auth.h) */

/* What became of a call to Redis (redis.h). */
enum redis_result { REDIS_OK = 0, REDIS_ERROR_REPLY, REDIS_TIMEOUT, REDIS_DISCONNECTED,
		    REDIS_RESULTS };
/* A rate-limit decision (ratelimit.h): from the local table or Redis, or by on_failure. */
enum rl_decision { RL_ADMITTED = 0, RL_REFUSED, RL_FAILURE_LOCAL, RL_FAILURE_ALLOWED,
		   RL_FAILURE_DENIED, RL_DECISIONS };

/* c += n, by the one thread that writes c (a plain load and store, no lock prefix). */
static inline void stat_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
			      memory_order_relaxed);
}

/* c = v (a gauge), by the one thread that writes c. */
static inline void stat_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/* Per bucket, not cumulative (cumulated when rendered). */
struct histogram {
	_Atomic uint64_t counts[METRICS_BUCKETS];
	_Atomic uint64_t sum_ns;
};

/* One worker's counters of a route (or of a frontend's requests that no route took). */
struct route_slot {
	_Atomic uint64_t status_class[5]; /* 1xx .. 5xx */
	_Atomic uint64_t bytes_in, bytes_out;
	struct histogram duration;
} __attribute__((aligned(METRICS_LINE)));

/* One worker's counters of an upstream. */
struct upstream_slot {
	struct histogram response;          /* from the leg's start to its end */
	_Atomic uint64_t errors[RW_REASON_COUNT]; /* upstream failures by reason */
} __attribute__((aligned(METRICS_LINE)));

/* One worker's counters of a target address (its pool on that worker). */
struct target_slot {
	_Atomic uint64_t active, idle;       /* gauges: connections in use, pooled */
	_Atomic uint64_t connects, reused, connect_failures, connect_timeouts;
	_Atomic uint64_t last_success_ms;    /* monotonic_ms() of the last connect or response head */
	_Atomic uint64_t last_failure_ms;    /* of the last failed connect or reset; 0: none yet */
} __attribute__((aligned(METRICS_LINE)));

/* One worker's own counters. */
struct worker_stats {
	unsigned id;                          /* its slot in every label set's stats */
	_Atomic uint64_t clients_open;        /* gauge */
	_Atomic uint64_t clients_accepted;
	_Atomic uint64_t recv_starved[METRICS_BUF_GROUPS]; /* multishot recvs ended by -ENOBUFS */
	_Atomic uint64_t tls[METRICS_TLS_COUNTS];           /* handshakes: full, resumed, failed */
	_Atomic uint64_t refusals[RW_REASON_COUNT]; /* requests answered or failed with a reason */
	_Atomic uint64_t auth[METRICS_AUTH_METHODS][2];       /* credentials checked: valid, not */
	_Atomic uint64_t auth_cache[METRICS_AUTH_METHODS][2]; /* auth_cache lookups: hit, miss */
	_Atomic uint64_t redis_calls[REDIS_RESULTS];          /* enum redis_result */
	_Atomic uint64_t redis_connects, redis_connected;     /* connections made; gauge 0/1 */
	_Atomic uint64_t rate_limit[RL_DECISIONS];            /* enum rl_decision */
	_Atomic(const unsigned *) cq_overflow; /* the ring's kernel overflow counter; NULL: no ring */
} __attribute__((aligned(METRICS_LINE)));

/* The stats objects of label sets: the names they were created for, then one slot per worker. */
struct route_stats {
	struct route_stats *next;   /* the registry's list */
	char *frontend, *route;     /* route "": the frontend's requests that no route took */
	struct route_slot slot[];
};

struct upstream_stats {
	struct upstream_stats *next;
	char *name;
	struct upstream_slot slot[];
};

struct target_stats {
	struct target_stats *next;
	struct rw_sockaddr addr;    /* keyed by address, like the pools */
	struct target_slot slot[];
};

/* What one finished request adds to its counters. */
struct request_sample {
	int status;
	enum rw_reason reason;
	uint64_t bytes_in, bytes_out;
	uint64_t duration_ns;  /* METRICS_UNTIMED: refused before its head was complete */
	uint64_t upstream_ns;  /* METRICS_UNTIMED: no upstream was asked */
};

/* Counts a finished request on worker ws: on rs (its route's, or its frontend's; NULL when its
 * listener's frontend is gone from the snapshot), us (its upstream's, NULL when none was asked)
 * and the worker's refusals by reason. */
void metrics_request(struct worker_stats *ws, struct route_stats *rs, struct upstream_stats *us,
		     const struct request_sample *s);

/* ---- the registry (control thread) ------------------------------------------------------------ */

struct metrics;

struct metrics *metrics_new(unsigned nworkers);
void metrics_free(struct metrics *m);
/* Gives every frontend, route, upstream and upstream target of cfg its stats object, found by name
 * (frontend and route name, upstream name, target address), created when new: a reload that keeps
 * a name keeps its counters. Called on one thread (the one that also renders), before cfg is
 * handed to the workers. 0, or -1 when out of memory: what got no stats object of its own counts
 * into one that is never rendered. Stats objects live until metrics_free. */
int metrics_bind(struct metrics *m, struct rw_config *cfg);
struct worker_stats *metrics_worker(struct metrics *m, unsigned worker_id);

/* ---- rendering (the registry's thread, while the workers run or before they start) ------------- */

struct metrics_process {
	double start_time;          /* unix seconds */
	uint64_t generation;        /* config generation (1 = the config started with) */
	uint64_t reloads_ok, reloads_failed;
	double last_reload_time;    /* unix seconds of the last successful load */
	int xdp_metrics_fd;         /* -1 when the XDP limiter is not running */
};

/* The exposition (text format 0.0.4) of everything, for cfg (the running snapshot: label sets of
 * names no longer configured are not rendered). A malloc'd buffer and its length (a NUL follows),
 * or NULL when out of memory. */
char *metrics_render(struct metrics *m, const struct rw_config *cfg, const struct metrics_process *p,
		     size_t *len);
/* For GET /upstreams: a JSON array of {"name", "balance", "targets": [{"address", "health":
 * "up|down|unknown", "active", "idle", "connects", "reused", "failures",
 * "last_failure_ms_ago" (null when none)}]} for cfg's upstreams. malloc'd (a NUL follows), NULL
 * when out of memory. */
char *metrics_upstreams_json(struct metrics *m, const struct rw_config *cfg, size_t *len);
/* Open client connections, summed over the workers (GET /status). */
uint64_t metrics_open_connections(const struct metrics *m);

#endif
