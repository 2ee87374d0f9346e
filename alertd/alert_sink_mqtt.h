/*
 * alert_sink_mqtt: the "mqtt" channel. Publishes the alert JSON at QoS 1
 * on a topic template (default "alerts/{severity}/{rule}"; {rule},
 * {severity}, {state} expand; an alert of a tenant other than the
 * default goes below "tenants/{tenant}/", so the broker's ACLs can give
 * each tenant its own alerts only) on the broker of alertd's mqtt-host and
 * mqtt-port settings, and succeeds when the broker's PUBACK arrives
 * within the timeout. One connection per delivery: alerts are rare, and
 * the notify actor owns no long-lived broker session to babysit.
 * mosquitto_lib_init is called once in main.c.
 */
#ifndef SP_ALERT_SINK_MQTT_H
#define SP_ALERT_SINK_MQTT_H

#include "alertd/alert_channel.h"

#include <stdbool.h>
#include <stddef.h>

/* Topic used when the channel names none. */
#define ALERT_SINK_MQTT_TOPIC "alerts/{severity}/{rule}"

/* The mqtt channel's deliver function (alert_channel_sink_fn). */
int alert_sink_mqtt_deliver(char *const *argv, size_t argc,
                            const struct alert_channel_env *env,
                            const struct alert_note *note, char *err,
                            size_t errlen);

/* Expand a topic template into buf. MQTT wildcards ('+', '#') in the
 * expanded names become '_'. Returns buf, or NULL when it does not fit. */
char *alert_sink_mqtt_topic(const char *tmpl, const struct alert_note *note,
                            char *buf, size_t len);

/* Selftest: asserts on failure, prints " * alert_sink_mqtt: OK". */
void alert_sink_mqtt_test(bool verbose);

#endif
