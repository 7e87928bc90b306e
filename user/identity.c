/* identity.c — minting identity tokens (identity.h). A worker keeps the token it made for an
 * identity and an upstream in a direct-mapped cache keyed by an xxHash of them, and reuses it
 * while less than half its ttl has passed (the upstream then still has at least half the ttl to
 * use it), unless per_request asks for one per request. */
#include "identity.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "writer.h"

#define TOKEN_SLOTS 1024u
#define TOKEN_MAX   6144u /* header, claims (groups and scope at their largest) and signature */

struct token {
	uint64_t hash;
	uint64_t gen;
	uint32_t audience;          /* the upstream's index */
	int64_t reuse_until;        /* seconds since the epoch */
	uint32_t who_len;           /* of the key: name, groups, scope with their NULs */
	uint32_t token_len;
	char data[];                /* the key, then the token */
};

struct identity_minter {
	struct jwt_rng *rng;
	uint64_t seed;
	struct token *slots[TOKEN_SLOTS];
};

struct identity_minter *identity_minter_new(void)
{
	struct identity_minter *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	if (!(m->rng = jwt_rng_new())) {
		free(m);
		return NULL;
	}
	if (getrandom(&m->seed, sizeof m->seed, 0) != sizeof m->seed)
		m->seed = (uint64_t)(uintptr_t)m;
	return m;
}

void identity_minter_free(struct identity_minter *m)
{
	if (!m)
		return;
	for (uint32_t i = 0; i < TOKEN_SLOTS; i++)
		free(m->slots[i]);
	jwt_rng_free(m->rng);
	free(m);
}

/* The identity as one key: name, groups and scope, each with its NUL. */
static size_t who_key(const struct auth_identity *who, char *out)
{
	size_t a = strlen(who->name) + 1, b = strlen(who->groups) + 1, c = strlen(who->scope) + 1;
	memcpy(out, who->name, a);
	memcpy(out + a, who->groups, b);
	memcpy(out + a + b, who->scope, c);
	return a + b + c;
}

/* Signs a new token for who into out: its length, or 0. */
static size_t mint(struct identity_minter *m, const struct rw_identity_token *it,
		   const struct auth_identity *who, const char *audience, int64_t now, char *out,
		   size_t cap)
{
	char groups[AUTH_GROUPS_MAX];
	const char *list[AUTH_GROUPS_MAX / 2];
	size_t n = 0;
	memcpy(groups, who->groups, sizeof groups);
	for (char *p = groups; *p && n < sizeof list / sizeof list[0];) {
		list[n++] = p;
		char *comma = strchr(p, ',');
		if (!comma)
			break;
		*comma = '\0';
		p = comma + 1;
	}
	struct jwt_mint claims = {
		.issuer = it->issuer,
		.subject = who->name,
		.groups = list,
		.n_groups = n,
		.scope = who->scope,
		.audience = audience,
		.now = now,
		.ttl = it->ttl_ms / 1000,
	};
	return jwt_sign_es256(it->signer, m->rng, &claims, out, cap);
}

static void write_header(struct writer *o, const struct rw_identity_token *it, const char *token,
			 size_t len)
{
	w_str(o, it->header);
	w_put(o, ": ", 2);
	w_put(o, token, len);
	w_put(o, "\r\n", 2);
}

bool identity_write_token(struct identity_minter *m, const struct rw_identity_token *it,
			  uint64_t gen, const struct auth_identity *who, const char *audience,
			  uint32_t audience_index, struct writer *o)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	int64_t now = ts.tv_sec;
	char token[TOKEN_MAX];
	if (it->per_request) {
		size_t n = mint(m, it, who, audience, now, token, sizeof token);
		if (n)
			write_header(o, it, token, n);
		return n > 0;
	}
	char key[AUTH_NAME_MAX + AUTH_GROUPS_MAX + JWT_SCOPE_MAX];
	size_t key_len = who_key(who, key);
	uint64_t h = XXH3_64bits_withSeed(key, key_len, m->seed ^ gen) ^ audience_index;
	struct token **slot = &m->slots[h % TOKEN_SLOTS], *t = *slot;
	if (t && t->hash == h && t->gen == gen && t->audience == audience_index &&
	    now < t->reuse_until && t->who_len == key_len && !memcmp(t->data, key, key_len)) {
		write_header(o, it, t->data + key_len, t->token_len);
		return true;
	}
	size_t n = mint(m, it, who, audience, now, token, sizeof token);
	if (!n)
		return false;
	write_header(o, it, token, n);
	struct token *fresh = malloc(sizeof *fresh + key_len + n);
	if (!fresh)
		return true; /* sent, not kept */
	*fresh = (struct token){ .hash = h, .gen = gen, .audience = audience_index,
				 .reuse_until = now + (int64_t)(it->ttl_ms / 1000) / 2,
				 .who_len = (uint32_t)key_len, .token_len = (uint32_t)n };
	memcpy(fresh->data, key, key_len);
	memcpy(fresh->data + key_len, token, n);
	free(*slot);
	*slot = fresh;
	return true;
}
