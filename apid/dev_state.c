/*
 * dev_state: a device's current state as a fold over its events (see
 * dev_state.h).
 */
#include "apid/dev_state.h"
#include "common/clock.h"
#include "common/test.h"

#include <string.h>

bool
dev_state_name_ok(const char *s)
{
    size_t n = 0;

    if (s == NULL)
        return false;
    for (; s[n]; n++) {
        char c = s[n];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return n > 0 && n <= DEV_NAME_MAX && strcmp(s, ".") && strcmp(s, "..");
}

/* An array of distinct valid names, sorted, or NULL when v is not one. */
static json_t *
s_names(json_t *v)
{
    json_t *out, *e;
    size_t i;

    if (!json_is_array(v))
        return NULL;
    out = json_array();
    json_array_foreach(v, i, e) {
        const char *s = json_string_value(e);
        size_t j;
        if (!dev_state_name_ok(s)) {
            json_decref(out);
            return NULL;
        }
        /* Insertion into a sorted array keeps the state canonical. */
        for (j = 0; j < json_array_size(out); j++) {
            int c = strcmp(s, json_string_value(json_array_get(out, j)));
            if (c <= 0)
                break;
        }
        if (j < json_array_size(out) &&
            !strcmp(s, json_string_value(json_array_get(out, j))))
            continue;
        json_array_insert_new(out, j, json_string(s));
    }
    return out;
}

/* A checked copy of a sensor description, or NULL. */
static json_t *
s_sensor(json_t *v)
{
    static const char *strs[] = {"type", "unit", "calibrationDate"};
    static const char *nums[] = {"min", "max"};
    const char *name = json_string_value(json_object_get(v, "name"));
    json_t *out;

    if (!json_is_object(v) || !dev_state_name_ok(name))
        return NULL;
    out = json_pack("{s:s}", "name", name);
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        json_t *f = json_object_get(v, strs[i]);
        if (f && !json_is_string(f))
            goto bad;
        if (f)
            json_object_set(out, strs[i], f);
    }
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        json_t *f = json_object_get(v, nums[i]);
        if (f && !json_is_number(f))
            goto bad;
        if (f)
            json_object_set_new(out, nums[i], json_real(json_number_value(f)));
    }
    if (json_object_get(out, "min") && json_object_get(out, "max") &&
        json_real_value(json_object_get(out, "min")) >
            json_real_value(json_object_get(out, "max")))
        goto bad;
    return out;
bad:
    json_decref(out);
    return NULL;
}

/* Replace or append the sensor with the same name. */
static void
s_sensor_put(json_t *sensors, json_t *sensor)
{
    const char *name = json_string_value(json_object_get(sensor, "name"));
    size_t i;
    json_t *e;

    json_array_foreach(sensors, i, e) {
        if (!strcmp(json_string_value(json_object_get(e, "name")), name)) {
            json_array_set_new(sensors, i, sensor);
            return;
        }
    }
    json_array_append_new(sensors, sensor);
}

/* RFC 7386 merge patch of flat metadata: null deletes a key. */
static int
s_metadata_patch(json_t *meta, json_t *patch)
{
    const char *k;
    json_t *v;

    if (!json_is_object(patch))
        return -1;
    json_object_foreach(patch, k, v) {
        if (json_is_null(v))
            json_object_del(meta, k);
        else
            json_object_set(meta, k, v);
    }
    return 0;
}

static json_t *
s_provision(json_t *data, int64_t ts, const char **why)
{
    const char *id = json_string_value(json_object_get(data, "deviceId"));
    const char *type = json_string_value(json_object_get(data, "type"));
    json_t *meta = json_object_get(data, "metadata");
    json_t *st, *tags, *groups, *sensors, *e;
    char t[40];
    size_t i;

    if (!dev_state_name_ok(id)) {
        *why = "deviceId must be 1..64 characters of [A-Za-z0-9_.-]";
        return NULL;
    }
    if (type == NULL || *type == '\0') {
        *why = "type must be a non-empty string";
        return NULL;
    }
    if (meta && !json_is_object(meta)) {
        *why = "metadata must be an object";
        return NULL;
    }
    e = json_array();
    tags = s_names(json_object_get(data, "tags") ? json_object_get(data, "tags") : e);
    groups = s_names(json_object_get(data, "groups") ? json_object_get(data, "groups") : e);
    json_decref(e);
    sensors = json_array();
    st = json_pack("{s:s, s:s, s:s, s:b, s:o, s:o, s:o, s:o, s:n, s:n, s:s, s:s, s:i}",
                   "deviceId", id, "type", type, "status", DEV_EV_PROVISIONED,
                   "online", 0, "metadata", meta ? json_deep_copy(meta) : json_object(),
                   "tags", tags ? tags : json_array(),
                   "groups", groups ? groups : json_array(), "sensors", sensors,
                   "firmware", "lastSeen", "createdAt",
                   clock_format(ts, t, sizeof t), "updatedAt", t, "version", 0);
    if (tags == NULL || groups == NULL) {
        *why = "tags and groups must be arrays of names ([A-Za-z0-9_.-])";
        json_decref(st);
        return NULL;
    }
    e = json_object_get(data, "sensors");
    if (e && !json_is_array(e)) {
        *why = "sensors must be an array";
        json_decref(st);
        return NULL;
    }
    json_array_foreach(e, i, meta) {
        json_t *s = s_sensor(meta);
        if (s == NULL) {
            *why = "a sensor needs a name and typed fields (type, unit, min <= max, calibrationDate)";
            json_decref(st);
            return NULL;
        }
        s_sensor_put(sensors, s);
    }
    return st;
}

/* Apply a non-initial event to st (a private copy). 0 or -1. */
static int
s_apply(json_t *st, const char *kind, json_t *data, int64_t ts, const char **why)
{
    char t[40];

    if (!strcmp(kind, DEV_EV_ACTIVATED)) {
        json_object_set_new(st, "status", json_string("active"));
    } else if (!strcmp(kind, DEV_EV_UPDATED)) {
        json_t *v;
        if ((v = json_object_get(data, "type"))) {
            if (!json_is_string(v) || json_string_length(v) == 0)
                return *why = "type must be a non-empty string", -1;
            json_object_set(st, "type", v);
        }
        if ((v = json_object_get(data, "metadata")) &&
            s_metadata_patch(json_object_get(st, "metadata"), v))
            return *why = "metadata must be an object", -1;
        for (int i = 0; i < 2; i++) {
            const char *f = i ? "groups" : "tags";
            json_t *n;
            if ((v = json_object_get(data, f)) == NULL)
                continue;
            if ((n = s_names(v)) == NULL)
                return *why = "tags and groups must be arrays of names", -1;
            json_object_set_new(st, f, n);
        }
    } else if (!strcmp(kind, DEV_EV_LOCATION)) {
        json_t *loc = json_object_get(data, "location");
        if (!json_is_string(loc))
            return *why = "location must be a string", -1;
        json_object_set(json_object_get(st, "metadata"), "location", loc);
    } else if (!strcmp(kind, DEV_EV_SENSOR_ADDED)) {
        json_t *s = s_sensor(json_object_get(data, "sensor"));
        if (s == NULL)
            return *why = "a sensor needs a name and typed fields", -1;
        s_sensor_put(json_object_get(st, "sensors"), s);
    } else if (!strcmp(kind, DEV_EV_SENSOR_REMOVED)) {
        const char *name = json_string_value(json_object_get(data, "name"));
        json_t *sensors = json_object_get(st, "sensors"), *e;
        size_t i, n = json_array_size(sensors);
        json_array_foreach(sensors, i, e)
            if (name && !strcmp(json_string_value(json_object_get(e, "name")), name))
                break;
        if (i == n)
            return *why = "no such sensor", -1;
        json_array_remove(sensors, i);
    } else if (!strcmp(kind, DEV_EV_FIRMWARE)) {
        json_t *v = json_object_get(data, "version");
        if (!json_is_string(v) || json_string_length(v) == 0)
            return *why = "version must be a non-empty string", -1;
        json_object_set(st, "firmware", v);
    } else if (!strcmp(kind, DEV_EV_HEARTBEAT) || !strcmp(kind, DEV_EV_ONLINE)) {
        json_object_set_new(st, "online", json_true());
        json_object_set_new(st, "lastSeen",
                            json_string(clock_format(ts, t, sizeof t)));
    } else if (!strcmp(kind, DEV_EV_OFFLINE)) {
        json_object_set_new(st, "online", json_false());
    } else if (!strcmp(kind, DEV_EV_DECOMMISSIONED)) {
        json_object_set_new(st, "status", json_string(DEV_EV_DECOMMISSIONED));
        json_object_set_new(st, "online", json_false());
    } else {
        return *why = "unknown event type", -1;
    }
    return 0;
}

int
dev_state_apply(json_t **state_p, const char *kind, json_t *data, int64_t ts,
                const char **why)
{
    json_t *st;
    char t[40];
    const char *status;

    if (data == NULL || !json_is_object(data))
        return *why = "event data must be an object", -1;
    if (*state_p == NULL) {
        if (strcmp(kind, DEV_EV_PROVISIONED))
            return *why = "the first event must be provisioned", -1;
        if ((st = s_provision(data, ts, why)) == NULL)
            return -1;
    } else if (!strcmp(kind, DEV_EV_PROVISIONED)) {
        status = json_string_value(json_object_get(*state_p, "status"));
        if (strcmp(status, DEV_EV_DECOMMISSIONED))
            return *why = "device already provisioned", -1;
        /* Registered again after decommissioning: a new device under the
         * old id, whose log and versions go on. */
        if ((st = s_provision(data, ts, why)) == NULL)
            return -1;
        json_object_set(st, "version", json_object_get(*state_p, "version"));
    } else {
        status = json_string_value(json_object_get(*state_p, "status"));
        if (!strcmp(status, DEV_EV_DECOMMISSIONED))
            return *why = "device is decommissioned", -1;
        st = json_deep_copy(*state_p);
        if (s_apply(st, kind, data, ts, why)) {
            json_decref(st);
            return -1;
        }
    }
    json_object_set_new(st, "updatedAt", json_string(clock_format(ts, t, sizeof t)));
    /* A heartbeat is no new version of the device: the log keeps only the
     * first and the last of a run of them (dev_store.c), and the replay
     * must count as the live fold did. */
    if (strcmp(kind, DEV_EV_HEARTBEAT))
        json_object_set_new(st, "version",
                            json_integer(json_integer_value(json_object_get(st, "version")) + 1));
    json_decref(*state_p);
    *state_p = st;
    return 0;
}

void
dev_state_test(bool verbose)
{
    json_t *st = NULL, *d;
    const char *why = NULL;
    int64_t t0 = 1704067200LL * CLOCK_NS_PER_S;

    assert(dev_state_name_ok("sensor-001"));
    assert(!dev_state_name_ok("a/b") && !dev_state_name_ok("") &&
           !dev_state_name_ok("..") && !dev_state_name_ok("a+b") &&
           !dev_state_name_ok(NULL));

    /* The first event must provision, with the seed body. */
    d = json_loads("{\"deviceId\":\"sensor-001\",\"type\":\"temperature\","
                   "\"metadata\":{\"location\":\"warehouse-a\",\"model\":\"DHT22\"},"
                   "\"tags\":[\"b\",\"a\",\"b\"]}", 0, NULL);
    assert(dev_state_apply(&st, DEV_EV_ACTIVATED, d, t0, &why) == -1 && st == NULL);
    assert(dev_state_apply(&st, DEV_EV_PROVISIONED, d, t0, &why) == 0);
    TEST_STREQ(json_string_value(json_object_get(st, "status")), "provisioned");
    TEST_STREQ(json_string_value(json_object_get(st, "createdAt")),
               "2024-01-01T00:00:00.000Z");
    assert(json_array_size(json_object_get(st, "tags")) == 2); /* sorted, unique */
    TEST_STREQ(json_string_value(json_array_get(json_object_get(st, "tags"), 0)), "a");
    assert(dev_state_apply(&st, DEV_EV_PROVISIONED, d, t0, &why) == -1);
    json_decref(d);

    d = json_pack("{s:s}", "location", "warehouse-b");
    assert(dev_state_apply(&st, DEV_EV_LOCATION, d, t0 + 1, &why) == 0);
    json_decref(d);
    TEST_STREQ(json_string_value(json_object_get(json_object_get(st, "metadata"),
                                                 "location")), "warehouse-b");
    d = json_loads("{\"sensor\":{\"name\":\"t1\",\"type\":\"temperature\","
                   "\"unit\":\"C\",\"min\":-40,\"max\":80}}", 0, NULL);
    assert(dev_state_apply(&st, DEV_EV_SENSOR_ADDED, d, t0 + 2, &why) == 0);
    json_decref(d);
    d = json_loads("{\"sensor\":{\"name\":\"t2\",\"min\":5,\"max\":1}}", 0, NULL);
    assert(dev_state_apply(&st, DEV_EV_SENSOR_ADDED, d, t0 + 2, &why) == -1);
    json_decref(d);
    assert(json_array_size(json_object_get(st, "sensors")) == 1);

    d = json_object();
    assert(dev_state_apply(&st, DEV_EV_HEARTBEAT, d, t0 + CLOCK_NS_PER_S, &why) == 0);
    assert(json_is_true(json_object_get(st, "online")));
    TEST_STREQ(json_string_value(json_object_get(st, "lastSeen")),
               "2024-01-01T00:00:01.000Z");
    assert(dev_state_apply(&st, "reboot", d, t0, &why) == -1);
    assert(dev_state_apply(&st, DEV_EV_DECOMMISSIONED, d, t0 + 5, &why) == 0);
    assert(dev_state_apply(&st, DEV_EV_ACTIVATED, d, t0 + 6, &why) == -1);
    TEST_STREQ(why, "device is decommissioned");
    json_decref(d);
    /* provisioned, location, sensor, decommissioned: a heartbeat is no
     * version. */
    assert(json_integer_value(json_object_get(st, "version")) == 4);
    /* Registered again after decommissioning: a fresh state whose version
     * goes on (it was refused as "already provisioned"). */
    d = json_pack("{s:s, s:s}", "deviceId", "sensor-001", "type", "humidity");
    assert(dev_state_apply(&st, DEV_EV_PROVISIONED, d, t0 + 7, &why) == 0);
    assert(dev_state_apply(&st, DEV_EV_PROVISIONED, d, t0 + 8, &why) == -1);
    json_decref(d);
    TEST_STREQ(json_string_value(json_object_get(st, "status")), "provisioned");
    TEST_STREQ(json_string_value(json_object_get(st, "type")), "humidity");
    assert(json_array_size(json_object_get(st, "sensors")) == 0);
    assert(json_is_null(json_object_get(st, "lastSeen")));
    TEST_STREQ(json_string_value(json_object_get(st, "createdAt")),
               "2024-01-01T00:00:00.000Z" /* t0 + 7 ns */);
    assert(json_integer_value(json_object_get(st, "version")) == 5);
    if (verbose) {
        char *s = json_dumps(st, JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
    }
    json_decref(st);
    TEST_OK("dev_state");
}
