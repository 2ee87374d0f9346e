/*
 * dev_mqtt: libmosquitto on apid's zloop (see dev_mqtt.h).
 */
#include "apid/dev_mqtt.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <mosquitto.h>
#include <string.h>

#define DEV_MQTT_TICK_MS 20
#define DEV_MQTT_RETRY_NS 1000000000LL
#define DEV_MQTT_KEEPALIVE 30
#define DEV_MQTT_EXPIRE_NS 1000000000LL /* how often the outbox is pruned */

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
    struct ratelimit rl_lost;   /* complaints about publishes lost */
    dev_outbox_t *outbox;       /* borrowed; NULL = none */
    int64_t unacked;            /* QoS 1 handed over, PUBACK not yet heard */
    int64_t next_expire;        /* monotonic ns of the next outbox pruning */
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
s_on_publish(struct mosquitto *m, void *arg, int mid)
{
    dev_mqtt_t *self = arg;
    if (self->unacked > 0)
        self->unacked--;
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

/* Hand a message to libmosquitto. libmosquitto 2.0 puts a QoS 1 message
 * in its queue before it tries to write it (mosquitto_publish_v5, then
 * message__queue), so the connection's errors (no socket, reset, another
 * errno) leave it held, to be sent again after the reconnect, which those
 * errors start here: it is handed over all the same (writing it to the
 * outbox too would send it twice). Any other error refuses the message
 * itself (size, UTF-8, memory): it would be refused again. */
static enum dev_outbox_send
s_hand(dev_mqtt_t *self, const char *topic, const void *payload, size_t len, int qos)
{
    int rc = mosquitto_publish(self->mosq, NULL, topic, (int)len, payload, qos, false);

    switch (rc) {
    case MOSQ_ERR_SUCCESS:
        self->unacked++;
        return DEV_OUTBOX_SENT;
    case MOSQ_ERR_NO_CONN:
    case MOSQ_ERR_CONN_LOST:
    case MOSQ_ERR_ERRNO:
        self->unacked++;
        s_lost(self, rc);
        return DEV_OUTBOX_SENT;
    default:
        if (ratelimit_complain(&self->rl_lost))
            log_warnx("mqtt: publish %s: %s: message dropped", topic, mosquitto_strerror(rc));
        return DEV_OUTBOX_REFUSED;
    }
}

/* dev_outbox_flush's send function: the flush stops when not connected. */
static enum dev_outbox_send
s_send(void *arg, const char *topic, const void *payload, size_t len, int qos)
{
    dev_mqtt_t *self = arg;
    return self->connected ? s_hand(self, topic, payload, len, qos) : DEV_OUTBOX_RETRY;
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    dev_mqtt_t *self = arg;
    int rc = MOSQ_ERR_SUCCESS;
    int64_t mono = zclock_usecs() * 1000;

    if (self->outbox && mono >= self->next_expire) {
        dev_outbox_expire(self->outbox, clock_now_ns());
        self->next_expire = mono + DEV_MQTT_EXPIRE_NS;
    }
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
    /* In the ticks after the CONNACK's, so that libmosquitto's own resends
     * of what it held (older) go first. */
    else if (self->connected && dev_outbox_size(self->outbox) > 0 &&
             self->unacked < DEV_MQTT_WINDOW)
        dev_outbox_flush(self->outbox, clock_now_ns(), DEV_MQTT_WINDOW - self->unacked,
                         s_send, self);
    return 0;
}

dev_mqtt_t *
dev_mqtt_new(zloop_t *loop, const char *host, int port, const char *user,
             const char *password, const char *const *subs, dev_mqtt_fn *fn,
             void *arg, dev_outbox_t *outbox)
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
    self->outbox = outbox;
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
    mosquitto_publish_callback_set(self->mosq, s_on_publish);
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
dev_mqtt_publish(dev_mqtt_t *self, const char *tenant, const char *id,
                 const char *topic, const void *payload, size_t len)
{
    /* Behind what waits, in order: the tick sends it after them. */
    if (self->outbox && (!self->connected || dev_outbox_size(self->outbox) > 0))
        return dev_outbox_push(self->outbox, tenant, id, topic, payload, len, 1,
                               clock_now_ns());
    if (!self->connected) {
        if (ratelimit_complain(&self->rl_lost))
            log_warnx("mqtt: not connected: %s for %s/%s lost (no outbox)", topic,
                      tenant, id);
        return -1;
    }
    return s_hand(self, topic, payload, len, 1) == DEV_OUTBOX_SENT ? 0 : -1;
}

bool
dev_mqtt_connected(const dev_mqtt_t *self)
{
    return self && self->connected;
}

int64_t
dev_mqtt_unacked(const dev_mqtt_t *self)
{
    return self ? self->unacked : 0;
}

void
dev_mqtt_test(bool verbose)
{
    /* No broker here: the client is created, fails to connect to a closed
     * port, stays disconnected, refuses to publish (without an outbox) or
     * queues in the outbox, and frees cleanly. The real broker is
     * exercised by tests/integration/06-dev-jobs.py and 06-dev-outbox.py. */
    zloop_t *loop = zloop_new();
    const char *subs[] = {"devices/+/jobs/+", NULL};
    dev_store_t *store = dev_store_new(":memory:");
    dev_outbox_t *o = dev_outbox_new(store, 10, 60 * CLOCK_NS_PER_S);
    dev_mqtt_t *m;

    mosquitto_lib_init();
    m = dev_mqtt_new(loop, "127.0.0.1", 1, "", "", subs, NULL, NULL, NULL);
    assert(m && !dev_mqtt_connected(m));
    assert(dev_mqtt_publish(m, "t", "d", "x", "y", 1) == -1);
    dev_mqtt_destroy(&m);
    dev_mqtt_destroy(&m);
    m = dev_mqtt_new(loop, "127.0.0.1", 1, "", "", subs, NULL, NULL, o);
    assert(m && !dev_mqtt_connected(m));
    assert(dev_mqtt_publish(m, "t", "d", "x", "y", 1) == 0);
    assert(dev_mqtt_publish(m, "t", "d", "x", "z", 1) == 0);
    assert(dev_outbox_size(o) == 2 && dev_mqtt_unacked(m) == 0);
    dev_mqtt_destroy(&m);
    dev_outbox_destroy(&o);
    dev_store_destroy(&store);
    zloop_destroy(&loop);
    mosquitto_lib_cleanup();
    (void)verbose;
    TEST_OK("dev_mqtt");
}
