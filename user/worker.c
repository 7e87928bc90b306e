/* worker.c — the per-core event loop: ring set-up (with the fastest flags the kernel accepts),
 * listeners with multishot accept, the tick that drives the timer wheel, the wake-up used for
 * shutdown, and the dispatch of every completion to its socket's owner. */
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
#include <unistd.h>

#include "conn.h"
#include "proxy.h"
#include "ring.h"
#include "upstream.h"

/* Two buffer groups, so that clients holding buffers can never stop upstream responses (which
 * free them) from being read. */
#define RING_BUFS_CLIENT 512
#define RING_BUFS_UPSTREAM 512
#define RING_BUF_SIZE 16384

struct io_uring_sqe *worker_sqe(struct worker *w)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
	while (!sqe) {
		io_uring_submit(&w->ring);
		sqe = io_uring_get_sqe(&w->ring);
	}
	return sqe;
}

/* Opens the ring in the fastest mode the kernel accepts; logs which (worker 0 only). */
static int ring_setup(struct worker *w)
{
	unsigned features = 0;
	int mode = ring_open(&w->ring, &features);
	if (mode < 0) {
		log_error("io_uring_queue_init failed: %s", strerror(-mode));
		return mode;
	}
	if (w->id == 0) {
		size_t n;
		log_info("io_uring: %s mode (features 0x%x)%s", ring_modes(&n)[mode].name, features,
			 mode ? " — this kernel lacks the faster flags" : "");
	}
	return 0;
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

static void arm_accept(struct worker *w, struct listener *l)
{
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	io_uring_sqe_set_data64(sqe, UD(l, OP_ACCEPT));
	l->armed = true;
}

static void arm_tick(struct worker *w)
{
	w->tick_ts.tv_sec = 0;
	w->tick_ts.tv_nsec = TIMER_TICK_MS * 1000000L;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, UD(w, OP_TICK));
}

static void arm_wake(struct worker *w)
{
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_val, sizeof w->wake_val, 0);
	io_uring_sqe_set_data64(sqe, UD(w, OP_WAKE));
}

/* The operations the data plane needs, and splice, which it can do without. */
static int probe_ops(struct worker *w)
{
	struct io_uring_probe *p = io_uring_get_probe_ring(&w->ring);
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
	w->can_splice = io_uring_opcode_supported(p, IORING_OP_SPLICE);
	if (!w->can_splice && w->id == 0)
		log_warn("io_uring: no splice operation: large bodies go through the buffer ring");
	io_uring_free_probe(p);
	return ret;
}

static int worker_setup(struct worker *w)
{
	if (ring_setup(w) || probe_ops(w))
		return -1;
	uint32_t heap = w->cfg->limits.max_header_bytes + RING_BUF_SIZE + 4096;
	int ret = bufs_init(&w->bufs, &w->ring, RING_BUFS_CLIENT, RING_BUFS_UPSTREAM, RING_BUF_SIZE, heap);
	if (ret) {
		log_error("io_uring: provided buffer ring registration failed: %s (multishot recv into a "
			  "buffer ring needs Linux 6.0 or later)", strerror(-ret));
		return -1;
	}
	timer_wheel_init(&w->wheel, monotonic_ms());
	if (upstream_pools_init(w))
		return -1;
	w->alog.fd = -1;
	if (w->cfg->access_log == ACCESS_LOG_STDERR)
		w->alog.fd = STDERR_FILENO;
	else if (w->cfg->access_log == ACCESS_LOG_FILE) {
		w->alog.fd = open(w->cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
		if (w->alog.fd < 0) {
			log_error("access_log %s: %s", w->cfg->access_log_path, strerror(errno));
			return -1;
		}
	}
	w->wake_fd = eventfd(0, EFD_CLOEXEC);
	if (w->wake_fd < 0)
		return -1;
	uint32_t n = 0;
	for (uint32_t f = 0; f < w->cfg->nfrontends; f++)
		n += w->cfg->frontends[f].nlistens;
	w->listeners = calloc(n ? n : 1, sizeof *w->listeners);
	if (!w->listeners)
		return -1;
	for (uint32_t f = 0; f < w->cfg->nfrontends; f++) {
		const struct rw_frontend *fe = &w->cfg->frontends[f];
		for (uint32_t i = 0; i < fe->nlistens; i++) {
			int fd = listen_socket(&fe->listens[i]);
			if (fd < 0) {
				log_error("listen %s: %s", fe->listens[i].text, strerror(-fd));
				return -1;
			}
			struct listener *l = &w->listeners[w->nlisteners++];
			*l = (struct listener){ .fd = fd, .w = w, .fe = fe };
		}
	}
	return 0;
}

/* Out of descriptors or memory: stop accepting until the next tick (the connection stays in the
 * backlog, so accepting again at once would fail again at once), and say so once a second. */
static void accept_backoff(struct worker *w, struct listener *l, struct io_uring_cqe *cqe)
{
	uint64_t now = monotonic_ms();
	if (now - w->accept_warned_ms >= 1000) {
		log_warn("accept: %s: pausing accepts", strerror(-cqe->res));
		w->accept_warned_ms = now;
	}
	l->backoff = true;
	if (cqe->flags & IORING_CQE_F_MORE) {
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_cancel64(sqe, UD(l, OP_ACCEPT), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
}

static void on_accept(struct worker *w, struct listener *l, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		l->armed = false;
	if (cqe->res == -EMFILE || cqe->res == -ENFILE || cqe->res == -ENOBUFS ||
	    cqe->res == -ENOMEM) {
		accept_backoff(w, l, cqe);
		return;
	}
	if (cqe->res >= 0) {
		if (w->stopping || w->nclients >= w->cfg->limits.max_connections) {
			if (!w->stopping)
				log_warn("max_connections (%u) reached: connection refused",
					 w->cfg->limits.max_connections);
			close(cqe->res);
		} else {
			client_accepted(w, l, cqe->res);
		}
	} else if (cqe->res != -ECANCELED) {
		log_warn("accept: %s", strerror(-cqe->res));
	}
	if (!l->armed && !w->stopping && l->fd >= 0 && !l->backoff)
		arm_accept(w, l);
}

static void starve(struct worker *w, struct sock *s)
{
	if (s->starved)
		return;
	s->starved = true;
	s->list_next = w->starved;
	w->starved = s;
}

static void sock_on_recv(struct worker *w, struct sock *s, struct io_uring_cqe *cqe)
{
	bool ended = !(cqe->flags & IORING_CQE_F_MORE);
	if (ended) {
		s->recv_armed = false;
		s->inflight--;
	}
	int res = cqe->res;
	if (res > 0) {
		uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		buf_took_from_ring(&w->bufs, bid);
		if (s->closing || s->eof) {
			buf_unref(&w->bufs, bid);
			return;
		}
		segq_push(&w->bufs, &s->in, bid, 0, (uint32_t)res);
		if (s->kind == SOCK_CLIENT)
			client_on_data((struct client *)s);
		else
			upconn_on_data((struct upconn *)s);
	} else if (res != -ENOBUFS && res != -ECANCELED && !s->closing && !s->eof) {
		s->eof = true; /* end of stream, or an error that ends it */
		int err = res == 0 ? 0 : -res;
		if (s->kind == SOCK_CLIENT)
			client_on_eof((struct client *)s, err);
		else
			upconn_on_eof((struct upconn *)s, err);
		return;
	}
	if (!ended || s->recv_armed || s->closing || s->eof)
		return;
	if (s->paused)
		proxy_on_recv_stopped(s); /* a splice may be waiting for the recv to stop */
	else if (res == -ENOBUFS)
		starve(w, s); /* re-armed when buffers come back */
	else
		sock_arm_recv(w, s);
}

static void sock_on_send(struct worker *w, struct sock *s, int res)
{
	s->send_busy = false;
	s->inflight--;
	if (s->closing)
		return;
	if (res < 0) {
		segq_clear(&w->bufs, &s->out);
		if (s->kind == SOCK_CLIENT)
			client_on_send_error((struct client *)s, -res);
		else
			upconn_on_eof((struct upconn *)s, -res);
		return;
	}
	segq_consume(&w->bufs, &s->out, (uint64_t)res);
	if (s->out.bytes == 0 && s->sc) { /* an idle socket holds no send context */
		s->sc->next_free = w->free_sc;
		w->free_sc = s->sc;
		s->sc = NULL;
	}
	sock_flush(w, s);
	if (s->kind == SOCK_CLIENT)
		client_on_sent((struct client *)s);
	else
		upconn_on_sent((struct upconn *)s);
}

static void dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(ud & ~OP_MASK);
	struct sock *s = ptr;
	switch (ud & OP_MASK) {
	case OP_ACCEPT:
		on_accept(w, ptr, cqe);
		return;
	case OP_TICK:
		timer_wheel_advance(&w->wheel, monotonic_ms());
		for (uint32_t i = 0; i < w->nlisteners; i++) {
			struct listener *l = &w->listeners[i];
			if (l->backoff && !l->armed && !w->stopping && l->fd >= 0) {
				l->backoff = false;
				arm_accept(w, l);
			}
		}
		if (!w->stopping || w->nclients || w->nclosing)
			arm_tick(w);
		return;
	case OP_WAKE:
		return; /* the loop looks at stop_requested */
	case OP_RECV:
		sock_on_recv(w, s, cqe);
		break;
	case OP_SEND:
		sock_on_send(w, s, cqe->res);
		break;
	case OP_CONNECT:
		s->inflight--;
		if (!s->closing)
			upconn_on_connected((struct upconn *)s, cqe->res);
		break;
	case OP_CANCEL:
		s->inflight--;
		break;
	case OP_SPLICE_POLL:
		s->inflight--;
		break;
	case OP_SPLICE_IN:
	case OP_SPLICE_OUT: {
		bool is_in = (ud & OP_MASK) == OP_SPLICE_IN;
		s->inflight--;
		if (splice_op_finished(w, s, is_in) && !s->closing)
			proxy_on_splice(s, is_in, cqe->res);
		break;
	}
	default:
		return;
	}
	sock_release_if_idle(w, s);
}

/* Frees the sockets closed in this loop turn. Their descriptors are closed through the ring (one
 * syscall fewer per connection: the close rides on the next submit) while the loop runs, directly
 * once it has ended. */
static void free_closed(struct worker *w, bool by_ring)
{
	while (w->closed) {
		struct sock *s = w->closed;
		w->closed = s->list_next;
		w->nclosing--;
		if (s->fd >= 0 && by_ring) {
			struct io_uring_sqe *sqe = worker_sqe(w);
			io_uring_prep_close(sqe, s->fd);
			io_uring_sqe_set_data64(sqe, 0); /* its completion needs nothing */
		} else if (s->fd >= 0) {
			close(s->fd);
		}
		s->fd = -1;
		segq_clear(&w->bufs, &s->in);
		segq_clear(&w->bufs, &s->out);
		if (s->sc) {
			s->sc->next_free = w->free_sc;
			w->free_sc = s->sc;
			s->sc = NULL;
		}
		if (s->kind == SOCK_CLIENT)
			client_free((struct client *)s);
		else
			upconn_free((struct upconn *)s);
	}
}

/* Sockets whose recv ended for want of buffers are re-armed once their group has some again. */
static void rearm_starved(struct worker *w)
{
	struct sock **pp = &w->starved;
	while (*pp) {
		struct sock *s = *pp;
		if (w->bufs.ring_free[sock_buf_group(s)] < 8) {
			pp = &s->list_next;
			continue;
		}
		*pp = s->list_next;
		s->starved = false;
		sock_arm_recv(w, s);
	}
}

static void begin_drain(struct worker *w)
{
	w->stopping = true;
	w->drain_deadline_ms = monotonic_ms() + w->cfg->drain_timeout_ms;
	for (uint32_t i = 0; i < w->nlisteners; i++) {
		/* shutdown ends the multishot accept (close alone would not: the ring holds the file) */
		shutdown(w->listeners[i].fd, SHUT_RDWR);
		close(w->listeners[i].fd);
		w->listeners[i].fd = -1;
	}
	for (struct client *c = w->clients, *next; c; c = next) {
		next = c->next;
		client_drain(c);
	}
}

static void force_close_all(struct worker *w)
{
	for (struct client *c = w->clients; c; c = c->next)
		client_close(c);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char name[24];
	snprintf(name, sizeof name, "worker %u", w->id);
	log_set_thread_name(name);
	snprintf(name, sizeof name, "ringway-w%u", w->id); /* for top, perf and /proc */
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
	for (uint32_t i = 0; i < w->nlisteners; i++)
		arm_accept(w, &w->listeners[i]);
	arm_tick(w);
	arm_wake(w);
	bool forced = false;
	for (;;) {
		if (!w->stopping && atomic_load(&w->stop_requested))
			begin_drain(w);
		if (w->stopping) {
			/* done when no client is left and every closed socket's operations have ended */
			if (w->nclients == 0 && w->nclosing == 0)
				break;
			uint64_t now = monotonic_ms();
			if (!forced && now >= w->drain_deadline_ms) {
				log_warn("drain timeout: closing %u connections", w->nclients);
				force_close_all(w);
				forced = true;
			}
			if (forced && now >= w->drain_deadline_ms + 2000) {
				log_error("%u sockets still have operations in flight: stopping anyway",
					  w->nclosing);
				break;
			}
		}
		int ret = io_uring_submit_and_wait(&w->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY) {
			log_error("io_uring_submit_and_wait: %s", strerror(-ret));
			break;
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			dispatch(w, cqe);
			seen++;
		}
		io_uring_cq_advance(&w->ring, seen);
		free_closed(w, true);
		rearm_starved(w);
		if (w->alog.len)
			access_log_flush(&w->alog);
	}
	io_uring_submit(&w->ring); /* the closes queued in the last turn */
	access_log_flush(&w->alog);
	return NULL;
}

static void worker_destroy(struct worker *w)
{
	for (uint32_t i = 0; i < w->nlisteners; i++)
		if (w->listeners[i].fd >= 0)
			close(w->listeners[i].fd);
	free(w->listeners);
	upstream_pools_destroy(w);
	free_closed(w, false);
	splice_pool_destroy(w);
	while (w->free_sc) {
		struct sendctx *sc = w->free_sc;
		w->free_sc = sc->next_free;
		free(sc);
	}
	while (w->free_clients) {
		struct client *c = w->free_clients;
		w->free_clients = c->next;
		free(c);
	}
	while (w->free_exchanges) {
		struct exchange *x = w->free_exchanges;
		w->free_exchanges = x->next_free;
		free(x);
	}
	if (w->ring.ring_fd > 0)
		io_uring_queue_exit(&w->ring);
	bufs_destroy(&w->bufs);
	if (w->alog.fd > STDERR_FILENO)
		close(w->alog.fd);
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
		worker_destroy(&ws->workers[i]);
		config_unref(ws->workers[i].cfg);
	}
	free(ws->workers);
	ws->workers = NULL;
	ws->n = 0;
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
	if (!ws->workers)
		return -1;
	pthread_mutex_init(&ws->gate.lock, NULL);
	pthread_cond_init(&ws->gate.cond, NULL);
	ws->gate.ready = 0;
	ws->gate.decided = false;
	bool ok = true;
	for (unsigned i = 0; i < n; i++) {
		struct worker *w = &ws->workers[i];
		w->id = i;
		w->cpu = (ncpu && (cfg->workers == 0 || n <= ncpu)) ? cpus[i % ncpu] : -1;
		w->cfg = config_ref(cfg);
		w->wake_fd = -1;
		w->gate = &ws->gate;
		if (pthread_create(&w->thread, NULL, worker_main, w)) {
			log_error("cannot start worker %u", i);
			config_unref(w->cfg);
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
	log_info("%u worker%s started (%s)", n, n == 1 ? "" : "s",
		 ws->workers[0].cpu >= 0 ? "pinned one per core" : "not pinned");
	return 0;
}

void workers_stop(struct worker_set *ws)
{
	for (unsigned i = 0; i < ws->n; i++) {
		atomic_store(&ws->workers[i].stop_requested, true);
		uint64_t one = 1;
		ssize_t wr = write(ws->workers[i].wake_fd, &one, sizeof one);
		(void)wr;
	}
	join_all(ws);
}
