/* proxy.h — the proxy handler and its upstream leg. A leg is one upstream request of an exchange:
 * the upstream request head (path rewrite, hop-by-hop headers removed, X-Forwarded-*, Via), a
 * connection from the worker's pools, one more try on another connection where that is safe, the
 * response head parsed and its body framed (Content-Length, chunked, until close), and every
 * upstream failure and timeout mapped to its reason. What the response becomes is the leg's sink:
 * today's routes relay it to the client (spliced when large); a collecting sink (aggregation)
 * takes the body with leg_take_body instead. */
#ifndef RINGWAY_PROXY_H
#define RINGWAY_PROXY_H

#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "http1.h"
#include "reason.h"
#include "splice.h"

struct exchange;
struct leg;
struct upconn;

struct leg_sink_ops {
	/* The response head is parsed (r's slices point into the connection's input until this
	 * returns). False: the sink ended the exchange. */
	bool (*head)(struct leg *lg, const struct http_response *r);
	/* Body bytes wait in the leg's connection, or the body ended: take them (leg_take_body). */
	void (*body)(struct leg *lg);
	/* The leg failed, before the response head (lg->started false) or during its body. */
	void (*failed)(struct leg *lg, enum rw_reason r, int err);
	/* A splice from the leg's connection (is_in) or one of the response's ended with res. */
	void (*spliced)(struct leg *lg, bool is_in, int res);
};

/* A leg's own request instead of the client's (an aggregate's call): its method and target (path
 * and query), no body. */
struct leg_call {
	uint8_t method_id;      /* enum http_method */
	uint32_t target_len;
	const char *target;
};

enum resp_mode { RESP_NONE = 0, RESP_LENGTH, RESP_CHUNKED, RESP_UNTIL_CLOSE };

struct leg {
	struct exchange *x;
	const struct leg_sink_ops *sink;
	const struct rw_upstream *ups;
	const struct leg_call *call; /* NULL: the client's request (proxy_handle) */
	struct upconn *u;
	bool retried;
	bool started;           /* the response head was taken */
	bool resp_keep_alive;   /* the connection may be reused after this response */
	uint8_t resp_mode;      /* enum resp_mode */
	uint16_t status;
	uint32_t req_head_id;   /* the built upstream head, kept for a retry */
	uint32_t req_head_len;
	int64_t resp_remaining;
	struct chunk_scanner resp_cs;
	struct splice_leg resp_splice;
	const char *target;     /* the target that answered, for the log (lives as long as the worker) */
	uint64_t t_start_ns, t_done_ns;
};

/* The route's handler: builds the upstream head from x's request, takes a connection and sends,
 * with the relay sink. Answers the client itself when that fails. */
void proxy_handle(struct exchange *x);

void leg_init(struct leg *lg, struct exchange *x);
/* Sends lg's call (lg->ups, lg->sink and lg->call set) on a connection from the worker's pools:
 * RW_OK, or why not (nothing is held then). */
enum rw_reason leg_start_call(struct leg *lg);
/* Lets go of everything the leg holds: the connection (back to its pool when reusable), the kept
 * head, a response splice's pipe. */
void leg_release(struct leg *lg, bool reusable);
/* Moves response-body bytes from the connection to dst while dst holds less than dst_limit, as
 * the framing allows; *moved gets their count, *done is set when the body is complete. RW_OK, or
 * why it stopped: RW_UPSTREAM_BAD_RESPONSE (broken framing), RW_INTERNAL (out of memory). */
enum rw_reason leg_take_body(struct leg *lg, struct bufs *b, struct segq *dst, uint64_t dst_limit,
			     uint64_t *moved, bool *done);
/* The upstream answered or made progress: its deadline starts again. */
void leg_arm_timer(struct leg *lg);
/* Sending to the leg's connection failed with err: retried elsewhere, or the sink is told. */
void leg_upstream_failed(struct leg *lg, int err);
/* The leg's connection, NULL when it has none. */
struct sock *leg_sock(struct leg *lg);

#endif
