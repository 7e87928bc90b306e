/* splice.h — large Content-Length bodies moved in the kernel: source socket -> pooled pipe ->
 * destination socket through IORING_OP_SPLICE, instead of through the buffer ring and user space.
 * Each splice is linked behind a poll of its socket and runs non-blocking, so a slow peer never
 * holds a kernel worker thread. A pipe is reused or closed only once no splice names it any more.
 * Only between sockets whose transport allows it (a TLS transport must see the bytes). */
#ifndef RINGWAY_SPLICE_H
#define RINGWAY_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;
struct sock;

/* Bodies with at least this many bytes left when their buffered part has been forwarded. */
#ifndef SPLICE_MIN_BYTES
#define SPLICE_MIN_BYTES (256u * 1024)
#endif
#define SPLICE_PIPE_BYTES (256u * 1024)
#define SPLICE_MAX_PER_WORKER 64 /* more concurrent large bodies use the buffer ring */

struct spipe {
	struct spipe *next_free;
	int rd, wr;
	uint32_t cap; /* bytes the pipe holds (F_GETPIPE_SZ) */
	uint8_t ops;  /* splices in flight that name this pipe */
	bool owned;  /* a leg's pipe; when abandoned, closed by its last completion */
} __attribute__((aligned(16)));

struct splice_leg {
	struct spipe *p;   /* NULL while inactive */
	uint32_t in_pipe;  /* bytes read into the pipe, not yet written out */
	bool in_busy;      /* a splice from the source is in flight */
	bool out_busy;     /* a splice to the destination is in flight */
	bool in_blocked;   /* the pipe was full (in slots, if not in bytes): wait for a splice out */
	bool failed_out;   /* the failure was on the destination side */
	int error;         /* errno of a failed splice (-1: the source ended early) */
};

enum splice_status { SPLICE_RUNNING = 0, SPLICE_DONE, SPLICE_FAILED };

static inline void splice_leg_init(struct splice_leg *sl)
{
	*sl = (struct splice_leg){ 0 };
}
static inline bool splice_active(const struct splice_leg *sl)
{
	return sl->p != NULL;
}
/* The destination holds the transfer back: the pipe is full, so the source is not the slow one. */
static inline bool splice_waits_for_out(const struct splice_leg *sl)
{
	return sl->p && (sl->in_blocked || sl->in_pipe >= sl->p->cap);
}

/* Starts splicing from src to dst: takes a pipe and stops the source's recv. False when splicing
 * is not possible now (no kernel support, a transport that must see the bytes, no pipe, too many
 * at once): the body keeps flowing through the ring. */
bool splice_begin(struct loop *l, struct splice_leg *sl, struct sock *src, const struct sock *dst);

/* Advances the transfer: forwards bytes that arrived before the recv stopped, then keeps one splice
 * in and one out in flight. Needs two free SQEs per splice; takes them itself. *remaining counts the body bytes not yet read from src; *moved grows by
 * the bytes handed towards dst. On SPLICE_DONE the pipe is back in the pool. */
enum splice_status splice_step(struct loop *l, struct splice_leg *sl, struct sock *src,
			       struct sock *dst, int64_t *remaining, uint64_t *moved);

/* A splice on s finished: forgets the pipe it named. Returns true if that pipe still belongs to a
 * leg (the result is then the leg's to take), false if it was abandoned (nothing more to do). */
bool splice_op_finished(struct loop *l, struct sock *s, bool is_in);

/* Results for the leg, as the operation reported them. Only a result > 0 is progress. */
void splice_in_done(struct splice_leg *sl, int res, int64_t *remaining);
void splice_out_done(struct splice_leg *sl, int res);

/* Gives the pipe up when the exchange ends early: pooled when idle, else closed by the last
 * completion that names it. */
void splice_abandon(struct loop *l, struct splice_leg *sl);

void splice_pool_destroy(struct loop *l);

#endif
