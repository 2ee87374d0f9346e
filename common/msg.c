/*
 * msg: the batch, its items and series table, and sending and receiving
 * it on ZeroMQ sockets (see msg.h). The msgpack form is msg_codec.c.
 */
#include "common/msg.h"
#include "common/keytab.h"
#include "common/msg_int.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <string.h>

static size_t
s_item_size(int type)
{
    switch (type) {
    case MSG_TYPE_READINGS: return sizeof(struct msg_reading);
    case MSG_TYPE_ANOMALIES: return sizeof(struct msg_anomaly);
    case MSG_TYPE_ALERTS: return sizeof(struct msg_alert);
    case MSG_TYPE_CONFIRM: return sizeof(struct msg_confirm);
    case MSG_TYPE_FORECASTS: return sizeof(struct msg_forecast);
    default: return 1;
    }
}

msg_batch_t *
msg_batch_new(int type)
{
    msg_batch_t *self = xcalloc(1, sizeof *self);
    self->env.type = type;
    self->env.version = MSG_VERSION;
    return self;
}

void
msg_batch_destroy(msg_batch_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->items);
        free((*self_p)->arena);
        keytab_destroy(&(*self_p)->series);
        free((*self_p)->series_off);
        free(*self_p);
        *self_p = NULL;
    }
}

void
msg_batch_reset(msg_batch_t *self)
{
    self->n = 0;
    self->alen = 0;
    if (self->series)
        keytab_reset(self->series);
}

struct msg_envelope *
msg_batch_env(msg_batch_t *self)
{
    return &self->env;
}

size_t
msg_batch_size(const msg_batch_t *self)
{
    return self->n;
}

int
msg_batch_type(const msg_batch_t *self)
{
    return self->env.type;
}

uint32_t
msg__str(msg_batch_t *self, const char *s, size_t len)
{
    uint32_t off = (uint32_t)self->alen;
    if (self->alen + len + 1 > self->acap) {
        self->acap = (self->acap + len + 1) * 2;
        self->arena = xrealloc(self->arena, self->acap);
    }
    if (len > 0) /* msgpack-c hands out NULL for empty strings */
        memcpy(self->arena + self->alen, s, len);
    self->arena[self->alen + len] = '\0';
    self->alen += len + 1;
    return off;
}

void *
msg__item(msg_batch_t *self)
{
    size_t sz = s_item_size(self->env.type);
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->items = xrealloc(self->items, self->cap * sz);
    }
    return (char *)self->items + sz * self->n++;
}

void
msg_batch_reserve(msg_batch_t *self, size_t items, size_t bytes)
{
    size_t sz = s_item_size(self->env.type);
    if (self->n + items > self->cap) {
        self->cap = self->n + items;
        self->items = xrealloc(self->items, self->cap * sz);
    }
    if (self->alen + bytes > self->acap) {
        self->acap = self->alen + bytes;
        self->arena = xrealloc(self->arena, self->acap);
    }
}

static uint32_t
s_series_add(msg_batch_t *self, const char *key, size_t len, uint64_t hash)
{
    bool added;
    uint32_t i;

    assert(self->env.type == MSG_TYPE_READINGS);
    if (self->series == NULL)
        self->series = keytab_new();
    i = keytab_add_hashed(self->series, key, len, hash, &added);
    if (added) {
        if (i == self->capseries) {
            self->capseries = self->capseries ? self->capseries * 2 : 64;
            self->series_off = xrealloc(self->series_off,
                                        self->capseries * sizeof *self->series_off);
        }
        self->series_off[i] = msg__str(self, key, len);
    }
    return i;
}

uint32_t
msg_batch_series_add(msg_batch_t *self, const char *key, size_t len)
{
    return s_series_add(self, key, len, strutil_fnv1a64(key, len));
}

uint32_t
msg_batch_series_add_hashed(msg_batch_t *self, const char *key, size_t len,
                            uint64_t hash)
{
    return s_series_add(self, key, len, hash);
}

void
msg_batch_add_point(msg_batch_t *self, uint32_t series, int64_t ts,
                    double value)
{
    struct msg_reading *r;

    assert(self->env.type == MSG_TYPE_READINGS && self->series &&
           series < keytab_size(self->series));
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->items = xrealloc(self->items, self->cap * sizeof *r);
    }
    r = (struct msg_reading *)self->items + self->n++;
    r->key_off = self->series_off[series];
    r->series = series;
    r->ts = ts;
    r->value = value;
}

void
msg_batch_add_reading(msg_batch_t *self, const char *key, int64_t ts,
                      double value)
{
    msg_batch_add_point(self, msg_batch_series_add(self, key, strlen(key)), ts,
                        value);
}

size_t
msg_batch_nseries(const msg_batch_t *self)
{
    return self->series ? keytab_size(self->series) : 0;
}

const char *
msg_batch_series_key(const msg_batch_t *self, uint32_t i)
{
    return msg_batch_str(self, self->series_off[i]);
}

unsigned
msg_batch_series_lane(const msg_batch_t *self, uint32_t i, unsigned n)
{
    return series_lane_hash(keytab_hash(self->series, i), n);
}

void
msg_batch_split(const msg_batch_t *src, msg_batch_t **dst, unsigned n)
{
    size_t ns = msg_batch_nseries(src);
    /* Per source series: its lane and its index in that lane's batch. */
    uint32_t *lane = xmalloc((ns ? ns : 1) * 2 * sizeof *lane), *idx = lane + ns;

    for (unsigned l = 0; l < n; l++)
        msg_batch_reset(dst[l]);
    for (uint32_t i = 0; i < ns; i++) {
        lane[i] = msg_batch_series_lane(src, i, n);
        idx[i] = UINT32_MAX; /* added to its lane at first use */
    }
    for (size_t k = 0; k < src->n; k++) {
        const struct msg_reading *r = msg_batch_reading(src, k);
        msg_batch_t *d = dst[lane[r->series]];
        if (idx[r->series] == UINT32_MAX)
            idx[r->series] = s_series_add(d, keytab_str(src->series, r->series),
                                          keytab_len(src->series, r->series),
                                          keytab_hash(src->series, r->series));
        msg_batch_add_point(d, idx[r->series], r->ts, r->value);
    }
    free(lane);
}

void
msg_batch_add_anomaly(msg_batch_t *self, const char *key, int64_t ts,
                      double value, double stat, double score,
                      const char *method, bool alarm)
{
    assert(self->env.type == MSG_TYPE_ANOMALIES);
    uint32_t k = msg__str(self, key, strlen(key));
    uint32_t m = msg__str(self, method, strlen(method));
    struct msg_anomaly *a = msg__item(self);
    a->key_off = k;
    a->ts = ts;
    a->value = value;
    a->stat = stat;
    a->score = score;
    a->method_off = m;
    a->alarm = alarm;
}

void
msg_batch_add_alert(msg_batch_t *self, const char *rule, const char *key,
                    const char *state, const char *severity, int64_t ts,
                    double value)
{
    assert(self->env.type == MSG_TYPE_ALERTS);
    uint32_t ro = msg__str(self, rule, strlen(rule));
    uint32_t ko = msg__str(self, key, strlen(key));
    uint32_t so = msg__str(self, state, strlen(state));
    uint32_t vo = msg__str(self, severity, strlen(severity));
    struct msg_alert *a = msg__item(self);
    a->rule_off = ro;
    a->key_off = ko;
    a->state_off = so;
    a->severity_off = vo;
    a->ts = ts;
    a->value = value;
}

void
msg_batch_add_confirm(msg_batch_t *self, const char *producer, uint32_t lane,
                      uint64_t seq)
{
    assert(self->env.type == MSG_TYPE_CONFIRM);
    uint32_t po = msg__str(self, producer, strlen(producer));
    struct msg_confirm *c = msg__item(self);
    c->producer_off = po;
    c->lane = lane;
    c->seq = seq;
}

void
msg_batch_add_forecast(msg_batch_t *self, const char *key, int64_t ts,
                       int64_t step, size_t n, const double *value,
                       const double *lower, const double *upper)
{
    assert(self->env.type == MSG_TYPE_FORECASTS);
    assert(n >= 2 && n <= MSG_FORECAST_POINTS && step > 0);
    uint32_t k = msg__str(self, key, strlen(key));
    struct msg_forecast *f = msg__item(self);
    f->key_off = k;
    f->ts = ts;
    f->step = step;
    f->n = (uint32_t)n;
    memcpy(f->value, value, n * sizeof *value);
    memcpy(f->lower, lower, n * sizeof *lower);
    memcpy(f->upper, upper, n * sizeof *upper);
}

const struct msg_forecast *
msg_batch_forecast(const msg_batch_t *self, size_t i)
{
    if (self->env.type != MSG_TYPE_FORECASTS || i >= self->n)
        return NULL;
    return (const struct msg_forecast *)self->items + i;
}

const struct msg_confirm *
msg_batch_confirm(const msg_batch_t *self, size_t i)
{
    if (self->env.type != MSG_TYPE_CONFIRM || i >= self->n)
        return NULL;
    return (const struct msg_confirm *)self->items + i;
}

const struct msg_reading *
msg_batch_reading(const msg_batch_t *self, size_t i)
{
    if (self->env.type != MSG_TYPE_READINGS || i >= self->n)
        return NULL;
    return (const struct msg_reading *)self->items + i;
}

const struct msg_reading *
msg_batch_readings(const msg_batch_t *self)
{
    return self->env.type == MSG_TYPE_READINGS ? self->items : NULL;
}

const struct msg_anomaly *
msg_batch_anomaly(const msg_batch_t *self, size_t i)
{
    if (self->env.type != MSG_TYPE_ANOMALIES || i >= self->n)
        return NULL;
    return (const struct msg_anomaly *)self->items + i;
}

const struct msg_alert *
msg_batch_alert(const msg_batch_t *self, size_t i)
{
    if (self->env.type != MSG_TYPE_ALERTS || i >= self->n)
        return NULL;
    return (const struct msg_alert *)self->items + i;
}

const char *
msg_batch_str(const msg_batch_t *self, uint32_t off)
{
    return off < self->alen ? self->arena + off : "";
}

const char *
msg_strerror(int err)
{
    switch (err) {
    case MSG_OK: return "ok";
    case MSG_ETRUNC: return "not msgpack or truncated";
    case MSG_EVERSION: return "unknown message version";
    case MSG_ETYPE: return "field of the wrong type";
    case MSG_EFIELD: return "field missing or out of range";
    default: return "unknown error";
    }
}

const char *
msg_topic(int type)
{
    switch (type) {
    case MSG_TYPE_READINGS: return "readings";
    case MSG_TYPE_ANOMALIES: return "anomalies";
    case MSG_TYPE_ALERTS: return "alerts";
    case MSG_TYPE_CONFIRM: return "confirm";
    case MSG_TYPE_FORECASTS: return "forecasts";
    default: return "unknown";
    }
}

static void
s_free_frame(void *data, void *hint)
{
    (void)hint;
    free(data);
}

int
msg_batch_send(const msg_batch_t *self, void *sock, int flags)
{
    char *data;
    size_t len;
    const char *topic = msg_topic(self->env.type);
    void *h = zsock_resolve(sock);
    zmq_msg_t body;
    int rc;

    msg_batch_encode(self, &data, &len);
    rc = zmq_send(h, topic, strlen(topic), ZMQ_SNDMORE | flags);
    if (rc < 0) {
        free(data);
        return -1;
    }
    /* ZeroMQ takes the encoded frame as it is (frees it when sent)
     * instead of copying a batch of a few hundred kilobytes. */
    zmq_msg_init_data(&body, data, len, s_free_frame, NULL);
    rc = zmq_msg_send(&body, h, flags);
    if (rc < 0)
        zmq_msg_close(&body);
    return rc < 0 ? -1 : 0;
}

int
msg_batch_recv(void *sock, msg_batch_t **out)
{
    zmsg_t *m = zmsg_recv(sock);
    int rc;

    *out = NULL;
    if (m == NULL)
        return -1;
    if (zmsg_size(m) != 2) {
        zmsg_destroy(&m);
        return MSG_ETRUNC;
    }
    zframe_t *body = zmsg_last(m);
    rc = msg_batch_decode(zframe_data(body), zframe_size(body), out);
    zmsg_destroy(&m);
    return rc;
}

void
msg_test(bool verbose)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS), *d = NULL;

    for (int i = 0; i < 1000; i++)
        msg_batch_add_reading(b, i % 2 ? "temperature{device=s1}" : "x", i, 1);
    /* One key string per series: two series, 1,000 readings. */
    assert(msg_batch_nseries(b) == 2);
    TEST_STREQ(msg_batch_series_key(b, 1), "temperature{device=s1}");
    assert(msg_batch_reading(b, 3)->series == 1);
    assert(msg_batch_reading(b, 3)->key_off == msg_batch_reading(b, 1)->key_off);
    /* A key added with the caller's hash is the same series, on the
     * same lane, as one hashed here. */
    {
        const char *k = "temperature{device=s1}", *k2 = "humidity{device=s1}";
        assert(msg_batch_series_add_hashed(b, k, strlen(k),
                                           strutil_fnv1a64(k, strlen(k))) == 1);
        assert(msg_batch_series_add_hashed(
                   b, k2, strlen(k2), strutil_fnv1a64(k2, strlen(k2))) == 2);
        assert(msg_batch_series_lane(b, 2, 7) ==
               series_lane(k2, strlen(k2), 7));
        assert(msg_batch_series_add(b, k2, strlen(k2)) == 2);
        msg_batch_add_point(b, 2, 5, 2.5);
        TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 1000)->key_off), k2);
        assert(msg_batch_reading(b, 1000)->ts == 5);
    }
    /* Split by lane: each lane gets its own table, lanes as series_lane. */
    {
        msg_batch_t *lanes[3] = {msg_batch_new(MSG_TYPE_READINGS),
                                 msg_batch_new(MSG_TYPE_READINGS),
                                 msg_batch_new(MSG_TYPE_READINGS)};
        size_t total = 0;
        msg_batch_split(b, lanes, 3);
        for (unsigned l = 0; l < 3; l++) {
            for (size_t i = 0; i < msg_batch_size(lanes[l]); i++) {
                const char *k = msg_batch_str(lanes[l],
                                              msg_batch_reading(lanes[l], i)->key_off);
                assert(series_lane(k, strlen(k), 3) == l);
                assert(msg_batch_series_lane(lanes[l],
                                             msg_batch_reading(lanes[l], i)->series,
                                             3) == l);
            }
            total += msg_batch_size(lanes[l]);
            msg_batch_destroy(&lanes[l]);
        }
        assert(total == 1001);
    }
    msg_batch_destroy(&b);
    assert(b == NULL);

    /* Over a real socket pair. */
    zsock_t *pull = zsock_new_pull("inproc://msg_test");
    zsock_t *push = zsock_new_push("inproc://msg_test");
    b = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_add_reading(b, "a", 1, 2);
    assert(msg_batch_send(b, push, 0) == 0);
    assert(msg_batch_recv(pull, &d) == MSG_OK);
    assert(msg_batch_size(d) == 1);
    msg_batch_destroy(&d);
    msg_batch_destroy(&b);
    zsock_destroy(&push);
    zsock_destroy(&pull);
    (void)verbose;
    TEST_OK("msg");
}
