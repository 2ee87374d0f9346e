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

#include <czmq.h>
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

/* The body of an exact stats answer: moments m (count 0: nulls), the
 * timestamps of the first and last points and the percentiles got[i] of
 * pcts[i]. */
static json_t *
s_exact_body(const char *series, size_t matched, const struct agg_moments *m,
             int64_t first, int64_t last, const double *pcts, size_t npcts,
             const double *got)
{
    json_t *b = json_pack("{s:s, s:I, s:I}", "series", series, "matched",
                          (json_int_t)matched, "count", (json_int_t)m->count);
    char key[48];

    json_object_set_new(b, "mean", m->count ? agg_query_num(m->mean) : json_null());
    json_object_set_new(b, "std", agg_query_num(agg_stats_std(m)));
    json_object_set_new(b, "min", m->count ? agg_query_num(m->min) : json_null());
    json_object_set_new(b, "max", m->count ? agg_query_num(m->max) : json_null());
    json_object_set_new(b, "sum", agg_query_num(m->sum));
    for (size_t i = 0; i < npcts; i++) {
        s_pct_key(pcts[i], key, sizeof key);
        json_object_set_new(b, key, m->count ? agg_query_num(got[i]) : json_null());
    }
    json_object_set_new(b, "estimated", json_false());
    json_object_set_new(b, "source", json_string("raw"));
    json_object_set_new(b, "first", m->count ? s_time(first) : json_null());
    json_object_set_new(b, "last", m->count ? s_time(last) : json_null());
    /* Mergeable moments for scatter/gather over lanes. */
    json_object_set_new(b, "m2", agg_query_num(m->m2));
    return b;
}

/* Exact statistics without decoding the whole range. Where the rollups
 * hold exactly the raw points (agg_store_rollups_exact), count, min, max,
 * first and last come from them (sum and M2 up to rounding, as the raw
 * path's own sums), and so do the exact counts of the merged DDSketch:
 * they say in which 2 %-wide value bucket each rank of a percentile lies
 * and how many values lie below it. Only the hours whose min and max can
 * hold a value of such a bucket are decoded, their values of those
 * buckets collected, and each rank selected among them. The collected
 * counts must equal the sketch's, else the caller reads every raw point. */

#define S_ORD_HALF 16384 /* order keys are in [-S_ORD_HALF, S_ORD_HALF] */
#define S_ORD_N (2 * S_ORD_HALF + 1)
#define S_IDX_LO (-8192) /* agg_rollup clamps sketch indices to these */
#define S_IDX_HI 8191
#define S_HOURS_MAX 2000000 /* hours scanned at most, else all raw */

static size_t s_fast_decoded; /* points the last fast answer decoded */
static bool s_fast_off;       /* selftest: always the raw path */

/* A value's sketch bucket as agg_rollup counts it (index clamped), as a
 * key in value order: negatives (larger magnitudes first), zeros (and
 * -0), positives. */
static int32_t
s_ord(double v)
{
    int32_t i = 0;

    if (v > 0 || v < 0) {
        i = agg_sketch_index(fabs(v));
        i = i < S_IDX_LO ? S_IDX_LO : i > S_IDX_HI ? S_IDX_HI : i;
        i = i - S_IDX_LO + 1;
    }
    return v < 0 ? -i : i;
}

/* Add a sketch store's JSON form [first index, counts...] to cnt. */
static void
s_ord_counts(const json_t *a, int sign, uint64_t *cnt)
{
    json_int_t first = json_integer_value(json_array_get(a, 0));

    for (size_t j = 1; j < json_array_size(a); j++) {
        json_int_t i = first + (json_int_t)j - 1;
        i = i < S_IDX_LO ? S_IDX_LO : i > S_IDX_HI ? S_IDX_HI : i;
        cnt[S_ORD_HALF + sign * (i - S_IDX_LO + 1)] +=
            (uint64_t)json_integer_value(json_array_get(a, j));
    }
}

struct s_fast {
    uint64_t cnt[S_ORD_N];  /* sketch counts by order key + S_ORD_HALF */
    unsigned char want[S_ORD_N]; /* 1 + slot of a key holding a rank */
    int32_t keys[2 * AGG_QUERY_PCTS_MAX]; /* those keys */
    uint64_t below[2 * AGG_QUERY_PCTS_MAX]; /* values below each key */
    size_t nkeys;
    struct agg_chunk_bands bd; /* band (slot) s: the values of keys[s] */
};

/* Bounds of the values of an order key (s_ord): every value of the key
 * lies in [*lo, *hi] (wide: 1e-9 relative outside the bucket's bounds)
 * and every value in [*ilo, *ihi] (1e-9 inside them) is of the key, as
 * for agg_sketch_index_near: the logarithm's and the division's rounding
 * cannot move those across a bound. */
static void
s_ord_range(int32_t k, double *lo, double *hi, double *ilo, double *ihi)
{
    const double lg = log((1 + AGG_SKETCH_ALPHA) / (1 - AGG_SKETCH_ALPHA));
    int32_t i = (k < 0 ? -k : k) - 1 + S_IDX_LO;
    double e0 = i <= S_IDX_LO ? 0 : exp((i - 1) * lg);
    double e1 = i >= S_IDX_HI ? INFINITY : exp(i * lg);
    double a = e0 * (1 - 1e-9), b = e1 * (1 + 1e-9);
    double ia = i <= S_IDX_LO ? 4.9406564584124654e-324 : e0 * (1 + 1e-9);
    double ib = e1 * (1 - 1e-9);

    if (k == 0)
        a = b = ia = ib = 0;
    *lo = k < 0 ? -b : a;
    *hi = k < 0 ? -a : b;
    *ilo = k < 0 ? -ib : ia;
    *ihi = k < 0 ? -ia : ib;
}

/* A value near a bound of a wanted key's values: its slot by its key. */
static int
s_fast_edge(void *arg, double v)
{
    const struct s_fast *f = arg;

    return (int)f->want[s_ord(v) + S_ORD_HALF] - 1;
}

/* One series' visit (agg_store_visit): a chunk is decoded unless it lies
 * in whole hours none of which can hold a wanted value. */
struct s_visit {
    struct s_fast *f;
    int64_t start, end; /* the range */
    int64_t A, w;       /* first whole hour and the hours' width */
    size_t nh;          /* whole hours: [A, A + nh * w) */
    uint32_t *hits;     /* hits[h]: hours before hour h that can hold one */
    size_t points;      /* points of the range seen (decoded or counted) */
};

static int
s_visit_chunk(void *arg, agg_chunk_dctx_t *dctx, const unsigned char *data,
              size_t len, size_t n, int64_t tmin, int64_t tmax)
{
    struct s_visit *vi = arg;
    bool whole = tmin >= vi->start && tmax < vi->end;

    if (whole && tmin >= vi->A && (uint64_t)(tmax - vi->A) / (uint64_t)vi->w < vi->nh) {
        size_t h0 = (size_t)((uint64_t)(tmin - vi->A) / (uint64_t)vi->w);
        size_t h1 = (size_t)((uint64_t)(tmax - vi->A) / (uint64_t)vi->w);
        if (vi->hits[h1 + 1] == vi->hits[h0]) {
            vi->points += n;
            return 0;
        }
    }
    size_t got = agg_chunk_pick(dctx, data, len, whole ? INT64_MIN : vi->start,
                                whole ? INT64_MAX : vi->end, &vi->f->bd);
    if (got == SIZE_MAX)
        return 1; /* corrupt: the raw path says what it can */
    s_fast_decoded += n;
    vi->points += got;
    return 0;
}

static int
s_visit_head(void *arg, const int64_t *ts, const double *v, size_t n)
{
    struct s_visit *vi = arg;

    (void)ts;
    agg_chunk_pick_values(&vi->f->bd, v, n);
    s_fast_decoded += n;
    vi->points += n;
    return 0;
}

/* Does a bucket whose values span [lo, hi] hold a wanted key? */
static bool
s_fast_hit(const struct s_fast *f, double lo, double hi)
{
    int32_t a = s_ord(lo), b = s_ord(hi);

    for (size_t j = 0; j < f->nkeys; j++)
        if (f->keys[j] >= a && f->keys[j] <= b)
            return true;
    return false;
}

/* Collect the values of the wanted keys among the raw points of key in
 * [start, end): each chunk that overlaps the range unless it lies in
 * whole hours whose rollup min and max exclude every wanted key. Returns
 * the points of the range seen, or SIZE_MAX when this cannot be done
 * (unsealed late points, too many hours, a corrupt chunk). */
static size_t
s_fast_scan(agg_store_t *store, const char *key, int64_t start, int64_t end,
            struct s_fast *f)
{
    const agg_rollup_t *ro = agg_store_rollup(store, key);
    struct s_visit vi = {.f = f, .start = start, .end = end,
                         .w = agg_rollup_width(AGG_ROLLUP_HOUR)};
    int64_t first, last, B;

    if (ro == NULL || !agg_store_span(store, key, &first, &last))
        return 0;
    first = start > first ? start : first;
    last = end < last ? end : last;
    vi.A = agg_rollup_start(AGG_ROLLUP_HOUR, first);
    vi.A = vi.A < first ? vi.A + vi.w : vi.A;
    B = agg_rollup_start(AGG_ROLLUP_HOUR, last);
    if (first < last && vi.A < B) {
        if ((B - vi.A) / vi.w > S_HOURS_MAX)
            return SIZE_MAX;
        vi.nh = (size_t)((B - vi.A) / vi.w);
    }
    vi.hits = xmalloc((vi.nh + 1) * sizeof *vi.hits);
    vi.hits[0] = 0;
    size_t i = agg_rollup_lower(ro, AGG_ROLLUP_HOUR, vi.A);
    for (size_t h = 0; h < vi.nh; h++) {
        struct agg_rsum one = {0};
        int64_t t = vi.A + (int64_t)h * vi.w;
        i = agg_rollup_merge_from(ro, AGG_ROLLUP_HOUR, i, t + vi.w, &one, NULL);
        vi.hits[h + 1] = vi.hits[h] +
                         (one.m.count > 0 && s_fast_hit(f, one.m.min, one.m.max));
    }
    int rc = agg_store_visit(store, key, start, end, s_visit_chunk,
                             s_visit_head, &vi);
    free(vi.hits);
    return rc ? SIZE_MAX : vi.points;
}

static int
s_fast_cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* The percentiles pcts of the selection from the rollups' sketch and the
 * values of the wanted buckets; 0, or -1 when the rollups cannot tell
 * (the caller then reads every raw point). */
static int
s_fast_pcts(agg_store_t *store, const struct agg_query_sel *sel,
            const char **keys, size_t nk, const agg_sketch_t *sk, uint64_t n,
            const double *pcts, size_t npcts, double *got)
{
    struct s_fast *f = xcalloc(1, sizeof *f);
    json_t *j = agg_sketch_to_json(sk);
    size_t ranks[2 * AGG_QUERY_PCTS_MAX];
    int32_t rkey[2 * AGG_QUERY_PCTS_MAX];
    double rval[2 * AGG_QUERY_PCTS_MAX];
    uint64_t cum = 0, seen = 0;
    int rc = -1;

    f->cnt[S_ORD_HALF] = (uint64_t)json_integer_value(json_object_get(j, "zeros"));
    if (json_object_get(j, "pos"))
        s_ord_counts(json_object_get(j, "pos"), 1, f->cnt);
    if (json_object_get(j, "neg"))
        s_ord_counts(json_object_get(j, "neg"), -1, f->cnt);
    json_decref(j);
    for (size_t i = 0; i < npcts; i++)
        agg_stats_pct_ranks(n, pcts[i], &ranks[2 * i], &ranks[2 * i + 1]);
    /* The key of each rank: the first whose cumulative count passes it. */
    for (size_t i = 0; i < 2 * npcts; i++) {
        uint64_t c = 0;
        size_t k = 0;
        while (k < S_ORD_N && c + f->cnt[k] <= ranks[i])
            c += f->cnt[k++];
        if (k == S_ORD_N)
            goto out; /* counts short of n: not the raw points */
        rkey[i] = (int32_t)k - S_ORD_HALF;
        if (f->want[k] == 0) {
            f->keys[f->nkeys] = rkey[i];
            f->below[f->nkeys] = c;
            size_t b = f->nkeys;
            s_ord_range(rkey[i], &f->bd.mlo[b], &f->bd.mhi[b], &f->bd.lo[b],
                        &f->bd.hi[b]);
            f->want[k] = (unsigned char)++f->nkeys;
        }
    }
    for (size_t i = 0; i < S_ORD_N; i++)
        cum += f->cnt[i];
    if (cum != n)
        goto out;
    f->bd.n = f->nkeys;
    f->bd.edge = s_fast_edge;
    f->bd.arg = f;
    /* Every point of the range seen once, and each wanted bucket's values
     * as many as the sketch counted. */
    for (size_t i = 0; i < nk; i++) {
        size_t pts = s_fast_scan(store, keys[i], sel->start, sel->end, f);
        if (pts == SIZE_MAX || pts > n - seen)
            goto out;
        seen += pts;
    }
    if (seen != n)
        goto out;
    for (size_t s = 0; s < f->nkeys; s++)
        if (f->bd.nvals[s] != f->cnt[f->keys[s] + S_ORD_HALF])
            goto out;
    /* Each rank among its bucket's values, ranks of a bucket together. */
    for (size_t s = 0; s < f->nkeys; s++) {
        size_t r[2 * AGG_QUERY_PCTS_MAX], nr = 0;
        double v[2 * AGG_QUERY_PCTS_MAX];
        for (size_t i = 0; i < 2 * npcts; i++)
            if (rkey[i] == f->keys[s])
                r[nr++] = ranks[i] - f->below[s];
        qsort(r, nr, sizeof *r, s_fast_cmp_size);
        agg_stats_ranks(f->bd.vals[s], f->bd.nvals[s], r, nr, v);
        for (size_t i = 0; i < 2 * npcts; i++)
            if (rkey[i] == f->keys[s]) {
                size_t k = 0;
                while (r[k] != ranks[i] - f->below[s])
                    k++;
                rval[i] = v[k];
            }
    }
    for (size_t i = 0; i < npcts; i++)
        got[i] = agg_stats_pct_between(n, pcts[i], rval[2 * i], rval[2 * i + 1]);
    rc = 0;
out:
    agg_chunk_bands_free(&f->bd);
    free(f);
    return rc;
}

/* Exact stats of the selection from rollups and the few raw points the
 * percentiles need (above); 0 with *body set, or -1 when the rollups of
 * some series do not equal its raw points there, or the range is small
 * enough to read whole. */
static int
s_stats_fast(agg_store_t *store, const struct agg_query_sel *sel,
             const char **keys, size_t nk, const double *pcts, size_t npcts,
             json_t **body)
{
    struct agg_rsum sum = {0};
    agg_sketch_t *sk;
    size_t pts = 0;
    double got[AGG_QUERY_PCTS_MAX];

    for (size_t i = 0; i < nk; i++) {
        if (!agg_store_rollups_exact(store, keys[i], sel->start, sel->end))
            return -1;
        size_t e = agg_store_raw_estimate(store, keys[i], sel->start, sel->end);
        pts = e == SIZE_MAX || pts + e < pts ? SIZE_MAX : pts + e;
    }
    if (pts <= AGG_QUERY_RAW_MAX)
        return -1;
    sk = agg_sketch_new();
    for (size_t i = 0; i < nk; i++) {
        struct agg_rsum one = {0};
        agg_store_summarize(store, keys[i], sel->start, sel->end, &one, sk);
        agg_rsum_merge(&sum, &one);
    }
    s_fast_decoded = 0;
    /* Infinities (the sketch leaves them out) and NaN: the raw path. */
    if (sum.m.count == 0 || !isfinite(sum.m.sum) || !isfinite(sum.m.m2) ||
        agg_sketch_count(sk) != sum.m.count ||
        s_fast_pcts(store, sel, keys, nk, sk, sum.m.count, pcts, npcts, got)) {
        s_fast_decoded = SIZE_MAX;
        agg_sketch_destroy(&sk);
        return -1;
    }
    agg_sketch_destroy(&sk);
    sum.m.mean = sum.m.sum / (double)sum.m.count; /* as the raw path */
    *body = s_exact_body(sel->series, nk, &sum.m, sum.first_ts, sum.last_ts,
                         pcts, npcts, got);
    return 0;
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
    if (nk > 0 && sel.exact && !s_fast_off &&
        s_stats_fast(store, &sel, keys, nk, pcts, npcts, body) == 0) {
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
    double got[AGG_QUERY_PCTS_MAX] = {0};
    if (n > 0)
        agg_stats_percentiles(vals, n, pcts, npcts, got);
    *body = s_exact_body(sel.series, nv, &m, first, last, pcts, npcts, got);
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
    size_t removed = 0;
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
        /* A range delete that leaves nothing removes the series too. */
        removed += agg_store_rollup(store, key) == NULL;
    }
    free(keys);
    *body = json_pack("{s:I, s:I, s:b, s:b}", "matched", (json_int_t)nk,
                      "deleted", (json_int_t)deleted, "series_removed",
                      removed == nk, "rollups_partial", partial);
    return 200;
}

int
agg_query_answer(agg_store_t *store, const json_t *req, json_t **body)
{
    return agg_query_reply(store, req, body, NULL);
}

struct strbuf *
agg_text_add(struct agg_text *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 4;
        t->buf = xrealloc(t->buf, t->cap * sizeof *t->buf);
    }
    t->buf[t->n] = (struct strbuf){NULL, 0, 0};
    if (t->n == 0) {
        strbuf_reserve(&t->buf[0], t->base);
        t->buf[0].len = t->base;
    }
    return &t->buf[t->n++];
}

struct strbuf *
agg_text_cur(struct agg_text *t)
{
    return t->n ? &t->buf[t->n - 1] : agg_text_add(t);
}

size_t
agg_text_len(const struct agg_text *t)
{
    size_t n = 0;

    for (size_t i = 0; i < t->n; i++)
        n += t->buf[i].len - (i ? 0 : t->base);
    return n;
}

char *
agg_text_join(const struct agg_text *t)
{
    struct strbuf all = {NULL, 0, 0};

    strbuf_reserve(&all, agg_text_len(t));
    for (size_t i = 0; i < t->n; i++)
        strbuf_add(&all, t->buf[i].p + (i ? 0 : t->base),
                   t->buf[i].len - (i ? 0 : t->base));
    return all.p;
}

struct strbuf *
agg_text_lend(struct agg_text *t, size_t room)
{
    struct strbuf *b;

    if (t->lent == NULL || room > t->lent_len - t->lent_used)
        return NULL;
    b = agg_text_add(t);
    b->p = t->lent + t->lent_used;
    b->cap = room;
    b->p[0] = '\0';
    t->lent_used += room;
    return b;
}

void
agg_text_free(struct agg_text *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->lent == NULL || t->buf[i].p < t->lent ||
            t->buf[i].p >= t->lent + t->lent_len)
            strbuf_free(&t->buf[i]); /* not the lender's */
    free(t->buf);
    t->buf = NULL;
    t->n = t->cap = 0;
}

int
agg_query_reply(agg_store_t *store, const json_t *req, json_t **body,
                struct agg_text *text)
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

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
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

/* The exact answer of the points (ts, v) in [a, b), brute force: sort
 * a copy, moments in long double. Checks body against it: count, min,
 * max, first, last and every percentile to the bit (a zero's sign
 * aside), sum and mean within 1e-12 of the long double figures, std
 * within 1e-10 (the raw path's two passes in double are 1.5e-12 off
 * with the 1e80 outliers below). */
static void
s_test_brute(const json_t *body, const int64_t *ts, const double *v,
             size_t n, int64_t a, int64_t b, const double *ps, size_t np)
{
    double *x = xmalloc((n ? n : 1) * sizeof *x);
    size_t m = 0;
    long double sum = 0, m2 = 0;
    int64_t first = 0, last = 0;
    char key[48], tbuf[40];

    for (size_t i = 0; i < n; i++)
        if (ts[i] >= a && ts[i] < b) {
            if (m == 0)
                first = ts[i];
            last = ts[i];
            x[m++] = v[i];
            sum += v[i];
        }
    qsort(x, m, sizeof *x, s_cmp_double);
    assert(m > 0 && json_integer_value(json_object_get(body, "count")) == (json_int_t)m);
    assert(json_is_false(json_object_get(body, "estimated")));
    TEST_STREQ(json_string_value(json_object_get(body, "source")), "raw");
    assert(json_real_value(json_object_get(body, "min")) == x[0]);
    assert(json_real_value(json_object_get(body, "max")) == x[m - 1]);
    TEST_STREQ(json_string_value(json_object_get(body, "first")),
               clock_format(first, tbuf, sizeof tbuf));
    TEST_STREQ(json_string_value(json_object_get(body, "last")),
               clock_format(last, tbuf, sizeof tbuf));
    for (size_t i = 0; i < m; i++)
        m2 += (x[i] - sum / m) * (x[i] - sum / m);
    TEST_NEAR(json_real_value(json_object_get(body, "sum")), (double)sum,
              1e-12 * fabsl(sum) + 1e-300);
    TEST_NEAR(json_real_value(json_object_get(body, "mean")), (double)(sum / m),
              1e-12 * fabsl(sum / m) + 1e-300);
    if (m > 1)
        TEST_NEAR(json_real_value(json_object_get(body, "std")),
                  sqrt((double)(m2 / (m - 1))),
                  1e-10 * sqrt((double)(m2 / (m - 1))));
    for (size_t i = 0; i < np; i++) {
        s_pct_key(ps[i], key, sizeof key);
        double want = agg_stats_percentile(x, m, ps[i]);
        assert(json_real_value(json_object_get(body, key)) == want);
    }
    free(x);
}

/* Exact stats over more than 100,000 points come from the rollups and
 * the raw points of the percentiles' sketch buckets only (s_stats_fast):
 * on random data (ties, negatives, zeros of both signs, values past the
 * rollups' clamped sketch indices), with late points, overwrites and a
 * deleted range, over ranges cut at odd edges, the answer is a brute
 * force sort's to the bit and the raw path's, decoding fewer points.
 * Where the rollups cannot be trusted (retention) or cannot tell (an
 * infinity), the raw path answers. */
/* The fast exact answer of st over [a, b) against the raw path's, to the
 * bit for the percentiles and exactly for count, min and max; returns
 * whether the fast path answered. */
static bool
s_test_same(agg_store_t *st, const json_t *pj, int64_t a, int64_t b)
{
    json_t *q = json_pack("{s:s, s:s, s:b, s:I, s:I, s:O}", "op", "stats",
                          "series", "d", "exact", 1, "start", (json_int_t)a,
                          "end", (json_int_t)b, "percentiles", pj);
    json_t *fast, *raw;

    s_fast_decoded = SIZE_MAX;
    assert(agg_query_answer(st, q, &fast) == 200);
    bool used = s_fast_decoded != SIZE_MAX;
    s_fast_off = true;
    assert(agg_query_answer(st, q, &raw) == 200);
    s_fast_off = false;
    json_int_t count = json_integer_value(json_object_get(raw, "count"));
    assert(count > 0 && json_integer_value(json_object_get(fast, "count")) == count);
    for (size_t i = 0; i < json_array_size(pj); i++) {
        char key[48];
        s_pct_key(json_real_value(json_array_get(pj, i)), key, sizeof key);
        double x = json_real_value(json_object_get(fast, key));
        double y = json_real_value(json_object_get(raw, key));
        assert(memcmp(&x, &y, sizeof x) == 0);
    }
    assert(json_equal(json_object_get(fast, "min"), json_object_get(raw, "min")));
    assert(json_equal(json_object_get(fast, "max"), json_object_get(raw, "max")));
    json_decref(fast);
    json_decref(raw);
    json_decref(q);
    return used;
}

/* The fast path on a store on disk: after compaction (chunks of up to
 * AGG_STORE_COMPACT_POINTS, most of which have an hour that can hold a
 * wanted value, so most are decoded), after a restart, and after late points, overwrites and a
 * delete into compacted chunks, then another restart: the raw path's
 * answers. */
static void
s_test_exact_disk(void)
{
    char dir[] = "/tmp/agg_query_test.XXXXXX";
    struct agg_store_files zero = {0}, files;
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    enum { N = 300000 };
    double walk = 15;
    uint64_t seed = 11;
    static const double ps[] = {50, 90, 95, 99, 0.5, 100};
    json_t *pj = json_array();
    const int64_t end = t0 + (int64_t)N * 10 * s1;
    const int64_t ragged[2] = {t0 + 12345 * s1 + 7, end - 86399 * s1};

    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++)
        json_array_append_new(pj, json_real(ps[i]));
    assert(mkdtemp(dir));
    agg_store_t *st = agg_store_open(dir, &zero);
    assert(st);
    for (int64_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        walk += ((double)(seed >> 11) / 9007199254740992.0 - 0.5) * 0.3;
        assert(agg_store_put(st, "d", t0 + i * 10 * s1, round(walk * 100) / 100) == 1);
        if (i % 50000 == 49999)
            assert(agg_store_sync(st, &files) == 0);
    }
    agg_store_seal_all(st); /* the head too (aggd's WAL holds it) */
    agg_store_compact_all(st);
    assert(agg_store_sync(st, &files) == 0 && agg_store_compacted_chunks(st) > 0);
    assert(s_test_same(st, pj, INT64_MIN, INT64_MAX));
    assert(s_test_same(st, pj, ragged[0], ragged[1]));
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st && agg_store_points(st) == N);
    assert(s_test_same(st, pj, INT64_MIN, INT64_MAX));
    assert(s_test_same(st, pj, ragged[0], ragged[1]));
    /* Late new points between the old ones, overwrites and a deleted
     * range, all in compacted chunks. */
    for (int64_t i = 1000; i < N / 2; i += 7919)
        assert(agg_store_put(st, "d", t0 + i * 10 * s1 + 5 * s1, 17.25) == 1);
    for (int64_t i = 500; i < N / 2; i += 6007)
        assert(agg_store_put(st, "d", t0 + i * 10 * s1, 16.5) == 0);
    bool partial;
    assert(agg_store_delete(st, "d", t0 + 100000 * 10 * s1,
                            t0 + 100500 * 10 * s1, &partial) == 500);
    (void)s_test_same(st, pj, INT64_MIN, INT64_MAX);
    (void)s_test_same(st, pj, ragged[0], ragged[1]);
    agg_store_seal_all(st);
    assert(agg_store_sync(st, &files) == 0);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st);
    (void)s_test_same(st, pj, INT64_MIN, INT64_MAX);
    (void)s_test_same(st, pj, ragged[0], ragged[1]);
    /* Past the last change the rollups are exact again: the fast path. */
    assert(s_test_same(st, pj, t0 + (N / 2 + 10000) * 10 * s1, INT64_MAX));
    agg_store_destroy(&st);
    zdir_t *d = zdir_new(dir, NULL);
    assert(d);
    zdir_remove(d, true);
    zdir_destroy(&d);
    json_decref(pj);
}

static void
s_test_exact_fast(void)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    enum { N = 240000 };
    int64_t *ts = xmalloc(N * sizeof *ts);
    double *v = xmalloc(N * sizeof *v), walk = 20;
    uint64_t seed = 7;
    static const double ps[] = {50, 90, 95, 99, 0, 0.1, 1, 25, 33.333, 75,
                                99.9, 99.99, 100};
    const size_t np = sizeof ps / sizeof *ps;
    json_t *pj = json_array();
    struct agg_view *views;

    for (size_t i = 4; i < np; i++)
        json_array_append_new(pj, json_real(ps[i]));
    for (size_t i = 0; i < N; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        double u = (double)(seed >> 11) / 9007199254740992.0;
        walk += (u - 0.5) * 2;
        ts[i] = t0 + (int64_t)i * 10 * s1 + (int64_t)(seed % 1000);
        v[i] = i % 9973 == 0 ? 0.0 : i % 10007 == 0 ? -0.0
               : i % 49999 == 0 ? 1e80 * (u - 0.5) : i % 50021 == 0 ? 5e-324
               : i % 50023 == 0 ? -1e-200 : round(walk * 100) / 100;
    }
    /* In order but for every 97th point of each block of 20,000, written
     * after the block (late, into sealed chunks). */
    for (size_t blk = 0; blk < N; blk += 20000) {
        for (size_t i = blk; i < blk + 20000; i++)
            if (i % 97 != 3)
                agg_store_put(st, "x", ts[i], v[i]);
        for (size_t i = blk; i < blk + 20000; i++)
            if (i % 97 == 3)
                agg_store_put(st, "x", ts[i], v[i]);
    }
    /* Overwrites with other values (the old one gone, never doubled),
     * the largest and smallest included. */
    for (size_t i = 11; i < N; i += 6133) {
        v[i] = round((v[i] + 3.5) * 100) / 100;
        agg_store_put(st, "x", ts[i], v[i]);
    }
    bool partial;
    assert(agg_store_delete(st, "x", ts[50000] + 1, ts[61234] - 5, &partial) > 0 &&
           !partial);
    /* The raw points as the store holds them now. */
    size_t n = 0;
    assert(agg_store_select(st, "x", NULL, 0, INT64_MIN, INT64_MAX, &views) == 1);
    for (size_t i = 0; i < views[0].n; i++) {
        ts[n] = views[0].ts[i];
        v[n++] = views[0].v[i];
    }
    free(views);
    assert(n < N - 11000 && n > N - 12000);
    int64_t ranges[][2] = {
        {INT64_MIN, INT64_MAX},
        {ts[0] + 17 * s1 + 3, ts[n - 1] - 3599 * s1},
        {ts[1234] - 1, ts[n - 70000] + 7},
        {t0 + 86400 * s1 - 1, t0 + 20 * 86400 * s1 + 1},
    };
    for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
        json_t *q = json_pack("{s:s, s:s, s:b, s:I, s:I, s:O}", "op", "stats",
                              "series", "x", "exact", 1, "start",
                              (json_int_t)ranges[r][0], "end",
                              (json_int_t)ranges[r][1], "percentiles", pj);
        json_t *fast, *raw;
        /* The standard percentiles alone decode part of the points
         * (whole chunks counted: about half here, where chunks are 2,048
         * points of 5.7 hours; 13-16 % of the hours on the benchmark's
         * series). */
        json_object_del(q, "percentiles");
        assert(agg_query_answer(st, q, &fast) == 200);
        size_t count = (size_t)json_integer_value(json_object_get(fast, "count"));
        assert(s_fast_decoded < count * 2 / 3);
        s_test_brute(fast, ts, v, n, ranges[r][0], ranges[r][1], ps, 4);
        json_decref(fast);
        json_object_set(q, "percentiles", pj);
        assert(agg_query_answer(st, q, &fast) == 200);
        assert(s_fast_decoded <= count); /* the fast path */
        s_fast_off = true;
        assert(agg_query_answer(st, q, &raw) == 200);
        s_fast_off = false;
        s_test_brute(fast, ts, v, n, ranges[r][0], ranges[r][1], ps, np);
        s_test_brute(raw, ts, v, n, ranges[r][0], ranges[r][1], ps, np);
        for (size_t i = 0; i < np; i++) { /* the raw path's bits */
            char key[48];
            s_pct_key(ps[i], key, sizeof key);
            double x = json_real_value(json_object_get(fast, key));
            double y = json_real_value(json_object_get(raw, key));
            assert(memcmp(&x, &y, sizeof x) == 0);
        }
        json_decref(fast);
        json_decref(raw);
        json_decref(q);
    }
    /* An infinity: the sketch leaves it out, so the raw path answers. */
    agg_store_put(st, "x", ts[n - 1] + s1, INFINITY);
    json_t *q = json_pack("{s:s, s:s, s:b}", "op", "stats", "series", "x",
                          "exact", 1), *body;
    s_fast_decoded = SIZE_MAX;
    assert(agg_query_answer(st, q, &body) == 200);
    assert(s_fast_decoded == SIZE_MAX &&
           json_is_null(json_object_get(body, "max")));
    json_decref(body);
    /* Retention dropped raw points of the range: the raw path (what the
     * store still holds), never the rollups that still count them. */
    agg_store_delete(st, "x", ts[n - 1] + s1, INT64_MAX, &partial);
    int64_t keep[AGG_ROLLUP_TIERS] = {INT64_MIN, INT64_MIN, INT64_MIN};
    assert(agg_store_expire(st, ts[20000], keep) > 0);
    s_fast_decoded = SIZE_MAX;
    assert(agg_query_answer(st, q, &body) == 200);
    assert(s_fast_decoded == SIZE_MAX);
    assert(agg_store_select(st, "x", NULL, 0, INT64_MIN, INT64_MAX, &views) == 1);
    size_t kept = views[0].n;
    free(views);
    assert(json_integer_value(json_object_get(body, "count")) == (json_int_t)kept);
    json_decref(body);
    /* From there on the rollups are whole again: the fast path. */
    const int64_t raw_from = ts[20000], day = agg_rollup_start(AGG_ROLLUP_DAY, raw_from);
    json_object_set_new(q, "start", json_integer(day + 86400 * s1));
    json_object_set_new(q, "percentiles", json_copy(pj));
    s_fast_decoded = SIZE_MAX;
    assert(agg_query_answer(st, q, &body) == 200);
    assert(s_fast_decoded < (size_t)json_integer_value(json_object_get(body, "count")));
    s_test_brute(body, ts, v, n, json_integer_value(json_object_get(q, "start")),
                 INT64_MAX, ps, np);
    json_decref(body);
    /* Lowering a minute's largest value where retention left its day
     * short of points cannot recompute the day's buckets from raw ones:
     * that day's rollups keep the old max, so from there the raw path
     * answers; the next day on stays fast. */
    const int64_t minute = agg_rollup_start(AGG_ROLLUP_MINUTE, ts[20010]);
    size_t j = 20010;
    for (size_t i = 20000; i < n && ts[i] < minute + 60 * s1; i++)
        j = ts[i] >= minute && v[i] > v[j] ? i : j;
    v[j] -= 1000;
    agg_store_put(st, "x", ts[j], v[j]);
    assert(!agg_store_rollups_exact(st, "x", raw_from, INT64_MAX));
    assert(agg_store_rollups_exact(st, "x", day + 86400 * s1, INT64_MAX));
    json_object_set_new(q, "start", json_integer(raw_from));
    s_fast_decoded = SIZE_MAX;
    assert(agg_query_answer(st, q, &body) == 200 && s_fast_decoded == SIZE_MAX);
    s_test_brute(body, ts, v, n, raw_from, INT64_MAX, ps, np);
    json_decref(body);
    json_decref(q);
    json_decref(pj);
    free(ts);
    free(v);
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

    /* A fraction of a millisecond cannot bound a bucket; 1.5h can. */
    req = json_pack("{s:s, s:s, s:s}", "op", "aggregate", "series",
                    "temp_sensor_001", "interval", "0.5ms");
    assert(agg_query_answer(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series",
                    "temp_sensor_001", "interval", "1h", "window", "1h0.5ms");
    assert(agg_query_answer(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series",
                    "temp_sensor_001", "interval", "0.5h", "aggregation", "max");
    assert(agg_query_answer(st, req, &body) == 200);
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
    s_test_exact_fast();
    s_test_exact_disk();
    (void)verbose;
    TEST_OK("agg_query");
}
