/*
 * anomaly_ewma: EWMA control chart (see anomaly_ewma.h).
 *
 * The baseline uses weight max(alpha, 1/n) so that its first readings
 * are a plain average instead of being pulled towards zero.
 */
#include "anomalyd/anomaly_ewma.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

#define S_ZMAX 1e6

struct anomaly_ewma {
    double lambda; /* fast weight */
    double alpha;  /* slow weight */
    double fast;   /* fast EWMA of the readings */
    double mean;   /* slow baseline mean */
    double var;    /* slow baseline variance */
    size_t count;  /* readings learnt */
};

anomaly_ewma_t *
anomaly_ewma_new(double lambda, double alpha)
{
    anomaly_ewma_t *self = xcalloc(1, sizeof *self);
    self->lambda = fmin(1.0, fmax(1e-4, lambda));
    self->alpha = fmin(self->lambda, fmax(1e-5, alpha));
    return self;
}

void
anomaly_ewma_destroy(anomaly_ewma_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

double
anomaly_ewma_update(anomaly_ewma_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    double stat = NAN;
    if (self->count == 0) {
        self->fast = self->mean = value;
        self->count = 1;
        return NAN;
    }
    self->fast += self->lambda * (value - self->fast);
    if (self->count >= ANOMALY_EWMA_MIN_COUNT) {
        double se = sqrt(self->var * self->lambda / (2 - self->lambda));
        double diff = self->fast - self->mean;
        double floor = 1e-12 * fmax(1.0, fabs(self->mean));
        if (fabs(diff) <= floor)
            stat = 0;
        else if (se <= floor)
            stat = diff > 0 ? S_ZMAX : -S_ZMAX;
        else
            stat = fmax(-S_ZMAX, fmin(S_ZMAX, diff / se));
    }
    self->count++;
    double a = fmax(self->alpha, 1.0 / (double)self->count);
    double d = value - self->mean;
    self->mean += a * d;
    self->var = (1 - a) * (self->var + a * d * d);
    return stat;
}

size_t
anomaly_ewma_state_size(const anomaly_ewma_t *self)
{
    return sizeof *self;
}

void
anomaly_ewma_test(bool verbose)
{
    /* The baseline of a constant is that constant with no spread. */
    anomaly_ewma_t *e = anomaly_ewma_new(0.1, 0.01);
    for (int i = 0; i < 50; i++) {
        double s = anomaly_ewma_update(e, 7.0);
        assert(isnan(s) || s == 0);
    }
    TEST_NEAR(e->mean, 7.0, 1e-12);
    TEST_NEAR(e->var, 0.0, 1e-12);
    assert(isnan(anomaly_ewma_update(e, NAN)));
    assert(anomaly_ewma_state_size(e) < 16384);
    anomaly_ewma_destroy(&e);
    anomaly_ewma_destroy(&e);

    /* Golden drift case: the chart rises during the drift, not before. */
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/drift.csv");
    assert(c);
    e = anomaly_ewma_new(0.1, 0.005);
    double before = 0, during = 0;
    for (size_t i = 0; i < c->n; i++) {
        double s = fabs(anomaly_ewma_update(e, c->value[i]));
        if (isnan(s) || i < 200)
            continue;
        if (c->label[i])
            during = fmax(during, s);
        else if (i < 1200)
            before = fmax(before, s);
    }
    if (verbose)
        printf("   drift: before %.2f during %.2f\n", before, during);
    assert(during > 5 && during > 1.5 * before);
    anomaly_ewma_destroy(&e);
    anomaly_case_destroy(&c);
    TEST_OK("anomaly_ewma");
}
