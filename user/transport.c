/* transport.c — the plain transport: received bytes are the plaintext, s->out goes out as it is
 * (one send, or one sendmsg over up to SEND_IOV_MAX segments), and splice may bypass user space. */
#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sock.h"

static int plain_received(struct loop *l, struct sock *s, uint32_t bid, uint32_t len)
{
	return segq_push(&l->bufs, &s->in, bid, 0, len) ? 0 : -ENOMEM; /* a failed push let bid go */
}

static struct sendctx *sendctx_get(struct loop *l)
{
	struct sendctx *sc = l->free_sc;
	if (sc) {
		l->free_sc = sc->next_free;
		return sc;
	}
	return malloc(sizeof *sc);
}

void transport_send_queue(struct loop *l, struct sock *s, struct segq *q)
{
	struct io_uring_sqe *sqe;
	if (q->head->next == NULL || q->head->len >= 65536) {
		/* one segment: a plain send */
		struct seg *g = q->head;
		sqe = loop_sqe(l);
		io_uring_prep_send(sqe, s->fd, seg_ptr(&l->bufs, g), g->len, MSG_NOSIGNAL);
	} else {
		if (!s->sc && !(s->sc = sendctx_get(l)))
			return; /* out of memory: retried on the next flush */
		struct sendctx *sc = s->sc;
		unsigned n = 0;
		for (struct seg *g = q->head; g && n < SEND_IOV_MAX; g = g->next) {
			sc->iov[n].iov_base = seg_ptr(&l->bufs, g);
			sc->iov[n].iov_len = g->len;
			n++;
		}
		memset(&sc->msg, 0, sizeof sc->msg);
		sc->msg.msg_iov = sc->iov;
		sc->msg.msg_iovlen = n;
		sqe = loop_sqe(l);
		io_uring_prep_sendmsg(sqe, s->fd, &sc->msg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, UD(s, OP_SEND));
	s->send_busy = true;
	s->inflight++;
}

static void plain_flush(struct loop *l, struct sock *s)
{
	if (s->out.bytes)
		transport_send_queue(l, s, &s->out);
}

void transport_release_sendctx(struct loop *l, struct sock *s)
{
	if (s->out.bytes == 0 && s->sc) {
		s->sc->next_free = l->free_sc;
		l->free_sc = s->sc;
		s->sc = NULL;
	}
}

static void plain_sent(struct loop *l, struct sock *s, uint32_t res)
{
	segq_consume(&l->bufs, &s->out, res);
	transport_release_sendctx(l, s);
}

static void plain_shutdown_write(struct loop *l, struct sock *s)
{
	shutdown(s->fd, SHUT_WR);
}

const struct transport_ops transport_plain = {
	.name = "plain",
	.received = plain_received,
	.flush = plain_flush,
	.sent = plain_sent,
	.shutdown_write = plain_shutdown_write,
	.splice_ok = true,
};
