/* transform_config.c — the configuration of transforms (transform.h): the route and frontend keys
 * `request:` (headers: add, set, remove, rename; query: add, remove; method) and `response:`
 * (headers: add, set, remove); their checks at load (header names are tokens, values hold no
 * control character but tab — CR, LF and NUL above all —, the gateway's own headers are refused,
 * the method is a known one), query parameters percent-encoded once here, the path regex compiled
 * (PCRE2, JIT where available) and its replacement checked against its captures; the frontend's
 * transforms as the default of its routes, and freeing them. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "cors.h"
#include "http1.h"
#include "schema.h"
#include "transform.h"

/* The headers only the gateway writes (or that frame the message): a transform of one of these
 * is a configuration error. */
static const char *const own_headers[] = {
	"Host", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive", "Proxy-Connection",
	"TE", "Trailer", "Upgrade", "Via", "traceparent", "tracestate", "X-Request-Id",
	"X-Access-Token", NULL
};

/* Why name cannot be transformed, or NULL. */
static const char *own_header(struct loader *ld, const char *name)
{
	for (const char *const *h = own_headers; *h; h++)
		if (!strcasecmp(name, *h))
			return "is written by the gateway";
	if (!strncasecmp(name, "X-Consumer-", 11) || !strncasecmp(name, "X-Forwarded-", 12))
		return "is written by the gateway";
	const struct rw_identity_token *idt = &ld->cfg->identity;
	if (idt->enabled && idt->header && !strcasecmp(name, idt->header))
		return "is the identity token header";
	return NULL;
}

/* A header name for what (e.g. "request.headers.set"): a token the gateway does not own. */
static bool check_name(struct loader *ld, const yaml_node_t *n, const char *what, const char *s)
{
	if (!schema_valid_token(s, SCHEMA_HEADER_SEPARATORS)) {
		schema_report(ld, n, "%s: '%s' is not a valid header name", what, s);
		return false;
	}
	const char *why = own_header(ld, s);
	if (why) {
		schema_report(ld, n, "%s: '%s' %s and cannot be transformed", what, s, why);
		return false;
	}
	return true;
}

/* A header value: no control character but tab (so no CR, LF or NUL), no leading or trailing
 * whitespace. */
static bool check_value(struct loader *ld, const yaml_node_t *n, const char *what)
{
	const unsigned char *s = n->data.scalar.value;
	size_t len = n->data.scalar.length;
	for (size_t i = 0; i < len; i++)
		if ((s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f) {
			schema_report(ld, n, "%s: a header value cannot hold CR, LF, NUL or other "
				      "control characters", what);
			return false;
		}
	if (len && (s[0] == ' ' || s[0] == '\t' || s[len - 1] == ' ' || s[len - 1] == '\t')) {
		schema_report(ld, n, "%s: a header value cannot start or end with whitespace", what);
		return false;
	}
	return true;
}

static bool line_set(struct loader *ld, struct rw_header_line *l, const char *name,
		     const char *value)
{
	l->name = schema_strdup(ld, name);
	l->value = value ? schema_strdup(ld, value) : NULL;
	if (!l->name || (value && !l->value))
		return false;
	l->name_len = (uint32_t)strlen(name);
	l->value_len = value ? (uint32_t)strlen(value) : 0;
	return true;
}

/* A mapping name: value (add, set) or name: new-name (rename) into *list. */
static void read_pairs(struct loader *ld, yaml_node_t *v, const char *what, bool rename,
		       struct rw_header_line **list, uint32_t *n)
{
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, what))
		return;
	schema_check_keys(ld, v, what);
	if (!(*list = schema_alloc(ld, schema_pair_count(v), sizeof **list)))
		return;
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = schema_node(ld, p->key), *val = schema_node(ld, p->value);
		const char *name = schema_expect_scalar(ld, k, what);
		const char *value = schema_expect_scalar(ld, val, what);
		if (!name || !value || !check_name(ld, k, what, name))
			continue;
		if (rename ? !check_name(ld, val, what, value) : !check_value(ld, val, what))
			continue;
		if (line_set(ld, &(*list)[*n], name, value))
			(*n)++;
	}
}

static void free_lines(struct rw_header_line *l, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		free(l[i].name);
		free(l[i].value);
	}
	free(l);
}

/* A sequence of header names. */
static void read_remove(struct loader *ld, yaml_node_t *v, const char *what,
			struct rw_header_line **list, uint32_t *n)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	if (!(*list = schema_alloc(ld, schema_item_count(v), sizeof **list)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *k = schema_node(ld, *i);
		const char *name = schema_expect_scalar(ld, k, what);
		if (name && check_name(ld, k, what, name) && line_set(ld, &(*list)[*n], name, NULL))
			(*n)++;
	}
}

/* The walker's rules for a headers mapping fill this, with the prefix of error messages. */
struct headers_read {
	struct rw_header_xf *xf;
	const char *prefix; /* "request.headers" */
};

static void hdr_what(const struct headers_read *r, const struct rule *rule, char *buf, size_t n)
{
	snprintf(buf, n, "%s.%s", r->prefix, rule->key);
}

static void parse_hdr_add(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct headers_read *r = obj;
	char what[64];
	hdr_what(r, rule, what, sizeof what);
	read_pairs(ld, v, what, false, &r->xf->add, &r->xf->nadd);
}

static void parse_hdr_set(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct headers_read *r = obj;
	char what[64];
	hdr_what(r, rule, what, sizeof what);
	read_pairs(ld, v, what, false, &r->xf->set, &r->xf->nset);
}

static void parse_hdr_rename(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct headers_read *r = obj;
	char what[64];
	hdr_what(r, rule, what, sizeof what);
	read_pairs(ld, v, what, true, &r->xf->rename, &r->xf->nrename);
}

static void parse_hdr_remove(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct headers_read *r = obj;
	char what[64];
	hdr_what(r, rule, what, sizeof what);
	read_remove(ld, v, what, &r->xf->remove, &r->xf->nremove);
}

static const struct rule request_header_rules[] = {
	{ .key = "add", .parse = parse_hdr_add },
	{ .key = "set", .parse = parse_hdr_set },
	{ .key = "remove", .parse = parse_hdr_remove },
	{ .key = "rename", .parse = parse_hdr_rename },
	{ 0 }
};

static const struct rule response_header_rules[] = {
	{ .key = "add", .parse = parse_hdr_add },
	{ .key = "set", .parse = parse_hdr_set },
	{ .key = "remove", .parse = parse_hdr_remove },
	{ 0 }
};

static void free_header_xf(struct rw_header_xf *xf)
{
	free_lines(xf->add, xf->nadd);
	free_lines(xf->set, xf->nset);
	free_lines(xf->rename, xf->nrename);
	free_lines(xf->remove, xf->nremove);
}

/* ---- query ---- */

#define QUERY_SAFE SCHEMA_ALNUM "-._~"

/* s percent-encoded (RFC 3986 unreserved kept) onto the end of buf at *len. */
static void encode(char *buf, size_t *len, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c && strchr(QUERY_SAFE, *c)) {
			buf[(*len)++] = (char)*c;
		} else {
			buf[(*len)++] = '%';
			buf[(*len)++] = hex[*c >> 4];
			buf[(*len)++] = hex[*c & 15];
		}
	}
}

static void parse_query_add(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_request_xf *rq = obj;
	(void)rule;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, "request.query.add"))
		return;
	schema_check_keys(ld, v, "request.query.add");
	size_t cap = 1;
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		yaml_node_t *k = schema_node(ld, p->key), *val = schema_node(ld, p->value);
		const char *name = schema_expect_scalar(ld, k, "request.query.add");
		const char *value = schema_expect_scalar(ld, val, "request.query.add");
		if (!name || !value)
			return;
		if (!*name) {
			schema_report(ld, k, "request.query.add: a parameter name cannot be empty");
			return;
		}
		if (strlen(value) != val->data.scalar.length) {
			schema_report(ld, val, "request.query.add: a value cannot hold NUL");
			return;
		}
		cap += 3 * (strlen(name) + strlen(value)) + 2;
	}
	char *buf = schema_alloc(ld, cap, 1);
	if (!buf)
		return;
	size_t len = 0;
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		if (len)
			buf[len++] = '&';
		encode(buf, &len, schema_text(schema_node(ld, p->key)));
		buf[len++] = '=';
		encode(buf, &len, schema_text(schema_node(ld, p->value)));
	}
	buf[len] = '\0';
	if (!len) {
		free(buf);
		return;
	}
	rq->query_add = buf;
	rq->query_add_len = (uint32_t)len;
}

static void parse_query_remove(struct loader *ld, yaml_node_t *v, void *obj,
			       const struct rule *rule)
{
	struct rw_request_xf *rq = obj;
	(void)rule;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, "request.query.remove"))
		return;
	if (!(rq->query_remove = schema_alloc(ld, schema_item_count(v), sizeof *rq->query_remove)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *k = schema_node(ld, *i);
		const char *name = schema_expect_scalar(ld, k, "request.query.remove");
		if (!name)
			continue;
		if (!schema_valid_token(name, "&=#")) {
			schema_report(ld, k, "request.query.remove: '%s' is not a valid parameter name",
				      name);
			continue;
		}
		if ((rq->query_remove[rq->nquery_remove] = schema_strdup(ld, name)))
			rq->nquery_remove++;
	}
}

static const struct rule query_rules[] = {
	{ .key = "add", .parse = parse_query_add },
	{ .key = "remove", .parse = parse_query_remove },
	{ 0 }
};

/* ---- path ---- */

struct path_read {
	struct rw_request_xf *rq;
	const yaml_node_t *regex_node, *replace_node;
};

static void parse_path_regex(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct path_read *r = obj;
	const char *s = schema_expect_scalar(ld, v, "request.path.regex");
	if (!s)
		return;
	int err;
	PCRE2_SIZE off;
	pcre2_code *re = pcre2_compile((PCRE2_SPTR)s, v->data.scalar.length, 0, &err, &off, NULL);
	if (!re) {
		PCRE2_UCHAR msg[160];
		pcre2_get_error_message(err, msg, sizeof msg);
		schema_report(ld, v, "request.path.regex: %s at offset %zu of '%s'", (char *)msg,
			      (size_t)off, s);
		return;
	}
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* without JIT, the interpreter matches */
	r->rq->path_re = re;
	r->rq->path_regex = schema_strdup(ld, s);
	r->regex_node = v;
}

/* Runs after regex: $N and ${N} name a capture the regex has (N <= 9), $$ is a '$'; the rest is
 * what a path may hold. */
static void parse_path_replace(struct loader *ld, yaml_node_t *v, void *obj,
			       const struct rule *rule)
{
	struct path_read *r = obj;
	const char *s = schema_expect_scalar(ld, v, "request.path.replace");
	if (!s)
		return;
	uint32_t captures = 0;
	if (r->rq->path_re)
		pcre2_pattern_info(r->rq->path_re, PCRE2_INFO_CAPTURECOUNT, &captures);
	for (const char *p = s; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= ' ' || c >= 0x7f || c == '?' || c == '#') {
			schema_report(ld, v, "request.path.replace: '%s' holds a character a path cannot "
				      "(a space, a control, '?' or '#')", s);
			return;
		}
		if (c != '$')
			continue;
		if (p[1] == '$') {
			p++;
			continue;
		}
		bool braced = p[1] == '{';
		const char *d = p + 1 + braced;
		if (*d < '1' || *d > '9' || (braced && d[1] != '}') ||
		    (!braced && d[1] >= '0' && d[1] <= '9')) {
			schema_report(ld, v, "request.path.replace: '%s': '$' must be followed by a "
				      "capture number 1..9 (${N} when a digit follows), or be written $$", s);
			return;
		}
		if (r->rq->path_re && (uint32_t)(*d - '0') > captures) {
			schema_report(ld, v, "request.path.replace: $%c names no capture of the regex "
				      "(it has %u)", *d, captures);
			return;
		}
		p = d + braced;
	}
	r->rq->path_replace = schema_strdup(ld, s);
	r->rq->path_replace_len = (uint32_t)strlen(s);
}

static const struct rule path_rules[] = {
	{ .key = "regex", .parse = parse_path_regex, .required = true },
	{ .key = "replace", .parse = parse_path_replace, .required = true },
	{ 0 }
};

static void parse_req_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct path_read r = { .rq = obj };
	(void)rule;
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, "request.path"))
		schema_walk_mapping(ld, v, "request.path", path_rules, &r);
}

/* ---- request and response ---- */

static void parse_req_headers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_request_xf *rq = obj;
	(void)rule;
	struct headers_read r = { &rq->headers, "request.headers" };
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, "request.headers"))
		schema_walk_mapping(ld, v, "request.headers", request_header_rules, &r);
}

static void parse_req_query(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	(void)rule;
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, "request.query"))
		schema_walk_mapping(ld, v, "request.query", query_rules, obj);
}

static void parse_req_method(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_request_xf *rq = obj;
	(void)rule;
	const char *m = schema_expect_scalar(ld, v, "request.method");
	if (!m)
		return;
	enum http_method id = http_method_lookup(m, strlen(m));
	if (id == HTTP_M_OTHER) {
		schema_report(ld, v, "request.method: '%s' is not a method a request can be turned "
			      "into (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE)", m);
		return;
	}
	rq->method = schema_strdup(ld, m);
	rq->method_id = (uint8_t)id;
}

static const struct rule request_rules[] = {
	{ .key = "headers", .parse = parse_req_headers },
	{ .key = "query", .parse = parse_req_query },
	{ .key = "path", .parse = parse_req_path },
	{ .key = "method", .parse = parse_req_method },
	{ 0 }
};

static void parse_resp_headers(struct loader *ld, yaml_node_t *v, void *obj,
			       const struct rule *rule)
{
	struct rw_response_xf *rs = obj;
	(void)rule;
	struct headers_read r = { &rs->headers, "response.headers" };
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, "response.headers"))
		schema_walk_mapping(ld, v, "response.headers", response_header_rules, &r);
}

static const struct rule response_rules[] = {
	{ .key = "headers", .parse = parse_resp_headers },
	{ 0 }
};

static void free_request(struct rw_request_xf *rq)
{
	if (!rq)
		return;
	free_header_xf(&rq->headers);
	for (uint32_t i = 0; i < rq->nquery_remove; i++)
		free(rq->query_remove[i]);
	free(rq->query_remove);
	free(rq->query_add);
	free(rq->method);
	pcre2_code_free(rq->path_re);
	free(rq->path_regex);
	free(rq->path_replace);
	free(rq);
}

void transform_parse_request(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_transforms *t = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	if (!(t->request = schema_alloc(ld, 1, sizeof *t->request)))
		return;
	t->own_request = true;
	schema_walk_mapping(ld, v, rule->key, request_rules, t->request);
}

void transform_parse_response(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_transforms *t = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	if (!(t->response = schema_alloc(ld, 1, sizeof *t->response)))
		return;
	t->own_response = true;
	schema_walk_mapping(ld, v, rule->key, response_rules, t->response);
}

void transform_route_finish(struct rw_transforms *rt, const struct rw_transforms *frontend)
{
	if (!rt->request) {
		rt->request = frontend->request;
		rt->own_request = false;
	}
	if (!rt->response) {
		rt->response = frontend->response;
		rt->own_response = false;
	}
	if (!rt->cors) {
		rt->cors = frontend->cors;
		rt->own_cors = false;
	}
}

void transform_free(struct rw_transforms *t)
{
	if (t->own_request)
		free_request(t->request);
	if (t->own_response && t->response) {
		free_header_xf(&t->response->headers);
		free(t->response);
	}
	if (t->own_cors)
		cors_free(t->cors);
	t->request = NULL;
	t->response = NULL;
	t->cors = NULL;
	t->own_request = t->own_response = t->own_cors = false;
}
