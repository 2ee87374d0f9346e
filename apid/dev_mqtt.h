/*
 * dev_mqtt: apid's own MQTT connection to the broker (libmosquitto driven
 * from the zloop: a poller on its socket for reads, a timer for writes,
 * keepalive and reconnects), used to send devices their commands and to
 * hear their job progress. Callbacks run on the loop.
 */
#ifndef SP_DEV_MQTT_H
#define SP_DEV_MQTT_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct dev_mqtt dev_mqtt_t;
typedef void(dev_mqtt_fn)(void *arg, const char *topic, const void *payload,
                          size_t len);

/* Connect to host:port (user "" = anonymous) and subscribe to each of
 * subs (NULL-terminated) on every (re)connect. The first connection may
 * fail: it is retried every second. Returns NULL (logged) only when the
 * client cannot be created. mosquitto_lib_init must have run. */
dev_mqtt_t *dev_mqtt_new(zloop_t *loop, const char *host, int port,
                         const char *user, const char *password,
                         const char *const *subs, dev_mqtt_fn *fn, void *arg);
/* Disconnect and free; NULL-safe. */
void dev_mqtt_destroy(dev_mqtt_t **self_p);
/* Queue a QoS 1 publish. 0, or -1 when not connected (logged once). */
int dev_mqtt_publish(dev_mqtt_t *self, const char *topic, const void *payload,
                     size_t len);
/* True while connected. */
bool dev_mqtt_connected(const dev_mqtt_t *self);

/* Selftest. */
void dev_mqtt_test(bool verbose);

#endif
