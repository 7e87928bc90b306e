/* redis.c — one worker's Redis client (redis.h): the connection (a struct redis_conn: a socket
 * with redis_sock_ops, made anew after each failure, freed by the loop once closed), the calls in
 * flight (a FIFO matched to replies in order; a call that timed out or was cancelled keeps its
 * place until its reply comes and is dropped), the scripts loaded on each connection, the
 * deferred delivery of failures known at once (a timer, so a callback never runs inside
 * redis_eval), the backoff between connection attempts, the log lines and the counters.
 *
 * The states: DOWN (no socket; the reconnect timer is armed), CONNECTING (a connect in flight;
 * calls are queued on the socket and sent once it is up), UP. */
#include "redis.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wolfssl/options.h> /* first: the build's settings */
#include <wolfssl/wolfcrypt/hash.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "shard.h"
#include "sock.h"
#include "transport.h"

/* After metrics.h: hiredis defines REDIS_OK (0) as a macro, the same value as metrics.h's
 * enumerator of that name. */
#include <hiredis/hiredis.h>

#define REDIS_SCRIPTS_MAX 8u /* scripts loaded on every connection; more are loaded on NOSCRIPT */

enum redis_state { R_DOWN = 0, R_CONNECTING, R_UP };

struct redis_conn {
	struct sock s;          /* first */
	struct redis *r;        /* NULL once r let it go (it is closing) */
};

struct redis_call {
	struct redis_call *next;           /* in the FIFO, the failed list or the free list */
	struct redis *r;
	redis_reply_fn *fn;                /* NULL: cancelled, delivered, or an internal call */
	void *arg;
	const struct redis_script *script; /* an EVALSHA's script (retried once on NOSCRIPT) */
	const struct redis_script *load;   /* a SCRIPT LOAD of this script (internal) */
	char *cmd;                         /* the EVALSHA as sent (for the retry), hiredis's */
	size_t cmdlen;
	const char *why;                   /* on the failed list: why it failed */
	uint64_t sent_ms;                  /* when it was queued (wheel time) */
	struct timer tm;                   /* its deadline */
	bool queued;                       /* in the FIFO or on the failed list */
	bool retried;
};

struct redis {
	struct shard *sh;
	struct loop *loop;
	struct worker_stats *stats;        /* NULL: not counted */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[64];                     /* the address, for logs */
	uint32_t timeout_ms;
	uint8_t state;                     /* enum redis_state */
	bool was_up;                       /* a connection was up since the last "lost" line */
	bool down_logged;                  /* the failure to connect was logged */
	bool replied;                      /* the connection answered: the backoff starts again */
	uint32_t backoff_ms;               /* the wait before the next attempt */
	struct redis_conn *conn;
	redisReader *reader;
	struct redis_call *head, *tail;    /* awaiting replies, in the order sent */
	uint32_t npending;
	struct redis_call *failed;         /* failures to deliver from the loop */
	struct redis_call *free_calls;
	struct timer reconnect_tm;
	struct timer deliver_tm;
	const struct redis_script *scripts[REDIS_SCRIPTS_MAX];
	uint32_t nscripts;
	uint32_t loaded;                   /* bit i: scripts[i] was loaded on this connection */
	uint64_t load_error_logged_s;
};

static void count(struct redis *r, enum redis_result k)
{
	if (r->stats)
		stat_add(&r->stats->redis_calls[k], 1);
}

static void set_connected(struct redis *r, bool up)
{
	if (r->stats)
		stat_set(&r->stats->redis_connected, up);
}

void redis_script_init(struct redis_script *s, const char *text)
{
	unsigned char digest[20];
	s->text = text;
	memset(s->sha1, 0, sizeof s->sha1);
	if (wc_ShaHash((const unsigned char *)text, (unsigned)strlen(text), digest) != 0)
		return; /* an empty sha: every EVALSHA gets NOSCRIPT, then an error */
	for (int i = 0; i < 20; i++)
		snprintf(s->sha1 + 2 * i, 3, "%02x", digest[i]);
}

/* ---- calls ------------------------------------------------------------------------------------ */

static struct redis_call *call_new(struct redis *r)
{
	struct redis_call *c = r->free_calls;
	if (c)
		r->free_calls = c->next;
	else if (!(c = malloc(sizeof *c)))
		return NULL;
	memset(c, 0, sizeof *c);
	c->r = r;
	return c;
}

static void call_free(struct redis_call *c)
{
	struct redis *r = c->r;
	timer_cancel(&r->loop->wheel, &c->tm);
	if (c->cmd)
		redisFreeCommand(c->cmd);
	c->cmd = NULL;
	c->next = r->free_calls;
	r->free_calls = c;
}

static void deliver_failed(struct timer *tm);

/* c fails from the loop, soon. */
static void fail_later(struct redis *r, struct redis_call *c, const char *why)
{
	c->why = why;
	c->queued = true;
	c->next = r->failed;
	r->failed = c;
	if (!timer_armed(&r->deliver_tm))
		timer_arm(&r->loop->wheel, &r->deliver_tm, 0, deliver_failed);
}

/* Tells c's owner it failed (if it still wants to know), then frees it. */
static void fail_now(struct redis_call *c, const char *why)
{
	struct redis *r = c->r;
	redis_reply_fn *fn = c->fn;
	c->queued = false;
	c->fn = NULL;
	timer_cancel(&r->loop->wheel, &c->tm);
	if (fn) {
		count(r, !strcmp(why, REDIS_WHY_TIMEOUT) ? REDIS_TIMEOUT : REDIS_DISCONNECTED);
		fn(c->arg, NULL, why);
	}
	call_free(c);
}

static void deliver_failed(struct timer *tm)
{
	struct redis *r = container_of(tm, struct redis, deliver_tm);
	struct redis_call *c = r->failed;
	r->failed = NULL;
	/* in the order they were made */
	struct redis_call *rev = NULL;
	while (c) {
		struct redis_call *next = c->next;
		c->next = rev;
		rev = c;
		c = next;
	}
	while (rev) {
		struct redis_call *next = rev->next;
		fail_now(rev, rev->why);
		rev = next;
	}
}

/* Every call awaiting a reply fails with why (the connection is gone). */
static void fail_pending(struct redis *r, const char *why)
{
	struct redis_call *c = r->head;
	r->head = r->tail = NULL;
	r->npending = 0;
	while (c) {
		struct redis_call *next = c->next;
		fail_now(c, why);
		c = next;
	}
}

static void push(struct redis *r, struct redis_call *c)
{
	c->next = NULL;
	c->queued = true;
	if (r->tail)
		r->tail->next = c;
	else
		r->head = c;
	r->tail = c;
	r->npending++;
}

static struct redis_call *pop(struct redis *r)
{
	struct redis_call *c = r->head;
	if (!c)
		return NULL;
	r->head = c->next;
	if (!r->head)
		r->tail = NULL;
	r->npending--;
	c->next = NULL;
	c->queued = false;
	return c;
}

/* ---- the connection --------------------------------------------------------------------------- */

static void lost(struct redis *r, const char *what);
static void lose(struct redis *r, const char *what, bool now);

static void schedule_reconnect(struct redis *r);

/* Copies a formatted command onto the connection's out queue. False when out of memory (the
 * connection is then dropped: a partial command cannot be taken back; the pending calls fail
 * from the loop, as this may run inside redis_eval). */
static bool write_cmd(struct redis *r, const char *cmd, size_t len)
{
	if (sock_write_copy(r->loop, &r->conn->s, cmd, len))
		return true;
	lose(r, "out of memory for a command", false);
	return false;
}

/* Queues SCRIPT LOAD of scripts[i] (an internal call: its reply is only checked). */
static bool queue_load(struct redis *r, uint32_t i)
{
	struct redis_call *c = call_new(r);
	if (!c)
		return false;
	const char *argv[3] = { "SCRIPT", "LOAD", r->scripts[i]->text };
	size_t lens[3] = { 6, 4, strlen(r->scripts[i]->text) };
	char *cmd;
	int n = redisFormatCommandArgv(&cmd, 3, argv, lens);
	if (n < 0) {
		call_free(c);
		return false;
	}
	bool ok = write_cmd(r, cmd, (size_t)n);
	redisFreeCommand(cmd);
	if (!ok) {
		call_free(c);
		return false;
	}
	c->load = r->scripts[i];
	c->sent_ms = r->loop->wheel.now_ms;
	push(r, c);
	r->loaded |= 1u << i;
	return true;
}

/* The index of s among the scripts loaded on every connection (added if there is room), or -1. */
static int script_index(struct redis *r, const struct redis_script *s)
{
	for (uint32_t i = 0; i < r->nscripts; i++)
		if (r->scripts[i] == s)
			return (int)i;
	if (r->nscripts == REDIS_SCRIPTS_MAX)
		return -1;
	r->scripts[r->nscripts] = s;
	return (int)r->nscripts++;
}

static void redis_on_data(struct sock *s);

static void redis_on_eof(struct sock *s, int err)
{
	struct redis_conn *conn = (struct redis_conn *)s;
	if (conn->r)
		lost(conn->r, err ? strerror(err) : "closed by Redis");
}

static void redis_on_sent(struct sock *s)
{
}

static void redis_on_connected(struct sock *s, int res)
{
	struct redis_conn *conn = (struct redis_conn *)s;
	struct redis *r = conn->r;
	if (!r)
		return;
	if (res < 0) {
		lost(r, strerror(-res));
		return;
	}
	timer_cancel(&r->loop->wheel, &s->tm);
	s->connected = true;
	r->state = R_UP;
	r->down_logged = false;
	r->was_up = true;
	if (r->stats)
		stat_add(&r->stats->redis_connects, 1);
	set_connected(r, true);
	log_info("redis %s: connected", r->text);
	sock_arm_recv(r->loop, s);
	sock_flush(r->loop, s);
}

static void redis_on_splice(struct sock *s, bool is_in, int res)
{
}

static void redis_on_recv_stopped(struct sock *s)
{
}

static void redis_on_free(struct sock *s)
{
	free(s);
}

static const struct sock_ops redis_sock_ops = {
	.on_data = redis_on_data,
	.on_eof = redis_on_eof,
	.on_sent = redis_on_sent,
	.on_send_error = redis_on_eof,
	.on_connected = redis_on_connected,
	.on_splice = redis_on_splice,
	.on_recv_stopped = redis_on_recv_stopped,
	.on_free = redis_on_free,
};

static void connect_timed_out(struct timer *tm)
{
	struct redis_conn *conn = container_of(tm, struct redis_conn, s.tm);
	if (conn->r)
		lost(conn->r, "connect timed out");
}

/* A new connection: the socket, the connect through the ring, its deadline, and the known scripts
 * queued to load first. */
static void connect_now(struct redis *r)
{
	int fd = socket(r->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct redis_conn *conn = fd >= 0 ? malloc(sizeof *conn) : NULL;
	if (r->reader)
		redisReaderFree(r->reader);
	r->reader = conn ? redisReaderCreate() : NULL;
	if (!conn || !r->reader) {
		const char *why = fd < 0 ? strerror(errno) : "out of memory";
		if (fd >= 0)
			close(fd);
		free(conn);
		if (!r->down_logged) {
			log_warn("redis %s: cannot connect: %s: retrying", r->text, why);
			r->down_logged = true;
		}
		schedule_reconnect(r);
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	sock_init(&conn->s, fd, BUF_GROUP_UPSTREAM, &redis_sock_ops, &transport_plain);
	conn->r = r;
	r->conn = conn;
	r->state = R_CONNECTING;
	r->replied = false;
	r->loaded = 0;
	sock_connect(r->loop, &conn->s, (const struct sockaddr *)&r->addr, r->addrlen);
	timer_arm(&r->loop->wheel, &conn->s.tm, REDIS_CONNECT_TIMEOUT_MS, connect_timed_out);
	for (uint32_t i = 0; i < r->nscripts && r->conn == conn; i++)
		queue_load(r, i);
}

static void try_connect(struct timer *tm)
{
	connect_now(container_of(tm, struct redis, reconnect_tm));
}

static void schedule_reconnect(struct redis *r)
{
	r->state = R_DOWN;
	timer_arm(&r->loop->wheel, &r->reconnect_tm, r->backoff_ms, try_connect);
	r->backoff_ms = r->backoff_ms * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS
								  : r->backoff_ms * 2;
}

/* The connection failed or broke (what: why, for the log): it is closed, every pending call
 * fails (now, or from the loop), and the next attempt waits for the backoff. Logged once per
 * loss. */
static void lose(struct redis *r, const char *what, bool now)
{
	struct redis_conn *conn = r->conn;
	if (conn) {
		conn->r = NULL;
		r->conn = NULL;
		sock_close(r->loop, &conn->s);
	}
	if (r->was_up) {
		log_warn("redis %s: connection lost: %s: pending calls fail, reconnecting", r->text,
			 what);
		r->was_up = false;
		r->down_logged = true;
	} else if (!r->down_logged) {
		log_warn("redis %s: cannot connect: %s: retrying", r->text, what);
		r->down_logged = true;
	}
	set_connected(r, false);
	schedule_reconnect(r);
	if (now) {
		fail_pending(r, REDIS_WHY_DISCONNECTED);
		return;
	}
	struct redis_call *c = r->head;
	r->head = r->tail = NULL;
	r->npending = 0;
	while (c) {
		struct redis_call *next = c->next;
		fail_later(r, c, REDIS_WHY_DISCONNECTED);
		c = next;
	}
}

static void lost(struct redis *r, const char *what)
{
	lose(r, what, true);
}

/* One reply, for the call at the head of the FIFO. */
static void take_reply(struct redis *r, redisReply *reply)
{
	struct redis_call *c = pop(r);
	if (c->load) {
		if (reply->type == REDIS_REPLY_ERROR) {
			uint64_t now_s = r->loop->wheel.now_ms / 1000;
			if (r->load_error_logged_s != now_s) {
				r->load_error_logged_s = now_s;
				log_warn("redis %s: SCRIPT LOAD failed: %.*s", r->text, (int)reply->len,
					 reply->str);
			}
		}
		call_free(c);
		return;
	}
	if (reply->type == REDIS_REPLY_ERROR && c->script && !c->retried && c->fn &&
	    reply->len >= 8 && !memcmp(reply->str, "NOSCRIPT", 8)) {
		/* the script is gone (a restart, SCRIPT FLUSH, a failover): loaded again, retried */
		int i = script_index(r, c->script);
		c->retried = true;
		if (i < 0 || !queue_load(r, (uint32_t)i) || !write_cmd(r, c->cmd, c->cmdlen)) {
			if (r->conn) /* only a load that could not be queued: fail it now */
				fail_now(c, REDIS_WHY_NOMEM);
			else
				fail_now(c, REDIS_WHY_DISCONNECTED);
			return;
		}
		push(r, c);
		sock_flush(r->loop, &r->conn->s);
		return;
	}
	timer_cancel(&r->loop->wheel, &c->tm);
	redis_reply_fn *fn = c->fn;
	c->fn = NULL;
	if (fn) {
		count(r, reply->type == REDIS_REPLY_ERROR ? REDIS_ERROR_REPLY : REDIS_OK);
		fn(c->arg, reply, NULL);
	}
	call_free(c);
}

static void redis_on_data(struct sock *s)
{
	struct redis_conn *conn = (struct redis_conn *)s;
	struct redis *r = conn->r;
	if (!r)
		return;
	struct bufs *b = &r->loop->bufs;
	while (s->in.head) {
		struct seg *g = s->in.head;
		if (redisReaderFeed(r->reader, seg_ptr(b, g), g->len) != REDIS_OK) {
			lost(r, "out of memory for a reply");
			return;
		}
		segq_consume(b, &s->in, g->len);
	}
	for (;;) {
		void *reply = NULL;
		if (redisReaderGetReply(r->reader, &reply) != REDIS_OK) {
			char what[160];
			snprintf(what, sizeof what, "unreadable reply: %s", r->reader->errstr);
			lost(r, what);
			return;
		}
		if (!reply)
			return;
		if (!r->head) {
			freeReplyObject(reply);
			lost(r, "a reply to no call");
			return;
		}
		if (!r->replied) { /* it answers: the next loss starts the backoff from the start */
			r->replied = true;
			r->backoff_ms = REDIS_BACKOFF_FIRST_MS;
		}
		take_reply(r, reply);
		freeReplyObject(reply);
		if (r->conn != conn) /* lost while the reply was handled */
			return;
	}
}

/* A call's deadline passed: its owner is told (the reply is dropped when it comes). When the
 * oldest call has waited for too long, Redis hangs: the connection is dropped. */
static void call_timed_out(struct timer *tm)
{
	struct redis_call *c = container_of(tm, struct redis_call, tm);
	struct redis *r = c->r;
	redis_reply_fn *fn = c->fn;
	c->fn = NULL;
	if (fn) {
		count(r, REDIS_TIMEOUT);
		fn(c->arg, NULL, REDIS_WHY_TIMEOUT);
	}
	uint64_t stall = r->timeout_ms * 10ull > REDIS_STALL_MS ? r->timeout_ms * 10ull
								  : REDIS_STALL_MS;
	if (r->conn && r->head && r->loop->wheel.now_ms - r->head->sent_ms >= stall) {
		char what[96];
		snprintf(what, sizeof what, "no reply in %llu ms", (unsigned long long)stall);
		lost(r, what);
	}
}

/* ---- the interface ---------------------------------------------------------------------------- */

struct redis *redis_new(struct shard *sh, const struct rw_sockaddr *addr, uint32_t timeout_ms)
{
	struct redis *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->sh = sh;
	r->loop = &sh->loop;
	r->stats = sh->stats;
	memcpy(&r->addr, &addr->addr, addr->addrlen);
	r->addrlen = addr->addrlen;
	snprintf(r->text, sizeof r->text, "%s", addr->text ? addr->text : "?");
	r->timeout_ms = timeout_ms ? timeout_ms : 1;
	r->backoff_ms = REDIS_BACKOFF_FIRST_MS;
	set_connected(r, false);
	connect_now(r); /* submitted with the loop's next turn */
	return r;
}

void redis_free(struct redis *r)
{
	if (!r)
		return;
	struct timer_wheel *w = &r->loop->wheel;
	timer_cancel(w, &r->reconnect_tm);
	timer_cancel(w, &r->deliver_tm);
	if (r->conn) {
		r->conn->r = NULL;
		sock_close(r->loop, &r->conn->s);
		r->conn = NULL;
	}
	r->state = R_DOWN;
	fail_pending(r, REDIS_WHY_DISCONNECTED);
	deliver_failed(&r->deliver_tm);
	timer_cancel(w, &r->deliver_tm); /* a callback may have failed another call */
	while (r->failed) {
		struct redis_call *c = r->failed;
		r->failed = c->next;
		fail_now(c, c->why);
	}
	set_connected(r, false);
	if (r->reader)
		redisReaderFree(r->reader);
	while (r->free_calls) {
		struct redis_call *c = r->free_calls;
		r->free_calls = c->next;
		free(c);
	}
	free(r);
}

struct redis_call *redis_eval(struct redis *r, const struct redis_script *s, int nkeys, int argc,
			      const char *const *argv, const size_t *argvlen,
			      redis_reply_fn *fn, void *arg)
{
	struct redis_call *c = call_new(r);
	if (!c)
		return NULL;
	c->fn = fn;
	c->arg = arg;
	c->script = s;
	if (r->state == R_DOWN) {
		fail_later(r, c, REDIS_WHY_DISCONNECTED);
		return c;
	}
	char nk[16];
	const char *av[argc + 3];
	size_t al[argc + 3];
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = s->sha1;
	al[1] = strlen(s->sha1);
	al[2] = (size_t)snprintf(nk, sizeof nk, "%d", nkeys);
	av[2] = nk;
	for (int i = 0; i < argc; i++) {
		av[3 + i] = argv[i];
		al[3 + i] = argvlen ? argvlen[i] : strlen(argv[i]);
	}
	int n = redisFormatCommandArgv(&c->cmd, argc + 3, av, al);
	if (n < 0) {
		c->cmd = NULL;
		fail_later(r, c, REDIS_WHY_NOMEM);
		return c;
	}
	c->cmdlen = (size_t)n;
	int i = script_index(r, s);
	if (i >= 0 && !(r->loaded & (1u << i)))
		queue_load(r, (uint32_t)i); /* not queued (out of memory): NOSCRIPT loads it */
	if (!r->conn || !write_cmd(r, c->cmd, c->cmdlen)) { /* dropped: everything pending failed */
		fail_later(r, c, r->conn ? REDIS_WHY_NOMEM : REDIS_WHY_DISCONNECTED);
		return c;
	}
	c->sent_ms = r->loop->wheel.now_ms;
	push(r, c);
	timer_arm(&r->loop->wheel, &c->tm, r->timeout_ms, call_timed_out);
	sock_flush(r->loop, &r->conn->s);
	return c;
}

void redis_call_cancel(struct redis_call *c)
{
	if (!c)
		return;
	c->fn = NULL;
	timer_cancel(&c->r->loop->wheel, &c->tm);
	if (!c->queued) /* else its place in the FIFO, or on the failed list, frees it */
		call_free(c);
}

bool redis_connected(const struct redis *r)
{
	return r && r->state == R_UP;
}

bool redis_accepting(const struct redis *r)
{
	return r && r->state != R_DOWN;
}

bool redis_is_at(const struct redis *r, const struct rw_sockaddr *a)
{
	return rw_sockaddr_is(a, &r->addr, r->addrlen);
}

void redis_set_timeout(struct redis *r, uint32_t timeout_ms)
{
	r->timeout_ms = timeout_ms ? timeout_ms : 1;
}

uint32_t redis_pending(const struct redis *r)
{
	return r->npending;
}
