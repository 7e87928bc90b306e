/* transport.h — what carries a connection's bytes between the ring and its plaintext queues. The
 * HTTP layer only sees s->in and s->out; a transport turns a recv completion into plaintext in
 * s->in, sends s->out, shuts the write side and says whether splice may bypass it. Plain (the
 * bytes on the wire are the plaintext) is the implementation here; TLS is the second. */
#ifndef RINGWAY_TRANSPORT_H
#define RINGWAY_TRANSPORT_H

#include <stdbool.h>
#include <stdint.h>

struct loop;
struct sock;

struct transport_ops {
	const char *name;
	/* A recv completion of len bytes into ring buffer bid (its reference is the callee's):
	 * appends plaintext to s->in. 0, or -errno when the stream cannot go on. */
	int (*received)(struct loop *l, struct sock *s, uint32_t bid, uint32_t len);
	/* Starts one send of what is queued (s->send_busy set), if none is in flight. */
	void (*flush)(struct loop *l, struct sock *s);
	/* The in-flight send completed with res >= 0 bytes: drops them from what is queued. */
	void (*sent)(struct loop *l, struct sock *s, uint32_t res);
	/* No more bytes will be queued: end the write side. */
	void (*shutdown_write)(struct loop *l, struct sock *s);
	/* The wire carries the plaintext, so splice may move it in the kernel. */
	bool splice_ok;
};

extern const struct transport_ops transport_plain;

#endif
