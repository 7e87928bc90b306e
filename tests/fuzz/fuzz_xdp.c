/* fuzz_xdp.c — libFuzzer harness for the XDP limiter's packet parser, run in the kernel: every
 * input is a frame given to the real program with BPF_PROG_TEST_RUN. The verifier already proves
 * the program never reads out of bounds; this checks what it decides. With no policies and a
 * limit no source can reach, every frame must pass, and each run must add exactly one packet to
 * the passed counter (and at most one parse error). libFuzzer cannot see the program's branches,
 * so what the program did (parse error or not, bucket reached or not) by frame length is fed
 * back as extra counters: inputs that parse further are kept and mutated. Needs root to load the
 * program: without it, says so and stops (and fails when CI=true). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_ether.h>

#include "limiter.h"
#include "limiter.skel.h"
#include "xdp.h"

static struct limiter *skel;
static int prog_fd, metrics_fd, ncpus;
static struct rw_xdp_metrics *per_cpu;

/* libFuzzer's extra coverage: one counter per (parse error, bucket reached, length / 4). */
__attribute__((used, section("__libfuzzer_extra_counters"))) static uint8_t outcomes[2][2][256];

static struct rw_xdp_metrics metrics_sum(void)
{
	struct rw_xdp_metrics sum = { 0 };
	uint32_t zero = 0;
	if (bpf_map_lookup_elem(metrics_fd, &zero, per_cpu))
		abort();
	for (int c = 0; c < ncpus; c++) {
		sum.passed_packets += per_cpu[c].passed_packets;
		sum.parse_errors += per_cpu[c].parse_errors;
		sum.rate_dropped_packets += per_cpu[c].rate_dropped_packets;
		sum.deny_dropped_packets += per_cpu[c].deny_dropped_packets;
		sum.new_sources += per_cpu[c].new_sources;
	}
	return sum;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	skel = limiter__open_and_load();
	if (!skel && !xdp_permitted()) {
		const char *ci = getenv("CI");
		int failing = ci && !strcmp(ci, "true");
		fprintf(stderr, "fuzz_xdp: needs CAP_BPF and CAP_NET_ADMIN (root) to load the XDP "
				"program; %s\n",
			failing ? "CI=true: failing" : "skipped");
		exit(failing);
	}
	if (!skel) {
		fprintf(stderr, "fuzz_xdp: cannot load the XDP program: %s\n", strerror(errno));
		exit(1);
	}
	prog_fd = bpf_program__fd(skel->progs.ringway_xdp);
	metrics_fd = bpf_map__fd(skel->maps.metrics);
	ncpus = libbpf_num_possible_cpus();
	per_cpu = calloc((size_t)ncpus, sizeof *per_cpu);
	/* every mode's paths: all packets guarded, a limit no run reaches */
	struct rw_xdp_config cfg = { .limit = RW_LIMIT_ALL, .rate = 1000000, .burst = 100000000,
				     .new_sources_per_cpu = 100000000, .fallback_rate = 1000000,
				     .fallback_burst = 100000000, .ipv6_source_prefix = 64 };
	uint32_t zero = 0;
	if (!per_cpu || bpf_map__update_elem(skel->maps.config, &zero, sizeof zero, &cfg,
					     sizeof cfg, BPF_ANY))
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* BPF_PROG_TEST_RUN takes XDP frames of an Ethernet header up to a page less headroom */
	if (size < ETH_HLEN || size > 3000)
		return 0;
	struct rw_xdp_metrics before = metrics_sum();
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = data, .data_size_in = (uint32_t)size);
	if (bpf_prog_test_run_opts(prog_fd, &opts)) {
		fprintf(stderr, "fuzz_xdp: BPF_PROG_TEST_RUN: %s\n", strerror(errno));
		abort();
	}
	struct rw_xdp_metrics after = metrics_sum();
	/* every frame is a new source while the LRU has room; after that, sources repeat */
	outcomes[after.parse_errors != before.parse_errors][after.new_sources != before.new_sources]
		[size / 4 < 256 ? size / 4 : 255]++;
	if (opts.retval != XDP_PASS || after.passed_packets != before.passed_packets + 1 ||
	    after.parse_errors > before.parse_errors + 1 ||
	    after.rate_dropped_packets != before.rate_dropped_packets ||
	    after.deny_dropped_packets != before.deny_dropped_packets) {
		fprintf(stderr, "fuzz_xdp: verdict %u, passed +%llu, parse errors +%llu\n",
			opts.retval, (unsigned long long)(after.passed_packets - before.passed_packets),
			(unsigned long long)(after.parse_errors - before.parse_errors));
		abort();
	}
	return 0;
}
