/*
 * ingestd: server object (see ingestd.h).
 */
#include "ingestd/ingestd.h"
#include "ingestd/ingest_parse.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/http.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <unistd.h>

#define INGESTD_LANES_MAX 1024
#define INGESTD_RETRY_AFTER "1"

struct ingestd {
    const struct ingestd_conf *conf; /* borrowed configuration */
    zloop_t *loop;                   /* the one event loop */
    zsock_t *router;                 /* requests from apid */
    zsock_t **push;                  /* one PUSH per aggd lane */
    msg_batch_t **lane_batch;        /* scratch batch per lane */
    uint64_t *seq;                   /* batches sent per lane */
    http_server_t *http;             /* own HTTP port, or NULL */
    uint64_t requests;               /* bodies handled */
    uint64_t accepted;               /* readings handed downstream */
    uint64_t rejected;               /* readings refused as invalid */
    uint64_t refused;                /* requests refused with 503 */
    struct ratelimit rl_full;        /* complaints about full lanes */
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
    if (zsock_connect(s, "%s", ep) == -1) {
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
    if (!conf->use_stdin) {
        char t[EP_MAX];
        const char *q = *conf->query ? conf->query
                                     : ep_default(t, sizeof t, conf->rundir,
                                                  "ingestd", "query");
        self->router = zsock_new(ZMQ_ROUTER);
        if (zsock_bind(self->router, "%s", q) == -1) {
            log_warn("ingestd: cannot bind %s", q);
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
    for (int64_t i = 0; i < self->conf->lanes; i++) {
        zsock_destroy(&self->push[i]);
        msg_batch_destroy(&self->lane_batch[i]);
    }
    free(self->push);
    free(self->lane_batch);
    free(self->seq);
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
    for (size_t k = 0; k < cnt; k++) {
        const struct msg_reading *r = msg_batch_reading(b, k);
        const char *key = msg_batch_str(b, r->key_off);
        unsigned lane = series_lane(key, strlen(key), n);
        msg_batch_add_reading(self->lane_batch[lane], key, r->ts, r->value);
    }
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

/* Parse, forward, and produce the HTTP answer. */
static int
s_ingest(ingestd_t *self, int form, const char *body, size_t len,
         const char *precision, json_t **reply)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    struct ingest_report r;
    int64_t prec = ingest_parse_precision(precision);
    int status;

    self->requests++;
    if (prec < 0) {
        msg_batch_destroy(&b);
        *reply = rpc_error("bad_request",
                           "precision must be ns, u, ms, s, m or h", "precision");
        return 400;
    }
    ingest_parse(form, body, len, clock_now_ns(), prec, b, &r);
    self->rejected += r.rejected;
    status = ingest_parse_reply(form, &r, reply);
    ingest_parse_report_clear(&r);
    if (msg_batch_size(b) > 0 && s_forward(self, b) == -1) {
        self->refused++;
        json_decref(*reply);
        *reply = rpc_error("overloaded",
                           "downstream is busy; retry after the given seconds",
                           "aggd");
        status = 503;
    }
    msg_batch_destroy(&b);
    return status;
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
        reply = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I}", "daemon",
                          self->conf->id, "requests", (json_int_t)self->requests,
                          "accepted", (json_int_t)self->accepted, "rejected",
                          (json_int_t)self->rejected, "refused",
                          (json_int_t)self->refused, "lanes",
                          (json_int_t)self->conf->lanes);
        status = 200;
    } else if (strcmp(op, "ingest") != 0) {
        reply = rpc_error("unknown_op", "ingestd does not know this request", op);
        status = 400;
    } else if (form == NULL || (f = ingest_parse_form(form)) < 0 || body == NULL) {
        reply = rpc_error("bad_request", "ingest needs a form and a body", "rpc");
        status = 400;
    } else {
        status = s_ingest(self, f, body, json_string_length(json_object_get(req, "body")),
                          json_string_value(json_object_get(req, "precision")),
                          &reply);
    }
    rpc_reply_send(sock, &env, status, reply);
    json_decref(req);
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
    int form, status;

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
    const char *ce = http_req_header(req, "Content-Encoding");
    if (ce && strcmp(ce, "identity") != 0) {
        http_req_reply_error(req, 415, "unsupported_encoding",
                             "Content-Encoding is not supported yet", "headers");
        return;
    }
    /* InfluxDB 2 clients say "precision=s" too; v1 says the same name. */
    body = http_req_body(req, &len);
    status = s_ingest(self, form, body, len, prec, &reply);
    if (status == 503)
        http_req_add_header(req, "Retry-After", INGESTD_RETRY_AFTER);
    if (status == 204) {
        json_decref(reply);
        http_req_reply(req, 204, "application/json", xstrdup(""), 0);
        return;
    }
    http_req_reply_json(req, status, reply);
}

static void
s_on_event(enum daemon_event ev, void *arg)
{
    (void)ev;
    (void)arg;
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
        ingest_parse(INGEST_FORM_LINES, line, (size_t)len, clock_now_ns(), 1,
                     b, &r);
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
    if (self->conf->port >= 0) {
        self->http = http_server_new(self->loop, self->conf->listen,
                                     (int)self->conf->port,
                                     (size_t)self->conf->body_max, s_on_http,
                                     self);
        if (self->http == NULL) {
            close(sigfd);
            return -1;
        }
    }
    snprintf(summary, sizeof summary, "lanes=%lld http=%s:%d query=%s",
             (long long)self->conf->lanes, self->conf->listen,
             self->http ? http_server_port(self->http) : -1,
             zsock_endpoint(self->router));
    daemon_ready(summary);
    zloop_start(self->loop);
    http_server_destroy(&self->http); /* stop intake first */
    close(sigfd);
    return 0;
}

void
ingestd_test(bool verbose)
{
    char dir[] = "/tmp/ingestd_test.XXXXXX", ep[EP_MAX];
    struct ingestd_conf c = {0};
    ingestd_t *d;
    zsock_t *pull;
    json_t *reply;
    msg_batch_t *b;
    const char *body = "{\"data\":[{\"name\":\"a\",\"value\":1},"
                       "{\"name\":\"b\",\"value\":2}]}";

    assert(mkdtemp(dir));
    c.rundir = dir;
    c.id = "ingestd.t";
    c.lanes = 1;
    c.down = "";
    c.query = "";
    c.hwm = 1;
    c.drain = 0;
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.in", dir);
    pull = zsock_new_pull(ep);
    zsock_set_rcvhwm(pull, 1);
    d = ingestd_new(&c);
    assert(d);
    zclock_sleep(50); /* let the PUSH connect */
    assert(s_ingest(d, INGEST_FORM_RECORD, body, strlen(body), NULL, &reply) == 200);
    json_decref(reply);
    assert(msg_batch_recv(pull, &b) == MSG_OK);
    assert(msg_batch_size(b) == 2 && msg_batch_env(b)->seq == 1);
    TEST_STREQ(msg_batch_env(b)->producer, "ingestd.t");
    msg_batch_destroy(&b);
    /* Nobody reads: the queues fill and writes are refused with 503. */
    int status = 200;
    for (int i = 0; i < 100 && status == 200; i++) {
        status = s_ingest(d, INGEST_FORM_RECORD, body, strlen(body), NULL, &reply);
        json_decref(reply);
    }
    assert(status == 503 && d->refused == 1);
    ingestd_destroy(&d);
    zsock_destroy(&pull);
    zsys_dir_delete("%s", dir);
    (void)verbose;
    TEST_OK("ingestd");
}
