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
 * carries the RateLimit fields of the limit with the fewest requests remaining. */
#include "ratelimit.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "conn.h"
#include "exchange.h"
#include "log.h"
#include "metrics.h"
#include "shard.h"
#include "writer.h"

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

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

/* The value of the first header named name, or an empty slice. */
static struct slice header_value(const struct http_request *req, const char *name)
{
	size_t len = strlen(name);
	for (unsigned i = 0; i < req->nheaders; i++)
		if (slice_ieq(req->headers[i].name, name, len))
			return req->headers[i].value;
	return (struct slice){ 0 };
}

/* The hash of the request's key under limit l: its scope and the value it is limited by. */
static uint64_t key_hash(struct exchange *x, const struct rw_rate_limit *l)
{
	char ip[64];
	struct slice v = { 0 };
	char kind = 'i';
	switch (l->by) {
	case RL_BY_CONSUMER:
		if (x->who.method) {
			v = slice_make(x->who.name, strlen(x->who.name));
			kind = 'c';
		}
		break;
	case RL_BY_HEADER:
		v = header_value(&x->req, l->header);
		kind = 'h';
		break;
	case RL_BY_ROUTE:
		kind = 'r';
		break;
	}
	if (kind == 'i' || (kind == 'h' && !v.len)) { /* by ip, or the fallback of the others */
		client_peer_ip(x->c, ip, sizeof ip);
		v = slice_make(ip, strlen(ip));
		kind = 'i';
	}
	uint64_t h = XXH3_64bits_withSeed(v.p, v.len, l->scope_hash + (uint64_t)kind);
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
	uint64_t now_s = monotonic_ns() / NS_PER_S;
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
	set_headers(x, ls, l, 0, retry_ns + (uint64_t)l->burst * l->interval_ns);
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
	uint64_t now = monotonic_ns(), hashes[ls->count];
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

enum stage_result ratelimit_check(struct exchange *x, const struct stage *st)
{
	return decide_locally(x, &x->route->rate_limits);
}

void ratelimit_cancel(struct exchange *x, const struct stage *st)
{
}
