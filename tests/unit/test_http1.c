/* test_http1.c — unit tests of the HTTP/1.1 head parser and the chunked-body scanner (user/http1.c):
 * fields of each request form, one test per RFC 9112 rule with its specific reason, limits hit
 * while incomplete, every vector re-parsed at every split point, and a table of request-smuggling
 * cases derived from aws/http-desync-guardian (copied in below as raw bytes). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http1.h"

#define RAW(s) s, sizeof(s) - 1
#define ACCEPT 1 /* expected result: the whole input is one complete head */

static const struct http_head_limits limits = { .max_head_bytes = 8192, .max_uri_bytes = 2048 };

static const char *describe(int rc, char *buf, size_t cap)
{
	if (rc < 0)
		snprintf(buf, cap, "-%s", reason_name((enum rw_reason)-rc));
	else
		snprintf(buf, cap, "%d", rc);
	return buf;
}

/* ---- every split point ------------------------------------------------------------------- */

static long offset_of(struct slice s, const char *base)
{
	return s.p ? (long)(s.p - base) : -1;
}

static void assert_same_slice(struct slice a, const char *base_a, struct slice b,
			      const char *base_b, const char *what, size_t k)
{
	cr_assert_eq(a.len, b.len, "split at %zu: %s length differs", k, what);
	if (a.len)
		cr_assert_eq(offset_of(a, base_a), offset_of(b, base_b),
			     "split at %zu: %s offset differs", k, what);
}

static void assert_slice_inside(struct slice s, const char *buf, size_t len, const char *what)
{
	if (s.len == 0)
		return;
	cr_assert(s.p >= buf && s.p + s.len <= buf + len, "%s points outside the buffer", what);
}

static void assert_same_request(const struct http_request *a, const char *base_a,
				const struct http_request *b, const char *base_b, size_t k)
{
	assert_same_slice(a->method, base_a, b->method, base_b, "method", k);
	assert_same_slice(a->target, base_a, b->target, base_b, "target", k);
	assert_same_slice(a->path, base_a, b->path, base_b, "path", k);
	assert_same_slice(a->query, base_a, b->query, base_b, "query", k);
	assert_same_slice(a->host, base_a, b->host, base_b, "host", k);
	cr_assert_eq(a->method_id, b->method_id);
	cr_assert_eq(a->minor, b->minor);
	cr_assert_eq(a->chunked, b->chunked);
	cr_assert_eq(a->keep_alive, b->keep_alive);
	cr_assert_eq(a->expect_continue, b->expect_continue);
	cr_assert_eq(a->content_length, b->content_length);
	cr_assert_eq(a->head_len, b->head_len);
	cr_assert_eq(a->nheaders, b->nheaders);
	for (uint16_t i = 0; i < a->nheaders; i++) {
		assert_same_slice(a->headers[i].name, base_a, b->headers[i].name, base_b, "name", k);
		assert_same_slice(a->headers[i].value, base_a, b->headers[i].value, base_b, "value", k);
		cr_assert_eq(a->headers[i].id, b->headers[i].id);
		cr_assert_eq(a->headers[i].hop, b->headers[i].hop);
	}
}

static void assert_request_inside(const struct http_request *r, const char *buf, size_t len)
{
	assert_slice_inside(r->method, buf, len, "method");
	assert_slice_inside(r->target, buf, len, "target");
	assert_slice_inside(r->path, buf, len, "path");
	assert_slice_inside(r->query, buf, len, "query");
	assert_slice_inside(r->host, buf, len, "host");
	for (uint16_t i = 0; i < r->nheaders; i++) {
		assert_slice_inside(r->headers[i].name, buf, len, "header name");
		assert_slice_inside(r->headers[i].value, buf, len, "header value");
	}
}

/* Feeds every prefix (an exact-size heap copy, so a read past the end is caught by ASan) as the
 * gateway does when bytes trickle in: each result must be 0 until it becomes the final result,
 * and then stay it, with the same fields. Returns the final result. */
static int check_request_every_split(const char *raw, size_t len,
				     const struct http_head_limits *lim)
{
	static struct http_request whole, part;
	char *all = malloc(len ? len : 1);
	memcpy(all, raw, len);
	int expected = http1_parse_request(all, len, lim, &whole);
	bool decided = false;
	char a[64], b[64];

	if (expected > 0) {
		cr_assert_leq((size_t)expected, len);
		cr_assert_eq(whole.head_len, (uint32_t)expected);
		assert_request_inside(&whole, all, len);
	}
	for (size_t k = 0; k <= len; k++) {
		char *prefix = malloc(k ? k : 1);
		memcpy(prefix, raw, k);
		int rc = http1_parse_request(prefix, k, lim, &part);
		if (rc == 0) {
			cr_assert(!decided, "prefix of %zu bytes went back to 0 after a result", k);
		} else {
			cr_assert_eq(rc, expected, "prefix of %zu bytes: %s, whole input: %s", k,
				     describe(rc, a, sizeof a), describe(expected, b, sizeof b));
			decided = true;
			if (rc > 0)
				assert_same_request(&whole, all, &part, prefix, k);
		}
		free(prefix);
	}
	free(all);
	return expected;
}

/* Parses with the default limits (checking every split) and asserts the result. */
static void expect_request(const char *raw, size_t len, int expected, struct http_request *out)
{
	char a[64], b[64];
	int whole = check_request_every_split(raw, len, &limits);
	int want = expected == ACCEPT ? (int)len : expected;

	cr_assert_eq(whole, want, "got %s, want %s for: %.*s", describe(whole, a, sizeof a),
		     describe(want, b, sizeof b), (int)len, raw);
	if (out)
		cr_assert_eq(http1_parse_request(raw, len, &limits, out), whole);
}

#define ACCEPTS(s, out) expect_request(RAW(s), ACCEPT, out)
#define REFUSES(s, reason) expect_request(RAW(s), -(int)(reason), NULL)

static void assert_slice(struct slice s, const char *want)
{
	cr_assert(slice_eq(s, want, strlen(want)), "got \"%.*s\", want \"%s\"", (int)s.len, s.p,
		  want);
}

static const struct http_header *find_header(const struct http_request *r, const char *name)
{
	for (uint16_t i = 0; i < r->nheaders; i++)
		if (slice_ieq(r->headers[i].name, name, strlen(name)))
			return &r->headers[i];
	cr_assert_fail("no header %s", name);
	return NULL;
}

/* ---- request forms ----------------------------------------------------------------------- */

Test(request, origin_form_fields)
{
	static struct http_request r;
	ACCEPTS("GET /v1/items?id=7&x HTTP/1.1\r\n"
		"Host: api.example.com:8080\r\n"
		"User-Agent:  curl/8.0 \t\r\n"
		"Accept: */*\r\n"
		"X-Empty:\r\n"
		"\r\n",
		&r);
	assert_slice(r.method, "GET");
	cr_assert_eq(r.method_id, HTTP_M_GET);
	assert_slice(r.target, "/v1/items?id=7&x");
	assert_slice(r.path, "/v1/items");
	assert_slice(r.query, "id=7&x");
	assert_slice(r.host, "api.example.com:8080");
	cr_assert_eq(r.minor, 1);
	cr_assert(r.keep_alive);
	cr_assert(!r.chunked);
	cr_assert(!r.expect_continue);
	cr_assert_eq(r.content_length, -1);
	cr_assert_eq(r.nheaders, 4);
	assert_slice(r.headers[1].name, "User-Agent");
	assert_slice(r.headers[1].value, "curl/8.0");
	assert_slice(r.headers[3].value, "");
	cr_assert_eq(r.headers[0].id, HDR_HOST);
	cr_assert_eq(r.headers[1].id, HDR_OTHER);
}

Test(request, origin_form_without_query)
{
	static struct http_request r;
	ACCEPTS("DELETE /a/b HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.path, "/a/b");
	cr_assert_eq(r.query.len, 0);
	cr_assert_eq(r.method_id, HTTP_M_DELETE);
}

Test(request, origin_form_empty_query_and_second_question_mark)
{
	static struct http_request r;
	ACCEPTS("GET /a? HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.path, "/a");
	cr_assert_eq(r.query.len, 0);
	ACCEPTS("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.path, "/a");
	assert_slice(r.query, "b?c");
}

Test(request, absolute_form_authority_overrides_host)
{
	static struct http_request r;
	ACCEPTS("GET http://api.example.com:8080/v1/items?x=1 HTTP/1.1\r\n"
		"Host: other.example\r\n\r\n",
		&r);
	assert_slice(r.host, "api.example.com:8080");
	assert_slice(r.path, "/v1/items");
	assert_slice(r.query, "x=1");
	assert_slice(r.target, "http://api.example.com:8080/v1/items?x=1");
}

Test(request, absolute_form_scheme_is_case_insensitive_and_path_defaults_to_slash)
{
	static struct http_request r;
	ACCEPTS("GET HTTPS://Example.COM HTTP/1.1\r\nHost: example.com\r\n\r\n", &r);
	assert_slice(r.host, "Example.COM");
	assert_slice(r.path, "/");
	cr_assert_eq(r.query.len, 0);
	ACCEPTS("GET http://h?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.host, "h");
	assert_slice(r.path, "/");
	assert_slice(r.query, "q=1");
}

Test(request, absolute_form_needs_host_header_in_http11_only)
{
	static struct http_request r;
	REFUSES("GET http://h/ HTTP/1.1\r\n\r\n", RW_BAD_HOST);
	ACCEPTS("GET http://h/x HTTP/1.0\r\n\r\n", &r);
	assert_slice(r.host, "h");
	assert_slice(r.path, "/x");
}

Test(request, absolute_form_malformed)
{
	REFUSES("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);       /* no host */
	REFUSES("GET http://u:p@h/x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);  /* userinfo */
	REFUSES("GET http://h:99999999/ HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET http:/h/x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET example.com/x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
}

Test(request, asterisk_form_only_with_options)
{
	static struct http_request r;
	ACCEPTS("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.path, "*");
	cr_assert_eq(r.query.len, 0);
	cr_assert_eq(r.method_id, HTTP_M_OPTIONS);
	REFUSES("GET * HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("OPTIONS *x HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
}

Test(request, connect_is_unsupported)
{
	REFUSES("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", RW_UNSUPPORTED_METHOD);
	REFUSES("CONNECT ", RW_UNSUPPORTED_METHOD); /* known from the method alone */
}

Test(request, method_ids)
{
	static const struct {
		const char *raw;
		uint8_t id;
	} cases[] = {
		{ "GET / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_GET },
		{ "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_HEAD },
		{ "POST / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_POST },
		{ "PUT / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_PUT },
		{ "DELETE / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_DELETE },
		{ "PATCH / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_PATCH },
		{ "OPTIONS / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_OPTIONS },
		{ "TRACE / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_TRACE },
		{ "get / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_OTHER },
		{ "PURGE / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_OTHER },
		{ "GETS / HTTP/1.1\r\nHost: h\r\n\r\n", HTTP_M_OTHER },
	};
	static struct http_request r;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		size_t len = strlen(cases[i].raw);
		cr_assert_eq(http1_parse_request(cases[i].raw, len, &limits, &r), (int)len);
		cr_assert_eq(r.method_id, cases[i].id, "%s", cases[i].raw);
	}
}

/* ---- request line ------------------------------------------------------------------------ */

Test(request_line, versions)
{
	static struct http_request r;
	ACCEPTS("GET / HTTP/1.0\r\n\r\n", &r);
	cr_assert_eq(r.minor, 0);
	cr_assert(!r.keep_alive);
	cr_assert_eq(r.host.len, 0);
	ACCEPTS("GET / HTTP/1.7\r\nHost: h\r\n\r\n", &r);
	cr_assert_eq(r.minor, 1);
	ACCEPTS("GET / HTTP/1.9\r\nHost: h\r\n\r\n", &r);
	cr_assert_eq(r.minor, 1);
	/* Well-formed (HTTP-name "/" DIGIT "." DIGIT) but not HTTP/1.x: 505. */
	REFUSES("GET / HTTP/2.0\r\nHost: h\r\n\r\n", RW_BAD_VERSION);
	REFUSES("GET / HTTP/3.0\r\nHost: h\r\n\r\n", RW_BAD_VERSION);
	REFUSES("GET / HTTP/0.9\r\nHost: h\r\n\r\n", RW_BAD_VERSION);
	REFUSES("GET / HTTP/9.9\r\nHost: h\r\n\r\n", RW_BAD_VERSION);
	REFUSES("GET / HTTP/3.0\r\n", RW_BAD_VERSION); /* known at the end of the request line */
	/* Not the grammar at all: a malformed request line, 400 (RFC 9112 §2.3). */
	REFUSES("GET / HTTP/9\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/2\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1.\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1.10\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1.1x\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/2.0x\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/a.b\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1.x\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/x.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/11.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/1,1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / http/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTPS/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET / HTTP/\xd9\xa1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE); /* non-ASCII digit */
	REFUSES("GET / HTTP/1.1 \r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET /\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
}

Test(request_line, exactly_one_space_between_parts)
{
	REFUSES("GET  / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET /  HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES(" GET / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("GET /\tHTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
}

Test(request_line, method_is_a_token)
{
	REFUSES("GE(T / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("G\x01T / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
	REFUSES("\x80GET / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_REQUEST_LINE);
}

Test(request_line, target_bytes)
{
	static struct http_request r;
	REFUSES("GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET /a\x00 HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	REFUSES("GET /a\x1b HTTP/1.1\r\nHost: h\r\n\r\n", RW_BAD_URI);
	ACCEPTS("GET /caf\xc3\xa9?q=\"x\"|{} HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.path, "/caf\xc3\xa9");
}

Test(request_line, leading_empty_lines_are_skipped_and_counted)
{
	static struct http_request r;
	ACCEPTS("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &r);
	assert_slice(r.method, "GET");
	REFUSES("\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	expect_request(RAW("\r\n\r\n"), 0, NULL);
}

/* ---- line endings ------------------------------------------------------------------------ */

Test(line_endings, bare_lf_anywhere_is_refused)
{
	REFUSES("GET / HTTP/1.1\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\n\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\nb\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET /a\nb HTTP/1.1\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET\n/ HTTP/1.1\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nX-A\n: b\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
}

Test(line_endings, bare_cr_anywhere_is_refused)
{
	REFUSES("GET / HTTP/1.1\rHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n", RW_BARE_CR_LF);
	REFUSES("GET / HTTP/1.1\r\n\rHost: h\r\n\r\n", RW_BARE_CR_LF);
}

/* ---- header fields ----------------------------------------------------------------------- */

Test(headers, whitespace_before_colon)
{
	REFUSES("GET / HTTP/1.1\r\nHost : h\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A\t: b\r\n\r\n", RW_BAD_HEADER);
}

Test(headers, name_must_be_a_token)
{
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\n: b\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX(A): b\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX\x00" "A: b\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX\xc3\xa9: b\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-No-Colon\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nContent_Length: 5\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\ntransfer_encoding: chunked\r\n\r\n", RW_BAD_HEADER);
}

Test(headers, value_without_controls)
{
	static struct http_request r;
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00" "b\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x7f\r\n\r\n", RW_BAD_HEADER);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: \x01\r\n\r\n", RW_BAD_HEADER);
	ACCEPTS("GET / HTTP/1.1\r\nHost: h\r\nX-A: \t a\tb \xff\x80 \t\r\n\r\n", &r);
	assert_slice(find_header(&r, "x-a")->value, "a\tb \xff\x80");
}

Test(headers, obs_fold)
{
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", RW_OBS_FOLD);
	REFUSES("GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n\tb\r\n\r\n", RW_OBS_FOLD);
	REFUSES("GET / HTTP/1.1\r\n Host: h\r\n\r\n", RW_OBS_FOLD);
}

static size_t build_many_headers(char *buf, size_t cap, unsigned n)
{
	size_t len = (size_t)snprintf(buf, cap, "GET / HTTP/1.1\r\nHost: h\r\n");
	for (unsigned i = 1; i < n; i++)
		len += (size_t)snprintf(buf + len, cap - len, "X-%u: v\r\n", i);
	len += (size_t)snprintf(buf + len, cap - len, "\r\n");
	return len;
}

Test(headers, at_most_max_headers)
{
	static char buf[4096];
	static struct http_request r;
	size_t len = build_many_headers(buf, sizeof buf, HTTP1_MAX_HEADERS);
	cr_assert_eq(http1_parse_request(buf, len, &limits, &r), (int)len);
	cr_assert_eq(r.nheaders, HTTP1_MAX_HEADERS);

	len = build_many_headers(buf, sizeof buf, HTTP1_MAX_HEADERS + 1);
	cr_assert_eq(check_request_every_split(buf, len, &limits), -RW_HEADERS_TOO_LARGE);
}

Test(headers, known_ids_case_insensitive)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\n"
		"hOST: h\r\n"
		"CONTENT-LENGTH: 0\r\n"
		"connection: keep-alive\r\n"
		"Keep-Alive: timeout=5\r\n"
		"Proxy-Connection: x\r\n"
		"te: trailers\r\n"
		"Trailer: X-Sum\r\n"
		"Upgrade: websocket\r\n"
		"Expect: 100-continue\r\n"
		"X-Forwarded-For: 1.2.3.4\r\n"
		"x-forwarded-proto: https\r\n"
		"X-Forwarded-Host: a\r\n"
		"VIA: 1.1 p\r\n"
		"X-Other: 1\r\n"
		"\r\n",
		&r);
	static const uint8_t ids[] = { HDR_HOST, HDR_CONTENT_LENGTH, HDR_CONNECTION,
				       HDR_KEEP_ALIVE, HDR_PROXY_CONNECTION, HDR_TE, HDR_TRAILER,
				       HDR_UPGRADE, HDR_EXPECT, HDR_X_FORWARDED_FOR,
				       HDR_X_FORWARDED_PROTO, HDR_X_FORWARDED_HOST, HDR_VIA, HDR_OTHER };
	static const bool hop[] = { false, false, true, true, true, true, true,
				    true, false, false, false, false, false, false };
	cr_assert_eq(r.nheaders, 14);
	for (int i = 0; i < 14; i++) {
		cr_assert_eq(r.headers[i].id, ids[i], "header %d", i);
		cr_assert_eq(r.headers[i].hop, hop[i], "header %d", i);
	}
	cr_assert(r.expect_continue);
	cr_assert(r.keep_alive);
}

Test(headers, connection_options_mark_hop_by_hop)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\n"
		"Host: h\r\n"
		"Connection: X-Foo , ,x-bar\r\n"
		"X-Foo: 1\r\n"
		"X-Bar: 2\r\n"
		"X-Baz: 3\r\n"
		"Connection: X-Baz\r\n"
		"Content-Length: 3\r\n"
		"Connection: content-length, host, X-Qux\r\n"
		"\r\n",
		&r);
	cr_assert(find_header(&r, "x-foo")->hop);
	cr_assert(find_header(&r, "x-bar")->hop);
	cr_assert(find_header(&r, "x-baz")->hop, "named in a later Connection line");
	cr_assert(!find_header(&r, "content-length")->hop, "the proxy frames the body itself");
	cr_assert(!find_header(&r, "host")->hop);
	cr_assert(r.keep_alive);
}

Test(headers, keep_alive_from_version_and_connection)
{
	static struct http_request r;
	ACCEPTS("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n", &r);
	cr_assert(!r.keep_alive);
	ACCEPTS("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n", &r);
	cr_assert(!r.keep_alive);
	ACCEPTS("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", &r);
	cr_assert(r.keep_alive);
	ACCEPTS("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", &r);
	cr_assert(!r.keep_alive);
	ACCEPTS("GET / HTTP/1.0\r\n\r\n", &r);
	cr_assert(!r.keep_alive);
}

/* ---- Content-Length and Transfer-Encoding ------------------------------------------------ */

Test(framing, content_length_values)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &r);
	cr_assert_eq(r.content_length, 0);
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:  007 \r\n\r\n", &r);
	cr_assert_eq(r.content_length, 7);
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387904\r\n\r\n", &r);
	cr_assert_eq(r.content_length, INT64_C(1) << 62);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4611686018427387905\r\n\r\n",
		RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1,1\r\n\r\n", RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 1\r\n\r\n", RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x10\r\n\r\n", RW_BAD_CONTENT_LENGTH);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", RW_BAD_CONTENT_LENGTH);
}

Test(framing, duplicate_content_length)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\ncontent-length: 05\r\n\r\n", &r);
	cr_assert_eq(r.content_length, 5);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		RW_DUPLICATE_CONTENT_LENGTH);
}

Test(framing, transfer_encoding_chunked_only)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &r);
	cr_assert(r.chunked);
	cr_assert_eq(r.content_length, -1);
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding:  ChUnKeD \r\n\r\n", &r);
	cr_assert(r.chunked);
	cr_assert(!find_header(&r, "transfer-encoding")->hop);
	static const char *const refused[] = {
		"gzip", "identity", "", "chunked, chunked", "gzip, chunked", "chunked, gzip",
		"chunked;q=1", "chunked,", "xchunked", "chunk",
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		char buf[256];
		int len = snprintf(buf, sizeof buf,
				   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: %s\r\n\r\n",
				   refused[i]);
		cr_assert_eq(check_request_every_split(buf, (size_t)len, &limits),
			     -RW_BAD_TRANSFER_ENCODING, "Transfer-Encoding: %s", refused[i]);
	}
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
		"Transfer-Encoding: chunked\r\n\r\n",
		RW_BAD_TRANSFER_ENCODING);
}

Test(framing, transfer_encoding_in_http10)
{
	REFUSES("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", RW_BAD_TRANSFER_ENCODING);
}

Test(framing, content_length_with_transfer_encoding)
{
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		RW_CONTENT_LENGTH_WITH_TE);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
		RW_CONTENT_LENGTH_WITH_TE);
}

/* ---- Host, Expect ------------------------------------------------------------------------ */

Test(host, required_once_in_http11)
{
	REFUSES("GET / HTTP/1.1\r\n\r\n", RW_BAD_HOST);
	REFUSES("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", RW_BAD_HOST);
	REFUSES("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", RW_BAD_HOST);
}

Test(host, value_syntax)
{
	static const char *const good[] = {
		"example.com", "example.com:8080", "[::1]", "[2001:db8::1]:443", "127.0.0.1:80",
		"a-b_c~d.e", "%41bc", "x!$&'()*+,;=",
	};
	static const char *const bad[] = {
		"", "a b", "user@h", "h:", "h:123456", "h:8a", "[::1", "[]", "[g::1]", "%4", "%zz",
		"h/x", "h:80:80", ":80", "h?",
	};
	static struct http_request r;
	char buf[256];
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
		int len = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", good[i]);
		cr_assert_eq(check_request_every_split(buf, (size_t)len, &limits), len, "Host: %s",
			     good[i]);
		http1_parse_request(buf, (size_t)len, &limits, &r);
		assert_slice(r.host, good[i]);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		int len = snprintf(buf, sizeof buf, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", bad[i]);
		cr_assert_eq(check_request_every_split(buf, (size_t)len, &limits), -RW_BAD_HOST,
			     "Host: %s", bad[i]);
	}
}

Test(expect, only_100_continue)
{
	static struct http_request r;
	ACCEPTS("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n", &r);
	cr_assert(r.expect_continue);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", RW_BAD_EXPECT);
	REFUSES("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\n\r\n", RW_BAD_EXPECT);
	ACCEPTS("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", &r);
	cr_assert(!r.expect_continue, "ignored in HTTP/1.0 (RFC 9110 10.1.1)");
}

/* ---- limits, incomplete input, pipelining ------------------------------------------------ */

Test(limits, head_limit_complete_or_not)
{
	static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: 0123456789\r\n\r\n";
	size_t len = sizeof raw - 1;
	struct http_head_limits lim = { .max_head_bytes = (uint32_t)len, .max_uri_bytes = 64 };
	static struct http_request r;

	cr_assert_eq(check_request_every_split(raw, len, &lim), (int)len, "exactly at the limit");
	lim.max_head_bytes = (uint32_t)len - 1;
	cr_assert_eq(check_request_every_split(raw, len, &lim), -RW_HEADERS_TOO_LARGE);
	/* still incomplete, but already past the limit */
	lim.max_head_bytes = 20;
	cr_assert_eq(http1_parse_request(raw, 21, &lim, &r), -RW_HEADERS_TOO_LARGE);
	cr_assert_eq(http1_parse_request(raw, 20, &lim, &r), 0);
}

Test(limits, leading_empty_lines_count_toward_the_head)
{
	static const char raw[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
	struct http_head_limits lim = { .max_head_bytes = sizeof raw - 2, .max_uri_bytes = 64 };
	cr_assert_eq(check_request_every_split(raw, sizeof raw - 1, &lim), -RW_HEADERS_TOO_LARGE);
}

Test(limits, uri_limit_complete_or_not)
{
	struct http_head_limits lim = { .max_head_bytes = 8192, .max_uri_bytes = 8 };
	static struct http_request r;

	cr_assert_eq(check_request_every_split(RAW("GET /2345678 HTTP/1.1\r\nHost: h\r\n\r\n"), &lim),
		     34);
	cr_assert_eq(check_request_every_split(RAW("GET /23456789 HTTP/1.1\r\nHost: h\r\n\r\n"), &lim),
		     -RW_URI_TOO_LONG);
	/* the request line is not complete yet */
	cr_assert_eq(http1_parse_request(RAW("GET /23456789"), &lim, &r), -RW_URI_TOO_LONG);
	cr_assert_eq(http1_parse_request(RAW("GET /2345678"), &lim, &r), 0);
	cr_assert_eq(reason_status(RW_URI_TOO_LONG), 414);
	cr_assert_eq(reason_status(RW_HEADERS_TOO_LARGE), 431);
}

Test(limits, request_line_longer_than_the_head_limit_is_414)
{
	/* max_uri_bytes may equal max_head_bytes: a target that fills the head is still a long URI */
	struct http_head_limits lim = { .max_head_bytes = 32, .max_uri_bytes = 32 };
	static struct http_request r;
	static const char line[] = "GET /aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	cr_assert_eq(http1_parse_request(line, sizeof line - 1, &lim, &r), -RW_URI_TOO_LONG);
	static const char heads[] = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: aaaaaaaaaaaaaaaaaaaa";
	cr_assert_eq(http1_parse_request(heads, sizeof heads - 1, &lim, &r), -RW_HEADERS_TOO_LARGE);
}

Test(limits, incomplete_valid_prefixes_need_more)
{
	static const char *const prefixes[] = {
		"", "G", "GET", "GET ", "GET /a", "GET /a ", "GET /a HTTP/1.", "GET /a HTTP/1.1\r",
		"GET /a HTTP/1.1\r\nHost", "GET /a HTTP/1.1\r\nHost: h", "GET /a HTTP/1.1\r\nHost: h\r",
		"GET /a HTTP/1.1\r\nHost: h\r\n", "GET /a HTTP/1.1\r\nHost: h\r\n\r",
	};
	static struct http_request r;
	for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
		cr_assert_eq(http1_parse_request(prefixes[i], strlen(prefixes[i]), &limits, &r), 0,
			     "\"%s\"", prefixes[i]);
}

Test(limits, pipelined_request_is_not_part_of_the_head)
{
	static const char raw[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n";
	static struct http_request r;
	int first = http1_parse_request(raw, sizeof raw - 1, &limits, &r);
	cr_assert_eq(first, 28);
	cr_assert_eq(r.head_len, 28);
	assert_slice(r.path, "/a");
	cr_assert_eq(http1_parse_request(raw + first, sizeof raw - 1 - (size_t)first, &limits, &r), 28);
	assert_slice(r.path, "/b");
	cr_assert_eq(check_request_every_split(raw, sizeof raw - 1, &limits), 28);
}

/* ---- responses --------------------------------------------------------------------------- */

static int check_response_every_split(const char *raw, size_t len, uint32_t max_head)
{
	static struct http_response whole, part;
	char *all = malloc(len ? len : 1);
	memcpy(all, raw, len);
	int expected = http1_parse_response(all, len, max_head, &whole);
	bool decided = false;

	for (size_t k = 0; k <= len; k++) {
		char *prefix = malloc(k ? k : 1);
		memcpy(prefix, raw, k);
		int rc = http1_parse_response(prefix, k, max_head, &part);
		if (rc == 0) {
			cr_assert(!decided, "prefix of %zu bytes went back to 0", k);
		} else {
			cr_assert_eq(rc, expected, "prefix of %zu bytes: %d, whole: %d", k, rc, expected);
			decided = true;
		}
		if (rc > 0) {
			cr_assert_eq(part.status, whole.status);
			cr_assert_eq(part.chunked, whole.chunked);
			cr_assert_eq(part.content_length, whole.content_length);
			cr_assert_eq(part.keep_alive, whole.keep_alive);
			cr_assert_eq(part.nheaders, whole.nheaders);
			assert_same_slice(part.reason_phrase, prefix, whole.reason_phrase, all,
					  "reason", k);
		}
		free(prefix);
	}
	free(all);
	return expected;
}

static void expect_response(const char *raw, size_t len, int expected, struct http_response *out)
{
	int rc = check_response_every_split(raw, len, 8192);
	cr_assert_eq(rc, expected == ACCEPT ? (int)len : expected, "got %d for: %.*s", rc,
		     (int)len, raw);
	if (out)
		http1_parse_response(raw, len, 8192, out);
}

#define RESP_ACCEPTS(s, out) expect_response(RAW(s), ACCEPT, out)
#define RESP_REFUSES(s) expect_response(RAW(s), -RW_UPSTREAM_BAD_RESPONSE, NULL)

Test(response, status_line)
{
	static struct http_response r;
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", &r);
	cr_assert_eq(r.status, 200);
	cr_assert_eq(r.minor, 1);
	cr_assert_eq(r.content_length, 5);
	cr_assert(!r.chunked);
	cr_assert(r.keep_alive);
	assert_slice(r.reason_phrase, "OK");
	RESP_ACCEPTS("HTTP/1.1 404 Not \tFound \xe9\r\n\r\n", &r);
	assert_slice(r.reason_phrase, "Not \tFound \xe9");
	RESP_ACCEPTS("HTTP/1.1 204 \r\n\r\n", &r);
	cr_assert_eq(r.reason_phrase.len, 0);
	RESP_ACCEPTS("HTTP/1.1 304\r\nETag: \"x\"\r\n\r\n", &r);
	cr_assert_eq(r.status, 304);
	RESP_ACCEPTS("HTTP/1.0 200 OK\r\n\r\n", &r);
	cr_assert_eq(r.minor, 0);
	cr_assert(!r.keep_alive);
	RESP_ACCEPTS("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", &r);
	cr_assert(r.keep_alive);
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", &r);
	cr_assert(!r.keep_alive);
}

Test(response, malformed_status_line)
{
	RESP_REFUSES("HTTP/2 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/2.0 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/9 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.10 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/a.b 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.1x 200 OK\r\n\r\n");
	RESP_REFUSES("http/1.1 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/0.9 200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 20 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 2000 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 099 Low\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 600 High\r\n\r\n");
	RESP_REFUSES("HTTP/1.1  200 OK\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 O\x01K\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\rX\r\n\r\n");
	RESP_REFUSES("ICY 200 OK\r\n\r\n");
}

Test(response, header_rules)
{
	RESP_REFUSES("HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nX-A: b\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nX-A: b\x00\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nX@A: b\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nContent-Length: 1,1\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 1\r\n\r\n");
}

Test(response, transfer_codings)
{
	static struct http_response r;
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &r);
	cr_assert(r.chunked);
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
		     "Transfer-Encoding: Chunked\r\n\r\n",
		     &r);
	cr_assert(r.chunked);
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r);
	cr_assert(r.chunked);
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &r);
	cr_assert(!r.chunked, "chunked not last: close-delimited");
	cr_assert_eq(r.content_length, -1);
	RESP_ACCEPTS("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", &r);
	cr_assert(!r.chunked);
	cr_assert_eq(r.content_length, -1);
	RESP_REFUSES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
		     "Transfer-Encoding: chunked\r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n");
	RESP_REFUSES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip x\r\n\r\n");
}

Test(response, limits_and_incomplete)
{
	static struct http_response r;
	static const char raw[] = "HTTP/1.1 200 OK\r\nServer: x\r\n\r\n";
	cr_assert_eq(http1_parse_response(raw, sizeof raw - 1, sizeof raw - 1, &r), (int)sizeof raw - 1);
	cr_assert_eq(http1_parse_response(raw, sizeof raw - 1, sizeof raw - 2, &r),
		     -RW_UPSTREAM_BAD_RESPONSE);
	cr_assert_eq(http1_parse_response(raw, 20, 8192, &r), 0);
	cr_assert_eq(http1_parse_response(raw, 20, 10, &r), -RW_UPSTREAM_BAD_RESPONSE);
}

Test(response, has_no_body)
{
	cr_assert(http1_response_has_no_body(HTTP_M_HEAD, 200));
	cr_assert(http1_response_has_no_body(HTTP_M_GET, 100));
	cr_assert(http1_response_has_no_body(HTTP_M_GET, 101));
	cr_assert(http1_response_has_no_body(HTTP_M_POST, 204));
	cr_assert(http1_response_has_no_body(HTTP_M_GET, 304));
	cr_assert(!http1_response_has_no_body(HTTP_M_GET, 200));
	cr_assert(!http1_response_has_no_body(HTTP_M_POST, 404));
	cr_assert(!http1_response_has_no_body(HTTP_M_GET, 205));
}

/* ---- chunk_scan -------------------------------------------------------------------------- */

struct chunk_result {
	ssize_t consumed; /* total consumed, or the error */
	bool done;
	uint64_t data_bytes;
};

/* Scans raw[0..len) delivered as pieces cut at the given points (ascending). */
static struct chunk_result scan_pieces(const char *raw, size_t len, const size_t *cuts,
				       size_t ncuts)
{
	struct chunk_scanner s = { 0 };
	struct chunk_result res = { 0, false, 0 };
	size_t from = 0;

	for (size_t i = 0; i <= ncuts; i++) {
		size_t to = i < ncuts ? cuts[i] : len;
		char *piece = malloc(to - from ? to - from : 1);
		memcpy(piece, raw + from, to - from);
		ssize_t n = chunk_scan(&s, piece, to - from, &res.done);
		free(piece);
		if (n < 0) {
			res.consumed = n;
			return res;
		}
		cr_assert_leq((size_t)n, to - from);
		res.consumed += n;
		res.data_bytes = s.data_bytes;
		if (res.done || (size_t)n < to - from)
			return res;
		from = to;
	}
	return res;
}

/* The result of the whole input must be the one of every two-piece split and of byte-at-a-time. */
static struct chunk_result check_chunks_every_split(const char *raw, size_t len)
{
	struct chunk_result whole = scan_pieces(raw, len, NULL, 0);

	for (size_t k = 0; k <= len; k++) {
		struct chunk_result r = scan_pieces(raw, len, &k, 1);
		cr_assert_eq(r.consumed, whole.consumed, "split at %zu: %zd vs %zd", k, r.consumed,
			     whole.consumed);
		cr_assert_eq(r.done, whole.done, "split at %zu", k);
		if (whole.consumed >= 0)
			cr_assert_eq(r.data_bytes, whole.data_bytes, "split at %zu", k);
	}
	size_t *cuts = malloc((len ? len : 1) * sizeof *cuts);
	for (size_t i = 0; i < len; i++)
		cuts[i] = i;
	struct chunk_result bytewise = scan_pieces(raw, len, cuts, len);
	free(cuts);
	cr_assert_eq(bytewise.consumed, whole.consumed, "byte at a time");
	cr_assert_eq(bytewise.done, whole.done, "byte at a time");
	return whole;
}

static void expect_chunks(const char *raw, size_t len, ssize_t consumed, bool done, uint64_t data)
{
	struct chunk_result r = check_chunks_every_split(raw, len);
	cr_assert_eq(r.consumed, consumed, "consumed %zd, want %zd: %.*s", r.consumed, consumed,
		     (int)len, raw);
	cr_assert_eq(r.done, done);
	if (consumed >= 0)
		cr_assert_eq(r.data_bytes, data);
}

#define CHUNKS_OK(s, data) expect_chunks(RAW(s), (ssize_t)(sizeof(s) - 1), true, data)
#define CHUNKS_BAD(s) expect_chunks(RAW(s), -RW_BAD_CHUNK, false, 0)

Test(chunked, valid_bodies)
{
	CHUNKS_OK("0\r\n\r\n", 0);
	CHUNKS_OK("5\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_OK("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 11);
	CHUNKS_OK("A\r\n0123456789\r\na\r\n0123456789\r\n000\r\n\r\n", 20);
	CHUNKS_OK("00005\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_OK("4\r\n\r\n\r\n\r\n0\r\n\r\n", 4); /* data may hold CRLF */
}

Test(chunked, extensions)
{
	CHUNKS_OK("5;a\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_OK("5;a=b;c=\"d e\\\"f\"\r\nhello\r\n0;last\r\n\r\n", 5);
	CHUNKS_OK("5 ; a = b \t; c\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_OK("5;a=\"\"\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_OK("5;a;b=c;d\r\nhello\r\n0\r\n\r\n", 5);
	CHUNKS_BAD("5;\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;=b\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a=\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a b\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a=\"b\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a=\"b\"c\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a=b\x01\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5;a=\"\x7f\"\r\nhello\r\n0\r\n\r\n");
}

Test(chunked, trailers)
{
	CHUNKS_OK("5\r\nhello\r\n0\r\nX-Sum: abc\r\nX-B:\r\n\r\n", 5);
	CHUNKS_BAD("5\r\nhello\r\n0\r\nX-Sum : abc\r\n\r\n");
	CHUNKS_BAD("5\r\nhello\r\n0\r\nX-Sum: abc\r\n folded\r\n\r\n");
	CHUNKS_BAD("5\r\nhello\r\n0\r\n: abc\r\n\r\n");
	CHUNKS_BAD("5\r\nhello\r\n0\r\nX-Sum: a\x00\r\n\r\n");
	CHUNKS_BAD("5\r\nhello\r\n0\r\nX-Sum: a\n\r\n");
	CHUNKS_BAD("5\r\nhello\r\n0\r\nX-Sum: a\r\n\n");
}

Test(chunked, trailer_section_is_bounded)
{
	static char buf[20000];
	size_t len = (size_t)snprintf(buf, sizeof buf, "0\r\n");
	while (len < 17000)
		len += (size_t)snprintf(buf + len, sizeof buf - len, "X-Pad: 0123456789abcdef\r\n");
	len += (size_t)snprintf(buf + len, sizeof buf - len, "\r\n");
	struct chunk_scanner s = { 0 };
	bool done;
	cr_assert_eq(chunk_scan(&s, buf, len, &done), -RW_BAD_CHUNK);
}

Test(chunked, malformed_framing)
{
	CHUNKS_BAD("5\nhello\r\n0\r\n\r\n");             /* bare LF after size */
	CHUNKS_BAD("5\rhello\r\n0\r\n\r\n");             /* bare CR after size */
	CHUNKS_BAD("5\r\nhelloX\r\n0\r\n\r\n");          /* no CRLF after data */
	CHUNKS_BAD("5\r\nhello\n0\r\n\r\n");             /* bare LF after data */
	CHUNKS_BAD("5\r\nhello\r\r\n0\r\n\r\n");
	CHUNKS_BAD("x\r\nhello\r\n0\r\n\r\n");           /* not hex */
	CHUNKS_BAD("0x5\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("-5\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("+5\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("\r\nhello\r\n0\r\n\r\n");            /* empty size */
	CHUNKS_BAD(" 5\r\nhello\r\n0\r\n\r\n");
	CHUNKS_BAD("5 \r\nhello\r\n0\r\n\r\n");          /* BWS only before ';' */
	CHUNKS_BAD("0\r\n\n");                          /* bare LF at the end */
	CHUNKS_BAD("0\r\n\r\r");
	CHUNKS_BAD("1000000000000000\r\n");             /* 16 hex digits */
}

Test(chunked, size_limits)
{
	/* 15 hex digits are accepted: the scanner then waits for that much data */
	expect_chunks(RAW("fffffffffffffff\r\nabc"), 20, false, 3);

	static char line[5000];
	memset(line, '0', sizeof line);
	line[0] = '5';
	line[1] = ';';
	line[2] = 'a';
	line[3] = '=';
	struct chunk_scanner s = { 0 };
	bool done;
	memcpy(line + 4095, "\r\n", 2); /* 4095 bytes before CRLF: fine */
	cr_assert_eq(chunk_scan(&s, line, 4097, &done), 4097);
	memset(&s, 0, sizeof s);
	line[4095] = '0';
	line[4096] = '0';
	memcpy(line + 4097, "\r\n", 2); /* 4097 bytes: too long */
	cr_assert_eq(chunk_scan(&s, line, 4099, &done), -RW_BAD_CHUNK);
}

Test(chunked, incomplete_is_not_done)
{
	expect_chunks(RAW("5\r\nhel"), 6, false, 3);
	expect_chunks(RAW("5\r\nhello\r\n0\r\n"), 13, false, 5);
	expect_chunks(RAW("5\r\nhello\r\n0\r\n\r"), 14, false, 5);
	expect_chunks(RAW("5\r\nhello\r\n0\r\nX-A: b\r\n"), 21, false, 5);
}

Test(chunked, stops_after_the_final_crlf)
{
	static const char raw[] = "5\r\nhello\r\n0\r\nX: y\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
	expect_chunks(raw, sizeof raw - 1, 21, true, 5);
	struct chunk_scanner s = { 0 };
	bool done = false;
	cr_assert_eq(chunk_scan(&s, raw, sizeof raw - 1, &done), 21);
	cr_assert(done);
	cr_assert_eq(chunk_scan(&s, raw + 21, sizeof raw - 22, &done), 0, "nothing more is consumed");
	cr_assert(done);
	static struct http_request r;
	cr_assert_eq(http1_parse_request(raw + 21, sizeof raw - 22, &limits, &r), (int)sizeof raw - 22);
}

Test(chunked, big_chunk_across_pieces)
{
	static char buf[70000];
	size_t len = (size_t)snprintf(buf, sizeof buf, "10000\r\n");
	memset(buf + len, 'x', 0x10000);
	len += 0x10000;
	len += (size_t)snprintf(buf + len, sizeof buf - len, "\r\n0\r\n\r\nNEXT");
	size_t cuts[] = { 3, 100, 30000, 65543, 65544, 65546 };
	struct chunk_result r = scan_pieces(buf, len, cuts, sizeof cuts / sizeof cuts[0]);
	cr_assert_eq(r.consumed, (ssize_t)len - 4);
	cr_assert(r.done);
	cr_assert_eq(r.data_bytes, 0x10000);
}

/* ---- request-smuggling corpus ------------------------------------------------------------
 * Derived from the YAML files of aws/http-desync-guardian (Apache-2.0), copied here as raw bytes
 * so the test needs nothing outside the repository. Each YAML case became "METHOD SP uri
 * [SP version] CRLF", then "Host: example.com" when the case has no Host of its own (HTTP/1.1 requires one;
 * without it every case would be refused for that reason alone), then "name: value CRLF" per
 * header and the final CRLF. YAML characters below U+0100 are single bytes, others UTF-8.
 *
 * Expectations (the `why` column says the reason for each):
 * - every Severe case is refused (checked for the whole table below);
 * - an Ambiguous case is refused, or accepted only where its framing has a single reading for any
 *   RFC 9112 recipient: identical duplicate Content-Length values, a Content-Length or chunked body
 *   on GET/HEAD (framing does not depend on the method, and the gateway forwards that same framing),
 *   and names such as "Transfer---Encoding" that are valid tokens with no framing meaning. The '_'
 *   lookalikes "Transfer_Encoding"/"Content_Length" are refused: CGI-style upstreams fold '_'
 *   and '-' together and could read them as framing;
 * - Compliant/Acceptable cases that the gateway refuses show where it is stricter than the corpus:
 *   only "chunked" alone as a request coding, no control byte anywhere, no whitespace before a
 *   colon, no fragment or empty target, HTTP/1.x only. */
enum tier { COMPLIANT, ACCEPTABLE, AMBIGUOUS, SEVERE };

struct desync_case {
	const char *file;
	const char *name;
	enum tier tier;
	int expect;             /* -reason, or ACCEPT */
	int64_t content_length; /* when accepted */
	bool chunked;           /* when accepted */
	const char *why;
	const char *raw;
	size_t len;
};

static const struct desync_case desync_cases[] = {
	{ "acceptable", "No TE/CL headers, some others are non-compliant", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "x-my-custom-header : some value\r\n"
	      "x-my-second-custom-header: some value\r\n"
	      "\r\n") },
	{ "acceptable", "TE and some others are non-compliant", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "x-my-custom-header : some value\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "acceptable", "A non-essential header with a non-printable character (x01)", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001x-my-custom-header: some value\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "acceptable", "CL and some others are non-compliant", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "x-my-custom-header : some value\r\n"
	      "Content-Length: 10000\r\n"
	      "\r\n") },
	{ "acceptable", "Get with a body and Content-Length:0", ACCEPTABLE, ACCEPT, 0, false,
	  "CL 0 on GET: no body, same for everyone",
	  RAW("GET /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 0\r\n"
	      "\r\n") },
	{ "acceptable", "Get with a body and Content-Length:0", ACCEPTABLE, ACCEPT, 0, false,
	  "CL 0 on HEAD: no body, same for everyone",
	  RAW("HEAD /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 0\r\n"
	      "\r\n") },
	{ "acceptable", "Non-RFC, but OK HTTP/0.9", ACCEPTABLE, -RW_BAD_VERSION, 0, false,
	  "only HTTP/1.x is spoken",
	  RAW("GET /foo/bar HTTP/0.9\r\n"
	      "Host: example.com\r\n"
	      "X-My-Header: some value\r\n"
	      "\r\n") },
	{ "acceptable", "Empty version, which means HTTP/0.9", ACCEPTABLE, -RW_BAD_REQUEST_LINE, 0, false,
	  "HTTP/0.9 request line without version",
	  RAW("GET /foo/bar\r\n"
	      "Host: example.com\r\n"
	      "X-My-Header: some value\r\n"
	      "\r\n") },
	{ "acceptable", "Unknown but OK HTTP/1.2", ACCEPTABLE, ACCEPT, -1, false,
	  "HTTP/1.x with another minor is spoken as 1.1",
	  RAW("GET /foo/bar HTTP/1.2\r\n"
	      "Host: example.com\r\n"
	      "X-My-Header: some value\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with a trailing space in name", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding : chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with a trailing tab in name", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding\t: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "\\x01Transfer-Encoding with a non-printable character", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "\\x01\\x01Transfer-Encoding with a non-printable character", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001\001Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "\\x01\\x01Content-Length with a non-printable character", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001\001Content-Length: 1\r\n"
	      "\r\n") },
	{ "ambiguous", "\\x01Content-Length with a non-printable character", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001Content-Length: 1\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with a space in the middle", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "SP inside a field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer- Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer_Encoding with underscore.", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "'_' lookalike of a framing header: CGI-style upstreams read it as Transfer-Encoding",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer_Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Content_Length with underscore.", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "'_' lookalike of a framing header: CGI-style upstreams read it as Content-Length",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content_Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Duplicate Content-Length", AMBIGUOUS, ACCEPT, 1000, false,
	  "identical values: every reader sees length 1000 (RFC 9112 6.3 allows accepting)",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Both Transfer-Encoding:chunked and Content-Length", AMBIGUOUS, -RW_CONTENT_LENGTH_WITH_TE, 0, false,
	  "CL with TE is refused, never guessed",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "ambiguous", "Both Transfer-Encoding and Content-Length", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "gzip is not accepted as a request coding",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: gzip\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "ambiguous", "Get with a body and Content-Length", AMBIGUOUS, ACCEPT, 1000, false,
	  "CL frames a body for every method (RFC 9112 6.3); forwarded with that same CL",
	  RAW("GET /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Get with a body and Transfer-Encoding", AMBIGUOUS, ACCEPT, -1, true,
	  "chunked frames a body for every method; forwarded chunked",
	  RAW("GET /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Head with a body and Content-Length", AMBIGUOUS, ACCEPT, 1000, false,
	  "CL frames a body for every method; forwarded with that same CL",
	  RAW("HEAD /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Head with a body and Transfer-Encoding", AMBIGUOUS, ACCEPT, -1, true,
	  "chunked frames a body for every method; forwarded chunked",
	  RAW("HEAD /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding[white-space] and Content-Length", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding : chunked\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "[white-space]Transfer-Encoding and Content-Length", AMBIGUOUS, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      " Transfer-Encoding: chunked\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "[white-space]Transfer-Encoding and [white-space]Content-Length", AMBIGUOUS, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      " Transfer-Encoding: chunked\r\n"
	      " Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding[white-space] and Content-Length[white-space]", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding : chunked\r\n"
	      "Content-Length : 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Empty header name", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "field name must be 1*tchar",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      ": chunked\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Header name starts with :", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "field name must be 1*tchar",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      ":SomeHeader:Transfer-Encoding:: chunked\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Only white-spaces header name", AMBIGUOUS, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "   \t\t  : chunked\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding for HTTP/1.0", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "TE is undefined in HTTP/1.0",
	  RAW("POST /foo/bar HTTP/1.0\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding for HTTP/0.9", AMBIGUOUS, -RW_BAD_VERSION, 0, false,
	  "only HTTP/1.x is spoken",
	  RAW("POST /foo/bar HTTP/0.9\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Content-Length for HTTP/0.9", AMBIGUOUS, -RW_BAD_VERSION, 0, false,
	  "only HTTP/1.x is spoken",
	  RAW("POST /foo/bar HTTP/0.9\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding for empty protocol, which is HTTP/0.9", AMBIGUOUS, -RW_BAD_REQUEST_LINE, 0, false,
	  "request line without version",
	  RAW("POST /foo/bar\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Content-Length for empty protocol, which is HTTP/0.9", AMBIGUOUS, -RW_BAD_REQUEST_LINE, 0, false,
	  "request line without version",
	  RAW("POST /foo/bar\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding Latin Small Letter Long S", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name (UTF-8)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Tran\305\277fer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding Latin Small Letter Dotless I", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name (UTF-8)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encod\304\261ng: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with multiple hyphens", AMBIGUOUS, ACCEPT, -1, false,
	  "a valid token naming an unknown field: no framing meaning anywhere, no body",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer---Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with multiple delimiters", AMBIGUOUS, ACCEPT, -1, false,
	  "a valid token naming an unknown field: no framing meaning anywhere, no body",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer___Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with UTF8 spaces", AMBIGUOUS, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "   Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Content-Length with UTF8 spaces", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length   : 1000\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with a UTF8 delimiter", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name (UTF-8)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer\342\200\225Encoding: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Transfer-Encoding with arbitrary non-ASCII chars", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding\210: chunked\r\n"
	      "\r\n") },
	{ "ambiguous", "Content-Length with arbitrary non-ASCII chars", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\240Content-Length: 100\r\n"
	      "\r\n") },
	{ "bad-header-characters", "\\x01Transfer-Encoding", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\r\n"
	      "\001Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Transfer-Encoding: \\x01chunked", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: \001chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Transfer-Encoding: chunked\\x01", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\001\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Transfer-Encoding: \\xa0chunked", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "obs-text is a valid value byte, but the value is not \"chunked\"",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: \240chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Transfer-Encoding: chunked\\xa0", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "obs-text is a valid value byte, but the value is not \"chunked\"",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\240\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Transfer-Encoding\\x01", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\r\n"
	      "Transfer-Encoding\001: chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "\\x01Content-Length", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\r\n"
	      "\001Content-Length: 1000\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Content-Length\\x01", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\r\n"
	      "Content-Length\001: 1000\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Content-Length: \\x01 1000", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: \0011000\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Content-Length: 1000\\x01 ", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\001\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Content-Length: 1000\\xa0", SEVERE, -RW_BAD_CONTENT_LENGTH, 0, false,
	  "CL is 1*DIGIT",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\240\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Some-Header\\x01", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header\001: Non-Rfc Compliant\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "\\x01Some-Header", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\001Some-Custom-Header: Non-Rfc Compliant\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Some-Header: \\x01value", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: \001Non-Rfc Compliant\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "bad-header-characters", "Some-Header: value\\x01", ACCEPTABLE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\001\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "edge-cases", "Bad non-essential header does not shadow bad Content-Length", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value (first violation wins)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\022\r\n"
	      "Content-Length: 1000\021\r\n"
	      "\r\n") },
	{ "edge-cases", "Bad non-essential header does not shadow bad Transfer-Encoding", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value (first violation wins)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non-Rfc Compliant\021\r\n"
	      "Transfer-Encoding: chunked\177\r\n"
	      "\r\n") },
	{ "edge-cases", "Non-compliant character does not shadow bad character", SEVERE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header\t: \021\022 But then \000 which is bad\r\n"
	      "Transfer-Encoding\t: chunked\r\n"
	      "\r\n") },
	{ "edge-cases", "Non-compliant customer header does not shadow ambiguous Transfer-Encoding for GET", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("GET /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non Rfc -Compliant\001\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "edge-cases", "Non-compliant customer header does not shadow ambiguous Content-Length for HEAD", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("HEAD /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non Rfc Compliant\001\r\n"
	      "Content-Length: 9000\r\n"
	      "\r\n") },
	{ "edge-cases", "Bad header does not shadow other bad headers", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: \021Rfc Compliant\r\n"
	      "Transfer-Encoding: chunked\200\r\n"
	      "Content-Length: $9000\r\n"
	      "\r\n") },
	{ "edge-cases", "Bad URI does not shadow essential bad headers", SEVERE, -RW_BAD_HEADER, 0, false,
	  "the URI holds a literal backslash (allowed); then a control byte in a value",
	  RAW("POST /foo/bar\\t/baz HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: \021Rfc Compliant\r\n"
	      "Transfer-Encoding: chunked\200\r\n"
	      "Content-Length: $9000\r\n"
	      "\r\n") },
	{ "edge-cases", "Bad URI does not shadow essential ambiguous headers", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "the URI holds a literal backslash (allowed); then a control byte in a value",
	  RAW("GET /foo/bar\\t/baz HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Custom-Header: Non Rfc -Compliant\001\r\n"
	      "Content-Length: 9000\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Has a CL in PUT OK", COMPLIANT, ACCEPT, 22220, false,
	  "valid, OWS around the CL value is trimmed",
	  RAW("PUT /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  22220  \r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Very many headers", COMPLIANT, ACCEPT, 22220, false,
	  "valid",
	  RAW("PUT /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  22220  \r\n"
	      "Header-Name-1: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-2: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-3: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-4: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-5: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-6: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-7: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-8: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-9: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-10: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-11: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-12: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-13: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-14: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-15: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-16: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-17: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-18: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-19: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-20: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-21: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-22: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-23: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-24: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-25: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-26: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-27: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-28: Header-Value-Some-Ok-String\r\n"
	      "Header-Name-29: Header-Value-Some-Ok-String\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Has a TE in PUT OK", COMPLIANT, ACCEPT, -1, true,
	  "valid",
	  RAW("PUT /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "HTTP Version.1.1 OK", COMPLIANT, ACCEPT, -1, true,
	  "valid",
	  RAW("POST /test.html?a=b&b=c&%dd=%ee HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Correct CL OK", COMPLIANT, ACCEPT, 5, false,
	  "valid",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  5\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Correct TE OK", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  gzip, chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Large Size OK", COMPLIANT, ACCEPT, 4000000, false,
	  "valid",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  4000000\r\n"
	      "X-test: Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Transfer-Encoding: identity and chunked OK", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  deflate, identity, chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "Multiple transfer encoding headers in a single request OK", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  gzip\r\n"
	      "Transfer-Encoding:  deflate\r\n"
	      "Transfer-Encoding:  identity\r\n"
	      "Transfer-Encoding:  compress\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "more-compliant-tests", "TE with custom parameters OK", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked takes no parameters",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  \t\t\t\tchunked;custom_param;\t\t\t\t\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Has a CL in GET", AMBIGUOUS, ACCEPT, 22, false,
	  "CL frames a body for every method; forwarded with that same CL",
	  RAW("GET /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  22\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Has a TE in GET", AMBIGUOUS, ACCEPT, -1, true,
	  "chunked frames a body for every method; forwarded chunked",
	  RAW("GET /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "HTTP Version.1.0 and TE", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "TE is undefined in HTTP/1.0",
	  RAW("POST /test.html HTTP/1.0\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Two Identical Fields - CL", AMBIGUOUS, ACCEPT, 5, false,
	  "identical values: every reader sees length 5",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  5\r\n"
	      "Content-Length:  5\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Two Identical Fields - TE", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked twice",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Chunks Priority on Content-Length", AMBIGUOUS, -RW_CONTENT_LENGTH_WITH_TE, 0, false,
	  "CL with TE is refused",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  4\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Null in Headers", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Bad-Accept-Encoding:  gzip, \000deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "CRLF", SEVERE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  4\r\n"
	      "\000Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Size Issue", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR inside a value",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  4\r\n"
	      "X-test:  x\rTransfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Transfer-Encoding[tab]: chunked", AMBIGUOUS, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding\t:  chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "\\rTransfer-Encoding: chunked", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR at the start of a line",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "\rTransfer-Encoding:  chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "\\rTransfer-Encoding: chunked without CL", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR at the start of a line",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "\rTransfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "\\rContent-Length without TE", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR at the start of a line",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "\rContent-Length:  1000\r\n"
	      "Content-Length:  100\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Transfer-Encoding: chunk", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "unknown coding",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunk\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Transfer-Encoding: identity and Content-Length", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "deflate is not accepted as a request coding",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  deflate\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Transfer-Encoding: xchunked", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "unknown coding",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  xchunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Multiple transfer encoding headers in a single request", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  gzip\r\n"
	      "Transfer-Encoding:  deflate\r\n"
	      "Transfer-Encoding:  identity\r\n"
	      "Transfer-Encoding:  compress\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Mixed case", AMBIGUOUS, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked takes no parameters",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  \t\t\t\tchunked;custom_param;\t\t\t\t\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Invalid Transfer-Encoding", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked twice",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked,chunked\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Chunks Priority on Content-Length.1", AMBIGUOUS, -RW_CONTENT_LENGTH_WITH_TE, 0, false,
	  "CL with TE is refused (TE value matched case-insensitively)",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "TrAnSfEr-EnCoDiNg:  ChUnKeD\r\n"
	      "Content-Length:  4\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Chunks Priority on Content-Length.2", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "unknown coding \"cow\"",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  chunked\r\n"
	      "Transfer-Encoding:  cow\r\n"
	      "Content-Length:  6\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "\\x00Transfer-Encoding: chunked", SEVERE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Content-Length:  6\r\n"
	      "\000Transfer-Encoding:  chunked\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Transfer-Encoding: \\x00chunked", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "Transfer-Encoding:  \000chunked\r\n"
	      "Content-Length:  6\r\n"
	      "\r\n") },
	{ "real-life-test-cases", "Send small (1614 bytes) request, transfer encoded request", AMBIGUOUS, -RW_CONTENT_LENGTH_WITH_TE, 0, false,
	  "CL with TE is refused",
	  RAW("POST /test.html HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "User-Agent:  Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:68.0) Gecko/20100101 Firefox/68.0\r\n"
	      "Accept:  text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
	      "Accept-Language:  en-US,en;q=0.5\r\n"
	      "Accept-Encoding:  gzip, deflate\r\n"
	      "Content-Type:  application/x-www-form-urlencoded\r\n"
	      "Connection:  keep-alive\r\n"
	      "Upgrade-Insecure-Requests:  1\r\n"
	      "TrAnSfEr-EnCoDiNg:  ChUnKeD\r\n"
	      "Content-Length:  6\r\n"
	      "\r\n") },
	{ "rfc-compliant", "No headers", COMPLIANT, ACCEPT, -1, false,
	  "valid",
	  RAW("GET /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid Transfer-Encoding (chunked)", COMPLIANT, ACCEPT, -1, true,
	  "valid",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid Content-Length", COMPLIANT, ACCEPT, 1000, false,
	  "valid",
	  RAW("PUT /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid Transfer-Encoding (chunked) + custom header (non-ascii)", COMPLIANT, ACCEPT, -1, true,
	  "obs-text is allowed in values",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "My-Custom-Header: \t\t\tCustom-Value;`\205\223\240\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid custom header with tchar in name and obs-text", COMPLIANT, ACCEPT, -1, false,
	  "every tchar is allowed in names",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "My-Custom-Header.!#$%&'*+^_`|~0123456789: \t\t\tCustom-Value;`\205\223\240\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid custom header with underscore in name", COMPLIANT, ACCEPT, -1, false,
	  "'_' is a tchar",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "My_Custom_Header: \t\t\tCustom-Value;`\205\223\240\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid custom header with dot in name", COMPLIANT, ACCEPT, -1, false,
	  "valid",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "My.Custom.Header: \t\t\tCustom-Value;`\205\223\240\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Valid custom header with digits in name", COMPLIANT, ACCEPT, -1, false,
	  "valid",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "My-Custom-Header-0987654321: \t\t\tCustom-Value;`\205\223\240\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Different Transfer-Encoding headers", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: gzip\r\n"
	      "Transfer-Encoding: deflate\r\n"
	      "Transfer-Encoding: identity\r\n"
	      "Transfer-Encoding: compress\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Different Transfer-Encoding headers combined", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: gzip , deflate , \tidentity\t, compress\t, chunked\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Transfer-Encoding with a param: chunked;custom_param", COMPLIANT, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "only \"chunked\" alone is accepted",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding:    gzip   ;   \r\n"
	      "Transfer-Encoding: deflate\t\t;\t\t\r\n"
	      "Transfer-Encoding: \t\t\t\tchunked;custom_param;\t\t\t\t\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Compliant URL", COMPLIANT, -RW_BAD_URI, 0, false,
	  "'#' (a fragment) is never sent in a request target",
	  RAW("POST /user:pass123@www.example.com:8080/site/index.php?action=login%20++~!@#$%^&*()_+:<>?,./;'[]{}`~\\\"|&prev=index#form HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Accept: */*\r\n"
	      "\r\n") },
	{ "rfc-compliant", "International in URI", COMPLIANT, ACCEPT, -1, false,
	  "obs-text bytes are passed through in the target",
	  RAW("GET /\321\201\321\202\321\200\320\260\320\275\320\275\321\213\320\265-\321\201\320\270\320\274\320\262\320\276\320\273\321\213/\320\277\320\276\320\264\320\264\320\265\321\200\320\266\320\270\320\262\320\260\321\216\321\202\321\201\321\217 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "rfc-compliant", "Empty URI", COMPLIANT, -RW_BAD_REQUEST_LINE, 0, false,
	  "empty target: two SP in a row",
	  RAW("GET  HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "severe", "Multiple Content-Length", SEVERE, -RW_DUPLICATE_CONTENT_LENGTH, 0, false,
	  "differing CL values",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "Bad Content-Length: 1000,1000", SEVERE, -RW_BAD_CONTENT_LENGTH, 0, false,
	  "CL lists are refused",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000,1000\r\n"
	      "\r\n") },
	{ "severe", "Bad Content-Length: 1000 1000", SEVERE, -RW_BAD_CONTENT_LENGTH, 0, false,
	  "CL is 1*DIGIT",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000 1000\r\n"
	      "\r\n") },
	{ "severe", "Bad Content-Length: 1000.1000", SEVERE, -RW_BAD_CONTENT_LENGTH, 0, false,
	  "CL is 1*DIGIT",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000.1000\r\n"
	      "\r\n") },
	{ "severe", "Bad Content-Length (64-bits overflow)", SEVERE, -RW_BAD_CONTENT_LENGTH, 0, false,
	  "CL above 2^62",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 18446744073709551616\r\n"
	      "\r\n") },
	{ "severe", "Unknown Transfer-Encoding: xchunked", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "unknown coding",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: xchunked\r\n"
	      "\r\n") },
	{ "severe", "Bad character in Transfer-Encoding value: chunked\\x11", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\021\r\n"
	      "\r\n") },
	{ "severe", "Bad character in Content-Length value: 1000\\x11", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\021\r\n"
	      "\r\n") },
	{ "severe", "Multiple Transfer-Encoding: chunked", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked twice",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "severe", "Multiple Transfer-Encoding: chunked,chunked", SEVERE, -RW_BAD_TRANSFER_ENCODING, 0, false,
	  "chunked twice",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked,chunked\r\n"
	      "\r\n") },
	{ "severe", "Multiline headers are deprecated", SEVERE, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Some-Custom-Header: Multi-line values\r\n"
	      " are \n deprecated. E.g. it may contain \n Transfer-Encoding: chunked\r\n"
	      "\r\n"
	      "\r\n") },
	{ "severe", "Multiline headers are deprecated (with \\n only)", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare LF",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Some-Custom-Header: Multi-line values\n are \n deprecated. E.g. it may contain \n Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "severe", "Http Engine missed CR", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Some-Custom-Header: Parser error\r must not contain\r symbols.\r\n"
	      "\r\n") },
	{ "severe", "Http Engine missed LF", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare LF",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length: 1000\r\n"
	      "Some-Custom-Header: Parser error\n must not contain\n symbols.\r\n"
	      "\r\n") },
	{ "severe", "\\r in name is bad", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header\r: 1000\r\n"
	      "\r\n") },
	{ "severe", "\\n in name is bad", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare LF",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header\n: Content-Length:1000\r\n"
	      " Transfer-Encoding: chunked\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\0 in name is bad", SEVERE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header\000: 1000\r\n"
	      "\r\n") },
	{ "severe", "\\r in value is bad", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header: value\rcontent-length: 1000\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\n in value is bad", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare LF",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header: value\n content-length: 1000\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\0 in value is bad", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header: value\000content-length: 1000\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\0 at the start of a line", SEVERE, -RW_BAD_HEADER, 0, false,
	  "byte outside tchar in field name",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "\000Some-Bad-Header: value\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\0 at the start of a value", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header: \000value\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "\\0 at the end of a value", SEVERE, -RW_BAD_HEADER, 0, false,
	  "control byte in field value",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Some-Bad-Header: value\000\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "severe", "Content-Length[white-space] and Content-Length", SEVERE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Content-Length : 100\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "severe", "[white-space]Content-Length and Content-Length", SEVERE, -RW_OBS_FOLD, 0, false,
	  "line starts with SP/HTAB: obs-fold (RFC 9112 5.2)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      " Content-Length: 100\r\n"
	      "Content-Length: 1000\r\n"
	      "\r\n") },
	{ "severe", "Transfer-Encoding[white-space] and Transfer-Encoding", SEVERE, -RW_BAD_HEADER, 0, false,
	  "whitespace between field name and colon (RFC 9112 5.1)",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding : chunked\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "\r\n") },
	{ "severe", "Bad method", SEVERE, -RW_BAD_REQUEST_LINE, 0, false,
	  "method is a token",
	  RAW("bad_method\001 /foo/bar HTTP/1.1\r\n"
	      "Host: localhost\r\n"
	      "\r\n") },
	{ "single-case", "Both Transfer-Encoding:chunked and Content-Length", AMBIGUOUS, -RW_CONTENT_LENGTH_WITH_TE, 0, false,
	  "CL with TE is refused",
	  RAW("POST /foo/bar HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "Transfer-Encoding: chunked\r\n"
	      "Content-Length: 100\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\t in URI", AMBIGUOUS, -RW_BAD_URI, 0, false,
	  "HTAB in the target",
	  RAW("GET /endpoint_a\tHTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "Extra spaces in version", ACCEPTABLE, -RW_BAD_REQUEST_LINE, 0, false,
	  "SP after the version",
	  RAW("GET /endpoint_a HTTP/1.1 \r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\x01 in URI", AMBIGUOUS, -RW_BAD_URI, 0, false,
	  "CTL in the target",
	  RAW("GET /endpoint_a\001HTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "[space] in URI", ACCEPTABLE, -RW_BAD_REQUEST_LINE, 0, false,
	  "SP splits the target: \"escaped\" is no version",
	  RAW("GET /endpoint_a?param=not escaped spaces HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "[space] in URI resulted in a bad version", SEVERE, -RW_BAD_REQUEST_LINE, 0, false,
	  "SP after the version",
	  RAW("GET /endpoint_a HTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\r in URI", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare CR",
	  RAW("GET /endpoint_a\rHTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\n in URI", SEVERE, -RW_BARE_CR_LF, 0, false,
	  "bare LF",
	  RAW("GET /endpoint_a\nHTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "Request Smuggling in URI", SEVERE, -RW_BAD_URI, 0, false,
	  "HTAB in the target",
	  RAW("GET /endpoint_a\tHTTP/1.1\r\n"
	      "Host:localhost\r\n"
	      "\r\n"
	      "GET\t/endpoint_b\t HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\0 in URI", SEVERE, -RW_BAD_URI, 0, false,
	  "NUL in the target",
	  RAW("GET /endpoint_a\000HTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "\\0 at the start of URI", SEVERE, -RW_BAD_URI, 0, false,
	  "NUL in the target",
	  RAW("GET \000/endpoint_aHTTP/1.1 HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "%09 in URI is OK", COMPLIANT, ACCEPT, -1, false,
	  "pct-encoded CTL is fine",
	  RAW("GET /path-%09-uri HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "%20 in URI is OK", COMPLIANT, ACCEPT, -1, false,
	  "pct-encoded SP is fine",
	  RAW("GET /path-%20-uri HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "%0D in URI is OK", COMPLIANT, ACCEPT, -1, false,
	  "pct-encoded CR is fine",
	  RAW("GET /path-%0D-uri HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
	{ "uri-specific-test-cases", "%0A in URI is OK", COMPLIANT, ACCEPT, -1, false,
	  "pct-encoded LF is fine",
	  RAW("GET /path-%0A-uri HTTP/1.1\r\n"
	      "Host: example.com\r\n"
	      "X-Forwarded-For: 1.1.1.1\r\n"
	      "\r\n") },
};

#define NCASES (sizeof desync_cases / sizeof desync_cases[0])

Test(desync_corpus, table_covers_the_corpus)
{
	size_t severe = 0, ambiguous = 0;
	for (size_t i = 0; i < NCASES; i++) {
		severe += desync_cases[i].tier == SEVERE;
		ambiguous += desync_cases[i].tier == AMBIGUOUS;
		if (desync_cases[i].tier == SEVERE)
			cr_assert_lt(desync_cases[i].expect, 0, "Severe case expected to pass: %s",
				     desync_cases[i].name);
	}
	cr_assert_geq(NCASES, 40);
	cr_assert_geq(severe, 40);
	cr_assert_geq(ambiguous, 40);
}

Test(desync_corpus, every_case_gives_its_expected_result)
{
	static struct http_request r;
	char got[64], want[64];

	for (size_t i = 0; i < NCASES; i++) {
		const struct desync_case *c = &desync_cases[i];
		int rc = check_request_every_split(c->raw, c->len, &limits);
		int expected = c->expect == ACCEPT ? (int)c->len : c->expect;

		cr_assert_eq(rc, expected, "%s / %s: got %s, want %s (%s)", c->file, c->name,
			     describe(rc, got, sizeof got), describe(expected, want, sizeof want),
			     c->why);
		if (c->tier == SEVERE)
			cr_assert_lt(rc, 0, "Severe case accepted: %s", c->name);
		if (c->expect != ACCEPT)
			continue;
		http1_parse_request(c->raw, c->len, &limits, &r);
		cr_assert_eq(r.content_length, c->content_length, "%s: content_length", c->name);
		cr_assert_eq(r.chunked, c->chunked, "%s: chunked", c->name);
		cr_assert(r.content_length < 0 || !r.chunked, "%s: two framings", c->name);
	}
}

/* Every vector of the corpus, with the bytes of a second request behind it: a complete head never
 * swallows them, a refused one is refused the same way. */
Test(desync_corpus, pipelined_bytes_do_not_change_the_result)
{
	static struct http_request r;
	static const char next[] = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";

	for (size_t i = 0; i < NCASES; i++) {
		const struct desync_case *c = &desync_cases[i];
		size_t len = c->len + sizeof next - 1;
		char *buf = malloc(len);
		memcpy(buf, c->raw, c->len);
		memcpy(buf + c->len, next, sizeof next - 1);
		int rc = http1_parse_request(buf, len, &limits, &r);
		int expected = c->expect == ACCEPT ? (int)c->len : c->expect;
		cr_assert_eq(rc, expected, "%s", c->name);
		free(buf);
	}
}

/* Routes match on the path as sent: a path an upstream would resolve to another place is refused. */
Test(request_line, dot_segments_are_refused)
{
	static const char *const refused[] = {
		"GET /public/../admin HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /public/%2e%2e/admin HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /public/.%2E/admin HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /./admin HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/.. HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/. HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://h/x/../y HTTP/1.1\r\nHost: h\r\n\r\n",
	};
	static const char *const accepted[] = {
		"GET /a/.../b HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/.hidden/..b HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/b.?x=/../ HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /a/%2e%2e%2e HTTP/1.1\r\nHost: h\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
		cr_assert_eq(check_request_every_split(refused[i], strlen(refused[i]), &limits), -RW_BAD_URI,
			     "%s", refused[i]);
	for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
		cr_assert_gt(check_request_every_split(accepted[i], strlen(accepted[i]), &limits), 0, "%s",
			     accepted[i]);
}

/* ---- the method table ---------------------------------------------------------------------- */

Test(methods, names_and_lookup_agree_for_every_known_method)
{
	for (int m = 1; m < HTTP_M_COUNT; m++) {
		const char *name = http_method_name((enum http_method)m);
		cr_assert(name[0] != '\0', "method %d has no name", m);
		cr_assert_eq(http_method_lookup(name, strlen(name)), m, "%s", name);
	}
	cr_assert_str_eq(http_method_name(HTTP_M_OTHER), "");
	cr_assert_eq(http_method_lookup("get", 3), HTTP_M_OTHER, "method names are case-sensitive");
	cr_assert_eq(http_method_lookup("GETX", 4), HTTP_M_OTHER);
	cr_assert_eq(http_method_lookup("GE", 2), HTTP_M_OTHER);
}

Test(methods, allow_list_in_table_order_and_truncated_by_whole_names)
{
	char out[64];
	uint32_t mask = HTTP_METHOD_BIT(HTTP_M_POST) | HTTP_METHOD_BIT(HTTP_M_GET) |
			HTTP_METHOD_BIT(HTTP_M_TRACE);
	cr_assert_eq(http_method_list(mask, out, sizeof out), strlen("GET, POST, TRACE"));
	cr_assert_str_eq(out, "GET, POST, TRACE");
	cr_assert_eq(http_method_list(mask, out, 10), strlen("GET, POST"));
	cr_assert_str_eq(out, "GET, POST");
	cr_assert_eq(http_method_list(0, out, sizeof out), 0);
	cr_assert_str_eq(out, "");
}
