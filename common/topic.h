/*
 * topic: the MQTT topics of devices. A device of the default tenant owns
 * "devices/{id}/...", a device of tenant t owns "tenants/{t}/devices/{id}/..."
 * (apid writes the broker's ACLs that way, so with the broker's auth on a
 * topic names the tenant the broker authenticated). Used by ingestd, its
 * broker plugin and apid; depends on nothing but libc.
 */
#ifndef SP_TOPIC_H
#define SP_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

/* Longest tenant or device id taken from a topic, in bytes. */
#define TOPIC_ID_MAX 128

/* A device topic split into its parts. */
struct topic_device {
    char tenant[TOPIC_ID_MAX + 1]; /* "default" for devices/{id}/... */
    char device[TOPIC_ID_MAX + 1]; /* the device id */
    const char *rest;              /* after "{id}/", borrowed from the topic */
};

/* Split a device topic. Returns 0, or -1 when the topic is not
 * [tenants/{t}/]devices/{id}/{rest} with non-empty parts that fit, or
 * names the default tenant explicitly ("tenants/default/..." is not a
 * second name for "devices/..."). Cannot fail otherwise. */
int topic_parse(const char *topic, struct topic_device *out);
/* Is topic a device's telemetry topic ([tenants/{t}/]devices/{id}/telemetry)? */
bool topic_is_telemetry(const char *topic);
/* The prefix a device owns ("devices/{id}" or "tenants/{t}/devices/{id}")
 * into buf (truncated to len). Returns buf. */
char *topic_prefix(const char *tenant, const char *device, char *buf,
                   size_t len);

/* Selftest. */
void topic_test(bool verbose);

#endif
