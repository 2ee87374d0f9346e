/*
 * api_devices: device fleet routes over the registry (see api_devices.h).
 */
#include "apid/api_devices.h"
#include "apid/api_auth.h"
#include "apid/api_ws.h"
#include "apid/dev_creds.h"
#include "apid/dev_jobs.h"
#include "apid/dev_mqtt.h"
#include "apid/dev_outbox.h"
#include "apid/dev_shadow.h"
#include "apid/dev_state.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/log.h"
#include "common/quota.h"
#include "common/ratelimit.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <string.h>

#define S_PREFIX "/api/devices"
#define S_LIST_DEFAULT 100
#define S_LIST_MAX 1000
#define S_EVENTS_DEFAULT 1000
#define S_EVENTS_MAX 10000
#define S_PARTS 3
#define S_JOBS_TICK_MS 500
#define S_TOPIC_MAX 512
#define S_HEARTBEAT_NS (60 * CLOCK_NS_PER_S)
#define S_STALE_EVERY_NS CLOCK_NS_PER_S /* how often silence is looked for */
#define S_STALE_BATCH 1000               /* devices marked offline per look */

struct api_devices {
    apid_t *apid;        /* borrowed */
    dev_store_t *store;  /* the registry */
    const char *mqtt_dir;  /* where mosquitto's passwd and acl go, or NULL */
    const char *pidfile;   /* the broker's pid file ("" = no reload) */
    dev_jobs_t *jobs;      /* batch jobs */
    dev_mqtt_t *mqtt;      /* commands out, progress in; NULL = no jobs */
    dev_outbox_t *outbox;  /* what mqtt could not send yet; NULL = none */
    int timer;             /* job deadlines */
    int64_t offline_after; /* ns of silence before offline; 0 = never */
    int64_t heartbeat_ns;  /* heartbeats recorded at most this often */
    int64_t next_stale;    /* wall ns of the next look for silent devices */
    quota_t *quota;        /* --quotas: devices per tenant */
    struct ratelimit rl_shadow; /* complaints about refused shadow reports */
    struct ratelimit rl_jobs;   /* notes of ignored job reports */
    uint64_t reports[2];        /* job reports ignored [0] and applied [1] */
};

static void s_on_mqtt(void *arg, const char *topic, const void *payload, size_t len);

/* Every registry change, whatever made it (a REST call, a last will, a
 * heartbeat, the offline timer), goes to the WebSocket streams. */
static void
s_on_change(void *arg, const char *tenant, const char *id, const json_t *before,
            const json_t *after, int64_t ts)
{
    struct api_devices *self = arg;
    api_ws_device_status(apid_service(self->apid, "ws"), tenant, id, before, after, ts);
}
static int s_on_jobs_tick(zloop_t *loop, int timer_id, void *arg);

void *
api_devices_create(apid_t *apid)
{
    const struct apid_conf *conf = apid_config(apid);
    struct api_devices *self;
    char *path;

    if (sodium_init() < 0) {
        log_warnx("devices: libsodium cannot initialise");
        return NULL;
    }
    if (conf->datadir && *conf->datadir) {
        if (daemon_mkdirs(conf->datadir)) {
            log_warn("devices: cannot create %s", conf->datadir);
            return NULL;
        }
        path = xasprintf("%s/devices.db", conf->datadir);
    } else {
        path = xstrdup(":memory:");
    }
    self = xcalloc(1, sizeof *self);
    self->apid = apid;
    self->heartbeat_ns = S_HEARTBEAT_NS;
    if (conf->device_offline_after && *conf->device_offline_after) {
        if (clock_parse_duration(conf->device_offline_after, &self->offline_after)) {
            log_warnx("devices: device-offline-after: not a duration: %s",
                      conf->device_offline_after);
            free(self);
            return NULL;
        }
        /* lastSeen must move often enough for the timeout to mean silence. */
        if (self->heartbeat_ns > self->offline_after / 3)
            self->heartbeat_ns = self->offline_after / 3;
    }
    self->store = dev_store_new(path);
    free(path);
    if (self->store == NULL)
        goto fail;
    dev_store_observe(self->store, s_on_change, self);
    {
        char err[512];
        if ((self->quota = quota_new(conf->quotas, err, sizeof err)) == NULL) {
            log_warnx("devices: quotas: %s", err);
            goto fail;
        }
    }
    if (conf->mqtt_auth && *conf->mqtt_auth) {
        self->mqtt_dir = conf->mqtt_auth;
        self->pidfile = conf->mqtt_pidfile ? conf->mqtt_pidfile : "";
        if (daemon_mkdirs(self->mqtt_dir) ||
            dev_creds_write(self->store, self->mqtt_dir))
            goto fail;
        dev_creds_reload(self->pidfile);
        log_info("devices: MQTT credentials in %s", self->mqtt_dir);
    }
    if ((self->jobs = dev_jobs_new(self->store)) == NULL)
        goto fail;
    if (conf->mqtt_host && *conf->mqtt_host) {
        static const char *const subs[] = {
            "devices/+/jobs/+", "tenants/+/devices/+/jobs/+",
            "devices/+/shadow/reported", "tenants/+/devices/+/shadow/reported",
            "devices/+/status", "tenants/+/devices/+/status",
            "devices/+/heartbeat", "tenants/+/devices/+/heartbeat", NULL};
        if (conf->mqtt_outbox_max > 0 &&
            (self->outbox = dev_outbox_new(self->store, conf->mqtt_outbox_max,
                                           conf->mqtt_outbox_max_age)) == NULL)
            goto fail;
        self->mqtt = dev_mqtt_new(apid_loop(apid), conf->mqtt_host, (int)conf->mqtt_port,
                                  conf->mqtt_user, conf->mqtt_password, subs,
                                  s_on_mqtt, self, self->outbox);
        if (self->mqtt == NULL)
            goto fail;
    }
    self->timer = zloop_timer(apid_loop(apid), S_JOBS_TICK_MS, 0, s_on_jobs_tick, self);
    return self;
fail:
    dev_outbox_destroy(&self->outbox);
    dev_jobs_destroy(&self->jobs);
    dev_store_destroy(&self->store);
    quota_destroy(&self->quota);
    free(self);
    return NULL;
}

void
api_devices_destroy(void **state_p)
{
    struct api_devices *self;

    if (state_p == NULL || (self = *state_p) == NULL)
        return;
    if (self->timer)
        zloop_timer_end(apid_loop(self->apid), self->timer);
    dev_mqtt_destroy(&self->mqtt);
    dev_outbox_destroy(&self->outbox);
    dev_jobs_destroy(&self->jobs);
    dev_store_destroy(&self->store);
    quota_destroy(&self->quota);
    free(self);
    *state_p = NULL;
}

dev_store_t *
api_devices_store(apid_t *apid)
{
    struct api_devices *self = apid_service(apid, "devices");
    return self ? self->store : NULL;
}

void
api_devices_job_reports(apid_t *apid, uint64_t *applied, uint64_t *ignored)
{
    struct api_devices *self = apid_service(apid, "devices");

    *applied = self ? self->reports[1] : 0;
    *ignored = self ? self->reports[0] : 0;
}

void
api_devices_mqtt_stats(apid_t *apid, struct api_devices_mqtt *st)
{
    struct api_devices *self = apid_service(apid, "devices");

    memset(st, 0, sizeof *st);
    if (self == NULL || self->mqtt == NULL)
        return;
    st->enabled = true;
    st->connected = dev_mqtt_connected(self->mqtt);
    st->unacked = dev_mqtt_unacked(self->mqtt);
    dev_outbox_stats(self->outbox, &st->outbox);
}

/* --- helpers --------------------------------------------------------------- */

/* The body as a JSON object, or NULL after replying 400. Caller owns. */
static json_t *
s_body(http_req_t *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    json_t *in = json_loadb(body, len, 0, &jerr);
    char msg[200];

    if (in && json_is_object(in))
        return in;
    snprintf(msg, sizeof msg, "malformed JSON: %.150s",
             in ? "must be an object" : jerr.text);
    json_decref(in);
    http_req_reply_error(req, 400, "invalid_body", msg, "body");
    return NULL;
}

static void
s_not_found(http_req_t *req, const char *id)
{
    http_req_reply_error(req, 404, "not_found", "no such device", id);
}

/* Append events and reply with the new state (status ok), or the error.
 * Steals events. Returns the new state (caller owns) or NULL. */
static json_t *
s_append(struct api_devices *self, http_req_t *req, const char *id,
         json_t *events)
{
    const char *why = NULL;
    json_t *state = NULL;
    enum dev_store_err rc = dev_store_append(self->store, api_auth_tenant(req),
                                             id, events, clock_now_ns(), &state, &why);

    json_decref(events);
    switch (rc) {
    case DEV_STORE_OK:
        return state;
    case DEV_STORE_ENOTFOUND:
        s_not_found(req, id);
        break;
    case DEV_STORE_EEXISTS:
        http_req_reply_error(req, 409, "conflict", "device already registered", id);
        break;
    case DEV_STORE_EINVALID:
        http_req_reply_error(req, 400, "bad_request", why ? why : "invalid", id);
        break;
    case DEV_STORE_EDB:
        http_req_reply_error(req, 500, "internal", "registry write failed", id);
        break;
    }
    return NULL;
}

static json_t *
s_event(const char *kind, json_t *data)
{
    return json_pack("{s:s, s:o}", "type", kind, "data", data ? data : json_object());
}

/* Rewrite the broker's files and make it reload. 0 or -1 (logged). */
static int
s_broker_sync(struct api_devices *self)
{
    if (dev_creds_write(self->store, self->mqtt_dir))
        return -1;
    /* A broker that is down reads the files when it starts: logged only. */
    dev_creds_reload(self->pidfile);
    return 0;
}

/* Issue a new MQTT password for a device into out["credentials"]. The
 * password exists only in this reply and is wiped after it is printed. */
static int
s_issue(struct api_devices *self, http_req_t *req, const char *id, json_t *out)
{
    const char *tenant = api_auth_tenant(req);
    char user[2 * DEV_NAME_MAX + 2], prefix[256], *pw, *hash, *topic;

    if (self->mqtt_dir == NULL)
        return 0;
    dev_creds_user(tenant, id, user, sizeof user);
    dev_creds_prefix(tenant, id, prefix, sizeof prefix);
    pw = dev_creds_password();
    hash = dev_creds_hash(pw);
    if (dev_store_set_cred(self->store, tenant, id, user, hash) ||
        s_broker_sync(self)) {
        dev_creds_free(&pw);
        free(hash);
        return -1;
    }
    topic = xasprintf("%s/telemetry", prefix);
    json_object_set_new(out, "credentials", json_pack(
        "{s:s, s:s, s:s, s:s, s:s}", "username", user, "password", pw,
        "telemetryTopic", topic, "topicPrefix", prefix, "note",
        "the password is shown once; only its hash is kept"));
    free(topic);
    dev_creds_free(&pw);
    free(hash);
    return 0;
}

/* --- routes ---------------------------------------------------------------- */

/* Would id's MQTT user be a service account of passwd.static? Replies 409
 * when it would (the broker would give the device that account). */
static bool
s_reserved(struct api_devices *self, http_req_t *req, const char *id)
{
    char user[2 * DEV_NAME_MAX + 2], msg[2 * DEV_NAME_MAX + 80];

    if (self->mqtt_dir == NULL)
        return false;
    dev_creds_user(api_auth_tenant(req), id, user, sizeof user);
    if (!dev_creds_reserved(self->mqtt_dir, user))
        return false;
    snprintf(msg, sizeof msg, "MQTT user %s is a service account of the broker", user);
    http_req_reply_error(req, 409, "conflict", msg, "deviceId");
    return true;
}

/* Would registering id take the caller's tenant past its devices quota
 * (--quotas, else --tenant-devices; devices not decommissioned)? Replies
 * 403 quota_exceeded when it would. */
static bool
s_over_quota(struct api_devices *self, http_req_t *req, const char *id)
{
    const struct apid_conf *conf = apid_config(self->apid);
    struct dev_filter f = {0};
    int64_t total = 0, limit;
    json_t *cur, *list, *e;
    char msg[160];

    quota_refresh(self->quota, clock_mono_ns());
    limit = (int64_t)quota_limit(self->quota, api_auth_tenant(req), "devices",
                                 (double)conf->tenant_devices);
    if (limit <= 0)
        return false;
    if ((cur = dev_store_get(self->store, api_auth_tenant(req), id))) {
        /* Registering it again: the registry says 409, unless it was
         * decommissioned (then it is a new device, and counts). */
        bool live = strcmp(json_string_value(json_object_get(cur, "status")),
                           DEV_EV_DECOMMISSIONED);
        json_decref(cur);
        if (live)
            return false;
    }
    list = dev_store_list(self->store, api_auth_tenant(req), &f, 1, 0, &total);
    json_decref(list);
    if (total < limit)
        return false;
    snprintf(msg, sizeof msg, "the tenant has its %lld devices (its devices quota); "
             "decommission one first", (long long)limit);
    e = rpc_error("quota_exceeded", msg, "deviceId");
    json_object_set_new(json_object_get(e, "error"), "quota", json_string("devices"));
    http_req_reply_json(req, 403, e);
    return true;
}

static void
s_register(struct api_devices *self, http_req_t *req)
{
    static const char *fields[] = {"deviceId", "type", "metadata", "tags",
                                   "groups", "sensors"};
    json_t *in = s_body(req), *data, *state;
    const char *id;

    if (in == NULL)
        return;
    id = json_string_value(json_object_get(in, "deviceId"));
    if (!dev_state_name_ok(id) || !strcmp(id, "register") || !strcmp(id, "batch")) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "deviceId must be 1..64 characters of [A-Za-z0-9_.-]",
                             "deviceId");
        return;
    }
    if (s_reserved(self, req, id) || s_over_quota(self, req, id)) {
        json_decref(in);
        return;
    }
    data = json_object();
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (json_object_get(in, fields[i]))
            json_object_set(data, fields[i], json_object_get(in, fields[i]));
    state = s_append(self, req, id, json_pack("[o]", s_event(DEV_EV_PROVISIONED, data)));
    if (state == NULL) {
        json_decref(in);
        return;
    }
    log_info("devices: %s/%s provisioned", api_auth_tenant(req), id);
    if (s_issue(self, req, id, state)) {
        http_req_reply_error(req, 500, "internal",
                             "device registered, but its credentials could not be written; "
                             "POST /api/devices/{id}/credentials to retry", id);
        json_decref(state);
        json_decref(in);
        return;
    }
    json_decref(in);
    http_req_reply_json(req, 201, state);
}

struct s_listctx {
    json_t *meta;    /* metadata.K=V filters */
    const char *bad; /* a malformed one */
};

/* A metadata key a filter may name (a list's metadata.KEY=VALUE, a batch
 * filter's key): [A-Za-z0-9_-]+, as it goes into a JSON path. */
static bool
s_meta_key_ok(const char *k)
{
    return *k != '\0' && strspn(k, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789_-") == strlen(k);
}

static void
s_list_arg(void *arg, const char *k, const char *v)
{
    struct s_listctx *c = arg;
    if (strncmp(k, "metadata.", 9))
        return;
    if (!s_meta_key_ok(k + 9))
        c->bad = k;
    else
        json_object_set_new(c->meta, k + 9, json_string(v));
}

/* A query argument as an integer in [min, max] (def when absent); -1 and
 * a 400 when malformed. */
static int
s_int_arg(http_req_t *req, const char *name, long long def, long long min,
          long long max, long long *out)
{
    const char *v = http_req_arg(req, name);
    char msg[80];

    *out = def;
    if (v == NULL || !strutil_toll(v, min, max, out))
        return 0;
    snprintf(msg, sizeof msg, "%s must be an integer in [%lld, %lld]", name, min, max);
    http_req_reply_error(req, 400, "bad_request", msg, name);
    return -1;
}

static void
s_list(struct api_devices *self, http_req_t *req)
{
    struct s_listctx c = {json_object(), NULL};
    struct dev_filter f = {
        .type = http_req_arg(req, "type"),
        .status = http_req_arg(req, "status"),
        .tag = http_req_arg(req, "tag"),
        .group = http_req_arg(req, "group"),
        .online = http_req_arg(req, "online"),
    };
    long long limit, offset;
    int64_t total = 0;
    json_t *list;

    http_req_args(req, s_list_arg, &c);
    if (c.bad) {
        json_decref(c.meta);
        http_req_reply_error(req, 400, "bad_request",
                             "metadata filters are metadata.KEY=VALUE", c.bad);
        return;
    }
    if (f.online && strcmp(f.online, "true") && strcmp(f.online, "false")) {
        json_decref(c.meta);
        http_req_reply_error(req, 400, "bad_request", "online is true or false", "online");
        return;
    }
    if (s_int_arg(req, "limit", S_LIST_DEFAULT, 1, S_LIST_MAX, &limit) ||
        s_int_arg(req, "offset", 0, 0, INT32_MAX, &offset)) {
        json_decref(c.meta);
        return;
    }
    f.metadata = c.meta;
    list = dev_store_list(self->store, api_auth_tenant(req), &f, limit,
                          offset, &total);
    json_decref(c.meta);
    if (list == NULL) {
        http_req_reply_error(req, 500, "internal", "registry read failed", "devices");
        return;
    }
    http_req_reply_json(req, 200, json_pack("{s:o, s:I, s:I, s:I}", "devices", list,
                                            "total", (json_int_t)total, "limit",
                                            (json_int_t)limit, "offset",
                                            (json_int_t)offset));
}

static void
s_get(struct api_devices *self, http_req_t *req, const char *id)
{
    const char *replay = http_req_arg(req, "replay");
    const char *tenant = api_auth_tenant(req);
    json_t *st = replay && strcmp(replay, "0") && strcmp(replay, "false")
                     ? dev_store_replay(self->store, tenant, id)
                     : dev_store_get(self->store, tenant, id);

    if (st == NULL)
        s_not_found(req, id);
    else
        http_req_reply_json(req, 200, st);
}

/* The events a PATCH body stands for, or NULL after replying 400. */
static json_t *
s_patch_events(http_req_t *req, json_t *in, json_t *cur)
{
    json_t *evs = json_array(), *upd = json_object(), *v;
    const char *k;

    json_object_foreach(in, k, v) {
        if (!strcmp(k, "type") || !strcmp(k, "tags") || !strcmp(k, "groups")) {
            json_object_set(upd, k, v);
        } else if (!strcmp(k, "metadata") && json_is_object(v)) {
            json_t *loc = json_object_get(v, "location"), *rest = json_deep_copy(v);
            const char *now = json_string_value(
                json_object_get(json_object_get(cur, "metadata"), "location"));
            if (json_is_string(loc)) {
                json_object_del(rest, "location");
                if (now == NULL || strcmp(now, json_string_value(loc)))
                    json_array_append_new(evs, s_event(DEV_EV_LOCATION, json_pack(
                                                           "{s:O}", "location", loc)));
            }
            if (json_object_size(rest))
                json_object_set(upd, "metadata", rest);
            json_decref(rest);
        } else if (!strcmp(k, "firmware") && (json_is_string(v) || json_is_object(v))) {
            json_array_append_new(evs, s_event(DEV_EV_FIRMWARE, json_is_string(v)
                ? json_pack("{s:O}", "version", v) : json_deep_copy(v)));
        } else if (!strcmp(k, "status") && json_is_string(v) &&
                   !strcmp(json_string_value(v), "active")) {
            if (strcmp(json_string_value(json_object_get(cur, "status")), "active"))
                json_array_insert_new(evs, 0, s_event(DEV_EV_ACTIVATED, NULL));
        } else {
            json_decref(evs);
            json_decref(upd);
            http_req_reply_error(req, 400, "bad_request",
                                 "PATCH takes type, metadata (object), tags, groups, "
                                 "firmware and status \"active\"", k);
            return NULL;
        }
    }
    if (json_object_size(upd))
        json_array_append_new(evs, s_event(DEV_EV_UPDATED, upd));
    else
        json_decref(upd);
    return evs;
}

static void
s_patch(struct api_devices *self, http_req_t *req, const char *id)
{
    json_t *in = s_body(req), *cur, *evs, *st;

    if (in == NULL)
        return;
    if ((cur = dev_store_get(self->store, api_auth_tenant(req), id)) == NULL) {
        json_decref(in);
        s_not_found(req, id);
        return;
    }
    evs = s_patch_events(req, in, cur);
    json_decref(in);
    json_decref(cur);
    if (evs == NULL)
        return;
    if ((st = s_append(self, req, id, evs)))
        http_req_reply_json(req, 200, st);
}

static void s_command(struct api_devices *self, const char *tenant, const char *id,
                      const char *operation, json_t *body);

/* Decommissioning ends the device's entries in jobs under way (removed,
 * in the transaction of the event: dev_store's schema 6), so that none
 * outlives this registration; the device is sent each job's cancel. */
static void
s_decommission(struct api_devices *self, http_req_t *req, const char *id)
{
    const char *tenant = api_auth_tenant(req);
    json_t *open = dev_jobs_open_of(self->jobs, tenant, id), *job;
    json_t *st = s_append(self, req, id,
                          json_pack("[o]", s_event(DEV_EV_DECOMMISSIONED, NULL)));
    size_t i;

    if (st == NULL) {
        json_decref(open);
        return;
    }
    log_info("devices: %s/%s decommissioned", tenant, id);
    json_array_foreach(open, i, job) {
        json_t *cmd = json_pack("{s:O, s:s, s:s}", "jobId", job, "operation", "cancel",
                                "reason", "device decommissioned");
        log_info("jobs: %s: %s/%s removed: device decommissioned",
                 json_string_value(job), tenant, id);
        if (self->mqtt)
            s_command(self, tenant, id, "cancel", cmd);
        json_decref(cmd);
    }
    json_decref(open);
    if (self->mqtt_dir && (dev_store_set_cred(self->store, tenant, id, NULL, NULL) ||
                           s_broker_sync(self))) {
        json_decref(st);
        http_req_reply_error(req, 500, "internal",
                             "decommissioned, but the broker's files could not be rewritten",
                             id);
        return;
    }
    http_req_reply_json(req, 200, st);
}

static void
s_events(struct api_devices *self, http_req_t *req, const char *id)
{
    long long after, limit;
    json_t *in, *evs, *st;
    const char *kind, *status;

    if (!strcmp(http_req_method(req), "GET")) {
        if (s_int_arg(req, "after", 0, 0, INT64_MAX, &after) ||
            s_int_arg(req, "limit", S_EVENTS_DEFAULT, 1, S_EVENTS_MAX, &limit))
            return;
        evs = dev_store_events(self->store, api_auth_tenant(req), id, after, limit);
        if (evs == NULL)
            s_not_found(req, id);
        else
            http_req_reply_json(req, 200, json_pack("{s:s, s:o}", "deviceId", id,
                                                    "events", evs));
        return;
    }
    if (!apid_method(req, "POST") || (in = s_body(req)) == NULL)
        return;
    kind = json_string_value(json_object_get(in, "type"));
    if (kind == NULL || (strcmp(kind, DEV_EV_HEARTBEAT) && strcmp(kind, DEV_EV_ONLINE) &&
                         strcmp(kind, DEV_EV_OFFLINE))) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "type is heartbeat, online or offline", "type");
        return;
    }
    if ((st = dev_store_get(self->store, api_auth_tenant(req), id)) == NULL) {
        json_decref(in);
        s_not_found(req, id);
        return;
    }
    evs = json_array();
    status = json_string_value(json_object_get(st, "status"));
    /* A device first heard from is active from then on. */
    if (!strcmp(status, DEV_EV_PROVISIONED) && strcmp(kind, DEV_EV_OFFLINE))
        json_array_append_new(evs, s_event(DEV_EV_ACTIVATED, NULL));
    json_array_append_new(evs, s_event(kind, NULL));
    json_decref(st);
    json_decref(in);
    if ((st = s_append(self, req, id, evs)))
        http_req_reply_json(req, 200, st);
}

static void
s_sensors(struct api_devices *self, http_req_t *req, const char *id, const char *name)
{
    json_t *in, *st;

    if (name) {
        if (apid_method(req, "DELETE") &&
            (st = s_append(self, req, id, json_pack("[o]", s_event(
                DEV_EV_SENSOR_REMOVED, json_pack("{s:s}", "name", name))))))
            http_req_reply_json(req, 200, st);
        return;
    }
    if (!apid_method(req, "POST") || (in = s_body(req)) == NULL)
        return;
    if ((st = s_append(self, req, id, json_pack("[o]", s_event(
             DEV_EV_SENSOR_ADDED, json_pack("{s:o}", "sensor", in))))))
        http_req_reply_json(req, 200, st);
}

/* Is id a device of the caller's tenant that is not decommissioned? Else
 * replies 404, or 409 for a decommissioned one (it exists, and its state
 * and shadow can be read, but no longer changed). */
static bool
s_live(struct api_devices *self, http_req_t *req, const char *id)
{
    json_t *st = dev_store_get(self->store, api_auth_tenant(req), id);
    bool gone;

    if (st == NULL) {
        s_not_found(req, id);
        return false;
    }
    gone = !strcmp(json_string_value(json_object_get(st, "status")), DEV_EV_DECOMMISSIONED);
    json_decref(st);
    if (gone)
        http_req_reply_error(req, 409, "conflict", "device is decommissioned", id);
    return !gone;
}

static void
s_credentials(struct api_devices *self, http_req_t *req, const char *id)
{
    json_t *out;

    if (!apid_method(req, "POST") || !s_live(self, req, id))
        return;
    if (self->mqtt_dir == NULL) {
        http_req_reply_error(req, 501, "not_configured",
                             "apid runs without --mqtt-auth", "credentials");
        return;
    }
    if (s_reserved(self, req, id))
        return;
    out = json_pack("{s:s}", "deviceId", id);
    if (s_issue(self, req, id, out)) {
        json_decref(out);
        http_req_reply_error(req, 500, "internal", "credentials could not be written", id);
        return;
    }
    log_info("devices: %s/%s credentials issued", api_auth_tenant(req), id);
    http_req_reply_json(req, 201, out);
}

/* GET or PATCH {"desired": {...}} the shadow; a desired change publishes
 * the delta to the device. */
static void
s_shadow(struct api_devices *self, http_req_t *req, const char *id)
{
    const char *tenant = api_auth_tenant(req), *why;
    json_t *in, *sh, *desired, *delta;

    if (!strcmp(http_req_method(req), "GET")) {
        if ((sh = dev_shadow_get(self->store, tenant, id)))
            http_req_reply_json(req, 200, sh);
        else
            s_not_found(req, id);
        return;
    }
    if (strcmp(http_req_method(req), "PATCH")) {
        http_req_add_header(req, "Allow", "GET, PATCH");
        http_req_reply_error(req, 405, "method_not_allowed", "use GET or PATCH", id);
        return;
    }
    if ((in = s_body(req)) == NULL)
        return;
    desired = json_object_get(in, "desired");
    if (!json_is_object(desired) || json_object_size(in) != 1) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "want {\"desired\": {...}} (a merge patch)", "desired");
        return;
    }
    if (dev_store_json_depth(desired, DEV_STATE_DEPTH_MAX) > DEV_STATE_DEPTH_MAX) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "the shadow's side may nest at most 64 levels", "desired");
        return;
    }
    /* A decommissioned device's shadow is 409, as its credentials are:
     * dev_shadow_patch refuses it as it does an unknown one, and the
     * answer was 404 for a device GET still shows. */
    if (!s_live(self, req, id)) {
        json_decref(in);
        return;
    }
    if ((sh = dev_shadow_patch(self->store, tenant, id, "desired", desired,
                               clock_now_ns(), &why)) == NULL) {
        json_decref(in);
        if (why)
            http_req_reply_error(req, 413, "payload_too_large", why, "desired");
        else
            s_not_found(req, id);
        return;
    }
    delta = json_object_get(sh, "delta");
    if (self->mqtt && json_object_size(delta)) {
        char prefix[256], topic[S_TOPIC_MAX], *text;
        json_t *msg = json_pack("{s:O, s:O}", "version",
                                json_object_get(json_object_get(sh, "version"), "desired"),
                                "state", delta);
        dev_creds_prefix(tenant, id, prefix, sizeof prefix);
        snprintf(topic, sizeof topic, "%s/shadow/delta", prefix);
        text = json_dumps(msg, JSON_COMPACT | JSON_SORT_KEYS);
        dev_mqtt_publish(self->mqtt, tenant, id, topic, text, strlen(text));
        free(text);
        json_decref(msg);
    }
    json_decref(in);
    http_req_reply_json(req, 200, sh);
}

/* Split "/a/b/c" into up to S_PARTS URL-decoded parts. Returns the count,
 * or -1 when malformed. parts[i] point into buf. */
static int
s_split(const char *rest, char *buf, size_t len, char *parts[S_PARTS])
{
    int n = 0;
    char *save = NULL;

    if (*rest != '/' || strlen(rest) >= len)
        return -1;
    snprintf(buf, len, "%s", rest + 1);
    if (buf[0] == '\0' || buf[strlen(buf) - 1] == '/' || strstr(buf, "//"))
        return -1;
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == S_PARTS || strutil_urldecode(t, false))
            return -1;
        parts[n++] = t;
    }
    return n;
}

/* --- batch jobs ------------------------------------------------------------ */

/* Online devices silent for offline_after become offline, as if their
 * last will had come (the event says why). */
static void
s_offline_silent(struct api_devices *self, int64_t now)
{
    json_t *stale, *e;
    size_t i;
    char why[64];

    if (self->offline_after <= 0 || now < self->next_stale)
        return;
    self->next_stale = now + S_STALE_EVERY_NS;
    if ((stale = dev_store_stale(self->store, now - self->offline_after,
                                 S_STALE_BATCH)) == NULL)
        return;
    snprintf(why, sizeof why, "no heartbeat for %s",
             apid_config(self->apid)->device_offline_after);
    json_array_foreach(stale, i, e) {
        const char *tenant = json_string_value(json_array_get(e, 0));
        const char *id = json_string_value(json_array_get(e, 1));
        const char *err;
        json_t *evs = json_pack("[o]", s_event(DEV_EV_OFFLINE,
                                               json_pack("{s:s}", "reason", why)));
        if (dev_store_append(self->store, tenant, id, evs, now, NULL, &err))
            log_warnx("devices: %s/%s: offline not recorded", tenant, id);
        else
            log_info("devices: %s/%s offline: %s", tenant, id, why);
        json_decref(evs);
    }
    json_decref(stale);
}

static int
s_on_jobs_tick(zloop_t *loop, int timer_id, void *arg)
{
    struct api_devices *self = arg;
    int64_t now = clock_now_ns();
    int n = dev_jobs_expire(self->jobs, now);

    if (n > 0)
        log_info("jobs: %d device(s) timed out", n);
    s_offline_silent(self, now);
    return 0;
}

/* A device's presence: "<prefix>/status" with "online" or "offline" (what
 * a device sets as its MQTT last will, so the broker reports a lost
 * device), and "<prefix>/heartbeat". Only changes reach the log, and a
 * heartbeat at most once per S_HEARTBEAT_NS, of which the log keeps the
 * first and the last of a run (dev_store.c), so repeating itself does not
 * grow a device's history; a device that flaps (online, offline, online,
 * ...) still adds an event per flap. */
static void
s_on_presence(struct api_devices *self, const char *tenant, const char *id,
              const char *what, const void *payload, size_t len)
{
    json_t *st = dev_store_get(self->store, tenant, id), *evs;
    const char *kind = NULL, *status, *why, *last;
    bool online;
    int64_t now = clock_now_ns(), seen;

    if (st == NULL)
        return;
    status = json_string_value(json_object_get(st, "status"));
    online = json_is_true(json_object_get(st, "online"));
    last = json_string_value(json_object_get(st, "lastSeen"));
    if (!strcmp(what, "status")) {
        if (len >= 6 && !memcmp(payload, "online", 6) && !online)
            kind = DEV_EV_ONLINE;
        else if (len >= 7 && !memcmp(payload, "offline", 7) && online)
            kind = DEV_EV_OFFLINE;
    } else if (!strcmp(what, "heartbeat")) {
        if (!online || last == NULL || clock_parse_rfc3339(last, &seen) ||
            now - seen >= self->heartbeat_ns)
            kind = DEV_EV_HEARTBEAT;
    }
    if (kind == NULL || !strcmp(status, DEV_EV_DECOMMISSIONED)) {
        json_decref(st);
        return;
    }
    evs = json_array();
    if (!strcmp(status, DEV_EV_PROVISIONED) && strcmp(kind, DEV_EV_OFFLINE))
        json_array_append_new(evs, s_event(DEV_EV_ACTIVATED, NULL));
    json_array_append_new(evs, s_event(kind, NULL));
    if (dev_store_append(self->store, tenant, id, evs, now, NULL, &why))
        log_warnx("devices: %s/%s: %s not recorded", tenant, id, kind);
    json_decref(evs);
    json_decref(st);
}

/* Progress from a device: "[tenants/T/]devices/ID/jobs/JOB". */
static void
s_on_mqtt(void *arg, const char *topic, const void *payload, size_t len)
{
    struct api_devices *self = arg;
    char buf[S_TOPIC_MAX], *f[7], *save = NULL, *tenant = DEV_CREDS_TENANT_DEFAULT;
    int n = 0, k = 0, rc, progress;
    json_t *in, *job = NULL, *pv;
    const char *status, *why;
    char why_buf[80];

    if (strlen(topic) >= sizeof buf)
        return;
    snprintf(buf, sizeof buf, "%s", topic);
    for (char *t = strtok_r(buf, "/", &save); t && n < 7; t = strtok_r(NULL, "/", &save))
        f[n++] = t;
    /* "tenants/T/..." for presence (5 levels) and progress (6) alike. */
    if (n >= 5 && !strcmp(f[0], "tenants")) {
        tenant = f[1];
        k = 2;
    }
    if (n == k + 3 && !strcmp(f[k], "devices") && dev_state_name_ok(tenant) &&
        dev_state_name_ok(f[k + 1])) {
        s_on_presence(self, tenant, f[k + 1], f[k + 2], payload, len);
        return;
    }
    if (n != k + 4 || strcmp(f[k], "devices") || !dev_state_name_ok(tenant) ||
        !dev_state_name_ok(f[k + 1]))
        return;
    in = json_loadb(payload, len, 0, NULL);
    if (!strcmp(f[k + 2], "shadow") && !strcmp(f[k + 3], "reported")) {
        json_t *st = json_object_get(in, "state") ? json_object_get(in, "state") : in;
        json_t *sh = dev_shadow_patch(self->store, tenant, f[k + 1], "reported", st,
                                      clock_now_ns(), &why);
        if (sh == NULL && why && ratelimit_complain(&self->rl_shadow))
            log_warnx("devices: %s/%s: shadow report refused: %s", tenant, f[k + 1], why);
        json_decref(sh);
        json_decref(in);
        return;
    }
    if (strcmp(f[k + 2], "jobs")) {
        json_decref(in);
        return;
    }
    status = json_string_value(json_object_get(in, "status"));
    pv = json_object_get(in, "progress");
    /* A number, clamped to 0..100; none (or not a number): -1, the row
     * keeps its progress. */
    progress = !json_is_number(pv) ? -1
               : json_number_value(pv) <= 0 ? 0
               : json_number_value(pv) >= 100 ? 100 : (int)json_number_value(pv);
    /* Without a status (or JSON) it changes nothing: ignored, as late
     * reports and those of entries that are over are, and noted. */
    rc = dev_jobs_report(self->jobs, tenant, f[k + 3], f[k + 1], status, progress,
                         json_string_value(json_object_get(in, "message")),
                         clock_now_ns(), &job, why_buf, sizeof why_buf);
    if (rc >= 0)
        self->reports[rc]++;
    if (rc == 0 && ratelimit_complain(&self->rl_jobs))
        log_info("jobs: %s/%s: report on job %.40s ignored: %s (%llu ignored since start)",
                 tenant, f[k + 1], dev_state_name_ok(f[k + 3]) ? f[k + 3] : "?", why_buf,
                 (unsigned long long)self->reports[0]);
    /* A firmware update that succeeded is part of the device's history. */
    if (rc == 1 && job && !strcmp(status, "succeeded") &&
        !strcmp(json_string_value(json_object_get(job, "operation")), "update_firmware")) {
        json_t *ver = json_object_get(json_object_get(job, "params"), "version");
        json_t *evs = json_pack("[o]", s_event(DEV_EV_FIRMWARE, json_pack(
                                    "{s:O, s:s}", "version", ver, "job", f[k + 3])));
        if (json_is_string(ver) &&
            dev_store_append(self->store, tenant, f[k + 1], evs, clock_now_ns(), NULL, &why))
            log_warnx("jobs: %s/%s: firmware event not recorded", tenant, f[k + 1]);
        json_decref(evs);
    }
    json_decref(job);
    json_decref(in);
}

/* Publish a command to a device of tenant. */
static void
s_command(struct api_devices *self, const char *tenant, const char *id,
          const char *operation, json_t *body)
{
    char prefix[256], topic[S_TOPIC_MAX];
    char *text = json_dumps(body, JSON_COMPACT);

    dev_creds_prefix(tenant, id, prefix, sizeof prefix);
    snprintf(topic, sizeof topic, "%s/commands/%s", prefix, operation);
    dev_mqtt_publish(self->mqtt, tenant, id, topic, text, strlen(text));
    free(text);
}

/* The filter of a batch body as a dev_filter (metadata for unknown keys);
 * -1 after a 400. */
static int
s_batch_filter(http_req_t *req, json_t *filter, struct dev_filter *f, json_t *meta)
{
    const char *k;
    json_t *v;

    json_object_foreach(filter, k, v) {
        const char *s = json_string_value(v);
        if (s == NULL) {
            http_req_reply_error(req, 400, "bad_request",
                                 "filter values must be strings", k);
            return -1;
        }
        if (!strcmp(k, "type"))
            f->type = s;
        else if (!strcmp(k, "status"))
            f->status = s;
        else if (!strcmp(k, "tag"))
            f->tag = s;
        else if (!strcmp(k, "group"))
            f->group = s;
        else if (!strcmp(k, "online") && (!strcmp(s, "true") || !strcmp(s, "false")))
            f->online = s;
        else if (strcmp(k, "online") && s_meta_key_ok(strncmp(k, "metadata.", 9) ? k : k + 9))
            json_object_set(meta, strncmp(k, "metadata.", 9) ? k : k + 9, v);
        else {
            /* As GET /api/devices refuses them: "online": "yes" selected
             * the offline devices, and a key with a quote broke the JSON
             * path, so the job went to no device, with 202. */
            http_req_reply_error(req, 400, "bad_request",
                                 "filter keys are type, status, tag, group, online "
                                 "(true or false) and metadata keys of [A-Za-z0-9_-]", k);
            return -1;
        }
    }
    f->metadata = meta;
    return 0;
}

static void
s_batch(struct api_devices *self, http_req_t *req)
{
    const char *tenant = api_auth_tenant(req);
    json_t *in = s_body(req), *filter, *params, *meta, *ids, *page, *d, *cmd, *out;
    const char *op;
    struct dev_filter f = {0};
    int64_t total = 0, now = clock_now_ns(), timeout = apid_config(self->apid)->job_timeout;
    double secs;
    char *job;
    size_t i;

    if (in == NULL)
        return;
    op = json_string_value(json_object_get(in, "operation"));
    filter = json_object_get(in, "filter");
    params = json_object_get(in, "params");
    if (!dev_state_name_ok(op) || (filter && !json_is_object(filter)) ||
        (params && !json_is_object(params))) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "want {\"operation\": name, \"filter\": {}, \"params\": {}}",
                             "body");
        return;
    }
    if (json_is_number(json_object_get(in, "timeoutSeconds"))) {
        secs = json_number_value(json_object_get(in, "timeoutSeconds"));
        if (secs < 0.1 || secs > 7 * 86400) {
            json_decref(in);
            http_req_reply_error(req, 400, "bad_request",
                                 "timeoutSeconds must be in [0.1, 604800]", "timeoutSeconds");
            return;
        }
        timeout = (int64_t)(secs * CLOCK_NS_PER_S);
    }
    if (self->mqtt == NULL || !dev_mqtt_connected(self->mqtt)) {
        json_decref(in);
        if (self->mqtt)
            http_req_add_header(req, "Retry-After", "1");
        http_req_reply_error(req, self->mqtt ? 503 : 501, "unavailable",
                             self->mqtt ? "not connected to the MQTT broker"
                                        : "apid runs without --mqtt-host", "batch");
        return;
    }
    meta = json_object();
    if (s_batch_filter(req, filter ? filter : meta, &f, meta)) {
        json_decref(meta);
        json_decref(in);
        return;
    }
    /* A decommissioned device takes no jobs: it was sent the command, and
     * its entry waited for the deadline, open to a report of the id
     * registered again. */
    if (f.status && !strcmp(f.status, DEV_EV_DECOMMISSIONED)) {
        json_decref(meta);
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "a decommissioned device takes no jobs", "status");
        return;
    }
    ids = json_array();
    for (int64_t off = 0;; off += S_LIST_MAX) {
        page = dev_store_list(self->store, tenant, &f, S_LIST_MAX, off, &total);
        if (page == NULL) { /* not a job for no device */
            json_decref(ids);
            json_decref(meta);
            json_decref(in);
            http_req_reply_error(req, 500, "internal", "registry read failed", "batch");
            return;
        }
        json_array_foreach(page, i, d)
            json_array_append(ids, json_object_get(d, "deviceId"));
        json_decref(page);
        if (off + S_LIST_MAX >= total)
            break;
    }
    /* Without "params" the job and its command carry {} (not the
     * filter's metadata; and json_pack's "O" refuses NULL, which left
     * cmd NULL and crashed apid in json_dumps). */
    params = params ? json_incref(params) : json_object();
    job = dev_jobs_create(self->jobs, tenant, op, params, filter ? filter : meta, ids, now,
                          now + timeout);
    json_decref(meta);
    if (job == NULL) {
        json_decref(params);
        json_decref(ids);
        json_decref(in);
        http_req_reply_error(req, 500, "internal", "job not stored", "batch");
        return;
    }
    cmd = json_pack("{s:s, s:s, s:o}", "jobId", job, "operation", op, "params", params);
    json_array_foreach(ids, i, d)
        s_command(self, tenant, json_string_value(d), op, cmd);
    log_info("jobs: %s %s over %zu device(s) of %s", job, op, json_array_size(ids), tenant);
    json_decref(cmd);
    out = dev_jobs_get(self->jobs, tenant, job, "none");
    json_object_del(out, "devices");
    free(job);
    json_decref(ids);
    json_decref(in);
    http_req_reply_json(req, 202, out);
}

/* /api/jobs, /api/jobs/{id}, /api/jobs/{id}/cancel */
static int
s_jobs_route(struct api_devices *self, http_req_t *req, const char *path)
{
    const char *tenant = api_auth_tenant(req);
    char buf[256], *p[S_PARTS] = {NULL, NULL, NULL};
    json_t *j, *cmd;
    size_t i;
    int n;

    if (*path == '\0') {
        if (apid_method(req, "GET"))
            http_req_reply_json(req, 200, json_pack("{s:o}", "jobs",
                                                    dev_jobs_list(self->jobs, tenant)));
        return 1;
    }
    if ((n = s_split(path, buf, sizeof buf, p)) < 1 || n > 2 ||
        (n == 2 && strcmp(p[1], "cancel"))) {
        http_req_reply_error(req, 404, "not_found", "no such job", path);
        return 1;
    }
    if (n == 1) {
        if (!apid_method(req, "GET"))
            return 1;
        if ((j = dev_jobs_get(self->jobs, tenant, p[0], http_req_arg(req, "state"))))
            http_req_reply_json(req, 200, j);
        else
            http_req_reply_error(req, 404, "not_found", "no such job", p[0]);
        return 1;
    }
    if (!apid_method(req, "POST"))
        return 1;
    if ((j = dev_jobs_cancel(self->jobs, tenant, p[0], clock_now_ns())) == NULL) {
        http_req_reply_error(req, 404, "not_found", "no such job", p[0]);
        return 1;
    }
    cmd = json_pack("{s:s, s:s}", "jobId", p[0], "operation", "cancel");
    json_t *d;
    json_array_foreach(j, i, d)
        if (self->mqtt)
            s_command(self, tenant, json_string_value(d), "cancel", cmd);
    json_decref(cmd);
    json_decref(j);
    http_req_reply_json(req, 200, dev_jobs_get(self->jobs, tenant, p[0], "cancelled"));
    return 1;
}

int
api_devices_route(apid_t *apid, http_req_t *req)
{
    struct api_devices *self = apid_service(apid, "devices");
    const char *path = http_req_path(req), *m = http_req_method(req);
    char buf[512], *p[S_PARTS] = {NULL, NULL, NULL};
    int n;

    if (!strcmp(path, "/api/keys"))
        return api_auth_route(apid, req);
    if (!strncmp(path, "/api/jobs", 9) && (path[9] == '\0' || path[9] == '/'))
        return s_jobs_route(self, req, path + 9);
    if (strncmp(path, S_PREFIX, strlen(S_PREFIX)))
        return 0;
    path += strlen(S_PREFIX);
    if (*path == '\0') {
        if (apid_method(req, "GET"))
            s_list(self, req);
        return 1;
    }
    if (!strcmp(path, "/batch")) {
        if (apid_method(req, "POST"))
            s_batch(self, req);
        return 1;
    }
    if (!strcmp(path, "/register")) {
        if (apid_method(req, "POST"))
            s_register(self, req);
        return 1;
    }
    if ((n = s_split(path, buf, sizeof buf, p)) < 1 || !dev_state_name_ok(p[0])) {
        http_req_reply_error(req, 404, "not_found", "no such device", path);
        return 1;
    }
    if (n == 1) {
        if (!strcmp(m, "GET"))
            s_get(self, req, p[0]);
        else if (!strcmp(m, "PATCH"))
            s_patch(self, req, p[0]);
        else if (!strcmp(m, "DELETE"))
            s_decommission(self, req, p[0]);
        else {
            http_req_add_header(req, "Allow", "GET, PATCH, DELETE");
            http_req_reply_error(req, 405, "method_not_allowed",
                                 "use GET, PATCH or DELETE", path);
        }
    } else if (n == 2 && !strcmp(p[1], "events")) {
        s_events(self, req, p[0]);
    } else if (!strcmp(p[1], "sensors")) {
        s_sensors(self, req, p[0], p[2]);
    } else if (n == 2 && !strcmp(p[1], "shadow")) {
        s_shadow(self, req, p[0]);
    } else if (n == 2 && !strcmp(p[1], "credentials")) {
        s_credentials(self, req, p[0]);
    } else {
        http_req_reply_error(req, 404, "not_found", "no such route", http_req_path(req));
    }
    return 1;
}

void
api_devices_test(bool verbose)
{
    char buf[64], *p[S_PARTS];

    assert(s_split("/s1", buf, sizeof buf, p) == 1);
    TEST_STREQ(p[0], "s1");
    assert(s_split("/s%2D1/sensors/t1", buf, sizeof buf, p) == 3);
    TEST_STREQ(p[0], "s-1");
    TEST_STREQ(p[2], "t1");
    assert(s_split("/a/b/c/d", buf, sizeof buf, p) == -1);
    assert(s_split("/a//b", buf, sizeof buf, p) == -1);
    assert(s_split("/a/", buf, sizeof buf, p) == -1);
    assert(s_split("/", buf, sizeof buf, p) == -1);
    assert(s_split("/%zz", buf, sizeof buf, p) == -1);
    (void)verbose;
    TEST_OK("api_devices");
}
