/* buf.c — the provided-buffer ring, heap buffers, their refcounts, and segment queues. */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int bufs_init(struct bufs *b, struct io_uring *ring, uint32_t n, uint32_t size, uint32_t heap_size)
{
	memset(b, 0, sizeof *b);
	b->ring = ring;
	b->ring_n = n;
	b->ring_size = size;
	b->heap_size = heap_size;
	size_t br_bytes = (size_t)n * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	b->br = br;
	b->ring_mem = malloc((size_t)n * size);
	b->ring_refs = calloc(n, sizeof *b->ring_refs);
	if (!b->ring_mem || !b->ring_refs)
		return -ENOMEM;
	struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)br, .ring_entries = n,
					.bgid = BUF_GROUP };
	int ret = io_uring_register_buf_ring(ring, &reg, 0);
	if (ret)
		return ret;
	io_uring_buf_ring_init(b->br);
	for (uint32_t i = 0; i < n; i++)
		io_uring_buf_ring_add(b->br, b->ring_mem + (size_t)i * size, size, (unsigned short)i,
				      io_uring_buf_ring_mask(n), (int)i);
	io_uring_buf_ring_advance(b->br, (int)n);
	b->ring_free = n;
	return 0;
}

void bufs_destroy(struct bufs *b)
{
	if (b->br)
		munmap(b->br, (size_t)b->ring_n * sizeof(struct io_uring_buf));
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

void buf_took_from_ring(struct bufs *b, uint32_t id)
{
	b->ring_refs[id] = 1;
	b->ring_free--;
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
			io_uring_buf_ring_add(b->br, buf_ptr(b, id), b->ring_size, (unsigned short)id,
					      io_uring_buf_ring_mask(b->ring_n), 0);
			io_uring_buf_ring_advance(b->br, 1);
			b->ring_free++;
		}
		return;
	}
	uint32_t h = id - b->ring_n;
	if (--b->heap_refs[h] == 0)
		b->heap_free[b->heap_nfree++] = h;
}

uint32_t buf_heap_get(struct bufs *b)
{
	uint32_t h;
	if (b->heap_nfree) {
		h = b->heap_free[--b->heap_nfree];
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

bool segq_coalesce_front(struct bufs *b, struct segq *q)
{
	struct seg *first = q->head;
	/* append in place only into a heap buffer that this segment alone owns, from its start */
	if (first->id < b->ring_n || first->off != 0 || b->heap_refs[first->id - b->ring_n] > 1) {
		uint32_t id = buf_heap_get(b);
		if (id == UINT32_MAX)
			return false;
		memcpy(buf_ptr(b, id), seg_ptr(b, first), first->len);
		buf_unref(b, first->id);
		first->id = id;
		first->off = 0;
	}
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
