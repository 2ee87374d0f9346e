/*
 * anomalyd: the anomaly daemon's server object (see anomalyd.h).
 *
 * One zloop: the PULL reader scores batches, the ROUTER reader answers
 * queries. While batches are pending downstream (common/outq) the PULL
 * reader is off, so aggd's queue fills and backpressure travels upstream
 * (DESIGN.md).
 */
#include "anomalyd/anomalyd.h"
#include "anomalyd/anomaly.h"
#include "anomalyd/anomaly_case.h"
#include "anomalyd/anomaly_store.h"

#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/outq.h"
#include "common/reading.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

/* Series key of CSV filter input. */
#define S_CSV_SERIES "csv"

struct anomalyd {
    const struct anomalyd_conf *conf; /* borrowed configuration */
    double threshold;                 /* live |z| threshold (SIGHUP) */
    double min_score;                 /* live event score (SIGHUP) */
    const struct cfg_opt *tab;        /* config table for reloads */
    size_t ntab;                      /* its size */
    const char *conf_path;            /* config file for reloads or NULL */
    zloop_t *loop;                    /* the one event loop */
    zsock_t *pull;                    /* readings in from aggd */
    zsock_t *router;                  /* queries from apid */
    zsock_t *pub;                     /* anomalies out to live views */
    zsock_t *push;                    /* readings + anomalies to alertd */
    anomaly_store_t *store;           /* detectors and kept readings */
    outq_t *out;                      /* batches alertd has not taken */
    char producer[64];                /* "anomalyd.<lane>" */
    uint64_t seq;                     /* batches sent downstream */
    uint64_t batches_in;              /* batches scored */
    uint64_t readings_in;             /* readings scored */
    uint64_t anomalies_out;           /* anomaly events emitted */
    uint64_t forecasts_out;           /* forecast events emitted */
    uint64_t bad_batches;             /* batches dropped as malformed */
    uint64_t queries;                 /* queries answered */
    bool csv_out;                     /* filter prints CSV */
    bool csv_series_out;              /* ... with a series column */
    struct ratelimit rl_bad;          /* complaints about bad batches */
};

static int s_on_pull(zloop_t *loop, zsock_t *sock, void *arg);

int
anomalyd_conf_check(const struct anomalyd_conf *conf)
{
    int errors = 0;
    if (!anomaly_method_valid(conf->method)) {
        char q[CFG_QUOTE_BUF];
        fprintf(stderr, "anomalyd: method: unknown '%s' (one of: %s)\n",
                cfg_quote(conf->method, q, sizeof q), anomaly_methods());
        errors++;
    }
    if (strcmp(conf->format, "json") && strcmp(conf->format, "csv")) {
        fprintf(stderr, "anomalyd: format: must be json or csv\n");
        errors++;
    }
    if (conf->use_stdin != conf->use_stdout) {
        fprintf(stderr, "anomalyd: --stdin and --stdout go together\n");
        errors++;
    }
    return errors ? -1 : 0;
}

static zsock_t *
s_socket(int type, const char *tmpl, const char *rundir, const char *daemon,
         const char *what, unsigned lane, bool bind, int64_t hwm)
{
    return ep_socket(type, tmpl, rundir, daemon, what, lane, bind, hwm);
}

static struct anomaly_conf
s_detector_conf(const struct anomalyd_conf *conf)
{
    struct anomaly_conf ac;
    anomaly_conf_default(&ac);
    snprintf(ac.method, sizeof ac.method, "%s", conf->method);
    ac.window = (size_t)conf->window;
    ac.threshold = conf->threshold;
    return ac;
}

/* Heap growth step (glibc's M_TOP_PAD). */
#define ANOMALYD_HEAP_STEP (32 << 20)

anomalyd_t *
anomalyd_new(const struct anomalyd_conf *conf)
{
    anomalyd_t *self = xcalloc(1, sizeof *self);
    unsigned lane = (unsigned)conf->lane;
    struct anomaly_conf ac = s_detector_conf(conf);

    self->conf = conf;
    self->threshold = conf->threshold;
    self->min_score = conf->min_score;
    snprintf(self->producer, sizeof self->producer, "anomalyd.%u", lane);
    /* The heap grows 32 MB at a time, so the store can advise huge pages
     * for what the series will grow into (anomaly_store.c). */
    mallopt(M_TOP_PAD, ANOMALYD_HEAP_STEP);
    self->store = anomaly_store_new(&ac, (size_t)conf->keep);
    if (!self->store) {
        log_warnx("anomalyd: unknown method %s", conf->method);
        goto fail;
    }
    if (conf->use_stdin)
        return self;
    if (daemon_mkdirs(conf->rundir) == -1) {
        log_warn("anomalyd: cannot create %s", conf->rundir);
        goto fail;
    }
    self->loop = zloop_new();
    self->pull = s_socket(ZMQ_PULL, conf->in, conf->rundir, "anomalyd", "in",
                          lane, true, conf->hwm);
    self->router = s_socket(ZMQ_ROUTER, conf->query, conf->rundir, "anomalyd",
                            "query", lane, true, conf->hwm);
    self->pub = s_socket(ZMQ_PUB, conf->pub, conf->rundir, "anomalyd", "pub",
                         lane, true, conf->hwm);
    if (!self->pull || !self->router || !self->pub)
        goto fail;
    if (strcmp(conf->down, "none") != 0) {
        self->push = s_socket(ZMQ_PUSH, conf->down, conf->rundir, "alertd",
                              "in", lane, false, conf->hwm);
        if (!self->push)
            goto fail;
    }
    self->out = outq_new(self->loop, self->push, self->pull, s_on_pull, self,
                         "anomalyd", "alertd");
    return self;
fail:
    anomalyd_destroy(&self);
    return NULL;
}

void
anomalyd_set_reload(anomalyd_t *self, const struct cfg_opt *tab, size_t n,
                    const char *path)
{
    self->tab = tab;
    self->ntab = n;
    self->conf_path = path;
}

void
anomalyd_destroy(anomalyd_t **self_p)
{
    anomalyd_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zloop_destroy(&self->loop);
    zsock_destroy(&self->push);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pull);
    outq_destroy(&self->out);
    anomaly_store_destroy(&self->store);
    free(self);
    *self_p = NULL;
}

/* Add the forecast of the series just scored when one is due. */
static void
s_forecast(anomalyd_t *self, msg_batch_t *fb, const char *key)
{
    int64_t ts[MSG_FORECAST_POINTS];
    double v[MSG_FORECAST_POINTS], lo[MSG_FORECAST_POINTS],
        hi[MSG_FORECAST_POINTS];
    size_t n = anomaly_store_forecast_due(
        self->store, self->conf->forecast_every, self->conf->forecast_horizon,
        MSG_FORECAST_POINTS, ts, v, lo, hi);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]) || !isfinite(lo[i]) || !isfinite(hi[i]))
            return; /* the wire refuses it; nothing to forecast */
    msg_batch_add_forecast(fb, key, ts[0], ts[1] - ts[0], n, v, lo, hi);
    self->forecasts_out++;
}

/* Score a readings batch into the anomalies batch an and, when forecast
 * events are on, the forecasts batch fb (both maybe left empty). */
static void
s_score(anomalyd_t *self, msg_batch_t *b, msg_batch_t *an, msg_batch_t *fb)
{
    size_t n = msg_batch_size(b);

    for (size_t i = 0; i < n; i++) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        const char *key = msg_batch_str(b, r->key_off);
        struct anomaly_result res;
        anomaly_store_score(self->store, key, r->ts, r->value, &res);
        /* An alarm is always an event, whatever its score. */
        if (res.score >= self->min_score || res.alarm) {
            msg_batch_add_anomaly(an, key, r->ts, r->value,
                                  isfinite(res.z) ? res.z : 0, res.score,
                                  res.method, res.alarm);
            self->anomalies_out++;
        }
        if (self->conf->forecast_every > 0)
            s_forecast(self, fb, key);
    }
    self->readings_in += n;
    self->batches_in++;
}

/* Send an event batch after the readings: stamped, published, queued
 * for alertd; destroyed when empty. */
static void
s_send_events(anomalyd_t *self, msg_batch_t **bp, int64_t now)
{
    msg_batch_t *b = *bp;
    if (msg_batch_size(b) == 0) {
        msg_batch_destroy(bp);
        return;
    }
    struct msg_envelope *e = msg_batch_env(b);
    snprintf(e->producer, sizeof e->producer, "%s", self->producer);
    e->lane = (uint32_t)self->conf->lane;
    e->seq = ++self->seq;
    e->ts = now;
    msg_batch_send(b, zsock_resolve(self->pub), ZMQ_DONTWAIT);
    outq_send(self->out, bp);
}

static int
s_on_pull(zloop_t *loop, zsock_t *sock, void *arg)
{
    anomalyd_t *self = arg;
    msg_batch_t *b = NULL;
    int rc = msg_batch_recv(zsock_resolve(sock), &b);

    if (rc != MSG_OK) {
        if (rc == -1)
            return 0;
        self->bad_batches++;
        if (ratelimit_complain(&self->rl_bad))
            log_warnx("anomalyd: dropped a malformed batch: %s (%llu so far)",
                      msg_strerror(rc), (unsigned long long)self->bad_batches);
        return 0;
    }
    if (msg_batch_type(b) != MSG_TYPE_READINGS) {
        self->bad_batches++;
        if (ratelimit_complain(&self->rl_bad))
            log_warnx("anomalyd: dropped a batch of type %d (%llu so far)",
                      msg_batch_type(b), (unsigned long long)self->bad_batches);
        msg_batch_destroy(&b);
        return 0;
    }
    struct msg_envelope *e = msg_batch_env(b);
    log_debug("anomalyd: batch producer=%s lane=%u seq=%llu n=%zu", e->producer,
              e->lane, (unsigned long long)e->seq, msg_batch_size(b));
    msg_batch_t *an = msg_batch_new(MSG_TYPE_ANOMALIES);
    msg_batch_t *fb = msg_batch_new(MSG_TYPE_FORECASTS);
    s_score(self, b, an, fb);
    int64_t now = clock_now_ns();
    snprintf(e->producer, sizeof e->producer, "%s", self->producer);
    e->seq = ++self->seq;
    e->ts = now;
    /* alertd waits for the anomalies batch that follows, to evaluate each
     * reading with its score (PROTOCOL.md, "companion"). */
    e->companion = msg_batch_size(an) > 0;
    outq_send(self->out, &b); /* a full alertd pauses this reader */
    s_send_events(self, &an, now);
    s_send_events(self, &fb, now);
    return 0;
}

static json_t *
s_stats(anomalyd_t *self)
{
    return json_pack(
        "{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
        "daemon",
        self->producer, "method", self->conf->method, "batches_in",
        (json_int_t)self->batches_in, "readings_in",
        (json_int_t)self->readings_in, "anomalies_out",
        (json_int_t)self->anomalies_out, "forecasts_out",
        (json_int_t)self->forecasts_out, "bad_batches",
        (json_int_t)self->bad_batches, "queries", (json_int_t)self->queries,
        "downstream_stalls", (json_int_t)outq_stalls(self->out), "series",
        (json_int_t)anomaly_store_series(self->store), "kept",
        (json_int_t)anomaly_store_kept(self->store), "paused", outq_paused(self->out));
}

static int
s_on_query(zloop_t *loop, zsock_t *sock, void *arg)
{
    anomalyd_t *self = arg;
    zmsg_t *env;
    json_t *req = rpc_request_recv(zsock_resolve(sock), &env), *body = NULL;
    int status;

    (void)loop;
    if (req == NULL)
        return 0;
    self->queries++;
    const char *op = json_string_value(json_object_get(req, "op"));
    if (op && (!strcmp(op, "stats") || !strcmp(op, "status"))) {
        body = s_stats(self);
        status = 200;
    } else if (op && !strcmp(op, "anomalies"))
        status = anomaly_store_query(self->store, req, &body);
    else if (op && !strcmp(op, "forecast"))
        status = anomaly_store_forecast(self->store, req, &body);
    else {
        body =
            rpc_error("unknown_op",
                      "anomalyd answers anomalies, forecast and stats", "op");
        status = 400;
    }
    rpc_reply_send(zsock_resolve(sock), &env, status, body);
    json_decref(req);
    return 0;
}

/* Reload on SIGHUP: parse the file over a copy, apply what can change. */
static void
s_reload(anomalyd_t *self)
{
    if (!self->conf_path || !self->tab) {
        log_info("reload: no configuration file; nothing to do");
        return;
    }
    struct anomalyd_conf c = *self->conf;
    /* cfg_load_file replaces strings, so the copy needs its own. */
    char **strs[] = {&c.rundir, &c.in,     &c.query, &c.pub,
                     &c.down,   &c.method, &c.format};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        *strs[i] = *strs[i] ? xstrdup(*strs[i]) : NULL;
    if (cfg_load_file(self->tab, self->ntab, &c, self->conf_path) == -1 ||
        anomalyd_conf_check(&c) == -1)
        log_err("reload: %s has errors; keeping the running configuration",
                self->conf_path);
    else {
        if (strcmp(c.method, self->conf->method) ||
            c.window != self->conf->window || c.keep != self->conf->keep)
            log_warnx("reload: method, window and keep require restart");
        self->threshold = c.threshold;
        self->min_score = c.min_score;
        anomaly_store_set_threshold(self->store, c.threshold);
        log_info("reload: threshold=%g min-score=%g", self->threshold,
                 self->min_score);
    }
    cfg_free(self->tab, self->ntab, &c);
}

static void
s_on_event(enum daemon_event ev, void *arg)
{
    if (ev == DAEMON_EV_RELOAD)
        s_reload(arg);
}

/* Parse one CSV line "timestamp,value"; *vtext is the value as written
 * (echoed in CSV output, which saves formatting it again). 0, or -1
 * (skip). */
static int
s_parse_csv(char *line, int64_t *ts, double *v, const char **vtext)
{
    char *comma = strchr(line, ',');
    if (!comma)
        return -1;
    *comma = '\0';
    char *val = comma + 1, *end = strchr(val, ',');
    if (end)
        *end = '\0';
    if (anomaly_case_parse_ts(line, ts) != 0)
        return -1;
    *vtext = val;
    if (*val == '\0' || !strcmp(val, "nan") || !strcmp(val, "NaN")) {
        *vtext = "null";
        *v = NAN; /* a gap: scored 0 and not learnt */
        return 0;
    }
    return strutil_tod(val, v);
}

/* An output line under construction: one fwrite per reading instead of
 * a dozen stdio calls. */
struct s_line {
    char buf[512 + 6 * SERIES_KEY_MAX]; /* any line: a key escapes to at
                                           most 6 bytes per byte */
    size_t n;                           /* bytes used */
};

static void
s_put(struct s_line *l, const char *s)
{
    size_t k = strlen(s);
    assert(l->n + k < sizeof l->buf);
    memcpy(l->buf + l->n, s, k);
    l->n += k;
}

/* Append s as a JSON string. Keys are valid UTF-8 (checked at ingest),
 * so only quotes, backslashes and control characters need escaping. */
static void
s_put_json_string(struct s_line *l, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    assert(l->n + 6 * strlen(s) + 2 < sizeof l->buf);
    char *p = l->buf + l->n;
    *p++ = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\') {
            *p++ = '\\';
            *p++ = (char)*c;
        } else if (*c < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[*c >> 4];
            p[5] = hex[*c & 15];
            p += 6;
        } else
            *p++ = (char)*c;
    }
    *p++ = '"';
    l->n = (size_t)(p - l->buf);
}

static void
s_print(anomalyd_t *self, FILE *out, const char *key, int64_t ts, double v,
        const char *vtext, const struct anomaly_result *r)
{
    char tb[40], vb[32], zb[32], sb[32];
    struct s_line l;

    l.n = 0;
    clock_format(ts, tb, sizeof tb);
    if (!vtext)
        vtext = strutil_dtoa(v, vb, sizeof vb);
    strutil_dtoa(r->z, zb, sizeof zb);
    strutil_dtoa(r->score, sb, sizeof sb);
    if (self->csv_out) {
        if (self->csv_series_out) {
            s_put(&l, key);
            s_put(&l, ",");
        }
        const char *f[] = {tb, ",", vtext, ",", sb, ",", zb, ",", r->method};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            s_put(&l, f[i]);
        if (self->conf->alarm_column)
            s_put(&l, r->alarm ? ",1" : ",0");
        s_put(&l, "\n");
    } else {
        /* The key is the only string that needs escaping. */
        s_put(&l, "{\"series\":");
        s_put_json_string(&l, key);
        const char *f[] = {",\"timestamp\":\"",
                           tb,
                           "\",\"value\":",
                           vtext,
                           ",\"z\":",
                           zb,
                           ",\"score\":",
                           sb,
                           ",\"method\":\"",
                           r->method,
                           r->score >= self->min_score
                               ? "\",\"anomaly\":true"
                               : "\",\"anomaly\":false"};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            s_put(&l, f[i]);
        s_put(&l, r->alarm ? ",\"alarm\":true}\n" : ",\"alarm\":false}\n");
    }
    fwrite(l.buf, 1, l.n, out);
}

/* The CSV header: the series column when the input has one, the alarm
 * column when asked for. */
static void
s_header(anomalyd_t *self, FILE *out, bool series)
{
    fprintf(out, "%stimestamp,value,anomaly_score,z,method%s\n",
            series ? "series," : "", self->conf->alarm_column ? ",alarm" : "");
}

/* One reading of filter input. */
struct s_reading {
    char *line;                /* getline's buffer (vtext points into it) */
    size_t cap;                /* its size */
    char key[SERIES_KEY_MAX];  /* series */
    int64_t ts;                /* timestamp, ns */
    double v;                  /* value (NAN: a gap) */
    const char *vtext;         /* value as written (CSV) or NULL */
    uint64_t hash;             /* anomaly_store_hash of key */
    const anomaly_series_t *s; /* its series, if known when looked up */
};

/* Where filter input stands. */
struct s_input {
    size_t lineno;   /* lines read */
    size_t bad;      /* lines skipped */
    bool csv_series; /* CSV with a series column */
};

/* Read lines until one holds a reading (1) or the input ends (0). */
static int
s_read(FILE *in, struct s_input *st, struct s_reading *rd)
{
    ssize_t len;
    while ((len = getline(&rd->line, &rd->cap, in)) > 0) {
        char *line = rd->line;
        st->lineno++;
        rd->vtext = NULL;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        if (line[0] == '{') {
            json_error_t jerr;
            struct reading_err err;
            json_t *j = json_loadb(line, (size_t)len, 0, &jerr);
            if (!j || reading_parse(j, clock_now_ns(), rd->key, sizeof rd->key,
                                    &rd->ts, &rd->v, &err)) {
                if (st->bad++ < 10)
                    log_warnx("stdin:%zu: %s%s%s", st->lineno,
                              j ? err.field : jerr.text, j ? ": " : "",
                              j ? err.reason : "");
                json_decref(j);
                continue;
            }
            json_decref(j);
            return 1;
        }
        /* A header "series,timestamp,value" announces a series column
         * (a key without commas: a name, or one tag). */
        if (st->lineno == 1 && !strncmp(line, "series,", 7)) {
            st->csv_series = true;
            continue;
        }
        char *rest = line;
        if (st->csv_series) {
            char *c = strchr(line, ',');
            if (!c || c == line || c - line >= (ptrdiff_t)sizeof rd->key) {
                if (st->bad++ < 10)
                    log_warnx("stdin:%zu: expected series,timestamp,value",
                              st->lineno);
                continue;
            }
            *c = '\0';
            rest = c + 1;
        }
        if (s_parse_csv(rest, &rd->ts, &rd->v, &rd->vtext) == -1) {
            /* The header of a CSV file is not an error. */
            if (st->lineno > 1 && st->bad++ < 10)
                log_warnx("stdin:%zu: expected timestamp,value", st->lineno);
            continue;
        }
        if (st->csv_series)
            memcpy(rd->key, line, (size_t)(rest - line));
        else
            memcpy(rd->key, S_CSV_SERIES, sizeof S_CSV_SERIES);
        return 1;
    }
    return 0;
}

/* The filter reads S_AHEAD readings ahead of the one it scores, so that
 * each series' state is on its way into the cache by the time it is
 * scored: a reading S_AHEAD ahead gets its hash (and its slot loading),
 * and one more stage every S_GAP readings as it comes nearer (each stage
 * reads what the one before loaded; S_GAP readings give it time to
 * arrive). */
#define S_GAP 2
#define S_STAGES 4 /* the slot, then anomaly_store_prefetch's three */
#define S_AHEAD (S_STAGES * S_GAP)
/* Prefetching pays only when the series do not fit in the cache (about
 * 12 KB each): with 100 series it costs 10 % more CPU, with 10,000 it
 * saves 20 % (docs/ANOMALY.md, "Throughput"). */
#define S_PREFETCH_SERIES 1024

int
anomalyd_filter(anomalyd_t *self, FILE *in, FILE *out)
{
    struct s_reading rd[S_AHEAD + 1];
    struct s_input st = {0, 0, false};
    size_t have = 0, cur = 0;

    memset(rd, 0, sizeof rd);
    self->csv_out = !strcmp(self->conf->format, "csv");
    bool header = !self->csv_out; /* CSV's header waits for the input's */
    /* rd[cur] is scored next; the have - 1 after it (mod S_AHEAD + 1) are
     * read, and on their way into the cache once there are many series
     * (none yet: nothing to prefetch at the start). */
    while (have < S_AHEAD + 1 &&
           s_read(in, &st, &rd[(cur + have) % (S_AHEAD + 1)]))
        have++;
    while (have > 0) {
        struct s_reading *r = &rd[cur];
        struct anomaly_result res;
        if (!header) {
            self->csv_series_out = st.csv_series;
            s_header(self, out, st.csv_series);
            header = true;
        }
        anomaly_store_score(self->store, r->key, r->ts, r->v, &res);
        self->readings_in++;
        if (res.score >= self->min_score || res.alarm)
            self->anomalies_out++;
        s_print(self, out, r->key, r->ts, r->v, self->csv_out ? r->vtext : NULL,
                &res);
        cur = (cur + 1) % (S_AHEAD + 1);
        have--;
        bool deep = anomaly_store_series(self->store) >= S_PREFETCH_SERIES;
        /* Refill the slot just scored; the readings S_AHEAD, S_AHEAD -
         * S_GAP, ... ahead move one stage on. */
        if (have == S_AHEAD) {
            struct s_reading *n = &rd[(cur + S_AHEAD) % (S_AHEAD + 1)];
            if (s_read(in, &st, n)) {
                n->hash = deep ? anomaly_store_hash(self->store, n->key) : 0;
                n->s = NULL;
                have++;
            }
        }
        for (size_t k = S_GAP; deep && k < have && k < S_AHEAD; k += S_GAP) {
            struct s_reading *n = &rd[(cur + k) % (S_AHEAD + 1)];
            int stage = (S_AHEAD - (int)k) / S_GAP - 1;
            if (stage == 0 && n->hash)
                n->s = anomaly_store_find(self->store, n->hash);
            anomaly_store_prefetch(n->s, n->ts, stage);
        }
    }
    for (size_t i = 0; i < S_AHEAD + 1; i++)
        free(rd[i].line);
    if (!header)
        s_header(self, out, st.csv_series);
    fflush(out);
    if (st.bad)
        log_warnx("stdin: %zu bad lines skipped", st.bad);
    log_info("filter: %llu readings, %llu anomalies",
             (unsigned long long)self->readings_in,
             (unsigned long long)self->anomalies_out);
    return 0;
}

int
anomalyd_run(anomalyd_t *self)
{
    int sigfd;
    char summary[256];

    if (self->conf->use_stdin)
        return anomalyd_filter(self, stdin, stdout);
    if ((sigfd = daemon_signals(self->loop, s_on_event, self)) == -1) {
        log_warn("anomalyd: signals");
        return -1;
    }
    outq_start(self->out);
    zloop_reader(self->loop, self->router, s_on_query, self);
    ep_watch_pub(self->loop, self->pub);
    snprintf(summary, sizeof summary, "lane=%lld method=%s in=%s",
             (long long)self->conf->lane, self->conf->method,
             zsock_endpoint(self->pull));
    daemon_ready(summary);
    zloop_start(self->loop);
    /* Drain: hand alertd what it still owes, within the deadline. */
    outq_drain(self->out, clock_mono_ns() + self->conf->drain);
    close(sigfd);
    return 0;
}

/* A test configuration: the default ensemble, CSV, in dir. */
static void
s_test_conf(struct anomalyd_conf *c, const char *dir, double min_score)
{
    memset(c, 0, sizeof *c);
    c->rundir = (char *)dir;
    c->in = c->query = c->pub = c->down = "";
    c->method = "ensemble";
    c->format = "csv";
    c->window = 200;
    c->threshold = 3.0;
    c->min_score = min_score;
    c->keep = 64;
    c->hwm = 1000;
    c->drain = CLOCK_NS_PER_S;
}

/* Score case k through a's pipeline: batches of 97 readings on the PULL
 * socket (gaps are not sent: ingestd rejects non-finite values), the
 * anomaly events received on the alertd socket. Returns the events, the
 * first cap of them in ts, score and alarm. */
static size_t
s_test_pipe(anomalyd_t *a, const char *dir, const struct anomaly_case *k,
            double *ts, double *score, bool *alarm, size_t cap)
{
    char ep[EP_MAX];
    size_t np = 0;
    snprintf(ep, sizeof ep, "ipc://%s/alertd.0.in", dir);
    zsock_t *alertd = zsock_new_pull(ep);
    zsock_set_rcvtimeo(alertd, 10000);
    zsock_set_rcvtimeo(a->pull, 10000);
    snprintf(ep, sizeof ep, "ipc://%s/anomalyd.0.in", dir);
    zsock_t *aggd = zsock_new_push(ep);
    for (size_t i = 0; i < k->n; i += 97) {
        msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
        for (size_t j = i; j < i + 97 && j < k->n; j++)
            if (isfinite(k->value[j]))
                msg_batch_add_reading(b, S_CSV_SERIES, k->ts[j], k->value[j]);
        assert(msg_batch_send(b, zsock_resolve(aggd), 0) == 0);
        msg_batch_destroy(&b);
        uint64_t before = a->anomalies_out;
        s_on_pull(a->loop, a->pull, a);
        /* The loop does not run here: what the queue kept because the
         * PUSH had not reconnected to this PULL yet (a loaded machine)
         * goes out now. */
        assert(outq_drain(a->out, clock_mono_ns() + 10 * CLOCK_NS_PER_S) == 0);
        /* Readings, then anomalies when there are any. */
        assert(msg_batch_recv(zsock_resolve(alertd), &b) == MSG_OK);
        assert(msg_batch_type(b) == MSG_TYPE_READINGS);
        msg_batch_destroy(&b);
        if (a->anomalies_out > before) {
            assert(msg_batch_recv(zsock_resolve(alertd), &b) == MSG_OK);
            assert(msg_batch_type(b) == MSG_TYPE_ANOMALIES);
            for (size_t j = 0; j < msg_batch_size(b); j++, np++) {
                const struct msg_anomaly *an = msg_batch_anomaly(b, j);
                if (np < cap) {
                    ts[np] = (double)an->ts;
                    alarm[np] = an->alarm;
                    score[np] = an->score;
                }
            }
            msg_batch_destroy(&b);
        }
    }
    zsock_destroy(&aggd);
    zsock_destroy(&alertd);
    return np;
}

/* The same series scored through the pipeline and through the filter
 * (CSV on a stream) gives the same anomalies, bit for bit, and the same
 * novelty alarms; an alarm is an event whatever its score. */
static void
s_test_same(const char *dir, bool verbose)
{
    struct anomalyd_conf c;
    /* Each instance has endpoints of its own: the test's sockets could
     * otherwise meet the listener of the instance before it while that
     * one closes, and what was sent there is gone (seen on a loaded
     * machine). */
    char d1[EP_MAX], d2[EP_MAX];
    snprintf(d1, sizeof d1, "%s/same1", dir);
    snprintf(d2, sizeof d2, "%s/same2", dir);
    s_test_conf(&c, d1, 0.2);
    struct anomaly_case *k = anomaly_case_load("tests/cases/anomaly/gaps.csv");
    assert(k);

    anomalyd_t *a = anomalyd_new(&c);
    assert(a);
    double pipe_ts[256], pipe_score[256];
    bool pipe_alarm[256];
    size_t np = s_test_pipe(a, d1, k, pipe_ts, pipe_score, pipe_alarm, 256),
           pipe_nalarm = 0;
    assert(np <= 256);
    for (size_t i = 0; i < np; i++)
        pipe_nalarm += pipe_alarm[i];
    /* The query's alarm=true finds the pipeline's alarms, and only them,
     * each with "alarm": true. */
    json_t *req = json_pack("{s:s, s:b}", "series", S_CSV_SERIES, "alarm", 1),
           *body;
    assert(anomaly_store_query(a->store, req, &body) == 200);
    json_t *hits = json_object_get(body, "anomalies");
    assert(json_array_size(hits) == pipe_nalarm);
    for (size_t i = 0; i < json_array_size(hits); i++)
        assert(json_is_true(json_object_get(json_array_get(hits, i), "alarm")));
    json_decref(body);
    json_decref(req);
    anomalyd_destroy(&a);

    /* With a live score no reading reaches, the events are the alarms. */
    c.rundir = d2;
    a = anomalyd_new(&c);
    assert(a);
    a->min_score = 2;
    double al_ts[8], al_score[8];
    bool al_alarm[8];
    size_t nal = s_test_pipe(a, d2, k, al_ts, al_score, al_alarm, 8);
    assert(nal == pipe_nalarm && nal > 0);
    for (size_t i = 0, j = 0; i < nal; i++, j++) {
        while (!pipe_alarm[j])
            j++;
        assert(al_alarm[i] && al_ts[i] == pipe_ts[j]);
    }
    anomalyd_destroy(&a);

    /* Filter: the same readings as CSV (epoch ms), gaps included, with
     * the novelty alarm column (one alarm, at the spike: anomaly_ensemble
     * tests the alarm itself). */
    c.use_stdin = c.use_stdout = true;
    c.alarm_column = true;
    a = anomalyd_new(&c);
    assert(a);
    char *ibuf = NULL, *obuf = NULL;
    size_t ilen = 0, olen = 0;
    FILE *fi = open_memstream(&ibuf, &ilen);
    fprintf(fi, "timestamp,value\n");
    for (size_t i = 0; i < k->n; i++)
        if (isfinite(k->value[i]))
            fprintf(fi, "%lld,%.17g\n", (long long)(k->ts[i] / CLOCK_NS_PER_MS),
                    k->value[i]);
        else
            fprintf(fi, "%lld,\n", (long long)(k->ts[i] / CLOCK_NS_PER_MS));
    fclose(fi);
    fi = fmemopen(ibuf, ilen, "r");
    FILE *fo = open_memstream(&obuf, &olen);
    anomalyd_filter(a, fi, fo);
    fclose(fi);
    fclose(fo);
    assert(
        !strncmp(obuf, "timestamp,value,anomaly_score,z,method,alarm\n", 45));
    size_t nalarm = 0;
    for (char *l = strchr(obuf, '\n'); l; l = strchr(l + 1, '\n'))
        if (l > obuf + 1 && l[-1] == '1' && l[-2] == ',')
            nalarm++;
    assert(nalarm == 1);
    size_t nf = 0;
    char *save = NULL;
    for (char *l = strtok_r(obuf, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        char ts[40];
        double v, score;
        bool alarm = l[strlen(l) - 1] == '1';
        if (sscanf(l, "%39[^,],%lf,%lf", ts, &v, &score) != 3 ||
            (score < c.min_score && !alarm))
            continue;
        int64_t t;
        assert(clock_parse_rfc3339(ts, &t) == 0);
        assert(nf < np);
        assert(pipe_ts[nf] == (double)t);
        TEST_NEAR(pipe_score[nf], score, 1e-15);
        assert(pipe_alarm[nf] == alarm);
        nf++;
    }
    if (verbose)
        printf("   pipeline and filter: %zu anomalies each, %zu alarm\n", np,
               pipe_nalarm);
    assert(nf == np && np > 0 && pipe_nalarm == nalarm);
    free(ibuf);
    free(obuf);
    anomalyd_destroy(&a);
    anomaly_case_destroy(&k);
    zsys_dir_delete("%s", d1);
    zsys_dir_delete("%s", d2);
}

/* The filter with more series than S_PREFETCH_SERIES (so it prefetches
 * ahead) scores every reading as the store does on its own. */
static void
s_test_many(const char *dir, bool verbose)
{
    struct anomalyd_conf c;
    s_test_conf(&c, dir, 0.5);
    c.use_stdin = c.use_stdout = true;
    anomalyd_t *a = anomalyd_new(&c);
    assert(a);
    struct anomaly_conf ac;
    anomaly_conf_default(&ac);
    anomaly_store_t *ref = anomaly_store_new(&ac, 4);
    enum { NSER = S_PREFETCH_SERIES + 500, ROUNDS = 16 };
    long long t0 = 1704067200000LL; /* ms */
    char *ibuf = NULL, *obuf = NULL;
    size_t ilen = 0, olen = 0;
    FILE *fi = open_memstream(&ibuf, &ilen);
    fprintf(fi, "series,timestamp,value\n");
    for (int i = 0; i < NSER * ROUNDS; i++) {
        int k = i % NSER, round = i / NSER;
        /* A steady series each, a jump in every seventh in round 12. */
        double v = 20 + k % 10 + 0.1 * (round % 3) +
                   (k % 7 == 0 && round == 12 ? 100 : 0);
        fprintf(fi, "s%d,%lld,%g\n", k, t0 + round * 60000LL, v);
    }
    fclose(fi);
    fi = fmemopen(ibuf, ilen, "r");
    FILE *fo = open_memstream(&obuf, &olen);
    assert(anomalyd_filter(a, fi, fo) == 0);
    fclose(fi);
    fclose(fo);
    assert(anomaly_store_series(a->store) == NSER);
    size_t n = 0, hits = 0;
    char *save = NULL;
    for (char *l = strtok_r(obuf, "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        char key[32], ts[40];
        double v, score;
        if (!strncmp(l, "series,", 7))
            continue;
        assert(sscanf(l, "%31[^,],%39[^,],%lf,%lf", key, ts, &v, &score) == 4);
        int64_t t;
        struct anomaly_result r;
        assert(clock_parse_rfc3339(ts, &t) == 0);
        anomaly_store_score(ref, key, t, v, &r);
        assert(r.score == score);
        hits += score >= 0.5;
        n++;
    }
    if (verbose)
        printf("   filter, %d series: %zu readings as scored alone, %zu "
               "anomalies\n",
               (int)NSER, n, hits);
    assert(n == (size_t)NSER * ROUNDS && hits >= NSER / 7);
    free(ibuf);
    free(obuf);
    anomaly_store_destroy(&ref);
    anomalyd_destroy(&a);
}

void
anomalyd_test(bool verbose)
{
    char dir[] = "/tmp/anomalyd_test.XXXXXX", ep[EP_MAX];
    struct anomalyd_conf c = {0};
    assert(mkdtemp(dir));
    c.rundir = dir;
    c.in = c.query = c.pub = c.down = "";
    c.method = "zscore";
    c.format = "json";
    c.window = 200;
    c.threshold = 3.0;
    c.min_score = 0.5;
    c.keep = 64;
    c.hwm = 100;
    c.drain = CLOCK_NS_PER_S;
    assert(anomalyd_conf_check(&c) == 0);

    anomalyd_t *a = anomalyd_new(&c);
    assert(a);
    /* alertd's end of the chain, and aggd's. */
    snprintf(ep, sizeof ep, "ipc://%s/alertd.0.in", dir);
    zsock_t *alertd = zsock_new_pull(ep);
    snprintf(ep, sizeof ep, "ipc://%s/anomalyd.0.in", dir);
    zsock_t *aggd = zsock_new_push(ep);
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    int64_t t0 = 1704067200LL * CLOCK_NS_PER_S, step = 60 * CLOCK_NS_PER_S;
    const double steady[] = {23.5, 23.7, 23.6, 23.5, 23.6, 23.7,
                             23.5, 23.6, 23.7, 23.6, 23.5, 23.7};
    for (int i = 0; i < 12; i++)
        msg_batch_add_reading(b, "temp_sensor_001", t0 + i * step, steady[i]);
    msg_batch_add_reading(b, "temp_sensor_001", t0 + 12 * step, 100);
    assert(msg_batch_send(b, zsock_resolve(aggd), 0) == 0);
    msg_batch_destroy(&b);
    zsock_set_rcvtimeo(a->pull, 2000);
    s_on_pull(a->loop, a->pull, a);
    assert(a->readings_in == 13 && a->anomalies_out == 1);

    /* alertd receives the readings, then the anomalies. */
    zsock_set_rcvtimeo(alertd, 2000);
    assert(msg_batch_recv(zsock_resolve(alertd), &b) == MSG_OK);
    assert(msg_batch_type(b) == MSG_TYPE_READINGS && msg_batch_size(b) == 13);
    msg_batch_destroy(&b);
    assert(msg_batch_recv(zsock_resolve(alertd), &b) == MSG_OK);
    assert(msg_batch_type(b) == MSG_TYPE_ANOMALIES && msg_batch_size(b) == 1);
    const struct msg_anomaly *an = msg_batch_anomaly(b, 0);
    assert(an->value == 100 && an->stat > 100 && an->score > 0.99);
    TEST_STREQ(msg_batch_str(b, an->method_off), "zscore");
    msg_batch_destroy(&b);

    /* The query socket: anomalies and stats. */
    snprintf(ep, sizeof ep, "ipc://%s/anomalyd.0.query", dir);
    zsock_t *dealer = zsock_new_dealer(ep);
    json_t *req = json_pack("{s:s, s:s, s:f}", "op", "anomalies", "series",
                            "temp_sensor_001", "threshold", 3.0),
           *body;
    rpc_request_send(zsock_resolve(dealer), 7, req);
    json_decref(req);
    zsock_set_rcvtimeo(a->router, 2000);
    s_on_query(a->loop, a->router, a);
    uint64_t id;
    int status;
    zsock_set_rcvtimeo(dealer, 2000);
    assert(rpc_reply_recv(zsock_resolve(dealer), &id, &status, &body) == 0);
    assert(id == 7 && status == 200);
    assert(json_array_size(json_object_get(body, "anomalies")) == 1);
    json_decref(body);
    req = json_pack("{s:s}", "op", "stats");
    rpc_request_send(zsock_resolve(dealer), 8, req);
    json_decref(req);
    s_on_query(a->loop, a->router, a);
    assert(rpc_reply_recv(zsock_resolve(dealer), &id, &status, &body) == 0);
    assert(status == 200);
    assert(json_integer_value(json_object_get(body, "readings_in")) == 13);
    assert(json_integer_value(json_object_get(body, "series")) == 1);
    json_decref(body);
    zsock_destroy(&dealer);
    zsock_destroy(&aggd);
    zsock_destroy(&alertd);
    anomalyd_destroy(&a);
    anomalyd_destroy(&a);

    /* Filter mode on a memory stream: CSV and JSON lines. */
    c.use_stdin = c.use_stdout = true;
    a = anomalyd_new(&c);
    assert(a);
    char in[] = "timestamp,value\n"
                "2024-01-01 00:00:00,23.5\n2024-01-01 00:01:00,23.7\n"
                "2024-01-01 00:02:00,23.6\n2024-01-01 00:03:00,23.5\n"
                "2024-01-01 00:04:00,23.6\n2024-01-01 00:05:00,23.7\n"
                "2024-01-01 00:06:00,23.5\n2024-01-01 00:07:00,23.6\n"
                "2024-01-01 00:08:00,23.7\n2024-01-01 00:09:00,23.6\n"
                "2024-01-01 00:10:00,23.5\n"
                "2024-01-01 00:11:00,nan\n"
                "2024-01-01 00:12:00,100\n"
                "{\"name\":\"x\",\"timestamp\":\"2024-01-01T00:00:00Z\","
                "\"value\":1}\n";
    char *obuf = NULL;
    size_t olen = 0;
    FILE *fi = fmemopen(in, strlen(in), "r"),
         *fo = open_memstream(&obuf, &olen);
    assert(anomalyd_filter(a, fi, fo) == 0);
    fclose(fi);
    fclose(fo);
    if (verbose)
        printf("%s", obuf);
    assert(strstr(obuf, "\"timestamp\":\"2024-01-01T00:12:00.000Z\","
                        "\"value\":100,"));
    assert(strstr(obuf, "\"anomaly\":true") &&
           strstr(obuf, "\"series\":\"x\""));
    assert(strstr(obuf, "\"anomaly\":true,\"alarm\":false}"));
    /* Every output line is valid JSON, escapes included. */
    for (char *l = obuf, *e; (e = strchr(l, '\n')); l = e + 1) {
        json_t *j = json_loadb(l, (size_t)(e - l), 0, NULL);
        assert(j && json_is_object(j));
        json_decref(j);
    }
    struct s_line l = {.n = 0};
    s_put_json_string(&l, "a\"b\\c\x01");
    s_put(&l, "");
    l.buf[l.n] = '\0';
    TEST_STREQ(l.buf, "\"a\\\"b\\\\c\\u0001\"");
    free(obuf);
    anomalyd_destroy(&a);
    s_test_same(dir, verbose);
    s_test_many(dir, verbose);
    zsys_dir_delete("%s", dir);
    TEST_OK("anomalyd");
}
