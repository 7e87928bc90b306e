/* auth.h — who calls a route: the consumers of the configuration (auth_config.c: the consumers
 * section, its checks, and the API-key table compiled from it, sorted by the keys' SHA-256 for a
 * binary search). */
#ifndef RINGWAY_AUTH_H
#define RINGWAY_AUTH_H

#include <stdint.h>

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

struct config_section;
extern const struct config_section auth_config_section;

/* The entry of the key table whose digest is this one, or NULL. */
const struct rw_api_key *auth_find_key(const struct rw_consumers *cs,
				       const uint8_t digest[AUTH_DIGEST_LEN]);

#endif
