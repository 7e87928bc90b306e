/* stage.c — compiling a route's stages, and the stages the core owns: the request-body limit
 * (413 for a declared Content-Length over the limit; a chunked body is held to the same limit as
 * it is forwarded). Policy modules add theirs to stages_compile. */
#include "stage.h"

#include <stdlib.h>

#include "config.h"
#include "exchange.h"

static enum stage_result body_limit(struct exchange *x, const struct stage *st)
{
	x->max_body = st->arg;
	if (!x->req.chunked && x->req.content_length > (int64_t)st->arg) {
		exchange_refuse(x, RW_BODY_TOO_LARGE, NULL, true);
		return STAGE_ANSWERED;
	}
	return STAGE_CONTINUE;
}

int stages_compile(struct rw_route *rt, const struct rw_config *cfg)
{
	rt->stages = calloc(1, sizeof *rt->stages);
	if (!rt->stages)
		return -1;
	rt->stages[0] = (struct stage){ .name = "body_limit", .run = body_limit,
					.arg = cfg->limits.max_body_bytes };
	rt->nstages = 1;
	return 0;
}

void stages_free(struct rw_route *rt)
{
	free(rt->stages);
	rt->stages = NULL;
	rt->nstages = 0;
}
