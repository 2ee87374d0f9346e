/*
 * api_lanes: one answer from the answers of every lane. A series always
 * takes lane FNV-1a 64(key) % N (DESIGN.md), so apid asks each of the N
 * aggd, anomalyd or alertd processes and merges what they say, and the
 * answer is the same for N=1 and N=4 to the last bit:
 *
 * - stats, aggregate: a selection that matches one series is answered by
 *   the lane that holds it, unchanged. One that matches several asks every
 *   lane for its raw points ("values"), loads them in key order into a
 *   scratch store and runs aggd's own query code on it (a lone aggd would
 *   otherwise sum in its hash table's order). When one aggd would answer
 *   from rollups (a lane did, or the lanes hold more than
 *   AGG_QUERY_RAW_MAX points together), stats and aggregates ask every
 *   lane again with "rollups" and "parts" (agg_query.h, agg_interval.h):
 *   the per-series summaries (per bucket for aggregates) are merged in
 *   key order and the DDSketches added bucket by bucket, so answers from
 *   rollups are the same for any N and hold the readings whose raw
 *   points retention dropped. Past API_LANES_VALUES_MAX points of raw answers
 *   (more than 20 lanes), stats merge each lane's moments with Chan's
 *   formulas (agg_stats_merge) and the percentiles are null.
 * - series, points, anomalies, alerts: concatenated and sorted by series
 *   (anomalies by time, then series), limits applied after the merge.
 * - anything else: the first lane that answers 200 (a query about one
 *   series), else the first error.
 */
#ifndef SP_API_LANES_H
#define SP_API_LANES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define API_LANES_VALUES_MAX 2000000
/* Most series summaries (series times buckets, about 1.6 KB each as a
 * tree) an aggregate's rollup round may bring; past it the values round
 * answers (from the raw points there are). */
#define API_LANES_PARTS_MAX 200000
/* Most points in one export, as aggd (AGG_QUERY_POINTS_MAX). */
#define API_LANES_POINTS_MAX 100000

/* One lane's answer; body NULL when the lane did not answer. */
struct api_lanes_reply {
    int status;   /* HTTP status the lane answered */
    json_t *body; /* borrowed */
};

enum api_lanes_next {
    API_LANES_DONE,  /* *status and *out are the answer */
    API_LANES_VALUES /* *out is a "values" query for every lane */
};

/* Merge the first answers of n lanes to query. Returns API_LANES_DONE
 * with the answer in *status and *out, or API_LANES_VALUES with the query
 * to send every lane in *out; then call api_lanes_finish. The caller owns
 * *out. Cannot fail. */
int api_lanes_merge(const json_t *query, const struct api_lanes_reply *r,
                    size_t n, int *status, json_t **out);
/* The answer to query from every lane's first answer (r) and its values
 * (v). The caller owns *out. Cannot fail. */
void api_lanes_finish(const json_t *query, const struct api_lanes_reply *r,
                      const struct api_lanes_reply *v, size_t n, int *status,
                      json_t **out);
/* Is this op answered by lane 0 alone (the same on every lane)? */
bool api_lanes_single(const char *op);

/* Selftest: asserts on failure, prints " * api_lanes: OK". */
void api_lanes_test(bool verbose);

#endif
