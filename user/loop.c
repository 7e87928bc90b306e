/* loop.c — one turn of a worker's event loop: submit and wait, advance the clock and the timer
 * wheel, dispatch each completion (listeners, sockets, tasks, the tick), then the end-of-turn work
 * (free closed sockets, re-arm starved ones, arm the tick only while timers are pending). */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "sock.h"
#include "splice.h"

/* Two buffer groups (of nbufs each), so that clients holding buffers can never stop upstream
 * responses (which free them) from being read. */
#define RING_BUF_SIZE 16384

int loop_init(struct loop *l, uint32_t nbufs, uint32_t max_head_bytes, uint64_t seed)
{
	int ret = bufs_init(&l->bufs, &l->ring, nbufs, nbufs, RING_BUF_SIZE,
			    max_head_bytes + RING_BUF_SIZE + 4096);
	if (ret)
		return ret;
	timer_wheel_init(&l->wheel, monotonic_ms());
	uint64_t r;
	if (getrandom(&r, sizeof r, GRND_NONBLOCK) == (ssize_t)sizeof r)
		seed ^= r;
	l->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
	return 0;
}

void loop_destroy(struct loop *l)
{
	sock_free_closed(l, false);
	splice_pool_destroy(l);
	while (l->free_sc) {
		struct sendctx *sc = l->free_sc;
		l->free_sc = sc->next_free;
		free(sc);
	}
	if (l->ring.ring_fd > 0)
		io_uring_queue_exit(&l->ring);
	bufs_destroy(&l->bufs);
}

struct io_uring_sqe *loop_sqe(struct loop *l)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&l->ring);
	while (!sqe) {
		io_uring_submit(&l->ring);
		sqe = io_uring_get_sqe(&l->ring);
	}
	return sqe;
}

uint64_t loop_random(struct loop *l)
{
	/* xorshift64* */
	uint64_t x = l->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	l->rng = x;
	return x * 0x2545f4914f6cdd1dull;
}

void listener_arm(struct loop *l, struct listener *li)
{
	if (li->armed || li->fd < 0)
		return;
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_multishot_accept(sqe, li->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	io_uring_sqe_set_data64(sqe, UD(li, OP_ACCEPT));
	li->armed = true;
}

void listener_stop(struct loop *l, struct listener *li)
{
	timer_cancel(&l->wheel, &li->backoff_tm);
	if (li->fd < 0)
		return;
	/* shutdown ends the multishot accept (close alone would not: the ring holds the file) */
	shutdown(li->fd, SHUT_RDWR);
	close(li->fd);
	li->fd = -1;
}

void listener_retire(struct loop *l, struct listener *li)
{
	li->retiring = true;
	listener_stop(l, li);
	if (!li->armed)
		li->on_retired(li);
}

static void backoff_over(struct timer *t)
{
	struct listener *li = container_of(t, struct listener, backoff_tm);
	li->backoff = false;
	listener_arm(li->loop, li);
}

/* Out of descriptors or memory: stop accepting for a tick (the connection stays in the backlog, so
 * accepting again at once would fail again at once), and say so once a second. */
static void accept_backoff(struct loop *l, struct listener *li, struct io_uring_cqe *cqe)
{
	uint64_t now = monotonic_ms();
	if (now - l->accept_warned_ms >= 1000) {
		log_warn("accept: %s: pausing accepts", strerror(-cqe->res));
		l->accept_warned_ms = now;
	}
	li->backoff = true;
	timer_arm(&l->wheel, &li->backoff_tm, TIMER_TICK_MS, backoff_over);
	if (cqe->flags & IORING_CQE_F_MORE) {
		struct io_uring_sqe *sqe = loop_sqe(l);
		io_uring_prep_cancel64(sqe, UD(li, OP_ACCEPT), 0);
		io_uring_sqe_set_data64(sqe, 0);
	}
}

static void on_accept(struct loop *l, struct listener *li, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		li->armed = false;
	int res = cqe->res;
	if (li->retiring) {
		if (res >= 0)
			close(res);
		if (!li->armed)
			li->on_retired(li);
		return;
	}
	if (res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM) {
		accept_backoff(l, li, cqe);
		return;
	}
	if (res >= 0 && li->fd < 0) /* accepted while it was being stopped */
		close(res);
	else if (res >= 0)
		li->on_accept(li, res);
	else if (res != -ECANCELED && li->fd >= 0) /* a stopped listener's accept ends with EINVAL */
		log_warn("accept: %s", strerror(-res));
	if (!li->backoff)
		listener_arm(l, li);
}

static void dispatch(struct loop *l, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	void *ptr = (void *)(uintptr_t)(ud & ~OP_MASK);
	unsigned op = (unsigned)(ud & OP_MASK);
	switch (op) {
	case 0:
		return; /* a close or a cancel whose completion needs nothing */
	case OP_ACCEPT:
		on_accept(l, ptr, cqe);
		return;
	case OP_TICK:
		l->tick_armed = false; /* the wheel advanced at the start of the turn */
		return;
	case OP_TASK: {
		struct loop_task *t = ptr;
		t->fn(t, cqe);
		return;
	}
	default:
		sock_complete(l, ptr, op, cqe);
		return;
	}
}

static void arm_tick(struct loop *l)
{
	l->tick_ts.tv_sec = 0;
	l->tick_ts.tv_nsec = TIMER_TICK_MS * 1000000L;
	struct io_uring_sqe *sqe = loop_sqe(l);
	io_uring_prep_timeout(sqe, &l->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, UD(l, OP_TICK));
	l->tick_armed = true;
}

int loop_run_once(struct loop *l)
{
	int ret = io_uring_submit_and_wait(&l->ring, 1);
	if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EBUSY)
		return ret;
	/* the clock first: timers armed by the completions below start from now */
	timer_wheel_advance(&l->wheel, monotonic_ms());
	struct io_uring_cqe *cqe;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&l->ring, head, cqe)
	{
		dispatch(l, cqe);
		seen++;
	}
	io_uring_cq_advance(&l->ring, seen);
	sock_free_closed(l, true);
	sock_rearm_starved(l);
	if (!l->tick_armed && l->wheel.armed) /* no timer pending, no tick: an idle worker sleeps */
		arm_tick(l);
	return 0;
}

void loop_flush_closes(struct loop *l)
{
	io_uring_submit(&l->ring);
}
