/* test_writer.c — unit tests of the bounded appender (user/writer.c) and of what is written with it:
 * exact output of each piece, overflow at every capacity (nothing past the end, only whole pieces),
 * the milliseconds against printf's "%.3f", JSON escaping, the error responses of user/reason.c
 * and the access-log record of user/log.c, byte for byte. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "reason.h"
#include "writer.h"

#define GUARD 16
#define GUARD_BYTE '\xa5'

static void assert_bytes(const char *got, size_t got_len, const char *want, size_t want_len)
{
	cr_assert_eq(got_len, want_len, "length %zu, want %zu: \"%.*s\"", got_len, want_len,
		     (int)got_len, got);
	cr_assert(memcmp(got, want, want_len) == 0, "got \"%.*s\", want \"%.*s\"", (int)got_len, got,
		  (int)want_len, want);
}

/* ---- pieces ------------------------------------------------------------------------------- */

/* Every kind of piece once; what it writes is `whole` below. */
static void write_pieces(struct writer *w)
{
	w_put(w, "GET", 3);
	w_str(w, " /a");
	w_slice(w, SLICE_LIT("?q"));
	w_put(w, " ", 1);
	w_u64(w, 1234567);
	w_put(w, "|", 1);
	w_u64_pad(w, 7, 3);
	w_put(w, "|", 1);
	w_ms(w, 12.3456);
	w_put(w, "|", 1);
	w_json(w, "a\"b\\c\n\xe9", 7, SIZE_MAX);
	w_put(w, "|", 1);
	w_header(w, SLICE_LIT("Allow"), SLICE_LIT("GET, HEAD"));
	w_header_u64(w, SLICE_LIT("Content-Length"), 42);
}

static const char whole[] = "GET /a?q 1234567|007|12.346|a\\\"b\\\\c\\u000a\\u00e9|"
			    "Allow: GET, HEAD\r\nContent-Length: 42\r\n";

Test(writer, exact_output)
{
	char buf[256];
	struct writer w = writer_init(buf, sizeof buf);
	write_pieces(&w);
	cr_assert(!w.overflow);
	assert_bytes(buf, writer_len(&w), whole, sizeof whole - 1);
}

Test(writer, empty_pieces_fit_in_nothing)
{
	char buf[1];
	struct writer w = writer_init(buf, 0);
	w_put(&w, "", 0);
	w_str(&w, "");
	w_json(&w, "", 0, SIZE_MAX);
	cr_assert(!w.overflow);
	cr_assert_eq(writer_len(&w), 0);
	w_put(&w, "x", 1);
	cr_assert(w.overflow);
	cr_assert_eq(writer_len(&w), 0);
}

/* At every capacity: nothing written past it, the flag set exactly when the whole does not fit,
 * and what was written is a prefix of the whole that ends between two pieces. */
Test(writer, overflow_at_every_capacity)
{
	size_t full = sizeof whole - 1;

	for (size_t cap = 0; cap <= full + 1; cap++) {
		char buf[256 + GUARD];
		memset(buf, GUARD_BYTE, sizeof buf);
		struct writer w = writer_init(buf, cap);
		write_pieces(&w);
		for (size_t i = cap; i < cap + GUARD; i++)
			cr_assert_eq(buf[i], GUARD_BYTE, "cap %zu: byte %zu written past the end", cap, i);
		cr_assert_eq(w.overflow, cap < full, "cap %zu", cap);
		cr_assert_leq(writer_len(&w), cap);
		cr_assert(memcmp(buf, whole, writer_len(&w)) == 0, "cap %zu: not a prefix", cap);
		/* after an overflow nothing more is taken, even a piece that would fit */
		size_t len = writer_len(&w);
		if (w.overflow && cap > len) {
			w_put(&w, "z", 1);
			cr_assert_eq(writer_len(&w), len, "cap %zu: a piece taken after an overflow", cap);
		}
	}
}

Test(writer, u64_extremes)
{
	char buf[32];
	struct writer w = writer_init(buf, sizeof buf);
	w_u64(&w, 0);
	w_put(&w, " ", 1);
	w_u64(&w, UINT64_MAX);
	w_put(&w, " ", 1);
	w_u64(&w, 10);
	assert_bytes(buf, writer_len(&w), "0 18446744073709551615 10", 25);

	w = writer_init(buf, sizeof buf);
	w_u64_pad(&w, 0, 3);
	w_u64_pad(&w, 999, 3);
	w_u64_pad(&w, 1000, 3);
	w_u64_pad(&w, 5, 0);
	w_u64_pad(&w, 1, 25); /* capped at 20 digits */
	assert_bytes(buf, writer_len(&w), "0009991000500000000000000000001", 31);

	w = writer_init(buf, 19); /* UINT64_MAX needs 20 */
	w_u64(&w, UINT64_MAX);
	cr_assert(w.overflow);
	cr_assert_eq(writer_len(&w), 0);
}

/* ---- milliseconds ------------------------------------------------------------------------- */

static void assert_ms_like_printf(double v)
{
	char want[512], got[512];
	int n = snprintf(want, sizeof want, "%.3f", v);
	struct writer w = writer_init(got, sizeof got);
	w_ms(&w, v);
	cr_assert(!w.overflow);
	cr_assert(writer_len(&w) == (size_t)n && memcmp(got, want, (size_t)n) == 0,
		  "%.17g: got \"%.*s\", printf \"%s\"", v, (int)writer_len(&w), got, want);
}

Test(writer, ms_special_values)
{
	static const double values[] = {
		0, -0.0, -1, 1, 0.0005, 0.0015, 0.0025, 0.0625, 0.1875, 1.0005, 2.0015, 0.9995,
		0.9999, 999.9995, 1e-320, 5e-324, 1e-5, 0.000499999, 0.0004999999999999999,
		123456.789, 4503599627370.4965, 999999999999999.9, 1e15, -1e15, 1e16, 1e300, -1e300,
		1.7976931348623157e308, 0.5e-3, -0.0004, -0.0005, -0.0015, -2.5e-3, INFINITY,
		-INFINITY, NAN,
	};
	for (size_t i = 0; i < sizeof values / sizeof values[0]; i++)
		assert_ms_like_printf(values[i]);
}

/* What the gateway logs: nanosecond differences / 1e6, and every thousandth +- half of one. */
Test(writer, ms_like_printf_for_many_values)
{
	srand(7);
	for (uint64_t ns = 0; ns < 3000000; ns += 37)
		assert_ms_like_printf((double)ns / 1e6);
	for (int k = 0; k < 200000; k++) {
		assert_ms_like_printf(k / 1000.0);
		assert_ms_like_printf(k / 1000.0 + 0.0005);
		assert_ms_like_printf(k * 0.0005);
	}
	for (int k = 0; k < 200000; k++) {
		uint64_t ns = ((uint64_t)rand() << 31 | (uint64_t)rand()) % 100000000000000ull;
		assert_ms_like_printf((double)ns / 1e6);
		uint64_t bits = (uint64_t)rand() << 33 ^ (uint64_t)rand() << 11 ^ (uint64_t)rand();
		double d;
		memcpy(&d, &bits, sizeof d);
		assert_ms_like_printf(d); /* any double at all, sign and exponent included */
	}
}

/* ---- JSON --------------------------------------------------------------------------------- */

Test(writer, json_escapes)
{
	char buf[128];
	struct writer w = writer_init(buf, sizeof buf);
	static const char in[] = "q\"b\\s/\x01\x1f\x7f\x80\xff\t~ ";
	w_json(&w, in, sizeof in - 1, SIZE_MAX);
	static const char want[] = "q\\\"b\\\\s/\\u0001\\u001f\\u007f\\u0080\\u00ff\\u0009~ ";
	assert_bytes(buf, writer_len(&w), want, sizeof want - 1);
	cr_assert(!w.overflow);

	w = writer_init(buf, sizeof buf);
	w_json(&w, "a\0b", 3, SIZE_MAX);
	assert_bytes(buf, writer_len(&w), "a\\u0000b", 8);
}

/* A cap cuts before a byte that would cross it, and before an escaped byte with fewer than 6 bytes
 * left under it; it is no overflow. */
Test(writer, json_max_cuts_at_an_escape)
{
	char buf[64];
	for (size_t max = 0; max <= 10; max++) {
		struct writer w = writer_init(buf, sizeof buf);
		w_json(&w, "ab\"\x01", 4, max);
		static const size_t keep[] = { 0, 1, 2, 2, 2, 2, 2, 2, 4, 4, 10 };
		cr_assert(!w.overflow, "max %zu", max);
		cr_assert_eq(writer_len(&w), keep[max], "max %zu", max);
		cr_assert(memcmp(buf, "ab\\\"\\u0001", writer_len(&w)) == 0);
	}
}

/* Out of room before the cap: an overflow, and none of it is kept. */
Test(writer, json_out_of_room_overflows)
{
	for (size_t cap = 0; cap < 10; cap++) {
		char buf[10 + GUARD];
		memset(buf, GUARD_BYTE, sizeof buf);
		struct writer w = writer_init(buf, cap);
		w_json(&w, "ab\"\x01", 4, 200);
		cr_assert(w.overflow, "cap %zu", cap);
		cr_assert_eq(writer_len(&w), 0);
		for (size_t i = cap; i < sizeof buf; i++)
			cr_assert_eq(buf[i], GUARD_BYTE, "cap %zu: byte %zu written past the end", cap, i);
	}
	char buf[10];
	struct writer w = writer_init(buf, sizeof buf);
	w_json(&w, "ab\"\x01", 4, 200);
	cr_assert(!w.overflow);
	assert_bytes(buf, writer_len(&w), "ab\\\"\\u0001", 10);
}

Test(writer, json_escape_wrapper_truncates_like_before)
{
	char buf[8];
	cr_assert_eq(json_escape(buf, sizeof buf, "abc\x01", 4), 3);
	cr_assert_eq(json_escape(buf, sizeof buf, "ab\"c", 4), 5);
	cr_assert(memcmp(buf, "ab\\\"c", 5) == 0);
}

/* ---- reason_write_response ---------------------------------------------------------------- */

static void assert_response(enum rw_reason r, const char *extra, const char *request_id, int close,
			    const char *want)
{
	char buf[512 + GUARD];
	size_t want_len = strlen(want);
	size_t n = reason_write_response(r, extra, request_id, close, buf, sizeof buf);
	assert_bytes(buf, n, want, want_len);
	/* exactly enough room is enough; one byte less gives 0 and nothing past the end */
	cr_assert_eq(reason_write_response(r, extra, request_id, close, buf, want_len), want_len);
	memset(buf, GUARD_BYTE, sizeof buf);
	cr_assert_eq(reason_write_response(r, extra, request_id, close, buf, want_len - 1), 0);
	cr_assert_eq(buf[want_len - 1], GUARD_BYTE);
}

Test(reason, error_responses_byte_for_byte)
{
	assert_response(RW_NO_ROUTE, NULL, NULL, 0,
			"HTTP/1.1 404 Not Found\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 87\r\n"
			"\r\n"
			"{\"error\":{\"status\":404,\"reason\":\"no_route\","
			"\"message\":\"no route matches this request\"}}\n");
	assert_response(RW_METHOD_NOT_ALLOWED, "Allow: GET, HEAD\r\n", NULL, 0,
			"HTTP/1.1 405 Method Not Allowed\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 100\r\n"
			"Allow: GET, HEAD\r\n"
			"\r\n"
			"{\"error\":{\"status\":405,\"reason\":\"method_not_allowed\","
			"\"message\":\"method not allowed on this route\"}}\n");
	assert_response(RW_BAD_REQUEST_LINE, NULL, NULL, 1,
			"HTTP/1.1 400 Bad Request\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 88\r\n"
			"Connection: close\r\n"
			"\r\n"
			"{\"error\":{\"status\":400,\"reason\":\"bad_request_line\","
			"\"message\":\"malformed request line\"}}\n");
	assert_response(RW_METHOD_NOT_ALLOWED, "Allow: POST\r\n", NULL, 1,
			"HTTP/1.1 405 Method Not Allowed\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 100\r\n"
			"Allow: POST\r\n"
			"Connection: close\r\n"
			"\r\n"
			"{\"error\":{\"status\":405,\"reason\":\"method_not_allowed\","
			"\"message\":\"method not allowed on this route\"}}\n");
}

/* The request's id goes back with the gateway's own answers, after Allow, before Connection. */
Test(reason, error_responses_carry_the_request_id)
{
	assert_response(RW_UPSTREAM_CONNECT_FAILED, NULL, "0af7651916cd43dd8448eb211c80319c", 0,
			"HTTP/1.1 502 Bad Gateway\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 104\r\n"
			"X-Request-Id: 0af7651916cd43dd8448eb211c80319c\r\n"
			"\r\n"
			"{\"error\":{\"status\":502,\"reason\":\"upstream_connect_failed\","
			"\"message\":\"upstream refused the connection\"}}\n");
	assert_response(RW_METHOD_NOT_ALLOWED, "Allow: GET\r\n", "req-1", 1,
			"HTTP/1.1 405 Method Not Allowed\r\n"
			"Content-Type: application/json\r\n"
			"Content-Length: 100\r\n"
			"Allow: GET\r\n"
			"X-Request-Id: req-1\r\n"
			"Connection: close\r\n"
			"\r\n"
			"{\"error\":{\"status\":405,\"reason\":\"method_not_allowed\","
			"\"message\":\"method not allowed on this route\"}}\n");
}

/* ---- access_record_format ------------------------------------------------------------------ */

static size_t logged(const struct access_record *r, char *out, size_t cap)
{
	size_t n = access_record_format(r, out, cap);
	cr_assert_gt(n, 0);
	return n;
}

/* The record after its timestamp, which is checked for its shape only. */
static void assert_record(const struct access_record *r, const char *want_after_ts)
{
	char buf[8192];
	size_t n = logged(r, buf, sizeof buf);
	static const char head[] = "{\"ts\":\"";
	cr_assert(n > 31 && memcmp(buf, head, 7) == 0, "%.*s", (int)n, buf);
	const char *ts = buf + 7; /* 2024-05-01T12:34:56.789Z */
	for (int i = 0; i < 24; i++) {
		bool digit = ts[i] >= '0' && ts[i] <= '9';
		char sep = i == 4 || i == 7 ? '-' : i == 10 ? 'T' : i == 13 || i == 16 ? ':' :
			   i == 19 ? '.' : i == 23 ? 'Z' : 0;
		cr_assert(sep ? ts[i] == sep : digit, "timestamp %.24s", ts);
	}
	assert_bytes(ts + 24, n - 31, want_after_ts, strlen(want_after_ts));
}

Test(log, access_record_byte_for_byte)
{
	struct access_record r = {
		.client = "127.0.0.1:5555", .method = "GET", .method_len = 3,
		.path = "/api/\"x\"\x01", .path_len = 9, .route = "users", .upstream = "127.0.0.1:9101",
		.consumer = "mobile-app", .status = 200, .reason = "ok", .bytes_in = 78, .bytes_out = 18446744073709551615ull,
		.duration_ms = 1.2345, .upstream_ms = 0.0625, .worker = 3, .request_id = "abc-1",
		.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736", .span_id = "00f067aa0ba902b7",
		.parent_span_id = "b7ad6b7169203331",
	};
	assert_record(&r, "\",\"worker\":3,\"client\":\"127.0.0.1:5555\",\"method\":\"GET\","
			  "\"path\":\"/api/\\\"x\\\"\\u0001\",\"status\":200,\"reason\":\"ok\","
			  "\"route\":\"users\",\"upstream\":\"127.0.0.1:9101\","
			  "\"consumer\":\"mobile-app\",\"bytes_in\":78,"
			  "\"bytes_out\":18446744073709551615,\"duration_ms\":1.234,"
			  "\"upstream_ms\":0.062,\"request_id\":\"abc-1\","
			  "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
			  "\"span_id\":\"00f067aa0ba902b7\",\"parent_span_id\":\"b7ad6b7169203331\"}\n");
	struct access_record refused = {
		.client = "[::1]:80", .method = "-", .method_len = 1, .path = "-", .path_len = 1,
		.status = 400, .reason = "bad_request_line", .duration_ms = 0, .upstream_ms = -1,
		.request_id = "0123456789abcdef0123456789abcdef",
	};
	assert_record(&refused, "\",\"worker\":0,\"client\":\"[::1]:80\",\"method\":\"-\","
				"\"path\":\"-\",\"status\":400,\"reason\":\"bad_request_line\","
				"\"route\":null,\"upstream\":null,\"consumer\":null,\"bytes_in\":0,"
				"\"bytes_out\":0,"
				"\"duration_ms\":0.000,\"upstream_ms\":-1.000,"
				"\"request_id\":\"0123456789abcdef0123456789abcdef\",\"trace_id\":null,"
				"\"span_id\":null,\"parent_span_id\":null}\n");
}

/* The method is cut at 200 bytes of JSON and the path at 2048, as before. */
Test(log, access_record_caps_method_and_path)
{
	static char method[300], path[3000];
	memset(method, 'M', sizeof method);
	memset(path, '/', sizeof path);
	path[2047] = '"'; /* its escape would cross 2048: cut before it */
	struct access_record r = {
		.client = "c", .method = method, .method_len = sizeof method, .path = path,
		.path_len = sizeof path, .status = 200, .reason = "ok", .upstream_ms = -1,
	};
	char buf[8192];
	size_t n = logged(&r, buf, sizeof buf);
	char want[4096];
	struct writer w = writer_init(want, sizeof want);
	w_str(&w, "\"method\":\"");
	w_put(&w, method, 200);
	w_str(&w, "\",\"path\":\"");
	w_put(&w, path, 2047);
	w_str(&w, "\",\"status\"");
	cr_assert(memmem(buf, n, want, writer_len(&w)) != NULL, "%.*s", (int)n, buf);
}
