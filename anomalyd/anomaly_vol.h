/*
 * anomaly_vol: volatility change detector. The short-term mean absolute
 * change between consecutive readings is compared with its long-term
 * mean; a ratio well above 1 means the series became much noisier or
 * spikier (denser spikes, a flapping sensor, a misconfigured autoscaler).
 * Constant state.
 */
#ifndef SP_ANOMALY_VOL_H
#define SP_ANOMALY_VOL_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_VOL_MIN_COUNT 100

typedef struct anomaly_vol anomaly_vol_t;

/* fast, slow: weights of a new change in the short and long means,
 * 0 < slow < fast <= 1. Cannot fail. */
anomaly_vol_t *anomaly_vol_new(double fast, double slow);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_vol_destroy(anomaly_vol_t **self_p);
/* Short over long mean absolute change after value, then learn. NAN while
 * learning, when the history never changed, or for a non-finite value
 * (not learnt). */
double anomaly_vol_update(anomaly_vol_t *self, double value);
/* Bytes of state. */
size_t anomaly_vol_state_size(const anomaly_vol_t *self);

/* Selftest: asserts on failure, prints " * anomaly_vol: OK". */
void anomaly_vol_test(bool verbose);

#endif
