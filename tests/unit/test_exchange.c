/* test_exchange.c — the exchange and its stages end to end in one process: one worker started with
 * workers_start on a configuration from config_load_string, two tiny HTTP/1.1 upstreams (threads
 * of the test on 127.0.0.1) that record what they receive, and the test as the client. A request is
 * proxied (path stripped, X-Forwarded-For added); the body-limit stage refuses Content-Length and
 * chunked bodies over max_body_bytes with 413 before the upstream sees them; 404 and 405 with
 * Allow; a new snapshot from workers_swap serves new requests while one that started before the
 * swap completes on the old one; a stage that waits for an async result (a timer here, a Redis reply
 * or a key fetch later) resumes the exchange with its head and body intact, or refuses it, and is
 * cancelled when the client goes away while it waits; every finished request shows in the metrics
 * of the workers (its route or frontend, reason, upstream and target). */
#include "ring_fixture.h"

#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "exchange.h"
#include "log.h"
#include "metrics.h"
#include "stage.h"
#include "worker.h"

#define SRV_MAX_REQS 32
#define SRV_MAX_CONNS 64

/* A tiny upstream: answers every request with its name as the body, and Connection: close. A
 * request whose path contains /hold waits until the test releases it. */
struct upsrv {
	const char *name;
	int lfd;
	uint16_t port;
	pthread_t th;
	atomic_bool stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool released;
	int naccepts, nreqs, nheld;
	char reqs[SRV_MAX_REQS][4096];
	pthread_t conns[SRV_MAX_CONNS];
	int nconns;
};

struct conn_arg {
	struct upsrv *s;
	int fd;
};

/* The head and body of one request on fd, into buf; its length, or -1. */
static int read_request(int fd, char *buf, size_t cap)
{
	size_t len = 0;
	char *end = NULL;
	while (!end) {
		if (len + 1 >= cap)
			return -1;
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
		buf[len] = 0;
		end = strstr(buf, "\r\n\r\n");
	}
	size_t want = (size_t)(end + 4 - buf);
	const char *cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl && cl < end)
		want += strtoul(cl + 17, NULL, 10);
	while (len < want && len + 1 < cap) {
		ssize_t r = read(fd, buf + len, cap - 1 - len);
		if (r <= 0)
			return -1;
		len += (size_t)r;
	}
	buf[len] = 0;
	return (int)len;
}

static void *srv_conn(void *arg)
{
	struct conn_arg *ca = arg;
	struct upsrv *s = ca->s;
	int fd = ca->fd;
	free(ca);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char buf[4096];
	int n = read_request(fd, buf, sizeof buf);
	if (n > 0) {
		bool hold = strstr(buf, "/hold") != NULL;
		pthread_mutex_lock(&s->mu);
		if (s->nreqs < SRV_MAX_REQS)
			memcpy(s->reqs[s->nreqs++], buf, (size_t)n + 1);
		if (hold) {
			s->nheld++;
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += 10;
			while (!s->released && !atomic_load(&s->stop))
				if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT)
					break;
		}
		pthread_mutex_unlock(&s->mu);
		char resp[256];
		int k = snprintf(resp, sizeof resp,
				 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
				 strlen(s->name), s->name);
		ssize_t w = write(fd, resp, (size_t)k);
		(void)w;
	}
	close(fd);
	return NULL;
}

static void *srv_main(void *arg)
{
	struct upsrv *s = arg;
	while (!atomic_load(&s->stop)) {
		struct pollfd p = { .fd = s->lfd, .events = POLLIN };
		if (poll(&p, 1, 20) <= 0)
			continue;
		int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC); /* blocking */
		if (fd < 0)
			continue;
		struct conn_arg *ca = malloc(sizeof *ca);
		ca->s = s;
		ca->fd = fd;
		pthread_mutex_lock(&s->mu);
		s->naccepts++;
		bool room = s->nconns < SRV_MAX_CONNS &&
			    pthread_create(&s->conns[s->nconns], NULL, srv_conn, ca) == 0;
		if (room)
			s->nconns++;
		pthread_mutex_unlock(&s->mu);
		if (!room) {
			close(fd);
			free(ca);
		}
	}
	return NULL;
}

static void srv_start(struct upsrv *s, const char *name)
{
	memset(s, 0, sizeof *s);
	s->name = name;
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->lfd = fx_listen(&s->port, 64);
	cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_release(struct upsrv *s)
{
	pthread_mutex_lock(&s->mu);
	s->released = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void srv_stop(struct upsrv *s)
{
	atomic_store(&s->stop, true);
	srv_release(s);
	pthread_join(s->th, NULL);
	for (int i = 0; i < s->nconns; i++)
		pthread_join(s->conns[i], NULL);
	close(s->lfd);
}

static int srv_count(struct upsrv *s, int *field)
{
	pthread_mutex_lock(&s->mu);
	int n = *field;
	pthread_mutex_unlock(&s->mu);
	return n;
}

/* ---- the gateway ----------------------------------------------------------------------------- */

static struct upsrv A, B;
static struct worker_set WS;
static uint16_t GW_PORT;
static struct rw_config *CFG1, *CFG2;

static struct rw_config *load(const char *route_upstream, const char *max_body)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml,
		 "workers: 1\n"
		 "access_log: off\n"
		 "drain_timeout: 2s\n"
		 "limits:\n"
		 "  max_body_bytes: %s\n"
		 "  header_timeout: 5s\n"
		 "  client_timeout: 5s\n"
		 "upstreams:\n"
		 "  a: { targets: [\"127.0.0.1:%u\"], connect_timeout: 2s, response_timeout: 15s }\n"
		 "  b: { targets: [\"127.0.0.1:%u\"], connect_timeout: 2s, response_timeout: 15s }\n"
		 "frontends:\n"
		 "  - name: f\n"
		 "    listen: [\"127.0.0.1:%u\"]\n"
		 "    routes:\n"
		 "      - name: api\n"
		 "        match: { path_prefix: /api, methods: [GET, POST] }\n"
		 "        upstream: %s\n"
		 "        strip_prefix: /api\n",
		 max_body, A.port, B.port, GW_PORT, route_upstream);
	return fx_config(yaml);
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	srv_start(&A, "from-a");
	srv_start(&B, "from-b");
	GW_PORT = fx_free_port();
	CFG1 = load("a", "1KiB");
	CFG2 = load("b", "16");
	cr_assert_eq(workers_start(&WS, CFG1), 0);
}

static void teardown(void)
{
	workers_stop(&WS);
	srv_stop(&A);
	srv_stop(&B);
	config_unref(CFG1);
	config_unref(CFG2);
}

TestSuite(exchange, .init = setup, .fini = teardown, .timeout = 60);

/* A client connection to the gateway with the request sent (reads bounded by SO_RCVTIMEO). */
static int send_request(const char *req)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(GW_PORT),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "%s", strerror(errno));
	size_t len = strlen(req), off = 0;
	while (off < len) {
		ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (w <= 0)
			break; /* refused early: the answer tells */
		off += (size_t)w;
	}
	return fd;
}

struct resp {
	int status;
	char text[8192];
	const char *body;
};

/* Reads the whole answer (the requests ask Connection: close) and closes fd. */
static void read_response(int fd, struct resp *r)
{
	size_t len = 0;
	ssize_t n;
	while (len + 1 < sizeof r->text && (n = read(fd, r->text + len, sizeof r->text - 1 - len)) > 0)
		len += (size_t)n;
	r->text[len] = 0;
	close(fd);
	r->status = strncmp(r->text, "HTTP/1.1 ", 9) == 0 ? atoi(r->text + 9) : -1;
	char *end = strstr(r->text, "\r\n\r\n");
	r->body = end ? end + 4 : "";
}

static void http(const char *req, struct resp *r)
{
	read_response(send_request(req), r);
}

Test(exchange, get_is_proxied_with_the_path_stripped_and_x_forwarded_for)
{
	struct resp r;
	http("GET /api/users/7?q=1 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	cr_assert_str_eq(r.body, "from-a");
	cr_assert_eq(srv_count(&A, &A.nreqs), 1);
	const char *seen = A.reqs[0];
	cr_assert_eq(strncmp(seen, "GET /users/7?q=1 HTTP/1.1\r\n", 27), 0, "upstream saw: %s", seen);
	cr_assert_not_null(strstr(seen, "\r\nX-Forwarded-For: 127.0.0.1\r\n"), "upstream saw: %s", seen);
	cr_assert_eq(srv_count(&B, &B.nreqs), 0);
}

Test(exchange, content_length_over_the_limit_is_413_and_never_reaches_the_upstream)
{
	struct resp r;
	http("POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2000\r\n"
	     "Connection: close\r\n\r\n",
	     &r);
	cr_assert_eq(r.status, 413, "%s", r.text);
	cr_assert_not_null(strstr(r.body, "\"status\":413"), "%s", r.body);
	/* a request under the limit on a new connection goes through: the refusal was the limit */
	http("POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n"
	     "Connection: close\r\n\r\nhello",
	     &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	cr_assert_eq(srv_count(&A, &A.nreqs), 1, "the upstream saw the refused request");
	cr_assert_eq(srv_count(&A, &A.naccepts), 1);
	cr_assert_not_null(strstr(A.reqs[0], "\r\n\r\nhello"));
}

Test(exchange, chunked_body_over_the_limit_is_413)
{
	/* two chunks of 1 KiB: 2 KiB of data over a 1 KiB limit */
	static char req[4096];
	int k = snprintf(req, sizeof req,
			 "POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nTransfer-Encoding: chunked\r\n"
			 "Connection: close\r\n\r\n");
	for (int i = 0; i < 2; i++) {
		k += snprintf(req + k, sizeof req - (size_t)k, "400\r\n");
		memset(req + k, 'x', 1024);
		k += 1024;
		k += snprintf(req + k, sizeof req - (size_t)k, "\r\n");
	}
	snprintf(req + k, sizeof req - (size_t)k, "0\r\n\r\n");
	struct resp r;
	http(req, &r);
	cr_assert_eq(r.status, 413, "%s", r.text);
	cr_assert_not_null(strstr(r.body, "\"status\":413"), "%s", r.body);
}

Test(exchange, no_route_is_404)
{
	struct resp r;
	http("GET /nope HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_eq(r.status, 404, "%s", r.text);
	cr_assert_eq(srv_count(&A, &A.naccepts) + srv_count(&B, &B.naccepts), 0);
}

Test(exchange, wrong_method_is_405_with_allow)
{
	struct resp r;
	http("DELETE /api/users/7 HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_eq(r.status, 405, "%s", r.text);
	const char *allow = strcasestr(r.text, "\r\nAllow: ");
	cr_assert_not_null(allow, "%s", r.text);
	const char *eol = strstr(allow + 2, "\r\n");
	char line[128];
	snprintf(line, sizeof line, "%.*s", (int)(eol - allow), allow);
	cr_assert_not_null(strstr(line, "GET"), "%s", line);
	cr_assert_not_null(strstr(line, "POST"), "%s", line);
	cr_assert_null(strstr(line, "DELETE"), "%s", line);
	cr_assert_eq(srv_count(&A, &A.naccepts), 0);
}

Test(exchange, swap_serves_new_requests_on_the_new_snapshot_and_finishes_old_ones_on_theirs)
{
	/* a request on the first snapshot, held by its upstream */
	int held = send_request("GET /api/hold HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
	for (int i = 0; i < 5000 && srv_count(&A, &A.nheld) == 0; i++)
		usleep(1000);
	cr_assert_eq(srv_count(&A, &A.nheld), 1, "the held request never reached upstream a");
	char err[256];
	cr_assert_eq(workers_swap(&WS, CFG2, err, sizeof err), 0, "%s", err);
	/* every worker took it before workers_swap returned: the next request goes to b */
	struct resp r = { 0 };
	http("GET /api/ping HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	cr_assert_str_eq(r.body, "from-b", "the new snapshot's route was not used");
	cr_assert_not_null(strstr(B.reqs[srv_count(&B, &B.nreqs) - 1], "GET /ping HTTP/1.1\r\n"));
	/* and its limit: 16 bytes now */
	http("POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 100\r\n"
	     "Connection: close\r\n\r\n",
	     &r);
	cr_assert_eq(r.status, 413, "%s", r.text);
	/* the request that started before the swap completes, on its own snapshot's upstream */
	srv_release(&A);
	read_response(held, &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	cr_assert_str_eq(r.body, "from-a");
	/* and the old snapshot is gone once nothing uses it: new requests stay on b */
	http("GET /api/again HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_str_eq(r.body, "from-b");
}

/* ---- metrics ------------------------------------------------------------------------------------ */

/* The text has this whole line. */
static void assert_metric(const char *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void assert_metric(const char *text, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	line[0] = '\n';
	int n = vsnprintf(line + 1, sizeof line - 2, fmt, ap);
	va_end(ap);
	snprintf(line + 1 + n, sizeof line - 1 - (size_t)n, "\n");
	cr_assert_not_null(strstr(text, line), "no line \"%.*s\" in:\n%s", n, line + 1, text);
}

Test(exchange, finished_requests_are_counted_on_their_route_reason_upstream_and_target)
{
	struct resp ok, missing, large;
	http("GET /api/users HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &ok);
	cr_assert_eq(ok.status, 200, "%s", ok.text);
	static const char nope[] = "GET /nope HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
	http(nope, &missing);
	cr_assert_eq(missing.status, 404, "%s", missing.text);
	http("POST /api/upload HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 2000\r\n"
	     "Connection: close\r\n\r\n",
	     &large);
	cr_assert_eq(large.status, 413, "%s", large.text);
	/* each answer ended before its connection closed: its counters are in */
	const struct metrics_process p = { .generation = 1, .xdp_metrics_fd = -1 };
	size_t len;
	char *text = metrics_render(WS.metrics, CFG1, &p, &len);
	cr_assert_not_null(text);
	assert_metric(text, "ringway_requests_total{frontend=\"f\",route=\"api\",status_class=\"2xx\"} 1");
	assert_metric(text, "ringway_requests_total{frontend=\"f\",route=\"api\",status_class=\"4xx\"} 1");
	assert_metric(text, "ringway_requests_total{frontend=\"f\",route=\"\",status_class=\"4xx\"} 1");
	assert_metric(text, "ringway_request_duration_seconds_count{frontend=\"f\",route=\"api\"} 2");
	assert_metric(text, "ringway_request_bytes_total{frontend=\"f\",route=\"\"} %zu", strlen(nope));
	assert_metric(text, "ringway_response_bytes_total{frontend=\"f\",route=\"\"} %zu",
		      strlen(missing.text));
	assert_metric(text, "ringway_refusals_total{reason=\"no_route\"} 1");
	assert_metric(text, "ringway_refusals_total{reason=\"body_too_large\"} 1");
	assert_metric(text, "ringway_upstream_response_duration_seconds_count{upstream=\"a\"} 1");
	assert_metric(text, "ringway_upstream_response_duration_seconds_count{upstream=\"b\"} 0");
	assert_metric(text, "ringway_upstream_target_connects_total{upstream=\"a\",target=\"127.0.0.1:%u\"} 1",
		      A.port);
	assert_metric(text, "ringway_upstream_target_healthy{upstream=\"a\",target=\"127.0.0.1:%u\"} 1",
		      A.port);
	assert_metric(text, "ringway_upstream_target_connections{upstream=\"a\",target=\"127.0.0.1:%u\","
		      "state=\"active\"} 0", A.port);
	assert_metric(text, "ringway_worker_accepted_connections_total{worker=\"0\"} 3");
	free(text);
}

/* ---- an async stage ---------------------------------------------------------------------------- */

/* Waits st->arg milliseconds on the worker's timer wheel, then resumes the exchange or refuses it.
 * Runs on the worker's thread; the test reads the counters. */
static struct {
	atomic_int runs, resumed, refused, cancelled, held_ring;
	atomic_bool refuse;
	struct timer tm;      /* worker thread only */
	struct exchange *x;   /* worker thread only: the exchange left waiting */
	struct shard *sh;
} WAIT;

static void wait_over(struct timer *t)
{
	struct exchange *x = WAIT.x;
	WAIT.x = NULL;
	/* while it waited the exchange held no ring buffer: its head moved to the heap */
	if (x->head_buf < x->sh->loop.bufs.ring_n)
		atomic_fetch_add(&WAIT.held_ring, 1);
	if (atomic_load(&WAIT.refuse)) {
		atomic_fetch_add(&WAIT.refused, 1);
		exchange_refuse(x, RW_UPSTREAM_UNAVAILABLE, NULL, false);
	} else {
		atomic_fetch_add(&WAIT.resumed, 1);
		exchange_resume(x);
	}
}

static enum stage_result wait_stage(struct exchange *x, const struct stage *st)
{
	cr_assert_null(WAIT.x, "one request waits at a time in this test");
	atomic_fetch_add(&WAIT.runs, 1);
	WAIT.x = x;
	WAIT.sh = x->sh;
	timer_arm(&x->sh->loop.wheel, &WAIT.tm, (uint32_t)st->arg, wait_over);
	return STAGE_WAIT;
}

static void wait_cancel(struct exchange *x, const struct stage *st)
{
	cr_assert_eq(x, WAIT.x);
	timer_cancel(&WAIT.sh->loop.wheel, &WAIT.tm);
	WAIT.x = NULL;
	atomic_fetch_add(&WAIT.cancelled, 1);
}

/* CFG1's route with the waiting stage before its own (the body limit), swapped in. */
static struct rw_config *swap_in_waiting_stage(uint32_t ms)
{
	struct rw_config *cfg = load("a", "1KiB");
	struct rw_route *rt = &cfg->frontends[0].routes[0];
	struct stage *v = calloc(rt->nstages + 1, sizeof *v);
	cr_assert_not_null(v);
	v[0] = (struct stage){ .name = "wait", .run = wait_stage, .cancel = wait_cancel, .arg = ms };
	memcpy(v + 1, rt->stages, rt->nstages * sizeof *v);
	free(rt->stages);
	rt->stages = v;
	rt->nstages++;
	char err[256];
	cr_assert_eq(workers_swap(&WS, cfg, err, sizeof err), 0, "%s", err);
	struct resp r;
	http("GET /api/warm HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_gt(atomic_load(&WAIT.runs), 0, "the waiting stage did not run on the next request");
	return cfg;
}

Test(exchange, a_waiting_stage_resumes_with_the_head_and_body_it_was_given)
{
	struct rw_config *cfg = swap_in_waiting_stage(100);
	int before = atomic_load(&WAIT.resumed), seen = srv_count(&A, &A.nreqs);
	struct resp r;
	http("POST /api/orders?x=1 HTTP/1.1\r\nHost: gw.test\r\nX-Trace: t-42\r\nContent-Length: 5\r\n"
	     "Connection: close\r\n\r\nhello",
	     &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	cr_assert_str_eq(r.body, "from-a");
	cr_assert_eq(atomic_load(&WAIT.resumed), before + 1);
	cr_assert_eq(srv_count(&A, &A.nreqs), seen + 1);
	const char *up = A.reqs[seen];
	cr_assert_eq(strncmp(up, "POST /orders?x=1 HTTP/1.1\r\n", 27), 0, "upstream saw: %s", up);
	cr_assert_not_null(strstr(up, "\r\nX-Trace: t-42\r\n"), "upstream saw: %s", up);
	cr_assert_not_null(strstr(up, "\r\nHost: gw.test\r\n"), "upstream saw: %s", up);
	cr_assert_not_null(strstr(up, "\r\n\r\nhello"), "upstream saw: %s", up);
	cr_assert_eq(atomic_load(&WAIT.held_ring), 0, "a waiting exchange held a ring buffer");
	config_unref(cfg);
}

Test(exchange, a_waiting_stage_can_refuse_with_its_result)
{
	struct rw_config *cfg = swap_in_waiting_stage(50);
	int seen = srv_count(&A, &A.nreqs);
	atomic_store(&WAIT.refuse, true);
	struct resp r;
	http("GET /api/secret HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	atomic_store(&WAIT.refuse, false);
	cr_assert_eq(r.status, 503, "%s", r.text);
	cr_assert_not_null(strstr(r.body, "\"reason\":\"upstream_unavailable\""), "%s", r.body);
	cr_assert_eq(atomic_load(&WAIT.refused), 1);
	cr_assert_eq(srv_count(&A, &A.nreqs), seen, "a refused request reached the upstream");
	config_unref(cfg);
}

Test(exchange, a_client_gone_while_a_stage_waits_cancels_the_stage)
{
	struct rw_config *cfg = swap_in_waiting_stage(300);
	int seen = srv_count(&A, &A.nreqs), resumed = atomic_load(&WAIT.resumed);
	int runs = atomic_load(&WAIT.runs);
	int fd = send_request("GET /api/slow HTTP/1.1\r\nHost: gw.test\r\n\r\n");
	for (int i = 0; i < 5000 && atomic_load(&WAIT.runs) == runs; i++)
		usleep(1000);
	cr_assert_eq(atomic_load(&WAIT.runs), runs + 1, "the request never reached the stage");
	/* a reset, not a FIN: a half-closed client still gets its answer */
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	close(fd);
	for (int i = 0; i < 5000 && atomic_load(&WAIT.cancelled) == 0; i++)
		usleep(1000);
	cr_assert_eq(atomic_load(&WAIT.cancelled), 1, "the stage was not told the exchange ended");
	usleep(400 * 1000); /* past the stage's wait: nothing may resume the freed exchange */
	cr_assert_eq(atomic_load(&WAIT.resumed), resumed);
	cr_assert_eq(srv_count(&A, &A.nreqs), seen);
	/* and the worker goes on serving */
	struct resp r;
	http("GET /api/after HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n", &r);
	cr_assert_eq(r.status, 200, "%s", r.text);
	config_unref(cfg);
}
