/* log.c — log lines to stderr and the buffered JSON access log. */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

static size_t format_time(char *out, size_t cap)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	n += snprintf(out + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
	return n;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const char *names[] = { "debug", "info", "warn", "error" };
	if (lvl < min_level)
		return;
	char line[1024];
	size_t n = format_time(line, sizeof line);
	n += snprintf(line + n, sizeof line - n, " %s [%s] ", names[lvl], thread_name);
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
	va_end(ap);
	n = (m < 0) ? n : (n + (size_t)m >= sizeof line - 1 ? sizeof line - 2 : n + (size_t)m);
	line[n++] = '\n';
	/* one write per line so that lines of different threads never interleave */
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

size_t json_escape(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 > cap)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 6 > cap)
				break;
			if (c == '"' || c == '\\') {
				out[o++] = '\\';
				out[o++] = (char)c;
			} else {
				memcpy(out + o, "\\u00", 4);
				out[o + 4] = hex[c >> 4];
				out[o + 5] = hex[c & 15];
				o += 6;
			}
		}
	}
	return o;
}

void access_log_flush(struct access_log *al)
{
	size_t off = 0;
	while (off < al->len) {
		/* whole lines of at most PIPE_BUF bytes: writes to a pipe that big are atomic, so the
		 * lines of different workers never interleave */
		size_t n = al->len - off;
		if (n > PIPE_BUF) {
			n = PIPE_BUF;
			while (n > 1 && al->buf[off + n - 1] != '\n')
				n--;
			if (n == 1)
				n = PIPE_BUF; /* a single line longer than PIPE_BUF */
		}
		ssize_t w = write(al->fd, al->buf + off, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break; /* a full disk must not stop the gateway; the batch is dropped */
		off += (size_t)w;
	}
	al->len = 0;
}

void access_log_write(struct access_log *al, const struct access_record *r)
{
	if (al->fd < 0)
		return;
	if (sizeof al->buf - al->len < 4096)
		access_log_flush(al);
	char *o = al->buf + al->len;
	size_t cap = sizeof al->buf - al->len - 1, n = 0;
	char ts[40];
	format_time(ts, sizeof ts);
	n += (size_t)snprintf(o + n, cap - n, "{\"ts\":\"%s\",\"worker\":%u,\"client\":\"%s\",\"method\":\"", ts,
			      r->worker, r->client);
	n += json_escape(o + n, cap - n > 200 ? 200 : cap - n, r->method, r->method_len);
	n += (size_t)snprintf(o + n, cap - n, "\",\"path\":\"");
	n += json_escape(o + n, cap - n > 2048 ? 2048 : cap - n, r->path, r->path_len);
	n += (size_t)snprintf(o + n, cap - n,
			      "\",\"status\":%d,\"reason\":\"%s\",\"route\":%s%s%s,\"upstream\":%s%s%s,"
			      "\"bytes_in\":%llu,\"bytes_out\":%llu,\"duration_ms\":%.3f,"
			      "\"upstream_ms\":%.3f}\n",
			      r->status, r->reason, r->route ? "\"" : "", r->route ? r->route : "null",
			      r->route ? "\"" : "", r->upstream ? "\"" : "",
			      r->upstream ? r->upstream : "null", r->upstream ? "\"" : "",
			      (unsigned long long)r->bytes_in, (unsigned long long)r->bytes_out,
			      r->duration_ms, r->upstream_ms);
	if (n > cap)
		n = cap;
	al->len += n;
}
