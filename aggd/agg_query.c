/*
 * agg_query: statistics, listing and export queries over the store, and
 * the selection and planning that agg_interval (aggregation) shares.
 */
#include "aggd/agg_query.h"
#include "aggd/agg_interval.h"
#include "aggd/agg_stats.h"
#include "common/clock.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <string.h>

#define AGG_QUERY_POINTS_MAX 100000
#define AGG_QUERY_VALUES_MAX 4000000

json_t *
agg_query_bad(const char *message, const char *where)
{
    return rpc_error("bad_request", message, where);
}

json_t *
agg_query_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

int
agg_query_sel(const json_t *req, struct agg_query_sel *sel, json_t **err)
{
    const json_t *tags = json_object_get(req, "tags"), *v;
    const char *k;

    memset(sel, 0, sizeof *sel);
    sel->start = INT64_MIN;
    sel->end = INT64_MAX;
    sel->series = json_string_value(json_object_get(req, "series"));
    if (sel->series == NULL || *sel->series == '\0') {
        *err = agg_query_bad("a series is required", "series");
        return -1;
    }
    if (json_is_integer(v = json_object_get(req, "start")))
        sel->start = json_integer_value(v);
    if (json_is_integer(v = json_object_get(req, "end")))
        sel->end = json_integer_value(v);
    if ((v = json_object_get(req, "exact")) && !json_is_boolean(v)) {
        *err = agg_query_bad("exact must be true or false", "exact");
        return -1;
    }
    sel->exact = json_is_true(v);
    sel->rollups = json_is_true(json_object_get(req, "rollups"));
    sel->parts = json_is_true(json_object_get(req, "parts"));
    if (sel->start >= sel->end) {
        *err = agg_query_bad("start must be before end", "start");
        return -1;
    }
    if (tags && !json_is_object(tags)) {
        *err = agg_query_bad("tags must be an object", "tags");
        return -1;
    }
    json_object_foreach((json_t *)tags, k, v) {
        if (!json_is_string(v) || sel->ntags == SERIES_TAGS_MAX) {
            *err = agg_query_bad("tag values must be strings (at most 32 tags)", "tags");
            return -1;
        }
        sel->tags[sel->ntags].key = k;
        sel->tags[sel->ntags].value = json_string_value(v);
        sel->ntags++;
    }
    return 0;
}

json_t *
agg_query_not_found(const char *series)
{
    char msg[SERIES_KEY_MAX + 64];
    snprintf(msg, sizeof msg, "no series matches '%.1000s'", series);
    return rpc_error("not_found", msg, "series");
}

size_t
agg_query_views(agg_store_t *store, const struct agg_query_sel *sel,
                struct agg_view **views, json_t **body)
{
    size_t nv = agg_store_select(store, sel->series, sel->tags, sel->ntags,
                                 sel->start, sel->end, views);

    if (nv == 0)
        *body = agg_query_not_found(sel->series);
    return nv;
}

/* The values of every view in one array; returns the count. One view's
 * values are lent as they are (*copy NULL), several are copied into
 * *copy (the caller frees it). */
static size_t
s_gather(const struct agg_view *v, size_t nv, const double **vals,
         double **copy)
{
    size_t n = 0, k = 0;
    for (size_t i = 0; i < nv; i++)
        n += v[i].n;
    *copy = NULL;
    if (nv == 1) {
        *vals = v[0].v;
        return n;
    }
    double **out = copy;
    *out = xmalloc((n ? n : 1) * sizeof **out);
    *vals = *out;
    for (size_t i = 0; i < nv; i++) {
        memcpy(*out + k, v[i].v, v[i].n * sizeof **out);
        k += v[i].n;
    }
    return n;
}

static void
s_pct_key(double p, char *buf, size_t len)
{
    char num[40];
    snprintf(buf, len, "p%s", strutil_dtoa(p, num, sizeof num));
}

static int
s_key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

size_t
agg_query_plan(agg_store_t *store, const struct agg_query_sel *sel,
               const char ***keys, bool *raw)
{
    size_t n = agg_store_keys(store, sel->series, sel->tags, sel->ntags, keys);
    size_t pts = 0;

    if (n > 1)
        qsort(*keys, n, sizeof **keys, s_key_cmp);
    for (size_t i = 0; i < n && !sel->rollups && pts <= AGG_QUERY_RAW_MAX; i++) {
        size_t e = agg_store_raw_estimate(store, (*keys)[i], sel->start,
                                          sel->end);
        pts = e == SIZE_MAX ? SIZE_MAX : pts + e;
    }
    *raw = sel->exact || (!sel->rollups && pts <= AGG_QUERY_RAW_MAX);
    return n;
}

static json_t *
s_time(int64_t ts)
{
    char tbuf[40];
    return json_string(clock_format(ts, tbuf, sizeof tbuf));
}

json_t *
agg_query_rollup_body(const char *series, size_t matched,
                      const struct agg_rsum *sum, const agg_sketch_t *sk,
                      const double *pcts, size_t npcts)
{
    json_t *b = json_pack("{s:s, s:I, s:I}", "series", series, "matched",
                          (json_int_t)matched, "count", (json_int_t)sum->m.count);
    char key[48];

    json_object_set_new(b, "mean", sum->m.count ? agg_query_num(sum->m.mean) : json_null());
    json_object_set_new(b, "std", agg_query_num(agg_stats_std(&sum->m)));
    json_object_set_new(b, "min", sum->m.count ? agg_query_num(sum->m.min) : json_null());
    json_object_set_new(b, "max", sum->m.count ? agg_query_num(sum->m.max) : json_null());
    json_object_set_new(b, "sum", agg_query_num(sum->m.sum));
    for (size_t i = 0; i < npcts; i++) {
        s_pct_key(pcts[i], key, sizeof key);
        json_object_set_new(b, key, agg_query_num(agg_sketch_quantile(sk, pcts[i] / 100)));
    }
    json_object_set_new(b, "estimated", json_true());
    json_object_set_new(b, "relative_error", json_real(AGG_SKETCH_ALPHA));
    json_object_set_new(b, "source", json_string("rollups"));
    json_object_set_new(b, "first", sum->m.count ? s_time(sum->first_ts) : json_null());
    json_object_set_new(b, "last", sum->m.count ? s_time(sum->last_ts) : json_null());
    json_object_set_new(b, "m2", agg_query_num(sum->m.m2));
    return b;
}

json_t *
agg_query_part(const char *key, const struct agg_rsum *r)
{
    return json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:I}",
                     "series", key, "count", (json_int_t)r->m.count, "mean",
                     r->m.mean, "m2", r->m.m2, "sum", r->m.sum, "min", r->m.min,
                     "max", r->m.max, "first", r->first, "last", r->last,
                     "first_ts", (json_int_t)r->first_ts, "last_ts",
                     (json_int_t)r->last_ts);
}

int
agg_query_part_parse(const json_t *p, const char **key, struct agg_rsum *r)
{
    json_int_t count, fts, lts;
    json_error_t err;

    memset(r, 0, sizeof *r);
    if (json_unpack_ex((json_t *)p, &err, JSON_STRICT,
                       "{s:s, s:I, s:F, s:F, s:F, s:F, s:F, s:F, s:F, s:I, s:I}",
                       "series", key, "count", &count, "mean", &r->m.mean, "m2",
                       &r->m.m2, "sum", &r->m.sum, "min", &r->m.min, "max",
                       &r->m.max, "first", &r->first, "last", &r->last,
                       "first_ts", &fts, "last_ts", &lts) || count < 0)
        return -1;
    r->m.count = (uint64_t)count;
    r->first_ts = fts;
    r->last_ts = lts;
    return 0;
}

/* Statistics from rollups: moments exact up to rounding, percentiles
 * from the merged sketch ("estimated", within relative_error). Each
 * series is summed on its own, then the sums in key order, which is what
 * apid repeats with the parts of several lanes. */
static json_t *
s_stats_rollup(agg_store_t *store, const struct agg_query_sel *sel, const char **keys,
               size_t nk, const double *pcts, size_t npcts)
{
    struct agg_rsum sum = {0};
    agg_sketch_t *sk = agg_sketch_new();
    json_t *b, *parts = sel->parts ? json_array() : NULL;

    for (size_t i = 0; i < nk; i++) {
        struct agg_rsum one = {0};
        agg_store_summarize(store, keys[i], sel->start, sel->end, &one, sk);
        agg_rsum_merge(&sum, &one);
        if (parts && one.m.count)
            json_array_append_new(parts, agg_query_part(keys[i], &one));
    }
    b = agg_query_rollup_body(sel->series, nk, &sum, sk, pcts, npcts);
    if (parts) {
        json_object_set_new(b, "parts", parts);
        json_object_set_new(b, "sketch", agg_sketch_to_json(sk));
    }
    agg_sketch_destroy(&sk);
    return b;
}

size_t
agg_query_pcts(const json_t *req, double *pcts, json_t **err)
{
    static const double std_pcts[] = {50, 90, 95, 99};
    const json_t *jp = json_object_get(req, "percentiles"), *x;
    size_t npcts = 0, i;

    for (i = 0; i < 4; i++)
        pcts[npcts++] = std_pcts[i];
    if (jp && !json_is_array(jp)) {
        *err = agg_query_bad("percentiles must be an array of numbers", "percentiles");
        return 0;
    }
    json_array_foreach(jp, i, x) {
        double p = json_number_value(x);
        if (!json_is_number(x) || p < 0 || p > 100 || npcts == AGG_QUERY_PCTS_MAX) {
            *err = agg_query_bad("percentiles must be numbers in [0, 100] (at most 28)",
                          "percentiles");
            return 0;
        }
        pcts[npcts++] = p;
    }
    return npcts;
}

static int
s_stats(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    struct agg_view *views;
    struct agg_moments m = {0};
    double pcts[AGG_QUERY_PCTS_MAX], *copy;
    const double *vals;
    size_t npcts, nv, n;
    int64_t first = INT64_MAX, last = INT64_MIN;
    size_t i;
    char key[48], tbuf[40];

    if (agg_query_sel(req, &sel, body) ||
        (npcts = agg_query_pcts(req, pcts, body)) == 0)
        return 400;
    const char **keys;
    bool raw;
    size_t nk = agg_query_plan(store, &sel, &keys, &raw);
    if (nk > 0 && !raw) {
        *body = s_stats_rollup(store, &sel, keys, nk, pcts, npcts);
        free(keys);
        return 200;
    }
    free(keys);
    if ((nv = agg_query_views(store, &sel, &views, body)) == 0)
        return 404;
    m.min = INFINITY;
    m.max = -INFINITY;
    for (i = 0; i < nv; i++) {
        for (size_t k = 0; k < views[i].n; k++) {
            double val = views[i].v[k];
            m.sum += val;
            m.min = val < m.min ? val : m.min;
            m.max = val > m.max ? val : m.max;
        }
        m.count += views[i].n;
        if (views[i].n) {
            if (views[i].ts[0] < first)
                first = views[i].ts[0];
            if (views[i].ts[views[i].n - 1] > last)
                last = views[i].ts[views[i].n - 1];
        }
    }
    n = s_gather(views, nv, &vals, &copy);
    /* Two passes over the raw values, as numpy does, so the exact answer
     * matches it to the last digit; Welford's running M2 differs there. */
    if (n > 0) {
        double mean = m.sum / (double)n, m2 = 0;
        for (i = 0; i < n; i++)
            m2 += (vals[i] - mean) * (vals[i] - mean);
        m.mean = mean;
        m.m2 = m2;
    }
    double got[AGG_QUERY_PCTS_MAX];
    if (n > 0)
        agg_stats_percentiles(vals, n, pcts, npcts, got);
    *body = json_pack("{s:s, s:I, s:I}", "series", sel.series, "matched",
                      (json_int_t)nv, "count", (json_int_t)m.count);
    json_object_set_new(*body, "mean", m.count ? agg_query_num(m.mean) : json_null());
    json_object_set_new(*body, "std", agg_query_num(agg_stats_std(&m)));
    json_object_set_new(*body, "min", m.count ? agg_query_num(m.min) : json_null());
    json_object_set_new(*body, "max", m.count ? agg_query_num(m.max) : json_null());
    json_object_set_new(*body, "sum", agg_query_num(m.sum));
    for (i = 0; i < npcts; i++) {
        s_pct_key(pcts[i], key, sizeof key);
        json_object_set_new(*body, key,
                            n ? agg_query_num(got[i])
                              : json_null());
    }
    json_object_set_new(*body, "estimated", json_false());
    json_object_set_new(*body, "source", json_string("raw"));
    json_object_set_new(*body, "first",
                        m.count ? json_string(clock_format(first, tbuf, sizeof tbuf))
                                : json_null());
    json_object_set_new(*body, "last",
                        m.count ? json_string(clock_format(last, tbuf, sizeof tbuf))
                                : json_null());
    /* Mergeable moments for scatter/gather over lanes. */
    json_object_set_new(*body, "m2", agg_query_num(m.m2));
    free(copy);
    free(views);
    return 200;
}

static int
s_series(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    struct agg_view *views;
    size_t nv;
    json_t *list = json_array();
    char tbuf[40];

    if (agg_query_sel(req, &sel, body)) {
        json_decref(list);
        return 400;
    }
    nv = agg_store_select(store, sel.series, sel.tags, sel.ntags, sel.start,
                          sel.end, &views);
    for (size_t i = 0; i < nv; i++) {
        json_t *e = json_pack("{s:s, s:I}", "series", views[i].key, "points",
                              (json_int_t)views[i].n);
        if (views[i].n) {
            json_object_set_new(e, "last", json_string(clock_format(
                views[i].ts[views[i].n - 1], tbuf, sizeof tbuf)));
            json_object_set_new(e, "last_value", agg_query_num(views[i].v[views[i].n - 1]));
        }
        json_array_append_new(list, e);
    }
    free(views);
    *body = json_pack("{s:I, s:o}", "matched", (json_int_t)nv, "series", list);
    return 200;
}

static int
s_view_cmp(const void *a, const void *b)
{
    return strcmp(((const struct agg_view *)a)->key,
                  ((const struct agg_view *)b)->key);
}

static int
s_points(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    struct agg_view *views;
    size_t nv, limit = AGG_QUERY_POINTS_MAX, emitted = 0;
    const json_t *jl = json_object_get(req, "limit");
    bool ns = json_is_true(json_object_get(req, "ns"));
    json_t *series;
    char tbuf[40];

    if (agg_query_sel(req, &sel, body))
        return 400;
    if (jl && (!json_is_integer(jl) || json_integer_value(jl) < 1)) {
        *body = agg_query_bad("limit must be a positive integer", "limit");
        return 400;
    }
    if (jl && json_integer_value(jl) < (json_int_t)limit)
        limit = (size_t)json_integer_value(jl);
    if ((nv = agg_query_views(store, &sel, &views, body)) == 0)
        return 404;
    /* In key order, so a truncated export is the same whatever the store's
     * order, and apid can merge lanes' exports exactly. */
    qsort(views, nv, sizeof *views, s_view_cmp);
    series = json_array();
    for (size_t i = 0; i < nv && emitted < limit; i++) {
        json_t *pts = json_array();
        for (size_t j = 0; j < views[i].n && emitted < limit; j++, emitted++) {
            json_t *pt = json_pack(
                "{s:s, s:o}", "timestamp",
                clock_format(views[i].ts[j], tbuf, sizeof tbuf), "value",
                agg_query_num(views[i].v[j]));
            /* The exact time too, for a client that pages on it. */
            if (ns)
                json_object_set_new(pt, "ns", json_integer(views[i].ts[j]));
            json_array_append_new(pts, pt);
        }
        json_array_append_new(series, json_pack("{s:s, s:o}", "series",
                                                views[i].key, "points", pts));
    }
    *body = json_pack("{s:I, s:I, s:b, s:o}", "matched", (json_int_t)nv,
                      "count", (json_int_t)emitted, "truncated",
                      emitted >= limit, "series", series);
    free(views);
    return 200;
}

/* The raw points of a selection, per series (timestamps in ns), for apid
 * to merge lanes exactly (api_lanes.c); 413 when there are more than
 * "max" of them. */
static int
s_values(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    struct agg_view *views;
    size_t nv, n = 0, max = AGG_QUERY_VALUES_MAX;
    const json_t *jm = json_object_get(req, "max");
    json_t *list;

    if (agg_query_sel(req, &sel, body))
        return 400;
    if (json_is_integer(jm) && json_integer_value(jm) > 0 &&
        json_integer_value(jm) < (json_int_t)max)
        max = (size_t)json_integer_value(jm);
    if ((nv = agg_query_views(store, &sel, &views, body)) == 0)
        return 404;
    for (size_t i = 0; i < nv; i++)
        n += views[i].n;
    if (n > max) {
        free(views);
        *body = rpc_error("too_large", "more points than asked for", "max");
        return 413;
    }
    list = json_array();
    for (size_t i = 0; i < nv; i++) {
        json_t *ts = json_array(), *v = json_array();
        for (size_t j = 0; j < views[i].n; j++) {
            json_array_append_new(ts, json_integer(views[i].ts[j]));
            json_array_append_new(v, json_real(views[i].v[j]));
        }
        json_array_append_new(list, json_pack("{s:s, s:o, s:o}", "series",
                                              views[i].key, "ts", ts, "v", v));
    }
    free(views);
    *body = json_pack("{s:I, s:I, s:o}", "matched", (json_int_t)nv, "count",
                      (json_int_t)n, "series", list);
    return 200;
}

/* Delete the selected series, or their points in [start, end). */
static int
s_delete(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    const char **keys;
    size_t nk;
    long long deleted = 0;
    bool partial = false, p;
    char key[SERIES_KEY_MAX];

    if (agg_query_sel(req, &sel, body))
        return 400;
    if ((nk = agg_store_keys(store, sel.series, sel.tags, sel.ntags, &keys)) == 0) {
        *body = agg_query_not_found(sel.series);
        return 404;
    }
    for (size_t i = 0; i < nk; i++) {
        /* keys[i] belongs to the series: copy it before it goes. */
        snprintf(key, sizeof key, "%s", keys[i]);
        long long n = agg_store_delete(store, key, sel.start, sel.end, &p);
        deleted += n > 0 ? n : 0;
        partial |= p;
    }
    free(keys);
    *body = json_pack("{s:I, s:I, s:b, s:b}", "matched", (json_int_t)nk,
                      "deleted", (json_int_t)deleted, "series_removed",
                      sel.start == INT64_MIN && sel.end == INT64_MAX,
                      "rollups_partial", partial);
    return 200;
}

int
agg_query_answer(agg_store_t *store, const json_t *req, json_t **body)
{
    return agg_query_reply(store, req, body, NULL);
}

int
agg_query_reply(agg_store_t *store, const json_t *req, json_t **body,
                struct strbuf *text)
{
    const char *op = json_string_value(json_object_get(req, "op"));

    if (op == NULL) {
        *body = agg_query_bad("missing op", "op");
        return 400;
    }
    if (strcmp(op, "stats") == 0)
        return s_stats(store, req, body);
    if (strcmp(op, "aggregate") == 0)
        return agg_interval_reply(store, req, body, text);
    if (strcmp(op, "series") == 0)
        return s_series(store, req, body);
    if (strcmp(op, "points") == 0)
        return s_points(store, req, body);
    if (strcmp(op, "values") == 0)
        return s_values(store, req, body);
    if (strcmp(op, "delete") == 0)
        return s_delete(store, req, body);
    *body = rpc_error("unknown_op", "aggd does not know this query", op);
    return 400;
}

static json_t *
s_test_ask(agg_store_t *st, json_t *req)
{
    json_t *body;
    assert(agg_query_answer(st, req, &body) == 200);
    json_decref(req);
    return body;
}

/* 250,000 points: without "exact" the answer comes from rollups (moments
 * equal to the raw ones up to rounding, percentiles within 1 %, marked
 * estimated); with it from the raw points. */
static void
s_test_rollup_path(void)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    json_t *r, *x, *a, *b;
    const char *keys[] = {"count", "mean", "std", "min", "max", "sum"};

    for (int i = 0; i < 250000; i++)
        agg_store_put(st, "big", t0 + i * 10 * s1, 20 + (i * 7919 % 1000) / 100.0);
    r = s_test_ask(st, json_pack("{s:s, s:s}", "op", "stats", "series", "big"));
    x = s_test_ask(st, json_pack("{s:s, s:s, s:b}", "op", "stats", "series",
                                 "big", "exact", 1));
    assert(json_is_true(json_object_get(r, "estimated")));
    assert(json_is_false(json_object_get(x, "estimated")));
    TEST_STREQ(json_string_value(json_object_get(r, "source")), "rollups");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        TEST_NEAR(json_number_value(json_object_get(r, keys[i])),
                  json_number_value(json_object_get(x, keys[i])),
                  1e-9 * fabs(json_number_value(json_object_get(x, keys[i]))));
    TEST_NEAR(json_real_value(json_object_get(r, "p99")),
              json_real_value(json_object_get(x, "p99")),
              0.01 * json_real_value(json_object_get(x, "p99")));
    json_decref(r);
    json_decref(x);
    /* A small range is raw and exact by itself. */
    r = s_test_ask(st, json_pack("{s:s, s:s, s:I, s:I}", "op", "stats",
                                 "series", "big", "start", (json_int_t)t0,
                                 "end", (json_int_t)(t0 + 3600 * s1)));
    assert(json_is_false(json_object_get(r, "estimated")) &&
           json_integer_value(json_object_get(r, "count")) == 360);
    json_decref(r);
    /* 5-minute means over a ragged range: rollups equal raw. */
    r = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:I}", "op",
                                 "aggregate", "series", "big", "interval",
                                 "5min", "aggregation", "mean", "start",
                                 (json_int_t)(t0 + 17 * s1)));
    x = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b}", "op",
                                 "aggregate", "series", "big", "interval",
                                 "5min", "aggregation", "mean", "start",
                                 (json_int_t)(t0 + 17 * s1), "exact", 1));
    TEST_STREQ(json_string_value(json_object_get(r, "source")), "rollups");
    a = json_object_get(r, "buckets");
    b = json_object_get(x, "buckets");
    assert(json_array_size(a) == json_array_size(b) && json_array_size(a) > 8000);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *p = json_array_get(a, i), *q = json_array_get(b, i);
        TEST_STREQ(json_string_value(json_object_get(p, "timestamp")),
                   json_string_value(json_object_get(q, "timestamp")));
        assert(json_integer_value(json_object_get(p, "count")) ==
               json_integer_value(json_object_get(q, "count")));
        TEST_NEAR(json_real_value(json_object_get(p, "value")),
                  json_real_value(json_object_get(q, "value")), 1e-9);
    }
    json_decref(r);
    json_decref(x);
    r = json_pack("{s:s, s:s, s:s}", "op", "stats", "series", "big", "exact", "yes");
    assert(agg_query_answer(st, r, &x) == 400);
    json_decref(x);
    json_decref(r);
    agg_store_destroy(&st);
}

void
agg_query_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    json_t *req, *body;
    int64_t t0 = 1704067200LL * CLOCK_NS_PER_S;

    agg_store_put(st, "temp_sensor_001", t0, 23.5);
    agg_store_put(st, "temp_sensor_001", t0 + 60 * CLOCK_NS_PER_S, 23.7);
    req = json_pack("{s:s, s:s}", "op", "stats", "series", "temp_sensor_001");
    assert(agg_query_answer(st, req, &body) == 200);
    TEST_NEAR(json_real_value(json_object_get(body, "mean")), 23.6, 1e-12);
    TEST_NEAR(json_real_value(json_object_get(body, "std")), 0.1414213562373095, 1e-15);
    assert(json_integer_value(json_object_get(body, "count")) == 2);
    TEST_NEAR(json_real_value(json_object_get(body, "p50")), 23.6, 1e-12);
    TEST_STREQ(json_string_value(json_object_get(body, "first")),
               "2024-01-01T00:00:00.000Z");
    json_decref(body);
    json_decref(req);

    req = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series",
                    "temp_sensor_001", "interval", "1h", "aggregation", "max");
    assert(agg_query_answer(st, req, &body) == 200);
    json_t *b0 = json_array_get(json_object_get(body, "buckets"), 0);
    assert(json_real_value(json_object_get(b0, "value")) == 23.7);
    assert(json_integer_value(json_object_get(b0, "count")) == 2);
    json_decref(body);
    json_decref(req);

    req = json_pack("{s:s, s:s, s:s}", "op", "aggregate", "series",
                    "temp_sensor_001", "interval", "5 parsecs");
    assert(agg_query_answer(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);

    req = json_pack("{s:s, s:s}", "op", "stats", "series", "nope");
    assert(agg_query_answer(st, req, &body) == 404);
    json_decref(body);
    json_decref(req);

    req = json_pack("{s:s, s:s, s:[f]}", "op", "stats", "series",
                    "temp_sensor_001", "percentiles", 99.9);
    assert(agg_query_answer(st, req, &body) == 200);
    assert(json_object_get(body, "p99.9") != NULL);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:s}", "op", "values", "series", "temp_sensor_001");
    assert(agg_query_answer(st, req, &body) == 200);
    json_t *sv = json_array_get(json_object_get(body, "series"), 0);
    assert(json_integer_value(json_array_get(json_object_get(sv, "ts"), 1)) ==
           t0 + 60 * CLOCK_NS_PER_S);
    assert(json_real_value(json_array_get(json_object_get(sv, "v"), 1)) == 23.7);
    json_decref(body);
    json_object_set_new(req, "max", json_integer(1));
    assert(agg_query_answer(st, req, &body) == 413);
    json_decref(body);
    json_decref(req);
    agg_store_destroy(&st);
    s_test_rollup_path();
    (void)verbose;
    TEST_OK("agg_query");
}
