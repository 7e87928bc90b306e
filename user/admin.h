/* admin.h — the admin API: a listener on the control thread's loop (loopback by default, a bearer
 * token when configured) serving GET /metrics (Prometheus text), /status, /config (the running
 * configuration, secrets redacted), /upstreams, and POST /reload. Its requests never touch a
 * worker: what it reports is read from the workers' counters and the running snapshot. */
#ifndef RINGWAY_ADMIN_H
#define RINGWAY_ADMIN_H

#include <stddef.h>

#include "config.h"

struct control;
struct admin;

/* The configuration's admin section (admin_config.c), listed in config.c's table of sections. */
struct config_section;
extern const struct config_section admin_config_section;

/* Opens the admin listener of cfg on the control thread's loop. NULL with why in err when the
 * address cannot be bound. */
struct admin *admin_start(struct control *ctl, const struct rw_admin *cfg, char *err, size_t errlen);
/* Stops accepting; connections already open are served until they close. NULL is fine. */
void admin_stop(struct admin *a);
/* Whether the listener of a serves addr. */
bool admin_listens_on(const struct admin *a, const struct rw_sockaddr *addr);
/* Closes every admin connection (at exit). */
void admin_close_clients(struct control *ctl);

#endif
