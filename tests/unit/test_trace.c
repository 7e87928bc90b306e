/* test_trace.c — unit tests of user/trace.c: the traceparent parser's accept and reject cases
 * (versions, lengths, case, all-zero ids, version ff, what may follow a version 00 value and a
 * higher version's), the ids and the value written back, and X-Request-Id validation. */
#include <criterion/criterion.h>
#include <string.h>

#include "trace.h"

#define TP "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

static bool parses(const char *s, struct trace_ctx *t)
{
	return trace_parse(s, strlen(s), t);
}

static bool accepted(const char *s)
{
	struct trace_ctx t;
	return parses(s, &t);
}

Test(traceparent, version_00_keeps_trace_id_parent_and_flags)
{
	struct trace_ctx t;
	memset(&t, 'x', sizeof t);
	cr_assert(parses(TP, &t));
	cr_assert_str_eq(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	cr_assert_str_eq(t.parent_id, "00f067aa0ba902b7");
	cr_assert_str_eq(t.flags, "01");
	cr_assert(parses("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", &t));
	cr_assert_str_eq(t.flags, "00");
	/* flags this version does not define are passed on as they came */
	cr_assert(parses("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff", &t));
	cr_assert_str_eq(t.flags, "ff");
}

Test(traceparent, version_00_is_exactly_55_characters)
{
	cr_assert(!accepted(""));
	cr_assert(!accepted("00"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0"));
	cr_assert(!accepted(TP "-"));
	cr_assert(!accepted(TP "-abc"));
	cr_assert(!accepted(TP "0"));
	cr_assert(!accepted(TP " "));
	/* the id lengths are fixed: a dash one place off fails */
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e47360-0f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701"));
	cr_assert(!accepted("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7_01"));
}

Test(traceparent, lowercase_hex_only)
{
	cr_assert(!accepted("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"));
	cr_assert(!accepted("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"));
	cr_assert(!accepted("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7- 1"));
}

Test(traceparent, all_zero_ids_are_invalid)
{
	cr_assert(!accepted("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));
	cr_assert(!accepted("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));
	cr_assert(accepted("00-00000000000000000000000000000001-0000000000000001-00"));
}

Test(traceparent, version_ff_is_invalid)
{
	cr_assert(!accepted("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
	cr_assert(!accepted("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-ab"));
}

Test(traceparent, a_higher_version_is_read_as_00_in_its_first_55_characters)
{
	struct trace_ctx t;
	cr_assert(parses("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", &t));
	cr_assert_str_eq(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
	cr_assert_str_eq(t.parent_id, "00f067aa0ba902b7");
	cr_assert_str_eq(t.flags, "01");
	cr_assert(parses("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-what-ever", &t));
	cr_assert_str_eq(t.flags, "01", "only the sampled bit of an unknown version is kept");
	cr_assert(parses("fe-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-fe-", &t));
	cr_assert_str_eq(t.flags, "00");
	/* after the 55 characters: the end or a dash, nothing else */
	cr_assert(!accepted("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-010"));
	cr_assert(!accepted("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 "));
	/* shorter is never valid, and its fields are as strict as 00's */
	cr_assert(!accepted("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1"));
	cr_assert(!accepted("01-4bf92f3577b34da6a3ce929d0e0e4736-00F067aa0ba902b7-01"));
	cr_assert(!accepted("01-00000000000000000000000000000000-00f067aa0ba902b7-01"));
}

Test(traceparent, a_value_with_a_nul_is_read_by_its_length)
{
	char v[56];
	memcpy(v, TP, 55);
	v[54] = '\0';
	struct trace_ctx t;
	cr_assert(!trace_parse(v, 55, &t));
	cr_assert(!trace_parse(TP, 54, &t));
	cr_assert(trace_parse(TP, 55, &t));
}

Test(traceparent, continued_trace_gets_a_new_span_and_is_written_back)
{
	struct trace_ctx t;
	cr_assert(parses(TP, &t));
	trace_continue(&t, 0x0123456789abcdefull);
	cr_assert_str_eq(t.span_id, "0123456789abcdef");
	cr_assert_str_eq(t.parent_id, "00f067aa0ba902b7");
	char out[TRACEPARENT_LEN];
	cr_assert_eq(trace_format(&t, out), TRACEPARENT_LEN);
	cr_assert(memcmp(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-0123456789abcdef-01",
			 TRACEPARENT_LEN) == 0, "%.55s", out);
	/* what is written parses back to the same trace, with our span as its parent */
	struct trace_ctx back;
	cr_assert(trace_parse(out, TRACEPARENT_LEN, &back));
	cr_assert_str_eq(back.trace_id, t.trace_id);
	cr_assert_str_eq(back.parent_id, t.span_id);
	cr_assert_str_eq(back.flags, t.flags);
}

Test(traceparent, new_trace_from_random_numbers)
{
	struct trace_ctx t;
	trace_start(&t, 0xfedcba9876543210ull, 0x0000000000000001ull, 0xa5a5a5a5a5a5a5a5ull);
	cr_assert_str_eq(t.trace_id, "fedcba98765432100000000000000001");
	cr_assert_str_eq(t.span_id, "a5a5a5a5a5a5a5a5");
	cr_assert_str_eq(t.parent_id, "");
	cr_assert_str_eq(t.flags, "01");
	char out[TRACEPARENT_LEN];
	trace_format(&t, out);
	cr_assert(trace_parse(out, sizeof out, &t));
	/* zeros from the generator never make an invalid id */
	trace_start(&t, 0, 0, 0);
	cr_assert_str_eq(t.trace_id, "00000000000000000000000000000001");
	cr_assert_str_eq(t.span_id, "0000000000000001");
	trace_format(&t, out);
	cr_assert(trace_parse(out, sizeof out, &t));
}

Test(request_id, valid_ids)
{
	cr_assert(request_id_valid("a", 1));
	cr_assert(request_id_valid("f47ac10b-58cc-4372-a567-0e02b2c3d479", 36));
	cr_assert(request_id_valid("AZaz09._:+/=-", 13));
	char max[REQUEST_ID_MAX + 1];
	memset(max, 'k', sizeof max);
	cr_assert(request_id_valid(max, REQUEST_ID_MAX));
	cr_assert(!request_id_valid(max, REQUEST_ID_MAX + 1));
}

Test(request_id, invalid_ids)
{
	cr_assert(!request_id_valid("", 0));
	static const char *const bad[] = { "a b", "a\"b", "a\\b", "a,b", "a;b", "<x>", "a\tb", "é",
					   "a%20b", "{}", "a\x7f", "a@b" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert(!request_id_valid(bad[i], strlen(bad[i])), "%s", bad[i]);
	cr_assert(!request_id_valid("ab\0c", 4));
}

Test(request_id, made_ids_are_32_lowercase_hex_and_valid)
{
	char id[REQUEST_ID_GEN + 1];
	memset(id, 'x', sizeof id);
	request_id_make(id, 0x0af7651916cd43ddull, 0x8448eb211c80319cull);
	cr_assert_str_eq(id, "0af7651916cd43dd8448eb211c80319c");
	cr_assert(request_id_valid(id, strlen(id)));
}
