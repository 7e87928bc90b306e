/* jwt_issuers.c — owns the configuration's jwt_issuers section: each issuer whose tokens the
 * gateway trusts (its iss, unique), its key set (jwks_file, loaded as the entry is read, so a file
 * that cannot be used is an error at its own key), the audiences, algorithms, claims and leeway
 * its tokens are checked with, whether verified tokens are cached, and the verification policy
 * compiled from them (jwt.h); and the choice of an issuer for a token (auth_find_issuer). The
 * section is listed in config.c's table of sections before frontends (routes with auth: jwt need
 * an issuer). */
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "config.h"
#include "schema.h"

/* What an issuer entry is read into, with the entries before it (for the duplicate check). */
struct issuer_read {
	struct rw_jwt_issuer *is;
	struct rw_jwt_issuers *all;
};

static void parse_issuer(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct issuer_read *r = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!*s) {
		schema_report(ld, v, "issuer: must not be empty");
		return;
	}
	for (const struct rw_jwt_issuer *other = r->all->list; other < r->is; other++) {
		if (other->issuer && !strcmp(other->issuer, s)) {
			schema_report(ld, v, "issuer: '%s' is already an entry of jwt_issuers", s);
			return;
		}
	}
	r->is->issuer = schema_strdup(ld, s);
}

static void parse_jwks_file(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_jwt_issuer *is = ((struct issuer_read *)obj)->is;
	const char *path = schema_expect_scalar(ld, v, rule->key);
	if (!path)
		return;
	char err[256];
	if (!(is->keys = jwks_load_file(path, err, sizeof err))) {
		schema_report(ld, v, "jwks_file: %s", err);
		return;
	}
	if (jwks_count(is->keys) == 0)
		schema_report(ld, v, "jwks_file: '%s' has no signing key", path);
	is->jwks_file = schema_strdup(ld, path);
}

/* A sequence of non-empty strings into *list. */
static void read_strings(struct loader *ld, yaml_node_t *v, const char *what, char ***list,
			 uint32_t *n)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: empty list (leave the key out instead)", what);
		return;
	}
	if (!(*list = schema_alloc(ld, schema_item_count(v), sizeof **list)))
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, what);
		if (s && !*s)
			schema_report(ld, item, "%s: empty string", what);
		else if (s && ((*list)[*n] = schema_strdup(ld, s)))
			(*n)++;
	}
}

static void parse_audiences(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_jwt_issuer *is = ((struct issuer_read *)obj)->is;
	read_strings(ld, v, rule->key, &is->audiences, &is->naudiences);
}

static void parse_algorithms(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_jwt_issuer *is = ((struct issuer_read *)obj)->is;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "algorithms: empty list (leave the key out to allow all)");
		return;
	}
	is->algs = 0;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		yaml_node_t *item = schema_node(ld, *i);
		const char *s = schema_expect_scalar(ld, item, rule->key);
		enum jwt_alg alg;
		if (s && jwt_alg_parse(s, strlen(s), &alg))
			is->algs |= JWT_ALG_BIT(alg);
		else if (s)
			schema_report(ld, item, "algorithms: unknown algorithm '%s' (valid: HS256, HS384, "
				      "HS512, RS256, RS384, RS512, PS256, ES256, ES384, EdDSA)", s);
	}
}

/* A claim name: a non-empty string. */
static void parse_claim(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_jwt_issuer *is = ((struct issuer_read *)obj)->is;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && !*s) {
		schema_report(ld, v, "%s: empty claim name", rule->key);
		return;
	}
	char **field = schema_field(is, rule);
	if (s)
		*field = schema_strdup(ld, s);
}

static void parse_leeway(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	schema_parse_duration(ld, v, ((struct issuer_read *)obj)->is, rule);
}

static void parse_cache(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	schema_parse_bool(ld, v, ((struct issuer_read *)obj)->is, rule);
}

static const struct rule issuer_rules[] = {
	{ .key = "issuer", .parse = parse_issuer, .required = true },
	{ .key = "jwks_file", .parse = parse_jwks_file, .required = true },
	{ .key = "audiences", .parse = parse_audiences },
	{ .key = "algorithms", .parse = parse_algorithms },
	{ .key = "consumer_claim", .parse = parse_claim,
	  .offset = offsetof(struct rw_jwt_issuer, consumer_claim) },
	{ .key = "groups_claim", .parse = parse_claim,
	  .offset = offsetof(struct rw_jwt_issuer, groups_claim) },
	{ .key = "leeway", .parse = parse_leeway, .offset = offsetof(struct rw_jwt_issuer, leeway_ms) },
	{ .key = "cache", .parse = parse_cache, .offset = offsetof(struct rw_jwt_issuer, cache) },
	{ 0 }
};

static void parse_issuers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_jwt_issuers *all = &((struct rw_config *)obj)->jwt_issuers;
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (!(all->list = schema_alloc(ld, schema_item_count(v), sizeof *all->list)))
		return;
	all->count = schema_item_count(v);
	for (uint32_t i = 0; i < all->count; i++) {
		yaml_node_t *map = schema_node(ld, v->data.sequence.items.start[i]);
		struct rw_jwt_issuer *is = &all->list[i];
		is->algs = JWT_ALGS_ALL;
		is->cache = true;
		if (!schema_expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		schema_label(ld, map, "jwt issuer", i, label, sizeof label);
		struct issuer_read r = { .is = is, .all = all };
		schema_walk_mapping(ld, map, label, issuer_rules, &r);
	}
}

/* Each issuer's verification policy; whether the cache is of use. */
static void issuers_compile(struct loader *ld, struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->jwt_issuers.count; i++) {
		struct rw_jwt_issuer *is = &cfg->jwt_issuers.list[i];
		is->policy = (struct jwt_policy){
			.issuer = is->issuer,
			.audiences = (const char *const *)is->audiences,
			.n_audiences = is->naudiences,
			.leeway = is->leeway_ms / 1000,
			.algs = is->algs,
			.require_exp = true,
			.consumer_claim = is->consumer_claim,
			.groups_claim = is->groups_claim,
		};
		cfg->jwt_issuers.any_cache |= is->cache;
	}
}

static void issuers_free(struct rw_config *cfg)
{
	struct rw_jwt_issuers *all = &cfg->jwt_issuers;
	for (uint32_t i = 0; i < all->count; i++) {
		struct rw_jwt_issuer *is = &all->list[i];
		free(is->issuer);
		free(is->jwks_file);
		jwks_free(is->keys);
		for (uint32_t a = 0; a < is->naudiences; a++)
			free(is->audiences[a]);
		free(is->audiences);
		free(is->consumer_claim);
		free(is->groups_claim);
	}
	free(all->list);
}

const struct rw_jwt_issuer *auth_find_issuer(const struct rw_jwt_issuers *all, const char *token,
					     size_t len, enum jwt_result *why)
{
	if (all->count == 1)
		return &all->list[0];
	char iss[512];
	*why = jwt_peek_issuer(token, len, iss, sizeof iss);
	if (*why != JWT_OK)
		return NULL;
	for (uint32_t i = 0; i < all->count; i++)
		if (!strcmp(all->list[i].issuer, iss))
			return &all->list[i];
	*why = JWT_BAD_ISSUER;
	return NULL;
}

/* Optional; before frontends. */
const struct config_section jwt_issuers_section = {
	.rule = { .key = "jwt_issuers", .parse = parse_issuers },
	.compile = issuers_compile,
	.free = issuers_free,
};
