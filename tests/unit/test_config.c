/* test_config.c — the configuration loader, through config_load_string: every field of a full
 * configuration, defaults, every class of error with its exact FILE:LINE:COL line, durations,
 * sizes, addresses, CIDR prefixes, the xdp section, and route precedence through the routers it
 * compiles. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "auth.h"
#include "error_lines.h"
#include "identity.h"
#include "password.h"
#include "http1.h"
#include "router.h"
#include "schema.h"

/* A valid upstream section (lines 1-2) and the start of a frontend (lines 3-6); tests append
 * routes from line 7 on, each route item indented by 6. */
#define UPSTREAMS                                                                            \
	"upstreams:\n"                                                                       \
	"  users: {targets: [\"127.0.0.1:9101\"]}\n"
#define FRONTEND_HEAD                                                                        \
	"frontends:\n"                                                                       \
	"  - name: public\n"                                                                 \
	"    listen: [\"127.0.0.1:8080\"]\n"                                                 \
	"    routes:\n"
#define ONE_ROUTE "      - {name: r, match: {path_prefix: /}, upstream: users}\n"

/* ------------------------------------------------------------------------------------------- */

static const char full_example[] =
	"workers: auto                 # or a positive number (<= 256)\n"
	"access_log: stderr            # stderr | off | a file path\n"
	"drain_timeout: 10s            # default 10s\n"
	"limits:                       # every key optional, defaults shown\n"
	"  max_header_bytes: 16384     # 1024..1048576\n"
	"  max_uri_bytes: 8192         # 64..max_header_bytes\n"
	"  max_body_bytes: 10485760    # 0.. 2^40\n"
	"  header_timeout: 10s\n"
	"  keepalive_timeout: 60s\n"
	"  client_timeout: 60s\n"
	"  max_connections: 65536      # per worker\n"
	"upstreams:\n"
	"  users:                      # name: [A-Za-z0-9_.-]+\n"
	"    targets: [\"127.0.0.1:9101\", \"127.0.0.1:9102\"]\n"
	"    balance: round_robin      # round_robin | random | least_conn\n"
	"    keepalive: 32             # 0..4096, default 32\n"
	"    connect_timeout: 1s       # default 1s\n"
	"    response_timeout: 10s     # default 30s\n"
	"frontends:\n"
	"  - name: public\n"
	"    listen: [\"127.0.0.1:8080\"]   # at least one\n"
	"    routes:\n"
	"      - name: users\n"
	"        match: { path_prefix: /api/users, methods: [GET, POST] }\n"
	"        upstream: users\n"
	"        strip_prefix: /api\n";

Test(config, full_example_loads_every_field)
{
	struct rw_config *cfg = load_ok(full_example);
	cr_assert_str_eq(cfg->path, "t.yaml");
	cr_assert_eq(cfg->workers, 0);
	cr_assert_eq(cfg->access_log, ACCESS_LOG_STDERR);
	cr_assert_null(cfg->access_log_path);
	cr_assert_eq(cfg->drain_timeout_ms, 10000);
	cr_assert_eq(cfg->limits.max_header_bytes, 16384);
	cr_assert_eq(cfg->limits.max_uri_bytes, 8192);
	cr_assert_eq(cfg->limits.max_body_bytes, 10485760);
	cr_assert_eq(cfg->limits.header_timeout_ms, 10000);
	cr_assert_eq(cfg->limits.keepalive_timeout_ms, 60000);
	cr_assert_eq(cfg->limits.client_timeout_ms, 60000);
	cr_assert_eq(cfg->limits.max_connections, 65536);
	cr_assert_eq(atomic_load(&cfg->refs), 1);

	cr_assert_eq(cfg->nupstreams, 1);
	const struct rw_upstream *up = &cfg->upstreams[0];
	cr_assert_str_eq(up->name, "users");
	cr_assert_eq(up->index, 0);
	cr_assert_eq(up->ntargets, 2);
	cr_assert_str_eq(up->targets[0].text, "127.0.0.1:9101");
	cr_assert_str_eq(up->targets[1].text, "127.0.0.1:9102");
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&up->targets[1].addr;
	cr_assert_eq(up->targets[1].addrlen, sizeof *sin);
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 9102);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	cr_assert_eq(up->balance, BALANCE_ROUND_ROBIN);
	cr_assert_eq(up->keepalive, 32);
	cr_assert_eq(up->connect_timeout_ms, 1000);
	cr_assert_eq(up->response_timeout_ms, 10000);

	cr_assert_eq(cfg->nfrontends, 1);
	const struct rw_frontend *f = &cfg->frontends[0];
	cr_assert_str_eq(f->name, "public");
	cr_assert_eq(f->nlistens, 1);
	cr_assert_str_eq(f->listens[0].text, "127.0.0.1:8080");
	sin = (const struct sockaddr_in *)&f->listens[0].addr;
	cr_assert_eq(ntohs(sin->sin_port), 8080);
	cr_assert_not_null(f->router);
	cr_assert_eq(f->nroutes, 1);
	const struct rw_route *rt = &f->routes[0];
	cr_assert_str_eq(rt->name, "users");
	cr_assert_null(rt->host);
	cr_assert_str_eq(rt->path, "/api/users");
	cr_assert_eq(rt->path_len, 10);
	cr_assert_not(rt->path_exact);
	cr_assert_eq(rt->methods, HTTP_METHOD_BIT(HTTP_M_GET) | HTTP_METHOD_BIT(HTTP_M_POST));
	cr_assert_eq(rt->upstream, up);
	cr_assert_str_eq(rt->strip_prefix, "/api");
	cr_assert_eq(rt->strip_len, 4);
	cr_assert_eq(rt->index, 0);
	config_unref(cfg);
}

Test(config, defaults_when_keys_are_left_out)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert_eq(cfg->workers, 0);
	cr_assert_eq(cfg->access_log, ACCESS_LOG_STDERR);
	cr_assert_eq(cfg->drain_timeout_ms, 10000);
	cr_assert_eq(cfg->limits.max_header_bytes, 16384);
	cr_assert_eq(cfg->limits.max_uri_bytes, 8192);
	cr_assert_eq(cfg->limits.max_body_bytes, 10485760);
	cr_assert_eq(cfg->limits.header_timeout_ms, 10000);
	cr_assert_eq(cfg->limits.keepalive_timeout_ms, 60000);
	cr_assert_eq(cfg->limits.client_timeout_ms, 60000);
	cr_assert_eq(cfg->limits.max_connections, 65536);
	const struct rw_upstream *up = &cfg->upstreams[0];
	cr_assert_eq(up->balance, BALANCE_ROUND_ROBIN);
	cr_assert_eq(up->keepalive, 32);
	cr_assert_eq(up->connect_timeout_ms, 1000);
	cr_assert_eq(up->response_timeout_ms, 30000);
	const struct rw_route *rt = &cfg->frontends[0].routes[0];
	cr_assert_eq(rt->methods, 0);
	cr_assert_null(rt->strip_prefix);
	cr_assert_eq(rt->strip_len, 0);
	cr_assert_null(rt->host);
	config_unref(cfg);
}

Test(config, explicit_values_of_every_kind)
{
	struct rw_config *cfg = load_ok(
		"workers: 8\n"
		"access_log: /var/log/ringway/access.log\n"
		"drain_timeout: 1500ms\n"
		"limits: {max_header_bytes: 64KiB, max_uri_bytes: 2KiB, max_body_bytes: 1GiB,\n"
		"         header_timeout: 2m, keepalive_timeout: 1h, client_timeout: 5s,\n"
		"         max_connections: 1000}\n"
		"upstreams:\n"
		"  a: {targets: [\"[::1]:9101\"], balance: least_conn, keepalive: 0,\n"
		"      connect_timeout: 250ms, response_timeout: 2m}\n"
		"  b.v2_x-y: {targets: [\"10.0.0.1:80\"], balance: random}\n"
		"frontends:\n"
		"  - name: edge\n"
		"    listen: [\"127.0.0.1:8080\", \"[::1]:8080\"]\n"
		"    routes:\n"
		"      - {name: one, match: {host: api.example.com, path_exact: /v1/x}, upstream: b.v2_x-y}\n"
		"      - {name: two, match: {host: \"*.example.com\", path_prefix: /v1,\n"
		"                            methods: [HEAD, PUT, DELETE, PATCH, OPTIONS, TRACE]},\n"
		"         upstream: a, strip_prefix: /v1}\n");
	cr_assert_eq(cfg->workers, 8);
	cr_assert_eq(cfg->access_log, ACCESS_LOG_FILE);
	cr_assert_str_eq(cfg->access_log_path, "/var/log/ringway/access.log");
	cr_assert_eq(cfg->drain_timeout_ms, 1500);
	cr_assert_eq(cfg->limits.max_header_bytes, 65536);
	cr_assert_eq(cfg->limits.max_uri_bytes, 2048);
	cr_assert_eq(cfg->limits.max_body_bytes, 1ull << 30);
	cr_assert_eq(cfg->limits.header_timeout_ms, 120000);
	cr_assert_eq(cfg->limits.keepalive_timeout_ms, 3600000);
	cr_assert_eq(cfg->limits.client_timeout_ms, 5000);
	cr_assert_eq(cfg->limits.max_connections, 1000);

	cr_assert_eq(cfg->nupstreams, 2);
	const struct rw_upstream *a = &cfg->upstreams[0], *b = &cfg->upstreams[1];
	cr_assert_str_eq(a->name, "a");
	cr_assert_str_eq(b->name, "b.v2_x-y");
	cr_assert_eq(b->index, 1);
	cr_assert_eq(a->balance, BALANCE_LEAST_CONN);
	cr_assert_eq(b->balance, BALANCE_RANDOM);
	cr_assert_eq(a->keepalive, 0);
	cr_assert_eq(a->connect_timeout_ms, 250);
	cr_assert_eq(a->response_timeout_ms, 120000);
	const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->targets[0].addr;
	cr_assert_eq(a->targets[0].addrlen, sizeof *sin6);
	cr_assert_eq(sin6->sin6_family, AF_INET6);
	cr_assert_eq(ntohs(sin6->sin6_port), 9101);
	cr_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));

	const struct rw_frontend *f = &cfg->frontends[0];
	cr_assert_eq(f->nlistens, 2);
	cr_assert_str_eq(f->listens[1].text, "[::1]:8080");
	cr_assert_eq(f->nroutes, 2);
	cr_assert_str_eq(f->routes[0].host, "api.example.com");
	cr_assert(f->routes[0].path_exact);
	cr_assert_str_eq(f->routes[0].path, "/v1/x");
	cr_assert_eq(f->routes[0].upstream, b);
	cr_assert_str_eq(f->routes[1].host, "*.example.com");
	cr_assert_eq(f->routes[1].index, 1);
	cr_assert_eq(f->routes[1].upstream, a);
	cr_assert_eq(f->routes[1].methods,
		     HTTP_METHOD_BIT(HTTP_M_HEAD) | HTTP_METHOD_BIT(HTTP_M_PUT) |
			     HTTP_METHOD_BIT(HTTP_M_DELETE) | HTTP_METHOD_BIT(HTTP_M_PATCH) |
			     HTTP_METHOD_BIT(HTTP_M_OPTIONS) | HTTP_METHOD_BIT(HTTP_M_TRACE));
	config_unref(cfg);
}

Test(config, access_log_off)
{
	struct rw_config *cfg = load_ok("access_log: off\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert_eq(cfg->access_log, ACCESS_LOG_OFF);
	cr_assert_null(cfg->access_log_path);
	config_unref(cfg);
}

Test(config, refcount_keeps_the_snapshot_alive)
{
	struct rw_config *cfg = load_ok(full_example);
	cr_assert_eq(config_ref(cfg), cfg);
	cr_assert_eq(atomic_load(&cfg->refs), 2);
	config_unref(cfg);
	cr_assert_eq(atomic_load(&cfg->refs), 1);
	cr_assert_str_eq(cfg->frontends[0].routes[0].name, "users"); /* still alive */
	config_unref(cfg);
	config_unref(NULL);
	cr_assert_null(config_ref(NULL));
}

Test(config, load_file_reads_the_file_and_names_it)
{
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, full_example, strlen(full_example)), (ssize_t)strlen(full_example));
	close(fd);
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_file(path, &errs);
	cr_assert_not_null(cfg);
	cr_assert_str_eq(cfg->path, path);
	config_unref(cfg);

	fd = open(path, O_WRONLY | O_TRUNC);
	cr_assert_eq(write(fd, "workers: 0\n", 11), 11);
	close(fd);
	cr_assert_null(config_load_file(path, &errs));
	cr_assert_eq(errs.count, 3);
	char want[128];
	snprintf(want, sizeof want, "%s:1:1: top level: missing required key 'upstreams'", path);
	cr_assert_str_eq(errs.lines[0], want);
	config_errors_free(&errs);
	unlink(path);

	cr_assert_null(config_load_file("/nonexistent/ringway.yaml", &errs));
	cr_assert_eq(errs.count, 1);
	cr_assert_str_eq(errs.lines[0],
			 "/nonexistent/ringway.yaml: cannot read: No such file or directory");
	config_errors_free(&errs);
}

/* ------------------------------------------------------------------------------------------- */
/* Errors */

Test(config_errors, yaml_syntax_error_at_the_problem_mark)
{
	EXPECT_ERRORS("workers: 4\n"
		      "limits: {max_header_bytes: 1024\n"
		      "upstreams: x\n",
		      "t.yaml:3:10: YAML syntax error: did not find expected ',' or '}' "
		      "(while parsing a flow mapping at 2:9)");
	EXPECT_ERRORS("workers: 4\n"
		      "  access_log: off\n",
		      "t.yaml:2:13: YAML syntax error: mapping values are not allowed in this context");
	EXPECT_ERRORS("workers: \"4\xff\"\n",
		      "t.yaml:1:12: YAML syntax error: invalid leading UTF-8 octet");
}

Test(config_errors, document_shape)
{
	EXPECT_ERRORS("", "t.yaml:1:1: the configuration is empty");
	EXPECT_ERRORS("# only a comment\n", "t.yaml:1:1: the configuration is empty");
	EXPECT_ERRORS("- workers\n- 4\n", "t.yaml:1:1: the top level must be a mapping, got a sequence");
	EXPECT_ERRORS("just words\n", "t.yaml:1:1: the top level must be a mapping, got 'just words'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "---\nworkers: 2\n",
		      "t.yaml:9:1: only one YAML document is allowed");
}

Test(config_errors, unknown_key_lists_the_valid_ones)
{
	EXPECT_ERRORS("wrokers: 4\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:1: top level: unknown key 'wrokers' (valid keys: workers, "
		      "access_log, drain_timeout, limits, upstreams, consumers, jwt_issuers, "
		      "identity_token, frontends, rate_limit_store, xdp, admin)");
	EXPECT_ERRORS("limits:\n"
		      "  max_header_bytes: 4096\n"
		      "  max_headers: 10\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:3:3: limits: unknown key 'max_headers' (valid keys: max_header_bytes, "
		      "max_uri_bytes, max_body_bytes, header_timeout, keepalive_timeout, "
		      "client_timeout, max_connections)");
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: [\"127.0.0.1:9101\"], weight: 3}\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:40: upstream 'users': unknown key 'weight' (valid keys: targets, "
		      "balance, keepalive, connect_timeout, response_timeout, tls)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: r, match: {path: /}, upstream: users}\n",
		      "t.yaml:7:26: match: needs exactly one of path_prefix, path_exact",
		      "t.yaml:7:27: match: unknown key 'path' (valid keys: host, path_prefix, "
		      "path_exact, methods)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: r, match: {path_prefix: /}, upstream: users, timeout: 1s}\n",
		      "t.yaml:7:61: route 'r': unknown key 'timeout' (valid keys: name, match, "
		      "upstream, aggregate, strip_prefix, auth, allow_groups, deny_groups, hide_credentials, "
		      "api_key, scopes, rate_limit, request, response, cors)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "    tls: on\n",
		      "t.yaml:8:5: frontend 'public': unknown key 'tls' (valid keys: name, listen, "
		      "hosts, auth, allow_groups, deny_groups, scopes, rate_limit, request, response, cors, routes)");
}

Test(config_errors, wrong_types)
{
	EXPECT_ERRORS("limits: 5\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:9: limits: expected a mapping, got '5'");
	EXPECT_ERRORS("upstreams: [users]\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:12: upstreams: expected a mapping, got a sequence",
		      "t.yaml:6:54: unknown upstream 'users'");
	EXPECT_ERRORS(UPSTREAMS "frontends:\n  name: public\n",
		      "t.yaml:4:3: frontends: expected a sequence, got a mapping");
	EXPECT_ERRORS(UPSTREAMS "frontends:\n"
			        "  - name: public\n"
			        "    listen: 127.0.0.1:8080\n"
			        "    routes:\n" ONE_ROUTE,
		      "t.yaml:5:13: listen: expected a sequence, got '127.0.0.1:8080'");
	EXPECT_ERRORS("upstreams:\n"
		      "  users:\n"
		      "    targets: [\"127.0.0.1:9101\"]\n"
		      "    keepalive: [1]\n"
		      "    balance:\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:4:16: keepalive: expected a scalar, got a sequence",
		      "t.yaml:5:13: balance: expected a scalar, got an empty value");
	EXPECT_ERRORS("workers: many\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:10: workers: expected 'auto' or an integer, got 'many'");
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: [\"127.0.0.1:9101\"], keepalive: 3.5}\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:51: keepalive: expected an integer, got '3.5'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD "      - just a string\n",
		      "t.yaml:7:9: routes: expected a mapping, got 'just a string'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: [r], match: {path_prefix: /}, upstream: users}\n",
		      "t.yaml:7:16: name: expected a scalar, got a sequence");
}

Test(config_errors, values_out_of_range)
{
	EXPECT_ERRORS("workers: 0\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:10: workers: 0 is out of range 1..256");
	EXPECT_ERRORS("workers: 257\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:10: workers: 257 is out of range 1..256");
	EXPECT_ERRORS("limits:\n"
		      "  max_header_bytes: 512\n"
		      "  max_body_bytes: 1025GiB\n"
		      "  max_connections: -1\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:21: max_header_bytes: 512 is out of range 1024..1048576",
		      "t.yaml:3:19: max_body_bytes: 1025GiB is out of range 0..1099511627776",
		      "t.yaml:4:20: max_connections: -1 is out of range 1..1048576");
	EXPECT_ERRORS("limits: {max_header_bytes: 8KiB, max_uri_bytes: 9000}\n"
		      UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:49: max_uri_bytes: 9000 is above max_header_bytes (8192)");
	EXPECT_ERRORS("limits: {max_uri_bytes: 63}\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:25: max_uri_bytes: 63 is out of range 64..1048576");
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: [\"127.0.0.1:9101\"], keepalive: 4097}\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:51: keepalive: 4097 is out of range 0..4096");
}

Test(config_errors, bad_durations_and_sizes)
{
	EXPECT_ERRORS("drain_timeout: 10x\n"
		      "limits:\n"
		      "  header_timeout: 0s\n"
		      "  keepalive_timeout: 25h\n"
		      "  client_timeout: 1.5s\n"
		      "  max_body_bytes: 10MB\n"
		      "  max_header_bytes: 16 KiB\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:16: drain_timeout: invalid duration '10x' (a whole number and a "
		      "unit: ms, s, m or h; above 0, at most 24h)",
		      "t.yaml:3:19: header_timeout: invalid duration '0s' (a whole number and a "
		      "unit: ms, s, m or h; above 0, at most 24h)",
		      "t.yaml:4:22: keepalive_timeout: invalid duration '25h' (a whole number and a "
		      "unit: ms, s, m or h; above 0, at most 24h)",
		      "t.yaml:5:19: client_timeout: invalid duration '1.5s' (a whole number and a "
		      "unit: ms, s, m or h; above 0, at most 24h)",
		      "t.yaml:6:19: max_body_bytes: expected a size (a whole number of bytes, or with "
		      "KiB, MiB or GiB), got '10MB'",
		      "t.yaml:7:21: max_header_bytes: expected a size (a whole number of bytes, or "
		      "with KiB, MiB or GiB), got '16 KiB'");
}

Test(config_errors, bad_addresses)
{
	EXPECT_ERRORS("upstreams:\n"
		      "  users:\n"
		      "    targets:\n"
		      "      - 127.0.0.1\n"
		      "      - localhost:80\n"
		      "      - 127.0.0.1:0\n"
		      "      - \"[::1]:65536\"\n"
		      "      - ::1:80\n"
		      "      - 127.0.0.1:9101\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:4:9: targets: invalid address '127.0.0.1' (expected a.b.c.d:port or "
		      "[ipv6]:port, numeric, port 1..65535)",
		      "t.yaml:5:9: targets: invalid address 'localhost:80' (expected a.b.c.d:port or "
		      "[ipv6]:port, numeric, port 1..65535)",
		      "t.yaml:6:9: targets: invalid address '127.0.0.1:0' (expected a.b.c.d:port or "
		      "[ipv6]:port, numeric, port 1..65535)",
		      "t.yaml:7:9: targets: invalid address '[::1]:65536' (expected a.b.c.d:port or "
		      "[ipv6]:port, numeric, port 1..65535)",
		      "t.yaml:8:9: targets: invalid address '::1:80' (expected a.b.c.d:port or "
		      "[ipv6]:port, numeric, port 1..65535)");
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: []}\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:20: targets: at least one address is required");
}

Test(config_errors, bad_enum_values_list_the_accepted_ones)
{
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: [\"127.0.0.1:9101\"], balance: fastest}\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:2:49: balance: invalid value 'fastest' (expected one of round_robin, "
		      "random, least_conn)");
	EXPECT_ERRORS("access_log: \"\"\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:1:13: access_log: expected stderr, off or a file path");
}

Test(config_errors, missing_required_keys)
{
	EXPECT_ERRORS("workers: 2\n",
		      "t.yaml:1:1: top level: missing required key 'upstreams'",
		      "t.yaml:1:1: top level: missing required key 'frontends'");
	EXPECT_ERRORS("upstreams:\n"
		      "  users:\n"
		      "    balance: random\n" FRONTEND_HEAD ONE_ROUTE,
		      "t.yaml:3:5: upstream 'users': missing required key 'targets'");
	EXPECT_ERRORS(UPSTREAMS "frontends:\n"
			        "  - name: public\n",
		      "t.yaml:4:5: frontend 'public': missing required key 'listen'",
		      "t.yaml:4:5: frontend 'public': missing required key 'routes'");
	EXPECT_ERRORS(UPSTREAMS "frontends:\n"
			        "  - listen: [\"127.0.0.1:8080\"]\n"
			        "    routes: []\n",
		      "t.yaml:4:5: frontend #1: missing required key 'name'",
		      "t.yaml:5:13: routes: at least one route is required");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - match: {path_prefix: /}\n"
		      "      - name: r2\n",
		      "t.yaml:7:9: route #1: missing required key 'name'",
		      "t.yaml:7:9: route #1: missing required key 'upstream'",
		      "t.yaml:8:9: route 'r2': missing required key 'match'",
		      "t.yaml:8:9: route 'r2': missing required key 'upstream'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: a, match: {methods: [GET]}, upstream: users}\n"
		      "      - {name: b, match: {path_prefix: /b, path_exact: /b}, upstream: users}\n",
		      "t.yaml:7:26: match: needs exactly one of path_prefix, path_exact",
		      "t.yaml:8:26: match: needs exactly one of path_prefix, path_exact");
	EXPECT_ERRORS("upstreams: {}\nfrontends: []\n",
		      "t.yaml:1:12: upstreams: at least one upstream is required",
		      "t.yaml:2:12: frontends: at least one frontend is required");
}

Test(config_errors, route_match_values)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: a, match: {path_prefix: api}, upstream: users}\n"
		      "      - {name: b, match: {path_exact: \"/x y\"}, upstream: users}\n"
		      "      - {name: c, match: {path_prefix: /c, methods: [GET, get, FETCH]}, upstream: users}\n"
		      "      - {name: d, match: {path_prefix: /d, methods: []}, upstream: users}\n",
		      "t.yaml:7:40: path_prefix: 'api' must start with '/'",
		      "t.yaml:8:39: path_exact: '/x y' must not contain spaces, control characters, "
		      "'?' or '#'",
		      "t.yaml:9:59: methods: unknown method 'get' (expected one of GET, HEAD, POST, "
		      "PUT, DELETE, PATCH, OPTIONS, TRACE)",
		      "t.yaml:9:64: methods: unknown method 'FETCH' (expected one of GET, HEAD, POST, "
		      "PUT, DELETE, PATCH, OPTIONS, TRACE)",
		      "t.yaml:10:53: methods: empty list (leave 'methods' out to allow every method)");
}

Test(config_errors, bad_host_patterns)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: a, match: {host: \"api.example.com:8080\", path_prefix: /}, upstream: users}\n"
		      "      - {name: b, match: {host: \"*example.com\", path_prefix: /}, upstream: users}\n"
		      "      - {name: c, match: {host: a..b, path_prefix: /}, upstream: users}\n"
		      "      - {name: d, match: {host: \"api.*.com\", path_prefix: /}, upstream: users}\n"
		      "      - {name: e, match: {host: -a.com, path_prefix: /}, upstream: users}\n",
		      "t.yaml:7:33: host: invalid host pattern 'api.example.com:8080' (expected a name "
		      "like api.example.com or *.example.com, without port)",
		      "t.yaml:8:33: host: invalid host pattern '*example.com' (expected a name like "
		      "api.example.com or *.example.com, without port)",
		      "t.yaml:9:33: host: invalid host pattern 'a..b' (expected a name like "
		      "api.example.com or *.example.com, without port)",
		      "t.yaml:10:33: host: invalid host pattern 'api.*.com' (expected a name like "
		      "api.example.com or *.example.com, without port)",
		      "t.yaml:11:33: host: invalid host pattern '-a.com' (expected a name like "
		      "api.example.com or *.example.com, without port)");
}

Test(config_errors, strip_prefix_must_prefix_the_path)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - name: a\n"
		      "        match: {path_prefix: /api/users}\n"
		      "        upstream: users\n"
		      "        strip_prefix: /v2\n"
		      "      - name: b\n"
		      "        match: {path_exact: /api/users}\n"
		      "        upstream: users\n"
		      "        strip_prefix: /api/us\n"
		      "      - name: c\n"
		      "        match: {path_prefix: /c}\n"
		      "        upstream: users\n"
		      "        strip_prefix: c\n"
		      "      - name: d\n"
		      "        match: {path_prefix: /api}\n"
		      "        upstream: users\n"
		      "        strip_prefix: /api/users\n",
		      "t.yaml:10:23: strip_prefix: '/v2' is not a prefix of the route's path "
		      "'/api/users'",
		      "t.yaml:14:23: strip_prefix: '/api/us' does not end at a '/' of the route's "
		      "path '/api/users'",
		      "t.yaml:18:23: strip_prefix: 'c' must start with '/' and not end with '/'",
		      "t.yaml:22:23: strip_prefix: '/api/users' is not a prefix of the route's path "
		      "'/api'");
	/* the whole path, and a prefix ending at a '/' are fine */
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD
		"      - {name: a, match: {path_exact: /healthz}, upstream: users, strip_prefix: /healthz}\n"
		"      - {name: b, match: {path_prefix: /api/v1/}, upstream: users, strip_prefix: /api}\n");
	cr_assert_eq(cfg->frontends[0].routes[0].strip_len, 8);
	config_unref(cfg);
}

Test(config_errors, unknown_upstream_at_the_value)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - name: r\n"
		      "        match: {path_prefix: /}\n"
		      "        upstream: orders\n",
		      "t.yaml:9:19: unknown upstream 'orders'");
	/* upstreams may come after frontends in the file */
	struct rw_config *cfg = load_ok(FRONTEND_HEAD ONE_ROUTE UPSTREAMS);
	cr_assert_eq(cfg->frontends[0].routes[0].upstream, &cfg->upstreams[0]);
	config_unref(cfg);
}

Test(config_errors, duplicate_names)
{
	EXPECT_ERRORS("upstreams:\n"
		      "  users: {targets: [\"127.0.0.1:9101\"]}\n"
		      "  users: {targets: [\"127.0.0.1:9102\"]}\n"
		      "frontends:\n"
		      "  - name: public\n"
		      "    listen: [\"127.0.0.1:8080\"]\n"
		      "    routes:\n"
		      "      - {name: r, match: {path_prefix: /a}, upstream: users}\n"
		      "      - {name: r, match: {path_prefix: /b}, upstream: users}\n"
		      "  - name: public\n"
		      "    listen: [\"127.0.0.1:8081\"]\n"
		      "    routes:\n"
		      "      - {name: r, match: {path_prefix: /a}, upstream: users}\n",
		      "t.yaml:3:3: upstreams: duplicate key 'users' (first at 2:3)",
		      "t.yaml:9:16: duplicate route name 'r'",
		      "t.yaml:10:11: duplicate frontend name 'public'");
	EXPECT_ERRORS("upstreams:\n"
		      "  u.1: {targets: [\"127.0.0.1:9101\"]}\n"
		      "  \"bad name\": {targets: [\"127.0.0.1:9102\"]}\n"
		      "frontends:\n"
		      "  - name: pub/lic\n"
		      "    listen: [\"127.0.0.1:8080\"]\n"
		      "    routes:\n"
		      "      - {name: r, match: {path_prefix: /a}, upstream: u.1}\n",
		      "t.yaml:3:3: upstreams: invalid name 'bad name' (use letters, digits, '_', '.' "
		      "and '-')",
		      "t.yaml:5:11: name: invalid name 'pub/lic' (use letters, digits, '_', '.' and "
		      "'-')");
}

Test(config_errors, duplicate_keys_in_any_mapping)
{
	EXPECT_ERRORS("workers: 2\n"
		      "limits:\n"
		      "  max_connections: 10\n"
		      "  max_connections: 20\n"
		      "workers: 3\n" UPSTREAMS FRONTEND_HEAD
		      "      - {name: r, match: {path_prefix: /, path_prefix: /x}, upstream: users}\n",
		      "t.yaml:4:3: limits: duplicate key 'max_connections' (first at 3:3)",
		      "t.yaml:5:1: top level: duplicate key 'workers' (first at 1:1)",
		      "t.yaml:12:43: match: duplicate key 'path_prefix' (first at 12:27)");
}

Test(config_errors, listen_address_used_twice)
{
	EXPECT_ERRORS(UPSTREAMS "frontends:\n"
			        "  - name: a\n"
			        "    listen: [\"127.0.0.1:8080\", \"[::1]:8080\", \"127.0.0.1:8080\"]\n"
			        "    routes:\n" ONE_ROUTE
			        "  - name: b\n"
			        "    listen: [\"127.0.0.1:8081\", \"[0:0::1]:8080\"]\n"
			        "    routes:\n" ONE_ROUTE,
		      "t.yaml:5:46: listen: address '127.0.0.1:8080' is already used by frontend 'a'",
		      "t.yaml:9:32: listen: address '[0:0::1]:8080' is already used by frontend 'a'");
}

Test(config_errors, identical_routes_are_shadowed)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: a, match: {path_prefix: /api, methods: [GET, POST]}, upstream: users}\n"
		      "      - {name: b, match: {path_prefix: /api, methods: [POST, PUT]}, upstream: users}\n"
		      "      - {name: c, match: {path_exact: /x}, upstream: users}\n"
		      "      - {name: d, match: {path_exact: /x, methods: [GET]}, upstream: users}\n"
		      "      - {name: e, match: {host: A.example.com, path_exact: /x}, upstream: users}\n"
		      "      - {name: f, match: {host: a.example.com, path_exact: /x}, upstream: users}\n",
		      "t.yaml:8:19: route 'b' is shadowed by route 'a' (same host, path and methods)",
		      "t.yaml:10:19: route 'd' is shadowed by route 'c' (same host, path and methods)",
		      "t.yaml:12:19: route 'f' is shadowed by route 'e' (same host, path and methods)");
	/* differing methods, exactness or host: no shadowing */
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD
		"      - {name: a, match: {path_prefix: /api, methods: [GET]}, upstream: users}\n"
		"      - {name: b, match: {path_prefix: /api, methods: [POST]}, upstream: users}\n"
		"      - {name: c, match: {path_exact: /api}, upstream: users}\n"
		"      - {name: d, match: {host: x.example.com, path_prefix: /api}, upstream: users}\n"
		"      - {name: e, match: {host: \"*.example.com\", path_prefix: /api}, upstream: users}\n");
	cr_assert_eq(cfg->frontends[0].nroutes, 5);
	config_unref(cfg);
}

Test(config_errors, every_error_is_reported_in_file_order)
{
	EXPECT_ERRORS("workers: -3\n"                                          /* 1 */
		      "access_log: [a]\n"                                      /* 2 */
		      "limits:\n"                                              /* 3 */
		      "  header_timeout: soon\n"                               /* 4 */
		      "upstreams:\n"                                           /* 5 */
		      "  users:\n"                                             /* 6 */
		      "    targets: [\"127.0.0.1:99999\"]\n"                   /* 7 */
		      "    balance: sticky\n"                                  /* 8 */
		      "frontends:\n"                                           /* 9 */
		      "  - name: public\n"                                     /* 10 */
		      "    listen: [\"127.0.0.1:8080\"]\n"                     /* 11 */
		      "    colour: blue\n"                                     /* 12 */
		      "    routes:\n"                                          /* 13 */
		      "      - name: users\n"                                  /* 14 */
		      "        match: {path_prefix: users, methods: [GRAB]}\n" /* 15 */
		      "        upstream: people\n",                            /* 16 */
		      "t.yaml:1:10: workers: -3 is out of range 1..256",
		      "t.yaml:2:13: access_log: expected a scalar, got a sequence",
		      "t.yaml:4:19: header_timeout: invalid duration 'soon' (a whole number and a "
		      "unit: ms, s, m or h; above 0, at most 24h)",
		      "t.yaml:7:15: targets: invalid address '127.0.0.1:99999' (expected "
		      "a.b.c.d:port or [ipv6]:port, numeric, port 1..65535)",
		      "t.yaml:8:14: balance: invalid value 'sticky' (expected one of round_robin, "
		      "random, least_conn)",
		      "t.yaml:12:5: frontend 'public': unknown key 'colour' (valid keys: name, listen, "
		      "hosts, auth, allow_groups, deny_groups, scopes, rate_limit, request, response, cors, routes)",
		      "t.yaml:15:30: path_prefix: 'users' must start with '/'",
		      "t.yaml:15:47: methods: unknown method 'GRAB' (expected one of GET, HEAD, POST, "
		      "PUT, DELETE, PATCH, OPTIONS, TRACE)",
		      "t.yaml:16:19: unknown upstream 'people'");
}

Test(config_errors, errors_argument_may_be_null)
{
	cr_assert_null(config_load_string("t.yaml", "workers: x\n", 11, NULL));
	struct rw_config *cfg = config_load_string("t.yaml", full_example, strlen(full_example), NULL);
	cr_assert_not_null(cfg);
	config_unref(cfg);
}

/* Every allocation of a load, failed in turn through the loader's fault-injection countdown
 * (schema_fail_allocation): each load fails with the one out-of-memory line, none aborts, and
 * what was built is freed (valgrind or ASan would see a leak). The valid example with an xdp
 * section reaches the defaults, every section and the routers; the invalid one the error lines. */
static void expect_out_of_memory_reported(const char *yaml, bool valid)
{
	for (unsigned n = 1;; n++) {
		struct config_errors errs;
		schema_fail_allocation = n;
		struct rw_config *cfg = load(yaml, &errs);
		bool injected = schema_fail_allocation == 0;
		schema_fail_allocation = 0;
		if (!injected) { /* all n - 1 allocations of a load have failed once */
			cr_assert_gt(n, 10);
			cr_assert_eq(cfg != NULL, valid);
			cr_assert_eq(errs.count != 0, !valid);
			config_errors_free(&errs);
			config_unref(cfg);
			return;
		}
		cr_assert_null(cfg, "allocation %u", n);
		cr_assert_eq(errs.count, 1, "allocation %u", n);
		cr_assert_str_eq(errs.lines[0], "t.yaml: out of memory while loading the configuration");
		config_errors_free(&errs);
	}
}

Test(config_errors, out_of_memory_is_an_error_line_not_an_abort)
{
	char *yaml;
	cr_assert(asprintf(&yaml, "%sxdp:\n  interface: eth0\n  pin_path: /sys/fs/bpf/t\n"
				  "  policies: [{cidr: 198.51.100.0/24, action: deny}]\n",
			   full_example) > 0);
	expect_out_of_memory_reported(yaml, true);
	free(yaml);
	expect_out_of_memory_reported("workers: x\nupstreams: {a: {targets: [\"1.2.3.4:5\"]}}\n"
				      "frontends: [{name: f, listen: [\"1.2.3.4:6\"], routes: 7}]\n",
				      false);
}

/* ------------------------------------------------------------------------------------------- */
/* Scalars */

Test(config_scalars, durations)
{
	static const struct { const char *text; uint32_t ms; } good[] = {
		{ "1ms", 1 }, { "500ms", 500 }, { "10s", 10000 }, { "2m", 120000 },
		{ "1h", 3600000 }, { "24h", 86400000 }, { "1440m", 86400000 },
		{ "86400000ms", 86400000 },
	};
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		uint32_t ms = 0;
		cr_assert(config_parse_duration(good[i].text, &ms), "%s", good[i].text);
		cr_assert_eq(ms, good[i].ms, "%s", good[i].text);
	}
	static const char *const bad[] = {
		"", "10", "s", "0s", "0ms", "25h", "86400001ms", "1441m", "1.5s", "-1s", "+1s",
		"10 s", " 10s", "10s ", "10S", "10sec", "1d", "99999999999999999999h", "ms10",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		uint32_t ms = 7;
		cr_assert_not(config_parse_duration(bad[i], &ms), "'%s'", bad[i]);
		cr_assert_eq(ms, 7);
	}
	cr_assert_not(config_parse_duration(NULL, &(uint32_t){ 0 }));
}

static uint64_t body_limit_of(const char *value)
{
	char yaml[512];
	snprintf(yaml, sizeof yaml, "limits: {max_body_bytes: %s}\n" UPSTREAMS FRONTEND_HEAD ONE_ROUTE,
		 value);
	struct config_errors errs = { 0 };
	struct rw_config *cfg = load(yaml, &errs);
	uint64_t n = cfg ? cfg->limits.max_body_bytes : UINT64_MAX;
	config_unref(cfg);
	config_errors_free(&errs);
	return n;
}

Test(config_scalars, sizes)
{
	cr_assert_eq(body_limit_of("0"), 0);
	cr_assert_eq(body_limit_of("1"), 1);
	cr_assert_eq(body_limit_of("64KiB"), 65536);
	cr_assert_eq(body_limit_of("10MiB"), 10485760);
	cr_assert_eq(body_limit_of("3GiB"), 3ull << 30);
	cr_assert_eq(body_limit_of("1024GiB"), 1ull << 40);
	cr_assert_eq(body_limit_of("1099511627776"), 1ull << 40);
	static const char *const bad[] = {
		"1099511627777", "1025GiB", "1KB", "1kib", "1 KiB", "KiB", "1.5MiB", "-1", "1TiB",
		"0x10", "99999999999999999999999GiB", "\"\"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(body_limit_of(bad[i]), UINT64_MAX, "%s", bad[i]);
}

Test(config_scalars, sockaddr)
{
	struct rw_sockaddr a;
	cr_assert(config_parse_sockaddr("127.0.0.1:80", &a));
	cr_assert_str_eq(a.text, "127.0.0.1:80");
	cr_assert_eq(a.addrlen, sizeof(struct sockaddr_in));
	cr_assert_eq(((struct sockaddr_in *)&a.addr)->sin_family, AF_INET);
	cr_assert_eq(ntohs(((struct sockaddr_in *)&a.addr)->sin_port), 80);
	free(a.text);

	cr_assert(config_parse_sockaddr("[2001:db8::7]:65535", &a));
	cr_assert_eq(a.addrlen, sizeof(struct sockaddr_in6));
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a.addr;
	cr_assert_eq(s6->sin6_family, AF_INET6);
	cr_assert_eq(ntohs(s6->sin6_port), 65535);
	struct in6_addr want;
	inet_pton(AF_INET6, "2001:db8::7", &want);
	cr_assert_eq(memcmp(&s6->sin6_addr, &want, sizeof want), 0);
	free(a.text);

	cr_assert(config_parse_sockaddr("0.0.0.0:1", &a));
	free(a.text);
	cr_assert(config_parse_sockaddr("[::]:8080", &a));
	free(a.text);

	static const char *const bad[] = {
		"", "127.0.0.1", "127.0.0.1:", ":80", "127.0.0.1:0", "127.0.0.1:65536",
		"127.0.0.1:080x", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:123456",
		"256.0.0.1:80", "1.2.3:80", "localhost:80", "::1:80", "[::1]80", "[::1]:",
		"[::1:80", "[]:80", "[127.0.0.1]:80", "[fe80::1%eth0]:80", " 127.0.0.1:80",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct rw_sockaddr untouched = { .text = NULL, .addrlen = 3 };
		cr_assert_not(config_parse_sockaddr(bad[i], &untouched), "'%s'", bad[i]);
		cr_assert_null(untouched.text);
		cr_assert_eq(untouched.addrlen, 3);
	}
}

#define COVERS_IPV4                                                                          \
	"an IPv6 prefix this short also covers every IPv4 source (matched as "               \
	"::ffff:0:0/96): name the IPv6 ranges meant, e.g. 2000::/3"

static void expect_cidr(const char *s, const char *addr6, uint8_t prefixlen)
{
	uint8_t addr[16], want[16];
	uint8_t len = 0xee;
	const char *why = NULL;
	cr_assert_eq(inet_pton(AF_INET6, addr6, want), 1);
	cr_assert(config_parse_cidr(s, addr, &len, &why), "'%s': %s", s, why ? why : "?");
	cr_assert_eq(memcmp(addr, want, sizeof want), 0, "'%s' is not %s", s, addr6);
	cr_assert_eq(len, prefixlen, "'%s': prefix length %u", s, len);
}

static void expect_bad_cidr(const char *s, const char *reason)
{
	uint8_t addr[16] = { 7 };
	uint8_t len = 0xee;
	const char *why = NULL;
	cr_assert_not(config_parse_cidr(s, addr, &len, &why), "'%s'", s);
	cr_assert_not_null(why, "'%s'", s);
	cr_assert_str_eq(why, reason, "'%s'", s);
	cr_assert_eq(addr[0], 7, "'%s': address written", s);
	cr_assert_eq(len, 0xee, "'%s': prefix length written", s);
}

Test(config_scalars, cidr)
{
	expect_cidr("198.51.100.0/24", "::ffff:198.51.100.0", 120);
	expect_cidr("203.0.113.7", "::ffff:203.0.113.7", 128);
	expect_cidr("203.0.113.7/32", "::ffff:203.0.113.7", 128);
	expect_cidr("0.0.0.0/0", "::ffff:0.0.0.0", 96); /* every IPv4 source, no IPv6 one */
	expect_cidr("10.0.0.0/8", "::ffff:10.0.0.0", 104);
	expect_cidr("2001:db8::/32", "2001:db8::", 32);
	expect_cidr("2001:db8::1", "2001:db8::1", 128);
	expect_cidr("::ffff:198.51.100.0/120", "::ffff:198.51.100.0", 120);
	expect_cidr("fe80::/10", "fe80::", 10);
	/* IPv6 prefixes that do not hold ::ffff:0:0/96, whatever their length */
	expect_cidr("2000::/3", "2000::", 3);
	expect_cidr("fc00::/7", "fc00::", 7);
	expect_cidr("::1", "::1", 128);
	expect_cidr("::/96", "::", 96);
	expect_cidr("::/95", "::", 95); /* ::ffff:0:0 differs in bits 80..94 */
	expect_cidr("::fffe:0:0/96", "::fffe:0:0", 96);
	/* ::ffff:0:0/96 itself is every IPv4 source, as 0.0.0.0/0 */
	expect_cidr("::ffff:0:0/96", "::ffff:0.0.0.0", 96);
	expect_cidr("::ffff:0.0.0.0/96", "::ffff:0.0.0.0", 96);

	expect_bad_cidr("198.51.100.1/24", "host bits set past /24");
	expect_bad_cidr("2001:db8::1/32", "host bits set past /32");
	expect_bad_cidr("1.0.0.0/0", "host bits set past /0");
	expect_bad_cidr("::ffff:198.51.100.1/120", "host bits set past /120");
	expect_bad_cidr("198.51.100.0/33", "prefix length out of range 0..32");
	expect_bad_cidr("2001:db8::/129", "prefix length out of range 0..128");
	expect_bad_cidr("10.0.0.0/99999999999999999999999", "prefix length out of range 0..32");
	expect_bad_cidr("10.0.0.0/", "prefix length is not a number");
	expect_bad_cidr("10.0.0.0/-8", "prefix length is not a number");
	expect_bad_cidr("10.0.0.0/8/8", "prefix length is not a number");
	expect_bad_cidr("10.0.0.0/ 8", "prefix length is not a number");
	/* IPv6 prefixes shorter than /96 that hold ::ffff:0:0/96 would match every IPv4 source */
	static const char *const cover_ipv4[] = {
		"::/0", "::/8", "::/80", "::ff00:0:0/88", "::fffe:0:0/95",
	};
	for (size_t i = 0; i < sizeof cover_ipv4 / sizeof cover_ipv4[0]; i++)
		expect_bad_cidr(cover_ipv4[i], COVERS_IPV4);
	static const char *const not_addresses[] = {
		"", "/24", "example.com/24", "10.0.0/8", "256.0.0.0/8", "10.0.0.0.0/8", " 10.0.0.0/8",
		"fe80::1%eth0/128", "2001:db8:::/32", "[2001:db8::]/32", "garbage",
		"0000:0000:0000:0000:0000:ffff:198.51.100.255:0/128",
	};
	for (size_t i = 0; i < sizeof not_addresses / sizeof not_addresses[0]; i++)
		expect_bad_cidr(not_addresses[i], "not an IPv4 or IPv6 address");
	expect_bad_cidr(NULL, "not an IPv4 or IPv6 address");
}

/* ------------------------------------------------------------------------------------------- */
/* The xdp section */

/* A valid configuration up to line 7, then "xdp:" on line 8; tests append its keys from line 9
 * on, indented by 2. */
#define XDP_HEAD UPSTREAMS FRONTEND_HEAD ONE_ROUTE "xdp:\n"

static void expect_policy(const struct rw_xdp_policy *pol, const char *cidr, const char *addr6,
			  uint8_t prefixlen, uint8_t action, uint32_t rate, uint32_t burst)
{
	uint8_t want[16];
	cr_assert_eq(inet_pton(AF_INET6, addr6, want), 1);
	cr_assert_str_eq(pol->cidr, cidr);
	cr_assert_eq(memcmp(pol->addr, want, sizeof want), 0, "%s", cidr);
	cr_assert_eq(pol->prefixlen, prefixlen, "%s", cidr);
	cr_assert_eq(pol->action, action, "%s", cidr);
	cr_assert_eq(pol->rate, rate, "%s", cidr);
	cr_assert_eq(pol->burst, burst, "%s", cidr);
}

Test(config_xdp, full_section_loads_every_field)
{
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: eth0\n"
		"  mode: native\n"
		"  limit: all\n"
		"  ports: [8080, 8443]\n"
		"  rate: 300\n"
		"  required: true\n"
		"  pin_path: /sys/fs/bpf/ringway/test\n"
		"  max_sources: 1024\n"
		"  new_sources_per_second: 50\n"
		"  fallback_rate: 10\n"
		"  fallback_burst: 15\n"
		"  ipv6_source_prefix: 64\n"
		"  policies:\n"
		"    - {cidr: 198.51.100.0/24, action: deny}\n"
		"    - {cidr: 2001:db8::/32, rate: 50, burst: 100}\n"
		"    - {cidr: 203.0.113.7/32, action: allow}\n"
		"    - {cidr: 192.0.2.0/25, rate: 7}\n"
		"    - cidr: ::ffff:192.0.2.128/121\n"
		"      action: limit\n"
		"      rate: 1000000\n");
	const struct rw_xdp *xdp = &cfg->xdp;
	cr_assert_eq(xdp->mode, XDP_MODE_NATIVE);
	cr_assert_eq(xdp->limit, RW_LIMIT_ALL);
	cr_assert(xdp->required);
	cr_assert_str_eq(xdp->interface, "eth0");
	cr_assert_str_eq(xdp->pin_path, "/sys/fs/bpf/ringway/test");
	cr_assert_eq(xdp->nports, 2);
	cr_assert_eq(xdp->ports[0], 8080);
	cr_assert_eq(xdp->ports[1], 8443);
	cr_assert_eq(xdp->rate, 300);
	cr_assert_eq(xdp->burst, 600, "burst defaults to twice the rate");
	cr_assert_eq(xdp->max_sources, 1024);
	cr_assert_eq(xdp->new_sources_per_second, 50);
	cr_assert_eq(xdp->fallback_rate, 10);
	cr_assert_eq(xdp->fallback_burst, 15);
	cr_assert_eq(xdp->ipv6_source_prefix, 64);
	cr_assert_eq(xdp->npolicies, 5);
	expect_policy(&xdp->policies[0], "198.51.100.0/24", "::ffff:198.51.100.0", 120,
		      RW_POLICY_DENY, 0, 0);
	expect_policy(&xdp->policies[1], "2001:db8::/32", "2001:db8::", 32, RW_POLICY_LIMIT, 50, 100);
	expect_policy(&xdp->policies[2], "203.0.113.7/32", "::ffff:203.0.113.7", 128,
		      RW_POLICY_ALLOW, 0, 0);
	expect_policy(&xdp->policies[3], "192.0.2.0/25", "::ffff:192.0.2.0", 121, RW_POLICY_LIMIT, 7,
		      14);
	expect_policy(&xdp->policies[4], "::ffff:192.0.2.128/121", "::ffff:192.0.2.128", 121,
		      RW_POLICY_LIMIT, 1000000, 2000000);
	config_unref(cfg);
}

Test(config_xdp, absent_section_is_off)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert_eq(cfg->xdp.mode, XDP_MODE_OFF);
	cr_assert_null(cfg->xdp.interface);
	cr_assert_eq(cfg->xdp.nports, 0);
	cr_assert_eq(cfg->xdp.npolicies, 0);
	config_unref(cfg);
}

Test(config_xdp, defaults_when_only_the_interface_is_given)
{
	struct rw_config *cfg = load_ok(XDP_HEAD "  interface: lo\n");
	const struct rw_xdp *xdp = &cfg->xdp;
	cr_assert_eq(xdp->mode, XDP_MODE_AUTO);
	cr_assert_eq(xdp->limit, RW_LIMIT_SYN);
	cr_assert_not(xdp->required);
	cr_assert_str_eq(xdp->interface, "lo");
	cr_assert_str_eq(xdp->pin_path, RW_XDP_PIN_DIR);
	cr_assert_str_eq(xdp->pin_path, "/sys/fs/bpf/ringway/v1");
	cr_assert_eq(xdp->nports, 0);
	cr_assert_eq(xdp->rate, 200);
	cr_assert_eq(xdp->burst, 400);
	cr_assert_eq(xdp->max_sources, 131072);
	cr_assert_eq(xdp->new_sources_per_second, 1000);
	cr_assert_eq(xdp->fallback_rate, 100);
	cr_assert_eq(xdp->fallback_burst, 200);
	cr_assert_eq(xdp->ipv6_source_prefix, 128, "one bucket per IPv6 address");
	cr_assert_eq(xdp->npolicies, 0);
	cr_assert_null(xdp->policies);
	config_unref(cfg);
}

Test(config_xdp, bursts_default_to_twice_the_rate_even_at_the_maximum_rate)
{
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  rate: 1000000\n"
		"  fallback_rate: 999999\n"
		"  policies:\n"
		"    - {cidr: 10.0.0.0/8, rate: 1000000}\n"
		"    - {cidr: 10.1.0.0/16, rate: 1, burst: 1}\n"
		"    - {cidr: 10.2.0.0/16, rate: 1}\n");
	cr_assert_eq(cfg->xdp.rate, 1000000);
	cr_assert_eq(cfg->xdp.burst, 2000000);
	cr_assert_eq(cfg->xdp.fallback_rate, 999999);
	cr_assert_eq(cfg->xdp.fallback_burst, 1999998);
	cr_assert_eq(cfg->xdp.policies[0].rate, 1000000);
	cr_assert_eq(cfg->xdp.policies[0].burst, 2000000);
	cr_assert_eq(cfg->xdp.policies[1].burst, 1);
	cr_assert_eq(cfg->xdp.policies[2].burst, 2);
	config_unref(cfg);

	cfg = load_ok(XDP_HEAD "  {interface: lo, rate: 5, burst: 3, fallback_burst: 1}\n");
	cr_assert_eq(cfg->xdp.rate, 5);
	cr_assert_eq(cfg->xdp.burst, 3, "an explicit burst is kept, even below the rate");
	cr_assert_eq(cfg->xdp.fallback_rate, 100);
	cr_assert_eq(cfg->xdp.fallback_burst, 1);
	config_unref(cfg);
}

Test(config_xdp, bursts_and_the_admission_budget_reach_100000000)
{
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  rate: 1\n"
		"  burst: 100000000\n"
		"  new_sources_per_second: 100000000\n"
		"  fallback_burst: 100000000\n"
		"  policies:\n"
		"    - {cidr: 10.0.0.0/8, rate: 1000000, burst: 100000000}\n");
	cr_assert_eq(cfg->xdp.rate, 1);
	cr_assert_eq(cfg->xdp.burst, 100000000);
	cr_assert_eq(cfg->xdp.new_sources_per_second, 100000000);
	cr_assert_eq(cfg->xdp.fallback_rate, 100);
	cr_assert_eq(cfg->xdp.fallback_burst, 100000000);
	expect_policy(&cfg->xdp.policies[0], "10.0.0.0/8", "::ffff:10.0.0.0", 104, RW_POLICY_LIMIT,
		      1000000, 100000000);
	config_unref(cfg);
}

Test(config_xdp, ipv6_source_prefix)
{
	struct rw_config *cfg = load_ok(XDP_HEAD "  interface: lo\n  ipv6_source_prefix: 64\n");
	cr_assert_eq(cfg->xdp.ipv6_source_prefix, 64);
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  {interface: lo, ipv6_source_prefix: 32}\n");
	cr_assert_eq(cfg->xdp.ipv6_source_prefix, 32);
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  {interface: lo, ipv6_source_prefix: 128}\n");
	cr_assert_eq(cfg->xdp.ipv6_source_prefix, 128);
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  {mode: off}\n");
	cr_assert_eq(cfg->xdp.ipv6_source_prefix, 128);
	config_unref(cfg);
}

Test(config_xdp, mode_off_needs_no_interface_and_other_modes_load)
{
	struct rw_config *cfg = load_ok(XDP_HEAD "  mode: off\n  rate: 10\n");
	cr_assert_eq(cfg->xdp.mode, XDP_MODE_OFF);
	cr_assert_null(cfg->xdp.interface);
	cr_assert_eq(cfg->xdp.rate, 10);
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  {interface: enp3s0f1.100, mode: generic, limit: syn}\n");
	cr_assert_eq(cfg->xdp.mode, XDP_MODE_GENERIC);
	cr_assert_str_eq(cfg->xdp.interface, "enp3s0f1.100");
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  {interface: lo, mode: auto, required: false, ports: [65535, 1]}\n");
	cr_assert_eq(cfg->xdp.mode, XDP_MODE_AUTO);
	cr_assert_not(cfg->xdp.required);
	cr_assert_eq(cfg->xdp.nports, 2);
	cr_assert_eq(cfg->xdp.ports[0], 65535);
	cr_assert_eq(cfg->xdp.ports[1], 1);
	config_unref(cfg);
}

Test(config_xdp, block_style_ports_and_policies)
{
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  ports:\n"
		"    - 443\n"
		"    - 80\n"
		"  policies:\n"
		"    - cidr: \"2000::/3\"\n"
		"      action: deny\n"
		"    - cidr: 0.0.0.0/0\n"
		"      action: allow\n");
	cr_assert_eq(cfg->xdp.nports, 2);
	cr_assert_eq(cfg->xdp.ports[0], 443);
	cr_assert_eq(cfg->xdp.ports[1], 80);
	cr_assert_eq(cfg->xdp.npolicies, 2);
	expect_policy(&cfg->xdp.policies[0], "2000::/3", "2000::", 3, RW_POLICY_DENY, 0, 0);
	expect_policy(&cfg->xdp.policies[1], "0.0.0.0/0", "::ffff:0.0.0.0", 96, RW_POLICY_ALLOW, 0,
		      0);
	config_unref(cfg);
}

Test(config_xdp_errors, section_shape_and_unknown_keys)
{
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  rat: 5\n",
		      "t.yaml:10:3: xdp: unknown key 'rat' (valid keys: interface, mode, limit, ports, "
		      "rate, burst, required, pin_path, max_sources, new_sources_per_second, "
		      "fallback_rate, fallback_burst, ipv6_source_prefix, policies)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "xdp: on\n",
		      "t.yaml:8:6: xdp: expected a mapping, got 'on'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "xdp:\n",
		      "t.yaml:8:5: xdp: expected a mapping, got an empty value");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  interface: eth0\n",
		      "t.yaml:10:3: xdp: duplicate key 'interface' (first at 9:3)");
}

Test(config_xdp_errors, interface_required_unless_off_and_a_valid_name)
{
	EXPECT_ERRORS(XDP_HEAD "  rate: 5\n", "t.yaml:9:3: xdp: missing required key 'interface' "
						 "(or set mode: off)");
	EXPECT_ERRORS(XDP_HEAD "  mode: native\n", "t.yaml:9:3: xdp: missing required key "
						      "'interface' (or set mode: off)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "xdp: {}\n",
		      "t.yaml:8:6: xdp: missing required key 'interface' (or set mode: off)");
	static const struct { const char *yaml, *name; } bad[] = {
		{ "eth0/1", "eth0/1" }, { "eth0:1", "eth0:1" }, { "\"eth 0\"", "eth 0" },
		{ "\"eth\\t0\"", "eth\t0" }, { "\".\"", "." }, { "\"..\"", ".." }, { "\"\"", "" },
		{ "abcdefghijklmnop", "abcdefghijklmnop" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char yaml[512], want[256];
		snprintf(yaml, sizeof yaml, XDP_HEAD "  interface: %s\n", bad[i].yaml);
		snprintf(want, sizeof want,
			 "t.yaml:9:14: interface: invalid interface name '%s' (1..15 characters, no "
			 "'/', ':' or spaces, not '.' or '..')",
			 bad[i].name);
		expect_errors(yaml, (const char *const[]){ want }, 1);
	}
	EXPECT_ERRORS(XDP_HEAD "  interface: [lo]\n",
		      "t.yaml:9:14: interface: expected a scalar, got a sequence");
	struct rw_config *cfg = load_ok(XDP_HEAD "  interface: abcdefghijklmno\n");
	cr_assert_str_eq(cfg->xdp.interface, "abcdefghijklmno");
	config_unref(cfg);
}

Test(config_xdp_errors, enums_booleans_and_numbers)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  mode: skb\n"
		      "  limit: udp\n"
		      "  required: yes\n"
		      "  rate: fast\n"
		      "  burst: 0\n"
		      "  max_sources: 1023\n"
		      "  new_sources_per_second: 100000001\n"
		      "  fallback_rate: -1\n"
		      "  fallback_burst: 2.5\n",
		      "t.yaml:10:9: mode: invalid value 'skb' (expected one of off, auto, native, "
		      "generic)",
		      "t.yaml:11:10: limit: invalid value 'udp' (expected one of syn, all)",
		      "t.yaml:12:13: required: expected true or false, got 'yes'",
		      "t.yaml:13:9: rate: expected an integer, got 'fast'",
		      "t.yaml:14:10: burst: 0 is out of range 1..100000000",
		      "t.yaml:15:16: max_sources: 1023 is out of range 1024..16777216",
		      "t.yaml:16:27: new_sources_per_second: 100000001 is out of range 1..100000000",
		      "t.yaml:17:18: fallback_rate: -1 is out of range 1..1000000",
		      "t.yaml:18:19: fallback_burst: expected an integer, got '2.5'");
	EXPECT_ERRORS(XDP_HEAD "  {interface: lo, max_sources: 16777217, required: [true]}\n",
		      "t.yaml:9:32: max_sources: 16777217 is out of range 1024..16777216",
		      "t.yaml:9:52: required: expected a scalar, got a sequence");
}

Test(config_xdp_errors, mode_off_still_checks_the_section)
{
	EXPECT_ERRORS(XDP_HEAD "  mode: off\n  rate: 0\n  ports: []\n",
		      "t.yaml:10:9: rate: 0 is out of range 1..1000000",
		      "t.yaml:11:10: ports: empty list (leave 'ports' out to guard every port)");
}

Test(config_xdp_errors, rates_at_most_1000000_bursts_at_most_100000000)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  rate: 1000001\n"
		      "  burst: 100000001\n"
		      "  fallback_rate: 1000001\n"
		      "  fallback_burst: 100000001\n"
		      "  policies:\n"
		      "    - {cidr: 10.0.0.0/8, rate: 1000001, burst: 100000001}\n"
		      "    - cidr: 10.1.0.0/16\n"
		      "      rate: 1000001\n",
		      "t.yaml:10:9: rate: 1000001 is out of range 1..1000000",
		      "t.yaml:11:10: burst: 100000001 is out of range 1..100000000",
		      "t.yaml:12:18: fallback_rate: 1000001 is out of range 1..1000000",
		      "t.yaml:13:19: fallback_burst: 100000001 is out of range 1..100000000",
		      "t.yaml:15:32: rate: 1000001 is out of range 1..1000000",
		      "t.yaml:15:48: burst: 100000001 is out of range 1..100000000",
		      "t.yaml:17:13: rate: 1000001 is out of range 1..1000000");
}

Test(config_xdp_errors, ipv6_source_prefix_32_to_128)
{
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  ipv6_source_prefix: 31\n",
		      "t.yaml:10:23: ipv6_source_prefix: 31 is out of range 32..128");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  ipv6_source_prefix: 129\n",
		      "t.yaml:10:23: ipv6_source_prefix: 129 is out of range 32..128");
	EXPECT_ERRORS(XDP_HEAD "  {interface: lo, ipv6_source_prefix: 0}\n",
		      "t.yaml:9:39: ipv6_source_prefix: 0 is out of range 32..128");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  ipv6_source_prefix: /64\n",
		      "t.yaml:10:23: ipv6_source_prefix: expected an integer, got '/64'");
}

Test(config_xdp_errors, ports)
{
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  ports: [80, 0, 65536, http, 443, 80, 443, {a: 1}]\n",
		      "t.yaml:10:15: ports: 0 is out of range 1..65535",
		      "t.yaml:10:18: ports: 65536 is out of range 1..65535",
		      "t.yaml:10:25: ports: expected an integer, got 'http'",
		      "t.yaml:10:36: ports: duplicate port 80 (first at 10:11)",
		      "t.yaml:10:40: ports: duplicate port 443 (first at 10:31)",
		      "t.yaml:10:45: ports: expected a scalar, got a mapping");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  ports: 80\n",
		      "t.yaml:10:10: ports: expected a sequence, got '80'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n"
		      "  ports: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18]\n",
		      "t.yaml:10:66: ports: more than 16 ports");
	struct rw_config *cfg = load_ok(XDP_HEAD "  interface: lo\n"
		"  ports: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n");
	cr_assert_eq(cfg->xdp.nports, 16);
	cr_assert_eq(cfg->xdp.ports[15], 16);
	config_unref(cfg);
}

Test(config_xdp_errors, pin_path)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  pin_path: sys/fs/bpf/x\n",
		      "t.yaml:10:13: pin_path: 'sys/fs/bpf/x' must start with '/'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  pin_path: /sys/fs/bpf/../x\n",
		      "t.yaml:10:13: pin_path: '/sys/fs/bpf/../x' must not contain '..'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  pin_path: /..\n",
		      "t.yaml:10:13: pin_path: '/..' must not contain '..'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  pin_path: /\n",
		      "t.yaml:10:13: pin_path: '/' must be a directory below '/'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  pin_path: /././/\n",
		      "t.yaml:10:13: pin_path: '/././/' must be a directory below '/'");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  pin_path: \"/sys/fs/bpf/a b\"\n",
		      "t.yaml:10:13: pin_path: '/sys/fs/bpf/a b' must not contain spaces, control "
		      "characters, '?' or '#'");
	char yaml[1024], path[256];
	memset(path, 'x', sizeof path);
	path[0] = '/';
	path[201] = 0;
	snprintf(yaml, sizeof yaml, XDP_HEAD "  interface: lo\n  pin_path: %s\n", path);
	EXPECT_ERRORS(yaml, "t.yaml:10:13: pin_path: longer than 200 characters");
	path[200] = 0;
	snprintf(yaml, sizeof yaml, XDP_HEAD "  interface: lo\n  pin_path: %s\n", path);
	struct rw_config *cfg = load_ok(yaml);
	cr_assert_str_eq(cfg->xdp.pin_path, path);
	config_unref(cfg);
	cfg = load_ok(XDP_HEAD "  interface: lo\n  pin_path: /sys/fs/bpf/a..b/\n");
	cr_assert_str_eq(cfg->xdp.pin_path, "/sys/fs/bpf/a..b/");
	config_unref(cfg);
}

Test(config_xdp_errors, policy_values)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  policies:\n"
		      "    - {cidr: 198.51.100.1/24, action: deny}\n"
		      "    - {cidr: 10.0.0.0/33, action: allow}\n"
		      "    - {cidr: example.com, action: allow}\n"
		      "    - {cidr: 10.0.0.0/8, action: block}\n"
		      "    - {cidr: 10.1.0.0/16, rate: 0, burst: many}\n"
		      "    - {action: deny, colour: red}\n"
		      "    - 10.2.0.0/16\n"
		      "    - {cidr: [10.3.0.0/16], action: deny}\n",
		      "t.yaml:11:14: cidr: invalid CIDR '198.51.100.1/24' (host bits set past /24)",
		      "t.yaml:12:14: cidr: invalid CIDR '10.0.0.0/33' (prefix length out of range "
		      "0..32)",
		      "t.yaml:13:14: cidr: invalid CIDR 'example.com' (not an IPv4 or IPv6 address)",
		      "t.yaml:14:34: action: invalid value 'block' (expected one of limit, allow, deny)",
		      "t.yaml:15:33: rate: 0 is out of range 1..1000000",
		      "t.yaml:15:43: burst: expected an integer, got 'many'",
		      "t.yaml:16:7: policy #6: missing required key 'cidr'",
		      "t.yaml:16:22: policy #6: unknown key 'colour' (valid keys: cidr, action, rate, "
		      "burst)",
		      "t.yaml:17:7: policies: expected a mapping, got '10.2.0.0/16'",
		      "t.yaml:18:14: cidr: expected a scalar, got a sequence");
	EXPECT_ERRORS(XDP_HEAD "  interface: lo\n  policies: {cidr: 10.0.0.0/8}\n",
		      "t.yaml:10:13: policies: expected a sequence, got a mapping");
}

Test(config_xdp_errors, ipv6_prefixes_covering_every_ipv4_source)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  policies:\n"
		      "    - {cidr: '::/0', action: deny}\n"
		      "    - {cidr: 2000::/3, action: deny}\n"
		      "    - cidr: ::/80\n"
		      "      rate: 5\n"
		      "    - {cidr: \"::ff00:0:0/88\", action: allow}\n",
		      "t.yaml:11:14: cidr: invalid CIDR '::/0' (" COVERS_IPV4 ")",
		      "t.yaml:13:13: cidr: invalid CIDR '::/80' (" COVERS_IPV4 ")",
		      "t.yaml:15:14: cidr: invalid CIDR '::ff00:0:0/88' (" COVERS_IPV4 ")");
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  policies:\n"
		"    - {cidr: 2000::/3, action: deny}\n"
		"    - {cidr: \"::ffff:0:0/96\", rate: 5}\n");
	cr_assert_eq(cfg->xdp.npolicies, 2);
	expect_policy(&cfg->xdp.policies[0], "2000::/3", "2000::", 3, RW_POLICY_DENY, 0, 0);
	expect_policy(&cfg->xdp.policies[1], "::ffff:0:0/96", "::ffff:0.0.0.0", 96, RW_POLICY_LIMIT,
		      5, 10);
	config_unref(cfg);
}

/* With IPv6 buckets per /64, a limit on a longer IPv6 prefix cannot apply (its sources share the
 * /64's bucket): refused. Allow and deny still take whole addresses; IPv4 is not concerned. */
Test(config_xdp_errors, ipv6_limit_longer_than_the_source_prefix)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  ipv6_source_prefix: 64\n"
		      "  policies:\n"
		      "    - {cidr: 2001:db8:1:2::bad/128, rate: 1}\n"
		      "    - {cidr: 2001:db8:1:2::/64, rate: 5}\n"
		      "    - {cidr: 2001:db8:1:2::7/128, action: deny}\n"
		      "    - {cidr: 198.51.100.7/32, rate: 1}\n"
		      "    - {cidr: 2001:db8:1:3::/80, rate: 2}\n",
		      "t.yaml:12:14: cidr: a limit on '2001:db8:1:2::bad/128' is longer than "
		      "ipv6_source_prefix /64, whose sources share one bucket: limit the /64, or allow "
		      "or deny the address",
		      "t.yaml:16:14: cidr: a limit on '2001:db8:1:3::/80' is longer than "
		      "ipv6_source_prefix /64, whose sources share one bucket: limit the /64, or allow "
		      "or deny the address");
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  policies:\n"
		"    - {cidr: 2001:db8:1:2::bad/128, rate: 1}\n");
	cr_assert_eq(cfg->xdp.npolicies, 1, "per-address buckets (the default) take any prefix");
	config_unref(cfg);
}

/* config_parse_prefix is the syntax alone (what `limits unset` needs to remove an old ::/0). */
Test(config_scalars, prefix_without_the_policy_rule)
{
	uint8_t addr[16], len = 0;
	const char *why = NULL;
	cr_assert(config_parse_prefix("::/0", addr, &len, &why));
	cr_assert_eq(len, 0);
	cr_assert_not(config_parse_cidr("::/0", addr, &len, &why));
	cr_assert_not(config_parse_prefix("198.51.100.1/24", addr, &len, &why));
	cr_assert_str_eq(why, "host bits set past /24");
}

Test(config_xdp_errors, policy_action_and_rate_go_together)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  policies:\n"
		      "    - {cidr: 10.0.0.0/8}\n"
		      "    - {cidr: 10.1.0.0/16, burst: 5}\n"
		      "    - {cidr: 10.2.0.0/16, action: deny, rate: 5, burst: 10}\n"
		      "    - {cidr: 10.3.0.0/16, action: allow, burst: 10}\n"
		      "    - {cidr: 10.4.0.0/16, action: limit}\n"
		      "    - {cidr: 10.5.0.0/16, action: limit, burst: 10}\n",
		      "t.yaml:11:7: policy #1: needs an action (allow, deny) or a rate (for action "
		      "limit)",
		      "t.yaml:12:7: policy #2: needs an action (allow, deny) or a rate (for action "
		      "limit)",
		      "t.yaml:13:41: rate: only applies to action limit, not deny",
		      "t.yaml:13:50: burst: only applies to action limit, not deny",
		      "t.yaml:14:42: burst: only applies to action limit, not allow",
		      "t.yaml:15:7: policy #5: action limit needs a rate",
		      "t.yaml:16:7: policy #6: action limit needs a rate");
	struct rw_config *cfg = load_ok(XDP_HEAD
		"  interface: lo\n"
		"  policies:\n"
		"    - {cidr: 10.0.0.0/8, action: limit, rate: 9}\n");
	expect_policy(&cfg->xdp.policies[0], "10.0.0.0/8", "::ffff:10.0.0.0", 104, RW_POLICY_LIMIT,
		      9, 18);
	config_unref(cfg);
}

Test(config_xdp_errors, duplicate_prefixes_after_mapping)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  interface: lo\n"
		      "  policies:\n"
		      "    - {cidr: 198.51.100.0/24, action: deny}\n"
		      "    - {cidr: 198.51.100.0/25, action: allow}\n"
		      "    - {cidr: 198.51.100.0/24, action: allow}\n"
		      "    - cidr: ::ffff:198.51.100.0/120\n"
		      "      rate: 5\n"
		      "    - {cidr: 2001:db8::/32, action: deny}\n"
		      "    - {cidr: 2001:0db8:0::/32, action: deny}\n"
		      "    - {cidr: 198.51.100.128/25, action: deny}\n",
		      "t.yaml:13:14: cidr: duplicate prefix '198.51.100.0/24' (same as "
		      "'198.51.100.0/24' at 11:14)",
		      "t.yaml:14:13: cidr: duplicate prefix '::ffff:198.51.100.0/120' (same as "
		      "'198.51.100.0/24' at 11:14)",
		      "t.yaml:17:14: cidr: duplicate prefix '2001:0db8:0::/32' (same as "
		      "'2001:db8::/32' at 16:14)");
}

/* An xdp section with n deny policies for distinct /32s, the first on line 11; free it. */
static char *xdp_with_policies(unsigned n)
{
	size_t cap = 128 + 48 * (size_t)n;
	char *yaml = malloc(cap);
	cr_assert_not_null(yaml);
	int len = snprintf(yaml, cap, XDP_HEAD "  interface: lo\n  policies:\n");
	for (unsigned i = 0; i < n; i++)
		len += snprintf(yaml + len, cap - (size_t)len, "    - {cidr: 10.%u.%u.1, action: deny}\n",
				i >> 8, i & 0xff);
	return yaml;
}

Test(config_xdp_errors, at_most_4096_policies)
{
	char *yaml = xdp_with_policies(RW_XDP_MAX_POLICIES);
	struct rw_config *cfg = load_ok(yaml);
	cr_assert_eq(cfg->xdp.npolicies, RW_XDP_MAX_POLICIES);
	expect_policy(&cfg->xdp.policies[4095], "10.15.255.1", "::ffff:10.15.255.1", 128,
		      RW_POLICY_DENY, 0, 0);
	config_unref(cfg);
	free(yaml);

	yaml = xdp_with_policies(RW_XDP_MAX_POLICIES + 1); /* the 4097th on line 11 + 4096 */
	EXPECT_ERRORS(yaml, "t.yaml:4107:7: policies: more than 4096 policies");
	free(yaml);
}

Test(config_xdp_errors, every_error_of_the_section_is_reported)
{
	EXPECT_ERRORS(XDP_HEAD
		      "  mode: fast\n"
		      "  ports: [22, 22]\n"
		      "  burst: 1.5\n"
		      "  policies:\n"
		      "    - {cidr: 10.0.0.1/8, action: deny}\n"
		      "    - {cidr: 10.0.0.0/8, action: deny, rate: 3}\n",
		      "t.yaml:9:3: xdp: missing required key 'interface' (or set mode: off)",
		      "t.yaml:9:9: mode: invalid value 'fast' (expected one of off, auto, native, "
		      "generic)",
		      "t.yaml:10:15: ports: duplicate port 22 (first at 10:11)",
		      "t.yaml:11:10: burst: expected an integer, got '1.5'",
		      "t.yaml:13:14: cidr: invalid CIDR '10.0.0.1/8' (host bits set past /8)",
		      "t.yaml:14:40: rate: only applies to action limit, not deny");
}

/* ------------------------------------------------------------------------------------------- */
/* Route precedence through a loaded configuration */

static const char routing_config[] =
	UPSTREAMS
	"frontends:\n"
	"  - name: public\n"
	"    listen: [\"127.0.0.1:8080\"]\n"
	"    routes:\n"
	"      - {name: api, match: {path_prefix: /api}, upstream: users}\n"
	"      - {name: users, match: {path_prefix: /api/users, methods: [GET, POST]}, upstream: users}\n"
	"      - {name: me, match: {path_exact: /api/users/me}, upstream: users}\n"
	"      - {name: admin, match: {path_prefix: /admin, methods: [GET]}, upstream: users}\n"
	"      - {name: admin_write, match: {path_prefix: /admin, methods: [PUT, DELETE]}, upstream: users}\n"
	"      - {name: host_users, match: {host: api.example.com, path_prefix: /api/users}, upstream: users}\n"
	"      - {name: wild, match: {host: \"*.example.com\", path_prefix: /api}, upstream: users}\n";

static const char *route_for(const struct rw_config *cfg, const char *host, const char *path,
			     uint8_t method, uint32_t *allow)
{
	uint32_t unused;
	const struct rw_route *rt = router_match(cfg->frontends[0].router,
						 slice_make(host, strlen(host)),
						 slice_make(path, strlen(path)), method,
						 allow ? allow : &unused);
	return rt ? rt->name : NULL;
}

Test(config_routing, exact_beats_prefix_and_longest_prefix_wins)
{
	struct rw_config *cfg = load_ok(routing_config);
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/users/me", HTTP_M_GET, NULL), "me");
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/users/me", HTTP_M_DELETE, NULL), "me");
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/users/me/x", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/users/7", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/orders", HTTP_M_GET, NULL), "api");
	/* a method the longer prefix refuses falls through to the shorter one that allows it */
	cr_assert_str_eq(route_for(cfg, "other.org", "/api/users/7", HTTP_M_DELETE, NULL), "api");
	config_unref(cfg);
}

Test(config_routing, prefixes_match_whole_segments)
{
	struct rw_config *cfg = load_ok(routing_config);
	cr_assert_str_eq(route_for(cfg, "", "/api/users", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "", "/api/users/", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "", "/api/users/7", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "", "/api/usersX", HTTP_M_GET, NULL), "api");
	cr_assert_str_eq(route_for(cfg, "", "/api", HTTP_M_GET, NULL), "api");
	uint32_t allow = 7;
	cr_assert_null(route_for(cfg, "", "/apix", HTTP_M_GET, &allow));
	cr_assert_eq(allow, 0);
	config_unref(cfg);
}

Test(config_routing, host_routes_beat_host_less_ones)
{
	struct rw_config *cfg = load_ok(routing_config);
	/* the host route wins even over the host-less exact route */
	cr_assert_str_eq(route_for(cfg, "api.example.com", "/api/users/me", HTTP_M_GET, NULL),
			 "host_users");
	cr_assert_str_eq(route_for(cfg, "API.Example.com:8080", "/api/users/7", HTTP_M_DELETE, NULL),
			 "host_users");
	/* exact host first, then the wildcard */
	cr_assert_str_eq(route_for(cfg, "api.example.com", "/api/orders", HTTP_M_GET, NULL), "wild");
	cr_assert_str_eq(route_for(cfg, "v2.eu.example.com", "/api/users", HTTP_M_GET, NULL), "wild");
	/* the wildcard needs a label in front of its suffix */
	cr_assert_str_eq(route_for(cfg, "example.com", "/api/orders", HTTP_M_GET, NULL), "api");
	cr_assert_str_eq(route_for(cfg, "badexample.com", "/api/orders", HTTP_M_GET, NULL), "api");
	config_unref(cfg);
}

Test(config_routing, method_mismatch_gives_405_with_allow_and_nothing_gives_404)
{
	struct rw_config *cfg = load_ok(routing_config);
	uint32_t allow = 0;
	cr_assert_str_eq(route_for(cfg, "", "/admin/x", HTTP_M_PUT, NULL), "admin_write");
	cr_assert_null(route_for(cfg, "", "/admin/x", HTTP_M_POST, &allow));
	cr_assert_eq(allow, HTTP_METHOD_BIT(HTTP_M_GET) | HTTP_METHOD_BIT(HTTP_M_PUT) |
				    HTTP_METHOD_BIT(HTTP_M_DELETE));
	allow = 123;
	cr_assert_null(route_for(cfg, "", "/nothing", HTTP_M_GET, &allow));
	cr_assert_eq(allow, 0);
	allow = 123;
	cr_assert_null(route_for(cfg, "", "/", HTTP_M_GET, &allow));
	cr_assert_eq(allow, 0);
	config_unref(cfg);
}

static const char template_config[] =
	UPSTREAMS
	"frontends:\n"
	"  - name: public\n"
	"    listen: [\"127.0.0.1:8080\"]\n"
	"    routes:\n"
	"      - {name: prefix, match: {path_prefix: /api/profile}, upstream: users}\n"
	"      - {name: profile, match: {path_exact: \"/api/profile/{id}\"}, upstream: users}\n"
	"      - {name: me, match: {path_exact: /api/profile/me}, upstream: users}\n"
	"      - {name: item, match: {path_exact: \"/shop/{shop}/items/{item_id}\"}, upstream: users}\n";

Test(config_routing, path_parameters_between_literal_exact_and_prefix)
{
	struct rw_config *cfg = load_ok(template_config);
	cr_assert_str_eq(route_for(cfg, "", "/api/profile/me", HTTP_M_GET, NULL), "me");
	cr_assert_str_eq(route_for(cfg, "", "/api/profile/42", HTTP_M_GET, NULL), "profile");
	/* one non-empty segment, no more */
	cr_assert_str_eq(route_for(cfg, "", "/api/profile/", HTTP_M_GET, NULL), "prefix");
	cr_assert_str_eq(route_for(cfg, "", "/api/profile/42/x", HTTP_M_GET, NULL), "prefix");
	cr_assert_str_eq(route_for(cfg, "", "/api/profile", HTTP_M_GET, NULL), "prefix");
	cr_assert_str_eq(route_for(cfg, "", "/shop/s1/items/i%202", HTTP_M_GET, NULL), "item");
	cr_assert_null(route_for(cfg, "", "/shop/s1/item/i2", HTTP_M_GET, NULL));
	cr_assert_null(route_for(cfg, "", "/shop//items/i2", HTTP_M_GET, NULL));

	const struct rw_route *rt = &cfg->frontends[0].routes[3];
	cr_assert_eq(rt->nparams, 2);
	struct slice path = SLICE_LIT("/shop/s1/items/i%202"), v;
	cr_assert(router_path_param(rt, path, "shop", &v));
	cr_assert(slice_eq(v, "s1", 2));
	cr_assert(router_path_param(rt, path, "item_id", &v));
	cr_assert(slice_eq(v, "i%202", 5));
	cr_assert_not(router_path_param(rt, path, "item", &v));
	cr_assert_not(router_path_param(&cfg->frontends[0].routes[2], SLICE_LIT("/api/profile/me"),
					"id", &v));
	config_unref(cfg);
}

Test(config_errors, bad_path_templates)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		      "      - {name: a, match: {path_prefix: \"/a/{id}\"}, upstream: users}\n"
		      "      - {name: b, match: {path_exact: \"/b/x{id}\"}, upstream: users}\n"
		      "      - {name: c, match: {path_exact: \"/c/{}\"}, upstream: users}\n"
		      "      - {name: d, match: {path_exact: \"/d/{id}/{id}\"}, upstream: users}\n"
		      "      - {name: e, match: {path_exact: \"/e/{query}\"}, upstream: users}\n"
		      "      - {name: f, match: {path_exact: \"/f/{i-d}\"}, upstream: users}\n"
		      "      - {name: g, match: {path_exact: \"/g/{id}/x\"}, strip_prefix: \"/g/{id}\", upstream: users}\n",
		      "t.yaml:7:40: path_prefix: '/a/{id}': path parameters ({name}) are only for path_exact",
		      "t.yaml:8:39: path_exact: '/b/x{id}': a parameter is a whole segment '{name}' "
		      "(letters, digits, '_'), got 'x{id}'",
		      "t.yaml:9:39: path_exact: '/c/{}': a parameter is a whole segment '{name}' "
		      "(letters, digits, '_'), got '{}'",
		      "t.yaml:10:39: path_exact: '/d/{id}/{id}': parameter '{id}' is used twice",
		      "t.yaml:11:39: path_exact: '/e/{query}': '{query}' is a reserved name",
		      "t.yaml:12:39: path_exact: '/f/{i-d}': a parameter is a whole segment '{name}' "
		      "(letters, digits, '_'), got '{i-d}'",
		      "t.yaml:13:67: strip_prefix: '/g/{id}' would strip a path parameter of '/g/{id}/x'");
}

/* ------------------------------------------------------------------------------------------- */
/* The shipped demo configuration */

Test(config_demo, config_ringway_yaml_loads_and_routes)
{
	/* config/ringway.yaml, found from this file's path as compiled (relative to the repository
	 * root, where `make unit` runs the tests) */
	char path[4096];
	const char *self = __FILE__, *tail = strstr(self, "tests/unit/test_config.c");
	cr_assert_not_null(tail);
	snprintf(path, sizeof path, "%.*sconfig/ringway.yaml", (int)(tail - self), self);
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_file(path, &errs);
	for (uint32_t i = 0; i < errs.count; i++)
		cr_log_error("%s", errs.lines[i]);
	config_errors_free(&errs);
	cr_assert_not_null(cfg);

	cr_assert_eq(cfg->nupstreams, 2);
	cr_assert_str_eq(cfg->upstreams[0].name, "users");
	cr_assert_eq(cfg->upstreams[0].ntargets, 2);
	cr_assert_str_eq(cfg->upstreams[1].name, "orders");
	cr_assert_str_eq(cfg->upstreams[1].targets[0].text, "127.0.0.1:9103");
	cr_assert_eq(cfg->nfrontends, 2); /* public, and mobile (Backends-for-Frontends) */
	cr_assert_str_eq(cfg->frontends[0].listens[0].text, "127.0.0.1:8080");
	cr_assert_str_eq(cfg->frontends[1].name, "mobile");
	cr_assert_str_eq(cfg->frontends[1].listens[0].text, "127.0.0.1:8081");
	cr_assert_eq(cfg->frontends[1].routes[0].auth.methods, AUTH_API_KEY);
	cr_assert_eq(cfg->frontends[1].routes[0].rate_limits.count, 1);

	uint32_t allow = 0;
	cr_assert_str_eq(route_for(cfg, "localhost:8080", "/api/users/1", HTTP_M_GET, NULL), "users");
	cr_assert_str_eq(route_for(cfg, "localhost:8080", "/api/users", HTTP_M_POST, NULL), "users");
	cr_assert_null(route_for(cfg, "localhost:8080", "/api/users/1", HTTP_M_PATCH, &allow));
	cr_assert_eq(allow, HTTP_METHOD_BIT(HTTP_M_GET) | HTTP_METHOD_BIT(HTTP_M_POST) |
				    HTTP_METHOD_BIT(HTTP_M_PUT) | HTTP_METHOD_BIT(HTTP_M_DELETE));
	cr_assert_str_eq(route_for(cfg, "localhost:8080", "/api/orders/7", HTTP_M_PATCH, NULL), "orders");
	cr_assert_str_eq(route_for(cfg, "localhost:8080", "/healthz", HTTP_M_GET, NULL), "health");
	cr_assert_null(route_for(cfg, "localhost:8080", "/healthz/x", HTTP_M_GET, &allow));
	cr_assert_null(route_for(cfg, "localhost:8080", "/nope", HTTP_M_GET, &allow));
	cr_assert_eq(allow, 0);
	config_unref(cfg);
}

/* The admin section */

Test(config, admin_is_off_without_its_section_and_loopback_by_default)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert_not(cfg->admin.enabled);
	config_unref(cfg);
	cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {}\n");
	cr_assert(cfg->admin.enabled);
	cr_assert_str_eq(cfg->admin.listen.text, "127.0.0.1:9901");
	cr_assert_null(cfg->admin.token);
	config_unref(cfg);
	cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin:\n");
	cr_assert(cfg->admin.enabled);
	config_unref(cfg);
	cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		      "admin: {listen: '0.0.0.0:9902', token: s3cret-s3cret-s3cret}\n");
	cr_assert_str_eq(cfg->admin.listen.text, "0.0.0.0:9902");
	cr_assert_str_eq(cfg->admin.token, "s3cret-s3cret-s3cret");
	static const char tail[] = "admin: {listen: '0.0.0.0:9902', token: s3cret-s3cret-s3cret}\n";
	cr_assert_eq(cfg->source_len, strlen(cfg->source)); /* the text it was read from, for GET /config */
	cr_assert_str_eq(cfg->source + cfg->source_len - strlen(tail), tail);
	config_unref(cfg);
}

Test(config_errors, admin_section)
{
	/* line 8 is the admin section's */
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {listen: '0.0.0.0:9901'}\n",
		      "t.yaml:8:17: admin.listen: 0.0.0.0:9901 is off loopback: set admin.token too");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {listen: '[::]:9901'}\n",
		      "t.yaml:8:17: admin.listen: [::]:9901 is off loopback: set admin.token too");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {token: short}\n",
		      "t.yaml:8:16: admin.token: 5 characters; use 16 to 256");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {token: 'sixteen chars ok'}\n",
		      "t.yaml:8:16: admin.token: only visible ASCII characters, no spaces");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {listen: 'localhost:9901'}\n",
		      "t.yaml:8:17: admin.listen: invalid address 'localhost:9901' (expected a.b.c.d:port "
		      "or [ipv6]:port, numeric, port 1..65535)");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: [1]\n",
		      "t.yaml:8:8: admin: expected a mapping, got a sequence");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {listen: '127.0.0.1:8080'}\n",
		      "t.yaml:8:17: admin.listen: address '127.0.0.1:8080' is already used by frontend "
		      "'public'");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "admin: {listen: '127.0.0.1:9901', tokn: x}\n",
		      "t.yaml:8:35: admin: unknown key 'tokn' (valid keys: listen, token)");
}

/* ------------------------------------------------------------------------------------------- */
/* consumers */

#define KEY_MOBILE "9babf9c9d4073cc74b0911a69a08829bbe61a613fd4c04ecf12ddd097051ab3f"
#define KEY_PARTNER "b85f7b1d7601cdd0b7797fcb53c276ac31839f9f0cc7412b7b4cccda15da867d"
#define KEY_PARTNER_2 "ca76b41ebe07f485f19bcd2aebaf7f62364874dc5ec3235294b73a2c0f980969"

static void digest_of(const char *hex, uint8_t out[AUTH_DIGEST_LEN])
{
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
		cr_assert_eq(sscanf(hex + 2 * i, "%2hhx", &out[i]), 1);
}

Test(consumers, keys_compiled_into_a_sorted_table)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"consumers:\n"
		"  - name: partner\n"
		"    groups: [partners, billing]\n"
		"    api_keys: [\"sha256:" KEY_PARTNER_2 "\", \"sha256:" KEY_PARTNER "\"]\n"
		"  - name: mobile-app\n"
		"    groups: [mobile]\n"
		"    api_keys: [\"sha256:" KEY_MOBILE "\"]\n"
		"  - name: no-keys\n");
	const struct rw_consumers *cs = &cfg->consumers;
	cr_assert_eq(cs->count, 3);
	cr_assert_str_eq(cs->list[0].name, "partner");
	cr_assert_eq(cs->list[0].ngroups, 2);
	cr_assert_str_eq(cs->list[0].groups[1], "billing");
	cr_assert_eq(cs->list[2].ngroups, 0);
	cr_assert_eq(cs->nkeys, 3);
	for (uint32_t i = 1; i < cs->nkeys; i++)
		cr_assert_lt(memcmp(cs->keys[i - 1].digest, cs->keys[i].digest, AUTH_DIGEST_LEN), 0);
	uint8_t d[AUTH_DIGEST_LEN];
	digest_of(KEY_MOBILE, d);
	cr_assert_eq(auth_find_key(cs, d)->consumer, &cs->list[1]);
	digest_of(KEY_PARTNER, d);
	cr_assert_eq(auth_find_key(cs, d)->consumer, &cs->list[0]);
	digest_of(KEY_PARTNER_2, d);
	cr_assert_eq(auth_find_key(cs, d)->consumer, &cs->list[0]);
	d[31] ^= 1;
	cr_assert_null(auth_find_key(cs, d));
	config_unref(cfg);
}

Test(consumers, absent_section_has_no_keys)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	uint8_t d[AUTH_DIGEST_LEN];
	digest_of(KEY_MOBILE, d);
	cr_assert_eq(cfg->consumers.count, 0);
	cr_assert_null(auth_find_key(&cfg->consumers, d));
	config_unref(cfg);
}

Test(consumers, errors)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"consumers:\n"
		"  - name: mobile-app\n"
		"    groups: [mobile, \"bad group\"]\n"
		"    api_keys: [\"sha256:" KEY_MOBILE "\", \"" KEY_PARTNER "\", \"sha256:ABC\"]\n"
		"  - name: mobile-app\n"
		"    api_keys: [\"sha256:" KEY_MOBILE "\"]\n"
		"  - name: other\n"
		"    keys: [x]\n"
		"  - groups: [a]\n"
		"  - name: \"bad name\"\n",
		"t.yaml:10:22: groups: invalid name 'bad group' (use letters, digits, '_', '.' and '-')",
		"t.yaml:11:91: api_keys: expected \"sha256:\" and the 64 lowercase hex digits of the "
		"key's SHA-256",
		"t.yaml:11:159: api_keys: expected \"sha256:\" and the 64 lowercase hex digits of the "
		"key's SHA-256",
		"t.yaml:12:11: duplicate consumer name 'mobile-app'",
		"t.yaml:13:16: api_keys: this key is already a key of consumer 'mobile-app'",
		"t.yaml:15:5: consumer 'other': unknown key 'keys' (valid keys: name, groups, api_keys, basic)",
		"t.yaml:16:5: consumer #4: missing required key 'name'",
		"t.yaml:17:11: name: invalid name 'bad name' (use letters, digits, '_', '.' and '-')");
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "consumers: {name: x}\n",
		      "t.yaml:8:12: consumers: expected a sequence, got a mapping");
}

/* auth keys of routes and frontends */

Test(consumers, route_auth_and_frontend_defaults)
{
	struct rw_config *cfg = load_ok(UPSTREAMS
		"frontends:\n"
		"  - name: public\n"
		"    listen: [\"127.0.0.1:8080\"]\n"
		"    auth: [api_key]\n"
		"    deny_groups: [banned]\n"
		"    routes:\n"
		"      - {name: a, match: {path_prefix: /a}, upstream: users}\n"
		"      - name: b\n"
		"        match: {path_prefix: /b}\n"
		"        upstream: users\n"
		"        allow_groups: [partners]\n"
		"        deny_groups: []\n"
		"        hide_credentials: false\n"
		"        api_key: {header: X-Key, query: key}\n"
		"consumers:\n"
		"  - name: c\n");
	const struct rw_route *a = &cfg->frontends[0].routes[0], *b = &cfg->frontends[0].routes[1];
	cr_assert_eq(a->auth.methods, AUTH_API_KEY);
	cr_assert_eq(a->auth.ndeny, 1);
	cr_assert_str_eq(a->auth.deny_groups[0], "banned");
	cr_assert(a->auth.hide_credentials);
	cr_assert_str_eq(a->auth.key_header, "X-API-Key");
	cr_assert_null(a->auth.key_query);
	cr_assert_eq(a->nstages, 3);
	cr_assert_str_eq(a->stages[1].name, "authenticate");
	cr_assert_str_eq(a->stages[2].name, "acl");
	cr_assert_eq(b->auth.ndeny, 0);
	cr_assert_eq(b->auth.nallow, 1);
	cr_assert(!b->auth.hide_credentials);
	cr_assert_str_eq(b->auth.key_header, "X-Key");
	cr_assert_str_eq(b->auth.key_query, "key");
	config_unref(cfg);

	cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert_eq(cfg->frontends[0].routes[0].auth.methods, 0);
	cr_assert_eq(cfg->frontends[0].routes[0].nstages, 1);
	config_unref(cfg);
}

Test(consumers, route_auth_errors)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		"      - name: r\n"
		"        match: {path_prefix: /}\n"
		"        upstream: users\n"
		"        auth: [api_key, oauth]\n"
		"        hide_credentials: maybe\n"
		"        api_key: {header: \"X Key\", query: \"a&b\", cookie: k}\n"
		"      - name: s\n"
		"        match: {path_prefix: /s}\n"
		"        upstream: users\n"
		"        allow_groups: [ok, \"not ok\"]\n",
		"t.yaml:10:25: auth: unknown method 'oauth' (valid: api_key, jwt, basic, mtls)",
		"t.yaml:11:27: hide_credentials: expected true or false, got 'maybe'",
		"t.yaml:12:27: api_key.header: invalid header name 'X Key'",
		"t.yaml:12:43: api_key.query: invalid query parameter name 'a&b'",
		"t.yaml:12:50: api_key: unknown key 'cookie' (valid keys: header, query)",
		"t.yaml:13:9: allow_groups and deny_groups need auth on the route or its frontend",
		"t.yaml:16:28: allow_groups: invalid name 'not ok' (use letters, digits, '_', '.' and '-')");
}

/* ---- basic credentials, jwt_issuers, identity_token ------------------------------------------ */

#define EC_JWKS                                                                              \
	"{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", "                                 \
	"\"x\": \"vzBcB3FxCxTXgdTKMCbold2LBQ7SB38jLs2KjzwMI2w\", "                           \
	"\"y\": \"JXyNusRhpfmVg1SQYsn4DwqtkR-CAPelqOOb6BHlquE\", \"kid\": \"k1\"}]}"
#define EC_PEM                                                                               \
	"-----BEGIN EC PRIVATE KEY-----\n"                                                   \
	"MHcCAQEEIHdVkHSLCwCjUQsb7F8d16eqj7lAK3vEO+uMqdiHvXCToAoGCCqGSM49\n"                 \
	"AwEHoUQDQgAEvzBcB3FxCxTXgdTKMCbold2LBQ7SB38jLs2KjzwMI2wlfI26xGGl\n"                 \
	"+ZWDVJBiyfgPCq2RH4IA96Wo45voEeWq4Q==\n"                                             \
	"-----END EC PRIVATE KEY-----\n"
/* pbkdf2-sha256 of "pw", 1000 iterations, salt "saltsalt" */
#define PW_HASH "pbkdf2-sha256:1000:c2FsdHNhbHQ=:"

/* A temporary file holding text; its path in path (removed by the caller with unlink). */
static void temp_file(char *path, const char *text)
{
	strcpy(path, "/tmp/ringway-test-XXXXXX");
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* The file at path (a name an error line can show) holding text. */
static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* Formats yaml (a printf format) with the arguments into a static buffer. */
static const char *yamlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *yamlf(const char *fmt, ...)
{
	static char buf[8192];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	return buf;
}

Test(basic, users_sorted_and_passwords_checked)
{
	char hash[PASSWORD_TEXT_MAX];
	cr_assert(password_hash_make("pw", 2, 1000, hash, sizeof hash));
	struct rw_config *cfg = load_ok(yamlf(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"consumers:\n"
		"  - {name: zed, basic: {user: z-user, password_hash: \"%s\"}}\n"
		"  - {name: amy, groups: [g], basic: {user: a-user, password_hash: \"%s\"}}\n"
		"  - {name: bob}\n", hash, hash));
	const struct rw_consumers *cs = &cfg->consumers;
	cr_assert_eq(cs->nusers, 2);
	const struct rw_consumer *c = auth_find_user(cs, "a-user", 6);
	cr_assert_not_null(c);
	cr_assert_str_eq(c->name, "amy");
	cr_assert_str_eq(auth_find_user(cs, "z-user", 6)->name, "zed");
	cr_assert_null(auth_find_user(cs, "a-use", 5));
	cr_assert_null(auth_find_user(cs, "a-user2", 7));
	cr_assert_null(auth_find_user(cs, "a-u\0er", 6));
	cr_assert(password_verify(&c->basic_password, "pw", 2));
	cr_assert(!password_verify(&c->basic_password, "pW", 2));
	cr_assert(!password_verify(&c->basic_password, "pw ", 3));
	cr_assert_str_eq(auth_find_consumer(cs, "bob", 3)->name, "bob");
	cr_assert_str_eq(auth_find_consumer(cs, "amy", 3)->name, "amy");
	cr_assert_null(auth_find_consumer(cs, "bo", 2));
	config_unref(cfg);
}

Test(basic, errors)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"consumers:\n"
		"  - {name: a, basic: {user: u, password_hash: \"sha1:abc\"}}\n"
		"  - {name: b, basic: {user: u, password_hash: \"" PW_HASH "AAAA\"}}\n"
		"  - {name: c, basic: {user: \"x:y\", password_hash: \"pbkdf2-sha256:10:c2FsdHNhbHQ=:A\"}}\n"
		"  - {name: d, basic: {user: d}}\n",
		"t.yaml:9:47: basic.password_hash: expected pbkdf2-sha256:<iterations>:<salt base64>:"
		"<hash base64>",
		"t.yaml:10:29: basic.user: 'u' is already the user of consumer 'a'",
		"t.yaml:10:47: basic.password_hash: hash: expected the 32 bytes of PBKDF2-HMAC-SHA256 in "
		"base64",
		"t.yaml:11:29: basic.user: 'x:y' must be visible ASCII without ':'",
		"t.yaml:11:51: basic.password_hash: iterations: expected a whole number from 1000 to "
		"10000000",
		"t.yaml:12:22: basic: missing required key 'password_hash'");
}

Test(jwt_issuers, read_and_compiled)
{
	char jwks[64];
	temp_file(jwks, EC_JWKS);
	struct rw_config *cfg = load_ok(yamlf(UPSTREAMS
		"jwt_issuers:\n"
		"  - issuer: https://id.example.test\n"
		"    jwks_file: %s\n"
		"    audiences: [api, admin]\n"
		"    algorithms: [ES256, RS256]\n"
		"    consumer_claim: client_id\n"
		"    groups_claim: roles\n"
		"    leeway: 30s\n"
		"    cache: false\n"
		"  - {issuer: other, jwks_file: %s}\n"
		FRONTEND_HEAD
		"      - {name: r, match: {path_prefix: /}, upstream: users, auth: [jwt],"
		" scopes: [read]}\n", jwks, jwks));
	unlink(jwks);
	const struct rw_jwt_issuer *a = &cfg->jwt_issuers.list[0], *b = &cfg->jwt_issuers.list[1];
	cr_assert_eq(cfg->jwt_issuers.count, 2);
	cr_assert_str_eq(a->policy.issuer, "https://id.example.test");
	cr_assert_eq(a->policy.n_audiences, 2);
	cr_assert_str_eq(a->policy.audiences[1], "admin");
	cr_assert_eq(a->policy.algs, JWT_ALG_BIT(JWT_ES256) | JWT_ALG_BIT(JWT_RS256));
	cr_assert_str_eq(a->policy.consumer_claim, "client_id");
	cr_assert_str_eq(a->policy.groups_claim, "roles");
	cr_assert_eq(a->policy.leeway, 30);
	cr_assert(a->policy.require_exp);
	cr_assert(!a->cache);
	cr_assert_eq(jwks_count(a->keys), 1);
	cr_assert_eq(b->policy.algs, JWT_ALGS_ALL);
	cr_assert(b->cache);
	cr_assert_null(b->policy.consumer_claim); /* sub */
	const struct rw_route *rt = &cfg->frontends[0].routes[0];
	cr_assert_eq(rt->auth.methods, AUTH_JWT);
	cr_assert_eq(rt->nstages, 3);
	cr_assert_str_eq(rt->stages[2].name, "scopes");
	/* the payload's iss chooses between several issuers: {"iss":"other"} */
	const char *tok = "e30.eyJpc3MiOiJvdGhlciJ9.c2ln";
	enum jwt_result why = JWT_OK;
	cr_assert_eq(auth_find_issuer(&cfg->jwt_issuers, tok, strlen(tok), &why), b);
	cr_assert_null(auth_find_issuer(&cfg->jwt_issuers, "e30.e30.c2ln", 12, &why));
	cr_assert_eq(why, JWT_BAD_ISSUER);
	cr_assert_null(auth_find_issuer(&cfg->jwt_issuers, "not-a-jwt", 9, &why));
	cr_assert_eq(why, JWT_MALFORMED);
	config_unref(cfg);
}

Test(jwt_issuers, errors)
{
	const char *jwks = "/tmp/ringway-test-config-jwks.json";
	const char *bad = "/tmp/ringway-test-config-bad-jwks.json";
	write_file(jwks, EC_JWKS);
	write_file(bad, "{\"keys\": [{\"kty\": \"EC\"}]}");
	EXPECT_ERRORS(yamlf(UPSTREAMS
		"jwt_issuers:\n"
		"  - {issuer: a, jwks_file: /nonexistent/jwks.json}\n"
		"  - {issuer: b, jwks_file: %s}\n"
		"  - {issuer: a, jwks_file: %s, algorithms: [none, HS256], audiences: []}\n"
		"  - {jwks_file: %s, leeway: soon}\n"
		FRONTEND_HEAD
		"      - {name: r, match: {path_prefix: /}, upstream: users, auth: [jwt, mtls]}\n"
		"      - {name: s, match: {path_prefix: /s}, upstream: users, auth: [api_key],"
		" scopes: [read]}\n", bad, jwks, jwks),
		"t.yaml:4:28: jwks_file: /nonexistent/jwks.json: No such file or directory",
		"t.yaml:5:28: jwks_file: /tmp/ringway-test-config-bad-jwks.json: keys[0]: kty EC needs "
		"crv P-256 or P-384",
		"t.yaml:6:14: issuer: 'a' is already an entry of jwt_issuers",
		"t.yaml:6:77: algorithms: unknown algorithm 'none' (valid: HS256, HS384, HS512, RS256, "
		"RS384, RS512, PS256, ES256, ES384, EdDSA)",
		"t.yaml:6:102: audiences: empty list (leave the key out instead)",
		"t.yaml:7:5: jwt issuer #4: missing required key 'issuer'",
		"t.yaml:7:61: leeway: invalid duration 'soon' (a whole number and a unit: ms, s, m or h; "
		"above 0, at most 24h)",
		"t.yaml:12:67: auth: mtls needs tls.client_ca on every listener of frontend 'public'",
		"t.yaml:13:9: scopes need jwt in the auth of the route or its frontend");
	unlink(jwks);
	unlink(bad);
}

Test(jwt_issuers, jwt_routes_need_an_issuer)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		"      - {name: r, match: {path_prefix: /}, upstream: users, auth: [basic, jwt]}\n",
		"t.yaml:7:67: auth: jwt needs at least one entry in jwt_issuers");
}

Test(identity_token, defaults_and_generated_key)
{
	struct rw_config *cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "identity_token: {}\n");
	const struct rw_identity_token *it = &cfg->identity;
	cr_assert(it->enabled);
	cr_assert_str_eq(it->header, "X-Access-Token");
	cr_assert_str_eq(it->issuer, "ringway");
	cr_assert_eq(it->ttl_ms, 60000);
	cr_assert(!it->per_request);
	cr_assert_null(it->jwks_path);
	cr_assert_not_null(it->signer);
	cr_assert_not_null(strstr(it->jwks, jwt_signer_kid(it->signer)));
	/* the generated key is the process's: a second load (a reload) keeps it */
	struct rw_config *again = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE "identity_token: {}\n");
	cr_assert_eq(again->identity.signer, it->signer);
	cr_assert_str_eq(again->identity.jwks, it->jwks);
	config_unref(again);
	config_unref(cfg);
	cfg = load_ok(UPSTREAMS FRONTEND_HEAD ONE_ROUTE);
	cr_assert(!cfg->identity.enabled);
	config_unref(cfg);
}

Test(identity_token, key_file_and_settings)
{
	char pem[64];
	temp_file(pem, EC_PEM);
	struct rw_config *cfg = load_ok(yamlf(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"identity_token: {key_file: %s, alg: ES256, header: X-Identity, ttl: 5m,"
		" issuer: https://gw.example.test, per_request: true, jwks_path: /keys}\n", pem));
	unlink(pem);
	const struct rw_identity_token *it = &cfg->identity;
	cr_assert_str_eq(it->header, "X-Identity");
	cr_assert_eq(it->ttl_ms, 300000);
	cr_assert_str_eq(it->issuer, "https://gw.example.test");
	cr_assert(it->per_request);
	cr_assert_str_eq(it->jwks_path, "/keys");
	/* the public half of EC_PEM */
	cr_assert_not_null(strstr(it->jwks, "\"x\":\"vzBcB3FxCxTXgdTKMCbold2LBQ7SB38jLs2KjzwMI2w\""));
	config_unref(cfg);
}

Test(identity_token, errors)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD ONE_ROUTE
		"identity_token:\n"
		"  key_file: /nonexistent/signing.pem\n"
		"  alg: RS256\n"
		"  header: \"X Token\"\n"
		"  ttl: 500ms\n"
		"  jwks_path: keys\n"
		"  kid: x\n",
		"t.yaml:9:13: key_file: /nonexistent/signing.pem: No such file or directory",
		"t.yaml:10:8: alg: 'RS256' is not offered (identity tokens are ES256)",
		"t.yaml:11:11: header: invalid header name 'X Token'",
		"t.yaml:12:8: ttl: at least 1s (tokens count whole seconds)",
		"t.yaml:13:14: jwks_path: 'keys' must start with '/'",
		"t.yaml:14:3: identity_token: unknown key 'kid' (valid keys: key_file, alg, header, ttl, "
		"issuer, per_request, jwks_path)");
}

/* ---- rate limits -------------------------------------------------------------------------------- */

Test(rate_limit, frontend_limits_first_and_shared_route_limits_own)
{
	struct rw_config *cfg = load_ok(UPSTREAMS
		"frontends:\n"
		"  - name: public\n"
		"    listen: [\"127.0.0.1:8080\"]\n"
		"    rate_limit: [{by: ip, rate: 1000/min}]\n"
		"    routes:\n"
		"      - name: a\n"
		"        match: {path_prefix: /a}\n"
		"        upstream: users\n"
		"        rate_limit:\n"
		"          - {by: consumer, rate: 100/s, burst: 200}\n"
		"          - {by: \"header:X-Tenant\", rate: 50/s}\n"
		"          - {by: route, rate: 10/h}\n"
		"      - {name: b, match: {path_prefix: /b}, upstream: users}\n"
		"rate_limit_store: {redis: \"127.0.0.1:6379\", on_failure: deny}\n");
	const struct rw_route *a = &cfg->frontends[0].routes[0], *b = &cfg->frontends[0].routes[1];
	cr_assert_eq(a->rate_limits.count, 4);
	const struct rw_rate_limit *l = a->rate_limits.list;
	cr_assert_eq(l[0].by, RL_BY_IP);
	cr_assert_eq(l[0].count, 1000);
	cr_assert_eq(l[0].period_s, 60);
	cr_assert_eq(l[0].burst, 1000);
	cr_assert_eq(l[0].interval_ns, 60000000);
	cr_assert_str_eq(l[0].scope, "fe/public#0");
	cr_assert_eq(l[1].by, RL_BY_CONSUMER);
	cr_assert_eq(l[1].burst, 200);
	cr_assert_eq(l[1].interval_ns, 10000000);
	cr_assert_str_eq(l[1].scope, "rt/public/a#0");
	cr_assert_eq(l[2].by, RL_BY_HEADER);
	cr_assert_str_eq(l[2].header, "X-Tenant");
	cr_assert_eq(l[3].by, RL_BY_ROUTE);
	cr_assert_eq(l[3].period_s, 3600);
	cr_assert_str_eq(a->rate_limits.policy,
			 "1000;w=60;burst=1000, 100;w=1;burst=200, 50;w=1;burst=50, 10;w=3600;burst=10");
	cr_assert_str_eq(a->stages[a->nstages - 1].name, "rate_limit");
	/* b has the frontend's limit, in the same buckets as a's */
	cr_assert_eq(b->rate_limits.count, 1);
	cr_assert_str_eq(b->rate_limits.list[0].scope, "fe/public#0");
	cr_assert_eq(b->rate_limits.list[0].scope_hash, l[0].scope_hash);
	cr_assert(cfg->rate_limit_store.redis);
	cr_assert_eq(cfg->rate_limit_store.on_failure, RL_ON_FAILURE_DENY);
	cr_assert_eq(cfg->rate_limit_store.timeout_ms, 50);
	config_unref(cfg);
}

Test(rate_limit, errors)
{
	EXPECT_ERRORS(UPSTREAMS FRONTEND_HEAD
		"      - name: r\n"
		"        match: {path_prefix: /}\n"
		"        upstream: users\n"
		"        rate_limit:\n"
		"          - {by: user, rate: 10/s}\n"
		"          - {by: ip, rate: 10/day}\n"
		"          - {by: ip, rate: 0/s, burst: 0}\n"
		"          - {by: \"header:X Tenant\"}\n"
		"rate_limit_store: {redis: \"localhost:6379\", on_failure: ignore}\n",
		"t.yaml:11:18: by: 'user' is not one of consumer, ip, route, header:NAME",
		"t.yaml:12:28: rate: '10/day' is not N/s, N/m or N/h with N from 1 to 1000000000",
		"t.yaml:13:28: rate: '0/s' is not N/s, N/m or N/h with N from 1 to 1000000000",
		"t.yaml:13:40: burst: 0 is out of range 1..1000000000",
		"t.yaml:14:13: rate_limit: missing required key 'rate'",
		"t.yaml:14:18: by: 'header:X Tenant' is not one of consumer, ip, route, header:NAME",
		"t.yaml:15:27: redis: invalid address 'localhost:6379' (expected a.b.c.d:port or "
		"[ipv6]:port, numeric, port 1..65535)",
		"t.yaml:15:57: on_failure: invalid value 'ignore' (expected one of local, allow, deny)");
}
