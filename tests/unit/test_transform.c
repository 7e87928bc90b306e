/* test_transform.c — transforms (transform.h): the route and frontend keys request and response
 * read into the snapshot (headers, query parameters percent-encoded, the method), the frontend's
 * as the default of routes without their own, the load-time errors with FILE:LINE:COL, and the
 * helpers the proxy writes heads with (a header line kept, dropped or renamed; the set and add
 * lines; the query rewritten). */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "error_lines.h"
#include "http1.h"
#include "transform.h"
#include "writer.h"

#define HEAD                                                                                 \
	"upstreams:\n"                                                                       \
	"  users: {targets: [\"127.0.0.1:9101\"]}\n"                                         \
	"frontends:\n"                                                                       \
	"  - name: public\n"                                                                 \
	"    listen: [\"127.0.0.1:8080\"]\n"

Test(transform, keys_read_into_the_route)
{
	struct rw_config *cfg = load_ok(
		HEAD
		"    routes:\n"
		"      - name: r\n"
		"        match: {path_prefix: /}\n"
		"        upstream: users\n"
		"        request:\n"
		"          headers: {add: {X-A: \"1\"}, set: {X-B: \"2\"}, remove: [X-C], rename: {X-D: X-E}}\n"
		"          query: {add: {k: \"a b&c\"}, remove: [debug]}\n"
		"          method: PATCH\n"
		"        response:\n"
		"          headers: {add: {X-Served-By: ringway}, remove: [Server]}\n");
	const struct rw_route *rt = &cfg->frontends[0].routes[0];
	const struct rw_request_xf *rq = rt->xf.request;
	cr_assert_not_null(rq);
	cr_assert_eq(rq->headers.nadd, 1);
	cr_assert_str_eq(rq->headers.add[0].name, "X-A");
	cr_assert_str_eq(rq->headers.add[0].value, "1");
	cr_assert_str_eq(rq->headers.set[0].name, "X-B");
	cr_assert_str_eq(rq->headers.remove[0].name, "X-C");
	cr_assert_str_eq(rq->headers.rename[0].value, "X-E");
	cr_assert_str_eq(rq->query_add, "k=a%20b%26c");
	cr_assert_str_eq(rq->query_remove[0], "debug");
	cr_assert_str_eq(rq->method, "PATCH");
	cr_assert_eq(rq->method_id, HTTP_M_PATCH);
	cr_assert_eq(rt->xf.response->headers.nadd, 1);
	cr_assert_eq(rt->xf.response->headers.nremove, 1);
	bool has_stage = false;
	for (uint32_t i = 0; i < rt->nstages; i++)
		has_stage |= !strcmp(rt->stages[i].name, "transform");
	cr_assert(has_stage);
	config_unref(cfg);
}

Test(transform, frontend_default_and_own)
{
	struct rw_config *cfg = load_ok(
		HEAD
		"    request: {headers: {add: {X-F: \"f\"}}}\n"
		"    response: {headers: {add: {X-G: \"g\"}}}\n"
		"    routes:\n"
		"      - {name: a, match: {path_prefix: /a}, upstream: users}\n"
		"      - {name: b, match: {path_prefix: /b}, upstream: users,\n"
		"         request: {headers: {add: {X-H: \"h\"}}}}\n");
	const struct rw_frontend *f = &cfg->frontends[0];
	cr_assert_eq(f->routes[0].xf.request, f->xf.request);
	cr_assert_eq(f->routes[0].xf.response, f->xf.response);
	cr_assert_neq(f->routes[1].xf.request, f->xf.request);
	cr_assert_str_eq(f->routes[1].xf.request->headers.add[0].name, "X-H");
	cr_assert_eq(f->routes[1].xf.response, f->xf.response);
	config_unref(cfg); /* the shared ones are freed once (ASan would tell) */
}

Test(transform, errors_at_their_keys)
{
	EXPECT_ERRORS(HEAD
		      "    routes:\n"
		      "      - name: r\n"
		      "        match: {path_prefix: /}\n"
		      "        upstream: users\n"
		      "        request:\n"
		      "          headers:\n"
		      "            add: {\"a:b\": x, X-Ok: \"v\\n\"}\n"
		      "            remove: [Transfer-Encoding, X-Forwarded-Proto]\n"
		      "          method: get\n"
		      "        response:\n"
		      "          headers: {set: {Connection: close}}\n",
		      "t.yaml:12:19: request.headers.add: 'a:b' is not a valid header name",
		      "t.yaml:12:35: request.headers.add: a header value cannot hold CR, LF, NUL or "
		      "other control characters",
		      "t.yaml:13:22: request.headers.remove: 'Transfer-Encoding' is written by the "
		      "gateway and cannot be transformed",
		      "t.yaml:13:41: request.headers.remove: 'X-Forwarded-Proto' is written by the "
		      "gateway and cannot be transformed",
		      "t.yaml:14:19: request.method: 'get' is not a method a request can be turned "
		      "into (GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE)",
		      "t.yaml:16:27: response.headers.set: 'Connection' is written by the gateway "
		      "and cannot be transformed");
}

static struct rw_header_line line(const char *name, const char *value)
{
	return (struct rw_header_line){ (char *)name, (char *)value, (uint32_t)strlen(name),
					value ? (uint32_t)strlen(value) : 0 };
}

Test(transform, header_kept_dropped_renamed)
{
	struct rw_header_line rm[] = { line("X-Gone", NULL) };
	struct rw_header_line set[] = { line("X-Set", "s") };
	struct rw_header_line add[] = { line("X-Add", "a") };
	struct rw_header_line ren[] = { line("X-Old", "X-New") };
	struct rw_header_xf xf = { .add = add, .nadd = 1, .set = set, .nset = 1, .rename = ren,
				   .nrename = 1, .remove = rm, .nremove = 1 };
	struct slice n = SLICE_LIT("x-gone");
	cr_assert_not(transform_header(&xf, &n));
	n = (struct slice)SLICE_LIT("X-SET");
	cr_assert_not(transform_header(&xf, &n));
	n = (struct slice)SLICE_LIT("x-old");
	cr_assert(transform_header(&xf, &n));
	cr_assert(slice_eq(n, "X-New", 5));
	n = (struct slice)SLICE_LIT("X-Other");
	cr_assert(transform_header(&xf, &n));
	cr_assert(slice_eq(n, "X-Other", 7));
	cr_assert(transform_header(NULL, &n));
	char buf[128];
	struct writer o = writer_init(buf, sizeof buf);
	transform_write_headers(&xf, &o);
	cr_assert_eq(writer_len(&o), strlen("X-Set: s\r\nX-Add: a\r\n"));
	cr_assert(!memcmp(buf, "X-Set: s\r\nX-Add: a\r\n", writer_len(&o)));
}

static void query(const char *in, const char *also, const struct rw_request_xf *xf,
		  const char *want)
{
	char buf[256];
	struct writer o = writer_init(buf, sizeof buf);
	transform_write_query(&o, slice_make(in, strlen(in)), also, xf);
	buf[writer_len(&o)] = '\0';
	cr_assert_str_eq(buf, want);
}

Test(transform, query_rewritten)
{
	char *rm[] = { "debug", "trace" };
	struct rw_request_xf xf = { .query_remove = rm, .nquery_remove = 2, .query_add = "k=v",
				    .query_add_len = 3 };
	query("", NULL, &xf, "?k=v");
	query("a=1&debug=2&debugger=3&trace&b", NULL, &xf, "?a=1&debugger=3&b&k=v");
	query("api_key=s&a=1", "api_key", &xf, "?a=1&k=v");
	xf.query_add = NULL;
	query("debug=1", NULL, &xf, "");
	query("x=1&&y=2", NULL, &xf, "?x=1&y=2");
}

static void path_of(const struct rw_request_xf *xf, const char *in, size_t cap, const char *want)
{
	char buf[256];
	struct writer o = writer_init(buf, cap);
	transform_write_path(&o, slice_make(in, strlen(in)), xf);
	if (!want) {
		cr_assert(o.overflow, "'%s' should not fit in %zu bytes", in, cap);
		return;
	}
	cr_assert_not(o.overflow);
	buf[writer_len(&o)] = '\0';
	cr_assert_str_eq(buf, want);
}

Test(transform, path_regex)
{
	struct rw_config *cfg = load_ok(
		HEAD
		"    routes:\n"
		"      - name: r\n"
		"        match: {path_prefix: /}\n"
		"        upstream: users\n"
		"        request: {path: {regex: \"^/v1/(\\\\w+)/(.*)$\", replace: \"$2/$1/$$\"}}\n");
	const struct rw_request_xf *xf = cfg->frontends[0].routes[0].xf.request;
	cr_assert_not_null(xf->path_re);
	path_of(xf, "/v1/users/7", 256, "/7/users/$");
	path_of(xf, "/v2/users/7", 256, "/v2/users/7");      /* no match: as it is */
	path_of(xf, "", 256, "/");
	path_of(xf, "/v1/users/7", 11, "/7/users/$");        /* exactly fits */
	path_of(xf, "/v1/users/7", 10, NULL);                 /* one byte short */
	path_of(NULL, "x", 256, "/x");
	config_unref(cfg);
}
