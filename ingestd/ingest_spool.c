/*
 * ingest_spool: durable, checksummed spool of accepted batches (see
 * ingest_spool.h).
 *
 * Group commit off the loop thread: one fdatasync covers every request
 * that arrived since the last one, and it runs on a common/fsyncer thread
 * while the loop parses the next requests; with ingest_spool_pipeline(2)
 * a second thread starts one for what arrived while the first runs.
 * Positions are logical bytes appended since open: a record is durable
 * (and may be sent) once a finished fsync's position reaches its end.
 *
 * Memory: an index of the unconfirmed records is kept (where each one
 * is, ~56 bytes a record), and a copy of each record appended until it
 * is first handed out, at most SPOOL_MEM_MAX bytes of them: the usual
 * send goes from memory, the bytes just written. A record without its
 * copy (a resend, a recovered record, one past the bound) is read back
 * from its segment (the page cache, mostly) and its checksum checked
 * again. So ingestd's memory does not grow with a backlog; the
 * backlog's bound, --spool-max, is disk.
 */
#include "ingestd/ingest_spool.h"
#include "common/crc.h"
#include "common/daemon.h"
#include "common/fsyncer.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define SPOOL_MAGIC 0x314c5053u /* "SPL1" little-endian */
#define SPOOL_HDR 24
#define SPOOL_RECORD_MAX (256u << 20)
/* Appended records kept in memory until first handed out, in bytes.
 * As much as ingestd keeps in flight to aggd (INGESTD_INFLIGHT_BYTES):
 * in sh bench/run.sh 16 MiB cost 10-15 MiB more peak RSS (150-163 MiB
 * for all daemons at 2 and 4 connections, over the 150 MiB target) and
 * 2 MiB gave 141-145 MiB at the same throughput. */
#define SPOOL_MEM_MAX (2u << 20)

/* The next segment is written ahead, full of zeros and fdatasync'd, by a
 * thread of its own (s_prep_run) while the active one fills; a rotation
 * renames it into place. An append then overwrites blocks the file
 * already has, so its fdatasync writes the data alone: no block
 * allocation, no new file size, no journal commit (bench/ingest/fsync.c:
 * p50 0.34-0.68 ms against 0.63-0.85 for an append). Recovery takes a
 * header of zeros for the end of the records. PREP_TMP is renamed to
 * PREP only once durable, so a PREP found at start-up is whole. */
#define SPOOL_PREP "next.prep"
#define SPOOL_PREP_TMP "prep.tmp"
enum { PREP_IDLE, PREP_RUNNING, PREP_DONE };

struct s_rec {
    uint64_t seq;  /* batch seq on its lane */
    uint64_t seg;  /* id of the segment holding it */
    uint64_t off;  /* offset of its header in that segment */
    uint64_t end;  /* logical position after it (0: recovered) */
    uint64_t cum;  /* payload bytes of its lane up to and with it */
    size_t len;    /* payload length */
    void *mem;     /* a copy of the payload until first handed out, or NULL */
};

struct s_lane {
    struct s_rec *r;    /* unconfirmed records, r[head..head+n) */
    size_t head, n, cap;
    uint64_t next_seq;  /* seq to hand out next */
    uint64_t last_seg;  /* segment of its newest record, 0 when none */
    uint64_t confirmed; /* highest confirmed seq */
    uint64_t cum;       /* payload bytes appended on the lane */
    uint64_t cum_done;  /* of them, confirmed */
};

struct s_seg {
    uint64_t id;    /* file name number */
    size_t refs;    /* unconfirmed records inside */
    size_t records; /* records ever written inside */
    size_t size;    /* bytes */
};

struct ingest_spool {
    char *dir;              /* spool directory */
    int dirfd;              /* for fsync of new file entries */
    unsigned nlanes;        /* lanes */
    struct s_lane *lanes;   /* per lane */
    struct s_seg *segs;     /* segments, ascending id; last is active */
    size_t nsegs, capsegs;
    int fd;                 /* active segment, or -1 before first append */
    uint64_t written;       /* logical bytes appended since open */
    uint64_t durable;       /* logical bytes covered by a finished fsync */
    zactor_t *syncer[INGEST_SPOOL_SYNCERS]; /* the fsync threads */
    int sfd[INGEST_SPOOL_SYNCERS]; /* each one's own open file of the active
                                    * segment (a write error is reported to
                                    * every open file, so to each fsync) */
    bool busy[INGEST_SPOOL_SYNCERS]; /* an fsync is in flight there */
    unsigned nbusy;         /* of them, how many */
    unsigned inflight;      /* fsyncs in flight at most (1 or 2) */
    uint64_t requested;     /* highest position an fsync was asked to cover */
    size_t segment_max;     /* roll threshold in bytes */
    size_t records, bytes;  /* unconfirmed totals */
    uint64_t rseg;          /* segment open for reading back, 0: none */
    int rfd;                /* its descriptor, or -1 */
    unsigned char *rbuf;    /* a record read back */
    size_t rcap;            /* bytes allocated there */
    unsigned long long unreadable; /* records that failed to read back */
    size_t mem;             /* bytes of record copies held (s_rec.mem) */
    pthread_t prep;         /* s_prep_run, while prep_started */
    bool prep_started;      /* not joined yet */
    atomic_int prep_state;  /* PREP_*, set by the thread */
    bool prep_ok;           /* the thread's answer: PREP is there */
    bool prep_ready;        /* a whole PREP is there to take */
    uint64_t prepared;      /* segments taken from PREP since open */
};

static int s_append(ingest_spool_t *self, unsigned lane, uint64_t seq,
                    const void *data, size_t len, void *own);

/* A read-back buffer larger than this is freed after use, so one huge
 * batch does not pin its size for good. */
#define SPOOL_RBUF_KEEP (1u << 20)

static void
s_path(const ingest_spool_t *self, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/seg-%016" PRIu64 ".spool", self->dir, id);
}

static struct s_seg *
s_seg(ingest_spool_t *self, uint64_t id)
{
    for (size_t i = self->nsegs; i-- > 0;)
        if (self->segs[i].id == id)
            return &self->segs[i];
    return NULL;
}

static struct s_seg *
s_seg_add(ingest_spool_t *self, uint64_t id)
{
    if (self->nsegs == self->capsegs) {
        self->capsegs = self->capsegs ? self->capsegs * 2 : 8;
        self->segs = xrealloc(self->segs, self->capsegs * sizeof *self->segs);
    }
    struct s_seg *s = &self->segs[self->nsegs++];
    memset(s, 0, sizeof *s);
    s->id = id;
    return s;
}

/* Index a record until it is confirmed. */
static void
s_prep_path(const ingest_spool_t *self, const char *name, char *buf,
            size_t len)
{
    snprintf(buf, len, "%s/%s", self->dir, name);
}

/* The thread writing PREP: segment_max bytes of zeros, fdatasync'd, then
 * renamed from PREP_TMP. Reads only dir and segment_max. */
static void *
s_prep_run(void *arg)
{
    ingest_spool_t *self = arg;
    static const unsigned char zero[1u << 16];
    char tmp[1024], path[1024];
    size_t left = self->segment_max;
    bool ok = true;
    sigset_t all;
    int fd;

    sigfillset(&all); /* signals are the loop's */
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    s_prep_path(self, SPOOL_PREP_TMP, tmp, sizeof tmp);
    s_prep_path(self, SPOOL_PREP, path, sizeof path);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640)) == -1)
        ok = false;
    while (ok && left > 0) {
        size_t n = left < sizeof zero ? left : sizeof zero;
        ssize_t w = write(fd, zero, n);
        if (w <= 0)
            ok = false; /* ENOSPC, most likely: appends will do */
        else
            left -= (size_t)w;
    }
    if (ok && fdatasync(fd) == -1)
        ok = false;
    if (fd != -1)
        close(fd);
    if (ok && rename(tmp, path) == -1)
        ok = false;
    if (!ok)
        unlink(tmp);
    self->prep_ok = ok;
    atomic_store(&self->prep_state, PREP_DONE);
    return NULL;
}

/* Join a finished prep thread (or any, when wait). */
static void
s_prep_reap(ingest_spool_t *self, bool wait)
{
    if (!self->prep_started ||
        (!wait && atomic_load(&self->prep_state) != PREP_DONE))
        return;
    pthread_join(self->prep, NULL);
    self->prep_started = false;
    self->prep_ready = self->prep_ok;
    atomic_store(&self->prep_state, PREP_IDLE);
}

/* Start writing the next segment ahead, unless one is there or under way. */
static void
s_prep_start(ingest_spool_t *self)
{
    s_prep_reap(self, false);
    if (self->prep_started || self->prep_ready)
        return;
    atomic_store(&self->prep_state, PREP_RUNNING);
    self->prep_ok = false;
    if (pthread_create(&self->prep, NULL, s_prep_run, self) != 0) {
        atomic_store(&self->prep_state, PREP_IDLE);
        return; /* appends will do */
    }
    self->prep_started = true;
}

/* Put PREP in place as path; false when none was ready (create it). */
static bool
s_prep_take(ingest_spool_t *self, const char *path)
{
    char prep[1024];

    s_prep_reap(self, false);
    if (!self->prep_ready)
        return false;
    self->prep_ready = false;
    s_prep_path(self, SPOOL_PREP, prep, sizeof prep);
    if (rename(prep, path) == -1) {
        log_warn("spool: rename %s", prep);
        unlink(prep);
        return false;
    }
    self->prepared++;
    return true;
}

/* Is a whole PREP there from an earlier run? (PREP_TMP is not.) */
static void
s_prep_find(ingest_spool_t *self)
{
    char path[1024];
    struct stat st;

    s_prep_path(self, SPOOL_PREP_TMP, path, sizeof path);
    unlink(path);
    s_prep_path(self, SPOOL_PREP, path, sizeof path);
    if (stat(path, &st) == 0) {
        if ((size_t)st.st_size == self->segment_max)
            self->prep_ready = true;
        else
            unlink(path); /* written for another --segment */
    }
}

static bool
s_zeros(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

static void
s_push(ingest_spool_t *self, unsigned lane, uint64_t seq, uint64_t seg,
       uint64_t off, size_t len)
{
    struct s_lane *l = &self->lanes[lane];
    if (l->head + l->n == l->cap) {
        if (l->head > 0) {
            memmove(l->r, l->r + l->head, l->n * sizeof *l->r);
            l->head = 0;
        } else {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->r = xrealloc(l->r, l->cap * sizeof *l->r);
        }
    }
    struct s_rec *r = &l->r[l->head + l->n++];
    r->seq = seq;
    r->seg = seg;
    r->off = off;
    r->end = self->written;
    r->len = len;
    r->mem = NULL;
    l->cum += len;
    r->cum = l->cum;
    if (seq >= l->next_seq) {
        l->next_seq = seq + 1;
        l->last_seg = seg;
    }
    s_seg(self, seg)->refs++;
    self->records++;
    self->bytes += len;
}

/* Drop the in-memory copy of r, if any. */
static void
s_forget(ingest_spool_t *self, struct s_rec *r)
{
    if (r->mem) {
        free(r->mem);
        r->mem = NULL;
        self->mem -= r->len;
    }
}

static uint32_t
s_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static uint32_t
s_crc(uint32_t lane, uint64_t seq, const void *data, size_t len)
{
    uint32_t c = crc_32c(0, &lane, sizeof lane);
    c = crc_32c(c, &seq, sizeof seq);
    return crc_32c(c, data, len);
}

/* Load one segment's records; truncate at the first bad one. */
static int
s_recover(ingest_spool_t *self, uint64_t id)
{
    char path[1024];
    FILE *fp;
    unsigned char hdr[SPOOL_HDR];
    long off = 0;
    struct s_seg *seg = s_seg_add(self, id);
    unsigned char *buf = NULL;

    s_path(self, id, path, sizeof path);
    if ((fp = fopen(path, "r+")) == NULL) {
        log_warn("spool: open %s", path);
        return -1;
    }
    for (;;) {
        size_t got = fread(hdr, 1, SPOOL_HDR, fp);
        uint32_t magic, len, lane, crc;
        uint64_t seq;
        const char *why = NULL;
        if (got == 0 || s_zeros(hdr, got))
            break; /* the end, or where a segment written ahead has none */
        magic = s_le32(hdr);
        len = s_le32(hdr + 4);
        lane = s_le32(hdr + 8);
        crc = s_le32(hdr + 12);
        memcpy(&seq, hdr + 16, sizeof seq);
        if (got < SPOOL_HDR)
            why = "torn header";
        else if (magic != SPOOL_MAGIC || len > SPOOL_RECORD_MAX)
            why = "bad header";
        else if (lane >= self->nlanes)
            why = "lane beyond --lanes (was the lane count lowered?)";
        if (!why) {
            buf = xrealloc(buf, len ? len : 1);
            if (fread(buf, 1, len, fp) != len)
                why = "torn record";
            else if (s_crc(lane, seq, buf, len) != crc)
                why = "checksum mismatch";
        }
        if (why) {
            log_warnx("spool: %s at %s offset %ld: truncating the rest of "
                      "the segment (an unacknowledged write)", why, path, off);
            if (ftruncate(fileno(fp), off) == -1)
                log_warn("spool: truncate %s", path);
            break;
        }
        s_push(self, lane, seq, id, (uint64_t)off, len);
        seg->records++;
        off += SPOOL_HDR + (long)len;
    }
    seg->size = (size_t)off;
    free(buf);
    fclose(fp);
    return 0;
}

static int
s_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static void
s_close_active(ingest_spool_t *self)
{
    if (self->fd != -1)
        close(self->fd);
    self->fd = -1;
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++) {
        if (self->sfd[i] != -1)
            close(self->sfd[i]);
        self->sfd[i] = -1;
    }
}

static int
s_open_active(ingest_spool_t *self)
{
    char path[1024];
    s_path(self, self->segs[self->nsegs - 1].id, path, sizeof path);
    s_prep_take(self, path);
    /* No O_APPEND: records go at the segment's size (pwritev), inside a
     * segment written ahead or at its end. */
    self->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0640);
    if (self->fd == -1) {
        log_warn("spool: create %s", path);
        return -1;
    }
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        if ((self->sfd[i] = open(path, O_WRONLY | O_CLOEXEC)) == -1) {
            log_warn("spool: open %s", path);
            s_close_active(self);
            return -1;
        }
    /* The new file's directory entry must survive a power loss too. */
    if (self->dirfd != -1)
        fsync(self->dirfd);
    s_prep_start(self);
    return 0;
}

ingest_spool_t *
ingest_spool_open(const char *dir, unsigned lanes, size_t segment_max)
{
    ingest_spool_t *self = xcalloc(1, sizeof *self);
    DIR *d;
    struct dirent *e;
    uint64_t *ids = NULL;
    size_t nids = 0, capids = 0;

    self->dir = xstrdup(dir);
    self->nlanes = lanes;
    self->lanes = xcalloc(lanes, sizeof *self->lanes);
    for (unsigned i = 0; i < lanes; i++)
        self->lanes[i].next_seq = 1;
    self->fd = -1;
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        self->sfd[i] = -1;
    self->inflight = 1;
    self->dirfd = -1;
    self->rfd = -1;
    self->segment_max = segment_max;
    if (daemon_mkdirs(dir) == -1 || (d = opendir(dir)) == NULL) {
        log_warn("spool: cannot use %s", dir);
        ingest_spool_destroy(&self);
        return NULL;
    }
    while ((e = readdir(d))) {
        unsigned long long id;
        char tail[16];
        if (sscanf(e->d_name, "seg-%llu%15s", &id, tail) == 2 &&
            strcmp(tail, ".spool") == 0) {
            if (nids == capids) {
                capids = capids ? capids * 2 : 16;
                ids = xrealloc(ids, capids * sizeof *ids);
            }
            ids[nids++] = id;
        }
    }
    closedir(d);
    if (nids > 1) /* qsort(NULL, 0, ...) is undefined (UBSan) */
        qsort(ids, nids, sizeof *ids, s_cmp_u64);
    for (size_t i = 0; i < nids; i++)
        if (s_recover(self, ids[i]) == -1) {
            free(ids);
            ingest_spool_destroy(&self);
            return NULL;
        }
    /* The next appends go to a fresh segment. */
    s_seg_add(self, nids ? ids[nids - 1] + 1 : 1);
    free(ids);
    self->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    s_prep_find(self);
    /* Create the file now, not on the first write: the new directory
     * entry's fsync (and the journal commit it waits for) then happens
     * before any client waits on it. */
    if (s_open_active(self) == -1) {
        ingest_spool_destroy(&self);
        return NULL;
    }
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        self->syncer[i] = fsyncer_new();
    if (self->records)
        log_info("spool: recovered %zu unconfirmed batches (%zu bytes) from %s",
                 self->records, self->bytes, dir);
    return self;
}

void
ingest_spool_destroy(ingest_spool_t **self_p)
{
    ingest_spool_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->syncer[0])
        ingest_spool_sync(self);
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        zactor_destroy(&self->syncer[i]);
    s_close_active(self);
    s_prep_reap(self, true);
    if (self->dirfd != -1)
        close(self->dirfd);
    if (self->rfd != -1)
        close(self->rfd);
    free(self->rbuf);
    for (unsigned i = 0; i < self->nlanes; i++) {
        struct s_lane *l = &self->lanes[i];
        for (size_t k = 0; k < l->n; k++)
            s_forget(self, &l->r[l->head + k]);
        free(l->r);
    }
    free(self->lanes);
    free(self->segs);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

uint64_t
ingest_spool_next_seq(ingest_spool_t *self, unsigned lane)
{
    return self->lanes[lane].next_seq;
}

int
ingest_spool_append(ingest_spool_t *self, unsigned lane, uint64_t seq,
                    const void *data, size_t len)
{
    return s_append(self, lane, seq, data, len, NULL);
}

int
ingest_spool_append_take(ingest_spool_t *self, unsigned lane, uint64_t seq,
                         void *data, size_t len)
{
    return s_append(self, lane, seq, data, len, data);
}

/* Append; own (when not NULL) is data, malloc'd, which the spool then
 * keeps as the record's copy for its first send or frees. */
static int
s_append(ingest_spool_t *self, unsigned lane, uint64_t seq, const void *data,
         size_t len, void *own)
{
    struct s_seg *act = &self->segs[self->nsegs - 1];
    unsigned char hdr[SPOOL_HDR];
    uint32_t v[4] = {SPOOL_MAGIC, (uint32_t)len, lane, s_crc(lane, seq, data, len)};
    struct iovec iov[2];
    ssize_t n;

    if (len > SPOOL_RECORD_MAX || lane >= self->nlanes) {
        free(own);
        return -1;
    }
    if (act->size > 0 && act->size + SPOOL_HDR + len > self->segment_max) {
        if (ingest_spool_sync(self) == -1) {
            free(own);
            return -1;
        }
        s_close_active(self);
        act = s_seg_add(self, act->id + 1);
    }
    if (self->fd == -1 && s_open_active(self) == -1) {
        free(own);
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        hdr[i * 4] = (unsigned char)v[i];
        hdr[i * 4 + 1] = (unsigned char)(v[i] >> 8);
        hdr[i * 4 + 2] = (unsigned char)(v[i] >> 16);
        hdr[i * 4 + 3] = (unsigned char)(v[i] >> 24);
    }
    memcpy(hdr + 16, &seq, sizeof seq);
    iov[0].iov_base = hdr;
    iov[0].iov_len = SPOOL_HDR;
    iov[1].iov_base = (void *)data;
    iov[1].iov_len = len;
    n = pwritev(self->fd, iov, 2, (off_t)act->size);
    if (n != (ssize_t)(SPOOL_HDR + len)) {
        log_warn("spool: append to segment %" PRIu64 " failed", act->id);
        /* Leave no partial record behind. */
        if (ftruncate(self->fd, (off_t)act->size) == -1)
            log_warn("spool: truncate after a failed append");
        free(own);
        return -1;
    }
    self->written += (uint64_t)n;
    s_push(self, lane, seq, act->id, act->size, len);
    if (len > 0 && self->mem + len <= SPOOL_MEM_MAX) {
        struct s_lane *l = &self->lanes[lane];
        struct s_rec *r = &l->r[l->head + l->n - 1];
        if (own) {
            /* Its slack back (glibc shrinks in place, no copy). */
            r->mem = xrealloc(own, len);
            own = NULL;
        } else {
            r->mem = xmalloc(len);
            memcpy(r->mem, data, len);
        }
        self->mem += len;
    }
    free(own);
    act->size += (size_t)n;
    act->records++;
    return 0;
}

uint64_t
ingest_spool_written(const ingest_spool_t *self)
{
    return self->written;
}

uint64_t
ingest_spool_durable(const ingest_spool_t *self)
{
    return self->durable;
}

void
ingest_spool_pipeline(ingest_spool_t *self, unsigned n)
{
    self->inflight = n < 1 ? 1 : n > INGEST_SPOOL_SYNCERS ? INGEST_SPOOL_SYNCERS : n;
}

bool
ingest_spool_sync_start(ingest_spool_t *self)
{
    if (self->nbusy >= self->inflight || self->requested >= self->written ||
        self->syncer[0] == NULL)
        return false;
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        if (!self->busy[i]) {
            fsyncer_start(self->syncer[i], self->sfd[i], self->written);
            self->busy[i] = true;
            self->nbusy++;
            self->requested = self->written;
            return true;
        }
    return false;
}

bool
ingest_spool_sync_busy(const ingest_spool_t *self)
{
    return self->nbusy > 0;
}

zsock_t *
ingest_spool_sock(ingest_spool_t *self, unsigned i)
{
    return zactor_sock(self->syncer[i]);
}

/* The fsync thread whose socket is sock, or -1. */
static int
s_syncer_of(ingest_spool_t *self, zsock_t *sock)
{
    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        if (self->syncer[i] && zactor_sock(self->syncer[i]) == sock)
            return i;
    return -1;
}

bool
ingest_spool_sync_waits(ingest_spool_t *self, zsock_t *sock)
{
    int i = s_syncer_of(self, sock);
    return i >= 0 && self->busy[i];
}

static int
s_sync_done(ingest_spool_t *self, int i, uint64_t *pos)
{
    int err = fsyncer_done(self->syncer[i], pos);

    self->busy[i] = false;
    self->nbusy--;
    if (err != 0) {
        if (err == -1) {
            log_warnx("spool: the fsync thread did not answer");
        } else {
            errno = err;
            log_warn("spool: fdatasync");
        }
        /* What it was to cover is asked for again by the next commit. */
        self->requested = self->durable;
        return -1;
    }
    /* Answers may come out of order: an fsync that started later covers
     * everything written before it started, so the highest one counts. */
    if (*pos > self->durable)
        self->durable = *pos;
    return 0;
}

int
ingest_spool_sync_done(ingest_spool_t *self, zsock_t *sock, uint64_t *pos)
{
    int i = s_syncer_of(self, sock);

    if (i < 0 || !self->busy[i])
        return -1;
    return s_sync_done(self, i, pos);
}

int
ingest_spool_sync(ingest_spool_t *self)
{
    uint64_t pos;
    int rc = 0;

    for (int i = 0; i < INGEST_SPOOL_SYNCERS; i++)
        if (self->busy[i] && s_sync_done(self, i, &pos) == -1)
            rc = -1;
    if (rc == -1)
        return -1;
    if (self->durable == self->written)
        return 0;
    if (fdatasync(self->fd) == -1) {
        log_warn("spool: fdatasync");
        return -1;
    }
    self->durable = self->requested = self->written;
    return 0;
}

/* Does segment id hold the newest record of a lane? Deleting it would
 * take that lane's seq back to 1 after a restart, and aggd would skip
 * the lane's next batches as resends. */
static bool
s_holds_last_seq(const ingest_spool_t *self, uint64_t id)
{
    for (unsigned i = 0; i < self->nlanes; i++)
        if (self->lanes[i].last_seg == id)
            return true;
    return false;
}

static void
s_gc(ingest_spool_t *self)
{
    size_t w = 0;

    for (size_t i = 0; i < self->nsegs; i++) {
        struct s_seg *s = &self->segs[i];
        if (i + 1 < self->nsegs && s->refs == 0 && !s_holds_last_seq(self, s->id)) {
            char path[1024];
            if (self->rseg == s->id) {
                close(self->rfd);
                self->rfd = -1;
                self->rseg = 0;
            }
            s_path(self, s->id, path, sizeof path);
            if (unlink(path) == -1 && errno != ENOENT)
                log_warn("spool: unlink %s", path);
            continue;
        }
        self->segs[w++] = *s;
    }
    self->nsegs = w;
}

void
ingest_spool_confirm(ingest_spool_t *self, unsigned lane, uint64_t seq)
{
    struct s_lane *l;

    if (lane >= self->nlanes)
        return;
    l = &self->lanes[lane];
    if (seq <= l->confirmed)
        return;
    l->confirmed = seq;
    while (l->n > 0 && l->r[l->head].seq <= seq) {
        struct s_rec *r = &l->r[l->head];
        struct s_seg *s = s_seg(self, r->seg);
        s_forget(self, r);
        if (s)
            s->refs--;
        self->records--;
        self->bytes -= r->len;
        l->cum_done = r->cum;
        l->head++;
        l->n--;
    }
    if (l->n == 0)
        l->head = 0;
    s_gc(self);
}

/* Read record r of lane back from its segment into rbuf, checking that
 * it is the record the index says. Returns its payload, or NULL (logged)
 * when it cannot be read or fails its checksum. */
static const void *
s_read(ingest_spool_t *self, unsigned lane, const struct s_rec *r)
{
    char path[1024];
    size_t need = SPOOL_HDR + r->len;
    const unsigned char *h;
    const char *why = NULL;
    uint64_t seq;
    ssize_t got;

    if (self->rseg != r->seg) {
        if (self->rfd != -1)
            close(self->rfd);
        s_path(self, r->seg, path, sizeof path);
        self->rseg = r->seg;
        if ((self->rfd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
            self->rseg = 0;
            log_warn("spool: cannot read back %s", path);
            return NULL;
        }
    }
    if (self->rcap < need) {
        self->rcap = need;
        free(self->rbuf);
        self->rbuf = xmalloc(need);
    }
    got = pread(self->rfd, self->rbuf, need, (off_t)r->off);
    h = self->rbuf;
    if (got != (ssize_t)need)
        why = got == -1 ? strerror(errno) : "short read";
    else if (s_le32(h) != SPOOL_MAGIC || s_le32(h + 4) != r->len ||
             s_le32(h + 8) != lane ||
             (memcpy(&seq, h + 16, sizeof seq), seq != r->seq))
        why = "not the record the index names";
    else if (s_crc(lane, r->seq, h + SPOOL_HDR, r->len) != s_le32(h + 12))
        why = "checksum mismatch";
    if (why) {
        self->unreadable++;
        log_err("spool: lane %u seq %" PRIu64 " in segment %" PRIu64
                 " offset %" PRIu64 " cannot be read back: %s; that batch "
                 "is lost (%llu so far)", lane, r->seq, r->seg, r->off, why,
                 self->unreadable);
        return NULL;
    }
    return h + SPOOL_HDR;
}

void
ingest_spool_foreach(ingest_spool_t *self, unsigned lane, uint64_t after,
                     uint64_t max_n, uint64_t max_bytes, ingest_spool_fn *fn,
                     void *arg)
{
    struct s_lane *l = &self->lanes[lane];
    size_t lo = 0, hi = l->n;

    while (lo < hi) { /* the first record above after: seqs ascend */
        size_t mid = lo + (hi - lo) / 2;
        if (l->r[l->head + mid].seq <= after)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = lo; k < l->n; k++) {
        struct s_rec *r = &l->r[l->head + k];
        if (r->end > self->durable)
            break; /* not durable yet: its seq could come back after a crash */
        /* The window: counted from the first unconfirmed record, which
         * always fits whatever its size. */
        if (k >= max_n || (k > 0 && r->cum - l->cum_done > max_bytes))
            break;
        if (!fn(lane, r->seq, r->mem ? r->mem : s_read(self, lane, r), r->len,
                arg))
            break;
        s_forget(self, r); /* a resend reads it back */
    }
    if (self->rcap > SPOOL_RBUF_KEEP) {
        free(self->rbuf);
        self->rbuf = NULL;
        self->rcap = 0;
    }
}

uint64_t
ingest_spool_confirmed(const ingest_spool_t *self, unsigned lane)
{
    return self->lanes[lane].confirmed;
}

size_t
ingest_spool_records(const ingest_spool_t *self)
{
    return self->records;
}

size_t
ingest_spool_bytes(const ingest_spool_t *self)
{
    return self->bytes;
}

unsigned long long
ingest_spool_unreadable(const ingest_spool_t *self)
{
    return self->unreadable;
}

size_t
ingest_spool_segments(const ingest_spool_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->nsegs; i++)
        n += self->segs[i].size > 0;
    return n;
}

static bool
s_count(unsigned lane, uint64_t seq, const void *data, size_t len, void *arg)
{
    uint64_t *last = arg;
    assert(seq > *last); /* in order */
    assert(len == 5 && memcmp(data, "batch", 5) == 0);
    *last = seq;
    return true;
}

/* Append the 5-byte record "batch". */
static int
s_append_batch(ingest_spool_t *sp, unsigned lane, uint64_t seq)
{
    return ingest_spool_append(sp, lane, seq, "batch", 5);
}

/* Records handed out: the last seq, and how many came without data. */
struct s_seen {
    uint64_t last;
    int lost;
};

static bool
s_see(unsigned lane, uint64_t seq, const void *data, size_t len, void *arg)
{
    struct s_seen *s = arg;
    s->last = seq;
    if (data == NULL)
        s->lost++;
    else
        assert(len == 5 && memcmp(data, "batch", 5) == 0);
    return true;
}

void
ingest_spool_test(bool verbose)
{
    char dir[] = "/tmp/spool_test.XXXXXX", path[1200];
    ingest_spool_t *sp;
    uint64_t last = 0;

    assert(mkdtemp(dir));
    sp = ingest_spool_open(dir, 2, 100);
    assert(sp && ingest_spool_next_seq(sp, 0) == 1);
    for (uint64_t s = 1; s <= 10; s++) {
        assert(s_append_batch(sp, 0, s) == 0);
        assert(s_append_batch(sp, 1, s) == 0);
    }
    assert(ingest_spool_sync(sp) == 0);
    assert(ingest_spool_records(sp) == 20 && ingest_spool_segments(sp) > 1);
    ingest_spool_confirm(sp, 0, 4);
    assert(ingest_spool_records(sp) == 16);
    ingest_spool_destroy(&sp);

    /* Reopen: the unconfirmed records come back, seq goes on. */
    sp = ingest_spool_open(dir, 2, 100);
    assert(sp && ingest_spool_next_seq(sp, 0) == 11);
    assert(ingest_spool_next_seq(sp, 1) == 11);
    ingest_spool_foreach(sp, 1, 0, UINT64_MAX, UINT64_MAX, s_count, &last);
    assert(last == 10);
    /* Nothing but the index is in memory: each batch above came back from
     * its segment file. The window bounds what goes out by count and by
     * bytes; the first unconfirmed record always fits. */
    struct s_seen seen = {0, 0};
    ingest_spool_foreach(sp, 1, 0, 3, UINT64_MAX, s_see, &seen);
    assert(seen.last == 3 && seen.lost == 0);
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 2, 3, UINT64_MAX, s_see, &seen);
    assert(seen.last == 3);
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 0, UINT64_MAX, 12, s_see, &seen);
    assert(seen.last == 2);
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 0, UINT64_MAX, 1, s_see, &seen);
    assert(seen.last == 1);
    ingest_spool_confirm(sp, 1, 8); /* the window moves with confirmations */
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 8, 1, UINT64_MAX, s_see, &seen);
    assert(seen.last == 9);
    /* Everything confirmed: old segments go, the newest one with records
     * stays so the seq survives another restart. */
    ingest_spool_confirm(sp, 0, 10);
    ingest_spool_confirm(sp, 1, 10);
    assert(ingest_spool_records(sp) == 0 && ingest_spool_segments(sp) == 1);
    /* The group commit off the loop: a record is handed on only once the
     * fsync thread's answer covers it. */
    size_t segs_before = sp->nsegs;
    assert(s_append_batch(sp, 1, 11) == 0);
    assert(sp->nsegs == segs_before); /* no roll, so no sync */
    uint64_t end = ingest_spool_written(sp), pos = 0;
    assert(ingest_spool_durable(sp) < end);
    last = 0;
    ingest_spool_foreach(sp, 1, 0, UINT64_MAX, UINT64_MAX, s_count, &last);
    assert(last == 0);
    assert(ingest_spool_sync_start(sp) && !ingest_spool_sync_start(sp));
    assert(ingest_spool_sync_busy(sp));
    assert(ingest_spool_sync_done(sp, ingest_spool_sock(sp, 0), &pos) == 0 && pos == end);
    assert(!ingest_spool_sync_busy(sp) && ingest_spool_durable(sp) == end);
    assert(!ingest_spool_sync_start(sp)); /* nothing new */
    ingest_spool_foreach(sp, 1, 0, UINT64_MAX, UINT64_MAX, s_count, &last);
    assert(last == 11);
    ingest_spool_confirm(sp, 1, 11);
    /* A buffer handed over is the record's copy for its first send (the
     * very bytes, not a copy of them) and the same on disk; one refused
     * is freed (ASan reports a leak otherwise). */
    char *own = xstrdup("batch");
    assert(ingest_spool_append_take(sp, 1, 12, own, 5) == 0);
    struct s_rec *kept = &sp->lanes[1].r[sp->lanes[1].head + sp->lanes[1].n - 1];
    assert(kept->seq == 12 && kept->mem != NULL && sp->mem == 5);
    assert(ingest_spool_append_take(sp, 7, 13, xstrdup("batch"), 5) == -1);
    assert(ingest_spool_sync(sp) == 0);
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 11, UINT64_MAX, UINT64_MAX, s_see, &seen);
    assert(seen.last == 12 && seen.lost == 0 && sp->mem == 0);
    ingest_spool_destroy(&sp);
    sp = ingest_spool_open(dir, 2, 100);
    seen.last = 0;
    ingest_spool_foreach(sp, 1, 11, UINT64_MAX, UINT64_MAX, s_see, &seen);
    assert(seen.last == 12 && seen.lost == 0); /* read back from disk */
    ingest_spool_confirm(sp, 1, 12);
    {
        char dir2[1200];
        snprintf(dir2, sizeof dir2, "%s/pipe", dir);
        ingest_spool_t *sp2 = ingest_spool_open(dir2, 2, 1 << 20);
        assert(sp2);
        /* Two fsyncs in flight: the second covers what came during the
         * first, the third waits; answers taken out of order, the later one
         * counts and the earlier one does not take durable back. */
        ingest_spool_pipeline(sp2, 2);
        assert(s_append_batch(sp2, 1, 1) == 0);
        uint64_t end1 = ingest_spool_written(sp2);
        assert(ingest_spool_sync_start(sp2));
        assert(!ingest_spool_sync_start(sp2)); /* nothing new */
        assert(s_append_batch(sp2, 1, 2) == 0);
        uint64_t end2 = ingest_spool_written(sp2);
        assert(ingest_spool_sync_start(sp2));
        assert(s_append_batch(sp2, 1, 3) == 0);
        assert(!ingest_spool_sync_start(sp2)); /* two in flight */
        assert(ingest_spool_sync_waits(sp2, ingest_spool_sock(sp2, 1)));
        assert(ingest_spool_sync_done(sp2, ingest_spool_sock(sp2, 1), &pos) == 0);
        assert(pos == end2 && ingest_spool_durable(sp2) == end2);
        assert(!ingest_spool_sync_waits(sp2, ingest_spool_sock(sp2, 1)));
        assert(ingest_spool_sync_done(sp2, ingest_spool_sock(sp2, 1), &pos) == -1);
        assert(ingest_spool_sync_start(sp2)); /* for seq 3, on the free thread */
        assert(ingest_spool_sync_done(sp2, ingest_spool_sock(sp2, 0), &pos) == 0);
        assert(pos == end1 && ingest_spool_durable(sp2) == end2);
        last = 0;
        ingest_spool_foreach(sp2, 1, 0, UINT64_MAX, UINT64_MAX, s_count, &last);
        assert(last == 2); /* 3 is not durable yet */
        assert(ingest_spool_sync(sp2) == 0); /* waits for the one in flight */
        assert(!ingest_spool_sync_busy(sp2));
        ingest_spool_foreach(sp2, 1, 2, UINT64_MAX, UINT64_MAX, s_count, &last);
        assert(last == 3);
        ingest_spool_destroy(&sp2);
        zdir_t *zd = zdir_new(dir2, NULL);
        zdir_remove(zd, true);
        zdir_destroy(&zd);
    }
    ingest_spool_destroy(&sp);
    sp = ingest_spool_open(dir, 2, 100);
    assert(ingest_spool_next_seq(sp, 0) == 11);
    /* A torn tail is cut away and never resent. */
    assert(s_append_batch(sp, 0, 11) == 0);
    assert(s_append_batch(sp, 0, 12) == 0);
    ingest_spool_sync(sp);
    size_t nsegs = sp->nsegs, tail = sp->segs[nsegs - 1].size;
    s_path(sp, sp->segs[nsegs - 1].id, path, sizeof path);
    ingest_spool_destroy(&sp);
    struct stat st;
    {
        /* The last record's last bytes never reached the disk: zeros in
         * a segment written ahead, nothing at all in one appended to. */
        int fd = open(path, O_WRONLY);
        assert(fd != -1 && stat(path, &st) == 0);
        if ((size_t)st.st_size > tail)
            assert(pwrite(fd, "\0\0\0", 3, (off_t)tail - 3) == 3);
        else
            assert(ftruncate(fd, (off_t)tail - 3) == 0);
        close(fd);
    }
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (!verbose)
        dup2(devnull, 2);
    sp = ingest_spool_open(dir, 2, 100);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert(sp && ingest_spool_next_seq(sp, 0) == 12);
    assert(stat(path, &st) == 0 && st.st_size == SPOOL_HDR + 5);
    /* A record is first handed out from its copy in memory, the bytes
     * written; then the copy goes. A record damaged on disk after it was
     * written is caught when it is read back for a resend: handed out
     * without data, logged and counted, never sent as it is. */
    assert(s_append_batch(sp, 0, 12) == 0);
    assert(ingest_spool_sync(sp) == 0);
    assert(sp->mem == 5);
    {
        /* A fresh segment after the reopen: the record is its first. */
        s_path(sp, sp->segs[sp->nsegs - 1].id, path, sizeof path);
        int fd = open(path, O_WRONLY);
        assert(fd != -1 && pwrite(fd, "X", 1, SPOOL_HDR + 2) == 1);
        close(fd);
    }
    struct s_seen seen0 = {0, 0};
    ingest_spool_foreach(sp, 0, 10, UINT64_MAX, UINT64_MAX, s_see, &seen0);
    assert(seen0.last == 12 && seen0.lost == 0 && sp->mem == 0);
    seen0.last = 0;
    saved = dup(2);
    devnull = open("/dev/null", O_WRONLY);
    if (!verbose)
        dup2(devnull, 2);
    ingest_spool_foreach(sp, 0, 10, UINT64_MAX, UINT64_MAX, s_see, &seen0);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert(seen0.last == 12 && seen0.lost == 1);
    assert(ingest_spool_unreadable(sp) == 1);
    ingest_spool_destroy(&sp);

    /* Segments written ahead: once the thread has written one (polled,
     * 10 s at most), the next roll takes it, at the full size, and the
     * records go inside it; a reopen reads them back up to the zeros,
     * cutting nothing, and takes the next one written ahead from disk. */
    sp = ingest_spool_open(dir, 2, 100);
    for (int i = 0; i < 1000 && !sp->prep_ready; i++) {
        s_prep_reap(sp, false);
        usleep(10000);
    }
    assert(sp->prep_ready);
    uint64_t taken = sp->prepared;
    for (uint64_t q = 13; q < 17; q++)
        assert(s_append_batch(sp, 0, q) == 0); /* 4 x 29 bytes: a roll */
    assert(ingest_spool_sync(sp) == 0 && sp->prepared == taken + 1);
    tail = sp->segs[sp->nsegs - 1].size;
    assert(tail > 0 && tail < 100);
    s_path(sp, sp->segs[sp->nsegs - 1].id, path, sizeof path);
    assert(stat(path, &st) == 0 && st.st_size == 100);
    size_t before = ingest_spool_records(sp);
    ingest_spool_destroy(&sp);
    sp = ingest_spool_open(dir, 2, 100);
    assert(sp && ingest_spool_records(sp) == before);
    assert(ingest_spool_next_seq(sp, 0) == 17);
    assert(stat(path, &st) == 0 && st.st_size == 100);
    seen0.last = 0;
    seen0.lost = 0;
    ingest_spool_foreach(sp, 0, 12, UINT64_MAX, UINT64_MAX, s_see, &seen0);
    assert(seen0.last == 16 && seen0.lost == 0);
    ingest_spool_destroy(&sp);
    zdir_t *zd = zdir_new(dir, NULL); /* the segments left, then dir */
    zdir_remove(zd, true);
    zdir_destroy(&zd);
    TEST_OK("ingest_spool");
}
