/* test_offload.c — the offload pool (offload.h): jobs run off the submitting thread and come back
 * to their inbox in order, with a wake-up; the number waiting is bounded; stopping delivers what
 * never ran as aborted. */
#include <criterion/criterion.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "offload.h"

struct test_job {
	struct offload_job job;
	int seq;
	pthread_t ran_on;
	bool ran, done;
};

static atomic_int gate_open = 1; /* 0: work waits until it is 1 */
static atomic_int running;       /* jobs that started their work */
static int done_order[1024], ndone;

static void work(struct offload_job *j)
{
	struct test_job *t = (struct test_job *)j;
	atomic_fetch_add(&running, 1);
	while (!atomic_load(&gate_open))
		usleep(1000);
	t->ran = true;
	t->ran_on = pthread_self();
}

static void done(struct offload_job *j)
{
	struct test_job *t = (struct test_job *)j;
	t->done = true;
	done_order[ndone++] = t->seq;
}

/* Drains in until n jobs are done, waiting on its eventfd (at most 10 s). */
static void drain_until(struct offload_inbox *in, int n)
{
	for (int tries = 0; ndone < n && tries < 1000; tries++) {
		struct pollfd p = { .fd = in->wake_fd, .events = POLLIN };
		if (poll(&p, 1, 10) == 1) {
			uint64_t v;
			cr_assert_eq(read(in->wake_fd, &v, sizeof v), (ssize_t)sizeof v);
		}
		offload_drain(in);
	}
	cr_assert_eq(ndone, n);
}

Test(offload, jobs_run_elsewhere_and_come_back_in_order)
{
	struct offload_pool *p = offload_start();
	cr_assert_not_null(p);
	struct offload_inbox in = { .wake_fd = eventfd(0, EFD_CLOEXEC) };
	static struct test_job jobs[50];
	ndone = 0;
	for (int i = 0; i < 50; i++) {
		jobs[i] = (struct test_job){ .job = { .work = work, .done = done, .inbox = &in },
					     .seq = i };
		cr_assert(offload_submit(p, &jobs[i].job));
	}
	drain_until(&in, 50);
	for (int i = 0; i < 50; i++) {
		cr_assert(jobs[i].ran && jobs[i].done && !jobs[i].job.aborted);
		cr_assert(!pthread_equal(jobs[i].ran_on, pthread_self()));
		cr_assert_eq(done_order[i], i);
	}
	offload_stop(p);
	close(in.wake_fd);
}

Test(offload, waiting_jobs_are_bounded_and_stop_aborts_them)
{
	struct offload_pool *p = offload_start();
	struct offload_inbox in = { .wake_fd = eventfd(0, EFD_CLOEXEC) };
	static struct test_job jobs[OFFLOAD_MAX_WAITING + 2];
	ndone = 0;
	atomic_store(&gate_open, 0); /* the first job holds the thread */
	atomic_store(&running, 0);
	unsigned accepted = 0;
	for (unsigned i = 0; i < OFFLOAD_MAX_WAITING + 2; i++) {
		jobs[i] = (struct test_job){ .job = { .work = work, .done = done, .inbox = &in },
					     .seq = (int)i };
		accepted += offload_submit(p, &jobs[i].job);
		for (int tries = 0; i == 0 && !atomic_load(&running) && tries < 10000; tries++)
			usleep(1000);
	}
	/* the running job counts as waiting until it is done: the bound holds them all */
	cr_assert_eq(accepted, OFFLOAD_MAX_WAITING);
	atomic_store(&gate_open, 1);
	offload_stop(p); /* what had not run is delivered aborted */
	offload_drain(&in);
	cr_assert_eq((unsigned)ndone, accepted);
	unsigned ran = 0, aborted = 0;
	for (unsigned i = 0; i < accepted; i++) {
		cr_assert(jobs[i].done);
		cr_assert_neq(jobs[i].ran, jobs[i].job.aborted);
		ran += jobs[i].ran;
		aborted += jobs[i].job.aborted;
	}
	cr_assert_geq(ran, 1);
	cr_assert_eq(ran + aborted, accepted);
	close(in.wake_fd);
}
