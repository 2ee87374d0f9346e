/*
 * api_prom: Prometheus-compatible query API (see api_prom.h).
 *
 * Every route asks aggd once (points or the series list over the time
 * window the query needs), then answers in Prometheus' JSON shape:
 * {"status":"success","data":...} or {"status":"error","errorType",
 * "error"}.
 */
#include "apid/api_prom.h"
#include "apid/prom_ql.h"
#include "common/clock.h"
#include "common/mpjson.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>

#define PROM_POINTS_MAX 100000  /* points asked of aggd per query */
#define PROM_MATCH_MAX 32       /* match[] arguments */
#define PROM_NS 1e9

enum s_kind { Q_QUERY, Q_RANGE, Q_SERIES, Q_LABELS, Q_VALUES };

/* One Prometheus request waiting for aggd. */
struct s_q {
    int kind;                          /* enum s_kind */
    prom_expr_t *e;                    /* Q_QUERY, Q_RANGE */
    prom_expr_t *match[PROM_MATCH_MAX]; /* Q_SERIES, Q_LABELS, Q_VALUES */
    size_t nmatch;
    double t, start, end, step;        /* seconds */
    bool has_range;                    /* start/end given (series, labels) */
    char *label;                       /* Q_VALUES */
};

/* --- arguments: query string, then a form-encoded body ------------------ */

struct s_argv {
    const char *name; /* wanted */
    char *vals[PROM_MATCH_MAX];
    size_t n;
};

static void
s_arg_add(struct s_argv *a, const char *v)
{
    if (a->n < PROM_MATCH_MAX)
        a->vals[a->n++] = xstrdup(v);
}

static void
s_arg_qs(void *arg, const char *k, const char *v)
{
    struct s_argv *a = arg;
    if (!strcmp(k, a->name))
        s_arg_add(a, v);
}

/* Every value of name, from the query string and a form body. */
static void
s_args(http_req_t *req, const char *name, struct s_argv *a)
{
    const char *ct = http_req_header(req, "Content-Type");
    size_t len;
    const char *body = http_req_body(req, &len);

    memset(a, 0, sizeof *a);
    a->name = name;
    http_req_args(req, s_arg_qs, a);
    if (ct == NULL || strncmp(ct, "application/x-www-form-urlencoded", 33))
        return;
    char *copy = xstrndup(body, len), *save = NULL;
    for (char *kv = strtok_r(copy, "&", &save); kv;
         kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        const char *v = "";
        if (eq) {
            *eq = '\0';
            v = eq + 1;
        }
        if (strutil_urldecode(kv, true) == 0 && !strcmp(kv, name) &&
            strutil_urldecode((char *)v, true) == 0)
            s_arg_add(a, v);
    }
    free(copy);
}

static void
s_args_free(struct s_argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->vals[i]);
    a->n = 0;
}

/* The first value of name (caller frees), or NULL. */
static char *
s_arg(http_req_t *req, const char *name)
{
    struct s_argv a;
    char *v;

    s_args(req, name, &a);
    v = a.n ? xstrdup(a.vals[0]) : NULL;
    s_args_free(&a);
    return v;
}

/* Prometheus times: unix seconds (fractions allowed) or RFC 3339. */
static int
s_time(const char *v, double *sec)
{
    int64_t ns;

    if (strutil_tod(v, sec) == 0)
        return isfinite(*sec) ? 0 : -1;
    if (clock_parse_rfc3339(v, &ns) == 0) {
        *sec = (double)ns / PROM_NS;
        return 0;
    }
    return -1;
}

/* Steps and durations: seconds or 30s, 5m, 1h... */
static int
s_step(const char *v, double *sec)
{
    int64_t ns;

    if (strutil_tod(v, sec) == 0)
        return *sec > 0 && isfinite(*sec) ? 0 : -1;
    if (clock_parse_duration(v, &ns) == 0 && ns > 0) {
        *sec = (double)ns / PROM_NS;
        return 0;
    }
    return -1;
}

/* --- replies ------------------------------------------------------------- */

static void
s_error(http_req_t *req, int status, const char *type, const char *msg)
{
    /* msg may quote a client's expression, cut anywhere. */
    http_req_reply_json(req, status, json_pack("{s:s, s:s, s:o}", "status",
                                               "error", "errorType", type,
                                               "error", mpjson_string_lossy(msg)));
}

static void
s_success(http_req_t *req, json_t *data)
{
    http_req_reply_json(req, 200, json_pack("{s:s, s:o}", "status", "success",
                                            "data", data));
}

static void
s_q_free(struct s_q *q)
{
    prom_ql_destroy(&q->e);
    for (size_t i = 0; i < q->nmatch; i++)
        prom_ql_destroy(&q->match[i]);
    free(q->label);
    free(q);
}

/* --- answers from aggd ------------------------------------------------------ */

static void
s_answer_query(http_req_t *req, struct s_q *q, json_t *body)
{
    json_t *list = json_object_get(body, "series"), *e, *data;
    size_t n = json_array_size(list), i, ns = 0;
    struct prom_series *s = xcalloc(n + 1, sizeof *s);
    char err[256];

    json_array_foreach(list, i, e) {
        json_t *pts = json_object_get(e, "points"), *pt;
        json_t *labels = prom_ql_labels(json_string_value(
            json_object_get(e, "series")) ?: "");
        size_t np = json_array_size(pts), j, k = 0;
        double *t, *v;
        if (labels == NULL)
            continue;
        t = xcalloc(np + 1, sizeof *t);
        v = xcalloc(np + 1, sizeof *v);
        json_array_foreach(pts, j, pt) {
            int64_t ts;
            const char *tstr = json_string_value(json_object_get(pt, "timestamp"));
            if (tstr == NULL || clock_parse_time(tstr, &ts))
                continue;
            t[k] = (double)ts / PROM_NS;
            v[k++] = json_number_value(json_object_get(pt, "value"));
        }
        s[ns++] = (struct prom_series){labels, t, v, k};
    }
    if (q->kind == Q_QUERY)
        data = prom_ql_eval(q->e, s, ns, q->t, err, sizeof err);
    else
        data = prom_ql_eval_range(q->e, s, ns, q->start, q->end, q->step, err,
                                  sizeof err);
    for (i = 0; i < ns; i++) {
        json_decref(s[i].labels);
        free((double *)s[i].t);
        free((double *)s[i].v);
    }
    free(s);
    if (data)
        s_success(req, data);
    else
        s_error(req, 422, "execution", err);
}

static int
s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool
s_any_match(struct s_q *q, json_t *labels)
{
    if (q->nmatch == 0)
        return true;
    for (size_t i = 0; i < q->nmatch; i++)
        if (prom_ql_matches(q->match[i], labels))
            return true;
    return false;
}

static void
s_answer_meta(http_req_t *req, struct s_q *q, json_t *body)
{
    json_t *list = json_object_get(body, "series"), *e, *out = json_array();
    json_t *seen = json_object();
    size_t i;

    json_array_foreach(list, i, e) {
        json_t *labels = prom_ql_labels(json_string_value(
            json_object_get(e, "series")) ?: "");
        const char *k;
        json_t *v;
        if (labels == NULL)
            continue;
        if ((q->has_range && json_integer_value(json_object_get(e, "points")) == 0) ||
            !s_any_match(q, labels)) {
            json_decref(labels);
            continue;
        }
        if (q->kind == Q_SERIES) {
            json_array_append_new(out, labels);
            continue;
        }
        json_object_foreach(labels, k, v) {
            if (q->kind == Q_LABELS)
                json_object_set_new(seen, k, json_true());
            else if (!strcmp(k, q->label))
                json_object_set_new(seen, json_string_value(v), json_true());
        }
        json_decref(labels);
    }
    if (q->kind != Q_SERIES) {
        const char *k;
        json_t *v;
        void *tmp;
        json_object_foreach_safe(seen, tmp, k, v)
            json_array_append_new(out, json_string(k));
        /* Sorted, as Prometheus answers. */
        size_t n = json_array_size(out);
        const char **names = xcalloc(n + 1, sizeof *names);
        for (i = 0; i < n; i++)
            names[i] = json_string_value(json_array_get(out, i));
        qsort(names, n, sizeof *names, s_cmp_str);
        json_t *sorted = json_array();
        for (i = 0; i < n; i++)
            json_array_append_new(sorted, json_string(names[i]));
        free(names);
        json_decref(out);
        out = sorted;
    }
    json_decref(seen);
    s_success(req, out);
}

static void
s_on_aggd(apid_t *apid, http_req_t *req, int status, json_t *body, void *arg)
{
    struct s_q *q = arg;

    if (status == 200 || status == 404) {
        /* 404: no series matched, which Prometheus answers as empty. */
        if (status == 404) {
            json_decref(body);
            body = json_pack("{s:[]}", "series");
        }
        if (q->kind == Q_QUERY || q->kind == Q_RANGE)
            s_answer_query(req, q, body);
        else
            s_answer_meta(req, q, body);
    } else {
        json_t *err = json_object_get(json_object_get(body, "error"), "message");
        s_error(req, status >= 500 ? 503 : 422,
                status >= 500 ? "unavailable" : "execution",
                json_string_value(err) ?: "the store did not answer");
    }
    json_decref(body);
    s_q_free(q);
}

/* --- routes ------------------------------------------------------------------ */

static int
s_parse_matches(http_req_t *req, struct s_q *q, bool required)
{
    struct s_argv a;
    char err[256];

    s_args(req, "match[]", &a);
    if (required && a.n == 0) {
        s_args_free(&a);
        s_error(req, 400, "bad_data", "no match[] parameter provided");
        return -1;
    }
    for (size_t i = 0; i < a.n; i++) {
        prom_expr_t *e = prom_ql_parse(a.vals[i], err, sizeof err);
        if (e == NULL || !prom_ql_is_selector(e)) {
            char msg[400];
            snprintf(msg, sizeof msg, "invalid match[] \"%.100s\": %s",
                     a.vals[i], e ? "not a series selector" : err);
            prom_ql_destroy(&e);
            s_args_free(&a);
            s_error(req, 400, "bad_data", msg);
            return -1;
        }
        q->match[q->nmatch++] = e;
    }
    s_args_free(&a);
    return 0;
}

/* start/end into q (defaults: all time for metadata, now for queries). */
static int
s_range_args(http_req_t *req, struct s_q *q, bool required)
{
    char *st = s_arg(req, "start"), *en = s_arg(req, "end");
    int rc = 0;

    q->start = -INFINITY;
    q->end = INFINITY;
    if ((required && (st == NULL || en == NULL)) ||
        (st && s_time(st, &q->start)) || (en && s_time(en, &q->end)))
        rc = -1;
    q->has_range = st || en;
    free(st);
    free(en);
    if (rc)
        s_error(req, 400, "bad_data", "invalid or missing start/end (unix "
                                      "seconds or RFC 3339)");
    return rc;
}

static json_t *
s_aggd_query(const char *op, const char *series, double from, double to)
{
    json_t *q = json_pack("{s:s, s:s}", "op", op, "series", series);

    if (!strcmp(op, "points"))
        json_object_set_new(q, "limit", json_integer(PROM_POINTS_MAX));
    if (isfinite(from))
        json_object_set_new(q, "start", json_integer((json_int_t)(from * PROM_NS)));
    if (isfinite(to))
        json_object_set_new(q, "end", json_integer((json_int_t)(to * PROM_NS) + 1));
    return q;
}

static void
s_route_query(apid_t *apid, http_req_t *req, bool range)
{
    struct s_q *q = xcalloc(1, sizeof *q);
    char *query = s_arg(req, "query"), *t = NULL, *step = NULL;
    char err[256], *glob;
    double from, to;

    q->kind = range ? Q_RANGE : Q_QUERY;
    if (query == NULL) {
        s_error(req, 400, "bad_data", "missing query parameter");
        goto fail;
    }
    if ((q->e = prom_ql_parse(query, err, sizeof err)) == NULL) {
        char msg[400];
        snprintf(msg, sizeof msg, "invalid parameter \"query\": %s", err);
        s_error(req, 400, "bad_data", msg);
        goto fail;
    }
    if (range) {
        if (s_range_args(req, q, true))
            goto fail;
        step = s_arg(req, "step");
        if (step == NULL || s_step(step, &q->step)) {
            s_error(req, 400, "bad_data", "invalid or missing step");
            goto fail;
        }
        from = q->start;
        to = q->end;
    } else {
        t = s_arg(req, "time");
        q->t = (double)clock_now_ns() / PROM_NS;
        if (t && s_time(t, &q->t)) {
            s_error(req, 400, "bad_data", "invalid parameter \"time\"");
            goto fail;
        }
        from = to = q->t;
    }
    from -= prom_ql_window(q->e);
    glob = prom_ql_name_glob(q->e);
    free(query);
    free(t);
    free(step);
    /* A query of numbers alone needs no data. */
    if (prom_ql_window(q->e) == 0) {
        free(glob);
        s_on_aggd(apid, req, 404, json_object(), q);
        return;
    }
    apid_ask(apid, req, APID_BK_AGGD, s_aggd_query("points", glob, from, to),
             s_on_aggd, q);
    free(glob);
    return;
fail:
    free(query);
    free(t);
    free(step);
    s_q_free(q);
}

static void
s_route_meta(apid_t *apid, http_req_t *req, int kind, const char *label)
{
    struct s_q *q = xcalloc(1, sizeof *q);

    q->kind = kind;
    q->label = label ? xstrdup(label) : NULL;
    if (s_parse_matches(req, q, kind == Q_SERIES) ||
        s_range_args(req, q, false)) {
        s_q_free(q);
        return;
    }
    apid_ask(apid, req, APID_BK_AGGD,
             s_aggd_query("series", "*", q->start, q->end), s_on_aggd, q);
}

static bool
s_get_or_post(http_req_t *req)
{
    const char *m = http_req_method(req);
    if (!strcmp(m, "GET") || !strcmp(m, "POST"))
        return true;
    http_req_add_header(req, "Allow", "GET, POST");
    s_error(req, 405, "bad_data", "use GET or POST");
    return false;
}

int
api_prom_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req);
    char *name;

    if (!strcmp(path, "/api/v1/query")) {
        if (s_get_or_post(req))
            s_route_query(apid, req, false);
    } else if (!strcmp(path, "/api/v1/query_range")) {
        if (s_get_or_post(req))
            s_route_query(apid, req, true);
    } else if (!strcmp(path, "/api/v1/series")) {
        struct s_argv a;
        s_args(req, "match[]", &a);
        size_t n = a.n;
        s_args_free(&a);
        if (n == 0)
            return 0; /* api_seed's sensorpipe listing */
        if (s_get_or_post(req))
            s_route_meta(apid, req, Q_SERIES, NULL);
    } else if (!strcmp(path, "/api/v1/labels")) {
        if (s_get_or_post(req))
            s_route_meta(apid, req, Q_LABELS, NULL);
    } else if (!strncmp(path, "/api/v1/label/", 14) &&
               strlen(path) > 21 && !strcmp(path + strlen(path) - 7, "/values")) {
        name = xstrndup(path + 14, strlen(path) - 21);
        if (s_get_or_post(req))
            s_route_meta(apid, req, Q_VALUES, name);
        free(name);
    } else if (!strcmp(path, "/api/v1/status/buildinfo")) {
        if (apid_method(req, "GET"))
            s_success(req, json_pack("{s:s, s:s, s:s}", "version", "2.40.0",
                                     "revision", SP_VERSION, "application",
                                     "sensorpipe apid"));
    } else if (!strcmp(path, "/api/v1/metadata")) {
        if (apid_method(req, "GET"))
            s_success(req, json_object());
    } else {
        return 0;
    }
    return 1;
}

void
api_prom_test(bool verbose)
{
    double s;

    assert(s_time("1704067200.5", &s) == 0);
    TEST_NEAR(s, 1704067200.5, 1e-6);
    assert(s_time("2024-01-01T00:00:00Z", &s) == 0);
    TEST_NEAR(s, 1704067200, 1e-6);
    assert(s_time("yesterday", &s) == -1);
    assert(s_step("15s", &s) == 0);
    TEST_NEAR(s, 15, 0);
    assert(s_step("0.5", &s) == 0);
    TEST_NEAR(s, 0.5, 0);
    assert(s_step("-1", &s) == -1);
    (void)verbose;
    TEST_OK("api_prom");
}
