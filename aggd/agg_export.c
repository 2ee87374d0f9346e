/*
 * agg_export: export of the WAL's readings to InfluxDB or ClickHouse
 * (see agg_export.h).
 *
 * The thread owns the WAL reader, the cursor file and the libcurl
 * handle; the loop thread only learns "cursor segment, counters" from
 * its reports, so nothing is shared.
 */
#include "aggd/agg_export.h"
#include "aggd/agg_wal.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/series.h"
#include "common/strbuf.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_BODY_MAX (4u << 20)      /* bytes of one POST, about */
#define S_IDLE_MS 200              /* poll for new records this often */
#define S_BACKOFF_MIN_MS 500
#define S_BACKOFF_MAX_MS 30000
#define S_TIMEOUT_MS 10000         /* one POST */

struct s_counters {
    uint64_t readings; /* readings the engine took */
    uint64_t posts;    /* successful POSTs */
    uint64_t failures; /* POSTs that failed and were retried */
    uint64_t rejected; /* readings the engine refused for good (4xx) */
    uint64_t seg, off; /* durable cursor */
};

struct agg_export {
    zactor_t *actor;       /* the export thread */
    struct s_counters c;   /* its last report */
};

/* What the thread owns. */
struct s_worker {
    char *url;             /* the engine's insert URL */
    int format;            /* enum agg_export_format */
    char *waldir;          /* aggd's WAL */
    char *cursor;          /* cursor file */
    agg_wal_reader_t *reader;
    struct s_counters c;
    struct ratelimit rl;   /* complaints about the engine */
    int64_t down_since;    /* mono ns of the first failure, or 0 */
};

int
agg_export_format(const char *name)
{
    if (strcmp(name, "influx") == 0)
        return AGG_EXPORT_INFLUX;
    if (strcmp(name, "clickhouse") == 0)
        return AGG_EXPORT_CLICKHOUSE;
    return -1;
}

/* Line protocol: measurement escapes ',' and ' '; tag keys need none
 * (series rules); tag values escape ',', '=' and ' '. */
static void
s_lp_escaped(struct strbuf *b, const char *s, const char *special)
{
    for (const char *p = s; *p; p++) {
        if (strchr(special, *p))
            strbuf_add(b, "\\", 1);
        strbuf_add(b, p, 1);
    }
}

static void
s_influx_line(struct strbuf *b, const char *key, int64_t ts, double v)
{
    char name[SERIES_NAME_MAX + 1], tagbuf[SERIES_KEY_MAX], num[40];
    struct series_tag tags[SERIES_TAGS_MAX];
    int nt = series_key_parse(key, name, sizeof name, tagbuf, sizeof tagbuf,
                              tags, SERIES_TAGS_MAX);

    if (nt < 0)
        return; /* aggd stores only valid keys */
    s_lp_escaped(b, name, ", ");
    for (int i = 0; i < nt; i++) {
        strbuf_add(b, ",", 1);
        strbuf_cat(b, tags[i].key);
        strbuf_add(b, "=", 1);
        s_lp_escaped(b, tags[i].value, ",= ");
    }
    strbuf_cat(b, " value=");
    strbuf_cat(b, strutil_dtoa(v, num, sizeof num));
    snprintf(num, sizeof num, " %" PRId64 "\n", ts);
    strbuf_cat(b, num);
}

/* ClickHouse JSONEachRow: {"series","name","ts" (ns),"value"}. */
static void
s_clickhouse_row(struct strbuf *b, const char *key, int64_t ts, double v)
{
    char name[SERIES_NAME_MAX + 1], tagbuf[SERIES_KEY_MAX], num[40];
    struct series_tag tags[SERIES_TAGS_MAX];
    json_t *row, *jt;
    char *s;
    int nt = series_key_parse(key, name, sizeof name, tagbuf, sizeof tagbuf,
                              tags, SERIES_TAGS_MAX);

    if (nt < 0)
        return;
    jt = json_object();
    for (int i = 0; i < nt; i++)
        json_object_set_new(jt, tags[i].key, json_string(tags[i].value));
    row = json_pack("{s:s, s:s, s:o}", "series", key, "name", name, "tags", jt);
    s = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
    /* The numbers by hand: the shortest double that reads back the same. */
    strbuf_add(b, s, strlen(s) - 1);
    snprintf(num, sizeof num, ",\"ts\":%" PRId64 ",\"value\":", ts);
    strbuf_cat(b, num);
    strbuf_cat(b, strutil_dtoa(v, num, sizeof num));
    strbuf_cat(b, "}\n");
    free(s);
    json_decref(row);
}

int
agg_export_body(int format, const void *record, size_t len, struct strbuf *out)
{
    msg_batch_t *b = NULL;
    size_t n;

    if (!msg_sane(record, len) || msg_batch_decode(record, len, &b) != MSG_OK)
        return -1;
    if (msg_batch_type(b) != MSG_TYPE_READINGS) {
        msg_batch_destroy(&b);
        return -1;
    }
    n = msg_batch_size(b);
    for (size_t i = 0; i < n; i++) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        const char *key = msg_batch_str(b, r->key_off);
        if (format == AGG_EXPORT_CLICKHOUSE)
            s_clickhouse_row(out, key, r->ts, r->value);
        else
            s_influx_line(out, key, r->ts, r->value);
    }
    msg_batch_destroy(&b);
    return (int)n;
}

/* ---- the thread ---------------------------------------------------- */

static int
s_cursor_load(const char *path, uint64_t *seg, uint64_t *off)
{
    FILE *fp = fopen(path, "r");
    unsigned long long s, o;
    int rc = -1;

    *seg = *off = 0;
    if (fp == NULL)
        return -1;
    if (fscanf(fp, "%llu %llu", &s, &o) == 2) {
        *seg = s;
        *off = o;
        rc = 0;
    }
    fclose(fp);
    return rc;
}

static int
s_cursor_save(struct s_worker *w, uint64_t seg, uint64_t off)
{
    char tmp[4200];
    FILE *fp;

    snprintf(tmp, sizeof tmp, "%s.tmp", w->cursor);
    if ((fp = fopen(tmp, "w")) == NULL) {
        log_warn("agg_export: cannot write %s", tmp);
        return -1;
    }
    fprintf(fp, "%" PRIu64 " %" PRIu64 "\n", seg, off);
    if (fflush(fp) != 0 || fdatasync(fileno(fp)) == -1) {
        log_warn("agg_export: cannot save the cursor");
        fclose(fp);
        return -1;
    }
    fclose(fp);
    if (rename(tmp, w->cursor) == -1) {
        log_warn("agg_export: cannot save the cursor");
        return -1;
    }
    w->c.seg = seg;
    w->c.off = off;
    return 0;
}

static size_t
s_discard(char *ptr, size_t size, size_t nmemb, void *arg)
{
    (void)ptr;
    (void)arg;
    return size * nmemb;
}

/* POST body. Returns the HTTP status, or 0 when there was no answer. */
static long
s_post(struct s_worker *w, const struct strbuf *body, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    long status = 0;
    CURLcode cc;

    if (c == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return 0;
    }
    h = curl_slist_append(h, w->format == AGG_EXPORT_CLICKHOUSE
                                 ? "Content-Type: application/x-ndjson"
                                 : "Content-Type: text/plain; charset=utf-8");
    h = curl_slist_append(h, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->p);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sensorpipe-aggd");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)S_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run in a thread */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_discard);
    cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        snprintf(err, errlen, "%s", curl_easy_strerror(cc));
    else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        snprintf(err, errlen, "HTTP %ld", status);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

static void
s_report(struct s_worker *w, zsock_t *pipe)
{
    zsock_send(pipe, "s888888", "C", w->c.readings, w->c.posts, w->c.failures,
               w->c.rejected, w->c.seg, w->c.off);
}

/* Gather up to S_BODY_MAX of records after the cursor and POST them.
 * Returns the wait before the next round in ms. */
static int
s_round(struct s_worker *w, zsock_t *pipe, int backoff)
{
    struct strbuf body = {0};
    const void *rec;
    size_t len;
    int readings = 0, n;
    uint64_t seg, off;
    char err[256];
    long st;

    while (body.len < S_BODY_MAX && agg_wal_reader_next(w->reader, &rec, &len) == 1)
        if ((n = agg_export_body(w->format, rec, len, &body)) > 0)
            readings += n;
    agg_wal_reader_pos(w->reader, &seg, &off);
    if (body.len == 0) {
        /* Only records without readings: move the cursor past them. */
        if ((seg != w->c.seg || off != w->c.off) && s_cursor_save(w, seg, off) == 0)
            s_report(w, pipe);
        strbuf_free(&body);
        return S_IDLE_MS;
    }
    st = s_post(w, &body, err, sizeof err);
    strbuf_free(&body);
    if (st >= 200 && st < 300) {
        w->c.readings += (uint64_t)readings;
        w->c.posts++;
    } else if (st >= 400 && st < 500 && st != 404 && st != 408 && st != 429) {
        /* The engine will never take these (bad points, a type clash):
         * count and go on rather than stop every later reading. */
        w->c.rejected += (uint64_t)readings;
        log_warnx("agg_export: %s refused %d readings for good (%s); skipped",
                  w->url, readings, err);
    } else {
        /* Down or overloaded: the same records again later. */
        w->c.failures++;
        if (w->down_since == 0)
            w->down_since = clock_mono_ns();
        if (ratelimit_complain(&w->rl))
            log_warnx("agg_export: %s: %s; retrying (WAL kept from segment "
                      "%" PRIu64 ")", w->url, err, w->c.seg);
        agg_wal_reader_destroy(&w->reader);
        w->reader = agg_wal_reader_new(w->waldir, w->c.seg, w->c.off);
        s_report(w, pipe);
        return backoff;
    }
    if (ratelimit_release(&w->rl))
        log_info("agg_export: %s answers again after %lld s", w->url,
                 (long long)((clock_mono_ns() - w->down_since) / CLOCK_NS_PER_S));
    w->down_since = 0;
    s_cursor_save(w, seg, off);
    s_report(w, pipe);
    return 0; /* more may be waiting */
}

static void
s_worker(zsock_t *pipe, void *arg)
{
    struct s_worker *w = arg;
    sigset_t all;
    zpoller_t *poller;
    int wait_ms = 0, backoff = S_BACKOFF_MIN_MS;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    poller = zpoller_new(pipe, NULL);
    zsock_signal(pipe, 0);
    for (;;) {
        if (zpoller_wait(poller, wait_ms) == pipe) {
            char *cmd = zstr_recv(pipe);
            bool term = cmd == NULL || strcmp(cmd, "$TERM") == 0;
            zstr_free(&cmd);
            if (term)
                break;
        }
        wait_ms = s_round(w, pipe, backoff);
        if (wait_ms == backoff)
            backoff = backoff * 2 > S_BACKOFF_MAX_MS ? S_BACKOFF_MAX_MS : backoff * 2;
        else
            backoff = S_BACKOFF_MIN_MS;
    }
    zpoller_destroy(&poller);
    agg_wal_reader_destroy(&w->reader);
    free(w->url);
    free(w->waldir);
    free(w->cursor);
    free(w);
}

uint64_t
agg_export_saved_seg(const char *cursor_path)
{
    uint64_t seg, off;

    s_cursor_load(cursor_path, &seg, &off);
    return seg;
}

agg_export_t *
agg_export_new(const char *url, int format, const char *waldir,
               const char *cursor_path)
{
    agg_export_t *self = xcalloc(1, sizeof *self);
    struct s_worker *w = xcalloc(1, sizeof *w);

    w->url = xstrdup(url);
    w->format = format;
    w->waldir = xstrdup(waldir);
    w->cursor = xstrdup(cursor_path);
    s_cursor_load(cursor_path, &w->c.seg, &w->c.off);
    w->reader = agg_wal_reader_new(waldir, w->c.seg, w->c.off);
    self->c = w->c;
    /* The thread frees w when it ends. */
    if ((self->actor = zactor_new(s_worker, w)) == NULL) {
        log_warnx("agg_export: cannot start the export thread");
        agg_wal_reader_destroy(&w->reader);
        free(w->url);
        free(w->waldir);
        free(w->cursor);
        free(w);
        free(self);
        return NULL;
    }
    log_info("agg_export: exporting readings to %s from WAL segment %" PRIu64
             " offset %" PRIu64, url, self->c.seg, self->c.off);
    return self;
}

void
agg_export_destroy(agg_export_t **self_p)
{
    agg_export_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zactor_destroy(&self->actor);
    free(self);
    *self_p = NULL;
}

zsock_t *
agg_export_sock(agg_export_t *self)
{
    return zactor_sock(self->actor);
}

int
agg_export_recv(agg_export_t *self)
{
    char *kind = NULL;
    struct s_counters c = {0};
    int rc = -1;

    if (zsock_recv(self->actor, "s888888", &kind, &c.readings, &c.posts,
                   &c.failures, &c.rejected, &c.seg, &c.off) == -1)
        return -1;
    if (kind && strcmp(kind, "C") == 0) {
        self->c = c;
        rc = 0;
    }
    zstr_free(&kind);
    return rc;
}

uint64_t
agg_export_keep_seg(const agg_export_t *self)
{
    return self->c.seg;
}

void
agg_export_status(const agg_export_t *self, json_t *j)
{
    json_object_set_new(j, "export_readings", json_integer((json_int_t)self->c.readings));
    json_object_set_new(j, "export_posts", json_integer((json_int_t)self->c.posts));
    json_object_set_new(j, "export_failures", json_integer((json_int_t)self->c.failures));
    json_object_set_new(j, "export_rejected", json_integer((json_int_t)self->c.rejected));
    json_object_set_new(j, "export_segment", json_integer((json_int_t)self->c.seg));
    json_object_set_new(j, "export_offset", json_integer((json_int_t)self->c.off));
}

/* ---- selftest ------------------------------------------------------- */

void
agg_export_test(bool verbose)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    struct strbuf out = {0};
    char *data;
    size_t len;

    msg_batch_add_reading(b, "temp{device=a b,room=x}", 1704067200000000000LL, 23.6);
    msg_batch_add_reading(b, "api latency", 1704067200001000000LL, -0.5);
    msg_batch_encode(b, &data, &len);
    assert(agg_export_body(AGG_EXPORT_INFLUX, data, len, &out) == 2);
    TEST_STREQ(out.p, "temp,device=a\\ b,room=x value=23.6 1704067200000000000\n"
                      "api\\ latency value=-0.5 1704067200001000000\n");
    strbuf_reset(&out);
    assert(agg_export_body(AGG_EXPORT_CLICKHOUSE, data, len, &out) == 2);
    TEST_STREQ(out.p,
               "{\"series\":\"temp{device=a b,room=x}\",\"name\":\"temp\","
               "\"tags\":{\"device\":\"a b\",\"room\":\"x\"},"
               "\"ts\":1704067200000000000,\"value\":23.6}\n"
               "{\"series\":\"api latency\",\"name\":\"api latency\",\"tags\":{},"
               "\"ts\":1704067200001000000,\"value\":-0.5}\n");
    free(data);
    assert(agg_export_body(AGG_EXPORT_INFLUX, "\x01", 1, &out) == -1);
    assert(agg_export_format("influx") == AGG_EXPORT_INFLUX);
    assert(agg_export_format("clickhouse") == AGG_EXPORT_CLICKHOUSE);
    assert(agg_export_format("csv") == -1);
    strbuf_free(&out);
    msg_batch_destroy(&b);
    (void)verbose;
    TEST_OK("agg_export");
}
