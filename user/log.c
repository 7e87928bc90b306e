/* log.c — log lines to stderr, and the JSON line of an access-log record. */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "writer.h"

static enum log_level min_level = LOG_INFO;
static __thread char thread_name[24] = "main";

void log_set_level(enum log_level min)
{
	min_level = min;
}

void log_set_thread_name(const char *name)
{
	snprintf(thread_name, sizeof thread_name, "%s", name);
}

/* The UTC time with milliseconds: "2024-05-01T12:34:56.789Z". */
static void put_time(struct writer *w)
{
	struct timespec ts;
	struct tm tm;
	char date[32];
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	w_put(w, date, strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm));
	w_put(w, ".", 1);
	w_u64_pad(w, (uint64_t)(ts.tv_nsec / 1000000), 3);
	w_put(w, "Z", 1);
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	if (lvl < min_level)
		return;
	char line[1024];
	struct writer w = writer_init(line, sizeof line);
	put_time(&w);
	w_put(&w, " ", 1);
	w_str(&w, names[lvl]);
	w_str(&w, " [");
	w_str(&w, thread_name);
	w_str(&w, "] ");
	size_t n = writer_len(&w);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	n = (m < 0) ? n : (n + (size_t)m >= sizeof line - 1 ? sizeof line - 2 : n + (size_t)m);
	line[n++] = '\n';
	/* one write per line so that lines of different threads never interleave */
	ssize_t wr = write(STDERR_FILENO, line, n);
	(void)wr;
}

size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
	struct writer w = writer_init(out, cap);
	w_json(&w, s, len, cap);
	return writer_len(&w);
}

/* A JSON string of s as it is, or null. */
static void put_string_or_null(struct writer *w, const char *s)
{
	if (!s) {
		w_str(w, "null");
		return;
	}
	w_put(w, "\"", 1);
	w_str(w, s);
	w_put(w, "\"", 1);
}

size_t access_record_format(const struct access_record *r, char *out, size_t cap)
{
	struct writer w = writer_init(out, cap);
	w_str(&w, "{\"ts\":\"");
	put_time(&w);
	w_str(&w, "\",\"worker\":");
	w_u64(&w, r->worker);
	w_str(&w, ",\"client\":\"");
	w_str(&w, r->client);
	w_str(&w, "\",\"method\":\"");
	w_json(&w, r->method, r->method_len, 200);
	w_str(&w, "\",\"path\":\"");
	w_json(&w, r->path, r->path_len, 2048);
	w_str(&w, "\",\"status\":");
	w_u64(&w, (uint64_t)r->status);
	w_str(&w, ",\"reason\":\"");
	w_str(&w, r->reason);
	w_str(&w, "\",\"route\":");
	put_string_or_null(&w, r->route);
	w_str(&w, ",\"upstream\":");
	put_string_or_null(&w, r->upstream);
	w_str(&w, ",\"consumer\":");
	put_string_or_null(&w, r->consumer);
	w_str(&w, ",\"bytes_in\":");
	w_u64(&w, r->bytes_in);
	w_str(&w, ",\"bytes_out\":");
	w_u64(&w, r->bytes_out);
	w_str(&w, ",\"duration_ms\":");
	w_ms(&w, r->duration_ms);
	w_str(&w, ",\"upstream_ms\":");
	w_ms(&w, r->upstream_ms);
	w_str(&w, ",\"request_id\":"); /* ids are from trace.h's character sets: nothing to escape */
	put_string_or_null(&w, r->request_id);
	w_str(&w, ",\"trace_id\":");
	put_string_or_null(&w, r->trace_id);
	w_str(&w, ",\"span_id\":");
	put_string_or_null(&w, r->span_id);
	w_str(&w, ",\"parent_span_id\":");
	put_string_or_null(&w, r->parent_span_id);
	w_str(&w, "}\n");
	if (w.overflow) { /* only with route or upstream names of kilobytes: no half a line */
		log_warn("access log: a record of route %s did not fit in %zu bytes, dropped",
			 r->route ? r->route : "(none)", cap);
		return 0;
	}
	return writer_len(&w);
}
