/* sock.h — a socket driven by its worker's ring: multishot recv into the buffer ring, one send in
 * flight draining an out queue (short sends handled), pause/resume for backpressure, and a close
 * that waits until no operation on the socket is still in flight before the memory is reused.
 * This is the plain transport: the HTTP layer only sees the bytes of `in` and fills `out`. A TLS
 * transport decrypts between a recv completion and `in`, encrypts between `out` and the send, and
 * never splices. */
#ifndef RINGWAY_SOCK_H
#define RINGWAY_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "buf.h"
#include "timer.h"

struct worker;
struct spipe;

enum sock_kind { SOCK_CLIENT = 1, SOCK_UPSTREAM };

#define SEND_IOV_MAX 16

struct sendctx {
	struct sendctx *next_free;
	struct msghdr msg;
	struct iovec iov[SEND_IOV_MAX];
};

struct sock {
	int fd;
	uint8_t kind;         /* enum sock_kind */
	bool recv_armed : 1;  /* a multishot recv is in flight */
	bool send_busy : 1;   /* a send is in flight */
	bool closing : 1;     /* closed: waiting for in-flight operations to end */
	bool paused : 1;      /* recv stopped for backpressure */
	bool starved : 1;     /* recv stopped: the buffer ring was empty */
	bool eof : 1;         /* peer finished sending (or recv failed) */
	bool connected : 1;   /* sends may start */
	bool released : 1;    /* on the worker's closed list */
	uint16_t inflight;    /* operations in flight that name this socket */
	struct segq in;       /* received bytes not consumed yet */
	struct segq out;      /* bytes to send */
	uint32_t sending;     /* bytes of out handed to the in-flight send */
	struct sendctx *sc;
	struct spipe *spl_in;  /* the pipe of the splice in flight from this socket */
	struct spipe *spl_out; /* the pipe of the splice in flight to this socket */
	struct timer tm;
	struct sock *list_next; /* on the worker's starved or closed list */
};

/* Operation tags in the low bits of user_data: every structure named by an operation is 16-byte
 * aligned (malloc'd, or declared RING_ALIGNED). */
enum op {
	OP_ACCEPT = 1,
	OP_RECV,
	OP_SEND,
	OP_CONNECT,
	OP_CANCEL,
	OP_TICK,
	OP_WAKE,
	OP_SPLICE_POLL, /* the poll a splice is linked behind */
	OP_SPLICE_IN,   /* source socket -> pipe */
	OP_SPLICE_OUT,  /* pipe -> destination socket */
};
#define OP_MASK 15ull
#define RING_ALIGNED __attribute__((aligned(16)))

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))
#define UD(ptr, op) ((uint64_t)(uintptr_t)(ptr) | (uint64_t)(op))

void sock_init(struct sock *s, int fd, enum sock_kind kind);
static inline unsigned sock_buf_group(const struct sock *s)
{
	return s->kind == SOCK_CLIENT ? BUF_GROUP_CLIENT : BUF_GROUP_UPSTREAM;
}
void sock_arm_recv(struct worker *w, struct sock *s);
/* Starts a send of what is queued in s->out if none is in flight. */
void sock_flush(struct worker *w, struct sock *s);
void sock_pause(struct worker *w, struct sock *s);
void sock_resume(struct worker *w, struct sock *s);
/* Stops the socket; its owner's free callback runs once nothing is in flight any more. */
void sock_close(struct worker *w, struct sock *s);
/* Queues a closing socket whose operations have all ended for freeing (once). */
void sock_release_if_idle(struct worker *w, struct sock *s);

/* Backpressure thresholds for the out queue of the receiving side. */
#define SOCK_OUT_HIGH (256u * 1024)
#define SOCK_OUT_LOW (64u * 1024)

#endif
