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
#include "aggd/agg_pool.h"
#include "aggd/agg_query.h"
#include "aggd/agg_stats.h"
#include "common/clock.h"
#include "common/dtoa.h"
#include "common/mpjson.h"
#include "common/rpc.h"
#include "common/strbuf.h"
#include "common/strutil.h"
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
/* Buckets from which an answer's sums and text are made in pieces of
 * s_piece on two threads (agg_pool.h; the 5-minute mean over a year has
 * 33,334): below, the hand-over costs more than it saves. Variables so
 * that the selftest can cut small answers into pieces too. */
static size_t s_pieces_min = 4096;
static size_t s_piece = 2048;

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

/* The buckets of an answer, gathered before they are written out (as a
 * jansson tree, or straight as JSON text: agg_interval_reply). */
struct s_out {
    int64_t *ts;   /* interval starts, ns */
    double *val;   /* their values */
    uint64_t *cnt; /* their points */
    json_t **more; /* their fields for apid ("parts": "sketch" or
                      "parts"), objects, or NULL */
    size_t n, cap; /* used and allocated */
    size_t holes;  /* entries with count 0 (empty intervals of a run,
                      s_run_piece): not buckets, skipped when written */
    struct s_run_pieces *defer; /* a run left for the text's pieces to sum
                                   (s_emit_pieces), or NULL */
};

/* Grow o for one more bucket (see s_out_add). */
static __attribute__((noinline)) void
s_out_grow(struct s_out *o, json_t *more)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 256;
        o->ts = xrealloc(o->ts, o->cap * sizeof *o->ts);
        o->val = xrealloc(o->val, o->cap * sizeof *o->val);
        o->cnt = xrealloc(o->cnt, o->cap * sizeof *o->cnt);
        if (o->more) {
            o->more = xrealloc(o->more, o->cap * sizeof *o->more);
            memset(o->more + o->n, 0, (o->cap - o->n) * sizeof *o->more);
        }
    }
    if (more && o->more == NULL)
        o->more = xcalloc(o->cap, sizeof *o->more);
}

/* Add a bucket; more (owned, may be NULL) holds its fields for apid.
 * Inline: the 5-minute answer adds 33,334 into reserved room. */
static inline void
s_out_add(struct s_out *o, int64_t ts, double v, uint64_t c, json_t *more)
{
    if (o->n == o->cap || (more && o->more == NULL))
        s_out_grow(o, more);
    o->ts[o->n] = ts;
    o->val[o->n] = v;
    if (o->more)
        o->more[o->n] = more;
    o->cnt[o->n++] = c;
}

/* Room for n buckets in all (a bounded aggregation knows how many it may
 * add: growing by doubling copied the 5-minute answer's arrays about
 * eight times). */
static void
s_out_reserve(struct s_out *o, size_t n)
{
    if (n <= o->cap || o->more)
        return;
    o->cap = n;
    o->ts = xrealloc(o->ts, o->cap * sizeof *o->ts);
    o->val = xrealloc(o->val, o->cap * sizeof *o->val);
    o->cnt = xrealloc(o->cnt, o->cap * sizeof *o->cnt);
}

static void
s_out_free(struct s_out *o)
{
    for (size_t i = 0; o->more && i < o->n; i++)
        json_decref(o->more[i]);
    free(o->ts);
    free(o->val);
    free(o->cnt);
    free(o->more);
    free(o->defer);
    memset(o, 0, sizeof *o);
}

/* Two decimal digits of 0 <= v < 100 at p. */
static inline void
s_two(char *p, unsigned v)
{
    static const char pairs[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    memcpy(p, pairs + 2 * v, 2);
}

/* The first time stamp of a day for s_time_text: sets date, *day0 and
 * *off and returns NULL, or, outside years 0..9999, writes ts in full at
 * p and returns the end. Out of line: once a day. */
static __attribute__((noinline)) char *
s_time_day(char *p, int64_t ts, int64_t *day0, char date[11], uint64_t *off)
{
    char full[40];
    int64_t d = s_floor_div(ts, S_DAY);

    if (strlen(clock_format(ts, full, sizeof full)) != 24) {
        *day0 = INT64_MIN; /* never cached */
        size_t n = strlen(full);
        memcpy(p, full, n);
        return p + n;
    }
    memcpy(date, full, 11);
    /* ts less the day's start, exact modulo 2^64 even where that start
     * is below INT64_MIN (the first day of the range); that day is not
     * cached */
    *off = (uint64_t)ts - (uint64_t)d * (uint64_t)S_DAY;
    *day0 = d >= INT64_MIN / S_DAY ? d * S_DAY : INT64_MIN;
    return NULL;
}

/* clock_format of ts at p (24 bytes, no NUL), reusing the date of the
 * previous call while the day is the same: *day0 (the start of that
 * day, ns; INT64_MIN at first, never a day's start) and date[11]
 * ("YYYY-MM-DDT") carry it. Returns the end. */
static inline char *
s_time_text(char *p, int64_t ts, int64_t *day0, char date[11])
{
    /* Within the cached day: no division by the day (ts >= *day0, so
     * the unsigned difference is the true one). */
    uint64_t off = (uint64_t)ts - (uint64_t)*day0;

    if (*day0 == INT64_MIN || ts < *day0 || off >= (uint64_t)S_DAY) {
        char *end = s_time_day(p, ts, day0, date, &off);
        if (end)
            return end;
    }
    /* The minute of the day, then what is left of it: nothing at all
     * (below a millisecond) for the buckets of a whole-minute interval,
     * which need no more divisions. */
    uint32_t min = (uint32_t)(off / S_MINUTE);
    uint32_t rest = (uint32_t)((off - (uint64_t)min * S_MINUTE) /
                               CLOCK_NS_PER_MS); /* ms, < 60,000 */
    memcpy(p, date, 11);
    s_two(p + 11, min / 60);
    p[13] = ':';
    s_two(p + 14, min % 60);
    if (rest == 0) {
        memcpy(p + 16, ":00.000Z", 8);
        return p + 24;
    }
    uint32_t sec = rest / 1000, frac = rest % 1000;
    p[16] = ':';
    s_two(p + 17, sec);
    p[19] = '.';
    p[20] = (char)('0' + frac / 100);
    s_two(p + 21, frac % 100);
    p[23] = 'Z';
    return p + 24;
}

/* The most text a bucket takes (s_out_range): a comma,
 * {"timestamp":"<24>","value":<number>,"count":<20 digits>} and the bytes
 * past the number that dtoa_end may touch. */
#define S_BUCKET_MAX (1 + 14 + 24 + 10 + DTOA_ROOM + 9 + 20 + 1)

/* Buckets [from, to) of o as JSON text appended to text (a comma before
 * each but the answer's first, o's entry first, or before each when
 * first is SIZE_MAX; holes skipped). */
static void
s_out_range(const struct s_out *o, size_t from, size_t to, size_t first,
            struct strbuf *text)
{
    char *p, *buf, date[11];
    int64_t day0 = INT64_MIN;

    /* About 80 bytes a bucket, written in place (at most S_BUCKET_MAX:
     * a buffer of (to - from) * S_BUCKET_MAX + 2 never grows). */
    strbuf_reserve(text, (to - from) * 80 + 2);
    for (size_t i = from; i < to; i++) {
        if (o->cnt[i] == 0) /* a hole: an empty interval of a run */
            continue;
        if (text->len + S_BUCKET_MAX + 1 > text->cap) /* rarely */
            strbuf_reserve(text, S_BUCKET_MAX);
        p = buf = text->p + text->len;
        if (i != first) /* first SIZE_MAX: a comma before every one */
            *p++ = ',';
        memcpy(p, "{\"timestamp\":\"", 14);
        p = s_time_text(p + 14, o->ts[i], &day0, date);
        memcpy(p, "\",\"value\":", 10);
        p += 10;
        p = dtoa_end(o->val[i], p); /* "null" unless finite */
        memcpy(p, ",\"count\":", 9);
        p += 9;
        if (o->cnt[i] < 10) { /* the usual counts of a bucket */
            *p++ = (char)('0' + o->cnt[i]);
        } else if (o->cnt[i] < 100) {
            s_two(p, (unsigned)o->cnt[i]);
            p += 2;
        } else {
            p = strutil_utoa(o->cnt[i], p);
        }
        *p++ = '}';
        text->len += (size_t)(p - buf);
    }
}

/* o's buckets as the JSON array mpjson_dumps would print, on this thread
 * into text (an answer too short for pieces: s_emit_pieces). */
static void
s_out_text(const struct s_out *o, struct strbuf *text)
{
    size_t first = 0;

    while (first < o->n && o->cnt[first] == 0)
        first++;
    strbuf_reserve(text, o->n * 80 + 2);
    strbuf_add(text, "[", 1);
    s_out_range(o, 0, o->n, first, text);
    strbuf_add(text, "]", 1);
}

/* The head's fields in order into t's buffer h, "{" to "}". The buckets:
 * o's, printed there (s_out_text), or, when o is NULL, the buffers after
 * h already hold them (s_emit_pieces): h ends with "[" and the rest goes
 * on in a new buffer after them. */
static void
s_head_text(json_t *head, struct agg_text *t, size_t h, const struct s_out *o)
{
    struct strbuf *text = &t->buf[h];
    const char *key;
    json_t *v;
    bool first = true;

    strbuf_add(text, "{", 1);
    json_object_foreach(head, key, v) {
        if (!first)
            strbuf_add(text, ",", 1);
        first = false;
        mpjson_put_string(text, key, strlen(key));
        strbuf_add(text, ":", 1);
        if (strcmp(key, "buckets") != 0) {
            mpjson_dump(text, v);
        } else if (o) {
            s_out_text(o, text);
        } else {
            strbuf_add(text, "[", 1);
            text = agg_text_add(t);
            strbuf_add(text, "]", 1);
        }
    }
    strbuf_add(text, "}", 1);
}

static void s_emit_pieces(json_t *head, struct s_out *o, struct agg_text *t,
                          agg_pool_t *pool);

/* The answer: head holds its other fields in order, "buckets" among them
 * (a placeholder). Takes head and empties o. To *body as a tree, or, when
 * text is not NULL, appended to text as JSON (*body NULL): a long answer
 * in pieces on two threads (s_emit_pieces; only text defers a run,
 * s_spec.defer). */
static void
s_emit(json_t *head, struct s_out *o, json_t **body, struct agg_text *t,
       agg_pool_t *pool)
{
    char tbuf[40];

    assert(o->defer == NULL || t != NULL);
    if (t && (o->defer || (pool && o->n >= s_pieces_min))) {
        s_emit_pieces(head, o, t, pool);
        *body = NULL;
        return;
    }
    if (t) {
        agg_text_cur(t);
        s_head_text(head, t, t->n - 1, o);
        json_decref(head);
        *body = NULL;
        s_out_free(o);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < o->n; i++) {
        if (o->cnt[i] == 0)
            continue; /* a hole */
        json_t *b = json_pack("{s:s, s:o, s:I}", "timestamp",
                              clock_format(o->ts[i], tbuf, sizeof tbuf),
                              "value", agg_query_num(o->val[i]), "count",
                              (json_int_t)o->cnt[i]);
        if (o->more && o->more[i]) {
            json_object_update(b, o->more[i]);
            json_decref(o->more[i]);
            o->more[i] = NULL;
        }
        json_array_append_new(arr, b);
    }
    json_object_set_new(head, "buckets", arr);
    *body = head;
    s_out_free(o);
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

/* A mean is the sum over the count, which the walk (s_walk) adds up
 * without merging moments. */
double
agg_interval_value(int fn, double pct, const struct agg_rsum *r,
                   const agg_sketch_t *sk)
{
    if (fn == AGG_FN_PCT)
        return agg_sketch_quantile(sk, pct / 100);
    if (fn == AGG_FN_MEAN)
        return r->m.sum / (double)r->m.count;
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
    bool defer;                      /* the answer goes out as text: a
                                        long run is summed as it is printed */
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
              clock_parse_duration_ms(json_string_value(w), window) ||
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

/* The rollup tier whose buckets make up every whole interval of a fixed
 * step exactly as agg_store_summarize would merge them: step a multiple
 * of its width and shorter than the next tier's (so no coarser bucket
 * fits inside an interval). -1 when there is none. */
static int
s_walk_tier(int64_t step)
{
    for (int t = AGG_ROLLUP_TIERS - 1; t >= 0; t--)
        if (step % agg_rollup_width(t) == 0)
            return t == AGG_ROLLUP_TIERS - 1 ||
                           step < agg_rollup_width(t + 1) ? t : -1;
    return -1;
}

/* Walks the rollup buckets of every selected series along consecutive
 * intervals, instead of looking each interval up (33,334 five-minute
 * intervals over the 1 M-point benchmark series). */
struct s_walk {
    int tier;                     /* tier walked, -1 when not walking */
    const agg_rollup_t **roll;    /* per series */
    size_t *at;                   /* per series: next bucket index */
    int64_t *first, *end;         /* per series: time its rollups span */
    int64_t next;                 /* interval start the indexes are at */
};

static void
s_walk_init(struct s_walk *w, agg_store_t *store, const struct s_spec *sp)
{
    memset(w, 0, sizeof *w);
    w->tier = sp->raw || sp->tz || sp->window ? -1 : s_walk_tier(sp->step);
    if (w->tier < 0)
        return;
    w->roll = xcalloc(sp->nk, sizeof *w->roll);
    w->at = xcalloc(sp->nk, sizeof *w->at);
    w->first = xcalloc(sp->nk, sizeof *w->first);
    w->end = xcalloc(sp->nk, sizeof *w->end);
    w->next = INT64_MIN;
    for (size_t k = 0; k < sp->nk; k++) {
        w->roll[k] = agg_store_rollup(store, sp->keys[k]);
        if (w->roll[k] == NULL ||
            !agg_store_span(store, sp->keys[k], &w->first[k], &w->end[k]))
            w->first[k] = w->end[k] = INT64_MIN; /* nothing to merge */
    }
}

/* Does fn need only the count and the sum of an interval? */
static bool
s_sums_only(int fn)
{
    return fn == AGG_FN_MEAN || fn == AGG_FN_SUM || fn == AGG_FN_COUNT;
}

/* Merge interval [a, z) by walking, when every series' span holds it
 * whole or not at all (else agg_store_summarize clips it to the span and
 * may split it differently): into m, or with per not NULL, series k into
 * per[k] (every field). Returns false when the caller must summarise it
 * itself. */
static bool
s_walk(struct s_walk *w, const struct s_spec *sp, int64_t a, int64_t z,
       struct agg_rsum *m, struct agg_rsum *per, agg_sketch_t *sk)
{
    if (w->tier < 0)
        return false;
    for (size_t k = 0; k < sp->nk; k++)
        if (!(z <= w->first[k] || a >= w->end[k] ||
              (a >= w->first[k] && z <= w->end[k])))
            return false;
    for (size_t k = 0; k < sp->nk; k++) {
        if (w->first[k] == w->end[k])
            continue;
        if (w->next != a)
            w->at[k] = agg_rollup_lower(w->roll[k], w->tier, a);
        if (per == NULL && s_sums_only(sp->fn))
            w->at[k] = agg_rollup_sum_from(w->roll[k], w->tier, w->at[k], z,
                                           &m->m.count, &m->m.sum);
        else
            w->at[k] = agg_rollup_merge_from(w->roll[k], w->tier, w->at[k], z,
                                             per ? &per[k] : m, sk);
    }
    w->next = z;
    return true;
}

static void
s_walk_free(struct s_walk *w)
{
    free(w->roll);
    free(w->at);
    free(w->first);
    free(w->end);
}

/* The interval boundaries of a bounded aggregation over [lo, hi): fixed
 * steps or local days. Returns their number and sets *out (caller
 * frees), or SIZE_MAX when there would be too many. */
static size_t
s_bounds(const struct s_spec *sp, int64_t lo, int64_t hi, int64_t **out)
{
    size_t nb = 0;
    int64_t *bd = NULL;

    *out = NULL;
    if (lo >= hi)
        return 0;
    if ((hi - lo) / sp->step > AGG_QUERY_BUCKETS_MAX)
        return SIZE_MAX;
    if (sp->tz)
        return s_tz_bounds(sp->tz, lo, hi, sp->step / S_DAY, out);
    bd = xmalloc(((size_t)((hi - lo) / sp->step) + 3) * sizeof *bd);
    for (int64_t b = s_floor_div(lo, sp->step) * sp->step;; b += sp->step) {
        bd[nb++] = b;
        if (b >= hi)
            break;
    }
    *out = bd;
    return nb;
}

/* The summaries per[0..nk) of one interval merged into m in key order;
 * returns {"parts": [...]}, those with points as agg_query_part gives
 * them, and counts them in *nparts. */
static json_t *
s_parts(const struct s_spec *sp, const struct agg_rsum *per,
        struct agg_rsum *m, size_t *nparts)
{
    json_t *parts = json_array();

    for (size_t k = 0; k < sp->nk; k++) {
        if (per[k].m.count == 0)
            continue;
        agg_rsum_merge(m, &per[k]);
        json_array_append_new(parts, agg_query_part(sp->keys[k], &per[k]));
        ++*nparts;
    }
    return json_pack("{s:o}", "parts", parts);
}

/* The counts and sums of a run of whole intervals lo..hi-1 (indexes into
 * the boundaries), summed in one pass (agg_rollup_sum_steps). */
struct s_run {
    size_t lo, hi;   /* the run; empty when lo == hi */
};

/* One series, fixed steps, an aggregation of counts and sums only, no
 * parts: the intervals that lie whole inside both the range and the
 * series' span (every one of them but the two ends, usually) are summed
 * in one pass, as s_walk would sum them one by one. Otherwise an empty
 * run. */
/* The run's buckets in pieces (agg_pool_run): each piece sums its
 * intervals in one pass (agg_rollup_sum_steps) and writes their buckets
 * straight into o at the run's place; an empty interval stays there as
 * a hole (count 0) that the writers skip. */
struct s_run_pieces {
    const agg_rollup_t *roll;
    int tier, fn;
    double pct;
    int64_t start;     /* where the run's first interval starts */
    int64_t step;
    size_t n, per;     /* intervals, a piece */
    struct s_out *o;
    size_t at;         /* the run's first entry in o */
    size_t *holes;     /* per piece */
};

/* The run's intervals [from, from + n) (from its first) summed into o
 * at the run's place. Returns the holes among them. */
static size_t
s_run_range(const struct s_run_pieces *p, size_t from, size_t n)
{
    uint64_t *cnt = p->o->cnt + p->at + from;
    double *val = p->o->val + p->at + from;
    int64_t *ts = p->o->ts + p->at + from;
    int64_t t0 = p->start + (int64_t)from * p->step;
    size_t holes = 0;

    memset(cnt, 0, n * sizeof *cnt);
    memset(val, 0, n * sizeof *val);
    agg_rollup_sum_steps(p->roll, p->tier, t0, p->step, n, cnt, val);
    for (size_t j = 0; j < n; j++) {
        uint64_t c = cnt[j];
        ts[j] = t0 + (int64_t)j * p->step;
        if (c == 0) {
            holes++;
            continue;
        }
        if (p->fn == AGG_FN_MEAN) { /* as agg_interval_value divides */
            val[j] /= (double)c;
        } else {
            struct agg_rsum m = {0};
            m.m.count = c;
            m.m.sum = val[j];
            val[j] = agg_interval_value(p->fn, p->pct, &m, NULL);
        }
    }
    return holes;
}

static void
s_run_piece(void *arg, size_t k)
{
    const struct s_run_pieces *p = arg;
    size_t from = k * p->per, n = p->n - from < p->per ? p->n - from : p->per;

    p->holes[k] = s_run_range(p, from, n);
}

/* A long text answer in pieces on two threads (agg_pool_run): piece k of
 * o's entries sums the part of a run left to it (s_run_add, o->defer),
 * counts its holes and prints its buckets, all on one thread, into
 * buf[k] (a bucket's text does not depend on the one before it). */
struct s_fused {
    struct s_out *o;
    size_t per;          /* entries a piece */
    struct strbuf *buf;  /* the pieces' buffers */
    size_t *holes;       /* per piece */
};

static void
s_fused_piece(void *arg, size_t k)
{
    struct s_fused *f = arg;
    const struct s_run_pieces *rp = f->o->defer;
    size_t from = k * f->per, to = from + f->per, holes = 0;

    if (to > f->o->n)
        to = f->o->n;
    if (rp) { /* the part of the run this piece holds, summed first */
        size_t a = from > rp->at ? from : rp->at;
        size_t z = to < rp->at + rp->n ? to : rp->at + rp->n;
        if (a < z)
            s_run_range(rp, a - rp->at, z - a);
    }
    for (size_t i = from; i < to; i++)
        holes += f->o->cnt[i] == 0;
    /* A copy of the buffer's head on this thread's stack: the heads of
     * the pieces share cache lines, and the length changes each bucket. */
    struct strbuf b = f->buf[k];
    s_out_range(f->o, from, to, SIZE_MAX, &b);
    f->buf[k] = b;
    f->holes[k] = holes;
}

/* The pieces first, each in a buffer of its own after the head's: in
 * apid's arena when a slot was lent and they fit (agg_text_lend; they are
 * then not sent at all), else on the loop's heap. Then the head, whose
 * "count" needs every piece's holes, into its own buffer before them,
 * and the rest of the answer in one after them. */
static void
s_emit_pieces(json_t *head, struct s_out *o, struct agg_text *t,
              agg_pool_t *pool)
{
    size_t per = s_piece, k = (o->n + per - 1) / per, h, nb0, holes = 0;
    size_t room = per * S_BUCKET_MAX + 2;
    bool first = true, lend;

    agg_text_cur(t);
    h = t->n - 1;
    /* Checked here, just before the writing: apid lends the slot again a
     * grace period after lent_until, and the sums before may have taken
     * long. All k pieces in the slot, or none. */
    lend = t->lent && room * k <= t->lent_len - t->lent_used &&
           clock_mono_ns() < t->lent_until;
    nb0 = t->n;
    for (size_t i = 0; i < k; i++)
        if (lend)
            agg_text_lend(t, room);
        else
            strbuf_reserve(agg_text_add(t), per * 80 + 2);
    struct s_fused f = {o, per, &t->buf[nb0], xcalloc(k, sizeof(size_t))};
    agg_pool_run(pool, k, s_fused_piece, &f);
    /* Every bucket was printed with a comma before it: not the first. */
    for (size_t i = 0; i < k; i++) {
        struct strbuf *b = &t->buf[nb0 + i];
        holes += f.holes[i];
        if (first && b->len > 0) {
            assert(b->p[0] == ',');
            if (lend) { /* the lender's: the piece starts a byte later */
                b->p++;
                b->cap--;
            } else {
                memmove(b->p, b->p + 1, b->len); /* and the NUL */
            }
            b->len--;
            first = false;
        }
    }
    free(f.holes);
    o->holes = holes;
    json_object_set_new(head, "count", json_integer((json_int_t)(o->n - holes)));
    s_head_text(head, t, h, NULL);
    json_decref(head);
    s_out_free(o);
}

/* The run of intervals that one series' rollups hold whole, so that one
 * pass over them sums them all (s_run_pieces), or an empty run. */
static void
s_run_find(struct s_run *r, const struct s_walk *w, const struct s_spec *sp,
           bool plain, const int64_t *bd, size_t nb)
{
    memset(r, 0, sizeof *r);
    if (w->tier < 0 || sp->nk != 1 || !plain || !s_sums_only(sp->fn) ||
        w->first[0] == w->end[0] || nb < 2)
        return;
    int64_t lo = w->first[0] > sp->sel->start ? w->first[0] : sp->sel->start;
    int64_t hi = w->end[0] < sp->sel->end ? w->end[0] : sp->sel->end;
    /* bd is bd[0] + i step here (no time zone when walking). */
    while (r->lo + 1 < nb && bd[r->lo] < lo)
        r->lo++;
    r->hi = r->lo;
    if (bd[nb - 1] > hi) { /* the last whole one ends at or before hi */
        int64_t k = s_floor_div(hi - bd[0], sp->step);
        r->hi = k > (int64_t)r->lo ? (size_t)k : r->lo;
    } else {
        r->hi = nb - 1;
    }
    if (r->hi <= r->lo)
        r->hi = r->lo;
}

/* The run's buckets into o, in pieces on two threads when many (each
 * interval's sum is the same additions in the same order either way). */
static void
s_run_add(struct s_out *o, const struct s_run *r, const struct s_walk *w,
          const struct s_spec *sp, const int64_t *bd, agg_pool_t *pool)
{
    size_t n = r->hi - r->lo, per = n >= s_pieces_min ? s_piece : n;
    size_t k = (n + per - 1) / per;
    struct s_run_pieces rp = {w->roll[0], w->tier, sp->fn, sp->pct,
                              bd[r->lo], sp->step, n, per, o, o->n, NULL};

    assert(o->n + n <= o->cap); /* s_out_reserve: every interval */
    /* Fixed steps: the run's boundaries are its start plus steps. */
    assert(bd[r->hi] == bd[r->lo] + (int64_t)n * sp->step);
    if (sp->defer && n >= s_pieces_min && o->defer == NULL) {
        /* Summed piece by piece as the text is printed (s_emit_pieces):
         * each piece's sums are still in its core's cache when printed. */
        o->defer = xmalloc(sizeof *o->defer);
        *o->defer = rp;
        o->n += n;
        return;
    }
    rp.holes = xcalloc(k, sizeof(size_t));
    agg_pool_run(n >= s_pieces_min ? pool : NULL, k, s_run_piece, &rp);
    o->n += n;
    for (size_t i = 0; i < k; i++)
        o->holes += rp.holes[i];
    free(rp.holes);
}

/* Aggregation over listed interval boundaries (see the file comment):
 * the buckets to o; returns 0, or 400 or 413 with *body set. */
static int
s_bounded(agg_store_t *store, const struct s_spec *sp, struct s_out *o,
          json_t **body)
{
    const struct agg_query_sel *sel = sp->sel;
    int64_t lo = INT64_MAX, hi = INT64_MIN, f, e, *bd;
    size_t nb, nparts = 0;
    struct s_walk w;
    struct agg_rsum *per;
    int rc = 0;

    for (size_t i = 0; i < sp->nk; i++)
        if (agg_store_span(store, sp->keys[i], &f, &e)) {
            lo = f < lo ? f : lo;
            hi = e > hi ? e : hi;
        }
    lo = lo > sel->start ? lo : sel->start;
    hi = hi < sel->end ? hi : sel->end;
    if ((nb = s_bounds(sp, lo, hi, &bd)) == SIZE_MAX) {
        *body = agg_query_bad("interval too small for this range (over "
                              "1,000,000 buckets)", "interval");
        return 400;
    }
    s_out_reserve(o, nb);
    s_walk_init(&w, store, sp);
    /* For apid, other aggregations than percentiles carry each series'
     * summary of each interval, summed on its own and then in key order
     * (s_parts), so that apid repeats the very additions. */
    per = sel->parts && !sp->raw && sp->fn != AGG_FN_PCT
              ? xmalloc(sp->nk * sizeof *per) : NULL;
    struct s_run run;
    s_run_find(&run, &w, sp, per == NULL, bd, nb);
    for (size_t i = 0; i + 1 < nb && rc == 0; i++) {
        if (i == run.lo && run.hi > run.lo) {
            /* The run's intervals lie whole inside the range (no window
             * when walking): what the general case below does for
             * them, in one pass, without clipping, branches and parts. */
            s_run_add(o, &run, &w, sp, bd, agg_store_pool(store));
            i = run.hi - 1; /* the loop's step: next is run.hi */
            continue;
        }
        int64_t a = sp->window ? bd[i + 1] - sp->window : bd[i], z = bd[i + 1];
        struct agg_rsum m = {0};
        double value;
        json_t *more = NULL; /* the bucket's sketch or parts, for apid */
        a = a > sel->start ? a : sel->start;
        z = z < sel->end ? z : sel->end;
        if (a >= z)
            continue;
        if (sp->raw) {
            value = s_raw_value(store, sp, a, z, &m);
        } else {
            agg_sketch_t *sk = sp->fn == AGG_FN_PCT ? agg_sketch_new() : NULL;
            if (per)
                memset(per, 0, sp->nk * sizeof *per);
            /* Whole intervals walk; clipped ones at the range's edges
             * take raw points at their ends. */
            if (a != bd[i] || z != bd[i + 1] ||
                !s_walk(&w, sp, a, z, &m, per, sk))
                for (size_t k = 0; k < sp->nk; k++)
                    agg_store_summarize(store, sp->keys[k], a, z,
                                        per ? &per[k] : &m, sk);
            if (per)
                more = s_parts(sp, per, &m, &nparts);
            value = agg_interval_value(sp->fn, sp->pct, &m, sk);
            if (sk && m.m.count > 0 && sel->parts)
                more = json_pack("{s:o}", "sketch", agg_sketch_to_json(sk));
            agg_sketch_destroy(&sk);
        }
        if (nparts > AGG_INTERVAL_PARTS_MAX) {
            json_decref(more);
            *body = rpc_error("too_large", "too many series summaries to "
                              "merge across lanes; narrow the range or the "
                              "selection, or widen the interval", "interval");
            rc = 413;
        } else if (m.m.count > 0) {
            s_out_add(o, bd[i], value, m.m.count, more);
        } else {
            json_decref(more);
        }
    }
    s_walk_free(&w);
    free(per);
    free(bd);
    return rc;
}

/* Fixed steps over the raw points of the selection: sort once, cut. The
 * buckets to o; returns 0, or 400/404 with *body set. */
static int
s_raw_steps(agg_store_t *store, const struct agg_query_sel *sel, int64_t step,
            int fn, double pct, size_t *matched, struct s_out *o,
            json_t **body)
{
    struct agg_view *views;
    size_t nv, n = 0, k = 0;
    const int64_t *ts;
    const double *vs;
    int64_t *mts = NULL;
    double *mvs = NULL, *buf = NULL;

    if ((nv = agg_query_views(store, sel, &views, body)) == 0)
        return 404;
    *matched = nv;
    for (size_t i = 0; i < nv; i++)
        n += views[i].n;
    if (nv == 1) {
        /* One series: its view is in time order already. */
        ts = views[0].ts;
        vs = views[0].v;
    } else {
        struct s_pt *pts = xmalloc((n ? n : 1) * sizeof *pts);
        for (size_t i = 0; i < nv; i++)
            for (size_t j = 0; j < views[i].n; j++) {
                pts[k].ts = views[i].ts[j];
                pts[k++].v = views[i].v[j];
            }
        qsort(pts, n, sizeof *pts, s_pt_cmp);
        mts = xmalloc((n ? n : 1) * sizeof *mts);
        mvs = xmalloc((n ? n : 1) * sizeof *mvs);
        for (size_t i = 0; i < n; i++) {
            mts[i] = pts[i].ts;
            mvs[i] = pts[i].v;
        }
        free(pts);
        ts = mts;
        vs = mvs;
    }
    free(views);
    if (n > 0 && (ts[n - 1] - ts[0]) / step > AGG_QUERY_BUCKETS_MAX) {
        free(mts);
        free(mvs);
        *body = agg_query_bad("interval too small for this range (over 1,000,000 "
                      "buckets)", "interval");
        return 400;
    }
    if (fn == AGG_FN_PCT) /* sorted in place per bucket */
        buf = xmalloc((n ? n : 1) * sizeof *buf);
    for (size_t i = 0; i < n;) {
        int64_t b = s_floor_div(ts[i], step);
        struct agg_moments m = {0, 0, 0, 0, INFINITY, -INFINITY};
        size_t j = i;
        for (; j < n && ts[j] - b * step < step; j++) {
            double v = vs[j];
            m.sum += v;
            m.min = v < m.min ? v : m.min;
            m.max = v > m.max ? v : m.max;
        }
        if (buf)
            memcpy(buf, vs + i, (j - i) * sizeof *buf);
        /* The mean as sum over count, M2 in a second pass (numpy's way,
         * and no division per point) only when std needs it. */
        m.count = j - i;
        m.mean = m.sum / (double)m.count;
        for (size_t x = i; fn == AGG_FN_STD && x < j; x++)
            m.m2 += (vs[x] - m.mean) * (vs[x] - m.mean);
        s_out_add(o, b * step,
                  s_bucket_value(fn, pct, buf, m.count, &m, vs[i], vs[j - 1]),
                  m.count, NULL);
        i = j;
    }
    free(buf);
    free(mts);
    free(mvs);
    return 0;
}

int
agg_interval_answer(agg_store_t *store, const json_t *req, json_t **body)
{
    return agg_interval_reply(store, req, body, NULL);
}

int
agg_interval_reply(agg_store_t *store, const json_t *req, json_t **body,
                   struct agg_text *text)
{
    struct agg_query_sel sel;
    const char *ival = json_string_value(json_object_get(req, "interval"));
    const char *agg = json_string_value(json_object_get(req, "aggregation"));
    int64_t step;
    double pct = 0;
    int fn, rc;
    struct s_out o = {0};

    if (agg_query_sel(req, &sel, body))
        return 400;
    if (ival == NULL || clock_parse_duration_ms(ival, &step)) {
        /* Time stamps are milliseconds: so are the bucket bounds. */
        *body = agg_query_bad("interval must be a duration of whole "
                              "milliseconds like 30s, 5min, 1h, 1d",
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
    bool bounded = nk > 0 && (tz || window || (!raw && step % S_MINUTE == 0));
    if (bounded) {
        struct s_spec sp = {&sel, keys, nk, step, window, tz, fn, pct, raw,
                            false};
        /* As s_emit is asked below: then the run is summed as printed. */
        sp.defer = text && nk == 1 && json_is_true(json_object_get(req, "text"));
        rc = s_bounded(store, &sp, &o, body);
    } else {
        rc = s_raw_steps(store, &sel, step, fn, pct, &nk, &o, body);
        raw = true;
    }
    free(keys);
    if (rc != 0) {
        s_out_free(&o);
        return rc;
    }
    bool est = !raw && fn == AGG_FN_PCT;
    json_t *head = json_pack("{s:s, s:I, s:I, s:n, s:b, s:s}", "metric_name",
                             sel.series, "matched", (json_int_t)nk, "count",
                             (json_int_t)(o.n - o.holes), "buckets",
                             "estimated", est,
                             "source", raw ? "raw" : "rollups");
    if (est)
        json_object_set_new(head, "relative_error", json_real(AGG_SKETCH_ALPHA));
    if (bounded && tz)
        json_object_set_new(head, "tz", json_string(tz));
    if (bounded && window)
        json_object_set_new(head, "window_ns", json_integer(window));
    json_object_set_new(head, "interval", json_string(ival));
    json_object_set_new(head, "aggregation", json_string(agg));
    s_emit(head, &o, body, text && nk == 1 &&
                               json_is_true(json_object_get(req, "text"))
                           ? text : NULL, agg_store_pool(store));
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

/* The value and count of one interval as agg_store_summarize gives it. */
static double
s_test_ref(agg_store_t *st, const char **keys, size_t nk, int fn, double pct,
           int64_t a, int64_t z, uint64_t *count)
{
    struct agg_rsum m = {0};
    agg_sketch_t *sk = agg_sketch_new();
    double v;

    for (size_t k = 0; k < nk; k++)
        agg_store_summarize(st, keys[k], a, z, &m, sk);
    v = agg_interval_value(fn, pct, &m, sk);
    agg_sketch_destroy(&sk);
    *count = m.m.count;
    return v;
}

/* The JSON text of an answer over key in [start, end) from rollups, with
 * pieces of per buckets from min buckets on (caller frees). */
static size_t s_test_in_lent; /* buffers of the last answer in the slot */
static bool s_test_lent_past;  /* lend a slot whose "until" has passed */

static char *
s_test_pieces_text(agg_store_t *st, const char *fn, const char *ival,
                   int64_t start, int64_t end, size_t min, size_t per,
                   size_t lend, size_t *nbuf)
{
    json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b, s:b}", "op",
                            "aggregate", "series", "q", "interval", ival,
                            "aggregation", fn, "start", (json_int_t)start,
                            "end", (json_int_t)end, "text", 1, "rollups", 1),
           *none;
    struct agg_text text = {.base = 0};
    size_t keep_min = s_pieces_min, keep_per = s_piece;
    char *all;

    size_t in_lent = 0;

    /* A slot lent (agg_text_lend), poisoned, so that a byte of it the
     * text took without writing shows. */
    if (lend) {
        text.lent = xmalloc(lend);
        text.lent_len = lend;
        text.lent_until = s_test_lent_past ? clock_mono_ns() : INT64_MAX;
        memset(text.lent, '#', lend);
    }
    s_pieces_min = min;
    s_piece = per;
    assert(agg_interval_reply(st, req, &none, &text) == 200 && none == NULL);
    s_pieces_min = keep_min;
    s_piece = keep_per;
    json_decref(req);
    all = agg_text_join(&text);
    for (size_t i = 0; i < text.n; i++)
        if (lend && text.buf[i].p >= text.lent &&
            text.buf[i].p < text.lent + lend) {
            assert(i > 0 && text.buf[i].p + text.buf[i].len <= text.lent + lend);
            in_lent++;
        }
    /* Lent to an answer in pieces, every piece lies in the slot (and the
     * first and the last buffer outside it) or none does. */
    assert(in_lent == 0 || in_lent + 2 == text.n);
    *nbuf = text.n;
    s_test_in_lent = in_lent;
    agg_text_free(&text);
    free(text.lent);
    return all;
}

/*
 * In pieces on two threads (agg_pool): the one-pass sums and the text of
 * an answer are byte for byte those made on one thread, and the tree's
 * JSON, for every number of intervals from 1 to 40 with pieces of 1 to 4
 * buckets (so that pieces meet at every place of a range with a gap of
 * points and a late point), ragged ends, means, sums and counts; and an
 * answer over the default sizes (6,000 buckets, 3 pieces).
 */
static void
s_test_pieces(void)
{
    agg_store_t *st = agg_store_new();
    agg_pool_t *pool = agg_pool_new();
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    static const char *fns[] = {"mean", "sum", "count"};
    uint64_t x = 5;

    assert(pool);
    for (int i = 0; i < 6000 * 60; i += 7) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (i / 600 == 17)
            continue; /* ten minutes without points */
        agg_store_put(st, "q", t0 + (int64_t)i * s1,
                      (double)(int64_t)(x >> 45) / 100 - 1000);
    }
    agg_store_put(st, "q", t0 + 3 * 3600 * s1 + 13 * s1, 0.25); /* late */
    for (int n = 1; n <= 40; n++)
        for (int ragged = 0; ragged < 2; ragged++) {
            const char *fn = fns[(size_t)(n + ragged) % 3];
            int64_t start = t0 + ragged * 31 * s1;
            int64_t end = t0 + (int64_t)n * 300 * s1 - ragged * 45 * s1;
            size_t nbuf;
            agg_store_set_pool(st, NULL);
            char *one = s_test_pieces_text(st, fn, "5min", start, end,
                                           SIZE_MAX, 1, 0, &nbuf);
            assert(nbuf == 1);
            json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b}",
                                    "op", "aggregate", "series", "q",
                                    "interval", "5min", "aggregation", fn,
                                    "start", (json_int_t)start, "end",
                                    (json_int_t)end, "rollups", 1),
                   *tree;
            assert(agg_interval_answer(st, req, &tree) == 200);
            char *want = mpjson_dumps(tree);
            TEST_STREQ(one, want);
            /* Every interval with points is a bucket, the empty ones
             * (the run's holes) none, and the count says how many. */
            const char *q1[] = {"q"};
            size_t nonempty = 0;
            for (int64_t a = t0; a < end; a += 300 * s1) {
                uint64_t c;
                s_test_ref(st, q1, 1, AGG_FN_COUNT, 0, a > start ? a : start,
                           a + 300 * s1 < end ? a + 300 * s1 : end, &c);
                nonempty += c > 0;
            }
            json_t *bk = json_object_get(tree, "buckets");
            assert(json_array_size(bk) == nonempty &&
                   json_integer_value(json_object_get(tree, "count")) ==
                       (json_int_t)nonempty);
            agg_store_set_pool(st, pool);
            for (size_t per = 1; per <= 4; per++) {
                char *two = s_test_pieces_text(st, fn, "5min", start, end, 1,
                                               per, 0, &nbuf);
                TEST_STREQ(two, one);
                assert(nbuf >= 1 && nbuf <= (size_t)n / per + 3);
                free(two);
                /* The same printed into a slot lent: a large one takes
                 * every piece; one with just the room for them too, one
                 * a byte short none (then as without). */
                size_t pieces, k;
                two = s_test_pieces_text(st, fn, "5min", start, end, 1, per,
                                         1 << 20, &k);
                TEST_STREQ(two, one);
                free(two);
                pieces = s_test_in_lent;
                assert(pieces > 0 && k == pieces + 2);
                size_t room = pieces * (per * S_BUCKET_MAX + 2);
                for (size_t lend = room; lend + 2 > room; lend--) {
                    two = s_test_pieces_text(st, fn, "5min", start, end, 1,
                                             per, lend, &k);
                    TEST_STREQ(two, one);
                    assert(s_test_in_lent == (lend == room ? pieces : 0));
                    free(two);
                }
            }
            free(want);
            json_decref(tree);
            json_decref(req);
            free(one);
        }
    /* The default sizes: 6,000 one-minute buckets in pieces of 2,048. */
    size_t nbuf;
    agg_store_set_pool(st, NULL);
    char *one = s_test_pieces_text(st, "mean", "1min", t0,
                                   t0 + 6000 * 60 * s1, SIZE_MAX, 1, 0, &nbuf);
    agg_store_set_pool(st, pool);
    for (size_t lend = 0; lend <= 8 << 20; lend += 8 << 20) {
        char *two = s_test_pieces_text(st, "mean", "1min", t0,
                                       t0 + 6000 * 60 * s1, s_pieces_min,
                                       s_piece, lend, &nbuf);
        TEST_STREQ(two, one);
        /* 6,000 buckets in pieces of 2,048, summed as printed: the
         * head's buffer, three pieces, the tail's */
        assert(nbuf == 5);
        assert(s_test_in_lent == (lend ? 3 : 0));
        free(two);
    }
    /* Past the slot's "until" nothing is written into it. */
    s_test_lent_past = true;
    char *late = s_test_pieces_text(st, "mean", "1min", t0,
                                    t0 + 6000 * 60 * s1, s_pieces_min,
                                    s_piece, 8 << 20, &nbuf);
    s_test_lent_past = false;
    TEST_STREQ(late, one);
    assert(nbuf == 5 && s_test_in_lent == 0);
    free(late);
    char *two = xstrdup(one);
    assert(strlen(one) > 6000 * 50);
    free(one);
    free(two);
    agg_store_destroy(&st);
    agg_pool_destroy(&pool);
}

/*
 * The walk along rollup buckets (s_walk) gives the very bits that
 * summarising each interval on its own gives, for every aggregation,
 * steps that walk and steps that do not, one series and three, ragged
 * range ends; and an answer as text is exactly the tree's JSON.
 */
static void
s_test_walk(void)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    static const char *steps[] = {"5min", "15min", "1h", "2h", "1d", "2d",
                                  "90min", "7min"};
    static const char *fns[] = {"mean", "sum", "count", "min", "max",
                                "first", "last", "std", "p90"};
    const char *all[] = {"w{id=a}", "w{id=b}", "w{id=c}"}, *one[] = {"w{id=b}"};
    uint64_t x = 7;

    /* Over AGG_QUERY_RAW_MAX points per series in range: rollups answer. */
    for (int i = 0; i < 4 * 86400 / 2; i++)
        for (int k = 0; k < 3; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            agg_store_put(st, all[k], t0 + (int64_t)i * 2 * s1 +
                                          (int64_t)(x >> 60) * s1 / 16,
                          (double)(int64_t)(x >> 45) / 100 - 1000);
        }
    for (size_t si = 0; si < sizeof steps / sizeof *steps; si++)
        for (size_t fi = 0; fi < sizeof fns / sizeof *fns; fi++)
            for (int sel = 0; sel < 2; sel++) {
                int64_t step, start = t0 + 3600 * s1 + 17 * s1;
                int64_t end = start + 3 * 86400 * s1;
                double pct = 0;
                int fn = agg_stats_fn(fns[fi], &pct);
                json_t *req = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:b}",
                                        "op", "aggregate", "series",
                                        sel ? "w{id=b}" : "w*", "interval",
                                        steps[si], "aggregation", fns[fi],
                                        "start", (json_int_t)start, "end",
                                        (json_int_t)end,
                                        "text", 1), *body, *b;
                struct agg_text text = {.base = 0};
                assert(clock_parse_duration(steps[si], &step) == 0);
                assert(agg_interval_answer(st, req, &body) == 200);
                TEST_STREQ(json_string_value(json_object_get(body, "source")),
                           "rollups");
                b = json_object_get(body, "buckets");
                assert(json_array_size(b) >= 2);
                for (size_t i = 0; i < json_array_size(b); i++) {
                    json_t *e = json_array_get(b, i);
                    int64_t a;
                    uint64_t n;
                    assert(clock_parse_time(json_string_value(json_object_get(
                                                e, "timestamp")), &a) == 0);
                    double want = s_test_ref(st, sel ? one : all, sel ? 1 : 3,
                                             fn, pct, a > start ? a : start,
                                             a + step < end ? a + step : end,
                                             &n);
                    double got = json_is_null(json_object_get(e, "value"))
                                     ? NAN : json_real_value(json_object_get(e, "value"));
                    assert(got == want || (isnan(got) && isnan(want)));
                    assert((uint64_t)json_integer_value(json_object_get(e, "count")) == n);
                }
                /* With parts (apid's lane merge), the same buckets to
                 * rounding, each carrying its series' summaries (or
                 * sketch) that add up to it. */
                json_t *pq = json_deep_copy(req), *pb, *e;
                size_t j;
                json_object_set_new(pq, "parts", json_true());
                assert(agg_interval_answer(st, pq, &pb) == 200);
                s_test_same(pb, body, 1e-9);
                json_array_foreach(json_object_get(pb, "buckets"), j, e) {
                    json_t *parts = json_object_get(e, "parts"), *pt;
                    json_int_t c = 0;
                    size_t u;
                    assert(fn == AGG_FN_PCT ? json_object_get(e, "sketch") != NULL
                                            : json_array_size(parts) >= 1);
                    json_array_foreach(parts, u, pt)
                        c += json_integer_value(json_object_get(pt, "count"));
                    assert(fn == AGG_FN_PCT ||
                           c == json_integer_value(json_object_get(e, "count")));
                }
                json_decref(pb);
                json_decref(pq);
                /* As text: only over one series, and byte for byte. */
                json_t *none;
                assert(agg_interval_reply(st, req, &none, &text) == 200);
                if (sel) {
                    char *want = mpjson_dumps(body), *got = agg_text_join(&text);
                    assert(none == NULL);
                    TEST_STREQ(got, want);
                    free(got);
                    free(want);
                } else {
                    assert(none && agg_text_len(&text) == 0);
                    json_decref(none);
                }
                agg_text_free(&text);
                json_decref(body);
                json_decref(req);
            }
    agg_store_destroy(&st);
}

/* Every bucket of a one-series answer from rollups equals, to the bit,
 * summarising its interval on its own, and no interval with points is
 * missing. */
static void
s_test_check(agg_store_t *st, const char *key, const char *step_s,
             const char *fn_s, int64_t start, int64_t end)
{
    int64_t step;
    double pct = 0;
    int fn = agg_stats_fn(fn_s, &pct);
    json_t *body, *b;
    size_t n = 0;

    assert(clock_parse_duration(step_s, &step) == 0);
    body = s_test_ask(st, json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "op",
                                    "aggregate", "series", key, "interval",
                                    step_s, "aggregation", fn_s, "start",
                                    (json_int_t)start, "end",
                                    (json_int_t)end), 200);
    TEST_STREQ(json_string_value(json_object_get(body, "source")), "rollups");
    b = json_object_get(body, "buckets");
    for (int64_t a = s_floor_div(start, step) * step; a < end; a += step) {
        struct agg_rsum m = {0};
        int64_t lo = a > start ? a : start, hi = a + step < end ? a + step : end;
        agg_store_summarize(st, key, lo, hi, &m, NULL); /* no percentiles */
        double want = agg_interval_value(fn, pct, &m, NULL);
        uint64_t c = m.m.count;
        if (c == 0)
            continue;
        json_t *e = json_array_get(b, n++);
        int64_t ts;
        assert(e && clock_parse_time(json_string_value(json_object_get(
                                         e, "timestamp")), &ts) == 0);
        assert(ts == a && json_real_value(json_object_get(e, "value")) == want);
        assert((uint64_t)json_integer_value(json_object_get(e, "count")) == c);
    }
    assert(n == json_array_size(b));
    json_decref(body);
}

/*
 * One series, counts and sums (s_run_sums, one pass over the minute
 * buckets): the same bits as interval by interval, over ragged ranges,
 * an hour without points, then after late points, overwrites and a
 * deleted range.
 */
static void
s_test_run(void)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S, t0 = 1704067200LL * s1;
    static const char *steps[] = {"5min", "7min", "1h"};
    static const char *fns[] = {"mean", "sum", "count"};
    uint64_t x = 11;
    bool partial;

    for (int i = 0; i < 36 * 3600; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (i / 3600 == 20)
            continue; /* hour 20 has no points */
        agg_store_put(st, "r", t0 + (int64_t)i * s1,
                      (double)(int64_t)(x >> 45) / 100 - 1000);
    }
    for (int round = 0; round < 2; round++) {
        /* (each check summarises every interval on its own: slow) */
        for (size_t si = 0; si < sizeof steps / sizeof *steps; si++) {
            const char *fn = fns[si % (sizeof fns / sizeof *fns)];
            s_test_check(st, "r", steps[si], fn, INT64_MIN / 2,
                         INT64_MAX / 2);
            s_test_check(st, "r", steps[si], fn, t0 + 17 * s1,
                         t0 + 36 * 3600 * s1 - 1801 * s1);
        }
        /* Late points between the others, overwrites, and a deleted
         * range that ends inside a minute. */
        for (int i = 0; i < 400; i++) { /* (an overwrite is slow) */
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            int64_t ts = t0 + (int64_t)(x % (36 * 3600)) * s1 + i % 2 * s1 / 2;
            agg_store_put(st, "r", ts, (double)(int64_t)(x >> 50) / 8);
        }
        assert(agg_store_delete(st, "r", t0 + 30 * 3600 * s1,
                                t0 + 30 * 3600 * s1 + 1290 * s1, &partial) > 0);
    }
    agg_store_destroy(&st);
}

/*
 * Berlin days over a winter/summer change: each local day's count is the
 * hours it really had (23 on 2024-03-31) times 360; the rollup and the
 * raw paths agree, day boundaries are local midnights. A one-hour moving
 * average of 5-minute buckets equals the mean over the 12 buckets ending
 * there. Bad tz and windows are 400s.
 */
/* One time stamp of the text against clock_format. */
static void
s_test_time_one(int64_t ts, int64_t *day0, char date[11])
{
    char got[64], want[40];
    char *end = s_time_text(got, ts, day0, date);

    *end = '\0';
    if (strcmp(got, clock_format(ts, want, sizeof want)) != 0) {
        fprintf(stderr, "agg_interval: %lld: %s, want %s\n", (long long)ts,
                got, want);
        abort();
    }
}

/* The time stamps of the text: both ends of the int64_t range and
 * around 1970, each from no cached day and after the one before, then
 * steps forward over day boundaries and jumps back and ahead. */
static void
s_test_time(void)
{
    static const int64_t at[] = {0, -1, 1, S_DAY - 1, S_DAY, -S_DAY,
                                 -S_DAY - 1, 1711584000LL * CLOCK_NS_PER_S,
                                 INT64_MAX, INT64_MIN, INT64_MIN + 1,
                                 INT64_MIN / S_DAY * S_DAY, INT64_MAX - 1};
    int64_t day0 = INT64_MIN, ts = -3 * S_DAY + 123456789;
    char date[11];
    uint64_t x = 3;

    for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
        int64_t none = INT64_MIN;
        s_test_time_one(at[i], &none, date);
        s_test_time_one(at[i], &day0, date);
    }
    day0 = INT64_MIN;
    for (int i = 0; i < 20000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if (x % 16 == 0) /* a jump, back or ahead */
            ts += (int64_t)(x >> 20) % (40 * S_DAY) - 20 * S_DAY;
        else
            ts += (int64_t)(x >> 40) * CLOCK_NS_PER_MS; /* up to 4.6 h */
        s_test_time_one(ts, &day0, date);
    }
    /* Whole minutes (the buckets of minute intervals), and just after
     * one: 1 ns, under and at a millisecond, a second; over days. */
    static const int64_t after[] = {0, 1, CLOCK_NS_PER_MS - 1,
                                    CLOCK_NS_PER_MS, CLOCK_NS_PER_S,
                                    S_MINUTE - 1};
    for (int k = 1; k <= 7; k += 3) {
        day0 = INT64_MIN;
        ts = -2 * S_DAY + 7 * S_MINUTE;
        for (int i = 0; i < 2 * 1440; i++, ts += k * S_MINUTE)
            s_test_time_one(ts + after[i % 6], &day0, date);
    }
}

void
agg_interval_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    const int64_t s1 = CLOCK_NS_PER_S;
    const int64_t t0 = 1711584000LL * s1; /* 2024-03-28T00:00:00Z */
    json_t *r, *x, *b;
    const char *tz0 = getenv("TZ");

    s_test_time();
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
    s_test_walk();
    s_test_run();
    s_test_pieces();
    (void)verbose;
    TEST_OK("agg_interval");
}
