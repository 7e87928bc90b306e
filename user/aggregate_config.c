/* aggregate_config.c — owns the `aggregate` key of a route (config.c lists it in its rules):
 * timeout, max_body, merge, collision and the calls (key, upstream, path template, method,
 * required, after), with every template checked at load against what it may name: the route's
 * path parameters, query.NAME, header.NAME, consumer, and the body or status of a call it comes
 * after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "config.h"
#include "http1.h"

#define DEFAULT_TIMEOUT_MS 10000u
#define DEFAULT_MAX_BODY (1u << 20)

static const char *const merge_words[] = { "object", "shallow", NULL };
static const char *const collision_words[] = { "error", "first", "last", NULL };

struct call_ctx {
	struct rw_aggregate *a;
	struct rw_agg_call *c;
	uint32_t index;
};

static void parse_call_key(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct call_ctx *cx = obj;
	const char *s = schema_read_name(ld, v, rule->key);
	if (!s)
		return;
	for (uint32_t i = 0; i < cx->index; i++) {
		if (cx->a->calls[i].key && !strcmp(cx->a->calls[i].key, s)) {
			schema_report(ld, v, "key: duplicate call key '%s'", s);
			return;
		}
	}
	cx->c->key = schema_strdup(ld, s);
}

static void parse_call_upstream(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct call_ctx *cx = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	for (uint32_t i = 0; i < ld->cfg->nupstreams; i++) {
		if (!strcmp(ld->cfg->upstreams[i].name, s)) {
			cx->c->ups = &ld->cfg->upstreams[i];
			return;
		}
	}
	schema_report(ld, v, "unknown upstream '%s'", s);
}

static void parse_call_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct call_ctx *cx = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (s[0] != '/') {
		schema_report(ld, v, "path: '%s' must start with '/'", s);
		return;
	}
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c <= ' ' || *c == 0x7f || *c == '#') {
			schema_report(ld, v, "path: '%s' must not contain spaces, control characters or '#'", s);
			return;
		}
	}
	cx->c->path = schema_strdup(ld, s);
}

static void parse_call_method(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct call_ctx *cx = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	enum http_method m = http_method_lookup(s, strlen(s));
	if (m == HTTP_M_OTHER)
		schema_report(ld, v,
			      "method: unknown method '%s' (expected one of GET, HEAD, POST, PUT, DELETE, "
			      "PATCH, OPTIONS, TRACE)", s);
	else
		cx->c->method_id = (uint8_t)m;
}

static void parse_call_required(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct call_ctx *cx = obj;
	struct rule r = *rule;
	r.offset = 0;
	schema_parse_bool(ld, v, &cx->c->required, &r);
}

static void parse_call_after(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct call_ctx *cx = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	for (uint32_t i = 0; i < cx->index; i++) {
		if (cx->a->calls[i].key && !strcmp(cx->a->calls[i].key, s)) {
			cx->c->after = (int8_t)i;
			return;
		}
	}
	schema_report(ld, v, "after: '%s' is not the key of an earlier call", s);
}

static const struct rule call_rules[] = {
	{ .key = "key", .parse = parse_call_key, .required = true },
	{ .key = "upstream", .parse = parse_call_upstream, .required = true },
	{ .key = "path", .parse = parse_call_path, .required = true },
	{ .key = "method", .parse = parse_call_method },
	{ .key = "required", .parse = parse_call_required },
	{ .key = "after", .parse = parse_call_after },
	{ 0 }
};

/* Is call index anc the call c waits for, or one that call waits for? */
static bool waits_for(const struct rw_aggregate *a, const struct rw_agg_call *c, int anc)
{
	for (int i = c->after; i >= 0; i = a->calls[i].after)
		if (i == anc)
			return true;
	return false;
}

static bool route_has_param(const struct rw_route *rt, const char *name, size_t len)
{
	for (const char *p = rt->path ? strchr(rt->path, '{') : NULL; p; p = strchr(p + 1, '{'))
		if (!strncmp(p + 1, name, len) && p[1 + len] == '}')
			return true;
	return false;
}

/* Every {name} of c's path names something it may use. */
static void check_template(struct loader *ld, const yaml_node_t *v, const struct rw_route *rt,
			   const struct rw_aggregate *a, const struct rw_agg_call *c)
{
	for (const char *p = strchr(c->path, '{'); p; p = strchr(p, '{')) {
		const char *close = strchr(p, '}');
		if (!close || close == p + 1 || memchr(p + 1, '{', (size_t)(close - p - 1))) {
			schema_report(ld, v, "path: '%s': a '{' without its name and '}'", c->path);
			return;
		}
		const char *name = p + 1;
		size_t len = (size_t)(close - name);
		const char *dot = memchr(name, '.', len);
		size_t head = dot ? (size_t)(dot - name) : len;
		bool ok = false;
		if (len == 8 && !strncmp(name, "consumer", 8)) {
			ok = true;
		} else if (dot && ((head == 5 && !strncmp(name, "query", 5)) ||
				   (head == 6 && !strncmp(name, "header", 6)))) {
			ok = len > head + 1;
		} else if (dot) {
			for (uint32_t i = 0; i < a->ncalls; i++) {
				const struct rw_agg_call *o = &a->calls[i];
				if (o->key && strlen(o->key) == head && !strncmp(o->key, name, head)) {
					const char *rest = dot + 1;
					size_t rlen = len - head - 1;
					bool form = (rlen == 6 && !strncmp(rest, "status", 6)) ||
						    (rlen > 5 && !strncmp(rest, "body.", 5));
					if (form && !waits_for(a, c, (int)i)) {
						schema_report(ld, v,
							      "path: '%s': {%.*s} needs 'after: %s' (or a call "
							      "after it)", c->path, (int)len, name, o->key);
						return;
					}
					ok = form;
				}
			}
		} else {
			ok = route_has_param(rt, name, len);
		}
		if (!ok) {
			schema_report(ld, v,
				      "path: '%s': unknown template {%.*s} (expected a path parameter of the "
				      "route, query.NAME, header.NAME, consumer, KEY.status or KEY.body...)",
				      c->path, (int)len, name);
			return;
		}
		p = close + 1;
	}
}

static void parse_calls(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	struct rw_aggregate *a = rt->aggregate;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	uint32_t n = schema_item_count(v);
	if (n == 0 || n > AGG_MAX_CALLS) {
		schema_report(ld, v, "calls: between 1 and %u calls", AGG_MAX_CALLS);
		return;
	}
	a->ncalls = n;
	for (uint32_t i = 0; i < n; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		struct rw_agg_call *c = &a->calls[i];
		c->method_id = HTTP_M_GET;
		c->required = true;
		c->after = -1;
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		struct call_ctx cx = { a, c, i };
		uint32_t before = ld->nerrors;
		schema_walk_mapping(ld, map, "call", call_rules, &cx);
		if (ld->nerrors == before && c->path) {
			yaml_node_pair_t *p = schema_find_pair(ld, map, "path");
			check_template(ld, schema_node(ld, p->value), rt, a, c);
		}
	}
}

static void parse_merge(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rule r = *rule;
	r.offset = 0;
	schema_parse_enum(ld, v, &((struct rw_route *)obj)->aggregate->merge, &r);
}

static void parse_collision(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_aggregate *a = ((struct rw_route *)obj)->aggregate;
	struct rule r = *rule;
	r.offset = 0;
	schema_parse_enum(ld, v, &a->collision, &r);
	if (a->merge != AGG_MERGE_SHALLOW)
		schema_report(ld, v, "collision: only applies to merge: shallow");
}

static void parse_timeout(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rule r = *rule;
	r.offset = 0;
	schema_parse_duration(ld, v, &((struct rw_route *)obj)->aggregate->timeout_ms, &r);
}

static void parse_max_body(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rule r = *rule;
	r.offset = 0;
	schema_parse_size64(ld, v, &((struct rw_route *)obj)->aggregate->max_body, &r);
}

static const struct rule aggregate_rules[] = {
	{ .key = "timeout", .parse = parse_timeout },
	{ .key = "max_body", .parse = parse_max_body, .min = 1, .max = 64u << 20 },
	{ .key = "merge", .parse = parse_merge, .words = merge_words },
	{ .key = "collision", .parse = parse_collision, .words = collision_words },
	{ .key = "calls", .parse = parse_calls, .required = true },
	{ 0 }
};

void aggregate_parse(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	rt->aggregate = schema_alloc(ld, 1, sizeof *rt->aggregate);
	if (!rt->aggregate)
		return;
	rt->aggregate->timeout_ms = DEFAULT_TIMEOUT_MS;
	rt->aggregate->max_body = DEFAULT_MAX_BODY;
	schema_walk_mapping(ld, v, "aggregate", aggregate_rules, rt);
}

void aggregate_free(struct rw_aggregate *a)
{
	if (!a)
		return;
	for (uint32_t i = 0; i < a->ncalls; i++) {
		free(a->calls[i].key);
		free(a->calls[i].path);
	}
	free(a);
}
