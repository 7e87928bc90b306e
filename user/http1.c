/* http1.c — owns the strict HTTP/1.1 message-head parser (requests and responses, RFC 9112) and the
 * incremental validator of chunked bodies. One pass over the caller's bytes with table-driven
 * character checks; no allocation, no copies (every slice points into the parsed buffer).
 *
 * Incremental use: the caller re-parses from the start when more bytes arrive. Every check is made
 * at the byte where it becomes decidable, and "need more bytes" is only reported when the bytes so
 * far are a valid prefix, so the same bytes split in any way end in the same result. */
#include "http1.h"

#include <string.h>
#include <strings.h>

#define NEED_MORE 1 /* internal result: the bytes so far are a valid, incomplete prefix */

#define CONTENT_LENGTH_MAX (INT64_C(1) << 62)
#define CHUNK_SIZE_MAX_DIGITS 15
#define CHUNK_LINE_MAX 4096
#define CHUNK_TRAILER_MAX 16384

/* ---- character classes ------------------------------------------------------------------- */

/* tchar (RFC 9110 §5.6.2): the bytes of a token (method, field name, coding, option) */
static const uint8_t tchar[256] = {
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1,
	['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1,
	['-'] = 1, ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
};

/* field-value and reason-phrase bytes: VCHAR, obs-text, SP, HTAB (no CTL, no DEL) */
static const uint8_t field_char[256] = {
	['\t'] = 1, [' ' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* request-target bytes: visible ASCII and obs-text except '#' (a fragment is never sent); raw
 * UTF-8 is passed through byte for byte, which no upstream can read as anything else */
static const uint8_t target_char[256] = {
	['!' ... '"'] = 1, ['$' ... '~'] = 1, [0x80 ... 0xff] = 1,
};

/* reg-name bytes of a uri-host (RFC 3986): unreserved, sub-delims and the '%' of pct-encoded */
static const uint8_t reg_name_char[256] = {
	['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['a' ... 'z'] = 1, ['-'] = 1, ['.'] = 1, ['_'] = 1,
	['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1, ['*'] = 1,
	['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1, ['%'] = 1,
};

static inline bool is_ows(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int hex_digit(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* ---- scanning helpers -------------------------------------------------------------------- */

struct scan {
	const char *buf;
	size_t pos;
	size_t end; /* min(len, head limit): the parser never looks at or past it */
};

static inline unsigned char byte_at(const struct scan *s, size_t at)
{
	return (unsigned char)s->buf[at];
}

/* First index in [from, stop) whose byte is not in the class. */
static inline size_t span(const struct scan *s, size_t from, size_t stop, const uint8_t cls[256])
{
	while (from < stop && cls[byte_at(s, from)])
		from++;
	return from;
}

static inline size_t skip_ows(const struct scan *s, size_t from)
{
	while (from < s->end && is_ows(byte_at(s, from)))
		from++;
	return from;
}

/* Judges the unexpected byte at `at`. A CR or LF there is classified first: bare LF or CR not
 * followed by LF → RW_BARE_CR_LF, CR as the last byte so far → NEED_MORE, a real CRLF → reason. */
static int refuse_at(const struct scan *s, size_t at, enum rw_reason reason)
{
	unsigned char c = byte_at(s, at);

	if (c == '\n')
		return -RW_BARE_CR_LF;
	if (c == '\r') {
		if (at + 1 >= s->end)
			return NEED_MORE;
		if (byte_at(s, at + 1) != '\n')
			return -RW_BARE_CR_LF;
	}
	return -(int)reason;
}

/* Consumes the CRLF that must be at s->pos; any other byte is refused with `reason`. */
static int expect_crlf(struct scan *s, enum rw_reason reason)
{
	if (s->pos >= s->end)
		return NEED_MORE;
	if (byte_at(s, s->pos) != '\r')
		return refuse_at(s, s->pos, reason);
	if (s->pos + 1 >= s->end)
		return NEED_MORE;
	if (byte_at(s, s->pos + 1) != '\n')
		return -RW_BARE_CR_LF;
	s->pos += 2;
	return 0;
}

/* Consumes the literal `lit` at s->pos. */
static int expect_literal(struct scan *s, const char *lit, enum rw_reason reason)
{
	for (; *lit; lit++, s->pos++) {
		if (s->pos >= s->end)
			return NEED_MORE;
		if (s->buf[s->pos] != *lit)
			return refuse_at(s, s->pos, reason);
	}
	return 0;
}

/* ---- list values (RFC 9110 §5.6.1) ------------------------------------------------------- */

/* Takes the next comma-separated element of *rest, OWS trimmed (may be empty). False at the end. */
static bool next_list_item(struct slice *rest, struct slice *item)
{
	if (rest->p == NULL)
		return false;
	const char *p = rest->p, *end = rest->p + rest->len;
	const char *comma = memchr(p, ',', rest->len);
	const char *item_end = comma ? comma : end;

	while (p < item_end && is_ows((unsigned char)*p))
		p++;
	const char *q = item_end;
	while (q > p && is_ows((unsigned char)q[-1]))
		q--;
	*item = slice_make(p, (size_t)(q - p));
	if (comma)
		*rest = slice_make(comma + 1, (size_t)(end - comma - 1));
	else
		*rest = (struct slice){ NULL, 0 };
	return true;
}

/* ---- header fields ----------------------------------------------------------------------- */

static const struct {
	const char *name;
	uint8_t len;
	uint8_t id;
	bool hop;
} known_headers[] = {
	{ "host", 4, HDR_HOST, false },
	{ "content-length", 14, HDR_CONTENT_LENGTH, false },
	{ "transfer-encoding", 17, HDR_TRANSFER_ENCODING, false },
	{ "connection", 10, HDR_CONNECTION, true },
	{ "keep-alive", 10, HDR_KEEP_ALIVE, true },
	{ "proxy-connection", 16, HDR_PROXY_CONNECTION, true },
	{ "te", 2, HDR_TE, true },
	{ "trailer", 7, HDR_TRAILER, true },
	{ "upgrade", 7, HDR_UPGRADE, true },
	{ "expect", 6, HDR_EXPECT, false },
	{ "x-forwarded-for", 15, HDR_X_FORWARDED_FOR, false },
	{ "x-forwarded-proto", 17, HDR_X_FORWARDED_PROTO, false },
	{ "x-forwarded-host", 16, HDR_X_FORWARDED_HOST, false },
	{ "via", 3, HDR_VIA, false },
	{ "traceparent", 11, HDR_TRACEPARENT, false },
	{ "x-request-id", 12, HDR_X_REQUEST_ID, false },
	{ "tracestate", 10, HDR_TRACESTATE, false },
};

static void identify_header(struct http_header *h)
{
	h->id = HDR_OTHER;
	h->hop = false;
	for (size_t i = 0; i < sizeof(known_headers) / sizeof(known_headers[0]); i++) {
		if (slice_ieq(h->name, known_headers[i].name, known_headers[i].len)) {
			h->id = known_headers[i].id;
			h->hop = known_headers[i].hop;
			return;
		}
	}
}

/* "Content_Length" and "Transfer_Encoding" are valid tokens, but CGI-style upstreams map '_' and
 * '-' to the same variable: such a name could be read as framing upstream, so it is refused. */
static bool framing_lookalike(struct slice name)
{
	return slice_ieq(name, "content_length", 14) || slice_ieq(name, "transfer_encoding", 17);
}

/* field-line = field-name ":" OWS field-value OWS CRLF; no whitespace before the colon. */
static int parse_header_field(struct scan *s, struct http_header *h)
{
	size_t name_start = s->pos;
	size_t p = span(s, name_start, s->end, tchar);

	if (p == s->end)
		return NEED_MORE;
	if (p == name_start || byte_at(s, p) != ':')
		return refuse_at(s, p, RW_BAD_HEADER);
	h->name = slice_make(s->buf + name_start, p - name_start);
	if (framing_lookalike(h->name))
		return -RW_BAD_HEADER;

	size_t value_start = skip_ows(s, p + 1);
	p = span(s, value_start, s->end, field_char);
	if (p == s->end)
		return NEED_MORE;
	if (byte_at(s, p) != '\r')
		return refuse_at(s, p, RW_BAD_HEADER);
	if (p + 1 == s->end)
		return NEED_MORE;
	if (byte_at(s, p + 1) != '\n')
		return -RW_BARE_CR_LF;

	size_t value_end = p;
	while (value_end > value_start && is_ows(byte_at(s, value_end - 1)))
		value_end--;
	h->value = slice_make(s->buf + value_start, value_end - value_start);
	identify_header(h);
	s->pos = p + 2;
	return 0;
}

/* All field lines up to and including the empty line that ends the head. */
static int parse_header_fields(struct scan *s, struct http_header *hdrs, uint16_t *nheaders)
{
	uint16_t n = 0;

	*nheaders = 0;
	for (;;) {
		if (s->pos >= s->end)
			return NEED_MORE;
		unsigned char c = byte_at(s, s->pos);
		if (c == '\r' || c == '\n')
			break;
		/* RFC 9112 §5.2 obs-fold, and §2.2 whitespace before the first field: refused. */
		if (is_ows(c))
			return -RW_OBS_FOLD;
		if (n == HTTP1_MAX_HEADERS)
			return -RW_HEADERS_TOO_LARGE;
		int rc = parse_header_field(s, &hdrs[n]);
		if (rc)
			return rc;
		n++;
	}
	*nheaders = n;
	return expect_crlf(s, RW_BAD_HEADER);
}

/* Marks every field named by a Connection option hop-by-hop (RFC 9110 §7.6.1). Content-Length,
 * Transfer-Encoding and Host are never marked: the proxy rewrites them itself, and letting a client
 * remove them upstream ("Connection: content-length") would change how the upstream frames it. */
static void mark_named_hop(struct http_header *h, uint16_t n, struct slice option)
{
	for (uint16_t i = 0; i < n; i++) {
		if (h[i].id == HDR_CONTENT_LENGTH || h[i].id == HDR_TRANSFER_ENCODING ||
		    h[i].id == HDR_HOST)
			continue;
		if (slice_ieq(h[i].name, option.p, option.len))
			h[i].hop = true;
	}
}

/* Applies the Connection options; keep-alive: HTTP/1.1 unless "close", HTTP/1.0 only with
 * "keep-alive" (and no "close"). */
static bool apply_connection_options(struct http_header *h, uint16_t n, uint8_t minor)
{
	bool close = false, keep_alive = false;

	for (uint16_t i = 0; i < n; i++) {
		if (h[i].id != HDR_CONNECTION)
			continue;
		struct slice rest = h[i].value, option;
		while (next_list_item(&rest, &option)) {
			if (option.len == 0)
				continue;
			if (slice_ieq(option, "close", 5))
				close = true;
			else if (slice_ieq(option, "keep-alive", 10))
				keep_alive = true;
			mark_named_hop(h, n, option);
		}
	}
	return minor >= 1 ? !close : keep_alive && !close;
}

/* Content-Length = 1*DIGIT, at most 2^62; returns -1 when malformed. */
static int64_t parse_content_length(struct slice v)
{
	int64_t n = 0;

	if (v.len == 0)
		return -1;
	for (uint32_t i = 0; i < v.len; i++) {
		unsigned char c = (unsigned char)v.p[i];
		if (!is_digit(c))
			return -1;
		int d = c - '0';
		if (n > (CONTENT_LENGTH_MAX - d) / 10)
			return -1;
		n = n * 10 + d;
	}
	return n;
}

/* Every Content-Length field must be valid, and all must carry the same value (RFC 9112 §6.3). */
static int collect_content_length(const struct http_header *h, uint16_t n, int64_t *out)
{
	*out = -1;
	for (uint16_t i = 0; i < n; i++) {
		if (h[i].id != HDR_CONTENT_LENGTH)
			continue;
		int64_t v = parse_content_length(h[i].value);
		if (v < 0)
			return -RW_BAD_CONTENT_LENGTH;
		if (*out >= 0 && *out != v)
			return -RW_DUPLICATE_CONTENT_LENGTH;
		*out = v;
	}
	return 0;
}

/* ---- request line ------------------------------------------------------------------------ */

/* The one method table: names by id (the parser, the config's `methods`, Allow, the log). */
static const struct slice method_names[HTTP_M_COUNT] = {
	[HTTP_M_OTHER] = { "", 0 },
	[HTTP_M_GET] = SLICE_LIT("GET"),	 [HTTP_M_HEAD] = SLICE_LIT("HEAD"),
	[HTTP_M_POST] = SLICE_LIT("POST"),	 [HTTP_M_PUT] = SLICE_LIT("PUT"),
	[HTTP_M_DELETE] = SLICE_LIT("DELETE"),	 [HTTP_M_PATCH] = SLICE_LIT("PATCH"),
	[HTTP_M_OPTIONS] = SLICE_LIT("OPTIONS"), [HTTP_M_TRACE] = SLICE_LIT("TRACE"),
};

const char *http_method_name(enum http_method m)
{
	return (unsigned)m < HTTP_M_COUNT ? method_names[m].p : "";
}

enum http_method http_method_lookup(const char *name, size_t len)
{
	for (int i = 1; i < HTTP_M_COUNT; i++)
		if (slice_eq(method_names[i], name, len))
			return (enum http_method)i;
	return HTTP_M_OTHER;
}

size_t http_method_list(uint32_t mask, char *out, size_t cap)
{
	size_t n = 0;
	if (cap == 0)
		return 0;
	for (int m = 1; m < HTTP_M_COUNT; m++) {
		if (!(mask & HTTP_METHOD_BIT(m)))
			continue;
		size_t need = (n ? 2 : 0) + method_names[m].len;
		if (n + need >= cap)
			break;
		if (n) {
			out[n++] = ',';
			out[n++] = ' ';
		}
		memcpy(out + n, method_names[m].p, method_names[m].len);
		n += method_names[m].len;
	}
	out[n] = '\0';
	return n;
}

/* RFC 9112 §2.2: empty lines before the request line are ignored. */
static int skip_leading_empty_lines(struct scan *s)
{
	while (s->pos < s->end) {
		unsigned char c = byte_at(s, s->pos);
		if (c != '\r' && c != '\n')
			return 0;
		int rc = expect_crlf(s, RW_BAD_REQUEST_LINE);
		if (rc)
			return rc;
	}
	return NEED_MORE;
}

static int parse_method(struct scan *s, struct http_request *req)
{
	size_t start = s->pos;
	size_t p = span(s, start, s->end, tchar);

	if (p == s->end)
		return NEED_MORE;
	if (p == start || byte_at(s, p) != ' ')
		return refuse_at(s, p, RW_BAD_REQUEST_LINE);
	req->method = slice_make(s->buf + start, p - start);
	req->method_id = (uint8_t)http_method_lookup(req->method.p, req->method.len);
	if (slice_eq(req->method, "CONNECT", 7))
		return -RW_UNSUPPORTED_METHOD;
	s->pos = p + 1;
	return 0;
}

/* uri-host [ ":" port ], uri-host being a reg-name or an IP literal in brackets. */
static bool valid_authority(const char *p, size_t len)
{
	size_t i = 0;

	if (len == 0)
		return false;
	if (p[0] == '[') {
		for (i = 1; i < len && p[i] != ']'; i++)
			if (hex_digit((unsigned char)p[i]) < 0 && p[i] != ':' && p[i] != '.')
				return false;
		if (i == len || i == 1)
			return false;
		i++;
	} else {
		for (; i < len && p[i] != ':'; i++) {
			unsigned char c = (unsigned char)p[i];
			if (!reg_name_char[c])
				return false;
			if (c == '%') {
				if (i + 2 >= len || hex_digit((unsigned char)p[i + 1]) < 0 ||
				    hex_digit((unsigned char)p[i + 2]) < 0)
					return false;
				i += 2;
			}
		}
		if (i == 0)
			return false;
	}
	if (i == len)
		return true;
	if (p[i] != ':' || len - i - 1 == 0 || len - i - 1 > 5)
		return false;
	for (i++; i < len; i++)
		if (!is_digit((unsigned char)p[i]))
			return false;
	return true;
}

/* Splits "/path?query" at the first '?'. */
static void split_path_query(const char *p, size_t len, struct http_request *req)
{
	const char *q = memchr(p, '?', len);

	if (q == NULL) {
		req->path = slice_make(p, len);
		req->query = slice_make(p + len, 0);
	} else {
		req->path = slice_make(p, (size_t)(q - p));
		req->query = slice_make(q + 1, len - (size_t)(q - p) - 1);
	}
}

/* A segment "." or "..", literally or percent-encoded ("%2e", "%2E."): routes match on the path as
 * sent, so a path that an upstream would resolve elsewhere ("/public/../admin") is refused. */
static bool is_dot_segment(const char *p, size_t len)
{
	size_t dots = 0;
	for (size_t i = 0; i < len; dots++) {
		if (p[i] == '.')
			i++;
		else if (i + 2 < len && p[i] == '%' && p[i + 1] == '2' && (p[i + 2] | 0x20) == 'e')
			i += 3;
		else
			return false;
	}
	return dots == 1 || dots == 2;
}

static bool path_has_dot_segment(struct slice path)
{
	size_t start = 0;
	for (size_t i = 0; i <= path.len; i++) {
		if (i == path.len || path.p[i] == '/') {
			if (i > start && is_dot_segment(path.p + start, i - start))
				return true;
			start = i + 1;
		}
	}
	return false;
}

static size_t absolute_form_scheme_len(struct slice t)
{
	if (t.len >= 7 && strncasecmp(t.p, "http://", 7) == 0)
		return 7;
	if (t.len >= 8 && strncasecmp(t.p, "https://", 8) == 0)
		return 8;
	return 0;
}

static bool is_absolute_form(const struct http_request *req)
{
	return req->target.p[0] != '/' && req->target.p[0] != '*';
}

/* absolute-form "http[s]://authority[/path][?query]": the authority becomes the host. */
static int parse_absolute_form(struct http_request *req)
{
	struct slice t = req->target;
	size_t scheme_len = absolute_form_scheme_len(t);

	if (scheme_len == 0)
		return -RW_BAD_URI;
	const char *auth = t.p + scheme_len, *end = t.p + t.len, *a = auth;
	while (a < end && *a != '/' && *a != '?')
		a++;
	if (!valid_authority(auth, (size_t)(a - auth)))
		return -RW_BAD_URI;
	req->host = slice_make(auth, (size_t)(a - auth));
	if (a < end && *a == '/') {
		split_path_query(a, (size_t)(end - a), req);
		return 0;
	}
	/* No path: it is "/", taken from the last '/' of "://" so the slice stays in the buffer. */
	req->path = slice_make(auth - 1, 1);
	req->query = a < end ? slice_make(a + 1, (size_t)(end - a - 1)) : slice_make(end, 0);
	return 0;
}

/* RFC 9112 §3.2: origin-form, absolute-form, or asterisk-form (OPTIONS only); no authority-form
 * since CONNECT is refused. */
static int classify_target(struct http_request *req)
{
	struct slice t = req->target;

	int rc;
	if (t.p[0] == '/') {
		split_path_query(t.p, t.len, req);
		rc = 0;
	} else if (t.len == 1 && t.p[0] == '*') {
		if (req->method_id != HTTP_M_OPTIONS)
			return -RW_BAD_URI;
		req->path = t;
		req->query = slice_make(t.p + 1, 0);
		return 0;
	} else {
		rc = parse_absolute_form(req);
	}
	if (rc == 0 && path_has_dot_segment(req->path))
		return -RW_BAD_URI;
	return rc;
}

static int parse_target(struct scan *s, uint32_t max_uri, struct http_request *req)
{
	size_t start = s->pos;
	size_t stop = s->end;

	if (stop - start > (size_t)max_uri)
		stop = start + (size_t)max_uri + 1;
	size_t p = span(s, start, stop, target_char);
	if (p - start > (size_t)max_uri)
		return -RW_URI_TOO_LONG;
	if (p == s->end)
		return NEED_MORE;

	unsigned char c = byte_at(s, p);
	if (c == '\r' || c == '\n' || (c == ' ' && p == start))
		return refuse_at(s, p, RW_BAD_REQUEST_LINE);
	if (c != ' ')
		return -RW_BAD_URI;
	req->target = slice_make(s->buf + start, p - start);
	s->pos = p + 1;
	return classify_target(req);
}

/* Consumes one DIGIT at s->pos into *d; any other byte is refused with `reason`. */
static int expect_digit(struct scan *s, unsigned *d, enum rw_reason reason)
{
	if (s->pos >= s->end)
		return NEED_MORE;
	if (!is_digit(byte_at(s, s->pos)))
		return refuse_at(s, s->pos, reason);
	*d = byte_at(s, s->pos++) - '0';
	return 0;
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 §2.3); anything else is `malformed`. Which
 * versions are spoken is up to the callers: major 1 only, any minor above 0 spoken as 1.1. */
static int parse_http_version(struct scan *s, unsigned *major, unsigned *minor,
			      enum rw_reason malformed)
{
	int rc = expect_literal(s, "HTTP/", malformed);

	if (rc == 0)
		rc = expect_digit(s, major, malformed);
	if (rc == 0)
		rc = expect_literal(s, ".", malformed);
	if (rc == 0)
		rc = expect_digit(s, minor, malformed);
	return rc;
}

/* A request line is checked to its CRLF first: a malformed version ("HTTP/9", "HTTP/2.0x") is a
 * bad request line (400); only a well-formed one that is not HTTP/1.x is RW_BAD_VERSION (505). */
static int parse_request_line(struct scan *s, const struct http_head_limits *lim,
			      struct http_request *req)
{
	unsigned major = 0, minor = 0;
	int rc = skip_leading_empty_lines(s);

	if (rc == 0)
		rc = parse_method(s, req);
	if (rc == 0)
		rc = parse_target(s, lim->max_uri_bytes, req);
	if (rc == 0)
		rc = parse_http_version(s, &major, &minor, RW_BAD_REQUEST_LINE);
	if (rc == 0)
		rc = expect_crlf(s, RW_BAD_REQUEST_LINE);
	if (rc == 0 && major != 1)
		rc = -RW_BAD_VERSION;
	req->minor = minor ? 1 : 0;
	return rc;
}

/* ---- request semantics (run once the head is complete) ------------------------------------ */

/* Only "chunked" alone is accepted: any other coding, a list, or chunked twice is refused, and so
 * is Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1). */
static int request_transfer_encoding(const struct http_request *req, bool *chunked)
{
	unsigned fields = 0;

	*chunked = false;
	for (uint16_t i = 0; i < req->nheaders; i++) {
		if (req->headers[i].id != HDR_TRANSFER_ENCODING)
			continue;
		if (!slice_ieq(req->headers[i].value, "chunked", 7))
			return -RW_BAD_TRANSFER_ENCODING;
		fields++;
	}
	if (fields == 0)
		return 0;
	if (fields > 1 || req->minor == 0)
		return -RW_BAD_TRANSFER_ENCODING;
	*chunked = true;
	return 0;
}

static int request_framing(struct http_request *req)
{
	int rc = collect_content_length(req->headers, req->nheaders, &req->content_length);

	if (rc == 0)
		rc = request_transfer_encoding(req, &req->chunked);
	if (rc == 0 && req->chunked && req->content_length >= 0)
		return -RW_CONTENT_LENGTH_WITH_TE;
	return rc;
}

/* HTTP/1.1 needs exactly one valid Host (RFC 9112 §3.2); an absolute-form authority wins. */
static int request_host(struct http_request *req)
{
	const struct http_header *host = NULL;
	bool absolute = is_absolute_form(req);

	for (uint16_t i = 0; i < req->nheaders; i++) {
		if (req->headers[i].id != HDR_HOST)
			continue;
		if (host)
			return -RW_BAD_HOST;
		host = &req->headers[i];
	}
	if (host == NULL) {
		if (req->minor >= 1)
			return -RW_BAD_HOST;
		if (!absolute)
			req->host = slice_make(req->target.p, 0);
		return 0;
	}
	if (!valid_authority(host->value.p, host->value.len))
		return -RW_BAD_HOST;
	if (!absolute)
		req->host = host->value;
	return 0;
}

/* Expect: 100-continue is the only expectation; it is ignored in HTTP/1.0 (RFC 9110 §10.1.1). */
static int request_expect(struct http_request *req)
{
	bool found = false;

	for (uint16_t i = 0; i < req->nheaders; i++) {
		if (req->headers[i].id != HDR_EXPECT)
			continue;
		if (!slice_ieq(req->headers[i].value, "100-continue", 12))
			return -RW_BAD_EXPECT;
		found = true;
	}
	req->expect_continue = found && req->minor >= 1;
	return 0;
}

static int request_semantics(struct http_request *req)
{
	int rc = request_framing(req);

	if (rc == 0)
		rc = request_host(req);
	if (rc == 0)
		rc = request_expect(req);
	if (rc == 0)
		req->keep_alive = apply_connection_options(req->headers, req->nheaders, req->minor);
	return rc;
}

int http1_parse_request(const char *buf, size_t len, const struct http_head_limits *lim,
			struct http_request *req)
{
	struct scan s = { buf, 0, len < lim->max_head_bytes ? len : lim->max_head_bytes };

	req->nheaders = 0;
	req->chunked = false;
	req->keep_alive = false;
	req->expect_continue = false;
	req->content_length = -1;
	req->head_len = 0;

	int rc = parse_request_line(&s, lim, req);
	/* a request line that alone crosses the head limit is a too long target */
	if (rc == NEED_MORE)
		return len > lim->max_head_bytes ? -RW_URI_TOO_LONG : 0;
	if (rc == 0)
		rc = parse_header_fields(&s, req->headers, &req->nheaders);
	if (rc == NEED_MORE)
		return len > lim->max_head_bytes ? -RW_HEADERS_TOO_LARGE : 0;
	if (rc == 0)
		rc = request_semantics(req);
	if (rc < 0)
		return rc;
	req->head_len = (uint32_t)s.pos;
	return (int)s.pos;
}

/* ---- responses --------------------------------------------------------------------------- */

/* status-line = HTTP-version SP 3DIGIT SP [ reason-phrase ]; a missing SP after an empty reason is
 * tolerated. The status must lie in 100..599 (RFC 9110 §15). */
static int parse_status_line(struct scan *s, struct http_response *resp)
{
	unsigned major = 0, minor = 0;
	int rc = parse_http_version(s, &major, &minor, RW_UPSTREAM_BAD_RESPONSE);

	if (rc == 0 && major != 1)
		rc = -RW_UPSTREAM_BAD_RESPONSE;
	if (rc == 0)
		rc = expect_literal(s, " ", RW_UPSTREAM_BAD_RESPONSE);
	if (rc)
		return rc;
	resp->minor = minor ? 1 : 0;

	unsigned status = 0;
	for (int i = 0; i < 3; i++, s->pos++) {
		if (s->pos >= s->end)
			return NEED_MORE;
		if (!is_digit(byte_at(s, s->pos)))
			return refuse_at(s, s->pos, RW_UPSTREAM_BAD_RESPONSE);
		status = status * 10 + (byte_at(s, s->pos) - '0');
	}
	if (status < 100 || status > 599)
		return -RW_UPSTREAM_BAD_RESPONSE;
	resp->status = (uint16_t)status;

	if (s->pos >= s->end)
		return NEED_MORE;
	size_t reason_start = s->pos;
	if (byte_at(s, s->pos) == ' ') {
		reason_start = s->pos + 1;
		s->pos = span(s, reason_start, s->end, field_char);
	}
	resp->reason_phrase = slice_make(s->buf + reason_start, s->pos - reason_start);
	return expect_crlf(s, RW_UPSTREAM_BAD_RESPONSE);
}

/* The transfer codings of every Transfer-Encoding field, in order. Chunked must be the final coding
 * to delimit the body; otherwise the body ends when the connection closes (RFC 9112 §6.3 item 4).
 * Chunked applied twice, an empty list or a coding that is not a token is refused. */
static int response_transfer_encoding(const struct http_response *resp, bool *present,
				      bool *chunked)
{
	unsigned codings = 0, chunked_count = 0;
	bool last_is_chunked = false;

	for (uint16_t i = 0; i < resp->nheaders; i++) {
		if (resp->headers[i].id != HDR_TRANSFER_ENCODING)
			continue;
		struct slice rest = resp->headers[i].value, item;
		while (next_list_item(&rest, &item)) {
			if (item.len == 0)
				continue;
			uint32_t n = 0;
			while (n < item.len && tchar[(unsigned char)item.p[n]])
				n++;
			uint32_t after = n; /* a coding may only be followed by parameters */
			while (after < item.len && is_ows((unsigned char)item.p[after]))
				after++;
			if (n == 0 || (after < item.len && item.p[after] != ';'))
				return -RW_UPSTREAM_BAD_RESPONSE;
			last_is_chunked = slice_ieq(slice_make(item.p, n), "chunked", 7);
			chunked_count += last_is_chunked;
			codings++;
		}
		*present = true;
	}
	if ((*present && codings == 0) || chunked_count > 1)
		return -RW_UPSTREAM_BAD_RESPONSE;
	*chunked = last_is_chunked;
	return 0;
}

static int response_semantics(struct http_response *resp)
{
	bool te_present = false;

	if (collect_content_length(resp->headers, resp->nheaders, &resp->content_length) < 0)
		return -RW_UPSTREAM_BAD_RESPONSE;
	if (response_transfer_encoding(resp, &te_present, &resp->chunked) < 0)
		return -RW_UPSTREAM_BAD_RESPONSE;
	if (te_present && resp->content_length >= 0)
		return -RW_UPSTREAM_BAD_RESPONSE;
	resp->keep_alive = apply_connection_options(resp->headers, resp->nheaders, resp->minor);
	return 0;
}

int http1_parse_response(const char *buf, size_t len, uint32_t max_head_bytes,
			 struct http_response *resp)
{
	struct scan s = { buf, 0, len < max_head_bytes ? len : max_head_bytes };

	resp->nheaders = 0;
	resp->chunked = false;
	resp->keep_alive = false;
	resp->content_length = -1;
	resp->head_len = 0;

	int rc = parse_status_line(&s, resp);
	if (rc == 0)
		rc = parse_header_fields(&s, resp->headers, &resp->nheaders);
	if (rc == NEED_MORE)
		return len > max_head_bytes ? -RW_UPSTREAM_BAD_RESPONSE : 0;
	if (rc == 0)
		rc = response_semantics(resp);
	if (rc < 0)
		return -RW_UPSTREAM_BAD_RESPONSE;
	resp->head_len = (uint32_t)s.pos;
	return (int)s.pos;
}

bool http1_response_has_no_body(uint8_t method_id, uint16_t status)
{
	return method_id == HTTP_M_HEAD || status < 200 || status == 204 || status == 304;
}

/* ---- chunked body (RFC 9112 §7.1) -------------------------------------------------------- */

/* While in CHUNK_SIZE_EXT, size_digits holds where we are in the chunk-ext grammar:
 *   chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] ) */
enum chunk_ext_state {
	EXT_BEFORE_SEMI,  /* BWS then ';' */
	EXT_BEFORE_NAME,  /* BWS then ext-name */
	EXT_NAME,
	EXT_AFTER_NAME,   /* BWS then '=' or ';' */
	EXT_BEFORE_VALUE, /* BWS then token or quoted-string */
	EXT_TOKEN,
	EXT_QUOTED,
	EXT_QUOTED_PAIR,
	EXT_AFTER_QUOTED,
};

/* While in CHUNK_TRAILER_LINE, size_digits holds which part of the field line we are in. */
enum chunk_trailer_part {
	TRAILER_NAME,
	TRAILER_VALUE,
};

static bool chunk_ext_step(struct chunk_scanner *s, unsigned char c)
{
	uint8_t *ext = &s->size_digits;

	switch (*ext) {
	case EXT_BEFORE_SEMI:
		if (c == ';')
			*ext = EXT_BEFORE_NAME;
		return c == ';' || is_ows(c);
	case EXT_BEFORE_NAME:
		if (tchar[c])
			*ext = EXT_NAME;
		return tchar[c] || is_ows(c);
	case EXT_NAME:
	case EXT_AFTER_NAME:
		if (c == '\r' && *ext == EXT_NAME)
			s->state = CHUNK_SIZE_LF;
		else if (c == '=')
			*ext = EXT_BEFORE_VALUE;
		else if (c == ';')
			*ext = EXT_BEFORE_NAME;
		else if (is_ows(c))
			*ext = EXT_AFTER_NAME;
		else
			return *ext == EXT_NAME && tchar[c];
		return true;
	case EXT_BEFORE_VALUE:
		if (c == '"')
			*ext = EXT_QUOTED;
		else if (tchar[c])
			*ext = EXT_TOKEN;
		return c == '"' || tchar[c] || is_ows(c);
	case EXT_QUOTED:
		/* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
		if (c == '"')
			*ext = EXT_AFTER_QUOTED;
		else if (c == '\\')
			*ext = EXT_QUOTED_PAIR;
		return field_char[c];
	case EXT_QUOTED_PAIR:
		*ext = EXT_QUOTED;
		return field_char[c];
	case EXT_TOKEN:
	case EXT_AFTER_QUOTED:
		if (c == '\r')
			s->state = CHUNK_SIZE_LF;
		else if (c == ';')
			*ext = EXT_BEFORE_NAME;
		else if (is_ows(c))
			*ext = EXT_BEFORE_SEMI;
		else
			return *ext == EXT_TOKEN && tchar[c];
		return true;
	default:
		return false;
	}
}

/* chunk-size = 1*HEXDIG, then chunk-ext or CRLF. */
static bool chunk_size_step(struct chunk_scanner *s, unsigned char c)
{
	int d = hex_digit(c);

	if (d >= 0) {
		if (s->size_digits == CHUNK_SIZE_MAX_DIGITS)
			return false;
		s->remaining = s->remaining * 16 + (uint64_t)d;
		s->size_digits++;
		return true;
	}
	if (s->size_digits == 0)
		return false;
	if (c == '\r') {
		s->state = CHUNK_SIZE_LF;
		return true;
	}
	if (c != ';' && !is_ows(c))
		return false;
	s->state = CHUNK_SIZE_EXT;
	s->size_digits = c == ';' ? EXT_BEFORE_NAME : EXT_BEFORE_SEMI;
	return true;
}

static void start_chunk_size_line(struct chunk_scanner *s)
{
	s->state = CHUNK_SIZE;
	s->size_digits = 0;
	s->line_len = 0;
	s->remaining = 0;
}

/* trailer-section = *( field-line CRLF ) CRLF, bounded to CHUNK_TRAILER_MAX bytes. */
static bool chunk_trailer_step(struct chunk_scanner *s, unsigned char c)
{
	if (++s->trailer_bytes > CHUNK_TRAILER_MAX)
		return false;
	switch (s->state) {
	case CHUNK_TRAILER_START:
		if (c == '\r') {
			s->state = CHUNK_FINAL_LF;
			return true;
		}
		s->state = CHUNK_TRAILER_LINE;
		s->size_digits = TRAILER_NAME;
		return tchar[c]; /* SP/HTAB here would be obs-fold, ':' an empty name */
	case CHUNK_TRAILER_LINE:
		if (s->size_digits == TRAILER_NAME) {
			if (c == ':')
				s->size_digits = TRAILER_VALUE;
			return c == ':' || tchar[c];
		}
		if (c == '\r')
			s->state = CHUNK_TRAILER_LF;
		return c == '\r' || field_char[c];
	case CHUNK_TRAILER_LF:
		s->state = CHUNK_TRAILER_START;
		return c == '\n';
	case CHUNK_FINAL_LF:
		s->state = CHUNK_DONE;
		return c == '\n';
	default:
		return false;
	}
}

/* One byte of framing (everything but chunk data). */
static bool chunk_step(struct chunk_scanner *s, unsigned char c)
{
	switch (s->state) {
	case CHUNK_SIZE:
	case CHUNK_SIZE_EXT:
		if (c != '\r' && ++s->line_len > CHUNK_LINE_MAX)
			return false;
		return s->state == CHUNK_SIZE ? chunk_size_step(s, c) : chunk_ext_step(s, c);
	case CHUNK_SIZE_LF:
		if (c != '\n')
			return false;
		s->state = s->remaining == 0 ? CHUNK_TRAILER_START : CHUNK_DATA;
		return true;
	case CHUNK_DATA_CR:
		s->state = CHUNK_DATA_LF;
		return c == '\r';
	case CHUNK_DATA_LF:
		start_chunk_size_line(s);
		return c == '\n';
	default:
		return chunk_trailer_step(s, c);
	}
}

ssize_t chunk_scan(struct chunk_scanner *s, const char *p, size_t len, bool *done)
{
	size_t i = 0;

	while (i < len && s->state != CHUNK_DONE) {
		if (s->state == CHUNK_DATA) {
			size_t n = len - i < s->remaining ? len - i : (size_t)s->remaining;
			s->remaining -= n;
			s->data_bytes += n;
			i += n;
			if (s->remaining == 0)
				s->state = CHUNK_DATA_CR;
			continue;
		}
		if (!chunk_step(s, (unsigned char)p[i])) {
			*done = false;
			return -RW_BAD_CHUNK;
		}
		i++;
	}
	*done = s->state == CHUNK_DONE;
	return (ssize_t)i;
}

struct slice http_header_value(const struct http_request *req, const char *name)
{
	size_t len = strlen(name);
	for (unsigned i = 0; i < req->nheaders; i++)
		if (slice_ieq(req->headers[i].name, name, len))
			return req->headers[i].value;
	return (struct slice){ 0 };
}

bool http_query_param(struct slice query, const char *name, size_t len, struct slice *out)
{
	const char *p = query.p, *end = query.p + query.len;
	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *stop = amp ? amp : end;
		if ((size_t)(stop - p) > len && p[len] == '=' && !memcmp(p, name, len)) {
			*out = slice_make(p + len + 1, (size_t)(stop - p) - len - 1);
			return true;
		}
		p = stop + 1;
	}
	return false;
}
