/*
 * agg_rollup: the rollups of one series: per minute, hour and day (UTC)
 * bucket, count, sum, M2 (the sum of squared deviations from the mean;
 * the sum of squares is M2 + sum^2 / count, and M2 keeps its digits where
 * sum of squares cancels), min, max, first and last (with their
 * timestamps) and a DDSketch of the values (relative accuracy 1 %,
 * agg_sketch). agg_store maintains them on every write; queries over long
 * ranges merge them instead of decoding raw chunks.
 *
 * A bucket's sketch is kept compact: one 32-bit entry per occupied sketch
 * index (2 bits sign class, 14 bits index, 16 bits count), sorted, in one
 * array per tier. The 14-bit index covers magnitudes from about 1e-71 to
 * 1e71; values beyond are counted at the nearest end (their min, max,
 * sum and the other moments stay exact).
 *
 * Persistence: agg_rollup_encode serialises the buckets changed since the
 * previous call (or all of them), agg_rollup_decode applies such a record
 * on top of what is loaded, so an append-only file of records, read in
 * order, gives back the rollups as of the last record.
 */
#ifndef SP_AGG_ROLLUP_H
#define SP_AGG_ROLLUP_H

#include "aggd/agg_sketch.h"
#include "aggd/agg_stats.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum agg_rollup_tier {
    AGG_ROLLUP_MINUTE = 0,
    AGG_ROLLUP_HOUR = 1,
    AGG_ROLLUP_DAY = 2,
    AGG_ROLLUP_TIERS = 3
};

/* The summary of some points: one bucket, or buckets and raw points
 * merged. Zero-initialise to start (count 0). */
struct agg_rsum {
    struct agg_moments m; /* count, mean, M2, sum, min, max */
    double first;     /* value of the earliest point */
    double last;      /* value of the latest point */
    int64_t first_ts; /* its timestamp (ns) */
    int64_t last_ts;  /* and the latest's */
};

typedef struct agg_rollup agg_rollup_t;

/* Create empty rollups. Cannot fail. */
agg_rollup_t *agg_rollup_new(void);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_rollup_destroy(agg_rollup_t **self_p);
/* Width of a tier's buckets in ns. */
int64_t agg_rollup_width(int tier);
/* Start of the bucket of a tier that holds ts. */
int64_t agg_rollup_start(int tier, int64_t ts);

/* Add a new point to the bucket of every tier. */
void agg_rollup_add(agg_rollup_t *self, int64_t ts, double v);
/* A hint before an add: start loading what it will most likely touch,
 * stage 0 the rollups themselves, stage 1 (later: it reads them) the
 * newest bucket of every tier and its sketch entries. Changes nothing. */
void agg_rollup_prefetch(const agg_rollup_t *self, int stage);
/* agg_rollup_add of n points in turn (the same buckets, bit for bit),
 * tier by tier: a run of a series' points mostly shares its buckets. */
void agg_rollup_add_run(agg_rollup_t *self, const int64_t *ts,
                        const double *v, size_t n);
/* Add a new point to one tier only (rebuilding it from raw points). */
void agg_rollup_add_tier(agg_rollup_t *self, int tier, int64_t ts, double v);
/* The point at ts changed from old to v: adjust count-preserving moments,
 * sketch, first and last exactly. Returns true when min or max may now
 * be stale (old was one of them): the caller recomputes the buckets from
 * raw points if it still has them all (agg_rollup_drop, then add). */
bool agg_rollup_replace(agg_rollup_t *self, int64_t ts, double old, double v);
/* Drop, in every tier, the buckets whose start is in [start, end). */
void agg_rollup_drop(agg_rollup_t *self, int64_t start, int64_t end);
/* Drop the buckets of one tier whose start is in [start, end). */
void agg_rollup_drop_tier(agg_rollup_t *self, int tier, int64_t start,
                          int64_t end);
/* Drop the buckets of one tier that end at or before t. Returns how
 * many went. */
size_t agg_rollup_expire(agg_rollup_t *self, int tier, int64_t t);
/* Points in the bucket of a tier starting at start (0 when none). */
uint64_t agg_rollup_count_at(const agg_rollup_t *self, int tier,
                             int64_t start);
/* Merge, in time order, the buckets of a tier whose start is in [a, b)
 * into *sum, and their sketches into sk unless it is NULL. */
void agg_rollup_merge(const agg_rollup_t *self, int tier, int64_t a,
                      int64_t b, struct agg_rsum *sum, agg_sketch_t *sk);
/* Index of the first bucket of a tier that starts at or after start. */
size_t agg_rollup_lower(const agg_rollup_t *self, int tier, int64_t start);
/* agg_rollup_merge from the bucket of index i on (agg_rollup_lower),
 * for a walk over consecutive ranges: returns the index after the last
 * bucket merged, where the next range starts. */
size_t agg_rollup_merge_from(const agg_rollup_t *self, int tier, size_t i,
                             int64_t b, struct agg_rsum *sum,
                             agg_sketch_t *sk);
/* Add the counts and sums of the buckets of a tier from index i on while
 * they start before b to *count and *sum (what a mean needs, without the
 * divisions of merging moments). Returns the index after the last. */
size_t agg_rollup_sum_from(const agg_rollup_t *self, int tier, size_t i,
                           int64_t b, uint64_t *count, double *sum);
/* agg_rollup_sum_from over n consecutive intervals [a + j step, a + (j +
 * 1) step) at once, into count[j] and sum[j] (the same additions in the
 * same order), in one pass over the buckets instead of a call and a
 * search per interval. step > 0. Cannot fail. */
void agg_rollup_sum_steps(const agg_rollup_t *self, int tier, int64_t a,
                          int64_t step, size_t n, uint64_t *count,
                          double *sum);
/* Time covered: the earliest bucket start and the latest bucket end of
 * any tier. Returns false when there is no bucket. */
bool agg_rollup_span(const agg_rollup_t *self, int64_t *first, int64_t *end);
/* Timestamp of the earliest point rolled up (INT64_MAX when none). */
int64_t agg_rollup_first_ts(const agg_rollup_t *self);
/* Buckets of a tier. */
size_t agg_rollup_buckets(const agg_rollup_t *self, int tier);
/* Bytes of memory held. */
size_t agg_rollup_bytes(const agg_rollup_t *self);

/* Pack the buckets that late writes unpacked (agg_rollup_encode does,
 * and so does adding a bucket at the end). */
void agg_rollup_pack(agg_rollup_t *self);
/* Mark every bucket clean (what a rebuild from disk data produced). */
void agg_rollup_clean(agg_rollup_t *self);
/* Are there buckets changed since the last agg_rollup_encode? */
bool agg_rollup_dirty(const agg_rollup_t *self);
/* Serialise the changed buckets (every bucket when all) and mark them
 * clean; of every tier only buckets starting before `before` (agg_store
 * keeps buckets on disk only where the raw points that rebuild them are
 * gone). Returns the size (0 when there is nothing to write) and sets
 * *out (caller frees) when it is not 0. Cannot fail. */
size_t agg_rollup_encode(agg_rollup_t *self, bool all, int64_t before,
                         unsigned char **out);
/* Apply a serialised record: its buckets replace those with the same
 * start, and count as clean (they are on disk). Returns 0, or -1 when the record is malformed (nothing beyond
 * the buffer is read; buckets before the fault may have been applied). */
int agg_rollup_decode(agg_rollup_t *self, const unsigned char *buf,
                      size_t len);

/* Add one point to a summary. */
void agg_rsum_add(struct agg_rsum *s, int64_t ts, double v);
/* Merge b into a (agg_stats_merge; first and last by timestamp). */
void agg_rsum_merge(struct agg_rsum *a, const struct agg_rsum *b);

/* Selftest. */
void agg_rollup_test(bool verbose);

#endif
