/*
 * upstream.c — the small upstream HTTP/1.1 server that ringway's demo, integration tests and
 * benchmarks proxy to. One file, libc + pthreads only.
 *
 *   build/upstream --listen 127.0.0.1:9101 [--listen [::1]:9102 ...] [--threads N] [--name NAME]
 *                  [--idle-timeout MS]
 *
 * One epoll loop per thread, each with its own SO_REUSEPORT listener per address; non-blocking
 * sockets, level-triggered. Keep-alive and pipelining (answers in order), Content-Length and
 * chunked request bodies streamed through an incremental SHA-256 (x86 SHA extensions when the CPU
 * has them; bodies are never buffered whole). Heads are parsed in place (strict RFC 9112: bad input
 * gets 400 and a close). Responses are built in a per-connection output queue of segments (own
 * bytes + references into one shared read-only pattern buffer) and sent with one sendmsg per
 * batch; short writes wait for EPOLLOUT. Timers (/delay, lingering close, idle timeout) live in a
 * per-thread min-heap that sets the epoll_wait timeout: no thread ever sleeps. See README.md next
 * to this file for the endpoints.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX    65536u            /* request head (and trailer section) limit */
#define IB_INIT     16384u            /* initial input buffer; grows to HEAD_MAX for big heads */
#define OUT_HIGH    (1u << 20)        /* stop processing pipelined requests above this backlog */
#define PAT_LEN     (26u * 40330u)    /* ~1 MiB; a multiple of 26 so the pattern repeats cleanly */
#define SMALL_COPY  16384u            /* bodies up to this are copied, larger ones referenced */
#define IOV_BATCH   64
#define MAX_LISTEN  32
#define MAX_THREADS 256
#define LINGER_MS   5000              /* after shutdown(SHUT_WR), wait this long for the peer */
#define HOLD_MS     10000             /* /bad-response: keep the connection this long at most */
#define MAX_CHUNKS  65536u
#define MAX_SIZE    (1ull << 40)

/* ---------------------------------------------------------------- SHA-256 (FIPS 180-4) */

struct sha256 {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t n;
};

static const uint32_t sha_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, hh;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = hh + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + sha_k[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        hh = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += hh;
}

static void sha256_blocks_c(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    for (; nblocks--; p += 64)
        sha256_block(h, p);
}

#if defined(__x86_64__) && !defined(UPSTREAM_NO_SHANI)
#include <cpuid.h>
#include <immintrin.h>
/* The same compression with the x86 SHA extensions (~8x faster than the C code), used when
 * CPUID says the CPU has them and a self-test at start-up agrees with the C code. */
__attribute__((target("sha,sse4.1,ssse3")))
static void sha256_blocks_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xb1);  /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1b); /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                         /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xf0);                                              /* CDGH */
    for (; nblocks--; p += 64) {
        __m128i abef = s0, cdgh = s1, m[4];
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) {
            __m128i w;
            if (i < 4) {
                w = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
            } else {    /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time */
                w = _mm_sha256msg1_epu32(m[i & 3], m[(i - 3) & 3]);
                w = _mm_add_epi32(w, _mm_alignr_epi8(m[(i - 1) & 3], m[(i - 2) & 3], 4));
                w = _mm_sha256msg2_epu32(w, m[(i - 1) & 3]);
            }
            m[i & 3] = w;
            w = _mm_add_epi32(w, _mm_loadu_si128((const __m128i *)&sha_k[4 * i]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, w);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(w, 0x0e));
        }
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    t = _mm_shuffle_epi32(s0, 0x1b);        /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xb1);       /* DCHG */
    _mm_storeu_si128((__m128i *)&h[0], _mm_blend_epi16(t, s1, 0xf0));  /* DCBA */
    _mm_storeu_si128((__m128i *)&h[4], _mm_alignr_epi8(s1, t, 8));     /* HGFE */
}

static int cpu_has_shani(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    return (b >> 29) & 1;
}
#endif

static void (*sha256_blocks)(uint32_t h[8], const uint8_t *p, size_t nblocks) = sha256_blocks_c;

static void sha256_init(struct sha256 *s)
{
    static const uint32_t iv[8] = { 0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19 };
    memcpy(s->h, iv, sizeof iv);
    s->len = 0;
    s->n = 0;
}

static void sha256_update(struct sha256 *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->len += len;
    if (s->n) {
        size_t t = 64 - s->n < len ? 64 - s->n : len;
        memcpy(s->buf + s->n, p, t);
        s->n += t, p += t, len -= t;
        if (s->n < 64)
            return;
        sha256_blocks(s->h, s->buf, 1);
        s->n = 0;
    }
    if (len >= 64) {
        sha256_blocks(s->h, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    memcpy(s->buf, p, len);
    s->n = len;
}

static void sha256_hex(struct sha256 *s, char out[65])
{
    static const uint8_t pad[64] = { 0x80 };
    uint64_t bits = s->len * 8;
    uint8_t lenb[8];
    if (s->len == 0) {               /* the common empty body */
        memcpy(out, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", 65);
        return;
    }
    sha256_update(s, pad, s->n < 56 ? 56 - s->n : 120 - s->n);
    for (int i = 0; i < 8; i++)
        lenb[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, lenb, 8);
    for (int i = 0; i < 32; i++) {
        uint8_t b = (uint8_t)(s->h[i / 4] >> (24 - 8 * (i % 4)));
        out[2 * i] = "0123456789abcdef"[b >> 4];
        out[2 * i + 1] = "0123456789abcdef"[b & 15];
    }
    out[64] = 0;
}

/* ---------------------------------------------------------------- globals */

static char *g_pat;                        /* 'a' + i % 26, PAT_LEN + 26 bytes, read-only */
static char g_name[129] = "upstream";      /* printable ASCII, no '"' or '\\' */
static size_t g_name_len = 8;
static unsigned g_idle_ms;
static _Atomic uint64_t g_accepts, g_requests;
static int g_close_reused;
static uint8_t g_tchar[256];

/* ---------------------------------------------------------------- types */

enum { K_LISTEN = 1, K_CONN, K_STOP };
enum { ST_HEAD, ST_BODY_CL, ST_BODY_CHUNK, ST_WAIT, ST_CLOSING, ST_LINGER, ST_HOLD };
enum { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER };
enum { EP_DEFAULT, EP_SIZE, EP_CHUNKED, EP_STATUS, EP_DELAY, EP_CLOSE_MID, EP_CLOSE_NORESP,
       EP_BAD, EP_STATS, EP_CLOSE_AFTER, EP_ERROR };
enum { CM_FIN, CM_RST, CM_HOLD };
enum { T_NONE, T_DELAY, T_LINGER, T_IDLE };

struct listener {
    int kind, fd;
};

struct seg {            /* one piece of the output queue */
    uint64_t len;
    uint64_t pos;       /* pattern offset (pattern segments only) */
    int pat;            /* 0: `len` bytes of the own buffer, in order; 1: pattern bytes */
};

struct worker;

struct conn {
    int kind, fd;
    struct worker *w;
    struct conn *prev, *next;          /* live list; `next` also links the free list */
    uint32_t evmask;
    uint8_t st, ch, rd_eof, close_mode, timer, bp;
    /* input: unparsed bytes are ib[ib_start, ib_end); scan/line are offsets from ib_start */
    char *ib;
    uint32_t ib_cap, ib_start, ib_end, scan, line;
    /* current request */
    uint8_t ep, head, close, http10, reset, hash;
    uint32_t served;                   /* requests answered on this connection */
    unsigned status;
    uint64_t a1, a2;
    uint64_t body_left, body_bytes;
    uint32_t trailer_bytes;
    struct sha256 sha;
    char *jb;                          /* JSON answer being built (default endpoint) */
    size_t jb_len, jb_cap;
    /* output */
    char *ob;                          /* own bytes; unsent own bytes are ob[ob_off, ob_len) */
    size_t ob_len, ob_off, ob_cap;
    struct seg *segs;                  /* unsent segments are segs[seg_head, seg_n) */
    uint32_t seg_head, seg_n, seg_cap;
    uint64_t out_bytes;                /* unsent bytes in total */
    /* timer */
    int hidx;
    uint64_t deadline;
};

struct worker {
    int ep, stopfd, spare_fd, stop;
    struct listener ls[MAX_LISTEN];
    int nls;
    struct conn *live, *free;
    int nfree;
    struct conn **heap;
    int heap_n, heap_cap;
    pthread_t th;
};

/* ---------------------------------------------------------------- small helpers */

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "upstream: out of memory\n");
        abort();
    }
    return q;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t u64dec(char *o, uint64_t v)
{
    char t[20];
    size_t n = 0;
    do
        t[n++] = (char)('0' + v % 10);
    while (v /= 10);
    for (size_t i = 0; i < n; i++)
        o[i] = t[n - 1 - i];
    return n;
}

static size_t u64hex(char *o, uint64_t v)
{
    char t[16];
    size_t n = 0;
    do
        t[n++] = "0123456789abcdef"[v & 15];
    while (v >>= 4);
    for (size_t i = 0; i < n; i++)
        o[i] = t[n - 1 - i];
    return n;
}

/* Decimal digits only, 1..19 of them, value <= max. */
static int parse_num(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 19)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static int ieq(const char *a, size_t n, const char *lit)
{
    size_t ln = strlen(lit);
    if (n != ln)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = a[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch + 32);
        if (ch != lit[i])
            return 0;
    }
    return 1;
}

static int has_prefix(const char *s, size_t n, const char *lit)
{
    size_t ln = strlen(lit);
    return n >= ln && memcmp(s, lit, ln) == 0;
}

/* Finds `key` in an a=1&b=2 query string. */
static int query_get(const char *q, size_t qlen, const char *key, const char **v, size_t *vlen)
{
    size_t kl = strlen(key);
    const char *p = q, *e = q + qlen;
    while (p < e) {
        const char *amp = memchr(p, '&', (size_t)(e - p));
        if (!amp)
            amp = e;
        const char *eq = memchr(p, '=', (size_t)(amp - p));
        const char *ke = eq ? eq : amp;
        if ((size_t)(ke - p) == kl && memcmp(p, key, kl) == 0) {
            *v = eq ? eq + 1 : amp;
            *vlen = eq ? (size_t)(amp - eq - 1) : 0;
            return 1;
        }
        p = amp + 1;
    }
    return 0;
}

/* Calls fn for each comma-separated element of a header list value (OWS trimmed, empty skipped). */
static void list_each(const char *v, size_t n, void (*fn)(void *, const char *, size_t), void *arg)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (s < e && (v[s] == ' ' || v[s] == '\t'))
            s++;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e > s)
            fn(arg, v + s, e - s);
        i++;
    }
}

static const char *reason(unsigned code)
{
    switch (code) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default:  return "Unknown";
    }
}

/* ---------------------------------------------------------------- timers (per-worker min-heap) */

static void heap_place(struct worker *w, int i, struct conn *c)
{
    w->heap[i] = c;
    c->hidx = i;
}

static void heap_up(struct worker *w, int i)
{
    struct conn *c = w->heap[i];
    while (i > 0) {
        int p = (i - 1) / 2;
        if (w->heap[p]->deadline <= c->deadline)
            break;
        heap_place(w, i, w->heap[p]);
        i = p;
    }
    heap_place(w, i, c);
}

static void heap_down(struct worker *w, int i)
{
    struct conn *c = w->heap[i];
    for (;;) {
        int l = 2 * i + 1, m = i;
        uint64_t best = c->deadline;
        if (l < w->heap_n && w->heap[l]->deadline < best)
            m = l, best = w->heap[l]->deadline;
        if (l + 1 < w->heap_n && w->heap[l + 1]->deadline < best)
            m = l + 1;
        if (m == i)
            break;
        heap_place(w, i, w->heap[m]);
        i = m;
    }
    heap_place(w, i, c);
}

static void timer_set(struct conn *c, int kind, uint64_t deadline)
{
    struct worker *w = c->w;
    c->timer = (uint8_t)kind;
    c->deadline = deadline;
    if (c->hidx < 0) {
        if (w->heap_n == w->heap_cap) {
            w->heap_cap = w->heap_cap ? 2 * w->heap_cap : 64;
            w->heap = xrealloc(w->heap, (size_t)w->heap_cap * sizeof *w->heap);
        }
        heap_place(w, w->heap_n++, c);
    }
    heap_up(w, c->hidx);
    heap_down(w, c->hidx);
}

static void timer_clear(struct conn *c)
{
    struct worker *w = c->w;
    int i = c->hidx;
    c->timer = T_NONE;
    if (i < 0)
        return;
    c->hidx = -1;
    if (i != --w->heap_n) {
        struct conn *m = w->heap[w->heap_n];
        heap_place(w, i, m);
        heap_up(w, i);
        heap_down(w, m->hidx);
    }
}

/* ---------------------------------------------------------------- connections */

static struct conn *conn_new(struct worker *w, int fd)
{
    struct conn *c = w->free;
    if (c) {
        w->free = c->next;
        w->nfree--;
    } else {
        c = calloc(1, sizeof *c);
        if (!c)
            return NULL;
    }
    if (!c->ib) {
        c->ib = malloc(IB_INIT);
        if (!c->ib) {
            free(c);
            return NULL;
        }
        c->ib_cap = IB_INIT;
    }
    c->kind = K_CONN;
    c->fd = fd;
    c->w = w;
    c->evmask = 0;
    c->st = ST_HEAD;
    c->rd_eof = c->bp = 0;
    c->served = 0;
    c->timer = T_NONE;
    c->ib_start = c->ib_end = c->scan = c->line = 0;
    c->ob_len = c->ob_off = 0;
    c->seg_head = c->seg_n = 0;
    c->out_bytes = 0;
    c->close = 0;
    c->hidx = -1;
    c->prev = NULL;
    c->next = w->live;
    if (w->live)
        w->live->prev = c;
    w->live = c;
    return c;
}

static void conn_close(struct conn *c)
{
    struct worker *w = c->w;
    timer_clear(c);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->live = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (w->nfree >= 256) {
        free(c->ib);
        free(c->jb);
        free(c->ob);
        free(c->segs);
        free(c);
        return;
    }
    /* keep the small buffers for the next connection, drop the big ones */
    if (c->ib_cap > IB_INIT) {
        free(c->ib);
        c->ib = NULL;
        c->ib_cap = 0;
    }
    if (c->ob_cap > (1u << 18)) {
        free(c->ob);
        c->ob = NULL;
        c->ob_cap = 0;
    }
    if (c->jb_cap > (1u << 18)) {
        free(c->jb);
        c->jb = NULL;
        c->jb_cap = 0;
    }
    if (c->seg_cap > 1024) {
        free(c->segs);
        c->segs = NULL;
        c->seg_cap = 0;
    }
    c->next = w->free;
    w->free = c;
    w->nfree++;
}

static void conn_arm(struct conn *c)
{
    uint32_t m = 0;
    if (!c->rd_eof) {
        if (c->st == ST_LINGER || c->st == ST_HOLD)
            m |= EPOLLIN;
        else if (c->st != ST_CLOSING && c->out_bytes < OUT_HIGH) {
            uint32_t used = c->ib_end - c->ib_start;
            if (used < c->ib_cap ||
                ((c->st == ST_HEAD || c->st == ST_BODY_CHUNK) && c->ib_cap < HEAD_MAX))
                m |= EPOLLIN;
        }
    }
    if (c->seg_head < c->seg_n)
        m |= EPOLLOUT;
    if (m != c->evmask) {
        struct epoll_event ev = { .events = m, .data.ptr = c };
        epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->evmask = m;
    }
}

/* ---------------------------------------------------------------- output queue */

static void seg_push(struct conn *c, int pat, uint64_t pos, uint64_t len)
{
    if (c->seg_n == c->seg_cap) {
        if (c->seg_head > 0) {
            memmove(c->segs, c->segs + c->seg_head, (c->seg_n - c->seg_head) * sizeof *c->segs);
            c->seg_n -= c->seg_head;
            c->seg_head = 0;
        } else {
            c->seg_cap = c->seg_cap ? 2 * c->seg_cap : 16;
            c->segs = xrealloc(c->segs, c->seg_cap * sizeof *c->segs);
        }
    }
    c->segs[c->seg_n++] = (struct seg){ .len = len, .pos = pos, .pat = pat };
}

static char *ob_room(struct conn *c, size_t n)
{
    if (c->ob_len + n > c->ob_cap) {
        if (c->ob_off > 0) {
            memmove(c->ob, c->ob + c->ob_off, c->ob_len - c->ob_off);
            c->ob_len -= c->ob_off;
            c->ob_off = 0;
        }
        if (c->ob_len + n > c->ob_cap) {
            size_t cap = c->ob_cap ? 2 * c->ob_cap : 4096;
            while (cap < c->ob_len + n)
                cap *= 2;
            c->ob = xrealloc(c->ob, cap);
            c->ob_cap = cap;
        }
    }
    return c->ob + c->ob_len;
}

static void ob_commit(struct conn *c, size_t n)
{
    if (!n)
        return;
    c->ob_len += n;
    c->out_bytes += n;
    if (c->seg_n > c->seg_head && !c->segs[c->seg_n - 1].pat)
        c->segs[c->seg_n - 1].len += n;
    else
        seg_push(c, 0, 0, n);
}

static void out_own(struct conn *c, const void *p, size_t n)
{
    memcpy(ob_room(c, n), p, n);
    ob_commit(c, n);
}

#define OUT_LIT(c, s) out_own(c, s, sizeof(s) - 1)

/* The body pattern from offset `pos` (body byte i is 'a' + i % 26). */
static void out_pat(struct conn *c, uint64_t pos, uint64_t len)
{
    if (!len)
        return;
    if (len <= SMALL_COPY) {
        out_own(c, g_pat + pos % 26, len);
        return;
    }
    c->out_bytes += len;
    seg_push(c, 1, pos, len);
}

/* Returns 0, or -1 when the connection was closed. */
static int conn_flush(struct conn *c)
{
    while (c->seg_head < c->seg_n) {
        struct iovec iov[IOV_BATCH];
        int n = 0;
        size_t want = 0, off = c->ob_off;
        for (uint32_t i = c->seg_head; i < c->seg_n && n < IOV_BATCH && want < (8u << 20); i++) {
            struct seg *s = &c->segs[i];
            if (!s->pat) {
                iov[n].iov_base = c->ob + off;
                iov[n].iov_len = s->len;
                off += s->len;
                want += s->len;
                n++;
            } else {
                uint64_t rem = s->len, pos = s->pos;
                while (rem && n < IOV_BATCH) {
                    size_t l = rem < PAT_LEN ? rem : PAT_LEN;
                    iov[n].iov_base = g_pat + pos % 26;
                    iov[n].iov_len = l;
                    rem -= l, pos += l, want += l;
                    n++;
                }
            }
        }
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
        ssize_t r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            conn_close(c);
            return -1;
        }
        uint64_t left = (uint64_t)r;
        c->out_bytes -= left;
        while (left) {
            struct seg *s = &c->segs[c->seg_head];
            uint64_t t = left < s->len ? left : s->len;
            if (s->pat)
                s->pos += t;
            else
                c->ob_off += t;
            s->len -= t;
            left -= t;
            if (!s->len)
                c->seg_head++;
        }
        if (c->seg_head == c->seg_n) {
            c->seg_head = c->seg_n = 0;
            c->ob_off = c->ob_len = 0;
        }
        if ((size_t)r < want)
            return 0;                  /* socket buffer full: wait for EPOLLOUT */
    }
    return 0;
}

/* Status line and headers. clen < 0: no Content-Length. */
static void put_head(struct conn *c, unsigned status, const char *ctype, int64_t clen, int chunked)
{
    char *o = ob_room(c, 256 + g_name_len), *p = o;
    const char *rs = reason(status);
#define PUT(s) (memcpy(p, s, sizeof(s) - 1), p += sizeof(s) - 1)
    PUT("HTTP/1.1 ");
    p += u64dec(p, status);
    *p++ = ' ';
    memcpy(p, rs, strlen(rs));
    p += strlen(rs);
    PUT("\r\nX-Upstream: ");
    memcpy(p, g_name, g_name_len);
    p += g_name_len;
    if (ctype) {
        PUT("\r\nContent-Type: ");
        memcpy(p, ctype, strlen(ctype));
        p += strlen(ctype);
    }
    if (clen >= 0) {
        PUT("\r\nContent-Length: ");
        p += u64dec(p, (uint64_t)clen);
    }
    if (chunked)
        PUT("\r\nTransfer-Encoding: chunked");
    if (c->close)
        PUT("\r\nConnection: close");
    else if (c->http10)
        PUT("\r\nConnection: keep-alive");
    PUT("\r\n\r\n");
#undef PUT
    ob_commit(c, (size_t)(p - o));
}

/* A complete response with a small body; `head` requests get the headers only. */
static void respond(struct conn *c, unsigned status, const char *ctype, const char *body, size_t n)
{
    put_head(c, status, ctype, (int64_t)n, 0);
    if (!c->head)
        out_own(c, body, n);
}

static void finish(struct conn *c)
{
    if (c->close) {
        c->st = ST_CLOSING;
        c->close_mode = CM_FIN;
    } else {
        c->st = ST_HEAD;
    }
}

/* Client error: answer and close. */
static void fail(struct conn *c, unsigned status)
{
    char b[96];
    int n = snprintf(b, sizeof b, "{\"status\":%u,\"error\":\"%s\"}", status, reason(status));
    c->close = 1;
    c->head = 0;
    respond(c, status, "application/json", b, (size_t)n);
    c->st = ST_CLOSING;
    c->close_mode = CM_FIN;
}

/* ---------------------------------------------------------------- JSON */

static char *jb_room(struct conn *c, size_t n)
{
    if (c->jb_len + n > c->jb_cap) {
        size_t cap = c->jb_cap ? 2 * c->jb_cap : 4096;
        while (cap < c->jb_len + n)
            cap *= 2;
        c->jb = xrealloc(c->jb, cap);
        c->jb_cap = cap;
    }
    return c->jb + c->jb_len;
}

static void jb_put(struct conn *c, const char *s, size_t n)
{
    memcpy(jb_room(c, n), s, n);
    c->jb_len += n;
}

#define JB_LIT(c, s) jb_put(c, s, sizeof(s) - 1)

/* Length of the valid UTF-8 sequence at s (0 if not valid). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char b = s[0], lo = 0x80, hi = 0xbf;
    size_t len;
    if (b >= 0xc2 && b <= 0xdf)
        len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/* JSON string contents; invalid UTF-8 bytes are escaped as \u00XX (read as Latin-1). */
static void jb_esc(struct conn *c, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    char *o = jb_room(c, 6 * n), *p = o;
    for (size_t i = 0; i < n;) {
        unsigned char b = s[i];
        if (b >= 0x20 && b < 0x80 && b != '"' && b != '\\') {
            *p++ = (char)b;
            i++;
            continue;
        }
        if (b >= 0x80) {
            size_t l = utf8_len(s + i, n - i);
            if (l) {
                memcpy(p, s + i, l);
                p += l, i += l;
                continue;
            }
        }
        *p++ = '\\';
        switch (b) {
        case '"': *p++ = '"'; break;
        case '\\': *p++ = '\\'; break;
        case '\n': *p++ = 'n'; break;
        case '\r': *p++ = 'r'; break;
        case '\t': *p++ = 't'; break;
        default:
            *p++ = 'u', *p++ = '0', *p++ = '0';
            *p++ = "0123456789abcdef"[b >> 4];
            *p++ = "0123456789abcdef"[b & 15];
        }
        i++;
    }
    c->jb_len += (size_t)(p - o);
}

/* ---------------------------------------------------------------- request head */

/*
 * Looks for the end of the head (an empty line) from where the last call stopped.
 * Returns its length, 0 if incomplete, -1 on a bare LF.
 */
static long find_head_end(struct conn *c, const char *p, size_t avail)
{
    while (c->scan < avail) {
        const char *nl = memchr(p + c->scan, '\n', avail - c->scan);
        if (!nl) {
            c->scan = (uint32_t)avail;
            return 0;
        }
        size_t off = (size_t)(nl - p);
        if (off == 0 || p[off - 1] != '\r')
            return -1;
        if (off - c->line == 1 && c->line > 0)
            return (long)(off + 1);
        c->line = c->scan = (uint32_t)(off + 1);
    }
    return 0;
}

struct te_state {
    int n, chunked_last, bad;
};

static void te_token(void *arg, const char *t, size_t n)
{
    struct te_state *s = arg;
    if (s->chunked_last)
        s->bad = 1;            /* chunked must be the final coding, and only once */
    s->chunked_last = ieq(t, n, "chunked");
    s->n++;
}

struct conn_tokens {
    int close, keepalive;
};

static void conn_token(void *arg, const char *t, size_t n)
{
    struct conn_tokens *s = arg;
    if (ieq(t, n, "close"))
        s->close = 1;
    else if (ieq(t, n, "keep-alive"))
        s->keepalive = 1;
}

/* Picks the endpoint from the path (query stripped). */
static void route(struct conn *c, const char *path, size_t plen, const char *q, size_t qlen)
{
    const char *v;
    size_t vl;
    uint64_t x;
    c->ep = EP_DEFAULT;
    if (has_prefix(path, plen, "/size/")) {
        c->ep = EP_SIZE;
        if (parse_num(path + 6, plen - 6, MAX_SIZE, &c->a1))
            c->ep = EP_ERROR;
    } else if (has_prefix(path, plen, "/chunked/")) {
        c->ep = EP_CHUNKED;
        c->a2 = 1;
        if (parse_num(path + 9, plen - 9, MAX_SIZE, &c->a1))
            c->ep = EP_ERROR;
        if (query_get(q, qlen, "chunks", &v, &vl)) {
            if (parse_num(v, vl, MAX_CHUNKS, &c->a2) || c->a2 == 0)
                c->ep = EP_ERROR;
        }
    } else if (has_prefix(path, plen, "/status/")) {
        c->ep = EP_STATUS;
        if (parse_num(path + 8, plen - 8, 599, &x) || x < 200)
            c->ep = EP_ERROR;
        else
            c->status = (unsigned)x;
    } else if (has_prefix(path, plen, "/delay/")) {
        c->ep = EP_DELAY;
        if (parse_num(path + 7, plen - 7, 600000, &c->a1))
            c->ep = EP_ERROR;
    } else if (ieq(path, plen, "/close-mid-body")) {
        c->ep = EP_CLOSE_MID;
    } else if (ieq(path, plen, "/close-no-response")) {
        c->ep = EP_CLOSE_NORESP;
    } else if (ieq(path, plen, "/bad-response")) {
        c->ep = EP_BAD;
    } else if (ieq(path, plen, "/__stats")) {
        c->ep = EP_STATS;
        c->reset = query_get(q, qlen, "reset", &v, &vl) && vl == 1 && v[0] == '1';
    } else if (ieq(path, plen, "/__close-after")) {
        c->ep = EP_CLOSE_AFTER;
    }
    if (c->ep == EP_ERROR)
        c->status = 400;
}

/* Parses a complete head of `hl` bytes (ending in CRLF CRLF). Returns 0 or an HTTP status. */
static unsigned parse_head(struct conn *c, const char *p, size_t hl)
{
    const char *end = p + hl, *q = p;
    const unsigned char *u;

    /* request-line = method SP request-target SP HTTP-version CRLF */
    const char *m = q;
    while (g_tchar[(unsigned char)*q])
        q++;
    if (q == m || *q != ' ')
        return 400;
    size_t mlen = (size_t)(q - m);
    const char *t = ++q;
    for (u = (const unsigned char *)q; *u > 0x20 && *u < 0x7f; u++)
        ;
    q = (const char *)u;
    if (q == t || *q != ' ')
        return 400;
    size_t tlen = (size_t)(q - t);
    q++;
    if (end - q < 10 || memcmp(q, "HTTP/", 5) != 0 || q[5] < '0' || q[5] > '9' || q[6] != '.' ||
        q[7] < '0' || q[7] > '9' || q[8] != '\r' || q[9] != '\n')
        return 400;
    if (q[5] != '1' || (q[7] != '0' && q[7] != '1'))
        return 505;
    c->http10 = q[7] == '0';
    q += 10;

    /* request-target: origin-form, absolute-form or asterisk-form */
    const char *path = t;
    size_t plen = tlen;
    if (t[0] == '*' && tlen == 1) {
        if (!ieq(m, mlen, "options"))
            return 400;
    } else if (t[0] != '/') {
        size_t s = 0;
        if (has_prefix(t, tlen, "http://"))
            s = 7;
        else if (has_prefix(t, tlen, "https://"))
            s = 8;
        else
            return 400;
        const char *sl = memchr(t + s, '/', tlen - s);
        if (!sl)
            sl = t + tlen;
        path = sl;
        plen = tlen - (size_t)(sl - t);
    }
    const char *qs = "";
    size_t qlen = 0;
    const char *qm = memchr(path, '?', plen);
    if (qm) {
        qs = qm + 1;
        qlen = plen - (size_t)(qm + 1 - path);
        plen = (size_t)(qm - path);
    }
    if (plen == 0)
        path = "/", plen = 1;

    c->head = mlen == 4 && memcmp(m, "HEAD", 4) == 0;
    c->reset = 0;
    route(c, path, plen, qs, qlen);
    c->hash = c->ep == EP_DEFAULT || c->ep == EP_DELAY || c->ep == EP_CLOSE_AFTER;
    if (c->hash) {
        c->jb_len = 0;
        JB_LIT(c, "{\"server\":\"");
        jb_put(c, g_name, g_name_len);
        JB_LIT(c, "\",\"method\":\"");
        jb_esc(c, m, mlen);
        JB_LIT(c, "\",\"path\":\"");
        jb_esc(c, path, plen);
        JB_LIT(c, "\",\"query\":\"");
        jb_esc(c, qs, qlen);
        JB_LIT(c, "\",\"headers\":[");
    }

    /* header fields */
    int cl_seen = 0, hosts = 0, expect = 0, nh = 0;
    uint64_t cl = 0;
    struct te_state te = { 0, 0, 0 };
    struct conn_tokens ct = { 0, 0 };
    while (q[0] != '\r') {
        const char *nl = memchr(q, '\n', (size_t)(end - q)), *le = nl - 1;
        const char *n0 = q;
        while (g_tchar[(unsigned char)*q])
            q++;
        if (q == n0 || *q != ':')
            return 400;            /* also obs-fold and whitespace before the colon */
        size_t nlen = (size_t)(q - n0);
        q++;
        while (q < le && (*q == ' ' || *q == '\t'))
            q++;
        const char *v0 = q, *ve = le;
        while (ve > v0 && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (u = (const unsigned char *)v0; u < (const unsigned char *)ve; u++)
            if ((*u < 0x20 && *u != '\t') || *u == 0x7f)
                return 400;        /* control characters, bare CR */
        size_t vlen = (size_t)(ve - v0);
        switch (n0[0] | 0x20) {
        case 'c':
            if (ieq(n0, nlen, "content-length")) {
                uint64_t v;
                if (parse_num(v0, vlen, 1ull << 62, &v) || (cl_seen && v != cl))
                    return 400;
                cl = v;
                cl_seen = 1;
            } else if (ieq(n0, nlen, "connection")) {
                list_each(v0, vlen, conn_token, &ct);
            }
            break;
        case 't':
            if (ieq(n0, nlen, "transfer-encoding")) {
                int before = te.n;
                list_each(v0, vlen, te_token, &te);
                if (te.n == before)
                    return 400;
            }
            break;
        case 'h':
            if (ieq(n0, nlen, "host"))
                hosts++;
            break;
        case 'e':
            if (ieq(n0, nlen, "expect") && ieq(v0, vlen, "100-continue"))
                expect = 1;
            break;
        }
        if (c->hash) {
            if (nh++)
                JB_LIT(c, ",");
            JB_LIT(c, "[\"");
            jb_esc(c, n0, nlen);
            JB_LIT(c, "\",\"");
            jb_esc(c, v0, vlen);
            JB_LIT(c, "\"]");
        }
        q = nl + 1;
    }
    if (q != end - 2)
        return 400;                /* a stray CR at the start of a field line */
    if (te.n && (cl_seen || te.bad || !te.chunked_last || c->http10))
        return 400;
    if (hosts > 1 || (hosts == 0 && !c->http10))
        return 400;
    c->close = c->http10 ? !ct.keepalive || ct.close : ct.close;
    /* --close-reused: a kept-alive connection is dropped when its next request arrives, the race a
     * proxy's keep-alive pool must survive */
    if (g_close_reused && c->served++ > 0 && c->ep != EP_STATS)
        c->ep = EP_CLOSE_NORESP;

    if (c->ep != EP_STATS)
        atomic_fetch_add_explicit(&g_requests, 1, memory_order_relaxed);
    if (expect && !c->http10)
        OUT_LIT(c, "HTTP/1.1 100 Continue\r\n\r\n");
    if (c->hash) {
        JB_LIT(c, "],");
        sha256_init(&c->sha);
    }
    c->body_bytes = 0;
    if (te.n) {
        c->st = ST_BODY_CHUNK;
        c->ch = CH_SIZE;
    } else {
        c->st = ST_BODY_CL;
        c->body_left = cl;
    }
    return 0;
}

/* ---------------------------------------------------------------- answers */

static void emit_json(struct conn *c)
{
    put_head(c, 200, "application/json", (int64_t)c->jb_len, 0);
    if (!c->head)
        out_own(c, c->jb, c->jb_len);
    finish(c);
}

/* The request (head and body) is complete: answer it, or arrange to. */
static void request_done(struct conn *c)
{
    char b[128];
    int n;
    if (c->hash) {
        char hex[65];
        sha256_hex(&c->sha, hex);
        char *o = jb_room(c, 128), *p = o;
        memcpy(p, "\"body_bytes\":", 13), p += 13;
        p += u64dec(p, c->body_bytes);
        memcpy(p, ",\"body_sha256\":\"", 16), p += 16;
        memcpy(p, hex, 64), p += 64;
        memcpy(p, "\"}", 2), p += 2;
        c->jb_len += (size_t)(p - o);
    }
    switch (c->ep) {
    case EP_DELAY:
        if (c->a1) {
            c->st = ST_WAIT;
            timer_set(c, T_DELAY, now_ms() + c->a1);
            return;
        }
        emit_json(c);
        return;
    case EP_CLOSE_AFTER:
        c->close = 1;
        /* fall through */
    case EP_DEFAULT:
        emit_json(c);
        return;
    case EP_SIZE:
        put_head(c, 200, "application/octet-stream", (int64_t)c->a1, 0);
        if (!c->head)
            out_pat(c, 0, c->a1);
        finish(c);
        return;
    case EP_CHUNKED: {
        put_head(c, 200, "application/octet-stream", -1, 1);
        if (!c->head) {
            uint64_t total = c->a1, k = c->a2 < total ? c->a2 : total, pos = 0;
            for (uint64_t j = 0; j < k; j++) {
                uint64_t sz = total / k + (j < total % k);
                char *o = ob_room(c, 24), *p = o;
                p += u64hex(p, sz);
                *p++ = '\r', *p++ = '\n';
                ob_commit(c, (size_t)(p - o));
                out_pat(c, pos, sz);
                OUT_LIT(c, "\r\n");
                pos += sz;
            }
            OUT_LIT(c, "0\r\n\r\n");
        }
        finish(c);
        return;
    }
    case EP_STATUS:
        if (c->status == 204 || c->status == 304) {
            put_head(c, c->status, NULL, -1, 0);
        } else if (c->status == 205) {
            put_head(c, c->status, NULL, 0, 0);
        } else {
            n = snprintf(b, sizeof b, "{\"status\":%u,\"server\":\"%s\"}", c->status, g_name);
            respond(c, c->status, "application/json", b, (size_t)n);
        }
        finish(c);
        return;
    case EP_ERROR:
        n = snprintf(b, sizeof b, "{\"status\":400,\"error\":\"bad endpoint parameter\"}");
        respond(c, 400, "application/json", b, (size_t)n);
        finish(c);
        return;
    case EP_STATS: {
        uint64_t a = atomic_load(&g_accepts), r = atomic_load(&g_requests);
        n = snprintf(b, sizeof b, "{\"accepts\":%llu,\"requests\":%llu}", (unsigned long long)a,
                     (unsigned long long)r);
        respond(c, 200, "application/json", b, (size_t)n);
        if (c->reset) {
            atomic_store(&g_accepts, 0);
            atomic_store(&g_requests, 0);
        }
        finish(c);
        return;
    }
    case EP_CLOSE_MID:
        OUT_LIT(c, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                   "Content-Length: 100000\r\n\r\n");
        out_own(c, g_pat, 1000);
        c->st = ST_CLOSING;
        c->close_mode = CM_RST;
        return;
    case EP_CLOSE_NORESP:
        c->st = ST_CLOSING;
        c->close_mode = CM_FIN;
        return;
    case EP_BAD:
        OUT_LIT(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        c->st = ST_CLOSING;
        c->close_mode = CM_HOLD;
        return;
    }
}

/* ---------------------------------------------------------------- input processing */

/* Consumes body bytes (hashing them when the answer needs it). */
static uint64_t take_body(struct conn *c, const char *p, uint64_t avail)
{
    uint64_t n = avail < c->body_left ? avail : c->body_left;
    if (n && c->hash)
        sha256_update(&c->sha, p, n);
    c->body_bytes += n;
    c->body_left -= n;
    c->ib_start += (uint32_t)n;
    return n;
}

/* One chunked-body step. Returns 1 to continue, 0 when more input is needed. */
static int chunk_step(struct conn *c, const char *p, uint32_t avail)
{
    const char *nl;
    size_t ll, i = 0;
    switch (c->ch) {
    case CH_SIZE: {
        nl = memchr(p, '\n', avail);
        if (!nl) {
            if (avail > 4096)
                fail(c, 400);
            return 0;
        }
        ll = (size_t)(nl - p) + 1;
        if (ll < 3 || p[ll - 2] != '\r') {
            fail(c, 400);
            return 0;
        }
        uint64_t v = 0;
        int nd = 0;
        for (;; i++) {
            char ch = p[i];
            int d = ch >= '0' && ch <= '9' ? ch - '0'
                  : (ch | 0x20) >= 'a' && (ch | 0x20) <= 'f' ? (ch | 0x20) - 'a' + 10 : -1;
            if (d < 0)
                break;
            if (++nd > 15) {
                fail(c, 400);
                return 0;
            }
            v = v * 16 + (uint64_t)d;
        }
        if (!nd) {
            fail(c, 400);
            return 0;
        }
        if (i < ll - 2) {              /* chunk extensions: BWS ";" ... */
            while (p[i] == ' ' || p[i] == '\t')
                i++;
            if (p[i] != ';') {
                fail(c, 400);
                return 0;
            }
            for (; i < ll - 2; i++) {
                unsigned char ch = (unsigned char)p[i];
                if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                    fail(c, 400);
                    return 0;
                }
            }
        }
        c->ib_start += (uint32_t)ll;
        if (v == 0) {
            c->ch = CH_TRAILER;
            c->trailer_bytes = 0;
        } else {
            c->ch = CH_DATA;
            c->body_left = v;
        }
        return 1;
    }
    case CH_DATA:
        take_body(c, p, avail);
        if (c->body_left)
            return 0;
        c->ch = CH_DATA_CRLF;
        return 1;
    case CH_DATA_CRLF:
        if (avail < 2)
            return 0;
        if (p[0] != '\r' || p[1] != '\n') {
            fail(c, 400);
            return 0;
        }
        c->ib_start += 2;
        c->ch = CH_SIZE;
        return 1;
    case CH_TRAILER:
        nl = memchr(p, '\n', avail);
        if (!nl) {
            if (c->trailer_bytes + avail >= HEAD_MAX)
                fail(c, 431);
            return 0;
        }
        ll = (size_t)(nl - p) + 1;
        if (ll < 2 || p[ll - 2] != '\r') {
            fail(c, 400);
            return 0;
        }
        c->ib_start += (uint32_t)ll;
        if (ll == 2) {
            request_done(c);
            return 1;
        }
        c->trailer_bytes += (uint32_t)ll;
        if (c->trailer_bytes > HEAD_MAX) {
            fail(c, 431);
            return 0;
        }
        while (g_tchar[(unsigned char)p[i]])
            i++;
        if (i == 0 || p[i] != ':') {
            fail(c, 400);
            return 0;
        }
        for (; i < ll - 2; i++) {
            unsigned char ch = (unsigned char)p[i];
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                fail(c, 400);
                return 0;
            }
        }
        return 1;
    }
    return 0;
}

/* Parses and answers whatever complete requests the input buffer holds. */
static void conn_process(struct conn *c)
{
    c->bp = 0;
    for (;;) {
        uint32_t avail = c->ib_end - c->ib_start;
        const char *p = c->ib + c->ib_start;
        switch (c->st) {
        case ST_HEAD: {
            if (!avail)
                return;
            if (c->out_bytes >= OUT_HIGH) {
                c->bp = 1;
                return;
            }
            if (c->scan == 0) {        /* ignore empty lines before a request-line */
                while (avail >= 2 && p[0] == '\r' && p[1] == '\n')
                    p += 2, avail -= 2, c->ib_start += 2;
                if (!avail || (avail == 1 && p[0] == '\r'))
                    return;
            }
            long hl = find_head_end(c, p, avail);
            if (hl < 0) {
                fail(c, 400);
                return;
            }
            if (hl == 0) {
                if (avail >= HEAD_MAX)
                    fail(c, 431);
                return;
            }
            c->scan = c->line = 0;
            if ((size_t)hl > HEAD_MAX) {
                fail(c, 431);
                return;
            }
            unsigned st = parse_head(c, p, (size_t)hl);
            if (st) {
                fail(c, st);
                return;
            }
            c->ib_start += (uint32_t)hl;
            break;
        }
        case ST_BODY_CL:
            take_body(c, p, avail);
            if (c->body_left)
                return;
            request_done(c);
            break;
        case ST_BODY_CHUNK:
            if (!chunk_step(c, p, avail))
                return;
            break;
        default:                       /* ST_WAIT, ST_CLOSING, ST_LINGER, ST_HOLD */
            return;
        }
    }
}

/* Makes room for a read; returns the free space. */
static uint32_t ib_prepare(struct conn *c)
{
    if (c->ib_start == c->ib_end) {
        c->ib_start = c->ib_end = 0;
    } else if (c->ib_start > 0 && c->ib_cap - c->ib_end < 4096) {
        memmove(c->ib, c->ib + c->ib_start, c->ib_end - c->ib_start);
        c->ib_end -= c->ib_start;
        c->ib_start = 0;
    }
    if (c->ib_cap < HEAD_MAX &&
        ((c->ib_end == c->ib_cap && c->ib_start == 0 &&        /* a big head or trailer */
          (c->st == ST_HEAD || c->st == ST_BODY_CHUNK)) ||
         (c->ib_end == 0 && (c->st == ST_BODY_CHUNK ||          /* a big body: fewer reads */
                             (c->st == ST_BODY_CL && c->body_left > IB_INIT))))) {
        c->ib = xrealloc(c->ib, HEAD_MAX);
        c->ib_cap = HEAD_MAX;
    }
    return c->ib_cap - c->ib_end;
}

/* Runs after any event: processes input, flushes output, applies closes, re-arms. */
static void conn_run(struct conn *c)
{
    for (;;) {
        conn_process(c);
        if (c->seg_head < c->seg_n && conn_flush(c) < 0)
            return;
        if (c->seg_head < c->seg_n)
            break;
        if (c->st == ST_CLOSING) {
            if (c->close_mode == CM_RST) {
                struct linger lg = { 1, 0 };
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
                conn_close(c);
                return;
            }
            if (c->close_mode == CM_FIN) {
                shutdown(c->fd, SHUT_WR);
                c->st = ST_LINGER;
                timer_set(c, T_LINGER, now_ms() + LINGER_MS);
            } else {
                c->st = ST_HOLD;
                timer_set(c, T_LINGER, now_ms() + HOLD_MS);
            }
            c->ib_start = c->ib_end = 0;
            break;
        }
        if (c->bp && c->ib_end > c->ib_start)
            continue;                  /* the backlog drained: go on with pipelined requests */
        break;
    }
    if (c->rd_eof && c->seg_head == c->seg_n &&
        (c->st == ST_HEAD || c->st == ST_BODY_CL || c->st == ST_BODY_CHUNK || c->st == ST_LINGER ||
         c->st == ST_HOLD)) {
        conn_close(c);
        return;
    }
    if (g_idle_ms) {
        if (c->st == ST_HEAD && c->ib_end == c->ib_start && c->seg_head == c->seg_n)
            timer_set(c, T_IDLE, now_ms() + g_idle_ms);
        else if (c->timer == T_IDLE)
            timer_clear(c);
    }
    conn_arm(c);
}

/* Returns -1 when the connection was closed. */
static int conn_read(struct conn *c)
{
    for (int i = 0; i < 8; i++) {
        uint32_t space = ib_prepare(c);
        if (!space)
            return 0;
        ssize_t n = recv(c->fd, c->ib + c->ib_end, space, 0);
        if (n > 0) {
            if (c->st == ST_LINGER || c->st == ST_HOLD) {
                c->ib_start = c->ib_end = 0;          /* discard */
            } else {
                c->ib_end += (uint32_t)n;
                conn_process(c);
            }
            if ((uint32_t)n < space)
                return 0;
            continue;
        }
        if (n == 0) {
            c->rd_eof = 1;
            return 0;
        }
        if (errno == EINTR) {
            i--;
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        conn_close(c);
        return -1;
    }
    return 0;
}

static void on_timer(struct conn *c, int kind)
{
    if (kind == T_DELAY) {
        emit_json(c);
        conn_run(c);
    } else {
        conn_close(c);                 /* T_LINGER, T_IDLE */
    }
}

/* ---------------------------------------------------------------- accept and the loop */

static void on_accept(struct worker *w, struct listener *l)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if ((errno == EMFILE || errno == ENFILE) && w->spare_fd >= 0) {
                /* out of descriptors: accept and drop one so the backlog does not spin us */
                close(w->spare_fd);
                fd = accept(l->fd, NULL, NULL);
                if (fd >= 0)
                    close(fd);
                w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        atomic_fetch_add_explicit(&g_accepts, 1, memory_order_relaxed);
        struct conn *c = conn_new(w, fd);
        if (!c) {
            close(fd);
            continue;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };
        if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            conn_close(c);
            continue;
        }
        c->evmask = EPOLLIN;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event evs[256];
    while (!w->stop) {
        int timeout = -1;
        if (w->heap_n) {
            uint64_t now = now_ms(), d = w->heap[0]->deadline;
            timeout = d <= now ? 0 : d - now > INT_MAX ? INT_MAX : (int)(d - now);
        }
        int n = epoll_wait(w->ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR) {
            perror("upstream: epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++) {
            int kind = *(int *)evs[i].data.ptr;
            uint32_t e = evs[i].events;
            if (kind == K_STOP) {
                w->stop = 1;
            } else if (kind == K_LISTEN) {
                on_accept(w, evs[i].data.ptr);
            } else {
                struct conn *c = evs[i].data.ptr;
                if (e & EPOLLERR) {
                    conn_close(c);
                    continue;
                }
                if (e & EPOLLIN) {
                    if (conn_read(c) < 0)
                        continue;
                } else if (e & EPOLLHUP) {
                    conn_close(c);
                    continue;
                }
                conn_run(c);
            }
        }
        if (w->heap_n) {
            uint64_t now = now_ms();
            while (w->heap_n && w->heap[0]->deadline <= now) {
                struct conn *c = w->heap[0];
                int kind = c->timer;
                timer_clear(c);
                on_timer(c, kind);
            }
        }
    }
    while (w->live)
        conn_close(w->live);
    while (w->free) {
        struct conn *c = w->free;
        w->free = c->next;
        free(c->ib);
        free(c->jb);
        free(c->ob);
        free(c->segs);
        free(c);
    }
    free(w->heap);
    return NULL;
}

/* ---------------------------------------------------------------- set-up */

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

static int parse_addr(const char *s, struct addr *a)
{
    char host[64];
    const char *colon;
    memset(a, 0, sizeof *a);
    if (s[0] == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof host)
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = 0;
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = 0;
    }
    uint64_t port;
    if (parse_num(colon + 1, strlen(colon + 1), 65535, &port))
        return -1;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&a->ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&a->ss;
    if (s[0] != '[' && inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        a->len = sizeof *a4;
    } else if (s[0] == '[' && inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        a->len = sizeof *a6;
    } else {
        return -1;
    }
    return 0;
}

static void addr_str(const struct addr *a, char *out, size_t n)
{
    char h[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *a4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &a4->sin_addr, h, sizeof h);
        snprintf(out, n, "%s:%u", h, ntohs(a4->sin_port));
    } else {
        const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &a6->sin6_addr, h, sizeof h);
        snprintf(out, n, "[%s]:%u", h, ntohs(a6->sin6_port));
    }
}

static int open_socket(const struct addr *a, int reuseport)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: upstream --listen ADDR:PORT [--listen ...] [--threads N] [--name NAME]\n"
            "                [--idle-timeout MS] [--close-reused]\n"
            "  ADDR is an IPv4 address or [IPv6]; port 0 picks a free port (printed).\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static struct addr addrs[MAX_LISTEN];
    static struct worker workers[MAX_THREADS];
    int naddr = 0, nthreads = 1;
    uint64_t v;

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);   /* threads inherit it; main sigwait()s */
    signal(SIGPIPE, SIG_IGN);

    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(o, "-h") || !strcmp(o, "--help"))
            usage();
        if (!strcmp(o, "--close-reused")) {
            g_close_reused = 1;
            continue;
        }
        if (!val) {
            fprintf(stderr, "upstream: %s needs a value\n", o);
            usage();
        }
        i++;
        if (!strcmp(o, "--listen")) {
            if (naddr == MAX_LISTEN || parse_addr(val, &addrs[naddr])) {
                fprintf(stderr, "upstream: bad --listen address '%s' (IPv4:port or [IPv6]:port)\n", val);
                return 2;
            }
            naddr++;
        } else if (!strcmp(o, "--threads")) {
            if (parse_num(val, strlen(val), MAX_THREADS, &v) || v == 0) {
                fprintf(stderr, "upstream: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
            nthreads = (int)v;
        } else if (!strcmp(o, "--name")) {
            size_t n = strlen(val);
            if (n == 0 || n >= sizeof g_name) {
                fprintf(stderr, "upstream: --name must be 1..128 characters\n");
                return 2;
            }
            for (size_t k = 0; k < n; k++)
                if (val[k] < 0x20 || val[k] > 0x7e || val[k] == '"' || val[k] == '\\') {
                    fprintf(stderr, "upstream: --name: printable ASCII without quotes or backslashes\n");
                    return 2;
                }
            memcpy(g_name, val, n + 1);
            g_name_len = n;
        } else if (!strcmp(o, "--idle-timeout")) {
            if (parse_num(val, strlen(val), 86400000, &v)) {
                fprintf(stderr, "upstream: --idle-timeout takes milliseconds\n");
                return 2;
            }
            g_idle_ms = (unsigned)v;
        } else {
            fprintf(stderr, "upstream: unknown option %s\n", o);
            usage();
        }
    }
    if (!naddr)
        usage();

    for (int ch = 0; ch < 256; ch++)
        g_tchar[ch] = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                      (ch >= 'A' && ch <= 'Z') || (ch && strchr("!#$%&'*+-.^_`|~", ch));
    g_pat = malloc(PAT_LEN + 26);
    if (!g_pat)
        return 1;
    for (size_t i = 0; i < PAT_LEN + 26; i++)
        g_pat[i] = (char)('a' + i % 26);
#if defined(__x86_64__) && !defined(UPSTREAM_NO_SHANI)
    if (cpu_has_shani()) {             /* use SHA-NI if it agrees with the C code */
        uint32_t h1[8] = { 1, 2, 3, 4, 5, 6, 7, 8 }, h2[8];
        memcpy(h2, h1, sizeof h1);
        sha256_blocks_c(h1, (const uint8_t *)g_pat + 3, 4);
        sha256_blocks_ni(h2, (const uint8_t *)g_pat + 3, 4);
        if (memcmp(h1, h2, sizeof h1) == 0)
            sha256_blocks = sha256_blocks_ni;
        else
            fprintf(stderr, "upstream: SHA-NI self-test failed, using the C SHA-256\n");
    }
#endif

    /* Refuse a port that something already listens on (SO_REUSEPORT alone would share it),
     * and resolve port 0 to one concrete port shared by all threads. */
    for (int i = 0; i < naddr; i++) {
        char s[80];
        int fd = open_socket(&addrs[i], 0);
        if (fd < 0) {
            addr_str(&addrs[i], s, sizeof s);
            fprintf(stderr, "upstream: cannot bind %s: %s\n", s, strerror(errno));
            return 1;
        }
        getsockname(fd, (struct sockaddr *)&addrs[i].ss, &addrs[i].len);
        close(fd);
    }

    int stopfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    static struct listener stop_obj = { K_STOP, -1 };
    stop_obj.fd = stopfd;
    for (int t = 0; t < nthreads; t++) {
        struct worker *w = &workers[t];
        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (w->ep < 0 || stopfd < 0) {
            perror("upstream: epoll/eventfd");
            return 1;
        }
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &stop_obj };
        epoll_ctl(w->ep, EPOLL_CTL_ADD, stopfd, &ev);
        for (int i = 0; i < naddr; i++) {
            int fd = open_socket(&addrs[i], 1);
            if (fd < 0 || listen(fd, 4096) < 0) {
                char s[80];
                addr_str(&addrs[i], s, sizeof s);
                fprintf(stderr, "upstream: cannot listen on %s: %s\n", s, strerror(errno));
                return 1;
            }
            w->ls[i] = (struct listener){ K_LISTEN, fd };
            ev = (struct epoll_event){ .events = EPOLLIN, .data.ptr = &w->ls[i] };
            epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
        }
        w->nls = naddr;
    }
    for (int i = 0; i < naddr; i++) {
        char s[80];
        addr_str(&addrs[i], s, sizeof s);
        printf("listening on %s\n", s);
    }
    fflush(stdout);

    for (int t = 0; t < nthreads; t++)
        if (pthread_create(&workers[t].th, NULL, worker_main, &workers[t])) {
            fprintf(stderr, "upstream: pthread_create failed\n");
            return 1;
        }

    int sig = 0;
    sigwait(&sigs, &sig);
    uint64_t one = 1;
    if (write(stopfd, &one, sizeof one) < 0)
        perror("upstream: eventfd write");
    for (int t = 0; t < nthreads; t++) {
        pthread_join(workers[t].th, NULL);
        for (int i = 0; i < workers[t].nls; i++)
            close(workers[t].ls[i].fd);
        close(workers[t].ep);
        if (workers[t].spare_fd >= 0)
            close(workers[t].spare_fd);
    }
    close(stopfd);
    free(g_pat);
    return 0;
}
