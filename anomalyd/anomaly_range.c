/*
 * anomaly_range: new all-time extremes (see anomaly_range.h).
 */
#include "anomalyd/anomaly_range.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

struct anomaly_range {
    size_t warm;  /* readings before reporting */
    size_t count; /* readings learnt */
    double lo;    /* smallest reading */
    double hi;    /* largest reading */
};

anomaly_range_t *
anomaly_range_new(size_t warm)
{
    anomaly_range_t *self = xcalloc(1, sizeof *self);
    self->warm = warm;
    return self;
}

void
anomaly_range_destroy(anomaly_range_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

double
anomaly_range_update(anomaly_range_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    double s = NAN;
    if (self->count == 0)
        self->lo = self->hi = value;
    else if (self->count >= self->warm && self->hi > self->lo) {
        double rg = self->hi - self->lo;
        s = value > self->hi   ? (value - self->hi) / rg
            : value < self->lo ? (self->lo - value) / rg
                               : 0;
    }
    self->lo = fmin(self->lo, value);
    self->hi = fmax(self->hi, value);
    self->count++;
    return s;
}

size_t
anomaly_range_state_size(const anomaly_range_t *self)
{
    return sizeof *self;
}

void
anomaly_range_test(bool verbose)
{
    anomaly_range_t *r = anomaly_range_new(3);
    assert(isnan(anomaly_range_update(r, 10)));
    assert(isnan(anomaly_range_update(r, 20)));
    assert(isnan(anomaly_range_update(r, 15)));
    assert(anomaly_range_update(r, 12) == 0);
    TEST_NEAR(anomaly_range_update(r, 25), 0.5, 1e-12); /* 5 over 10 */
    TEST_NEAR(anomaly_range_update(r, 0), 10.0 / 15, 1e-12);
    assert(isnan(anomaly_range_update(r, NAN)));
    assert(anomaly_range_state_size(r) < 16384);
    anomaly_range_destroy(&r);
    anomaly_range_destroy(&r);
    /* A flat history has no range to compare with. */
    r = anomaly_range_new(0);
    anomaly_range_update(r, 1);
    assert(isnan(anomaly_range_update(r, 1)));
    anomaly_range_destroy(&r);
    (void)verbose;
    TEST_OK("anomaly_range");
}
