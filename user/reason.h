/* reason.h — why a request was refused or failed: one table maps each reason to its HTTP status,
 * the `reason` field of the access log and the message of the JSON error body. */
#ifndef RINGWAY_REASON_H
#define RINGWAY_REASON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct writer;

/* X(name, status, log_name, message) */
#define RW_REASONS(X)                                                                          \
	X(OK, 200, "ok", "ok")                                                                     \
	X(BAD_REQUEST_LINE, 400, "bad_request_line", "malformed request line")                     \
	X(BAD_URI, 400, "bad_uri", "malformed request target")                                     \
	X(BAD_HEADER, 400, "bad_header", "malformed header field")                                 \
	X(BARE_CR_LF, 400, "bare_cr_lf", "bare CR or LF in the message head")                      \
	X(OBS_FOLD, 400, "obs_fold", "obsolete line folding is not allowed")                       \
	X(BAD_HOST, 400, "bad_host", "missing, duplicate or malformed Host header")                \
	X(BAD_CONTENT_LENGTH, 400, "bad_content_length", "malformed Content-Length")               \
	X(DUPLICATE_CONTENT_LENGTH, 400, "duplicate_content_length",                               \
	  "differing duplicate Content-Length headers")                                            \
	X(CONTENT_LENGTH_WITH_TE, 400, "content_length_with_transfer_encoding",                    \
	  "Content-Length together with Transfer-Encoding")                                        \
	X(BAD_TRANSFER_ENCODING, 400, "bad_transfer_encoding", "unsupported Transfer-Encoding")    \
	X(BAD_CHUNK, 400, "bad_chunked_body", "malformed chunked body")                            \
	X(BAD_EXPECT, 417, "bad_expect", "unsupported Expect header")                              \
	X(UNSUPPORTED_METHOD, 501, "unsupported_method", "method not supported by this gateway")   \
	X(BAD_VERSION, 505, "bad_version", "HTTP version not supported")                           \
	X(HTTP_ON_TLS_PORT, 400, "http_on_tls_port", "this port speaks TLS: use https")          \
	X(HEADER_TIMEOUT, 408, "header_timeout", "request head not received in time")              \
	X(CLIENT_TIMEOUT, 408, "client_timeout", "client stalled during the request")              \
	X(BODY_TOO_LARGE, 413, "body_too_large", "request body too large")                         \
	X(URI_TOO_LONG, 414, "uri_too_long", "request target too long")                            \
	X(HEADERS_TOO_LARGE, 431, "headers_too_large", "request header fields too large")          \
	X(NO_ROUTE, 404, "no_route", "no route matches this request")                              \
	X(MISDIRECTED, 421, "misdirected_host", "this frontend does not serve that host")         \
	X(METHOD_NOT_ALLOWED, 405, "method_not_allowed", "method not allowed on this route")      \
	X(AUTH_MISSING, 401, "auth_missing", "credentials required")                               \
	X(AUTH_FAILED, 401, "auth_failed", "invalid credentials")                                  \
	X(ACL_DENIED, 403, "acl_denied", "not allowed to call this route")                         \
	X(AUTH_BUSY, 503, "auth_busy", "too many credential checks waiting: retry later")           \
	X(INSUFFICIENT_SCOPE, 403, "insufficient_scope", "the token lacks a scope this route needs") \
	X(CORS_ORIGIN_DENIED, 403, "cors_origin_denied", "this origin may not call this route")    \
	X(RATE_LIMITED, 429, "rate_limited", "too many requests")                                  \
	X(CLIENT_CLOSED, 499, "client_closed", "client closed the connection")                     \
	X(UPSTREAM_CONNECT_FAILED, 502, "upstream_connect_failed", "upstream refused the connection") \
	X(UPSTREAM_RESET, 502, "upstream_reset", "upstream closed or reset the connection")        \
	X(UPSTREAM_BAD_RESPONSE, 502, "upstream_bad_response", "upstream sent an invalid response") \
	X(UPSTREAM_TLS_FAILED, 502, "upstream_tls_failed", "TLS with the upstream failed")         \
	X(RATE_LIMIT_UNAVAILABLE, 503, "rate_limit_unavailable",                                   \
	  "the rate-limit store did not answer")                                                   \
	X(UPSTREAM_UNAVAILABLE, 503, "upstream_unavailable", "no upstream connection available")   \
	X(UPSTREAM_CONNECT_TIMEOUT, 504, "upstream_connect_timeout", "upstream connect timed out") \
	X(UPSTREAM_TIMEOUT, 504, "upstream_timeout", "upstream response timed out")                \
	X(AGGREGATE_CALL_FAILED, 502, "aggregate_call_failed", "a required call of the aggregate failed") \
	X(AGGREGATE_MERGE_CONFLICT, 502, "aggregate_merge_conflict",                               \
	  "two calls of the aggregate answered the same key")                                      \
	X(INTERNAL, 500, "internal_error", "internal gateway error")

enum rw_reason {
#define RW_REASON_ENUM(name, status, log, msg) RW_##name,
	RW_REASONS(RW_REASON_ENUM)
#undef RW_REASON_ENUM
	RW_REASON_COUNT
};

int reason_status(enum rw_reason r);
const char *reason_name(enum rw_reason r);
const char *reason_message(enum rw_reason r);
const char *status_text(int status);

/* Writes the head of an answer the gateway makes itself: status line, Content-Type, Content-Length,
 * the extra header lines (may be NULL; each ending in CRLF), X-Request-Id when request_id is not
 * NULL, Connection: close when close, and the blank line. */
void http_head(struct writer *w, int status, const char *type, uint64_t content_length,
	       const char *extra, const char *request_id, bool close);

/* Writes a complete HTTP/1.1 error response (JSON body) into out; returns its length, or 0 if it
 * does not fit. extra (may be NULL) is header lines written as they are, each ending in CRLF
 * ("Allow: GET, HEAD\r\n" for a 405, "WWW-Authenticate: ...\r\n" for a 401); request_id (may be
 * NULL) becomes the X-Request-Id header; close adds Connection: close. */
size_t reason_write_response(enum rw_reason r, const char *extra, const char *request_id, int close,
			     char *out, size_t cap);

#endif
