/*
 * ingest_parse: bodies to validated readings (see ingest_parse.h).
 */
#include "ingestd/ingest_parse.h"
#include "ingestd/ingest_lp.h"
#include "common/clock.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/reading.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

int
ingest_parse_form(const char *name)
{
    if (strcmp(name, "ingest") == 0)
        return INGEST_FORM_INGEST;
    if (strcmp(name, "record") == 0)
        return INGEST_FORM_RECORD;
    if (strcmp(name, "lines") == 0)
        return INGEST_FORM_LINES;
    if (strcmp(name, "write") == 0)
        return INGEST_FORM_WRITE;
    return -1;
}

static void
s_reject(struct ingest_report *r, size_t index, const char *field,
         const char *reason)
{
    r->rejected++;
    if (r->errors == NULL)
        r->errors = json_array();
    if (json_array_size(r->errors) < INGEST_ERRORS_MAX)
        json_array_append_new(r->errors,
                              json_pack("{s:I, s:s, s:s}", "index",
                                        (json_int_t)index, "field", field,
                                        "reason", reason));
}

static void
s_fatal(struct ingest_report *r, const char *field, const char *reason)
{
    r->fatal_field = field;
    r->fatal_reason = reason;
}

static void
s_lp_reject(size_t index, const char *why, void *arg)
{
    s_reject(arg, index, "line", why);
}

const char *
ingest_parse_stamp(char *key, size_t keylen, const char *tenant)
{
    if (tenant == NULL)
        return NULL;
    switch (series_key_stamp(key, keylen, tenant)) {
    case -1:
        return "series key too long";
    case -2:
        return "tag key \"" SERIES_TENANT_TAG "\" is reserved: the tenant "
               "comes from the credentials";
    default:
        return NULL;
    }
}

/* {"sensor_id": "...", "datapoints": [...]} */
static void
s_ingest(const json_t *j, int64_t now, const char *tenant, msg_batch_t *b,
         struct ingest_report *r)
{
    const json_t *sid = json_object_get(j, "sensor_id");
    const json_t *dps = json_object_get(j, "datapoints"), *dp;
    char key[SERIES_KEY_MAX];
    struct reading_err err;
    const char *why;
    size_t i;

    if (!json_is_string(sid))
        return s_fatal(r, "sensor_id", sid ? "must be a string" : "missing");
    if (reading_key(json_string_value(sid), json_object_get(j, "tags"), key,
                    sizeof key, &err))
        return s_fatal(r, "sensor_id", err.reason);
    if ((why = ingest_parse_stamp(key, sizeof key, tenant)))
        return s_fatal(r, "tags", why);
    if (!json_is_array(dps))
        return s_fatal(r, "datapoints", dps ? "must be an array" : "missing");
    if (json_array_size(dps) == 0)
        return s_fatal(r, "datapoints", "is empty");
    json_array_foreach(dps, i, dp) {
        int64_t ts;
        double v;
        if (!json_is_object(dp)) {
            s_reject(r, i, "datapoints", "a datapoint must be an object");
            continue;
        }
        if (reading_value(json_object_get(dp, "value"), &v, &err) ||
            reading_ts(json_object_get(dp, "timestamp"), now, &ts, &err)) {
            s_reject(r, i, err.field, err.reason);
            continue;
        }
        msg_batch_add_reading(b, key, ts, v);
        r->accepted++;
    }
}

/* {"data": [{name, value, timestamp, tags}]} */
static void
s_record(const json_t *j, int64_t now, const char *tenant, msg_batch_t *b,
         struct ingest_report *r)
{
    const json_t *data = json_object_get(j, "data"), *d;
    char key[SERIES_KEY_MAX];
    struct reading_err err;
    size_t i;

    if (!json_is_array(data))
        return s_fatal(r, "data", data ? "must be an array" : "missing");
    if (json_array_size(data) == 0)
        return s_fatal(r, "data", "is empty");
    json_array_foreach(data, i, d) {
        int64_t ts;
        double v;
        const char *why;
        if (!json_is_object(d)) {
            /* reading_parse cannot name the field it sits in. */
            s_reject(r, i, "data", "a reading must be a JSON object");
            continue;
        }
        if (reading_parse(d, now, key, sizeof key, &ts, &v, &err)) {
            s_reject(r, i, err.field, err.reason);
            continue;
        }
        if ((why = ingest_parse_stamp(key, sizeof key, tenant))) {
            s_reject(r, i, "tags", why);
            continue;
        }
        msg_batch_add_reading(b, key, ts, v);
        r->accepted++;
    }
}

static void
s_json(int form, const char *body, size_t len, int64_t now,
       const char *tenant, msg_batch_t *b, struct ingest_report *r)
{
    json_error_t jerr;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (j == NULL) {
        snprintf(r->fatal_buf, sizeof r->fatal_buf,
                 "malformed JSON at line %d column %d: %.100s", jerr.line,
                 jerr.column, jerr.text);
        return s_fatal(r, "body", r->fatal_buf);
    }
    if (!json_is_object(j))
        s_fatal(r, "body", "must be a JSON object");
    else if (form == INGEST_FORM_INGEST)
        s_ingest(j, now, tenant, b, r);
    else
        s_record(j, now, tenant, b, r);
    json_decref(j);
}

/* JSON lines: each line a reading, or an ingest or record body. */
static void
s_lines(const char *body, size_t len, int64_t now, const char *tenant,
        msg_batch_t *b, struct ingest_report *r)
{
    size_t start = 0, index = 0;
    char key[SERIES_KEY_MAX];

    while (start < len) {
        const char *nl = memchr(body + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - body) : len;
        json_error_t jerr;
        json_t *j;
        if (end > start) {
            j = json_loadb(body + start, end - start, 0, &jerr);
            if (j == NULL) {
                s_reject(r, index, "line", "malformed JSON");
            } else if (json_object_get(j, "datapoints")) {
                s_ingest(j, now, tenant, b, r);
            } else if (json_object_get(j, "data")) {
                s_record(j, now, tenant, b, r);
            } else {
                int64_t ts;
                double v;
                struct reading_err err;
                const char *why;
                if (!json_is_object(j))
                    s_reject(r, index, "line",
                             "a reading must be a JSON object");
                else if (reading_parse(j, now, key, sizeof key, &ts, &v, &err))
                    s_reject(r, index, err.field, err.reason);
                else if ((why = ingest_parse_stamp(key, sizeof key, tenant)))
                    s_reject(r, index, "tags", why);
                else {
                    msg_batch_add_reading(b, key, ts, v);
                    r->accepted++;
                }
            }
            json_decref(j);
            index++;
        }
        start = end + 1;
    }
    r->fatal_field = NULL; /* per-line problems are per-point errors */
}

int64_t
ingest_parse_precision(const char *p)
{
    if (p == NULL || !strcmp(p, "ns") || !strcmp(p, "n"))
        return 1;
    if (!strcmp(p, "u") || !strcmp(p, "us"))
        return 1000;
    if (!strcmp(p, "ms"))
        return CLOCK_NS_PER_MS;
    if (!strcmp(p, "s"))
        return CLOCK_NS_PER_S;
    if (!strcmp(p, "m"))
        return 60 * CLOCK_NS_PER_S;
    if (!strcmp(p, "h"))
        return 3600 * CLOCK_NS_PER_S;
    return -1;
}

void
ingest_parse(int form, const char *body, size_t len, int64_t now,
             int64_t precision_ns, const char *tenant, msg_batch_t *batch,
             struct ingest_report *report)
{
    memset(report, 0, sizeof *report);
    /* Line protocol checks UTF-8 itself, per line (ingest_lp). */
    if (form != INGEST_FORM_WRITE && !strutil_utf8_valid(body, len)) {
        s_fatal(report, "body", "not valid UTF-8");
        return;
    }
    switch (form) {
    case INGEST_FORM_INGEST:
    case INGEST_FORM_RECORD:
        s_json(form, body, len, now, tenant, batch, report);
        break;
    case INGEST_FORM_LINES:
        s_lines(body, len, now, tenant, batch, report);
        break;
    case INGEST_FORM_WRITE:
        ingest_parse_lp(NULL, body, len, now, precision_ns, tenant, batch,
                        report);
        break;
    default:
        s_fatal(report, "route", "unknown ingest form");
    }
}

void
ingest_parse_lp(ingest_lp_cache_t *cache, const char *body, size_t len,
                int64_t now, int64_t precision_ns, const char *tenant,
                msg_batch_t *batch, struct ingest_report *report)
{
    memset(report, 0, sizeof *report);
    /* Keys take about as many bytes as the body; one allocation. */
    msg_batch_reserve(batch, len / 32, len);
    report->accepted += ingest_lp_parse(cache, body, len, now, precision_ns,
                                        tenant, batch, s_lp_reject, report);
}

/* One {"timestamp", "metrics"} object of an MQTT payload. */
static void
s_mqtt_obj(const char *tenant, const char *device, const json_t *o,
           size_t index, int64_t now, msg_batch_t *b, struct ingest_report *r)
{
    struct series_tag tag = {"device", device};
    const json_t *metrics = json_object_get(o, "metrics"), *v;
    struct reading_err err;
    char key[SERIES_KEY_MAX];
    const char *name, *why;
    int64_t ts;
    double d;

    if (!json_is_object(o))
        return s_reject(r, index, "payload", "must be an object");
    if (reading_ts(json_object_get(o, "timestamp"), now, &ts, &err))
        return s_reject(r, index, err.field, err.reason);
    if (!json_is_object(metrics) || json_object_size(metrics) == 0)
        return s_reject(r, index, "metrics",
                        "must be a non-empty object of numbers");
    json_object_foreach((json_t *)metrics, name, v) {
        if ((why = series_name_check(name, strlen(name)))) {
            s_reject(r, index, "metrics", why);
            continue;
        }
        if (reading_value(v, &d, &err)) {
            s_reject(r, index, "metrics", err.reason);
            continue;
        }
        if (series_key_build(name, &tag, 1, key, sizeof key) < 0 ||
            ingest_parse_stamp(key, sizeof key, tenant)) {
            s_reject(r, index, "metrics", "series key too long");
            continue;
        }
        msg_batch_add_reading(b, key, ts, d);
        r->accepted++;
    }
}

/* Why msgpack-c's value o cannot become JSON (mpjson_unpack refused
 * it), or NULL when nothing in it explains that. */
static const char *
s_mp_why(const msgpack_object *o, int depth)
{
    const char *why;

    if (depth > MPJSON_DEPTH_MAX)
        return "msgpack nested too deep";
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return isfinite(o->via.f64) ? NULL
                                    : "a value is not a finite number (NaN or infinity)";
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        return strutil_utf8_valid(o->via.str.ptr, o->via.str.size)
                   ? NULL : "a msgpack string is not valid UTF-8";
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if ((why = s_mp_why(&o->via.array.ptr[i], depth + 1)))
                return why;
        return NULL;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
                return "msgpack map keys must be strings";
            if ((why = s_mp_why(&o->via.map.ptr[i].key, depth + 1)) ||
                (why = s_mp_why(&o->via.map.ptr[i].val, depth + 1)))
                return why;
        }
        return NULL;
    default:
        return NULL;
    }
}

/* A payload that is not JSON and that mpjson_unpack refused: the
 * clearest reason. */
static const char *
s_mp_error(const void *p, size_t len)
{
    msgpack_unpacked up;
    size_t off = 0;
    const char *why = NULL;

    if (len == 0)
        return "empty payload: neither JSON nor msgpack";
    if (msg_sane(p, len)) {
        msgpack_unpacked_init(&up);
        if (msgpack_unpack_next(&up, p, len, &off) == MSGPACK_UNPACK_SUCCESS)
            why = s_mp_why(&up.data, 0);
        msgpack_unpacked_destroy(&up);
    }
    return why ? why : "neither JSON nor msgpack (or msgpack cut short)";
}

void
ingest_parse_mqtt(const char *tenant, const char *device, const void *payload,
                  size_t len, int64_t now, msg_batch_t *b,
                  struct ingest_report *r)
{
    const unsigned char *p = payload;
    json_t *j = NULL, *o;
    json_error_t jerr;
    const char *why;
    size_t i;

    memset(r, 0, sizeof *r);
    if ((why = series_tag_value_check(device)))
        return s_fatal(r, "topic", "device id in the topic is not valid");
    while (len > 0 && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
        len--;
    }
    if (len > 0 && (*p == '{' || *p == '[')) {
        if (!strutil_utf8_valid((const char *)p, len))
            return s_fatal(r, "payload", "JSON payload is not valid UTF-8");
        j = json_loadb((const char *)p, len, JSON_REJECT_DUPLICATES, &jerr);
        if (j == NULL) {
            snprintf(r->fatal_buf, sizeof r->fatal_buf,
                     "malformed JSON at column %d: %.100s", jerr.column, jerr.text);
            return s_fatal(r, "payload", r->fatal_buf);
        }
    } else if ((j = mpjson_unpack(p, len)) == NULL) {
        return s_fatal(r, "payload", s_mp_error(p, len));
    }
    if (json_is_array(j)) {
        if (json_array_size(j) == 0)
            s_fatal(r, "payload", "empty array");
        json_array_foreach(j, i, o) s_mqtt_obj(tenant, device, o, i, now, b, r);
    } else {
        s_mqtt_obj(tenant, device, j, 0, now, b, r);
    }
    json_decref(j);
}

void
ingest_parse_report_clear(struct ingest_report *report)
{
    json_decref(report->errors);
    report->errors = NULL;
}

/* Mark a reply whose errors list stops at INGEST_ERRORS_MAX, whether
 * the status is 200 or 400. */
static void
s_truncated(const struct ingest_report *r, json_t *reply)
{
    if (r->errors && json_array_size(r->errors) < r->rejected)
        json_object_set_new(reply, "errors_truncated", json_true());
}

int
ingest_parse_reply(int form, const struct ingest_report *r, json_t **reply)
{
    json_t *errors = r->errors ? json_incref(r->errors) : json_array();

    if (r->fatal_field) {
        json_decref(errors);
        *reply = rpc_error("invalid_body", r->fatal_reason, r->fatal_field);
        return 400;
    }
    if (r->accepted == 0 && r->rejected == 0) {
        json_decref(errors);
        *reply = rpc_error("invalid_body", "no readings in the body", "body");
        return 400;
    }
    if (r->accepted == 0 || (form == INGEST_FORM_WRITE && r->rejected > 0)) {
        /* Line protocol clients expect InfluxDB's "partial write" 400;
         * the valid lines are kept all the same. */
        *reply = rpc_error("invalid_points",
                           r->accepted ? "partial write: some lines were rejected"
                                       : "no valid reading in the body",
                           "body");
        json_object_set_new(*reply, "accepted", json_integer((json_int_t)r->accepted));
        json_object_set_new(*reply, "rejected", json_integer((json_int_t)r->rejected));
        json_object_set_new(*reply, "errors", errors);
        s_truncated(r, *reply);
        return 400;
    }
    *reply = json_pack("{s:I, s:I, s:o}", "accepted", (json_int_t)r->accepted,
                       "rejected", (json_int_t)r->rejected, "errors", errors);
    s_truncated(r, *reply);
    return form == INGEST_FORM_WRITE ? 204 : 200;
}

/* Parse body as tenant into an emptied batch; assert how many readings
 * were refused and return the key of the first one kept (in b). */
static const char *
s_test_first(int form, const char *body, const char *tenant, size_t rejected,
             msg_batch_t *b)
{
    struct ingest_report r;

    msg_batch_reset(b);
    ingest_parse(form, body, strlen(body), clock_now_ns(), CLOCK_NS_PER_S,
                 tenant, b, &r);
    assert(r.rejected == rejected && r.accepted == msg_batch_size(b) &&
           r.accepted > 0);
    ingest_parse_report_clear(&r);
    return msg_batch_str(b, msg_batch_reading(b, 0)->key_off);
}

void
ingest_parse_test(bool verbose)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    struct ingest_report r;
    json_t *reply;
    int64_t now = clock_now_ns();
    const char *seed = "{\"sensor_id\":\"temp_sensor_001\",\"datapoints\":["
                       "{\"timestamp\":\"2024-01-01T00:00:00Z\",\"value\":23.5},"
                       "{\"timestamp\":\"2024-01-01T00:01:00Z\",\"value\":23.7}]}";

    ingest_parse(INGEST_FORM_INGEST, seed, strlen(seed), now, 1, "default", b, &r);
    assert(r.accepted == 2 && r.rejected == 0);
    assert(ingest_parse_reply(INGEST_FORM_INGEST, &r, &reply) == 200);
    json_decref(reply);
    ingest_parse_report_clear(&r);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 1)->key_off),
               "temp_sensor_001");

    /* Partial success keeps the good point and names the bad one. */
    msg_batch_reset(b);
    const char *part = "{\"data\":[{\"name\":\"api.latency\",\"value\":23.5,"
                       "\"timestamp\":\"2024-01-01T00:00:00Z\"},"
                       "{\"name\":\"api.latency\",\"value\":\"slow\"}]}";
    ingest_parse(INGEST_FORM_RECORD, part, strlen(part), now, 1, "default", b, &r);
    assert(r.accepted == 1 && r.rejected == 1);
    assert(ingest_parse_reply(INGEST_FORM_RECORD, &r, &reply) == 200);
    json_t *e0 = json_array_get(json_object_get(reply, "errors"), 0);
    assert(json_integer_value(json_object_get(e0, "index")) == 1);
    TEST_STREQ(json_string_value(json_object_get(e0, "field")), "value");
    json_decref(reply);
    ingest_parse_report_clear(&r);
    /* More refusals than are listed: said on a 400 as on a 200. */
    {
        char many[4096];
        size_t n = (size_t)snprintf(many, sizeof many, "{\"data\":[");
        for (int i = 0; i < INGEST_ERRORS_MAX + 20; i++)
            n += (size_t)snprintf(many + n, sizeof many - n,
                                  "%s{\"name\":\"x\"}", i ? "," : "");
        snprintf(many + n, sizeof many - n, "]}");
        msg_batch_reset(b);
        ingest_parse(INGEST_FORM_RECORD, many, strlen(many), now, 1, "default",
                     b, &r);
        assert(r.rejected == INGEST_ERRORS_MAX + 20);
        assert(ingest_parse_reply(INGEST_FORM_RECORD, &r, &reply) == 400);
        assert(json_array_size(json_object_get(reply, "errors")) ==
               INGEST_ERRORS_MAX);
        assert(json_is_true(json_object_get(reply, "errors_truncated")));
        json_decref(reply);
        ingest_parse_report_clear(&r);
    }
    /* A reading that is no object is named by the array it sits in. */
    msg_batch_reset(b);
    const char *notobj = "{\"data\":[{\"name\":\"x\",\"value\":1},5]}";
    ingest_parse(INGEST_FORM_RECORD, notobj, strlen(notobj), now, 1,
                 "default", b, &r);
    assert(r.accepted == 1 && r.rejected == 1);
    TEST_STREQ(json_string_value(json_object_get(json_array_get(r.errors, 0),
                                                 "field")), "data");
    ingest_parse_report_clear(&r);

    /* None valid: 400. Malformed: 400 naming the body. */
    msg_batch_reset(b);
    const char *none = "{\"data\":[{\"name\":\"x\"}]}";
    ingest_parse(INGEST_FORM_RECORD, none, strlen(none), now, 1, "default", b, &r);
    assert(ingest_parse_reply(INGEST_FORM_RECORD, &r, &reply) == 400);
    json_decref(reply);
    ingest_parse_report_clear(&r);
    ingest_parse(INGEST_FORM_INGEST, "{\"sensor_id\":", 13, now, 1, "default", b, &r);
    assert(ingest_parse_reply(INGEST_FORM_INGEST, &r, &reply) == 400);
    TEST_STREQ(json_string_value(json_object_get(json_object_get(reply, "error"),
                                                 "where")), "body");
    json_decref(reply);
    ingest_parse_report_clear(&r);
    assert(msg_batch_size(b) == 0);

    /* Line protocol. */
    const char *lp = "sensor,id=dev_00042 value=23.45 1704067200\n"
                     "weather,city=x\\ y temp=1.5,hum=40i 1704067200\n"
                     "bad line\n";
    ingest_parse(INGEST_FORM_WRITE, lp, strlen(lp), now, CLOCK_NS_PER_S, "default", b, &r);
    assert(r.accepted == 3 && r.rejected == 1);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off),
               "sensor{id=dev_00042}");
    assert(msg_batch_reading(b, 0)->ts == 1704067200LL * CLOCK_NS_PER_S);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 1)->key_off),
               "weather.temp{city=x y}");
    assert(msg_batch_reading(b, 2)->value == 40);
    assert(ingest_parse_reply(INGEST_FORM_WRITE, &r, &reply) == 400);
    json_decref(reply);
    ingest_parse_report_clear(&r);
    /* MQTT payloads: the seed form, a batch, msgpack, and bad ones. */
    msg_batch_reset(b);
    const char *mq = "{\"timestamp\":1634567890000,\"metrics\":"
                     "{\"temperature\":22.5,\"humidity\":65.0}}";
    ingest_parse_mqtt("default", "sensor-001", mq, strlen(mq), now, b, &r);
    assert(r.accepted == 2 && r.rejected == 0 && !r.fatal_field);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off),
               "temperature{device=sensor-001}");
    assert(msg_batch_reading(b, 0)->ts == 1634567890000LL * CLOCK_NS_PER_MS);
    ingest_parse_report_clear(&r);
    json_t *arr = json_pack("[{s:I, s:{s:f}}, {s:I, s:{s:s}}]", "timestamp",
                            (json_int_t)1634567890000, "metrics", "t", 1.5,
                            "timestamp", (json_int_t)1634567891000, "metrics",
                            "t", "hot");
    char *mp;
    size_t mplen;
    mpjson_pack(arr, &mp, &mplen);
    msg_batch_reset(b);
    ingest_parse_mqtt("default", "d1", mp, mplen, now, b, &r);
    assert(r.accepted == 1 && r.rejected == 1);
    ingest_parse_report_clear(&r);
    free(mp);
    json_decref(arr);
    ingest_parse_mqtt("default", "d1", "{\"metrics\":", 12, now, b, &r);
    assert(r.fatal_field && !strcmp(r.fatal_field, "payload"));
    ingest_parse_report_clear(&r);
    ingest_parse_mqtt("default", "d{1}", mq, strlen(mq), now, b, &r);
    assert(r.fatal_field && !strcmp(r.fatal_field, "topic"));
    ingest_parse_report_clear(&r);
    ingest_parse_mqtt("default", "d1", "{\"metrics\":{\"t\xff\":1}}", 20, now, b, &r);
    assert(r.fatal_field && strstr(r.fatal_reason, "UTF-8"));
    ingest_parse_report_clear(&r);
    {
        /* msgpack that JSON cannot hold is named for what it holds:
         * {"metrics": {"t": NaN}}, then the same cut short. */
        static const unsigned char nan_mp[] = {
            0x81, 0xa7, 'm', 'e', 't', 'r', 'i', 'c', 's', 0x81, 0xa1, 't',
            0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0};
        ingest_parse_mqtt("default", "d1", nan_mp, sizeof nan_mp, now, b, &r);
        assert(r.fatal_field && strstr(r.fatal_reason, "not a finite number"));
        ingest_parse_report_clear(&r);
        ingest_parse_mqtt("default", "d1", nan_mp, sizeof nan_mp - 3, now, b, &r);
        assert(r.fatal_field && strstr(r.fatal_reason, "cut short"));
        ingest_parse_report_clear(&r);
    }

    /* Tenants: stamped from the credentials, never taken from the data
     * (a reading naming the tag is refused, the rest of the batch kept). */
    msg_batch_reset(b);
    ingest_parse_mqtt("acme", "sensor-001", mq, strlen(mq), now, b, &r);
    assert(r.accepted == 2);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off),
               "temperature{device=sensor-001,tenant=acme}");
    ingest_parse_report_clear(&r);
    const char *lpt = "m,tenant=globex value=1 1704067200\n"
                      "m,zone=a value=2 1704067200\n";
    TEST_STREQ(s_test_first(INGEST_FORM_WRITE, lpt, "acme", 1, b),
               "m{tenant=acme,zone=a}");
    const char *rec = "{\"data\":[{\"series\":\"x{tenant=acme}\",\"value\":1},"
                      "{\"name\":\"x\",\"value\":2}]}";
    TEST_STREQ(s_test_first(INGEST_FORM_RECORD, rec, "default", 1, b), "x");
    /* A trusted source (stdin) keeps the keys it gives. */
    TEST_STREQ(s_test_first(INGEST_FORM_LINES, rec, NULL, 0, b),
               "x{tenant=acme}");
    assert(ingest_parse_precision("s") == CLOCK_NS_PER_S);
    assert(ingest_parse_precision("fortnight") == -1);
    msg_batch_destroy(&b);
    (void)verbose;
    TEST_OK("ingest_parse");
}
