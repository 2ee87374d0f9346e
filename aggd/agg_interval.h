/*
 * agg_interval: the "aggregate" query: one value per interval of a
 * selection (mean, min, max, sum, count, std, first, last or any
 * percentile), over fixed steps (floor(ts / step) * step, UTC) or, with
 * "tz", over local days of an IANA time zone (`"tz": "Europe/Berlin"`,
 * intervals of whole days). "window" makes it rolling: each interval's
 * value covers the window that ends where the interval ends (a moving
 * average with "mean").
 *
 * Raw points answer when agg_query_plan says so; otherwise rollups, with
 * percentiles from sketches marked "estimated".
 */
#ifndef SP_AGG_INTERVAL_H
#define SP_AGG_INTERVAL_H

#include "aggd/agg_sketch.h"
#include "aggd/agg_store.h"

#include <jansson.h>
#include <stdbool.h>

struct agg_text;

/* Answer an "aggregate" request: the HTTP-style status, *body set
 * (caller owns). Bad input is a 400 body. */
int agg_interval_answer(agg_store_t *store, const json_t *req, json_t **body);
/* The same, but a 200 over one series for a request that says "text":
 * true (rpc.h) is appended to text as JSON (agg_query.h: in several
 * buffers when printed in pieces), and *body is NULL; text NULL is
 * agg_interval_answer. */
int agg_interval_reply(agg_store_t *store, const json_t *req, json_t **body,
                       struct agg_text *text);

/* With "parts": true (apid's lane merge, agg_query.h), an answer from
 * rollups carries in every bucket either "sketch" (percentiles: the
 * bucket's DDSketch over every series) or "parts" (any other
 * aggregation: one agg_query_part per series with points in the bucket,
 * in key order). The bucket's value is then the parts merged in that
 * order (agg_rsum_merge) and taken by agg_interval_value, which is what
 * apid repeats over the parts of every lane. More parts than this in
 * one answer are a 413 (apid asks for at most API_LANES_PARTS_MAX). */
#define AGG_INTERVAL_PARTS_MAX 400000

/* The value of aggregation fn (enum agg_fn; pct for AGG_FN_PCT) over a
 * summary r and, for percentiles, its sketch sk. NaN when undefined. */
double agg_interval_value(int fn, double pct, const struct agg_rsum *r,
                          const agg_sketch_t *sk);

/* Selftest. */
void agg_interval_test(bool verbose);

#endif
