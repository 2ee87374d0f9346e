/*
 * alert_series: the per-series window state alertd's rules read. Each
 * series keeps its recent points (sorted by time) and its recent anomaly
 * scores, trimmed to the longest window any rule reads and capped at a
 * number of points, so memory per series is bounded. It implements the
 * window functions of alert_rule.h (avg, min, max, sum, count, std, pNN,
 * rate, delta, anomaly) over the window (now - w, now].
 *
 * When the cap is reached before the window is covered, the oldest points
 * are dropped and a window function sees fewer points than the window
 * holds; alert_series_truncated counts those evaluations so the operator
 * can raise the cap (alertd.8, "window-points").
 */
#ifndef SP_ALERT_SERIES_H
#define SP_ALERT_SERIES_H

#include "alertd/alert_rule.h"

#include <czmq.h>
#include "common/schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct alert_series alert_series_t;

/* Create a store that keeps points of the last retain_ns (0: only the
 * latest) and at most max_points per series, for at most max_series
 * series. Cannot fail. Caller destroys. */
alert_series_t *alert_series_new(int64_t retain_ns, size_t max_points,
                                 size_t max_series);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void alert_series_destroy(alert_series_t **self_p);
/* Change the retention (after a rules reload). */
void alert_series_set_retain(alert_series_t *self, int64_t retain_ns);

/* Add a reading. A point with the timestamp of an existing point replaces
 * it (idempotent replays); an older one is inserted in order. Returns 0,
 * or -1 when the series is new and the store is full (counted). */
int alert_series_add(alert_series_t *self, const char *key, int64_t ts,
                     double value);
/* Record an anomaly score for a reading of key at ts, and whether the
 * event had anomalyd's novelty alarm; an event for a reading that had one
 * replaces it, its alarm too. Returns 0 or -1 as alert_series_add. */
int alert_series_add_anomaly(alert_series_t *self, const char *key,
                             int64_t ts, double score, bool alarm);
/* Keep f as the series' latest forecast (anomalyd's forecast event;
 * an older one than that kept is ignored). Returns 0 or -1 as
 * alert_series_add. */
int alert_series_set_forecast(alert_series_t *self, const char *key,
                              const struct msg_forecast *f);
/* Forget a series (its alerts are gone). */
void alert_series_remove(alert_series_t *self, const char *key);

/* Window function over key; the alert_rule_env value signature, so a
 * store is passed as env.arg. NAN when unknown. */
double alert_series_value(void *self, const char *key, enum alert_fn fn,
                          int64_t window_ns, double q, int64_t now);
/* Timestamp of the latest reading of key, or INT64_MIN when unknown. */
int64_t alert_series_last_ts(const alert_series_t *self, const char *key);

/* A snapshot of the series keys (copies). Caller destroys the list. */
zlistx_t *alert_series_keys(alert_series_t *self);

/* Counters. */
size_t alert_series_count(const alert_series_t *self);
size_t alert_series_points(const alert_series_t *self);
uint64_t alert_series_rejected(const alert_series_t *self);
uint64_t alert_series_truncated(const alert_series_t *self);

/* Selftest: asserts on failure, prints " * alert_series: OK". */
void alert_series_test(bool verbose);

#endif
