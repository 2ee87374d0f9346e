/*
 * agg_pool: a thread kept for the loop's large answers.
 *
 * An answer of tens of thousands of buckets (the 5-minute mean over a
 * year) is pieces of work that do not depend on each other: sums of
 * intervals, the text of buckets. agg_pool_run hands them out from one
 * counter to the calling thread and to a worker thread made once, so on
 * a free second core the work takes about half the time. The caller
 * never waits for the worker to start: pieces it has not taken, the
 * caller runs, and at the end it waits only for the pieces the worker is
 * in the middle of. So on a busy machine (the worker gets no core) the
 * answer costs what it cost on one thread, plus a wake-up.
 *
 * Not a general pool: one caller at a time (the loop), one worker.
 */
#ifndef SP_AGG_POOL_H
#define SP_AGG_POOL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct agg_pool agg_pool_t;

/* Start the worker (every signal blocked in it: they are the loop's).
 * Returns NULL when no thread can be made; agg_pool_run(NULL, ...) then
 * runs everything in the caller. */
agg_pool_t *agg_pool_new(void);
/* Stop and join the worker; NULL-safe, sets *self_p to NULL. */
void agg_pool_destroy(agg_pool_t **self_p);

/* Run fn(arg, i) once for every i in [0, n), on this thread and the
 * worker, in any order and maybe at the same time; returns when all have
 * returned. fn must only read what the pieces share and write apart. */
void agg_pool_run(agg_pool_t *self, size_t n, void (*fn)(void *arg, size_t i),
                  void *arg);
/* Pieces the worker ran so far (the selftest; /stats). */
unsigned long long agg_pool_worker_pieces(const agg_pool_t *self);

/* Selftest. */
void agg_pool_test(bool verbose);

#endif
