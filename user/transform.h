/* transform.h — request and response transforms of a route (or its frontend's default): request
 * headers added, set, removed and renamed, query parameters added and removed, the path
 * rewritten by a regex with captures (PCRE2), the method overridden; response headers added, set
 * and removed. The configuration (the route and frontend keys `request:` and `response:`, their
 * load-time checks, path regexes compiled) is transform_config.c; the runtime is transform.c: the
 * `transform` stage and the helpers proxy.c writes the upstream request head and the proxied
 * response head with. The gateway's own headers are never touched (refused at load). */
#ifndef RINGWAY_TRANSFORM_H
#define RINGWAY_TRANSFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "slice.h"
#include "stage.h"

struct loader;
struct rule;
struct writer;
struct rw_frontend;
struct rw_route;
struct rw_config;
typedef struct yaml_node_s yaml_node_t;

struct rw_header_line {
	char *name;
	char *value;  /* for rename: the new name */
	uint32_t name_len, value_len;
};

/* Header edits: for each incoming line, a name in remove or set drops it, a name in rename gets
 * its new name (value kept); then the set lines and the add lines are written. Names compare
 * case-insensitively. */
struct rw_header_xf {
	struct rw_header_line *add, *set, *rename;
	uint32_t nadd, nset, nrename;
	struct rw_header_line *remove; /* name only */
	uint32_t nremove;
};

struct pcre2_real_code_8;

struct rw_request_xf {
	struct rw_header_xf headers;
	char **query_remove;     /* parameter names (as written in the query, not decoded) */
	uint32_t nquery_remove;
	char *query_add;         /* "k=v&k2=v2", percent-encoded at load; NULL: none */
	uint32_t query_add_len;
	struct pcre2_real_code_8 *path_re; /* path.regex compiled (JIT when available); NULL: none */
	char *path_regex;        /* as written, for logs */
	char *path_replace;      /* path.replace: $1..$9 (or ${N}) are the captures, $$ a '$' */
	uint32_t path_replace_len;
	char *method;            /* NULL: the client's */
	uint8_t method_id;       /* enum http_method of method */
};

struct rw_response_xf {
	struct rw_header_xf headers;
};

/* A route's or frontend's transforms and CORS. A route without its own request (response, cors)
 * uses its frontend's: the pointer is then shared and not owned. */
struct rw_cors;
struct rw_transforms {
	struct rw_request_xf *request;
	struct rw_response_xf *response;
	struct rw_cors *cors;   /* cors.h */
	bool own_request, own_response, own_cors;
};

/* ---- configuration (transform_config.c) ---- */
/* Rule parsers of the keys `request` and `response` (obj: the route or frontend, rule->offset:
 * its struct rw_transforms). */
void transform_parse_request(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule);
void transform_parse_response(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule);
/* After a route is read: the frontend's transforms where the route has none. */
void transform_route_finish(struct rw_transforms *rt, const struct rw_transforms *frontend);
void transform_free(struct rw_transforms *t);

/* ---- runtime (transform.c) ---- */
/* The stage: the method override's id on the exchange (framing, retries). */
enum stage_result transform_stage(struct exchange *x, const struct stage *st);
/* Whether an incoming header line stays (false: removed or replaced by a set); *name becomes the
 * renamed name when a rename applies. xf may be NULL. */
bool transform_header(const struct rw_header_xf *xf, struct slice *name);
/* Writes the set and add lines. xf may be NULL. */
void transform_write_headers(const struct rw_header_xf *xf, struct writer *o);
/* Writes the upstream path: path (after strip_prefix) rewritten by xf's path regex when it
 * matches (the first match replaced), else as it is; a '/' first when it lacks one. */
void transform_write_path(struct writer *o, struct slice path, const struct rw_request_xf *xf);
/* Writes "?query" without the parameters of xf->query_remove and without also_drop (NULL: none;
 * the API key a route hides), then xf's added parameters (xf may be NULL); nothing when nothing
 * is left. The one writer of a forwarded query that leaves parameters out. */
void transform_write_query(struct writer *o, struct slice query, const char *also_drop,
			   const struct rw_request_xf *xf);

#endif
