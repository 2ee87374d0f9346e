/*
 * anomaly_mad: median / MAD / IQR detector (see anomaly_mad.h).
 *
 * The sorted copy is kept by insertion and deletion (memmove), O(window)
 * per reading, which for 256 doubles is cheaper than any tree. The MAD
 * needs the absolute deviations sorted, which would be O(window log
 * window); it is found instead by a two-pointer walk outwards from the
 * median over the sorted window, O(window).
 *
 * Both arrays hold floats, each value's offset from the shift: half the
 * memory of doubles (512 bytes at window 64). The shift starts at the
 * first value and moves to the median each time the ring wraps, so the
 * offsets keep the digits of the window's spread however far the series
 * went from its first value.
 */
#include "anomalyd/anomaly_mad.h"
#include "anomalyd/anomaly_case.h"
#include "anomalyd/anomaly_zscore.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* MAD and IQR to sigma for Gaussian data. */
#define S_MAD_SIGMA 1.4826
#define S_IQR_SIGMA 1.349
/* Robust z is capped like the z-score's. */
#define S_ZMAX 1e6

struct anomaly_mad {
    size_t window;  /* capacity */
    size_t count;   /* readings held */
    size_t head;    /* next slot of ring */
    double shift;   /* the median at the last wrap (first: first value) */
    float *ring;    /* time order, minus shift */
    float *sorted;  /* the same values, ascending */
};

anomaly_mad_t *
anomaly_mad_new(size_t window)
{
    anomaly_mad_t *self = xcalloc(1, sizeof *self);
    if (window < ANOMALY_MAD_MIN_COUNT)
        window = ANOMALY_MAD_MIN_COUNT;
    if (window > ANOMALY_MAD_WINDOW_MAX)
        window = ANOMALY_MAD_WINDOW_MAX;
    self->window = window;
    self->shift = NAN;
    self->ring = xcalloc(window, sizeof *self->ring);
    self->sorted = xcalloc(window, sizeof *self->sorted);
    return self;
}

void
anomaly_mad_destroy(anomaly_mad_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_mad_t *self = *self_p;
    xfree(&self->ring);
    xfree(&self->sorted);
    free(self);
    *self_p = NULL;
}

/* Index of the first element >= v. */
static size_t
s_lower(const float *a, size_t n, double v)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (a[mid] < v)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Linear-interpolated quantile of the sorted array. */
static double
s_quantile(const float *a, size_t n, double q)
{
    double pos = q * (double)(n - 1);
    size_t i = (size_t)pos;
    if (i + 1 >= n)
        return a[n - 1];
    return a[i] + (pos - (double)i) * ((double)a[i + 1] - a[i]);
}

/* Median of |a[i] - med| by walking outwards from the median. */
static double
s_mad(const float *a, size_t n, double med)
{
    size_t k = n / 2; /* we need the (k)th and for even n the (k-1)th */
    size_t hi = s_lower(a, n, med), lo = hi; /* [lo, hi) consumed */
    double prev = 0, cur = 0;
    for (size_t taken = 0; taken <= k; taken++) {
        double dl = lo > 0 ? med - a[lo - 1] : INFINITY;
        double dh = hi < n ? a[hi] - med : INFINITY;
        prev = cur;
        if (dl <= dh) {
            cur = dl;
            lo--;
        } else {
            cur = dh;
            hi++;
        }
    }
    return n % 2 ? cur : (prev + cur) / 2;
}

/* At each wrap, when the median is far from the shift (over
 * ANOMALY_RECENTRE times the interquartile range): the shift moved to
 * the median, both arrays' offsets from there (one rounding, the same
 * for equal values, so the sorted array stays sorted and holds the
 * ring's values). */
static void
s_recentre(anomaly_mad_t *self)
{
    size_t n = self->count;
    double c = s_quantile(self->sorted, n, 0.5);
    double iqr = s_quantile(self->sorted, n, 0.75) -
                 s_quantile(self->sorted, n, 0.25);

    if (!(fabs(c) > ANOMALY_RECENTRE * iqr))
        return;
    self->shift += c;
    for (size_t i = 0; i < self->count; i++) {
        self->ring[i] = (float)(self->ring[i] - c);
        self->sorted[i] = (float)(self->sorted[i] - c);
    }
}

double
anomaly_mad_update(anomaly_mad_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    if (isnan(self->shift))
        self->shift = value;
    double z = NAN;
    size_t n = self->count;
    if (n >= ANOMALY_MAD_MIN_COUNT) {
        double med = s_quantile(self->sorted, n, 0.5);
        double spread = fmax(S_MAD_SIGMA * s_mad(self->sorted, n, med),
                             (s_quantile(self->sorted, n, 0.75) -
                              s_quantile(self->sorted, n, 0.25)) /
                                 S_IQR_SIGMA);
        double diff = value - self->shift - med;
        double floor = 1e-12 * fmax(1.0, fabs(med + self->shift));
        if (fabs(diff) <= floor)
            z = 0;
        else if (spread <= floor)
            z = diff > 0 ? S_ZMAX : -S_ZMAX;
        else
            z = fmax(-S_ZMAX, fmin(S_ZMAX, diff / spread));
    }
    if (n == self->window) {
        float old = self->ring[self->head];
        size_t i = s_lower(self->sorted, n, old);
        memmove(self->sorted + i, self->sorted + i + 1,
                (n - i - 1) * sizeof *self->sorted);
        n--;
    }
    float f = (float)(value - self->shift);
    size_t i = s_lower(self->sorted, n, f);
    memmove(self->sorted + i + 1, self->sorted + i,
            (n - i) * sizeof *self->sorted);
    self->sorted[i] = f;
    self->count = n + 1;
    self->ring[self->head] = f;
    self->head = (self->head + 1) % self->window;
    if (self->head == 0)
        s_recentre(self);
    return z;
}

size_t
anomaly_mad_state_size(const anomaly_mad_t *self)
{
    return sizeof *self + 2 * self->window * sizeof(float);
}

void
anomaly_mad_test(bool verbose)
{
    /* The MAD walk against a direct computation. */
    float a[] = {1, 2, 3, 4, 100, 101, 102};
    TEST_NEAR(s_mad(a, 7, 4), 3, 1e-12); /* |dev| = 3 2 1 0 96 97 98 */
    float b[] = {1, 2, 4, 7};
    TEST_NEAR(s_mad(b, 4, 3), 1.5, 1e-12); /* |dev| = 2 1 1 4 -> 1.5 */

    /* Outliers in the window do not mask the next one (the z-score's
     * weakness): 8 huge spikes in 64 readings. */
    anomaly_mad_t *m = anomaly_mad_new(64);
    double z = 0;
    for (int i = 0; i < 64; i++)
        anomaly_mad_update(m, i % 8 == 0 ? 1000 : 10 + (i % 3) * 0.1);
    z = anomaly_mad_update(m, 20);
    if (verbose)
        printf("   robust z of 20 among spikes: %g\n", z);
    assert(z > 50);
    assert(isnan(anomaly_mad_update(m, NAN)));
    assert(anomaly_mad_state_size(m) < 16384);
    anomaly_mad_destroy(&m);
    anomaly_mad_destroy(&m);

    /* Golden cases: spike and step show; flat line stays at 0. */
    const char *cases[] = {"spike", "step", "flat"};
    for (int c = 0; c < 3; c++) {
        char path[128];
        snprintf(path, sizeof path, "tests/cases/anomaly/%s.csv", cases[c]);
        struct anomaly_case *k = anomaly_case_load(path);
        assert(k);
        m = anomaly_mad_new(64);
        double in = 0, out = 0;
        bool seen = false; /* "out" is measured before the anomaly */
        for (size_t i = 0; i < k->n; i++) {
            double s = fabs(anomaly_mad_update(m, k->value[i]));
            seen = seen || k->label[i];
            if (isnan(s))
                continue;
            if (k->label[i])
                in = fmax(in, s);
            else if (i > 100 && !seen)
                out = fmax(out, s);
        }
        if (verbose)
            printf("   %s: in %.2f out %.2f\n", cases[c], in, out);
        if (c < 2)
            assert(in > 8 && in > 1.5 * out);
        else
            assert(out == 0);
        anomaly_mad_destroy(&m);
        anomaly_case_destroy(&k);
    }

    /* Far from the first value (a 0 at power-up, then 1.6e7 +- 0.05):
     * once the ring has wrapped twice the noise is noise (|z| was 1e6
     * with offsets of 1.6e7, a float's step there being 1). */
    m = anomaly_mad_new(64);
    double fv[1000], far = 0;
    anomaly_case_far(fv, 1000);
    for (int i = 0; i < 1000; i++) {
        double zz = anomaly_mad_update(m, fv[i]);
        if (i > 128)
            far = fmax(far, fabs(zz));
    }
    if (verbose)
        printf("   far from the first value: |z| at most %.2f\n", far);
    assert(far < 4);
    anomaly_mad_destroy(&m);
    TEST_OK("anomaly_mad");
}
