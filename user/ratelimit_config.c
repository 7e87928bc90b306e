/* ratelimit_config.c — owns the rate_limit key of routes and frontends (a list of {by, rate,
 * burst}; config.c lists it in its rules), the scopes that say whose buckets a limit counts in (a
 * frontend's limits are shared by its routes, a route's are its own), the RateLimit-Policy value
 * of a route's answers, and the rate_limit_store section (redis, on_failure, timeout). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "config.h"
#include "ratelimit.h"
#include "schema.h"

#define MAX_COUNT 1000000000u
#define MAX_BURST 1000000000u
#define DEFAULT_TIMEOUT_MS 50u
#define POLICY_MAX 512u

static void parse_by(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_rate_limit *l = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!strcmp(s, "consumer")) {
		l->by = RL_BY_CONSUMER;
	} else if (!strcmp(s, "ip")) {
		l->by = RL_BY_IP;
	} else if (!strcmp(s, "route")) {
		l->by = RL_BY_ROUTE;
	} else if (!strncmp(s, "header:", 7) && schema_valid_token(s + 7, SCHEMA_HEADER_SEPARATORS)) {
		l->by = RL_BY_HEADER;
		l->header = schema_strdup(ld, s + 7);
	} else {
		schema_report(ld, v, "by: '%s' is not one of consumer, ip, route, header:NAME", s);
	}
}

/* "N/s", "N/m", "N/min", "N/h". */
static void parse_rate(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_rate_limit *l = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key), *p = s;
	if (!s)
		return;
	uint64_t n = 0;
	bool digits = schema_parse_digits(&p, &n);
	uint32_t period = !digits || *p != '/' ? 0 :
			  !strcmp(p, "/s") ? 1 : !strcmp(p, "/m") || !strcmp(p, "/min") ? 60 :
			  !strcmp(p, "/h") ? 3600 : 0;
	if (!period || n < 1 || n > MAX_COUNT) {
		schema_report(ld, v, "rate: '%s' is not N/s, N/m or N/h with N from 1 to %u", s,
			      MAX_COUNT);
		return;
	}
	l->count = (uint32_t)n;
	l->period_s = period;
	l->interval_ns = (uint64_t)period * 1000000000ull / n;
	if (!l->interval_ns)
		schema_report(ld, v, "rate: '%s' is more than one request per nanosecond", s);
}

static const struct rule limit_rules[] = {
	{ .key = "by", .parse = parse_by, .required = true },
	{ .key = "rate", .parse = parse_rate, .required = true },
	{ .key = "burst", .parse = schema_parse_u32, .offset = offsetof(struct rw_rate_limit, burst),
	  .min = 1, .max = MAX_BURST },
	{ 0 }
};

void ratelimit_parse(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_rate_limits *ls = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "rate_limit: empty list (leave the key out for no limit)");
		return;
	}
	if (!(ls->list = schema_alloc(ld, schema_item_count(v), sizeof *ls->list)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		struct rw_rate_limit *l = &ls->list[ls->count++];
		if (schema_expect_kind(ld, item, YAML_MAPPING_NODE, rule->key))
			schema_walk_mapping(ld, item, "rate_limit", limit_rules, l);
		if (!l->burst)
			l->burst = l->count;
	}
}

/* l's scope, its hash. */
static void set_scope(struct loader *ld, struct rw_rate_limit *l, const char *scope)
{
	if ((l->scope = schema_strdup(ld, scope)))
		l->scope_hash = XXH3_64bits(scope, strlen(scope));
}

void ratelimit_frontend_finish(struct loader *ld, struct rw_rate_limits *fl, const char *frontend)
{
	char scope[256];
	for (uint32_t i = 0; i < fl->count; i++) {
		snprintf(scope, sizeof scope, "fe/%s#%u", frontend ? frontend : "?", i);
		set_scope(ld, &fl->list[i], scope);
	}
}

/* A copy of limit l (its strings too). */
static void copy_limit(struct loader *ld, struct rw_rate_limit *to, const struct rw_rate_limit *l)
{
	*to = *l;
	to->header = l->header ? schema_strdup(ld, l->header) : NULL;
	to->scope = l->scope ? schema_strdup(ld, l->scope) : NULL;
}

void ratelimit_route_finish(struct loader *ld, struct rw_rate_limits *rt, const char *route,
			    const struct rw_frontend *f)
{
	const struct rw_rate_limits *fl = &f->rate_limits;
	uint32_t n = fl->count + rt->count;
	if (!n)
		return;
	struct rw_rate_limit *all = schema_alloc(ld, n, sizeof *all);
	if (!all)
		return;
	char scope[512];
	for (uint32_t i = 0; i < fl->count; i++)
		copy_limit(ld, &all[i], &fl->list[i]);
	for (uint32_t i = 0; i < rt->count; i++) {
		all[fl->count + i] = rt->list[i];
		snprintf(scope, sizeof scope, "rt/%s/%s#%u", f->name ? f->name : "?",
			 route ? route : "?", i);
		set_scope(ld, &all[fl->count + i], scope);
	}
	free(rt->list);
	rt->list = all;
	rt->count = n;
	char policy[POLICY_MAX];
	size_t len = 0;
	for (uint32_t i = 0; i < n && len < sizeof policy; i++) {
		int w = snprintf(policy + len, sizeof policy - len, "%s%u;w=%u;burst=%u", i ? ", " : "",
				 all[i].count, all[i].period_s, all[i].burst);
		len += w > 0 ? (size_t)w : 0;
	}
	rt->policy = schema_strdup(ld, len < sizeof policy ? policy : "");
}

void ratelimit_free(struct rw_rate_limits *ls)
{
	for (uint32_t i = 0; i < ls->count; i++) {
		free(ls->list[i].header);
		free(ls->list[i].scope);
	}
	free(ls->list);
	free(ls->policy);
}

/* ---- rate_limit_store ------------------------------------------------------------------------- */

static const char *const on_failure_words[] = { "local", "allow", "deny", NULL };

static void parse_redis(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_rate_limit_store *st = obj;
	if (!(st->addr = schema_alloc(ld, 1, sizeof *st->addr)))
		return;
	schema_read_address(ld, v, rule->key, st->addr);
}

static const struct rule store_rules[] = {
	{ .key = "redis", .parse = parse_redis, .required = true },
	{ .key = "on_failure", .parse = schema_parse_enum,
	  .offset = offsetof(struct rw_rate_limit_store, on_failure), .words = on_failure_words },
	{ .key = "timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_rate_limit_store, timeout_ms) },
	{ 0 }
};

static void parse_store(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_rate_limit_store *st = &((struct rw_config *)obj)->rate_limit_store;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	st->redis = true;
	schema_walk_mapping(ld, v, rule->key, store_rules, st);
	if (!st->timeout_ms)
		st->timeout_ms = DEFAULT_TIMEOUT_MS;
}

static void store_free(struct rw_config *cfg)
{
	struct rw_rate_limit_store *st = &cfg->rate_limit_store;
	if (st->addr)
		schema_free_addresses(st->addr, 1);
}

/* The shared table, allocated once for the process when a configuration first has limits. */
static void store_compile(struct loader *ld, struct rw_config *cfg)
{
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		for (uint32_t r = 0; r < cfg->frontends[f].nroutes; r++)
			if (cfg->frontends[f].routes[r].rate_limits.count && !ratelimit_table_init()) {
				schema_out_of_memory(ld);
				return;
			}
}

/* Optional; after frontends (its compile looks at their routes). */
const struct config_section rate_limit_store_section = {
	.rule = { .key = "rate_limit_store", .parse = parse_store },
	.compile = store_compile,
	.free = store_free,
};
