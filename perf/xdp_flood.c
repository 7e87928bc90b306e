/* xdp_flood.c — the SYN flooder of the XDP benchmark (perf/xdp-bench.sh): writes raw Ethernet
 * frames carrying TCP SYNs (IPv4 or IPv6, valid checksums, a random source port and sequence
 * number each) out of one interface with AF_PACKET sendmmsg, bypassing the qdisc. The source is
 * one address, or a random address inside a prefix for every frame (a spoofed-source flood).
 * Both --count and --seconds bound it, --rate paces it; it prints the frames sent and the rate.
 * For the benchmark's own veth pair only: it refuses any interface that is not a veth, and
 * addresses outside the documentation ranges 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
 *
 *   xdp_flood --interface IF --dst-mac MAC --dst IP --port N (--src IP | --src-net CIDR)
 *             --count N --seconds S [--rate N]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/ethtool.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64          /* frames per sendmmsg */
#define TCP_LEN 24        /* TCP header with one MSS option, as real SYNs carry */
#define FRAME_MAX (ETH_HLEN + 40 + TCP_LEN)

struct target {
	int family;                /* AF_INET or AF_INET6 */
	uint8_t src[16], dst[16];  /* network order; IPv4 in the first 4 bytes */
	unsigned src_prefix;       /* bits of src kept; the rest is random per frame */
	uint16_t port;
	uint8_t src_mac[ETH_ALEN], dst_mac[ETH_ALEN];
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(FILE *to)
{
	fputs("usage: xdp_flood --interface IF --dst-mac MAC --dst IP --port N\n"
	      "                 (--src IP | --src-net CIDR) --count N --seconds S [--rate N]\n"
	      "  --interface IF   send out of this veth (its MAC is the source MAC)\n"
	      "  --dst-mac MAC    destination MAC, aa:bb:cc:dd:ee:ff\n"
	      "  --dst IP         destination address, IPv4 or IPv6 (the flood's family)\n"
	      "  --port N         destination TCP port\n"
	      "  --src IP         one source address\n"
	      "  --src-net CIDR   a random source inside CIDR for every frame (spoofed sources)\n"
	      "  --count N        stop after N frames\n"
	      "  --seconds S      stop after S seconds (whichever bound comes first)\n"
	      "  --rate N         at most N frames per second (default: as fast as it can)\n"
	      "Only a veth, and addresses in 198.51.100.0/24, 203.0.113.0/24 or 2001:db8::/32.\n",
	      to);
}

/* xorshift64*: the random source addresses, ports and sequence numbers. */
static uint64_t rng_state;

static uint64_t rng(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545f4914f6cdd1dull;
}

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Ones' complement sum of 16-bit big-endian words, not yet folded. */
static uint32_t sum16(const uint8_t *p, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)p[i] << 8 | p[i + 1];
	if (len & 1)
		sum += (uint32_t)p[len - 1] << 8;
	return sum;
}

static uint16_t fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* Is addr/prefix inside one of the documentation ranges? */
static int documentation_range(int family, const uint8_t *a, unsigned prefix)
{
	if (family == AF_INET)
		return prefix >= 24 && ((a[0] == 198 && a[1] == 51 && a[2] == 100) ||
					(a[0] == 203 && a[1] == 0 && a[2] == 113));
	return prefix >= 32 && a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8;
}

/* "a.b.c.d" or IPv6, with "/len" when want_prefix; *family must match when set. */
static int parse_address(const char *text, int want_prefix, int *family, uint8_t addr[16],
			 unsigned *prefix)
{
	char buf[INET6_ADDRSTRLEN + 8];
	snprintf(buf, sizeof buf, "%s", text);
	char *slash = strchr(buf, '/');
	if (!!slash != !!want_prefix)
		return -1;
	if (slash)
		*slash = 0;
	int fam = strchr(buf, ':') ? AF_INET6 : AF_INET;
	if ((*family && *family != fam) || inet_pton(fam, buf, addr) != 1)
		return -1;
	*family = fam;
	unsigned bits = fam == AF_INET ? 32 : 128;
	*prefix = bits;
	if (slash) {
		char *end;
		unsigned long len = strtoul(slash + 1, &end, 10);
		if (!slash[1] || *end || len > bits)
			return -1;
		*prefix = (unsigned)len;
	}
	return documentation_range(fam, addr, *prefix) ? 0 : -1;
}

static int parse_mac(const char *text, uint8_t mac[ETH_ALEN])
{
	char tail;
	return sscanf(text, "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx%c", &mac[0], &mac[1], &mac[2], &mac[3],
		      &mac[4], &mac[5], &tail) == 6 ? 0 : -1;
}

static int parse_count(const char *text, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(text, &end, 10);
	if (!*text || *end || errno || text[0] == '-' || v == 0)
		return -1;
	*out = v;
	return 0;
}

/* Is the interface a veth? Asked of the driver, in this network namespace. */
static int is_veth(int fd, const char *ifname)
{
	struct ethtool_drvinfo info = { .cmd = ETHTOOL_GDRVINFO };
	struct ifreq ifr = { .ifr_data = (void *)&info };
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	return ioctl(fd, SIOCETHTOOL, &ifr) == 0 && strcmp(info.driver, "veth") == 0;
}

/* Writes one SYN frame into f; returns its length. The source address, source port and sequence
 * number change from frame to frame. */
static size_t build_frame(const struct target *t, uint8_t *f)
{
	uint8_t src[16];
	memcpy(src, t->src, 16);
	unsigned bits = t->family == AF_INET ? 32 : 128;
	for (unsigned b = t->src_prefix & ~7u; b < bits; b += 8) {
		uint8_t host = b < t->src_prefix ? (uint8_t)(0xff >> (t->src_prefix - b)) : 0xff;
		src[b / 8] = (uint8_t)((src[b / 8] & ~host) | ((uint8_t)rng() & host));
	}

	uint16_t ethertype = htons(t->family == AF_INET ? ETH_P_IP : ETH_P_IPV6);
	memcpy(f, t->dst_mac, ETH_ALEN);
	memcpy(f + ETH_ALEN, t->src_mac, ETH_ALEN);
	memcpy(f + 2 * ETH_ALEN, &ethertype, 2);
	size_t l3 = ETH_HLEN, l4;
	uint32_t pseudo;
	if (t->family == AF_INET) {
		struct iphdr ip = {
			.version = 4, .ihl = 5, .tot_len = htons(20 + TCP_LEN),
			.id = (uint16_t)rng(), .frag_off = htons(IP_DF), .ttl = 64,
			.protocol = IPPROTO_TCP,
		};
		memcpy(&ip.saddr, src, 4);
		memcpy(&ip.daddr, t->dst, 4);
		ip.check = fold(sum16((const uint8_t *)&ip, sizeof ip, 0));
		memcpy(f + l3, &ip, sizeof ip);
		l4 = l3 + sizeof ip;
		pseudo = sum16(src, 4, sum16(t->dst, 4, IPPROTO_TCP + TCP_LEN));
	} else {
		struct ip6_hdr ip6 = {
			.ip6_flow = htonl(6u << 28), .ip6_plen = htons(TCP_LEN),
			.ip6_nxt = IPPROTO_TCP, .ip6_hlim = 64,
		};
		memcpy(&ip6.ip6_src, src, 16);
		memcpy(&ip6.ip6_dst, t->dst, 16);
		memcpy(f + l3, &ip6, sizeof ip6);
		l4 = l3 + sizeof ip6;
		pseudo = sum16(src, 16, sum16(t->dst, 16, IPPROTO_TCP + TCP_LEN));
	}
	struct tcphdr tcp = {
		.source = htons((uint16_t)(1024 + rng() % 64512)), .dest = htons(t->port),
		.seq = (uint32_t)rng(), .doff = TCP_LEN / 4, .syn = 1, .window = htons(64240),
	};
	const uint8_t mss[4] = { 2, 4, 1460 >> 8, 1460 & 0xff };
	memcpy(f + l4, &tcp, sizeof tcp);
	memcpy(f + l4 + sizeof tcp, mss, sizeof mss);
	tcp.check = fold(sum16(f + l4, TCP_LEN, pseudo));
	memcpy(f + l4, &tcp, sizeof tcp);
	return l4 + TCP_LEN;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "interface", required_argument, NULL, 'i' }, { "dst-mac", required_argument, NULL, 'm' },
		{ "dst", required_argument, NULL, 'd' },       { "port", required_argument, NULL, 'p' },
		{ "src", required_argument, NULL, 's' },       { "src-net", required_argument, NULL, 'n' },
		{ "count", required_argument, NULL, 'c' },     { "seconds", required_argument, NULL, 't' },
		{ "rate", required_argument, NULL, 'r' },      { "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	struct target t = { 0 };
	const char *ifname = NULL;
	uint64_t count = 0, seconds = 0, port = 0, rate = 0;
	unsigned dst_prefix;
	int have_mac = 0, have_dst = 0, sources = 0, c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		int bad = 0;
		if (c == 'i') {
			ifname = optarg;
		} else if (c == 'm') {
			bad = parse_mac(optarg, t.dst_mac);
			have_mac = 1;
		} else if (c == 'd') {
			bad = parse_address(optarg, 0, &t.family, t.dst, &dst_prefix);
			have_dst = 1;
		} else if (c == 'p') {
			bad = parse_count(optarg, &port) || port > 65535;
		} else if (c == 's' || c == 'n') {
			bad = parse_address(optarg, c == 'n', &t.family, t.src, &t.src_prefix);
			sources++;
		} else if (c == 'c') {
			bad = parse_count(optarg, &count);
		} else if (c == 't') {
			bad = parse_count(optarg, &seconds) || seconds > 3600;
		} else if (c == 'r') {
			bad = parse_count(optarg, &rate);
		} else if (c == 'h') {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
		if (bad) {
			const struct option *o = opts;
			while (o->val != c)
				o++;
			fprintf(stderr, "xdp_flood: invalid --%s '%s' (addresses: one family, in the "
					"documentation ranges; numbers: whole, above 0; --port at most "
					"65535, --seconds at most 3600)\n", o->name, optarg);
			return 2;
		}
	}
	if (optind != argc || !ifname || !have_mac || !have_dst || !port || sources != 1 ||
	    !count || !seconds) {
		fprintf(stderr, "xdp_flood: --interface, --dst-mac, --dst, --port, one of --src and "
				"--src-net, --count and --seconds are all required\n");
		usage(stderr);
		return 2;
	}
	t.port = (uint16_t)port;

	int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only, receive nothing */
	int ifindex = (int)if_nametoindex(ifname);
	struct ifreq ifr = { 0 };
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", ifname);
	if (fd < 0 || !ifindex || ioctl(fd, SIOCGIFHWADDR, &ifr)) {
		fprintf(stderr, "xdp_flood: %s: %s\n", ifname, strerror(errno));
		return 1;
	}
	if (!is_veth(fd, ifname)) {
		fprintf(stderr, "xdp_flood: %s is not a veth; refusing to flood it (the benchmark "
				"floods its own veth pair only)\n", ifname);
		return 1;
	}
	memcpy(t.src_mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET, .sll_ifindex = ifindex };
	int one = 1;
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) ||
	    setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one)) {
		fprintf(stderr, "xdp_flood: %s: %s\n", ifname, strerror(errno));
		return 1;
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	rng_state = (uint64_t)getpid() << 32 ^ (uint64_t)(now_seconds() * 1e9) ^ 1;

	static uint8_t frames[BATCH][FRAME_MAX];
	struct iovec iov[BATCH];
	struct mmsghdr msgs[BATCH];
	memset(msgs, 0, sizeof msgs);
	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = frames[i];
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
	}
	uint64_t sent = 0, refused = 0;
	double start = now_seconds(), elapsed = 0;
	while (!stop && sent + refused < count && elapsed < (double)seconds) {
		unsigned n = count - sent - refused < BATCH ? (unsigned)(count - sent - refused) : BATCH;
		double ahead = rate ? (double)(sent + refused) / (double)rate - elapsed : 0;
		if (ahead > 0) { /* paced: sleep until this batch is due */
			struct timespec ts = { .tv_sec = (time_t)ahead };
			ts.tv_nsec = (long)((ahead - (double)ts.tv_sec) * 1e9);
			nanosleep(&ts, NULL);
		}
		for (unsigned i = 0; i < n; i++)
			iov[i].iov_len = build_frame(&t, frames[i]);
		/* A frame the interface refuses (ENOBUFS: its queue is full) ends the batch; the
		 * rest is built anew. */
		int r = sendmmsg(fd, msgs, n, 0);
		if (r >= 0) {
			sent += (uint64_t)r;
			refused += (unsigned)r < n;
		} else if (errno == ENOBUFS || errno == EAGAIN) {
			refused++;
		} else if (errno != EINTR) {
			fprintf(stderr, "xdp_flood: sendmmsg: %s\n", strerror(errno));
			return 1;
		}
		elapsed = now_seconds() - start;
	}
	printf("sent %llu frames in %.2f s: %.0f frames/s (%llu refused by the interface)\n",
	       (unsigned long long)sent, elapsed, elapsed > 0 ? (double)sent / elapsed : 0.0,
	       (unsigned long long)refused);
	close(fd);
	return 0;
}
