/* splice.h — large Content-Length bodies moved in the kernel: source socket -> pooled pipe ->
 * destination socket through IORING_OP_SPLICE, instead of through the buffer ring and user space.
 * Plain transport only (a TLS transport must see the bytes). */
#ifndef RINGWAY_SPLICE_H
#define RINGWAY_SPLICE_H

#include <stdbool.h>
#include <stdint.h>

struct worker;
struct sock;

/* Bodies with at least this many bytes left when their buffered part has been forwarded. */
#ifndef SPLICE_MIN_BYTES
#define SPLICE_MIN_BYTES (256u * 1024)
#endif
#define SPLICE_PIPE_BYTES (256u * 1024)

struct splice_leg {
	int rd, wr;        /* the pipe; -1 while none is held */
	uint32_t in_pipe;  /* bytes read into the pipe, not yet written out */
	bool active;
	bool in_busy;      /* a splice from the source is in flight */
	bool out_busy;     /* a splice to the destination is in flight */
	bool failed_out;   /* the failure was on the destination side */
	int error;         /* errno of a failed splice (source side: -1 for end of stream) */
};

enum splice_status { SPLICE_RUNNING = 0, SPLICE_DONE, SPLICE_FAILED };

static inline void splice_leg_init(struct splice_leg *l)
{
	*l = (struct splice_leg){ .rd = -1, .wr = -1 };
}

/* Starts splicing: takes a pipe and stops the source's recv. False if no pipe could be had (the
 * body then keeps flowing through the buffer ring). */
bool splice_begin(struct worker *w, struct splice_leg *l, struct sock *src);

/* Advances the transfer: forwards bytes that arrived before the recv stopped, then keeps one splice
 * in and one out in flight. *remaining counts the body bytes not yet read from src; *moved grows by
 * the bytes handed towards dst. On SPLICE_DONE the pipe is back in the pool. */
enum splice_status splice_step(struct worker *w, struct splice_leg *l, struct sock *src,
			       struct sock *dst, int64_t *remaining, uint64_t *moved);

/* Completions with the operation's result. A failure is kept in l->error (-1: the source ended
 * early) and l->failed_out tells which side failed. */
void splice_in_done(struct splice_leg *l, int res, int64_t *remaining);
void splice_out_done(struct splice_leg *l, int res);

/* Gives the pipe up when the exchange ends early; a pipe that may hold bytes is closed, not pooled. */
void splice_abandon(struct worker *w, struct splice_leg *l);

void splice_pool_destroy(struct worker *w);

#endif
