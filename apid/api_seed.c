/*
 * api_seed: the routes of the seed API (SPEC.md): ingest and record
 * (handed to ingestd), stats, aggregate, series listing and export (aggd),
 * anomalies (anomalyd), alerts (alertd).
 */
#include "apid/api_seed.h"
#include "apid/api_auth.h"
#include "apid/api_export.h"
#include "apid/api_tenant.h"
#include "common/clock.h"
#include "common/strutil.h"
#include "common/xalloc.h"

#include <string.h>

static void
s_route_ingest(apid_t *self, http_req_t *req, const char *form)
{
    size_t len;
    const char *body = http_req_body(req, &len);

    if (!strutil_utf8_valid(body, len)) {
        http_req_reply_error(req, 400, "invalid_body",
                             "body is not valid UTF-8 JSON", "body");
        return;
    }
    apid_relay(self, req, APID_BK_INGESTD,
            json_pack("{s:s, s:s, s:s%}", "op", "ingest", "form", form, "body",
                      body, len));
}

/* ?NAME=true|false (also 1|0) into q. Returns 0, or -1 after a 400. */
static int
s_bool_arg(http_req_t *req, json_t *q, const char *name)
{
    const char *v = http_req_arg(req, name);
    char why[64];

    if (v == NULL)
        return 0;
    if (strcmp(v, "true") && strcmp(v, "1") && strcmp(v, "false") &&
        strcmp(v, "0")) {
        snprintf(why, sizeof why, "%s must be true or false", name);
        http_req_reply_error(req, 400, "bad_request", why, name);
        return -1;
    }
    json_object_set_new(q, name, json_boolean(!strcmp(v, "true") ||
                                              !strcmp(v, "1")));
    return 0;
}

static int
s_exact_arg(http_req_t *req, json_t *q)
{
    return s_bool_arg(req, q, "exact");
}

json_t *
apid_percentiles_arg(const char *s)
{
    json_t *arr = json_array();
    char *copy = xstrdup(s), *save = NULL;

    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        double p;
        if (t[0] == 'p')
            t++;
        if (strutil_tod(t, &p) || p < 0 || p > 100) {
            json_decref(arr);
            arr = NULL;
            break;
        }
        json_array_append_new(arr, json_real(p));
    }
    free(copy);
    return arr;
}

static void
s_route_stats(apid_t *self, http_req_t *req, const char *series)
{
    json_t *q = json_pack("{s:s, s:s}", "op", "stats", "series", series);
    const char *pcts = http_req_arg(req, "percentiles");

    if (apid_range_args(req, q) || s_exact_arg(req, q)) {
        json_decref(q);
        return;
    }
    if (pcts) {
        json_t *arr = apid_percentiles_arg(pcts);
        if (arr == NULL) {
            json_decref(q);
            http_req_reply_error(req, 400, "bad_request",
                                 "percentiles must be numbers in [0, 100]",
                                 "percentiles");
            return;
        }
        json_object_set_new(q, "percentiles", arr);
    }
    apid_relay(self, req, APID_BK_AGGD, q);
}

static void
s_route_aggregate(apid_t *self, http_req_t *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, 0, &jerr), *q;
    const char *metric, *interval, *agg;
    char msg[200];

    if (in == NULL || !json_is_object(in)) {
        snprintf(msg, sizeof msg, "malformed JSON: %.150s",
                 in ? "must be an object" : jerr.text);
        json_decref(in);
        http_req_reply_error(req, 400, "invalid_body", msg, "body");
        return;
    }
    metric = json_string_value(json_object_get(in, "metric_name"));
    interval = json_string_value(json_object_get(in, "interval"));
    agg = json_string_value(json_object_get(in, "aggregation"));
    if (metric == NULL || interval == NULL) {
        json_decref(in);
        http_req_reply_error(req, 400, "invalid_body",
                             "metric_name and interval are required strings",
                             metric ? "interval" : "metric_name");
        return;
    }
    q = json_pack("{s:s, s:s, s:s, s:s}", "op", "aggregate", "series", metric,
                  "interval", interval, "aggregation", agg ? agg : "mean");
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "end" : "start";
        json_t *v = json_object_get(in, name);
        int64_t ts;
        if (v == NULL)
            continue;
        if (!json_is_string(v) || clock_parse_time(json_string_value(v), &ts)) {
            json_decref(q);
            json_decref(in);
            http_req_reply_error(req, 400, "invalid_body",
                                 "not a time (RFC 3339, YYYY-MM-DD or epoch ms)", name);
            return;
        }
        json_object_set_new(q, name, json_integer(ts));
    }
    if (json_object_get(in, "tags"))
        json_object_set(q, "tags", json_object_get(in, "tags"));
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "window" : "tz";
        json_t *v = json_object_get(in, name);
        const char *arg = http_req_arg(req, name);
        if (v && !json_is_string(v)) {
            json_decref(q);
            json_decref(in);
            http_req_reply_error(req, 400, "invalid_body",
                                 i ? "window must be a duration string like 1h"
                                   : "tz must be a time zone name string",
                                 name);
            return;
        }
        if (v || arg)
            json_object_set_new(q, name, json_string(v ? json_string_value(v) : arg));
    }
    if (json_object_get(in, "exact")) {
        if (!json_is_boolean(json_object_get(in, "exact"))) {
            json_decref(q);
            json_decref(in);
            http_req_reply_error(req, 400, "invalid_body",
                                 "exact must be true or false", "exact");
            return;
        }
        json_object_set(q, "exact", json_object_get(in, "exact"));
    }
    json_decref(in);
    if (s_exact_arg(req, q)) {
        json_decref(q);
        return;
    }
    apid_relay(self, req, APID_BK_AGGD, q);
}

static void
s_route_anomalies(apid_t *self, http_req_t *req, const char *series)
{
    json_t *q = json_pack("{s:s, s:s}", "op", "anomalies", "series", series);
    static const char *nums[] = {"threshold", "min_score"};
    const char *v;
    double d;

    for (int i = 0; i < 2; i++) {
        if ((v = http_req_arg(req, nums[i])) == NULL)
            continue;
        if (strutil_tod(v, &d) || d < 0) {
            json_decref(q);
            http_req_reply_error(req, 400, "bad_request",
                                 "must be a non-negative number", nums[i]);
            return;
        }
        json_object_set_new(q, nums[i], json_real(d));
    }
    if ((v = http_req_arg(req, "method")))
        json_object_set_new(q, "method", json_string(v));
    if (apid_limit_arg(req, q) || apid_range_args(req, q) ||
        s_bool_arg(req, q, "alarm")) {
        json_decref(q);
        return;
    }
    apid_relay(self, req, APID_BK_ANOMALYD, q);
}

static void
s_route_series(apid_t *self, http_req_t *req, int op_points, const char *series)
{
    json_t *q = json_pack("{s:s, s:s}", "op", op_points ? "points" : "series",
                          "series", series);
    int fmt = op_points ? api_export_format(req) : -1;

    if (fmt == -2) {
        json_decref(q);
        return;
    }
    if (fmt >= 0) {
        if (apid_range_args(req, q))
            json_decref(q);
        else
            api_export_start(self, req, series, q, fmt, NULL);
        return;
    }

    if (apid_limit_arg(req, q) || apid_range_args(req, q)) {
        json_decref(q);
        return;
    }
    apid_relay(self, req, APID_BK_AGGD, q);
}

/* GET /api/alerts?limit=&offset=: the page of ?limit= (1..1000, default
 * 1000) from ?offset= (default 0). Returns 0, or -1 (after a 400 when
 * reply). */
#define S_ALERTS_MAX 1000
static int
s_alerts_page(http_req_t *req, bool reply, long long *limit, long long *offset)
{
    static const char *names[] = {"limit", "offset"};
    long long *out[] = {limit, offset}, def[] = {S_ALERTS_MAX, 0},
              min[] = {1, 0}, max[] = {S_ALERTS_MAX, INT32_MAX};

    for (int i = 0; i < 2; i++) {
        const char *v = http_req_arg(req, names[i]);
        *out[i] = def[i];
        if (v && strutil_toll(v, min[i], max[i], out[i])) {
            if (reply)
                http_req_reply_error(req, 400, "bad_request",
                                     i ? "offset must be an integer >= 0"
                                       : "limit must be 1..1000", names[i]);
            return -1;
        }
    }
    return 0;
}

/* alertd's alert list, narrowed to the caller's tenant, one page of it
 * (in alertd's order: series, then rule) with the total. */
static void
s_on_alerts(apid_t *self, http_req_t *req, int status, json_t *body,
            void *arg)
{
    json_t *all, *page;
    long long limit, offset;
    size_t total;

    (void)self;
    (void)arg;
    if (status != 200 || !json_is_array(all = json_object_get(body, "alerts")) ||
        s_alerts_page(req, false, &limit, &offset)) {
        http_req_reply_json(req, status, body);
        return;
    }
    api_tenant_filter(api_auth_tenant(req), all);
    total = json_array_size(all);
    page = json_array();
    for (size_t i = (size_t)offset; i < total && i < (size_t)(offset + limit); i++)
        json_array_append(page, json_array_get(all, i));
    json_object_set_new(body, "alerts", page);
    json_object_set_new(body, "total", json_integer((json_int_t)total));
    json_object_set_new(body, "limit", json_integer(limit));
    json_object_set_new(body, "offset", json_integer(offset));
    http_req_reply_json(req, status, body);
}

/* DELETE /api/v1/series/{series}?start=&end=&tag.k=v: the points of a
 * series (or glob) in a range, or whole series without a range. aggd
 * answers once the deletion is durable. */
static void
s_route_delete(apid_t *self, http_req_t *req, const char *series)
{
    json_t *q = json_pack("{s:s, s:s}", "op", "delete", "series", series);

    if (apid_range_args(req, q)) {
        json_decref(q);
        return;
    }
    apid_relay(self, req, APID_BK_AGGD, q);
}

int
api_seed_route(apid_t *self, http_req_t *req)
{
    const char *path = http_req_path(req);
    char *series = NULL;

    if (!strcmp(path, "/api/v1/ingest")) {
        if (apid_method(req, "POST"))
            s_route_ingest(self, req, "ingest");
    } else if (!strcmp(path, "/api/v1/record")) {
        if (apid_method(req, "POST"))
            s_route_ingest(self, req, "record");
    } else if (!strcmp(path, "/api/v1/aggregate")) {
        if (apid_method(req, "POST"))
            s_route_aggregate(self, req);
    } else if ((series = apid_path_arg(path, "/api/v1/stats/"))) {
        if (apid_method(req, "GET"))
            s_route_stats(self, req, series);
    } else if ((series = apid_path_arg(path, "/api/v1/anomalies/"))) {
        if (apid_method(req, "GET"))
            s_route_anomalies(self, req, series);
    } else if ((series = apid_path_arg(path, "/api/v1/export/"))) {
        if (apid_method(req, "GET"))
            s_route_series(self, req, 1, series);
    } else if ((series = apid_path_arg(path, "/api/v1/series/"))) {
        if (apid_method(req, "DELETE"))
            s_route_delete(self, req, series);
    } else if (!strcmp(path, "/api/v1/series")) {
        const char *m = http_req_arg(req, "match");
        if (apid_method(req, "GET"))
            s_route_series(self, req, 0, m ? m : "*");
    } else if (!strcmp(path, "/api/alerts")) {
        long long limit, offset;
        if (apid_method(req, "GET") && s_alerts_page(req, true, &limit, &offset) == 0)
            apid_ask(self, req, APID_BK_ALERTD, json_pack("{s:s}", "op", "alerts"),
                     s_on_alerts, NULL);
    } else {
        return 0;
    }
    free(series);
    return 1;
}
