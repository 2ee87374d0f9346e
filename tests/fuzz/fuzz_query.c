/*
 * fuzz_query: libFuzzer target for the query parameters apid takes from
 * clients and aggd interprets: times (start, end: RFC 3339, YYYY-MM-DD,
 * epoch ms), durations, the percentiles list, a series selector, the
 * interval, aggregation, tz and window of /api/v1/aggregate.
 *
 * The input is up to eight fields separated by newlines, in that order:
 * start, end, percentiles, series, interval, aggregation, tz, window.
 * Each is parsed as apid does (clock_parse_time, clock_parse_duration,
 * apid_percentiles_arg, URL decoding), then a stats and an aggregate
 * request are built as apid builds them and answered by aggd's own query
 * code over a small store: every answer is a status apid relays (200,
 * 400, 404, 413) with a body, never a crash. A time that parses and
 * formats back (whole milliseconds, after 1970) must parse to the
 * same instant again.
 */
#include "aggd/agg_query.h"
#include "aggd/agg_store.h"
#include "apid/apid.h"
#include "common/clock.h"
#include "common/strutil.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { F_START, F_END, F_PCTS, F_SERIES, F_INTERVAL, F_AGG, F_TZ, F_WINDOW, F_MAX };

static agg_store_t *s_store;

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int64_t t0 = 1704067200000000000LL; /* 2024-01-01 */
    (void)argc;
    (void)argv;
    s_store = agg_store_new();
    for (int i = 0; i < 600; i++) {
        agg_store_put(s_store, "temperature{device=s1}", t0 + (int64_t)i * 60000000000LL,
                      20 + (i % 17) * 0.5);
        agg_store_put(s_store, "api.latency", t0 + (int64_t)i * 7000000000LL, i % 100);
    }
    agg_store_put(s_store, "temperature{device=s2}", t0, -1e300);
    return 0;
}

static void
s_time_roundtrip(const char *s, int64_t ts)
{
    char buf[40];
    int64_t back;

    (void)s;
    if (ts < 0 || ts % 1000000 != 0) /* int64 ns end in 2262 */
        return;
    clock_format(ts, buf, sizeof buf);
    assert(clock_parse_time(buf, &back) == 0 && back == ts);
}

static void
s_answer(json_t *q)
{
    json_t *body = NULL;
    int st = agg_query_answer(s_store, q, &body);
    assert(st == 200 || st == 400 || st == 404 || st == 413);
    assert(body != NULL);
    json_decref(body);
    json_decref(q);
}

static void
s_set_str(json_t *q, const char *key, const char *v)
{
    if (v && strutil_utf8_valid(v, strlen(v)))
        json_object_set_new(q, key, json_string(v));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf, *f[F_MAX] = {0}, *save = NULL;
    int64_t ts[2], dur;
    bool have[2] = {false, false};
    json_t *pcts = NULL, *q;

    if (size > 8192)
        return 0;
    buf = malloc(size + 1);
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* strsep, not strtok: empty fields count. */
    save = buf;
    for (int i = 0; i < F_MAX && save; i++)
        f[i] = strsep(&save, "\n");
    for (int i = 0; i < 2; i++)
        if (f[i] && strutil_urldecode(f[i], true) == 0 &&
            clock_parse_time(f[i], &ts[i]) == 0) {
            have[i] = true;
            s_time_roundtrip(f[i], ts[i]);
        }
    if (f[F_INTERVAL] && clock_parse_duration(f[F_INTERVAL], &dur) == 0)
        assert(dur >= 0);
    if (f[F_PCTS] && (pcts = apid_percentiles_arg(f[F_PCTS]))) {
        size_t i;
        json_t *p;
        json_array_foreach(pcts, i, p)
            assert(json_real_value(p) >= 0 && json_real_value(p) <= 100);
    }
    if (f[F_SERIES] && strutil_urldecode(f[F_SERIES], false) == -1)
        f[F_SERIES] = NULL;

    q = json_pack("{s:s, s:s}", "op", "stats", "series", "temperature");
    s_set_str(q, "series", f[F_SERIES]);
    for (int i = 0; i < 2; i++)
        if (have[i])
            json_object_set_new(q, i ? "end" : "start", json_integer(ts[i]));
    if (pcts)
        json_object_set(q, "percentiles", pcts);
    s_answer(q);

    q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series", "temperature",
                  "interval", "5min", "aggregation", "mean");
    s_set_str(q, "series", f[F_SERIES]);
    s_set_str(q, "interval", f[F_INTERVAL]);
    s_set_str(q, "aggregation", f[F_AGG]);
    s_set_str(q, "tz", f[F_TZ]);
    s_set_str(q, "window", f[F_WINDOW]);
    for (int i = 0; i < 2; i++)
        if (have[i])
            json_object_set_new(q, i ? "end" : "start", json_integer(ts[i]));
    s_answer(q);

    json_decref(pcts);
    free(buf);
    return 0;
}
