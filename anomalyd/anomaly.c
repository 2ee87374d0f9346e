/*
 * anomaly: a series' detector behind one interface (see anomaly.h).
 *
 * Every method shares the rolling z-score, which gives the result's z; the
 * method's own detector then gives score, confidence and name. Methods are
 * a small table, as style rule 40 wants for pluggable variants.
 */
#include "anomalyd/anomaly.h"
#include "anomalyd/anomaly_ensemble.h"
#include "anomalyd/anomaly_zscore.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Readings after which the z-score's confidence is full. */
#define S_ZSCORE_CONFIDENT 30

struct anomaly {
    struct anomaly_conf conf;     /* copy of the configuration */
    anomaly_zscore_t *zscore;     /* rolling z-score (method zscore) */
    anomaly_ensemble_t *ensemble; /* other methods; has its own z-score */
    uint64_t count;               /* finite readings seen (zscore) */
};

/* Round to ANOMALY_Z_DIGITS significant digits by arithmetic (a printf
 * round trip per reading would cost more than the detector). */
static double
s_round_sig(double v)
{
    static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,
                                 1e7,  1e8,  1e9,  1e10, 1e11, 1e12, 1e13,
                                 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20};
    if (!isfinite(v) || v == 0)
        return v;
    int e = (int)floor(log10(fabs(v)));
    int k = ANOMALY_Z_DIGITS - 1 - e; /* decimals to keep */
    if (k > 20 || k < -20)
        return v;
    return k >= 0 ? round(v * p10[k]) / p10[k] : round(v / p10[-k]) * p10[-k];
}

void
anomaly_conf_default(struct anomaly_conf *conf)
{
    memset(conf, 0, sizeof *conf);
    strcpy(conf->method, "ensemble");
    conf->window = 200;
    conf->threshold = 3.0;
}

bool
anomaly_method_valid(const char *name)
{
    return !strcmp(name, "zscore") || anomaly_ensemble_mask(name) != 0;
}

const char *
anomaly_methods(void)
{
    return "zscore " ANOMALY_ENSEMBLE_METHODS;
}

anomaly_t *
anomaly_new(const struct anomaly_conf *conf)
{
    if (!anomaly_method_valid(conf->method))
        return NULL;
    anomaly_t *self = xcalloc(1, sizeof *self);
    self->conf = *conf;
    if (strcmp(conf->method, "zscore") == 0)
        self->zscore = anomaly_zscore_new(conf->window);
    else {
        struct anomaly_ensemble_params p;
        anomaly_ensemble_params_default(&p);
        p.zwindow = conf->window;
        self->ensemble =
            anomaly_ensemble_new_with(anomaly_ensemble_mask(conf->method), &p);
    }
    return self;
}

void
anomaly_destroy(anomaly_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_t *self = *self_p;
    anomaly_zscore_destroy(&self->zscore);
    anomaly_ensemble_destroy(&self->ensemble);
    free(self);
    *self_p = NULL;
}

void
anomaly_update(anomaly_t *self, int64_t ts, double value,
               struct anomaly_result *out)
{
    if (self->ensemble) {
        double st[ANOMALY_ENSEMBLE_N];
        anomaly_ensemble_update(self->ensemble, ts, value, &out->score,
                                &out->confidence, &out->method);
        anomaly_ensemble_stats(self->ensemble, st);
        out->z = st[ANOMALY_ENSEMBLE_ZSCORE];
        out->alarm = anomaly_ensemble_alarm(self->ensemble, NULL);
    } else {
        out->z = anomaly_zscore_update(self->zscore, value);
        out->score = anomaly_zscore_score(out->z, self->conf.threshold);
        if (isfinite(value))
            self->count++;
        out->confidence =
            isfinite(value)
                ? fmin(1.0, (double)self->count / S_ZSCORE_CONFIDENT)
                : 0;
        out->method = "zscore";
        out->alarm = false;
    }
    /* Dividing by the integer 1/quantum (rather than multiplying by the
     * quantum) gives the double nearest to the decimal, which prints in
     * its short form ("5e-06", not "4.9999999999999996e-06"). */
    out->score = round(out->score / ANOMALY_SCORE_QUANTUM) /
                 round(1 / ANOMALY_SCORE_QUANTUM);
    out->z = s_round_sig(out->z);
    out->anomaly = out->score >= 0.5;
}

size_t
anomaly_state_size(const anomaly_t *self)
{
    return sizeof *self +
           (self->zscore ? anomaly_zscore_state_size(self->zscore) : 0) +
           (self->ensemble ? anomaly_ensemble_state_size(self->ensemble) : 0);
}

size_t
anomaly_parts(const anomaly_t *self, const void **parts, size_t max)
{
    size_t n = 0;
    if (max > 0)
        parts[n++] = self;
    if (self->ensemble)
        n += anomaly_ensemble_parts(self->ensemble, parts + n, max - n);
    else if (self->zscore && n < max)
        parts[n++] = self->zscore;
    return n;
}

void
anomaly_prefetch(const anomaly_t *self, int64_t ts)
{
    if (self->ensemble)
        anomaly_ensemble_prefetch(self->ensemble, ts);
    else
        anomaly_zscore_prefetch(self->zscore);
}

void
anomaly_test(bool verbose)
{
    struct anomaly_conf conf;
    anomaly_conf_default(&conf);
    assert(anomaly_method_valid("zscore"));
    assert(anomaly_method_valid("ensemble"));
    assert(!anomaly_method_valid("astrology"));
    strcpy(conf.method, "astrology");
    assert(anomaly_new(&conf) == NULL);

    const char *methods[] = {"zscore", "ensemble", "ensemble-all"};
    for (size_t m = 0; m < 3; m++) {
        anomaly_conf_default(&conf);
        strcpy(conf.method, methods[m]);
        anomaly_t *a = anomaly_new(&conf);
        assert(a);
        struct anomaly_result r;
        int64_t ts = 1704067200LL * 1000000000LL;
        int64_t step = 60LL * 1000000000LL;
        /* Seed 000: a steady series, then 100. */
        const double steady[] = {23.5, 23.7, 23.6, 23.5, 23.6, 23.7,
                                 23.5, 23.6, 23.7, 23.6, 23.5, 23.7};
        for (size_t i = 0; i < 12; i++) {
            anomaly_update(a, ts, steady[i], &r);
            ts += step;
            assert(!r.anomaly);
        }
        anomaly_update(a, ts, 100, &r);
        if (verbose)
            printf("   %s: 100 after steady: z %g score %g by %s\n", methods[m],
                   r.z, r.score, r.method);
        assert(r.z > 100 && r.anomaly && r.score > 0.5);
        /* A gap scores nothing. */
        anomaly_update(a, ts + step, NAN, &r);
        assert(isnan(r.z) && r.score == 0 && !r.anomaly);
        assert(anomaly_state_size(a) < 16384);
        anomaly_destroy(&a);
        anomaly_destroy(&a);
    }
    TEST_OK("anomaly");
}
