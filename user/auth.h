/* auth.h — who calls a route: the consumers of the configuration with the API-key and Basic-user
 * tables compiled from them (sorted, for binary searches), the trusted JWT issuers, and the auth
 * keys of routes and frontends (auth_config.c, jwt_issuers.c); the identity a request is
 * authenticated as; the stages that authenticate a request (API key, JWT, Basic, client
 * certificate) and check the route's groups and scopes (auth.c). */
#ifndef RINGWAY_AUTH_H
#define RINGWAY_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "jwt.h"
#include "password.h"
#include "slice.h"
#include "stage.h"

#define AUTH_DIGEST_LEN 32 /* SHA-256 */

/* One entry of the consumers section: a caller the gateway knows by its credentials. */
struct rw_consumer {
	char *name;
	char **groups;
	uint32_t ngroups;
	uint8_t (*keys)[AUTH_DIGEST_LEN]; /* the SHA-256 of each of its API keys */
	uint32_t nkeys;
	char *basic_user;                 /* its Basic user name; NULL: none */
	struct password_hash basic_password;
};

/* One API key of the compiled table: its SHA-256 and whose it is. */
struct rw_api_key {
	uint8_t digest[AUTH_DIGEST_LEN];
	const struct rw_consumer *consumer;
};

/* The consumers section of a snapshot. */
struct rw_consumers {
	struct rw_consumer *list;
	uint32_t count;
	struct rw_api_key *keys; /* every consumer's keys, sorted by digest (compiled) */
	uint32_t nkeys;
	const struct rw_consumer **by_user; /* the consumers with a Basic user, sorted by it */
	uint32_t nusers;
	const struct rw_consumer **by_name; /* every consumer, sorted by name (compiled) */
};

/* One entry of jwt_issuers: whose tokens are trusted, checked how (jwt_issuers.c). */
struct rw_jwt_issuer {
	char *issuer;
	char *jwks_file;
	struct jwks *keys;
	char **audiences;
	uint32_t naudiences;
	char *consumer_claim;     /* default "sub" */
	char *groups_claim;       /* NULL: none */
	uint32_t leeway_ms;
	uint32_t algs;            /* JWT_ALG_BIT()s; default all */
	bool cache;               /* verified tokens are cached per worker until their exp */
	struct jwt_policy policy; /* compiled from the above */
};

struct rw_jwt_issuers {
	struct rw_jwt_issuer *list;
	uint32_t count;
	bool any_cache;           /* one of them caches: tokens are looked up (compiled) */
};

/* How a route authenticates its callers (auth.methods bits), tried in this order. */
#define AUTH_API_KEY 1u
#define AUTH_JWT     2u
#define AUTH_BASIC   4u
#define AUTH_MTLS    8u

#define AUTH_NAME_MAX   JWT_CONSUMER_MAX
#define AUTH_GROUPS_MAX 4096u /* the groups, comma-separated, with the NUL */

/* Who a request is from, once a stage authenticated it. Every string is NUL-terminated, of
 * visible ASCII (it goes into headers): groups without commas or spaces, joined by commas. */
struct auth_identity {
	uint32_t method;                 /* the AUTH_* bit that authenticated it; 0: nobody */
	char name[AUTH_NAME_MAX];
	char groups[AUTH_GROUPS_MAX];
	char scope[JWT_SCOPE_MAX];       /* a JWT's scope claim, space-separated; "" otherwise */
};

/* "api_key", "jwt", "basic", "mtls" for an AUTH_* bit. */
const char *auth_method_name(uint32_t method);

/* The auth keys of a route (a frontend's are the defaults of its routes). */
struct rw_route_auth {
	uint32_t methods;       /* AUTH_* bits; 0: callers are not authenticated */
	char **allow_groups;    /* non-empty: the consumer must be in one of them */
	uint32_t nallow;
	char **deny_groups;     /* a consumer in one of them is refused (before allow_groups) */
	uint32_t ndeny;
	bool hide_credentials;  /* the key is removed from the request forwarded (default) */
	char *key_header;       /* where the API key is: this header (default X-API-Key) ... */
	char *key_query;        /* ... or this query parameter; NULL: none */
	char **scopes;          /* every one must be in the JWT's scope claim */
	uint32_t nscopes;
};

struct config_section;
struct loader;
struct rule;
extern const struct config_section auth_config_section, jwt_issuers_section;

struct yaml_node_s;
/* Rule parsers of the auth keys (schema.h): each fills the struct rw_route_auth at rule->offset.
 * hide_credentials is read with schema_parse_bool. */
void auth_parse_methods(struct loader *ld, struct yaml_node_s *v, void *obj,
			const struct rule *rule);
void auth_parse_allow_groups(struct loader *ld, struct yaml_node_s *v, void *obj,
			     const struct rule *rule);
void auth_parse_deny_groups(struct loader *ld, struct yaml_node_s *v, void *obj,
			    const struct rule *rule);
void auth_parse_api_key(struct loader *ld, struct yaml_node_s *v, void *obj,
			const struct rule *rule);
void auth_parse_scopes(struct loader *ld, struct yaml_node_s *v, void *obj,
		       const struct rule *rule);
struct rw_frontend;
/* After a route's keys are read (map: the route): the frontend's auth, allow_groups, deny_groups
 * and scopes where the route has none, the defaults, and the checks that need them all (jwt needs
 * jwt_issuers, mtls a client_ca on every listener of the frontend). */
void auth_route_finish(struct loader *ld, const struct yaml_node_s *map, struct rw_route_auth *rt,
		       const struct rw_frontend *f, const struct rw_config *cfg);
void auth_route_free(struct rw_route_auth *a);

/* The entry of the key table whose digest is this one (compared in constant time), or NULL. */
const struct rw_api_key *auth_find_key(const struct rw_consumers *cs,
				       const uint8_t digest[AUTH_DIGEST_LEN]);

/* The consumer named name, or NULL. */
const struct rw_consumer *auth_find_consumer(const struct rw_consumers *cs, const char *name,
					     size_t len);
/* The consumer whose Basic user is user, or NULL. */
const struct rw_consumer *auth_find_user(const struct rw_consumers *cs, const char *user,
					 size_t len);
/* The issuer of jwt_issuers whose iss the token has (the only one when there is one), or NULL
 * with why: JWT_MALFORMED (no payload to read iss from), JWT_BAD_ISSUER (none of them). */
const struct rw_jwt_issuer *auth_find_issuer(const struct rw_jwt_issuers *is, const char *token,
					     size_t len, enum jwt_result *why);

/* The stages (stage.h). authenticate: the route's methods in order (API key, JWT, Basic, client
 * certificate); the first credential that is valid names the request's identity, none presented
 * is a 401 auth_missing, none valid a 401 auth_failed (with WWW-Authenticate). It waits while a
 * Basic password is checked off the worker (auth_cancel forgets the exchange), and answers 503
 * auth_busy when too many checks wait. acl: the identity's groups pass deny_groups and
 * allow_groups, or 403. scopes: every scope of the route is in the identity's, or 403
 * insufficient_scope. */
stage_fn auth_authenticate, auth_acl, auth_scopes;
stage_cancel_fn auth_cancel;

#endif
