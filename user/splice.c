/* splice.c — kernel-side body forwarding through pooled pipes (see splice.h). */
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "sock.h"

#define PIPE_POOL_MAX 64

static struct spipe *pipe_get(struct loop *l)
{
	struct spipe *p = l->free_pipes;
	if (p) {
		l->free_pipes = p->next_free;
		l->nfree_pipes--;
	} else {
		int fds[2];
		if (pipe2(fds, O_CLOEXEC | O_NONBLOCK) < 0)
			return NULL;
		if (!(p = malloc(sizeof *p))) {
			close(fds[0]);
			close(fds[1]);
			return NULL;
		}
		fcntl(fds[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES); /* best effort: may stay at 64 KiB */
		int cap = fcntl(fds[1], F_GETPIPE_SZ);
		p->cap = cap > 0 && (unsigned)cap < SPLICE_PIPE_BYTES ? (uint32_t)cap : SPLICE_PIPE_BYTES;
		p->rd = fds[0];
		p->wr = fds[1];
	}
	p->ops = 0;
	p->owned = true;
	l->nsplices++;
	return p;
}

static void pipe_close(struct spipe *p)
{
	close(p->rd);
	close(p->wr);
	free(p);
}

/* An empty pipe with nothing in flight goes back to the pool. */
static void pipe_put(struct loop *l, struct spipe *p)
{
	l->nsplices--;
	if (l->nfree_pipes >= PIPE_POOL_MAX) {
		pipe_close(p);
		return;
	}
	p->next_free = l->free_pipes;
	l->free_pipes = p;
	l->nfree_pipes++;
}

void splice_pool_destroy(struct loop *l)
{
	while (l->free_pipes) {
		struct spipe *p = l->free_pipes;
		l->free_pipes = p->next_free;
		pipe_close(p);
	}
	l->nfree_pipes = 0;
}

bool splice_begin(struct loop *l, struct splice_leg *sl, struct sock *src, const struct sock *dst)
{
	if (!l->can_splice || l->nsplices >= SPLICE_MAX_PER_WORKER || !sock_can_splice(src) ||
	    !sock_can_splice(dst))
		return false;
	struct spipe *p = pipe_get(l);
	if (!p)
		return false;
	splice_leg_init(sl);
	sl->p = p;
	sock_pause(l, src);
	return true;
}

/* A poll of fd for events, and linked behind it the splice: it runs once fd is ready. */
static void submit_polled_splice(struct loop *l, struct sock *s, unsigned events, int fd_in,
				 int fd_out, unsigned len, enum op op)
{
	/* both in one submission, or the link would be cut at the end of a full queue */
	if (io_uring_sq_space_left(&l->ring) < 2)
		io_uring_submit(&l->ring);
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_poll_add(sqe, s->fd, events);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, UD(s, OP_SPLICE_POLL));
	sqe = loop_sqe(l);
	io_uring_prep_splice(sqe, fd_in, -1, fd_out, -1, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	io_uring_sqe_set_data64(sqe, UD(s, op));
	s->inflight += 2;
}

enum splice_status splice_step(struct loop *l, struct splice_leg *sl, struct sock *src,
			       struct sock *dst, int64_t *remaining, uint64_t *moved)
{
	if (sl->error)
		return SPLICE_FAILED;
	if (src->recv_armed)
		return SPLICE_RUNNING; /* the recv is being cancelled; bytes may still land in src->in */
	if (src->in.bytes) {
		uint64_t n = segq_move(&l->bufs, &dst->out, &src->in, (uint64_t)*remaining);
		*remaining -= (int64_t)n;
		*moved += n;
		sock_flush(l, dst);
	}
	struct spipe *p = sl->p;
	/* bytes queued on dst go first: they came before those in the pipe */
	if (sl->in_pipe && !sl->out_busy && dst->connected && dst->out.bytes == 0 && !dst->send_busy &&
	    !dst->closing) {
		submit_polled_splice(l, dst, POLLOUT, p->rd, dst->fd, sl->in_pipe, OP_SPLICE_OUT);
		dst->spl_out = p;
		p->ops++;
		sl->out_busy = true;
	}
	if (*remaining > 0 && !sl->in_busy && !sl->in_blocked && sl->in_pipe < p->cap && !src->closing) {
		uint64_t want = p->cap - sl->in_pipe;
		if ((uint64_t)*remaining < want)
			want = (uint64_t)*remaining;
		submit_polled_splice(l, src, POLLIN, src->fd, p->wr, (unsigned)want, OP_SPLICE_IN);
		src->spl_in = p;
		p->ops++;
		sl->in_busy = true;
	}
	if (*remaining == 0 && sl->in_pipe == 0 && !sl->in_busy && !sl->out_busy) {
		pipe_put(l, p);
		splice_leg_init(sl);
		return SPLICE_DONE;
	}
	return SPLICE_RUNNING;
}

bool splice_op_finished(struct loop *l, struct sock *s, bool is_in)
{
	struct spipe *p = is_in ? s->spl_in : s->spl_out;
	if (is_in)
		s->spl_in = NULL;
	else
		s->spl_out = NULL;
	if (!p)
		return false;
	p->ops--;
	if (p->owned)
		return true;
	if (p->ops == 0) { /* abandoned, and now nothing names it: its fds can be reused */
		l->nsplices--;
		pipe_close(p);
	}
	return false;
}

/* EAGAIN: the poll saw readiness that was gone by the time the splice ran; ECANCELED: the poll
 * ended without readiness. Neither is a failure: the next step tries again. */
static bool splice_retry(int res)
{
	return res == -EAGAIN || res == -ECANCELED;
}

void splice_in_done(struct splice_leg *sl, int res, int64_t *remaining)
{
	sl->in_busy = false;
	if (res > 0) {
		sl->in_pipe += (uint32_t)res;
		*remaining -= res;
	} else if (res == -EAGAIN && sl->in_pipe) {
		/* the socket had data but the pipe took none: its slots are full of small segments.
		 * Splicing in again before one goes out would spin. */
		sl->in_blocked = true;
	} else if (!splice_retry(res) && !sl->error) {
		sl->error = res == 0 ? -1 : -res;
	}
}

void splice_out_done(struct splice_leg *sl, int res)
{
	sl->out_busy = false;
	if (res > 0) {
		sl->in_blocked = false;
		sl->in_pipe -= (uint32_t)res;
	} else if (!splice_retry(res) && !sl->error) {
		sl->error = res == 0 ? -1 : -res;
		sl->failed_out = true;
	}
}

void splice_abandon(struct loop *l, struct splice_leg *sl)
{
	struct spipe *p = sl->p;
	uint32_t in_pipe = sl->in_pipe;
	if (!p)
		return;
	splice_leg_init(sl);
	if (p->ops) { /* splices still name its fds: the last completion closes it */
		p->owned = false;
		return;
	}
	if (in_pipe) {
		l->nsplices--;
		pipe_close(p); /* holds bytes nobody will read */
	} else {
		pipe_put(l, p);
	}
}
