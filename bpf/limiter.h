/* limiter.h — the layout of the XDP limiter's maps: the one contract between bpf/limiter.bpf.c,
 * the gateway's loader (user/xdp.c), `ringway limits` and operators using bpftool. Every struct
 * here is in BTF, so `bpftool map dump` prints its field names. Change a struct: bump the version
 * in RW_XDP_PIN_DIR, or libbpf would reuse a pinned map of the old shape. */
#ifndef RINGWAY_BPF_LIMITER_H
#define RINGWAY_BPF_LIMITER_H

#include <linux/types.h>

#define RW_XDP_PIN_DIR "/sys/fs/bpf/ringway/v1"

#define RW_XDP_MAX_PORTS 16        /* guarded destination ports in rw_xdp_config */
#define RW_XDP_MAX_POLICIES 4096   /* entries of the policy trie */
#define RW_XDP_DEFAULT_SOURCES 131072 /* entries of the sources LRU unless configured */

enum rw_xdp_limit {
	RW_LIMIT_SYN = 0, /* only new TCP connections (SYN without ACK) */
	RW_LIMIT_ALL = 1, /* every packet (UDP/QUIC too) */
};

/* config: an ARRAY of one entry, rewritten from the configuration at every start and read by the
 * program on every packet. */
struct rw_xdp_config {
	enum rw_xdp_limit limit;   /* 4 bytes; an enum so bpftool prints its name */
	__u32 rate;                /* packets per second per source; 0: sources without a policy pass */
	__u32 burst;               /* packets a source may send at once */
	__u32 new_sources_per_cpu; /* admission budget: new sources per second per CPU */
	__u32 fallback_rate;       /* shared bucket for sources over the admission budget */
	__u32 fallback_burst;
	__u32 ipv6_source_prefix;  /* IPv6 sources share a bucket per prefix this long (0: 128) */
	__u32 nports;              /* 0: every destination port is guarded */
	__u16 ports[RW_XDP_MAX_PORTS]; /* host byte order */
};

/* policy: an LPM_TRIE keyed by prefix; IPv4 is mapped (::ffff:a.b.c.d, prefix + 96). The most
 * specific prefix wins. */
struct rw_policy_key {
	__u32 prefixlen;  /* 0..128 */
	__u8 addr[16];
};

enum rw_policy_action {
	RW_POLICY_LIMIT = 0, /* each source in the prefix gets rate/burst instead of the default */
	RW_POLICY_ALLOW = 1, /* bypass the limiter (policy_allowed counts the packets it would meet) */
	RW_POLICY_DENY = 2,  /* drop every packet, to any port, in either mode */
};

struct rw_policy {
	enum rw_policy_action action; /* 4 bytes; an enum so bpftool prints its name */
	__u32 rate;   /* RW_POLICY_LIMIT: packets per second per source (0 drops all) */
	__u32 burst;
};

/* sources: an LRU_HASH keyed by the source address (IPv4 mapped), shared by all CPUs. tat_ns is
 * the GCRA theoretical arrival time (CLOCK_MONOTONIC), updated with compare-and-swap; the
 * counters count packets that met the limiter. */
struct rw_source_key {
	__u8 addr[16];
};

struct rw_source {
	__u64 tat_ns;
	__u64 passed;
	__u64 dropped;
	__u64 first_seen_ns;
	__u64 last_seen_ns;
};

/* metrics: a PERCPU_ARRAY of one entry; readers add the CPUs up. */
struct rw_xdp_metrics {
	__u64 passed_packets;       /* every packet the program passed */
	__u64 passed_bytes;
	__u64 rate_dropped_packets; /* dropped by a source's bucket or the fallback bucket */
	__u64 rate_dropped_bytes;
	__u64 deny_dropped_packets; /* dropped by a deny policy */
	__u64 deny_dropped_bytes;
	__u64 policy_allowed;       /* passed by an allow policy */
	__u64 parse_errors;         /* truncated or malformed; passed */
	__u64 new_sources;          /* sources added to the sources map */
	__u64 admission_overflows;  /* packets of new sources over the budget, sent to the fallback */
};

/* admission (not pinned): per CPU, how many new sources the current one-second window admitted. */
struct rw_admission {
	__u64 window_start_ns;
	__u64 admitted;
};

/* fallback (not pinned): the one bucket shared by every source over the admission budget. */
struct rw_fallback {
	__u64 tat_ns;
};

#endif
