/*
 * agg_stats: statistics over points: count, sum, mean, sample std, min,
 * max (mergeable through count/mean/M2 with Chan's formulas) and exact
 * percentiles interpolated linearly between closest ranks (numpy's
 * default), plus interval aggregation.
 */
#ifndef SP_AGG_STATS_H
#define SP_AGG_STATS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Running moments; zero-initialise to start. */
struct agg_moments {
    uint64_t count; /* points */
    double mean;    /* running mean */
    double m2;      /* sum of squared deviations from the mean */
    double sum;     /* plain sum */
    double min;     /* smallest (valid when count > 0) */
    double max;     /* largest (valid when count > 0) */
};

/* Add one value (Welford). */
void agg_stats_add(struct agg_moments *m, double v);
/* Merge b into a (Chan et al.). */
void agg_stats_merge(struct agg_moments *a, const struct agg_moments *b);
/* Sample standard deviation (n-1); NaN when count < 2. */
double agg_stats_std(const struct agg_moments *m);
/* Percentile p in [0,100] of sorted values (n > 0), numpy "linear". */
double agg_stats_percentile(const double *sorted, size_t n, double p);
/* The percentiles p[0..np) (each in [0,100]) of the n > 0 values v,
 * exactly as agg_stats_sort and agg_stats_percentile give them, into
 * out, without sorting: a radix selection of the two ranks around each
 * (a few passes over the values instead of eight). v is not changed. */
void agg_stats_percentiles(const double *v, size_t n, const double *p,
                           size_t np, double *out);
/* The two ranks percentile p of n > 0 values lies between: *lo =
 * floor(p / 100 * (n - 1)) and *hi = *lo + 1 (or *lo at the end). */
void agg_stats_pct_ranks(size_t n, double p, size_t *lo, size_t *hi);
/* Percentile p of n values from the values a and b at those two ranks,
 * interpolated as agg_stats_percentile does (numpy's "linear"). */
double agg_stats_pct_between(size_t n, double p, double a, double b);
/* The values of ranks r[0..nr) (ascending, each < n) of the n values v
 * into out, by the radix selection of agg_stats_percentiles (ties in
 * the order of the values' bits: -0 before 0). v is not changed. */
void agg_stats_ranks(const double *v, size_t n, const size_t *r, size_t nr,
                     double *out);
/* Sort values ascending in place. */
void agg_stats_sort(double *v, size_t n);
/* Parse an aggregation name: "mean", "min", "max", "sum", "count",
 * "std", "first", "last", or "pNN" / "pNN.N" (sets *pct). Returns an
 * enum agg_fn value, or -1 when unknown. */
int agg_stats_fn(const char *name, double *pct);

enum agg_fn {
    AGG_FN_MEAN,
    AGG_FN_MIN,
    AGG_FN_MAX,
    AGG_FN_SUM,
    AGG_FN_COUNT,
    AGG_FN_STD,
    AGG_FN_FIRST,
    AGG_FN_LAST,
    AGG_FN_PCT
};

/* Selftest. */
void agg_stats_test(bool verbose);

#endif
