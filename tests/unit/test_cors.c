/* test_cors.c — the cors key (cors.h) read into routes and frontends (origins, methods, headers,
 * expose, credentials, max_age; the frontend's as the default), its errors with FILE:LINE:COL,
 * the cors stage placed right after the body limit, and which origins are allowed. */
#include <criterion/criterion.h>
#include <string.h>

#include "config.h"
#include "cors.h"
#include "error_lines.h"
#include "http1.h"

#define HEAD                                                                                 \
	"upstreams:\n"                                                                       \
	"  users: {targets: [\"127.0.0.1:9101\"]}\n"                                         \
	"frontends:\n"                                                                       \
	"  - name: public\n"                                                                 \
	"    listen: [\"127.0.0.1:8080\"]\n"

Test(cors, read_and_inherited)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = load(
		HEAD
		"    cors: {origins: [\"*\"]}\n"
		"    routes:\n"
		"      - {name: a, match: {path_prefix: /a}, upstream: users}\n"
		"      - name: b\n"
		"        match: {path_prefix: /b}\n"
		"        upstream: users\n"
		"        cors:\n"
		"          origins: [\"https://app.example.com\", \"http://localhost:3000\"]\n"
		"          methods: [GET, POST]\n"
		"          headers: [Content-Type, Authorization]\n"
		"          expose: [X-Request-Id]\n"
		"          credentials: true\n"
		"          max_age: 10m\n",
		&errs);
	for (uint32_t i = 0; i < errs.count; i++)
		cr_log_error("unexpected: %s", errs.lines[i]);
	cr_assert_not_null(cfg);
	const struct rw_frontend *f = &cfg->frontends[0];
	cr_assert_eq(f->routes[0].xf.cors, f->xf.cors);
	cr_assert(f->xf.cors->any_origin);
	const struct rw_cors *c = f->routes[1].xf.cors;
	cr_assert_eq(c->norigins, 2);
	cr_assert_eq(c->methods, HTTP_METHOD_BIT(HTTP_M_GET) | HTTP_METHOD_BIT(HTTP_M_POST));
	cr_assert_str_eq(c->headers, "Content-Type, Authorization");
	cr_assert_str_eq(c->expose, "X-Request-Id");
	cr_assert(c->credentials);
	cr_assert_eq(c->max_age_ms, 600000);
	cr_assert_str_eq(f->routes[1].stages[1].name, "cors");
	cr_assert(cors_origin_allowed(c, SLICE_LIT("https://app.example.com")));
	cr_assert(cors_origin_allowed(c, SLICE_LIT("http://localhost:3000")));
	cr_assert_not(cors_origin_allowed(c, SLICE_LIT("https://app.example.com.evil")));
	cr_assert_not(cors_origin_allowed(c, SLICE_LIT("")));
	cr_assert(cors_origin_allowed(f->xf.cors, SLICE_LIT("null")));
	config_unref(cfg);
}

Test(cors, errors)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = load(HEAD
				     "    routes:\n"
				     "      - name: r\n"
				     "        match: {path_prefix: /}\n"
				     "        upstream: users\n"
				     "        cors: {origins: [\"x\", \"*\"], expose: [\"a b\"], colour: red}\n",
				     &errs);
	const char *const want[] = {
		"t.yaml:10:26: cors.origins: 'x' is not an origin (scheme://host[:port], no path, at "
		"most 256 characters)",
		"t.yaml:10:31: cors.origins: \"*\" must be the only entry",
		"t.yaml:10:46: cors.expose: 'a b' is not a valid header name",
		"t.yaml:10:54: cors: unknown key 'colour' (valid keys: origins, methods, headers, "
		"expose, credentials, max_age)",
	};
	bool same = same_error_lines(&errs, want, sizeof want / sizeof want[0]);
	cr_assert_null(cfg);
	cr_assert(same);
	config_errors_free(&errs);
}
