/*
 * aggd: the store daemon's server object (see aggd.h).
 *
 * One zloop: the PULL reader applies batches, the ROUTER reader answers
 * queries. While a batch is pending downstream (common/outq) the PULL
 * reader is off, so the queue from ingestd fills and backpressure reaches
 * the client (DESIGN.md).
 */
#include "aggd/aggd.h"
#include "aggd/agg_ckpt.h"
#include "aggd/agg_confirm.h"
#include "aggd/agg_query.h"
#include "aggd/agg_wal.h"
#include "aggd/agg_export.h"
#include "aggd/agg_pool.h"
#include "aggd/agg_store.h"
#include "common/arena.h"
#include "common/clock.h"
#include "common/daemon.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/outq.h"
#include "common/reading.h"
#include "common/reload.h"
#include "common/rpc.h"
#include "common/mpjson.h"
#include "common/series.h"
#include "common/strbuf.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#define AGGD_HEARTBEAT_MS 1000
#define AGGD_RECOVER_NS (2 * CLOCK_NS_PER_S) /* retry a broken WAL this often */
#define AGGD_BURST 256 /* batches read per wake-up, at most */

/* A checkpoint made durable on a thread of its own (s_ckpt_start): the
 * loop has written the chunk and rollup records and started a new WAL
 * segment; the thread fdatasyncs the files (duplicated descriptors),
 * fsyncs the directory when a file generation is new, and writes the
 * checkpoint file. It reads and writes only the job. */
struct s_ckjob {
    pthread_t thread;             /* running s_ckjob_run */
    atomic_bool done;             /* the thread finished */
    char *dir;                    /* the data directory */
    struct agg_ckpt ck;           /* what it records */
    agg_confirm_t *applied;       /* the table of applied seqs then */
    int cfd, rfd;                 /* chunk and rollup files, or -1 */
    bool dirsync;                 /* a file generation is new */
    unsigned pause_ms;            /* AGGD_TEST_CKPT_PAUSE_MS before the
                                     fsyncs (tests: kill -9 meanwhile) */
    int rc;                       /* 0 or -1 (thread) */
    uint64_t wal_pos;             /* agg_wal_written at the start */
    int64_t t0;                   /* mono ns at the start */
    int64_t loop_ns;              /* the loop's part */
    int timer;                    /* zloop timer polling done, or -1 */
};

#define AGGD_CKPT_POLL_MS 20 /* how often the loop looks at a checkpoint
                                in flight (also after batches, heartbeats) */

struct aggd {
    const struct aggd_conf *conf; /* configuration in force */
    struct aggd_conf *reloaded;   /* owned copy from the last SIGHUP, or NULL */
    zloop_t *loop;                /* the one event loop */
    zsock_t *pull;                /* readings in from ingestd */
    zsock_t *router;              /* queries from apid */
    agg_pool_t *pool;             /* large answers' second thread */
    arena_maps_t *arenas;         /* apids' arenas we were lent slots of */
    zsock_t *pub;                 /* readings out to live views (XPUB) */
    size_t pub_subs;              /* subscribed prefixes of "readings" */
    uint64_t pub_batches;         /* batches published to live views */
    zsock_t *push;                /* readings out to anomalyd, or NULL */
    zsock_t *confirm;             /* confirmations to ingestd, or NULL */
    agg_store_t *store;           /* the points */
    agg_wal_t *wal;               /* write-ahead log, or NULL (filter) */
    agg_export_t *export;         /* export to an outside engine, or NULL */
    agg_export_t *export_rollups; /* its minute rollups, or NULL */
    agg_confirm_t *applied;       /* seqs applied (and in the WAL) */
    agg_confirm_t *inflight;      /* snapshot the fsync in flight covers */
    agg_confirm_t *durable;       /* snapshot the last fsync covered */
    uint64_t inflight_pos;        /* WAL position inflight covers */
    uint64_t durable_pos;         /* and durable */
    struct s_ckjob *ckjob;        /* a checkpoint in flight, or NULL */
    struct agg_store_files ck_files; /* files of the last checkpoint */
    int64_t ckpt_loop_max_ms;     /* the longest a checkpoint held the loop */
    char *datadir;                /* data directory, {lane} expanded */
    bool wal_broken;              /* a WAL write or fsync failed */
    int64_t recover_at;           /* mono ns of the last try to mend it */
    uint64_t wal_recoveries;      /* checkpoints that mended it */
    uint64_t confirm_seq;         /* confirm batches sent */
    uint64_t dup_batches;         /* resent batches skipped */
    bool dup_pending;             /* one since the last pull round: its
                                     producer waits for a confirmation */
    uint64_t gap_batches;         /* batches applied after a seq gap */
    uint64_t full_batches;        /* of new producers, the table full */
    uint64_t replayed;            /* batches replayed from the WAL */
    uint64_t group_commits;       /* fsyncs finished */
    uint64_t ckpt_wal;            /* WAL position of the last checkpoint */
    uint64_t checkpoints;         /* checkpoints taken */
    int64_t ckpt_ms;              /* duration of the last one */
    int64_t ckpt_max_ms;          /* and of the longest (the loop's stall) */
    int64_t ckpt_cpu_max_ms;      /* the most CPU one took on the loop */
    int64_t stall_max_ns;         /* longest one handler held the loop
                                     with other work than applying
                                     batches (s_loop_mark) */
    int64_t stall_ckpt_ns;        /* the same since the last checkpoint */
    int64_t iter_max_ns;          /* longest handler run, with batches */
    outq_t *out;                  /* batches anomalyd has not taken yet */
    uint64_t compactions;         /* retention passes that dropped data */
    bool disk_low;                /* free space below the floor: held */
    uint64_t disk_free;           /* free bytes at the last check */
    uint64_t disk_holds;          /* times intake was held for space */
    uint64_t disk_checked;        /* WAL position of the last check */
    uint64_t expired_chunks;      /* raw chunks dropped by retention */
    char producer[64];            /* "aggd.<lane>" */
    uint64_t seq;                 /* batches sent downstream */
    uint64_t batches_in;          /* batches applied */
    uint64_t readings_in;         /* readings applied */
    uint64_t duplicates;          /* readings that overwrote a point */
    uint64_t bad_batches;         /* batches that failed to decode */
    uint64_t queries;             /* queries answered */
    struct ratelimit rl_bad;      /* complaints about bad batches */
    struct ratelimit rl_gap;      /* complaints about seq gaps */
    struct ratelimit rl_full;     /* complaints about a full producer table */
    msg_batch_t *spare;           /* the next batch is decoded into it */
    size_t *run_at;               /* s_apply: start of each series' run */
    size_t run_nat;               /* entries allocated in run_at */
    int64_t *run_ts;              /* s_apply: timestamps grouped by series */
    double *run_v;                /* s_apply: values grouped likewise */
    size_t run_n;                 /* points allocated in run_ts, run_v */
};

static int s_on_pull(zloop_t *loop, zsock_t *sock, void *arg);
static void s_ckpt_reap(aggd_t *self, bool wait);
static int s_open_data(aggd_t *self);
static void s_send_confirm(aggd_t *self);

static zsock_t *
s_socket(int type, const char *tmpl, const char *rundir, const char *what,
         unsigned lane, bool bind, int64_t hwm)
{
    return ep_socket(type, tmpl, rundir, "aggd", what, lane, bind, hwm);
}

aggd_t *
aggd_new(const struct aggd_conf *conf)
{
    aggd_t *self = xcalloc(1, sizeof *self);
    unsigned lane = (unsigned)conf->lane;
    char t[EP_MAX];

    self->conf = conf;
    snprintf(self->producer, sizeof self->producer, "aggd.%u", lane);
    self->applied = agg_confirm_new();
    if (conf->use_stdin) {
        self->store = agg_store_new();
        return self;
    }
    if (daemon_mkdirs(conf->rundir) == -1) {
        log_warn("aggd: cannot create %s", conf->rundir);
        goto fail;
    }
    if (s_open_data(self) == -1)
        goto fail;
    /* A thread that large answers share their work with (agg_pool.h);
     * without it they take one thread, as before. */
    self->arenas = arena_maps_new();
    if (conf->query_threads > 1 && (self->pool = agg_pool_new()) == NULL)
        log_warnx("aggd: no thread for large answers; they use the loop's");
    agg_store_set_pool(self->store, self->pool);
    self->loop = zloop_new();
    self->pull = s_socket(ZMQ_PULL, conf->in, conf->rundir, "in", lane, true,
                          conf->hwm);
    self->router = s_socket(ZMQ_ROUTER, conf->query, conf->rundir, "query",
                            lane, true, conf->hwm);
    /* XPUB, not PUB: it tells which topics are subscribed, so a batch is
     * encoded for live views only while one listens (s_on_pub_sub). */
    self->pub = s_socket(ZMQ_XPUB, conf->pub, conf->rundir, "pub", lane, true,
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
    if (conf->confirm && strcmp(conf->confirm, "none") != 0) {
        const char *d = conf->confirm;
        if (*d == '\0')
            d = ep_default(t, sizeof t, conf->rundir, "ingestd", "confirm");
        if ((self->confirm = s_socket(ZMQ_PUSH, d, conf->rundir, "confirm",
                                      lane, false, conf->hwm)) == NULL)
            goto fail;
        zsock_set_linger(self->confirm, 0);
    }
    self->out = outq_new(self->loop, self->push, self->pull, s_on_pull, self,
                         "aggd", "anomalyd");
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
    s_ckpt_reap(self, true);
    zloop_destroy(&self->loop);
    agg_export_destroy(&self->export);
    agg_export_destroy(&self->export_rollups);
    zsock_destroy(&self->push);
    zsock_destroy(&self->pub);
    zsock_destroy(&self->router);
    zsock_destroy(&self->pull);
    zsock_destroy(&self->confirm);
    outq_destroy(&self->out);
    agg_wal_destroy(&self->wal);
    agg_confirm_destroy(&self->applied);
    agg_confirm_destroy(&self->inflight);
    agg_confirm_destroy(&self->durable);
    agg_store_destroy(&self->store);
    agg_pool_destroy(&self->pool);
    arena_maps_destroy(&self->arenas);
    free(self->datadir);
    msg_batch_destroy(&self->spare);
    free(self->run_at);
    free(self->run_ts);
    free(self->run_v);
    reload_free((void **)&self->reloaded);
    free(self);
    *self_p = NULL;
}

/* Write the readings of b series by series: a batch carries a few points
 * of each of many series (ingestd cuts time-major streams into batches),
 * and putting a series' points one after the other looks its key up once
 * and finds its head and rollup buckets still in the cache. The points of
 * a series keep their order, so a later duplicate still wins. */
static void
s_apply(aggd_t *self, msg_batch_t *b)
{
    size_t n = msg_batch_size(b), ns = msg_batch_nseries(b), fresh = 0;
    const struct msg_reading *r = msg_batch_readings(b);
    size_t *at;

    if (ns + 1 > self->run_nat) {
        self->run_nat = ns + 1;
        self->run_at = xrealloc(self->run_at, self->run_nat * sizeof *at);
    }
    if (n > self->run_n) {
        self->run_n = n;
        self->run_ts = xrealloc(self->run_ts, n * sizeof *self->run_ts);
        self->run_v = xrealloc(self->run_v, n * sizeof *self->run_v);
    }
    at = self->run_at;
    memset(at, 0, (ns + 1) * sizeof *at);
    for (size_t i = 0; i < n; i++)
        at[r[i].series + 1]++;
    for (size_t k = 1; k <= ns; k++)
        at[k] += at[k - 1];
    for (size_t i = 0; i < n; i++) {
        size_t j = at[r[i].series]++;
        self->run_ts[j] = r[i].ts;
        self->run_v[j] = r[i].value;
    }
    /* at[k] is now where run k ends and run k + 1 starts. Each run
     * writes to memory of its own series (head, rollup buckets) that is
     * mostly not in the cache: the next series' loads are started ahead
     * in three steps (each needs the one before), so they overlap. */
    for (size_t k = 0, from = 0; k < ns; from = at[k++]) {
        for (int stage = 0; stage < 3; stage++)
            if (k + 3 - (size_t)stage < ns)
                agg_store_prefetch_slot(self->store, k + 3 - (size_t)stage,
                                        stage);
        fresh += agg_store_put_run_slot(self->store, k,
                                   msg_batch_series_key(b, (uint32_t)k),
                                   self->run_ts + from, self->run_v + from,
                                   at[k] - from);
    }
    self->duplicates += n - fresh;
    self->readings_in += n;
    self->batches_in++;
}

/* Decode one batch frame and, unless it is a resend of what was already
 * applied, apply it. Returns the batch (caller owns; give it back as
 * self->spare when done with it) when it was applied, NULL when it was
 * skipped or bad. The batch is decoded into the spare one, so its
 * buffers and, while ingestd sends the same series, its series table
 * serve batch after batch (msg_batch_decode_into). The same path serves
 * WAL replay, so a replay rebuilds the confirm table exactly. */
static msg_batch_t *
s_ingest(aggd_t *self, const void *data, size_t len, bool replay)
{
    msg_batch_t *b = self->spare ? self->spare : msg_batch_new(MSG_TYPE_NONE);
    int rc = msg_batch_decode_into(b, data, len);
    struct msg_envelope *e;
    uint64_t forgotten;
    const char *last;

    self->spare = b; /* until it is applied */

    if (rc != MSG_OK || msg_batch_type(b) != MSG_TYPE_READINGS) {
        self->bad_batches++;
        if (ratelimit_complain(&self->rl_bad))
            log_warnx("aggd: dropped a malformed batch%s: %s (%llu so far)",
                      replay ? " in the WAL" : "",
                      rc != MSG_OK ? msg_strerror(rc) : "not readings",
                      (unsigned long long)self->bad_batches);
        return NULL;
    }
    e = msg_batch_env(b);
    forgotten = agg_confirm_forgotten(self->applied, NULL);
    switch (agg_confirm_accept(self->applied, e->producer, e->lane, e->seq,
                               clock_mono_ns(), replay,
                               e->has_acked ? &e->acked : NULL)) {
    case AGG_CONFIRM_DUP:
        self->dup_batches++;
        self->dup_pending = !replay;
        return NULL;
    case AGG_CONFIRM_GAP:
        self->gap_batches++;
        if (!replay && ratelimit_complain(&self->rl_gap))
            log_warnx("aggd: seq gap producer=%s lane=%u seq=%llu after %llu; "
                      "applying, confirming only up to the gap",
                      e->producer, e->lane, (unsigned long long)e->seq,
                      (unsigned long long)agg_confirm_seq(
                          self->applied, e->producer, e->lane));
        break;
    case AGG_CONFIRM_NEXT:
        if (agg_confirm_forgotten(self->applied, &last) != forgotten &&
            ratelimit_complain(&self->rl_full))
            log_warnx("aggd: forgot producer %s (lane/name), idle an hour, "
                      "for new producer=%s lane=%u: %d producers known",
                      last, e->producer, e->lane, AGG_CONFIRM_MAX);
        break;
    case AGG_CONFIRM_FULL:
        self->full_batches++;
        if (ratelimit_complain(&self->rl_full))
            log_warnx("aggd: dropped a batch of producer=%s lane=%u: %d producers "
                      "known already, none idle an hour (%llu so far)",
                      e->producer, e->lane,
                      AGG_CONFIRM_MAX, (unsigned long long)self->full_batches);
        return NULL;
    }
    s_apply(self, b);
    self->spare = NULL;
    return b;
}

static void
s_on_replay(const void *payload, size_t len, void *arg)
{
    aggd_t *self = arg;
    msg_batch_t *b = s_ingest(self, payload, len, true);

    if (b) {
        self->replayed++;
        self->spare = b;
    }
}

/* Is an export configured? (Selftests leave the strings NULL.) */
static bool
s_exporting(const char *url)
{
    return url && *url;
}

/* The oldest WAL segment the exporters still need, at most seg. */
static uint64_t
s_export_keep(const aggd_t *self, uint64_t seg)
{
    const agg_export_t *e[] = {self->export, self->export_rollups};

    for (int i = 0; i < 2; i++)
        if (e[i] && agg_export_keep_seg(e[i]) < seg)
            seg = agg_export_keep_seg(e[i]);
    return seg;
}

static int
s_open_data(aggd_t *self)
{
    char dir[EP_MAX], wal[EP_MAX + 8], cursor[EP_MAX + 16],
        rcursor[EP_MAX + 24];
    const char *url = self->conf->export_url,
               *rurl = self->conf->export_rollup_url;
    uint64_t keep;
    int64_t t0 = clock_mono_ns();
    struct agg_ckpt ck;
    int rc;

    if (ep_expand(dir, sizeof dir, self->conf->data, (unsigned)self->conf->lane)
        == NULL) {
        log_warnx("aggd: data directory name too long: %s", self->conf->data);
        return -1;
    }
    self->datadir = xstrdup(dir);
    if (daemon_mkdirs(dir) == -1) {
        log_warn("aggd: cannot create %s", dir);
        return -1;
    }
    if ((rc = agg_ckpt_read(dir, &ck, self->applied)) == -1)
        return -1;
    if ((self->store = agg_store_open(dir, &ck.files)) == NULL)
        return -1;
    snprintf(wal, sizeof wal, "%s/wal", dir);
    snprintf(cursor, sizeof cursor, "%s/export.cursor", dir);
    snprintf(rcursor, sizeof rcursor, "%s/export-rollups.cursor", dir);
    /* The exporters read the WAL themselves: keep what they have not sent. */
    keep = ck.wal_seg;
    if (s_exporting(url) && agg_export_saved_seg(cursor) < keep)
        keep = agg_export_saved_seg(cursor);
    if (s_exporting(rurl) && agg_export_saved_seg(rcursor) < keep)
        keep = agg_export_saved_seg(rcursor);
    self->wal = agg_wal_open_keep(wal, ck.wal_seg, keep, s_on_replay, self);
    if (self->wal == NULL)
        return -1;
    self->durable = agg_confirm_dup(self->applied);
    if (s_exporting(url) &&
        (self->export = agg_export_new(url, agg_export_format(self->conf->export_format),
                                       false, 0, wal, cursor)) == NULL)
        return -1;
    if (s_exporting(rurl) &&
        (self->export_rollups = agg_export_new(
             rurl, agg_export_format(self->conf->export_format), true,
             self->conf->export_rollup_idle, wal, rcursor)) == NULL)
        return -1;
    log_info("aggd: loaded %zu chunks (%zu points%s), replayed %llu batches "
             "from %s in %lld ms",
             agg_store_chunks(self->store), agg_store_points(self->store),
             rc == 1 ? ", no checkpoint yet" : "",
             (unsigned long long)self->replayed, wal,
             (long long)((clock_mono_ns() - t0) / 1000000));
    return 0;
}

/* CPU time of the calling thread: what a checkpoint costs the loop
 * whatever else runs on the machine. */
static int64_t
s_thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The end of a handler that began at t0 (mono ns) and did other work
 * than applying batches from t1 on (a checkpoint, a query, a commit):
 * the loop did not look at its sockets meanwhile, so a batch that
 * arrived then waited that long to be applied. The longest such stretch
 * is /stats' loop_stall_max_ms and goes to the -v log at each
 * checkpoint; the longest handler run with the batches it applied
 * (AGGD_BURST of them at most) is loop_iteration_max_ms. */
static void
s_loop_mark2(aggd_t *self, int64_t t0, int64_t t1)
{
    int64_t now = clock_mono_ns(), ns = now - t1;

    if (now - t0 > self->iter_max_ns)
        self->iter_max_ns = now - t0;
    if (ns > self->stall_max_ns)
        self->stall_max_ns = ns;
    if (ns > self->stall_ckpt_ns)
        self->stall_ckpt_ns = ns;
}

static void
s_loop_mark(aggd_t *self, int64_t t0)
{
    s_loop_mark2(self, t0, t0);
}

/* The bookkeeping after a checkpoint is durable (t0: its start, loop_ns:
 * how long it held the loop, pos and applied: the WAL position and the
 * table it covers, applied taken over). */
static void
s_ckpt_done(aggd_t *self, const struct agg_ckpt *ck, int64_t t0,
            int64_t loop_ns, uint64_t pos, agg_confirm_t *applied)
{
    agg_wal_drop_before(self->wal, s_export_keep(self, ck->wal_seg));
    agg_store_cleanup(self->store);
    self->ck_files = ck->files;
    self->checkpoints++;
    self->ckpt_ms = (clock_mono_ns() - t0) / 1000000;
    if (self->ckpt_ms > self->ckpt_max_ms)
        self->ckpt_max_ms = self->ckpt_ms;
    if (loop_ns / 1000000 > self->ckpt_loop_max_ms)
        self->ckpt_loop_max_ms = loop_ns / 1000000;
    /* Everything applied at its start is durable now. */
    if (pos >= self->durable_pos) {
        agg_confirm_destroy(&self->durable);
        self->durable = applied;
        self->durable_pos = pos;
    } else {
        agg_confirm_destroy(&applied);
    }
    log_debug("aggd: checkpoint %llu: wal segment %llu, chunks %llu bytes, "
              "%lld ms (%lld ms on the loop); longest loop stall since the "
              "last one %lld ms (%lld ms since start)",
              (unsigned long long)self->checkpoints,
              (unsigned long long)ck->wal_seg,
              (unsigned long long)ck->files.chunk_len, (long long)self->ckpt_ms,
              (long long)(loop_ns / 1000000),
              (long long)(self->stall_ckpt_ns / 1000000),
              (long long)(self->stall_max_ns / 1000000));
    self->stall_ckpt_ns = 0;
}

/* Seal every head into chunks, make them durable, start a new WAL
 * segment, record that in the checkpoint and drop the older segments,
 * all on the loop thread (a delete, a backup, retention, the mending of
 * a broken WAL and a clean stop want it done when they answer; the
 * others start one on a thread, s_ckpt_start). A checkpoint in flight is
 * waited for first. On failure stop confirming, as for the WAL. */
static int
s_checkpoint(aggd_t *self)
{
    struct agg_ckpt ck = {.format = AGG_FORMAT_VERSION};
    int64_t t0 = clock_mono_ns(), cpu0 = s_thread_cpu_ns(), cpu;

    s_ckpt_reap(self, true);
    if (self->wal == NULL || self->wal_broken)
        return -1;
    agg_store_seal_all(self->store);
    if (agg_store_sync(self->store, &ck.files) == -1 ||
        (ck.wal_seg = agg_wal_rotate(self->wal)) == UINT64_MAX ||
        agg_ckpt_write(self->datadir, &ck, self->applied) == -1) {
        log_err("aggd: checkpoint failed; no more confirmations until a "
                "checkpoint succeeds (retried while the disk has room)");
        self->wal_broken = true;
        return -1;
    }
    self->ckpt_wal = agg_wal_written(self->wal);
    if ((cpu = (s_thread_cpu_ns() - cpu0) / 1000000) > self->ckpt_cpu_max_ms)
        self->ckpt_cpu_max_ms = cpu;
    /* The rotation made the whole WAL durable. */
    s_ckpt_done(self, &ck, t0, clock_mono_ns() - t0, self->ckpt_wal,
                agg_confirm_dup(self->applied));
    return 0;
}

/* The checkpoint thread (struct s_ckjob). */
static void *
s_ckjob_run(void *arg)
{
    struct s_ckjob *j = arg;
    sigset_t all;
    int dfd;

    sigfillset(&all); /* signals are the loop's */
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    if (j->pause_ms > 0)
        usleep(j->pause_ms * 1000u);
    j->rc = 0;
    if ((j->cfd != -1 && fdatasync(j->cfd) == -1) ||
        (j->rfd != -1 && fdatasync(j->rfd) == -1)) {
        log_warn("aggd: checkpoint: fdatasync in %s", j->dir);
        j->rc = -1;
    }
    /* A new generation's name durable before a checkpoint names it. */
    if (j->rc == 0 && j->dirsync) {
        if ((dfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1 ||
            fsync(dfd) == -1) {
            log_warn("aggd: checkpoint: fsync %s", j->dir);
            j->rc = -1;
        }
        if (dfd != -1)
            close(dfd);
    }
    if (j->rc == 0)
        j->rc = agg_ckpt_write(j->dir, &j->ck, j->applied);
    atomic_store(&j->done, true);
    return NULL;
}

static void
s_ckjob_free(struct s_ckjob *j)
{
    if (j->cfd != -1)
        close(j->cfd);
    if (j->rfd != -1)
        close(j->rfd);
    agg_confirm_destroy(&j->applied);
    free(j);
}

static int
s_on_ckpt_poll(zloop_t *loop, int timer_id, void *arg)
{
    int64_t t0 = clock_mono_ns();

    (void)loop;
    (void)timer_id;
    s_ckpt_reap(arg, false);
    s_loop_mark(arg, t0);
    return 0;
}

/* Start a checkpoint whose disk work runs on a thread: on the loop, seal
 * every head and write the chunk and rollup records (write(2) into the
 * page cache, the CPU part), then start a new WAL segment without
 * waiting for the disk (agg_wal_rotate_nowait: the group commits fsync
 * the old segment's end before any later position counts as durable).
 * The thread makes the files durable and writes the checkpoint file; the
 * loop meanwhile applies and commits batches, and s_ckpt_reap finishes
 * (drops the WAL segments the checkpoint covers, deletes old file
 * generations). Until then the previous checkpoint and every segment
 * since it stay on disk: a crash at any point recovers from one or the
 * other. Does nothing while one is in flight. Returns 0, or -1 when it
 * failed on the loop (logged; stop confirming, as for the WAL). */
static int
s_ckpt_start(aggd_t *self)
{
    int64_t t0 = clock_mono_ns(), cpu0 = s_thread_cpu_ns(), cpu, t1, t2 = 0, cpu1;
    const char *pause = getenv("AGGD_TEST_CKPT_PAUSE_MS");
    struct s_ckjob *j;

    s_ckpt_reap(self, false);
    if (self->wal == NULL || self->wal_broken)
        return -1;
    /* The WAL's fsyncs are several segments behind (a disk slower than
     * the intake): a rotation now would wait for them on the loop; the
     * next batch tries again. */
    if (self->ckjob || !agg_wal_rotate_ready(self->wal))
        return 0;
    j = xcalloc(1, sizeof *j);
    j->ck.format = AGG_FORMAT_VERSION;
    j->t0 = t0;
    agg_store_seal_all(self->store);
    t1 = clock_mono_ns();
    cpu1 = s_thread_cpu_ns();
    if (agg_store_sync_write(self->store, &j->ck.files, &j->cfd, &j->rfd) == -1 ||
        (t2 = clock_mono_ns(),
         j->ck.wal_seg = agg_wal_rotate_nowait(self->wal)) == UINT64_MAX) {
        log_err("aggd: checkpoint failed; no more confirmations until a "
                "checkpoint succeeds (retried while the disk has room)");
        self->wal_broken = true;
        s_ckjob_free(j);
        return -1;
    }
    j->dir = self->datadir;
    j->applied = agg_confirm_dup(self->applied);
    j->wal_pos = self->ckpt_wal = agg_wal_written(self->wal);
    j->dirsync = self->checkpoints == 0 ||
                 j->ck.files.chunk_gen != self->ck_files.chunk_gen ||
                 j->ck.files.rollup_gen != self->ck_files.rollup_gen;
    j->pause_ms = pause ? (unsigned)strtoul(pause, NULL, 10) : 0;
    atomic_init(&j->done, false);
    j->timer = self->loop ? zloop_timer(self->loop, AGGD_CKPT_POLL_MS, 0,
                                        s_on_ckpt_poll, self) : -1;
    self->ckjob = j;
    if (pthread_create(&j->thread, NULL, s_ckjob_run, j) != 0) {
        log_warnx("aggd: cannot start the checkpoint thread; checkpoint "
                  "on the loop");
        s_ckjob_run(j);
        j->thread = pthread_self();
    }
    j->loop_ns = clock_mono_ns() - t0;
    if ((cpu = (s_thread_cpu_ns() - cpu0) / 1000000) > self->ckpt_cpu_max_ms)
        self->ckpt_cpu_max_ms = cpu;
    log_debug("aggd: checkpoint started: %lld ms on the loop (sealing %lld: "
              "%lld CPU, %lld in write(2); store files %lld, WAL %lld), %lld "
              "ms CPU", (long long)(j->loop_ns / 1000000),
              (long long)((t1 - t0) / 1000000), (long long)((cpu1 - cpu0) / 1000000),
              (long long)(agg_store_seal_write_ns(self->store) / 1000000),
              (long long)((t2 - t1) / 1000000),
              (long long)((t0 + j->loop_ns - t2) / 1000000), (long long)cpu);
    return 0;
}

/* Finish the checkpoint in flight once its thread is done (waiting for
 * it when wait). A failure is a failed checkpoint: stop confirming until
 * one succeeds (s_recover rewrites the files). */
static void
s_ckpt_reap(aggd_t *self, bool wait)
{
    struct s_ckjob *j = self->ckjob;

    if (j == NULL || (!wait && !atomic_load(&j->done)))
        return;
    if (!pthread_equal(j->thread, pthread_self()))
        pthread_join(j->thread, NULL);
    if (j->timer != -1)
        zloop_timer_end(self->loop, j->timer);
    self->ckjob = NULL;
    if (j->rc == -1) {
        log_err("aggd: checkpoint failed; no more confirmations until a "
                "checkpoint succeeds (retried while the disk has room)");
        agg_store_sync_failed(self->store);
        self->wal_broken = true;
    } else {
        s_ckpt_done(self, &j->ck, j->t0, j->loop_ns, j->wal_pos, j->applied);
        j->applied = NULL;
        s_send_confirm(self);
    }
    s_ckjob_free(j);
}

/* Retention: drop raw chunks and rollup buckets past their policy
 * (aggd_conf keep_*), then checkpoint, which writes the chunk and rollup
 * files anew without them. Runs on the loop: the rewrite costs about as
 * much as writing the kept data once. */
static void
s_compact(aggd_t *self)
{
    const struct aggd_conf *c = self->conf;
    const int64_t day = 86400LL * CLOCK_NS_PER_S, now = clock_now_ns();
    int64_t raw = c->keep_raw ? now - c->keep_raw * day : INT64_MIN;
    int64_t tiers[AGG_ROLLUP_TIERS] = {
        c->keep_minute ? now - c->keep_minute * day : INT64_MIN,
        c->keep_hour ? now - c->keep_hour * day : INT64_MIN,
        c->keep_day ? now - c->keep_day * day : INT64_MIN};
    size_t before[AGG_ROLLUP_TIERS], n;
    bool dropped = false;

    for (int t = 0; t < AGG_ROLLUP_TIERS; t++)
        before[t] = agg_store_rollup_buckets(self->store, t);
    n = agg_store_expire(self->store, raw, tiers);
    for (int t = 0; t < AGG_ROLLUP_TIERS; t++)
        dropped |= agg_store_rollup_buckets(self->store, t) != before[t];
    if (n == 0 && !dropped)
        return;
    self->compactions++;
    self->expired_chunks += n;
    log_info("aggd: retention dropped %zu raw chunks and %zu/%zu/%zu "
             "minute/hour/day rollup buckets", n,
             before[0] - agg_store_rollup_buckets(self->store, 0),
             before[1] - agg_store_rollup_buckets(self->store, 1),
             before[2] - agg_store_rollup_buckets(self->store, 2));
    if (self->wal && s_checkpoint(self) == 0)
        s_send_confirm(self);
}

static int
s_on_compact_timer(zloop_t *loop, int timer_id, void *arg)
{
    int64_t t0 = clock_mono_ns();

    (void)loop;
    (void)timer_id;
    s_compact(arg);
    s_loop_mark(arg, t0);
    return 0;
}

static bool
s_ckpt_due(const aggd_t *self)
{
    return self->wal && agg_wal_written(self->wal) - self->ckpt_wal >=
                            (uint64_t)self->conf->ckpt_mb << 20;
}

static int
s_on_ckpt_timer(zloop_t *loop, int timer_id, void *arg)
{
    aggd_t *self = arg;
    int64_t t0 = clock_mono_ns();

    (void)loop;
    (void)timer_id;
    s_ckpt_reap(self, false);
    if (agg_wal_written(self->wal) != self->ckpt_wal)
        s_ckpt_start(self);
    s_loop_mark(self, t0);
    return 0;
}

/* Send the durable table to ingestd. A missing or slow ingestd makes the
 * send fail; the next commit or heartbeat repeats it. */
static void
s_send_confirm(aggd_t *self)
{
    msg_batch_t *b;

    if (self->confirm == NULL || self->durable == NULL ||
        agg_confirm_size(self->durable) == 0 || self->wal_broken)
        return;
    b = agg_confirm_batch(self->durable, self->producer,
                          (uint32_t)self->conf->lane);
    msg_batch_env(b)->seq = ++self->confirm_seq;
    msg_batch_env(b)->ts = clock_now_ns();
    msg_batch_send(b, self->confirm, ZMQ_DONTWAIT);
    msg_batch_destroy(&b);
}

/* Start a group commit of everything written so far, remembering which
 * seqs it covers. */
static void
s_commit(aggd_t *self)
{
    if (self->wal == NULL || self->wal_broken)
        return;
    if (agg_wal_sync_start(self->wal)) {
        agg_confirm_destroy(&self->inflight);
        self->inflight = agg_confirm_dup(self->applied);
        self->inflight_pos = agg_wal_written(self->wal);
    }
}

static int
s_on_synced(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    int rc;

    (void)loop;
    /* zloop polls once and then runs every ready handler: a checkpoint in
     * an earlier handler of the same round may have taken this answer
     * already, and a blocking read would then wait forever. */
    if (!agg_wal_sync_busy(self->wal) || !(zsock_events(sock) & ZMQ_POLLIN))
        return 0;
    if ((rc = agg_wal_sync_done(self->wal)) == 1)
        return 0; /* the segment before a rotation; the rest in flight */
    if (rc == -1) {
        /* The kernel may have dropped the dirty pages: nothing written
         * since the last good fsync can be trusted. Stop confirming;
         * a restart replays what the log really holds. */
        log_err("aggd: WAL fsync failed; no more confirmations until a "
                "checkpoint succeeds (retried while the disk has room)");
        self->wal_broken = true;
        return 0;
    }
    self->group_commits++;
    if (self->inflight && self->inflight_pos >= self->durable_pos) {
        agg_confirm_destroy(&self->durable);
        self->durable = self->inflight;
        self->durable_pos = self->inflight_pos;
        self->inflight = NULL;
    }
    s_send_confirm(self);
    s_commit(self);
    return 0;
}

/* The disk floor: below it aggd stops taking readings (outq_hold) rather
 * than run the disk full in the middle of a WAL record; the PULL queue
 * fills, ingestd's spool grows and past its high-water mark ingestd
 * answers 503. Resumes once free space is 1/8 above the floor again. */
static void
s_check_disk(aggd_t *self)
{
    uint64_t floor = (uint64_t)self->conf->disk_floor_mb << 20;
    struct statvfs sv;

    if (self->wal)
        self->disk_checked = agg_wal_written(self->wal);
    if (self->datadir == NULL || statvfs(self->datadir, &sv) == -1)
        return;
    self->disk_free = (uint64_t)sv.f_bavail * sv.f_frsize;
    if (!self->disk_low && self->disk_free < floor) {
        self->disk_low = true;
        self->disk_holds++;
        outq_hold(self->out, true);
        log_warnx("aggd: %s has %llu MiB free, below the floor of %lld MiB: "
                  "not taking readings until space returns", self->datadir,
                  (unsigned long long)(self->disk_free >> 20),
                  (long long)self->conf->disk_floor_mb);
    } else if (self->disk_low && self->disk_free >= floor + floor / 8) {
        self->disk_low = false;
        outq_hold(self->out, false);
        log_info("aggd: %s has %llu MiB free again: taking readings",
                 self->datadir, (unsigned long long)(self->disk_free >> 20));
    }
}

/* After a failed WAL write, fsync or checkpoint nothing since the last
 * good fsync is known durable, and nothing is confirmed. Once the disk is
 * above the floor again, a checkpoint writes everything applied (also
 * the batches the WAL missed) to chunk files and starts a new WAL
 * segment; when it succeeds, all of that is durable and confirmations
 * resume. Tried from the heartbeat, at most every AGGD_RECOVER_NS. */
static void
s_recover(aggd_t *self)
{
    int64_t now = clock_mono_ns();

    if (!self->wal_broken || self->wal == NULL || self->disk_low ||
        now - self->recover_at < AGGD_RECOVER_NS || agg_wal_sync_busy(self->wal))
        return;
    self->recover_at = now;
    self->wal_broken = false;
    agg_store_retry(self->store);
    if (s_checkpoint(self) == -1)
        return; /* broken again, logged */
    self->wal_recoveries++;
    log_info("aggd: checkpoint after the WAL failure succeeded: everything "
             "applied is durable, confirmations resume");
    s_send_confirm(self);
}

static int
s_on_export(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;

    (void)loop;
    agg_export_recv(self->export && sock == agg_export_sock(self->export)
                        ? self->export
                        : self->export_rollups);
    return 0;
}

static int
s_on_heartbeat(zloop_t *loop, int timer_id, void *arg)
{
    aggd_t *self = arg;
    int64_t t0 = clock_mono_ns();

    (void)loop;
    (void)timer_id;
    s_check_disk(self);
    s_ckpt_reap(self, false);
    s_recover(self);
    /* A compaction finished on its thread: switch over now rather than
     * at the next checkpoint the WAL asks for (an idle aggd would hold
     * both forms of the chunks meanwhile). */
    if (self->wal && agg_store_compact_done(self->store))
        s_ckpt_start(self);
    s_send_confirm(self);
    s_loop_mark(self, t0);
    return 0;
}

/* Read one [topic][batch] message without waiting. Returns 1 when one was
 * handled, 0 when the queue is empty. */
static int
s_pull_one(aggd_t *self, zsock_t *sock)
{
    zmsg_t *m;
    zframe_t *body;
    msg_batch_t *b;
    struct msg_envelope *e;

    if (!(zsock_events(sock) & ZMQ_POLLIN))
        return 0;
    if ((m = zmsg_recv(sock)) == NULL)
        return 0;
    if (zmsg_size(m) != 2) {
        self->bad_batches++;
        zmsg_destroy(&m);
        return 1;
    }
    body = zmsg_last(m);
    b = s_ingest(self, zframe_data(body), zframe_size(body), false);
    if (b == NULL) {
        zmsg_destroy(&m);
        return 1;
    }
    if (self->wal && !self->wal_broken &&
        agg_wal_append(self->wal, zframe_data(body), zframe_size(body)) == -1) {
        log_err("aggd: WAL write failed; no more confirmations until a "
                "checkpoint succeeds (retried while the disk has room)");
        self->wal_broken = true;
    }
    zmsg_destroy(&m);
    e = msg_batch_env(b);
    log_debug("aggd: applied batch producer=%s lane=%u seq=%llu n=%zu",
              e->producer, e->lane, (unsigned long long)e->seq,
              msg_batch_size(b));
    snprintf(e->producer, sizeof e->producer, "%s", self->producer);
    e->seq = ++self->seq;
    e->ts = clock_now_ns();
    if (self->pub_subs > 0) { /* nobody listening: skip the encoding */
        msg_batch_send(b, self->pub, ZMQ_DONTWAIT); /* live views may miss */
        self->pub_batches++;
    }
    /* A full anomalyd pauses this reader (and keeps the batch). */
    outq_send_back(self->out, &b);
    self->spare = b;
    return 1;
}

/* A subscription or unsubscription on the live-view XPUB: one frame,
 * 1 or 0 then the prefix. Without ZMQ_XPUB_VERBOSE libzmq passes on the
 * first subscription of a prefix and the last unsubscription (also the
 * ones of a subscriber that went away), so counting the prefixes of the
 * topic tells whether anyone would receive a batch. */
static int
s_on_pub_sub(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    const char *topic = msg_topic(MSG_TYPE_READINGS);
    zframe_t *f;

    (void)loop;
    for (int i = 0; i < AGGD_BURST && (zsock_events(sock) & ZMQ_POLLIN); i++) {
        if ((f = zframe_recv(sock)) == NULL)
            break;
        const unsigned char *d = zframe_data(f);
        size_t n = zframe_size(f);
        if (n >= 1 && (d[0] == 0 || d[0] == 1) && n - 1 <= strlen(topic) &&
            memcmp(d + 1, topic, n - 1) == 0) {
            if (d[0] == 1)
                self->pub_subs++;
            else if (self->pub_subs > 0)
                self->pub_subs--;
            log_debug("aggd: live view %s, %zu subscribed prefixes",
                      d[0] ? "subscribed" : "unsubscribed", self->pub_subs);
        }
        zframe_destroy(&f);
    }
    return 0;
}

static int
s_on_pull(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    int64_t t0 = clock_mono_ns(), t1;

    for (int i = 0; i < AGGD_BURST && outq_batches(self->out) == 0; i++)
        if (s_pull_one(self, sock) == 0)
            break;
    t1 = clock_mono_ns();
    s_ckpt_reap(self, false);
    if (s_ckpt_due(self))
        s_ckpt_start(self);
    s_commit(self);
    /* A resend of batches applied already (ingestd restarted with them
     * still in its spool, or its confirmation was lost) is confirmed
     * now, not at the next heartbeat: until then the producer holds
     * them, and with --spool-max reached refuses writes. A commit in
     * flight confirms when it lands; with none, the durable table
     * covers every batch applied. */
    if (self->dup_pending && !(self->wal && agg_wal_sync_busy(self->wal)))
        s_send_confirm(self);
    self->dup_pending = false;
    /* Between heartbeats, look again after every 8 MiB of WAL. */
    if (self->wal && agg_wal_written(self->wal) - self->disk_checked > (8u << 20))
        s_check_disk(self);
    s_loop_mark2(self, t0, t1);
    return 0;
}

/* Rollups and disk usage by kind, flat so apid sums them over lanes. */
static void
s_status_storage(aggd_t *self, json_t *j)
{
    static const char *tiers[] = {"rollup_minute_buckets", "rollup_hour_buckets",
                                  "rollup_day_buckets"};
    struct agg_store_files f;

    for (int t = 0; t < AGG_ROLLUP_TIERS; t++)
        json_object_set_new(j, tiers[t], json_integer((json_int_t)
                            agg_store_rollup_buckets(self->store, t)));
    json_object_set_new(j, "rollup_memory_bytes", json_integer((json_int_t)
                        agg_store_rollup_bytes(self->store)));
    json_object_set_new(j, "compactions", json_integer((json_int_t)self->compactions));
    json_object_set_new(j, "disk_low", json_boolean(self->disk_low));
    json_object_set_new(j, "disk_free_bytes", json_integer((json_int_t)self->disk_free));
    json_object_set_new(j, "disk_holds", json_integer((json_int_t)self->disk_holds));
    json_object_set_new(j, "expired_chunks", json_integer((json_int_t)self->expired_chunks));
    json_object_set_new(j, "reseals", json_integer((json_int_t)agg_store_reseals(self->store)));
    json_object_set_new(j, "reseal_points", json_integer((json_int_t)
                        agg_store_reseal_points(self->store)));
    json_object_set_new(j, "head_merge_points", json_integer((json_int_t)
                        agg_store_head_merge_points(self->store)));
    json_object_set_new(j, "chunk_compactions", json_integer((json_int_t)
                        agg_store_compactions(self->store)));
    json_object_set_new(j, "compacted_chunks", json_integer((json_int_t)
                        agg_store_compacted_chunks(self->store)));
    json_object_set_new(j, "compaction_ms", json_integer((json_int_t)
                        agg_store_compact_ms(self->store)));
    json_object_set_new(j, "compaction_loop_max_ms", json_integer((json_int_t)
                        agg_store_compact_loop_max_ms(self->store)));
    json_object_set_new(j, "compacting", json_boolean(
                        agg_store_compacting(self->store)));
    json_object_set_new(j, "compactions_dropped", json_integer((json_int_t)
                        agg_store_compact_dropped(self->store)));
    agg_store_written(self->store, &f);
    json_object_set_new(j, "disk_chunk_bytes", json_integer((json_int_t)f.chunk_len));
    json_object_set_new(j, "disk_rollup_bytes", json_integer((json_int_t)f.rollup_len));
    if (self->wal)
        json_object_set_new(j, "disk_wal_bytes", json_integer((json_int_t)
                            agg_wal_disk_bytes(self->wal)));
}

static json_t *
s_status(aggd_t *self)
{
    json_t *j = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:b}", "daemon",
        self->producer, "batches_in", (json_int_t)self->batches_in,
        "readings_in", (json_int_t)self->readings_in, "duplicates",
        (json_int_t)self->duplicates, "bad_batches",
        (json_int_t)self->bad_batches, "queries", (json_int_t)self->queries,
        "downstream_stalls", (json_int_t)outq_stalls(self->out), "series",
        (json_int_t)agg_store_series(self->store), "points",
        (json_int_t)agg_store_points(self->store), "paused", outq_paused(self->out));

    json_object_set_new(j, "resent_batches", json_integer((json_int_t)self->dup_batches));
    json_object_set_new(j, "gap_batches", json_integer((json_int_t)self->gap_batches));
    json_object_set_new(j, "producers", json_integer((json_int_t)agg_confirm_size(self->applied)));
    json_object_set_new(j, "producers_full_batches",
                        json_integer((json_int_t)self->full_batches));
    json_object_set_new(j, "producers_forgotten",
                        json_integer((json_int_t)agg_confirm_forgotten(
                            self->applied, NULL)));
    json_object_set_new(j, "replayed_batches", json_integer((json_int_t)self->replayed));
    json_object_set_new(j, "live_subscriptions", json_integer((json_int_t)self->pub_subs));
    json_object_set_new(j, "live_batches", json_integer((json_int_t)self->pub_batches));
    json_object_set_new(j, "confirms_sent", json_integer((json_int_t)self->confirm_seq));
    json_object_set_new(j, "wal_broken", json_boolean(self->wal_broken));
    json_object_set_new(j, "wal_recoveries", json_integer((json_int_t)self->wal_recoveries));
    json_object_set_new(j, "chunks", json_integer((json_int_t)agg_store_chunks(self->store)));
    json_object_set_new(j, "chunk_bytes", json_integer((json_int_t)agg_store_chunk_bytes(self->store)));
    json_object_set_new(j, "head_points", json_integer((json_int_t)agg_store_head_points(self->store)));
    s_status_storage(self, j);
    if (self->wal) {
        json_object_set_new(j, "checkpoints", json_integer((json_int_t)self->checkpoints));
        json_object_set_new(j, "checkpoint_ms", json_integer((json_int_t)self->ckpt_ms));
        json_object_set_new(j, "checkpoint_max_ms", json_integer((json_int_t)self->ckpt_max_ms));
        json_object_set_new(j, "checkpoint_cpu_max_ms", json_integer((json_int_t)self->ckpt_cpu_max_ms));
        json_object_set_new(j, "checkpoint_loop_max_ms", json_integer((json_int_t)self->ckpt_loop_max_ms));
        json_object_set_new(j, "checkpointing", json_boolean(self->ckjob != NULL));
        json_object_set_new(j, "loop_stall_max_ms", json_integer((json_int_t)(self->stall_max_ns / 1000000)));
        json_object_set_new(j, "loop_iteration_max_ms", json_integer((json_int_t)(self->iter_max_ns / 1000000)));
        json_object_set_new(j, "group_commits", json_integer((json_int_t)self->group_commits));
        json_object_set_new(j, "wal_records", json_integer((json_int_t)agg_wal_records(self->wal)));
        json_object_set_new(j, "wal_bytes", json_integer((json_int_t)agg_wal_disk_bytes(self->wal)));
        json_object_set_new(j, "wal_unsynced_bytes",
                            json_integer((json_int_t)(agg_wal_written(self->wal) -
                                                      agg_wal_durable(self->wal))));
    }
    if (self->export)
        agg_export_status(self->export, j);
    if (self->export_rollups)
        agg_export_status(self->export_rollups, j);
    return j;
}

/* A delete is made durable by a checkpoint (files rewritten without the
 * points) before it is answered; the WAL before it is then dropped, so a
 * replay cannot bring the points back. */
static int
s_deleted(aggd_t *self, json_t **body)
{
    if (self->wal == NULL)
        return 200;
    if (s_checkpoint(self) == -1) {
        json_decref(*body);
        *body = rpc_error("unavailable", "deleted in memory but the "
                          "checkpoint failed; a restart brings the points "
                          "back", "disk");
        return 503;
    }
    s_send_confirm(self);
    log_info("aggd: deleted %lld points of %lld series",
             (long long)json_integer_value(json_object_get(*body, "deleted")),
             (long long)json_integer_value(json_object_get(*body, "matched")));
    return 200;
}

/* Backup: a checkpoint, then the durable prefix of the chunk and rollup
 * files and a checkpoint naming them copied into a new directory: a data
 * directory as of this moment (aggd --data DIR restores it). Runs on the
 * loop; the copy costs one read of the store's files. */
static int
s_backup(aggd_t *self, const json_t *req, json_t **body)
{
    const char *dir = json_string_value(json_object_get(req, "dir"));
    struct agg_ckpt ck = {.format = AGG_FORMAT_VERSION};
    int64_t t0 = clock_mono_ns();

    if (dir == NULL || dir[0] != '/') {
        *body = rpc_error("bad_request", "dir must be an absolute path", "dir");
        return 400;
    }
    if (mkdir(dir, 0755) == -1) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot create %.200s: %s (it must not "
                 "exist yet)", dir, strerror(errno));
        *body = rpc_error("bad_request", msg, "dir");
        return 400;
    }
    if (self->wal == NULL || s_checkpoint(self) == -1) {
        *body = rpc_error("unavailable", "checkpoint failed", "disk");
        return 503;
    }
    s_send_confirm(self);
    agg_store_written(self->store, &ck.files);
    ck.wal_seg = agg_wal_segment(self->wal);
    /* Without the table of applied seqs: the producers' seqs go on past
     * the backup (what they sent after it was confirmed and is not
     * resent), so an aggd restored with the table would take their next
     * batches for batches after a gap and never confirm them again. With
     * none, each producer's next batch starts its entry (agg_confirm.h),
     * and a resend of batches the backup holds is applied again, in
     * order, idempotently. */
    agg_confirm_t *none = agg_confirm_new();
    int rc = agg_store_backup(self->store, dir, &ck.files) == -1 ||
             agg_ckpt_write(dir, &ck, none) == -1 ? -1 : 0;
    agg_confirm_destroy(&none);
    if (rc == -1) {
        *body = rpc_error("internal", "backup failed; see aggd's log", "dir");
        return 500;
    }
    *body = json_pack("{s:s, s:I, s:I, s:I, s:I}", "dir", dir, "points",
                      (json_int_t)agg_store_points(self->store), "chunk_bytes",
                      (json_int_t)ck.files.chunk_len, "rollup_bytes",
                      (json_int_t)ck.files.rollup_len, "ms",
                      (json_int_t)((clock_mono_ns() - t0) / 1000000));
    log_info("aggd: backup of %zu points to %s", agg_store_points(self->store),
             dir);
    return 200;
}

/* The slot of apid's arena a request lends ({"shm": {"name", "off",
 * "len", "until"}}, arena.h) into text, unless it is past "until": apid
 * lends the slot out again a grace period after that, so a write begun
 * before it is safe (agg_interval checks again just before it writes). */
static void
s_lend(aggd_t *self, const json_t *req, struct agg_text *text)
{
    const json_t *shm = json_object_get(req, "shm");
    json_int_t off = json_integer_value(json_object_get(shm, "off"));
    json_int_t len = json_integer_value(json_object_get(shm, "len"));
    json_int_t until = json_integer_value(json_object_get(shm, "until"));

    if (shm == NULL || off < 0 || len <= 0 || clock_mono_ns() >= until)
        return;
    text->lent = arena_maps_get(self->arenas,
                                json_string_value(json_object_get(shm, "name")),
                                (size_t)off, (size_t)len);
    text->lent_len = text->lent ? (size_t)len : 0;
    text->lent_until = until;
}

static int
s_on_query(zloop_t *loop, zsock_t *sock, void *arg)
{
    aggd_t *self = arg;
    zmsg_t *env;
    json_t *req = rpc_request_recv(sock, &env), *body = NULL;
    /* An answer as text starts after room for the reply's head, so that
     * its buffers go out as they are (rpc_reply_send_frames). */
    struct agg_text text = {.base = RPC_TEXT_HEAD};
    int status;
    int64_t t0 = clock_mono_ns();

    if (req == NULL)
        return 0;
    self->queries++;
    if (strcmp(json_string_value(json_object_get(req, "op")), "backup") == 0) {
        status = s_backup(self, req, &body);
    } else if (strcmp(json_string_value(json_object_get(req, "op")), "status") == 0) {
        body = s_status(self);
        status = 200;
    } else {
        s_lend(self, req, &text);
        status = agg_query_reply(self->store, req, &body, &text);
        if (status == 200 && !strcmp(json_string_value(json_object_get(req, "op")),
                                     "delete"))
            status = s_deleted(self, &body);
    }
    if (body == NULL && agg_text_len(&text) > 0)
        rpc_reply_send_parts(sock, &env, status, text.buf, text.n,
                             text.lent, text.lent_len); /* ZeroMQ's now */
    else
        rpc_reply_send(sock, &env, status, body);
    agg_text_free(&text);
    json_decref(req);
    s_loop_mark(self, t0);
    return 0;
}

/* SIGHUP: re-read the file; what is not CFG_IMMUTABLE (drain) takes
 * effect from here on, read through self->conf. */
static void
s_on_event(enum daemon_event ev, void *arg)
{
    aggd_t *self = arg;
    struct aggd_conf *c;

    if (ev != DAEMON_EV_RELOAD)
        return; /* stop is handled by the loop */
    if ((c = reload_conf(self->conf, sizeof *c)) == NULL)
        return;
    self->conf = c;
    reload_free((void **)&self->reloaded);
    self->reloaded = c;
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
    outq_start(self->out);
    s_check_disk(self);
    zloop_reader(self->loop, self->router, s_on_query, self);
    zloop_reader(self->loop, self->pub, s_on_pub_sub, self);
    zloop_reader(self->loop, agg_wal_sock(self->wal), s_on_synced, self);
    if (self->export)
        zloop_reader(self->loop, agg_export_sock(self->export), s_on_export, self);
    if (self->export_rollups)
        zloop_reader(self->loop, agg_export_sock(self->export_rollups),
                     s_on_export, self);
    zloop_timer(self->loop, AGGD_HEARTBEAT_MS, 0, s_on_heartbeat, self);
    zloop_timer(self->loop, (size_t)(self->conf->ckpt_every / 1000000), 0,
                s_on_ckpt_timer, self);
    zloop_timer(self->loop, (size_t)(self->conf->compact_every / 1000000), 0,
                s_on_compact_timer, self);
    s_compact(self);
    snprintf(summary, sizeof summary, "lane=%lld in=%s data=%s",
             (long long)self->conf->lane, zsock_endpoint(self->pull),
             self->datadir);
    daemon_ready(summary);
    rc = zloop_start(self->loop);
    /* Drain: hand anomalyd what it still owes, within the deadline. */
    outq_drain(self->out, clock_mono_ns() + self->conf->drain);
    /* Make the log durable and tell ingestd, so a restart resends
     * nothing it does not have to; merge the small chunks the heads
     * leave (agg_store_compact_all). */
    agg_store_compact_all(self->store);
    if (!self->wal_broken && s_checkpoint(self) == 0)
        s_send_confirm(self);
    close(sigfd);
    (void)rc;
    return 0;
}

static void
s_test_wait(zsock_t *sock)
{
    zpoller_t *p = zpoller_new(sock, NULL);
    assert(zpoller_wait(p, 5000) == sock);
    zpoller_destroy(&p);
}

static void
s_test_rmrf(const char *path)
{
    zdir_t *d = zdir_new(path, NULL);
    if (d) {
        zdir_remove(d, true);
        zdir_destroy(&d);
    }
}

/* Test helper: the stats of series, asked over dealer and answered by
 * a's query handler; the body (caller decrefs) of a 200 reply. */
static json_t *
s_test_stats(aggd_t *a, zsock_t *dealer, const char *series)
{
    json_t *req = json_pack("{s:s, s:s}", "op", "stats", "series", series);
    json_t *body;
    uint64_t id;
    int status;

    rpc_request_send(dealer, 1, req);
    json_decref(req);
    s_test_wait(a->router);
    s_on_query(a->loop, a->router, a);
    assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
    assert(status == 200);
    return body;
}

void
aggd_test(bool verbose)
{
    char dir[] = "/tmp/aggd_test.XXXXXX", ep[EP_MAX], data[EP_MAX];
    struct aggd_conf c = {0};
    aggd_t *a;
    zsock_t *push, *dealer, *confirms;
    msg_batch_t *b, *cb = NULL;
    json_t *body;

    assert(mkdtemp(dir));
    snprintf(data, sizeof data, "%s/data.{lane}", dir);
    c.rundir = dir;
    c.in = c.query = c.pub = c.confirm = "";
    c.data = data;
    c.down = "none";
    c.hwm = 100;
    c.ckpt_mb = 64;
    c.ckpt_every = 60 * CLOCK_NS_PER_S;
    snprintf(ep, sizeof ep, "ipc://%s/ingestd.confirm", dir);
    confirms = zsock_new_pull(ep);
    a = aggd_new(&c);
    assert(a);
    /* Drive the handlers directly rather than running the loop. */
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.in", dir);
    push = zsock_new_push(ep);
    b = msg_batch_new(MSG_TYPE_READINGS);
    snprintf(msg_batch_env(b)->producer, 64, "ingestd.0");
    msg_batch_env(b)->seq = 1;
    /* Two series interleaved, as ingestd sends a time-major stream; u at
     * ts 1 twice in the batch: the later value wins. */
    msg_batch_add_reading(b, "t", 1, 1.0);
    msg_batch_add_reading(b, "u", 1, 5.0);
    msg_batch_add_reading(b, "t", 2, 3.0);
    msg_batch_add_reading(b, "u", 1, 6.0);
    msg_batch_send(b, push, 0);
    msg_batch_send(b, push, 0); /* a resend of seq 1: skipped */
    msg_batch_env(b)->seq = 2;
    msg_batch_send(b, push, 0); /* same points, new seq: overwrites */
    while (a->batches_in + a->dup_batches < 3) {
        s_test_wait(a->pull);
        s_on_pull(a->loop, a->pull, a);
    }
    assert(a->readings_in == 8 && a->duplicates == 5 && a->dup_batches == 1);
    assert(agg_store_points(a->store) == 3);
    /* Group commit, then a confirmation of seq 2. */
    while (agg_confirm_seq(a->durable, "ingestd.0", 0) != 2) {
        s_commit(a);
        s_test_wait(agg_wal_sock(a->wal));
        s_on_synced(a->loop, agg_wal_sock(a->wal), a);
    }
    /* A commit that landed between batches may confirm seq 1 first; the
     * confirmations only ever grow, up to 2. */
    for (uint64_t seen = 0; seen != 2;) {
        s_test_wait(confirms);
        assert(msg_batch_recv(confirms, &cb) == MSG_OK);
        assert(msg_batch_type(cb) == MSG_TYPE_CONFIRM && msg_batch_size(cb) == 1);
        assert(msg_batch_confirm(cb, 0)->seq >= seen);
        seen = msg_batch_confirm(cb, 0)->seq;
        assert(seen <= 2);
        msg_batch_destroy(&cb);
    }
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.query", dir);
    dealer = zsock_new_dealer(ep);
    body = s_test_stats(a, dealer, "t");
    TEST_NEAR(json_real_value(json_object_get(body, "mean")), 2.0, 0);
    json_decref(body);
    body = s_test_stats(a, dealer, "u");
    assert(json_integer_value(json_object_get(body, "count")) == 1);
    TEST_NEAR(json_real_value(json_object_get(body, "mean")), 6.0, 0);
    json_decref(body);
    zsock_destroy(&dealer);
    /* Live views: nothing was published while nobody subscribed; a
     * subscriber gets the next batch; once it is gone, none again. */
    assert(a->pub_batches == 0 && a->pub_subs == 0);
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.pub", dir);
    zsock_t *live = zsock_new_sub(ep, "readings");
    while (a->pub_subs == 0) {
        s_test_wait(a->pub);
        s_on_pub_sub(a->loop, a->pub, a);
    }
    msg_batch_env(b)->seq = 3;
    msg_batch_send(b, push, 0);
    s_test_wait(a->pull);
    s_on_pull(a->loop, a->pull, a);
    assert(a->batches_in == 3 && a->pub_batches == 1);
    s_test_wait(live);
    assert(msg_batch_recv(live, &cb) == MSG_OK);
    assert(msg_batch_type(cb) == MSG_TYPE_READINGS && msg_batch_size(cb) == 4);
    msg_batch_destroy(&cb);
    zsock_destroy(&live);
    while (a->pub_subs > 0) {
        s_test_wait(a->pub);
        s_on_pub_sub(a->loop, a->pub, a);
    }
    msg_batch_env(b)->seq = 4;
    msg_batch_send(b, push, 0);
    s_test_wait(a->pull);
    s_on_pull(a->loop, a->pull, a);
    assert(a->batches_in == 4 && a->pub_batches == 1);
    aggd_destroy(&a);
    assert(a == NULL);

    /* A restart replays the WAL: same points, same table. */
    a = aggd_new(&c);
    assert(a && a->replayed == 4 && agg_store_points(a->store) == 3);
    assert(agg_confirm_seq(a->durable, "ingestd.0", 0) == 4);
    /* A fresh PUSH: the old one may still hold a pipe to the stopped
     * aggd and send into it (lost), which failed this test under load. */
    zsock_destroy(&push);
    snprintf(ep, sizeof ep, "ipc://%s/aggd.0.in", dir);
    push = zsock_new_push(ep);
    /* What the first run sent is gone; none from this one so far. */
    zpoller_t *drain = zpoller_new(confirms, NULL);
    while (zpoller_wait(drain, 200) == confirms) {
        assert(msg_batch_recv(confirms, &cb) == MSG_OK);
        msg_batch_destroy(&cb);
    }
    zpoller_destroy(&drain);
    msg_batch_env(b)->seq = 2;
    msg_batch_send(b, push, 0); /* seq 2 again after the restart: skipped */
    s_test_wait(a->pull);
    s_on_pull(a->loop, a->pull, a);
    assert(a->dup_batches == 1 && a->batches_in == 4);
    /* ... and confirmed at once (up to 4), with no heartbeat: ingestd
     * holds the batches until then. */
    s_test_wait(confirms);
    assert(msg_batch_recv(confirms, &cb) == MSG_OK);
    assert(msg_batch_type(cb) == MSG_TYPE_CONFIRM && msg_batch_size(cb) == 1);
    assert(msg_batch_confirm(cb, 0)->seq == 4);
    msg_batch_destroy(&cb);
    msg_batch_destroy(&b);
    zsock_destroy(&push);
    zsock_destroy(&confirms);
    aggd_destroy(&a);
    s_test_rmrf(dir);
    (void)verbose;
    TEST_OK("aggd");
}
