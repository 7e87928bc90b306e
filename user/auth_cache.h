/* auth_cache.h — one worker's cache of authentication results, so that a credential seen again
 * costs a hash and a compare instead of a signature check or a password hash: a verified JWT (keyed
 * by the token's bytes, never served at or past its exp) or a Basic credential (keyed by the
 * SHA-256 of "user:password", valid or not, for a few minutes). An entry belongs to the
 * configuration generation it was made under: after a reload it is a miss. Direct-mapped by an
 * xxHash of the key with a per-process seed, bounded: a new entry replaces the one in its slot.
 * Single-threaded (the worker's), no locks. */
#ifndef RINGWAY_AUTH_CACHE_H
#define RINGWAY_AUTH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"

#define AUTH_CACHE_SLOTS 4096u

struct auth_cache;

struct auth_cache *auth_cache_new(void);
void auth_cache_free(struct auth_cache *c);

/* The identity cached for the key (of the method's kind) under generation gen, valid at now
 * (seconds since the epoch), copied into who: true. who->method 0 is a cached failure. */
bool auth_cache_get(struct auth_cache *c, uint32_t method, uint64_t gen, const void *key,
		    size_t len, int64_t now, struct auth_identity *who);
/* Caches who (method 0: a failure) for the key until expires (seconds since the epoch). Nothing
 * happens when memory is short. */
void auth_cache_put(struct auth_cache *c, uint32_t method, uint64_t gen, const void *key,
		    size_t len, int64_t expires, const struct auth_identity *who);

#endif
