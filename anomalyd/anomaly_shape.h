/*
 * anomaly_shape: how unlike its recent context the shape of the last few
 * readings is. The last `window` readings, less their mean, are compared
 * with every window of as many readings (less its mean) among the
 * `history` windows before them (ending before the current window
 * starts), and the distance to the nearest is divided by the current
 * window's own size (its centred Euclidean norm): about 1 when nothing
 * in the recent context looks like the last readings (a spike of a size
 * and shape not seen lately, whatever the largest spike ever was), near
 * 0 when something does (a burst that recurs, noise among noise). Scale
 * free, so one level serves every series. The ring is kept on every
 * reading (O(1)); the search (O(history x window)) runs only when asked.
 */
#ifndef SP_ANOMALY_SHAPE_H
#define SP_ANOMALY_SHAPE_H

#include <stdbool.h>
#include <stddef.h>

#define ANOMALY_SHAPE_WINDOW_MAX 64
#define ANOMALY_SHAPE_HISTORY_MAX 4096
/* Most readings anomaly_shape_median takes. */
#define ANOMALY_SHAPE_MEDIAN_MAX 256

typedef struct anomaly_shape anomaly_shape_t;

/* window: readings in a shape (2 to ANOMALY_SHAPE_WINDOW_MAX); history:
 * windows compared with (1 to ANOMALY_SHAPE_HISTORY_MAX). Cannot fail. */
anomaly_shape_t *anomaly_shape_new(size_t window, size_t history);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_shape_destroy(anomaly_shape_t **self_p);
/* Learn a reading; a non-finite value is ignored. */
void anomaly_shape_push(anomaly_shape_t *self, double value);
/* The novelty of the last window's shape: nearest distance over its
 * norm (0 for a flat window); NAN until two history windows exist. */
double anomaly_shape_novelty(const anomaly_shape_t *self);
/* The median of the last n readings (the mean of the two middle ones
 * when n is even): NAN when n is 0, over ANOMALY_SHAPE_MEDIAN_MAX or
 * over the ring's capacity (history + 2 window), or fewer than n
 * readings were pushed. O(n) expected (a selection, not a sort). */
double anomaly_shape_median(const anomaly_shape_t *self, size_t n);
/* Whether the median of the last n readings lies strictly between lo
 * and hi, decided by counting alone (O(n), no selection): true only
 * when it does (more than half the readings are above lo and more than
 * half below hi); false when it may not, or when anomaly_shape_median
 * would be NAN. */
bool anomaly_shape_median_within(const anomaly_shape_t *self, size_t n,
                                 double lo, double hi);
/* Start loading the ring slot the next push writes and the 24 readings
 * before it (self itself must be cached already; see
 * anomaly_store_prefetch). No effect on results. */
void anomaly_shape_prefetch(const anomaly_shape_t *self);
/* Bytes of state. */
size_t anomaly_shape_state_size(const anomaly_shape_t *self);

/* Selftest: asserts on failure, prints " * anomaly_shape: OK". */
void anomaly_shape_test(bool verbose);

#endif
