/* proxy.h — an exchange: one client request and its upstream leg. Builds the upstream request head
 * (path rewrite, hop-by-hop headers removed, X-Forwarded-*, Via), streams the body both ways
 * (Content-Length, chunked, until close) with backpressure, relays the response head, retries an
 * idempotent request once when a pooled connection turns out closed, and maps every upstream
 * failure and timeout to its reason. */
#ifndef RINGWAY_PROXY_H
#define RINGWAY_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "http1.h"
#include "reason.h"
#include "splice.h"

struct client;
struct upconn;
struct worker;

struct exchange {
	struct exchange *next_free;
	struct client *c;
	struct upconn *u;
	const struct rw_route *route;
	const struct rw_upstream *ups;
	enum rw_reason reason;
	uint8_t method_id;
	uint8_t method_len;
	char method[16];
	uint16_t path_len;
	char path[256];        /* for the access log (truncated) */
	bool client_keep_alive;
	bool client_http10;
	/* request body */
	bool req_chunked;
	bool req_has_body;
	bool req_done;         /* every request byte is queued to the upstream */
	int64_t req_remaining; /* Content-Length bytes still to forward */
	struct chunk_scanner req_cs;
	struct splice_leg req_leg;
	uint32_t req_head_id;  /* the built upstream head, kept for a retry */
	uint32_t req_head_len;
	bool retried;
	/* response */
	uint8_t resp_mode;     /* enum resp_mode */
	bool resp_keep_alive;  /* the upstream connection may be reused after this response */
	bool resp_started;     /* a response head was queued to the client */
	uint16_t status;
	int64_t resp_remaining;
	struct chunk_scanner resp_cs;
	struct splice_leg resp_leg;
	const char *upstream_text; /* the target that answered, for the log */
	/* accounting */
	uint64_t t_start_ns, t_upstream_ns, t_upstream_done_ns;
	uint64_t bytes_in, bytes_out_queued;
};

/* Routes the parsed request in w->req and, if it can be proxied, starts the exchange: builds the
 * upstream head, acquires a connection, sends. On refusal answers the client itself. */
void proxy_start(struct client *c, uint32_t head_len);
void proxy_on_upstream_connected(struct exchange *x);
void proxy_on_upstream_data(struct exchange *x);
void proxy_on_upstream_eof(struct exchange *x, int err);
void proxy_on_upstream_timeout(struct exchange *x);
void proxy_on_upstream_drained(struct exchange *x);
void proxy_on_client_drained(struct exchange *x);
/* A splice on s ended (is_in: source side) with res. */
void proxy_on_splice(struct sock *s, bool is_in, int res);
/* s's recv stopped after a pause: a splice waiting for that may start. */
void proxy_on_recv_stopped(struct sock *s);
/* The client went away mid-exchange: drop the upstream leg. */
void proxy_abort(struct exchange *x);
void exchange_free(struct worker *w, struct exchange *x);
uint64_t now_ns(void);

#endif
