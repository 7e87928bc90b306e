/* transport.h — what carries a connection's bytes between the ring and its plaintext queues. The
 * HTTP layer only sees s->in and s->out; a transport turns a recv completion into plaintext in
 * s->in, sends s->out, shuts the write side and says whether splice may bypass it. Plain (the
 * bytes on the wire are the plaintext) is the implementation here; TLS is the second. */
#ifndef RINGWAY_TRANSPORT_H
#define RINGWAY_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct segq;
struct sock;

/* received: the peer ended the stream cleanly (a TLS close_notify); what came before is in s->in. */
#define TRANSPORT_EOF 1

struct transport_ops {
	const char *name;
	/* A recv completion of len bytes into ring buffer bid (its reference is the callee's):
	 * appends plaintext to s->in. 0, TRANSPORT_EOF, or -errno when the stream cannot go on
	 * (-EPROTONOSUPPORT: the peer does not speak this transport, e.g. plaintext HTTP on a TLS
	 * port; an answer may still go out in plaintext). */
	int (*received)(struct loop *l, struct sock *s, uint32_t bid, uint32_t len);
	/* Starts one send of what is queued (s->send_busy set), if anything is and none is in
	 * flight. */
	void (*flush)(struct loop *l, struct sock *s);
	/* The in-flight send completed with res >= 0 bytes: drops them from what is queued. */
	void (*sent)(struct loop *l, struct sock *s, uint32_t res);
	/* No more bytes will be queued: end the write side. */
	void (*shutdown_write)(struct loop *l, struct sock *s);
	/* Whether application data flows (the TLS handshake is done). NULL: always. */
	bool (*ready)(const struct sock *s);
	/* The socket is being freed: its transport state goes. NULL: it has none. */
	void (*release)(struct loop *l, struct sock *s);
	/* The wire carries the plaintext, so splice may move it in the kernel. */
	bool splice_ok;
	/* The bytes are encrypted on the wire (X-Forwarded-Proto: https). */
	bool secure;
};

extern const struct transport_ops transport_plain;

/* For transports: one send (or sendmsg over up to SEND_IOV_MAX segments) of the front of q;
 * s->send_busy is set. */
void transport_send_queue(struct loop *l, struct sock *s, struct segq *q);
/* An idle socket holds no send context: it goes back to the loop once s sent everything. */
void transport_release_sendctx(struct loop *l, struct sock *s);

#endif
