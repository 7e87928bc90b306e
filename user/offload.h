/* offload.h — work too slow for a worker's loop (a password hash takes tens of milliseconds on
 * purpose) runs on a thread of its own instead, and its result comes back to the worker that asked,
 * which goes on with it on its own loop. Lock-free both ways: a worker pushes a job on the pool's
 * stack (CAS) and wakes its thread (eventfd); the thread runs the jobs in the order they came and
 * pushes each onto its worker's inbox (CAS) and wakes that worker (its eventfd), whose loop then
 * runs the jobs' done callbacks. The jobs waiting are bounded: past the bound a job is refused,
 * so a flood of slow work costs its senders, not the gateway's memory. */
#ifndef RINGWAY_OFFLOAD_H
#define RINGWAY_OFFLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define OFFLOAD_MAX_WAITING 256u /* jobs submitted and not yet run, over all workers */

struct offload_job;
typedef void offload_fn(struct offload_job *job);

/* Where the done jobs of one worker arrive. */
struct offload_inbox {
	_Atomic(struct offload_job *) done;
	int wake_fd;                 /* the worker's eventfd: written once per delivery */
};

struct offload_job {
	struct offload_job *next;
	offload_fn *work;            /* on the pool's thread */
	offload_fn *done;            /* on the worker, after work (or instead of it: aborted) */
	struct offload_inbox *inbox;
	bool aborted;                /* the pool stopped before running it: work did not run */
};

struct offload_pool;

/* Starts the pool's thread. NULL after logging why. */
struct offload_pool *offload_start(void);
/* Finishes the job being run, delivers every job still waiting as aborted, and ends the thread.
 * Called once no worker submits any more (they have stopped), while their inboxes and eventfds
 * still live; what is delivered then is drained (and freed by the done callbacks) as the workers
 * are destroyed. */
void offload_stop(struct offload_pool *p);
/* Queues job (work, done and inbox set by the caller): false when the pool has
 * OFFLOAD_MAX_WAITING jobs waiting, or is stopping (the job stays the caller's). */
bool offload_submit(struct offload_pool *p, struct offload_job *job);
/* On the inbox's worker: runs the done callback of every job delivered, in the order they were
 * run. */
void offload_drain(struct offload_inbox *in);

#endif
