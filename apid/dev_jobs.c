/*
 * dev_jobs: batch jobs with a state per device (see dev_jobs.h).
 */
#include "apid/dev_jobs.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <sqlite3.h>
#include <string.h>
#include <unistd.h>

static const char *const s_states[] = {"queued", "in_progress", "succeeded",
                                       "failed", "timed_out", "cancelled",
                                       "removed"};
#define S_NSTATES (sizeof s_states / sizeof s_states[0])

enum s_stmt {
    JS_INSERT_JOB,
    JS_INSERT_DEV,
    JS_REPORT,
    JS_JOB,
    JS_COUNTS,
    JS_DEVICES,
    JS_LIST,
    JS_CANCEL_DEVS,
    JS_CANCEL_JOB,
    JS_EXPIRE,
    JS_COMPLETE,
    JS_PROBE,
    JS_IGNORED,
    JS_OPEN_OF,
    JS_MAX
};

static const char *const s_sql[JS_MAX] = {
    [JS_INSERT_JOB] = "INSERT INTO jobs (id, tenant, operation, params, filter, state,"
                      " created, deadline) VALUES (?, ?, ?, ?, ?, 'in_progress', ?, ?)",
    [JS_INSERT_DEV] = "INSERT INTO job_devices (job, device, state, updated)"
                      " VALUES (?, ?, 'queued', ?)",
    /* Only forward moves: a late or repeated report changes nothing. */
    [JS_REPORT] = "UPDATE job_devices SET state = ?4,"
                  " progress = CASE WHEN ?4 = 'succeeded' THEN 100"
                  " WHEN ?5 < 0 THEN progress ELSE ?5 END,"
                  " message = coalesce(?6, message),"
                  " updated = ?7 WHERE job = ?1 AND device = ?3"
                  " AND (state = 'queued' OR (state = 'in_progress' AND ?4 <> 'queued'))"
                  " AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND tenant = ?2"
                  " AND state = 'in_progress')",
    [JS_JOB] = "SELECT operation, params, filter, state, created, deadline, ignored"
               " FROM jobs WHERE id = ? AND tenant = ?",
    [JS_COUNTS] = "SELECT state, count(*) FROM job_devices WHERE job = ? GROUP BY state",
    [JS_DEVICES] = "SELECT device, state, progress, message, updated FROM job_devices"
                   " WHERE job = ?1 AND (?2 IS NULL OR state = ?2) ORDER BY device",
    [JS_LIST] = "SELECT id, operation, state, created FROM jobs WHERE tenant = ?"
                " ORDER BY created DESC, id LIMIT 1000",
    [JS_CANCEL_DEVS] = "UPDATE job_devices SET state = 'cancelled', updated = ?3"
                       " WHERE job = ?1 AND state IN ('queued', 'in_progress')"
                       " AND EXISTS (SELECT 1 FROM jobs WHERE id = ?1 AND tenant = ?2)"
                       " RETURNING device",
    [JS_CANCEL_JOB] = "UPDATE jobs SET state = 'cancelled' WHERE id = ? AND tenant = ?"
                      " AND state = 'in_progress'",
    [JS_EXPIRE] = "UPDATE job_devices SET state = 'timed_out', updated = ?1"
                  " WHERE state IN ('queued', 'in_progress') AND job IN"
                  " (SELECT id FROM jobs WHERE state = 'in_progress' AND deadline <= ?1)",
    [JS_COMPLETE] = "UPDATE jobs SET state = 'completed' WHERE state = 'in_progress'"
                    " AND NOT EXISTS (SELECT 1 FROM job_devices WHERE job = jobs.id"
                    " AND state IN ('queued', 'in_progress'))",
    /* Why a report changed nothing: the job's state and the device's
     * entry (NULL when it is no target); no row when no such job. */
    [JS_PROBE] = "SELECT j.state, jd.state FROM jobs j LEFT JOIN job_devices jd"
                 " ON jd.job = j.id AND jd.device = ?3 WHERE j.id = ?1 AND j.tenant = ?2",
    [JS_IGNORED] = "UPDATE jobs SET ignored = ignored + 1 WHERE id = ? AND tenant = ?",
    /* Jobs in which a device has an entry under way (decommissioning
     * removes them: schema 6's trigger). */
    [JS_OPEN_OF] = "SELECT jd.job FROM jobs j JOIN job_devices jd ON jd.job = j.id"
                   " WHERE j.tenant = ?1 AND j.state = 'in_progress' AND jd.device = ?2"
                   " AND jd.state IN ('queued', 'in_progress') ORDER BY jd.job",
};

struct dev_jobs {
    sqlite3 *db;               /* borrowed from dev_store */
    sqlite3_stmt *st[JS_MAX];  /* prepared once */
};

dev_jobs_t *
dev_jobs_new(dev_store_t *store)
{
    dev_jobs_t *self = xcalloc(1, sizeof *self);

    self->db = dev_store_db(store);
    for (int i = 0; i < JS_MAX; i++)
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &self->st[i], NULL)) {
            log_warnx("dev_jobs: %s: %s", s_sql[i], sqlite3_errmsg(self->db));
            dev_jobs_destroy(&self);
            return NULL;
        }
    return self;
}

void
dev_jobs_destroy(dev_jobs_t **self_p)
{
    dev_jobs_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (int i = 0; i < JS_MAX; i++)
        sqlite3_finalize(self->st[i]);
    free(self);
    *self_p = NULL;
}

static sqlite3_stmt *
s_st(dev_jobs_t *self, int i)
{
    sqlite3_reset(self->st[i]);
    sqlite3_clear_bindings(self->st[i]);
    return self->st[i];
}

static void
s_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int
s_done(dev_jobs_t *self, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log_warnx("dev_jobs: %s", sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

static int
s_exec(dev_jobs_t *self, const char *sql)
{
    return sqlite3_exec(self->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

char *
dev_jobs_create(dev_jobs_t *self, const char *tenant, const char *operation,
                json_t *params, json_t *filter, json_t *devices, int64_t now,
                int64_t deadline)
{
    unsigned char raw[8];
    char id[2 * sizeof raw + 1], *text;
    sqlite3_stmt *st;
    json_t *d;
    size_t i;

    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(id, sizeof id, raw, sizeof raw);
    if (s_exec(self, "BEGIN IMMEDIATE"))
        return NULL;
    st = s_st(self, JS_INSERT_JOB);
    s_text(st, 1, id);
    s_text(st, 2, tenant);
    s_text(st, 3, operation);
    text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);
    s_text(st, 4, text);
    free(text);
    text = json_dumps(filter, JSON_COMPACT | JSON_SORT_KEYS);
    s_text(st, 5, text);
    free(text);
    sqlite3_bind_int64(st, 6, now);
    sqlite3_bind_int64(st, 7, deadline);
    if (s_done(self, st))
        goto fail;
    json_array_foreach(devices, i, d) {
        st = s_st(self, JS_INSERT_DEV);
        s_text(st, 1, id);
        s_text(st, 2, json_string_value(d));
        sqlite3_bind_int64(st, 3, now);
        if (s_done(self, st))
            goto fail;
    }
    if (s_exec(self, "COMMIT"))
        goto fail;
    return xstrdup(id);
fail:
    s_exec(self, "ROLLBACK");
    return NULL;
}

/* Why a report on job changed nothing, into why; counted with the job
 * when it is one of tenant's. 0, or -1 on error. */
static int
s_ignored(dev_jobs_t *self, const char *tenant, const char *job, const char *device,
          bool bad_status, char *why, size_t whylen)
{
    sqlite3_stmt *st = s_st(self, JS_PROBE);
    char buf[80];
    int rc;

    s_text(st, 1, job);
    s_text(st, 2, tenant);
    s_text(st, 3, device);
    if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
        sqlite3_reset(st);
        snprintf(why, whylen, "no such job");
        return rc == SQLITE_DONE ? 0 : -1;
    }
    if (bad_status)
        snprintf(buf, sizeof buf, "status is not in_progress, succeeded or failed");
    else if (sqlite3_column_type(st, 1) == SQLITE_NULL)
        snprintf(buf, sizeof buf, "the device is no target of the job");
    else if (strcmp((const char *)sqlite3_column_text(st, 1), "queued") &&
             strcmp((const char *)sqlite3_column_text(st, 1), "in_progress"))
        snprintf(buf, sizeof buf, "its entry is over (%s)", sqlite3_column_text(st, 1));
    else
        snprintf(buf, sizeof buf, "the job is %s", sqlite3_column_text(st, 0));
    sqlite3_reset(st);
    snprintf(why, whylen, "%s", buf);
    st = s_st(self, JS_IGNORED);
    s_text(st, 1, job);
    s_text(st, 2, tenant);
    return s_done(self, st);
}

int
dev_jobs_report(dev_jobs_t *self, const char *tenant, const char *job,
                const char *device, const char *status, int progress,
                const char *message, int64_t now, json_t **job_p, char *why,
                size_t whylen)
{
    sqlite3_stmt *st = s_st(self, JS_REPORT);
    char scratch[1];

    if (why == NULL) {
        why = scratch;
        whylen = sizeof scratch;
    }
    if (status == NULL || (strcmp(status, "in_progress") && strcmp(status, "succeeded") &&
                           strcmp(status, "failed")))
        return s_ignored(self, tenant, job, device, true, why, whylen);
    s_text(st, 1, job);
    s_text(st, 2, tenant);
    s_text(st, 3, device);
    s_text(st, 4, status);
    sqlite3_bind_int(st, 5, progress);
    s_text(st, 6, message);
    sqlite3_bind_int64(st, 7, now);
    if (s_done(self, st))
        return -1;
    if (sqlite3_changes(self->db) == 0)
        return s_ignored(self, tenant, job, device, false, why, whylen);
    if (job_p) {
        st = s_st(self, JS_JOB);
        s_text(st, 1, job);
        s_text(st, 2, tenant);
        *job_p = NULL;
        if (sqlite3_step(st) == SQLITE_ROW)
            *job_p = json_pack("{s:s, s:o}", "operation",
                               (const char *)sqlite3_column_text(st, 0), "params",
                               json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL));
        sqlite3_reset(st);
    }
    return 1;
}

json_t *
dev_jobs_get(dev_jobs_t *self, const char *tenant, const char *job,
             const char *state)
{
    sqlite3_stmt *st = s_st(self, JS_JOB);
    json_t *out = NULL, *counts, *devs;
    char t[40], t2[40];
    int64_t total = 0;

    s_text(st, 1, job);
    s_text(st, 2, tenant);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = json_pack("{s:s, s:s, s:o, s:o, s:s, s:s, s:s}", "jobId", job,
                        "operation", (const char *)sqlite3_column_text(st, 0),
                        "params", json_loads((const char *)sqlite3_column_text(st, 1), 0, NULL),
                        "filter", json_loads((const char *)sqlite3_column_text(st, 2), 0, NULL),
                        "state", (const char *)sqlite3_column_text(st, 3),
                        "createdAt", clock_format(sqlite3_column_int64(st, 4), t, sizeof t),
                        "deadline", clock_format(sqlite3_column_int64(st, 5), t2, sizeof t2));
    if (out)
        json_object_set_new(out, "ignoredReports", json_integer(sqlite3_column_int64(st, 6)));
    sqlite3_reset(st);
    if (out == NULL)
        return NULL;
    counts = json_object();
    for (size_t i = 0; i < S_NSTATES; i++)
        json_object_set_new(counts, s_states[i], json_integer(0));
    st = s_st(self, JS_COUNTS);
    s_text(st, 1, job);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_object_set_new(counts, (const char *)sqlite3_column_text(st, 0),
                            json_integer(sqlite3_column_int64(st, 1)));
        total += sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    json_object_set_new(out, "counts", counts);
    json_object_set_new(out, "total", json_integer(total));
    devs = json_array();
    st = s_st(self, JS_DEVICES);
    s_text(st, 1, job);
    s_text(st, 2, state);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *d = json_pack("{s:s, s:s, s:i, s:s}", "deviceId",
                              (const char *)sqlite3_column_text(st, 0), "state",
                              (const char *)sqlite3_column_text(st, 1), "progress",
                              sqlite3_column_int(st, 2), "updatedAt",
                              clock_format(sqlite3_column_int64(st, 4), t, sizeof t));
        if (sqlite3_column_type(st, 3) == SQLITE_TEXT)
            json_object_set_new(d, "message",
                                json_string((const char *)sqlite3_column_text(st, 3)));
        json_array_append_new(devs, d);
    }
    sqlite3_reset(st);
    json_object_set_new(out, "devices", devs);
    return out;
}

json_t *
dev_jobs_list(dev_jobs_t *self, const char *tenant)
{
    sqlite3_stmt *st = s_st(self, JS_LIST);
    json_t *out = json_array();
    char t[40];

    s_text(st, 1, tenant);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(out, json_pack(
            "{s:s, s:s, s:s, s:s}", "jobId", (const char *)sqlite3_column_text(st, 0),
            "operation", (const char *)sqlite3_column_text(st, 1), "state",
            (const char *)sqlite3_column_text(st, 2), "createdAt",
            clock_format(sqlite3_column_int64(st, 3), t, sizeof t)));
    sqlite3_reset(st);
    return out;
}

json_t *
dev_jobs_cancel(dev_jobs_t *self, const char *tenant, const char *job, int64_t now)
{
    json_t *probe = dev_jobs_get(self, tenant, job, "none"), *out;
    sqlite3_stmt *st;

    if (probe == NULL)
        return NULL;
    json_decref(probe);
    out = json_array();
    s_exec(self, "BEGIN IMMEDIATE");
    st = s_st(self, JS_CANCEL_DEVS);
    s_text(st, 1, job);
    s_text(st, 2, tenant);
    sqlite3_bind_int64(st, 3, now);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(out, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_reset(st);
    st = s_st(self, JS_CANCEL_JOB);
    s_text(st, 1, job);
    s_text(st, 2, tenant);
    if (s_done(self, st) || s_exec(self, "COMMIT")) {
        s_exec(self, "ROLLBACK");
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *
dev_jobs_open_of(dev_jobs_t *self, const char *tenant, const char *device)
{
    sqlite3_stmt *st = s_st(self, JS_OPEN_OF);
    json_t *out = json_array();

    s_text(st, 1, tenant);
    s_text(st, 2, device);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(out, json_string((const char *)sqlite3_column_text(st, 0)));
    sqlite3_reset(st);
    return out;
}

int
dev_jobs_expire(dev_jobs_t *self, int64_t now)
{
    sqlite3_stmt *st = s_st(self, JS_EXPIRE);
    int n;

    sqlite3_bind_int64(st, 1, now);
    if (s_done(self, st))
        return -1;
    n = sqlite3_changes(self->db);
    s_done(self, s_st(self, JS_COMPLETE));
    return n;
}

void
dev_jobs_test(bool verbose)
{
    dev_store_t *store = dev_store_new(":memory:");
    dev_jobs_t *jobs;
    json_t *params = json_pack("{s:s}", "version", "2.1.0"), *filter = json_object();
    json_t *devs = json_pack("[s, s, s, s]", "a", "b", "c", "d"), *j, *op = NULL;
    char *id, *id2, *id3, why[80];

    assert(sodium_init() >= 0);
    assert(store && (jobs = dev_jobs_new(store)));
    id = dev_jobs_create(jobs, "t1", "update_firmware", params, filter, devs, 0, 100);
    assert(id && strlen(id) == 16);
    assert(dev_jobs_report(jobs, "t1", id, "a", "in_progress", 50, NULL, 1, NULL, NULL, 0) == 1);
    assert(dev_jobs_report(jobs, "t1", id, "a", "succeeded", 40, NULL, 2, &op, NULL, 0) == 1);
    TEST_STREQ(json_string_value(json_object_get(json_object_get(op, "params"),
                                                 "version")), "2.1.0");
    json_decref(op);
    assert(dev_jobs_report(jobs, "t1", id, "a", "failed", 0, NULL, 3, NULL, why, sizeof why) == 0);
    TEST_STREQ(why, "its entry is over (succeeded)");
    assert(dev_jobs_report(jobs, "t2", id, "b", "failed", 0, NULL, 3, NULL, why, sizeof why) == 0);
    TEST_STREQ(why, "no such job"); /* and not counted with t1's job */
    assert(dev_jobs_report(jobs, "t1", id, "b", "in_progress", 30, "disk full", 3, NULL, NULL, 0) == 1);
    assert(dev_jobs_report(jobs, "t1", id, "b", "failed", -1, NULL, 3, NULL, NULL, 0) == 1);
    assert(dev_jobs_report(jobs, "t1", id, "zz", "failed", 0, NULL, 3, NULL, why, sizeof why) == 0);
    TEST_STREQ(why, "the device is no target of the job");
    assert(dev_jobs_report(jobs, "t1", id, "c", "rebooting", 0, NULL, 3, NULL, why, sizeof why) == 0);
    TEST_STREQ(why, "status is not in_progress, succeeded or failed");
    assert(dev_jobs_report(jobs, "t1", id, "c", NULL, 0, NULL, 3, NULL, NULL, 0) == 0);
    assert(dev_jobs_expire(jobs, 50) == 0);
    assert(dev_jobs_expire(jobs, 100) == 2); /* c and d never answered */
    j = dev_jobs_get(jobs, "t1", id, NULL);
    TEST_STREQ(json_string_value(json_object_get(j, "state")), "completed");
    assert(json_integer_value(json_object_get(json_object_get(j, "counts"), "timed_out")) == 2);
    assert(json_integer_value(json_object_get(j, "ignoredReports")) == 4);
    assert(json_array_size(json_object_get(j, "devices")) == 4);
    json_decref(j);
    j = dev_jobs_get(jobs, "t1", id, "failed");
    assert(json_array_size(json_object_get(j, "devices")) == 1);
    /* A report without progress or message keeps the row's. */
    assert(json_integer_value(json_object_get(json_array_get(json_object_get(j, "devices"), 0),
                                              "progress")) == 30);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(json_object_get(j, "devices"), 0),
                                                 "message")), "disk full");
    json_decref(j);
    /* A succeeded device is at 100 %, whatever it said. */
    j = dev_jobs_get(jobs, "t1", id, "succeeded");
    assert(json_integer_value(json_object_get(json_array_get(json_object_get(j, "devices"), 0),
                                              "progress")) == 100);
    json_decref(j);
    assert(dev_jobs_get(jobs, "t2", id, NULL) == NULL);

    id2 = dev_jobs_create(jobs, "t1", "reboot", params, filter, devs, 0, 100);
    assert(dev_jobs_report(jobs, "t1", id2, "a", "in_progress", 10, NULL, 1, NULL, NULL, 0) == 1);
    assert(dev_jobs_cancel(jobs, "t2", id2, 2) == NULL);
    j = dev_jobs_cancel(jobs, "t1", id2, 2);
    assert(json_array_size(j) == 4);
    json_decref(j);
    assert(dev_jobs_report(jobs, "t1", id2, "a", "succeeded", 100, NULL, 3, NULL, NULL, 0) == 0);
    j = dev_jobs_list(jobs, "t1");
    assert(json_array_size(j) == 2);
    json_decref(j);

    /* Decommissioning device e ends its entries under way (schema 6's
     * trigger): its late reports, and those of its id registered again,
     * change nothing and are counted with the job. */
    {
        const char *err;
        json_t *reg = json_pack("[{s:s, s:{s:s, s:s}}]", "type", "provisioned", "data",
                                "deviceId", "e", "type", "valve");
        json_t *dec = json_pack("[{s:s, s:{}}]", "type", "decommissioned", "data");
        json_t *one = json_pack("[s]", "e");
        assert(dev_store_append(store, "t1", "e", reg, 10, NULL, &err) == DEV_STORE_OK);
        id3 = dev_jobs_create(jobs, "t1", "update_firmware", params, filter, one, 11, 100);
        j = dev_jobs_open_of(jobs, "t1", "e");
        assert(json_array_size(j) == 1);
        TEST_STREQ(json_string_value(json_array_get(j, 0)), id3);
        json_decref(j);
        j = dev_jobs_open_of(jobs, "t2", "e");
        assert(json_array_size(j) == 0);
        json_decref(j);
        assert(dev_jobs_report(jobs, "t1", id3, "e", "in_progress", 20, NULL, 12, NULL,
                               NULL, 0) == 1);
        assert(dev_store_append(store, "t1", "e", dec, 13, NULL, &err) == DEV_STORE_OK);
        assert(dev_jobs_report(jobs, "t1", id3, "e", "succeeded", 100, NULL, 14, NULL, why,
                               sizeof why) == 0);
        TEST_STREQ(why, "its entry is over (removed)");
        assert(dev_store_append(store, "t1", "e", reg, 15, NULL, &err) == DEV_STORE_OK);
        assert(dev_jobs_report(jobs, "t1", id3, "e", "succeeded", 100, NULL, 16, NULL, NULL,
                               0) == 0);
        j = dev_jobs_open_of(jobs, "t1", "e");
        assert(json_array_size(j) == 0);
        json_decref(j);
        assert(dev_jobs_expire(jobs, 17) == 0);
        j = dev_jobs_get(jobs, "t1", id3, NULL);
        TEST_STREQ(json_string_value(json_object_get(j, "state")), "completed");
        assert(json_integer_value(json_object_get(json_object_get(j, "counts"), "removed")) == 1);
        assert(json_integer_value(json_object_get(j, "ignoredReports")) == 2);
        op = json_array_get(json_object_get(j, "devices"), 0);
        TEST_STREQ(json_string_value(json_object_get(op, "state")), "removed");
        TEST_STREQ(json_string_value(json_object_get(op, "message")), "device decommissioned");
        assert(json_integer_value(json_object_get(op, "progress")) == 20);
        TEST_STREQ(json_string_value(json_object_get(op, "updatedAt")),
                   "1970-01-01T00:00:00.000Z");
        json_decref(j);
        json_decref(reg);
        json_decref(dec);
        json_decref(one);
    }
    free(id);
    free(id2);
    free(id3);
    json_decref(params);
    json_decref(filter);
    json_decref(devs);
    dev_jobs_destroy(&jobs);
    dev_jobs_destroy(&jobs);
    dev_store_destroy(&store);
    (void)verbose;
    TEST_OK("dev_jobs");
}
