/* buf.h — a worker's byte buffers and the queues that reference them.
 * Ids [0, ring_n) are buffers of the provided-buffer rings that the kernel fills on recv (group 0
 * for client sockets: ids below group_split; group 1 for upstream sockets); ids from ring_n on are
 * heap buffers (built heads, coalesced partial heads). Every buffer is refcounted by
 * the segments that point into it: a ring buffer goes back to the kernel when its last segment is
 * consumed or sent, so an idle connection holds no buffer. */
#ifndef RINGWAY_BUF_H
#define RINGWAY_BUF_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#define BUF_GROUP_CLIENT 0
#define BUF_GROUP_UPSTREAM 1

struct seg {
	struct seg *next;
	uint32_t id;  /* buffer id */
	uint32_t off; /* first byte in the buffer */
	uint32_t len;
};

/* A FIFO of segments: bytes received and not yet consumed, or bytes queued to send. */
struct segq {
	struct seg *head, *tail;
	uint64_t bytes;
};

struct bufs {
	struct io_uring *ring;
	struct io_uring_buf_ring *br[2];
	char *ring_mem;
	uint32_t ring_n, ring_size, group_split;
	uint32_t ring_n_group[2], ring_free[2];
	uint16_t *ring_refs;
	/* heap buffers */
	uint32_t heap_size;
	char **heap;
	uint32_t *heap_refs;
	uint32_t heap_n, heap_cap;
	uint32_t *heap_free; /* stack of free heap ids (relative) */
	uint32_t heap_nfree;
	/* segment nodes */
	struct seg *free_segs;
};

/* Registers two buffer rings (n_client and n_upstream buffers, powers of two) of size bytes each.
 * heap_size is the size of heap buffers (at least the largest head plus one ring buffer). Returns 0
 * or -errno. */
int bufs_init(struct bufs *b, struct io_uring *ring, uint32_t n_client, uint32_t n_upstream,
	      uint32_t size, uint32_t heap_size);
void bufs_destroy(struct bufs *b);

static inline char *buf_ptr(const struct bufs *b, uint32_t id)
{
	return id < b->ring_n ? b->ring_mem + (size_t)id * b->ring_size : b->heap[id - b->ring_n];
}
static inline uint32_t buf_cap(const struct bufs *b, uint32_t id)
{
	return id < b->ring_n ? b->ring_size : b->heap_size;
}
void buf_ref(struct bufs *b, uint32_t id);
void buf_unref(struct bufs *b, uint32_t id);
/* A heap buffer with one reference, or UINT32_MAX when memory is exhausted. */
uint32_t buf_heap_get(struct bufs *b);
/* After a recv completion: the ring buffer now belongs to the caller (one reference). */
void buf_took_from_ring(struct bufs *b, uint32_t id);

/* Queues: push takes over one reference of id. */
bool segq_push(struct bufs *b, struct segq *q, uint32_t id, uint32_t off, uint32_t len);
/* Drops n bytes from the front (n <= q->bytes), releasing buffers and segments that empty. */
void segq_consume(struct bufs *b, struct segq *q, uint64_t n);
/* Moves up to n bytes from the front of src to the back of dst, sharing buffers. Returns bytes. */
uint64_t segq_move(struct bufs *b, struct segq *dst, struct segq *src, uint64_t n);
void segq_clear(struct bufs *b, struct segq *q);
/* Copies the bytes of every ring-buffer segment of q into heap buffers and gives the ring buffers
 * back: for bytes that must wait (pipelined requests) without holding the ring. False when out of
 * memory (q is then unchanged from the first segment it could not copy on). */
bool segq_unring(struct bufs *b, struct segq *q);
/* Makes the front segment a heap buffer holding its bytes and as many of the next segment's as fit,
 * so that a message head split across recvs can be parsed in one piece (and no ring buffer is
 * held while a head is incomplete). Returns false when out of memory. */
bool segq_coalesce_front(struct bufs *b, struct segq *q);
static inline char *seg_ptr(const struct bufs *b, const struct seg *s)
{
	return buf_ptr(b, s->id) + s->off;
}

#endif
