/* config.h — the YAML configuration, parsed and validated into one immutable snapshot
 * (upstreams resolved, routes compiled into a router per frontend). Errors name FILE:LINE:COL. */
#ifndef RINGWAY_CONFIG_H
#define RINGWAY_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "../bpf/limiter.h"
#include "auth.h"
#include "identity.h"
#include "ratelimit.h"
#include "transform.h"

struct router;
struct stage;
struct route_stats;
struct upstream_stats;
struct target_stats;

struct rw_tls_server;

struct rw_sockaddr {
	char *text; /* as written: "127.0.0.1:9101", "[::1]:8080" */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct target_stats *stats; /* an upstream target's counters (metrics_bind); NULL for listens */
	struct rw_tls_server *tls;  /* a listen address's TLS (tls.h); NULL: plain */
};

/* Whether a holds the address addr (of len bytes): listeners and pools are keyed this way. */
static inline bool rw_sockaddr_is(const struct rw_sockaddr *a, const struct sockaddr_storage *addr,
				  socklen_t len)
{
	return a->addrlen == len && memcmp(&a->addr, addr, len) == 0;
}

enum rw_balance { BALANCE_ROUND_ROBIN = 0, BALANCE_RANDOM, BALANCE_LEAST_CONN };

struct rw_tls_client;

struct rw_upstream {
	char *name;
	struct rw_tls_client *tls;    /* TLS to its targets (tls.h); NULL: plain */
	uint32_t index; /* position in rw_config.upstreams */
	struct rw_sockaddr *targets;
	uint32_t ntargets;
	uint8_t balance;              /* enum rw_balance */
	uint32_t keepalive;           /* idle pooled connections per worker per target */
	uint32_t connect_timeout_ms;
	uint32_t response_timeout_ms; /* wait for the response head, and longest gap inside its body */
	struct upstream_stats *stats; /* its counters (metrics_bind) */
};

struct rw_aggregate;

struct rw_route {
	char *name;
	char *host;        /* NULL: any host; "*.example.com": wildcard; else exact (no port) */
	char *path;        /* path_prefix or path_exact */
	uint32_t path_len;
	bool path_exact;
	uint16_t nparams;  /* path_exact with {name} segments (a template): how many (router.h) */
	uint32_t methods;  /* HTTP_METHOD_BIT() mask of allowed methods; 0: all methods */
	struct rw_upstream *upstream; /* NULL for an aggregate route */
	struct rw_aggregate *aggregate; /* NULL, or the calls that answer the route (aggregate.h) */
	char *strip_prefix; /* NULL or a prefix removed from the path before forwarding */
	uint32_t strip_len;
	uint32_t index;     /* position in its frontend's routes */
	struct rw_route_auth auth; /* who may call it (auth.h) */
	struct rw_rate_limits rate_limits; /* its frontend's and its own (ratelimit.h) */
	struct rw_transforms xf;   /* its own or its frontend's (transform.h) */
	struct stage *stages; /* the policies a request on this route runs, in order (stage.h) */
	uint32_t nstages;
	struct route_stats *stats; /* its counters (metrics_bind) */
};

struct rw_frontend {
	char *name;
	struct rw_sockaddr *listens;
	uint32_t nlistens;
	struct rw_route *routes;
	uint32_t nroutes;
	struct router *router; /* compiled from routes */
	struct rw_route_auth auth; /* defaults of its routes: auth, allow_groups, deny_groups, scopes */
	struct rw_rate_limits rate_limits; /* shared by its routes (ratelimit.h) */
	struct rw_transforms xf;   /* defaults of its routes (transform.h) */
	char **hosts;          /* non-empty: the only hosts it serves ("api.example.com",
				* "*.example.com"); others get 421 */
	uint32_t nhosts;
	struct route_stats *stats; /* counters of its requests that no route took (metrics_bind) */
};

struct rw_limits {
	uint32_t max_header_bytes;     /* request line + headers; 431 above */
	uint32_t max_uri_bytes;        /* request target; 414 above */
	uint64_t max_body_bytes;       /* 413 above */
	uint32_t header_timeout_ms;    /* first byte to end of head; 408 */
	uint32_t keepalive_timeout_ms; /* idle client connection between requests */
	uint32_t client_timeout_ms;    /* longest stall of a client inside a request (body, reads) */
	uint32_t max_connections;      /* per worker; accepts beyond are closed */
};

enum rw_access_log { ACCESS_LOG_STDERR = 0, ACCESS_LOG_OFF, ACCESS_LOG_FILE };

/* How the XDP limiter is attached: native tries the driver only, generic the kernel's generic
 * hook only, auto native then generic; off does not load it. */
enum rw_xdp_mode { XDP_MODE_OFF = 0, XDP_MODE_AUTO, XDP_MODE_NATIVE, XDP_MODE_GENERIC };

/* One entry of xdp.policies: a key and value of the limiter's policy trie (bpf/limiter.h). */
struct rw_xdp_policy {
	char *cidr;         /* as written, for logs */
	uint8_t addr[16];   /* network address; IPv4 mapped (::ffff:a.b.c.d) */
	uint8_t prefixlen;  /* 0..128; an IPv4 prefix length + 96 */
	uint8_t action;     /* enum rw_policy_action */
	uint32_t rate;      /* RW_POLICY_LIMIT: packets per second per source */
	uint32_t burst;     /* RW_POLICY_LIMIT */
};

/* The xdp section: the early per-source limiter, an XDP program on one interface. */
struct rw_xdp {
	uint8_t mode;       /* enum rw_xdp_mode; XDP_MODE_OFF when the section is absent */
	uint8_t limit;      /* enum rw_xdp_limit */
	bool required;      /* without BPF permission: refuse to start (else run without XDP) */
	char *interface;    /* NULL only with XDP_MODE_OFF */
	char *pin_path;     /* bpffs directory of the pinned maps */
	uint16_t ports[RW_XDP_MAX_PORTS]; /* guarded destination ports */
	uint32_t nports;    /* 0: every port */
	uint32_t rate;      /* packets per second per source without a policy */
	uint32_t burst;
	uint32_t max_sources;            /* entries of the sources LRU */
	uint32_t new_sources_per_second; /* admission budget per CPU */
	uint32_t fallback_rate;          /* shared bucket of the sources over the budget */
	uint32_t fallback_burst;
	uint32_t ipv6_source_prefix;     /* IPv6 sources share a bucket per prefix this long */
	struct rw_xdp_policy *policies;
	uint32_t npolicies;
};

/* The admin section: the admin API's own listener (admin.h), loopback unless a token guards it. */
struct rw_admin {
	bool enabled;              /* the section is present */
	struct rw_sockaddr listen; /* default 127.0.0.1:9901 */
	char *token;               /* NULL: no bearer token asked for */
};

struct rw_config {
	char *path;
	char *source;           /* the YAML text it was read from (GET /config shows it, redacted) */
	size_t source_len;
	uint64_t generation;    /* 1 for the configuration started with, +1 per reload (set before
				 * the snapshot is handed to the workers) */
	uint32_t workers;       /* 0: one per available core */
	uint8_t access_log;     /* enum rw_access_log */
	char *access_log_path;  /* for ACCESS_LOG_FILE */
	uint32_t drain_timeout_ms; /* on SIGTERM: how long in-flight requests may finish */
	struct rw_limits limits;
	struct rw_upstream *upstreams;
	uint32_t nupstreams;
	struct rw_consumers consumers;
	struct rw_jwt_issuers jwt_issuers;
	struct rw_identity_token identity;
	struct rw_rate_limit_store rate_limit_store;
	struct rw_frontend *frontends;
	uint32_t nfrontends;
	struct rw_xdp xdp;
	struct rw_admin admin;
	atomic_uint refs;       /* holders of this snapshot; freed when it drops to 0 */
};

/* Error lines, each "FILE:LINE:COL: message". */
struct config_errors {
	char **lines;
	uint32_t count;
};

/* Loads and validates a configuration file. Returns the snapshot (refs = 1), or NULL with at least
 * one line in errs. Every error found is reported, not only the first. */
struct rw_config *config_load_file(const char *path, struct config_errors *errs);

/* Same, from memory; name is used as FILE in error lines. */
struct rw_config *config_load_string(const char *name, const char *yaml, size_t len,
				     struct config_errors *errs);

void config_errors_free(struct config_errors *errs);

struct rw_config *config_ref(struct rw_config *cfg);
void config_unref(struct rw_config *cfg); /* frees on the last reference */

/* Parses "500ms", "10s", "2m", "1h" (a whole number and a unit). Returns false if malformed or
 * above 24h. */
bool config_parse_duration(const char *s, uint32_t *ms);

/* Parses "127.0.0.1:80", "[::1]:8080" (numeric addresses only). Returns false if malformed. */
bool config_parse_sockaddr(const char *s, struct rw_sockaddr *out);

/* Parses a prefix "198.51.100.0/24", "2001:db8::/32", or a bare address (/32, /128) into the
 * policy trie's form: IPv4 mapped (::ffff:a.b.c.d) with its prefix length + 96. Returns false,
 * leaving addr and prefixlen untouched, with a short reason in *why ("host bits set past /24");
 * the reason stays valid until the thread's next call. */
bool config_parse_prefix(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why);

/* The same for a new policy: also refuses an IPv6 prefix shorter than /96 that holds
 * ::ffff:0:0/96 (::/0 does), since it would cover every IPv4 source too. */
bool config_parse_cidr(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why);

/* Whether a limit policy on this (trie-form) prefix is an IPv6 prefix longer than the buckets of
 * ipv6_source_prefix: its sources share a bucket with the rest of their prefix, so its own limit
 * cannot apply. */
bool config_ipv6_limit_too_long(const uint8_t addr[16], uint8_t prefixlen,
				uint32_t ipv6_source_prefix);

#endif
