/* probe.c — `ringway probe`: what this host's kernel offers and what ringway will use of it.
 * io_uring: the feature bits, each set-up mode of ring_modes(), the operations of ring_ops() and a
 * few it may want later; a buffer ring, multishot recv and multishot accept, tried for real on a
 * ring opened by ring_open() and AF_UNIX sockets (no network needed). BPF: kernel BTF,
 * permission, bpffs, the program and map types of the XDP limiter. XDP per interface: driver
 * (ethtool) and native XDP features (the "netdev" generic netlink family). Findings are collected
 * once and printed as aligned text or JSON. Nothing is attached and everything opened is closed:
 * the host is left as it was. */
#include <errno.h>
#include <getopt.h>
#include <linux/ethtool.h>
#include <linux/genetlink.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <liburing.h>

#include "limiter.h"
#include "log.h"
#include "probe.h"
#include "ring.h"
#include "xdp.h"

/* io_uring feature bits newer than the header of liburing 2.3 (Debian 12). */
#ifndef IORING_FEAT_REG_REG_RING
#define IORING_FEAT_REG_REG_RING (1U << 13)
#endif
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_FEAT_MIN_TIMEOUT
#define IORING_FEAT_MIN_TIMEOUT (1U << 15)
#endif
#ifndef IORING_FEAT_RW_ATTR
#define IORING_FEAT_RW_ATTR (1U << 16)
#endif
#ifndef IORING_FEAT_NO_IOWAIT
#define IORING_FEAT_NO_IOWAIT (1U << 17)
#endif

/* The "netdev" generic netlink family (Linux 6.3+) reports each device's XDP features. Debian 12's
 * kernel headers (6.1) have no linux/netdev.h: the few constants used here, from its uapi. */
#if __has_include(<linux/netdev.h>)
#include <linux/netdev.h>
#else
#define NETDEV_FAMILY_NAME "netdev"
enum netdev_xdp_act {
	NETDEV_XDP_ACT_BASIC = 1,
	NETDEV_XDP_ACT_REDIRECT = 2,
	NETDEV_XDP_ACT_NDO_XMIT = 4,
	NETDEV_XDP_ACT_XSK_ZEROCOPY = 8,
	NETDEV_XDP_ACT_HW_OFFLOAD = 16,
	NETDEV_XDP_ACT_RX_SG = 32,
	NETDEV_XDP_ACT_NDO_XMIT_SG = 64,
};
enum { NETDEV_A_DEV_IFINDEX = 1, NETDEV_A_DEV_XDP_FEATURES = 3 };
enum { NETDEV_CMD_DEV_GET = 1 };
#endif

#define PROBE_WAIT_MS 1000 /* the longest wait for one completion, connect or netlink reply */

/* ---------------------------------------------------------------------------------------------
 * Findings
 */

enum answer { ANSWER_VALUE, ANSWER_YES, ANSWER_NO, ANSWER_UNKNOWN };
enum role { ROLE_INFO, ROLE_OPTIONAL, ROLE_NEEDED }; /* needed and not yes: ringway cannot run */

static const char *const answer_names[] = { [ANSWER_YES] = "yes", [ANSWER_NO] = "no",
					    [ANSWER_UNKNOWN] = "unknown" };
static const char *const role_names[] = { [ROLE_INFO] = "info", [ROLE_OPTIONAL] = "optional",
					  [ROLE_NEEDED] = "needed" };

static const char SECTION_IO_URING[] = "io_uring";
static const char SECTION_BUFFERS[] = "buffers";
static const char SECTION_BPF[] = "bpf";
static const char SECTION_XDP[] = "xdp";

struct finding {
	const char *section;
	char interface[IF_NAMESIZE]; /* the xdp section's interface; empty elsewhere */
	char name[64];
	enum answer answer;
	enum role role;
	char detail[384]; /* ANSWER_VALUE: the value; else what ringway does with it, or why not */
};

/* What ringway will use: the summary at the end. */
struct interface_use {
	char name[IF_NAMESIZE];
	char xdp_mode[96];
};

struct report {
	struct finding *findings;
	size_t n, cap;
	bool out_of_memory;
	char ring_mode[64]; /* empty: no mode accepted */
	bool splice;
	struct interface_use *interfaces;
	size_t ninterfaces;
};

__attribute__((format(printf, 7, 8)))
static void add(struct report *r, const char *section, const char *interface, const char *name,
		enum answer answer, enum role role, const char *fmt, ...)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 64;
		struct finding *grown = realloc(r->findings, cap * sizeof *grown);
		if (!grown) {
			r->out_of_memory = true;
			return;
		}
		r->findings = grown;
		r->cap = cap;
	}
	struct finding *f = &r->findings[r->n++];
	f->section = section;
	snprintf(f->interface, sizeof f->interface, "%s", interface ? interface : "");
	snprintf(f->name, sizeof f->name, "%s", name);
	f->answer = answer;
	f->role = role;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->detail, sizeof f->detail, fmt, ap);
	va_end(ap);
}

/* A finding's answer and detail, decided before it is added (to keep the printed order). */
struct verdict {
	enum answer answer;
	char detail[256];
};

__attribute__((format(printf, 3, 4)))
static void decide(struct verdict *v, enum answer answer, const char *fmt, ...)
{
	v->answer = answer;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->detail, sizeof v->detail, fmt, ap);
	va_end(ap);
}

struct bit_name {
	uint64_t bit;
	const char *name;
};

/* "A B C" for the set bits ("bitN" for bits without a name), "none" for none. */
static void format_bits(uint64_t bits, const struct bit_name *names, size_t n, char *out,
			size_t size)
{
	size_t len = 0;
	out[0] = 0;
	for (unsigned b = 0; b < 64 && len < size; b++) {
		uint64_t bit = (uint64_t)1 << b;
		if (!(bits & bit))
			continue;
		const char *name = NULL;
		for (size_t i = 0; i < n; i++)
			if (names[i].bit == bit)
				name = names[i].name;
		int w = name ? snprintf(out + len, size - len, "%s%s", len ? " " : "", name)
			     : snprintf(out + len, size - len, "%sbit%u", len ? " " : "", b);
		len += w > 0 ? (size_t)w : 0;
	}
	if (!bits)
		snprintf(out, size, "none");
}

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------------
 * io_uring: set-up modes and operations
 */

static const struct bit_name feature_names[] = {
#define FEATURE(name) { IORING_FEAT_##name, #name }
	FEATURE(SINGLE_MMAP),    FEATURE(NODROP),          FEATURE(SUBMIT_STABLE),
	FEATURE(RW_CUR_POS),     FEATURE(CUR_PERSONALITY), FEATURE(FAST_POLL),
	FEATURE(POLL_32BITS),    FEATURE(SQPOLL_NONFIXED), FEATURE(EXT_ARG),
	FEATURE(NATIVE_WORKERS), FEATURE(RSRC_TAGS),       FEATURE(CQE_SKIP),
	FEATURE(LINKED_FILE),    FEATURE(REG_REG_RING),    FEATURE(RECVSEND_BUNDLE),
	FEATURE(MIN_TIMEOUT),    FEATURE(RW_ATTR),         FEATURE(NO_IOWAIT),
#undef FEATURE
};

/* Operations ringway does not use yet but may: reported for information only. */
static const struct later_op {
	int op;
	const char *name;
	const char *use;
} later_ops[] = {
	{ IORING_OP_SEND_ZC, "send_zc", "zero-copy send of large bodies" },
	{ IORING_OP_SENDMSG_ZC, "sendmsg_zc", "zero-copy sendmsg" },
	{ IORING_OP_PROVIDE_BUFFERS, "provide_buffers",
	  "classic provided buffers; ringway registers a buffer ring instead" },
};

/* Whether the kernel accepts a set-up mode, opened as ring_open() opens it. 0 or -errno. */
static int mode_accepted(size_t mode)
{
	struct io_uring ring;
	unsigned features;
	int ret = ring_open_mode(&ring, mode, &features);
	if (ret == 0)
		io_uring_queue_exit(&ring);
	return ret;
}

/* One line per set-up mode; the used one is the mode ring_open() chose. */
static void report_modes(struct report *r, int used)
{
	size_t n;
	const struct ring_mode *modes = ring_modes(&n);
	for (size_t i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof name, "mode %s", modes[i].name);
		int ret;
		if ((int)i == used)
			add(r, SECTION_IO_URING, NULL, name, ANSWER_YES, ROLE_INFO,
			    "used: the first of these modes this kernel accepts");
		else if ((ret = mode_accepted(i)) == 0)
			add(r, SECTION_IO_URING, NULL, name, ANSWER_YES, ROLE_INFO, "a fallback");
		else
			add(r, SECTION_IO_URING, NULL, name, ANSWER_NO, ROLE_INFO,
			    "io_uring_setup: %s", strerror(-ret));
	}
}

static void report_ops(struct report *r, struct io_uring *ring)
{
	struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
	if (!probe) {
		add(r, SECTION_IO_URING, NULL, "op list", ANSWER_NO, ROLE_NEEDED,
		    "needed: this kernel cannot list its operations; Linux 5.19 or later can");
		return;
	}
	size_t n;
	const struct ring_op *ops = ring_ops(&n);
	for (size_t i = 0; i < n; i++) {
		char name[64];
		snprintf(name, sizeof name, "op %s", ops[i].name);
		bool supported = io_uring_opcode_supported(probe, ops[i].op);
		const char *use = "optional";
		if (ops[i].needed)
			use = "needed";
		else if (ops[i].op == IORING_OP_SPLICE && supported)
			use = "optional: large bodies go socket -> pipe -> socket in the kernel";
		else if (ops[i].op == IORING_OP_SPLICE)
			use = "optional: without it large bodies go through the buffer ring";
		if (ops[i].op == IORING_OP_SPLICE)
			r->splice = supported;
		add(r, SECTION_IO_URING, NULL, name, supported ? ANSWER_YES : ANSWER_NO,
		    ops[i].needed ? ROLE_NEEDED : ROLE_OPTIONAL, "%s", use);
	}
	for (size_t i = 0; i < sizeof later_ops / sizeof later_ops[0]; i++) {
		char name[64];
		snprintf(name, sizeof name, "op %s", later_ops[i].name);
		add(r, SECTION_IO_URING, NULL, name,
		    io_uring_opcode_supported(probe, later_ops[i].op) ? ANSWER_YES : ANSWER_NO,
		    ROLE_INFO, "not used yet: %s", later_ops[i].use);
	}
	io_uring_free_probe(probe);
}

/* ---------------------------------------------------------------------------------------------
 * io_uring: buffer ring, multishot recv and multishot accept, tried on AF_UNIX sockets
 */

#define PROBE_BGID 0       /* the buffer group of the probe's own ring */
#define PROBE_NBUFS 4      /* a power of two, as buffer rings need */
#define PROBE_BUF_SIZE 64
#define PROBE_PAYLOAD "ping"

enum { UD_RECV = 1, UD_ACCEPT };

struct completion {
	int res;
	unsigned flags;
};

/* Waits up to PROBE_WAIT_MS for the completion tagged user_data; others are consumed. Returns 0,
 * or -ETIME, or another -errno. */
static int wait_completion(struct io_uring *ring, uint64_t user_data, struct completion *out)
{
	int64_t deadline = monotonic_ms() + PROBE_WAIT_MS;
	for (;;) {
		int64_t left = deadline - monotonic_ms();
		if (left <= 0)
			return -ETIME;
		struct __kernel_timespec ts = { .tv_sec = left / 1000,
						.tv_nsec = (left % 1000) * 1000000 };
		struct io_uring_cqe *cqe;
		int ret = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
		if (ret == -EINTR)
			continue;
		if (ret)
			return ret;
		bool ours = io_uring_cqe_get_data64(cqe) == user_data;
		if (ours)
			*out = (struct completion){ .res = cqe->res, .flags = cqe->flags };
		io_uring_cqe_seen(ring, cqe);
		if (ours)
			return 0;
	}
}

/* Submits one prepared request. Returns 0 or -errno. */
static int submit_one(struct io_uring *ring, struct io_uring_sqe *sqe, uint64_t user_data)
{
	io_uring_sqe_set_data64(sqe, user_data);
	int ret = io_uring_submit(ring);
	return ret == 1 ? 0 : ret < 0 ? ret : -EAGAIN;
}

/* The probe's sockets. AF_UNIX, so that trying the operations needs no network (a namespace made
 * by `unshare --net` has lo down, and 127.0.0.1 is unreachable there): io_uring's multishot recv
 * and accept are one code path for every stream socket, the family only supplies recvmsg and
 * accept. A connected pair for the recv; for the accept a listener on an abstract address the
 * kernel picks (autobind), which leaves nothing on the file system to clean up. -1: not open. */
struct probe_sockets {
	int peer, conn;           /* socketpair: peer sends, the multishot recv reads conn */
	int listener, client;     /* client connects to listener while the accept is armed */
	int accepted;             /* the multishot accept's connection */
	struct sockaddr_un addr;  /* the listener's address */
	socklen_t addr_len;
};

static void sockets_init(struct probe_sockets *s)
{
	*s = (struct probe_sockets){ .peer = -1, .conn = -1, .listener = -1, .client = -1,
				     .accepted = -1 };
}

static void sockets_close(struct probe_sockets *s)
{
	int fds[] = { s->accepted, s->client, s->listener, s->conn, s->peer };
	for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	sockets_init(s);
}

/* The connected pair. Returns 0 or -errno. */
static int sockets_open_pair(struct probe_sockets *s)
{
	int fds[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds))
		return -errno;
	s->peer = fds[0];
	s->conn = fds[1];
	return 0;
}

/* The listener, bound to an abstract address of the kernel's choice. Returns 0 or -errno. */
static int sockets_open_listener(struct probe_sockets *s)
{
	s->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->listener < 0)
		return -errno;
	const struct sockaddr_un any = { .sun_family = AF_UNIX };
	s->addr_len = sizeof s->addr;
	if (bind(s->listener, (const struct sockaddr *)&any, sizeof any.sun_family) ||
	    listen(s->listener, 8) ||
	    getsockname(s->listener, (struct sockaddr *)&s->addr, &s->addr_len))
		return -errno;
	return 0;
}

/* A client connected to the listener, or -errno. The connect is bounded by PROBE_WAIT_MS. */
static int sockets_connect(const struct probe_sockets *s)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval bound = { .tv_sec = PROBE_WAIT_MS / 1000,
				 .tv_usec = (PROBE_WAIT_MS % 1000) * 1000 };
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof bound) ||
	    connect(fd, (const struct sockaddr *)&s->addr, s->addr_len)) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

/* A multishot recv into the buffer ring: the peer's bytes arrive in one of its buffers with
 * IORING_CQE_F_MORE (the recv stays armed), and the peer's shutdown ends it (0 bytes, no MORE),
 * as the worker expects of a connection. */
static void try_multishot_recv(struct io_uring *ring, const struct probe_sockets *s,
			       const char *buffers, struct verdict *v)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		decide(v, ANSWER_UNKNOWN, "needed: no free submission entry to try it");
		return;
	}
	io_uring_prep_recv_multishot(sqe, s->conn, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = PROBE_BGID;
	int ret = submit_one(ring, sqe, UD_RECV);
	if (ret) {
		decide(v, ANSWER_NO, "needed: submitting it failed: %s", strerror(-ret));
		return;
	}
	const size_t len = sizeof PROBE_PAYLOAD - 1;
	if (send(s->peer, PROBE_PAYLOAD, len, MSG_NOSIGNAL) != (ssize_t)len) {
		decide(v, ANSWER_UNKNOWN, "needed: sending to it failed: %s", strerror(errno));
		return;
	}
	struct completion c = { 0 };
	ret = wait_completion(ring, UD_RECV, &c);
	unsigned id = c.flags >> IORING_CQE_BUFFER_SHIFT;
	if (ret)
		decide(v, ANSWER_NO, "needed: no completion within %d ms: %s", PROBE_WAIT_MS,
		       strerror(-ret));
	else if (c.res < 0)
		decide(v, ANSWER_NO, "needed: recv failed: %s; Linux 6.0 or later has it",
		       strerror(-c.res));
	else if (!(c.flags & IORING_CQE_F_BUFFER) || id >= PROBE_NBUFS || c.res != (int)len ||
		 memcmp(buffers + id * PROBE_BUF_SIZE, PROBE_PAYLOAD, len))
		decide(v, ANSWER_NO, "needed: the bytes sent did not arrive in a ring buffer");
	else if (!(c.flags & IORING_CQE_F_MORE))
		decide(v, ANSWER_NO, "needed: the recv ended after one completion, without "
				     "IORING_CQE_F_MORE");
	else if (shutdown(s->peer, SHUT_WR))
		decide(v, ANSWER_UNKNOWN, "needed: closing its peer failed: %s", strerror(errno));
	else if ((ret = wait_completion(ring, UD_RECV, &c)) || c.res != 0 ||
		 (c.flags & IORING_CQE_F_MORE))
		decide(v, ANSWER_NO, "needed: it did not end when the peer closed");
	else
		decide(v, ANSWER_YES,
		       "needed: one recv armed per connection, into the buffer ring");
}

/* A multishot accept: a connection arrives with IORING_CQE_F_MORE (the accept stays armed). The
 * ring's teardown cancels it. */
static void try_multishot_accept(struct io_uring *ring, struct probe_sockets *s,
				 struct verdict *v)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (!sqe) {
		decide(v, ANSWER_UNKNOWN, "needed: no free submission entry to try it");
		return;
	}
	io_uring_prep_multishot_accept(sqe, s->listener, NULL, NULL, SOCK_CLOEXEC);
	int ret = submit_one(ring, sqe, UD_ACCEPT);
	if (ret) {
		decide(v, ANSWER_NO, "needed: submitting it failed: %s", strerror(-ret));
		return;
	}
	s->client = sockets_connect(s);
	if (s->client < 0) {
		decide(v, ANSWER_UNKNOWN, "needed: connecting to it failed: %s",
		       strerror(-s->client));
		return;
	}
	struct completion c = { 0 };
	ret = wait_completion(ring, UD_ACCEPT, &c);
	if (ret == 0 && c.res >= 0)
		s->accepted = c.res;
	if (ret)
		decide(v, ANSWER_NO, "needed: no completion within %d ms: %s", PROBE_WAIT_MS,
		       strerror(-ret));
	else if (c.res < 0)
		decide(v, ANSWER_NO, "needed: accept failed: %s; Linux 5.19 or later has it",
		       strerror(-c.res));
	else if (!(c.flags & IORING_CQE_F_MORE))
		decide(v, ANSWER_NO, "needed: the accept ended after one connection, without "
				     "IORING_CQE_F_MORE");
	else
		decide(v, ANSWER_YES, "needed: one accept armed per listener");
}

/* space: a page that holds the buffer ring and its buffers; it must stay mapped until the ring is
 * torn down, since a request still armed may write into it. */
static void report_buffers(struct report *r, struct io_uring *ring, void *space)
{
	struct verdict buf_ring, recv, accept;
	struct io_uring_buf_ring *br = space;
	char *buffers = (char *)space + PROBE_NBUFS * sizeof(struct io_uring_buf);
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = PROBE_NBUFS,
					.bgid = PROBE_BGID };
	int registered = io_uring_register_buf_ring(ring, &reg, 0);
	if (registered == 0) {
		io_uring_buf_ring_init(br);
		for (unsigned i = 0; i < PROBE_NBUFS; i++)
			io_uring_buf_ring_add(br, buffers + i * PROBE_BUF_SIZE, PROBE_BUF_SIZE,
					      (unsigned short)i,
					      io_uring_buf_ring_mask(PROBE_NBUFS), (int)i);
		io_uring_buf_ring_advance(br, PROBE_NBUFS);
	}
	struct probe_sockets socks;
	sockets_init(&socks);
	int ret;
	if (registered)
		decide(&recv, ANSWER_NO, "needed: it needs the buffer ring");
	else if ((ret = sockets_open_pair(&socks)))
		decide(&recv, ANSWER_UNKNOWN, "needed: cannot try it: socketpair: %s",
		       strerror(-ret));
	else
		try_multishot_recv(ring, &socks, buffers, &recv);
	if ((ret = sockets_open_listener(&socks)))
		decide(&accept, ANSWER_UNKNOWN, "needed: cannot try it: an AF_UNIX listener: %s",
		       strerror(-ret));
	else
		try_multishot_accept(ring, &socks, &accept);
	sockets_close(&socks); /* the armed accept keeps its file until the ring's teardown */
	if (registered)
		decide(&buf_ring, ANSWER_NO,
		       "needed: io_uring_register_buf_ring: %s; Linux 5.19 or later has it",
		       strerror(-registered));
	else if ((ret = io_uring_unregister_buf_ring(ring, PROBE_BGID)))
		decide(&buf_ring, ANSWER_NO, "needed: registered, but unregistering failed: %s",
		       strerror(-ret));
	else
		decide(&buf_ring, ANSWER_YES,
		       "needed: multishot recv takes its buffers from a registered ring");
	add(r, SECTION_BUFFERS, NULL, "buffer ring", buf_ring.answer, ROLE_NEEDED, "%s",
	    buf_ring.detail);
	add(r, SECTION_BUFFERS, NULL, "multishot accept", accept.answer, ROLE_NEEDED, "%s",
	    accept.detail);
	add(r, SECTION_BUFFERS, NULL, "multishot recv", recv.answer, ROLE_NEEDED, "%s",
	    recv.detail);
}

static void probe_io_uring(struct report *r)
{
	struct io_uring ring;
	unsigned features = 0;
	int used = ring_open(&ring, &features);
	if (used >= 0) {
		char names[384];
		format_bits(features, feature_names, sizeof feature_names / sizeof feature_names[0],
			    names, sizeof names);
		add(r, SECTION_IO_URING, NULL, "features", ANSWER_VALUE, ROLE_INFO, "%s", names);
	}
	report_modes(r, used);
	if (used < 0) {
		add(r, SECTION_IO_URING, NULL, "ring", ANSWER_NO, ROLE_NEEDED,
		    "needed: the kernel accepts none of the modes: %s; is "
		    "kernel.io_uring_disabled set?", strerror(-used));
		return;
	}
	size_t n;
	snprintf(r->ring_mode, sizeof r->ring_mode, "%s", ring_modes(&n)[used].name);
	report_ops(r, &ring);
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	void *space = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (space == MAP_FAILED) {
		add(r, SECTION_BUFFERS, NULL, "buffer ring", ANSWER_UNKNOWN, ROLE_NEEDED,
		    "needed: cannot try it: mmap: %s", strerror(errno));
	} else {
		report_buffers(r, &ring, space);
	}
	io_uring_queue_exit(&ring);
	if (space != MAP_FAILED)
		munmap(space, page);
}

/* ---------------------------------------------------------------------------------------------
 * BPF
 */

#define NEEDS_CAPS "needs CAP_BPF/CAP_SYS_ADMIN"

struct bpf_verdict {
	bool permitted;        /* xdp_permitted(): may load and attach */
	enum answer xdp_loads; /* XDP programs load */
	char why_not[96];      /* when they do not */
};

static const struct map_use {
	enum bpf_map_type type;
	const char *name;
	const char *use;
} limiter_maps[] = {
	{ BPF_MAP_TYPE_LRU_HASH, "lru_hash", "sources: a bucket per source address" },
	{ BPF_MAP_TYPE_LPM_TRIE, "lpm_trie", "policy: the CIDR policies" },
	{ BPF_MAP_TYPE_PERCPU_ARRAY, "percpu_array", "metrics and the admission budget" },
	{ BPF_MAP_TYPE_ARRAY, "array", "config and the fallback bucket" },
};

/* result: libbpf_probe_bpf_*()'s, which cannot tell a missing permission from a missing
 * feature: without permission a "no" is put down to the capabilities. */
static enum answer add_bpf_probe(struct report *r, const char *name, int result, bool permitted,
				 const char *use, char *why_not, size_t size)
{
	enum answer answer = result == 1 ? ANSWER_YES : result == 0 ? ANSWER_NO : ANSWER_UNKNOWN;
	if (answer == ANSWER_YES)
		snprintf(why_not, size, "%s", "");
	else if (answer == ANSWER_NO && !permitted)
		snprintf(why_not, size, "%s", NEEDS_CAPS);
	else if (answer == ANSWER_NO)
		snprintf(why_not, size, "this kernel lacks it");
	else
		snprintf(why_not, size, "the probe failed: %s", strerror(-result));
	add(r, SECTION_BPF, NULL, name, answer, ROLE_OPTIONAL, "%s",
	    answer == ANSWER_YES ? use : why_not);
	return answer;
}

static void probe_bpf(struct report *r, struct bpf_verdict *b)
{
	static const char btf_path[] = "/sys/kernel/btf/vmlinux";
	struct stat st;
	bool btf = stat(btf_path, &st) == 0;
	add(r, SECTION_BPF, NULL, "kernel btf", btf ? ANSWER_YES : ANSWER_NO, ROLE_INFO,
	    "%s%sthe limiter needs none: its maps carry their own BTF", btf ? btf_path : "",
	    btf ? "; " : "");
	b->permitted = xdp_permitted();
	if (b->permitted)
		add(r, SECTION_BPF, NULL, "permission", ANSWER_YES, ROLE_OPTIONAL,
		    "CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN: the gateway can load and attach "
		    "the limiter");
	else
		add(r, SECTION_BPF, NULL, "permission", ANSWER_NO, ROLE_OPTIONAL,
		    "needs CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN: the gateway runs without "
		    "the limiter, or refuses to start with xdp.required: true");
	bool bpffs = xdp_is_bpffs(BPFFS_ROOT);
	add(r, SECTION_BPF, NULL, "bpffs on " BPFFS_ROOT, bpffs ? ANSWER_YES : ANSWER_NO,
	    ROLE_OPTIONAL, "%s",
	    bpffs ? "the limiter pins its maps in " RW_XDP_PIN_DIR
		  : "the gateway mounts it when it starts with permission");
	b->xdp_loads = add_bpf_probe(r, "prog xdp",
				     libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_XDP, NULL),
				     b->permitted, "the limiter", b->why_not, sizeof b->why_not);
	for (size_t i = 0; i < sizeof limiter_maps / sizeof limiter_maps[0]; i++) {
		char name[64], why_not[96];
		snprintf(name, sizeof name, "map %s", limiter_maps[i].name);
		add_bpf_probe(r, name, libbpf_probe_bpf_map_type(limiter_maps[i].type, NULL),
			      b->permitted, limiter_maps[i].use, why_not, sizeof why_not);
	}
}

/* ---------------------------------------------------------------------------------------------
 * XDP per interface: the driver (ethtool) and native XDP features (netdev generic netlink)
 */

static const struct bit_name xdp_act_names[] = {
	{ NETDEV_XDP_ACT_BASIC, "basic" },
	{ NETDEV_XDP_ACT_REDIRECT, "redirect" },
	{ NETDEV_XDP_ACT_NDO_XMIT, "ndo_xmit" },
	{ NETDEV_XDP_ACT_XSK_ZEROCOPY, "xsk_zerocopy" },
	{ NETDEV_XDP_ACT_HW_OFFLOAD, "hw_offload" },
	{ NETDEV_XDP_ACT_RX_SG, "rx_sg" },
	{ NETDEV_XDP_ACT_NDO_XMIT_SG, "ndo_xmit_sg" },
};

struct genl_request {
	struct nlmsghdr nh;
	struct genlmsghdr gh;
	char attrs[32];
};

/* A generic netlink socket and the netdev family's id. */
struct netdev_netlink {
	int fd;
	uint16_t family; /* 0: unknown, error says why (-ENOENT: the kernel has no such family) */
	int error;
	uint32_t seq;
};

static void genl_request_init(struct genl_request *m, uint16_t family, uint8_t cmd, uint32_t seq)
{
	memset(m, 0, sizeof *m);
	m->nh.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN);
	m->nh.nlmsg_type = family;
	m->nh.nlmsg_flags = NLM_F_REQUEST;
	m->nh.nlmsg_seq = seq;
	m->gh.cmd = cmd;
	m->gh.version = 1;
}

/* Appends an attribute; the callers' attributes fit in attrs[]. */
static void genl_put(struct genl_request *m, uint16_t type, const void *data, uint16_t len)
{
	struct nlattr *a = (struct nlattr *)((char *)m + NLMSG_ALIGN(m->nh.nlmsg_len));
	a->nla_type = type;
	a->nla_len = (uint16_t)(NLA_HDRLEN + len);
	memcpy((char *)a + NLA_HDRLEN, data, len);
	m->nh.nlmsg_len = NLMSG_ALIGN(m->nh.nlmsg_len) + NLA_ALIGN(a->nla_len);
}

/* The attribute of that type with at least len bytes of payload, or NULL. */
static const void *genl_attr(const char *attrs, size_t size, uint16_t type, size_t len)
{
	size_t off = 0;
	while (off + NLA_HDRLEN <= size) {
		const struct nlattr *a = (const struct nlattr *)(attrs + off);
		if (a->nla_len < NLA_HDRLEN || a->nla_len > size - off)
			return NULL;
		if ((a->nla_type & NLA_TYPE_MASK) == type)
			return a->nla_len >= NLA_HDRLEN + len ? (const char *)a + NLA_HDRLEN : NULL;
		off += NLA_ALIGN(a->nla_len);
	}
	return NULL;
}

/* Sends m and reads its reply into buf: *attrs and *size get the reply's attributes. Each read
 * waits at most PROBE_WAIT_MS (SO_RCVTIMEO). Returns 0 or -errno. */
static int genl_call(int fd, const struct genl_request *m, uint32_t *buf, size_t cap,
		     const char **attrs, size_t *size)
{
	if (send(fd, m, m->nh.nlmsg_len, 0) < 0)
		return -errno;
	for (;;) {
		ssize_t n = recv(fd, buf, cap, MSG_TRUNC);
		if (n < 0)
			return -errno;
		if ((size_t)n > cap)
			return -EMSGSIZE;
		size_t off = 0;
		while (off + NLMSG_HDRLEN <= (size_t)n) {
			const struct nlmsghdr *h =
				(const struct nlmsghdr *)((const char *)buf + off);
			if (h->nlmsg_len < NLMSG_HDRLEN || h->nlmsg_len > (size_t)n - off)
				return -EBADMSG;
			off += NLMSG_ALIGN(h->nlmsg_len);
			if (h->nlmsg_seq != m->nh.nlmsg_seq)
				continue;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);
				return h->nlmsg_len < NLMSG_LENGTH(sizeof *e) ? -EBADMSG
				       : e->error		       ? e->error
									: -ENODATA;
			}
			if (h->nlmsg_len < NLMSG_LENGTH(GENL_HDRLEN))
				return -EBADMSG;
			*attrs = (const char *)NLMSG_DATA(h) + GENL_HDRLEN;
			*size = h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
			return 0;
		}
	}
}

static void netdev_netlink_open(struct netdev_netlink *nl)
{
	*nl = (struct netdev_netlink){ .fd = -1 };
	struct timeval bound = { .tv_sec = PROBE_WAIT_MS / 1000,
				 .tv_usec = (PROBE_WAIT_MS % 1000) * 1000 };
	nl->fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_GENERIC);
	if (nl->fd < 0 || setsockopt(nl->fd, SOL_SOCKET, SO_RCVTIMEO, &bound, sizeof bound)) {
		nl->error = -errno;
		return;
	}
	struct genl_request m;
	genl_request_init(&m, GENL_ID_CTRL, CTRL_CMD_GETFAMILY, ++nl->seq);
	genl_put(&m, CTRL_ATTR_FAMILY_NAME, NETDEV_FAMILY_NAME, sizeof NETDEV_FAMILY_NAME);
	uint32_t buf[2048];
	const char *attrs;
	size_t size;
	nl->error = genl_call(nl->fd, &m, buf, sizeof buf, &attrs, &size);
	if (nl->error)
		return;
	const void *id = genl_attr(attrs, size, CTRL_ATTR_FAMILY_ID, sizeof nl->family);
	if (id)
		memcpy(&nl->family, id, sizeof nl->family);
	else
		nl->error = -EBADMSG;
}

/* The device's NETDEV_XDP_ACT_* bits. Returns 0 or -errno. */
static int netdev_xdp_features(struct netdev_netlink *nl, unsigned ifindex, uint64_t *features)
{
	struct genl_request m;
	genl_request_init(&m, nl->family, NETDEV_CMD_DEV_GET, ++nl->seq);
	uint32_t index = ifindex;
	genl_put(&m, NETDEV_A_DEV_IFINDEX, &index, sizeof index);
	uint32_t buf[2048];
	const char *attrs;
	size_t size;
	int ret = genl_call(nl->fd, &m, buf, sizeof buf, &attrs, &size);
	if (ret)
		return ret;
	const void *bits = genl_attr(attrs, size, NETDEV_A_DEV_XDP_FEATURES, sizeof *features);
	if (!bits)
		return -EBADMSG;
	memcpy(features, bits, sizeof *features);
	return 0;
}

/* The driver's name (ETHTOOL_GDRVINFO). Returns 0 or -errno. */
static int interface_driver(int fd, const char *name, char *driver, size_t size)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", name);
	ifr.ifr_data = (char *)&info;
	if (ioctl(fd, SIOCETHTOOL, &ifr))
		return -errno;
	info.driver[sizeof info.driver - 1] = 0;
	snprintf(driver, size, "%s", info.driver[0] ? info.driver : "none reported");
	return 0;
}

/* Native XDP from the netdev family: yes when the driver has the basic XDP actions. */
static enum answer native_xdp(struct netdev_netlink *nl, unsigned ifindex, char *detail,
			      size_t size)
{
	if (nl->error == -ENOENT) {
		snprintf(detail, size, "this kernel does not report it: no netdev netlink family "
				       "before Linux 6.3");
		return ANSWER_UNKNOWN;
	}
	uint64_t features = 0;
	int ret = nl->error ? nl->error : netdev_xdp_features(nl, ifindex, &features);
	if (ret) {
		snprintf(detail, size, "netdev netlink: %s", strerror(-ret));
		return ANSWER_UNKNOWN;
	}
	char names[160];
	format_bits(features, xdp_act_names, sizeof xdp_act_names / sizeof xdp_act_names[0], names,
		    sizeof names);
	snprintf(detail, size, "xdp features: %s", names);
	return features & NETDEV_XDP_ACT_BASIC ? ANSWER_YES : ANSWER_NO;
}

static void probe_interface(struct report *r, const struct bpf_verdict *b, int ethtool_fd,
			    struct netdev_netlink *nl, const char *name, unsigned ifindex,
			    struct interface_use *use)
{
	char driver[64];
	int ret = ethtool_fd < 0 ? ethtool_fd
				 : interface_driver(ethtool_fd, name, driver, sizeof driver);
	if (ret == -EOPNOTSUPP)
		add(r, SECTION_XDP, name, "driver", ANSWER_VALUE, ROLE_INFO, "none reported");
	else if (ret)
		add(r, SECTION_XDP, name, "driver", ANSWER_VALUE, ROLE_INFO,
		    "unknown (ethtool: %s)", strerror(-ret));
	else
		add(r, SECTION_XDP, name, "driver", ANSWER_VALUE, ROLE_INFO, "%s", driver);

	char detail[256];
	enum answer native = native_xdp(nl, ifindex, detail, sizeof detail);
	add(r, SECTION_XDP, name, "native", native, ROLE_OPTIONAL, "%s", detail);
	add(r, SECTION_XDP, name, "generic", b->xdp_loads, ROLE_OPTIONAL, "%s",
	    b->xdp_loads == ANSWER_YES ? "wherever XDP programs load" : b->why_not);

	LIBBPF_OPTS(bpf_xdp_query_opts, attached);
	ret = bpf_xdp_query((int)ifindex, 0, &attached);
	if (ret)
		add(r, SECTION_XDP, name, "program attached", ANSWER_UNKNOWN, ROLE_INFO, "%s",
		    strerror(-ret));
	else if (attached.attach_mode != XDP_ATTACHED_NONE)
		add(r, SECTION_XDP, name, "program attached", ANSWER_YES, ROLE_INFO,
		    "id %u: ringway does not attach over another program",
		    attached.prog_id ? attached.prog_id : attached.drv_prog_id);
	else
		add(r, SECTION_XDP, name, "program attached", ANSWER_NO, ROLE_INFO, "%s", "");

	snprintf(use->name, sizeof use->name, "%s", name);
	const char *mode = "native if the driver takes it, else generic";
	if (!b->permitted)
		mode = "none (needs CAP_NET_ADMIN and CAP_BPF or CAP_SYS_ADMIN)";
	else if (b->xdp_loads != ANSWER_YES)
		mode = "none (XDP programs do not load)";
	else if (ret == 0 && attached.attach_mode != XDP_ATTACHED_NONE)
		mode = "none (another XDP program is attached)";
	else if (native == ANSWER_YES)
		mode = "native";
	else if (native == ANSWER_NO)
		mode = "generic";
	snprintf(use->xdp_mode, sizeof use->xdp_mode, "%s", mode);
}

/* Every interface, or only the one named. Returns 0 or -errno (cannot list them). */
static int probe_interfaces(struct report *r, const struct bpf_verdict *b, const char *only)
{
	struct if_nameindex *all = if_nameindex();
	if (!all)
		return -errno;
	size_t n = 0;
	while (all[n].if_index)
		n++;
	r->interfaces = calloc(n ? n : 1, sizeof *r->interfaces);
	if (!r->interfaces) {
		if_freenameindex(all);
		r->out_of_memory = true;
		return 0;
	}
	int ethtool_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ethtool_fd < 0)
		ethtool_fd = -errno;
	struct netdev_netlink nl;
	netdev_netlink_open(&nl);
	for (size_t i = 0; i < n; i++)
		if (!only || strcmp(only, all[i].if_name) == 0)
			probe_interface(r, b, ethtool_fd, &nl, all[i].if_name, all[i].if_index,
					&r->interfaces[r->ninterfaces++]);
	if (nl.fd >= 0)
		close(nl.fd);
	if (ethtool_fd >= 0)
		close(ethtool_fd);
	if_freenameindex(all);
	return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Output
 */

static void print_json_string(const char *s)
{
	char out[6 * 64]; /* json_escape writes at most 6 bytes per input byte */
	size_t len = strlen(s);
	putchar('"');
	for (size_t done = 0; done < len;) {
		size_t chunk = len - done < 64 ? len - done : 64;
		fwrite(out, 1, json_escape(out, sizeof out, s + done, chunk), stdout);
		done += chunk;
	}
	putchar('"');
}

static bool missing(const struct finding *f)
{
	return f->role == ROLE_NEEDED && f->answer != ANSWER_YES;
}

static int label_width(const struct report *r)
{
	size_t width = strlen("ring mode:");
	for (size_t i = 0; i < r->n; i++)
		if (strlen(r->findings[i].name) + 1 > width)
			width = strlen(r->findings[i].name) + 1;
	for (size_t i = 0; i < r->ninterfaces; i++)
		if (strlen("xdp on :") + strlen(r->interfaces[i].name) > width)
			width = strlen("xdp on :") + strlen(r->interfaces[i].name);
	return (int)width;
}

static void print_line(int width, const char *name, const char *answer, const char *detail)
{
	char label[96];
	snprintf(label, sizeof label, "%s:", name);
	printf("  %-*s %s", width, label, answer);
	if (detail && detail[0])
		printf(" (%s)", detail);
	putchar('\n');
}

static void print_text(const struct report *r)
{
	int width = label_width(r);
	for (size_t i = 0; i < r->n; i++) {
		const struct finding *f = &r->findings[i];
		const struct finding *prev = i ? &r->findings[i - 1] : NULL;
		if (!prev || prev->section != f->section || strcmp(prev->interface, f->interface))
			printf("%s%s%s\n", f->section, f->interface[0] ? " " : "", f->interface);
		if (f->answer == ANSWER_VALUE)
			print_line(width, f->name, f->detail, NULL);
		else
			print_line(width, f->name, answer_names[f->answer], f->detail);
	}
	printf("ringway will use:\n");
	print_line(width, "ring mode", r->ring_mode[0] ? r->ring_mode : "none", NULL);
	print_line(width, "splice", r->splice ? "yes" : "no", NULL);
	for (size_t i = 0; i < r->ninterfaces; i++) {
		char label[IF_NAMESIZE + 8];
		snprintf(label, sizeof label, "xdp on %s", r->interfaces[i].name);
		print_line(width, label, r->interfaces[i].xdp_mode, NULL);
	}
}

static void print_json(const struct report *r)
{
	bool ok = true;
	for (size_t i = 0; i < r->n; i++)
		ok = ok && !missing(&r->findings[i]);
	printf("{\n  \"ok\": %s,\n  \"missing\": [", ok ? "true" : "false");
	bool first = true;
	for (size_t i = 0; i < r->n; i++) {
		if (!missing(&r->findings[i]))
			continue;
		printf("%s", first ? "" : ", ");
		print_json_string(r->findings[i].name);
		first = false;
	}
	printf("],\n  \"findings\": [\n");
	for (size_t i = 0; i < r->n; i++) {
		const struct finding *f = &r->findings[i];
		printf("    {\"section\": ");
		print_json_string(f->section);
		if (f->interface[0]) {
			printf(", \"interface\": ");
			print_json_string(f->interface);
		}
		printf(", \"name\": ");
		print_json_string(f->name);
		if (f->answer == ANSWER_VALUE) {
			printf(", \"value\": ");
		} else {
			printf(", \"answer\": \"%s\", \"note\": ", answer_names[f->answer]);
		}
		print_json_string(f->detail);
		printf(", \"role\": \"%s\"}%s\n", role_names[f->role], i + 1 < r->n ? "," : "");
	}
	printf("  ],\n  \"use\": {\"ring_mode\": ");
	if (r->ring_mode[0])
		print_json_string(r->ring_mode);
	else
		printf("null");
	printf(", \"splice\": %s, \"xdp\": {", r->splice ? "true" : "false");
	for (size_t i = 0; i < r->ninterfaces; i++) {
		printf("%s", i ? ", " : "");
		print_json_string(r->interfaces[i].name);
		printf(": ");
		print_json_string(r->interfaces[i].xdp_mode);
	}
	printf("}}\n}\n");
}

/* ---------------------------------------------------------------------------------------------
 * The command
 */

static void usage(FILE *to)
{
	fputs("usage: ringway probe [--json] [--interface IF]\n"
	      "What this host's kernel offers and what ringway will use of it: io_uring set-up\n"
	      "modes and operations, a buffer ring, multishot accept and recv (tried on\n"
	      "AF_UNIX sockets: no network needed), BPF program and map types, bpffs,\n"
	      "permission, and per interface its driver and native XDP support. Nothing on\n"
	      "the host is changed or attached.\n"
	      "  --json           one JSON object instead of text\n"
	      "  --interface IF   only this interface (default: all)\n"
	      "Exit status: 0 ringway can run here, 1 something it needs is missing, 2 bad\n"
	      "usage.\n",
	      to);
}

int probe_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "interface", required_argument, NULL, 'i' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	bool json = false;
	const char *only = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "i:h", opts, NULL)) != -1) {
		if (c == 'j') {
			json = true;
		} else if (c == 'i') {
			only = optarg;
		} else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "ringway probe: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (only && !if_nametoindex(only)) {
		fprintf(stderr, "ringway probe: no interface '%s'\n", only);
		return 2;
	}

	struct report r = { 0 };
	struct bpf_verdict bpf;
	probe_io_uring(&r);
	probe_bpf(&r, &bpf);
	int ret = probe_interfaces(&r, &bpf, only);
	if (ret)
		add(&r, SECTION_XDP, NULL, "interfaces", ANSWER_UNKNOWN, ROLE_INFO,
		    "cannot list them: %s", strerror(-ret));
	int code = 0;
	if (r.out_of_memory) {
		fprintf(stderr, "ringway probe: out of memory\n");
		code = 1;
	} else {
		if (json)
			print_json(&r);
		else
			print_text(&r);
		char lacks[512] = "";
		for (size_t i = 0; i < r.n; i++) {
			size_t len = strlen(lacks);
			if (missing(&r.findings[i]))
				snprintf(lacks + len, sizeof lacks - len, "%s%s", len ? ", " : "",
					 r.findings[i].name);
		}
		if (lacks[0]) {
			fprintf(stderr, "ringway cannot run here: it needs %s\n", lacks);
			code = 1;
		}
		if (fflush(stdout) == EOF) {
			fprintf(stderr, "ringway probe: writing the report: %s\n", strerror(errno));
			code = 1;
		}
	}
	free(r.findings);
	free(r.interfaces);
	return code;
}
