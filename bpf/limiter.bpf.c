/* limiter.bpf.c — the XDP early rate limiter: parses each frame (Ethernet, up to two VLAN tags,
 * IPv4 or IPv6 with its extension headers, TCP/UDP), looks its source up in the CIDR policy,
 * decides whether the packet is guarded (mode syn/all, destination ports, fragments), applies the
 * policy and then the source's GCRA bucket, and counts what it did. A deny policy drops every
 * packet of its sources, guarded or not. Map layouts: limiter.h. Never reads past data_end:
 * truncated or malformed frames are passed and counted as parse errors. */
#include <stdbool.h>
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "limiter.h"

#define NSEC_PER_SEC 1000000000ull
#define MAX_VLAN_TAGS 2
#define MAX_IPV6_EXT_HEADERS 8
#define GCRA_CAS_TRIES 8
#define GCRA_STALE_NS 1000000ull /* 1 ms: far more than two CPUs' clocks differ in a race */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_xdp_config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, RW_XDP_MAX_POLICIES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct rw_policy_key);
	__type(value, struct rw_policy);
} policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, RW_XDP_DEFAULT_SOURCES);
	__type(key, struct rw_source_key);
	__type(value, struct rw_source);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_xdp_metrics);
} metrics SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_admission);
} admission SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct rw_fallback);
} fallback SEC(".maps");

struct vlan_tag {
	__be16 tci;
	__be16 encapsulated_proto;
};

/* Hop-by-Hop, Routing and Destination Options share this start; length in 8-octet units,
 * not counting the first 8. */
struct ipv6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
};

struct ipv6_fragment {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset in 8-octet units << 3, then flags */
	__be32 identification;
};

enum parse_result { PARSED_IP, NOT_IP, PARSE_ERROR };

/* What the limiter needs to know of one packet. */
struct packet {
	struct rw_source_key source;
	bool has_source; /* the source address was read (a parse error may come after it) */
	__u8 protocol;  /* of the transport header, when known */
	bool has_ports; /* a TCP/UDP header was read: dport and syn are valid */
	bool fragment;  /* any fragment, first or not */
	bool syn;       /* TCP SYN without ACK */
	__u16 dport;
};

/* Reads the TCP or UDP header at l4, if the protocol has one. A first fragment too short for it
 * is still a fragment (it counts against its source); an unfragmented one is malformed. */
static __always_inline enum parse_result parse_transport(struct packet *pkt, void *l4, void *end)
{
	if (pkt->protocol == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > end)
			return pkt->fragment ? PARSED_IP : PARSE_ERROR;
		pkt->has_ports = true;
		pkt->dport = bpf_ntohs(tcp->dest);
		pkt->syn = tcp->syn && !tcp->ack;
	} else if (pkt->protocol == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end)
			return pkt->fragment ? PARSED_IP : PARSE_ERROR;
		pkt->has_ports = true;
		pkt->dport = bpf_ntohs(udp->dest);
	}
	return PARSED_IP;
}

static __always_inline enum parse_result parse_ipv4(struct packet *pkt, void *l3, void *end)
{
	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end || ip->version != 4 || ip->ihl < 5)
		return PARSE_ERROR;
	__u32 header_len = ip->ihl * 4;
	if (l3 + header_len > end || bpf_ntohs(ip->tot_len) < header_len)
		return PARSE_ERROR;
	pkt->source.addr[10] = 0xff;
	pkt->source.addr[11] = 0xff;
	__builtin_memcpy(&pkt->source.addr[12], &ip->saddr, 4);
	pkt->has_source = true;
	pkt->protocol = ip->protocol;
	__u16 frag = bpf_ntohs(ip->frag_off);
	pkt->fragment = (frag & 0x3fff) != 0; /* MF set or a non-zero offset */
	if (frag & 0x1fff)
		return PARSED_IP; /* not the first fragment: no transport header */
	return parse_transport(pkt, l3 + header_len, end);
}

static __always_inline bool is_ipv6_extension(__u8 next)
{
	return next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS ||
	       next == IPPROTO_AH || next == IPPROTO_FRAGMENT;
}

static __always_inline enum parse_result parse_ipv6(struct packet *pkt, void *l3, void *end)
{
	struct ipv6hdr *ip6 = l3;
	if ((void *)(ip6 + 1) > end || ip6->version != 6)
		return PARSE_ERROR;
	__builtin_memcpy(pkt->source.addr, &ip6->saddr, 16);
	pkt->has_source = true;
	__u8 next = ip6->nexthdr;
	void *cursor = ip6 + 1;

#pragma unroll
	for (int i = 0; i < MAX_IPV6_EXT_HEADERS; i++) {
		if (next == IPPROTO_HOPOPTS || next == IPPROTO_ROUTING || next == IPPROTO_DSTOPTS) {
			struct ipv6_ext *ext = cursor;
			if ((void *)(ext + 1) > end)
				return PARSE_ERROR;
			next = ext->nexthdr;
			cursor += (ext->hdrlen + 1) * 8;
		} else if (next == IPPROTO_AH) {
			struct ipv6_ext *ah = cursor; /* length in 4-octet units, minus 2 */
			if ((void *)(ah + 1) > end)
				return PARSE_ERROR;
			next = ah->nexthdr;
			cursor += (ah->hdrlen + 2) * 4;
		} else if (next == IPPROTO_FRAGMENT) {
			struct ipv6_fragment *frag = cursor;
			if ((void *)(frag + 1) > end)
				return PARSE_ERROR;
			/* An atomic fragment (offset 0, M clear) is a whole packet (RFC 8200). */
			__u16 frag_off = bpf_ntohs(frag->frag_off);
			pkt->fragment = (frag_off & 0xfff9) != 0;
			next = frag->nexthdr;
			cursor = frag + 1;
			if (frag_off & 0xfff8) {
				pkt->protocol = next;
				return PARSED_IP; /* not the first fragment */
			}
		} else {
			goto transport;
		}
	}
	if (is_ipv6_extension(next))
		return PARSE_ERROR; /* a longer chain than any legitimate packet carries */
transport:
	pkt->protocol = next;
	return parse_transport(pkt, cursor, end);
}

static __always_inline enum parse_result parse_packet(struct packet *pkt, void *data, void *end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return PARSE_ERROR;
	__be16 proto = eth->h_proto;
	void *cursor = eth + 1;

#pragma unroll
	for (int i = 0; i < MAX_VLAN_TAGS; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_tag *tag = cursor;
		if ((void *)(tag + 1) > end)
			return PARSE_ERROR;
		proto = tag->encapsulated_proto;
		cursor = tag + 1;
	}
	if (proto == bpf_htons(ETH_P_IP))
		return parse_ipv4(pkt, cursor, end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return parse_ipv6(pkt, cursor, end);
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD))
		return PARSE_ERROR; /* a third tag */
	return NOT_IP;
}

static __always_inline bool port_guarded(const struct rw_xdp_config *cfg, __u16 port)
{
	if (cfg->nports == 0)
		return true;
#pragma unroll
	for (int i = 0; i < RW_XDP_MAX_PORTS; i++)
		if (i < cfg->nports && cfg->ports[i] == port)
			return true;
	return false;
}

/* Does this packet meet the limiter? Every fragment does, first or not, whatever its port (only
 * the first carries ports, and fragments are how floods hide), and so does a malformed packet
 * whose source was read (the stack may still take it: malformation is no way around the
 * limiter); otherwise mode and ports decide. */
static __always_inline bool guarded(const struct rw_xdp_config *cfg, const struct packet *pkt,
				    enum parse_result parsed)
{
	if (pkt->fragment || parsed == PARSE_ERROR)
		return true;
	if (pkt->has_ports) {
		if (!port_guarded(cfg, pkt->dport))
			return false;
		return cfg->limit == RW_LIMIT_ALL || pkt->syn;
	}
	return cfg->limit == RW_LIMIT_ALL && cfg->nports == 0;
}

/* GCRA: a packet conforms when the theoretical arrival time, pushed one interval on, stays
 * within burst intervals of now. Exact across CPUs: the new time is stored by compare-and-swap,
 * and a packet that loses every race is limited. A time far beyond now + burst intervals (left
 * by a larger rate or burst before a policy changed) is brought back to it: an empty bucket,
 * never less, so raising a limit never keeps a source blocked on the old one. "Far": more than
 * GCRA_STALE_NS past a time read afresh, so a CPU whose now is older than another's (a race, or a
 * stall) never refunds it. */
static __always_inline bool gcra_conforms(__u64 *tat_ns, __u64 now, __u32 rate, __u32 burst)
{
	if (rate == 0)
		return false;
	__u64 interval = NSEC_PER_SEC / rate;
	__u64 tolerance = interval * (burst ? burst : 1);
	for (int i = 0; i < GCRA_CAS_TRIES; i++) {
		__u64 tat = *(volatile __u64 *)tat_ns;
		__u64 base = tat > now ? tat : now;
		if (base - now > tolerance + GCRA_STALE_NS) {
			/* this CPU may have stalled since it read now: judge by a fresh time */
			__u64 fresh = bpf_ktime_get_ns();
			if (tat > fresh + tolerance + GCRA_STALE_NS) {
				__sync_val_compare_and_swap(tat_ns, tat, fresh + tolerance);
				return false;
			}
			now = fresh;
			continue;
		}
		__u64 next = base + interval;
		if (next - now > tolerance)
			return false;
		if (__sync_val_compare_and_swap(tat_ns, tat, next) == tat)
			return true;
	}
	return false;
}

/* The per-CPU budget of new sources in the current one-second window. */
static __always_inline bool admit_new_source(const struct rw_xdp_config *cfg, __u64 now)
{
	__u32 zero = 0;
	struct rw_admission *adm = bpf_map_lookup_elem(&admission, &zero);
	if (!adm || cfg->new_sources_per_cpu == 0)
		return true;
	if (now - adm->window_start_ns >= NSEC_PER_SEC) {
		adm->window_start_ns = now;
		adm->admitted = 0;
	}
	if (adm->admitted >= cfg->new_sources_per_cpu)
		return false;
	adm->admitted++;
	return true;
}

/* Turns an IPv6 source into its bucket's key when ipv6_source_prefix is below 128: its prefix
 * (one host's /64 holds more addresses than any table). Works on the address as two big-endian
 * halves. */
static __always_inline bool aggregate_ipv6(const struct rw_xdp_config *cfg,
					   struct rw_source_key *key)
{
	__u32 prefix = cfg->ipv6_source_prefix;
	if (prefix < 32 || prefix >= 128)
		return false; /* 0: not set, per address */
	__u64 high, low;
	__builtin_memcpy(&high, key->addr, 8);
	__builtin_memcpy(&low, key->addr + 8, 8);
	if (high == 0 && (low & bpf_cpu_to_be64(0xffffffff00000000ull)) ==
			     bpf_cpu_to_be64(0x0000ffff00000000ull))
		return false; /* ::ffff:a.b.c.d, IPv4 */
	if (prefix <= 64) {
		high &= bpf_cpu_to_be64(~0ull << (64 - prefix));
		low = 0;
	} else {
		low &= bpf_cpu_to_be64(~0ull << (128 - prefix));
	}
	__builtin_memcpy(key->addr, &high, 8);
	__builtin_memcpy(key->addr + 8, &low, 8);
	return true;
}

/* Judges a guarded packet by its source's bucket; a source not seen before is added if the
 * admission budget allows, else judged by the shared fallback bucket. */
static __always_inline bool source_conforms(const struct rw_xdp_config *cfg,
					    struct rw_xdp_metrics *m, const struct packet *pkt,
					    __u32 rate, __u32 burst)
{
	__u64 now = bpf_ktime_get_ns();
	const struct rw_source_key *key = &pkt->source;
	struct rw_source *src = bpf_map_lookup_elem(&sources, key);
	if (!src) {
		if (!admit_new_source(cfg, now)) {
			__u32 zero = 0;
			struct rw_fallback *fb = bpf_map_lookup_elem(&fallback, &zero);
			m->admission_overflows++;
			return fb && gcra_conforms(&fb->tat_ns, now, cfg->fallback_rate,
						   cfg->fallback_burst);
		}
		struct rw_source fresh = { .first_seen_ns = now, .last_seen_ns = now };
		if (bpf_map_update_elem(&sources, key, &fresh, BPF_NOEXIST) == 0)
			m->new_sources++;
		src = bpf_map_lookup_elem(&sources, key);
		if (!src)
			return true; /* evicted at once by other CPUs: let this one through */
	}
	src->last_seen_ns = now;
	if (gcra_conforms(&src->tat_ns, now, rate, burst)) {
		__sync_fetch_and_add(&src->passed, 1);
		return true;
	}
	__sync_fetch_and_add(&src->dropped, 1);
	return false;
}

SEC("xdp")
int ringway_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 bytes = end - data;
	__u32 zero = 0;
	struct rw_xdp_metrics *m = bpf_map_lookup_elem(&metrics, &zero);
	const struct rw_xdp_config *cfg = bpf_map_lookup_elem(&config, &zero);
	if (!m || !cfg)
		return XDP_PASS;

	struct packet pkt = {};
	enum parse_result parsed = parse_packet(&pkt, data, end);
	if (parsed == PARSE_ERROR)
		m->parse_errors++;
	if (!pkt.has_source)
		goto pass;

	struct rw_policy_key key = { .prefixlen = 128 };
	__builtin_memcpy(key.addr, pkt.source.addr, 16);
	struct rw_policy *pol = bpf_map_lookup_elem(&policy, &key);
	if (pol && pol->action == RW_POLICY_DENY) {
		m->deny_dropped_packets++;
		m->deny_dropped_bytes += bytes;
		return XDP_DROP;
	}
	if (!guarded(cfg, &pkt, parsed))
		goto pass;
	__u32 rate = cfg->rate, burst = cfg->burst;
	if (pol) {
		if (pol->action == RW_POLICY_ALLOW) {
			m->policy_allowed++;
			goto pass;
		}
		rate = pol->rate;
		burst = pol->burst;
	} else if (rate == 0) {
		goto pass; /* no default limit configured */
	}
	/* An IPv6 bucket shared by a prefix takes its limit from the policy of that prefix, never
	 * from one address in it: two limits on one bucket would refund each other. */
	if (aggregate_ipv6(cfg, &pkt.source)) {
		key.prefixlen = cfg->ipv6_source_prefix; /* only prefixes the whole bucket lies in */
		__builtin_memcpy(key.addr, pkt.source.addr, 16);
		pol = bpf_map_lookup_elem(&policy, &key);
		bool limited = pol && pol->action == RW_POLICY_LIMIT;
		rate = limited ? pol->rate : cfg->rate;
		burst = limited ? pol->burst : cfg->burst;
		if (!limited && rate == 0)
			goto pass;
	}
	/* A policy of rate 0 drops without spending a sources entry or admission budget. */
	if (rate == 0 || !source_conforms(cfg, m, &pkt, rate, burst)) {
		m->rate_dropped_packets++;
		m->rate_dropped_bytes += bytes;
		return XDP_DROP;
	}
pass:
	m->passed_packets++;
	m->passed_bytes += bytes;
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
