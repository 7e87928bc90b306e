/* router.h — picks the route of a request: host, then path (exact before longest prefix), then
 * method. Built once per config snapshot, read-only afterwards (shared by all workers). */
#ifndef RINGWAY_ROUTER_H
#define RINGWAY_ROUTER_H

#include <stdint.h>

#include "config.h"
#include "slice.h"

struct router *router_build(struct rw_route *routes, uint32_t nroutes);
void router_free(struct router *r);

/* Returns the route for host (may carry ":port", may be empty), path and method, or NULL. When NULL,
 * *allow is the method mask of the routes that match host and path (0: no route at all, 404;
 * otherwise 405 with those methods in Allow). */
/* Whether host (a Host header: the port is not compared) matches one of the patterns
 * ("api.example.com", "*.example.com"), case-insensitively. */
bool router_host_in(char *const *patterns, uint32_t n, struct slice host);

const struct rw_route *router_match(const struct router *r, struct slice host, struct slice path,
				    uint8_t method_id, uint32_t *allow);

#endif
