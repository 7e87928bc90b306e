/* control.h — the process's control plane, on the main thread once the workers run: its own ring
 * loop, the signals (SIGTERM and SIGINT stop, SIGHUP reloads, SIGUSR1 reopens the access log for
 * log rotation), reloading the configuration off the request path, and the admin API (admin.h)
 * that reports on the workers and reloads too. */
#ifndef RINGWAY_CONTROL_H
#define RINGWAY_CONTROL_H

#include <stdint.h>
#include <sys/signalfd.h>

#include "config.h"
#include "loop.h"

struct worker_set;
struct xdp_plane;
struct admin;
struct admin_client;

struct control {
	struct loop loop;
	struct worker_set *ws;
	struct xdp_plane *xdp;
	struct rw_config *cfg;          /* the running snapshot */
	double start_time;              /* unix seconds */
	uint64_t reloads_ok, reloads_failed;
	double last_reload_time;        /* unix seconds of the last configuration taken */
	int signal_fd;
	struct signalfd_siginfo si;
	struct loop_task signal_task;
	int stop_signal;                /* the signal that stops the gateway; 0 while it runs */
	struct loop_task rotate_task;   /* the session-ticket keys' rotation, a ring timeout */
	struct __kernel_timespec rotate_ts;
	struct admin *admin;            /* NULL: no admin section */
	unsigned admins_retiring;       /* stopped admin listeners whose accept has not ended yet */
	struct admin_client *admin_clients;
};

/* Blocks the signals the control thread takes through its signalfd; call it before any thread
 * starts, so that every thread inherits the mask. */
void control_block_signals(void);

/* Sets the control plane up for cfg (its ring, the signalfd, the admin listener), before the
 * workers start: a gateway that runs out of descriptors under load can still be stopped, reloaded
 * and asked. NULL when it cannot (logged). */
struct control *control_open(struct rw_config *cfg);
/* Runs it over the started workers until SIGTERM or SIGINT, which it returns (-1 after an error of
 * its ring, logged). */
int control_run(struct control *ctl, struct worker_set *ws, struct xdp_plane *xdp);
/* Closes the admin API's listener and connections, the ring, and lets the snapshot go. */
void control_close(struct control *ctl);

/* Reloads the configuration from its file. 0 when the new snapshot is in use; -1 when it was
 * refused (the running one stays), with the reasons in errs: FILE:LINE:COL lines of an invalid
 * file, or a line saying what could not be applied. Every line is logged too. */
int control_reload(struct control *ctl, struct config_errors *errs);

/* Seconds since the Unix epoch, with a fraction. */
double control_wall_time(void);

#endif
