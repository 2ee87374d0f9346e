/*
 * alert_devices: device metadata pushed by apid, kept for device.NAME
 * (see alert_devices.h).
 */
#include "alertd/alert_devices.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Longest device id. */
#define S_ID_MAX 256

struct alert_devices {
    struct sqlite3 *db;     /* alertd's store, or NULL */
    alert_engine_t *engine; /* where the metadata is read */
    char generation[20];    /* this process' generation, hex */
};

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS device_meta ("
    " id TEXT PRIMARY KEY, metadata TEXT NOT NULL) WITHOUT ROWID";

alert_devices_t *
alert_devices_new(struct sqlite3 *db, alert_engine_t *engine)
{
    alert_devices_t *self = xcalloc(1, sizeof *self);
    sqlite3_stmt *st = NULL;
    uint64_t g;

    self->db = db;
    self->engine = engine;
    if (getrandom(&g, sizeof g, 0) != (ssize_t)sizeof g)
        g = (uint64_t)zclock_time() ^ (uint64_t)getpid() << 32;
    snprintf(self->generation, sizeof self->generation, "%016llx",
             (unsigned long long)g);
    if (db == NULL)
        return self;
    if (sqlite3_exec(db, s_schema, NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "SELECT id, metadata FROM device_meta", -1,
                           &st, NULL) != SQLITE_OK) {
        log_warnx("alert_devices: cannot read device_meta: %s",
                  sqlite3_errmsg(db));
        sqlite3_finalize(st);
        free(self);
        return NULL;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *m = json_loads((const char *)sqlite3_column_text(st, 1), 0,
                               NULL);
        alert_engine_set_device(engine,
                                (const char *)sqlite3_column_text(st, 0), m);
        json_decref(m);
    }
    sqlite3_finalize(st);
    return self;
}

void
alert_devices_destroy(alert_devices_t **self_p)
{
    if (self_p && *self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

/* Check every entry before anything changes. Returns NULL or a reason
 * with *where set. */
static const char *
s_check(const json_t *devs, const json_t *removed, char *where, size_t len)
{
    size_t i;
    json_t *d;

    if ((devs && !json_is_array(devs)) || (removed && !json_is_array(removed)))
        return snprintf(where, len, "devices"),
               "devices and removed are arrays";
    if (json_array_size(devs) + json_array_size(removed) >
        ALERT_DEVICES_BATCH_MAX)
        return snprintf(where, len, "devices"), "too many devices at once";
    json_array_foreach(devs, i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        snprintf(where, len, "devices[%zu]", i);
        if (id == NULL || *id == '\0' || strlen(id) > S_ID_MAX)
            return "id is a string of 1 to 256 bytes";
        if (!json_is_object(json_object_get(d, "metadata")))
            return "metadata is an object";
    }
    json_array_foreach(removed, i, d) {
        snprintf(where, len, "removed[%zu]", i);
        if (!json_is_string(d))
            return "removed holds device ids";
    }
    return NULL;
}

static int
s_exec(alert_devices_t *self, const char *sql, const char *id,
       const char *meta)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(self->db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (id)
            sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (meta)
            sqlite3_bind_text(st, 2, meta, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Write the change to the store in one transaction. */
static int
s_save(alert_devices_t *self, const json_t *devs, const json_t *removed,
       bool full)
{
    size_t i;
    json_t *d;
    int rc = 0;

    if (self->db == NULL)
        return 0;
    if (s_exec(self, "BEGIN IMMEDIATE", NULL, NULL) == -1)
        goto fail;
    if (full)
        rc |= s_exec(self, "DELETE FROM device_meta", NULL, NULL);
    json_array_foreach(removed, i, d)
        rc |= s_exec(self, "DELETE FROM device_meta WHERE id = ?",
                     json_string_value(d), NULL);
    json_array_foreach(devs, i, d) {
        char *m = json_dumps(json_object_get(d, "metadata"),
                             JSON_COMPACT | JSON_SORT_KEYS);
        rc |= s_exec(self, "INSERT OR REPLACE INTO device_meta (id, metadata)"
                           " VALUES (?, ?)",
                     json_string_value(json_object_get(d, "id")), m);
        free(m);
    }
    if (rc == 0 && s_exec(self, "COMMIT", NULL, NULL) == 0)
        return 0;
    s_exec(self, "ROLLBACK", NULL, NULL);
fail:
    log_warnx("alert_devices: cannot save device metadata: %s",
              sqlite3_errmsg(self->db));
    return -1;
}

int
alert_devices_answer(alert_devices_t *self, const json_t *req, json_t **body)
{
    const json_t *devs = json_object_get(req, "devices");
    const json_t *removed = json_object_get(req, "removed");
    bool full = json_is_true(json_object_get(req, "full"));
    char where[48];
    const char *why = s_check(devs, removed, where, sizeof where);
    size_t i;
    json_t *d;

    if (why) {
        *body = rpc_error("bad_request", why, where);
        return 400;
    }
    if (s_save(self, devs, removed, full) == -1) {
        *body = rpc_error("store_failed", "cannot save device metadata", "db");
        return 500;
    }
    if (full)
        alert_engine_clear_devices(self->engine);
    json_array_foreach(removed, i, d)
        alert_engine_set_device(self->engine, json_string_value(d), NULL);
    json_array_foreach(devs, i, d)
        alert_engine_set_device(self->engine,
                                json_string_value(json_object_get(d, "id")),
                                json_object_get(d, "metadata"));
    if (json_array_size(devs) + json_array_size(removed) > 0 || full)
        log_info("alertd: device metadata: %zu set, %zu removed%s, %zu known",
                 json_array_size(devs), json_array_size(removed),
                 full ? " (full)" : "", alert_engine_devices(self->engine));
    *body = json_pack("{s:I, s:s}", "devices",
                      (json_int_t)alert_engine_devices(self->engine),
                      "generation", self->generation);
    return 200;
}

/* --------------------------------------------------------------------- */
/* Selftest */

static int
s_test_ask(alert_devices_t *d, const char *json, json_t **body)
{
    json_t *req = json_loads(json, 0, NULL);
    int st;

    assert(req);
    st = alert_devices_answer(d, req, body);
    json_decref(req);
    return st;
}

void
alert_devices_test(bool verbose)
{
    char dir[] = "/tmp/alert_devices_test.XXXXXX", path[128];
    struct sqlite3 *db;
    alert_engine_t *e = alert_engine_new(10, 10, NULL, NULL);
    alert_devices_t *d;
    json_t *body;

    assert(mkdtemp(dir));
    if (!verbose)
        log_set_level(LOG_LVL_WARNING);
    snprintf(path, sizeof path, "%s/alertd.db", dir);
    assert(sqlite3_open(path, &db) == SQLITE_OK);
    d = alert_devices_new(db, e);
    assert(d);
    assert(s_test_ask(d, "{\"devices\":[{\"id\":\"a\",\"metadata\":"
                         "{\"max_temp\":40}},{\"id\":\"b\",\"metadata\":"
                         "{\"max_temp\":\"50\"}}]}", &body) == 200);
    assert(json_integer_value(json_object_get(body, "devices")) == 2);
    char gen[20];
    snprintf(gen, sizeof gen, "%s",
             json_string_value(json_object_get(body, "generation")));
    json_decref(body);
    /* A bad entry changes nothing. */
    assert(s_test_ask(d, "{\"devices\":[{\"id\":\"c\",\"metadata\":{}},"
                         "{\"id\":\"d\",\"metadata\":3}]}", &body) == 400);
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(body, "error"), "where")),
               "devices[1]");
    json_decref(body);
    assert(alert_engine_devices(e) == 2);
    assert(s_test_ask(d, "{\"removed\":[\"a\"]}", &body) == 200);
    json_decref(body);
    assert(alert_engine_devices(e) == 1);
    alert_devices_destroy(&d);
    alert_engine_destroy(&e);

    /* A restart reads the stored copy, under a new generation. */
    e = alert_engine_new(10, 10, NULL, NULL);
    d = alert_devices_new(db, e);
    assert(alert_engine_devices(e) == 1);
    assert(s_test_ask(d, "{\"full\":true,\"devices\":[{\"id\":\"x\","
                         "\"metadata\":{\"k\":1}},{\"id\":\"y\",\"metadata\":"
                         "{}}]}", &body) == 200);
    assert(json_integer_value(json_object_get(body, "devices")) == 2);
    assert(strcmp(json_string_value(json_object_get(body, "generation")),
                  gen) != 0);
    json_decref(body);
    alert_devices_destroy(&d);
    alert_devices_destroy(&d);
    alert_engine_destroy(&e);
    e = alert_engine_new(10, 10, NULL, NULL);
    d = alert_devices_new(db, e);
    assert(alert_engine_devices(e) == 2); /* "full" replaced b */
    alert_devices_destroy(&d);
    alert_engine_destroy(&e);
    sqlite3_close(db);
    unlink(path);
    zsys_dir_delete("%s", dir);
    log_set_level(LOG_LVL_INFO);
    TEST_OK("alert_devices");
}
