/* control.c — the control plane (see control.h): the main thread's ring loop, signals read from a
 * signalfd through that ring, reloads (parse and validate, open new listeners, hand the snapshot
 * to every worker, move the admin listener and the access log when they changed, reconfigure the
 * XDP limiter), and the access log reopened on SIGUSR1. */
#include "control.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "log.h"
#include "ring.h"
#include "schema.h"
#include "sock.h"
#include "tls.h"
#include "worker.h"
#include "xdp.h"

#define CONTROL_MAX_HEAD 8192

double control_wall_time(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void control_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGUSR1);
}

void control_block_signals(void)
{
	sigset_t set;
	control_signals(&set);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* ---- reload ----------------------------------------------------------------------------------- */

static uint32_t count_routes(const struct rw_config *cfg)
{
	uint32_t n = 0;
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		n += cfg->frontends[f].nroutes;
	return n;
}

static bool same_text(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* What a reload changes that only a restart can: said, and the running value kept. */
static void warn_restart_only(const struct rw_config *old, const struct rw_config *cfg)
{
	if (old->workers != cfg->workers)
		log_warn("reload: workers changed: takes effect at the next restart");
}

/* Refuses the reload with one line "FILE: message", logged. */
static int refuse(struct control *ctl, struct config_errors *errs, const char *path,
		  const char *msg)
{
	log_error("reload refused: %s: %s; the running configuration (generation %llu) stays", path,
		  msg, (unsigned long long)ctl->cfg->generation);
	schema_error_line(errs, "%s: %s", path, msg);
	ctl->reloads_failed++;
	return -1;
}

int control_reload(struct control *ctl, struct config_errors *errs)
{
	struct rw_config *old = ctl->cfg;
	const char *path = old->path;
	char err[512];
	log_info("reload: reading %s", path);
	struct rw_config *cfg = config_load_file(path, errs);
	if (!cfg) {
		for (uint32_t i = 0; i < errs->count; i++)
			log_error("reload refused: %s", errs->lines[i]);
		log_error("reload refused: %u error%s; the running configuration (generation %llu) stays",
			  errs->count, errs->count == 1 ? "" : "s", (unsigned long long)old->generation);
		ctl->reloads_failed++;
		return -1;
	}
	cfg->generation = old->generation + 1;
	/* what can fail comes first: the admin listener, then the workers' new listeners */
	bool admin_moves = cfg->admin.enabled != old->admin.enabled ||
			   (cfg->admin.enabled && !admin_listens_on(ctl->admin, &cfg->admin.listen));
	struct admin *new_admin = NULL;
	if (admin_moves && cfg->admin.enabled &&
	    !(new_admin = admin_start(ctl, &cfg->admin, err, sizeof err))) {
		config_unref(cfg);
		return refuse(ctl, errs, path, err);
	}
	if (workers_swap(ctl->ws, cfg, err, sizeof err)) {
		admin_stop(new_admin);
		config_unref(cfg);
		return refuse(ctl, errs, path, err);
	}
	/* the snapshot is in use: the rest only warns when it fails */
	if ((cfg->access_log != old->access_log || !same_text(cfg->access_log_path, old->access_log_path)) &&
	    workers_reopen_log(ctl->ws, cfg, err, sizeof err))
		log_error("reload: %s: the access log stays where it was", err);
	xdp_reconfigure(ctl->xdp, &old->xdp, &cfg->xdp);
	warn_restart_only(old, cfg);
	if (admin_moves) {
		admin_stop(ctl->admin);
		ctl->admin = new_admin;
		if (new_admin)
			log_info("admin API listening on %s", cfg->admin.listen.text);
		else
			log_info("admin API closed");
	}
	ctl->cfg = cfg;
	ctl->reloads_ok++;
	ctl->last_reload_time = control_wall_time();
	log_info("reload: configuration generation %llu from %s in use: %u frontend%s, %u route%s, "
		 "%u upstream%s", (unsigned long long)cfg->generation, path, cfg->nfrontends,
		 cfg->nfrontends == 1 ? "" : "s", count_routes(cfg), count_routes(cfg) == 1 ? "" : "s",
		 cfg->nupstreams, cfg->nupstreams == 1 ? "" : "s");
	config_unref(old);
	return 0;
}

/* ---- signals ---------------------------------------------------------------------------------- */

static void arm_signals(struct control *ctl)
{
	struct io_uring_sqe *sqe = loop_sqe(&ctl->loop);
	io_uring_prep_read(sqe, ctl->signal_fd, &ctl->si, sizeof ctl->si, 0);
	io_uring_sqe_set_data64(sqe, UD(&ctl->signal_task, OP_TASK));
}

static void reopen_log(struct control *ctl)
{
	char err[512];
	if (ctl->cfg->access_log != ACCESS_LOG_FILE) {
		log_info("SIGUSR1: the access log is not a file: nothing to reopen");
		return;
	}
	if (workers_reopen_log(ctl->ws, ctl->cfg, err, sizeof err))
		log_error("SIGUSR1: %s: the access log stays where it was", err);
	else
		log_info("SIGUSR1: access log %s reopened", ctl->cfg->access_log_path);
}

static void on_signal(struct loop_task *t, struct io_uring_cqe *cqe)
{
	struct control *ctl = container_of(t, struct control, signal_task);
	if (cqe->res != sizeof ctl->si) {
		if (cqe->res != -EINTR && cqe->res != -EAGAIN)
			log_error("signalfd read: %s", strerror(cqe->res < 0 ? -cqe->res : EIO));
		arm_signals(ctl);
		return;
	}
	switch (ctl->si.ssi_signo) {
	case SIGHUP: {
		struct config_errors errs = { 0 };
		control_reload(ctl, &errs);
		config_errors_free(&errs);
		break;
	}
	case SIGUSR1:
		reopen_log(ctl);
		break;
	default:
		ctl->stop_signal = (int)ctl->si.ssi_signo;
		return;
	}
	arm_signals(ctl);
}

/* ---- session-ticket keys ------------------------------------------------------------------------ */

/* A ring timeout, not the wheel: the wheel ticks every 10 ms while a timer is armed, and this one
 * fires once an hour. */
static void arm_rotation(struct control *ctl)
{
	ctl->rotate_ts.tv_sec = TLS_TICKET_ROTATE_MS / 1000;
	ctl->rotate_ts.tv_nsec = 0;
	struct io_uring_sqe *sqe = loop_sqe(&ctl->loop);
	io_uring_prep_timeout(sqe, &ctl->rotate_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, UD(&ctl->rotate_task, OP_TASK));
}

static void on_rotate(struct loop_task *t, struct io_uring_cqe *cqe)
{
	struct control *ctl = container_of(t, struct control, rotate_task);
	tls_rotate_ticket_keys();
	log_info("tls: session-ticket key rotated (tickets under the one before stay good for %u s)",
		 TLS_TICKET_ROTATE_MS / 1000);
	arm_rotation(ctl);
}

/* ---- the loop --------------------------------------------------------------------------------- */

static int control_setup(struct control *ctl)
{
	unsigned features;
	int mode = ring_open(&ctl->loop.ring, &features);
	if (mode < 0) {
		log_error("control: io_uring_queue_init failed: %s", strerror(-mode));
		return -1;
	}
	int ret = loop_init(&ctl->loop, LOOP_BUFS_CONTROL, CONTROL_MAX_HEAD, (uint64_t)time(NULL));
	if (ret) {
		log_error("control: buffer ring registration failed: %s", strerror(-ret));
		return -1;
	}
	sigset_t set;
	control_signals(&set);
	ctl->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	if (ctl->signal_fd < 0) {
		log_error("control: signalfd: %s", strerror(errno));
		return -1;
	}
	ctl->signal_task.fn = on_signal;
	arm_signals(ctl);
	ctl->rotate_task.fn = on_rotate;
	arm_rotation(ctl);
	if (ctl->cfg->admin.enabled) {
		char err[512];
		ctl->admin = admin_start(ctl, &ctl->cfg->admin, err, sizeof err);
		if (!ctl->admin) {
			log_error("admin: %s", err);
			return -1;
		}
		log_info("admin API listening on %s", ctl->cfg->admin.listen.text);
	}
	return 0;
}

/* Admin connections are closed and their operations waited for (bounded). */
static void control_teardown(struct control *ctl)
{
	admin_stop(ctl->admin);
	ctl->admin = NULL;
	admin_close_clients(ctl);
	for (int turns = 0; (ctl->loop.nclosing || ctl->admins_retiring) && turns < 100; turns++)
		if (loop_run_once(&ctl->loop) < 0)
			break;
	loop_flush_closes(&ctl->loop);
	if (ctl->signal_fd >= 0)
		close(ctl->signal_fd);
	loop_destroy(&ctl->loop);
}

struct control *control_open(struct rw_config *cfg)
{
	struct control *ctl = calloc(1, sizeof *ctl);
	if (!ctl) {
		log_error("control: out of memory");
		return NULL;
	}
	ctl->cfg = config_ref(cfg);
	ctl->signal_fd = -1;
	ctl->start_time = ctl->last_reload_time = control_wall_time();
	if (control_setup(ctl)) {
		control_close(ctl);
		return NULL;
	}
	return ctl;
}

int control_run(struct control *ctl, struct worker_set *ws, struct xdp_plane *xdp)
{
	ctl->ws = ws;
	ctl->xdp = xdp;
	while (!ctl->stop_signal) {
		int ret = loop_run_once(&ctl->loop);
		if (ret < 0) {
			log_error("control: io_uring_submit_and_wait: %s", strerror(-ret));
			return -1;
		}
	}
	return ctl->stop_signal;
}

void control_close(struct control *ctl)
{
	if (!ctl)
		return;
	control_teardown(ctl);
	config_unref(ctl->cfg);
	free(ctl);
}
