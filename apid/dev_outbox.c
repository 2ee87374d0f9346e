/*
 * dev_outbox: the durable MQTT outbox in SQLite (see dev_outbox.h).
 */
#include "apid/dev_outbox.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum s_stmt {
    OS_INSERT,
    OS_COUNT,
    OS_DROP_OLDEST,
    OS_HEAD,
    OS_DELETE,
    OS_EXPIRE,
    OS_MAX
};

static const char *const s_sql[OS_MAX] = {
    [OS_INSERT] =
        "INSERT INTO mqtt_outbox (ts, tenant, device, topic, payload, qos)"
        " VALUES (?, ?, ?, ?, ?, ?)",
    [OS_COUNT] = "SELECT count(*) FROM mqtt_outbox",
    /* The oldest n, for a newer message; RETURNING names them in the log. */
    [OS_DROP_OLDEST] = "DELETE FROM mqtt_outbox WHERE id IN"
                       " (SELECT id FROM mqtt_outbox ORDER BY id LIMIT ?)"
                       " RETURNING tenant, device, topic, ts",
    [OS_HEAD] =
        "SELECT id, ts, tenant, device, topic, payload, qos FROM mqtt_outbox"
        " ORDER BY id LIMIT ?",
    [OS_DELETE] = "DELETE FROM mqtt_outbox WHERE id = ?",
    [OS_EXPIRE] = "DELETE FROM mqtt_outbox WHERE ts <= ?",
};

struct dev_outbox {
    sqlite3 *db;                /* borrowed from dev_store */
    sqlite3_stmt *st[OS_MAX];   /* prepared once */
    int64_t max_rows;           /* messages kept at most */
    int64_t max_age;            /* ns a message may wait */
    int64_t depth;              /* messages in the table */
    struct dev_outbox_stats n;  /* counters (depth unused) */
    struct ratelimit rl_drop;   /* warnings of a full outbox */
    struct ratelimit rl_expire; /* notes of expired messages */
    struct ratelimit rl_refuse; /* warnings of refused messages */
};

/* One message read for a flush. */
struct s_msg {
    int64_t id;    /* row */
    int64_t ts;    /* queued at */
    char *who;     /* "tenant/device", for the log */
    char *topic;   /* where it goes */
    void *payload; /* what */
    size_t len;    /* its bytes */
    int qos;       /* 0, 1 or 2 */
};

static sqlite3_stmt *
s_st(dev_outbox_t *self, int i)
{
    sqlite3_reset(self->st[i]);
    sqlite3_clear_bindings(self->st[i]);
    return self->st[i];
}

static int
s_exec(dev_outbox_t *self, const char *sql)
{
    char *err = NULL;
    if (sqlite3_exec(self->db, sql, NULL, NULL, &err) != SQLITE_OK) {
        log_warnx("mqtt outbox: %s: %s", sql, err ? err : "?");
        sqlite3_free(err);
        return -1;
    }
    return 0;
}

/* The row count, or -1. */
static int64_t
s_count(dev_outbox_t *self)
{
    sqlite3_stmt *st = s_st(self, OS_COUNT);
    int64_t n = -1;

    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return n;
}

dev_outbox_t *
dev_outbox_new(dev_store_t *store, int64_t max_rows, int64_t max_age)
{
    dev_outbox_t *self = xcalloc(1, sizeof *self);

    assert(max_rows >= 1 && max_age > 0);
    self->db = dev_store_db(store);
    self->max_rows = max_rows;
    self->max_age = max_age;
    for (int i = 0; i < OS_MAX; i++)
        if (sqlite3_prepare_v3(self->db, s_sql[i], -1,
                               SQLITE_PREPARE_PERSISTENT, &self->st[i], NULL)) {
            log_warnx("mqtt outbox: %s: %s", s_sql[i],
                      sqlite3_errmsg(self->db));
            dev_outbox_destroy(&self);
            return NULL;
        }
    if ((self->depth = s_count(self)) < 0) {
        log_warnx("mqtt outbox: cannot count: %s", sqlite3_errmsg(self->db));
        dev_outbox_destroy(&self);
        return NULL;
    }
    if (self->depth > 0)
        log_info(
            "mqtt outbox: %lld message(s) waiting for the broker from before",
            (long long)self->depth);
    return self;
}

void
dev_outbox_destroy(dev_outbox_t **self_p)
{
    dev_outbox_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (int i = 0; i < OS_MAX; i++)
        sqlite3_finalize(self->st[i]);
    free(self);
    *self_p = NULL;
}

/* Drop the oldest n rows (inside the caller's transaction). -1 on error. */
static int
s_drop_oldest(dev_outbox_t *self, int64_t n, int64_t now)
{
    sqlite3_stmt *st = s_st(self, OS_DROP_OLDEST);
    int rc;

    sqlite3_bind_int64(st, 1, n);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        self->n.dropped++;
        self->depth--;
        if (ratelimit_complain(&self->rl_drop))
            log_warnx(
                "mqtt outbox: full (%lld messages): dropped the oldest, for "
                "%s/%s on %s, queued %.0f s ago (%llu dropped since start)",
                (long long)self->max_rows, sqlite3_column_text(st, 0),
                sqlite3_column_text(st, 1), sqlite3_column_text(st, 2),
                (double)(now - sqlite3_column_int64(st, 3)) / CLOCK_NS_PER_S,
                (unsigned long long)self->n.dropped);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int
dev_outbox_push(dev_outbox_t *self, const char *tenant, const char *id,
                const char *topic, const void *payload, size_t len, int qos,
                int64_t now)
{
    sqlite3_stmt *st;
    int rc;

    if (s_exec(self, "BEGIN"))
        return -1;
    if (self->depth >= self->max_rows &&
        s_drop_oldest(self, self->depth - self->max_rows + 1, now))
        goto fail;
    st = s_st(self, OS_INSERT);
    sqlite3_bind_int64(st, 1, now);
    sqlite3_bind_text(st, 2, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, topic, -1, SQLITE_STATIC);
    sqlite3_bind_blob64(st, 5, len ? payload : "", len, SQLITE_STATIC);
    sqlite3_bind_int(st, 6, qos);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE || s_exec(self, "COMMIT"))
        goto fail;
    self->depth++;
    self->n.queued++;
    return 0;
fail:
    log_warnx("mqtt outbox: %s/%s on %s not stored: %s", tenant, id, topic,
              sqlite3_errmsg(self->db));
    s_exec(self, "ROLLBACK");
    /* The drops may have been undone with the rest. */
    if ((self->depth = s_count(self)) < 0)
        self->depth = 0;
    return -1;
}

int64_t
dev_outbox_expire(dev_outbox_t *self, int64_t now)
{
    sqlite3_stmt *st = s_st(self, OS_EXPIRE);
    int64_t n;

    if (self->depth == 0)
        return 0;
    sqlite3_bind_int64(st, 1, now - self->max_age);
    if (sqlite3_step(st) != SQLITE_DONE) {
        log_warnx("mqtt outbox: expiry: %s", sqlite3_errmsg(self->db));
        sqlite3_reset(st);
        return 0;
    }
    sqlite3_reset(st);
    n = sqlite3_changes(self->db);
    self->depth -= n;
    self->n.expired += (uint64_t)n;
    if (n > 0 && ratelimit_complain(&self->rl_expire))
        log_info(
            "mqtt outbox: %lld message(s) older than %.0f s expired unsent "
            "(%llu expired since start)",
            (long long)n, (double)self->max_age / CLOCK_NS_PER_S,
            (unsigned long long)self->n.expired);
    return n;
}

static void
s_msg_free(struct s_msg *m)
{
    free(m->who);
    free(m->topic);
    free(m->payload);
}

/* Read up to limit of the oldest rows into msgs; returns how many, -1 on
 * error. Read first, deleted after: no delete runs under an open SELECT. */
static int64_t
s_head(dev_outbox_t *self, int64_t limit, struct s_msg *msgs)
{
    sqlite3_stmt *st = s_st(self, OS_HEAD);
    int64_t n = 0;
    int rc = SQLITE_DONE;

    sqlite3_bind_int64(st, 1, limit);
    while (n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct s_msg *m = &msgs[n++];
        const void *p = sqlite3_column_blob(st, 5);
        m->id = sqlite3_column_int64(st, 0);
        m->ts = sqlite3_column_int64(st, 1);
        m->who = xasprintf("%s/%s", sqlite3_column_text(st, 2),
                           sqlite3_column_text(st, 3));
        m->topic = xstrdup((const char *)sqlite3_column_text(st, 4));
        m->len = (size_t)sqlite3_column_bytes(st, 5);
        m->payload = xmalloc(m->len + 1);
        if (m->len)
            memcpy(m->payload, p, m->len);
        m->qos = sqlite3_column_int(st, 6);
    }
    if (n < limit && rc != SQLITE_DONE) {
        log_warnx("mqtt outbox: read: %s", sqlite3_errmsg(self->db));
        while (n > 0)
            s_msg_free(&msgs[--n]);
        n = -1;
    }
    sqlite3_reset(st);
    return n;
}

int64_t
dev_outbox_flush(dev_outbox_t *self, int64_t now, int64_t limit,
                 dev_outbox_send_fn *fn, void *arg)
{
    struct s_msg *msgs;
    int64_t n, i, sent = 0, rc = 0;

    if (self->depth == 0 || limit <= 0)
        return 0;
    msgs = xcalloc((size_t)limit, sizeof *msgs);
    if ((n = s_head(self, limit, msgs)) < 0 || s_exec(self, "BEGIN")) {
        for (i = 0; i < n; i++)
            s_msg_free(&msgs[i]);
        free(msgs);
        return -1;
    }
    for (i = 0; i < n; i++) {
        struct s_msg *m = &msgs[i];
        enum dev_outbox_send what;
        sqlite3_stmt *st;

        if (m->ts <= now - self->max_age) {
            self->n.expired++;
            if (ratelimit_complain(&self->rl_expire))
                log_info("mqtt outbox: %s on %s expired unsent after %.0f s "
                         "(%llu expired since start)",
                         m->who, m->topic,
                         (double)(now - m->ts) / CLOCK_NS_PER_S,
                         (unsigned long long)self->n.expired);
        } else if ((what = fn(arg, m->topic, m->payload, m->len, m->qos)) ==
                   DEV_OUTBOX_RETRY) {
            break;
        } else if (what == DEV_OUTBOX_REFUSED) {
            self->n.refused++;
            if (ratelimit_complain(&self->rl_refuse))
                log_warnx(
                    "mqtt outbox: %s on %s refused by the client: dropped "
                    "(%llu refused since start)",
                    m->who, m->topic, (unsigned long long)self->n.refused);
        } else {
            self->n.sent++;
            sent++;
        }
        st = s_st(self, OS_DELETE);
        sqlite3_bind_int64(st, 1, m->id);
        if (sqlite3_step(st) != SQLITE_DONE) {
            log_warnx("mqtt outbox: delete: %s", sqlite3_errmsg(self->db));
            sqlite3_reset(st);
            rc = -1;
            break;
        }
        sqlite3_reset(st);
        self->depth--;
    }
    if (s_exec(self, "COMMIT")) {
        s_exec(self, "ROLLBACK");
        rc = -1;
    }
    if (rc < 0 && (self->depth = s_count(self)) < 0)
        self->depth = 0;
    for (i = 0; i < n; i++)
        s_msg_free(&msgs[i]);
    free(msgs);
    return rc < 0 ? -1 : sent;
}

int64_t
dev_outbox_size(const dev_outbox_t *self)
{
    return self ? self->depth : 0;
}

void
dev_outbox_stats(const dev_outbox_t *self, struct dev_outbox_stats *st)
{
    memset(st, 0, sizeof *st);
    if (self == NULL)
        return;
    *st = self->n;
    st->depth = self->depth;
}

/* --- selftest ------------------------------------------------------------ */

/* A send function that takes at most budget messages, then says retry,
 * and refuses topics that start with "bad"; it keeps what it took. */
struct s_sink {
    int budget;       /* messages taken before it says retry */
    char got[16][64]; /* "topic payload" of each */
    int n;            /* how many */
};

static enum dev_outbox_send
s_sink_send(void *arg, const char *topic, const void *payload, size_t len,
            int qos)
{
    struct s_sink *k = arg;

    assert(qos == 1);
    if (!strncmp(topic, "bad", 3))
        return DEV_OUTBOX_REFUSED;
    if (k->budget-- <= 0)
        return DEV_OUTBOX_RETRY;
    assert(k->n < 16);
    snprintf(k->got[k->n++], sizeof k->got[0], "%s %.*s", topic, (int)len,
             (const char *)payload);
    return DEV_OUTBOX_SENT;
}

void
dev_outbox_test(bool verbose)
{
    char dir[] = "/tmp/sp-outbox-test.XXXXXX", path[64], side[80];
    const int64_t t0 = 1704067200 * CLOCK_NS_PER_S, s = CLOCK_NS_PER_S;
    struct dev_outbox_stats n;
    struct s_sink k = {0};
    dev_store_t *store;
    dev_outbox_t *o;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/devices.db", dir);
    assert((store = dev_store_new(path)));
    assert((o = dev_outbox_new(store, 3, 60 * s)));
    assert(dev_outbox_size(o) == 0);
    assert(dev_outbox_flush(o, t0, 10, s_sink_send, &k) == 0 && k.n == 0);

    /* Queued in order; a fourth drops the oldest (cap 3). */
    assert(dev_outbox_push(o, "acme", "d1", "t/1", "one", 3, 1, t0) == 0);
    assert(dev_outbox_push(o, "acme", "d1", "t/2", "two", 3, 1, t0 + 1 * s) ==
           0);
    assert(dev_outbox_push(o, "acme", "d2", "t/3", "", 0, 1, t0 + 2 * s) == 0);
    assert(dev_outbox_push(o, "acme", "d2", "t/4", "four", 4, 1, t0 + 3 * s) ==
           0);
    dev_outbox_stats(o, &n);
    assert(n.depth == 3 && n.queued == 4 && n.dropped == 1 && n.sent == 0);

    /* It survives closing the store (an apid restart). */
    dev_outbox_destroy(&o);
    dev_outbox_destroy(&o);
    dev_store_destroy(&store);
    assert((store = dev_store_new(path)));
    assert((o = dev_outbox_new(store, 3, 60 * s)));
    assert(dev_outbox_size(o) == 3);

    /* A flush that can send one keeps the rest, in order, for the next. */
    k.budget = 1;
    assert(dev_outbox_flush(o, t0 + 4 * s, 10, s_sink_send, &k) == 1);
    assert(k.n == 1 && dev_outbox_size(o) == 2);
    TEST_STREQ(k.got[0], "t/2 two");
    k.budget = 10;
    assert(dev_outbox_flush(o, t0 + 4 * s, 1, s_sink_send, &k) ==
           1); /* limit 1 */
    assert(dev_outbox_flush(o, t0 + 4 * s, 10, s_sink_send, &k) == 1);
    assert(k.n == 3 && dev_outbox_size(o) == 0);
    TEST_STREQ(k.got[1], "t/3 ");
    TEST_STREQ(k.got[2], "t/4 four");

    /* Expiry: at the flush (the first, older than 60 s, is not sent), and
     * by dev_outbox_expire; a refused message is dropped and counted. */
    assert(dev_outbox_push(o, "acme", "d1", "t/5", "five", 4, 1, t0) == 0);
    assert(dev_outbox_push(o, "acme", "d1", "bad/6", "six", 3, 1,
                           t0 + 30 * s) == 0);
    assert(dev_outbox_push(o, "acme", "d1", "t/7", "seven", 5, 1,
                           t0 + 31 * s) == 0);
    assert(dev_outbox_flush(o, t0 + 60 * s, 10, s_sink_send, &k) == 1);
    assert(k.n == 4 && dev_outbox_size(o) == 0);
    TEST_STREQ(k.got[3], "t/7 seven");
    assert(dev_outbox_push(o, "acme", "d1", "t/8", "8", 1, 1, t0 + 100 * s) ==
           0);
    assert(dev_outbox_push(o, "acme", "d1", "t/9", "9", 1, 1, t0 + 110 * s) ==
           0);
    assert(dev_outbox_expire(o, t0 + 160 * s) == 1 && dev_outbox_size(o) == 1);
    assert(dev_outbox_expire(o, t0 + 160 * s) == 0);
    dev_outbox_stats(o, &n);
    assert(n.depth == 1 && n.queued == 5 && n.sent == 4 && n.expired == 2 &&
           n.refused == 1 && n.dropped == 0);
    dev_outbox_destroy(&o);
    dev_store_destroy(&store);

    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
    assert(rmdir(dir) == 0);
    (void)verbose;
    TEST_OK("dev_outbox");
}
