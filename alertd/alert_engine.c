/*
 * alert_engine: rules over readings, one alert per (rule, scope) (see
 * alert_engine.h for the state machine).
 *
 * Rules are indexed by the metric names they reference, and a reference
 * with a tag selector ("temperature{device=d7}") by name and one of its
 * tags, so a reading evaluates only the rules that can see it (10,000
 * per-device rules on one metric cost a reading one lookup per tag, not
 * 10,000 matches); rules with glob metrics are kept in a short list
 * checked for every reading. Design caveat: a
 * reading evaluates each of its rules in full, so the cost per reading is
 * the sum of the rules' window scans; fine for hundreds of rules per
 * metric, and the place to add incremental aggregates when the benchmark
 * (issue 7) asks for more.
 */
#include "alertd/alert_engine.h"
#include "alertd/alert_series.h"
#include "common/clock.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum s_state {
    S_PENDING,
    S_FIRING
};

struct s_alert {
    alert_rule_t *rule;   /* borrowed from the engine's rule array */
    char *name;           /* rule name (survives reloads) */
    char *scope;          /* alert scope */
    char *key;            /* series of the latest evaluation */
    enum s_state state;   /* pending or firing */
    int64_t since;        /* became pending (or firing), ns */
    int64_t fired;        /* became firing, ns */
    int64_t step_from;    /* severity steps count from here, ns (fired,
                             or when the condition held again after a
                             de-escalation) */
    int64_t below;        /* condition false since, ns (with below_set) */
    bool below_set;       /* the condition is false, not yet cleared */
    bool backed;          /* false for "back after": the steps count anew
                             once the condition holds again */
    int64_t updated;      /* latest evaluation, ns */
    const char *severity; /* static severity name */
    double value;         /* latest triggering value */
};

/* Rules that reference one metric name. */
struct s_bucket {
    size_t *idx; /* rule indices */
    size_t n;    /* used */
    size_t cap;  /* allocated */
};

struct alert_engine {
    alert_rule_t **rules;      /* the rule set */
    size_t nrules;             /* its size */
    zhashx_t *by_name;         /* metric name, or "name\x1fk=v" for a
                                  selector's tag -> struct s_bucket */
    bool by_tag;               /* some rules are indexed by a tag */
    struct s_bucket globs;     /* rules with a glob metric */
    struct s_bucket deadman;   /* rules evaluated on the tick */
    uint64_t *seen;            /* per rule: the reading that last evaluated
                                  it (a rule in several buckets is
                                  evaluated once per reading) */
    uint64_t pass;             /* that reading's number */
    alert_series_t *series;    /* window state */
    zhashx_t *alerts;          /* "rule\x1fscope" -> struct s_alert */
    zhashx_t *devices;         /* device id -> metadata (json_t) */
    zhashx_t *resolved;        /* "rule\x1fscope" of a joined rule ->
                                  int64_t *: event time of the evaluation
                                  that resolved it (S_RESOLVED_MAX) */
    alert_engine_emit_fn *emit; /* change callback */
    void *arg;                 /* its argument */
    struct alert_engine_stats st; /* counters */
};

static void
s_alert_free(void **item)
{
    struct s_alert *a = *item;

    if (a) {
        free(a->name);
        free(a->scope);
        free(a->key);
        free(a);
        *item = NULL;
    }
}

static void
s_bucket_free(void **item)
{
    struct s_bucket *b = *item;

    if (b) {
        free(b->idx);
        free(b);
        *item = NULL;
    }
}

static void
s_json_free(void **item)
{
    json_decref(*item);
    *item = NULL;
}

static void
s_free_item(void **item)
{
    free(*item);
    *item = NULL;
}

/* Resolution times kept for joined rules' scopes. Past this many the
 * table is emptied (a scope raised again anew after that follows the
 * old rule: a reading older than its resolution may raise it). */
#define S_RESOLVED_MAX 65536

/* A joined rule's alert in scope hkey was resolved by an evaluation at
 * ts: remember it, so that a reading of another of its series older
 * than ts does not raise it again in the past. A single-series rule
 * needs nothing: such a reading is late for its series and is not
 * evaluated at all. */
static void
s_resolved(alert_engine_t *self, const alert_rule_t *r, const char *hkey,
           int64_t ts)
{
    if (alert_rule_metric(r, 1) == NULL)
        return;
    if (zhashx_size(self->resolved) >= S_RESOLVED_MAX)
        zhashx_purge(self->resolved);
    int64_t *t = xmalloc(sizeof *t);
    *t = ts;
    zhashx_update(self->resolved, hkey, t);
}

static void
s_bucket_add(struct s_bucket *b, size_t i)
{
    if (b->n && b->idx[b->n - 1] == i)
        return; /* the rule names this metric twice */
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 4;
        b->idx = xrealloc(b->idx, b->cap * sizeof *b->idx);
    }
    b->idx[b->n++] = i;
}

alert_engine_t *
alert_engine_new(size_t max_points, size_t max_series,
                 alert_engine_emit_fn *emit, void *arg)
{
    alert_engine_t *self = xcalloc(1, sizeof *self);

    self->by_name = zhashx_new();
    zhashx_set_destructor(self->by_name, s_bucket_free);
    self->alerts = zhashx_new();
    zhashx_set_destructor(self->alerts, s_alert_free);
    self->series = alert_series_new(0, max_points, max_series);
    self->devices = zhashx_new();
    zhashx_set_destructor(self->devices, s_json_free);
    self->resolved = zhashx_new();
    zhashx_set_destructor(self->resolved, s_free_item);
    self->emit = emit;
    self->arg = arg;
    return self;
}

static void
s_free_rules(alert_engine_t *self)
{
    for (size_t i = 0; i < self->nrules; i++)
        alert_rule_destroy(&self->rules[i]);
    free(self->rules);
    self->rules = NULL;
    self->nrules = 0;
}

void
alert_engine_destroy(alert_engine_t **self_p)
{
    alert_engine_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zhashx_destroy(&self->alerts);
    zhashx_destroy(&self->by_name);
    zhashx_destroy(&self->devices);
    zhashx_destroy(&self->resolved);
    free(self->globs.idx);
    free(self->deadman.idx);
    free(self->seen);
    alert_series_destroy(&self->series);
    s_free_rules(self);
    free(self);
    *self_p = NULL;
}

static void
s_emit(alert_engine_t *self, const struct s_alert *a, const char *state,
       int64_t ts)
{
    struct alert_event ev = {a->name,     a->scope, a->key,   state,
                             a->severity, ts,       a->value, a->since,
                             a->rule};

    if (strcmp(state, "pending") == 0)
        self->st.pending++;
    else if (strcmp(state, "firing") == 0)
        self->st.firing++;
    else
        self->st.resolved++;
    if (self->emit)
        self->emit(&ev, self->arg);
}

/* Index a rule under every metric name it references; globs go to the
 * list checked for every reading. */
static void
s_index(alert_engine_t *self, size_t i, const alert_rule_t *r)
{
    const char *name;

    char hk[SERIES_KEY_MAX + 8];
    const char *tk, *tv;

    for (size_t k = 0; (name = alert_rule_metric(r, k)) != NULL; k++) {
        if (strpbrk(name, "*?")) {
            s_bucket_add(&self->globs, i);
            continue;
        }
        if (alert_rule_metric_tag(r, k, &tk, &tv)) {
            snprintf(hk, sizeof hk, "%s\x1f%s=%s", name, tk, tv);
            self->by_tag = true;
        } else {
            snprintf(hk, sizeof hk, "%s", name);
        }
        struct s_bucket *b = zhashx_lookup(self->by_name, hk);
        if (b == NULL) {
            b = xcalloc(1, sizeof *b);
            zhashx_insert(self->by_name, hk, b);
        }
        s_bucket_add(b, i);
    }
}

void
alert_engine_set_rules(alert_engine_t *self, alert_rule_t **rules, size_t n,
                       int64_t now)
{
    alert_rule_t **old = self->rules;
    size_t nold = self->nrules;
    zhashx_t *keep = zhashx_new(); /* old rule name -> new rule */
    int64_t retain = 0;

    self->rules = xcalloc(n ? n : 1, sizeof *self->rules);
    self->nrules = n;
    free(self->seen);
    self->seen = xcalloc(n ? n : 1, sizeof *self->seen);
    self->pass = 0;
    zhashx_purge(self->by_name);
    self->by_tag = false;
    self->globs.n = 0;
    self->deadman.n = 0;
    for (size_t i = 0; i < n; i++) {
        self->rules[i] = rules[i];
        rules[i] = NULL;
        s_index(self, i, self->rules[i]);
        if (alert_rule_is_deadman(self->rules[i]))
            s_bucket_add(&self->deadman, i);
        if (alert_rule_max_window(self->rules[i]) > retain)
            retain = alert_rule_max_window(self->rules[i]);
    }
    alert_series_set_retain(self->series, retain);
    /* Which old rules survive unchanged? (Names are unique in a set.) */
    zhashx_t *fresh = zhashx_new(); /* new rule name -> new rule */
    for (size_t j = 0; j < n; j++)
        zhashx_insert(fresh, alert_rule_name(self->rules[j]), self->rules[j]);
    for (size_t i = 0; i < nold; i++) {
        alert_rule_t *r = zhashx_lookup(fresh, alert_rule_name(old[i]));
        if (r == NULL)
            continue;
        char *f = alert_rule_format(old[i]), *g = alert_rule_format(r);
        if (strcmp(f, g) == 0)
            zhashx_insert(keep, alert_rule_name(old[i]), r);
        free(f);
        free(g);
    }
    zhashx_destroy(&fresh);
    /* Carry alerts over, or resolve them. Collect first: the table must
     * not change while it is walked. */
    zlistx_t *gone = zlistx_new();
    for (struct s_alert *a = zhashx_first(self->alerts); a;
         a = zhashx_next(self->alerts)) {
        alert_rule_t *r = zhashx_lookup(keep, a->name);
        if (r)
            a->rule = r;
        else
            zlistx_add_end(gone, (void *)zhashx_cursor(self->alerts));
    }
    for (const char *k = zlistx_first(gone); k; k = zlistx_next(gone)) {
        struct s_alert *a = zhashx_lookup(self->alerts, k);
        s_emit(self, a, "resolved", now);
        zhashx_delete(self->alerts, k);
    }
    zlistx_destroy(&gone);
    zhashx_destroy(&keep);
    for (size_t i = 0; i < nold; i++)
        alert_rule_destroy(&old[i]);
    free(old);
}

/* device.NAME of the series key: the metadata of its "device" tag, in
 * the series' tenant ("id", or "id@tenant" as apid names devices of a
 * tenant other than the default, so two tenants' devices never meet). */
static double
s_attr(void *arg, const char *key, const char *name)
{
    alert_engine_t *self = arg;
    char nb[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX], id[2 * SERIES_NAME_MAX + 2];
    struct series_tag tags[SERIES_TAGS_MAX];
    const char *dev = NULL, *tenant = NULL;
    int nt;
    json_t *meta, *v;

    if (zhashx_size(self->devices) == 0 || strchr(key, '{') == NULL)
        return NAN;
    nt = series_key_parse(key, nb, sizeof nb, tb, sizeof tb, tags,
                          SERIES_TAGS_MAX);
    for (int i = 0; i < nt; i++)
        if (strcmp(tags[i].key, "device") == 0)
            dev = tags[i].value;
        else if (strcmp(tags[i].key, SERIES_TENANT_TAG) == 0)
            tenant = tags[i].value;
    if (dev == NULL)
        return NAN;
    snprintf(id, sizeof id, "%s%s%s", dev, tenant ? "@" : "", tenant ? tenant : "");
    meta = zhashx_lookup(self->devices, id);
    if ((v = json_object_get(meta, name)) == NULL)
        return NAN;
    if (json_is_number(v))
        return json_number_value(v);
    double d;
    if (json_is_string(v) && strutil_tod(json_string_value(v), &d) == 0)
        return d;
    return NAN;
}

void
alert_engine_set_device(alert_engine_t *self, const char *id,
                        const json_t *meta)
{
    if (json_is_object(meta))
        zhashx_update(self->devices, id, json_deep_copy(meta));
    else
        zhashx_delete(self->devices, id);
}

void
alert_engine_clear_devices(alert_engine_t *self)
{
    zhashx_purge(self->devices);
}

size_t
alert_engine_devices(const alert_engine_t *self)
{
    return zhashx_size(self->devices);
}

static void
s_evaluate(alert_engine_t *self, alert_rule_t *r, const char *key,
           int64_t ts, double value)
{
    char scope[SERIES_KEY_MAX], hkey[SERIES_KEY_MAX + 160];
    struct alert_rule_env env = {alert_series_value, self->series, key, ts,
                                 s_attr, self};
    enum alert_truth cond;
    struct s_alert *a;

    if (alert_rule_scope(r, key, scope, sizeof scope) == NULL)
        return;
    snprintf(hkey, sizeof hkey, "%s\x1f%s", alert_rule_name(r), scope);
    self->st.evaluations++;
    cond = alert_rule_eval(r, ALERT_RULE_COND, &env);
    a = zhashx_lookup(self->alerts, hkey);
    if (a == NULL) {
        if (cond != ALERT_TRUE)
            return;
        const int64_t *res = zhashx_lookup(self->resolved, hkey);
        if (res && ts < *res)
            return; /* resolved later than this reading: not in the past */
        zhashx_delete(self->resolved, hkey);
        a = xcalloc(1, sizeof *a);
        a->rule = r;
        a->name = xstrdup(alert_rule_name(r));
        a->scope = xstrdup(scope);
        a->key = xstrdup(key);
        a->since = a->updated = ts;
        a->value = value;
        a->severity = alert_rule_severity(r, 0);
        zhashx_insert(self->alerts, hkey, a);
        if (alert_rule_for(r) == 0) {
            a->state = S_FIRING;
            a->fired = a->step_from = ts;
            s_emit(self, a, "firing", ts);
        } else {
            a->state = S_PENDING;
            s_emit(self, a, "pending", ts);
        }
        return;
    }
    if (ts < a->updated)
        return; /* a late reading does not move an alert back in time */
    a->updated = ts;
    a->value = value;
    if (strcmp(a->key, key) != 0) {
        free(a->key);
        a->key = xstrdup(key);
    }
    if (a->state == S_PENDING) {
        if (cond == ALERT_TRUE && ts - a->since >= alert_rule_for(r)) {
            a->state = S_FIRING;
            a->fired = a->step_from = ts;
            s_emit(self, a, "firing", ts);
        } else if (cond == ALERT_FALSE) {
            s_emit(self, a, "resolved", ts);
            s_resolved(self, r, hkey, ts);
            zhashx_delete(self->alerts, hkey);
        }
        return;
    }
    bool clear = alert_rule_has_clear(r)
                     ? alert_rule_eval(r, ALERT_RULE_CLEAR, &env) == ALERT_TRUE
                     : cond == ALERT_FALSE;
    if (clear) {
        s_emit(self, a, "resolved", ts);
        s_resolved(self, r, hkey, ts);
        zhashx_delete(self->alerts, hkey);
        return;
    }
    int64_t back = alert_rule_severity_back(r);
    if (back > 0) {
        /* Below the condition but not cleared: no step up; after "back",
         * down to the first step. Above again after that: steps count
         * anew. A shorter dip changes nothing (even at the first step). */
        if (cond == ALERT_FALSE) {
            if (!a->below_set) {
                a->below_set = true;
                a->below = ts;
            }
            const char *base = alert_rule_severity(r, 0);
            if (ts - a->below >= back) {
                a->backed = true;
                if (a->severity != base) {
                    a->severity = base;
                    s_emit(self, a, "firing", ts);
                }
            }
            return;
        }
        if (cond == ALERT_TRUE && a->below_set) {
            a->below_set = false;
            if (a->backed) {
                a->backed = false;
                a->step_from = ts;
            }
        }
        if (a->backed)
            return; /* unknown since it went back: the steps wait */
    }
    const char *sev = alert_rule_severity(r, ts - a->step_from);
    if (sev != a->severity) {
        a->severity = sev;
        s_emit(self, a, "firing", ts);
    }
}

/* Evaluate rule i for a reading unless this reading did already: a
 * rule that names a metric with and without a selector, or with two
 * selectors (temperature{site=a} and temperature{device=d1}), sits in
 * several buckets. Evaluating it twice resolved an alert by its "clear
 * when" and raised it again at once. */
static void
s_evaluate_once(alert_engine_t *self, size_t i, const char *key, int64_t ts,
                double v)
{
    if (self->seen[i] == self->pass)
        return;
    self->seen[i] = self->pass;
    if (alert_rule_matches(self->rules[i], key))
        s_evaluate(self, self->rules[i], key, ts, v);
}

static void
s_evaluate_all(alert_engine_t *self, const char *key, int64_t ts, double v)
{
    const char *brace = strchr(key, '{');
    size_t nl = brace ? (size_t)(brace - key) : strlen(key);
    char name[SERIES_NAME_MAX + 1];
    struct s_bucket *b;

    if (nl > SERIES_NAME_MAX)
        return;
    memcpy(name, key, nl);
    name[nl] = '\0';
    self->pass++;
    if ((b = zhashx_lookup(self->by_name, name)) != NULL)
        for (size_t i = 0; i < b->n; i++)
            s_evaluate_once(self, b->idx[i], key, ts, v);
    if (self->by_tag && brace) {
        char nb[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
        char hk[SERIES_KEY_MAX + 8];
        struct series_tag tags[SERIES_TAGS_MAX];
        int nt = series_key_parse(key, nb, sizeof nb, tb, sizeof tb, tags,
                                  SERIES_TAGS_MAX);
        for (int t = 0; t < nt; t++) {
            snprintf(hk, sizeof hk, "%s\x1f%s=%s", name, tags[t].key,
                     tags[t].value);
            if ((b = zhashx_lookup(self->by_name, hk)) == NULL)
                continue;
            for (size_t i = 0; i < b->n; i++)
                s_evaluate_once(self, b->idx[i], key, ts, v);
        }
    }
    for (size_t i = 0; i < self->globs.n; i++)
        s_evaluate_once(self, self->globs.idx[i], key, ts, v);
}

void
alert_engine_reading(alert_engine_t *self, const char *key, int64_t ts,
                     double value)
{
    int64_t latest = alert_series_last_ts(self->series, key);

    if (alert_series_add(self->series, key, ts, value) == -1) {
        self->st.rejected++;
        return;
    }
    self->st.readings++;
    /* A late reading (older than the latest of its series) joins the
     * windows of later evaluations but is not evaluated itself: that
     * would move the series' alerts back in time (and raise again, in
     * the past, one that a later reading resolved). */
    if (ts < latest)
        return;
    s_evaluate_all(self, key, ts, value);
}

void
alert_engine_anomaly(alert_engine_t *self, const char *key, int64_t ts,
                     double value, double score, bool alarm)
{
    if (alert_series_add_anomaly(self->series, key, ts, score, alarm) == -1) {
        self->st.rejected++;
        return;
    }
    self->st.anomalies++;
    s_evaluate_all(self, key, ts, value);
}

const alert_rule_t *
alert_engine_rule(const alert_engine_t *self, size_t i)
{
    return i < self->nrules ? self->rules[i] : NULL;
}

int
alert_engine_restore(alert_engine_t *self, const char *rule,
                     const char *scope, const char *key, const char *state,
                     const char *severity, int64_t since, int64_t fired,
                     double value)
{
    char hkey[SERIES_KEY_MAX + 160];
    alert_rule_t *r = NULL;

    for (size_t i = 0; i < self->nrules && !r; i++)
        if (strcmp(alert_rule_name(self->rules[i]), rule) == 0)
            r = self->rules[i];
    if (r == NULL)
        return -1;
    snprintf(hkey, sizeof hkey, "%s\x1f%s", rule, scope);
    if (zhashx_lookup(self->alerts, hkey))
        return 0;
    struct s_alert *a = xcalloc(1, sizeof *a);
    a->rule = r;
    a->name = xstrdup(rule);
    a->scope = xstrdup(scope);
    a->key = xstrdup(key);
    a->state = strcmp(state, "pending") == 0 ? S_PENDING : S_FIRING;
    a->since = a->updated = since;
    a->fired = a->step_from = a->state == S_FIRING ? fired : 0;
    if (a->state == S_FIRING && fired > a->updated)
        a->updated = fired;
    a->value = value;
    /* The static name of the stored severity, if the rule still has it. */
    a->severity = alert_rule_severity(r, 0);
    for (size_t i = 0; i < alert_rule_severity_steps(r); i++) {
        const char *sv =
            alert_rule_severity(r, alert_rule_severity_after(r, i));
        if (strcmp(sv, severity) == 0)
            a->severity = sv;
    }
    zhashx_insert(self->alerts, hkey, a);
    return 0;
}

int
alert_engine_resolve(alert_engine_t *self, const char *rule,
                     const char *scope, int64_t now)
{
    char hkey[SERIES_KEY_MAX + 160];
    struct s_alert *a;

    snprintf(hkey, sizeof hkey, "%s\x1f%s", rule, scope);
    if ((a = zhashx_lookup(self->alerts, hkey)) == NULL)
        return -1;
    s_emit(self, a, "resolved", now > a->updated ? now : a->updated);
    zhashx_delete(self->alerts, hkey);
    return 0;
}

void
alert_engine_tick(alert_engine_t *self, int64_t now)
{
    if (self->deadman.n == 0)
        return;
    /* A snapshot: evaluation looks series up, which moves the table's
     * own cursor. Design caveat: O(series) per tick. */
    zlistx_t *keys = alert_series_keys(self->series);
    for (const char *k = zlistx_first(keys); k; k = zlistx_next(keys)) {
        for (size_t i = 0; i < self->deadman.n; i++) {
            alert_rule_t *r = self->rules[self->deadman.idx[i]];
            if (alert_rule_matches(r, k))
                s_evaluate(self, r, k, now,
                           alert_series_value(self->series, k, ALERT_FN_LAST,
                                              0, 0, now));
        }
    }
    zlistx_destroy(&keys);
}

void
alert_engine_score(alert_engine_t *self, const char *key, int64_t ts,
                   double score, bool alarm)
{
    if (alert_series_add_anomaly(self->series, key, ts, score, alarm) == -1) {
        self->st.rejected++;
        return;
    }
    self->st.anomalies++;
}

void
alert_engine_forecast(alert_engine_t *self, const char *key,
                      const struct msg_forecast *f)
{
    if (alert_series_set_forecast(self->series, key, f) == -1) {
        self->st.rejected++;
        return;
    }
    self->st.forecasts++;
}

static json_t *
s_time(int64_t ts)
{
    char buf[40];

    return json_string(clock_format(ts, buf, sizeof buf));
}

json_t *
alert_engine_alerts(alert_engine_t *self)
{
    json_t *arr = json_array();

    for (struct s_alert *a = zhashx_first(self->alerts); a;
         a = zhashx_next(self->alerts)) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:o, s:f}",
                              "rule", a->name, "scope", a->scope, "series",
                              a->key, "state",
                              a->state == S_FIRING ? "firing" : "pending",
                              "severity", a->severity, "since",
                              s_time(a->since), "updated", s_time(a->updated),
                              "value", a->value);
        if (a->state == S_FIRING)
            json_object_set_new(o, "fired_at", s_time(a->fired));
        json_array_append_new(arr, o);
    }
    return arr;
}

void
alert_engine_stats(alert_engine_t *self, struct alert_engine_stats *st)
{
    *st = self->st;
    st->truncated = alert_series_truncated(self->series);
    st->series = alert_series_count(self->series);
    st->points = alert_series_points(self->series);
    st->active = zhashx_size(self->alerts);
    st->rules = self->nrules;
}

/* --------------------------------------------------------------------- */
/* Selftest */

struct s_log {
    char lines[32][160]; /* "rule scope state severity t" */
    size_t n;            /* used */
};

static void
s_test_emit(const struct alert_event *ev, void *arg)
{
    struct s_log *log = arg;

    assert(log->n < 32);
    snprintf(log->lines[log->n++], sizeof log->lines[0], "%s %s %s %s %lld",
             ev->rule, ev->scope, ev->state, ev->severity,
             (long long)(ev->ts / CLOCK_NS_PER_S));
}

static alert_rule_t *
s_test_rule(const char *line)
{
    struct alert_rule_error err;
    alert_rule_t *r = alert_rule_parse_line(line, &err);

    assert(r);
    return r;
}

void
alert_engine_test(bool verbose)
{
    const int64_t S = CLOCK_NS_PER_S;
    struct s_log log = {0};
    struct alert_engine_stats st;
    alert_engine_t *e = alert_engine_new(1000, 1000, s_test_emit, &log);
    alert_rule_t *rules[3];

    rules[0] = s_test_rule("hot: temperature > 30 for 1m clear when "
                           "temperature < 28 severity warning, critical "
                           "after 5m");
    rules[1] = s_test_rule("spike: temperature > avg(temperature, 10m) + 3 * "
                           "std(temperature, 10m)");
    rules[2] = s_test_rule("muggy: temperature > 25 and humidity > 80");
    alert_engine_set_rules(e, rules, 3, 0);
    assert(rules[0] == NULL);

    /* A steady series: nothing. */
    for (int t = 0; t < 60; t++)
        alert_engine_reading(e, "temperature{device=s1}", t * S,
                             20 + (t % 2) * 0.5);
    assert(log.n == 0);
    /* A sustained breach from t=60: "spike" fires at once on the first
     * reading, "hot" is pending, then firing a minute later: once, not
     * once per reading. */
    for (int t = 60; t < 200; t++)
        alert_engine_reading(e, "temperature{device=s1}", t * S, 35);
    if (verbose)
        for (size_t i = 0; i < log.n; i++)
            printf("  %s\n", log.lines[i]);
    assert(log.n == 4);
    TEST_STREQ(log.lines[0], "hot temperature{device=s1} pending warning 60");
    TEST_STREQ(log.lines[1], "spike temperature{device=s1} firing warning 60");
    /* Sustained 35 becomes the average: the spike rule clears. */
    assert(strstr(log.lines[2], "spike") && strstr(log.lines[2], "resolved"));
    TEST_STREQ(log.lines[3], "hot temperature{device=s1} firing warning 120");
    json_t *alerts = alert_engine_alerts(e);
    assert(json_array_size(alerts) == 1);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(alerts, 0),
                                                 "state")),
               "firing");
    json_decref(alerts);
    /* Severity steps up after 5 minutes of firing (t=420). */
    log.n = 0;
    for (int t = 200; t <= 430; t += 10)
        alert_engine_reading(e, "temperature{device=s1}", t * S, 35);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "hot temperature{device=s1} firing critical 420");
    /* Hysteresis: 29 is below the condition but above "clear when". */
    log.n = 0;
    alert_engine_reading(e, "temperature{device=s1}", 440 * S, 29);
    assert(log.n == 0);
    alert_engine_reading(e, "temperature{device=s1}", 450 * S, 27);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "hot temperature{device=s1} resolved critical 450");

    /* A blip shorter than "for" goes pending and back, never firing. */
    log.n = 0;
    alert_engine_reading(e, "temperature{device=s2}", 0, 31);
    alert_engine_reading(e, "temperature{device=s2}", 30 * S, 20);
    assert(log.n == 2);
    TEST_STREQ(log.lines[0], "hot temperature{device=s2} pending warning 0");
    TEST_STREQ(log.lines[1], "hot temperature{device=s2} resolved warning 30");

    /* Two metrics join on tags; the scope is the tag set. */
    log.n = 0;
    alert_engine_reading(e, "humidity{device=s3}", 0, 85);
    assert(log.n == 0); /* no temperature for s3 yet: unknown */
    alert_engine_reading(e, "temperature{device=s3}", S, 26);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "muggy {device=s3} firing warning 1");
    alert_engine_reading(e, "humidity{device=s3}", 2 * S, 50);
    assert(log.n == 2);
    TEST_STREQ(log.lines[1], "muggy {device=s3} resolved warning 2");
    /* A reading of the other series older than that resolution (not late
     * for its own series) does not raise the alert again in the past;
     * one after it does. */
    alert_engine_reading(e, "temperature{device=s3}", S + S / 2, 27);
    assert(log.n == 2);
    alert_engine_reading(e, "humidity{device=s3}", 3 * S, 90);
    assert(log.n == 3);
    TEST_STREQ(log.lines[2], "muggy {device=s3} firing warning 3");
    alert_engine_reading(e, "humidity{device=s3}", 4 * S, 50);
    assert(log.n == 4);

    /* Reload: an unchanged rule keeps its alert, a changed one resolves. */
    log.n = 0;
    alert_engine_reading(e, "temperature{device=s4}", 0, 40);
    alert_engine_reading(e, "humidity{device=s4}", 0, 90);
    assert(log.n == 2); /* hot pending, muggy firing (no std of 1 point) */
    rules[0] = s_test_rule("hot: temperature > 30 for 1m clear when "
                           "temperature < 28 severity warning, critical "
                           "after 5m");
    rules[1] = s_test_rule("muggy: temperature > 26 and humidity > 80");
    alert_engine_set_rules(e, rules, 2, 5 * S);
    assert(log.n == 3);
    TEST_STREQ(log.lines[2], "muggy {device=s4} resolved warning 5");
    alert_engine_stats(e, &st);
    assert(st.active == 1 && st.rules == 2);
    alert_engine_reading(e, "temperature{device=s4}", 60 * S, 40);
    assert(log.n == 5); /* hot fires, the new muggy fires */
    TEST_STREQ(log.lines[3], "hot temperature{device=s4} firing warning 60");

    /* Anomaly scores. */
    rules[0] = s_test_rule("odd: anomaly(temperature) > 0.9");
    alert_engine_set_rules(e, rules, 1, 70 * S);
    log.n = 0;
    alert_engine_reading(e, "temperature{device=s5}", 100 * S, 50);
    assert(log.n == 0);
    alert_engine_anomaly(e, "temperature{device=s5}", 100 * S, 50, 0.95, false);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "odd temperature{device=s5} firing warning 100");
    alert_engine_reading(e, "temperature{device=s5}", 101 * S, 20);
    assert(log.n == 2 && strstr(log.lines[1], "resolved"));

    /* Deadman: a device that goes silent raises its alert on the tick,
     * and the next reading resolves it. */
    rules[0] = s_test_rule("silent: nodata(temperature, 5m) severity error");
    alert_engine_set_rules(e, rules, 1, 200 * S);
    log.n = 0;
    alert_engine_reading(e, "temperature{device=s6}", 1000 * S, 20);
    /* At 1200 s the devices last heard before 900 s are silent; s6 is
     * not (200 s). */
    alert_engine_tick(e, 1200 * S);
    assert(log.n == 5); /* s1..s5 */
    for (size_t i = 0; i < log.n; i++)
        assert(strstr(log.lines[i], "firing error 1200") &&
               !strstr(log.lines[i], "s6"));
    log.n = 0;
    alert_engine_tick(e, 1300 * S); /* exactly 5 m: not yet */
    assert(log.n == 0);
    alert_engine_tick(e, 1301 * S);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "silent temperature{device=s6} firing error 1301");
    alert_engine_tick(e, 1302 * S);
    assert(log.n == 1); /* once, not once per tick */
    alert_engine_reading(e, "temperature{device=s6}", 1303 * S, 21);
    assert(log.n == 2);
    TEST_STREQ(log.lines[1], "silent temperature{device=s6} resolved error 1303");

    /* Restore and resolve by hand. */
    log.n = 0;
    assert(alert_engine_restore(e, "nope", "x", "x", "firing", "error", 0, 0,
                                0) == -1);
    assert(alert_engine_restore(e, "silent", "temperature{device=s7}",
                                "temperature{device=s7}", "firing", "error",
                                10 * S, 20 * S, 5) == 0);
    alert_engine_stats(e, &st);
    assert(st.active == 6 && log.n == 0); /* s1..s5 silent, and s7 */
    assert(alert_engine_resolve(e, "silent", "temperature{device=s7}",
                                2000 * S) == 0);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "silent temperature{device=s7} resolved error 2000");
    assert(alert_engine_resolve(e, "silent", "temperature{device=s7}",
                                2000 * S) == -1);

    /* Severity up with time, back down after 2 m below the condition
     * (above "clear when"), up again 5 m after it holds again. */
    rules[0] = s_test_rule("hot2: t > 30 clear when t < 20 severity warning,"
                           " critical after 5m, back after 2m");
    alert_engine_set_rules(e, rules, 1, 2000 * S);
    log.n = 0;
    const int steps[][2] = {{0, 35},   {300, 35}, {310, 25}, {400, 25},
                            {431, 25}, {440, 35}, {700, 35}, {740, 35},
                            {750, 15}};
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++)
        alert_engine_reading(e, "t{device=z}", (2000 + steps[k][0]) * S,
                             steps[k][1]);
    if (verbose)
        for (size_t i = 0; i < log.n; i++)
            printf("  %s\n", log.lines[i]);
    assert(log.n == 5);
    TEST_STREQ(log.lines[0], "hot2 t{device=z} firing warning 2000");
    TEST_STREQ(log.lines[1], "hot2 t{device=z} firing critical 2300");
    TEST_STREQ(log.lines[2], "hot2 t{device=z} firing warning 2431");
    TEST_STREQ(log.lines[3], "hot2 t{device=z} firing critical 2740");
    TEST_STREQ(log.lines[4], "hot2 t{device=z} resolved critical 2750");
    /* A dip shorter than "back" does not restart the steps, at the first
     * step either: critical 5 m after firing (it restarted them at the
     * first step, critical at 2370). */
    log.n = 0;
    const int dip[][2] = {{0, 35}, {60, 25}, {70, 35}, {300, 35}};
    for (size_t k = 0; k < sizeof dip / sizeof dip[0]; k++)
        alert_engine_reading(e, "t{device=y}", (2000 + dip[k][0]) * S,
                             dip[k][1]);
    assert(log.n == 2);
    TEST_STREQ(log.lines[0], "hot2 t{device=y} firing warning 2000");
    TEST_STREQ(log.lines[1], "hot2 t{device=y} firing critical 2300");
    /* Once back at the first step, an evaluation whose truth is unknown
     * (35 > 30 and the std of one point) does not step up again: the
     * steps count from when the condition holds again (it went critical
     * at 2500). 25 is false whatever the std (Kleene). */
    rules[0] = s_test_rule("hot3: t > 30 and std(t, 5s) >= 0 clear when "
                           "t < 10 severity warning, critical after 5m, back "
                           "after 2m");
    alert_engine_set_rules(e, rules, 1, 2000 * S);
    log.n = 0;
    const int unk[][2] = {{0, 35},   {1, 35},   {300, 35},
                          {301, 35}, {310, 25}, {311, 25},
                          {430, 25}, {431, 25}, {500, 35}};
    for (size_t k = 0; k < sizeof unk / sizeof unk[0]; k++)
        alert_engine_reading(e, "t{device=x}", (2000 + unk[k][0]) * S,
                             unk[k][1]);
    if (verbose)
        for (size_t i = 0; i < log.n; i++)
            printf("  %s\n", log.lines[i]);
    assert(log.n == 3);
    TEST_STREQ(log.lines[0], "hot3 t{device=x} firing warning 2001");
    TEST_STREQ(log.lines[1], "hot3 t{device=x} firing critical 2301");
    TEST_STREQ(log.lines[2], "hot3 t{device=x} firing warning 2430");

    /* A late reading is kept for the windows but not evaluated: it does
     * not raise again, at 2610 s, the alert resolved at 2620 s (it did),
     * nor resolve one at an earlier time; avg sees it at the next
     * reading. */
    rules[0] = s_test_rule("late: t > 30 and avg(t, 1m) < 32");
    alert_engine_set_rules(e, rules, 1, 2600 * S);
    log.n = 0;
    alert_engine_reading(e, "t{device=w}", 2600 * S, 31);
    alert_engine_reading(e, "t{device=w}", 2620 * S, 20);
    alert_engine_reading(e, "t{device=w}", 2610 * S, 31);
    assert(log.n == 2);
    TEST_STREQ(log.lines[0], "late t{device=w} firing warning 2600");
    TEST_STREQ(log.lines[1], "late t{device=w} resolved warning 2620");
    alert_engine_reading(e, "t{device=w}", 2630 * S, 31);
    alert_engine_reading(e, "t{device=w}", 2625 * S, 50); /* late */
    assert(log.n == 3);
    TEST_STREQ(log.lines[2], "late t{device=w} firing warning 2630");
    alert_engine_reading(e, "t{device=w}", 2640 * S, 31); /* avg 32.3 */
    assert(log.n == 4);
    TEST_STREQ(log.lines[3], "late t{device=w} resolved warning 2640");

    /* Rules indexed by a selector's tag see exactly their series. */
    rules[0] = s_test_rule("ta: temperature{device=a} > 1");
    rules[1] = s_test_rule("tb: temperature{room=x,device=b} > 1");
    rules[2] = s_test_rule("tn: temperature > 4");
    alert_engine_set_rules(e, rules, 3, 2500 * S);
    log.n = 0;
    alert_engine_reading(e, "temperature{device=a,room=x}", 2501 * S, 5);
    alert_engine_reading(e, "temperature{device=b,room=y}", 2501 * S, 5);
    alert_engine_reading(e, "temperature{device=b,room=x}", 2501 * S, 5);
    alert_engine_reading(e, "temperature{device=c}", 2501 * S, 5);
    assert(log.n == 6); /* tn for each of the four, ta once, tb once */
    TEST_STREQ(log.lines[1], "ta temperature{device=a,room=x} firing warning "
                             "2501");
    TEST_STREQ(log.lines[4], "tb temperature{device=b,room=x} firing warning "
                             "2501");

    /* A rule that names t{site=a} and t (one metric: the scope is the
     * series) sits in two buckets; a reading evaluates it once: "clear
     * when" resolves the alert and the same reading does not raise it
     * again (it did: firing at 3002 too). */
    rules[0] = s_test_rule("both: t{site=a} > 5 clear when t > 10");
    alert_engine_set_rules(e, rules, 1, 3000 * S);
    log.n = 0;
    for (int k = 1; k <= 3; k++)
        alert_engine_reading(e, "t{device=v,site=a}", (3000 + k) * S, 12);
    assert(log.n == 3);
    TEST_STREQ(log.lines[0], "both t{device=v,site=a} firing warning 3001");
    TEST_STREQ(log.lines[1], "both t{device=v,site=a} resolved warning 3002");
    TEST_STREQ(log.lines[2], "both t{device=v,site=a} firing warning 3003");

    /* Per-device thresholds from metadata: one rule, limits that differ;
     * a device without the attribute is unknown, never firing. */
    rules[0] = s_test_rule("over: temperature > device.max_temp");
    alert_engine_set_rules(e, rules, 1, 3000 * S);
    json_t *m = json_pack("{s:i, s:s}", "max_temp", 40, "site", "x");
    alert_engine_set_device(e, "a", m);
    json_decref(m);
    m = json_pack("{s:s}", "max_temp", "60");
    alert_engine_set_device(e, "b", m);
    json_decref(m);
    assert(alert_engine_devices(e) == 2);
    log.n = 0;
    alert_engine_reading(e, "temperature{device=a}", 3001 * S, 50);
    alert_engine_reading(e, "temperature{device=b}", 3001 * S, 50);
    alert_engine_reading(e, "temperature{device=c}", 3001 * S, 50);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "over temperature{device=a} firing warning 3001");
    m = json_pack("{s:f}", "max_temp", 45.5);
    alert_engine_set_device(e, "b", m);
    json_decref(m);
    alert_engine_reading(e, "temperature{device=b}", 3002 * S, 50);
    assert(log.n == 2);
    TEST_STREQ(log.lines[1], "over temperature{device=b} firing warning 3002");
    alert_engine_set_device(e, "a", NULL);
    alert_engine_reading(e, "temperature{device=a}", 3003 * S, 20);
    assert(log.n == 2); /* unknown limit: the alert stays */
    assert(alert_engine_devices(e) == 1);
    /* Another tenant's device "b" is not this "b": its own limit. */
    m = json_pack("{s:i}", "max_temp", 10);
    alert_engine_set_device(e, "b@acme", m);
    json_decref(m);
    alert_engine_reading(e, "temperature{device=b,tenant=acme}", 3004 * S, 20);
    alert_engine_reading(e, "temperature{device=b,tenant=globex}", 3004 * S, 99);
    assert(log.n == 3);
    TEST_STREQ(log.lines[2],
               "over temperature{device=b,tenant=acme} firing warning 3004");
    alert_engine_set_device(e, "b@acme", NULL);

    /* time_to: a bearing warming 1 degree a minute from 40 crosses 90 in
     * 50 minutes; "within 30m" fires at 61 (29 minutes to go), and a
     * reading that bends the line down resolves it. */
    rules[0] = s_test_rule("wear: time_to(bearing, 90, 10m) < 30m");
    alert_engine_set_rules(e, rules, 1, 4000 * S);
    log.n = 0;
    for (int k = 0; k <= 25; k++)
        alert_engine_reading(e, "bearing{device=w}", (4000 + k * 60) * S,
                             40 + k);
    assert(log.n == 1);
    TEST_STREQ(log.lines[0], "wear bearing{device=w} firing warning 5260");
    for (int k = 26; k <= 40; k++)
        alert_engine_reading(e, "bearing{device=w}", (4000 + k * 60) * S, 40);
    assert(log.n == 2 && strstr(log.lines[1], "resolved"));

    alert_engine_stats(e, &st);
    assert(st.readings > 0 && st.anomalies == 1 && st.evaluations > 0);
    alert_engine_destroy(&e);
    alert_engine_destroy(&e);
    TEST_OK("alert_engine");
}
