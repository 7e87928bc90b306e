/* auth_config.c — owns the configuration's consumers section: each consumer's name (unique),
 * groups, API keys, written as "sha256:" and the 64 lowercase hex digits of the key's SHA-256
 * (the clear key is never in the file; a key held by two consumers is an error), and Basic
 * credentials (a unique user and its password hash, password.h); the tables compiled from them,
 * sorted for auth_find_key, auth_find_user and auth_find_consumer. The section is listed in
 * config.c's table of sections, before frontends. Also the auth keys of routes and frontends
 * (auth, allow_groups, deny_groups, scopes, api_key; config.c lists them in its rules), the
 * frontend's defaults applied to its routes, their checks, and the WWW-Authenticate lines of a
 * route's 401s. */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "schema.h"
#include "tls.h"

#define KEY_PREFIX "sha256:"
#define DEFAULT_KEY_HEADER "X-API-Key"
#define KEY_PREFIX_LEN (sizeof KEY_PREFIX - 1)

/* What a consumer entry is read into, with the consumer's position (for the duplicate checks). */
struct consumer_read {
	struct rw_consumer *c;
	struct rw_consumers *all;
};

static void parse_consumer_name(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct consumer_read *r = obj;
	const char *name = schema_read_name(ld, v, rule->key);
	if (!name)
		return;
	for (const struct rw_consumer *other = r->all->list; other < r->c; other++) {
		if (other->name && !strcmp(other->name, name)) {
			schema_report(ld, v, "duplicate consumer name '%s'", name);
			break;
		}
	}
	r->c->name = schema_strdup(ld, name);
}

/* A sequence of names (groups) into *list, *n: the invalid ones reported and left out. */
static void read_names(struct loader *ld, yaml_node_t *v, const char *what, char ***list,
		       uint32_t *n)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	if (!(*list = schema_alloc(ld, schema_item_count(v), sizeof **list)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		const char *name = schema_read_name(ld, schema_node(ld, *i), what);
		if (name && ((*list)[*n] = schema_strdup(ld, name)))
			(*n)++;
	}
}

static void free_names(char **list, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

static void parse_groups(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_consumer *c = ((struct consumer_read *)obj)->c;
	read_names(ld, v, rule->key, &c->groups, &c->ngroups);
}

/* Visible ASCII only: what may go into a header. */
static bool valid_text(const char *s)
{
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f)
			return false;
	return true;
}

static int hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* "sha256:" and 64 lowercase hex digits into digest; false if s is not written so. */
static bool read_digest(const char *s, uint8_t digest[AUTH_DIGEST_LEN])
{
	if (strncmp(s, KEY_PREFIX, KEY_PREFIX_LEN) || strlen(s) != KEY_PREFIX_LEN + 2 * AUTH_DIGEST_LEN)
		return false;
	s += KEY_PREFIX_LEN;
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++) {
		int hi = hex_digit(s[2 * i]), lo = hex_digit(s[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return false;
		digest[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

/* The consumer (this one or an earlier one) already holding digest, or NULL. */
static const struct rw_consumer *key_holder(const struct consumer_read *r,
					    const uint8_t digest[AUTH_DIGEST_LEN])
{
	for (const struct rw_consumer *c = r->all->list; c <= r->c; c++)
		for (uint32_t k = 0; k < c->nkeys; k++)
			if (!memcmp(c->keys[k], digest, AUTH_DIGEST_LEN))
				return c;
	return NULL;
}

static void parse_api_keys(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct consumer_read *r = obj;
	struct rw_consumer *c = r->c;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (!(c->keys = schema_alloc(ld, schema_item_count(v), sizeof *c->keys)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, rule->key);
		if (!s)
			continue;
		uint8_t digest[AUTH_DIGEST_LEN];
		if (!read_digest(s, digest)) {
			schema_report(ld, item, "%s: expected \"sha256:\" and the 64 lowercase hex digits "
				      "of the key's SHA-256", rule->key);
			continue;
		}
		const struct rw_consumer *holder = key_holder(r, digest);
		if (holder) {
			schema_report(ld, item, "%s: this key is already a key of consumer '%s'",
				      rule->key, holder->name ? holder->name : "?");
			continue;
		}
		memcpy(c->keys[c->nkeys++], digest, AUTH_DIGEST_LEN);
	}
}

static void parse_basic_user(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct consumer_read *r = obj;
	const char *user = schema_expect_scalar(ld, v, "basic.user");
	if (!user)
		return;
	if (!*user || strchr(user, ':') || !valid_text(user)) {
		schema_report(ld, v, "basic.user: '%s' must be visible ASCII without ':'", user);
		return;
	}
	for (const struct rw_consumer *other = r->all->list; other < r->c; other++) {
		if (other->basic_user && !strcmp(other->basic_user, user)) {
			schema_report(ld, v, "basic.user: '%s' is already the user of consumer '%s'",
				      user, other->name ? other->name : "?");
			return;
		}
	}
	r->c->basic_user = schema_strdup(ld, user);
}

static void parse_password_hash(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct consumer_read *r = obj;
	const char *s = schema_expect_scalar(ld, v, "basic.password_hash"), *why;
	if (s && !password_hash_parse(s, &r->c->basic_password, &why))
		schema_report(ld, v, "basic.password_hash: %s", why);
}

static const struct rule basic_rules[] = {
	{ .key = "user", .parse = parse_basic_user, .required = true },
	{ .key = "password_hash", .parse = parse_password_hash, .required = true },
	{ 0 }
};

static void parse_basic(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		schema_walk_mapping(ld, v, rule->key, basic_rules, obj);
}

static const struct rule consumer_rules[] = {
	{ .key = "name", .parse = parse_consumer_name, .required = true },
	{ .key = "groups", .parse = parse_groups },
	{ .key = "api_keys", .parse = parse_api_keys },
	{ .key = "basic", .parse = parse_basic },
	{ 0 }
};

static void parse_consumers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_consumers *cs = &((struct rw_config *)obj)->consumers;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (!(cs->list = schema_alloc(ld, schema_item_count(v), sizeof *cs->list)))
		return;
	cs->count = schema_item_count(v);
	for (uint32_t i = 0; i < cs->count; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		schema_label(ld, map, "consumer", i, label, sizeof label);
		struct consumer_read r = { .c = &cs->list[i], .all = cs };
		schema_walk_mapping(ld, map, label, consumer_rules, &r);
	}
}

static int key_order(const void *a, const void *b)
{
	return memcmp(((const struct rw_api_key *)a)->digest, ((const struct rw_api_key *)b)->digest,
		      AUTH_DIGEST_LEN);
}

static int user_order(const void *a, const void *b)
{
	return strcmp((*(const struct rw_consumer *const *)a)->basic_user,
		      (*(const struct rw_consumer *const *)b)->basic_user);
}

static int name_order(const void *a, const void *b)
{
	return strcmp((*(const struct rw_consumer *const *)a)->name,
		      (*(const struct rw_consumer *const *)b)->name);
}

/* Every consumer's keys into one table sorted by digest; the consumers with a Basic user sorted
 * by it, and all of them by name. */
static void consumers_compile(struct loader *ld, struct rw_config *cfg)
{
	struct rw_consumers *cs = &cfg->consumers;
	uint32_t n = 0;
	for (uint32_t i = 0; i < cs->count; i++)
		n += cs->list[i].nkeys;
	if (!(cs->keys = schema_alloc(ld, n, sizeof *cs->keys)) ||
	    !(cs->by_user = schema_alloc(ld, cs->count, sizeof *cs->by_user)) ||
	    !(cs->by_name = schema_alloc(ld, cs->count, sizeof *cs->by_name)))
		return;
	for (uint32_t i = 0; i < cs->count; i++) {
		for (uint32_t k = 0; k < cs->list[i].nkeys; k++) {
			memcpy(cs->keys[cs->nkeys].digest, cs->list[i].keys[k], AUTH_DIGEST_LEN);
			cs->keys[cs->nkeys++].consumer = &cs->list[i];
		}
		if (cs->list[i].basic_user)
			cs->by_user[cs->nusers++] = &cs->list[i];
		cs->by_name[i] = &cs->list[i];
	}
	qsort(cs->keys, cs->nkeys, sizeof *cs->keys, key_order);
	qsort(cs->by_user, cs->nusers, sizeof *cs->by_user, user_order);
	qsort(cs->by_name, cs->count, sizeof *cs->by_name, name_order);
}

/* The entry of the sorted list whose field (basic_user, or name) is text[0..len), or NULL. */
static const struct rw_consumer *search_sorted(const struct rw_consumer *const *list, uint32_t n,
					       size_t offset, const char *text, size_t len)
{
	uint32_t lo = 0, hi = n;
	if (memchr(text, '\0', len))
		return NULL;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		const char *s = *(char *const *)((const char *)list[mid] + offset);
		int c = strncmp(s, text, len);
		if (c == 0 && s[len] == '\0')
			return list[mid];
		if (c < 0)
			lo = mid + 1;
		else /* after text, or text followed by more */
			hi = mid;
	}
	return NULL;
}

const struct rw_consumer *auth_find_consumer(const struct rw_consumers *cs, const char *name,
					     size_t len)
{
	return search_sorted(cs->by_name, cs->count, offsetof(struct rw_consumer, name), name, len);
}

const struct rw_consumer *auth_find_user(const struct rw_consumers *cs, const char *user,
					 size_t len)
{
	return search_sorted(cs->by_user, cs->nusers, offsetof(struct rw_consumer, basic_user),
			     user, len);
}

const struct rw_api_key *auth_find_key(const struct rw_consumers *cs,
				       const uint8_t digest[AUTH_DIGEST_LEN])
{
	uint32_t lo = 0, hi = cs->nkeys; /* the first entry not below digest */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (memcmp(cs->keys[mid].digest, digest, AUTH_DIGEST_LEN) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == cs->nkeys)
		return NULL;
	uint8_t diff = 0; /* the final equality in constant time */
	for (size_t i = 0; i < AUTH_DIGEST_LEN; i++)
		diff |= cs->keys[lo].digest[i] ^ digest[i];
	return diff ? NULL : &cs->keys[lo];
}

/* ---- The auth keys of routes and frontends --------------------------------------------------- */

static const char *const auth_words[] = { "api_key", "jwt", "basic", "mtls", NULL };

const char *auth_method_name(uint32_t method)
{
	for (uint32_t w = 0; auth_words[w]; w++)
		if (method == 1u << w)
			return auth_words[w];
	return "none";
}

void auth_parse_methods(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: empty list (leave 'auth' out for a route without "
			      "authentication)", rule->key);
		return;
	}
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, rule->key);
		if (!s)
			continue;
		uint32_t w = 0;
		while (auth_words[w] && strcmp(auth_words[w], s))
			w++;
		if (!auth_words[w])
			schema_report(ld, item, "%s: unknown method '%s' (valid: api_key, jwt, basic, mtls)", rule->key, s);
		else
			a->methods |= 1u << w;
	}
}

void auth_parse_allow_groups(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = schema_field(obj, rule);
	read_names(ld, v, rule->key, &a->allow_groups, &a->nallow);
}

void auth_parse_deny_groups(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = schema_field(obj, rule);
	read_names(ld, v, rule->key, &a->deny_groups, &a->ndeny);
}

/* A scope: visible ASCII but '"' and '\\' (RFC 6749, 3.3). */
static bool valid_scope(const char *s)
{
	return *s && valid_text(s) && !strpbrk(s, "\"\\");
}

void auth_parse_scopes(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = schema_field(obj, rule);
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (!(a->scopes = schema_alloc(ld, schema_item_count(v), sizeof *a->scopes)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *scope = schema_expect_scalar(ld, item, rule->key);
		if (scope && !valid_scope(scope))
			schema_report(ld, item, "%s: invalid scope '%s' (visible ASCII but '\"' and "
				      "'\\')", rule->key, scope);
		else if (scope && (a->scopes[a->nscopes] = schema_strdup(ld, scope)))
			a->nscopes++;
	}
}

/* A header name or a query parameter name: visible ASCII, no separators that end it. */
static bool valid_token(const char *s, const char *stops)
{
	if (!*s)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || strchr(stops, *c))
			return false;
	return true;
}

static void parse_key_header(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = obj;
	const char *s = schema_expect_scalar(ld, v, "api_key.header");
	if (s && !valid_token(s, "()<>@,;:\\\"/[]?={}"))
		schema_report(ld, v, "api_key.header: invalid header name '%s'", s);
	else if (s)
		a->key_header = schema_strdup(ld, s);
}

static void parse_key_query(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route_auth *a = obj;
	const char *s = schema_expect_scalar(ld, v, "api_key.query");
	if (s && !valid_token(s, "&=#%+"))
		schema_report(ld, v, "api_key.query: invalid query parameter name '%s'", s);
	else if (s)
		a->key_query = schema_strdup(ld, s);
}

static const struct rule api_key_rules[] = {
	{ .key = "header", .parse = parse_key_header },
	{ .key = "query", .parse = parse_key_query },
	{ 0 }
};

void auth_parse_api_key(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	if (schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		schema_walk_mapping(ld, v, rule->key, api_key_rules, schema_field(obj, rule));
}

static void copy_names(struct loader *ld, char ***list, uint32_t *n, char *const *from,
		       uint32_t nfrom)
{
	if (!nfrom || !(*list = schema_alloc(ld, nfrom, sizeof **list)))
		return;
	for (uint32_t i = 0; i < nfrom; i++)
		if (((*list)[*n] = schema_strdup(ld, from[i])))
			(*n)++;
}

/* Whether every listener of f asks for a client certificate. */
static bool listeners_verify_clients(const struct rw_frontend *f)
{
	for (uint32_t i = 0; i < f->nlistens; i++)
		if (!f->listens[i].tls || !f->listens[i].tls->client_ca)
			return false;
	return f->nlistens > 0;
}

void auth_route_finish(struct loader *ld, const yaml_node_t *map, struct rw_route_auth *rt,
		       const struct rw_frontend *f, const struct rw_config *cfg)
{
	const struct rw_route_auth *frontend = &f->auth;
	if (!schema_find_pair(ld, map, "auth"))
		rt->methods = frontend->methods;
	if (!schema_find_pair(ld, map, "allow_groups"))
		copy_names(ld, &rt->allow_groups, &rt->nallow, frontend->allow_groups,
			   frontend->nallow);
	if (!schema_find_pair(ld, map, "deny_groups"))
		copy_names(ld, &rt->deny_groups, &rt->ndeny, frontend->deny_groups, frontend->ndeny);
	if (!schema_find_pair(ld, map, "scopes"))
		copy_names(ld, &rt->scopes, &rt->nscopes, frontend->scopes, frontend->nscopes);
	if (!schema_find_pair(ld, map, "hide_credentials"))
		rt->hide_credentials = true;
	if (!rt->key_header && !(rt->key_header = schema_strdup(ld, DEFAULT_KEY_HEADER)))
		return;
	const yaml_node_pair_t *at = schema_find_pair(ld, map, "auth");
	const yaml_node_t *where = at ? schema_node(ld, at->value) : map;
	if (!rt->methods && (rt->nallow || rt->ndeny))
		schema_report(ld, map, "allow_groups and deny_groups need auth on the route or its "
			      "frontend");
	if (rt->nscopes && !(rt->methods & AUTH_JWT))
		schema_report(ld, map, "scopes need jwt in the auth of the route or its frontend");
	if ((rt->methods & AUTH_JWT) && cfg->jwt_issuers.count == 0)
		schema_report(ld, where, "auth: jwt needs at least one entry in jwt_issuers");
	if ((rt->methods & AUTH_MTLS) && !listeners_verify_clients(f))
		schema_report(ld, where, "auth: mtls needs tls.client_ca on every listener of "
			      "frontend '%s'", f->name ? f->name : "?");
}

void auth_route_free(struct rw_route_auth *a)
{
	free_names(a->allow_groups, a->nallow);
	free_names(a->deny_groups, a->ndeny);
	free_names(a->scopes, a->nscopes);
	free(a->key_header);
	free(a->key_query);
}

static void consumers_free(struct rw_config *cfg)
{
	struct rw_consumers *cs = &cfg->consumers;
	for (uint32_t i = 0; i < cs->count; i++) {
		struct rw_consumer *c = &cs->list[i];
		free_names(c->groups, c->ngroups);
		free(c->keys);
		free(c->name);
		free(c->basic_user);
	}
	free(cs->list);
	free(cs->keys);
	free(cs->by_user);
	free(cs->by_name);
}

/* Optional; before frontends. */
const struct config_section auth_config_section = {
	.rule = { .key = "consumers", .parse = parse_consumers },
	.compile = consumers_compile,
	.free = consumers_free,
};
