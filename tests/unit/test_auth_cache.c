/* test_auth_cache.c — the worker's cache of verified credentials (auth_cache.h): what was put is
 * found by the same key, method and generation until it expires, and never otherwise; a slot
 * holds one entry; failures are cached as failures. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "auth_cache.h"

static struct auth_identity identity(const char *name, const char *groups, const char *scope)
{
	struct auth_identity who = { .method = AUTH_JWT };
	strcpy(who.name, name);
	strcpy(who.groups, groups);
	strcpy(who.scope, scope);
	return who;
}

Test(auth_cache, found_by_key_method_and_generation_until_expiry)
{
	struct auth_cache *c = auth_cache_new();
	cr_assert_not_null(c);
	struct auth_identity who = identity("bob", "a,b", "read write"), got;
	auth_cache_put(c, AUTH_JWT, 7, "token-1", 7, 1000, &who);
	memset(&got, 'x', sizeof got);
	cr_assert(auth_cache_get(c, AUTH_JWT, 7, "token-1", 7, 999, &got));
	cr_assert_eq(got.method, AUTH_JWT);
	cr_assert_str_eq(got.name, "bob");
	cr_assert_str_eq(got.groups, "a,b");
	cr_assert_str_eq(got.scope, "read write");
	cr_assert(!auth_cache_get(c, AUTH_JWT, 7, "token-1", 7, 1000, &got), "served at its expiry");
	cr_assert(!auth_cache_get(c, AUTH_JWT, 8, "token-1", 7, 999, &got), "served after a reload");
	cr_assert(!auth_cache_get(c, AUTH_BASIC, 7, "token-1", 7, 999, &got), "another method's");
	cr_assert(!auth_cache_get(c, AUTH_JWT, 7, "token-2", 7, 999, &got));
	cr_assert(!auth_cache_get(c, AUTH_JWT, 7, "token-", 6, 999, &got));
	auth_cache_free(c);
}

Test(auth_cache, failures_are_cached_as_failures)
{
	struct auth_cache *c = auth_cache_new();
	struct auth_identity none = { 0 }, got;
	auth_cache_put(c, AUTH_BASIC, 1, "digest", 6, 50, &none);
	cr_assert(auth_cache_get(c, AUTH_BASIC, 1, "digest", 6, 10, &got));
	cr_assert_eq(got.method, 0);
	cr_assert_str_eq(got.name, "");
	auth_cache_free(c);
}

Test(auth_cache, bounded_and_replacing)
{
	struct auth_cache *c = auth_cache_new();
	struct auth_identity who = identity("n", "", ""), got;
	char key[32];
	/* many more keys than slots: memory stays bounded, the latest ones are found */
	for (unsigned i = 0; i < 4 * AUTH_CACHE_SLOTS; i++) {
		int n = snprintf(key, sizeof key, "key-%u", i);
		auth_cache_put(c, AUTH_JWT, 1, key, (size_t)n, 100, &who);
	}
	int n = snprintf(key, sizeof key, "key-%u", 4 * AUTH_CACHE_SLOTS - 1);
	cr_assert(auth_cache_get(c, AUTH_JWT, 1, key, (size_t)n, 1, &got));
	unsigned found = 0;
	for (unsigned i = 0; i < 4 * AUTH_CACHE_SLOTS; i++) {
		n = snprintf(key, sizeof key, "key-%u", i);
		found += auth_cache_get(c, AUTH_JWT, 1, key, (size_t)n, 1, &got);
	}
	cr_assert_leq(found, AUTH_CACHE_SLOTS);
	cr_assert_gt(found, AUTH_CACHE_SLOTS / 2);
	/* putting the same key again replaces its entry */
	struct auth_identity other = identity("m", "g", "");
	auth_cache_put(c, AUTH_JWT, 1, "k", 1, 100, &who);
	auth_cache_put(c, AUTH_JWT, 1, "k", 1, 100, &other);
	cr_assert(auth_cache_get(c, AUTH_JWT, 1, "k", 1, 1, &got));
	cr_assert_str_eq(got.name, "m");
	auth_cache_free(c);
}
