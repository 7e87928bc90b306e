/* slice.h — a view of bytes inside a buffer owned by someone else (no copy, not NUL-terminated). */
#ifndef RINGWAY_SLICE_H
#define RINGWAY_SLICE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

struct slice {
	const char *p;
	uint32_t len;
};

#define SLICE_LIT(s) ((struct slice){ (s), sizeof(s) - 1 })

static inline struct slice slice_make(const char *p, size_t len)
{
	return (struct slice){ p, (uint32_t)len };
}

static inline bool slice_eq(struct slice a, const char *s, size_t n)
{
	return a.len == n && memcmp(a.p, s, n) == 0;
}

static inline char ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c + ('a' - 'A')) : c;
}

/* Equal ignoring ASCII case (header names, schemes): no locale, inlined. */
static inline bool slice_ieq(struct slice a, const char *s, size_t n)
{
	if (a.len != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (ascii_lower(a.p[i]) != ascii_lower(s[i]))
			return false;
	return true;
}

#endif
