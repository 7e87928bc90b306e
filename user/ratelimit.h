/* ratelimit.h — request rate limits at layer 7: the rate_limit lists of routes and frontends and
 * the rate_limit_store section (ratelimit_config.c), GCRA per key, the table all workers of the
 * process share (lock-free), the stage that admits or refuses a request (429), and the RateLimit
 * header fields of every answer on a limited route (ratelimit.c). With a Redis store the decision
 * is made in Redis (redis.h), shared by every gateway using it; when Redis does not answer in
 * time, on_failure decides. */
#ifndef RINGWAY_RATELIMIT_H
#define RINGWAY_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "stage.h"

enum rl_by { RL_BY_CONSUMER = 0, RL_BY_IP, RL_BY_ROUTE, RL_BY_HEADER };
enum rl_on_failure { RL_ON_FAILURE_LOCAL = 0, RL_ON_FAILURE_ALLOW, RL_ON_FAILURE_DENY };

/* One entry of a rate_limit list. */
struct rw_rate_limit {
	uint8_t by;             /* enum rl_by */
	char *header;           /* RL_BY_HEADER: the header's name */
	uint32_t count;         /* N of N per period */
	uint32_t period_s;      /* 1, 60 or 3600 */
	uint32_t burst;         /* requests at once (default N) */
	uint64_t interval_ns;   /* the GCRA emission interval: period / N */
	char *scope;            /* whose buckets: "fe/<frontend>#i" or "rt/<frontend>/<route>#i" */
	uint64_t scope_hash;    /* xxHash of scope: the seed of its keys' hashes */
};

/* The limits of a route (its frontend's first, shared with the frontend's other routes, then its
 * own), or of a frontend. */
struct rw_rate_limits {
	struct rw_rate_limit *list;
	uint32_t count;
	char *policy;           /* the RateLimit-Policy value of the route's answers (compiled) */
};

struct rw_sockaddr;
/* The rate_limit_store section. */
struct rw_rate_limit_store {
	bool redis;             /* the section is present: limits are decided in Redis */
	struct rw_sockaddr *addr;
	uint8_t on_failure;     /* enum rl_on_failure */
	uint32_t timeout_ms;
};

#define RL_HEADERS_MAX 160u /* the RateLimit-Limit, -Remaining and -Reset lines */

struct config_section;
struct loader;
struct rule;
struct rw_frontend;
struct yaml_node_s;
extern const struct config_section rate_limit_store_section;
/* The rate_limit key of a route or frontend (the struct rw_rate_limits at rule->offset). */
void ratelimit_parse(struct loader *ld, struct yaml_node_s *v, void *obj, const struct rule *rule);
/* After a route's keys: its list becomes the frontend's limits then its own, each with its scope,
 * and the RateLimit-Policy value. */
void ratelimit_route_finish(struct loader *ld, struct rw_rate_limits *rt, const char *route,
			    const struct rw_frontend *f);
/* The frontend's own limits get their scopes (before its routes are finished). */
void ratelimit_frontend_finish(struct loader *ld, struct rw_rate_limits *fl, const char *frontend);
void ratelimit_free(struct rw_rate_limits *l);

/* ---- GCRA (pure) ------------------------------------------------------------------------------ */

/* The decision for one request on one key whose theoretical arrival time is *tat (ns, 0: new) at
 * now: admitted (and *tat advanced) or not. after_ns: on admission, the bucket's debt (TAT - now,
 * from which remaining and reset follow); on refusal, how long until one request would pass. */
bool gcra_admit(uint64_t *tat, uint64_t now, uint64_t interval_ns, uint32_t burst,
		uint64_t *after_ns);
/* Requests that could pass right now with a debt of debt_ns. */
uint32_t gcra_remaining(uint64_t debt_ns, uint64_t interval_ns, uint32_t burst);

/* ---- the shared table -------------------------------------------------------------------------- */

#define RL_TABLE_SLOTS 65536u
#define RL_TABLE_PROBES 8u

/* Allocates the process's table once (before the workers start); false when out of memory. */
bool ratelimit_table_init(void);
/* The decision for key hash h under the table (exact across threads: a CAS loop on the key's
 * TAT). */
bool ratelimit_table_admit(uint64_t h, uint64_t now, uint64_t interval_ns, uint32_t burst,
			   uint64_t *after_ns);
/* Gives back one admission of key h (a later limit of the same request refused it). */
void ratelimit_table_undo(uint64_t h, uint64_t interval_ns);
/* Keys taken from a live bucket because every probed slot was in use (metrics). */
uint64_t ratelimit_table_evictions(void);

/* The stage (stage.h): every limit of the route admits the request, or it is refused (429, or 503
 * rate_limit_unavailable when the store failed and on_failure is deny). */
stage_fn ratelimit_check;
stage_cancel_fn ratelimit_cancel;

/* ---- cluster mode (Redis) ----------------------------------------------------------------------- */

struct shard;
/* The Redis key of a request's bucket: "ringway:rl:{<32 hex digits>}", the 128-bit xxHash of the
 * limit's scope and the request's value in braces (the key's Redis Cluster slot). */
#define RL_REDIS_KEY_MAX 48u
/* The Lua script of one decision: GCRA on Redis's own clock (TIME), as gcra_admit; KEYS[1] the
 * bucket, ARGV[1] the interval in microseconds, ARGV[2] the burst; returns {1, debt µs} or
 * {0, retry µs}. */
extern const char ratelimit_script_text[];
/* The shard's pooled waits (worker teardown). */
void ratelimit_shard_free(struct shard *sh);

#endif
