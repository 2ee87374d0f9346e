/*
 * api_fleet: fleet overview and reports (see api_fleet.h).
 *
 * A request gathers its inputs one backend after the other (aggd, then
 * anomalyd, then alertd) and then builds its answer with a pure function
 * of them and the registry's devices (s_report), which the selftest runs
 * on fixed inputs.
 */
#include "apid/api_fleet.h"
#include "apid/api_auth.h"
#include "apid/api_devices.h"
#include "apid/api_tenant.h"
#include "common/clock.h"
#include "common/series.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <string.h>

#define FLEET_PATH "/api/fleet"
#define REPORTS_PREFIX "/api/reports/"
#define FLEET_WINDOW (24 * 3600 * CLOCK_NS_PER_S)
#define FLEET_ANOMALIES_MAX 10000 /* anomalyd's own cap */
#define FLEET_DEVICES_PAGE 1000
#define FLEET_TOP_SERIES 10
#define SEV_CRITICAL 0.9
#define SEV_WARNING 0.7

enum s_what { FQ_OVERVIEW, FQ_DEVICES, FQ_ANOMALIES, FQ_HEALTH, FQ_MAX };
static const char *s_report_name[FQ_MAX] = {
    "overview", "device-performance", "anomaly-summary", "fleet-health"};

struct s_fq {
    int what;       /* enum s_what */
    int64_t start;  /* range, ns */
    int64_t end;
    json_t *series; /* aggd: [{series, points, last}] */
    json_t *anoms;  /* anomalyd: [{series, timestamp, score, method}] */
};

static void
s_fq_free(struct s_fq *q)
{
    json_decref(q->series);
    json_decref(q->anoms);
    free(q);
}

/* --- the reports (pure) -------------------------------------------------- */

static const char *
s_severity(double score)
{
    return score >= SEV_CRITICAL ? "critical"
           : score >= SEV_WARNING ? "warning"
                                  : "info";
}

static void
s_inc(json_t *counts, const char *key, json_int_t n)
{
    json_t *v = json_object_get(counts, key ? key : "unknown");
    json_object_set_new(counts, key ? key : "unknown",
                        json_integer(json_integer_value(v) + n));
}

/* The device tag of a canonical key into buf, or NULL. */
static const char *
s_device_of(const char *key, char *buf, size_t len)
{
    char name[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
    struct series_tag tags[SERIES_TAGS_MAX];
    int n;

    if (key == NULL || (n = series_key_parse(key, name, sizeof name, tb,
                                             sizeof tb, tags,
                                             SERIES_TAGS_MAX)) <= 0)
        return NULL;
    for (int i = 0; i < n; i++)
        if (!strcmp(tags[i].key, "device")) {
            snprintf(buf, len, "%s", tags[i].value);
            return buf;
        }
    return NULL;
}

/* Per device: the registry's view and what the range holds. */
static json_t *
s_per_device(json_t *devices, json_t *series, json_t *anoms)
{
    json_t *by = json_object(), *d, *e;
    size_t i;
    char dev[SERIES_KEY_MAX];

    json_array_foreach(devices, i, d) {
        const char *id = json_string_value(json_object_get(d, "deviceId"));
        if (id)
            json_object_set_new(by, id, json_pack(
                "{s:s, s:b, s:O?, s:O?, s:O?, s:O?, s:O?, s:i, s:i, s:n, "
                "s:i, s:n}", "deviceId", id, "registered", 1, "type",
                json_object_get(d, "type"), "status",
                json_object_get(d, "status"), "online",
                json_object_get(d, "online"), "lastSeen",
                json_object_get(d, "lastSeen"), "metadata",
                json_object_get(d, "metadata"),
                "series", 0, "readings", 0, "last_reading", "anomalies", 0,
                "max_score"));
    }
    json_array_foreach(series, i, e) {
        const char *id = s_device_of(
            json_string_value(json_object_get(e, "series")), dev, sizeof dev);
        json_t *row, *last = json_object_get(e, "last");
        if (id == NULL)
            continue;
        if ((row = json_object_get(by, id)) == NULL) {
            row = json_pack("{s:s, s:b, s:i, s:i, s:n, s:i, s:n}", "deviceId",
                            id, "registered", 0, "series", 0, "readings", 0,
                            "last_reading", "anomalies", 0, "max_score");
            json_object_set_new(by, id, row);
        }
        s_inc(row, "series", 1);
        s_inc(row, "readings", json_integer_value(json_object_get(e, "points")));
        if (json_is_string(last) &&
            (!json_is_string(json_object_get(row, "last_reading")) ||
             strcmp(json_string_value(last), json_string_value(
                 json_object_get(row, "last_reading"))) > 0))
            json_object_set(row, "last_reading", last);
    }
    json_array_foreach(anoms, i, e) {
        const char *id = s_device_of(
            json_string_value(json_object_get(e, "series")), dev, sizeof dev);
        json_t *row = id ? json_object_get(by, id) : NULL;
        double score = json_number_value(json_object_get(e, "score"));
        json_t *max;
        if (row == NULL)
            continue;
        s_inc(row, "anomalies", 1);
        max = json_object_get(row, "max_score");
        if (!json_is_number(max) || score > json_number_value(max))
            json_object_set_new(row, "max_score", json_real(score));
    }
    return by;
}

static json_t *
s_anomaly_counts(json_t *anoms)
{
    json_t *sev = json_pack("{s:i, s:i, s:i}", "critical", 0, "warning", 0,
                            "info", 0), *e;
    size_t i;

    json_array_foreach(anoms, i, e)
        s_inc(sev, s_severity(json_number_value(json_object_get(e, "score"))),
              1);
    return sev;
}

static json_t *
s_overview(json_t *devices, json_t *series, json_t *anoms, json_t *alerts)
{
    json_t *status = json_object(), *type = json_object(), *e;
    json_t *astate = json_object(), *asev = json_object();
    json_int_t online = 0, readings = 0, active = 0;
    size_t i;

    json_array_foreach(devices, i, e) {
        s_inc(status, json_string_value(json_object_get(e, "status")), 1);
        s_inc(type, json_string_value(json_object_get(e, "type")), 1);
        online += json_is_true(json_object_get(e, "online"));
    }
    json_array_foreach(series, i, e)
        readings += json_integer_value(json_object_get(e, "points"));
    json_array_foreach(alerts, i, e) {
        const char *st = json_string_value(json_object_get(e, "state"));
        s_inc(astate, st, 1);
        if (st && strcmp(st, "resolved")) {
            active++;
            s_inc(asev, json_string_value(json_object_get(e, "severity")), 1);
        }
    }
    return json_pack(
        "{s:{s:I, s:I, s:I, s:o, s:o}, s:{s:I, s:I}, s:{s:I, s:o}, "
        "s:{s:I, s:o, s:o}}",
        "devices", "total", (json_int_t)json_array_size(devices), "online",
        online, "offline", (json_int_t)json_array_size(devices) - online,
        "by_status", status, "by_type", type, "readings", "count", readings,
        "series", (json_int_t)json_array_size(series), "anomalies", "count",
        (json_int_t)json_array_size(anoms), "by_severity",
        s_anomaly_counts(anoms), "alerts", "active", active, "by_state",
        astate, "by_severity", asev);
}

static int
s_top_cmp(const void *x, const void *y)
{
    json_int_t a = json_integer_value(json_object_get(*(json_t *const *)x,
                                                      "count"));
    json_int_t b = json_integer_value(json_object_get(*(json_t *const *)y,
                                                      "count"));
    return (a < b) - (a > b);
}

static json_t *
s_anomaly_summary(json_t *anoms)
{
    json_t *method = json_object(), *per = json_object(), *top, *e, *row;
    json_t **rows;
    const char *k;
    size_t i, n = 0;

    json_array_foreach(anoms, i, e) {
        const char *key = json_string_value(json_object_get(e, "series"));
        double score = json_number_value(json_object_get(e, "score"));
        s_inc(method, json_string_value(json_object_get(e, "method")), 1);
        if (key == NULL)
            continue;
        if ((row = json_object_get(per, key)) == NULL) {
            row = json_pack("{s:s, s:i, s:f, s:O}", "series", key, "count", 0,
                            "max_score", score, "last",
                            json_object_get(e, "timestamp"));
            json_object_set_new(per, key, row);
        }
        s_inc(row, "count", 1);
        if (score > json_number_value(json_object_get(row, "max_score")))
            json_object_set_new(row, "max_score", json_real(score));
        json_object_set(row, "last", json_object_get(e, "timestamp"));
    }
    rows = xcalloc(json_object_size(per) + 1, sizeof *rows);
    json_object_foreach(per, k, row)
        rows[n++] = row;
    qsort(rows, n, sizeof *rows, s_top_cmp);
    top = json_array();
    for (i = 0; i < n && i < FLEET_TOP_SERIES; i++)
        json_array_append(top, rows[i]);
    free(rows);
    json_decref(per);
    return json_pack("{s:I, s:o, s:o, s:o}", "count",
                     (json_int_t)json_array_size(anoms), "by_severity",
                     s_anomaly_counts(anoms), "by_method", method,
                     "top_series", top);
}

static json_t *
s_health(json_t *devices, json_t *series, json_t *anoms, json_t *alerts)
{
    json_t *per = s_per_device(devices, series, anoms), *row, *e;
    json_t *silent = json_array(), *reasons = json_array();
    json_int_t total = 0, online = 0, firing = 0, crit_firing = 0, crit = 0;
    const char *k, *status;
    size_t i;

    json_object_foreach(per, k, row) {
        const char *st = json_string_value(json_object_get(row, "status"));
        if (!json_is_true(json_object_get(row, "registered")))
            continue;
        total++;
        online += json_is_true(json_object_get(row, "online"));
        if (json_integer_value(json_object_get(row, "readings")) == 0 &&
            (st == NULL || strcmp(st, "decommissioned")))
            json_array_append_new(silent, json_string(k));
    }
    json_array_foreach(alerts, i, e) {
        const char *st = json_string_value(json_object_get(e, "state"));
        const char *sev = json_string_value(json_object_get(e, "severity"));
        if (st && !strcmp(st, "firing")) {
            firing++;
            crit_firing += sev && !strcmp(sev, "critical");
        }
    }
    json_array_foreach(anoms, i, e)
        crit += json_number_value(json_object_get(e, "score")) >= SEV_CRITICAL;
    if (crit_firing)
        json_array_append_new(reasons, json_string("critical alerts firing"));
    if (total && online * 2 < total)
        json_array_append_new(reasons,
                              json_string("fewer than half the devices online"));
    status = json_array_size(reasons) ? "critical" : NULL;
    if (firing > crit_firing)
        json_array_append_new(reasons, json_string("alerts firing"));
    if (online < total)
        json_array_append_new(reasons, json_string("devices offline"));
    if (json_array_size(silent))
        json_array_append_new(reasons,
                              json_string("devices silent in the range"));
    if (crit)
        json_array_append_new(reasons, json_string("critical anomalies"));
    if (status == NULL)
        status = json_array_size(reasons) ? "degraded" : "ok";
    json_decref(per);
    return json_pack("{s:s, s:o, s:{s:I, s:I, s:I}, s:o, s:I, s:I, s:I}",
                     "status", status, "reasons", reasons, "devices", "total",
                     total, "online", online, "offline", total - online,
                     "silent", silent, "alerts_firing", firing,
                     "critical_firing", crit_firing, "critical_anomalies",
                     crit);
}

/* The answer of report what over the inputs (all borrowed). */
static json_t *
s_report(int what, int64_t start, int64_t end, json_t *devices,
         json_t *series, json_t *anoms, json_t *alerts)
{
    char a[40], b[40];
    json_t *out, *per, *list, *row;
    const char *k;

    switch (what) {
    case FQ_OVERVIEW:
        out = s_overview(devices, series, anoms, alerts);
        break;
    case FQ_DEVICES:
        per = s_per_device(devices, series, anoms);
        list = json_array();
        json_object_foreach(per, k, row)
            json_array_append(list, row);
        json_decref(per);
        out = json_pack("{s:o}", "devices", list);
        break;
    case FQ_ANOMALIES:
        out = s_anomaly_summary(anoms);
        break;
    default:
        out = s_health(devices, series, anoms, alerts);
        break;
    }
    json_object_set_new(out, "report", json_string(s_report_name[what]));
    json_object_set_new(out, "start", json_string(clock_format(start, a,
                                                               sizeof a)));
    json_object_set_new(out, "end", json_string(clock_format(end, b,
                                                             sizeof b)));
    return out;
}

/* --- gathering ------------------------------------------------------------ */

/* Every device of the caller's tenant (decommissioned ones hidden). */
static json_t *
s_devices(apid_t *apid, http_req_t *req)
{
    dev_store_t *store = api_devices_store(apid);
    struct dev_filter f = {0};
    json_t *all = json_array(), *page;
    int64_t total = 0;

    for (int64_t off = 0; store; off += FLEET_DEVICES_PAGE) {
        page = dev_store_list(store, api_auth_tenant(req), &f,
                              FLEET_DEVICES_PAGE, off, &total);
        json_array_extend(all, page);
        json_decref(page);
        if (page == NULL || off + FLEET_DEVICES_PAGE >= total)
            break;
    }
    return all;
}

/* Relay a failed answer, or say whether it counts (200) or is empty
 * (404: no series at all). */
static bool
s_failed(http_req_t *req, int status, json_t *body, struct s_fq *q)
{
    if (status == 200 || status == 404)
        return false;
    http_req_reply_json(req, status, body);
    s_fq_free(q);
    return true;
}

/* Keep the array under key of a 200 answer in *dst (404: an empty one).
 * Returns 0, or -1 after relaying a failure (q is gone then). */
static int
s_take(http_req_t *req, int status, json_t *body, struct s_fq *q,
       const char *key, json_t **dst)
{
    if (s_failed(req, status, body, q))
        return -1;
    *dst = json_incref(json_object_get(body, key));
    if (*dst == NULL)
        *dst = json_array();
    json_decref(body);
    return 0;
}

static void
s_on_alerts(apid_t *apid, http_req_t *req, int status, json_t *body,
            void *arg)
{
    struct s_fq *q = arg;
    json_t *alerts, *devices;

    if (s_take(req, status, body, q, "alerts", &alerts))
        return;
    api_tenant_filter(api_auth_tenant(req), alerts);
    devices = s_devices(apid, req);
    http_req_reply_json(req, 200, s_report(q->what, q->start, q->end,
                                           devices, q->series, q->anoms,
                                           alerts));
    json_decref(alerts);
    json_decref(devices);
    s_fq_free(q);
}

static void
s_on_anomalies(apid_t *apid, http_req_t *req, int status, json_t *body,
               void *arg)
{
    struct s_fq *q = arg;

    if (s_take(req, status, body, q, "anomalies", &q->anoms) == 0)
        apid_ask(apid, req, APID_BK_ALERTD, json_pack("{s:s}", "op", "alerts"),
                 s_on_alerts, q);
}

static void
s_on_series(apid_t *apid, http_req_t *req, int status, json_t *body,
            void *arg)
{
    struct s_fq *q = arg;

    if (s_take(req, status, body, q, "series", &q->series) == 0)
        apid_ask(apid, req, APID_BK_ANOMALYD, json_pack(
                     "{s:s, s:s, s:I, s:I, s:f, s:i}", "op", "anomalies",
                     "series", "*", "start", (json_int_t)q->start, "end",
                     (json_int_t)q->end, "min_score", API_FLEET_MIN_SCORE,
                     "limit", FLEET_ANOMALIES_MAX),
                 s_on_anomalies, q);
}

/* start/end, or window back from now; 0, or -1 after a 400. */
static int
s_range(http_req_t *req, struct s_fq *q)
{
    const char *w = http_req_arg(req, "window");
    json_t *r = json_object();
    int64_t window = FLEET_WINDOW;

    if (w && (clock_parse_duration(w, &window) || window <= 0)) {
        json_decref(r);
        http_req_reply_error(req, 400, "bad_request",
                             "window must be a duration (30s, 5m, 1h, 1d)",
                             "window");
        return -1;
    }
    if (apid_range_args(req, r)) {
        json_decref(r);
        return -1;
    }
    q->end = json_object_get(r, "end") ? json_integer_value(json_object_get(r, "end"))
                                       : clock_now_ns();
    q->start = json_object_get(r, "start")
                   ? json_integer_value(json_object_get(r, "start"))
                   : q->end - window;
    json_decref(r);
    if (q->start >= q->end) {
        http_req_reply_error(req, 400, "bad_request", "start must be before end",
                             "start");
        return -1;
    }
    return 0;
}

int
api_fleet_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req);
    struct s_fq *q;
    int what = -1;

    if (!strcmp(path, FLEET_PATH)) {
        what = FQ_OVERVIEW;
    } else if (!strncmp(path, REPORTS_PREFIX, strlen(REPORTS_PREFIX))) {
        for (int i = FQ_DEVICES; i < FQ_MAX; i++)
            if (!strcmp(path + strlen(REPORTS_PREFIX), s_report_name[i]))
                what = i;
        if (what < 0) {
            http_req_reply_error(req, 404, "not_found",
                                 "reports: device-performance, "
                                 "anomaly-summary, fleet-health", path);
            return 1;
        }
    } else {
        return 0;
    }
    if (!apid_method(req, "GET"))
        return 1;
    q = xcalloc(1, sizeof *q);
    q->what = what;
    if (s_range(req, q)) {
        s_fq_free(q);
        return 1;
    }
    apid_ask(apid, req, APID_BK_AGGD, json_pack(
                 "{s:s, s:s, s:I, s:I}", "op", "series", "series", "*",
                 "start", (json_int_t)q->start, "end", (json_int_t)q->end),
             s_on_series, q);
    return 1;
}

void
api_fleet_test(bool verbose)
{
    json_t *devices = json_pack(
        "[{s:s, s:s, s:s, s:b, s:{s:s}}, {s:s, s:s, s:s, s:b, s:{}},"
        " {s:s, s:s, s:s, s:b, s:{}}]",
        "deviceId", "a", "type", "temp", "status", "active", "online", 1,
        "metadata", "location", "hall-1", "deviceId", "b", "type", "temp",
        "status", "active", "online", 0, "metadata", "deviceId", "c", "type",
        "meter", "status", "provisioned", "online", 0, "metadata");
    json_t *series = json_pack(
        "[{s:s, s:i, s:s}, {s:s, s:i, s:s}, {s:s, s:i, s:s}, {s:s, s:i}]",
        "series", "temperature{device=a}", "points", 10, "last",
        "2024-01-01T00:09:00.000Z", "series", "humidity{device=a}", "points",
        5, "last", "2024-01-01T00:10:00.000Z", "series",
        "temperature{device=x}", "points", 3, "last",
        "2024-01-01T00:01:00.000Z", "series", "api.latency", "points", 7);
    json_t *anoms = json_pack(
        "[{s:s, s:f, s:s, s:s}, {s:s, s:f, s:s, s:s}, {s:s, s:f, s:s, s:s}]",
        "series", "temperature{device=a}", "score", 0.95, "method", "zscore",
        "timestamp", "2024-01-01T00:05:00.000Z", "series",
        "temperature{device=a}", "score", 0.75, "method", "ewma",
        "timestamp", "2024-01-01T00:06:00.000Z", "series", "api.latency",
        "score", 0.6, "method", "zscore", "timestamp",
        "2024-01-01T00:07:00.000Z");
    json_t *alerts = json_pack(
        "[{s:s, s:s, s:s}, {s:s, s:s, s:s}]", "rule", "hot", "state",
        "firing", "severity", "critical", "rule", "old", "state", "resolved",
        "severity", "warning");
    json_t *r;

    r = s_report(FQ_OVERVIEW, 0, FLEET_WINDOW, devices, series, anoms, alerts);
    assert(json_integer_value(json_object_get(json_object_get(r, "devices"),
                                              "total")) == 3);
    assert(json_integer_value(json_object_get(json_object_get(r, "devices"),
                                              "online")) == 1);
    assert(json_integer_value(json_object_get(json_object_get(r, "readings"),
                                              "count")) == 25);
    json_t *sev = json_object_get(json_object_get(r, "anomalies"),
                                  "by_severity");
    assert(json_integer_value(json_object_get(sev, "critical")) == 1 &&
           json_integer_value(json_object_get(sev, "warning")) == 1 &&
           json_integer_value(json_object_get(sev, "info")) == 1);
    assert(json_integer_value(json_object_get(json_object_get(r, "alerts"),
                                              "active")) == 1);
    TEST_STREQ(json_string_value(json_object_get(r, "report")), "overview");
    TEST_STREQ(json_string_value(json_object_get(r, "end")),
               "1970-01-02T00:00:00.000Z");
    json_decref(r);

    /* Per device: registry and data joined; x sends without being
     * registered; api.latency belongs to no device. */
    r = s_report(FQ_DEVICES, 0, 1, devices, series, anoms, alerts);
    json_t *list = json_object_get(r, "devices"), *a = NULL, *x = NULL, *e;
    size_t i;
    json_array_foreach(list, i, e) {
        const char *id = json_string_value(json_object_get(e, "deviceId"));
        if (!strcmp(id, "a"))
            a = e;
        if (!strcmp(id, "x"))
            x = e;
    }
    assert(json_array_size(list) == 4 && a && x);
    assert(json_integer_value(json_object_get(a, "readings")) == 15 &&
           json_integer_value(json_object_get(a, "series")) == 2 &&
           json_integer_value(json_object_get(a, "anomalies")) == 2);
    TEST_STREQ(json_string_value(json_object_get(a, "last_reading")),
               "2024-01-01T00:10:00.000Z");
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(a, "metadata"), "location")), "hall-1");
    assert(json_number_value(json_object_get(a, "max_score")) == 0.95);
    assert(json_is_false(json_object_get(x, "registered")));
    json_decref(r);

    r = s_report(FQ_ANOMALIES, 0, 1, devices, series, anoms, alerts);
    assert(json_integer_value(json_object_get(r, "count")) == 3);
    assert(json_integer_value(json_object_get(json_object_get(r, "by_method"),
                                              "zscore")) == 2);
    e = json_array_get(json_object_get(r, "top_series"), 0);
    TEST_STREQ(json_string_value(json_object_get(e, "series")),
               "temperature{device=a}");
    assert(json_integer_value(json_object_get(e, "count")) == 2);
    json_decref(r);

    /* A critical alert fires: critical; b and c are silent. */
    r = s_report(FQ_HEALTH, 0, 1, devices, series, anoms, alerts);
    TEST_STREQ(json_string_value(json_object_get(r, "status")), "critical");
    assert(json_array_size(json_object_get(r, "silent")) == 2);
    assert(json_integer_value(json_object_get(r, "critical_firing")) == 1);
    json_decref(r);
    json_array_remove(alerts, 0);
    json_array_clear(anoms);
    r = s_report(FQ_HEALTH, 0, 1, devices, series, anoms, alerts);
    TEST_STREQ(json_string_value(json_object_get(r, "status")), "critical");
    json_decref(r); /* still: one of three devices online */
    json_object_set_new(json_array_get(devices, 1), "online", json_true());
    r = s_report(FQ_HEALTH, 0, 1, devices, series, anoms, alerts);
    TEST_STREQ(json_string_value(json_object_get(r, "status")), "degraded");
    json_decref(r);

    json_decref(devices);
    json_decref(series);
    json_decref(anoms);
    json_decref(alerts);
    (void)verbose;
    TEST_OK("api_fleet");
}
