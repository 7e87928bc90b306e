/* router.c — route lookup. Routes are kept in one array sorted by precedence (exact host, wildcard
 * host, any host; then exact path, then longer prefix; then file order), so the first route that
 * matches host, path and method is the answer. Prefixes match whole path segments. */
#include "router.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct router {
	uint32_t n;
	const struct rw_route *sorted[];
};

static int host_tier(const struct rw_route *r)
{
	if (!r->host)
		return 2;
	return r->host[0] == '*' ? 1 : 0;
}

static int route_cmp(const void *a, const void *b)
{
	const struct rw_route *x = *(const struct rw_route *const *)a;
	const struct rw_route *y = *(const struct rw_route *const *)b;
	int tx = host_tier(x), ty = host_tier(y);
	if (tx != ty)
		return tx - ty;
	if (x->path_exact != y->path_exact)
		return x->path_exact ? -1 : 1;
	if (x->path_len != y->path_len)
		return x->path_len > y->path_len ? -1 : 1;
	return (int)x->index - (int)y->index;
}

struct router *router_build(struct rw_route *routes, uint32_t nroutes)
{
	struct router *r = malloc(sizeof *r + nroutes * sizeof r->sorted[0]);
	if (!r)
		return NULL;
	r->n = nroutes;
	for (uint32_t i = 0; i < nroutes; i++)
		r->sorted[i] = &routes[i];
	qsort(r->sorted, nroutes, sizeof r->sorted[0], route_cmp);
	return r;
}

void router_free(struct router *r)
{
	free(r);
}

/* The host without its port: "example.com:8080" -> "example.com", "[::1]:80" -> "[::1]". */
static struct slice host_without_port(struct slice h)
{
	for (uint32_t i = h.len; i > 0; i--) {
		char c = h.p[i - 1];
		if (c == ':')
			return slice_make(h.p, i - 1);
		if (c < '0' || c > '9')
			break;
	}
	return h;
}

static bool host_matches(const char *pattern, struct slice host)
{
	if (!pattern)
		return true;
	size_t plen = strlen(pattern);
	if (pattern[0] == '*') { /* "*.example.com": one or more labels before ".example.com" */
		size_t slen = plen - 1;
		return host.len > slen && strncasecmp(host.p + host.len - slen, pattern + 1, slen) == 0;
	}
	return host.len == plen && strncasecmp(host.p, pattern, plen) == 0;
}

static bool path_matches(const struct rw_route *r, struct slice path)
{
	if (r->path_exact)
		return path.len == r->path_len && memcmp(path.p, r->path, r->path_len) == 0;
	if (path.len < r->path_len || memcmp(path.p, r->path, r->path_len) != 0)
		return false;
	return path.len == r->path_len || r->path[r->path_len - 1] == '/' ||
	       path.p[r->path_len] == '/';
}

bool router_host_in(char *const *patterns, uint32_t n, struct slice host)
{
	struct slice bare = host_without_port(host);
	for (uint32_t i = 0; i < n; i++)
		if (host_matches(patterns[i], bare))
			return true;
	return false;
}

const struct rw_route *router_match(const struct router *r, struct slice host, struct slice path,
				    uint8_t method_id, uint32_t *allow)
{
	struct slice bare = host_without_port(host);
	uint32_t want = 1u << method_id, seen = 0;
	for (uint32_t i = 0; i < r->n; i++) {
		const struct rw_route *rt = r->sorted[i];
		if (!host_matches(rt->host, bare) || !path_matches(rt, path))
			continue;
		if (rt->methods == 0 || (rt->methods & want))
			return rt;
		seen |= rt->methods;
	}
	*allow = seen;
	return NULL;
}
