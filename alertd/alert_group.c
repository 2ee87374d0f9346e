/*
 * alert_group: grouped notifications (see alert_group.h).
 */
#include "alertd/alert_group.h"
#include "alertd/alert_notify.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <jansson.h>
#include <sqlite3.h>
#include <string.h>

/* Longest group key ("site=a,line=2"). */
#define S_GKEY_MAX 1024

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS group_pending ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, rule TEXT NOT NULL,"
    " gkey TEXT NOT NULL,"
    " alert_id INTEGER NOT NULL, due INTEGER NOT NULL,"
    " channels TEXT NOT NULL, body TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS group_pending_key ON group_pending(rule, gkey)";

int
alert_group_init(alert_store_t *store)
{
    sqlite3 *db = alert_store_db(store);

    if (sqlite3_exec(db, s_schema, NULL, NULL, NULL) != SQLITE_OK) {
        log_warnx("alert_group: cannot create group_pending: %s",
                  sqlite3_errmsg(db));
        return -1;
    }
    return 0;
}

/* The group key of scope: "tag=value" for each "by" tag, comma
 * separated; a missing tag counts as empty. */
static void
s_gkey(const alert_rule_t *r, const char *scope, char *buf, size_t len)
{
    const char *t, *v;
    size_t n = 0, vl;

    buf[0] = '\0';
    for (size_t i = 0; (t = alert_rule_group_by(r, i)) != NULL; i++) {
        v = alert_store_scope_tag(scope, t, &vl);
        int w = snprintf(buf + n, len - n, "%s%s=%.*s", i ? "," : "", t,
                         v ? (int)vl : 0, v ? v : "");
        if (w < 0 || (size_t)w >= len - n)
            return; /* cut: a longer key still groups by its prefix */
        n += (size_t)w;
    }
}

static sqlite3_stmt *
s_prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warnx("alert_group: %s", sqlite3_errmsg(db));
        return NULL;
    }
    return st;
}

int
alert_group_add(alert_store_t *store, const alert_rule_t *r, int64_t id,
                const char *scope, int64_t ts, const char *body)
{
    sqlite3 *db = alert_store_db(store);
    char gkey[S_GKEY_MAX];
    int64_t within, due = INT64_MIN;
    sqlite3_stmt *st;
    json_t *ch = json_array();
    char *chs;
    int rc = -1;

    alert_rule_group(r, &within);
    s_gkey(r, scope, gkey, sizeof gkey);
    /* An open group keeps its window; else this change opens one. */
    if ((st = s_prep(db, "SELECT min(due) FROM group_pending WHERE rule=?"
                         " AND gkey=?")) == NULL)
        goto out;
    sqlite3_bind_text(st, 1, alert_rule_name(r), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, gkey, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL)
        due = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    if (due == INT64_MIN)
        due = ts > INT64_MAX - within ? INT64_MAX : ts + within;
    for (size_t i = 0; i < alert_rule_notify_count(r); i++)
        json_array_append_new(ch, json_string(alert_rule_notify(r, i)));
    chs = mpjson_dumps(ch);
    if ((st = s_prep(db, "INSERT INTO group_pending (rule, gkey, alert_id,"
                         " due, channels, body) VALUES (?,?,?,?,?,?)")) !=
        NULL) {
        sqlite3_bind_text(st, 1, alert_rule_name(r), -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, gkey, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, id);
        sqlite3_bind_int64(st, 4, due);
        sqlite3_bind_text(st, 5, chs, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, body, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
        if (rc)
            log_warnx("alert_group: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
    }
    free(chs);
out:
    json_decref(ch);
    return rc;
}

/* The key of a group as an object: "site=a,line=2" -> {"site": "a",
 * "line": "2"}. */
static json_t *
s_key_json(const char *gkey)
{
    json_t *o = json_object();
    char *dup = xstrdup(gkey), *save = NULL;

    for (char *kv = strtok_r(dup, ",", &save); kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (eq) {
            *eq = '\0';
            json_object_set_new(o, kv, json_string(eq + 1));
        }
    }
    free(dup);
    return o;
}

/* Queue one group: every waiting change of (rule, gkey), one outbox row
 * per channel, then delete the rows. */
static int
s_flush_one(alert_store_t *store, const char *rule, const char *gkey,
            int64_t due, int64_t now)
{
    sqlite3 *db = alert_store_db(store);
    sqlite3_stmt *st = s_prep(db, "SELECT id, alert_id, channels, body FROM"
                                  " group_pending WHERE rule=? AND gkey=?"
                                  " ORDER BY id");
    json_t *alerts = json_array(), *channels = NULL;
    int64_t first = 0, alert_id = 0, firing = 0, resolved = 0;
    char key[40], scope[S_GKEY_MAX + 8], tb[40];
    int rc = 0;

    if (st == NULL) {
        json_decref(alerts);
        return -1;
    }
    sqlite3_bind_text(st, 1, rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, gkey, -1, SQLITE_STATIC);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *b = json_loads((const char *)sqlite3_column_text(st, 3), 0,
                               NULL);
        const char *state = json_string_value(json_object_get(b, "state"));
        if (first == 0) {
            first = sqlite3_column_int64(st, 0);
            alert_id = sqlite3_column_int64(st, 1);
            channels = json_loads((const char *)sqlite3_column_text(st, 2),
                                  0, NULL);
        }
        if (state && strcmp(state, "firing") == 0)
            firing++;
        else if (state && strcmp(state, "resolved") == 0)
            resolved++;
        if (b)
            json_array_append_new(alerts, b);
    }
    sqlite3_finalize(st);
    /* Row ids are never reused (AUTOINCREMENT): the first row names
     * this group notification for good. */
    snprintf(scope, sizeof scope, "group:%s", gkey);
    json_t *body = json_pack(
        "{s:s, s:s, s:s, s:{s:s, s:o}, s:I, s:I, s:I, s:s, s:o}", "rule",
        rule, "scope", scope, "state", "group", "group", "rule", rule,
        "key", s_key_json(gkey), "count", (json_int_t)json_array_size(alerts),
        "firing", (json_int_t)firing, "resolved", (json_int_t)resolved,
        "timestamp", clock_format(due, tb, sizeof tb), "alerts", alerts);
    size_t i;
    json_t *c;
    json_array_foreach(channels, i, c) {
        const char *name = json_string_value(c);
        if (name == NULL)
            continue;
        alert_notify_key(rule, scope, first, "group", "", name, key,
                         sizeof key);
        json_object_set_new(body, "idempotency_key", json_string(key));
        char *text = mpjson_dumps(body);
        if (alert_store_enqueue(store, alert_id, name, key, text, now) == -1)
            rc = -1;
        free(text);
    }
    json_decref(body);
    json_decref(channels);
    if ((st = s_prep(db, "DELETE FROM group_pending WHERE rule=? AND"
                         " gkey=?")) == NULL)
        return -1;
    sqlite3_bind_text(st, 1, rule, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, gkey, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = -1;
    sqlite3_finalize(st);
    return rc;
}

int
alert_group_flush(alert_store_t *store, int64_t now)
{
    sqlite3 *db = alert_store_db(store);
    sqlite3_stmt *st = s_prep(db, "SELECT rule, gkey, min(due) AS d FROM"
                                  " group_pending GROUP BY rule, gkey"
                                  " HAVING d<=? ORDER BY d");
    zlistx_t *due = zlistx_new();
    int n = 0;

    if (st == NULL) {
        zlistx_destroy(&due);
        return -1;
    }
    zlistx_set_destructor(due, (zlistx_destructor_fn *)zstr_free);
    sqlite3_bind_int64(st, 1, now);
    /* Collect first: flushing deletes rows under the cursor. */
    while (sqlite3_step(st) == SQLITE_ROW)
        zlistx_add_end(due, xasprintf("%s\x1f%s\x1f%lld",
                                      sqlite3_column_text(st, 0),
                                      sqlite3_column_text(st, 1),
                                      (long long)sqlite3_column_int64(st, 2)));
    sqlite3_finalize(st);
    for (char *g = zlistx_first(due); g; g = zlistx_next(due)) {
        char *gk = strchr(g, '\x1f'), *d;
        *gk++ = '\0';
        d = strchr(gk, '\x1f');
        *d++ = '\0';
        if (s_flush_one(store, g, gk, strtoll(d, NULL, 10), clock_now_ns()))
            n = -1;
        else if (n >= 0)
            n++;
    }
    zlistx_destroy(&due);
    return n;
}

int64_t
alert_group_waiting(alert_store_t *store)
{
    sqlite3_stmt *st = s_prep(alert_store_db(store),
                              "SELECT count(*) FROM group_pending");
    int64_t n = 0;

    if (st && sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* --------------------------------------------------------------------- */
/* Selftest */

void
alert_group_test(bool verbose)
{
    char dir[] = "/tmp/alert_group_test.XXXXXX", path[128];
    const int64_t S = CLOCK_NS_PER_S;
    struct alert_rule_error err;
    alert_rule_t *r = alert_rule_new(
        "hot", "t > 1 notify ops, pager group by site within 1m", &err);
    alert_store_t *st;

    assert(r && mkdtemp(dir));
    if (!verbose)
        log_set_level(LOG_LVL_WARNING);
    snprintf(path, sizeof path, "%s/alertd.db", dir);
    st = alert_store_new(path, 1000);
    assert(st && alert_group_init(st) == 0);
    /* Three devices of site a and one of site b change within a minute:
     * two groups; nothing is due before the window ends. */
    alert_store_begin(st);
    assert(alert_group_add(st, r, 1, "t{device=1,site=a}", 10 * S,
                           "{\"state\":\"firing\",\"scope\":\"1\"}") == 0);
    assert(alert_group_add(st, r, 2, "t{device=2,site=a}", 20 * S,
                           "{\"state\":\"firing\",\"scope\":\"2\"}") == 0);
    assert(alert_group_add(st, r, 3, "t{device=3,site=b}", 30 * S,
                           "{\"state\":\"firing\",\"scope\":\"3\"}") == 0);
    assert(alert_group_add(st, r, 1, "t{device=1,site=a}", 60 * S,
                           "{\"state\":\"resolved\",\"scope\":\"1\"}") == 0);
    assert(alert_group_waiting(st) == 4);
    assert(alert_group_flush(st, 69 * S) == 0);
    /* At 70 s site a's window (from 10 s) has ended: one notification per
     * channel with its three changes; site b waits until 90 s. */
    assert(alert_group_flush(st, 70 * S) == 1);
    assert(alert_group_waiting(st) == 1);
    assert(alert_store_outbox_count(st, "queued") == 2);
    sqlite3_stmt *q;
    assert(sqlite3_prepare_v2(alert_store_db(st),
                              "SELECT channel, body FROM outbox ORDER BY id",
                              -1, &q, NULL) == SQLITE_OK);
    assert(sqlite3_step(q) == SQLITE_ROW);
    TEST_STREQ((const char *)sqlite3_column_text(q, 0), "ops");
    json_t *b = json_loads((const char *)sqlite3_column_text(q, 1), 0, NULL);
    assert(json_integer_value(json_object_get(b, "count")) == 3);
    assert(json_integer_value(json_object_get(b, "firing")) == 2);
    assert(json_integer_value(json_object_get(b, "resolved")) == 1);
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(json_object_get(b, "group"), "key"),
                   "site")),
               "a");
    json_decref(b);
    sqlite3_finalize(q);
    /* A change after the flush opens a new window. */
    assert(alert_group_add(st, r, 2, "t{device=2,site=a}", 80 * S,
                           "{\"state\":\"resolved\"}") == 0);
    assert(alert_group_flush(st, 90 * S) == 1); /* b only */
    assert(alert_group_flush(st, INT64_MAX) == 1);
    assert(alert_group_waiting(st) == 0);
    assert(alert_store_outbox_count(st, "queued") == 6);
    /* With the table empty, a new group of site a is a new notification
     * (its key is not one already used). */
    assert(alert_group_add(st, r, 1, "t{device=1,site=a}", 100 * S,
                           "{\"state\":\"firing\"}") == 0);
    assert(alert_group_flush(st, INT64_MAX) == 1);
    assert(alert_store_outbox_count(st, "queued") == 8);
    alert_store_commit(st);
    alert_store_destroy(&st);
    alert_rule_destroy(&r);
    unlink(path);
    zsys_dir_delete("%s", dir);
    log_set_level(LOG_LVL_INFO);
    TEST_OK("alert_group");
}
