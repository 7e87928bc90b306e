/* access_log.h — a worker's access log: records (log.h) formatted into buffers that are written
 * through the worker's ring, one write in flight, so that the worker never blocks on a disk or a
 * slow pipe, and batches records into writes of tens of kilobytes; whole lines of at most PIPE_BUF bytes per write to a pipe or terminal, so that the
 * lines of different workers never interleave; a new descriptor taken over when the log is
 * reopened (SIGUSR1 for log rotation, or a reload that moves the log). When the log cannot keep
 * up, records beyond ACCESS_LOG_MAX_BUFS waiting buffers are dropped and counted. */
#ifndef RINGWAY_ACCESS_LOG_H
#define RINGWAY_ACCESS_LOG_H

#include <stdbool.h>
#include <stdint.h>

#include "log.h"
#include "loop.h"

#define ACCESS_LOG_BUF_SIZE 65536
#define ACCESS_LOG_MAX_BUFS 16    /* a megabyte of records waiting, per worker */
#define ACCESS_LOG_FLUSH_BYTES 32768 /* a buffer goes out once this full... */
#define ACCESS_LOG_FLUSH_MS 100   /* ...or this long after its first record */

struct access_log_buf;

struct access_log {
	int fd;                       /* -1: off */
	bool whole_lines;             /* fd is a pipe or a terminal */
	bool writing;                 /* a write is in flight */
	int next_fd;                  /* a reopened log to take over once the write ends; -2: none */
	struct loop *loop;
	struct access_log_buf *fill;  /* records go here */
	struct access_log_buf *queue, *queue_tail; /* filled, in order; the first is being written */
	struct access_log_buf *spare; /* free buffers */
	uint32_t nbufs;
	uint64_t dropped;             /* records dropped because the log could not keep up */
	uint64_t drop_warned_ms;
	struct loop_task task;
	struct timer flush_tm;        /* armed while records wait in fill */
};

/* fd (-1: off) is the log's, closed by access_log_close unless it is stderr. */
void access_log_init(struct access_log *al, struct loop *l, int fd);
/* Appends one record (dropped and counted when no buffer is left). */
void access_log_write(struct access_log *al, const struct access_record *r);
/* The end of a loop turn: filled buffers go to the ring, one write at a time; the one being filled
 * goes once ACCESS_LOG_FLUSH_BYTES are in it or ACCESS_LOG_FLUSH_MS after its first record (a write
 * per few hundred requests under load, not one per loop turn). */
void access_log_flush(struct access_log *al);
/* From now on records go to fd; the old descriptor is closed once what was written to it is out. */
void access_log_reopen(struct access_log *al, int fd);
/* At the end: what is left is written (blocking), the descriptor closed, the buffers freed. */
void access_log_close(struct access_log *al);
/* Whether everything recorded is written: nothing in flight, queued, or waiting for its flush
 * delay (a draining worker waits for that). */
bool access_log_idle(const struct access_log *al);

#endif
