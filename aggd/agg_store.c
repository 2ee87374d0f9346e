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
#include "common/crc.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#define S_MAGIC "SPC1"
#define S_HDR 12
#define S_REC_MAX (64u << 20)

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
    int64_t *ts;             /* head: ascending timestamps */
    double *v;               /* head: values */
    size_t n, cap;           /* head points used and allocated */
};

/* Decoded arrays lent to views until the next select or write. */
struct s_scratch {
    void **bufs;   /* allocations */
    size_t n, cap; /* used and allocated */
};

struct agg_store {
    zhashx_t *series;        /* key -> struct s_series */
    size_t points;           /* distinct points */
    size_t chunks;           /* sealed chunks */
    uint64_t chunk_bytes;    /* their encoded bytes */
    size_t head_points;      /* points in heads */
    char *path;              /* chunk file, or NULL in memory */
    int fd;                  /* chunk file, or -1 */
    uint64_t file_len;       /* bytes written to it */
    bool io_failed;          /* a chunk write failed since open */
    struct s_scratch scratch; /* lent to the last select */
};

static void
s_series_free(void **item)
{
    struct s_series *s = *item;
    if (s) {
        for (size_t i = 0; i < s->nchunks; i++)
            free(s->chunks[i].data);
        free(s->chunks);
        free(s->key);
        free(s->ts);
        free(s->v);
        free(s);
        *item = NULL;
    }
}

static void
s_scratch_clear(struct s_scratch *sc)
{
    for (size_t i = 0; i < sc->n; i++)
        free(sc->bufs[i]);
    sc->n = 0;
}

static void *
s_scratch_alloc(struct s_scratch *sc, size_t bytes)
{
    if (sc->n == sc->cap) {
        sc->cap = sc->cap ? sc->cap * 2 : 16;
        sc->bufs = xrealloc(sc->bufs, sc->cap * sizeof *sc->bufs);
    }
    return sc->bufs[sc->n++] = xmalloc(bytes ? bytes : 1);
}

agg_store_t *
agg_store_new(void)
{
    agg_store_t *self = xcalloc(1, sizeof *self);
    self->series = zhashx_new();
    zhashx_set_destructor(self->series, s_series_free);
    self->fd = -1;
    return self;
}

void
agg_store_destroy(agg_store_t **self_p)
{
    agg_store_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    zhashx_destroy(&self->series);
    s_scratch_clear(&self->scratch);
    free(self->scratch.bufs);
    if (self->fd != -1)
        close(self->fd);
    free(self->path);
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
        zhashx_insert(self->series, key, s);
    }
    return s;
}

static void
s_add_chunk(agg_store_t *self, struct s_series *s, struct s_chunk *c)
{
    if (s->nchunks == s->capch) {
        s->capch = s->capch ? s->capch * 2 : 4;
        s->chunks = xrealloc(s->chunks, s->capch * sizeof *s->chunks);
    }
    if (s->nchunks > 0 && c->tmin <= s->sealed_max)
        s->overlap = true;
    if (c->tmax > s->sealed_max)
        s->sealed_max = c->tmax;
    s->chunks[s->nchunks++] = *c;
    self->chunks++;
    self->chunk_bytes += c->len;
}

static void
s_le32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t
s_rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static void
s_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
s_rd64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void
s_write_chunk(agg_store_t *self, const char *key, const struct s_chunk *c)
{
    unsigned char hdr[S_HDR + 4 + 16];
    size_t klen = strlen(key);
    uint32_t len = (uint32_t)(4 + klen + 16 + c->len), crc;
    struct iovec iov[4];
    ssize_t w;

    if (self->fd == -1 || self->io_failed)
        return;
    memcpy(hdr, S_MAGIC, 4);
    s_le32(hdr + 4, len);
    s_le32(hdr + S_HDR, (uint32_t)klen);
    s_le64(hdr + S_HDR + 4, (uint64_t)c->tmin);
    s_le64(hdr + S_HDR + 12, (uint64_t)c->tmax);
    crc = crc_32c(0, hdr + 4, 4);
    crc = crc_32c(crc, hdr + S_HDR, 4);
    crc = crc_32c(crc, key, klen);
    crc = crc_32c(crc, hdr + S_HDR + 4, 16);
    crc = crc_32c(crc, c->data, c->len);
    s_le32(hdr + 8, crc);
    iov[0] = (struct iovec){hdr, S_HDR + 4};
    iov[1] = (struct iovec){(void *)(uintptr_t)key, klen};
    iov[2] = (struct iovec){hdr + S_HDR + 4, 16};
    iov[3] = (struct iovec){c->data, c->len};
    w = writev(self->fd, iov, 4);
    if (w != (ssize_t)(S_HDR + len)) {
        log_warn("agg_store: append to %s", self->path);
        if (w > 0 && ftruncate(self->fd, (off_t)self->file_len) == -1)
            log_warn("agg_store: cannot cut back %s", self->path);
        self->io_failed = true;
        return;
    }
    self->file_len += (uint64_t)w;
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
    s_write_chunk(self, s->key, &c);
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

/* Load the records of the chunk file; returns the length of the valid
 * prefix. */
static uint64_t
s_load(agg_store_t *self, const unsigned char *m, uint64_t size)
{
    uint64_t off = 0;
    char key[SERIES_KEY_MAX];

    while (off < size) {
        if (size - off < S_HDR || memcmp(m + off, S_MAGIC, 4) != 0)
            break;
        const unsigned char *p = m + off + S_HDR;
        uint32_t len = s_rd32(m + off + 4);
        if (len > S_REC_MAX || size - off - S_HDR < len || len < 20 ||
            crc_32c(crc_32c(0, m + off + 4, 4), p, len) != s_rd32(m + off + 8))
            break;
        uint32_t klen = s_rd32(p);
        if (klen == 0 || klen >= sizeof key || 4 + klen + 16 >= len)
            break;
        struct s_chunk c;
        memcpy(key, p + 4, klen);
        key[klen] = '\0';
        c.tmin = (int64_t)s_rd64(p + 4 + klen);
        c.tmax = (int64_t)s_rd64(p + 12 + klen);
        c.len = len - 4 - klen - 16;
        c.n = (uint32_t)agg_chunk_count(p + 20 + klen, c.len);
        if (c.n == 0 || c.tmin > c.tmax)
            break;
        c.data = xmalloc(c.len);
        memcpy(c.data, p + 20 + klen, c.len);
        struct s_series *s = s_series_get(self, key);
        s_add_chunk(self, s, &c);
        self->points += c.n;
        off += S_HDR + len;
    }
    return off;
}

static void s_view_merge(agg_store_t *self, const struct s_series *s,
                         int64_t start, int64_t end, struct agg_view *out);

/* Chunks of a series that overlap hold some timestamps twice: count the
 * distinct points of those series after a load. */
static void
s_recount(agg_store_t *self)
{
    struct agg_view v;

    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series)) {
        if (!s->overlap)
            continue;
        size_t sum = 0;
        for (size_t i = 0; i < s->nchunks; i++)
            sum += s->chunks[i].n;
        s_view_merge(self, s, INT64_MIN, INT64_MAX, &v);
        self->points -= sum - v.n;
        s_scratch_clear(&self->scratch);
    }
}

agg_store_t *
agg_store_open(const char *dir, uint64_t valid_len)
{
    agg_store_t *self = agg_store_new();
    struct stat st;
    uint64_t good = 0;

    self->path = xasprintf("%s/chunks.dat", dir);
    self->fd = open(self->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (self->fd == -1 || fstat(self->fd, &st) == -1) {
        log_warn("agg_store: cannot open %s", self->path);
        goto fail;
    }
    if ((uint64_t)st.st_size < valid_len) {
        log_err("agg_store: %s holds %lld bytes, the checkpoint %" PRIu64
                "; chunks are missing", self->path, (long long)st.st_size,
                valid_len);
        valid_len = (uint64_t)st.st_size;
    }
    if (valid_len > 0) {
        void *m = mmap(NULL, valid_len, PROT_READ, MAP_PRIVATE, self->fd, 0);
        if (m == MAP_FAILED) {
            log_warn("agg_store: cannot map %s", self->path);
            goto fail;
        }
        good = s_load(self, m, valid_len);
        munmap(m, valid_len);
        s_recount(self);
        if (good < valid_len)
            log_err("agg_store: %s: corrupt chunk record at offset %" PRIu64
                    "; %" PRIu64 " bytes dropped", self->path, good,
                    valid_len - good);
    }
    if ((uint64_t)st.st_size > good && ftruncate(self->fd, (off_t)good) == -1) {
        log_warn("agg_store: cannot truncate %s", self->path);
        goto fail;
    }
    self->file_len = good;
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

/* Is ts in a sealed chunk of s? Decodes the chunks whose bounds hold it. */
static bool
s_sealed_has(const struct s_series *s, int64_t ts)
{
    int64_t t[AGG_STORE_CHUNK_POINTS];
    double v[AGG_STORE_CHUNK_POINTS];
    bool found = false;

    for (size_t i = 0; i < s->nchunks && !found; i++) {
        const struct s_chunk *c = &s->chunks[i];
        if (ts < c->tmin || ts > c->tmax)
            continue;
        if (c->n > AGG_STORE_CHUNK_POINTS) {
            int64_t *bt = xmalloc(c->n * sizeof *bt);
            double *bv = xmalloc(c->n * sizeof *bv);
            size_t n = agg_chunk_decode(c->data, c->len, bt, bv, c->n);
            size_t k = s_lower(bt, n, ts);
            found = k < n && bt[k] == ts;
            free(bt);
            free(bv);
        } else {
            size_t n = agg_chunk_decode(c->data, c->len, t, v, c->n);
            size_t k = s_lower(t, n, ts);
            found = k < n && t[k] == ts;
        }
    }
    return found;
}

int
agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v)
{
    struct s_series *s = s_series_get(self, key);
    bool late = s->nchunks > 0 && ts <= s->sealed_max;
    size_t i;

    if (s->n > 0 && ts <= s->ts[s->n - 1]) {
        i = s_lower(s->ts, s->n, ts);
        if (i < s->n && s->ts[i] == ts) {
            s->v[i] = v;
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
        if (s_sealed_has(s, ts))
            fresh = 0;
    }
    self->points += (size_t)fresh;
    if (s->n >= AGG_STORE_CHUNK_POINTS)
        s_seal(self, s);
    return fresh;
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

/* Overlapping chunks and head: gather with their write order, sort, keep
 * the newest of each timestamp. */
static void
s_view_merge(agg_store_t *self, const struct s_series *s, int64_t start,
             int64_t end, struct agg_view *out)
{
    size_t total = s->n, k = 0, m = 0;
    struct s_pt *pts;
    int64_t *ts;
    double *v;

    for (size_t i = 0; i < s->nchunks; i++)
        if (s->chunks[i].tmax >= start && s->chunks[i].tmin < end)
            total += s->chunks[i].n;
    pts = xmalloc((total ? total : 1) * sizeof *pts);
    ts = xmalloc(AGG_CHUNK_POINTS_MAX * sizeof *ts);
    v = xmalloc(AGG_CHUNK_POINTS_MAX * sizeof *v);
    for (size_t i = 0; i < s->nchunks; i++) {
        const struct s_chunk *c = &s->chunks[i];
        if (c->tmax < start || c->tmin >= end)
            continue;
        size_t n = agg_chunk_decode(c->data, c->len, ts, v, AGG_CHUNK_POINTS_MAX);
        for (size_t j = 0; j < n; j++)
            if (ts[j] >= start && ts[j] < end)
                pts[k++] = (struct s_pt){ts[j], v[j], (uint32_t)i};
    }
    for (size_t j = 0; j < s->n; j++)
        if (s->ts[j] >= start && s->ts[j] < end)
            pts[k++] = (struct s_pt){s->ts[j], s->v[j], (uint32_t)s->nchunks};
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

/* Disjoint chunks in time order, then the head: decode the chunks the
 * range touches into one array. */
static void
s_view(agg_store_t *self, const struct s_series *s, int64_t start, int64_t end,
       struct agg_view *out)
{
    size_t first = 0, total = 0, k = 0;
    int64_t *ts;
    double *v;

    if (s->overlap) {
        s_view_merge(self, s, start, end, out);
        return;
    }
    if (s->nchunks == 0 || s->sealed_max < start) {
        size_t a = s_lower(s->ts, s->n, start);
        size_t b = end == INT64_MAX ? s->n : s_lower(s->ts, s->n, end);
        out->ts = s->ts + a;
        out->v = s->v + a;
        out->n = b > a ? b - a : 0;
        return;
    }
    /* Chunks are sealed in time order and do not overlap: bisect. */
    size_t lo = 0, hi = s->nchunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->chunks[mid].tmax < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    first = lo;
    for (size_t i = first; i < s->nchunks && s->chunks[i].tmin < end; i++)
        total += s->chunks[i].n;
    total += s->n;
    ts = s_scratch_alloc(&self->scratch, total * sizeof *ts);
    v = s_scratch_alloc(&self->scratch, total * sizeof *v);
    for (size_t i = first; i < s->nchunks && s->chunks[i].tmin < end; i++) {
        const struct s_chunk *c = &s->chunks[i];
        k += agg_chunk_decode(c->data, c->len, ts + k, v + k, total - k);
    }
    if (s->n > 0) {
        memcpy(ts + k, s->ts, s->n * sizeof *ts);
        memcpy(v + k, s->v, s->n * sizeof *v);
        k += s->n;
    }
    size_t a = s_lower(ts, k, start);
    size_t b = end == INT64_MAX ? k : s_lower(ts, k, end);
    out->ts = ts + a;
    out->v = v + a;
    out->n = b > a ? b - a : 0;
}

size_t
agg_store_select(agg_store_t *self, const char *sel,
                 const struct series_tag *filters, size_t nfilters,
                 int64_t start, int64_t end, struct agg_view **views)
{
    size_t n = 0, cap = 0;
    struct agg_view *out = NULL;
    struct s_series *exact = NULL;

    *views = NULL;
    s_scratch_clear(&self->scratch);
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
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            out = xrealloc(out, cap * sizeof *out);
        }
        out[n].key = s->key;
        s_view(self, s, start, end, &out[n]);
        n++;
    }
    *views = out;
    return n;
}

void
agg_store_seal_all(agg_store_t *self)
{
    for (struct s_series *s = zhashx_first(self->series); s;
         s = zhashx_next(self->series))
        s_seal(self, s);
}

int
agg_store_sync(agg_store_t *self, uint64_t *len)
{
    *len = 0;
    if (self->fd == -1)
        return 0;
    if (self->io_failed)
        return -1;
    if (fdatasync(self->fd) == -1) {
        log_warn("agg_store: fdatasync %s", self->path);
        self->io_failed = true;
        return -1;
    }
    *len = self->file_len;
    return 0;
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

void
agg_store_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    struct agg_view *v;
    struct series_tag f[] = {{"device", "b"}};
    char dir[] = "/tmp/agg_store_test.XXXXXX";
    uint64_t len;
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

    /* Sealed chunks on disk: N points in time order, with late points
     * and duplicates into sealed ranges, then a reopen. */
    assert(mkdtemp(dir));
    st = agg_store_open(dir, 0);
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
    st = agg_store_open(dir, len);
    assert(st && agg_store_points(st) == N + 1 && agg_store_chunks(st) == 4);
    assert(agg_store_select(st, "s", NULL, 0, 40, 70, &v) == 1);
    assert(v[0].n == 4 && v[0].v[0] == 0.04 && v[0].v[1] == -1.0 &&
           v[0].v[2] == -2.0 && v[0].v[3] == 0.06);
    free(v);
    /* A checkpoint length shorter than the file drops what follows. */
    agg_store_destroy(&st);
    st = agg_store_open(dir, 0);
    assert(st && agg_store_points(st) == 0);
    agg_store_destroy(&st);
    s_test_rmrf(dir);
    if (verbose)
        printf("agg_store: ok\n");
    TEST_OK("agg_store");
}
