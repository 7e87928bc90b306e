/* sock.c — ring operations on one socket: multishot recv, the single in-flight send, pause and
 * resume, and close (shutdown, cancel, then free once nothing is in flight). */
#include "sock.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "worker.h"

void sock_init(struct sock *s, int fd, enum sock_kind kind)
{
	memset(s, 0, sizeof *s);
	s->fd = fd;
	s->kind = (uint8_t)kind;
}

void sock_arm_recv(struct worker *w, struct sock *s)
{
	/* a starved socket is re-armed by the worker once buffers are back */
	if (s->recv_armed || s->closing || s->eof || s->paused || s->starved)
		return;
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = (uint16_t)sock_buf_group(s);
	io_uring_sqe_set_data64(sqe, UD(s, OP_RECV));
	s->recv_armed = true;
	s->inflight++;
}

static struct sendctx *sendctx_get(struct worker *w)
{
	struct sendctx *sc = w->free_sc;
	if (sc) {
		w->free_sc = sc->next_free;
		return sc;
	}
	return malloc(sizeof *sc);
}

void sock_flush(struct worker *w, struct sock *s)
{
	if (s->send_busy || s->closing || !s->connected || s->out.bytes == 0)
		return;
	struct io_uring_sqe *sqe;
	if (s->out.head->next == NULL || s->out.head->len >= 65536) {
		/* one segment: a plain send */
		struct seg *g = s->out.head;
		sqe = worker_sqe(w);
		io_uring_prep_send(sqe, s->fd, seg_ptr(&w->bufs, g), g->len, MSG_NOSIGNAL);
		s->sending = g->len;
	} else {
		if (!s->sc && !(s->sc = sendctx_get(w)))
			return; /* out of memory: retried on the next flush */
		struct sendctx *sc = s->sc;
		unsigned n = 0;
		uint32_t total = 0;
		for (struct seg *g = s->out.head; g && n < SEND_IOV_MAX; g = g->next) {
			sc->iov[n].iov_base = seg_ptr(&w->bufs, g);
			sc->iov[n].iov_len = g->len;
			total += g->len;
			n++;
		}
		memset(&sc->msg, 0, sizeof sc->msg);
		sc->msg.msg_iov = sc->iov;
		sc->msg.msg_iovlen = n;
		sqe = worker_sqe(w);
		io_uring_prep_sendmsg(sqe, s->fd, &sc->msg, MSG_NOSIGNAL);
		s->sending = total;
	}
	io_uring_sqe_set_data64(sqe, UD(s, OP_SEND));
	s->send_busy = true;
	s->inflight++;
}

void sock_pause(struct worker *w, struct sock *s)
{
	if (s->paused)
		return;
	s->paused = true;
	if (s->recv_armed) {
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_cancel64(sqe, UD(s, OP_RECV), 0);
		io_uring_sqe_set_data64(sqe, UD(s, OP_CANCEL));
		s->inflight++;
	}
}

void sock_resume(struct worker *w, struct sock *s)
{
	if (!s->paused)
		return;
	s->paused = false;
	sock_arm_recv(w, s);
}

void sock_close(struct worker *w, struct sock *s)
{
	if (s->closing)
		return;
	s->closing = true;
	w->nclosing++;
	timer_cancel(&w->wheel, &s->tm);
	if (s->starved) { /* leave the starved list: list_next is about to mean the closed list */
		struct sock **pp = &w->starved;
		while (*pp && *pp != s)
			pp = &(*pp)->list_next;
		if (*pp)
			*pp = s->list_next;
		s->starved = false;
	}
	/* With operations in flight the ring holds the file, so close() alone would neither end them
	 * nor send the FIN: shut the socket down and cancel them. Without, the close that follows does
	 * it all (one syscall fewer for most closes: the peer's EOF already ended the recv). */
	if (s->fd >= 0 && s->inflight) {
		shutdown(s->fd, SHUT_RDWR);
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, UD(s, OP_CANCEL));
		s->inflight++;
	}
	sock_release_if_idle(w, s);
}

void sock_release_if_idle(struct worker *w, struct sock *s)
{
	if (!s->closing || s->inflight || s->released)
		return;
	s->released = true;
	s->list_next = w->closed;
	w->closed = s;
}
