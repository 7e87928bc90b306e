/* test_jwt.c — jwt: tokens of every algorithm signed by PyJWT and python3-cryptography
 * (jwt_vectors.h) accepted, every kind of bad token refused with its reason, JWKS load errors,
 * verification from several threads on one key set, and the ES256 identity tokens minted here
 * verified by jwt_verify and by PyJWT. */
#include <criterion/criterion.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "jwt.h"
#include "jwt_vectors.h"

static struct jwks *keys;
static const char *const AUDIENCES[] = { "other-service", JV_AUD };

static struct jwt_policy policy(void)
{
	return (struct jwt_policy){
		.issuer = JV_ISS, .audiences = AUDIENCES, .n_audiences = 2, .leeway = 0,
		.algs = JWT_ALGS_ALL, .require_exp = true, .groups_claim = "groups",
	};
}

static void load_keys(void)
{
	char err[256] = "";
	keys = jwks_parse(JV_JWKS, strlen(JV_JWKS), err, sizeof err);
	cr_assert(keys, "JWKS: %s", err);
}

static void free_keys(void)
{
	jwks_free(keys);
}

TestSuite(jwt, .init = load_keys, .fini = free_keys);

static enum jwt_result verify_with(const struct jwks *set, const char *token,
				   const struct jwt_policy *p, struct jwt_claims *c)
{
	char why[200];
	enum jwt_result r = jwt_verify(set, token, strlen(token), p, JV_NOW, c, why, sizeof why);
	cr_assert((r == JWT_OK) == (why[0] == '\0'), "result %s, why \"%s\"", jwt_result_name(r),
		  why);
	return r;
}

static void expect(const char *token, const struct jwt_policy *p, enum jwt_result want)
{
	struct jwt_claims c;
	char why[200];
	enum jwt_result r = jwt_verify(keys, token, strlen(token), p, JV_NOW, &c, why, sizeof why);
	cr_expect_eq(r, want, "%s instead of %s (%s) for %.60s…", jwt_result_name(r),
		     jwt_result_name(want), why, token);
}

static void accepted(const char *token, enum jwt_alg alg, const char *kid)
{
	struct jwt_policy p = policy();
	struct jwt_claims c;
	cr_assert_eq(verify_with(keys, token, &p, &c), JWT_OK, "%s", jwt_alg_name(alg));
	cr_expect_eq(c.alg, alg);
	cr_expect_str_eq(c.kid, kid);
	cr_expect_str_eq(c.consumer, "alice");
	cr_expect_eq(c.n_groups, 2);
	cr_expect_str_eq(c.groups[0], "admin");
	cr_expect_str_eq(c.groups[1], "ops");
	cr_expect_str_eq(c.scope, "read write");
	cr_expect(c.has_exp && c.has_iat);
	cr_expect_eq(c.exp, JV_NOW + 2600);
	cr_expect_eq(c.iat, JV_NOW - 1000);
}

Test(jwt, every_algorithm_from_pyjwt)
{
	accepted(JV_OK_HS256, JWT_HS256, "hs");
	accepted(JV_OK_HS384, JWT_HS384, "hs");
	accepted(JV_OK_HS512, JWT_HS512, "hs");
	accepted(JV_OK_RS256, JWT_RS256, "rsa");
	accepted(JV_OK_RS384, JWT_RS384, "rsa");
	accepted(JV_OK_RS512, JWT_RS512, "rsa");
	accepted(JV_OK_PS256, JWT_PS256, "rsa");
	accepted(JV_OK_ES256, JWT_ES256, "ec256");
	accepted(JV_OK_ES384, JWT_ES384, "ec384");
	accepted(JV_OK_EDDSA, JWT_EDDSA, "ed");
	accepted(JV_OK_PINNED_RS256, JWT_RS256, "rsa-rs256");
	accepted(JV_OK_GROUPS_STRING, JWT_ES256, "ec256");
	accepted(JV_OK_AUD_ARRAY, JWT_ES256, "ec256");
}

Test(jwt, algorithm_names)
{
	enum jwt_alg a;
	for (unsigned i = 0; i < JWT_ALG_COUNT; i++) {
		const char *name = jwt_alg_name((enum jwt_alg)i);
		cr_assert(jwt_alg_parse(name, strlen(name), &a));
		cr_expect_eq(a, i);
	}
	cr_expect_not(jwt_alg_parse("none", 4, &a));
	cr_expect_not(jwt_alg_parse("HS25", 4, &a));
	cr_expect_not(jwt_alg_parse("hs256", 5, &a));
}

Test(jwt, times_with_and_without_leeway)
{
	struct jwt_policy p = policy();
	expect(JV_EXPIRED, &p, JWT_EXPIRED);
	expect(JV_NOT_YET_VALID, &p, JWT_NOT_YET_VALID);
	expect(JV_ISSUED_IN_FUTURE, &p, JWT_NOT_YET_VALID);
	expect(JV_NO_EXP, &p, JWT_MALFORMED);
	expect(JV_EXP_NOT_NUMBER, &p, JWT_MALFORMED);
	p.leeway = 29; /* each is 30 s off */
	expect(JV_EXPIRED, &p, JWT_EXPIRED);
	expect(JV_NOT_YET_VALID, &p, JWT_NOT_YET_VALID);
	p.leeway = 31;
	expect(JV_EXPIRED, &p, JWT_OK);
	expect(JV_NOT_YET_VALID, &p, JWT_OK);
	expect(JV_ISSUED_IN_FUTURE, &p, JWT_OK);
	p.require_exp = false;
	expect(JV_NO_EXP, &p, JWT_OK);
}

Test(jwt, issuer_and_audience)
{
	struct jwt_policy p = policy();
	expect(JV_WRONG_ISS, &p, JWT_BAD_ISSUER);
	expect(JV_NO_ISS, &p, JWT_BAD_ISSUER);
	expect(JV_NO_AUD, &p, JWT_BAD_AUDIENCE);
	expect(JV_WRONG_AUD, &p, JWT_BAD_AUDIENCE);
	expect(JV_WRONG_AUD_ARRAY, &p, JWT_BAD_AUDIENCE);
	expect(JV_OK_AUD_ARRAY, &p, JWT_OK);
	p.audiences = &AUDIENCES[0];
	p.n_audiences = 1; /* "other-service" only */
	expect(JV_OK_ES256, &p, JWT_BAD_AUDIENCE);
	p.n_audiences = 0;
	p.issuer = NULL;
	expect(JV_WRONG_ISS, &p, JWT_OK);
	expect(JV_NO_AUD, &p, JWT_OK);
	expect(JV_WRONG_AUD_ARRAY, &p, JWT_OK);
}

Test(jwt, keys_and_algorithms)
{
	struct jwt_policy p = policy();
	expect(JV_UNKNOWN_KID, &p, JWT_UNKNOWN_KID);
	expect(JV_ENC_KEY_KID, &p, JWT_UNKNOWN_KID); /* use: enc keys are left out */
	expect(JV_SINGLE_KEY_NO_KID, &p, JWT_UNKNOWN_KID);
	expect(JV_ALG_NONE, &p, JWT_BAD_ALG);
	expect(JV_ALG_NONE_KID, &p, JWT_BAD_ALG);
	expect(JV_ALG_UNKNOWN, &p, JWT_BAD_ALG);
	expect(JV_HS256_WITH_RSA_KEY, &p, JWT_BAD_ALG); /* HMAC keyed with the RSA public key */
	expect(JV_RS256_WITH_EC_KID, &p, JWT_BAD_ALG);
	expect(JV_ES256_WITH_P384_KID, &p, JWT_BAD_ALG);
	expect(JV_PINNED_KEY_OTHER_ALG, &p, JWT_BAD_ALG);
	p.algs = JWT_ALG_BIT(JWT_ES256) | JWT_ALG_BIT(JWT_EDDSA);
	expect(JV_OK_ES256, &p, JWT_OK);
	expect(JV_OK_EDDSA, &p, JWT_OK);
	expect(JV_OK_RS256, &p, JWT_BAD_ALG);
	expect(JV_OK_HS256, &p, JWT_BAD_ALG);
	p.algs = 0;
	expect(JV_OK_ES256, &p, JWT_BAD_ALG);
}

Test(jwt, one_key_without_kid)
{
	char err[256];
	struct jwks *one = jwks_parse(JV_SINGLE_JWKS, strlen(JV_SINGLE_JWKS), err, sizeof err);
	cr_assert(one, "%s", err);
	cr_expect_eq(jwks_count(one), 1);
	struct jwt_policy p = policy();
	struct jwt_claims c;
	cr_expect_eq(verify_with(one, JV_SINGLE_KEY_NO_KID, &p, &c), JWT_OK);
	cr_expect_str_eq(c.kid, "");
	cr_expect_eq(verify_with(one, JV_OK_ES256, &p, &c), JWT_UNKNOWN_KID); /* kid "ec256" */
	jwks_free(one);
}

Test(jwt, signatures)
{
	struct jwt_policy p = policy();
	expect(JV_TAMPERED_PAYLOAD, &p, JWT_BAD_SIGNATURE);
	expect(JV_TAMPERED_SIGNATURE, &p, JWT_BAD_SIGNATURE);
	expect(JV_PS256_LONG_SALT, &p, JWT_BAD_SIGNATURE); /* PSS salt must be the hash's length */
	expect(JV_ES256_SIG_SHORT, &p, JWT_BAD_SIGNATURE);
}

Test(jwt, malformed_tokens)
{
	struct jwt_policy p = policy();
	expect(JV_TRUNCATED, &p, JWT_MALFORMED);
	expect(JV_TWO_PARTS, &p, JWT_MALFORMED);
	expect(JV_FOUR_PARTS, &p, JWT_MALFORMED);
	expect(JV_BAD_BASE64, &p, JWT_MALFORMED);
	expect(JV_PADDED_BASE64, &p, JWT_MALFORMED);
	expect(JV_PAYLOAD_NOT_OBJECT, &p, JWT_MALFORMED);
	expect(JV_PAYLOAD_NOT_JSON, &p, JWT_MALFORMED);
	expect(JV_HEADER_NOT_OBJECT, &p, JWT_MALFORMED);
	expect(JV_DUPLICATE_CLAIM, &p, JWT_MALFORMED);
	expect(JV_DEEP_PAYLOAD, &p, JWT_MALFORMED);
	expect(JV_CRIT_HEADER, &p, JWT_MALFORMED);
	expect(JV_TOO_MANY_GROUPS, &p, JWT_MALFORMED);
	expect(JV_LONG_SUB, &p, JWT_MALFORMED);
	expect(JV_SUB_NOT_STRING, &p, JWT_MALFORMED);
	expect("", &p, JWT_MALFORMED);
	expect("..", &p, JWT_MALFORMED);
}

Test(jwt, every_prefix_refused)
{
	struct jwt_policy p = policy();
	struct jwt_claims c;
	size_t len = strlen(JV_OK_ES256);
	for (size_t n = 0; n < len; n++)
		cr_assert_neq(jwt_verify(keys, JV_OK_ES256, n, &p, JV_NOW, &c, NULL, 0), JWT_OK,
			      "prefix of %zu bytes", n);
}

Test(jwt, huge_token)
{
	size_t len = JWT_MAX_TOKEN + 1;
	char *big = malloc(len);
	memset(big, 'A', len);
	big[100] = big[200] = '.';
	struct jwt_policy p = policy();
	struct jwt_claims c;
	char why[200];
	cr_expect_eq(jwt_verify(keys, big, len, &p, JV_NOW, &c, why, sizeof why), JWT_MALFORMED);
	cr_expect(strstr(why, "8192"), "%s", why);
	free(big);
}

Test(jwt, consumer_claim)
{
	struct jwt_policy p = policy();
	struct jwt_claims c;
	p.consumer_claim = "iss";
	cr_assert_eq(verify_with(keys, JV_OK_ES256, &p, &c), JWT_OK);
	cr_expect_str_eq(c.consumer, JV_ISS);
	p.consumer_claim = "email";
	p.groups_claim = NULL;
	cr_assert_eq(verify_with(keys, JV_OK_ES256, &p, &c), JWT_OK);
	cr_expect_str_eq(c.consumer, "");
	cr_expect_eq(c.n_groups, 0);
}

/* ---- key set errors --------------------------------------------------------------------------- */

static void load_error(const char *json, const char *want)
{
	char err[256] = "";
	struct jwks *set = jwks_parse(json, strlen(json), err, sizeof err);
	cr_expect_null(set, "loaded: %s", json);
	jwks_free(set);
	cr_expect_str_eq(err, want, "for %s", json);
}

#define P256_X "\"x\":\"iK7r06C48ol-17A6xKhSyJDzmCEAnhlTUbFe_VdTrHw\""
#define K32 "\"k\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\""

Test(jwks, load_errors)
{
	load_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-521\"," P256_X ",\"y\":\"AA\"}]}",
		   "keys[0]: kty EC needs crv P-256 or P-384");
	load_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"ab*d\",\"e\":\"AQAB\"}]}",
		   "keys[0]: n is not base64url");
	load_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"ab==\",\"e\":\"AQAB\"}]}",
		   "keys[0]: n is not base64url");
	load_error("{\"keys\":[{\"kty\":\"RSA\",\"e\":\"AQAB\"}]}", "keys[0]: kty RSA needs n");
	load_error("{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}",
		   "keys[0]: RSA modulus of 3 bytes: 2048 to 4096 bits needed");
	load_error("{\"keys\":[{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
		   "keys[0]: k of 6 bytes: HMAC keys need at least 32");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"kid\":\"a\"},{\"kty\":\"X\"}]}",
		   "keys[1]: kty X not supported (RSA, EC, OKP, oct)");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"alg\":\"RS256\"}]}",
		   "keys[0]: alg RS256 does not fit this kty oct key");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"alg\":\"HS512\"}]}",
		   "keys[0]: alg HS512 does not fit this kty oct key");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"alg\":\"none\"}]}",
		   "keys[0]: alg is not one of HS256/384/512, RS256/384/512, PS256, ES256/384, EdDSA");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"kid\":\"a\"},{\"kty\":\"oct\"," K32
		   ",\"kid\":\"a\"}]}", "keys[1]: kid \"a\" twice");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 "},{\"kty\":\"oct\"," K32 ",\"kid\":\"a\"}]}",
		   "a key has no kid: needed when the set has more than one key");
	load_error("{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\"," P256_X ",\"y\":\"" "AQAAAAAAAAAAAAAA"
		   "AAAAAAAAAAAAAAAAAAAAAAAAAAA\"}]}", "keys[0]: x, y is not a point of P-256");
	load_error("{\"keys\":[{\"kty\":\"OKP\",\"crv\":\"X25519\",\"x\":\"AA\"}]}",
		   "keys[0]: kty OKP needs crv Ed25519");
	load_error("{\"keys\":[{\"kty\":\"oct\"," K32 ",\"use\":\"enc\"}]}",
		   "no signature key in the set");
	load_error("{\"keys\":[]}", "no signature key in the set");
	load_error("{\"kty\":\"oct\"}", "not a JWKS: no \"keys\" array");
	load_error("{\"keys\":[1]}", "keys[0]: not an object");
	load_error("{\"keys\":", "line 1 column 8: unexpected token near end of file");
}

Test(jwks, load_file)
{
	char err[256];
	cr_expect_null(jwks_load_file("/nonexistent/jwks.json", err, sizeof err));
	cr_expect_str_eq(err, "/nonexistent/jwks.json: No such file or directory");
	char path[] = "/tmp/test_jwt_XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, JV_JWKS, strlen(JV_JWKS)), (ssize_t)strlen(JV_JWKS));
	close(fd);
	struct jwks *set = jwks_load_file(path, err, sizeof err);
	unlink(path);
	cr_assert(set, "%s", err);
	cr_expect_eq(jwks_count(set), 6); /* the use: enc key left out */
	jwks_free(set);
}

/* ---- one key set, several threads ------------------------------------------------------------ */

#define THREADS 4
#define ROUNDS 40

static void *verify_many(void *arg)
{
	static const char *const tokens[] = { JV_OK_RS256, JV_OK_PS256, JV_OK_ES256, JV_OK_EDDSA,
					      JV_OK_HS256, JV_OK_ES384 };
	struct jwt_policy p = policy();
	struct jwt_claims c;
	long bad = 0;
	for (int i = 0; i < ROUNDS; i++) {
		const char *t = tokens[((long)arg + i) % 6];
		if (jwt_verify(keys, t, strlen(t), &p, JV_NOW, &c, NULL, 0) != JWT_OK ||
		    strcmp(c.consumer, "alice") != 0)
			bad++;
		if (jwt_verify(keys, JV_TAMPERED_SIGNATURE, strlen(JV_TAMPERED_SIGNATURE), &p,
			       JV_NOW, &c, NULL, 0) != JWT_BAD_SIGNATURE)
			bad++;
	}
	return (void *)bad;
}

Test(jwt, threads_share_one_key_set)
{
	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, verify_many, (void *)i), 0);
	for (int i = 0; i < THREADS; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		cr_expect_eq((long)bad, 0, "thread %d: %ld wrong results", i, (long)bad);
	}
}

/* ---- minting ---------------------------------------------------------------------------------- */

static struct jwt_rng *rng;

static void make_rng(void)
{
	rng = jwt_rng_new();
	cr_assert(rng);
}

static void free_rng(void)
{
	jwt_rng_free(rng);
}

TestSuite(mint, .init = make_rng, .fini = free_rng);

static const char *const GROUPS[] = { "admin", "ops" };

static struct jwt_mint mint_at(int64_t now)
{
	return (struct jwt_mint){
		.issuer = "ringway", .subject = "ålice \"the\" \\ admin", .groups = GROUPS,
		.n_groups = 2, .scope = "read", .audience = "internal", .now = now, .ttl = 300,
	};
}

static struct jwks *signer_keys(const struct jwt_signer *s)
{
	char jwks[512], err[256];
	cr_assert(jwt_signer_jwks(s, jwks, sizeof jwks) > 0);
	struct jwks *set = jwks_parse(jwks, strlen(jwks), err, sizeof err);
	cr_assert(set, "%s: %s", jwks, err);
	return set;
}

Test(mint, sign_then_verify)
{
	char err[256], token[2048];
	struct jwt_signer *s = jwt_signer_generate(rng, err, sizeof err);
	cr_assert(s, "%s", err);
	cr_expect_eq(strlen(jwt_signer_kid(s)), 43);
	struct jwt_mint m = mint_at(JV_NOW);
	size_t n = jwt_sign_es256(s, rng, &m, token, sizeof token);
	cr_assert(n > 0);
	cr_expect_eq(strlen(token), n);
	struct jwks *set = signer_keys(s);
	static const char *const aud[] = { "internal" };
	struct jwt_policy p = { .issuer = "ringway", .audiences = aud, .n_audiences = 1,
				.algs = JWT_ALG_BIT(JWT_ES256), .require_exp = true,
				.groups_claim = "groups" };
	struct jwt_claims c;
	cr_assert_eq(verify_with(set, token, &p, &c), JWT_OK);
	cr_expect_str_eq(c.consumer, m.subject);
	cr_expect_str_eq(c.kid, jwt_signer_kid(s));
	cr_expect_eq(c.n_groups, 2);
	cr_expect_str_eq(c.groups[1], "ops");
	cr_expect_str_eq(c.scope, "read");
	cr_expect_eq(c.iat, JV_NOW);
	cr_expect_eq(c.exp, JV_NOW + 300);
	char again[2048];
	cr_assert(jwt_sign_es256(s, rng, &m, again, sizeof again) > 0);
	cr_expect_str_neq(again, token, "a fresh jti and signature each time");
	cr_expect_eq(jwt_sign_es256(s, rng, &m, token, n), 0, "no room for the NUL");
	m.subject = "bad \xc3\x28 utf-8";
	cr_expect_eq(jwt_sign_es256(s, rng, &m, token, sizeof token), 0);
	jwks_free(set);
	jwt_signer_free(s);
}

static struct jwt_signer *load_pem(const char *pem, char *err, size_t errlen)
{
	char path[] = "/tmp/test_jwt_XXXXXX";
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, pem, strlen(pem)), (ssize_t)strlen(pem));
	close(fd);
	struct jwt_signer *s = jwt_signer_load_pem(path, err, errlen);
	unlink(path);
	return s;
}

Test(mint, pem_keys_and_thumbprint)
{
	char err[256];
	const char *pems[] = { JV_SIGNER_PEM_SEC1, JV_SIGNER_PEM_PKCS8 };
	for (int i = 0; i < 2; i++) {
		struct jwt_signer *s = load_pem(pems[i], err, sizeof err);
		cr_assert(s, "%s", err);
		cr_expect_str_eq(jwt_signer_kid(s), JV_SIGNER_KID, "RFC 7638 thumbprint");
		jwt_signer_free(s);
	}
	cr_expect_null(load_pem(JV_RSA_PEM, err, sizeof err));
	cr_expect(strstr(err, "not an EC private key"), "%s", err);
	cr_expect_null(load_pem("nothing", err, sizeof err));
	cr_expect(strstr(err, "no PEM private key"), "%s", err);
}

static void *sign_many(void *arg)
{
	const struct jwt_signer *s = arg;
	struct jwt_rng *own = jwt_rng_new();
	struct jwks *set = signer_keys(s);
	struct jwt_policy p = { .algs = JWT_ALGS_ALL };
	struct jwt_claims c;
	char token[2048];
	long bad = 0;
	for (int i = 0; i < ROUNDS; i++) {
		struct jwt_mint m = mint_at(JV_NOW);
		size_t n = jwt_sign_es256(s, own, &m, token, sizeof token);
		if (n == 0 || jwt_verify(set, token, n, &p, JV_NOW, &c, NULL, 0) != JWT_OK)
			bad++;
	}
	jwks_free(set);
	jwt_rng_free(own);
	return (void *)bad;
}

Test(mint, threads_share_one_signer)
{
	char err[256];
	struct jwt_signer *s = jwt_signer_generate(rng, err, sizeof err);
	cr_assert(s, "%s", err);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, sign_many, s), 0);
	for (int i = 0; i < THREADS; i++) {
		void *bad;
		pthread_join(t[i], &bad);
		cr_expect_eq((long)bad, 0, "thread %d: %ld bad tokens", i, (long)bad);
	}
	jwt_signer_free(s);
}

/* PyJWT decodes the token with the signer's JWKS: prints the subject, or the error. */
static const char PY_CHECK[] =
	"import json, sys, jwt\n"
	"token, jwks = sys.argv[1], json.loads(sys.argv[2])\n"
	"key = jwt.PyJWK(jwks['keys'][0])\n"
	"claims = jwt.decode(token, key.key, algorithms=['ES256'], audience='internal',\n"
	"                    issuer='ringway', options={'require': ['exp', 'iat', 'jti']})\n"
	"assert jwt.get_unverified_header(token)['kid'] == jwks['keys'][0]['kid']\n"
	"assert claims['groups'] == ['admin', 'ops'] and len(claims['jti']) == 32\n"
	"sys.stdout.write(claims['sub'])\n";

static bool have_pyjwt(void)
{
	return system("/usr/bin/python3 -c 'import jwt, cryptography' 2>/dev/null") == 0;
}

Test(mint, pyjwt_accepts_the_token)
{
	if (!have_pyjwt()) {
		const char *ci = getenv("CI");
		cr_assert(!ci || strcmp(ci, "true") != 0,
			  "python3-jwt and python3-cryptography are needed (kernel/install-deps.sh test)");
		cr_skip_test("python3-jwt or python3-cryptography missing: apt-get install "
			     "python3-jwt python3-cryptography");
	}
	char err[256], token[2048], jwks[512];
	struct jwt_signer *s = jwt_signer_generate(rng, err, sizeof err);
	cr_assert(s, "%s", err);
	struct jwt_mint m = mint_at((int64_t)time(NULL));
	cr_assert(jwt_sign_es256(s, rng, &m, token, sizeof token) > 0);
	cr_assert(jwt_signer_jwks(s, jwks, sizeof jwks) > 0);
	char script[] = "/tmp/test_jwt_XXXXXX";
	int fd = mkstemp(script);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, PY_CHECK, strlen(PY_CHECK)), (ssize_t)strlen(PY_CHECK));
	close(fd);
	/* token and JWKS hold no single quote: base64url and our own JSON */
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s '%s' '%s' 2>&1", script, token, jwks);
	FILE *py = popen(cmd, "r");
	cr_assert(py);
	char said[2048] = "";
	size_t n = fread(said, 1, sizeof said - 1, py);
	said[n] = '\0';
	int status = pclose(py);
	unlink(script);
	cr_expect_eq(status, 0, "PyJWT refused the token: %s", said);
	cr_expect_str_eq(said, m.subject);
	jwt_signer_free(s);
}
