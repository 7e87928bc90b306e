/* redis.h — one worker's connection to one Redis: a socket on the worker's ring with its own
 * sock_ops (connected through the ring, replies received into the worker's buffers, commands
 * queued on its out queue), speaking RESP through hiredis's protocol layer only (commands built
 * with redisFormatCommandArgv, replies parsed by a redisReader fed with the received bytes), never
 * a blocking call. Calls are pipelined and matched to replies in order; each has a deadline on the
 * worker's timer wheel; scripts run with EVALSHA and are loaded (SCRIPT LOAD) on every new
 * connection and again on NOSCRIPT; a lost connection fails every pending call and is made again
 * with backoff. Generic: the rate limiter's script lives in ratelimit.c. */
#ifndef RINGWAY_REDIS_H
#define RINGWAY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct redis;                        /* one worker's connection to one Redis */
struct redis_call;                   /* one command in flight */
struct redisReply;
struct rw_sockaddr;
struct shard;

struct redis_script {                /* a Lua script run with EVALSHA, loaded again on NOSCRIPT */
	const char *text;
	char sha1[41];               /* hex SHA-1 of text: redis_script_init fills it */
};
void redis_script_init(struct redis_script *s, const char *text);

/* reply: the parsed reply (hiredis redisReply: an error reply too), or NULL when the call failed
 * (not connected, the connection broke, timed out, out of memory: why says which, one of the
 * REDIS_WHY_* strings). Runs on the worker's loop, never from inside redis_eval itself (a failure
 * known at once is delivered from the loop too). The reply is freed when fn returns. */
typedef void redis_reply_fn(void *arg, const struct redisReply *reply, const char *why);
#define REDIS_WHY_TIMEOUT "timeout"
#define REDIS_WHY_DISCONNECTED "disconnected"
#define REDIS_WHY_NOMEM "out of memory"

/* Backoff between connection attempts: from the first to the last, doubling. */
#define REDIS_BACKOFF_FIRST_MS 100u
#define REDIS_BACKOFF_MAX_MS 5000u
/* A connect not done in this long failed. */
#define REDIS_CONNECT_TIMEOUT_MS 1000u
/* A connection whose oldest call has waited this long (or 10 timeouts, if more) is dropped: Redis
 * hangs, and the calls after it would only time out too. */
#define REDIS_STALL_MS 1000u

/* Starts connecting (non-blocking, on the shard's ring: submitted with its loop's next turn) and
 * keeps a connection: reconnects with backoff REDIS_BACKOFF_FIRST_MS doubling to
 * REDIS_BACKOFF_MAX_MS after a failure; logs a lost and a regained connection once. Counts in the
 * shard's worker_stats. NULL when out of memory. */
struct redis *redis_new(struct shard *sh, const struct rw_sockaddr *addr, uint32_t timeout_ms);
/* Pending calls get their callback with reply NULL first (REDIS_WHY_DISCONNECTED); then the
 * connection is closed through the loop (the shard's loop must still run to free its socket, or
 * be destroyed after: loop_destroy frees closed sockets). */
void redis_free(struct redis *r);
/* EVALSHA s->sha1 nkeys args... (argv[0..argc) are the keys then the other arguments). s must
 * outlive r. fn may be NULL: the reply is then dropped. NULL when out of memory for the call
 * itself (fn will not run); any other failure comes through fn. The call is r's until its
 * callback ran (or it was cancelled): the caller forgets it then. */
struct redis_call *redis_eval(struct redis *r, const struct redis_script *s, int nkeys, int argc,
			      const char *const *argv, const size_t *argvlen,
			      redis_reply_fn *fn, void *arg);
void redis_call_cancel(struct redis_call *c); /* its callback will not run */
bool redis_connected(const struct redis *r);
/* Calls are sent now (connected) or queued until the connect in flight ends; false while the
 * connection is down (between attempts): calls would only fail. */
bool redis_accepting(const struct redis *r);
/* Whether r talks to the address a (a reload that keeps it keeps the connection). */
bool redis_is_at(const struct redis *r, const struct rw_sockaddr *a);
/* The deadline of calls made from now on. */
void redis_set_timeout(struct redis *r, uint32_t timeout_ms);
/* Calls whose reply is still awaited (timed out and cancelled ones too), for tests. */
uint32_t redis_pending(const struct redis *r);

#endif
