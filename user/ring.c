/* ring.c — the io_uring set-up modes and operations ringway relies on, and opening a ring with
 * the fastest mode the running kernel accepts. */
#include "ring.h"

#include <errno.h>

static const struct ring_mode modes[] = {
	{ IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
	  "single issuer + deferred task run" },
	{ IORING_SETUP_CQSIZE | IORING_SETUP_COOP_TASKRUN, "cooperative task run" },
	{ IORING_SETUP_CQSIZE, "plain" },
};

static const struct ring_op ops[] = {
	{ IORING_OP_ACCEPT, "accept", true },   { IORING_OP_RECV, "recv", true },
	{ IORING_OP_SEND, "send", true },       { IORING_OP_SENDMSG, "sendmsg", true },
	{ IORING_OP_CONNECT, "connect", true }, { IORING_OP_ASYNC_CANCEL, "cancel", true },
	{ IORING_OP_TIMEOUT, "timeout", true }, { IORING_OP_READ, "read", true },
	{ IORING_OP_CLOSE, "close", true },
	{ IORING_OP_SPLICE, "splice", false },
};

const struct ring_mode *ring_modes(size_t *n)
{
	*n = sizeof modes / sizeof modes[0];
	return modes;
}

const struct ring_op *ring_ops(size_t *n)
{
	*n = sizeof ops / sizeof ops[0];
	return ops;
}

int ring_open_mode(struct io_uring *ring, size_t mode, unsigned *features)
{
	struct io_uring_params p = { .flags = modes[mode].flags, .cq_entries = CQ_ENTRIES };
	int ret = io_uring_queue_init_params(RING_ENTRIES, ring, &p);
	if (ret == 0)
		*features = p.features;
	return ret;
}

int ring_open(struct io_uring *ring, unsigned *features)
{
	int ret = -EINVAL;
	for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++)
		if ((ret = ring_open_mode(ring, i, features)) == 0)
			return (int)i;
	return ret;
}
