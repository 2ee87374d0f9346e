/*
 * api_analytics: forecast, trend and correlation routes (issue 6).
 *
 *   GET /api/v1/forecast/{series}?horizon=24h&points=24&threshold=90
 *       anomalyd's per-series forecaster: expected values with 80 %
 *       intervals over the horizon, trend per hour, and when the forecast
 *       (and its interval bounds) cross the threshold.
 *   GET /api/v1/trend/{series}?start=&end=&window=1h&points=100&tag.k=v
 *       over the stored readings (aggd): least-squares slope per hour and
 *       its r^2, trailing moving average and EWMA over `window` at up to
 *       `points` times, and the seasonality period the autocorrelation
 *       finds (or null).
 *   GET /api/v1/correlation?a=...&b=...&start=&end=&interval=5min
 *       Pearson correlation of two series over a range: readings paired
 *       by equal timestamps, or by bucket means when interval is given.
 *
 * {series}, a and b must each select exactly one series (a canonical key,
 * or a name plus tag.k=v filters for trend); more gives 400, none 404.
 */
#ifndef SP_API_ANALYTICS_H
#define SP_API_ANALYTICS_H

#include "apid/apid.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Points one trend or correlation reads at most (aggd's export limit). */
#define API_ANALYTICS_POINTS_MAX 100000
/* Regular grid the seasonality search resamples to, at most. */
#define API_ANALYTICS_GRID_MAX 4096
/* Autocorrelation from which a period counts as seasonality. */
#define API_ANALYTICS_ACF_MIN 0.3

/* Route the three paths; 1 when handled. */
int api_analytics_route(apid_t *apid, http_req_t *req);

/* Least-squares line through (ts, v): slope per hour, r^2 (NAN when v is
 * constant or n < 2). Cannot fail. */
void api_analytics_slope(const int64_t *ts, const double *v, size_t n,
                         double *per_hour, double *r2);
/* Seasonality period in ns by autocorrelation of the readings resampled
 * to a regular grid and detrended; *acf its autocorrelation. Returns 0
 * when no lag reaches API_ANALYTICS_ACF_MIN (or too few readings). */
int64_t api_analytics_period(const int64_t *ts, const double *v, size_t n,
                             double *acf);
/* Pearson correlation of n pairs; NAN when n < 3 or either is constant. */
double api_analytics_pearson(const double *x, const double *y, size_t n);

/* Selftest: asserts on failure, prints " * api_analytics: OK". */
void api_analytics_test(bool verbose);

#endif
