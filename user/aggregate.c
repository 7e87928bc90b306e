/* aggregate.c — the aggregate handler (see aggregate.h): the calls of one exchange, each a leg with
 * the collecting sink, their templates filled from the request and earlier answers, the deadline
 * of the whole aggregate, and the merged answer. Callbacks of the legs and the deadline change the
 * state; only they (and aggregate_handle), at their end, may answer (check), which ends the
 * exchange and frees the state. */
#include "aggregate.h"

#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "exchange.h"
#include "router.h"
#include "shard.h"
#include "writer.h"

enum call_state { CALL_PENDING = 0, CALL_RUNNING, CALL_OK, CALL_FAILED };

#define TARGET_MAX 2048
#define KEPT_BODY_MAX (64u << 10) /* a call's body memory kept with the exchange up to this */

struct agg_call {
	struct leg leg;
	struct leg_call lc;
	uint8_t state;         /* enum call_state */
	char why[128];
	char *body;
	size_t len, cap;
	json_t *json;
	char target[TARGET_MAX];
};

struct aggregate {
	struct exchange *x;
	const struct rw_aggregate *cfg;
	struct timer tm;
	uint32_t nleft;        /* calls neither OK nor FAILED */
	struct agg_call calls[AGG_MAX_CALLS];
};

#define CALL_OF(lg) ((struct agg_call *)((char *)(lg) - offsetof(struct agg_call, leg)))

static struct aggregate *agg_of(struct agg_call *c)
{
	return c->leg.x->agg;
}

static void call_settle(struct aggregate *a, struct agg_call *c, uint8_t state)
{
	c->state = state;
	a->nleft--;
}

static void call_fail(struct aggregate *a, struct agg_call *c, const char *why)
{
	if (c->state == CALL_OK || c->state == CALL_FAILED)
		return;
	snprintf(c->why, sizeof c->why, "%s", why);
	if (c->leg.t_start_ns && !c->leg.t_done_ns)
		c->leg.t_done_ns = now_ns();
	leg_release(&c->leg, false);
	call_settle(a, c, CALL_FAILED);
}

/* ---- templates -------------------------------------------------------------------------------- */

static void put_encoded(struct writer *o, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)p[i];
		if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
		    ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			w_put(o, (const char *)&ch, 1);
		} else {
			char e[3] = { '%', hex[ch >> 4], hex[ch & 15] };
			w_put(o, e, 3);
		}
	}
}

static int unhex(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* A value as sent (percent-encoded, '+' in a query a space): decoded, then encoded again. */
static void put_reencoded(struct writer *o, struct slice v, bool query)
{
	char buf[1024];
	size_t n = 0;
	for (uint32_t i = 0; i < v.len && n < sizeof buf; i++) {
		int h, l;
		if (v.p[i] == '%' && i + 2 < v.len &&
		    (h = unhex(v.p[i + 1])) >= 0 && (l = unhex(v.p[i + 2])) >= 0) {
			buf[n++] = (char)(h << 4 | l);
			i += 2;
		} else {
			buf[n++] = query && v.p[i] == '+' ? ' ' : v.p[i];
		}
	}
	put_encoded(o, buf, n);
}

/* A JSON value at the dotted path (object keys; array indexes as numbers) written encoded. */
static bool put_json_at(struct writer *o, json_t *j, const char *path, size_t len)
{
	const char *p = path, *end = path + len;
	while (p < end && j) {
		const char *dot = memchr(p, '.', (size_t)(end - p));
		const char *stop = dot ? dot : end;
		char part[256];
		size_t n = (size_t)(stop - p);
		if (n == 0 || n >= sizeof part)
			return false;
		memcpy(part, p, n);
		part[n] = '\0';
		if (json_is_array(j)) {
			char *e;
			unsigned long k = strtoul(part, &e, 10);
			j = *e ? NULL : json_array_get(j, k);
		} else {
			j = json_object_get(j, part);
		}
		p = stop + 1;
	}
	char num[64];
	if (json_is_string(j)) {
		put_encoded(o, json_string_value(j), json_string_length(j));
	} else if (json_is_integer(j)) {
		w_put(o, num, (size_t)snprintf(num, sizeof num, "%" JSON_INTEGER_FORMAT, json_integer_value(j)));
	} else if (json_is_real(j)) {
		w_put(o, num, (size_t)snprintf(num, sizeof num, "%.17g", json_real_value(j)));
	} else if (json_is_boolean(j)) {
		w_str(o, json_is_true(j) ? "true" : "false");
	} else {
		return false;
	}
	return true;
}

/* c's target from its template; false with why when a name is absent. */
static bool fill(struct aggregate *a, struct agg_call *c, const struct rw_agg_call *cc)
{
	const struct exchange *x = a->x;
	struct writer o = writer_init(c->target, sizeof c->target);
	const char *t = cc->path;
	bool in_query = false;
	while (*t) {
		if (*t != '{') {
			in_query |= *t == '?';
			w_put(&o, t, 1);
			t++;
			continue;
		}
		const char *name = t + 1, *close = strchr(t, '}');
		size_t len = (size_t)(close - name);
		const char *dot = memchr(name, '.', len);
		size_t head = dot ? (size_t)(dot - name) : len;
		struct slice v;
		bool ok = false;
		if (len == 8 && !memcmp(name, "consumer", 8)) {
			if ((ok = x->who.method != 0))
				put_encoded(&o, x->who.name, strlen(x->who.name));
		} else if (dot && head == 5 && !memcmp(name, "query", 5)) {
			if ((ok = http_query_param(x->req.query, dot + 1, len - 6, &v)))
				put_reencoded(&o, v, true);
		} else if (dot && head == 6 && !memcmp(name, "header", 6)) {
			for (unsigned i = 0; i < x->req.nheaders && !ok; i++) {
				const struct http_header *h = &x->req.headers[i];
				if (h->name.len == len - 7 && slice_ieq(h->name, dot + 1, len - 7)) {
					put_encoded(&o, h->value.p, h->value.len);
					ok = true;
				}
			}
		} else if (dot) {
			for (uint32_t i = 0; i < a->cfg->ncalls; i++) {
				const struct rw_agg_call *oc = &a->cfg->calls[i];
				struct agg_call *dep = &a->calls[i];
				if (strlen(oc->key) != head || memcmp(oc->key, name, head))
					continue;
				if (dep->state != CALL_OK)
					break;
				if (len - head - 1 == 6 && !memcmp(dot + 1, "status", 6)) {
					w_u64(&o, dep->leg.status);
					ok = true;
				} else {
					ok = put_json_at(&o, dep->json, dot + 6, len - head - 6);
				}
				break;
			}
		} else {
			char pname[128];
			snprintf(pname, sizeof pname, "%.*s", (int)len, name);
			if ((ok = router_path_param(x->route, x->req.path, pname, &v)))
				put_reencoded(&o, v, false);
		}
		if (!ok) {
			snprintf(c->why, sizeof c->why, "template {%.*s} has no value", (int)len, name);
			return false;
		}
		t = close + 1;
	}
	(void)in_query;
	if (o.overflow) {
		snprintf(c->why, sizeof c->why, "path longer than %d bytes", TARGET_MAX);
		return false;
	}
	c->lc.target = c->target;
	c->lc.target_len = (uint32_t)writer_len(&o);
	return true;
}

/* ---- the collecting sink ---------------------------------------------------------------------- */

static void check(struct aggregate *a);
static void start_ready(struct aggregate *a);

static bool collect_head(struct leg *lg, const struct http_response *r)
{
	struct agg_call *c = CALL_OF(lg);
	struct aggregate *a = agg_of(c);
	char why[64];
	if (r->status < 200 || r->status > 299) {
		snprintf(why, sizeof why, "status %u", r->status);
		call_fail(a, c, why);
		start_ready(a);
		check(a);
		return false;
	}
	if (r->content_length >= 0 && (uint64_t)r->content_length > a->cfg->max_body) {
		call_fail(a, c, "body larger than max_body");
		start_ready(a);
		check(a);
		return false;
	}
	return true;
}

static bool keep(struct agg_call *c, struct bufs *b, struct segq *q)
{
	for (struct seg *g = q->head; g; g = g->next) {
		if (c->len + g->len > c->cap) {
			size_t cap = c->cap ? c->cap : 4096;
			while (cap < c->len + g->len)
				cap *= 2;
			char *nb = realloc(c->body, cap);
			if (!nb)
				return false;
			c->body = nb;
			c->cap = cap;
		}
		memcpy(c->body + c->len, seg_ptr(b, g), g->len);
		c->len += g->len;
	}
	segq_clear(b, q);
	return true;
}

static void collect_done(struct aggregate *a, struct agg_call *c)
{
	json_error_t err;
	c->leg.t_done_ns = now_ns();
	c->json = json_loadb(c->body ? c->body : "", c->len, JSON_DECODE_ANY, &err);
	if (!c->json) {
		call_fail(a, c, "body is not JSON");
		return;
	}
	leg_release(&c->leg, c->leg.resp_keep_alive);
	call_settle(a, c, CALL_OK);
}

static void collect_body(struct leg *lg)
{
	struct agg_call *c = CALL_OF(lg);
	struct aggregate *a = agg_of(c);
	struct bufs *b = &a->x->sh->loop.bufs;
	struct segq q = { 0 };
	uint64_t moved;
	bool done;
	enum rw_reason r = leg_take_body(lg, b, &q, a->cfg->max_body + 1 - c->len, &moved, &done);
	bool kept = keep(c, b, &q);
	if (r != RW_OK || !kept) {
		call_fail(a, c, reason_name(kept ? r : RW_INTERNAL));
	} else if (c->len > a->cfg->max_body) {
		call_fail(a, c, "body larger than max_body");
	} else if (done) {
		collect_done(a, c);
	} else if (lg->u->s.eof && lg->u->s.in.bytes == 0) {
		if (lg->resp_mode == RESP_UNTIL_CLOSE)
			collect_done(a, c);
		else
			call_fail(a, c, reason_name(RW_UPSTREAM_RESET));
	} else {
		leg_arm_timer(lg);
		return;
	}
	start_ready(a);
	check(a);
}

static void collect_failed(struct leg *lg, enum rw_reason r, int err)
{
	struct agg_call *c = CALL_OF(lg);
	struct aggregate *a = agg_of(c);
	call_fail(a, c, reason_name(r));
	start_ready(a);
	check(a);
}

static void collect_spliced(struct leg *lg, bool is_in, int res)
{
	/* the collecting sink never splices */
}

static const struct leg_sink_ops collect_sink = {
	.head = collect_head,
	.body = collect_body,
	.failed = collect_failed,
	.spliced = collect_spliced,
};

/* ---- the calls -------------------------------------------------------------------------------- */

static void start_call(struct aggregate *a, struct agg_call *c, const struct rw_agg_call *cc)
{
	if (cc->after >= 0 && a->calls[cc->after].state == CALL_FAILED) {
		char why[128];
		snprintf(why, sizeof why, "after %s failed", cc->after >= 0 ? a->cfg->calls[cc->after].key : "");
		call_fail(a, c, why);
		return;
	}
	if (!fill(a, c, cc)) {
		char why[128];
		memcpy(why, c->why, sizeof why);
		call_fail(a, c, why);
		return;
	}
	c->state = CALL_RUNNING;
	c->leg.ups = cc->ups;
	c->leg.sink = &collect_sink;
	c->lc.method_id = cc->method_id;
	c->leg.call = &c->lc;
	c->leg.t_start_ns = now_ns();
	enum rw_reason r = leg_start_call(&c->leg);
	if (r != RW_OK)
		call_fail(a, c, reason_name(r));
}

/* Starts every pending call whose `after` is settled (again until none is left to start). */
static void start_ready(struct aggregate *a)
{
	bool again = true;
	while (again) {
		again = false;
		for (uint32_t i = 0; i < a->cfg->ncalls; i++) {
			const struct rw_agg_call *cc = &a->cfg->calls[i];
			struct agg_call *c = &a->calls[i];
			if (c->state != CALL_PENDING)
				continue;
			if (cc->after >= 0 && (a->calls[cc->after].state == CALL_PENDING ||
					       a->calls[cc->after].state == CALL_RUNNING))
				continue;
			start_call(a, c, cc);
			again = true;
		}
	}
}

/* ---- the answer ------------------------------------------------------------------------------- */

static void answer_error(struct aggregate *a, enum rw_reason r, const char *field, const char *name,
			 const char *why, const char *extra)
{
	struct exchange *x = a->x;
	json_t *e = json_pack("{s:i,s:s,s:s}", "status", reason_status(r), "reason", reason_name(r),
			      "message", reason_message(r));
	if (e && name)
		json_object_set_new(e, field, json_string(name));
	if (e && why)
		json_object_set_new(e, "why", json_string(why));
	json_t *doc = e ? json_pack("{s:o}", "error", e) : NULL;
	char *body = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
	json_decref(doc);
	x->status = (uint16_t)reason_status(r);
	size_t len = body ? strlen(body) : 0;
	client_answer_own(x->c, reason_status(r), r, "application/json", extra, body ? body : "", len,
			  x->method_id == HTTP_M_HEAD);
	free(body);
}

/* The header lines written so far in w (over buf), NUL-terminated; NULL when there are none. */
static const char *lines_of(struct writer *w, char *buf)
{
	size_t n = w->overflow ? 0 : writer_len(w);
	buf[n] = '\0';
	return n ? buf : NULL;
}

/* Only the RateLimit and CORS lines at the front of buf (an error answer has no
 * X-Ringway-Partial). */
static const char *rl_lines(const struct exchange *x, char *buf)
{
	size_t n = (size_t)x->rl_headers_len + x->cors_headers_len;
	buf[n] = '\0';
	return n ? buf : NULL;
}

/* Answers the request: the exchange ends and a is freed. */
static void finish(struct aggregate *a)
{
	struct exchange *x = a->x;
	const struct rw_aggregate *cfg = a->cfg;
	timer_cancel(&x->sh->loop.wheel, &a->tm);
	/* the access log's upstream: the first call's target */
	x->leg.target = a->calls[0].leg.target ? a->calls[0].leg.target : "aggregate";
	x->leg.t_start_ns = a->calls[0].leg.t_start_ns;
	x->leg.t_done_ns = now_ns();
	char extra[RL_HEADERS_MAX + CORS_HEADERS_MAX + 64 + AGG_MAX_CALLS * 64];
	struct writer ew = writer_init(extra, sizeof extra - 1); /* room for the NUL (lines_of) */
	w_put(&ew, x->rl_headers, x->rl_headers_len);
	w_put(&ew, x->cors_headers, x->cors_headers_len);
	for (uint32_t i = 0; i < cfg->ncalls; i++) {
		if (a->calls[i].state == CALL_FAILED && cfg->calls[i].required) {
			answer_error(a, RW_AGGREGATE_CALL_FAILED, "call", cfg->calls[i].key,
				     a->calls[i].why, rl_lines(x, extra));
			return;
		}
	}
	json_t *out = json_object();
	bool partial = false;
	for (uint32_t i = 0; out && i < cfg->ncalls; i++) {
		struct agg_call *c = &a->calls[i];
		const char *key = cfg->calls[i].key;
		bool ok = c->state == CALL_OK;
		if (ok && cfg->merge == AGG_MERGE_SHALLOW && !json_is_object(c->json)) {
			ok = false;
			snprintf(c->why, sizeof c->why, "body is not a JSON object");
			if (cfg->calls[i].required) {
				json_decref(out);
				answer_error(a, RW_AGGREGATE_CALL_FAILED, "call", key, c->why,
					     rl_lines(x, extra));
				return;
			}
		}
		if (!ok) {
			w_str(&ew, partial ? "," : "X-Ringway-Partial: ");
			w_str(&ew, key);
			partial = true;
			if (cfg->merge == AGG_MERGE_OBJECT)
				json_object_set_new(out, key, json_null());
			continue;
		}
		if (cfg->merge == AGG_MERGE_OBJECT) {
			json_object_set(out, key, c->json);
			continue;
		}
		const char *k;
		json_t *v;
		json_object_foreach(c->json, k, v) {
			if (json_object_get(out, k)) {
				if (cfg->collision == AGG_COLLISION_FIRST)
					continue;
				if (cfg->collision == AGG_COLLISION_ERROR) {
					char why[160];
					snprintf(why, sizeof why, "key '%s' is in more than one answer", k);
					json_decref(out);
					answer_error(a, RW_AGGREGATE_MERGE_CONFLICT, "key", k, why,
						     rl_lines(x, extra));
					return;
				}
			}
			json_object_set(out, k, v);
		}
	}
	if (partial)
		w_str(&ew, "\r\n");
	char *body = out ? json_dumps(out, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	json_decref(out);
	if (!body || ew.overflow) {
		free(body);
		answer_error(a, RW_INTERNAL, NULL, NULL, NULL, NULL);
		return;
	}
	x->status = 200;
	client_answer_own(x->c, 200, RW_OK, "application/json", lines_of(&ew, extra), body,
			  strlen(body), x->method_id == HTTP_M_HEAD);
	free(body);
}

static void check(struct aggregate *a)
{
	if (a->nleft == 0) {
		finish(a);
		return;
	}
	for (uint32_t i = 0; i < a->cfg->ncalls; i++) {
		if (a->calls[i].state == CALL_FAILED && a->cfg->calls[i].required) {
			finish(a);
			return;
		}
	}
}

static void on_deadline(struct timer *t)
{
	struct aggregate *a = (struct aggregate *)((char *)t - offsetof(struct aggregate, tm));
	for (uint32_t i = 0; i < a->cfg->ncalls; i++)
		call_fail(a, &a->calls[i], "timeout");
	finish(a);
}

void aggregate_handle(struct exchange *x)
{
	const struct rw_aggregate *cfg = x->route->aggregate;
	struct aggregate *a = x->agg_kept; /* the exchange's pool: bodies' memory kept, the rest reset */
	x->agg_kept = NULL;
	if (!a && !(a = calloc(1, sizeof *a))) {
		exchange_refuse(x, RW_INTERNAL, NULL, true);
		return;
	}
	x->agg = a;
	a->x = x;
	a->cfg = cfg;
	a->nleft = cfg->ncalls;
	for (uint32_t i = 0; i < cfg->ncalls; i++) {
		struct agg_call *c = &a->calls[i];
		leg_init(&c->leg, x);
		c->state = CALL_PENDING;
		c->why[0] = '\0';
		c->len = 0;
		c->json = NULL;
	}
	exchange_keep_head(x);
	timer_arm(&x->sh->loop.wheel, &a->tm, cfg->timeout_ms, on_deadline);
	start_ready(a);
	check(a);
}

void aggregate_end(struct exchange *x)
{
	struct aggregate *a = x->agg;
	x->agg = NULL;
	timer_cancel(&x->sh->loop.wheel, &a->tm);
	for (uint32_t i = 0; i < AGG_MAX_CALLS; i++) {
		struct agg_call *c = &a->calls[i];
		if (i < a->cfg->ncalls)
			leg_release(&c->leg, false);
		json_decref(c->json);
		c->json = NULL;
		if (c->cap > KEPT_BODY_MAX) { /* a large body's memory is not kept */
			free(c->body);
			c->body = NULL;
			c->cap = 0;
		}
	}
	x->agg_kept = a; /* pooled with the exchange, for its next aggregate */
}

void aggregate_free_kept(struct exchange *x)
{
	struct aggregate *a = x->agg_kept;
	x->agg_kept = NULL;
	if (!a)
		return;
	for (uint32_t i = 0; i < AGG_MAX_CALLS; i++)
		free(a->calls[i].body);
	free(a);
}
