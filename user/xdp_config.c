/* xdp_config.c — owns the configuration's xdp section: its keys and checks (interface, mode,
 * ports, rates and bursts, pin_path, CIDR policies), its defaults and its freeing. The section is
 * listed in config.c's table of sections; the loader that applies it is xdp.c. */
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "schema.h"
#include "xdp.h"

#define XDP_RATE_MAX 1000000u    /* the bucket's interval is whole nanoseconds: exact to 0.1% */
#define XDP_COUNT_MAX 100000000u /* bursts and the admission budget */
#define PIN_PATH_MAX 200u
#define ACTION_UNSET 0xff /* rw_xdp_policy.action until its action is known */

static const char *const xdp_mode_words[] = { "off", "auto", "native", "generic", NULL };
static const char *const xdp_limit_words[] = { "syn", "all", NULL };
static const char *const policy_action_words[] = { "limit", "allow", "deny", NULL };

/* Two seconds' worth of a rate: the burst when none is given. */
static uint32_t default_burst(uint32_t rate)
{
	return rate * 2;
}

/* As the kernel's dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or whitespace (and
 * here no control characters either). */
static bool valid_interface_name(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c == 0x7f || *c == '/' || *c == ':')
			return false;
	return true;
}

static void parse_interface(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!valid_interface_name(s)) {
		schema_report(ld, v,
			      "%s: invalid interface name '%s' (1..15 characters, no '/', ':' or spaces, "
			      "not '.' or '..')",
			      rule->key, s);
		return;
	}
	xdp->interface = schema_strdup(ld, s);
}

/* 1..RW_XDP_MAX_PORTS distinct ports, each within rule->min..rule->max; a duplicate is reported
 * at its repetition. */
static void parse_ports(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	uint32_t n = schema_item_count(v);
	if (n == 0) {
		schema_report(ld, v, "%s: empty list (leave 'ports' out to guard every port)",
			      rule->key);
		return;
	}
	if (n > RW_XDP_MAX_PORTS) {
		schema_report(ld, schema_node(ld, v->data.sequence.items.start[RW_XDP_MAX_PORTS]),
			      "%s: more than %d ports", rule->key, RW_XDP_MAX_PORTS);
		n = RW_XDP_MAX_PORTS;
	}
	const yaml_node_t *items[RW_XDP_MAX_PORTS]; /* the item of each port in xdp->ports */
	for (uint32_t i = 0; i < n; i++) {
		const yaml_node_t *item = schema_node(ld, v->data.sequence.items.start[i]);
		uint64_t port;
		if (!schema_read_number(ld, item, rule, schema_parse_number, "an integer", &port))
			continue;
		uint32_t k = 0;
		while (k < xdp->nports && xdp->ports[k] != port)
			k++;
		if (k < xdp->nports) {
			schema_report(ld, item, "%s: duplicate port %u (first at %u:%u)", rule->key,
				      (unsigned)port, (unsigned)items[k]->start_mark.line + 1,
				      (unsigned)items[k]->start_mark.column + 1);
			continue;
		}
		items[xdp->nports] = item;
		xdp->ports[xdp->nports++] = (uint16_t)port;
	}
}

/* An absolute directory below "/", without ".." (the maps are pinned inside it). */
static void parse_pin_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s || !schema_check_path(ld, v, rule->key, s))
		return;
	if (strlen(s) > PIN_PATH_MAX) {
		schema_report(ld, v, "%s: longer than %u characters", rule->key, PIN_PATH_MAX);
		return;
	}
	bool below_root = false, dot_dot = false;
	for (const char *c = s + strspn(s, "/"); *c; c += strspn(c, "/")) {
		size_t len = strcspn(c, "/");
		dot_dot |= len == 2 && !strncmp(c, "..", 2);
		below_root |= !(len == 1 && c[0] == '.');
		c += len;
	}
	if (dot_dot) {
		schema_report(ld, v, "%s: '%s' must not contain '..'", rule->key, s);
		return;
	}
	if (!below_root) {
		schema_report(ld, v, "%s: '%s' must be a directory below '/'", rule->key, s);
		return;
	}
	free(xdp->pin_path);
	xdp->pin_path = schema_strdup(ld, s);
}

static void parse_cidr(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp_policy *pol = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	const char *why;
	if (!s)
		return;
	if (!config_parse_cidr(s, pol->addr, &pol->prefixlen, &why)) {
		schema_report(ld, v, "%s: invalid CIDR '%s' (%s)", rule->key, s, why);
		return;
	}
	pol->cidr = schema_strdup(ld, s);
}

static const struct rule policy_rules[] = {
	{ .key = "cidr", .parse = parse_cidr, .required = true },
	{ .key = "action", .parse = schema_parse_enum, .words = policy_action_words,
	  .offset = offsetof(struct rw_xdp_policy, action) },
	{ .key = "rate", .parse = schema_parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp_policy, rate) },
	{ .key = "burst", .parse = schema_parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp_policy, burst) },
	{ 0 }
};

/* Reads one policy: without action it is limit when a rate is given; rate and burst belong to
 * limit only, which needs a rate; the burst defaults to twice the rate. */
static void read_policy(struct loader *ld, yaml_node_t *map, const char *label,
			struct rw_xdp_policy *pol)
{
	pol->action = ACTION_UNSET;
	schema_walk_mapping(ld, map, label, policy_rules, pol);
	const yaml_node_pair_t *action = schema_find_pair(ld, map, "action");
	const yaml_node_pair_t *rate = schema_find_pair(ld, map, "rate");
	const yaml_node_pair_t *burst = schema_find_pair(ld, map, "burst");
	if (!action && !rate) {
		schema_report(ld, map,
			      "%s: needs an action (allow, deny) or a rate (for action limit)", label);
		return;
	}
	if (!action)
		pol->action = RW_POLICY_LIMIT;
	if (pol->action == ACTION_UNSET) /* an invalid action, reported */
		return;
	if (pol->action != RW_POLICY_LIMIT) {
		const char *word = policy_action_words[pol->action];
		if (rate)
			schema_report(ld, schema_node(ld, rate->key),
				      "rate: only applies to action limit, not %s", word);
		if (burst)
			schema_report(ld, schema_node(ld, burst->key),
				      "burst: only applies to action limit, not %s", word);
		return;
	}
	if (!rate)
		schema_report(ld, map, "%s: action limit needs a rate", label);
	else if (!burst)
		pol->burst = default_burst(pol->rate);
}

/* The value node of a read policy's cidr. */
static const yaml_node_t *cidr_node(struct loader *ld, const yaml_node_t *seq, uint32_t index)
{
	const yaml_node_t *map = schema_node(ld, seq->data.sequence.items.start[index]);
	return schema_node(ld, schema_find_pair(ld, map, "cidr")->value);
}

/* Two policies for the same prefix (after mapping: 198.51.100.0/24 is ::ffff:198.51.100.0/120)
 * are reported at the later one. */
static void check_policy_unique(struct loader *ld, const struct rw_xdp *xdp,
				const yaml_node_t *seq, uint32_t index)
{
	const struct rw_xdp_policy *pol = &xdp->policies[index];
	for (uint32_t i = 0; i < index; i++) {
		const struct rw_xdp_policy *earlier = &xdp->policies[i];
		if (!earlier->cidr || earlier->prefixlen != pol->prefixlen ||
		    memcmp(earlier->addr, pol->addr, sizeof pol->addr))
			continue;
		const yaml_node_t *first = cidr_node(ld, seq, i);
		schema_report(ld, cidr_node(ld, seq, index),
			      "cidr: duplicate prefix '%s' (same as '%s' at %u:%u)", pol->cidr,
			      earlier->cidr, (unsigned)first->start_mark.line + 1,
			      (unsigned)first->start_mark.column + 1);
		return;
	}
}

static void parse_policies(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	uint32_t n = schema_item_count(v);
	if (n > RW_XDP_MAX_POLICIES) {
		schema_report(ld, schema_node(ld, v->data.sequence.items.start[RW_XDP_MAX_POLICIES]),
			      "%s: more than %d policies", rule->key, RW_XDP_MAX_POLICIES);
		n = RW_XDP_MAX_POLICIES;
	}
	xdp->policies = schema_alloc(ld, n, sizeof xdp->policies[0]);
	if (!xdp->policies)
		return;
	xdp->npolicies = n;
	for (uint32_t i = 0; i < n; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[32];
		snprintf(label, sizeof label, "policy #%u", i + 1);
		const struct rw_xdp_policy *pol = &xdp->policies[i];
		read_policy(ld, map, label, &xdp->policies[i]);
		if (!pol->cidr)
			continue;
		check_policy_unique(ld, xdp, v, i);
		if (pol->action == RW_POLICY_LIMIT &&
		    config_ipv6_limit_too_long(pol->addr, pol->prefixlen, xdp->ipv6_source_prefix))
			schema_report(ld, cidr_node(ld, v, i),
				      "cidr: a limit on '%s' is longer than ipv6_source_prefix /%u, whose "
				      "sources share one bucket: limit the /%u, or allow or deny the address",
				      pol->cidr, xdp->ipv6_source_prefix, xdp->ipv6_source_prefix);
	}
}

static const struct rule xdp_rules[] = {
	{ .key = "interface", .parse = parse_interface },
	{ .key = "mode", .parse = schema_parse_enum, .words = xdp_mode_words,
	  .offset = offsetof(struct rw_xdp, mode) },
	{ .key = "limit", .parse = schema_parse_enum, .words = xdp_limit_words,
	  .offset = offsetof(struct rw_xdp, limit) },
	{ .key = "ports", .parse = parse_ports, .min = 1, .max = 65535 },
	{ .key = "rate", .parse = schema_parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp, rate) },
	{ .key = "burst", .parse = schema_parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, burst) },
	{ .key = "required", .parse = schema_parse_bool,
	  .offset = offsetof(struct rw_xdp, required) },
	{ .key = "pin_path", .parse = parse_pin_path },
	{ .key = "max_sources", .parse = schema_parse_u32, .min = 1024, .max = 16777216,
	  .offset = offsetof(struct rw_xdp, max_sources) },
	{ .key = "new_sources_per_second", .parse = schema_parse_u32, .min = 1,
	  .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, new_sources_per_second) },
	{ .key = "fallback_rate", .parse = schema_parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp, fallback_rate) },
	{ .key = "fallback_burst", .parse = schema_parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, fallback_burst) },
	{ .key = "ipv6_source_prefix", .parse = schema_parse_u32, .min = 32, .max = 128,
	  .offset = offsetof(struct rw_xdp, ipv6_source_prefix) },
	{ .key = "policies", .parse = parse_policies },
	{ 0 }
};

/* Present, the section turns the limiter on (mode auto) unless it says mode: off; everything in
 * it is checked either way. */
static void parse_xdp(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = &((struct rw_config *)obj)->xdp;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	xdp->mode = XDP_MODE_AUTO;
	schema_walk_mapping(ld, v, "xdp", xdp_rules, xdp);
	if (xdp->mode != XDP_MODE_OFF && !schema_find_pair(ld, v, "interface"))
		schema_report(ld, v, "xdp: missing required key 'interface' (or set mode: off)");
	if (!schema_find_pair(ld, v, "burst"))
		xdp->burst = default_burst(xdp->rate);
	if (!schema_find_pair(ld, v, "fallback_burst"))
		xdp->fallback_burst = default_burst(xdp->fallback_rate);
}


static void xdp_defaults(struct loader *ld, struct rw_config *cfg)
{
	cfg->xdp = (struct rw_xdp){ /* mode off: parse_xdp turns it on */
		.limit = RW_LIMIT_SYN,
		.pin_path = schema_strdup(ld, RW_XDP_PIN_DIR),
		.rate = 200,
		.burst = default_burst(200),
		.max_sources = RW_XDP_DEFAULT_SOURCES,
		.new_sources_per_second = 1000,
		.ipv6_source_prefix = 128,
		.fallback_rate = 100,
		.fallback_burst = default_burst(100),
	};
}

static void xdp_free(struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->xdp.npolicies; i++)
		free(cfg->xdp.policies[i].cidr);
	free(cfg->xdp.policies);
	free(cfg->xdp.interface);
	free(cfg->xdp.pin_path);
}

const struct config_section xdp_config_section = {
	.rule = { .key = "xdp", .parse = parse_xdp },
	.defaults = xdp_defaults,
	.free = xdp_free,
};
