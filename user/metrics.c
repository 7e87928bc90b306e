/* metrics.c — the counters' registry (stats objects found by name, one cache-line-aligned slot per
 * worker, never freed before the registry), what a finished request adds to them, and the scrape:
 * the slots of the running snapshot's label sets added up once, then formatted as the Prometheus
 * text exposition or the JSON of GET /upstreams into a buffer that grows until it fits. */
#include "metrics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "timer.h"
#include "writer.h"
#include "xdp.h"

/* Upper bounds of the duration buckets, and the same as `le` text; the last bucket is +Inf. */
static const uint64_t bucket_ns[METRICS_BUCKETS - 1] = {
	500000, 1000000, 2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000,
	500000000, 1000000000, 2500000000, 5000000000, 10000000000,
};
static const char *const bucket_le[METRICS_BUCKETS] = {
	"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
	"2.5", "5", "10", "+Inf",
};

/* The reasons that are an upstream's failure (ringway_upstream_errors_total). */
static const bool upstream_reason[RW_REASON_COUNT] = {
	[RW_UPSTREAM_CONNECT_FAILED] = true, [RW_UPSTREAM_RESET] = true,
	[RW_UPSTREAM_BAD_RESPONSE] = true,   [RW_UPSTREAM_UNAVAILABLE] = true,
	[RW_UPSTREAM_CONNECT_TIMEOUT] = true, [RW_UPSTREAM_TIMEOUT] = true,
};

static const char *const balance_names[] = {
	[BALANCE_ROUND_ROBIN] = "round_robin", [BALANCE_RANDOM] = "random",
	[BALANCE_LEAST_CONN] = "least_conn",
};

static const char *const buf_group_names[METRICS_BUF_GROUPS] = { "client", "upstream" };
static const char *const tls_result_names[METRICS_TLS_COUNTS] = { "full", "resumed", "failed" };

struct metrics {
	unsigned nworkers;
	struct worker_stats *workers;
	struct route_stats *routes;
	struct upstream_stats *upstreams;
	struct target_stats *targets;
	/* where what could not get a stats object of its own counts (out of memory); never rendered */
	struct route_stats *route_sink;
	struct upstream_stats *upstream_sink;
	struct target_stats *target_sink;
};

/* ---- counting (a worker, its own slots) -------------------------------------------------------- */

static void histogram_observe(struct histogram *h, uint64_t ns)
{
	unsigned b = 0;
	while (b < METRICS_BUCKETS - 1 && ns > bucket_ns[b])
		b++;
	stat_add(&h->counts[b], 1);
	stat_add(&h->sum_ns, ns);
}

void metrics_request(struct worker_stats *ws, struct route_stats *rs, struct upstream_stats *us,
		     const struct request_sample *s)
{
	if (s->reason != RW_OK && (unsigned)s->reason < RW_REASON_COUNT)
		stat_add(&ws->refusals[s->reason], 1);
	if (rs) {
		struct route_slot *r = &rs->slot[ws->id];
		unsigned cls = (unsigned)s->status / 100;
		if (cls >= 1 && cls <= 5)
			stat_add(&r->status_class[cls - 1], 1);
		stat_add(&r->bytes_in, s->bytes_in);
		stat_add(&r->bytes_out, s->bytes_out);
		if (s->duration_ns != METRICS_UNTIMED)
			histogram_observe(&r->duration, s->duration_ns);
	}
	if (us) {
		struct upstream_slot *u = &us->slot[ws->id];
		if (s->upstream_ns != METRICS_UNTIMED)
			histogram_observe(&u->response, s->upstream_ns);
		if ((unsigned)s->reason < RW_REASON_COUNT && upstream_reason[s->reason])
			stat_add(&u->errors[s->reason], 1);
	}
}

/* ---- the registry ------------------------------------------------------------------------------ */

/* A zeroed stats object of head bytes followed by n slots, cache-line aligned. */
static void *slots_alloc(size_t head, size_t slot, unsigned n)
{
	size_t size = (head + slot * n + METRICS_LINE - 1) / METRICS_LINE * METRICS_LINE;
	void *p = aligned_alloc(METRICS_LINE, size);
	if (p)
		memset(p, 0, size);
	return p;
}

#define STATS_ALLOC(type, n) slots_alloc(sizeof(type), sizeof(((type *)0)->slot[0]), (n))

struct metrics *metrics_new(unsigned nworkers)
{
	struct metrics *m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	m->nworkers = nworkers;
	m->workers = slots_alloc(0, sizeof *m->workers, nworkers);
	m->route_sink = STATS_ALLOC(struct route_stats, nworkers);
	m->upstream_sink = STATS_ALLOC(struct upstream_stats, nworkers);
	m->target_sink = STATS_ALLOC(struct target_stats, nworkers);
	if (!m->workers || !m->route_sink || !m->upstream_sink || !m->target_sink) {
		metrics_free(m);
		return NULL;
	}
	for (unsigned i = 0; i < nworkers; i++)
		m->workers[i].id = i;
	return m;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	for (struct route_stats *r = m->routes, *next; r; r = next) {
		next = r->next;
		free(r->frontend);
		free(r->route);
		free(r);
	}
	for (struct upstream_stats *u = m->upstreams, *next; u; u = next) {
		next = u->next;
		free(u->name);
		free(u);
	}
	for (struct target_stats *t = m->targets, *next; t; t = next) {
		next = t->next;
		free(t->addr.text);
		free(t);
	}
	free(m->route_sink);
	free(m->upstream_sink);
	free(m->target_sink);
	free(m->workers);
	free(m);
}

struct worker_stats *metrics_worker(struct metrics *m, unsigned worker_id)
{
	return &m->workers[worker_id];
}

static struct route_stats *route_stats_for(struct metrics *m, const char *frontend, const char *route)
{
	for (struct route_stats *r = m->routes; r; r = r->next)
		if (!strcmp(r->frontend, frontend) && !strcmp(r->route, route))
			return r;
	struct route_stats *r = STATS_ALLOC(struct route_stats, m->nworkers);
	if (!r)
		return NULL;
	r->frontend = strdup(frontend);
	r->route = strdup(route);
	if (!r->frontend || !r->route) {
		free(r->frontend);
		free(r->route);
		free(r);
		return NULL;
	}
	r->next = m->routes;
	m->routes = r;
	return r;
}

static struct upstream_stats *upstream_stats_for(struct metrics *m, const char *name)
{
	for (struct upstream_stats *u = m->upstreams; u; u = u->next)
		if (!strcmp(u->name, name))
			return u;
	struct upstream_stats *u = STATS_ALLOC(struct upstream_stats, m->nworkers);
	if (!u)
		return NULL;
	if (!(u->name = strdup(name))) {
		free(u);
		return NULL;
	}
	u->next = m->upstreams;
	m->upstreams = u;
	return u;
}

static struct target_stats *target_stats_for(struct metrics *m, const struct rw_sockaddr *a)
{
	for (struct target_stats *t = m->targets; t; t = t->next)
		if (rw_sockaddr_is(a, &t->addr.addr, t->addr.addrlen))
			return t;
	struct target_stats *t = STATS_ALLOC(struct target_stats, m->nworkers);
	if (!t)
		return NULL;
	t->addr = *a;
	t->addr.stats = NULL;
	if (!(t->addr.text = strdup(a->text))) {
		free(t);
		return NULL;
	}
	t->next = m->targets;
	m->targets = t;
	return t;
}

int metrics_bind(struct metrics *m, struct rw_config *cfg)
{
	int ret = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++) {
		struct rw_frontend *fe = &cfg->frontends[f];
		if (!(fe->stats = route_stats_for(m, fe->name, ""))) {
			fe->stats = m->route_sink;
			ret = -1;
		}
		for (uint32_t r = 0; r < fe->nroutes; r++) {
			struct rw_route *rt = &fe->routes[r];
			if (!(rt->stats = route_stats_for(m, fe->name, rt->name))) {
				rt->stats = m->route_sink;
				ret = -1;
			}
		}
	}
	for (uint32_t i = 0; i < cfg->nupstreams; i++) {
		struct rw_upstream *up = &cfg->upstreams[i];
		if (!(up->stats = upstream_stats_for(m, up->name))) {
			up->stats = m->upstream_sink;
			ret = -1;
		}
		for (uint32_t t = 0; t < up->ntargets; t++) {
			struct rw_sockaddr *a = &up->targets[t];
			if (!(a->stats = target_stats_for(m, a))) {
				a->stats = m->target_sink;
				ret = -1;
			}
		}
	}
	return ret;
}

/* ---- the scrape: every slot of the label sets of cfg, added up once ---------------------------- */

struct route_row {
	const char *frontend, *route;
	uint64_t status_class[5], bytes_in, bytes_out;
	uint64_t counts[METRICS_BUCKETS], sum_ns;
};

struct upstream_row {
	const struct rw_upstream *up;
	uint64_t counts[METRICS_BUCKETS], sum_ns;
	uint64_t errors[RW_REASON_COUNT];
};

struct target_row {
	const struct rw_upstream *up;
	const char *upstream, *address;
	uint64_t active, idle, connects, reused, connect_failures, connect_timeouts;
	uint64_t last_success_ms, last_failure_ms; /* the most recent across the workers */
};

struct worker_row {
	uint64_t clients_open, clients_accepted, cq_overflows;
	uint64_t recv_starved[METRICS_BUF_GROUPS];
	uint64_t tls[METRICS_TLS_COUNTS];
};

struct scrape {
	const struct metrics_process *p;
	struct route_row *routes;
	uint32_t nroutes;
	struct upstream_row *ups;
	uint32_t nups;
	struct target_row *targets;
	uint32_t ntargets;
	struct worker_row *workers;
	unsigned nworkers;
	uint64_t refusals[RW_REASON_COUNT];
	uint64_t auth[METRICS_AUTH_METHODS][2], auth_cache[METRICS_AUTH_METHODS][2];
	uint64_t redis_calls[REDIS_RESULTS], redis_connects, redis_connected;
	uint64_t rate_limit[RL_DECISIONS];
	bool has_xdp;
	struct rw_xdp_metrics xdp;
	uint64_t now_ms;
};

static uint64_t rd(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static void histogram_sum(struct histogram *h, uint64_t counts[METRICS_BUCKETS], uint64_t *sum_ns)
{
	for (unsigned b = 0; b < METRICS_BUCKETS; b++)
		counts[b] += rd(&h->counts[b]);
	*sum_ns += rd(&h->sum_ns);
}

/* A route's row; false when it has no stats object of its own (unbound, or out of memory). */
static bool route_row(const struct metrics *m, struct route_stats *rs, const char *frontend,
		      const char *route, struct route_row *row)
{
	if (!rs || rs == m->route_sink)
		return false;
	memset(row, 0, sizeof *row);
	row->frontend = frontend;
	row->route = route;
	for (unsigned w = 0; w < m->nworkers; w++) {
		struct route_slot *s = &rs->slot[w];
		for (unsigned c = 0; c < 5; c++)
			row->status_class[c] += rd(&s->status_class[c]);
		row->bytes_in += rd(&s->bytes_in);
		row->bytes_out += rd(&s->bytes_out);
		histogram_sum(&s->duration, row->counts, &row->sum_ns);
	}
	return true;
}

static void upstream_row(const struct metrics *m, const struct rw_upstream *up,
			 struct upstream_row *row)
{
	memset(row, 0, sizeof *row);
	row->up = up;
	for (unsigned w = 0; w < m->nworkers; w++) {
		struct upstream_slot *s = &up->stats->slot[w];
		histogram_sum(&s->response, row->counts, &row->sum_ns);
		for (unsigned r = 0; r < RW_REASON_COUNT; r++)
			row->errors[r] += rd(&s->errors[r]);
	}
}

static void target_row(const struct metrics *m, const struct rw_upstream *up,
		       const struct rw_sockaddr *a, struct target_row *row)
{
	memset(row, 0, sizeof *row);
	row->up = up;
	row->upstream = up->name;
	row->address = a->text;
	for (unsigned w = 0; w < m->nworkers; w++) {
		struct target_slot *s = &a->stats->slot[w];
		row->active += rd(&s->active);
		row->idle += rd(&s->idle);
		row->connects += rd(&s->connects);
		row->reused += rd(&s->reused);
		row->connect_failures += rd(&s->connect_failures);
		row->connect_timeouts += rd(&s->connect_timeouts);
		row->last_success_ms = max_u64(row->last_success_ms, rd(&s->last_success_ms));
		row->last_failure_ms = max_u64(row->last_failure_ms, rd(&s->last_failure_ms));
	}
}

static void scrape_free(struct scrape *s)
{
	free(s->routes);
	free(s->ups);
	free(s->targets);
	free(s->workers);
}

/* Adds up the slots of cfg's label sets (those with a stats object of their own) and of the
 * workers. -1 when out of memory. */
static int scrape(struct metrics *m, const struct rw_config *cfg, struct scrape *s)
{
	memset(s, 0, sizeof *s);
	uint32_t nroutes = 0, ntargets = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		nroutes += cfg->frontends[f].nroutes + 1;
	for (uint32_t i = 0; i < cfg->nupstreams; i++)
		ntargets += cfg->upstreams[i].ntargets;
	s->routes = calloc(nroutes ? nroutes : 1, sizeof *s->routes);
	s->ups = calloc(cfg->nupstreams ? cfg->nupstreams : 1, sizeof *s->ups);
	s->targets = calloc(ntargets ? ntargets : 1, sizeof *s->targets);
	s->workers = calloc(m->nworkers ? m->nworkers : 1, sizeof *s->workers);
	if (!s->routes || !s->ups || !s->targets || !s->workers) {
		scrape_free(s);
		return -1;
	}
	for (uint32_t f = 0; f < cfg->nfrontends; f++) {
		const struct rw_frontend *fe = &cfg->frontends[f];
		for (uint32_t r = 0; r < fe->nroutes; r++)
			s->nroutes += route_row(m, fe->routes[r].stats, fe->name, fe->routes[r].name,
						&s->routes[s->nroutes]);
		s->nroutes += route_row(m, fe->stats, fe->name, "", &s->routes[s->nroutes]);
	}
	for (uint32_t i = 0; i < cfg->nupstreams; i++) {
		const struct rw_upstream *up = &cfg->upstreams[i];
		if (up->stats && up->stats != m->upstream_sink)
			upstream_row(m, up, &s->ups[s->nups++]);
		for (uint32_t t = 0; t < up->ntargets; t++) {
			const struct rw_sockaddr *a = &up->targets[t];
			if (a->stats && a->stats != m->target_sink)
				target_row(m, up, a, &s->targets[s->ntargets++]);
		}
	}
	s->nworkers = m->nworkers;
	for (unsigned w = 0; w < m->nworkers; w++) {
		struct worker_stats *ws = &m->workers[w];
		struct worker_row *row = &s->workers[w];
		row->clients_open = rd(&ws->clients_open);
		row->clients_accepted = rd(&ws->clients_accepted);
		for (unsigned g = 0; g < METRICS_BUF_GROUPS; g++)
			row->recv_starved[g] = rd(&ws->recv_starved[g]);
		for (unsigned k = 0; k < METRICS_TLS_COUNTS; k++)
			row->tls[k] = rd(&ws->tls[k]);
		const unsigned *overflow = atomic_load_explicit(&ws->cq_overflow, memory_order_acquire);
		if (overflow) /* the kernel's counter in the ring's shared memory */
			row->cq_overflows = __atomic_load_n(overflow, __ATOMIC_RELAXED);
		for (unsigned r = 0; r < RW_REASON_COUNT; r++)
			s->refusals[r] += rd(&ws->refusals[r]);
		for (unsigned a = 0; a < METRICS_AUTH_METHODS; a++)
			for (unsigned k = 0; k < 2; k++) {
				s->auth[a][k] += rd(&ws->auth[a][k]);
				s->auth_cache[a][k] += rd(&ws->auth_cache[a][k]);
			}
		for (unsigned k = 0; k < REDIS_RESULTS; k++)
			s->redis_calls[k] += rd(&ws->redis_calls[k]);
		s->redis_connects += rd(&ws->redis_connects);
		s->redis_connected += rd(&ws->redis_connected);
		for (unsigned k = 0; k < RL_DECISIONS; k++)
			s->rate_limit[k] += rd(&ws->rate_limit[k]);
	}
	s->now_ms = monotonic_ms();
	return 0;
}

/* ---- formatting -------------------------------------------------------------------------------- */

struct label {
	const char *name, *value;
};

/* A label value: backslash, double quote and newline escaped. */
static void w_label_value(struct writer *w, const char *s)
{
	for (const char *p = s; *p; p++) {
		const char *run = p;
		while (*p && *p != '\\' && *p != '"' && *p != '\n')
			p++;
		w_put(w, run, (size_t)(p - run));
		if (!*p)
			return;
		w_put(w, *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : "\\n", 2);
	}
}

static void family(struct writer *w, const char *name, const char *type, const char *help)
{
	w_str(w, "# HELP ");
	w_str(w, name);
	w_put(w, " ", 1);
	w_str(w, help);
	w_str(w, "\n# TYPE ");
	w_str(w, name);
	w_put(w, " ", 1);
	w_str(w, type);
	w_put(w, "\n", 1);
}

/* `name{a="x",b="y"} `: a sample up to its value. */
static void series(struct writer *w, const char *name, const char *suffix, const struct label *l,
		   unsigned n)
{
	w_str(w, name);
	w_str(w, suffix);
	for (unsigned i = 0; i < n; i++) {
		w_put(w, i ? "," : "{", 1);
		w_str(w, l[i].name);
		w_put(w, "=\"", 2);
		w_label_value(w, l[i].value);
		w_put(w, "\"", 1);
	}
	w_str(w, n ? "} " : " ");
}

static void sample_u64(struct writer *w, const char *name, const struct label *l, unsigned n,
		       uint64_t v)
{
	series(w, name, "", l, n);
	w_u64(w, v);
	w_put(w, "\n", 1);
}

/* Nanoseconds as exact decimal seconds ("1.000250000"). */
static void w_seconds(struct writer *w, uint64_t ns)
{
	w_u64(w, ns / 1000000000);
	w_put(w, ".", 1);
	w_u64_pad(w, ns % 1000000000, 9);
}

/* A histogram's cumulative buckets, sum and count; l has room for one more label (le). */
static void histogram(struct writer *w, const char *name, struct label *l, unsigned n,
		      const uint64_t counts[METRICS_BUCKETS], uint64_t sum_ns)
{
	uint64_t cumulative = 0;
	for (unsigned b = 0; b < METRICS_BUCKETS; b++) {
		cumulative += counts[b];
		l[n] = (struct label){ "le", bucket_le[b] };
		series(w, name, "_bucket", l, n + 1);
		w_u64(w, cumulative);
		w_put(w, "\n", 1);
	}
	series(w, name, "_sum", l, n);
	w_seconds(w, sum_ns);
	w_put(w, "\n", 1);
	series(w, name, "_count", l, n);
	w_u64(w, cumulative);
	w_put(w, "\n", 1);
}

static void format_process(struct writer *w, const struct scrape *s)
{
	const struct metrics_process *p = s->p;
	family(w, "ringway_build_info", "gauge", "Always 1; the version of the running gateway.");
	sample_u64(w, "ringway_build_info", &(struct label){ "version", RINGWAY_VERSION }, 1, 1);
	family(w, "ringway_start_time_seconds", "gauge", "When the gateway started, in unix seconds.");
	series(w, "ringway_start_time_seconds", "", NULL, 0);
	w_ms(w, p->start_time);
	w_put(w, "\n", 1);
	family(w, "ringway_config_generation", "gauge",
	       "Generation of the running configuration (1: the one the gateway started with).");
	sample_u64(w, "ringway_config_generation", NULL, 0, p->generation);
	family(w, "ringway_config_reloads_total", "counter", "Configuration reloads, by result.");
	sample_u64(w, "ringway_config_reloads_total", &(struct label){ "result", "ok" }, 1,
		   p->reloads_ok);
	sample_u64(w, "ringway_config_reloads_total", &(struct label){ "result", "failed" }, 1,
		   p->reloads_failed);
	family(w, "ringway_config_last_reload_success_timestamp_seconds", "gauge",
	       "When the running configuration was loaded, in unix seconds.");
	series(w, "ringway_config_last_reload_success_timestamp_seconds", "", NULL, 0);
	w_ms(w, p->last_reload_time);
	w_put(w, "\n", 1);
	family(w, "ringway_workers", "gauge", "Worker threads (one io_uring each).");
	sample_u64(w, "ringway_workers", NULL, 0, s->nworkers);
}

static void format_routes(struct writer *w, const struct scrape *s)
{
	static const char *const classes[5] = { "1xx", "2xx", "3xx", "4xx", "5xx" };
	struct label l[3];
	family(w, "ringway_requests_total", "counter",
	       "Finished requests by status class; route \"\" holds those that no route took.");
	for (uint32_t i = 0; i < s->nroutes; i++) {
		const struct route_row *r = &s->routes[i];
		l[0] = (struct label){ "frontend", r->frontend };
		l[1] = (struct label){ "route", r->route };
		for (unsigned c = 0; c < 5; c++) {
			l[2] = (struct label){ "status_class", classes[c] };
			sample_u64(w, "ringway_requests_total", l, 3, r->status_class[c]);
		}
	}
	family(w, "ringway_request_duration_seconds", "histogram",
	       "Time from a complete request head to the end of its answer (requests refused "
	       "before their head was complete are not timed).");
	for (uint32_t i = 0; i < s->nroutes; i++) {
		const struct route_row *r = &s->routes[i];
		l[0] = (struct label){ "frontend", r->frontend };
		l[1] = (struct label){ "route", r->route };
		histogram(w, "ringway_request_duration_seconds", l, 2, r->counts, r->sum_ns);
	}
	family(w, "ringway_request_bytes_total", "counter",
	       "Request bytes received from clients (heads and bodies).");
	for (uint32_t i = 0; i < s->nroutes; i++) {
		l[0] = (struct label){ "frontend", s->routes[i].frontend };
		l[1] = (struct label){ "route", s->routes[i].route };
		sample_u64(w, "ringway_request_bytes_total", l, 2, s->routes[i].bytes_in);
	}
	family(w, "ringway_response_bytes_total", "counter",
	       "Response bytes queued to clients (heads, bodies and the gateway's own answers).");
	for (uint32_t i = 0; i < s->nroutes; i++) {
		l[0] = (struct label){ "frontend", s->routes[i].frontend };
		l[1] = (struct label){ "route", s->routes[i].route };
		sample_u64(w, "ringway_response_bytes_total", l, 2, s->routes[i].bytes_out);
	}
	family(w, "ringway_refusals_total", "counter",
	       "Requests the gateway answered itself or that failed, by reason (the access log's "
	       "reason field).");
	for (unsigned r = 0; r < RW_REASON_COUNT; r++)
		if (r != RW_OK)
			sample_u64(w, "ringway_refusals_total",
				   &(struct label){ "reason", reason_name((enum rw_reason)r) }, 1,
				   s->refusals[r]);
}

static const char *target_health(const struct target_row *t)
{
	if (!t->last_success_ms && !t->last_failure_ms)
		return "unknown";
	return t->last_success_ms >= t->last_failure_ms ? "up" : "down";
}

static void format_upstreams(struct writer *w, const struct scrape *s)
{
	struct label l[3];
	family(w, "ringway_upstream_response_duration_seconds", "histogram",
	       "Time an upstream took, from its request's start to the end of its response (or "
	       "its failure).");
	for (uint32_t i = 0; i < s->nups; i++) {
		l[0] = (struct label){ "upstream", s->ups[i].up->name };
		histogram(w, "ringway_upstream_response_duration_seconds", l, 1, s->ups[i].counts,
			  s->ups[i].sum_ns);
	}
	family(w, "ringway_upstream_errors_total", "counter", "Upstream failures, by reason.");
	for (uint32_t i = 0; i < s->nups; i++) {
		l[0] = (struct label){ "upstream", s->ups[i].up->name };
		for (unsigned r = 0; r < RW_REASON_COUNT; r++) {
			if (!upstream_reason[r])
				continue;
			l[1] = (struct label){ "reason", reason_name((enum rw_reason)r) };
			sample_u64(w, "ringway_upstream_errors_total", l, 2, s->ups[i].errors[r]);
		}
	}
	/* targets: a target shared by two upstreams shows the same counters under each */
	family(w, "ringway_upstream_target_connections", "gauge",
	       "Connections to a target, in use (active) or pooled (idle).");
	for (uint32_t i = 0; i < s->ntargets; i++) {
		const struct target_row *t = &s->targets[i];
		l[0] = (struct label){ "upstream", t->upstream };
		l[1] = (struct label){ "target", t->address };
		l[2] = (struct label){ "state", "active" };
		sample_u64(w, "ringway_upstream_target_connections", l, 3, t->active);
		l[2] = (struct label){ "state", "idle" };
		sample_u64(w, "ringway_upstream_target_connections", l, 3, t->idle);
	}
	family(w, "ringway_upstream_target_connects_total", "counter",
	       "Connections opened to a target.");
	for (uint32_t i = 0; i < s->ntargets; i++) {
		l[0] = (struct label){ "upstream", s->targets[i].upstream };
		l[1] = (struct label){ "target", s->targets[i].address };
		sample_u64(w, "ringway_upstream_target_connects_total", l, 2, s->targets[i].connects);
	}
	family(w, "ringway_upstream_target_reused_total", "counter",
	       "Requests sent on a kept-alive connection taken from a target's pool.");
	for (uint32_t i = 0; i < s->ntargets; i++) {
		l[0] = (struct label){ "upstream", s->targets[i].upstream };
		l[1] = (struct label){ "target", s->targets[i].address };
		sample_u64(w, "ringway_upstream_target_reused_total", l, 2, s->targets[i].reused);
	}
	family(w, "ringway_upstream_target_connect_errors_total", "counter",
	       "Connects to a target that failed (refused, unreachable) or timed out.");
	for (uint32_t i = 0; i < s->ntargets; i++) {
		const struct target_row *t = &s->targets[i];
		l[0] = (struct label){ "upstream", t->upstream };
		l[1] = (struct label){ "target", t->address };
		l[2] = (struct label){ "cause", "failed" };
		sample_u64(w, "ringway_upstream_target_connect_errors_total", l, 3, t->connect_failures);
		l[2] = (struct label){ "cause", "timeout" };
		sample_u64(w, "ringway_upstream_target_connect_errors_total", l, 3, t->connect_timeouts);
	}
	family(w, "ringway_upstream_target_healthy", "gauge",
	       "Passive health: 1 when a target's most recent event was a success (a connect or a "
	       "response head), 0 when it was a failure (a failed connect or a reset before the "
	       "response); 1 as well while unknown (no event yet).");
	for (uint32_t i = 0; i < s->ntargets; i++) {
		l[0] = (struct label){ "upstream", s->targets[i].upstream };
		l[1] = (struct label){ "target", s->targets[i].address };
		sample_u64(w, "ringway_upstream_target_healthy", l, 2,
			   strcmp(target_health(&s->targets[i]), "down") != 0);
	}
}

/* The worker label's value: its number. */
static const char *worker_text(char buf[12], unsigned id)
{
	struct writer w = writer_init(buf, 11);
	w_u64(&w, id);
	buf[writer_len(&w)] = 0;
	return buf;
}

static void format_workers(struct writer *w, const struct scrape *s)
{
	char id[12];
	struct label l[2] = { { "worker", id } };
	family(w, "ringway_worker_client_connections", "gauge", "Open client connections of a worker.");
	for (unsigned i = 0; i < s->nworkers; i++)
		sample_u64(w, "ringway_worker_client_connections",
			   &(struct label){ "worker", worker_text(id, i) }, 1, s->workers[i].clients_open);
	family(w, "ringway_worker_accepted_connections_total", "counter",
	       "Client connections a worker accepted and served.");
	for (unsigned i = 0; i < s->nworkers; i++)
		sample_u64(w, "ringway_worker_accepted_connections_total",
			   &(struct label){ "worker", worker_text(id, i) }, 1,
			   s->workers[i].clients_accepted);
	family(w, "ringway_worker_cq_overflows_total", "counter",
	       "Completions the kernel could not post because a worker's io_uring completion queue "
	       "was full (its overflow counter).");
	for (unsigned i = 0; i < s->nworkers; i++)
		sample_u64(w, "ringway_worker_cq_overflows_total",
			   &(struct label){ "worker", worker_text(id, i) }, 1, s->workers[i].cq_overflows);
	family(w, "ringway_worker_buffer_ring_exhausted_total", "counter",
	       "Multishot receives ended because a worker's buffer ring (client or upstream group) "
	       "was empty.");
	for (unsigned i = 0; i < s->nworkers; i++) {
		worker_text(id, i);
		for (unsigned g = 0; g < METRICS_BUF_GROUPS; g++) {
			l[1] = (struct label){ "group", buf_group_names[g] };
			sample_u64(w, "ringway_worker_buffer_ring_exhausted_total", l, 2,
				   s->workers[i].recv_starved[g]);
		}
	}
	family(w, "ringway_tls_handshakes_total", "counter",
	       "TLS handshakes of a worker, with clients and upstreams: full, resumed (a session "
	       "ticket or cached session), failed.");
	for (unsigned i = 0; i < s->nworkers; i++) {
		worker_text(id, i);
		for (unsigned k = 0; k < METRICS_TLS_COUNTS; k++) {
			l[1] = (struct label){ "result", tls_result_names[k] };
			sample_u64(w, "ringway_tls_handshakes_total", l, 2, s->workers[i].tls[k]);
		}
	}
}

static void format_auth(struct writer *w, const struct scrape *s)
{
	static const char *const results[2] = { "ok", "failed" }, *const lookups[2] = { "hit", "miss" };
	struct label l[2];
	family(w, "ringway_auth_total", "counter",
	       "Credentials checked by the routes' authentication, by method: valid (ok) or not.");
	for (unsigned m = 0; m < METRICS_AUTH_METHODS; m++) {
		l[0] = (struct label){ "method", auth_method_name(1u << m) };
		for (unsigned k = 0; k < 2; k++) {
			l[1] = (struct label){ "result", results[k] };
			sample_u64(w, "ringway_auth_total", l, 2, s->auth[m][k]);
		}
	}
	family(w, "ringway_auth_cache_total", "counter",
	       "Lookups of verified JWTs and Basic credentials in the workers' caches.");
	for (unsigned m = 1; m <= 2; m++) { /* jwt, basic */
		l[0] = (struct label){ "method", auth_method_name(1u << m) };
		for (unsigned k = 0; k < 2; k++) {
			l[1] = (struct label){ "result", lookups[k] };
			sample_u64(w, "ringway_auth_cache_total", l, 2, s->auth_cache[m][k]);
		}
	}
}

static void format_rate_limit(struct writer *w, const struct scrape *s)
{
	static const char *const decisions[RL_DECISIONS] = {
		[RL_ADMITTED] = "admitted", [RL_REFUSED] = "refused",
		[RL_FAILURE_LOCAL] = "store_failed_local", [RL_FAILURE_ALLOWED] = "store_failed_allowed",
		[RL_FAILURE_DENIED] = "store_failed_denied",
	};
	static const char *const results[REDIS_RESULTS] = {
		[REDIS_OK] = "ok", [REDIS_ERROR_REPLY] = "error_reply", [REDIS_TIMEOUT] = "timeout",
		[REDIS_DISCONNECTED] = "disconnected",
	};
	struct label l;
	family(w, "ringway_rate_limit_total", "counter",
	       "Rate-limit decisions: admitted, refused (429), or made by on_failure when the store "
	       "did not answer (decided locally, allowed, denied).");
	for (unsigned k = 0; k < RL_DECISIONS; k++) {
		l = (struct label){ "decision", decisions[k] };
		sample_u64(w, "ringway_rate_limit_total", &l, 1, s->rate_limit[k]);
	}
	family(w, "ringway_rate_limit_evictions_total", "counter",
	       "Keys of the local rate-limit table that took over a live bucket because every slot "
	       "they may use held one.");
	sample_u64(w, "ringway_rate_limit_evictions_total", NULL, 0, ratelimit_table_evictions());
	family(w, "ringway_redis_calls_total", "counter",
	       "Calls to the rate-limit store (Redis) by result.");
	for (unsigned k = 0; k < REDIS_RESULTS; k++) {
		l = (struct label){ "result", results[k] };
		sample_u64(w, "ringway_redis_calls_total", &l, 1, s->redis_calls[k]);
	}
	family(w, "ringway_redis_connects_total", "counter", "Connections made to Redis.");
	sample_u64(w, "ringway_redis_connects_total", NULL, 0, s->redis_connects);
	family(w, "ringway_redis_connected_workers", "gauge",
	       "Workers whose connection to Redis is up.");
	sample_u64(w, "ringway_redis_connected_workers", NULL, 0, s->redis_connected);
}

static void format_xdp(struct writer *w, const struct scrape *s)
{
	const struct rw_xdp_metrics *x = &s->xdp;
	struct label cause;
	family(w, "ringway_xdp_passed_packets_total", "counter", "Packets the XDP limiter passed.");
	sample_u64(w, "ringway_xdp_passed_packets_total", NULL, 0, x->passed_packets);
	family(w, "ringway_xdp_passed_bytes_total", "counter", "Bytes of the packets the XDP limiter passed.");
	sample_u64(w, "ringway_xdp_passed_bytes_total", NULL, 0, x->passed_bytes);
	family(w, "ringway_xdp_dropped_packets_total", "counter",
	       "Packets the XDP limiter dropped, by cause (a rate limit, a deny policy).");
	cause = (struct label){ "cause", "rate" };
	sample_u64(w, "ringway_xdp_dropped_packets_total", &cause, 1, x->rate_dropped_packets);
	cause = (struct label){ "cause", "deny" };
	sample_u64(w, "ringway_xdp_dropped_packets_total", &cause, 1, x->deny_dropped_packets);
	family(w, "ringway_xdp_dropped_bytes_total", "counter",
	       "Bytes of the packets the XDP limiter dropped, by cause.");
	cause = (struct label){ "cause", "rate" };
	sample_u64(w, "ringway_xdp_dropped_bytes_total", &cause, 1, x->rate_dropped_bytes);
	cause = (struct label){ "cause", "deny" };
	sample_u64(w, "ringway_xdp_dropped_bytes_total", &cause, 1, x->deny_dropped_bytes);
	family(w, "ringway_xdp_policy_allowed_packets_total", "counter",
	       "Packets passed by an allow policy.");
	sample_u64(w, "ringway_xdp_policy_allowed_packets_total", NULL, 0, x->policy_allowed);
	family(w, "ringway_xdp_parse_errors_total", "counter",
	       "Truncated or malformed packets (passed).");
	sample_u64(w, "ringway_xdp_parse_errors_total", NULL, 0, x->parse_errors);
	family(w, "ringway_xdp_new_sources_total", "counter", "Sources added to the sources map.");
	sample_u64(w, "ringway_xdp_new_sources_total", NULL, 0, x->new_sources);
	family(w, "ringway_xdp_admission_overflows_total", "counter",
	       "Packets of new sources over the admission budget, limited by the shared fallback "
	       "bucket.");
	sample_u64(w, "ringway_xdp_admission_overflows_total", NULL, 0, x->admission_overflows);
}

static void format_exposition(struct writer *w, const struct scrape *s)
{
	format_process(w, s);
	format_routes(w, s);
	format_upstreams(w, s);
	format_workers(w, s);
	format_auth(w, s);
	format_rate_limit(w, s);
	if (s->has_xdp)
		format_xdp(w, s);
}

static void format_upstreams_json(struct writer *w, const struct scrape *s)
{
	w_put(w, "[", 1);
	for (uint32_t i = 0; i < s->nups; i++) {
		const struct rw_upstream *up = s->ups[i].up;
		w_str(w, i ? ",{\"name\":" : "{\"name\":");
		w_json_quoted(w, up->name);
		w_str(w, ",\"balance\":");
		w_json_quoted(w, up->balance < sizeof balance_names / sizeof balance_names[0]
				      ? balance_names[up->balance] : "unknown");
		w_str(w, ",\"targets\":[");
		for (uint32_t t = 0, k = 0; t < s->ntargets; t++) {
			const struct target_row *r = &s->targets[t];
			if (r->up != up)
				continue;
			w_str(w, k++ ? ",{\"address\":" : "{\"address\":");
			w_json_quoted(w, r->address);
			w_str(w, ",\"health\":");
			w_json_quoted(w, target_health(r));
			w_str(w, ",\"active\":");
			w_u64(w, r->active);
			w_str(w, ",\"idle\":");
			w_u64(w, r->idle);
			w_str(w, ",\"connects\":");
			w_u64(w, r->connects);
			w_str(w, ",\"reused\":");
			w_u64(w, r->reused);
			w_str(w, ",\"failures\":");
			w_u64(w, r->connect_failures + r->connect_timeouts);
			w_str(w, ",\"last_failure_ms_ago\":");
			if (r->last_failure_ms)
				w_u64(w, s->now_ms > r->last_failure_ms ? s->now_ms - r->last_failure_ms : 0);
			else
				w_str(w, "null");
			w_put(w, "}", 1);
		}
		w_str(w, "]}");
	}
	w_str(w, "]\n");
}

/* Formats s with fn into a buffer that doubles until it fits, with a NUL after the text. */
static char *format_grown(void (*fn)(struct writer *, const struct scrape *), const struct scrape *s,
			  size_t *len)
{
	for (size_t cap = 16384; cap && cap < SIZE_MAX / 2; cap *= 2) {
		char *buf = malloc(cap);
		if (!buf)
			return NULL;
		struct writer w = writer_init(buf, cap - 1);
		fn(&w, s);
		if (!w.overflow) {
			*len = writer_len(&w);
			buf[*len] = 0;
			return buf;
		}
		free(buf);
	}
	return NULL;
}

char *metrics_render(struct metrics *m, const struct rw_config *cfg, const struct metrics_process *p,
		     size_t *len)
{
	struct scrape s;
	if (scrape(m, cfg, &s))
		return NULL;
	s.p = p;
	s.has_xdp = p->xdp_metrics_fd >= 0 && xdp_metrics_read(p->xdp_metrics_fd, &s.xdp) == 0;
	char *out = format_grown(format_exposition, &s, len);
	scrape_free(&s);
	return out;
}

char *metrics_upstreams_json(struct metrics *m, const struct rw_config *cfg, size_t *len)
{
	struct scrape s;
	if (scrape(m, cfg, &s))
		return NULL;
	char *out = format_grown(format_upstreams_json, &s, len);
	scrape_free(&s);
	return out;
}

uint64_t metrics_open_connections(const struct metrics *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < m->nworkers; i++)
		n += atomic_load_explicit(&m->workers[i].clients_open, memory_order_relaxed);
	return n;
}
