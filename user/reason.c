/* reason.c — the reason table: status, log name and message of every refusal or failure, and the
 * JSON error response written from it; the head of every answer the gateway makes itself. */
#include "reason.h"

#include <string.h>

#include "writer.h"

static const struct {
	int status;
	const char *name;
	const char *message;
} reasons[RW_REASON_COUNT] = {
#define RW_REASON_ROW(n, st, log, msg) [RW_##n] = { st, log, msg },
	RW_REASONS(RW_REASON_ROW)
#undef RW_REASON_ROW
};

int reason_status(enum rw_reason r)
{
	return (unsigned)r < RW_REASON_COUNT ? reasons[r].status : 500;
}

const char *reason_name(enum rw_reason r)
{
	return (unsigned)r < RW_REASON_COUNT ? reasons[r].name : "internal_error";
}

const char *reason_message(enum rw_reason r)
{
	return (unsigned)r < RW_REASON_COUNT ? reasons[r].message : "internal gateway error";
}

const char *status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 421: return "Misdirected Request";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "Unknown";
	}
}

void http_head(struct writer *w, int status, const char *type, uint64_t content_length,
	       const char *extra, const char *request_id, bool close)
{
	w_str(w, "HTTP/1.1 ");
	w_u64(w, (uint64_t)status);
	w_put(w, " ", 1);
	w_str(w, status_text(status));
	w_put(w, "\r\n", 2);
	w_header(w, SLICE_LIT("Content-Type"), slice_make(type, strlen(type)));
	w_header_u64(w, SLICE_LIT("Content-Length"), content_length);
	if (extra)
		w_str(w, extra);
	if (request_id)
		w_header(w, SLICE_LIT("X-Request-Id"), slice_make(request_id, strlen(request_id)));
	if (close)
		w_header(w, SLICE_LIT("Connection"), SLICE_LIT("close"));
	w_put(w, "\r\n", 2);
}

size_t reason_write_response(enum rw_reason r, const char *extra, const char *request_id, int close,
			     char *out, size_t cap)
{
	int status = reason_status(r);
	char body[256];
	struct writer b = writer_init(body, sizeof body);
	w_str(&b, "{\"error\":{\"status\":");
	w_u64(&b, (uint64_t)status);
	w_str(&b, ",\"reason\":\"");
	w_str(&b, reason_name(r));
	w_str(&b, "\",\"message\":\"");
	w_str(&b, reason_message(r));
	w_str(&b, "\"}}\n");
	struct writer w = writer_init(out, cap);
	http_head(&w, status, "application/json", writer_len(&b), extra, request_id, close);
	w_put(&w, body, writer_len(&b));
	return w.overflow || b.overflow ? 0 : writer_len(&w);
}
