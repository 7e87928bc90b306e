/* ring.h — what ringway asks of io_uring: the set-up modes it tries (fastest first) and the
 * operations the data plane needs. The worker opens its ring with these; `ringway probe` reports
 * them for the host. */
#ifndef RINGWAY_RING_H
#define RINGWAY_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>

#define RING_ENTRIES 1024
#define CQ_ENTRIES 16384

struct ring_mode {
	unsigned flags;
	const char *name;
};

struct ring_op {
	int op;
	const char *name;
	bool needed; /* false: ringway works without it (splice) */
};

/* The set-up modes from the best to the plainest; *n gets their count. */
const struct ring_mode *ring_modes(size_t *n);
/* The operations ringway uses; *n gets their count. */
const struct ring_op *ring_ops(size_t *n);
/* Opens the ring in one mode (an index into ring_modes()): 0 or a negative errno. */
int ring_open_mode(struct io_uring *ring, size_t mode, unsigned *features);
/* Opens the ring with the first mode the kernel accepts: returns its index into ring_modes(), or
 * a negative errno when none is accepted. *features gets the kernel's IORING_FEAT_* bits. */
int ring_open(struct io_uring *ring, unsigned *features);

#endif
