/*
 * anomaly_ensemble: the detectors of one series combined into one score
 * in [0,1], with a confidence and the name of the detector that
 * contributed most.
 *
 * Members: rolling z-score, robust MAD/IQR, EWMA chart, seasonal
 * (Holt-Winters residual, daily and weekly), CUSUM change points,
 * half-space trees, volatility ratio, range (new extremes) and level
 * (the median of the last readings against the long-run median), and
 * a rule for stuck values (a run of identical readings longer than any
 * before). Each
 * member's statistic is made comparable across members and series by
 * dividing it by the largest value that member has produced recently (a
 * slowly decaying maximum): r >= 1 means "more surprising than anything
 * this member saw lately". The ensemble takes the largest weighted r,
 * then, after an alarm, holds off until the series has calmed down or for
 * at most `hold` readings (an anomaly episode alarms once), and maps r to [0,1] so that ANOMALY_ENSEMBLE_PARAMS' `half` is
 * 0.5. Causal: a score depends only on readings at or before it.
 */
#ifndef SP_ANOMALY_ENSEMBLE_H
#define SP_ANOMALY_ENSEMBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Method names the ensemble answers to (anomaly.h adds "zscore"). */
#define ANOMALY_ENSEMBLE_METHODS                                               \
    "mad ewma seasonal weekly cusum hst vol range level ensemble ensemble-all"

/* Members, as bit numbers of a mask. */
enum anomaly_ensemble_member {
    ANOMALY_ENSEMBLE_ZSCORE,
    ANOMALY_ENSEMBLE_MAD,
    ANOMALY_ENSEMBLE_EWMA,
    ANOMALY_ENSEMBLE_SEASONAL,
    ANOMALY_ENSEMBLE_WEEKLY,
    ANOMALY_ENSEMBLE_CUSUM,
    ANOMALY_ENSEMBLE_HST,
    ANOMALY_ENSEMBLE_VOL,
    ANOMALY_ENSEMBLE_RANGE,
    ANOMALY_ENSEMBLE_LEVEL,
    ANOMALY_ENSEMBLE_N
};
#define ANOMALY_ENSEMBLE_ALL ((1u << ANOMALY_ENSEMBLE_N) - 1)
/* The members that vote by default ("ensemble"). mad, cusum and hst
 * lowered the NAB score when they voted (docs/ANOMALY.md), and cost two
 * thirds of the time, so only "ensemble-all" computes them, as advisory
 * members (weight 0, raw statistics visible). */
#define ANOMALY_ENSEMBLE_VOTING                                                \
    (1u << ANOMALY_ENSEMBLE_ZSCORE | 1u << ANOMALY_ENSEMBLE_EWMA |             \
     1u << ANOMALY_ENSEMBLE_SEASONAL | 1u << ANOMALY_ENSEMBLE_WEEKLY |         \
     1u << ANOMALY_ENSEMBLE_VOL | 1u << ANOMALY_ENSEMBLE_RANGE |             \
     1u << ANOMALY_ENSEMBLE_LEVEL)

/* Plain data: the ensemble's tunables (anomaly_ensemble_params_default
 * gives the configuration measured in docs/ANOMALY.md). */
struct anomaly_ensemble_params {
    size_t zwindow;      /* rolling z-score window, readings */
    double decay;        /* per-reading decay of each member's reference max */
    size_t warm;         /* readings before members are trusted */
    size_t member_warm;  /* statistics a member produces before it votes */
    double early_z;      /* before warm: |z| that counts as r = 1 */
    double cap;          /* statistics are capped here before normalising */
    double min_sigma;    /* sigma-unit members vote only from this |z| */
    double alarm;        /* r from which an alarm starts a hold-off */
    size_t hold;         /* readings scored 0 after an alarm at most ... */
    double escalate;     /* ... unless r passes this multiple of the alarm's */
    double rearm;        /* ... or r stays below rearm * alarm ... */
    size_t calm;         /* ... for this many readings in a row (0 = off) */
    size_t range_warm;   /* readings before new extremes count */
    double range_base;   /* r of a new extreme ... */
    double range_gain;   /* ... plus gain times its excess ... */
    double range_margin; /* ... when the excess passes this fraction */
    double half;         /* r that maps to score 0.5 */
    double daily_alpha, daily_gamma;   /* daily Holt-Winters weights */
    double weekly_alpha, weekly_gamma; /* weekly Holt-Winters weights */
    unsigned weekly_min_seen; /* weeks a weekly bin needs before voting */
    /* The seasonal members vote only while their residuals' standard
     * deviation is below season_fit times the series' own (an EWMA
     * about an EWMA mean, weight 0.005 per reading): a model that does
     * not explain the series gives no evidence. 0 = always vote. (A
     * float: it fills the padding after weekly_min_seen.) */
    float season_fit;
    double daily_smooth;      /* smoothed-residual weight, daily (0 = off) */
    double weekly_smooth;     /* smoothed-residual weight, weekly (0 = off) */
    double weight[ANOMALY_ENSEMBLE_N]; /* member weights (0 = advisory) */
    /* The novelty alarm (anomaly_ensemble_alarm): */
    size_t novel_learn;  /* readings whose mean and sd seed the quantiles */
    double novel_eta;    /* quantile tracking step, in units of the scale */
    double novel_floor;  /* scale floor, fraction of the all-time range */
    double novel_factor; /* alarm when the deviation passes this multiple
                            of the largest one the series ever had ... */
    size_t novel_hold;   /* ... at most once per this many readings */
    double novel_level;  /* ... and when the ensemble's r reaches this */
    /* Shape novelty (anomaly_shape.h), ensembles only: */
    /* (16 bits each since the fifteenth session, 32 before: with
     * level_window and run_min they take the place of one size_t,
     * shape_repeat below the other's; ANOMALY_SHAPE_*_MAX bound them.) */
    uint16_t shape_window;  /* readings in a shape */
    uint16_t shape_history; /* recent windows it is compared with */
    uint16_t level_window;  /* readings in the level member's median
                               (below; here for the padding; at most
                               ANOMALY_SHAPE_MEDIAN_MAX) */
    /* A stuck value: a run of identical readings that becomes longer
     * than any run the series had before, once that record is at least
     * run_min repeats, alarms with r = novel_level, once per run (0 =
     * off; sixteenth session, docs/ANOMALY.md). A sensor that freezes,
     * or a counter that stops, changes no statistic of the members:
     * they see a quiet stretch. (16 bits: it takes the half of the
     * place level_window had.) */
    uint16_t run_min;
    double shape_gain;    /* r = gain x novelty (0 = off) ... */
    double shape_gate;    /* ... when the members' r reaches this ... */
    /* ... and the reading's |z| this (floats: together they take the
     * double shape_z took before shape_floor) ... */
    float shape_z;
    /* ... and it lies at least this fraction of the series' all-time
     * range from its EWMA mean (0 = off): the novelty is scale free, so
     * without a floor a wiggle that is tiny for the series can score
     * (thirteenth session, docs/ANOMALY.md). */
    float shape_floor;
    /* An alarm whose last shape_window readings repeat a recent window
     * (shape novelty below this; 0 = off) is silent: it starts its
     * hold-off as any alarm does, but scores 0. A repeat of what the
     * series did within the last shape_history windows, at about the
     * same size, is the same kind of event again (fourteenth session,
     * docs/ANOMALY.md). */
    float shape_repeat;
    /* The level member: the median of the last level_window readings
     * (from the shape ring) against the series' long-memory median (the
     * novelty alarm's tracked quartiles), in units of its tracked
     * interquartile range / 1.349; it votes only from level_min such
     * units (fifteenth session, docs/ANOMALY.md). A level that has
     * moved and holds, which a single spike does not do. (level_min
     * fills the padding after shape_repeat; level_window is above.) */
    float level_min;
};

typedef struct anomaly_ensemble anomaly_ensemble_t;

/* The defaults. Cannot fail. */
void anomaly_ensemble_params_default(struct anomaly_ensemble_params *p);
/* Mask of members for a method name ("ensemble" = the voting members,
 * "ensemble-all" = all), 0 if unknown. */
unsigned anomaly_ensemble_mask(const char *method);
/* Static name of a member. */
const char *anomaly_ensemble_name(int member);

/* Create with the members of mask (non-zero) and the default params.
 * Cannot fail. */
anomaly_ensemble_t *anomaly_ensemble_new(unsigned mask);
/* Create with explicit params (copied). Cannot fail. */
anomaly_ensemble_t *
anomaly_ensemble_new_with(unsigned mask,
                          const struct anomaly_ensemble_params *p);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_ensemble_destroy(anomaly_ensemble_t **self_p);
/* Score a reading at ts and learn it: *score in [0,1], *confidence in
 * [0,1], *method the static name of the strongest member. A non-finite
 * value is a gap: score 0, nothing learnt. Cannot fail. */
void anomaly_ensemble_update(anomaly_ensemble_t *self, int64_t ts, double value,
                             double *score, double *confidence,
                             const char **method);
/* The novelty alarm of the last reading: true when, after the warm-up,
 * the ensemble's r (before the hold-off) reached novel_level (2.4, twice
 * the score's 0.5 level) and the reading's deviation from the series'
 * tracked median, in units of its tracked interquartile range, exceeds
 * novel_factor times the largest deviation the series has ever had on
 * the same side of the median (a magnitude never seen before in that
 * direction), at most once per novel_hold readings. It is a decision of
 * its own next to the score (docs/ANOMALY.md, "A novelty alarm");
 * *novelty (may be NULL) gets the deviation over that record (>=
 * novel_factor when the alarm is on, 0 while learning). */
bool anomaly_ensemble_alarm(const anomaly_ensemble_t *self, double *novelty);
/* The members' raw statistics for the last reading (NAN when a member is
 * absent or learning), for evaluation and debugging. The level member's
 * is 0 when counting showed it under both the level it votes from and
 * its decayed reference, where its exact value changes nothing. */
void anomaly_ensemble_stats(const anomaly_ensemble_t *self,
                            double stats[ANOMALY_ENSEMBLE_N]);
/* Bytes of state. */
size_t anomaly_ensemble_state_size(const anomaly_ensemble_t *self);
/* Prefetching (anomaly_store_prefetch): the addresses of the structures
 * every reading touches (self and its members), at most max, into
 * parts; returns how many. */
size_t anomaly_ensemble_parts(const anomaly_ensemble_t *self,
                              const void **parts, size_t max);
/* Start loading the time-dependent state a reading at ts touches
 * (ring slot, season bins); the parts must be cached already. No effect
 * on results. */
void anomaly_ensemble_prefetch(const anomaly_ensemble_t *self, int64_t ts);

/* Selftest: asserts on failure, prints " * anomaly_ensemble: OK". */
void anomaly_ensemble_test(bool verbose);

#endif
