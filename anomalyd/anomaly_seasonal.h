/*
 * anomaly_seasonal: seasonal detector. An additive Holt-Winters model
 * without trend (level + one seasonal term per time-of-period bin) is
 * learnt online; each reading is scored on its residual from the model's
 * one-step forecast, in units of the residual's own spread. A daily cycle
 * that breaks (a flat day, a missing peak) shows up although every value
 * stays within the series' usual range.
 *
 * Bins are by timestamp (period / bins wide), so irregular sampling and
 * gaps are fine. State: two arrays of `bins` (<= ANOMALY_SEASONAL_BINS_MAX).
 */
#ifndef SP_ANOMALY_SEASONAL_H
#define SP_ANOMALY_SEASONAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ANOMALY_SEASONAL_BINS_MAX 512
/* Periods a bin must have been seen in before its residual is scored
 * (the default; see anomaly_seasonal_set_min_seen). */
#define ANOMALY_SEASONAL_MIN_SEEN 2

typedef struct anomaly_seasonal anomaly_seasonal_t;

/* period_ns: season length (86400 s for daily); bins: bins per period
 * (clamped to [1, ANOMALY_SEASONAL_BINS_MAX]); alpha: level weight;
 * gamma: seasonal weight. Cannot fail. */
anomaly_seasonal_t *anomaly_seasonal_new(int64_t period_ns, size_t bins,
                                         double alpha, double gamma);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_seasonal_destroy(anomaly_seasonal_t **self_p);
/* Signed residual z of value at ts, then learn it. NAN while the bin is
 * new or for a non-finite value (not learnt). */
double anomaly_seasonal_update(anomaly_seasonal_t *self, int64_t ts,
                               double value);
/* Periods a bin must have been seen in before it is scored (>= 1). */
void anomaly_seasonal_set_min_seen(anomaly_seasonal_t *self, unsigned n);
/* Also score the exponentially weighted mean of the standardised
 * residuals (weight lambda, in units of its own standard error), and
 * report whichever is larger: a day that runs a little low all along (a
 * holiday) shows there although no single reading is far off. 0 turns it
 * off (the default). */
void anomaly_seasonal_set_smoothing(anomaly_seasonal_t *self, double lambda);
/* The model's forecast for ts (level + season), NAN before learning. */
double anomaly_seasonal_forecast(const anomaly_seasonal_t *self, int64_t ts);
/* The standard deviation of the model's residuals (an EWMA, weight
 * 0.01 per residual), NAN until it is scored: how well the model
 * explains the series. */
double anomaly_seasonal_resid_sd(const anomaly_seasonal_t *self);
/* Bytes of state. */
size_t anomaly_seasonal_state_size(const anomaly_seasonal_t *self);
/* Start loading the bin a reading at ts updates (self itself must be
 * cached already; see anomaly_store_prefetch). No effect on results. */
void anomaly_seasonal_prefetch(const anomaly_seasonal_t *self, int64_t ts);

/* Selftest: asserts on failure, prints " * anomaly_seasonal: OK". */
void anomaly_seasonal_test(bool verbose);

#endif
