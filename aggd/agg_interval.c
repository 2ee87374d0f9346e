/*
 * agg_interval: interval aggregation (see agg_interval.h).
 *
 * Two ways through. Fixed steps over raw points (the common, small case)
 * sort the points once and cut them into buckets. Everything else (long
 * ranges from rollups, time-zone days, rolling windows) first lists the
 * interval boundaries, then summarises each interval on its own: from
 * rollups and raw edges (agg_store_summarize), or from the raw points of
 * that interval when exact figures are due.
 */
#include "aggd/agg_interval.h"
#include "aggd/agg_query.h"
#include "aggd/agg_stats.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_MINUTE (60 * CLOCK_NS_PER_S)
#define S_DAY (86400 * CLOCK_NS_PER_S)
#define S_TZ_MAX 64 /* bytes of a time zone name */

struct s_pt {
    int64_t ts;
    double v;
};

static int
s_pt_cmp(const void *a, const void *b)
{
    int64_t x = ((const struct s_pt *)a)->ts, y = ((const struct s_pt *)b)->ts;
    return (x > y) - (x < y);
}

static int64_t
s_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static double
s_bucket_value(int fn, double pct, double *v, size_t n,
               const struct agg_moments *m, double first, double last)
{
    switch (fn) {
    case AGG_FN_MEAN: return m->mean;
    case AGG_FN_MIN: return m->min;
    case AGG_FN_MAX: return m->max;
    case AGG_FN_SUM: return m->sum;
    case AGG_FN_COUNT: return (double)m->count;
    case AGG_FN_STD: return agg_stats_std(m);
    case AGG_FN_FIRST: return first;
    case AGG_FN_LAST: return last;
    default:
        agg_stats_sort(v, n);
        return agg_stats_percentile(v, n, pct);
    }
}

/* The value of one aggregation over a summary (and its sketch). */
static double
s_rsum_value(int fn, double pct, const struct agg_rsum *r,
             const agg_sketch_t *sk)
{
    if (fn == AGG_FN_PCT)
        return agg_sketch_quantile(sk, pct / 100);
    return s_bucket_value(fn, pct, NULL, 0, &r->m, r->first, r->last);
}

/* What a bounded aggregation needs. */
struct s_spec {
    const struct agg_query_sel *sel; /* selection and range */
    const char **keys;               /* selected series, in key order */
    size_t nk;                       /* how many */
    int64_t step;                    /* interval, ns */
    int64_t window;                  /* rolling window, ns, or 0 */
    const char *tz;                  /* time zone of day intervals, or NULL */
    int fn;                          /* enum agg_fn */
    double pct;                      /* percentile when fn is AGG_FN_PCT */
    bool raw;                        /* from raw points, not rollups */
};

static bool
s_tz_valid(const char *tz)
{
    char path[S_TZ_MAX + 32];

    if (tz == NULL || *tz == '\0' || strlen(tz) >= S_TZ_MAX || *tz == '/' ||
        strstr(tz, ".."))
        return false;
    for (const char *c = tz; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
              (*c >= '0' && *c <= '9') || strchr("/_+-", *c)))
            return false;
    snprintf(path, sizeof path, "/usr/share/zoneinfo/%s", tz);
    return access(path, R_OK) == 0;
}

/* Check "window" and "tz". Returns 0, or 400 with *body set. */
static int
s_window_tz(const json_t *req, int64_t step, int64_t *window, const char **tz,
            json_t **body)
{
    const json_t *w = json_object_get(req, "window"), *z = json_object_get(req, "tz");

    if (w && (!json_is_string(w) ||
              clock_parse_duration(json_string_value(w), window) ||
              *window < step)) {
        *body = agg_query_bad("window must be a duration at least as long "
                              "as the interval", "window");
        return 400;
    }
    if (*window == step)
        *window = 0; /* a window of one interval is the plain case */
    *tz = NULL;
    if (z) {
        if (!json_is_string(z) || !s_tz_valid(json_string_value(z))) {
            *body = agg_query_bad("tz must be an IANA time zone name like "
                                  "Europe/Berlin", "tz");
            return 400;
        }
        if (step % S_DAY != 0) {
            *body = agg_query_bad("tz applies to intervals of whole days "
                                  "(1d, 7d)", "tz");
            return 400;
        }
        *tz = json_string_value(z);
    }
    return 0;
}

/* Local midnights of tz every ndays, from the one at or before lo to the
 * first at or after hi. tzset() reads TZ, so the process' zone is
 * switched for the computation and put back (aggd and apid run one
 * thread each). Returns the count and sets *out (caller frees). */
static size_t
s_tz_bounds(const char *tz, int64_t lo, int64_t hi, int64_t ndays,
            int64_t **out)
{
    const char *env = getenv("TZ");
    char *old = env ? xstrdup(env) : NULL;
    size_t n = 0, cap = 64;
    int64_t *b = xmalloc(cap * sizeof *b);
    time_t t = (time_t)s_floor_div(lo, CLOCK_NS_PER_S);
    struct tm tm;

    setenv("TZ", tz, 1);
    tzset();
    localtime_r(&t, &tm);
    for (;;) {
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_isdst = -1;
        time_t m = mktime(&tm);
        if (n == cap) {
            cap *= 2;
            b = xrealloc(b, cap * sizeof *b);
        }
        b[n++] = (int64_t)m * CLOCK_NS_PER_S;
        if (b[n - 1] >= hi || n > AGG_QUERY_BUCKETS_MAX)
            break;
        tm.tm_mday += (int)ndays;
    }
    if (old) {
        setenv("TZ", old, 1);
        free(old);
    } else {
        unsetenv("TZ");
    }
    tzset();
    *out = b;
    return n;
}

/* One interval [a, z) from the raw points of the selection. */
static double
s_raw_value(agg_store_t *store, const struct s_spec *sp, int64_t a, int64_t z,
            struct agg_rsum *m)
{
    struct agg_view *v;
    size_t nv = agg_store_select(store, sp->sel->series, sp->sel->tags,
                                 sp->sel->ntags, a, z, &v), n = 0;
    double *vals, r;

    for (size_t i = 0; i < nv; i++)
        n += v[i].n;
    vals = xmalloc((n ? n : 1) * sizeof *vals);
    n = 0;
    for (size_t i = 0; i < nv; i++)
        for (size_t j = 0; j < v[i].n; j++) {
            agg_stats_add(&m->m, v[i].v[j]);
            if (m->m.count == 1 || v[i].ts[j] < m->first_ts) {
                m->first = v[i].v[j];
                m->first_ts = v[i].ts[j];
            }
            if (m->m.count == 1 || v[i].ts[j] >= m->last_ts) {
                m->last = v[i].v[j];
                m->last_ts = v[i].ts[j];
            }
            vals[n++] = v[i].v[j];
        }
    r = m->m.count ? s_bucket_value(sp->fn, sp->pct, vals, n, &m->m, m->first,
                                    m->last)
                   : NAN;
    free(vals);
    free(v);
    return r;
}

/* Aggregation over listed interval boundaries (see the file comment). */
static int
s_bounded(agg_store_t *store, const struct s_spec *sp, json_t **body)
{
    const struct agg_query_sel *sel = sp->sel;
    int64_t lo = INT64_MAX, hi = INT64_MIN, f, e, *bd = NULL;
    size_t nb = 0;
    json_t *buckets = json_array();
    char tbuf[40];

    for (size_t i = 0; i < sp->nk; i++)
        if (agg_store_span(store, sp->keys[i], &f, &e)) {
            lo = f < lo ? f : lo;
            hi = e > hi ? e : hi;
        }
    lo = lo > sel->start ? lo : sel->start;
    hi = hi < sel->end ? hi : sel->end;
    if (lo < hi && (hi - lo) / sp->step > AGG_QUERY_BUCKETS_MAX) {
        json_decref(buckets);
        *body = agg_query_bad("interval too small for this range (over "
                              "1,000,000 buckets)", "interval");
        return 400;
    }
    if (lo < hi && sp->tz) {
        nb = s_tz_bounds(sp->tz, lo, hi, sp->step / S_DAY, &bd);
    } else if (lo < hi) {
        bd = xmalloc(((size_t)((hi - lo) / sp->step) + 3) * sizeof *bd);
        for (int64_t b = s_floor_div(lo, sp->step) * sp->step;; b += sp->step) {
            bd[nb++] = b;
            if (b >= hi)
                break;
        }
    }
    for (size_t i = 0; i + 1 < nb; i++) {
        int64_t a = sp->window ? bd[i + 1] - sp->window : bd[i], z = bd[i + 1];
        struct agg_rsum m = {0};
        double value;
        a = a > sel->start ? a : sel->start;
        z = z < sel->end ? z : sel->end;
        if (a >= z)
            continue;
        if (sp->raw) {
            value = s_raw_value(store, sp, a, z, &m);
        } else {
            agg_sketch_t *sk = sp->fn == AGG_FN_PCT ? agg_sketch_new() : NULL;
            for (size_t k = 0; k < sp->nk; k++)
                agg_store_summarize(store, sp->keys[k], a, z, &m, sk);
            value = s_rsum_value(sp->fn, sp->pct, &m, sk);
            agg_sketch_destroy(&sk);
        }
        if (m.m.count > 0)
            json_array_append_new(
                buckets, json_pack("{s:s, s:o, s:I}", "timestamp",
                                   clock_format(bd[i], tbuf, sizeof tbuf),
                                   "value", agg_query_num(value), "count",
                                   (json_int_t)m.m.count));
    }
    free(bd);
    *body = json_pack("{s:s, s:I, s:I, s:o, s:b, s:s}", "metric_name",
                      sel->series, "matched", (json_int_t)sp->nk, "count",
                      (json_int_t)json_array_size(buckets), "buckets",
                      buckets, "estimated", !sp->raw && sp->fn == AGG_FN_PCT,
                      "source", sp->raw ? "raw" : "rollups");
    if (!sp->raw && sp->fn == AGG_FN_PCT)
        json_object_set_new(*body, "relative_error", json_real(AGG_SKETCH_ALPHA));
    if (sp->tz)
        json_object_set_new(*body, "tz", json_string(sp->tz));
    if (sp->window)
        json_object_set_new(*body, "window_ns", json_integer(sp->window));
    return 200;
}

int
agg_interval_answer(agg_store_t *store, const json_t *req, json_t **body)
{
    struct agg_query_sel sel;
    struct agg_view *views;
    const char *ival = json_string_value(json_object_get(req, "interval"));
    const char *agg = json_string_value(json_object_get(req, "aggregation"));
    int64_t step;
    double pct = 0;
    int fn, rc;
    size_t nv, n = 0, k = 0, nb = 0;
    struct s_pt *pts;
    double *buf;
    json_t *buckets;
    char tbuf[40];

    if (agg_query_sel(req, &sel, body))
        return 400;
    if (ival == NULL || clock_parse_duration(ival, &step)) {
        *body = agg_query_bad("interval must be a duration like 30s, 5min, 1h, 1d",
                      "interval");
        return 400;
    }
    if (agg == NULL)
        agg = "mean";
    if ((fn = agg_stats_fn(agg, &pct)) < 0) {
        *body = agg_query_bad("aggregation must be mean, min, max, sum, count, std, "
                      "first, last or pNN",
                      "aggregation");
        return 400;
    }
    const char **keys;
    bool raw;
    size_t nk = agg_query_plan(store, &sel, &keys, &raw);
    const char *tz = json_string_value(json_object_get(req, "tz"));
    int64_t window = 0;
    if ((rc = s_window_tz(req, step, &window, &tz, body)) != 0) {
        free(keys);
        return rc;
    }
    if (nk > 0 && (tz || window || (!raw && step % S_MINUTE == 0))) {
        struct s_spec sp = {&sel, keys, nk, step, window, tz, fn, pct, raw};
        rc = s_bounded(store, &sp, body);
        if (rc == 200) {
            json_object_set_new(*body, "interval", json_string(ival));
            json_object_set_new(*body, "aggregation", json_string(agg));
        }
        free(keys);
        return rc;
    }
    free(keys);
    if ((nv = agg_query_views(store, &sel, &views, body)) == 0)
        return 404;
    for (size_t i = 0; i < nv; i++)
        n += views[i].n;
    pts = xmalloc((n ? n : 1) * sizeof *pts);
    for (size_t i = 0; i < nv; i++)
        for (size_t j = 0; j < views[i].n; j++) {
            pts[k].ts = views[i].ts[j];
            pts[k++].v = views[i].v[j];
        }
    if (nv > 1)
        qsort(pts, n, sizeof *pts, s_pt_cmp);
    if (n > 0 && (pts[n - 1].ts - pts[0].ts) / step > AGG_QUERY_BUCKETS_MAX) {
        free(pts);
        free(views);
        *body = agg_query_bad("interval too small for this range (over 1,000,000 "
                      "buckets)", "interval");
        return 400;
    }
    buf = xmalloc((n ? n : 1) * sizeof *buf);
    buckets = json_array();
    for (size_t i = 0; i < n;) {
        int64_t b = s_floor_div(pts[i].ts, step);
        struct agg_moments m = {0};
        size_t j = i, c = 0;
        for (; j < n && s_floor_div(pts[j].ts, step) == b; j++) {
            agg_stats_add(&m, pts[j].v);
            buf[c++] = pts[j].v;
        }
        json_array_append_new(
            buckets,
            json_pack("{s:s, s:o, s:I}", "timestamp",
                      clock_format(b * step, tbuf, sizeof tbuf), "value",
                      agg_query_num(s_bucket_value(fn, pct, buf, c, &m, pts[i].v,
                                           pts[j - 1].v)),
                      "count", (json_int_t)m.count));
        nb++;
        i = j;
    }
    *body = json_pack("{s:s, s:s, s:s, s:I, s:I, s:o, s:b, s:s}",
                      "metric_name", sel.series, "interval", ival,
                      "aggregation", agg, "matched", (json_int_t)nv, "count",
                      (json_int_t)nb, "buckets", buckets, "estimated", 0,
                      "source", "raw");
    free(buf);
    free(pts);
    free(views);
    return 200;
}


/* Compare two aggregate answers bucket by bucket. */
static void
s_test_same(const json_t *x, const json_t *y, double eps)
{
    const json_t *a = json_object_get(x, "buckets"), *b = json_object_get(y, "buckets");

    assert(json_array_size(a) == json_array_size(b) && json_array_size(a) > 0);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *p = json_array_get(a, i), *q = json_array_get(b, i);
        TEST_STREQ(json_string_value(json_object_get(p, "timestamp")),
                   json_string_value(json_object_get(q, "timestamp")));
        assert(json_integer_value(json_object_get(p, "count")) ==
               json_integer_value(json_object_get(q, "count")));
        TEST_NEAR(json_real_value(json_object_get(p, "value")),
                  json_real_value(json_object_get(q, "value")),
                  eps * (1 + fabs(json_real_value(json_object_get(q, "value")))));
    }
}

static json_t *
s_test_ask(agg_store_t *st, json_t *req, int want)
{
    json_t *body;
    assert(agg_interval_answer(st, req, &body) == want);
    json_decref(req);
    return body;
}

/*
 * Berlin days over a winter/summer change: each local day's count is the
 * hours it really had (23 on 2024-03-31) times 360; the rollup and the
 * raw paths agree, day boundaries are local midnights. A one-hour moving
 * average of 5-minute buckets equals the mean over the 12 buckets ending
 * there. Bad tz and windows are 400s.
 */
void
agg_interval_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S;
    const int64_t t0 = 1711584000LL * s1; /* 2024-03-28T00:00:00Z */
    json_t *r, *x, *b;
    const char *tz0 = getenv("TZ");

    for (int i = 0; i < 14 * 8640; i++)
        agg_store_put(st, "dst", t0 + i * 10 * s1, (i * 37 % 1000) / 10.0);
    r = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:s}", "op", "aggregate",
                                 "series", "dst", "interval", "1d",
                                 "aggregation", "count", "tz", "Europe/Berlin"),
                   200);
    x = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "op",
                                 "aggregate", "series", "dst", "interval", "1d",
                                 "aggregation", "count", "tz", "Europe/Berlin",
                                 "exact", 1), 200);
    TEST_STREQ(json_string_value(json_object_get(x, "source")), "raw");
    TEST_STREQ(json_string_value(json_object_get(r, "source")), "rollups");
    s_test_same(r, x, 0);
    b = json_object_get(r, "buckets");
    /* 2024-03-28 local midnight is 23:00 UTC the day before. */
    TEST_STREQ(json_string_value(json_object_get(json_array_get(b, 0), "timestamp")),
               "2024-03-27T23:00:00.000Z");
    for (size_t i = 0; i < json_array_size(b); i++) {
        const char *ts = json_string_value(json_object_get(json_array_get(b, i), "timestamp"));
        json_int_t n = json_integer_value(json_object_get(json_array_get(b, i), "count"));
        if (strcmp(ts, "2024-03-30T23:00:00.000Z") == 0)
            assert(n == 23 * 360); /* 2024-03-31: clocks go forward */
        else if (i > 0 && i + 1 < json_array_size(b))
            assert(n == 24 * 360);
    }
    json_decref(r);
    json_decref(x);
    /* Rolling one-hour mean of 5-minute buckets, rollups and raw. */
    r = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:s}", "op",
                                 "aggregate", "series", "dst", "interval",
                                 "5min", "window", "1h", "aggregation", "mean"),
                   200);
    x = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:s, s:b}", "op",
                                 "aggregate", "series", "dst", "interval",
                                 "5min", "window", "1h", "aggregation", "mean",
                                 "exact", 1), 200);
    TEST_STREQ(json_string_value(json_object_get(r, "source")), "rollups");
    s_test_same(r, x, 1e-9);
    b = json_object_get(r, "buckets");
    assert(json_array_size(b) == 14 * 288);
    /* Bucket 20 (01:40) covers [00:45, 01:45): 360 points. */
    json_t *b20 = json_array_get(b, 20);
    assert(json_integer_value(json_object_get(b20, "count")) == 360);
    double sum = 0;
    for (int i = 45 * 6; i < 105 * 6; i++)
        sum += (i * 37 % 1000) / 10.0;
    TEST_NEAR(json_real_value(json_object_get(b20, "value")), sum / 360, 1e-9);
    json_decref(r);
    json_decref(x);
    json_decref(s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                                         "series", "dst", "interval", "1d", "tz",
                                         "Mars/Olympus"), 400));
    json_decref(s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                                         "series", "dst", "interval", "1d", "tz",
                                         "../../etc/passwd"), 400));
    json_decref(s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                                         "series", "dst", "interval", "1h", "tz",
                                         "Europe/Berlin"), 400));
    json_decref(s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate",
                                         "series", "dst", "interval", "1h", "window",
                                         "5min"), 400));
    assert((getenv("TZ") == NULL) == (tz0 == NULL));
    agg_store_destroy(&st);
    (void)verbose;
    TEST_OK("agg_interval");
}
