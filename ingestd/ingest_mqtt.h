/*
 * ingest_mqtt: ingestd's MQTT subscriber (libmosquitto, driven from the
 * zloop). It joins the shared subscriptions $share/<group>/devices/+/telemetry
 * and $share/<group>/tenants/+/devices/+/telemetry (common/topic.h) at QoS
 * 1 with a persistent session (clean_session false, a fixed client
 * id per worker), so several ingestd processes split the load and messages
 * published while ingestd is down are delivered when it returns.
 *
 * What this cannot do: libmosquitto acknowledges a QoS 1 PUBLISH to the
 * broker before on_message runs, so a kill -9 of ingestd between that
 * acknowledgement and the spool's fsync loses those messages, and the
 * broker's own persistence is a periodic snapshot. The broker plugin
 * (deploy/mosquitto) closes that window; see docs/ARCHITECTURE.md.
 */
#ifndef SP_INGEST_MQTT_H
#define SP_INGEST_MQTT_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ingest_mqtt ingest_mqtt_t;

/* Called for each telemetry message with the tenant and device id from
 * the topic ("default" for devices/{id}/telemetry). */
typedef void(ingest_mqtt_fn)(const char *tenant, const char *device,
                             const void *payload, size_t len, void *arg);

struct ingest_mqtt_conf {
    const char *host;      /* broker address */
    int port;              /* broker port */
    const char *client_id; /* fixed per worker, e.g. "ingestd.0" */
    const char *group;     /* shared-subscription group, "" for none */
    const char *username;  /* or NULL */
    const char *password;  /* or NULL (never logged) */
    int keepalive;         /* seconds */
    bool subscribe;        /* false: connect only to publish errors */
};

/* Create and start connecting (asynchronously; reconnects by itself).
 * Returns NULL (logged) on a bad configuration. Call mosquitto_lib_init
 * once before, in main. */
ingest_mqtt_t *ingest_mqtt_new(zloop_t *loop, const struct ingest_mqtt_conf *c,
                               ingest_mqtt_fn *fn, void *arg);
/* Disconnect and free; NULL-safe. */
void ingest_mqtt_destroy(ingest_mqtt_t **self_p);
/* Stop (true) or resume (false) reading from the broker: backpressure. */
void ingest_mqtt_pause(ingest_mqtt_t *self, bool pause);
/* Publish a JSON error for a device on <its prefix>/errors (QoS 0). */
void ingest_mqtt_error(ingest_mqtt_t *self, const char *tenant,
                       const char *device, const char *json);
/* True while connected and subscribed. */
bool ingest_mqtt_connected(const ingest_mqtt_t *self);
/* Messages received so far. */
unsigned long long ingest_mqtt_received(const ingest_mqtt_t *self);

#endif
