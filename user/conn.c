/* conn.c — a client connection's life: accept, request heads parsed in place (coalesced into a
 * heap buffer only while incomplete, so a slow client never pins a ring buffer), refusals with the
 * reason's JSON answer, keep-alive and pipelining (requests that wait are copied out of the ring and
 * the connection stops reading), half-close, the timeouts, and draining on shutdown. Everything
 * between a parsed head and the end of its answer is the exchange's (exchange.h). */
#include "conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "exchange.h"
#include "tls.h"
#include "metrics.h"
#include "transport.h"
#include "shard.h"
#include "writer.h"

static void client_process(struct client *c);
static void client_timer_fired(struct timer *t);
static const struct sock_ops client_sock_ops;

void client_arm_timer(struct client *c)
{
	struct shard *sh = c->sh;
	const struct rw_limits *lim = &shard_cfg(sh)->limits;
	struct timer_wheel *wheel = &sh->loop.wheel;
	if (c->s.closing)
		return;
	bool sending = c->s.out.bytes > 0 || (c->x && exchange_sending(c->x));
	if (sending || c->state == C_DONE || (c->state == C_EXCHANGE && exchange_waits_for_client(c->x))) {
		timer_arm(wheel, &c->s.tm, lim->client_timeout_ms, client_timer_fired);
	} else if (c->state == C_IDLE) {
		timer_arm(wheel, &c->s.tm, lim->keepalive_timeout_ms, client_timer_fired);
	} else if (c->state == C_HEAD) {
		if (!timer_armed(&c->s.tm))
			timer_arm(wheel, &c->s.tm, lim->header_timeout_ms, client_timer_fired);
	} else {
		timer_cancel(wheel, &c->s.tm); /* the upstream's timer governs */
	}
}

void client_accepted(struct shard *sh, uint32_t listener, int fd)
{
	struct client *c = sh->free_clients;
	if (c)
		sh->free_clients = c->next;
	else if (!(c = malloc(sizeof *c))) {
		log_error("out of memory: connection refused");
		close(fd);
		return;
	}
	memset(c, 0, sizeof *c);
	sock_init(&c->s, fd, BUF_GROUP_CLIENT, &client_sock_ops, &transport_plain);
	const struct rw_sockaddr *entry = sh->snap->listener_entry[listener];
	const struct rw_tls_server *tls = entry ? entry->tls : NULL;
	if (tls && (!tls->rt || tls_accept(&sh->loop, &c->s, tls->rt))) {
		log_error("out of memory for TLS: connection refused");
		close(fd);
		c->next = sh->free_clients;
		sh->free_clients = c;
		return;
	}
	c->s.connected = true;
	c->sh = sh;
	c->listener = listener;
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
	c->next = sh->clients; /* TCP_NODELAY comes from the listener */
	if (sh->clients)
		sh->clients->prev = c;
	sh->clients = c;
	sh->nclients++;
	stat_set(&sh->stats->clients_open, sh->nclients);
	stat_add(&sh->stats->clients_accepted, 1);
	c->state = C_HEAD; /* the header timeout runs from accept, after the TLS handshake's */
	if (tls) {
		c->handshaking = true;
		timer_arm(&sh->loop.wheel, &c->s.tm, tls->handshake_timeout_ms, client_timer_fired);
	}
	client_arm_timer(c);
	sock_arm_recv(&sh->loop, &c->s);
}

/* The exchange is over for this connection (answered, refused or cut short). */
static void drop_exchange(struct client *c)
{
	struct exchange *x = c->x;
	c->x = NULL;
	exchange_end(x);
}

static void client_on_free(struct sock *s)
{
	struct client *c = (struct client *)s;
	struct shard *sh = c->sh;
	if (c->x) /* closed by the worker at shutdown */
		drop_exchange(c);
	if (c->prev)
		c->prev->next = c->next;
	else
		sh->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	sh->nclients--;
	stat_set(&sh->stats->clients_open, sh->nclients);
	c->next = sh->free_clients;
	sh->free_clients = c;
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

/* The counters of a request that ends (metrics.h): its exchange's, or for a request refused before
 * it had one, its frontend's (none when the listener's frontend is gone from the snapshot). */
static void count_request(struct client *c, int status, enum rw_reason r, uint64_t answer_bytes)
{
	if (c->x) {
		exchange_count(c->x, status, r, answer_bytes);
		return;
	}
	const struct rw_frontend *fe = c->sh->snap->listener_fe[c->listener];
	struct request_sample s = { .status = status, .reason = r, .bytes_out = answer_bytes,
				    .duration_ns = METRICS_UNTIMED, .upstream_ns = METRICS_UNTIMED };
	metrics_request(c->sh->stats, fe ? fe->stats : NULL, NULL, &s);
}

/* The counters, the access-log record of the current exchange (or of a request refused before it
 * had one, with the request_id its answer carried), and for a refusal also a log line.
 * answer_bytes: the gateway's own answer (a refusal's error response), counted as bytes out. */
static void log_exchange(struct client *c, int status, enum rw_reason r, uint64_t answer_bytes,
			 const char *request_id)
{
	struct exchange *x = c->x;
	count_request(c, status, r, answer_bytes);
	if (r == RW_OK && c->sh->alog.fd < 0)
		return; /* nothing to write: no formatting on the hot path */
	char peer[INET6_ADDRSTRLEN + 10], ip[INET6_ADDRSTRLEN];
	client_peer_ip(c, ip, sizeof ip);
	snprintf(peer, sizeof peer, c->peer_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, c->peer_port);
	/* a refusal's line; a rate limit logs its own, at most once a second (a flood of 429s is
	 * what it is for), and the access log has every one */
	if (r != RW_OK && r != RW_RATE_LIMITED)
		log_info("%s: %d %s%s%.*s", peer, status, reason_name(r), x ? " " : "",
			 x ? (int)x->path_len : 0, x ? x->path : "");
	struct access_record rec = {
		.method = "-", .method_len = 1, .path = "-", .path_len = 1, .upstream_ms = -1,
	};
	if (x)
		exchange_record(x, &rec);
	else
		rec.request_id = request_id;
	rec.client = peer;
	rec.bytes_out += answer_bytes;
	rec.status = status;
	rec.reason = reason_name(r);
	rec.worker = c->sh->id;
	access_log_write(&c->sh->alog, &rec);
}

void client_close(struct client *c)
{
	if (c->x) /* the upstream leg goes at once, so nothing of this exchange runs on */
		drop_exchange(c);
	c->state = C_DONE; /* no state that expects an exchange */
	sock_close(&c->sh->loop, &c->s);
}

void client_exchange_failed(struct client *c, enum rw_reason r)
{
	struct exchange *x = c->x;
	if (x) /* logged with the status the client saw, if a response head went out */
		log_exchange(c, x->resp_started ? x->status : reason_status(r), r, 0, NULL);
	client_close(c);
}

/* The answer is out; the client may still be sending (the rest of a refused body). Closing with
 * unread bytes would reset the connection and could destroy the answer in flight, so: FIN, then
 * read and drop what comes for a short while, then close. */
#define LINGER_MS 2000

static void client_linger(struct client *c)
{
	struct loop *l = &c->sh->loop;
	if (c->s.eof) {
		client_close(c);
		return;
	}
	c->lingering = true;
	sock_shutdown_write(l, &c->s);
	segq_clear(&l->bufs, &c->s.in);
	timer_arm(&l->wheel, &c->s.tm, LINGER_MS, client_timer_fired);
	sock_resume(l, &c->s);
}

/* No more requests on this connection: close once what is queued has been sent. */
static void client_finish(struct client *c)
{
	c->close_after = true;
	c->state = C_DONE;
	segq_clear(&c->sh->loop.bufs, &c->s.in);
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
	sock_resume(&c->sh->loop, &c->s);
	client_process(c);
}

void client_attach(struct client *c, struct exchange *x)
{
	c->x = x;
}

void client_send(struct client *c)
{
	sock_flush(&c->sh->loop, &c->s);
}

void client_close_after(struct client *c)
{
	c->close_after = true;
}

bool client_closes_after(const struct client *c)
{
	return c->close_after || c->sh->stopping;
}

/* After an answer of the gateway's own was queued (ok) or could not be (out of memory: the
 * connection closes instead): flushed, then closing or on to the next request. */
static void own_answer_queued(struct client *c, bool ok, int status, bool close)
{
	struct loop *l = &c->sh->loop;
	if (!ok) {
		log_error("out of memory: closing the connection instead of answering %d", status);
		client_close(c);
		return;
	}
	sock_flush(l, &c->s);
	if (close) {
		sock_pause(l, &c->s);
		client_finish(c);
		return;
	}
	c->state = C_IDLE;
	client_arm_timer(c);
	client_continue(c);
}

/* Sends the answer the gateway made (n bytes in heap buffer id; n 0: none could be made) for the
 * request of c, logged with status and reason r, then closes or goes on to the next request. */
static void send_own_answer(struct client *c, uint32_t id, size_t n, int status, enum rw_reason r,
			    const char *request_id, bool close)
{
	struct loop *l = &c->sh->loop;
	log_exchange(c, status, r, n, request_id);
	if (c->x)
		drop_exchange(c);
	if (n == 0 && id != UINT32_MAX)
		buf_unref(&l->bufs, id);
	/* a failed push let id go */
	own_answer_queued(c, n > 0 && segq_push(&l->bufs, &c->s.out, id, 0, (uint32_t)n), status,
			  close);
}

/* Whether the answer to the request must close the connection. */
static bool must_close(const struct client *c, bool close)
{
	return close || (c->x && !exchange_keeps_alive(c->x)) || c->sh->stopping;
}

void client_refuse(struct client *c, enum rw_reason r, const char *extra, bool close)
{
	struct shard *sh = c->sh;
	struct loop *l = &sh->loop;
	struct exchange *x = c->x;
	if (x && x->resp_started) { /* part of a response is out: only closing can tell the client */
		log_exchange(c, reason_status(r), r, 0, NULL);
		client_close(c);
		return;
	}
	/* an unread request body would be taken for the next request: close instead */
	close = must_close(c, close);
	char made_id[REQUEST_ID_GEN + 1]; /* refused before an exchange: the answer has an id too */
	const char *request_id = x ? x->request_id : made_id;
	if (!x)
		request_id_make(made_id, loop_random(l), loop_random(l));
	/* a limited route's RateLimit fields, and the CORS lines of an allowed origin, on every
	 * answer */
	char lines[RL_HEADERS_MAX + CORS_HEADERS_MAX + 512];
	if (x && (x->rl_headers_len || x->cors_headers_len)) {
		snprintf(lines, sizeof lines, "%.*s%.*s%s", (int)x->rl_headers_len, x->rl_headers,
			 (int)x->cors_headers_len, x->cors_headers, extra ? extra : "");
		extra = lines;
	}
	uint32_t id = buf_heap_get(&l->bufs);
	size_t n = id == UINT32_MAX ? 0 : reason_write_response(r, extra, request_id, close,
								 buf_ptr(&l->bufs, id),
								 buf_cap(&l->bufs, id));
	send_own_answer(c, id, n, reason_status(r), r, request_id, close);
}

void client_answer_own(struct client *c, int status, enum rw_reason r, const char *type,
		       const char *extra, const char *body, size_t len, bool head_only)
{
	struct loop *l = &c->sh->loop;
	struct exchange *x = c->x;
	bool close = must_close(c, false);
	uint64_t total = 0;
	bool ok = true;
	for (size_t off = 0, first = 1; ok && (first || (!head_only && off < len)); first = 0) {
		uint32_t id = buf_heap_get(&l->bufs);
		if (id == UINT32_MAX) {
			ok = false;
			break;
		}
		struct writer w = writer_init(buf_ptr(&l->bufs, id), buf_cap(&l->bufs, id));
		if (first)
			http_head(&w, status, type, len, extra, x->request_id, close);
		size_t room = w.overflow ? 0 : buf_cap(&l->bufs, id) - writer_len(&w);
		size_t take = head_only ? 0 : (len - off < room ? len - off : room);
		w_put(&w, body + off, take);
		off += take;
		size_t n = w.overflow ? 0 : writer_len(&w);
		if (n == 0)
			buf_unref(&l->bufs, id);
		if (n == 0 || !segq_push(&l->bufs, &c->s.out, id, 0, (uint32_t)n)) {
			ok = false;
			break;
		}
		total += n;
	}
	log_exchange(c, status, r, total, x->request_id);
	drop_exchange(c);
	own_answer_queued(c, ok, status, close);
}

void client_answer_empty(struct client *c, int status, const char *lines)
{
	struct loop *l = &c->sh->loop;
	struct exchange *x = c->x;
	bool close = must_close(c, false);
	uint32_t id = buf_heap_get(&l->bufs);
	size_t n = 0;
	if (id != UINT32_MAX) {
		struct writer w = writer_init(buf_ptr(&l->bufs, id), buf_cap(&l->bufs, id));
		w_str(&w, "HTTP/1.1 ");
		w_u64(&w, (uint64_t)status);
		w_str(&w, " ");
		w_str(&w, status_text(status));
		w_str(&w, "\r\n");
		w_str(&w, lines);
		w_str(&w, "X-Request-Id: ");
		w_str(&w, x->request_id);
		w_str(&w, close ? "\r\nConnection: close\r\n\r\n" : "\r\n\r\n");
		n = w.overflow ? 0 : writer_len(&w);
	}
	send_own_answer(c, id, n, status, RW_OK, x->request_id, close);
}

void client_exchange_done(struct client *c)
{
	struct shard *sh = c->sh;
	struct exchange *x = c->x;
	log_exchange(c, x->status, x->reason, 0, NULL);
	if (!x->client_keep_alive || sh->stopping)
		c->close_after = true;
	drop_exchange(c);
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
	struct shard *sh = c->sh;
	struct bufs *b = &sh->loop.bufs;
	const struct rw_limits *lim = &shard_cfg(sh)->limits;
	const struct http_head_limits hl = { lim->max_header_bytes, lim->max_uri_bytes };
	c->in_process = true;
	while (!c->s.closing) {
		if (c->state == C_EXCHANGE) {
			exchange_client_readable(c->x);
			if (c->state == C_EXCHANGE)
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
			timer_cancel(&sh->loop.wheel, &c->s.tm);
			client_arm_timer(c);
		}
		struct seg *g = c->s.in.head;
		int r = http1_parse_request(seg_ptr(b, g), g->len, &hl, &sh->req);
		if (r < 0) {
			client_refuse(c, (enum rw_reason)-r, NULL, true);
			break;
		}
		if (r == 0) {
			bool more = g->next != NULL;
			if (!segq_coalesce_front(b, &c->s.in)) {
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
		c->state = C_EXCHANGE;
		exchange_start(sh, c, &c->s, (uint32_t)r);
	}
	c->in_process = false;
}

static void client_on_data(struct sock *s)
{
	struct client *c = (struct client *)s;
	struct shard *sh = c->sh;
	if (c->handshaking) {
		if (!s->tx->ready(s))
			return;
		c->handshaking = false; /* the head's own timeout starts now */
		timer_cancel(&sh->loop.wheel, &c->s.tm);
		client_arm_timer(c);
	}
	if (c->state == C_DONE) { /* answered and closing: what still comes is dropped */
		segq_clear(&sh->loop.bufs, &c->s.in);
		return;
	}
	if (c->state == C_EXCHANGE && exchange_reads_body(c->x))
		client_arm_timer(c);
	client_process(c);
	/* a pipelined request waits for the one in flight: out of the ring, and stop reading */
	if (!c->s.closing && c->state == C_EXCHANGE && !exchange_reads_body(c->x) && c->s.in.bytes) {
		if (!segq_unring(&sh->loop.bufs, &c->s.in)) {
			log_error("out of memory keeping a pipelined request: closing the connection");
			client_exchange_failed(c, RW_INTERNAL);
			return;
		}
		sock_pause(&sh->loop, &c->s);
	}
}

static void client_on_eof(struct sock *s, int err)
{
	struct client *c = (struct client *)s;
	if (c->lingering) {
		client_close(c);
		return;
	}
	if (c->handshaking) /* the client went away before its TLS handshake was done */
		tls_peer_closed(&c->s);
	if (err == EPROTONOSUPPORT && !c->x) { /* plaintext HTTP on a TLS port: said in plaintext */
		client_refuse(c, RW_HTTP_ON_TLS_PORT, NULL, true);
		return;
	}
	if (err) {
		if (err == ENOMEM)
			log_error("out of memory receiving from a client: closing the connection");
		client_exchange_failed(c, err == ENOMEM ? RW_INTERNAL : RW_CLIENT_CLOSED);
		return;
	}
	/* half close: what was sent is still forwarded and answered, then the connection closes */
	if (c->state == C_EXCHANGE)
		exchange_client_readable(c->x);
	else if (c->state == C_IDLE || c->state == C_HEAD)
		client_process(c);
}

static void client_on_send_error(struct sock *s, int err)
{
	client_exchange_failed((struct client *)s, RW_CLIENT_CLOSED);
}

static void client_on_sent(struct sock *s)
{
	struct client *c = (struct client *)s;
	if (c->x) {
		exchange_client_drained(c->x);
		if (c->s.closing)
			return;
	}
	if (c->s.out.bytes == 0 && c->state == C_DONE) {
		client_linger(c);
		return;
	}
	client_arm_timer(c);
}

static void client_on_splice(struct sock *s, bool is_in, int res)
{
	struct client *c = (struct client *)s;
	if (c->x) /* else the exchange ended; its pipe was closed */
		exchange_client_spliced(c->x, is_in, res);
}

static void client_on_recv_stopped(struct sock *s)
{
	struct client *c = (struct client *)s;
	if (c->x)
		exchange_client_recv_stopped(c->x);
}

static void client_on_connected(struct sock *s, int res)
{
	/* clients are accepted, never connected */
}

static const struct sock_ops client_sock_ops = {
	.on_data = client_on_data,
	.on_eof = client_on_eof,
	.on_sent = client_on_sent,
	.on_send_error = client_on_send_error,
	.on_connected = client_on_connected,
	.on_splice = client_on_splice,
	.on_recv_stopped = client_on_recv_stopped,
	.on_free = client_on_free,
};

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
	bool sending = c->s.out.bytes > 0 || (c->x && exchange_sending(c->x));
	if (sending || c->state == C_DONE) {
		if (c->lingering) {
			client_close(c);
			return;
		}
		log_info("client stalled reading the response: closing");
		client_exchange_failed(c, RW_CLIENT_TIMEOUT);
		return;
	}
	switch (c->state) {
	case C_IDLE:
		client_close(c);
		return;
	case C_HEAD:
		if (c->handshaking) { /* no answer can go out before the handshake */
			log_info("tls: handshake not done within handshake_timeout: closing");
			client_close(c);
			return;
		}
		client_refuse(c, RW_HEADER_TIMEOUT, NULL, true);
		return;
	case C_EXCHANGE:
		if (exchange_reads_body(c->x))
			client_refuse(c, RW_CLIENT_TIMEOUT, NULL, true);
		return;
	default:
		return;
	}
}
