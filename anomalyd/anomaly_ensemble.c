/*
 * anomaly_ensemble: one score from several detectors (see
 * anomaly_ensemble.h).
 *
 * Why relative records: the members' statistics live on different
 * scales (sigmas, ratios, bits), and the same statistic means different
 * things on a quiet and on a spiky series. Dividing by what the member
 * itself produced lately puts every member of every series on one scale,
 * which is what lets one threshold serve all series (NAB scores a single
 * threshold over the whole corpus). The decay (0.99995 per reading, a
 * half-life of about 14,000 readings) forgets an old anomaly's peak.
 */
#include "anomalyd/anomaly_ensemble.h"
#include "anomalyd/anomaly_case.h"
#include "anomalyd/anomaly_cusum.h"
#include "anomalyd/anomaly_ewma.h"
#include "anomalyd/anomaly_hst.h"
#include "anomalyd/anomaly_mad.h"
#include "anomalyd/anomaly_range.h"
#include "anomalyd/anomaly_seasonal.h"
#include "anomalyd/anomaly_shape.h"
#include "anomalyd/anomaly_vol.h"
#include "anomalyd/anomaly_zscore.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_DAY_NS (86400LL * 1000000000LL)
#define S_WEEK_NS (7 * S_DAY_NS)
/* Weight per reading of the series' EWMA mean and variance that the
 * seasonal members' residuals are compared with (s_season_fits): a
 * half-life of about 140 readings. */
#define S_FIT_RATE 0.005
/* Reference maxima never fall below this (a flat series stays quiet). */
#define S_REF_FLOOR 1e-3

static const char *s_names[ANOMALY_ENSEMBLE_N] = {
    "zscore", "mad", "ewma", "seasonal", "weekly",
    "cusum",  "hst", "vol",  "range", "level"};

struct anomaly_ensemble {
    unsigned mask;                      /* members present */
    /* Stuck values (run_min): repeats of the last reading so far, in
     * the padding after mask; the record is at the end. */
    uint32_t run_len;
    struct anomaly_ensemble_params p;   /* tunables */
    anomaly_zscore_t *zscore;           /* rolling z-score */
    anomaly_mad_t *mad;                 /* robust MAD/IQR */
    anomaly_ewma_t *ewma;               /* EWMA chart */
    anomaly_seasonal_t *seasonal;       /* daily Holt-Winters residual */
    anomaly_seasonal_t *weekly;         /* weekly Holt-Winters residual */
    anomaly_cusum_t *cusum;             /* change points */
    anomaly_hst_t *hst;                 /* half-space trees */
    anomaly_vol_t *vol;                 /* volatility ratio */
    anomaly_range_t *range;             /* new extremes */
    anomaly_shape_t *shape;             /* shape novelty (not a member);
                                           its ring also serves level */
    double stat[ANOMALY_ENSEMBLE_N];    /* last raw statistics */
    double ref[ANOMALY_ENSEMBLE_N];     /* decaying max of each statistic */
    /* Statistics each member produced, saturating (16 bits: member_warm
     * is clamped to fit; the level member's room came from here). */
    uint16_t valid[ANOMALY_ENSEMBLE_N];
    float fit_mean;                     /* the series' EWMA mean ... */
    uint64_t count;                     /* readings learnt */
    uint64_t hold_until;                /* no alarm before this count ... */
    double hold_level;                  /* ... below escalate * this r */
    uint32_t calm;                      /* readings in a row below rearm */
    float fit_var;                      /* ... and variance (S_FIT_RATE);
                                           floats in padding, no cost */
    /* Novelty alarm (anomaly_ensemble_alarm). */
    double nq[3];       /* tracked quartiles: 25 %, median, 75 % */
    double nlo, nhi;    /* all-time range */
    double nmean, nm2;  /* Welford sums of the first novel_learn readings */
    double nrec[2];     /* largest deviation ever below and above the
                           median, in scale units */
    double novelty;     /* last reading's deviation over nrec */
    uint64_t nalarm_at; /* count of the last alarm (0 = none) */
    double run_last;    /* the last reading (run_min) */
    bool alarm;         /* last reading's alarm */
    uint32_t run_rec;   /* the longest run_len before the current run
                           (in the padding after alarm) */
};

void
anomaly_ensemble_params_default(struct anomaly_ensemble_params *p)
{
    memset(p, 0, sizeof *p);
    p->zwindow = 200;
    p->decay = 0.99995;
    p->warm = 750;
    p->member_warm = 300;
    p->early_z = 8;
    p->cap = 100;
    p->min_sigma = 5;
    p->alarm = 1.2;
    p->hold = 400;
    p->escalate = 2.0;
    p->rearm = 0.6;
    p->calm = 50;
    p->range_warm = 1000;
    p->range_base = 1.2;
    p->range_gain = 10;
    p->range_margin = 0.01;
    p->half = 1.19;
    p->daily_alpha = 0.05;
    p->daily_gamma = 0.3;
    p->weekly_alpha = 0.05;
    p->weekly_gamma = 0.3;
    p->daily_smooth = 0.15;
    p->weekly_min_seen = 2;
    p->weekly_smooth = 0;
    p->weight[ANOMALY_ENSEMBLE_ZSCORE] = 1;
    p->weight[ANOMALY_ENSEMBLE_EWMA] = 1;
    p->weight[ANOMALY_ENSEMBLE_SEASONAL] = 1;
    p->weight[ANOMALY_ENSEMBLE_WEEKLY] = 1;
    p->weight[ANOMALY_ENSEMBLE_VOL] = 1;
    p->weight[ANOMALY_ENSEMBLE_RANGE] = 1;
    p->weight[ANOMALY_ENSEMBLE_LEVEL] = 1;
    p->season_fit = 1;
    p->novel_learn = 50;
    p->novel_eta = 0.005;
    p->novel_floor = 0.01;
    p->novel_factor = 1.5;
    p->novel_level = 2.4;
    p->novel_hold = 400;
    p->shape_window = 8;
    p->shape_history = 384;
    p->shape_gain = 1.8;
    p->shape_gate = 0.4;
    p->shape_z = 4;
    p->shape_floor = 0.05f;
    p->shape_repeat = 0.1f;
    p->level_window = 24;
    p->level_min = 2;
    p->run_min = 100;
}

unsigned
anomaly_ensemble_mask(const char *method)
{
    if (!strcmp(method, "ensemble"))
        return ANOMALY_ENSEMBLE_VOTING;
    if (!strcmp(method, "ensemble-all"))
        return ANOMALY_ENSEMBLE_ALL;
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
anomaly_ensemble_new_with(unsigned mask,
                          const struct anomaly_ensemble_params *p)
{
    assert(mask);
    anomaly_ensemble_t *self = xcalloc(1, sizeof *self);
    self->mask = mask | 1u << ANOMALY_ENSEMBLE_ZSCORE; /* early phase */
    self->p = *p;
    if (self->p.member_warm > UINT16_MAX) /* valid[] is 16-bit */
        self->p.member_warm = UINT16_MAX;
    /* A single chosen member votes whatever its default weight. */
    if ((mask & (mask - 1)) == 0) {
        for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
            self->p.weight[m] = (mask & 1u << m) ? 1 : 0;
        self->p.shape_gain = 0;
    }
    if (self->mask & (1u << ANOMALY_ENSEMBLE_ZSCORE))
        self->zscore = anomaly_zscore_new(self->p.zwindow);
    if (mask & (1u << ANOMALY_ENSEMBLE_MAD))
        self->mad = anomaly_mad_new(64);
    if (mask & (1u << ANOMALY_ENSEMBLE_EWMA))
        self->ewma = anomaly_ewma_new(0.1, 0.005);
    if (mask & (1u << ANOMALY_ENSEMBLE_SEASONAL)) {
        self->seasonal =
            anomaly_seasonal_new(S_DAY_NS, 288, p->daily_alpha, p->daily_gamma);
        anomaly_seasonal_set_smoothing(self->seasonal, p->daily_smooth);
    }
    if (mask & (1u << ANOMALY_ENSEMBLE_WEEKLY)) {
        self->weekly = anomaly_seasonal_new(S_WEEK_NS, 336, p->weekly_alpha,
                                            p->weekly_gamma);
        anomaly_seasonal_set_smoothing(self->weekly, p->weekly_smooth);
        anomaly_seasonal_set_min_seen(self->weekly, p->weekly_min_seen);
    }
    if (mask & (1u << ANOMALY_ENSEMBLE_CUSUM))
        self->cusum = anomaly_cusum_new(0.5, 8, 0.005);
    if (mask & (1u << ANOMALY_ENSEMBLE_HST))
        self->hst = anomaly_hst_new();
    if (mask & (1u << ANOMALY_ENSEMBLE_VOL))
        self->vol = anomaly_vol_new(0.05, 0.002);
    if (mask & (1u << ANOMALY_ENSEMBLE_RANGE))
        self->range = anomaly_range_new(self->p.range_warm);
    if (self->p.level_window > ANOMALY_SHAPE_MEDIAN_MAX)
        self->p.level_window = ANOMALY_SHAPE_MEDIAN_MAX;
    if (self->p.shape_gain > 0) {
        self->shape = anomaly_shape_new(p->shape_window, p->shape_history);
        /* The level member reads the same ring. */
        uint32_t ring = 2u * p->shape_window + p->shape_history;
        if (self->p.level_window > ring)
            self->p.level_window = ring;
    } else if (mask & (1u << ANOMALY_ENSEMBLE_LEVEL))
        /* level alone: a ring just long enough for it. */
        self->shape = anomaly_shape_new(2, self->p.level_window);
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
        self->stat[m] = NAN;
    return self;
}

anomaly_ensemble_t *
anomaly_ensemble_new(unsigned mask)
{
    struct anomaly_ensemble_params p;
    anomaly_ensemble_params_default(&p);
    return anomaly_ensemble_new_with(mask, &p);
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
    anomaly_seasonal_destroy(&self->weekly);
    anomaly_cusum_destroy(&self->cusum);
    anomaly_hst_destroy(&self->hst);
    anomaly_vol_destroy(&self->vol);
    anomaly_range_destroy(&self->range);
    anomaly_shape_destroy(&self->shape);
    free(self);
    *self_p = NULL;
}

/* Is a member's statistic in standard deviations? Those are ignored
 * below min_sigma however they compare with their recent maximum: in
 * pure noise the maximum of n readings keeps creeping up, and a record
 * of 3.5 sigma is no anomaly. */
static bool
s_sigma_unit(int m)
{
    return m == ANOMALY_ENSEMBLE_ZSCORE || m == ANOMALY_ENSEMBLE_MAD ||
           m == ANOMALY_ENSEMBLE_EWMA || m == ANOMALY_ENSEMBLE_SEASONAL ||
           m == ANOMALY_ENSEMBLE_WEEKLY;
}

/* Does seasonal member m (daily or weekly) explain the series better
 * than its plain mean does? Its residual z's are evidence only then: on
 * a series without that cycle (bursty counts, CPU) the residuals are
 * as wide as the series and its z's repeat the other members' at best
 * (twelfth session, docs/ANOMALY.md). Updates nothing. */
static bool
s_season_fits(const anomaly_ensemble_t *self, int m)
{
    if (!(self->p.season_fit > 0))
        return true;
    const anomaly_seasonal_t *s =
        m == ANOMALY_ENSEMBLE_SEASONAL ? self->seasonal : self->weekly;
    return anomaly_seasonal_resid_sd(s) <
           self->p.season_fit * sqrt(self->fit_var);
}

/* The novelty alarm for a reading of value v (finite) at self->count,
 * given the ensemble's r before the hold-off: a deviation from the
 * tracked median larger than any the series ever had on the same side,
 * by a margin, and an r of novel_level or more. The quartiles follow the
 * series by stochastic approximation (each moves eta * scale towards its
 * quantile per reading; O(1) state and work), a long-memory baseline
 * against which the whole history's largest deviation is the bar. The
 * records below and above the median are kept apart: a series whose
 * bursts go up has not shown how far it can fall. No alarm while the
 * ensemble warms up (its confidence is below 1): the records are being
 * learnt. Measured in docs/ANOMALY.md. */
static void
s_novelty(anomaly_ensemble_t *self, double v, double r)
{
    const struct anomaly_ensemble_params *p = &self->p;
    uint64_t n = self->count;
    self->alarm = false;
    self->novelty = 0;
    if (n > p->novel_learn) {
        double *q = self->nq;
        double sc = fmax(fmax((q[2] - q[0]) / 1.349,
                              (self->nhi - self->nlo) * p->novel_floor),
                         1e-9);
        double *rec = &self->nrec[v >= q[1]];
        double e = fabs(v - q[1]) / sc;
        if (*rec > 0) {
            self->novelty = e / *rec;
            bool novel = e > p->novel_factor * *rec;
            bool held = self->nalarm_at && n - self->nalarm_at < p->novel_hold;
            self->alarm = n > p->warm && r >= p->novel_level && novel && !held;
            if (self->alarm)
                self->nalarm_at = n;
        }
        *rec = fmax(*rec, e);
        static const double tau[3] = {0.25, 0.5, 0.75};
        double step = p->novel_eta * sc;
        for (int k = 0; k < 3; k++)
            q[k] += step * (tau[k] - (v < q[k] ? 1.0 : 0.0));
        q[0] = fmin(q[0], q[1]);
        q[2] = fmax(q[2], q[1]);
    } else {
        double d = v - self->nmean;
        self->nmean += d / (double)n;
        self->nm2 += d * (v - self->nmean);
        if (n == p->novel_learn) {
            double sd = n > 1 ? sqrt(self->nm2 / (double)(n - 1)) : 0;
            self->nq[0] = self->nmean - 0.6745 * sd;
            self->nq[1] = self->nmean;
            self->nq[2] = self->nmean + 0.6745 * sd;
        }
    }
    if (n == 1 || v < self->nlo)
        self->nlo = v;
    if (n == 1 || v > self->nhi)
        self->nhi = v;
}

/* The level member's statistic, after the reading went into the shape
 * ring and before the novelty alarm learns it: how far the median of
 * the last level_window readings lies from the series' tracked median,
 * in the novelty alarm's scale units (its tracked interquartile range /
 * 1.349, at least novel_floor of the all-time range). A median of 24
 * readings does not move for a spike or a short burst, only when the
 * series' level has moved and holds: a level shift in a noisy series,
 * which the other members see only as long as their references, set
 * by the series' largest spikes, allow (fifteenth session,
 * docs/ANOMALY.md). NAN until the quartiles are seeded (novel_learn
 * readings) and the ring holds level_window readings. */
static double
s_level(const anomaly_ensemble_t *self)
{
    const struct anomaly_ensemble_params *p = &self->p;
    if (!self->shape || self->count < p->novel_learn || p->level_window == 0)
        return NAN;
    const double *q = self->nq;
    double sc = fmax(fmax((q[2] - q[0]) / 1.349,
                          (self->nhi - self->nlo) * p->novel_floor),
                     1e-9);
    /* Below both the level it votes from and its decayed reference, the
     * statistic changes nothing (no vote; the reference only decays),
     * so when counting shows it is there, 0 stands for it and the
     * selection (about 800 instructions) is skipped: most readings. */
    double t = fmin(p->level_min,
                    self->ref[ANOMALY_ENSEMBLE_LEVEL] * p->decay) * sc;
    if (t > 0 && anomaly_shape_median_within(self->shape, p->level_window,
                                             q[1] - t, q[1] + t))
        return 0;
    double med = anomaly_shape_median(self->shape, p->level_window);
    if (isnan(med))
        return NAN;
    return (med - q[1]) / sc;
}

/* Feed every member; fills self->stat. */
static void
s_members(anomaly_ensemble_t *self, int64_t ts, double value)
{
    double *st = self->stat;
    if (self->shape)
        anomaly_shape_push(self->shape, value);
    if (self->zscore)
        st[ANOMALY_ENSEMBLE_ZSCORE] =
            anomaly_zscore_update(self->zscore, value);
    if (self->mad)
        st[ANOMALY_ENSEMBLE_MAD] = anomaly_mad_update(self->mad, value);
    if (self->ewma)
        st[ANOMALY_ENSEMBLE_EWMA] = anomaly_ewma_update(self->ewma, value);
    if (self->seasonal)
        st[ANOMALY_ENSEMBLE_SEASONAL] =
            anomaly_seasonal_update(self->seasonal, ts, value);
    if (self->weekly)
        st[ANOMALY_ENSEMBLE_WEEKLY] =
            anomaly_seasonal_update(self->weekly, ts, value);
    if (self->cusum)
        st[ANOMALY_ENSEMBLE_CUSUM] = anomaly_cusum_update(self->cusum, value);
    if (self->hst)
        st[ANOMALY_ENSEMBLE_HST] = anomaly_hst_update(self->hst, value);
    if (self->vol)
        st[ANOMALY_ENSEMBLE_VOL] = anomaly_vol_update(self->vol, value);
    if (self->range)
        st[ANOMALY_ENSEMBLE_RANGE] = anomaly_range_update(self->range, value);
    if (self->mask & (1u << ANOMALY_ENSEMBLE_LEVEL))
        st[ANOMALY_ENSEMBLE_LEVEL] = s_level(self);
}

void
anomaly_ensemble_update(anomaly_ensemble_t *self, int64_t ts, double value,
                        double *score, double *confidence, const char **method)
{
    const struct anomaly_ensemble_params *p = &self->p;
    double *st = self->stat;

    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++)
        st[m] = NAN;
    *score = 0;
    *confidence = 0;
    *method = "ensemble";
    self->alarm = false;
    self->novelty = 0;
    if (!isfinite(value))
        return;
    s_members(self, ts, value);
    self->count++;
    if (self->count == 1) {
        self->fit_mean = (float)value;
    } else {
        double d = value - self->fit_mean, a = S_FIT_RATE;
        self->fit_mean = (float)(self->fit_mean + a * d);
        self->fit_var = (float)((1 - a) * (self->fit_var + a * d * d));
    }

    double best = 0;
    int who = -1;
    bool early = self->count <= p->warm;
    for (int m = 0; m < ANOMALY_ENSEMBLE_N; m++) {
        if (!(self->mask & (1u << m)) || isnan(st[m]))
            continue;
        double x = fmin(fabs(st[m]), p->cap), r = 0;
        if (m == ANOMALY_ENSEMBLE_RANGE) {
            /* New extremes are judged on their own, not against past
             * excesses (most of which are zero). */
            if (x > p->range_margin)
                r = p->range_base + p->range_gain * x;
        } else {
            if (!early && self->valid[m] >= p->member_warm &&
                (!s_sigma_unit(m) || x >= p->min_sigma) &&
                (m != ANOMALY_ENSEMBLE_LEVEL || x >= p->level_min))
                r = x / fmax(self->ref[m], S_REF_FLOOR);
            if (r > 0 && (m == ANOMALY_ENSEMBLE_SEASONAL ||
                          m == ANOMALY_ENSEMBLE_WEEKLY) &&
                !s_season_fits(self, m))
                r = 0;
            self->ref[m] = fmax(x, self->ref[m] * p->decay);
            if (self->valid[m] < UINT16_MAX)
                self->valid[m]++;
        }
        if (early) {
            /* Before the members are trusted, only a blatant z counts. */
            r = m == ANOMALY_ENSEMBLE_ZSCORE ? x / p->early_z : 0;
        } else
            r *= p->weight[m];
        if (r > best) {
            best = r;
            who = m;
        }
    }
    /* The novelty alarm keeps to the members' r: a new shape is no new
     * magnitude. */
    s_novelty(self, value, best);
    /* Shape novelty: a spike the members find notable (r >= shape_gate,
     * |z| >= shape_z, at least shape_floor of the all-time range from
     * the series' EWMA mean) but not alarming, because the series once
     * had a far larger one that still sets their references, scores by
     * how unlike the recent context its shape is (docs/ANOMALY.md,
     * eleventh and thirteenth sessions). The search runs only on such
     * readings. */
    double novelty = NAN; /* the shape novelty, once computed */
    bool shaped = self->shape && p->shape_gain > 0;
    if (shaped) {
        /* (The reading went into the ring in s_members.) */
        double z = st[ANOMALY_ENSEMBLE_ZSCORE];
        if (!early && best >= p->shape_gate && fabs(z) >= p->shape_z &&
            fabs(value - self->fit_mean) >=
                p->shape_floor * (self->nhi - self->nlo)) {
            novelty = anomaly_shape_novelty(self->shape);
            double r = p->shape_gain * novelty;
            if (r > best) {
                best = r;
                who = -2;
            }
        }
    }
    /* A stuck value: the current run of identical readings has just
     * become longer than any before (a record of at least run_min
     * repeats, so a series that never repeated itself has none). Its
     * readings are quiet to every member, so r comes from the rule
     * alone: novel_level, as sure as a novelty alarm. Once per run;
     * the novelty alarm keeps the members' r. */
    bool stuck = false;
    if (p->run_min) {
        if (self->count > 1 && value == self->run_last) {
            if (self->run_len < UINT32_MAX)
                self->run_len++;
            stuck = !early && self->run_rec >= p->run_min &&
                    self->run_len == self->run_rec + 1;
        } else {
            if (self->run_len > self->run_rec)
                self->run_rec = self->run_len;
            self->run_len = 0;
        }
        self->run_last = value;
        if (stuck && p->novel_level > best) {
            best = p->novel_level;
            who = -3;
        }
    }
    /* An episode ends when r has stayed below rearm * alarm for calm
     * readings in a row: a fixed hold-off long enough for the longest
     * episode would also silence the next, unrelated anomaly. */
    if (p->calm && self->count < self->hold_until) {
        self->calm = best < p->rearm * p->alarm ? self->calm + 1 : 0;
        if (self->calm >= p->calm)
            self->hold_until = self->count;
    }
    if (self->count < self->hold_until && best < p->escalate * self->hold_level)
        best = 0;
    else if (best >= p->alarm) {
        self->hold_until = self->count + p->hold;
        self->hold_level = best;
        self->calm = 0;
        /* A repeat is silent: the episode is held like any other, so
         * its next readings do not alarm either, but it is not news.
         * The search runs only here and on the shape path's readings.
         * A stuck value repeats by nature; the rule judges it. */
        if (shaped && p->shape_repeat > 0 && who != -3) {
            if (isnan(novelty))
                novelty = anomaly_shape_novelty(self->shape);
            if (novelty < p->shape_repeat)
                best = 0;
        }
    }
    double q = best / p->half;
    *score = 1.0 - exp2(-(q * q * q * q));
    if (who >= 0)
        *method = s_names[who];
    else if (who == -2)
        *method = "shape";
    else if (who == -3)
        *method = "run";
    *confidence = fmin(1.0, (double)self->count / (double)(p->warm + 1));
}

bool
anomaly_ensemble_alarm(const anomaly_ensemble_t *self, double *novelty)
{
    if (novelty)
        *novelty = self->novelty;
    return self->alarm;
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
    if (self->weekly)
        n += anomaly_seasonal_state_size(self->weekly);
    if (self->cusum)
        n += anomaly_cusum_state_size(self->cusum);
    if (self->hst)
        n += anomaly_hst_state_size(self->hst);
    if (self->vol)
        n += anomaly_vol_state_size(self->vol);
    if (self->range)
        n += anomaly_range_state_size(self->range);
    if (self->shape)
        n += anomaly_shape_state_size(self->shape);
    return n;
}

size_t
anomaly_ensemble_parts(const anomaly_ensemble_t *self, const void **parts,
                       size_t max)
{
    /* Every reading reads most of self (parameters, statistics,
     * references), so all its cache lines. */
    const char *me = (const char *)self;
    size_t n = 0;
    for (size_t off = 0; off < sizeof *self && n < max; off += 64)
        parts[n++] = me + off;
    const void *members[] = {self->zscore, self->mad,    self->ewma,
                             self->seasonal, self->weekly, self->cusum,
                             self->hst,    self->vol,    self->range,
                             self->shape};
    for (size_t i = 0; i < sizeof members / sizeof *members && n < max; i++)
        if (members[i])
            parts[n++] = members[i];
    return n;
}

void
anomaly_ensemble_prefetch(const anomaly_ensemble_t *self, int64_t ts)
{
    if (self->zscore)
        anomaly_zscore_prefetch(self->zscore);
    if (self->seasonal)
        anomaly_seasonal_prefetch(self->seasonal, ts);
    if (self->weekly)
        anomaly_seasonal_prefetch(self->weekly, ts);
    if (self->shape)
        anomaly_shape_prefetch(self->shape);
}

/* Run a golden case through the ensemble: the largest score inside the
 * labelled readings and before them, and the novelty alarms inside the
 * labelled readings and outside them. */
static void
s_case(const char *name, unsigned mask, double *in, double *before, int *ain,
       int *aout)
{
    char path[128];
    snprintf(path, sizeof path, "tests/cases/anomaly/%s.csv", name);
    struct anomaly_case *c = anomaly_case_load(path);
    assert(c);
    anomaly_ensemble_t *e = anomaly_ensemble_new(mask);
    bool seen = false;
    *in = *before = 0;
    *ain = *aout = 0;
    for (size_t i = 0; i < c->n; i++) {
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, c->ts[i], c->value[i], &s, &conf, &m);
        assert(s >= 0 && s <= 1 && conf >= 0 && conf <= 1);
        if (anomaly_ensemble_alarm(e, NULL))
            *(c->label[i] ? ain : aout) += 1;
        if (isnan(c->value[i]))
            assert(s == 0);
        seen = seen || c->label[i];
        if (c->label[i])
            *in = fmax(*in, s);
        else if (!seen)
            *before = fmax(*before, s);
    }
    anomaly_ensemble_destroy(&e);
    anomaly_case_destroy(&c);
}

/* The aftershock case with params p: the smallest score at the labelled
 * spikes and the largest elsewhere after the warm-up. */
static void
s_aftershock(const struct anomaly_ensemble_params *p, double *in, double *out)
{
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/aftershock.csv");
    assert(c);
    anomaly_ensemble_t *e = anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    *in = 1;
    *out = 0;
    for (size_t i = 0; i < c->n; i++) {
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, c->ts[i], c->value[i], &s, &conf, &m);
        if (c->label[i])
            *in = fmin(*in, s);
        else if (i > p->warm)
            *out = fmax(*out, s);
    }
    anomaly_ensemble_destroy(&e);
    anomaly_case_destroy(&c);
}

/* A series that climbs from 0 to 1,000 during the warm-up and then
 * stays at 1,000 with noise (sd 1), with a 30-sigma spike at reading
 * 1,500 and a 12-sigma one at 2,100, scored with params p: the scores
 * at the two spikes. The climb makes the all-time range about 1,000,
 * so the second spike is 1 % of it. */
static void
s_ramp_aftershock(const struct anomaly_ensemble_params *p, double *first,
                  double *second)
{
    anomaly_ensemble_t *e =
        anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    uint32_t seed = 5;
    *first = *second = 0;
    for (int i = 0; i <= 2100; i++) {
        double g = 0;
        for (int k = 0; k < 12; k++) {
            seed = seed * 1664525u + 1013904223u;
            g += (double)(seed >> 8) / (1u << 24);
        }
        double v = (i < 700 ? 1000.0 * i / 700 : 1000) + (g - 6);
        if (i == 1500)
            v += 30;
        if (i == 2100)
            v += 12;
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        if (i == 1500)
            *first = s;
        if (i == 2100)
            *second = s;
    }
    anomaly_ensemble_destroy(&e);
}

/* The largest scores at readings a and b of a wavy series with spikes
 * to 9 at a and to 10 at b, scored with params p. */
static void
s_two_spikes(const struct anomaly_ensemble_params *p, int a, int b,
             double *sa, double *sb)
{
    anomaly_ensemble_t *e = anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    uint32_t seed = 1;
    *sa = *sb = 0;
    for (int i = 0; i <= b; i++) {
        seed = seed * 1664525u + 1013904223u;
        double v = sin(i * 0.1) + (double)(seed >> 8) / (1u << 24) * 0.2;
        if (i == a)
            v = 9;
        if (i == b)
            v = 10;
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        if (i == a)
            *sa = s;
        if (i == b)
            *sb = s;
    }
    anomaly_ensemble_destroy(&e);
}

/* Readings that are whole numbers from 0 to 9 (uniform), so that a
 * reading sometimes repeats the one before, with the value 5 held for
 * readings 400 to 549 (a run of 149 repeats, the record, during the
 * warm-up) and from 1,500 to 1,799, scored with params p: the score
 * at reading 1,650 (the 150th repeat, the first beyond the record),
 * the largest between the warm-up and it, and how many readings decided
 * by "run" score 0.5 or more. (When the value moves again, at 1,800,
 * the members alarm: the z-score's window holds nothing but 5s.) */
static void
s_stuck(const struct anomaly_ensemble_params *p, double *at, double *before,
        int *nrun)
{
    anomaly_ensemble_t *e = anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    uint32_t seed = 7;
    *at = *before = 0;
    *nrun = 0;
    for (int i = 0; i < 2500; i++) {
        seed = seed * 1664525u + 1013904223u;
        double v = (double)((seed >> 8) % 10);
        if ((i >= 400 && i < 550) || (i >= 1500 && i < 1800))
            v = 5;
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        if (s >= 0.5 && !strcmp(m, "run"))
            (*nrun)++;
        if (i == 1650)
            *at = s;
        else if (i > (int)p->warm && i < 1650)
            *before = fmax(*before, s);
    }
    anomaly_ensemble_destroy(&e);
}

/* Flat noise (uniform, width 0.2) with spikes to 9 at reading 1,200, to
 * 9.3 at 1,350 (a repeat of the first at about its size: a new extreme
 * by 3 % of the range) and to 14 at 1,500, scored with params p: the
 * scores at the three spikes and the largest score between the second
 * and the third. */
static void
s_repeat(const struct anomaly_ensemble_params *p, double sc[3], double *between)
{
    anomaly_ensemble_t *e = anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    uint32_t seed = 3;
    *between = 0;
    for (int i = 0; i <= 1500; i++) {
        seed = seed * 1664525u + 1013904223u;
        double v = (double)(seed >> 8) / (1u << 24) * 0.2;
        v = i == 1200 ? 9 : i == 1350 ? 9.3 : i == 1500 ? 14 : v;
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        if (i == 1200 || i == 1350 || i == 1500)
            sc[(i - 1200) / 150] = s;
        else if (i > 1350)
            *between = fmax(*between, s);
    }
    anomaly_ensemble_destroy(&e);
}

/* The level member alone on the golden step: the largest score within
 * level_window readings of its first labelled reading, and before it. */
static void
s_level_step(double *in, double *before)
{
    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/step.csv");
    assert(c);
    anomaly_ensemble_t *e = anomaly_ensemble_new(1u << ANOMALY_ENSEMBLE_LEVEL);
    size_t first = c->n;
    *in = *before = 0;
    for (size_t i = 0; i < c->n; i++) {
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, c->ts[i], c->value[i], &s, &conf, &m);
        if (c->label[i] && first == c->n)
            first = i;
        if (first == c->n)
            *before = fmax(*before, s);
        else if (i < first + e->p.level_window)
            *in = fmax(*in, s);
    }
    assert(first < c->n);
    anomaly_ensemble_destroy(&e);
    anomaly_case_destroy(&c);
}

/* Readings of seeded Laplace noise (heavy tails, no cycle; 6,000 at 5 minutes, three
 * weeks) that score above 0.01 with a seasonal member deciding, under
 * params p. */
static int
s_noise_seasonal(const struct anomaly_ensemble_params *p)
{
    anomaly_ensemble_t *e = anomaly_ensemble_new_with(ANOMALY_ENSEMBLE_VOTING, p);
    uint32_t seed = 11;
    int n = 0;
    for (int i = 0; i < 6000; i++) {
        seed = seed * 1664525u + 1013904223u;
        double u = ((double)(seed >> 8) + 0.5) / (1u << 24);
        double v = 10 + (u < 0.5 ? log(2 * u) : -log(2 - 2 * u));
        double s, conf;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        if (s > 0.01 && (!strcmp(m, "seasonal") || !strcmp(m, "weekly")))
            n++;
    }
    anomaly_ensemble_destroy(&e);
    return n;
}

/* Novelty alarms of a wavy series with spikes of height[k] at at[k] (n
 * spikes, at ascending): alarmed[k] says whether spike k alarmed; returns
 * the alarms in all. */
static int
s_spike_alarms(const int *at, const double *height, size_t n, bool *alarmed)
{
    anomaly_ensemble_t *e = anomaly_ensemble_new(ANOMALY_ENSEMBLE_VOTING);
    uint32_t seed = 7;
    int total = 0;
    size_t k = 0;
    for (int i = 0; i <= at[n - 1]; i++) {
        seed = seed * 1664525u + 1013904223u;
        double v = sin(i * 0.1) + (double)(seed >> 8) / (1u << 24) * 0.2;
        bool spike = k < n && i == at[k];
        if (spike)
            v = height[k];
        double s, conf, nov;
        const char *m;
        anomaly_ensemble_update(e, (int64_t)i * 300000000000LL, v, &s, &conf,
                                &m);
        bool a = anomaly_ensemble_alarm(e, &nov);
        assert(nov >= 0 && (!a || nov >= 1.5));
        total += a;
        if (spike)
            alarmed[k++] = a;
    }
    anomaly_ensemble_destroy(&e);
    return total;
}

void
anomaly_ensemble_test(bool verbose)
{
    assert(anomaly_ensemble_mask("ensemble") == ANOMALY_ENSEMBLE_VOTING);
    assert(anomaly_ensemble_mask("ensemble-all") == ANOMALY_ENSEMBLE_ALL);
    assert(anomaly_ensemble_mask("mad") == 1u << ANOMALY_ENSEMBLE_MAD);
    assert(anomaly_ensemble_mask("zscore") == 0);
    assert(anomaly_ensemble_mask("nope") == 0);
    anomaly_ensemble_t *e = anomaly_ensemble_new(ANOMALY_ENSEMBLE_ALL);
    anomaly_ensemble_t *ev = anomaly_ensemble_new(ANOMALY_ENSEMBLE_VOTING);
    if (verbose)
        printf("   state %zu bytes (ensemble %zu)\n",
               anomaly_ensemble_state_size(e), anomaly_ensemble_state_size(ev));
    anomaly_ensemble_destroy(&ev);
    assert(anomaly_ensemble_state_size(e) < 16384);
    anomaly_ensemble_destroy(&e);
    anomaly_ensemble_destroy(&e);

    /* Golden cases: each anomaly is flagged (score >= 0.5) and nothing
     * before it is; flat line and noise never alarm. The advisory members
     * of "ensemble-all" do not change a score. */
    const char *hit[] = {"spike", "step", "seasonal", "gaps"};
    for (size_t k = 0; k < sizeof hit / sizeof hit[0]; k++) {
        double in, before, in2, before2;
        int ain, aout, ain2, aout2;
        s_case(hit[k], ANOMALY_ENSEMBLE_VOTING, &in, &before, &ain, &aout);
        s_case(hit[k], ANOMALY_ENSEMBLE_ALL, &in2, &before2, &ain2, &aout2);
        if (verbose)
            printf("   %s: before %.3f in %.3f, novelty alarms in %d out %d\n",
                   hit[k], before, in, ain, aout);
        assert(in >= 0.5 && before < 0.5);
        assert(in == in2 && before == before2);
        /* The novelty alarm never fires outside the anomaly; on the
         * spike and the step it fires once, inside it. */
        assert(aout == 0 && ain == ain2 && aout2 == 0);
        if (k < 2)
            assert(ain == 1);
    }
    const char *quiet[] = {"flat", "noise"};
    for (size_t k = 0; k < 2; k++) {
        double in, before, in2, before2;
        int ain, aout, ain2, aout2;
        s_case(quiet[k], ANOMALY_ENSEMBLE_VOTING, &in, &before, &ain, &aout);
        s_case(quiet[k], ANOMALY_ENSEMBLE_ALL, &in2, &before2, &ain2, &aout2);
        if (verbose)
            printf("   %s: max %.3f\n", quiet[k], before);
        assert(before < 0.5 && before == before2);
        assert(ain + aout + ain2 + aout2 == 0);
    }

    /* Two anomalies 150 readings apart, the series calm in between: the
     * second alarms too once the first episode is over (rearm/calm);
     * with the fixed hold-off alone it is silenced. */
    struct anomaly_ensemble_params p;
    anomaly_ensemble_params_default(&p);
    double sa, sb;
    s_two_spikes(&p, 1200, 1350, &sa, &sb);
    if (verbose)
        printf("   two spikes: %.3f %.3f\n", sa, sb);
    assert(sa >= 0.5 && sb >= 0.5);
    p.calm = 0;
    s_two_spikes(&p, 1200, 1350, &sa, &sb);
    assert(sa >= 0.5 && sb == 0);

    /* The seasonal members vote only while their model explains the
     * series: on noise without a cycle they decide nothing; without the
     * rule they do. */
    anomaly_ensemble_params_default(&p);
    int nfit = s_noise_seasonal(&p);
    p.season_fit = 0;
    int nall = s_noise_seasonal(&p);
    if (verbose)
        printf("   noise, seasonal members deciding: %d (without the fit "
               "rule %d)\n", nfit, nall);
    assert(nfit == 0 && nall > 0);

    /* Shape novelty: a spike of 12 sigma 600 readings after one of 20
     * scores as an anomaly too (their shapes are unlike the noise around
     * them); without it the first spike's references hold it down. */
    double ain, aout;
    anomaly_ensemble_params_default(&p);
    s_aftershock(&p, &ain, &aout);
    if (verbose)
        printf("   aftershock: spikes %.3f, elsewhere %.3f", ain, aout);
    assert(ain >= 0.5 && aout < 0.5);
    p.shape_gain = 0;
    s_aftershock(&p, &ain, &aout);
    if (verbose)
        printf("; without shape: spikes %.3f\n", ain);
    assert(ain < 0.5 && aout < 0.5);
    /* ... but not when the spike is small for the series: 12 sigma of
     * noise is 1 % of a range of 1,000, under shape_floor (5 %), so the
     * shape novelty does not count there (thirteenth session). */
    double s1, s2;
    anomaly_ensemble_params_default(&p);
    s_ramp_aftershock(&p, &s1, &s2);
    if (verbose)
        printf("   aftershock after a climb: spikes %.3f %.3f", s1, s2);
    assert(s1 >= 0.5 && s2 < 0.5);
    p.shape_floor = 0;
    s_ramp_aftershock(&p, &s1, &s2);
    if (verbose)
        printf("; without the floor %.3f %.3f\n", s1, s2);
    assert(s1 >= 0.5 && s2 >= 0.5);

    /* A spike that repeats one 150 readings before at about its size
     * (a new extreme by 3 % of the range, so the range member alone
     * would alarm) is silent, and its hold-off keeps the readings
     * after it quiet; a far larger spike after it alarms. Without
     * shape_repeat the repeat scores as an anomaly (fourteenth
     * session). */
    double rep[3], between;
    anomaly_ensemble_params_default(&p);
    s_repeat(&p, rep, &between);
    if (verbose)
        printf("   repeated spike: %.3f %.3f %.3f (between %.3f)", rep[0],
               rep[1], rep[2], between);
    assert(rep[0] >= 0.5 && rep[1] == 0 && rep[2] >= 0.5 && between < 0.5);
    p.shape_repeat = 0;
    s_repeat(&p, rep, &between);
    if (verbose)
        printf("; without the rule %.3f %.3f %.3f\n", rep[0], rep[1], rep[2]);
    assert(rep[0] >= 0.5 && rep[1] >= 0.5 && rep[2] >= 0.5 && between < 0.5);

    /* A stuck value: the value held for 300 readings scores once, by
     * the run rule, when its run becomes longer than the longest
     * before (149 repeats, during the warm-up); nothing between the
     * warm-up and it does. Without the rule it does not score: to
     * every member a held value is a quiet stretch (sixteenth
     * session). */
    {
        double at, before;
        int nrun;
        anomaly_ensemble_params_default(&p);
        s_stuck(&p, &at, &before, &nrun);
        if (verbose)
            printf("   stuck value: %.3f (before it %.3f, %d by run)", at,
                   before, nrun);
        assert(at >= 0.5 && before < 0.5 && nrun == 1);
        p.run_min = 0;
        s_stuck(&p, &at, &before, &nrun);
        if (verbose)
            printf("; without the rule %.3f (%.3f, %d)\n", at, before, nrun);
        assert(at < 0.5 && before < 0.5 && nrun == 0);
    }

    /* The level member alone, on the golden cases: the step is
     * flagged once the median of 24 readings has crossed it (half the
     * window after it starts, so just after its 10 labelled readings)
     * and nothing before it is; a single spike, the broken daily cycle,
     * noise and a flat line never reach 0.5 (fifteenth session). */
    {
        double in, before;
        int lain, laout;
        s_level_step(&in, &before);
        if (verbose)
            printf("   level alone: step before %.3f, within 24 readings "
                   "%.3f", before, in);
        assert(in >= 0.5 && before < 0.5);
        const char *calm[] = {"spike", "seasonal", "noise", "flat"};
        for (size_t k = 0; k < 4; k++) {
            s_case(calm[k], 1u << ANOMALY_ENSEMBLE_LEVEL, &in, &before,
                   &lain, &laout);
            if (verbose)
                printf(", %s %.3f", calm[k], fmax(in, before));
            assert(in < 0.5 && before < 0.5);
        }
        if (verbose)
            printf("\n");
    }

    /* The novelty alarm: a spike during the warm-up does not alarm (but
     * sets the record); the first spike after it that beats the record
     * by half alarms; one as high 100 readings later does not (no new
     * record); one far higher 200 readings later does not either (within
     * the 400-reading hold) but raises the record, so one just above the
     * first after the hold does not; one twice the highest does. */
    const int at[] = {500, 1200, 1300, 1400, 1700, 2200};
    const double height[] = {6, 12, 12, 30, 13, 60};
    bool alarmed[6];
    int total = s_spike_alarms(at, height, 6, alarmed);
    if (verbose)
        printf("   novelty alarms at spikes: %d %d %d %d %d %d (%d in all)\n",
               alarmed[0], alarmed[1], alarmed[2], alarmed[3], alarmed[4],
               alarmed[5], total);
    assert(!alarmed[0] && alarmed[1] && !alarmed[2] && !alarmed[3] &&
           !alarmed[4] && alarmed[5] && total == 2);

    /* The records above and below the median are apart: after a burst
     * to 30 (alarmed), a dip to -12 is a depth never seen and alarms,
     * though it is smaller than the burst; a second dip as deep does
     * not. */
    const int at2[] = {1200, 1700, 2200};
    const double height2[] = {30, -12, -12};
    bool alarmed2[3];
    total = s_spike_alarms(at2, height2, 3, alarmed2);
    if (verbose)
        printf("   burst then dips: %d %d %d (%d in all)\n", alarmed2[0],
               alarmed2[1], alarmed2[2], total);
    assert(alarmed2[0] && alarmed2[1] && !alarmed2[2] && total == 2);
    TEST_OK("anomaly_ensemble");
}
