/* trace.h — request tracing and request ids: the W3C Trace Context `traceparent` value parsed
 * strictly and written back, new trace and span ids made from random numbers the caller draws
 * (the worker's generator), and the X-Request-Id a client sent checked or a new one made. Pure
 * functions over caller-owned bytes: no I/O, no allocation, no printf. */
#ifndef RINGWAY_TRACE_H
#define RINGWAY_TRACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_HEX 32    /* 16 bytes */
#define SPAN_ID_HEX 16     /* 8 bytes */
#define TRACEPARENT_LEN 55 /* "00-" trace-id "-" span-id "-" flags */
#define REQUEST_ID_MAX 128 /* longest X-Request-Id kept from a client */
#define REQUEST_ID_GEN 32  /* length of one made here: 16 random bytes in lowercase hex */

/* One request's place in a trace. Every id is lowercase hex and NUL-terminated. */
struct trace_ctx {
	char trace_id[TRACE_ID_HEX + 1];
	char span_id[SPAN_ID_HEX + 1];   /* the gateway's span: the parent-id the upstream sees */
	char parent_id[SPAN_ID_HEX + 1]; /* the client's span; "" when the trace started here */
	char flags[3];
};

/* Parses a traceparent value (https://www.w3.org/TR/trace-context/). Valid: a version of 2
 * lowercase hex digits other than "ff"; version "00" is exactly 55 characters, a higher version
 * is read as 00 in its first 55 characters, which must end the value or be followed by '-'; the
 * trace-id, parent-id and flags are lowercase hex; neither id is all zeros. On success trace_id,
 * parent_id and flags are set (a higher version keeps only the sampled flag, the one bit its
 * flags are known to mean) and span_id is left alone. */
bool trace_parse(const char *s, size_t len, struct trace_ctx *t);
/* The gateway's hop of a trace taken from the client: span_id from r. */
void trace_continue(struct trace_ctx *t, uint64_t r);
/* A new trace (no valid traceparent came): trace_id from hi and lo, span_id from span, no parent,
 * flags "01" (sampled). */
void trace_start(struct trace_ctx *t, uint64_t hi, uint64_t lo, uint64_t span);
/* The traceparent value the upstream gets, "00-<trace_id>-<span_id>-<flags>", into out (not
 * NUL-terminated); returns TRACEPARENT_LEN. */
size_t trace_format(const struct trace_ctx *t, char out[TRACEPARENT_LEN]);

/* Whether an X-Request-Id value from a client is kept: 1 to REQUEST_ID_MAX characters, each one of
 * A-Z a-z 0-9 and . _ : + / = - (UUIDs, base64 and the usual tracer ids fit; nothing that needs
 * escaping in a header, a JSON string or a log line). */
bool request_id_valid(const char *s, size_t len);
/* A new request id from hi and lo: REQUEST_ID_GEN lowercase hex digits and a NUL, into out. */
void request_id_make(char out[REQUEST_ID_GEN + 1], uint64_t hi, uint64_t lo);

#endif
