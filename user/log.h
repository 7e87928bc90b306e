/* log.h — the gateway's own log lines (stderr, one line each, with level and worker) and the
 * access log's record (one JSON object per request; access_log.h writes them). */
#ifndef RINGWAY_LOG_H
#define RINGWAY_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_set_level(enum log_level min);
/* The calling thread's name in log lines ("main", "worker 0"). */
void log_set_thread_name(const char *name);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* One access-log record: the fields of a finished (or refused) request. */
struct access_record {
	const char *client;      /* "ip:port" */
	const char *method;
	uint32_t method_len;
	const char *path;
	uint32_t path_len;
	const char *route;       /* NULL when none matched */
	const char *upstream;    /* target address, NULL when none */
	const char *consumer;    /* who the route's authentication found; NULL when none */
	int status;
	const char *reason;
	uint64_t bytes_in;       /* request bytes received (head + body) */
	uint64_t bytes_out;      /* response bytes sent */
	double duration_ms;
	double upstream_ms;      /* -1 when no upstream was asked */
	unsigned worker;
	const char *request_id;     /* NULL when none */
	const char *trace_id;       /* NULL when the request had no exchange */
	const char *span_id;        /* the gateway's span */
	const char *parent_span_id; /* the client's span; NULL when the trace started here */
};
/* Writes the record as one JSON line into out; returns its length, or 0 when it does not fit in
 * cap (said in a log line: only route or upstream names of kilobytes do that). The writer of the
 * lines is access_log.h. */
size_t access_record_format(const struct access_record *r, char *out, size_t cap);

/* Appends s as a JSON string body (without quotes) to out; returns bytes written (never more than
 * cap, cut before an escape that would cross it). Control and non-ASCII bytes are escaped. A thin
 * wrapper of w_json (writer.h), kept for user/probe.c. */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
