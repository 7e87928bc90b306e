/* loop.h — the low-level context of one worker's event loop, which the worker embeds: the ring and
 * its SQEs, the buffer rings, the timer wheel and the tick that drives it (armed only while timers
 * are pending), the free lists of send contexts and splice pipes, the sockets waiting for ring
 * buffers or to be freed, listeners with their accept hook, and a per-worker random generator.
 * sock, transport, splice and upstream see only this, never the worker. */
#ifndef RINGWAY_LOOP_H
#define RINGWAY_LOOP_H

#include <liburing.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "timer.h"

struct sock;
struct sendctx;
struct spipe;

/* Operation tags in the low bits of user_data: every structure named by an operation is 16-byte
 * aligned (malloc'd, or declared RING_ALIGNED). */
enum op {
	OP_ACCEPT = 1,  /* a struct listener */
	OP_RECV,        /* the rest: a struct sock */
	OP_SEND,
	OP_CONNECT,
	OP_CANCEL,
	OP_SPLICE_POLL, /* the poll a splice is linked behind */
	OP_SPLICE_IN,   /* source socket -> pipe */
	OP_SPLICE_OUT,  /* pipe -> destination socket */
	OP_TICK,        /* the loop itself */
	OP_TASK,        /* a struct loop_task */
};
#define OP_MASK 15ull
#define RING_ALIGNED __attribute__((aligned(16)))

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define UD(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

/* Any other operation an owner submits (the worker's wake-up read): fn gets its completion. */
struct loop_task {
	void (*fn)(struct loop_task *t, struct io_uring_cqe *cqe);
} RING_ALIGNED;

/* A listening socket with one multishot accept armed. on_accept gets each accepted descriptor
 * and owns it from then on. Out of descriptors or memory, accepting pauses for a tick. A listener
 * retired with listener_retire is handed to on_retired once no operation names it any more. */
struct listener {
	int fd;
	bool armed;
	bool backoff;
	bool retiring;
	struct timer backoff_tm;
	void (*on_accept)(struct listener *li, int fd);
	void (*on_retired)(struct listener *li);
	struct loop *loop;
	void *owner;
	uint32_t index; /* in the owner's list */
} RING_ALIGNED;

struct loop {
	struct io_uring ring;
	struct bufs bufs;
	struct timer_wheel wheel;
	bool can_splice;       /* the kernel has IORING_OP_SPLICE */
	bool tick_armed;
	uint32_t nclosing;     /* sockets closed, waiting for their operations to end */
	struct sock *starved;  /* sockets waiting for ring buffers */
	struct sock *closed;   /* sockets to free at the end of this turn */
	struct sendctx *free_sc;
	struct spipe *free_pipes; /* pooled pipes for splice */
	uint32_t nfree_pipes;
	uint32_t nsplices;     /* pipes in use (owned by a leg or waiting for completions) */
	uint64_t rng;          /* xorshift state */
	uint64_t accept_warned_ms;
	_Atomic uint64_t *tls_counts;   /* the worker's TLS handshakes by enum tls_count (tls.h); NULL:
				       * not counted */
	_Atomic uint64_t *recv_starved; /* per buffer group, the worker's count of multishot recvs
					 * ended by an empty buffer ring (metrics.h); NULL: none */
	struct __kernel_timespec tick_ts;
};

/* Buffers per buffer ring: a worker's, and the control thread's (the admin API's few clients). */
#define LOOP_BUFS_WORKER 512
#define LOOP_BUFS_CONTROL 16

/* After the ring is open: buffer rings of nbufs buffers each (client and upstream groups; a power
 * of two) and heap buffers big enough for a head of max_head_bytes plus a ring buffer's worth, the
 * wheel, the generator (seed mixed with 8 bytes of the kernel's randomness when it has them: trace
 * ids must differ between gateways started at the same time). 0 or -errno. */
int loop_init(struct loop *l, uint32_t nbufs, uint32_t max_head_bytes, uint64_t seed);
/* Frees what the loop still holds (closed sockets, pooled pipes and send contexts, buffers) and
 * the ring. */
void loop_destroy(struct loop *l);

/* An SQE, submitting pending ones first when the SQ is full. Never NULL. */
struct io_uring_sqe *loop_sqe(struct loop *l);

/* Submits, waits for at least one completion, advances the clock and the wheel, dispatches every
 * completion, then frees closed sockets, re-arms starved ones and arms the tick if timers are
 * pending. Returns 0 or a negative errno from io_uring_submit_and_wait. */
int loop_run_once(struct loop *l);
/* At the very end: the closes queued in the last turn go out. */
void loop_flush_closes(struct loop *l);

/* A random number from the worker's own generator (no lock, unlike rand()). */
uint64_t loop_random(struct loop *l);

void listener_arm(struct loop *l, struct listener *li);
/* Ends the multishot accept and closes the listening socket. */
void listener_stop(struct loop *l, struct listener *li);
/* A listener taken out of service for good: it stops (connections not accepted yet are closed),
 * and on_retired gets it once its accept has ended (at once if none was armed). */
void listener_retire(struct loop *l, struct listener *li);

#endif
