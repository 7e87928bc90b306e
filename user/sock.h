/* sock.h — a connection driven by its loop's ring: multishot recv into the buffer ring, one send in
 * flight draining an out queue (short sends handled), pause/resume for backpressure, and a close
 * that waits until no operation on the socket is still in flight before the memory is reused.
 * Completions go to the owner through its sock_ops table; bytes go through the socket's transport
 * (transport.h), so the HTTP layer only ever sees the plaintext of `in` and fills `out`. */
#ifndef RINGWAY_SOCK_H
#define RINGWAY_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "buf.h"
#include "loop.h"
#include "timer.h"

struct sock;
struct spipe;
struct transport_ops;

/* What an owner (client connection, upstream connection, admin client, ...) is told. Each handler
 * runs only while the socket is not closing. */
struct sock_ops {
	void (*on_data)(struct sock *s);         /* new plaintext in s->in */
	void (*on_eof)(struct sock *s, int err); /* the peer finished (0) or the stream failed (errno) */
	void (*on_sent)(struct sock *s);         /* a send completed: s->out shrank */
	void (*on_send_error)(struct sock *s, int err);
	void (*on_connected)(struct sock *s, int res); /* a connect started by the owner ended */
	void (*on_splice)(struct sock *s, bool is_in, int res); /* a splice naming s ended */
	void (*on_recv_stopped)(struct sock *s); /* the recv ended while paused (a splice may start) */
	void (*on_free)(struct sock *s);         /* closed and nothing names it: free the owner */
};

#define SEND_IOV_MAX 16

struct sendctx {
	struct sendctx *next_free;
	struct msghdr msg;
	struct iovec iov[SEND_IOV_MAX];
};

struct sock {
	int fd;
	uint8_t buf_group;    /* BUF_GROUP_CLIENT or BUF_GROUP_UPSTREAM */
	bool recv_armed : 1;  /* a multishot recv is in flight */
	bool send_busy : 1;   /* a send is in flight */
	bool closing : 1;     /* closed: waiting for in-flight operations to end */
	bool paused : 1;      /* recv stopped for backpressure */
	bool starved : 1;     /* recv stopped: the buffer ring was empty */
	bool eof : 1;         /* peer finished sending (or recv failed) */
	bool connected : 1;   /* sends may start */
	bool released : 1;    /* on the loop's closed list */
	uint16_t inflight;    /* operations in flight that name this socket */
	const struct sock_ops *ops;
	const struct transport_ops *tx;
	void *tx_state;       /* the transport's own (TLS: its wolfSSL object and ciphertext) */
	struct segq in;       /* received plaintext not consumed yet */
	struct segq out;      /* plaintext to send */
	struct sendctx *sc;
	struct spipe *spl_in;  /* the pipe of the splice in flight from this socket */
	struct spipe *spl_out; /* the pipe of the splice in flight to this socket */
	struct timer tm;
	struct sock *list_next; /* on the loop's starved or closed list */
};

void sock_init(struct sock *s, int fd, unsigned buf_group, const struct sock_ops *ops,
	       const struct transport_ops *tx);
void sock_arm_recv(struct loop *l, struct sock *s);
/* Starts a send of what is queued in s->out if none is in flight. */
void sock_flush(struct loop *l, struct sock *s);
/* Copies len bytes into heap buffers queued on s->out (not sent yet: sock_flush). False when out
 * of memory (a part may be queued). For answers the gateway writes itself, not for relayed bytes. */
bool sock_write_copy(struct loop *l, struct sock *s, const void *data, size_t len);
void sock_pause(struct loop *l, struct sock *s);
void sock_resume(struct loop *l, struct sock *s);
/* Ends the write side (FIN) now, with s->out empty; reading goes on. */
void sock_shutdown_write(struct loop *l, struct sock *s);
/* Bytes may move between s and a pipe in the kernel (its transport carries plaintext). */
bool sock_can_splice(const struct sock *s);
/* Starts a connect to addr through the ring; ops->on_connected gets the result. */
void sock_connect(struct loop *l, struct sock *s, const struct sockaddr *addr, socklen_t len);
/* Stops the socket; ops->on_free runs once nothing is in flight any more. */
void sock_close(struct loop *l, struct sock *s);
/* A completion of op on s (from the loop's dispatch). */
void sock_complete(struct loop *l, struct sock *s, unsigned op, struct io_uring_cqe *cqe);
/* The end of a loop turn: sockets closed in it are freed (their descriptors closed through the
 * ring when by_ring), sockets starved of buffers are re-armed when their group has some again. */
void sock_free_closed(struct loop *l, bool by_ring);
void sock_rearm_starved(struct loop *l);

/* Backpressure thresholds for the out queue of the receiving side. */
#define SOCK_OUT_HIGH (256u * 1024)
#define SOCK_OUT_LOW (64u * 1024)

#endif
