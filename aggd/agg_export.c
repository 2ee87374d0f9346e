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
#include "common/urlmask.h"
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
#define S_MINUTE (60 * CLOCK_NS_PER_S)

struct s_counters {
    uint64_t readings; /* readings the engine took */
    uint64_t posts;    /* successful POSTs */
    uint64_t failures; /* POSTs that failed and were retried */
    uint64_t rejected; /* readings the engine refused for good (4xx) */
    uint64_t late;     /* rollups: readings after their minute closed */
    uint64_t seg, off; /* durable cursor */
};

/* An open minute of one series (rollup export). */
struct s_minute {
    int64_t start;            /* minute start, ns */
    uint64_t seg, off;        /* WAL position of the record that opened it */
    uint64_t count;
    double sum, min, max, first, last;
    int64_t first_ts, last_ts;
    char key[];               /* series key */
};

struct agg_export {
    zactor_t *actor;       /* the export thread */
    struct s_counters c;   /* its last report */
    bool rollups;          /* what it exports */
};

/* What the thread owns. */
struct s_worker {
    char *url;             /* the engine's insert URL */
    char *url_log;         /* the same without its secrets, for logs */
    int format;            /* enum agg_export_format */
    char *waldir;          /* aggd's WAL */
    char *cursor;          /* cursor file */
    agg_wal_reader_t *reader;
    struct s_counters c;
    struct ratelimit rl;   /* complaints about the engine */
    int64_t down_since;    /* mono ns of the first failure, or 0 */
    bool rollups;          /* export minute rollups, not readings */
    int64_t idle;          /* rollups: quiet WAL time that closes minutes */
    zhashx_t *open;        /* rollups: "start key" -> struct s_minute */
    int64_t wm;            /* rollups: watermark, the newest reading's ts */
    int64_t wm_saved;      /* the watermark in the cursor file */
    int64_t quiet_since;   /* mono ns since the WAL had nothing new, or 0 */
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

/* "measurement,tag=v,..." of key, the measurement's name followed by
 * suffix. Returns -1 for a key that does not parse (aggd stores only
 * valid ones). */
static int
s_influx_head(struct strbuf *b, const char *key, const char *suffix)
{
    char name[SERIES_NAME_MAX + 1], tagbuf[SERIES_KEY_MAX];
    struct series_tag tags[SERIES_TAGS_MAX];
    int nt = series_key_parse(key, name, sizeof name, tagbuf, sizeof tagbuf,
                              tags, SERIES_TAGS_MAX);

    if (nt < 0)
        return -1;
    s_lp_escaped(b, name, ", ");
    s_lp_escaped(b, suffix, ", ");
    for (int i = 0; i < nt; i++) {
        strbuf_add(b, ",", 1);
        strbuf_cat(b, tags[i].key);
        strbuf_add(b, "=", 1);
        s_lp_escaped(b, tags[i].value, ",= ");
    }
    return 0;
}

/* prefix then the shortest double that reads back the same. */
static void
s_num(struct strbuf *b, const char *prefix, double v)
{
    char num[40];
    strbuf_cat(b, prefix);
    strbuf_cat(b, strutil_dtoa(v, num, sizeof num));
}

static void
s_influx_line(struct strbuf *b, const char *key, int64_t ts, double v)
{
    char num[40];

    if (s_influx_head(b, key, "") == -1)
        return;
    s_num(b, " value=", v);
    snprintf(num, sizeof num, " %" PRId64 "\n", ts);
    strbuf_cat(b, num);
}

/* ClickHouse JSONEachRow, up to the tags: {"series","name","tags". */
static int
s_clickhouse_head(struct strbuf *b, const char *key)
{
    char name[SERIES_NAME_MAX + 1], tagbuf[SERIES_KEY_MAX];
    struct series_tag tags[SERIES_TAGS_MAX];
    json_t *row, *jt;
    char *s;
    int nt = series_key_parse(key, name, sizeof name, tagbuf, sizeof tagbuf,
                              tags, SERIES_TAGS_MAX);

    if (nt < 0)
        return -1;
    jt = json_object();
    for (int i = 0; i < nt; i++)
        json_object_set_new(jt, tags[i].key, json_string(tags[i].value));
    row = json_pack("{s:s, s:s, s:o}", "series", key, "name", name, "tags", jt);
    s = json_dumps(row, JSON_COMPACT | JSON_PRESERVE_ORDER);
    strbuf_add(b, s, strlen(s) - 1);
    free(s);
    json_decref(row);
    return 0;
}

/* ClickHouse JSONEachRow: {"series","name","tags","ts" (ns),"value"}.
 * The numbers by hand: the shortest double that reads back the same. */
static void
s_clickhouse_row(struct strbuf *b, const char *key, int64_t ts, double v)
{
    char num[40];

    if (s_clickhouse_head(b, key) == -1)
        return;
    snprintf(num, sizeof num, ",\"ts\":%" PRId64, ts);
    strbuf_cat(b, num);
    s_num(b, ",\"value\":", v);
    strbuf_cat(b, "}\n");
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

/* "segment offset [watermark]": the watermark only for rollups. */
static int
s_cursor_load(const char *path, uint64_t *seg, uint64_t *off, int64_t *wm)
{
    FILE *fp = fopen(path, "r");
    unsigned long long s, o;
    long long w;
    int rc = -1;

    *seg = *off = 0;
    *wm = INT64_MIN;
    if (fp == NULL)
        return -1;
    if (fscanf(fp, "%llu %llu", &s, &o) == 2) {
        *seg = s;
        *off = o;
        rc = 0;
        if (fscanf(fp, "%lld", &w) == 1)
            *wm = w;
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
    if (w->rollups)
        fprintf(fp, "%" PRIu64 " %" PRIu64 " %" PRId64 "\n", seg, off, w->wm);
    else
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
    w->wm_saved = w->wm;
    return 0;
}

/* ---- minute rollups ------------------------------------------------ */

static int64_t
s_floor_minute(int64_t ts)
{
    int64_t q = ts / S_MINUTE;
    return (ts % S_MINUTE != 0 && ts < 0 ? q - 1 : q) * S_MINUTE;
}

static void
s_minute_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* One closed minute as a line or a row. */
static void
s_minute_emit(int format, const struct s_minute *m, struct strbuf *b)
{
    char num[64];

    if (format == AGG_EXPORT_CLICKHOUSE) {
        if (s_clickhouse_head(b, m->key) == -1)
            return;
        snprintf(num, sizeof num, ",\"ts\":%" PRId64 ",\"count\":%" PRIu64,
                 m->start, m->count);
        strbuf_cat(b, num);
        s_num(b, ",\"sum\":", m->sum);
        s_num(b, ",\"min\":", m->min);
        s_num(b, ",\"max\":", m->max);
        s_num(b, ",\"first\":", m->first);
        s_num(b, ",\"last\":", m->last);
        strbuf_cat(b, "}\n");
        return;
    }
    if (s_influx_head(b, m->key, AGG_EXPORT_ROLLUP_SUFFIX) == -1)
        return;
    snprintf(num, sizeof num, " count=%" PRIu64 "i", m->count);
    strbuf_cat(b, num);
    s_num(b, ",sum=", m->sum);
    s_num(b, ",min=", m->min);
    s_num(b, ",max=", m->max);
    s_num(b, ",first=", m->first);
    s_num(b, ",last=", m->last);
    snprintf(num, sizeof num, " %" PRId64 "\n", m->start);
    strbuf_cat(b, num);
}

/* Emit and forget every open minute that ended AGG_EXPORT_GRACE before
 * the watermark. Returns how many. */
static int
s_minutes_close(struct s_worker *w, struct strbuf *b)
{
    zlistx_t *done = zlistx_new();
    int n = 0;

    for (struct s_minute *m = zhashx_first(w->open); m; m = zhashx_next(w->open))
        if (m->start + S_MINUTE + AGG_EXPORT_GRACE <= w->wm) {
            s_minute_emit(w->format, m, b);
            zlistx_add_end(done, (void *)zhashx_cursor(w->open));
        }
    for (const char *k = zlistx_first(done); k; k = zlistx_next(done)) {
        zhashx_delete(w->open, k);
        n++;
    }
    zlistx_destroy(&done);
    return n;
}

/* Add a WAL record's readings to their open minutes (the record starts
 * at seg/off), move the watermark, close what it passed. Readings of a
 * minute that closed already count as late. Returns minutes closed. */
static int
s_minutes_feed(struct s_worker *w, const void *rec, size_t len, uint64_t seg,
               uint64_t off, struct strbuf *out)
{
    msg_batch_t *b = NULL;
    int64_t newest = w->wm;
    char hk[SERIES_KEY_MAX + 32];

    if (!msg_sane(rec, len) || msg_batch_decode(rec, len, &b) != MSG_OK)
        return 0;
    if (msg_batch_type(b) != MSG_TYPE_READINGS) {
        msg_batch_destroy(&b);
        return 0;
    }
    for (size_t i = 0; i < msg_batch_size(b); i++) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        const char *key = msg_batch_str(b, r->key_off);
        int64_t start = s_floor_minute(r->ts);
        struct s_minute *m;
        if (start + S_MINUTE + AGG_EXPORT_GRACE <= w->wm) {
            w->c.late++;
            continue;
        }
        snprintf(hk, sizeof hk, "%" PRId64 " %s", start, key);
        if ((m = zhashx_lookup(w->open, hk)) == NULL) {
            m = xcalloc(1, sizeof *m + strlen(key) + 1);
            strcpy(m->key, key);
            m->start = start;
            m->seg = seg;
            m->off = off;
            zhashx_insert(w->open, hk, m);
        }
        if (m->count == 0 || r->value < m->min)
            m->min = r->value;
        if (m->count == 0 || r->value > m->max)
            m->max = r->value;
        if (m->count == 0 || r->ts < m->first_ts) {
            m->first = r->value;
            m->first_ts = r->ts;
        }
        if (m->count == 0 || r->ts >= m->last_ts) {
            m->last = r->value;
            m->last_ts = r->ts;
        }
        m->sum += r->value;
        m->count++;
        if (r->ts > newest)
            newest = r->ts;
    }
    msg_batch_destroy(&b);
    w->wm = newest;
    return s_minutes_close(w, out);
}

/* The quiet WAL closes the open minutes that ended AGG_EXPORT_GRACE
 * before now (wall clock): the watermark moves past the newest of them.
 * Returns minutes closed. */
static int
s_minutes_flush(struct s_worker *w, struct strbuf *out, int64_t now)
{
    for (struct s_minute *m = zhashx_first(w->open); m; m = zhashx_next(w->open)) {
        int64_t end = m->start + S_MINUTE + AGG_EXPORT_GRACE;
        if (end > w->wm && end <= now)
            w->wm = end;
    }
    return s_minutes_close(w, out);
}

/* Where the rollup export resumes: the record that opened the oldest open
 * minute, else the reader's position (in *seg, *off on entry). */
static void
s_minutes_cursor(struct s_worker *w, uint64_t *seg, uint64_t *off)
{
    for (struct s_minute *m = zhashx_first(w->open); m; m = zhashx_next(w->open))
        if (m->seg < *seg || (m->seg == *seg && m->off < *off)) {
            *seg = m->seg;
            *off = m->off;
        }
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
    zsock_send(pipe, "s8888888", "C", w->c.readings, w->c.posts, w->c.failures,
               w->c.rejected, w->c.late, w->c.seg, w->c.off);
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

    size_t read = 0;
    bool got = false;

    agg_wal_reader_pos(w->reader, &seg, &off);
    while (body.len < S_BODY_MAX && read < S_BODY_MAX &&
           agg_wal_reader_next(w->reader, &rec, &len) == 1) {
        got = true;
        read += len;
        if (w->rollups)
            n = s_minutes_feed(w, rec, len, seg, off, &body);
        else
            n = agg_export_body(w->format, rec, len, &body);
        readings += n > 0 ? n : 0;
        agg_wal_reader_pos(w->reader, &seg, &off);
    }
    if (w->rollups) {
        int64_t now = clock_mono_ns();
        if (got || zhashx_size(w->open) == 0) {
            w->quiet_since = 0;
        } else if (w->quiet_since == 0) {
            w->quiet_since = now;
        } else if (now - w->quiet_since >= w->idle) {
            readings += s_minutes_flush(w, &body, clock_now_ns());
            w->quiet_since = 0;
        }
        s_minutes_cursor(w, &seg, &off);
    }
    if (body.len == 0) {
        /* Only records without readings (or minutes still open): move the
         * cursor past them. */
        if ((seg != w->c.seg || off != w->c.off || w->wm != w->wm_saved) &&
            s_cursor_save(w, seg, off) == 0)
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
                  w->url_log, readings, err);
    } else {
        /* Down or overloaded: the same records again later. */
        w->c.failures++;
        if (w->down_since == 0)
            w->down_since = clock_mono_ns();
        if (ratelimit_complain(&w->rl))
            log_warnx("agg_export: %s: %s; retrying (WAL kept from segment "
                      "%" PRIu64 ")", w->url_log, err, w->c.seg);
        agg_wal_reader_destroy(&w->reader);
        w->reader = agg_wal_reader_new(w->waldir, w->c.seg, w->c.off);
        if (w->rollups) {
            /* From the cursor with its watermark the same minutes open
             * again and the ones just lost close again. */
            zhashx_purge(w->open);
            w->wm = w->wm_saved;
            w->quiet_since = 0;
        }
        s_report(w, pipe);
        return backoff;
    }
    if (ratelimit_release(&w->rl))
        log_info("agg_export: %s answers again after %lld s", w->url_log,
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
    zhashx_destroy(&w->open);
    agg_wal_reader_destroy(&w->reader);
    free(w->url);
    free(w->url_log);
    free(w->waldir);
    free(w->cursor);
    free(w);
}

uint64_t
agg_export_saved_seg(const char *cursor_path)
{
    uint64_t seg, off;
    int64_t wm;

    s_cursor_load(cursor_path, &seg, &off, &wm);
    return seg;
}

agg_export_t *
agg_export_new(const char *url, int format, bool rollups, int64_t idle,
               const char *waldir, const char *cursor_path)
{
    agg_export_t *self = xcalloc(1, sizeof *self);
    struct s_worker *w = xcalloc(1, sizeof *w);

    w->url = xstrdup(url);
    w->url_log = urlmask(url);
    w->format = format;
    w->rollups = rollups;
    w->idle = idle;
    w->waldir = xstrdup(waldir);
    w->cursor = xstrdup(cursor_path);
    w->open = zhashx_new();
    zhashx_set_destructor(w->open, s_minute_free);
    s_cursor_load(cursor_path, &w->c.seg, &w->c.off, &w->wm);
    w->wm_saved = w->wm;
    self->rollups = rollups;
    w->reader = agg_wal_reader_new(waldir, w->c.seg, w->c.off);
    self->c = w->c;
    /* The thread frees w when it ends. */
    if ((self->actor = zactor_new(s_worker, w)) == NULL) {
        log_warnx("agg_export: cannot start the export thread");
        zhashx_destroy(&w->open);
        agg_wal_reader_destroy(&w->reader);
        free(w->url);
        free(w->url_log);
        free(w->waldir);
        free(w->cursor);
        free(w);
        free(self);
        return NULL;
    }
    log_info("agg_export: exporting %s to %s from WAL segment %" PRIu64
             " offset %" PRIu64, rollups ? "minute rollups" : "readings", w->url_log,
             self->c.seg, self->c.off);
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

    if (zsock_recv(self->actor, "s8888888", &kind, &c.readings, &c.posts,
                   &c.failures, &c.rejected, &c.late, &c.seg, &c.off) == -1)
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
    const char *p = self->rollups ? "export_rollup" : "export";
    const struct {
        const char *name;
        uint64_t v;
    } f[] = {{self->rollups ? "minutes" : "readings", self->c.readings},
             {"posts", self->c.posts},
             {"failures", self->c.failures},
             {"rejected", self->c.rejected},
             {"late", self->c.late},
             {"segment", self->c.seg},
             {"offset", self->c.off}};
    char key[64];

    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        if (!self->rollups && !strcmp(f[i].name, "late"))
            continue;
        snprintf(key, sizeof key, "%s_%s", p, f[i].name);
        json_object_set_new(j, key, json_integer((json_int_t)f[i].v));
    }
}

/* ---- selftest ------------------------------------------------------- */

/* Feed one batch of (key, second, value) readings at WAL position off. */
static int
s_test_feed(struct s_worker *w, uint64_t off, struct strbuf *out,
            const char *key, const int *secs, const double *vals, int n)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    char *data;
    size_t len;
    int closed;

    for (int i = 0; i < n; i++)
        msg_batch_add_reading(b, key, secs[i] * CLOCK_NS_PER_S, vals[i]);
    msg_batch_encode(b, &data, &len);
    closed = s_minutes_feed(w, data, len, 1, off, out);
    free(data);
    msg_batch_destroy(&b);
    return closed;
}

/* Minutes close when the watermark is a minute past their end, late
 * readings are counted out, the cursor is the record that opened the
 * oldest open minute, and a quiet WAL closes only minutes over by the
 * wall clock. */
static void
s_test_minutes(void)
{
    struct s_worker w = {.format = AGG_EXPORT_INFLUX, .rollups = true,
                         .wm = INT64_MIN};
    struct strbuf out = {0};
    uint64_t seg = 1, off = 900;

    w.open = zhashx_new();
    zhashx_set_destructor(w.open, s_minute_free);
    assert(s_test_feed(&w, 100, &out, "t{d=a}", (int[]){0, 30, 70},
                       (double[]){1.5, -2, 4}, 3) == 0);
    assert(s_test_feed(&w, 200, &out, "t{d=a}", (int[]){119}, (double[]){5}, 1) == 0);
    assert(out.len == 0 && zhashx_size(w.open) == 2);
    s_minutes_cursor(&w, &seg, &off);
    assert(seg == 1 && off == 100);
    /* 125 s: minute 0 ended 65 s ago, more than the grace. */
    assert(s_test_feed(&w, 300, &out, "t{d=a}", (int[]){125, 10},
                       (double[]){6, 9}, 2) == 1);
    /* The reading of 10 s came in the batch that closed its minute: the
     * watermark moves after the whole batch. */
    TEST_STREQ(out.p, "t_1m,d=a count=3i,sum=8.5,min=-2,max=9,first=1.5,"
                      "last=-2 0\n");
    assert(w.c.late == 0);
    /* One of 20 s in a later batch is late. */
    assert(s_test_feed(&w, 400, &out, "t{d=a}", (int[]){20}, (double[]){7}, 1) == 0);
    assert(w.c.late == 1);
    seg = 1, off = 900;
    s_minutes_cursor(&w, &seg, &off);
    assert(off == 100); /* minute 1 opened at 100 */
    /* Quiet: a wall clock at 150 s closes nothing yet, at 250 s both. */
    strbuf_reset(&out);
    assert(s_minutes_flush(&w, &out, 150 * CLOCK_NS_PER_S) == 0);
    assert(s_minutes_flush(&w, &out, 250 * CLOCK_NS_PER_S) == 2);
    assert(strstr(out.p, "t_1m,d=a count=2i,sum=9,min=4,max=5,first=4,last=5 "
                         "60000000000\n") &&
           strstr(out.p, "t_1m,d=a count=1i,sum=6,min=6,max=6,first=6,last=6 "
                         "120000000000\n"));
    assert(zhashx_size(w.open) == 0 && w.wm == 240 * CLOCK_NS_PER_S);
    /* ClickHouse rows. */
    strbuf_reset(&out);
    w.format = AGG_EXPORT_CLICKHOUSE;
    assert(s_test_feed(&w, 500, &out, "t", (int[]){300, 420},
                       (double[]){0.25, 1}, 2) == 1);
    TEST_STREQ(out.p, "{\"series\":\"t\",\"name\":\"t\",\"tags\":{},"
                      "\"ts\":300000000000,\"count\":1,\"sum\":0.25,"
                      "\"min\":0.25,\"max\":0.25,\"first\":0.25,\"last\":0.25}\n");
    strbuf_free(&out);
    zhashx_destroy(&w.open);
}

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
    s_test_minutes();
    (void)verbose;
    TEST_OK("agg_export");
}
