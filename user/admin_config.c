/* admin_config.c — owns the configuration's admin section: the admin API's listen address
 * (loopback by default) and its bearer token, with their checks (an address off loopback needs a
 * token; no frontend may listen on it), defaults and freeing. The section is listed in config.c's
 * table of sections, after frontends; the server that uses it is admin.c. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "schema.h"

#define ADMIN_DEFAULT_LISTEN "127.0.0.1:9901"
#define ADMIN_TOKEN_MIN 16
#define ADMIN_TOKEN_MAX 256

static bool is_loopback(const struct rw_sockaddr *a)
{
	if (a->addr.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&a->addr;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->addr;
	return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

static void parse_admin_listen(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_admin *admin = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	struct rw_sockaddr addr;
	if (!config_parse_sockaddr(s, &addr)) {
		schema_report(ld, v, "admin.listen: invalid address '%s' (expected a.b.c.d:port or "
			      "[ipv6]:port, numeric, port 1..65535)", s);
		return;
	}
	for (uint32_t f = 0; f < ld->cfg->nfrontends; f++)
		for (uint32_t i = 0; i < ld->cfg->frontends[f].nlistens; i++)
			if (rw_sockaddr_is(&ld->cfg->frontends[f].listens[i], &addr.addr, addr.addrlen))
				schema_report(ld, v, "admin.listen: address '%s' is already used by frontend "
					      "'%s'", s, ld->cfg->frontends[f].name ? ld->cfg->frontends[f].name : "?");
	free(admin->listen.text);
	admin->listen = addr;
}

static void parse_admin_token(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_admin *admin = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	size_t len = strlen(s);
	if (len < ADMIN_TOKEN_MIN || len > ADMIN_TOKEN_MAX) {
		schema_report(ld, v, "admin.token: %zu characters; use %u to %u", len, ADMIN_TOKEN_MIN,
			      ADMIN_TOKEN_MAX);
		return;
	}
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f) {
			schema_report(ld, v, "admin.token: only visible ASCII characters, no spaces");
			return;
		}
	admin->token = schema_strdup(ld, s);
}

static const struct rule admin_rules[] = {
	{ .key = "listen", .parse = parse_admin_listen },
	{ .key = "token", .parse = parse_admin_token },
	{ 0 }
};

static void parse_admin(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	struct rw_admin *admin = &cfg->admin;
	if (!schema_is_null(v)) {
		if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
			return;
		schema_walk_mapping(ld, v, "admin", admin_rules, admin);
	}
	admin->enabled = true;
	if (!admin->listen.text && !config_parse_sockaddr(ADMIN_DEFAULT_LISTEN, &admin->listen)) {
		schema_out_of_memory(ld);
		return;
	}
	if (!is_loopback(&admin->listen) && !admin->token) {
		yaml_node_pair_t *at = schema_find_pair(ld, v, "listen"); /* present: not loopback */
		schema_report(ld, at ? schema_node(ld, at->value) : v,
			      "admin.listen: %s is off loopback: set admin.token too", admin->listen.text);
	}
}

static void admin_free(struct rw_config *cfg)
{
	free(cfg->admin.listen.text);
	free(cfg->admin.token);
}

const struct config_section admin_config_section = {
	.rule = { .key = "admin", .parse = parse_admin },
	.free = admin_free,
};
