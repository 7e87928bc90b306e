/* cors.c — CORS at the gateway (cors.h): the `cors` key of routes and frontends with its checks,
 * the preflight answered before the route's method check, and the stage that leaves the
 * Access-Control-* lines for the answer of a request from an allowed origin. */
#include "cors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "exchange.h"
#include "http1.h"
#include "router.h"
#include "schema.h"
#include "transform.h"
#include "writer.h"

/* ---- configuration ---- */

/* An origin as browsers send it: scheme "://" host [":" port], nothing after, visible ASCII. */
static bool valid_origin(const char *s)
{
	const char *sep = strstr(s, "://");
	if (!sep || sep == s || strlen(s) > CORS_ORIGIN_MAX)
		return false;
	for (const char *p = s; p < sep; p++)
		if (!strchr(SCHEMA_ALNUM "+.-", *p))
			return false;
	const char *host = sep + 3;
	if (!*host)
		return false;
	for (const char *p = host; *p; p++)
		if (*p <= ' ' || *p >= 0x7f || strchr("/?#,\"\\", *p))
			return false;
	return true;
}

static void parse_origins(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_cors *c = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, "cors.origins"))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "cors.origins: at least one origin (or \"*\") is required");
		return;
	}
	if (!(c->origins = schema_alloc(ld, schema_item_count(v), sizeof *c->origins)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *n = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, n, "cors.origins");
		if (!s)
			continue;
		if (!strcmp(s, "*")) {
			if (schema_item_count(v) > 1)
				schema_report(ld, n, "cors.origins: \"*\" must be the only entry");
			c->any_origin = true;
			continue;
		}
		if (!valid_origin(s)) {
			schema_report(ld, n, "cors.origins: '%s' is not an origin (scheme://host[:port], "
				      "no path, at most %u characters)", s, CORS_ORIGIN_MAX);
			continue;
		}
		if ((c->origins[c->norigins] = schema_strdup(ld, s)))
			c->norigins++;
	}
}

static void parse_methods(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_cors *c = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, "cors.methods"))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *n = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, n, "cors.methods");
		if (!s)
			continue;
		enum http_method m = http_method_lookup(s, strlen(s));
		if (m == HTTP_M_OTHER)
			schema_report(ld, n, "cors.methods: unknown method '%s' (expected one of GET, "
				      "HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE)", s);
		else
			c->methods |= HTTP_METHOD_BIT(m);
	}
}

/* A list of header names joined as "A, B" into *out. */
static void read_header_list(struct loader *ld, yaml_node_t *v, const char *what, char **out)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	char text[CORS_LIST_MAX + 1];
	size_t len = 0;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *n = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, n, what);
		if (!s)
			continue;
		if (!schema_valid_token(s, SCHEMA_HEADER_SEPARATORS)) {
			schema_report(ld, n, "%s: '%s' is not a valid header name", what, s);
			continue;
		}
		size_t need = strlen(s) + (len ? 2 : 0);
		if (len + need > CORS_LIST_MAX) {
			schema_report(ld, n, "%s: the list is longer than %u characters", what,
				      CORS_LIST_MAX);
			return;
		}
		len += (size_t)snprintf(text + len, sizeof text - len, "%s%s", len ? ", " : "", s);
	}
	if (len)
		*out = schema_strdup(ld, text);
}

static void parse_headers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	read_header_list(ld, v, "cors.headers", &((struct rw_cors *)obj)->headers);
}

static void parse_expose(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	read_header_list(ld, v, "cors.expose", &((struct rw_cors *)obj)->expose);
}

static const struct rule cors_rules[] = {
	{ .key = "origins", .parse = parse_origins, .required = true },
	{ .key = "methods", .parse = parse_methods },
	{ .key = "headers", .parse = parse_headers },
	{ .key = "expose", .parse = parse_expose },
	{ .key = "credentials", .parse = schema_parse_bool, .offset = offsetof(struct rw_cors, credentials) },
	{ .key = "max_age", .parse = schema_parse_duration, .offset = offsetof(struct rw_cors, max_age_ms) },
	{ 0 }
};

void cors_parse(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_transforms *t = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	if (!(t->cors = schema_alloc(ld, 1, sizeof *t->cors)))
		return;
	t->own_cors = true;
	schema_walk_mapping(ld, v, rule->key, cors_rules, t->cors);
}

void cors_free(struct rw_cors *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < c->norigins; i++)
		free(c->origins[i]);
	free(c->origins);
	free(c->headers);
	free(c->expose);
	free(c);
}

/* ---- runtime ---- */

bool cors_origin_allowed(const struct rw_cors *c, struct slice origin)
{
	if (origin.len == 0 || origin.len > CORS_ORIGIN_MAX)
		return false;
	if (c->any_origin)
		return true;
	for (uint32_t i = 0; i < c->norigins; i++)
		if (strlen(c->origins[i]) == origin.len && slice_ieq(origin, c->origins[i], origin.len))
			return true;
	return false;
}

/* Access-Control-Allow-Origin (and -Allow-Credentials) and Vary: Origin for an allowed origin. */
static void write_allow_origin(struct writer *o, const struct rw_cors *c, struct slice origin)
{
	w_str(o, "Access-Control-Allow-Origin: ");
	if (c->any_origin && !c->credentials)
		w_str(o, "*");
	else
		w_slice(o, origin);
	w_str(o, "\r\n");
	if (c->credentials)
		w_str(o, "Access-Control-Allow-Credentials: true\r\n");
}

/* The route for the preflight's path with cors: the one for OPTIONS, for the requested method,
 * or for any method the path allows. */
static const struct rw_route *preflight_route(const struct rw_frontend *fe,
					      const struct http_request *req, struct slice want)
{
	uint32_t allow = 0, unused = 0;
	const struct rw_route *rt = router_match(fe->router, req->host, req->path, HTTP_M_OPTIONS,
						 &allow);
	if (rt && rt->xf.cors)
		return rt;
	enum http_method m = http_method_lookup(want.p, want.len);
	if (m != HTTP_M_OTHER && m != HTTP_M_OPTIONS) {
		rt = router_match(fe->router, req->host, req->path, (uint8_t)m, &unused);
		if (rt && rt->xf.cors)
			return rt;
	}
	for (uint8_t i = 1; i < HTTP_M_COUNT; i++) {
		if (!(allow & HTTP_METHOD_BIT(i)))
			continue;
		rt = router_match(fe->router, req->host, req->path, i, &unused);
		if (rt && rt->xf.cors)
			return rt;
	}
	return NULL;
}

bool cors_preflight(struct exchange *x, const struct rw_frontend *fe)
{
	const struct http_request *req = &x->req;
	struct slice origin = http_header_value(req, "Origin");
	struct slice want = http_header_value(req, "Access-Control-Request-Method");
	if (!origin.len || !want.len)
		return false;
	const struct rw_route *rt = preflight_route(fe, req, want);
	if (!rt)
		return false;
	const struct rw_cors *c = rt->xf.cors;
	x->route = rt;
	if (!cors_origin_allowed(c, origin)) {
		exchange_refuse(x, RW_CORS_ORIGIN_DENIED, "Vary: Origin\r\n", false);
		return true;
	}
	char lines[CORS_HEADERS_MAX + 2 * CORS_LIST_MAX];
	struct writer o = writer_init(lines, sizeof lines - 1);
	write_allow_origin(&o, c, origin);
	uint32_t methods = c->methods ? c->methods : rt->methods;
	char list[96];
	if (!methods)
		w_str(&o, "Access-Control-Allow-Methods: GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS\r\n");
	else if (http_method_list(methods, list, sizeof list)) {
		w_str(&o, "Access-Control-Allow-Methods: ");
		w_str(&o, list);
		w_str(&o, "\r\n");
	}
	if (c->headers) {
		w_str(&o, "Access-Control-Allow-Headers: ");
		w_str(&o, c->headers);
		w_str(&o, "\r\n");
	}
	if (c->max_age_ms) {
		w_str(&o, "Access-Control-Max-Age: ");
		w_u64(&o, c->max_age_ms / 1000);
		w_str(&o, "\r\n");
	}
	w_str(&o, "Vary: Origin\r\n");
	lines[writer_len(&o)] = '\0';
	client_answer_empty(x->c, 204, o.overflow ? "" : lines);
	return true;
}

enum stage_result cors_stage(struct exchange *x, const struct stage *st)
{
	(void)st;
	const struct rw_cors *c = x->route->xf.cors;
	struct slice origin = http_header_value(&x->req, "Origin");
	if (!cors_origin_allowed(c, origin))
		return STAGE_CONTINUE;
	struct writer o = writer_init(x->cors_headers, sizeof x->cors_headers);
	write_allow_origin(&o, c, origin);
	if (c->expose) {
		w_str(&o, "Access-Control-Expose-Headers: ");
		w_str(&o, c->expose);
		w_str(&o, "\r\n");
	}
	w_str(&o, "Vary: Origin\r\n");
	x->cors_headers_len = o.overflow ? 0 : (uint16_t)writer_len(&o);
	return STAGE_CONTINUE;
}
