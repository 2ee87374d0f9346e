/*
 * api_telemetry: a device's readings in the seed form (see
 * api_telemetry.h). aggd answers {matched, count, truncated, series:
 * [{series, points}]}; this reshapes it around the device.
 */
#include "apid/api_telemetry.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <string.h>

#define TELEMETRY_PREFIX "/api/telemetry/"
#define TELEMETRY_LIMIT_MAX 100000

struct s_tq {
    char *device; /* deviceId */
    char *metric; /* metric= or NULL */
    bool csv;     /* format=csv */
};

static void
s_tq_free(struct s_tq *q)
{
    free(q->device);
    free(q->metric);
    free(q);
}

/* Append v as a CSV field (quoted when it holds , " or a newline). */
static void
s_csv_field(char **out, size_t *len, size_t *cap, const char *v)
{
    size_t need = strlen(v) * 2 + 3;
    bool quote = strpbrk(v, ",\"\r\n") != NULL;

    if (*len + need + 1 > *cap) {
        *cap = (*len + need + 1) * 2;
        *out = xrealloc(*out, *cap);
    }
    if (quote)
        (*out)[(*len)++] = '"';
    for (const char *p = v; *p; p++) {
        if (*p == '"' && quote)
            (*out)[(*len)++] = '"';
        (*out)[(*len)++] = *p;
    }
    if (quote)
        (*out)[(*len)++] = '"';
    (*out)[*len] = '\0';
}

/* Append separators as they are. */
static void
s_csv_raw(char **out, size_t *len, size_t *cap, const char *v)
{
    size_t n = strlen(v);

    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *out = xrealloc(*out, *cap);
    }
    memcpy(*out + *len, v, n + 1);
    *len += n;
}

static char *
s_csv(json_t *series, size_t *len)
{
    size_t cap = 256, i, j;
    char *out = xmalloc(cap), num[40];
    json_t *s, *pt;

    *len = 0;
    s_csv_raw(&out, len, &cap, "series,timestamp,value\n");
    json_array_foreach(series, i, s) {
        json_array_foreach(json_object_get(s, "points"), j, pt) {
            s_csv_field(&out, len, &cap, json_string_value(
                json_object_get(s, "series")) ?: "");
            s_csv_raw(&out, len, &cap, ",");
            s_csv_field(&out, len, &cap, json_string_value(
                json_object_get(pt, "timestamp")) ?: "");
            s_csv_raw(&out, len, &cap, ",");
            s_csv_field(&out, len, &cap, strutil_dtoa(json_number_value(
                json_object_get(pt, "value")), num, sizeof num));
            s_csv_raw(&out, len, &cap, "\n");
        }
    }
    return out;
}

static void
s_on_points(apid_t *apid, http_req_t *req, int status, json_t *body,
            void *arg)
{
    struct s_tq *q = arg;
    json_t *series = json_object_get(body, "series"), *s;
    size_t i;

    if (status == 404) {
        http_req_reply_error(req, 404, "not_found",
                             q->metric ? "no such metric for this device"
                                       : "no telemetry for this device",
                             q->device);
    } else if (status != 200) {
        http_req_reply_json(req, status, json_incref(body));
    } else if (q->csv) {
        size_t len;
        char *csv = s_csv(series, &len);
        http_req_reply(req, 200, "text/csv; charset=utf-8", csv, len);
    } else {
        json_array_foreach(series, i, s) {
            char name[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
            struct series_tag tags[SERIES_TAGS_MAX];
            const char *key = json_string_value(json_object_get(s, "series"));
            if (key && series_key_parse(key, name, sizeof name, tb, sizeof tb,
                                        tags, SERIES_TAGS_MAX) >= 0)
                json_object_set_new(s, "metric", json_string(name));
        }
        http_req_reply_json(req, 200, json_pack(
            "{s:s, s:s?, s:O, s:O, s:O}", "deviceId", q->device, "metric",
            q->metric, "count", json_object_get(body, "count"), "truncated",
            json_object_get(body, "truncated"), "series", series));
    }
    json_decref(body);
    s_tq_free(q);
}

int
api_telemetry_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req), *v;
    struct s_tq *q;
    json_t *query;
    long long limit = TELEMETRY_LIMIT_MAX;
    char *device;

    if (strncmp(path, TELEMETRY_PREFIX, strlen(TELEMETRY_PREFIX)))
        return 0;
    if (!apid_method(req, "GET"))
        return 1;
    device = apid_path_arg(path, TELEMETRY_PREFIX);
    if (device == NULL || series_tag_value_check(device)) {
        free(device);
        http_req_reply_error(req, 400, "bad_request", "not a device id",
                             "deviceId");
        return 1;
    }
    v = http_req_arg(req, "metric");
    if (v && series_name_check(v, strlen(v))) {
        free(device);
        http_req_reply_error(req, 400, "bad_request", "not a metric name",
                             "metric");
        return 1;
    }
    q = xcalloc(1, sizeof *q);
    q->device = device;
    q->metric = v ? xstrdup(v) : NULL;
    v = http_req_arg(req, "format");
    if (v && strcmp(v, "json") && strcmp(v, "csv")) {
        s_tq_free(q);
        http_req_reply_error(req, 400, "bad_request", "format is json or csv",
                             "format");
        return 1;
    }
    q->csv = v && !strcmp(v, "csv");
    if ((v = http_req_arg(req, "limit")) &&
        strutil_toll(v, 1, TELEMETRY_LIMIT_MAX, &limit)) {
        s_tq_free(q);
        http_req_reply_error(req, 400, "bad_request", "limit must be 1..100000",
                             "limit");
        return 1;
    }
    query = json_pack("{s:s, s:s, s:I}", "op", "points", "series",
                      q->metric ? q->metric : "*", "limit", (json_int_t)limit);
    if (apid_range_args(req, query)) {
        json_decref(query);
        s_tq_free(q);
        return 1;
    }
    json_object_set_new(json_object_get(query, "tags"), "device",
                        json_string(q->device));
    apid_ask(apid, req, APID_BK_AGGD, query, s_on_points, q);
    return 1;
}

void
api_telemetry_test(bool verbose)
{
    json_t *s = json_pack("[{s:s, s:[{s:s, s:f}]}]", "series",
                          "temperature{device=a,b}", "points", "timestamp",
                          "2024-01-01T00:00:00.000Z", "value", 22.5);
    size_t len;
    char *csv = s_csv(s, &len);

    TEST_STREQ(csv, "series,timestamp,value\n"
                    "\"temperature{device=a,b}\",2024-01-01T00:00:00.000Z,22.5\n");
    assert(len == strlen(csv));
    free(csv);
    json_decref(s);
    (void)verbose;
    TEST_OK("api_telemetry");
}
