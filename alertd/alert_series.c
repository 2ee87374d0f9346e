/*
 * alert_series: per-series window state (see alert_series.h).
 *
 * Points live in a growable array kept sorted by time, with a start index
 * so trimming the oldest points is O(1); the array is compacted when the
 * dead prefix passes half of it. Appending in time order is the common
 * case and O(1); a late point is placed by binary search. Window
 * functions scan the points of the window; percentiles sort a copy.
 */
#include "alertd/alert_series.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct s_point {
    int64_t ts; /* ns */
    double v;   /* value or score */
};

/* A sorted, trimmed run of points. */
struct s_run {
    struct s_point *p; /* storage */
    size_t start;      /* first live point */
    size_t end;        /* one past the last live point */
    size_t cap;        /* allocated points */
};

struct s_series {
    struct s_run readings;  /* recent readings */
    struct s_run anomalies; /* recent anomaly scores */
    struct s_run alarms;    /* recent anomaly events with the novelty
                               alarm (value 1): rare */
    bool truncated;         /* the cap dropped points inside the retention */
    struct msg_forecast *fc; /* latest forecast event, or NULL */
};

struct alert_series {
    zhashx_t *series;     /* key -> struct s_series */
    int64_t retain;       /* keep points newer than latest - retain */
    size_t max_points;    /* cap per run */
    size_t max_series;    /* cap on series */
    size_t points;        /* live points in all runs */
    uint64_t rejected;    /* points refused because the store was full */
    uint64_t truncated;   /* evaluations over a capped window */
    double *scratch;      /* percentile work area */
    size_t scratch_cap;   /* its size in doubles */
};

static void
s_series_free(void **item)
{
    struct s_series *s = *item;

    if (s) {
        free(s->readings.p);
        free(s->anomalies.p);
        free(s->alarms.p);
        free(s->fc);
        free(s);
        *item = NULL;
    }
}

alert_series_t *
alert_series_new(int64_t retain_ns, size_t max_points, size_t max_series)
{
    alert_series_t *self = xcalloc(1, sizeof *self);

    self->series = zhashx_new();
    zhashx_set_destructor(self->series, s_series_free);
    self->retain = retain_ns;
    self->max_points = max_points ? max_points : 1;
    self->max_series = max_series;
    return self;
}

void
alert_series_destroy(alert_series_t **self_p)
{
    alert_series_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zhashx_destroy(&self->series);
    free(self->scratch);
    free(self);
    *self_p = NULL;
}

void
alert_series_set_retain(alert_series_t *self, int64_t retain_ns)
{
    self->retain = retain_ns;
}

/* a - b for b >= 0, saturating at INT64_MIN. */
static int64_t
s_sat_sub(int64_t a, int64_t b)
{
    return a < INT64_MIN + b ? INT64_MIN : a - b;
}

static size_t
s_run_len(const struct s_run *r)
{
    return r->end - r->start;
}

/* Index of the first live point with ts >= t. */
static size_t
s_run_lower(const struct s_run *r, int64_t t)
{
    size_t lo = r->start, hi = r->end;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->p[mid].ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Insert or replace a point; trim by retention and cap. Returns the change
 * in live points. */
static long
s_run_add(alert_series_t *self, struct s_run *r, bool *truncated, int64_t ts,
          double v)
{
    size_t before = s_run_len(r);
    size_t at;

    if (r->end > r->start && r->p[r->end - 1].ts < ts) {
        at = r->end;
    } else {
        at = s_run_lower(r, ts);
        if (at < r->end && r->p[at].ts == ts) {
            r->p[at].v = v;
            return 0;
        }
    }
    if (r->end == r->cap) {
        if (r->start > 0) {
            /* Compact the dead prefix first. */
            memmove(r->p, r->p + r->start, s_run_len(r) * sizeof *r->p);
            at -= r->start;
            r->end -= r->start;
            r->start = 0;
        }
        if (r->end == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 4;
            r->p = xrealloc(r->p, r->cap * sizeof *r->p);
        }
    }
    memmove(r->p + at + 1, r->p + at, (r->end - at) * sizeof *r->p);
    r->p[at].ts = ts;
    r->p[at].v = v;
    r->end++;

    /* Retention: keep (latest - retain, latest], and always the latest. */
    int64_t latest = r->p[r->end - 1].ts;
    int64_t floor_ts = s_sat_sub(latest, self->retain);
    while (s_run_len(r) > 1 && r->p[r->start].ts <= floor_ts &&
           floor_ts != INT64_MIN)
        r->start++;
    if (s_run_len(r) > self->max_points) {
        r->start += s_run_len(r) - self->max_points;
        *truncated = true;
    }
    /* Give memory back when a burst has passed. */
    if (r->start > r->cap / 2) {
        memmove(r->p, r->p + r->start, s_run_len(r) * sizeof *r->p);
        r->end -= r->start;
        r->start = 0;
        if (r->cap > 64 && r->end < r->cap / 4) {
            r->cap /= 2;
            r->p = xrealloc(r->p, r->cap * sizeof *r->p);
        }
    }
    return (long)s_run_len(r) - (long)before;
}

/* Remove the point at ts, if there is one. Returns the change in live
 * points. */
static long
s_run_remove(struct s_run *r, int64_t ts)
{
    size_t at = s_run_lower(r, ts);

    if (at == r->end || r->p[at].ts != ts)
        return 0;
    memmove(r->p + at, r->p + at + 1, (r->end - at - 1) * sizeof *r->p);
    r->end--;
    return -1;
}

static struct s_series *
s_get(alert_series_t *self, const char *key, bool create)
{
    struct s_series *s = zhashx_lookup(self->series, key);

    if (s || !create)
        return s;
    if (zhashx_size(self->series) >= self->max_series) {
        self->rejected++;
        return NULL;
    }
    s = xcalloc(1, sizeof *s);
    zhashx_insert(self->series, key, s);
    return s;
}

int
alert_series_add(alert_series_t *self, const char *key, int64_t ts,
                 double value)
{
    struct s_series *s = s_get(self, key, true);

    if (s == NULL)
        return -1;
    self->points += s_run_add(self, &s->readings, &s->truncated, ts, value);
    return 0;
}

int
alert_series_add_anomaly(alert_series_t *self, const char *key, int64_t ts,
                         double score, bool alarm)
{
    struct s_series *s = s_get(self, key, true);
    bool ignored = false;

    if (s == NULL)
        return -1;
    self->points += s_run_add(self, &s->anomalies, &ignored, ts, score);
    /* The event replaces an earlier one of the same reading, its alarm
     * too: a replay without the alarm takes it back. */
    if (alarm)
        self->points += s_run_add(self, &s->alarms, &ignored, ts, 1);
    else
        self->points += s_run_remove(&s->alarms, ts);
    return 0;
}

int
alert_series_set_forecast(alert_series_t *self, const char *key,
                          const struct msg_forecast *f)
{
    struct s_series *s = s_get(self, key, true);

    if (s == NULL)
        return -1;
    if (s->fc == NULL)
        s->fc = xmalloc(sizeof *s->fc);
    else if (s->fc->ts > f->ts)
        return 0;
    *s->fc = *f;
    return 0;
}

/* Seconds from now until forecast f's expected value (linear between its
 * points) reaches threshold, searching forward from now (from its first
 * point when it starts after now): 0 when it is on it now, INFINITY when
 * it does not get there within the horizon, NAN when the horizon has
 * passed. */
static double
s_forecast_to(const struct msg_forecast *f, int64_t now, double threshold)
{
    double step_s = (double)f->step / CLOCK_NS_PER_S, lead = 0, pos = 0;

    if (now < f->ts)
        lead = (double)(f->ts - now) / CLOCK_NS_PER_S;
    else
        pos = (double)(now - f->ts) / (double)f->step;
    if (pos > (double)(f->n - 1))
        return NAN;
    size_t k = (size_t)pos < f->n - 1 ? (size_t)pos : f->n - 2;
    double a = f->value[k] + (pos - (double)k) * (f->value[k + 1] - f->value[k]);
    if (a == threshold)
        return lead;
    bool up = threshold > a;
    for (double from = pos; k + 1 < f->n; k++) {
        double b = f->value[k + 1];
        if (up ? b >= threshold : b <= threshold) {
            double at = from + (threshold - a) / (b - a) * ((double)(k + 1) - from);
            return lead + (at - pos) * step_s;
        }
        a = b;
        from = (double)(k + 1);
    }
    return INFINITY;
}

void
alert_series_remove(alert_series_t *self, const char *key)
{
    struct s_series *s = zhashx_lookup(self->series, key);

    if (s) {
        self->points -= s_run_len(&s->readings) + s_run_len(&s->anomalies) +
                        s_run_len(&s->alarms);
        zhashx_delete(self->series, key);
    }
}

int64_t
alert_series_last_ts(const alert_series_t *self, const char *key)
{
    struct s_series *s = zhashx_lookup(self->series, key);

    if (s == NULL || s_run_len(&s->readings) == 0)
        return INT64_MIN;
    return s->readings.p[s->readings.end - 1].ts;
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Linear interpolation between closest ranks (numpy's default). */
static double
s_quantile(alert_series_t *self, const struct s_point *p, size_t n, double q)
{
    if (n > self->scratch_cap) {
        self->scratch_cap = n;
        self->scratch = xrealloc(self->scratch, n * sizeof *self->scratch);
    }
    for (size_t i = 0; i < n; i++)
        self->scratch[i] = p[i].v;
    qsort(self->scratch, n, sizeof *self->scratch, s_cmp_double);
    double h = q * (double)(n - 1);
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n)
        return self->scratch[n - 1];
    return self->scratch[lo] + (h - (double)lo) *
                                   (self->scratch[lo + 1] - self->scratch[lo]);
}

/* Seconds from now until the least-squares line through the points
 * reaches threshold: the line's value at now is its intercept (times are
 * seconds relative to now). The sums are taken about the means (two
 * passes): the one-pass form n*stt - st*st cancels, and a line through
 * two points missed the latest of them, so a reading exactly at the
 * threshold gave infinity instead of 0. NAN below two distinct times;
 * INFINITY when the line is flat or moves away from the threshold; 0 when
 * it is on it. */
static double
s_time_to(const struct s_point *p, size_t n, int64_t now, double threshold)
{
    double mt = 0, mv = 0, stt = 0, stv = 0;

    if (n < 2 || p[0].ts == p[n - 1].ts)
        return NAN;
    for (size_t i = 0; i < n; i++) {
        mt += (double)(p[i].ts - now) / CLOCK_NS_PER_S;
        mv += p[i].v;
    }
    mt /= (double)n;
    mv /= (double)n;
    for (size_t i = 0; i < n; i++) {
        double dt = (double)(p[i].ts - now) / CLOCK_NS_PER_S - mt;
        stt += dt * dt;
        stv += dt * (p[i].v - mv);
    }
    double slope = stv / stt;
    double level = mv - slope * mt;
    double gap = threshold - level;
    if (gap == 0)
        return 0;
    if (slope == 0 || (gap > 0) != (slope > 0))
        return INFINITY;
    return gap / slope;
}

double
alert_series_value(void *arg, const char *key, enum alert_fn fn,
                   int64_t window, double q, int64_t now)
{
    alert_series_t *self = arg;
    struct s_series *s = zhashx_lookup(self->series, key);
    const struct s_run *r;
    size_t a, b, n;

    if (s == NULL)
        return NAN;
    if (fn == ALERT_FN_FORECAST_TO)
        return s->fc ? s_forecast_to(s->fc, now, q) : NAN;
    r = fn == ALERT_FN_ANOMALY || fn == ALERT_FN_ALARM ? &s->anomalies
                                                      : &s->readings;
    /* The window (now - window, now]; points after now are not seen. */
    b = s_run_lower(r, now == INT64_MAX ? now : now + 1);
    if (now == INT64_MAX)
        b = r->end;
    if (fn == ALERT_FN_AGE) {
        size_t rb = s_run_lower(&s->readings, now == INT64_MAX ? now : now + 1);
        if (now == INT64_MAX)
            rb = s->readings.end;
        if (rb == s->readings.start)
            return NAN;
        return (double)(now - s->readings.p[rb - 1].ts) / CLOCK_NS_PER_S;
    }
    if (fn == ALERT_FN_ANOMALY || fn == ALERT_FN_ALARM) {
        /* Anomaly events come only for anomalous readings: with readings
         * and no event the score is 0. Latest: the event of the latest
         * reading at or before now. alarm(): 1 when that event (with a
         * window: any event of the window) had the novelty alarm. */
        size_t rb = s_run_lower(&s->readings, now == INT64_MAX ? now : now + 1);
        if (now == INT64_MAX)
            rb = s->readings.end;
        bool have = rb > s->readings.start;
        const struct s_run *al = &s->alarms;
        /* An event counts while its reading does: events older than the
         * oldest reading kept are gone with it (the two runs are trimmed
         * each from its own latest point, and a late reading may leave
         * older events than readings). With no reading at all, every
         * event kept counts. */
        int64_t oldest = s->readings.end > s->readings.start
                             ? s->readings.p[s->readings.start].ts : INT64_MIN;
        size_t lo = s_run_lower(r, oldest);
        if (b < lo)
            b = lo;
        if (window == 0) {
            if (!have && b == lo)
                return NAN;
            if (have && (b == lo ||
                         r->p[b - 1].ts < s->readings.p[rb - 1].ts))
                return 0;
            if (fn == ALERT_FN_ANOMALY)
                return r->p[b - 1].v;
            size_t k = s_run_lower(al, r->p[b - 1].ts);
            return k < al->end && al->p[k].ts == r->p[b - 1].ts ? 1 : 0;
        }
        int64_t from = s_sat_sub(now, window - 1);
        if (from < oldest)
            from = oldest;
        a = s_run_lower(r, from);
        double m = have || b > a ? 0 : NAN;
        if (fn == ALERT_FN_ALARM) {
            size_t k = s_run_lower(al, from);
            return k < al->end && al->p[k].ts <= now ? 1 : m;
        }
        for (size_t i = a; i < b; i++)
            if (r->p[i].v > m)
                m = r->p[i].v;
        return m;
    }
    if (b == r->start)
        return NAN;
    if (fn == ALERT_FN_LAST || window == 0)
        return r->p[b - 1].v;
    a = s_run_lower(r, s_sat_sub(now, window - 1));
    if (a == r->start && s->truncated && a < b)
        self->truncated++;
    n = b - a;
    if (n == 0)
        return fn == ALERT_FN_COUNT || fn == ALERT_FN_SUM ? 0 : NAN;
    const struct s_point *p = r->p + a;
    double sum = 0, mean, m2 = 0, lo = p[0].v, hi = p[0].v;
    switch (fn) {
    case ALERT_FN_COUNT:
        return (double)n;
    case ALERT_FN_QUANTILE:
        return s_quantile(self, p, n, q);
    case ALERT_FN_DELTA:
        return n < 2 ? NAN : p[n - 1].v - p[0].v;
    case ALERT_FN_RATE:
        if (n < 2 || p[n - 1].ts == p[0].ts)
            return NAN;
        return (p[n - 1].v - p[0].v) /
               ((double)(p[n - 1].ts - p[0].ts) / CLOCK_NS_PER_S);
    case ALERT_FN_TIME_TO:
        return s_time_to(p, n, now, q);
    default:
        break;
    }
    for (size_t i = 0; i < n; i++) {
        sum += p[i].v;
        if (p[i].v < lo)
            lo = p[i].v;
        if (p[i].v > hi)
            hi = p[i].v;
    }
    mean = sum / (double)n;
    switch (fn) {
    case ALERT_FN_AVG: return mean;
    case ALERT_FN_SUM: return sum;
    case ALERT_FN_MIN: return lo;
    case ALERT_FN_MAX: return hi;
    case ALERT_FN_STD:
        if (n < 2)
            return NAN;
        for (size_t i = 0; i < n; i++)
            m2 += (p[i].v - mean) * (p[i].v - mean);
        return sqrt(m2 / (double)(n - 1));
    default:
        return NAN;
    }
}

zlistx_t *
alert_series_keys(alert_series_t *self)
{
    return zhashx_keys(self->series);
}

size_t
alert_series_count(const alert_series_t *self)
{
    return zhashx_size(self->series);
}

size_t
alert_series_points(const alert_series_t *self)
{
    return self->points;
}

uint64_t
alert_series_rejected(const alert_series_t *self)
{
    return self->rejected;
}

uint64_t
alert_series_truncated(const alert_series_t *self)
{
    return self->truncated;
}

void
alert_series_test(bool verbose)
{
    const int64_t S = CLOCK_NS_PER_S;
    alert_series_t *st = alert_series_new(60 * S, 1000, 2);

    /* Unknown series: everything unknown. */
    assert(isnan(alert_series_value(st, "t", ALERT_FN_LAST, 0, 0, 0)));
    assert(alert_series_last_ts(st, "t") == INT64_MIN);
    /* 1..10 at one second apart, then a late point and a replay. */
    for (int i = 1; i <= 10; i++)
        assert(alert_series_add(st, "t", i * S, i) == 0);
    assert(alert_series_add(st, "t", 5 * S, 5) == 0); /* replay: same */
    assert(alert_series_points(st) == 10);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_LAST, 0, 0, 10 * S), 10, 0);
    /* The window (now - 5s, now] holds 6..10. */
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_AVG, 5 * S, 0, 10 * S), 8,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_COUNT, 5 * S, 0, 10 * S),
              5, 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_MIN, 5 * S, 0, 10 * S), 6,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_MAX, 5 * S, 0, 10 * S), 10,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_SUM, 5 * S, 0, 10 * S), 40,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_STD, 5 * S, 0, 10 * S),
              sqrt(2.5), 1e-12);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_DELTA, 5 * S, 0, 10 * S),
              4, 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_RATE, 5 * S, 0, 10 * S), 1,
              1e-12);
    /* numpy.percentile([6,7,8,9,10], 95) == 9.8 */
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_QUANTILE, 5 * S, 0.95,
                                 10 * S), 9.8, 1e-12);
    /* Evaluating in the past sees only what was there then. */
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_LAST, 0, 0, 3 * S), 3, 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_AVG, 2 * S, 0, 3 * S), 2.5,
              0);
    /* A late point lands in order; std of one point is unknown. */
    assert(alert_series_add(st, "t", 5 * S + S / 2, 100) == 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_MAX, 5 * S, 0, 10 * S),
              100, 0);
    assert(isnan(alert_series_value(st, "t", ALERT_FN_STD, S, 0, 10 * S)));
    assert(isnan(alert_series_value(st, "t", ALERT_FN_RATE, S, 0, 10 * S)));
    /* Retention: a point 100 s later trims everything older than 60 s. */
    assert(alert_series_add(st, "t", 110 * S, 1) == 0);
    assert(alert_series_points(st) == 1);
    assert(alert_series_last_ts(st, "t") == 110 * S);

    /* Anomalies: 0 while readings have no event, the score when the
     * latest reading has one, max over a window. */
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_ANOMALY, 0, 0, 110 * S), 0,
              0);
    assert(alert_series_add_anomaly(st, "t", 110 * S, 0.97, false) == 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_ANOMALY, 0, 0, 110 * S),
              0.97, 0);
    assert(alert_series_add(st, "t", 111 * S, 2) == 0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_ANOMALY, 0, 0, 111 * S), 0,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_ANOMALY, 5 * S, 0,
                                 111 * S), 0.97, 0);

    /* Age: seconds from the latest reading at or before now. */
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_AGE, 0, 0, 171 * S), 60,
              0);
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_AGE, 0, 0, 110 * S), 0, 0);

    /* An event goes with its reading: a reading 90 s later trims the
     * readings at 110 and 111 s, and the event at 110 s, still in the
     * event run (trimmed from its own latest point), no longer counts
     * for a late evaluation at 111 s: unknown, as the reading. */
    assert(alert_series_add(st, "t", 200 * S, 3) == 0);
    assert(isnan(alert_series_value(st, "t", ALERT_FN_ANOMALY, 0, 0, 111 * S)));
    assert(isnan(alert_series_value(st, "t", ALERT_FN_ANOMALY, 5 * S, 0,
                                    111 * S)));
    assert(isnan(alert_series_value(st, "t", ALERT_FN_ALARM, 5 * S, 0,
                                    111 * S)));
    TEST_NEAR(alert_series_value(st, "t", ALERT_FN_ANOMALY, 0, 0, 200 * S), 0,
              0);

    /* The series cap refuses new series and counts them. */
    assert(alert_series_add(st, "u", S, 1) == 0);
    assert(alert_series_add(st, "v", S, 1) == -1);
    assert(alert_series_rejected(st) == 1);
    assert(alert_series_count(st) == 2);
    size_t seen = 0;
    zlistx_t *keys = alert_series_keys(st);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys))
        seen += !strcmp(k, "t") || !strcmp(k, "u");
    assert(seen == 2);
    zlistx_destroy(&keys);
    alert_series_remove(st, "u");
    assert(alert_series_count(st) == 1);
    alert_series_destroy(&st);
    alert_series_destroy(&st);

    /* The point cap bounds memory and counts truncated windows. */
    st = alert_series_new(3600 * S, 100, 10);
    for (int i = 0; i < 100000; i++)
        alert_series_add(st, "fast", (int64_t)i * CLOCK_NS_PER_MS, i);
    assert(alert_series_points(st) == 100);
    TEST_NEAR(alert_series_value(st, "fast", ALERT_FN_COUNT, 3600 * S, 0,
                                 100 * S), 100, 0);
    assert(alert_series_truncated(st) == 1);
    TEST_NEAR(alert_series_value(st, "fast", ALERT_FN_MIN, 3600 * S, 0,
                                 100 * S), 99900, 0);
    alert_series_destroy(&st);
    (void)verbose;
    /* alarm(): unknown without data; 1 when the latest reading's event
     * had the novelty alarm (whatever its score), 0 when it had none or
     * the reading no event; with a window, 1 when any event in it had
     * it. Removal gives its points back. */
    st = alert_series_new(3600 * S, 100, 10);
    assert(isnan(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 10 * S)));
    assert(alert_series_add_anomaly(st, "x", 10 * S, 0.3, true) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 10 * S) == 1);
    assert(isnan(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 9 * S)));
    assert(alert_series_add(st, "x", 10 * S, 50) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 10 * S) == 1);
    TEST_NEAR(alert_series_value(st, "x", ALERT_FN_ANOMALY, 0, 0, 10 * S), 0.3,
              0);
    assert(alert_series_add(st, "x", 11 * S, 51) == 0);
    assert(alert_series_add_anomaly(st, "x", 11 * S, 0.9, false) == 0);
    assert(alert_series_add(st, "x", 12 * S, 20) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 11 * S) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 12 * S) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 5 * S, 0, 12 * S) == 1);
    assert(isnan(alert_series_value(st, "x", ALERT_FN_ALARM, 5 * S, 0, 9 * S)));
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 2 * S, 0, 12 * S) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 3 * S, 0, 12 * S) == 1);
    assert(alert_series_points(st) == 6);
    /* A later event of the same reading replaces the earlier one, alarm
     * included (the alarm stayed). */
    assert(alert_series_add_anomaly(st, "x", 10 * S, 0.4, false) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 0, 0, 10 * S) == 0);
    assert(alert_series_value(st, "x", ALERT_FN_ALARM, 5 * S, 0, 12 * S) == 0);
    TEST_NEAR(alert_series_value(st, "x", ALERT_FN_ANOMALY, 0, 0, 10 * S), 0.4,
              0);
    assert(alert_series_points(st) == 5);
    alert_series_remove(st, "x");
    assert(alert_series_points(st) == 0);
    alert_series_destroy(&st);
    /* time_to: a line rising 1 per minute from 60 reaches 90 in 30 min;
     * a falling one never does; on a flat series it is infinite. */
    alert_series_t *tt = alert_series_new(3600 * S, 1000, 10);
    for (int m = 0; m <= 30; m++) {
        alert_series_add(tt, "up", m * 60 * S, 30 + m);
        alert_series_add(tt, "down", m * 60 * S, 60 - m);
        alert_series_add(tt, "flat", m * 60 * S, 50);
    }
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_TIME_TO, 3600 * S, 90,
                                 30 * 60 * S), 1800, 1e-6);
    TEST_NEAR(alert_series_value(tt, "down", ALERT_FN_TIME_TO, 3600 * S, 0,
                                 30 * 60 * S), 1800, 1e-6);
    assert(isinf(alert_series_value(tt, "down", ALERT_FN_TIME_TO, 3600 * S,
                                    90, 30 * 60 * S)));
    assert(isinf(alert_series_value(tt, "flat", ALERT_FN_TIME_TO, 3600 * S,
                                    90, 30 * 60 * S)));
    assert(alert_series_value(tt, "flat", ALERT_FN_TIME_TO, 3600 * S, 50,
                              30 * 60 * S) == 0);
    assert(isnan(alert_series_value(tt, "up", ALERT_FN_TIME_TO, 3600 * S, 90,
                                    0)));
    /* Falling from 17 to 8 in 28.345 s: the line is at 8 now, so 8 is 0
     * s away (it was infinity: the line missed the point by a rounding). */
    alert_series_add(tt, "two", 7632155 * (S / 1000), 17);
    alert_series_add(tt, "two", 7660500 * (S / 1000), 8);
    assert(alert_series_value(tt, "two", ALERT_FN_TIME_TO, 30 * S, 8,
                              7660500 * (S / 1000)) == 0);

    /* time_to(x, T, forecast): a forecast made at 30 min, hourly points
     * 60, 70, 90, 80, 60: 80 is reached 1.5 h after it (from 30 min on,
     * 1 h later), 90 at 2 h, on the way down 70 at 3.5 h (1 h after a
     * look at 2.5 h, when it is at 85 and falling); 100 never
     * (infinite); after the 4 h horizon it is unknown, as without one. */
    struct msg_forecast fc = {.ts = 30 * 60 * S, .step = 3600 * S, .n = 5,
                              .value = {60, 70, 90, 80, 60}};
    assert(isnan(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 80,
                                    30 * 60 * S)));
    assert(alert_series_set_forecast(tt, "up", &fc) == 0);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 80,
                                 30 * 60 * S), 1.5 * 3600, 1e-6);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 80,
                                 90 * 60 * S), 0.5 * 3600, 1e-6);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 90,
                                 30 * 60 * S), 2 * 3600, 1e-6);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 70,
                                 (30 + 150) * 60 * S), 3600, 1e-6);
    assert(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 60,
                              30 * 60 * S) == 0);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 60,
                                 0), 1800, 1e-6); /* starts in 30 min */
    assert(isinf(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 100,
                                    30 * 60 * S)));
    assert(isnan(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 80,
                                    (30 + 241) * 60 * S)));
    /* An older forecast does not replace a newer one. */
    struct msg_forecast old = fc;
    old.ts = 0;
    old.value[2] = 200;
    assert(alert_series_set_forecast(tt, "up", &old) == 0);
    TEST_NEAR(alert_series_value(tt, "up", ALERT_FN_FORECAST_TO, 0, 90,
                                 30 * 60 * S), 2 * 3600, 1e-6);
    alert_series_destroy(&tt);
    TEST_OK("alert_series");
}
