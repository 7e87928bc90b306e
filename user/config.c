/* config.c — owns the configuration as a whole: the table of its sections (the top-level keys, in
 * the order they are read), the sections that belong to no other module (workers, access_log,
 * drain_timeout, limits, upstreams, frontends with their routes and compiled routers), each with
 * its defaults and freeing next to its parsing, the snapshot's reference count, loading from a
 * string or a file, and the public scalar parsers (durations, addresses, CIDR prefixes). The
 * reading machinery is schema.c; the xdp section is xdp_config.c, consumers auth_config.c. Out of
 * memory fails the load with one error line. */
#include "config.h"
#include "aggregate.h"
#include "cors.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "admin.h"
#include "http1.h"
#include "router.h"
#include "schema.h"
#include "stage.h"
#include "tls.h"
#include "xdp.h"

#define MAX_DURATION_MS (24u * 3600u * 1000u)

/* ---------------------------------------------------------------------------------------------
 * Scalars of the public API: durations, addresses, prefixes
 */

bool config_parse_duration(const char *s, uint32_t *ms)
{
	static const struct { const char *unit; uint32_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 3600 * 1000 },
	};
	uint64_t n;
	if (!s || !schema_parse_digits(&s, &n) || n == 0 || n > MAX_DURATION_MS)
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s, units[i].unit))
			continue;
		if (n * units[i].ms > MAX_DURATION_MS)
			return false;
		*ms = (uint32_t)(n * units[i].ms);
		return true;
	}
	return false;
}

bool config_parse_sockaddr(const char *s, struct rw_sockaddr *out)
{
	if (!s)
		return false;
	bool v6 = s[0] == '[';
	const char *host_start, *host_end, *port_text;
	if (v6) {
		host_start = s + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':')
			return false;
		port_text = host_end + 2;
	} else {
		host_start = s;
		host_end = strrchr(s, ':');
		if (!host_end)
			return false;
		port_text = host_end + 1;
	}
	char host[INET6_ADDRSTRLEN];
	size_t host_len = (size_t)(host_end - host_start);
	uint64_t port;
	if (host_len == 0 || host_len >= sizeof host || strlen(port_text) > 5 ||
	    !schema_parse_number(port_text, &port) || port < 1 || port > 65535)
		return false;
	memcpy(host, host_start, host_len);
	host[host_len] = 0;

	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t len;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return false;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		len = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return false;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		len = sizeof *a;
	}
	char *copy = strdup(s);
	if (!copy)
		return false;
	out->text = copy;
	out->stats = NULL;
	out->tls = NULL;
	out->addr = ss;
	out->addrlen = len;
	return true;
}

/* Whether the first len bits of addr equal those of net. */
static bool prefix_holds(const uint8_t net[16], unsigned len, const uint8_t addr[16])
{
	for (unsigned bit = 0; bit < len; bit++)
		if ((net[bit / 8] ^ addr[bit / 8]) & (0x80 >> (bit % 8)))
			return false;
	return true;
}

bool config_parse_prefix(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why)
{
	static _Thread_local char reason[32]; /* "host bits set past /N" */
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t host_len = !s ? 0 : slash ? (size_t)(slash - s) : strlen(s);
	char host[INET6_ADDRSTRLEN];
	uint8_t net[16] = { [10] = 0xff, [11] = 0xff }; /* ::ffff:0.0.0.0, for IPv4 */
	*why = "not an IPv4 or IPv6 address";
	if (host_len == 0 || host_len >= sizeof host)
		return false;
	memcpy(host, s, host_len);
	host[host_len] = 0;
	bool v6 = strchr(host, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, v6 ? net : net + 12) != 1)
		return false;

	uint64_t bits = v6 ? 128 : 32, len = bits;
	if (slash && !schema_parse_number(slash + 1, &len)) {
		*why = "prefix length is not a number";
		return false;
	}
	if (len > bits) {
		*why = v6 ? "prefix length out of range 0..128" : "prefix length out of range 0..32";
		return false;
	}
	unsigned mapped_len = (unsigned)(len + 128 - bits);
	for (unsigned bit = mapped_len; bit < 128; bit++) {
		if (net[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(reason, sizeof reason, "host bits set past /%u", (unsigned)len);
			*why = reason;
			return false;
		}
	}
	memcpy(addr, net, sizeof net);
	*prefixlen = (uint8_t)mapped_len;
	return true;
}

bool config_parse_cidr(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why)
{
	uint8_t net[16], len;
	if (!config_parse_prefix(s, net, &len, why))
		return false;
	/* IPv4 sources are matched as ::ffff:a.b.c.d: an IPv6 prefix shorter than /96 that holds
	 * that range (::/0 does) would cover every IPv4 source too. */
	static const uint8_t mapped_range[16] = { [10] = 0xff, [11] = 0xff };
	if (len < 96 && prefix_holds(net, len, mapped_range)) {
		*why = "an IPv6 prefix this short also covers every IPv4 source (matched as "
		       "::ffff:0:0/96): name the IPv6 ranges meant, e.g. 2000::/3";
		return false;
	}
	memcpy(addr, net, sizeof net);
	*prefixlen = len;
	return true;
}

bool config_ipv6_limit_too_long(const uint8_t addr[16], uint8_t prefixlen,
				uint32_t ipv6_source_prefix)
{
	static const uint8_t mapped_range[16] = { [10] = 0xff, [11] = 0xff };
	/* as the program: below 32 (0 in a map never written) or 128, per address */
	return ipv6_source_prefix >= 32 && ipv6_source_prefix < 128 &&
	       prefixlen > ipv6_source_prefix &&
	       !prefix_holds(mapped_range, 96, addr);
}

/* A DNS name: dot-separated labels of letters, digits and '-' (not at either end of a label). */
static bool valid_dns_name(const char *s)
{
	size_t total = strlen(s);
	if (total == 0 || total > 253)
		return false;
	for (;;) {
		size_t label = strspn(s, SCHEMA_ALNUM "-");
		if (label == 0 || label > 63 || s[0] == '-' || s[label - 1] == '-')
			return false;
		s += label;
		if (*s == 0)
			return true;
		if (*s++ != '.')
			return false;
	}
}

/* "api.example.com" or "*.example.com"; no port. */
static bool valid_host_pattern(const char *s)
{
	if (s[0] == '*') {
		if (s[1] != '.')
			return false;
		s += 2;
	}
	return valid_dns_name(s);
}

/* ---------------------------------------------------------------------------------------------
 * Top-level scalars: workers, access_log, drain_timeout
 */

static void parse_workers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (v->type == YAML_SCALAR_NODE && !strcmp(schema_text(v), "auto"))
		*(uint32_t *)schema_field(obj, rule) = 0;
	else if (schema_read_number(ld, v, rule, schema_parse_number, "'auto' or an integer", &n))
		*(uint32_t *)schema_field(obj, rule) = (uint32_t)n;
}

static void parse_access_log(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!strcmp(s, "stderr")) {
		cfg->access_log = ACCESS_LOG_STDERR;
	} else if (!strcmp(s, "off")) {
		cfg->access_log = ACCESS_LOG_OFF;
	} else if (!*s) {
		schema_report(ld, v, "%s: expected stderr, off or a file path", rule->key);
	} else {
		cfg->access_log = ACCESS_LOG_FILE;
		cfg->access_log_path = schema_strdup(ld, s);
	}
}

/* Default 0: one worker per available core. */
static const struct config_section workers_section = {
	.rule = { .key = "workers", .parse = parse_workers, .min = 1, .max = 256,
		  .offset = offsetof(struct rw_config, workers) },
};

static void access_log_defaults(struct loader *ld, struct rw_config *cfg)
{
	cfg->access_log = ACCESS_LOG_STDERR;
}

static void access_log_free(struct rw_config *cfg)
{
	free(cfg->access_log_path);
}

static const struct config_section access_log_section = {
	.rule = { .key = "access_log", .parse = parse_access_log },
	.defaults = access_log_defaults,
	.free = access_log_free,
};

static void drain_timeout_defaults(struct loader *ld, struct rw_config *cfg)
{
	cfg->drain_timeout_ms = 10 * 1000;
}

static const struct config_section drain_timeout_section = {
	.rule = { .key = "drain_timeout", .parse = schema_parse_duration,
		  .offset = offsetof(struct rw_config, drain_timeout_ms) },
	.defaults = drain_timeout_defaults,
};

/* ---------------------------------------------------------------------------------------------
 * Limits
 */

/* Runs after max_header_bytes (rule order), which bounds it. */
static void parse_max_uri_bytes(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct rw_limits *limits = obj;
	uint64_t n;
	if (!schema_read_number(ld, v, rule, schema_parse_size, SCHEMA_SIZE_EXPECTED, &n))
		return;
	if (n > limits->max_header_bytes) {
		schema_report(ld, v, "%s: %s is above max_header_bytes (%u)", rule->key, schema_text(v),
		       limits->max_header_bytes);
		return;
	}
	limits->max_uri_bytes = (uint32_t)n;
}

static const struct rule limits_rules[] = {
	{ .key = "max_header_bytes", .parse = schema_parse_size32, .min = 1024, .max = 1048576,
	  .offset = offsetof(struct rw_limits, max_header_bytes) },
	{ .key = "max_uri_bytes", .parse = parse_max_uri_bytes, .min = 64, .max = 1048576 },
	{ .key = "max_body_bytes", .parse = schema_parse_size64, .min = 0, .max = 1ull << 40,
	  .offset = offsetof(struct rw_limits, max_body_bytes) },
	{ .key = "header_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_limits, header_timeout_ms) },
	{ .key = "keepalive_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_limits, keepalive_timeout_ms) },
	{ .key = "client_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_limits, client_timeout_ms) },
	{ .key = "max_connections", .parse = schema_parse_u32, .min = 1, .max = 1048576,
	  .offset = offsetof(struct rw_limits, max_connections) },
	{ 0 }
};

static void parse_limits(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		schema_walk_mapping(ld, v, "limits", limits_rules, &cfg->limits);
}

static void limits_defaults(struct loader *ld, struct rw_config *cfg)
{
	cfg->limits = (struct rw_limits){
		.max_header_bytes = 16384,
		.max_uri_bytes = 8192,
		.max_body_bytes = 10485760,
		.header_timeout_ms = 10 * 1000,
		.keepalive_timeout_ms = 60 * 1000,
		.client_timeout_ms = 60 * 1000,
		.max_connections = 65536,
	};
}

static const struct config_section limits_section = {
	.rule = { .key = "limits", .parse = parse_limits },
	.defaults = limits_defaults,
};

/* ---------------------------------------------------------------------------------------------
 * Upstreams
 */

static const char *const balance_words[] = { "round_robin", "random", "least_conn", NULL };

static void parse_targets(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_upstream *up = obj;
	schema_read_address_list(ld, v, rule->key, &up->targets, &up->ntargets, NULL, NULL);
}

static void parse_upstream_tls(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_upstream *up = obj;
	up->tls = tls_config_client(ld, v);
}

static const struct rule upstream_rules[] = {
	{ .key = "targets", .parse = parse_targets, .required = true },
	{ .key = "balance", .parse = schema_parse_enum, .words = balance_words,
	  .offset = offsetof(struct rw_upstream, balance) },
	{ .key = "keepalive", .parse = schema_parse_u32, .min = 0, .max = 4096,
	  .offset = offsetof(struct rw_upstream, keepalive) },
	{ .key = "connect_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_upstream, connect_timeout_ms) },
	{ .key = "response_timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct rw_upstream, response_timeout_ms) },
	{ .key = "tls", .parse = parse_upstream_tls },
	{ 0 }
};

static bool same_tls(const struct rw_tls_client *a, const struct rw_tls_client *b)
{
	if (!a || !b)
		return !a && !b;
	return a->verify == b->verify && !a->ca == !b->ca && (!a->ca || !strcmp(a->ca, b->ca)) &&
	       !a->sni == !b->sni && (!a->sni || !strcmp(a->sni, b->sni));
}

/* Connections to one address are pooled together, whichever upstream asked: upstreams that share
 * a target must reach it the same way. */
static void check_shared_targets(struct loader *ld, const struct rw_config *cfg,
				 const struct rw_upstream *up, const yaml_node_t *key)
{
	for (const struct rw_upstream *other = cfg->upstreams; other < up; other++)
		for (uint32_t i = 0; i < up->ntargets; i++)
			for (uint32_t k = 0; k < other->ntargets; k++)
				if (rw_sockaddr_is(&other->targets[k], &up->targets[i].addr,
						   up->targets[i].addrlen) &&
				    !same_tls(other->tls, up->tls)) {
					schema_report(ld, key,
						      "upstream '%s': target %s is also upstream '%s''s, with "
						      "other tls settings (connections to an address are "
						      "pooled together)",
						      up->name, up->targets[i].text, other->name);
					return;
				}
}

/* upstreams: a mapping from name to upstream; a repeated name is a duplicate key. */
static void parse_upstreams(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	if (schema_pair_count(v) == 0) {
		schema_report(ld, v, "%s: at least one upstream is required", rule->key);
		return;
	}
	schema_check_keys(ld, v, rule->key);
	cfg->upstreams = schema_alloc(ld, schema_pair_count(v), sizeof cfg->upstreams[0]);
	if (!cfg->upstreams)
		return;
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = schema_node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE || schema_find_pair(ld, v, schema_text(key)) != p)
			continue; /* reported by check_keys */
		if (!schema_valid_name(schema_text(key)))
			schema_report(ld, key, "%s: invalid name '%s' (use letters, digits, '_', '.' and '-')",
			       rule->key, schema_text(key));
		struct rw_upstream *up = &cfg->upstreams[cfg->nupstreams];
		*up = (struct rw_upstream){
			.name = schema_strdup(ld, schema_text(key)),
			.index = cfg->nupstreams,
			.balance = BALANCE_ROUND_ROBIN,
			.keepalive = 32,
			.connect_timeout_ms = 1000,
			.response_timeout_ms = 30 * 1000,
		};
		cfg->nupstreams++;
		if (!up->name)
			return;
		yaml_node_t *body = schema_node(ld, p->value);
		char label[96];
		snprintf(label, sizeof label, "upstream '%.60s'", up->name);
		if (schema_expect_kind(ld, body, YAML_MAPPING_NODE, label))
			schema_walk_mapping(ld, body, label, upstream_rules, up);
		check_shared_targets(ld, cfg, up, key);
	}
}

static void upstreams_free(struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nupstreams; i++) {
		free(cfg->upstreams[i].name);
		tls_client_config_free(cfg->upstreams[i].tls);
		schema_free_addresses(cfg->upstreams[i].targets, cfg->upstreams[i].ntargets);
	}
	free(cfg->upstreams);
}

/* Required; before frontends, whose routes name their upstream. */
static const struct config_section upstreams_section = {
	.rule = { .key = "upstreams", .parse = parse_upstreams, .required = true },
	.free = upstreams_free,
};

/* ---------------------------------------------------------------------------------------------
 * Routes
 */

static void parse_route_name(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *name = schema_read_name(ld, v, rule->key);
	if (!name)
		return;
	const struct rw_route *routes = rt - rt->index; /* its frontend's */
	for (uint32_t i = 0; i < rt->index; i++) {
		if (routes[i].name && !strcmp(routes[i].name, name)) {
			schema_report(ld, v, "duplicate route name '%s'", name);
			break;
		}
	}
	rt->name = schema_strdup(ld, name);
}

static void parse_host(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!valid_host_pattern(s)) {
		schema_report(ld, v,
		       "%s: invalid host pattern '%s' (expected a name like api.example.com or "
		       "*.example.com, without port)",
		       rule->key, s);
		return;
	}
	rt->host = schema_strdup(ld, s);
}

/* A path with {name} segments: only path_exact, each {name} a whole segment, a name of letters,
 * digits and '_' (not starting with a digit) used once and not one the aggregate templates keep
 * (query, header, consumer). The number of parameters, or -1 (reported). */
static int check_path_template(struct loader *ld, const yaml_node_t *v, const char *key,
			       const char *s, bool exact)
{
	if (!exact) {
		schema_report(ld, v, "%s: '%s': path parameters ({name}) are only for path_exact", key, s);
		return -1;
	}
	int n = 0;
	for (const char *seg = s + 1;; ) {
		const char *end = strchr(seg, '/');
		size_t len = end ? (size_t)(end - seg) : strlen(seg);
		if (memchr(seg, '{', len) || memchr(seg, '}', len)) {
			const char *name = seg + 1;
			size_t nlen = len >= 2 ? len - 2 : 0;
			bool ok = len >= 3 && seg[0] == '{' && seg[len - 1] == '}' &&
				  !(name[0] >= '0' && name[0] <= '9');
			for (size_t i = 0; ok && i < nlen; i++)
				ok = (name[i] >= 'a' && name[i] <= 'z') || (name[i] >= 'A' && name[i] <= 'Z') ||
				     (name[i] >= '0' && name[i] <= '9') || name[i] == '_';
			if (!ok) {
				schema_report(ld, v,
					      "%s: '%s': a parameter is a whole segment '{name}' (letters, "
					      "digits, '_'), got '%.*s'", key, s, (int)len, seg);
				return -1;
			}
			static const char *const kept[] = { "query", "header", "consumer" };
			for (size_t k = 0; k < 3; k++) {
				if (nlen == strlen(kept[k]) && !memcmp(name, kept[k], nlen)) {
					schema_report(ld, v, "%s: '%s': '{%s}' is a reserved name", key, s,
						      kept[k]);
					return -1;
				}
			}
			for (const char *p = strchr(s, '{'); p && p < seg; p = strchr(p + 1, '{')) {
				if (!strncmp(p + 1, name, nlen) && p[1 + nlen] == '}') {
					schema_report(ld, v, "%s: '%s': parameter '{%.*s}' is used twice", key,
						      s, (int)nlen, name);
					return -1;
				}
			}
			n++;
		}
		if (!end)
			break;
		seg = end + 1;
	}
	return n;
}

/* path_prefix and path_exact */
static void parse_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s || !schema_check_path(ld, v, rule->key, s))
		return;
	bool exact = !strcmp(rule->key, "path_exact");
	int nparams = strpbrk(s, "{}") ? check_path_template(ld, v, rule->key, s, exact) : 0;
	if (nparams < 0)
		return;
	free(rt->path); /* both keys given: reported by parse_match */
	rt->path = schema_strdup(ld, s);
	rt->path_len = (uint32_t)strlen(s);
	rt->path_exact = exact;
	rt->nparams = (uint16_t)nparams;
}

static void parse_methods(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: empty list (leave 'methods' out to allow every method)", rule->key);
		return;
	}
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		const yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, rule->key);
		if (!s)
			continue;
		enum http_method m = http_method_lookup(s, strlen(s));
		if (m == HTTP_M_OTHER)
			schema_report(ld, item,
			       "%s: unknown method '%s' (expected one of GET, HEAD, POST, PUT, DELETE, "
			       "PATCH, OPTIONS, TRACE)",
			       rule->key, s);
		else
			rt->methods |= HTTP_METHOD_BIT(m);
	}
}

static const struct rule match_rules[] = {
	{ .key = "host", .parse = parse_host },
	{ .key = "path_prefix", .parse = parse_path },
	{ .key = "path_exact", .parse = parse_path },
	{ .key = "methods", .parse = parse_methods },
	{ 0 }
};

static void parse_match(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	schema_walk_mapping(ld, v, "match", match_rules, obj);
	if (!schema_find_pair(ld, v, "path_prefix") == !schema_find_pair(ld, v, "path_exact"))
		schema_report(ld, v, "match: needs exactly one of path_prefix, path_exact");
}

static void parse_upstream_ref(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	for (uint32_t i = 0; i < ld->cfg->nupstreams; i++) {
		if (!strcmp(ld->cfg->upstreams[i].name, s)) {
			rt->upstream = &ld->cfg->upstreams[i];
			return;
		}
	}
	schema_report(ld, v, "unknown upstream '%s'", s);
}

/* Runs after match (rule order): strip_prefix must be a prefix of the route's path that ends
 * where a path segment ends. */
static void parse_strip_prefix(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	size_t len = strlen(s);
	if (rt->nparams && memchr(rt->path, '{', len < rt->path_len ? len : rt->path_len)) {
		schema_report(ld, v, "%s: '%s' would strip a path parameter of '%s'", rule->key, s,
			      rt->path);
		return;
	}
	if (s[0] != '/' || s[len - 1] == '/') {
		schema_report(ld, v, "%s: '%s' must start with '/' and not end with '/'", rule->key, s);
		return;
	}
	if (rt->path) { /* without a path, match has been reported already */
		if (len > rt->path_len || memcmp(rt->path, s, len) != 0) {
			schema_report(ld, v, "%s: '%s' is not a prefix of the route's path '%s'", rule->key, s,
			       rt->path);
			return;
		}
		if (len < rt->path_len && rt->path[len] != '/') {
			schema_report(ld, v, "%s: '%s' does not end at a '/' of the route's path '%s'",
			       rule->key, s, rt->path);
			return;
		}
	}
	rt->strip_prefix = schema_strdup(ld, s);
	rt->strip_len = (uint32_t)len;
}

static const struct rule route_rules[] = {
	{ .key = "name", .parse = parse_route_name, .required = true },
	{ .key = "match", .parse = parse_match, .required = true },
	{ .key = "upstream", .parse = parse_upstream_ref },
	{ .key = "aggregate", .parse = aggregate_parse },
	{ .key = "strip_prefix", .parse = parse_strip_prefix },
	{ .key = "auth", .parse = auth_parse_methods, .offset = offsetof(struct rw_route, auth) },
	{ .key = "allow_groups", .parse = auth_parse_allow_groups,
	  .offset = offsetof(struct rw_route, auth) },
	{ .key = "deny_groups", .parse = auth_parse_deny_groups,
	  .offset = offsetof(struct rw_route, auth) },
	{ .key = "hide_credentials", .parse = schema_parse_bool,
	  .offset = offsetof(struct rw_route, auth.hide_credentials) },
	{ .key = "api_key", .parse = auth_parse_api_key, .offset = offsetof(struct rw_route, auth) },
	{ .key = "scopes", .parse = auth_parse_scopes, .offset = offsetof(struct rw_route, auth) },
	{ .key = "rate_limit", .parse = ratelimit_parse,
	  .offset = offsetof(struct rw_route, rate_limits) },
	{ .key = "request", .parse = transform_parse_request, .offset = offsetof(struct rw_route, xf) },
	{ .key = "response", .parse = transform_parse_response,
	  .offset = offsetof(struct rw_route, xf) },
	{ .key = "cors", .parse = cors_parse, .offset = offsetof(struct rw_route, xf) },
	{ 0 }
};

/* A route has upstream or aggregate, not both. */
static void check_handler(struct loader *ld, yaml_node_t *map, const char *label)
{
	yaml_node_pair_t *up = schema_find_pair(ld, map, "upstream");
	yaml_node_pair_t *agg = schema_find_pair(ld, map, "aggregate");
	if (!up && !agg)
		schema_report(ld, map, "%s: missing required key 'upstream'", label);
	else if (up && agg)
		schema_report(ld, schema_node(ld, agg->key),
			      "%s: aggregate and upstream exclude each other", label);
}

static bool methods_overlap(uint32_t a, uint32_t b)
{
	return a == 0 || b == 0 || (a & b) != 0;
}

static bool same_host(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcasecmp(a, b));
}

/* A route with the host, path and exactness of an earlier route and a method in common with it
 * is never chosen for that method: reported at its match key. Only routes without errors
 * (sound[i]) are compared, so that a bad host does not also read as a shadowed route. */
static void check_shadowing(struct loader *ld, const struct rw_frontend *f, const bool *sound,
			    const struct rw_route *rt, const yaml_node_t *map)
{
	for (uint32_t i = 0; i < rt->index; i++) {
		const struct rw_route *earlier = &f->routes[i];
		if (!sound[i] || earlier->path_exact != rt->path_exact ||
		    strcmp(earlier->path, rt->path) || !same_host(earlier->host, rt->host) ||
		    !methods_overlap(earlier->methods, rt->methods))
			continue;
		char label[96];
		schema_label(ld, map, "route", rt->index, label, sizeof label);
		schema_report(ld, schema_node(ld, schema_find_pair(ld, map, "match")->key),
		       "%s is shadowed by route '%s' (same host, path and methods)", label,
		       earlier->name ? earlier->name : "?");
		return;
	}
}

static void parse_routes(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_frontend *f = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: at least one route is required", rule->key);
		return;
	}
	f->routes = schema_alloc(ld, schema_item_count(v), sizeof f->routes[0]);
	bool *sound = schema_alloc(ld, schema_item_count(v), sizeof *sound); /* read without errors */
	if (!f->routes || !sound) {
		free(sound);
		return;
	}
	f->nroutes = schema_item_count(v);
	ratelimit_frontend_finish(ld, &f->rate_limits, f->name);
	for (uint32_t i = 0; i < f->nroutes; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		struct rw_route *rt = &f->routes[i];
		rt->index = i;
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		schema_label(ld, map, "route", i, label, sizeof label);
		uint32_t errors_before = ld->nerrors;
		schema_walk_mapping(ld, map, label, route_rules, rt);
		check_handler(ld, map, label);
		auth_route_finish(ld, map, &rt->auth, f, ld->cfg);
		ratelimit_route_finish(ld, &rt->rate_limits, rt->name, f);
		transform_route_finish(&rt->xf, &f->xf);
		sound[i] = ld->nerrors == errors_before && !ld->out_of_memory;
		if (sound[i])
			check_shadowing(ld, f, sound, rt, map);
	}
	free(sound);
}

/* ---------------------------------------------------------------------------------------------
 * Frontends
 */

static void parse_frontend_name(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct rw_frontend *f = obj;
	const char *name = schema_read_name(ld, v, rule->key);
	if (!name)
		return;
	for (const struct rw_frontend *other = ld->cfg->frontends; other < f; other++) {
		if (other->name && !strcmp(other->name, name)) {
			schema_report(ld, v, "duplicate frontend name '%s'", name);
			break;
		}
	}
	f->name = schema_strdup(ld, name);
}

/* An address is listened on by one frontend, once (ctx: the frontend being read). */
static void check_listen_unique(struct loader *ld, const yaml_node_t *item,
				const struct rw_sockaddr *addr, void *ctx)
{
	const struct rw_frontend *current = ctx;
	for (const struct rw_frontend *f = ld->cfg->frontends; f <= current; f++) {
		for (uint32_t i = 0; i < f->nlistens; i++) {
			if (!rw_sockaddr_is(&f->listens[i], &addr->addr, addr->addrlen))
				continue;
			schema_report(ld, item, "listen: address '%s' is already used by frontend '%s'",
			       addr->text, f->name ? f->name : "?");
			return;
		}
	}
}

static void parse_listen_address(struct loader *ld, yaml_node_t *v, void *obj,
				 const struct rule *rule)
{
	schema_read_address(ld, v, "listen.address", obj);
}

static void parse_listen_tls(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_sockaddr *a = obj;
	a->tls = tls_config_server(ld, v);
}

static const struct rule listen_rules[] = {
	{ .key = "address", .parse = parse_listen_address, .required = true },
	{ .key = "tls", .parse = parse_listen_tls },
	{ 0 }
};

/* listen: addresses, each written as it is ("127.0.0.1:8080") or as a mapping with its TLS
 * ({address: "127.0.0.1:8443", tls: {...}}). */
static void parse_listen(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_frontend *f = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: at least one address is required", rule->key);
		return;
	}
	if (!(f->listens = schema_alloc(ld, schema_item_count(v), sizeof *f->listens)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		struct rw_sockaddr a = { 0 };
		yaml_node_t *at = item;
		if (item->type == YAML_MAPPING_NODE) {
			schema_walk_mapping(ld, item, "listen", listen_rules, &a);
			yaml_node_pair_t *p = schema_find_pair(ld, item, "address");
			at = p ? schema_node(ld, p->value) : item;
		} else if (!schema_read_address(ld, item, rule->key, &a)) {
			continue;
		}
		if (a.text)
			check_listen_unique(ld, at, &a, f);
		f->listens[f->nlistens++] = a; /* freed with the frontend, even half read */
	}
}

/* A frontend's hosts: host patterns, as a route's match.host. */
static void parse_frontend_hosts(struct loader *ld, yaml_node_t *v, void *obj,
				 const struct rule *rule)
{
	struct rw_frontend *f = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "hosts: empty list (leave the key out to serve every host)");
		return;
	}
	if (!(f->hosts = schema_alloc(ld, schema_item_count(v), sizeof *f->hosts)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, rule->key);
		if (s && !valid_host_pattern(s))
			schema_report(ld, item, "hosts: invalid host pattern '%s' (expected a name like "
				      "api.example.com or *.example.com, without port)", s);
		else if (s && (f->hosts[f->nhosts] = schema_strdup(ld, s)))
			f->nhosts++;
	}
}

static const struct rule frontend_rules[] = {
	{ .key = "name", .parse = parse_frontend_name, .required = true },
	{ .key = "listen", .parse = parse_listen, .required = true },
	{ .key = "hosts", .parse = parse_frontend_hosts },
	/* the defaults of its routes, read before them */
	{ .key = "auth", .parse = auth_parse_methods, .offset = offsetof(struct rw_frontend, auth) },
	{ .key = "allow_groups", .parse = auth_parse_allow_groups,
	  .offset = offsetof(struct rw_frontend, auth) },
	{ .key = "deny_groups", .parse = auth_parse_deny_groups,
	  .offset = offsetof(struct rw_frontend, auth) },
	{ .key = "scopes", .parse = auth_parse_scopes, .offset = offsetof(struct rw_frontend, auth) },
	{ .key = "rate_limit", .parse = ratelimit_parse,
	  .offset = offsetof(struct rw_frontend, rate_limits) },
	{ .key = "request", .parse = transform_parse_request,
	  .offset = offsetof(struct rw_frontend, xf) },
	{ .key = "response", .parse = transform_parse_response,
	  .offset = offsetof(struct rw_frontend, xf) },
	{ .key = "cors", .parse = cors_parse, .offset = offsetof(struct rw_frontend, xf) },
	{ .key = "routes", .parse = parse_routes, .required = true },
	{ 0 }
};

static void parse_frontends(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: at least one frontend is required", rule->key);
		return;
	}
	cfg->frontends = schema_alloc(ld, schema_item_count(v), sizeof cfg->frontends[0]);
	if (!cfg->frontends)
		return;
	cfg->nfrontends = schema_item_count(v);
	for (uint32_t i = 0; i < cfg->nfrontends; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		schema_label(ld, map, "frontend", i, label, sizeof label);
		schema_walk_mapping(ld, map, label, frontend_rules, &cfg->frontends[i]);
	}
}

/* One router per frontend, from its routes, and each route's stages. */
static void frontends_compile(struct loader *ld, struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nfrontends; i++) {
		struct rw_frontend *f = &cfg->frontends[i];
		f->router = router_build(f->routes, f->nroutes);
		if (!f->router) {
			schema_out_of_memory(ld);
			return;
		}
		for (uint32_t j = 0; j < f->nroutes; j++)
			if (stages_compile(&f->routes[j], cfg)) {
				schema_out_of_memory(ld);
				return;
			}
	}
}

static void frontends_free(struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nfrontends; i++) {
		struct rw_frontend *f = &cfg->frontends[i];
		if (f->router)
			router_free(f->router);
		for (uint32_t j = 0; j < f->nroutes; j++) {
			free(f->routes[j].name);
			free(f->routes[j].host);
			free(f->routes[j].path);
			free(f->routes[j].strip_prefix);
			aggregate_free(f->routes[j].aggregate);
			auth_route_free(&f->routes[j].auth);
			ratelimit_free(&f->routes[j].rate_limits);
			transform_free(&f->routes[j].xf);
			stages_free(&f->routes[j]);
		}
		free(f->routes);
		for (uint32_t j = 0; j < f->nlistens; j++)
			tls_server_config_free(f->listens[j].tls);
		schema_free_addresses(f->listens, f->nlistens);
		auth_route_free(&f->auth);
		ratelimit_free(&f->rate_limits);
		transform_free(&f->xf);
		for (uint32_t j = 0; j < f->nhosts; j++)
			free(f->hosts[j]);
		free(f->hosts);
		free(f->name);
	}
	free(cfg->frontends);
}

/* Required; after upstreams (routes look their upstream up by name). */
static const struct config_section frontends_section = {
	.rule = { .key = "frontends", .parse = parse_frontends, .required = true },
	.compile = frontends_compile,
	.free = frontends_free,
};

/* ---------------------------------------------------------------------------------------------
 * The sections and the snapshot's life
 */

/* The top level, in the order its keys are read and listed in errors. A section may read the
 * sections before it. */
static const struct config_section *const sections[] = {
	&workers_section,   &access_log_section,   &drain_timeout_section, &limits_section,
	&upstreams_section, &auth_config_section,  &jwt_issuers_section,   &identity_token_section,
	&frontends_section, &rate_limit_store_section, &xdp_config_section, &admin_config_section,
};
#define NSECTIONS (sizeof sections / sizeof sections[0])

/* Frees a snapshot, complete or abandoned half-way by a failed load. */
static void config_free(struct rw_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < NSECTIONS; i++)
		if (sections[i]->free)
			sections[i]->free(cfg);
	free(cfg->path);
	free(cfg->source);
	free(cfg);
}

/* A snapshot with every section's defaults; NULL after out of memory. */
static struct rw_config *new_config(struct loader *ld, const char *path)
{
	struct rw_config *cfg = schema_alloc(ld, 1, sizeof *cfg);
	if (!cfg)
		return NULL;
	atomic_init(&cfg->refs, 1);
	cfg->path = schema_strdup(ld, path);
	for (size_t i = 0; i < NSECTIONS; i++)
		if (sections[i]->defaults)
			sections[i]->defaults(ld, cfg);
	if (ld->out_of_memory) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* Walks the top level through the sections' rules, then compiles what has to be. */
static void read_sections(struct loader *ld, yaml_node_t *root)
{
	struct rule top[NSECTIONS + 1] = { 0 };
	for (size_t i = 0; i < NSECTIONS; i++)
		top[i] = sections[i]->rule;
	schema_walk_mapping(ld, root, "top level", top, ld->cfg);
	for (size_t i = 0; i < NSECTIONS && !ld->nerrors && !ld->out_of_memory; i++)
		if (sections[i]->compile)
			sections[i]->compile(ld, ld->cfg);
}

struct rw_config *config_ref(struct rw_config *cfg)
{
	if (cfg)
		atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct rw_config *cfg)
{
	if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 */

struct rw_config *config_load_string(const char *name, const char *yaml, size_t len,
				     struct config_errors *errs)
{
	struct config_errors unwanted;
	if (!errs)
		errs = &unwanted;
	struct loader ld = { .file = name };
	ld.cfg = new_config(&ld, name);

	if (ld.cfg && (ld.cfg->source = schema_alloc(&ld, len + 1, 1))) {
		if (len)
			memcpy(ld.cfg->source, yaml, len);
		ld.cfg->source_len = len;
	}
	if (ld.cfg && !ld.out_of_memory && schema_read_document(&ld, yaml ? yaml : "", yaml ? len : 0)) {
		yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
		char buf[80];
		if (!root)
			schema_report_at(&ld, 1, 1, "the configuration is empty");
		else if (root->type != YAML_MAPPING_NODE)
			schema_report(&ld, root, "the top level must be a mapping, got %s",
				      schema_describe(root, buf, sizeof buf));
		else
			read_sections(&ld, root);
		yaml_document_delete(&ld.doc);
	}
	if (schema_hand_over_errors(&ld, errs))
		return ld.cfg;
	config_free(ld.cfg);
	if (errs == &unwanted)
		config_errors_free(&unwanted);
	return NULL;
}

struct rw_config *config_load_file(const char *path, struct config_errors *errs)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, got;
	int err = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		err = errno;
	} else {
		do {
			if (len == cap) {
				cap = cap ? cap * 2 : 65536;
				char *grown = realloc(buf, cap);
				if (!grown) {
					err = ENOMEM;
					break;
				}
				buf = grown;
			}
			got = fread(buf + len, 1, cap - len, f);
			len += got;
		} while (got > 0);
		if (!err && ferror(f))
			err = errno ? errno : EIO;
		fclose(f);
	}
	if (err) {
		free(buf);
		if (errs && err == ENOMEM)
			schema_error_line(errs, "%s: %s", path, SCHEMA_OUT_OF_MEMORY);
		else if (errs)
			schema_error_line(errs, "%s: cannot read: %s", path, strerror(err));
		return NULL;
	}
	struct rw_config *cfg = config_load_string(path, buf ? buf : "", len, errs);
	free(buf);
	return cfg;
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (uint32_t i = 0; i < errs->count; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->count = 0;
}
