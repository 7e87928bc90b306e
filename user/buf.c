/* buf.c — the provided-buffer ring, heap buffers, their refcounts, and segment queues. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define HEAP_KEEP 256 /* free heap buffers kept for reuse */

static int ring_register(struct bufs *b, unsigned group, uint32_t first, uint32_t n)
{
	size_t bytes = (size_t)n * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	b->br[group] = br;
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = n,
					.bgid = (uint16_t)group };
	int ret = io_uring_register_buf_ring(b->ring, &reg, 0);
	if (ret)
		return ret;
	io_uring_buf_ring_init(b->br[group]);
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(b->br[group], buf_ptr(b, first + i), b->ring_size,
				      (unsigned short)(first + i), io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(b->br[group], (int)n);
	b->ring_n_group[group] = n;
	b->ring_free[group] = n;
	return 0;
}

int bufs_init(struct bufs *b, struct io_uring *ring, uint32_t n_client, uint32_t n_upstream,
	      uint32_t size, uint32_t heap_size)
{
	memset(b, 0, sizeof *b);
	b->ring = ring;
	b->ring_n = n_client + n_upstream;
	b->group_split = n_client;
	b->ring_size = size;
	b->heap_size = heap_size;
	b->ring_mem = malloc((size_t)b->ring_n * size);
	b->ring_refs = calloc(b->ring_n, sizeof *b->ring_refs);
	if (!b->ring_mem || !b->ring_refs)
		return -ENOMEM;
	int ret = ring_register(b, BUF_GROUP_CLIENT, 0, n_client);
	if (!ret)
		ret = ring_register(b, BUF_GROUP_UPSTREAM, n_client, n_upstream);
	return ret;
}

void bufs_destroy(struct bufs *b)
{
	for (int g = 0; g < 2; g++)
		if (b->br[g])
			munmap(b->br[g], (size_t)b->ring_n_group[g] * sizeof(struct io_uring_buf));
	free(b->ring_mem);
	free(b->ring_refs);
	for (uint32_t i = 0; i < b->heap_n; i++)
		free(b->heap[i]);
	free(b->heap);
	free(b->heap_refs);
	free(b->heap_free);
	while (b->free_segs) {
		struct seg *s = b->free_segs;
		b->free_segs = s->next;
		free(s);
	}
	memset(b, 0, sizeof *b);
}

static inline unsigned ring_group(const struct bufs *b, uint32_t id)
{
	return id < b->group_split ? BUF_GROUP_CLIENT : BUF_GROUP_UPSTREAM;
}

void buf_took_from_ring(struct bufs *b, uint32_t id)
{
	b->ring_refs[id] = 1;
	b->ring_free[ring_group(b, id)]--;
}

void buf_ref(struct bufs *b, uint32_t id)
{
	if (id < b->ring_n)
		b->ring_refs[id]++;
	else
		b->heap_refs[id - b->ring_n]++;
}

void buf_unref(struct bufs *b, uint32_t id)
{
	if (id < b->ring_n) {
		if (--b->ring_refs[id] == 0) {
			unsigned g = ring_group(b, id);
			io_uring_buf_ring_add(b->br[g], buf_ptr(b, id), b->ring_size, (unsigned short)id,
					      io_uring_buf_ring_mask(b->ring_n_group[g]), 0);
			io_uring_buf_ring_advance(b->br[g], 1);
			b->ring_free[g]++;
		}
		return;
	}
	uint32_t h = id - b->ring_n;
	if (--b->heap_refs[h] == 0) {
		/* keep a few for reuse; a burst's worth goes back to the allocator */
		if (b->heap_nfree < HEAP_KEEP) {
			b->heap_free[b->heap_nfree++] = h;
			return;
		}
		/* the id stays usable, at the bottom of the stack, so that reuse finds memory first */
		free(b->heap[h]);
		b->heap[h] = NULL;
		b->heap_free[b->heap_nfree++] = b->heap_free[0];
		b->heap_free[0] = h;
	}
}

uint32_t buf_heap_get(struct bufs *b)
{
	uint32_t h;
	if (b->heap_nfree) {
		h = b->heap_free[--b->heap_nfree];
		if (!b->heap[h] && !(b->heap[h] = malloc(b->heap_size))) {
			b->heap_free[b->heap_nfree++] = h;
			return UINT32_MAX;
		}
	} else {
		if (b->heap_n == b->heap_cap) {
			uint32_t cap = b->heap_cap ? b->heap_cap * 2 : 64;
			char **heap = realloc(b->heap, cap * sizeof *heap);
			if (!heap)
				return UINT32_MAX;
			b->heap = heap;
			uint32_t *refs = realloc(b->heap_refs, cap * sizeof *refs);
			if (!refs)
				return UINT32_MAX;
			b->heap_refs = refs;
			uint32_t *fr = realloc(b->heap_free, cap * sizeof *fr);
			if (!fr)
				return UINT32_MAX;
			b->heap_free = fr;
			b->heap_cap = cap;
		}
		char *mem = malloc(b->heap_size);
		if (!mem)
			return UINT32_MAX;
		h = b->heap_n++;
		b->heap[h] = mem;
	}
	b->heap_refs[h] = 1;
	return b->ring_n + h;
}

static struct seg *seg_alloc(struct bufs *b)
{
	struct seg *s = b->free_segs;
	if (s) {
		b->free_segs = s->next;
		return s;
	}
	return malloc(sizeof *s);
}

static void seg_free(struct bufs *b, struct seg *s)
{
	s->next = b->free_segs;
	b->free_segs = s;
}

bool segq_push(struct bufs *b, struct segq *q, uint32_t id, uint32_t off, uint32_t len)
{
	struct seg *s = seg_alloc(b);
	if (!s) {
		buf_unref(b, id);
		return false;
	}
	*s = (struct seg){ .next = NULL, .id = id, .off = off, .len = len };
	if (q->tail)
		q->tail->next = s;
	else
		q->head = s;
	q->tail = s;
	q->bytes += len;
	return true;
}

void segq_consume(struct bufs *b, struct segq *q, uint64_t n)
{
	while (n && q->head) {
		struct seg *s = q->head;
		if (n < s->len) {
			s->off += (uint32_t)n;
			s->len -= (uint32_t)n;
			q->bytes -= n;
			return;
		}
		n -= s->len;
		q->bytes -= s->len;
		q->head = s->next;
		if (!q->head)
			q->tail = NULL;
		buf_unref(b, s->id);
		seg_free(b, s);
	}
	/* drop empty segments left at the front */
	while (q->head && q->head->len == 0) {
		struct seg *s = q->head;
		q->head = s->next;
		if (!q->head)
			q->tail = NULL;
		buf_unref(b, s->id);
		seg_free(b, s);
	}
}

uint64_t segq_move(struct bufs *b, struct segq *dst, struct segq *src, uint64_t n)
{
	uint64_t moved = 0;
	while (moved < n && src->head) {
		struct seg *s = src->head;
		uint64_t take = n - moved;
		if (take >= s->len) { /* the whole segment changes queue */
			src->head = s->next;
			if (!src->head)
				src->tail = NULL;
			src->bytes -= s->len;
			moved += s->len;
			s->next = NULL;
			if (dst->tail)
				dst->tail->next = s;
			else
				dst->head = s;
			dst->tail = s;
			dst->bytes += s->len;
			continue;
		}
		buf_ref(b, s->id);
		if (!segq_push(b, dst, s->id, s->off, (uint32_t)take))
			break;
		segq_consume(b, src, take);
		moved += take;
	}
	return moved;
}

/* Moves a segment's bytes to the start of a heap buffer of its own. */
static bool seg_to_heap(struct bufs *b, struct seg *g)
{
	uint32_t id = buf_heap_get(b);
	if (id == UINT32_MAX)
		return false;
	memcpy(buf_ptr(b, id), seg_ptr(b, g), g->len);
	buf_unref(b, g->id);
	g->id = id;
	g->off = 0;
	return true;
}

bool segq_unring(struct bufs *b, struct segq *q)
{
	struct seg *last_heap = NULL; /* a heap segment of ours with room after it */
	for (struct seg **pp = &q->head; *pp;) {
		struct seg *g = *pp;
		if (g->id >= b->ring_n) {
			last_heap = b->heap_refs[g->id - b->ring_n] == 1 ? g : NULL;
			pp = &g->next;
			continue;
		}
		if (last_heap && last_heap->off + last_heap->len + g->len <= b->heap_size) {
			memcpy(buf_ptr(b, last_heap->id) + last_heap->off + last_heap->len, seg_ptr(b, g),
			       g->len);
			last_heap->len += g->len;
			*pp = g->next;
			if (q->tail == g)
				q->tail = last_heap;
			buf_unref(b, g->id);
			seg_free(b, g);
			continue;
		}
		if (!seg_to_heap(b, g))
			return false;
		last_heap = g;
		pp = &g->next;
	}
	return true;
}

bool segq_coalesce_front(struct bufs *b, struct segq *q)
{
	struct seg *first = q->head;
	/* append in place only into a heap buffer that this segment alone owns, from its start */
	if ((first->id < b->ring_n || first->off != 0 || b->heap_refs[first->id - b->ring_n] > 1) &&
	    !seg_to_heap(b, first))
		return false;
	struct seg *second = first->next;
	if (!second)
		return true;
	uint32_t room = b->heap_size - first->len;
	uint32_t take = second->len < room ? second->len : room;
	memcpy(buf_ptr(b, first->id) + first->len, seg_ptr(b, second), take);
	first->len += take;
	second->off += take;
	second->len -= take;
	if (second->len == 0) {
		first->next = second->next;
		if (q->tail == second)
			q->tail = first;
		buf_unref(b, second->id);
		seg_free(b, second);
	}
	return true;
}

void segq_clear(struct bufs *b, struct segq *q)
{
	segq_consume(b, q, q->bytes);
	while (q->head) /* zero-length leftovers */
		segq_consume(b, q, 0);
}
