/*
 * anomalyd: the anomaly detection daemon of one lane. It pulls readings
 * batches from aggd, scores every reading with its series' detector,
 * pushes the readings batch, an anomalies batch and a forecasts batch
 * (each series' forecast about once per forecast-every) to alertd (lossless:
 * while alertd's queue is full anomalyd stops reading, so backpressure
 * reaches aggd), publishes the anomalies, and answers anomaly queries on
 * a ROUTER socket. As a filter (--stdin --stdout) it scores JSON lines or
 * timestamp,value CSV and prints one line per reading.
 */
#ifndef SP_ANOMALYD_H
#define SP_ANOMALYD_H

#include "common/cfg.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct anomalyd_conf {
    char *rundir;     /* directory of the default ipc:// endpoints */
    int64_t lane;     /* this process' lane */
    char *in;         /* PULL endpoint template (bind); "" = default */
    char *query;      /* ROUTER endpoint template (bind); "" = default */
    char *pub;        /* PUB endpoint template (bind); "" = default */
    char *down;       /* PUSH endpoint template (connect) to alertd;
                         "" = default, "none" = do not forward */
    char *method;     /* detector: zscore, mad, ..., ensemble */
    int64_t window;   /* rolling window in readings */
    double threshold; /* |z| of an anomaly, and the query default */
    double min_score; /* score from which a reading is an anomaly event */
    int64_t keep;     /* scored readings kept per series for queries */
    int64_t hwm;      /* queue limit in batches on every socket */
    int64_t drain;    /* ns allowed for draining at stop */
    int64_t forecast_every;   /* ns of data time between a series'
                                 forecast events; 0 = none */
    int64_t forecast_horizon; /* ns a forecast event looks ahead */
    bool use_stdin;   /* filter mode: readings on stdin */
    bool use_stdout;  /* filter mode: scores on stdout */
    char *format;     /* filter output: "json" or "csv" */
    bool alarm_column; /* filter CSV output: add the novelty alarm column */
};

typedef struct anomalyd anomalyd_t;

/* Check the configuration that the table cannot (method, format).
 * Returns 0, or -1 with the reason printed to stderr. */
int anomalyd_conf_check(const struct anomalyd_conf *conf);
/* Bind and connect every socket (none in filter mode). Returns NULL
 * (logged) on failure. conf is borrowed and must outlive the daemon. */
anomalyd_t *anomalyd_new(const struct anomalyd_conf *conf);
/* Where SIGHUP re-reads the configuration from: the table and the file
 * (path borrowed; NULL means no file, so a reload changes nothing). Only
 * threshold and min-score change live; other changes log "requires
 * restart". */
void anomalyd_set_reload(anomalyd_t *self, const struct cfg_opt *tab, size_t n,
                         const char *path);
/* Run the loop until SIGTERM/SIGINT (or the filter until end of input).
 * Returns 0 on a clean stop, -1 on failure. */
int anomalyd_run(anomalyd_t *self);
/* Filter: score readings from in and print them to out. Lines are JSON
 * objects ({"series"|"name", "tags", "timestamp", "value"}) or
 * "timestamp,value" CSV (a header line is skipped; series "csv").
 * Bad lines are logged and skipped. Returns 0. */
int anomalyd_filter(anomalyd_t *self, FILE *in, FILE *out);
/* Destroy; NULL-safe; sets *self_p NULL. */
void anomalyd_destroy(anomalyd_t **self_p);

/* Selftest: asserts on failure, prints " * anomalyd: OK". */
void anomalyd_test(bool verbose);

#endif
