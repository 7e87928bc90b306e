/* identity_config.c — owns the configuration's identity_token section (identity.h): the signing
 * key (key_file, an EC P-256 PEM read as the section is read, so an unusable file is an error at
 * its key; without it the key generated at the first load, which the process keeps, and says so
 * in the log once), alg (ES256 only), header, ttl, issuer, per_request, jwks_path, and the JWKS
 * document published from the key. */
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "identity.h"
#include "log.h"
#include "schema.h"

#define DEFAULT_HEADER "X-Access-Token"
#define DEFAULT_ISSUER "ringway"
#define DEFAULT_TTL_MS 60000u
#define JWKS_MAX       1024u

/* The key made when a configuration has no key_file: for the life of the process, so that tokens
 * minted before a reload still verify after it. Only the thread that loads configurations (one at
 * a time) touches it. */
static struct jwt_signer *generated;

static void parse_key_file(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_identity_token *it = obj;
	const char *path = schema_expect_scalar(ld, v, rule->key);
	if (!path)
		return;
	char err[256];
	if (!(it->signer = jwt_signer_load_pem(path, err, sizeof err))) {
		schema_report(ld, v, "key_file: %s", err);
		return;
	}
	it->key_file = schema_strdup(ld, path);
}

static void parse_alg(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && strcmp(s, "ES256"))
		schema_report(ld, v, "alg: '%s' is not offered (identity tokens are ES256)", s);
}

static bool valid_header_name(const char *s)
{
	if (!*s)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", *c))
			return false;
	return true;
}

static void parse_header(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_identity_token *it = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && !valid_header_name(s))
		schema_report(ld, v, "header: invalid header name '%s'", s);
	else if (s)
		it->header = schema_strdup(ld, s);
}

static void parse_ttl(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_identity_token *it = obj;
	schema_parse_duration(ld, v, obj, rule);
	if (it->ttl_ms && it->ttl_ms < 1000)
		schema_report(ld, v, "ttl: at least 1s (tokens count whole seconds)");
}

static void parse_issuer(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_identity_token *it = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && !*s)
		schema_report(ld, v, "issuer: must not be empty");
	else if (s)
		it->issuer = schema_strdup(ld, s);
}

static void parse_jwks_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_identity_token *it = obj;
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && schema_check_path(ld, v, rule->key, s))
		it->jwks_path = schema_strdup(ld, s);
}

static const struct rule identity_rules[] = {
	{ .key = "key_file", .parse = parse_key_file },
	{ .key = "alg", .parse = parse_alg },
	{ .key = "header", .parse = parse_header },
	{ .key = "ttl", .parse = parse_ttl, .offset = offsetof(struct rw_identity_token, ttl_ms) },
	{ .key = "issuer", .parse = parse_issuer },
	{ .key = "per_request", .parse = schema_parse_bool,
	  .offset = offsetof(struct rw_identity_token, per_request) },
	{ .key = "jwks_path", .parse = parse_jwks_path },
	{ 0 }
};

static void parse_identity_token(struct loader *ld, yaml_node_t *v, void *obj,
				 const struct rule *rule)
{
	struct rw_identity_token *it = &((struct rw_config *)obj)->identity;
	if (!schema_expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	it->enabled = true;
	schema_walk_mapping(ld, v, rule->key, identity_rules, it);
}

/* The defaults, the generated key when there is no key_file, and the JWKS. */
static void identity_compile(struct loader *ld, struct rw_config *cfg)
{
	struct rw_identity_token *it = &cfg->identity;
	if (!it->enabled)
		return;
	if (!it->header && !(it->header = schema_strdup(ld, DEFAULT_HEADER)))
		return;
	if (!it->issuer && !(it->issuer = schema_strdup(ld, DEFAULT_ISSUER)))
		return;
	if (!it->ttl_ms)
		it->ttl_ms = DEFAULT_TTL_MS;
	if (!it->signer) {
		if (!generated) {
			char err[256];
			struct jwt_rng *rng = jwt_rng_new();
			generated = rng ? jwt_signer_generate(rng, err, sizeof err) : NULL;
			jwt_rng_free(rng);
			if (!generated) {
				schema_out_of_memory(ld);
				return;
			}
			log_info("identity_token: no key_file, so this process generated its ES256 "
				 "signing key (kid %s); services verify tokens with the JWKS the admin "
				 "listener serves at /.well-known/jwks.json%s%s", jwt_signer_kid(generated),
				 it->jwks_path ? " and every frontend at " : "",
				 it->jwks_path ? it->jwks_path : "");
		}
		it->signer = generated;
	}
	if (!(it->jwks = schema_alloc(ld, JWKS_MAX, 1)))
		return;
	it->jwks_len = jwt_signer_jwks(it->signer, it->jwks, JWKS_MAX);
	if (!it->jwks_len)
		schema_out_of_memory(ld);
}

static void identity_free(struct rw_config *cfg)
{
	struct rw_identity_token *it = &cfg->identity;
	if (it->signer != generated)
		jwt_signer_free(it->signer);
	free(it->key_file);
	free(it->header);
	free(it->issuer);
	free(it->jwks_path);
	free(it->jwks);
}

/* Optional. */
const struct config_section identity_token_section = {
	.rule = { .key = "identity_token", .parse = parse_identity_token },
	.compile = identity_compile,
	.free = identity_free,
};
