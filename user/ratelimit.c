/* ratelimit.c — GCRA, the shared table and the rate-limit stage (ratelimit.h).
 *
 * The table: RL_TABLE_SLOTS slots of {key, TAT} shared by every worker of the process, allocated
 * once and kept across reloads. A key is the xxHash of a limit's scope and the request's value
 * (consumer, address, header); it lives in the first of RL_TABLE_PROBES slots from its hash that
 * holds it, or claims the first free or idle one (TAT not after now: a full bucket, nothing lost)
 * with a CAS; when all are busy it takes the one nearest to idle (counted as an eviction). A
 * decision is a CAS loop on the slot's TAT, so it is exact whatever the number of workers, with no
 * lock. Times are CLOCK_MONOTONIC nanoseconds.
 *
 * The stage decides every limit of the route in order; when one refuses, the admissions the
 * earlier ones made for this request are given back. The answer (proxied or the gateway's own)
 * carries the RateLimit fields of the limit with the fewest requests remaining.
 *
 * With a rate_limit_store, the decisions are made in Redis instead (cluster mode): one EVALSHA of
 * the GCRA script per limit, all sent at once on the worker's connection (redis.h), the stage
 * waiting (struct rl_wait in x->stage_state) until every reply is in. A refusal by any limit is
 * the same 429 as locally (the admissions the others made are given back with a second script);
 * a failure (not connected, timeout, error reply) goes to on_failure: the local table decides,
 * the request passes, or 503 rate_limit_unavailable. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "conn.h"
#include "exchange.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "shard.h"
#include "timer.h"
#include "writer.h"

/* After metrics.h: hiredis defines REDIS_OK as a macro (0, the enumerator's value). */
#include <hiredis/hiredis.h>

#define NS_PER_S 1000000000ull

bool gcra_admit(uint64_t *tat, uint64_t now, uint64_t interval_ns, uint32_t burst,
		uint64_t *after_ns)
{
	uint64_t base = *tat > now ? *tat : now;
	uint64_t next = base + interval_ns, tolerance = (uint64_t)burst * interval_ns;
	if (next - now > tolerance) {
		*after_ns = next - now - tolerance;
		return false;
	}
	*tat = next;
	*after_ns = next - now;
	return true;
}

uint32_t gcra_remaining(uint64_t debt_ns, uint64_t interval_ns, uint32_t burst)
{
	uint64_t tolerance = (uint64_t)burst * interval_ns;
	return debt_ns >= tolerance ? 0 : (uint32_t)((tolerance - debt_ns) / interval_ns);
}

/* ---- the shared table -------------------------------------------------------------------------- */

struct rl_slot {
	_Atomic uint64_t key; /* 0: free */
	_Atomic uint64_t tat;
};

static struct rl_slot *table;
static _Atomic uint64_t evictions;

bool ratelimit_table_init(void)
{
	if (!table)
		table = calloc(RL_TABLE_SLOTS, sizeof *table);
	return table != NULL;
}

uint64_t ratelimit_table_evictions(void)
{
	return atomic_load_explicit(&evictions, memory_order_relaxed);
}

/* The slot of key h: found, or claimed. */
static struct rl_slot *slot_of(uint64_t h, uint64_t now)
{
	uint32_t first = (uint32_t)h & (RL_TABLE_SLOTS - 1);
	for (uint32_t p = 0; p < RL_TABLE_PROBES; p++) {
		struct rl_slot *s = &table[(first + p) & (RL_TABLE_SLOTS - 1)];
		if (atomic_load_explicit(&s->key, memory_order_acquire) == h)
			return s;
	}
	struct rl_slot *nearest = NULL;
	uint64_t nearest_tat = UINT64_MAX;
	for (uint32_t p = 0; p < RL_TABLE_PROBES; p++) {
		struct rl_slot *s = &table[(first + p) & (RL_TABLE_SLOTS - 1)];
		uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
		uint64_t t = atomic_load_explicit(&s->tat, memory_order_relaxed);
		if (k == h)
			return s;
		if (k == 0 || t <= now) { /* free, or idle: its bucket is full, nothing is lost */
			if (atomic_compare_exchange_strong(&s->key, &k, h) || k == h)
				return s;
			continue;
		}
		if (t < nearest_tat) {
			nearest = s;
			nearest_tat = t;
		}
	}
	uint64_t k = atomic_load_explicit(&nearest->key, memory_order_acquire);
	if (k != h && atomic_compare_exchange_strong(&nearest->key, &k, h)) {
		atomic_store_explicit(&nearest->tat, 0, memory_order_relaxed);
		atomic_fetch_add_explicit(&evictions, 1, memory_order_relaxed);
	}
	return nearest;
}

bool ratelimit_table_admit(uint64_t h, uint64_t now, uint64_t interval_ns, uint32_t burst,
			   uint64_t *after_ns)
{
	struct rl_slot *s = slot_of(h, now);
	uint64_t old = atomic_load_explicit(&s->tat, memory_order_relaxed);
	for (;;) {
		uint64_t tat = old;
		if (!gcra_admit(&tat, now, interval_ns, burst, after_ns))
			return false;
		if (atomic_compare_exchange_weak_explicit(&s->tat, &old, tat, memory_order_relaxed,
							  memory_order_relaxed))
			return true;
	}
}

void ratelimit_table_undo(uint64_t h, uint64_t interval_ns)
{
	uint32_t first = (uint32_t)h & (RL_TABLE_SLOTS - 1);
	for (uint32_t p = 0; p < RL_TABLE_PROBES; p++) {
		struct rl_slot *s = &table[(first + p) & (RL_TABLE_SLOTS - 1)];
		if (atomic_load_explicit(&s->key, memory_order_acquire) != h)
			continue;
		uint64_t old = atomic_load_explicit(&s->tat, memory_order_relaxed);
		while (old >= interval_ns &&
		       !atomic_compare_exchange_weak_explicit(&s->tat, &old, old - interval_ns,
							      memory_order_relaxed, memory_order_relaxed))
			;
		return;
	}
}

/* ---- the stage --------------------------------------------------------------------------------- */

/* What the request is limited by under limit l: *v (pointing into the request, or into ip), and
 * the seed of its hashes (the scope's, and the kind of value). */
static void key_of(struct exchange *x, const struct rw_rate_limit *l, char ip[64], struct slice *v,
		   uint64_t *seed)
{
	char kind = 'i';
	*v = (struct slice){ 0 };
	switch (l->by) {
	case RL_BY_CONSUMER:
		if (x->who.method) {
			*v = slice_make(x->who.name, strlen(x->who.name));
			kind = 'c';
		}
		break;
	case RL_BY_HEADER:
		*v = http_header_value(&x->req, l->header);
		kind = 'h';
		break;
	case RL_BY_ROUTE:
		kind = 'r';
		break;
	}
	if (kind == 'i' || (kind == 'h' && !v->len)) { /* by ip, or the fallback of the others */
		client_peer_ip(x->c, ip, 64);
		*v = slice_make(ip, strlen(ip));
		kind = 'i';
	}
	*seed = l->scope_hash + (uint64_t)kind;
}

/* The hash of the request's key under limit l: its scope and the value it is limited by. */
static uint64_t key_hash(struct exchange *x, const struct rw_rate_limit *l)
{
	char ip[64];
	struct slice v;
	uint64_t seed;
	key_of(x, l, ip, &v, &seed);
	uint64_t h = XXH3_64bits_withSeed(v.p, v.len, seed);
	return h ? h : 1;
}

/* The RateLimit fields of an answer: limit l with debt_ns, remaining requests. */
static void set_headers(struct exchange *x, const struct rw_rate_limits *ls,
			const struct rw_rate_limit *l, uint32_t remaining, uint64_t debt_ns)
{
	struct writer w = writer_init(x->rl_headers, sizeof x->rl_headers);
	w_str(&w, "RateLimit-Limit: ");
	w_u64(&w, l->burst);
	w_str(&w, "\r\nRateLimit-Remaining: ");
	w_u64(&w, remaining);
	w_str(&w, "\r\nRateLimit-Reset: ");
	w_u64(&w, (debt_ns + NS_PER_S - 1) / NS_PER_S);
	w_str(&w, "\r\nRateLimit-Policy: ");
	w_str(&w, ls->policy);
	w_str(&w, "\r\n");
	x->rl_headers_len = w.overflow ? 0 : (uint16_t)writer_len(&w);
}

/* Logs a refusal at most once a second per worker. */
static void log_refused(struct exchange *x, const struct rw_rate_limit *l)
{
	uint64_t now_s = now_ns() / NS_PER_S;
	if (x->sh->rl_logged_at == now_s)
		return;
	x->sh->rl_logged_at = now_s;
	log_warn("rate limit: route '%s', request %s refused by %s (%u per %us, burst %u)",
		 x->route->name, x->request_id, l->scope, l->count, l->period_s, l->burst);
}

/* 429 with Retry-After and the RateLimit fields of the refusing limit. */
static void refuse(struct exchange *x, const struct rw_rate_limits *ls,
		   const struct rw_rate_limit *l, uint64_t retry_ns)
{
	/* the bucket's debt now (the refused request took nothing): retry + tolerance - interval */
	set_headers(x, ls, l, 0, retry_ns + (uint64_t)l->burst * l->interval_ns - l->interval_ns);
	char extra[RL_HEADERS_MAX + 32];
	uint64_t retry_s = (retry_ns + NS_PER_S - 1) / NS_PER_S;
	snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)(retry_s ? retry_s : 1));
	stat_add(&x->sh->stats->rate_limit[RL_REFUSED], 1);
	log_refused(x, l);
	exchange_refuse(x, RW_RATE_LIMITED, extra, false);
}

/* Every limit decided with the process's table. */
static enum stage_result decide_locally(struct exchange *x, const struct rw_rate_limits *ls)
{
	uint64_t now = now_ns(), hashes[ls->count];
	uint32_t best_remaining = UINT32_MAX;
	const struct rw_rate_limit *best = NULL;
	uint64_t best_debt = 0;
	for (uint32_t i = 0; i < ls->count; i++) {
		const struct rw_rate_limit *l = &ls->list[i];
		uint64_t after;
		hashes[i] = key_hash(x, l);
		if (!ratelimit_table_admit(hashes[i], now, l->interval_ns, l->burst, &after)) {
			while (i-- > 0)
				ratelimit_table_undo(hashes[i], ls->list[i].interval_ns);
			refuse(x, ls, l, after);
			return STAGE_ANSWERED;
		}
		uint32_t remaining = gcra_remaining(after, l->interval_ns, l->burst);
		if (remaining < best_remaining) {
			best_remaining = remaining;
			best = l;
			best_debt = after;
		}
	}
	set_headers(x, ls, best, best_remaining, best_debt);
	stat_add(&x->sh->stats->rate_limit[RL_ADMITTED], 1);
	return STAGE_CONTINUE;
}

/* ---- cluster mode ------------------------------------------------------------------------------ */

const char ratelimit_script_text[] =
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local interval = tonumber(ARGV[1])\n"
	"local burst = tonumber(ARGV[2])\n"
	"local tat = tonumber(redis.call('GET', KEYS[1])) or 0\n"
	"if tat < now then tat = now end\n"
	"local nxt = tat + interval\n"
	"local debt = nxt - now\n"
	"local tolerance = burst * interval\n"
	"if debt > tolerance then return {0, debt - tolerance} end\n"
	"redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.floor(debt / 1000) + 1)\n"
	"return {1, debt}\n";

/* Gives one admission back (a later limit of the same request refused it): KEYS[1], ARGV[1] the
 * interval in microseconds. */
static const char give_back_text[] =
	"local tat = tonumber(redis.call('GET', KEYS[1]))\n"
	"if tat then redis.call('SET', KEYS[1], string.format('%d', tat - tonumber(ARGV[1])), "
	"'KEEPTTL') end\n"
	"return 1\n";

static struct redis_script decide_script, give_back_script;

static pthread_once_t scripts_once = PTHREAD_ONCE_INIT;

static void scripts_init_once(void)
{
	redis_script_init(&give_back_script, give_back_text);
	redis_script_init(&decide_script, ratelimit_script_text);
}

static void scripts_init(void)
{
	pthread_once(&scripts_once, scripts_init_once);
}

enum { RW_PENDING = 0, RW_ADMITTED, RW_REFUSED, RW_FAILED };

/* One limit's call. */
struct rl_call {
	struct rl_wait *w;
	struct redis_call *call;     /* NULL once answered */
	uint8_t state;
	uint64_t us;                 /* admitted: the debt; refused: the wait (microseconds) */
	uint64_t interval_us;
	char key[RL_REDIS_KEY_MAX];
	uint8_t key_len;
};

#define RL_WAIT_POOLED 8u /* waits for up to this many limits are kept for reuse */

struct rl_wait {
	struct rl_wait *next_free;
	struct exchange *x;
	const struct rw_rate_limits *ls;
	uint32_t cap, outstanding;
	const char *why;             /* the first failure */
	struct rl_call calls[];
};

static struct rl_wait *wait_get(struct shard *sh, uint32_t n)
{
	struct rl_wait *w = NULL;
	if (n <= RL_WAIT_POOLED && (w = sh->rl_free_waits)) {
		sh->rl_free_waits = w->next_free;
		return w;
	}
	uint32_t cap = n <= RL_WAIT_POOLED ? RL_WAIT_POOLED : n;
	if (!(w = malloc(sizeof *w + cap * sizeof w->calls[0])))
		return NULL;
	w->cap = cap;
	return w;
}

static void wait_put(struct shard *sh, struct rl_wait *w)
{
	if (w->cap != RL_WAIT_POOLED) {
		free(w);
		return;
	}
	w->next_free = sh->rl_free_waits;
	sh->rl_free_waits = w;
}

void ratelimit_shard_free(struct shard *sh)
{
	while (sh->rl_free_waits) {
		struct rl_wait *w = sh->rl_free_waits;
		sh->rl_free_waits = w->next_free;
		free(w);
	}
}

/* A failure of the store, logged at most once a second per worker. */
static void log_store_failure(struct exchange *x, const char *why)
{
	uint64_t now_s = now_ns() / NS_PER_S;
	if (x->sh->rl_failure_logged_at == now_s)
		return;
	x->sh->rl_failure_logged_at = now_s;
	static const char *const what[] = { "the local limits decide", "the request passes",
					    "the request is refused (503)" };
	const struct rw_rate_limit_store *st = &x->snap->cfg->rate_limit_store;
	log_warn("rate limit: redis %s failed (%s): on_failure %s: %s",
		 st->addr ? st->addr->text : "?", why,
		 st->on_failure == RL_ON_FAILURE_ALLOW ? "allow" :
		 st->on_failure == RL_ON_FAILURE_DENY ? "deny" : "local",
		 what[st->on_failure <= RL_ON_FAILURE_DENY ? st->on_failure : 0]);
}

/* The store could not decide: on_failure does. */
static enum stage_result store_failed(struct exchange *x, const struct rw_rate_limits *ls,
				      const char *why)
{
	const struct rw_rate_limit_store *st = &x->snap->cfg->rate_limit_store;
	_Atomic uint64_t *decisions = x->sh->stats->rate_limit;
	log_store_failure(x, why);
	switch (st->on_failure) {
	case RL_ON_FAILURE_ALLOW:
		stat_add(&decisions[RL_FAILURE_ALLOWED], 1);
		x->rl_headers_len = 0; /* nothing is known of the buckets */
		return STAGE_CONTINUE;
	case RL_ON_FAILURE_DENY:
		stat_add(&decisions[RL_FAILURE_DENIED], 1);
		exchange_refuse(x, RW_RATE_LIMIT_UNAVAILABLE, "Retry-After: 1\r\n", false);
		return STAGE_ANSWERED;
	default:
		stat_add(&decisions[RL_FAILURE_LOCAL], 1);
		return decide_locally(x, ls);
	}
}

/* The admissions Redis made for a request that does not pass are given back. */
static void give_back(struct shard *sh, struct rl_wait *w, uint32_t n)
{
	if (!redis_accepting(sh->redis))
		return;
	for (uint32_t i = 0; i < n; i++) {
		struct rl_call *c = &w->calls[i];
		if (c->state != RW_ADMITTED)
			continue;
		char interval[24];
		const char *argv[2] = { c->key, interval };
		size_t lens[2] = { c->key_len,
				   (size_t)snprintf(interval, sizeof interval, "%llu",
						    (unsigned long long)c->interval_us) };
		redis_eval(sh->redis, &give_back_script, 1, 2, argv, lens, NULL, NULL);
	}
}

/* Every reply is in: the decision. */
static enum stage_result decide_with_replies(struct rl_wait *w)
{
	struct exchange *x = w->x;
	const struct rw_rate_limits *ls = w->ls;
	uint32_t n = ls->count;
	int refused = -1, best = -1;
	uint32_t best_remaining = UINT32_MAX;
	bool failed = false;
	for (uint32_t i = 0; i < n; i++) {
		const struct rl_call *c = &w->calls[i];
		if (c->state == RW_REFUSED && (refused < 0 || c->us > w->calls[refused].us))
			refused = (int)i;
		failed |= c->state == RW_FAILED;
		if (c->state == RW_ADMITTED) {
			uint64_t T = c->interval_us * 1000;
			uint32_t remaining = gcra_remaining(c->us * 1000, T, ls->list[i].burst);
			if (remaining < best_remaining) {
				best_remaining = remaining;
				best = (int)i;
			}
		}
	}
	if (refused >= 0) {
		give_back(x->sh, w, n);
		refuse(x, ls, &ls->list[refused], w->calls[refused].us * 1000);
		return STAGE_ANSWERED;
	}
	if (failed) {
		enum stage_result r = store_failed(x, ls, w->why ? w->why : "failed");
		if (r != STAGE_CONTINUE)
			give_back(x->sh, w, n);
		return r;
	}
	set_headers(x, ls, &ls->list[best], best_remaining, w->calls[best].us * 1000);
	stat_add(&x->sh->stats->rate_limit[RL_ADMITTED], 1);
	return STAGE_CONTINUE;
}

/* A reply {1, debt} or {0, wait}, or anything else (a failure). */
static void on_reply(void *arg, const struct redisReply *reply, const char *why)
{
	struct rl_call *c = arg;
	struct rl_wait *w = c->w;
	c->call = NULL;
	if (reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER &&
	    reply->element[1]->type == REDIS_REPLY_INTEGER) {
		long long v = reply->element[1]->integer;
		c->state = reply->element[0]->integer ? RW_ADMITTED : RW_REFUSED;
		c->us = v > 0 ? (uint64_t)v : 0;
	} else {
		c->state = RW_FAILED;
		if (!w->why)
			w->why = why ? why : reply && reply->type == REDIS_REPLY_ERROR ?
				 "error reply" : "unexpected reply";
		if (reply && reply->type == REDIS_REPLY_ERROR) {
			uint64_t now_s = now_ns() / NS_PER_S;
			if (w->x->sh->rl_failure_logged_at != now_s)
				log_warn("rate limit: redis error reply: %.*s", (int)reply->len, reply->str);
		}
	}
	if (--w->outstanding)
		return;
	struct exchange *x = w->x;
	struct shard *sh = x->sh;
	x->stage_state = NULL;
	enum stage_result r = decide_with_replies(w);
	wait_put(sh, w);
	if (r == STAGE_CONTINUE)
		exchange_resume(x);
}

/* One EVALSHA per limit; the stage waits for the replies. */
static enum stage_result ask_redis(struct exchange *x, const struct rw_rate_limits *ls)
{
	struct shard *sh = x->sh;
	struct rl_wait *w = wait_get(sh, ls->count);
	if (!w)
		return store_failed(x, ls, REDIS_WHY_NOMEM);
	scripts_init();
	w->x = x;
	w->ls = ls;
	w->why = NULL;
	w->outstanding = ls->count;
	for (uint32_t i = 0; i < ls->count; i++) {
		const struct rw_rate_limit *l = &ls->list[i];
		struct rl_call *c = &w->calls[i];
		char ip[64], interval[24], burst[16];
		struct slice v;
		uint64_t seed;
		key_of(x, l, ip, &v, &seed);
		XXH128_hash_t h = XXH3_128bits_withSeed(v.p, v.len, seed);
		c->w = w;
		c->state = RW_PENDING;
		c->interval_us = l->interval_ns / 1000 ? l->interval_ns / 1000 : 1;
		c->key_len = (uint8_t)snprintf(c->key, sizeof c->key, "ringway:rl:{%016llx%016llx}",
					       (unsigned long long)h.high64,
					       (unsigned long long)h.low64);
		const char *argv[3] = { c->key, interval, burst };
		size_t lens[3] = { c->key_len,
				   (size_t)snprintf(interval, sizeof interval, "%llu",
						    (unsigned long long)c->interval_us),
				   (size_t)snprintf(burst, sizeof burst, "%u", l->burst) };
		c->call = redis_eval(sh->redis, &decide_script, 1, 3, argv, lens, on_reply, c);
		if (!c->call) { /* out of memory: no callback will come */
			c->state = RW_FAILED;
			w->why = REDIS_WHY_NOMEM;
			w->outstanding--;
		}
	}
	if (w->outstanding) {
		x->stage_state = w;
		return STAGE_WAIT;
	}
	enum stage_result r = decide_with_replies(w);
	wait_put(sh, w);
	return r;
}

enum stage_result ratelimit_check(struct exchange *x, const struct stage *st)
{
	const struct rw_rate_limits *ls = &x->route->rate_limits;
	if (!x->snap->cfg->rate_limit_store.redis)
		return decide_locally(x, ls);
	if (!redis_accepting(x->sh->redis)) { /* its calls would fail at once: they are not made */
		stat_add(&x->sh->stats->redis_calls[REDIS_DISCONNECTED], ls->count);
		return store_failed(x, ls, "not connected");
	}
	return ask_redis(x, ls);
}

void ratelimit_cancel(struct exchange *x, const struct stage *st)
{
	struct rl_wait *w = x->stage_state;
	x->stage_state = NULL;
	if (!w)
		return;
	for (uint32_t i = 0; i < w->ls->count; i++)
		if (w->calls[i].call)
			redis_call_cancel(w->calls[i].call);
	wait_put(x->sh, w);
}
