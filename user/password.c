/* password.c — PBKDF2-HMAC-SHA256 password hashes (password.h), with wolfCrypt. */
#include "password.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/pwdbased.h>
#include <wolfssl/wolfcrypt/random.h>

#define PREFIX "pbkdf2-sha256:"
#define SALT_MIN 8u
#define SALT_MADE 16u

/* The standard base64 text [s, end) into out (at most cap bytes): its length, or 0. */
static uint32_t decode(const char *s, const char *end, uint8_t *out, uint32_t cap)
{
	word32 n = cap;
	if (end <= s || Base64_Decode((const byte *)s, (word32)(end - s), out, &n) != 0)
		return 0;
	return n;
}

bool password_hash_parse(const char *s, struct password_hash *out, const char **why)
{
	memset(out, 0, sizeof *out);
	if (strncmp(s, PREFIX, sizeof PREFIX - 1)) {
		*why = "expected pbkdf2-sha256:<iterations>:<salt base64>:<hash base64>";
		return false;
	}
	s += sizeof PREFIX - 1;
	char *end;
	unsigned long it = strtoul(s, &end, 10);
	if (end == s || *end != ':' || *s < '0' || *s > '9' || it < PASSWORD_MIN_ITERATIONS ||
	    it > PASSWORD_MAX_ITERATIONS) {
		*why = "iterations: expected a whole number from 1000 to 10000000";
		return false;
	}
	out->iterations = (uint32_t)it;
	const char *salt = end + 1, *colon = strchr(salt, ':');
	uint8_t scratch[PASSWORD_SALT_MAX + 3];
	uint32_t n = colon ? decode(salt, colon, scratch, sizeof scratch) : 0;
	if (n < SALT_MIN || n > PASSWORD_SALT_MAX) {
		*why = "salt: expected 8 to 64 bytes in base64";
		return false;
	}
	memcpy(out->salt, scratch, n);
	out->salt_len = n;
	const char *hash = colon + 1;
	if (decode(hash, hash + strlen(hash), scratch, sizeof scratch) != PASSWORD_HASH_LEN) {
		*why = "hash: expected the 32 bytes of PBKDF2-HMAC-SHA256 in base64";
		return false;
	}
	memcpy(out->hash, scratch, PASSWORD_HASH_LEN);
	return true;
}

static bool derive(const uint8_t *salt, uint32_t salt_len, uint32_t iterations,
		   const char *password, size_t len, uint8_t out[PASSWORD_HASH_LEN])
{
	return len <= INT32_MAX &&
	       wc_PBKDF2(out, (const byte *)password, (int)len, salt, (int)salt_len, (int)iterations,
			 PASSWORD_HASH_LEN, WC_SHA256) == 0;
}

bool password_verify(const struct password_hash *h, const char *password, size_t len)
{
	uint8_t got[PASSWORD_HASH_LEN];
	if (!derive(h->salt, h->salt_len, h->iterations, password, len, got))
		return false;
	uint8_t diff = 0;
	for (uint32_t i = 0; i < PASSWORD_HASH_LEN; i++)
		diff |= got[i] ^ h->hash[i];
	return diff == 0;
}

/* Standard base64 of in into out, NUL-terminated, without the line breaks: its length, or 0. */
static size_t encode(const uint8_t *in, uint32_t n, char *out, size_t cap)
{
	word32 len = (word32)cap;
	if (Base64_Encode_NoNl(in, n, (byte *)out, &len) != 0 || len >= cap)
		return 0;
	out[len] = '\0';
	return len;
}

bool password_hash_make(const char *password, size_t len, uint32_t iterations, char *out,
			size_t cap)
{
	uint8_t salt[SALT_MADE], hash[PASSWORD_HASH_LEN];
	WC_RNG rng;
	if (wc_InitRng(&rng) != 0)
		return false;
	int rc = wc_RNG_GenerateBlock(&rng, salt, sizeof salt);
	wc_FreeRng(&rng);
	if (rc != 0 || !derive(salt, sizeof salt, iterations, password, len, hash))
		return false;
	char salt64[32], hash64[64];
	if (!encode(salt, sizeof salt, salt64, sizeof salt64) ||
	    !encode(hash, sizeof hash, hash64, sizeof hash64))
		return false;
	int n = snprintf(out, cap, PREFIX "%u:%s:%s", iterations, salt64, hash64);
	return n > 0 && (size_t)n < cap;
}
