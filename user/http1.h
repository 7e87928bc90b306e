/* http1.h — strict HTTP/1.1 message-head parser (RFC 9112) and chunked-body scanner.
 * Pure functions over caller-owned bytes: every slice points into the parsed buffer. */
#ifndef RINGWAY_HTTP1_H
#define RINGWAY_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "reason.h"
#include "slice.h"

#define HTTP1_MAX_HEADERS 100

enum http_method {
	HTTP_M_OTHER = 0, /* a valid token we do not know: routed like any other */
	HTTP_M_GET,
	HTTP_M_HEAD,
	HTTP_M_POST,
	HTTP_M_PUT,
	HTTP_M_DELETE,
	HTTP_M_PATCH,
	HTTP_M_OPTIONS,
	HTTP_M_TRACE,
	HTTP_M_COUNT
};
#define HTTP_METHOD_BIT(m) (1u << (m))

/* The method's name ("GET"); "" for HTTP_M_OTHER. */
const char *http_method_name(enum http_method m);
/* The id of a method name (exact, case-sensitive as RFC 9110 says); HTTP_M_OTHER if unknown. */
enum http_method http_method_lookup(const char *name, size_t len);
/* The names of the methods in mask, as an Allow value ("GET, HEAD"), NUL-terminated in out;
 * returns its length. Names that do not fit are left out. */
size_t http_method_list(uint32_t mask, char *out, size_t cap);

/* Header names the proxy treats specially (matched case-insensitively by the parser). */
enum http_hdr_id {
	HDR_OTHER = 0,
	HDR_HOST,
	HDR_CONTENT_LENGTH,
	HDR_TRANSFER_ENCODING,
	HDR_CONNECTION,
	HDR_KEEP_ALIVE,
	HDR_PROXY_CONNECTION,
	HDR_TE,
	HDR_TRAILER,
	HDR_UPGRADE,
	HDR_EXPECT,
	HDR_X_FORWARDED_FOR,
	HDR_X_FORWARDED_PROTO,
	HDR_X_FORWARDED_HOST,
	HDR_VIA,
	HDR_TRACEPARENT,
	HDR_X_REQUEST_ID,
	HDR_TRACESTATE,
	HDR_COUNT
};

struct http_header {
	struct slice name;
	struct slice value; /* leading and trailing OWS removed */
	uint8_t id;         /* enum http_hdr_id */
	bool hop;           /* hop-by-hop: a fixed one, or named in Connection */
};

struct http_head_limits {
	uint32_t max_head_bytes; /* whole head incl. request line and final CRLF */
	uint32_t max_uri_bytes;  /* request target */
};

struct http_request {
	struct slice method;
	struct slice target; /* as sent */
	struct slice path;   /* absolute path ('/'...), or "*" for OPTIONS * */
	struct slice query;  /* after '?', without it; len 0 if none */
	struct slice host;   /* Host header value, or authority of an absolute-form target */
	uint8_t method_id;   /* enum http_method */
	uint8_t minor;       /* HTTP/1.minor; 0 or 1 */
	bool chunked;        /* Transfer-Encoding: chunked */
	bool keep_alive;     /* from version and Connection */
	bool expect_continue;
	int64_t content_length; /* -1 when absent */
	uint32_t head_len;      /* bytes of the head including the blank line */
	uint16_t nheaders;
	struct http_header headers[HTTP1_MAX_HEADERS];
};

struct http_response {
	uint16_t status;
	uint8_t minor;
	bool chunked;
	bool keep_alive;
	int64_t content_length; /* -1 when absent */
	struct slice reason_phrase;
	uint32_t head_len;
	uint16_t nheaders;
	struct http_header headers[HTTP1_MAX_HEADERS];
};

/* The value of the first query parameter name[0..len) ("name=value"; as written, not
 * percent-decoded) into *out: false when the query has none. */
bool http_query_param(struct slice query, const char *name, size_t len, struct slice *out);

/* The value of the request's first header named name (compared case-insensitively), or an empty
 * slice. */
struct slice http_header_value(const struct http_request *req, const char *name);

/* Parses the request head at buf[0..len). Returns head_len (>0) when complete, 0 when more bytes
 * are needed, or -(enum rw_reason) when the request must be refused. Leading empty lines (CRLF)
 * are skipped and counted in head_len. Too long a head or target is refused with
 * RW_HEADERS_TOO_LARGE / RW_URI_TOO_LONG as soon as the limit is crossed, complete or not. */
int http1_parse_request(const char *buf, size_t len, const struct http_head_limits *lim,
			struct http_request *req);

/* Same for a response head from an upstream; errors are -RW_UPSTREAM_BAD_RESPONSE. */
int http1_parse_response(const char *buf, size_t len, uint32_t max_head_bytes,
			 struct http_response *resp);

/* True if a response to this request method with this status carries no body. */
bool http1_response_has_no_body(uint8_t method_id, uint16_t status);

enum chunk_state {
	CHUNK_SIZE = 0,
	CHUNK_SIZE_EXT,
	CHUNK_SIZE_LF,
	CHUNK_DATA,
	CHUNK_DATA_CR,
	CHUNK_DATA_LF,
	CHUNK_TRAILER_START,
	CHUNK_TRAILER_LINE,
	CHUNK_TRAILER_LF,
	CHUNK_FINAL_LF,
	CHUNK_DONE
};

/* Incremental validator of a chunked body that is forwarded as it is (framing kept). */
struct chunk_scanner {
	uint8_t state;         /* enum chunk_state */
	uint8_t size_digits;
	uint32_t line_len;     /* bytes of the current size or trailer line */
	uint64_t remaining;    /* data bytes left in the current chunk */
	uint64_t data_bytes;   /* decoded body bytes seen so far */
	uint32_t trailer_bytes;
};

/* Consumes bytes of a chunked body. Returns the number of bytes that belong to the body (stops right
 * after the final CRLF, so bytes of a next pipelined message are not consumed), or
 * -(enum rw_reason) (RW_BAD_CHUNK) on malformed framing. *done is set once the body is complete. */
ssize_t chunk_scan(struct chunk_scanner *s, const char *p, size_t len, bool *done);

#endif
