/*
 * anomaly_store: every series' detector plus its recent scored readings,
 * and the answers to anomaly queries over them.
 *
 * Each series keeps the last `keep` readings whose |z| or score passed a
 * low floor (ANOMALY_STORE_FLOOR_Z, ANOMALY_STORE_FLOOR_SCORE), so a
 * query's ?threshold= or min_score can be applied when it is asked, not
 * only at the configured threshold.
 */
#ifndef SP_ANOMALY_STORE_H
#define SP_ANOMALY_STORE_H

#include "anomalyd/anomaly.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ANOMALY_STORE_FLOOR_Z 2.0
#define ANOMALY_STORE_FLOOR_SCORE 0.2
#define ANOMALY_STORE_KEEP_MAX 65536
/* Largest "limit" a query may ask for. */
#define ANOMALY_STORE_LIMIT_MAX 10000

typedef struct anomaly_store anomaly_store_t;

/* Create a store whose series use conf (copied) and keep the last `keep`
 * readings above the floor (clamped to [1, ANOMALY_STORE_KEEP_MAX]).
 * Returns NULL when conf names an unknown method. Caller destroys. */
anomaly_store_t *anomaly_store_new(const struct anomaly_conf *conf,
                                   size_t keep);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_store_destroy(anomaly_store_t **self_p);
/* Score a reading of series key (creating the series on first sight) and
 * remember it when above the floor. Fills *out. Cannot fail. */
void anomaly_store_score(anomaly_store_t *self, const char *key, int64_t ts,
                         double value, struct anomaly_result *out);
/* Prefetching. With 10,000 series most of the time of a reading is
 * cache misses, one pointer after another, so the filter reads ahead and
 * starts loading a series' state before it scores it: hash the key
 * (which starts loading its slot), some readings later find the series
 * by that hash (NULL: not seen yet, nothing to do), then prefetch in
 * stages, each some readings after the one before: stage 0 the series,
 * 1 the structures its detectors always touch (addresses stage 0
 * loaded), 2 what depends on the reading's time ts (season bins, ring
 * slot). No effect on results. A series, once created, lives as long as
 * the store. */
typedef struct anomaly_series anomaly_series_t;
uint64_t anomaly_store_hash(const anomaly_store_t *self, const char *key);
const anomaly_series_t *anomaly_store_find(const anomaly_store_t *self,
                                           uint64_t hash);
void anomaly_store_prefetch(const anomaly_series_t *s, int64_t ts, int stage);
/* Answer an rpc request {"op": "anomalies", ...}: sets *body (caller
 * decrefs) and returns the HTTP status (200, 400, 404). */
int anomaly_store_query(anomaly_store_t *self, const json_t *req,
                        json_t **body);
/* Answer {"op": "forecast", "series": S, "horizon": ns (default 24 h),
 * "points": n (default 24, at most ANOMALY_STORE_POINTS_MAX), "threshold":
 * T (optional)}: the series' Holt-Winters forecast with 80 % intervals
 * and, with a threshold, when it is expected to be crossed. S must match
 * exactly one series (400 otherwise, 404 when none). Sets *body (caller
 * decrefs) and returns the HTTP status. */
#define ANOMALY_STORE_POINTS_MAX 1000
#define ANOMALY_STORE_HORIZON_MAX (366LL * 86400 * 1000000000LL)
int anomaly_store_forecast(anomaly_store_t *self, const json_t *req,
                           json_t **body);
/* Forecast events: the forecast of the series last scored by
 * anomaly_store_score when its forecaster is ready and this series'
 * previous forecast from this call is at least every ns of data time
 * older (so each series is forecast about once per `every`, whatever
 * its rate). Fills n points at ts[0] = the last reading and every
 * horizon / (n - 1) after it. Returns n, or 0 when not due. */
size_t anomaly_store_forecast_due(anomaly_store_t *self, int64_t every,
                                  int64_t horizon, size_t n, int64_t *ts,
                                  double *value, double *lower,
                                  double *upper);
/* Change the |z| threshold queries use when they name none (SIGHUP). */
void anomaly_store_set_threshold(anomaly_store_t *self, double threshold);
/* Number of series. */
size_t anomaly_store_series(const anomaly_store_t *self);
/* Readings currently remembered, over all series. */
size_t anomaly_store_kept(const anomaly_store_t *self);

/* Selftest: asserts on failure, prints " * anomaly_store: OK". */
void anomaly_store_test(bool verbose);

#endif
