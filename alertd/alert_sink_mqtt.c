/*
 * alert_sink_mqtt: publish an alert to the MQTT broker (see the header).
 */
#include "alertd/alert_sink_mqtt.h"
#include "common/clock.h"
#include "common/series.h"
#include "common/test.h"

#include <errno.h>
#include <mosquitto.h>
#include <stdio.h>
#include <string.h>

/* Append n bytes of s to buf at *at, replacing wildcards. */
static bool
s_put(char *buf, size_t len, size_t *at, const char *s, size_t n, bool name)
{
    if (*at + n >= len)
        return false;
    for (size_t i = 0; i < n; i++)
        buf[(*at)++] = name && (s[i] == '+' || s[i] == '#') ? '_' : s[i];
    buf[*at] = '\0';
    return true;
}

char *
alert_sink_mqtt_topic(const char *tmpl, const struct alert_note *note,
                      char *buf, size_t len)
{
    size_t at = 0;

    buf[0] = '\0';
    /* Another tenant's alerts live below its own topic tree, as its
     * devices do (common/topic.h), whatever the template says. */
    if (note->tenant && *note->tenant && strcmp(note->tenant, SERIES_TENANT_DEFAULT) &&
        !(s_put(buf, len, &at, "tenants/", 8, false) &&
          s_put(buf, len, &at, note->tenant, strlen(note->tenant), true) &&
          s_put(buf, len, &at, "/", 1, false)))
        return NULL;
    for (const char *p = tmpl; *p;) {
        const char *v = NULL;
        size_t skip = 0;
        if (strncmp(p, "{rule}", 6) == 0)
            v = note->rule, skip = 6;
        else if (strncmp(p, "{severity}", 10) == 0)
            v = note->severity, skip = 10;
        else if (strncmp(p, "{state}", 7) == 0)
            v = note->state, skip = 7;
        if (v) {
            if (!s_put(buf, len, &at, v, strlen(v), true))
                return NULL;
            p += skip;
        } else {
            if (!s_put(buf, len, &at, p, 1, false))
                return NULL;
            p++;
        }
    }
    return buf;
}

static void
s_on_publish(struct mosquitto *m, void *arg, int mid)
{
    *(int *)arg = mid;
}

int
alert_sink_mqtt_deliver(char *const *argv, size_t argc,
                        const struct alert_channel_env *env,
                        const struct alert_note *note, char *err,
                        size_t errlen)
{
    char topic[512];
    int acked = -1, mid = 0, rc;
    struct mosquitto *m;
    int64_t deadline = clock_mono_ns() + env->timeout;

    if (alert_sink_mqtt_topic(argc ? argv[0] : ALERT_SINK_MQTT_TOPIC, note,
                              topic, sizeof topic) == NULL) {
        snprintf(err, errlen, "topic longer than %zu bytes", sizeof topic);
        return -1;
    }
    if ((m = mosquitto_new(NULL, true, &acked)) == NULL) {
        snprintf(err, errlen, "mosquitto_new failed");
        return -1;
    }
    mosquitto_publish_callback_set(m, s_on_publish);
    rc = mosquitto_connect(m, env->mqtt_host ? env->mqtt_host : "127.0.0.1",
                           env->mqtt_port ? env->mqtt_port : 1883, 10);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_publish(m, &mid, topic, (int)strlen(note->body),
                               note->body, 1, false);
    while (rc == MOSQ_ERR_SUCCESS && acked != mid &&
           clock_mono_ns() < deadline)
        rc = mosquitto_loop(m, 50, 1);
    if (rc != MOSQ_ERR_SUCCESS)
        snprintf(err, errlen, "mqtt %s:%d: %s",
                 env->mqtt_host ? env->mqtt_host : "127.0.0.1",
                 env->mqtt_port ? env->mqtt_port : 1883,
                 rc == MOSQ_ERR_ERRNO ? strerror(errno)
                                      : mosquitto_strerror(rc));
    else if (acked != mid)
        snprintf(err, errlen, "mqtt: no PUBACK within the timeout");
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    return rc == MOSQ_ERR_SUCCESS && acked == mid ? 0 : -1;
}

void
alert_sink_mqtt_test(bool verbose)
{
    struct alert_note note = {"{}", "k", "hot+cold", "t", "firing",
                              "critical", NULL};
    struct alert_channel_env env = {NULL, CLOCK_NS_PER_S, "127.0.0.1", 1,
                                    NULL};
    char buf[64], err[256];
    char *argv[] = {"x/{rule}", NULL};

    TEST_STREQ(alert_sink_mqtt_topic(ALERT_SINK_MQTT_TOPIC, &note, buf,
                                     sizeof buf),
               "alerts/critical/hot_cold");
    TEST_STREQ(alert_sink_mqtt_topic("a/{state}/{x}", &note, buf, sizeof buf),
               "a/firing/{x}");
    /* A tenant's alerts go below tenants/{t}/, the default's stay put. */
    note.tenant = "acme";
    TEST_STREQ(alert_sink_mqtt_topic(ALERT_SINK_MQTT_TOPIC, &note, buf, sizeof buf),
               "tenants/acme/alerts/critical/hot_cold");
    TEST_STREQ(alert_sink_mqtt_topic("tenants/globex/x", &note, buf, sizeof buf),
               "tenants/acme/tenants/globex/x");
    note.tenant = "default";
    TEST_STREQ(alert_sink_mqtt_topic("x", &note, buf, sizeof buf), "x");
    note.tenant = NULL;
    assert(alert_sink_mqtt_topic("{rule}{rule}{rule}{rule}{rule}{rule}{rule}"
                                 "{rule}{rule}",
                                 &note, buf, sizeof buf) == NULL);
    /* Nothing listens on port 1: the delivery fails with a reason. */
    mosquitto_lib_init();
    assert(alert_sink_mqtt_deliver(argv, 1, &env, &note, err, sizeof err) ==
           -1);
    assert(strstr(err, "mqtt 127.0.0.1:1"));
    mosquitto_lib_cleanup();
    if (verbose)
        printf("alert_sink_mqtt: %s\n", err);
    TEST_OK("alert_sink_mqtt");
}
