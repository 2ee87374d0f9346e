/*
 * agg_wal: write-ahead log with group commit off the loop thread (see
 * agg_wal.h).
 *
 * The loop thread owns the files and writes records with writev(2). The
 * fsync thread (common/fsyncer) touches nothing but the descriptor, which
 * the loop keeps open until the answer is in (rotate and destroy wait for
 * it).
 */
#include "aggd/agg_wal.h"
#include "common/crc.h"
#include "common/fsyncer.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define S_MAGIC "SPW1"
#define S_HDR 12
#define S_NAME_MAX 4096

enum { S_OLD, S_DIR, S_CUR }; /* what one fsync of a request covers */
#define S_OLD_MAX 4 /* segments waiting for their fsync, at most */

struct agg_wal {
    char *dir;           /* directory of the segments */
    int fd;              /* segment being written */
    uint64_t seg;        /* its number */
    uint64_t seg_size;   /* its size in bytes */
    uint64_t written;    /* logical bytes appended since open */
    uint64_t durable;    /* logical bytes covered by a finished fsync */
    uint64_t disk;       /* bytes of all segments on disk */
    uint64_t records;    /* records appended since open */
    bool busy;           /* an fsync is in flight */
    struct { int fd; uint64_t end; } old[S_OLD_MAX]; /* segments rotated
                            away before an fsync covered them
                            (agg_wal_rotate_nowait), oldest first, with the
                            logical position where each ends */
    int nold;            /* their number */
    uint64_t rotations;  /* agg_wal_rotate_nowait calls */
    uint64_t dir_synced; /* rotations whose new name is durable */
    int dfd;             /* the directory (fsync'd after a rotation) */
    struct { int kind, fd; uint64_t pos; } step[S_OLD_MAX + 2]; /* the request
                            in flight: fsyncs run one after the other
                            (S_OLD..., S_DIR, S_CUR), answered to the
                            caller as one */
    int nstep, istep;    /* its steps, and the one in flight */
    zactor_t *syncer;    /* the fsync thread */
};

static void
s_path(const agg_wal_t *self, uint64_t seg, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%016" PRIx64 ".wal", self->dir, seg);
}

static int
s_u64_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Segment numbers in the directory, ascending; caller frees. */
static size_t
s_list(const char *dir, uint64_t **out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0, cap = 0;
    uint64_t *v = NULL;

    while (d && (e = readdir(d)) != NULL) {
        char *end;
        if (strlen(e->d_name) != 20 || strcmp(e->d_name + 16, ".wal") != 0)
            continue;
        uint64_t seg = strtoull(e->d_name, &end, 16);
        if (end != e->d_name + 16)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof *v);
        }
        v[n++] = seg;
    }
    if (d)
        closedir(d);
    if (n > 1)
        qsort(v, n, sizeof *v, s_u64_cmp);
    *out = v;
    return n;
}

static void
s_le32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t
s_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Replay one segment. Returns the length of its intact prefix; *bad is
 * set when a record was torn or corrupt. */
static uint64_t
s_replay_seg(const char *path, agg_wal_replay_fn *fn, void *arg, bool *bad,
             uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint64_t off = 0;
    const unsigned char *m;

    *bad = false;
    *size = 0;
    if (fd == -1 || fstat(fd, &st) == -1) {
        log_warn("agg_wal: cannot read %s", path);
        if (fd != -1)
            close(fd);
        *bad = true;
        return 0;
    }
    *size = (uint64_t)st.st_size;
    if (st.st_size == 0) {
        close(fd);
        return 0;
    }
    m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        log_warn("agg_wal: cannot map %s", path);
        *bad = true;
        return 0;
    }
    while (off < *size) {
        if (*size - off < S_HDR || memcmp(m + off, S_MAGIC, 4) != 0) {
            *bad = true;
            break;
        }
        uint32_t len = s_rd32(m + off + 4), crc = s_rd32(m + off + 8);
        if (len > AGG_WAL_RECORD_MAX || *size - off - S_HDR < len ||
            crc_32c(crc_32c(0, m + off + 4, 4), m + off + S_HDR, len) != crc) {
            *bad = true;
            break;
        }
        fn(m + off + S_HDR, len, arg);
        off += S_HDR + len;
    }
    munmap((void *)m, (size_t)*size);
    return off;
}

static int
s_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc;

    if (fd == -1)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int
s_open_seg(agg_wal_t *self, uint64_t seg, bool dirsync)
{
    char path[S_NAME_MAX];

    s_path(self, seg, path, sizeof path);
    self->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                    0644);
    if (self->fd == -1) {
        log_warn("agg_wal: cannot create %s", path);
        return -1;
    }
    if (dirsync && s_fsync_dir(self->dir) == -1) {
        log_warn("agg_wal: cannot fsync %s", self->dir);
        return -1;
    }
    self->seg = seg;
    self->seg_size = 0;
    return 0;
}

static int
s_replay(agg_wal_t *self, uint64_t from_seg, uint64_t keep_seg,
         agg_wal_replay_fn *fn, void *arg, uint64_t *last)
{
    uint64_t *segs;
    size_t n = s_list(self->dir, &segs);
    bool cut = false;
    char path[S_NAME_MAX];
    uint64_t records_end, size, nbad = 0;

    *last = from_seg;
    for (size_t i = 0; i < n; i++) {
        bool bad;
        s_path(self, segs[i], path, sizeof path);
        if (segs[i] < from_seg && segs[i] >= keep_seg && !cut) {
            struct stat st;
            /* Covered by a checkpoint, still wanted by a reader. */
            if (stat(path, &st) == 0)
                self->disk += (uint64_t)st.st_size;
            continue;
        }
        if (segs[i] < from_seg || cut) {
            /* Covered by a checkpoint, or after a corrupt record. */
            if (cut)
                log_err("agg_wal: dropping %s after a corrupt record", path);
            unlink(path);
            continue;
        }
        records_end = s_replay_seg(path, fn, arg, &bad, &size);
        *last = segs[i] + 1;
        if (bad) {
            nbad = size - records_end;
            log_warnx("agg_wal: %s: torn or corrupt tail of %" PRIu64
                      " bytes at offset %" PRIu64 " truncated, not applied",
                      path, nbad, records_end);
            if (truncate(path, (off_t)records_end) == -1) {
                log_warn("agg_wal: cannot truncate %s", path);
                free(segs);
                return -1;
            }
            size = records_end;
            cut = true;
        }
        self->disk += size;
    }
    free(segs);
    return 0;
}

agg_wal_t *
agg_wal_open(const char *dir, uint64_t from_seg, agg_wal_replay_fn *fn,
             void *arg)
{
    return agg_wal_open_keep(dir, from_seg, from_seg, fn, arg);
}

agg_wal_t *
agg_wal_open_keep(const char *dir, uint64_t from_seg, uint64_t keep_seg,
                  agg_wal_replay_fn *fn, void *arg)
{
    agg_wal_t *self = xcalloc(1, sizeof *self);
    uint64_t next;

    self->fd = -1;
    self->dfd = -1;
    self->dir = xstrdup(dir);
    if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
        log_warn("agg_wal: cannot create %s", dir);
        goto fail;
    }
    if (s_replay(self, from_seg, keep_seg, fn, arg, &next) == -1)
        goto fail;
    if (s_open_seg(self, next, true) == -1)
        goto fail;
    if ((self->dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
        log_warn("agg_wal: cannot open %s", dir);
        goto fail;
    }
    self->syncer = fsyncer_new();
    return self;
fail:
    agg_wal_destroy(&self);
    return NULL;
}

/* Wait for the answer of an fsync in flight (shutdown, rotation). */
static int
s_wait(agg_wal_t *self)
{
    return self->busy ? agg_wal_sync_done(self) : 0;
}

void
agg_wal_destroy(agg_wal_t **self_p)
{
    agg_wal_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->syncer) {
        while (s_wait(self) == 1)
            ;
        zactor_destroy(&self->syncer);
    }
    if (self->fd != -1)
        close(self->fd);
    for (int i = 0; i < self->nold; i++)
        close(self->old[i].fd);
    if (self->dfd != -1)
        close(self->dfd);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

int
agg_wal_append(agg_wal_t *self, const void *payload, size_t len)
{
    unsigned char hdr[S_HDR];
    struct iovec iov[2];
    ssize_t w;

    assert(len <= AGG_WAL_RECORD_MAX);
    memcpy(hdr, S_MAGIC, 4);
    s_le32(hdr + 4, (uint32_t)len);
    s_le32(hdr + 8, crc_32c(crc_32c(0, hdr + 4, 4), payload, len));
    iov[0].iov_base = hdr;
    iov[0].iov_len = S_HDR;
    iov[1].iov_base = (void *)(uintptr_t)payload;
    iov[1].iov_len = len;
    /* A regular file takes a writev whole unless the disk is full or the
     * process is interrupted; either way the record is cut back. */
    w = writev(self->fd, iov, 2);
    if (w != (ssize_t)(S_HDR + len)) {
        log_warn("agg_wal: append to segment %" PRIu64, self->seg);
        if (w > 0 && ftruncate(self->fd, (off_t)self->seg_size) == -1)
            log_warn("agg_wal: cannot cut back segment %" PRIu64, self->seg);
        return -1;
    }
    self->seg_size += (uint64_t)w;
    self->written += (uint64_t)w;
    self->disk += (uint64_t)w;
    self->records++;
    return 0;
}

uint64_t
agg_wal_written(const agg_wal_t *self)
{
    return self->written;
}

uint64_t
agg_wal_durable(const agg_wal_t *self)
{
    return self->durable;
}

uint64_t
agg_wal_segment(const agg_wal_t *self)
{
    return self->seg;
}

uint64_t
agg_wal_disk_bytes(const agg_wal_t *self)
{
    return self->disk;
}

uint64_t
agg_wal_records(const agg_wal_t *self)
{
    return self->records;
}

/* The oldest segment rotated away is durable up to its end: close it. */
static void
s_old_done(agg_wal_t *self)
{
    close(self->old[0].fd);
    if (self->old[0].end > self->durable)
        self->durable = self->old[0].end;
    memmove(self->old, self->old + 1, (size_t)--self->nold * sizeof self->old[0]);
}

static void
s_step_send(agg_wal_t *self)
{
    int kind = self->step[self->istep].kind;
    int fd = self->step[self->istep].fd;
    uint64_t pos = self->step[self->istep].pos;

    if (kind == S_DIR)
        fsyncer_start_full(self->syncer, fd, pos);
    else
        fsyncer_start(self->syncer, fd, pos);
    self->busy = true;
}

static void
s_step_add(agg_wal_t *self, int kind, int fd, uint64_t pos)
{
    self->step[self->nstep].kind = kind;
    self->step[self->nstep].fd = fd;
    self->step[self->nstep++].pos = pos;
}

bool
agg_wal_sync_start(agg_wal_t *self)
{
    uint64_t from = self->durable;

    if (self->busy || self->durable == self->written)
        return false;
    /* After a rotation that did not wait (agg_wal_rotate_nowait): the
     * segment before up to its end, then the new segment's name, then
     * the new segment; no position after the rotation counts as durable
     * before all three are. */
    self->nstep = self->istep = 0;
    for (int i = 0; i < self->nold; i++)
        s_step_add(self, S_OLD, self->old[i].fd, from = self->old[i].end);
    /* (pos of a S_DIR step: the rotations it covers) */
    if (self->dir_synced < self->rotations && self->written > from)
        s_step_add(self, S_DIR, self->dfd, self->rotations);
    if (self->written > from)
        s_step_add(self, S_CUR, self->fd, self->written);
    s_step_send(self);
    return true;
}

bool
agg_wal_sync_busy(const agg_wal_t *self)
{
    return self->busy;
}

zsock_t *
agg_wal_sock(agg_wal_t *self)
{
    return zactor_sock(self->syncer);
}

int
agg_wal_sync_done(agg_wal_t *self)
{
    uint64_t pos = 0;
    int err = fsyncer_done(self->syncer, &pos), kind, fd;

    if (err == -1) {
        log_warnx("agg_wal: fsync thread did not answer");
        return -1;
    }
    self->busy = false;
    kind = self->step[self->istep].kind;
    fd = self->step[self->istep].fd;
    if (err != 0) {
        errno = err;
        log_warn("agg_wal: %s of segment %" PRIu64,
                 kind == S_DIR ? "fsync of the directory" : "fdatasync",
                 kind == S_OLD ? self->seg - (uint64_t)self->nold : self->seg);
        self->nstep = self->istep = 0;
        return -1;
    }
    if (kind == S_OLD) {
        assert(self->nold > 0 && fd == self->old[0].fd);
        s_old_done(self);
    } else if (kind == S_DIR) {
        if (pos > self->dir_synced)
            self->dir_synced = pos;
    } else {
        /* A request sent before a rotation covered the segment that is
         * now the oldest one waiting: it may have reached its end. */
        if (self->nold > 0 && fd == self->old[0].fd && pos == self->old[0].end)
            s_old_done(self);
        if (pos > self->durable)
            self->durable = pos;
    }
    if (++self->istep < self->nstep) {
        s_step_send(self);
        return 1;
    }
    self->nstep = self->istep = 0;
    return 0;
}

int
agg_wal_sync(agg_wal_t *self)
{
    int rc;

    while ((rc = s_wait(self)) == 1)
        ;
    if (rc == -1)
        return -1;
    while (self->nold > 0) {
        if (fdatasync(self->old[0].fd) == -1) {
            log_warn("agg_wal: fdatasync of segment %" PRIu64,
                     self->seg - (uint64_t)self->nold);
            return -1;
        }
        s_old_done(self);
    }
    if (self->dir_synced < self->rotations) {
        if (fsync(self->dfd) == -1) {
            log_warn("agg_wal: cannot fsync %s", self->dir);
            return -1;
        }
        self->dir_synced = self->rotations;
    }
    if (self->durable == self->written)
        return 0;
    if (fdatasync(self->fd) == -1) {
        log_warn("agg_wal: fdatasync of segment %" PRIu64, self->seg);
        return -1;
    }
    self->durable = self->written;
    return 0;
}

uint64_t
agg_wal_rotate(agg_wal_t *self)
{
    int old = self->fd;

    if (agg_wal_sync(self) == -1)
        return UINT64_MAX;
    if (s_open_seg(self, self->seg + 1, true) == -1) {
        self->fd = old;
        self->seg_size = 0;
        return UINT64_MAX;
    }
    close(old);
    return self->seg;
}

bool
agg_wal_rotate_ready(const agg_wal_t *self)
{
    return self->nold < S_OLD_MAX;
}

uint64_t
agg_wal_rotate_nowait(agg_wal_t *self)
{
    int old = self->fd;
    uint64_t old_seg_size = self->seg_size;

    /* S_OLD_MAX segments waiting for their fsync at most (the disk is
     * that far behind): then the rotation waits. */
    if (self->nold == S_OLD_MAX)
        return agg_wal_rotate(self);
    if (s_open_seg(self, self->seg + 1, false) == -1) {
        if (self->fd != -1 && self->fd != old)
            close(self->fd);
        self->fd = old;
        self->seg_size = old_seg_size;
        return UINT64_MAX;
    }
    self->rotations++;
    if (self->durable == self->written) {
        close(old);
    } else {
        /* The fsync thread may be using it: kept open, and fsync'd up to
         * its end before any position after it counts as durable. */
        self->old[self->nold].fd = old;
        self->old[self->nold++].end = self->written;
    }
    return self->seg;
}

int
agg_wal_drop_before(agg_wal_t *self, uint64_t seg)
{
    uint64_t *segs;
    size_t n = s_list(self->dir, &segs);
    char path[S_NAME_MAX];
    struct stat st;
    int rc = 0;

    for (size_t i = 0; i < n && segs[i] < seg; i++) {
        s_path(self, segs[i], path, sizeof path);
        if (stat(path, &st) == 0 && self->disk >= (uint64_t)st.st_size)
            self->disk -= (uint64_t)st.st_size;
        if (unlink(path) == -1) {
            log_warn("agg_wal: cannot delete %s", path);
            rc = -1;
        }
    }
    free(segs);
    return rc;
}

struct agg_wal_reader {
    char *dir;           /* directory of the segments */
    uint64_t seg, off;   /* next record */
    int fd;              /* segment seg, or -1 */
    unsigned char *buf;  /* record buffer */
    size_t cap;
};

agg_wal_reader_t *
agg_wal_reader_new(const char *dir, uint64_t seg, uint64_t off)
{
    agg_wal_reader_t *self = xcalloc(1, sizeof *self);

    self->dir = xstrdup(dir);
    self->seg = seg;
    self->off = off;
    self->fd = -1;
    return self;
}

void
agg_wal_reader_destroy(agg_wal_reader_t **self_p)
{
    agg_wal_reader_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->fd != -1)
        close(self->fd);
    free(self->buf);
    free(self->dir);
    free(self);
    *self_p = NULL;
}

/* Move to the oldest segment after the current one. true when moved. */
static bool
s_reader_advance(agg_wal_reader_t *self)
{
    uint64_t *segs;
    size_t n = s_list(self->dir, &segs);
    bool moved = false;

    for (size_t i = 0; i < n && !moved; i++)
        if (segs[i] > self->seg) {
            if (self->fd != -1)
                close(self->fd);
            self->fd = -1;
            self->seg = segs[i];
            self->off = 0;
            moved = true;
        }
    free(segs);
    return moved;
}

int
agg_wal_reader_next(agg_wal_reader_t *self, const void **payload, size_t *len)
{
    unsigned char hdr[S_HDR];
    char path[S_NAME_MAX];

    for (;;) {
        if (self->fd == -1) {
            snprintf(path, sizeof path, "%s/%016" PRIx64 ".wal", self->dir, self->seg);
            self->fd = open(path, O_RDONLY | O_CLOEXEC);
            if (self->fd == -1) {
                if (!s_reader_advance(self))
                    return 0;
                continue;
            }
        }
        ssize_t got = pread(self->fd, hdr, S_HDR, (off_t)self->off);
        uint32_t n = got == S_HDR ? s_rd32(hdr + 4) : 0;
        bool ok = got == S_HDR && memcmp(hdr, S_MAGIC, 4) == 0 &&
                  n <= AGG_WAL_RECORD_MAX;
        if (ok) {
            if (self->cap < n + 1) {
                self->cap = n + 1;
                self->buf = xrealloc(self->buf, self->cap);
            }
            ok = pread(self->fd, self->buf, n, (off_t)(self->off + S_HDR)) == (ssize_t)n &&
                 crc_32c(crc_32c(0, hdr + 4, 4), self->buf, n) == s_rd32(hdr + 8);
        }
        if (!ok) {
            if (!s_reader_advance(self))
                return 0;
            continue;
        }
        self->off += S_HDR + n;
        *payload = self->buf;
        *len = n;
        return 1;
    }
}

void
agg_wal_reader_pos(const agg_wal_reader_t *self, uint64_t *seg, uint64_t *off)
{
    *seg = self->seg;
    *off = self->off;
}

/* Selftest: records come back in order; a torn tail and a flipped byte
 * are cut off and never replayed; rotation and dropping old segments. */
struct s_seen {
    size_t n;       /* records replayed */
    size_t bytes;   /* payload bytes replayed */
    char last[64];  /* last payload (NUL-terminated copy) */
};

static void
s_test_cb(const void *payload, size_t len, void *arg)
{
    struct s_seen *s = arg;
    s->n++;
    s->bytes += len;
    snprintf(s->last, sizeof s->last, "%.*s", (int)len, (const char *)payload);
}

void
agg_wal_test(bool verbose)
{
    char dir[] = "/tmp/agg_wal_test.XXXXXX", path[S_NAME_MAX];
    struct s_seen seen = {0};
    agg_wal_t *w;
    char rec[32];
    uint64_t seg;
    int fd;

    assert(mkdtemp(dir));
    w = agg_wal_open(dir, 0, s_test_cb, &seen);
    assert(w && seen.n == 0 && agg_wal_segment(w) == 0);
    for (int i = 0; i < 100; i++) {
        snprintf(rec, sizeof rec, "record %d", i);
        assert(agg_wal_append(w, rec, strlen(rec)) == 0);
    }
    /* Group commit: one request covers the 100 records. */
    assert(agg_wal_sync_start(w));
    assert(!agg_wal_sync_start(w) && agg_wal_sync_busy(w));
    assert(agg_wal_sync_done(w) == 0);
    assert(agg_wal_durable(w) == agg_wal_written(w));
    assert(!agg_wal_sync_start(w)); /* nothing new */
    agg_wal_destroy(&w);
    assert(w == NULL);

    /* Replay, then tear the last record and flip a byte in another run. */
    w = agg_wal_open(dir, 0, s_test_cb, &seen);
    assert(w && seen.n == 100);
    TEST_STREQ(seen.last, "record 99");
    assert(agg_wal_segment(w) == 1);
    assert(agg_wal_append(w, "tail ok", 7) == 0);
    assert(agg_wal_append(w, "torn record", 11) == 0);
    assert(agg_wal_sync(w) == 0);
    agg_wal_destroy(&w);
    snprintf(path, sizeof path, "%s/%016x.wal", dir, 1);
    struct stat st;
    assert(stat(path, &st) == 0 && truncate(path, st.st_size - 3) == 0);
    memset(&seen, 0, sizeof seen);
    w = agg_wal_open(dir, 0, s_test_cb, &seen);
    assert(w && seen.n == 101);
    TEST_STREQ(seen.last, "tail ok");
    assert(stat(path, &st) == 0 && st.st_size == S_HDR + 7);
    assert(agg_wal_append(w, "after", 5) == 0);
    assert(agg_wal_append(w, "flipped", 7) == 0);
    assert(agg_wal_sync(w) == 0);
    seg = agg_wal_segment(w);
    agg_wal_destroy(&w);
    snprintf(path, sizeof path, "%s/%016" PRIx64 ".wal", dir, seg);
    fd = open(path, O_WRONLY);
    assert(fd >= 0 && pwrite(fd, "F", 1, S_HDR + 5 + S_HDR + 2) == 1);
    close(fd);
    memset(&seen, 0, sizeof seen);
    w = agg_wal_open(dir, 0, s_test_cb, &seen);
    assert(w && seen.n == 102);
    TEST_STREQ(seen.last, "after");

    /* A reader sees every intact record, skips the cut tail, follows
     * into the next segment and resumes from a saved position. */
    {
        agg_wal_reader_t *r = agg_wal_reader_new(dir, 0, 0);
        const void *pl;
        size_t pn, got = 0;
        uint64_t rs, ro;
        while (agg_wal_reader_next(r, &pl, &pn) == 1)
            got++;
        assert(got == 102 && pn == 5 && memcmp(pl, "after", 5) == 0);
        agg_wal_reader_pos(r, &rs, &ro);
        agg_wal_reader_destroy(&r);
        assert(agg_wal_append(w, "later", 5) == 0);
        r = agg_wal_reader_new(dir, rs, ro);
        assert(agg_wal_reader_next(r, &pl, &pn) == 1 && pn == 5 &&
               memcmp(pl, "later", 5) == 0);
        assert(agg_wal_reader_next(r, &pl, &pn) == 0);
        agg_wal_reader_destroy(&r);
        assert(r == NULL);
    }

    /* Rotation: a checkpoint at the new segment drops the old ones. */
    seg = agg_wal_rotate(w);
    assert(seg == agg_wal_segment(w) && seg != UINT64_MAX);
    assert(agg_wal_append(w, "new", 3) == 0);
    assert(agg_wal_sync(w) == 0);
    assert(agg_wal_drop_before(w, seg) == 0);
    agg_wal_destroy(&w);
    memset(&seen, 0, sizeof seen);
    w = agg_wal_open(dir, seg, s_test_cb, &seen);
    assert(w && seen.n == 1);
    TEST_STREQ(seen.last, "new");
    assert(agg_wal_disk_bytes(w) == S_HDR + 3);
    /* A segment a reader still wants survives an open past it. */
    {
        uint64_t seg2 = agg_wal_rotate(w);
        assert(seg2 != UINT64_MAX && agg_wal_append(w, "newer", 5) == 0);
        agg_wal_destroy(&w);
        memset(&seen, 0, sizeof seen);
        w = agg_wal_open_keep(dir, seg2, seg, s_test_cb, &seen);
        assert(w && seen.n == 1);
        TEST_STREQ(seen.last, "newer");
        snprintf(path, sizeof path, "%s/%016" PRIx64 ".wal", dir, seg);
        assert(access(path, F_OK) == 0);
        agg_wal_destroy(&w);
        memset(&seen, 0, sizeof seen);
        w = agg_wal_open(dir, seg2, s_test_cb, &seen);
        assert(w && seen.n == 1 && access(path, F_OK) == -1);
    }
    /* Rotations that do not wait (aggd's checkpoint): a request in
     * flight across two of them, then one that covers the segments
     * before, the directory and the newest segment in turn; durable
     * never passes a segment's end before that segment is synced. */
    {
        uint64_t first = agg_wal_segment(w), end1, end2, s1, s2;
        int rc;
        assert(agg_wal_append(w, "a", 1) == 0);
        assert(agg_wal_sync_start(w)); /* on the segment about to rotate */
        assert(agg_wal_append(w, "b", 1) == 0);
        end1 = agg_wal_written(w);
        s1 = agg_wal_rotate_nowait(w);
        assert(s1 == first + 1 && w->nold == 1);
        assert(agg_wal_append(w, "c", 1) == 0);
        end2 = agg_wal_written(w);
        s2 = agg_wal_rotate_nowait(w);
        assert(s2 == first + 2 && w->nold == 2);
        assert(agg_wal_append(w, "d", 1) == 0);
        /* The answer to the first request: "a" only. */
        assert(agg_wal_sync_done(w) == 0);
        assert(agg_wal_durable(w) < end1 && w->nold == 2);
        assert(agg_wal_sync_start(w));
        /* Old, old, directory, current: three answers say "not yet". */
        for (int i = 0; i < 3; i++) {
            assert((rc = agg_wal_sync_done(w)) == 1);
            assert(agg_wal_durable(w) == (i == 0 ? end1 : end2));
        }
        assert(agg_wal_sync_done(w) == 0 && w->nold == 0);
        assert(agg_wal_durable(w) == agg_wal_written(w));
        assert(w->dir_synced == w->rotations);
        /* A blocking sync after one more rotation takes the same path. */
        assert(agg_wal_rotate_nowait(w) == s2 + 1);
        assert(agg_wal_durable(w) == agg_wal_written(w) && w->nold == 0);
        assert(agg_wal_append(w, "e", 1) == 0);
        assert(agg_wal_rotate_nowait(w) == s2 + 2 && w->nold == 1);
        assert(agg_wal_sync(w) == 0 && w->nold == 0);
        assert(agg_wal_durable(w) == agg_wal_written(w));
        agg_wal_destroy(&w);
        memset(&seen, 0, sizeof seen);
        w = agg_wal_open(dir, first, s_test_cb, &seen);
        assert(w && seen.n == 5);
        TEST_STREQ(seen.last, "e");
    }
    agg_wal_destroy(&w);
    zsys_dir_delete("%s", dir);
    (void)verbose;
    TEST_OK("agg_wal");
}
