/* cors.h — CORS at the gateway, per route or as its frontend's default: the `cors` key (allowed
 * origins, methods, request headers, exposed headers, credentials, max_age) and its checks; a
 * preflight (OPTIONS with Origin and Access-Control-Request-Method) to a path whose route, for any
 * method, has cors is answered here before the route's method check (204 with the
 * Access-Control-Allow-* fields, or 403 cors_origin_denied); the `cors` stage puts
 * Access-Control-Allow-Origin (and -Allow-Credentials, -Expose-Headers) with Vary: Origin on the
 * answer of a request from an allowed origin: the proxied one and the gateway's own errors. */
#ifndef RINGWAY_CORS_H
#define RINGWAY_CORS_H

#include <stdbool.h>
#include <stdint.h>

#include "slice.h"
#include "stage.h"

struct loader;
struct rule;
struct exchange;
struct rw_frontend;
typedef struct yaml_node_s yaml_node_t;

#define CORS_ORIGIN_MAX 256u   /* a longer Origin is never allowed (nor configured) */
#define CORS_LIST_MAX 256u     /* the text of headers and expose */
#define CORS_HEADERS_MAX 640u  /* the lines the stage leaves for the answer */

struct rw_cors {
	char **origins;        /* "https://app.example.com"; empty with any_origin */
	uint32_t norigins;
	bool any_origin;       /* origins: ["*"] */
	uint32_t methods;      /* HTTP_METHOD_BIT mask; 0: the route's methods */
	char *headers;         /* "Content-Type, Authorization" or NULL */
	char *expose;          /* "X-Request-Id" or NULL */
	bool credentials;
	uint32_t max_age_ms;   /* 0: no Access-Control-Max-Age */
};

/* Rule parser of the route and frontend key `cors` (rule->offset: their struct rw_transforms,
 * transform.h, which holds the route's cors with its own or its frontend's transforms). */
void cors_parse(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule);
void cors_free(struct rw_cors *c);

/* Whether origin may call under c. */
bool cors_origin_allowed(const struct rw_cors *c, struct slice origin);
/* A preflight to the exchange's path on frontend fe whose route has cors: answered (true), else
 * false and the request is routed as usual. */
bool cors_preflight(struct exchange *x, const struct rw_frontend *fe);
/* The stage of a route with cors. */
enum stage_result cors_stage(struct exchange *x, const struct stage *st);

#endif
