/*
 * ingest_mqspool: reader of the broker plugin's spool (see
 * ingest_mqspool.h and mqspool.h).
 */
#include "ingestd/ingest_mqspool.h"
#include "ingestd/mqspool.h"
#include "common/crc.h"
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

struct s_pos {
    uint64_t seg; /* file number (0: before the first file) */
    uint64_t off; /* byte offset inside it */
};

struct ingest_mqspool {
    char *dir;                   /* the plugin's directory */
    char *cursor;                /* cursor file */
    struct s_pos read;           /* next record to read */
    struct s_pos marked;         /* handed to ingestd's spool */
    struct s_pos saved;          /* durable cursor */
    int fd;                      /* open file of read.seg, or -1 */
    unsigned char *buf;          /* record buffer */
    size_t cap;
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

/* The smallest file number greater than seg, or 0 when none. */
static uint64_t
s_next_seg(const ingest_mqspool_t *self, uint64_t seg)
{
    DIR *d = opendir(self->dir);
    struct dirent *e;
    uint64_t best = 0;

    if (d == NULL)
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
    self->marked = self->saved = self->read;
    return self;
}

void
ingest_mqspool_destroy(ingest_mqspool_t **self_p)
{
    ingest_mqspool_t *self;
    if (self_p == NULL || (self = *self_p) == NULL)
        return;
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
    self->read.seg = next;
    self->read.off = 0;
    return true;
}

size_t
ingest_mqspool_read(ingest_mqspool_t *self, size_t max, ingest_mqtt_fn *fn,
                    void *arg)
{
    size_t n = 0;
    unsigned char hdr[MQSPOOL_HDR];

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
        got = pread(self->fd, hdr, MQSPOOL_HDR, (off_t)self->read.off);
        if (got < MQSPOOL_HDR) {
            /* End of this file: move on only once a newer one exists, and
             * then anything left here is a torn record. */
            if (!s_advance(self, got > 0 ? "torn record header" : NULL))
                return n;
            continue;
        }
        uint32_t len = s_le32(hdr + 4), crc = s_le32(hdr + 12);
        size_t tl = (size_t)hdr[8] | (size_t)hdr[9] << 8;
        if (s_le32(hdr) != MQSPOOL_MAGIC || len > MQSPOOL_RECORD_MAX || tl > len) {
            if (!s_advance(self, "bad record header"))
                return n;
            continue;
        }
        if (self->cap < len + 1) {
            self->cap = len + 1;
            self->buf = xrealloc(self->buf, self->cap);
        }
        got = pread(self->fd, self->buf, len,
                    (off_t)(self->read.off + MQSPOOL_HDR));
        if (got < (ssize_t)len || crc_32c(0, self->buf, len) != crc) {
            if (!s_advance(self, got < (ssize_t)len ? "torn record" : "checksum mismatch"))
                return n; /* maybe still being written: try again later */
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
        memcpy(topic, self->buf, tl);
        topic[tl] = '\0';
        if (topic_parse(topic, &d) || strcmp(d.rest, "telemetry") != 0)
            continue;
        fn(d.tenant, d.device, self->buf + tl, len - tl, arg);
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
    self->halt = true;
}

int
ingest_mqspool_commit(ingest_mqspool_t *self)
{
    char tmp[1100];
    FILE *fp;
    DIR *d;
    struct dirent *e;

    if (self->marked.seg == self->saved.seg && self->marked.off == self->saved.off)
        return 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", self->cursor);
    if ((fp = fopen(tmp, "w")) == NULL) {
        log_warn("mqspool: cannot write %s", tmp);
        return -1;
    }
    fprintf(fp, "%" PRIu64 " %" PRIu64 "\n", self->marked.seg, self->marked.off);
    if (fflush(fp) != 0 || fdatasync(fileno(fp)) == -1) {
        log_warn("mqspool: cannot save the cursor");
        fclose(fp);
        return -1;
    }
    fclose(fp);
    if (rename(tmp, self->cursor) == -1) {
        log_warn("mqspool: cannot save the cursor");
        return -1;
    }
    self->saved = self->marked;
    /* Files wholly behind the durable cursor are done with. */
    if ((d = opendir(self->dir))) {
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
    assert(ingest_mqspool_commit(m) == 0);
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
    assert(ingest_mqspool_commit(m) == 0);
    char old[1100];
    snprintf(old, sizeof old, "%s/" MQSPOOL_PREFIX "%016d" MQSPOOL_SUFFIX, dir, 1);
    assert(access(old, F_OK) == -1); /* consumed file deleted */
    ingest_mqspool_destroy(&m);
    zsys_dir_delete("%s", dir);
    TEST_OK("ingest_mqspool");
}
