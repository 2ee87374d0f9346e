/*
 * prom_ql: a PromQL subset over series held in memory, for apid's
 * Prometheus-compatible query API (api_prom.c).
 *
 * Supported: numbers; selectors name{l="v", l!="v", l=~"re", l!~"re"}
 * with an optional [range]; rate, increase, avg/min/max/sum/count/last/
 * stddev_over_time, quantile_over_time(q, v[r]), abs; sum/avg/min/max/
 * count with "by (...)" or "without (...)" before or after the argument;
 * + - * / between scalars, vectors and scalars, and vectors matched
 * one-to-one on their labels; unary minus; parentheses.
 *
 * A series' labels are its tags plus __name__, the metric name with
 * every character outside [A-Za-z0-9_:] replaced by '_' (machine.temp
 * becomes machine_temp). Times are seconds since the epoch.
 */
#ifndef SP_PROM_QL_H
#define SP_PROM_QL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PROM_QL_LOOKBACK 300.0 /* seconds an instant selector looks back */

typedef struct prom_expr prom_expr_t;

/* One series: labels (a JSON object of strings, borrowed) and points
 * sorted by time. */
struct prom_series {
    json_t *labels;  /* {"__name__": ..., tag: value, ...} */
    const double *t; /* seconds */
    const double *v; /* values */
    size_t n;        /* points */
};

/* Parse a query. Returns NULL and a reason in err when it is not in the
 * subset. Caller destroys. */
prom_expr_t *prom_ql_parse(const char *query, char *err, size_t errlen);
/* Destroy; NULL-safe, sets *self_p NULL. */
void prom_ql_destroy(prom_expr_t **self_p);
/* Is the expression a bare selector (for match[])? */
bool prom_ql_is_selector(const prom_expr_t *self);
/* Does a bare selector match these labels? */
bool prom_ql_matches(const prom_expr_t *self, json_t *labels);
/* Seconds of history the expression reads before its evaluation time. */
double prom_ql_window(const prom_expr_t *self);
/* A glob over sensorpipe metric names that covers every selector, "*"
 * when none narrows it. Caller frees. */
char *prom_ql_name_glob(const prom_expr_t *self);

/* Evaluate at t: the "data" object of a query answer
 * ({"resultType": ..., "result": ...}), or NULL and err. */
json_t *prom_ql_eval(const prom_expr_t *self, const struct prom_series *s,
                     size_t ns, double t, char *err, size_t errlen);
/* Evaluate from start to end by step: a matrix "data" object, or NULL
 * and err. */
json_t *prom_ql_eval_range(const prom_expr_t *self,
                           const struct prom_series *s, size_t ns,
                           double start, double end, double step, char *err,
                           size_t errlen);

/* Labels of a sensorpipe series key; NULL for a malformed key. Caller
 * decrefs. */
json_t *prom_ql_labels(const char *key);

/* Selftest: parsing, functions, aggregation, arithmetic. */
void prom_ql_test(bool verbose);

#endif
