/* auth_cache.c — the per-worker cache of authentication results (auth_cache.h). An entry is one
 * allocation: its key's bytes, then the identity's three strings packed. */
#include "auth_cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct entry {
	uint64_t hash;
	uint64_t gen;
	int64_t expires;
	uint32_t kind;                  /* the AUTH_* method of the key */
	uint32_t method;                /* the identity's (0: a cached failure) */
	uint32_t key_len;
	uint16_t name_len, groups_len, scope_len;
	char data[];                    /* key, name, groups, scope (no NULs) */
};

struct auth_cache {
	uint64_t seed;
	struct entry *slots[AUTH_CACHE_SLOTS];
};

struct auth_cache *auth_cache_new(void)
{
	struct auth_cache *c = calloc(1, sizeof *c);
	if (c && getrandom(&c->seed, sizeof c->seed, 0) != sizeof c->seed)
		c->seed = (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
	return c;
}

void auth_cache_free(struct auth_cache *c)
{
	if (!c)
		return;
	for (uint32_t i = 0; i < AUTH_CACHE_SLOTS; i++)
		free(c->slots[i]);
	free(c);
}

static uint64_t key_hash(const struct auth_cache *c, uint32_t method, const void *key, size_t len)
{
	return XXH3_64bits_withSeed(key, len, c->seed + method);
}

bool auth_cache_get(struct auth_cache *c, uint32_t method, uint64_t gen, const void *key,
		    size_t len, int64_t now, struct auth_identity *who)
{
	uint64_t h = key_hash(c, method, key, len);
	struct entry *e = c->slots[h % AUTH_CACHE_SLOTS];
	if (!e || e->hash != h || e->gen != gen || e->kind != method || e->key_len != len ||
	    now >= e->expires || memcmp(e->data, key, len))
		return false;
	const char *p = e->data + e->key_len;
	who->method = e->method;
	memcpy(who->name, p, e->name_len);
	who->name[e->name_len] = '\0';
	p += e->name_len;
	memcpy(who->groups, p, e->groups_len);
	who->groups[e->groups_len] = '\0';
	p += e->groups_len;
	memcpy(who->scope, p, e->scope_len);
	who->scope[e->scope_len] = '\0';
	return true;
}

void auth_cache_put(struct auth_cache *c, uint32_t method, uint64_t gen, const void *key,
		    size_t len, int64_t expires, const struct auth_identity *who)
{
	size_t name_len = strlen(who->name), groups_len = strlen(who->groups);
	size_t scope_len = strlen(who->scope);
	if (len > UINT32_MAX)
		return;
	struct entry *e = malloc(sizeof *e + len + name_len + groups_len + scope_len);
	if (!e)
		return;
	uint64_t h = key_hash(c, method, key, len);
	*e = (struct entry){ .hash = h, .gen = gen, .expires = expires, .kind = method,
			     .method = who->method, .key_len = (uint32_t)len,
			     .name_len = (uint16_t)name_len, .groups_len = (uint16_t)groups_len,
			     .scope_len = (uint16_t)scope_len };
	char *p = e->data;
	memcpy(p, key, len);
	memcpy(p += len, who->name, name_len);
	memcpy(p += name_len, who->groups, groups_len);
	memcpy(p + groups_len, who->scope, scope_len);
	struct entry **slot = &c->slots[h % AUTH_CACHE_SLOTS];
	free(*slot);
	*slot = e;
}
