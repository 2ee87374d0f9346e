/*
 * ingestd: server object (see ingestd.h).
 */
#include "ingestd/ingestd.h"
#include "ingestd/ingest_mqspool.h"
#include "ingestd/ingest_mqtt.h"
#include "ingestd/ingest_parse.h"
#include "ingestd/ingest_quota.h"
#include "ingestd/ingest_spool.h"
#include "common/apikey.h"
#include "common/bucket.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/reload.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/topic.h"
#include "common/xalloc.h"

#include <errno.h>
#include <unistd.h>
#include <zlib.h>

#define INGESTD_LANES_MAX 1024
#define INGESTD_RETRY_AFTER "1"
#define INGESTD_FLUSH_MS 100
#define INGESTD_RESEND_MAX_NS (300 * CLOCK_NS_PER_S)
/* Batches sent to a lane and not confirmed yet, at most: enough to keep
 * aggd busy across its group commits, few enough that its queue never
 * holds seconds of work (a confirmation then comes long before
 * --resend-after, and nothing is resent while aggd is merely busy). */
#define INGESTD_INFLIGHT 64
/* ... and at most this many bytes of them (the first one always goes):
 * each sits in a ZeroMQ queue, here or in aggd, until aggd has it. 2 MiB
 * is about ten batches of a 5,000-point write; 8 MiB cost ingestd and
 * aggd 10 MiB more peak RSS together in sh bench/run.sh, with no
 * difference in throughput that the loaded machine could show. */
#define INGESTD_INFLIGHT_BYTES (2u << 20)
/* The batch a request is parsed into is kept for the next one (no
 * regrowth from empty each time) unless it held more readings than
 * this. */
#define INGESTD_PARSED_KEEP 65536

/* A request acknowledged once a group commit covers its records. */
struct s_waiter {
    uint64_t pos;           /* spool position after its records */
    http_req_t *req;        /* HTTP request (suspended), or NULL */
    zmsg_t *env;            /* ROUTER envelope, or NULL */
    int status;             /* answer once durable */
    json_t *reply;          /* its body */
    struct s_waiter *next;  /* list link */
};

/* Send state of one lane. */
struct s_lanestate {
    uint64_t sent;          /* highest seq handed to aggd */
    uint64_t sent_max;      /* ... ever in this run (a resend lowers sent) */
    uint64_t confirmed_at;  /* last seq seen confirmed */
    int64_t progress_ns;    /* monotonic time of the last confirm progress */
    int64_t backoff_ns;     /* wait before the next resend */
};

struct ingestd {
    const struct ingestd_conf *conf; /* configuration in force */
    struct ingestd_conf *reloaded;   /* owned copy from the last SIGHUP */
    zloop_t *loop;                   /* the one event loop */
    zsock_t *router;                 /* requests from apid */
    zsock_t **push;                  /* one PUSH per aggd lane */
    msg_batch_t **lane_batch;        /* scratch batch per lane */
    uint64_t *seq;                   /* batches sent per lane */
    http_server_t *http;             /* own HTTP port, or NULL */
    zsock_t *confirm;                /* confirmations from aggd */
    ingest_spool_t *spool;           /* durable spool, NULL in filter mode */
    struct s_lanestate *ls;          /* send state per lane */
    struct s_waiter *waiters;        /* acks due, in spool order */
    struct s_waiter **waiters_tail;  /* append point */
    uint64_t commits;                /* group commits done */
    uint64_t resends;                /* batches sent again */
    ingest_mqtt_t *mqtt;             /* MQTT subscriber, or NULL */
    ingest_mqspool_t *mqspool;       /* broker plugin's spool, or NULL */
    char spool_dir[1024];            /* our spool directory */
    msg_batch_t *mqtt_batch;         /* MQTT readings not spooled yet */
    msg_batch_t *mqtt_one;           /* one message's readings (quotas) */
    msg_batch_t *parsed;             /* a request's readings (kept: no regrowth) */
    ingest_lp_cache_t *lpcache;      /* line-protocol series across requests */
    ingest_quota_t *quota;           /* per-tenant rate and series limits */
    apikey_t *keys;                  /* keys for the own port, or NULL */
    uint64_t over_quota;             /* readings refused by a tenant quota */
    uint64_t over_series;            /* of them, for the series quota */
    struct ratelimit rl_quota;       /* complaints about it */
    int mqtt_timer;                  /* pending spool of mqtt_batch, or -1 */
    uint64_t mqtt_bad;               /* payloads refused */
    bucket_t *http_rate;             /* per-client request limits */
    bucket_t *device_rate;           /* per-device message limits */
    uint64_t limited;                /* requests and messages over a limit */
    struct ratelimit rl_mqtt;        /* complaints about bad payloads */
    struct ratelimit rl_mqfull;      /* complaints about a full spool disk */
    int64_t mqspool_wait;            /* no plugin reads before (mono ns) */
    uint64_t requests;               /* bodies handled */
    uint64_t accepted;               /* readings handed downstream */
    uint64_t rejected;               /* readings refused as invalid */
    uint64_t refused;                /* requests refused with 503 */
    uint64_t expired;                /* relayed requests past their "until" */
    struct ratelimit rl_full;        /* complaints about full lanes */
    uint64_t bad_confirms;           /* confirm messages or items not believed */
    struct ratelimit rl_confirm;     /* complaints about them */
};

static zsock_t *
s_push(const struct ingestd_conf *conf, unsigned lane)
{
    char t[EP_MAX], ep[EP_MAX];
    const char *tmpl = conf->down;
    zsock_t *s;

    if (*tmpl == '\0')
        tmpl = ep_default(t, sizeof t, conf->rundir, "aggd", "in");
    if (ep_expand(ep, sizeof ep, tmpl, lane) == NULL)
        return NULL;
    s = zsock_new(ZMQ_PUSH);
    zsock_set_sndhwm(s, (int)conf->hwm);
    zsock_set_linger(s, (int)(conf->drain / CLOCK_NS_PER_MS));
    if (ep_connect(s, ep) == -1) {
        log_warn("ingestd: cannot connect %s", ep);
        zsock_destroy(&s);
    }
    return s;
}

ingestd_t *
ingestd_new(const struct ingestd_conf *conf)
{
    ingestd_t *self = xcalloc(1, sizeof *self);
    unsigned n = (unsigned)conf->lanes;

    self->conf = conf;
    self->push = xcalloc(n, sizeof *self->push);
    self->lane_batch = xcalloc(n, sizeof *self->lane_batch);
    self->seq = xcalloc(n, sizeof *self->seq);
    for (unsigned i = 0; i < n; i++) {
        self->lane_batch[i] = msg_batch_new(MSG_TYPE_READINGS);
        snprintf(msg_batch_env(self->lane_batch[i])->producer, 64, "%s",
                 conf->id);
        msg_batch_env(self->lane_batch[i])->lane = i;
    }
    if (conf->use_stdout)
        return self; /* pure filter: nothing to connect */
    if (daemon_mkdirs(conf->rundir) == -1) {
        log_warn("ingestd: cannot create %s", conf->rundir);
        goto fail;
    }
    for (unsigned i = 0; i < n; i++)
        if ((self->push[i] = s_push(conf, i)) == NULL)
            goto fail;
    self->loop = zloop_new();
    self->http_rate = bucket_new(conf->rate, conf->rate * 2);
    self->device_rate = bucket_new(conf->device_rate, conf->device_rate * 2);
    self->mqtt_one = msg_batch_new(MSG_TYPE_READINGS);
    self->parsed = msg_batch_new(MSG_TYPE_READINGS);
    self->lpcache = ingest_lp_cache_new();
    if (((conf->keys && *conf->keys) || (conf->keys_db && *conf->keys_db)) &&
        (self->keys = apikey_new(conf->keys, conf->keys_db)) == NULL)
        goto fail;
    self->waiters_tail = &self->waiters;
    self->ls = xcalloc(n, sizeof *self->ls);
    if (!conf->use_stdin) {
        char dir[1024], t[EP_MAX];
        const char *c = *conf->confirm ? conf->confirm
                                       : ep_default(t, sizeof t, conf->rundir,
                                                    "ingestd", "confirm");
        if (*conf->spool)
            snprintf(dir, sizeof dir, "%s", conf->spool);
        else
            snprintf(dir, sizeof dir, "./var/spool/%s", conf->id);
        snprintf(self->spool_dir, sizeof self->spool_dir, "%s", dir);
        self->spool = ingest_spool_open(dir, n, (size_t)conf->segment);
        if (self->spool == NULL)
            goto fail;
        for (unsigned i = 0; i < n; i++) {
            self->ls[i].progress_ns = clock_mono_ns();
            self->ls[i].backoff_ns = conf->resend;
        }
        self->confirm = zsock_new(ZMQ_PULL);
        ep_limit(self->confirm);
        if (ep_bind(self->confirm, c) == -1) {
            log_warn("ingestd: cannot bind %s", c);
            goto fail;
        }
    }
    if (!conf->use_stdin) {
        char t[EP_MAX];
        const char *q = *conf->query ? conf->query
                                     : ep_default(t, sizeof t, conf->rundir,
                                                  "ingestd", "query");
        self->router = zsock_new(ZMQ_ROUTER);
        ep_limit(self->router);
        if (ep_bind(self->router, q) == -1) {
            log_warn("ingestd: cannot bind %s", q);
            goto fail;
        }
    }
    {
        char state[1100], err[512];
        snprintf(state, sizeof state, "%s%s", self->spool_dir,
                 *self->spool_dir ? "/series.quota" : "");
        self->quota = ingest_quota_new(conf->quotas, conf->tenant_rate,
                                       conf->tenant_series, state, err, sizeof err);
        if (self->quota == NULL) {
            log_warnx("ingestd: quotas: %s", err);
            goto fail;
        }
    }
    return self;
fail:
    ingestd_destroy(&self);
    return NULL;
}

void
ingestd_destroy(ingestd_t **self_p)
{
    ingestd_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    http_server_destroy(&self->http);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->router);
    zsock_destroy(&self->confirm);
    ingest_mqtt_destroy(&self->mqtt);
    ingest_mqspool_destroy(&self->mqspool);
    bucket_destroy(&self->http_rate);
    bucket_destroy(&self->device_rate);
    ingest_quota_destroy(&self->quota);
    apikey_destroy(&self->keys);
    msg_batch_destroy(&self->mqtt_batch);
    msg_batch_destroy(&self->mqtt_one);
    msg_batch_destroy(&self->parsed);
    ingest_lp_cache_destroy(&self->lpcache);
    ingest_spool_destroy(&self->spool);
    free(self->ls);
    for (int64_t i = 0; i < self->conf->lanes; i++) {
        zsock_destroy(&self->push[i]);
        msg_batch_destroy(&self->lane_batch[i]);
    }
    free(self->push);
    free(self->lane_batch);
    free(self->seq);
    reload_free((void **)&self->reloaded); /* last: conf may point here */
    free(self);
    *self_p = NULL;
}

/* Hand a batch of accepted readings downstream, split by lane. Returns 0,
 * or -1 when a lane's queue is full (nothing of this batch was sent to a
 * full lane; lanes already sent are idempotent on retry). */
static int
s_forward(ingestd_t *self, msg_batch_t *b)
{
    unsigned n = (unsigned)self->conf->lanes;
    size_t cnt = msg_batch_size(b);

    for (unsigned i = 0; i < n; i++) {
        if (self->push[i] && !(zsock_events(self->push[i]) & ZMQ_POLLOUT)) {
            if (ratelimit_complain(&self->rl_full))
                log_warnx("ingestd: lane %u is full; refusing writes (503)", i);
            return -1;
        }
        msg_batch_reset(self->lane_batch[i]);
    }
    msg_batch_split(b, self->lane_batch, n);
    for (unsigned i = 0; i < n; i++) {
        msg_batch_t *lb = self->lane_batch[i];
        if (msg_batch_size(lb) == 0)
            continue;
        msg_batch_env(lb)->seq = ++self->seq[i];
        msg_batch_env(lb)->ts = clock_now_ns();
        if (msg_batch_send(lb, self->push[i], ZMQ_DONTWAIT) == -1) {
            self->seq[i]--;
            log_warn("ingestd: lane %u refused a batch", i);
            return -1;
        }
    }
    if (ratelimit_release(&self->rl_full))
        log_info("ingestd: lanes accept writes again");
    self->accepted += cnt;
    return 0;
}

/* Hand spooled batches that aggd has not been sent yet, in seq order,
 * until a lane's queue or its window (INGESTD_INFLIGHT batches,
 * INGESTD_INFLIGHT_BYTES) is full. The spool reads each one back from
 * disk; one it could not read (logged there: lost) goes as an empty
 * batch of the same seq, so aggd's confirmations move past it. */
static bool
s_send_one(unsigned lane, uint64_t seq, const void *data, size_t len,
           void *arg)
{
    ingestd_t *self = arg;
    const char *topic = msg_topic(MSG_TYPE_READINGS);
    void *h = zsock_resolve(self->push[lane]);
    char *empty = NULL;
    int rc;

    if (data == NULL) {
        msg_batch_t *e = self->lane_batch[lane];
        msg_batch_reset(e);
        msg_batch_env(e)->seq = seq;
        msg_batch_env(e)->ts = clock_now_ns();
        msg_batch_env(e)->acked = ingest_spool_confirmed(self->spool, lane);
        msg_batch_env(e)->has_acked = true;
        msg_batch_encode(e, &empty, &len);
        data = empty;
    }
    rc = zmq_send(h, topic, strlen(topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
         zmq_send(h, data, len, ZMQ_DONTWAIT) < 0;
    free(empty);
    if (rc)
        return false;
    /* The wait for a confirmation starts with the first batch out, not
     * at the last confirmation before an idle spell (that would resend
     * what was just sent). */
    if (self->ls[lane].sent <= ingest_spool_confirmed(self->spool, lane))
        self->ls[lane].progress_ns = clock_mono_ns();
    self->ls[lane].sent = seq;
    if (seq > self->ls[lane].sent_max)
        self->ls[lane].sent_max = seq;
    return true;
}

static void
s_flush(ingestd_t *self)
{
    for (unsigned i = 0; i < (unsigned)self->conf->lanes; i++) {
        if (ingest_spool_next_seq(self->spool, i) - 1 > self->ls[i].sent)
            ingest_spool_foreach(self->spool, i, self->ls[i].sent, INGESTD_INFLIGHT,
                                 INGESTD_INFLIGHT_BYTES, s_send_one, self);
    }
}

/* Answer the waiters whose records end at or before pos with their
 * prepared reply, or 503 when the commit covering them failed. */
static void
s_answer_waiters(ingestd_t *self, uint64_t pos, bool durable)
{
    struct s_waiter *w;

    while ((w = self->waiters) && w->pos <= pos) {
        self->waiters = w->next;
        if (self->waiters == NULL)
            self->waiters_tail = &self->waiters;
        if (!durable) {
            json_decref(w->reply);
            w->reply = rpc_error("spool_failed",
                                 "could not make the readings durable; retry",
                                 "spool");
            w->status = 503;
        }
        if (w->req) {
            if (w->status == 503)
                http_req_add_header(w->req, "Retry-After", INGESTD_RETRY_AFTER);
            if (w->status == 204) {
                json_decref(w->reply);
                http_req_reply(w->req, 204, "application/json", xstrdup(""), 0);
            } else {
                http_req_reply_json(w->req, w->status, w->reply);
            }
        } else {
            rpc_reply_send(self->router, &w->env, w->status, w->reply);
        }
        free(w);
    }
}

/* Start a group commit of everything appended so far, unless one is in
 * flight (the next one starts when it ends). With nothing new to sync,
 * whoever waits is durable already. */
static void
s_commit(ingestd_t *self)
{
    if (ingest_spool_sync_start(self->spool)) {
        if (self->mqspool)
            ingest_mqspool_syncing(self->mqspool);
    } else if (!ingest_spool_sync_busy(self->spool)) {
        if (self->mqspool) {
            ingest_mqspool_syncing(self->mqspool);
            ingest_mqspool_durable(self->mqspool);
        }
        s_answer_waiters(self, ingest_spool_durable(self->spool), true);
    }
}

/* A group commit ended (on the fsync thread, while this loop parsed the
 * next requests): the acknowledgements it covers, then the batches go
 * downstream, then the next commit starts for what came meanwhile. */
static int
s_on_synced(zloop_t *loop, zsock_t *sock, void *arg)
{
    ingestd_t *self = arg;
    uint64_t pos = 0;
    bool ok;

    (void)loop;
    /* zloop polls once, then runs every ready handler: a blocking sync in
     * an earlier handler (a segment roll) may have taken this answer. */
    if (!ingest_spool_sync_waits(self->spool, sock) ||
        !(zsock_events(sock) & ZMQ_POLLIN))
        return 0;
    ok = ingest_spool_sync_done(self->spool, sock, &pos) == 0;
    self->commits++;
    if (ok && self->mqspool)
        ingest_mqspool_durable(self->mqspool); /* saved by s_on_flush */
    s_answer_waiters(self, pos, ok);
    /* The next commit first: what arrived during this fsync waits on the
     * disk, not on the batches going downstream. */
    s_commit(self);
    s_flush(self);
    if (self->mqtt) {
        size_t bytes = ingest_spool_bytes(self->spool);
        if (bytes > (size_t)self->conf->spool_max)
            ingest_mqtt_pause(self->mqtt, true);
        else if (bytes < (size_t)self->conf->spool_max / 10 * 9)
            ingest_mqtt_pause(self->mqtt, false);
    }
    return 0;
}

static void
s_wait_commit(ingestd_t *self, http_req_t *req, zmsg_t **env, int status,
              json_t *reply)
{
    struct s_waiter *w = xcalloc(1, sizeof *w);
    w->req = req;
    if (env) {
        w->env = *env;
        *env = NULL;
    }
    w->status = status;
    w->reply = reply;
    w->pos = ingest_spool_written(self->spool);
    *self->waiters_tail = w;
    self->waiters_tail = &w->next;
    if (req)
        http_req_suspend(req);
    s_commit(self);
}

/* Append the readings of b to the spool, one batch per lane. */
static int
s_spool(ingestd_t *self, msg_batch_t *b)
{
    unsigned n = (unsigned)self->conf->lanes;
    size_t cnt = msg_batch_size(b);

    /* One lane: b is its batch as it stands, no copy. */
    if (n > 1)
        msg_batch_split(b, self->lane_batch, n);
    for (unsigned i = 0; i < n; i++) {
        msg_batch_t *lb = n > 1 ? self->lane_batch[i] : b;
        char *data;
        size_t len;
        int rc;
        if (msg_batch_size(lb) == 0)
            continue;
        if (lb == b) /* producer and lane */
            *msg_batch_env(b) = *msg_batch_env(self->lane_batch[0]);
        msg_batch_env(lb)->seq = ingest_spool_next_seq(self->spool, i);
        msg_batch_env(lb)->ts = clock_now_ns();
        /* What aggd confirmed so far: an aggd that does not know this
         * producer (new, or restored from a backup) starts its entry
         * there, not at the first seq it happens to see. */
        msg_batch_env(lb)->acked = ingest_spool_confirmed(self->spool, i);
        msg_batch_env(lb)->has_acked = true;
        msg_batch_encode(lb, &data, &len);
        rc = ingest_spool_append_take(self->spool, i, msg_batch_env(lb)->seq,
                                      data, len);
        if (rc == -1)
            return -1;
    }
    self->accepted += cnt;
    return 0;
}

/* Count batch b of tenant against its quotas (ingest_quota.h). Returns 0
 * when it may pass, else -1 with *r saying why (counted and logged). */
static int
s_quota(ingestd_t *self, const char *tenant, const msg_batch_t *b,
        struct ingest_quota_refusal *r)
{
    if (ingest_quota_take(self->quota, tenant, b, clock_mono_ns(), r) == 0)
        return 0;
    self->over_quota += msg_batch_size(b);
    if (!strcmp(r->where, "series"))
        self->over_series += msg_batch_size(b);
    if (ratelimit_complain(&self->rl_quota))
        log_warnx("ingestd: tenant %s is over its %s quota; refusing its "
                  "readings (%llu refused so far)", tenant, r->where,
                  (unsigned long long)self->over_quota);
    return -1;
}

/* Parse and spool; the answer is due after the next commit when
 * *durable_wait is set, else at once. */
static int
s_ingest(ingestd_t *self, int form, const char *body, size_t len,
         const char *precision, const char *tenant, json_t **reply,
         bool *durable_wait)
{
    msg_batch_t *b;
    struct ingest_report r;
    int64_t prec = ingest_parse_precision(precision);
    struct ingest_quota_refusal q;
    int status;

    *durable_wait = false;
    self->requests++;
    if (prec < 0) {
        *reply = rpc_error("bad_request",
                           "precision must be ns, u, ms, s, m or h", "precision");
        return 400;
    }
    if (ingest_spool_bytes(self->spool) > (size_t)self->conf->spool_max) {
        self->refused++;
        if (ratelimit_complain(&self->rl_full))
            log_warnx("ingestd: %zu unconfirmed bytes in the spool (limit %lld); "
                      "refusing writes until aggd catches up",
                      ingest_spool_bytes(self->spool),
                      (long long)self->conf->spool_max);
        *reply = rpc_error("overloaded",
                           "downstream is behind; retry after the given seconds",
                           "spool");
        return 503;
    }
    if (ratelimit_release(&self->rl_full))
        log_info("ingestd: spool below its limit; accepting writes again");
    b = self->parsed;
    msg_batch_reset(b);
    if (form == INGEST_FORM_WRITE)
        ingest_parse_lp(self->lpcache, body, len, clock_now_ns(), prec, tenant,
                        b, &r);
    else
        ingest_parse(form, body, len, clock_now_ns(), prec, tenant, b, &r);
    self->rejected += r.rejected;
    status = ingest_parse_reply(form, &r, reply);
    ingest_parse_report_clear(&r);
    if (msg_batch_size(b) > 0 && s_quota(self, tenant, b, &q)) {
        json_decref(*reply);
        *reply = rpc_error("quota_exceeded", q.message, q.where);
        json_object_set_new(json_object_get(*reply, "error"), "quota",
                            json_string(q.where));
        if (q.retry_after)
            json_object_set_new(json_object_get(*reply, "error"), "retry_after",
                                json_integer(q.retry_after));
        return q.status;
    }
    if (msg_batch_size(b) > 0) {
        if (s_spool(self, b) == -1) {
            self->refused++;
            json_decref(*reply);
            *reply = rpc_error("spool_failed",
                               "could not write the spool (disk full?); retry",
                               "spool");
            status = 503;
        } else {
            *durable_wait = true;
        }
    }
    /* A huge body's batch is not kept for the next request. */
    if (msg_batch_size(b) > INGESTD_PARSED_KEEP) {
        msg_batch_destroy(&self->parsed);
        self->parsed = msg_batch_new(MSG_TYPE_READINGS);
    }
    return status;
}

static int
s_on_confirm(zloop_t *loop, zsock_t *sock, void *arg)
{
    ingestd_t *self = arg;
    msg_batch_t *b = NULL;

    int rc = msg_batch_recv(sock, &b);

    if (rc != MSG_OK || msg_batch_type(b) != MSG_TYPE_CONFIRM) {
        if (rc != -1) {
            self->bad_confirms++;
            if (ratelimit_complain(&self->rl_confirm))
                log_warnx("ingestd: dropped a confirmation: %s (%llu so far)",
                          rc != MSG_OK ? msg_strerror(rc) : "not a confirm batch",
                          (unsigned long long)self->bad_confirms);
        }
        msg_batch_destroy(&b);
        return 0;
    }
    for (size_t i = 0; i < msg_batch_size(b); i++) {
        const struct msg_confirm *c = msg_batch_confirm(b, i);
        if (strcmp(msg_batch_str(b, c->producer_off), self->conf->id) != 0 ||
            c->lane >= (uint32_t)self->conf->lanes)
            continue;
        struct s_lanestate *ls = &self->ls[c->lane];
        uint64_t seq = c->seq;
        /* No aggd can confirm a batch not sent yet: such a seq (anything
         * may connect to this PULL) would drop spooled batches before
         * they go out, and no later confirmation of the real seqs below
         * it would count. It covers at most what was sent. After a
         * restart the batches the last run sent are sent again first,
         * and aggd's next confirmation covers them. */
        if (seq > ls->sent_max) {
            self->bad_confirms++;
            if (ratelimit_complain(&self->rl_confirm))
                log_warnx("ingestd: lane %u: confirmation of seq %llu past the "
                          "last batch sent (%llu): taken as that one (%llu so far)",
                          c->lane, (unsigned long long)seq,
                          (unsigned long long)ls->sent_max,
                          (unsigned long long)self->bad_confirms);
            seq = ls->sent_max;
        }
        ingest_spool_confirm(self->spool, c->lane, seq);
        if (seq > ls->confirmed_at) {
            ls->confirmed_at = seq;
            ls->progress_ns = clock_mono_ns();
            ls->backoff_ns = self->conf->resend;
        }
    }
    msg_batch_destroy(&b);
    s_flush(self); /* the window moved */
    return 0;
}

/* Send what is unsent; resend what aggd has not confirmed for a while
 * (its queue or the aggd process itself may have lost it). */
static int
s_on_flush(zloop_t *loop, int timer_id, void *arg)
{
    ingestd_t *self = arg;
    int64_t now = clock_mono_ns();

    for (unsigned i = 0; i < (unsigned)self->conf->lanes; i++) {
        struct s_lanestate *ls = &self->ls[i];
        uint64_t confirmed = ingest_spool_confirmed(self->spool, i);
        if (ls->sent > confirmed && now - ls->progress_ns > ls->backoff_ns) {
            log_info("ingestd: lane %u: no confirmation past seq %llu for %llds; "
                     "resending %llu batches", i, (unsigned long long)confirmed,
                     (long long)((now - ls->progress_ns) / CLOCK_NS_PER_S),
                     (unsigned long long)(ls->sent - confirmed));
            self->resends += ls->sent - confirmed;
            ls->sent = confirmed;
            ls->progress_ns = now;
            ls->backoff_ns *= 2;
            if (ls->backoff_ns > INGESTD_RESEND_MAX_NS)
                ls->backoff_ns = INGESTD_RESEND_MAX_NS;
        }
    }
    s_flush(self);
    /* The plugin's cursor: at most one save per tick, not per commit (a
     * cursor behind only means re-reading after a crash); its fsync runs
     * on a thread, s_on_cursor finishes it. */
    if (self->mqspool)
        ingest_mqspool_commit(self->mqspool);
    return 0;
}

/* The plugin cursor's fsync is done: rename it into place. */
static int
s_on_cursor(zloop_t *loop, zsock_t *sock, void *arg)
{
    ingestd_t *self = arg;

    (void)loop;
    if (ingest_mqspool_commit_busy(self->mqspool) && (zsock_events(sock) & ZMQ_POLLIN))
        ingest_mqspool_commit_done(self->mqspool);
    return 0;
}

/* MQTT readings are spooled in batches (every few ms or 1,000 readings):
 * one spool record per message would cost more than the message. The
 * broker was acknowledged before we saw them (ingest_mqtt.h). */
#define INGESTD_MQTT_BATCH 1000
#define INGESTD_MQTT_MS 5
/* After a failed spool append, wait this long before reading the
 * plugin's files again. */
#define INGESTD_MQSPOOL_RETRY_NS 200000000LL

static int
s_on_mqtt_spool(zloop_t *loop, int timer_id, void *arg)
{
    ingestd_t *self = arg;

    self->mqtt_timer = -1;
    if (msg_batch_size(self->mqtt_batch) == 0)
        return 0;
    if (s_spool(self, self->mqtt_batch) == -1) {
        if (self->mqspool) {
            /* Still in the plugin's files: read them again once the disk
             * takes writes (the part of the batch that did get in is
             * stored twice, which aggd's writes by (series, timestamp)
             * absorb). */
            ingest_mqspool_rewind(self->mqspool);
            self->mqspool_wait = clock_mono_ns() + INGESTD_MQSPOOL_RETRY_NS;
            if (ratelimit_complain(&self->rl_mqfull))
                log_warnx("ingestd: cannot spool %zu MQTT readings; they stay "
                          "in the broker plugin's files and are read again",
                          msg_batch_size(self->mqtt_batch));
        } else {
            log_err("ingestd: %zu MQTT readings could not be spooled and are lost",
                    msg_batch_size(self->mqtt_batch));
        }
    } else {
        if (self->mqspool)
            ingest_mqspool_mark(self->mqspool);
        s_commit(self);
    }
    msg_batch_reset(self->mqtt_batch);
    return 0;
}

static void
s_on_mqtt(const char *tenant, const char *device, const void *payload,
          size_t len, void *arg)
{
    ingestd_t *self = arg;
    struct ingest_report r;
    char prefix[2 * TOPIC_ID_MAX + 24];

    /* The topic prefix names the device across tenants. */
    topic_prefix(tenant, device, prefix, sizeof prefix);
    if (bucket_take(self->device_rate, prefix, 1, clock_mono_ns()) != 0) {
        self->limited++;
        if (ratelimit_complain(&self->rl_mqtt))
            log_warnx("mqtt: device %s is over --device-rate; refusing its "
                      "messages (%llu refused so far)", prefix,
                      (unsigned long long)self->limited);
        if (self->mqtt)
            ingest_mqtt_error(self->mqtt, tenant, device,
                              "{\"error\":{\"code\":\"rate_limited\",\"message\":"
                              "\"over the per-device rate limit; message refused\","
                              "\"where\":\"device\"}}");
        return;
    }
    /* With a tenant quota, a message's readings are counted before they
     * join the batch, and refused together. */
    msg_batch_t *into = ingest_quota_on(self->quota) ? self->mqtt_one : self->mqtt_batch;
    msg_batch_reset(self->mqtt_one);
    ingest_parse_mqtt(tenant, device, payload, len, clock_now_ns(), into, &r);
    if (into == self->mqtt_one && msg_batch_size(into) > 0) {
        struct ingest_quota_refusal q;
        if (s_quota(self, tenant, into, &q) != 0) {
            msg_batch_reset(into);
            if (self->mqtt) {
                json_t *e = rpc_error("quota_exceeded", q.message, q.where);
                char *es;
                json_object_set_new(json_object_get(e, "error"), "quota",
                                    json_string(q.where));
                es = mpjson_dumps(e);
                ingest_mqtt_error(self->mqtt, tenant, device, es);
                free(es);
                json_decref(e);
            }
        }
        for (size_t i = 0; i < msg_batch_size(into); i++) {
            const struct msg_reading *m = msg_batch_reading(into, i);
            msg_batch_add_reading(self->mqtt_batch, msg_batch_str(into, m->key_off),
                                  m->ts, m->value);
        }
    }
    if (r.fatal_field || r.rejected) {
        json_t *e = r.fatal_field
                        ? rpc_error("invalid_payload", r.fatal_reason, r.fatal_field)
                        : json_pack("{s:I, s:I, s:O}", "accepted",
                                    (json_int_t)r.accepted, "rejected",
                                    (json_int_t)r.rejected, "errors", r.errors);
        char *s = mpjson_dumps(e);
        self->mqtt_bad++;
        self->rejected += r.rejected + (r.fatal_field ? 1 : 0);
        if (ratelimit_complain(&self->rl_mqtt))
            log_warnx("mqtt: bad payload on %s/telemetry: %s "
                      "(%llu bad payloads so far)", prefix, s,
                      (unsigned long long)self->mqtt_bad);
        ingest_mqtt_error(self->mqtt, tenant, device, s);
        free(s);
        json_decref(e);
    }
    ingest_parse_report_clear(&r);
    if (msg_batch_size(self->mqtt_batch) >= INGESTD_MQTT_BATCH)
        s_on_mqtt_spool(self->loop, 0, self);
    else if (self->mqtt_timer == -1 && msg_batch_size(self->mqtt_batch) > 0)
        self->mqtt_timer = zloop_timer(self->loop, INGESTD_MQTT_MS, 1,
                                       s_on_mqtt_spool, self);
}

/* Read what the broker plugin spooled, unless the spool is over its
 * limit (then the plugin's files wait on disk: backpressure without
 * loss). */
static int
s_on_mqspool(zloop_t *loop, int timer_id, void *arg)
{
    ingestd_t *self = arg;

    if (ingest_spool_bytes(self->spool) > (size_t)self->conf->spool_max ||
        clock_mono_ns() < self->mqspool_wait)
        return 0;
    ingest_mqspool_read(self->mqspool, 5000, s_on_mqtt, self);
    if (msg_batch_size(self->mqtt_batch) > 0)
        s_on_mqtt_spool(self->loop, 0, self);
    else
        ingest_mqspool_mark(self->mqspool); /* skipped records count too */
    return 0;
}

/* The tenant an ingest request acts for (apid sends the one of its
 * caller's credentials; absent means the default tenant), or NULL when
 * it is not a valid tag value. */
static const char *
s_tenant(const json_t *req)
{
    const json_t *t = json_object_get(req, "tenant");

    if (t == NULL)
        return SERIES_TENANT_DEFAULT;
    if (!json_is_string(t) || series_tag_value_check(json_string_value(t)))
        return NULL;
    return json_string_value(t);
}

/* Whether a relayed request carries an "until" (CLOCK_MONOTONIC ns of
 * this host) that has passed. */
static bool
s_expired(const json_t *req)
{
    const json_t *u = json_object_get(req, "until");

    return json_is_integer(u) && clock_mono_ns() >= json_integer_value(u);
}

static int
s_on_query(zloop_t *loop, zsock_t *sock, void *arg)
{
    ingestd_t *self = arg;
    zmsg_t *env;
    json_t *req = rpc_request_recv(sock, &env), *reply = NULL;
    const char *op, *form, *body;
    int status, f;

    if (req == NULL)
        return 0;
    op = json_string_value(json_object_get(req, "op"));
    form = json_string_value(json_object_get(req, "form"));
    body = json_string_value(json_object_get(req, "body"));
    if (strcmp(op, "status") == 0) {
        reply = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                          "daemon", self->conf->id, "requests",
                          (json_int_t)self->requests, "accepted",
                          (json_int_t)self->accepted, "rejected",
                          (json_int_t)self->rejected, "refused",
                          (json_int_t)self->refused, "lanes",
                          (json_int_t)self->conf->lanes, "commits",
                          (json_int_t)self->commits, "resends",
                          (json_int_t)self->resends, "spool_batches",
                          (json_int_t)ingest_spool_records(self->spool),
                          "spool_bytes", (json_int_t)ingest_spool_bytes(self->spool),
                          "spool_segments",
                          (json_int_t)ingest_spool_segments(self->spool));
        json_object_set_new(reply, "mqtt_connected",
                            json_boolean(self->mqtt && ingest_mqtt_connected(self->mqtt)));
        json_object_set_new(reply, "mqtt_received", json_integer(
            self->mqtt ? (json_int_t)ingest_mqtt_received(self->mqtt) : 0));
        json_object_set_new(reply, "mqtt_bad", json_integer((json_int_t)self->mqtt_bad));
        json_object_set_new(reply, "spool_unreadable", json_integer(
            (json_int_t)ingest_spool_unreadable(self->spool)));
        json_object_set_new(reply, "rate_limited", json_integer((json_int_t)self->limited));
        json_object_set_new(reply, "bad_confirms",
                            json_integer((json_int_t)self->bad_confirms));
        json_object_set_new(reply, "over_quota", json_integer((json_int_t)self->over_quota));
        json_object_set_new(reply, "expired",
                            json_integer((json_int_t)self->expired));
        json_object_set_new(reply, "over_series_quota",
                            json_integer((json_int_t)self->over_series));
        if (self->mqspool) {
            json_object_set_new(reply, "mqspool_records", json_integer(
                (json_int_t)ingest_mqspool_records(self->mqspool)));
            json_object_set_new(reply, "mqspool_skipped", json_integer(
                (json_int_t)ingest_mqspool_skipped(self->mqspool)));
        }
        status = 200;
    } else if (strcmp(op, "ingest") != 0) {
        reply = rpc_error("unknown_op", "ingestd does not know this request", op);
        status = 400;
    } else if (form == NULL || (f = ingest_parse_form(form)) < 0 || body == NULL) {
        reply = rpc_error("bad_request", "ingest needs a form and a body", "rpc");
        status = 400;
    } else if (s_tenant(req) == NULL) {
        reply = rpc_error("bad_request", "tenant must be a valid tag value",
                          "tenant");
        status = 400;
    } else if (s_expired(req)) {
        /* apid has answered 503 already; spooled now, these readings
         * would land after writes its client made since (PROTOCOL.md). */
        self->expired++;
        reply = rpc_error("expired", "the relay stopped waiting for this "
                          "request; it was not applied", "until");
        status = 503;
    } else {
        bool wait;
        status = s_ingest(self, f, body, json_string_length(json_object_get(req, "body")),
                          json_string_value(json_object_get(req, "precision")),
                          s_tenant(req), &reply, &wait);
        if (wait) {
            s_wait_commit(self, NULL, &env, status, reply);
            json_decref(req);
            return 0;
        }
    }
    rpc_reply_send(sock, &env, status, reply);
    json_decref(req);
    return 0;
}

/* Inflate a gzip body into at most max bytes. Returns the new buffer
 * (caller frees) or NULL with *why set: a truncated or corrupt stream, or
 * one that inflates past max (a "gzip bomb" is refused, not followed). */
static char *
s_gunzip(const char *in, size_t len, size_t max, size_t *outlen,
         const char **why, int *status)
{
    z_stream z;
    size_t cap = len * 4 + 1024, n = 0;
    char *out;
    int rc;

    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) {
        *why = "cannot start gzip decoding";
        *status = 500;
        return NULL;
    }
    if (cap > max + 1)
        cap = max + 1;
    out = xmalloc(cap);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    do {
        if (n == cap) {
            if (cap > max) {
                inflateEnd(&z);
                free(out);
                *why = "gzip body inflates past the body limit";
                *status = 413;
                return NULL;
            }
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            out = xrealloc(out, cap);
        }
        z.next_out = (unsigned char *)out + n;
        z.avail_out = (uInt)(cap - n);
        rc = inflate(&z, Z_NO_FLUSH);
        n = cap - z.avail_out;
    } while (rc == Z_OK);
    inflateEnd(&z);
    if (rc != Z_STREAM_END) {
        free(out);
        *why = rc == Z_BUF_ERROR ? "truncated gzip body" : "corrupt gzip body";
        *status = 400;
        return NULL;
    }
    if (n > max) {
        free(out);
        *why = "gzip body inflates past the body limit";
        *status = 413;
        return NULL;
    }
    *outlen = n;
    return out;
}

/* The tenant a write on the own port acts for: without keys configured,
 * the default tenant; with keys, the tenant of the key the client sends
 * (apikey_credential: Authorization Token or Bearer, Basic with the key
 * as the password, or the "p" parameter of InfluxDB 1 clients), which
 * must be a writer's. Returns 0, or -1 after replying 401 or 403. */
static int
s_own_port_tenant(ingestd_t *self, http_req_t *req, char *tenant, size_t len)
{
    char buf[APIKEY_CRED_MAX];
    const char *cred;
    json_t *k;

    snprintf(tenant, len, "%s", SERIES_TENANT_DEFAULT);
    if (self->keys == NULL)
        return 0;
    cred = apikey_credential(http_req_header(req, "Authorization"), http_req_arg(req, "p"),
                             buf, sizeof buf);
    if (cred == NULL || (k = apikey_find(self->keys, cred)) == NULL) {
        http_req_add_header(req, "WWW-Authenticate", "Token realm=\"sensorpipe\"");
        http_req_reply_error(req, 401, "unauthorized",
                             "an API key is required (Authorization: Token <key>, "
                             "Basic with the key as the password, or u and p "
                             "parameters)", "Authorization");
        return -1;
    }
    if (apikey_role(json_string_value(json_object_get(k, "role"))) < 2) {
        json_decref(k);
        http_req_reply_error(req, 403, "forbidden", "this key may not write",
                             "Authorization");
        return -1;
    }
    snprintf(tenant, len, "%s", json_string_value(json_object_get(k, "tenant")));
    json_decref(k);
    return 0;
}

static void
s_on_http(http_req_t *req, void *arg)
{
    ingestd_t *self = arg;
    const char *path = http_req_path(req), *method = http_req_method(req);
    const char *prec = http_req_arg(req, "precision");
    size_t len;
    const char *body;
    json_t *reply;
    int form, status = 400;
    char tenant[SERIES_NAME_MAX + 1];

    if (strcmp(path, "/health") == 0 || strcmp(path, "/ping") == 0) {
        http_req_reply_json(req, strcmp(path, "/ping") ? 200 : 204,
                            json_pack("{s:s}", "status", "ok"));
        return;
    }
    if (!strcmp(path, "/api/v1/ingest"))
        form = INGEST_FORM_INGEST;
    else if (!strcmp(path, "/api/v1/record"))
        form = INGEST_FORM_RECORD;
    else if (!strcmp(path, "/write") || !strcmp(path, "/api/v2/write"))
        form = INGEST_FORM_WRITE;
    else {
        http_req_reply_error(req, 404, "not_found", "no such route", path);
        return;
    }
    if (strcmp(method, "POST") != 0) {
        http_req_add_header(req, "Allow", "POST");
        http_req_reply_error(req, 405, "method_not_allowed", "use POST", path);
        return;
    }
    if (s_own_port_tenant(self, req, tenant, sizeof tenant))
        return; /* replied 401 or 403 */
    {
        /* The client is its credential when it sends one (InfluxDB clients
         * send "Token ..."), else its address. */
        char key[300], peer[64];
        const char *auth = http_req_header(req, "Authorization");
        int wait;
        if (auth)
            snprintf(key, sizeof key, "a:%s", auth);
        else
            snprintf(key, sizeof key, "p:%s", http_req_peer(req, peer, sizeof peer));
        if ((wait = bucket_take(self->http_rate, key, 1, clock_mono_ns())) != 0) {
            char ra[16];
            self->limited++;
            snprintf(ra, sizeof ra, "%d", wait);
            http_req_add_header(req, "Retry-After", ra);
            http_req_reply_error(req, 429, "rate_limited",
                                 "too many requests from this client", "client");
            return;
        }
    }
    const char *ce = http_req_header(req, "Content-Encoding");
    char *inflated = NULL;
    body = http_req_body(req, &len);
    if (ce && strcasecmp(ce, "gzip") == 0) {
        const char *why = "bad gzip body";
        if ((inflated = s_gunzip(body, len, (size_t)self->conf->body_max, &len,
                                 &why, &status)) == NULL) {
            http_req_reply_error(req, status, status == 413 ? "payload_too_large"
                                                            : "invalid_body",
                                 why, "body");
            return;
        }
        body = inflated;
    } else if (ce && strcasecmp(ce, "identity") != 0) {
        http_req_reply_error(req, 415, "unsupported_encoding",
                             "Content-Encoding must be gzip or identity", "headers");
        return;
    }
    /* InfluxDB 1 and 2 clients both send "precision". */
    bool wait;
    status = s_ingest(self, form, body, len, prec, tenant, &reply, &wait);
    free(inflated);
    if (wait) {
        s_wait_commit(self, req, NULL, status, reply);
        return;
    }
    if (status == 503)
        http_req_add_header(req, "Retry-After", INGESTD_RETRY_AFTER);
    if (status == 429) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)json_integer_value(json_object_get(
                                            json_object_get(reply, "error"), "retry_after")));
        http_req_add_header(req, "Retry-After", ra);
    }
    if (status == 204) {
        json_decref(reply);
        http_req_reply(req, 204, "application/json", xstrdup(""), 0);
        return;
    }
    http_req_reply_json(req, status, reply);
}

/* SIGHUP: re-read the file. Live from here on: body-max, spool-max,
 * resend-after, drain, and the rate limits (fresh buckets when they
 * change); CFG_IMMUTABLE settings are kept and logged "requires restart". */
static void
s_on_event(enum daemon_event ev, void *arg)
{
    ingestd_t *self = arg;
    struct ingestd_conf *c;

    if (ev != DAEMON_EV_RELOAD)
        return;
    if ((c = reload_conf(self->conf, sizeof *c)) == NULL)
        return;
    if (c->rate != self->conf->rate) {
        bucket_destroy(&self->http_rate);
        self->http_rate = bucket_new(c->rate, c->rate * 2);
    }
    if (c->device_rate != self->conf->device_rate) {
        bucket_destroy(&self->device_rate);
        self->device_rate = bucket_new(c->device_rate, c->device_rate * 2);
    }
    ingest_quota_set(self->quota, c->tenant_rate, c->tenant_series);
    if (self->http)
        http_server_set_body_max(self->http, (size_t)c->body_max);
    self->conf = c;
    reload_free((void **)&self->reloaded);
    self->reloaded = c;
}

/* Filter mode: JSON lines on stdin, in chunks of whole lines. */
static int
s_run_stdin(ingestd_t *self)
{
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    struct ingest_report r;

    while ((len = getline(&line, &cap, stdin)) > 0) {
        lineno++;
        msg_batch_reset(b);
        /* stdin is the operator's own pipe: keys as given, tenant tags too. */
        ingest_parse(INGEST_FORM_LINES, line, (size_t)len, clock_now_ns(), 1,
                     NULL, b, &r);
        if (r.rejected) {
            json_t *e = json_array_get(r.errors, 0);
            log_warnx("stdin:%zu: %s: %s", lineno,
                      json_string_value(json_object_get(e, "field")),
                      json_string_value(json_object_get(e, "reason")));
        }
        self->rejected += r.rejected;
        ingest_parse_report_clear(&r);
        if (self->conf->use_stdout) {
            for (size_t i = 0; i < msg_batch_size(b); i++) {
                const struct msg_reading *m = msg_batch_reading(b, i);
                char ts[40], v[40];
                json_t *k = json_string(msg_batch_str(b, m->key_off));
                char *ks = json_dumps(k, JSON_ENCODE_ANY);
                printf("{\"series\":%s,\"timestamp\":\"%s\",\"value\":%s}\n",
                       ks, clock_format(m->ts, ts, sizeof ts),
                       strutil_dtoa(m->value, v, sizeof v));
                free(ks);
                json_decref(k);
            }
            self->accepted += msg_batch_size(b);
            continue;
        }
        /* Blocking send: a pipeline waits for aggd rather than dropping. */
        while (msg_batch_size(b) && s_forward(self, b) == -1)
            zclock_sleep(10);
    }
    free(line);
    msg_batch_destroy(&b);
    fflush(stdout);
    log_info("stdin: %llu readings accepted, %llu rejected",
             (unsigned long long)self->accepted,
             (unsigned long long)self->rejected);
    return 0;
}

int
ingestd_run(ingestd_t *self)
{
    int sigfd;
    char summary[256];

    if (self->conf->use_stdin)
        return s_run_stdin(self);
    if ((sigfd = daemon_signals(self->loop, s_on_event, self)) == -1)
        return -1;
    zloop_reader(self->loop, self->router, s_on_query, self);
    zloop_reader(self->loop, self->confirm, s_on_confirm, self);
    for (unsigned i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        zloop_reader(self->loop, ingest_spool_sock(self->spool, i), s_on_synced,
                     self);
    zloop_timer(self->loop, INGESTD_FLUSH_MS, 0, s_on_flush, self);
    s_flush(self); /* what a previous run left unconfirmed goes out again */
    self->mqtt_timer = -1;
    if (self->conf->mqtt_port > 0) {
        struct ingest_mqtt_conf mc = {
            self->conf->mqtt_host, (int)self->conf->mqtt_port, self->conf->id,
            self->conf->mqtt_group,
            *self->conf->mqtt_user ? self->conf->mqtt_user : NULL,
            *self->conf->mqtt_user ? self->conf->mqtt_password : NULL, 30,
            *self->conf->mqtt_spool == '\0'};
        self->mqtt_batch = msg_batch_new(MSG_TYPE_READINGS);
        if (*self->conf->mqtt_spool) {
            char cursor[1100];
            snprintf(cursor, sizeof cursor, "%s/mqspool.cursor", self->spool_dir);
            self->mqspool = ingest_mqspool_new(self->conf->mqtt_spool, cursor);
            if (self->mqspool == NULL) {
                close(sigfd);
                return -1;
            }
            zloop_timer(self->loop, INGESTD_MQTT_MS, 0, s_on_mqspool, self);
            zloop_reader(self->loop, ingest_mqspool_sock(self->mqspool),
                         s_on_cursor, self);
        }
        self->mqtt = ingest_mqtt_new(self->loop, &mc, s_on_mqtt, self);
        if (self->mqtt == NULL) {
            close(sigfd);
            return -1;
        }
    }
    /* Two fsyncs in flight, unless the broker plugin's cursor follows
     * each one (ingest_mqspool_syncing keeps one position). */
    ingest_spool_pipeline(self->spool, self->mqspool ? 1 : 2);
    if (self->conf->port >= 0) {
        self->http = http_server_new_tls(self->loop, self->conf->listen,
                                         (int)self->conf->port,
                                         (size_t)self->conf->body_max,
                                         self->conf->tls_cert, self->conf->tls_key,
                                         s_on_http, self);
        if (self->http == NULL) {
            close(sigfd);
            return -1;
        }
    }
    snprintf(summary, sizeof summary, "lanes=%lld %s=%s:%d mqtt=%s:%lld query=%s",
             (long long)self->conf->lanes,
             self->http && http_server_tls(self->http) ? "https" : "http",
             self->conf->listen,
             self->http ? http_server_port(self->http) : -1,
             self->conf->mqtt_host, (long long)self->conf->mqtt_port,
             zsock_endpoint(self->router));
    daemon_ready(summary);
    zloop_start(self->loop);
    ingest_mqtt_destroy(&self->mqtt); /* stop intake first */
    if (self->mqtt_batch)
        s_on_mqtt_spool(self->loop, 0, self);
    /* Drain: acknowledge what is written, hand aggd what it can take
     * within the deadline; the rest stays in the spool for next time. */
    {
        bool ok = ingest_spool_sync(self->spool) == 0;
        if (ok && self->mqspool) {
            ingest_mqspool_syncing(self->mqspool);
            ingest_mqspool_durable(self->mqspool);
            ingest_mqspool_save(self->mqspool);
        }
        s_answer_waiters(self, ingest_spool_written(self->spool), ok);
    }
    http_server_destroy(&self->http);
    int64_t deadline = clock_mono_ns() + self->conf->drain;
    do {
        s_flush(self);
        zclock_sleep(10);
        while (zsock_events(self->confirm) & ZMQ_POLLIN)
            s_on_confirm(self->loop, self->confirm, self);
    } while (ingest_spool_records(self->spool) > 0 && clock_mono_ns() < deadline);
    if (ingest_spool_records(self->spool) > 0)
        log_info("ingestd: %zu batches stay in the spool until aggd confirms them",
                 ingest_spool_records(self->spool));
    close(sigfd);
    return 0;
}

/* Run the group commit the loop would: start it, wait for the fsync
 * thread, take its answer. */
static void
s_test_commit(ingestd_t *d)
{
    s_commit(d);
    if (ingest_spool_sync_busy(d->spool)) {
        zsock_t *sock = ingest_spool_sock(d->spool, 0);
        zmq_pollitem_t item = {zsock_resolve(sock), 0, ZMQ_POLLIN, 0};
        assert(zmq_poll(&item, 1, 5000) == 1);
        s_on_synced(d->loop, sock, d);
    }
}

void
ingestd_test(bool verbose)
{
    char dir[] = "/tmp/ingestd_test.XXXXXX", ep[EP_MAX], spool[1100];
    struct ingestd_conf c = {0};
    ingestd_t *d;
    zsock_t *pull, *conf_push;
    json_t *reply;
    msg_batch_t *b, *cb;
    bool wait;
    const char *body = "{\"data\":[{\"name\":\"a\",\"value\":1},"
                       "{\"name\":\"b\",\"value\":2}]}";

    assert(mkdtemp(dir));
    snprintf(spool, sizeof spool, "%s/spool", dir);
    c.rundir = dir;
    c.id = "ingestd.t";
    c.lanes = 1;
    c.down = c.query = c.confirm = "";
    c.spool = spool;
    c.spool_max = 1000;
    c.segment = 1 << 20;
    c.resend = CLOCK_NS_PER_S;
    c.hwm = 10;
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.in", dir);
    pull = zsock_new_pull(ep);
    d = ingestd_new(&c);
    assert(d);
    /* Accepted readings wait for the group commit, then go downstream. */
    assert(s_ingest(d, INGEST_FORM_RECORD, body, strlen(body), NULL,
                    SERIES_TENANT_DEFAULT, &reply, &wait) == 200 && wait);
    json_decref(reply);
    assert(ingest_spool_records(d->spool) == 1);
    s_test_commit(d);
    zsock_set_rcvtimeo(pull, 2000);
    assert(msg_batch_recv(pull, &b) == MSG_OK);
    assert(msg_batch_size(b) == 2 && msg_batch_env(b)->seq == 1);
    /* It says what aggd confirmed when it was spooled: nothing yet. */
    assert(msg_batch_env(b)->has_acked && msg_batch_env(b)->acked == 0);
    TEST_STREQ(msg_batch_env(b)->producer, "ingestd.t");
    msg_batch_destroy(&b);
    /* aggd's confirmation empties the spool. */
    snprintf(ep, sizeof ep, "ipc://%s/ingestd.confirm", dir);
    conf_push = zsock_new_push(ep);
    cb = msg_batch_new(MSG_TYPE_CONFIRM);
    msg_batch_add_confirm(cb, "ingestd.t", 0, 1);
    msg_batch_add_confirm(cb, "someone.else", 0, 99);
    msg_batch_send(cb, conf_push, 0);
    zsock_set_rcvtimeo(d->confirm, 2000);
    s_on_confirm(d->loop, d->confirm, d);
    assert(ingest_spool_records(d->spool) == 0);
    /* A confirmation past what was sent (a stray peer on the PULL) covers
     * at most what was sent: the next batch, spooled and sent, is still
     * kept until its own confirmation, which then counts. */
    assert(s_ingest(d, INGEST_FORM_RECORD, body, strlen(body), NULL,
                    SERIES_TENANT_DEFAULT, &reply, &wait) == 200);
    json_decref(reply);
    msg_batch_reset(cb);
    msg_batch_add_confirm(cb, "ingestd.t", 0, UINT64_MAX);
    msg_batch_send(cb, conf_push, 0);
    s_on_confirm(d->loop, d->confirm, d);
    assert(ingest_spool_records(d->spool) == 1 && d->bad_confirms == 1);
    s_test_commit(d);
    assert(msg_batch_recv(pull, &b) == MSG_OK && msg_batch_env(b)->seq == 2);
    assert(msg_batch_env(b)->has_acked && msg_batch_env(b)->acked == 1);
    msg_batch_destroy(&b);
    msg_batch_reset(cb);
    msg_batch_add_confirm(cb, "ingestd.t", 0, 2);
    msg_batch_send(cb, conf_push, 0);
    s_on_confirm(d->loop, d->confirm, d);
    assert(ingest_spool_records(d->spool) == 0 && d->bad_confirms == 1);
    /* Unconfirmed past the spool limit: 503, never dropped silently. */
    int status = 200;
    for (int i = 0; i < 100 && status == 200; i++) {
        status = s_ingest(d, INGEST_FORM_RECORD, body, strlen(body), NULL,
                          SERIES_TENANT_DEFAULT,
                          &reply, &wait);
        json_decref(reply);
    }
    assert(status == 503 && d->refused == 1);
    s_test_commit(d);
    msg_batch_destroy(&cb);
    zsock_destroy(&conf_push);
    ingestd_destroy(&d);
    zsock_destroy(&pull);
    zdir_t *zd = zdir_new(dir, NULL); /* the spool and sockets, then dir */
    zdir_remove(zd, true);
    zdir_destroy(&zd);
    (void)verbose;
    TEST_OK("ingestd");
}
