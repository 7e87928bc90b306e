/* worker.c — a worker thread: ring set-up (with the fastest flags the kernel accepts), its
 * listeners, the event loop, new config snapshots taken from the mailbox, draining on shutdown,
 * and starting and stopping the set of workers. */
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
#include <time.h>
#include <unistd.h>

#include "conn.h"
#include "exchange.h"
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

/* ---- snapshots ------------------------------------------------------------------------------ */

/* A snapshot from the mailbox becomes the shard's current one. */
static void adopt_snapshot(struct worker *w)
{
	struct rw_config *cfg = atomic_exchange(&w->mailbox, NULL);
	if (!cfg)
		return;
	const char *path = cfg->path ? cfg->path : "";
	if (shard_adopt(&w->shard, cfg))
		log_error("out of memory taking the new configuration: keeping the running one");
	else
		log_info("configuration %s in use", path);
}

static void arm_wake(struct worker *w);

static void on_wake(struct loop_task *t, struct io_uring_cqe *cqe)
{
	struct worker *w = container_of(t, struct worker, wake_task);
	adopt_snapshot(w);
	if (!atomic_load(&w->stop_requested))
		arm_wake(w);
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = loop_sqe(&w->shard.loop);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof w->wake_val, 0);
	io_uring_sqe_set_data64(sqe, UD(&w->wake_task, OP_TASK));
}

/* ---- set-up ---------------------------------------------------------------------------------- */

static int open_listeners(struct worker *w, const struct rw_config *cfg)
{
	uint32_t n = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		n += cfg->frontends[f].nlistens;
	w->shard.listeners = calloc(n ? n : 1, sizeof *w->shard.listeners);
	if (!w->shard.listeners)
		return -1;
	for (uint32_t f = 0; f < cfg->nfrontends; f++) {
		const struct rw_frontend *fe = &cfg->frontends[f];
		for (uint32_t i = 0; i < fe->nlistens; i++) {
			int fd = listen_socket(&fe->listens[i]);
			if (fd < 0) {
				log_error("listen %s: %s", fe->listens[i].text, strerror(-fd));
				return -1;
			}
			struct shard_listener *sl = &w->shard.listeners[w->shard.nlisteners];
			sl->li = (struct listener){ .fd = fd, .on_accept = on_accept, .loop = &w->shard.loop,
						    .owner = &w->shard, .index = w->shard.nlisteners };
			memcpy(&sl->addr, &fe->listens[i].addr, fe->listens[i].addrlen);
			sl->addrlen = fe->listens[i].addrlen;
			w->shard.nlisteners++;
		}
	}
	return 0;
}

static int open_access_log(struct worker *w, const struct rw_config *cfg)
{
	w->shard.alog.fd = -1;
	if (cfg->access_log == ACCESS_LOG_STDERR)
		w->shard.alog.fd = STDERR_FILENO;
	else if (cfg->access_log == ACCESS_LOG_FILE) {
		w->shard.alog.fd = open(cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (w->shard.alog.fd < 0) {
			log_error("access_log %s: %s", cfg->access_log_path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Ring, buffers, pools, access log, wake-up, listeners, then the first snapshot (cfg's reference
 * is the worker's from here on, whatever happens). */
static int worker_setup(struct worker *w, struct rw_config *cfg)
{
	upstream_pools_init(&w->shard.pools, &w->shard.loop);
	if (ring_setup(w) || probe_ops(w)) {
		config_unref(cfg);
		return -1;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	int ret = loop_init(&w->shard.loop, cfg->limits.max_header_bytes,
			    (uint64_t)ts.tv_nsec ^ ((uint64_t)(w->shard.id + 1) << 32));
	if (ret) {
		log_error("io_uring: provided buffer ring registration failed: %s (multishot recv into a "
			  "buffer ring needs Linux 6.0 or later)", strerror(-ret));
		config_unref(cfg);
		return -1;
	}
	w->wake_task.fn = on_wake;
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (open_access_log(w, cfg) || w->wake_fd < 0 || open_listeners(w, cfg)) {
		config_unref(cfg);
		return -1;
	}
	return shard_adopt(&w->shard, cfg);
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
		listener_stop(&w->shard.loop, &w->shard.listeners[i].li);
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
	w->start_error = worker_setup(w, atomic_exchange(&w->mailbox, NULL));
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
		listener_arm(&w->shard.loop, &w->shard.listeners[i].li);
	arm_wake(w);
	for (;;) {
		if (!w->shard.stopping && atomic_load(&w->stop_requested))
			begin_drain(w);
		/* done when no client is left and every closed socket's operations have ended */
		if (w->shard.stopping && ((w->shard.nclients == 0 && w->shard.loop.nclosing == 0) || w->gave_up))
			break;
		int ret = loop_run_once(&w->shard.loop);
		if (ret < 0) {
			log_error("io_uring_submit_and_wait: %s", strerror(-ret));
			break;
		}
		if (w->shard.alog.len)
			access_log_flush(&w->shard.alog);
	}
	loop_flush_closes(&w->shard.loop);
	access_log_flush(&w->shard.alog);
	return NULL;
}

static void worker_destroy(struct worker *w)
{
	sock_free_closed(&w->shard.loop, false); /* before the pools their connections go back to */
	for (uint32_t i = 0; i < w->shard.nlisteners; i++)
		if (w->shard.listeners[i].li.fd >= 0)
			close(w->shard.listeners[i].li.fd);
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
		free(x);
	}
	loop_destroy(&w->shard.loop);
	if (w->shard.snap)
		shard_snap_release(w->shard.snap);
	struct rw_config *pending = atomic_exchange(&w->mailbox, NULL);
	if (pending)
		config_unref(pending);
	if (w->shard.alog.fd > STDERR_FILENO)
		close(w->shard.alog.fd);
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
	for (unsigned i = 0; i < ws->n; i++) {
		pthread_join(ws->workers[i].thread, NULL);
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

int workers_start(struct worker_set *ws, struct rw_config *cfg)
{
	int cpus[1024];
	unsigned ncpu = available_cpus(cpus, 1024);
	unsigned n = cfg->workers ? cfg->workers : (ncpu ? ncpu : 1);
	ws->workers = calloc(n, sizeof *ws->workers);
	ws->n = 0;
	ws->metrics = metrics_new(n);
	if (!ws->workers || !ws->metrics || metrics_bind(ws->metrics, cfg)) {
		log_error("out of memory starting the workers");
		free(ws->workers);
		ws->workers = NULL;
		metrics_free(ws->metrics);
		ws->metrics = NULL;
		return -1;
	}
	pthread_mutex_init(&ws->gate.lock, NULL);
	pthread_cond_init(&ws->gate.cond, NULL);
	ws->gate.ready = 0;
	ws->gate.decided = false;
	bool ok = true;
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &ws->workers[i];
		w->shard.id = i;
		w->shard.stats = metrics_worker(ws->metrics, i);
		w->shard.loop.recv_starved = w->shard.stats->recv_starved;
		w->cpu = (ncpu && (cfg->workers == 0 || n <= ncpu)) ? cpus[i % ncpu] : -1;
		w->mailbox = config_ref(cfg); /* the first snapshot comes like every later one */
		w->wake_fd = -1;
		w->gate = &ws->gate;
		if (pthread_create(&w->thread, NULL, worker_main, w)) {
			log_error("cannot start worker %u", i);
			config_unref(atomic_exchange(&w->mailbox, NULL));
			ok = false;
			break;
		}
		ws->n++;
	}
	if (!gate_wait_all(ws) || !ok) {
		for (unsigned i = 0; i < ws->n; i++)
			atomic_store(&ws->workers[i].stop_requested, true);
		join_all(ws);
		return -1;
	}
	for (unsigned i = 0; i < n; i++) /* the rings are open: their overflow counters can be read */
		atomic_store(&ws->workers[i].shard.stats->cq_overflow,
			     ws->workers[i].shard.loop.ring.cq.koverflow);
	log_info("%u worker%s started (%s)", n, n == 1 ? "" : "s",
		 ws->workers[0].cpu >= 0 ? "pinned one per core" : "not pinned");
	return 0;
}

static void wake(struct worker *w)
{
	uint64_t one = 1;
	ssize_t wr = write(w->wake_fd, &one, sizeof one);
	(void)wr;
}

void workers_swap(struct worker_set *ws, struct rw_config *cfg)
{
	if (metrics_bind(ws->metrics, cfg))
		log_error("out of memory binding the new configuration's metrics: some of its new names "
			  "are not counted");
	for (unsigned i = 0; i < ws->n; i++) {
		struct rw_config *old = atomic_exchange(&ws->workers[i].mailbox, config_ref(cfg));
		if (old) /* a snapshot the worker had not taken yet: the newer one wins */
			config_unref(old);
		wake(&ws->workers[i]);
	}
}

void workers_stop(struct worker_set *ws)
{
	for (unsigned i = 0; i < ws->n; i++) {
		atomic_store(&ws->workers[i].stop_requested, true);
		wake(&ws->workers[i]);
	}
	join_all(ws);
}
