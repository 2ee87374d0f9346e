/*
 * dev_mqtt: apid's own MQTT connection to the broker (libmosquitto driven
 * from the zloop: a poller on its socket for reads, a timer for writes,
 * keepalive and reconnects), used to send devices their commands and to
 * hear their job progress. Callbacks run on the loop.
 *
 * A publish apid cannot hand to libmosquitto (not connected) goes to the
 * outbox (dev_outbox, in SQLite) when there is one, and so does every
 * publish while the outbox holds messages, so that the order is kept; the
 * tick sends the outbox once connected, at most DEV_MQTT_WINDOW messages
 * unacknowledged by the broker at a time. A QoS 1 message handed to
 * libmosquitto stays in its memory until the broker's PUBACK, and is sent
 * again after a reconnect (libmosquitto 2.0: message__reconnect_reset and
 * message__retry_check), whatever the clean session flag; it is lost if
 * apid exits first.
 */
#ifndef SP_DEV_MQTT_H
#define SP_DEV_MQTT_H

#include "apid/dev_outbox.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dev_mqtt dev_mqtt_t;
typedef void(dev_mqtt_fn)(void *arg, const char *topic, const void *payload,
                          size_t len);

/* Messages of the outbox sent and not yet acknowledged by the broker, at
 * most: the rest wait in SQLite rather than in libmosquitto's memory. */
#define DEV_MQTT_WINDOW 100

/* Connect to host:port (user "" = anonymous) and subscribe to each of
 * subs (NULL-terminated) on every (re)connect. The first connection may
 * fail: it is retried every second. outbox (borrowed, may be NULL: then
 * a publish while disconnected is lost) must outlive the client. Returns
 * NULL (logged) only when the client cannot be created.
 * mosquitto_lib_init must have run. */
dev_mqtt_t *dev_mqtt_new(zloop_t *loop, const char *host, int port,
                         const char *user, const char *password,
                         const char *const *subs, dev_mqtt_fn *fn, void *arg,
                         dev_outbox_t *outbox);
/* Disconnect and free; NULL-safe. */
void dev_mqtt_destroy(dev_mqtt_t **self_p);
/* A QoS 1 publish to device id of tenant: handed to libmosquitto, or
 * queued in the outbox (not connected, or the outbox not yet empty).
 * 0, or -1 when it is lost (logged): not connected and no outbox, the
 * outbox write failed, or libmosquitto refused the message itself. */
int dev_mqtt_publish(dev_mqtt_t *self, const char *tenant, const char *id,
                     const char *topic, const void *payload, size_t len);
/* True while connected. */
bool dev_mqtt_connected(const dev_mqtt_t *self);
/* QoS 1 messages handed to libmosquitto and not yet acknowledged. */
int64_t dev_mqtt_unacked(const dev_mqtt_t *self);

/* Selftest. */
void dev_mqtt_test(bool verbose);

#endif
