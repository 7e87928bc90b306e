/* offload.c — the offload pool (offload.h): one thread, a lock-free stack of submitted jobs, and
 * the workers' inboxes. Both stacks are taken whole with an exchange, so there is no ABA, and are
 * reversed to run and deliver the jobs first come first served. */
#include "offload.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"

struct offload_pool {
	_Atomic(struct offload_job *) submitted;
	atomic_uint waiting;
	atomic_bool stopping;
	int wake_fd;
	pthread_t thread;
};

static void wake(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof one); /* only fails when the counter is full: awake anyway */
	(void)n;
}

static struct offload_job *reversed(struct offload_job *j)
{
	struct offload_job *out = NULL;
	while (j) {
		struct offload_job *next = j->next;
		j->next = out;
		out = j;
		j = next;
	}
	return out;
}

static void push(_Atomic(struct offload_job *) *stack, struct offload_job *j)
{
	struct offload_job *head = atomic_load_explicit(stack, memory_order_relaxed);
	do
		j->next = head;
	while (!atomic_compare_exchange_weak_explicit(stack, &head, j, memory_order_release,
						      memory_order_relaxed));
}

static void deliver(struct offload_job *j)
{
	struct offload_inbox *in = j->inbox;
	push(&in->done, j);
	wake(in->wake_fd);
}

static void *pool_thread(void *arg)
{
	struct offload_pool *p = arg;
	log_set_thread_name("offload");
	for (;;) {
		uint64_t v;
		if (read(p->wake_fd, &v, sizeof v) < 0 && errno != EINTR)
			break;
		bool stopping = atomic_load(&p->stopping);
		struct offload_job *j = reversed(atomic_exchange_explicit(&p->submitted, NULL,
									  memory_order_acquire));
		while (j) {
			struct offload_job *next = j->next;
			j->aborted = stopping;
			if (!stopping)
				j->work(j);
			atomic_fetch_sub(&p->waiting, 1);
			deliver(j);
			j = next;
		}
		if (stopping)
			break;
	}
	return NULL;
}

struct offload_pool *offload_start(void)
{
	struct offload_pool *p = calloc(1, sizeof *p);
	if (!p) {
		log_error("offload: out of memory");
		return NULL;
	}
	p->wake_fd = eventfd(0, EFD_CLOEXEC);
	int rc = p->wake_fd < 0 ? errno : pthread_create(&p->thread, NULL, pool_thread, p);
	if (rc) {
		log_error("offload: cannot start its thread: %s", strerror(rc));
		if (p->wake_fd >= 0)
			close(p->wake_fd);
		free(p);
		return NULL;
	}
	return p;
}

void offload_stop(struct offload_pool *p)
{
	if (!p)
		return;
	atomic_store(&p->stopping, true);
	wake(p->wake_fd);
	pthread_join(p->thread, NULL);
	/* submitted after the thread's last look: delivered as aborted too */
	struct offload_job *j = reversed(atomic_exchange(&p->submitted, NULL));
	while (j) {
		struct offload_job *next = j->next;
		j->aborted = true;
		deliver(j);
		j = next;
	}
	close(p->wake_fd);
	free(p);
}

bool offload_submit(struct offload_pool *p, struct offload_job *job)
{
	if (!p || atomic_load_explicit(&p->stopping, memory_order_relaxed))
		return false;
	if (atomic_fetch_add_explicit(&p->waiting, 1, memory_order_relaxed) >= OFFLOAD_MAX_WAITING) {
		atomic_fetch_sub_explicit(&p->waiting, 1, memory_order_relaxed);
		return false;
	}
	job->aborted = false;
	push(&p->submitted, job);
	wake(p->wake_fd);
	return true;
}

void offload_drain(struct offload_inbox *in)
{
	if (!atomic_load_explicit(&in->done, memory_order_relaxed))
		return;
	struct offload_job *j = reversed(atomic_exchange_explicit(&in->done, NULL,
								  memory_order_acquire));
	while (j) {
		struct offload_job *next = j->next;
		j->done(j);
		j = next;
	}
}
