/* tls.h — TLS with wolfSSL: the listen entries' and upstreams' tls sections (tls_config.c reads
 * them), the contexts compiled from them (certificates chosen by SNI, TLS 1.2 and 1.3 only,
 * forward-secret AEAD suites, session tickets under keys shared by every worker and rotated on a
 * schedule), and the TLS transport (transport.h): wolfSSL driven through custom I/O callbacks over
 * the socket's own segment queues, so the worker's ring does every read and write. */
#ifndef RINGWAY_TLS_H
#define RINGWAY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "transport.h"

struct loop;
struct sock;
struct tls_server;
struct tls_client;
struct loader;
struct rule;

/* One certificate of a listen address, with its key. */
struct rw_tls_cert {
	char *cert;            /* PEM file: the certificate, then its chain */
	char *key;             /* PEM file */
};

/* A listen entry's tls section. */
struct rw_tls_server {
	struct rw_tls_cert *certs; /* the first is the default (no SNI, or no name matches) */
	uint32_t ncerts;
	uint8_t min_version;       /* 0: TLS 1.2, 1: TLS 1.3 */
	char *client_ca;           /* mTLS: client certificates are required and verified; NULL: none */
	uint32_t handshake_timeout_ms;
	uint32_t hsts_max_age;     /* seconds; 0: no Strict-Transport-Security header */
	bool hsts_subdomains;
	char hsts_header[96];      /* "max-age=...; includeSubDomains", built when read */
	struct tls_server *rt;     /* the contexts (built when the section is read) */
};

/* An upstream's tls section: TLS to its targets. */
struct rw_tls_client {
	bool verify;               /* the target's certificate chain is checked (against ca) */
	char *ca;                  /* PEM bundle; NULL: the system's (/etc/ssl/certs) */
	char *sni;                 /* server name sent and checked; NULL: none sent, not checked */
	struct tls_client *rt;
};

/* wolfSSL set up once for the process, and the first session-ticket keys. 0 or -1 (logged). */
int tls_init(void);
/* A new ticket key becomes current; the one before still decrypts (the control thread calls it
 * every TLS_TICKET_ROTATE_MS: a ticket is good for at most twice that). */
void tls_rotate_ticket_keys(void);
#define TLS_TICKET_ROTATE_MS (3600u * 1000u)

/* Config reading (tls_config.c): the tls mapping of a listen entry or an upstream, contexts
 * built (a certificate or key that cannot be loaded is an error at its key, naming the file). */
struct rw_tls_server *tls_config_server(struct loader *ld, void *node);
struct rw_tls_client *tls_config_client(struct loader *ld, void *node);
void tls_server_config_free(struct rw_tls_server *t);
void tls_client_config_free(struct rw_tls_client *t);

/* Contexts (tls.c). NULL with why in err. */
struct tls_server *tls_server_build(const struct rw_tls_server *cfg, char *err, size_t errlen,
				    int *bad_cert);
void tls_server_free(struct tls_server *srv);
struct tls_client *tls_client_build(const struct rw_tls_client *cfg, char *err, size_t errlen);
void tls_client_free(struct tls_client *cli);

/* The TLS transport. */
extern const struct transport_ops transport_tls;
/* Makes s (accepted, not yet reading) a TLS server connection of srv. -ENOMEM. */
int tls_accept(struct loop *l, struct sock *s, struct tls_server *srv);
/* Makes s (connecting) a TLS client connection of cli: the handshake starts once it is
 * connected, and what is queued goes once it is done. -ENOMEM. */
int tls_connect(struct loop *l, struct sock *s, struct tls_client *cli);
/* The peer ended the stream (a plain EOF, not a close_notify): during a handshake that is a
 * failed handshake, logged and counted. */
void tls_peer_closed(struct sock *s);
/* The verified client certificate's subject common name, or NULL (no mTLS, no CN, or plain). */
const char *tls_peer_cn(const struct sock *s);

/* The handshake counters a worker's loop points at (loop.tls_counts, metrics.h). */
enum tls_count { TLS_FULL = 0, TLS_RESUMED, TLS_FAILED, TLS_COUNTS };

#endif
