/*
 * dev_store: registry, event log and API keys in SQLite (see dev_store.h).
 */
#include "apid/dev_store.h"
#include "apid/dev_state.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Schema versions, applied in order; user_version says how many ran.
 * Never edit a landed entry: append a new one. */
static const char *const s_migrations[] = {
    /* 1: devices with their folded state, the append-only event log,
     * API keys by hash. */
    "CREATE TABLE devices ("
    "  tenant TEXT NOT NULL, id TEXT NOT NULL,"
    "  state TEXT NOT NULL,"           /* JSON: dev_state fold of events */
    "  seq INTEGER NOT NULL,"          /* last event applied */
    "  mqtt_user TEXT UNIQUE, mqtt_hash TEXT,"
    "  PRIMARY KEY (tenant, id)) WITHOUT ROWID;"
    "CREATE TABLE events ("
    "  tenant TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL,"
    "  ts INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL,"
    "  PRIMARY KEY (tenant, id, seq)) WITHOUT ROWID;"
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
    "CREATE TABLE api_keys ("
    "  hash TEXT PRIMARY KEY, name TEXT NOT NULL, tenant TEXT NOT NULL,"
    "  role TEXT NOT NULL, created INTEGER NOT NULL);",
    /* 2: batch jobs (firmware updates and other commands) with a state
     * per device. */
    "CREATE TABLE jobs ("
    "  id TEXT PRIMARY KEY, tenant TEXT NOT NULL, operation TEXT NOT NULL,"
    "  params TEXT NOT NULL, filter TEXT NOT NULL, state TEXT NOT NULL,"
    "  created INTEGER NOT NULL, deadline INTEGER NOT NULL);"
    "CREATE TABLE job_devices ("
    "  job TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL,"
    "  progress INTEGER NOT NULL DEFAULT 0, message TEXT,"
    "  updated INTEGER NOT NULL, PRIMARY KEY (job, device)) WITHOUT ROWID;",
    /* 3: device shadows. */
    "CREATE TABLE shadows ("
    "  tenant TEXT NOT NULL, id TEXT NOT NULL, desired TEXT NOT NULL,"
    "  reported TEXT NOT NULL, dversion INTEGER NOT NULL,"
    "  rversion INTEGER NOT NULL, updated INTEGER NOT NULL,"
    "  PRIMARY KEY (tenant, id)) WITHOUT ROWID;",
    /* 4: people who log in to the dashboard (Argon2id hashes) and their
     * sessions (by the SHA-256 of the cookie; gone with the user). */
    "CREATE TABLE users ("
    "  name TEXT PRIMARY KEY, tenant TEXT NOT NULL, role TEXT NOT NULL,"
    "  hash TEXT NOT NULL, created INTEGER NOT NULL);"
    "CREATE TABLE sessions ("
    "  hash TEXT PRIMARY KEY,"
    "  user TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,"
    "  created INTEGER NOT NULL, expires INTEGER NOT NULL);"
    "CREATE INDEX sessions_user ON sessions (user);",
    /* 5: a run of heartbeats keeps its first and its last event (the
     * one before the last is deleted as each new one comes), so a
     * device that keeps beating does not grow its log; a heartbeat is no
     * longer a version of the device, so the versions stored are
     * recounted without the heartbeats the log held. */
    "DROP TRIGGER events_no_delete;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    "  WHEN OLD.type <> 'heartbeat'"
    "  BEGIN SELECT RAISE(ABORT, 'events are append-only'); END;"
    "UPDATE devices SET state = json_set(state, '$.version',"
    "  json_extract(state, '$.version') - (SELECT count(*) FROM events e"
    "  WHERE e.tenant = devices.tenant AND e.id = devices.id"
    "  AND e.type = 'heartbeat'));",
    /* 6: decommissioning ends the device's entries in jobs still under
     * way (state removed, with the reason), in the transaction that
     * appends the event, so that no entry outlives the registration it
     * was made for: a late report of the device, or of its id registered
     * again, finds the entry over (it moved the old entry, and a
     * succeeded update_firmware gave the new device the old job's
     * firmware). The entries such devices left open are ended here: of
     * a device decommissioned since the job was made, or now. Reports on
     * a job that changed nothing are counted with it. */
    "ALTER TABLE jobs ADD COLUMN ignored INTEGER NOT NULL DEFAULT 0;"
    "CREATE TRIGGER events_decommissioned_jobs AFTER INSERT ON events"
    "  WHEN NEW.type = 'decommissioned' BEGIN"
    "  UPDATE job_devices SET state = 'removed', message = 'device decommissioned',"
    "  updated = NEW.ts WHERE device = NEW.id AND state IN ('queued', 'in_progress')"
    "  AND job IN (SELECT id FROM jobs WHERE tenant = NEW.tenant"
    "  AND state = 'in_progress'); END;"
    "UPDATE job_devices SET state = 'removed', message = 'device decommissioned',"
    "  updated = coalesce((SELECT min(e.ts) FROM jobs j, events e"
    "  WHERE j.id = job_devices.job AND e.tenant = j.tenant"
    "  AND e.id = job_devices.device AND e.type = 'decommissioned'"
    "  AND e.ts >= j.created), updated)"
    "  WHERE state IN ('queued', 'in_progress') AND EXISTS (SELECT 1 FROM jobs j"
    "  JOIN devices d ON d.tenant = j.tenant AND d.id = job_devices.device"
    "  WHERE j.id = job_devices.job AND (json_extract(d.state, '$.status') = 'decommissioned'"
    "  OR EXISTS (SELECT 1 FROM events e WHERE e.tenant = d.tenant AND e.id = d.id"
    "  AND e.type = 'decommissioned' AND e.ts >= j.created)));",
    /* 7: the MQTT outbox (dev_outbox): commands and shadow deltas apid
     * could not hand to libmosquitto (not connected to the broker), kept
     * until the connection is back, sent in id order, then deleted.
     * tenant and device say whom a message is for (logs, not routing). */
    "CREATE TABLE mqtt_outbox ("
    "  id INTEGER PRIMARY KEY,"       /* order of queueing */
    "  ts INTEGER NOT NULL,"          /* wall ns queued */
    "  tenant TEXT NOT NULL, device TEXT NOT NULL,"
    "  topic TEXT NOT NULL, payload BLOB NOT NULL, qos INTEGER NOT NULL);"
    "CREATE INDEX mqtt_outbox_ts ON mqtt_outbox (ts);",
};
#define S_NMIGRATIONS ((int)(sizeof s_migrations / sizeof s_migrations[0]))

/* One WHERE clause for the list, count and page alike. ?1 tenant, ?2
 * type, ?3 status, ?4 tag, ?5 group, ?6 online, ?7 metadata object. */
#define S_LIST_WHERE \
    " FROM devices WHERE tenant = ?1" \
    " AND (?2 IS NULL OR json_extract(state, '$.type') = ?2)" \
    " AND (CASE WHEN ?3 IS NULL" \
    "      THEN json_extract(state, '$.status') <> 'decommissioned'" \
    "      ELSE json_extract(state, '$.status') = ?3 END)" \
    " AND (?4 IS NULL OR EXISTS (SELECT 1 FROM json_each(state, '$.tags')" \
    "      WHERE value = ?4))" \
    " AND (?5 IS NULL OR EXISTS (SELECT 1 FROM json_each(state, '$.groups')" \
    "      WHERE value = ?5))" \
    " AND (?6 IS NULL OR json_extract(state, '$.online') = ?6)" \
    " AND NOT EXISTS (SELECT 1 FROM json_each(?7) f WHERE" \
    "      json_extract(devices.state, '$.metadata.\"' || f.key || '\"')" \
    "      IS NOT f.value)"

enum s_stmt {
    ST_GET,
    ST_INSERT_EVENT,
    ST_UPSERT,
    ST_EVENTS,
    ST_SET_CRED,
    ST_CREDS,
    ST_KEY_ADD,
    ST_KEY_FIND,
    ST_KEY_COUNT,
    ST_LIST_COUNT,
    ST_LIST_PAGE,
    ST_STALE,
    ST_LAST2,
    ST_DEL_EVENT,
    ST_DEL_SHADOW,
    ST_MAX
};

static const char *const s_sql[ST_MAX] = {
    [ST_GET] = "SELECT state, seq FROM devices WHERE tenant = ? AND id = ?",
    [ST_INSERT_EVENT] = "INSERT INTO events (tenant, id, seq, ts, type, data)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
    [ST_UPSERT] = "INSERT INTO devices (tenant, id, state, seq) VALUES (?, ?, ?, ?)"
                  " ON CONFLICT (tenant, id) DO UPDATE"
                  " SET state = excluded.state, seq = excluded.seq",
    [ST_EVENTS] = "SELECT seq, ts, type, data FROM events"
                  " WHERE tenant = ? AND id = ? AND seq > ? ORDER BY seq LIMIT ?",
    [ST_SET_CRED] = "UPDATE devices SET mqtt_user = ?, mqtt_hash = ?"
                    " WHERE tenant = ? AND id = ?",
    [ST_CREDS] = "SELECT mqtt_user, mqtt_hash, tenant, id FROM devices"
                 " WHERE mqtt_hash IS NOT NULL ORDER BY mqtt_user",
    [ST_KEY_ADD] = "INSERT INTO api_keys (hash, name, tenant, role, created)"
                   " VALUES (?, ?, ?, ?, ?)",
    [ST_KEY_FIND] = "SELECT name, tenant, role FROM api_keys WHERE hash = ?",
    [ST_KEY_COUNT] = "SELECT count(*) FROM api_keys",
    [ST_LIST_COUNT] = "SELECT count(*)" S_LIST_WHERE,
    [ST_LIST_PAGE] = "SELECT state" S_LIST_WHERE " ORDER BY id LIMIT ?8 OFFSET ?9",
    /* lastSeen is RFC 3339 in UTC with milliseconds: fixed width, so text
     * order is time order. */
    [ST_STALE] = "SELECT tenant, id FROM devices"
                 " WHERE json_extract(state, '$.online') = 1"
                 " AND json_extract(state, '$.lastSeen') < ?1 LIMIT ?2",
    [ST_LAST2] = "SELECT seq, type FROM events WHERE tenant = ? AND id = ?"
                 " ORDER BY seq DESC LIMIT 2",
    [ST_DEL_EVENT] = "DELETE FROM events WHERE tenant = ? AND id = ? AND seq = ?",
    [ST_DEL_SHADOW] = "DELETE FROM shadows WHERE tenant = ? AND id = ?",
};

struct dev_store {
    sqlite3 *db;                 /* the open file */
    sqlite3_stmt *st[ST_MAX];    /* prepared once, reset after each use */
    dev_store_observer_fn *observer; /* told of every committed append */
    void *observer_arg;
};

static int
s_exec(dev_store_t *self, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_warnx("dev_store: %s: %s", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

static int
s_migrate(dev_store_t *self)
{
    sqlite3_stmt *st;
    int version = 0;

    if (sqlite3_prepare_v2(self->db, "PRAGMA user_version", -1, &st, NULL))
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > S_NMIGRATIONS) {
        log_warnx("dev_store: schema version %d is newer than this apid (%d)",
                  version, S_NMIGRATIONS);
        return -1;
    }
    int from = version;
    for (; version < S_NMIGRATIONS; version++) {
        char pragma[40];
        snprintf(pragma, sizeof pragma, "PRAGMA user_version = %d", version + 1);
        if (s_exec(self, "BEGIN") || s_exec(self, s_migrations[version]) ||
            s_exec(self, pragma) || s_exec(self, "COMMIT")) {
            s_exec(self, "ROLLBACK");
            log_warnx("dev_store: migration to schema version %d failed",
                      version + 1);
            return -1;
        }
    }
    /* One line, not one a migration: a new store is created at the last
     * version, an old one says what it came from. */
    if (from == 0)
        log_info("dev_store: created at schema version %d", version);
    else if (from < version)
        log_info("dev_store: schema version %d migrated to %d", from, version);
    return 0;
}

dev_store_t *
dev_store_new(const char *path)
{
    dev_store_t *self = xcalloc(1, sizeof *self);

    if (sqlite3_open_v2(path, &self->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL)) {
        log_warnx("dev_store: cannot open %s: %s", path,
                  self->db ? sqlite3_errmsg(self->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(self->db, 1000);
    if (s_exec(self, "PRAGMA journal_mode = WAL") ||
        s_exec(self, "PRAGMA synchronous = NORMAL") ||
        s_exec(self, "PRAGMA foreign_keys = ON") || s_migrate(self))
        goto fail;
    for (int i = 0; i < ST_MAX; i++)
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &self->st[i], NULL)) {
            log_warnx("dev_store: %s: %s", s_sql[i], sqlite3_errmsg(self->db));
            goto fail;
        }
    return self;
fail:
    dev_store_destroy(&self);
    return NULL;
}

void
dev_store_destroy(dev_store_t **self_p)
{
    dev_store_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (int i = 0; i < ST_MAX; i++)
        sqlite3_finalize(self->st[i]);
    sqlite3_close(self->db);
    free(self);
    *self_p = NULL;
}

/* The prepared statement i, reset and cleared for new bindings. */
static sqlite3_stmt *
s_st(dev_store_t *self, int i)
{
    sqlite3_reset(self->st[i]);
    sqlite3_clear_bindings(self->st[i]);
    return self->st[i];
}

static void
s_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

static int
s_step_done(dev_store_t *self, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log_warnx("dev_store: %s", sqlite3_errmsg(self->db));
        return -1;
    }
    return 0;
}

/* The stored state and its last seq; NULL when unknown. */
static json_t *
s_get(dev_store_t *self, const char *tenant, const char *id, int64_t *seq)
{
    sqlite3_stmt *st = s_st(self, ST_GET);
    json_t *state = NULL;

    s_bind_text(st, 1, tenant);
    s_bind_text(st, 2, id);
    if (sqlite3_step(st) == SQLITE_ROW) {
        state = json_loads((const char *)sqlite3_column_text(st, 0), 0, NULL);
        if (seq)
            *seq = sqlite3_column_int64(st, 1);
    }
    sqlite3_reset(st);
    return state;
}

int
dev_store_json_depth(const json_t *j, int limit)
{
    const char *k;
    json_t *v;
    size_t i;
    int d = 0, c;

    if (limit < 0)
        return 1;
    if (json_is_object(j)) {
        json_object_foreach((json_t *)j, k, v)
            if ((c = dev_store_json_depth(v, limit - 1)) > d)
                d = c;
        return d + 1;
    }
    if (json_is_array(j)) {
        json_array_foreach(j, i, v)
            if ((c = dev_store_json_depth(v, limit - 1)) > d)
                d = c;
        return d + 1;
    }
    return 0;
}

static char *
s_dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

/* Before a heartbeat is appended: when the last two events of the device
 * are heartbeats, delete the last, so that a run of heartbeats keeps its
 * first (when the device was first heard from again) and its last (the
 * lastSeen the state holds). A heartbeat changes nothing but online,
 * lastSeen and updatedAt, which the newest one sets again, so the fold
 * of the log stays the stored state. 0, or -1 (logged). */
static int
s_heartbeat_run(dev_store_t *self, const char *tenant, const char *id)
{
    sqlite3_stmt *st = s_st(self, ST_LAST2);
    int64_t last = 0;
    int beats = 0, rc;

    s_bind_text(st, 1, tenant);
    s_bind_text(st, 2, id);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (beats == 0)
            last = sqlite3_column_int64(st, 0);
        if (strcmp((const char *)sqlite3_column_text(st, 1), DEV_EV_HEARTBEAT))
            break;
        beats++;
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        log_warnx("dev_store: %s", sqlite3_errmsg(self->db));
        return -1;
    }
    if (beats < 2)
        return 0;
    st = s_st(self, ST_DEL_EVENT);
    s_bind_text(st, 1, tenant);
    s_bind_text(st, 2, id);
    sqlite3_bind_int64(st, 3, last);
    return s_step_done(self, st);
}

enum dev_store_err
dev_store_append(dev_store_t *self, const char *tenant, const char *id,
                 json_t *events, int64_t ts, json_t **state_p, const char **why)
{
    enum dev_store_err rc = DEV_STORE_EDB;
    int64_t seq = 0;
    json_t *state, *before, *ev;
    size_t i;
    char *text;

    *why = NULL;
    if (s_exec(self, "BEGIN IMMEDIATE"))
        return DEV_STORE_EDB;
    state = s_get(self, tenant, id, &seq);
    /* dev_state_apply replaces the state with a changed copy, so a
     * reference keeps the one before for the observer. */
    before = json_incref(state);
    json_array_foreach(events, i, ev) {
        const char *kind = json_string_value(json_object_get(ev, "type"));
        json_t *data = json_object_get(ev, "data");
        sqlite3_stmt *st;
        if (kind == NULL) {
            *why = "event without a type";
            rc = DEV_STORE_EINVALID;
            goto done;
        }
        if (!strcmp(kind, DEV_EV_PROVISIONED) && state &&
            strcmp(json_string_value(json_object_get(state, "status")),
                   DEV_EV_DECOMMISSIONED)) {
            rc = DEV_STORE_EEXISTS;
            goto done;
        }
        /* Registered again after decommissioning: a new device, whose
         * shadow starts empty as a first registration's does. */
        if (!strcmp(kind, DEV_EV_PROVISIONED) && state) {
            sqlite3_stmt *del = s_st(self, ST_DEL_SHADOW);
            s_bind_text(del, 1, tenant);
            s_bind_text(del, 2, id);
            if (s_step_done(self, del))
                goto done;
        }
        if (strcmp(kind, DEV_EV_PROVISIONED) && state == NULL) {
            rc = DEV_STORE_ENOTFOUND;
            goto done;
        }
        if (dev_state_apply(&state, kind, data, ts, why)) {
            rc = DEV_STORE_EINVALID;
            goto done;
        }
        if (!strcmp(kind, DEV_EV_HEARTBEAT) && s_heartbeat_run(self, tenant, id))
            goto done;
        st = s_st(self, ST_INSERT_EVENT);
        s_bind_text(st, 1, tenant);
        s_bind_text(st, 2, id);
        sqlite3_bind_int64(st, 3, ++seq);
        sqlite3_bind_int64(st, 4, ts);
        s_bind_text(st, 5, kind);
        text = s_dump(data);
        s_bind_text(st, 6, text);
        free(text);
        if (s_step_done(self, st))
            goto done;
    }
    if (state && dev_store_json_depth(state, DEV_STATE_DEPTH_MAX) > DEV_STATE_DEPTH_MAX) {
        *why = "the device's state may nest at most 64 levels";
        rc = DEV_STORE_EINVALID;
        goto done;
    }
    if (state) {
        sqlite3_stmt *st = s_st(self, ST_UPSERT);
        s_bind_text(st, 1, tenant);
        s_bind_text(st, 2, id);
        text = s_dump(state);
        s_bind_text(st, 3, text);
        free(text);
        sqlite3_bind_int64(st, 4, seq);
        if (s_step_done(self, st))
            goto done;
    }
    if (s_exec(self, "COMMIT"))
        goto done;
    if (self->observer && state)
        self->observer(self->observer_arg, tenant, id, before, state, ts);
    if (state_p)
        *state_p = json_incref(state);
    json_decref(state);
    json_decref(before);
    return DEV_STORE_OK;
done:
    s_exec(self, "ROLLBACK");
    json_decref(state);
    json_decref(before);
    return rc;
}

void
dev_store_observe(dev_store_t *self, dev_store_observer_fn *fn, void *arg)
{
    self->observer = fn;
    self->observer_arg = arg;
}

void *
dev_store_db(dev_store_t *self)
{
    return self->db;
}

json_t *
dev_store_get(dev_store_t *self, const char *tenant, const char *id)
{
    return s_get(self, tenant, id, NULL);
}

json_t *
dev_store_events(dev_store_t *self, const char *tenant, const char *id,
                 int64_t after, int64_t limit)
{
    json_t *probe = s_get(self, tenant, id, NULL), *out;
    sqlite3_stmt *st;
    char t[40];

    if (probe == NULL)
        return NULL;
    json_decref(probe);
    out = json_array();
    st = s_st(self, ST_EVENTS);
    s_bind_text(st, 1, tenant);
    s_bind_text(st, 2, id);
    sqlite3_bind_int64(st, 3, after);
    sqlite3_bind_int64(st, 4, limit);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *data = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        json_array_append_new(out, json_pack(
            "{s:I, s:s, s:s, s:I, s:o}", "seq",
            (json_int_t)sqlite3_column_int64(st, 0), "type",
            (const char *)sqlite3_column_text(st, 2), "ts",
            clock_format(sqlite3_column_int64(st, 1), t, sizeof t), "tsNs",
            (json_int_t)sqlite3_column_int64(st, 1),
            "data", data ? data : json_object()));
    }
    sqlite3_reset(st);
    return out;
}

json_t *
dev_store_replay(dev_store_t *self, const char *tenant, const char *id)
{
    json_t *state = NULL, *probe = s_get(self, tenant, id, NULL);
    sqlite3_stmt *st;
    const char *why;

    if (probe == NULL)
        return NULL;
    json_decref(probe);
    st = s_st(self, ST_EVENTS);
    s_bind_text(st, 1, tenant);
    s_bind_text(st, 2, id);
    sqlite3_bind_int64(st, 3, 0);
    sqlite3_bind_int64(st, 4, INT64_MAX);
    while (sqlite3_step(st) == SQLITE_ROW) {
        json_t *data = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
        /* A stored event always applied once; if it no longer does, the
         * fold changed incompatibly and the state says so. */
        if (dev_state_apply(&state, (const char *)sqlite3_column_text(st, 2),
                            data, sqlite3_column_int64(st, 1), &why))
            log_warnx("dev_store: replay of %s/%s: %s", tenant, id, why);
        json_decref(data);
    }
    sqlite3_reset(st);
    return state;
}

json_t *
dev_store_list(dev_store_t *self, const char *tenant, const struct dev_filter *f,
               int64_t limit, int64_t offset, int64_t *total)
{
    char *meta = f->metadata ? s_dump(f->metadata) : xstrdup("{}");
    json_t *out = json_array();

    for (int i = ST_LIST_COUNT; i <= ST_LIST_PAGE; i++) {
        sqlite3_stmt *st = s_st(self, i);
        int rc;
        s_bind_text(st, 1, tenant);
        s_bind_text(st, 2, f->type);
        s_bind_text(st, 3, f->status);
        s_bind_text(st, 4, f->tag);
        s_bind_text(st, 5, f->group);
        if (f->online)
            sqlite3_bind_int(st, 6, !strcmp(f->online, "true"));
        s_bind_text(st, 7, meta);
        if (i == ST_LIST_PAGE) {
            sqlite3_bind_int64(st, 8, limit);
            sqlite3_bind_int64(st, 9, offset);
        }
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (i == ST_LIST_COUNT)
                *total = sqlite3_column_int64(st, 0);
            else
                json_array_append_new(out, json_loads(
                    (const char *)sqlite3_column_text(st, 0), 0, NULL));
        }
        sqlite3_reset(st);
        if (rc != SQLITE_DONE) {
            log_warnx("dev_store: list: %s", sqlite3_errmsg(self->db));
            json_decref(out);
            free(meta);
            return NULL;
        }
    }
    free(meta);
    return out;
}

int
dev_store_set_cred(dev_store_t *self, const char *tenant, const char *id,
                   const char *user, const char *hash)
{
    sqlite3_stmt *st = s_st(self, ST_SET_CRED);

    s_bind_text(st, 1, hash ? user : NULL);
    s_bind_text(st, 2, hash);
    s_bind_text(st, 3, tenant);
    s_bind_text(st, 4, id);
    return s_step_done(self, st);
}

int
dev_store_creds(dev_store_t *self,
                void (*fn)(void *arg, const char *user, const char *hash,
                           const char *tenant, const char *id),
                void *arg)
{
    sqlite3_stmt *st = s_st(self, ST_CREDS);
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        fn(arg, (const char *)sqlite3_column_text(st, 0),
           (const char *)sqlite3_column_text(st, 1),
           (const char *)sqlite3_column_text(st, 2),
           (const char *)sqlite3_column_text(st, 3));
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

json_t *
dev_store_stale(dev_store_t *self, int64_t before, int64_t limit)
{
    sqlite3_stmt *st = s_st(self, ST_STALE);
    json_t *out = json_array();
    char t[40];
    int rc;

    s_bind_text(st, 1, clock_format(before, t, sizeof t));
    sqlite3_bind_int64(st, 2, limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(out, json_pack("[s, s]",
                                             (const char *)sqlite3_column_text(st, 0),
                                             (const char *)sqlite3_column_text(st, 1)));
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        log_warnx("dev_store: stale devices: %s", sqlite3_errmsg(self->db));
        json_decref(out);
        return NULL;
    }
    return out;
}

int
dev_store_key_add(dev_store_t *self, const char *hash, const char *name,
                  const char *tenant, const char *role)
{
    sqlite3_stmt *st = s_st(self, ST_KEY_ADD);

    s_bind_text(st, 1, hash);
    s_bind_text(st, 2, name);
    s_bind_text(st, 3, tenant);
    s_bind_text(st, 4, role);
    sqlite3_bind_int64(st, 5, clock_now_ns());
    return s_step_done(self, st);
}

json_t *
dev_store_key_find(dev_store_t *self, const char *hash)
{
    sqlite3_stmt *st = s_st(self, ST_KEY_FIND);
    json_t *out = NULL;

    s_bind_text(st, 1, hash);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = json_pack("{s:s, s:s, s:s}", "name",
                        (const char *)sqlite3_column_text(st, 0), "tenant",
                        (const char *)sqlite3_column_text(st, 1), "role",
                        (const char *)sqlite3_column_text(st, 2));
    sqlite3_reset(st);
    return out;
}

int64_t
dev_store_key_count(dev_store_t *self)
{
    sqlite3_stmt *st = s_st(self, ST_KEY_COUNT);
    int64_t n = 0;

    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

/* --- selftest ------------------------------------------------------------ */

static json_t *
s_ev(const char *kind, const char *data)
{
    return json_pack("{s:s, s:o}", "type", kind, "data", json_loads(data, 0, NULL));
}

static void
s_append1(dev_store_t *s, const char *tenant, const char *id, const char *kind,
          const char *data, int64_t ts, enum dev_store_err want)
{
    json_t *evs = json_pack("[o]", s_ev(kind, data));
    const char *why;
    assert(dev_store_append(s, tenant, id, evs, ts, NULL, &why) == want);
    json_decref(evs);
}

/* The first column of sql's first row as an integer, or -1. */
static int64_t
s_count(dev_store_t *s, const char *sql)
{
    sqlite3_stmt *st;
    int64_t n = -1;

    assert(sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) == SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Observer for the selftest: counts calls, keeps the last pair. */
struct s_seen {
    int calls;
    bool had_before;
    char kind_after[32];
};

static void
s_observe(void *arg, const char *tenant, const char *id, const json_t *before,
          const json_t *after, int64_t ts)
{
    struct s_seen *seen = arg;
    seen->calls++;
    seen->had_before = before != NULL;
    snprintf(seen->kind_after, sizeof seen->kind_after, "%s",
             json_string_value(json_object_get(after, "status")));
}

void
dev_store_test(bool verbose)
{
    char dir[] = "/tmp/dev_store_test.XXXXXX", path[64], side[80];
    dev_store_t *s;
    json_t *st, *re, *list, *ev, *meta;
    struct dev_filter f = {0};
    int64_t t0 = 1704067200LL * CLOCK_NS_PER_S, total = -1;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/devices.db", dir);
    s = dev_store_new(path);
    assert(s);
    struct s_seen seen = {0};
    dev_store_observe(s, s_observe, &seen);
    s_append1(s, "acme", "sensor-001", DEV_EV_PROVISIONED,
              "{\"deviceId\":\"sensor-001\",\"type\":\"temperature\","
              "\"metadata\":{\"location\":\"warehouse-a\",\"model\":\"DHT22\"},"
              "\"tags\":[\"cold\"],\"groups\":[\"g1\"]}", t0, DEV_STORE_OK);
    /* The observer hears a commit, without a state before a provision. */
    assert(seen.calls == 1 && !seen.had_before);
    TEST_STREQ(seen.kind_after, "provisioned");
    s_append1(s, "acme", "sensor-001", DEV_EV_PROVISIONED,
              "{\"deviceId\":\"sensor-001\",\"type\":\"x\"}", t0, DEV_STORE_EEXISTS);
    assert(seen.calls == 1); /* nothing committed, nothing told */
    s_append1(s, "acme", "sensor-002", DEV_EV_PROVISIONED,
              "{\"deviceId\":\"sensor-002\",\"type\":\"humidity\","
              "\"metadata\":{\"location\":\"warehouse-b\"}}", t0, DEV_STORE_OK);
    s_append1(s, "other", "sensor-001", DEV_EV_PROVISIONED,
              "{\"deviceId\":\"sensor-001\",\"type\":\"temperature\"}", t0, DEV_STORE_OK);
    s_append1(s, "acme", "sensor-009", DEV_EV_HEARTBEAT, "{}", t0, DEV_STORE_ENOTFOUND);
    s_append1(s, "acme", "sensor-001", DEV_EV_ACTIVATED, "{}", t0 + 1, DEV_STORE_OK);
    assert(seen.calls == 4 && seen.had_before);
    TEST_STREQ(seen.kind_after, "active");
    dev_store_observe(s, NULL, NULL);
    s_append1(s, "acme", "sensor-001", DEV_EV_LOCATION,
              "{\"location\":\"warehouse-c\"}", t0 + 2, DEV_STORE_OK);
    s_append1(s, "acme", "sensor-001", DEV_EV_FIRMWARE, "{\"version\":\"2.1.0\"}",
              t0 + 3, DEV_STORE_OK);
    s_append1(s, "acme", "sensor-001", DEV_EV_FIRMWARE, "{\"version\":3}",
              t0 + 4, DEV_STORE_EINVALID);

    {
        /* A state nesting deeper than DEV_STATE_DEPTH_MAX is refused (it
         * would fail SQLite's JSON functions, so every list of acme). */
        char deep[1024] = "{\"deviceId\":\"deep\",\"type\":\"t\",\"metadata\":";
        size_t n = strlen(deep);
        for (int i = 0; i < 70; i++)
            n += (size_t)snprintf(deep + n, sizeof deep - n, "{\"a\":");
        n += (size_t)snprintf(deep + n, sizeof deep - n, "1");
        for (int i = 0; i < 71; i++)
            n += (size_t)snprintf(deep + n, sizeof deep - n, "}");
        s_append1(s, "acme", "deep", DEV_EV_PROVISIONED, deep, t0, DEV_STORE_EINVALID);
        json_t *j = json_pack("{s:[{}]}", "a");
        assert(dev_store_json_depth(j, 64) == 3 && dev_store_json_depth(j, 1) == 3);
        json_decref(j);
    }

    /* A failed append left nothing behind: the log has 4 events. */
    ev = dev_store_events(s, "acme", "sensor-001", 0, 100);
    assert(json_array_size(ev) == 4);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(ev, 3), "type")),
               DEV_EV_FIRMWARE);
    json_decref(ev);
    assert(dev_store_events(s, "nobody", "sensor-001", 0, 100) == NULL);

    /* Replaying the log reproduces the stored state exactly. */
    st = dev_store_get(s, "acme", "sensor-001");
    re = dev_store_replay(s, "acme", "sensor-001");
    assert(st && re && json_equal(st, re));
    TEST_STREQ(json_string_value(json_object_get(st, "firmware")), "2.1.0");
    json_decref(st);
    json_decref(re);

    /* The log is append-only. */
    assert(s_exec(s, "DELETE FROM events") == -1);
    assert(s_exec(s, "UPDATE events SET type = 'x'") == -1);

    /* Filters, scoped by tenant. */
    list = dev_store_list(s, "acme", &f, 10, 0, &total);
    assert(json_array_size(list) == 2 && total == 2);
    json_decref(list);
    f.tag = "cold";
    list = dev_store_list(s, "acme", &f, 10, 0, &total);
    assert(json_array_size(list) == 1 && total == 1);
    json_decref(list);
    f.tag = NULL;
    meta = json_pack("{s:s}", "location", "warehouse-b");
    f.metadata = meta;
    list = dev_store_list(s, "acme", &f, 10, 0, &total);
    assert(json_array_size(list) == 1 && total == 1);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(list, 0), "deviceId")),
               "sensor-002");
    json_decref(list);
    json_decref(meta);
    f.metadata = NULL;
    list = dev_store_list(s, "acme", &f, 1, 1, &total);
    assert(json_array_size(list) == 1 && total == 2);
    json_decref(list);
    s_append1(s, "acme", "sensor-002", DEV_EV_DECOMMISSIONED, "{}", t0 + 5, DEV_STORE_OK);
    list = dev_store_list(s, "acme", &f, 10, 0, &total);
    assert(total == 1);
    json_decref(list);

    /* A decommissioned id registered again (it was 409 for good): a new
     * device on the same log, whose seq and version go on; its old shadow
     * is gone. Taken again it is 409. */
    {
        sqlite3_stmt *q;
        assert(s_exec(s, "INSERT INTO shadows VALUES ('acme', 'sensor-002',"
                         " '{\"led\":1}', '{}', 1, 0, 0)") == 0);
        s_append1(s, "acme", "sensor-002", DEV_EV_PROVISIONED,
                  "{\"deviceId\":\"sensor-002\",\"type\":\"valve\"}", t0 + 6, DEV_STORE_OK);
        s_append1(s, "acme", "sensor-002", DEV_EV_PROVISIONED,
                  "{\"deviceId\":\"sensor-002\",\"type\":\"valve\"}", t0 + 7,
                  DEV_STORE_EEXISTS);
        st = dev_store_get(s, "acme", "sensor-002");
        re = dev_store_replay(s, "acme", "sensor-002");
        assert(st && re && json_equal(st, re));
        TEST_STREQ(json_string_value(json_object_get(st, "type")), "valve");
        TEST_STREQ(json_string_value(json_object_get(st, "status")), "provisioned");
        assert(json_object_size(json_object_get(st, "metadata")) == 0);
        assert(json_integer_value(json_object_get(st, "version")) == 3);
        json_decref(st);
        json_decref(re);
        ev = dev_store_events(s, "acme", "sensor-002", 0, 100);
        assert(json_array_size(ev) == 3);
        assert(json_integer_value(json_object_get(json_array_get(ev, 2), "seq")) == 3);
        json_decref(ev);
        assert(sqlite3_prepare_v2(s->db, "SELECT count(*) FROM shadows", -1, &q, NULL) ==
               SQLITE_OK && sqlite3_step(q) == SQLITE_ROW);
        assert(sqlite3_column_int(q, 0) == 0);
        sqlite3_finalize(q);
        s_append1(s, "acme", "sensor-002", DEV_EV_DECOMMISSIONED, "{}", t0 + 8, DEV_STORE_OK);
    }

    /* Credentials and keys. */
    assert(dev_store_set_cred(s, "acme", "sensor-001", "sensor-001", "$7$x") == 0);
    assert(dev_store_key_add(s, "abc", "k1", "acme", "reader") == 0);
    assert(dev_store_key_add(s, "abc", "k1", "acme", "reader") == -1);
    assert(dev_store_key_count(s) == 1);
    st = dev_store_key_find(s, "abc");
    TEST_STREQ(json_string_value(json_object_get(st, "tenant")), "acme");
    json_decref(st);
    /* Online devices by lastSeen: sensor-001 seen at t0 + 10 s. */
    s_append1(s, "acme", "sensor-001", DEV_EV_HEARTBEAT, "{}",
              t0 + 10 * CLOCK_NS_PER_S, DEV_STORE_OK);
    list = dev_store_stale(s, t0 + 10 * CLOCK_NS_PER_S, 10);
    assert(list && json_array_size(list) == 0);
    json_decref(list);
    list = dev_store_stale(s, t0 + 11 * CLOCK_NS_PER_S, 10);
    assert(list && json_array_size(list) == 1);
    TEST_STREQ(json_string_value(json_array_get(json_array_get(list, 0), 1)), "sensor-001");
    json_decref(list);
    s_append1(s, "acme", "sensor-001", DEV_EV_OFFLINE, "{}", t0 + 12 * CLOCK_NS_PER_S,
              DEV_STORE_OK);
    list = dev_store_stale(s, t0 + 20 * CLOCK_NS_PER_S, 10);
    assert(list && json_array_size(list) == 0); /* offline is not stale */
    json_decref(list);

    /* A run of heartbeats keeps its first and its last event; the state
     * (lastSeen the last, version unchanged) is still the log's fold. An
     * offline starts a new run. Only heartbeats may be deleted. */
    st = dev_store_get(s, "acme", "sensor-001");
    json_int_t version = json_integer_value(json_object_get(st, "version"));
    json_decref(st);
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5; i++)
            s_append1(s, "acme", "sensor-001", DEV_EV_HEARTBEAT, "{}",
                      t0 + (20 + 10 * round + i) * CLOCK_NS_PER_S, DEV_STORE_OK);
        ev = dev_store_events(s, "acme", "sensor-001", 0, 100);
        size_t n = json_array_size(ev);
        const char *want[3] = {DEV_EV_OFFLINE, DEV_EV_HEARTBEAT, DEV_EV_HEARTBEAT};
        for (size_t k = 0; k < 3; k++)
            TEST_STREQ(json_string_value(json_object_get(
                           json_array_get(ev, n - 3 + k), "type")), want[k]);
        assert(json_integer_value(json_object_get(json_array_get(ev, n - 2), "tsNs")) ==
               t0 + (20 + 10 * round) * CLOCK_NS_PER_S);
        assert(n == (size_t)(8 + 3 * round));
        json_decref(ev);
        st = dev_store_get(s, "acme", "sensor-001");
        re = dev_store_replay(s, "acme", "sensor-001");
        assert(st && re && json_equal(st, re));
        assert(json_is_true(json_object_get(st, "online")));
        assert(json_integer_value(json_object_get(st, "version")) == version + round);
        TEST_STREQ(json_string_value(json_object_get(st, "lastSeen")),
                   round ? "2024-01-01T00:00:34.000Z" : "2024-01-01T00:00:24.000Z");
        json_decref(st);
        json_decref(re);
        if (round == 0)
            s_append1(s, "acme", "sensor-001", DEV_EV_OFFLINE, "{}",
                      t0 + 25 * CLOCK_NS_PER_S, DEV_STORE_OK);
    }
    assert(s_exec(s, "DELETE FROM events WHERE type = 'offline'") == -1);

    /* A store of schema 4, whose 5 heartbeats each counted as a version:
     * migrating recounts the versions without them. Its jobs (schema 6
     * undone, and 7's outbox) hold entries of sensor-002 (decommissioned at t0 + 5 and
     * t0 + 8) left open: of job j1, made before; of job j2, made over it
     * while decommissioned. sensor-001's entry is of its registration. */
    assert(s_exec(s, "DROP TABLE mqtt_outbox;"
                     "DROP TRIGGER events_decommissioned_jobs;"
                     "ALTER TABLE jobs DROP COLUMN ignored;"
                     "INSERT INTO jobs VALUES ('j1', 'acme', 'reboot', '{}', '{}',"
                     "  'in_progress', 1704067200000000001, 1704067300000000000),"
                     "  ('j2', 'acme', 'reboot', '{}', '{}', 'in_progress',"
                     "  1704067200000000009, 1704067300000000000);"
                     "INSERT INTO job_devices (job, device, state, updated) VALUES"
                     "  ('j1', 'sensor-002', 'queued', 1), ('j1', 'sensor-001', 'in_progress', 1),"
                     "  ('j2', 'sensor-002', 'queued', 1)") == 0);
    assert(s_exec(s, "DROP TRIGGER events_no_delete;"
                     "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
                     "  BEGIN SELECT RAISE(ABORT, 'append-only'); END;"
                     "UPDATE devices SET state = json_set(state, '$.version',"
                     "  json_extract(state, '$.version') + 5)"
                     "  WHERE id = 'sensor-001' AND tenant = 'acme';"
                     "PRAGMA user_version = 4") == 0);
    dev_store_destroy(&s);
    dev_store_destroy(&s);

    /* Reopening keeps everything (and migrates a store of schema 4). */
    s = dev_store_new(path);
    assert(s && dev_store_key_count(s) == 1);
    st = dev_store_get(s, "acme", "sensor-001");
    re = dev_store_replay(s, "acme", "sensor-001");
    assert(st && re && json_equal(st, re));
    assert(json_integer_value(json_object_get(st, "version")) == version + 1);
    json_decref(st);
    json_decref(re);
    assert(s_exec(s, "DELETE FROM events WHERE type = 'offline'") == -1);
    /* ... and ends the entries of sensor-002's earlier registrations,
     * at its decommissioning when it came after the job. */
    assert(s_count(s, "SELECT count(*) FROM job_devices WHERE device = 'sensor-002'"
                      " AND state = 'removed' AND message = 'device decommissioned'"
                      " AND updated = (CASE job WHEN 'j1' THEN 1704067200000000005"
                      " ELSE 1 END)") == 2);
    assert(s_count(s, "SELECT count(*) FROM job_devices WHERE device = 'sensor-001'"
                      " AND state = 'in_progress'") == 1);
    /* ... and makes the MQTT outbox (schema 7), empty. */
    assert(s_count(s, "SELECT count(*) FROM sqlite_schema"
                      " WHERE name IN ('mqtt_outbox', 'mqtt_outbox_ts')") == 2);
    assert(s_count(s, "SELECT count(*) FROM mqtt_outbox") == 0);
    assert(s_count(s, "PRAGMA user_version") == S_NMIGRATIONS && S_NMIGRATIONS == 7);
    /* Decommissioning ends the entries under way in the same transaction. */
    s_append1(s, "acme", "sensor-001", DEV_EV_DECOMMISSIONED, "{}", t0 + 99, DEV_STORE_OK);
    assert(s_count(s, "SELECT count(*) FROM job_devices WHERE device = 'sensor-001'"
                      " AND state = 'removed' AND updated = 1704067200000000099") == 1);
    dev_store_destroy(&s);

    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    assert(rmdir(dir) == 0);
    (void)verbose;
    TEST_OK("dev_store");
}
