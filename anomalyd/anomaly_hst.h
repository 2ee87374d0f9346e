/*
 * anomaly_hst: streaming half-space trees (Tan, Ting and Liu, IJCAI 2011),
 * the ML detector. Each reading becomes a small feature vector (its level,
 * its change from the previous reading and a short moving level, each
 * standardised and squashed into [0,1]); random axis-aligned half-space
 * trees count how much of the last window's mass falls in each region,
 * and a reading landing in a sparsely populated region is anomalous.
 *
 * The trees' shape is random but shared by every series (a fixed seed),
 * so the per-series state is only the mass counters: 2 windows x
 * ANOMALY_HST_TREES x (2^(ANOMALY_HST_DEPTH+1) - 1) uint16, about 5 KB.
 */
#ifndef SP_ANOMALY_HST_H
#define SP_ANOMALY_HST_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_HST_TREES 10
#define ANOMALY_HST_DEPTH 6
#define ANOMALY_HST_FEATURES 3
/* Readings per window; the reference mass is the previous window's. */
#define ANOMALY_HST_WINDOW 256

typedef struct anomaly_hst anomaly_hst_t;

/* Create. Cannot fail. */
anomaly_hst_t *anomaly_hst_new(void);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_hst_destroy(anomaly_hst_t **self_p);
/* Isolation statistic of value (>= 0, bits of surprise: log2 of how much
 * sparser its regions are than a typical reading's), then learn it. NAN
 * until a full reference window exists, or for a non-finite value. */
double anomaly_hst_update(anomaly_hst_t *self, double value);
/* Bytes of state. */
size_t anomaly_hst_state_size(const anomaly_hst_t *self);

/* Selftest: asserts on failure, prints " * anomaly_hst: OK". */
void anomaly_hst_test(bool verbose);

#endif
