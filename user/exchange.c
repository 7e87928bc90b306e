/* exchange.c — one client request and what answers it: taking over the parsed head, its trace and
 * request id (trace.h), routing on the snapshot the worker runs now (held until the exchange
 * ends), the route's stages, the request body forwarded to the leg with backpressure (through the
 * ring, or spliced when large), and the end of the exchange. */
#include "exchange.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregate.h"
#include "conn.h"
#include "metrics.h"
#include "router.h"
#include "stage.h"
#include "upstream.h"
#include "shard.h"

static struct exchange *exchange_alloc(struct shard *sh)
{
	struct exchange *x = sh->free_exchanges;
	if (x)
		sh->free_exchanges = x->next_free;
	else if ((x = malloc(sizeof *x)))
		x->agg_kept = NULL;
	else
		return NULL;
	memset(x, 0, offsetof(struct exchange, who)); /* req is filled from the parse */
	x->who.method = 0;
	x->head_buf = UINT32_MAX;
	x->max_body = UINT64_MAX;
	splice_leg_init(&x->req_splice);
	leg_init(&x->leg, x);
	return x;
}

void exchange_release_head(struct exchange *x)
{
	if (x->head_buf == UINT32_MAX)
		return;
	buf_unref(&x->sh->loop.bufs, x->head_buf);
	x->head_buf = UINT32_MAX;
}

void exchange_end(struct exchange *x)
{
	struct shard *sh = x->sh;
	if (x->waiting) { /* ended while a stage waited: it must not resume a freed exchange */
		const struct stage *st = x->waiting;
		x->waiting = NULL;
		st->cancel(x, st);
	}
	leg_release(&x->leg, false);
	if (x->agg)
		aggregate_end(x);
	splice_abandon(&sh->loop, &x->req_splice);
	exchange_release_head(x);
	shard_snap_release(x->snap);
	x->next_free = sh->free_exchanges;
	sh->free_exchanges = x;
}

void exchange_refuse(struct exchange *x, enum rw_reason r, const char *extra, bool close)
{
	x->waiting = NULL; /* a waiting stage refusing with its result is done with the exchange */
	client_refuse(x->c, r, extra, close);
}

/* Points a slice that was inside [from, from + len) at the same bytes in to. */
static void rebase(struct slice *sl, const char *from, uint32_t len, const char *to)
{
	if (sl->p >= from && sl->p < from + len)
		sl->p = to + (sl->p - from);
}

/* A waiting exchange holds no ring buffer (the kernel needs them for every socket's recv): a head
 * still in one moves to a heap buffer, its slices with it. If none can be had, it stays. */
static void head_off_the_ring(struct exchange *x)
{
	struct bufs *b = &x->sh->loop.bufs;
	if (x->head_buf == UINT32_MAX || x->head_buf >= b->ring_n)
		return;
	uint32_t id = buf_heap_get(b);
	if (id == UINT32_MAX)
		return;
	const char *from = buf_ptr(b, x->head_buf);
	char *to = buf_ptr(b, id);
	uint32_t len = buf_cap(b, x->head_buf); /* a ring buffer fits in a heap buffer */
	memcpy(to, from, len);
	struct http_request *req = &x->req;
	rebase(&req->method, from, len, to);
	rebase(&req->target, from, len, to);
	rebase(&req->path, from, len, to);
	rebase(&req->query, from, len, to);
	rebase(&req->host, from, len, to);
	for (unsigned i = 0; i < req->nheaders; i++) {
		rebase(&req->headers[i].name, from, len, to);
		rebase(&req->headers[i].value, from, len, to);
	}
	buf_unref(b, x->head_buf);
	x->head_buf = id;
}

void exchange_keep_head(struct exchange *x)
{
	head_off_the_ring(x);
}

/* The request's trace and id: a single valid traceparent continues the client's trace, anything
 * else starts a new one; a single valid X-Request-Id is kept, otherwise one is made. */
static void exchange_trace(struct exchange *x, const struct http_request *req)
{
	struct loop *l = &x->sh->loop;
	const struct slice *tp = NULL, *rid = NULL;
	unsigned ntp = 0, nrid = 0;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (h->id == HDR_TRACEPARENT) {
			tp = &h->value;
			ntp++;
		} else if (h->id == HDR_X_REQUEST_ID) {
			rid = &h->value;
			nrid++;
		}
	}
	if (ntp == 1 && trace_parse(tp->p, tp->len, &x->trace))
		trace_continue(&x->trace, loop_random(l));
	else
		trace_start(&x->trace, loop_random(l), loop_random(l), loop_random(l));
	if (nrid == 1 && request_id_valid(rid->p, rid->len)) {
		memcpy(x->request_id, rid->p, rid->len);
		x->request_id[rid->len] = '\0';
	} else {
		request_id_make(x->request_id, loop_random(l), loop_random(l));
	}
}

/* The stages from x->next_stage on, then the route's handler. */
static void run_stages(struct exchange *x)
{
	const struct rw_route *rt = x->route;
	while (x->next_stage < rt->nstages) {
		const struct stage *st = &rt->stages[x->next_stage++];
		switch (st->run(x, st)) {
		case STAGE_CONTINUE:
			continue;
		case STAGE_WAIT: /* exchange_resume or exchange_refuse comes later */
			x->waiting = st;
			head_off_the_ring(x);
			return;
		case STAGE_ANSWERED:
			return;
		}
	}
	if (rt->aggregate)
		aggregate_handle(x);
	else
		proxy_handle(x);
}

void exchange_resume(struct exchange *x)
{
	x->waiting = NULL;
	run_stages(x);
}

void exchange_start(struct shard *sh, struct client *c, struct sock *down, uint32_t head_len)
{
	struct bufs *b = &sh->loop.bufs;
	const struct http_request *req = &sh->req;
	struct exchange *x = exchange_alloc(sh);
	if (!x) {
		segq_consume(b, &down->in, head_len);
		client_refuse(c, RW_INTERNAL, NULL, true);
		return;
	}
	x->sh = sh;
	x->c = c;
	x->down = down;
	x->snap = shard_snap_hold(sh);
	x->t_start_ns = now_ns();
	/* the head: its parse, and a reference on the buffer its slices point into */
	memcpy(&x->req, req, offsetof(struct http_request, headers) +
				     req->nheaders * sizeof req->headers[0]);
	x->head_buf = down->in.head->id;
	buf_ref(b, x->head_buf);
	segq_consume(b, &down->in, head_len);
	x->method_id = req->method_id;
	x->method_len = (uint8_t)(req->method.len < sizeof x->method ? req->method.len : sizeof x->method);
	memcpy(x->method, req->method.p, x->method_len);
	x->path_len = (uint16_t)(req->path.len < sizeof x->path ? req->path.len : sizeof x->path);
	memcpy(x->path, req->path.p, x->path_len);
	exchange_trace(x, req);
	x->client_keep_alive = req->keep_alive;
	x->client_http10 = req->minor == 0;
	x->bytes_in = head_len;
	x->reason = RW_OK;
	x->req_has_body = req->chunked || req->content_length > 0;
	x->req_chunked = req->chunked;
	x->req_remaining = req->chunked ? 0 : (req->content_length > 0 ? req->content_length : 0);
	x->req_done = !x->req_has_body;
	client_attach(c, x);

	const struct rw_identity_token *idt = &x->snap->cfg->identity;
	if (idt->jwks_path && (req->method_id == HTTP_M_GET || req->method_id == HTTP_M_HEAD) &&
	    slice_eq(req->path, idt->jwks_path, strlen(idt->jwks_path))) {
		client_answer_own(c, 200, RW_OK, "application/json", NULL, idt->jwks,
				  idt->jwks_len, req->method_id == HTTP_M_HEAD);
		return;
	}
	const struct rw_frontend *fe = x->snap->listener_fe[c->listener];
	if (fe && fe->nhosts && !router_host_in(fe->hosts, fe->nhosts, req->host)) {
		exchange_refuse(x, RW_MISDIRECTED, NULL, false);
		return;
	}
	if (req->method_id == HTTP_M_OPTIONS && fe && cors_preflight(x, fe))
		return;
	uint32_t allow = 0;
	x->route = fe ? router_match(fe->router, req->host, req->path, req->method_id, &allow) : NULL;
	if (!x->route) {
		if (!allow) {
			exchange_refuse(x, RW_NO_ROUTE, NULL, false);
			return;
		}
		char list[96], extra[112];
		http_method_list(allow, list, sizeof list);
		snprintf(extra, sizeof extra, "Allow: %s\r\n", list);
		exchange_refuse(x, RW_METHOD_NOT_ALLOWED, extra, false);
		return;
	}
	run_stages(x);
}

/* The whole body is queued to the upstream: the client is read again (a pipelined request). */
static void request_read(struct exchange *x)
{
	x->req_done = true;
	client_arm_timer(x->c);
}

static void pump_spliced(struct exchange *x, struct sock *up)
{
	struct loop *l = &x->sh->loop;
	enum splice_status st = splice_step(l, &x->req_splice, x->down, up, &x->req_remaining,
					    &x->bytes_in);
	if (st == SPLICE_RUNNING)
		return;
	if (st == SPLICE_FAILED) {
		if (x->req_splice.failed_out)
			leg_upstream_failed(&x->leg, x->req_splice.error);
		else
			client_exchange_failed(x->c, RW_CLIENT_CLOSED);
		return;
	}
	request_read(x);
	sock_resume(l, x->down);
}

void exchange_pump_request(struct exchange *x)
{
	struct loop *l = &x->sh->loop;
	struct sock *down = x->down, *up = leg_sock(&x->leg);
	if (!x->pumping || x->req_done || !up)
		return;
	if (splice_active(&x->req_splice)) {
		pump_spliced(x, up);
		return;
	}
	while (!x->req_done && down->in.bytes && up->out.bytes < SOCK_OUT_HIGH) {
		uint64_t n, want;
		if (x->req_chunked) {
			struct seg *g = down->in.head;
			bool done = false;
			ssize_t k = chunk_scan(&x->req_cs, seg_ptr(&l->bufs, g), g->len, &done);
			if (k < 0) {
				exchange_refuse(x, RW_BAD_CHUNK, NULL, true);
				return;
			}
			if (x->req_cs.data_bytes > x->max_body) {
				exchange_refuse(x, RW_BODY_TOO_LARGE, NULL, true);
				return;
			}
			want = (uint64_t)k;
			n = segq_move(&l->bufs, &up->out, &down->in, want);
			x->req_done = done && n == want;
		} else {
			want = (uint64_t)x->req_remaining;
			n = segq_move(&l->bufs, &up->out, &down->in, want);
			x->req_remaining -= (int64_t)n;
			x->req_done = x->req_remaining == 0;
		}
		x->bytes_in += n;
		if (n < want && down->in.bytes) { /* a segment could not be split */
			log_error("out of memory forwarding a request body");
			exchange_refuse(x, RW_INTERNAL, NULL, true);
			return;
		}
	}
	sock_flush(l, up);
	if (x->req_done) {
		request_read(x);
		return;
	}
	if (down->eof && down->in.bytes == 0) { /* the client stopped before its body was complete */
		client_exchange_failed(x->c, RW_CLIENT_CLOSED);
		return;
	}
	if (!x->req_chunked && x->req_remaining >= SPLICE_MIN_BYTES && down->in.bytes == 0 &&
	    splice_begin(l, &x->req_splice, down, up)) {
		client_arm_timer(x->c);
		pump_spliced(x, up);
		return;
	}
	if (up->out.bytes >= SOCK_OUT_HIGH)
		sock_pause(l, down); /* resumed when the upstream drains */
	else
		sock_resume(l, down);
	client_arm_timer(x->c);
}

/* A splice of the request body moved res bytes (or failed): who may be blamed for a stall
 * changed, and the pump goes on. */
static void request_spliced(struct exchange *x, bool is_in, int res)
{
	if (is_in) {
		splice_in_done(&x->req_splice, res, &x->req_remaining);
		if (res > 0)
			x->bytes_in += (uint64_t)res;
	} else {
		splice_out_done(&x->req_splice, res);
	}
	/* the upload moves: the upstream is not late (a connect keeps its own deadline) */
	if (res > 0 && x->leg.u && x->leg.u->state != U_CONNECTING)
		leg_arm_timer(&x->leg);
	if (res > 0 || x->req_splice.in_blocked)
		client_arm_timer(x->c);
	exchange_pump_request(x);
}

void exchange_request_spliced_out(struct exchange *x, int res)
{
	request_spliced(x, false, res);
}

void exchange_client_spliced(struct exchange *x, bool is_in, int res)
{
	if (is_in)
		request_spliced(x, true, res);
	else
		x->leg.sink->spliced(&x->leg, false, res);
}

void exchange_client_recv_stopped(struct exchange *x)
{
	if (splice_active(&x->req_splice))
		exchange_pump_request(x);
}

void exchange_client_readable(struct exchange *x)
{
	if (x->pumping) {
		exchange_pump_request(x);
		return;
	}
	/* a stage is waiting: the body stays in the client's queue, within bounds */
	if (!x->req_done && x->down->in.bytes >= SOCK_OUT_HIGH)
		sock_pause(&x->sh->loop, x->down);
}

void exchange_client_drained(struct exchange *x)
{
	if (x->leg.u && x->resp_started && x->down->out.bytes < SOCK_OUT_LOW)
		x->leg.sink->body(&x->leg);
}

void exchange_answered(struct exchange *x, bool reusable)
{
	if (!x->req_done) { /* answered before the whole body was read: the stream can't go on */
		reusable = false;
		client_close_after(x->c);
		sock_pause(&x->sh->loop, x->down);
	}
	leg_release(&x->leg, reusable);
	client_exchange_done(x->c);
}

bool exchange_waits_for_client(const struct exchange *x)
{
	if (!x->pumping || x->req_done)
		return false;
	/* a client held back because the upstream reads slowly is not the one stalling */
	return splice_active(&x->req_splice) ? !splice_waits_for_out(&x->req_splice) : !x->down->paused;
}

bool exchange_reads_body(const struct exchange *x)
{
	return !x->req_done;
}

bool exchange_sending(const struct exchange *x)
{
	return x->leg.resp_splice.out_busy;
}

bool exchange_keeps_alive(const struct exchange *x)
{
	return x->req_done && x->client_keep_alive;
}

void exchange_record(const struct exchange *x, struct access_record *rec)
{
	uint64_t now = now_ns();
	const struct leg *lg = &x->leg;
	uint64_t up_end = lg->t_done_ns ? lg->t_done_ns : now;
	rec->method = x->method;
	rec->method_len = x->method_len;
	rec->path = x->path;
	rec->path_len = x->path_len;
	rec->route = x->route ? x->route->name : NULL;
	rec->upstream = lg->target;
	rec->consumer = x->who.method ? x->who.name : NULL;
	rec->bytes_in = x->bytes_in;
	rec->bytes_out = x->bytes_out_queued;
	rec->duration_ms = (double)(now - x->t_start_ns) / 1e6;
	rec->upstream_ms = lg->t_start_ns ? (double)(up_end - lg->t_start_ns) / 1e6 : -1;
	rec->request_id = x->request_id;
	rec->trace_id = x->trace.trace_id;
	rec->span_id = x->trace.span_id;
	rec->parent_span_id = x->trace.parent_id[0] ? x->trace.parent_id : NULL;
}

void exchange_count(const struct exchange *x, int status, enum rw_reason r, uint64_t answer_bytes)
{
	uint64_t now = now_ns();
	const struct leg *lg = &x->leg;
	const struct rw_frontend *fe = x->snap->listener_fe[x->c->listener];
	struct request_sample s = {
		.status = status,
		.reason = r,
		.bytes_in = x->bytes_in,
		.bytes_out = x->bytes_out_queued + answer_bytes,
		.duration_ns = now - x->t_start_ns,
		.upstream_ns = lg->t_start_ns ? (lg->t_done_ns ? lg->t_done_ns : now) - lg->t_start_ns
					      : METRICS_UNTIMED,
	};
	struct route_stats *rs = x->route ? x->route->stats : fe ? fe->stats : NULL;
	metrics_request(x->sh->stats, rs, lg->ups ? lg->ups->stats : NULL, &s);
}
