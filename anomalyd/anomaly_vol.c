/*
 * anomaly_vol: volatility ratio (see anomaly_vol.h).
 */
#include "anomalyd/anomaly_vol.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

struct anomaly_vol {
    double fast;  /* short weight */
    double slow;  /* long weight */
    double prev;  /* previous reading */
    double s;     /* short mean |change| */
    double l;     /* long mean |change| */
    size_t count; /* readings learnt */
};

anomaly_vol_t *
anomaly_vol_new(double fast, double slow)
{
    anomaly_vol_t *self = xcalloc(1, sizeof *self);
    self->fast = fmin(1, fmax(1e-4, fast));
    self->slow = fmin(self->fast, fmax(1e-6, slow));
    return self;
}

void
anomaly_vol_destroy(anomaly_vol_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

double
anomaly_vol_update(anomaly_vol_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    double d = self->count ? fabs(value - self->prev) : 0;
    self->prev = value;
    self->count++;
    if (self->count == 1)
        return NAN;
    if (self->count == 2)
        self->s = self->l = d;
    self->s += self->fast * (d - self->s);
    double r = NAN;
    if (self->count > ANOMALY_VOL_MIN_COUNT && self->l > 1e-12)
        r = self->s / self->l;
    double a = fmax(self->slow, 1.0 / (double)self->count);
    self->l += a * (d - self->l);
    return r;
}

size_t
anomaly_vol_state_size(const anomaly_vol_t *self)
{
    return sizeof *self;
}

void
anomaly_vol_test(bool verbose)
{
    /* Noise, then the same noise three times as large: the ratio rises
     * well above its calm level. */
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/noise.csv");
    assert(c);
    anomaly_vol_t *v = anomaly_vol_new(0.05, 0.002);
    double calm = 0, loud = 0;
    for (size_t i = 0; i < c->n; i++) {
        double x = i < 1500 ? c->value[i] : 20 + 3 * (c->value[i] - 20);
        double r = anomaly_vol_update(v, x);
        if (isnan(r) || i < 300)
            continue;
        if (i < 1500)
            calm = fmax(calm, r);
        else if (i < 1600)
            loud = fmax(loud, r);
    }
    if (verbose)
        printf("   calm max %.2f, louder max %.2f\n", calm, loud);
    assert(loud > 2.0 && loud > 1.5 * calm);
    assert(isnan(anomaly_vol_update(v, NAN)));
    assert(anomaly_vol_state_size(v) < 16384);
    anomaly_vol_destroy(&v);
    anomaly_vol_destroy(&v);
    anomaly_case_destroy(&c);
    TEST_OK("anomaly_vol");
}
