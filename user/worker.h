/* worker.h — one pinned thread per core, driving its shard (shard.h: loop, listeners, clients,
 * upstream pools, snapshots): set-up, the loop, the mailbox on its wake-up eventfd through which it
 * is handed a new config snapshot, and draining on shutdown. Nothing is shared between workers
 * except the immutable snapshots. */
#ifndef RINGWAY_WORKER_H
#define RINGWAY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "metrics.h"
#include "shard.h"

struct start_gate;

struct worker {
	struct shard shard;          /* first: what the request path works in */
	int cpu;                     /* -1: not pinned */
	pthread_t thread;
	_Atomic(struct rw_config *) mailbox; /* a new snapshot handed over by workers_swap */
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

struct worker_set {
	struct worker *workers;
	unsigned n;
	struct start_gate gate;
	struct metrics *metrics;     /* the workers' counters; bound to every snapshot they are given */
};

/* Starts n workers on cfg (n = 0: one per available core), binding cfg to the set's metrics.
 * Returns 0, or -1 after logging why. */
int workers_start(struct worker_set *ws, struct rw_config *cfg);
/* Binds cfg to the set's metrics, then hands it to every worker: each takes it at its next wake-up
 * for the exchanges that start from then on, and lets the old one go when its last exchange ends.
 * Called on the thread that renders the metrics. */
void workers_swap(struct worker_set *ws, struct rw_config *cfg);
/* Asks every worker to drain and stop, and joins them; their metrics go too. */
void workers_stop(struct worker_set *ws);

#endif
