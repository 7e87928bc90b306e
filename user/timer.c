/* timer.c — the monotonic clock, and the hashed timer wheel: each slot holds a circular list of
 * timers whose expiry falls in it, whatever the round; advancing walks the slots passed and fires
 * what is due. */
#include "timer.h"

#include <time.h>

uint64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms)
{
	w->now_ms = now_ms;
	w->tick = now_ms / TIMER_TICK_MS;
	w->armed = 0;
	for (int i = 0; i < TIMER_SLOTS; i++)
		w->slots[i].next = w->slots[i].prev = &w->slots[i];
}

static void unlink_timer(struct timer *t)
{
	t->prev->next = t->next;
	t->next->prev = t->prev;
	t->next = t->prev = 0;
}

void timer_cancel(struct timer_wheel *w, struct timer *t)
{
	if (!timer_armed(t))
		return;
	unlink_timer(t);
	w->armed--;
}

void timer_arm(struct timer_wheel *w, struct timer *t, uint32_t ms, timer_fn fn)
{
	timer_cancel(w, t);
	t->expires_ms = w->now_ms + ms;
	t->fn = fn;
	uint64_t tick = (t->expires_ms + TIMER_TICK_MS - 1) / TIMER_TICK_MS;
	if (tick <= w->tick)
		tick = w->tick + 1;
	struct timer *head = &w->slots[tick & (TIMER_SLOTS - 1)];
	t->next = head;
	t->prev = head->prev;
	head->prev->next = t;
	head->prev = t;
	w->armed++;
}

void timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms)
{
	if (now_ms < w->now_ms)
		return;
	w->now_ms = now_ms;
	uint64_t target = now_ms / TIMER_TICK_MS;
	/* after a long pause, one full turn visits every slot */
	if (target - w->tick > TIMER_SLOTS)
		w->tick = target - TIMER_SLOTS;
	while (w->tick < target) {
		w->tick++;
		struct timer *head = &w->slots[w->tick & (TIMER_SLOTS - 1)];
		/* detach the due timers first: callbacks may re-arm into this very slot */
		struct timer due = { .next = &due, .prev = &due };
		for (struct timer *t = head->next, *nx; t != head; t = nx) {
			nx = t->next;
			if (t->expires_ms <= now_ms) {
				unlink_timer(t);
				t->next = &due;
				t->prev = due.prev;
				due.prev->next = t;
				due.prev = t;
			}
		}
		while (due.next != &due) {
			struct timer *t = due.next;
			unlink_timer(t);
			w->armed--;
			t->fn(t);
		}
	}
}
