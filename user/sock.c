/* sock.c — ring operations on one connection: multishot recv, the single in-flight send, pause and
 * resume, connect, close (shutdown, cancel, then free once nothing is in flight), and the dispatch
 * of their completions to the owner's sock_ops. */
#include "sock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics.h"
#include "splice.h"
#include "transport.h"

void sock_init(struct sock *s, int fd, unsigned buf_group, const struct sock_ops *ops,
	       const struct transport_ops *tx)
{
	memset(s, 0, sizeof *s);
	s->fd = fd;
	s->buf_group = (uint8_t)buf_group;
	s->ops = ops;
	s->tx = tx;
}

void sock_arm_recv(struct loop *l, struct sock *s)
{
	/* a starved socket is re-armed by the loop once buffers are back */
	if (s->recv_armed || s->closing || s->eof || s->paused || s->starved)
		return;
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_recv_multishot(sqe, s->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = s->buf_group;
	io_uring_sqe_set_data64(sqe, UD(s, OP_RECV));
	s->recv_armed = true;
	s->inflight++;
}

void sock_flush(struct loop *l, struct sock *s)
{
	if (s->send_busy || s->closing || !s->connected)
		return;
	s->tx->flush(l, s);
}

bool sock_write_copy(struct loop *l, struct sock *s, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		uint32_t id = buf_heap_get(&l->bufs);
		if (id == UINT32_MAX)
			return false;
		uint32_t n = buf_cap(&l->bufs, id);
		if (n > len)
			n = (uint32_t)len;
		memcpy(buf_ptr(&l->bufs, id), p, n);
		if (!segq_push(&l->bufs, &s->out, id, 0, n)) /* it let id go */
			return false;
		p += n;
		len -= n;
	}
	return true;
}

void sock_pause(struct loop *l, struct sock *s)
{
	if (s->paused)
		return;
	s->paused = true;
	if (s->recv_armed) {
		struct io_uring_sqe *sqe = loop_sqe(l);
		io_uring_prep_cancel64(sqe, UD(s, OP_RECV), 0);
		io_uring_sqe_set_data64(sqe, UD(s, OP_CANCEL));
		s->inflight++;
	}
}

void sock_resume(struct loop *l, struct sock *s)
{
	if (!s->paused)
		return;
	s->paused = false;
	sock_arm_recv(l, s);
}

void sock_shutdown_write(struct loop *l, struct sock *s)
{
	if (!s->closing)
		s->tx->shutdown_write(l, s);
}

bool sock_can_splice(const struct sock *s)
{
	return s->tx->splice_ok;
}

void sock_connect(struct loop *l, struct sock *s, const struct sockaddr *addr, socklen_t len)
{
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_connect(sqe, s->fd, addr, len);
	io_uring_sqe_set_data64(sqe, UD(s, OP_CONNECT));
	s->inflight++;
}

static void release_if_idle(struct loop *l, struct sock *s)
{
	if (!s->closing || s->inflight || s->released)
		return;
	s->released = true;
	s->list_next = l->closed;
	l->closed = s;
}

void sock_close(struct loop *l, struct sock *s)
{
	if (s->closing)
		return;
	s->closing = true;
	l->nclosing++;
	timer_cancel(&l->wheel, &s->tm);
	if (s->starved) { /* leave the starved list: list_next is about to mean the closed list */
		struct sock **pp = &l->starved;
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
		struct io_uring_sqe *sqe = loop_sqe(l);
		io_uring_prep_cancel_fd(sqe, s->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, UD(s, OP_CANCEL));
		s->inflight++;
	}
	release_if_idle(l, s);
}

static void starve(struct loop *l, struct sock *s)
{
	if (s->starved)
		return;
	s->starved = true;
	s->list_next = l->starved;
	l->starved = s;
}

static void on_recv(struct loop *l, struct sock *s, struct io_uring_cqe *cqe)
{
	bool ended = !(cqe->flags & IORING_CQE_F_MORE);
	if (ended) {
		s->recv_armed = false;
		s->inflight--;
	}
	int res = cqe->res;
	if (res == -ENOBUFS && l->recv_starved)
		stat_add(&l->recv_starved[s->buf_group], 1);
	if (res > 0) {
		uint32_t bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
		buf_took_from_ring(&l->bufs, bid);
		if (s->closing || s->eof) {
			buf_unref(&l->bufs, bid);
			return;
		}
		int err = s->tx->received(l, s, bid, (uint32_t)res);
		if (err == TRANSPORT_EOF) { /* what came before the end first */
			s->ops->on_data(s);
			if (!s->closing && !s->eof) {
				s->eof = true;
				s->ops->on_eof(s, 0);
			}
			return;
		}
		if (err) { /* the bytes cannot be kept: the stream ends here, with the reason */
			s->eof = true;
			s->ops->on_eof(s, -err);
			return;
		}
		s->ops->on_data(s);
	} else if (res != -ENOBUFS && res != -ECANCELED && !s->closing && !s->eof) {
		s->eof = true; /* end of stream, or an error that ends it */
		s->ops->on_eof(s, res == 0 ? 0 : -res);
		return;
	}
	if (!ended || s->recv_armed || s->closing || s->eof)
		return;
	if (s->paused)
		s->ops->on_recv_stopped(s);
	else if (res == -ENOBUFS)
		starve(l, s); /* re-armed when buffers come back */
	else
		sock_arm_recv(l, s);
}

static void on_send(struct loop *l, struct sock *s, int res)
{
	s->send_busy = false;
	s->inflight--;
	if (s->closing)
		return;
	if (res < 0) {
		segq_clear(&l->bufs, &s->out);
		s->ops->on_send_error(s, -res);
		return;
	}
	s->tx->sent(l, s, (uint32_t)res);
	sock_flush(l, s);
	s->ops->on_sent(s);
}

void sock_complete(struct loop *l, struct sock *s, unsigned op, struct io_uring_cqe *cqe)
{
	switch (op) {
	case OP_RECV:
		on_recv(l, s, cqe);
		break;
	case OP_SEND:
		on_send(l, s, cqe->res);
		break;
	case OP_CONNECT:
		s->inflight--;
		if (!s->closing)
			s->ops->on_connected(s, cqe->res);
		break;
	case OP_CANCEL:
	case OP_SPLICE_POLL:
		s->inflight--;
		break;
	case OP_SPLICE_IN:
	case OP_SPLICE_OUT: {
		bool is_in = op == OP_SPLICE_IN;
		s->inflight--;
		if (splice_op_finished(l, s, is_in) && !s->closing)
			s->ops->on_splice(s, is_in, cqe->res);
		break;
	}
	default:
		return;
	}
	release_if_idle(l, s);
}

void sock_free_closed(struct loop *l, bool by_ring)
{
	while (l->closed) {
		struct sock *s = l->closed;
		l->closed = s->list_next;
		l->nclosing--;
		if (s->fd >= 0 && by_ring) {
			struct io_uring_sqe *sqe = loop_sqe(l);
			io_uring_prep_close(sqe, s->fd);
			io_uring_sqe_set_data64(sqe, 0); /* its completion needs nothing */
		} else if (s->fd >= 0) {
			close(s->fd);
		}
		s->fd = -1;
		if (s->tx->release)
			s->tx->release(l, s);
		segq_clear(&l->bufs, &s->in);
		segq_clear(&l->bufs, &s->out);
		if (s->sc) {
			s->sc->next_free = l->free_sc;
			l->free_sc = s->sc;
			s->sc = NULL;
		}
		s->ops->on_free(s);
	}
}

void sock_rearm_starved(struct loop *l)
{
	struct sock **pp = &l->starved;
	while (*pp) {
		struct sock *s = *pp;
		if (l->bufs.ring_free[s->buf_group] < 8) {
			pp = &s->list_next;
			continue;
		}
		*pp = s->list_next;
		s->starved = false;
		sock_arm_recv(l, s);
	}
}
