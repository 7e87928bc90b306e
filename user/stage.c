/* stage.c — compiling a route's stages (the body limit first, then CORS of cors.h,
 * authentication, the ACL and the scopes of auth.h, the rate limits of ratelimit.h, the transform
 * of transform.h, when the route has them), and the stages the core owns: the request-body
 * limit (413 for a declared Content-Length over the limit; a chunked body is held to the same
 * limit as it is forwarded). Policy modules add theirs to stages_compile. */
#include "stage.h"

#include <stdlib.h>

#include "config.h"
#include "cors.h"
#include "exchange.h"
#include "transform.h"

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
	rt->stages = calloc(7, sizeof *rt->stages);
	if (!rt->stages)
		return -1;
	uint32_t n = 0;
	rt->stages[n++] = (struct stage){ .name = "body_limit", .run = body_limit,
					  .arg = cfg->limits.max_body_bytes };
	if (rt->xf.cors) /* early: a refusal by a later stage carries the CORS lines too */
		rt->stages[n++] = (struct stage){ .name = "cors", .run = cors_stage };
	if (rt->auth.methods)
		rt->stages[n++] = (struct stage){ .name = "authenticate", .run = auth_authenticate,
						  .cancel = auth_cancel };
	if (rt->auth.nallow || rt->auth.ndeny)
		rt->stages[n++] = (struct stage){ .name = "acl", .run = auth_acl };
	if (rt->auth.nscopes)
		rt->stages[n++] = (struct stage){ .name = "scopes", .run = auth_scopes };
	if (rt->rate_limits.count)
		rt->stages[n++] = (struct stage){ .name = "rate_limit", .run = ratelimit_check,
						  .cancel = ratelimit_cancel };
	if (rt->xf.request)
		rt->stages[n++] = (struct stage){ .name = "transform", .run = transform_stage };
	rt->nstages = n;
	return 0;
}

void stages_free(struct rw_route *rt)
{
	free(rt->stages);
	rt->stages = NULL;
	rt->nstages = 0;
}
