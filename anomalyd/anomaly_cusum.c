/*
 * anomaly_cusum: CUSUM change points (see anomaly_cusum.h).
 */
#include "anomalyd/anomaly_cusum.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

/* Recent level used to restart the baseline after a change. */
#define S_RECENT_WEIGHT 0.2

struct anomaly_cusum {
    double k, h;    /* allowance and decision interval, sigmas */
    double alpha;   /* baseline weight */
    double mean;    /* baseline mean */
    double var;     /* baseline variance */
    double recent;  /* fast EWMA, the level to restart from */
    double pos;     /* S+ */
    double neg;     /* S- */
    size_t count;   /* readings learnt since the last restart */
    size_t changes; /* change points declared */
};

anomaly_cusum_t *
anomaly_cusum_new(double k, double h, double alpha)
{
    anomaly_cusum_t *self = xcalloc(1, sizeof *self);
    self->k = fmax(0, k);
    self->h = fmax(1e-3, h);
    self->alpha = fmin(0.5, fmax(1e-5, alpha));
    return self;
}

void
anomaly_cusum_destroy(anomaly_cusum_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

double
anomaly_cusum_update(anomaly_cusum_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    double stat = NAN;
    if (self->count == 0)
        self->recent = value;
    self->recent += S_RECENT_WEIGHT * (value - self->recent);
    if (self->count >= ANOMALY_CUSUM_MIN_COUNT) {
        double sd = sqrt(self->var);
        double floor = 1e-12 * fmax(1.0, fabs(self->mean));
        double z = (value - self->mean) / fmax(sd, floor);
        z = fmax(-1e6, fmin(1e6, z));
        self->pos = fmax(0, self->pos + z - self->k);
        self->neg = fmax(0, self->neg - z - self->k);
        stat = (self->pos >= self->neg ? self->pos : -self->neg) / self->h;
        if (fabs(stat) >= 1.0) {
            /* A change point: restart around the new level. */
            self->changes++;
            self->pos = self->neg = 0;
            self->mean = self->recent;
            self->count = ANOMALY_CUSUM_MIN_COUNT / 2;
            return stat;
        }
    }
    self->count++;
    double a = fmax(self->alpha, 1.0 / (double)self->count);
    double d = value - self->mean;
    self->mean += a * d;
    self->var = (1 - a) * (self->var + a * d * d);
    return stat;
}

size_t
anomaly_cusum_changes(const anomaly_cusum_t *self)
{
    return self->changes;
}

size_t
anomaly_cusum_state_size(const anomaly_cusum_t *self)
{
    return sizeof *self;
}

void
anomaly_cusum_test(bool verbose)
{
    /* The step case: one change point, soon after the step, none before. */
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/step.csv");
    assert(c);
    anomaly_cusum_t *s = anomaly_cusum_new(0.5, 8, 0.005);
    size_t first = 0;
    for (size_t i = 0; i < c->n; i++) {
        double v = anomaly_cusum_update(s, c->value[i]);
        if (!first && !isnan(v) && fabs(v) >= 1.0)
            first = i;
    }
    if (verbose)
        printf("   step at 1500: first change at %zu, %zu changes\n", first,
               anomaly_cusum_changes(s));
    assert(first >= 1500 && first < 1510);
    assert(anomaly_cusum_changes(s) <= 3);
    anomaly_cusum_destroy(&s);
    anomaly_case_destroy(&c);

    /* Noise alone: no change point. */
    c = anomaly_case_load("tests/cases/anomaly/noise.csv");
    assert(c);
    s = anomaly_cusum_new(0.5, 8, 0.005);
    for (size_t i = 0; i < c->n; i++)
        anomaly_cusum_update(s, c->value[i]);
    assert(anomaly_cusum_changes(s) == 0);
    assert(isnan(anomaly_cusum_update(s, NAN)));
    assert(anomaly_cusum_state_size(s) < 16384);
    anomaly_cusum_destroy(&s);
    anomaly_cusum_destroy(&s);
    anomaly_case_destroy(&c);
    TEST_OK("anomaly_cusum");
}
