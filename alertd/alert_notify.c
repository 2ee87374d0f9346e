/*
 * alert_notify: deliver the outbox (see alert_notify.h).
 */
#include "alertd/alert_notify.h"
#include "alertd/alert_store.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/series.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <jansson.h>
#include <sodium.h>
#include <sqlite3.h>
#include <string.h>

/* Rows taken per pass. */
#define S_ROWS_MAX 32
/* Longest sleep between passes, ms (also catches rows of other writers). */
#define S_IDLE_MS 1000

struct s_channels {
    alert_channel_t **ch; /* copies */
    size_t n;             /* how many */
};

/* Everything the actor thread owns. */
struct s_ctx {
    sqlite3 *db;                  /* the actor's connection */
    struct alert_channel_env env; /* with copied strings */
    int64_t retry_base;           /* first retry delay */
    int64_t retry_max;            /* longest delay */
    int64_t max_attempts;         /* then failed */
    struct s_channels *channels;  /* current channels */
    uint64_t sent;                /* delivered (atomic) */
    uint64_t failures;            /* failed attempts (atomic) */
};

struct alert_notify {
    zactor_t *actor;   /* the thread */
    struct s_ctx *ctx; /* its state (counters read atomically) */
};

static struct s_channels *
s_channels_dup(alert_channel_t *const *channels, size_t n)
{
    struct s_channels *c = xcalloc(1, sizeof *c);

    c->ch = xcalloc(n ? n : 1, sizeof *c->ch);
    c->n = n;
    for (size_t i = 0; i < n; i++)
        c->ch[i] = alert_channel_dup(channels[i]);
    return c;
}

static void
s_channels_free(struct s_channels **c_p)
{
    struct s_channels *c = *c_p;

    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        alert_channel_destroy(&c->ch[i]);
    free(c->ch);
    free(c);
    *c_p = NULL;
}

char *
alert_notify_key(const char *rule, const char *scope, int64_t since,
                 const char *state, const char *severity,
                 const char *channel, char *buf, size_t len)
{
    unsigned char md[crypto_hash_sha256_BYTES];
    char *text = xasprintf("%s\x1f%s\x1f%lld\x1f%s\x1f%s\x1f%s", rule, scope,
                           (long long)since, state, severity, channel);

    crypto_hash_sha256(md, (const unsigned char *)text, strlen(text));
    free(text);
    assert(len >= 36);
    strcpy(buf, "sp-");
    for (int i = 0; i < 16; i++)
        sprintf(buf + 3 + 2 * i, "%02x", md[i]);
    return buf;
}

struct s_row {
    int64_t id;     /* outbox row */
    int64_t tries;  /* attempts so far */
    char *channel;  /* channel name */
    char *key;      /* idempotency key */
    char *body;     /* JSON */
};

static const alert_channel_t *
s_find(struct s_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->channels->n; i++)
        if (strcmp(alert_channel_name(c->channels->ch[i]), name) == 0)
            return c->channels->ch[i];
    return NULL;
}

static void
s_update(struct s_ctx *c, const char *sql, int64_t a, int64_t b,
         const char *err, int64_t id)
{
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(c->db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_err("notify: %s", sqlite3_errmsg(c->db));
        return;
    }
    sqlite3_bind_int64(st, 1, a);
    sqlite3_bind_int64(st, 2, b);
    if (err)
        sqlite3_bind_text(st, 3, err, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, id);
    if (sqlite3_step(st) != SQLITE_DONE)
        log_err("notify: cannot update outbox row %lld: %s", (long long)id,
                sqlite3_errmsg(c->db));
    sqlite3_finalize(st);
}

static void
s_deliver(struct s_ctx *c, struct s_row *r)
{
    const alert_channel_t *ch = s_find(c, r->channel);
    json_t *j = json_loads(r->body, 0, NULL);
    struct alert_note note;
    char err[512], tenant[SERIES_NAME_MAX + 1];
    int64_t now = clock_now_ns();

#define S_STR(k) (json_string_value(json_object_get(j, k)) ?: "")
    note.body = r->body;
    note.idem_key = r->key;
    note.rule = S_STR("rule");
    note.scope = S_STR("scope");
    note.state = S_STR("state");
    note.severity = S_STR("severity");
    note.tenant = series_tenant(*S_STR("series") ? S_STR("series") : note.scope,
                                tenant, sizeof tenant);
#undef S_STR
    r->tries++;
    if (ch == NULL) {
        snprintf(err, sizeof err, "channel '%s' is no longer declared",
                 r->channel);
        r->tries = c->max_attempts;
    } else if (alert_channel_deliver(ch, &c->env, &note, err, sizeof err) ==
               0) {
        s_update(c,
                 "UPDATE outbox SET status='sent', attempts=?, done_at=?,"
                 " last_error=? WHERE id=?",
                 r->tries, now, NULL, r->id);
        __atomic_fetch_add(&c->sent, 1, __ATOMIC_RELAXED);
        log_info("notify: sent rule=%s scope=%s state=%s channel=%s key=%s "
                 "attempts=%lld",
                 note.rule, note.scope, note.state, r->channel, r->key,
                 (long long)r->tries);
        json_decref(j);
        return;
    }
    __atomic_fetch_add(&c->failures, 1, __ATOMIC_RELAXED);
    if (r->tries >= c->max_attempts) {
        s_update(c,
                 "UPDATE outbox SET status='failed', attempts=?, done_at=?,"
                 " last_error=? WHERE id=?",
                 r->tries, now, err, r->id);
        log_err("notify: gave up rule=%s scope=%s channel=%s key=%s after "
                "%lld attempts: %s",
                note.rule, note.scope, r->channel, r->key,
                (long long)r->tries, err);
    } else {
        int64_t delay = c->retry_base;
        for (int64_t i = 1; i < r->tries && delay < c->retry_max; i++)
            delay *= 2;
        if (delay > c->retry_max)
            delay = c->retry_max;
        s_update(c,
                 "UPDATE outbox SET attempts=?, next_at=?, last_error=?"
                 " WHERE id=?",
                 r->tries, now + delay, err, r->id);
        log_warnx("notify: attempt %lld for channel=%s key=%s failed: %s; "
                  "retry in %lld ms",
                  (long long)r->tries, r->channel, r->key, err,
                  (long long)(delay / CLOCK_NS_PER_MS));
    }
    json_decref(j);
}

/* Deliver what is due. Returns ms until the next row is due (capped). */
static int
s_pass(struct s_ctx *c)
{
    struct s_row rows[S_ROWS_MAX];
    size_t n = 0;
    sqlite3_stmt *st;
    int64_t now = clock_now_ns(), next;
    int ms = S_IDLE_MS;

    if (sqlite3_prepare_v2(c->db,
                           "SELECT id, attempts, channel, idem_key, body FROM"
                           " outbox WHERE status='queued' AND next_at<=?"
                           " ORDER BY id LIMIT ?",
                           -1, &st, NULL) != SQLITE_OK) {
        log_err("notify: %s", sqlite3_errmsg(c->db));
        return S_IDLE_MS;
    }
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_int(st, 2, S_ROWS_MAX);
    while (n < S_ROWS_MAX && sqlite3_step(st) == SQLITE_ROW) {
        rows[n].id = sqlite3_column_int64(st, 0);
        rows[n].tries = sqlite3_column_int64(st, 1);
        rows[n].channel = xstrdup((const char *)sqlite3_column_text(st, 2));
        rows[n].key = xstrdup((const char *)sqlite3_column_text(st, 3));
        rows[n].body = xstrdup((const char *)sqlite3_column_text(st, 4));
        n++;
    }
    sqlite3_finalize(st);
    for (size_t i = 0; i < n; i++) {
        s_deliver(c, &rows[i]);
        free(rows[i].channel);
        free(rows[i].key);
        free(rows[i].body);
    }
    if (n == S_ROWS_MAX)
        return 0; /* more are waiting */
    if (sqlite3_prepare_v2(c->db,
                           "SELECT min(next_at) FROM outbox WHERE"
                           " status='queued'",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW &&
        sqlite3_column_type(st, 0) != SQLITE_NULL) {
        next = sqlite3_column_int64(st, 0);
        now = clock_now_ns();
        if (next <= now)
            ms = 0;
        else if ((next - now) / CLOCK_NS_PER_MS < S_IDLE_MS)
            ms = (int)((next - now) / CLOCK_NS_PER_MS) + 1;
    }
    sqlite3_finalize(st);
    return ms;
}

static void
s_actor(zsock_t *pipe, void *arg)
{
    struct s_ctx *c = arg;
    zpoller_t *poller = zpoller_new(pipe, NULL);
    int wait = 0;

    zsock_signal(pipe, 0);
    for (;;) {
        void *which = zpoller_wait(poller, wait);
        if (which == pipe) {
            char *cmd = NULL;
            void *ptr = NULL;
            if (zsock_recv(pipe, "sp", &cmd, &ptr) == -1)
                break;
            bool term = cmd && strcmp(cmd, "$TERM") == 0;
            if (cmd && strcmp(cmd, "CHANNELS") == 0 && ptr) {
                s_channels_free(&c->channels);
                c->channels = ptr;
            }
            free(cmd);
            if (term)
                break;
        } else if (zpoller_terminated(poller)) {
            break;
        }
        wait = s_pass(c);
    }
    zpoller_destroy(&poller);
}

alert_notify_t *
alert_notify_new(const struct alert_notify_conf *conf,
                 alert_channel_t *const *channels, size_t n)
{
    alert_notify_t *self;
    struct s_ctx *c = xcalloc(1, sizeof *c);

    if (sqlite3_open_v2(conf->db, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX,
                        NULL) != SQLITE_OK) {
        log_err("notify: cannot open %s: %s", conf->db,
                c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return NULL;
    }
    sqlite3_busy_timeout(c->db, 5000);
    c->env = conf->env;
    c->env.webhook_secret =
        conf->env.webhook_secret ? xstrdup(conf->env.webhook_secret) : NULL;
    c->env.mqtt_host = conf->env.mqtt_host ? xstrdup(conf->env.mqtt_host)
                                           : NULL;
    c->env.sendmail = conf->env.sendmail ? xstrdup(conf->env.sendmail) : NULL;
    c->retry_base = conf->retry_base > 0 ? conf->retry_base : CLOCK_NS_PER_S;
    c->retry_max = conf->retry_max >= c->retry_base ? conf->retry_max
                                                    : c->retry_base;
    c->max_attempts = conf->max_attempts > 0 ? conf->max_attempts : 1;
    c->channels = s_channels_dup(channels, n);
    self = xcalloc(1, sizeof *self);
    self->ctx = c;
    self->actor = zactor_new(s_actor, c);
    return self;
}

void
alert_notify_destroy(alert_notify_t **self_p)
{
    alert_notify_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zactor_destroy(&self->actor);
    struct s_ctx *c = self->ctx;
    s_channels_free(&c->channels);
    sqlite3_close(c->db);
    if (c->env.webhook_secret) {
        explicit_bzero((char *)c->env.webhook_secret,
                       strlen(c->env.webhook_secret));
        free((char *)c->env.webhook_secret);
    }
    free((char *)c->env.mqtt_host);
    free((char *)c->env.sendmail);
    free(c);
    free(self);
    *self_p = NULL;
}

void
alert_notify_wake(alert_notify_t *self)
{
    zsock_send(self->actor, "sp", "WAKE", NULL);
}

void
alert_notify_set_channels(alert_notify_t *self,
                          alert_channel_t *const *channels, size_t n)
{
    zsock_send(self->actor, "sp", "CHANNELS", s_channels_dup(channels, n));
}

uint64_t
alert_notify_sent(alert_notify_t *self)
{
    return __atomic_load_n(&self->ctx->sent, __ATOMIC_RELAXED);
}

uint64_t
alert_notify_failures(alert_notify_t *self)
{
    return __atomic_load_n(&self->ctx->failures, __ATOMIC_RELAXED);
}

/* --------------------------------------------------------------------- */
/* Selftest: deliveries through an exec channel that appends to a file
 * and fails while a flag file exists. */

static int
s_lines(const char *path)
{
    FILE *fp = fopen(path, "r");
    int n = 0, ch;

    if (fp == NULL)
        return 0;
    while ((ch = fgetc(fp)) != EOF)
        n += ch == '\n';
    fclose(fp);
    return n;
}

static bool
s_wait_for(alert_store_t *st, const char *status, int64_t want, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        if (alert_store_outbox_count(st, status) == want)
            return true;
        zclock_sleep(10);
    }
    return false;
}

void
alert_notify_test(bool verbose)
{
    char dir[] = "/tmp/alert_notify_test.XXXXXX", db[128], out[128];
    char flag[128], decl[512], key[40], key2[40];
    struct alert_rule_error err;
    struct alert_notify_conf conf = {0};
    alert_channel_t *ch[2];
    alert_store_t *st;
    alert_notify_t *n;
    const int64_t S = CLOCK_NS_PER_S;

    assert(sodium_init() >= 0);
    assert(mkdtemp(dir));
    snprintf(db, sizeof db, "%s/alertd.db", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(flag, sizeof flag, "%s/fail", dir);
    snprintf(decl, sizeof decl,
             "log: exec /bin/sh -c \"test ! -e %s && "
             "echo $ALERT_IDEMPOTENCY_KEY >> %s\"",
             flag, out);
    ch[0] = alert_channel_parse(decl, &err);
    assert(ch[0]);
    ch[1] = alert_channel_parse("gone: exec /bin/true", &err);
    assert(ch[1]);

    /* Keys are stable and differ per state and channel. */
    alert_notify_key("hot", "t", 1, "firing", "critical", "log", key,
                     sizeof key);
    alert_notify_key("hot", "t", 1, "firing", "critical", "log", key2,
                     sizeof key2);
    TEST_STREQ(key, key2);
    assert(strlen(key) == 35 && strncmp(key, "sp-", 3) == 0);
    alert_notify_key("hot", "t", 1, "resolved", "critical", "log", key2,
                     sizeof key2);
    assert(strcmp(key, key2) != 0);

    st = alert_store_new(db, 1000);
    assert(st);
    conf.db = db;
    conf.env.timeout = 5 * S;
    conf.retry_base = 50 * CLOCK_NS_PER_MS;
    conf.retry_max = 100 * CLOCK_NS_PER_MS;
    conf.max_attempts = 3;
    if (!verbose)
        log_set_level(LOG_LVL_CRIT);
    /* A failing receiver: retried with backoff, then delivered once. */
    FILE *fp = fopen(flag, "w");
    fclose(fp);
    assert(alert_store_enqueue(st, 1, "log", key, "{\"rule\":\"hot\"}",
                               clock_now_ns()) == 1);
    n = alert_notify_new(&conf, ch, 1);
    assert(n);
    alert_notify_wake(n);
    /* Wait for the first failed attempt (a fixed 120 ms was too short for
     * the fork of sh on a loaded machine), bounded. */
    for (int i = 0; i < 500 && alert_notify_failures(n) < 1; i++)
        zclock_sleep(10);
    assert(alert_notify_failures(n) >= 1);
    assert(alert_store_outbox_count(st, "sent") == 0);
    unlink(flag);
    assert(s_wait_for(st, "sent", 1, 5000));
    assert(s_lines(out) == 1);
    assert(alert_notify_sent(n) == 1);
    /* A channel that went away: failed at once, and visible. */
    alert_notify_set_channels(n, ch + 1, 1);
    assert(alert_store_enqueue(st, 1, "log", key2, "{}", clock_now_ns()) ==
           1);
    alert_notify_wake(n);
    assert(s_wait_for(st, "failed", 1, 5000));
    alert_notify_destroy(&n);
    alert_notify_destroy(&n);

    /* Rows queued while no actor ran are delivered when one starts: the
     * outbox survives a restart. */
    fp = fopen(flag, "w");
    fclose(fp);
    n = alert_notify_new(&conf, ch, 1);
    alert_notify_key("cold", "t", 1, "firing", "warning", "log", key,
                     sizeof key);
    assert(alert_store_enqueue(st, 2, "log", key, "{}", clock_now_ns()) == 1);
    alert_notify_wake(n);
    /* Three failed attempts: given up. */
    assert(s_wait_for(st, "failed", 2, 5000));
    alert_notify_destroy(&n);
    unlink(flag);
    alert_notify_key("cold", "t", 2, "firing", "warning", "log", key,
                     sizeof key);
    assert(alert_store_enqueue(st, 2, "log", key, "{}", clock_now_ns()) == 1);
    n = alert_notify_new(&conf, ch, 1);
    assert(s_wait_for(st, "sent", 2, 5000)); /* no wake needed at start */
    assert(s_lines(out) == 2);
    alert_notify_destroy(&n);
    log_set_level(LOG_LVL_INFO);

    alert_store_destroy(&st);
    alert_channel_destroy(&ch[0]);
    alert_channel_destroy(&ch[1]);
    unlink(out);
    unlink(db);
    snprintf(db, sizeof db, "%s/alertd.db-wal", dir);
    unlink(db);
    snprintf(db, sizeof db, "%s/alertd.db-shm", dir);
    unlink(db);
    assert(rmdir(dir) == 0);
    TEST_OK("alert_notify");
}
