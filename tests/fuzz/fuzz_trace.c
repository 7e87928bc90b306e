/* fuzz_trace.c — libFuzzer harness of user/trace.c. The input is parsed as a traceparent value and
 * checked as an X-Request-Id. Checked invariants, abort() on violation: the parser agrees with a
 * plain restatement of the rules (version, length, separators, lowercase hex, no all-zero id), a
 * value it accepts gives ids copied from the input and, continued and written back, parses again
 * to the same trace with the gateway's span as parent; the id check agrees with strspn over the
 * allowed set, and an id made from the input's bytes is always valid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace.h"

static void check(bool ok)
{
	if (!ok)
		abort();
}

static bool lower_hex(const char *s, size_t n, bool zero_ok)
{
	if (strspn(s, "0123456789abcdef") < n)
		return false;
	return zero_ok || strspn(s, "0") < n;
}

/* The rules of trace.h, restated over a NUL-terminated copy. */
static bool reference_valid(const char *s, size_t len)
{
	if (len < TRACEPARENT_LEN || strlen(s) < TRACEPARENT_LEN)
		return false;
	if (!lower_hex(s, 2, true) || memcmp(s, "ff", 2) == 0)
		return false;
	if (memcmp(s, "00", 2) == 0 ? len != TRACEPARENT_LEN :
				      len != TRACEPARENT_LEN && s[TRACEPARENT_LEN] != '-')
		return false;
	return s[2] == '-' && lower_hex(s + 3, 32, false) && s[35] == '-' &&
	       lower_hex(s + 36, 16, false) && s[52] == '-' && lower_hex(s + 53, 2, true);
}

static uint64_t bytes_u64(const uint8_t *p, size_t len)
{
	uint64_t v = 0;
	for (size_t i = 0; i < len && i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1); /* exact size plus a NUL for the reference: reads past it are caught */
	memcpy(s, data, size);
	s[size] = '\0';

	struct trace_ctx t;
	bool ok = trace_parse(s, size, &t);
	check(ok == reference_valid(s, size));
	if (ok) {
		check(memcmp(t.trace_id, s + 3, TRACE_ID_HEX) == 0 && t.trace_id[TRACE_ID_HEX] == '\0');
		check(memcmp(t.parent_id, s + 36, SPAN_ID_HEX) == 0 && t.parent_id[SPAN_ID_HEX] == '\0');
		check(strlen(t.flags) == 2 && lower_hex(t.flags, 2, true));
		trace_continue(&t, bytes_u64(data, size));
		char out[TRACEPARENT_LEN];
		check(trace_format(&t, out) == TRACEPARENT_LEN);
		struct trace_ctx back;
		check(trace_parse(out, TRACEPARENT_LEN, &back));
		check(strcmp(back.trace_id, t.trace_id) == 0 && strcmp(back.parent_id, t.span_id) == 0 &&
		      strcmp(back.flags, t.flags) == 0);
	}

	static const char id_chars[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:+/=-";
	bool id_ok = request_id_valid(s, size);
	check(id_ok == (size >= 1 && size <= REQUEST_ID_MAX && strspn(s, id_chars) == size));

	char id[REQUEST_ID_GEN + 1];
	request_id_make(id, bytes_u64(data, size), size > 8 ? bytes_u64(data + 8, size - 8) : 0);
	check(strlen(id) == REQUEST_ID_GEN && request_id_valid(id, REQUEST_ID_GEN));
	free(s);
	return 0;
}
