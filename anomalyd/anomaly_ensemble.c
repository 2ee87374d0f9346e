/*
 * anomaly_ensemble: one score from several detectors (see
 * anomaly_ensemble.h).
 */
#include "anomalyd/anomaly_ensemble.h"
#include "anomalyd/anomaly_case.h"
#include "anomalyd/anomaly_cusum.h"
#include "anomalyd/anomaly_ewma.h"
#include "anomalyd/anomaly_hst.h"
#include "anomalyd/anomaly_mad.h"
#include "anomalyd/anomaly_seasonal.h"
#include "anomalyd/anomaly_zscore.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY_NS (86400LL * 1000000000LL)

static const char *s_names[ANOMALY_ENSEMBLE_N] = {
    "zscore", "mad", "ewma", "seasonal", "cusum", "hst"};

/* Statistic at which each member's score is 0.5. */
static const double s_scale[ANOMALY_ENSEMBLE_N] = {4, 5, 4, 5, 1, 4};

struct anomaly_ensemble {
    unsigned mask;                  /* members present */
    anomaly_zscore_t *zscore;       /* rolling z-score */
    anomaly_mad_t *mad;             /* robust MAD/IQR */
    anomaly_ewma_t *ewma;           /* EWMA chart */
    anomaly_seasonal_t *seasonal;   /* daily Holt-Winters residual */
    anomaly_cusum_t *cusum;         /* change points */
    anomaly_hst_t *hst;             /* half-space trees */
    double stat[ANOMALY_ENSEMBLE_N]; /* last raw statistics */
    uint64_t count;                 /* readings learnt */
};

unsigned
anomaly_ensemble_mask(const char *method)
{
    if (!strcmp(method, "ensemble"))
        return (1u << ANOMALY_ENSEMBLE_N) - 1;
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
        if (!strcmp(method, s_names[m]) && m != ANOMALY_ENSEMBLE_ZSCORE)
            return 1u << m;
    return 0;
}

const char *
anomaly_ensemble_name(int member)
{
    assert(member >= 0 && member < ANOMALY_ENSEMBLE_N);
    return s_names[member];
}

anomaly_ensemble_t *
anomaly_ensemble_new(unsigned mask)
{
    assert(mask);
    anomaly_ensemble_t *self = xcalloc(1, sizeof *self);
    self->mask = mask;
    if (mask & (1u << ANOMALY_ENSEMBLE_ZSCORE))
        self->zscore = anomaly_zscore_new(200);
    if (mask & (1u << ANOMALY_ENSEMBLE_MAD))
        self->mad = anomaly_mad_new(64);
    if (mask & (1u << ANOMALY_ENSEMBLE_EWMA))
        self->ewma = anomaly_ewma_new(0.1, 0.005);
    if (mask & (1u << ANOMALY_ENSEMBLE_SEASONAL))
        self->seasonal = anomaly_seasonal_new(S_DAY_NS, 288, 0.05, 0.3);
    if (mask & (1u << ANOMALY_ENSEMBLE_CUSUM))
        self->cusum = anomaly_cusum_new(0.5, 8, 0.005);
    if (mask & (1u << ANOMALY_ENSEMBLE_HST))
        self->hst = anomaly_hst_new();
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
        self->stat[m] = NAN;
    return self;
}

void
anomaly_ensemble_destroy(anomaly_ensemble_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_ensemble_t *self = *self_p;
    anomaly_zscore_destroy(&self->zscore);
    anomaly_mad_destroy(&self->mad);
    anomaly_ewma_destroy(&self->ewma);
    anomaly_seasonal_destroy(&self->seasonal);
    anomaly_cusum_destroy(&self->cusum);
    anomaly_hst_destroy(&self->hst);
    free(self);
    *self_p = NULL;
}

void
anomaly_ensemble_update(anomaly_ensemble_t *self, int64_t ts, double value,
                        double *score, double *confidence,
                        const char **method)
{
    double *st = self->stat;
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
        st[m] = NAN;
    *score = 0;
    *confidence = 0;
    *method = "ensemble";
    if (!isfinite(value))
        return;
    if (self->zscore)
        st[ANOMALY_ENSEMBLE_ZSCORE] = anomaly_zscore_update(self->zscore, value);
    if (self->mad)
        st[ANOMALY_ENSEMBLE_MAD] = anomaly_mad_update(self->mad, value);
    if (self->ewma)
        st[ANOMALY_ENSEMBLE_EWMA] = anomaly_ewma_update(self->ewma, value);
    if (self->seasonal)
        st[ANOMALY_ENSEMBLE_SEASONAL] =
            anomaly_seasonal_update(self->seasonal, ts, value);
    if (self->cusum)
        st[ANOMALY_ENSEMBLE_CUSUM] = anomaly_cusum_update(self->cusum, value);
    if (self->hst)
        st[ANOMALY_ENSEMBLE_HST] = anomaly_hst_update(self->hst, value);
    self->count++;

    int best = -1, present = 0, ready = 0;
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++) {
        if (!(self->mask & (1u << m)))
            continue;
        present++;
        if (isnan(st[m]))
            continue;
        ready++;
        double r = fabs(st[m]) / s_scale[m];
        double s = 1.0 - exp2(-r * r);
        if (s > *score || best < 0) {
            *score = s;
            best = m;
        }
    }
    if (best >= 0)
        *method = s_names[best];
    *confidence = present ? (double)ready / present : 0;
}

void
anomaly_ensemble_stats(const anomaly_ensemble_t *self,
                       double stats[ANOMALY_ENSEMBLE_N])
{
    memcpy(stats, self->stat, sizeof self->stat);
}

size_t
anomaly_ensemble_state_size(const anomaly_ensemble_t *self)
{
    size_t n = sizeof *self;
    if (self->zscore)
        n += anomaly_zscore_state_size(self->zscore);
    if (self->mad)
        n += anomaly_mad_state_size(self->mad);
    if (self->ewma)
        n += anomaly_ewma_state_size(self->ewma);
    if (self->seasonal)
        n += anomaly_seasonal_state_size(self->seasonal);
    if (self->cusum)
        n += anomaly_cusum_state_size(self->cusum);
    if (self->hst)
        n += anomaly_hst_state_size(self->hst);
    return n;
}

void
anomaly_ensemble_test(bool verbose)
{
    assert(anomaly_ensemble_mask("ensemble") == 0x3f);
    assert(anomaly_ensemble_mask("mad") == 1u << ANOMALY_ENSEMBLE_MAD);
    assert(anomaly_ensemble_mask("zscore") == 0);
    assert(anomaly_ensemble_mask("nope") == 0);
    anomaly_ensemble_t *e = anomaly_ensemble_new(0x3f);
    if (verbose)
        printf("   state %zu bytes\n", anomaly_ensemble_state_size(e));
    assert(anomaly_ensemble_state_size(e) < 16384);
    anomaly_ensemble_destroy(&e);
    anomaly_ensemble_destroy(&e);
    TEST_OK("anomaly_ensemble");
}
