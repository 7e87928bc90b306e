/* fuzz_jwt.c — libFuzzer harness of user/jwt.c. An input starting with '{' is loaded as a JWKS;
 * any other is verified as a token against a key set with a key of every kind (oct, RSA, EC P-256
 * and P-384, Ed25519: tests/unit/jwt_vectors.h), at the vectors' time, with every algorithm
 * allowed, and its issuer peeked at (jwt_peek_issuer). Checked invariants, abort() on violation:
 * a peeked issuer is NUL-terminated within its buffer; the result is one of the enum's; `why` is
 * empty exactly when the token is accepted; an accepted token's algorithm fits the key its kid
 * names, and its claims are NUL-terminated within their fields; a key set that loads has keys and
 * its load error is empty, one that does not has a message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jwt.h"
#include "../unit/jwt_vectors.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

static struct jwks *keys;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[256];
	keys = jwks_parse(JV_JWKS, strlen(JV_JWKS), err, sizeof err);
	check(keys != NULL);
	return 0;
}

static bool terminated(const char *s, size_t cap)
{
	return memchr(s, '\0', cap) != NULL;
}

static void fuzz_token(const char *token, size_t len)
{
	static const char *const audiences[] = { JV_AUD, "other" };
	struct jwt_policy policy = {
		.issuer = JV_ISS, .audiences = audiences, .n_audiences = 2, .leeway = 60,
		.algs = JWT_ALGS_ALL, .groups_claim = "groups",
	};
	struct jwt_claims c;
	char why[160];
	memset(why, 'x', sizeof why);
	char iss[64];
	memset(iss, 'x', sizeof iss);
	enum jwt_result peeked = jwt_peek_issuer(token, len, iss, sizeof iss);
	check(peeked == JWT_OK || peeked == JWT_MALFORMED || peeked == JWT_BAD_ISSUER);
	if (peeked == JWT_OK) /* a string iss that fits: terminated */
		check(terminated(iss, sizeof iss));
	enum jwt_result r = jwt_verify(keys, token, len, &policy, JV_NOW, &c, why, sizeof why);
	check(r >= JWT_OK && r <= JWT_BAD_AUDIENCE);
	check(terminated(why, sizeof why) && (r == JWT_OK) == (why[0] == '\0'));
	if (r != JWT_OK)
		return;
	check(c.alg < JWT_ALG_COUNT && terminated(c.kid, sizeof c.kid));
	check(terminated(c.consumer, sizeof c.consumer) && terminated(c.scope, sizeof c.scope));
	check(c.n_groups <= JWT_GROUPS_MAX);
	for (unsigned i = 0; i < c.n_groups; i++)
		check(terminated(c.groups[i], sizeof c.groups[i]) && c.groups[i][0] != '\0');
	/* the kid names the key the signature was checked with: its kind fixes the algorithms */
	static const struct { const char *kid; uint32_t algs; } fit[] = {
		{ "hs", JWT_ALG_BIT(JWT_HS256) | JWT_ALG_BIT(JWT_HS384) | JWT_ALG_BIT(JWT_HS512) },
		{ "rsa", JWT_ALG_BIT(JWT_RS256) | JWT_ALG_BIT(JWT_RS384) | JWT_ALG_BIT(JWT_RS512) |
			 JWT_ALG_BIT(JWT_PS256) },
		{ "rsa-rs256", JWT_ALG_BIT(JWT_RS256) },
		{ "ec256", JWT_ALG_BIT(JWT_ES256) },
		{ "ec384", JWT_ALG_BIT(JWT_ES384) },
		{ "ed", JWT_ALG_BIT(JWT_EDDSA) },
	};
	bool known = false;
	for (size_t i = 0; i < sizeof fit / sizeof fit[0]; i++)
		if (strcmp(c.kid, fit[i].kid) == 0) {
			check(fit[i].algs & JWT_ALG_BIT(c.alg));
			known = true;
		}
	check(known);
}

static void fuzz_jwks(const char *json, size_t len)
{
	char err[160];
	memset(err, 'x', sizeof err);
	err[0] = '\0';
	struct jwks *set = jwks_parse(json, len, err, sizeof err);
	check(terminated(err, sizeof err));
	check(set ? err[0] == '\0' && jwks_count(set) > 0 : err[0] != '\0');
	jwks_free(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 0 && data[0] == '{')
		fuzz_jwks((const char *)data, size);
	else
		fuzz_token((const char *)data, size);
	return 0;
}
