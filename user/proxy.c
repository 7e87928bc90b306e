/* proxy.c — the proxy handler and its upstream leg (see proxy.h): the upstream request head, the
 * connection and its events, one retry where that is safe, the response head and body framing,
 * upstream failures mapped to their reasons; and the relay sink, which streams the response to
 * the client with backpressure, spliced when it is large. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "exchange.h"
#include "identity.h"
#include "tls.h"
#include "transform.h"
#include "transport.h"
#include "upstream.h"
#include "shard.h"
#include "writer.h"

static bool method_is_idempotent(uint8_t m)
{
	return m == HTTP_M_GET || m == HTTP_M_HEAD || m == HTTP_M_PUT || m == HTTP_M_DELETE ||
	       m == HTTP_M_OPTIONS || m == HTTP_M_TRACE;
}

static struct loop *leg_loop(const struct leg *lg)
{
	return &lg->x->sh->loop;
}

/* A header the gateway alone may set: X-Consumer-* and X-Access-Token carry the identity it
 * established, so a client's own are dropped on every route. The first two bytes ("x-") are
 * checked before the case-insensitive compare, so most headers cost two loads. */
static bool is_identity_header(struct slice name)
{
	if (name.len < 11 || (name.p[0] | 0x20) != 'x' || name.p[1] != '-')
		return false;
	struct slice prefix = slice_make(name.p, 11);
	return slice_ieq(prefix, "X-Consumer-", 11) || slice_ieq(name, "X-Access-Token", 14);
}

/* Who the route's authentication found, told to the upstream. */
static void write_consumer(struct writer *o, const struct auth_identity *who)
{
	struct slice name = slice_make(who->name, strlen(who->name));
	w_header(o, SLICE_LIT("X-Consumer-Id"), name);
	w_header(o, SLICE_LIT("X-Consumer-Name"), name);
	w_header(o, SLICE_LIT("X-Consumer-Groups"), slice_make(who->groups, strlen(who->groups)));
}

/* The upstream request head: request line with the rewritten path, the client's end-to-end
 * headers but the identity ones (and the API key when the route hides it), then the gateway's
 * own (the consumer; the client's traceparent and X-Request-Id are replaced by the
 * exchange's); the route's request transform (transform.h) edits the method, query and headers
 * as they are written. */
static size_t build_request_head(const struct leg *lg, char *buf, size_t cap)
{
	const struct exchange *x = lg->x;
	const struct http_request *req = &x->req;
	struct writer o = writer_init(buf, cap);
	const struct rw_route *rt = x->route;
	const struct rw_request_xf *xf = rt->xf.request;
	const struct rw_route_auth *auth = &rt->auth;
	const struct rw_identity_token *idt = &x->snap->cfg->identity;
	bool hide = x->who.method && auth->hide_credentials;
	bool hide_key = hide && (auth->methods & AUTH_API_KEY);
	bool hide_authz = hide && (auth->methods & (AUTH_JWT | AUTH_BASIC));
	if (lg->call) { /* an aggregate's call: its own request line, Host the upstream's */
		w_str(&o, http_method_name(lg->call->method_id));
		w_str(&o, " ");
		w_put(&o, lg->call->target, lg->call->target_len);
		w_str(&o, " HTTP/1.1\r\nHost: ");
		w_str(&o, lg->target);
		w_str(&o, "\r\n");
	} else {
		struct slice path = req->path;
		if (rt->strip_prefix && path.len >= rt->strip_len &&
		    memcmp(path.p, rt->strip_prefix, rt->strip_len) == 0) {
			path.p += rt->strip_len;
			path.len -= rt->strip_len;
		}
		if (xf && xf->method)
			w_str(&o, xf->method);
		else
			w_slice(&o, req->method);
		w_str(&o, " ");
		transform_write_path(&o, path, xf);
		const char *hidden = hide_key ? auth->key_query : NULL;
		if (hidden || (xf && (xf->query_add || xf->nquery_remove))) {
			transform_write_query(&o, req->query, hidden, xf);
		} else if (req->query.len) {
			w_str(&o, "?");
			w_slice(&o, req->query);
		}
		w_str(&o, x->client_http10 ? " HTTP/1.0\r\nHost: " : " HTTP/1.1\r\nHost: ");
		if (req->host.len)
			w_slice(&o, req->host);
		else
			w_str(&o, lg->target);
		w_str(&o, "\r\n");
	}
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
		case HDR_TRACEPARENT:
		case HDR_X_REQUEST_ID:
			continue;
		case HDR_TRACESTATE: /* without the traceparent it belongs to, W3C says to drop it */
			if (!x->trace.parent_id[0])
				continue;
			break;
		default:
			if (is_identity_header(h->name) ||
			    (idt->enabled && slice_ieq(h->name, idt->header, strlen(idt->header))) ||
			    (hide_key && slice_ieq(h->name, auth->key_header, strlen(auth->key_header))) ||
			    (hide_authz && slice_ieq(h->name, "Authorization", 13)))
				continue;
			break;
		}
		struct slice name = h->name;
		if (xf && !transform_header(&xf->headers, &name))
			continue;
		w_header(&o, name, h->value);
	}
	if (xf)
		transform_write_headers(&xf->headers, &o);
	char ip[INET6_ADDRSTRLEN];
	client_peer_ip(x->c, ip, sizeof ip);
	w_str(&o, "X-Forwarded-For: ");
	for (unsigned i = 0; i < nxff; i++) {
		w_slice(&o, xff[i]);
		w_str(&o, ", ");
	}
	w_str(&o, ip);
	w_str(&o, x->down->tx->secure ? "\r\nX-Forwarded-Proto: https\r\n" : "\r\nX-Forwarded-Proto: http\r\n");
	if (req->host.len)
		w_header(&o, SLICE_LIT("X-Forwarded-Host"), req->host);
	w_str(&o, "Via: ");
	for (unsigned i = 0; i < nvia; i++) {
		w_slice(&o, via[i]);
		w_str(&o, ", ");
	}
	w_str(&o, x->client_http10 ? "1.0 ringway\r\n" : "1.1 ringway\r\n");
	if (x->who.method) {
		write_consumer(&o, &x->who);
		if (idt->enabled && !identity_write_token(x->sh->minter, idt, x->snap->cfg->generation,
							  &x->who, lg->ups->name, lg->ups->index, &o))
			return 0;
	}
	char tp[TRACEPARENT_LEN];
	w_str(&o, "traceparent: ");
	w_put(&o, tp, trace_format(&x->trace, tp));
	w_str(&o, "\r\nX-Request-Id: ");
	w_str(&o, x->request_id);
	w_str(&o, "\r\n");
	if (lg->call) {
		if (!method_is_idempotent(lg->call->method_id))
			w_str(&o, "Content-Length: 0\r\n");
	} else if (req->chunked)
		w_str(&o, "Transfer-Encoding: chunked\r\n");
	else if (req->content_length >= 0)
		w_header_u64(&o, SLICE_LIT("Content-Length"), (uint64_t)req->content_length);
	else if (xf && xf->method && (x->method_id == HTTP_M_POST || x->method_id == HTTP_M_PUT ||
				      x->method_id == HTTP_M_PATCH))
		w_str(&o, "Content-Length: 0\r\n"); /* made a POST without a body: some servers want 411 */
	if (x->client_http10 && !lg->call)
		w_str(&o, "Connection: keep-alive\r\n");
	w_str(&o, "\r\n");
	return o.overflow ? 0 : writer_len(&o);
}

/* ---- the leg -------------------------------------------------------------------------------- */

static const struct upconn_owner_ops leg_owner_ops;

void leg_init(struct leg *lg, struct exchange *x)
{
	memset(lg, 0, sizeof *lg);
	lg->x = x;
	lg->req_head_id = UINT32_MAX;
	splice_leg_init(&lg->resp_splice);
}

void leg_release(struct leg *lg, bool reusable)
{
	struct loop *l = leg_loop(lg);
	if (lg->u) {
		struct upconn *u = lg->u;
		lg->u = NULL;
		upstream_release(u, reusable);
	}
	if (lg->req_head_id != UINT32_MAX) {
		buf_unref(&l->bufs, lg->req_head_id);
		lg->req_head_id = UINT32_MAX;
	}
	splice_abandon(l, &lg->resp_splice);
}

struct sock *leg_sock(struct leg *lg)
{
	return lg->u ? &lg->u->s : NULL;
}

void leg_arm_timer(struct leg *lg)
{
	upconn_arm_timer(lg->u, lg->ups->response_timeout_ms);
}

/* Gives the request to connection u: what is queued on it goes once it is connected. */
static void leg_attach(struct leg *lg, struct upconn *u)
{
	lg->u = u;
	lg->target = upconn_target(u);
	if (!lg->t_start_ns)
		lg->t_start_ns = now_ns();
	if (u->s.connected) {
		leg_arm_timer(lg);
		sock_flush(leg_loop(lg), &u->s);
	}
}

static struct upconn *leg_acquire(struct leg *lg, int avoid, bool fresh, enum rw_reason *why)
{
	struct shard *sh = lg->x->sh;
	return upstream_acquire(&sh->pools, &lg->x->snap->ups, lg->ups, avoid, fresh, &leg_owner_ops,
				lg, why);
}

static uint8_t leg_method(const struct leg *lg)
{
	return lg->call ? lg->call->method_id : lg->x->method_id;
}

/* Can the request be sent again on another connection? */
static bool can_retry(const struct leg *lg, bool nothing_sent)
{
	const struct exchange *x = lg->x;
	if (lg->retried || lg->started || x->sh->stopping)
		return false;
	if (nothing_sent) /* connect failed: the whole request is still queued, for another target */
		return lg->ups->ntargets > 1;
	return lg->u->reused && (lg->call || !x->req_has_body) && method_is_idempotent(leg_method(lg)) &&
	       lg->u->s.in.bytes == 0;
}

static bool retry(struct leg *lg, bool nothing_sent)
{
	struct exchange *x = lg->x;
	struct bufs *b = &leg_loop(lg)->bufs;
	struct upconn *old = lg->u;
	int avoid = nothing_sent ? upstream_target_index(old, &x->snap->ups, lg->ups) : -1;
	enum rw_reason why;
	struct upconn *u = leg_acquire(lg, avoid, true, &why);
	if (!u)
		return false;
	if (nothing_sent) {
		segq_move(b, &u->s.out, &old->s.out, old->s.out.bytes);
	} else {
		buf_ref(b, lg->req_head_id);
		if (!segq_push(b, &u->s.out, lg->req_head_id, 0, lg->req_head_len)) { /* ref let go */
			upstream_release(u, false);
			return false;
		}
	}
	lg->retried = true;
	log_info("upstream %s: retrying %.*s %.*s on %s", upconn_target(old), (int)x->method_len,
		 x->method, (int)x->path_len, x->path, upconn_target(u));
	lg->u = NULL;
	upstream_release(old, false);
	leg_attach(lg, u);
	exchange_pump_request(x);
	return true;
}

/* The leg cannot answer: before the response head the sink answers the client itself; during
 * the body the client can only learn it from the connection closing early. */
static void leg_fail(struct leg *lg, enum rw_reason r, int err)
{
	if (!lg->started) {
		log_warn("upstream %s: %s%s%s", lg->target ? lg->target : "-", reason_name(r),
			 err ? ": " : "", err ? strerror(err) : "");
		leg_release(lg, false);
	} else {
		log_warn("upstream %s: %s after %llu response bytes", lg->target ? lg->target : "-",
			 reason_name(r), (unsigned long long)lg->x->bytes_out_queued);
		lg->t_done_ns = now_ns();
	}
	lg->sink->failed(lg, r, err);
}

void leg_upstream_failed(struct leg *lg, int err)
{
	struct upconn *u = lg->u;
	if (u->state == U_CONNECTING) {
		if (can_retry(lg, true) && retry(lg, true))
			return;
		leg_fail(lg, RW_UPSTREAM_CONNECT_FAILED, err);
		return;
	}
	if (!lg->started) {
		if (!u->reused) /* a pooled connection closed under a request is keep-alive's race */
			upconn_target_health(u, false);
		if (err != EPROTO && u->s.in.bytes == 0 && can_retry(lg, false) && retry(lg, false))
			return;
		leg_fail(lg, err == EPROTO ? RW_UPSTREAM_TLS_FAILED : RW_UPSTREAM_RESET, err);
		return;
	}
	/* mid-response: what is queued still goes out; the sink decides how it ends */
	if (err)
		lg->x->reason = RW_UPSTREAM_RESET;
	lg->sink->body(lg);
}

/* Parses the response head at the front of the connection's input and hands it to the sink.
 * False if the exchange ended or more bytes are needed. */
static bool take_response_head(struct leg *lg)
{
	struct exchange *x = lg->x;
	struct shard *sh = x->sh;
	struct bufs *b = &sh->loop.bufs;
	struct upconn *u = lg->u;
	struct http_response *r = &sh->resp;
	for (;;) {
		if (u->s.in.bytes == 0)
			return false;
		struct seg *g = u->s.in.head;
		int n = http1_parse_response(seg_ptr(b, g), g->len,
					     shard_cfg(sh)->limits.max_header_bytes, r);
		if (n == 0) {
			bool more = g->next != NULL;
			if (!segq_coalesce_front(b, &u->s.in)) {
				leg_fail(lg, RW_INTERNAL, ENOMEM);
				return false;
			}
			if (!more)
				return false;
			continue;
		}
		if (n < 0 || r->status == 101) {
			leg_fail(lg, RW_UPSTREAM_BAD_RESPONSE, 0);
			return false;
		}
		if (r->status < 200) { /* interim (100 Continue, 103): we answered Expect ourselves */
			segq_consume(b, &u->s.in, (uint64_t)n);
			continue;
		}
		lg->status = r->status;
		upconn_target_health(u, true);
		if (http1_response_has_no_body(leg_method(lg), r->status))
			lg->resp_mode = RESP_NONE;
		else if (r->chunked)
			lg->resp_mode = RESP_CHUNKED;
		else if (r->content_length >= 0)
			lg->resp_mode = RESP_LENGTH;
		else
			lg->resp_mode = RESP_UNTIL_CLOSE;
		lg->resp_remaining = r->content_length;
		lg->resp_keep_alive = r->keep_alive && lg->resp_mode != RESP_UNTIL_CLOSE;
		if (!lg->sink->head(lg, r))
			return false;
		lg->started = true;
		segq_consume(b, &u->s.in, (uint64_t)n);
		return true;
	}
}

enum rw_reason leg_take_body(struct leg *lg, struct bufs *b, struct segq *dst, uint64_t dst_limit,
			     uint64_t *moved, bool *done)
{
	struct segq *in = &lg->u->s.in;
	*moved = 0;
	*done = false;
	while (!*done && in->bytes && dst->bytes < dst_limit) {
		uint64_t want, n;
		switch (lg->resp_mode) {
		case RESP_NONE:
			*done = true;
			continue;
		case RESP_LENGTH:
			want = (uint64_t)lg->resp_remaining;
			n = segq_move(b, dst, in, want);
			lg->resp_remaining -= (int64_t)n;
			break;
		case RESP_CHUNKED: {
			struct seg *g = in->head;
			ssize_t k = chunk_scan(&lg->resp_cs, seg_ptr(b, g), g->len, done);
			if (k < 0)
				return RW_UPSTREAM_BAD_RESPONSE;
			want = (uint64_t)k;
			n = segq_move(b, dst, in, want);
			break;
		}
		default:
			want = in->bytes;
			n = segq_move(b, dst, in, want);
			break;
		}
		*moved += n;
		if (n < want && in->bytes) /* a segment could not be split: out of memory */
			return RW_INTERNAL;
	}
	if (lg->resp_mode == RESP_NONE || (lg->resp_mode == RESP_LENGTH && lg->resp_remaining == 0))
		*done = true;
	return RW_OK;
}

static void leg_on_connected(void *owner)
{
	struct leg *lg = owner;
	leg_arm_timer(lg);
	if (splice_active(&lg->x->req_splice)) /* a body waiting in the pipe can go now */
		exchange_pump_request(lg->x);
}

static void leg_on_data(void *owner)
{
	struct leg *lg = owner;
	if (!lg->started && !take_response_head(lg))
		return;
	lg->sink->body(lg);
}

static void leg_on_eof(void *owner, int err)
{
	leg_upstream_failed(owner, err);
}

static void leg_on_timeout(void *owner)
{
	struct leg *lg = owner;
	if (lg->u->state == U_CONNECTING) {
		if (can_retry(lg, true) && retry(lg, true))
			return;
		leg_fail(lg, RW_UPSTREAM_CONNECT_TIMEOUT, 0);
		return;
	}
	leg_fail(lg, RW_UPSTREAM_TIMEOUT, 0);
}

static void leg_on_drained(void *owner)
{
	struct leg *lg = owner;
	leg_arm_timer(lg);
	if (lg->u->s.out.bytes < SOCK_OUT_LOW)
		exchange_pump_request(lg->x);
}

static void leg_on_splice(void *owner, bool is_in, int res)
{
	struct leg *lg = owner;
	if (is_in) /* from the upstream: the response */
		lg->sink->spliced(lg, true, res);
	else /* to it: the request body */
		exchange_request_spliced_out(lg->x, res);
}

static void leg_on_recv_stopped(void *owner)
{
	struct leg *lg = owner;
	if (splice_active(&lg->resp_splice))
		lg->sink->body(lg);
}

static const struct upconn_owner_ops leg_owner_ops = {
	.connected = leg_on_connected,
	.data = leg_on_data,
	.eof = leg_on_eof,
	.timeout = leg_on_timeout,
	.drained = leg_on_drained,
	.splice = leg_on_splice,
	.recv_stopped = leg_on_recv_stopped,
};

enum rw_reason leg_start_call(struct leg *lg)
{
	struct bufs *b = &leg_loop(lg)->bufs;
	enum rw_reason why = RW_OK;
	struct upconn *u = leg_acquire(lg, -1, false, &why);
	if (!u)
		return why;
	lg->u = u;
	lg->target = upconn_target(u);
	uint32_t id = buf_heap_get(b);
	size_t n = id == UINT32_MAX ? 0 : build_request_head(lg, buf_ptr(b, id), buf_cap(b, id));
	if (n == 0) {
		if (id != UINT32_MAX)
			buf_unref(b, id);
		leg_release(lg, false);
		return id == UINT32_MAX ? RW_INTERNAL : RW_HEADERS_TOO_LARGE;
	}
	lg->req_head_id = id;
	lg->req_head_len = (uint32_t)n;
	buf_ref(b, id);
	if (!segq_push(b, &u->s.out, id, 0, (uint32_t)n)) {
		leg_release(lg, false);
		return RW_INTERNAL;
	}
	leg_attach(lg, u);
	return RW_OK;
}

/* ---- the relay sink: the response goes to the client as it comes ---------------------------- */

/* The client's response head: status line, the upstream's end-to-end headers (but its
 * X-Request-Id: the request's is the one the client gets) as the route's response transform
 * edits them, our X-Request-Id and Connection. */
static size_t build_response_head(const struct exchange *x, const struct http_response *r,
				  bool close, char *buf, size_t cap)
{
	struct writer o = writer_init(buf, cap);
	w_str(&o, "HTTP/1.1 ");
	w_u64(&o, r->status);
	w_str(&o, " ");
	if (r->reason_phrase.len)
		w_slice(&o, r->reason_phrase);
	else
		w_str(&o, status_text(r->status));
	w_str(&o, "\r\n");
	const struct rw_sockaddr *le = x->snap->listener_entry[x->c->listener];
	const char *hsts = le && le->tls && le->tls->hsts_max_age ? le->tls->hsts_header : NULL;
	const struct rw_header_xf *xf = x->route->xf.response ? &x->route->xf.response->headers : NULL;
	for (unsigned i = 0; i < r->nheaders; i++) {
		const struct http_header *h = &r->headers[i];
		struct slice name = h->name;
		if (!h->hop && h->id != HDR_X_REQUEST_ID &&
		    !(hsts && slice_ieq(h->name, "strict-transport-security", 25)) &&
		    !(x->rl_headers_len && h->name.len > 10 &&
		      slice_ieq(slice_make(h->name.p, 10), "ratelimit-", 10)) &&
		    !(x->cors_headers_len && h->name.len > 15 &&
		      slice_ieq(slice_make(h->name.p, 15), "access-control-", 15)) &&
		    transform_header(xf, &name))
			w_header(&o, name, h->value);
	}
	transform_write_headers(xf, &o);
	w_put(&o, x->rl_headers, x->rl_headers_len); /* the gateway's limits, not the upstream's */
	w_put(&o, x->cors_headers, x->cors_headers_len); /* and its CORS decision */
	w_str(&o, "X-Request-Id: ");
	w_str(&o, x->request_id);
	w_str(&o, "\r\n");
	if (hsts) { /* the listener's policy, not the upstream's */
		w_str(&o, "Strict-Transport-Security: ");
		w_str(&o, hsts);
		w_str(&o, "\r\n");
	}
	if (close)
		w_str(&o, "Connection: close\r\n");
	else if (x->client_http10)
		w_str(&o, "Connection: keep-alive\r\n");
	w_str(&o, "\r\n");
	return o.overflow ? 0 : writer_len(&o);
}

static bool relay_head(struct leg *lg, const struct http_response *r)
{
	struct exchange *x = lg->x;
	struct bufs *b = &leg_loop(lg)->bufs;
	x->status = r->status;
	/* an answer before the whole request body arrived ends the connection too */
	bool close = !x->client_keep_alive || client_closes_after(x->c) || !x->req_done ||
		     lg->resp_mode == RESP_UNTIL_CLOSE ||
		     (x->client_http10 && lg->resp_mode == RESP_CHUNKED);
	if (close)
		client_close_after(x->c);
	uint32_t id = buf_heap_get(b);
	size_t len = id == UINT32_MAX ? 0 : build_response_head(x, r, close, buf_ptr(b, id), buf_cap(b, id));
	if (len == 0 && id != UINT32_MAX)
		buf_unref(b, id);
	if (len == 0 || !segq_push(b, &x->down->out, id, 0, (uint32_t)len)) { /* a failed push let id go */
		leg_fail(lg, id == UINT32_MAX || len ? RW_INTERNAL : RW_UPSTREAM_BAD_RESPONSE,
			 len ? ENOMEM : 0);
		return false;
	}
	x->bytes_out_queued += len;
	x->resp_started = true;
	return true;
}

static void relay_failed(struct leg *lg, enum rw_reason r, int err)
{
	struct exchange *x = lg->x;
	if (!lg->started) {
		exchange_refuse(x, r, NULL, false);
		return;
	}
	x->reason = r;
	client_close_after(x->c);
	leg_release(lg, false);
	client_exchange_done(x->c);
}

static void relay_finished(struct leg *lg)
{
	lg->t_done_ns = now_ns();
	exchange_answered(lg->x, lg->resp_keep_alive && lg->x->req_done);
}

/* The response body in splice mode. True while the exchange goes on. */
static bool relay_splice(struct leg *lg)
{
	struct exchange *x = lg->x;
	enum splice_status st = splice_step(leg_loop(lg), &lg->resp_splice, &lg->u->s, x->down,
					    &lg->resp_remaining, &x->bytes_out_queued);
	if (st == SPLICE_DONE) {
		relay_finished(lg);
		return false;
	}
	if (st == SPLICE_FAILED) {
		if (!lg->resp_splice.failed_out) {
			if (lg->resp_splice.error > 0)
				log_warn("splice from upstream %s: %s", lg->target,
					 strerror(lg->resp_splice.error));
			leg_fail(lg, RW_UPSTREAM_RESET, 0);
		} else { /* the client stopped reading */
			client_exchange_failed(x->c, RW_CLIENT_CLOSED);
		}
		return false;
	}
	return true;
}

static void relay_body(struct leg *lg)
{
	struct exchange *x = lg->x;
	struct loop *l = leg_loop(lg);
	struct upconn *u = lg->u;
	if (splice_active(&lg->resp_splice)) {
		relay_splice(lg);
		return;
	}
	uint64_t moved;
	bool done;
	enum rw_reason r = leg_take_body(lg, &l->bufs, &x->down->out, SOCK_OUT_HIGH, &moved, &done);
	x->bytes_out_queued += moved;
	client_send(x->c);
	if (r != RW_OK) {
		leg_fail(lg, r, r == RW_INTERNAL ? ENOMEM : 0);
		return;
	}
	if (done) {
		relay_finished(lg);
		return;
	}
	if (lg->resp_mode == RESP_LENGTH && lg->resp_remaining >= SPLICE_MIN_BYTES &&
	    u->s.in.bytes == 0 && !u->s.eof && splice_begin(l, &lg->resp_splice, &u->s, x->down)) {
		relay_splice(lg);
		return;
	}
	if (u->s.eof && u->s.in.bytes == 0) {
		if (lg->resp_mode == RESP_UNTIL_CLOSE && x->reason == RW_OK) {
			lg->t_done_ns = now_ns();
			exchange_answered(x, false);
		} else {
			leg_fail(lg, RW_UPSTREAM_RESET, 0);
		}
		return;
	}
	if (x->down->out.bytes >= SOCK_OUT_HIGH)
		sock_pause(l, &u->s);
	else
		sock_resume(l, &u->s);
	leg_arm_timer(lg);
}

static void relay_spliced(struct leg *lg, bool is_in, int res)
{
	struct exchange *x = lg->x;
	struct client *c = x->c;
	struct sock *down = x->down;
	if (is_in) {
		splice_in_done(&lg->resp_splice, res, &lg->resp_remaining);
		if (res > 0) {
			x->bytes_out_queued += (uint64_t)res;
			leg_arm_timer(lg);
		}
	} else {
		splice_out_done(&lg->resp_splice, res);
	}
	if (!relay_splice(lg) || down->closing)
		return;
	/* the client's stall timer restarts when it takes bytes, and runs while a splice waits on it */
	if ((!is_in && res > 0) || !timer_armed(&down->tm))
		client_arm_timer(c);
}

static const struct leg_sink_ops relay_sink = {
	.head = relay_head,
	.body = relay_body,
	.failed = relay_failed,
	.spliced = relay_spliced,
};

/* ---- the handler ----------------------------------------------------------------------------- */

void proxy_handle(struct exchange *x)
{
	struct bufs *b = &x->sh->loop.bufs;
	struct leg *lg = &x->leg;
	lg->ups = x->route->upstream;
	lg->sink = &relay_sink;
	enum rw_reason why = RW_OK;
	struct upconn *u = leg_acquire(lg, -1, false, &why);
	if (!u) {
		exchange_refuse(x, why, NULL, false);
		return;
	}
	lg->u = u; /* released with the leg if anything below fails */
	lg->target = upconn_target(u);
	uint32_t id = buf_heap_get(b);
	size_t n = id == UINT32_MAX ? 0 : build_request_head(lg, buf_ptr(b, id), buf_cap(b, id));
	exchange_release_head(x);
	if (n == 0) { /* out of memory, or our additions pushed the head past the buffer */
		if (id != UINT32_MAX)
			buf_unref(b, id);
		exchange_refuse(x, id == UINT32_MAX ? RW_INTERNAL : RW_HEADERS_TOO_LARGE, NULL, true);
		return;
	}
	lg->req_head_id = id; /* our reference: kept for a retry */
	lg->req_head_len = (uint32_t)n;
	buf_ref(b, id);
	if (!segq_push(b, &u->s.out, id, 0, (uint32_t)n)) { /* it let its reference go; ours stays */
		exchange_refuse(x, RW_INTERNAL, NULL, true);
		return;
	}
	if (x->req.expect_continue && x->req_has_body) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		uint32_t cid = buf_heap_get(b);
		if (cid == UINT32_MAX || !segq_push(b, &x->down->out, cid, 0, sizeof cont - 1)) {
			exchange_refuse(x, RW_INTERNAL, NULL, true);
			return;
		}
		memcpy(buf_ptr(b, cid), cont, sizeof cont - 1);
		client_send(x->c);
	}
	x->pumping = x->req_has_body;
	leg_attach(lg, u);
	exchange_pump_request(x);
}
