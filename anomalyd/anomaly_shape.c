/*
 * anomaly_shape: nearest-neighbour novelty of the last readings' shape
 * (see anomaly_shape.h).
 *
 * The ring holds floats, each reading's offset from the shift: the
 * shapes are centred, so the offset changes nothing, and it keeps the
 * digits of large values. The shift starts at the first reading and
 * moves to the ring's mean each time the ring wraps, so a series far
 * from where it started keeps them too. 400 floats (history 384, window
 * 8) are 1,600 bytes per series.
 */
#include "anomalyd/anomaly_shape.h"
#include "anomalyd/anomaly_zscore.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct anomaly_shape {
    uint32_t window;  /* readings in a shape */
    uint32_t history; /* windows compared with */
    uint32_t size;    /* ring capacity: history + 2 window */
    uint32_t head;    /* next slot */
    uint64_t count;   /* readings pushed */
    double shift;     /* the ring's mean at the last wrap, or the first value */
    float ring[];     /* the last size readings, minus shift */
};

anomaly_shape_t *
anomaly_shape_new(size_t window, size_t history)
{
    if (window < 2)
        window = 2;
    if (window > ANOMALY_SHAPE_WINDOW_MAX)
        window = ANOMALY_SHAPE_WINDOW_MAX;
    if (history < 1)
        history = 1;
    if (history > ANOMALY_SHAPE_HISTORY_MAX)
        history = ANOMALY_SHAPE_HISTORY_MAX;
    size_t size = history + 2 * window;
    anomaly_shape_t *self = xcalloc(1, sizeof *self + size * sizeof(float));
    self->window = (uint32_t)window;
    self->history = (uint32_t)history;
    self->size = (uint32_t)size;
    self->shift = NAN;
    return self;
}

void
anomaly_shape_destroy(anomaly_shape_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void
anomaly_shape_push(anomaly_shape_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return;
    if (isnan(self->shift))
        self->shift = value;
    self->ring[self->head] = (float)(value - self->shift);
    self->head = self->head + 1 == self->size ? 0 : self->head + 1;
    self->count++;
    if (self->head == 0) /* wrapped: every slot holds a reading */
        anomaly_ring_recentre(self->ring, self->size, &self->shift);
}

/* The reading `back` readings before the last one (0 = the last). */
static double
s_at(const anomaly_shape_t *self, uint32_t back)
{
    uint32_t i = self->head + self->size - 1 - back;
    return self->ring[i >= self->size ? i - self->size : i];
}

double
anomaly_shape_novelty(const anomaly_shape_t *self)
{
    assert(self);
    uint32_t w = self->window;
    /* The current window and two history windows before it. */
    if (self->count < 2 * (uint64_t)w + 1)
        return NAN;
    double cur[ANOMALY_SHAPE_WINDOW_MAX], mean = 0, norm = 0;
    for (uint32_t k = 0; k < w; k++)
        mean += cur[k] = s_at(self, w - 1 - k);
    mean /= w;
    for (uint32_t k = 0; k < w; k++) {
        cur[k] -= mean;
        norm += cur[k] * cur[k];
    }
    if (norm <= 0)
        return 0;
    /* History windows end w or more readings before the last one; at
     * most history of them, as many as the readings allow. */
    uint64_t avail = self->count - 2 * (uint64_t)w + 1;
    uint32_t nh = avail < self->history ? (uint32_t)avail : self->history;
    double best = INFINITY;
    for (uint32_t h = 0; h < nh; h++) {
        /* Window h ends w + h readings before the last one. */
        double x[ANOMALY_SHAPE_WINDOW_MAX], m = 0;
        for (uint32_t k = 0; k < w; k++)
            m += x[k] = s_at(self, w + h + w - 1 - k);
        m /= w;
        double d = 0;
        for (uint32_t k = 0; k < w && d < best; k++) {
            double e = x[k] - m - cur[k];
            d += e * e;
        }
        if (d < best)
            best = d;
    }
    return sqrt(best / norm);
}

/* Reorder a[0..n-1] so that a[k] is the k-th smallest, nothing before
 * it larger and nothing after it smaller (Hoare's selection, pivot the
 * median of the first, middle and last). */
static void
s_select(float *a, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = x < y ? (y < z ? y : (x < z ? z : x))
                            : (x < z ? x : (y < z ? z : y));
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        /* a[lo..j] <= pivot <= a[i..hi], and a[j+1..i-1] == pivot. */
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            return;
    }
    if (hi > lo && a[hi] < a[lo]) {
        float t = a[lo];
        a[lo] = a[hi];
        a[hi] = t;
    }
}

double
anomaly_shape_median(const anomaly_shape_t *self, size_t n)
{
    assert(self);
    if (n == 0 || n > ANOMALY_SHAPE_MEDIAN_MAX || n > self->size ||
        self->count < n)
        return NAN;
    /* The last n readings, in at most two stretches of the ring (their
     * order does not matter). */
    float a[ANOMALY_SHAPE_MEDIAN_MAX];
    uint32_t m = (uint32_t)n, head = self->head;
    if (head >= m)
        memcpy(a, self->ring + head - m, m * sizeof(float));
    else {
        memcpy(a, self->ring, head * sizeof(float));
        memcpy(a + head, self->ring + self->size - (m - head),
               (m - head) * sizeof(float));
    }
    int h = (int)(n / 2);
    s_select(a, (int)n, h);
    double med = a[h];
    if (n % 2 == 0) {
        /* The lower middle one is the largest before a[h]. */
        float below = a[0];
        for (int k = 1; k < h; k++)
            below = a[k] > below ? a[k] : below;
        med = (med + below) / 2;
    }
    return self->shift + med;
}

bool
anomaly_shape_median_within(const anomaly_shape_t *self, size_t n, double lo,
                            double hi)
{
    assert(self);
    if (n == 0 || n > ANOMALY_SHAPE_MEDIAN_MAX || n > self->size ||
        self->count < n)
        return false;
    /* The bounds as offsets, rounded inwards to floats: a reading
     * above lf is above lo, one below hf below hi. */
    double l = lo - self->shift, h = hi - self->shift;
    float lf = (float)l, hf = (float)h;
    if ((double)lf < l)
        lf = nextafterf(lf, INFINITY);
    if ((double)hf > h)
        hf = nextafterf(hf, -INFINITY);
    /* The last n readings, copied out of at most two stretches of the
     * ring and padded to whole vectors of 4 with values that count on
     * neither side; then counted 4 at a time (GCC's vector extension:
     * SSE on x86-64, plain code elsewhere). */
    typedef float v4f __attribute__((vector_size(16)));
    typedef int v4i __attribute__((vector_size(16)));
    uint32_t m = (uint32_t)n, head = self->head, nv = (m + 3) / 4;
    v4f a[ANOMALY_SHAPE_MEDIAN_MAX / 4];
    float *f = (float *)a;
    if (head >= m)
        memcpy(f, self->ring + head - m, m * sizeof(float));
    else {
        memcpy(f, self->ring, head * sizeof(float));
        memcpy(f + head, self->ring + self->size - (m - head),
               (m - head) * sizeof(float));
    }
    for (uint32_t k = m; k < 4 * nv; k++)
        f[k] = NAN; /* compares false both ways */
    v4f vl = {lf, lf, lf, lf}, vh = {hf, hf, hf, hf};
    v4i va = {0, 0, 0, 0}, vb = {0, 0, 0, 0};
    for (uint32_t k = 0; k < nv; k++) {
        va -= (v4i)(a[k] > vl); /* a true lane is -1 */
        vb -= (v4i)(a[k] < vh);
    }
    int above = va[0] + va[1] + va[2] + va[3];
    int below = vb[0] + vb[1] + vb[2] + vb[3];
    return above > (int)(m / 2) && below > (int)(m / 2);
}

void
anomaly_shape_prefetch(const anomaly_shape_t *self)
{
    __builtin_prefetch(&self->ring[self->head], 1);
    /* The readings before it, which the ensemble's level member counts
     * or selects from on every reading (24: up to two more lines). */
    uint32_t back = self->size < 24 ? self->size : 24;
    for (uint32_t k = 12; k <= back; k += 12) {
        uint32_t i = self->head >= k ? self->head - k
                                     : self->head + self->size - k;
        __builtin_prefetch(&self->ring[i], 0);
    }
}

size_t
anomaly_shape_state_size(const anomaly_shape_t *self)
{
    return sizeof *self + self->size * sizeof(float);
}

void
anomaly_shape_test(bool verbose)
{
    /* A wave with a spike of 5: the first spike is novel (about 1), the
     * same spike one period later is not, a spike of 2 after it is (its
     * nearest shape is still the plain wave or the taller spike), and a
     * flat window is 0. */
    anomaly_shape_t *s = anomaly_shape_new(8, 384);
    assert(isnan(anomaly_shape_novelty(s)));
    double first = 0, again = 0, small = 0, plain = 0;
    for (int i = 0; i < 1200; i++) {
        double v = sin(i * 2 * M_PI / 50);
        if (i == 300 || i == 550)
            v += 5;
        if (i == 900)
            v += 2;
        anomaly_shape_push(s, v);
        double n = anomaly_shape_novelty(s);
        /* NAN before two history windows; unbounded while the history
         * is short (a peak's window against troughs), below 2 once it
         * holds a whole period. */
        assert(i < 16 ? isnan(n) : n >= 0);
        assert(i < 100 || n < 2);
        if (i == 300)
            first = n;
        else if (i == 550)
            again = n;
        else if (i == 900)
            small = n;
        else if (i == 1100)
            plain = n;
    }
    if (verbose)
        printf("   spike %.3f, again %.3f, smaller %.3f, wave %.3f, %zu bytes\n",
               first, again, small, plain, anomaly_shape_state_size(s));
    assert(first > 0.8 && small > 0.6);
    assert(again < 0.05 && plain < 0.05);
    /* Non-finite readings are not learnt. */
    anomaly_shape_push(s, NAN);
    TEST_NEAR(anomaly_shape_novelty(s), plain, 0.5);
    anomaly_shape_destroy(&s);
    anomaly_shape_destroy(&s);
    assert(s == NULL);

    s = anomaly_shape_new(8, 384);
    for (int i = 0; i < 100; i++)
        anomaly_shape_push(s, 42);
    assert(anomaly_shape_novelty(s) == 0);
    anomaly_shape_destroy(&s);

    /* Far from the first value (a 0 at power-up, then a wave of 0.05
     * around 1.6e7): offsets of 1.6e7 would round the wave and a spike
     * of 0.5 to nothing (a float's step there is 1). The shift moves at
     * the second wrap (800), so later the same test as above holds. */
    s = anomaly_shape_new(8, 384);
    anomaly_shape_push(s, 0);
    for (int i = 1; i < 1800; i++) {
        double v = 1.6e7 + 0.05 * sin(i * 2 * M_PI / 50);
        if (i == 1500 || i == 1750)
            v += 0.5;
        anomaly_shape_push(s, v);
        if (i == 1500)
            first = anomaly_shape_novelty(s);
        else if (i == 1750)
            again = anomaly_shape_novelty(s);
    }
    if (verbose)
        printf("   far from the first value: spike %.3f, again %.3f\n", first,
               again);
    assert(first > 0.8 && again < 0.05);
    /* The median of the last n: the shift is added back. */
    TEST_NEAR(anomaly_shape_median(s, 1), 1.6e7 + 0.05 * sin(1799 * 2 * M_PI / 50), 0.01);
    anomaly_shape_destroy(&s);

    /* The median, against a sort, on values with ties, odd and even n,
     * and its limits. */
    s = anomaly_shape_new(2, 60); /* ring of 64 */
    assert(isnan(anomaly_shape_median(s, 1)));
    double all[200];
    for (int i = 0; i < 200; i++) {
        all[i] = (double)((i * 37) % 23) - (i % 5 == 0 ? 3 : 0);
        anomaly_shape_push(s, all[i]);
        for (size_t n = 1; n <= 64; n++) {
            double m = anomaly_shape_median(s, n);
            if ((size_t)i + 1 < n) {
                assert(isnan(m));
                continue;
            }
            double w[64];
            for (size_t k = 0; k < n; k++)
                w[k] = all[i - (int)k];
            for (size_t a = 1; a < n; a++) /* insertion sort */
                for (size_t b = a; b > 0 && w[b - 1] > w[b]; b--) {
                    double t = w[b];
                    w[b] = w[b - 1];
                    w[b - 1] = t;
                }
            double want = n % 2 ? w[n / 2] : (w[n / 2 - 1] + w[n / 2]) / 2;
            TEST_NEAR(m, want, 1e-9);
            /* Counting never claims what the median contradicts, and
             * decides when the bounds are far. */
            for (double lo = -6; lo <= 20; lo += 1.5)
                for (double hi = lo + 0.5; hi <= 26; hi += 2.5)
                    if (anomaly_shape_median_within(s, n, lo, hi))
                        assert(m > lo && m < hi);
            assert(anomaly_shape_median_within(s, n, -1000, 1000));
        }
    }
    assert(isnan(anomaly_shape_median(s, 0)));
    assert(isnan(anomaly_shape_median(s, 65)));
    assert(!anomaly_shape_median_within(s, 0, -1000, 1000));
    assert(!anomaly_shape_median_within(s, 65, -1000, 1000));
    anomaly_shape_destroy(&s);
    TEST_OK("anomaly_shape");
}
