/* splice.c — kernel-side body forwarding through pooled pipes (see splice.h). */
#include "splice.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker.h"

#define PIPE_POOL_MAX 64

static struct spipe *pipe_get(struct worker *w)
{
	struct spipe *p = w->free_pipes;
	if (p) {
		w->free_pipes = p->next_free;
		w->nfree_pipes--;
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
	w->nsplices++;
	return p;
}

static void pipe_close(struct spipe *p)
{
	close(p->rd);
	close(p->wr);
	free(p);
}

/* An empty pipe with nothing in flight goes back to the pool. */
static void pipe_put(struct worker *w, struct spipe *p)
{
	w->nsplices--;
	if (w->nfree_pipes >= PIPE_POOL_MAX) {
		pipe_close(p);
		return;
	}
	p->next_free = w->free_pipes;
	w->free_pipes = p;
	w->nfree_pipes++;
}

void splice_pool_destroy(struct worker *w)
{
	while (w->free_pipes) {
		struct spipe *p = w->free_pipes;
		w->free_pipes = p->next_free;
		pipe_close(p);
	}
	w->nfree_pipes = 0;
}

bool splice_begin(struct worker *w, struct splice_leg *l, struct sock *src)
{
	if (!w->can_splice || w->nsplices >= SPLICE_MAX_PER_WORKER)
		return false;
	struct spipe *p = pipe_get(w);
	if (!p)
		return false;
	splice_leg_init(l);
	l->p = p;
	sock_pause(w, src);
	return true;
}

/* A poll of fd for events, and linked behind it the splice: it runs once fd is ready. */
static void submit_polled_splice(struct worker *w, struct sock *s, unsigned events, int fd_in,
				 int fd_out, unsigned len, enum op op)
{
	/* both in one submission, or the link would be cut at the end of a full queue */
	if (io_uring_sq_space_left(&w->ring) < 2)
		io_uring_submit(&w->ring);
	struct io_uring_sqe *sqe = worker_sqe(w);
	io_uring_prep_poll_add(sqe, s->fd, events);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, UD(s, OP_SPLICE_POLL));
	sqe = worker_sqe(w);
	io_uring_prep_splice(sqe, fd_in, -1, fd_out, -1, len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
	io_uring_sqe_set_data64(sqe, UD(s, op));
	s->inflight += 2;
}

enum splice_status splice_step(struct worker *w, struct splice_leg *l, struct sock *src,
			       struct sock *dst, int64_t *remaining, uint64_t *moved)
{
	if (l->error)
		return SPLICE_FAILED;
	if (src->recv_armed)
		return SPLICE_RUNNING; /* the recv is being cancelled; bytes may still land in src->in */
	if (src->in.bytes) {
		uint64_t n = segq_move(&w->bufs, &dst->out, &src->in, (uint64_t)*remaining);
		*remaining -= (int64_t)n;
		*moved += n;
		sock_flush(w, dst);
	}
	struct spipe *p = l->p;
	/* bytes queued on dst go first: they came before those in the pipe */
	if (l->in_pipe && !l->out_busy && dst->connected && dst->out.bytes == 0 && !dst->send_busy &&
	    !dst->closing) {
		submit_polled_splice(w, dst, POLLOUT, p->rd, dst->fd, l->in_pipe, OP_SPLICE_OUT);
		dst->spl_out = p;
		p->ops++;
		l->out_busy = true;
	}
	if (*remaining > 0 && !l->in_busy && !l->in_blocked && l->in_pipe < p->cap && !src->closing) {
		uint64_t want = p->cap - l->in_pipe;
		if ((uint64_t)*remaining < want)
			want = (uint64_t)*remaining;
		submit_polled_splice(w, src, POLLIN, src->fd, p->wr, (unsigned)want, OP_SPLICE_IN);
		src->spl_in = p;
		p->ops++;
		l->in_busy = true;
	}
	if (*remaining == 0 && l->in_pipe == 0 && !l->in_busy && !l->out_busy) {
		pipe_put(w, p);
		splice_leg_init(l);
		return SPLICE_DONE;
	}
	return SPLICE_RUNNING;
}

bool splice_op_finished(struct worker *w, struct sock *s, bool is_in)
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
		w->nsplices--;
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

void splice_in_done(struct splice_leg *l, int res, int64_t *remaining)
{
	l->in_busy = false;
	if (res > 0) {
		l->in_pipe += (uint32_t)res;
		*remaining -= res;
	} else if (res == -EAGAIN && l->in_pipe) {
		/* the socket had data but the pipe took none: its slots are full of small segments.
		 * Splicing in again before one goes out would spin. */
		l->in_blocked = true;
	} else if (!splice_retry(res) && !l->error) {
		l->error = res == 0 ? -1 : -res;
	}
}

void splice_out_done(struct splice_leg *l, int res)
{
	l->out_busy = false;
	if (res > 0) {
		l->in_blocked = false;
		l->in_pipe -= (uint32_t)res;
	} else if (!splice_retry(res) && !l->error) {
		l->error = res == 0 ? -1 : -res;
		l->failed_out = true;
	}
}

void splice_abandon(struct worker *w, struct splice_leg *l)
{
	struct spipe *p = l->p;
	uint32_t in_pipe = l->in_pipe;
	if (!p)
		return;
	splice_leg_init(l);
	if (p->ops) { /* splices still name its fds: the last completion closes it */
		p->owned = false;
		return;
	}
	if (in_pipe) {
		w->nsplices--;
		pipe_close(p); /* holds bytes nobody will read */
	} else {
		pipe_put(w, p);
	}
}
