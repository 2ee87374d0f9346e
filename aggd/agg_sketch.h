/*
 * agg_sketch: a mergeable quantile sketch, DDSketch (Masson, Rim and Lee,
 * VLDB 2019) with relative accuracy AGG_SKETCH_ALPHA: every quantile it
 * answers is within 1 % of the exact value of that rank. A value x > 0
 * goes to bucket ceil(log_gamma(x)) with gamma = (1 + a) / (1 - a);
 * negatives to a mirrored store, zeros to a counter. Two sketches merge by
 * adding bucket counts, so rollups of minutes merge into hours and days
 * and lanes merge in apid with the same guarantee.
 */
#ifndef SP_AGG_SKETCH_H
#define SP_AGG_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define AGG_SKETCH_ALPHA 0.01
/* Bucket indices of a finite double are within +-40,000 at 1 %; the JSON
 * form refuses indices past this. */
#define AGG_SKETCH_JSON_MAX 100000

typedef struct agg_sketch agg_sketch_t;

/* Create an empty sketch. Cannot fail. */
agg_sketch_t *agg_sketch_new(void);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_sketch_destroy(agg_sketch_t **self_p);
/* Add a finite value (NaN and infinities are ignored). */
void agg_sketch_add(agg_sketch_t *self, double v);
/* Add every count of other into self. */
void agg_sketch_merge(agg_sketch_t *self, const agg_sketch_t *other);
/* Bucket index of a value v > 0: ceil(log_gamma(v)). */
int32_t agg_sketch_index(double v);
/* The same index, found without a logarithm when v lies in the bucket
 * *hint or a neighbour (safely inside, by a table of the bounds); sets
 * *hint to it. For values that come in small steps (a series). */
int32_t agg_sketch_index_near(double v, int32_t *hint);
/* Add count values to the bucket of index i: sign > 0 the positive
 * store, sign < 0 the negative one (by absolute value), 0 the zeros (i
 * ignored). How compact rollup buckets (agg_rollup) merge into a sketch. */
void agg_sketch_add_index(agg_sketch_t *self, int sign, int32_t i,
                          uint64_t count);
/* Values added. */
uint64_t agg_sketch_count(const agg_sketch_t *self);
/* Estimate of the value of rank floor(q * (count - 1)) (q in [0, 1]),
 * within AGG_SKETCH_ALPHA of it; NaN when empty. */
double agg_sketch_quantile(const agg_sketch_t *self, double q);
/* Bytes of memory the buckets use. */
size_t agg_sketch_bytes(const agg_sketch_t *self);

/* The buckets as JSON, compactly, for apid to merge lanes' sketches:
 * {"zeros": z, "pos": [offset, c0, c1, ...], "neg": [...]}, each store
 * as the index of its first non-zero bucket then the counts of the
 * contiguous run up to its last non-zero bucket (empty stores omitted). */
json_t *agg_sketch_to_json(const agg_sketch_t *self);
/* Add the buckets of j (agg_sketch_to_json's form) into self. Returns 0,
 * or -1 when j is not of that form (self then unchanged). */
int agg_sketch_merge_json(agg_sketch_t *self, const json_t *j);

/* Selftest. */
void agg_sketch_test(bool verbose);

#endif
