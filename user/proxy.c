/* proxy.c — an exchange: one client request and its upstream leg. Routes the request, writes the
 * upstream head (path rewrite, hop-by-hop headers removed, X-Forwarded-*, Via), streams bodies both
 * ways with backpressure, relays the response head, retries once where that is safe, and turns
 * every upstream failure or timeout into its reason. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "conn.h"
#include "router.h"
#include "upstream.h"
#include "worker.h"

enum resp_mode { RESP_NONE = 0, RESP_LENGTH, RESP_CHUNKED, RESP_UNTIL_CLOSE };

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A bounded appender: overflow is remembered instead of written. */
struct out {
	char *p;
	size_t len, cap;
	bool overflow;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (o->len + n > o->cap) {
		o->overflow = true;
		return;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

static void puts_(struct out *o, const char *s)
{
	put(o, s, strlen(s));
}

static void put_slice(struct out *o, struct slice s)
{
	put(o, s.p, s.len);
}

static void put_u64(struct out *o, uint64_t v)
{
	char num[20];
	size_t i = sizeof num;
	do {
		num[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(o, num + i, sizeof num - i);
}

static struct exchange *exchange_alloc(struct worker *w)
{
	struct exchange *x = w->free_exchanges;
	if (x)
		w->free_exchanges = x->next_free;
	else if (!(x = malloc(sizeof *x)))
		return NULL;
	memset(x, 0, sizeof *x);
	x->req_head_id = UINT32_MAX;
	splice_leg_init(&x->req_leg);
	splice_leg_init(&x->resp_leg);
	return x;
}

void exchange_free(struct worker *w, struct exchange *x)
{
	if (x->req_head_id != UINT32_MAX)
		buf_unref(&w->bufs, x->req_head_id);
	splice_abandon(w, &x->req_leg);
	splice_abandon(w, &x->resp_leg);
	x->next_free = w->free_exchanges;
	w->free_exchanges = x;
}

static bool method_is_idempotent(uint8_t m)
{
	return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_PUT || m == HTTP_M_DELETE ||
	       m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
}

/* The upstream request head: request line with the rewritten path, the client's end-to-end
 * headers, then the gateway's own. */
static size_t build_request_head(struct exchange *x, const struct http_request *req, char *buf,
				 size_t cap)
{
	struct out o = { buf, 0, cap, false };
	const struct rw_route *rt = x->route;
	struct slice path = req->path;
	if (rt->strip_prefix && path.len >= rt->strip_len &&
	    memcmp(path.p, rt->strip_prefix, rt->strip_len) == 0) {
		path.p += rt->strip_len;
		path.len -= rt->strip_len;
	}
	put_slice(&o, req->method);
	puts_(&o, " ");
	if (path.len == 0 || path.p[0] != '/')
		puts_(&o, "/");
	put_slice(&o, path);
	if (req->query.len) {
		puts_(&o, "?");
		put_slice(&o, req->query);
	}
	puts_(&o, x->client_http10 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
	if (req->host.len)
		put_slice(&o, req->host);
	else
		puts_(&o, x->u ? x->u->target->text : x->ups->targets[0].text);
	puts_(&o, "\r\n");
	struct slice xff[8], via[8];
	unsigned nxff = 0, nvia = 0;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (h->hop)
			continue;
		switch (h->id) {
		case HDR_X_FORWARDED_FOR:
			if (nxff < 8)
				xff[nxff++] = h->value;
			continue;
		case HDR_VIA:
			if (nvia < 8)
				via[nvia++] = h->value;
			continue;
		case HDR_HOST:
		case HDR_CONTENT_LENGTH:
		case HDR_TRANSFER_ENCODING:
		case HDR_EXPECT:
		case HDR_X_FORWARDED_PROTO:
		case HDR_X_FORWARDED_HOST:
			continue;
		default:
			break;
		}
		put_slice(&o, h->name);
		puts_(&o, ": ");
		put_slice(&o, h->value);
		puts_(&o, "\r\n");
	}
	char ip[INET6_ADDRSTRLEN];
	client_peer_ip(x->c, ip, sizeof ip);
	puts_(&o, "X-Forwarded-For: ");
	for (unsigned i = 0; i < nxff; i++) {
		put_slice(&o, xff[i]);
		puts_(&o, ", ");
	}
	puts_(&o, ip);
	puts_(&o, "\r\nX-Forwarded-Proto: http\r\n");
	if (req->host.len) {
		puts_(&o, "X-Forwarded-Host: ");
		put_slice(&o, req->host);
		puts_(&o, "\r\n");
	}
	puts_(&o, "Via: ");
	for (unsigned i = 0; i < nvia; i++) {
		put_slice(&o, via[i]);
		puts_(&o, ", ");
	}
	puts_(&o, x->client_http10 ? "1.0 ringway\r\n" : "1.1 ringway\r\n");
	if (req->chunked) {
		puts_(&o, "Transfer-Encoding: chunked\r\n");
	} else if (req->content_length >= 0) {
		puts_(&o, "Content-Length: ");
		put_u64(&o, (uint64_t)req->content_length);
		puts_(&o, "\r\n");
	}
	if (x->client_http10)
		puts_(&o, "Connection: keep-alive\r\n");
	puts_(&o, "\r\n");
	return o.overflow ? 0 : o.len;
}

static void arm_response_timer(struct exchange *x);

/* Gives the request to connection u: its head first, then whatever body is queued. */
static void attach_upstream(struct exchange *x, struct upconn *u)
{
	struct worker *w = x->c->w;
	x->u = u;
	u->x = x;
	if (!x->t_upstream_ns)
		x->t_upstream_ns = now_ns();
	if (u->s.connected) {
		arm_response_timer(x);
		sock_flush(w, &u->s);
	}
}

void proxy_start(struct client *c, uint32_t head_len)
{
	struct worker *w = c->w;
	struct http_request *req = &w->req;
	struct exchange *x = exchange_alloc(w);
	if (!x) {
		client_refuse(c, RW_INTERNAL, NULL, true);
		return;
	}
	c->x = x;
	x->c = c;
	x->t_start_ns = now_ns();
	x->method_id = req->method_id;
	x->method_len = (uint8_t)(req->method.len < sizeof x->method ? req->method.len : sizeof x->method);
	memcpy(x->method, req->method.p, x->method_len);
	x->path_len = (uint16_t)(req->path.len < sizeof x->path ? req->path.len : sizeof x->path);
	memcpy(x->path, req->path.p, x->path_len);
	x->client_keep_alive = req->keep_alive;
	x->client_http10 = req->minor == 0;
	x->bytes_in = head_len;
	x->reason = RW_OK;
	bool has_body = req->chunked || req->content_length > 0;
	x->req_chunked = req->chunked;
	x->req_remaining = req->chunked ? 0 : (req->content_length > 0 ? req->content_length : 0);
	x->req_done = !has_body;
	x->req_has_body = has_body;

	uint32_t allow = 0;
	x->route = router_match(c->l->fe->router, req->host, req->path, req->method_id, &allow);
	if (!x->route) {
		segq_consume(&w->bufs, &c->s.in, head_len);
		if (!allow) {
			client_refuse(c, RW_NO_ROUTE, NULL, false);
			return;
		}
		char list[96];
		http_method_list(allow, list, sizeof list);
		client_refuse(c, RW_METHOD_NOT_ALLOWED, list, false);
		return;
	}
	x->ups = x->route->upstream;
	if (!req->chunked && req->content_length > (int64_t)w->cfg->limits.max_body_bytes) {
		segq_consume(&w->bufs, &c->s.in, head_len);
		client_refuse(c, RW_BODY_TOO_LARGE, NULL, true);
		return;
	}
	enum rw_reason why = RW_OK;
	struct upconn *u = upstream_acquire(w, x->ups, -1, false, &why);
	if (!u) {
		segq_consume(&w->bufs, &c->s.in, head_len);
		client_refuse(c, why, NULL, false);
		return;
	}
	x->u = u; /* for the Host fallback of HTTP/1.0 requests */
	uint32_t id = buf_heap_get(&w->bufs);
	size_t n = id == UINT32_MAX ? 0 : build_request_head(x, req, buf_ptr(&w->bufs, id),
							    buf_cap(&w->bufs, id));
	segq_consume(&w->bufs, &c->s.in, head_len);
	if (n == 0) { /* out of memory, or our additions pushed the head past the buffer */
		if (id != UINT32_MAX)
			buf_unref(&w->bufs, id);
		client_refuse(c, id == UINT32_MAX ? RW_INTERNAL : RW_HEADERS_TOO_LARGE, NULL, true);
		return;
	}
	x->req_head_id = id; /* our reference: kept for a retry */
	x->req_head_len = (uint32_t)n;
	buf_ref(&w->bufs, id);
	segq_push(&w->bufs, &u->s.out, id, 0, (uint32_t)n);
	if (req->expect_continue && has_body) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uint32_t cid = buf_heap_get(&w->bufs);
		if (cid != UINT32_MAX) {
			memcpy(buf_ptr(&w->bufs, cid), cont, sizeof cont - 1);
			segq_push(&w->bufs, &c->s.out, cid, 0, sizeof cont - 1);
			sock_flush(w, &c->s);
		}
	}
	c->state = has_body ? C_BODY : C_WAIT;
	attach_upstream(x, u);
}

static void arm_response_timer(struct exchange *x)
{
	upconn_arm_timer(x->u, x->ups->response_timeout_ms);
}

void proxy_on_upstream_connected(struct exchange *x)
{
	arm_response_timer(x);
	if (splice_active(&x->req_leg)) /* a body waiting in the pipe can go now */
		client_pump_body(x->c);
}

/* Drops the upstream leg: the connection is closed (or pooled when reusable). */
static void detach_upstream(struct exchange *x, bool reusable)
{
	struct upconn *u = x->u;
	if (!u)
		return;
	x->u = NULL;
	upstream_release(u, reusable);
}

void proxy_abort(struct exchange *x)
{
	struct client *c = x->c;
	detach_upstream(x, false);
	c->x = NULL;
	exchange_free(c->w, x);
}

/* The response is over from the upstream's side. */
static void finish_response(struct exchange *x, bool reusable)
{
	struct client *c = x->c;
	x->t_upstream_done_ns = now_ns();
	if (!x->req_done) { /* answered before the whole body was read: the stream can't go on */
		reusable = false;
		c->close_after = true;
		sock_pause(c->w, &c->s);
	}
	x->upstream_text = x->u ? x->u->target->text : NULL;
	detach_upstream(x, reusable);
	client_exchange_done(c);
}

/* The upstream failed after part of the response went out: the client can only learn it from the
 * connection closing early. */
static void fail_midstream(struct exchange *x, enum rw_reason r)
{
	struct client *c = x->c;
	log_warn("upstream %s: %s after %llu response bytes", x->u ? x->u->target->text : "-",
		 reason_name(r), (unsigned long long)x->bytes_out_queued);
	x->reason = r;
	c->close_after = true;
	x->req_done = true;
	finish_response(x, false);
}

/* Can the request be sent again on another connection? */
static bool can_retry(const struct exchange *x, bool nothing_sent)
{
	if (x->retried || x->resp_started || x->c->w->stopping)
		return false;
	if (nothing_sent) /* connect failed: the whole request is still queued, for another target */
		return x->ups->ntargets > 1;
	return x->u->reused && !x->req_has_body && method_is_idempotent(x->method_id) && x->u->s.in.bytes == 0;
}

static bool retry(struct exchange *x, bool nothing_sent)
{
	struct worker *w = x->c->w;
	struct upconn *old = x->u;
	int avoid = nothing_sent ? upstream_target_index(old, x->ups) : -1;
	enum rw_reason why;
	struct upconn *u = upstream_acquire(w, x->ups, avoid, true, &why);
	if (!u)
		return false;
	x->retried = true;
	if (nothing_sent) {
		segq_move(&w->bufs, &u->s.out, &old->s.out, old->s.out.bytes);
	} else {
		buf_ref(&w->bufs, x->req_head_id);
		segq_push(&w->bufs, &u->s.out, x->req_head_id, 0, x->req_head_len);
	}
	log_info("upstream %s: retrying %.*s %.*s on %s", old->target->text, (int)x->method_len,
		 x->method, (int)x->path_len, x->path, u->target->text);
	detach_upstream(x, false);
	attach_upstream(x, u);
	client_pump_body(x->c);
	return true;
}

static void fail_before_response(struct exchange *x, enum rw_reason r, int err)
{
	struct client *c = x->c;
	log_warn("upstream %s: %s%s%s", x->u ? x->u->target->text : "-", reason_name(r),
		 err ? ": " : "", err ? strerror(err) : "");
	x->upstream_text = x->u ? x->u->target->text : NULL;
	detach_upstream(x, false);
	client_refuse(c, r, NULL, false);
}

void proxy_on_upstream_eof(struct exchange *x, int err)
{
	struct upconn *u = x->u;
	if (u->state == U_CONNECTING) {
		if (can_retry(x, true) && retry(x, true))
			return;
		fail_before_response(x, RW_UPSTREAM_CONNECT_FAILED, err);
		return;
	}
	if (!x->resp_started) {
		if (u->s.in.bytes == 0 && can_retry(x, false) && retry(x, false))
			return;
		fail_before_response(x, RW_UPSTREAM_RESET, err);
		return;
	}
	/* mid-response: what is queued still goes out; the pump decides how it ends */
	if (err)
		x->reason = RW_UPSTREAM_RESET;
	proxy_on_upstream_data(x);
}

void proxy_on_upstream_timeout(struct exchange *x)
{
	struct upconn *u = x->u;
	if (u->state == U_CONNECTING) {
		if (can_retry(x, true) && retry(x, true))
			return;
		fail_before_response(x, RW_UPSTREAM_CONNECT_TIMEOUT, 0);
		return;
	}
	if (!x->resp_started) {
		fail_before_response(x, RW_UPSTREAM_TIMEOUT, 0);
		return;
	}
	fail_midstream(x, RW_UPSTREAM_TIMEOUT);
}

/* The client's response head: status line, the upstream's end-to-end headers, our Connection. */
static size_t build_response_head(struct exchange *x, const struct http_response *r, bool close,
				  char *buf, size_t cap)
{
	struct out o = { buf, 0, cap, false };
	puts_(&o, "HTTP/1.1 ");
	put_u64(&o, r->status);
	puts_(&o, " ");
	if (r->reason_phrase.len)
		put_slice(&o, r->reason_phrase);
	else
		puts_(&o, status_text(r->status));
	puts_(&o, "\r\n");
	for (unsigned i = 0; i < r->nheaders; i++) {
		const struct http_header *h = &r->headers[i];
		if (h->hop)
			continue;
		put_slice(&o, h->name);
		puts_(&o, ": ");
		put_slice(&o, h->value);
		puts_(&o, "\r\n");
	}
	if (close)
		puts_(&o, "Connection: close\r\n");
	else if (x->client_http10)
		puts_(&o, "Connection: keep-alive\r\n");
	puts_(&o, "\r\n");
	return o.overflow ? 0 : o.len;
}

/* Parses the response head at the front of the upstream's input. Returns false if the exchange
 * ended (refused) or more bytes are needed. */
static bool take_response_head(struct exchange *x)
{
	struct client *c = x->c;
	struct worker *w = c->w;
	struct upconn *u = x->u;
	struct http_response *r = &w->resp;
	for (;;) {
		if (u->s.in.bytes == 0)
			return false;
		struct seg *g = u->s.in.head;
		int n = http1_parse_response(seg_ptr(&w->bufs, g), g->len, w->cfg->limits.max_header_bytes, r);
		if (n == 0) {
			bool more = g->next != NULL;
			if (!segq_coalesce_front(&w->bufs, &u->s.in)) {
				fail_before_response(x, RW_INTERNAL, ENOMEM);
				return false;
			}
			if (!more)
				return false;
			continue;
		}
		if (n < 0 || r->status == 101) {
			fail_before_response(x, RW_UPSTREAM_BAD_RESPONSE, 0);
			return false;
		}
		if (r->status < 200) { /* interim (100 Continue, 103): we answered Expect ourselves */
			segq_consume(&w->bufs, &u->s.in, (uint64_t)n);
			continue;
		}
		x->status = r->status;
		if (http1_response_has_no_body(x->method_id, r->status))
			x->resp_mode = RESP_NONE;
		else if (r->chunked)
			x->resp_mode = RESP_CHUNKED;
		else if (r->content_length >= 0)
			x->resp_mode = RESP_LENGTH;
		else
			x->resp_mode = RESP_UNTIL_CLOSE;
		x->resp_remaining = r->content_length;
		x->resp_keep_alive = r->keep_alive && x->resp_mode != RESP_UNTIL_CLOSE;
		/* an answer before the whole request body arrived ends the connection too */
		bool close = !x->client_keep_alive || c->close_after || w->stopping || !x->req_done ||
			     x->resp_mode == RESP_UNTIL_CLOSE ||
			     (x->client_http10 && x->resp_mode == RESP_CHUNKED);
		if (close)
			c->close_after = true;
		uint32_t id = buf_heap_get(&w->bufs);
		size_t len = id == UINT32_MAX ? 0 : build_response_head(x, r, close, buf_ptr(&w->bufs, id),
									buf_cap(&w->bufs, id));
		segq_consume(&w->bufs, &u->s.in, (uint64_t)n);
		if (len == 0) {
			if (id != UINT32_MAX)
				buf_unref(&w->bufs, id);
			fail_before_response(x, RW_UPSTREAM_BAD_RESPONSE, 0);
			return false;
		}
		segq_push(&w->bufs, &c->s.out, id, 0, (uint32_t)len);
		x->bytes_out_queued += len;
		x->resp_started = true;
		return true;
	}
}

/* The response body in splice mode. */
static void pump_response_splice(struct exchange *x)
{
	struct client *c = x->c;
	struct upconn *u = x->u;
	enum splice_status st = splice_step(c->w, &x->resp_leg, &u->s, &c->s, &x->resp_remaining,
					    &x->bytes_out_queued);
	if (st == SPLICE_DONE) {
		finish_response(x, x->resp_keep_alive && x->req_done);
	} else if (st == SPLICE_FAILED) {
		if (!x->resp_leg.failed_out) {
			if (x->resp_leg.error > 0)
				log_warn("splice from upstream %s: %s", u->target->text,
					 strerror(x->resp_leg.error));
			fail_midstream(x, RW_UPSTREAM_RESET);
		} else { /* the client stopped reading */
			x->reason = RW_CLIENT_CLOSED;
			client_on_send_error(c, x->resp_leg.error);
		}
	}
}

void proxy_on_upstream_data(struct exchange *x)
{
	struct client *c = x->c;
	struct worker *w = c->w;
	struct upconn *u = x->u;
	if (!x->resp_started && !take_response_head(x))
		return;
	if (splice_active(&x->resp_leg)) {
		pump_response_splice(x);
		return;
	}
	bool done = false, bad = false;
	while (!done && u->s.in.bytes && c->s.out.bytes < SOCK_OUT_HIGH) {
		uint64_t n = 0;
		switch (x->resp_mode) {
		case RESP_NONE:
			done = true;
			break;
		case RESP_LENGTH:
			n = segq_move(&w->bufs, &c->s.out, &u->s.in, (uint64_t)x->resp_remaining);
			x->resp_remaining -= (int64_t)n;
			break;
		case RESP_CHUNKED: {
			struct seg *g = u->s.in.head;
			ssize_t k = chunk_scan(&x->resp_cs, seg_ptr(&w->bufs, g), g->len, &done);
			if (k < 0) {
				bad = true;
				done = true;
				break;
			}
			n = segq_move(&w->bufs, &c->s.out, &u->s.in, (uint64_t)k);
			break;
		}
		default:
			n = segq_move(&w->bufs, &c->s.out, &u->s.in, u->s.in.bytes);
			break;
		}
		x->bytes_out_queued += n;
	}
	if (x->resp_mode == RESP_NONE || (x->resp_mode == RESP_LENGTH && x->resp_remaining == 0))
		done = true;
	sock_flush(w, &c->s);
	if (bad) {
		fail_midstream(x, RW_UPSTREAM_BAD_RESPONSE);
		return;
	}
	if (done) {
		finish_response(x, x->resp_keep_alive && x->req_done);
		return;
	}
	if (x->resp_mode == RESP_LENGTH && x->resp_remaining >= SPLICE_MIN_BYTES &&
	    u->s.in.bytes == 0 && !u->s.eof && splice_begin(w, &x->resp_leg, &u->s)) {
		pump_response_splice(x);
		return;
	}
	if (u->s.eof && u->s.in.bytes == 0) {
		if (x->resp_mode == RESP_UNTIL_CLOSE && x->reason == RW_OK)
			finish_response(x, false);
		else
			fail_midstream(x, RW_UPSTREAM_RESET);
		return;
	}
	if (c->s.out.bytes >= SOCK_OUT_HIGH)
		sock_pause(w, &u->s);
	else
		sock_resume(w, &u->s);
	arm_response_timer(x);
}

void proxy_on_upstream_drained(struct exchange *x)
{
	struct client *c = x->c;
	arm_response_timer(x);
	if (c->state == C_BODY && x->u->s.out.bytes < SOCK_OUT_LOW) {
		if (!splice_active(&x->req_leg)) /* a splicing client stays paused: the pipe reads for it */
			sock_resume(c->w, &c->s);
		client_pump_body(c);
	}
}

void proxy_on_client_drained(struct exchange *x)
{
	if (x->u && x->resp_started && x->c->s.out.bytes < SOCK_OUT_LOW)
		proxy_on_upstream_data(x);
}

void proxy_on_splice(struct sock *s, bool is_in, int res)
{
	struct exchange *x = s->kind == SOCK_CLIENT ? ((struct client *)s)->x
						     : ((struct upconn *)s)->x;
	if (!x)
		return; /* the exchange ended; its pipe was closed */
	bool request = (s->kind == SOCK_CLIENT) == is_in;
	struct splice_leg *l = request ? &x->req_leg : &x->resp_leg;
	if (is_in)
		splice_in_done(l, res, request ? &x->req_remaining : &x->resp_remaining);
	else
		splice_out_done(l, res);
	struct client *c = x->c;
	if (request) {
		if (is_in && res > 0)
			x->bytes_in += (uint64_t)res;
		if (res > 0 && x->u) /* the upload moves: the upstream is not late */
			arm_response_timer(x);
		/* progress, or the pipe filled up: who may be blamed for a stall changed */
		if (res > 0 || l->in_blocked)
			client_arm_timer(c);
		client_pump_body(c);
		return;
	}
	if (is_in && res > 0) {
		x->bytes_out_queued += (uint64_t)res;
		arm_response_timer(x);
	}
	pump_response_splice(x);
	if (c->x != x || c->s.closing)
		return;
	/* the client's stall timer restarts when it takes bytes, and runs while a splice waits on it */
	if ((!is_in && res > 0) || !timer_armed(&c->s.tm))
		client_arm_timer(c);
}

void proxy_on_recv_stopped(struct sock *s)
{
	if (s->kind == SOCK_CLIENT) {
		struct client *c = (struct client *)s;
		if (c->x && splice_active(&c->x->req_leg))
			client_pump_body(c);
	} else {
		struct upconn *u = (struct upconn *)s;
		if (u->x && splice_active(&u->x->resp_leg))
			pump_response_splice(u->x);
	}
}
