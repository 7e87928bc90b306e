/* aggregate.h — the aggregate handler: a route that answers from several upstream calls. Each call
 * is one leg of the exchange (proxy.h) with a collecting sink that takes its JSON body into memory;
 * calls without `after` run at once, concurrently on the worker's ring, a call with `after` when
 * that one has answered (its templates may read the answer); one deadline for the whole aggregate
 * on the worker's timer wheel. The answer is the calls' bodies merged with jansson (object: one key
 * per call; shallow: their top-level keys), 200 with X-Ringway-Partial naming optional calls that
 * failed, or 502 aggregate_call_failed / aggregate_merge_conflict. Its config (aggregate_config.c)
 * is the route's `aggregate` key. */
#ifndef RINGWAY_AGGREGATE_H
#define RINGWAY_AGGREGATE_H

#include <stdbool.h>
#include <stdint.h>

#include "schema.h"

struct exchange;
struct rw_route;
struct rw_upstream;

enum agg_merge { AGG_MERGE_OBJECT = 0, AGG_MERGE_SHALLOW };
enum agg_collision { AGG_COLLISION_ERROR = 0, AGG_COLLISION_FIRST, AGG_COLLISION_LAST };

#define AGG_MAX_CALLS 16

struct rw_agg_call {
	char *key;
	const struct rw_upstream *ups;
	uint8_t method_id;      /* enum http_method; GET unless `method` */
	bool required;          /* default true */
	int8_t after;           /* index of the call it waits for, -1: none */
	char *path;             /* the template, checked at load: "/users/{id}?x={query.x}" */
};

struct rw_aggregate {
	uint32_t timeout_ms;    /* the whole aggregate */
	uint64_t max_body;      /* each call's response body */
	uint8_t merge;          /* enum agg_merge */
	uint8_t collision;      /* enum agg_collision */
	uint32_t ncalls;
	struct rw_agg_call calls[AGG_MAX_CALLS];
};

/* The route's `aggregate` key (config.c's route rules; runs after match, so path parameters are
 * known). */
schema_parse_fn aggregate_parse;
void aggregate_free(struct rw_aggregate *a);

/* The route's handler, after its stages: starts the calls. */
void aggregate_handle(struct exchange *x);
/* The exchange ends (answered, or the client went away): the calls' legs, the deadline and the
 * collected bodies go. */
void aggregate_end(struct exchange *x);
/* The worker ends: the state its pooled exchange x kept goes. */
void aggregate_free_kept(struct exchange *x);

#endif
