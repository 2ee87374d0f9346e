/*
 * dev_shadow: desired and reported state per device (see dev_shadow.h).
 *
 * The statements are prepared per call (a shadow changes at human or
 * device-report rates, not per reading).
 */
#include "apid/dev_shadow.h"
#include "apid/dev_state.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <string.h>

/* RFC 7386 merge patch of target (an object) by patch (an object). */
static void
s_merge(json_t *target, json_t *patch)
{
    const char *k;
    json_t *v;

    json_object_foreach(patch, k, v) {
        json_t *t = json_object_get(target, k);
        if (json_is_null(v)) {
            json_object_del(target, k);
        } else if (json_is_object(v)) {
            if (!json_is_object(t)) {
                t = json_object();
                json_object_set_new(target, k, t);
            }
            s_merge(t, v);
        } else {
            json_object_set(target, k, v);
        }
    }
}

json_t *
dev_shadow_delta(json_t *desired, json_t *reported)
{
    json_t *out = json_object(), *v;
    const char *k;

    json_object_foreach(desired, k, v) {
        json_t *r = json_object_get(reported, k);
        if (json_is_object(v) && json_is_object(r)) {
            json_t *d = dev_shadow_delta(v, r);
            if (json_object_size(d))
                json_object_set_new(out, k, d);
            else
                json_decref(d);
        } else if (r == NULL || !json_equal(v, r)) {
            json_object_set(out, k, v);
        }
    }
    return out;
}

static json_t *
s_load(sqlite3 *db, const char *tenant, const char *id)
{
    sqlite3_stmt *st;
    json_t *out = NULL;
    char t[40];

    if (sqlite3_prepare_v2(db, "SELECT desired, reported, dversion, rversion, updated"
                               " FROM shadows WHERE tenant = ? AND id = ?",
                           -1, &st, NULL))
        return NULL;
    sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = json_pack("{s:o, s:o, s:{s:I, s:I}, s:s}", "desired",
                        json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL),
                        "reported",
                        json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL),
                        "version", "desired", (json_int_t)sqlite3_column_int64(st, 2),
                        "reported", (json_int_t)sqlite3_column_int64(st, 3),
                        "updatedAt",
                        clock_format(sqlite3_column_int64(st, 4), t, sizeof t));
    else
        out = json_pack("{s:{}, s:{}, s:{s:i, s:i}, s:n}", "desired", "reported",
                        "version", "desired", 0, "reported", 0, "updatedAt");
    sqlite3_finalize(st);
    return out;
}

static json_t *
s_finish(json_t *sh, const char *id)
{
    json_object_set_new(sh, "deviceId", json_string(id));
    json_object_set_new(sh, "delta", dev_shadow_delta(json_object_get(sh, "desired"),
                                                      json_object_get(sh, "reported")));
    return sh;
}

json_t *
dev_shadow_get(dev_store_t *store, const char *tenant, const char *id)
{
    json_t *dev = dev_store_get(store, tenant, id), *sh;

    if (dev == NULL)
        return NULL;
    json_decref(dev);
    sh = s_load(dev_store_db(store), tenant, id);
    return sh ? s_finish(sh, id) : NULL;
}

json_t *
dev_shadow_patch(dev_store_t *store, const char *tenant, const char *id,
                 const char *side, json_t *patch, int64_t now, const char **why)
{
    sqlite3 *db = dev_store_db(store);
    json_t *dev = dev_store_get(store, tenant, id), *sh;
    sqlite3_stmt *st;
    const char *vkey = !strcmp(side, "desired") ? "desired" : "reported";
    char *d, *r;
    int rc;

    *why = NULL;
    /* A merge nests no deeper than the deeper of side and patch. */
    if (dev_store_json_depth(patch, DEV_STATE_DEPTH_MAX) > DEV_STATE_DEPTH_MAX) {
        json_decref(dev);
        *why = "the shadow's side may nest at most 64 levels";
        return NULL;
    }
    if (dev == NULL || !json_is_object(patch) ||
        !strcmp(json_string_value(json_object_get(dev, "status")), "decommissioned")) {
        json_decref(dev);
        return NULL;
    }
    json_decref(dev);
    if ((sh = s_load(db, tenant, id)) == NULL)
        return NULL;
    s_merge(json_object_get(sh, vkey), patch);
    json_object_set_new(json_object_get(sh, "version"), vkey, json_integer(
        json_integer_value(json_object_get(json_object_get(sh, "version"), vkey)) + 1));
    d = json_dumps(json_object_get(sh, "desired"), JSON_COMPACT | JSON_SORT_KEYS);
    r = json_dumps(json_object_get(sh, "reported"), JSON_COMPACT | JSON_SORT_KEYS);
    if (d == NULL || r == NULL || strlen(vkey[0] == 'd' ? d : r) > DEV_SHADOW_SIDE_MAX) {
        *why = "the shadow's side would be larger than 65536 bytes";
        free(d);
        free(r);
        json_decref(sh);
        return NULL;
    }
    rc = sqlite3_prepare_v2(db, "INSERT INTO shadows (tenant, id, desired, reported,"
                                " dversion, rversion, updated) VALUES (?, ?, ?, ?, ?, ?, ?)"
                                " ON CONFLICT (tenant, id) DO UPDATE SET"
                                " desired = excluded.desired, reported = excluded.reported,"
                                " dversion = excluded.dversion, rversion = excluded.rversion,"
                                " updated = excluded.updated", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, d, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, json_integer_value(
            json_object_get(json_object_get(sh, "version"), "desired")));
        sqlite3_bind_int64(st, 6, json_integer_value(
            json_object_get(json_object_get(sh, "version"), "reported")));
        sqlite3_bind_int64(st, 7, now);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
        sqlite3_finalize(st);
    }
    free(d);
    free(r);
    if (rc != SQLITE_OK) {
        log_warnx("dev_shadow: %s/%s: %s", tenant, id, sqlite3_errmsg(db));
        json_decref(sh);
        return NULL;
    }
    json_decref(sh);
    return dev_shadow_get(store, tenant, id);
}

void
dev_shadow_test(bool verbose)
{
    dev_store_t *s = dev_store_new(":memory:");
    json_t *evs = json_loads("[{\"type\":\"provisioned\",\"data\":{\"deviceId\":\"d1\","
                             "\"type\":\"valve\"}}]", 0, NULL);
    json_t *p, *sh;
    const char *why;

    assert(dev_store_append(s, "t", "d1", evs, 0, NULL, &why) == DEV_STORE_OK);
    json_decref(evs);
    sh = dev_shadow_get(s, "t", "d1");
    assert(sh && json_object_size(json_object_get(sh, "delta")) == 0);
    json_decref(sh);
    assert(dev_shadow_get(s, "other", "d1") == NULL);

    p = json_loads("{\"open\":true,\"cfg\":{\"rate\":5,\"mode\":\"eco\"}}", 0, NULL);
    sh = dev_shadow_patch(s, "t", "d1", "desired", p, 1, &why);
    json_decref(p);
    assert(json_object_size(json_object_get(sh, "delta")) == 2);
    json_decref(sh);
    p = json_loads("{\"open\":true,\"cfg\":{\"rate\":5}}", 0, NULL);
    sh = dev_shadow_patch(s, "t", "d1", "reported", p, 2, &why);
    json_decref(p);
    p = json_loads("{\"cfg\":{\"mode\":\"eco\"}}", 0, NULL);
    assert(json_equal(json_object_get(sh, "delta"), p));
    json_decref(p);
    json_decref(sh);
    p = json_loads("{\"cfg\":{\"mode\":\"eco\"}}", 0, NULL);
    sh = dev_shadow_patch(s, "t", "d1", "reported", p, 3, &why);
    json_decref(p);
    assert(json_object_size(json_object_get(sh, "delta")) == 0);
    assert(json_integer_value(json_object_get(json_object_get(sh, "version"),
                                              "reported")) == 2);
    json_decref(sh);
    {
        /* A side past DEV_SHADOW_SIDE_MAX is refused, the shadow unchanged;
         * keys deleted make room again. */
        json_t *big = json_object();
        char k[16];
        for (int i = 0; i < 4000; i++) {
            snprintf(k, sizeof k, "k%d", i);
            json_object_set_new(big, k, json_integer(123456789012));
        }
        sh = dev_shadow_patch(s, "t", "d1", "reported", big, 5, &why);
        assert(sh == NULL && why != NULL);
        sh = dev_shadow_get(s, "t", "d1");
        assert(json_integer_value(json_object_get(json_object_get(sh, "version"),
                                                  "reported")) == 2);
        json_decref(sh);
        json_object_clear(big);
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "k%d", i);
            json_object_set_new(big, k, json_integer(123456789012));
        }
        sh = dev_shadow_patch(s, "t", "d1", "reported", big, 5, &why);
        assert(sh && why == NULL);
        json_decref(sh);
        sh = dev_shadow_patch(s, "t", "d1", "reported", big, 5, &why);
        assert(sh && why == NULL); /* the same keys again: no growth */
        json_decref(sh);
        for (int i = 2000; i < 4000; i++) {
            snprintf(k, sizeof k, "k%d", i);
            json_object_set_new(big, k, json_integer(123456789012));
        }
        sh = dev_shadow_patch(s, "t", "d1", "reported", big, 6, &why);
        assert(sh == NULL && why != NULL);
        json_object_clear(big);
        for (int i = 0; i < 2000; i++) {
            snprintf(k, sizeof k, "k%d", i);
            json_object_set_new(big, k, json_null());
        }
        sh = dev_shadow_patch(s, "t", "d1", "reported", big, 7, &why);
        assert(sh && why == NULL);
        json_decref(sh);
        json_decref(big);
    }
    p = json_loads("{\"open\":null}", 0, NULL);
    sh = dev_shadow_patch(s, "t", "d1", "desired", p, 4, &why);
    json_decref(p);
    assert(json_object_get(json_object_get(sh, "desired"), "open") == NULL);
    json_decref(sh);
    {
        /* 65 levels are refused, 64 taken (then taken away again). */
        json_t *deep = json_integer(1), *o;
        for (int i = 0; i < 65; i++) {
            o = json_object();
            json_object_set_new(o, i == 64 ? "deep" : "k", deep);
            deep = o;
        }
        sh = dev_shadow_patch(s, "t", "d1", "reported", deep, 5, &why);
        assert(sh == NULL && why && strstr(why, "64 levels"));
        sh = dev_shadow_patch(s, "t", "d1", "reported",
                              json_object_get(deep, "deep"), 5, &why);
        assert(sh && why == NULL);
        json_decref(sh);
        o = json_pack("{s:n}", "k");
        sh = dev_shadow_patch(s, "t", "d1", "reported", o, 5, &why);
        assert(sh && !json_object_get(json_object_get(sh, "reported"), "k"));
        json_decref(sh);
        json_decref(o);
        json_decref(deep);
    }
    dev_store_destroy(&s);
    (void)verbose;
    TEST_OK("dev_shadow");
}
