/* test_timer.c — unit tests of the per-worker hashed timer wheel (user/timer.c), driven with
 * explicit times only: a timer fires once, never before its deadline and at most one tick after
 * it; cancel and re-arm; thousands of timers spread over several turns of the wheel; callbacks
 * that arm, re-arm and cancel during an advance; long jumps in time; the armed count. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "timer.h"

#define TICK ((uint64_t)TIMER_TICK_MS)
#define ROUND_MS ((uint64_t)TIMER_SLOTS * TIMER_TICK_MS) /* one full turn of the wheel */
#define HOUR_MS 3600000ULL

/* A timer and what happened to it. */
struct probe {
	struct timer t;
	uint64_t deadline;  /* absolute time it was armed for */
	uint64_t fired_at;  /* time of the advance that fired it first */
	uint64_t last_at;   /* time of the advance that fired it last */
	unsigned fires;
	void (*then)(struct probe *p); /* run by the callback after recording the firing */
	struct probe *other;
	uint32_t ms;
};

static struct timer_wheel wheel;
static uint64_t cur; /* the time passed to the advance in progress */
static uint64_t total_fires; /* callbacks run, all timers */

static struct probe *probe_of(struct timer *t)
{
	return (struct probe *)((char *)t - offsetof(struct probe, t));
}

static void on_fire(struct timer *t)
{
	struct probe *p = probe_of(t);
	cr_assert_not(timer_armed(t), "a timer is still armed inside its own callback");
	total_fires++;
	if (p->fires++ == 0)
		p->fired_at = cur;
	p->last_at = cur;
	if (p->then)
		p->then(p);
}

static void start(uint64_t t0)
{
	timer_wheel_init(&wheel, t0);
	cur = t0;
}

/* Arms p for ms from the wheel's current time and remembers its absolute deadline. */
static void arm(struct probe *p, uint32_t ms)
{
	p->deadline = wheel.now_ms + ms;
	timer_arm(&wheel, &p->t, ms, on_fire);
}

static void advance(uint64_t t)
{
	cur = t;
	timer_wheel_advance(&wheel, t);
}

/* Advances one millisecond at a time from the wheel's time + 1 to t. */
static void walk_to(uint64_t t)
{
	for (uint64_t x = wheel.now_ms + 1; x <= t; x++)
		advance(x);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* ---- one timer --------------------------------------------------------------------------- */

/* Every combination of start time (aligned or not to the tick, small or a realistic monotonic
 * clock value) and delay: with 1 ms steps the timer fires exactly once, at the first advance at
 * or after its deadline rounded up to the tick, so never early and less than one tick late. */
Test(timer, fires_once_not_early_and_within_a_tick)
{
	static const uint64_t starts[] = { 0, 3, 9, 10, 1000, 1234567, 86400000ULL * 40 + 7 };
	static const uint32_t delays[] = { 1, 2, 9, 10, 11, 15, 19, 20, 99, 100, 101, 1234, 10239,
					   10240, 10241, 20481 };
	for (size_t i = 0; i < sizeof starts / sizeof *starts; i++) {
		for (size_t j = 0; j < sizeof delays / sizeof *delays; j++) {
			/* the wheel starts at a tick boundary; the time then moves to the start */
			uint64_t t0 = starts[i] - starts[i] % TICK;
			start(t0);
			advance(starts[i]);
			struct probe p = { 0 };
			arm(&p, delays[j]);
			cr_assert_eq(p.deadline, starts[i] + delays[j]);
			cr_assert(timer_armed(&p.t));
			cr_assert_eq(wheel.armed, 1);
			uint64_t end = p.deadline + 3 * TICK;
			for (uint64_t x = starts[i] + 1; x <= end; x++) {
				advance(x);
				if (x < p.deadline)
					cr_assert_eq(p.fires, 0,
						     "start %llu delay %u: fired at %llu, before its deadline",
						     (unsigned long long)starts[i], delays[j],
						     (unsigned long long)x);
			}
			cr_assert_eq(p.fires, 1, "start %llu delay %u: fired %u times",
				     (unsigned long long)starts[i], delays[j], p.fires);
			cr_assert_geq(p.fired_at, p.deadline);
			cr_assert_lt(p.fired_at - p.deadline, TICK,
				     "start %llu delay %u: deadline %llu, fired at %llu",
				     (unsigned long long)starts[i], delays[j],
				     (unsigned long long)p.deadline, (unsigned long long)p.fired_at);
			cr_assert_not(timer_armed(&p.t));
			cr_assert_eq(wheel.armed, 0);
		}
	}
}

/* The delay is rounded up to the tick: 15 ms from 0 is due at 20, not 10 and not 30. */
Test(timer, rounds_up_to_the_tick)
{
	start(0);
	struct probe p = { 0 };
	arm(&p, 15);
	advance(10);
	advance(15);
	advance(19);
	cr_assert_eq(p.fires, 0);
	advance(20);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 20);
}

/* A deadline that is exactly reached by a single advance fires in that advance. */
Test(timer, fires_when_now_equals_the_deadline)
{
	start(5000);
	struct probe p = { 0 };
	arm(&p, 300);
	advance(5299);
	cr_assert_eq(p.fires, 0);
	advance(5300);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(wheel.armed, 0);
}

/* A zero delay is due on the next tick: not in an advance to the same time, but by one tick later. */
Test(timer, zero_delay_fires_on_the_next_tick)
{
	start(0);
	advance(20);
	struct probe p = { 0 };
	arm(&p, 0);
	advance(20);
	cr_assert_eq(p.fires, 0);
	cr_assert(timer_armed(&p.t));
	advance(30);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(wheel.armed, 0);
}

/* The deadline counts from the time of the last advance, not from the time of init. */
Test(timer, delay_counts_from_the_last_advance)
{
	start(0);
	advance(1005);
	struct probe p = { 0 };
	arm(&p, 100);
	advance(1104);
	cr_assert_eq(p.fires, 0);
	advance(1110);
	cr_assert_eq(p.fires, 1);
}

/* An advance to an earlier time (a stale clock reading) fires nothing and does not move the clock
 * back: later arms still count from the latest time. */
Test(timer, advance_to_an_earlier_time_is_ignored)
{
	start(0);
	advance(1000);
	struct probe p = { 0 }, q = { 0 };
	arm(&p, 100);
	advance(500);
	cr_assert_eq(wheel.now_ms, 1000);
	arm(&q, 100);
	cr_assert_eq(q.deadline, 1100);
	advance(1099);
	cr_assert_eq(p.fires + q.fires, 0);
	advance(1100);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(q.fires, 1);
}

/* ---- cancel and re-arm ------------------------------------------------------------------- */

Test(timer, cancel_prevents_firing)
{
	start(0);
	struct probe p = { 0 }, keep = { 0 };
	arm(&p, 100);
	arm(&keep, 100);
	advance(50);
	timer_cancel(&wheel, &p.t);
	cr_assert_not(timer_armed(&p.t));
	cr_assert_eq(wheel.armed, 1);
	walk_to(3 * ROUND_MS);
	cr_assert_eq(p.fires, 0);
	cr_assert_eq(keep.fires, 1);
	cr_assert_eq(wheel.armed, 0);
}

/* Cancelling twice, cancelling a timer never armed and cancelling one that already fired change
 * nothing (the armed count of the other timers stays exact). */
Test(timer, cancel_is_idempotent)
{
	start(0);
	struct probe p = { 0 }, never = { 0 }, done = { 0 }, other = { 0 };
	arm(&other, 5000);
	arm(&p, 100);
	arm(&done, 10);
	advance(10);
	cr_assert_eq(done.fires, 1);
	cr_assert_eq(wheel.armed, 2);

	timer_cancel(&wheel, &p.t);
	cr_assert_eq(wheel.armed, 1);
	timer_cancel(&wheel, &p.t);
	cr_assert_eq(wheel.armed, 1);
	timer_cancel(&wheel, &never.t);
	cr_assert_eq(wheel.armed, 1);
	timer_cancel(&wheel, &done.t);
	cr_assert_eq(wheel.armed, 1);
	cr_assert_not(timer_armed(&p.t));
	cr_assert_not(timer_armed(&never.t));
	cr_assert_not(timer_armed(&done.t));

	walk_to(6000);
	cr_assert_eq(p.fires, 0);
	cr_assert_eq(done.fires, 1);
	cr_assert_eq(other.fires, 1);
	cr_assert_eq(wheel.armed, 0);
}

/* A cancelled timer can be armed again and then fires normally. */
Test(timer, cancelled_timer_can_be_armed_again)
{
	start(0);
	struct probe p = { 0 };
	arm(&p, 100);
	timer_cancel(&wheel, &p.t);
	advance(200);
	cr_assert_eq(p.fires, 0);
	arm(&p, 100);
	cr_assert_eq(wheel.armed, 1);
	advance(299);
	cr_assert_eq(p.fires, 0);
	advance(300);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 300);
}

/* Re-arming to a later deadline: nothing at the old one, one firing at the new one. */
Test(timer, rearm_later_moves_the_deadline)
{
	start(0);
	struct probe p = { 0 };
	arm(&p, 100);
	advance(50);
	arm(&p, 200); /* now due at 250 */
	cr_assert_eq(wheel.armed, 1);
	walk_to(249);
	cr_assert_eq(p.fires, 0);
	walk_to(1000);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 250);
	cr_assert_eq(wheel.armed, 0);
}

/* Re-arming to an earlier deadline: one firing at the new one, nothing at the old one. */
Test(timer, rearm_earlier_moves_the_deadline)
{
	start(0);
	struct probe p = { 0 };
	arm(&p, 1000);
	advance(20);
	arm(&p, 30); /* now due at 50 */
	cr_assert_eq(wheel.armed, 1);
	walk_to(49);
	cr_assert_eq(p.fires, 0);
	walk_to(3000);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 50);
	cr_assert_eq(wheel.armed, 0);
}

/* Re-arming to exactly one turn later puts the timer in the same slot, a round later: the slot's
 * first visit must not fire it. */
Test(timer, rearm_into_the_same_slot_a_round_later)
{
	start(0);
	struct probe p = { 0 };
	arm(&p, 100);
	arm(&p, (uint32_t)(100 + ROUND_MS));
	cr_assert_eq(wheel.armed, 1);
	walk_to(100 + ROUND_MS - 1);
	cr_assert_eq(p.fires, 0);
	walk_to(100 + 2 * ROUND_MS + TICK);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 100 + ROUND_MS);
}

/* Re-arming the same timer many times keeps it armed once (the count never drifts). */
Test(timer, repeated_rearm_counts_once)
{
	start(0);
	struct probe p = { 0 };
	for (uint32_t i = 0; i < 5000; i++) {
		arm(&p, (i * 7919) % 50000 + 1);
		cr_assert_eq(wheel.armed, 1);
	}
	arm(&p, 40);
	walk_to(39);
	cr_assert_eq(p.fires, 0);
	walk_to(60000);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.fired_at, 40);
	cr_assert_eq(wheel.armed, 0);
}

/* ---- many timers over several rounds ----------------------------------------------------- */

/* The first time in times[0..n) that is >= x; UINT64_MAX if none. */
static uint64_t first_at_or_after(const uint64_t *times, size_t n, uint64_t x)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (times[mid] < x)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n ? times[lo] : UINT64_MAX;
}

/* n timers: each fired exactly once, not before its deadline, and no later than the first advance
 * made at least one tick (minus 1 ms) after the deadline. */
static void check_all_fired(const struct probe *ps, size_t n, const uint64_t *times, size_t ntimes)
{
	for (size_t i = 0; i < n; i++) {
		const struct probe *p = &ps[i];
		cr_assert_eq(p->fires, 1, "timer %zu (deadline %llu) fired %u times", i,
			     (unsigned long long)p->deadline, p->fires);
		cr_assert_geq(p->fired_at, p->deadline, "timer %zu: deadline %llu, fired early at %llu",
			      i, (unsigned long long)p->deadline, (unsigned long long)p->fired_at);
		uint64_t latest = first_at_or_after(times, ntimes, p->deadline + TICK - 1);
		cr_assert_leq(p->fired_at, latest, "timer %zu: deadline %llu, fired late at %llu",
			      i, (unsigned long long)p->deadline, (unsigned long long)p->fired_at);
		cr_assert_not(timer_armed(&p->t));
	}
}

/* 4000 timers with deadlines spread over five turns of the wheel (many sharing a slot in different
 * rounds, many sharing a deadline), armed at different times, with the clock stepped 1 ms at a
 * time: each fires exactly once, less than one tick after its deadline; the armed count is exact
 * at every step. */
Test(timer, many_timers_over_several_rounds_1ms_steps)
{
	enum { N = 4000 };
	struct probe *ps = calloc(N, sizeof *ps);
	cr_assert_not_null(ps);
	start(0);
	size_t armed_so_far = 0;
	uint64_t end = 6 * ROUND_MS;
	for (uint64_t x = 0; x <= end; x++) {
		if (x)
			advance(x);
		/* arm a batch at a few times, including the start */
		if (x == 0 || x == 777 || x == ROUND_MS + 3 || x == 2 * ROUND_MS + 5000) {
			for (size_t k = 0; k < N / 4; k++) {
				struct probe *p = &ps[armed_so_far++];
				uint32_t ms;
				switch (k % 4) {
				case 0: /* anywhere in the next 3.5 rounds */
					ms = (uint32_t)(rnd() % (ROUND_MS * 7 / 2)) + 1;
					break;
				case 1: /* the same slot, different rounds */
					ms = (uint32_t)((k / 4) % 4 * ROUND_MS + 1230);
					break;
				case 2: /* a few shared deadlines */
					ms = (uint32_t)(50 + (k / 4) % 3 * 5000);
					break;
				default: /* tiny delays */
					ms = (uint32_t)(k / 4) % 23 + 1;
					break;
				}
				arm(p, ms);
			}
		}
		cr_assert_eq(wheel.armed, armed_so_far - total_fires, "at %llu: armed %u, expected %llu",
			     (unsigned long long)x, wheel.armed,
			     (unsigned long long)(armed_so_far - total_fires));
	}
	cr_assert_eq(armed_so_far, N);
	for (size_t i = 0; i < N; i++) {
		cr_assert_eq(ps[i].fires, 1, "timer %zu fired %u times", i, ps[i].fires);
		cr_assert_geq(ps[i].fired_at, ps[i].deadline);
		cr_assert_lt(ps[i].fired_at - ps[i].deadline, TICK, "timer %zu: deadline %llu fired %llu",
			     i, (unsigned long long)ps[i].deadline, (unsigned long long)ps[i].fired_at);
	}
	cr_assert_eq(total_fires, N);
	cr_assert_eq(wheel.armed, 0);
	free(ps);
}

/* The same with irregular clock steps (1 ms to several ticks, like a busy event loop), a timer
 * cancelled or re-armed now and then. */
Test(timer, many_timers_over_several_rounds_irregular_steps)
{
	enum { N = 3000, MAXT = 200000 };
	struct probe *ps = calloc(N, sizeof *ps);
	uint64_t *times = calloc(MAXT, sizeof *times);
	bool *cancelled = calloc(N, sizeof *cancelled);
	cr_assert(ps && times && cancelled);
	start(ROUND_MS * 1000 + 3);
	uint64_t t0 = wheel.now_ms;
	for (size_t i = 0; i < N; i++)
		arm(&ps[i], (uint32_t)(rnd() % (4 * ROUND_MS + 100)) + 1);
	size_t nt = 0, ncancel = 0;
	uint64_t x = t0;
	while (x < t0 + 5 * ROUND_MS) {
		x += rnd() % 37 + 1;
		advance(x);
		times[nt++] = x;
		cr_assert_lt(nt, MAXT);
		/* now and then cancel one or move one that has not fired */
		size_t i = rnd() % N;
		if (!ps[i].fires && !cancelled[i] && rnd() % 8 == 0) {
			if (rnd() % 2) {
				timer_cancel(&wheel, &ps[i].t);
				cancelled[i] = true;
				ncancel++;
			} else {
				arm(&ps[i], (uint32_t)(rnd() % ROUND_MS) + 1);
			}
		}
		cr_assert_eq(wheel.armed, N - total_fires - ncancel, "at %llu", (unsigned long long)x);
	}
	for (size_t i = 0; i < N; i++)
		if (cancelled[i])
			cr_assert_eq(ps[i].fires, 0, "cancelled timer %zu fired", i);
	cr_assert_gt(ncancel, 0);
	for (size_t i = 0; i < N; i++)
		if (!cancelled[i])
			check_all_fired(&ps[i], 1, times, nt);
	cr_assert_eq(wheel.armed, 0);
	free(ps);
	free(times);
	free(cancelled);
}

/* ---- long jumps in time ------------------------------------------------------------------ */

/* After an hour with no advance (a suspended process), one advance fires everything due — spread
 * over many rounds, in every slot — exactly once, and nothing that is not yet due; what is left
 * then fires on time. */
Test(timer, one_hour_jump_fires_everything_due)
{
	enum { N = 5000 };
	struct probe *ps = calloc(N, sizeof *ps);
	cr_assert_not_null(ps);
	start(0);
	for (size_t i = 0; i < N; i++) {
		uint32_t ms;
		if (i < TIMER_SLOTS)
			ms = (uint32_t)(i * TICK + 1); /* one in every slot */
		else if (i % 5 == 0)
			ms = (uint32_t)(HOUR_MS + 1 + rnd() % HOUR_MS); /* due after the jump */
		else
			ms = (uint32_t)(rnd() % (HOUR_MS - TICK)) + 1;
		arm(&ps[i], ms);
	}
	size_t later = 0;
	for (size_t i = 0; i < N; i++)
		later += ps[i].deadline > HOUR_MS;
	advance(HOUR_MS);
	for (size_t i = 0; i < N; i++) {
		if (ps[i].deadline <= HOUR_MS - TICK + 1) {
			cr_assert_eq(ps[i].fires, 1, "timer %zu (deadline %llu) fired %u times", i,
				     (unsigned long long)ps[i].deadline, ps[i].fires);
			cr_assert_eq(ps[i].fired_at, HOUR_MS);
		} else if (ps[i].deadline > HOUR_MS) {
			cr_assert_eq(ps[i].fires, 0, "timer %zu (deadline %llu) fired at the jump", i,
				     (unsigned long long)ps[i].deadline);
		}
	}
	cr_assert_eq(wheel.armed, later);
	/* the rest, in 1 ms steps up to the last deadline, then one more long jump */
	for (uint64_t x = HOUR_MS + 1; x <= 2 * HOUR_MS + TICK; x++)
		advance(x);
	advance(3 * HOUR_MS);
	for (size_t i = 0; i < N; i++) {
		cr_assert_eq(ps[i].fires, 1, "timer %zu (deadline %llu) fired %u times", i,
			     (unsigned long long)ps[i].deadline, ps[i].fires);
		cr_assert_geq(ps[i].fired_at, ps[i].deadline);
		if (ps[i].deadline > HOUR_MS)
			cr_assert_lt(ps[i].fired_at - ps[i].deadline, TICK);
	}
	cr_assert_eq(wheel.armed, 0);
	free(ps);
}

/* Jumps around one turn of the wheel (the point where the advance stops walking every tick and
 * visits each slot once): every timer due by the jump fires, the others keep waiting, and all of
 * them end up firing exactly once and on time. */
Test(timer, jumps_around_one_round)
{
	static const uint64_t jumps[] = { ROUND_MS - TICK, ROUND_MS - 1, ROUND_MS, ROUND_MS + 1,
					  ROUND_MS + TICK, ROUND_MS + TICK + 5, 2 * ROUND_MS + 3,
					  7 * ROUND_MS + 4321 };
	enum { N = 3 * TIMER_SLOTS };
	struct probe *ps = calloc(N, sizeof *ps);
	uint64_t *times = calloc(N * 7 + 100, sizeof *times);
	cr_assert(ps && times);
	for (size_t j = 0; j < sizeof jumps / sizeof *jumps; j++) {
		memset(ps, 0, N * sizeof *ps);
		uint64_t t0 = 50000 + j * 7; /* not always tick-aligned */
		start(t0 - t0 % TICK);
		advance(t0);
		for (size_t i = 0; i < N; i++) /* deadlines every 7 ms up to three turns ahead */
			arm(&ps[i], (uint32_t)(i * 7 + 1));
		size_t nt = 0;
		uint64_t j_at = t0 + jumps[j];
		advance(j_at);
		times[nt++] = j_at;
		size_t not_due = 0;
		for (size_t i = 0; i < N; i++) {
			if (ps[i].deadline + TICK - 1 <= j_at)
				cr_assert_eq(ps[i].fires, 1, "jump %llu: timer %zu (deadline %llu) fired %u",
					     (unsigned long long)jumps[j], i,
					     (unsigned long long)ps[i].deadline, ps[i].fires);
			if (ps[i].deadline > j_at)
				cr_assert_eq(ps[i].fires, 0, "jump %llu: timer %zu (deadline %llu) early",
					     (unsigned long long)jumps[j], i,
					     (unsigned long long)ps[i].deadline);
			not_due += ps[i].fires == 0;
		}
		cr_assert_eq(wheel.armed, not_due);
		uint64_t last = t0 + N * 7 + 2 * TICK;
		for (uint64_t x = j_at + 1; x <= last; x++) {
			advance(x);
			times[nt++] = x;
		}
		check_all_fired(ps, N, times, nt);
		cr_assert_eq(wheel.armed, 0);
	}
	free(ps);
	free(times);
}

/* ---- callbacks that arm and cancel ------------------------------------------------------- */

static void rearm_self(struct probe *p)
{
	p->deadline = wheel.now_ms + p->ms;
	timer_arm(&wheel, &p->t, p->ms, on_fire);
}

/* A periodic timer (a callback that re-arms itself) fires once per period, on time. */
Test(timer, callback_rearms_itself_periodically)
{
	start(0);
	struct probe p = { .then = rearm_self, .ms = 100 };
	arm(&p, 100);
	for (uint64_t x = 1; x <= 1000; x++) {
		unsigned before = p.fires;
		advance(x);
		if (x % 100 == 0)
			cr_assert_eq(p.fires, before + 1, "at %llu", (unsigned long long)x);
		else
			cr_assert_eq(p.fires, before, "at %llu", (unsigned long long)x);
		cr_assert(timer_armed(&p.t));
		cr_assert_eq(wheel.armed, 1);
	}
	cr_assert_eq(p.fires, 10);
	timer_cancel(&wheel, &p.t);
	cr_assert_eq(wheel.armed, 0);
	walk_to(2000);
	cr_assert_eq(p.fires, 10);
}

/* A periodic timer whose callback runs late inside a long advance re-arms from the advance's time:
 * it fires once for the advance, not once per missed period. */
Test(timer, periodic_timer_does_not_catch_up_after_a_jump)
{
	start(0);
	struct probe p = { .then = rearm_self, .ms = 100 };
	arm(&p, 100);
	advance(5000);
	cr_assert_eq(p.fires, 1);
	cr_assert_eq(p.deadline, 5100);
	cr_assert(timer_armed(&p.t));
	walk_to(5099);
	cr_assert_eq(p.fires, 1);
	advance(5100);
	cr_assert_eq(p.fires, 2);
}

/* A callback re-arming itself with a zero delay does not spin inside one advance: it fires at most
 * once per advance and once per tick. */
Test(timer, callback_rearming_with_zero_does_not_spin)
{
	start(0);
	struct probe p = { .then = rearm_self, .ms = 0 };
	arm(&p, 10);
	for (uint64_t x = 1; x <= 1000; x++) {
		unsigned before = p.fires;
		advance(x);
		cr_assert_leq(p.fires - before, 1, "fired %u times at %llu", p.fires - before,
			      (unsigned long long)x);
	}
	cr_assert_eq(p.fires, 1000 / TICK);
	cr_assert_eq(wheel.armed, 1);
}

static void cancel_other(struct probe *p)
{
	timer_cancel(&wheel, &p->other->t);
}

/* Two timers due in the same tick, each cancelling the other: exactly one fires (whichever runs
 * first), and the count ends at zero. */
Test(timer, callback_cancels_a_timer_due_in_the_same_tick)
{
	start(0);
	struct probe a = { .then = cancel_other }, b = { .then = cancel_other };
	a.other = &b;
	b.other = &a;
	arm(&a, 100);
	arm(&b, 100);
	advance(100);
	cr_assert_eq(a.fires + b.fires, 1, "a fired %u, b fired %u", a.fires, b.fires);
	cr_assert_not(timer_armed(&a.t));
	cr_assert_not(timer_armed(&b.t));
	cr_assert_eq(wheel.armed, 0);
	walk_to(3 * ROUND_MS);
	cr_assert_eq(a.fires + b.fires, 1);
}

/* The same within one long advance that processes both of them in different ticks: the later one
 * is cancelled by the earlier one before its tick is reached. */
Test(timer, callback_cancels_a_later_timer_within_one_advance)
{
	start(0);
	struct probe a = { .then = cancel_other }, b = { 0 }, c = { 0 };
	a.other = &b;
	arm(&a, 100);
	arm(&b, 500);
	arm(&c, 700);
	advance(1000);
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(b.fires, 0);
	cr_assert_eq(c.fires, 1);
	cr_assert_eq(wheel.armed, 0);
	walk_to(3 * ROUND_MS);
	cr_assert_eq(b.fires, 0);
}

static void arm_other(struct probe *p)
{
	p->other->deadline = wheel.now_ms + p->ms;
	timer_arm(&wheel, &p->other->t, p->ms, on_fire);
}

/* A callback arming another timer: it is due relative to the advance's time, does not fire in the
 * same advance, and fires once on time. */
Test(timer, callback_arms_another_timer)
{
	start(0);
	struct probe c = { 0 }, a = { .then = arm_other, .other = &c, .ms = 200 };
	arm(&a, 50);
	walk_to(49);
	cr_assert_eq(a.fires, 0);
	advance(50);
	cr_assert_eq(a.fires, 1);
	cr_assert(timer_armed(&c.t));
	cr_assert_eq(c.deadline, 250);
	cr_assert_eq(wheel.armed, 1);
	walk_to(249);
	cr_assert_eq(c.fires, 0);
	walk_to(1000);
	cr_assert_eq(c.fires, 1);
	cr_assert_eq(c.fired_at, 250);
	cr_assert_eq(wheel.armed, 0);
}

Test(timer, callback_arms_another_timer_during_a_long_advance)
{
	start(0);
	struct probe c = { 0 }, a = { .then = arm_other, .other = &c, .ms = 200 };
	arm(&a, 50);
	advance(1000); /* a fires at tick 5 while the wheel's time is already 1000 */
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(c.fires, 0);
	cr_assert_eq(c.deadline, 1200);
	walk_to(1199);
	cr_assert_eq(c.fires, 0);
	walk_to(2000);
	cr_assert_eq(c.fires, 1);
	cr_assert_eq(c.fired_at, 1200);
}

/* A callback arming another timer exactly one turn ahead — into the slot being processed: it must
 * wait the full turn. */
Test(timer, callback_arms_into_the_current_slot_a_round_later)
{
	start(0);
	struct probe c = { 0 }, a = { .then = arm_other, .other = &c, .ms = (uint32_t)ROUND_MS };
	arm(&a, 100);
	walk_to(100);
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(c.fires, 0);
	cr_assert(timer_armed(&c.t));
	walk_to(100 + ROUND_MS - 1);
	cr_assert_eq(c.fires, 0);
	walk_to(100 + ROUND_MS);
	cr_assert_eq(c.fires, 1);
	cr_assert_eq(wheel.armed, 0);
}

static void push_other_back(struct probe *p)
{
	if (timer_armed(&p->other->t))
		arm_other(p);
}

/* Two timers due in the same tick, each pushing the other 100 ms further if it is still armed:
 * the first to run fires now, the other is moved and fires only at its new deadline. */
Test(timer, callback_rearms_a_timer_due_in_the_same_tick)
{
	start(0);
	struct probe a = { .then = push_other_back, .ms = 100 };
	struct probe b = { .then = push_other_back, .ms = 100 };
	a.other = &b;
	b.other = &a;
	arm(&a, 200);
	arm(&b, 200);
	advance(200);
	cr_assert_eq(a.fires + b.fires, 1);
	struct probe *moved = a.fires ? &b : &a;
	cr_assert(timer_armed(&moved->t));
	cr_assert_eq(moved->deadline, 300);
	cr_assert_eq(wheel.armed, 1);
	walk_to(299);
	cr_assert_eq(moved->fires, 0);
	walk_to(1000);
	cr_assert_eq(a.fires, 1);
	cr_assert_eq(b.fires, 1);
	cr_assert_eq(moved->fired_at, 300);
	cr_assert_eq(wheel.armed, 0);
}

static void rearm_self_once(struct probe *p)
{
	p->then = NULL;
	rearm_self(p);
}

/* During a long jump, callbacks re-arming themselves or arming another timer — with deadlines
 * that land in slots the jump has yet to visit — fire nothing early, keep the count exact, and
 * what they armed fires once, on time, afterwards. */
Test(timer, callbacks_arming_during_a_long_jump)
{
	enum { N = 300 };
	struct probe ps[N], extra[N];
	memset(ps, 0, sizeof ps);
	memset(extra, 0, sizeof extra);
	start(0);
	for (size_t i = 0; i < N; i++) {
		ps[i].other = &extra[i];
		ps[i].ms = (uint32_t)(i * 97 % (3 * ROUND_MS)) + 1;
		ps[i].then = i % 2 ? rearm_self_once : arm_other;
		arm(&ps[i], (uint32_t)(i * 131 % (5 * ROUND_MS)) + 1);
	}
	advance(HOUR_MS);
	for (size_t i = 0; i < N; i++) {
		cr_assert_eq(ps[i].fires, 1, "timer %zu fired %u times", i, ps[i].fires);
		struct probe *next = i % 2 ? &ps[i] : &extra[i];
		cr_assert(timer_armed(&next->t), "timer %zu", i);
		cr_assert_eq(next->deadline, HOUR_MS + ps[i].ms);
		cr_assert_eq(extra[i].fires, 0);
	}
	cr_assert_eq(wheel.armed, N);
	walk_to(HOUR_MS + 3 * ROUND_MS + TICK);
	for (size_t i = 0; i < N; i++) {
		struct probe *next = i % 2 ? &ps[i] : &extra[i];
		cr_assert_eq(next->fires, i % 2 ? 2u : 1u, "timer %zu fired %u times", i, next->fires);
		cr_assert_geq(next->last_at, next->deadline, "timer %zu", i);
		cr_assert_lt(next->last_at - next->deadline, TICK, "timer %zu: deadline %llu, fired %llu",
			     i, (unsigned long long)next->deadline, (unsigned long long)next->last_at);
	}
	cr_assert_eq(wheel.armed, 0);
}

/* ---- the armed count and timer_armed() --------------------------------------------------- */

Test(timer, armed_count_and_state_follow_every_operation)
{
	start(0);
	struct probe a = { 0 }, b = { 0 }, c = { 0 };
	cr_assert_eq(wheel.armed, 0);
	cr_assert_not(timer_armed(&a.t));
	arm(&a, 10);
	arm(&b, 20);
	arm(&c, 30);
	cr_assert_eq(wheel.armed, 3);
	cr_assert(timer_armed(&a.t) && timer_armed(&b.t) && timer_armed(&c.t));
	arm(&b, 40); /* re-arm: still three */
	cr_assert_eq(wheel.armed, 3);
	advance(10);
	cr_assert_eq(wheel.armed, 2);
	cr_assert_not(timer_armed(&a.t));
	timer_cancel(&wheel, &c.t);
	cr_assert_eq(wheel.armed, 1);
	cr_assert_not(timer_armed(&c.t));
	arm(&a, 5);
	cr_assert_eq(wheel.armed, 2);
	advance(40);
	cr_assert_eq(wheel.armed, 0);
	cr_assert_not(timer_armed(&a.t) || timer_armed(&b.t) || timer_armed(&c.t));
	cr_assert_eq(a.fires, 2);
	cr_assert_eq(b.fires, 1);
	cr_assert_eq(c.fires, 0);
}
