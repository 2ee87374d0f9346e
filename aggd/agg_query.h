/*
 * agg_query: aggd's answers to rpc queries (common/rpc.h), computed from
 * the store. Ops: "stats", "aggregate" (agg_interval), "series",
 * "points", "values".
 * Every request names "series" (canonical key, bare name or glob) with
 * optional "tags" {k: v}, "start" and "end" (ns; end exclusive).
 */
#ifndef SP_AGG_QUERY_H
#define SP_AGG_QUERY_H

#include "aggd/agg_rollup.h"
#include "aggd/agg_sketch.h"
#include "aggd/agg_store.h"
#include "common/strbuf.h"

#include <jansson.h>
#include <stdbool.h>

struct strbuf;

/* A range with more raw points than this is answered from rollups and
 * sketches unless the request says "exact": decoding 100,000 points takes
 * about a millisecond. */
#define AGG_QUERY_RAW_MAX 100000
#define AGG_QUERY_BUCKETS_MAX 1000000 /* aggregation buckets, at most */

/* A parsed selection; strings borrowed from the request. */
struct agg_query_sel {
    const char *series;                      /* key, bare name or glob */
    struct series_tag tags[SERIES_TAGS_MAX]; /* tag filters */
    size_t ntags;                            /* how many */
    int64_t start, end;                      /* [start, end) in ns */
    bool exact;                              /* true forces raw points */
    bool rollups;                            /* true forces rollups */
    bool parts;                              /* rollup answers carry the
                                                mergeable parts (below) */
};

/* How apid merges lanes' rollup answers (api_lanes.c) exactly as one aggd
 * answers: with "parts": true (and "rollups": true to take that path
 * whatever the lane's own point count), a stats answer from rollups
 * carries "parts", one summary per series in key order (agg_query_part),
 * and "sketch", the merged DDSketch (agg_sketch_to_json); an aggregate
 * answer of a percentile carries a "sketch" in each bucket. One aggd sums
 * the series' summaries in key order too, so the lanes' parts sorted by
 * key and merged give the same doubles. */
#define AGG_QUERY_PCTS_MAX 32 /* percentiles of a stats answer, at most */
/* Percentiles a stats request asks for: p50, p90, p95, p99 then its
 * "percentiles". Returns how many, or 0 with *err set to a 400 body. */
size_t agg_query_pcts(const json_t *req, double *pcts, json_t **err);
/* The stats body of summary sum and sketch sk over matched series. */
json_t *agg_query_rollup_body(const char *series, size_t matched,
                              const struct agg_rsum *sum,
                              const agg_sketch_t *sk, const double *pcts,
                              size_t npcts);
/* One series' summary as a part, and back (0, or -1 when p is not one). */
json_t *agg_query_part(const char *key, const struct agg_rsum *sum);
int agg_query_part_parse(const json_t *p, const char **key,
                         struct agg_rsum *sum);

/* Answer req from store: returns the HTTP-style status and sets *body
 * (caller owns). Never fails on bad input: that is a 400 body. */
int agg_query_answer(agg_store_t *store, const json_t *req, json_t **body);
/* An answer as JSON text in one or more buffers, one after the other: a
 * large answer printed in pieces on two threads keeps them apart, so that
 * they travel without being copied together (rpc_reply_send_frames).
 * buf[0] starts with base bytes that are not text (room for the reply's
 * head); zero-initialise, set base, agg_text_free when done. */
struct agg_text {
    struct strbuf *buf;
    size_t n, cap;
    size_t base;
    /* A slot of apid's arena lent with the request (arena.h), or NULL:
     * a large answer's pieces may be printed there (agg_text_lend). */
    char *lent;
    size_t lent_len, lent_used;
    int64_t lent_until; /* monotonic ns: no writing into it from then */
};
/* Append a buffer of exactly room bytes in the lent slot, or return NULL
 * when there is no slot or not that much left in it. The caller checks
 * lent_until first (the lender may lend the slot again a while after
 * that), once for all the buffers it takes. It must never grow
 * (its writer knows its bound); agg_text_free leaves it alone. */
struct strbuf *agg_text_lend(struct agg_text *t, size_t room);
/* The last buffer, where the text goes on (the first made on demand). */
struct strbuf *agg_text_cur(struct agg_text *t);
/* Append a new empty buffer and return it (earlier pointers into t->buf
 * are stale afterwards). */
struct strbuf *agg_text_add(struct agg_text *t);
/* Bytes of text in all buffers (base not counted). */
size_t agg_text_len(const struct agg_text *t);
/* The whole text as one string (caller frees; the selftests). */
char *agg_text_join(const struct agg_text *t);
void agg_text_free(struct agg_text *t);

/* The same, but an answer the request lets travel as text ("text": true,
 * rpc.h; aggregations over one series) is appended to text as JSON and
 * *body is NULL. */
int agg_query_reply(agg_store_t *store, const json_t *req, json_t **body,
                    struct agg_text *text);

/* Parse "series", "tags", "start", "end", "exact", "rollups" and "parts"
 * of req. Returns 0, or
 * -1 and sets *err to a 400 body (caller owns). */
int agg_query_sel(const json_t *req, struct agg_query_sel *sel, json_t **err);
/* The keys of the selected series in key order (so sums do not depend on
 * the store's hash order; caller frees the array only), and in *raw
 * whether raw points answer: asked for, or few and not thinned by
 * retention. Returns the number of series. */
size_t agg_query_plan(agg_store_t *store, const struct agg_query_sel *sel,
                      const char ***keys, bool *raw);
/* The raw points of the selected series (agg_store_select; caller frees
 * *views). Returns their number, or 0 with *body set to a 404. */
size_t agg_query_views(agg_store_t *store, const struct agg_query_sel *sel,
                       struct agg_view **views, json_t **body);
/* Error bodies and numbers (NaN and infinities become null). */
json_t *agg_query_bad(const char *message, const char *where);
json_t *agg_query_not_found(const char *series);
json_t *agg_query_num(double v);

/* Selftest. */
void agg_query_test(bool verbose);

#endif
