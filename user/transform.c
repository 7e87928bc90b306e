/* transform.c — the runtime of request and response transforms (transform.h): the transform
 * stage, and the helpers that the proxy's upstream request head and proxied response head are
 * written with (header lines kept, dropped or renamed; set and add lines; the query rewritten).
 * Nothing is copied: the head is written once, from the client's slices and the snapshot's
 * compiled transform. */
#include "transform.h"

#include <string.h>

#include "config.h"
#include "exchange.h"
#include "writer.h"

enum stage_result transform_stage(struct exchange *x, const struct stage *st)
{
	(void)st;
	const struct rw_request_xf *rq = x->route->xf.request;
	if (rq && rq->method)
		x->method_id = rq->method_id;
	return STAGE_CONTINUE;
}

static bool listed(const struct rw_header_line *l, uint32_t n, struct slice name)
{
	for (uint32_t i = 0; i < n; i++)
		if (name.len == l[i].name_len && slice_ieq(name, l[i].name, l[i].name_len))
			return true;
	return false;
}

bool transform_header(const struct rw_header_xf *xf, struct slice *name)
{
	if (!xf)
		return true;
	if (listed(xf->remove, xf->nremove, *name) || listed(xf->set, xf->nset, *name))
		return false;
	for (uint32_t i = 0; i < xf->nrename; i++) {
		const struct rw_header_line *r = &xf->rename[i];
		if (name->len == r->name_len && slice_ieq(*name, r->name, r->name_len)) {
			*name = slice_make(r->value, r->value_len);
			break;
		}
	}
	return true;
}

void transform_write_headers(const struct rw_header_xf *xf, struct writer *o)
{
	if (!xf)
		return;
	for (uint32_t i = 0; i < xf->nset; i++)
		w_header(o, slice_make(xf->set[i].name, xf->set[i].name_len),
			 slice_make(xf->set[i].value, xf->set[i].value_len));
	for (uint32_t i = 0; i < xf->nadd; i++)
		w_header(o, slice_make(xf->add[i].name, xf->add[i].name_len),
			 slice_make(xf->add[i].value, xf->add[i].value_len));
}

/* Whether the parameter p (up to '&') is named name. */
static bool param_is(const char *p, size_t len, const char *name)
{
	size_t n = strlen(name);
	return len >= n && !memcmp(p, name, n) && (len == n || p[n] == '=');
}

void transform_write_query(struct writer *o, struct slice query, const char *also_drop,
			   const struct rw_request_xf *xf)
{
	const char *p = query.p, *end = query.p + query.len;
	bool first = true;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		size_t len = (size_t)(stop - p);
		bool drop = len == 0 || (also_drop && param_is(p, len, also_drop));
		for (uint32_t i = 0; xf && !drop && i < xf->nquery_remove; i++)
			drop = param_is(p, len, xf->query_remove[i]);
		if (!drop) {
			w_str(o, first ? "?" : "&");
			w_put(o, p, len);
			first = false;
		}
		p = stop + 1;
	}
	if (xf && xf->query_add) {
		w_str(o, first ? "?" : "&");
		w_put(o, xf->query_add, xf->query_add_len);
	}
}
