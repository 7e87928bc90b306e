/* test_buf.c — unit tests of the buffer ring, heap buffers and segment queues (user/buf.c) on a
 * real io_uring with a registered provided-buffer ring: byte counts and contents through push,
 * consume and move; ring buffers handed back to the kernel exactly when their last segment goes
 * (checked in the ring itself, and by real recvs that would run out of buffers otherwise); shared
 * buffers; heap buffer reuse; coalescing a split head; clearing. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "buf.h"

#define NBUF 8
#define BSIZE 4096
#define HSIZE 8192

static struct io_uring ring;
static struct bufs b;
static uint16_t tail0; /* the buffer ring's tail after bufs_init */

/* The byte stream the simulated peer sends: S[i] is the i-th byte ever received. */
static unsigned char S[1 << 17];
static size_t spos; /* bytes "received" so far */

static void setup(void)
{
	int ret = io_uring_queue_init(8, &ring, 0);
	cr_assert_eq(ret, 0, "io_uring_queue_init: %s", strerror(-ret));
	ret = bufs_init(&b, &ring, NBUF, NBUF, BSIZE, HSIZE);
	cr_assert_eq(ret, 0, "bufs_init: %s", strerror(-ret));
	tail0 = b.br[BUF_GROUP_CLIENT]->tail;
	for (size_t i = 0; i < sizeof S; i++)
		S[i] = (unsigned char)(i * 131 + (i >> 8) * 7 + 1);
	spos = 0;
}

static void teardown(void)
{
	io_uring_queue_exit(&ring); /* as the worker does: the ring first, then its buffers */
	bufs_destroy(&b);
}

TestSuite(buf, .init = setup, .fini = teardown);

/* ---- helpers ----------------------------------------------------------------------------- */

/* A recv completed into ring buffer id: it holds the next len bytes of the stream (at off). */
static void recv_into(struct segq *q, uint32_t id, uint32_t off, uint32_t len)
{
	cr_assert_lt(id, NBUF);
	cr_assert_eq(b.ring_refs[id], 0, "ring buffer %u is not in the ring", id);
	buf_took_from_ring(&b, id);
	cr_assert_leq(off + len, BSIZE);
	memcpy(buf_ptr(&b, id) + off, S + spos, len);
	spos += len;
	cr_assert(segq_push(&b, q, id, off, len));
}

/* A heap buffer holding the next len bytes of the stream, pushed at off. */
static uint32_t heap_into(struct segq *q, uint32_t off, uint32_t len)
{
	uint32_t id = buf_heap_get(&b);
	cr_assert_neq(id, UINT32_MAX);
	cr_assert_geq(id, NBUF);
	cr_assert_leq(off + len, HSIZE);
	memcpy(buf_ptr(&b, id) + off, S + spos, len);
	spos += len;
	cr_assert(segq_push(&b, q, id, off, len));
	return id;
}

static size_t nsegs(const struct segq *q)
{
	size_t n = 0;
	for (const struct seg *s = q->head; s; s = s->next)
		n++;
	return n;
}

/* q is well formed and holds exactly the len bytes at want, in order. */
static void assert_q(const struct segq *q, const unsigned char *want, uint64_t len, const char *what)
{
	cr_assert_eq(q->bytes, len, "%s: bytes %llu, expected %llu", what,
		     (unsigned long long)q->bytes, (unsigned long long)len);
	cr_assert_eq(q->head == NULL, q->tail == NULL, "%s: head and tail disagree", what);
	uint64_t at = 0;
	const struct seg *last = NULL;
	for (const struct seg *s = q->head; s; s = s->next) {
		cr_assert_leq((uint64_t)s->off + s->len, buf_cap(&b, s->id), "%s: segment overruns", what);
		cr_assert_leq(at + s->len, len, "%s: more bytes in segments than counted", what);
		cr_assert(memcmp(seg_ptr(&b, s), want + at, s->len) == 0,
			  "%s: wrong bytes in the segment at stream offset %llu", what,
			  (unsigned long long)at);
		at += s->len;
		last = s;
	}
	cr_assert_eq(at, len, "%s: segments hold %llu bytes, expected %llu", what,
		     (unsigned long long)at, (unsigned long long)len);
	cr_assert_eq(q->tail, last, "%s: tail is not the last segment", what);
}

static uint16_t returned(void)
{
	return (uint16_t)(b.br[BUF_GROUP_CLIENT]->tail - tail0);
}

/* The k-th buffer handed back to the kernel since init is ring buffer id, whole. */
static void assert_returned(uint16_t k, uint32_t id)
{
	cr_assert_gt(returned(), k, "ring buffer %u not handed back", id);
	const struct io_uring_buf *e = &b.br[BUF_GROUP_CLIENT]->bufs[(uint16_t)(tail0 + k) & (NBUF - 1)];
	cr_assert_eq(e->bid, id, "hand-back #%u is buffer %u, expected %u", k, e->bid, id);
	cr_assert_eq(e->addr, (uint64_t)(uintptr_t)buf_ptr(&b, id));
	cr_assert_eq(e->len, BSIZE);
}

static uint32_t heap_in_use(void)
{
	return b.heap_n - b.heap_nfree;
}

/* ---- init -------------------------------------------------------------------------------- */

Test(buf, init_puts_every_ring_buffer_in_the_ring)
{
	cr_assert_eq(b.ring_n_group[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq((uint16_t)(tail0), NBUF);
	for (uint32_t i = 0; i < NBUF; i++) {
		const struct io_uring_buf *e = &b.br[BUF_GROUP_CLIENT]->bufs[i];
		cr_assert_eq(e->bid, i);
		cr_assert_eq(e->len, BSIZE);
		cr_assert_eq(e->addr, (uint64_t)(uintptr_t)buf_ptr(&b, i));
		cr_assert_eq(buf_cap(&b, i), BSIZE);
		cr_assert_eq(b.ring_refs[i], 0);
		if (i)
			cr_assert_eq(buf_ptr(&b, i) - buf_ptr(&b, i - 1), BSIZE, "ring buffers overlap");
	}
	uint32_t h = buf_heap_get(&b);
	cr_assert_geq(h, NBUF);
	cr_assert_eq(buf_cap(&b, h), HSIZE);
	memset(buf_ptr(&b, h), 0xAB, HSIZE); /* the whole capacity is usable (ASan checks) */
	buf_unref(&b, h);
}

/* ---- push and consume -------------------------------------------------------------------- */

/* Consuming a queue piece by piece keeps bytes and contents exact; each ring buffer goes back to
 * the ring when, and only when, its last byte is consumed. */
Test(buf, consume_in_pieces_hands_back_each_buffer_at_its_last_byte)
{
	struct segq q = { 0 };
	recv_into(&q, 3, 0, 100);
	recv_into(&q, 5, 0, BSIZE);
	recv_into(&q, 1, 0, 50);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 3);
	assert_q(&q, S, 4246, "after pushes");

	segq_consume(&b, &q, 40);
	assert_q(&q, S + 40, 4206, "consumed 40");
	cr_assert_eq(q.head->id, 3);
	cr_assert_eq(q.head->off, 40);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 3);
	cr_assert_eq(returned(), 0);

	segq_consume(&b, &q, 60); /* exactly to the end of buffer 3 */
	assert_q(&q, S + 100, 4146, "consumed 100");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 2);
	cr_assert_eq(returned(), 1);
	assert_returned(0, 3);
	cr_assert_eq(b.ring_refs[3], 0);
	cr_assert_eq(q.head->id, 5);

	segq_consume(&b, &q, BSIZE - 1);
	assert_q(&q, S + 100 + BSIZE - 1, 51, "all but one byte of buffer 5");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 2);
	cr_assert_eq(returned(), 1);

	segq_consume(&b, &q, 1);
	assert_q(&q, S + 100 + BSIZE, 50, "buffer 5 consumed");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	assert_returned(1, 5);

	segq_consume(&b, &q, 50);
	assert_q(&q, S, 0, "empty");
	cr_assert_null(q.head);
	cr_assert_null(q.tail);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq(returned(), 3);
	assert_returned(2, 1);
}

/* One consume spanning several segments and ending inside one. */
Test(buf, consume_across_segments_in_one_call)
{
	struct segq q = { 0 };
	recv_into(&q, 0, 0, 1000);
	recv_into(&q, 1, 0, 2000);
	recv_into(&q, 2, 0, 3000);
	recv_into(&q, 3, 0, 400);
	segq_consume(&b, &q, 1000 + 2000 + 1234);
	assert_q(&q, S + 4234, 3000 - 1234 + 400, "consumed 4234");
	cr_assert_eq(nsegs(&q), 2);
	cr_assert_eq(q.head->id, 2);
	cr_assert_eq(q.head->off, 1234);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 2);
	assert_returned(0, 0);
	assert_returned(1, 1);
	cr_assert_eq(returned(), 2);
	segq_consume(&b, &q, q.bytes);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	assert_q(&q, S, 0, "all consumed");
}

/* A segment can start inside its buffer; pushes after an emptying consume start a new list. */
Test(buf, push_at_an_offset_and_after_the_queue_emptied)
{
	struct segq q = { 0 };
	recv_into(&q, 6, 300, 200);
	assert_q(&q, S, 200, "offset segment");
	cr_assert_eq(q.head->off, 300);
	segq_consume(&b, &q, 200);
	cr_assert_null(q.head);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	assert_returned(0, 6);
	recv_into(&q, 6, 0, 10);
	recv_into(&q, 2, 0, 20);
	assert_q(&q, S + 200, 30, "pushed after emptying");
	segq_consume(&b, &q, 30);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
}

/* Segment nodes are recycled: steady recv/consume does not allocate a node per recv. */
Test(buf, segment_nodes_are_reused)
{
	struct segq q = { 0 };
	recv_into(&q, 0, 0, 10);
	struct seg *first = q.head;
	segq_consume(&b, &q, 10);
	recv_into(&q, 1, 0, 10);
	cr_assert_eq(q.head, first, "a consumed segment's node was not reused");
	segq_clear(&b, &q);
}

/* ---- move -------------------------------------------------------------------------------- */

/* Moving whole segments hands them over: no new references, nothing returned, both counts exact. */
Test(buf, move_of_whole_segments_hands_them_over)
{
	struct segq src = { 0 }, dst = { 0 };
	recv_into(&src, 0, 0, 100);
	recv_into(&src, 1, 0, 200);
	recv_into(&src, 2, 0, 300);
	cr_assert_eq(segq_move(&b, &dst, &src, 300), 300);
	assert_q(&dst, S, 300, "dst");
	assert_q(&src, S + 300, 300, "src");
	cr_assert_eq(nsegs(&dst), 2);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(b.ring_refs[i], 1, "buffer %u has %u references", i, b.ring_refs[i]);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 3);

	segq_consume(&b, &dst, 300);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	assert_returned(0, 0);
	assert_returned(1, 1);
	cr_assert_eq(b.ring_refs[2], 1);

	/* the emptied source still appends correctly */
	cr_assert_eq(segq_move(&b, &dst, &src, 300), 300);
	assert_q(&src, S, 0, "src emptied");
	cr_assert_null(src.head);
	recv_into(&src, 4, 0, 5);
	assert_q(&src, S + 600, 5, "src after a push");
	cr_assert_eq(src.head, src.tail);
	segq_clear(&b, &dst);
	segq_clear(&b, &src);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
}

/* Moving part of a segment: both halves point into the same buffer, which has two references and
 * goes back to the ring only when the second half is consumed, whichever it is. */
Test(buf, move_of_part_of_a_segment_shares_the_buffer)
{
	for (int order = 0; order < 2; order++) {
		struct segq src = { 0 }, dst = { 0 };
		size_t base = spos;
		recv_into(&src, 7, 0, 100);
		cr_assert_eq(segq_move(&b, &dst, &src, 30), 30);
		assert_q(&dst, S + base, 30, "dst");
		assert_q(&src, S + base + 30, 70, "src");
		cr_assert_eq(dst.head->id, 7);
		cr_assert_eq(dst.head->off, 0);
		cr_assert_eq(src.head->id, 7);
		cr_assert_eq(src.head->off, 30);
		cr_assert_eq(b.ring_refs[7], 2);
		cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
		uint16_t r0 = returned();

		struct segq *one = order ? &dst : &src, *two = order ? &src : &dst;
		segq_consume(&b, one, one->bytes);
		cr_assert_eq(b.ring_refs[7], 1);
		cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1, "buffer returned while still referenced");
		cr_assert_eq(returned(), r0);
		assert_q(two, S + base + (order ? 30 : 0), order ? 70 : 30, "the other half");
		segq_consume(&b, two, two->bytes);
		cr_assert_eq(b.ring_refs[7], 0);
		cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
		assert_returned(r0, 7);
	}
}

/* A move ending inside the second segment: the first moves whole, the second is split. */
Test(buf, move_spanning_segments_splits_only_the_last)
{
	struct segq src = { 0 }, dst = { 0 };
	recv_into(&dst, 5, 0, 10); /* dst already holds bytes: the moved ones go after them */
	recv_into(&src, 0, 0, 100);
	recv_into(&src, 1, 0, 200);
	recv_into(&src, 2, 0, 50);
	cr_assert_eq(segq_move(&b, &dst, &src, 150), 150);
	assert_q(&dst, S, 160, "dst with what it had and the moved bytes");
	cr_assert_eq(nsegs(&dst), 3);
	assert_q(&src, S + 160, 200, "src");
	cr_assert_eq(src.head->id, 1);
	cr_assert_eq(src.head->off, 50);
	cr_assert_eq(b.ring_refs[0], 1);
	cr_assert_eq(b.ring_refs[1], 2);
	cr_assert_eq(b.ring_refs[2], 1);

	/* asking for more than there is moves what there is */
	cr_assert_eq(segq_move(&b, &dst, &src, 100000), 200);
	assert_q(&src, S, 0, "src drained");
	assert_q(&dst, S, 360, "dst with everything");
	cr_assert_eq(b.ring_refs[1], 2);
	segq_clear(&b, &dst);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	for (uint32_t i = 0; i < NBUF; i++)
		cr_assert_eq(b.ring_refs[i], 0);
	cr_assert_eq(returned(), 4);
}

Test(buf, move_of_nothing_moves_nothing)
{
	struct segq src = { 0 }, dst = { 0 };
	cr_assert_eq(segq_move(&b, &dst, &src, 100), 0);
	recv_into(&src, 0, 0, 64);
	cr_assert_eq(segq_move(&b, &dst, &src, 0), 0);
	assert_q(&src, S, 64, "src");
	assert_q(&dst, S, 0, "dst");
	cr_assert_eq(b.ring_refs[0], 1);
	segq_clear(&b, &src);
}

/* Many small partial moves out of one buffer (a chunked body forwarded piece by piece): the buffer
 * is returned once, after the last piece, and every piece has the right bytes. */
Test(buf, many_partial_moves_of_one_buffer)
{
	struct segq src = { 0 }, dst = { 0 };
	recv_into(&src, 4, 0, BSIZE);
	for (int i = 0; i < BSIZE / 16 - 1; i++)
		cr_assert_eq(segq_move(&b, &dst, &src, 16), 16);
	cr_assert_eq(b.ring_refs[4], BSIZE / 16);
	assert_q(&dst, S, BSIZE - 16, "dst");
	assert_q(&src, S + BSIZE - 16, 16, "src");
	segq_consume(&b, &dst, dst.bytes);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	cr_assert_eq(segq_move(&b, &dst, &src, 16), 16); /* the last piece moves whole */
	cr_assert_eq(b.ring_refs[4], 1);
	segq_consume(&b, &dst, 16);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq(returned(), 1);
	assert_returned(0, 4);
}

/* ---- heap buffers ------------------------------------------------------------------------ */

Test(buf, heap_buffer_is_reused_after_release)
{
	struct segq q = { 0 };
	uint32_t h = heap_into(&q, 0, 500);
	cr_assert_eq(heap_in_use(), 1);
	segq_consume(&b, &q, 500);
	cr_assert_eq(heap_in_use(), 0);
	cr_assert_eq(buf_heap_get(&b), h, "the released heap buffer was not reused");
	cr_assert_eq(b.heap_n, 1);

	uint32_t h2 = buf_heap_get(&b);
	cr_assert_neq(h2, h);
	cr_assert_eq(b.heap_n, 2);
	buf_unref(&b, h);
	cr_assert_eq(buf_heap_get(&b), h);
	buf_unref(&b, h);
	buf_unref(&b, h2);
	cr_assert_eq(heap_in_use(), 0);
	uint32_t x = buf_heap_get(&b), y = buf_heap_get(&b);
	cr_assert((x == h && y == h2) || (x == h2 && y == h));
	cr_assert_eq(b.heap_n, 2, "new heap buffers allocated while two were free");
	buf_unref(&b, x);
	buf_unref(&b, y);
}

/* A heap buffer with an extra reference is not reused until the last one goes. */
Test(buf, referenced_heap_buffer_is_not_reused)
{
	uint32_t h = buf_heap_get(&b);
	buf_ref(&b, h);
	buf_unref(&b, h);
	uint32_t other = buf_heap_get(&b);
	cr_assert_neq(other, h, "a heap buffer still referenced was handed out again");
	buf_unref(&b, h);
	cr_assert_eq(buf_heap_get(&b), h);
	buf_unref(&b, h);
	buf_unref(&b, other);
	cr_assert_eq(heap_in_use(), 0);
}

/* Many heap buffers at once (past the first growth of the tables), all released and reused. */
Test(buf, many_heap_buffers)
{
	enum { M = 200 };
	uint32_t ids[M];
	for (int i = 0; i < M; i++) {
		ids[i] = buf_heap_get(&b);
		cr_assert_neq(ids[i], UINT32_MAX);
		memset(buf_ptr(&b, ids[i]), i, HSIZE);
		for (int j = 0; j < i; j++)
			cr_assert_neq(ids[i], ids[j]);
	}
	for (int i = 0; i < M; i++)
		cr_assert_eq((unsigned char)buf_ptr(&b, ids[i])[HSIZE - 1], (unsigned char)i,
			     "heap buffer %u was overwritten", ids[i]);
	for (int i = 0; i < M; i++)
		buf_unref(&b, ids[i]);
	cr_assert_eq(heap_in_use(), 0);
	for (int i = 0; i < M; i++)
		cr_assert_lt(buf_heap_get(&b), b.ring_n + M);
	cr_assert_eq(b.heap_n, M);
}

/* A heap segment split by a move: freed only after both halves go. */
Test(buf, heap_segment_split_by_a_move)
{
	struct segq src = { 0 }, dst = { 0 };
	uint32_t h = heap_into(&src, 0, 1000);
	cr_assert_eq(segq_move(&b, &dst, &src, 400), 400);
	assert_q(&dst, S, 400, "dst");
	assert_q(&src, S + 400, 600, "src");
	segq_consume(&b, &dst, 400);
	cr_assert_eq(heap_in_use(), 1);
	segq_consume(&b, &src, 600);
	cr_assert_eq(heap_in_use(), 0);
	cr_assert_eq(buf_heap_get(&b), h);
	buf_unref(&b, h);
}

/* ---- coalesce ---------------------------------------------------------------------------- */

/* A request head split across two recvs becomes one heap segment with the whole head; both ring
 * buffers go back to the ring. */
Test(buf, coalesce_joins_a_head_split_across_two_ring_buffers)
{
	static const char head[] = "GET /api/v1/items?id=7 HTTP/1.1\r\nHost: example.com\r\n"
				   "User-Agent: t\r\n\r\n";
	const uint32_t cut = 40, len = sizeof head - 1;
	memcpy(S, head, len);
	struct segq q = { 0 };
	recv_into(&q, 2, 0, cut);
	recv_into(&q, 6, 0, len - cut);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, (const unsigned char *)head, len, "coalesced head");
	cr_assert_eq(nsegs(&q), 1);
	cr_assert_geq(q.head->id, NBUF, "the front segment is not a heap buffer");
	cr_assert_eq(q.head->off, 0);
	cr_assert_eq(q.head, q.tail);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq(b.ring_refs[2], 0);
	cr_assert_eq(b.ring_refs[6], 0);
	cr_assert_eq(returned(), 2);
	assert_returned(0, 2);
	assert_returned(1, 6);
	cr_assert_eq(heap_in_use(), 1);
	segq_consume(&b, &q, len);
	cr_assert_eq(heap_in_use(), 0);
}

/* When the next segment does not fit in the room left, the heap buffer is filled to capacity and
 * the rest stays in that segment, whose ring buffer is kept. */
Test(buf, coalesce_when_the_next_segment_is_larger_than_the_room_left)
{
	struct segq q = { 0 };
	recv_into(&q, 0, 0, 3000);
	recv_into(&q, 1, 0, 4000);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S, 7000, "first coalesce");
	uint32_t h = q.head->id;
	cr_assert_geq(h, NBUF);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);

	recv_into(&q, 2, 0, BSIZE);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S, 7000 + BSIZE, "second coalesce");
	cr_assert_eq(nsegs(&q), 2);
	cr_assert_eq(q.head->id, h, "a heap front at offset 0 was copied again");
	cr_assert_eq(q.head->len, HSIZE);
	struct seg *rest = q.head->next;
	cr_assert_eq(rest->id, 2);
	cr_assert_eq(rest->off, HSIZE - 7000);
	cr_assert_eq(rest->len, BSIZE - (HSIZE - 7000));
	cr_assert_eq(q.tail, rest);
	cr_assert_eq(b.ring_refs[2], 1);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	cr_assert_eq(heap_in_use(), 1);

	/* full: another coalesce moves nothing */
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S, 7000 + BSIZE, "coalesce of a full front");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);

	segq_consume(&b, &q, HSIZE);
	cr_assert_eq(heap_in_use(), 0);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	segq_consume(&b, &q, q.bytes);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	assert_q(&q, S, 0, "empty");
}

/* A head arriving in three pieces: each coalesce joins the next piece only; the tail stays right
 * so that a later recv is appended after the coalesced bytes. */
Test(buf, coalesce_joins_one_segment_at_a_time_and_keeps_the_tail)
{
	struct segq q = { 0 };
	recv_into(&q, 0, 0, 10);
	recv_into(&q, 1, 0, 20);
	recv_into(&q, 2, 0, 30);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S, 60, "first coalesce");
	cr_assert_eq(nsegs(&q), 2);
	cr_assert_eq(q.head->len, 30);
	cr_assert_eq(q.tail->id, 2);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S, 60, "second coalesce");
	cr_assert_eq(nsegs(&q), 1);
	cr_assert_eq(q.tail, q.head);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	recv_into(&q, 3, 0, 40);
	assert_q(&q, S, 100, "a recv after coalescing");
	cr_assert_eq(nsegs(&q), 2);
	segq_clear(&b, &q);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	cr_assert_eq(heap_in_use(), 0);
}

/* A lone ring segment (partly consumed: a pipelined head after the previous request) moves to the
 * heap with its bytes, and its ring buffer goes back. */
Test(buf, coalesce_of_a_lone_partly_consumed_ring_segment)
{
	struct segq q = { 0 };
	recv_into(&q, 4, 0, 600);
	segq_consume(&b, &q, 100);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S + 100, 500, "coalesced");
	cr_assert_geq(q.head->id, NBUF);
	cr_assert_eq(q.head->off, 0);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	assert_returned(0, 4);
	segq_clear(&b, &q);
	cr_assert_eq(heap_in_use(), 0);
}

/* A heap front at an offset is copied to a fresh heap buffer at offset 0 and the old one released. */
Test(buf, coalesce_of_a_heap_front_at_an_offset)
{
	struct segq q = { 0 };
	uint32_t h = heap_into(&q, 0, 400);
	segq_consume(&b, &q, 100);
	recv_into(&q, 3, 0, 50);
	cr_assert(segq_coalesce_front(&b, &q));
	assert_q(&q, S + 100, 350, "coalesced");
	cr_assert_eq(nsegs(&q), 1);
	cr_assert_neq(q.head->id, h);
	cr_assert_eq(q.head->off, 0);
	cr_assert_eq(heap_in_use(), 1, "the old heap buffer was not released");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	segq_clear(&b, &q);
	cr_assert_eq(heap_in_use(), 0);
}

/* A heap front whose buffer is shared with another queue (a segq_move of part of it) must not be
 * extended in place: the bytes after it belong to the other queue. */
Test(buf, coalesce_does_not_write_into_a_buffer_shared_with_another_queue)
{
	struct segq a = { 0 }, q = { 0 };
	heap_into(&a, 0, 600);                         /* stream bytes [0, 600) */
	cr_assert_eq(segq_move(&b, &q, &a, 200), 200); /* q: [0, 200) of the buffer, a: [200, 600) */
	unsigned char next[100];
	for (int i = 0; i < 100; i++)
		next[i] = (unsigned char)~S[spos + (size_t)i]; /* differs from what a holds */
	buf_took_from_ring(&b, 0);
	memcpy(buf_ptr(&b, 0), next, sizeof next);
	cr_assert(segq_push(&b, &q, 0, 0, sizeof next));

	cr_assert(segq_coalesce_front(&b, &q));
	unsigned char want_q[300];
	memcpy(want_q, S, 200);
	memcpy(want_q + 200, next, 100);
	/* checked with cr_expect so that the queues are cleared (no leak) whatever the outcome */
	bool q_right = q.bytes == 300 && nsegs(&q) == 1 && q.head->len == 300 &&
		       memcmp(seg_ptr(&b, q.head), want_q, 300) == 0;
	bool a_right = a.bytes == 400 && nsegs(&a) == 1 && a.head->len == 400;
	long bad = -1;
	for (uint32_t i = 0; a_right && i < 400; i++)
		if ((unsigned char)seg_ptr(&b, a.head)[i] != S[200 + i]) {
			bad = i;
			break;
		}
	segq_clear(&b, &q);
	segq_clear(&b, &a);
	cr_expect(q_right, "the coalesced queue does not hold its 200 + 100 bytes");
	cr_expect(a_right, "the other queue's segment changed shape");
	cr_expect_eq(bad, -1,
		     "coalescing q overwrote the other queue's bytes from its byte %ld on (its buffer "
		     "is shared and was extended in place)", bad);
	cr_expect_eq(heap_in_use(), 0);
	cr_expect_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
}

/* ---- clear ------------------------------------------------------------------------------- */

/* Clearing releases every segment of a queue, whatever it points to (ring, heap, shared with
 * another queue, empty); buffers still referenced elsewhere stay held until that queue is cleared. */
Test(buf, clear_releases_everything)
{
	struct segq q = { 0 }, other = { 0 };
	recv_into(&q, 0, 0, 100);
	recv_into(&q, 1, 0, 200);
	heap_into(&q, 0, 300);
	buf_took_from_ring(&b, 2);
	cr_assert(segq_push(&b, &q, 2, 0, 0)); /* an empty segment */
	recv_into(&q, 3, 0, 400);
	segq_move(&b, &other, &q, 150); /* other shares buffer 1 with q */
	cr_assert_eq(b.ring_refs[1], 2);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 4);

	segq_clear(&b, &q);
	cr_assert_eq(q.bytes, 0);
	cr_assert_null(q.head);
	cr_assert_null(q.tail);
	cr_assert_eq(heap_in_use(), 0);
	cr_assert_eq(b.ring_refs[1], 1);
	cr_assert_eq(b.ring_refs[2], 0, "the empty segment's buffer was not released");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 2); /* 0 and 1 are still held by other */
	assert_q(&other, S, 150, "the other queue");

	segq_clear(&b, &other);
	assert_q(&other, S, 0, "other cleared");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	for (uint32_t i = 0; i < NBUF; i++)
		cr_assert_eq(b.ring_refs[i], 0);
	cr_assert_eq(returned(), 4);

	segq_clear(&b, &q); /* clearing an empty queue is harmless */
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
}

/* ---- with the kernel --------------------------------------------------------------------- */

/* Submits one recv on fd that picks a buffer from the ring; returns the result, *bid the buffer. */
static int kernel_recv(int fd, uint32_t *bid)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
	cr_assert_not_null(sqe);
	io_uring_prep_recv(sqe, fd, NULL, BSIZE, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BUF_GROUP_CLIENT;
	cr_assert_eq(io_uring_submit(&ring), 1);
	struct io_uring_cqe *cqe;
	int ret = io_uring_wait_cqe(&ring, &cqe);
	cr_assert_eq(ret, 0, "wait_cqe: %s", strerror(-ret));
	int res = cqe->res;
	if (res >= 0) {
		cr_assert(cqe->flags & IORING_CQE_F_BUFFER);
		*bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
	}
	io_uring_cqe_seen(&ring, cqe);
	return res;
}

/* Real recvs through the kernel, each consumed before the next: far more recvs than buffers, which
 * only works if consumed buffers really go back to the kernel's ring. */
Test(buf, kernel_reuses_buffers_handed_back)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct segq q = { 0 }, out = { 0 };
	for (int i = 0; i < 5 * NBUF; i++) {
		uint32_t len = 100 + (uint32_t)i * 37;
		cr_assert_eq(write(sv[1], S + spos, len), (ssize_t)len);
		uint32_t bid = UINT32_MAX;
		int res = kernel_recv(sv[0], &bid);
		cr_assert_eq(res, (int)len, "recv %d: %s", i, res < 0 ? strerror(-res) : "short");
		cr_assert_lt(bid, NBUF);
		buf_took_from_ring(&b, bid);
		cr_assert(segq_push(&b, &q, bid, 0, len));
		assert_q(&q, S + spos, len, "received");
		/* forward part, consume the rest, like a proxy would */
		segq_move(&b, &out, &q, len / 2);
		segq_consume(&b, &q, q.bytes);
		cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF - 1);
		segq_consume(&b, &out, out.bytes);
		cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
		spos += len;
	}
	close(sv[0]);
	close(sv[1]);
}

/* With every buffer held the kernel has none (ENOBUFS); consuming one segment gives exactly that
 * buffer back to the kernel, which uses it for the next recv. */
Test(buf, kernel_gets_the_buffer_back_when_its_segment_is_consumed)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct segq q = { 0 };
	uint32_t ids[NBUF];
	for (int i = 0; i < NBUF; i++) {
		cr_assert_eq(write(sv[1], S + spos, 64), 64);
		int res = kernel_recv(sv[0], &ids[i]);
		cr_assert_eq(res, 64, "recv %d: %d", i, res);
		buf_took_from_ring(&b, ids[i]);
		cr_assert(segq_push(&b, &q, ids[i], 0, 64));
		spos += 64;
	}
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], 0);
	assert_q(&q, S, 64 * NBUF, "all buffers held");
	cr_assert_eq(write(sv[1], S + spos, 64), 64);
	uint32_t bid = UINT32_MAX;
	cr_assert_eq(kernel_recv(sv[0], &bid), -ENOBUFS);
	segq_consume(&b, &q, 64);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], 1);
	cr_assert_eq(kernel_recv(sv[0], &bid), 64);
	cr_assert_eq(bid, ids[0], "the kernel used buffer %u, not the one handed back (%u)", bid, ids[0]);
	buf_took_from_ring(&b, bid);
	cr_assert(segq_push(&b, &q, bid, 0, 64));
	spos += 64;
	assert_q(&q, S + 64, 64 * NBUF, "after the refill");
	segq_clear(&b, &q);
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF);
	close(sv[0]);
	close(sv[1]);
}

/* Bytes that must wait (pipelined requests) leave the ring: packed into heap buffers, in order. */
Test(buf, unring_copies_waiting_bytes_out_of_the_ring)
{
	struct segq q = { 0 };
	recv_into(&q, 0, 0, 100);
	heap_into(&q, 0, 50);  /* a heap segment of ours: later ring bytes may be packed after it */
	recv_into(&q, 1, 10, 300);
	recv_into(&q, 2, 0, BSIZE);
	cr_assert(segq_unring(&b, &q));
	assert_q(&q, S, 100 + 50 + 300 + BSIZE, "unringed");
	for (const struct seg *s = q.head; s; s = s->next)
		cr_assert_geq(s->id, NBUF, "a segment still points into the ring");
	cr_assert_eq(b.ring_free[BUF_GROUP_CLIENT], NBUF, "ring buffers not handed back");
	cr_assert_leq(nsegs(&q), 3, "bytes were not packed together");
	segq_clear(&b, &q);
	cr_assert_eq(heap_in_use(), 0);
}

/* A heap buffer shared with another queue is never written into. */
Test(buf, unring_does_not_append_into_a_shared_heap_buffer)
{
	struct segq a = { 0 }, q = { 0 };
	heap_into(&a, 0, 600);
	cr_assert_eq(segq_move(&b, &q, &a, 200), 200); /* q: [0,200) of the shared buffer */
	recv_into(&q, 0, 0, 100);
	cr_assert(segq_unring(&b, &q));
	assert_q(&a, S + 200, 400, "other queue");
	unsigned char want[300];
	memcpy(want, S, 200);
	memcpy(want + 200, S + 600, 100);
	assert_q(&q, want, 300, "unringed");
	segq_clear(&b, &a);
	segq_clear(&b, &q);
	cr_assert_eq(heap_in_use(), 0);
}
