/* worker.h — one pinned thread per core, driving its shard (shard.h: loop, listeners, clients,
 * upstream pools, snapshots): set-up, the loop, the mailboxes on its wake-up eventfd through which
 * the control thread hands it a new config snapshot (with listening sockets for the addresses it
 * adds) or a reopened access log, and draining on shutdown. Nothing is shared between workers
 * except the immutable snapshots. The set of workers opens listening sockets (SO_REUSEPORT, one
 * per worker and address) on the control thread, so that a reload whose address cannot be bound
 * is refused before any worker sees it. */
#ifndef RINGWAY_WORKER_H
#define RINGWAY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "metrics.h"
#include "shard.h"

struct start_gate;
struct handover;

#define LOG_MAILBOX_EMPTY (-2)

struct worker {
	struct shard shard;          /* first: what the request path works in */
	int cpu;                     /* -1: not pinned */
	pthread_t thread;
	_Atomic(struct handover *) mailbox; /* a new snapshot handed over by workers_swap */
	atomic_uint_fast64_t taken;  /* the number of the last handover taken */
	atomic_int log_mailbox;      /* a reopened access log's descriptor (-1: off) */
	int wake_fd;
	uint64_t wake_val;
	struct loop_task wake_task;
	atomic_bool stop_requested;
	bool gave_up;                /* drained past the deadline and the grace: stop anyway */
	struct timer drain_tm;
	int start_error;             /* set when setup failed */
	struct start_gate *gate;     /* start-up rendezvous with the main thread */
} RING_ALIGNED;

struct start_gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	unsigned ready;
	bool decided;
};

/* A listen address open on every worker. */
struct open_address {
	struct sockaddr_storage addr;
	socklen_t addrlen;
};

struct worker_set {
	struct worker *workers;
	unsigned n;
	struct start_gate gate;
	uint64_t handovers;          /* handed so far */
	struct open_address *open;   /* the addresses listened on */
	uint32_t nopen;
	struct metrics *metrics;     /* the workers' counters; bound to every snapshot they are given */
	struct offload_pool *offload; /* the thread the workers hand slow work to (offload.h) */
	uint32_t max_header_bytes;   /* the heap buffers' size was chosen for it at start */
};

/* Starts the workers on cfg (cfg->workers, 0: one per available core), binding cfg to the set's
 * metrics. Returns 0, or -1 after logging why. */
int workers_start(struct worker_set *ws, struct rw_config *cfg);
/* Binds cfg to the set's metrics (on the thread that renders them), then hands it to every worker
 * and returns once all have taken it: exchanges that start from then on run on it, those in
 * flight finish on the one they started with, which goes when its last exchange ends. Listen
 * addresses new in cfg are opened first (every worker one SO_REUSEPORT socket); addresses it no
 * longer has stop accepting, and their connections close once their request in flight is
 * answered; the others are never closed. Returns 0, or -1 with why in err (an address that cannot
 * be bound: then nothing changed). */
int workers_swap(struct worker_set *ws, struct rw_config *cfg, char *err, size_t errlen);
/* Hands every worker its own descriptor of the access log cfg names, opened again (log rotation:
 * SIGUSR1; a reload that changes access_log). -1 with why in err when it cannot be opened (the
 * workers go on with the one they have). */
int workers_reopen_log(struct worker_set *ws, const struct rw_config *cfg, char *err, size_t errlen);
/* Asks every worker to drain and stop, and joins them; their metrics go too. */
void workers_stop(struct worker_set *ws);

#endif
