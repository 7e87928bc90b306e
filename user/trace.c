/* trace.c — the W3C traceparent parser and writer, trace and span ids, X-Request-Id validation and
 * generation (see trace.h). Hex goes through a 16-entry table: this runs for every request. */
#include "trace.h"

#include <string.h>

static const char hex_digits[16] = "0123456789abcdef";

/* v as 16 lowercase hex digits, most significant first. */
static void hex64(char *out, uint64_t v)
{
	for (int i = 15; i >= 0; i--) {
		out[i] = hex_digits[v & 0xf];
		v >>= 4;
	}
}

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int hex_value(char c)
{
	return c <= '9' ? c - '0' : c - 'a' + 10;
}

/* n lowercase hex digits, not all of them zero (allow_zero: or all zero). */
static bool hex_field(const char *s, size_t n, bool allow_zero)
{
	bool nonzero = allow_zero;
	for (size_t i = 0; i < n; i++) {
		if (!is_lower_hex(s[i]))
			return false;
		nonzero |= s[i] != '0';
	}
	return nonzero;
}

bool trace_parse(const char *s, size_t len, struct trace_ctx *t)
{
	if (len < TRACEPARENT_LEN || !hex_field(s, 2, true) || (s[0] == 'f' && s[1] == 'f'))
		return false;
	bool v00 = s[0] == '0' && s[1] == '0';
	if (len > TRACEPARENT_LEN && (v00 || s[TRACEPARENT_LEN] != '-'))
		return false;
	if (s[2] != '-' || s[35] != '-' || s[52] != '-')
		return false;
	if (!hex_field(s + 3, TRACE_ID_HEX, false) || !hex_field(s + 36, SPAN_ID_HEX, false) ||
	    !hex_field(s + 53, 2, true))
		return false;
	memcpy(t->trace_id, s + 3, TRACE_ID_HEX);
	t->trace_id[TRACE_ID_HEX] = '\0';
	memcpy(t->parent_id, s + 36, SPAN_ID_HEX);
	t->parent_id[SPAN_ID_HEX] = '\0';
	t->flags[0] = v00 ? s[53] : '0';
	t->flags[1] = v00 ? s[54] : hex_digits[hex_value(s[54]) & 1];
	t->flags[2] = '\0';
	return true;
}

/* An id is never all zeros (xorshift64* never gives 0, but the caller's generator may change). */
static uint64_t nonzero(uint64_t v)
{
	return v ? v : 1;
}

void trace_continue(struct trace_ctx *t, uint64_t r)
{
	hex64(t->span_id, nonzero(r));
	t->span_id[SPAN_ID_HEX] = '\0';
}

void trace_start(struct trace_ctx *t, uint64_t hi, uint64_t lo, uint64_t span)
{
	hex64(t->trace_id, hi);
	hex64(t->trace_id + 16, hi | lo ? lo : 1); /* never all zeros */
	t->trace_id[TRACE_ID_HEX] = '\0';
	trace_continue(t, span);
	t->parent_id[0] = '\0';
	memcpy(t->flags, "01", 3);
}

size_t trace_format(const struct trace_ctx *t, char out[TRACEPARENT_LEN])
{
	memcpy(out, "00-", 3);
	memcpy(out + 3, t->trace_id, TRACE_ID_HEX);
	out[35] = '-';
	memcpy(out + 36, t->span_id, SPAN_ID_HEX);
	out[52] = '-';
	memcpy(out + 53, t->flags, 2);
	return TRACEPARENT_LEN;
}

static bool request_id_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == ':' || c == '+' || c == '/' || c == '=' || c == '-';
}

bool request_id_valid(const char *s, size_t len)
{
	if (len == 0 || len > REQUEST_ID_MAX)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!request_id_char((unsigned char)s[i]))
			return false;
	return true;
}

void request_id_make(char out[REQUEST_ID_GEN + 1], uint64_t hi, uint64_t lo)
{
	hex64(out, hi);
	hex64(out + 16, lo);
	out[REQUEST_ID_GEN] = '\0';
}
