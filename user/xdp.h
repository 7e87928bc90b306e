/* xdp.h — the kernel plane seen from user space: the pinned maps of the XDP limiter (shared by
 * the gateway and `ringway limits`), and the gateway's loader, which reuses those maps, rewrites
 * config and policy from the configuration and attaches the program (native, else generic). */
#ifndef RINGWAY_XDP_H
#define RINGWAY_XDP_H

#include <stddef.h>
#include <stdint.h>

#include "limiter.h"

struct rw_xdp;

/* File descriptors of the pinned maps; -1 where not open. */
struct xdp_maps {
	int config, policy, sources, metrics;
};

/* Opens the maps pinned under pin_dir. Returns 0, or -errno with a message in err. */
int xdp_maps_open(const char *pin_dir, struct xdp_maps *maps, char *err, size_t errlen);
void xdp_maps_close(struct xdp_maps *maps);

/* Adds the per-CPU metrics up. Returns 0 or -errno. */
int xdp_metrics_read(int metrics_fd, struct rw_xdp_metrics *sum);

/* Calls fn for every entry of the sources map, read in batches. Returns 0 or -errno. */
typedef void xdp_source_fn(const struct rw_source_key *key, const struct rw_source *value,
			   void *ctx);
int xdp_sources_walk(int sources_fd, xdp_source_fn *fn, void *ctx);
uint64_t xdp_sources_count(int sources_fd);

/* Replaces every policy with the given ones. Returns 0 or -errno. */
struct rw_xdp_policy;
int xdp_policies_replace(int policy_fd, const struct rw_xdp_policy *policies, uint32_t n);

/* "198.51.100.0/24" for a mapped IPv4 prefix (length - 96), "2001:db8::/32" otherwise. With
 * prefixlen 128 (or 32 for IPv4) and no_full_length, the bare address. */
void xdp_format_prefix(const uint8_t addr[16], uint32_t prefixlen, char *buf, size_t size,
		       int no_full_length);

/* Whether this process may load and attach an XDP program: CAP_NET_ADMIN, and CAP_BPF (or
 * CAP_SYS_ADMIN, which older kernels ask for). */
int xdp_permitted(void);

#define BPFFS_ROOT "/sys/fs/bpf"

/* Whether path is on a bpf filesystem. */
int xdp_is_bpffs(const char *path);

/* The configuration's xdp section (xdp_config.c), listed in config.c's table of sections. */
struct config_section;
extern const struct config_section xdp_config_section;

/* The running limiter of a gateway. */
struct xdp_plane;

/* Loads and attaches the limiter as cfg says. Returns 0 with *plane set (or NULL when XDP is off
 * or not permitted and not required; the latter is logged once); -1 when the gateway must not
 * start (logged). */
int xdp_start(const struct rw_xdp *cfg, struct xdp_plane **plane);

/* The running limiter's metrics map (for xdp_metrics_read); -1 for NULL. */
int xdp_plane_metrics_fd(const struct xdp_plane *plane);

/* A reload: when old and cfg attach the same way, cfg's knobs and policies are written to the
 * running limiter's maps; otherwise what changed is said to need a restart. NULL is fine. */
void xdp_reconfigure(struct xdp_plane *plane, const struct rw_xdp *old, const struct rw_xdp *cfg);

/* Logs the counters, detaches the program and closes the maps; the pins stay. NULL is fine. */
void xdp_stop(struct xdp_plane *plane);

#endif
