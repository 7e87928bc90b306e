/* writer.h — owns the bounded appender that HTTP heads, error responses and log records are built
 * with, without snprintf: bytes, strings, slices, decimals, the access log's milliseconds, JSON
 * string bodies and header lines, into a caller's buffer. A piece that does not fit is not written
 * at all: the writer remembers the overflow, and every later piece is dropped too, so the bytes
 * written are always a prefix of whole pieces and never pass the buffer's end. */
#ifndef RINGWAY_WRITER_H
#define RINGWAY_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "slice.h"

struct writer {
	char *buf;
	size_t cap;
	size_t len;
	bool overflow; /* a piece did not fit: buf[0..len) lacks it and all that came after */
};

static inline struct writer writer_init(char *buf, size_t cap)
{
	return (struct writer){ buf, cap, 0, false };
}

static inline size_t writer_len(const struct writer *w)
{
	return w->len;
}

/* n bytes at p. */
static inline void w_put(struct writer *w, const void *p, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->buf + w->len, p, n);
	w->len += n;
}

/* A NUL-terminated string, without its NUL. */
static inline void w_str(struct writer *w, const char *s)
{
	w_put(w, s, strlen(s));
}

static inline void w_slice(struct writer *w, struct slice s)
{
	w_put(w, s.p, s.len);
}

/* v in decimal, zero-padded to at least `width` digits (at most 20). */
void w_u64_pad(struct writer *w, uint64_t v, unsigned width);

/* v in decimal ("0", "18446744073709551615"). */
static inline void w_u64(struct writer *w, uint64_t v)
{
	w_u64_pad(w, v, 1);
}

/* v with three decimals, byte for byte what printf's "%.3f" prints ("12.346", "-1.000"). */
void w_ms(struct writer *w, double v);

/* s[0..len) as the body of a JSON string (no quotes): '"' and '\' backslashed, control and
 * non-ASCII bytes as \u00XX. At most `max` bytes are written: the text is cut before a byte that
 * would cross it, and before any escaped byte when fewer than 6 bytes (the longest escape) are left
 * under it, as the access log always cut (a field capped on purpose, not an overflow). Running out
 * of room before `max` is an overflow. */
void w_json(struct writer *w, const char *s, size_t len, size_t max);
/* s (NUL-terminated) as a whole JSON string, quotes included. */
static inline void w_json_quoted(struct writer *w, const char *s)
{
	w_put(w, "\"", 1);
	w_json(w, s, strlen(s), SIZE_MAX);
	w_put(w, "\"", 1);
}

/* A header line "Name: value\r\n". */
static inline void w_header(struct writer *w, struct slice name, struct slice value)
{
	w_slice(w, name);
	w_put(w, ": ", 2);
	w_slice(w, value);
	w_put(w, "\r\n", 2);
}

/* A header line with a decimal value ("Content-Length: 42\r\n"). */
static inline void w_header_u64(struct writer *w, struct slice name, uint64_t v)
{
	w_slice(w, name);
	w_put(w, ": ", 2);
	w_u64(w, v);
	w_put(w, "\r\n", 2);
}

#endif
