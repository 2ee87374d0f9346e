/*
 * anomaly_store: series detectors and recent anomalies (see
 * anomaly_store.h).
 *
 * A series' ring of kept readings grows on demand up to `keep`, so quiet
 * series cost only their detector.
 */
#include "anomalyd/anomaly_store.h"
#include "anomalyd/anomaly_forecast.h"

#include "common/clock.h"
#include "common/mpjson.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* One remembered reading (40 bytes: the method by number, so the alarm
 * fits in what was padding). */
struct s_kept {
    int64_t ts;         /* reading time, ns */
    double value;       /* the reading */
    double z;           /* rolling z (NAN while learning) */
    double score;       /* normalised score */
    uint8_t method;     /* index into the store's methods[] */
    bool alarm;         /* the novelty alarm */
};

_Static_assert(sizeof(struct s_kept) == 40, "kept readings stay 40 bytes");

/* Distinct detector names a store has kept readings of (zscore and the
 * ensemble's members: far fewer). */
#define S_METHODS 32

/* Most addresses a series' prefetch covers (the default ensemble needs
 * 21, ensemble-all 24, since the shape ring). */
#define S_PARTS 28

/* One series. */
struct anomaly_series {
    anomaly_t *det;         /* its detector */
    anomaly_forecast_t *fc; /* its forecaster */
    struct s_kept *ring;    /* kept readings, oldest at head once full */
    size_t cap;             /* allocated slots */
    size_t n;               /* slots used */
    size_t head;            /* next slot to overwrite once n == keep */
    int64_t forecast_sent;  /* last reading of the last forecast event */
    unsigned nparts;        /* addresses in parts */
    /* What every reading touches, for anomaly_store_prefetch. */
    const void *parts[S_PARTS];
    char key[]; /* canonical key, next to the rest (one miss) */
};

/* A slot of the series table: the key's hash next to the series, so a
 * lookup touches the slot and then only the series it wants. */
struct s_slot {
    uint64_t hash;            /* strutil_fnv1a64 of the key */
    struct anomaly_series *s; /* NULL: empty */
};

struct anomaly_store {
    struct anomaly_conf conf; /* detector configuration */
    size_t keep;              /* ring capacity per series */
    const char *methods[S_METHODS]; /* static names s_kept.method indexes */
    unsigned nmethods;        /* used in methods */
    struct s_slot *slots;     /* open addressing, linear probing; series
                                 are never removed */
    size_t nslots;            /* power of two, at least twice nseries */
    size_t nseries;           /* series in the table */
    size_t kept;              /* readings remembered in total */
    struct anomaly_series *last;    /* series of the last anomaly_store_score */
    uintptr_t heap_advised;   /* heap (brk) below this is advised */
};

#define S_SLOTS_MIN 64

static void
s_series_free(struct anomaly_series **s_p)
{
    struct anomaly_series *s = *s_p;
    if (!s)
        return;
    anomaly_destroy(&s->det);
    anomaly_forecast_destroy(&s->fc);
    free(s->ring);
    free(s);
    *s_p = NULL;
}

/* The slot holding key, or the empty slot where it belongs. */
static struct s_slot *
s_slot(const anomaly_store_t *self, const char *key, uint64_t h)
{
    size_t mask = self->nslots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct s_slot *sl = &self->slots[i];
        if (!sl->s || (sl->hash == h && !strcmp(sl->s->key, key)))
            return sl;
    }
}

static struct anomaly_series *
s_lookup(const anomaly_store_t *self, const char *key)
{
    return s_slot(self, key, strutil_fnv1a64(key, strlen(key)))->s;
}

/* Double the table (load factor stays at most 1/2). Cannot fail. */
static void
s_grow(anomaly_store_t *self)
{
    struct s_slot *old = self->slots;
    size_t n = self->nslots;
    self->nslots = n ? 2 * n : S_SLOTS_MIN;
    self->slots = xcalloc(self->nslots, sizeof *self->slots);
    for (size_t i = 0; i < n; i++)
        if (old[i].s) {
            size_t mask = self->nslots - 1, j = old[i].hash & mask;
            while (self->slots[j].s)
                j = (j + 1) & mask;
            self->slots[j] = old[i];
        }
    free(old);
}

anomaly_store_t *
anomaly_store_new(const struct anomaly_conf *conf, size_t keep)
{
    if (!anomaly_method_valid(conf->method))
        return NULL;
    anomaly_store_t *self = xcalloc(1, sizeof *self);
    self->conf = *conf;
    self->keep = keep < 1                        ? 1
                 : keep > ANOMALY_STORE_KEEP_MAX ? ANOMALY_STORE_KEEP_MAX
                                                 : keep;
    s_grow(self);
    self->heap_advised = (uintptr_t)sbrk(0);
    return self;
}

void
anomaly_store_destroy(anomaly_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    anomaly_store_t *self = *self_p;
    for (size_t i = 0; i < self->nslots; i++)
        s_series_free(&self->slots[i].s);
    free(self->slots);
    free(self);
    *self_p = NULL;
}

/* The number of static detector name m in self->methods, added when
 * new. */
static uint8_t
s_method(anomaly_store_t *self, const char *m)
{
    unsigned i = 0;
    while (i < self->nmethods && self->methods[i] != m)
        i++;
    if (i < self->nmethods)
        return (uint8_t)i;
    /* Another copy of a known name (string literals may not be merged). */
    for (i = 0; i < self->nmethods && strcmp(self->methods[i], m); i++)
        ;
    if (i == self->nmethods) {
        assert(i < S_METHODS);
        self->methods[self->nmethods++] = m;
    }
    return (uint8_t)i;
}

static void
s_keep(anomaly_store_t *self, struct anomaly_series *s, int64_t ts,
       double value, const struct anomaly_result *r)
{
    struct s_kept k = {ts, value, r->z, r->score, s_method(self, r->method),
                       r->alarm};
    if (s->n < self->keep) {
        if (s->n == s->cap) {
            s->cap = s->cap ? s->cap * 2 : 8;
            if (s->cap > self->keep)
                s->cap = self->keep;
            s->ring = xrealloc(s->ring, s->cap * sizeof *s->ring);
        }
        s->ring[s->n++] = k;
        self->kept++;
        return;
    }
    s->ring[s->head] = k;
    s->head = (s->head + 1) % self->keep;
}

/* Transparent huge pages for the heap the series live in. Every series
 * is about 12 KB touched on every reading, 120 MB for 10,000 series, so
 * with 4 KB pages the first touch of each page (a fault) and the TLB
 * misses after it are a third of the time of a fresh store (perf,
 * docs/ANOMALY.md "Throughput"). This kernel gives huge pages only to
 * memory advised so (THP "madvise" mode): glibc does it when
 * GLIBC_TUNABLES=glibc.malloc.hugetlb=1 is set at start, which a
 * process cannot do for itself; so the store advises each stretch of
 * heap the series grew into (glibc's main heap grows contiguously with
 * brk; anomalyd_new makes it grow 32 MB at a time, so the 2 MB pages
 * fit before they are touched). Best effort: an error changes nothing
 * but speed. */
static void
s_heap_advise(anomaly_store_t *self)
{
#ifdef MADV_HUGEPAGE
    uintptr_t top = (uintptr_t)sbrk(0), huge = (uintptr_t)2 << 20;
    uintptr_t from = (self->heap_advised + huge - 1) & ~(huge - 1);
    if (top == (uintptr_t)-1 || top < from + huge)
        return;
    top &= ~(huge - 1);
    (void)madvise((void *)from, top - from, MADV_HUGEPAGE);
    self->heap_advised = top;
#else
    (void)self;
#endif
}

void
anomaly_store_score(anomaly_store_t *self, const char *key, int64_t ts,
                    double value, struct anomaly_result *out)
{
    size_t klen = strlen(key);
    uint64_t h = strutil_fnv1a64(key, klen);
    struct s_slot *sl = s_slot(self, key, h);
    struct anomaly_series *s = sl->s;
    if (!s) {
        s = xcalloc(1, sizeof *s + klen + 1);
        memcpy(s->key, key, klen + 1);
        s->det = anomaly_new(&self->conf);
        s->fc = anomaly_forecast_new();
        s->forecast_sent = INT64_MIN;
        s->nparts = (unsigned)anomaly_parts(s->det, s->parts, S_PARTS - 1);
        s->parts[s->nparts++] = s->fc;
        sl->hash = h;
        sl->s = s;
        if (++self->nseries * 2 > self->nslots)
            s_grow(self);
        s_heap_advise(self);
    }
    self->last = s;
    anomaly_update(s->det, ts, value, out);
    anomaly_forecast_update(s->fc, ts, value);
    if ((isfinite(out->z) && fabs(out->z) >= ANOMALY_STORE_FLOOR_Z) ||
        out->score >= ANOMALY_STORE_FLOOR_SCORE || out->alarm)
        s_keep(self, s, ts, value, out);
}

uint64_t
anomaly_store_hash(const anomaly_store_t *self, const char *key)
{
    uint64_t h = strutil_fnv1a64(key, strlen(key));
    __builtin_prefetch(&self->slots[h & (self->nslots - 1)]);
    return h;
}

const anomaly_series_t *
anomaly_store_find(const anomaly_store_t *self, uint64_t h)
{
    size_t mask = self->nslots - 1;
    /* By hash alone (the key is in the series, not loaded yet): a wrong
     * guess costs only the prefetch. */
    for (size_t i = h & mask; self->slots[i].s; i = (i + 1) & mask)
        if (self->slots[i].hash == h)
            return self->slots[i].s;
    return NULL;
}

void
anomaly_store_prefetch(const anomaly_series_t *s, int64_t ts, int stage)
{
    if (!s)
        return;
    if (stage == 0) {
        const char *p = (const char *)s;
        for (size_t off = 0; off <= sizeof *s; off += 64) /* and the key */
            __builtin_prefetch(p + off, 1);
    } else if (stage == 1) {
        for (unsigned i = 0; i < s->nparts; i++)
            __builtin_prefetch(s->parts[i], 1);
    } else {
        anomaly_prefetch(s->det, ts);
        anomaly_forecast_prefetch(s->fc, ts);
    }
}

size_t
anomaly_store_forecast_due(anomaly_store_t *self, int64_t every,
                           int64_t horizon, size_t n, int64_t *ts,
                           double *value, double *lower, double *upper)
{
    struct anomaly_series *s = self->last;
    assert(every > 0 && horizon > 0 && n >= 2);
    if (!s || !anomaly_forecast_ready(s->fc))
        return 0;
    int64_t last = anomaly_forecast_last(s->fc);
    if (s->forecast_sent != INT64_MIN && last - s->forecast_sent < every)
        return 0;
    s->forecast_sent = last;
    for (size_t i = 0; i < n; i++) {
        struct anomaly_forecast_point p;
        ts[i] = last + (int64_t)((double)horizon * (double)i / (double)(n - 1));
        anomaly_forecast_at(s->fc, ts[i], &p);
        value[i] = p.value;
        lower[i] = p.lower;
        upper[i] = p.upper;
    }
    return n;
}

void
anomaly_store_set_threshold(anomaly_store_t *self, double threshold)
{
    self->conf.threshold = threshold;
}

size_t
anomaly_store_series(const anomaly_store_t *self)
{
    return self->nseries;
}

size_t
anomaly_store_kept(const anomaly_store_t *self)
{
    return self->kept;
}

/* A matching reading, for sorting across series. */
struct s_hit {
    const struct anomaly_series *s;
    const struct s_kept *k;
};

static int
s_hit_cmp(const void *a, const void *b)
{
    const struct s_hit *x = a, *y = b;
    if (x->k->ts != y->k->ts)
        return x->k->ts < y->k->ts ? -1 : 1;
    return strcmp(x->s->key, y->s->key);
}

static json_t *
s_num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static int
s_bad(json_t **body, const char *msg, const char *where)
{
    *body = rpc_error("bad_request", msg, where);
    return 400;
}

/* The tag filters of a query ("tags": {k: v}; an empty v means the tag
 * is absent, as apid scopes the default tenant) into f. 0 or -1. */
static int
s_filters(const json_t *tags, struct series_tag *f, size_t *nf)
{
    const char *k;
    json_t *v;

    *nf = 0;
    if (tags && !json_is_object(tags))
        return -1;
    json_object_foreach((json_t *)tags, k, v) {
        if (!json_is_string(v) || *nf == SERIES_TAGS_MAX)
            return -1;
        f[*nf].key = k;
        f[*nf].value = json_string_value(v);
        (*nf)++;
    }
    return 0;
}

int
anomaly_store_query(anomaly_store_t *self, const json_t *req, json_t **body)
{
    const json_t *v, *tags = json_object_get(req, "tags");
    const char *sel = json_string_value(json_object_get(req, "series"));
    const char *method = NULL;
    struct series_tag f[SERIES_TAGS_MAX];
    size_t nf = 0, limit = ANOMALY_STORE_LIMIT_MAX;
    int64_t start = INT64_MIN, end = INT64_MAX;
    double thr = NAN, min_score = NAN;
    bool alarm = false;

    if (!sel || !*sel)
        return s_bad(body, "series is required", "series");
    if ((v = json_object_get(req, "threshold")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0)
            return s_bad(body, "threshold must be a number >= 0", "threshold");
        thr = json_number_value(v);
    }
    if ((v = json_object_get(req, "min_score")) && !json_is_null(v)) {
        if (!json_is_number(v) || json_number_value(v) < 0 ||
            json_number_value(v) > 1)
            return s_bad(body, "min_score must be a number in [0,1]",
                         "min_score");
        min_score = json_number_value(v);
    }
    if ((v = json_object_get(req, "alarm")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return s_bad(body, "alarm must be true or false", "alarm");
        alarm = json_is_true(v);
    }
    /* None given: the configured z threshold (the seed's default). */
    if (isnan(thr) && isnan(min_score) && !alarm)
        thr = self->conf.threshold;
    if ((v = json_object_get(req, "start")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return s_bad(body, "start must be an integer (ns)", "start");
        start = json_integer_value(v);
    }
    if ((v = json_object_get(req, "end")) && !json_is_null(v)) {
        if (!json_is_integer(v))
            return s_bad(body, "end must be an integer (ns)", "end");
        end = json_integer_value(v);
    }
    if (start >= end)
        return s_bad(body, "start must be before end", "start");
    if ((v = json_object_get(req, "method")) && !json_is_null(v)) {
        if (!json_is_string(v))
            return s_bad(body, "method must be a string", "method");
        method = json_string_value(v);
    }
    if ((v = json_object_get(req, "limit")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1)
            return s_bad(body, "limit must be a positive integer", "limit");
        if (json_integer_value(v) < (json_int_t)limit)
            limit = (size_t)json_integer_value(v);
    }
    if (s_filters(tags, f, &nf) == -1)
        return s_bad(body, "tags must be an object of strings (at most 32)",
                     "tags");

    size_t matched = 0, nh = 0, caph = 0;
    struct s_hit *hits = NULL;
    for (size_t si = 0; si < self->nslots; si++) {
        const struct anomaly_series *s = self->slots[si].s;
        if (!s || !series_match(s->key, sel, f, nf))
            continue;
        matched++;
        for (size_t i = 0; i < s->n; i++) {
            const struct s_kept *kp = &s->ring[i];
            if (kp->ts < start || kp->ts >= end)
                continue;
            if (!isnan(thr) && !(isfinite(kp->z) && fabs(kp->z) >= thr))
                continue;
            if (!isnan(min_score) && kp->score < min_score)
                continue;
            if (alarm && !kp->alarm)
                continue;
            if (method && strcmp(method, self->methods[kp->method]) != 0)
                continue;
            if (nh == caph) {
                caph = caph ? caph * 2 : 64;
                hits = xrealloc(hits, caph * sizeof *hits);
            }
            hits[nh].s = s;
            hits[nh].k = kp;
            nh++;
        }
    }
    if (matched == 0) {
        free(hits);
        *body = rpc_error("not_found", "no such series", sel);
        return 404;
    }
    if (nh > 1)
        qsort(hits, nh, sizeof *hits, s_hit_cmp);
    /* The most recent `limit`, oldest first. */
    size_t from = nh > limit ? nh - limit : 0;
    json_t *arr = json_array();
    for (size_t i = from; i < nh; i++) {
        char tbuf[40];
        const struct s_kept *kp = hits[i].k;
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:o, s:o, s:o, s:s, s:b}", "series",
                           hits[i].s->key, "timestamp",
                           clock_format(kp->ts, tbuf, sizeof tbuf), "value",
                           s_num(kp->value), "z", s_num(kp->z), "score",
                           s_num(kp->score), "method",
                           self->methods[kp->method], "alarm",
                           kp->alarm));
    }
    free(hits);
    *body = json_pack("{s:s, s:I, s:o, s:o, s:b, s:o}", "series", sel,
                      "matched", (json_int_t)matched, "threshold", s_num(thr),
                      "min_score", s_num(min_score), "alarm", alarm,
                      "anomalies", arr);
    return 200;
}

int
anomaly_store_forecast(anomaly_store_t *self, const json_t *req, json_t **body)
{
    const char *sel = json_string_value(json_object_get(req, "series"));
    const json_t *v;
    int64_t horizon = 24 * 3600 * CLOCK_NS_PER_S;
    size_t npoints = 24;
    double thr = NAN;

    if (!sel || !*sel)
        return s_bad(body, "series is required", "series");
    if ((v = json_object_get(req, "horizon")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
            json_integer_value(v) > ANOMALY_STORE_HORIZON_MAX)
            return s_bad(body, "horizon must be 1 ns .. 366 days (in ns)",
                         "horizon");
        horizon = json_integer_value(v);
    }
    if ((v = json_object_get(req, "points")) && !json_is_null(v)) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > ANOMALY_STORE_POINTS_MAX)
            return s_bad(body, "points must be 1..1000", "points");
        npoints = (size_t)json_integer_value(v);
    }
    if ((v = json_object_get(req, "threshold")) && !json_is_null(v)) {
        if (!json_is_number(v))
            return s_bad(body, "threshold must be a number", "threshold");
        thr = json_number_value(v);
    }
    /* The tag filters (apid's tenant scope among them) hold for the
     * exact key too. */
    struct series_tag f[SERIES_TAGS_MAX];
    size_t nf;
    if (s_filters(json_object_get(req, "tags"), f, &nf) == -1)
        return s_bad(body, "tags must be an object of strings (at most 32)",
                     "tags");
    struct anomaly_series *one = s_lookup(self, sel);
    if (one && !series_match(one->key, sel, f, nf))
        one = NULL;
    size_t matched = one ? 1 : 0;
    if (!one)
        for (size_t si = 0; si < self->nslots; si++) {
            struct anomaly_series *s = self->slots[si].s;
            if (s && series_match(s->key, sel, f, nf)) {
                one = s;
                matched++;
            }
        }
    if (matched == 0) {
        *body = rpc_error("not_found", "no such series", sel);
        return 404;
    }
    if (matched > 1)
        return s_bad(body, "a forecast needs exactly one series; add tags",
                     "series");

    char tb[40];
    json_t *pts = json_array(), *crossing = json_null();
    bool ready = anomaly_forecast_ready(one->fc);
    int64_t last = anomaly_forecast_last(one->fc);
    for (size_t i = 1; ready && i <= npoints; i++) {
        struct anomaly_forecast_point p;
        int64_t t =
            last + (int64_t)((double)horizon * (double)i / (double)npoints);
        anomaly_forecast_at(one->fc, t, &p);
        json_array_append_new(
            pts, json_pack("{s:s, s:o, s:o, s:o}", "timestamp",
                           clock_format(p.ts, tb, sizeof tb), "value",
                           s_num(p.value), "lower", s_num(p.lower), "upper",
                           s_num(p.upper)));
    }
    if (ready && !isnan(thr)) {
        struct anomaly_forecast_crossing c;
        anomaly_forecast_crossing(one->fc, thr, horizon, &c);
        json_decref(crossing);
        char eb[40], lb[40];
        crossing = json_pack(
            "{s:o, s:o, s:o, s:o}", "threshold", s_num(thr), "at",
            c.found ? json_string(clock_format(c.at, tb, sizeof tb))
                    : json_null(),
            "earliest",
            c.early ? json_string(clock_format(c.early, eb, sizeof eb))
                    : json_null(),
            "latest",
            c.late != INT64_MAX
                ? json_string(clock_format(c.late, lb, sizeof lb))
                : json_null());
    }
    *body = json_pack(
        "{s:s, s:b, s:s, s:o, s:f, s:o, s:o}", "series", one->key, "ready",
        ready, "last", clock_format(last, tb, sizeof tb), "trend_per_hour",
        s_num(ready ? anomaly_forecast_trend_per_hour(one->fc) : NAN),
        "interval", 0.8, "forecast", pts, "crossing", crossing);
    return 200;
}

void
anomaly_store_test(bool verbose)
{
    struct anomaly_conf conf;
    anomaly_conf_default(&conf);
    strcpy(conf.method, "zscore");
    anomaly_store_t *st = anomaly_store_new(&conf, 4);
    assert(st);
    struct anomaly_result r;
    int64_t t0 = 1704067200LL * CLOCK_NS_PER_S, step = 60 * CLOCK_NS_PER_S;
    const double steady[] = {23.5, 23.7, 23.6, 23.5, 23.6, 23.7,
                             23.5, 23.6, 23.7, 23.6, 23.5, 23.7};
    for (int i = 0; i < 12; i++) {
        anomaly_store_score(st, "temp_sensor_001", t0 + i * step, steady[i],
                            &r);
        anomaly_store_score(st, "temperature{device=s1}", t0 + i * step,
                            steady[i], &r);
    }
    anomaly_store_score(st, "temp_sensor_001", t0 + 12 * step, 100, &r);
    assert(r.anomaly && r.z > 100);
    anomaly_store_score(st, "temperature{device=s1}", t0 + 12 * step, 50, &r);
    assert(anomaly_store_series(st) == 2);

    /* The seed query: threshold 3 finds the 100. */
    json_t *req = json_pack("{s:s, s:s, s:f}", "op", "anomalies", "series",
                            "temp_sensor_001", "threshold", 3.0);
    json_t *body;
    assert(anomaly_store_query(st, req, &body) == 200);
    if (verbose) {
        char *s = mpjson_dumps(body);
        printf("   %s\n", s);
        free(s);
    }
    json_t *a = json_object_get(body, "anomalies");
    assert(json_array_size(a) == 1);
    json_t *h = json_array_get(a, 0);
    TEST_STREQ(json_string_value(json_object_get(h, "timestamp")),
               "2024-01-01T00:12:00.000Z");
    TEST_NEAR(json_number_value(json_object_get(h, "value")), 100, 0);
    assert(json_is_false(json_object_get(h, "alarm"))); /* never zscore's */
    assert(json_integer_value(json_object_get(body, "matched")) == 1);
    json_decref(body);
    json_decref(req);

    /* By bare name and tags; an impossible threshold finds nothing. */
    req = json_pack("{s:s, s:{s:s}, s:f}", "series", "temperature", "tags",
                    "device", "s1", "threshold", 1e9);
    assert(anomaly_store_query(st, req, &body) == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 0);
    json_decref(body);
    json_decref(req);

    /* method= keeps the readings a given detector flagged most. */
    req = json_pack("{s:s, s:f, s:s}", "series", "temp_sensor_001", "threshold",
                    3.0, "method", "zscore");
    assert(anomaly_store_query(st, req, &body) == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 1);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:f, s:s}", "series", "temp_sensor_001", "threshold",
                    3.0, "method", "seasonal");
    assert(anomaly_store_query(st, req, &body) == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 0);
    json_decref(body);
    json_decref(req);

    /* Unknown series: 404; bad arguments: 400. */
    req = json_pack("{s:s}", "series", "nope");
    assert(anomaly_store_query(st, req, &body) == 404);
    assert(json_object_get(body, "error"));
    json_decref(body);
    json_decref(req);
    req =
        json_pack("{s:s, s:s}", "series", "temp_sensor_001", "threshold", "x");
    assert(anomaly_store_query(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:i}", "series", "temp_sensor_001", "alarm", 1);
    assert(anomaly_store_query(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    /* alarm=true keeps only alarms (zscore raises none). */
    req = json_pack("{s:s, s:b}", "series", "temp_sensor_001", "alarm", 1);
    assert(anomaly_store_query(st, req, &body) == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 0);
    json_decref(body);
    json_decref(req);

    /* The ring keeps the last `keep` (4) above the floor. */
    for (int i = 0; i < 10; i++)
        anomaly_store_score(st, "temp_sensor_001", t0 + (20 + i) * step,
                            i % 2 ? 1000 : -1000, &r);
    req = json_pack("{s:s, s:f}", "series", "temp_*", "min_score", 0.0);
    assert(anomaly_store_query(st, req, &body) == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 4);
    json_decref(body);
    json_decref(req);
    /* Forecast: a series warming by 1 per hour for two days crosses 100
     * when the line does; an ambiguous or unknown selector is refused. */
    for (int i = 0; i < 600; i++)
        anomaly_store_score(st, "bearing{m=1}", t0 + i * 5 * step,
                            40 + i * 5.0 / 60, &r);
    anomaly_store_score(st, "bearing{m=2}", t0, 1, &r);
    req = json_pack("{s:s, s:I, s:i, s:f}", "series", "bearing{m=1}", "horizon",
                    (json_int_t)(48 * 3600 * CLOCK_NS_PER_S), "points", 4,
                    "threshold", 100.0);
    assert(anomaly_store_forecast(st, req, &body) == 200);
    if (verbose) {
        char *s = mpjson_dumps(body);
        printf("   %s\n", s);
        free(s);
    }
    assert(json_is_true(json_object_get(body, "ready")));
    assert(json_array_size(json_object_get(body, "forecast")) == 4);
    TEST_NEAR(json_number_value(json_object_get(body, "trend_per_hour")), 1,
              0.1);
    /* The last reading, 89.92, is at 2024-01-03T01:55: 100 is due about
     * 10 h later. */
    const char *at = json_string_value(
        json_object_get(json_object_get(body, "crossing"), "at"));
    int64_t tat;
    assert(at && clock_parse_rfc3339(at, &tat) == 0);
    double hours = (double)(tat - (t0 + 599 * 5 * step)) / 3.6e12;
    TEST_NEAR(hours, 10.1, 1.5);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s, s:I}", "series", "bearing{m=1}", "horizon",
                    (json_int_t)INT64_MAX);
    assert(anomaly_store_forecast(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s}", "series", "bearing");
    assert(anomaly_store_forecast(st, req, &body) == 400);
    json_decref(body);
    json_decref(req);
    req = json_pack("{s:s}", "series", "nothing");
    assert(anomaly_store_forecast(st, req, &body) == 404);
    json_decref(body);
    json_decref(req);

    anomaly_store_destroy(&st);
    anomaly_store_destroy(&st);

    /* Prefetching changes no score, an unknown key is ignored, and the
     * addresses of the largest ensemble fit in a series. */
    const char *methods[] = {"zscore", "ensemble", "ensemble-all"};
    for (size_t m = 0; m < 3; m++) {
        strcpy(conf.method, methods[m]);
        anomaly_store_t *plain = anomaly_store_new(&conf, 4);
        anomaly_store_t *pf = anomaly_store_new(&conf, 4);
        const char *keys[] = {"a", "b", "c"};
        assert(anomaly_store_find(pf, anomaly_store_hash(pf, "a")) == NULL);
        anomaly_store_prefetch(NULL, t0, 0);
        for (int i = 0; i < 3000; i++) {
            const char *k = keys[i % 3];
            int64_t ts = t0 + (i / 3) * step;
            double v = 20 + (i % 7) + (i == 2400 ? 50 : 0);
            struct anomaly_result ra, rb;
            for (int stage = 0; stage < 3; stage++)
                anomaly_store_prefetch(
                    anomaly_store_find(pf, anomaly_store_hash(pf, k)), ts,
                    stage);
            anomaly_store_score(plain, k, ts, v, &ra);
            anomaly_store_score(pf, k, ts, v, &rb);
            assert(ra.score == rb.score && ra.method == rb.method);
            assert(ra.z == rb.z || (isnan(ra.z) && isnan(rb.z)));
        }
        struct anomaly_series *s = s_lookup(pf, "a");
        assert(s && s->nparts >= 2 && s->nparts < S_PARTS);
        assert(anomaly_store_find(pf, anomaly_store_hash(pf, "a")) == s);
        assert(anomaly_store_find(pf, anomaly_store_hash(pf, "unknown")) ==
               NULL);
        if (verbose)
            printf("   %s: %u addresses prefetched per series\n", methods[m],
                   s->nparts);
        anomaly_store_destroy(&plain);
        anomaly_store_destroy(&pf);
    }
    strcpy(conf.method, "bogus");
    assert(anomaly_store_new(&conf, 4) == NULL);
    TEST_OK("anomaly_store");
}
