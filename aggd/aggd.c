/*
 * aggd: the store daemon's server object (see aggd.h).
 *
 * One zloop: the PULL reader applies batches, the ROUTER reader answers
 * queries, a retry timer pushes a batch that anomalyd could not take yet.
 * While a batch is pending downstream the PULL reader is off, so the queue
 * from ingestd fills and backpressure reaches the client (DESIGN.md).
 */
#include "aggd/aggd.h"
#include "aggd/agg_query.h"
#include "aggd/agg_store.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/reading.h"
#include "common/rpc.h"
#include "common/mpjson.h"
#include "common/series.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>

#define AGGD_RETRY_MS 5

struct aggd {
    const struct aggd_conf *conf; /* borrowed configuration */
    zloop_t *loop;                /* the one event loop */
    zsock_t *pull;                /* readings in from ingestd */
    zsock_t *router;              /* queries from apid */
    zsock_t *pub;                 /* readings out to live views */
    zsock_t *push;                /* readings out to anomalyd, or NULL */
    agg_store_t *store;           /* the points */
    msg_batch_t *pending;         /* batch anomalyd has not taken yet */
    bool reading;                 /* PULL reader registered */
    char producer[64];            /* "aggd.<lane>" */
    uint64_t seq;                 /* batches sent downstream */
    uint64_t batches_in;          /* batches applied */
    uint64_t readings_in;         /* readings applied */
    uint64_t duplicates;          /* readings that overwrote a point */
    uint64_t bad_batches;         /* batches that failed to decode */
    uint64_t queries;             /* queries answered */
    uint64_t stalls;              /* times anomalyd's queue was full */
    struct ratelimit rl_bad;      /* complaints about bad batches */
    struct ratelimit rl_down;     /* complaints about a full downstream */
};

static int s_on_pull(zloop_t *loop, zsock_t *sock, void *arg);

static zsock_t *
s_socket(int type, const char *tmpl, const char *rundir, const char *what,
         unsigned lane, bool bind, int64_t hwm)
{
    char t[EP_MAX], ep[EP_MAX];
    zsock_t *s;

    if (tmpl == NULL || *tmpl == '\0')
        tmpl = ep_default(t, sizeof t, rundir, "aggd", what);
    if (ep_expand(ep, sizeof ep, tmpl, lane) == NULL) {
        log_warnx("aggd: endpoint template too long: %s", tmpl);
        return NULL;
    }
    s = zsock_new(type);
    zsock_set_sndhwm(s, (int)hwm);
    zsock_set_rcvhwm(s, (int)hwm);
    zsock_set_linger(s, 1000);
    if ((bind ? zsock_bind(s, "%s", ep) : zsock_connect(s, "%s", ep)) == -1) {
        log_warn("aggd: cannot %s %s", bind ? "bind" : "connect", ep);
        zsock_destroy(&s);
        return NULL;
    }
    log_debug("aggd: %s %s", bind ? "bound" : "connected", ep);
    return s;
}

aggd_t *
aggd_new(const struct aggd_conf *conf)
{
    aggd_t *self = xcalloc(1, sizeof *self);
    unsigned lane = (unsigned)conf->lane;
    char t[EP_MAX];

    self->conf = conf;
    snprintf(self->producer, sizeof self->producer, "aggd.%u", lane);
    self->store = agg_store_new();
    if (conf->use_stdin)
        return self;
    if (daemon_mkdirs(conf->rundir) == -1) {
        log_warn("aggd: cannot create %s", conf->rundir);
        goto fail;
    }
    self->loop = zloop_new();
    self->pull = s_socket(ZMQ_PULL, conf->in, conf->rundir, "in", lane, true,
                          conf->hwm);
    self->router = s_socket(ZMQ_ROUTER, conf->query, conf->rundir, "query",
                            lane, true, conf->hwm);
    self->pub = s_socket(ZMQ_PUB, conf->pub, conf->rundir, "pub", lane, true,
                         conf->hwm);
    if (!self->pull || !self->router || !self->pub)
        goto fail;
    if (strcmp(conf->down, "none") != 0) {
        const char *d = conf->down;
        char dt[EP_MAX];
        if (*d == '\0') {
            snprintf(dt, sizeof dt, "ipc://%s/anomalyd.{lane}.in", conf->rundir);
            d = dt;
        }
        if ((self->push = s_socket(ZMQ_PUSH, d, conf->rundir, "down", lane,
                                   false, conf->hwm)) == NULL)
            goto fail;
    }
    (void)t;
    return self;
fail:
    aggd_destroy(&self);
    return NULL;
}

void
aggd_destroy(aggd_t **self_p)
{
    aggd_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zloop_destroy(&self->loop);
    zsock_destroy(&self->push);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pull);
    msg_batch_destroy(&self->pending);
    agg_store_destroy(&self->store);
    free(self);
    *self_p = NULL;
}

/* Try to hand the pending batch to anomalyd. 0 when it went (or there is
 * nowhere to send), -1 when the queue is still full. */
static int
s_flush_down(aggd_t *self)
{
    if (self->pending == NULL)
        return 0;
    if (self->push == NULL) {
        msg_batch_destroy(&self->pending);
        return 0;
    }
    if (msg_batch_send(self->pending, self->push, ZMQ_DONTWAIT) == -1) {
        if (errno != EAGAIN)
            log_warn("aggd: send downstream");
        if (ratelimit_complain(&self->rl_down))
            log_warnx("aggd: anomalyd is not taking readings; pausing intake");
        return -1;
    }
    if (ratelimit_release(&self->rl_down))
        log_info("aggd: anomalyd caught up; resuming intake");
    msg_batch_destroy(&self->pending);
    return 0;
}

static int
s_on_retry(zloop_t *loop, int timer_id, void *arg)
{
    aggd_t *self = arg;

    if (s_flush_down(self) == 0) {
        zloop_timer_end(loop, timer_id);
        if (!self->reading) {
            zloop_reader(loop, self->pull, s_on_pull, self);
            self->reading = true;
        }
    }
    return 0;
}

static void
s_apply(aggd_t *self, msg_batch_t *b)
{
    size_t n = msg_batch_size(b);

    for (size_t i = 0; i < n; i++) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        if (agg_store_put(self->store, msg_batch_str(b, r->key_off), r->ts,
                          r->value) == 0)
            self->duplicates++;
    }
    self->readings_in += n;
    self->batches_in++;
}

static int
s_on_pull(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    msg_batch_t *b = NULL;
    int rc = msg_batch_recv(sock, &b);

    if (rc != MSG_OK) {
        self->bad_batches++;
        if (rc != -1 && ratelimit_complain(&self->rl_bad))
            log_warnx("aggd: dropped a malformed batch: %s (%llu so far)",
                      msg_strerror(rc), (unsigned long long)self->bad_batches);
        return 0;
    }
    if (msg_batch_type(b) != MSG_TYPE_READINGS) {
        self->bad_batches++;
        msg_batch_destroy(&b);
        return 0;
    }
    s_apply(self, b);
    struct msg_envelope *e = msg_batch_env(b);
    log_debug("aggd: applied batch producer=%s lane=%u seq=%llu n=%zu",
              e->producer, e->lane, (unsigned long long)e->seq,
              msg_batch_size(b));
    snprintf(e->producer, sizeof e->producer, "%s", self->producer);
    e->seq = ++self->seq;
    e->ts = clock_now_ns();
    msg_batch_send(b, self->pub, ZMQ_DONTWAIT); /* live views may miss */
    self->pending = b;
    if (s_flush_down(self) == -1) {
        self->stalls++;
        zloop_reader_end(loop, self->pull);
        self->reading = false;
        zloop_timer(loop, AGGD_RETRY_MS, 0, s_on_retry, self);
    }
    return 0;
}

static json_t *
s_status(aggd_t *self)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
                     "daemon", self->producer, "batches_in",
                     (json_int_t)self->batches_in, "readings_in",
                     (json_int_t)self->readings_in, "duplicates",
                     (json_int_t)self->duplicates, "bad_batches",
                     (json_int_t)self->bad_batches, "queries",
                     (json_int_t)self->queries, "downstream_stalls",
                     (json_int_t)self->stalls, "series",
                     (json_int_t)agg_store_series(self->store), "points",
                     (json_int_t)agg_store_points(self->store), "paused",
                     !self->reading);
}

static int
s_on_query(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    zmsg_t *env;
    json_t *req = rpc_request_recv(sock, &env), *body = NULL;
    int status;

    if (req == NULL)
        return 0;
    self->queries++;
    if (strcmp(json_string_value(json_object_get(req, "op")), "status") == 0) {
        body = s_status(self);
        status = 200;
    } else {
        status = agg_query_answer(self->store, req, &body);
    }
    rpc_reply_send(sock, &env, status, body);
    json_decref(req);
    return 0;
}

static void
s_on_event(enum daemon_event ev, void *arg)
{
    (void)ev;
    (void)arg; /* nothing to reload yet; stop is handled by the loop */
}

/* Filter mode: JSON-line readings in, one stats line per series out at
 * end of input. */
static int
s_run_filter(aggd_t *self)
{
    char *line = NULL, key[SERIES_KEY_MAX];
    size_t cap = 0, lineno = 0;
    ssize_t len;
    int64_t ts;
    double v;
    struct reading_err err;
    struct agg_view *views;
    size_t nv;

    while ((len = getline(&line, &cap, stdin)) > 0) {
        json_error_t jerr;
        json_t *j = json_loadb(line, (size_t)len, 0, &jerr);
        lineno++;
        if (j == NULL || reading_parse(j, clock_now_ns(), key, sizeof key,
                                       &ts, &v, &err)) {
            log_warnx("stdin:%zu: %s%s%s", lineno,
                      j ? err.field : jerr.text, j ? ": " : "",
                      j ? err.reason : "");
            json_decref(j);
            continue;
        }
        json_decref(j);
        agg_store_put(self->store, key, ts, v);
    }
    free(line);
    nv = agg_store_select(self->store, "*", NULL, 0, INT64_MIN, INT64_MAX,
                          &views);
    for (size_t i = 0; i < nv && self->conf->use_stdout; i++) {
        json_t *req = json_pack("{s:s, s:s}", "op", "stats", "series",
                                views[i].key), *body;
        char *s;
        agg_query_answer(self->store, req, &body);
        s = mpjson_dumps(body);
        puts(s);
        free(s);
        json_decref(body);
        json_decref(req);
    }
    free(views);
    return 0;
}

int
aggd_run(aggd_t *self)
{
    int sigfd, rc;
    char summary[256];

    if (self->conf->use_stdin)
        return s_run_filter(self);
    if ((sigfd = daemon_signals(self->loop, s_on_event, self)) == -1) {
        log_warn("aggd: signals");
        return -1;
    }
    zloop_reader(self->loop, self->pull, s_on_pull, self);
    self->reading = true;
    zloop_reader(self->loop, self->router, s_on_query, self);
    snprintf(summary, sizeof summary, "lane=%lld in=%s",
             (long long)self->conf->lane, zsock_endpoint(self->pull));
    daemon_ready(summary);
    rc = zloop_start(self->loop);
    /* Drain: hand anomalyd what it still owes, within the deadline. */
    int64_t deadline = clock_mono_ns() + self->conf->drain;
    while (self->pending && clock_mono_ns() < deadline) {
        if (s_flush_down(self) == 0)
            break;
        zclock_sleep(AGGD_RETRY_MS);
    }
    if (self->pending)
        log_err("aggd: stopped with %zu readings not handed to anomalyd",
                msg_batch_size(self->pending));
    close(sigfd);
    (void)rc;
    return 0;
}

void
aggd_test(bool verbose)
{
    char dir[] = "/tmp/aggd_test.XXXXXX", ep[EP_MAX];
    struct aggd_conf c = {0};
    aggd_t *a;
    zsock_t *push, *dealer;
    msg_batch_t *b;
    uint64_t id;
    int status;
    json_t *req, *body;

    assert(mkdtemp(dir));
    c.rundir = dir;
    c.in = c.query = c.pub = "";
    c.down = "none";
    c.hwm = 100;
    a = aggd_new(&c);
    assert(a);
    /* Drive the handlers directly rather than running the loop. */
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.in", dir);
    push = zsock_new_push(ep);
    b = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_add_reading(b, "t", 1, 1.0);
    msg_batch_add_reading(b, "t", 2, 3.0);
    msg_batch_send(b, push, 0);
    msg_batch_send(b, push, 0); /* the same batch again: idempotent */
    zsock_set_rcvtimeo(a->pull, 2000);
    s_on_pull(a->loop, a->pull, a);
    s_on_pull(a->loop, a->pull, a);
    assert(a->readings_in == 4 && a->duplicates == 2);
    assert(agg_store_points(a->store) == 2);
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.query", dir);
    dealer = zsock_new_dealer(ep);
    req = json_pack("{s:s, s:s}", "op", "stats", "series", "t");
    rpc_request_send(dealer, 1, req);
    json_decref(req);
    zsock_set_rcvtimeo(a->router, 2000);
    s_on_query(a->loop, a->router, a);
    assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
    assert(status == 200);
    TEST_NEAR(json_real_value(json_object_get(body, "mean")), 2.0, 0);
    json_decref(body);
    msg_batch_destroy(&b);
    zsock_destroy(&dealer);
    zsock_destroy(&push);
    aggd_destroy(&a);
    assert(a == NULL);
    zsys_dir_delete("%s", dir);
    (void)verbose;
    TEST_OK("aggd");
}
