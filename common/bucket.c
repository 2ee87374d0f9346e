/*
 * bucket: keyed token buckets (see bucket.h).
 */
#include "common/bucket.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <math.h>

#define BUCKET_SWEEP_NS (10 * CLOCK_NS_PER_S)

struct s_tokens {
    double tokens;   /* available */
    int64_t last_ns; /* last refill */
};

struct bucket {
    double rate;      /* tokens per second; <= 0 means unlimited */
    double burst;     /* capacity */
    zhashx_t *keys;   /* key -> struct s_tokens */
    int64_t sweep_ns; /* next sweep of idle buckets */
};

bucket_t *
bucket_new(double rate, double burst)
{
    bucket_t *self = xcalloc(1, sizeof *self);
    self->rate = rate;
    self->burst = burst > 0 ? burst : rate;
    self->keys = zhashx_new();
    zhashx_set_destructor(self->keys, (zhashx_destructor_fn *)zstr_free);
    return self;
}

void
bucket_destroy(bucket_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->keys);
        free(*self_p);
        *self_p = NULL;
    }
}

static void
s_refill(const bucket_t *self, struct s_tokens *t, int64_t now)
{
    double add = (double)(now - t->last_ns) / 1e9 * self->rate;
    t->tokens = fmin(self->burst, t->tokens + add);
    t->last_ns = now;
}

int
bucket_take(bucket_t *self, const char *key, double n, int64_t now)
{
    struct s_tokens *t;

    if (self->rate <= 0)
        return 0;
    if (now >= self->sweep_ns) {
        /* Forget buckets that have refilled: they hold no state. */
        zlist_t *gone = zlist_new();
        for (t = zhashx_first(self->keys); t; t = zhashx_next(self->keys)) {
            s_refill(self, t, now);
            if (t->tokens >= self->burst)
                zlist_append(gone, (void *)zhashx_cursor(self->keys));
        }
        for (const char *k = zlist_first(gone); k; k = zlist_next(gone))
            zhashx_delete(self->keys, k);
        zlist_destroy(&gone);
        self->sweep_ns = now + BUCKET_SWEEP_NS;
    }
    t = zhashx_lookup(self->keys, key);
    if (t == NULL) {
        t = xcalloc(1, sizeof *t);
        t->tokens = self->burst;
        t->last_ns = now;
        zhashx_insert(self->keys, key, t);
    }
    s_refill(self, t, now);
    if (t->tokens >= n) {
        t->tokens -= n;
        return 0;
    }
    return (int)ceil((n - t->tokens) / self->rate);
}

size_t
bucket_size(const bucket_t *self)
{
    return zhashx_size(self->keys);
}

void
bucket_test(bool verbose)
{
    bucket_t *b = bucket_new(10, 20);
    int64_t t = 1000 * CLOCK_NS_PER_S;

    for (int i = 0; i < 20; i++)
        assert(bucket_take(b, "k", 1, t) == 0); /* the burst */
    assert(bucket_take(b, "k", 1, t) >= 1);     /* then limited */
    assert(bucket_take(b, "other", 1, t) == 0); /* keys are separate */
    t += CLOCK_NS_PER_S / 2;                    /* 5 tokens back */
    for (int i = 0; i < 5; i++)
        assert(bucket_take(b, "k", 1, t) == 0);
    assert(bucket_take(b, "k", 1, t) != 0);
    assert(bucket_take(b, "k", 50, t) >= 5);    /* wait time in seconds */
    t += 60 * CLOCK_NS_PER_S;                   /* idle: swept away */
    assert(bucket_take(b, "new", 1, t) == 0);
    assert(bucket_size(b) == 1);
    bucket_destroy(&b);
    b = bucket_new(0, 0);                       /* unlimited */
    for (int i = 0; i < 1000; i++)
        assert(bucket_take(b, "k", 1e6, t) == 0);
    bucket_destroy(&b);
    (void)verbose;
    TEST_OK("bucket");
}
