/*
 * alert_engine: rules applied to a stream of readings and anomaly scores.
 *
 * The engine owns the rule set, the per-series window state
 * (alert_series) and one alert per (rule, scope). Each reading is added
 * to its series, then every rule that names the series is evaluated at
 * the reading's timestamp (event time, so a replayed or piped stream
 * gives the same alerts as a live one). An alert moves
 *
 *   (none) --cond true--> pending --cond true for "for"--> firing
 *   pending --cond false--> resolved        (never fired)
 *   firing --clear true (or cond false without "clear when")--> resolved
 *
 * and a firing alert re-announces itself when its severity steps up
 * ("severity warning, critical after 10m"). Unknown truth (missing data)
 * never changes a state. Every change is reported once through the emit
 * callback; the engine itself does no I/O.
 */
#ifndef SP_ALERT_ENGINE_H
#define SP_ALERT_ENGINE_H

#include "alertd/alert_rule.h"
#include "common/schema.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct alert_engine alert_engine_t;

/* One state change. Every pointer is borrowed for the callback only. */
struct alert_event {
    const char *rule;     /* rule name */
    const char *scope;    /* series key, or tag set for multi-metric rules */
    const char *key;      /* series whose reading caused the change */
    const char *state;    /* "pending", "firing" or "resolved" */
    const char *severity; /* current severity */
    int64_t ts;           /* event time of the change, ns */
    double value;         /* value of the reading that caused it */
    int64_t since;        /* when the alert became active, ns */
    const alert_rule_t *r; /* the rule (its notify clauses) */
};

typedef void(alert_engine_emit_fn)(const struct alert_event *ev, void *arg);

/* Counters for the stats query and /metrics. */
struct alert_engine_stats {
    uint64_t readings;    /* readings applied */
    uint64_t anomalies;   /* anomaly scores applied */
    uint64_t forecasts;   /* forecast events applied */
    uint64_t evaluations; /* rule evaluations */
    uint64_t pending;     /* transitions to pending */
    uint64_t firing;      /* transitions to firing (incl. severity steps) */
    uint64_t resolved;    /* transitions to resolved */
    uint64_t rejected;    /* readings dropped: series limit reached */
    uint64_t truncated;   /* evaluations over a window cut by the cap */
    size_t series;        /* series held */
    size_t points;        /* points held */
    size_t active;        /* pending and firing alerts */
    size_t rules;         /* rules loaded */
};

/* Create an engine without rules. max_points caps each series' window,
 * max_series the number of series. emit is called for every change.
 * Cannot fail. Caller destroys. */
alert_engine_t *alert_engine_new(size_t max_points, size_t max_series,
                                 alert_engine_emit_fn *emit, void *arg);
/* Destroy; NULL-safe; sets *self_p to NULL. No events are emitted. */
void alert_engine_destroy(alert_engine_t **self_p);

/* Replace the rule set. Takes every rules[i] (and sets it NULL); the
 * array itself stays the caller's. Alerts of rules whose name and
 * canonical text are unchanged carry over; the others are resolved (and
 * emitted) at time now. Rule names must be unique (alert_file checks). */
void alert_engine_set_rules(alert_engine_t *self, alert_rule_t **rules,
                            size_t n, int64_t now);

/* Apply a reading and evaluate the rules that name its series. */
void alert_engine_reading(alert_engine_t *self, const char *key, int64_t ts,
                          double value);
/* Apply an anomaly score of the reading (key, ts, value), with its
 * novelty alarm, and evaluate. */
void alert_engine_anomaly(alert_engine_t *self, const char *key, int64_t ts,
                          double value, double score, bool alarm);

/* Evaluate the deadman rules (age(), nodata()) of every series they
 * match at time now, so a series that has gone silent raises its alert
 * without a reading. alertd calls it once a second with its stream
 * clock. */
void alert_engine_tick(alert_engine_t *self, int64_t now);

/* Record the anomaly score of reading (key, ts) without evaluating: the
 * reading that follows is evaluated with it (alertd applies anomalyd's
 * scores before the readings they belong to). */
void alert_engine_score(alert_engine_t *self, const char *key, int64_t ts,
                        double score, bool alarm);

/* Keep anomalyd's latest forecast of series key for
 * time_to(x, T, forecast), without evaluating: the series' next reading
 * is evaluated with it (anomalyd sends forecasts after the readings they
 * follow). */
void alert_engine_forecast(alert_engine_t *self, const char *key,
                           const struct msg_forecast *f);

/* Put back an alert kept across a restart (alert_store), without an
 * event: state "pending" or "firing" ("acknowledged" counts as firing).
 * Returns 0, or -1 when no rule of that name is loaded. */
int alert_engine_restore(alert_engine_t *self, const char *rule,
                         const char *scope, const char *key,
                         const char *state, const char *severity,
                         int64_t since, int64_t fired, double value);
/* Resolve an active alert by hand (emits "resolved" at now). Returns 0,
 * or -1 when there is no such alert. If its condition still holds, the
 * next reading raises a new one. */
int alert_engine_resolve(alert_engine_t *self, const char *rule,
                         const char *scope, int64_t now);

/* Set the metadata of device id (an object: its numbers, and strings
 * that are whole numbers, are what rules read as device.NAME), or forget
 * the device (meta NULL). Copies meta. The next evaluation of a series
 * whose "device" tag is id sees it. A device of a tenant other than the
 * default is "id@tenant" and is seen by series with both tags. */
void alert_engine_set_device(alert_engine_t *self, const char *id,
                             const json_t *meta);
/* Forget every device's metadata. */
void alert_engine_clear_devices(alert_engine_t *self);
/* Number of devices with metadata. */
size_t alert_engine_devices(const alert_engine_t *self);

/* The i-th rule of the set, or NULL past the end. Borrowed until the
 * next alert_engine_set_rules. */
const alert_rule_t *alert_engine_rule(const alert_engine_t *self, size_t i);

/* Active alerts as a JSON array (caller decrefs). */
json_t *alert_engine_alerts(alert_engine_t *self);
/* Counters. */
void alert_engine_stats(alert_engine_t *self, struct alert_engine_stats *st);

/* Selftest: asserts on failure, prints " * alert_engine: OK". */
void alert_engine_test(bool verbose);

#endif
