/* transform.c — the runtime of request and response transforms (transform.h): the transform
 * stage, and the helpers that the proxy's upstream request head and proxied response head are
 * written with (header lines kept, dropped or renamed; set and add lines; the path rewritten by
 * its regex straight into the head, through each thread's own PCRE2 match data; the query).
 * Nothing is copied: the head is written once, from the client's slices and the snapshot's
 * compiled transform. */
#include "transform.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
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

/* ---- the path ---- */

/* Each thread's match data (a worker's, made on its first rewrite, freed when it ends): pcre2
 * writes into it, so threads cannot share one, and the request path makes none. */
static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;

static void md_free(void *md)
{
	pcre2_match_data_free(md);
}

static void md_key_make(void)
{
	(void)pthread_key_create(&md_key, md_free);
}

static pcre2_match_data *thread_match_data(void)
{
	pthread_once(&md_once, md_key_make);
	pcre2_match_data *md = pthread_getspecific(md_key);
	if (!md && (md = pcre2_match_data_create(16, NULL)) && pthread_setspecific(md_key, md)) {
		pcre2_match_data_free(md);
		md = NULL;
	}
	return md;
}

static void write_plain_path(struct writer *o, struct slice path)
{
	if (path.len == 0 || path.p[0] != '/')
		w_str(o, "/");
	w_slice(o, path);
}

void transform_write_path(struct writer *o, struct slice path, const struct rw_request_xf *xf)
{
	if (!xf || !xf->path_re) {
		write_plain_path(o, path);
		return;
	}
	pcre2_match_data *md = thread_match_data();
	if (!md || o->overflow || o->len + 1 >= o->cap) {
		o->overflow = true;
		return;
	}
	/* the result goes straight into the head, one byte in to leave room for a leading '/' */
	char *out = o->buf + o->len + 1;
	PCRE2_SIZE outlen = o->cap - o->len - 1;
	int rc = pcre2_substitute(xf->path_re, (PCRE2_SPTR)path.p, path.len, 0,
				  PCRE2_SUBSTITUTE_UNSET_EMPTY, md, NULL,
				  (PCRE2_SPTR)xf->path_replace, xf->path_replace_len,
				  (PCRE2_UCHAR *)out, &outlen);
	if (rc == PCRE2_ERROR_NOMEMORY) { /* it does not fit the head */
		o->overflow = true;
		return;
	}
	if (rc <= 0) { /* no match (or a match limit hit): the path as it is */
		write_plain_path(o, path);
		return;
	}
	if (outlen == 0 || out[0] != '/')
		o->buf[o->len++] = '/';
	else
		memmove(out - 1, out, outlen);
	o->len += outlen;
}
