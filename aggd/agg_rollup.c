/*
 * agg_rollup: minute, hour and day rollups of one series (see
 * agg_rollup.h).
 *
 * Each tier holds its buckets sorted by start: the older ones packed in
 * pages of S_PAGE, then the newest (at least S_HOT, fewer than S_PAGE +
 * S_HOT) as an array of struct s_bucket with an arena of sketch entries;
 * a bucket there owns a run [sk_off, sk_off + sk_len) of the arena,
 * sorted by key. Ingest is mostly in time order, so the growing bucket's
 * run is at the arena's end and grows in place; a late point into an
 * older bucket moves that bucket's run to the end (the old run becomes
 * dead space, reclaimed when it passes half of the arena).
 *
 * A bucket is addressed by its index among all of the tier's: the pages'
 * first, then the array's. When the array reaches S_PAGE + S_HOT
 * buckets its oldest S_PAGE are packed into a new page (about 45 bytes a
 * minute bucket of six 2-decimal points, against 117 unpacked). A page
 * holds, per bucket, a fixed entry (start as minutes or hours from the
 * page's first, count, sum: what a mean over buckets reads, in place)
 * and a stream of the rest: first_ts and last_ts as varints of a power
 * of ten ns past the start and past first_ts, M2 by its bits, min, max,
 * first and last as scaled integers k / 10^d when the page's values all
 * are (else by their bits), and, in a stream of their own read only
 * when a sketch is merged, the sketch entries as varints of key steps
 * and counts. Readers decode a page into a one-page cache; a write
 * into a packed bucket (a late point, a replace, a drop) first unpacks
 * that page and the later ones into the array, repacked on the next
 * bucket added at the end. Pages are in memory only; the on-disk record
 * is the one below.
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
#define S_PAGE 60         /* buckets of a page */
#define S_HOT 4           /* buckets left unpacked when a page is made */
#define S_DEC_MAX 9       /* most decimals of a page's scaled values */
#define S_DEC_RAW 0xff    /* a page's values by their bits */
#define S_SCALED_MAX 9007199254740992.0 /* 2^53 */

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

/* The fixed entry of a packed bucket. */
struct s_hot {
    uint32_t off;   /* (start - page lo) / width */
    uint32_t count; /* points */
    double sum;     /* sum of values */
};

struct s_page {
    int64_t lo, hi;    /* starts of the first and the last bucket */
    size_t first;      /* index of the first bucket in the tier */
    uint64_t id;       /* unique, for the decode cache */
    uint32_t n;        /* buckets */
    uint32_t cold_len; /* bytes of the streams after the fixed entries */
    uint32_t sk_at;    /* where in them the sketch stream starts */
    struct s_hot *hot; /* n entries, then the stream (one allocation) */
};

struct s_tier {
    struct s_page *pg;  /* pages, oldest first */
    size_t npg, pgcap;  /* used and allocated */
    size_t np;          /* buckets in pages */
    struct s_bucket *b; /* the newer buckets, by start */
    size_t n, cap;      /* used and allocated */
    uint32_t *sk;       /* arena of sketch entries */
    size_t skn, skcap;  /* used and allocated */
    size_t skdead;      /* entries no bucket refers to */
    size_t sk_hint;     /* arena entry the last s_sk_add counted in */
    size_t dirty_lo;    /* first bucket changed since the last encode, or
                           SIZE_MAX when none */
};

struct agg_rollup {
    struct s_tier t[AGG_ROLLUP_TIERS]; /* minute, hour, day */
    int32_t idx_hint;                  /* sketch index of the last point */
};

/* The last page decoded (aggd reads rollups on one thread). */
static struct {
    uint64_t id;                /* page id, 0 none */
    bool has_sk;                /* with the sketch entries */
    struct s_bucket b[S_PAGE];  /* its buckets, sk_off into sk */
    uint32_t *sk;               /* their sketch entries */
    size_t skcap;               /* allocated */
} s_dc;
static uint64_t s_page_ids;

static const int64_t s_width[AGG_ROLLUP_TIERS] = {
    S_NS_MIN, 60 * S_NS_MIN, 1440 * S_NS_MIN};

static const double s_p10[S_DEC_MAX + 1] = {1e0, 1e1, 1e2, 1e3, 1e4,
                                            1e5, 1e6, 1e7, 1e8, 1e9};
static const int64_t s_p10i[S_DEC_MAX + 1] = {
    1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000,
    1000000000};

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
        for (size_t k = 0; k < self->t[i].npg; k++)
            free(self->t[i].pg[k].hot);
        free(self->t[i].pg);
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

/* ---- packed pages ---- */

struct s_buf {
    unsigned char *p; /* bytes */
    size_t n, cap;    /* used and allocated */
};

static void
s_put(struct s_buf *b, const void *x, size_t len)
{
    if (b->n + len > b->cap) {
        b->cap = (b->n + len) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, x, len);
    b->n += len;
}

static inline void
s_put_uvar(struct s_buf *b, uint64_t x)
{
    unsigned char *p;

    if (b->n + 10 > b->cap) { /* the longest varint */
        b->cap = (b->n + 10) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    p = b->p + b->n;
    while (x >= 0x80) {
        *p++ = (unsigned char)(x | 0x80);
        x >>= 7;
    }
    *p++ = (unsigned char)x;
    b->n = (size_t)(p - b->p);
}

static void
s_put_svar(struct s_buf *b, int64_t x)
{
    s_put_uvar(b, ((uint64_t)x << 1) ^ (uint64_t)(x >> 63));
}

/* Pages are made here, so their streams are trusted. */
static uint64_t
s_get_uvar(const unsigned char **p)
{
    uint64_t v = 0;
    unsigned shift = 0;

    while (**p & 0x80) {
        v |= (uint64_t)(**p & 0x7f) << shift;
        shift += 7;
        (*p)++;
    }
    v |= (uint64_t)**p << shift;
    (*p)++;
    return v;
}

static int64_t
s_get_svar(const unsigned char **p)
{
    uint64_t z = s_get_uvar(p);
    return (int64_t)((z >> 1) ^ (0 - (z & 1)));
}

/* The same double, bit for bit (-0 is not 0). */
static bool
s_same(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Is v exactly k / 10^d, with k as the page gives it back? k is x
 * rounded half to even, as nearbyint(x) in the default rounding mode,
 * without the call: below 2^52 adding and taking away 2^52 rounds so,
 * and from 2^52 up every double is an integer. */
static bool
s_exact(double v, int d, int64_t *k)
{
    const double two52 = 4503599627370496.0;
    double x = v * s_p10[d], a = fabs(x);

    if (!(a < S_SCALED_MAX))
        return false;
    if (a < two52)
        a = (a + two52) - two52;
    *k = (int64_t)copysign(a, x);
    return s_same((double)*k / s_p10[d], v);
}

/* Decimals of the values of buckets b[0..m) (at most S_PAGE), or
 * S_DEC_RAW; otherwise k[i][j] is value j (min, max, first, last) of
 * bucket i scaled by them. */
static int
s_page_dec(const struct s_bucket *b, size_t m, int64_t (*k)[4])
{
    int d = 0;

    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < m; i++) {
            const double v[4] = {b[i].min, b[i].max, b[i].first, b[i].last};
            for (int j = 0; j < 4; j++)
                while (!s_exact(v[j], d, &k[i][j])) {
                    if (pass == 1 || ++d > S_DEC_MAX)
                        return S_DEC_RAW; /* the second pass proves d */
                }
        }
    return d;
}

/* Largest e such that the first_ts and last_ts steps are multiples of
 * 10^e ns. */
static int
s_page_tsexp(const struct s_bucket *b, size_t m)
{
    int e = S_DEC_MAX;

    for (size_t i = 0; i < m && e > 0; i++) {
        int64_t d1 = (int64_t)((uint64_t)b[i].first_ts - (uint64_t)b[i].start);
        int64_t d2 = (int64_t)((uint64_t)b[i].last_ts - (uint64_t)b[i].first_ts);
        while (e > 0 && (d1 % s_p10i[e] != 0 || d2 % s_p10i[e] != 0))
            e--;
    }
    return e;
}

/* Pack buckets b[0..m) (sketch entries in sk) into page pg. */
static void
s_page_pack(struct s_page *pg, const struct s_bucket *b, size_t m,
            const uint32_t *sk, int64_t w)
{
    /* The streams are built in buffers kept between pages (one thread,
     * like s_dc): a page is packed every S_PAGE buckets added, and
     * growing two fresh buffers each time showed in profiles. */
    static struct s_buf c, ks;
    unsigned char hdr[2];
    int64_t k[S_PAGE][4];
    int dec, e = s_page_tsexp(b, m);
    int64_t unit = s_p10i[e];
    uint32_t key0 = 0;

    assert(m <= S_PAGE);
    dec = s_page_dec(b, m, k);
    c.n = ks.n = 0;
    hdr[0] = (unsigned char)dec;
    hdr[1] = (unsigned char)e;
    s_put(&c, hdr, 2);
    for (size_t i = 0; i < m; i++) {
        const struct s_bucket *x = &b[i];
        const double v[4] = {x->min, x->max, x->first, x->last};
        unsigned char m2[8];
        s_put_svar(&c, (int64_t)((uint64_t)x->first_ts - (uint64_t)x->start) / unit);
        s_put_svar(&c, (int64_t)((uint64_t)x->last_ts - (uint64_t)x->first_ts) / unit);
        le_put_double(m2, x->m2);
        s_put(&c, m2, 8);
        if (dec == S_DEC_RAW) {
            for (int j = 0; j < 4; j++) {
                le_put_double(m2, v[j]);
                s_put(&c, m2, 8);
            }
        } else {
            s_put_svar(&c, k[i][2]);
            s_put_svar(&c, k[i][0] - k[i][2]);
            s_put_svar(&c, k[i][1] - k[i][2]);
            s_put_svar(&c, k[i][3] - k[i][2]);
        }
        s_put_uvar(&ks, x->sk_len);
        for (uint32_t j = 0; j < x->sk_len; j++) {
            uint32_t en = sk[x->sk_off + j], key = en >> 16;
            s_put_svar(&ks, (int64_t)key - (int64_t)key0);
            s_put_uvar(&ks, en & S_CNT_MAX);
            if (j == 0)
                key0 = key; /* the next bucket's first key steps from it */
            else
                key0 = j + 1 < x->sk_len ? key : sk[x->sk_off] >> 16;
        }
    }
    pg->lo = b[0].start;
    pg->hi = b[m - 1].start;
    pg->id = ++s_page_ids;
    pg->n = (uint32_t)m;
    pg->sk_at = (uint32_t)c.n;
    pg->cold_len = (uint32_t)(c.n + ks.n);
    pg->hot = xmalloc(m * sizeof *pg->hot + c.n + ks.n);
    for (size_t i = 0; i < m; i++)
        pg->hot[i] = (struct s_hot){(uint32_t)((b[i].start - pg->lo) / w),
                                    b[i].count, b[i].sum};
    memcpy(pg->hot + m, c.p, c.n);
    if (ks.n)
        memcpy((unsigned char *)(pg->hot + m) + c.n, ks.p, ks.n);
}

/* Decode page pg into the cache (unless it is there), with the sketch
 * entries when want_sk. */
static void
s_page_load(const struct s_page *pg, int64_t w, bool want_sk)
{
    const unsigned char *p = (const unsigned char *)(pg->hot + pg->n);
    const unsigned char *q = p + pg->sk_at;
    int dec, e;
    int64_t unit;
    uint32_t key0 = 0;
    size_t nsk = 0;

    if (s_dc.id == pg->id && (s_dc.has_sk || !want_sk))
        return;
    dec = p[0];
    e = p[1];
    unit = s_p10i[e];
    p += 2;
    for (uint32_t i = 0; i < pg->n; i++) {
        struct s_bucket *x = &s_dc.b[i];
        x->start = pg->lo + (int64_t)pg->hot[i].off * w;
        x->count = pg->hot[i].count;
        x->sum = pg->hot[i].sum;
        x->first_ts = (int64_t)((uint64_t)x->start +
                                (uint64_t)(s_get_svar(&p) * unit));
        x->last_ts = (int64_t)((uint64_t)x->first_ts +
                               (uint64_t)(s_get_svar(&p) * unit));
        x->m2 = le_get_double(p);
        p += 8;
        if (dec == S_DEC_RAW) {
            x->min = le_get_double(p);
            x->max = le_get_double(p + 8);
            x->first = le_get_double(p + 16);
            x->last = le_get_double(p + 24);
            p += 32;
        } else {
            int64_t kf = s_get_svar(&p);
            x->first = (double)kf / s_p10[dec];
            x->min = (double)(kf + s_get_svar(&p)) / s_p10[dec];
            x->max = (double)(kf + s_get_svar(&p)) / s_p10[dec];
            x->last = (double)(kf + s_get_svar(&p)) / s_p10[dec];
        }
        x->sk_len = 0;
        x->sk_off = 0;
    }
    s_dc.id = pg->id;
    s_dc.has_sk = want_sk;
    for (uint32_t i = 0; i < pg->n && want_sk; i++) {
        struct s_bucket *x = &s_dc.b[i];
        x->sk_len = (uint32_t)s_get_uvar(&q);
        x->sk_off = (uint32_t)nsk;
        if (nsk + x->sk_len > s_dc.skcap) {
            s_dc.skcap = (nsk + x->sk_len) * 2;
            s_dc.sk = xrealloc(s_dc.sk, s_dc.skcap * sizeof *s_dc.sk);
        }
        for (uint32_t j = 0; j < x->sk_len; j++) {
            uint32_t key = (uint32_t)((int64_t)key0 + s_get_svar(&q));
            s_dc.sk[nsk++] = key << 16 | (uint32_t)s_get_uvar(&q);
            if (j == 0)
                key0 = key;
            else
                key0 = j + 1 < x->sk_len ? key : s_dc.sk[x->sk_off] >> 16;
        }
    }
}

/* The page holding bucket i (i < np): every page holds S_PAGE buckets
 * (made of S_PAGE, dropped or unpacked whole). */
static size_t
s_page_of(const struct s_tier *t, size_t i)
{
    (void)t;
    return i / S_PAGE;
}

/* Bucket i of a tier (valid until the next call), its sketch entries in
 * *sk unless sk is NULL (then the bucket's sketch is not read). */
static const struct s_bucket *
s_get(const struct s_tier *t, int tier, size_t i, const uint32_t **sk)
{
    if (i >= t->np) {
        if (sk)
            *sk = t->sk;
        return &t->b[i - t->np];
    }
    const struct s_page *pg = &t->pg[s_page_of(t, i)];
    s_page_load(pg, s_width[tier], sk != NULL);
    if (sk)
        *sk = s_dc.sk;
    return &s_dc.b[i - pg->first];
}

static void s_compact(struct s_tier *t);

/* Pack the oldest S_PAGE buckets of the array into a new page. */
static void
s_pack(struct s_tier *t, int tier)
{
    if (t->npg == t->pgcap) {
        t->pgcap = t->pgcap ? t->pgcap * 2 : 4;
        t->pg = xrealloc(t->pg, t->pgcap * sizeof *t->pg);
    }
    s_page_pack(&t->pg[t->npg], t->b, S_PAGE, t->sk, s_width[tier]);
    t->pg[t->npg++].first = t->np;
    t->np += S_PAGE;
    for (size_t i = 0; i < S_PAGE; i++)
        t->skdead += t->b[i].sk_len;
    memmove(t->b, t->b + S_PAGE, (t->n - S_PAGE) * sizeof *t->b);
    t->n -= S_PAGE;
    s_compact(t);
}

/* Pack while the array is full; give back what an unpack grew it to. */
static void
s_repack(struct s_tier *t, int tier)
{
    while (t->n >= S_PAGE + S_HOT)
        s_pack(t, tier);
    if (t->cap > 2 * (S_PAGE + S_HOT)) {
        t->cap = S_PAGE + S_HOT;
        t->b = xrealloc(t->b, t->cap * sizeof *t->b);
    }
}

static void s_reserve(struct s_tier *t, size_t more);

/* Unpack pages k.. back into the array, in front of its buckets. */
static void
s_unpack(struct s_tier *t, int tier, size_t k)
{
    size_t m = t->np - t->pg[k].first, at = 0;

    if (t->n + m > t->cap) {
        t->cap = t->n + m + S_HOT;
        t->b = xrealloc(t->b, t->cap * sizeof *t->b);
    }
    memmove(t->b + m, t->b, t->n * sizeof *t->b);
    for (size_t j = k; j < t->npg; j++) {
        struct s_page *pg = &t->pg[j];
        s_page_load(pg, s_width[tier], true);
        for (uint32_t i = 0; i < pg->n; i++) {
            struct s_bucket *x = &t->b[at++];
            *x = s_dc.b[i];
            s_reserve(t, x->sk_len);
            memcpy(t->sk + t->skn, s_dc.sk + x->sk_off,
                   x->sk_len * sizeof *t->sk);
            x->sk_off = (uint32_t)t->skn;
            t->skn += x->sk_len;
        }
        free(pg->hot);
    }
    t->n += m;
    t->np -= m;
    t->npg = k;
    s_dc.id = 0;
}

/* ---- buckets ---- */

/* The first i in [0, n) with key(base, i) >= x (n when none): a lower
 * bound over an ascending key. */
static size_t
s_bound(const void *base, size_t n, int64_t x,
        int64_t (*key)(const void *, size_t))
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key(base, mid) < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int64_t
s_key_start(const void *b, size_t i)
{
    return ((const struct s_bucket *)b)[i].start;
}

static int64_t
s_key_hi(const void *pg, size_t i)
{
    return ((const struct s_page *)pg)[i].hi;
}

static int64_t
s_key_off(const void *hot, size_t i)
{
    return ((const struct s_hot *)hot)[i].off;
}

/* First bucket of the array with start >= t. */
static size_t
s_lower_hot(const struct s_tier *t, int64_t start)
{
    return s_bound(t->b, t->n, start, s_key_start);
}

/* Index of the first bucket with start >= start: in the first page
 * ending at or after it, else in the array. */
static size_t
s_lower(const struct s_tier *t, int tier, int64_t start)
{
    if (t->npg == 0 || start > t->pg[t->npg - 1].hi)
        return t->np + s_lower_hot(t, start);
    const struct s_page *pg = &t->pg[s_bound(t->pg, t->npg, start, s_key_hi)];
    if (start <= pg->lo)
        return pg->first;
    uint64_t off = (uint64_t)(start - pg->lo - 1) / (uint64_t)s_width[tier] + 1;
    return pg->first + s_bound(pg->hot, pg->n, (int64_t)off, s_key_off);
}

static void
s_mark(struct s_tier *t, size_t i)
{
    if (i < t->dirty_lo)
        t->dirty_lo = i;
}

/* The bucket starting at start, created empty when missing; a packed one
 * is unpacked first. */
static struct s_bucket *
s_bucket(struct s_tier *t, int tier, int64_t start)
{
    size_t i;

    if (t->n > 0 && t->b[t->n - 1].start == start) {
        s_mark(t, t->np + t->n - 1);
        return &t->b[t->n - 1];
    }
    if (t->npg > 0 && start <= t->pg[t->npg - 1].hi) {
        size_t k = t->npg - 1;
        while (k > 0 && t->pg[k - 1].hi >= start)
            k--;
        s_unpack(t, tier, k);
    }
    if (t->n == 0 || start > t->b[t->n - 1].start) {
        s_repack(t, tier);
        i = t->n;
    } else {
        i = s_lower_hot(t, start);
        if (i < t->n && t->b[i].start == start) {
            s_mark(t, t->np + i);
            return &t->b[i];
        }
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 4;
        if (t->cap > S_PAGE + S_HOT && t->n < S_PAGE + S_HOT)
            t->cap = S_PAGE + S_HOT;
        t->b = xrealloc(t->b, t->cap * sizeof *t->b);
    }
    memmove(t->b + i + 1, t->b + i, (t->n - i) * sizeof *t->b);
    t->n++;
    t->b[i] = (struct s_bucket){.start = start, .min = INFINITY,
                                .max = -INFINITY,
                                .sk_off = (uint32_t)t->skn};
    s_mark(t, t->np + i);
    return &t->b[i];
}

/* The sketch key of v; hint as agg_sketch_index_near's, or NULL. */
static uint32_t
s_key_near(double v, int32_t *hint)
{
    uint32_t cls = v > 0 ? S_CLASS_POS : v < 0 ? S_CLASS_NEG : S_CLASS_ZERO;
    int32_t i = 0;

    if (cls != S_CLASS_ZERO) {
        i = hint ? agg_sketch_index_near(fabs(v), hint) : agg_sketch_index(fabs(v));
        if (i < -S_IDX_BIAS)
            i = -S_IDX_BIAS;
        if (i > S_IDX_MAX)
            i = S_IDX_MAX;
    }
    return cls << 14 | (uint32_t)(i + S_IDX_BIAS);
}

static uint32_t
s_key(double v)
{
    return s_key_near(v, NULL);
}

/* Rebuild the arena with the runs of the array's buckets only. When the
 * runs lie in bucket order (ingest in time order) they slide down in
 * place, and the arena keeps its size (it fills again as the next
 * page's buckets come) unless an unpack made it far too big. */
static void
s_compact(struct s_tier *t)
{
    size_t live = 0, k = 0;
    uint32_t *sk;
    bool ordered = true;

    for (size_t i = 0; i < t->n; i++) {
        ordered = ordered && t->b[i].sk_off >= live;
        live += t->b[i].sk_len;
    }
    if (ordered && t->sk) {
        for (size_t i = 0; i < t->n; i++) {
            memmove(t->sk + k, t->sk + t->b[i].sk_off,
                    t->b[i].sk_len * sizeof *t->sk);
            t->b[i].sk_off = (uint32_t)k;
            k += t->b[i].sk_len;
        }
        t->skn = k;
        t->skdead = 0;
        if (t->skcap > 32 * (live + 16)) { /* after an unpack */
            t->skcap = 2 * (live + 16);
            t->sk = xrealloc(t->sk, t->skcap * sizeof *t->sk);
        }
        return;
    }
    sk = xmalloc((live + 1) * sizeof *sk);
    for (size_t i = 0; i < t->n; i++) {
        memcpy(sk + k, t->sk + t->b[i].sk_off, t->b[i].sk_len * sizeof *sk);
        t->b[i].sk_off = (uint32_t)k;
        k += t->b[i].sk_len;
    }
    free(t->sk);
    t->sk = sk;
    t->skn = k;
    t->skcap = live + 1;
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
            t->sk_hint = b->sk_off + j;
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
    t->sk_hint = b->sk_off + i;
}

/* s_sk_add(t, b, key, 1). Neighbouring values mostly share a key: the
 * entry counted last is tried first (if it is still in b's run, the
 * first of its key, and not full: the one the search would pick). */
static inline void
s_sk_inc(struct s_tier *t, struct s_bucket *b, uint32_t key)
{
    size_t h = t->sk_hint - b->sk_off;

    if (h < b->sk_len) {
        uint32_t *e = t->sk + b->sk_off;
        if (e[h] >> 16 == key && (e[h] & S_CNT_MAX) < S_CNT_MAX &&
            (h == 0 || e[h - 1] >> 16 != key)) {
            e[h]++;
            return;
        }
    }
    s_sk_add(t, b, key, 1);
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

static inline void
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
    s_sk_inc(t, b, key);
}

void
agg_rollup_add_tier(agg_rollup_t *self, int tier, int64_t ts, double v)
{
    struct s_tier *t = &self->t[tier];
    s_bucket_add(t, s_bucket(t, tier, s_floor(ts, s_width[tier])), ts, v,
                 s_key(v));
}

void
agg_rollup_add(agg_rollup_t *self, int64_t ts, double v)
{
    /* One key for the three tiers; mostly in the bucket of the series'
     * previous point or next to it (no logarithm then). */
    uint32_t key = s_key_near(v, &self->idx_hint);

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        struct s_bucket *b = t->n ? &t->b[t->n - 1] : NULL;
        /* Mostly the point falls in the newest bucket: no division. */
        if (b && ts >= b->start &&
            (uint64_t)ts - (uint64_t)b->start < (uint64_t)s_width[i])
            s_mark(t, t->np + t->n - 1);
        else
            b = s_bucket(t, i, s_floor(ts, s_width[i]));
        s_bucket_add(t, b, ts, v, key);
    }
}

void
agg_rollup_prefetch(const agg_rollup_t *self, int stage)
{
    if (stage == 0) {
        for (size_t at = 0; at < sizeof *self; at += 64)
            __builtin_prefetch((const char *)self + at, 1);
        return;
    }
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        const struct s_tier *t = &self->t[i];
        if (t->n > 0) {
            __builtin_prefetch(&t->b[t->n - 1], 1);
            __builtin_prefetch((const char *)&t->b[t->n - 1] + 64, 1);
        }
        if (t->sk_hint < t->skn)
            __builtin_prefetch(t->sk + t->sk_hint, 1);
    }
}

void
agg_rollup_add_run(agg_rollup_t *self, const int64_t *ts, const double *v,
                   size_t n)
{
    enum { STEP = 64 };
    uint32_t key[STEP];

    for (size_t at = 0; at < n; at += STEP) {
        size_t m = n - at < STEP ? n - at : STEP;
        /* The keys in point order, as agg_rollup_add takes them. */
        for (size_t j = 0; j < m; j++)
            key[j] = s_key_near(v[at + j], &self->idx_hint);
        /* Each bucket gets its points in the same order as point by
         * point, so the sums are the same doubles. */
        for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
            struct s_tier *t = &self->t[i];
            const uint64_t w = (uint64_t)s_width[i];
            struct s_bucket *b = NULL;
            for (size_t j = at; j < at + m; j++) {
                if (b == NULL || ts[j] < b->start ||
                    (uint64_t)ts[j] - (uint64_t)b->start >= w) {
                    b = t->n ? &t->b[t->n - 1] : NULL;
                    if (b && ts[j] >= b->start &&
                        (uint64_t)ts[j] - (uint64_t)b->start < w)
                        s_mark(t, t->np + t->n - 1);
                    else
                        b = s_bucket(t, i, s_floor(ts[j], s_width[i]));
                }
                s_bucket_add(t, b, ts[j], v[j], key[j - at]);
            }
        }
    }
}

bool
agg_rollup_replace(agg_rollup_t *self, int64_t ts, double old, double v)
{
    bool stale = false;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        struct s_bucket *b = s_bucket(t, i, s_floor(ts, s_width[i]));
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

/* Remove buckets [i, j) of a tier: whole pages at the front go as they
 * are, the others are unpacked first. */
static void
s_remove(struct s_tier *t, int tier, size_t i, size_t j)
{
    size_t k = 0, gone;

    if (i >= j)
        return;
    s_mark(t, 0); /* removals need a full rewrite; encode says so */
    if (i == 0 && t->npg > 0) {
        while (k < t->npg && t->pg[k].first + t->pg[k].n <= j)
            free(t->pg[k++].hot);
        gone = k < t->npg ? t->pg[k].first : t->np;
        memmove(t->pg, t->pg + k, (t->npg - k) * sizeof *t->pg);
        t->npg -= k;
        for (k = 0; k < t->npg; k++)
            t->pg[k].first -= gone;
        t->np -= gone;
        j -= gone;
        if (j == 0)
            return;
    }
    if (i < t->np)
        s_unpack(t, tier, s_page_of(t, i));
    i -= t->np;
    j -= t->np;
    for (k = i; k < j; k++)
        t->skdead += t->b[k].sk_len;
    memmove(t->b + i, t->b + j, (t->n - j) * sizeof *t->b);
    t->n -= j - i;
    if (t->skdead > S_DEAD_MIN && t->skdead > t->skn / 2)
        s_compact(t);
    s_repack(t, tier);
}

void
agg_rollup_drop_tier(agg_rollup_t *self, int tier, int64_t start, int64_t end)
{
    struct s_tier *t = &self->t[tier];
    s_remove(t, tier, s_lower(t, tier, start), s_lower(t, tier, end));
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
    size_t j = s_lower(tr, tier, t - s_width[tier] + 1);

    s_remove(tr, tier, 0, j);
    return j;
}

uint64_t
agg_rollup_count_at(const agg_rollup_t *self, int tier, int64_t start)
{
    const struct s_tier *t = &self->t[tier];
    size_t i = s_lower(t, tier, start);
    const struct s_bucket *b;

    if (i >= t->np + t->n)
        return 0;
    b = s_get(t, tier, i, NULL);
    return b->start == start ? b->count : 0;
}

static void
s_sk_merge(const uint32_t *arena, const struct s_bucket *b, agg_sketch_t *sk)
{
    for (uint32_t k = 0; k < b->sk_len; k++) {
        uint32_t e = arena[b->sk_off + k], key = e >> 16, cls = key >> 14;
        int32_t idx = (int32_t)(key & 0x3fff) - S_IDX_BIAS;
        agg_sketch_add_index(sk, cls == S_CLASS_POS ? 1 : cls == S_CLASS_NEG ? -1 : 0,
                             idx, e & S_CNT_MAX);
    }
}

size_t
agg_rollup_lower(const agg_rollup_t *self, int tier, int64_t start)
{
    return s_lower(&self->t[tier], tier, start);
}

size_t
agg_rollup_merge_from(const agg_rollup_t *self, int tier, size_t i, int64_t b,
                      struct agg_rsum *sum, agg_sketch_t *sk)
{
    const struct s_tier *t = &self->t[tier];
    const uint32_t *arena = NULL;

    for (; i < t->np + t->n; i++) {
        const struct s_bucket *x = s_get(t, tier, i, sk ? &arena : NULL);
        if (x->start >= b)
            break;
        struct agg_rsum r = {{x->count, x->sum / x->count, x->m2, x->sum,
                              x->min, x->max},
                             x->first, x->last, x->first_ts, x->last_ts};
        agg_rsum_merge(sum, &r);
        if (sk)
            s_sk_merge(arena, x, sk);
    }
    return i;
}

/* As agg_stats_merge adds them up: empty buckets skipped, the first sum
 * copied (so a -0 stays -0). */
static void
s_sum_add(uint32_t count, double s, uint64_t *cnt, double *sum)
{
    if (count == 0)
        return;
    *sum = *cnt ? *sum + s : s;
    *cnt += count;
}

size_t
agg_rollup_sum_from(const agg_rollup_t *self, int tier, size_t i, int64_t b,
                    uint64_t *count, double *sum)
{
    const struct s_tier *t = &self->t[tier];

    while (i < t->np) { /* the fixed entries of pages, in place */
        const struct s_page *pg = &t->pg[s_page_of(t, i)];
        for (size_t k = i - pg->first; k < pg->n; k++, i++) {
            if (pg->lo + (int64_t)pg->hot[k].off * s_width[tier] >= b)
                return i;
            s_sum_add(pg->hot[k].count, pg->hot[k].sum, count, sum);
        }
    }
    for (; i < t->np + t->n && t->b[i - t->np].start < b; i++)
        s_sum_add(t->b[i - t->np].count, t->b[i - t->np].sum, count, sum);
    return i;
}

/* One bucket of agg_rollup_sum_steps, starting at ts: into the interval
 * *j ends at *z, moved on first while ts is past it. */
static inline void
s_step_add(int64_t ts, uint32_t c, double s, int64_t step, size_t *j,
           int64_t *z, uint64_t *count, double *sum)
{
    while (ts >= *z) {
        ++*j;
        *z += step;
    }
    s_sum_add(c, s, &count[*j], &sum[*j]);
}

/* The pages' part of agg_rollup_sum_steps when step is a whole number
 * sw of bucket widths w: a bucket is in the interval ending at z while
 * its offset in the page is below zo, the first offset at or past z (one
 * division a page; sw more an interval), so each bucket costs a compare
 * of its offset and its addition, with the interval's count and sum in
 * registers. Returns false when a bucket at or past end was met (done),
 * else true with *i, *j and *z where the buckets after the pages go on. */
static bool
s_sum_steps_pages(const struct s_tier *t, int64_t w, int64_t sw, int64_t end,
                  int64_t step, size_t *ip, size_t *jp, int64_t *zp,
                  uint64_t *count, double *sum)
{
    size_t i = *ip, j = *jp;
    int64_t z = *zp;
    uint64_t c = count[j];
    double sm = sum[j];
    bool more = true;

    while (i < t->np) {
        const struct s_page *pg = &t->pg[s_page_of(t, i)];
        const struct s_hot *h = pg->hot;
        size_t k = i - pg->first, kn = pg->n;
        /* ceil((z - lo) / w), exact where the difference passes int64 */
        uint64_t d = z > pg->lo ? (uint64_t)z - (uint64_t)pg->lo - 1
                                : (uint64_t)pg->lo - (uint64_t)z;
        int64_t zo = z > pg->lo ? (int64_t)(d / (uint64_t)w) + 1
                                : -(int64_t)(d / (uint64_t)w);
        while (k < kn) {
            for (; k < kn && (int64_t)h[k].off < zo; k++)
                s_sum_add(h[k].count, h[k].sum, &c, &sm);
            if (k == kn)
                break;
            int64_t ts = pg->lo + (int64_t)h[k].off * w;
            if (ts >= end) {
                more = false;
                goto out;
            }
            count[j] = c;
            sum[j] = sm;
            while (ts >= z) {
                j++;
                z += step;
                zo += sw;
            }
            c = count[j];
            sm = sum[j];
        }
        i = pg->first + kn;
    }
out:
    count[j] = c;
    sum[j] = sm;
    *ip = i;
    *jp = j;
    *zp = z;
    return more;
}

void
agg_rollup_sum_steps(const agg_rollup_t *self, int tier, int64_t a,
                     int64_t step, size_t n, uint64_t *count, double *sum)
{
    const struct s_tier *t = &self->t[tier];
    const int64_t w = s_width[tier], end = a + (int64_t)n * step;
    size_t i = s_lower(t, tier, a), j = 0;
    int64_t z = a + step;

    if (n == 0)
        return;
    if (step % w == 0 && i < t->np &&
        !s_sum_steps_pages(t, w, step / w, end, step, &i, &j, &z, count, sum))
        return;
    while (i < t->np) { /* the fixed entries of pages, in place */
        const struct s_page *pg = &t->pg[s_page_of(t, i)];
        for (size_t k = i - pg->first; k < pg->n; k++, i++) {
            int64_t ts = pg->lo + (int64_t)pg->hot[k].off * w;
            if (ts >= end)
                return;
            s_step_add(ts, pg->hot[k].count, pg->hot[k].sum, step, &j, &z,
                       count, sum);
        }
    }
    for (; i < t->np + t->n && t->b[i - t->np].start < end; i++)
        s_step_add(t->b[i - t->np].start, t->b[i - t->np].count,
                   t->b[i - t->np].sum, step, &j, &z, count, sum);
}

void
agg_rollup_merge(const agg_rollup_t *self, int tier, int64_t a, int64_t b,
                 struct agg_rsum *sum, agg_sketch_t *sk)
{
    agg_rollup_merge_from(self, tier, s_lower(&self->t[tier], tier, a), b, sum,
                          sk);
}

bool
agg_rollup_span(const agg_rollup_t *self, int64_t *first, int64_t *end)
{
    bool any = false;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        const struct s_tier *t = &self->t[i];
        if (t->np + t->n == 0)
            continue;
        int64_t lo = t->npg ? t->pg[0].lo : t->b[0].start;
        int64_t hi = t->n ? t->b[t->n - 1].start : t->pg[t->npg - 1].hi;
        if (!any || lo < *first)
            *first = lo;
        if (!any || hi + s_width[i] > *end)
            *end = hi + s_width[i];
        any = true;
    }
    return any;
}

int64_t
agg_rollup_first_ts(const agg_rollup_t *self)
{
    int64_t first = INT64_MAX;

    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        if (self->t[i].np + self->t[i].n > 0) {
            const struct s_bucket *b = s_get(&self->t[i], i, 0, NULL);
            if (b->first_ts < first)
                first = b->first_ts;
        }
    return first;
}

size_t
agg_rollup_buckets(const agg_rollup_t *self, int tier)
{
    return self->t[tier].np + self->t[tier].n;
}

size_t
agg_rollup_bytes(const agg_rollup_t *self)
{
    size_t n = sizeof *self;
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        const struct s_tier *t = &self->t[i];
        n += t->cap * sizeof(struct s_bucket) + t->skcap * sizeof(uint32_t) +
             t->pgcap * sizeof(struct s_page);
        for (size_t k = 0; k < t->npg; k++)
            n += t->pg[k].n * sizeof(struct s_hot) + t->pg[k].cold_len;
    }
    return n;
}

void
agg_rollup_pack(agg_rollup_t *self)
{
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++)
        s_repack(&self->t[i], i);
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
        if (self->t[i].dirty_lo < self->t[i].np + self->t[i].n)
            return true;
    return false;
}

/* Buckets [lo, hi) of tier i that encode writes. */
static void
s_enc_range(const struct s_tier *t, int tier, bool all, int64_t before,
            size_t *lo, size_t *hi)
{
    size_t n = t->np + t->n;
    *lo = all ? 0 : t->dirty_lo < n ? t->dirty_lo : n;
    *hi = s_lower(t, tier, before);
    if (*lo > *hi)
        *lo = *hi;
}

size_t
agg_rollup_encode(agg_rollup_t *self, bool all, int64_t before,
                  unsigned char **out)
{
    struct s_buf p = {0};
    size_t lo, hi, nb = 0;
    unsigned char f[S_BUCKET_BYTES];

    if (!all && !agg_rollup_dirty(self))
        return 0;
    agg_rollup_pack(self);
    for (int i = 0; i < AGG_ROLLUP_TIERS; i++) {
        struct s_tier *t = &self->t[i];
        const uint32_t *sk;
        s_enc_range(t, i, all, before, &lo, &hi);
        nb += hi - lo;
        le_put(f, hi - lo, 4);
        s_put(&p, f, 4);
        for (size_t k = lo; k < hi; k++) {
            const struct s_bucket *b = s_get(t, i, k, &sk);
            const double d[6] = {b->sum, b->m2, b->min, b->max, b->first,
                                 b->last};
            le_put(f, (uint64_t)b->start, 8);
            le_put(f + 8, b->count, 4);
            le_put(f + 12, (uint64_t)b->first_ts, 8);
            le_put(f + 20, (uint64_t)b->last_ts, 8);
            for (int j = 0; j < 6; j++)
                le_put_double(f + 28 + 8 * j, d[j]);
            le_put(f + 76, b->sk_len, 4);
            s_put(&p, f, S_BUCKET_BYTES);
            for (uint32_t j = 0; j < b->sk_len; j++) {
                le_put(f, sk[b->sk_off + j], 4);
                s_put(&p, f, 4);
            }
        }
        t->dirty_lo = SIZE_MAX;
    }
    if (nb == 0) {
        free(p.p);
        return 0;
    }
    *out = p.p;
    return p.n;
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
            struct s_bucket *b = s_bucket(t, i, start);
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

/* Packed pages give back every field of every minute bucket bit for bit
 * (against the same sums computed here): pages of 2-decimal values, of
 * values that are no decimals (and -0, and a huge one: its sketch key is
 * clamped, see agg_rollup.h), odd
 * nanoseconds; then after late points unpacked and repacked them. */
/* agg_rollup_sum_steps over the minutes of q (from t0 on) equals
 * agg_rollup_sum_from interval by interval, bit for bit, onto counts and
 * sums that are not all zero at first: steps of 1 to 61 minutes and of
 * 90 s, the first intervals before the data, the last ones after it. */
static void
s_test_sum_steps(const agg_rollup_t *q, int64_t t0)
{
    enum { MAXN = 8000 };
    static uint64_t c1[MAXN], c2[MAXN];
    static double s1[MAXN], s2[MAXN];
    const int64_t min = 60000000000LL;
    /* seconds: whole minutes (s_sum_steps_pages) and not (90) */
    static const int steps[] = {60, 120, 300, 420, 3600, 3660, 90};

    for (size_t k = 0; k < sizeof steps / sizeof *steps; k++) {
        int64_t step = steps[k] * (min / 60), a = t0 - t0 % min - 3 * step;
        size_t n = (size_t)(7000 * 60 / steps[k]) + 8;
        assert(n <= MAXN);
        for (size_t j = 0; j < n; j++) {
            c1[j] = c2[j] = j % 5 == 1 ? 3 : 0;
            s1[j] = s2[j] = j % 5 == 1 ? 0.1 * (double)j : 0;
        }
        agg_rollup_sum_steps(q, AGG_ROLLUP_MINUTE, a, step, n, c1, s1);
        size_t i = agg_rollup_lower(q, AGG_ROLLUP_MINUTE, a);
        for (size_t j = 0; j < n; j++)
            i = agg_rollup_sum_from(q, AGG_ROLLUP_MINUTE, i,
                                    a + (int64_t)(j + 1) * step, &c2[j],
                                    &s2[j]);
        for (size_t j = 0; j < n; j++)
            assert(c1[j] == c2[j] && s_same(s1[j], s2[j]));
        /* empty at both ends, data in between */
        assert(c1[2] == 0 && c1[n - 1] == ((n - 1) % 5 == 1 ? 3 : 0) &&
               c1[5] >= 6);
    }
}

static void
s_test_pages(int64_t t0)
{
    enum { N = 40002 };
    agg_rollup_t *q = agg_rollup_new();
    static int64_t ts[N];
    static double v[N];
    uint64_t seed = 11;

    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(seed >> 11) / 9007199254740992.0;
        size_t m = i / 6; /* every minute 6 points */
        ts[i] = t0 + (int64_t)(i / 6) * 60000000000LL +
                (int64_t)(i % 6) * 10000000000LL + (m % 7 == 3 ? 1234567 : 0);
        v[i] = m / 60 % 3 == 1 ? u * M_PI * 1e5 : round(u * 3000 - 1000) / 100;
        if (m / 60 % 3 == 2 && m % 11 == 4 && i % 6 == 2)
            v[i] = -0.0;
        if (m / 60 % 3 == 2 && m % 13 == 5 && i % 6 == 3)
            v[i] = 1e300;
    }
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < N && round < 2; i++)
            if (round == 0 ? i % 9 != 4 : i % 9 == 4) /* round 1: late */
                agg_rollup_add(q, ts[i], v[i]);
        if (round == 0)
            continue;
        if (round == 2) {
            agg_rollup_pack(q);
            assert(q->t[AGG_ROLLUP_MINUTE].npg > 50 &&
                   q->t[AGG_ROLLUP_MINUTE].n < S_PAGE + S_HOT);
        }
        for (size_t i = 0; i < N; i += 6) {
            uint32_t count = 0;
            double sum = 0, m2 = 0, mn = INFINITY, mx = -INFINITY;
            struct agg_rsum r = {0};
            int64_t a = ts[i] - ts[i] % 60000000000LL;
            bool late = false;
            for (size_t j = i; j < i + 6; j++) {
                late |= j % 9 == 4;
                s_moments_add(&count, &sum, &m2, v[j]);
                mn = v[j] < mn ? v[j] : mn;
                mx = v[j] > mx ? v[j] : mx;
            }
            agg_sketch_t *sk = agg_sketch_new(), *want = agg_sketch_new();
            for (size_t j = i; j < i + 6; j++)
                agg_sketch_add(want, v[j]);
            agg_rollup_merge(q, AGG_ROLLUP_MINUTE, a, a + 60000000000LL, &r,
                             sk);
            for (double qq = 0; qq <= 1 && mx < 1e71; qq += 0.2)
                assert(s_same(agg_sketch_quantile(sk, qq),
                                   agg_sketch_quantile(want, qq)));
            agg_sketch_destroy(&sk);
            agg_sketch_destroy(&want);
            assert(r.m.count == 6 && r.first_ts == ts[i] &&
                   r.last_ts == ts[i + 5]);
            assert(s_same(r.first, v[i]) && s_same(r.last, v[i + 5]));
            assert(s_same(r.m.min, mn) && s_same(r.m.max, mx));
            assert(late || (s_same(r.m.m2, m2) &&
                            s_same(r.m.sum, sum)));
            uint64_t c = 0;
            double s2 = 0;
            agg_rollup_sum_from(q, AGG_ROLLUP_MINUTE,
                                agg_rollup_lower(q, AGG_ROLLUP_MINUTE, a),
                                a + 60000000000LL, &c, &s2);
            assert(c == 6 && s_same(s2, r.m.sum));
            assert(agg_rollup_count_at(q, AGG_ROLLUP_MINUTE, a) == 6);
        }
        s_test_sum_steps(q, t0);
    }
    agg_rollup_destroy(&q);
}

/*
 * Rollup math: 3 days of a 2-decimal random walk every 7 s, written out
 * of order with overwrites; merged minute, hour and day buckets equal the
 * direct computation over the raw values for every range; the merged
 * sketch of 1 M values answers every quantile within 1 % of numpy's
 * exact one; encode/decode gives back the same buckets.
 */
/* agg_rollup_add_run gives the same rollups, byte for byte, as
 * agg_rollup_add point by point: runs of 1 to 200 points, some late
 * (every 9th run goes back 90 minutes), zeros and negative values. */
static void
s_test_add_run(const int64_t *ts, const double *v, size_t n)
{
    agg_rollup_t *one = agg_rollup_new(), *run = agg_rollup_new();
    int64_t *rt = xmalloc(n * sizeof *rt);
    double *rv = xmalloc(n * sizeof *rv);
    unsigned char *a, *b;
    size_t la, lb, k = 0;
    uint64_t seed = 3;

    for (size_t i = 0; i < n; i++) {
        rt[i] = ts[i];
        rv[i] = i % 17 == 0 ? 0 : i % 13 == 0 ? -v[i] : v[i];
    }
    for (size_t at = 0; at < n; at += k) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        k = 1 + (size_t)(seed >> 33) % 200;
        k = k > n - at ? n - at : k;
        if ((at / 7) % 9 == 0)
            for (size_t j = at; j < at + k; j++)
                rt[j] -= 90LL * S_NS_MIN;
        for (size_t j = at; j < at + k; j++)
            agg_rollup_add(one, rt[j], rv[j]);
        agg_rollup_add_run(run, rt + at, rv + at, k);
    }
    la = agg_rollup_encode(one, true, INT64_MAX, &a);
    lb = agg_rollup_encode(run, true, INT64_MAX, &b);
    assert(la == lb && memcmp(a, b, la) == 0);
    assert(agg_rollup_buckets(one, AGG_ROLLUP_MINUTE) > S_PAGE * 10);
    free(a);
    free(b);
    free(rt);
    free(rv);
    agg_rollup_destroy(&one);
    agg_rollup_destroy(&run);
}

/* s_exact rounds as nearbyint does: halves to even, both signs, -0,
 * around 2^52 and 2^53, and random values at every scale. */
static void
s_test_exact(void)
{
    const double two52 = 4503599627370496.0;
    const double x[] = {0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 0.49999999999999994,
                        -0.3, -0.0, 0.0, 1e-300, two52 - 0.5, two52 - 1.5,
                        two52, two52 + 1, 2 * two52 - 1, 123456.785, -99.995};
    uint64_t seed = 11;

    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) {
        int64_t k;
        bool ok = s_exact(x[i], 0, &k);
        assert(k == (int64_t)nearbyint(x[i]));
        assert(ok == s_same((double)(int64_t)nearbyint(x[i]), x[i]));
    }
    for (int i = 0; i < 100000; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double v = ldexp((double)(seed >> 11), (int)(seed % 90) - 80);
        int d = (int)((seed >> 7) % (S_DEC_MAX + 1));
        int64_t k;
        v = seed & 1 ? -v : v;
        if (fabs(v * s_p10[d]) >= S_SCALED_MAX)
            continue;
        (void)s_exact(v, d, &k);
        assert(k == (int64_t)nearbyint(v * s_p10[d]));
    }
}

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

    s_test_exact();
    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        x += ((double)(seed >> 40) / 16777216.0 - 0.5);
        ts[i] = t0 + (int64_t)i * 7000000000LL;
        v[i] = round(x * 100) / 100;
    }
    s_test_add_run(ts, v, N);
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
    s_test_pages(t0);
    /* Sketch counts against a sketch of the raw values, per tier: runs
     * of one value past a 16-bit count (a second entry of the key),
     * interleaved keys (s_sk_add's hint), zeros and negatives. */
    {
        agg_rollup_t *q = agg_rollup_new();
        agg_sketch_t *raw = agg_sketch_new();
        static const double vals[] = {2.5, 2.5, 2.5, 2.51, 2.5, 3.7, 0.0,
                                      -1.25, 2.5, 2.5};
        for (size_t i = 0; i < 80000; i++) {
            double y = i < 70000 ? vals[i % 10] : vals[(i * 7) % 10] * 1.5;
            agg_rollup_add(q, t0 + (int64_t)i * 1000000000LL, y);
            agg_sketch_add(raw, y);
        }
        json_t *want_j = agg_sketch_to_json(raw);
        for (int tier = 0; tier < AGG_ROLLUP_TIERS; tier++) {
            agg_sketch_t *sk = agg_sketch_new();
            memset(&got, 0, sizeof got);
            agg_rollup_merge(q, tier, INT64_MIN, INT64_MAX, &got, sk);
            json_t *got_j = agg_sketch_to_json(sk);
            assert(got.m.count == 80000 && agg_sketch_count(sk) == 80000);
            assert(json_equal(got_j, want_j));
            json_decref(got_j);
            agg_sketch_destroy(&sk);
        }
        json_decref(want_j);
        agg_sketch_destroy(&raw);
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
