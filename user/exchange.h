/* exchange.h — one client request and what answers it: it owns its parsed head (a reference on
 * the buffer the head's slices point into, so it can wait and resume), its trace and request id
 * (what the upstream, the client's answer and the access log carry), the snapshot it started
 * on, the route's stages and where it is in them, the request body and its pump (into the
 * upstream leg, through the ring or spliced), its upstream leg(s), and its accounting for the
 * access log. The client connection (conn.h) gives it a narrow downstream API. */
#ifndef RINGWAY_EXCHANGE_H
#define RINGWAY_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "cors.h"
#include "http1.h"
#include "log.h"
#include "proxy.h"
#include "reason.h"
#include "splice.h"
#include "trace.h"

struct client;
struct sock;
struct shard;
struct wsnap;
struct aggregate;

struct exchange {
	struct exchange *next_free;
	struct shard *sh;
	struct client *c;         /* downstream */
	struct sock *down;        /* the client's socket: its in holds the body, its out takes the answer */
	struct wsnap *snap;       /* the snapshot it started on (counted by the worker) */
	const struct rw_route *route;
	uint32_t next_stage;      /* index in route->stages of the stage to run next */
	const struct stage *waiting; /* the stage whose async result the exchange waits for */
	void *stage_state;        /* what that stage left with the exchange (its pending job) */
	uint32_t head_buf;        /* the buffer that req's slices point into; UINT32_MAX once released */
	enum rw_reason reason;
	uint8_t method_id;
	uint8_t method_len;
	char method[16];
	uint16_t path_len;
	char path[256];           /* for the access log (truncated) */
	struct trace_ctx trace;   /* the gateway's span of the request's trace */
	char request_id[REQUEST_ID_MAX + 1]; /* the client's, or made here; NUL-terminated */
	bool client_keep_alive;
	bool client_http10;
	bool resp_started;        /* a response head was queued to the client */
	uint16_t status;
	/* the request body: forwarded to the leg by the exchange */
	bool req_chunked;
	bool req_has_body;
	bool req_done;            /* every request byte is queued to the upstream */
	bool pumping;             /* a leg takes the body: the client is read */
	uint64_t max_body;        /* set by the body-limit stage */
	uint16_t rl_headers_len;  /* rl_headers holds this many bytes for the answer */
	uint16_t cors_headers_len; /* cors_headers holds this many bytes for the answer */
	int64_t req_remaining;    /* Content-Length bytes still to forward */
	struct chunk_scanner req_cs;
	struct splice_leg req_splice;
	struct leg leg;           /* the upstream leg (one today) */
	struct aggregate *agg;    /* an aggregate route's calls and their legs (aggregate.c) */
	/* accounting */
	uint64_t t_start_ns;
	uint64_t bytes_in, bytes_out_queued;
	/* not cleared when the exchange is reused: who.method is, the rest is written before use */
	struct auth_identity who; /* who the request is from (auth.h); method 0: unknown */
	char rl_headers[RL_HEADERS_MAX]; /* the RateLimit fields of the answer (ratelimit.h) */
	struct aggregate *agg_kept; /* an aggregate's state, kept for the next one (aggregate.c) */
	char cors_headers[CORS_HEADERS_MAX]; /* the Access-Control-* lines of the answer (cors.h) */
	struct http_request req;  /* last: only its used headers are copied in */
};

/* A complete request head of head_len bytes is at the front of down->in and parsed in sh->req: the
 * exchange takes it over (the head's bytes leave down->in), routes it on the worker's current
 * snapshot and runs the route's stages, then its handler. */
void exchange_start(struct shard *sh, struct client *c, struct sock *down, uint32_t head_len);
/* An async stage's result is in: run the stages after it. */
void exchange_resume(struct exchange *x);
/* Answers the request with the reason's error (stages, handlers; a waiting stage with its result). */
void exchange_refuse(struct exchange *x, enum rw_reason r, const char *extra, bool close);
/* Ends the exchange without an answer (the client went away, or the answer was refused): the legs
 * go, the exchange is freed. */
void exchange_end(struct exchange *x);

/* The leg's side, for proxy.c. */
/* The exchange waits with its head (an aggregate's later calls read it): the head leaves the
 * ring for a heap buffer when one can be had. */
void exchange_keep_head(struct exchange *x);
/* The request's head is not needed any more (the upstream head is built): its buffer goes. */
void exchange_release_head(struct exchange *x);
/* Forwards request-body bytes waiting in down->in to the leg's connection (again when it drains,
 * connects, or a splice of the body ends). */
void exchange_pump_request(struct exchange *x);
/* A splice of the request body to the leg's connection ended with res. */
void exchange_request_spliced_out(struct exchange *x, int res);
/* The leg's answer is fully queued to the client: the leg goes (its connection back to the pool
 * when reusable and the request was read whole), the client logs and goes on. */
void exchange_answered(struct exchange *x, bool reusable);

/* The client's side, for conn.c. */
/* New bytes from the client, or its half-close: forward the body if one is being read. */
void exchange_client_readable(struct exchange *x);
/* The client took bytes of the answer. */
void exchange_client_drained(struct exchange *x);
/* A splice naming the client's socket ended: from it (is_in, the request body) or to it. */
void exchange_client_spliced(struct exchange *x, bool is_in, int res);
/* The client's recv stopped after a pause: a request-body splice may start. */
void exchange_client_recv_stopped(struct exchange *x);
/* The body is still being read from the client, and the client is the one holding it back. */
bool exchange_waits_for_client(const struct exchange *x);
/* The request body is still being read (bytes that arrive belong to it). */
bool exchange_reads_body(const struct exchange *x);
/* Bytes of the answer are on their way to the client outside its out queue (spliced). */
bool exchange_sending(const struct exchange *x);
/* The connection may carry another request after this one (the whole body was read, the client
 * keeps alive). */
bool exchange_keeps_alive(const struct exchange *x);
/* The access-log record of the exchange (client, status and reason are the caller's). */
void exchange_record(const struct exchange *x, struct access_record *rec);
/* Counts the finished exchange (metrics.h) on its route, or its frontend when it has none, on its
 * upstream, and on the worker's refusals when r is not RW_OK. answer_bytes: the gateway's own
 * answer, counted as bytes out. */
void exchange_count(const struct exchange *x, int status, enum rw_reason r, uint64_t answer_bytes);

#endif
