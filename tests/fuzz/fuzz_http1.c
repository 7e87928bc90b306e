/* fuzz_http1.c — libFuzzer harness of user/http1.c. The input is parsed as a request head (small
 * and normal limits), as a response head, and as a chunked body; the body after a complete chunked
 * request head is scanned too. Checked invariants, abort() on violation: results in range, every
 * slice inside the parsed head, the fields agree with each other, and the input split in two at a
 * point derived from the data gives the same result as the whole. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

/* An exact-size copy, so a read past the end of a piece is caught by ASan. */
static char *copy_of(const char *p, size_t len)
{
	char *c = malloc(len ? len : 1);
	memcpy(c, p, len);
	return c;
}

static size_t split_point(const uint8_t *data, size_t len)
{
	if (len == 0)
		return 0;
	return ((size_t)data[0] * 131u + (size_t)data[len - 1] * 7u + len) % (len + 1);
}

static void check_slice(struct slice s, const char *buf, size_t len)
{
	if (s.len)
		check(s.p >= buf && s.p + s.len <= buf + len);
}

static bool same_slice(struct slice a, const char *base_a, struct slice b, const char *base_b)
{
	return a.len == b.len && (a.len == 0 || a.p - base_a == b.p - base_b);
}

static void check_headers(const struct http_header *h, uint16_t n, const char *buf, size_t len)
{
	check(n <= HTTP1_MAX_HEADERS);
	for (uint16_t i = 0; i < n; i++) {
		check(h[i].name.len > 0);
		check_slice(h[i].name, buf, len);
		check_slice(h[i].value, buf, len);
		check(h[i].id < HDR_COUNT);
	}
}

static void check_parsed_request(const struct http_request *r, const char *buf, int rc,
				 const struct http_head_limits *lim)
{
	size_t head = (size_t)rc;

	check(r->head_len == (uint32_t)rc && head <= lim->max_head_bytes);
	check_slice(r->method, buf, head);
	check_slice(r->target, buf, head);
	check_slice(r->path, buf, head);
	check_slice(r->query, buf, head);
	check_slice(r->host, buf, head);
	check(r->method.len > 0 && r->target.len > 0 && r->path.len > 0);
	check(r->target.len <= lim->max_uri_bytes);
	check(r->method_id < HTTP_M_COUNT && r->minor <= 1);
	check(r->content_length >= -1 && !(r->chunked && r->content_length >= 0));
	check(!(r->chunked && r->minor == 0));
	check(r->minor == 0 || r->host.len > 0);
	check_headers(r->headers, r->nheaders, buf, head);
}

static bool same_request(const struct http_request *a, const char *base_a,
			 const struct http_request *b, const char *base_b)
{
	if (!same_slice(a->method, base_a, b->method, base_b) ||
	    !same_slice(a->path, base_a, b->path, base_b) ||
	    !same_slice(a->query, base_a, b->query, base_b) ||
	    !same_slice(a->host, base_a, b->host, base_b) || a->chunked != b->chunked ||
	    a->keep_alive != b->keep_alive || a->content_length != b->content_length ||
	    a->expect_continue != b->expect_continue || a->nheaders != b->nheaders)
		return false;
	for (uint16_t i = 0; i < a->nheaders; i++)
		if (!same_slice(a->headers[i].value, base_a, b->headers[i].value, base_b) ||
		    a->headers[i].hop != b->headers[i].hop)
			return false;
	return true;
}

/* Scans p[0..len) as a chunked body, whole and split at k; both must agree. */
static void check_chunked(const char *p, size_t len, size_t k)
{
	struct chunk_scanner whole = { 0 }, split = { 0 };
	bool done_whole = false, done_split = false;
	ssize_t n = chunk_scan(&whole, p, len, &done_whole);

	check(n == -RW_BAD_CHUNK || (n >= 0 && (size_t)n <= len));
	check(n < 0 || done_whole || (size_t)n == len);
	check(n < 0 || (whole.trailer_bytes <= 16384 && whole.line_len <= 4096));

	char *first = copy_of(p, k), *second = copy_of(p + k, len - k);
	ssize_t n1 = chunk_scan(&split, first, k, &done_split), total = n1;
	if (n1 >= 0 && !done_split) {
		ssize_t n2 = chunk_scan(&split, second, len - k, &done_split);
		total = n2 < 0 ? n2 : n1 + n2;
	}
	check(total == n && done_split == done_whole);
	check(n < 0 || split.data_bytes == whole.data_bytes);
	free(first);
	free(second);
}

static void check_request(const char *buf, size_t len, size_t k,
			  const struct http_head_limits *lim)
{
	static struct http_request whole, part;
	int rc = http1_parse_request(buf, len, lim, &whole);

	check(rc > -RW_REASON_COUNT && (rc <= 0 || (size_t)rc <= len));
	if (rc > 0)
		check_parsed_request(&whole, buf, rc, lim);

	/* The prefix of k bytes: still incomplete, or already the same result. */
	char *prefix = copy_of(buf, k);
	int rc1 = http1_parse_request(prefix, k, lim, &part);
	check(rc1 == 0 || rc1 == rc);
	if (rc1 > 0)
		check(same_request(&whole, buf, &part, prefix));
	free(prefix);

	if (rc > 0 && whole.chunked)
		check_chunked(buf + rc, len - (size_t)rc, k < (size_t)rc ? 0 : k - (size_t)rc);
}

static void check_response(const char *buf, size_t len, size_t k, uint32_t max_head)
{
	static struct http_response whole, part;
	int rc = http1_parse_response(buf, len, max_head, &whole);

	check(rc == 0 || rc == -RW_UPSTREAM_BAD_RESPONSE || (rc > 0 && (size_t)rc <= len));
	if (rc > 0) {
		check(whole.head_len == (uint32_t)rc && (uint32_t)rc <= max_head);
		check(whole.status >= 100 && whole.status <= 599 && whole.minor <= 1);
		check(!(whole.chunked && whole.content_length >= 0) && whole.content_length >= -1);
		check_slice(whole.reason_phrase, buf, (size_t)rc);
		check_headers(whole.headers, whole.nheaders, buf, (size_t)rc);
	}
	char *prefix = copy_of(buf, k);
	int rc1 = http1_parse_response(prefix, k, max_head, &part);
	check(rc1 == 0 || rc1 == rc);
	if (rc1 > 0)
		check(part.status == whole.status && part.chunked == whole.chunked &&
		      part.content_length == whole.content_length &&
		      part.keep_alive == whole.keep_alive && part.nheaders == whole.nheaders);
	free(prefix);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_head_limits small = { .max_head_bytes = 96, .max_uri_bytes = 24 };
	static const struct http_head_limits normal = { .max_head_bytes = 8192,
							.max_uri_bytes = 2048 };
	const char *buf = (const char *)data;
	size_t k = split_point(data, size);

	check_request(buf, size, k, &small);
	check_request(buf, size, k, &normal);
	check_response(buf, size, k, 64);
	check_response(buf, size, k, 8192);
	check_chunked(buf, size, k);
	return 0;
}
