/*
 * agg_rollup: minute, hour and day rollups of one series (see
 * agg_rollup.h).
 *
 * Each tier is an array of buckets sorted by start and an arena of sketch
 * entries; a bucket owns a run [sk_off, sk_off + sk_len) of the arena,
 * sorted by key. Ingest is mostly in time order, so the growing bucket's
 * run is at the arena's end and grows in place; a late point into an
 * older bucket moves that bucket's run to the end (the old run becomes
 * dead space, reclaimed when it passes half of the arena).
 *
 * Record (agg_rollup_encode), integers little-endian: for each tier, the
 * number of buckets (u32), then per bucket start (i64), count (u32),
 * first_ts and last_ts (i64), sum, m2, min, max, first, last (doubles by
 * their bits), the number of sketch entries (u32) and the entries (u32).
 */
#include "aggd/agg_rollup.h"
#include "common/le.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_NS_MIN (60LL * 1000000000LL)
#define S_IDX_BIAS 8192 /* sketch index i is stored as i + S_IDX_BIAS */
#define S_IDX_MAX 8191
#define S_CNT_MAX 0xffffu
#define S_CLASS_ZERO 0u
#define S_CLASS_POS 1u
#define S_CLASS_NEG 2u
#define S_BUCKET_BYTES 80 /* fixed part of a bucket in a record */
#define S_DEAD_MIN 4096   /* dead entries tolerated before a compaction */

struct s_bucket {
    int64_t start;    /* bucket start, ns, a multiple of the width */
    int64_t first_ts; /* timestamp of the first point */
    int64_t last_ts;  /* timestamp of the last point */
    double sum;       /* sum of values */
    double m2;        /* sum of squared deviations from the mean */
    double min, max;  /* extremes */
    double first;     /* value at first_ts */
    double last;      /* value at last_ts */
    uint32_t count;   /* points */
    uint32_t sk_off;  /* first sketch entry in the tier's arena */
    uint32_t sk_len;  /* sketch entries */
};

struct s_tier {
    struct s_bucket *b; /* buckets by start */
    size_t n, cap;      /* used and allocated */
    uint32_t *sk;       /* arena of sketch entries */
    size_t skn, skcap;  /* used and allocated */
    size_t skdead;      /* entries no bucket refers to */
    size_t dirty_lo;    /* first bucket changed since the last encode, or
                           SIZE_MAX when none */
};

struct agg_rollup {
    struct s_tier t[AGG_ROLLUP_TIERS]; /* minute, hour, day */
};

static const int64_t s_width[AGG_ROLLUP_TIERS] = {
    S_NS_MIN, 60 * S_NS_MIN, 1440 * S_NS_MIN};

agg_rollup_t *
agg_rollup_new(void)
{
    agg_rollup_t *self = xcalloc(1, sizeof *self);
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        self->t[i].dirty_lo = SIZE_MAX;
    return self;
}

void
agg_rollup_destroy(agg_rollup_t **self_p)
{
    agg_rollup_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        free(self->t[i].b);
        free(self->t[i].sk);
    }
    free(self);
    *self_p = NULL;
}

int64_t
agg_rollup_width(int tier)
{
    return s_width[tier];
}

static int64_t
s_floor(int64_t ts, int64_t w)
{
    int64_t q = ts / w;
    if (ts % w != 0 && ts < 0)
        q--;
    return q * w;
}

int64_t
agg_rollup_start(int tier, int64_t ts)
{
    return s_floor(ts, s_width[tier]);
}

/* First bucket with start >= t. */
static size_t
s_lower(const struct s_tier *t, int64_t start)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->b[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void
s_mark(struct s_tier *t, size_t i)
{
    if (i < t->dirty_lo)
        t->dirty_lo = i;
}

/* The bucket starting at start, created empty when missing. */
static struct s_bucket *
s_bucket(struct s_tier *t, int64_t start)
{
    size_t i;

    if (t->n > 0 && t->b[t->n - 1].start == start) {
        s_mark(t, t->n - 1);
        return &t->b[t->n - 1];
    }
    i = t->n > 0 && start > t->b[t->n - 1].start ? t->n : s_lower(t, start);
    if (i < t->n && t->b[i].start == start) {
        s_mark(t, i);
        return &t->b[i];
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->b = xrealloc(t->b, t->cap * sizeof *t->b);
    }
    memmove(t->b + i + 1, t->b + i, (t->n - i) * sizeof *t->b);
    t->n++;
    t->b[i] = (struct s_bucket){.start = start, .min = INFINITY,
                                .max = -INFINITY,
                                .sk_off = (uint32_t)t->skn};
    s_mark(t, i);
    return &t->b[i];
}

static uint32_t
s_key(double v)
{
    uint32_t cls = v > 0 ? S_CLASS_POS : v < 0 ? S_CLASS_NEG : S_CLASS_ZERO;
    int32_t i = 0;

    if (cls != S_CLASS_ZERO) {
        i = agg_sketch_index(fabs(v));
        if (i < -S_IDX_BIAS)
            i = -S_IDX_BIAS;
        if (i > S_IDX_MAX)
            i = S_IDX_MAX;
    }
    return cls << 14 | (uint32_t)(i + S_IDX_BIAS);
}

/* Rebuild the arena without dead entries. */
static void
s_compact(struct s_tier *t)
{
    uint32_t *sk = xmalloc((t->skn - t->skdead + 1) * sizeof *sk);
    size_t k = 0;

    for (size_t i = 0; i < t->n; i++) {
        memcpy(sk + k, t->sk + t->b[i].sk_off, t->b[i].sk_len * sizeof *sk);
        t->b[i].sk_off = (uint32_t)k;
        k += t->b[i].sk_len;
    }
    free(t->sk);
    t->sk = sk;
    t->skn = t->skcap = k;
    t->skdead = 0;
}

static void
s_reserve(struct s_tier *t, size_t more)
{
    if (t->skn + more > t->skcap) {
        t->skcap = t->skcap * 2 > t->skn + more ? t->skcap * 2 : t->skn + more + 8;
        t->sk = xrealloc(t->sk, t->skcap * sizeof *t->sk);
    }
}

/* Make room for one more entry in b's run, at its end of the arena. */
static void
s_run_grow(struct s_tier *t, struct s_bucket *b)
{
    if (b->sk_off + b->sk_len != t->skn) {
        s_reserve(t, b->sk_len + 1);
        memcpy(t->sk + t->skn, t->sk + b->sk_off, b->sk_len * sizeof *t->sk);
        b->sk_off = (uint32_t)t->skn;
        t->skn += b->sk_len;
        t->skdead += b->sk_len;
    }
    s_reserve(t, 1);
    t->skn++;
}

/* Add delta (+1 or -1) to the count of key in b's sketch. */
static void
s_sk_add(struct s_tier *t, struct s_bucket *b, uint32_t key, int delta)
{
    uint32_t *e = b->sk_len ? t->sk + b->sk_off : NULL; /* sk may be NULL */
    size_t i = 0, n = b->sk_len, hi = n;

    while (i < hi) { /* the first entry of key or above: a day holds many */
        size_t mid = i + (hi - i) / 2;
        if (e[mid] >> 16 < key)
            i = mid + 1;
        else
            hi = mid;
    }
    for (size_t j = i; j < n && e[j] >> 16 == key; j++) {
        uint32_t c = e[j] & S_CNT_MAX;
        if (delta > 0 && c < S_CNT_MAX) {
            e[j]++;
            return;
        }
        if (delta < 0) {
            if (c > 1) {
                e[j]--;
            } else {
                memmove(e + j, e + j + 1, (n - j - 1) * sizeof *e);
                b->sk_len--;
                t->skdead++;
            }
            return;
        }
    }
    if (delta < 0)
        return; /* not there: nothing to take away */
    if (t->skdead > S_DEAD_MIN && t->skdead > t->skn / 2)
        s_compact(t);
    s_run_grow(t, b);
    e = t->sk + b->sk_off;
    memmove(e + i + 1, e + i, (b->sk_len - i) * sizeof *e);
    e[i] = key << 16 | 1;
    b->sk_len++;
}

/* Welford's update with the mean taken from the sum. */
static void
s_moments_add(uint32_t *count, double *sum, double *m2, double v)
{
    double mean = *count ? *sum / *count : 0, delta = v - mean;
    (*count)++;
    *sum += v;
    *m2 += delta * (v - *sum / *count);
}

static void
s_moments_remove(uint32_t *count, double *sum, double *m2, double v)
{
    if (*count <= 1) {
        *count = 0;
        *sum = *m2 = 0;
        return;
    }
    double mean = *sum / *count, mean2 = (*sum - v) / (*count - 1);
    *m2 -= (v - mean) * (v - mean2);
    if (*m2 < 0)
        *m2 = 0;
    *sum -= v;
    (*count)--;
}

static void
s_bucket_add(struct s_tier *t, struct s_bucket *b, int64_t ts, double v,
             uint32_t key)
{
    s_moments_add(&b->count, &b->sum, &b->m2, v);
    if (v < b->min)
        b->min = v;
    if (v > b->max)
        b->max = v;
    if (b->count == 1 || ts < b->first_ts) {
        b->first = v;
        b->first_ts = ts;
    }
    if (b->count == 1 || ts >= b->last_ts) {
        b->last = v;
        b->last_ts = ts;
    }
    s_sk_add(t, b, key, 1);
}

void
agg_rollup_add_tier(agg_rollup_t *self, int tier, int64_t ts, double v)
{
    struct s_tier *t = &self->t[tier];
    s_bucket_add(t, s_bucket(t, s_floor(ts, s_width[tier])), ts, v, s_key(v));
}

void
agg_rollup_add(agg_rollup_t *self, int64_t ts, double v)
{
    uint32_t key = s_key(v); /* one logarithm for the three tiers */

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        s_bucket_add(t, s_bucket(t, s_floor(ts, s_width[i])), ts, v, key);
    }
}

bool
agg_rollup_replace(agg_rollup_t *self, int64_t ts, double old, double v)
{
    bool stale = false;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        struct s_bucket *b = s_bucket(t, s_floor(ts, s_width[i]));
        if (b->count == 0) { /* the point was not rolled up: add it */
            s_bucket_add(t, b, ts, v, s_key(v));
            continue;
        }
        s_moments_remove(&b->count, &b->sum, &b->m2, old);
        s_moments_add(&b->count, &b->sum, &b->m2, v);
        s_sk_add(t, b, s_key(old), -1);
        s_sk_add(t, b, s_key(v), 1);
        if (ts == b->first_ts)
            b->first = v;
        if (ts == b->last_ts)
            b->last = v;
        if (old == b->min || old == b->max)
            stale = true;
        if (v < b->min)
            b->min = v;
        if (v > b->max)
            b->max = v;
    }
    return stale;
}

/* Remove buckets [i, j) of a tier. */
static void
s_remove(struct s_tier *t, size_t i, size_t j)
{
    if (i >= j)
        return;
    for (size_t k = i; k < j; k++)
        t->skdead += t->b[k].sk_len;
    memmove(t->b + i, t->b + j, (t->n - j) * sizeof *t->b);
    t->n -= j - i;
    s_mark(t, 0); /* removals need a full rewrite; encode says so */
    if (t->skdead > S_DEAD_MIN && t->skdead > t->skn / 2)
        s_compact(t);
}

void
agg_rollup_drop_tier(agg_rollup_t *self, int tier, int64_t start, int64_t end)
{
    struct s_tier *t = &self->t[tier];
    s_remove(t, s_lower(t, start), s_lower(t, end));
}

void
agg_rollup_drop(agg_rollup_t *self, int64_t start, int64_t end)
{
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        agg_rollup_drop_tier(self, i, start, end);
}

size_t
agg_rollup_expire(agg_rollup_t *self, int tier, int64_t t)
{
    struct s_tier *tr = &self->t[tier];
    size_t j = s_lower(tr, t - s_width[tier] + 1);

    s_remove(tr, 0, j);
    return j;
}

uint64_t
agg_rollup_count_at(const agg_rollup_t *self, int tier, int64_t start)
{
    const struct s_tier *t = &self->t[tier];
    size_t i = s_lower(t, start);
    return i < t->n && t->b[i].start == start ? t->b[i].count : 0;
}

static void
s_sk_merge(const struct s_tier *t, const struct s_bucket *b, agg_sketch_t *sk)
{
    for (uint32_t k = 0; k < b->sk_len; k++) {
        uint32_t e = t->sk[b->sk_off + k], key = e >> 16, cls = key >> 14;
        int32_t idx = (int32_t)(key & 0x3fff) - S_IDX_BIAS;
        agg_sketch_add_index(sk, cls == S_CLASS_POS ? 1 : cls == S_CLASS_NEG ? -1 : 0,
                             idx, e & S_CNT_MAX);
    }
}

size_t
agg_rollup_lower(const agg_rollup_t *self, int tier, int64_t start)
{
    return s_lower(&self->t[tier], start);
}

size_t
agg_rollup_merge_from(const agg_rollup_t *self, int tier, size_t i, int64_t b,
                      struct agg_rsum *sum, agg_sketch_t *sk)
{
    const struct s_tier *t = &self->t[tier];

    for (; i < t->n && t->b[i].start < b; i++) {
        const struct s_bucket *x = &t->b[i];
        struct agg_rsum r = {{x->count, x->sum / x->count, x->m2, x->sum,
                              x->min, x->max},
                             x->first, x->last, x->first_ts, x->last_ts};
        agg_rsum_merge(sum, &r);
        if (sk)
            s_sk_merge(t, x, sk);
    }
    return i;
}

size_t
agg_rollup_sum_from(const agg_rollup_t *self, int tier, size_t i, int64_t b,
                    uint64_t *count, double *sum)
{
    const struct s_tier *t = &self->t[tier];

    /* As agg_stats_merge adds them up: empty buckets skipped, the first
     * sum copied (so a -0 stays -0). */
    for (; i < t->n && t->b[i].start < b; i++) {
        if (t->b[i].count == 0)
            continue;
        *sum = *count ? *sum + t->b[i].sum : t->b[i].sum;
        *count += t->b[i].count;
    }
    return i;
}

void
agg_rollup_merge(const agg_rollup_t *self, int tier, int64_t a, int64_t b,
                 struct agg_rsum *sum, agg_sketch_t *sk)
{
    agg_rollup_merge_from(self, tier, s_lower(&self->t[tier], a), b, sum, sk);
}

bool
agg_rollup_span(const agg_rollup_t *self, int64_t *first, int64_t *end)
{
    bool any = false;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        const struct s_tier *t = &self->t[i];
        if (t->n == 0)
            continue;
        if (!any || t->b[0].start < *first)
            *first = t->b[0].start;
        if (!any || t->b[t->n - 1].start + s_width[i] > *end)
            *end = t->b[t->n - 1].start + s_width[i];
        any = true;
    }
    return any;
}

int64_t
agg_rollup_first_ts(const agg_rollup_t *self)
{
    int64_t first = INT64_MAX;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        if (self->t[i].n > 0 && self->t[i].b[0].first_ts < first)
            first = self->t[i].b[0].first_ts;
    return first;
}

size_t
agg_rollup_buckets(const agg_rollup_t *self, int tier)
{
    return self->t[tier].n;
}

size_t
agg_rollup_bytes(const agg_rollup_t *self)
{
    size_t n = sizeof *self;
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        n += self->t[i].cap * sizeof(struct s_bucket) +
             self->t[i].skcap * sizeof(uint32_t);
    return n;
}

void
agg_rollup_clean(agg_rollup_t *self)
{
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        self->t[i].dirty_lo = SIZE_MAX;
}

bool
agg_rollup_dirty(const agg_rollup_t *self)
{
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        if (self->t[i].dirty_lo < self->t[i].n)
            return true;
    return false;
}

/* Buckets [lo, hi) of tier i that encode writes. */
static void
s_enc_range(const struct s_tier *t, bool all, int64_t before, size_t *lo,
            size_t *hi)
{
    *lo = all ? 0 : t->dirty_lo < t->n ? t->dirty_lo : t->n;
    *hi = s_lower(t, before);
    if (*lo > *hi)
        *lo = *hi;
}

size_t
agg_rollup_encode(agg_rollup_t *self, bool all, int64_t before,
                  unsigned char **out)
{
    size_t len = 0, off = 0, lo, hi, nb = 0;
    unsigned char *p;

    if (!all && !agg_rollup_dirty(self))
        return 0;
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        s_enc_range(&self->t[i], all, before, &lo, &hi);
        len += 4;
        nb += hi - lo;
        for (size_t k = lo; k < hi; k++)
            len += S_BUCKET_BYTES + 4 * (size_t)self->t[i].b[k].sk_len;
    }
    if (nb == 0) {
        for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
            self->t[i].dirty_lo = SIZE_MAX;
        return 0;
    }
    p = xmalloc(len);
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        s_enc_range(t, all, before, &lo, &hi);
        le_put(p + off, hi - lo, 4);
        off += 4;
        for (size_t k = lo; k < hi; k++) {
            const struct s_bucket *b = &t->b[k];
            const double d[6] = {b->sum, b->m2, b->min, b->max, b->first,
                                 b->last};
            le_put(p + off, (uint64_t)b->start, 8);
            le_put(p + off + 8, b->count, 4);
            le_put(p + off + 12, (uint64_t)b->first_ts, 8);
            le_put(p + off + 20, (uint64_t)b->last_ts, 8);
            for (int j = 0; j < 6; j++)
                le_put_double(p + off + 28 + 8 * j, d[j]);
            le_put(p + off + 76, b->sk_len, 4);
            off += S_BUCKET_BYTES;
            for (uint32_t j = 0; j < b->sk_len; j++, off += 4)
                le_put(p + off, t->sk[b->sk_off + j], 4);
        }
        t->dirty_lo = SIZE_MAX;
    }
    *out = p;
    return len;
}

int
agg_rollup_decode(agg_rollup_t *self, const unsigned char *buf, size_t len)
{
    size_t off = 0;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        if (len - off < 4)
            return -1;
        uint32_t nb = (uint32_t)le_get(buf + off, 4);
        off += 4;
        for (uint32_t k = 0; k < nb; k++) {
            if (len - off < S_BUCKET_BYTES)
                return -1;
            const unsigned char *p = buf + off;
            int64_t start = (int64_t)le_get(p, 8);
            uint32_t skl = (uint32_t)le_get(p + 76, 4);
            if (s_floor(start, s_width[i]) != start ||
                (len - off - S_BUCKET_BYTES) / 4 < skl || le_get(p + 8, 4) == 0)
                return -1;
            struct s_bucket *b = s_bucket(t, start);
            b->count = (uint32_t)le_get(p + 8, 4);
            b->first_ts = (int64_t)le_get(p + 12, 8);
            b->last_ts = (int64_t)le_get(p + 20, 8);
            b->sum = le_get_double(p + 28);
            b->m2 = le_get_double(p + 36);
            b->min = le_get_double(p + 44);
            b->max = le_get_double(p + 52);
            b->first = le_get_double(p + 60);
            b->last = le_get_double(p + 68);
            t->skdead += b->sk_len;
            s_reserve(t, skl);
            b->sk_off = (uint32_t)t->skn;
            b->sk_len = skl;
            off += S_BUCKET_BYTES;
            for (uint32_t j = 0; j < skl; j++, off += 4)
                t->sk[t->skn++] = (uint32_t)le_get(buf + off, 4);
        }
        if (t->skdead > S_DEAD_MIN && t->skdead > t->skn / 2)
            s_compact(t);
        t->dirty_lo = SIZE_MAX; /* what a record holds is on disk */
    }
    return off == len ? 0 : -1;
}

void
agg_rsum_add(struct agg_rsum *s, int64_t ts, double v)
{
    struct agg_rsum one = {{1, v, 0, v, v, v}, v, v, ts, ts};
    agg_rsum_merge(s, &one);
}

void
agg_rsum_merge(struct agg_rsum *a, const struct agg_rsum *b)
{
    if (b->m.count == 0)
        return;
    if (a->m.count == 0 || b->first_ts < a->first_ts) {
        a->first = b->first;
        a->first_ts = b->first_ts;
    }
    if (a->m.count == 0 || b->last_ts >= a->last_ts) {
        a->last = b->last;
        a->last_ts = b->last_ts;
    }
    agg_stats_merge(&a->m, &b->m);
}

/* Exact reference over raw values, for the test. */
static void
s_test_direct(const int64_t *ts, const double *v, size_t n, int64_t a,
              int64_t b, struct agg_rsum *out)
{
    double mean = 0;
    size_t k = 0;

    memset(out, 0, sizeof *out);
    out->m.min = INFINITY;
    out->m.max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (ts[i] >= a && ts[i] < b) {
            out->m.sum += v[i];
            k++;
        }
    mean = k ? out->m.sum / (double)k : 0;
    for (size_t i = 0; i < n; i++) {
        if (ts[i] < a || ts[i] >= b)
            continue;
        out->m.m2 += (v[i] - mean) * (v[i] - mean);
        if (v[i] < out->m.min)
            out->m.min = v[i];
        if (v[i] > out->m.max)
            out->m.max = v[i];
        if (out->m.count == 0 || ts[i] < out->first_ts) {
            out->first = v[i];
            out->first_ts = ts[i];
        }
        if (out->m.count == 0 || ts[i] > out->last_ts) {
            out->last = v[i];
            out->last_ts = ts[i];
        }
        out->m.count++;
    }
}

static void
s_test_same(const struct agg_rsum *x, const struct agg_rsum *y)
{
    assert(x->m.count == y->m.count);
    TEST_NEAR(x->m.sum, y->m.sum, 1e-9 * (1 + fabs(y->m.sum)));
    TEST_NEAR(x->m.m2, y->m.m2, 1e-9 * (1 + fabs(y->m.m2)));
    assert(x->m.min == y->m.min && x->m.max == y->m.max);
    assert(x->first == y->first && x->last == y->last);
    assert(x->first_ts == y->first_ts && x->last_ts == y->last_ts);
}

static int
s_test_dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy's default percentile: linear between closest ranks. */
static double
s_test_numpy(const double *sorted, size_t n, double q)
{
    double r = q * (double)(n - 1);
    size_t lo = (size_t)floor(r), hi = lo + 1 < n ? lo + 1 : lo;
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (r - (double)lo);
}

/*
 * Rollup math: 3 days of a 2-decimal random walk every 7 s, written out
 * of order with overwrites; merged minute, hour and day buckets equal the
 * direct computation over the raw values for every range; the merged
 * sketch of 1 M values answers every quantile within 1 % of numpy's
 * exact one; encode/decode gives back the same buckets.
 */
void
agg_rollup_test(bool verbose)
{
    enum { N = 3 * 86400 / 7, M = 1000000 };
    int64_t *ts = xmalloc(N * sizeof *ts), t0 = 1704067200LL * 1000000000LL;
    double *v = xmalloc(N * sizeof *v), x = 20;
    agg_rollup_t *r = agg_rollup_new(), *back = agg_rollup_new();
    struct agg_rsum got, want;
    uint64_t seed = 7;
    unsigned char *buf;
    size_t len;

    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x += ((double)(seed >> 40) / 16777216.0 - 0.5);
        ts[i] = t0 + (int64_t)i * 7000000000LL;
        v[i] = round(x * 100) / 100;
    }
    /* Odd indices first, then even ones: half the points are late. */
    for (size_t i = 1; i < N; i += 2)
        agg_rollup_add(r, ts[i], v[i]);
    for (size_t i = 0; i < N; i += 2)
        agg_rollup_add(r, ts[i], i % 10 == 0 ? 1000.0 : v[i]);
    /* Overwrites: every 10th point had a wrong value. */
    for (size_t i = 0; i < N; i += 10)
        agg_rollup_replace(r, ts[i], 1000.0, v[i]);
    assert(agg_rollup_buckets(r, AGG_ROLLUP_DAY) == 3);
    assert(agg_rollup_buckets(r, AGG_ROLLUP_HOUR) == 72);
    /* min and max were 1000 in the buckets that held it: recompute them
     * as agg_store does, from the raw points. */
    agg_rollup_drop(r, t0, t0 + 3 * 86400000000000LL);
    assert(agg_rollup_buckets(r, AGG_ROLLUP_MINUTE) == 0);
    for (size_t i = 0; i < N; i++)
        agg_rollup_add(r, ts[i], v[i]);
    for (int tier = 0; tier < AGG_ROLLUP_TIERS; tier++) {
        int64_t w = agg_rollup_width(tier);
        for (int64_t a = t0; a < t0 + 3 * 86400000000000LL; a += 7 * w / 3) {
            int64_t a0 = s_floor(a, w), b0 = a0 + 5 * w;
            memset(&got, 0, sizeof got);
            agg_rollup_merge(r, tier, a0, b0, &got, NULL);
            s_test_direct(ts, v, N, a0, b0, &want);
            s_test_same(&got, &want);
        }
    }
    /* The replace path alone keeps count, sum and M2 exact. */
    {
        agg_rollup_t *q = agg_rollup_new();
        for (size_t i = 0; i < 1000; i++)
            agg_rollup_add(q, ts[i], i % 3 ? v[i] : -5.0);
        for (size_t i = 0; i < 1000; i += 3)
            agg_rollup_replace(q, ts[i], -5.0, v[i]);
        memset(&got, 0, sizeof got);
        agg_rollup_merge(q, AGG_ROLLUP_DAY, INT64_MIN, INT64_MAX, &got, NULL);
        s_test_direct(ts, v, 1000, INT64_MIN, INT64_MAX, &want);
        assert(got.m.count == want.m.count && got.first == want.first);
        TEST_NEAR(got.m.sum, want.m.sum, 1e-9 * fabs(want.m.sum));
        TEST_NEAR(got.m.m2, want.m.m2, 1e-6 * want.m.m2);
        agg_rollup_destroy(&q);
    }
    /* Persistence: everything, then only what changed since. */
    size_t full = len = agg_rollup_encode(r, true, INT64_MAX, &buf);
    assert(len > 0 && !agg_rollup_dirty(r));
    assert(agg_rollup_decode(back, buf, len) == 0);
    assert(agg_rollup_decode(back, buf, len - 1) == -1);
    free(buf);
    agg_rollup_add(r, ts[N - 1] + 1, 99.5);
    assert(agg_rollup_dirty(r));
    len = agg_rollup_encode(r, false, INT64_MAX, &buf);
    assert(len > 3 * S_BUCKET_BYTES && len < full / 20);
    assert(agg_rollup_decode(back, buf, len) == 0);
    free(buf);
    assert(agg_rollup_encode(r, false, INT64_MAX, &buf) == 0);
    /* Only buckets starting before a time, in every tier: day 1 and the
     * minute bucket open at its end; of day 2, not even the day. */
    {
        agg_rollup_t *part = agg_rollup_new();
        len = agg_rollup_encode(r, true, t0 + 86400000000000LL + 1, &buf);
        assert(agg_rollup_decode(part, buf, len) == 0);
        free(buf);
        assert(agg_rollup_buckets(part, AGG_ROLLUP_MINUTE) == 1441);
        assert(agg_rollup_buckets(part, AGG_ROLLUP_HOUR) == 25);
        assert(agg_rollup_buckets(part, AGG_ROLLUP_DAY) == 2);
        len = agg_rollup_encode(r, true, t0 + 86400000000000LL, &buf);
        assert(agg_rollup_decode(part, buf, len) == 0);
        free(buf);
        assert(agg_rollup_buckets(part, AGG_ROLLUP_DAY) == 2 &&
               agg_rollup_count_at(part, AGG_ROLLUP_DAY, t0) ==
               agg_rollup_count_at(r, AGG_ROLLUP_DAY, t0));
        agg_rollup_destroy(&part);
    }
    for (int tier = 0; tier < AGG_ROLLUP_TIERS; tier++) {
        struct agg_rsum g2 = {0};
        agg_sketch_t *s1 = agg_sketch_new(), *s2 = agg_sketch_new();
        memset(&got, 0, sizeof got);
        agg_rollup_merge(r, tier, INT64_MIN, INT64_MAX, &got, s1);
        agg_rollup_merge(back, tier, INT64_MIN, INT64_MAX, &g2, s2);
        s_test_same(&got, &g2);
        assert(agg_sketch_count(s1) == got.m.count &&
               agg_sketch_quantile(s1, 0.9) == agg_sketch_quantile(s2, 0.9));
        agg_sketch_destroy(&s1);
        agg_sketch_destroy(&s2);
    }
    /* Expiry of the minute tier keeps hours and days. */
    assert(agg_rollup_expire(r, AGG_ROLLUP_MINUTE, t0 + 86400000000000LL) == 1440);
    assert(agg_rollup_count_at(r, AGG_ROLLUP_DAY, t0) > 0);
    assert(agg_rollup_count_at(r, AGG_ROLLUP_MINUTE, t0) == 0);
    agg_rollup_destroy(&r);
    agg_rollup_destroy(&back);
    free(ts);
    free(v);

    /* Sketch accuracy through the compact buckets: 1 M values spread
     * over minute buckets (a heavy-tailed mix with negatives and zeros),
     * merged over the whole range, against numpy's exact percentiles. */
    static const double qs[] = {0.01, 0.05, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999};
    double *vals = xmalloc(M * sizeof *vals), worst = 0;
    agg_sketch_t *sk = agg_sketch_new();
    r = agg_rollup_new();
    for (size_t i = 0; i < M; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
        vals[i] = i % 5 == 0 ? round(u * 2000 - 1000) : exp(8 * u) - 1;
        agg_rollup_add(r, t0 + (int64_t)i * 1000000000LL, vals[i]);
    }
    memset(&got, 0, sizeof got);
    agg_rollup_merge(r, AGG_ROLLUP_MINUTE, INT64_MIN, INT64_MAX, &got, sk);
    qsort(vals, M, sizeof *vals, s_test_dcmp);
    assert(got.m.count == M && agg_sketch_count(sk) == M);
    for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
        double exact = s_test_numpy(vals, M, qs[k]);
        double est = agg_sketch_quantile(sk, qs[k]);
        double err = exact == 0 ? fabs(est) : fabs(est - exact) / fabs(exact);
        if (err > worst)
            worst = err;
        assert(err <= AGG_SKETCH_ALPHA + 1e-9);
    }
    if (verbose)
        printf("agg_rollup: worst relative error %.5f, %zu bytes for %zu "
               "minute buckets\n", worst, agg_rollup_bytes(r),
               agg_rollup_buckets(r, AGG_ROLLUP_MINUTE));
    agg_sketch_destroy(&sk);
    agg_rollup_destroy(&r);
    free(vals);
    TEST_OK("agg_rollup");
}
