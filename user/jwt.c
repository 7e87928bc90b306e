/* jwt.c — JSON Web Tokens (see jwt.h): strict base64url, the JWKS loader (jansson for the JSON,
 * wolfCrypt for the keys), verification of HS*, RS*, PS256, ES256/384 and EdDSA signatures and of
 * the registered claims, and the ES256 signer of the gateway's identity tokens.
 *
 * Sharing keys between threads: wolfCrypt's RSA verification writes its progress into the RsaKey
 * (state, data) and its Ed25519 verification hashes with a SHA-512 kept in the ed25519_key
 * (WOLFSSL_ED25519_STREAMING_VERIFY), so those keys are kept as checked raw bytes and imported
 * into a key on the verifier's stack. ECDSA verification (wc_ecc_verify_hash_ex on the
 * single-precision path) only reads the key: EC keys are imported once and shared. The signer
 * imports its private key per signature, into a key of the signing thread. */
#include "jwt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include "writer.h"

#define RSA_MIN_BYTES   256u           /* 2048 bits */
#define RSA_MAX_BYTES   512u           /* 4096 bits */
#define RSA_E_MAX       8u
#define HMAC_MIN_BYTES  32u
#define HMAC_MAX_BYTES  1024u
#define SIG_MAX         RSA_MAX_BYTES
#define DECODED_MAX     (JWT_MAX_TOKEN / 4 * 3)
#define FILE_MAX        (1u << 20)
#define P256_BYTES      32u

static const char *const ALG_NAMES[JWT_ALG_COUNT] = {
	[JWT_HS256] = "HS256", [JWT_HS384] = "HS384", [JWT_HS512] = "HS512",
	[JWT_RS256] = "RS256", [JWT_RS384] = "RS384", [JWT_RS512] = "RS512",
	[JWT_PS256] = "PS256", [JWT_ES256] = "ES256", [JWT_ES384] = "ES384",
	[JWT_EDDSA] = "EdDSA",
};

const char *jwt_alg_name(enum jwt_alg alg)
{
	return alg < JWT_ALG_COUNT ? ALG_NAMES[alg] : "?";
}

bool jwt_alg_parse(const char *name, size_t len, enum jwt_alg *alg)
{
	for (unsigned a = 0; a < JWT_ALG_COUNT; a++)
		if (strlen(ALG_NAMES[a]) == len && memcmp(ALG_NAMES[a], name, len) == 0) {
			*alg = (enum jwt_alg)a;
			return true;
		}
	return false;
}

const char *jwt_result_name(enum jwt_result r)
{
	static const char *const names[] = {
		[JWT_OK] = "ok", [JWT_MALFORMED] = "malformed", [JWT_BAD_ALG] = "bad_alg",
		[JWT_UNKNOWN_KID] = "unknown_kid", [JWT_BAD_SIGNATURE] = "bad_signature",
		[JWT_EXPIRED] = "expired", [JWT_NOT_YET_VALID] = "not_yet_valid",
		[JWT_BAD_ISSUER] = "bad_issuer", [JWT_BAD_AUDIENCE] = "bad_audience",
	};
	return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

static enum wc_HashType alg_hash(enum jwt_alg alg)
{
	switch (alg) {
	case JWT_HS384: case JWT_RS384: case JWT_ES384:
		return WC_HASH_TYPE_SHA384;
	case JWT_HS512: case JWT_RS512:
		return WC_HASH_TYPE_SHA512;
	default:
		return WC_HASH_TYPE_SHA256;
	}
}

/* ---- base64url (RFC 4648 §5, no padding) ------------------------------------------------------ */

static int b64url_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* Strict: only the URL alphabet, no padding, no length that leaves a lone character, and unused
 * trailing bits zero (so that one value has one encoding). */
static bool b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap, size_t *n)
{
	if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
		return false;
	uint32_t acc = 0;
	unsigned bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			return false;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	if (acc != 0)
		return false;
	*n = o;
	return true;
}

static void w_b64url(struct writer *w, const unsigned char *p, size_t n)
{
	static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		size_t left = n - i;
		if (left > 1)
			v |= (uint32_t)p[i + 1] << 8;
		if (left > 2)
			v |= p[i + 2];
		char q[4] = { A[v >> 18], A[(v >> 12) & 63], A[(v >> 6) & 63], A[v & 63] };
		w_put(w, q, left > 2 ? 4 : left + 1);
	}
}

/* ---- JSON helpers ----------------------------------------------------------------------------- */

/* True when the text nests objects and arrays no deeper than max (strings skipped), checked before
 * jansson, whose parser recurses once per level. */
static bool json_depth_ok(const unsigned char *p, size_t n, unsigned max)
{
	unsigned depth = 0;
	bool in_string = false, escaped = false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = p[i];
		if (in_string) {
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
		} else if (c == '"') {
			in_string = true;
		} else if (c == '{' || c == '[') {
			if (++depth > max)
				return false;
		} else if ((c == '}' || c == ']') && depth > 0) {
			depth--;
		}
	}
	return true;
}

/* The object in text[0..n), or NULL with the reason in `what`. */
static json_t *parse_object(const unsigned char *text, size_t n, char *what, size_t whatlen)
{
	if (!json_depth_ok(text, n, JWT_MAX_DEPTH)) {
		snprintf(what, whatlen, "nested deeper than %u", JWT_MAX_DEPTH);
		return NULL;
	}
	json_error_t e;
	json_t *v = json_loadb((const char *)text, n, JSON_REJECT_DUPLICATES, &e);
	if (!v) {
		snprintf(what, whatlen, "not JSON (%.100s)", e.text);
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		snprintf(what, whatlen, "not a JSON object");
		return NULL;
	}
	return v;
}

/* The string member `name` copied into out[cap] (0), absent (1), or not a string or too long
 * (-1). */
static int copy_string(json_t *obj, const char *name, char *out, size_t cap)
{
	json_t *v = json_object_get(obj, name);
	if (!v)
		return 1;
	if (!json_is_string(v) || json_string_length(v) >= cap)
		return -1;
	memcpy(out, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static size_t read_file(const char *path, char **text, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return 0;
	}
	char *buf = malloc(FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
	bool failed = !buf || ferror(f);
	fclose(f);
	if (failed || n == 0 || n > FILE_MAX) {
		snprintf(err, errlen, "%s: %s", path, failed ? "cannot be read" :
			 n == 0 ? "empty" : "larger than 1 MiB");
		free(buf);
		return 0;
	}
	buf[n] = '\0';
	*text = buf;
	return n;
}

/* ---- key sets --------------------------------------------------------------------------------- */

enum key_kind { KEY_OCT, KEY_RSA, KEY_EC, KEY_ED25519 };

struct jwk {
	char kid[JWT_KID_MAX];
	enum key_kind kind;
	uint32_t fits; /* JWT_ALG_BIT()s this key verifies: its kty and crv, narrowed by its alg */
	union {
		struct {
			unsigned char *secret;
			size_t len;
		} oct;
		struct {
			unsigned char n[RSA_MAX_BYTES], e[RSA_E_MAX];
			size_t n_len, e_len;
		} rsa;
		ecc_key ec; /* read-only once loaded */
		unsigned char ed25519[ED25519_PUB_KEY_SIZE];
	};
};

struct jwks {
	size_t n;
	struct jwk keys[];
};

static void jwk_free(struct jwk *k)
{
	if (k->kind == KEY_EC) {
		wc_ecc_free(&k->ec);
	} else if (k->kind == KEY_OCT && k->oct.secret) {
		explicit_bzero(k->oct.secret, k->oct.len);
		free(k->oct.secret);
	}
}

/* Member `name` of a key, base64url-decoded into out[cap]: its length, or 0 with a message. */
static size_t key_bytes(json_t *obj, const char *name, const char *kty, unsigned char *out,
			size_t cap, size_t idx, char *err, size_t errlen)
{
	json_t *v = json_object_get(obj, name);
	size_t n = 0;
	if (!v) {
		snprintf(err, errlen, "keys[%zu]: kty %s needs %s", idx, kty, name);
		return 0;
	}
	if (json_is_string(v) && json_string_length(v) / 4 * 3 > cap) {
		snprintf(err, errlen, "keys[%zu]: %s longer than %zu bytes", idx, name, cap);
		return 0;
	}
	if (!json_is_string(v) ||
	    !b64url_decode(json_string_value(v), json_string_length(v), out, cap, &n) || n == 0) {
		snprintf(err, errlen, "keys[%zu]: %s is not base64url", idx, name);
		return 0;
	}
	return n;
}

static bool load_oct(json_t *obj, struct jwk *k, size_t idx, char *err, size_t errlen)
{
	unsigned char secret[HMAC_MAX_BYTES];
	size_t n = key_bytes(obj, "k", "oct", secret, sizeof secret, idx, err, errlen);
	if (n == 0)
		return false;
	if (n < HMAC_MIN_BYTES) {
		snprintf(err, errlen, "keys[%zu]: k of %zu bytes: HMAC keys need at least %u", idx,
			 n, HMAC_MIN_BYTES);
		return false;
	}
	k->kind = KEY_OCT;
	k->oct.secret = malloc(n);
	if (!k->oct.secret) {
		snprintf(err, errlen, "keys[%zu]: out of memory", idx);
		return false;
	}
	memcpy(k->oct.secret, secret, n);
	k->oct.len = n;
	explicit_bzero(secret, n);
	/* RFC 7518 §3.2: a key at least as long as the hash */
	k->fits = JWT_ALG_BIT(JWT_HS256) | (n >= 48 ? JWT_ALG_BIT(JWT_HS384) : 0) |
		  (n >= 64 ? JWT_ALG_BIT(JWT_HS512) : 0);
	return true;
}

static bool load_rsa(json_t *obj, struct jwk *k, size_t idx, char *err, size_t errlen)
{
	unsigned char n[RSA_MAX_BYTES + 1];
	size_t n_len = key_bytes(obj, "n", "RSA", n, sizeof n, idx, err, errlen);
	if (n_len == 0)
		return false;
	size_t e_len = key_bytes(obj, "e", "RSA", k->rsa.e, sizeof k->rsa.e, idx, err, errlen);
	if (e_len == 0)
		return false;
	const unsigned char *m = n;
	while (n_len > 0 && *m == 0) {
		m++;
		n_len--;
	}
	if (n_len < RSA_MIN_BYTES || n_len > RSA_MAX_BYTES) {
		snprintf(err, errlen, "keys[%zu]: RSA modulus of %zu bytes: 2048 to 4096 bits needed",
			 idx, n_len);
		return false;
	}
	RsaKey rsa;
	bool ok = wc_InitRsaKey(&rsa, NULL) == 0 &&
		  wc_RsaPublicKeyDecodeRaw(m, (word32)n_len, k->rsa.e, (word32)e_len, &rsa) == 0;
	wc_FreeRsaKey(&rsa);
	if (!ok) {
		snprintf(err, errlen, "keys[%zu]: n and e are not an RSA public key", idx);
		return false;
	}
	k->kind = KEY_RSA;
	memcpy(k->rsa.n, m, n_len);
	k->rsa.n_len = n_len;
	k->rsa.e_len = e_len;
	k->fits = JWT_ALG_BIT(JWT_RS256) | JWT_ALG_BIT(JWT_RS384) | JWT_ALG_BIT(JWT_RS512) |
		  JWT_ALG_BIT(JWT_PS256);
	return true;
}

static bool load_ec(json_t *obj, struct jwk *k, size_t idx, char *err, size_t errlen)
{
	json_t *crv = json_object_get(obj, "crv");
	const char *name = json_is_string(crv) ? json_string_value(crv) : "";
	size_t size = strcmp(name, "P-256") == 0 ? 32 : strcmp(name, "P-384") == 0 ? 48 : 0;
	if (size == 0) {
		snprintf(err, errlen, "keys[%zu]: kty EC needs crv P-256 or P-384", idx);
		return false;
	}
	unsigned char x[48], y[48];
	size_t x_len = key_bytes(obj, "x", "EC", x, sizeof x, idx, err, errlen);
	if (x_len == 0)
		return false;
	size_t y_len = key_bytes(obj, "y", "EC", y, sizeof y, idx, err, errlen);
	if (y_len == 0)
		return false;
	if (x_len != size || y_len != size) {
		snprintf(err, errlen, "keys[%zu]: x and y of %s must be %zu bytes each", idx, name,
			 size);
		return false;
	}
	if (wc_ecc_init(&k->ec) != 0) {
		snprintf(err, errlen, "keys[%zu]: cannot make an EC key", idx);
		return false;
	}
	k->kind = KEY_EC; /* from here jwk_free frees k->ec */
	int curve = size == 32 ? ECC_SECP256R1 : ECC_SECP384R1;
	if (wc_ecc_import_unsigned(&k->ec, x, y, NULL, curve) != 0 || wc_ecc_check_key(&k->ec) != 0) {
		snprintf(err, errlen, "keys[%zu]: x, y is not a point of %s", idx, name);
		return false;
	}
	k->fits = JWT_ALG_BIT(size == 32 ? JWT_ES256 : JWT_ES384);
	return true;
}

static bool load_okp(json_t *obj, struct jwk *k, size_t idx, char *err, size_t errlen)
{
	json_t *crv = json_object_get(obj, "crv");
	if (!json_is_string(crv) || strcmp(json_string_value(crv), "Ed25519") != 0) {
		snprintf(err, errlen, "keys[%zu]: kty OKP needs crv Ed25519", idx);
		return false;
	}
	unsigned char x[ED25519_PUB_KEY_SIZE];
	size_t n = key_bytes(obj, "x", "OKP", x, sizeof x, idx, err, errlen);
	if (n == 0)
		return false;
	ed25519_key ed;
	bool ok = n == sizeof x && wc_ed25519_init(&ed) == 0;
	if (ok) {
		ok = wc_ed25519_import_public(x, (word32)n, &ed) == 0;
		wc_ed25519_free(&ed);
	}
	if (!ok) {
		snprintf(err, errlen, "keys[%zu]: x is not an Ed25519 public key", idx);
		return false;
	}
	k->kind = KEY_ED25519;
	memcpy(k->ed25519, x, sizeof x);
	k->fits = JWT_ALG_BIT(JWT_EDDSA);
	return true;
}

/* keys[idx] into k: 1 loaded, 0 left out (not a signature key), -1 error. */
static int load_key(json_t *obj, struct jwk *k, size_t idx, char *err, size_t errlen)
{
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "keys[%zu]: not an object", idx);
		return -1;
	}
	json_t *use = json_object_get(obj, "use");
	if (use && !json_is_string(use)) {
		snprintf(err, errlen, "keys[%zu]: use is not a string", idx);
		return -1;
	}
	if (use && strcmp(json_string_value(use), "sig") != 0)
		return 0;
	if (copy_string(obj, "kid", k->kid, sizeof k->kid) < 0) {
		snprintf(err, errlen, "keys[%zu]: kid is not a string of at most %u bytes", idx,
			 JWT_KID_MAX - 1);
		return -1;
	}
	json_t *kty = json_object_get(obj, "kty");
	const char *type = json_is_string(kty) ? json_string_value(kty) : NULL;
	bool ok;
	if (!type) {
		snprintf(err, errlen, "keys[%zu]: kty missing", idx);
		return -1;
	} else if (strcmp(type, "oct") == 0) {
		ok = load_oct(obj, k, idx, err, errlen);
	} else if (strcmp(type, "RSA") == 0) {
		ok = load_rsa(obj, k, idx, err, errlen);
	} else if (strcmp(type, "EC") == 0) {
		ok = load_ec(obj, k, idx, err, errlen);
	} else if (strcmp(type, "OKP") == 0) {
		ok = load_okp(obj, k, idx, err, errlen);
	} else {
		snprintf(err, errlen, "keys[%zu]: kty %s not supported (RSA, EC, OKP, oct)", idx, type);
		return -1;
	}
	if (!ok)
		return -1;
	json_t *alg = json_object_get(obj, "alg");
	if (alg) {
		enum jwt_alg a;
		if (!json_is_string(alg) ||
		    !jwt_alg_parse(json_string_value(alg), json_string_length(alg), &a)) {
			snprintf(err, errlen, "keys[%zu]: alg is not one of HS256/384/512, RS256/384/512, "
				 "PS256, ES256/384, EdDSA", idx);
			return -1;
		}
		if (!(k->fits & JWT_ALG_BIT(a))) {
			snprintf(err, errlen, "keys[%zu]: alg %s does not fit this kty %s key", idx,
				 ALG_NAMES[a], type);
			return -1;
		}
		k->fits = JWT_ALG_BIT(a);
	}
	return 1;
}

struct jwks *jwks_parse(const char *json, size_t len, char *err, size_t errlen)
{
	json_error_t e;
	json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &e);
	if (!root) {
		snprintf(err, errlen, "line %d column %d: %s", e.line, e.column, e.text);
		return NULL;
	}
	json_t *keys = json_object_get(root, "keys");
	if (!json_is_array(keys)) {
		snprintf(err, errlen, "not a JWKS: no \"keys\" array");
		json_decref(root);
		return NULL;
	}
	size_t count = json_array_size(keys);
	struct jwks *set = calloc(1, sizeof *set + count * sizeof set->keys[0]);
	if (!set) {
		snprintf(err, errlen, "out of memory");
		json_decref(root);
		return NULL;
	}
	bool failed = false;
	for (size_t i = 0; i < count && !failed; i++) {
		struct jwk *k = &set->keys[set->n];
		int r = load_key(json_array_get(keys, i), k, i, err, errlen);
		if (r < 0) {
			jwk_free(k);
			failed = true;
		} else if (r > 0) {
			for (size_t j = 0; j < set->n && !failed; j++)
				if (k->kid[0] && strcmp(set->keys[j].kid, k->kid) == 0) {
					snprintf(err, errlen, "keys[%zu]: kid \"%s\" twice", i, k->kid);
					failed = true;
				}
			set->n++;
		} else {
			memset(k, 0, sizeof *k);
		}
	}
	for (size_t j = 0; j < set->n && !failed && set->n > 1; j++)
		if (!set->keys[j].kid[0]) {
			snprintf(err, errlen, "a key has no kid: needed when the set has more than one key");
			failed = true;
		}
	if (!failed && set->n == 0) {
		snprintf(err, errlen, "no signature key in the set");
		failed = true;
	}
	json_decref(root);
	if (failed) {
		jwks_free(set);
		return NULL;
	}
	return set;
}

struct jwks *jwks_load_file(const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	size_t n = read_file(path, &text, err, errlen);
	if (n == 0)
		return NULL;
	char why[200];
	struct jwks *set = jwks_parse(text, n, why, sizeof why);
	if (!set)
		snprintf(err, errlen, "%s: %s", path, why);
	free(text);
	return set;
}

void jwks_free(struct jwks *set)
{
	if (!set)
		return;
	for (size_t i = 0; i < set->n; i++)
		jwk_free(&set->keys[i]);
	free(set);
}

size_t jwks_count(const struct jwks *set)
{
	return set->n;
}

/* ---- verification ----------------------------------------------------------------------------- */

struct verdict {
	char *why;
	size_t whylen;
};

static enum jwt_result fail(struct verdict *v, enum jwt_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static enum jwt_result fail(struct verdict *v, enum jwt_result r, const char *fmt, ...)
{
	if (v->whylen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(v->why, v->whylen, fmt, ap);
		va_end(ap);
	}
	return r;
}

static bool equal_in_constant_time(const unsigned char *a, const unsigned char *b, size_t n)
{
	volatile unsigned char diff = 0;
	for (size_t i = 0; i < n; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

static bool hmac_ok(const struct jwk *k, enum jwt_alg alg, const unsigned char *msg, size_t n,
		    const unsigned char *sig, size_t sig_len)
{
	static const int types[] = { [JWT_HS256] = WC_SHA256, [JWT_HS384] = WC_SHA384,
				     [JWT_HS512] = WC_SHA512 };
	unsigned char mac[WC_MAX_DIGEST_SIZE];
	int size = wc_HashGetDigestSize(alg_hash(alg));
	Hmac h;
	if (size <= 0 || sig_len != (size_t)size || wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
		return false;
	bool ok = wc_HmacSetKey(&h, types[alg], k->oct.secret, (word32)k->oct.len) == 0 &&
		  wc_HmacUpdate(&h, msg, (word32)n) == 0 && wc_HmacFinal(&h, mac) == 0;
	wc_HmacFree(&h);
	return ok && equal_in_constant_time(mac, sig, sig_len);
}

static bool rsa_ok(const struct jwk *k, enum jwt_alg alg, const unsigned char *digest,
		   size_t digest_len, const unsigned char *sig, size_t sig_len)
{
	if (sig_len != k->rsa.n_len)
		return false;
	unsigned char in[SIG_MAX], out[SIG_MAX];
	memcpy(in, sig, sig_len);
	RsaKey rsa;
	if (wc_InitRsaKey(&rsa, NULL) != 0)
		return false;
	bool ok = wc_RsaPublicKeyDecodeRaw(k->rsa.n, (word32)k->rsa.n_len, k->rsa.e,
					   (word32)k->rsa.e_len, &rsa) == 0;
	if (ok && alg == JWT_PS256) {
		/* MGF1 with SHA-256, salt as long as the hash (RFC 7518 §3.5) */
		ok = wc_RsaPSS_VerifyCheck(in, (word32)sig_len, out, sizeof out, digest,
					   (word32)digest_len, WC_HASH_TYPE_SHA256, WC_MGF1SHA256,
					   &rsa) > 0;
	} else if (ok) {
		unsigned char want[SIG_MAX]; /* a DigestInfo: 83 bytes at most */
		int got = wc_RsaSSL_Verify(in, (word32)sig_len, out, sizeof out, &rsa);
		word32 want_len = wc_EncodeSignature(want, digest, (word32)digest_len,
						     wc_HashGetOID(alg_hash(alg)));
		ok = got > 0 && (word32)got == want_len && memcmp(out, want, want_len) == 0;
	}
	wc_FreeRsaKey(&rsa);
	return ok;
}

static bool ecdsa_ok(const struct jwk *k, enum jwt_alg alg, const unsigned char *digest,
		     size_t digest_len, const unsigned char *sig, size_t sig_len)
{
	size_t size = alg == JWT_ES256 ? 32 : 48;
	if (sig_len != 2 * size)
		return false;
	mp_int r, s;
	int valid = 0;
	if (mp_init(&r) != MP_OKAY)
		return false;
	if (mp_init(&s) != MP_OKAY) {
		mp_clear(&r);
		return false;
	}
	/* JOSE signs r || s, fixed size, big-endian; wolfCrypt reads the key only */
	bool ok = mp_read_unsigned_bin(&r, sig, (word32)size) == MP_OKAY &&
		  mp_read_unsigned_bin(&s, sig + size, (word32)size) == MP_OKAY &&
		  wc_ecc_verify_hash_ex(&r, &s, digest, (word32)digest_len, &valid,
					(ecc_key *)&k->ec) == 0;
	mp_clear(&r);
	mp_clear(&s);
	return ok && valid == 1;
}

static bool ed25519_ok(const struct jwk *k, const unsigned char *msg, size_t n,
		       const unsigned char *sig, size_t sig_len)
{
	if (sig_len != ED25519_SIG_SIZE)
		return false;
	ed25519_key ed;
	int valid = 0;
	if (wc_ed25519_init(&ed) != 0)
		return false;
	bool ok = wc_ed25519_import_public(k->ed25519, sizeof k->ed25519, &ed) == 0 &&
		  wc_ed25519_verify_msg(sig, (word32)sig_len, msg, (word32)n, &valid, &ed) == 0;
	wc_ed25519_free(&ed);
	return ok && valid == 1;
}

static bool signature_ok(const struct jwk *k, enum jwt_alg alg, const unsigned char *msg,
			 size_t n, const unsigned char *sig, size_t sig_len)
{
	if (k->kind == KEY_OCT)
		return hmac_ok(k, alg, msg, n, sig, sig_len);
	if (k->kind == KEY_ED25519)
		return ed25519_ok(k, msg, n, sig, sig_len);
	unsigned char digest[WC_MAX_DIGEST_SIZE];
	enum wc_HashType hash = alg_hash(alg);
	int size = wc_HashGetDigestSize(hash);
	if (size <= 0 || wc_Hash(hash, msg, (word32)n, digest, (word32)size) != 0)
		return false;
	if (k->kind == KEY_RSA)
		return rsa_ok(k, alg, digest, (size_t)size, sig, sig_len);
	return ecdsa_ok(k, alg, digest, (size_t)size, sig, sig_len);
}

static const struct jwk *find_key(const struct jwks *set, const char *kid, bool has_kid)
{
	if (!has_kid)
		return set->n == 1 ? &set->keys[0] : NULL;
	for (size_t i = 0; i < set->n; i++)
		if (strcmp(set->keys[i].kid, kid) == 0)
			return &set->keys[i];
	return NULL;
}

/* The header's algorithm and key. */
static enum jwt_result check_header(const struct jwks *set, json_t *header,
				    const struct jwt_policy *policy, struct jwt_claims *out,
				    const struct jwk **key, struct verdict *v)
{
	json_t *alg = json_object_get(header, "alg");
	if (!json_is_string(alg))
		return fail(v, JWT_MALFORMED, "header has no alg string");
	const char *name = json_string_value(alg);
	if (!jwt_alg_parse(name, json_string_length(alg), &out->alg))
		return fail(v, JWT_BAD_ALG, "alg \"%.32s\" is %s", name,
			    strcmp(name, "none") == 0 ? "refused" : "unknown");
	if (!(policy->algs & JWT_ALG_BIT(out->alg)))
		return fail(v, JWT_BAD_ALG, "alg %s is not allowed here", name);
	if (json_object_get(header, "crit"))
		return fail(v, JWT_MALFORMED, "header has crit: no extension is understood");
	json_t *kid = json_object_get(header, "kid");
	if (kid && !json_is_string(kid))
		return fail(v, JWT_MALFORMED, "kid is not a string");
	if (kid && json_string_length(kid) >= sizeof out->kid)
		return fail(v, JWT_UNKNOWN_KID, "kid longer than any key's");
	if (kid)
		memcpy(out->kid, json_string_value(kid), json_string_length(kid) + 1);
	*key = find_key(set, out->kid, kid != NULL);
	if (!*key)
		return kid ? fail(v, JWT_UNKNOWN_KID, "no key with kid \"%s\"", out->kid)
			   : fail(v, JWT_UNKNOWN_KID, "no kid, and the key set has several keys");
	if (!((*key)->fits & JWT_ALG_BIT(out->alg)))
		return fail(v, JWT_BAD_ALG, "alg %s does not fit key \"%s\"", name, (*key)->kid);
	return JWT_OK;
}

/* A NumericDate claim: absent (false), or its value in *t; a non-number is malformed. */
static bool numeric_date(json_t *claims, const char *name, double *t, bool *malformed)
{
	json_t *v = json_object_get(claims, name);
	if (!v)
		return false;
	if (!json_is_number(v)) {
		*malformed = true;
		return false;
	}
	*t = json_number_value(v);
	return true;
}

static int64_t to_seconds(double t)
{
	if (t >= 9.2e18)
		return INT64_MAX;
	if (t <= -9.2e18)
		return INT64_MIN;
	return (int64_t)t;
}

static enum jwt_result check_times(json_t *claims, const struct jwt_policy *policy, int64_t now,
				   struct jwt_claims *out, struct verdict *v)
{
	double exp = 0, nbf = 0, iat = 0, at = (double)now, leeway = (double)policy->leeway;
	bool malformed = false;
	out->has_exp = numeric_date(claims, "exp", &exp, &malformed);
	bool has_nbf = numeric_date(claims, "nbf", &nbf, &malformed);
	out->has_iat = numeric_date(claims, "iat", &iat, &malformed);
	if (malformed)
		return fail(v, JWT_MALFORMED, "exp, nbf or iat is not a number");
	if (!out->has_exp && policy->require_exp)
		return fail(v, JWT_MALFORMED, "no exp claim");
	if (out->has_exp && at >= exp + leeway)
		return fail(v, JWT_EXPIRED, "expired %.0f s ago", at - exp);
	if (has_nbf && at + leeway < nbf)
		return fail(v, JWT_NOT_YET_VALID, "not valid for %.0f s more (nbf)", nbf - at);
	if (out->has_iat && at + leeway < iat)
		return fail(v, JWT_NOT_YET_VALID, "issued %.0f s in the future (iat)", iat - at);
	out->exp = out->has_exp ? to_seconds(exp) : 0;
	out->iat = out->has_iat ? to_seconds(iat) : 0;
	return JWT_OK;
}

static bool audience_wanted(const struct jwt_policy *policy, json_t *aud)
{
	for (size_t i = 0; i < policy->n_audiences; i++)
		if (strcmp(policy->audiences[i], json_string_value(aud)) == 0)
			return true;
	return false;
}

static enum jwt_result check_audience(json_t *claims, const struct jwt_policy *policy,
				      struct verdict *v)
{
	if (policy->n_audiences == 0)
		return JWT_OK;
	json_t *aud = json_object_get(claims, "aud");
	if (!aud)
		return fail(v, JWT_BAD_AUDIENCE, "no aud claim");
	if (json_is_string(aud))
		return audience_wanted(policy, aud) ? JWT_OK
			: fail(v, JWT_BAD_AUDIENCE, "aud \"%.64s\" is not for this route",
			       json_string_value(aud));
	if (!json_is_array(aud))
		return fail(v, JWT_MALFORMED, "aud is neither a string nor an array");
	size_t i;
	json_t *one;
	bool found = false;
	json_array_foreach(aud, i, one) {
		if (!json_is_string(one))
			return fail(v, JWT_MALFORMED, "aud[%zu] is not a string", i);
		found = found || audience_wanted(policy, one);
	}
	return found ? JWT_OK : fail(v, JWT_BAD_AUDIENCE, "no aud is for this route");
}

static bool add_group(struct jwt_claims *out, const char *g, size_t len)
{
	if (out->n_groups == JWT_GROUPS_MAX || len >= JWT_GROUP_MAX)
		return false;
	memcpy(out->groups[out->n_groups], g, len);
	out->groups[out->n_groups++][len] = '\0';
	return true;
}

static enum jwt_result copy_groups(json_t *claims, const char *name, struct jwt_claims *out,
				   struct verdict *v)
{
	json_t *groups = json_object_get(claims, name);
	if (!groups)
		return JWT_OK;
	if (json_is_string(groups)) {
		const char *s = json_string_value(groups), *end = s + json_string_length(groups);
		while (s < end) {
			const char *sp = memchr(s, ' ', (size_t)(end - s));
			const char *stop = sp ? sp : end;
			if (stop > s && !add_group(out, s, (size_t)(stop - s)))
				return fail(v, JWT_MALFORMED, "%s: more than %u groups, or one longer "
					    "than %u bytes", name, JWT_GROUPS_MAX, JWT_GROUP_MAX - 1);
			s = stop + 1;
		}
		return JWT_OK;
	}
	if (!json_is_array(groups))
		return fail(v, JWT_MALFORMED, "%s is neither an array nor a string", name);
	size_t i;
	json_t *g;
	json_array_foreach(groups, i, g) {
		if (!json_is_string(g))
			return fail(v, JWT_MALFORMED, "%s[%zu] is not a string", name, i);
		if (!add_group(out, json_string_value(g), json_string_length(g)))
			return fail(v, JWT_MALFORMED, "%s: more than %u groups, or one longer than "
				    "%u bytes", name, JWT_GROUPS_MAX, JWT_GROUP_MAX - 1);
	}
	return JWT_OK;
}

static enum jwt_result check_claims(json_t *claims, const struct jwt_policy *policy, int64_t now,
				    struct jwt_claims *out, struct verdict *v)
{
	enum jwt_result r = check_times(claims, policy, now, out, v);
	if (r != JWT_OK)
		return r;
	if (policy->issuer) {
		json_t *iss = json_object_get(claims, "iss");
		if (!json_is_string(iss))
			return fail(v, JWT_BAD_ISSUER, "no iss string");
		if (strcmp(json_string_value(iss), policy->issuer) != 0)
			return fail(v, JWT_BAD_ISSUER, "iss \"%.64s\" is not the issuer trusted here",
				    json_string_value(iss));
	}
	r = check_audience(claims, policy, v);
	if (r != JWT_OK)
		return r;
	const char *consumer = policy->consumer_claim ? policy->consumer_claim : "sub";
	if (copy_string(claims, consumer, out->consumer, sizeof out->consumer) < 0)
		return fail(v, JWT_MALFORMED, "%s is not a string of at most %u bytes", consumer,
			    JWT_CONSUMER_MAX - 1);
	if (copy_string(claims, "scope", out->scope, sizeof out->scope) < 0)
		return fail(v, JWT_MALFORMED, "scope is not a string of at most %u bytes",
			    JWT_SCOPE_MAX - 1);
	return policy->groups_claim ? copy_groups(claims, policy->groups_claim, out, v) : JWT_OK;
}

enum jwt_result jwt_verify(const struct jwks *set, const char *token, size_t len,
			   const struct jwt_policy *policy, int64_t now, struct jwt_claims *out,
			   char *why, size_t whylen)
{
	struct verdict v = { why, whylen };
	memset(out, 0, sizeof *out);
	if (whylen > 0)
		why[0] = '\0';
	if (len > JWT_MAX_TOKEN)
		return fail(&v, JWT_MALFORMED, "token of %zu bytes: at most %u", len, JWT_MAX_TOKEN);
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2 || memchr(dot2 + 1, '.', len - (size_t)(dot2 + 1 - token)))
		return fail(&v, JWT_MALFORMED, "not three dot-separated parts");

	unsigned char text[DECODED_MAX], sig[SIG_MAX];
	size_t n, sig_len;
	char what[160];
	if (!b64url_decode(token, (size_t)(dot1 - token), text, sizeof text, &n))
		return fail(&v, JWT_MALFORMED, "header is not base64url");
	json_t *header = parse_object(text, n, what, sizeof what);
	if (!header)
		return fail(&v, JWT_MALFORMED, "header: %s", what);
	const struct jwk *key = NULL;
	enum jwt_result r = check_header(set, header, policy, out, &key, &v);
	json_decref(header);
	if (r != JWT_OK)
		return r;

	const char *payload = dot1 + 1, *signature = dot2 + 1;
	if (!b64url_decode(signature, len - (size_t)(signature - token), sig, sizeof sig, &sig_len))
		return fail(&v, JWT_MALFORMED, "signature is not base64url of at most %u bytes",
			    SIG_MAX);
	if (!b64url_decode(payload, (size_t)(dot2 - payload), text, sizeof text, &n))
		return fail(&v, JWT_MALFORMED, "payload is not base64url");
	if (!signature_ok(key, out->alg, (const unsigned char *)token, (size_t)(dot2 - token), sig,
			  sig_len))
		return fail(&v, JWT_BAD_SIGNATURE, "%s signature does not verify with key \"%s\"",
			    ALG_NAMES[out->alg], key->kid);

	json_t *claims = parse_object(text, n, what, sizeof what);
	if (!claims)
		return fail(&v, JWT_MALFORMED, "payload: %s", what);
	r = check_claims(claims, policy, now, out, &v);
	json_decref(claims);
	return r;
}

enum jwt_result jwt_peek_issuer(const char *token, size_t len, char *out, size_t cap)
{
	if (len > JWT_MAX_TOKEN)
		return JWT_MALFORMED;
	const char *dot1 = memchr(token, '.', len);
	const char *dot2 = dot1 ? memchr(dot1 + 1, '.', len - (size_t)(dot1 + 1 - token)) : NULL;
	if (!dot2)
		return JWT_MALFORMED;
	unsigned char text[DECODED_MAX];
	size_t n;
	char what[160];
	if (!b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), text, sizeof text, &n))
		return JWT_MALFORMED;
	json_t *claims = parse_object(text, n, what, sizeof what);
	if (!claims)
		return JWT_MALFORMED;
	enum jwt_result r = copy_string(claims, "iss", out, cap) == 0 ? JWT_OK : JWT_BAD_ISSUER;
	json_decref(claims);
	return r;
}

/* ---- minting ---------------------------------------------------------------------------------- */

struct jwt_rng {
	WC_RNG rng;
};

struct jwt_rng *jwt_rng_new(void)
{
	struct jwt_rng *r = calloc(1, sizeof *r);
	if (r && wc_InitRng(&r->rng) != 0) {
		free(r);
		return NULL;
	}
	return r;
}

void jwt_rng_free(struct jwt_rng *r)
{
	if (!r)
		return;
	wc_FreeRng(&r->rng);
	free(r);
}

struct jwt_signer {
	unsigned char d[P256_BYTES], x[P256_BYTES], y[P256_BYTES];
	char kid[44];
};

/* The JWK members of the public key ("crv", "kty", "x", "y": in the order of RFC 7638). */
static void w_public_jwk(struct writer *w, const struct jwt_signer *s)
{
	w_str(w, "\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"");
	w_b64url(w, s->x, sizeof s->x);
	w_str(w, "\",\"y\":\"");
	w_b64url(w, s->y, sizeof s->y);
	w_str(w, "\"");
}

/* A signer holding the key's bytes, its kid the key's thumbprint. */
static struct jwt_signer *signer_from(ecc_key *key, char *err, size_t errlen)
{
	struct jwt_signer *s = calloc(1, sizeof *s);
	word32 xl = sizeof s->x, yl = sizeof s->y, dl = sizeof s->d;
	if (!s || wc_ecc_export_public_raw(key, s->x, &xl, s->y, &yl) != 0 ||
	    wc_ecc_export_private_only(key, s->d, &dl) != 0 || xl != P256_BYTES ||
	    yl != P256_BYTES || dl != P256_BYTES) {
		snprintf(err, errlen, "cannot export the P-256 key");
		jwt_signer_free(s);
		return NULL;
	}
	char jwk[160];
	struct writer w = writer_init(jwk, sizeof jwk);
	w_str(&w, "{");
	w_public_jwk(&w, s);
	w_str(&w, "}");
	unsigned char digest[WC_SHA256_DIGEST_SIZE];
	struct writer kid = writer_init(s->kid, sizeof s->kid - 1);
	if (w.overflow || wc_Sha256Hash((const byte *)jwk, (word32)w.len, digest) != 0) {
		snprintf(err, errlen, "cannot make the key's thumbprint");
		jwt_signer_free(s);
		return NULL;
	}
	w_b64url(&kid, digest, sizeof digest);
	return s;
}

struct jwt_signer *jwt_signer_load_pem(const char *path, char *err, size_t errlen)
{
	char *pem = NULL;
	size_t n = read_file(path, &pem, err, errlen);
	if (n == 0)
		return NULL;
	unsigned char der[4096];
	int der_len = wc_KeyPemToDer((const unsigned char *)pem, (int)n, der, sizeof der, NULL);
	explicit_bzero(pem, n);
	free(pem);
	if (der_len <= 0) {
		snprintf(err, errlen, "%s: no PEM private key", path);
		return NULL;
	}
	ecc_key key;
	word32 at = 0;
	struct jwt_signer *s = NULL;
	if (wc_ecc_init(&key) != 0) {
		snprintf(err, errlen, "%s: cannot make an EC key", path);
		return NULL;
	}
	if (wc_EccPrivateKeyDecode(der, &at, &key, (word32)der_len) != 0)
		snprintf(err, errlen, "%s: not an EC private key", path);
	else if (wc_ecc_get_curve_id(key.idx) != ECC_SECP256R1)
		snprintf(err, errlen, "%s: the key is not on P-256 (ES256 needs it)", path);
	else if (key.type == ECC_PRIVATEKEY_ONLY && wc_ecc_make_pub(&key, NULL) != 0)
		snprintf(err, errlen, "%s: cannot derive the public key", path);
	else
		s = signer_from(&key, err, errlen);
	explicit_bzero(der, sizeof der);
	wc_ecc_free(&key);
	return s;
}

struct jwt_signer *jwt_signer_generate(struct jwt_rng *rng, char *err, size_t errlen)
{
	ecc_key key;
	if (wc_ecc_init(&key) != 0) {
		snprintf(err, errlen, "cannot make an EC key");
		return NULL;
	}
	struct jwt_signer *s = NULL;
	if (wc_ecc_make_key_ex(&rng->rng, P256_BYTES, &key, ECC_SECP256R1) != 0)
		snprintf(err, errlen, "cannot generate a P-256 key");
	else
		s = signer_from(&key, err, errlen);
	wc_ecc_free(&key);
	return s;
}

void jwt_signer_free(struct jwt_signer *s)
{
	if (!s)
		return;
	explicit_bzero(s, sizeof *s);
	free(s);
}

const char *jwt_signer_kid(const struct jwt_signer *s)
{
	return s->kid;
}

size_t jwt_signer_jwks(const struct jwt_signer *s, char *out, size_t cap)
{
	struct writer w = writer_init(out, cap > 0 ? cap - 1 : 0);
	w_str(&w, "{\"keys\":[{");
	w_public_jwk(&w, s);
	w_str(&w, ",\"kid\":\"");
	w_str(&w, s->kid);
	w_str(&w, "\",\"alg\":\"ES256\",\"use\":\"sig\"}]}");
	if (w.overflow || cap == 0)
		return 0;
	out[w.len] = '\0';
	return w.len;
}

/* Length of the UTF-8 sequence at p[0..n) (its first byte ≥ 0x80), 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xBF;
	size_t len;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
	else
		return 0;
	if (n < len || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return len;
}

/* s as a quoted JSON string, UTF-8 kept as it is; false when s is not UTF-8. */
static bool w_json_utf8(struct writer *w, const char *s)
{
	static const char HEX[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);
	w_put(w, "\"", 1);
	for (size_t i = 0; i < n;) {
		unsigned char c = p[i];
		if (c >= 0x80) {
			size_t len = utf8_sequence(p + i, n - i);
			if (len == 0)
				return false;
			w_put(w, p + i, len);
			i += len;
			continue;
		}
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			w_put(w, esc, 2);
		} else if (c < 0x20) {
			char esc[6] = { '\\', 'u', '0', '0', HEX[c >> 4], HEX[c & 15] };
			w_put(w, esc, 6);
		} else {
			w_put(w, p + i, 1);
		}
		i++;
	}
	w_put(w, "\"", 1);
	return true;
}

static void w_i64(struct writer *w, int64_t v)
{
	if (v < 0) {
		w_put(w, "-", 1);
		w_u64(w, (uint64_t)0 - (uint64_t)v);
	} else {
		w_u64(w, (uint64_t)v);
	}
}

/* The identity token's claims as JSON into w; false when a string is not UTF-8 or no room. */
static bool w_claims(struct writer *w, struct jwt_rng *rng, const struct jwt_mint *m)
{
	static const char HEX[] = "0123456789abcdef";
	unsigned char id[16];
	char jti[2 * sizeof id];
	if (wc_RNG_GenerateBlock(&rng->rng, id, sizeof id) != 0)
		return false;
	for (size_t i = 0; i < sizeof id; i++) {
		jti[2 * i] = HEX[id[i] >> 4];
		jti[2 * i + 1] = HEX[id[i] & 15];
	}
	bool ok = true;
	w_str(w, "{\"iss\":");
	ok &= w_json_utf8(w, m->issuer);
	w_str(w, ",\"sub\":");
	ok &= w_json_utf8(w, m->subject);
	if (m->audience && m->audience[0]) {
		w_str(w, ",\"aud\":");
		ok &= w_json_utf8(w, m->audience);
	}
	w_str(w, ",\"groups\":[");
	for (size_t i = 0; i < m->n_groups; i++) {
		if (i > 0)
			w_put(w, ",", 1);
		ok &= w_json_utf8(w, m->groups[i]);
	}
	w_str(w, "]");
	if (m->scope && m->scope[0]) {
		w_str(w, ",\"scope\":");
		ok &= w_json_utf8(w, m->scope);
	}
	w_str(w, ",\"iat\":");
	w_i64(w, m->now);
	w_str(w, ",\"exp\":");
	w_i64(w, m->now + m->ttl);
	w_str(w, ",\"jti\":\"");
	w_put(w, jti, sizeof jti);
	w_str(w, "\"}");
	return ok && !w->overflow;
}

/* The ES256 signature (r || s) of msg[0..n) by the signer, made with a key of this thread. */
static bool es256_sign(const struct jwt_signer *s, struct jwt_rng *rng, const char *msg, size_t n,
		       unsigned char sig[2 * P256_BYTES])
{
	unsigned char digest[WC_SHA256_DIGEST_SIZE];
	ecc_key key;
	mp_int r, sv;
	if (wc_Sha256Hash((const byte *)msg, (word32)n, digest) != 0 || wc_ecc_init(&key) != 0)
		return false;
	bool ok = false;
	if (mp_init(&r) == MP_OKAY) {
		if (mp_init(&sv) == MP_OKAY) {
			ok = wc_ecc_import_unsigned(&key, s->x, s->y, s->d, ECC_SECP256R1) == 0 &&
			     wc_ecc_set_rng(&key, &rng->rng) == 0 &&
			     wc_ecc_sign_hash_ex(digest, sizeof digest, &rng->rng, &key, &r, &sv) == 0 &&
			     mp_to_unsigned_bin_len(&r, sig, P256_BYTES) == MP_OKAY &&
			     mp_to_unsigned_bin_len(&sv, sig + P256_BYTES, P256_BYTES) == MP_OKAY;
			mp_clear(&sv);
		}
		mp_clear(&r);
	}
	wc_ecc_free(&key);
	return ok;
}

size_t jwt_sign_es256(const struct jwt_signer *s, struct jwt_rng *rng, const struct jwt_mint *m,
		      char *out, size_t cap)
{
	char header[128], claims[DECODED_MAX];
	struct writer h = writer_init(header, sizeof header);
	w_str(&h, "{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"");
	w_str(&h, s->kid);
	w_str(&h, "\"}");
	struct writer c = writer_init(claims, sizeof claims);
	if (h.overflow || cap == 0 || !w_claims(&c, rng, m))
		return 0;
	struct writer w = writer_init(out, cap - 1);
	w_b64url(&w, (const unsigned char *)header, h.len);
	w_put(&w, ".", 1);
	w_b64url(&w, (const unsigned char *)claims, c.len);
	unsigned char sig[2 * P256_BYTES];
	if (w.overflow || !es256_sign(s, rng, out, w.len, sig))
		return 0;
	w_put(&w, ".", 1);
	w_b64url(&w, sig, sizeof sig);
	if (w.overflow)
		return 0;
	out[w.len] = '\0';
	return w.len;
}
