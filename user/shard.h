/* shard.h — what one worker's request path works in: its loop, listeners (keyed by address),
 * upstream pools, the config snapshots it holds (struct wsnap: the current one, and old ones until
 * their last exchange ends, counted without atomics), its client connections and free lists, the
 * access-log buffer and the scratch the heads are parsed into. The worker thread (worker.h)
 * embeds one and drives it; conn, exchange and proxy see only this. */
#ifndef RINGWAY_SHARD_H
#define RINGWAY_SHARD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"
#include "http1.h"
#include "access_log.h"
#include "log.h"
#include "loop.h"
#include "offload.h"
#include "upstream.h"

struct client;
struct exchange;
struct redis;
struct rl_wait;
struct worker_stats;

/* A shard's hold on one config snapshot: what the snapshot's names mean on this worker. An
 * exchange holds the wsnap it started on; the shard frees it once no exchange uses it and it is
 * not the current one. */
struct wsnap {
	struct rw_config *cfg;
	uint32_t users;                     /* exchanges on it, + 1 while it is current */
	struct upstream_view ups;           /* its upstreams over the shard's pools */
	const struct rw_frontend **listener_fe; /* per listener of the shard: its frontend, or NULL */
	const struct rw_sockaddr **listener_entry; /* per listener: its listen entry (its tls) */
};

/* A listening socket and the address it is keyed by. */
struct shard_listener {
	struct listener li;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	bool removed;        /* no longer configured: retiring, its slot freed once its accept ends */
} RING_ALIGNED;

struct shard {
	struct loop loop;
	unsigned id;                 /* the worker's number, in logs */
	struct worker_stats *stats;  /* the worker's counters and its slot in every stats object */
	bool stopping;               /* draining: no new connections, none kept alive */
	struct wsnap *snap;          /* the current snapshot */
	struct shard_listener **listeners; /* slots (a client names its listener's); NULL: free */
	uint32_t nlisteners;               /* slots */
	struct upstream_pools pools;
	struct access_log alog;
	uint32_t nclients;
	struct client *clients;      /* every open client connection */
	struct client *free_clients;
	struct exchange *free_exchanges;
	struct auth_cache *auth_cache;   /* verified credentials (auth_cache.h) */
	struct identity_minter *minter;  /* identity tokens (identity.h) */
	int64_t auth_logged_at;          /* when auth last logged a refusal (seconds) */
	uint64_t rl_logged_at;           /* when a rate limit last logged a refusal (seconds) */
	uint64_t rl_failure_logged_at;   /* when it last logged a failure of its store (seconds) */
	struct redis *redis;             /* the rate-limit store's connection (redis.h), or NULL */
	struct rl_wait *rl_free_waits;   /* rate-limit stages waiting for Redis: free ones */
	struct offload_pool *offload;    /* the process's thread for slow work (offload.h) */
	struct offload_inbox inbox;      /* its results for this worker */
	struct http_request req;     /* scratch for the head being parsed */
	struct http_response resp;
} RING_ALIGNED;

static inline const struct rw_config *shard_cfg(const struct shard *sh)
{
	return sh->snap->cfg;
}

/* Makes cfg the current snapshot (taking over its reference): its upstreams over the pools, each
 * listener's frontend by address. The one before is let go once its last exchange ends. -1 when
 * out of memory (cfg is then let go, the current snapshot stays). */
int shard_adopt(struct shard *sh, struct rw_config *cfg);
/* The current snapshot, counted for an exchange that starts on it. */
struct wsnap *shard_snap_hold(struct shard *sh);
/* An exchange on s ended: s is freed when it was the last user of an old snapshot. */
void shard_snap_release(struct wsnap *s);

#endif
