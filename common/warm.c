/*
 * warm: keep this machine's CPUs awake for a while after each request
 * (see warm.h).
 *
 * The spinners sleep on a condition variable while the deadline is past.
 * warm_touch stores the new deadline, then looks whether any spinner
 * sleeps; a spinner counts itself as sleeping, then looks at the
 * deadline (both sequentially consistent), so at least one of the two
 * sees the other: a touch never leaves every spinner asleep.
 */
#include "common/warm.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define WARM_MAX 64
/* How long a spinner sleeps between looks at the deadline. Sleeping
 * 20 us at a time, not spinning on a pause instruction, measured better
 * on this kind of VM (docs/BENCHMARKS.md, "apid --warm-ms"): the vCPU
 * still runs every few microseconds, but leaves its sibling hyperthread
 * and the host alone in between, for a sixth of the CPU time. */
#define WARM_NAP_NS 20000

struct warm_spinner {
    struct warm *warm;
    pthread_t thread;
    int cpu; /* pinned to it, or -1 */
};

struct warm {
    struct warm_spinner sp[WARM_MAX];
    int n;
    int64_t ms_ns;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    atomic_llong deadline; /* CLOCK_MONOTONIC ns */
    atomic_int sleeping;
    atomic_bool stop;
    atomic_ullong spin_ns;  /* thread CPU time spent spinning */
    atomic_ullong periods;  /* spins begun */
};

/* This thread's CPU time (what the spinners cost), in ns. */
static int64_t
s_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void *
s_spin(void *arg)
{
    struct warm_spinner *me = arg;
    struct warm *self = me->warm;
    struct sched_param prio = {0};
    struct timespec nap = {0, WARM_NAP_NS};
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    /* Lowering the policy needs no privilege; if it fails, the spinner
     * would compete with real work, so it does not spin at all. */
    if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &prio) != 0)
        return NULL;
    if (me->cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(me->cpu, &one);
        pthread_setaffinity_np(pthread_self(), sizeof one, &one);
    }
    for (;;) {
        pthread_mutex_lock(&self->lock);
        for (;;) {
            atomic_fetch_add(&self->sleeping, 1);
            if (atomic_load(&self->stop) ||
                clock_mono_ns() < atomic_load(&self->deadline))
                break;
            pthread_cond_wait(&self->wake, &self->lock);
            atomic_fetch_sub(&self->sleeping, 1);
        }
        atomic_fetch_sub(&self->sleeping, 1);
        pthread_mutex_unlock(&self->lock);
        if (atomic_load(&self->stop))
            break;
        atomic_fetch_add_explicit(&self->periods, 1, memory_order_relaxed);
        int64_t c0 = s_cpu_ns(), c1;
        for (unsigned i = 1;
             !atomic_load_explicit(&self->stop, memory_order_relaxed) &&
             clock_mono_ns() <
                 atomic_load_explicit(&self->deadline, memory_order_relaxed);
             i++) {
            nanosleep(&nap, NULL);
            if (i % 1024 == 0) { /* count a long period as it goes */
                c1 = s_cpu_ns();
                atomic_fetch_add_explicit(&self->spin_ns,
                                          (unsigned long long)(c1 - c0),
                                          memory_order_relaxed);
                c0 = c1;
            }
        }
        atomic_fetch_add_explicit(
            &self->spin_ns,
            (unsigned long long)(s_cpu_ns() - c0),
            memory_order_relaxed);
    }
    return NULL;
}

warm_t *
warm_new(int ms)
{
    cpu_set_t mask;
    warm_t *self;

    if (ms <= 0)
        return NULL;
    self = xcalloc(1, sizeof *self);
    self->ms_ns = (int64_t)ms * 1000000;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->wake, NULL);
    atomic_init(&self->deadline, 0);
    /* One per CPU this process may run on, pinned there; unpinned, one
     * per online CPU, when the mask cannot be read. */
    if (sched_getaffinity(0, sizeof mask, &mask) == 0) {
        for (int c = 0; c < CPU_SETSIZE && self->n < WARM_MAX; c++)
            if (CPU_ISSET(c, &mask))
                self->sp[self->n++].cpu = c;
    } else {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (; self->n < WARM_MAX && self->n < (online > 0 ? online : 1);
             self->n++)
            self->sp[self->n].cpu = -1;
    }
    for (int i = 0; i < self->n; i++) {
        self->sp[i].warm = self;
        if (pthread_create(&self->sp[i].thread, NULL, s_spin, &self->sp[i])) {
            self->n = i;
            warm_destroy(&self);
            return NULL;
        }
    }
    return self;
}

void
warm_destroy(warm_t **self_p)
{
    warm_t *self = *self_p;

    if (self == NULL)
        return;
    atomic_store(&self->stop, true);
    pthread_mutex_lock(&self->lock);
    pthread_cond_broadcast(&self->wake);
    pthread_mutex_unlock(&self->lock);
    for (int i = 0; i < self->n; i++)
        pthread_join(self->sp[i].thread, NULL);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

void
warm_touch(warm_t *self)
{
    if (self == NULL)
        return;
    atomic_store(&self->deadline, clock_mono_ns() + self->ms_ns);
    if (atomic_load(&self->sleeping) > 0) {
        pthread_mutex_lock(&self->lock);
        pthread_cond_broadcast(&self->wake);
        pthread_mutex_unlock(&self->lock);
    }
}

uint64_t
warm_spin_ns(const warm_t *self)
{
    return self ? atomic_load_explicit(&self->spin_ns, memory_order_relaxed)
                : 0;
}

/* Wait up to 5 s for cond; the spinners run at SCHED_IDLE, so on a
 * loaded machine they may get a CPU late, but they get one. */
#define S_WAIT_FOR(cond)                                                      \
    do {                                                                      \
        for (int w_ = 0; w_ < 5000 && !(cond); w_++)                          \
            usleep(1000);                                                     \
    } while (0)

void
warm_test(bool verbose)
{
    warm_t *w;

    assert(warm_new(0) == NULL);
    assert(warm_spin_ns(NULL) == 0);
    warm_touch(NULL);
    w = warm_new(30);
    assert(w != NULL && w->n >= 1);
    /* Asleep until touched: no spin begins. */
    S_WAIT_FOR(atomic_load(&w->sleeping) == w->n);
    assert(atomic_load(&w->sleeping) == w->n);
    usleep(20000);
    assert(atomic_load(&w->periods) == 0);
    /* A touch wakes every spinner; they spin, then sleep again once the
     * 30 ms have passed. */
    warm_touch(w);
    S_WAIT_FOR(atomic_load(&w->periods) >= (unsigned long long)w->n);
    assert(atomic_load(&w->periods) >= (unsigned long long)w->n);
    S_WAIT_FOR(atomic_load(&w->sleeping) == w->n);
    assert(atomic_load(&w->sleeping) == w->n);
    assert(warm_spin_ns(w) > 0);
    unsigned long long p = atomic_load(&w->periods);
    /* Touches while they spin keep them spinning: no new period. */
    int64_t t0 = clock_mono_ns();
    warm_touch(w);
    S_WAIT_FOR(atomic_load(&w->periods) >= p + (unsigned long long)w->n);
    while (clock_mono_ns() - t0 < 100000000) {
        warm_touch(w);
        usleep(5000);
    }
    unsigned long long during = atomic_load(&w->periods) - p;
    /* Stop while spinning: destroy joins them. */
    warm_touch(w);
    if (verbose)
        printf("  warm: %d spinners, %llu periods in 100 ms of touches, "
               "%.1f ms spun\n",
               w->n, during, (double)warm_spin_ns(w) / 1e6);
    /* One period each, or a few more when the machine was too loaded to
     * run them within a touch's 30 ms; never one per touch (20). */
    assert(during >= (unsigned long long)w->n &&
           during < 10 * (unsigned long long)w->n);
    warm_destroy(&w);
    assert(w == NULL);
}
