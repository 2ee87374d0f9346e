/*
 * agg_stats: moments, exact percentiles, aggregation names.
 */
#include "aggd/agg_stats.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void
agg_stats_add(struct agg_moments *m, double v)
{
    double d;

    if (m->count == 0 || v < m->min)
        m->min = v;
    if (m->count == 0 || v > m->max)
        m->max = v;
    m->count++;
    m->sum += v;
    d = v - m->mean;
    m->mean += d / (double)m->count;
    m->m2 += d * (v - m->mean);
}

void
agg_stats_merge(struct agg_moments *a, const struct agg_moments *b)
{
    double n, d;

    if (b->count == 0)
        return;
    if (a->count == 0) {
        *a = *b;
        return;
    }
    n = (double)(a->count + b->count);
    d = b->mean - a->mean;
    a->m2 += b->m2 + d * d * (double)a->count * (double)b->count / n;
    a->mean += d * (double)b->count / n;
    a->sum += b->sum;
    a->count += b->count;
    if (b->min < a->min)
        a->min = b->min;
    if (b->max > a->max)
        a->max = b->max;
}

double
agg_stats_std(const struct agg_moments *m)
{
    if (m->count < 2)
        return NAN;
    return sqrt(m->m2 / (double)(m->count - 1));
}

/* numpy's _lerp, term for term, so answers match it to the bit. */
static double
s_lerp(double a, double b, double frac)
{
    double d = b - a;
    return frac >= 0.5 ? b - d * (1 - frac) : a + d * frac;
}

double
agg_stats_percentile(const double *s, size_t n, double p)
{
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);

    if (lo + 1 >= n)
        return s[n - 1];
    return s_lerp(s[lo], s[lo + 1], rank - (double)lo);
}

static int
s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A double's bits mapped to an unsigned key with the same order (NaN
 * never reaches here: ingest refuses it). */
static uint64_t
s_key(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u >> 63 ? ~u : u | (1ULL << 63);
}

static double
s_unkey(uint64_t k)
{
    uint64_t u = k >> 63 ? k & ~(1ULL << 63) : ~k;
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

#define S_RADIX_MIN 4096 /* below this, qsort is as fast */
#define S_RADIX_BITS 16

/* LSD radix sort of the order-preserving keys, 4 passes of 16 bits (a
 * pass is skipped when every key shares its digit): O(n), about 10x
 * qsort at a million values. */
void
agg_stats_sort(double *v, size_t n)
{
    uint64_t *a, *b, *t;
    size_t *count;

    if (n < S_RADIX_MIN) {
        qsort(v, n, sizeof *v, s_cmp);
        return;
    }
    a = xmalloc(n * sizeof *a);
    b = xmalloc(n * sizeof *b);
    count = xmalloc(((size_t)1 << S_RADIX_BITS) * sizeof *count);
    for (size_t i = 0; i < n; i++)
        a[i] = s_key(v[i]);
    for (int shift = 0; shift < 64; shift += S_RADIX_BITS) {
        size_t sum = 0;
        memset(count, 0, ((size_t)1 << S_RADIX_BITS) * sizeof *count);
        for (size_t i = 0; i < n; i++)
            count[(a[i] >> shift) & 0xffff]++;
        if (count[(a[0] >> shift) & 0xffff] == n)
            continue; /* one digit for all: nothing to move */
        for (size_t d = 0; d < ((size_t)1 << S_RADIX_BITS); d++) {
            size_t c = count[d];
            count[d] = sum;
            sum += c;
        }
        for (size_t i = 0; i < n; i++)
            b[count[(a[i] >> shift) & 0xffff]++] = a[i];
        t = a;
        a = b;
        b = t;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = s_unkey(a[i]);
    free(a);
    free(b);
    free(count);
}

static int
s_size_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int
s_key_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

#define S_SELECT_SORT 2048 /* candidates few enough to just sort */

/* The keys of ranks r[0..nr) (ascending, < n) among the n keys a (all
 * equal above bit shift + 16) into out. MSD radix selection: one
 * histogram of the next 16 bits says which digit holds each rank; only
 * the keys of those digits are gathered and looked at further. a may be
 * reordered. */
static void
s_select(uint64_t *a, size_t n, int shift, const size_t *r, size_t nr,
         uint64_t *out)
{
    const size_t nd = (size_t)1 << S_RADIX_BITS;
    size_t *start, i, j;

    if (n <= S_SELECT_SORT || shift < 0) {
        qsort(a, n, sizeof *a, s_key_cmp);
        for (i = 0; i < nr; i++)
            out[i] = a[r[i]];
        return;
    }
    start = xcalloc(nd + 1, sizeof *start);
    for (i = 0; i < n; i++)
        start[((a[i] >> shift) & 0xffff) + 1]++;
    for (size_t d = 0; d < nd; d++)
        start[d + 1] += start[d];
    /* Ranks sharing a digit are selected together, from that digit's keys. */
    for (i = 0; i < nr; i = j) {
        size_t d = 0, lo = 0, hi = nd;
        while (lo < hi) { /* the digit whose range holds rank r[i] */
            size_t mid = (lo + hi) / 2;
            if (start[mid + 1] <= r[i])
                lo = mid + 1;
            else
                hi = mid;
        }
        d = lo;
        for (j = i; j < nr && r[j] < start[d + 1]; j++)
            ;
        assert(j > i); /* r[i] < n = start[nd]: its digit holds it */
        size_t m = start[d + 1] - start[d], k = 0;
        uint64_t *b = xmalloc(m * sizeof *b);
        size_t *rr = xmalloc((j - i) * sizeof *rr);
        for (size_t x = 0; x < n && k < m; x++)
            if (((a[x] >> shift) & 0xffff) == d)
                b[k++] = a[x];
        for (size_t x = i; x < j; x++)
            rr[x - i] = r[x] - start[d];
        s_select(b, m, shift - S_RADIX_BITS, rr, j - i, out + i);
        free(rr);
        free(b);
    }
    free(start);
}

void
agg_stats_pct_ranks(size_t n, double p, size_t *lo, size_t *hi)
{
    *lo = (size_t)floor(p / 100.0 * (double)(n - 1));
    *hi = *lo + 1 < n ? *lo + 1 : *lo;
}

double
agg_stats_pct_between(size_t n, double p, double a, double b)
{
    double rank = p / 100.0 * (double)(n - 1);
    size_t lo = (size_t)floor(rank);
    return lo + 1 >= n ? a : s_lerp(a, b, rank - (double)lo);
}

#define S_QSELECT_MAX 65536 /* below this, quickselect: the radix one's
                                histograms cost more than the keys */

/* Put the k-th smallest of a[lo..hi) at a[k], smaller ones before it and
 * larger ones after (quickselect, median-of-three pivots). */
static void
s_qselect(uint64_t *a, size_t lo, size_t hi, size_t k)
{
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2, i = lo, j = hi - 1;
        uint64_t x = a[lo], y = a[mid], z = a[hi - 1], p, t;
        p = x < y ? (y < z ? y : x < z ? z : x) : (x < z ? x : y < z ? z : y);
        while (i <= j) { /* Hoare partition around the value p */
            while (a[i] < p)
                i++;
            while (a[j] > p)
                j--;
            if (i <= j) {
                t = a[i];
                a[i++] = a[j];
                a[j] = t;
                if (j-- == lo)
                    break;
            }
        }
        /* a[lo..j] <= p, a[i..hi) >= p, and between them p itself. */
        if (k <= j && j + 1 > lo)
            hi = j + 1;
        else if (k >= i)
            lo = i;
        else
            return;
    }
}

void
agg_stats_ranks(const double *v, size_t n, const size_t *r, size_t nr,
                double *out)
{
    uint64_t *a, *got;

    if (n == 0 || nr == 0)
        return;
    a = xmalloc(n * sizeof *a);
    got = xmalloc(nr * sizeof *got);
    for (size_t i = 0; i < n; i++)
        a[i] = s_key(v[i]);
    if (n < S_QSELECT_MAX) {
        /* Ascending ranks: each one's selection leaves the larger keys
         * after it, where the next is looked for. */
        for (size_t i = 0, lo = 0; i < nr; lo = r[i++]) {
            s_qselect(a, lo, n, r[i]);
            got[i] = a[r[i]];
        }
    } else {
        s_select(a, n, 64 - S_RADIX_BITS, r, nr, got);
    }
    for (size_t i = 0; i < nr; i++)
        out[i] = s_unkey(got[i]);
    free(a);
    free(got);
}

void
agg_stats_percentiles(const double *v, size_t n, const double *p, size_t np,
                      double *out)
{
    size_t *r, *order, nr = 0;
    double *got;

    if (n == 0 || np == 0)
        return;
    r = xmalloc(2 * np * sizeof *r);
    order = xmalloc(2 * np * sizeof *order);
    got = xmalloc(2 * np * sizeof *got);
    /* The two ranks each percentile interpolates between, ascending. */
    for (size_t i = 0; i < np; i++, nr += 2)
        agg_stats_pct_ranks(n, p[i], &r[nr], &r[nr + 1]);
    memcpy(order, r, nr * sizeof *r);
    qsort(order, nr, sizeof *order, s_size_cmp);
    agg_stats_ranks(v, n, order, nr, got);
    for (size_t i = 0; i < np; i++) {
        double s[2];
        for (int h = 0; h < 2; h++) {
            size_t k = 0;
            while (order[k] != r[2 * i + (size_t)h])
                k++;
            s[h] = got[k];
        }
        out[i] = agg_stats_pct_between(n, p[i], s[0], s[1]);
    }
    free(r);
    free(order);
    free(got);
}

int
agg_stats_fn(const char *name, double *pct)
{
    static const char *names[] = {"mean", "min", "max", "sum",
                                  "count", "std", "first", "last"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    if (strcmp(name, "avg") == 0)
        return AGG_FN_MEAN;
    if (strcmp(name, "median") == 0) {
        *pct = 50;
        return AGG_FN_PCT;
    }
    if (name[0] == 'p' && strutil_tod(name + 1, pct) == 0 && *pct >= 0 &&
        *pct <= 100)
        return AGG_FN_PCT;
    return -1;
}

void
agg_stats_test(bool verbose)
{
    /* The radix sort orders like qsort, negatives, zeros and large
     * magnitudes included. */
    {
        enum { N = 100000 };
        double *x = xmalloc(N * sizeof *x), *y = xmalloc(N * sizeof *y);
        uint64_t seed = 3;
        for (size_t i = 0; i < N; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            double u = (double)(seed >> 11) / 9007199254740992.0 - 0.5;
            x[i] = y[i] = i % 7 == 0 ? 0.0 : i % 11 == 0 ? -0.0
                          : i % 13 == 0 ? u * 1e300 : round(u * 1e4) / 100;
        }
        agg_stats_sort(x, N);
        qsort(y, N, sizeof *y, s_cmp);
        for (size_t i = 0; i < N; i++)
            assert(x[i] == y[i]);
        free(x);
        free(y);
    }
    /* Selection gives the percentiles sorting gives, to the bit, over
     * sizes on both sides of the sort cut-off, duplicates, negatives,
     * zeros of both signs and huge magnitudes. */
    {
        static const size_t sizes[] = {1, 2, 3, 100, 2049, 70001, 1000003};
        static const double ps[] = {0, 0.1, 1, 25, 50, 50, 90, 95, 99,
                                    99.9, 99.99, 100, 33.333};
        enum { NP = sizeof ps / sizeof *ps };
        uint64_t seed = 11;
        for (size_t t = 0; t < sizeof sizes / sizeof *sizes; t++) {
            size_t n = sizes[t];
            double *x = xmalloc(n * sizeof *x), *y = xmalloc(n * sizeof *y);
            double got[NP];
            for (size_t i = 0; i < n; i++) {
                seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
                double u = (double)(seed >> 11) / 9007199254740992.0 - 0.3;
                x[i] = y[i] = i % 17 == 0 ? 0.0 : i % 19 == 0 ? -0.0
                              : i % 23 == 0 ? u * 1e300
                              : t % 2 ? round(u * 1e4) / 100 : u * 1000;
            }
            agg_stats_percentiles(x, n, ps, NP, got);
            for (size_t i = 0; i < n; i++)
                assert(x[i] == y[i] || (x[i] == 0 && y[i] == 0)); /* kept */
            agg_stats_sort(y, n);
            for (size_t i = 0; i < NP; i++) {
                double want = agg_stats_percentile(y, n, ps[i]);
                /* Bit for bit, but for the sign of a zero: qsort (the
                 * sort below 4,096 values) leaves -0 and 0 in any order. */
                assert(got[i] == want &&
                       (want == 0 || memcmp(&got[i], &want, sizeof want) == 0));
            }
            free(x);
            free(y);
        }
    }
    struct agg_moments m = {0}, a = {0}, b = {0};
    double v[] = {1, 2, 3, 4, 10};
    double pct;

    agg_stats_add(&m, 23.5);
    agg_stats_add(&m, 23.7);
    TEST_NEAR(m.mean, 23.6, 1e-12);
    TEST_NEAR(agg_stats_std(&m), 0.14142135623730964, 1e-12);
    assert(m.min == 23.5 && m.max == 23.7 && m.count == 2);
    memset(&m, 0, sizeof m);
    agg_stats_add(&m, 1);
    assert(isnan(agg_stats_std(&m)));
    /* numpy.percentile([1,2,3,4,10], q): 50 -> 3, 90 -> 7.6, 99 -> 9.76 */
    TEST_NEAR(agg_stats_percentile(v, 5, 50), 3, 1e-12);
    TEST_NEAR(agg_stats_percentile(v, 5, 90), 7.6, 1e-12);
    TEST_NEAR(agg_stats_percentile(v, 5, 99), 9.76, 1e-12);
    TEST_NEAR(agg_stats_percentile(v, 5, 0), 1, 0);
    TEST_NEAR(agg_stats_percentile(v, 5, 100), 10, 0);
    TEST_NEAR(agg_stats_percentile(v, 1, 99), 1, 0);
    /* Merging halves equals the whole. */
    memset(&m, 0, sizeof m);
    for (int i = 0; i < 100; i++) {
        double x = sin(i) * 10 + i;
        agg_stats_add(&m, x);
        agg_stats_add(i < 37 ? &a : &b, x);
    }
    agg_stats_merge(&a, &b);
    assert(a.count == m.count);
    TEST_NEAR(a.mean, m.mean, 1e-9);
    TEST_NEAR(agg_stats_std(&a), agg_stats_std(&m), 1e-9);
    assert(a.min == m.min && a.max == m.max);
    assert(agg_stats_fn("p95", &pct) == AGG_FN_PCT && pct == 95);
    assert(agg_stats_fn("p99.9", &pct) == AGG_FN_PCT && pct == 99.9);
    assert(agg_stats_fn("mean", &pct) == AGG_FN_MEAN);
    assert(agg_stats_fn("p101", &pct) == -1);
    assert(agg_stats_fn("bogus", &pct) == -1);
    (void)verbose;
    TEST_OK("agg_stats");
}
