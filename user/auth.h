/* auth.h — who calls a route: the consumers of the configuration and the API-key table compiled
 * from them, sorted by the keys' SHA-256 for a binary search, and the auth keys of routes and
 * frontends (auth_config.c); the stages that authenticate a request by its API key and check the
 * route's groups (auth.c). */
#ifndef RINGWAY_AUTH_H
#define RINGWAY_AUTH_H

#include <stdbool.h>
#include <stdint.h>

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
};

/* How a route authenticates its callers (auth.methods bits). */
#define AUTH_API_KEY 1u

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
};

struct config_section;
struct loader;
struct rule;
extern const struct config_section auth_config_section;

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
/* After a route's keys are read (map: the route): the frontend's auth, allow_groups and
 * deny_groups where the route has none, the defaults, and the checks that need them all. */
void auth_route_finish(struct loader *ld, const struct yaml_node_s *map, struct rw_route_auth *rt,
		       const struct rw_route_auth *frontend);
void auth_route_free(struct rw_route_auth *a);

/* The entry of the key table whose digest is this one (compared in constant time), or NULL. */
const struct rw_api_key *auth_find_key(const struct rw_consumers *cs,
				       const uint8_t digest[AUTH_DIGEST_LEN]);

/* The value of the query parameter name (as written: not percent-decoded), or an empty slice. */
struct slice auth_query_param(struct slice query, const char *name);

/* The stages (stage.h): the API key of the request (header or query parameter) names its
 * consumer, or the request gets 401; the consumer's groups pass the route's ACL, or 403. */
stage_fn auth_api_key, auth_acl;

#endif
