/* identity.h — the identity token: the gateway tells each upstream who called with a JWT it signs
 * itself (ES256), so services verify it against the gateway's published JWKS instead of trusting
 * headers. Owns the identity_token section (identity_config.c: the signing key from key_file, or
 * one generated at the first load and kept for the process's life, so reloads keep tokens
 * verifiable; the header, ttl, issuer, per_request, jwks_path) and the minting (identity.c): one
 * token per identity and upstream, reused by a worker for up to half its ttl unless per_request. */
#ifndef RINGWAY_IDENTITY_H
#define RINGWAY_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "jwt.h"

struct writer;

struct rw_identity_token {
	bool enabled;             /* the section is present */
	char *key_file;           /* NULL: the process's generated key */
	char *header;             /* default X-Access-Token */
	uint32_t ttl_ms;          /* default 60 s */
	char *issuer;             /* default "ringway" */
	bool per_request;         /* a new token (and jti) for every request */
	char *jwks_path;          /* NULL: the JWKS only on the admin listener */
	struct jwt_signer *signer; /* loaded from key_file (owned), or the generated one (not) */
	char *jwks;               /* the signer's public key as a JWKS document */
	size_t jwks_len;
};

struct config_section;
extern const struct config_section identity_token_section;

/* One worker's minting state: its random generator and its cache of tokens. */
struct identity_minter;
struct identity_minter *identity_minter_new(void);
void identity_minter_free(struct identity_minter *m);

/* Writes the header line "<header>: <token>\r\n" for who, audience (the upstream's name), under
 * configuration generation gen, into o: false when the token could not be made (the caller
 * answers 500 rather than send a request without it). */
bool identity_write_token(struct identity_minter *m, const struct rw_identity_token *it,
			  uint64_t gen, const struct auth_identity *who, const char *audience,
			  uint32_t audience_index, struct writer *o);

#endif
