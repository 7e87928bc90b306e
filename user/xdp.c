/* xdp.c — the XDP limiter from user space: opens the skeleton, reuses the maps pinned under
 * xdp.pin_path (per-source state and counters survive restarts; a pin of another shape is
 * replaced), rewrites the config and policy maps from the configuration, and attaches the program
 * with a bpf_link (native, falling back to generic), so a crashed gateway leaves nothing attached.
 * Also the pinned-map helpers that `ringway limits` shares. */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <linux/magic.h>
#include <net/if.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "config.h"
#include "limiter.skel.h"
#include "log.h"
#include "xdp.h"

/* ---------------------------------------------------------------------------------------------
 * Pinned maps
 */

static const char *const pinned_names[] = { "config", "policy", "sources", "metrics" };

int xdp_maps_open(const char *pin_dir, struct xdp_maps *maps, char *err, size_t errlen)
{
	int *fds[] = { &maps->config, &maps->policy, &maps->sources, &maps->metrics };
	for (int i = 0; i < 4; i++)
		*fds[i] = -1;
	for (int i = 0; i < 4; i++) {
		char path[512];
		snprintf(path, sizeof path, "%s/%s", pin_dir, pinned_names[i]);
		*fds[i] = bpf_obj_get(path);
		if (*fds[i] < 0) {
			int e = errno;
			if (e == ENOENT)
				snprintf(err, errlen,
					 "no limiter maps at %s (the gateway pins them when it starts "
					 "with xdp enabled)", pin_dir);
			else if (e == EPERM || e == EACCES)
				snprintf(err, errlen, "%s: %s (needs root)", path, strerror(e));
			else
				snprintf(err, errlen, "%s: %s", path, strerror(e));
			xdp_maps_close(maps);
			return -e;
		}
	}
	return 0;
}

void xdp_maps_close(struct xdp_maps *maps)
{
	int *fds[] = { &maps->config, &maps->policy, &maps->sources, &maps->metrics };
	for (int i = 0; i < 4; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
}

int xdp_metrics_read(int metrics_fd, struct rw_xdp_metrics *sum)
{
	int ncpus = libbpf_num_possible_cpus();
	if (ncpus <= 0)
		return ncpus ? ncpus : -EINVAL;
	struct rw_xdp_metrics *per_cpu = calloc((size_t)ncpus, sizeof *per_cpu);
	if (!per_cpu)
		return -ENOMEM;
	uint32_t zero = 0;
	memset(sum, 0, sizeof *sum);
	if (bpf_map_lookup_elem(metrics_fd, &zero, per_cpu)) {
		int e = errno;
		free(per_cpu);
		return -e;
	}
	/* The struct is all u64 counters: add them field by field. */
	for (int c = 0; c < ncpus; c++) {
		const uint64_t *from = (const uint64_t *)&per_cpu[c];
		uint64_t *to = (uint64_t *)sum;
		for (size_t f = 0; f < sizeof *sum / sizeof(uint64_t); f++)
			to[f] += from[f];
	}
	free(per_cpu);
	return 0;
}

#define WALK_BATCH 4096 /* entries per syscall */

int xdp_sources_walk(int sources_fd, xdp_source_fn *fn, void *ctx)
{
	struct rw_source_key *keys = malloc(WALK_BATCH * sizeof *keys);
	struct rw_source *values = malloc(WALK_BATCH * sizeof *values);
	int rc = keys && values ? 0 : -ENOMEM;
	uint32_t token, *from = NULL; /* a hash map's batch position is a bucket number */
	while (rc == 0) {
		uint32_t count = WALK_BATCH;
		int done = bpf_map_lookup_batch(sources_fd, from, &token, keys, values, &count, NULL);
		int e = done ? errno : 0;
		for (uint32_t i = 0; i < count && (!done || e == ENOENT); i++)
			fn(&keys[i], &values[i], ctx);
		if (done)
			rc = e == ENOENT ? 1 : -e; /* ENOENT: the last batch */
		from = &token;
	}
	free(keys);
	free(values);
	return rc < 0 ? rc : 0;
}

static void count_source(const struct rw_source_key *key, const struct rw_source *value,
			 void *ctx)
{
	(*(uint64_t *)ctx)++;
}

uint64_t xdp_sources_count(int sources_fd)
{
	uint64_t n = 0;
	xdp_sources_walk(sources_fd, count_source, &n);
	return n;
}

int xdp_policies_replace(int policy_fd, const struct rw_xdp_policy *policies, uint32_t n)
{
	struct rw_policy_key key, next;
	/* Deleting while walking restarts the walk: an LPM trie has no stable order to continue. */
	while (bpf_map_get_next_key(policy_fd, NULL, &next) == 0) {
		key = next;
		if (bpf_map_delete_elem(policy_fd, &key))
			return -errno;
	}
	for (uint32_t i = 0; i < n; i++) {
		const struct rw_xdp_policy *p = &policies[i];
		struct rw_policy_key k = { .prefixlen = p->prefixlen };
		memcpy(k.addr, p->addr, 16);
		struct rw_policy v = { .action = p->action, .rate = p->rate, .burst = p->burst };
		if (bpf_map_update_elem(policy_fd, &k, &v, BPF_ANY))
			return -errno;
	}
	return 0;
}

static int is_mapped_ipv4(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	return memcmp(a, prefix, 12) == 0;
}

void xdp_format_prefix(const uint8_t addr[16], uint32_t prefixlen, char *buf, size_t size,
		       int no_full_length)
{
	char text[INET6_ADDRSTRLEN];
	int v4 = is_mapped_ipv4(addr) && prefixlen >= 96;
	uint32_t len = v4 ? prefixlen - 96 : prefixlen;
	inet_ntop(v4 ? AF_INET : AF_INET6, v4 ? addr + 12 : addr, text, sizeof text);
	if (no_full_length && len == (v4 ? 32u : 128u))
		snprintf(buf, size, "%s", text);
	else
		snprintf(buf, size, "%s/%u", text, len);
}

/* ---------------------------------------------------------------------------------------------
 * The loader
 */

struct xdp_plane {
	struct limiter *skel;
	int link_fd;
	int lock_fd; /* the pin directory, flock()ed for the gateway's life */
	char interface[IF_NAMESIZE];
	char pin_dir[256];
};

/* libbpf's own lines: the first warning (the cause; later ones only say that loading failed) is
 * kept to explain a failure in one line of ours. */
static char libbpf_first_warning[256];

static int libbpf_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	if (level == LIBBPF_WARN && !libbpf_first_warning[0]) {
		char line[sizeof libbpf_first_warning];
		vsnprintf(line, sizeof line, fmt, ap);
		line[strcspn(line, "\n")] = 0;
		const char *text = strncmp(line, "libbpf: ", 8) == 0 ? line + 8 : line;
		snprintf(libbpf_first_warning, sizeof libbpf_first_warning, "%s", text);
	}
	return 0;
}

int xdp_permitted(void)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = { 0 };
	if (syscall(SYS_capget, &header, data))
		return 0;
#define HAS_CAP(cap) ((data[(cap) / 32].effective >> ((cap) % 32)) & 1)
	return HAS_CAP(CAP_NET_ADMIN) && (HAS_CAP(CAP_BPF) || HAS_CAP(CAP_SYS_ADMIN));
#undef HAS_CAP
}

int xdp_is_bpffs(const char *path)
{
	struct statfs st;
	return statfs(path, &st) == 0 && st.f_type == BPF_FS_MAGIC;
}

/* Makes the pin directory (mounting bpffs on /sys/fs/bpf first if nothing is mounted there; no
 * directory is made anywhere but in a bpf filesystem) and locks it for this gateway's life, so
 * two gateways never share their maps. Returns the locked directory's fd, or -errno with a
 * message. */
static int prepare_pin_dir(const char *dir, char *err, size_t errlen)
{
	if (strncmp(dir, BPFFS_ROOT "/", sizeof BPFFS_ROOT) == 0 && !xdp_is_bpffs(BPFFS_ROOT)) {
		if (mount("bpf", BPFFS_ROOT, "bpf", 0, "mode=0700")) {
			int e = errno;
			snprintf(err, errlen, "cannot mount the bpf filesystem on %s: %s", BPFFS_ROOT,
				 strerror(e));
			return -e;
		}
		log_info("xdp: mounted the bpf filesystem on %s", BPFFS_ROOT);
	}
	char path[256];
	snprintf(path, sizeof path, "%s", dir);
	struct stat st;
	char *cut; /* up to the deepest part of the path that exists */
	while (stat(path, &st) && errno == ENOENT && (cut = strrchr(path, '/')) && cut > path)
		*cut = 0;
	if (!xdp_is_bpffs(path)) {
		snprintf(err, errlen, "%s is not on a bpf filesystem (mount -t bpf bpf %s)", dir,
			 BPFFS_ROOT);
		return -ENOTSUP;
	}
	snprintf(path, sizeof path, "%s", dir);
	for (char *p = path + 1;; p++) {
		if (*p != '/' && *p != 0)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(path, 0700) && errno != EEXIST) {
			int e = errno;
			snprintf(err, errlen, "cannot create %s: %s", path, strerror(e));
			return -e;
		}
		*p = c;
		if (!c)
			break;
	}
	/* Someone else's directory could have its pins swapped under us. */
	if (stat(dir, &st) == 0 && st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s belongs to uid %u, not to this process (uid %u): remove it "
			 "or choose another xdp.pin_path", dir, (unsigned)st.st_uid,
			 (unsigned)geteuid());
		return -EEXIST;
	}
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;
		if (e == EWOULDBLOCK)
			snprintf(err, errlen, "%s is in use by another gateway (each needs its own "
				 "xdp.pin_path)", dir);
		else
			snprintf(err, errlen, "cannot lock %s: %s", dir, strerror(e));
		if (fd >= 0)
			close(fd);
		return -(e == EWOULDBLOCK ? EBUSY : e);
	}
	return fd;
}

/* Points the map at its pin; a pin of another shape (key, value, size, flags) is removed first,
 * since libbpf would refuse to reuse it. Returns whether an old pin is reused. */
static int pin_map(struct bpf_map *map, const char *dir)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", dir, bpf_map__name(map));
	bpf_map__set_pin_path(map, path);
	int fd = bpf_obj_get(path);
	if (fd < 0)
		return 0;
	struct bpf_map_info info = { 0 };
	uint32_t len = sizeof info;
	int same = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 &&
		   info.type == (uint32_t)bpf_map__type(map) &&
		   info.key_size == bpf_map__key_size(map) &&
		   info.value_size == bpf_map__value_size(map) &&
		   info.max_entries == bpf_map__max_entries(map) &&
		   info.map_flags == bpf_map__map_flags(map);
	close(fd);
	if (!same) {
		log_warn("xdp: pinned map %s has another shape (%u entries, now %u); replacing it, "
			 "its entries are lost", path, info.max_entries, bpf_map__max_entries(map));
		unlink(path);
	}
	return same;
}

static void write_config(const struct rw_xdp *cfg, struct rw_xdp_config *out)
{
	*out = (struct rw_xdp_config){
		.limit = cfg->limit,
		.rate = cfg->rate,
		.burst = cfg->burst,
		.new_sources_per_cpu = cfg->new_sources_per_second,
		.fallback_rate = cfg->fallback_rate,
		.fallback_burst = cfg->fallback_burst,
		.ipv6_source_prefix = cfg->ipv6_source_prefix,
		.nports = cfg->nports,
	};
	for (uint32_t i = 0; i < cfg->nports && i < RW_XDP_MAX_PORTS; i++)
		out->ports[i] = cfg->ports[i];
}

/* Attaches with the given XDP_FLAGS_* mode. Returns the link fd or -errno. */
static int attach(int prog_fd, int ifindex, uint32_t mode_flag)
{
	LIBBPF_OPTS(bpf_link_create_opts, opts, .flags = mode_flag);
	int fd = bpf_link_create(prog_fd, ifindex, BPF_XDP, &opts);
	return fd < 0 ? -errno : fd;
}

/* Attaches as cfg->mode asks; *mode_name says which mode is active. Returns the link fd or -1
 * with a message. */
static int attach_in_mode(const struct rw_xdp *cfg, int prog_fd, int ifindex,
			  const char **mode_name, char *err, size_t errlen)
{
	int fd = -EOPNOTSUPP;
	if (cfg->mode != XDP_MODE_GENERIC) {
		fd = attach(prog_fd, ifindex, XDP_FLAGS_DRV_MODE);
		*mode_name = "native";
		if (fd >= 0 || cfg->mode == XDP_MODE_NATIVE || fd == -EBUSY || fd == -EEXIST)
			goto done;
		log_info("xdp: %s has no native XDP (%s); falling back to generic mode",
			 cfg->interface, strerror(-fd));
	}
	fd = attach(prog_fd, ifindex, XDP_FLAGS_SKB_MODE);
	*mode_name = "generic";
done:
	if (fd == -EBUSY || fd == -EEXIST)
		snprintf(err, errlen,
			 "%s already has an XDP program (another gateway? see `bpftool net show dev "
			 "%s`)", cfg->interface, cfg->interface);
	else if (fd < 0)
		snprintf(err, errlen, "cannot attach to %s in %s mode: %s", cfg->interface,
			 *mode_name, strerror(-fd));
	return fd;
}

static void plane_free(struct xdp_plane *plane)
{
	if (plane->link_fd >= 0)
		close(plane->link_fd);
	limiter__destroy(plane->skel);
	if (plane->lock_fd >= 0)
		close(plane->lock_fd);
	free(plane);
}

/* Loads, pins and attaches. Returns 0, or -errno with a message (-EPERM/-EACCES: no
 * permission). */
static int load(const struct rw_xdp *cfg, struct xdp_plane *plane, char *err, size_t errlen)
{
	if (!xdp_permitted()) {
		snprintf(err, errlen, "uid %u lacks CAP_BPF or CAP_NET_ADMIN", (unsigned)geteuid());
		return -EPERM;
	}
	int ifindex = (int)if_nametoindex(cfg->interface);
	if (!ifindex) {
		snprintf(err, errlen, "xdp.interface '%s': no such interface", cfg->interface);
		return -ENODEV;
	}
	/* Before any pin or map is touched: another program there may be another gateway, using
	 * these very maps. */
	uint32_t attached = 0;
	if (bpf_xdp_query_id(ifindex, 0, &attached) == 0 && attached) {
		snprintf(err, errlen,
			 "%s already has an XDP program (id %u; another gateway? see `bpftool net "
			 "show dev %s`)", cfg->interface, attached, cfg->interface);
		return -EBUSY;
	}
	int rc = prepare_pin_dir(cfg->pin_path, err, errlen);
	if (rc < 0)
		return rc;
	plane->lock_fd = rc;
	plane->skel = limiter__open();
	if (!plane->skel) {
		rc = -errno;
		snprintf(err, errlen, "cannot open the XDP program: %s", strerror(-rc));
		return rc;
	}
	bpf_map__set_max_entries(plane->skel->maps.sources, cfg->max_sources);
	struct bpf_map *pinned[] = { plane->skel->maps.config, plane->skel->maps.policy,
				     plane->skel->maps.sources, plane->skel->maps.metrics };
	int reused_sources = 0;
	for (int i = 0; i < 4; i++) {
		int reused = pin_map(pinned[i], cfg->pin_path);
		if (pinned[i] == plane->skel->maps.sources)
			reused_sources = reused;
	}
	libbpf_first_warning[0] = 0;
	rc = limiter__load(plane->skel);
	if (rc) {
		snprintf(err, errlen, "cannot load the XDP program: %s%s%s", strerror(-rc),
			 libbpf_first_warning[0] ? " (libbpf: " : "", libbpf_first_warning);
		if (libbpf_first_warning[0])
			snprintf(err + strlen(err), errlen - strlen(err), ")");
		return rc;
	}
	/* Attached first, then configured: a start that cannot attach changes nothing, and until
	 * the maps are written the program goes on with the knobs of the last run. */
	const char *mode_name = "native";
	int fd = attach_in_mode(cfg, bpf_program__fd(plane->skel->progs.ringway_xdp), ifindex,
				&mode_name, err, errlen);
	if (fd < 0)
		return fd;
	plane->link_fd = fd;
	struct rw_xdp_config knobs;
	write_config(cfg, &knobs);
	uint32_t zero = 0;
	if (bpf_map__update_elem(plane->skel->maps.config, &zero, sizeof zero, &knobs,
				 sizeof knobs, BPF_ANY) ||
	    xdp_policies_replace(bpf_map__fd(plane->skel->maps.policy), cfg->policies,
				 cfg->npolicies)) {
		rc = -errno;
		snprintf(err, errlen, "cannot write the limiter's config and policy maps: %s",
			 strerror(-rc));
		return rc;
	}
	uint64_t kept = reused_sources ? xdp_sources_count(bpf_map__fd(plane->skel->maps.sources))
				       : 0;
	log_info("xdp: limiter attached to %s in %s mode: %s, %u/s burst %u per source, %u "
		 "port(s)%s, %u policies; maps pinned in %s (%s, %llu sources kept)",
		 cfg->interface, mode_name, cfg->limit == RW_LIMIT_SYN ? "new TCP connections" :
		 "every packet", cfg->rate, cfg->burst, cfg->nports, cfg->nports ? "" : " (all)",
		 cfg->npolicies, cfg->pin_path, reused_sources ? "reused" : "new",
		 (unsigned long long)kept);
	return 0;
}

int xdp_start(const struct rw_xdp *cfg, struct xdp_plane **out)
{
	*out = NULL;
	if (cfg->mode == XDP_MODE_OFF)
		return 0;
	libbpf_set_print(libbpf_print);
	struct xdp_plane *plane = calloc(1, sizeof *plane);
	if (!plane) {
		log_error("xdp: out of memory");
		return -1;
	}
	plane->link_fd = -1;
	plane->lock_fd = -1;
	snprintf(plane->interface, sizeof plane->interface, "%s", cfg->interface);
	snprintf(plane->pin_dir, sizeof plane->pin_dir, "%s", cfg->pin_path);
	char err[512];
	int rc = load(cfg, plane, err, sizeof err);
	if (rc == 0) {
		*out = plane;
		return 0;
	}
	plane_free(plane);
	if (rc == -EPERM || rc == -EACCES) {
		if (!cfg->required) {
			log_warn("xdp: no permission to load the limiter (%s); running without it "
				 "(xdp.required: true refuses to start instead)", err);
			return 0;
		}
		log_error("xdp: no permission to load the limiter (%s), and xdp.required is true: "
			  "not starting", err);
		return -1;
	}
	log_error("xdp: %s", err);
	return -1;
}

int xdp_plane_metrics_fd(const struct xdp_plane *plane)
{
	return plane ? bpf_map__fd(plane->skel->maps.metrics) : -1;
}

/* Whether two xdp sections attach the same program the same way (only the knobs and policies
 * differ). */
static bool same_attachment(const struct rw_xdp *a, const struct rw_xdp *b)
{
	return a->mode == b->mode && a->max_sources == b->max_sources && a->required == b->required &&
	       ((!a->interface && !b->interface) ||
		(a->interface && b->interface && !strcmp(a->interface, b->interface))) &&
	       ((!a->pin_path && !b->pin_path) ||
		(a->pin_path && b->pin_path && !strcmp(a->pin_path, b->pin_path)));
}

void xdp_reconfigure(struct xdp_plane *plane, const struct rw_xdp *old, const struct rw_xdp *cfg)
{
	if (!same_attachment(old, cfg)) {
		log_warn("xdp: interface, mode, pin_path, max_sources or required changed: takes effect "
			 "at the next restart");
		return;
	}
	if (!plane)
		return;
	struct rw_xdp_config knobs;
	write_config(cfg, &knobs);
	uint32_t zero = 0;
	if (bpf_map__update_elem(plane->skel->maps.config, &zero, sizeof zero, &knobs, sizeof knobs,
				 BPF_ANY) ||
	    xdp_policies_replace(bpf_map__fd(plane->skel->maps.policy), cfg->policies,
				 cfg->npolicies)) {
		log_error("xdp: cannot rewrite the limiter's config and policy maps: %s", strerror(errno));
		return;
	}
	log_info("xdp: limiter reconfigured: %u/s burst %u per source, %u port(s), %u policies",
		 cfg->rate, cfg->burst, cfg->nports, cfg->npolicies);
}

void xdp_stop(struct xdp_plane *plane)
{
	if (!plane)
		return;
	close(plane->link_fd); /* detached: the counters below are final */
	plane->link_fd = -1;
	struct rw_xdp_metrics m;
	if (xdp_metrics_read(bpf_map__fd(plane->skel->maps.metrics), &m) == 0)
		log_info("xdp: detached from %s; counters (kept in %s): passed %llu, dropped by "
			 "rate %llu, by deny %llu, allowed by policy %llu, parse errors %llu, new "
			 "sources %llu, admission overflows %llu", plane->interface, plane->pin_dir,
			 (unsigned long long)m.passed_packets,
			 (unsigned long long)m.rate_dropped_packets,
			 (unsigned long long)m.deny_dropped_packets,
			 (unsigned long long)m.policy_allowed, (unsigned long long)m.parse_errors,
			 (unsigned long long)m.new_sources,
			 (unsigned long long)m.admission_overflows);
	plane_free(plane);
}
