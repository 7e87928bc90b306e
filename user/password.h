/* password.h — owns Basic passwords as stored in the configuration: "pbkdf2-sha256:<iterations>:
 * <salt>:<hash>" (salt and hash in standard base64; the hash is PBKDF2-HMAC-SHA256 of the password
 * with that salt and iteration count, 32 bytes), read, checked against a password in constant
 * time, and made for `ringway hash-password`. */
#ifndef RINGWAY_PASSWORD_H
#define RINGWAY_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSWORD_SALT_MAX      64u
#define PASSWORD_HASH_LEN      32u
#define PASSWORD_MIN_ITERATIONS 1000u
#define PASSWORD_MAX_ITERATIONS 10000000u
#define PASSWORD_ITERATIONS    100000u /* what hash-password uses */
#define PASSWORD_TEXT_MAX      192u    /* a hash as text, with the NUL */

struct password_hash {
	uint32_t iterations;
	uint32_t salt_len;
	uint8_t salt[PASSWORD_SALT_MAX];
	uint8_t hash[PASSWORD_HASH_LEN];
};

/* Reads s into out; false with the reason in *why when it is not written as above (iterations
 * within PASSWORD_MIN_ITERATIONS..PASSWORD_MAX_ITERATIONS, a salt of 8 to 64 bytes). */
bool password_hash_parse(const char *s, struct password_hash *out, const char **why);
/* Whether password[0..len) hashes to h (the comparison takes the same time wherever it differs). */
bool password_verify(const struct password_hash *h, const char *password, size_t len);
/* The text of a new hash of password with a random 16-byte salt into out (PASSWORD_TEXT_MAX
 * bytes); false when no random salt or hash could be had. */
bool password_hash_make(const char *password, size_t len, uint32_t iterations, char *out,
			size_t cap);

#endif
