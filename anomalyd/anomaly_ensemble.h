/*
 * anomaly_ensemble: the detectors of one series combined into one score
 * in [0,1], with a confidence and the name of the detector that
 * contributed most.
 *
 * Members: rolling z-score, robust MAD/IQR, EWMA chart, seasonal
 * (Holt-Winters residual, daily), CUSUM change points and half-space
 * trees. A method name selects one member ("mad") or all ("ensemble").
 */
#ifndef SP_ANOMALY_ENSEMBLE_H
#define SP_ANOMALY_ENSEMBLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Method names the ensemble answers to (anomaly.h adds "zscore"). */
#define ANOMALY_ENSEMBLE_METHODS "mad ewma seasonal cusum hst ensemble"

/* Members, as bit numbers of a mask. */
enum anomaly_ensemble_member {
    ANOMALY_ENSEMBLE_ZSCORE,
    ANOMALY_ENSEMBLE_MAD,
    ANOMALY_ENSEMBLE_EWMA,
    ANOMALY_ENSEMBLE_SEASONAL,
    ANOMALY_ENSEMBLE_CUSUM,
    ANOMALY_ENSEMBLE_HST,
    ANOMALY_ENSEMBLE_N
};

typedef struct anomaly_ensemble anomaly_ensemble_t;

/* Mask of members for a method name ("ensemble" = all), 0 if unknown. */
unsigned anomaly_ensemble_mask(const char *method);
/* Static name of a member. */
const char *anomaly_ensemble_name(int member);

/* Create with the members of mask (non-zero). Cannot fail. */
anomaly_ensemble_t *anomaly_ensemble_new(unsigned mask);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_ensemble_destroy(anomaly_ensemble_t **self_p);
/* Score a reading at ts and learn it: *score in [0,1], *confidence in
 * [0,1], *method the static name of the strongest member. A non-finite
 * value is a gap: score 0, nothing learnt. Cannot fail. */
void anomaly_ensemble_update(anomaly_ensemble_t *self, int64_t ts,
                             double value, double *score, double *confidence,
                             const char **method);
/* The members' raw statistics for the last reading (NAN when a member is
 * absent or learning), for evaluation and debugging. */
void anomaly_ensemble_stats(const anomaly_ensemble_t *self,
                            double stats[ANOMALY_ENSEMBLE_N]);
/* Bytes of state. */
size_t anomaly_ensemble_state_size(const anomaly_ensemble_t *self);

/* Selftest: asserts on failure, prints " * anomaly_ensemble: OK". */
void anomaly_ensemble_test(bool verbose);

#endif
