/* worker.h — one pinned thread per core: its event loop (loop.h: ring, buffers, timers), its
 * listeners (one SO_REUSEPORT socket per listen address, keyed by address), its client
 * connections, upstream pools (keyed by target address) and access-log buffer, and its hold on
 * config snapshots. Nothing here is shared between workers except the immutable snapshots, which
 * a worker is handed through a mailbox on its wake-up eventfd. */
#ifndef RINGWAY_WORKER_H
#define RINGWAY_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "http1.h"
#include "log.h"
#include "loop.h"
#include "upstream.h"

struct client;
struct exchange;
struct start_gate;

/* A worker's hold on one config snapshot: what the snapshot's names mean on this worker. An
 * exchange holds the wsnap it started on; the worker frees it once no exchange uses it and it is
 * not the current one. Counted by the worker alone: no atomics per request. */
struct wsnap {
	struct rw_config *cfg;
	uint32_t users;                     /* exchanges on it, + 1 while it is current */
	struct upstream_view ups;           /* its upstreams over the worker's pools */
	const struct rw_frontend **listener_fe; /* per listener of the worker: its frontend, or NULL */
};

/* A listening socket and the address it is keyed by. */
struct worker_listener {
	struct listener li;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[64];
} RING_ALIGNED;

struct worker {
	struct loop loop;
	unsigned id;
	int cpu; /* -1: not pinned */
	pthread_t thread;
	struct wsnap *snap;          /* the current snapshot */
	_Atomic(struct rw_config *) mailbox; /* a new snapshot handed over by workers_swap */
	struct worker_listener *listeners;
	uint32_t nlisteners;
	struct upstream_pools pools;
	struct access_log alog;
	int wake_fd;
	uint64_t wake_val;
	struct loop_task wake_task;
	atomic_bool stop_requested;
	bool stopping;
	bool gave_up;                /* drained past the deadline and the grace: stop anyway */
	struct timer drain_tm;
	uint32_t nclients;
	struct client *clients;      /* every open client connection */
	struct client *free_clients;
	struct exchange *free_exchanges;
	struct http_request req;     /* scratch for the head being parsed */
	struct http_response resp;
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
};

static inline const struct rw_config *worker_cfg(const struct worker *w)
{
	return w->snap->cfg;
}

/* The current snapshot, counted for an exchange that starts on it. */
struct wsnap *worker_snap_hold(struct worker *w);
/* An exchange on s ended: s is freed when it was the last user of an old snapshot. */
void worker_snap_release(struct worker *w, struct wsnap *s);

/* Starts n workers on cfg (n = 0: one per available core). Returns 0, or -1 after logging why. */
int workers_start(struct worker_set *ws, struct rw_config *cfg);
/* Hands cfg to every worker: each takes it at its next wake-up for the exchanges that start from
 * then on, and lets the old one go when its last exchange ends. */
void workers_swap(struct worker_set *ws, struct rw_config *cfg);
/* Asks every worker to drain and stop, and joins them. */
void workers_stop(struct worker_set *ws);

#endif
