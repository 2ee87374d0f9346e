/*
 * ingest_mqtt: libmosquitto subscriber inside the zloop (see
 * ingest_mqtt.h). The socket is a poller of the loop; a short timer runs
 * libmosquitto's writes, keepalives and reconnects.
 */
#include "ingestd/ingest_mqtt.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/topic.h"
#include "common/xalloc.h"

#include <mosquitto.h>
#include <string.h>

#define MQTT_TICK_MS 5
#define MQTT_TOPICS 2

static const char *const s_topics[MQTT_TOPICS] = {
    "devices/+/telemetry", "tenants/+/devices/+/telemetry"};

struct ingest_mqtt {
    struct mosquitto *mosq;      /* the client */
    zloop_t *loop;               /* borrowed loop */
    int timer;                   /* housekeeping timer */
    int fd;                      /* socket registered with the loop, or -1 */
    bool paused;                 /* not reading: backpressure */
    bool connected;              /* CONNACK received and subscribed */
    char *topic[MQTT_TOPICS];    /* subscriptions */
    char *host;                  /* broker */
    bool subscribe;              /* subscribe to telemetry */
    int port;
    ingest_mqtt_fn *fn;          /* message callback */
    void *arg;
    unsigned long long received; /* messages */
    int64_t retry_ms;            /* monotonic ms of the next reconnect try */
    struct ratelimit rl_conn;    /* connection complaints */
};

static void s_watch(ingest_mqtt_t *self);

static int
s_on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    ingest_mqtt_t *self = arg;
    int rc = mosquitto_loop_read(self->mosq, 64);
    if (rc != MOSQ_ERR_SUCCESS)
        s_watch(self); /* the socket went away; the timer reconnects */
    return 0;
}

/* Keep the loop's poller on the client's current socket. */
static void
s_watch(ingest_mqtt_t *self)
{
    int fd = self->paused ? -1 : mosquitto_socket(self->mosq);
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};

    if (fd == self->fd)
        return;
    if (self->fd != -1) {
        item.fd = self->fd;
        zloop_poller_end(self->loop, &item);
    }
    self->fd = fd;
    if (fd != -1) {
        item.fd = fd;
        zloop_poller(self->loop, &item, s_on_readable, self);
    }
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    ingest_mqtt_t *self = arg;
    int rc;

    if (mosquitto_socket(self->mosq) == -1) {
        /* Not connected: try again (libmosquitto backs off itself only
         * inside its own loop, which we do not run). */
        int64_t now = zclock_mono();
        if (now >= self->retry_ms) {
            self->retry_ms = now + 1000;
            rc = mosquitto_reconnect_async(self->mosq);
            if (rc != MOSQ_ERR_SUCCESS && ratelimit_complain(&self->rl_conn))
                log_warnx("mqtt: cannot reach %s:%d: %s", self->host,
                          self->port, mosquitto_strerror(rc));
        }
    } else {
        if (mosquitto_want_write(self->mosq))
            mosquitto_loop_write(self->mosq, 64);
        mosquitto_loop_misc(self->mosq);
    }
    s_watch(self);
    return 0;
}

static void
s_on_connect(struct mosquitto *m, void *arg, int rc)
{
    ingest_mqtt_t *self = arg;

    if (rc != 0) {
        if (ratelimit_complain(&self->rl_conn))
            log_warnx("mqtt: broker %s:%d refused the connection: %s",
                      self->host, self->port, mosquitto_connack_string(rc));
        return;
    }
    if (ratelimit_release(&self->rl_conn))
        log_info("mqtt: connected to %s:%d again", self->host, self->port);
    else if (self->subscribe)
        log_info("mqtt: connected to %s:%d, subscribing to %s and %s",
                 self->host, self->port, self->topic[0], self->topic[1]);
    else
        log_info("mqtt: connected to %s:%d (readings come from the broker's "
                 "spool)", self->host, self->port);
    if (self->subscribe)
        mosquitto_subscribe_multiple(m, NULL, MQTT_TOPICS, self->topic, 1, 0,
                                     NULL);
    else
        self->connected = true;
}

static void
s_on_subscribe(struct mosquitto *m, void *arg, int mid, int n, const int *qos)
{
    ingest_mqtt_t *self = arg;
    for (int i = 0; i < n && i < MQTT_TOPICS; i++)
        if (qos[i] > 2) {
            log_warnx("mqtt: broker refused the subscription to %s",
                      self->topic[i]);
            return;
        }
    self->connected = true;
}

static void
s_on_disconnect(struct mosquitto *m, void *arg, int rc)
{
    ingest_mqtt_t *self = arg;
    self->connected = false;
    if (rc != 0 && ratelimit_complain(&self->rl_conn))
        log_warnx("mqtt: lost the broker %s:%d; reconnecting", self->host,
                  self->port);
}

static void
s_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    ingest_mqtt_t *self = arg;
    struct topic_device d;

    self->received++;
    if (topic_parse(msg->topic, &d) || strcmp(d.rest, "telemetry") != 0)
        return;
    self->fn(d.tenant, d.device, msg->payload, (size_t)msg->payloadlen,
             self->arg);
}

ingest_mqtt_t *
ingest_mqtt_new(zloop_t *loop, const struct ingest_mqtt_conf *c,
                ingest_mqtt_fn *fn, void *arg)
{
    ingest_mqtt_t *self = xcalloc(1, sizeof *self);
    int rc;

    self->loop = loop;
    self->fd = -1;
    self->fn = fn;
    self->arg = arg;
    self->host = xstrdup(c->host);
    self->subscribe = c->subscribe;
    self->port = c->port;
    for (int i = 0; i < MQTT_TOPICS; i++)
        self->topic[i] = *c->group
                             ? xasprintf("$share/%s/%s", c->group, s_topics[i])
                             : xstrdup(s_topics[i]);
    self->mosq = mosquitto_new(c->client_id, !c->subscribe, self);
    if (self->mosq == NULL) {
        log_warnx("mqtt: cannot create a client");
        ingest_mqtt_destroy(&self);
        return NULL;
    }
    mosquitto_int_option(self->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (c->username)
        mosquitto_username_pw_set(self->mosq, c->username, c->password);
    mosquitto_connect_callback_set(self->mosq, s_on_connect);
    mosquitto_disconnect_callback_set(self->mosq, s_on_disconnect);
    mosquitto_subscribe_callback_set(self->mosq, s_on_subscribe);
    mosquitto_message_callback_set(self->mosq, s_on_message);
    rc = mosquitto_connect_async(self->mosq, c->host, c->port, c->keepalive);
    if (rc != MOSQ_ERR_SUCCESS && ratelimit_complain(&self->rl_conn))
        log_warnx("mqtt: cannot reach %s:%d yet: %s (retrying)", c->host,
                  c->port, mosquitto_strerror(rc));
    self->timer = zloop_timer(loop, MQTT_TICK_MS, 0, s_on_tick, self);
    s_watch(self);
    return self;
}

void
ingest_mqtt_destroy(ingest_mqtt_t **self_p)
{
    ingest_mqtt_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->mosq) {
        self->paused = true;
        s_watch(self);
        zloop_timer_end(self->loop, self->timer);
        mosquitto_disconnect(self->mosq);
        mosquitto_loop_write(self->mosq, 1);
        mosquitto_destroy(self->mosq);
    }
    for (int i = 0; i < MQTT_TOPICS; i++)
        free(self->topic[i]);
    free(self->host);
    free(self);
    *self_p = NULL;
}

void
ingest_mqtt_pause(ingest_mqtt_t *self, bool pause)
{
    if (self->paused != pause)
        log_info("mqtt: %s reading from the broker", pause ? "pausing" : "resuming");
    self->paused = pause;
    s_watch(self);
}

void
ingest_mqtt_error(ingest_mqtt_t *self, const char *tenant, const char *device,
                  const char *json)
{
    char prefix[2 * TOPIC_ID_MAX + 24], topic[sizeof prefix + 8];

    snprintf(topic, sizeof topic, "%s/errors",
             topic_prefix(tenant, device, prefix, sizeof prefix));
    mosquitto_publish(self->mosq, NULL, topic, (int)strlen(json), json, 0, false);
}

bool
ingest_mqtt_connected(const ingest_mqtt_t *self)
{
    return self->connected;
}

unsigned long long
ingest_mqtt_received(const ingest_mqtt_t *self)
{
    return self->received;
}
