/* auth.c — the authentication and ACL stages of a route (auth.h). api_key: the key is read from
 * the route's header, or its query parameter when it has one, hashed with SHA-256 (wolfCrypt) and
 * looked up in the snapshot's key table; its consumer is remembered by the exchange (the proxy
 * tells the upstream who it is). A missing or unknown key is a 401 with WWW-Authenticate. acl: a
 * consumer in one of deny_groups, or in none of a non-empty allow_groups, is a 403. */
#include "auth.h"

#include <string.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/wolfcrypt/hash.h>

#include "exchange.h"
#include "shard.h"

#define AUTH_CHALLENGE "WWW-Authenticate: ApiKey realm=\"ringway\"\r\n"

/* The value of the first header named name, or an empty slice. */
static struct slice header_value(const struct http_request *req, const char *name)
{
	size_t len = strlen(name);
	for (unsigned i = 0; i < req->nheaders; i++)
		if (slice_ieq(req->headers[i].name, name, len))
			return req->headers[i].value;
	return (struct slice){ 0 };
}

struct slice auth_query_param(struct slice query, const char *name)
{
	size_t len = strlen(name);
	const char *p = query.p, *end = query.p + query.len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - p) > len && p[len] == '=' && !memcmp(p, name, len))
			return slice_make(p + len + 1, (size_t)(stop - p) - len - 1);
		p = stop + 1;
	}
	return (struct slice){ 0 };
}

enum stage_result auth_api_key(struct exchange *x, const struct stage *st)
{
	const struct rw_route_auth *a = &x->route->auth;
	struct slice key = header_value(&x->req, a->key_header);
	if (!key.len && a->key_query)
		key = auth_query_param(x->req.query, a->key_query);
	if (!key.len) {
		exchange_refuse(x, RW_AUTH_MISSING, AUTH_CHALLENGE, false);
		return STAGE_ANSWERED;
	}
	uint8_t digest[AUTH_DIGEST_LEN];
	const struct rw_api_key *k = NULL;
	if (wc_Sha256Hash((const byte *)key.p, key.len, digest) == 0)
		k = auth_find_key(&x->snap->cfg->consumers, digest);
	if (!k) {
		exchange_refuse(x, RW_AUTH_FAILED, AUTH_CHALLENGE, false);
		return STAGE_ANSWERED;
	}
	x->consumer = k->consumer;
	return STAGE_CONTINUE;
}

static bool in_groups(const struct rw_consumer *c, char *const *groups, uint32_t n)
{
	for (uint32_t i = 0; i < c->ngroups; i++)
		for (uint32_t j = 0; j < n; j++)
			if (!strcmp(c->groups[i], groups[j]))
				return true;
	return false;
}

enum stage_result auth_acl(struct exchange *x, const struct stage *st)
{
	const struct rw_route_auth *a = &x->route->auth;
	const struct rw_consumer *c = x->consumer;
	if (!c || in_groups(c, a->deny_groups, a->ndeny) ||
	    (a->nallow && !in_groups(c, a->allow_groups, a->nallow))) {
		exchange_refuse(x, RW_ACL_DENIED, NULL, false);
		return STAGE_ANSWERED;
	}
	return STAGE_CONTINUE;
}
