/* test_metrics.c — the counters and their exposition (user/metrics.c): a configuration bound to a
 * registry of two workers, values added through each worker's own slots, then the rendered text:
 * sums across workers, cumulative histogram buckets with their sum and count, label values
 * escaped, a rebind after a reload that keeps the counters of kept names and hides removed ones,
 * passive health from the most recent event, the JSON of GET /upstreams, the XDP counters of a
 * per-CPU map, and the whole text checked by `promtool check metrics`. */
#include "ring_fixture.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "metrics.h"
#include "reason.h"

static const char yaml_fmt[] =
	"workers: 2\n"
	"access_log: off\n"
	"upstreams:\n"
	"  u: { targets: [\"127.0.0.1:9101\", \"[::1]:9102\"], balance: least_conn }\n"
	"  v: { targets: [\"127.0.0.1:9103\"] }\n"
	"frontends:\n"
	"  - name: f\n"
	"    listen: [\"127.0.0.1:8080\"]\n"
	"    routes:\n"
	"      - { name: %s, match: { path_prefix: /a }, upstream: u }\n"
	"      - { name: %s, match: { path_prefix: /b }, upstream: v }\n";

static struct metrics *M;
static struct rw_config *CFG;
static char *TEXT;
static size_t TEXT_LEN;

static const struct metrics_process PROC = {
	.start_time = 1700000000.25,
	.generation = 3,
	.reloads_ok = 2,
	.reloads_failed = 1,
	.last_reload_time = 1700000100.5,
	.xdp_metrics_fd = -1,
};

static struct rw_config *load(const char *route1, const char *route2)
{
	char yaml[2048];
	snprintf(yaml, sizeof yaml, yaml_fmt, route1, route2);
	struct rw_config *cfg = fx_config(yaml);
	cr_assert_eq(metrics_bind(M, cfg), 0);
	return cfg;
}

static void setup(void)
{
	M = metrics_new(2);
	cr_assert_not_null(M);
	CFG = load("r1", "r2");
}

static void teardown(void)
{
	free(TEXT);
	TEXT = NULL;
	config_unref(CFG);
	metrics_free(M);
}

TestSuite(metrics, .init = setup, .fini = teardown, .timeout = 30);

static void render(const struct rw_config *cfg, const struct metrics_process *p)
{
	free(TEXT);
	TEXT = metrics_render(M, cfg, p, &TEXT_LEN);
	cr_assert_not_null(TEXT);
	cr_assert_eq(strlen(TEXT), TEXT_LEN, "no NUL inside; the length is the text's");
}

/* The rendered text has this whole line. */
static void assert_line(const char *line)
{
	char want[512];
	snprintf(want, sizeof want, "\n%s\n", line);
	cr_assert_not_null(strstr(TEXT, want), "no line \"%s\" in:\n%s", line, TEXT);
}

static void assert_no(const char *part)
{
	cr_assert_null(strstr(TEXT, part), "\"%s\" is rendered:\n%s", part, TEXT);
}

/* A request of `status` on worker w, on route rs and upstream us (NULL: none), taking us_taken
 * microseconds. */
static void request(unsigned w, struct route_stats *rs, struct upstream_stats *us, int status,
		    enum rw_reason r, uint64_t us_taken)
{
	struct request_sample s = {
		.status = status,
		.reason = r,
		.bytes_in = 100,
		.bytes_out = 1000,
		.duration_ns = us_taken * 1000,
		.upstream_ns = us ? us_taken * 1000 : METRICS_UNTIMED,
	};
	metrics_request(metrics_worker(M, w), rs, us, &s);
}

static struct route_stats *ROUTE(const struct rw_config *cfg, unsigned i)
{
	return cfg->frontends[0].routes[i].stats;
}

/* ---- sums, histograms, labels ---------------------------------------------------------------- */

Test(metrics, counters_of_two_workers_are_summed_per_route_and_status_class)
{
	request(0, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 1000);
	request(1, ROUTE(CFG, 0), CFG->upstreams[0].stats, 204, RW_OK, 1000);
	request(1, ROUTE(CFG, 0), CFG->upstreams[0].stats, 503, RW_UPSTREAM_UNAVAILABLE, 1000);
	request(0, ROUTE(CFG, 1), CFG->upstreams[1].stats, 301, RW_OK, 1000);
	render(CFG, &PROC);
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r1\",status_class=\"2xx\"} 2");
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r1\",status_class=\"5xx\"} 1");
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r1\",status_class=\"3xx\"} 0");
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r2\",status_class=\"3xx\"} 1");
	assert_line("ringway_request_bytes_total{frontend=\"f\",route=\"r1\"} 300");
	assert_line("ringway_response_bytes_total{frontend=\"f\",route=\"r1\"} 3000");
	assert_line("ringway_refusals_total{reason=\"upstream_unavailable\"} 1");
	assert_line("ringway_refusals_total{reason=\"no_route\"} 0");
	assert_no("reason=\"ok\"");
	assert_line("ringway_upstream_errors_total{upstream=\"u\",reason=\"upstream_unavailable\"} 1");
	assert_line("ringway_upstream_errors_total{upstream=\"v\",reason=\"upstream_unavailable\"} 0");
}

Test(metrics, requests_no_route_took_count_on_the_frontend_with_an_empty_route)
{
	struct route_stats *fe = CFG->frontends[0].stats;
	request(0, fe, NULL, 404, RW_NO_ROUTE, 100);
	request(1, fe, NULL, 404, RW_NO_ROUTE, 100);
	struct request_sample untimed = { .status = 400, .reason = RW_BAD_HEADER,
					  .duration_ns = METRICS_UNTIMED,
					  .upstream_ns = METRICS_UNTIMED };
	metrics_request(metrics_worker(M, 1), fe, NULL, &untimed);
	render(CFG, &PROC);
	assert_line("ringway_requests_total{frontend=\"f\",route=\"\",status_class=\"4xx\"} 3");
	assert_line("ringway_refusals_total{reason=\"no_route\"} 2");
	assert_line("ringway_refusals_total{reason=\"bad_header\"} 1");
	/* a request refused before its head was complete is counted, not timed */
	assert_line("ringway_request_duration_seconds_count{frontend=\"f\",route=\"\"} 2");
}

Test(metrics, duration_buckets_are_cumulative_with_the_sum_in_seconds)
{
	request(0, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 300);   /* le 0.0005 */
	request(1, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 3000);  /* le 0.005 */
	request(0, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 20000000); /* +Inf */
	request(1, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 1000);  /* le 0.001: on it */
	render(CFG, &PROC);
	static const struct {
		const char *le;
		int count;
	} want[] = {
		{ "0.0005", 1 }, { "0.001", 2 }, { "0.0025", 2 }, { "0.005", 3 }, { "0.01", 3 },
		{ "1", 3 },      { "10", 3 },    { "+Inf", 4 },
	};
	char line[256];
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		snprintf(line, sizeof line,
			 "ringway_request_duration_seconds_bucket{frontend=\"f\",route=\"r1\",le=\"%s\"} %d",
			 want[i].le, want[i].count);
		assert_line(line);
		snprintf(line, sizeof line,
			 "ringway_upstream_response_duration_seconds_bucket{upstream=\"u\",le=\"%s\"} %d",
			 want[i].le, want[i].count);
		assert_line(line);
	}
	assert_line("ringway_request_duration_seconds_sum{frontend=\"f\",route=\"r1\"} 20.004300000");
	assert_line("ringway_request_duration_seconds_count{frontend=\"f\",route=\"r1\"} 4");
	assert_line("ringway_upstream_response_duration_seconds_count{upstream=\"u\"} 4");
	assert_line("ringway_request_duration_seconds_count{frontend=\"f\",route=\"r2\"} 0");
}

Test(metrics, label_values_are_escaped)
{
	/* names from a configuration are plain; a quote, a backslash or a newline is escaped */
	free(CFG->frontends[0].routes[1].name);
	CFG->frontends[0].routes[1].name = strdup("we\"ird\\na\nme");
	cr_assert_eq(metrics_bind(M, CFG), 0);
	request(0, ROUTE(CFG, 1), NULL, 200, RW_OK, 1000);
	render(CFG, &PROC);
	assert_line("ringway_requests_total{frontend=\"f\",route=\"we\\\"ird\\\\na\\nme\","
		    "status_class=\"2xx\"} 1");
}

Test(metrics, process_facts_are_rendered)
{
	render(CFG, &PROC);
	assert_line("ringway_build_info{version=\"" RINGWAY_VERSION "\"} 1");
	assert_line("ringway_start_time_seconds 1700000000.250");
	assert_line("ringway_config_generation 3");
	assert_line("ringway_config_reloads_total{result=\"ok\"} 2");
	assert_line("ringway_config_reloads_total{result=\"failed\"} 1");
	assert_line("ringway_config_last_reload_success_timestamp_seconds 1700000100.500");
	assert_line("ringway_workers 2");
	assert_no("ringway_xdp_"); /* no limiter running */
}

Test(metrics, worker_counters_are_per_worker)
{
	struct worker_stats *w0 = metrics_worker(M, 0), *w1 = metrics_worker(M, 1);
	stat_set(&w0->clients_open, 3);
	stat_add(&w0->clients_accepted, 7);
	stat_set(&w1->clients_open, 1);
	stat_add(&w1->recv_starved[1], 2);
	static const unsigned overflow = 5;
	atomic_store(&w1->cq_overflow, &overflow);
	render(CFG, &PROC);
	assert_line("ringway_worker_client_connections{worker=\"0\"} 3");
	assert_line("ringway_worker_client_connections{worker=\"1\"} 1");
	assert_line("ringway_worker_accepted_connections_total{worker=\"0\"} 7");
	assert_line("ringway_worker_buffer_ring_exhausted_total{worker=\"1\",group=\"upstream\"} 2");
	assert_line("ringway_worker_buffer_ring_exhausted_total{worker=\"1\",group=\"client\"} 0");
	assert_line("ringway_worker_cq_overflows_total{worker=\"1\"} 5");
	assert_line("ringway_worker_cq_overflows_total{worker=\"0\"} 0");
}

/* ---- a reload ---------------------------------------------------------------------------------- */

Test(metrics, a_rebind_keeps_the_counters_of_kept_names_and_hides_removed_ones)
{
	request(0, ROUTE(CFG, 0), NULL, 200, RW_OK, 1000);
	request(1, ROUTE(CFG, 1), NULL, 200, RW_OK, 1000);
	struct target_slot *t = &CFG->upstreams[1].targets[0].stats->slot[1];
	stat_add(&t->connects, 4);
	/* the reload: r1 stays, r2 goes, r3 comes; the targets stay */
	struct rw_config *cfg2 = load("r3", "r1");
	cr_assert_eq(ROUTE(cfg2, 1), ROUTE(CFG, 0), "a kept name keeps its stats object");
	cr_assert_eq(cfg2->upstreams[1].targets[0].stats, CFG->upstreams[1].targets[0].stats);
	request(0, ROUTE(cfg2, 1), NULL, 200, RW_OK, 1000);
	render(cfg2, &PROC);
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r1\",status_class=\"2xx\"} 2");
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r3\",status_class=\"2xx\"} 0");
	assert_no("route=\"r2\"");
	assert_line("ringway_upstream_target_connects_total{upstream=\"v\",target=\"127.0.0.1:9103\"} 4");
	/* and the name that comes back finds its counters */
	render(CFG, &PROC);
	assert_line("ringway_requests_total{frontend=\"f\",route=\"r2\",status_class=\"2xx\"} 1");
	config_unref(cfg2);
}

/* ---- targets: gauges and passive health ---------------------------------------------------------- */

static struct target_slot *TARGET(unsigned upstream, unsigned target, unsigned worker)
{
	return &CFG->upstreams[upstream].targets[target].stats->slot[worker];
}

Test(metrics, the_most_recent_event_across_workers_decides_health)
{
	/* u's first target: failed on worker 0, then succeeded on worker 1: up */
	stat_set(&TARGET(0, 0, 0)->last_failure_ms, 1000);
	stat_set(&TARGET(0, 0, 1)->last_success_ms, 2000);
	/* its second: succeeded on worker 1, then failed on worker 0: down */
	stat_set(&TARGET(0, 1, 1)->last_success_ms, 1000);
	stat_set(&TARGET(0, 1, 0)->last_failure_ms, 2000);
	stat_add(&TARGET(0, 1, 0)->connect_failures, 2);
	stat_add(&TARGET(0, 1, 1)->connect_timeouts, 1);
	stat_set(&TARGET(0, 1, 0)->active, 2);
	stat_set(&TARGET(0, 1, 1)->active, 1);
	stat_set(&TARGET(0, 1, 1)->idle, 4);
	stat_add(&TARGET(0, 1, 0)->reused, 9);
	/* v's target: no event yet */
	render(CFG, &PROC);
	assert_line("ringway_upstream_target_healthy{upstream=\"u\",target=\"127.0.0.1:9101\"} 1");
	assert_line("ringway_upstream_target_healthy{upstream=\"u\",target=\"[::1]:9102\"} 0");
	assert_line("ringway_upstream_target_healthy{upstream=\"v\",target=\"127.0.0.1:9103\"} 1");
	assert_line("ringway_upstream_target_connections{upstream=\"u\",target=\"[::1]:9102\","
		    "state=\"active\"} 3");
	assert_line("ringway_upstream_target_connections{upstream=\"u\",target=\"[::1]:9102\","
		    "state=\"idle\"} 4");
	assert_line("ringway_upstream_target_connect_errors_total{upstream=\"u\",target=\"[::1]:9102\","
		    "cause=\"failed\"} 2");
	assert_line("ringway_upstream_target_connect_errors_total{upstream=\"u\",target=\"[::1]:9102\","
		    "cause=\"timeout\"} 1");
	assert_line("ringway_upstream_target_reused_total{upstream=\"u\",target=\"[::1]:9102\"} 9");

	size_t len;
	char *json = metrics_upstreams_json(M, CFG, &len);
	cr_assert_not_null(json);
	cr_assert_eq(strlen(json), len);
	char first[512], second[512], third[512];
	uint64_t ago1, ago2;
	cr_assert_eq(sscanf(json, "[{\"name\":\"u\",\"balance\":\"least_conn\",\"targets\":[%511[^}]},%511[^}]}]},"
			    "{\"name\":\"v\",\"balance\":\"round_robin\",\"targets\":[%511[^}]}]}]\n",
			    first, second, third), 3, "%s", json);
	cr_assert_eq(sscanf(first, "{\"address\":\"127.0.0.1:9101\",\"health\":\"up\",\"active\":0,"
				   "\"idle\":0,\"connects\":0,\"reused\":0,\"failures\":0,"
				   "\"last_failure_ms_ago\":%lu", &ago1), 1, "%s", first);
	cr_assert_eq(sscanf(second, "{\"address\":\"[::1]:9102\",\"health\":\"down\",\"active\":3,"
				    "\"idle\":4,\"connects\":0,\"reused\":9,\"failures\":3,"
				    "\"last_failure_ms_ago\":%lu", &ago2), 1, "%s", second);
	cr_assert_gt(ago1, ago2, "the older failure is longer ago");
	cr_assert_str_eq(third, "{\"address\":\"127.0.0.1:9103\",\"health\":\"unknown\",\"active\":0,"
				"\"idle\":0,\"connects\":0,\"reused\":0,\"failures\":0,"
				"\"last_failure_ms_ago\":null");
	free(json);
}

/* ---- XDP ------------------------------------------------------------------------------------------ */

Test(metrics, xdp_counters_are_the_sums_of_the_per_cpu_map)
{
	int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "rw_test_metrics", 4,
				sizeof(struct rw_xdp_metrics), 1, NULL);
	if (fd < 0)
		FX_SKIP_OR_FAIL("no permission to create a BPF map");
	int ncpus = libbpf_num_possible_cpus();
	cr_assert_gt(ncpus, 0);
	struct rw_xdp_metrics *per_cpu = calloc((size_t)ncpus, sizeof *per_cpu);
	for (int i = 0; i < ncpus; i++) {
		per_cpu[i].passed_packets = 10;
		per_cpu[i].rate_dropped_packets = 2;
		per_cpu[i].deny_dropped_bytes = 100;
	}
	uint32_t zero = 0;
	cr_assert_eq(bpf_map_update_elem(fd, &zero, per_cpu, 0), 0);
	struct metrics_process p = PROC;
	p.xdp_metrics_fd = fd;
	render(CFG, &p);
	char line[128];
	snprintf(line, sizeof line, "ringway_xdp_passed_packets_total %d", 10 * ncpus);
	assert_line(line);
	snprintf(line, sizeof line, "ringway_xdp_dropped_packets_total{cause=\"rate\"} %d", 2 * ncpus);
	assert_line(line);
	snprintf(line, sizeof line, "ringway_xdp_dropped_bytes_total{cause=\"deny\"} %d", 100 * ncpus);
	assert_line(line);
	assert_line("ringway_xdp_new_sources_total 0");
	free(per_cpu);
	close(fd);
}

/* ---- the format, checked by Prometheus' own tool ---------------------------------------------------- */

/* Runs `promtool check metrics` on the text; its verdict and output. */
static void promtool_check(const char *text, size_t len)
{
	if (system("command -v promtool >/dev/null 2>&1") != 0)
		FX_SKIP_OR_FAIL("promtool is not installed (Debian package prometheus)");
	char path[] = "/tmp/ringway-metrics-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
	FILE *f = popen(cmd, "r");
	cr_assert_not_null(f);
	char out[8192];
	size_t n = fread(out, 1, sizeof out - 1, f);
	out[n] = 0;
	int status = pclose(f);
	unlink(path);
	cr_assert_eq(status, 0, "promtool check metrics failed:\n%s\non:\n%s", out, text);
	cr_assert_eq(n, 0, "promtool check metrics says:\n%s", out);
}

Test(metrics, the_exposition_passes_promtool_check_metrics)
{
	request(0, ROUTE(CFG, 0), CFG->upstreams[0].stats, 200, RW_OK, 3000);
	request(1, CFG->frontends[0].stats, NULL, 404, RW_NO_ROUTE, 200);
	stat_set(&TARGET(0, 1, 0)->last_failure_ms, 5);
	struct metrics_process p = PROC;
	int fd = bpf_map_create(BPF_MAP_TYPE_PERCPU_ARRAY, "rw_test_metrics", 4,
				sizeof(struct rw_xdp_metrics), 1, NULL);
	p.xdp_metrics_fd = fd; /* the XDP families too, where this host lets us make the map */
	render(CFG, &p);
	if (fd >= 0)
		close(fd);
	promtool_check(TEXT, TEXT_LEN);
}
