/*
 * apid: routes, backend requests, replies (see apid.h).
 */
#include "apid/apid.h"
#include "apid/api_auth.h"
#include "apid/api_devices.h"
#include "apid/api_fleet.h"
#include "apid/api_lanes.h"
#include "apid/api_seed.h"
#include "apid/api_alerts.h"
#include "apid/api_analytics.h"
#include "apid/api_dash.h"
#include "apid/api_prom.h"
#include "apid/api_rules.h"
#include "apid/api_telemetry.h"
#include "apid/api_tenant.h"
#include "apid/api_users.h"
#include "apid/api_ws.h"
#include "common/arena.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/reload.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/warm.h"
#include "common/xalloc.h"

#include <unistd.h>

#define APID_TICK_MS 50
#define APID_RETRY_AFTER "1"

static const char *s_bk_name[APID_BK_MAX] = {"ingestd", "aggd", "anomalyd", "alertd"};

enum s_kind {
    PK_RELAY,   /* one backend lane; relay its status and body */
    PK_LANES,   /* every lane of a backend; merge (api_lanes.c) */
    PK_METRICS, /* every backend's status, as Prometheus text */
    PK_STATS    /* every backend's status, as JSON */
};

/* One DEALER: a backend's lane (ingestd has one). */
struct s_bk {
    apid_t *self;  /* for the reader */
    int b;         /* enum apid_backend */
    unsigned lane; /* lane served */
    zsock_t *sock; /* DEALER to its query endpoint */
    zsock_t *mon;  /* PAIR reading sock's connection events */
    bool down;     /* its monitor last said: not connected (a connection
                      lost or a connect refused: the daemon is not running) */
    bool local;    /* an ipc:// endpoint: on this host, lent arena slots */
};

/* One question to one backend lane. */
struct s_ask {
    struct s_bk *bk; /* who was asked */
    uint64_t id;     /* request id; 0 once answered or never sent */
    int status;      /* its answer's status */
    json_t *body;    /* its answer, or NULL */
};

/* A request waiting for one or more backends. */
/* Upper bounds (seconds) of the query latency histogram's buckets; one
 * more bucket counts the rest (+Inf). */
static const double s_hist_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                   0.1, 0.25, 0.5, 1, 2.5, 5, 10};
#define S_HIST_N (sizeof s_hist_le / sizeof s_hist_le[0])

/* Time from apid asking a daemon to the answer it hands on, per daemon. */
struct s_hist {
    uint64_t bucket[S_HIST_N + 1]; /* not cumulative; the last is +Inf */
    uint64_t count;
    double sum;                    /* seconds */
};

struct s_pending {
    http_req_t *req;        /* the suspended HTTP request */
    int kind;               /* enum s_kind */
    int64_t started;        /* monotonic ns, for the latency histogram */
    int64_t deadline;       /* monotonic ns */
    json_t *query;          /* PK_LANES: the query, for the merge */
    struct s_ask *asks;     /* one per backend lane asked */
    size_t nasks;           /* entries in asks */
    struct s_ask *first;    /* PK_LANES, second round: the first answers */
    int outstanding;        /* answers still expected */
    bool lent;              /* a slot of the arena was lent with the query */
    bool answered;          /* answered, or never sent: done with the slot */
    bool retry_after;       /* the Retry-After header is on req */
    size_t slot;            /* its offset in the arena */
    apid_answer_fn *fn;     /* who gets the answer, NULL = the client */
    void *fn_arg;           /* its argument */
    struct s_pending *next; /* list link */
};

struct apid {
    const struct apid_conf *conf; /* configuration in force */
    struct apid_conf *reloaded;   /* owned copy from the last SIGHUP, or NULL */
    zloop_t *loop;                /* the one event loop */
    http_server_t *http;          /* port 3000 */
    struct s_bk *bk[APID_BK_MAX]; /* DEALERs per backend, one per lane */
    unsigned nlanes[APID_BK_MAX]; /* 1 for ingestd, --lanes for the rest */
    struct s_hist qhist[APID_BK_MAX]; /* backend query latency */
    struct s_pending *pending;    /* requests waiting on backends */
    uint64_t next_id;             /* request id counter */
    uint64_t timeouts;            /* backend answers that came too late */
    uint64_t late;                /* answers for forgotten requests */
    void **svc;                   /* state per s_services[] entry */
    arena_t *arena;               /* lent for large answers, or NULL */
    uint64_t arena_answers;       /* answers relayed from a lent slot */
    size_t slot_len;              /* bytes of one of its slots */
    warm_t *warm;                 /* CPU spinners (--warm-ms), or NULL */
};

/* How long a slot lent with a request that timed out stays unlent: the
 * daemon starts writing it only before the request's deadline ("until"),
 * and a write of a slot's few MiB takes milliseconds. */
#define S_SLOT_GRACE (10 * (int64_t)1000000000)

static int s_on_backend(zloop_t *loop, zsock_t *sock, void *arg);

/* An event of a query DEALER's monitor: two frames, the event (u16,
 * native order) and its value (u32), then the endpoint. */
static int
s_on_monitor(zloop_t *loop, zsock_t *sock, void *arg)
{
    struct s_bk *k = arg;
    zmsg_t *m = zmsg_recv(sock);
    zframe_t *f = m ? zmsg_first(m) : NULL;
    uint16_t ev;

    (void)loop;
    if (f && zframe_size(f) == 6) {
        memcpy(&ev, zframe_data(f), sizeof ev);
        k->down = ev != ZMQ_EVENT_CONNECTED;
    }
    zmsg_destroy(&m);
    return 0;
}

/* How long /stats and /metrics wait when a lane is not connected. */
#define S_DOWN_WAIT (300 * (int64_t)1000000)

/* Watch k's DEALER: /stats and /metrics wait S_DOWN_WAIT, not --timeout,
 * for a daemon that is not connected. Queries wait for a daemon that
 * restarts until their deadline. */
static int
s_monitor(apid_t *self, struct s_bk *k)
{
    char ep[64];

    snprintf(ep, sizeof ep, "inproc://apid-monitor.%p", (void *)k);
    if (zmq_socket_monitor(zsock_resolve(k->sock), ep, ZMQ_EVENT_CONNECTED |
                           ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECT_RETRIED) == -1 ||
        (k->mon = zsock_new_pair(ep)) == NULL)
        return -1;
    zloop_reader(self->loop, k->mon, s_on_monitor, k);
    return 0;
}

static int
s_connect(apid_t *self, int b, const char *tmpl_conf)
{
    char t[EP_MAX], ep[EP_MAX];
    const char *tmpl = tmpl_conf;

    if (*tmpl == '\0')
        tmpl = ep_default(t, sizeof t, self->conf->rundir, s_bk_name[b], "query");
    self->nlanes[b] = b == APID_BK_INGESTD ? 1 : (unsigned)self->conf->lanes;
    self->bk[b] = xcalloc(self->nlanes[b], sizeof *self->bk[b]);
    for (unsigned lane = 0; lane < self->nlanes[b]; lane++) {
        struct s_bk *k = &self->bk[b][lane];
        k->self = self;
        k->b = b;
        k->lane = lane;
        if (ep_expand(ep, sizeof ep, tmpl, lane) == NULL) {
            log_warnx("apid: endpoint template too long: %s", tmpl);
            return -1;
        }
        k->local = strncmp(ep, "ipc://", 6) == 0;
        k->sock = zsock_new(ZMQ_DEALER);
        zsock_set_linger(k->sock, 0);
        zsock_set_sndhwm(k->sock, 10000);
        if (ep_connect(k->sock, ep) == -1) {
            log_warn("apid: cannot connect %s", ep);
            return -1;
        }
        zloop_reader(self->loop, k->sock, s_on_backend, k);
        if (s_monitor(self, k) == -1) {
            log_warn("apid: cannot monitor the socket to %s", ep);
            return -1;
        }
    }
    return 0;
}

/* --- backend requests ------------------------------------------------ */

static struct s_pending *
s_pending_new(apid_t *self, http_req_t *req, int kind)
{
    struct s_pending *p = xcalloc(1, sizeof *p);
    p->req = req;
    p->kind = kind;
    p->started = clock_mono_ns();
    p->deadline = p->started + self->conf->timeout;
    p->next = self->pending;
    self->pending = p;
    if (req)
        http_req_suspend(req);
    return p;
}

static void
s_asks_free(struct s_ask **asks, size_t n)
{
    for (size_t i = 0; *asks && i < n; i++)
        json_decref((*asks)[i].body);
    free(*asks);
    *asks = NULL;
}

static void
s_pending_free(apid_t *self, struct s_pending *p)
{
    struct s_pending **pp = &self->pending;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
    s_asks_free(&p->asks, p->nasks);
    s_asks_free(&p->first, p->nasks);
    json_decref(p->query);
    if (p->lent)
        arena_give(self->arena, p->slot,
                   p->answered ? 0 : clock_mono_ns() + S_SLOT_GRACE);
    free(p);
}

/* Lend p's query a slot of the arena, when its one daemon runs on this
 * host and a slot is free: a large answer is then printed there (rpc.h,
 * arena.h). */
static void
s_lend(apid_t *self, struct s_pending *p, const struct s_bk *bk)
{
    size_t len;

    if (self->arena == NULL || !bk->local ||
        arena_take(self->arena, clock_mono_ns(), &p->slot, &len) == -1)
        return;
    p->lent = true;
    json_object_set_new(p->query, "shm",
                        json_pack("{s:s, s:I, s:I, s:I}", "name",
                                  arena_name(self->arena), "off",
                                  (json_int_t)p->slot, "len", (json_int_t)len,
                                  "until", (json_int_t)p->deadline));
}

/* Ask one backend lane (query borrowed); the reply arrives in
 * s_on_backend. Returns 0, or -1 when its queue is full. */
static int
s_ask(apid_t *self, struct s_pending *p, struct s_bk *bk, const json_t *query)
{
    struct s_ask *a;
    uint64_t id = ++self->next_id;

    p->asks = xrealloc(p->asks, (p->nasks + 1) * sizeof *p->asks);
    a = &p->asks[p->nasks++];
    memset(a, 0, sizeof *a);
    a->bk = bk;
    if (rpc_request_send(zsock_resolve(bk->sock), id, query) == -1)
        return -1;
    a->id = id;
    p->outstanding++;
    return 0;
}

/* Hand p its answer: to the module that asked (apid_ask), or to the
 * client. Takes body. p is gone afterwards. */
/* Count p's time in the latency histogram of the daemon it asked (a
 * timeout counts at its deadline); nothing for requests of no backend. */
static void
s_observe(apid_t *self, const struct s_pending *p)
{
    struct s_hist *h;
    double secs;
    size_t i = 0;

    if (p->nasks == 0)
        return;
    h = &self->qhist[p->asks[0].bk->b];
    secs = (double)(clock_mono_ns() - p->started) / 1e9;
    while (i < S_HIST_N && secs > s_hist_le[i])
        i++;
    h->bucket[i]++;
    h->count++;
    h->sum += secs;
}

static void s_retry_after(struct s_pending *p);

static void
s_deliver(apid_t *self, struct s_pending *p, int status, json_t *body)
{
    apid_answer_fn *fn = p->fn;
    void *arg = p->fn_arg;
    http_req_t *req = p->req;

    /* A daemon's own 503 (ingestd's full spool, aggd busy) needs one as
     * much as apid's (SPEC: 503 carries Retry-After). */
    if (status == 503 && fn == NULL)
        s_retry_after(p);
    s_observe(self, p);
    s_pending_free(self, p);
    if (fn) {
        fn(self, req, status, body, arg); /* it may ask again */
        return;
    }
    if (status == 429) {
        /* A backend's quota (ingestd's --tenant-rate) says when. */
        json_t *ra = json_object_get(json_object_get(body, "error"), "retry_after");
        char s[24];
        snprintf(s, sizeof s, "%lld", json_is_integer(ra)
                                          ? (long long)json_integer_value(ra) : 1LL);
        http_req_add_header(req, "Retry-After", s);
    }
    http_req_reply_json(req, status, body);
}

/* A 503 is coming: tell the client when to retry (if there is one);
 * once, however many paths lead here. */
static void
s_retry_after(struct s_pending *p)
{
    if (p->req && !p->retry_after) {
        http_req_add_header(p->req, "Retry-After", APID_RETRY_AFTER);
        p->retry_after = true;
    }
}

/* A backend lane's queue is full: 503 with Retry-After. p is gone. */
static void
s_full(apid_t *self, struct s_pending *p, const struct s_bk *bk)
{
    char who[64];
    snprintf(who, sizeof who, "%s lane %u", s_bk_name[bk->b], bk->lane);
    /* With no ask in flight the query never left: nothing writes its
     * slot, which is lent again at once instead of after the grace. */
    if (p->outstanding == 0)
        p->answered = true;
    s_retry_after(p);
    s_deliver(self, p, 503, rpc_error("unavailable", "backend queue is full", who));
}

/* Ask every lane of backend b; on a full queue answer 503 at once.
 * Returns 0, or -1 when p is gone. */
static int
s_scatter(apid_t *self, struct s_pending *p, int b, const json_t *query)
{
    for (unsigned lane = 0; lane < self->nlanes[b]; lane++)
        if (s_ask(self, p, &self->bk[b][lane], query) == -1) {
            s_full(self, p, &self->bk[b][lane]);
            return -1;
        }
    return 0;
}

/* Ask backend b (every lane of it but for ingestd and lane-0 ops) and hand
 * the merged answer to fn, or to the client when fn is NULL. Steals query.
 * Every query is scoped to the request's tenant first (api_tenant.h). */
static void
s_request(apid_t *self, http_req_t *req, int b, json_t *query,
          apid_answer_fn *fn, void *arg)
{
    const char *op = json_string_value(json_object_get(query, "op"));
    struct s_pending *p;

    if (req && api_tenant_scope(api_auth_tenant(req), b, query)) {
        json_t *e = rpc_error("not_found", "no such series",
                              json_string_value(json_object_get(query, "series")));
        json_decref(query);
        if (fn)
            fn(self, req, 404, e, arg);
        else
            http_req_reply_json(req, 404, e);
        return;
    }

    if (b == APID_BK_INGESTD || api_lanes_single(op)) {
        p = s_pending_new(self, req, PK_RELAY);
        p->fn = fn;
        p->fn_arg = arg;
        /* An ingest that ingestd takes after we answered 503 would land
         * after the writes the client made since: ingestd on this host
         * (same monotonic clock) drops it past our deadline. */
        if (b == APID_BK_INGESTD && self->bk[b][0].local && op &&
            strcmp(op, "ingest") == 0)
            json_object_set_new(query, "until", json_integer(p->deadline));
        if (s_ask(self, p, &self->bk[b][0], query) == -1)
            s_full(self, p, &self->bk[b][0]);
        json_decref(query);
        return;
    }
    p = s_pending_new(self, req, PK_LANES);
    p->fn = fn;
    p->fn_arg = arg;
    p->query = query;
    /* One lane and the client as the reader: the body may come as JSON
     * text, relayed unchanged (rpc.h, s_deliver_text). */
    if (self->nlanes[b] == 1 && fn == NULL && req) {
        json_object_set_new(query, "text", json_true());
        if (b == APID_BK_AGGD) /* the one that prints large answers */
            s_lend(self, p, &self->bk[b][0]);
    }
    s_scatter(self, p, b, query);
}

/* Relay one backend's answer for a request, merging over lanes. */
void
apid_relay(apid_t *self, http_req_t *req, int b, json_t *query)
{
    s_request(self, req, b, query, NULL, NULL);
}

void
apid_ask(apid_t *self, http_req_t *req, int b, json_t *query,
         apid_answer_fn *fn, void *arg)
{
    s_request(self, req, b, query, fn, arg);
}

static struct api_lanes_reply *
s_replies(const struct s_ask *asks, size_t n)
{
    struct api_lanes_reply *r = xcalloc(n ? n : 1, sizeof *r);
    for (size_t i = 0; i < n; i++) {
        r[i].status = asks[i].status;
        r[i].body = asks[i].body;
    }
    return r;
}

/* Every lane answered: merge, or ask them for their values. */
static void
s_finish_lanes(apid_t *self, struct s_pending *p)
{
    struct api_lanes_reply *r = s_replies(p->first ? p->first : p->asks,
                                          p->nasks), *v;
    json_t *out;
    int status, b = p->asks[0].bk->b;

    if (p->first) {
        v = s_replies(p->asks, p->nasks);
        api_lanes_finish(p->query, r, v, p->nasks, &status, &out);
        free(v);
    } else if (api_lanes_merge(p->query, r, p->nasks, &status, &out) ==
               API_LANES_VALUES) {
        free(r);
        p->first = p->asks;
        p->asks = NULL;
        p->nasks = 0;
        json_object_del(out, "shm"); /* the slot is lent once */
        s_scatter(self, p, b, out);
        json_decref(out);
        return;
    }
    free(r);
    s_deliver(self, p, status, out);
}

static void
s_prom_line(char **out, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
s_prom_line(char **out, size_t *len, size_t *cap, const char *fmt, ...)
{
    va_list ap;
    int n;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(*out + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < *cap - *len)
            break;
        *cap = *cap * 2 + (size_t)n;
        *out = xrealloc(*out, *cap);
    }
    *len += (size_t)n;
}

/* The status of backend b's lanes as one object: with one lane its own
 * body; with several, numbers summed, flags or-ed and every lane's body
 * under "lanes". */
static json_t *
s_status_of(apid_t *self, struct s_pending *p, int b)
{
    json_t *sum = NULL, *lanes = json_array();
    const char *k;
    json_t *v;
    size_t up = 0;

    for (size_t i = 0; i < p->nasks; i++) {
        const struct s_ask *a = &p->asks[i];
        json_t *body = a->body && a->status == 200 ? a->body : NULL;
        if (a->bk->b != b)
            continue;
        if (self->nlanes[b] == 1) {
            json_decref(lanes);
            return body ? json_incref(body) : json_pack("{s:b}", "up", 0);
        }
        if (body == NULL) {
            json_array_append_new(lanes, json_pack("{s:I, s:b}", "lane",
                                                   (json_int_t)a->bk->lane, "up", 0));
            continue;
        }
        up++;
        json_array_append(lanes, body);
        if (sum == NULL) {
            sum = json_deep_copy(body);
            continue;
        }
        json_object_foreach(body, k, v) {
            json_t *s = json_object_get(sum, k);
            if (json_is_integer(v) && json_is_integer(s))
                json_object_set_new(sum, k, json_integer(json_integer_value(s) +
                                                         json_integer_value(v)));
            else if (json_is_number(v) && json_is_number(s))
                json_object_set_new(sum, k, json_real(json_number_value(s) +
                                                      json_number_value(v)));
            else if (json_is_boolean(v) && json_is_boolean(s))
                json_object_set_new(sum, k, json_boolean(json_is_true(s) ||
                                                         json_is_true(v)));
        }
    }
    if (sum == NULL)
        sum = json_pack("{s:b}", "up", 0);
    json_object_del(sum, "daemon");
    json_object_del(sum, "lane");
    json_object_set_new(sum, "lanes_up", json_integer((json_int_t)up));
    json_object_set_new(sum, "lanes", lanes);
    return sum;
}

static void
s_finish_fanout(apid_t *self, struct s_pending *p)
{
    if (p->kind == PK_STATS) {
        json_t *o = json_object();
        for (int b = 0; b < APID_BK_MAX; b++)
            json_object_set_new(o, s_bk_name[b], s_status_of(self, p, b));
        json_object_set_new(o, "apid", json_pack(
            "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "arena_answers",
            (json_int_t)self->arena_answers, "arena_busy", (json_int_t)(
                self->arena ? arena_busy(self->arena, clock_mono_ns()) : 0),
            "warm_spin_ms", (json_int_t)(warm_spin_ns(self->warm) / 1000000),
            "http_2xx",
            (json_int_t)http_server_count(self->http, 2), "http_4xx",
            (json_int_t)http_server_count(self->http, 4), "http_5xx",
            (json_int_t)http_server_count(self->http, 5), "backend_timeouts",
            (json_int_t)self->timeouts, "pending", (json_int_t)0, "lanes",
            (json_int_t)self->conf->lanes));
        {
            struct api_devices_mqtt m;
            api_devices_mqtt_stats(self, &m);
            if (m.enabled)
                json_object_set_new(json_object_get(o, "apid"), "mqtt", json_pack(
                    "{s:b, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "connected", m.connected,
                    "unacked", (json_int_t)m.unacked, "outbox_depth",
                    (json_int_t)m.outbox.depth, "outbox_queued",
                    (json_int_t)m.outbox.queued, "outbox_sent", (json_int_t)m.outbox.sent,
                    "outbox_dropped", (json_int_t)m.outbox.dropped, "outbox_expired",
                    (json_int_t)m.outbox.expired, "outbox_refused",
                    (json_int_t)m.outbox.refused));
        }
        http_req_reply_json(p->req, 200, o);
        return;
    }
    size_t len = 0, cap = 4096;
    char *out = xmalloc(cap);
    out[0] = '\0';
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_up Whether every lane of the daemon answered apid.\n"
                "# TYPE sensorpipe_up gauge\n");
    for (int b = 0; b < APID_BK_MAX; b++) {
        int all = 1;
        for (size_t i = 0; i < p->nasks; i++)
            if (p->asks[i].bk->b == b && !(p->asks[i].body && p->asks[i].status == 200))
                all = 0;
        s_prom_line(&out, &len, &cap, "sensorpipe_up{daemon=\"%s\"} %d\n",
                    s_bk_name[b], all);
    }
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_lane_up Whether the lane of the daemon answered apid.\n"
                "# TYPE sensorpipe_lane_up gauge\n");
    for (size_t i = 0; i < p->nasks; i++)
        s_prom_line(&out, &len, &cap,
                    "sensorpipe_lane_up{daemon=\"%s\",lane=\"%u\"} %d\n",
                    s_bk_name[p->asks[i].bk->b], p->asks[i].bk->lane,
                    p->asks[i].body && p->asks[i].status == 200);
    for (int b = 0; b < APID_BK_MAX; b++) {
        const json_t *names = NULL;
        const char *k;
        json_t *v;
        for (size_t i = 0; i < p->nasks && !names; i++)
            if (p->asks[i].bk->b == b && p->asks[i].status == 200)
                names = p->asks[i].body;
        json_object_foreach((json_t *)names, k, v) {
            size_t kl = strlen(k);
            /* A duration in ms is shown in seconds, as Prometheus names
             * want; a name ending in _total is a counter. */
            bool ms = kl > 3 && !strcmp(k + kl - 3, "_ms");
            bool total = kl > 6 && !strcmp(k + kl - 6, "_total");
            int nl = (int)(ms ? kl - 3 : kl);
            const char *unit = ms ? "_seconds" : "";
            if (!json_is_integer(v) && !json_is_real(v))
                continue;
            s_prom_line(&out, &len, &cap,
                        "# HELP sensorpipe_%s_%.*s%s %s status field %s, per lane.\n"
                        "# TYPE sensorpipe_%s_%.*s%s %s\n",
                        s_bk_name[b], nl, k, unit, s_bk_name[b], k,
                        s_bk_name[b], nl, k, unit, total ? "counter" : "gauge");
            for (size_t i = 0; i < p->nasks; i++) {
                const struct s_ask *a = &p->asks[i];
                json_t *x = a->body && a->status == 200 ? json_object_get(a->body, k) : NULL;
                char num[40];
                if (a->bk->b != b || !json_is_number(x))
                    continue;
                s_prom_line(&out, &len, &cap, "sensorpipe_%s_%.*s%s{lane=\"%u\"} %s\n",
                            s_bk_name[b], nl, k, unit, a->bk->lane,
                            strutil_dtoa(json_number_value(x) / (ms ? 1000.0 : 1.0),
                                         num, sizeof num));
            }
        }
    }
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_query_duration_seconds From apid asking a "
                "daemon (every lane it needs) to the answer, timeouts included.\n"
                "# TYPE sensorpipe_apid_query_duration_seconds histogram\n");
    for (int b = 0; b < APID_BK_MAX; b++) {
        const struct s_hist *h = &self->qhist[b];
        uint64_t cum = 0;
        char num[40];
        for (size_t i = 0; i <= S_HIST_N; i++) {
            cum += h->bucket[i];
            s_prom_line(&out, &len, &cap,
                        "sensorpipe_apid_query_duration_seconds_bucket"
                        "{daemon=\"%s\",le=\"%s\"} %llu\n", s_bk_name[b],
                        i < S_HIST_N ? strutil_dtoa(s_hist_le[i], num, sizeof num) : "+Inf",
                        (unsigned long long)cum);
        }
        s_prom_line(&out, &len, &cap,
                    "sensorpipe_apid_query_duration_seconds_sum{daemon=\"%s\"} %s\n"
                    "sensorpipe_apid_query_duration_seconds_count{daemon=\"%s\"} %llu\n",
                    s_bk_name[b], strutil_dtoa(h->sum, num, sizeof num), s_bk_name[b],
                    (unsigned long long)h->count);
    }
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_http_responses_total HTTP answers by status class.\n"
                "# TYPE sensorpipe_apid_http_responses_total counter\n");
    for (int c = 2; c <= 5; c++)
        s_prom_line(&out, &len, &cap,
                    "sensorpipe_apid_http_responses_total{class=\"%dxx\"} %llu\n",
                    c, http_server_count(self->http, c));
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_backend_timeouts_total Daemon answers that "
                "did not come within --timeout.\n"
                "# TYPE sensorpipe_apid_backend_timeouts_total counter\n"
                "sensorpipe_apid_backend_timeouts_total %llu\n",
                (unsigned long long)self->timeouts);
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_arena_answers_total Answers relayed "
                "from a slot of apid's shared-memory arena (--reply-arena).\n"
                "# TYPE sensorpipe_apid_arena_answers_total counter\n"
                "sensorpipe_apid_arena_answers_total %llu\n"
                "# HELP sensorpipe_apid_arena_busy Slots of the arena lent "
                "out or waiting out their grace.\n"
                "# TYPE sensorpipe_apid_arena_busy gauge\n"
                "sensorpipe_apid_arena_busy %zu\n",
                (unsigned long long)self->arena_answers,
                self->arena ? arena_busy(self->arena, clock_mono_ns()) : 0);
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_warm_cpu_seconds_total CPU time of "
                "the threads that keep the CPUs awake (--warm-ms).\n"
                "# TYPE sensorpipe_apid_warm_cpu_seconds_total counter\n"
                "sensorpipe_apid_warm_cpu_seconds_total %.6f\n",
                (double)warm_spin_ns(self->warm) / 1e9);
    {
        uint64_t applied, ignored;
        api_devices_job_reports(self, &applied, &ignored);
        s_prom_line(&out, &len, &cap,
                    "# HELP sensorpipe_apid_job_reports_total Job progress reports "
                    "heard on MQTT, applied or ignored (late, of an entry that is "
                    "over, of no such job, no valid status).\n"
                    "# TYPE sensorpipe_apid_job_reports_total counter\n"
                    "sensorpipe_apid_job_reports_total{result=\"applied\"} %llu\n"
                    "sensorpipe_apid_job_reports_total{result=\"ignored\"} %llu\n",
                    (unsigned long long)applied, (unsigned long long)ignored);
    }
    {
        struct api_devices_mqtt m;
        api_devices_mqtt_stats(self, &m);
        s_prom_line(&out, &len, &cap,
                    "# HELP sensorpipe_apid_mqtt_connected Whether apid is connected to "
                    "the MQTT broker of device commands (0 without --mqtt-host).\n"
                    "# TYPE sensorpipe_apid_mqtt_connected gauge\n"
                    "sensorpipe_apid_mqtt_connected %d\n"
                    "# HELP sensorpipe_apid_mqtt_outbox_messages Device commands and "
                    "shadow deltas waiting in the outbox for the broker.\n"
                    "# TYPE sensorpipe_apid_mqtt_outbox_messages gauge\n"
                    "sensorpipe_apid_mqtt_outbox_messages %lld\n"
                    "# HELP sensorpipe_apid_mqtt_outbox_total Outbox messages since start: "
                    "queued, sent to the broker, dropped for newer ones (full), expired "
                    "(older than --mqtt-outbox-max-age), refused by the client library.\n"
                    "# TYPE sensorpipe_apid_mqtt_outbox_total counter\n"
                    "sensorpipe_apid_mqtt_outbox_total{result=\"queued\"} %llu\n"
                    "sensorpipe_apid_mqtt_outbox_total{result=\"sent\"} %llu\n"
                    "sensorpipe_apid_mqtt_outbox_total{result=\"dropped\"} %llu\n"
                    "sensorpipe_apid_mqtt_outbox_total{result=\"expired\"} %llu\n"
                    "sensorpipe_apid_mqtt_outbox_total{result=\"refused\"} %llu\n",
                    m.connected ? 1 : 0, (long long)m.outbox.depth,
                    (unsigned long long)m.outbox.queued, (unsigned long long)m.outbox.sent,
                    (unsigned long long)m.outbox.dropped,
                    (unsigned long long)m.outbox.expired,
                    (unsigned long long)m.outbox.refused);
    }
    s_prom_line(&out, &len, &cap,
                "# HELP sensorpipe_apid_ws_clients Connected WebSocket clients.\n"
                "# TYPE sensorpipe_apid_ws_clients gauge\n"
                "sensorpipe_apid_ws_clients %zu\n",
                api_ws_clients(apid_service(self, "ws")));
    {
        json_t *ws = api_ws_stats(apid_service(self, "ws"));
        const char *k;
        json_t *v;
        json_object_foreach(ws, k, v) {
            bool gauge = !strcmp(k, "subscribed");
            const char *sfx = gauge ? "" : "_total";
            if (!strcmp(k, "clients"))
                continue; /* the gauge above */
            s_prom_line(&out, &len, &cap,
                        "# HELP sensorpipe_apid_ws_%s%s WebSocket streams: %s "
                        "(GET /api/v1/stream/stats).\n"
                        "# TYPE sensorpipe_apid_ws_%s%s %s\n"
                        "sensorpipe_apid_ws_%s%s %lld\n", k, sfx, k, k, sfx,
                        gauge ? "gauge" : "counter", k, sfx,
                        (long long)json_integer_value(v));
        }
        json_decref(ws);
    }
    http_req_reply(p->req, 200, "text/plain; version=0.0.4", out, len);
}

static void
s_fanout(apid_t *self, http_req_t *req, int kind)
{
    struct s_pending *p = s_pending_new(self, req, kind);
    json_t *q = json_pack("{s:s}", "op", "status");
    bool down = false;
    for (int b = 0; b < APID_BK_MAX; b++)
        for (unsigned lane = 0; lane < self->nlanes[b]; lane++) {
            s_ask(self, p, &self->bk[b][lane], q); /* a full one shows as down */
            down = down || self->bk[b][lane].down;
        }
    /* A lane whose DEALER is not connected (its daemon stopped, or just
     * started and not reconnected yet: libzmq tries every 100 ms) gets
     * S_DOWN_WAIT to answer, not --timeout: then it shows as down. */
    if (down && p->deadline > p->started + S_DOWN_WAIT)
        p->deadline = p->started + S_DOWN_WAIT;
    json_decref(q);
    if (p->outstanding == 0) {
        s_finish_fanout(self, p);
        s_pending_free(self, p);
    }
}

/* A relayed answer MHD still sends from: the message, and the arena slot
 * its text may lie in. */
struct s_relayed {
    apid_t *self;
    zmsg_t *msg;
    bool lent;
    size_t slot;
};

/* MHD is done with a relayed answer: the message goes, the slot is free. */
static void
s_relayed_free(void *cls)
{
    struct s_relayed *r = cls;

    zmsg_destroy(&r->msg);
    if (r->lent)
        arena_give(r->self->arena, r->slot, 0);
    free(r);
}

/* The slot p lent, as rpc_reply_pieces wants it (NULL when none). */
static const char *
s_lent(const apid_t *self, const struct s_pending *p, size_t *len)
{
    *len = p->lent ? self->slot_len : 0;
    return p->lent ? arena_base(self->arena) + p->slot : NULL;
}

/* A reply whose body came as JSON text (asked for in s_request) goes to
 * the client as it is, from the received message (and the arena slot the
 * query lent) without a copy, when it is the only answer and nothing
 * needs to merge or read it. Returns true when delivered (takes *msg). */
static bool
s_deliver_text(apid_t *self, struct s_pending *p, int status, zmsg_t **msg,
               const char *text, size_t len)
{
    http_req_t *req = p->req;
    struct rpc_piece *pc;
    struct http_piece *pieces;
    struct s_relayed *r;
    size_t n, lent_len;
    const char *lent = s_lent(self, p, &lent_len);

    if (p->kind != PK_LANES || p->nasks != 1 || p->first || p->fn ||
        req == NULL)
        return false;
    if ((n = rpc_reply_pieces(*msg, text, len, lent, lent_len, &pc)) == 0)
        return false; /* s_parse_text says what is wrong */
    pieces = xcalloc(n, sizeof *pieces);
    for (size_t i = 0; i < n; i++)
        pieces[i] = (struct http_piece){pc[i].p, pc[i].len};
    if (lent && n > 1 && pc[1].p >= lent && pc[1].p < lent + lent_len)
        self->arena_answers++;
    free(pc);
    r = xcalloc(1, sizeof *r);
    *r = (struct s_relayed){self, *msg, p->lent, p->slot};
    p->lent = false; /* r gives it back */
    *msg = NULL;
    if (status == 503)
        s_retry_after(p);
    s_observe(self, p);
    s_pending_free(self, p);
    http_req_reply_refv(req, status, "application/json", pieces, n,
                        s_relayed_free, r);
    free(pieces);
    return true;
}

/* The text of a reply and what continues it, parsed (the rare reply in
 * pieces that apid must read itself). */
static json_t *
s_parse_text(apid_t *self, const struct s_pending *p, zmsg_t *msg,
             const char *text, size_t len, size_t frames, json_error_t *err)
{
    char *all;
    json_t *body;
    size_t lent_len;
    const char *lent = s_lent(self, p, &lent_len);

    if (frames == 0 && lent == NULL)
        return json_loadb(text, len, JSON_DECODE_ANY, err);
    if ((all = rpc_reply_text_join(msg, text, &len, lent, lent_len)) == NULL) {
        snprintf(err->text, sizeof err->text, "a part outside the slot lent");
        return NULL;
    }
    body = json_loadb(all, len, JSON_DECODE_ANY, err);
    free(all);
    return body;
}

static int
s_on_backend(zloop_t *loop, zsock_t *sock, void *arg)
{
    struct s_bk *bk = arg;
    apid_t *self = bk->self;
    uint64_t id;
    int status;
    json_t *body;
    struct s_pending *p;
    struct s_ask *a = NULL;

    const char *text;
    size_t len, frames;
    zmsg_t *msg;
    json_error_t err;

    if (rpc_reply_recv_ref(zsock_resolve(sock), &id, &status, &body, &text,
                           &len, &msg, &frames) == -1) {
        log_warnx("apid: malformed reply from %s lane %u", s_bk_name[bk->b],
                  bk->lane);
        return 0;
    }
    for (p = self->pending; p && !a; p = a ? p : p->next)
        for (size_t i = 0; i < p->nasks && !a; i++)
            if (p->asks[i].id == id && p->asks[i].bk == bk)
                a = &p->asks[i];
    if (a == NULL) {
        self->late++;
        json_decref(body);
        zmsg_destroy(&msg);
        return 0;
    }
    p->answered = true; /* whatever it wrote in a lent slot is written */
    if (text && s_deliver_text(self, p, status, &msg, text, len))
        return 0;
    if (text) {
        body = s_parse_text(self, p, msg, text, len, frames, &err);
        zmsg_destroy(&msg);
        if (body == NULL) {
            log_warnx("apid: malformed JSON reply from %s lane %u: %s",
                      s_bk_name[bk->b], bk->lane, err.text);
            return 0; /* the request times out with a 503 */
        }
    }
    a->id = 0;
    a->status = status;
    a->body = body;
    p->outstanding--;
    if (p->kind == PK_RELAY) {
        s_deliver(self, p, status, json_incref(body));
        return 0;
    }
    if (p->outstanding > 0)
        return 0;
    if (p->kind == PK_LANES) {
        s_finish_lanes(self, p);
        return 0;
    }
    s_finish_fanout(self, p);
    s_pending_free(self, p);
    return 0;
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    apid_t *self = arg;
    int64_t now = clock_mono_ns();
    struct s_pending *p = self->pending, *next;

    for (; p; p = next) {
        next = p->next;
        if (now < p->deadline)
            continue;
        if (p->kind == PK_RELAY || p->kind == PK_LANES) {
            char who[64] = "backend";
            for (size_t i = 0; i < p->nasks; i++)
                if (p->asks[i].id)
                    snprintf(who, sizeof who, "%s lane %u",
                             s_bk_name[p->asks[i].bk->b], p->asks[i].bk->lane);
            self->timeouts++;
            s_retry_after(p);
            s_deliver(self, p, 503, rpc_error("unavailable",
                                              "the daemon owning this data did "
                                              "not answer in time", who));
            continue;
        }
        s_finish_fanout(self, p); /* what answered, with up=0 for the rest */
        s_pending_free(self, p);
    }
    return 0;
}

/* --- routes ------------------------------------------------------------ */

struct s_argctx {
    json_t *tags;
    const char *bad;
};

static void
s_collect_tag(void *arg, const char *k, const char *v)
{
    struct s_argctx *c = arg;
    if (strncmp(k, "tag.", 4) == 0) {
        if (k[4] == '\0')
            c->bad = k;
        else
            json_object_set_new(c->tags, k + 4, json_string(v));
    }
}

int
apid_range_args(http_req_t *req, json_t *q)
{
    static const char *names[] = {"start", "end"};
    struct s_argctx c = {json_object(), NULL};

    for (int i = 0; i < 2; i++) {
        const char *v = http_req_arg(req, names[i]);
        int64_t ts;
        if (v == NULL)
            continue;
        if (clock_parse_time(v, &ts)) {
            json_decref(c.tags);
            http_req_reply_error(req, 400, "bad_request",
                                 "not a time (RFC 3339, YYYY-MM-DD or epoch ms)",
                                 names[i]);
            return -1;
        }
        json_object_set_new(q, names[i], json_integer(ts));
    }
    http_req_args(req, s_collect_tag, &c);
    if (c.bad) {
        json_decref(c.tags);
        http_req_reply_error(req, 400, "bad_request", "tag filter needs a key",
                             c.bad);
        return -1;
    }
    json_object_set_new(q, "tags", c.tags);
    return 0;
}

int
apid_limit_arg(http_req_t *req, json_t *q)
{
    const char *v = http_req_arg(req, "limit");
    long long ll;

    if (v == NULL)
        return 0;
    if (strutil_toll(v, 1, 100000, &ll)) {
        http_req_reply_error(req, 400, "bad_request", "limit must be 1..100000",
                             "limit");
        return -1;
    }
    json_object_set_new(q, "limit", json_integer(ll));
    return 0;
}

char *
apid_path_arg(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    char *s;
    if (strncmp(path, prefix, n) != 0 || path[n] == '\0')
        return NULL;
    s = xstrdup(path + n);
    if (strutil_urldecode(s, false) == -1 || strchr(s, '/')) {
        free(s);
        return NULL;
    }
    return s;
}

bool
apid_method(http_req_t *req, const char *want)
{
    if (strcmp(http_req_method(req), want) == 0)
        return true;
    char msg[32];

    /* (Was "use POST" for every method but GET, also for DELETE routes.) */
    snprintf(msg, sizeof msg, "use %s", want);
    http_req_add_header(req, "Allow", want);
    http_req_reply_error(req, 405, "method_not_allowed", msg, http_req_path(req));
    return false;
}

const struct apid_conf *
apid_config(const apid_t *self)
{
    return self->conf;
}

zloop_t *
apid_loop(apid_t *self)
{
    return self->loop;
}

/* Route modules, asked in order; each returns 1 when it handled the
 * request. */
static int (*const s_modules[])(apid_t *, http_req_t *) = {
    api_prom_route, /* before api_seed: /api/v1/series with match[] */
    api_seed_route,
    api_ws_route,
    api_devices_route,
    api_dash_route,
    api_telemetry_route,
    api_alerts_route,
    api_rules_route,
    api_users_route,
    api_analytics_route,
    api_fleet_route,
};

/* Module state, created in this order and destroyed in reverse. */
static const struct apid_service s_services[] = {
    {"ws", api_ws_create, api_ws_destroy},
    {"devices", api_devices_create, api_devices_destroy},
    {"rules", api_rules_create, api_rules_destroy},
    {"users", api_users_create, api_users_destroy},
    {"auth", api_auth_create, api_auth_destroy},
    {"dash", api_dash_create, api_dash_destroy},
};
#define S_NSERVICES (sizeof s_services / sizeof s_services[0])

void *
apid_service(apid_t *self, const char *name)
{
    for (size_t i = 0; i < S_NSERVICES; i++)
        if (!strcmp(s_services[i].name, name))
            return self->svc[i];
    return NULL;
}

static void
s_on_http(http_req_t *req, void *arg)
{
    apid_t *self = arg;
    const char *path = http_req_path(req);

    warm_touch(self->warm);
    if (!strcmp(path, "/health")) {
        if (apid_method(req, "GET"))
            http_req_reply_json(req, 200, json_pack("{s:s, s:s}", "status", "ok",
                                                    "version", SP_VERSION));
        return;
    }
    if (api_auth_check(self, req)) /* replied 401, 403 or 429 */
        return;
    if (!strcmp(path, "/metrics")) {
        if (apid_method(req, "GET"))
            s_fanout(self, req, PK_METRICS);
        return;
    }
    if (!strcmp(path, "/stats")) {
        if (apid_method(req, "GET"))
            s_fanout(self, req, PK_STATS);
        return;
    }
    for (size_t i = 0; i < sizeof s_modules / sizeof s_modules[0]; i++)
        if (s_modules[i](self, req))
            return;
    http_req_reply_error(req, 404, "not_found", "no such route", path);
}

/* --- lifecycle ----------------------------------------------------------- */

apid_t *
apid_new(const struct apid_conf *conf)
{
    apid_t *self = xcalloc(1, sizeof *self);
    const char *tmpl[APID_BK_MAX] = {conf->ingestd, conf->aggd, conf->anomalyd,
                                conf->alertd};

    self->conf = conf;
    self->loop = zloop_new();
    for (int b = 0; b < APID_BK_MAX; b++)
        if (s_connect(self, b, tmpl[b]) == -1) {
            apid_destroy(&self);
            return NULL;
        }
    self->http = http_server_new_tls(self->loop, conf->listen, (int)conf->port,
                                     (size_t)conf->body_max, conf->tls_cert,
                                     conf->tls_key, s_on_http, self);
    if (self->http == NULL) {
        apid_destroy(&self);
        return NULL;
    }
    if (conf->reply_arena > 0 &&
        (self->arena = arena_new(4, (size_t)conf->reply_arena << 18)) != NULL)
        self->slot_len = arena_size(self->arena) / 4;
    if (conf->warm_ms > 0 && (self->warm = warm_new((int)conf->warm_ms)) == NULL)
        log_warnx("--warm-ms: no spinner thread could start; running cold");
    zloop_timer(self->loop, APID_TICK_MS, 0, s_on_tick, self);
    self->svc = xcalloc(S_NSERVICES, sizeof *self->svc);
    for (size_t i = 0; i < S_NSERVICES; i++)
        if ((self->svc[i] = s_services[i].create(self)) == NULL) {
            apid_destroy(&self);
            return NULL;
        }
    return self;
}

void
apid_destroy(apid_t **self_p)
{
    apid_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    /* Answer whoever still waits before the server goes away. */
    while (self->pending) {
        s_retry_after(self->pending);
        if (self->pending->kind == PK_RELAY || self->pending->kind == PK_LANES) {
            s_deliver(self, self->pending, 503,
                      rpc_error("unavailable", "apid is stopping", "apid"));
            continue;
        }
        http_req_reply_error(self->pending->req, 503, "unavailable",
                             "apid is stopping", "apid");
        s_pending_free(self, self->pending);
    }
    for (size_t i = S_NSERVICES; self->svc && i-- > 0;)
        s_services[i].destroy(&self->svc[i]);
    free(self->svc);
    http_server_destroy(&self->http); /* gives the slots back */
    arena_destroy(&self->arena);
    warm_destroy(&self->warm);
    zloop_destroy(&self->loop);
    for (int b = 0; b < APID_BK_MAX; b++) {
        for (unsigned lane = 0; self->bk[b] && lane < self->nlanes[b]; lane++) {
            struct s_bk *k = &self->bk[b][lane];
            if (k->mon) /* the monitor's own socket goes first */
                zmq_socket_monitor(zsock_resolve(k->sock), NULL, 0);
            zsock_destroy(&k->mon);
            zsock_destroy(&k->sock);
        }
        free(self->bk[b]);
    }
    reload_free((void **)&self->reloaded);
    free(self);
    *self_p = NULL;
}

/* SIGHUP: re-read the file; timeout and body-max apply to the next
 * request (CFG_IMMUTABLE settings are kept and logged "requires restart"). */
static void
s_on_event(enum daemon_event ev, void *arg)
{
    apid_t *self = arg;
    struct apid_conf *c;

    if (ev != DAEMON_EV_RELOAD)
        return;
    if ((c = reload_conf(self->conf, sizeof *c)) == NULL)
        return;
    self->conf = c;
    reload_free((void **)&self->reloaded);
    self->reloaded = c;
    http_server_set_body_max(self->http, (size_t)c->body_max);
}

int
apid_run(apid_t *self)
{
    int sigfd = daemon_signals(self->loop, s_on_event, self);
    char summary[128];

    if (sigfd == -1)
        return -1;
    snprintf(summary, sizeof summary, "%s://%s:%d/",
             http_server_tls(self->http) ? "https" : "http", self->conf->listen,
             http_server_port(self->http));
    daemon_ready(summary);
    zloop_start(self->loop);
    close(sigfd);
    return 0;
}

void
apid_test(bool verbose)
{
    char *s = apid_path_arg("/api/v1/stats/temperature%7Bdevice%3Ds1%7D",
                            "/api/v1/stats/");
    TEST_STREQ(s, "temperature{device=s1}");
    free(s);
    assert(apid_path_arg("/api/v1/stats/", "/api/v1/stats/") == NULL);
    assert(apid_path_arg("/api/v1/stats/a/b", "/api/v1/stats/") == NULL);
    assert(apid_path_arg("/api/v1/other/a", "/api/v1/stats/") == NULL);
    (void)verbose;
    TEST_OK("apid");
}
