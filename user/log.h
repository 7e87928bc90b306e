/* log.h — the gateway's own log lines (stderr, one line each, with level and worker) and the
 * access log (one JSON object per request, buffered per worker, written in batches). */
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

/* A per-worker access-log buffer. fd < 0 means access logging is off. */
struct access_log {
	int fd;
	size_t len;
	char buf[32768];
};

/* Appends one record; flushes when the buffer is nearly full. */
struct access_record {
	const char *client;      /* "ip:port" */
	const char *method;
	uint32_t method_len;
	const char *path;
	uint32_t path_len;
	const char *route;       /* NULL when none matched */
	const char *upstream;    /* target address, NULL when none */
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
void access_log_write(struct access_log *al, const struct access_record *r);
void access_log_flush(struct access_log *al);

/* Appends s as a JSON string body (without quotes) to out; returns bytes written (never more than
 * cap, cut before an escape that would cross it). Control and non-ASCII bytes are escaped. A thin
 * wrapper of w_json (writer.h), kept for user/probe.c. */
size_t json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
