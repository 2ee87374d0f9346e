/*
 * anomaly_ewma: EWMA control chart. A fast exponentially weighted mean of
 * the readings is compared with a slow baseline mean, in units of the
 * EWMA's own standard error (sigma sqrt(lambda / (2 - lambda))), so small
 * sustained shifts that no single reading reveals add up to a signal.
 * Constant state (a handful of doubles).
 */
#ifndef SP_ANOMALY_EWMA_H
#define SP_ANOMALY_EWMA_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_EWMA_MIN_COUNT 10

typedef struct anomaly_ewma anomaly_ewma_t;

/* lambda: weight of a new reading in the fast mean, (0, 1]; alpha: in the
 * slow baseline mean and variance, (0, lambda). Cannot fail. */
anomaly_ewma_t *anomaly_ewma_new(double lambda, double alpha);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_ewma_destroy(anomaly_ewma_t **self_p);
/* Signed control statistic after value, then learn it. NAN while
 * learning or for a non-finite value (not learnt). */
double anomaly_ewma_update(anomaly_ewma_t *self, double value);
/* Bytes of state. */
size_t anomaly_ewma_state_size(const anomaly_ewma_t *self);

/* Selftest: asserts on failure, prints " * anomaly_ewma: OK". */
void anomaly_ewma_test(bool verbose);

#endif
