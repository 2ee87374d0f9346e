/*
 * reading: JSON readings, validated (see reading.h).
 */
#include "common/reading.h"
#include "common/clock.h"
#include "common/series.h"
#include "common/test.h"

#include <math.h>
#include <string.h>

#define S_ERR(f, r)            \
    do {                       \
        err->field = (f);      \
        err->reason = (r);     \
        return -1;             \
    } while (0)

int
reading_ts(const json_t *j, int64_t now, int64_t *ts, struct reading_err *err)
{
    if (j == NULL || json_is_null(j)) {
        *ts = now;
        return 0;
    }
    if (json_is_string(j)) {
        if (clock_parse_rfc3339(json_string_value(j), ts))
            S_ERR("timestamp", "not an RFC 3339 time (2024-01-01T00:00:00Z)");
    } else if (json_is_integer(j)) {
        json_int_t ms = json_integer_value(j);
        if (ms > INT64_MAX / CLOCK_NS_PER_MS || ms < INT64_MIN / CLOCK_NS_PER_MS)
            S_ERR("timestamp", "epoch milliseconds out of range");
        *ts = ms * CLOCK_NS_PER_MS;
    } else {
        S_ERR("timestamp", "must be an RFC 3339 string or epoch milliseconds");
    }
    if (*ts < 0)
        S_ERR("timestamp", "before 1970 is not accepted");
    if (*ts > now + READING_FUTURE_MAX_NS)
        S_ERR("timestamp", "more than a year in the future");
    return 0;
}

int
reading_value(const json_t *j, double *v, struct reading_err *err)
{
    if (j == NULL)
        S_ERR("value", "missing");
    if (!json_is_number(j))
        S_ERR("value", "must be a number");
    *v = json_number_value(j);
    if (!isfinite(*v))
        S_ERR("value", "must be finite (NaN and infinities are rejected)");
    return 0;
}

int
reading_key(const char *name, const json_t *tags, char *key, size_t keylen,
            struct reading_err *err)
{
    struct series_tag t[SERIES_TAGS_MAX];
    size_t nt = 0;
    const char *k, *why;
    json_t *v;

    if ((why = series_name_check(name, strlen(name))))
        S_ERR("name", why);
    if (tags && !json_is_object(tags))
        S_ERR("tags", "must be an object of strings");
    json_object_foreach((json_t *)tags, k, v) {
        if (nt == SERIES_TAGS_MAX)
            S_ERR("tags", "more than 32 tags");
        if (!json_is_string(v))
            S_ERR("tags", "tag values must be strings");
        if ((why = series_tag_key_check(k)) ||
            (why = series_tag_value_check(json_string_value(v))))
            S_ERR("tags", why);
        t[nt].key = k;
        t[nt].value = json_string_value(v);
        nt++;
    }
    if (series_key_build(name, t, nt, key, keylen) < 0)
        S_ERR("tags", "series key too long or a tag repeats");
    return 0;
}

int
reading_parse(const json_t *obj, int64_t now, char *key, size_t keylen,
              int64_t *ts, double *v, struct reading_err *err)
{
    const json_t *s, *n;

    if (!json_is_object(obj))
        S_ERR("", "a reading must be a JSON object");
    s = json_object_get(obj, "series");
    n = json_object_get(obj, "name");
    if (s) {
        char name[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
        struct series_tag t[SERIES_TAGS_MAX];
        int nt;
        const char *why;
        if (!json_is_string(s))
            S_ERR("series", "must be a string");
        nt = series_key_parse(json_string_value(s), name, sizeof name, tb,
                              sizeof tb, t, SERIES_TAGS_MAX);
        if (nt < 0)
            S_ERR("series", "not a series key like name{k=v}");
        if ((why = series_name_check(name, strlen(name))))
            S_ERR("series", why);
        for (int i = 0; i < nt; i++)
            if ((why = series_tag_key_check(t[i].key)) ||
                (why = series_tag_value_check(t[i].value)))
                S_ERR("series", why);
        if (series_key_build(name, t, (size_t)nt, key, keylen) < 0)
            S_ERR("series", "series key too long or a tag repeats");
    } else if (n) {
        if (!json_is_string(n))
            S_ERR("name", "must be a string");
        if (reading_key(json_string_value(n), json_object_get(obj, "tags"), key,
                        keylen, err))
            return -1;
    } else {
        S_ERR("name", "missing (give \"name\" or \"series\")");
    }
    if (reading_value(json_object_get(obj, "value"), v, err))
        return -1;
    return reading_ts(json_object_get(obj, "timestamp"), now, ts, err);
}

void
reading_test(bool verbose)
{
    char key[SERIES_KEY_MAX];
    int64_t ts, now = clock_now_ns();
    double v;
    struct reading_err err;
    json_t *j;

    j = json_loads("{\"name\":\"api.latency\",\"value\":23.5,"
                   "\"timestamp\":\"2024-01-01T00:00:00Z\"}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == 0);
    TEST_STREQ(key, "api.latency");
    assert(v == 23.5 && ts == 1704067200LL * CLOCK_NS_PER_S);
    json_decref(j);
    j = json_loads("{\"name\":\"t\",\"tags\":{\"z\":\"1\",\"a\":\"2\"},"
                   "\"value\":1,\"timestamp\":1634567890000}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == 0);
    TEST_STREQ(key, "t{a=2,z=1}");
    json_decref(j);
    j = json_loads("{\"series\":\"t{z=1,a=2}\",\"value\":1}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == 0);
    TEST_STREQ(key, "t{a=2,z=1}");
    assert(ts == now);
    json_decref(j);
    j = json_loads("{\"name\":\"t\",\"value\":\"x\"}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == -1);
    TEST_STREQ(err.field, "value");
    json_decref(j);
    j = json_loads("{\"value\":1}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == -1);
    TEST_STREQ(err.field, "name");
    json_decref(j);
    j = json_loads("{\"name\":\"t\",\"value\":1,\"timestamp\":\"yesterday\"}",
                   0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == -1);
    TEST_STREQ(err.field, "timestamp");
    json_decref(j);
    j = json_loads("{\"name\":\"t\",\"value\":1,\"timestamp\":-5}", 0, NULL);
    assert(reading_parse(j, now, key, sizeof key, &ts, &v, &err) == -1);
    json_decref(j);
    (void)verbose;
    TEST_OK("reading");
}
