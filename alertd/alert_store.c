/*
 * alert_store: alerts, history, silences and the outbox in SQLite (see
 * alert_store.h).
 *
 * Times are int64 ns in the database and RFC 3339 in JSON. Statements are
 * prepared per call: they run per alert change, not per reading.
 */
#include "alertd/alert_store.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bumped with every incompatible change of the schema below. */
#define S_SCHEMA_VERSION 1

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS alerts ("
    " id INTEGER PRIMARY KEY, rule TEXT NOT NULL, scope TEXT NOT NULL,"
    " series TEXT NOT NULL, state TEXT NOT NULL, severity TEXT NOT NULL,"
    " value REAL, since INTEGER NOT NULL, fired_at INTEGER,"
    " acked_at INTEGER, acked_by TEXT, resolved_at INTEGER,"
    " notified_at INTEGER, escalated_at INTEGER, updated INTEGER NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS alerts_open ON alerts(rule, scope)"
    " WHERE resolved_at IS NULL;"
    "CREATE TABLE IF NOT EXISTS alert_history ("
    " id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL, ts INTEGER NOT NULL,"
    " state TEXT NOT NULL, severity TEXT, value REAL, note TEXT);"
    "CREATE INDEX IF NOT EXISTS alert_history_alert ON"
    " alert_history(alert_id);"
    "CREATE TABLE IF NOT EXISTS silences ("
    " id INTEGER PRIMARY KEY, rule TEXT NOT NULL, scope TEXT NOT NULL,"
    " starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL, comment TEXT);"
    "CREATE TABLE IF NOT EXISTS outbox ("
    " id INTEGER PRIMARY KEY, alert_id INTEGER NOT NULL,"
    " channel TEXT NOT NULL, idem_key TEXT NOT NULL UNIQUE,"
    " body TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'queued',"
    " attempts INTEGER NOT NULL DEFAULT 0, next_at INTEGER NOT NULL,"
    " last_error TEXT, created INTEGER NOT NULL, done_at INTEGER);"
    "CREATE INDEX IF NOT EXISTS outbox_due ON outbox(status, next_at);"
    "CREATE INDEX IF NOT EXISTS outbox_alert ON outbox(alert_id);";

struct alert_store {
    sqlite3 *db;  /* the connection */
    char *path;   /* file name, for messages */
};

static int
s_exec(alert_store_t *self, const char *sql)
{
    char *msg = NULL;

    if (sqlite3_exec(self->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        log_err("alert_store: %s: %s", self->path, msg ? msg : "?");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

/* Prepare sql and bind arguments by a format: 'i' int64, 'I' int64 with
 * 0 bound as NULL, 't' text (NULL allowed), 'd' double (NaN as NULL).
 * Returns the statement or NULL (logged). */
static sqlite3_stmt *
s_prep(alert_store_t *self, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st;
    va_list ap;
    int i = 1;

    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_err("alert_store: %s: %s", self->path, sqlite3_errmsg(self->db));
        return NULL;
    }
    va_start(ap, fmt);
    for (const char *f = fmt; *f; f++, i++) {
        if (*f == 'i') {
            sqlite3_bind_int64(st, i, va_arg(ap, int64_t));
        } else if (*f == 'I') {
            int64_t v = va_arg(ap, int64_t);
            if (v)
                sqlite3_bind_int64(st, i, v);
            else
                sqlite3_bind_null(st, i);
        } else if (*f == 'd') {
            double d = va_arg(ap, double);
            if (d != d)
                sqlite3_bind_null(st, i);
            else
                sqlite3_bind_double(st, i, d);
        } else {
            const char *s = va_arg(ap, const char *);
            if (s)
                sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i);
        }
    }
    va_end(ap);
    return st;
}

/* Step a statement that returns no rows, finalize it. 0 or -1. */
static int
s_done(alert_store_t *self, sqlite3_stmt *st)
{
    int rc;

    if (st == NULL)
        return -1;
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_err("alert_store: %s: %s", self->path, sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

/* Step a statement that returns one integer (or none: dflt). */
static int64_t
s_int(alert_store_t *self, sqlite3_stmt *st, int64_t dflt)
{
    int64_t v = dflt;

    if (st == NULL)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

alert_store_t *
alert_store_new(const char *path, int busy_ms)
{
    alert_store_t *self = xcalloc(1, sizeof *self);
    int64_t version;

    self->path = xstrdup(path);
    if (sqlite3_open_v2(path, &self->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        log_err("alert_store: cannot open %s: %s", path,
                self->db ? sqlite3_errmsg(self->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(self->db, busy_ms);
    /* WAL: the notify thread reads and updates the outbox while the loop
     * writes; synchronous FULL: a committed outbox row survives power
     * loss, not only a crash. */
    if (s_exec(self, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;") ||
        s_exec(self, s_schema))
        goto fail;
    version = s_int(self, s_prep(self, "PRAGMA user_version", ""), 0);
    if (version == 0) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", S_SCHEMA_VERSION);
        if (s_exec(self, sql))
            goto fail;
    } else if (version != S_SCHEMA_VERSION) {
        log_err("alert_store: %s has schema %lld, this alertd knows %d", path,
                (long long)version, S_SCHEMA_VERSION);
        goto fail;
    }
    return self;
fail:
    alert_store_destroy(&self);
    return NULL;
}

void
alert_store_destroy(alert_store_t **self_p)
{
    alert_store_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    sqlite3_close(self->db);
    free(self->path);
    free(self);
    *self_p = NULL;
}

struct sqlite3 *
alert_store_db(alert_store_t *self)
{
    return self->db;
}

int
alert_store_begin(alert_store_t *self)
{
    return s_exec(self, "BEGIN IMMEDIATE");
}

int
alert_store_commit(alert_store_t *self)
{
    return s_exec(self, "COMMIT");
}

static int64_t
s_open_id(alert_store_t *self, const char *rule, const char *scope)
{
    return s_int(self,
                 s_prep(self,
                        "SELECT id FROM alerts WHERE rule=? AND scope=? AND "
                        "resolved_at IS NULL",
                        "tt", rule, scope),
                 0);
}

int64_t
alert_store_event(alert_store_t *self, const struct alert_event *ev)
{
    int64_t id = s_open_id(self, ev->rule, ev->scope);
    bool firing = strcmp(ev->state, "firing") == 0;
    bool resolved = strcmp(ev->state, "resolved") == 0;

    if (id < 0)
        return -1;
    if (id == 0) {
        if (resolved)
            return 0; /* nothing open: nothing to resolve */
        if (s_done(self,
                   s_prep(self,
                          "INSERT INTO alerts (rule, scope, series, state,"
                          " severity, value, since, fired_at, updated)"
                          " VALUES (?,?,?,?,?,?,?,?,?)",
                          "tttttdiIi", ev->rule, ev->scope, ev->key,
                          ev->state, ev->severity, ev->value, ev->since,
                          firing ? ev->ts : (int64_t)0, ev->ts)) == -1)
            return -1;
        id = sqlite3_last_insert_rowid(self->db);
    } else if (resolved) {
        if (s_done(self, s_prep(self,
                                "UPDATE alerts SET state='resolved',"
                                " resolved_at=?, value=?, series=?,"
                                " updated=? WHERE id=?",
                                "idtii", ev->ts, ev->value, ev->key, ev->ts,
                                id)) == -1)
            return -1;
    } else {
        /* Firing (or a severity step); an acknowledged alert stays
         * acknowledged. */
        if (s_done(self,
                   s_prep(self,
                          "UPDATE alerts SET state=CASE WHEN acked_at IS NULL"
                          " THEN ? ELSE 'acknowledged' END, severity=?,"
                          " value=?, series=?, updated=?,"
                          " fired_at=COALESCE(fired_at, ?) WHERE id=?",
                          "ttdtiIi", ev->state, ev->severity, ev->value,
                          ev->key, ev->ts, firing ? ev->ts : (int64_t)0,
                          id)) == -1)
            return -1;
    }
    if (s_done(self, s_prep(self,
                            "INSERT INTO alert_history (alert_id, ts, state,"
                            " severity, value) VALUES (?,?,?,?,?)",
                            "iittd", id, ev->ts, ev->state, ev->severity,
                            ev->value)) == -1)
        return -1;
    return id;
}

int
alert_store_note(alert_store_t *self, int64_t id, int64_t ts,
                 const char *note)
{
    return s_done(self, s_prep(self,
                               "INSERT INTO alert_history (alert_id, ts,"
                               " state, note) VALUES (?,?,'note',?)",
                               "iit", id, ts, note));
}

int64_t
alert_store_notified(alert_store_t *self, int64_t id)
{
    return s_int(self,
                 s_prep(self, "SELECT notified_at FROM alerts WHERE id=?",
                        "i", id),
                 0);
}

int
alert_store_set_notified(alert_store_t *self, int64_t id, int64_t ts)
{
    return s_done(self, s_prep(self,
                               "UPDATE alerts SET notified_at=? WHERE id=?",
                               "ii", ts, id));
}

int
alert_store_enqueue(alert_store_t *self, int64_t id, const char *channel,
                    const char *key, const char *body, int64_t now)
{
    if (s_done(self, s_prep(self,
                            "INSERT OR IGNORE INTO outbox (alert_id, channel,"
                            " idem_key, body, next_at, created)"
                            " VALUES (?,?,?,?,?,?)",
                            "ittti" "i", id, channel, key, body, now,
                            now)) == -1)
        return -1;
    return sqlite3_changes(self->db) > 0 ? 1 : 0;
}

int
alert_store_ack(alert_store_t *self, int64_t id, const char *by, int64_t now)
{
    if (s_done(self, s_prep(self,
                            "UPDATE alerts SET state='acknowledged',"
                            " acked_at=?, acked_by=?, updated=? WHERE id=?"
                            " AND resolved_at IS NULL AND acked_at IS NULL",
                            "itii", now, by, now, id)) == -1)
        return -1;
    if (sqlite3_changes(self->db) == 0)
        return -1;
    return s_done(self, s_prep(self,
                               "INSERT INTO alert_history (alert_id, ts,"
                               " state, note) VALUES (?,?,'acknowledged',?)",
                               "iit", id, now, by));
}

int
alert_store_lookup(alert_store_t *self, int64_t id, char **rule,
                   char **scope)
{
    sqlite3_stmt *st = s_prep(self,
                              "SELECT rule, scope FROM alerts WHERE id=? AND"
                              " resolved_at IS NULL",
                              "i", id);
    int rc = -1;

    if (st && sqlite3_step(st) == SQLITE_ROW) {
        *rule = xstrdup((const char *)sqlite3_column_text(st, 0));
        *scope = xstrdup((const char *)sqlite3_column_text(st, 1));
        rc = 0;
    }
    sqlite3_finalize(st);
    return rc;
}

int64_t
alert_store_silence_add(alert_store_t *self, const char *rule,
                        const char *scope, int64_t from, int64_t until,
                        const char *comment)
{
    if (s_done(self, s_prep(self,
                            "INSERT INTO silences (rule, scope, starts_at,"
                            " ends_at, comment) VALUES (?,?,?,?,?)",
                            "ttiit", rule, scope, from, until,
                            comment)) == -1)
        return -1;
    return sqlite3_last_insert_rowid(self->db);
}

int
alert_store_silence_remove(alert_store_t *self, int64_t id)
{
    if (s_done(self, s_prep(self, "DELETE FROM silences WHERE id=?", "i",
                            id)) == -1)
        return -1;
    return sqlite3_changes(self->db) > 0 ? 0 : -1;
}

int64_t
alert_store_silenced(alert_store_t *self, const char *rule,
                     const char *scope, int64_t now)
{
    sqlite3_stmt *st = s_prep(self,
                              "SELECT id, rule, scope FROM silences WHERE"
                              " starts_at<=? AND ends_at>? ORDER BY id",
                              "ii", now, now);
    int64_t found = 0;

    while (st && found == 0 && sqlite3_step(st) == SQLITE_ROW)
        if (strutil_glob((const char *)sqlite3_column_text(st, 1), rule) &&
            strutil_glob((const char *)sqlite3_column_text(st, 2), scope))
            found = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return found;
}

static json_t *
s_time(sqlite3_stmt *st, int col)
{
    char buf[40];

    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    return json_string(
        clock_format(sqlite3_column_int64(st, col), buf, sizeof buf));
}

static json_t *
s_text(sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    /* Lossy: a row written before a text was checked, or by hand, must
     * not drop out of an answer (json_string refuses bad UTF-8). */
    return t ? mpjson_string_lossy((const char *)t) : json_null();
}

json_t *
alert_store_silences(alert_store_t *self, int64_t now)
{
    sqlite3_stmt *st = s_prep(self,
                              "SELECT id, rule, scope, starts_at, ends_at,"
                              " comment FROM silences WHERE ends_at>?"
                              " ORDER BY id",
                              "i", now);
    json_t *arr = json_array();

    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            arr, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o}", "id",
                           (json_int_t)sqlite3_column_int64(st, 0), "rule",
                           s_text(st, 1), "scope", s_text(st, 2), "starts_at",
                           s_time(st, 3), "ends_at", s_time(st, 4), "comment",
                           s_text(st, 5)));
    sqlite3_finalize(st);
    return arr;
}

#define S_ALERT_COLS                                                         \
    "id, rule, scope, series, state, severity, value, since, fired_at,"     \
    " acked_at, acked_by, resolved_at, updated"

static json_t *
s_alert_row(sqlite3_stmt *st)
{
    json_t *o = json_pack(
        "{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
        "id", (json_int_t)sqlite3_column_int64(st, 0), "rule", s_text(st, 1),
        "scope", s_text(st, 2), "series", s_text(st, 3), "state",
        s_text(st, 4), "severity", s_text(st, 5), "value",
        sqlite3_column_type(st, 6) == SQLITE_NULL
            ? json_null()
            : json_real(sqlite3_column_double(st, 6)),
        "since", s_time(st, 7), "fired_at", s_time(st, 8), "acked_at",
        s_time(st, 9), "acked_by", s_text(st, 10), "resolved_at",
        s_time(st, 11), "updated", s_time(st, 12));
    return o;
}

json_t *
alert_store_alerts(alert_store_t *self, bool all, int64_t limit)
{
    sqlite3_stmt *st = s_prep(
        self,
        all ? "SELECT " S_ALERT_COLS " FROM alerts ORDER BY id DESC LIMIT ?"
            : "SELECT " S_ALERT_COLS " FROM alerts WHERE resolved_at IS NULL"
              " ORDER BY id LIMIT ?",
        "i", limit);
    json_t *arr = json_array();

    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, s_alert_row(st));
    sqlite3_finalize(st);
    return arr;
}

json_t *
alert_store_alert(alert_store_t *self, int64_t id)
{
    sqlite3_stmt *st = s_prep(
        self, "SELECT " S_ALERT_COLS " FROM alerts WHERE id=?", "i", id);
    json_t *o = NULL, *h, *d;

    if (st && sqlite3_step(st) == SQLITE_ROW)
        o = s_alert_row(st);
    sqlite3_finalize(st);
    if (o == NULL)
        return NULL;
    h = json_array();
    st = s_prep(self,
                "SELECT ts, state, severity, value, note FROM alert_history"
                " WHERE alert_id=? ORDER BY id",
                "i", id);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            h, json_pack("{s:o, s:o, s:o, s:o, s:o}", "ts", s_time(st, 0),
                         "state", s_text(st, 1), "severity", s_text(st, 2),
                         "value",
                         sqlite3_column_type(st, 3) == SQLITE_NULL
                             ? json_null()
                             : json_real(sqlite3_column_double(st, 3)),
                         "note", s_text(st, 4)));
    sqlite3_finalize(st);
    json_object_set_new(o, "history", h);
    d = json_array();
    st = s_prep(self,
                "SELECT channel, idem_key, status, attempts, last_error,"
                " created, done_at FROM outbox WHERE alert_id=? ORDER BY id",
                "i", id);
    while (st && sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(
            d, json_pack("{s:o, s:o, s:o, s:I, s:o, s:o, s:o}", "channel",
                         s_text(st, 0), "idempotency_key", s_text(st, 1),
                         "status", s_text(st, 2), "attempts",
                         (json_int_t)sqlite3_column_int64(st, 3),
                         "last_error", s_text(st, 4), "queued_at",
                         s_time(st, 5), "done_at", s_time(st, 6)));
    sqlite3_finalize(st);
    json_object_set_new(o, "deliveries", d);
    return o;
}

static void
s_foreach(sqlite3_stmt *st, alert_store_open_fn *fn, void *arg)
{
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        struct alert_store_open a;
        a.id = sqlite3_column_int64(st, 0);
        a.rule = (const char *)sqlite3_column_text(st, 1);
        a.scope = (const char *)sqlite3_column_text(st, 2);
        a.series = (const char *)sqlite3_column_text(st, 3);
        a.state = (const char *)sqlite3_column_text(st, 4);
        a.severity = (const char *)sqlite3_column_text(st, 5);
        a.value = sqlite3_column_double(st, 6);
        a.since = sqlite3_column_int64(st, 7);
        a.fired = sqlite3_column_int64(st, 8);
        fn(&a, arg);
    }
    sqlite3_finalize(st);
}

void
alert_store_foreach_open(alert_store_t *self, alert_store_open_fn *fn,
                         void *arg)
{
    s_foreach(s_prep(self,
                     "SELECT " S_ALERT_COLS " FROM alerts WHERE resolved_at"
                     " IS NULL ORDER BY id",
                     ""),
              fn, arg);
}

void
alert_store_foreach_unacked(alert_store_t *self, const char *rule,
                            int64_t fired_before, alert_store_open_fn *fn,
                            void *arg)
{
    s_foreach(s_prep(self,
                     "SELECT " S_ALERT_COLS " FROM alerts WHERE rule=? AND"
                     " resolved_at IS NULL AND acked_at IS NULL AND"
                     " escalated_at IS NULL AND fired_at IS NOT NULL AND"
                     " fired_at<=? ORDER BY id",
                     "ti", rule, fired_before),
              fn, arg);
}

/* Value of tag in a series key or tag set ("n{a=1,b=2}", "{a=1}"): a
 * pointer into key and its length, or NULL. */
const char *
alert_store_scope_tag(const char *key, const char *tag, size_t *len)
{
    size_t tl = strlen(tag);

    for (const char *p = strchr(key, '{'); p && *p; p = strchr(p + 1, ',')) {
        if (strncmp(p + 1, tag, tl) == 0 && p[1 + tl] == '=') {
            const char *v = p + 2 + tl;
            *len = strcspn(v, ",}");
            return v;
        }
    }
    return NULL;
}

int64_t
alert_store_inhibitor(alert_store_t *self, const char *rule,
                      const char *scope, const char *const *tags,
                      size_t ntags)
{
    sqlite3_stmt *st = s_prep(self,
                              "SELECT id, scope FROM alerts WHERE rule=? AND"
                              " resolved_at IS NULL AND fired_at IS NOT NULL"
                              " ORDER BY id",
                              "t", rule);
    int64_t found = 0;

    while (st && found == 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *other = (const char *)sqlite3_column_text(st, 1);
        bool same = true;
        for (size_t i = 0; i < ntags && same; i++) {
            size_t la, lb;
            const char *a = alert_store_scope_tag(scope, tags[i], &la);
            const char *b = alert_store_scope_tag(other, tags[i], &lb);
            same = a && b && la == lb && memcmp(a, b, la) == 0;
        }
        if (same)
            found = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return found;
}

int
alert_store_set_escalated(alert_store_t *self, int64_t id, int64_t ts)
{
    return s_done(self, s_prep(self,
                               "UPDATE alerts SET escalated_at=? WHERE id=?",
                               "ii", ts, id));
}

int64_t
alert_store_outbox_count(alert_store_t *self, const char *status)
{
    return s_int(self,
                 s_prep(self, "SELECT count(*) FROM outbox WHERE status=?",
                        "t", status),
                 0);
}

/* --------------------------------------------------------------------- */
/* Selftest */

static void
s_count_open(const struct alert_store_open *a, void *arg)
{
    (*(int *)arg)++;
    assert(a->rule && a->scope && a->state);
}

void
alert_store_test(bool verbose)
{
    char dir[] = "/tmp/alert_store_test.XXXXXX", path[128];
    const int64_t S = CLOCK_NS_PER_S;
    alert_store_t *st;
    struct alert_event ev = {"hot", "t{d=1}", "t{d=1}", "pending", "warning",
                             10 * S, 31, 10 * S, NULL};
    int64_t id, id2;
    int n = 0;
    json_t *j;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/alertd.db", dir);
    st = alert_store_new(path, 1000);
    assert(st);
    /* pending -> firing -> acknowledged -> resolved, with history. */
    assert(alert_store_begin(st) == 0);
    id = alert_store_event(st, &ev);
    assert(id > 0);
    ev.state = "firing";
    ev.ts = 70 * S;
    assert(alert_store_event(st, &ev) == id);
    assert(alert_store_commit(st) == 0);
    assert(alert_store_notified(st, id) == 0);
    assert(alert_store_set_notified(st, id, 70 * S) == 0);
    assert(alert_store_notified(st, id) == 70 * S);
    assert(alert_store_enqueue(st, id, "ops", "k1", "{}", 70 * S) == 1);
    assert(alert_store_enqueue(st, id, "ops", "k1", "{}", 71 * S) == 0);
    assert(alert_store_outbox_count(st, "queued") == 1);
    assert(alert_store_ack(st, id, "alice", 80 * S) == 0);
    assert(alert_store_ack(st, id, "bob", 81 * S) == -1); /* once */
    ev.severity = "critical"; /* a severity step keeps it acknowledged */
    ev.ts = 90 * S;
    assert(alert_store_event(st, &ev) == id);
    j = alert_store_alerts(st, false, 100);
    assert(json_array_size(j) == 1);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(j, 0),
                                                 "state")),
               "acknowledged");
    json_decref(j);
    alert_store_foreach_open(st, s_count_open, &n);
    assert(n == 1);
    char *rule, *scope;
    assert(alert_store_lookup(st, id, &rule, &scope) == 0);
    TEST_STREQ(rule, "hot");
    TEST_STREQ(scope, "t{d=1}");
    free(rule);
    free(scope);
    ev.state = "resolved";
    ev.ts = 100 * S;
    assert(alert_store_event(st, &ev) == id);
    assert(alert_store_lookup(st, id, &rule, &scope) == -1);
    j = alert_store_alert(st, id);
    assert(j);
    TEST_STREQ(json_string_value(json_object_get(j, "state")), "resolved");
    /* pending, firing, acknowledged, firing (critical), resolved */
    assert(json_array_size(json_object_get(j, "history")) == 5);
    assert(json_array_size(json_object_get(j, "deliveries")) == 1);
    json_decref(j);
    /* A last_error that is not UTF-8 (a row from before receivers' bytes
     * were cleaned) keeps its delivery in the answer, made lossy. */
    assert(sqlite3_exec(alert_store_db(st),
                        "UPDATE outbox SET last_error='HTTP 500 ' || x'fffe'",
                        NULL, NULL, NULL) == SQLITE_OK);
    j = alert_store_alert(st, id);
    assert(j && json_array_size(json_object_get(j, "deliveries")) == 1);
    TEST_STREQ(json_string_value(json_object_get(
                   json_array_get(json_object_get(j, "deliveries"), 0),
                   "last_error")),
               "HTTP 500 \xef\xbf\xbd\xef\xbf\xbd");
    if (verbose) {
        char *s = json_dumps(j, JSON_INDENT(2));
        printf("%s\n", s);
        free(s);
    }
    json_decref(j);
    /* The same rule and scope fire again: a new alert row. */
    ev.state = "firing";
    ev.ts = ev.since = 200 * S;
    id2 = alert_store_event(st, &ev);
    assert(id2 > id);
    j = alert_store_alerts(st, true, 10);
    assert(json_array_size(j) == 2);
    json_decref(j);
    /* Escalation candidates: firing, unacknowledged, old enough. */
    n = 0;
    alert_store_foreach_unacked(st, "hot", 199 * S, s_count_open, &n);
    assert(n == 0);
    alert_store_foreach_unacked(st, "hot", 260 * S, s_count_open, &n);
    assert(n == 1);
    assert(alert_store_set_escalated(st, id2, 260 * S) == 0);
    n = 0;
    alert_store_foreach_unacked(st, "hot", 300 * S, s_count_open, &n);
    assert(n == 0);
    /* Silences match rule and scope globs within their time. */
    int64_t sid = alert_store_silence_add(st, "h*", "t{d=*}", 0, 500 * S,
                                          "maintenance");
    assert(sid > 0);
    assert(alert_store_silenced(st, "hot", "t{d=1}", 100 * S) == sid);
    assert(alert_store_silenced(st, "hot", "u{d=1}", 100 * S) == 0);
    assert(alert_store_silenced(st, "hot", "t{d=1}", 500 * S) == 0);
    j = alert_store_silences(st, 100 * S);
    assert(json_array_size(j) == 1);
    json_decref(j);
    assert(alert_store_silence_remove(st, sid) == 0);
    assert(alert_store_silence_remove(st, sid) == -1);
    assert(alert_store_note(st, id2, 201 * S, "throttled") == 0);
    /* Inhibition: id2 (hot, t{d=1}, firing) inhibits alerts whose scope
     * has d=1. */
    const char *on[] = {"d"}, *on2[] = {"d", "site"};
    assert(alert_store_inhibitor(st, "hot", "u{d=1,x=2}", on, 1) == id2);
    assert(alert_store_inhibitor(st, "hot", "{d=1}", on, 1) == id2);
    assert(alert_store_inhibitor(st, "hot", "u{d=10}", on, 1) == 0);
    assert(alert_store_inhibitor(st, "hot", "u{d=1}", on2, 2) == 0);
    assert(alert_store_inhibitor(st, "hot", "u", NULL, 0) == id2);
    assert(alert_store_inhibitor(st, "cold", "u{d=1}", on, 1) == 0);
    alert_store_destroy(&st);
    alert_store_destroy(&st);
    /* Reopening finds the state again. */
    st = alert_store_new(path, 1000);
    assert(st);
    n = 0;
    alert_store_foreach_open(st, s_count_open, &n);
    assert(n == 1);
    alert_store_destroy(&st);
    unlink(path);
    snprintf(path, sizeof path, "%s/alertd.db-wal", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/alertd.db-shm", dir);
    unlink(path);
    assert(rmdir(dir) == 0);
    TEST_OK("alert_store");
}
