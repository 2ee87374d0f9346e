/*
 * agg_store: where aggd keeps readings. This is the in-memory engine of
 * the foundation: per series, a time-sorted array of (ts, value); a write
 * on an existing (series, ts) overwrites (idempotent replays). The durable,
 * compressed engine (issue 4) replaces this module behind the same
 * interface.
 */
#ifndef SP_AGG_STORE_H
#define SP_AGG_STORE_H

#include "common/series.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agg_store agg_store_t;

/* A borrowed view of one series' points in a range, valid until the next
 * write to the store. */
struct agg_view {
    const char *key;   /* canonical series key */
    const int64_t *ts; /* timestamps, ascending */
    const double *v;   /* values */
    size_t n;          /* points in the view */
};

/* Create an empty store. Cannot fail. */
agg_store_t *agg_store_new(void);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_store_destroy(agg_store_t **self_p);
/* Write a point. Returns 1 when it is new, 0 when it overwrote a point at
 * the same timestamp. */
int agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v);
/* Number of series. */
size_t agg_store_series(const agg_store_t *self);
/* Number of points over all series. */
size_t agg_store_points(const agg_store_t *self);
/* Collect views of every series matching sel/filters (series_match) with
 * points in [start, end). Returns the number of matching series (even when
 * a view holds no point) and sets *views (caller frees the array only),
 * or 0 and NULL when nothing matches. */
size_t agg_store_select(agg_store_t *self, const char *sel,
                        const struct series_tag *filters, size_t nfilters,
                        int64_t start, int64_t end, struct agg_view **views);

/* Selftest. */
void agg_store_test(bool verbose);

#endif
