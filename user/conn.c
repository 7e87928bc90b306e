/* conn.c — a client connection's life: accept, request heads parsed in place (coalesced into a
 * heap buffer only while incomplete, so a slow client never pins a ring buffer), refusals with the
 * reason's JSON answer, keep-alive and pipelining (requests that wait are copied out of the ring and
 * the connection stops reading), half-close, the timeouts, and draining on shutdown. */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy.h"
#include "upstream.h"
#include "worker.h"

static void client_process(struct client *c);
static void client_timer_fired(struct timer *t);

void client_arm_timer(struct client *c)
{
	struct worker *w = c->w;
	const struct rw_limits *lim = &w->cfg->limits;
	if (c->s.closing)
		return;
	bool sending = c->s.out.bytes > 0 || (c->x && c->x->resp_leg.out_busy);
	/* a client held back because the upstream reads slowly is not the one stalling */
	bool held_back = c->state == C_BODY && c->x &&
			 (splice_active(&c->x->req_leg) ? splice_waits_for_out(&c->x->req_leg)
							 : c->s.paused);
	if (sending || c->state == C_DONE || (c->state == C_BODY && !held_back)) {
		timer_arm(&w->wheel, &c->s.tm, lim->client_timeout_ms, client_timer_fired);
	} else if (c->state == C_IDLE) {
		timer_arm(&w->wheel, &c->s.tm, lim->keepalive_timeout_ms, client_timer_fired);
	} else if (c->state == C_HEAD) {
		if (!timer_armed(&c->s.tm))
			timer_arm(&w->wheel, &c->s.tm, lim->header_timeout_ms, client_timer_fired);
	} else {
		timer_cancel(&w->wheel, &c->s.tm); /* the upstream's timer governs */
	}
}

void client_accepted(struct worker *w, const struct listener *l, int fd)
{
	struct client *c = w->free_clients;
	if (c)
		w->free_clients = c->next;
	else if (!(c = malloc(sizeof *c))) {
		log_error("out of memory: connection refused");
		close(fd);
		return;
	}
	memset(c, 0, sizeof *c);
	sock_init(&c->s, fd, SOCK_CLIENT);
	c->s.connected = true;
	c->w = w;
	c->l = l;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		c->peer_family = (uint8_t)ss.ss_family;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;
			memcpy(c->peer_addr, &in->sin_addr, 4);
			c->peer_port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
			memcpy(c->peer_addr, &in6->sin6_addr, 16);
			c->peer_port = ntohs(in6->sin6_port);
		}
	}
	c->next = w->clients; /* TCP_NODELAY comes from the listener */
	if (w->clients)
		w->clients->prev = c;
	w->clients = c;
	w->nclients++;
	c->state = C_HEAD; /* the header timeout runs from accept */
	client_arm_timer(c);
	sock_arm_recv(w, &c->s);
}

void client_free(struct client *c)
{
	struct worker *w = c->w;
	if (c->x) /* closed by the worker at shutdown */
		proxy_abort(c->x);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->nclients--;
	c->next = w->free_clients;
	w->free_clients = c;
}

/* The client's address as text; IPv4 by hand, because glibc's inet_ntop formats it with sprintf
 * and this runs for every request (X-Forwarded-For). */
void client_peer_ip(const struct client *c, char *out, size_t cap)
{
	if (c->peer_family == AF_INET && cap >= INET_ADDRSTRLEN) {
		char *p = out;
		for (int i = 0; i < 4; i++) {
			unsigned b = c->peer_addr[i];
			if (b >= 100)
				*p++ = (char)('0' + b / 100);
			if (b >= 10)
				*p++ = (char)('0' + b / 10 % 10);
			*p++ = (char)('0' + b % 10);
			*p++ = i < 3 ? '.' : '\0';
		}
		return;
	}
	if (!inet_ntop(c->peer_family, c->peer_addr, out, (socklen_t)cap))
		snprintf(out, cap, "unknown");
}

/* The access-log record of the current exchange (or of a request refused before it had one), and for
 * a refusal also a log line. */
static void log_exchange(struct client *c, int status, enum rw_reason r)
{
	struct exchange *x = c->x;
	if (r == RW_OK && c->w->alog.fd < 0)
		return; /* nothing to write: no formatting on the hot path */
	char peer[INET6_ADDRSTRLEN + 10], ip[INET6_ADDRSTRLEN];
	client_peer_ip(c, ip, sizeof ip);
	snprintf(peer, sizeof peer, c->peer_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, c->peer_port);
	if (r != RW_OK)
		log_info("%s: %d %s%s%.*s", peer, status, reason_name(r), x ? " " : "",
			 x ? (int)x->path_len : 0, x ? x->path : "");
	uint64_t now = now_ns();
	uint64_t up_end = x && x->t_upstream_done_ns ? x->t_upstream_done_ns : now;
	struct access_record rec = {
		.client = peer,
		.method = x ? x->method : "-",
		.method_len = x ? x->method_len : 1,
		.path = x ? x->path : "-",
		.path_len = x ? x->path_len : 1,
		.route = x && x->route ? x->route->name : NULL,
		.upstream = x ? (x->u ? x->u->target->text : x->upstream_text) : NULL,
		.status = status,
		.reason = reason_name(r),
		.bytes_in = x ? x->bytes_in : 0,
		.bytes_out = x ? x->bytes_out_queued : 0,
		.duration_ms = x ? (double)(now - x->t_start_ns) / 1e6 : 0,
		.upstream_ms = x && x->t_upstream_ns ? (double)(up_end - x->t_upstream_ns) / 1e6 : -1,
		.worker = c->w->id,
	};
	access_log_write(&c->w->alog, &rec);
}

/* An exchange cut short: logged with the status the client saw, if a response head went out. */
static void log_abort(struct client *c, enum rw_reason r)
{
	struct exchange *x = c->x;
	log_exchange(c, x && x->resp_started ? x->status : reason_status(r), r);
}

void client_close(struct client *c)
{
	if (c->x) /* the upstream leg goes at once, so nothing of this exchange runs on */
		proxy_abort(c->x);
	sock_close(c->w, &c->s);
}

/* The answer is out; the client may still be sending (the rest of a refused body). Closing with
 * unread bytes would reset the connection and could destroy the answer in flight, so: FIN, then
 * read and drop what comes for a short while, then close. */
#define LINGER_MS 2000

static void client_linger(struct client *c)
{
	if (c->s.eof) {
		client_close(c);
		return;
	}
	c->lingering = true;
	shutdown(c->s.fd, SHUT_WR);
	segq_clear(&c->w->bufs, &c->s.in);
	timer_arm(&c->w->wheel, &c->s.tm, LINGER_MS, client_timer_fired);
	sock_resume(c->w, &c->s);
}

/* No more requests on this connection: close once what is queued has been sent. */
static void client_finish(struct client *c)
{
	c->close_after = true;
	c->state = C_DONE;
	segq_clear(&c->w->bufs, &c->s.in);
	if (c->s.out.bytes == 0)
		client_linger(c);
	else
		client_arm_timer(c);
}

/* Carries on with requests already buffered, unless we are inside client_process already. */
static void client_continue(struct client *c)
{
	if (c->in_process || c->s.closing)
		return;
	sock_resume(c->w, &c->s);
	client_process(c);
}

void client_refuse(struct client *c, enum rw_reason r, const char *allow, bool close)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	log_exchange(c, reason_status(r), r);
	if (x && x->resp_started) { /* part of a response is out: only closing can tell the client */
		client_close(c);
		return;
	}
	if (x) {
		/* an unread request body would be taken for the next request: close instead */
		if (!x->req_done || !x->client_keep_alive)
			close = true;
		proxy_abort(x);
	}
	if (w->stopping)
		close = true;
	uint32_t id = buf_heap_get(&w->bufs);
	if (id == UINT32_MAX) {
		client_close(c);
		return;
	}
	size_t n = reason_write_response(r, allow, close, buf_ptr(&w->bufs, id), buf_cap(&w->bufs, id));
	segq_push(&w->bufs, &c->s.out, id, 0, (uint32_t)n);
	sock_flush(w, &c->s);
	if (close) {
		sock_pause(w, &c->s);
		client_finish(c);
		return;
	}
	c->state = C_IDLE;
	client_arm_timer(c);
	client_continue(c);
}

void client_exchange_done(struct client *c)
{
	struct worker *w = c->w;
	struct exchange *x = c->x;
	log_exchange(c, x->status, x->reason);
	if (!x->client_keep_alive || w->stopping)
		c->close_after = true;
	exchange_free(w, x);
	c->x = NULL;
	if (c->close_after) {
		client_finish(c);
		return;
	}
	c->state = C_IDLE;
	client_arm_timer(c);
	client_continue(c);
}

static void client_process(struct client *c)
{
	struct worker *w = c->w;
	const struct rw_limits *lim = &w->cfg->limits;
	const struct http_head_limits hl = { lim->max_header_bytes, lim->max_uri_bytes };
	c->in_process = true;
	while (!c->s.closing) {
		if (c->state == C_BODY) {
			client_pump_body(c);
			if (c->state == C_BODY)
				break;
			continue;
		}
		if (c->state != C_IDLE && c->state != C_HEAD)
			break;
		if (c->s.in.bytes == 0) {
			if (c->s.eof) /* half closed, every buffered request answered */
				client_finish(c);
			break;
		}
		if (c->state == C_IDLE) {
			c->state = C_HEAD;
			timer_cancel(&w->wheel, &c->s.tm);
			client_arm_timer(c);
		}
		struct seg *g = c->s.in.head;
		int r = http1_parse_request(seg_ptr(&w->bufs, g), g->len, &hl, &w->req);
		if (r < 0) {
			client_refuse(c, (enum rw_reason)-r, NULL, true);
			break;
		}
		if (r == 0) {
			bool more = g->next != NULL;
			if (!segq_coalesce_front(&w->bufs, &c->s.in)) {
				client_refuse(c, RW_INTERNAL, NULL, true);
				break;
			}
			if (more)
				continue;
			if (c->s.eof) { /* the rest of this head will never come */
				log_debug("client closed with an incomplete request head");
				client_finish(c);
			}
			break;
		}
		proxy_start(c, (uint32_t)r);
	}
	c->in_process = false;
}

void client_pump_body(struct client *c)
{
	struct exchange *x = c->x;
	struct worker *w = c->w;
	if (c->state != C_BODY || !x || !x->u)
		return;
	struct sock *up = &x->u->s;
	if (splice_active(&x->req_leg)) {
		enum splice_status st = splice_step(w, &x->req_leg, &c->s, up, &x->req_remaining,
						    &x->bytes_in);
		if (st == SPLICE_RUNNING)
			return;
		if (st == SPLICE_FAILED) {
			if (x->req_leg.failed_out) {
				proxy_on_upstream_eof(x, x->req_leg.error);
			} else {
				x->reason = RW_CLIENT_CLOSED;
				log_abort(c, RW_CLIENT_CLOSED);
				client_close(c);
			}
			return;
		}
		x->req_done = true;
		c->state = C_WAIT;
		client_arm_timer(c);
		sock_resume(w, &c->s);
		return;
	}
	while (!x->req_done && c->s.in.bytes && up->out.bytes < SOCK_OUT_HIGH) {
		uint64_t n;
		if (x->req_chunked) {
			struct seg *g = c->s.in.head;
			bool done = false;
			ssize_t k = chunk_scan(&x->req_cs, seg_ptr(&w->bufs, g), g->len, &done);
			if (k < 0) {
				client_refuse(c, RW_BAD_CHUNK, NULL, true);
				return;
			}
			if (x->req_cs.data_bytes > w->cfg->limits.max_body_bytes) {
				client_refuse(c, RW_BODY_TOO_LARGE, NULL, true);
				return;
			}
			n = segq_move(&w->bufs, &up->out, &c->s.in, (uint64_t)k);
			x->req_done = done;
		} else {
			n = segq_move(&w->bufs, &up->out, &c->s.in, (uint64_t)x->req_remaining);
			x->req_remaining -= (int64_t)n;
			x->req_done = x->req_remaining == 0;
		}
		x->bytes_in += n;
	}
	sock_flush(w, up);
	if (x->req_done) {
		c->state = C_WAIT;
		client_arm_timer(c);
		return;
	}
	if (c->s.eof && c->s.in.bytes == 0) { /* the client stopped before its body was complete */
		x->reason = RW_CLIENT_CLOSED;
		log_abort(c, RW_CLIENT_CLOSED);
		client_close(c);
		return;
	}
	if (!x->req_chunked && x->req_remaining >= SPLICE_MIN_BYTES && c->s.in.bytes == 0 &&
	    splice_begin(w, &x->req_leg, &c->s)) {
		client_arm_timer(c);
		client_pump_body(c);
		return;
	}
	if (up->out.bytes >= SOCK_OUT_HIGH)
		sock_pause(w, &c->s); /* resumed when the upstream drains */
	else
		sock_resume(w, &c->s);
	client_arm_timer(c);
}

void client_on_data(struct client *c)
{
	struct worker *w = c->w;
	if (c->state == C_DONE) { /* answered and closing: what still comes is dropped */
		segq_clear(&w->bufs, &c->s.in);
		return;
	}
	if (c->state == C_BODY)
		client_arm_timer(c);
	client_process(c);
	/* a pipelined request waits for the one in flight: out of the ring, and stop reading */
	if (c->state == C_WAIT && c->s.in.bytes && !c->s.closing) {
		segq_unring(&w->bufs, &c->s.in);
		sock_pause(w, &c->s);
	}
}

void client_on_eof(struct client *c, int err)
{
	if (c->lingering) {
		client_close(c);
		return;
	}
	if (err) {
		if (c->x) {
			c->x->reason = RW_CLIENT_CLOSED;
			log_abort(c, RW_CLIENT_CLOSED);
		}
		client_close(c);
		return;
	}
	/* half close: what was sent is still forwarded and answered, then the connection closes */
	if (c->state == C_BODY)
		client_pump_body(c);
	else if (c->state == C_IDLE || c->state == C_HEAD)
		client_process(c);
}

void client_on_send_error(struct client *c, int err)
{
	if (c->x) {
		c->x->reason = RW_CLIENT_CLOSED;
		log_abort(c, RW_CLIENT_CLOSED);
	}
	client_close(c);
}

void client_on_sent(struct client *c)
{
	if (c->x) {
		proxy_on_client_drained(c->x);
		if (c->s.closing)
			return;
	}
	if (c->s.out.bytes == 0 && c->state == C_DONE) {
		client_linger(c);
		return;
	}
	client_arm_timer(c);
}

void client_drain(struct client *c)
{
	bool between_requests = c->state == C_IDLE || (c->state == C_HEAD && c->s.in.bytes == 0);
	if (between_requests && !c->x && c->s.out.bytes == 0)
		client_close(c);
	else
		c->close_after = true;
}

static void client_timer_fired(struct timer *t)
{
	struct client *c = container_of(t, struct client, s.tm);
	bool sending = c->s.out.bytes > 0 || (c->x && c->x->resp_leg.out_busy);
	if (sending || c->state == C_DONE) {
		if (c->lingering) {
			client_close(c);
			return;
		}
		log_info("client stalled reading the response: closing");
		if (c->x) {
			c->x->reason = RW_CLIENT_TIMEOUT;
			log_abort(c, RW_CLIENT_TIMEOUT);
		}
		client_close(c);
		return;
	}
	switch (c->state) {
	case C_IDLE:
		client_close(c);
		return;
	case C_HEAD:
		client_refuse(c, RW_HEADER_TIMEOUT, NULL, true);
		return;
	case C_BODY:
		client_refuse(c, RW_CLIENT_TIMEOUT, NULL, true);
		return;
	default:
		return;
	}
}
