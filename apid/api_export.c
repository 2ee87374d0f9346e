/*
 * api_export: streamed CSV and NDJSON exports (see api_export.h).
 *
 * One export is a small state machine between two callers: MHD pulls
 * bytes (s_pull) and aggd answers pages (s_on_page). Whoever finishes
 * last frees it: MHD says it is done with the stream (s_done), and an
 * aggd question may still be in flight then.
 */
#include "apid/api_export.h"
#include "common/clock.h"
#include "common/mpjson.h"
#include "common/strbuf.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <string.h>

#define EXPORT_GROW 4 /* window factor after a sparse page */

struct s_exp {
    apid_t *apid;            /* owner */
    http_stream_t *stream;   /* the reply; NULL once MHD is done with it */
    enum api_export_format fmt;
    char *sel;               /* where a 404 points */
    json_t *keys;            /* series to export: [{series, stop}] */
    size_t ki;               /* the one being exported */
    bool has_start;          /* the client gave a start */
    int64_t start;           /* inclusive start of the range (ns) */
    int64_t cursor;          /* next ns of the current series to ask for */
    int64_t stop;            /* exclusive end for the current series */
    int64_t window;          /* ns a page asks for; 0 = up to stop */
    struct strbuf out;       /* encoded bytes not yet taken by MHD */
    size_t off;              /* how far MHD took them */
    bool asking;             /* a page question is in flight */
    bool pulling;            /* inside s_pull (do not wake MHD) */
    bool done;               /* MHD finished with the stream */
    bool finished;           /* every series exported */
    bool failed;             /* aggd failed mid-stream: cut the body */
};

static void s_next(struct s_exp *x);

static void
s_free(struct s_exp *x)
{
    json_decref(x->keys);
    free(x->sel);
    strbuf_free(&x->out);
    free(x);
}

/* --- encoding ------------------------------------------------------------ */

static void
s_add(struct s_exp *x, const char *s, size_t n)
{
    strbuf_add(&x->out, s, n);
}

/* A CSV field, quoted when it holds a comma, quote or line break. */
static void
s_csv_field(struct s_exp *x, const char *v)
{
    bool quote = strpbrk(v, ",\"\r\n") != NULL;

    if (!quote) {
        s_add(x, v, strlen(v));
        return;
    }
    s_add(x, "\"", 1);
    for (const char *p = v; *p; p++) {
        size_t n = strcspn(p, "\"");
        s_add(x, p, n);
        p += n;
        if (*p == '\0')
            break;
        s_add(x, "\"\"", 2);
    }
    s_add(x, "\"", 1);
}

/* One point (aggd's {timestamp, value, ns}) of series key. */
static void
s_line(struct s_exp *x, const char *key, const json_t *pt)
{
    const char *ts = json_string_value(json_object_get(pt, "timestamp"));
    json_t *v = json_object_get(pt, "value");
    char num[40];

    if (x->fmt == API_EXPORT_CSV) {
        s_csv_field(x, key);
        s_add(x, ",", 1);
        s_csv_field(x, ts ? ts : "");
        s_add(x, ",", 1);
        /* aggd prints a value it cannot hold as a double as null. */
        if (json_is_number(v))
            s_csv_field(x, strutil_dtoa(json_number_value(v), num, sizeof num));
        s_add(x, "\n", 1);
    } else {
        json_t *o = json_pack("{s:s, s:s?, s:O}", "series", key, "timestamp",
                              ts, "value", v ? v : json_null());
        char *s = mpjson_dumps(o);
        s_add(x, s, strlen(s));
        s_add(x, "\n", 1);
        free(s);
        json_decref(o);
    }
}

/* --- paging ------------------------------------------------------------- */

static int64_t
s_sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* The window after a page of n points from first to last (ns): about
 * the span a full page covers, wider after a sparse one. */
static int64_t
s_window(int64_t window, int64_t first, int64_t last, size_t n, bool full)
{
    if (full)
        return last > first ? s_sat_add(last - first, 1) : 1;
    if (window == 0 || n >= API_EXPORT_PAGE / EXPORT_GROW)
        return window;
    return window > INT64_MAX / EXPORT_GROW ? INT64_MAX : window * EXPORT_GROW;
}

/* Move to series ki (or finish). */
static void
s_series(struct s_exp *x)
{
    json_t *k = json_array_get(x->keys, x->ki);

    if (k == NULL) {
        x->finished = true;
        return;
    }
    x->cursor = x->start;
    x->stop = json_integer_value(json_object_get(k, "stop"));
    x->window = 0;
}

static void
s_on_page(apid_t *apid, http_req_t *req, int status, json_t *body, void *arg)
{
    struct s_exp *x = arg;
    json_t *k = json_array_get(x->keys, x->ki);
    const char *key = json_string_value(json_object_get(k, "series"));
    json_t *s = json_array_get(json_object_get(body, "series"), 0);
    json_t *pts = json_object_get(s, "points"), *pt;
    int64_t from = x->cursor, last = from, page_end;
    size_t i, n = json_array_size(pts);
    bool full = n >= API_EXPORT_PAGE;

    (void)apid;
    (void)req;
    x->asking = false;
    if (x->done) {
        json_decref(body);
        s_free(x);
        return;
    }
    page_end = x->window ? s_sat_add(from, x->window) : x->stop;
    if (page_end > x->stop)
        page_end = x->stop;
    if (status == 200) {
        int64_t first = json_integer_value(
            json_object_get(json_array_get(pts, 0), "ns"));
        json_array_foreach(pts, i, pt) {
            s_line(x, key, pt);
            last = json_integer_value(json_object_get(pt, "ns"));
        }
        /* Measured from the page's first point: the cursor may be the
         * range's open start. */
        x->window = s_window(x->window, first, last, n, full);
        x->cursor = full ? s_sat_add(last, 1) : page_end;
        if (x->cursor >= x->stop) {
            x->ki++;
            s_series(x);
        }
    } else if (status == 404) {
        x->ki++; /* gone since the listing (retention): skip it */
        s_series(x);
    } else {
        x->failed = true;
    }
    json_decref(body);
    if (!x->pulling)
        http_stream_wake(x->stream); /* may free x: last */
}

static void
s_next(struct s_exp *x)
{
    json_t *k = json_array_get(x->keys, x->ki);
    json_t *q = json_pack("{s:s, s:O, s:I, s:I, s:b}", "op", "points",
                          "series", json_object_get(k, "series"), "end",
                          (json_int_t)x->stop, "limit",
                          (json_int_t)API_EXPORT_PAGE, "ns", 1);

    if (x->window && s_sat_add(x->cursor, x->window) < x->stop)
        json_object_set_new(q, "end",
                            json_integer(x->cursor + x->window));
    if (x->has_start || x->cursor != x->start)
        json_object_set_new(q, "start", json_integer(x->cursor));
    x->asking = true;
    apid_ask(x->apid, NULL, APID_BK_AGGD, q, s_on_page, x);
}

static ssize_t
s_pull(void *arg, char *buf, size_t max)
{
    struct s_exp *x = arg;
    size_t n;

    if (x->off == x->out.len && !x->finished && !x->failed && !x->asking) {
        x->off = 0;
        strbuf_reset(&x->out);
        x->pulling = true;
        s_next(x); /* a full backend queue answers at once */
        x->pulling = false;
    }
    if (x->off < x->out.len) {
        n = x->out.len - x->off < max ? x->out.len - x->off : max;
        memcpy(buf, x->out.p + x->off, n);
        x->off += n;
        return (ssize_t)n;
    }
    if (x->failed)
        return HTTP_STREAM_ABORT;
    return x->finished ? HTTP_STREAM_END : HTTP_STREAM_WAIT;
}

static void
s_done(void *arg)
{
    struct s_exp *x = arg;

    x->stream = NULL;
    x->done = true;
    if (!x->asking)
        s_free(x);
}

/* --- start --------------------------------------------------------------- */

/* The listing of matching series came: keep those with points in the
 * range, each up to its last point, and start the stream. */
static void
s_on_list(apid_t *apid, http_req_t *req, int status, json_t *body, void *arg)
{
    struct s_exp *x = arg;
    json_t *e;
    size_t i;
    int64_t end = x->stop;

    (void)apid;
    if (status != 200) {
        http_req_reply_json(req, status, body);
        s_free(x);
        return;
    }
    if (json_array_size(json_object_get(body, "series")) == 0) {
        json_decref(body);
        http_req_reply_error(req, 404, "not_found", "no such series",
                             x->sel);
        s_free(x);
        return;
    }
    x->keys = json_array();
    json_array_foreach(json_object_get(body, "series"), i, e) {
        const char *last = json_string_value(json_object_get(e, "last"));
        int64_t stop;
        if (last == NULL || clock_parse_rfc3339(last, &stop))
            continue;
        /* "last" has milliseconds: everything within its millisecond. */
        stop = s_sat_add(stop, CLOCK_NS_PER_MS);
        if (stop > end)
            stop = end;
        json_array_append_new(x->keys, json_pack(
            "{s:O, s:I}", "series", json_object_get(e, "series"), "stop",
            (json_int_t)stop));
    }
    json_decref(body);
    if (x->fmt == API_EXPORT_CSV)
        s_add(x, "series,timestamp,value\n", 23);
    s_series(x);
    x->stream = http_req_stream(req, 200, x->fmt == API_EXPORT_CSV
                                              ? "text/csv; charset=utf-8"
                                              : "application/x-ndjson",
                                s_pull, s_done, x);
}

void
api_export_start(apid_t *apid, http_req_t *req, const char *sel, json_t *q,
                 enum api_export_format fmt, const char *where)
{
    struct s_exp *x = xcalloc(1, sizeof *x);
    json_t *v;

    x->apid = apid;
    x->fmt = fmt;
    x->sel = xstrdup(where ? where : sel);
    x->start = INT64_MIN;
    x->stop = INT64_MAX;
    if ((v = json_object_get(q, "start"))) {
        x->has_start = true;
        x->start = json_integer_value(v);
    }
    if ((v = json_object_get(q, "end")))
        x->stop = json_integer_value(v);
    json_object_set_new(q, "op", json_string("series"));
    json_object_set_new(q, "series", json_string(sel));
    apid_ask(apid, req, APID_BK_AGGD, q, s_on_list, x);
}

int
api_export_format(http_req_t *req)
{
    const char *f = http_req_arg(req, "format");

    if (f == NULL || !strcmp(f, "json"))
        return -1;
    if (!strcmp(f, "csv"))
        return API_EXPORT_CSV;
    if (!strcmp(f, "ndjson"))
        return API_EXPORT_NDJSON;
    http_req_reply_error(req, 400, "bad_request",
                         "format is json, csv or ndjson", "format");
    return -2;
}

void
api_export_test(bool verbose)
{
    struct s_exp x = {.fmt = API_EXPORT_CSV};
    json_t *pt = json_pack("{s:s, s:f, s:I}", "timestamp",
                           "2024-01-01T00:00:00.000Z", "value", 22.5, "ns",
                           (json_int_t)1704067200000000000LL);

    s_line(&x, "temperature{device=a,b}", pt);
    s_line(&x, "say\"hi\"", pt);
    TEST_STREQ(x.out.p, "\"temperature{device=a,b}\",2024-01-01T00:00:00.000Z,22.5\n"
                      "\"say\"\"hi\"\"\",2024-01-01T00:00:00.000Z,22.5\n");
    strbuf_reset(&x.out);
    x.fmt = API_EXPORT_NDJSON;
    s_line(&x, "t{device=\"q\"}", pt);
    TEST_STREQ(x.out.p, "{\"series\":\"t{device=\\\"q\\\"}\",\"timestamp\":"
                      "\"2024-01-01T00:00:00.000Z\",\"value\":22.5}\n");
    strbuf_free(&x.out);
    json_decref(pt);

    /* A full page sets the window to its span; a sparse one widens it;
     * a moderately filled one keeps it. */
    assert(s_window(0, 100, 199, API_EXPORT_PAGE, true) == 100);
    assert(s_window(100, 200, 0, 10, false) == 100 * EXPORT_GROW);
    assert(s_window(100, 200, 0, API_EXPORT_PAGE / 2, false) == 100);
    assert(s_window(0, 200, 0, 10, false) == 0);
    assert(s_window(INT64_MAX / 2, 0, 0, 0, false) == INT64_MAX);
    assert(s_sat_add(INT64_MAX - 1, 5) == INT64_MAX);
    (void)verbose;
    TEST_OK("api_export");
}
