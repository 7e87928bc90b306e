/* test_limiter.c — the XDP limiter (bpf/limiter.bpf.c) run in the kernel with BPF_PROG_TEST_RUN on
 * crafted frames, through its skeleton: parsing (VLAN/QinQ, IPv4 options and fragments, IPv6
 * extension header chains, truncation at every length, malformed headers), what is guarded (mode
 * syn/all, ports, fragments), policy precedence, the GCRA bucket exact to the packet, admission of
 * new sources and the fallback bucket, and the counters. Each test loads a fresh program, so maps
 * start empty. Time is never waited for: a test moves a bucket or the admission window by
 * rewriting its stored time, and wherever counts must be exact the interval (500 ms or more) is
 * far above a test's run time (a few ms). Needs root (CAP_BPF, CAP_NET_ADMIN): skips without it,
 * fails instead when CI=true. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "limiter.h"
#include "limiter.skel.h"

#define SEC_NS 1000000000ull
#define GUARDED_PORT 443
#define OTHER_PORT 80

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_ACK 0x10

#define IPV4_MF 0x2000 /* frag_off flags, host order */
#define IPV4_DF 0x4000

/* ---- the program under test ---- */

static struct limiter *skel;
static int cpu; /* the CPU this test is pinned to: its slot of the per-CPU maps */

/* Pins the test to the CPU it is on (BPF_PROG_TEST_RUN runs the program on the caller's CPU, so
 * every run uses the same per-CPU slot), then loads the program. */
static void setup(void)
{
	cpu = sched_getcpu();
	cr_assert_geq(cpu, 0, "sched_getcpu: %s", strerror(errno));
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	cr_assert_eq(sched_setaffinity(0, sizeof set, &set), 0, "sched_setaffinity: %s",
		     strerror(errno));

	skel = limiter__open_and_load();
	if (!skel && errno == EPERM) {
		const char *ci = getenv("CI");
		if (ci && strcmp(ci, "true") == 0)
			cr_assert_fail("needs root (CAP_BPF) to load the XDP program; CI=true: failing, not skipping");
		cr_skip_test("needs root (CAP_BPF) to load the XDP program");
	}
	cr_assert_not_null(skel, "loading the XDP program: %s", strerror(errno));
}

static void teardown(void)
{
	limiter__destroy(skel);
}

TestSuite(limiter, .init = setup, .fini = teardown);

/* ---- frames ---- */

struct frame {
	uint8_t b[256];
	size_t len;
	size_t l3;      /* offset of the IP header */
	int family;     /* 4 or 6 once an IP header is added, else 0 */
	size_t next_at; /* offset of the byte naming the protocol of the next header */
};

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = v >> 8;
	p[1] = v & 0xff;
}

/* Appends n bytes (zeros if p is NULL), keeps the IP length field in step, returns their offset. */
static size_t put(struct frame *f, const void *p, size_t n)
{
	cr_assert_leq(f->len + n, sizeof f->b, "frame longer than %zu bytes", sizeof f->b);
	size_t at = f->len;
	if (p)
		memcpy(f->b + at, p, n);
	else
		memset(f->b + at, 0, n);
	f->len += n;
	if (f->family == 4)
		put16(f->b + f->l3 + offsetof(struct iphdr, tot_len), f->len - f->l3);
	else if (f->family == 6)
		put16(f->b + f->l3 + offsetof(struct ipv6hdr, payload_len),
		      f->len - f->l3 - sizeof(struct ipv6hdr));
	return at;
}

/* Names proto in the previous header and appends this header, whose own next-protocol byte is at
 * next_off (if it has one). */
static void chain(struct frame *f, uint8_t proto, const void *hdr, size_t n, size_t next_off)
{
	f->b[f->next_at] = proto;
	size_t at = put(f, hdr, n);
	f->next_at = at + next_off;
}

/* Ethernet with `tags` VLAN tags in front of ethertype: one is 802.1Q (0x8100); with more, the
 * outer is 802.1ad (QinQ, 0x88a8) and the inner ones 802.1Q. */
static void ethernet(struct frame *f, int tags, uint16_t ethertype)
{
	static const uint8_t macs[12] = { 2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2 };
	put(f, macs, sizeof macs);
	for (int i = 0; i < tags; i++) {
		uint8_t tag[4];
		put16(tag, i == 0 && tags > 1 ? ETH_P_8021AD : ETH_P_8021Q);
		put16(tag + 2, 100 + i); /* TCI: VLAN id */
		put(f, tag, sizeof tag);
	}
	uint8_t type[2];
	put16(type, ethertype);
	put(f, type, sizeof type);
}

/* IPv4 from src to 192.0.2.1 with `options` bytes of NOP options (a multiple of 4) and frag_off
 * (host order: IPV4_MF, IPV4_DF | offset in 8-octet units). The next header names the protocol. */
static void ipv4(struct frame *f, const char *src, uint16_t frag_off, size_t options)
{
	struct iphdr ip = { .version = 4, .ihl = (sizeof ip + options) / 4, .ttl = 64,
			    .frag_off = htons(frag_off) };
	cr_assert_eq(inet_pton(AF_INET, src, &ip.saddr), 1, "bad IPv4 address %s", src);
	inet_pton(AF_INET, "192.0.2.1", &ip.daddr);
	f->l3 = put(f, &ip, sizeof ip);
	f->family = 4;
	f->next_at = f->l3 + offsetof(struct iphdr, protocol);
	uint8_t nops[40];
	memset(nops, 1, sizeof nops);
	put(f, nops, options);
}

/* IPv6 from src to 2001:db8:ffff::1. The next header names itself. */
static void ipv6(struct frame *f, const char *src)
{
	struct ipv6hdr ip6 = { .version = 6, .hop_limit = 64 };
	cr_assert_eq(inet_pton(AF_INET6, src, &ip6.saddr), 1, "bad IPv6 address %s", src);
	inet_pton(AF_INET6, "2001:db8:ffff::1", &ip6.daddr);
	f->l3 = put(f, &ip6, sizeof ip6);
	f->family = 6;
	f->next_at = f->l3 + offsetof(struct ipv6hdr, nexthdr);
}

/* Ethernet with `tags` VLAN tags and the IP header of src, IPv6 if it has a colon. */
static void l2_l3(struct frame *f, int tags, const char *src)
{
	bool v6 = strchr(src, ':') != NULL;
	ethernet(f, tags, v6 ? ETH_P_IPV6 : ETH_P_IP);
	if (v6)
		ipv6(f, src);
	else
		ipv4(f, src, 0, 0);
}

/* An IPv6 extension header of `type` and `len` bytes: Hop-by-Hop, Routing, Destination Options
 * (len a multiple of 8, counted in 8 octets minus 1), AH (a multiple of 4 from 12, counted in 4
 * octets minus 2); the body is zeros (Pad1 options). For a Fragment header use ipv6_fragment. */
static void ipv6_ext(struct frame *f, uint8_t type, size_t len)
{
	uint8_t h[64] = { 0 };
	cr_assert_leq(len, sizeof h);
	h[1] = type == IPPROTO_AH ? len / 4 - 2 : len / 8 - 1;
	chain(f, type, h, len, 0);
}

/* An IPv6 Fragment header: offset in 8-octet units, more: the M flag. */
static void ipv6_fragment(struct frame *f, uint16_t offset, bool more)
{
	uint8_t h[8] = { 0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78 };
	put16(h + 2, (uint16_t)(offset << 3) | more);
	chain(f, IPPROTO_FRAGMENT, h, sizeof h, 0);
}

/* Adds a chain of IPv6 extension headers of these types, each of a different length; a Fragment
 * header is that of a first fragment (offset 0, M set). */
static void ipv6_chain(struct frame *f, const uint8_t *types, int n)
{
	for (int i = 0; i < n; i++) {
		if (types[i] == IPPROTO_FRAGMENT)
			ipv6_fragment(f, 0, true);
		else if (types[i] == IPPROTO_AH)
			ipv6_ext(f, IPPROTO_AH, 24);
		else
			ipv6_ext(f, types[i], types[i] == IPPROTO_ROUTING ? 24 : 16);
	}
}

static void tcp(struct frame *f, uint16_t dport, uint8_t flags)
{
	uint8_t h[20] = { [12] = 5 << 4 /* data offset */, [13] = flags };
	put16(h, 40000);
	put16(h + 2, dport);
	put16(h + 14, 65535); /* window */
	chain(f, IPPROTO_TCP, h, sizeof h, 0);
}

/* UDP header (length and checksum left zero: the program ignores them). */
static void udp(struct frame *f, uint16_t dport)
{
	uint8_t h[8] = { 0 };
	put16(h, 40000);
	put16(h + 2, dport);
	chain(f, IPPROTO_UDP, h, sizeof h, 0);
}

/* An echo request, ICMP or ICMPv6 after the IP version. */
static void icmp_echo(struct frame *f)
{
	uint8_t h[8] = { f->family == 6 ? 128 : 8 };
	chain(f, f->family == 6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP, h, sizeof h, 0);
}

static void payload(struct frame *f, size_t n)
{
	uint8_t bytes[64];
	memset(bytes, 'x', sizeof bytes);
	cr_assert_leq(n, sizeof bytes);
	put(f, bytes, n);
}

static struct frame tcp_frame(const char *src, uint16_t dport, uint8_t flags)
{
	struct frame f = { 0 };
	l2_l3(&f, 0, src);
	tcp(&f, dport, flags);
	return f;
}

static struct frame syn_frame(const char *src, uint16_t dport)
{
	return tcp_frame(src, dport, TCP_SYN);
}

static struct frame udp_frame(const char *src, uint16_t dport)
{
	struct frame f = { 0 };
	l2_l3(&f, 0, src);
	udp(&f, dport);
	return f;
}

static struct frame icmp_frame(const char *src)
{
	struct frame f = { 0 };
	l2_l3(&f, 0, src);
	icmp_echo(&f);
	return f;
}

/* ---- runs ---- */

/* Runs the program on the first len bytes of f and returns its verdict. */
static int run_len(const struct frame *f, size_t len)
{
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = f->b, .data_size_in = len, .repeat = 1);
	int err = bpf_prog_test_run_opts(bpf_program__fd(skel->progs.ringway_xdp), &opts);
	cr_assert_eq(err, 0, "BPF_PROG_TEST_RUN on %zu bytes: %s", len, strerror(-err));
	return opts.retval;
}

static const char *verdict_name(int v)
{
	return v == XDP_PASS ? "XDP_PASS" : v == XDP_DROP ? "XDP_DROP" : "another verdict";
}

/* Runs f `times` times; each run must return verdict. */
static void expect(const struct frame *f, int times, int verdict)
{
	for (int i = 0; i < times; i++) {
		int got = run_len(f, f->len);
		cr_assert_eq(got, verdict, "run %d of %d: %s, expected %s", i + 1, times,
			     verdict_name(got), verdict_name(verdict));
	}
}

/* ---- maps ---- */

static const __u32 zero_key;

static void set_config(struct rw_xdp_config c)
{
	cr_assert_eq(bpf_map__update_elem(skel->maps.config, &zero_key, sizeof zero_key, &c,
					  sizeof c, BPF_ANY), 0);
}

/* A config in mode `limit` guarding GUARDED_PORT, rate and burst by default. */
static struct rw_xdp_config guarding(enum rw_xdp_limit limit, __u32 rate, __u32 burst)
{
	return (struct rw_xdp_config){ .limit = limit, .rate = rate, .burst = burst, .nports = 1,
				       .ports = { GUARDED_PORT } };
}

/* The 16-byte key of an address (IPv4 mapped as ::ffff:a.b.c.d); returns its family. */
static int address(const char *text, __u8 out[16])
{
	memset(out, 0, 16);
	if (inet_pton(AF_INET6, text, out) == 1)
		return 6;
	out[10] = out[11] = 0xff;
	cr_assert_eq(inet_pton(AF_INET, text, out + 12), 1, "bad address %s", text);
	return 4;
}

/* Adds the policy of a prefix "a.b.c.d/n" or "x::/n". */
static void add_policy(const char *cidr, enum rw_policy_action action, __u32 rate, __u32 burst)
{
	char text[64];
	snprintf(text, sizeof text, "%s", cidr);
	char *slash = strchr(text, '/');
	cr_assert_not_null(slash, "no prefix length in %s", cidr);
	*slash = '\0';
	struct rw_policy_key key;
	int family = address(text, key.addr);
	key.prefixlen = atoi(slash + 1) + (family == 4 ? 96 : 0);
	struct rw_policy pol = { .action = action, .rate = rate, .burst = burst };
	cr_assert_eq(bpf_map__update_elem(skel->maps.policy, &key, sizeof key, &pol, sizeof pol,
					  BPF_ANY), 0, "adding the policy of %s", cidr);
}

static bool find_source(const char *addr, struct rw_source *out)
{
	struct rw_source_key key;
	address(addr, key.addr);
	return bpf_map__lookup_elem(skel->maps.sources, &key, sizeof key, out, sizeof *out, 0) == 0;
}

/* The entry of a source that must be in the sources map. */
static struct rw_source source(const char *addr)
{
	struct rw_source s;
	cr_assert(find_source(addr, &s), "%s is not in the sources map", addr);
	return s;
}

/* Moves a source's bucket back by ns, as if ns had passed since its last packet. */
static void rewind_source(const char *addr, __u64 ns)
{
	struct rw_source_key key;
	address(addr, key.addr);
	struct rw_source s = source(addr);
	s.tat_ns -= ns;
	cr_assert_eq(bpf_map__update_elem(skel->maps.sources, &key, sizeof key, &s, sizeof s,
					  BPF_EXIST), 0);
}

static size_t source_count(void)
{
	struct rw_source_key key, next;
	size_t n = 0;
	for (const void *prev = NULL;
	     bpf_map__get_next_key(skel->maps.sources, prev, &next, sizeof next) == 0; prev = &key) {
		key = next;
		n++;
	}
	return n;
}

/* The metrics, added up across CPUs. */
static struct rw_xdp_metrics metrics(void)
{
	int ncpus = libbpf_num_possible_cpus();
	cr_assert_gt(ncpus, 0);
	struct rw_xdp_metrics per_cpu[ncpus], sum = { 0 };
	cr_assert_eq(bpf_map__lookup_elem(skel->maps.metrics, &zero_key, sizeof zero_key, per_cpu,
					  sizeof per_cpu, 0), 0);
	for (int i = 0; i < ncpus; i++) {
		sum.passed_packets += per_cpu[i].passed_packets;
		sum.passed_bytes += per_cpu[i].passed_bytes;
		sum.rate_dropped_packets += per_cpu[i].rate_dropped_packets;
		sum.rate_dropped_bytes += per_cpu[i].rate_dropped_bytes;
		sum.deny_dropped_packets += per_cpu[i].deny_dropped_packets;
		sum.deny_dropped_bytes += per_cpu[i].deny_dropped_bytes;
		sum.policy_allowed += per_cpu[i].policy_allowed;
		sum.parse_errors += per_cpu[i].parse_errors;
		sum.new_sources += per_cpu[i].new_sources;
		sum.admission_overflows += per_cpu[i].admission_overflows;
	}
	return sum;
}

/* Every packet counter must be as in want (fields left out: zero); bytes are not compared. */
static void expect_metrics(struct rw_xdp_metrics want)
{
	struct rw_xdp_metrics got = metrics();
#define SAME(field) cr_expect_eq(got.field, want.field, #field ": %llu, expected %llu", \
				 (unsigned long long)got.field, (unsigned long long)want.field)
	SAME(passed_packets);
	SAME(rate_dropped_packets);
	SAME(deny_dropped_packets);
	SAME(policy_allowed);
	SAME(parse_errors);
	SAME(new_sources);
	SAME(admission_overflows);
#undef SAME
}

/* Moves this CPU's admission window back by ns; returns how many sources it had admitted. */
static __u64 rewind_admission(__u64 ns)
{
	int ncpus = libbpf_num_possible_cpus();
	struct rw_admission per_cpu[ncpus];
	cr_assert_eq(bpf_map__lookup_elem(skel->maps.admission, &zero_key, sizeof zero_key,
					  per_cpu, sizeof per_cpu, 0), 0);
	__u64 admitted = per_cpu[cpu].admitted;
	per_cpu[cpu].window_start_ns -= ns;
	cr_assert_eq(bpf_map__update_elem(skel->maps.admission, &zero_key, sizeof zero_key,
					  per_cpu, sizeof per_cpu, BPF_EXIST), 0);
	return admitted;
}

/* ---- what is guarded ---- */

Test(limiter, ipv4_syn_to_guarded_port_is_limited)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	struct frame syn = syn_frame("198.51.100.7", GUARDED_PORT);

	expect(&syn, 5, XDP_PASS);
	expect(&syn, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 5, .rate_dropped_packets = 1,
						.new_sources = 1 });
	struct rw_xdp_metrics m = metrics();
	cr_expect_eq(m.passed_bytes, 5 * syn.len);
	cr_expect_eq(m.rate_dropped_bytes, syn.len);
}

Test(limiter, syn_to_unguarded_port_passes_unlimited)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	struct frame syn = syn_frame("198.51.100.7", OTHER_PORT);

	expect(&syn, 20, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 20 });
	cr_expect_eq(source_count(), 0, "an unguarded packet created a source entry");
}

Test(limiter, non_ip_frame_passes_without_parse_error)
{
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_ALL, .rate = 1, .burst = 1 });
	struct frame arp = { 0 };
	ethernet(&arp, 0, ETH_P_ARP);
	put(&arp, NULL, 28);

	expect(&arp, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10 });
	cr_expect_eq(metrics().passed_bytes, 10 * arp.len);
}

Test(limiter, syn_mode_limits_only_syn)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	const char *src = "198.51.100.7";
	struct frame syn = syn_frame(src, GUARDED_PORT);
	struct frame ack = tcp_frame(src, GUARDED_PORT, TCP_ACK);
	struct frame syn_ack = tcp_frame(src, GUARDED_PORT, TCP_SYN | TCP_ACK);
	struct frame fin_ack = tcp_frame(src, GUARDED_PORT, TCP_FIN | TCP_ACK);
	struct frame dgram = udp_frame(src, GUARDED_PORT);
	struct frame ping = icmp_frame(src);

	expect(&syn, 5, XDP_PASS);
	expect(&syn, 1, XDP_DROP);
	/* the source's bucket is empty, yet everything but a SYN passes */
	expect(&ack, 10, XDP_PASS);
	expect(&syn_ack, 10, XDP_PASS);
	expect(&fin_ack, 10, XDP_PASS);
	expect(&dgram, 10, XDP_PASS);
	expect(&ping, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 55, .rate_dropped_packets = 1,
						.new_sources = 1 });
	struct rw_source s = source(src);
	cr_expect_eq(s.passed, 5);
	cr_expect_eq(s.dropped, 1);
}

Test(limiter, all_mode_limits_every_packet_to_guarded_port)
{
	set_config(guarding(RW_LIMIT_ALL, 1, 5));
	const char *src = "198.51.100.7";
	struct frame ack = tcp_frame(src, GUARDED_PORT, TCP_ACK);
	struct frame syn_ack = tcp_frame(src, GUARDED_PORT, TCP_SYN | TCP_ACK);
	struct frame syn = syn_frame(src, GUARDED_PORT);
	struct frame dgram = udp_frame(src, GUARDED_PORT);

	expect(&ack, 2, XDP_PASS);
	expect(&syn_ack, 1, XDP_PASS);
	expect(&dgram, 1, XDP_PASS);
	expect(&syn, 1, XDP_PASS);
	expect(&ack, 1, XDP_DROP);
	expect(&dgram, 1, XDP_DROP);
	expect(&syn, 1, XDP_DROP);
	/* other ports and ICMP are not guarded while ports are listed */
	struct frame other_ack = tcp_frame(src, OTHER_PORT, TCP_ACK);
	struct frame other_dgram = udp_frame(src, OTHER_PORT);
	struct frame ping = icmp_frame(src);
	expect(&other_ack, 10, XDP_PASS);
	expect(&other_dgram, 10, XDP_PASS);
	expect(&ping, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 35, .rate_dropped_packets = 3,
						.new_sources = 1 });
}

Test(limiter, all_mode_without_ports_limits_icmp_too)
{
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_ALL, .rate = 1, .burst = 5 });
	struct frame ping = icmp_frame("198.51.100.7");
	struct frame dgram = udp_frame("198.51.100.7", 9999);
	struct frame ping6 = icmp_frame("2001:db8:7::7");

	expect(&ping, 3, XDP_PASS);
	expect(&dgram, 2, XDP_PASS);
	expect(&ping, 1, XDP_DROP);
	expect(&dgram, 1, XDP_DROP);
	expect(&ping6, 5, XDP_PASS);
	expect(&ping6, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10, .rate_dropped_packets = 3,
						.new_sources = 2 });
}

Test(limiter, syn_mode_without_ports_limits_syn_to_any_port)
{
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_SYN, .rate = 1, .burst = 5 });
	const char *src = "198.51.100.7";
	const uint16_t ports[] = { 1, 22, 80, 443, 65535 };

	for (size_t i = 0; i < sizeof ports / sizeof ports[0]; i++) {
		struct frame syn = syn_frame(src, ports[i]);
		expect(&syn, 1, XDP_PASS);
	}
	struct frame syn = syn_frame(src, 8080);
	expect(&syn, 1, XDP_DROP);
	struct frame ack = tcp_frame(src, 8080, TCP_ACK);
	struct frame ping = icmp_frame(src);
	expect(&ack, 10, XDP_PASS);
	expect(&ping, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 25, .rate_dropped_packets = 1,
						.new_sources = 1 });
}

/* Every one of the nports listed ports is guarded, up to the last entry; entries past nports
 * are not. */
Test(limiter, every_listed_port_is_guarded)
{
	struct rw_xdp_config c = { .limit = RW_LIMIT_SYN, .rate = 1, .burst = 5, .nports = 3,
				   .ports = { 22, 8443, 443, 9000 } };
	set_config(c);
	const char *src = "198.51.100.7";
	const uint16_t listed[] = { 22, 8443, 443, 443, 8443, 22 };

	for (int i = 0; i < 6; i++) {
		struct frame syn = syn_frame(src, listed[i]);
		expect(&syn, 1, i < 5 ? XDP_PASS : XDP_DROP);
	}
	struct frame past = syn_frame(src, 9000);
	expect(&past, 10, XDP_PASS);

	c.nports = RW_XDP_MAX_PORTS;
	for (int i = 0; i < RW_XDP_MAX_PORTS; i++)
		c.ports[i] = 7000 + i;
	set_config(c);
	struct frame last = syn_frame("198.51.100.8", 7000 + RW_XDP_MAX_PORTS - 1);
	expect(&last, 5, XDP_PASS);
	expect(&last, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 20, .rate_dropped_packets = 2,
						.new_sources = 2 });
}

/* ---- parsing ---- */

Test(limiter, vlan_and_qinq_frames_are_limited_like_untagged)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	const char *sources[] = { "198.51.100.1", "198.51.100.2", "198.51.100.3", "2001:db8:1::1",
				  "2001:db8:1::2" };
	const int tags[] = { 0, 1, 2, 1, 2 };

	for (int i = 0; i < 5; i++) {
		struct frame syn = { 0 }, other = { 0 }, ack = { 0 };
		l2_l3(&syn, tags[i], sources[i]);
		tcp(&syn, GUARDED_PORT, TCP_SYN);
		l2_l3(&other, tags[i], sources[i]);
		tcp(&other, OTHER_PORT, TCP_SYN);
		l2_l3(&ack, tags[i], sources[i]);
		tcp(&ack, GUARDED_PORT, TCP_ACK);

		expect(&syn, 5, XDP_PASS);
		expect(&syn, 1, XDP_DROP);
		expect(&other, 3, XDP_PASS); /* the port was read from the right place */
		expect(&ack, 3, XDP_PASS);   /* and so were the flags */
		struct rw_source s = source(sources[i]);
		cr_expect_eq(s.passed, 5, "%s with %d tags", sources[i], tags[i]);
		cr_expect_eq(s.dropped, 1, "%s with %d tags", sources[i], tags[i]);
	}
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 55, .rate_dropped_packets = 5,
						.new_sources = 5 });
}

Test(limiter, three_vlan_tags_are_a_parse_error)
{
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_ALL, .rate = 1, .burst = 5 });
	struct frame syn = { 0 };
	l2_l3(&syn, 3, "198.51.100.7");
	tcp(&syn, GUARDED_PORT, TCP_SYN);

	expect(&syn, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10, .parse_errors = 10 });
	cr_expect_eq(source_count(), 0);
}

/* A SYN behind IPv6 extension headers is limited by its port and flags as without them. */
Test(limiter, ipv6_extension_headers_reach_the_tcp_header)
{
	static const struct {
		const char *name;
		uint8_t types[8];
		int n;
	} chains[] = {
		{ "none", { 0 }, 0 },
		{ "Hop-by-Hop", { IPPROTO_HOPOPTS }, 1 },
		{ "Routing", { IPPROTO_ROUTING }, 1 },
		{ "Destination Options", { IPPROTO_DSTOPTS }, 1 },
		{ "AH", { IPPROTO_AH }, 1 },
		{ "Fragment (first fragment)", { IPPROTO_FRAGMENT }, 1 },
		{ "chain of 5", { IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_AH,
				  IPPROTO_DSTOPTS }, 5 },
		{ "chain of 7 with a fragment", { IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING,
						  IPPROTO_FRAGMENT, IPPROTO_AH, IPPROTO_DSTOPTS,
						  IPPROTO_DSTOPTS }, 7 },
	};
	const int count = sizeof chains / sizeof chains[0];
	set_config(guarding(RW_LIMIT_SYN, 1, 5));

	for (int i = 0; i < count; i++) {
		char src[64];
		snprintf(src, sizeof src, "2001:db8:6::%d", i + 1);
		bool fragment = memchr(chains[i].types, IPPROTO_FRAGMENT, chains[i].n) != NULL;
		struct frame syn = { 0 }, other = { 0 }, ack = { 0 };
		l2_l3(&syn, 0, src);
		ipv6_chain(&syn, chains[i].types, chains[i].n);
		tcp(&syn, GUARDED_PORT, TCP_SYN);
		l2_l3(&other, 0, src);
		ipv6_chain(&other, chains[i].types, chains[i].n);
		tcp(&other, OTHER_PORT, TCP_SYN);
		l2_l3(&ack, 0, src);
		ipv6_chain(&ack, chains[i].types, chains[i].n);
		tcp(&ack, GUARDED_PORT, TCP_ACK);

		expect(&syn, 5, XDP_PASS);
		expect(&syn, 1, XDP_DROP);
		if (!fragment) {
			/* the port and flags were read: an unguarded port and an ACK pass */
			expect(&other, 3, XDP_PASS);
			expect(&ack, 3, XDP_PASS);
		} else { /* fragments are limited whatever their port and flags */
			expect(&other, 1, XDP_DROP);
			expect(&ack, 1, XDP_DROP);
		}
		struct rw_source s = source(src);
		cr_expect_eq(s.passed, 5, "extension headers: %s", chains[i].name);
		cr_expect_eq(s.dropped, fragment ? 3 : 1, "extension headers: %s", chains[i].name);
	}
	cr_expect_eq(metrics().parse_errors, 0);
}

/* MAX_IPV6_EXT_HEADERS is 8: a chain of 8 extension headers still reaches TCP. */
Test(limiter, ipv6_chain_of_eight_extension_headers_is_parsed)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	const uint8_t eight[8] = { IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_DSTOPTS,
				   IPPROTO_DSTOPTS, IPPROTO_DSTOPTS, IPPROTO_DSTOPTS,
				   IPPROTO_DSTOPTS, IPPROTO_DSTOPTS };
	struct frame syn = { 0 };
	l2_l3(&syn, 0, "2001:db8:8::1");
	ipv6_chain(&syn, eight, 8);
	tcp(&syn, GUARDED_PORT, TCP_SYN);

	expect(&syn, 5, XDP_PASS);
	cr_assert_eq(metrics().parse_errors, 0, "a chain of 8 extension headers is a parse error");
	expect(&syn, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 5, .rate_dropped_packets = 1,
						.new_sources = 1 });
}

/* A longer chain is a parse error, but its source was read: the stack may still take the SYN
 * behind it, so the source's deny policy and bucket apply all the same. */
Test(limiter, ipv6_chain_longer_than_eight_is_a_parse_error_and_still_limited)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("2001:db8:9::66/128", RW_POLICY_DENY, 0, 0);
	const uint8_t nine[9] = { IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_DSTOPTS,
				  IPPROTO_DSTOPTS, IPPROTO_DSTOPTS, IPPROTO_DSTOPTS,
				  IPPROTO_DSTOPTS, IPPROTO_DSTOPTS, IPPROTO_DSTOPTS };
	struct frame syn = { 0 }, denied = { 0 };
	l2_l3(&syn, 0, "2001:db8:9::1");
	ipv6_chain(&syn, nine, 9);
	tcp(&syn, GUARDED_PORT, TCP_SYN);
	l2_l3(&denied, 0, "2001:db8:9::66");
	ipv6_chain(&denied, nine, 9);
	tcp(&denied, GUARDED_PORT, TCP_SYN);

	expect(&syn, 5, XDP_PASS);
	expect(&syn, 5, XDP_DROP);
	expect(&denied, 3, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 5, .rate_dropped_packets = 5,
						.deny_dropped_packets = 3, .parse_errors = 13,
						.new_sources = 1 });
}

Test(limiter, malformed_ip_headers_are_parse_errors_and_pass)
{
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_ALL, .rate = 1, .burst = 1 });
	struct frame bad[5];
	for (int i = 0; i < 5; i++) {
		bad[i] = (struct frame){ 0 };
		l2_l3(&bad[i], 0, i < 4 ? "198.51.100.7" : "2001:db8::7");
		tcp(&bad[i], GUARDED_PORT, TCP_SYN);
	}
	uint8_t *ip = bad[0].b + bad[0].l3;
	ip[0] = 0x65; /* version 6 in an IPv4 ethertype */
	ip = bad[1].b + bad[1].l3;
	ip[0] = 0x44; /* ihl 4: shorter than the fixed header */
	ip = bad[2].b + bad[2].l3;
	ip[0] = 0x4f; /* ihl 15: 60 bytes of header, more than the frame has */
	ip = bad[3].b + bad[3].l3;
	put16(ip + 2, 19); /* tot_len shorter than the header */
	ip = bad[4].b + bad[4].l3;
	ip[0] = 0x40; /* version 4 in an IPv6 ethertype */

	for (int i = 0; i < 5; i++)
		expect(&bad[i], 3, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 15, .parse_errors = 15 });
	cr_expect_eq(source_count(), 0);
}

/* Every prefix of a valid frame passes; exactly the prefixes shorter than `parsed` (the bytes the
 * program must read) are parse errors, and every prefix that carries the whole IP header (so its
 * source was read) meets the limiter, parse error or not. */
Test(limiter, truncated_frames_at_every_length_pass)
{
	struct {
		const char *name;
		const char *src;
		struct frame f;
		size_t parsed;
	} cases[5];
	memset(cases, 0, sizeof cases);
	const uint8_t ext[] = { IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_AH };

	/* unfragmented: everything up to the end of the transport header */
	cases[0].name = "IPv4 TCP";
	cases[0].src = "198.51.100.1";
	l2_l3(&cases[0].f, 0, cases[0].src);
	tcp(&cases[0].f, GUARDED_PORT, TCP_SYN);
	cases[0].parsed = cases[0].f.len;
	payload(&cases[0].f, 6);

	cases[1].name = "IPv6 Hop-by-Hop, Routing, Destination Options, AH, TCP";
	cases[1].src = "2001:db8:1::1";
	l2_l3(&cases[1].f, 0, cases[1].src);
	ipv6_chain(&cases[1].f, ext, 4);
	tcp(&cases[1].f, GUARDED_PORT, TCP_SYN);
	cases[1].parsed = cases[1].f.len;
	payload(&cases[1].f, 6);

	cases[2].name = "QinQ IPv4 UDP";
	cases[2].src = "198.51.100.2";
	l2_l3(&cases[2].f, 2, cases[2].src);
	udp(&cases[2].f, GUARDED_PORT);
	cases[2].parsed = cases[2].f.len;
	payload(&cases[2].f, 6);

	/* first fragments: a transport header cut short is still a fragment, not an error; the
	 * IP header (with its options) and the IPv6 Fragment header must be whole */
	cases[3].name = "IPv4 first fragment with options, TCP";
	cases[3].src = "198.51.100.3";
	ethernet(&cases[3].f, 0, ETH_P_IP);
	ipv4(&cases[3].f, cases[3].src, IPV4_MF, 8);
	cases[3].parsed = cases[3].f.len;
	tcp(&cases[3].f, GUARDED_PORT, TCP_SYN);
	payload(&cases[3].f, 6);

	cases[4].name = "IPv6 Hop-by-Hop, first Fragment, TCP";
	cases[4].src = "2001:db8:1::2";
	l2_l3(&cases[4].f, 0, cases[4].src);
	ipv6_ext(&cases[4].f, IPPROTO_HOPOPTS, 8);
	ipv6_fragment(&cases[4].f, 0, true);
	cases[4].parsed = cases[4].f.len;
	tcp(&cases[4].f, GUARDED_PORT, TCP_SYN);
	payload(&cases[4].f, 6);

	/* every parsed prefix meets the limiter (all mode, every port) and none may be dropped */
	set_config((struct rw_xdp_config){ .limit = RW_LIMIT_ALL, .rate = 1, .burst = 1000 });
	__u64 runs = 0, errors = 0;
	for (int c = 0; c < 5; c++) {
		/* BPF_PROG_TEST_RUN refuses XDP data shorter than an Ethernet header (EINVAL on
		 * 6.18), so the shortest prefix run is ETH_HLEN bytes. */
		for (size_t len = ETH_HLEN; len < cases[c].f.len; len++) {
			int got = run_len(&cases[c].f, len);
			cr_assert_eq(got, XDP_PASS, "%s cut at %zu of %zu bytes: %s", cases[c].name,
				     len, cases[c].f.len, verdict_name(got));
			runs++;
			errors += len < cases[c].parsed;
			cr_assert_eq(metrics().parse_errors, errors,
				     "%s cut at %zu of %zu bytes: expected %s", cases[c].name, len,
				     cases[c].f.len, len < cases[c].parsed ? "a parse error" : "none");
		}
		const struct frame *f = &cases[c].f;
		size_t source_read = f->b[f->l3] >> 4 == 4 ? f->l3 + (f->b[f->l3] & 0xf) * 4u
							   : f->l3 + 40;
		struct rw_source s = source(cases[c].src);
		cr_expect_eq(s.passed, f->len - source_read, "%s", cases[c].name);
	}
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = runs, .parse_errors = errors,
						.new_sources = 5 });
}

/* ---- fragments ---- */

/* Burst 5: the first, three middle and the last fragment pass, then each is dropped; all seven
 * are counted on the one source. */
static void expect_fragments_share_a_bucket(const struct frame *first, const struct frame *middle,
					    const struct frame *last, const char *src,
					    enum rw_xdp_limit mode)
{
	expect(first, 1, XDP_PASS);
	expect(middle, 3, XDP_PASS);
	expect(last, 1, XDP_PASS);
	expect(middle, 1, XDP_DROP);
	expect(last, 1, XDP_DROP);
	expect(first, 1, XDP_DROP);
	struct rw_source s = source(src);
	cr_expect_eq(s.passed, 5, "mode %d", mode);
	cr_expect_eq(s.dropped, 3, "mode %d", mode);
}

/* In both modes, the first fragment (MF, offset 0) and the later ones (no ports; the bytes
 * where a header would be say port 80, not guarded) count against the source. */
Test(limiter, ipv4_fragments_count_against_the_source_in_both_modes)
{
	const enum rw_xdp_limit modes[] = { RW_LIMIT_SYN, RW_LIMIT_ALL };
	const char *sources[] = { "198.51.100.1", "198.51.100.2" };

	for (int i = 0; i < 2; i++) {
		set_config(guarding(modes[i], 1, 5));
		struct frame first = { 0 }, middle = { 0 }, last = { 0 };
		ethernet(&first, 0, ETH_P_IP);
		ipv4(&first, sources[i], IPV4_MF, 0);
		udp(&first, GUARDED_PORT);
		payload(&first, 16);
		ethernet(&middle, 0, ETH_P_IP);
		ipv4(&middle, sources[i], IPV4_MF | 185, 0);
		udp(&middle, OTHER_PORT);
		ethernet(&last, 0, ETH_P_IP);
		ipv4(&last, sources[i], 370, 0);
		udp(&last, OTHER_PORT);

		expect_fragments_share_a_bucket(&first, &middle, &last, sources[i], modes[i]);
	}
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10, .rate_dropped_packets = 6,
						.new_sources = 2 });
}

Test(limiter, ipv6_fragments_count_against_the_source_in_both_modes)
{
	const enum rw_xdp_limit modes[] = { RW_LIMIT_SYN, RW_LIMIT_ALL };
	const char *sources[] = { "2001:db8:f::1", "2001:db8:f::2" };

	for (int i = 0; i < 2; i++) {
		set_config(guarding(modes[i], 1, 5));
		struct frame first = { 0 }, middle = { 0 }, last = { 0 };
		l2_l3(&first, 0, sources[i]);
		ipv6_fragment(&first, 0, true);
		udp(&first, GUARDED_PORT);
		payload(&first, 16);
		l2_l3(&middle, 0, sources[i]);
		ipv6_fragment(&middle, 181, true);
		udp(&middle, OTHER_PORT);
		l2_l3(&last, 0, sources[i]);
		ipv6_ext(&last, IPPROTO_HOPOPTS, 8);
		ipv6_fragment(&last, 362, false);
		udp(&last, OTHER_PORT);

		expect_fragments_share_a_bucket(&first, &middle, &last, sources[i], modes[i]);
	}
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10, .rate_dropped_packets = 6,
						.new_sources = 2 });
}

/* Every fragment counts, first or not, whatever its port: a first fragment to a port that is not
 * guarded is limited too, in both families. */
Test(limiter, first_fragment_to_unguarded_port_is_limited)
{
	set_config(guarding(RW_LIMIT_ALL, 1, 2));
	struct frame v4 = { 0 }, v6 = { 0 };
	ethernet(&v4, 0, ETH_P_IP);
	ipv4(&v4, "198.51.100.9", IPV4_MF, 0);
	udp(&v4, OTHER_PORT);
	l2_l3(&v6, 0, "2001:db8:f::9");
	ipv6_fragment(&v6, 0, true);
	udp(&v6, OTHER_PORT);

	expect(&v4, 2, XDP_PASS);
	expect(&v4, 1, XDP_DROP);
	expect(&v6, 2, XDP_PASS);
	expect(&v6, 1, XDP_DROP);
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 4, .rate_dropped_packets = 2,
						.new_sources = 2 });
}

/* An IPv6 atomic fragment (Fragment header, offset 0, M clear) is a whole packet (RFC 8200): in
 * syn mode its ACK to a guarded port passes unlimited, its SYN is limited by the port as usual. */
Test(limiter, ipv6_atomic_fragment_is_not_a_fragment)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 2));
	struct frame ack = { 0 }, syn = { 0 };
	l2_l3(&ack, 0, "2001:db8:f::a");
	ipv6_fragment(&ack, 0, false);
	tcp(&ack, GUARDED_PORT, TCP_ACK);
	l2_l3(&syn, 0, "2001:db8:f::a");
	ipv6_fragment(&syn, 0, false);
	tcp(&syn, GUARDED_PORT, TCP_SYN);

	expect(&ack, 5, XDP_PASS);
	cr_expect_eq(source_count(), 0, "an ACK in an atomic fragment met the limiter");
	expect(&syn, 2, XDP_PASS);
	expect(&syn, 1, XDP_DROP);
}

/* DF is a flag, not a fragment: in syn mode a UDP datagram with DF set is not guarded. */
Test(limiter, ipv4_dont_fragment_is_not_a_fragment)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	struct frame dgram = { 0 };
	ethernet(&dgram, 0, ETH_P_IP);
	ipv4(&dgram, "198.51.100.7", IPV4_DF, 0);
	udp(&dgram, GUARDED_PORT);

	expect(&dgram, 10, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 10 });
	cr_expect_eq(source_count(), 0);
}

/* ---- the bucket ---- */

/* ipv6_source_prefix 64: the addresses of one /64 share a bucket (keyed by the prefix), other
 * /64s and IPv4 sources keep their own, and policies still match the whole address. */
Test(limiter, ipv6_sources_share_a_bucket_per_configured_prefix)
{
	struct rw_xdp_config c = guarding(RW_LIMIT_SYN, 1, 3);
	c.ipv6_source_prefix = 64;
	set_config(c);
	add_policy("2001:db8:64::ff/128", RW_POLICY_ALLOW, 0, 0);
	struct frame a = syn_frame("2001:db8:64::1", GUARDED_PORT);
	struct frame b = syn_frame("2001:db8:64::2:3:4", GUARDED_PORT);
	struct frame other = syn_frame("2001:db8:65::1", GUARDED_PORT);
	struct frame allowed = syn_frame("2001:db8:64::ff", GUARDED_PORT);
	struct frame v4 = syn_frame("198.51.100.64", GUARDED_PORT);

	expect(&a, 2, XDP_PASS);
	expect(&b, 1, XDP_PASS);
	expect(&b, 1, XDP_DROP); /* the /64's burst of 3 is spent */
	expect(&a, 1, XDP_DROP);
	expect(&other, 3, XDP_PASS);
	expect(&allowed, 3, XDP_PASS);
	expect(&v4, 3, XDP_PASS);
	expect(&v4, 1, XDP_DROP);

	struct rw_source s = source("2001:db8:64::");
	cr_expect_eq(s.passed, 3);
	cr_expect_eq(s.dropped, 2);
	cr_expect_not(find_source("2001:db8:64::1", &s), "a /128 entry inside an aggregated /64");
	cr_expect_eq(source_count(), 3); /* 2001:db8:64::, 2001:db8:65::, 198.51.100.64 */
}

/* Every prefix length from 32 to 127 masks exactly its bits: two addresses that differ only in
 * the last bit inside the prefix have buckets of their own, two that differ only in the first
 * bit past it share one. IPv4 sources never share (they are not IPv6 prefixes). */
Test(limiter, ipv6_source_prefix_masks_exactly_its_bits)
{
	for (__u32 prefix = 32; prefix < 128; prefix++) {
		struct rw_xdp_config c = guarding(RW_LIMIT_SYN, 1, 1);
		c.ipv6_source_prefix = prefix;
		set_config(c);
		struct rw_source_key base = { .addr = { 0x20, 0x01, 0x0d, 0xb8 } };
		struct rw_source_key inside = base, outside = base;
		inside.addr[(prefix - 1) / 8] ^= 0x80 >> ((prefix - 1) % 8);
		outside.addr[prefix / 8] ^= 0x80 >> (prefix % 8);
		char a[64], b[64], o[64];
		inet_ntop(AF_INET6, base.addr, a, sizeof a);
		inet_ntop(AF_INET6, inside.addr, b, sizeof b);
		inet_ntop(AF_INET6, outside.addr, o, sizeof o);
		struct frame fa = syn_frame(a, GUARDED_PORT), fb = syn_frame(b, GUARDED_PORT);
		struct frame fo = syn_frame(o, GUARDED_PORT);
		cr_assert_eq(run_len(&fa, fa.len), XDP_PASS, "/%u: %s", prefix, a);
		cr_assert_eq(run_len(&fb, fb.len), XDP_PASS, "/%u: %s has its own bucket", prefix, b);
		cr_assert_eq(run_len(&fo, fo.len), XDP_DROP, "/%u: %s shares %s's bucket", prefix, o,
			     a);
		cr_assert_eq(bpf_map__delete_elem(skel->maps.sources, &base, sizeof base, 0), 0);
		struct rw_source_key masked = inside;
		cr_assert_eq(bpf_map__delete_elem(skel->maps.sources, &masked, sizeof masked, 0), 0,
			     "/%u: the bucket of %s is not keyed by its prefix", prefix, b);
	}
	struct rw_xdp_config c = guarding(RW_LIMIT_SYN, 1, 1);
	c.ipv6_source_prefix = 64;
	set_config(c);
	struct frame v4a = syn_frame("198.51.100.1", GUARDED_PORT);
	struct frame v4b = syn_frame("198.51.100.2", GUARDED_PORT);
	expect(&v4a, 1, XDP_PASS);
	expect(&v4b, 1, XDP_PASS);
}

/* With buckets per /64, a limit policy on one address inside it does not apply to the shared
 * bucket (two limits on one bucket would refund each other); a policy on the /64 does. */
Test(limiter, shared_ipv6_bucket_takes_the_limit_of_its_prefix)
{
	struct rw_xdp_config c = guarding(RW_LIMIT_SYN, 1, 4);
	c.ipv6_source_prefix = 64;
	set_config(c);
	add_policy("2001:db8:1:2::bad/128", RW_POLICY_LIMIT, 1, 1);
	struct frame loose = syn_frame("2001:db8:1:2::1", GUARDED_PORT);
	struct frame strict = syn_frame("2001:db8:1:2::bad", GUARDED_PORT);
	for (int round = 0; round < 2; round++) { /* the default burst of 4, shared */
		expect(&strict, 1, XDP_PASS);
		expect(&loose, 1, XDP_PASS);
	}
	for (int round = 0; round < 50; round++) {
		expect(&strict, 1, XDP_DROP);
		expect(&loose, 1, XDP_DROP);
	}
	struct rw_source s = source("2001:db8:1:2::");
	cr_expect_eq(s.passed, 4, "the /64 passed more than its burst");
	cr_expect_eq(s.dropped, 100);

	add_policy("2001:db8:1:3::/64", RW_POLICY_LIMIT, 1, 2);
	struct frame other = syn_frame("2001:db8:1:3::7", GUARDED_PORT);
	expect(&other, 2, XDP_PASS);
	expect(&other, 1, XDP_DROP);

	/* an allow on one address (here the /64's first) does not hide the /48's limit from the
	 * bucket of the rest of its /64 */
	add_policy("2001:db8:5::/48", RW_POLICY_LIMIT, 1, 2);
	add_policy("2001:db8:5:2::/128", RW_POLICY_ALLOW, 0, 0);
	struct frame member = syn_frame("2001:db8:5:2::5", GUARDED_PORT);
	struct frame allowed = syn_frame("2001:db8:5:2::", GUARDED_PORT);
	expect(&member, 2, XDP_PASS);
	expect(&member, 3, XDP_DROP);
	expect(&allowed, 3, XDP_PASS);
}

/* A limit raised while a source is far behind (its arrival time 50 s ahead at the old rate)
 * applies at once: the bucket counts as empty under the new limit, never emptier, so the source
 * waits one new interval, not the old backlog. */
Test(limiter, raising_a_limit_never_blocks_on_the_old_backlog)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("198.51.100.50/32", RW_POLICY_LIMIT, 2, 100);
	struct frame syn = syn_frame("198.51.100.50", GUARDED_PORT);
	expect(&syn, 100, XDP_PASS);
	expect(&syn, 1, XDP_DROP);

	add_policy("198.51.100.50/32", RW_POLICY_LIMIT, 4, 4); /* 250 ms interval, 1 s tolerance */
	expect(&syn, 1, XDP_DROP); /* empty under the new limit... */
	rewind_source("198.51.100.50", 2 * 250000000ull);
	expect(&syn, 2, XDP_PASS); /* ...and two new intervals give exactly two packets */
	expect(&syn, 1, XDP_DROP);
}

/* Burst 5 at 2/s: five pass, the sixth drops; then each interval that passes lets exactly one
 * more through. IPv4 and IPv6 sources have buckets of their own. */
Test(limiter, burst_then_steady_rate_exact_to_the_packet)
{
	const __u64 interval = SEC_NS / 2;
	set_config(guarding(RW_LIMIT_SYN, 2, 5));
	const char *v4 = "198.51.100.7", *v6 = "2001:db8:7::7";
	struct frame syn4 = syn_frame(v4, GUARDED_PORT), syn6 = syn_frame(v6, GUARDED_PORT);

	expect(&syn4, 5, XDP_PASS);
	expect(&syn4, 1, XDP_DROP);
	expect(&syn6, 5, XDP_PASS); /* v4's empty bucket is not v6's */
	expect(&syn6, 1, XDP_DROP);

	rewind_source(v4, 2 * interval);
	expect(&syn6, 1, XDP_DROP);
	expect(&syn4, 2, XDP_PASS);
	expect(&syn4, 1, XDP_DROP);

	rewind_source(v6, 3 * interval);
	expect(&syn4, 1, XDP_DROP);
	expect(&syn6, 3, XDP_PASS);
	expect(&syn6, 1, XDP_DROP);

	for (int i = 0; i < 3; i++) { /* steady: one per interval */
		rewind_source(v4, interval);
		expect(&syn4, 1, XDP_PASS);
		expect(&syn4, 1, XDP_DROP);
	}

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 18, .rate_dropped_packets = 9,
						.new_sources = 2 });
	struct rw_xdp_metrics m = metrics();
	cr_expect_eq(m.passed_bytes, 10 * syn4.len + 8 * syn6.len);
	cr_expect_eq(m.rate_dropped_bytes, 6 * syn4.len + 3 * syn6.len);
	struct rw_source s4 = source(v4), s6 = source(v6);
	cr_expect_eq(s4.passed, 10);
	cr_expect_eq(s4.dropped, 6);
	cr_expect_eq(s6.passed, 8);
	cr_expect_eq(s6.dropped, 3);
}

Test(limiter, per_source_counters_and_times)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	const char *src = "198.51.100.7";
	struct frame syn = syn_frame(src, GUARDED_PORT);

	expect(&syn, 1, XDP_PASS);
	struct rw_source first = source(src);
	cr_expect_eq(first.passed, 1);
	cr_expect_eq(first.dropped, 0);
	cr_expect_neq(first.first_seen_ns, 0);
	cr_expect_eq(first.last_seen_ns, first.first_seen_ns);

	expect(&syn, 4, XDP_PASS);
	struct rw_source fifth = source(src);
	expect(&syn, 2, XDP_DROP);
	struct rw_source last = source(src);

	cr_expect_eq(last.passed, 5);
	cr_expect_eq(last.dropped, 2);
	cr_expect_eq(last.first_seen_ns, first.first_seen_ns, "first_seen_ns moved");
	cr_expect_gt(fifth.last_seen_ns, first.last_seen_ns, "last_seen_ns not updated on a pass");
	cr_expect_gt(last.last_seen_ns, fifth.last_seen_ns, "last_seen_ns not updated on a drop");
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	cr_expect_leq(last.last_seen_ns, (__u64)now.tv_sec * SEC_NS + now.tv_nsec,
		      "last_seen_ns is not CLOCK_MONOTONIC");
}

/* ---- policies ---- */

/* A deny policy drops every packet of its sources, guarded or not, in either mode. */
Test(limiter, deny_prefix_drops_every_packet_in_either_mode)
{
	add_policy("10.1.2.0/24", RW_POLICY_DENY, 0, 0);
	add_policy("2001:db8:d::/48", RW_POLICY_DENY, 0, 0);
	const char *denied[] = { "10.1.2.3", "2001:db8:d::3" };
	const enum rw_xdp_limit modes[] = { RW_LIMIT_SYN, RW_LIMIT_ALL };
	size_t bytes = 0;

	for (int i = 0; i < 4; i++) {
		set_config(guarding(modes[i % 2], 1, 5));
		const char *src = denied[i / 2];
		struct frame frames[6] = {
			syn_frame(src, GUARDED_PORT),
			tcp_frame(src, GUARDED_PORT, TCP_ACK),
			syn_frame(src, OTHER_PORT),
			udp_frame(src, OTHER_PORT),
			icmp_frame(src),
		};
		l2_l3(&frames[5], 1, src); /* tagged, and not a first fragment */
		if (frames[5].family == 4)
			put16(frames[5].b + frames[5].l3 + offsetof(struct iphdr, frag_off), 185);
		else
			ipv6_fragment(&frames[5], 181, false);
		udp(&frames[5], OTHER_PORT);
		for (int f = 0; f < 6; f++) {
			expect(&frames[f], 1, XDP_DROP);
			bytes += frames[f].len;
		}
	}
	struct frame outside = syn_frame("10.1.3.3", GUARDED_PORT);
	expect(&outside, 1, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 1, .deny_dropped_packets = 24,
						.new_sources = 1 });
	cr_expect_eq(metrics().deny_dropped_bytes, bytes);
	cr_expect_eq(source_count(), 1, "a denied source took a sources entry");
}

Test(limiter, allow_host_inside_denied_prefix_passes)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("10.1.2.7/32", RW_POLICY_ALLOW, 0, 0);
	add_policy("10.1.2.0/24", RW_POLICY_DENY, 0, 0);
	struct frame allowed = syn_frame("10.1.2.7", GUARDED_PORT);
	struct frame neighbour = syn_frame("10.1.2.8", GUARDED_PORT);

	struct frame allowed_ack = tcp_frame("10.1.2.7", GUARDED_PORT, TCP_ACK);

	expect(&allowed, 20, XDP_PASS); /* over the default burst: not limited either */
	expect(&allowed_ack, 5, XDP_PASS); /* not guarded: passes, not counted as allowed */
	expect(&neighbour, 2, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 25, .deny_dropped_packets = 2,
						.policy_allowed = 20 });
	cr_expect_eq(source_count(), 0);
}

/* A LIMIT /32 inside a LIMIT /16: the /32's burst and rate (2/s: rewinding half a second lets
 * exactly one more through; at the /16's 1/s or the default it would let none). */
Test(limiter, most_specific_limit_policy_sets_rate_and_burst)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("10.2.0.0/16", RW_POLICY_LIMIT, 1, 2);
	add_policy("10.2.3.4/32", RW_POLICY_LIMIT, 2, 3);
	struct frame host = syn_frame("10.2.3.4", GUARDED_PORT);
	struct frame net = syn_frame("10.2.9.9", GUARDED_PORT);

	expect(&host, 3, XDP_PASS);
	expect(&host, 1, XDP_DROP);
	rewind_source("10.2.3.4", SEC_NS / 2);
	expect(&host, 1, XDP_PASS);
	expect(&host, 1, XDP_DROP);

	expect(&net, 2, XDP_PASS);
	expect(&net, 1, XDP_DROP);
	rewind_source("10.2.9.9", SEC_NS / 2);
	expect(&net, 1, XDP_DROP);
	rewind_source("10.2.9.9", SEC_NS / 2);
	expect(&net, 1, XDP_PASS);
	expect(&net, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 7, .rate_dropped_packets = 5,
						.new_sources = 2 });
}

Test(limiter, ipv6_prefix_limit_policy)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("2001:db8::/32", RW_POLICY_LIMIT, 2, 2);
	struct frame inside = syn_frame("2001:db8:5::1", GUARDED_PORT);
	struct frame outside = syn_frame("2001:db9::1", GUARDED_PORT);

	expect(&inside, 2, XDP_PASS);
	expect(&inside, 1, XDP_DROP);
	rewind_source("2001:db8:5::1", SEC_NS / 2);
	expect(&inside, 1, XDP_PASS);
	expect(&inside, 1, XDP_DROP);
	expect(&outside, 5, XDP_PASS);
	expect(&outside, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 8, .rate_dropped_packets = 3,
						.new_sources = 2 });
}

Test(limiter, source_outside_every_policy_gets_the_default)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("10.1.0.0/16", RW_POLICY_DENY, 0, 0);
	add_policy("10.2.0.0/16", RW_POLICY_ALLOW, 0, 0);
	add_policy("10.3.0.0/16", RW_POLICY_LIMIT, 100, 100);
	add_policy("::ffff:10.4.0.0/112", RW_POLICY_LIMIT, 100, 100); /* 10.4.0.0/16, v6 syntax */
	add_policy("2001:db8::/32", RW_POLICY_LIMIT, 100, 100);
	const char *sources[] = { "10.5.0.1", "11.3.0.1", "2001:db9::1" };

	for (int i = 0; i < 3; i++) {
		struct frame syn = syn_frame(sources[i], GUARDED_PORT);
		expect(&syn, 5, XDP_PASS);
		expect(&syn, 1, XDP_DROP);
		rewind_source(sources[i], SEC_NS);
		expect(&syn, 1, XDP_PASS);
		expect(&syn, 1, XDP_DROP);
	}
	/* and the mapped IPv6 policy is the IPv4 source's policy */
	struct frame mapped = syn_frame("10.4.0.1", GUARDED_PORT);
	expect(&mapped, 20, XDP_PASS);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 38, .rate_dropped_packets = 6,
						.new_sources = 4 });
}

Test(limiter, default_rate_zero_passes_sources_without_policy)
{
	set_config(guarding(RW_LIMIT_SYN, 0, 5));
	add_policy("10.5.0.0/16", RW_POLICY_LIMIT, 1, 2);
	struct frame free_syn = syn_frame("198.51.100.7", GUARDED_PORT);
	struct frame limited = syn_frame("10.5.0.1", GUARDED_PORT);

	expect(&free_syn, 20, XDP_PASS);
	expect(&limited, 2, XDP_PASS); /* a policy still limits */
	expect(&limited, 1, XDP_DROP);

	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 22, .rate_dropped_packets = 1,
						.new_sources = 1 });
	struct rw_source s;
	cr_expect_not(find_source("198.51.100.7", &s));
}

Test(limiter, limit_policy_with_rate_zero_drops)
{
	set_config(guarding(RW_LIMIT_SYN, 1, 5));
	add_policy("10.6.0.0/16", RW_POLICY_LIMIT, 0, 5);
	struct frame blocked = syn_frame("10.6.0.1", GUARDED_PORT);
	struct frame other = syn_frame("10.7.0.1", GUARDED_PORT);

	expect(&blocked, 3, XDP_DROP);
	expect(&other, 1, XDP_PASS);

	struct rw_xdp_metrics m = metrics();
	cr_expect_eq(m.rate_dropped_packets, 3);
	cr_expect_eq(m.passed_packets, 1);
	cr_expect_eq(m.deny_dropped_packets, 0);
	cr_expect_eq(m.new_sources, 1, "a rate-0 policy spent a sources entry");
	cr_expect_eq(source_count(), 1);
}

/* ---- admission ---- */

static void nth_source(char *buf, size_t size, int i)
{
	snprintf(buf, size, "10.20.%d.%d", i / 250, i % 250 + 1);
}

/* 50 new sources a second per CPU: of 200 new sources, the first 50 get buckets of their own and
 * the other 150 share the fallback bucket (burst 3); once the window moves on, new sources are
 * admitted again. */
Test(limiter, admission_budget_sends_the_excess_to_the_fallback_bucket)
{
	struct rw_xdp_config c = guarding(RW_LIMIT_SYN, 1, 5);
	c.new_sources_per_cpu = 50;
	c.fallback_rate = 1;
	c.fallback_burst = 3;
	set_config(c);
	char src[32];

	for (int i = 0; i < 200; i++) {
		nth_source(src, sizeof src, i);
		struct frame syn = syn_frame(src, GUARDED_PORT);
		expect(&syn, 1, i < 53 ? XDP_PASS : XDP_DROP);
	}
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 53, .rate_dropped_packets = 147,
						.new_sources = 50, .admission_overflows = 150 });
	cr_expect_eq(source_count(), 50);
	for (int i = 0; i < 200; i++) {
		struct rw_source s;
		nth_source(src, sizeof src, i);
		cr_expect_eq(find_source(src, &s), i < 50, "%s admitted: %d", src, i < 50);
	}

	/* the admitted sources have their own buckets: four more each, then a drop */
	for (int i = 0; i < 50; i++) {
		nth_source(src, sizeof src, i);
		struct frame syn = syn_frame(src, GUARDED_PORT);
		expect(&syn, 4, XDP_PASS);
		expect(&syn, 1, XDP_DROP);
	}
	/* a new source in the same window still overflows, onto the empty fallback bucket */
	struct frame late = syn_frame("10.21.0.1", GUARDED_PORT);
	expect(&late, 1, XDP_DROP);
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 253, .rate_dropped_packets = 198,
						.new_sources = 50, .admission_overflows = 151 });

	/* a second later, the budget is back */
	cr_expect_eq(rewind_admission(SEC_NS), 50, "this CPU's window did not admit the 50");
	expect(&late, 5, XDP_PASS);
	expect(&late, 1, XDP_DROP);
	expect_metrics((struct rw_xdp_metrics){ .passed_packets = 258, .rate_dropped_packets = 199,
						.new_sources = 51, .admission_overflows = 151 });
	cr_expect_eq(source_count(), 51);
}
