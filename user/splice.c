/* splice.c — kernel-side body forwarding through pooled pipes (see splice.h). */
#include "splice.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "worker.h"

#define PIPE_POOL_MAX 64

static bool pipe_get(struct worker *w, int *rd, int *wr)
{
	if (w->nfree_pipes) {
		w->nfree_pipes--;
		*rd = w->free_pipes[2 * w->nfree_pipes];
		*wr = w->free_pipes[2 * w->nfree_pipes + 1];
		return true;
	}
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) < 0)
		return false;
	fcntl(fds[1], F_SETPIPE_SZ, SPLICE_PIPE_BYTES); /* best effort: 64 KiB otherwise */
	*rd = fds[0];
	*wr = fds[1];
	return true;
}

static void pipe_put(struct worker *w, int rd, int wr)
{
	if (!w->free_pipes)
		w->free_pipes = malloc(2 * PIPE_POOL_MAX * sizeof *w->free_pipes);
	if (!w->free_pipes || w->nfree_pipes == PIPE_POOL_MAX) {
		close(rd);
		close(wr);
		return;
	}
	w->free_pipes[2 * w->nfree_pipes] = rd;
	w->free_pipes[2 * w->nfree_pipes + 1] = wr;
	w->nfree_pipes++;
}

void splice_pool_destroy(struct worker *w)
{
	for (uint32_t i = 0; i < 2 * w->nfree_pipes; i++)
		close(w->free_pipes[i]);
	free(w->free_pipes);
	w->free_pipes = NULL;
	w->nfree_pipes = 0;
}

bool splice_begin(struct worker *w, struct splice_leg *l, struct sock *src)
{
	if (!w->can_splice || !pipe_get(w, &l->rd, &l->wr))
		return false;
	l->active = true;
	l->in_pipe = 0;
	l->error = 0;
	sock_pause(w, src);
	return true;
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
	/* bytes queued on dst go first: they came before those in the pipe */
	if (l->in_pipe && !l->out_busy && dst->connected && dst->out.bytes == 0 && !dst->send_busy &&
	    !dst->closing) {
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_splice(sqe, l->rd, -1, dst->fd, -1, l->in_pipe, SPLICE_F_MOVE);
		io_uring_sqe_set_data64(sqe, UD(dst, OP_SPLICE_OUT));
		dst->inflight++;
		l->out_busy = true;
	}
	if (*remaining > 0 && !l->in_busy && l->in_pipe < SPLICE_PIPE_BYTES && !src->closing) {
		uint64_t want = SPLICE_PIPE_BYTES - l->in_pipe;
		if ((uint64_t)*remaining < want)
			want = (uint64_t)*remaining;
		struct io_uring_sqe *sqe = worker_sqe(w);
		io_uring_prep_splice(sqe, src->fd, -1, l->wr, -1, (unsigned)want, SPLICE_F_MOVE);
		io_uring_sqe_set_data64(sqe, UD(src, OP_SPLICE_IN));
		src->inflight++;
		l->in_busy = true;
	}
	if (*remaining == 0 && l->in_pipe == 0 && !l->in_busy && !l->out_busy) {
		pipe_put(w, l->rd, l->wr);
		splice_leg_init(l);
		return SPLICE_DONE;
	}
	return SPLICE_RUNNING;
}

void splice_in_done(struct splice_leg *l, int res, int64_t *remaining)
{
	l->in_busy = false;
	if (res > 0) {
		l->in_pipe += (uint32_t)res;
		*remaining -= res;
	} else if (!l->error) {
		l->error = res == 0 ? -1 : -res;
	}
}

void splice_out_done(struct splice_leg *l, int res)
{
	l->out_busy = false;
	if (res > 0) {
		l->in_pipe -= (uint32_t)res;
	} else if (!l->error) {
		l->error = res == 0 ? -1 : -res;
		l->failed_out = true;
	}
}

void splice_abandon(struct worker *w, struct splice_leg *l)
{
	if (!l->active)
		return;
	if (l->in_busy || l->out_busy || l->in_pipe) {
		close(l->rd);
		close(l->wr);
	} else {
		pipe_put(w, l->rd, l->wr);
	}
	splice_leg_init(l);
}
