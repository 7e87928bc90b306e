/* tls.c — TLS with wolfSSL (see tls.h): process set-up and the session-ticket keys; server
 * contexts (one per certificate, chosen by the ClientHello's SNI before wolfSSL sees it) and
 * client contexts; and the TLS transport: ciphertext received is queued in the socket's state and
 * handed to wolfSSL by its I/O callbacks, plaintext goes to s->in; s->out is encrypted a batch at
 * a time and kept until its ciphertext is sent (so an owner's "nothing left to send" still means
 * on the wire); a plaintext HTTP request on a TLS port is refused in plaintext. */
#include "tls.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>

#include "log.h"
#include "loop.h"
#include "metrics.h"
#include "sock.h"

/* TLS 1.3 suites, then TLS 1.2's ECDHE ones: forward secrecy and AEAD only. AES-GCM first: with
 * AES-NI it is several times faster than ChaCha20-Poly1305 here (perf/RESULTS.md); a client
 * without AES hardware lists ChaCha first and gets it. */
static const char SUITES[] =
	"TLS13-AES128-GCM-SHA256:TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

/* Key exchange groups: X25519 first (the fastest here), then the NIST curves every client has. */
static int GROUPS[] = { WOLFSSL_ECC_X25519, WOLFSSL_ECC_SECP256R1, WOLFSSL_ECC_SECP384R1 };

#define SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#define TLS_BATCH (4u * 16384)   /* plaintext encrypted per send */
#define RECORD_MAX (16384u + 2048u)

/* ---- process ---------------------------------------------------------------------------------- */

struct ticket_key {
	unsigned char name[WOLFSSL_TICKET_NAME_SZ];
	unsigned char key[CHACHA20_POLY1305_AEAD_KEYSIZE];
};

/* Three slots: the current key, the one before (still decrypts), and the next one being made. */
static struct ticket_key ticket_keys[3];
static atomic_uint ticket_gen;
static atomic_bool initialized;

void tls_rotate_ticket_keys(void)
{
	unsigned g = atomic_load(&ticket_gen) + 1;
	struct ticket_key *k = &ticket_keys[g % 3];
	if (getrandom(k, sizeof *k, 0) != (ssize_t)sizeof *k) {
		log_error("tls: no randomness for a new session-ticket key: keeping the current one");
		return;
	}
	atomic_store_explicit(&ticket_gen, g, memory_order_release);
}

int tls_init(void)
{
	static atomic_flag once = ATOMIC_FLAG_INIT;
	if (atomic_flag_test_and_set(&once)) {
		while (!atomic_load(&initialized))
			;
		return 0;
	}
	if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
		log_error("tls: wolfSSL_Init failed");
		atomic_store(&initialized, true);
		return -1;
	}
	tls_rotate_ticket_keys();
	tls_rotate_ticket_keys(); /* two generations: the first rotation already has a "before" */
	atomic_store(&initialized, true);
	return 0;
}

/* Session tickets: ChaCha20-Poly1305 under the current key, the key's name as associated data;
 * a ticket under the key before is still taken, and replaced by a new one. */
static int ticket_cb(WOLFSSL *ssl, unsigned char name[WOLFSSL_TICKET_NAME_SZ],
		     unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
		     int enc, unsigned char *ticket, int len, int *out_len, void *ctx)
{
	unsigned g = atomic_load_explicit(&ticket_gen, memory_order_acquire);
	if (enc) {
		const struct ticket_key *k = &ticket_keys[g % 3];
		memcpy(name, k->name, WOLFSSL_TICKET_NAME_SZ);
		if (getrandom(iv, WOLFSSL_TICKET_IV_SZ, 0) != WOLFSSL_TICKET_IV_SZ)
			return WOLFSSL_TICKET_RET_FATAL;
		memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
		if (wc_ChaCha20Poly1305_Encrypt(k->key, iv, name, WOLFSSL_TICKET_NAME_SZ, ticket,
						(word32)len, ticket, mac))
			return WOLFSSL_TICKET_RET_FATAL;
		*out_len = len;
		return WOLFSSL_TICKET_RET_OK;
	}
	for (unsigned back = 0; back < 2; back++) {
		const struct ticket_key *k = &ticket_keys[(g + 3 - back) % 3];
		if (memcmp(name, k->name, WOLFSSL_TICKET_NAME_SZ))
			continue;
		if (wc_ChaCha20Poly1305_Decrypt(k->key, iv, name, WOLFSSL_TICKET_NAME_SZ, ticket,
						(word32)len, mac, ticket))
			return WOLFSSL_TICKET_RET_REJECT;
		*out_len = len;
		return back ? WOLFSSL_TICKET_RET_CREATE : WOLFSSL_TICKET_RET_OK;
	}
	return WOLFSSL_TICKET_RET_REJECT;
}

/* ---- contexts --------------------------------------------------------------------------------- */

#define NAMES_MAX 64

/* One certificate's context and the names it answers for. */
struct tls_cert {
	WOLFSSL_CTX *ctx;
	char *names[NAMES_MAX]; /* DNS names: exact, or "*.example.com" */
	unsigned nnames;
};

struct tls_server {
	struct tls_cert *certs; /* the first is the default */
	unsigned ncerts;
};

struct tls_client {
	WOLFSSL_CTX *ctx;
	char *sni;
};

static void error_text(int code, char *out, size_t cap)
{
	char buf[WOLFSSL_MAX_ERROR_SZ];
	wolfSSL_ERR_error_string_n((unsigned long)(code < 0 ? -code : code), buf, sizeof buf);
	snprintf(out, cap, "%s (%d)", buf, code);
}

/* The DNS names of the certificate in file (subject alternative names, else the CN). */
static int cert_names(struct tls_cert *c, const char *file, char *err, size_t errlen)
{
	WOLFSSL_X509 *x = wolfSSL_X509_load_certificate_file(file, WOLFSSL_FILETYPE_PEM);
	if (!x) {
		snprintf(err, errlen, "cannot read a PEM certificate from '%s'", file);
		return -1;
	}
	char *n;
	while ((n = wolfSSL_X509_get_next_altname(x)) && c->nnames < NAMES_MAX)
		c->names[c->nnames++] = strdup(n);
	if (c->nnames == 0 && (n = wolfSSL_X509_get_subjectCN(x)) && *n)
		c->names[c->nnames++] = strdup(n);
	wolfSSL_X509_free(x);
	return 0;
}

static int alpn_select(WOLFSSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	for (unsigned i = 0; i < inlen; i += 1u + in[i]) {
		if (in[i] == 8 && i + 9 <= inlen && !memcmp(in + i + 1, "http/1.1", 8)) {
			*out = in + i + 1;
			*outlen = 8;
			return 0; /* SSL_TLSEXT_ERR_OK */
		}
	}
	return 3; /* SSL_TLSEXT_ERR_NOACK: no protocol agreed, the handshake goes on */
}

static WOLFSSL_CTX *server_ctx(const struct rw_tls_server *cfg, const struct rw_tls_cert *c,
			       char *err, size_t errlen)
{
	WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
	int rc;
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((rc = wolfSSL_CTX_use_certificate_chain_file(ctx, c->cert)) != WOLFSSL_SUCCESS) {
		char why[128];
		error_text(rc, why, sizeof why);
		snprintf(err, errlen, "cannot load certificate '%s': %s", c->cert, why);
		goto fail;
	}
	if ((rc = wolfSSL_CTX_use_PrivateKey_file(ctx, c->key, WOLFSSL_FILETYPE_PEM)) != WOLFSSL_SUCCESS) {
		char why[128];
		error_text(rc, why, sizeof why);
		snprintf(err, errlen, "cannot load key '%s': %s", c->key, why);
		goto fail;
	}
	if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "key '%s' does not belong to certificate '%s'", c->key, c->cert);
		goto fail;
	}
	if (wolfSSL_CTX_SetMinVersion(ctx, cfg->min_version ? WOLFSSL_TLSV1_3 : WOLFSSL_TLSV1_2) !=
		    WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_cipher_list(ctx, SUITES) != WOLFSSL_SUCCESS ||
	    wolfSSL_CTX_set_groups(ctx, GROUPS, (int)(sizeof GROUPS / sizeof GROUPS[0])) !=
		    WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "this wolfSSL refuses TLS 1.2+ with the forward-secret suites");
		goto fail;
	}
	if (cfg->client_ca) {
		if ((rc = wolfSSL_CTX_load_verify_locations(ctx, cfg->client_ca, NULL)) != WOLFSSL_SUCCESS) {
			char why[128];
			error_text(rc, why, sizeof why);
			snprintf(err, errlen, "cannot load client_ca '%s': %s", cfg->client_ca, why);
			goto fail;
		}
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				       NULL);
	} else {
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	}
	static const unsigned char sid_ctx[] = "ringway";
	wolfSSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
	wolfSSL_CTX_set_TicketEncCb(ctx, ticket_cb);
	wolfSSL_CTX_set_TicketHint(ctx, (int)(TLS_TICKET_ROTATE_MS / 1000));
	wolfSSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	return ctx;
fail:
	wolfSSL_CTX_free(ctx);
	return NULL;
}

void tls_server_free(struct tls_server *srv)
{
	if (!srv)
		return;
	for (unsigned i = 0; i < srv->ncerts; i++) {
		if (srv->certs[i].ctx)
			wolfSSL_CTX_free(srv->certs[i].ctx);
		for (unsigned k = 0; k < srv->certs[i].nnames; k++)
			free(srv->certs[i].names[k]);
	}
	free(srv->certs);
	free(srv);
}

struct tls_server *tls_server_build(const struct rw_tls_server *cfg, char *err, size_t errlen,
				    int *bad_cert)
{
	struct tls_server *srv = calloc(1, sizeof *srv);
	if (!srv || !(srv->certs = calloc(cfg->ncerts, sizeof *srv->certs))) {
		free(srv);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (uint32_t i = 0; i < cfg->ncerts; i++) {
		struct tls_cert *c = &srv->certs[i];
		srv->ncerts++;
		if (!(c->ctx = server_ctx(cfg, &cfg->certs[i], err, errlen)) ||
		    cert_names(c, cfg->certs[i].cert, err, errlen)) {
			*bad_cert = (int)i;
			tls_server_free(srv);
			return NULL;
		}
	}
	return srv;
}

struct tls_client *tls_client_build(const struct rw_tls_client *cfg, char *err, size_t errlen)
{
	struct tls_client *cli = calloc(1, sizeof *cli);
	WOLFSSL_CTX *ctx = cli ? wolfSSL_CTX_new(wolfSSLv23_client_method()) : NULL;
	if (!ctx) {
		free(cli);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	cli->ctx = ctx;
	wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2);
	wolfSSL_CTX_set_cipher_list(ctx, SUITES);
	if (cfg->verify) {
		const char *ca = cfg->ca ? cfg->ca : SYSTEM_CA;
		int rc = wolfSSL_CTX_load_verify_locations(ctx, ca, NULL);
		if (rc != WOLFSSL_SUCCESS) {
			char why[128];
			error_text(rc, why, sizeof why);
			snprintf(err, errlen, "cannot load ca '%s': %s", ca, why);
			tls_client_free(cli);
			return NULL;
		}
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
	} else {
		wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
	}
	if (cfg->sni && !(cli->sni = strdup(cfg->sni))) {
		tls_client_free(cli);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return cli;
}

void tls_client_free(struct tls_client *cli)
{
	if (!cli)
		return;
	if (cli->ctx)
		wolfSSL_CTX_free(cli->ctx);
	free(cli->sni);
	free(cli);
}

/* The context whose certificate answers for name: exact, then "*." one label deep, else the
 * default. */
static WOLFSSL_CTX *pick_cert(const struct tls_server *srv, const char *name)
{
	if (name && *name) {
		for (unsigned i = 0; i < srv->ncerts; i++)
			for (unsigned k = 0; k < srv->certs[i].nnames; k++)
				if (!strcasecmp(srv->certs[i].names[k], name))
					return srv->certs[i].ctx;
		const char *dot = strchr(name, '.');
		for (unsigned i = 0; dot && i < srv->ncerts; i++)
			for (unsigned k = 0; k < srv->certs[i].nnames; k++) {
				const char *n = srv->certs[i].names[k];
				if (n[0] == '*' && n[1] == '.' && !strcasecmp(n + 1, dot))
					return srv->certs[i].ctx;
			}
	}
	return srv->certs[0].ctx;
}

/* ---- the transport ---------------------------------------------------------------------------- */

enum tls_state {
	T_SNIFF = 0,      /* server: waiting for the ClientHello's first record */
	T_HANDSHAKE,
	T_OPEN,
	T_REFUSING,       /* not TLS (plaintext HTTP): s->out goes out as it is, then the end */
	T_FAILED,
};

struct tls_conn {
	WOLFSSL *ssl;
	struct loop *loop;
	struct sock *s;
	struct tls_server *srv;     /* server side */
	struct tls_client *cli;     /* client side */
	uint8_t state;
	bool started;               /* client: the ClientHello is out */
	bool fin_pending;           /* shut the write side once cout is sent */
	struct segq cin;            /* ciphertext received, not yet taken by wolfSSL */
	struct segq cout;           /* ciphertext to send */
	uint64_t batch;             /* bytes at the front of s->out whose ciphertext is in cout */
	char *peer_cn;              /* the verified client certificate's subject CN */
};

static int io_recv(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_conn *t = ctx;
	struct bufs *b = &t->loop->bufs;
	int n = 0;
	while (n < sz && t->cin.bytes) {
		struct seg *g = t->cin.head;
		uint32_t take = g->len < (uint32_t)(sz - n) ? g->len : (uint32_t)(sz - n);
		memcpy(buf + n, seg_ptr(b, g), take);
		segq_consume(b, &t->cin, take);
		n += (int)take;
	}
	return n ? n : WOLFSSL_CBIO_ERR_WANT_READ;
}

static int io_send(WOLFSSL *ssl, char *buf, int sz, void *ctx)
{
	struct tls_conn *t = ctx;
	struct bufs *b = &t->loop->bufs;
	int n = 0;
	struct seg *tail = t->cout.tail;
	/* fill the last buffer first: records are small and many */
	if (tail && tail->id >= b->ring_n && tail->off == 0) {
		uint32_t room = buf_cap(b, tail->id) - tail->len;
		uint32_t take = room < (uint32_t)sz ? room : (uint32_t)sz;
		memcpy(buf_ptr(b, tail->id) + tail->len, buf, take);
		tail->len += take;
		t->cout.bytes += take;
		n += (int)take;
	}
	while (n < sz) {
		uint32_t id = buf_heap_get(b);
		if (id == UINT32_MAX)
			return n ? n : WOLFSSL_CBIO_ERR_GENERAL;
		uint32_t take = buf_cap(b, id) < (uint32_t)(sz - n) ? buf_cap(b, id) : (uint32_t)(sz - n);
		memcpy(buf_ptr(b, id), buf + n, take);
		if (!segq_push(b, &t->cout, id, 0, take))
			return n ? n : WOLFSSL_CBIO_ERR_GENERAL;
		n += (int)take;
	}
	return n;
}

static void tls_release(struct loop *l, struct sock *s);

static struct tls_conn *conn_new(struct loop *l, struct sock *s)
{
	struct tls_conn *t = calloc(1, sizeof *t);
	if (!t)
		return NULL;
	t->loop = l;
	t->s = s;
	s->tx = &transport_tls;
	s->tx_state = t;
	return t;
}

static int attach_ssl(struct tls_conn *t, WOLFSSL_CTX *ctx)
{
	t->ssl = wolfSSL_new(ctx);
	if (!t->ssl)
		return -ENOMEM;
	wolfSSL_SSLSetIORecv(t->ssl, io_recv);
	wolfSSL_SSLSetIOSend(t->ssl, io_send);
	wolfSSL_SetIOReadCtx(t->ssl, t);
	wolfSSL_SetIOWriteCtx(t->ssl, t);
	return 0;
}

int tls_accept(struct loop *l, struct sock *s, struct tls_server *srv)
{
	struct tls_conn *t = conn_new(l, s);
	if (!t)
		return -ENOMEM;
	t->srv = srv;
	return 0;
}

int tls_connect(struct loop *l, struct sock *s, struct tls_client *cli)
{
	struct tls_conn *t = conn_new(l, s);
	if (!t)
		return -ENOMEM;
	if (attach_ssl(t, cli->ctx)) {
		tls_release(l, s);
		s->tx = &transport_plain;
		return -ENOMEM;
	}
	t->cli = cli;
	t->state = T_HANDSHAKE;
	if (cli->sni) {
		wolfSSL_UseSNI(t->ssl, WOLFSSL_SNI_HOST_NAME, cli->sni, (unsigned short)strlen(cli->sni));
		wolfSSL_check_domain_name(t->ssl, cli->sni);
	}
	return 0;
}

const char *tls_peer_cn(const struct sock *s)
{
	const struct tls_conn *t = s->tx == &transport_tls ? s->tx_state : NULL;
	return t ? t->peer_cn : NULL;
}

static void count(struct tls_conn *t, enum tls_count what)
{
	if (t->loop->tls_counts)
		stat_add(&t->loop->tls_counts[what], 1);
}

/* Sends what is in cout (one send or sendmsg), if anything and nothing is in flight. */
static void send_cout(struct loop *l, struct sock *s, struct tls_conn *t)
{
	if (s->send_busy)
		return;
	if (t->cout.bytes == 0) {
		if (t->fin_pending) {
			t->fin_pending = false;
			shutdown(s->fd, SHUT_WR);
		}
		return;
	}
	transport_send_queue(l, s, &t->cout);
}

static const char *peer_of(const struct tls_conn *t)
{
	return t->srv ? "client" : "upstream";
}

static void handshake_failed(struct tls_conn *t, int ret)
{
	char why[128];
	error_text(wolfSSL_get_error(t->ssl, ret), why, sizeof why);
	log_info("tls: handshake with %s failed: %s", peer_of(t), why);
	count(t, TLS_FAILED);
	t->state = T_FAILED;
}

/* The handshake goes as far as the bytes allow. 0, or -EPROTO once it failed. */
static int handshake(struct loop *l, struct sock *s, struct tls_conn *t)
{
	int ret = t->srv ? wolfSSL_accept(t->ssl) : wolfSSL_connect(t->ssl);
	if (ret != WOLFSSL_SUCCESS) {
		int e = wolfSSL_get_error(t->ssl, ret);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE) {
			send_cout(l, s, t);
			return 0;
		}
		handshake_failed(t, ret);
		send_cout(l, s, t); /* the alert, if it fits before the close */
		return -EPROTO;
	}
	t->state = T_OPEN;
	count(t, wolfSSL_session_reused(t->ssl) ? TLS_RESUMED : TLS_FULL);
	if (t->srv) { /* a client certificate: verified against client_ca, or none asked */
		WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(t->ssl);
		if (peer) {
			const char *cn = wolfSSL_X509_get_subjectCN(peer);
			if (cn && *cn)
				t->peer_cn = strdup(cn);
			wolfSSL_X509_free(peer);
		}
	}
	return 0;
}

/* Copies the first n bytes of q into dst without consuming them; returns how many there were. */
static uint32_t peek(const struct bufs *b, const struct segq *q, unsigned char *dst, uint32_t n)
{
	uint32_t have = 0;
	for (const struct seg *g = q->head; g && have < n; g = g->next) {
		uint32_t take = g->len < n - have ? g->len : n - have;
		memcpy(dst + have, seg_ptr(b, g), take);
		have += take;
	}
	return have;
}

/* The server's first look at the connection: a TLS handshake record, whose ClientHello's SNI
 * picks the certificate; plaintext HTTP (refused in plaintext by the owner); or garbage. */
static int sniff(struct loop *l, struct sock *s, struct tls_conn *t)
{
	static _Thread_local unsigned char hello[5 + RECORD_MAX];
	struct bufs *b = &l->bufs;
	if (peek(b, &t->cin, hello, 1) && hello[0] != 0x16) {
		if (hello[0] >= 'A' && hello[0] <= 'Z') {
			log_info("tls: plaintext HTTP on a TLS port: answered 400, closing");
			t->state = T_REFUSING;
			segq_clear(b, &t->cin);
			return -EPROTONOSUPPORT;
		}
		log_info("tls: not a TLS handshake from the client (first byte 0x%02x): closing", hello[0]);
		count(t, TLS_FAILED);
		t->state = T_FAILED;
		return -EPROTO;
	}
	if (peek(b, &t->cin, hello, 5) < 5)
		return 0;
	uint32_t want = 5 + ((uint32_t)hello[3] << 8 | hello[4]);
	if (want > sizeof hello) {
		log_info("tls: a ClientHello record of %u bytes: closing", want - 5);
		count(t, TLS_FAILED);
		t->state = T_FAILED;
		return -EPROTO;
	}
	if (peek(b, &t->cin, hello, want) < want)
		return 0; /* the rest of the record comes later */
	unsigned char name[256];
	unsigned int len = sizeof name - 1;
	if (wolfSSL_SNI_GetFromBuffer(hello, want, WOLFSSL_SNI_HOST_NAME, name, &len) != WOLFSSL_SUCCESS)
		len = 0;
	name[len] = 0;
	if (attach_ssl(t, pick_cert(t->srv, (const char *)name)))
		return -ENOMEM;
	t->state = T_HANDSHAKE;
	return 0;
}

/* Decrypted application data into s->in: heap buffers, several reads to one while it has room. */
static int read_plaintext(struct loop *l, struct sock *s, struct tls_conn *t)
{
	struct bufs *b = &l->bufs;
	uint32_t id = UINT32_MAX, used = 0;
	for (;;) {
		if (id == UINT32_MAX || buf_cap(b, id) - used < 2048) {
			if (id != UINT32_MAX)
				buf_unref(b, id);
			if ((id = buf_heap_get(b)) == UINT32_MAX)
				return -ENOMEM;
			used = 0;
		}
		int n = wolfSSL_read(t->ssl, buf_ptr(b, id) + used, (int)(buf_cap(b, id) - used));
		if (n > 0) {
			buf_ref(b, id);
			if (!segq_push(b, &s->in, id, used, (uint32_t)n)) { /* it let its reference go */
				buf_unref(b, id);
				return -ENOMEM;
			}
			used += (uint32_t)n;
			continue;
		}
		buf_unref(b, id);
		int e = wolfSSL_get_error(t->ssl, n);
		if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
			return 0;
		if (e == WOLFSSL_ERROR_ZERO_RETURN) /* close_notify */
			return TRANSPORT_EOF;
		char why[128];
		error_text(e, why, sizeof why);
		log_info("tls: reading from %s: %s", peer_of(t), why);
		t->state = T_FAILED;
		return -EPROTO;
	}
}

static int tls_received(struct loop *l, struct sock *s, uint32_t bid, uint32_t len)
{
	struct tls_conn *t = s->tx_state;
	if (t->state == T_REFUSING || t->state == T_FAILED) {
		buf_unref(&l->bufs, bid);
		return 0;
	}
	if (!segq_push(&l->bufs, &t->cin, bid, 0, len)) /* a failed push let bid go */
		return -ENOMEM;
	int ret = 0;
	if (t->state == T_SNIFF && ((ret = sniff(l, s, t)) || t->state == T_SNIFF))
		return ret;
	if (t->state == T_HANDSHAKE) {
		if ((ret = handshake(l, s, t)))
			return ret;
		if (t->state != T_OPEN)
			return 0;
		transport_tls.flush(l, s); /* a client's request waiting for the handshake */
	}
	ret = read_plaintext(l, s, t);
	send_cout(l, s, t); /* what reading made wolfSSL answer (tickets, key updates) */
	return ret;
}

/* Encrypts the next batch of s->out (left in place until its ciphertext is sent). */
static int encrypt_batch(struct loop *l, struct sock *s, struct tls_conn *t)
{
	static _Thread_local char plain[16384];
	struct bufs *b = &l->bufs;
	uint32_t fill = 0;
	for (struct seg *g = s->out.head; g && t->batch < TLS_BATCH; g = g->next) {
		for (uint32_t off = 0; off < g->len;) {
			uint32_t take = g->len - off < sizeof plain - fill ? g->len - off : sizeof plain - fill;
			memcpy(plain + fill, seg_ptr(b, g) + off, take);
			fill += take;
			off += take;
			t->batch += take;
			if (fill == sizeof plain || (!g->next && off == g->len)) {
				if (wolfSSL_write(t->ssl, plain, (int)fill) != (int)fill)
					return -1;
				fill = 0;
			}
		}
	}
	if (fill && wolfSSL_write(t->ssl, plain, (int)fill) != (int)fill)
		return -1;
	return 0;
}

static void tls_flush(struct loop *l, struct sock *s)
{
	struct tls_conn *t = s->tx_state;
	if (t->state == T_REFUSING) { /* the plaintext answer to a plaintext request */
		if (s->out.bytes)
			transport_send_queue(l, s, &s->out);
		return;
	}
	if (t->state == T_HANDSHAKE && t->cli && !t->started) {
		t->started = true;
		if (handshake(l, s, t)) {
			shutdown(s->fd, SHUT_RDWR); /* the owner hears of it from the recv */
			return;
		}
	}
	if (t->state == T_OPEN && !s->send_busy && t->cout.bytes == 0 && s->out.bytes > t->batch &&
	    encrypt_batch(l, s, t)) {
		log_error("tls: encrypting for %s failed: closing", peer_of(t));
		t->state = T_FAILED;
		shutdown(s->fd, SHUT_RDWR);
		return;
	}
	send_cout(l, s, t);
}

static void tls_sent(struct loop *l, struct sock *s, uint32_t res)
{
	struct tls_conn *t = s->tx_state;
	if (t->state == T_REFUSING) {
		segq_consume(&l->bufs, &s->out, res);
	} else {
		segq_consume(&l->bufs, &t->cout, res);
		if (t->cout.bytes == 0 && t->batch) { /* the batch is on the wire */
			segq_consume(&l->bufs, &s->out, t->batch);
			t->batch = 0;
		}
	}
	transport_release_sendctx(l, s);
}

static void tls_shutdown_write(struct loop *l, struct sock *s)
{
	struct tls_conn *t = s->tx_state;
	if (t->state == T_OPEN)
		wolfSSL_shutdown(t->ssl); /* close_notify into cout */
	t->fin_pending = true;
	if (!s->send_busy)
		send_cout(l, s, t);
}

void tls_peer_closed(struct sock *s)
{
	struct tls_conn *t = s->tx == &transport_tls ? s->tx_state : NULL;
	if (!t || (t->state != T_SNIFF && t->state != T_HANDSHAKE))
		return;
	log_info("tls: %s closed the connection during the handshake (%llu bytes of it received)",
		 peer_of(t), (unsigned long long)t->cin.bytes);
	count(t, TLS_FAILED);
	t->state = T_FAILED;
}

static bool tls_ready(const struct sock *s)
{
	const struct tls_conn *t = s->tx_state;
	return t->state == T_OPEN || t->state == T_REFUSING;
}

static void tls_release(struct loop *l, struct sock *s)
{
	struct tls_conn *t = s->tx_state;
	if (!t)
		return;
	if (t->ssl)
		wolfSSL_free(t->ssl);
	segq_clear(&l->bufs, &t->cin);
	segq_clear(&l->bufs, &t->cout);
	free(t->peer_cn);
	free(t);
	s->tx_state = NULL;
}

const struct transport_ops transport_tls = {
	.name = "tls",
	.received = tls_received,
	.flush = tls_flush,
	.sent = tls_sent,
	.shutdown_write = tls_shutdown_write,
	.ready = tls_ready,
	.release = tls_release,
	.splice_ok = false,
	.secure = true,
};
