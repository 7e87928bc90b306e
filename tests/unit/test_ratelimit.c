/* test_ratelimit.c — GCRA and the table every worker shares (ratelimit.h): a burst passes at
 * once, then one request per interval; the remaining count and the wait are what a client is
 * told; threads hammering one key together are admitted exactly as one would be; keys are
 * independent; a full neighbourhood of slots still decides. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "ratelimit.h"

#define MS 1000000ull

Test(gcra, burst_then_one_per_interval)
{
	uint64_t tat = 0, after, now = 1000 * MS, T = 100 * MS; /* 10/s */
	for (int i = 0; i < 3; i++) {
		cr_assert(gcra_admit(&tat, now, T, 3, &after));
		cr_assert_eq(after, (uint64_t)(i + 1) * T);
		cr_assert_eq(gcra_remaining(after, T, 3), (uint32_t)(2 - i));
	}
	cr_assert(!gcra_admit(&tat, now, T, 3, &after));
	cr_assert_eq(after, T, "one interval until the next request passes");
	cr_assert(!gcra_admit(&tat, now + T - 1, T, 3, &after));
	cr_assert_eq(after, 1);
	cr_assert(gcra_admit(&tat, now + T, T, 3, &after));
	cr_assert(!gcra_admit(&tat, now + T, T, 3, &after));
	/* idle for long: the bucket is full again, not fuller */
	now += 100 * T;
	for (int i = 0; i < 3; i++)
		cr_assert(gcra_admit(&tat, now, T, 3, &after));
	cr_assert(!gcra_admit(&tat, now, T, 3, &after));
}

Test(gcra, over_any_time_at_most_burst_plus_elapsed_over_interval)
{
	uint64_t tat = 0, after, T = 10 * MS, start = 5000 * MS;
	unsigned admitted = 0;
	for (uint64_t t = start; t < start + 2000 * MS; t += MS / 3)
		admitted += gcra_admit(&tat, t, T, 10, &after);
	/* 10 at once, then 100/s for 2 s */
	cr_assert_geq(admitted, 10 + 199);
	cr_assert_leq(admitted, 10 + 200 + 1);
}

struct hammer {
	uint64_t h, now, T;
	uint32_t burst;
	atomic_uint *admitted;
	pthread_barrier_t *start;
};

static void *hammer(void *arg)
{
	struct hammer *hm = arg;
	uint64_t after;
	pthread_barrier_wait(hm->start);
	for (int i = 0; i < 20000; i++)
		if (ratelimit_table_admit(hm->h, hm->now, hm->T, hm->burst, &after))
			atomic_fetch_add(hm->admitted, 1);
	return NULL;
}

Test(table, threads_on_one_key_are_admitted_exactly_as_one)
{
	cr_assert(ratelimit_table_init());
	atomic_uint admitted = 0;
	pthread_barrier_t start;
	pthread_barrier_init(&start, NULL, 4);
	struct hammer hm = { .h = 0x1234567890abcdefull, .now = 77 * MS, .T = 10 * MS, .burst = 500,
			     .admitted = &admitted, .start = &start };
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, hammer, &hm);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	cr_assert_eq(atomic_load(&admitted), 500, "80,000 tries at one instant: the burst, no more");
	/* a second key is independent */
	uint64_t after;
	cr_assert(ratelimit_table_admit(0x1234567890abcdeeull, 77 * MS, 10 * MS, 500, &after));
	/* a refused request of a later limit gives its admission back */
	ratelimit_table_undo(hm.h, hm.T);
	cr_assert(ratelimit_table_admit(hm.h, 77 * MS, 10 * MS, 500, &after));
	cr_assert(!ratelimit_table_admit(hm.h, 77 * MS, 10 * MS, 500, &after));
	pthread_barrier_destroy(&start);
}

Test(table, a_full_neighbourhood_still_decides)
{
	cr_assert(ratelimit_table_init());
	uint64_t after, now = 900 * MS, T = 1000 * MS;
	/* RL_TABLE_PROBES + 2 keys on the same first slot, each with a live (exhausted) bucket */
	for (uint64_t k = 1; k <= RL_TABLE_PROBES + 2; k++) {
		uint64_t h = (k << 32) | 0x77;
		cr_assert(ratelimit_table_admit(h, now, T, 1, &after));
		cr_assert(!ratelimit_table_admit(h, now, T, 1, &after));
	}
	cr_assert_geq(ratelimit_table_evictions(), 2);
	/* long after, every one of them has a full bucket again */
	for (uint64_t k = 1; k <= RL_TABLE_PROBES + 2; k++)
		cr_assert(ratelimit_table_admit((k << 32) | 0x77, now + 10 * T, T, 1, &after));
}
