/*
 * anomaly_cusum: two-sided CUSUM change-point detector (Page 1954).
 * Readings are standardised against a slow baseline; the sums
 * S+ = max(0, S+ + z - k) and S- = max(0, S- - z - k) grow while the
 * level sits above or below it. When either passes h a change point is
 * declared, the sums restart and the baseline jumps to the recent level,
 * so one change gives one alarm. Constant state.
 */
#ifndef SP_ANOMALY_CUSUM_H
#define SP_ANOMALY_CUSUM_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_CUSUM_MIN_COUNT 30

typedef struct anomaly_cusum anomaly_cusum_t;

/* k: allowance in sigmas (0.5 detects a 1 sigma shift); h: decision
 * interval in sigmas; alpha: baseline weight. Cannot fail. */
anomaly_cusum_t *anomaly_cusum_new(double k, double h, double alpha);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_cusum_destroy(anomaly_cusum_t **self_p);
/* The larger sum after value, signed (+ for upward), in units of h (1.0 =
 * change point), then learn. NAN while learning or for a non-finite
 * value (not learnt). */
double anomaly_cusum_update(anomaly_cusum_t *self, double value);
/* Change points declared so far. */
size_t anomaly_cusum_changes(const anomaly_cusum_t *self);
/* Bytes of state. */
size_t anomaly_cusum_state_size(const anomaly_cusum_t *self);

/* Selftest: asserts on failure, prints " * anomaly_cusum: OK". */
void anomaly_cusum_test(bool verbose);

#endif
