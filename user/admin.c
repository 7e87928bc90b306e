/* admin.c — the admin API's server (see admin.h): its listener and connections on the control
 * thread's loop (keep-alive, one request at a time, no request bodies), the bearer token checked
 * in constant time, and the endpoints: /metrics, /status, /config (the running YAML as JSON, secret
 * values redacted), /upstreams, POST /reload, and /.well-known/jwks.json (the identity token's
 * public key, served without the token). Answers and errors are JSON (metrics aside). */
#include "admin.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "control.h"
#include "http1.h"
#include "log.h"
#include "metrics.h"
#include "sock.h"
#include "transport.h"
#include "worker.h"
#include "writer.h"
#include "xdp.h"

#define ADMIN_MAX_HEAD 8192
#define ADMIN_IDLE_MS (60 * 1000)
#define ADMIN_HEADER_MS (10 * 1000)
#define ADMIN_MAX_CLIENTS 64

struct admin {
	struct listener li;
	struct control *ctl;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[64];
};

struct admin_client {
	struct sock s; /* first: the ring's user_data points here */
	struct control *ctl;
	struct admin_client *prev, *next;
	bool close_after;
};

static unsigned nclients;

static void client_timer_fired(struct timer *t);

/* ---- answers ---------------------------------------------------------------------------------- */

/* A growing buffer for an answer's body (a writer over it, retried bigger when it overflowed). */
struct body {
	char *p;
	size_t len;
};

typedef void body_fn(struct writer *w, struct control *ctl);

/* The body fn writes, in a buffer big enough for it; false when out of memory. */
static bool render(struct body *b, body_fn *fn, struct control *ctl)
{
	for (size_t cap = 16384; cap <= (64u << 20); cap *= 4) {
		char *p = malloc(cap);
		if (!p)
			return false;
		struct writer w = writer_init(p, cap);
		fn(&w, ctl);
		if (!w.overflow) {
			b->p = p;
			b->len = writer_len(&w);
			return true;
		}
		free(p);
	}
	return false;
}

static void client_close_now(struct admin_client *c)
{
	sock_close(&c->ctl->loop, &c->s);
}

/* Queues a complete answer. extra: more header lines ("Name: value\r\n"), or NULL. */
static void answer(struct admin_client *c, int status, const char *type, const char *body,
		   size_t len, const char *extra, bool head_only)
{
	char head[1024], lines[768];
	snprintf(lines, sizeof lines, "Cache-Control: no-store\r\n%s", extra ? extra : "");
	struct writer w = writer_init(head, sizeof head);
	http_head(&w, status, type, len, lines, NULL, c->close_after);
	struct loop *l = &c->ctl->loop;
	if (w.overflow || !sock_write_copy(l, &c->s, head, writer_len(&w)) ||
	    (!head_only && len && !sock_write_copy(l, &c->s, body, len))) {
		log_error("admin: out of memory answering: closing the connection");
		client_close_now(c);
		return;
	}
	sock_flush(l, &c->s);
}

/* An error answer: {"error":{"status","reason","message"[,"errors":[...]]}}. */
static void answer_error(struct admin_client *c, int status, const char *reason, const char *msg,
			 const struct config_errors *errs, const char *extra, bool head_only)
{
	size_t cap = 1024;
	for (uint32_t i = 0; errs && i < errs->count; i++)
		cap += 2 * strlen(errs->lines[i]) + 8;
	char *body = malloc(cap);
	if (!body) {
		client_close_now(c);
		return;
	}
	struct writer w = writer_init(body, cap);
	w_str(&w, "{\"error\":{\"status\":");
	w_u64(&w, (uint64_t)status);
	w_str(&w, ",\"reason\":\"");
	w_str(&w, reason);
	w_str(&w, "\",\"message\":\"");
	w_json(&w, msg, strlen(msg), 512);
	w_str(&w, "\"");
	if (errs && errs->count) {
		w_str(&w, ",\"errors\":[");
		for (uint32_t i = 0; i < errs->count; i++) {
			w_str(&w, i ? ",\"" : "\"");
			w_json(&w, errs->lines[i], strlen(errs->lines[i]), 4096);
			w_str(&w, "\"");
		}
		w_str(&w, "]");
	}
	w_str(&w, "}}\n");
	answer(c, status, "application/json", body, writer_len(&w), extra, head_only);
	free(body);
}

static void answer_body(struct admin_client *c, const char *type, body_fn *fn, bool head_only)
{
	struct body b;
	if (!render(&b, fn, c->ctl)) {
		log_error("admin: out of memory rendering an answer");
		answer_error(c, 500, "internal_error", "out of memory", NULL, NULL, head_only);
		return;
	}
	answer(c, 200, type, b.p, b.len, NULL, head_only);
	free(b.p);
}

static void answer_malloced(struct admin_client *c, const char *type, char *body, size_t len,
			    bool head_only)
{
	if (!body) {
		log_error("admin: out of memory rendering an answer");
		answer_error(c, 500, "internal_error", "out of memory", NULL, NULL, head_only);
		return;
	}
	answer(c, 200, type, body, len, NULL, head_only);
	free(body);
}

/* ---- /status ---------------------------------------------------------------------------------- */

static void w_double(struct writer *w, double v)
{
	char num[48];
	w_put(w, num, (size_t)snprintf(num, sizeof num, "%.3f", v));
}

static void status_body(struct writer *w, struct control *ctl)
{
	const struct rw_config *cfg = ctl->cfg;
	double now = control_wall_time();
	w_str(w, "{\"version\":\"" RINGWAY_VERSION "\",\"pid\":");
	w_u64(w, (uint64_t)getpid());
	w_str(w, ",\"started_at\":");
	w_double(w, ctl->start_time);
	w_str(w, ",\"uptime_seconds\":");
	w_double(w, now - ctl->start_time);
	w_str(w, ",\"config\":{\"file\":");
	w_json_quoted(w, cfg->path);
	w_str(w, ",\"generation\":");
	w_u64(w, cfg->generation);
	w_str(w, ",\"loaded_at\":");
	w_double(w, ctl->last_reload_time);
	w_str(w, ",\"reloads\":{\"ok\":");
	w_u64(w, ctl->reloads_ok);
	w_str(w, ",\"failed\":");
	w_u64(w, ctl->reloads_failed);
	w_str(w, "}},\"workers\":");
	w_u64(w, ctl->ws->n);
	w_str(w, ",\"open_connections\":");
	w_u64(w, metrics_open_connections(ctl->ws->metrics));
	w_str(w, ",\"frontends\":[");
	for (uint32_t f = 0; f < cfg->nfrontends; f++) {
		const struct rw_frontend *fe = &cfg->frontends[f];
		w_str(w, f ? ",{\"name\":" : "{\"name\":");
		w_json_quoted(w, fe->name);
		w_str(w, ",\"listen\":[");
		for (uint32_t i = 0; i < fe->nlistens; i++) {
			if (i)
				w_str(w, ",");
			w_json_quoted(w, fe->listens[i].text);
		}
		w_str(w, "],\"routes\":");
		w_u64(w, fe->nroutes);
		w_str(w, "}");
	}
	w_str(w, "],\"xdp\":");
	w_str(w, ctl->xdp ? "true" : "false");
	w_str(w, "}\n");
}

/* ---- /config ---------------------------------------------------------------------------------- */

/* Keys whose values are secrets: shown as "<redacted>" (every item, for a list). */
static const char *const secret_keys[] = {
	"token", "password", "password_hash", "api_keys", "secret", "client_secret", NULL,
};

static bool is_secret_key(const char *key)
{
	for (const char *const *k = secret_keys; *k; k++)
		if (!strcmp(*k, key))
			return true;
	return false;
}

/* A plain scalar that reads as a JSON number, true, false or null is written as one. */
static bool plain_json_value(const yaml_node_t *n)
{
	const char *s = (const char *)n->data.scalar.value;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	if (!strcmp(s, "true") || !strcmp(s, "false") || !strcmp(s, "null"))
		return true;
	const char *p = s + (*s == '-');
	if (!*p || (p[0] == '0' && p[1]))
		return false;
	return strspn(p, "0123456789") == strlen(p) && strlen(p) <= 15;
}

#define CONFIG_MAX_DEPTH 64

static void yaml_to_json(struct writer *w, yaml_document_t *doc, yaml_node_t *n, bool secret,
			 unsigned depth)
{
	if (!n || depth > CONFIG_MAX_DEPTH) {
		w_str(w, "null");
		return;
	}
	switch (n->type) {
	case YAML_SCALAR_NODE:
		if (secret)
			w_str(w, "\"<redacted>\"");
		else if (!strcmp((const char *)n->data.scalar.value, "~") || !n->data.scalar.length)
			w_str(w, n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? "null" : "\"\"");
		else if (plain_json_value(n))
			w_str(w, (const char *)n->data.scalar.value);
		else
			w_json_quoted(w, (const char *)n->data.scalar.value);
		return;
	case YAML_SEQUENCE_NODE:
		w_str(w, "[");
		for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
			if (i != n->data.sequence.items.start)
				w_str(w, ",");
			yaml_to_json(w, doc, yaml_document_get_node(doc, *i), secret, depth + 1);
		}
		w_str(w, "]");
		return;
	case YAML_MAPPING_NODE:
		w_str(w, "{");
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			const char *key = k && k->type == YAML_SCALAR_NODE ? (const char *)k->data.scalar.value : "?";
			if (p != n->data.mapping.pairs.start)
				w_str(w, ",");
			w_json_quoted(w, key);
			w_str(w, ":");
			yaml_to_json(w, doc, yaml_document_get_node(doc, p->value), secret || is_secret_key(key),
				     depth + 1);
		}
		w_str(w, "}");
		return;
	default:
		w_str(w, "null");
	}
}

static void config_body(struct writer *w, struct control *ctl)
{
	const struct rw_config *cfg = ctl->cfg;
	w_str(w, "{\"file\":");
	w_json_quoted(w, cfg->path);
	w_str(w, ",\"generation\":");
	w_u64(w, cfg->generation);
	w_str(w, ",\"loaded_at\":");
	w_double(w, ctl->last_reload_time);
	w_str(w, ",\"redacted_keys\":[");
	for (const char *const *k = secret_keys; *k; k++) {
		if (k != secret_keys)
			w_str(w, ",");
		w_json_quoted(w, *k);
	}
	w_str(w, "],\"config\":");
	/* the text the running snapshot was read from (it parsed then, it parses now) */
	yaml_parser_t parser;
	yaml_document_t doc;
	bool loaded = false;
	if (yaml_parser_initialize(&parser)) {
		yaml_parser_set_input_string(&parser, (const unsigned char *)cfg->source, cfg->source_len);
		loaded = yaml_parser_load(&parser, &doc);
		yaml_parser_delete(&parser);
	}
	if (!loaded) {
		w_str(w, "null}\n");
		return;
	}
	yaml_to_json(w, &doc, yaml_document_get_root_node(&doc), false, 0);
	yaml_document_delete(&doc);
	w_str(w, "}\n");
}

/* ---- /reload ---------------------------------------------------------------------------------- */

static void reload(struct admin_client *c, bool head_only)
{
	struct control *ctl = c->ctl;
	struct config_errors errs = { 0 };
	log_info("admin: POST /reload");
	uint64_t before = ctl->cfg->generation;
	if (control_reload(ctl, &errs)) {
		answer_error(c, 400, "reload_refused",
			     "the new configuration was refused; the running one stays", &errs, NULL,
			     head_only);
		config_errors_free(&errs);
		return;
	}
	char body[256];
	struct writer w = writer_init(body, sizeof body);
	w_str(&w, "{\"status\":\"ok\",\"generation\":");
	w_u64(&w, ctl->cfg->generation);
	w_str(&w, ",\"previous_generation\":");
	w_u64(&w, before);
	w_str(&w, "}\n");
	answer(c, 200, "application/json", body, writer_len(&w), NULL, head_only);
}

/* ---- requests --------------------------------------------------------------------------------- */

/* Constant time in the token's length: no early exit on the first differing byte. */
static bool token_matches(struct slice got, const char *want)
{
	size_t n = strlen(want);
	unsigned char diff = got.len != n;
	for (size_t i = 0; i < n; i++)
		diff |= (unsigned char)(want[i] ^ (i < got.len ? got.p[i] : 0));
	return diff == 0;
}

static bool authorized(const struct control *ctl, const struct http_request *req)
{
	const char *token = ctl->cfg->admin.token;
	if (!token)
		return true;
	for (unsigned i = 0; i < req->nheaders; i++) {
		const struct http_header *h = &req->headers[i];
		if (!slice_ieq(h->name, "authorization", 13))
			continue;
		if (h->value.len < 7 || !slice_ieq(slice_make(h->value.p, 7), "bearer ", 7))
			return false;
		struct slice t = slice_make(h->value.p + 7, h->value.len - 7);
		while (t.len && t.p[0] == ' ') {
			t.p++;
			t.len--;
		}
		return token_matches(t, token);
	}
	return false;
}

struct endpoint {
	const char *path;
	uint8_t method;     /* enum http_method: GET also answers HEAD */
	bool open;          /* answered without the bearer token (a public key is public) */
};

static const struct endpoint endpoints[] = {
	{ "/metrics", HTTP_M_GET, false },   { "/status", HTTP_M_GET, false },
	{ "/config", HTTP_M_GET, false },    { "/upstreams", HTTP_M_GET, false },
	{ "/reload", HTTP_M_POST, false },   { "/.well-known/jwks.json", HTTP_M_GET, true },
	{ NULL, 0, false },
};

static void dispatch(struct admin_client *c, const struct http_request *req)
{
	struct control *ctl = c->ctl;
	bool head_only = req->method_id == HTTP_M_HEAD;
	const struct endpoint *e = endpoints;
	while (e->path && !slice_eq(req->path, e->path, strlen(e->path)))
		e++;
	if (!e->path) {
		answer_error(c, 404, "no_route", "no such admin endpoint (GET /metrics, /status, /config, "
			     "/upstreams, /.well-known/jwks.json; POST /reload)", NULL, NULL, head_only);
		return;
	}
	bool method_ok = req->method_id == e->method || (e->method == HTTP_M_GET && head_only);
	if (!method_ok) {
		answer_error(c, 405, "method_not_allowed", "method not allowed on this endpoint", NULL,
			     e->method == HTTP_M_GET ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n",
			     head_only);
		return;
	}
	if (!e->open && !authorized(ctl, req)) {
		log_warn("admin: %.*s %.*s refused: missing or wrong bearer token", (int)req->method.len,
			 req->method.p, (int)req->path.len, req->path.p);
		answer_error(c, 401, "unauthorized", "a valid bearer token is required", NULL,
			     "WWW-Authenticate: Bearer realm=\"ringway-admin\"\r\n", head_only);
		return;
	}
	size_t len = 0;
	if (!strcmp(e->path, "/metrics")) {
		struct metrics_process p = {
			.start_time = ctl->start_time,
			.generation = ctl->cfg->generation,
			.reloads_ok = ctl->reloads_ok,
			.reloads_failed = ctl->reloads_failed,
			.last_reload_time = ctl->last_reload_time,
			.xdp_metrics_fd = xdp_plane_metrics_fd(ctl->xdp),
		};
		char *text = metrics_render(ctl->ws->metrics, ctl->cfg, &p, &len);
		answer_malloced(c, "text/plain; version=0.0.4; charset=utf-8", text, len, head_only);
	} else if (!strcmp(e->path, "/status")) {
		answer_body(c, "application/json", status_body, head_only);
	} else if (!strcmp(e->path, "/config")) {
		answer_body(c, "application/json", config_body, head_only);
	} else if (!strcmp(e->path, "/.well-known/jwks.json")) {
		const struct rw_identity_token *it = &ctl->cfg->identity;
		if (it->enabled)
			answer(c, 200, "application/json", it->jwks, it->jwks_len, NULL, head_only);
		else
			answer_error(c, 404, "no_identity_token", "no identity_token is configured", NULL,
				     NULL, head_only);
	} else if (!strcmp(e->path, "/upstreams")) {
		char *json = metrics_upstreams_json(ctl->ws->metrics, ctl->cfg, &len);
		answer_malloced(c, "application/json", json, len, head_only);
	} else {
		reload(c, head_only);
	}
}

/* Answers every complete request queued, one after another. */
static void process(struct admin_client *c)
{
	struct loop *l = &c->ctl->loop;
	static struct http_request req;
	const struct http_head_limits lim = { ADMIN_MAX_HEAD, ADMIN_MAX_HEAD / 2 };
	while (!c->s.closing && !c->close_after && c->s.in.bytes) {
		struct seg *g = c->s.in.head;
		int r = http1_parse_request(seg_ptr(&l->bufs, g), g->len, &lim, &req);
		if (r == 0) {
			bool more = g->next != NULL;
			if (!segq_coalesce_front(&l->bufs, &c->s.in)) {
				client_close_now(c);
				return;
			}
			if (more)
				continue;
			if (!timer_armed(&c->s.tm))
				timer_arm(&l->wheel, &c->s.tm, ADMIN_HEADER_MS, client_timer_fired);
			return;
		}
		if (r < 0) {
			c->close_after = true;
			answer_error(c, reason_status((enum rw_reason)-r), reason_name((enum rw_reason)-r),
				     reason_message((enum rw_reason)-r), NULL, NULL, false);
			segq_clear(&l->bufs, &c->s.in);
			return;
		}
		if (!req.keep_alive)
			c->close_after = true;
		if (req.content_length > 0 || req.chunked) { /* no endpoint takes a body */
			c->close_after = true;
			answer_error(c, 413, "body_too_large", "admin requests take no body", NULL, NULL,
				     false);
			segq_clear(&l->bufs, &c->s.in);
			return;
		}
		dispatch(c, &req);
		if (c->s.closing)
			return;
		segq_consume(&l->bufs, &c->s.in, (uint64_t)r);
		timer_arm(&l->wheel, &c->s.tm, ADMIN_IDLE_MS, client_timer_fired);
	}
	if (c->close_after)
		segq_clear(&l->bufs, &c->s.in);
}

/* ---- connections ------------------------------------------------------------------------------ */

static void client_timer_fired(struct timer *t)
{
	struct admin_client *c = container_of(t, struct admin_client, s.tm);
	client_close_now(c);
}

static void admin_on_data(struct sock *s)
{
	struct admin_client *c = (struct admin_client *)s;
	if (c->close_after) { /* answered and closing: the rest is dropped */
		segq_clear(&c->ctl->loop.bufs, &s->in);
		return;
	}
	process(c);
}

static void admin_on_eof(struct sock *s, int err)
{
	struct admin_client *c = (struct admin_client *)s;
	if (err || s->out.bytes == 0)
		client_close_now(c);
	else
		c->close_after = true;
}

static void admin_on_sent(struct sock *s)
{
	struct admin_client *c = (struct admin_client *)s;
	if (s->out.bytes == 0 && (c->close_after || s->eof))
		client_close_now(c);
}

static void admin_on_send_error(struct sock *s, int err)
{
	client_close_now((struct admin_client *)s);
}

static void admin_on_free(struct sock *s)
{
	struct admin_client *c = (struct admin_client *)s;
	if (c->prev)
		c->prev->next = c->next;
	else
		c->ctl->admin_clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	nclients--;
	free(c);
}

static void admin_on_connected(struct sock *s, int res)
{
}

static void admin_on_splice(struct sock *s, bool is_in, int res)
{
}

static void admin_on_recv_stopped(struct sock *s)
{
}

static const struct sock_ops admin_sock_ops = {
	.on_data = admin_on_data,
	.on_eof = admin_on_eof,
	.on_sent = admin_on_sent,
	.on_send_error = admin_on_send_error,
	.on_connected = admin_on_connected,
	.on_splice = admin_on_splice,
	.on_recv_stopped = admin_on_recv_stopped,
	.on_free = admin_on_free,
};

static void admin_accepted(struct listener *li, int fd)
{
	struct admin *a = li->owner;
	struct control *ctl = a->ctl;
	struct admin_client *c = nclients < ADMIN_MAX_CLIENTS ? aligned_alloc(16, (sizeof *c + 15) & ~(size_t)15)
							       : NULL;
	if (!c) {
		log_warn("admin: %s: connection refused", nclients < ADMIN_MAX_CLIENTS ? "out of memory" :
			 "too many admin connections");
		close(fd);
		return;
	}
	memset(c, 0, sizeof *c);
	sock_init(&c->s, fd, BUF_GROUP_CLIENT, &admin_sock_ops, &transport_plain);
	c->s.connected = true;
	c->ctl = ctl;
	c->next = ctl->admin_clients;
	if (c->next)
		c->next->prev = c;
	ctl->admin_clients = c;
	nclients++;
	timer_arm(&ctl->loop.wheel, &c->s.tm, ADMIN_HEADER_MS, client_timer_fired);
	sock_arm_recv(&ctl->loop, &c->s);
}

static void admin_retired(struct listener *li)
{
	struct admin *a = li->owner;
	a->ctl->admins_retiring--;
	free(a);
}

struct admin *admin_start(struct control *ctl, const struct rw_admin *cfg, char *err, size_t errlen)
{
	const struct rw_sockaddr *a = &cfg->listen;
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	int one = 1;
	if (fd >= 0) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (a->addr.ss_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	}
	if (fd < 0 || bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0 ||
	    listen(fd, 64) < 0) {
		snprintf(err, errlen, "admin.listen %s: %s", a->text, strerror(errno));
		if (fd >= 0)
			close(fd);
		return NULL;
	}
	struct admin *ad = aligned_alloc(16, (sizeof *ad + 15) & ~(size_t)15);
	if (!ad) {
		snprintf(err, errlen, "admin: out of memory");
		close(fd);
		return NULL;
	}
	memset(ad, 0, sizeof *ad);
	ad->ctl = ctl;
	ad->li = (struct listener){ .fd = fd, .on_accept = admin_accepted, .on_retired = admin_retired,
				    .loop = &ctl->loop, .owner = ad };
	memcpy(&ad->addr, &a->addr, a->addrlen);
	ad->addrlen = a->addrlen;
	snprintf(ad->text, sizeof ad->text, "%s", a->text);
	listener_arm(&ctl->loop, &ad->li);
	return ad;
}

void admin_stop(struct admin *a)
{
	if (!a)
		return;
	a->ctl->admins_retiring++;
	listener_retire(&a->ctl->loop, &a->li);
}

bool admin_listens_on(const struct admin *a, const struct rw_sockaddr *addr)
{
	return a && rw_sockaddr_is(addr, &a->addr, a->addrlen);
}

void admin_close_clients(struct control *ctl)
{
	for (struct admin_client *c = ctl->admin_clients; c; c = c->next)
		client_close_now(c);
}
