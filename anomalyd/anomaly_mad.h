/*
 * anomaly_mad: robust detector. Each reading is compared with the median
 * of the previous `window` readings, in units of the robust spread: the
 * larger of 1.4826 MAD and IQR / 1.349 (both equal sigma for Gaussian
 * data), so a few outliers in the window do not hide the next one the way
 * they inflate a standard deviation.
 *
 * State: the window twice (time order and sorted), at most
 * 2 * ANOMALY_MAD_WINDOW_MAX doubles.
 */
#ifndef SP_ANOMALY_MAD_H
#define SP_ANOMALY_MAD_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_MAD_WINDOW_MAX 256
#define ANOMALY_MAD_MIN_COUNT 8

typedef struct anomaly_mad anomaly_mad_t;

/* Create over the previous `window` readings (clamped to
 * [ANOMALY_MAD_MIN_COUNT, ANOMALY_MAD_WINDOW_MAX]). Cannot fail. */
anomaly_mad_t *anomaly_mad_new(size_t window);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_mad_destroy(anomaly_mad_t **self_p);
/* Robust z of value (signed), then learn it. NAN while fewer than
 * ANOMALY_MAD_MIN_COUNT readings are known, or for a non-finite value
 * (not learnt). */
double anomaly_mad_update(anomaly_mad_t *self, double value);
/* Bytes of state. */
size_t anomaly_mad_state_size(const anomaly_mad_t *self);

/* Selftest: asserts on failure, prints " * anomaly_mad: OK". */
void anomaly_mad_test(bool verbose);

#endif
