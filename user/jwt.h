/* jwt.h — owns JSON Web Tokens, pure: a key set loaded from a JWKS (keys by kid, each checked and
 * prepared once), the verification of a compact JWS token against it and a policy (algorithm
 * allowed for the key, signature, exp/nbf/iat with a leeway, iss, aud) with the claims a gateway
 * passes on copied into fixed-size fields; and the gateway's own ES256 identity tokens: a signer
 * (a P-256 key from a PEM file or generated), the tokens it mints and its public JWKS.
 *
 * A key set and a signer are immutable after loading: any number of threads verify against one key
 * set, or sign with one signer, at the same time. Each signing thread brings its own jwt_rng. */
#ifndef RINGWAY_JWT_H
#define RINGWAY_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JWT_MAX_TOKEN     8192u /* a longer token is refused before it is decoded */
#define JWT_MAX_DEPTH     8u    /* JSON nesting in a token's header and payload */
#define JWT_KID_MAX       64u   /* with the NUL */
#define JWT_CONSUMER_MAX  128u
#define JWT_GROUPS_MAX    64u
#define JWT_GROUP_MAX     64u
#define JWT_SCOPE_MAX     512u

enum jwt_alg {
	JWT_HS256, JWT_HS384, JWT_HS512,
	JWT_RS256, JWT_RS384, JWT_RS512,
	JWT_PS256,
	JWT_ES256, JWT_ES384,
	JWT_EDDSA,
	JWT_ALG_COUNT
};
#define JWT_ALG_BIT(a) (1u << (a))
#define JWT_ALGS_ALL   ((1u << JWT_ALG_COUNT) - 1)

/* "HS256", …, "EdDSA". */
const char *jwt_alg_name(enum jwt_alg alg);
/* The algorithm named exactly `name`; false for any other name ("none" included). */
bool jwt_alg_parse(const char *name, size_t len, enum jwt_alg *alg);

enum jwt_result {
	JWT_OK,
	JWT_MALFORMED,      /* not three base64url parts of JSON objects, or a claim of the wrong type */
	JWT_BAD_ALG,        /* none, unknown, not allowed by the policy, or not fitting the key */
	JWT_UNKNOWN_KID,
	JWT_BAD_SIGNATURE,
	JWT_EXPIRED,
	JWT_NOT_YET_VALID,  /* nbf, or iat, after now (beyond the leeway) */
	JWT_BAD_ISSUER,
	JWT_BAD_AUDIENCE,
};
/* "ok", "malformed", "bad_alg", … (for logs). */
const char *jwt_result_name(enum jwt_result r);

/* ---- key sets --------------------------------------------------------------------------------- */

struct jwks;

/* A JWKS ({"keys":[…]}) from a file or a string. Keys: kty RSA (n, e; 2048 to 4096 bits), EC
 * (crv P-256 or P-384, x, y), OKP (crv Ed25519, x), oct (k, at least 32 bytes); an optional alg
 * pins the key to that algorithm; kid is needed when the set has more than one key; keys with a
 * "use" other than "sig" are left out. NULL on error, with a message in err ("keys[2]: kty EC
 * needs crv P-256 or P-384"). */
struct jwks *jwks_load_file(const char *path, char *err, size_t errlen);
struct jwks *jwks_parse(const char *json, size_t len, char *err, size_t errlen);
void jwks_free(struct jwks *set);
/* The keys loaded (those for signatures). */
size_t jwks_count(const struct jwks *set);

/* ---- verification ----------------------------------------------------------------------------- */

struct jwt_policy {
	const char *issuer;               /* NULL: iss not checked */
	const char *const *audiences;     /* one of them must be in aud; none: aud not checked */
	size_t n_audiences;
	int64_t leeway;                   /* seconds of clock skew allowed on exp, nbf and iat */
	uint32_t algs;                    /* JWT_ALG_BIT()s allowed (0 allows none) */
	bool require_exp;                 /* a token without exp is malformed */
	const char *consumer_claim;       /* the string claim naming the consumer; NULL: "sub" */
	const char *groups_claim;         /* array of strings or space-separated string; NULL: none */
};

struct jwt_claims {
	enum jwt_alg alg;
	char kid[JWT_KID_MAX];                 /* "" when the token has none */
	char consumer[JWT_CONSUMER_MAX];       /* "" when the token lacks the claim */
	char groups[JWT_GROUPS_MAX][JWT_GROUP_MAX];
	unsigned n_groups;
	char scope[JWT_SCOPE_MAX];             /* the scope claim, "" when absent */
	bool has_exp, has_iat;
	int64_t exp, iat;                      /* seconds since the epoch */
};

/* Verifies token[0..len) against the key set and the policy at time `now` (seconds since the
 * epoch). On JWT_OK `out` holds the claims; otherwise `why` (when whylen > 0) says what failed.
 * A value too long for its field in jwt_claims, or more than JWT_GROUPS_MAX groups, is malformed
 * (never cut). Pure and reentrant: no allocation but jansson's while it parses. */
enum jwt_result jwt_verify(const struct jwks *set, const char *token, size_t len,
                           const struct jwt_policy *policy, int64_t now, struct jwt_claims *out,
                           char *why, size_t whylen);

/* The token's iss claim into out (NUL-terminated), read without verifying anything, to choose
 * the key set and policy to verify it with: JWT_OK; JWT_MALFORMED when the token is not parts of
 * base64url with a JSON object as payload; JWT_BAD_ISSUER when it has no string iss shorter than
 * cap. */
enum jwt_result jwt_peek_issuer(const char *token, size_t len, char *out, size_t cap);

/* ---- minting ---------------------------------------------------------------------------------- */

/* One thread's random generator (wolfCrypt's DRBG), for signatures and token ids. */
struct jwt_rng;
struct jwt_rng *jwt_rng_new(void);
void jwt_rng_free(struct jwt_rng *rng);

struct jwt_signer;

/* An EC P-256 private key from a PEM file (SEC1 "EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY"). */
struct jwt_signer *jwt_signer_load_pem(const char *path, char *err, size_t errlen);
/* A fresh P-256 key. */
struct jwt_signer *jwt_signer_generate(struct jwt_rng *rng, char *err, size_t errlen);
void jwt_signer_free(struct jwt_signer *signer);
/* The key's id: its RFC 7638 JWK thumbprint (SHA-256, base64url, 43 characters). */
const char *jwt_signer_kid(const struct jwt_signer *signer);

/* What one identity token says. Strings must be UTF-8; NULL or "" leaves scope and audience out. */
struct jwt_mint {
	const char *issuer;
	const char *subject;
	const char *const *groups;
	size_t n_groups;
	const char *scope;
	const char *audience;
	int64_t now;         /* iat */
	int64_t ttl;         /* exp = now + ttl */
};

/* Writes the ES256 token {"alg":"ES256","typ":"JWT","kid":…}.{iss,sub,aud,groups,scope,iat,exp,
 * jti (128 random bits in hex)}.signature into out and NUL-terminates it. Returns its length, or 0
 * when it does not fit in cap, a string is not UTF-8 or signing failed. */
size_t jwt_sign_es256(const struct jwt_signer *signer, struct jwt_rng *rng,
                      const struct jwt_mint *mint, char *out, size_t cap);

/* The signer's public key as a JWKS ({"keys":[{"kty":"EC","crv":"P-256",…,"use":"sig"}]}),
 * NUL-terminated; its length, or 0 when it does not fit. */
size_t jwt_signer_jwks(const struct jwt_signer *signer, char *out, size_t cap);

#endif
