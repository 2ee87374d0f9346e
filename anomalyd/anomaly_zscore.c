/*
 * anomaly_zscore: rolling z-score detector (see anomaly_zscore.h).
 *
 * Running sums drift when values are added and removed for a long time,
 * so they are recomputed from the ring every time it wraps (O(window) once
 * per window, O(1) amortised per reading).
 *
 * The ring holds floats: each value's offset from the shift, rounded
 * once and summed as rounded, so the sums and the ring agree exactly;
 * half the memory of doubles (800 bytes at window 200), the same NAB
 * scores (docs/ANOMALY.md, eleventh session). The shift starts at the
 * first value and moves to the ring's mean each time the ring wraps, so
 * the offsets stay about as small as the window's spread: a series that
 * started at 0 and then read 1.6e7 +- 0.05 kept offsets of 1.6e7, which
 * a float holds to 1 and a sum of squares to far worse.
 */
#include "anomalyd/anomaly_zscore.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

struct anomaly_zscore {
    size_t window; /* capacity of the ring */
    size_t count;  /* readings in the ring (<= window) */
    size_t head;   /* next slot to write */
    double sum;    /* sum of the ring, shifted by `shift` */
    double sumsq;  /* sum of squares of the ring, shifted by `shift` */
    double shift;  /* about the ring's mean; keeps the sums well conditioned */
    float *ring;   /* the last `window` values minus shift */
};

anomaly_zscore_t *
anomaly_zscore_new(size_t window)
{
    if (window < ANOMALY_ZSCORE_MIN_COUNT)
        window = ANOMALY_ZSCORE_MIN_COUNT;
    if (window > ANOMALY_ZSCORE_WINDOW_MAX)
        window = ANOMALY_ZSCORE_WINDOW_MAX;
    /* The ring follows the struct in one block. */
    anomaly_zscore_t *self =
        xcalloc(1, sizeof *self + window * sizeof *self->ring);
    self->window = window;
    self->ring = (float *)(self + 1);
    self->shift = NAN;
    return self;
}

void
anomaly_zscore_destroy(anomaly_zscore_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_zscore_t *self = *self_p;
    free(self);
    *self_p = NULL;
}

bool
anomaly_ring_recentre(float *ring, size_t n, double *shift)
{
    double c = 0, ss = 0;

    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        c += ring[i];
    c /= (double)n;
    for (size_t i = 0; i < n; i++)
        ss += (ring[i] - c) * (ring[i] - c);
    if (!(fabs(c) > ANOMALY_RECENTRE * sqrt(ss / (double)n)))
        return false;
    *shift += c;
    for (size_t i = 0; i < n; i++)
        ring[i] = (float)(ring[i] - c);
    return true;
}

/* At each wrap: the offsets re-centred when far from the shift (never
 * for the NAB files, whose scores stay as they were), then the sums
 * again from the ring. */
static void
s_resum(anomaly_zscore_t *self)
{
    anomaly_ring_recentre(self->ring, self->count, &self->shift);
    self->sum = self->sumsq = 0;
    for (size_t i = 0; i < self->count; i++) {
        double d = self->ring[i];
        self->sum += d;
        self->sumsq += d * d;
    }
}

double
anomaly_zscore_mean(const anomaly_zscore_t *self)
{
    if (self->count == 0)
        return NAN;
    return self->shift + self->sum / (double)self->count;
}

double
anomaly_zscore_std(const anomaly_zscore_t *self)
{
    if (self->count < 2)
        return NAN;
    double n = (double)self->count;
    double var = (self->sumsq - self->sum * self->sum / n) / (n - 1);
    return var > 0 ? sqrt(var) : 0;
}

double
anomaly_zscore_update(anomaly_zscore_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    if (isnan(self->shift))
        self->shift = value;

    double z = NAN;
    if (self->count >= ANOMALY_ZSCORE_MIN_COUNT) {
        double mean = anomaly_zscore_mean(self);
        double sd = anomaly_zscore_std(self);
        double diff = value - mean;
        /* A flat window has no spread: equal is normal, anything else is
         * as far out as we can say. The relative floor absorbs rounding. */
        double floor = 1e-12 * fmax(1.0, fabs(mean));
        if (fabs(diff) <= floor)
            z = 0;
        else if (sd <= floor)
            z = diff > 0 ? ANOMALY_ZSCORE_ZMAX : -ANOMALY_ZSCORE_ZMAX;
        else
            z = fmax(-ANOMALY_ZSCORE_ZMAX,
                     fmin(ANOMALY_ZSCORE_ZMAX, diff / sd));
    }

    if (self->count == self->window) {
        double old = self->ring[self->head];
        self->sum -= old;
        self->sumsq -= old * old;
    } else
        self->count++;
    float f = (float)(value - self->shift);
    self->ring[self->head] = f;
    double d = f;
    self->sum += d;
    self->sumsq += d * d;
    self->head = (self->head + 1) % self->window;
    if (self->head == 0)
        s_resum(self);
    return z;
}

double
anomaly_zscore_score(double z, double threshold)
{
    if (isnan(z) || threshold <= 0)
        return 0;
    /* 1 - 2^-(|z|/t)^2: 0 at z = 0, 0.5 at the threshold, 0.94 at twice
     * the threshold. */
    double r = fabs(z) / threshold;
    return 1.0 - exp2(-r * r);
}

void
anomaly_zscore_prefetch(const anomaly_zscore_t *self)
{
    __builtin_prefetch(&self->ring[self->head], 1);
}

size_t
anomaly_zscore_state_size(const anomaly_zscore_t *self)
{
    return sizeof *self + self->window * sizeof *self->ring;
}

void
anomaly_zscore_test(bool verbose)
{
    /* Seed 000: a reading of 100 after a steady series is far out. */
    anomaly_zscore_t *z = anomaly_zscore_new(200);
    const double steady[] = {23.5, 23.7, 23.6, 23.5, 23.6, 23.7,
                             23.5, 23.6, 23.7, 23.6, 23.5, 23.7};
    for (size_t i = 0; i < sizeof steady / sizeof steady[0]; i++) {
        double s = anomaly_zscore_update(z, steady[i]);
        assert(i < ANOMALY_ZSCORE_MIN_COUNT ? isnan(s) : fabs(s) < 3);
    }
    double big = anomaly_zscore_update(z, 100);
    if (verbose)
        printf("   z of 100 after steady = %g\n", big);
    assert(big > 100);
    assert(anomaly_zscore_score(big, 3.0) > 0.99);
    TEST_NEAR(anomaly_zscore_score(3.0, 3.0), 0.5, 1e-12);
    assert(anomaly_zscore_score(NAN, 3.0) == 0);
    /* A gap is not scored and does not disturb the window. */
    size_t before = z->count;
    assert(isnan(anomaly_zscore_update(z, NAN)));
    assert(z->count == before);
    assert(anomaly_zscore_state_size(z) < 16384);
    anomaly_zscore_destroy(&z);
    anomaly_zscore_destroy(&z);
    assert(z == NULL);

    /* Exact mean/std against a direct computation, across wraps, on
     * values whose sums would lose digits without the shift. */
    z = anomaly_zscore_new(10);
    double v[35];
    for (size_t i = 0; i < 35; i++)
        v[i] = 1e9 + (double)((i * 7) % 11);
    for (size_t i = 0; i < 35; i++) {
        double got = anomaly_zscore_update(z, v[i]);
        if (i >= 10) {
            double m = 0, s = 0;
            for (size_t k = i - 10; k < i; k++)
                m += v[k];
            m /= 10;
            for (size_t k = i - 10; k < i; k++)
                s += (v[k] - m) * (v[k] - m);
            s = sqrt(s / 9);
            TEST_NEAR(got, (v[i] - m) / s, 1e-6);
        }
    }
    anomaly_zscore_destroy(&z);

    /* A flat line never alarms, and a step off it is capped, not inf. */
    z = anomaly_zscore_new(50);
    for (int i = 0; i < 100; i++) {
        double s = anomaly_zscore_update(z, 42.0);
        assert(isnan(s) || s == 0);
    }
    assert(anomaly_zscore_update(z, 43.0) == ANOMALY_ZSCORE_ZMAX);
    anomaly_zscore_destroy(&z);

    /* Golden cases: a spike and a step show, a flat line and noise not. */
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/spike.csv");
    assert(c);
    z = anomaly_zscore_new(200);
    double in_max = 0, out_max = 0;
    for (size_t i = 0; i < c->n; i++) {
        double s =
            anomaly_zscore_score(anomaly_zscore_update(z, c->value[i]), 3.0);
        if (c->label[i])
            in_max = fmax(in_max, s);
        else if (i > 50)
            out_max = fmax(out_max, s);
    }
    if (verbose)
        printf("   spike: in %.3f out %.3f\n", in_max, out_max);
    assert(in_max > 0.9);
    anomaly_zscore_destroy(&z);
    anomaly_case_destroy(&c);

    /* Far from the first value: a 0 at power-up, then 1.6e7 with noise
     * of 0.05. The offsets move at the second wrap (at the first the 0
     * is still in the ring), so from the third on the noise scores as
     * noise (|z| was 1e6, ANOMALY_ZSCORE_ZMAX, when the offsets stayed
     * 1.6e7, a float's step there being 1). */
    z = anomaly_zscore_new(200);
    double fv[2000], far = 0;
    anomaly_case_far(fv, 2000);
    for (int i = 0; i < 2000; i++) {
        double zz = anomaly_zscore_update(z, fv[i]);
        if (i > 600)
            far = fmax(far, fabs(zz));
    }
    if (verbose)
        printf("   far from the first value: |z| at most %.2f\n", far);
    assert(far < 4);
    anomaly_zscore_destroy(&z);

    TEST_OK("anomaly_zscore");
}
