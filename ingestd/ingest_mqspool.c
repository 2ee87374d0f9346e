/*
 * ingest_mqspool: reader of the broker plugin's spool (see
 * ingest_mqspool.h and mqspool.h).
 */
#include "ingestd/ingest_mqspool.h"
#include "ingestd/mqspool.h"
#include "common/crc.h"
#include "common/fsyncer.h"
#include "common/log.h"
#include "common/topic.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Bytes read from a file at a time: a few hundred records per read
 * instead of two reads per record. */
#define MQSPOOL_CHUNK (256u << 10)
/* A newer file is looked for by name (the plugin numbers them one up);
 * a full directory scan, for gaps, at most this often. */
#define MQSPOOL_SCAN_NS (1000LL * 1000000)

struct s_pos {
    uint64_t seg; /* file number (0: before the first file) */
    uint64_t off; /* byte offset inside it */
};

struct ingest_mqspool {
    char *dir;                   /* the plugin's directory */
    char *cursor;                /* cursor file */
    struct s_pos read;           /* next record to read */
    struct s_pos marked;         /* handed to ingestd's spool */
    struct s_pos syncing;        /* marked when its fsync started */
    struct s_pos durable;        /* synced in ingestd's spool */
    struct s_pos saved;          /* durable cursor */
    struct s_pos saving;         /* cursor being saved (fsync in flight) */
    zactor_t *syncer;            /* fsyncs the cursor off the loop */
    int save_fd;                 /* the new cursor file being synced, or -1 */
    int fd;                      /* open file of read.seg, or -1 */
    unsigned char *buf;          /* bytes of the file from boff on */
    size_t cap;                  /* bytes allocated */
    uint64_t boff;               /* file offset of buf[0] */
    size_t blen;                 /* valid bytes in buf (0: none) */
    int64_t scanned_ns;          /* last directory scan (monotonic) */
    unsigned long long records;  /* read */
    unsigned long long skipped;  /* torn or corrupt records skipped */
    bool halt;                   /* rewound inside fn: stop this read */
};

static void
s_path(const ingest_mqspool_t *self, uint64_t seg, char *buf, size_t len)
{
    snprintf(buf, len, "%s/" MQSPOOL_PREFIX "%016" PRIu64 MQSPOOL_SUFFIX,
             self->dir, seg);
}

/* The smallest file number greater than seg, or 0 when none. The plugin
 * writes seg + 1 next, so that name is tried first; a scan of the
 * directory (at most every MQSPOOL_SCAN_NS, since this runs whenever the
 * reader has caught up) finds anything else. */
static uint64_t
s_next_seg(ingest_mqspool_t *self, uint64_t seg)
{
    DIR *d;
    struct dirent *e;
    uint64_t best = 0;
    char path[1024];
    struct stat st;
    int64_t now = zclock_mono() * 1000000LL;

    s_path(self, seg + 1, path, sizeof path);
    if (stat(path, &st) == 0)
        return seg + 1;
    if (self->scanned_ns != 0 && now - self->scanned_ns < MQSPOOL_SCAN_NS)
        return 0;
    self->scanned_ns = now;
    if ((d = opendir(self->dir)) == NULL)
        return 0;
    while ((e = readdir(d))) {
        unsigned long long s;
        if (sscanf(e->d_name, MQSPOOL_PREFIX "%llu", &s) == 1 && s > seg &&
            (best == 0 || s < best))
            best = s;
    }
    closedir(d);
    return best;
}

ingest_mqspool_t *
ingest_mqspool_new(const char *dir, const char *cursor_path)
{
    ingest_mqspool_t *self = xcalloc(1, sizeof *self);
    FILE *fp;
    DIR *d;

    self->dir = xstrdup(dir);
    self->cursor = xstrdup(cursor_path);
    self->fd = -1;
    self->save_fd = -1;
    if ((d = opendir(dir)) == NULL) {
        log_warn("mqspool: cannot read %s", dir);
        ingest_mqspool_destroy(&self);
        return NULL;
    }
    closedir(d);
    if ((fp = fopen(cursor_path, "r"))) {
        unsigned long long s, o;
        if (fscanf(fp, "%llu %llu", &s, &o) == 2) {
            self->read.seg = s;
            self->read.off = o;
        }
        fclose(fp);
    }
    self->marked = self->syncing = self->durable = self->saved = self->read;
    self->syncer = fsyncer_new();
    return self;
}

void
ingest_mqspool_destroy(ingest_mqspool_t **self_p)
{
    ingest_mqspool_t *self;
    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->save_fd != -1) /* a save in flight: let it end */
        ingest_mqspool_commit_done(self);
    zactor_destroy(&self->syncer);
    if (self->fd != -1)
        close(self->fd);
    free(self->buf);
    free(self->dir);
    free(self->cursor);
    free(self);
    *self_p = NULL;
}

static uint32_t
s_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

/* Move to the next file when there is one. true when moved. */
static bool
s_advance(ingest_mqspool_t *self, const char *why)
{
    uint64_t next = s_next_seg(self, self->read.seg);
    if (next == 0)
        return false;
    if (why) {
        self->skipped++;
        log_warnx("mqspool: %s in file %" PRIu64 " at offset %" PRIu64
                  "; skipping the rest (the broker stopped mid-write)",
                  why, self->read.seg, self->read.off);
    }
    if (self->fd != -1)
        close(self->fd);
    self->fd = -1;
    self->blen = 0;
    self->read.seg = next;
    self->read.off = 0;
    return true;
}

/* Make at least want bytes of the open file from read.off on available
 * in the buffer when the file has them. Returns the bytes available
 * there (fewer than want at the end of what was written so far). */
static size_t
s_fill(ingest_mqspool_t *self, size_t want)
{
    size_t need = want > MQSPOOL_CHUNK ? want : MQSPOOL_CHUNK;
    ssize_t got;

    if (self->read.off >= self->boff &&
        self->read.off + want <= self->boff + self->blen)
        return (size_t)(self->boff + self->blen - self->read.off);
    if (self->cap < need) {
        self->cap = need;
        self->buf = xrealloc(self->buf, self->cap);
    }
    got = pread(self->fd, self->buf, need, (off_t)self->read.off);
    self->boff = self->read.off;
    self->blen = got > 0 ? (size_t)got : 0;
    return self->blen;
}

size_t
ingest_mqspool_read(ingest_mqspool_t *self, size_t max, ingest_mqtt_fn *fn,
                    void *arg)
{
    size_t n = 0;
    const unsigned char *hdr, *rec;

    self->halt = false;
    while (n < max && !self->halt) {
        char path[1024];
        ssize_t got;
        if (self->fd == -1) {
            if (self->read.seg == 0 && !s_advance(self, NULL))
                return n;
            s_path(self, self->read.seg, path, sizeof path);
            if ((self->fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
                if (errno == ENOENT && s_advance(self, NULL))
                    continue;
                return n;
            }
        }
        got = (ssize_t)s_fill(self, MQSPOOL_HDR);
        if (got < MQSPOOL_HDR) {
            /* End of this file: move on only once a newer one exists, and
             * then anything left here is a torn record. */
            if (!s_advance(self, got > 0 ? "torn record header" : NULL))
                return n;
            continue;
        }
        hdr = self->buf + (self->read.off - self->boff);
        uint32_t len = s_le32(hdr + 4), crc = s_le32(hdr + 12);
        size_t tl = (size_t)hdr[8] | (size_t)hdr[9] << 8;
        if (s_le32(hdr) != MQSPOOL_MAGIC || len > MQSPOOL_RECORD_MAX || tl > len) {
            if (!s_advance(self, "bad record header")) {
                self->blen = 0;
                return n;
            }
            continue;
        }
        got = (ssize_t)s_fill(self, MQSPOOL_HDR + (size_t)len);
        rec = self->buf + (self->read.off - self->boff) + MQSPOOL_HDR;
        if (got < (ssize_t)(MQSPOOL_HDR + len) || crc_32c(0, rec, len) != crc) {
            if (!s_advance(self, got < (ssize_t)(MQSPOOL_HDR + len)
                                     ? "torn record" : "checksum mismatch")) {
                self->blen = 0; /* maybe still being written: read again */
                return n;
            }
            continue;
        }
        self->read.off += MQSPOOL_HDR + len;
        self->records++;
        n++;
        /* [tenants/{t}/]devices/{id}/telemetry */
        char topic[512];
        struct topic_device d;
        if (tl >= sizeof topic)
            continue;
        memcpy(topic, rec, tl);
        topic[tl] = '\0';
        if (topic_parse(topic, &d) || strcmp(d.rest, "telemetry") != 0)
            continue;
        fn(d.tenant, d.device, rec + tl, len - tl, arg);
    }
    return n;
}

void
ingest_mqspool_mark(ingest_mqspool_t *self)
{
    self->marked = self->read;
}

void
ingest_mqspool_rewind(ingest_mqspool_t *self)
{
    if (self->fd != -1 && self->read.seg != self->marked.seg) {
        close(self->fd);
        self->fd = -1;
    }
    self->read = self->marked;
    self->blen = 0; /* read the file again: a write may have failed */
    self->halt = true;
}

void
ingest_mqspool_syncing(ingest_mqspool_t *self)
{
    self->syncing = self->marked;
}

void
ingest_mqspool_durable(ingest_mqspool_t *self)
{
    self->durable = self->syncing;
}

/* The new cursor file's name. */
static void
s_tmp(const ingest_mqspool_t *self, char *buf, size_t len)
{
    snprintf(buf, len, "%s.tmp", self->cursor);
}

int
ingest_mqspool_commit(ingest_mqspool_t *self)
{
    char tmp[1100], line[64];
    int n;

    if (self->save_fd != -1 || self->syncer == NULL ||
        (self->durable.seg == self->saved.seg && self->durable.off == self->saved.off))
        return 0;
    s_tmp(self, tmp, sizeof tmp);
    n = snprintf(line, sizeof line, "%" PRIu64 " %" PRIu64 "\n",
                 self->durable.seg, self->durable.off);
    self->save_fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (self->save_fd == -1 || write(self->save_fd, line, (size_t)n) != n) {
        log_warn("mqspool: cannot write %s", tmp);
        if (self->save_fd != -1)
            close(self->save_fd);
        self->save_fd = -1;
        return -1;
    }
    self->saving = self->durable;
    fsyncer_start(self->syncer, self->save_fd, 0);
    return 0;
}

zsock_t *
ingest_mqspool_sock(ingest_mqspool_t *self)
{
    return zactor_sock(self->syncer);
}

bool
ingest_mqspool_commit_busy(const ingest_mqspool_t *self)
{
    return self->save_fd != -1;
}

int
ingest_mqspool_commit_done(ingest_mqspool_t *self)
{
    char tmp[1100];
    uint64_t unused;
    int err;
    DIR *d;
    struct dirent *e;
    uint64_t before = self->saved.seg;

    if (self->save_fd == -1)
        return 0;
    err = fsyncer_done(self->syncer, &unused);
    close(self->save_fd);
    self->save_fd = -1;
    s_tmp(self, tmp, sizeof tmp);
    if (err != 0) {
        if (err > 0)
            errno = err;
        log_warn("mqspool: cannot save the cursor (fdatasync %s)", tmp);
        return -1;
    }
    if (rename(tmp, self->cursor) == -1) {
        log_warn("mqspool: cannot save the cursor (rename %s)", tmp);
        return -1;
    }
    self->saved = self->saving;
    /* Files wholly behind the durable cursor are done with. */
    if (self->saved.seg != before && (d = opendir(self->dir))) {
        while ((e = readdir(d))) {
            unsigned long long s;
            char path[1024];
            if (sscanf(e->d_name, MQSPOOL_PREFIX "%llu", &s) == 1 &&
                s < self->saved.seg) {
                s_path(self, s, path, sizeof path);
                unlink(path);
            }
        }
        closedir(d);
    }
    return 0;
}

int
ingest_mqspool_save(ingest_mqspool_t *self)
{
    int rc = ingest_mqspool_commit_done(self); /* one in flight first */

    if (ingest_mqspool_commit(self) == -1)
        return -1;
    if (ingest_mqspool_commit_done(self) == -1)
        return -1;
    return rc;
}

unsigned long long
ingest_mqspool_records(const ingest_mqspool_t *self)
{
    return self->records;
}

unsigned long long
ingest_mqspool_skipped(const ingest_mqspool_t *self)
{
    return self->skipped;
}

/* Selftest helpers: write records as the plugin does. */
static void
s_test_write(const char *dir, uint64_t seg, const char *topic,
             const char *payload, size_t cut)
{
    char path[1024];
    unsigned char hdr[MQSPOOL_HDR] = {0};
    size_t tl = strlen(topic), pl = strlen(payload), len = tl + pl;
    uint32_t crc = crc_32c(crc_32c(0, topic, tl), payload, pl);
    uint32_t v[2] = {MQSPOOL_MAGIC, (uint32_t)len};
    FILE *fp;

    snprintf(path, sizeof path, "%s/" MQSPOOL_PREFIX "%016" PRIu64 MQSPOOL_SUFFIX,
             dir, seg);
    fp = fopen(path, "a");
    for (int i = 0; i < 4; i++) {
        hdr[i] = (unsigned char)(v[0] >> (8 * i));
        hdr[4 + i] = (unsigned char)(v[1] >> (8 * i));
        hdr[12 + i] = (unsigned char)(crc >> (8 * i));
    }
    hdr[8] = (unsigned char)tl;
    fwrite(hdr, 1, MQSPOOL_HDR, fp);
    fwrite(topic, 1, tl, fp);
    fwrite(payload, 1, pl - cut, fp);
    fclose(fp);
}

static void
s_test_fn(const char *tenant, const char *device, const void *payload,
          size_t len, void *arg)
{
    int *count = arg;
    assert(strcmp(device, "d1") == 0);
    assert(strcmp(tenant, *count == 3 ? "acme" : "default") == 0);
    assert(len == 2 && memcmp(payload, "{}", 2) == 0);
    (*count)++;
}

void
ingest_mqspool_test(bool verbose)
{
    char dir[] = "/tmp/mqspool_test.XXXXXX", cur[1100];
    ingest_mqspool_t *m;
    int count = 0;

    assert(mkdtemp(dir));
    snprintf(cur, sizeof cur, "%s/cursor", dir);
    m = ingest_mqspool_new(dir, cur);
    assert(m && ingest_mqspool_read(m, 100, s_test_fn, &count) == 0);
    s_test_write(dir, 1, "devices/d1/telemetry", "{}", 0);
    s_test_write(dir, 1, "devices/d1/telemetry", "{}", 0);
    s_test_write(dir, 1, "devices/d1/telemetry", "{}", 1); /* torn tail */
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 2 && count == 2);
    /* The torn record waits: the writer may still be finishing it. */
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 0);
    /* Records that could not be spooled are read again after a rewind. */
    ingest_mqspool_rewind(m);
    count = 0;
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 2 && count == 2);
    ingest_mqspool_mark(m);
    ingest_mqspool_syncing(m);
    ingest_mqspool_durable(m);
    assert(ingest_mqspool_save(m) == 0);
    ingest_mqspool_rewind(m);
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 0 && count == 2);
    ingest_mqspool_destroy(&m);
    /* A restart resumes at the cursor; a newer file means the tail was
     * torn for good and is skipped. */
    m = ingest_mqspool_new(dir, cur);
    s_test_write(dir, 2, "devices/d1/telemetry", "{}", 0);
    s_test_write(dir, 2, "tenants/acme/devices/d1/telemetry", "{}", 0);
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (!verbose)
        dup2(devnull, 2);
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 2 && count == 4);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    assert(ingest_mqspool_skipped(m) == 1);
    ingest_mqspool_mark(m);
    ingest_mqspool_syncing(m);
    ingest_mqspool_durable(m);
    /* The save off the loop: the old cursor stands until the thread's
     * fsync of the new one is in and it is renamed into place. */
    {
        char before[64] = "", after[64] = "";
        FILE *fp = fopen(cur, "r");
        assert(fp && fgets(before, sizeof before, fp) && fclose(fp) == 0);
        assert(ingest_mqspool_commit(m) == 0 && ingest_mqspool_commit_busy(m));
        assert(ingest_mqspool_commit(m) == 0); /* one save at a time */
        fp = fopen(cur, "r");
        assert(fp && fgets(after, sizeof after, fp) && fclose(fp) == 0);
        TEST_STREQ(after, before);
        zmq_pollitem_t item = {zsock_resolve(ingest_mqspool_sock(m)), 0,
                               ZMQ_POLLIN, 0};
        assert(zmq_poll(&item, 1, 5000) == 1);
        assert(ingest_mqspool_commit_done(m) == 0 && !ingest_mqspool_commit_busy(m));
        fp = fopen(cur, "r");
        assert(fp && fgets(after, sizeof after, fp) && fclose(fp) == 0);
        assert(strcmp(after, before) != 0 && strncmp(after, "2 ", 2) == 0);
        assert(ingest_mqspool_commit(m) == 0 && !ingest_mqspool_commit_busy(m));
    }
    char old[1100];
    snprintf(old, sizeof old, "%s/" MQSPOOL_PREFIX "%016d" MQSPOOL_SUFFIX, dir, 1);
    assert(access(old, F_OK) == -1); /* consumed file deleted */
    /* A record read while half written is read whole once it is: the
     * buffer is not trusted past a short or failed record. */
    s_test_write(dir, 3, "devices/d1/telemetry", "{}", 1);
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 0 && count == 4);
    {
        char path3[1100];
        snprintf(path3, sizeof path3, "%s/" MQSPOOL_PREFIX "%016d" MQSPOOL_SUFFIX,
                 dir, 3);
        FILE *fp = fopen(path3, "a");
        assert(fp && fputc('}', fp) == '}' && fclose(fp) == 0);
    }
    assert(ingest_mqspool_read(m, 100, s_test_fn, &count) == 1 && count == 5);
    assert(ingest_mqspool_skipped(m) == 1);
    ingest_mqspool_destroy(&m);
    zsys_dir_delete("%s", dir);
    TEST_OK("ingest_mqspool");
}
