/* test_redis.c — the worker's Redis client (redis.c) through a real io_uring against a fake RESP
 * server the test plays on 127.0.0.1 (commands parsed with hiredis's reader, replies scripted):
 * pipelined calls matched to replies in order, the script loaded before its first EVALSHA, a
 * NOSCRIPT answered by loading it again and retrying once, a call that times out told so and its
 * late reply dropped in order, a cancelled call never called back, failures never delivered from
 * inside redis_eval, a lost connection failing every pending call and made again after the
 * backoff, redis_free failing what is pending; and what each adds to the worker's counters. */
#include "ring_fixture.h"

#include <stdio.h>

#include "metrics.h"
#include "redis.h"
#include "shard.h"

#include <hiredis/hiredis.h> /* after metrics.h: it defines REDIS_OK as a macro */

static struct shard SH RING_ALIGNED;
static struct metrics *M;
static struct redis_script S = { 0 };
static const char SCRIPT[] = "return tonumber(ARGV[1])";

/* ---- the fake server ---------------------------------------------------------------------------- */

struct fake {
	int lfd;
	uint16_t port;
	int fd;                 /* the accepted connection, -1: none */
	redisReader *rd;
	int accepted;
	int loads, evals;       /* SCRIPT LOAD and EVALSHA commands seen */
	bool hold;              /* EVALSHA answers are held back */
	int noscript;           /* this many EVALSHA are answered NOSCRIPT */
	char held[64][32];      /* the replies held back, in order */
	int nheld;
};

static struct fake F;

static void fake_open(void)
{
	memset(&F, 0, sizeof F);
	F.lfd = fx_listen(&F.port, 8);
	F.fd = -1;
}

static void fake_send(const char *s)
{
	size_t len = strlen(s);
	cr_assert_eq(write(F.fd, s, len), (ssize_t)len);
}

/* Answers one command: SCRIPT LOAD with the script's sha, EVALSHA with its first argument as an
 * integer (or NOSCRIPT, or held back). */
static void fake_answer(redisReply *cmd)
{
	cr_assert_eq(cmd->type, REDIS_REPLY_ARRAY);
	const char *verb = cmd->element[0]->str;
	if (!strcasecmp(verb, "SCRIPT")) {
		F.loads++;
		cr_assert_str_eq(cmd->element[2]->str, SCRIPT);
		char out[64];
		snprintf(out, sizeof out, "$40\r\n%s\r\n", S.sha1);
		fake_send(out);
		return;
	}
	cr_assert_str_eq(verb, "EVALSHA");
	cr_assert_str_eq(cmd->element[1]->str, S.sha1);
	F.evals++;
	if (F.noscript > 0) {
		F.noscript--;
		fake_send("-NOSCRIPT No matching script. Please use EVAL.\r\n");
		return;
	}
	char out[32];
	snprintf(out, sizeof out, ":%s\r\n", cmd->element[4]->str); /* after the key */
	if (F.hold) {
		cr_assert_lt(F.nheld, 64);
		strcpy(F.held[F.nheld++], out);
		return;
	}
	fake_send(out);
}

/* The server's side of one turn: accept, read and answer what came. */
static void fake_step(void)
{
	int fd = accept4(F.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		if (F.fd >= 0)
			close(F.fd);
		if (F.rd)
			redisReaderFree(F.rd);
		F.fd = fd;
		F.rd = redisReaderCreate();
		F.accepted++;
	}
	if (F.fd < 0)
		return;
	char buf[4096];
	ssize_t n;
	while ((n = read(F.fd, buf, sizeof buf)) > 0)
		cr_assert_eq(redisReaderFeed(F.rd, buf, (size_t)n), REDIS_OK);
	void *cmd;
	while (redisReaderGetReply(F.rd, &cmd) == REDIS_OK && cmd) {
		fake_answer(cmd);
		freeReplyObject(cmd);
	}
}

static void fake_release_held(void)
{
	for (int i = 0; i < F.nheld; i++)
		fake_send(F.held[i]);
	F.nheld = 0;
	F.hold = false;
}

static void fake_drop(void)
{
	close(F.fd);
	F.fd = -1;
}

static void fake_close(void)
{
	if (F.fd >= 0)
		close(F.fd);
	close(F.lfd);
	if (F.rd)
		redisReaderFree(F.rd);
}

/* ---- the client's side ------------------------------------------------------------------------- */

struct got {
	int calls;
	long long value;      /* the integer reply */
	const char *why;      /* NULL: a reply */
	int order;            /* when it was called back, among all */
	bool inside_eval;
};

static int next_order;
static bool in_eval;

static void on_reply(void *arg, const struct redisReply *reply, const char *why)
{
	struct got *g = arg;
	g->calls++;
	g->why = why;
	g->order = next_order++;
	g->inside_eval = in_eval;
	if (reply) {
		cr_assert_eq(reply->type, REDIS_REPLY_INTEGER, "reply type %d", reply->type);
		g->value = reply->integer;
	}
}

static struct redis_call *eval(struct redis *r, long long v, struct got *g)
{
	char arg[24];
	snprintf(arg, sizeof arg, "%lld", v);
	const char *argv[2] = { "ringway:test:{k}", arg };
	in_eval = true;
	struct redis_call *c = redis_eval(r, &S, 1, 2, argv, NULL, on_reply, g);
	in_eval = false;
	cr_assert_not_null(c);
	return c;
}

static struct rw_sockaddr addr_of(uint16_t port, char *text)
{
	struct rw_sockaddr a = { 0 };
	struct sockaddr_in *in = (struct sockaddr_in *)&a.addr;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.addrlen = sizeof *in;
	sprintf(text, "127.0.0.1:%u", port);
	a.text = text;
	return a;
}

static struct redis *open_client(uint32_t timeout_ms)
{
	char text[32];
	struct rw_sockaddr a = addr_of(F.port, text);
	struct redis *r = redis_new(&SH, &a, timeout_ms);
	cr_assert_not_null(r);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, redis_connected(r), fake_step()), "never connected");
	return r;
}

static uint64_t counter(_Atomic uint64_t *c)
{
	return atomic_load(c);
}

static void setup(void)
{
	memset(&SH, 0, sizeof SH);
	fx_loop_open(&SH.loop);
	M = metrics_new(1);
	cr_assert_not_null(M);
	SH.stats = metrics_worker(M, 0);
	redis_script_init(&S, SCRIPT);
	next_order = 0;
	fake_open();
}

static void teardown(void)
{
	fake_close();
	loop_destroy(&SH.loop);
	metrics_free(M);
}

TestSuite(redis, .init = setup, .fini = teardown);

Test(redis, script_sha1)
{
	struct redis_script s;
	redis_script_init(&s, "return 1");
	/* sha1("return 1"), as Redis computes it */
	cr_assert_str_eq(s.sha1, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

Test(redis, pipelined_calls_matched_in_order)
{
	struct redis *r = open_client(1000);
	struct got g[8] = { 0 };
	for (int i = 0; i < 8; i++)
		eval(r, 100 + i, &g[i]);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, g[7].calls, fake_step()));
	for (int i = 0; i < 8; i++) {
		cr_assert_eq(g[i].calls, 1);
		cr_assert_null(g[i].why);
		cr_assert_eq(g[i].value, 100 + i);
		cr_assert_eq(g[i].order, i);
		cr_assert(!g[i].inside_eval);
	}
	cr_assert_eq(F.loads, 1, "the script is loaded once, before its first EVALSHA");
	cr_assert_eq(F.evals, 8);
	cr_assert_eq(counter(&SH.stats->redis_calls[REDIS_OK]), 8);
	cr_assert_eq(counter(&SH.stats->redis_connects), 1);
	cr_assert_eq(counter(&SH.stats->redis_connected), 1);
	cr_assert_eq(redis_pending(r), 0);
	redis_free(r);
	cr_assert_eq(counter(&SH.stats->redis_connected), 0);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, noscript_loads_again_and_retries_once)
{
	struct redis *r = open_client(1000);
	struct got a = { 0 };
	F.noscript = 1;
	eval(r, 7, &a);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, a.calls, fake_step()));
	cr_assert_null(a.why);
	cr_assert_eq(a.value, 7);
	cr_assert_eq(F.loads, 2);
	cr_assert_eq(F.evals, 2);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

static void on_error_reply(void *arg, const struct redisReply *reply, const char *why)
{
	struct got *g = arg;
	g->calls++;
	g->why = why;
	cr_assert_not_null(reply);
	cr_assert_eq(reply->type, REDIS_REPLY_ERROR);
}

Test(redis, noscript_twice_is_an_error_reply)
{
	struct redis *r = open_client(1000);
	struct got g = { 0 };
	F.noscript = 2;
	const char *argv[2] = { "k", "1" };
	cr_assert_not_null(redis_eval(r, &S, 1, 2, argv, NULL, on_error_reply, &g));
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, g.calls, fake_step()));
	cr_assert_eq(g.calls, 1);
	cr_assert_eq(F.evals, 2, "retried once, not more");
	cr_assert_eq(counter(&SH.stats->redis_calls[REDIS_ERROR_REPLY]), 1);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, timeout_then_late_reply_dropped_in_order)
{
	struct redis *r = open_client(50);
	struct got a = { 0 }, b = { 0 };
	F.hold = true;
	eval(r, 1, &a);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, a.calls, fake_step()));
	cr_assert_str_eq(a.why, REDIS_WHY_TIMEOUT);
	cr_assert_eq(counter(&SH.stats->redis_calls[REDIS_TIMEOUT]), 1);
	cr_assert_eq(redis_pending(r), 1, "its place is kept until its reply comes");
	eval(r, 2, &b);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, F.nheld == 2, fake_step()));
	fake_release_held();
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, b.calls, fake_step()));
	cr_assert_null(b.why);
	cr_assert_eq(b.value, 2, "the late reply to the first call went to nobody");
	cr_assert_eq(a.calls, 1);
	cr_assert_eq(redis_pending(r), 0);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, cancelled_call_is_never_called_back)
{
	struct redis *r = open_client(1000);
	struct got a = { 0 }, b = { 0 };
	redis_call_cancel(eval(r, 1, &a));
	eval(r, 2, &b);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, b.calls, fake_step()));
	cr_assert_eq(b.value, 2);
	cr_assert_eq(a.calls, 0);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, failures_come_from_the_loop_and_the_connection_is_made_again)
{
	struct redis *r = open_client(1000);
	struct got a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };
	F.hold = true;
	eval(r, 1, &a);
	eval(r, 2, &b);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, F.nheld == 2, fake_step()));
	fake_drop();
	F.hold = false;
	F.nheld = 0;
	cr_assert(FX_RUN_UNTIL(&SH.loop, a.calls && b.calls));
	cr_assert_str_eq(a.why, REDIS_WHY_DISCONNECTED);
	cr_assert_str_eq(b.why, REDIS_WHY_DISCONNECTED);
	cr_assert(!redis_connected(r));
	cr_assert_eq(counter(&SH.stats->redis_connected), 0);
	/* while it is down, a call fails from the loop, never inside redis_eval */
	if (!redis_accepting(r)) {
		eval(r, 3, &c);
		cr_assert_eq(c.calls, 0);
		cr_assert(FX_RUN_UNTIL(&SH.loop, c.calls));
		cr_assert(!c.inside_eval);
		cr_assert_str_eq(c.why, REDIS_WHY_DISCONNECTED);
	}
	/* made again after the backoff, the script loaded again */
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, redis_connected(r) && F.accepted == 2, fake_step()));
	eval(r, 4, &d);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, d.calls, fake_step()));
	cr_assert_eq(d.value, 4);
	cr_assert_eq(F.loads, 2);
	cr_assert_eq(counter(&SH.stats->redis_connects), 2);
	cr_assert_geq(counter(&SH.stats->redis_calls[REDIS_DISCONNECTED]), 2);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, nothing_listens_calls_fail_from_the_loop)
{
	char text[32];
	struct rw_sockaddr a = addr_of(fx_free_port(), text);
	struct redis *r = redis_new(&SH, &a, 1000);
	struct got g = { 0 };
	cr_assert(FX_RUN_UNTIL(&SH.loop, !redis_accepting(r)), "a refused connect ends the attempt");
	eval(r, 1, &g);
	cr_assert_eq(g.calls, 0);
	cr_assert(FX_RUN_UNTIL(&SH.loop, g.calls));
	cr_assert_str_eq(g.why, REDIS_WHY_DISCONNECTED);
	cr_assert_eq(counter(&SH.stats->redis_connects), 0);
	redis_free(r);
	FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0);
}

Test(redis, free_fails_pending_calls)
{
	struct redis *r = open_client(1000);
	struct got a = { 0 };
	F.hold = true;
	eval(r, 1, &a);
	cr_assert(FX_RUN_UNTIL_DO(&SH.loop, F.nheld == 1, fake_step()));
	redis_free(r);
	cr_assert_eq(a.calls, 1);
	cr_assert_str_eq(a.why, REDIS_WHY_DISCONNECTED);
	cr_assert(FX_RUN_UNTIL(&SH.loop, SH.loop.nclosing == 0), "the socket is freed by the loop");
}
