/*
 * anomaly: one series' detector, whichever method the configuration names.
 *
 * This is the facade the daemon, the filter and the NAB harness use: feed
 * readings in time order, get one result per reading. The result always
 * carries the rolling z-score (the seed's ?threshold= is in z units, SPEC
 * "Anomaly scores") next to the chosen method's normalised score, so the
 * query-time threshold and min_score both work whatever the method.
 */
#ifndef SP_ANOMALY_H
#define SP_ANOMALY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Scores are rounded to this: finer digits mean nothing, and short
 * numbers print fast (the filter prints millions of them). */
#define ANOMALY_SCORE_QUANTUM 1e-6

/* Significant digits of the reported z (more mean nothing). */
#define ANOMALY_Z_DIGITS 6

/* Longest method name. */
#define ANOMALY_METHOD_MAX 32

/* Plain data: how to build a series' detector. */
struct anomaly_conf {
    char method[ANOMALY_METHOD_MAX]; /* "zscore", "ensemble", ... */
    size_t window;                   /* rolling window, readings */
    double threshold;                /* |z| at which a reading is an anomaly */
};

/* Plain data: what one reading scored. */
struct anomaly_result {
    double z;           /* rolling z-score, rounded to
                           ANOMALY_Z_DIGITS significant digits; NAN while
                           learning or a gap */
    double score;       /* normalised score in [0,1] of the method */
    double confidence;  /* [0,1]: how much history backs the score */
    const char *method; /* static name of the detector that contributed most */
    bool anomaly;       /* score >= 0.5 */
    bool alarm;         /* the novelty alarm (anomaly_ensemble_alarm; never
                           for the zscore method): far fewer than anomaly
                           events, with few outside NAB's labelled windows */
};

typedef struct anomaly anomaly_t;

/* Fill conf with the defaults (method "ensemble", window 200,
 * threshold 3). Cannot fail. */
void anomaly_conf_default(struct anomaly_conf *conf);
/* True when name is a known method. */
bool anomaly_method_valid(const char *name);
/* Space separated list of the known methods (static). */
const char *anomaly_methods(void);

/* Create a series' detector. Returns NULL when the method is unknown.
 * Caller destroys. */
anomaly_t *anomaly_new(const struct anomaly_conf *conf);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_destroy(anomaly_t **self_p);
/* Score one reading (ts in ns; readings in time order) and learn from it.
 * A non-finite value is a gap: it scores 0 and is not learnt. Cannot
 * fail. */
void anomaly_update(anomaly_t *self, int64_t ts, double value,
                    struct anomaly_result *out);
/* Bytes of per-series state (the budget is 16 KB). */
size_t anomaly_state_size(const anomaly_t *self);
/* Prefetching (anomaly_store_prefetch): the addresses of the structures
 * every reading touches, at most max, into parts; returns how many. */
size_t anomaly_parts(const anomaly_t *self, const void **parts, size_t max);
/* Start loading the time-dependent state a reading at ts touches; the
 * parts must be cached already. No effect on results. */
void anomaly_prefetch(const anomaly_t *self, int64_t ts);

/* Selftest: asserts on failure, prints " * anomaly: OK". */
void anomaly_test(bool verbose);

#endif
