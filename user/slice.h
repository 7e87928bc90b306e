/* slice.h — a view of bytes inside a buffer owned by someone else (no copy, not NUL-terminated). */
#ifndef RINGWAY_SLICE_H
#define RINGWAY_SLICE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

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

static inline bool slice_ieq(struct slice a, const char *s, size_t n)
{
	return a.len == n && strncasecmp(a.p, s, n) == 0;
}

#endif
