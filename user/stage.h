/* stage.h — policies as stages compiled per route. At config load each route becomes an ordered
 * array of stages (the request-body limit, CORS, authentication, ACL, scopes, rate limits,
 * transform: stage.c says the order); a request runs only its route's stages, then the route's handler (the proxy). Each
 * stage has one entry point that continues, answers the request itself, or waits for an async
 * result and later resumes the exchange with exchange_resume() or ends it with exchange_refuse().
 * A stage that waits has a cancel entry point too: the exchange can end while it waits (the
 * client went away, the gateway drains), and the stage must then forget it. */
#ifndef RINGWAY_STAGE_H
#define RINGWAY_STAGE_H

#include <stdint.h>

struct exchange;
struct stage;
struct rw_config;
struct rw_route;

enum stage_result {
	STAGE_CONTINUE = 0, /* on to the next stage */
	STAGE_ANSWERED,     /* the stage answered (or refused) the request: the exchange is over */
	STAGE_WAIT,         /* the result comes later, after run has returned: the stage then calls
			     * exchange_resume or exchange_refuse (or its cancel runs first) */
};

typedef enum stage_result stage_fn(struct exchange *x, const struct stage *st);
/* The exchange that st left waiting ends without its result: drop every reference to x. */
typedef void stage_cancel_fn(struct exchange *x, const struct stage *st);

struct stage {
	const char *name;         /* for logs */
	stage_fn *run;
	stage_cancel_fn *cancel;  /* needed by a stage that can return STAGE_WAIT */
	uint64_t arg;             /* the stage's compiled setting (a limit, an index into a table) */
};

/* Builds rt->stages from the route's policies and the snapshot's defaults. 0, or -1 when out of
 * memory. */
int stages_compile(struct rw_route *rt, const struct rw_config *cfg);
void stages_free(struct rw_route *rt);

#endif
