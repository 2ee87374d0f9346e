/*
 * agg_store: heads and compressed chunks (see agg_store.h).
 *
 * Chunk record in DIR/chunks.dat: magic "SPC1", payload length (u32 LE),
 * CRC-32C of length and payload (u32 LE); payload: key length (u32 LE),
 * key, tmin and tmax (i64 LE), the encoded chunk. The index series ->
 * chunks with time bounds is rebuilt from the records at open, which is
 * one sequential read; the encoded chunks stay in memory (about a byte a
 * point) so a query decodes only the chunks its range touches.
 */
#include "aggd/agg_store.h"
#include "aggd/agg_chunk.h"
#include "common/clock.h"
#include "common/crc.h"
#include "common/le.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zstd.h>

#define S_MAGIC "SPC1"  /* chunk record */
#define S_RMAGIC "SPR2" /* rollup record */
#define S_HDR 12
#define S_REC_MAX (64u << 20)
#define S_ROLLUP_SLACK (16u << 20) /* appended bytes tolerated beyond twice
                                      the live size before a rewrite */
#define S_NS_DAY (86400LL * 1000000000LL)
#define S_COMPACT_TMP "compact.tmp" /* the compaction thread's new file */
#define S_RESEAL_BUDGET (1u << 18)  /* points a sync reseals before it
                                       starts a compaction, at most */

struct s_chunk {
    int64_t tmin, tmax;  /* time bounds */
    unsigned char *data; /* encoded (agg_chunk) */
    uint32_t len;        /* encoded bytes */
    uint32_t n;          /* points */
};

struct s_series {
    char *key;               /* canonical key (owned) */
    struct s_chunk *chunks;  /* sealed, in seal order */
    size_t nchunks, capch;   /* chunks used and allocated */
    int64_t sealed_max;      /* largest tmax of the chunks */
    bool overlap;            /* chunks overlap each other or the head */
    bool chunk_overlap;      /* chunks overlap each other (s_reseal) */
    uint32_t chunk_epoch;    /* bumped when chunks are replaced rather
                                than appended (a running compaction's
                                result no longer fits them) */
    agg_rollup_t *roll;      /* minute, hour and day rollups */
    int64_t raw_from;        /* raw points before this were dropped by
                                retention (INT64_MIN: none were) */
    int64_t stale_lo, stale_hi; /* hull of the time where the rollups may
                                   not equal the raw points (in memory:
                                   a load rebuilds from raw what it can) */
    int64_t *ts;             /* head: ascending timestamps */
    double *v;               /* head: values */
    size_t n, cap;           /* head points used and allocated */
};

#define S_SPARE_MAX 4            /* scratch buffers kept between selects */
#define S_SPARE_BYTES (32u << 20) /* and their bytes, at most */

struct s_buf {
    void *p;     /* allocation */
    size_t size; /* its bytes */
};

/* Decoded arrays lent to views until the next select or write. The
 * largest buffers are kept for the next select: a raw query over a
 * million points decodes into 16 MB, and malloc returns memory that
 * large to the kernel when it is freed, so every query paid for
 * faulting it in again (about 8,000 page faults, most of an exact
 * query's CPU after a load). */
struct s_scratch {
    struct s_buf *bufs;  /* lent */
    size_t n, cap;       /* used and allocated */
    struct s_buf spare[S_SPARE_MAX]; /* kept for reuse */
    size_t nspare;       /* used */
};

/* A compaction on its own thread (s_compact_start): a snapshot of each
 * series' chunk list, compacted into out and written to tmp. */
struct s_cser {
    char *key;             /* series key */
    uint32_t epoch;        /* its chunk_epoch at the snapshot */
    bool compact;          /* no overlap: runs may merge */
    struct s_chunk *in;    /* its chunks then (data shared with the store) */
    size_t nin;            /* their number */
    struct s_chunk *out;   /* after compaction (thread) */
    size_t nout;           /* their number */
    bool *fresh, *gone;    /* out[k] newly encoded; in[m] merged away */
    uint64_t *off;         /* where a fresh out[k]'s data lies in the
                              job's file: the thread frees it once written
                              (data NULL), the switch-over reads it back,
                              so both forms are not held meanwhile */
};

struct s_cjob {
    pthread_t thread;      /* running s_cjob_run */
    atomic_bool done;      /* the thread finished */
    char *tmp;             /* DIR/compact.tmp */
    uint64_t base_gen;     /* chunk file generation at the snapshot */
    uint64_t base_len;     /* and its length: records after it are copied */
    size_t chunks;         /* the store's chunks then */
    struct s_cser *ser;    /* the series with chunks */
    size_t nser;           /* their number */
    unsigned pause_ms;     /* AGGD_TEST_COMPACT_PAUSE_MS after each series */
    int fd;                /* tmp, or -1 (thread) */
    uint64_t len;          /* bytes written to it (thread) */
    bool failed;           /* a write or the fdatasync failed (thread) */
    size_t pts;            /* points encoded again (thread) */
    int64_t ns;            /* the thread's time (thread) */
    uint64_t fresh_bytes;  /* bytes of merged chunks written (thread) */
};

static void s_cjob_free(struct s_cjob *j, bool drop_fresh);

#define S_SLOTS 4096 /* agg_store_put_run_slot's cache of series */

struct agg_store {
    zhashx_t *series;        /* key -> struct s_series */
    struct agg_pool *pool;   /* for large answers (borrowed), or NULL */
    struct s_series **slot;  /* S_SLOTS series last put by slot, or NULL */
    size_t points;           /* distinct points */
    size_t chunks;           /* sealed chunks */
    uint64_t chunk_bytes;    /* their encoded bytes */
    size_t head_points;      /* points in heads */
    char *dir;               /* data directory, or NULL in memory */
    int fd;                  /* chunk file, or -1 */
    int rfd;                 /* rollup file, or -1 */
    struct agg_store_files files; /* generations in use, bytes written */
    bool chunk_rewrite;      /* chunks dropped: write a new generation */
    bool rollup_rewrite;     /* buckets dropped: write a new generation */
    uint64_t rollup_live;    /* bytes of the last full rollup write */
    bool io_failed;          /* a write failed since open */
    unsigned char *wbuf;     /* chunk records agg_store_seal_all gathers
                                for one write(2) a MiB (s_wbuf_flush) */
    size_t wlen, wcap;       /* bytes gathered and allocated */
    bool wbuffer;            /* gather instead of writing */
    uint64_t wfrom;          /* the chunk file's length before them */
    int64_t wns;             /* time in those write(2) calls, last seal */
    uint64_t reseals;        /* groups of overlapping chunks resealed */
    uint64_t reseal_points;  /* points those reseals sorted */
    uint64_t head_merge_points; /* points reads merged with a late head */
    uint64_t compacted;      /* chunks merged away by compaction */
    uint64_t compactions;    /* chunk file rewrites compaction caused */
    int64_t compact_ns;      /* duration of the last compaction */
    int64_t compact_loop_max_ns; /* longest the caller's thread spent in
                                    one compaction step */
    bool compact_all;        /* the next sync compacts as at a stop */
    struct s_cjob *job;      /* a compaction running, or NULL */
    unsigned char **grave;   /* chunk data freed while it runs (its
                                thread may read it) */
    size_t ngrave, capgrave; /* used and allocated */
    uint64_t compact_dropped; /* compactions dropped: rewritten meanwhile */
    struct s_scratch scratch; /* lent to the last select */
    agg_chunk_dctx_t *dctx;  /* kept for decoding chunks */
    struct s_series **found; /* the last selection's series */
    size_t nfound, capfound; /* used and allocated */
};

static void
s_series_free(void **item)
{
    struct s_series *s = *item;
    if (s) {
        for (size_t i = 0; i < s->nchunks; i++)
            free(s->chunks[i].data);
        free(s->chunks);
        agg_rollup_destroy(&s->roll);
        free(s->key);
        free(s->ts);
        free(s->v);
        free(s);
        *item = NULL;
    }
}

/* Take back what was lent: the largest buffers (up to S_SPARE_MAX and
 * S_SPARE_BYTES) become spares, the rest are freed; keep=false frees all. */
static void
s_scratch_clear(struct s_scratch *sc, bool keep)
{
    for (size_t i = 0; i < sc->n; i++) {
        struct s_buf b = sc->bufs[i];
        size_t bytes = b.size, small = 0;
        for (size_t j = 0; j < sc->nspare; j++) {
            bytes += sc->spare[j].size;
            if (sc->spare[j].size < sc->spare[small].size)
                small = j;
        }
        if (keep && sc->nspare < S_SPARE_MAX && bytes <= S_SPARE_BYTES) {
            sc->spare[sc->nspare++] = b;
            continue;
        }
        if (keep && sc->nspare > 0 && sc->spare[small].size < b.size &&
            bytes - sc->spare[small].size <= S_SPARE_BYTES) {
            struct s_buf t = sc->spare[small];
            sc->spare[small] = b;
            b = t;
        }
        free(b.p);
    }
    sc->n = 0;
    if (!keep) {
        for (size_t j = 0; j < sc->nspare; j++)
            free(sc->spare[j].p);
        sc->nspare = 0;
    }
}

/* Lend bytes until the next clear: the smallest spare that is large
 * enough, else a new allocation. */
static void *
s_scratch_alloc(struct s_scratch *sc, size_t bytes)
{
    size_t best = sc->nspare;
    struct s_buf b;

    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 16;
        sc->bufs = xrealloc(sc->bufs, sc->cap * sizeof *sc->bufs);
    }
    bytes = bytes ? bytes : 1;
    for (size_t j = 0; j < sc->nspare; j++)
        if (sc->spare[j].size >= bytes &&
            (best == sc->nspare || sc->spare[j].size < sc->spare[best].size))
            best = j;
    if (best < sc->nspare) {
        b = sc->spare[best];
        sc->spare[best] = sc->spare[--sc->nspare];
    } else {
        b = (struct s_buf){xmalloc(bytes), bytes};
    }
    sc->bufs[sc->n++] = b;
    return b.p;
}

agg_store_t *
agg_store_new(void)
{
    agg_store_t *self = xcalloc(1, sizeof *self);
    self->series = zhashx_new();
    zhashx_set_destructor(self->series, s_series_free);
    self->fd = self->rfd = -1;
    if ((self->dctx = ZSTD_createDCtx()) == NULL)
        abort(); /* out of memory, as xmalloc */
    return self;
}

void
agg_store_set_pool(agg_store_t *self, struct agg_pool *pool)
{
    self->pool = pool;
}

struct agg_pool *
agg_store_pool(const agg_store_t *self)
{
    return self->pool;
}

void
agg_store_destroy(agg_store_t **self_p)
{
    agg_store_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->job) { /* not switched over: forget it */
        pthread_join(self->job->thread, NULL);
        unlink(self->job->tmp);
        s_cjob_free(self->job, true);
        self->job = NULL;
    }
    for (size_t i = 0; i < self->ngrave; i++)
        free(self->grave[i]);
    free(self->grave);
    zhashx_destroy(&self->series);
    free(self->slot);
    s_scratch_clear(&self->scratch, false);
    free(self->scratch.bufs);
    ZSTD_freeDCtx(self->dctx);
    free(self->found);
    if (self->fd != -1)
        close(self->fd);
    if (self->rfd != -1)
        close(self->rfd);
    free(self->dir);
    free(self->wbuf);
    free(self);
    *self_p = NULL;
}

static struct s_series *
s_series_get(agg_store_t *self, const char *key)
{
    struct s_series *s = zhashx_lookup(self->series, key);

    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->key = xstrdup(key);
        s->sealed_max = INT64_MIN;
        s->roll = agg_rollup_new();
        s->raw_from = INT64_MIN;
        s->stale_lo = INT64_MAX;
        s->stale_hi = INT64_MIN;
        zhashx_insert(self->series, key, s);
    }
    return s;
}

/* Free chunk data, or keep it until the running compaction is reaped:
 * its thread may be reading it. */
static void
s_data_free(agg_store_t *self, unsigned char *p)
{
    if (self->job == NULL) {
        free(p);
        return;
    }
    if (self->ngrave == self->capgrave) {
        self->capgrave = self->capgrave ? self->capgrave * 2 : 64;
        self->grave = xrealloc(self->grave, self->capgrave * sizeof *self->grave);
    }
    self->grave[self->ngrave++] = p;
}

static void
s_add_chunk(agg_store_t *self, struct s_series *s, struct s_chunk *c)
{
    if (s->nchunks == s->capch) {
        s->capch = s->capch ? s->capch * 2 : 4;
        s->chunks = xrealloc(s->chunks, s->capch * sizeof *s->chunks);
    }
    if (s->nchunks > 0 && c->tmin <= s->sealed_max)
        s->overlap = s->chunk_overlap = true;
    if (c->tmax > s->sealed_max)
        s->sealed_max = c->tmax;
    s->chunks[s->nchunks++] = *c;
    self->chunks++;
    self->chunk_bytes += c->len;
}

static char *
s_path(const agg_store_t *self, const char *kind, uint64_t gen)
{
    if (gen == 0)
        return xasprintf("%s/%s.dat", self->dir, kind);
    return xasprintf("%s/%s.%llu.dat", self->dir, kind, (unsigned long long)gen);
}

/* Append one record (magic, length, CRC-32C of length and parts, parts)
 * to fd, whose length *len tracks; on a short write the file is cut back
 * to *len. Touches nothing shared (the compaction thread calls it). */
static int
s_append_fd(int fd, uint64_t *len, const char *magic,
            const struct iovec *parts, int nparts)
{
    unsigned char hdr[S_HDR];
    struct iovec iov[5];
    uint32_t plen = 0, crc;
    ssize_t w;

    for (int i = 0; i < nparts; i++)
        plen += (uint32_t)parts[i].iov_len;
    memcpy(hdr, magic, 4);
    le_put(hdr + 4, plen, 4);
    crc = crc_32c(0, hdr + 4, 4);
    for (int i = 0; i < nparts; i++) {
        crc = crc_32c(crc, parts[i].iov_base, parts[i].iov_len);
        iov[i + 1] = parts[i];
    }
    le_put(hdr + 8, crc, 4);
    iov[0] = (struct iovec){hdr, S_HDR};
    w = writev(fd, iov, nparts + 1);
    if (w != (ssize_t)(S_HDR + plen)) {
        int e = errno;
        if (w > 0 && ftruncate(fd, (off_t)*len) == -1)
            e = errno;
        errno = e;
        return -1;
    }
    *len += (uint64_t)w;
    return 0;
}

/* The same on the store's files: a failure is logged and every later
 * write refused until restart. */
static int
s_append(agg_store_t *self, int fd, uint64_t *len, const char *magic,
         const struct iovec *parts, int nparts)
{
    if (fd == -1 || self->io_failed)
        return -1;
    if (s_append_fd(fd, len, magic, parts, nparts) == 0)
        return 0;
    log_warn("agg_store: append to a file in %s", self->dir);
    self->io_failed = true;
    return -1;
}

static int
s_write_chunk_fd(int fd, uint64_t *len, const char *key,
                 const struct s_chunk *c)
{
    unsigned char k[4], b[16];
    size_t klen = strlen(key);

    le_put(k, klen, 4);
    le_put(b, (uint64_t)c->tmin, 8);
    le_put(b + 8, (uint64_t)c->tmax, 8);
    struct iovec parts[4] = {{k, 4}, {(void *)(uintptr_t)key, klen},
                             {b, 16}, {c->data, c->len}};
    return s_append_fd(fd, len, S_MAGIC, parts, 4);
}

#define S_WBUF_MAX (1u << 20)

/* Write the gathered chunk records (one write(2) for many: a checkpoint
 * seals thousands of heads). A failure is a failed write: the file is
 * cut back and every later write refused. */
static void
s_wbuf_flush(agg_store_t *self)
{
    size_t off = 0;
    int64_t t0 = clock_mono_ns();

    while (off < self->wlen && !self->io_failed) {
        ssize_t w = write(self->fd, self->wbuf + off, self->wlen - off);
        if (w <= 0) {
            log_warn("agg_store: append to a file in %s", self->dir);
            if (ftruncate(self->fd, (off_t)self->wfrom) == -1)
                log_warn("agg_store: cannot cut back a file in %s", self->dir);
            self->files.chunk_len = self->wfrom;
            self->io_failed = true;
        }
        off += w > 0 ? (size_t)w : 0;
    }
    self->wlen = 0;
    self->wfrom = self->files.chunk_len;
    self->wns += clock_mono_ns() - t0;
}

/* Gather one chunk record for s_wbuf_flush (same bytes as
 * s_write_chunk_fd writes). */
static void
s_wbuf_chunk(agg_store_t *self, const char *key, const struct s_chunk *c)
{
    size_t klen = strlen(key), plen = 4 + klen + 16 + c->len;
    unsigned char *p;

    if (self->wlen + S_HDR + plen > self->wcap) {
        self->wcap = self->wlen + S_HDR + plen + S_WBUF_MAX;
        self->wbuf = xrealloc(self->wbuf, self->wcap);
    }
    p = self->wbuf + self->wlen;
    memcpy(p, S_MAGIC, 4);
    le_put(p + 4, plen, 4);
    le_put(p + S_HDR, klen, 4);
    memcpy(p + S_HDR + 4, key, klen);
    le_put(p + S_HDR + 4 + klen, (uint64_t)c->tmin, 8);
    le_put(p + S_HDR + 4 + klen + 8, (uint64_t)c->tmax, 8);
    memcpy(p + S_HDR + 4 + klen + 16, c->data, c->len);
    le_put(p + 8, crc_32c(crc_32c(0, p + 4, 4), p + S_HDR, plen), 4);
    self->wlen += S_HDR + plen;
    self->files.chunk_len += S_HDR + plen;
    if (self->wlen >= S_WBUF_MAX)
        s_wbuf_flush(self);
}

static void
s_write_chunk(agg_store_t *self, int fd, uint64_t *len, const char *key,
              const struct s_chunk *c)
{
    if (fd == -1 || self->io_failed)
        return;
    if (self->wbuffer && fd == self->fd && len == &self->files.chunk_len) {
        s_wbuf_chunk(self, key, c);
        return;
    }
    if (s_write_chunk_fd(fd, len, key, c) == -1) {
        log_warn("agg_store: append to a file in %s", self->dir);
        self->io_failed = true;
    }
}

/* Append the rollups of s (the changed buckets, or all) to fd: key,
 * raw_from (i64), the agg_rollup record. Buckets of every tier go to disk
 * only when they start before raw_from (raw points of them were dropped);
 * the later ones are rebuilt from the chunks at open, so while raw points
 * are kept the rollup file is about empty. */
static void
s_write_rollup(agg_store_t *self, int fd, uint64_t *len, struct s_series *s,
               bool all, int64_t before)
{
    unsigned char k[4], rf[8], *blob;
    size_t klen = strlen(s->key);
    size_t n = agg_rollup_encode(s->roll, all, before, &blob);

    if (n == 0)
        return;
    le_put(k, klen, 4);
    le_put(rf, (uint64_t)s->raw_from, 8);
    struct iovec parts[4] = {{k, 4}, {s->key, klen}, {rf, 8}, {blob, n}};
    s_append(self, fd, len, S_RMAGIC, parts, 4);
    free(blob);
}

static void
s_seal(agg_store_t *self, struct s_series *s)
{
    struct s_chunk c;

    if (s->n == 0)
        return;
    c.tmin = s->ts[0];
    c.tmax = s->ts[s->n - 1];
    c.n = (uint32_t)s->n;
    c.len = (uint32_t)agg_chunk_encode(s->ts, s->v, s->n, &c.data);
    s_write_chunk(self, self->fd, &self->files.chunk_len, s->key, &c);
    s_add_chunk(self, s, &c);
    self->head_points -= s->n;
    s->n = 0;
    if (s->cap > AGG_STORE_CHUNK_POINTS) {
        free(s->ts);
        free(s->v);
        s->ts = NULL;
        s->v = NULL;
        s->cap = 0;
    }
}

/* Walk the records with this magic of a mapped file, handing each
 * payload to fn; returns the length of the valid prefix (up to the first
 * record that is short, fails its checksum or that fn refuses). */
static uint64_t
s_scan(agg_store_t *self, const unsigned char *m, uint64_t size,
       const char *magic,
       int (*fn)(agg_store_t *, const unsigned char *, uint32_t))
{
    uint64_t off = 0;

    while (off < size) {
        if (size - off < S_HDR || memcmp(m + off, magic, 4) != 0)
            break;
        const unsigned char *p = m + off + S_HDR;
        uint32_t len = (uint32_t)le_get(m + off + 4, 4);
        if (len > S_REC_MAX || size - off - S_HDR < len ||
            crc_32c(crc_32c(0, m + off + 4, 4), p, len) !=
                (uint32_t)le_get(m + off + 8, 4) ||
            fn(self, p, len) == -1)
            break;
        off += S_HDR + len;
    }
    return off;
}

/* The key at the start of a payload: 0 and copied, or -1. */
static int
s_rec_key(const unsigned char *p, uint32_t len, char *key, size_t cap,
          uint32_t *klen)
{
    if (len < 4)
        return -1;
    *klen = (uint32_t)le_get(p, 4);
    if (*klen == 0 || *klen >= cap || *klen > len - 4)
        return -1;
    memcpy(key, p + 4, *klen);
    key[*klen] = '\0';
    return 0;
}

static int
s_load_chunk(agg_store_t *self, const unsigned char *p, uint32_t len)
{
    char key[SERIES_KEY_MAX];
    uint32_t klen;
    struct s_chunk c;

    if (s_rec_key(p, len, key, sizeof key, &klen) == -1 ||
        4 + klen + 16 >= len)
        return -1;
    c.tmin = (int64_t)le_get(p + 4 + klen, 8);
    c.tmax = (int64_t)le_get(p + 12 + klen, 8);
    c.len = len - 4 - klen - 16;
    c.n = (uint32_t)agg_chunk_count(p + 20 + klen, c.len);
    if (c.n == 0 || c.tmin > c.tmax)
        return -1;
    c.data = xmalloc(c.len);
    memcpy(c.data, p + 20 + klen, c.len);
    s_add_chunk(self, s_series_get(self, key), &c);
    self->points += c.n;
    return 0;
}

static int
s_load_rollup(agg_store_t *self, const unsigned char *p, uint32_t len)
{
    char key[SERIES_KEY_MAX];
    uint32_t klen;

    struct s_series *s;
    int64_t rf;

    if (s_rec_key(p, len, key, sizeof key, &klen) == -1 || len - 4 - klen < 8)
        return -1;
    s = s_series_get(self, key);
    rf = (int64_t)le_get(p + 4 + klen, 8);
    if (rf > s->raw_from)
        s->raw_from = rf;
    return agg_rollup_decode(s->roll, p + 12 + klen, len - 12 - klen);
}

/* Open (creating) a file of the store, cut it to the valid prefix of its
 * first valid_len bytes, loading its records. Returns the fd or -1. */
static int
s_open_file(agg_store_t *self, const char *path, uint64_t valid_len,
            const char *magic,
            int (*fn)(agg_store_t *, const unsigned char *, uint32_t),
            uint64_t *good)
{
    struct stat st;
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    *good = 0;
    if (fd == -1 || fstat(fd, &st) == -1) {
        log_warn("agg_store: cannot open %s", path);
        goto fail;
    }
    if ((uint64_t)st.st_size < valid_len) {
        log_err("agg_store: %s holds %lld bytes, the checkpoint %" PRIu64
                "; records are missing", path, (long long)st.st_size,
                valid_len);
        valid_len = (uint64_t)st.st_size;
    }
    if (valid_len > 0) {
        void *m = mmap(NULL, valid_len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            log_warn("agg_store: cannot map %s", path);
            goto fail;
        }
        *good = s_scan(self, m, valid_len, magic, fn);
        munmap(m, valid_len);
        if (*good < valid_len)
            log_err("agg_store: %s: corrupt record at offset %" PRIu64
                    "; %" PRIu64 " bytes dropped", path, *good,
                    valid_len - *good);
    }
    if ((uint64_t)st.st_size > *good && ftruncate(fd, (off_t)*good) == -1) {
        log_warn("agg_store: cannot truncate %s", path);
        goto fail;
    }
    return fd;
fail:
    if (fd != -1)
        close(fd);
    return -1;
}

static size_t s_distinct(agg_store_t *self, struct s_series *s);

/* Chunks of a series that overlap hold some timestamps twice: count the
 * distinct points of those series after a load (which reseals them). */
static void
s_recount(agg_store_t *self)
{
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        if (!s->overlap)
            continue;
        size_t sum = s->n;
        for (size_t i = 0; i < s->nchunks; i++)
            sum += s->chunks[i].n;
        self->points -= sum - s_distinct(self, s);
    }
}

static void s_view(agg_store_t *self, struct s_series *s, int64_t start,
                   int64_t end, struct agg_view *out);

/* Rollups from the chunks: every tier for a directory without a rollup
 * file, else the buckets starting at raw_from or later (those before it
 * were loaded from the file). Such buckets found in the file (format 3
 * wrote hours and days) are dropped first, and the file rewritten. */
static void
s_rebuild_rollups(agg_store_t *self, bool all)
{
    struct agg_view v;

    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        int64_t rf = s->raw_from;
        for (int t = 0; t < AGG_ROLLUP_TIERS && !all; t++) {
            size_t had = agg_rollup_buckets(s->roll, t);
            agg_rollup_drop_tier(s->roll, t, rf, INT64_MAX);
            self->rollup_rewrite |= agg_rollup_buckets(s->roll, t) != had;
        }
        s_view(self, s, INT64_MIN, INT64_MAX, &v);
        for (size_t i = 0; i < v.n; i++) {
            if (all || rf == INT64_MIN) {
                agg_rollup_add(s->roll, v.ts[i], v.v[i]);
                continue;
            }
            for (int t = 0; t < AGG_ROLLUP_TIERS; t++)
                if (agg_rollup_start(t, v.ts[i]) >= rf)
                    agg_rollup_add_tier(s->roll, t, v.ts[i], v.v[i]);
        }
        s_scratch_clear(&self->scratch, true);
        if (!all)
            agg_rollup_clean(s->roll);
    }
    self->rollup_rewrite |= all;
}

agg_store_t *
agg_store_open(const char *dir, const struct agg_store_files *files)
{
    agg_store_t *self = agg_store_new();
    char *path;

    self->dir = xstrdup(dir);
    self->files = *files;
    path = s_path(self, "chunks", files->chunk_gen);
    self->fd = s_open_file(self, path, files->chunk_len, S_MAGIC,
                           s_load_chunk, &self->files.chunk_len);
    free(path);
    if (self->fd == -1)
        goto fail;
    s_recount(self);
    if (files->rollup_gen == 0) {
        s_rebuild_rollups(self, true);
        return self;
    }
    path = s_path(self, "rollups", files->rollup_gen);
    self->rfd = s_open_file(self, path, files->rollup_len, S_RMAGIC,
                            s_load_rollup, &self->files.rollup_len);
    free(path);
    if (self->rfd == -1)
        goto fail;
    self->rollup_live = self->files.rollup_len;
    s_rebuild_rollups(self, false);
    return self;
fail:
    agg_store_destroy(&self);
    return NULL;
}

/* First index with ts[i] >= t. */
static size_t
s_lower(const int64_t *ts, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ts[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Is ts in a sealed chunk of s? Decodes the chunks whose bounds hold
 * it, newest first, and sets *old to the value there. */
static bool
s_sealed_find(agg_store_t *self, const struct s_series *s, int64_t ts,
              double *old)
{
    int64_t t[AGG_STORE_CHUNK_POINTS], *bt = t;
    double v[AGG_STORE_CHUNK_POINTS], *bv = v;
    bool found = false;

    for (size_t i = s->nchunks; i-- > 0 && !found;) {
        const struct s_chunk *c = &s->chunks[i];
        if (ts < c->tmin || ts > c->tmax)
            continue;
        if (c->n > AGG_STORE_CHUNK_POINTS) {
            bt = xmalloc(c->n * sizeof *bt);
            bv = xmalloc(c->n * sizeof *bv);
        }
        size_t n = agg_chunk_decode_with(self->dctx, c->data, c->len, bt, bv,
                                         c->n);
        size_t k = s_lower(bt, n, ts);
        if ((found = k < n && bt[k] == ts))
            *old = bv[k];
        if (bt != t) {
            free(bt);
            free(bv);
            bt = t;
            bv = v;
        }
    }
    return found;
}

/* The day t falls in (UTC), for t at least a day inside int64's range
 * (points are; a range's edges are checked with s_edge_day first). */
static int64_t
s_floor_day(int64_t t)
{
    int64_t d = t / S_NS_DAY * S_NS_DAY;
    return d > t ? d - S_NS_DAY : d;
}

/* Whether a range's edge cuts a day in two, and that day's start in *d:
 * not for an open edge, one on a day's start, or one within a day of
 * int64's ends (a client's start=-9223372036854775807 must not make the
 * day arithmetic overflow; no point lies there). */
static bool
s_edge_day(int64_t edge, int64_t *d)
{
    if (edge < INT64_MIN + 2 * S_NS_DAY || edge > INT64_MAX - 2 * S_NS_DAY)
        return false;
    *d = s_floor_day(edge);
    return *d != edge;
}

/* The rollups of s over [a, b) may no longer equal its raw points. */
static void
s_stale(struct s_series *s, int64_t a, int64_t b)
{
    s->stale_lo = a < s->stale_lo ? a : s->stale_lo;
    s->stale_hi = b > s->stale_hi ? b : s->stale_hi;
}

/* The point at ts of s changed from old to v: adjust the rollups, and
 * when min or max may be stale recompute that day's buckets from the raw
 * points, if the store still has all of them (retention may have dropped
 * some; then the extremes stay as they were, a superset). */
static void
s_roll_replace(agg_store_t *self, struct s_series *s, int64_t ts,
               double old, double v)
{
    struct agg_view view;
    int64_t day;

    if (old == v || !agg_rollup_replace(s->roll, ts, old, v))
        return;
    day = s_floor_day(ts);
    s_view(self, s, day, day + S_NS_DAY, &view);
    if (view.n == agg_rollup_count_at(s->roll, AGG_ROLLUP_DAY, day)) {
        agg_rollup_drop(s->roll, day, day + S_NS_DAY);
        for (size_t i = 0; i < view.n; i++)
            agg_rollup_add(s->roll, view.ts[i], view.v[i]);
    } else {
        s_stale(s, day, day + S_NS_DAY);
    }
    s_scratch_clear(&self->scratch, true);
}

/* agg_store_put into the series s. */
static int
s_put(agg_store_t *self, struct s_series *s, int64_t ts, double v)
{
    bool late = s->nchunks > 0 && ts <= s->sealed_max;
    size_t i;
    double old;

    if (s->n > 0 && ts <= s->ts[s->n - 1]) {
        i = s_lower(s->ts, s->n, ts);
        if (i < s->n && s->ts[i] == ts) {
            old = s->v[i];
            s->v[i] = v;
            s_roll_replace(self, s, ts, old, v);
            return 0;
        }
    } else {
        i = s->n;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->ts = xrealloc(s->ts, s->cap * sizeof *s->ts);
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    if (i < s->n) {
        memmove(s->ts + i + 1, s->ts + i, (s->n - i) * sizeof *s->ts);
        memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *s->v);
    }
    s->ts[i] = ts;
    s->v[i] = v;
    s->n++;
    self->head_points++;
    int fresh = 1;
    if (late) {
        /* The head now overlaps the chunks; reads merge, newest wins. */
        s->overlap = true;
        if (s_sealed_find(self, s, ts, &old))
            fresh = 0;
    }
    self->points += (size_t)fresh;
    if (fresh)
        agg_rollup_add(s->roll, ts, v);
    else
        s_roll_replace(self, s, ts, old, v);
    if (s->n >= AGG_STORE_CHUNK_POINTS)
        s_seal(self, s);
    return fresh;
}

int
agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v)
{
    return s_put(self, s_series_get(self, key), ts, v);
}

/* agg_store_put of n points of s in turn. A point after the head's last
 * and every chunk (a stream in time order: nearly all of them) is new
 * and goes to the end of the head; s_put's searches are for the rest. */
static size_t
s_put_run(agg_store_t *self, struct s_series *s, const int64_t *ts,
          const double *v, size_t n)
{
    size_t fresh = 0, from = 0; /* points [from, i) wait for the rollups */

    for (size_t i = 0; i < n; i++) {
        if ((s->n > 0 && ts[i] <= s->ts[s->n - 1]) ||
            (s->nchunks > 0 && ts[i] <= s->sealed_max) || s->n == s->cap) {
            /* s_put reads the rollups: bring them up to date first. */
            agg_rollup_add_run(s->roll, ts + from, v + from, i - from);
            from = i + 1;
            fresh += (size_t)s_put(self, s, ts[i], v[i]);
            continue;
        }
        s->ts[s->n] = ts[i];
        s->v[s->n] = v[i];
        s->n++;
        self->head_points++;
        self->points++;
        fresh++;
        if (s->n >= AGG_STORE_CHUNK_POINTS)
            s_seal(self, s);
    }
    agg_rollup_add_run(s->roll, ts + from, v + from, n - from);
    return fresh;
}

size_t
agg_store_put_run(agg_store_t *self, const char *key, const int64_t *ts,
                  const double *v, size_t n)
{
    return n ? s_put_run(self, s_series_get(self, key), ts, v, n) : 0;
}

size_t
agg_store_put_run_slot(agg_store_t *self, size_t slot, const char *key,
                       const int64_t *ts, const double *v, size_t n)
{
    struct s_series **c, *s;

    if (n == 0)
        return 0;
    if (self->slot == NULL)
        self->slot = xcalloc(S_SLOTS, sizeof *self->slot);
    c = &self->slot[slot % S_SLOTS];
    if ((s = *c) == NULL || strcmp(s->key, key) != 0)
        *c = s = s_series_get(self, key);
    return s_put_run(self, s, ts, v, n);
}

void
agg_store_prefetch_slot(const agg_store_t *self, size_t slot, int stage)
{
    const struct s_series *s;

    if (self->slot == NULL || (s = self->slot[slot % S_SLOTS]) == NULL)
        return;
    if (stage == 0) {
        __builtin_prefetch(s);
    } else if (stage == 1) {
        if (s->n < s->cap) {
            __builtin_prefetch(s->ts + s->n, 1);
            __builtin_prefetch(s->v + s->n, 1);
        }
        __builtin_prefetch(s->key); /* compared with the batch's key */
        agg_rollup_prefetch(s->roll, 0);
    } else {
        agg_rollup_prefetch(s->roll, 1);
    }
}

size_t
agg_store_series(const agg_store_t *self)
{
    return zhashx_size(self->series);
}

size_t
agg_store_points(const agg_store_t *self)
{
    return self->points;
}

size_t
agg_store_chunks(const agg_store_t *self)
{
    return self->chunks;
}

uint64_t
agg_store_chunk_bytes(const agg_store_t *self)
{
    return self->chunk_bytes;
}

size_t
agg_store_head_points(const agg_store_t *self)
{
    return self->head_points;
}

uint64_t
agg_store_reseals(const agg_store_t *self)
{
    return self->reseals;
}

uint64_t
agg_store_reseal_points(const agg_store_t *self)
{
    return self->reseal_points;
}

uint64_t
agg_store_compacted_chunks(const agg_store_t *self)
{
    return self->compacted;
}

uint64_t
agg_store_compactions(const agg_store_t *self)
{
    return self->compactions;
}

int64_t
agg_store_compact_ms(const agg_store_t *self)
{
    return self->compact_ns / 1000000;
}

uint64_t
agg_store_compact_dropped(const agg_store_t *self)
{
    return self->compact_dropped;
}

int64_t
agg_store_compact_loop_max_ms(const agg_store_t *self)
{
    return self->compact_loop_max_ns / 1000000;
}

uint64_t
agg_store_head_merge_points(const agg_store_t *self)
{
    return self->head_merge_points;
}

struct s_pt {
    int64_t ts;   /* timestamp */
    double v;     /* value */
    uint32_t gen; /* write order: higher wins on equal ts */
};

static int
s_pt_cmp(const void *a, const void *b)
{
    const struct s_pt *x = a, *y = b;
    if (x->ts != y->ts)
        return (x->ts > y->ts) - (x->ts < y->ts);
    return (x->gen > y->gen) - (x->gen < y->gen);
}

/* Chunks that may overlap, in write order (later ones win on an equal
 * timestamp): gather, sort, keep the newest of each timestamp. The
 * merged arrays are in the scratch space. */
static void
s_merge_chunks(agg_store_t *self, const struct s_chunk *chunks, size_t nchunks,
               struct agg_view *out)
{
    size_t total = 0, k = 0, m = 0;
    struct s_pt *pts;
    int64_t *ts;
    double *v;

    for (size_t i = 0; i < nchunks; i++)
        total += chunks[i].n;
    pts = xmalloc((total ? total : 1) * sizeof *pts);
    ts = xmalloc(AGG_CHUNK_POINTS_MAX * sizeof *ts);
    v = xmalloc(AGG_CHUNK_POINTS_MAX * sizeof *v);
    for (size_t i = 0; i < nchunks; i++) {
        const struct s_chunk *c = &chunks[i];
        size_t n = agg_chunk_decode_with(self->dctx, c->data, c->len, ts, v,
                                         AGG_CHUNK_POINTS_MAX);
        for (size_t j = 0; j < n; j++)
            pts[k++] = (struct s_pt){ts[j], v[j], (uint32_t)i};
    }
    free(ts);
    free(v);
    qsort(pts, k, sizeof *pts, s_pt_cmp);
    ts = s_scratch_alloc(&self->scratch, k * sizeof *ts);
    v = s_scratch_alloc(&self->scratch, k * sizeof *v);
    for (size_t j = 0; j < k; j++) {
        if (j + 1 < k && pts[j + 1].ts == pts[j].ts)
            continue; /* a newer write of this timestamp follows */
        ts[m] = pts[j].ts;
        v[m++] = pts[j].v;
    }
    free(pts);
    out->ts = ts;
    out->v = v;
    out->n = m;
}

/* Append disjoint chunks holding the points given (ascending, unique). */
static void
s_chunk_points(agg_store_t *self, struct s_series *s, const int64_t *ts,
               const double *v, size_t n)
{
    for (size_t i = 0; i < n; i += AGG_STORE_CHUNK_POINTS) {
        size_t k = n - i < AGG_STORE_CHUNK_POINTS ? n - i : AGG_STORE_CHUNK_POINTS;
        struct s_chunk c = {ts[i], ts[i + k - 1], NULL, 0, (uint32_t)k};
        c.len = (uint32_t)agg_chunk_encode(ts + i, v + i, k, &c.data);
        s_add_chunk(self, s, &c);
    }
}

/* Replace the chunks of s by disjoint ones holding the points given
 * (ascending, unique), in memory only. */
static void
s_rechunk(agg_store_t *self, struct s_series *s, const int64_t *ts,
          const double *v, size_t n)
{
    for (size_t i = 0; i < s->nchunks; i++) {
        self->chunk_bytes -= s->chunks[i].len;
        s_data_free(self, s->chunks[i].data);
    }
    self->chunks -= s->nchunks;
    s->nchunks = 0;
    s->sealed_max = INT64_MIN;
    s->chunk_epoch++;
    s_chunk_points(self, s, ts, v, n);
    s->chunk_overlap = false;
    s->overlap = s->n > 0 && s->nchunks > 0 && s->ts[0] <= s->sealed_max;
}

/* Chunks that overlap (late points sealed after later ones) are put in
 * time order, and each group of chunks whose time ranges overlap is
 * merged, newest write winning, and cut into disjoint chunks again, so
 * reads decode in order instead of sorting. Chunks that overlap no other
 * are kept as they are: the work is the overlapping groups' points, not
 * the series'. In memory only: the chunk file's records say the same,
 * and a restart reseals on the first read; a retention or delete rewrite
 * writes the resealed chunks. The head is left alone (its points are in
 * the WAL, not yet in the chunk file); reads merge the part of it that
 * overlaps the chunks. */
static void
s_reseal(agg_store_t *self, struct s_series *s)
{
    size_t n = s->nchunks;
    struct s_chunk *old = s->chunks, *group = xmalloc(n * sizeof *group);
    struct s_pt *ord = xmalloc(n * sizeof *ord); /* by tmin, then index */

    for (size_t i = 0; i < n; i++)
        ord[i] = (struct s_pt){old[i].tmin, 0, (uint32_t)i};
    qsort(ord, n, sizeof *ord, s_pt_cmp);
    s->chunks = NULL;
    s->nchunks = s->capch = 0;
    s->sealed_max = INT64_MIN;
    s->chunk_epoch++;
    self->chunks -= n;
    for (size_t g = 0, h; g < n; g = h) {
        int64_t gmax = old[ord[g].gen].tmax;
        for (h = g + 1; h < n && old[ord[h].gen].tmin <= gmax; h++)
            if (old[ord[h].gen].tmax > gmax)
                gmax = old[ord[h].gen].tmax;
        if (h == g + 1) {
            self->chunk_bytes -= old[ord[g].gen].len;
            s_add_chunk(self, s, &old[ord[g].gen]);
            continue;
        }
        /* The group in write order, so the newest write wins. */
        size_t ng = h - g, *idx = xmalloc(ng * sizeof *idx);
        struct agg_view v;
        for (size_t j = 0; j < ng; j++)
            idx[j] = ord[g + j].gen;
        for (size_t j = 1; j < ng; j++) /* insertion sort: groups are small */
            for (size_t k = j; k > 0 && idx[k - 1] > idx[k]; k--) {
                size_t t = idx[k];
                idx[k] = idx[k - 1];
                idx[k - 1] = t;
            }
        for (size_t j = 0; j < ng; j++)
            group[j] = old[idx[j]];
        s_merge_chunks(self, group, ng, &v);
        self->reseals++;
        for (size_t j = 0; j < ng; j++) {
            self->reseal_points += group[j].n;
            self->chunk_bytes -= group[j].len;
            s_data_free(self, group[j].data);
        }
        s_chunk_points(self, s, v.ts, v.v, v.n);
        free(idx);
    }
    free(ord);
    free(group);
    free(old);
    s->chunk_overlap = false;
    s->overlap = s->n > 0 && s->nchunks > 0 && s->ts[0] <= s->sealed_max;
}

/* The first chunk that ends at start or later: chunks are in time order
 * and do not overlap (no chunk_overlap), so bisect. */
static size_t
s_first_chunk(const struct s_series *s, int64_t start)
{
    size_t lo = 0, hi = s->nchunks;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->chunks[mid].tmax < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Disjoint chunks in time order, then the head: decode the chunks the
 * range touches into one array and add the head's points of the range.
 * A head that overlaps the chunks (late points not sealed yet) is merged
 * in place from its first point on, the head winning on an equal
 * timestamp (it was written later): the decoded points before it stay
 * where they are, so the work is the overlap, not the range. */
static void
s_view(agg_store_t *self, struct s_series *s, int64_t start, int64_t end,
       struct agg_view *out)
{
    size_t total = 0, k = 0;
    size_t ha = s_lower(s->ts, s->n, start);
    size_t hb = end == INT64_MAX ? s->n : s_lower(s->ts, s->n, end);
    int64_t *ts;
    double *v;

    if (hb < ha)
        hb = ha;
    if (s->chunk_overlap)
        s_reseal(self, s);
    if (s->nchunks == 0 || s->sealed_max < start) {
        out->ts = s->ts + ha;
        out->v = s->v + ha;
        out->n = hb - ha;
        return;
    }
    size_t first = s_first_chunk(s, start);
    for (size_t i = first; i < s->nchunks && s->chunks[i].tmin < end; i++)
        total += s->chunks[i].n;
    total += hb - ha;
    ts = s_scratch_alloc(&self->scratch, total * sizeof *ts);
    v = s_scratch_alloc(&self->scratch, total * sizeof *v);
    for (size_t i = first; i < s->nchunks && s->chunks[i].tmin < end; i++) {
        const struct s_chunk *c = &s->chunks[i];
        k += agg_chunk_decode_with(self->dctx, c->data, c->len, ts + k, v + k,
                                   total - k);
    }
    if (hb > ha && k > 0 && s->ts[ha] <= ts[k - 1]) {
        /* Move the decoded points from the head's first one on aside,
         * then merge them and the head back. */
        size_t p = s_lower(ts, k, s->ts[ha]), m = k - p, i = 0, j = ha;
        int64_t *mt = xmalloc(m * sizeof *mt);
        double *mv = xmalloc(m * sizeof *mv);
        memcpy(mt, ts + p, m * sizeof *mt);
        memcpy(mv, v + p, m * sizeof *mv);
        self->head_merge_points += m + (hb - ha);
        k = p;
        while (i < m || j < hb) {
            if (j == hb || (i < m && mt[i] < s->ts[j])) {
                ts[k] = mt[i];
                v[k++] = mv[i++];
            } else {
                if (i < m && mt[i] == s->ts[j])
                    i++; /* the head's write is the newer one */
                ts[k] = s->ts[j];
                v[k++] = s->v[j++];
            }
        }
        free(mt);
        free(mv);
    } else if (hb > ha) {
        memcpy(ts + k, s->ts + ha, (hb - ha) * sizeof *ts);
        memcpy(v + k, s->v + ha, (hb - ha) * sizeof *v);
        k += hb - ha;
    }
    size_t a = s_lower(ts, k, start);
    size_t b = end == INT64_MAX ? k : s_lower(ts, k, end);
    out->ts = ts + a;
    out->v = v + a;
    out->n = b > a ? b - a : 0;
}

/* The series matching sel/filters into self->found; returns how many. */
static size_t
s_match(agg_store_t *self, const char *sel, const struct series_tag *filters,
        size_t nfilters)
{
    struct s_series *exact = NULL;

    self->nfound = 0;
    s_scratch_clear(&self->scratch, true);
    /* An exact key with no filters is one lookup; anything else scans.
     * Filters that only require a tag to be absent (apid's scope for the
     * default tenant, {tenant=""}) keep the lookup: they are checked on
     * the one series found. */
    size_t npresent = 0;
    for (size_t i = 0; i < nfilters; i++)
        npresent += filters[i].value[0] != '\0';
    if (npresent == 0 && (exact = zhashx_lookup(self->series, sel)) == NULL &&
        strchr(sel, '{'))
        return 0;
    if (exact && !series_match(exact->key, sel, filters, nfilters))
        return 0;
    for (struct s_series *s = exact ? exact : zhashx_first(self->series); s;
         s = exact ? NULL : zhashx_next(self->series)) {
        if (!exact && !series_match(s->key, sel, filters, nfilters))
            continue;
        if (self->nfound == self->capfound) {
            self->capfound = self->capfound ? self->capfound * 2 : 8;
            self->found = xrealloc(self->found,
                                   self->capfound * sizeof *self->found);
        }
        self->found[self->nfound++] = s;
    }
    return self->nfound;
}

size_t
agg_store_select(agg_store_t *self, const char *sel,
                 const struct series_tag *filters, size_t nfilters,
                 int64_t start, int64_t end, struct agg_view **views)
{
    size_t n = s_match(self, sel, filters, nfilters);
    struct agg_view *out = n ? xmalloc(n * sizeof *out) : NULL;

    for (size_t i = 0; i < n; i++) {
        out[i].key = self->found[i]->key;
        s_view(self, self->found[i], start, end, &out[i]);
    }
    *views = out;
    return n;
}

int
agg_store_visit(agg_store_t *self, const char *key, int64_t start,
                int64_t end, agg_store_chunk_fn chunk, agg_store_head_fn head,
                void *arg)
{
    struct s_series *s = zhashx_lookup(self->series, key);

    if (s == NULL)
        return -1;
    if (s->chunk_overlap)
        s_reseal(self, s);
    for (size_t i = s_first_chunk(s, start); i < s->nchunks && s->chunks[i].tmin < end; i++) {
        const struct s_chunk *c = &s->chunks[i];
        if (s->n > 0 && c->tmax >= s->ts[0]) {
            /* The head overlaps this chunk and the later ones (late
             * points not sealed yet): s_view merges them from here on,
             * and the merged points go to head(). */
            struct agg_view v;
            s_view(self, s, c->tmin > start ? c->tmin : start, end, &v);
            int rc = v.n > 0 && head(arg, v.ts, v.v, v.n);
            s_scratch_clear(&self->scratch, true);
            return rc;
        }
        if (chunk(arg, self->dctx, c->data, c->len, c->n, c->tmin, c->tmax))
            return 1;
    }
    size_t ha = s_lower(s->ts, s->n, start);
    size_t hb = end == INT64_MAX ? s->n : s_lower(s->ts, s->n, end);
    if (hb > ha && head(arg, s->ts + ha, s->v + ha, hb - ha))
        return 1;
    return 0;
}

void
agg_store_seal_all(agg_store_t *self)
{
    self->wbuffer = self->fd != -1;
    self->wlen = 0;
    self->wns = 0;
    self->wfrom = self->files.chunk_len;
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        s_seal(self, s);
    s_wbuf_flush(self);
    self->wbuffer = false;
    if (self->wcap > 4 * S_WBUF_MAX) { /* a huge chunk made it grow */
        free(self->wbuf);
        self->wbuf = NULL;
        self->wcap = 0;
    }
}

size_t
agg_store_keys(agg_store_t *self, const char *sel,
               const struct series_tag *filters, size_t nfilters,
               const char ***keys)
{
    size_t n = s_match(self, sel, filters, nfilters);
    const char **out = n ? xmalloc(n * sizeof *out) : NULL;

    for (size_t i = 0; i < n; i++)
        out[i] = self->found[i]->key;
    *keys = out;
    return n;
}

/* Raw points of [a, b) into the summary. */
static void
s_sum_raw(agg_store_t *self, struct s_series *s, int64_t a, int64_t b,
          struct agg_rsum *sum, agg_sketch_t *sk)
{
    struct agg_view v;

    if (a >= b)
        return;
    s_view(self, s, a, b, &v);
    for (size_t i = 0; i < v.n; i++) {
        agg_rsum_add(sum, v.ts[i], v.v[i]);
        if (sk)
            agg_sketch_add(sk, v.v[i]);
    }
    s_scratch_clear(&self->scratch, true);
}

static int64_t
s_ceil_to(int64_t t, int64_t w)
{
    int64_t f = t / w * w;
    if (f > t)
        f -= w;
    return f == t ? t : f + w;
}

/* [a, b) from the whole buckets of tier and finer tiers (then raw) at the
 * edges, in time order. */
static void
s_sum_range(agg_store_t *self, struct s_series *s, int tier, int64_t a,
            int64_t b, struct agg_rsum *sum, agg_sketch_t *sk)
{
    if (a >= b)
        return;
    if (tier < 0) {
        s_sum_raw(self, s, a, b, sum, sk);
        return;
    }
    int64_t w = agg_rollup_width(tier), A = s_ceil_to(a, w);
    int64_t B = s_ceil_to(b, w) == b ? b : s_ceil_to(b, w) - w;
    if (A >= B) {
        s_sum_range(self, s, tier - 1, a, b, sum, sk);
        return;
    }
    s_sum_range(self, s, tier - 1, a, A, sum, sk);
    agg_rollup_merge(s->roll, tier, A, B, sum, sk);
    s_sum_range(self, s, tier - 1, B, b, sum, sk);
}

int
agg_store_summarize(agg_store_t *self, const char *key, int64_t start,
                    int64_t end, struct agg_rsum *sum, agg_sketch_t *sk)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    int64_t first, last;

    if (s == NULL)
        return -1;
    if (!agg_rollup_span(s->roll, &first, &last))
        return 0;
    if (start < first)
        start = first;
    if (end > last)
        end = last;
    s_sum_range(self, s, AGG_ROLLUP_DAY, start, end, sum, sk);
    return 0;
}

size_t
agg_store_raw_estimate(agg_store_t *self, const char *key, int64_t start,
                       int64_t end)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    size_t n = 0;

    if (s == NULL)
        return 0;
    if (start < s->raw_from)
        return SIZE_MAX;
    for (size_t i = 0; i < s->nchunks; i++)
        if (s->chunks[i].tmax >= start && s->chunks[i].tmin < end)
            n += s->chunks[i].n;
    return n + s->n;
}

bool
agg_store_rollups_exact(agg_store_t *self, const char *key, int64_t start,
                        int64_t end)
{
    const struct s_series *s = zhashx_lookup(self->series, key);

    return s && start >= s->raw_from &&
           (end <= s->stale_lo || start >= s->stale_hi);
}

const agg_rollup_t *
agg_store_rollup(agg_store_t *self, const char *key)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    return s ? s->roll : NULL;
}

bool
agg_store_span(agg_store_t *self, const char *key, int64_t *first,
               int64_t *end)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    return s && agg_rollup_span(s->roll, first, end);
}

/* Distinct points of a series, chunks and head (a view of all of it,
 * which reseals chunks that overlap). */
static size_t
s_distinct(agg_store_t *self, struct s_series *s)
{
    size_t n = s->n;
    struct agg_view v;

    if (s->overlap) {
        s_view(self, s, INT64_MIN, INT64_MAX, &v);
        s_scratch_clear(&self->scratch, true);
        return v.n;
    }
    for (size_t i = 0; i < s->nchunks; i++)
        n += s->chunks[i].n;
    return n;
}

/* Drop the points of chunk c before t (c holds some, and some from t
 * on): compacted chunks are large, and retention would otherwise keep up
 * to AGG_STORE_COMPACT_POINTS raw points a series past its limit. True
 * when c changed. */
static bool
s_chunk_cut(agg_store_t *self, struct s_chunk *c, int64_t t)
{
    int64_t *ts = xmalloc(c->n * sizeof *ts);
    double *v = xmalloc(c->n * sizeof *v);
    size_t n = agg_chunk_decode_with(self->dctx, c->data, c->len, ts, v, c->n);
    size_t a = s_lower(ts, n, t);
    bool changed = n == c->n && a > 0 && a < n;

    if (changed) {
        self->chunk_bytes -= c->len;
        s_data_free(self, c->data);
        c->tmin = ts[a];
        c->n = (uint32_t)(n - a);
        c->len = (uint32_t)agg_chunk_encode(ts + a, v + a, n - a, &c->data);
        self->chunk_bytes += c->len;
    }
    free(ts);
    free(v);
    return changed;
}

size_t
agg_store_expire(agg_store_t *self, int64_t raw_before,
                 const int64_t tier_before[AGG_ROLLUP_TIERS])
{
    size_t dropped = 0;

    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        size_t k = 0, before = 0;
        bool cut = false;
        for (size_t i = 0; i < s->nchunks; i++)
            if (s->chunks[i].tmin < raw_before) {
                before = s_distinct(self, s); /* only when some go */
                break;
            }
        for (size_t i = 0; i < s->nchunks; i++) {
            struct s_chunk *c = &s->chunks[i];
            if (c->tmax < raw_before) {
                self->chunks--;
                self->chunk_bytes -= c->len;
                s_data_free(self, c->data);
                dropped++;
                continue;
            }
            if (c->tmin < raw_before)
                cut = s_chunk_cut(self, c, raw_before) || cut;
            s->chunks[k++] = *c;
        }
        if (k < s->nchunks || cut) {
            s->nchunks = k;
            s->chunk_epoch++;
            s->sealed_max = INT64_MIN;
            for (size_t i = 0; i < k; i++)
                if (s->chunks[i].tmax > s->sealed_max)
                    s->sealed_max = s->chunks[i].tmax;
            self->points -= before - s_distinct(self, s);
            self->chunk_rewrite = true;
            if (raw_before > s->raw_from) {
                /* Buckets starting before it now live only on disk. */
                s->raw_from = raw_before;
                self->rollup_rewrite = true;
            }
        }
        for (int t = 0; t < AGG_ROLLUP_TIERS; t++)
            if (tier_before[t] != INT64_MIN &&
                agg_rollup_expire(s->roll, t, tier_before[t]) > 0) {
                self->rollup_rewrite = true;
                s_stale(s, INT64_MIN, tier_before[t]);
            }
    }
    return dropped;
}

/* Replace the chunks and head of s by the points given (ascending,
 * unique): sealed in memory; the next sync writes them (chunk_rewrite). */
/* Replace the chunks and head of s by the points given (ascending,
 * unique), sealed; the next sync writes them (chunk_rewrite). */
static void
s_reload(agg_store_t *self, struct s_series *s, const int64_t *ts,
         const double *v, size_t n)
{
    self->head_points -= s->n;
    s->n = 0;
    s_rechunk(self, s, ts, v, n);
    self->chunk_rewrite = true;
}

/* Drop the series s (key) with its chunks, head and rollups. */
static void
s_remove(agg_store_t *self, struct s_series *s, const char *key)
{
    self->chunks -= s->nchunks;
    for (size_t i = 0; i < s->nchunks; i++) {
        self->chunk_bytes -= s->chunks[i].len;
        s_data_free(self, s->chunks[i].data); /* not by the destructor */
    }
    s->nchunks = 0;
    self->head_points -= s->n;
    if (self->slot) /* it may be cached there */
        memset(self->slot, 0, S_SLOTS * sizeof *self->slot);
    zhashx_delete(self->series, key);
    self->chunk_rewrite = self->rollup_rewrite = true;
}

long long
agg_store_delete(agg_store_t *self, const char *key, int64_t start,
                 int64_t end, bool *partial)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    struct agg_view all;
    int64_t *ts, first, last;
    double *v;
    size_t n = 0, gone;

    *partial = false;
    if (s == NULL)
        return -1;
    s_view(self, s, INT64_MIN, INT64_MAX, &all);
    if (start == INT64_MIN && end == INT64_MAX) {
        gone = all.n;
        s_scratch_clear(&self->scratch, true);
        self->points -= gone;
        s_remove(self, s, key);
        return (long long)gone;
    }
    ts = xmalloc((all.n ? all.n : 1) * sizeof *ts);
    v = xmalloc((all.n ? all.n : 1) * sizeof *v);
    for (size_t i = 0; i < all.n; i++)
        if (all.ts[i] < start || all.ts[i] >= end) {
            ts[n] = all.ts[i];
            v[n++] = all.v[i];
        }
    gone = all.n - n;
    /* Days that straddle an edge, with their raw counts before. */
    int64_t edge[2] = {start, end};
    uint64_t before[2] = {0, 0};
    for (int e = 0; e < 2; e++) {
        int64_t d;
        if (!s_edge_day(edge[e], &d))
            continue;
        for (size_t i = 0; i < all.n; i++)
            before[e] += all.ts[i] >= d && all.ts[i] < d + S_NS_DAY;
    }
    s_scratch_clear(&self->scratch, true);
    if (gone > 0)
        s_reload(self, s, ts, v, n);
    self->points -= gone;
    /* Rollups: whole buckets inside go; straddling days are rebuilt. */
    if (agg_rollup_span(s->roll, &first, &last)) {
        int64_t a = start > first ? start : first, b = end < last ? end : last;
        for (int t = 0; t < AGG_ROLLUP_TIERS && a < b; t++) {
            int64_t w = agg_rollup_width(t);
            int64_t lo = s_ceil_to(a, w), hi = b / w * w - (b % w < 0 ? w : 0);
            if (lo < hi)
                agg_rollup_drop_tier(s->roll, t, lo, hi);
        }
        for (int e = 0; e < 2; e++) {
            int64_t d, d0;
            if (!s_edge_day(edge[e], &d) ||
                (e == 1 && s_edge_day(start, &d0) && d0 == d))
                continue;
            if (before[e] != agg_rollup_count_at(s->roll, AGG_ROLLUP_DAY, d)) {
                *partial = true;
                s_stale(s, d, d + S_NS_DAY);
                continue;
            }
            agg_rollup_drop(s->roll, d, d + S_NS_DAY);
            for (size_t i = s_lower(ts, n, d); i < n && ts[i] < d + S_NS_DAY; i++)
                agg_rollup_add(s->roll, ts[i], v[i]);
        }
        self->rollup_rewrite = true;
    }
    free(ts);
    free(v);
    /* Nothing left, raw or rolled up: the series goes, as it would at
     * the next start (no chunk, no bucket names it), so that listings
     * and selections do not change across a restart. */
    if (n == 0 && !agg_rollup_span(s->roll, &first, &last))
        s_remove(self, s, key);
    return (long long)gone;
}

size_t
agg_store_rollup_buckets(const agg_store_t *self, int tier)
{
    size_t n = 0;
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        n += agg_rollup_buckets(s->roll, tier);
    return n;
}

size_t
agg_store_rollup_bytes(const agg_store_t *self)
{
    size_t n = 0;
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        n += agg_rollup_bytes(s->roll);
    return n;
}

/* Write a whole new generation of a file: every chunk, or every
 * rollup. Returns the new fd or -1; the sync that follows fdatasyncs it
 * (agg_store_sync, or aggd's checkpoint thread). */
static int
s_rewrite(agg_store_t *self, const char *kind, uint64_t gen, uint64_t *len)
{
    char *path = s_path(self, kind, gen);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    bool chunks = strcmp(kind, "chunks") == 0;

    *len = 0;
    if (fd == -1) {
        log_warn("agg_store: cannot create %s", path);
        self->io_failed = true;
    }
    for (struct s_series *s = zhashx_first(self->series); s && fd != -1;
         s = zhashx_next(self->series)) {
        if (chunks)
            for (size_t i = 0; i < s->nchunks; i++)
                s_write_chunk(self, fd, len, s->key, &s->chunks[i]);
        else
            s_write_rollup(self, fd, len, s, true, s->raw_from);
    }
    if (fd != -1 && self->io_failed) {
        log_warn("agg_store: cannot write %s", path);
        self->io_failed = true;
        close(fd);
        fd = -1;
    }
    free(path);
    return fd;
}

int64_t
agg_store_seal_write_ns(const agg_store_t *self)
{
    return self->wns;
}

void
agg_store_retry(agg_store_t *self)
{
    if (!self->io_failed)
        return;
    self->io_failed = false;
    self->chunk_rewrite = true;
    self->rollup_rewrite = true;
}

/* Chunk compaction. A run is a maximal stretch of adjacent chunks of a
 * series from i on holding AGG_STORE_COMPACT_POINTS points at most
 * together. At an ordinary sync it holds only small chunks (under half
 * that size: a big chunk is not encoded again) and is worth merging when
 * it has two chunks or more and either half the points of a big chunk or
 * AGG_STORE_COMPACT_RUN chunks; so a point is encoded again once on its
 * way into a big chunk, plus once per AGG_STORE_COMPACT_RUN checkpoints
 * while its series grows too slowly to fill one. At a clean stop
 * (agg_store_compact_all) a run may also hold a big chunk, and two chunks
 * are enough; before, a series' newest chunk is left out (a late point
 * for the recent past, common when batches arrive out of order, looks
 * its timestamp up in a chunk of at most AGG_STORE_CHUNK_POINTS then,
 * s_sealed_find). Only series whose chunks are in time order without overlap
 * (as written in order) are compacted: there, merging adjacent chunks
 * changes no answer (no two hold the same timestamp, so which write wins
 * does not arise). Returns the end of the run (exclusive, > i) and sets
 * *worth. */
static size_t
s_compact_run(const struct s_chunk *ch, size_t nch, size_t i, bool all,
              bool *worth)
{
    enum { BIG = AGG_STORE_COMPACT_POINTS / 2 };
    size_t j = i, pts = 0;
    size_t end = all || nch == 0 ? nch : nch - 1;

    while (j < end && (all || ch[j].n < BIG) &&
           pts + ch[j].n <= AGG_STORE_COMPACT_POINTS)
        pts += ch[j++].n;
    *worth = j - i >= 2 &&
             (all || pts >= BIG || j - i >= AGG_STORE_COMPACT_RUN);
    return j > i ? j : i + 1;
}

/* Chunks compaction would merge away now, and the points it would
 * encode again (*pts). */
static size_t
s_compact_gain(const agg_store_t *self, bool all, size_t *pts)
{
    size_t gain = 0;
    bool worth;

    *pts = 0;
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        if (s->chunk_overlap)
            continue;
        for (size_t i = 0, j; i < s->nchunks; i = j) {
            j = s_compact_run(s->chunks, s->nchunks, i, all, &worth);
            if (worth)
                gain += j - i - 1;
            for (size_t k = i; worth && k < j; k++)
                *pts += s->chunks[k].n;
        }
    }
    return gain;
}

/* Merge the runs worth it of in[0..n) into one chunk each: out gets the
 * chunks in order, the others as they are; fresh[k] tells which out[k]
 * were encoded here, gone[m] which in[m] they replace. A chunk that does
 * not decode to the count its header gives is left alone, with its run.
 * Touches nothing shared (dctx may be NULL): the compaction thread runs
 * it. Returns the number of out chunks. */
static size_t
s_compact_chunks(agg_chunk_dctx_t *dctx, const struct s_chunk *in, size_t n,
                 bool all, int64_t *ts, double *v, struct s_chunk *out,
                 bool *fresh, bool *gone)
{
    size_t k = 0;
    bool worth;

    for (size_t i = 0, j; i < n; i = j) {
        size_t np = 0, got = 0;
        j = s_compact_run(in, n, i, all, &worth);
        for (size_t m = i; worth && m < j; m++, np += got)
            worth = (got = agg_chunk_decode_with(
                         dctx, in[m].data, in[m].len, ts + np, v + np,
                         AGG_STORE_COMPACT_POINTS - np)) == in[m].n;
        for (size_t m = i; m < j; m++)
            gone[m] = worth;
        if (!worth) {
            for (size_t m = i; m < j; m++) {
                fresh[k] = false;
                out[k++] = in[m];
            }
            continue;
        }
        struct s_chunk c = {in[i].tmin, in[j - 1].tmax, NULL, 0, (uint32_t)np};
        c.len = (uint32_t)agg_chunk_encode(ts, v, np, &c.data);
        fresh[k] = true;
        out[k++] = c;
    }
    return k;
}

/* Replace the first nin chunks of s by out[0..nout) (their compaction;
 * gone[m]: chunk m was merged away), keeping the chunks sealed since. */
static void
s_install(agg_store_t *self, struct s_series *s, size_t nin,
          const struct s_chunk *out, size_t nout, const bool *gone)
{
    size_t rest = s->nchunks - nin;
    struct s_chunk *ch = xmalloc((nout + rest + 1) * sizeof *ch);

    for (size_t m = 0; m < nin; m++) {
        self->chunk_bytes -= s->chunks[m].len;
        if (gone[m])
            s_data_free(self, s->chunks[m].data);
    }
    for (size_t k = 0; k < nout; k++)
        self->chunk_bytes += out[k].len;
    memcpy(ch, out, nout * sizeof *ch);
    memcpy(ch + nout, s->chunks + nin, rest * sizeof *ch);
    free(s->chunks);
    s->chunks = ch;
    s->nchunks = s->capch = nout + rest;
    self->chunks -= nin - nout;
    self->compacted += nin - nout;
    s->chunk_epoch++;
}

/* Compact s on the calling thread (a clean stop). */
static void
s_compact_series(agg_store_t *self, struct s_series *s, bool all,
                 int64_t *ts, double *v)
{
    size_t n = s->nchunks;
    struct s_chunk *out = xmalloc((n + 1) * sizeof *out);
    bool *flags = xmalloc(2 * n + 1);
    size_t k = s_compact_chunks(self->dctx, s->chunks, n, all, ts, v, out,
                                flags, flags + n);

    if (k < n)
        s_install(self, s, n, out, k, flags + n);
    free(out);
    free(flags);
}

/* Put chunks sealed out of order (batches applied out of order seal late
 * points) in order, as the next read would (s_reseal; the file's records
 * hold the same points), at most about budget points of them (all when
 * 0). Their merged arrays are taken back at once: views do not outlive a
 * checkpoint. */
static void
s_reseal_some(agg_store_t *self, uint64_t budget)
{
    uint64_t p0 = self->reseal_points;

    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        if (budget && self->reseal_points - p0 >= budget)
            break;
        if (s->chunk_overlap) {
            s_reseal(self, s);
            s_scratch_clear(&self->scratch, true);
        }
    }
}

static void
s_loop_step(agg_store_t *self, int64_t t0)
{
    int64_t ns = clock_mono_ns() - t0;

    if (ns > self->compact_loop_max_ns)
        self->compact_loop_max_ns = ns;
}

/* At a clean stop (agg_store_compact_all), on the calling thread: merge
 * any run of two chunks or more as long as that encodes at most
 * AGG_STORE_COMPACT_ALL_MAX points again (a stop stays quick), else
 * what an ordinary sync would; the sync then writes a new generation. */
static void
s_compact_stop(agg_store_t *self)
{
    bool all = true;
    size_t pts, gain, before = self->chunks;
    int64_t t0 = clock_mono_ns();

    s_reseal_some(self, 0);
    gain = s_compact_gain(self, all, &pts);
    self->compact_all = false;
    if (pts > AGG_STORE_COMPACT_ALL_MAX)
        gain = s_compact_gain(self, all = false, &pts);
    if (gain == 0)
        return;
    int64_t *ts = xmalloc(AGG_STORE_COMPACT_POINTS * sizeof *ts);
    double *v = xmalloc(AGG_STORE_COMPACT_POINTS * sizeof *v);
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        if (!s->chunk_overlap)
            s_compact_series(self, s, all, ts, v);
    free(ts);
    free(v);
    self->compactions++;
    self->chunk_rewrite = true;
    self->compact_ns = clock_mono_ns() - t0;
    s_loop_step(self, t0);
    log_info("agg_store: compaction at stop: %zu chunks into %zu (%zu points "
             "encoded again) in %lld ms", before, self->chunks, pts,
             (long long)(self->compact_ns / 1000000));
}

/* The compaction thread: compact the snapshot's series and write every
 * chunk into the file j->tmp, fdatasync'd. It reads the snapshot and the
 * chunk data it points to, which the loop keeps (s_data_free) until the
 * job is reaped, and writes only the job. */
static void *
s_cjob_run(void *arg)
{
    struct s_cjob *j = arg;
    int64_t t0 = clock_mono_ns();
    int64_t *ts = xmalloc(AGG_STORE_COMPACT_POINTS * sizeof *ts);
    double *v = xmalloc(AGG_STORE_COMPACT_POINTS * sizeof *v);
    agg_chunk_dctx_t *dctx = ZSTD_createDCtx();
    sigset_t all;

    sigfillset(&all); /* signals are the loop's */
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    j->fd = open(j->tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC,
                 0644);
    j->failed = j->fd == -1;
    for (size_t i = 0; i < j->nser && !j->failed; i++) {
        struct s_cser *c = &j->ser[i];
        c->out = xmalloc((c->nin + 1) * sizeof *c->out);
        c->fresh = xmalloc(2 * c->nin + 1);
        c->gone = c->fresh + c->nin;
        c->off = xmalloc((c->nin + 1) * sizeof *c->off);
        if (c->compact) {
            c->nout = s_compact_chunks(dctx, c->in, c->nin, false, ts, v,
                                       c->out, c->fresh, c->gone);
        } else {
            memcpy(c->out, c->in, c->nin * sizeof *c->in);
            memset(c->fresh, 0, 2 * c->nin);
            c->nout = c->nin;
        }
        for (size_t k = 0; k < c->nout && !j->failed; k++) {
            /* the record: header, key length, key, tmin and tmax, data */
            c->off[k] = j->len + S_HDR + 4 + strlen(c->key) + 16;
            j->failed = s_write_chunk_fd(j->fd, &j->len, c->key, &c->out[k]) == -1;
            if (c->fresh[k] && !j->failed) {
                j->pts += c->out[k].n;
                j->fresh_bytes += c->out[k].len;
                free(c->out[k].data);
                c->out[k].data = NULL;
            }
        }
        if (j->pause_ms > 0) /* tests: a compaction that lasts */
            usleep(j->pause_ms * 1000u);
    }
    if (!j->failed && fdatasync(j->fd) == -1)
        j->failed = true;
    j->ns = clock_mono_ns() - t0;
    ZSTD_freeDCtx(dctx);
    free(ts);
    free(v);
    atomic_store(&j->done, true);
    return NULL;
}

/* Forget a job's work: its new chunks (the store holds their points in
 * the chunks they were to replace) and its file. */
static void
s_cjob_free(struct s_cjob *j, bool drop_fresh)
{
    for (size_t i = 0; i < j->nser; i++) {
        struct s_cser *c = &j->ser[i];
        for (size_t k = 0; drop_fresh && c->out && k < c->nout; k++)
            if (c->fresh[k])
                free(c->out[k].data);
        free(c->key);
        free(c->in);
        free(c->out);
        free(c->fresh);
        free(c->off);
    }
    if (j->fd != -1)
        close(j->fd);
    free(j->ser);
    free(j->tmp);
    free(j);
}

/* At a sync with no compaction running: when merging would take away at
 * least 1/8 of the chunks (so the whole-file rewrite it costs stays a
 * fraction of what was appended meanwhile), snapshot every series'
 * chunk list and start a thread that compacts and writes them into a
 * new file (s_cjob_run). The loop goes on applying batches; a later sync
 * switches over (s_compact_reap). Out-of-order chunks are resealed here
 * first, S_RESEAL_BUDGET points a sync, so that the loop's share stays
 * bounded. */
static void
s_compact_start(agg_store_t *self)
{
    size_t pts, gain, k = 0;
    int64_t t0 = clock_mono_ns();
    const char *pause = getenv("AGGD_TEST_COMPACT_PAUSE_MS");
    struct s_cjob *j;

    s_reseal_some(self, S_RESEAL_BUDGET);
    gain = s_compact_gain(self, false, &pts);
    if (gain == 0 || gain * 8 < self->chunks) {
        s_loop_step(self, t0);
        return;
    }
    j = xcalloc(1, sizeof *j);
    j->fd = -1;
    j->tmp = xasprintf("%s/%s", self->dir, S_COMPACT_TMP);
    j->base_gen = self->files.chunk_gen;
    j->base_len = self->files.chunk_len;
    j->chunks = self->chunks;
    j->pause_ms = pause ? (unsigned)strtoul(pause, NULL, 10) : 0;
    j->ser = xmalloc((zhashx_size(self->series) + 1) * sizeof *j->ser);
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        if (s->nchunks == 0)
            continue;
        struct s_cser *c = &j->ser[k++];
        memset(c, 0, sizeof *c);
        c->key = xstrdup(s->key);
        c->epoch = s->chunk_epoch;
        c->nin = s->nchunks;
        c->in = xmalloc(s->nchunks * sizeof *c->in);
        memcpy(c->in, s->chunks, s->nchunks * sizeof *c->in);
        c->compact = !s->chunk_overlap;
    }
    j->nser = k;
    atomic_init(&j->done, false);
    if (pthread_create(&j->thread, NULL, s_cjob_run, j) != 0) {
        log_warnx("agg_store: cannot start the compaction thread");
        s_cjob_free(j, false);
        s_loop_step(self, t0);
        return;
    }
    self->job = j;
    log_debug("agg_store: compaction started: %zu series, %zu chunks, "
              "%zu points to encode again", k, self->chunks, pts);
    s_loop_step(self, t0);
}

/* Append bytes [from, to) of file fd to file out (O_APPEND), *len
 * tracking out's length. */
static int
s_copy_range(int fd, uint64_t from, uint64_t to, int out, uint64_t *len)
{
    char buf[1 << 16];

    while (from < to) {
        size_t want = to - from < sizeof buf ? (size_t)(to - from) : sizeof buf;
        ssize_t r = pread(fd, buf, want, (off_t)from);
        if (r <= 0 || write(out, buf, (size_t)r) != r)
            return -1;
        from += (uint64_t)r;
        *len += (uint64_t)r;
    }
    return 0;
}

/* Read the merged chunks of c back from the job's file fd (the thread
 * freed them once written; the file is in the page cache). Returns 0, or
 * -1 when one cannot be read (the series then keeps its own chunks: the
 * file's records hold the same points). */
static int
s_read_fresh(int fd, struct s_cser *c)
{
    for (size_t k = 0; k < c->nout; k++) {
        if (!c->fresh[k] || c->out[k].data)
            continue;
        c->out[k].data = xmalloc(c->out[k].len ? c->out[k].len : 1);
        if (pread(fd, c->out[k].data, c->out[k].len, (off_t)c->off[k]) !=
            (ssize_t)c->out[k].len) {
            log_warn("agg_store: compaction: cannot read back a chunk");
            return -1;
        }
    }
    return 0;
}

/* Switch over to a finished compaction (waiting for it when wait), on
 * the loop. Valid when no whole-file rewrite was done or is pending
 * since it began (retention, a delete and a failed write set one): then
 * the records appended to the old file since the snapshot are copied
 * after the new file's, so it holds the old file's points with the same
 * newest-write-wins order; the file is renamed to the next generation
 * (the checkpoint this sync is for names it; a crash before leaves an
 * orphan the cleanup deletes). A series whose chunks were only appended
 * to since gets the compacted chunks in memory; one resealed meanwhile
 * keeps its own (the same points). An invalid job is dropped with its
 * file; the next sync starts another. */
static void
s_compact_reap(agg_store_t *self, bool wait)
{
    struct s_cjob *j = self->job;
    int64_t t0;
    uint64_t len;
    char *path;
    bool ok;

    if (j == NULL || (!wait && !atomic_load(&j->done)))
        return;
    pthread_join(j->thread, NULL);
    t0 = clock_mono_ns();
    self->job = NULL;
    len = j->len;
    path = s_path(self, "chunks", j->base_gen + 1);
    ok = !j->failed && !self->io_failed && !self->chunk_rewrite &&
         self->fd != -1 && self->files.chunk_gen == j->base_gen;
    if (ok && (s_copy_range(self->fd, j->base_len, self->files.chunk_len,
                            j->fd, &len) == -1 ||
               rename(j->tmp, path) == -1)) {
        log_warn("agg_store: compaction: cannot complete %s", path);
        ok = false;
    }
    if (ok) {
        size_t kept = 0;
        for (size_t i = 0; i < j->nser; i++) {
            struct s_cser *c = &j->ser[i];
            struct s_series *s = zhashx_lookup(self->series, c->key);
            if (s && s->chunk_epoch == c->epoch && s->nchunks >= c->nin &&
                c->nout < c->nin && s_read_fresh(j->fd, c) == 0) {
                s_install(self, s, c->nin, c->out, c->nout, c->gone);
                c->nout = 0; /* installed: not freed with the job */
            } else if (c->nout < c->nin) {
                kept++;
            }
        }
        close(self->fd);
        self->fd = j->fd;
        j->fd = -1;
        self->files.chunk_gen = j->base_gen + 1;
        self->files.chunk_len = len;
        self->compactions++;
        log_info("agg_store: compaction: %zu chunks into %zu (%zu points "
                 "encoded again, %llu bytes of merged chunks read back; %zu "
                 "series changed meanwhile kept theirs) in %lld ms on its "
                 "thread, %lld ms on the loop", j->chunks, self->chunks,
                 j->pts, (unsigned long long)j->fresh_bytes, kept,
                 (long long)(j->ns / 1000000),
                 (long long)((clock_mono_ns() - t0) / 1000000));
        const char *stall = getenv("AGGD_TEST_COMPACT_SWITCH_MS");
        if (stall) /* tests: a kill -9 after the switch-over, before the
                      checkpoint names the new generation */
            usleep((useconds_t)strtoul(stall, NULL, 10) * 1000u);
    } else {
        if (j->fd != -1 && unlink(j->tmp) == -1)
            log_warn("agg_store: cannot delete %s", j->tmp);
        self->compact_dropped++;
        log_info("agg_store: compaction dropped (%s)",
                 j->failed ? "its file could not be written"
                           : "the chunk file was rewritten meanwhile");
    }
    self->compact_ns = j->ns + (clock_mono_ns() - t0);
    s_cjob_free(j, true);
    for (size_t i = 0; i < self->ngrave; i++)
        free(self->grave[i]);
    self->ngrave = 0;
    free(path);
    s_loop_step(self, t0);
}

void
agg_store_compact_all(agg_store_t *self)
{
    self->compact_all = true;
}

bool
agg_store_compacting(const agg_store_t *self)
{
    return self->job != NULL;
}

bool
agg_store_compact_done(const agg_store_t *self)
{
    return self->job != NULL && atomic_load(&self->job->done);
}

/* agg_store_sync up to the fdatasyncs. */
static int
s_sync_write(agg_store_t *self)
{
    int fd;
    uint64_t len;
    bool stop = self->compact_all;

    if (self->io_failed)
        return -1;
    s_compact_reap(self, stop);
    if (stop)
        s_compact_stop(self);
    if (self->chunk_rewrite) {
        if ((fd = s_rewrite(self, "chunks", self->files.chunk_gen + 1, &len)) == -1)
            return -1;
        close(self->fd);
        self->fd = fd;
        self->files.chunk_gen++;
        self->files.chunk_len = len;
        self->chunk_rewrite = false;
    }
    /* After a rewrite too: the file then holds what memory does. */
    if (!stop && self->job == NULL)
        s_compact_start(self);
    if (self->rollup_rewrite || self->rfd == -1 ||
        self->files.rollup_len > 2 * self->rollup_live + S_ROLLUP_SLACK) {
        if ((fd = s_rewrite(self, "rollups", self->files.rollup_gen + 1, &len)) == -1)
            return -1;
        if (self->rfd != -1)
            close(self->rfd);
        self->rfd = fd;
        self->files.rollup_gen++;
        self->files.rollup_len = self->rollup_live = len;
        self->rollup_rewrite = false;
    } else {
        for (struct s_series *s = zhashx_first(self->series); s;
             s = zhashx_next(self->series))
            if (agg_rollup_dirty(s->roll))
                s_write_rollup(self, self->rfd, &self->files.rollup_len, s,
                               false, s->raw_from);
    }
    return self->io_failed ? -1 : 0;
}

int
agg_store_sync(agg_store_t *self, struct agg_store_files *files)
{
    memset(files, 0, sizeof *files);
    if (self->fd == -1)
        return 0;
    if (s_sync_write(self) == -1 || fdatasync(self->fd) == -1 ||
        fdatasync(self->rfd) == -1) {
        log_warn("agg_store: fdatasync in %s", self->dir);
        self->io_failed = true;
        return -1;
    }
    *files = self->files;
    return 0;
}

int
agg_store_sync_write(agg_store_t *self, struct agg_store_files *files,
                     int *cfd, int *rfd)
{
    memset(files, 0, sizeof *files);
    *cfd = *rfd = -1;
    if (self->fd == -1)
        return 0;
    if (s_sync_write(self) == -1)
        return -1;
    if ((*cfd = dup(self->fd)) == -1 || (*rfd = dup(self->rfd)) == -1) {
        log_warn("agg_store: dup in %s", self->dir);
        if (*cfd != -1)
            close(*cfd);
        *cfd = -1;
        return -1;
    }
    *files = self->files;
    return 0;
}

void
agg_store_sync_failed(agg_store_t *self)
{
    if (self->fd != -1)
        self->io_failed = true;
}

/* Copy the first len bytes of src to dst (created, fsync'd). */
static int
s_copy_prefix(const char *src, const char *dst, uint64_t len)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), rc = -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    char buf[1 << 16];

    if (in == -1 || out == -1) {
        log_warn("agg_store: backup: cannot open %s or create %s", src, dst);
        goto done;
    }
    while (len > 0) {
        ssize_t r = read(in, buf, len < sizeof buf ? (size_t)len : sizeof buf);
        if (r <= 0 || write(out, buf, (size_t)r) != r) {
            log_warn("agg_store: backup: copying %s", src);
            goto done;
        }
        len -= (uint64_t)r;
    }
    if (fsync(out) == -1) {
        log_warn("agg_store: backup: fsync %s", dst);
        goto done;
    }
    rc = 0;
done:
    if (in != -1)
        close(in);
    if (out != -1)
        close(out);
    return rc;
}

int
agg_store_backup(const agg_store_t *self, const char *dst,
                 const struct agg_store_files *files)
{
    const char *kinds[2] = {"chunks", "rollups"};
    uint64_t gens[2] = {files->chunk_gen, files->rollup_gen};
    uint64_t lens[2] = {files->chunk_len, files->rollup_len};
    int rc = 0;

    if (self->dir == NULL)
        return -1;
    for (int i = 0; i < 2 && rc == 0; i++) {
        if (i == 1 && gens[1] == 0)
            break;
        char *src = s_path(self, kinds[i], gens[i]);
        char *name = strrchr(src, '/') + 1;
        char *to = xasprintf("%s/%s", dst, name);
        rc = s_copy_prefix(src, to, lens[i]);
        free(to);
        free(src);
    }
    return rc;
}

void
agg_store_written(const agg_store_t *self, struct agg_store_files *files)
{
    *files = self->files;
}

void
agg_store_cleanup(agg_store_t *self)
{
    DIR *d;
    struct dirent *e;
    char keep_c[64], keep_r[64];

    if (self->dir == NULL || (d = opendir(self->dir)) == NULL)
        return;
    if (self->files.chunk_gen == 0)
        snprintf(keep_c, sizeof keep_c, "chunks.dat");
    else
        snprintf(keep_c, sizeof keep_c, "chunks.%llu.dat",
                 (unsigned long long)self->files.chunk_gen);
    snprintf(keep_r, sizeof keep_r, "rollups.%llu.dat",
             (unsigned long long)self->files.rollup_gen);
    while ((e = readdir(d)) != NULL) {
        bool c = strncmp(e->d_name, "chunks.", 7) == 0;
        bool r = strncmp(e->d_name, "rollups.", 8) == 0;
        /* A compaction's file: in use while it runs, else left by a
         * crash or a failure. */
        bool t = strcmp(e->d_name, S_COMPACT_TMP) == 0 && self->job == NULL;
        if (!t && ((!c && !r) || strcmp(e->d_name, c ? keep_c : keep_r) == 0))
            continue;
        char *path = xasprintf("%s/%s", self->dir, e->d_name);
        if (unlink(path) == -1)
            log_warn("agg_store: cannot delete %s", path);
        else
            log_debug("agg_store: deleted %s (an older generation)", path);
        free(path);
    }
    closedir(d);
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

/* The rollup summary of a range equals the direct computation over the
 * raw points of that range. */
static void
s_test_summary(agg_store_t *st, const char *key, int64_t a, int64_t b)
{
    struct agg_view *v;
    struct agg_rsum want = {0}, got = {0};

    assert(agg_store_select(st, key, NULL, 0, a, b, &v) == 1);
    for (size_t i = 0; i < v[0].n; i++)
        agg_rsum_add(&want, v[0].ts[i], v[0].v[i]);
    free(v);
    assert(agg_store_summarize(st, key, a, b, &got, NULL) == 0);
    assert(got.m.count == want.m.count);
    if (want.m.count == 0)
        return;
    TEST_NEAR(got.m.sum, want.m.sum, 1e-9 * (1 + fabs(want.m.sum)));
    TEST_NEAR(got.m.m2, want.m.m2, 1e-7 * (1 + want.m.m2));
    assert(got.m.min == want.m.min && got.m.max == want.m.max);
    assert(got.first == want.first && got.last == want.last);
}

/* Three days every 10 s with a late overwrite that lowers the minimum;
 * summaries over ranges with ragged edges, after a reopen, and after
 * retention dropped the first day's raw chunks and minute buckets. */
static void
s_test_rollups(agg_store_t **stp, const char *dir)
{
    agg_store_t *st = *stp;
    size_t before = agg_store_points(st);
    const int64_t s1 = 1000000000LL, t0 = 1704067200LL * s1, day = 86400 * s1;
    enum { P = 3 * 8640 };
    int64_t keep[AGG_ROLLUP_TIERS] = {t0 + day, INT64_MIN, INT64_MIN};
    struct agg_store_files files;
    struct agg_rsum sum = {0};
    agg_sketch_t *sk = agg_sketch_new();

    for (int i = 0; i < P; i++)
        agg_store_put(st, "r", t0 + i * 10 * s1, 20 + (i % 97) / 10.0);
    assert(agg_store_put(st, "r", t0 + 5000 * 10 * s1, -50) == 0);
    assert(agg_store_put(st, "r", t0 + 5000 * 10 * s1, 21) == 0);
    for (int64_t a = t0 - 7 * s1; a < t0 + 3 * day; a += 7777 * s1) {
        s_test_summary(st, "r", a, a + 3 * 3600 * s1 + 17 * s1);
        s_test_summary(st, "r", a, a + 29 * 3600 * s1 + 59 * s1);
    }
    s_test_summary(st, "r", INT64_MIN, INT64_MAX);
    assert(agg_store_raw_estimate(st, "r", t0, t0 + day) >= 8640);
    agg_store_seal_all(st);
    assert(agg_store_sync(st, &files) == 0 && files.rollup_gen >= 1);
    agg_store_cleanup(st);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st);
    s_test_summary(st, "r", t0 + 3333 * s1, t0 + 2 * day + 4444 * s1);
    /* Format 3 wrote hours and days whose raw points are kept: such
     * buckets in the file are dropped at open and rebuilt, not doubled,
     * and the file is rewritten without them. */
    assert(!st->rollup_rewrite);
    s_write_rollup(st, st->rfd, &st->files.rollup_len,
                   zhashx_lookup(st->series, "r"), true, INT64_MAX);
    assert(agg_store_sync(st, &files) == 0);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st && st->rollup_rewrite);
    s_test_summary(st, "r", t0 + 3333 * s1, t0 + 2 * day + 4444 * s1);
    s_test_summary(st, "r", INT64_MIN, INT64_MAX);
    /* Retention: raw and minutes of day 1 go, hours and days stay. */
    assert(agg_store_expire(st, t0 + day, keep) > 0);
    assert(agg_store_points(st) < (size_t)P + before);
    assert(agg_store_summarize(st, "r", t0, t0 + 3 * day, &sum, sk) == 0);
    assert(sum.m.count == P && agg_sketch_count(sk) == P);
    TEST_NEAR(agg_sketch_quantile(sk, 0.5), 24.8, 24.8 * AGG_SKETCH_ALPHA);
    assert(sum.m.min == 20 && sum.m.max == 29.6);
    assert(agg_store_sync(st, &files) == 0 && files.chunk_gen >= 1);
    agg_store_cleanup(st);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    memset(&sum, 0, sizeof sum);
    assert(agg_store_summarize(st, "r", t0, t0 + 3 * day, &sum, NULL) == 0);
    assert(sum.m.count == P);
    assert(agg_store_rollup_buckets(st, AGG_ROLLUP_MINUTE) <= 2 * 1440 + 1);
    s_test_summary(st, "r", t0 + day + 3333 * s1, t0 + 2 * day + 4444 * s1);
    agg_sketch_destroy(&sk);
    *stp = st;
}

/* Deleting a ragged range: the points go, rollups equal the raw figures
 * for every range, also after a sync and reopen; deleting everything
 * removes the series. */
static void
s_test_delete(const char *dir)
{
    const int64_t s1 = 1000000000LL, t0 = 1704067200LL * s1, day = 86400 * s1;
    struct agg_store_files files, zero = {0};
    agg_store_t *st = agg_store_open(dir, &zero);
    struct agg_view *v;
    bool partial;

    for (int i = 0; i < 3 * 8640; i++)
        agg_store_put(st, "d", t0 + i * 10 * s1, (i * 13 % 500) / 10.0);
    agg_store_put(st, "gone", t0, 1);
    assert(agg_store_delete(st, "d", t0 + day / 2 + 7 * s1, t0 + day + 17 * day / 24,
                            &partial) > 0 && !partial);
    assert(agg_store_points(st) == 3 * 8640 + 1 - (size_t)(
        (day / 2 + 17 * day / 24 - 7 * s1) / (10 * s1)));
    for (int64_t a = t0 - day; a < t0 + 3 * day; a += 5555 * s1)
        s_test_summary(st, "d", a, a + 20 * 3600 * s1);
    s_test_summary(st, "d", INT64_MIN, INT64_MAX);
    /* A range from a day's start to inside it (that day is rebuilt), and
     * edges a hair inside int64's range (no day arithmetic overflows). */
    for (int i = 0; i < 2 * 8640; i++)
        agg_store_put(st, "e", t0 + i * 10 * s1, (i * 7 % 300) / 10.0);
    assert(agg_store_delete(st, "e", t0 + day, t0 + day + 6 * 3600 * s1, &partial) ==
               6 * 360 && !partial);
    s_test_summary(st, "e", t0 + day, t0 + 2 * day);
    s_test_summary(st, "e", INT64_MIN, INT64_MAX);
    assert(agg_store_delete(st, "e", INT64_MIN + 1, t0 + 3 * 3600 * s1, &partial) ==
               3 * 360 && !partial);
    assert(agg_store_delete(st, "e", t0 + 2 * day - 3600 * s1, INT64_MAX - 1, &partial) ==
               360 && !partial);
    s_test_summary(st, "e", INT64_MIN, INT64_MAX);
    s_test_summary(st, "e", t0, t0 + day);
    assert(agg_store_delete(st, "e", INT64_MIN, INT64_MAX, &partial) ==
               2 * 8640 - 10 * 360);
    assert(agg_store_delete(st, "gone", INT64_MIN, INT64_MAX, &partial) == 1);
    assert(agg_store_delete(st, "gone", INT64_MIN, INT64_MAX, &partial) == -1);
    /* A range holding every point removes the series too, as a restart
     * would (nothing names it on disk): listings do not change there. */
    agg_store_put(st, "emptied", t0 + 5 * s1, 1);
    agg_store_put(st, "emptied", t0 + 3 * day, 2);
    assert(agg_store_delete(st, "emptied", t0, t0 + day, &partial) == 1);
    assert(agg_store_select(st, "emptied", NULL, 0, INT64_MIN, INT64_MAX, &v) == 1);
    free(v);
    assert(agg_store_delete(st, "emptied", t0, t0 + 4 * day, &partial) == 1);
    assert(agg_store_select(st, "emptied", NULL, 0, INT64_MIN, INT64_MAX, &v) == 0);
    assert(agg_store_delete(st, "emptied", t0, t0 + 4 * day, &partial) == -1);
    assert(agg_store_select(st, "gone", NULL, 0, INT64_MIN, INT64_MAX, &v) == 0);
    assert(agg_store_sync(st, &files) == 0);
    agg_store_cleanup(st);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st && agg_store_series(st) == 1);
    s_test_summary(st, "d", INT64_MIN, INT64_MAX);
    s_test_summary(st, "d", t0 + 3 * day / 4, t0 + 2 * day);
    agg_store_destroy(&st);
}

/* Is the view of "late" right: ascending, one point per timestamp, late
 * points (ts % 10 == 5) at -i, overwritten ones (i % 7 == 0 in [first,
 * last)) at 1000 + i, the rest at i / 100? */
static void
s_test_late_view(agg_store_t *st, size_t want, int64_t first, int64_t last)
{
    struct agg_view *v;

    assert(agg_store_select(st, "late", NULL, 0, INT64_MIN, INT64_MAX, &v) == 1);
    assert(v[0].n == want);
    for (size_t i = 0; i < v[0].n; i++) {
        int64_t t = v[0].ts[i], k = t / 10;
        double expect = t % 10 == 5 ? (double)-k
                        : k >= first && k < last && k % 7 == 0 ? 1000.0 + (double)k
                        : (double)k / 100.0;
        assert(i == 0 || t > v[0].ts[i - 1]);
        assert(v[0].v[i] == expect);
    }
    free(v);
}

/* Late points cost reads the overlap, not the series: a head that
 * overlaps the last chunk is merged from its first point on, and a chunk
 * sealed late is resealed with the chunks it overlaps only, once
 * (the counters count the points moved; a full merge would move all). */
static void
s_test_late(void)
{
    enum { C = AGG_STORE_CHUNK_POINTS, N = 50 * C + 100 };
    agg_store_t *st = agg_store_new();
    size_t late = 0;

    for (int64_t i = 0; i < N; i++)
        agg_store_put(st, "late", i * 10, (double)i / 100.0);
    for (int64_t i = N - 150; i < N - 140; i++, late++)
        assert(agg_store_put(st, "late", i * 10 + 5, (double)-i) == 1);
    assert(agg_store_chunks(st) == 50 && agg_store_reseals(st) == 0);
    s_test_late_view(st, N + late, 0, 0);
    assert(agg_store_head_merge_points(st) > 0);
    assert(agg_store_head_merge_points(st) <= C + 110);
    assert(agg_store_reseal_points(st) == 0);
    /* Late points and overwrites into chunks 46-47 fill the head, which
     * is sealed into a chunk overlapping chunks 46 to 49. */
    int64_t from = 46 * C + 3, to = from;
    for (; agg_store_head_points(st) > 0; to++) {
        int64_t i = to;
        agg_store_put(st, "late", i * 10 + 5, (double)-i);
        late++;
        if (i % 7 == 0)
            assert(agg_store_put(st, "late", i * 10, 1000.0 + (double)i) == 0);
    }
    assert(agg_store_chunks(st) == 51);
    uint64_t merged = agg_store_head_merge_points(st);
    s_test_late_view(st, N + late, from, to);
    assert(agg_store_reseals(st) == 1);
    assert(agg_store_reseal_points(st) > 0 &&
           agg_store_reseal_points(st) <= 5 * C);
    assert(agg_store_head_merge_points(st) == merged);
    assert(agg_store_points(st) == N + late);
    /* Read again: nothing is merged twice. */
    uint64_t resealed = agg_store_reseal_points(st);
    s_test_late_view(st, N + late, from, to);
    assert(agg_store_reseal_points(st) == resealed &&
           agg_store_head_merge_points(st) == merged);
    agg_store_destroy(&st);
}

/* The value of point i of series `which` in the compaction test: two
 * decimals (scaled coding), or not a decimal at all (XOR coding). */
static double
s_test_cval(int which, int64_t i)
{
    return which == 0 ? (double)(2000 + (i * 37) % 101) / 100.0
                      : sin((double)i) * 1e-3 + 1.0 / 3.0;
}

/* Every point of series key, bit for bit, against s_test_cval, with
 * point `over` (if >= 0) overwritten by -1.5 and a late point at ts 5. */
static void
s_test_compact_check(agg_store_t *st, const char *key, int which, size_t n,
                     int64_t over)
{
    struct agg_view *v;

    assert(agg_store_select(st, key, NULL, 0, INT64_MIN, INT64_MAX, &v) == 1);
    assert(v[0].n == n + (over >= 0));
    for (size_t i = 0, k = 0; i < v[0].n; i++) {
        if (over >= 0 && v[0].ts[i] == 5) {
            assert(v[0].v[i] == 7.25);
            continue;
        }
        double want = (int64_t)k == over ? -1.5 : s_test_cval(which, (int64_t)k);
        assert(v[0].ts[i] == (int64_t)k * 10);
        assert(memcmp(&v[0].v[i], &want, sizeof want) == 0);
        k++;
    }
    free(v);
}

/* Compaction: runs of small chunks merged at a sync into one chunk,
 * values bit-identical (scaled and XOR coded), a series with
 * overlapping chunks left alone, the old generation still whole until
 * the cleanup (a crash before the checkpoint names the new one loses
 * nothing), late points and overwrites after it. */
/* A sync that starts a compaction, waiting for its thread, and the
 * sync that switches over to it. */
static void
s_test_sync_compact(agg_store_t *st, struct agg_store_files *files)
{
    assert(agg_store_sync(st, files) == 0 && agg_store_compacting(st));
    s_compact_reap(st, true);
    assert(!agg_store_compacting(st));
    assert(agg_store_sync(st, files) == 0);
}

static void
s_test_compact(const char *dir)
{
    enum { C = AGG_STORE_CHUNK_POINTS, N = AGG_STORE_COMPACT_POINTS + 100 };
    struct agg_store_files zero = {0}, before, after;
    const char *keys[2] = {"cd", "cx"};
    agg_store_t *st = agg_store_open(dir, &zero);
    double old;

    assert(st);
    for (int w = 0; w < 2; w++)
        for (int64_t i = 0; i < N; i++)
            assert(agg_store_put(st, keys[w], i * 10, s_test_cval(w, i)) == 1);
    /* A slow series: one point per checkpoint, a tiny chunk each (the
     * newest is left out of a compaction before the stop). */
    for (int i = 0; i < AGG_STORE_COMPACT_RUN + 1; i++) {
        assert(agg_store_put(st, "slow", i * 10, i) == 1);
        agg_store_seal_all(st);
    }
    assert(agg_store_chunks(st) == 2 * (N / C + 1) + AGG_STORE_COMPACT_RUN + 1);
    agg_store_written(st, &before);
    agg_store_seal_all(st);
    s_test_sync_compact(st, &after);
    /* cd, cx: 8 chunks of C into one, the head of 100 alone; slow: 16
     * into one, the newest alone. */
    assert(agg_store_compactions(st) == 1);
    assert(agg_store_compacted_chunks(st) ==
           2 * (AGG_STORE_COMPACT_POINTS / C - 1) + AGG_STORE_COMPACT_RUN - 1);
    assert(agg_store_chunks(st) == 2 * 2 + 2);
    assert(after.chunk_gen == before.chunk_gen + 1);
    for (int w = 0; w < 2; w++)
        s_test_compact_check(st, keys[w], w, N, -1);
    /* Nothing more to merge: the next sync appends, no rewrite. */
    assert(agg_store_sync(st, &after) == 0 && agg_store_compactions(st) == 1);
    agg_store_destroy(&st);
    /* The old generation before the cleanup: every point, small chunks. */
    st = agg_store_open(dir, &before);
    assert(st && agg_store_points(st) == 2 * N + AGG_STORE_COMPACT_RUN + 1);
    assert(agg_store_chunks(st) == 2 * (N / C + 1) + AGG_STORE_COMPACT_RUN + 1);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &after);
    assert(st && agg_store_points(st) == 2 * N + AGG_STORE_COMPACT_RUN + 1);
    assert(agg_store_chunks(st) == 6);
    agg_store_cleanup(st);
    for (int w = 0; w < 2; w++)
        s_test_compact_check(st, keys[w], w, N, -1);
    /* An overwrite and a late point in a compacted chunk. */
    assert(s_sealed_find(st, zhashx_lookup(st->series, "cd"), 4000, &old) &&
           old == s_test_cval(0, 400));
    assert(agg_store_put(st, "cd", 4000, -1.5) == 0);
    assert(agg_store_put(st, "cd", 5, 7.25) == 1);
    s_test_compact_check(st, "cd", 0, N, 400);
    /* Their chunk overlaps the compacted one: the sync reseals cd (8
     * chunks of C and one of 1 point, then the head's 100) and compacts
     * the 8 again. */
    agg_store_seal_all(st);
    s_test_sync_compact(st, &after);
    assert(agg_store_compactions(st) == 1);
    assert(agg_store_chunks(st) == 3 + 2 + 2);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &after);
    assert(st && agg_store_points(st) == 2 * N + AGG_STORE_COMPACT_RUN + 2);
    assert(agg_store_chunks(st) == 7);
    s_test_compact_check(st, "cd", 0, N, 400);
    s_test_compact_check(st, "cx", 1, N, -1);
    /* At a stop the small chunks after a big one merge too, and the
     * newest: cd 16384 + 101, cx 16384 + 100, slow 17. */
    agg_store_compact_all(st);
    assert(agg_store_sync(st, &after) == 0 && agg_store_compactions(st) == 1);
    assert(agg_store_chunks(st) == 5);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &after);
    assert(st && agg_store_chunks(st) == 5);
    s_test_compact_check(st, "cd", 0, N, 400);
    s_test_compact_check(st, "cx", 1, N, -1);
    agg_store_destroy(&st);
}

/* Check every point of series key i in the concurrent compaction test:
 * n points at ts 10k with value s_test_cval(i, k), except ts 10*over
 * which holds -2.5 and the timestamps 10k + 5 below late (7.75 each). */
static void
s_test_during_check(agg_store_t *st, const char *key, int i, size_t n,
                    int64_t over, int64_t late)
{
    struct agg_view *v;
    size_t k = 0;

    assert(agg_store_select(st, key, NULL, 0, INT64_MIN, INT64_MAX, &v) == 1);
    for (size_t j = 0; j < v[0].n; j++) {
        if (v[0].ts[j] % 10 == 5) {
            assert(v[0].ts[j] < late * 10 && v[0].v[j] == 7.75);
            continue;
        }
        double want = (int64_t)k == over ? -2.5 : s_test_cval(i % 2, (int64_t)k);
        assert(v[0].ts[j] == (int64_t)k * 10);
        assert(memcmp(&v[0].v[j], &want, sizeof want) == 0);
        k++;
    }
    assert(k == n && v[0].n == n + (size_t)(late > 0 ? late : 0));
    free(v);
}

/* A compaction running on its thread while the store changes: late
 * points and an overwrite into chunks being compacted (their series is
 * resealed by a read, so it keeps its own chunks), new chunks sealed
 * after the snapshot (copied to the new file), a new series; then one
 * dropped because a delete rewrote the file meanwhile. Every value reads
 * back bit-identical, once, in memory and from the new generation. */
static void
s_test_compact_during(const char *dir)
{
    enum { C = AGG_STORE_CHUNK_POINTS, N = 6 * C };
    struct agg_store_files zero = {0}, files;
    const char *keys[3] = {"ra", "rb", "rc"};
    agg_store_t *st = agg_store_open(dir, &zero);
    char path[256];

    assert(st);
    setenv("AGGD_TEST_COMPACT_PAUSE_MS", "30", 1);
    for (int i = 0; i < 3; i++)
        for (int64_t k = 0; k < N; k++)
            assert(agg_store_put(st, keys[i], k * 10, s_test_cval(i % 2, k)) == 1);
    agg_store_seal_all(st);
    assert(agg_store_sync(st, &files) == 0 && agg_store_compacting(st));
    snprintf(path, sizeof path, "%s/" S_COMPACT_TMP, dir);
    /* The thread creates its file when it first runs: on a loaded
     * machine that can be after this point (CI, ASan), so wait for it
     * (at most 10 s) before asking cleanup to keep it. */
    for (int t = 0; t < 1000 && access(path, F_OK) == -1; t++)
        usleep(10 * 1000);
    assert(access(path, F_OK) == 0);
    agg_store_cleanup(st); /* keeps the running compaction's file */
    assert(access(path, F_OK) == 0);
    /* ra: an overwrite and late points into its old chunks, sealed and
     * read (resealed: its chunk data goes, kept for the thread). */
    assert(agg_store_put(st, "ra", 100 * 10, -2.5) == 0);
    for (int64_t k = 0; k < 20; k++)
        assert(agg_store_put(st, "ra", k * 10 + 5, 7.75) == 1);
    agg_store_seal_all(st);
    s_test_during_check(st, "ra", 0, N, 100, 20);
    /* rb: more points sealed after the snapshot; a new series. */
    for (int64_t k = N; k < N + 300; k++)
        assert(agg_store_put(st, "rb", k * 10, s_test_cval(1, k)) == 1);
    assert(agg_store_put(st, "rnew", 1, 0.1) == 1);
    agg_store_seal_all(st);
    s_compact_reap(st, true); /* as a later sync would, once it is done */
    assert(!agg_store_compacting(st) && agg_store_compactions(st) == 1 &&
           agg_store_compact_dropped(st) == 0 && access(path, F_OK) == -1);
    assert(agg_store_sync(st, &files) == 0); /* may start another */
    s_test_during_check(st, "ra", 0, N, 100, 20);
    s_test_during_check(st, "rb", 1, N + 300, -1, 0);
    s_test_during_check(st, "rc", 0, N, -1, 0);
    agg_store_cleanup(st);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st && agg_store_points(st) == 3 * N + 300 + 20 + 1);
    s_test_during_check(st, "ra", 0, N, 100, 20);
    s_test_during_check(st, "rb", 1, N + 300, -1, 0);
    s_test_during_check(st, "rc", 0, N, -1, 0);
    /* A delete while one runs: the file is rewritten, the compaction
     * dropped with its file. rc is small chunks again (reloaded). */
    for (int64_t k = N; k < N + 4 * C; k += 256) {
        for (int64_t m = k; m < k + 256; m++)
            assert(agg_store_put(st, "rc", m * 10, s_test_cval(0, m)) == 1);
        agg_store_seal_all(st);
    }
    assert(agg_store_sync(st, &files) == 0 && agg_store_compacting(st));
    bool partial;
    assert(agg_store_delete(st, "rnew", INT64_MIN, INT64_MAX, &partial) == 1);
    assert(agg_store_sync(st, &files) == 0); /* the delete's rewrite */
    s_compact_reap(st, true);
    assert(agg_store_compact_dropped(st) == 1 && access(path, F_OK) == -1);
    assert(agg_store_sync(st, &files) == 0); /* may start another */
    s_test_during_check(st, "rc", 0, N + 4 * C, -1, 0);
    agg_store_cleanup(st);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &files);
    assert(st && agg_store_points(st) == 3 * N + 300 + 20 + 4 * C);
    s_test_during_check(st, "ra", 0, N, 100, 20);
    s_test_during_check(st, "rc", 0, N + 4 * C, -1, 0);
    /* A crash leaves the file of a compaction: the cleanup deletes it. */
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    assert(fd >= 0);
    close(fd);
    agg_store_cleanup(st);
    assert(access(path, F_OK) == -1);
    agg_store_destroy(&st);
    unsetenv("AGGD_TEST_COMPACT_PAUSE_MS");
}

void
agg_store_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    struct agg_view *v;
    struct series_tag f[] = {{"device", "b"}};
    char dir[] = "/tmp/agg_store_test.XXXXXX";
    struct agg_store_files len, zero = {0};
    enum { N = 3 * AGG_STORE_CHUNK_POINTS + 100 };

    assert(agg_store_put(st, "t", 10, 1.0) == 1);
    assert(agg_store_put(st, "t", 30, 3.0) == 1);
    assert(agg_store_put(st, "t", 20, 2.0) == 1); /* late point */
    assert(agg_store_put(st, "t", 20, 2.5) == 0); /* duplicate overwrites */
    assert(agg_store_put(st, "x{device=a}", 5, 9) == 1);
    assert(agg_store_put(st, "x{device=b}", 5, 8) == 1);
    assert(agg_store_points(st) == 5 && agg_store_series(st) == 3);
    assert(agg_store_select(st, "t", NULL, 0, 0, INT64_MAX, &v) == 1);
    assert(v[0].n == 3 && v[0].ts[1] == 20 && v[0].v[1] == 2.5);
    free(v);
    assert(agg_store_select(st, "t", NULL, 0, 20, 30, &v) == 1);
    assert(v[0].n == 1 && v[0].v[0] == 2.5); /* end is exclusive */
    free(v);
    assert(agg_store_select(st, "x", NULL, 0, 0, INT64_MAX, &v) == 2);
    free(v);
    assert(agg_store_select(st, "x", f, 1, 0, INT64_MAX, &v) == 1);
    assert(v[0].v[0] == 8);
    free(v);
    assert(agg_store_select(st, "nope", NULL, 0, INT64_MIN, INT64_MAX, &v) == 0);
    assert(v == NULL);
    /* A run: a point already stored and a repeat inside the run are
     * overwritten in order, so the run's last value at a ts wins; an
     * empty run creates no series. */
    {
        agg_store_t *rs = agg_store_new();
        const int64_t rts[] = {40, 20, 40, 50};
        const double rv[] = {4.0, 2.0, 4.5, 5.0};
        assert(agg_store_put(rs, "t", 20, 1.0) == 1);
        assert(agg_store_put_run(rs, "t", rts, rv, 4) == 2);
        assert(agg_store_put_run(rs, "u", rts, rv, 0) == 0);
        assert(agg_store_points(rs) == 3 && agg_store_series(rs) == 1);
        assert(agg_store_select(rs, "t", NULL, 0, 0, INT64_MAX, &v) == 1);
        assert(v[0].n == 3 && v[0].v[0] == 2.0 && v[0].ts[1] == 40 &&
               v[0].v[1] == 4.5 && v[0].v[2] == 5.0);
        free(v);
        /* Slots: another key in the same slot is another series; a
         * deleted series is not written through a stale slot. */
        bool part;
        assert(agg_store_put_run_slot(rs, 7, "t", rts, rv, 4) == 0);
        assert(agg_store_put_run_slot(rs, 7, "u", rts, rv, 4) == 3);
        assert(agg_store_put_run_slot(rs, 7 + 4096, "w", rts, rv, 1) == 1);
        assert(agg_store_put_run_slot(rs, 7, "u", rts + 3, rv, 1) == 0);
        assert(agg_store_series(rs) == 3 && agg_store_points(rs) == 7);
        assert(agg_store_delete(rs, "u", INT64_MIN, INT64_MAX, &part) == 3);
        assert(agg_store_put_run_slot(rs, 7, "u", rts, rv, 1) == 1);
        assert(agg_store_series(rs) == 3 && agg_store_points(rs) == 5);
        assert(agg_store_select(rs, "u", NULL, 0, 0, INT64_MAX, &v) == 1);
        assert(v[0].n == 1 && v[0].ts[0] == 40 && v[0].v[0] == 4.0);
        free(v);
        agg_store_destroy(&rs);
    }
    /* Tenants: the same names in two tenants, each selected alone; the
     * default tenant's exact lookup still finds only its series. */
    struct series_tag mine[] = {{"tenant", ""}}, acme[] = {{"tenant", "acme"}};
    assert(agg_store_put(st, "t{tenant=acme}", 10, 7.0) == 1);
    assert(agg_store_put(st, "x{device=a,tenant=acme}", 5, 6) == 1);
    assert(agg_store_select(st, "t", mine, 1, 0, INT64_MAX, &v) == 1);
    assert(v[0].n == 3);
    free(v);
    assert(agg_store_select(st, "t", acme, 1, 0, INT64_MAX, &v) == 1);
    assert(v[0].n == 1 && v[0].v[0] == 7.0);
    free(v);
    assert(agg_store_select(st, "x", mine, 1, 0, INT64_MAX, &v) == 2);
    free(v);
    assert(agg_store_select(st, "x{device=a,tenant=acme}", mine, 1, 0,
                            INT64_MAX, &v) == 0);
    assert(agg_store_select(st, "x{device=a,tenant=acme}", acme, 1, 0,
                            INT64_MAX, &v) == 1);
    free(v);
    agg_store_destroy(&st);
    assert(st == NULL);

    s_test_late();
    /* Sealed chunks on disk: N points in time order, with late points
     * and duplicates into sealed ranges, then a reopen. */
    assert(mkdtemp(dir));
    st = agg_store_open(dir, &zero);
    assert(st);
    for (int i = 0; i < N; i++)
        assert(agg_store_put(st, "s", (int64_t)i * 10, i / 100.0) == 1);
    assert(agg_store_chunks(st) == 3 && agg_store_head_points(st) == 100);
    assert(agg_store_select(st, "s", NULL, 0, 105, 20005, &v) == 1);
    assert(v[0].n == 1990 && v[0].ts[0] == 110 && v[0].v[0] == 0.11);
    free(v);
    assert(agg_store_put(st, "s", 50, -1.0) == 0);  /* overwrite, sealed */
    assert(agg_store_put(st, "s", 55, -2.0) == 1);  /* late, new */
    assert(agg_store_points(st) == N + 1);
    assert(agg_store_select(st, "s", NULL, 0, INT64_MIN, INT64_MAX, &v) == 1);
    assert(v[0].n == N + 1 && v[0].ts[5] == 50 && v[0].v[5] == -1.0);
    assert(v[0].ts[6] == 55 && v[0].v[6] == -2.0 && v[0].v[7] == 0.06);
    for (size_t i = 1; i < v[0].n; i++)
        assert(v[0].ts[i] > v[0].ts[i - 1]);
    free(v);
    agg_store_seal_all(st);
    assert(agg_store_head_points(st) == 0 && agg_store_sync(st, &len) == 0);
    agg_store_destroy(&st);
    st = agg_store_open(dir, &len);
    assert(st && agg_store_points(st) == N + 1 && agg_store_chunks(st) == 4);
    s_test_summary(st, "s", INT64_MIN, INT64_MAX);
    assert(agg_store_select(st, "s", NULL, 0, 40, 70, &v) == 1);
    assert(v[0].n == 4 && v[0].v[0] == 0.04 && v[0].v[1] == -1.0 &&
           v[0].v[2] == -2.0 && v[0].v[3] == 0.06);
    free(v);
    s_test_rollups(&st, dir);
    {
        char sub[sizeof dir + 8];
        snprintf(sub, sizeof sub, "%s/del", dir);
        assert(mkdir(sub, 0755) == 0);
        s_test_delete(sub);
        snprintf(sub, sizeof sub, "%s/cmp", dir);
        assert(mkdir(sub, 0755) == 0);
        s_test_compact(sub);
        snprintf(sub, sizeof sub, "%s/cmd", dir);
        assert(mkdir(sub, 0755) == 0);
        s_test_compact_during(sub);
    }
    /* A checkpoint length shorter than the file drops what follows. */
    agg_store_destroy(&st);
    st = agg_store_open(dir, &zero);
    assert(st && agg_store_points(st) == 0);
    agg_store_destroy(&st);
    s_test_rmrf(dir);
    if (verbose)
        printf("agg_store: ok\n");
    TEST_OK("agg_store");
}
