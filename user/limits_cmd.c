/* limits_cmd.c — `ringway limits`: the operator's view of the XDP limiter, working on the pinned maps
 * directly, so it works with or without a running gateway: show the knobs and policies, set or
 * unset a CIDR policy, list the top sources, read the counters. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/bpf.h>

#include "config.h"
#include "limits_cmd.h"
#include "xdp.h"

static void usage(FILE *to)
{
	fputs("usage: ringway limits [--pin-path DIR | -c FILE] COMMAND\n"
	      "  show                          the limiter's settings and CIDR policies\n"
	      "  set CIDR --rate N [--burst N] each source in CIDR gets this rate (packets/s)\n"
	      "  set CIDR --deny | --allow     drop every packet / bypass the limiter\n"
	      "  unset CIDR                    remove the policy for exactly this CIDR\n"
	      "  top [N]                       the N sources with the most drops (default 10)\n"
	      "  stats                         the program's counters, all CPUs added up\n"
	      "The maps are the ones pinned by the gateway (default " RW_XDP_PIN_DIR ", or\n"
	      "xdp.pin_path of the configuration given with -c). A policy set here lasts until\n"
	      "the gateway starts again and rewrites the policies from its configuration.\n",
	      to);
}

/* Opens the pinned maps, after a command has checked its arguments. Returns 0, or 1 (the exit
 * code) with the reason printed. */
static int open_maps(const char *pin_dir, struct xdp_maps *maps)
{
	char err[512];
	if (xdp_maps_open(pin_dir, maps, err, sizeof err) == 0)
		return 0;
	fprintf(stderr, "ringway limits: %s\n", err);
	return 1;
}

static const char *action_name(uint32_t action)
{
	return action == RW_POLICY_ALLOW ? "allow" : action == RW_POLICY_DENY ? "deny" : "limit";
}

static int show(const struct xdp_maps *maps)
{
	uint32_t zero = 0;
	struct rw_xdp_config c;
	if (bpf_map_lookup_elem(maps->config, &zero, &c)) {
		fprintf(stderr, "ringway limits: cannot read the config map: %s\n", strerror(errno));
		return 1;
	}
	printf("limit: %s\nrate: %u/s per source\nburst: %u\nports:",
	       c.limit == RW_LIMIT_SYN ? "syn" : "all", c.rate, c.burst);
	if (c.nports == 0)
		printf(" all");
	for (uint32_t i = 0; i < c.nports && i < RW_XDP_MAX_PORTS; i++)
		printf("%s%u", i ? "," : " ", c.ports[i]);
	printf("\nnew sources: %u/s per CPU, then the fallback bucket: %u/s burst %u\n",
	       c.new_sources_per_cpu, c.fallback_rate, c.fallback_burst);
	printf("ipv6 sources: one bucket per /%u\n",
	       c.ipv6_source_prefix && c.ipv6_source_prefix < 128 ? c.ipv6_source_prefix : 128);

	struct rw_policy_key key, next;
	void *prev = NULL;
	uint32_t n = 0;
	while (bpf_map_get_next_key(maps->policy, prev, &next) == 0) {
		key = next;
		prev = &key;
		struct rw_policy p;
		if (bpf_map_lookup_elem(maps->policy, &key, &p))
			continue;
		char prefix[64];
		xdp_format_prefix(key.addr, key.prefixlen, prefix, sizeof prefix, 0);
		if (n++ == 0)
			printf("policies:\n");
		if (p.action == RW_POLICY_LIMIT)
			printf("  %-43s rate %u/s burst %u\n", prefix, p.rate, p.burst);
		else
			printf("  %-43s %s\n", prefix, action_name(p.action));
	}
	if (n == 0)
		printf("policies: none\n");
	return 0;
}

#define RATE_MAX 1000000u    /* as xdp.rate: the bucket's interval is whole nanoseconds */
#define COUNT_MAX 100000000u /* as xdp.burst */
#define TOP_MAX 65536u       /* rows of limits top */

/* A whole number 0..max, digits only. */
static int parse_count(const char *s, const char *what, uint32_t max, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || v > max) {
		fprintf(stderr, "ringway limits: %s: expected a whole number 0..%u, got '%s'\n",
			what, max, s);
		return -1;
	}
	*out = (uint32_t)v;
	return 0;
}

/* A new policy's CIDR (config_parse_cidr), or with any_prefix one to remove (config_parse_prefix:
 * also what an older rule may have set). */
static int read_cidr(const char *s, struct rw_policy_key *key, int any_prefix)
{
	const char *why = NULL;
	uint8_t len;
	memset(key, 0, sizeof *key);
	if (!(any_prefix ? config_parse_prefix : config_parse_cidr)(s, key->addr, &len, &why)) {
		fprintf(stderr, "ringway limits: invalid CIDR '%s': %s\n", s, why);
		return -1;
	}
	key->prefixlen = len;
	return 0;
}

/* set CIDR (--rate N [--burst N] | --deny | --allow) */
static int set(const char *pin_dir, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "rate", required_argument, NULL, 'r' }, { "burst", required_argument, NULL, 'b' },
		{ "deny", no_argument, NULL, 'd' },       { "allow", no_argument, NULL, 'a' },
		{ 0 },
	};
	struct rw_policy p = { .action = RW_POLICY_LIMIT };
	int have_rate = 0, have_burst = 0, actions = 0, c;
	optind = 0; /* 0: glibc starts a fresh scan */
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'r') {
			if (parse_count(optarg, "--rate", RATE_MAX, &p.rate))
				return 2;
			have_rate = 1;
		} else if (c == 'b') {
			if (parse_count(optarg, "--burst", COUNT_MAX, &p.burst))
				return 2;
			have_burst = 1;
		} else if (c == 'd' || c == 'a') {
			p.action = c == 'd' ? RW_POLICY_DENY : RW_POLICY_ALLOW;
			actions++;
		} else {
			fprintf(stderr, "ringway limits set: unknown option '%s'\n", argv[optind - 1]);
			return 2;
		}
	}
	if (optind != argc - 1 || actions + have_rate != 1 || (have_burst && !have_rate)) {
		fprintf(stderr, "ringway limits set: give one CIDR and either --rate N [--burst N], "
				"--deny or --allow\n");
		return 2;
	}
	if (have_rate && p.rate == 0) {
		fprintf(stderr, "ringway limits set: --rate must be at least 1 (--deny drops every "
				"packet)\n");
		return 2;
	}
	if (have_rate && !have_burst)
		p.burst = p.rate * 2;
	if (have_rate && p.burst == 0) {
		fprintf(stderr, "ringway limits set: --burst must be at least 1\n");
		return 2;
	}
	struct rw_policy_key key;
	struct xdp_maps maps;
	if (read_cidr(argv[optind], &key, 0))
		return 2;
	if (open_maps(pin_dir, &maps))
		return 1;
	uint32_t zero = 0;
	struct rw_xdp_config knobs;
	if (bpf_map_lookup_elem(maps.config, &zero, &knobs)) {
		fprintf(stderr, "ringway limits set: cannot read the config map: %s\n",
			strerror(errno));
		xdp_maps_close(&maps);
		return 1;
	}
	if (p.action == RW_POLICY_LIMIT &&
	    config_ipv6_limit_too_long(key.addr, (uint8_t)key.prefixlen, knobs.ipv6_source_prefix)) {
		fprintf(stderr, "ringway limits set: IPv6 sources share one bucket per /%u "
				"(xdp.ipv6_source_prefix): limit the /%u, or --allow or --deny the "
				"address\n", knobs.ipv6_source_prefix, knobs.ipv6_source_prefix);
		xdp_maps_close(&maps);
		return 2;
	}
	int failed = bpf_map_update_elem(maps.policy, &key, &p, BPF_ANY);
	int e = errno;
	xdp_maps_close(&maps);
	if (failed) {
		fprintf(stderr, "ringway limits set: %s\n", strerror(e));
		return 1;
	}
	char prefix[64];
	xdp_format_prefix(key.addr, key.prefixlen, prefix, sizeof prefix, 0);
	if (p.action == RW_POLICY_LIMIT)
		printf("%s: rate %u/s burst %u\n", prefix, p.rate, p.burst);
	else
		printf("%s: %s\n", prefix, action_name(p.action));
	return 0;
}

static int unset(const char *pin_dir, int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "ringway limits unset: give one CIDR\n");
		return 2;
	}
	struct rw_policy_key key;
	struct xdp_maps maps;
	if (read_cidr(argv[1], &key, 1))
		return 2;
	if (open_maps(pin_dir, &maps))
		return 1;
	char prefix[64];
	xdp_format_prefix(key.addr, key.prefixlen, prefix, sizeof prefix, 0);
	int failed = bpf_map_delete_elem(maps.policy, &key);
	int e = errno;
	xdp_maps_close(&maps);
	if (failed) {
		if (e == ENOENT)
			fprintf(stderr, "ringway limits unset: no policy for %s\n", prefix);
		else
			fprintf(stderr, "ringway limits unset: %s\n", strerror(e));
		return 1;
	}
	printf("%s: removed\n", prefix);
	return 0;
}

struct source_row {
	struct rw_source_key key;
	struct rw_source s;
};

/* Ranks sources by drops, then by packets passed. */
static int ranks_below(const struct source_row *a, const struct source_row *b)
{
	if (a->s.dropped != b->s.dropped)
		return a->s.dropped < b->s.dropped;
	return a->s.passed < b->s.passed;
}

/* The N highest-ranked sources seen so far: a min-heap, its lowest-ranked at the root. */
struct top_heap {
	struct source_row *rows;
	size_t n, cap;
	uint64_t seen;
};

static void sift_down(struct top_heap *h, size_t i)
{
	for (;;) {
		size_t low = i, l = 2 * i + 1, r = l + 1;
		if (l < h->n && ranks_below(&h->rows[l], &h->rows[low]))
			low = l;
		if (r < h->n && ranks_below(&h->rows[r], &h->rows[low]))
			low = r;
		if (low == i)
			return;
		struct source_row t = h->rows[i];
		h->rows[i] = h->rows[low];
		h->rows[low] = t;
		i = low;
	}
}

static void offer(const struct rw_source_key *key, const struct rw_source *value, void *ctx)
{
	struct top_heap *h = ctx;
	struct source_row row = { .key = *key, .s = *value };
	h->seen++;
	if (h->n < h->cap) {
		size_t i = h->n++;
		h->rows[i] = row;
		while (i && ranks_below(&h->rows[i], &h->rows[(i - 1) / 2])) {
			struct source_row t = h->rows[i];
			h->rows[i] = h->rows[(i - 1) / 2];
			h->rows[(i - 1) / 2] = t;
			i = (i - 1) / 2;
		}
	} else if (h->cap && ranks_below(&h->rows[0], &row)) {
		h->rows[0] = row;
		sift_down(h, 0);
	}
}

static int by_rank(const void *a, const void *b)
{
	return ranks_below(a, b) ? 1 : ranks_below(b, a) ? -1 : 0;
}

static int top(const char *pin_dir, int argc, char **argv)
{
	uint32_t want = 10;
	if (argc > 2 || (argc == 2 && parse_count(argv[1], "N", TOP_MAX, &want)))
		return 2;
	if (want == 0) {
		fprintf(stderr, "ringway limits top: N must be above 0\n");
		return 2;
	}
	struct xdp_maps maps;
	if (open_maps(pin_dir, &maps))
		return 1;
	uint32_t zero = 0;
	struct rw_xdp_config c = { 0 };
	bpf_map_lookup_elem(maps.config, &zero, &c);
	struct top_heap heap = { .cap = want };
	heap.rows = calloc(heap.cap, sizeof *heap.rows);
	int rc = heap.rows ? xdp_sources_walk(maps.sources, offer, &heap) : -ENOMEM;
	xdp_maps_close(&maps);
	if (rc) {
		fprintf(stderr, "ringway limits top: %s\n", strerror(-rc));
		free(heap.rows);
		return 1;
	}
	qsort(heap.rows, heap.n, sizeof *heap.rows, by_rank);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
	/* IPv6 sources aggregated per prefix show as that prefix */
	uint32_t v6_len = c.ipv6_source_prefix && c.ipv6_source_prefix < 128 ? c.ipv6_source_prefix
									      : 128;
	printf("%-40s %12s %12s %10s\n", "source", "passed", "dropped", "last seen");
	for (size_t i = 0; i < heap.n; i++) {
		const struct source_row *r = &heap.rows[i];
		char addr[64];
		static const uint8_t mapped[12] = { [10] = 0xff, [11] = 0xff };
		int v4 = memcmp(r->key.addr, mapped, 12) == 0;
		xdp_format_prefix(r->key.addr, v4 ? 128 : v6_len, addr, sizeof addr, 1);
		uint64_t ago = now_ns > r->s.last_seen_ns ? now_ns - r->s.last_seen_ns : 0;
		printf("%-40s %12llu %12llu %8.1fs\n", addr, (unsigned long long)r->s.passed,
		       (unsigned long long)r->s.dropped, (double)ago / 1e9);
	}
	printf("(%llu sources tracked)\n", (unsigned long long)heap.seen);
	free(heap.rows);
	return 0;
}

static int stats(const struct xdp_maps *maps)
{
	struct rw_xdp_metrics m;
	int rc = xdp_metrics_read(maps->metrics, &m);
	if (rc) {
		fprintf(stderr, "ringway limits stats: %s\n", strerror(-rc));
		return 1;
	}
	const struct {
		const char *name;
		uint64_t value;
	} rows[] = {
		{ "passed_packets", m.passed_packets },
		{ "passed_bytes", m.passed_bytes },
		{ "rate_dropped_packets", m.rate_dropped_packets },
		{ "rate_dropped_bytes", m.rate_dropped_bytes },
		{ "deny_dropped_packets", m.deny_dropped_packets },
		{ "deny_dropped_bytes", m.deny_dropped_bytes },
		{ "policy_allowed", m.policy_allowed },
		{ "parse_errors", m.parse_errors },
		{ "new_sources", m.new_sources },
		{ "admission_overflows", m.admission_overflows },
		{ "sources_tracked", xdp_sources_count(maps->sources) },
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
		printf("%-22s %llu\n", rows[i].name, (unsigned long long)rows[i].value);
	return 0;
}

/* The pin directory: --pin-path, else xdp.pin_path of -c FILE, else the default. */
static int pin_dir_from_config(const char *path, char *out, size_t size)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_file(path, &errs);
	for (uint32_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	config_errors_free(&errs);
	if (!cfg)
		return -1;
	snprintf(out, size, "%s", cfg->xdp.pin_path ? cfg->xdp.pin_path : RW_XDP_PIN_DIR);
	config_unref(cfg);
	return 0;
}

int limits_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "pin-path", required_argument, NULL, 'p' },
		{ "config", required_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	char pin_dir[256] = RW_XDP_PIN_DIR;
	int c;
	optind = 0; /* 0: glibc starts a fresh scan */
	opterr = 0; /* unknown options are reported below, as ringway limits */
	/* "+": stop at the command, whose own options follow it. */
	while ((c = getopt_long(argc, argv, "+c:h", opts, NULL)) != -1) {
		if (c == 'p') {
			snprintf(pin_dir, sizeof pin_dir, "%s", optarg);
		} else if (c == 'c') {
			if (pin_dir_from_config(optarg, pin_dir, sizeof pin_dir))
				return 1;
		} else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			fprintf(stderr, "ringway limits: unknown option '%s'\n", argv[optind - 1]);
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[optind];
	int sub_argc = argc - optind;
	char **sub_argv = argv + optind;
	static const char *const commands[] = { "show", "set", "unset", "top", "stats" };
	int known = 0;
	for (size_t i = 0; i < 5; i++)
		known |= strcmp(cmd, commands[i]) == 0;
	if (!known) {
		fprintf(stderr, "ringway limits: unknown command '%s'\n", cmd);
		usage(stderr);
		return 2;
	}
	if ((!strcmp(cmd, "show") || !strcmp(cmd, "stats")) && sub_argc != 1) {
		fprintf(stderr, "ringway limits %s: takes no arguments\n", cmd);
		return 2;
	}
	if (!strcmp(cmd, "set"))
		return set(pin_dir, sub_argc, sub_argv);
	if (!strcmp(cmd, "unset"))
		return unset(pin_dir, sub_argc, sub_argv);
	if (!strcmp(cmd, "top"))
		return top(pin_dir, sub_argc, sub_argv);
	struct xdp_maps maps;
	if (open_maps(pin_dir, &maps))
		return 1;
	int rc = !strcmp(cmd, "show") ? show(&maps) : stats(&maps);
	xdp_maps_close(&maps);
	return rc;
}
