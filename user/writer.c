/* writer.c — the writer's pieces that are more than a memcpy: decimals, the access log's
 * milliseconds (exactly as "%.3f", without libm or snprintf on the common path) and JSON escaping. */
#include "writer.h"

#include <stdio.h>

void w_u64_pad(struct writer *w, uint64_t v, unsigned width)
{
	char num[20];
	size_t i = sizeof num;

	do {
		num[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (i > 0 && sizeof num - i < width)
		num[--i] = '0';
	w_put(w, num + i, sizeof num - i);
}

/* round(v * 1000) for 0 <= v < 1e15, computed on the exact binary value of v and rounded to
 * nearest, ties to even, as printf does: v = m * 2^e, so v * 1000 = (m * 1000) * 2^e, and with
 * m < 2^53 the product fits in 63 bits. */
static uint64_t thousandths(double v)
{
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	int biased = (int)(bits >> 52) & 0x7ff;
	uint64_t m = bits & ((1ull << 52) - 1);
	int e = -1074; /* subnormal */
	if (biased) {
		m |= 1ull << 52;
		e = biased - 1075;
	}
	uint64_t n = m * 1000;
	if (e >= 0)
		return n << e; /* below 1e18: v < 1e15 */
	if (e <= -64)
		return 0; /* n < 2^63: less than half of one */
	unsigned sh = (unsigned)-e;
	uint64_t q = n >> sh, rem = n & ((1ull << sh) - 1), half = 1ull << (sh - 1);
	if (rem > half || (rem == half && (q & 1)))
		q++;
	return q;
}

void w_ms(struct writer *w, double v)
{
	if (!(v > -1e15 && v < 1e15)) { /* huge, infinite or NaN: not a duration we measure */
		char tmp[512];
		int n = snprintf(tmp, sizeof tmp, "%.3f", v);
		w_put(w, tmp, (size_t)n);
		return;
	}
	uint64_t bits;
	memcpy(&bits, &v, sizeof bits);
	if (bits >> 63) { /* "%.3f" keeps the sign of -0.0 and of what rounds to it */
		w_put(w, "-", 1);
		v = -v;
	}
	uint64_t t = thousandths(v);
	w_u64(w, t / 1000);
	w_put(w, ".", 1);
	w_u64_pad(w, t % 1000, 3);
}

void w_json(struct writer *w, const char *s, size_t len, size_t max)
{
	static const char hex[] = "0123456789abcdef";
	if (w->overflow)
		return;
	size_t room = w->cap - w->len;
	size_t limit = max < room ? max : room;
	char *out = w->buf + w->len;
	size_t o = 0, i = 0;

	for (; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			if (o + 1 > limit)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 6 > limit) /* room for the longest escape, even for a 2-byte one */
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
	if (i < len && room < max)
		w->overflow = true; /* the room was short, not the cap: nothing of it counts */
	else
		w->len += o;
}
