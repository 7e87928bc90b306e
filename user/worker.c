/* worker.c — a worker thread: ring set-up (with the fastest flags the kernel accepts), the event
 * loop, handovers taken from the mailbox (a snapshot, its new listeners, the retirement of the
 * removed ones), reopened access logs, draining on shutdown; and the set of workers: starting,
 * handing over (listening sockets opened first, then every worker waited for), stopping. */
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aggregate.h"
#include "auth_cache.h"
#include "conn.h"
#include "exchange.h"
#include "identity.h"
#include "ratelimit.h"
#include "redis.h"
#include "ring.h"
#include "sock.h"

/* Opens the ring in the fastest mode the kernel accepts; logs which (worker 0 only). */
static int ring_setup(struct worker *w)
{
	unsigned features = 0;
	int mode = ring_open(&w->shard.loop.ring, &features);
	if (mode < 0) {
		log_error("io_uring_queue_init failed: %s", strerror(-mode));
		return mode;
	}
	if (w->shard.id == 0) {
		size_t n;
		log_info("io_uring: %s mode (features 0x%x)%s", ring_modes(&n)[mode].name, features,
			 mode ? " — this kernel lacks the faster flags" : "");
	}
	return 0;
}

/* The operations the data plane needs, and splice, which it can do without. */
static int probe_ops(struct worker *w)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&w->shard.loop.ring);
	if (!p) {
		log_error("io_uring: this kernel cannot list its operations (Linux 5.19 or later needed)");
		return -1;
	}
	int ret = 0;
	size_t n;
	const struct ring_op *ops = ring_ops(&n);
	for (size_t i = 0; i < n; i++)
		if (ops[i].needed && !io_uring_opcode_supported(p, ops[i].op)) {
			log_error("io_uring: this kernel lacks the %s operation (Linux 5.19 or later needed)",
				  ops[i].name);
			ret = -1;
		}
	w->shard.loop.can_splice = io_uring_opcode_supported(p, IORING_OP_SPLICE);
	if (!w->shard.loop.can_splice && w->shard.id == 0)
		log_warn("io_uring: no splice operation: large bodies go through the buffer ring");
	io_uring_free_probe(p);
	return ret;
}

static int listen_socket(const struct rw_sockaddr *a)
{
	int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (a->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	/* accepted sockets inherit it: no setsockopt per connection */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	/* the kernel caps the backlog at net.core.somaxconn (kernel/sysctl-edge.conf raises it) */
	if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0 || listen(fd, 65535) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* ---- handovers ------------------------------------------------------------------------------ */

/* A snapshot for one worker, and its sockets for the listen addresses the snapshot adds. */
struct handover {
	struct rw_config *cfg;
	uint64_t number;
	uint32_t nnew;
	int *fds;                          /* [nnew] */
	const struct rw_sockaddr **addrs;  /* [nnew], inside cfg */
};

static void handover_free(struct handover *h)
{
	for (uint32_t i = 0; i < h->nnew; i++)
		if (h->fds[i] >= 0)
			close(h->fds[i]);
	free(h->fds);
	free(h->addrs);
	if (h->cfg)
		config_unref(h->cfg);
	free(h);
}

static bool configured(const struct rw_config *cfg, const struct shard_listener *sl)
{
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		for (uint32_t k = 0; k < cfg->frontends[f].nlistens; k++)
			if (rw_sockaddr_is(&cfg->frontends[f].listens[k], &sl->addr, sl->addrlen))
				return true;
	return false;
}

static void listener_retired(struct listener *li)
{
	struct shard *sh = li->owner;
	sh->listeners[li->index] = NULL;
	free(container_of(li, struct shard_listener, li));
}

/* Stops accepting on the listeners cfg no longer has; their connections close once idle. */
static void retire_removed(struct shard *sh, const struct rw_config *cfg)
{
	for (uint32_t i = 0; i < sh->nlisteners; i++) {
		struct shard_listener *sl = sh->listeners[i];
		if (!sl || sl->removed || configured(cfg, sl))
			continue;
		sl->removed = true;
		for (struct client *c = sh->clients, *next; c; c = next) {
			next = c->next;
			if (c->listener == i)
				client_drain(c);
		}
		listener_retire(&sh->loop, &sl->li);
	}
}

/* A free slot no client names any more (their frontend is looked up by slot), or a new one. */
static int free_slot(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->nlisteners; i++) {
		if (sh->listeners[i])
			continue;
		bool named = false;
		for (struct client *c = sh->clients; c && !named; c = c->next)
			named = c->listener == i;
		if (!named)
			return (int)i;
	}
	struct shard_listener **grown = realloc(sh->listeners, (sh->nlisteners + 1) * sizeof *grown);
	if (!grown)
		return -1;
	sh->listeners = grown;
	sh->listeners[sh->nlisteners] = NULL;
	return (int)sh->nlisteners++;
}

static void on_accept(struct listener *li, int fd)
{
	struct shard *sh = li->owner;
	uint32_t max = shard_cfg(sh)->limits.max_connections;
	if (sh->stopping || sh->nclients >= max) {
		if (!sh->stopping)
			log_warn("max_connections (%u) reached: connection refused", max);
		close(fd);
		return;
	}
	client_accepted(sh, li->index, fd);
}

/* The handover's new sockets become listeners, armed when the worker runs (else it arms them all
 * when it starts). -1 when out of memory. */
static int add_listeners(struct shard *sh, struct handover *h, bool running)
{
	for (uint32_t k = 0; k < h->nnew; k++) {
		struct shard_listener *sl = aligned_alloc(16, (sizeof *sl + 15) & ~(size_t)15);
		int slot = sl ? free_slot(sh) : -1;
		if (slot < 0) {
			free(sl);
			return -1;
		}
		memset(sl, 0, sizeof *sl);
		sl->li = (struct listener){ .fd = h->fds[k], .on_accept = on_accept,
					    .on_retired = listener_retired, .loop = &sh->loop,
					    .owner = sh, .index = (uint32_t)slot };
		memcpy(&sl->addr, &h->addrs[k]->addr, h->addrs[k]->addrlen);
		sl->addrlen = h->addrs[k]->addrlen;
		h->fds[k] = -1; /* the listener's now */
		sh->listeners[slot] = sl;
		if (running)
			listener_arm(&sh->loop, &sl->li);
	}
	return 0;
}

/* The shard's connection to the rate-limit store follows the current snapshot: made when a store
 * first appears, made anew when its address changes (the calls pending on the old one fail: their
 * on_failure decides), let go when the store goes. */
static void follow_store(struct shard *sh)
{
	const struct rw_rate_limit_store *st = &shard_cfg(sh)->rate_limit_store;
	bool wanted = st->redis && st->addr;
	if (sh->redis && (!wanted || !redis_is_at(sh->redis, st->addr))) {
		redis_free(sh->redis);
		sh->redis = NULL;
	}
	if (!wanted)
		return;
	if (sh->redis)
		redis_set_timeout(sh->redis, st->timeout_ms);
	else if (!(sh->redis = redis_new(sh, st->addr, st->timeout_ms)))
		log_error("out of memory for the connection to redis %s: on_failure decides",
			  st->addr->text);
}

/* The handover in the mailbox, if any: the removed listeners retired, the new ones added, the
 * snapshot adopted. */
static void take_handover(struct worker *w, bool running)
{
	struct handover *h = atomic_exchange(&w->mailbox, NULL);
	if (!h)
		return;
	struct shard *sh = &w->shard;
	if (sh->snap)
		retire_removed(sh, h->cfg);
	if (add_listeners(sh, h, running) || shard_adopt(sh, config_ref(h->cfg)))
		log_error("out of memory taking configuration generation %llu: keeping the running one",
			  (unsigned long long)h->cfg->generation);
	follow_store(sh);
	atomic_store(&w->taken, h->number);
	handover_free(h);
}

static void take_log(struct worker *w)
{
	int fd = atomic_exchange(&w->log_mailbox, LOG_MAILBOX_EMPTY);
	if (fd != LOG_MAILBOX_EMPTY)
		access_log_reopen(&w->shard.alog, fd);
}

static void arm_wake(struct worker *w);

static void on_wake(struct loop_task *t, struct io_uring_cqe *cqe)
{
	struct worker *w = container_of(t, struct worker, wake_task);
	take_handover(w, true);
	take_log(w);
	offload_drain(&w->shard.inbox);
	arm_wake(w); /* also while draining: offloaded results still arrive */
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = loop_sqe(&w->shard.loop);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof w->wake_val, 0);
	io_uring_sqe_set_data64(sqe, UD(&w->wake_task, OP_TASK));
}


/* ---- set-up ---------------------------------------------------------------------------------- */

/* Ring, buffers, pools, wake-up, then the first handover (listeners and snapshot). */
static int worker_setup(struct worker *w)
{
	struct handover *h = atomic_load(&w->mailbox);
	upstream_pools_init(&w->shard.pools, &w->shard.loop);
	if (ring_setup(w) || probe_ops(w))
		return -1;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int ret = loop_init(&w->shard.loop, LOOP_BUFS_WORKER, h->cfg->limits.max_header_bytes,
			    (uint64_t)ts.tv_nsec ^ ((uint64_t)(w->shard.id + 1) << 32));
	if (ret) {
		log_error("io_uring: provided buffer ring registration failed: %s (multishot recv into a "
			  "buffer ring needs Linux 6.0 or later)", strerror(-ret));
		return -1;
	}
	access_log_init(&w->shard.alog, &w->shard.loop, atomic_exchange(&w->log_mailbox, LOG_MAILBOX_EMPTY));
	if (!(w->shard.auth_cache = auth_cache_new()) || !(w->shard.minter = identity_minter_new()))
		return -1;
	w->wake_task.fn = on_wake;
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -1;
	w->shard.inbox.wake_fd = w->wake_fd;
	take_handover(w, false);
	return w->shard.snap ? 0 : -1;
}

/* ---- running and draining -------------------------------------------------------------------- */

#define DRAIN_GRACE_MS 2000

static void drain_gave_up(struct timer *t)
{
	struct worker *w = container_of(t, struct worker, drain_tm);
	log_error("%u sockets still have operations in flight: stopping anyway", w->shard.loop.nclosing);
	w->gave_up = true;
}

static void drain_expired(struct timer *t)
{
	struct worker *w = container_of(t, struct worker, drain_tm);
	log_warn("drain timeout: closing %u connections", w->shard.nclients);
	for (struct client *c = w->shard.clients; c; c = c->next)
		client_close(c);
	timer_arm(&w->shard.loop.wheel, &w->drain_tm, DRAIN_GRACE_MS, drain_gave_up);
}

static void begin_drain(struct worker *w)
{
	w->shard.stopping = true;
	w->shard.pools.stopping = true;
	for (uint32_t i = 0; i < w->shard.nlisteners; i++)
		if (w->shard.listeners[i])
			listener_stop(&w->shard.loop, &w->shard.listeners[i]->li);
	timer_arm(&w->shard.loop.wheel, &w->drain_tm, shard_cfg(&w->shard)->drain_timeout_ms, drain_expired);
	for (struct client *c = w->shard.clients, *next; c; c = next) {
		next = c->next;
		client_drain(c);
	}
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[24];
	snprintf(name, sizeof name, "worker %u", w->shard.id);
	log_set_thread_name(name);
	snprintf(name, sizeof name, "ringway-w%u", w->shard.id); /* for top, perf and /proc */
	pthread_setname_np(pthread_self(), name);
	if (w->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(w->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof set, &set);
	}
	/* the ring is created here: with SINGLE_ISSUER only its creator thread may submit */
	w->start_error = worker_setup(w);
	struct start_gate *g = w->gate;
	pthread_mutex_lock(&g->lock);
	g->ready++;
	pthread_cond_broadcast(&g->cond);
	while (!g->decided)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	if (w->start_error || atomic_load(&w->stop_requested))
		return NULL;
	for (uint32_t i = 0; i < w->shard.nlisteners; i++)
		if (w->shard.listeners[i])
			listener_arm(&w->shard.loop, &w->shard.listeners[i]->li);
	arm_wake(w);
	for (;;) {
		if (!w->shard.stopping && atomic_load(&w->stop_requested))
			begin_drain(w);
		/* the last exchange is gone: the store's connection closes through the loop too */
		if (w->shard.stopping && w->shard.nclients == 0 && w->shard.redis) {
			redis_free(w->shard.redis);
			w->shard.redis = NULL;
		}
		/* done when no client is left, every closed socket's operations have ended and the
		 * access log is written */
		if (w->shard.stopping && ((w->shard.nclients == 0 && w->shard.loop.nclosing == 0 &&
					   access_log_idle(&w->shard.alog)) || w->gave_up))
			break;
		int ret = loop_run_once(&w->shard.loop);
		if (ret < 0) {
			log_error("io_uring_submit_and_wait: %s", strerror(-ret));
			break;
		}
		access_log_flush(&w->shard.alog);
	}
	loop_flush_closes(&w->shard.loop);
	return NULL;
}

static void worker_destroy(struct worker *w)
{
	redis_free(w->shard.redis); /* still there when the worker never ran, or gave up draining */
	w->shard.redis = NULL;
	sock_free_closed(&w->shard.loop, false); /* before the pools their connections go back to */
	for (uint32_t i = 0; i < w->shard.nlisteners; i++) {
		struct shard_listener *sl = w->shard.listeners[i];
		if (sl && sl->li.fd >= 0)
			close(sl->li.fd);
		free(sl);
	}
	free(w->shard.listeners);
	upstream_pools_destroy(&w->shard.pools);
	while (w->shard.free_clients) {
		struct client *c = w->shard.free_clients;
		w->shard.free_clients = c->next;
		free(c);
	}
	while (w->shard.free_exchanges) {
		struct exchange *x = w->shard.free_exchanges;
		w->shard.free_exchanges = x->next_free;
		aggregate_free_kept(x);
		free(x);
	}
	offload_drain(&w->shard.inbox); /* jobs whose exchange is gone: freed */
	ratelimit_shard_free(&w->shard);
	auth_cache_free(w->shard.auth_cache);
	identity_minter_free(w->shard.minter);
	access_log_close(&w->shard.alog); /* what is left, written before the ring goes */
	loop_destroy(&w->shard.loop);
	if (w->shard.snap)
		shard_snap_release(w->shard.snap);
	struct handover *pending = atomic_exchange(&w->mailbox, NULL);
	if (pending)
		handover_free(pending);
	int log_fd = atomic_exchange(&w->log_mailbox, LOG_MAILBOX_EMPTY);
	if (log_fd > STDERR_FILENO)
		close(log_fd);
	if (w->wake_fd > 0)
		close(w->wake_fd);
}

static unsigned available_cpus(int *cpus, unsigned max)
{
	cpu_set_t set;
	unsigned n = 0;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		for (int i = 0; i < CPU_SETSIZE && n < max; i++)
			if (CPU_ISSET(i, &set))
				cpus[n++] = i;
	}
	return n;
}

static void join_all(struct worker_set *ws)
{
	for (unsigned i = 0; i < ws->n; i++)
		pthread_join(ws->workers[i].thread, NULL);
	offload_stop(ws->offload); /* its last deliveries land in the inboxes destroyed below */
	ws->offload = NULL;
	for (unsigned i = 0; i < ws->n; i++) {
		atomic_store(&ws->workers[i].shard.stats->cq_overflow, NULL); /* the ring goes */
		worker_destroy(&ws->workers[i]);
	}
	free(ws->workers);
	ws->workers = NULL;
	ws->n = 0;
	metrics_free(ws->metrics);
	ws->metrics = NULL;
}

/* Every started worker sets itself up (ring, listeners) and waits at the gate; the main thread opens
 * it once all have answered, telling them to run, or to stop if any failed. */
static bool gate_wait_all(struct worker_set *ws)
{
	struct start_gate *g = &ws->gate;
	pthread_mutex_lock(&g->lock);
	while (g->ready < ws->n)
		pthread_cond_wait(&g->cond, &g->lock);
	bool ok = true;
	for (unsigned i = 0; i < ws->n; i++)
		if (ws->workers[i].start_error)
			ok = false;
	if (!ok)
		for (unsigned i = 0; i < ws->n; i++)
			atomic_store(&ws->workers[i].stop_requested, true);
	g->decided = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return ok;
}

/* ---- the set of workers ----------------------------------------------------------------------- */

static bool is_open(const struct worker_set *ws, const struct rw_sockaddr *a)
{
	for (uint32_t i = 0; i < ws->nopen; i++)
		if (rw_sockaddr_is(a, &ws->open[i].addr, ws->open[i].addrlen))
			return true;
	return false;
}

/* One handover per worker for cfg, with a socket per worker for each listen address not open
 * yet. 0, or -1 with why in err (nothing left open). */
static int prepare_handovers(struct worker_set *ws, unsigned n, struct rw_config *cfg,
			     struct handover **out, char *err, size_t errlen)
{
	uint32_t nnew = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		for (uint32_t k = 0; k < cfg->frontends[f].nlistens; k++)
			nnew += !is_open(ws, &cfg->frontends[f].listens[k]);
	uint64_t number = ws->handovers + 1;
	for (unsigned i = 0; i < n; i++)
		out[i] = NULL;
	for (unsigned i = 0; i < n; i++) {
		struct handover *h = calloc(1, sizeof *h);
		out[i] = h;
		if (!h || !(h->fds = calloc(nnew ? nnew : 1, sizeof *h->fds)) ||
		    !(h->addrs = calloc(nnew ? nnew : 1, sizeof *h->addrs))) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		h->cfg = config_ref(cfg);
		h->number = number;
		for (uint32_t f = 0; f < cfg->nfrontends; f++)
			for (uint32_t k = 0; k < cfg->frontends[f].nlistens; k++) {
				const struct rw_sockaddr *a = &cfg->frontends[f].listens[k];
				if (is_open(ws, a))
					continue;
				int fd = listen_socket(a);
				if (fd < 0) {
					snprintf(err, errlen, "listen %s: %s", a->text, strerror(-fd));
					goto fail;
				}
				h->addrs[h->nnew] = a;
				h->fds[h->nnew++] = fd;
			}
	}
	return 0;
fail:
	for (unsigned i = 0; i < n; i++)
		if (out[i])
			handover_free(out[i]);
	return -1;
}

/* The addresses open once every worker took cfg. */
static void remember_open(struct worker_set *ws, const struct rw_config *cfg)
{
	uint32_t n = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		n += cfg->frontends[f].nlistens;
	struct open_address *open = calloc(n ? n : 1, sizeof *open);
	if (!open) { /* the next reload then opens them all again, and fails: said then */
		log_error("out of memory remembering the open listen addresses");
		return;
	}
	free(ws->open);
	ws->open = open;
	ws->nopen = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		for (uint32_t k = 0; k < cfg->frontends[f].nlistens; k++) {
			memcpy(&open[ws->nopen].addr, &cfg->frontends[f].listens[k].addr,
			       cfg->frontends[f].listens[k].addrlen);
			open[ws->nopen++].addrlen = cfg->frontends[f].listens[k].addrlen;
		}
}

/* A descriptor of cfg's access log: -1 when off, stderr's own, or the file opened for appending
 * (-errno when it cannot be). */
static int open_log(const struct rw_config *cfg)
{
	if (cfg->access_log == ACCESS_LOG_OFF)
		return -1;
	if (cfg->access_log == ACCESS_LOG_STDERR) {
		/* The workers' ring writes use the file's position without the lock write(2) takes:
		 * to a regular file they must append, or two could land at the same offset. */
		struct stat st;
		int fl = fcntl(STDERR_FILENO, F_GETFL);
		if (fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode) && fl >= 0 && !(fl & O_APPEND))
			fcntl(STDERR_FILENO, F_SETFL, fl | O_APPEND);
		return STDERR_FILENO;
	}
	int fd = open(cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	return fd < 0 ? -errno : fd;
}

/* Every worker's descriptor of cfg's access log (its own dup, so that each closes its own). */
static int open_logs(const struct rw_config *cfg, unsigned n, int *fds, char *err, size_t errlen)
{
	int fd = open_log(cfg);
	if (fd < -1) {
		snprintf(err, errlen, "access_log %s: %s", cfg->access_log_path, strerror(-fd));
		return -1;
	}
	for (unsigned i = 0; i < n; i++) {
		fds[i] = fd <= STDERR_FILENO ? fd : fcntl(fd, F_DUPFD_CLOEXEC, 0);
		if (fds[i] < -1 || (fd > STDERR_FILENO && fds[i] < 0)) {
			snprintf(err, errlen, "access_log %s: %s", cfg->access_log_path, strerror(errno));
			for (unsigned j = 0; j < i; j++)
				if (fds[j] > STDERR_FILENO)
					close(fds[j]);
			if (fd > STDERR_FILENO)
				close(fd);
			return -1;
		}
	}
	if (fd > STDERR_FILENO)
		close(fd);
	return 0;
}

int workers_start(struct worker_set *ws, struct rw_config *cfg)
{
	int cpus[1024];
	char err[256];
	unsigned ncpu = available_cpus(cpus, 1024);
	unsigned n = cfg->workers ? cfg->workers : (ncpu ? ncpu : 1);
	memset(ws, 0, sizeof *ws);
	ws->workers = calloc(n, sizeof *ws->workers);
	ws->metrics = metrics_new(n);
	struct handover **handovers = calloc(n, sizeof *handovers);
	int *log_fds = calloc(n, sizeof *log_fds);
	if (!ws->workers || !handovers || !log_fds || !ws->metrics || metrics_bind(ws->metrics, cfg)) {
		log_error("out of memory starting the workers");
		goto fail;
	}
	if (!(ws->offload = offload_start()))
		goto fail;
	if (!cfg->generation)
		cfg->generation = 1;
	ws->max_header_bytes = cfg->limits.max_header_bytes;
	for (unsigned i = 0; i < n; i++)
		log_fds[i] = -1;
	if (open_logs(cfg, n, log_fds, err, sizeof err) ||
	    prepare_handovers(ws, n, cfg, handovers, err, sizeof err)) {
		log_error("%s", err);
		for (unsigned i = 0; i < n; i++)
			if (log_fds[i] > STDERR_FILENO)
				close(log_fds[i]);
		goto fail;
	}
	ws->handovers++;
	pthread_mutex_init(&ws->gate.lock, NULL);
	pthread_cond_init(&ws->gate.cond, NULL);
	bool ok = true;
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &ws->workers[i];
		w->shard.id = i;
		w->shard.stats = metrics_worker(ws->metrics, i);
		w->shard.loop.recv_starved = w->shard.stats->recv_starved;
		w->shard.loop.tls_counts = w->shard.stats->tls;
		w->cpu = (ncpu && (cfg->workers == 0 || n <= ncpu)) ? cpus[i % ncpu] : -1;
		w->mailbox = handovers[i]; /* the first snapshot comes like every later one */
		w->log_mailbox = log_fds[i];
		w->wake_fd = -1;
		w->shard.offload = ws->offload;
		w->gate = &ws->gate;
		if (ok && pthread_create(&w->thread, NULL, worker_main, w)) {
			log_error("cannot start worker %u", i);
			ok = false;
		}
		if (ok) {
			ws->n++;
		} else { /* not started: what it was handed goes */
			handover_free(atomic_exchange(&w->mailbox, NULL));
			if (log_fds[i] > STDERR_FILENO)
				close(log_fds[i]);
		}
	}
	free(handovers);
	free(log_fds);
	if (!gate_wait_all(ws) || !ok) {
		for (unsigned i = 0; i < ws->n; i++)
			atomic_store(&ws->workers[i].stop_requested, true);
		join_all(ws);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) /* the rings are open: their overflow counters can be read */
		atomic_store(&ws->workers[i].shard.stats->cq_overflow,
			     ws->workers[i].shard.loop.ring.cq.koverflow);
	remember_open(ws, cfg);
	log_info("%u worker%s started (%s)", n, n == 1 ? "" : "s",
		 ws->workers[0].cpu >= 0 ? "pinned one per core" : "not pinned");
	return 0;
fail:
	offload_stop(ws->offload);
	ws->offload = NULL;
	free(ws->workers);
	ws->workers = NULL;
	metrics_free(ws->metrics);
	ws->metrics = NULL;
	free(handovers);
	free(log_fds);
	return -1;
}

static void wake(struct worker *w)
{
	uint64_t one = 1;
	ssize_t wr = write(w->wake_fd, &one, sizeof one);
	(void)wr;
}

/* Waits (bounded) until every worker took handover number; a worker busy for long is reported. */
#define HANDOVER_WAIT_MS 10000

static void wait_taken(struct worker_set *ws, uint64_t number)
{
	uint64_t start = monotonic_ms();
	for (unsigned i = 0; i < ws->n; i++) {
		while (atomic_load(&ws->workers[i].taken) < number) {
			if (monotonic_ms() - start > HANDOVER_WAIT_MS) {
				log_error("worker %u has not taken configuration generation %u after %u ms",
					  i, (unsigned)number, HANDOVER_WAIT_MS);
				return;
			}
			struct timespec ts = { 0, 200 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
}

int workers_swap(struct worker_set *ws, struct rw_config *cfg, char *err, size_t errlen)
{
	if (cfg->limits.max_header_bytes > ws->max_header_bytes) {
		snprintf(err, errlen, "limits.max_header_bytes: %u is above the %u the gateway started "
			 "with (its buffers were sized for it): restart to raise it",
			 cfg->limits.max_header_bytes, ws->max_header_bytes);
		return -1;
	}
	if (metrics_bind(ws->metrics, cfg))
		log_error("out of memory binding the new configuration's metrics: some of its new names "
			  "are not counted");
	struct handover **handovers = calloc(ws->n, sizeof *handovers);
	if (!handovers || prepare_handovers(ws, ws->n, cfg, handovers, err, errlen)) {
		if (!handovers)
			snprintf(err, errlen, "out of memory");
		free(handovers);
		return -1;
	}
	uint64_t number = ++ws->handovers;
	for (unsigned i = 0; i < ws->n; i++) {
		struct handover *old = atomic_exchange(&ws->workers[i].mailbox, handovers[i]);
		if (old) /* one the worker had not taken (it was stuck): the newer one wins */
			handover_free(old);
		wake(&ws->workers[i]);
	}
	free(handovers);
	wait_taken(ws, number);
	remember_open(ws, cfg);
	return 0;
}

int workers_reopen_log(struct worker_set *ws, const struct rw_config *cfg, char *err, size_t errlen)
{
	int *fds = calloc(ws->n, sizeof *fds);
	if (!fds || open_logs(cfg, ws->n, fds, err, errlen)) {
		if (!fds)
			snprintf(err, errlen, "out of memory");
		free(fds);
		return -1;
	}
	for (unsigned i = 0; i < ws->n; i++) {
		int old = atomic_exchange(&ws->workers[i].log_mailbox, fds[i]); /* not taken yet: goes */
		if (old > STDERR_FILENO)
			close(old);
		wake(&ws->workers[i]);
	}
	free(fds);
	return 0;
}

void workers_stop(struct worker_set *ws)
{
	for (unsigned i = 0; i < ws->n; i++) {
		atomic_store(&ws->workers[i].stop_requested, true);
		wake(&ws->workers[i]);
	}
	join_all(ws);
	free(ws->open);
	ws->open = NULL;
	ws->nopen = 0;
}
