/*
 * api_lanes: merging the answers of every lane (see api_lanes.h).
 *
 * apid links aggd's agg_query, agg_store and agg_stats for this, so a
 * merged answer comes from the very code a single aggd runs rather than
 * from a copy of it that could drift.
 */
#include "apid/api_lanes.h"
#include "aggd/agg_interval.h"
#include "aggd/agg_query.h"
#include "aggd/agg_sketch.h"
#include "aggd/agg_stats.h"
#include "aggd/agg_store.h"
#include "common/clock.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *
s_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static json_int_t
s_int(const json_t *o, const char *k)
{
    return json_integer_value(json_object_get(o, k));
}

static json_t *
s_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* Errors first: a lane that did not answer or answered neither 200 nor
 * 404 decides; when none answered 200, the first 404 does. Returns 1 with
 * the answer set, 0 when at least one lane answered 200. */
static int
s_errors(const struct api_lanes_reply *r, size_t n, int *status, json_t **out)
{
    size_t ok = 0, nf = n;

    for (size_t i = 0; i < n; i++) {
        if (r[i].body == NULL) {
            *status = 503;
            *out = rpc_error("unavailable", "a lane did not answer", "lane");
            return 1;
        }
        if (r[i].status == 200)
            ok++;
        else if (r[i].status == 404 && nf == n)
            nf = i;
        else if (r[i].status != 404) {
            *status = r[i].status;
            *out = json_incref(r[i].body);
            return 1;
        }
    }
    if (ok > 0)
        return 0;
    *status = nf < n ? r[nf].status : 404;
    *out = nf < n ? json_incref(r[nf].body)
                  : rpc_error("not_found", "no lane answered", "series");
    return 1;
}

/* Sum of "matched" over the lanes that answered 200; *owner is the one
 * lane with matches when exactly one has them, else -1. */
static json_int_t
s_matched(const struct api_lanes_reply *r, size_t n, long *owner)
{
    json_int_t total = 0;
    size_t with = 0;

    *owner = -1;
    for (size_t i = 0; i < n; i++) {
        json_int_t m;
        if (r[i].status != 200 || (m = s_int(r[i].body, "matched")) <= 0)
            continue;
        total += m;
        with++;
        *owner = (long)i;
    }
    if (with != 1)
        *owner = -1;
    return total;
}

/* --- concatenations ----------------------------------------------------- */

struct s_item {
    json_t *j;     /* borrowed element */
    const char *a; /* first sort key */
    const char *b; /* second sort key */
};

static int
s_item_cmp(const void *x, const void *y)
{
    const struct s_item *p = x, *q = y;
    int c = strcmp(p->a, q->a);
    return c ? c : strcmp(p->b, q->b);
}

/* Every element of the array "key" of every 200 body, sorted by (ka, kb);
 * the last `keep` of them when keep > 0. */
static json_t *
s_concat(const struct api_lanes_reply *r, size_t n, const char *key,
         const char *ka, const char *kb, size_t keep)
{
    size_t total = 0, k = 0, from = 0;
    struct s_item *it;
    json_t *out = json_array();

    for (size_t i = 0; i < n; i++)
        if (r[i].status == 200)
            total += json_array_size(json_object_get(r[i].body, key));
    it = xmalloc((total ? total : 1) * sizeof *it);
    for (size_t i = 0; i < n; i++) {
        size_t j;
        json_t *e;
        if (r[i].status != 200)
            continue;
        json_array_foreach(json_object_get(r[i].body, key), j, e) {
            it[k].j = e;
            it[k].a = s_str(e, ka);
            it[k++].b = kb ? s_str(e, kb) : "";
        }
    }
    qsort(it, total, sizeof *it, s_item_cmp);
    if (keep > 0 && total > keep)
        from = total - keep;
    for (size_t i = from; i < total; i++)
        json_array_append(out, it[i].j);
    free(it);
    return out;
}

static long
s_first_ok(const struct api_lanes_reply *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].status == 200)
            return (long)i;
    return -1;
}

static json_t *
s_merge_series(const struct api_lanes_reply *r, size_t n)
{
    long owner;
    json_int_t m = s_matched(r, n, &owner);
    return json_pack("{s:I, s:o}", "matched", m, "series",
                     s_concat(r, n, "series", "series", NULL, 0));
}

/* Export: series by key, cut at the limit exactly as one aggd cuts
 * (agg_query.c s_points: whole series while under the limit, the last
 * one partly; truncated once the limit is reached). */
static json_t *
s_merge_points(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    long owner;
    json_int_t m = s_matched(r, n, &owner);
    json_t *all = s_concat(r, n, "series", "series", NULL, 0), *out, *e;
    json_int_t limit = s_int(q, "limit"), count = 0;
    size_t i;

    if (limit <= 0 || limit > API_LANES_POINTS_MAX)
        limit = API_LANES_POINTS_MAX;
    out = json_array();
    json_array_foreach(all, i, e) {
        json_t *pts = json_object_get(e, "points"), *cut;
        if (count >= limit)
            break;
        cut = json_array();
        for (size_t k = 0; k < json_array_size(pts) && count < limit; k++, count++)
            json_array_append(cut, json_array_get(pts, k));
        json_array_append_new(out, json_pack("{s:O, s:o}", "series",
                                             json_object_get(e, "series"),
                                             "points", cut));
    }
    json_decref(all);
    return json_pack("{s:I, s:I, s:b, s:o}", "matched", m, "count", count,
                     "truncated", count >= limit, "series", out);
}

/* Anomalies: by time then series, the most recent `limit`. */
static json_t *
s_merge_anomalies(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    long owner, f = s_first_ok(r, n);
    json_int_t m = s_matched(r, n, &owner), limit = s_int(q, "limit");
    json_t *out = json_deep_copy(r[f].body);

    json_object_set_new(out, "matched", json_integer(m));
    json_object_set_new(out, "anomalies",
                        s_concat(r, n, "anomalies", "timestamp", "series",
                                 limit > 0 ? (size_t)limit : 0));
    return out;
}

/* --- stats and aggregation ---------------------------------------------- */

/* The "values" query for the selection of q. */
static json_t *
s_values_query(const json_t *q, size_t n)
{
    static const char *keys[] = {"series", "tags", "start", "end"};
    json_t *v = json_pack("{s:s, s:I}", "op", "values", "max",
                          (json_int_t)(API_LANES_VALUES_MAX / n ? API_LANES_VALUES_MAX / n : 1));
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (json_object_get(q, keys[i]))
            json_object_set(v, keys[i], json_object_get(q, keys[i]));
    return v;
}

/* Stats past the values limit: Chan's merge of each lane's moments; the
 * percentiles stay null. */
static json_t *
s_stats_moments(const struct api_lanes_reply *r, size_t n, json_int_t matched)
{
    struct agg_moments m = {0};
    const char *first = NULL, *last = NULL, *k;
    long f = s_first_ok(r, n);
    json_t *out, *v;

    for (size_t i = 0; i < n; i++) {
        const json_t *b = r[i].body;
        struct agg_moments x = {0};
        if (r[i].status != 200 || s_int(b, "count") <= 0)
            continue;
        x.count = (uint64_t)s_int(b, "count");
        x.mean = json_number_value(json_object_get(b, "mean"));
        x.m2 = json_number_value(json_object_get(b, "m2"));
        x.sum = json_number_value(json_object_get(b, "sum"));
        x.min = json_number_value(json_object_get(b, "min"));
        x.max = json_number_value(json_object_get(b, "max"));
        agg_stats_merge(&m, &x);
        if (!first || strcmp(s_str(b, "first"), first) < 0)
            first = s_str(b, "first");
        if (!last || strcmp(s_str(b, "last"), last) > 0)
            last = s_str(b, "last");
    }
    out = json_pack("{s:O, s:I, s:I}", "series",
                    json_object_get(r[f].body, "series"), "matched", matched,
                    "count", (json_int_t)m.count);
    json_object_set_new(out, "mean", m.count ? s_num(m.mean) : json_null());
    json_object_set_new(out, "std", s_num(agg_stats_std(&m)));
    json_object_set_new(out, "min", m.count ? s_num(m.min) : json_null());
    json_object_set_new(out, "max", m.count ? s_num(m.max) : json_null());
    json_object_set_new(out, "sum", s_num(m.sum));
    json_object_foreach(r[f].body, k, v)
        if (k[0] == 'p' && k[1] >= '0' && k[1] <= '9')
            json_object_set_new(out, k, json_null());
    json_object_set_new(out, "estimated", json_false());
    json_object_set_new(out, "percentiles_exact", json_false());
    json_object_set_new(out, "first", first ? json_string(first) : json_null());
    json_object_set_new(out, "last", last ? json_string(last) : json_null());
    json_object_set_new(out, "m2", s_num(m.m2));
    return out;
}

struct s_entry {
    const char *key; /* series key */
    const json_t *ts; /* its timestamps */
    const json_t *v;  /* its values */
};

/* qsort order of structs whose first member is their series key
 * (s_entry, s_part). */
static int
s_key_cmp(const void *x, const void *y)
{
    return strcmp(*(const char *const *)x, *(const char *const *)y);
}

/* Run q on a scratch store holding every lane's points, loaded in key
 * order so the store, and so the answer, is the same for any N. */
static int
s_from_values(const json_t *q, const struct api_lanes_reply *v, size_t n,
              json_int_t matched, json_t **out)
{
    size_t total = 0, k = 0;
    struct s_entry *e;
    agg_store_t *st = agg_store_new();
    int status;

    for (size_t i = 0; i < n; i++)
        if (v[i].status == 200)
            total += json_array_size(json_object_get(v[i].body, "series"));
    e = xmalloc((total ? total : 1) * sizeof *e);
    for (size_t i = 0; i < n; i++) {
        size_t j;
        json_t *s;
        if (v[i].status != 200)
            continue;
        json_array_foreach(json_object_get(v[i].body, "series"), j, s) {
            e[k].key = s_str(s, "series");
            e[k].ts = json_object_get(s, "ts");
            e[k++].v = json_object_get(s, "v");
        }
    }
    qsort(e, total, sizeof *e, s_key_cmp);
    for (size_t i = 0; i < total; i++)
        for (size_t j = 0; j < json_array_size(e[i].ts); j++)
            agg_store_put(st, e[i].key,
                          (int64_t)json_integer_value(json_array_get(e[i].ts, j)),
                          json_number_value(json_array_get(e[i].v, j)));
    free(e);
    status = agg_query_answer(st, q, out);
    agg_store_destroy(&st);
    /* Series with no point in the range match too, as on one lane. */
    if (status == 200 && json_object_get(*out, "matched"))
        json_object_set_new(*out, "matched", json_integer(matched));
    return status;
}

/* --- rollups and sketches ------------------------------------------------ */

/* Whether one aggd would answer q from rollups, judged from the lanes'
 * first answers: a lane did (its own points past AGG_QUERY_RAW_MAX, or
 * thinned by retention), or together they hold more points than that
 * (one aggd's estimate counts at least these). For stats, and for
 * aggregates where aggd takes rollups (whole-minute intervals, time-zone
 * days, rolling windows); never with "exact". */
static bool
s_rollups_due(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    const char *op = s_str(q, "op");
    json_int_t pts = 0;
    int64_t step;
    bool windowed;

    if (json_is_true(json_object_get(q, "exact")))
        return false;
    if (!strcmp(op, "aggregate")) {
        if (!json_object_get(q, "tz") && !json_object_get(q, "window") &&
            (clock_parse_duration(s_str(q, "interval"), &step) ||
             step % (60 * CLOCK_NS_PER_S) != 0))
            return false;
    } else if (strcmp(op, "stats")) {
        return false;
    }
    /* Rolling windows count a point in several buckets: only a lane's
     * own choice tells then (else the values round, whose scratch store
     * chooses as one aggd does). */
    windowed = !strcmp(op, "aggregate") && json_object_get(q, "window");
    for (size_t i = 0; i < n; i++) {
        size_t j;
        json_t *b;
        if (r[i].status != 200)
            continue;
        if (!strcmp(s_str(r[i].body, "source"), "rollups"))
            return true;
        if (windowed)
            continue;
        if (!strcmp(op, "stats"))
            pts += s_int(r[i].body, "count");
        else
            json_array_foreach(json_object_get(r[i].body, "buckets"), j, b)
                pts += s_int(b, "count");
    }
    return pts > AGG_QUERY_RAW_MAX;
}

/* Whether the rollup round's answers stay within API_LANES_PARTS_MAX
 * series summaries: an aggregate other than a percentile sends one per
 * series and bucket, at most the series matched times the most buckets a
 * lane answered with (the same figures for any N). */
static bool
s_parts_fit(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    const char *agg = json_string_value(json_object_get(q, "aggregation"));
    size_t buckets = 0;
    long owner;
    double pct;

    if (strcmp(s_str(q, "op"), "aggregate") ||
        agg_stats_fn(agg ? agg : "mean", &pct) == AGG_FN_PCT)
        return true;
    for (size_t i = 0; i < n; i++) {
        size_t b = r[i].status == 200
                       ? json_array_size(json_object_get(r[i].body, "buckets"))
                       : 0;
        buckets = b > buckets ? b : buckets;
    }
    return (double)s_matched(r, n, &owner) * (double)buckets <=
           API_LANES_PARTS_MAX;
}

/* Does q take the rollup round (else the values round)? */
static bool
s_parts_round(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    return s_rollups_due(q, r, n) && s_parts_fit(q, r, n);
}

/* Would the values round answer q wrong: it is past the parts bound
 * while a lane answered from rollups, i.e. its raw points no longer
 * hold every reading (retention), so only the parts could count them. */
static bool
s_parts_needed(const json_t *q, const struct api_lanes_reply *r, size_t n)
{
    if (!s_rollups_due(q, r, n) || s_parts_fit(q, r, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if (r[i].status == 200 &&
            !strcmp(s_str(r[i].body, "source"), "rollups"))
            return true;
    return false;
}

/* The query every lane answers from rollups with its mergeable parts. */
static json_t *
s_rollups_query(const json_t *q)
{
    json_t *o = json_deep_copy(q);
    json_object_del(o, "text"); /* the parts are merged, not relayed */
    json_object_set_new(o, "rollups", json_true());
    json_object_set_new(o, "parts", json_true());
    return o;
}

static json_t *
s_bad_lane(void)
{
    return rpc_error("bad_lane_answer",
                     "a lane's rollup answer cannot be merged", "lanes");
}

struct s_part {
    const char *key;
    struct agg_rsum r;
};

/* Stats from the lanes' rollup parts: the per-series summaries merged in
 * key order and the sketches added bucket by bucket, as one aggd sums. */
static int
s_from_parts(const json_t *q, const struct api_lanes_reply *v, size_t n,
             json_int_t matched, json_t **out)
{
    double pcts[AGG_QUERY_PCTS_MAX];
    size_t npcts = agg_query_pcts(q, pcts, out), total = 0, k = 0;
    struct agg_rsum sum = {0};
    agg_sketch_t *sk;
    struct s_part *pt;
    bool ok = true;

    if (npcts == 0)
        return 400;
    for (size_t i = 0; i < n; i++)
        if (v[i].status == 200)
            total += json_array_size(json_object_get(v[i].body, "parts"));
    pt = xmalloc((total ? total : 1) * sizeof *pt);
    sk = agg_sketch_new();
    for (size_t i = 0; i < n && ok; i++) {
        const json_t *b = v[i].body, *e;
        json_int_t count = 0;
        size_t j;
        if (v[i].status != 200)
            continue;
        ok = json_is_array(json_object_get(b, "parts")) &&
             agg_sketch_merge_json(sk, json_object_get(b, "sketch")) == 0;
        json_array_foreach(json_object_get(b, "parts"), j, e) {
            if (!ok || agg_query_part_parse(e, &pt[k].key, &pt[k].r)) {
                ok = false;
                break;
            }
            count += (json_int_t)pt[k++].r.m.count;
        }
        ok = ok && count == s_int(b, "count");
    }
    if (ok) {
        qsort(pt, k, sizeof *pt, s_key_cmp);
        for (size_t i = 0; i < k; i++)
            agg_rsum_merge(&sum, &pt[i].r);
        *out = agg_query_rollup_body(s_str(q, "series"), (size_t)matched, &sum,
                                     sk, pcts, npcts);
    } else {
        *out = s_bad_lane();
    }
    free(pt);
    agg_sketch_destroy(&sk);
    return ok ? 200 : 502;
}

struct s_bucket {
    int64_t ts;
    const json_t *b;
};

static int
s_bucket_cmp(const void *x, const void *y)
{
    int64_t a = ((const struct s_bucket *)x)->ts, b = ((const struct s_bucket *)y)->ts;
    return (a > b) - (a < b);
}

/* The value of one merged bucket: buckets bk[0..nb) of the lanes,
 * all of the same start. A percentile adds their sketches; any other
 * aggregation sorts their parts (pt, room for every part) by key and
 * merges them in that order, as one aggd merges its series
 * (agg_interval.h). Returns false when a lane's bucket does not add up. */
static bool
s_bucket_value(const struct s_bucket *bk, size_t nb, int fn, double pct,
               struct s_part *pt, double *value, json_int_t *count)
{
    struct agg_rsum sum = {0};
    agg_sketch_t *sk = agg_sketch_new();
    size_t k = 0;
    bool ok = true;

    *count = 0;
    for (size_t i = 0; i < nb && ok; i++) {
        json_int_t c = s_int(bk[i].b, "count"), in = 0;
        size_t j;
        json_t *e;
        *count += c;
        if (fn == AGG_FN_PCT) {
            ok = agg_sketch_merge_json(sk, json_object_get(bk[i].b, "sketch")) == 0;
            continue;
        }
        ok = json_is_array(json_object_get(bk[i].b, "parts"));
        json_array_foreach(json_object_get(bk[i].b, "parts"), j, e) {
            if (!ok || agg_query_part_parse(e, &pt[k].key, &pt[k].r)) {
                ok = false;
                break;
            }
            in += (json_int_t)pt[k++].r.m.count;
        }
        ok = ok && in == c;
    }
    if (ok && fn == AGG_FN_PCT) {
        ok = (uint64_t)*count == agg_sketch_count(sk);
    } else if (ok) {
        qsort(pt, k, sizeof *pt, s_key_cmp);
        for (size_t i = 0; i < k; i++)
            agg_rsum_merge(&sum, &pt[i].r);
    }
    *value = agg_interval_value(fn, pct, &sum, sk);
    agg_sketch_destroy(&sk);
    return ok;
}

/* An aggregate from the lanes' rollup buckets: buckets of the same start
 * merge (s_bucket_value) into one bucket, as one aggd's over every series
 * of the bucket. */
static int
s_from_buckets(const json_t *q, const struct api_lanes_reply *v, size_t n,
               json_int_t matched, json_t **out)
{
    size_t total = 0, parts = 0, k = 0, f = n;
    struct s_bucket *bk;
    struct s_part *pt;
    json_t *buckets = json_array();
    const char *agg = json_string_value(json_object_get(q, "aggregation"));
    double pct = 0;
    int fn = agg_stats_fn(agg ? agg : "mean", &pct);
    bool ok = fn >= 0;

    for (size_t i = 0; i < n; i++) {
        size_t j;
        json_t *e;
        if (v[i].status != 200)
            continue;
        total += json_array_size(json_object_get(v[i].body, "buckets"));
        json_array_foreach(json_object_get(v[i].body, "buckets"), j, e)
            parts += json_array_size(json_object_get(e, "parts"));
        f = f < n ? f : i;
    }
    bk = xmalloc((total ? total : 1) * sizeof *bk);
    pt = xmalloc((parts ? parts : 1) * sizeof *pt);
    for (size_t i = 0; i < n && ok; i++) {
        size_t j;
        json_t *e;
        if (v[i].status != 200)
            continue;
        json_array_foreach(json_object_get(v[i].body, "buckets"), j, e) {
            bk[k].b = e;
            if (clock_parse_time(s_str(e, "timestamp"), &bk[k++].ts)) {
                ok = false;
                break;
            }
        }
    }
    qsort(bk, ok ? k : 0, sizeof *bk, s_bucket_cmp);
    for (size_t i = 0; i < k && ok;) {
        json_int_t count;
        double value;
        size_t j = i;
        while (j < k && bk[j].ts == bk[i].ts)
            j++;
        ok = s_bucket_value(bk + i, j - i, fn, pct, pt, &value, &count);
        json_array_append_new(
            buckets, json_pack("{s:O, s:o, s:I}", "timestamp",
                               json_object_get(bk[i].b, "timestamp"), "value",
                               agg_query_num(value), "count", count));
        i = j;
    }
    free(bk);
    free(pt);
    if (!ok || f == n) {
        json_decref(buckets);
        *out = f == n ? rpc_error("not_found", "no lane answered", "series")
                      : s_bad_lane();
        return f == n ? 404 : 502;
    }
    *out = json_deep_copy(v[f].body);
    json_object_set_new(*out, "matched", json_integer(matched));
    json_object_set_new(*out, "count", json_integer((json_int_t)json_array_size(buckets)));
    json_object_set_new(*out, "buckets", buckets);
    return 200;
}

/* --- entry points --------------------------------------------------------- */

bool
api_lanes_single(const char *op)
{
    return op && strcmp(op, "rules") == 0;
}

int
api_lanes_merge(const json_t *query, const struct api_lanes_reply *r,
                size_t n, int *status, json_t **out)
{
    const char *op = s_str(query, "op");
    long owner;
    json_int_t matched;

    if (s_errors(r, n, status, out))
        return API_LANES_DONE;
    *status = 200;
    if (!strcmp(op, "stats") || !strcmp(op, "aggregate")) {
        matched = s_matched(r, n, &owner);
        if (owner >= 0 && matched == 1) {
            *out = json_incref(r[owner].body);
            return API_LANES_DONE;
        }
        if (s_parts_round(query, r, n)) {
            *out = s_rollups_query(query);
            return API_LANES_VALUES;
        }
        if (s_parts_needed(query, r, n)) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "past retention of raw points, series times buckets "
                     "merge exactly across lanes only up to %d; narrow "
                     "the selection or widen the interval",
                     API_LANES_PARTS_MAX);
            *status = 413;
            *out = rpc_error("too_large", msg, "interval");
            return API_LANES_DONE;
        }
        if (!strcmp(op, "stats")) {
            json_int_t count = 0;
            for (size_t i = 0; i < n; i++)
                if (r[i].status == 200)
                    count += s_int(r[i].body, "count");
            if (count > API_LANES_VALUES_MAX) {
                *out = s_stats_moments(r, n, matched);
                return API_LANES_DONE;
            }
        }
        *out = s_values_query(query, n);
        return API_LANES_VALUES;
    }
    if (!strcmp(op, "delete")) {
        json_int_t deleted = 0;
        bool partial = false, removed = true;
        for (size_t i = 0; i < n; i++)
            if (r[i].status == 200) {
                deleted += s_int(r[i].body, "deleted");
                partial |= json_is_true(json_object_get(r[i].body,
                                                        "rollups_partial"));
                /* Every matched series, on every lane, is gone. */
                removed &= json_is_true(json_object_get(r[i].body,
                                                        "series_removed"));
            }
        *out = json_pack("{s:I, s:I, s:b, s:b}", "matched",
                         s_matched(r, n, &owner), "deleted", deleted,
                         "series_removed", removed, "rollups_partial",
                         partial);
        return API_LANES_DONE;
    }
    if (!strcmp(op, "series"))
        *out = s_merge_series(r, n);
    else if (!strcmp(op, "points"))
        *out = s_merge_points(query, r, n);
    else if (!strcmp(op, "anomalies"))
        *out = s_merge_anomalies(query, r, n);
    else if (!strcmp(op, "alerts"))
        *out = json_pack("{s:o}", "alerts",
                         s_concat(r, n, "alerts", "series", "rule", 0));
    else
        *out = json_incref(r[s_first_ok(r, n)].body);
    return API_LANES_DONE;
}

void
api_lanes_finish(const json_t *query, const struct api_lanes_reply *r,
                 const struct api_lanes_reply *v, size_t n, int *status,
                 json_t **out)
{
    long owner;
    json_int_t matched = s_matched(r, n, &owner);

    for (size_t i = 0; i < n; i++) {
        if (v[i].body && (v[i].status == 200 || v[i].status == 404))
            continue;
        if (v[i].body && v[i].status == 413 &&
            !strcmp(s_str(query, "op"), "stats")) {
            *status = 200;
            *out = s_stats_moments(r, n, matched);
            return;
        }
        *status = v[i].body ? v[i].status : 503;
        *out = v[i].status == 413
                   ? rpc_error("too_large",
                               "too many points to merge exactly across "
                               "lanes; narrow the range or the selection",
                               "lanes")
                   : rpc_error("unavailable", "a lane did not answer", "lane");
        return;
    }
    if (!s_parts_round(query, r, n))
        *status = s_from_values(query, v, n, matched, out);
    else if (!strcmp(s_str(query, "op"), "stats"))
        *status = s_from_parts(query, v, n, matched, out);
    else
        *status = s_from_buckets(query, v, n, matched, out);
}

/* Answer q on the union of the per-lane stores as one store would, and
 * by merging the lanes' own answers: the two must be equal. */
static void
s_test_same(agg_store_t **lanes, size_t n, agg_store_t *one, json_t *q)
{
    struct api_lanes_reply r[8], v[8];
    json_t *want, *got, *vq = NULL;
    int ws, gs;

    ws = agg_query_answer(one, q, &want);
    for (size_t i = 0; i < n; i++)
        r[i].status = agg_query_answer(lanes[i], q, &r[i].body);
    if (api_lanes_merge(q, r, n, &gs, &vq) == API_LANES_VALUES) {
        for (size_t i = 0; i < n; i++)
            v[i].status = agg_query_answer(lanes[i], vq, &v[i].body);
        api_lanes_finish(q, r, v, n, &gs, &got);
        for (size_t i = 0; i < n; i++)
            json_decref(v[i].body);
        json_decref(vq);
    } else {
        got = vq;
    }
    assert(ws == gs);
    if (!json_equal(want, got)) {
        char *a = json_dumps(want, JSON_SORT_KEYS), *b = json_dumps(got, JSON_SORT_KEYS);
        fprintf(stderr, "api_lanes: one store: %s\nmerged:    %s\n", a, b);
        free(a);
        free(b);
        assert(!"merged answer differs");
    }
    for (size_t i = 0; i < n; i++)
        json_decref(r[i].body);
    json_decref(want);
    json_decref(got);
}

/* The two rounds apid runs for a query over several series: every lane
 * answers, the merge asks for values, the lanes answer that, the finish
 * merges. Returns the final body; *status its HTTP status. */
static json_t *
s_test_scatter(agg_store_t **st, int n, json_t *q, int *status)
{
    struct api_lanes_reply r[4] = {{0}}, v[4] = {{0}};
    json_t *vq, *out;

    assert(n <= 4);
    for (int i = 0; i < n; i++)
        r[i].status = agg_query_answer(st[i], q, &r[i].body);
    assert(api_lanes_merge(q, r, (size_t)n, status, &vq) == API_LANES_VALUES);
    for (int i = 0; i < n; i++)
        v[i].status = agg_query_answer(st[i], vq, &v[i].body);
    json_decref(vq);
    api_lanes_finish(q, r, v, (size_t)n, status, &out);
    for (int i = 0; i < n; i++) {
        json_decref(r[i].body);
        json_decref(v[i].body);
    }
    return out;
}

/*
 * Raw points expired by retention, rollups left: every aggregation over
 * several series merges the lanes' per-series parts (percentiles their
 * sketches) in key order, so 1 lane and 4 give the same bits, and the
 * figures are those of every point, not of the raw ones left (none).
 */
static void
s_test_expired(void)
{
    static const char *fns[] = {"mean", "sum", "count", "min", "max", "std",
                                "first", "last", "p90"};
    static const char *ivals[] = {"15min", "1h", "2d"};
    agg_store_t *lanes[4], *ref = agg_store_new(), *solo[1] = {ref};
    const int64_t never[AGG_ROLLUP_TIERS] = {INT64_MIN, INT64_MIN, INT64_MIN};
    double sum = 0, lo = INFINITY, hi = -INFINITY;
    char key[64];

    for (int i = 0; i < 4; i++)
        lanes[i] = agg_store_new();
    for (int d = 0; d < 9; d++)
        for (int t = 0; t < 400; t++) {
            double x = round(sin(t * 0.05 + d) * 300 + d * 7) / 8;
            snprintf(key, sizeof key, "gone{device=d%d}", d);
            agg_store_put(lanes[series_lane(key, strlen(key), 4)], key,
                          (int64_t)t * 60 * CLOCK_NS_PER_S, x);
            agg_store_put(ref, key, (int64_t)t * 60 * CLOCK_NS_PER_S, x);
            sum += x;
            lo = x < lo ? x : lo;
            hi = x > hi ? x : hi;
        }
    for (int i = 0; i < 5; i++) {
        agg_store_t *st = i < 4 ? lanes[i] : ref;
        agg_store_seal_all(st);
        agg_store_expire(st, INT64_MAX, never);
        assert(agg_store_points(st) == 0);
    }
    for (size_t f = 0; f < sizeof fns / sizeof *fns; f++)
        for (size_t v = 0; v < sizeof ivals / sizeof *ivals; v++) {
            json_t *q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                                  "series", "gone", "interval", ivals[v],
                                  "aggregation", fns[f]), *a, *b, *e;
            double total = 0, best = fns[f][1] == 'i' ? INFINITY : -INFINITY;
            json_int_t count = 0;
            size_t j;
            int s1, s4;
            a = s_test_scatter(solo, 1, q, &s1);
            b = s_test_scatter(lanes, 4, q, &s4);
            assert(s1 == 200 && s4 == 200);
            if (!json_equal(a, b)) {
                char *x = json_dumps(a, JSON_SORT_KEYS), *y = json_dumps(b, JSON_SORT_KEYS);
                fprintf(stderr, "api_lanes: N=1: %s\nN=4: %s\n", x, y);
                assert(!"N=1 and N=4 differ after retention");
            }
            TEST_STREQ(s_str(b, "source"), "rollups");
            json_array_foreach(json_object_get(b, "buckets"), j, e) {
                double x = json_number_value(json_object_get(e, "value"));
                count += s_int(e, "count");
                total += x;
                best = fns[f][1] == 'i' ? fmin(best, x) : fmax(best, x);
            }
            /* Every reading counts, though no raw point is left. */
            assert(count == 9 * 400);
            if (!strcmp(fns[f], "count"))
                assert(total == 9 * 400);
            if (!strcmp(fns[f], "sum"))
                TEST_NEAR(total, sum, 1e-9 * fabs(sum));
            if (!strcmp(fns[f], "min"))
                assert(best == lo);
            if (!strcmp(fns[f], "max"))
                assert(best == hi);
            json_decref(a);
            json_decref(b);
            json_decref(q);
        }
    /* Past API_LANES_PARTS_MAX series times buckets, the values round. */
    {
        json_t *q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                              "series", "gone", "interval", "1min",
                              "aggregation", "sum"), *b = json_array();
        struct api_lanes_reply r2[2];
        for (int i = 0; i < 1001; i++)
            json_array_append_new(b, json_object());
        r2[0].status = r2[1].status = 200;
        r2[0].body = json_pack("{s:I, s:O}", "matched", (json_int_t)100, "buckets", b);
        r2[1].body = json_pack("{s:I, s:o}", "matched", (json_int_t)100, "buckets", b);
        assert(!s_parts_fit(q, r2, 2)); /* 200 x 1001 */
        {
            /* ... which counts only the raw left once a lane answers
             * from rollups: refused rather than answered wrong. */
            json_t *out = NULL;
            int st = 0;
            assert(!s_parts_needed(q, r2, 2)); /* lanes hold the raw */
            json_object_set_new(r2[1].body, "source", json_string("rollups"));
            assert(s_parts_needed(q, r2, 2));
            assert(api_lanes_merge(q, r2, 2, &st, &out) == API_LANES_DONE);
            TEST_STREQ(s_str(json_object_get(out, "error"), "code"), "too_large");
            assert(st == 413);
            json_decref(out);
            json_object_del(r2[1].body, "source");
        }
        json_array_remove(b, 0);
        assert(s_parts_fit(q, r2, 2));  /* 200 x 1000 */
        json_object_set_new(q, "aggregation", json_string("p99"));
        json_array_append_new(b, json_object());
        assert(s_parts_fit(q, r2, 2));  /* sketches: one per bucket */
        json_decref(r2[0].body);
        json_decref(r2[1].body);
        json_decref(q);
    }
    /* A lane whose bucket parts do not add up is refused. */
    {
        json_t *q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                              "series", "gone", "interval", "1h",
                              "aggregation", "mean"), *vq, *b;
        struct api_lanes_reply r4[4], v4[4];
        int s;
        for (int i = 0; i < 4; i++)
            r4[i].status = agg_query_answer(lanes[i], q, &r4[i].body);
        assert(api_lanes_merge(q, r4, 4, &s, &vq) == API_LANES_VALUES);
        assert(json_is_true(json_object_get(vq, "parts")));
        for (int i = 0; i < 4; i++)
            v4[i].status = agg_query_answer(lanes[i], vq, &v4[i].body);
        for (int i = 0; i < 4; i++)
            if (v4[i].status == 200) {
                json_t *b0 = json_array_get(json_object_get(v4[i].body, "buckets"), 0);
                json_array_remove(json_object_get(b0, "parts"), 0);
                break;
            }
        api_lanes_finish(q, r4, v4, 4, &s, &b);
        assert(s == 502);
        TEST_STREQ(s_str(json_object_get(b, "error"), "code"), "bad_lane_answer");
        json_decref(b);
        json_decref(vq);
        json_decref(q);
        for (int i = 0; i < 4; i++) {
            json_decref(r4[i].body);
            json_decref(v4[i].body);
        }
    }
    for (int i = 0; i < 4; i++)
        agg_store_destroy(&lanes[i]);
    agg_store_destroy(&ref);
}

void
api_lanes_test(bool verbose)
{
    agg_store_t *lanes[4], *ref = agg_store_new();
    char key[64];
    json_t *q;

    for (int i = 0; i < 4; i++)
        lanes[i] = agg_store_new();
    /* One series is answered by its lane as is; several are merged from
     * their points, and a scratch store loaded in key order answers. */
    for (int d = 0; d < 12; d++)
        for (int t = 0; t < 50; t++) {
            double x = 20 + d * 0.1 + sin(t * 0.7 + d) * 3.3;
            snprintf(key, sizeof key, "temp{device=d%02d}", d);
            agg_store_put(lanes[series_lane(key, strlen(key), 4)], key,
                          (int64_t)t * 60 * CLOCK_NS_PER_S, x);
            agg_store_put(ref, key, (int64_t)t * 60 * CLOCK_NS_PER_S, x);
        }
    /* The reference for several series is the scratch store of one lane's
     * values, i.e. what apid answers with --lanes 1. */
    agg_store_t *solo[1] = {ref};
    q = json_pack("{s:s, s:s}", "op", "stats", "series", "temp{device=d03}");
    s_test_same(lanes, 4, ref, q);
    json_decref(q);
    q = json_pack("{s:s, s:s, s:[f]}", "op", "stats", "series", "temp",
                  "percentiles", 99.9);
    {
        int s1, s4;
        json_t *a = s_test_scatter(solo, 1, q, &s1);
        json_t *b = s_test_scatter(lanes, 4, q, &s4);
        struct api_lanes_reply r4[4];
        assert(s1 == 200 && s4 == 200 && json_equal(a, b));
        assert(json_integer_value(json_object_get(b, "count")) == 600);
        assert(json_integer_value(json_object_get(b, "matched")) == 12);
        /* Chan's merge of the moments agrees to rounding. */
        for (int i = 0; i < 4; i++)
            r4[i].status = agg_query_answer(lanes[i], q, &r4[i].body);
        json_t *m = s_stats_moments(r4, 4, 12);
        TEST_NEAR(json_real_value(json_object_get(m, "mean")),
                  json_real_value(json_object_get(b, "mean")), 1e-12);
        TEST_NEAR(json_real_value(json_object_get(m, "std")),
                  json_real_value(json_object_get(b, "std")), 1e-12);
        assert(json_is_null(json_object_get(m, "p99.9")));
        json_decref(m);
        for (int i = 0; i < 4; i++)
            json_decref(r4[i].body);
        json_decref(a);
        json_decref(b);
    }
    json_decref(q);
    /* Aggregation buckets over every device: 4 lanes merge to what 1 gives. */
    q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series", "temp",
                  "interval", "5min", "aggregation", "p90");
    {
        int s1, s4;
        json_t *a = s_test_scatter(solo, 1, q, &s1);
        json_t *b = s_test_scatter(lanes, 4, q, &s4);
        assert(s1 == 200 && s4 == 200 && json_equal(a, b));
        assert(json_array_size(json_object_get(b, "buckets")) == 10);
        json_decref(a);
        json_decref(b);
    }
    json_decref(q);
    /* Past AGG_QUERY_RAW_MAX points in all (each lane under it) and when
     * asked for, one aggd answers from rollups; the lanes' parts and
     * sketches merge to that answer to the last bit, percentiles too. */
    for (int d = 0; d < 12; d++)
        for (int t = 0; t < 9000; t++) {
            double x = round(sin(t * 0.013 + d) * 40 + d - 6) * 0.5;
            snprintf(key, sizeof key, "load{device=d%02d}", d);
            agg_store_put(lanes[series_lane(key, strlen(key), 4)], key,
                          (int64_t)t * 10 * CLOCK_NS_PER_S, x);
            agg_store_put(ref, key, (int64_t)t * 10 * CLOCK_NS_PER_S, x);
        }
    {
        json_t *qs[] = {
            json_pack("{s:s, s:s, s:[f, f]}", "op", "stats", "series", "load",
                      "percentiles", 99.9, 0.0),
            json_pack("{s:s, s:s, s:I, s:I}", "op", "stats", "series", "load",
                      "start", (json_int_t)3600 * CLOCK_NS_PER_S + 7,
                      "end", (json_int_t)89990 * CLOCK_NS_PER_S),
            json_pack("{s:s, s:s, s:b}", "op", "stats", "series", "temp",
                      "rollups", 1),
            json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series",
                      "load", "interval", "15min", "aggregation", "p90"),
            json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "op", "aggregate",
                      "series", "load", "interval", "1h", "aggregation", "p0.5",
                      "window", "3h", "rollups", 1)};
        for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
            json_t *a;
            assert(agg_query_answer(ref, qs[i], &a) == 200);
            TEST_STREQ(s_str(a, "source"), "rollups");
            assert(json_is_true(json_object_get(a, "estimated")));
            assert(json_is_number(json_object_get(a, "p99")) ||
                   json_array_size(json_object_get(a, "buckets")) > 10);
            json_decref(a);
            /* ... by the rollup round, not by loading values. */
            struct api_lanes_reply r4[4];
            json_t *vq;
            int s;
            for (int l = 0; l < 4; l++)
                r4[l].status = agg_query_answer(lanes[l], qs[i], &r4[l].body);
            assert(api_lanes_merge(qs[i], r4, 4, &s, &vq) == API_LANES_VALUES);
            assert(json_is_true(json_object_get(vq, "parts")));
            json_decref(vq);
            for (int l = 0; l < 4; l++)
                json_decref(r4[l].body);
            s_test_same(lanes, 4, ref, qs[i]);
            json_decref(qs[i]);
        }
    }
    /* A lane whose parts do not add up is refused, not merged. */
    q = json_pack("{s:s, s:s}", "op", "stats", "series", "load");
    {
        struct api_lanes_reply r4[4], v4[4];
        json_t *vq, *b;
        int s;
        for (int i = 0; i < 4; i++)
            r4[i].status = agg_query_answer(lanes[i], q, &r4[i].body);
        assert(api_lanes_merge(q, r4, 4, &s, &vq) == API_LANES_VALUES);
        for (int i = 0; i < 4; i++)
            v4[i].status = agg_query_answer(lanes[i], vq, &v4[i].body);
        json_array_remove(json_object_get(v4[1].body, "parts"), 0);
        api_lanes_finish(q, r4, v4, 4, &s, &b);
        assert(s == 502);
        TEST_STREQ(s_str(json_object_get(b, "error"), "code"), "bad_lane_answer");
        json_decref(b);
        json_decref(vq);
        for (int i = 0; i < 4; i++) {
            json_decref(r4[i].body);
            json_decref(v4[i].body);
        }
    }
    json_decref(q);
    /* Listings concatenate in key order; unknown series stay 404. */
    q = json_pack("{s:s, s:s}", "op", "series", "series", "temp");
    {
        struct api_lanes_reply r4[4];
        json_t *b;
        int s;
        for (int i = 0; i < 4; i++)
            r4[i].status = agg_query_answer(lanes[i], q, &r4[i].body);
        assert(api_lanes_merge(q, r4, 4, &s, &b) == API_LANES_DONE);
        assert(s == 200 && json_integer_value(json_object_get(b, "matched")) == 12);
        TEST_STREQ(s_str(json_array_get(json_object_get(b, "series"), 0), "series"),
                   "temp{device=d00}");
        TEST_STREQ(s_str(json_array_get(json_object_get(b, "series"), 11), "series"),
                   "temp{device=d11}");
        json_decref(b);
        for (int i = 0; i < 4; i++)
            json_decref(r4[i].body);
    }
    json_decref(q);
    q = json_pack("{s:s, s:s}", "op", "stats", "series", "nope");
    {
        struct api_lanes_reply r4[4];
        json_t *b;
        int s;
        for (int i = 0; i < 4; i++)
            r4[i].status = agg_query_answer(lanes[i], q, &r4[i].body);
        assert(api_lanes_merge(q, r4, 4, &s, &b) == API_LANES_DONE && s == 404);
        json_decref(b);
        for (int i = 0; i < 4; i++)
            json_decref(r4[i].body);
        r4[2].body = NULL;
        r4[0].status = r4[1].status = r4[3].status = 404;
        r4[0].body = r4[1].body = r4[3].body = json_object();
        assert(api_lanes_merge(q, r4, 4, &s, &b) == API_LANES_DONE && s == 503);
        json_decref(b);
        json_decref(r4[0].body);
    }
    json_decref(q);
    assert(api_lanes_single("rules") && !api_lanes_single("alerts"));
    for (int i = 0; i < 4; i++)
        agg_store_destroy(&lanes[i]);
    agg_store_destroy(&ref);
    s_test_expired();
    (void)verbose;
    TEST_OK("api_lanes");
}
