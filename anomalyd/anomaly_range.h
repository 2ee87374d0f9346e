/*
 * anomaly_range: "spatial" detector. A reading beyond the widest range
 * the series has ever shown (new all-time high or low) is anomalous in
 * proportion to how far beyond it lies, as a fraction of that range.
 * Numenta's NAB detectors add the same check next to their temporal
 * model; on NAB it is the single most useful signal for real failures
 * (machines that run hotter or colder than ever before). Two doubles of
 * state.
 */
#ifndef SP_ANOMALY_RANGE_H
#define SP_ANOMALY_RANGE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct anomaly_range anomaly_range_t;

/* warm: readings learnt before anything is reported. Cannot fail. */
anomaly_range_t *anomaly_range_new(size_t warm);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_range_destroy(anomaly_range_t **self_p);
/* Excess of value beyond [min, max] seen so far, over (max - min): 0
 * inside, > 0 outside; NAN while warming, for a flat history, or for a
 * non-finite value (not learnt). */
double anomaly_range_update(anomaly_range_t *self, double value);
/* Bytes of state. */
size_t anomaly_range_state_size(const anomaly_range_t *self);

/* Selftest: asserts on failure, prints " * anomaly_range: OK". */
void anomaly_range_test(bool verbose);

#endif
