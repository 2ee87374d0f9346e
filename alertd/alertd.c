/*
 * alertd: the alerting daemon's server object (see alertd.h).
 *
 * One zloop: the PULL reader applies batches from anomalyd to the engine,
 * the ROUTER reader answers queries. Every state change the engine
 * reports is logged at info level (one line per change, never per
 * reading) and collected into one alerts batch, published after the input
 * batch that caused it.
 *
 * anomalyd sends a readings batch and then, when some of its readings
 * were anomalous, an anomalies batch with the next sequence number. So
 * that a rule like "anomaly(x) > 0.9" sees the score of a reading when it
 * is evaluated (and does not flap), the reader takes every batch already
 * queued, and applies a readings batch together with the anomalies batch
 * that follows it: scores first, then the readings, evaluated once.
 */
#include "alertd/alertd.h"
#include "alertd/alert_devices.h"
#include "alertd/alert_engine.h"
#include "alertd/alert_file.h"
#include "alertd/alert_group.h"
#include "alertd/alert_notify.h"
#include "alertd/alert_ruleset.h"
#include "alertd/alert_store.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/reading.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <errno.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* Most batches taken from the PULL queue in one go. */
#define ALERTD_BATCH_MAX 64
/* Interval of the deadman tick. */
#define ALERTD_TICK_MS 1000
/* Readings batches held for their anomalies batch (one a producer and
 * lane, normally one in all), and how long before they are applied
 * without it (the tick looks). */
#define ALERTD_HELD_MAX 8
#define ALERTD_HOLD_NS (500 * 1000 * 1000LL)

struct alertd {
    const struct alertd_conf *conf; /* borrowed configuration */
    zloop_t *loop;                  /* the one event loop (daemon mode) */
    zsock_t *pull;                  /* readings and anomalies in */
    zsock_t *router;                /* queries from apid */
    zsock_t *pub;                   /* alert events out */
    alert_engine_t *engine;         /* rules, windows, alerts */
    alert_ruleset_t *ruleset;       /* file and API rules, as sources */
    alert_devices_t *devices;       /* device metadata (device.NAME) */
    msg_batch_t *out;               /* events of the current input batch */
    FILE *events;                   /* filter mode: JSON-line events */
    char producer[64];              /* "alertd.<lane>" */
    uint64_t seq;                   /* alerts batches published */
    uint64_t batches_in;            /* batches applied */
    uint64_t bad_batches;           /* batches dropped as malformed */
    uint64_t queries;               /* queries answered */
    uint64_t reloads;               /* successful rule reloads */
    uint64_t reload_failures;       /* refused rule reloads */
    struct ratelimit rl_bad;        /* complaints about bad batches */
    int64_t stream_ts;              /* latest reading time seen, ns */
    int64_t stream_mono;            /* monotonic time when it was seen */
    int64_t tick_ts;                /* stream time of the last tick */
    alert_store_t *store;           /* alerts, history, outbox; or NULL */
    alert_notify_t *notify;         /* outbox delivery; or NULL */
    bool queued;                    /* outbox rows since the last wake */
    bool in_tx;                     /* a store transaction is open */
    uint64_t silenced;              /* notifications a silence muted */
    uint64_t throttled;             /* notifications a throttle held */
    uint64_t escalations;           /* escalations queued */
    uint64_t inhibited;             /* notifications an inhibition held */
    uint64_t groups;                /* group notifications queued */
    msg_batch_t *held[ALERTD_HELD_MAX]; /* readings waiting for the
                                       anomalies batch announced */
    int64_t held_at[ALERTD_HELD_MAX]; /* monotonic ns each was first held */
    size_t nheld;
    uint64_t unpaired;              /* held ones applied without it */
};

/* The stream clock: event time advanced by the wall time since the
 * latest reading, so deadman rules behave the same for live data and
 * for a replay with old timestamps. INT64_MIN before any reading. */
static int64_t
s_stream_now(const alertd_t *self)
{
    if (self->stream_ts == INT64_MIN)
        return INT64_MIN;
    return self->stream_ts + (clock_mono_ns() - self->stream_mono);
}

static void
s_observe(alertd_t *self, int64_t ts)
{
    if (ts > self->stream_ts) {
        self->stream_ts = ts;
        self->stream_mono = clock_mono_ns();
    }
}

int
alertd_conf_check(const struct alertd_conf *conf)
{
    int errors = 0;
    struct alert_file f;

    if (conf->use_stdin != conf->use_stdout) {
        fprintf(stderr, "alertd: --stdin and --stdout go together\n");
        errors++;
    }
    if (conf->rules && *conf->rules) {
        if (alert_file_load(conf->rules, &f) == -1)
            errors++;
        else
            alert_file_free(&f);
    }
    return errors ? -1 : 0;
}

static zsock_t *
s_socket(int type, const char *tmpl, const char *rundir, const char *what,
         unsigned lane, int64_t hwm)
{
    return ep_socket(type, tmpl, rundir, "alertd", what, lane, true, hwm);
}

/* Open a store transaction if none is open (committed by s_flush). */
static void
s_tx(alertd_t *self)
{
    if (self->store && !self->in_tx && alert_store_begin(self->store) == 0)
        self->in_tx = true;
}

/* Commit the store's transaction and wake the notify actor. */
static void
s_flush(alertd_t *self)
{
    if (self->in_tx) {
        alert_store_commit(self->store);
        self->in_tx = false;
    }
    if (self->queued && self->notify) {
        alert_notify_wake(self->notify);
        self->queued = false;
    }
}

/* The notification body of alert id's change (caller frees); key is its
 * idempotency key, or NULL (a member of a group notification). */
static char *
s_body(int64_t id, const struct alert_event *ev, const char *state,
       const char *key, bool escalation)
{
    char tb[40], sb[40], *body;
    json_t *j;

    j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:f, s:s, s:s, s:b}",
                  "alert_id", (json_int_t)id, "rule", ev->rule, "scope",
                  ev->scope, "series", ev->key, "state", state, "severity",
                  ev->severity, "value", ev->value, "timestamp",
                  clock_format(ev->ts, tb, sizeof tb), "since",
                  clock_format(ev->since, sb, sizeof sb), "escalation",
                  escalation);
    if (key)
        json_object_set_new(j, "idempotency_key", json_string(key));
    body = mpjson_dumps(j);
    json_decref(j);
    return body;
}

/* Queue one notification of alert id on channel. */
static void
s_queue(alertd_t *self, int64_t id, const struct alert_event *ev,
        const char *state, const char *channel, bool escalation)
{
    char key[40], *body;

    alert_notify_key(ev->rule, ev->scope, ev->since, state, ev->severity,
                     channel, key, sizeof key);
    body = s_body(id, ev, state, key, escalation);
    if (alert_store_enqueue(self->store, id, channel, key, body,
                            clock_now_ns()) == 1)
        self->queued = true;
    free(body);
}

/* Queue the groups whose window ended at now (INT64_MAX: all). */
static void
s_groups(alertd_t *self, int64_t now)
{
    int n;

    if (self->store == NULL)
        return;
    s_tx(self);
    if ((n = alert_group_flush(self->store, now)) > 0) {
        self->queued = true;
        self->groups += (uint64_t)n;
    }
}

/* Id of a firing alert of the rule that inhibits r, in the same tags, or
 * 0. */
static int64_t
s_inhibitor(alertd_t *self, const alert_rule_t *r, const char *scope)
{
    const char *inh = r ? alert_rule_inhibitor(r) : NULL;
    const char *tags[ALERT_RULE_INHIBIT_TAGS_MAX];
    size_t n = 0;

    if (inh == NULL)
        return 0;
    while (n < ALERT_RULE_INHIBIT_TAGS_MAX &&
           (tags[n] = alert_rule_inhibit_on(r, n)) != NULL)
        n++;
    return alert_store_inhibitor(self->store, inh, scope, tags, n);
}

/* Record an engine event in the store and decide its notifications:
 * firing (and each severity step) and, when a firing was notified,
 * resolved; not while a silence matches; firing not again within the
 * rule's throttle. */
static void
s_record(alertd_t *self, const struct alert_event *ev)
{
    const alert_rule_t *r = ev->r;
    bool firing = strcmp(ev->state, "firing") == 0;
    bool resolved = strcmp(ev->state, "resolved") == 0;
    int64_t id, sid, last;
    char note[64];

    s_tx(self);
    if ((id = alert_store_event(self->store, ev)) <= 0)
        return;
    if (!(firing || resolved) || r == NULL ||
        alert_rule_notify_count(r) == 0)
        return;
    last = alert_store_notified(self->store, id);
    if (resolved && last == 0)
        return; /* its firing was never notified */
    if ((sid = alert_store_silenced(self->store, ev->rule, ev->scope,
                                    clock_now_ns())) > 0) {
        snprintf(note, sizeof note, "%s not notified: silence %lld",
                 ev->state, (long long)sid);
        alert_store_note(self->store, id, ev->ts, note);
        self->silenced++;
        return;
    }
    if (firing && (sid = s_inhibitor(self, r, ev->scope)) > 0) {
        snprintf(note, sizeof note, "firing not notified: inhibited by "
                 "alert %lld", (long long)sid);
        alert_store_note(self->store, id, ev->ts, note);
        self->inhibited++;
        return;
    }
    if (firing && last && alert_rule_throttle(r) &&
        ev->ts - last < alert_rule_throttle(r)) {
        alert_store_note(self->store, id, ev->ts,
                         "firing not notified: throttled");
        self->throttled++;
        return;
    }
    if (alert_rule_group(r, NULL)) {
        char *body = s_body(id, ev, ev->state, NULL, false);
        if (alert_group_add(self->store, r, id, ev->scope, ev->ts, body) == 0)
            alert_store_note(self->store, id, ev->ts,
                             "notification grouped");
        free(body);
    } else {
        for (size_t i = 0; i < alert_rule_notify_count(r); i++)
            s_queue(self, id, ev, ev->state, alert_rule_notify(r, i), false);
    }
    if (firing)
        alert_store_set_notified(self->store, id, ev->ts);
}

struct s_escalate {
    alertd_t *self;       /* the daemon */
    const alert_rule_t *rule; /* the rule escalating */
    const char *channel;  /* where to */
    int64_t now;          /* stream time */
};

static void
s_escalate_one(const struct alert_store_open *a, void *arg)
{
    struct s_escalate *e = arg;
    struct alert_event ev = {a->rule,     a->scope, a->series, "escalated",
                             a->severity, e->now,   a->value,  a->since,
                             NULL};
    char note[128];

    /* A silence mutes escalations too; checked again on every tick, so
     * one that expires while the alert still fires lets it escalate. */
    if (alert_store_silenced(e->self->store, a->rule, a->scope,
                             clock_now_ns()) > 0 ||
        s_inhibitor(e->self, e->rule, a->scope) > 0)
        return;
    s_queue(e->self, a->id, &ev, "escalated", e->channel, true);
    alert_store_set_escalated(e->self->store, a->id, e->now);
    snprintf(note, sizeof note, "escalated to %s: not acknowledged",
             e->channel);
    alert_store_note(e->self->store, a->id, e->now, note);
    e->self->escalations++;
    log_info("alert escalated: rule=%s scope=%s channel=%s", a->rule,
             a->scope, e->channel);
}

/* Escalate firing alerts nobody acknowledged in time. */
static void
s_escalate(alertd_t *self, int64_t now)
{
    const alert_rule_t *r;
    int64_t after;
    const char *ch;

    if (self->store == NULL)
        return;
    for (size_t i = 0; (r = alert_engine_rule(self->engine, i)); i++) {
        if ((ch = alert_rule_escalate(r, &after)) == NULL)
            continue;
        struct s_escalate e = {self, r, ch, now};
        s_tx(self);
        alert_store_foreach_unacked(self->store, alert_rule_name(r),
                                    now - after, s_escalate_one, &e);
    }
}

/* The engine's callback: one info line per change, and the event goes
 * into the outgoing batch or onto stdout. */
static void
s_on_alert(const struct alert_event *ev, void *arg)
{
    alertd_t *self = arg;
    char tb[40], vb[32];

    clock_format(ev->ts, tb, sizeof tb);
    strutil_dtoa(ev->value, vb, sizeof vb);
    log_info("alert %s: rule=%s scope=%s severity=%s value=%s at=%s",
             ev->state, ev->rule, ev->scope, ev->severity, vb, tb);
    if (self->events) {
        char sb[40];
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:s}",
                              "rule", ev->rule, "scope", ev->scope, "series",
                              ev->key, "state", ev->state, "severity",
                              ev->severity, "timestamp", tb, "value",
                              ev->value, "since",
                              clock_format(ev->since, sb, sizeof sb));
        char *s = mpjson_dumps(j);
        fprintf(self->events, "%s\n", s);
        fflush(self->events);
        free(s);
        json_decref(j);
    }
    if (self->out)
        msg_batch_add_alert(self->out, ev->rule, ev->scope, ev->state,
                            ev->severity, ev->ts, ev->value);
    if (self->store)
        s_record(self, ev);
}

static alert_engine_t *
s_engine_new(alertd_t *self)
{
    return alert_engine_new((size_t)self->conf->window_points,
                            (size_t)self->conf->max_series, s_on_alert, self);
}

/* Start the notify actor with its first channels: it delivers what is
 * queued at once, so it starts only when the channels are known. */
static int
s_open_notify(alertd_t *self, alert_channel_t *const *ch, size_t nch)
{
    const struct alertd_conf *c = self->conf;
    struct alert_notify_conf nc = {0};

    nc.db = c->db;
    nc.env.webhook_secret = c->webhook_secret;
    nc.env.timeout = c->notify_timeout;
    nc.env.mqtt_host = c->mqtt_host;
    nc.env.mqtt_port = (int)c->mqtt_port;
    nc.env.sendmail = c->sendmail;
    nc.retry_base = c->retry_base;
    nc.retry_max = c->retry_max;
    nc.max_attempts = c->max_attempts;
    self->notify = alert_notify_new(&nc, ch, nch);
    return self->notify ? 0 : -1;
}

/* Give the engine the rule set and the notify actor its channels. The
 * alerts of rules that changed or went away are resolved (emitted). */
static void
s_apply(alertd_t *self)
{
    alert_rule_t **rules;
    alert_channel_t **ch;
    size_t nch, n = alert_ruleset_build(self->ruleset, &rules, &ch, &nch);
    int64_t now = s_stream_now(self);

    alert_engine_set_rules(self->engine, rules, n,
                           now == INT64_MIN ? clock_now_ns() : now);
    if (self->notify)
        alert_notify_set_channels(self->notify, ch, nch);
    else if (self->store && s_open_notify(self, ch, nch) == -1)
        log_warnx("alertd: no notifications without the notify actor");
    for (size_t i = 0; i < nch; i++)
        alert_channel_destroy(&ch[i]);
    free(ch);
    free(rules);
    s_flush(self);
}

int
alertd_reload(alertd_t *self)
{
    struct alert_file f;

    if (self->conf->rules == NULL || *self->conf->rules == '\0') {
        log_info("alertd: no rules file configured; nothing to reload");
        return 0;
    }
    if (alert_file_load(self->conf->rules, &f) == -1) {
        self->reload_failures++;
        log_err("alertd: reload of %s failed; keeping the %zu current rules",
                self->conf->rules, alert_ruleset_size(self->ruleset));
        return -1;
    }
    alert_ruleset_set_file(self->ruleset, &f);
    s_apply(self);
    self->reloads++;
    log_info("alertd: loaded %zu rule%s and %zu channel%s from %s", f.nrules,
             f.nrules == 1 ? "" : "s", f.nchannels,
             f.nchannels == 1 ? "" : "s", self->conf->rules);
    alert_file_free(&f);
    return 0;
}

/* Put the engine back where the store says it was; alerts of rules that
 * are gone are resolved. */
static void
s_restore_one(const struct alert_store_open *a, void *arg)
{
    alertd_t *self = arg;

    if (alert_engine_restore(self->engine, a->rule, a->scope, a->series,
                             a->state, a->severity, a->since, a->fired,
                             a->value) == -1) {
        struct alert_event ev = {a->rule,     a->scope, a->series,
                                 "resolved",  a->severity,
                                 a->fired > a->since ? a->fired : a->since,
                                 a->value,    a->since, NULL};
        log_info("alert resolved: rule=%s scope=%s: the rule is gone",
                 a->rule, a->scope);
        s_tx(self);
        alert_store_event(self->store, &ev);
    }
}

alertd_t *
alertd_new(const struct alertd_conf *conf)
{
    alertd_t *self = xcalloc(1, sizeof *self);
    unsigned lane = (unsigned)conf->lane;

    self->conf = conf;
    self->stream_ts = self->tick_ts = INT64_MIN;
    snprintf(self->producer, sizeof self->producer, "alertd.%u", lane);
    self->engine = s_engine_new(self);
    if (conf->db && *conf->db &&
        ((self->store = alert_store_new(conf->db, 5000)) == NULL ||
         alert_group_init(self->store) == -1))
        goto fail;
    self->ruleset =
        alert_ruleset_new(self->store ? alert_store_db(self->store) : NULL);
    if (self->ruleset == NULL)
        goto fail;
    self->devices = alert_devices_new(
        self->store ? alert_store_db(self->store) : NULL, self->engine);
    if (self->devices == NULL)
        goto fail;
    if (conf->rules && *conf->rules) {
        if (alertd_reload(self) == -1)
            goto fail;
        self->reloads = 0;
    } else {
        s_apply(self);
        log_warnx("alertd: no rules file (--rules)%s",
                  self->store ? "; rules come from the API"
                              : " and no database: nothing will alert");
    }
    if (self->store && self->notify == NULL)
        goto fail; /* s_apply could not start it (logged) */
    if (self->store) {
        /* Open alerts go back into the engine once their rules are in. */
        alert_store_foreach_open(self->store, s_restore_one, self);
        s_flush(self);
        log_info("alertd: store %s, %zu rule%s", conf->db,
                 alert_ruleset_size(self->ruleset),
                 alert_ruleset_size(self->ruleset) == 1 ? "" : "s");
    }
    if (conf->use_stdin)
        return self;
    if (daemon_mkdirs(conf->rundir) == -1) {
        log_warn("alertd: cannot create %s", conf->rundir);
        goto fail;
    }
    self->loop = zloop_new();
    self->pull = s_socket(ZMQ_PULL, conf->in, conf->rundir, "in", lane,
                          conf->hwm);
    self->router = s_socket(ZMQ_ROUTER, conf->query, conf->rundir, "query",
                            lane, conf->hwm);
    self->pub = s_socket(ZMQ_PUB, conf->pub, conf->rundir, "pub", lane,
                         conf->hwm);
    if (!self->pull || !self->router || !self->pub)
        goto fail;
    return self;
fail:
    alertd_destroy(&self);
    return NULL;
}

void
alertd_destroy(alertd_t **self_p)
{
    alertd_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (size_t i = 0; i < self->nheld; i++)
        msg_batch_destroy(&self->held[i]);
    s_flush(self);
    alert_notify_destroy(&self->notify);
    alert_ruleset_destroy(&self->ruleset);
    alert_devices_destroy(&self->devices);
    alert_store_destroy(&self->store);
    zloop_destroy(&self->loop);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pull);
    msg_batch_destroy(&self->out);
    alert_engine_destroy(&self->engine);
    free(self);
    *self_p = NULL;
}

/* Apply one readings batch, with the scores of its anomalies batch when
 * one follows (an may be NULL). */
static void
s_apply_readings(alertd_t *self, msg_batch_t *b, msg_batch_t *an)
{
    size_t n = an ? msg_batch_size(an) : 0;

    for (size_t i = 0; i < n; i++) {
        const struct msg_anomaly *a = msg_batch_anomaly(an, i);
        alert_engine_score(self->engine, msg_batch_str(an, a->key_off),
                           a->ts, a->score, a->alarm);
    }
    n = msg_batch_size(b);
    for (size_t i = 0; i < n; i++) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        alert_engine_reading(self->engine, msg_batch_str(b, r->key_off),
                             r->ts, r->value);
        s_observe(self, r->ts);
    }
}

static void
s_apply_anomalies(alertd_t *self, msg_batch_t *an)
{
    size_t n = msg_batch_size(an);

    for (size_t i = 0; i < n; i++) {
        const struct msg_anomaly *a = msg_batch_anomaly(an, i);
        alert_engine_anomaly(self->engine, msg_batch_str(an, a->key_off),
                             a->ts, a->value, a->score, a->alarm);
    }
}

static void
s_apply_forecasts(alertd_t *self, msg_batch_t *fb)
{
    size_t n = msg_batch_size(fb);

    for (size_t i = 0; i < n; i++) {
        const struct msg_forecast *f = msg_batch_forecast(fb, i);
        alert_engine_forecast(self->engine, msg_batch_str(fb, f->key_off), f);
    }
}

static void
s_publish(alertd_t *self)
{
    if (self->out == NULL || msg_batch_size(self->out) == 0)
        return;
    struct msg_envelope *e = msg_batch_env(self->out);
    snprintf(e->producer, sizeof e->producer, "%s", self->producer);
    e->lane = (uint32_t)self->conf->lane;
    e->seq = ++self->seq;
    e->ts = clock_now_ns();
    /* Subscribers that are slow miss events (a gap in seq), by design. */
    msg_batch_send(self->out, zsock_resolve(self->pub), ZMQ_DONTWAIT);
    msg_batch_reset(self->out);
}

/* Are a and b of one producer and lane? */
static bool
s_same_stream(msg_batch_t *a, msg_batch_t *b)
{
    struct msg_envelope *e = msg_batch_env(a), *f = msg_batch_env(b);

    return strcmp(e->producer, f->producer) == 0 && e->lane == f->lane;
}

/* Is anomalies batch an the companion of readings batch b? */
static bool
s_companion(msg_batch_t *b, msg_batch_t *an)
{
    return msg_batch_type(an) == MSG_TYPE_ANOMALIES && s_same_stream(b, an) &&
           msg_batch_env(an)->seq == msg_batch_env(b)->seq + 1;
}

/* Receive one batch; NULL when it was malformed (counted). */
static msg_batch_t *
s_recv(alertd_t *self)
{
    msg_batch_t *b = NULL;
    int rc = msg_batch_recv(zsock_resolve(self->pull), &b);

    if (rc == MSG_OK && (msg_batch_type(b) == MSG_TYPE_READINGS ||
                         msg_batch_type(b) == MSG_TYPE_ANOMALIES ||
                         msg_batch_type(b) == MSG_TYPE_FORECASTS))
        return b;
    if (rc == -1)
        return NULL;
    self->bad_batches++;
    if (ratelimit_complain(&self->rl_bad))
        log_warnx("alertd: dropped a batch: %s (%llu so far)",
                  rc == MSG_OK ? "not readings, anomalies or forecasts"
                               : msg_strerror(rc),
                  (unsigned long long)self->bad_batches);
    msg_batch_destroy(&b);
    return NULL;
}

/* Apply one batch (readings with an, their anomalies, when one came),
 * then publish the alerts it raised; takes both. */
static void
s_apply_batch(alertd_t *self, msg_batch_t **bp, msg_batch_t **anp)
{
    msg_batch_t *b = *bp, *an = anp ? *anp : NULL;
    struct msg_envelope *e = msg_batch_env(b);

    log_debug("alertd: batch producer=%s lane=%u seq=%llu n=%zu%s", e->producer,
              e->lane, (unsigned long long)e->seq, msg_batch_size(b),
              an ? " with its anomalies" : "");
    if (msg_batch_type(b) == MSG_TYPE_READINGS)
        s_apply_readings(self, b, an);
    else if (msg_batch_type(b) == MSG_TYPE_FORECASTS)
        s_apply_forecasts(self, b);
    else
        s_apply_anomalies(self, b);
    self->batches_in += an ? 2 : 1;
    msg_batch_destroy(bp);
    if (anp)
        msg_batch_destroy(anp);
    s_publish(self);
}

/* Apply the held readings batches (all, or those held at least
 * ALERTD_HOLD_NS) without their anomalies batch. */
static void
s_release_held(alertd_t *self, bool all)
{
    int64_t now = clock_mono_ns();
    size_t k = 0;

    for (size_t i = 0; i < self->nheld; i++) {
        if (all || now - self->held_at[i] >= ALERTD_HOLD_NS) {
            self->unpaired++;
            s_apply_batch(self, &self->held[i], NULL);
        } else {
            self->held_at[k] = self->held_at[i];
            self->held[k++] = self->held[i];
        }
    }
    self->nheld = k;
    s_flush(self);
}

/* Take every batch already queued (up to ALERTD_BATCH_MAX) and apply
 * them in order, each readings batch with its anomalies batch (the next
 * batch of its producer and lane), so that every reading is evaluated
 * with its score. anomalyd sends the anomalies batch right after the
 * readings and says so (`companion`, PROTOCOL.md): a readings batch that
 * says so and is the last of its producer's in the queue is held until
 * the anomalies batch is queued too, whatever the transport's timing
 * (the tick applies it alone after ALERTD_HOLD_NS: the producer died
 * between the two, or never sent it). */
static void
s_drain_queue(alertd_t *self)
{
    msg_batch_t *q[ALERTD_HELD_MAX + ALERTD_BATCH_MAX];
    int64_t at[ALERTD_HELD_MAX + ALERTD_BATCH_MAX];
    size_t n = 0, tries = 0, nheld = self->nheld;

    for (size_t i = 0; i < nheld; i++) {
        at[n] = self->held_at[i];
        q[n++] = self->held[i];
    }
    self->nheld = 0;
    do { /* called when one is there (the loop's reader, the drain) */
        msg_batch_t *b = s_recv(self);
        if (b) {
            at[n] = 0;
            q[n++] = b;
        }
    } while (++tries < ALERTD_BATCH_MAX &&
             (zsock_events(self->pull) & ZMQ_POLLIN));
    for (size_t i = 0; i < n; i++) {
        if (q[i] == NULL)
            continue;
        msg_batch_t **an = NULL;
        bool later = false;
        if (msg_batch_type(q[i]) == MSG_TYPE_READINGS)
            for (size_t j = i + 1; j < n && !an && !later; j++) {
                if (q[j] && s_companion(q[i], q[j]))
                    an = &q[j];
                else if (q[j] && s_same_stream(q[i], q[j]))
                    later = true;
            }
        if (!an && !later && msg_batch_type(q[i]) == MSG_TYPE_READINGS &&
            msg_batch_env(q[i])->companion && self->nheld < ALERTD_HELD_MAX) {
            self->held_at[self->nheld] = at[i] ? at[i] : clock_mono_ns();
            self->held[self->nheld++] = q[i];
            q[i] = NULL;
            continue;
        }
        s_apply_batch(self, &q[i], an);
    }
    s_flush(self);
}

static int
s_on_pull(zloop_t *loop, zsock_t *sock, void *arg)
{
    s_drain_queue(arg);
    return 0;
}

/* Deadman rules: evaluate at the stream clock once a second. */
static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    alertd_t *self = arg;
    int64_t now;

    if (self->nheld)
        s_release_held(self, false);
    now = s_stream_now(self);
    if (now != INT64_MIN) {
        alert_engine_tick(self->engine, now);
        s_escalate(self, now);
        s_groups(self, now);
        s_publish(self);
        s_flush(self);
    }
    return 0;
}

static json_t *
s_status(alertd_t *self)
{
    struct alert_engine_stats st;
    json_t *j;

    alert_engine_stats(self->engine, &st);
    j = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                  " s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                  "daemon", self->producer, "batches_in",
                  (json_int_t)self->batches_in, "bad_batches",
                  (json_int_t)self->bad_batches, "queries",
                  (json_int_t)self->queries, "readings_in",
                  (json_int_t)st.readings, "anomalies_in",
                  (json_int_t)st.anomalies, "forecasts_in",
                  (json_int_t)st.forecasts, "evaluations",
                  (json_int_t)st.evaluations, "alerts_pending_total",
                  (json_int_t)st.pending, "alerts_firing_total",
                  (json_int_t)st.firing, "alerts_resolved_total",
                  (json_int_t)st.resolved, "alerts_active",
                  (json_int_t)st.active, "rules", (json_int_t)st.rules,
                  "series", (json_int_t)st.series, "points",
                  (json_int_t)st.points, "readings_rejected",
                  (json_int_t)st.rejected, "windows_truncated",
                  (json_int_t)st.truncated, "reloads",
                  (json_int_t)self->reloads, "reload_failures",
                  (json_int_t)self->reload_failures);
    json_object_set_new(j, "devices", json_integer((json_int_t)
                                         alert_engine_devices(self->engine)));
    json_object_set_new(j, "unpaired_batches", json_integer((json_int_t)self->unpaired));
    if (self->store) {
        json_object_set_new(j, "notifications_silenced",
                            json_integer((json_int_t)self->silenced));
        json_object_set_new(j, "notifications_throttled",
                            json_integer((json_int_t)self->throttled));
        json_object_set_new(j, "escalations",
                            json_integer((json_int_t)self->escalations));
        json_object_set_new(j, "notifications_inhibited",
                            json_integer((json_int_t)self->inhibited));
        json_object_set_new(j, "group_notifications",
                            json_integer((json_int_t)self->groups));
        json_object_set_new(j, "group_waiting",
                            json_integer(alert_group_waiting(self->store)));
        json_object_set_new(
            j, "notifications_sent",
            json_integer((json_int_t)alert_notify_sent(self->notify)));
        json_object_set_new(
            j, "notification_failures",
            json_integer((json_int_t)alert_notify_failures(self->notify)));
        json_object_set_new(j, "outbox_queued",
                            json_integer(alert_store_outbox_count(
                                self->store, "queued")));
        json_object_set_new(j, "outbox_failed",
                            json_integer(alert_store_outbox_count(
                                self->store, "failed")));
    }
    return j;
}

/* An integer field of a request, or -1. */
static int64_t
s_req_id(const json_t *req)
{
    json_t *v = json_object_get(req, "id");
    return json_is_integer(v) && json_integer_value(v) > 0
               ? (int64_t)json_integer_value(v)
               : -1;
}

/* The store operations: ack, resolve, alert, silence, silences,
 * unsilence. Returns the status or 0 when op is not one of them. */
static int
s_answer_store(alertd_t *self, const char *op, const json_t *req,
               json_t **body)
{
    int64_t id = s_req_id(req), now = clock_now_ns();
    const char *by = json_string_value(json_object_get(req, "by"));

    if (strcmp(op, "alert") == 0) {
        if ((*body = id > 0 ? alert_store_alert(self->store, id) : NULL))
            return 200;
        *body = rpc_error("not_found", "no such alert", "id");
        return 404;
    }
    if (strcmp(op, "ack") == 0) {
        s_tx(self);
        int rc = id > 0 ? alert_store_ack(self->store, id, by ? by : "api",
                                          now)
                        : -1;
        s_flush(self);
        if (rc == 0) {
            log_info("alert acknowledged: id=%lld by=%s", (long long)id,
                     by ? by : "api");
            *body = alert_store_alert(self->store, id);
            return 200;
        }
        *body = rpc_error("not_found", "no active, unacknowledged alert "
                                       "with this id", "id");
        return 404;
    }
    if (strcmp(op, "resolve") == 0) {
        char *rule, *scope;
        if (id <= 0 || alert_store_lookup(self->store, id, &rule, &scope)) {
            *body = rpc_error("not_found", "no active alert with this id",
                              "id");
            return 404;
        }
        int64_t t = s_stream_now(self);
        if (alert_engine_resolve(self->engine, rule, scope,
                                 t == INT64_MIN ? now : t) == -1) {
            struct alert_event ev = {rule, scope, "", "resolved", "",
                                     t == INT64_MIN ? now : t, NAN, 0, NULL};
            s_tx(self);
            alert_store_event(self->store, &ev);
        }
        s_publish(self);
        s_flush(self);
        free(rule);
        free(scope);
        *body = alert_store_alert(self->store, id);
        return 200;
    }
    if (strcmp(op, "silence") == 0) {
        const char *rule = json_string_value(json_object_get(req, "rule"));
        const char *scope = json_string_value(json_object_get(req, "scope"));
        const char *dur = json_string_value(json_object_get(req, "duration"));
        const char *comment =
            json_string_value(json_object_get(req, "comment"));
        int64_t d;
        if (dur == NULL || clock_parse_duration(dur, &d) == -1) {
            *body = rpc_error("bad_request",
                              "duration is required, e.g. \"30m\"",
                              "duration");
            return 400;
        }
        s_tx(self);
        int64_t sid = alert_store_silence_add(
            self->store, rule ? rule : "*", scope ? scope : "*", now,
            now + d, comment);
        s_flush(self);
        log_info("silence %lld: rule=%s scope=%s for %s", (long long)sid,
                 rule ? rule : "*", scope ? scope : "*", dur);
        *body = json_pack("{s:I}", "id", (json_int_t)sid);
        return sid > 0 ? 201 : 500;
    }
    if (strcmp(op, "silences") == 0) {
        *body = json_pack("{s:o}", "silences",
                          alert_store_silences(self->store, now));
        return 200;
    }
    if (strcmp(op, "unsilence") == 0) {
        s_tx(self);
        int rc = id > 0 ? alert_store_silence_remove(self->store, id) : -1;
        s_flush(self);
        if (rc == 0) {
            *body = json_pack("{s:I}", "id", (json_int_t)id);
            return 200;
        }
        *body = rpc_error("not_found", "no such silence", "id");
        return 404;
    }
    return 0;
}

/* Answer one query; returns the HTTP status and sets *body. */
static int
s_answer(alertd_t *self, const json_t *req, json_t **body)
{
    const char *op = json_string_value(json_object_get(req, "op"));
    static const char *store_ops[] = {"alert",    "ack",      "resolve",
                                      "silence",  "silences", "unsilence"};
    int status;

    self->queries++;
    if (strcmp(op, "alerts") == 0) {
        json_t *all = json_object_get(req, "all");
        json_t *limit = json_object_get(req, "limit");
        *body = json_pack(
            "{s:o}", "alerts",
            self->store ? alert_store_alerts(
                              self->store, json_is_true(all),
                              json_is_integer(limit)
                                  ? (int64_t)json_integer_value(limit)
                                  : 1000)
                        : alert_engine_alerts(self->engine));
        return 200;
    }
    s_flush(self); /* a rule change is a transaction of its own */
    bool changed;
    status = alert_ruleset_answer(self->ruleset, op, req, clock_now_ns(),
                                  body, &changed);
    if (changed) {
        s_apply(self);
        s_publish(self);
        s_flush(self);
    }
    if (status)
        return status;
    if (strcmp(op, "stats") == 0 || strcmp(op, "status") == 0) {
        *body = s_status(self);
        return 200;
    }
    if (strcmp(op, "devices") == 0)
        return alert_devices_answer(self->devices, req, body);
    for (size_t i = 0; i < sizeof store_ops / sizeof store_ops[0]; i++)
        if (strcmp(op, store_ops[i]) == 0) {
            if (self->store == NULL) {
                *body = rpc_error("no_store",
                                  "alertd runs without a database (--db)",
                                  op);
                return 409;
            }
            if ((status = s_answer_store(self, op, req, body)) != 0)
                return status;
        }
    *body = rpc_error("unknown_op",
                      "alertd answers alerts, alert, rules, rule, "
                      "rule_create, rule_update, rule_delete, rule_check, "
                      "devices, stats, ack, resolve, silence, silences, "
                      "unsilence",
                      op);
    return 400;
}

static int
s_on_query(zloop_t *loop, zsock_t *sock, void *arg)
{
    alertd_t *self = arg;
    zmsg_t *env;
    json_t *req = rpc_request_recv(zsock_resolve(sock), &env), *body = NULL;
    int status;

    if (req == NULL)
        return 0;
    status = s_answer(self, req, &body);
    rpc_reply_send(zsock_resolve(sock), &env, status, body);
    json_decref(req);
    return 0;
}

static void
s_on_event(enum daemon_event ev, void *arg)
{
    if (ev == DAEMON_EV_RELOAD)
        alertd_reload(arg);
}

int
alertd_filter(alertd_t *self, FILE *in, FILE *out)
{
    char *line = NULL, key[SERIES_KEY_MAX];
    size_t cap = 0, lineno = 0, bad = 0;
    ssize_t len;
    struct alert_engine_stats st;

    self->events = out;
    while ((len = getline(&line, &cap, in)) > 0) {
        json_error_t jerr;
        struct reading_err err;
        int64_t ts;
        double v;
        json_t *j, *score;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        j = json_loadb(line, (size_t)len, 0, &jerr);
        if (j == NULL ||
            reading_parse(j, clock_now_ns(), key, sizeof key, &ts, &v, &err)) {
            if (bad++ < 10)
                log_warnx("stdin:%zu: %s%s%s", lineno,
                          j ? err.field : jerr.text, j ? ": " : "",
                          j ? err.reason : "");
            json_decref(j);
            continue;
        }
        /* anomalyd --stdout lines carry the score of every reading,
         * and its novelty alarm. */
        score = json_object_get(j, "score");
        if (json_is_number(score) && isfinite(json_number_value(score)))
            alert_engine_score(self->engine, key, ts,
                               json_number_value(score),
                               json_is_true(json_object_get(j, "alarm")));
        json_decref(j);
        /* The stream's own time drives deadman rules in filter mode:
         * when time moves on, check who went silent just before this
         * reading, then apply it. */
        if (self->stream_ts != INT64_MIN && ts > self->stream_ts &&
            (self->tick_ts == INT64_MIN ||
             ts - self->tick_ts >= ALERTD_TICK_MS * CLOCK_NS_PER_MS)) {
            alert_engine_tick(self->engine, ts - 1);
            s_escalate(self, ts - 1);
            s_groups(self, ts - 1);
            self->tick_ts = ts - 1;
        }
        alert_engine_reading(self->engine, key, ts, v);
        s_observe(self, ts);
        s_flush(self);
    }
    free(line);
    fflush(out);
    /* The end of the input ends every group's window. */
    s_groups(self, INT64_MAX);
    s_flush(self);
    /* Give the notify actor the drain time to empty the outbox. */
    int64_t deadline = clock_mono_ns() + self->conf->drain;
    while (self->store && clock_mono_ns() < deadline &&
           alert_store_outbox_count(self->store, "queued") > 0)
        zclock_sleep(20);
    if (self->store && alert_store_outbox_count(self->store, "queued") > 0)
        log_warnx("filter: %lld notifications still queued at exit; they "
                  "are delivered at the next start",
                  (long long)alert_store_outbox_count(self->store, "queued"));
    self->events = NULL;
    if (bad)
        log_warnx("stdin: %zu bad lines skipped", bad);
    alert_engine_stats(self->engine, &st);
    log_info("filter: %llu readings, %llu firing, %llu resolved, %zu active",
             (unsigned long long)st.readings, (unsigned long long)st.firing,
             (unsigned long long)st.resolved, st.active);
    return 0;
}

int
alertd_run(alertd_t *self)
{
    int sigfd;
    char summary[EP_MAX + 64];
    struct alert_engine_stats st;

    if (self->conf->use_stdin)
        return alertd_filter(self, stdin, stdout);
    if ((sigfd = daemon_signals(self->loop, s_on_event, self)) == -1) {
        log_warn("alertd: signals");
        return -1;
    }
    self->out = msg_batch_new(MSG_TYPE_ALERTS);
    zloop_reader(self->loop, self->pull, s_on_pull, self);
    zloop_reader(self->loop, self->router, s_on_query, self);
    ep_watch_pub(self->loop, self->pub);
    zloop_timer(self->loop, ALERTD_TICK_MS, 0, s_on_tick, self);
    alert_engine_stats(self->engine, &st);
    snprintf(summary, sizeof summary, "lane=%lld rules=%zu in=%s",
             (long long)self->conf->lane, st.rules,
             zsock_endpoint(self->pull));
    daemon_ready(summary);
    zloop_start(self->loop);
    /* Drain: apply what anomalyd already queued, within the deadline. */
    int64_t deadline = clock_mono_ns() + self->conf->drain;
    while (clock_mono_ns() < deadline &&
           (zsock_events(self->pull) & ZMQ_POLLIN))
        s_drain_queue(self);
    s_release_held(self, true);
    s_publish(self);
    close(sigfd);
    return 0;
}

int
alertd_ctl(const struct alertd_conf *conf, const char *query)
{
    char t[EP_MAX], ep[EP_MAX];
    const char *tmpl = conf->query;
    json_error_t jerr;
    json_t *req = json_loads(query, 0, &jerr), *body = NULL;
    zsock_t *dealer;
    uint64_t id = 0;
    int status = 0, rc = 1;

    if (req == NULL || !json_is_string(json_object_get(req, "op"))) {
        fprintf(stderr, "alertd: --ctl wants a JSON object with \"op\"%s%s\n",
                req ? "" : ": ", req ? "" : jerr.text);
        json_decref(req);
        return 1;
    }
    if (tmpl == NULL || *tmpl == '\0')
        tmpl = ep_default(t, sizeof t, conf->rundir, "alertd", "query");
    if (ep_expand(ep, sizeof ep, tmpl, (unsigned)conf->lane) == NULL) {
        json_decref(req);
        return 1;
    }
    dealer = zsock_new(ZMQ_DEALER);
    zsock_set_linger(dealer, 0);
    zsock_set_rcvtimeo(dealer, 5000);
    if (ep_connect(dealer, ep) == -1 ||
        rpc_request_send(zsock_resolve(dealer), 1, req) == -1) {
        fprintf(stderr, "alertd: cannot reach %s\n", ep);
    } else if (rpc_reply_recv(zsock_resolve(dealer), &id, &status, &body) ==
               -1) {
        fprintf(stderr, "alertd: no answer from %s within 5 s\n", ep);
    } else {
        char *s = mpjson_dumps(body);
        printf("%s\n", s);
        free(s);
        rc = status >= 200 && status < 300 ? 0 : 1;
        if (rc)
            fprintf(stderr, "alertd: status %d\n", status);
    }
    json_decref(body);
    json_decref(req);
    zsock_destroy(&dealer);
    return rc;
}

/* --------------------------------------------------------------------- */
/* Selftest */

void
alertd_test(bool verbose)
{
    char dir[] = "/tmp/alertd_test.XXXXXX", ep[EP_MAX], path[128];
    struct alertd_conf c = {0};
    alertd_t *a;
    zsock_t *push, *sub, *dealer;
    msg_batch_t *b, *got = NULL;
    uint64_t id;
    int status;
    json_t *req, *body;
    FILE *fp;
    const int64_t S = CLOCK_NS_PER_S;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/alertd.rules", dir);
    fp = fopen(path, "w");
    assert(fp);
    fputs("hot: temperature > 30 severity critical\n", fp);
    fclose(fp);
    c.rundir = dir;
    c.in = c.query = c.pub = "";
    c.rules = path;
    c.hwm = 100;
    c.window_points = 100;
    c.max_series = 100;
    c.drain = S;
    assert(alertd_conf_check(&c) == 0);
    if (!verbose)
        log_set_level(LOG_LVL_WARNING);
    a = alertd_new(&c);
    assert(a);
    a->out = msg_batch_new(MSG_TYPE_ALERTS);

    /* Drive the handlers directly rather than running the loop. */
    snprintf(ep, sizeof ep, "ipc://%s/alertd.0.pub", dir);
    sub = zsock_new_sub(ep, "");
    snprintf(ep, sizeof ep, "ipc://%s/alertd.0.in", dir);
    push = zsock_new_push(ep);
    zclock_sleep(100); /* let the SUB connect before anything is sent */
    b = msg_batch_new(MSG_TYPE_READINGS);
    snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
    msg_batch_env(b)->seq = 1;
    msg_batch_add_reading(b, "temperature{device=s1}", 1 * S, 20);
    msg_batch_add_reading(b, "temperature{device=s1}", 2 * S, 35);
    msg_batch_add_reading(b, "temperature{device=s1}", 3 * S, 36);
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    msg_batch_destroy(&b);
    zsock_set_rcvtimeo(a->pull, 2000);
    s_on_pull(a->loop, a->pull, a);
    /* Exactly one event: firing at t=2, published as an alerts batch. */
    zsock_set_rcvtimeo(sub, 2000);
    assert(msg_batch_recv(zsock_resolve(sub), &got) == MSG_OK);
    assert(msg_batch_type(got) == MSG_TYPE_ALERTS);
    assert(msg_batch_size(got) == 1);
    const struct msg_alert *al = msg_batch_alert(got, 0);
    TEST_STREQ(msg_batch_str(got, al->rule_off), "hot");
    TEST_STREQ(msg_batch_str(got, al->key_off), "temperature{device=s1}");
    TEST_STREQ(msg_batch_str(got, al->state_off), "firing");
    TEST_STREQ(msg_batch_str(got, al->severity_off), "critical");
    assert(al->ts == 2 * S);
    TEST_NEAR(al->value, 35, 0);
    TEST_STREQ(msg_batch_env(got)->producer, "alertd.0");
    msg_batch_destroy(&got);

    /* Queries. */
    snprintf(ep, sizeof ep, "ipc://%s/alertd.0.query", dir);
    dealer = zsock_new_dealer(ep);
    zsock_set_rcvtimeo(a->router, 2000);
    zsock_set_rcvtimeo(dealer, 2000);
    const char *ops[] = {"alerts", "rules", "stats", "nonsense",
                         "rule_check", "rule_check"};
    for (size_t i = 0; i < 6; i++) {
        req = json_pack("{s:s}", "op", ops[i]);
        if (i >= 4) {
            json_object_set_new(req, "name", json_string("High Temperature"));
            json_object_set_new(req, "condition",
                                json_string(i == 4 ? "temperature>30"
                                                   : "temperature >> 30"));
        }
        rpc_request_send(zsock_resolve(dealer), i + 1, req);
        json_decref(req);
        s_on_query(a->loop, a->router, a);
        assert(rpc_reply_recv(zsock_resolve(dealer), &id, &status, &body) ==
               0);
        assert(id == i + 1);
        if (i == 0) {
            json_t *arr = json_object_get(body, "alerts");
            assert(status == 200 && json_array_size(arr) == 1);
            TEST_STREQ(json_string_value(json_object_get(
                           json_array_get(arr, 0), "state")),
                       "firing");
        } else if (i == 1) {
            json_t *arr = json_object_get(body, "rules");
            assert(status == 200 && json_array_size(arr) == 1);
        } else if (i == 2) {
            assert(status == 200);
            assert(json_integer_value(json_object_get(body, "readings_in")) ==
                   3);
            assert(json_integer_value(
                       json_object_get(body, "alerts_firing_total")) == 1);
        } else if (i == 4) {
            assert(status == 200);
            TEST_STREQ(json_string_value(json_object_get(body, "canonical")),
                       "temperature > 30 severity warning");
        } else if (i == 5) {
            json_t *e = json_object_get(body, "error");
            assert(status == 400);
            TEST_STREQ(json_string_value(json_object_get(e, "code")),
                       "bad_rule");
            TEST_STREQ(json_string_value(json_object_get(e, "where")),
                       "condition:14");
            assert(strstr(json_string_value(json_object_get(e, "message")),
                          "expected a number"));
        } else {
            assert(status == 400);
        }
        json_decref(body);
    }

    /* A malformed batch is counted and dropped, never fatal. */
    zsock_send(push, "ss", "readings", "not msgpack");
    log_set_level(LOG_LVL_CRIT);
    s_on_pull(a->loop, a->pull, a);
    log_set_level(verbose ? LOG_LVL_INFO : LOG_LVL_WARNING);
    assert(a->bad_batches == 1);

    /* Reload: a broken file keeps the old rules; a good one replaces them
     * and resolves the alerts of the rule that went away. */
    fp = fopen(path, "w");
    fputs("hot: temperature >\n", fp);
    fclose(fp);
    log_set_level(LOG_LVL_CRIT);
    assert(alertd_reload(a) == -1);
    log_set_level(verbose ? LOG_LVL_INFO : LOG_LVL_WARNING);
    fp = fopen(path, "w");
    fputs("cold: temperature < 0\n", fp);
    fclose(fp);
    assert(alertd_reload(a) == 0);
    assert(a->reloads == 1 && a->reload_failures == 1);
    assert(msg_batch_size(a->out) == 1);
    s_publish(a);
    assert(msg_batch_recv(zsock_resolve(sub), &got) == MSG_OK);
    al = msg_batch_alert(got, 0);
    TEST_STREQ(msg_batch_str(got, al->state_off), "resolved");
    msg_batch_destroy(&got);

    /* A readings batch and the anomalies batch that follows it are
     * applied together: a firing anomaly alert does not flap. */
    fp = fopen(path, "w");
    fputs("odd: anomaly(temperature) > 0.9\n", fp);
    fclose(fp);
    assert(alertd_reload(a) == 0);
    msg_batch_reset(a->out);
    uint64_t firing0 = 0, resolved0 = 0;
    struct alert_engine_stats st;
    alert_engine_stats(a->engine, &st);
    firing0 = st.firing;
    resolved0 = st.resolved;
    for (int k = 0; k < 3; k++) {
        b = msg_batch_new(MSG_TYPE_READINGS);
        snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
        msg_batch_env(b)->seq = 20 + 2 * (uint64_t)k;
        msg_batch_add_reading(b, "temperature{device=s9}", (10 + k) * S, 50);
        assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
        msg_batch_destroy(&b);
        if (k < 2) {
            b = msg_batch_new(MSG_TYPE_ANOMALIES);
            snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
            msg_batch_env(b)->seq = 21 + 2 * (uint64_t)k;
            msg_batch_add_anomaly(b, "temperature{device=s9}", (10 + k) * S,
                                  50, 4.2, 0.95, "zscore", false);
            assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
            msg_batch_destroy(&b);
        }
        zclock_sleep(50); /* both queued before the reader runs */
        s_on_pull(a->loop, a->pull, a);
        alert_engine_stats(a->engine, &st);
        /* k=0 fires, k=1 (still anomalous) changes nothing, k=2 (a
         * reading without an anomaly) resolves. */
        assert(st.firing - firing0 == 1);
        assert(st.resolved - resolved0 == (k == 2 ? 1u : 0u));
    }
    assert(msg_batch_recv(zsock_resolve(sub), &got) == MSG_OK);
    TEST_STREQ(msg_batch_str(got, msg_batch_alert(got, 0)->state_off),
               "firing");
    msg_batch_destroy(&got);
    assert(msg_batch_recv(zsock_resolve(sub), &got) == MSG_OK);
    TEST_STREQ(msg_batch_str(got, msg_batch_alert(got, 0)->state_off),
               "resolved");
    msg_batch_destroy(&got);

    /* A readings batch that announces its anomalies batch (companion) is
     * held when the reader runs before that one is queued, then applied
     * with it: the reading at 13 s fires with its score and the one at
     * 14 s resolves, as if both had been queued together. Applied apart,
     * the readings would see no score and the late score no reading. */
    alert_engine_stats(a->engine, &st);
    firing0 = st.firing;
    resolved0 = st.resolved;
    b = msg_batch_new(MSG_TYPE_READINGS);
    snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
    msg_batch_env(b)->seq = 30;
    msg_batch_env(b)->companion = true;
    msg_batch_add_reading(b, "temperature{device=s8}", 13 * S, 80);
    msg_batch_add_reading(b, "temperature{device=s8}", 14 * S, 20);
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    msg_batch_destroy(&b);
    zclock_sleep(50);
    s_on_pull(a->loop, a->pull, a);
    alert_engine_stats(a->engine, &st);
    assert(a->nheld == 1 && st.firing == firing0 && st.resolved == resolved0);
    b = msg_batch_new(MSG_TYPE_ANOMALIES);
    snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
    msg_batch_env(b)->seq = 31;
    msg_batch_add_anomaly(b, "temperature{device=s8}", 13 * S, 80, 6.0, 0.99,
                          "zscore", false);
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    msg_batch_destroy(&b);
    zclock_sleep(50);
    s_on_pull(a->loop, a->pull, a);
    alert_engine_stats(a->engine, &st);
    assert(a->nheld == 0 && a->unpaired == 0);
    assert(st.firing - firing0 == 1 && st.resolved - resolved0 == 1);
    assert(msg_batch_recv(zsock_resolve(sub), &got) == MSG_OK);
    assert(msg_batch_size(got) == 2);
    for (size_t k = 0; k < 2; k++) {
        al = msg_batch_alert(got, k);
        TEST_STREQ(msg_batch_str(got, al->state_off), k ? "resolved" : "firing");
        assert(al->ts == (13 + (int64_t)k) * S);
    }
    msg_batch_destroy(&got);
    /* One whose anomalies batch never comes is applied alone by the tick
     * once held ALERTD_HOLD_NS; a later batch of its producer releases
     * it at once (the anomalies batch would have come before). */
    b = msg_batch_new(MSG_TYPE_READINGS);
    snprintf(msg_batch_env(b)->producer, 64, "anomalyd.0");
    msg_batch_env(b)->seq = 40;
    msg_batch_env(b)->companion = true;
    msg_batch_add_reading(b, "temperature{device=s7}", 20 * S, 1);
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    zclock_sleep(50);
    s_on_pull(a->loop, a->pull, a);
    assert(a->nheld == 1);
    s_on_tick(a->loop, 0, a);
    assert(a->nheld == 1);
    zclock_sleep(ALERTD_HOLD_NS / 1000000 + 50);
    s_on_tick(a->loop, 0, a);
    assert(a->nheld == 0 && a->unpaired == 1);
    msg_batch_env(b)->seq = 41;
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    msg_batch_env(b)->seq = 42;
    msg_batch_env(b)->companion = false;
    assert(msg_batch_send(b, zsock_resolve(push), 0) == 0);
    msg_batch_destroy(&b);
    zclock_sleep(50);
    s_on_pull(a->loop, a->pull, a);
    assert(a->nheld == 0 && a->unpaired == 1);

    /* Filter mode on memory streams. */
    fp = fopen(path, "w");
    fputs("cold: temperature < 0\n", fp);
    fclose(fp);
    assert(alertd_reload(a) == 0);
    char inbuf[] =
        "{\"series\":\"temperature{device=d}\",\"timestamp\":"
        "\"2024-01-01T00:00:00Z\",\"value\":1}\n"
        "not json\n"
        "{\"series\":\"temperature{device=d}\",\"timestamp\":"
        "\"2024-01-01T00:00:01Z\",\"value\":-5}\n";
    char *outbuf = NULL;
    size_t outlen = 0;
    FILE *in = fmemopen(inbuf, strlen(inbuf), "r");
    FILE *out = open_memstream(&outbuf, &outlen);
    log_set_level(LOG_LVL_CRIT);
    assert(alertd_filter(a, in, out) == 0);
    fclose(in);
    fclose(out);
    TEST_STREQ(outbuf,
               "{\"rule\":\"cold\",\"scope\":\"temperature{device=d}\","
               "\"series\":\"temperature{device=d}\",\"state\":\"firing\","
               "\"severity\":\"warning\",\"timestamp\":"
               "\"2024-01-01T00:00:01.000Z\",\"value\":-5,\"since\":"
               "\"2024-01-01T00:00:01.000Z\"}\n");
    free(outbuf);
    log_set_level(LOG_LVL_INFO);

    zsock_destroy(&dealer);
    zsock_destroy(&push);
    zsock_destroy(&sub);
    alertd_destroy(&a);
    alertd_destroy(&a);
    unlink(path);
    zsys_dir_delete("%s", dir);
    TEST_OK("alertd");
}
