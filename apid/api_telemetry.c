/*
 * api_telemetry: a device's readings in the seed form (see
 * api_telemetry.h). aggd answers {matched, count, truncated, series:
 * [{series, points}]}; this reshapes it around the device.
 */
#include "apid/api_telemetry.h"
#include "apid/api_export.h"
#include "common/series.h"
#include "common/strutil.h"
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
    if (q->csv) {
        /* Streamed, the whole range (limit applies to JSON only). */
        json_object_del(query, "limit");
        api_export_start(apid, req, q->metric ? q->metric : "*", query,
                         API_EXPORT_CSV, q->device);
        s_tq_free(q);
        return 1;
    }
    apid_ask(apid, req, APID_BK_AGGD, query, s_on_points, q);
    return 1;
}
