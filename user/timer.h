/* timer.h — a per-worker hashed timer wheel for deadlines (header, keep-alive, client, upstream
 * connect and response timeouts). O(1) arm and cancel; one tick per TIMER_TICK_MS. */
#ifndef RINGWAY_TIMER_H
#define RINGWAY_TIMER_H

#include <stdbool.h>
#include <stdint.h>

#define TIMER_TICK_MS 10
#define TIMER_SLOTS 1024 /* power of two */

struct timer;
typedef void (*timer_fn)(struct timer *t);

struct timer {
	struct timer *next, *prev; /* NULL prev: not armed */
	uint64_t expires_ms;
	timer_fn fn;
};

struct timer_wheel {
	uint64_t now_ms;   /* time of the last advance */
	uint64_t tick;     /* last slot processed */
	uint32_t armed;
	struct timer slots[TIMER_SLOTS]; /* list heads */
};

void timer_wheel_init(struct timer_wheel *w, uint64_t now_ms);
/* Arms (or re-arms) t to fire fn after ms milliseconds (rounded up to the tick). */
void timer_arm(struct timer_wheel *w, struct timer *t, uint32_t ms, timer_fn fn);
void timer_cancel(struct timer_wheel *w, struct timer *t);
static inline bool timer_armed(const struct timer *t)
{
	return t->prev != 0;
}
/* Fires every timer due at now_ms, in no particular order. A callback may arm or cancel timers. */
void timer_wheel_advance(struct timer_wheel *w, uint64_t now_ms);

/* The monotonic clock, in milliseconds (the wheel's unit) and nanoseconds (request timings). */
uint64_t monotonic_ms(void);
uint64_t now_ns(void);

#endif
