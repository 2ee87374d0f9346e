/*
 * api_analytics: forecast, trend and correlation (see api_analytics.h).
 *
 * Forecasts come from anomalyd, which learns every series online. Trend
 * and correlation are questions about a stored range, so apid asks aggd
 * for the readings (the "points" export, merged over lanes) and computes
 * here: a range can be any past window, which anomalyd's streaming state
 * cannot answer.
 */
#include "apid/api_analytics.h"
#include "common/clock.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_NS_PER_HOUR (3600.0 * CLOCK_NS_PER_S)
#define S_DEFAULT_HORIZON (24 * 3600 * CLOCK_NS_PER_S)
#define S_DEFAULT_WINDOW (3600 * CLOCK_NS_PER_S)
#define S_FORECAST_POINTS 24
#define S_FORECAST_POINTS_MAX 1000
#define S_TREND_POINTS 100
#define S_TREND_POINTS_MAX 1000
#define S_PERIOD_MIN_READINGS 16
/* Below this share of the spread, a detrended series is flat. */
#define S_RESIDUAL_MIN 1e-12

/* One series' readings, loaded from an aggd export. */
struct s_pts {
    char *key;   /* canonical key */
    int64_t *ts; /* ns, ascending */
    double *v;   /* values */
    size_t n;    /* readings */
    bool truncated; /* aggd stopped at API_ANALYTICS_POINTS_MAX */
};

/* A trend or correlation request in flight. */
struct s_job {
    char *b;          /* correlation: the second selection */
    json_t *bq;       /* ... and its query (owned) */
    int64_t window;   /* trend: moving-average window, ns */
    size_t points;    /* trend: sampled output times */
    int64_t interval; /* correlation: bucket width, 0 = equal timestamps */
    struct s_pts a;   /* correlation: the first series' readings */
};

static void
s_pts_free(struct s_pts *p)
{
    free(p->key);
    free(p->ts);
    free(p->v);
    memset(p, 0, sizeof *p);
}

static void
s_job_free(struct s_job *j)
{
    if (!j)
        return;
    free(j->b);
    json_decref(j->bq);
    s_pts_free(&j->a);
    free(j);
}

static json_t *
s_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *
s_time(int64_t ts)
{
    char tb[40];
    return json_string(clock_format(ts, tb, sizeof tb));
}

/* --- the math ------------------------------------------------------------ */

void
api_analytics_slope(const int64_t *ts, const double *v, size_t n,
                    double *per_hour, double *r2)
{
    *per_hour = NAN;
    *r2 = NAN;
    if (n < 2)
        return;
    /* Centred sums (times relative to the first reading, in hours). */
    double mt = 0, mv = 0;
    for (size_t i = 0; i < n; i++) {
        mt += (double)(ts[i] - ts[0]) / S_NS_PER_HOUR;
        mv += v[i];
    }
    mt /= (double)n;
    mv /= (double)n;
    double stt = 0, stv = 0, svv = 0;
    for (size_t i = 0; i < n; i++) {
        double dt = (double)(ts[i] - ts[0]) / S_NS_PER_HOUR - mt;
        double dv = v[i] - mv;
        stt += dt * dt;
        stv += dt * dv;
        svv += dv * dv;
    }
    if (stt <= 0)
        return;
    *per_hour = stv / stt;
    if (svv > 0)
        *r2 = stv * stv / (stt * svv);
}

double
api_analytics_pearson(const double *x, const double *y, size_t n)
{
    if (n < 3)
        return NAN;
    double mx = 0, my = 0;
    for (size_t i = 0; i < n; i++) {
        mx += x[i];
        my += y[i];
    }
    mx /= (double)n;
    my /= (double)n;
    double sxx = 0, syy = 0, sxy = 0;
    for (size_t i = 0; i < n; i++) {
        sxx += (x[i] - mx) * (x[i] - mx);
        syy += (y[i] - my) * (y[i] - my);
        sxy += (x[i] - mx) * (y[i] - my);
    }
    if (sxx <= 0 || syy <= 0)
        return NAN;
    return fmax(-1.0, fmin(1.0, sxy / sqrt(sxx * syy)));
}

static int
s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The readings as bucket means on a regular grid (step: the median gap,
 * widened so at most API_ANALYTICS_GRID_MAX buckets), empty buckets
 * interpolated, and the least-squares line removed. Returns the grid
 * (caller frees) and sets *g, *step and *spread (the grid's sum of
 * squares around its mean before the line was removed); NULL when it
 * cannot be built. */
static double *
s_grid(const int64_t *ts, const double *v, size_t n, size_t *g, int64_t *step,
       double *spread)
{
    int64_t *gaps = xcalloc(n, sizeof *gaps);
    size_t ng = 0;
    for (size_t i = 1; i < n; i++)
        if (ts[i] > ts[i - 1])
            gaps[ng++] = ts[i] - ts[i - 1];
    if (ng < S_PERIOD_MIN_READINGS) {
        free(gaps);
        return NULL;
    }
    qsort(gaps, ng, sizeof *gaps, s_cmp_i64);
    *step = gaps[ng / 2];
    free(gaps);
    int64_t span = ts[n - 1] - ts[0];
    if (span / *step + 1 > API_ANALYTICS_GRID_MAX)
        *step = span / (API_ANALYTICS_GRID_MAX - 1) + 1;
    *g = (size_t)(span / *step) + 1;
    double *sum = xcalloc(*g, sizeof *sum);
    size_t *cnt = xcalloc(*g, sizeof *cnt);
    for (size_t i = 0; i < n; i++) {
        size_t b = (size_t)((ts[i] - ts[0]) / *step);
        sum[b] += v[i];
        cnt[b]++;
    }
    size_t prev = SIZE_MAX;
    for (size_t b = 0; b < *g; b++) {
        if (!cnt[b])
            continue;
        sum[b] /= (double)cnt[b];
        for (size_t k = prev + 1; prev != SIZE_MAX && k < b; k++)
            sum[k] = sum[prev] + (sum[b] - sum[prev]) * (double)(k - prev) /
                                     (double)(b - prev);
        prev = b;
    }
    free(cnt);
    /* Detrend, so a rising series does not read as one long period. */
    double mt = ((double)*g - 1) / 2, mv = 0, stt = 0, stv = 0;
    for (size_t b = 0; b < *g; b++)
        mv += sum[b];
    mv /= (double)*g;
    for (size_t b = 0; b < *g; b++) {
        stt += ((double)b - mt) * ((double)b - mt);
        stv += ((double)b - mt) * (sum[b] - mv);
    }
    double slope = stt > 0 ? stv / stt : 0;
    *spread = 0;
    for (size_t b = 0; b < *g; b++) {
        *spread += (sum[b] - mv) * (sum[b] - mv);
        sum[b] -= mv + slope * ((double)b - mt);
    }
    return sum;
}

int64_t
api_analytics_period(const int64_t *ts, const double *v, size_t n,
                     double *acf)
{
    size_t g;
    int64_t step;
    double *x, spread;

    *acf = NAN;
    if (n < S_PERIOD_MIN_READINGS ||
        !(x = s_grid(ts, v, n, &g, &step, &spread)))
        return 0;
    double var = 0;
    for (size_t i = 0; i < g; i++)
        var += x[i] * x[i];
    /* What the line leaves is rounding noise: no season to find. */
    if (var <= S_RESIDUAL_MIN * spread)
        var = 0;
    size_t best = 0;
    double best_r = API_ANALYTICS_ACF_MIN, prev = 1, cur = 1;
    /* Biased autocorrelation (it shrinks with the lag, so the base period
     * beats its multiples); a period is a local maximum above the floor,
     * seen at least twice in the range. */
    for (size_t lag = 1; var > 0 && lag <= g / 2; lag++) {
        double r = 0;
        for (size_t i = 0; i + lag < g; i++)
            r += x[i] * x[i + lag];
        r /= var;
        if (lag >= 3 && cur > prev && cur >= r && cur > best_r) {
            best_r = cur;
            best = lag - 1;
        }
        prev = cur;
        cur = r;
    }
    free(x);
    if (!best)
        return 0;
    *acf = best_r;
    return (int64_t)best * step;
}

/* --- loading aggd's answer ----------------------------------------------- */

/* The one series of an aggd "points" answer into p. Returns 0, or -1
 * after replying (an error of aggd's, or not exactly one series). */
static int
s_load(http_req_t *req, int status, const json_t *body, const char *what,
       struct s_pts *p)
{
    if (status != 200) {
        http_req_reply_json(req, status, json_incref((json_t *)body));
        return -1;
    }
    json_int_t matched = json_integer_value(json_object_get(body, "matched"));
    const json_t *s = json_array_get(json_object_get(body, "series"), 0);
    if (matched != 1 || !s) {
        char msg[160];
        snprintf(msg, sizeof msg,
                 "selects %lld series; exactly one is needed (use the "
                 "canonical key or tag.k=v filters)",
                 (long long)matched);
        http_req_reply_error(req, 400, "bad_request", msg, what);
        return -1;
    }
    const json_t *pts = json_object_get(s, "points"), *e;
    size_t i, n = json_array_size(pts);
    p->key = xstrdup(json_string_value(json_object_get(s, "series")));
    p->ts = xcalloc(n ? n : 1, sizeof *p->ts);
    p->v = xcalloc(n ? n : 1, sizeof *p->v);
    p->truncated = json_is_true(json_object_get(body, "truncated"));
    json_array_foreach(pts, i, e) {
        const json_t *jns = json_object_get(e, "ns");
        const json_t *jv = json_object_get(e, "value");
        if (!json_is_integer(jns) || !json_is_number(jv))
            continue;
        p->ts[p->n] = json_integer_value(jns);
        p->v[p->n++] = json_number_value(jv);
    }
    return 0;
}

/* The aggd query for one selection's readings over the request's range
 * and tag filters; NULL after replying 400. */
static json_t *
s_points_query(http_req_t *req, const char *series)
{
    json_t *q = json_pack("{s:s, s:s, s:i, s:b}", "op", "points", "series",
                          series, "limit", API_ANALYTICS_POINTS_MAX, "ns", 1);
    if (apid_range_args(req, q)) {
        json_decref(q);
        return NULL;
    }
    return q;
}

/* A duration argument, default dflt; -1 after replying 400. */
static int64_t
s_duration_arg(http_req_t *req, const char *name, int64_t dflt)
{
    const char *v = http_req_arg(req, name);
    int64_t ns;
    if (!v)
        return dflt;
    if (clock_parse_duration(v, &ns) || ns <= 0) {
        http_req_reply_error(req, 400, "bad_request",
                             "not a duration (30s, 5min, 1h, 1d, 1w)", name);
        return -1;
    }
    return ns;
}

/* An integer argument in [1, max], default dflt; -1 after replying 400. */
static long long
s_count_arg(http_req_t *req, const char *name, long long dflt, long long max)
{
    const char *v = http_req_arg(req, name);
    long long n;
    char msg[64];
    if (!v)
        return dflt;
    if (strutil_toll(v, 1, max, &n)) {
        snprintf(msg, sizeof msg, "must be an integer 1..%lld", max);
        http_req_reply_error(req, 400, "bad_request", msg, name);
        return -1;
    }
    return n;
}

/* --- forecast -------------------------------------------------------------- */

static void
s_route_forecast(apid_t *apid, http_req_t *req, const char *series)
{
    int64_t horizon = s_duration_arg(req, "horizon", S_DEFAULT_HORIZON);
    long long points;
    const char *v;
    double thr;

    if (horizon < 0)
        return;
    if ((points = s_count_arg(req, "points", S_FORECAST_POINTS,
                              S_FORECAST_POINTS_MAX)) < 0)
        return;
    json_t *q = json_pack("{s:s, s:s, s:I, s:I}", "op", "forecast", "series",
                          series, "horizon", (json_int_t)horizon, "points",
                          (json_int_t)points);
    if ((v = http_req_arg(req, "threshold"))) {
        if (strutil_tod(v, &thr)) {
            json_decref(q);
            http_req_reply_error(req, 400, "bad_request",
                                 "threshold must be a number", "threshold");
            return;
        }
        json_object_set_new(q, "threshold", json_real(thr));
    }
    apid_relay(apid, req, APID_BK_ANOMALYD, q);
}

/* --- trend ------------------------------------------------------------------ */

/* Trailing moving average and time-based EWMA (time constant window) at
 * up to npoints readings spread evenly over the range, the last included. */
static json_t *
s_moving(const struct s_pts *p, int64_t window, size_t npoints)
{
    json_t *out = json_array();
    double sum = 0, ewma = 0;
    size_t lo = 0, k = 0;
    size_t next = npoints == 1 && p->n > 1 ? p->n - 1 : 0; /* next sample */
    for (size_t i = 0; i < p->n; i++) {
        sum += p->v[i];
        while (p->ts[lo] <= p->ts[i] - window)
            sum -= p->v[lo++];
        double dt = i ? (double)(p->ts[i] - p->ts[i - 1]) : 0;
        ewma = i ? ewma + (1 - exp(-dt / (double)window)) * (p->v[i] - ewma)
                 : p->v[0];
        if (i != next)
            continue;
        json_array_append_new(
            out, json_pack("{s:o, s:o, s:o}", "timestamp", s_time(p->ts[i]),
                           "moving_average", s_num(sum / (double)(i - lo + 1)),
                           "ewma", s_num(ewma)));
        k++;
        if (npoints >= p->n)
            next = i + 1;
        else if (npoints == 1)
            next = p->n - 1;
        else
            next = (size_t)llround((double)(p->n - 1) * (double)k /
                                   (double)(npoints - 1));
    }
    return out;
}

static void
s_on_trend(apid_t *apid, http_req_t *req, int status, json_t *body,
           void *arg)
{
    struct s_job *j = arg;
    struct s_pts p = {0};

    if (s_load(req, status, body, "series", &p) == 0) {
        double slope, r2, acf, mean = 0;
        for (size_t i = 0; i < p.n; i++)
            mean += p.v[i];
        api_analytics_slope(p.ts, p.v, p.n, &slope, &r2);
        int64_t period = api_analytics_period(p.ts, p.v, p.n, &acf);
        json_t *season = json_null();
        if (period > 0)
            season = json_pack("{s:f, s:f}", "period_seconds",
                               (double)period / CLOCK_NS_PER_S,
                               "autocorrelation", acf);
        json_t *out = json_pack(
            "{s:s, s:I, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:o}",
            "series", p.key, "count", (json_int_t)p.n, "truncated",
            p.truncated, "start", p.n ? s_time(p.ts[0]) : json_null(), "end",
            p.n ? s_time(p.ts[p.n - 1]) : json_null(), "mean",
            s_num(p.n ? mean / (double)p.n : NAN), "slope_per_hour",
            s_num(slope), "r2", s_num(r2), "seasonality", season,
            "window_seconds", (double)j->window / CLOCK_NS_PER_S,
            "moving_averages", s_moving(&p, j->window, j->points));
        http_req_reply_json(req, 200, out);
        s_pts_free(&p);
    }
    json_decref(body);
    s_job_free(j);
}

static void
s_route_trend(apid_t *apid, http_req_t *req, const char *series)
{
    int64_t window = s_duration_arg(req, "window", S_DEFAULT_WINDOW);
    long long points;
    json_t *q;

    if (window < 0 || (points = s_count_arg(req, "points", S_TREND_POINTS,
                                            S_TREND_POINTS_MAX)) < 0)
        return;
    if (!(q = s_points_query(req, series)))
        return;
    struct s_job *j = xcalloc(1, sizeof *j);
    j->window = window;
    j->points = (size_t)points;
    apid_ask(apid, req, APID_BK_AGGD, q, s_on_trend, j);
}

/* --- correlation ---------------------------------------------------------- */

/* Pair a's and b's readings: equal timestamps, or bucket means of width
 * interval. Returns the number of pairs in x and y (caller frees). */
static size_t
s_pair(const struct s_pts *a, const struct s_pts *b, int64_t interval,
       double **x, double **y)
{
    size_t cap = a->n < b->n ? a->n : b->n, n = 0, i = 0, k = 0;
    *x = xcalloc(cap ? cap : 1, sizeof **x);
    *y = xcalloc(cap ? cap : 1, sizeof **y);
    while (i < a->n && k < b->n) {
        int64_t ka = interval ? a->ts[i] / interval : a->ts[i];
        int64_t kb = interval ? b->ts[k] / interval : b->ts[k];
        if (ka != kb) {
            if (ka < kb)
                i++;
            else
                k++;
            continue;
        }
        double sa = 0, sb = 0;
        size_t na = 0, nb = 0;
        for (; i < a->n && (interval ? a->ts[i] / interval : a->ts[i]) == ka;
             i++, na++)
            sa += a->v[i];
        for (; k < b->n && (interval ? b->ts[k] / interval : b->ts[k]) == kb;
             k++, nb++)
            sb += b->v[k];
        (*x)[n] = sa / (double)na;
        (*y)[n] = sb / (double)nb;
        n++;
    }
    return n;
}

static void
s_on_corr_b(apid_t *apid, http_req_t *req, int status, json_t *body,
            void *arg)
{
    struct s_job *j = arg;
    struct s_pts b = {0};

    if (s_load(req, status, body, "b", &b) == 0) {
        double *x, *y;
        size_t n = s_pair(&j->a, &b, j->interval, &x, &y);
        double r = api_analytics_pearson(x, y, n);
        json_t *out = json_pack(
            "{s:s, s:s, s:I, s:o, s:b, s:o}", "a", j->a.key, "b", b.key,
            "pairs", (json_int_t)n, "interval_seconds",
            j->interval ? json_real((double)j->interval / CLOCK_NS_PER_S)
                        : json_null(),
            "truncated", j->a.truncated || b.truncated, "pearson", s_num(r));
        if (!isfinite(r))
            json_object_set_new(
                out, "reason",
                json_string(n < 3 ? "fewer than 3 paired readings"
                                  : "a series is constant over the pairs"));
        http_req_reply_json(req, 200, out);
        free(x);
        free(y);
        s_pts_free(&b);
    }
    json_decref(body);
    s_job_free(j);
}

static void
s_on_corr_a(apid_t *apid, http_req_t *req, int status, json_t *body,
            void *arg)
{
    struct s_job *j = arg;

    if (s_load(req, status, body, "a", &j->a) == 0) {
        json_t *q = j->bq;
        j->bq = NULL;
        json_decref(body);
        apid_ask(apid, req, APID_BK_AGGD, q, s_on_corr_b, j);
        return;
    }
    json_decref(body);
    s_job_free(j);
}

static void
s_route_correlation(apid_t *apid, http_req_t *req)
{
    const char *a = http_req_arg(req, "a"), *b = http_req_arg(req, "b");
    int64_t interval = s_duration_arg(req, "interval", 0);
    json_t *qa, *qb;

    if (interval < 0)
        return;
    if (!a || !*a || !b || !*b) {
        http_req_reply_error(req, 400, "bad_request",
                             "a and b (two series) are required", a ? "b" : "a");
        return;
    }
    if (!(qa = s_points_query(req, a)))
        return;
    if (!(qb = s_points_query(req, b))) {
        json_decref(qa);
        return;
    }
    struct s_job *j = xcalloc(1, sizeof *j);
    j->interval = interval;
    j->bq = qb;
    apid_ask(apid, req, APID_BK_AGGD, qa, s_on_corr_a, j);
}

int
api_analytics_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req);
    char *series = NULL;

    if ((series = apid_path_arg(path, "/api/v1/forecast/"))) {
        if (apid_method(req, "GET"))
            s_route_forecast(apid, req, series);
    } else if ((series = apid_path_arg(path, "/api/v1/trend/"))) {
        if (apid_method(req, "GET"))
            s_route_trend(apid, req, series);
    } else if (!strcmp(path, "/api/v1/correlation")) {
        if (apid_method(req, "GET"))
            s_route_correlation(apid, req);
    } else
        return 0;
    free(series);
    return 1;
}

void
api_analytics_test(bool verbose)
{
    enum { N = 2880 }; /* two days of readings a minute */
    int64_t *ts = xcalloc(N, sizeof *ts);
    double *v = xcalloc(N, sizeof *v), *w = xcalloc(N, sizeof *w);
    double slope, r2, acf;
    uint64_t x = 1;

    for (size_t i = 0; i < N; i++) {
        ts[i] = (int64_t)i * 60 * CLOCK_NS_PER_S;
        v[i] = 10 + 0.5 * (double)i / 60; /* 0.5 per hour */
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        w[i] = sin(2 * M_PI * (double)i / 360) + /* a 6-hour cycle */
               0.3 * ((double)(x >> 11) / 9007199254740992.0 - 0.5);
    }
    api_analytics_slope(ts, v, N, &slope, &r2);
    assert(fabs(slope - 0.5) < 1e-9 && fabs(r2 - 1) < 1e-9);
    /* A straight line has no season; the noisy cycle has its period. */
    assert(api_analytics_period(ts, v, N, &acf) == 0);
    int64_t p = api_analytics_period(ts, w, N, &acf);
    assert(llabs(p - 6 * 3600 * CLOCK_NS_PER_S) <= 5 * 60 * CLOCK_NS_PER_S);
    assert(acf > 0.5);
    if (verbose)
        printf("   period %.1f min, acf %.3f\n",
               (double)p / 60e9, acf);
    /* Pure noise has none either. */
    for (size_t i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        w[i] = (double)(x >> 11) / 9007199254740992.0;
    }
    assert(api_analytics_period(ts, w, N, &acf) == 0);
    /* Pearson: exact for a line and its mirror, NAN when constant. */
    double a[] = {1, 2, 3, 4, 5}, b[] = {10, 8, 6, 4, 2}, c[] = {3, 3, 3, 3, 3};
    assert(fabs(api_analytics_pearson(a, a, 5) - 1) < 1e-12);
    assert(fabs(api_analytics_pearson(a, b, 5) + 1) < 1e-12);
    assert(isnan(api_analytics_pearson(a, c, 5)));
    assert(isnan(api_analytics_pearson(a, b, 2)));
    /* Pairing: equal timestamps, then bucket means. */
    int64_t ta[] = {0, 60, 120, 180}, tb[] = {60, 90, 180, 240};
    double va[] = {1, 2, 3, 4}, vb[] = {20, 25, 40, 50};
    struct s_pts pa = {.ts = ta, .v = va, .n = 4},
                 pb = {.ts = tb, .v = vb, .n = 4};
    double *px, *py;
    assert(s_pair(&pa, &pb, 0, &px, &py) == 2);
    assert(px[0] == 2 && py[0] == 20 && px[1] == 4 && py[1] == 40);
    free(px);
    free(py);
    assert(s_pair(&pa, &pb, 120, &px, &py) == 2);
    /* Buckets [0,120): a 1.5, b 22.5; [120,240): a 3.5, b 40. */
    assert(px[0] == 1.5 && py[0] == 22.5 && px[1] == 3.5 && py[1] == 40);
    free(px);
    free(py);
    free(ts);
    free(v);
    free(w);
    TEST_OK("api_analytics");
}
