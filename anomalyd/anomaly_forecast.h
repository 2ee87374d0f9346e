/*
 * anomaly_forecast: per-series forecast with prediction intervals, for
 * predictive maintenance ("crosses 90 at about 14:00, 80 % interval 26 h
 * to 31 h").
 *
 * The model is a linear trend (an exponentially weighted regression line,
 * time constant 12 h) plus a daily season (288 time-of-day bins by
 * timestamp, learnt from the second day), learnt online; irregular
 * sampling is fine. Prediction intervals are the regression's, so they
 * widen with the horizon. About 2.9 KB of state.
 */
#ifndef SP_ANOMALY_FORECAST_H
#define SP_ANOMALY_FORECAST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Readings before a forecast is offered. */
#define ANOMALY_FORECAST_MIN_COUNT 30
/* Two-sided 80 % normal quantile: intervals are 80 %. */
#define ANOMALY_FORECAST_Z80 1.2815515655446004

typedef struct anomaly_forecast anomaly_forecast_t;

/* Plain data: one forecast point. */
struct anomaly_forecast_point {
    int64_t ts;   /* ns since epoch */
    double value; /* expected value */
    double lower; /* 80 % interval */
    double upper;
};

/* Plain data: when the forecast crosses a threshold. */
struct anomaly_forecast_crossing {
    bool found;    /* the expected value crosses within the horizon */
    int64_t at;    /* first expected crossing, ns */
    int64_t early; /* first crossing of the near interval bound */
    int64_t late;  /* first crossing of the far bound, or INT64_MAX when
                      it does not cross within the horizon */
};

/* Create. Cannot fail. */
anomaly_forecast_t *anomaly_forecast_new(void);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_forecast_destroy(anomaly_forecast_t **self_p);
/* Learn a reading (readings in time order; non-finite values and
 * readings not after the previous one are ignored). Cannot fail. */
void anomaly_forecast_update(anomaly_forecast_t *self, int64_t ts,
                             double value);
/* True when enough has been learnt to forecast. */
bool anomaly_forecast_ready(const anomaly_forecast_t *self);
/* Time of the last reading learnt (ns). */
int64_t anomaly_forecast_last(const anomaly_forecast_t *self);
/* Trend in units per hour. */
double anomaly_forecast_trend_per_hour(const anomaly_forecast_t *self);
/* Forecast at ts (after the last reading). Returns 0, or -1 when not
 * ready. */
int anomaly_forecast_at(const anomaly_forecast_t *self, int64_t ts,
                        struct anomaly_forecast_point *out);
/* First crossing of threshold within horizon_ns after the last reading,
 * upwards when the threshold is above the current level, else downwards;
 * searched in steps of horizon/ANOMALY_FORECAST_SCAN. Returns 0 (check
 * out->found), or -1 when not ready. */
#define ANOMALY_FORECAST_SCAN 2000
int anomaly_forecast_crossing(const anomaly_forecast_t *self, double threshold,
                              int64_t horizon_ns,
                              struct anomaly_forecast_crossing *out);
/* Bytes of state. */
size_t anomaly_forecast_state_size(const anomaly_forecast_t *self);
/* Start loading what a reading at ts touches: the sums and ts's season
 * bin. No effect on results (see anomaly_store_prefetch). */
void anomaly_forecast_prefetch(const anomaly_forecast_t *self, int64_t ts);

/* Selftest: asserts on failure, prints " * anomaly_forecast: OK". */
void anomaly_forecast_test(bool verbose);

#endif
