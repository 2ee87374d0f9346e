/*
 * anomaly_zscore: rolling z-score of each reading against the previous
 * `window` readings of its series (seed 000's detector).
 *
 * Streaming and bounded: one ring of `window` doubles plus running sums,
 * so the state is ANOMALY_ZSCORE_WINDOW_MAX * 8 bytes at most. The reading
 * being scored is compared with the window before it, then joins it, so a
 * score depends only on readings at or before it (causal).
 */
#ifndef SP_ANOMALY_ZSCORE_H
#define SP_ANOMALY_ZSCORE_H

#include <stdbool.h>
#include <stddef.h>

/* Largest window: 1024 readings keep the state under 9 KB. */
#define ANOMALY_ZSCORE_WINDOW_MAX 1024
/* Readings needed in the window before a z is reported: fewer give a
 * spread too rough to judge by (three readings rounded to one decimal can
 * have almost none). */
#define ANOMALY_ZSCORE_MIN_COUNT 10
/* |z| is capped here so that a jump off a perfectly flat series has a large
 * but finite statistic (JSON cannot carry infinities). */
#define ANOMALY_ZSCORE_ZMAX 1e6

/* Rings of float offsets (z-score, MAD, shape) move their shift to the
 * offsets' centre at a wrap when it is over this many spreads away: a
 * float then still holds the spread to 6e-5 of itself. */
#define ANOMALY_RECENTRE 1024.0

typedef struct anomaly_zscore anomaly_zscore_t;

/* A ring of n float offsets from *shift: when their mean is over
 * ANOMALY_RECENTRE standard deviations from 0, the shift moves to it and
 * the offsets with it (each rounded once). Returns true when moved. */
bool anomaly_ring_recentre(float *ring, size_t n, double *shift);

/* Create a detector over the previous `window` readings (clamped to
 * [ANOMALY_ZSCORE_MIN_COUNT, ANOMALY_ZSCORE_WINDOW_MAX]). Cannot fail;
 * caller destroys. */
anomaly_zscore_t *anomaly_zscore_new(size_t window);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_zscore_destroy(anomaly_zscore_t **self_p);
/* Score value against the window, then add it. Returns z (signed), or NAN
 * while fewer than ANOMALY_ZSCORE_MIN_COUNT readings are known or when
 * value is not finite (a gap: the value is not added). */
double anomaly_zscore_update(anomaly_zscore_t *self, double value);
/* Mean and sample standard deviation of the current window (NAN when
 * empty / fewer than two readings). */
double anomaly_zscore_mean(const anomaly_zscore_t *self);
double anomaly_zscore_std(const anomaly_zscore_t *self);
/* Map |z| to a score in [0,1] that is 0.5 at |z| == threshold and tends
 * to 1 far beyond it; NAN maps to 0. threshold > 0. */
double anomaly_zscore_score(double z, double threshold);
/* Bytes of state held. */
size_t anomaly_zscore_state_size(const anomaly_zscore_t *self);
/* Start loading the ring slot the next reading replaces (self itself
 * must be cached already; see anomaly_store_prefetch). No effect on
 * results. */
void anomaly_zscore_prefetch(const anomaly_zscore_t *self);

/* Selftest: asserts on failure, prints " * anomaly_zscore: OK". */
void anomaly_zscore_test(bool verbose);

#endif
