/*
 * dev_mqtt: libmosquitto on apid's zloop (see dev_mqtt.h).
 */
#include "apid/dev_mqtt.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <mosquitto.h>
#include <string.h>

#define DEV_MQTT_TICK_MS 20
#define DEV_MQTT_RETRY_NS 1000000000LL
#define DEV_MQTT_KEEPALIVE 30

struct dev_mqtt {
    zloop_t *loop;              /* borrowed */
    struct mosquitto *mosq;     /* the client */
    char *host;                 /* broker */
    int port;                   /* broker port */
    char **subs;                /* filters to subscribe on connect */
    dev_mqtt_fn *fn;            /* message callback */
    void *arg;                  /* its argument */
    int fd;                     /* socket polled, -1 when none */
    int timer;                  /* zloop timer id */
    bool connected;             /* CONNACK received and not lost */
    bool tried;                 /* mosquitto_connect ran once */
    int64_t retry_at;           /* monotonic ns of the next reconnect */
    struct ratelimit rl;        /* complaints about the broker */
};

static void
s_on_connect(struct mosquitto *m, void *arg, int rc)
{
    dev_mqtt_t *self = arg;

    if (rc != 0) {
        if (ratelimit_complain(&self->rl))
            log_warnx("mqtt: broker refused apid: %s", mosquitto_connack_string(rc));
        return;
    }
    self->connected = true;
    if (ratelimit_release(&self->rl))
        log_info("mqtt: reconnected to the broker");
    else
        log_info("mqtt: connected to %s:%d", self->host, self->port);
    for (char **s = self->subs; *s; s++)
        mosquitto_subscribe(m, NULL, *s, 1);
}

static void
s_on_disconnect(struct mosquitto *m, void *arg, int rc)
{
    dev_mqtt_t *self = arg;
    self->connected = false;
}

static void
s_on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    dev_mqtt_t *self = arg;
    self->fn(self->arg, msg->topic, msg->payload, (size_t)msg->payloadlen);
}

static int s_on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg);

/* Keep the poller on the client's current socket. */
static void
s_track_fd(dev_mqtt_t *self)
{
    int fd = mosquitto_socket(self->mosq);
    zmq_pollitem_t item = {NULL, fd, ZMQ_POLLIN, 0};

    if (fd == self->fd)
        return;
    if (self->fd != -1) {
        zmq_pollitem_t old = {NULL, self->fd, 0, 0};
        zloop_poller_end(self->loop, &old);
    }
    self->fd = fd;
    if (fd != -1)
        zloop_poller(self->loop, &item, s_on_readable, self);
}

static void
s_lost(dev_mqtt_t *self, int rc)
{
    if (self->connected || ratelimit_complain(&self->rl))
        log_warnx("mqtt: lost the broker: %s", mosquitto_strerror(rc));
    self->connected = false;
    if (self->fd != -1) {
        zmq_pollitem_t old = {NULL, self->fd, 0, 0};
        zloop_poller_end(self->loop, &old);
        self->fd = -1;
    }
    self->retry_at = zclock_usecs() * 1000 + DEV_MQTT_RETRY_NS;
}

static int
s_on_readable(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    dev_mqtt_t *self = arg;
    int rc = mosquitto_loop_read(self->mosq, 1);

    if (rc != MOSQ_ERR_SUCCESS)
        s_lost(self, rc);
    return 0;
}

static void
s_connect(dev_mqtt_t *self)
{
    int rc = self->tried ? mosquitto_reconnect(self->mosq)
                         : mosquitto_connect(self->mosq, self->host, self->port,
                                             DEV_MQTT_KEEPALIVE);

    self->tried = true;

    if (rc != MOSQ_ERR_SUCCESS) {
        if (ratelimit_complain(&self->rl))
            log_warnx("mqtt: cannot connect to %s:%d: %s", self->host, self->port,
                      mosquitto_strerror(rc));
        self->retry_at = zclock_usecs() * 1000 + DEV_MQTT_RETRY_NS;
        return;
    }
    self->retry_at = 0;
    s_track_fd(self);
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    dev_mqtt_t *self = arg;
    int rc = MOSQ_ERR_SUCCESS;

    if (self->retry_at) {
        if (zclock_usecs() * 1000 >= self->retry_at)
            s_connect(self);
        return 0;
    }
    if (mosquitto_want_write(self->mosq))
        rc = mosquitto_loop_write(self->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_loop_misc(self->mosq);
    if (rc != MOSQ_ERR_SUCCESS)
        s_lost(self, rc);
    return 0;
}

dev_mqtt_t *
dev_mqtt_new(zloop_t *loop, const char *host, int port, const char *user,
             const char *password, const char *const *subs, dev_mqtt_fn *fn,
             void *arg)
{
    dev_mqtt_t *self = xcalloc(1, sizeof *self);
    size_t n = 0;
    char id[64];

    self->loop = loop;
    self->host = xstrdup(host);
    self->port = port;
    self->fn = fn;
    self->arg = arg;
    self->fd = -1;
    while (subs[n])
        n++;
    self->subs = xcalloc(n + 1, sizeof *self->subs);
    for (size_t i = 0; i < n; i++)
        self->subs[i] = xstrdup(subs[i]);
    snprintf(id, sizeof id, "apid-%d", (int)getpid());
    if ((self->mosq = mosquitto_new(id, true, self)) == NULL) {
        log_warn("mqtt: cannot create a client");
        dev_mqtt_destroy(&self);
        return NULL;
    }
    mosquitto_int_option(self->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    if (user && *user)
        mosquitto_username_pw_set(self->mosq, user, password);
    mosquitto_connect_callback_set(self->mosq, s_on_connect);
    mosquitto_disconnect_callback_set(self->mosq, s_on_disconnect);
    mosquitto_message_callback_set(self->mosq, s_on_message);
    self->timer = zloop_timer(loop, DEV_MQTT_TICK_MS, 0, s_on_tick, self);
    s_connect(self);
    return self;
}

void
dev_mqtt_destroy(dev_mqtt_t **self_p)
{
    dev_mqtt_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->timer)
        zloop_timer_end(self->loop, self->timer);
    if (self->fd != -1) {
        zmq_pollitem_t old = {NULL, self->fd, 0, 0};
        zloop_poller_end(self->loop, &old);
    }
    if (self->mosq) {
        if (self->connected) {
            mosquitto_disconnect(self->mosq);
            mosquitto_loop_write(self->mosq, 1);
        }
        mosquitto_destroy(self->mosq);
    }
    for (char **s = self->subs; s && *s; s++)
        free(*s);
    free(self->subs);
    free(self->host);
    free(self);
    *self_p = NULL;
}

int
dev_mqtt_publish(dev_mqtt_t *self, const char *topic, const void *payload,
                 size_t len)
{
    int rc;

    if (!self->connected)
        return -1;
    rc = mosquitto_publish(self->mosq, NULL, topic, (int)len, payload, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        if (ratelimit_complain(&self->rl))
            log_warnx("mqtt: publish %s: %s", topic, mosquitto_strerror(rc));
        return -1;
    }
    return 0;
}

bool
dev_mqtt_connected(const dev_mqtt_t *self)
{
    return self && self->connected;
}

void
dev_mqtt_test(bool verbose)
{
    /* No broker here: the client is created, fails to connect to a closed
     * port, stays disconnected, refuses to publish and frees cleanly. The
     * real broker is exercised by tests/integration/06-dev-jobs.py. */
    zloop_t *loop = zloop_new();
    const char *subs[] = {"devices/+/jobs/+", NULL};
    dev_mqtt_t *m;

    mosquitto_lib_init();
    m = dev_mqtt_new(loop, "127.0.0.1", 1, "", "", subs, NULL, NULL);
    assert(m && !dev_mqtt_connected(m));
    assert(dev_mqtt_publish(m, "x", "y", 1) == -1);
    dev_mqtt_destroy(&m);
    dev_mqtt_destroy(&m);
    zloop_destroy(&loop);
    mosquitto_lib_cleanup();
    (void)verbose;
    TEST_OK("dev_mqtt");
}
