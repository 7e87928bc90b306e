/* worker.h — one pinned thread per core with its own io_uring, buffer ring, listeners (one
 * SO_REUSEPORT socket per listen address), timer wheel, upstream pools and access-log buffer.
 * Nothing here is shared between workers except the immutable config snapshot. */
#ifndef RINGWAY_WORKER_H
#define RINGWAY_WORKER_H

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "config.h"
#include "http1.h"
#include "log.h"
#include "sock.h"
#include "timer.h"

struct client;
struct start_gate;
struct upconn;
struct target_pool;

struct listener {
	int fd;
	bool armed;
	bool backoff; /* accepting paused until the next tick */
	struct worker *w;
	const struct rw_frontend *fe;
} RING_ALIGNED;

struct worker {
	unsigned id;
	int cpu; /* -1: not pinned */
	pthread_t thread;
	struct io_uring ring;
	bool can_splice;     /* the kernel has IORING_OP_SPLICE */
	struct bufs bufs;
	struct timer_wheel wheel;
	struct rw_config *cfg; /* the snapshot: the worker's reference keeps it alive for every exchange
			       * it runs (routes and upstreams point into it), without an atomic per request */
	struct listener *listeners;
	uint32_t nlisteners;
	struct target_pool **pools; /* [upstream index][target index] */
	uint32_t *rr;               /* round-robin position per upstream */
	struct access_log alog;
	int wake_fd;
	uint64_t wake_val;
	struct __kernel_timespec tick_ts;
	atomic_bool stop_requested;
	bool stopping;
	uint64_t drain_deadline_ms;
	uint32_t nclients;
	uint32_t nclosing;           /* sockets closed, waiting for their operations to end */
	uint64_t accept_warned_ms;
	struct client *clients;      /* every open client connection */
	struct sock *starved;        /* sockets waiting for ring buffers */
	struct sock *closed;         /* sockets to free at the end of this loop turn */
	struct sendctx *free_sc;
	struct client *free_clients;
	struct exchange *free_exchanges;
	struct http_request req;     /* scratch for the head being parsed */
	struct http_response resp;
	int start_error;             /* set when setup failed */
	struct start_gate *gate;     /* start-up rendezvous with the main thread */
	struct spipe *free_pipes;    /* pooled pipes for splice */
	uint32_t nfree_pipes;
	uint32_t nsplices;           /* pipes in use (owned by a leg or waiting for completions) */
} RING_ALIGNED;

struct start_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned ready;
	bool decided;
};

struct worker_set {
	struct worker *workers;
	unsigned n;
	struct start_gate gate;
};

/* An SQE, submitting pending ones first when the SQ is full. Never NULL. */
struct io_uring_sqe *worker_sqe(struct worker *w);

/* Starts n workers on cfg (n = 0: one per available core). Returns 0, or -1 after logging why. */
int workers_start(struct worker_set *ws, struct rw_config *cfg);
/* Asks every worker to drain and stop, and joins them. */
void workers_stop(struct worker_set *ws);

#endif
