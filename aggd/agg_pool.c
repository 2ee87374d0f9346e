/*
 * agg_pool: a thread kept for the loop's large answers (see agg_pool.h).
 *
 * A job lives on the caller's stack. The pool points at it (cur) while
 * pieces may be taken; the worker enters it under the lock (users++),
 * takes pieces with an atomic counter, and leaves under the lock. The
 * caller takes pieces the same way, then withdraws the job (cur = NULL)
 * and waits until no worker is inside: after that nothing refers to the
 * job, and a worker that wakes late finds no job, or the next one.
 */
#include "aggd/agg_pool.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

struct s_job {
    void (*fn)(void *arg, size_t i);
    void *arg;
    size_t n;
    atomic_size_t next; /* the next piece to take */
    int users;          /* workers inside, under the pool's lock */
    uint64_t gen;       /* which job (a worker enters each once) */
};

struct agg_pool {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;  /* the worker: a job, or stop */
    pthread_cond_t left;  /* the caller: a worker left a job */
    struct s_job *cur;    /* the job pieces may be taken from, or NULL */
    uint64_t gen;         /* jobs so far */
    bool stop;
    atomic_ullong pieces; /* run by the worker */
};

/* Take and run pieces of j until none is left. Returns how many ran. */
static size_t
s_take(struct s_job *j)
{
    size_t i, ran = 0;

    while ((i = atomic_fetch_add_explicit(&j->next, 1,
                                          memory_order_relaxed)) < j->n) {
        j->fn(j->arg, i);
        ran++;
    }
    return ran;
}

static void *
s_worker(void *arg)
{
    agg_pool_t *self = arg;
    uint64_t seen = 0;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (!self->stop && (self->cur == NULL || self->cur->gen == seen))
            pthread_cond_wait(&self->wake, &self->lock);
        if (self->stop)
            break;
        struct s_job *j = self->cur;
        seen = j->gen;
        j->users++;
        pthread_mutex_unlock(&self->lock);
        size_t ran = s_take(j);
        atomic_fetch_add_explicit(&self->pieces, ran, memory_order_relaxed);
        pthread_mutex_lock(&self->lock);
        if (--j->users == 0)
            pthread_cond_signal(&self->left);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

agg_pool_t *
agg_pool_new(void)
{
    agg_pool_t *self = xcalloc(1, sizeof *self);

    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    pthread_cond_init(&self->left, NULL);
    atomic_init(&self->pieces, 0);
    if (pthread_create(&self->thread, NULL, s_worker, self) != 0) {
        pthread_cond_destroy(&self->left);
        pthread_cond_destroy(&self->wake);
        pthread_mutex_destroy(&self->lock);
        free(self);
        return NULL;
    }
    return self;
}

void
agg_pool_destroy(agg_pool_t **self_p)
{
    agg_pool_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    pthread_cond_destroy(&self->left);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

void
agg_pool_run(agg_pool_t *self, size_t n, void (*fn)(void *arg, size_t i),
             void *arg)
{
    struct s_job j = {fn, arg, n, 0, 0, 0};

    atomic_init(&j.next, 0);
    if (self == NULL || n < 2) {
        s_take(&j);
        return;
    }
    pthread_mutex_lock(&self->lock);
    j.gen = ++self->gen;
    self->cur = &j;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    s_take(&j);
    pthread_mutex_lock(&self->lock);
    self->cur = NULL;
    while (j.users > 0) /* only pieces the worker is in the middle of */
        pthread_cond_wait(&self->left, &self->lock);
    pthread_mutex_unlock(&self->lock);
}

unsigned long long
agg_pool_worker_pieces(const agg_pool_t *self)
{
    return self ? atomic_load(&((agg_pool_t *)self)->pieces) : 0;
}

/* --- selftest ------------------------------------------------------------ */

struct s_test_ctx {
    atomic_int *hits; /* how often each piece ran */
    size_t n;
    int slow;         /* spin this much per piece, so both threads take some */
};

static void
s_test_piece(void *arg, size_t i)
{
    struct s_test_ctx *c = arg;
    volatile unsigned x = 0;

    assert(i < c->n);
    for (int k = 0; k < c->slow; k++)
        x += (unsigned)k;
    (void)x;
    atomic_fetch_add(&c->hits[i], 1);
}

/*
 * Every piece runs exactly once, whatever the number of pieces (0, 1,
 * many), many jobs in a row (a worker that wakes late must not run the
 * last job's pieces again, nor a piece of the next with the last's
 * function), and without a pool; with slow pieces the worker takes some.
 */
void
agg_pool_test(bool verbose)
{
    agg_pool_t *pool = agg_pool_new();
    static const size_t ns[] = {0, 1, 2, 3, 17, 256};

    assert(pool);
    for (int round = 0; round < 300; round++) {
        size_t n = ns[(size_t)round % (sizeof ns / sizeof *ns)];
        struct s_test_ctx c = {xcalloc(n ? n : 1, sizeof(atomic_int)), n,
                               round % 3 ? 0 : 20000};
        agg_pool_run(round % 7 ? pool : NULL, n, s_test_piece, &c);
        for (size_t i = 0; i < n; i++)
            assert(atomic_load(&c.hits[i]) == 1);
        free(c.hits);
    }
    /* Slow pieces, many: the worker, woken, takes part of them (it is
     * given up to a second of tries, so a busy machine cannot fail it). */
    for (int tries = 0; tries < 100 && agg_pool_worker_pieces(pool) == 0;
         tries++) {
        struct s_test_ctx c = {xcalloc(64, sizeof(atomic_int)), 64, 200000};
        agg_pool_run(pool, 64, s_test_piece, &c);
        for (size_t i = 0; i < 64; i++)
            assert(atomic_load(&c.hits[i]) == 1);
        free(c.hits);
    }
    assert(agg_pool_worker_pieces(pool) > 0);
    agg_pool_destroy(&pool);
    assert(pool == NULL);
    agg_pool_destroy(&pool); /* NULL-safe */
    (void)verbose;
    TEST_OK("agg_pool");
}
