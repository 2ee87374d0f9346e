/*
 * anomaly_seasonal: Holt-Winters residual detector (see
 * anomaly_seasonal.h).
 */
#include "anomalyd/anomaly_seasonal.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>

/* Weight of a residual in its running variance. */
#define S_RESID_ALPHA 0.01
/* Residuals learnt before their spread is trusted. */
#define S_RESID_MIN 20
#define S_ZMAX 1e6
/* The smoothed residual counts only from here (see update). */
#define S_SMOOTH_MIN 6.0
/* One wild residual moves the smoothed residual by at most this. */
#define S_SMOOTH_CAP 10.0

struct anomaly_seasonal {
    int64_t period;    /* season length, ns */
    int64_t binw;      /* bin width, ns */
    size_t bins;       /* bins per period */
    double alpha;      /* level weight */
    double gamma;      /* seasonal weight */
    double level;      /* deseasonalised level */
    double rvar;       /* running residual variance */
    size_t nresid;     /* residuals learnt */
    size_t count;      /* readings learnt */
    double lambda;     /* weight of the smoothed residual; 0 = off */
    unsigned min_seen; /* periods before a bin is scored */
    double smooth;     /* EWMA of standardised residuals */
    double *season;    /* seasonal term per bin */
    uint16_t *seen;    /* periods in which each bin was learnt (saturating) */
    uint8_t *last;     /* period number (mod 256) a bin was last learnt in */
};

anomaly_seasonal_t *
anomaly_seasonal_new(int64_t period_ns, size_t bins, double alpha, double gamma)
{
    if (bins < 1)
        bins = 1;
    if (bins > ANOMALY_SEASONAL_BINS_MAX)
        bins = ANOMALY_SEASONAL_BINS_MAX;
    /* One block: the struct, then the three per-bin arrays (widest
     * first, so each stays aligned); fewer allocations per series. */
    size_t per_bin = sizeof(double) + sizeof(uint16_t) + sizeof(uint8_t);
    anomaly_seasonal_t *self = xcalloc(1, sizeof *self + bins * per_bin);
    self->bins = bins;
    self->period = period_ns > (int64_t)bins ? period_ns : (int64_t)bins;
    self->binw = self->period / (int64_t)bins;
    self->alpha = fmin(1, fmax(1e-5, alpha));
    self->gamma = fmin(1, fmax(1e-5, gamma));
    self->min_seen = ANOMALY_SEASONAL_MIN_SEEN;
    self->season = (double *)(self + 1);
    self->seen = (uint16_t *)(self->season + bins);
    self->last = (uint8_t *)(self->seen + bins);
    return self;
}

void
anomaly_seasonal_set_min_seen(anomaly_seasonal_t *self, unsigned n)
{
    self->min_seen = n ? n : 1;
}

void
anomaly_seasonal_set_smoothing(anomaly_seasonal_t *self, double lambda)
{
    self->lambda = fmin(1, fmax(0, lambda));
}

void
anomaly_seasonal_destroy(anomaly_seasonal_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_seasonal_t *self = *self_p;
    free(self);
    *self_p = NULL;
}

static size_t
s_bin(const anomaly_seasonal_t *self, int64_t ts)
{
    int64_t r = ts % self->period;
    if (r < 0)
        r += self->period;
    return (size_t)(r / self->binw) % self->bins;
}

double
anomaly_seasonal_forecast(const anomaly_seasonal_t *self, int64_t ts)
{
    size_t b = s_bin(self, ts);
    if (self->count == 0 || self->seen[b] == 0)
        return NAN;
    return self->level + self->season[b];
}

double
anomaly_seasonal_update(anomaly_seasonal_t *self, int64_t ts, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    size_t b = s_bin(self, ts);
    if (self->count == 0)
        self->level = value;
    double stat = NAN;
    if (self->seen[b] >= self->min_seen) {
        double r = value - (self->level + self->season[b]);
        if (self->nresid >= S_RESID_MIN) {
            double sd = sqrt(self->rvar);
            double floor = 1e-12 * fmax(1.0, fabs(self->level));
            if (fabs(r) <= floor)
                stat = 0;
            else if (sd <= floor)
                stat = r > 0 ? S_ZMAX : -S_ZMAX;
            else
                stat = fmax(-S_ZMAX, fmin(S_ZMAX, r / sd));
            if (self->lambda > 0) {
                /* The EWMA of standardised residuals, in units of its
                 * textbook standard error sqrt(l / (2 - l)). Residuals
                 * are somewhat autocorrelated (the model adapts slowly),
                 * which inflates it, so it only counts from
                 * S_SMOOTH_MIN. */
                double l = self->lambda;
                self->smooth +=
                    l * (fmax(-S_SMOOTH_CAP, fmin(S_SMOOTH_CAP, stat)) -
                         self->smooth);
                double zs = self->smooth / sqrt(l / (2 - l));
                if (fabs(zs) < S_SMOOTH_MIN)
                    zs = 0;
                if (fabs(zs) > fabs(stat))
                    stat = zs;
            }
        }
        self->nresid++;
        double a = fmax(S_RESID_ALPHA, 1.0 / (double)self->nresid);
        self->rvar = (1 - a) * (self->rvar + a * r * r);
    }
    self->count++;
    if (self->seen[b] == 0) {
        self->season[b] = value - self->level;
    } else {
        self->level += self->alpha * (value - self->season[b] - self->level);
        self->season[b] +=
            self->gamma * (value - self->level - self->season[b]);
    }
    /* Count periods, not readings: a wide bin gets several readings per
     * period, and only another period tells what the bin's season is. */
    uint8_t period = (uint8_t)(ts / self->period);
    if (self->seen[b] == 0 || self->last[b] != period) {
        if (self->seen[b] < UINT16_MAX)
            self->seen[b]++;
        self->last[b] = period;
    }
    return stat;
}

void
anomaly_seasonal_prefetch(const anomaly_seasonal_t *self, int64_t ts)
{
    size_t b = s_bin(self, ts);
    __builtin_prefetch(&self->season[b], 1);
    __builtin_prefetch(&self->seen[b], 1);
    __builtin_prefetch(&self->last[b], 1);
}

double
anomaly_seasonal_resid_sd(const anomaly_seasonal_t *self)
{
    assert(self);
    return self->nresid >= S_RESID_MIN ? sqrt(self->rvar) : NAN;
}

size_t
anomaly_seasonal_state_size(const anomaly_seasonal_t *self)
{
    return sizeof *self +
           self->bins *
               (sizeof *self->season + sizeof *self->seen + sizeof *self->last);
}

void
anomaly_seasonal_test(bool verbose)
{
    const int64_t day = 86400LL * 1000000000LL;
    /* Golden case: a daily sine with one flattened half-day. Every value
     * of the flat stretch is within the usual range, yet the residual
     * stands out; the regular days before it stay quiet. */
    struct anomaly_case *c =
        anomaly_case_load("tests/cases/anomaly/seasonal.csv");
    assert(c);
    anomaly_seasonal_t *s = anomaly_seasonal_new(day, 288, 0.05, 0.3);
    double in = 0, before = 0;
    bool seen = false;
    for (size_t i = 0; i < c->n; i++) {
        double v = fabs(anomaly_seasonal_update(s, c->ts[i], c->value[i]));
        seen = seen || c->label[i];
        if (isnan(v))
            continue;
        if (c->label[i])
            in = fmax(in, v);
        else if (!seen)
            before = fmax(before, v);
    }
    if (verbose)
        printf("   broken cycle: before %.2f during %.2f\n", before, in);
    assert(in > 8 && in > 1.5 * before);
    /* The forecast follows the cycle. */
    double f = anomaly_seasonal_forecast(s, c->ts[72]);
    TEST_NEAR(f, 60, 1.5);
    /* The residuals of the learnt cycle are far smaller than the
     * cycle itself (its standard deviation is 21 about the mean). */
    double rsd = anomaly_seasonal_resid_sd(s);
    if (verbose)
        printf("   residual sd %.2f\n", rsd);
    assert(rsd > 0 && rsd < 5);
    anomaly_seasonal_t *fresh = anomaly_seasonal_new(day, 288, 0.05, 0.3);
    assert(isnan(anomaly_seasonal_resid_sd(fresh)));
    anomaly_seasonal_destroy(&fresh);
    assert(isnan(anomaly_seasonal_update(s, c->ts[0], NAN)));
    assert(anomaly_seasonal_state_size(s) < 16384);
    anomaly_seasonal_destroy(&s);
    anomaly_seasonal_destroy(&s);
    anomaly_case_destroy(&c);
    TEST_OK("anomaly_seasonal");
}
