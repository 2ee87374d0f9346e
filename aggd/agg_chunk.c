/*
 * agg_chunk: chunk codec (see agg_chunk.h).
 *
 * Layout: magic 0xC1, flags (bit 0: body is zstd), varint point count,
 * varint raw length, body. Raw: encoding byte, timestamps (zigzag varints:
 * t0, d0, then delta-of-delta), values (scaled: decimals byte, zigzag
 * varint k0 then deltas of k; scaled_ma: decimals byte, theta byte, k0,
 * then residuals r = dk + floor((theta * r' + 8) / 16) with r' the
 * previous residual (0 before the first delta), so dk = r - that; xor: 8
 * byte planes of the XORed bits).
 */
#include "aggd/agg_chunk.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define S_MAGIC 0xC1
#define S_FLAG_ZSTD 0x1
#define S_ZSTD_LEVEL 3
#define S_SCALED_MAX 9007199254740992.0 /* 2^53: integers exact in a double */
#define S_THETA_MAX 15
#define S_RESID_MAX (1LL << 59) /* |residual| the encoder stays under */

static const double s_pow10[AGG_CHUNK_DEC_MAX + 1] = {
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

struct s_buf {
    unsigned char *p; /* bytes */
    size_t n;         /* used */
    size_t cap;       /* allocated */
};

static void
s_reserve(struct s_buf *b, size_t more)
{
    if (b->n + more > b->cap) {
        b->cap = (b->n + more) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

static void
s_put_uvar(struct s_buf *b, uint64_t x)
{
    s_reserve(b, 10);
    while (x >= 0x80) {
        b->p[b->n++] = (unsigned char)(x | 0x80);
        x >>= 7;
    }
    b->p[b->n++] = (unsigned char)x;
}

static uint64_t
s_zz(uint64_t x)
{
    return (x << 1) ^ (uint64_t)((int64_t)x >> 63);
}

static uint64_t
s_unzz(uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

/* Read a varint at *off; false when it runs past len or over 64 bits. */
static bool
s_get_uvar(const unsigned char *p, size_t len, size_t *off, uint64_t *x)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (*off >= len)
            return false;
        unsigned char c = p[(*off)++];
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            *x = v;
            return true;
        }
    }
    return false;
}

static uint64_t
s_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* Smallest d such that every value is exactly k / 10^d, or -1. */
static int
s_decimals(const double *v, size_t n)
{
    int d = 0;

    for (size_t i = 0; i < n; i++) {
        for (;; d++) {
            if (d > AGG_CHUNK_DEC_MAX)
                return -1;
            double x = v[i] * s_pow10[d];
            if (!(fabs(x) < S_SCALED_MAX))
                return -1;
            double k = nearbyint(x);
            if (s_bits(k / s_pow10[d]) == s_bits(v[i]))
                break;
        }
    }
    /* Multiplying the k of earlier values by 10 keeps them exact, but a
     * final pass proves it for this very d. */
    for (size_t i = 0; i < n; i++) {
        double k = nearbyint(v[i] * s_pow10[d]);
        if (!(fabs(k) < S_SCALED_MAX) ||
            s_bits((double)(int64_t)k / s_pow10[d]) != s_bits(v[i]))
            return -1;
    }
    return d;
}

/* floor((theta * r + 8) / 16): what the previous residual r predicts.
 * An arithmetic shift (gcc and clang shift a negative int right
 * arithmetically; the selftest checks it against the division): the
 * division's branch on the sign was mispredicted on every other residual
 * of a random walk. */
static int64_t
s_pred(int theta, int64_t r)
{
    return (theta * r + 8) >> 4;
}

/* theta for the deltas of k: the MA(1) coefficient of their lag-1
 * correlation rho (theta / (1 + theta^2) = -rho), in sixteenths. */
static int
s_theta(const int64_t *k, size_t n)
{
    double s0 = 0, s1 = 0, rho, t;

    for (size_t i = 2; i < n; i++) {
        double d1 = (double)(k[i] - k[i - 1]), d0 = (double)(k[i - 1] - k[i - 2]);
        s0 += d1 * d1;
        s1 += d1 * d0;
    }
    rho = s0 > 0 ? -s1 / s0 : 0;
    if (!(rho > 0))
        return 0;
    if (rho > 0.49)
        rho = 0.49;
    t = (1 - sqrt(1 - 4 * rho * rho)) / (2 * rho);
    return t * 16 > S_THETA_MAX ? S_THETA_MAX : (int)lround(t * 16);
}

/* The body with theta for scaled values (-1: chosen), for the test. */
static size_t s_encode(const int64_t *ts, const double *v, size_t n,
                       int theta, unsigned char **out);

size_t
agg_chunk_encode(const int64_t *ts, const double *v, size_t n,
                 unsigned char **out)
{
    return s_encode(ts, v, n, -1, out);
}

static size_t
s_encode(const int64_t *ts, const double *v, size_t n, int theta,
         unsigned char **out)
{
    struct s_buf raw = {0}, o = {0};
    int d = s_decimals(v, n);
    uint64_t prev = 0, pd = 0;

    assert(n >= 1 && n <= AGG_CHUNK_POINTS_MAX);
    s_reserve(&raw, n * 4 + 16);
    raw.p[raw.n++] = d >= 0 ? AGG_CHUNK_SCALED_MA : AGG_CHUNK_XOR;
    for (size_t i = 0; i < n; i++) {
        uint64_t t = (uint64_t)ts[i];
        if (i == 0)
            s_put_uvar(&raw, s_zz(t));
        else if (i == 1)
            s_put_uvar(&raw, s_zz(pd = t - prev));
        else {
            uint64_t dl = t - prev;
            s_put_uvar(&raw, s_zz(dl - pd));
            pd = dl;
        }
        prev = t;
    }
    if (d >= 0) {
        int64_t *k = xmalloc(n * sizeof *k), r = 0;
        for (size_t i = 0; i < n; i++)
            k[i] = (int64_t)nearbyint(v[i] * s_pow10[d]);
        if (theta < 0)
            theta = s_theta(k, n);
        s_reserve(&raw, 2);
        raw.p[raw.n++] = (unsigned char)d;
        raw.p[raw.n++] = (unsigned char)theta;
        s_put_uvar(&raw, s_zz((uint64_t)k[0]));
        /* |k| < 2^53, so |dk| < 2^54 and |r| < 16 * 2^54 = 2^58 */
        for (size_t i = 1; i < n; i++) {
            r = k[i] - k[i - 1] + s_pred(theta, r);
            s_put_uvar(&raw, s_zz((uint64_t)r));
        }
        free(k);
    } else {
        uint64_t pb = 0;
        s_reserve(&raw, 8 * n);
        for (size_t i = 0; i < n; i++) {
            uint64_t b = s_bits(v[i]), x = b ^ pb;
            pb = b;
            for (int plane = 0; plane < 8; plane++)
                raw.p[raw.n + (size_t)plane * n + i] =
                    (unsigned char)(x >> (56 - 8 * plane));
        }
        raw.n += 8 * n;
    }
    size_t bound = ZSTD_compressBound(raw.n);
    s_reserve(&o, 2 + 20 + bound);
    o.p[o.n++] = S_MAGIC;
    o.p[o.n++] = S_FLAG_ZSTD;
    s_put_uvar(&o, n);
    s_put_uvar(&o, raw.n);
    size_t z = ZSTD_compress(o.p + o.n, bound, raw.p, raw.n, S_ZSTD_LEVEL);
    if (ZSTD_isError(z) || z >= raw.n) {
        o.p[1] = 0; /* incompressible: keep the raw body */
        memcpy(o.p + o.n, raw.p, raw.n);
        o.n += raw.n;
    } else {
        o.n += z;
    }
    free(raw.p);
    *out = xrealloc(o.p, o.n);
    return o.n;
}

/* Parse the header; returns the body offset or 0. */
static size_t
s_header(const unsigned char *buf, size_t len, uint64_t *n, uint64_t *rawlen,
         int *flags)
{
    size_t off = 2;

    if (len < 4 || buf[0] != S_MAGIC || (buf[1] & ~S_FLAG_ZSTD) != 0)
        return 0;
    *flags = buf[1];
    if (!s_get_uvar(buf, len, &off, n) || !s_get_uvar(buf, len, &off, rawlen))
        return 0;
    /* A point costs at least one byte of timestamp and value each, and at
     * most 10 + 10 (scaled) or 10 + 8 (xor). */
    if (*n == 0 || *n > AGG_CHUNK_POINTS_MAX || *rawlen < 2 * *n + 1 ||
        *rawlen > 20 * *n + 2)
        return 0;
    return off;
}

size_t
agg_chunk_count(const unsigned char *buf, size_t len)
{
    uint64_t n, rawlen;
    int flags;
    return s_header(buf, len, &n, &rawlen, &flags) ? (size_t)n : 0;
}

int
agg_chunk_encoding(const unsigned char *buf, size_t len)
{
    uint64_t n, rawlen;
    int flags;
    size_t off = s_header(buf, len, &n, &rawlen, &flags);
    unsigned char enc;

    if (off == 0)
        return -1;
    if (flags & S_FLAG_ZSTD) {
        unsigned char *raw = xmalloc(rawlen);
        size_t r = ZSTD_decompress(raw, rawlen, buf + off, len - off);
        enc = ZSTD_isError(r) || r != rawlen ? 0xff : raw[0];
        free(raw);
    } else {
        enc = buf[off];
    }
    return enc <= AGG_CHUNK_SCALED_MA ? enc : -1;
}

/* A varint, one byte without a call (most residuals and timestamp
 * deltas of steady data are). */
static inline bool
s_get_uvar1(const unsigned char *p, size_t len, size_t *off, uint64_t *x)
{
    if (*off < len && p[*off] < 0x80) {
        *x = p[(*off)++];
        return true;
    }
    return s_get_uvar(p, len, off, x);
}

/* The n timestamps of a raw body from *off on. */
static bool
s_decode_ts(const unsigned char *p, size_t len, size_t n, int64_t *ts,
            size_t *off)
{
    uint64_t x, prev = 0, pd = 0;

    for (size_t i = 0; i < n; i++) {
        if (!s_get_uvar1(p, len, off, &x))
            return false;
        x = s_unzz(x);
        if (i == 0)
            prev = x;
        else if (i == 1)
            prev += (pd = x);
        else
            prev += (pd += x);
        ts[i] = (int64_t)prev;
    }
    return true;
}

/* Step over n varints from *off on, as s_decode_ts reads them (at most
 * 10 bytes each), without their values: eight one-byte ones at a time. */
static bool
s_skip_uvars(const unsigned char *p, size_t len, size_t n, size_t *off)
{
    size_t o = *off, cnt = 0, run = 0;

    while (cnt < n) {
        uint64_t w;
        if (run == 0 && n - cnt >= 8 && len - o >= 8) {
            memcpy(&w, p + o, 8);
            if ((w & 0x8080808080808080ULL) == 0) {
                o += 8;
                cnt += 8;
                continue;
            }
        }
        if (o >= len)
            return false;
        if (p[o++] & 0x80) {
            if (++run == 10)
                return false;
        } else {
            cnt++;
            run = 0;
        }
    }
    *off = o;
    return true;
}

static size_t
s_decode_raw(const unsigned char *p, size_t len, size_t n, int64_t *ts,
             double *v)
{
    size_t off = 1;
    uint64_t x;
    int enc = p[0];

    if (!s_decode_ts(p, len, n, ts, &off))
        return 0;
    if (enc == AGG_CHUNK_SCALED) {
        uint64_t k = 0;
        if (off >= len || p[off] > AGG_CHUNK_DEC_MAX)
            return 0;
        double scale = s_pow10[p[off++]];
        for (size_t i = 0; i < n; i++) {
            if (!s_get_uvar1(p, len, &off, &x))
                return 0;
            k += s_unzz(x);
            v[i] = (double)(int64_t)k / scale;
        }
    } else if (enc == AGG_CHUNK_SCALED_MA) {
        uint64_t k;
        int64_t r = 0;
        if (len - off < 2 || p[off] > AGG_CHUNK_DEC_MAX ||
            p[off + 1] > S_THETA_MAX)
            return 0;
        double scale = s_pow10[p[off]];
        int theta = p[off + 1];
        off += 2;
        if (!s_get_uvar(p, len, &off, &x))
            return 0;
        v[0] = (double)(int64_t)(k = s_unzz(x)) / scale;
        for (size_t i = 1; i < n; i++) {
            int64_t pred = s_pred(theta, r);
            if (!s_get_uvar1(p, len, &off, &x))
                return 0;
            r = (int64_t)s_unzz(x);
            if (r > S_RESID_MAX || r < -S_RESID_MAX)
                return 0; /* not what the encoder writes; keeps s_pred exact */
            k += (uint64_t)r - (uint64_t)pred;
            v[i] = (double)(int64_t)k / scale;
        }
    } else if (enc == AGG_CHUNK_XOR) {
        uint64_t pb = 0;
        if (len - off != 8 * n)
            return 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t b = 0;
            for (int plane = 0; plane < 8; plane++)
                b = b << 8 | p[off + (size_t)plane * n + i];
            pb ^= b;
            memcpy(&v[i], &pb, sizeof pb);
        }
        off += 8 * n;
    } else {
        return 0;
    }
    return off == len ? n : 0;
}

size_t
agg_chunk_decode(const unsigned char *buf, size_t len, int64_t *ts, double *v,
                 size_t cap)
{
    return agg_chunk_decode_with(NULL, buf, len, ts, v, cap);
}

size_t
agg_chunk_decode_with(agg_chunk_dctx_t *dctx, const unsigned char *buf,
                      size_t len, int64_t *ts, double *v, size_t cap)
{
    uint64_t n, rawlen;
    int flags;
    size_t off = s_header(buf, len, &n, &rawlen, &flags), got;

    if (off == 0 || n > cap)
        return 0;
    if (!(flags & S_FLAG_ZSTD)) {
        if (len - off != rawlen)
            return 0;
        return s_decode_raw(buf + off, rawlen, (size_t)n, ts, v);
    }
    unsigned char *raw = xmalloc(rawlen);
    size_t r = dctx ? ZSTD_decompressDCtx(dctx, raw, rawlen, buf + off, len - off)
                    : ZSTD_decompress(raw, rawlen, buf + off, len - off);
    got = ZSTD_isError(r) || r != rawlen
              ? 0
              : s_decode_raw(raw, rawlen, (size_t)n, ts, v);
    free(raw);
    return got;
}

/* agg_chunk_pick: the bands over the integers k of a scaled chunk
 * (values k / scale): k / scale is monotonic in k, so a band of values
 * is a range of k, found once per chunk; only the k inside are divided. */
struct s_kbands {
    int64_t lo[AGG_CHUNK_BANDS_MAX], hi[AGG_CHUNK_BANDS_MAX];
    int64_t mlo[AGG_CHUNK_BANDS_MAX], mhi[AGG_CHUNK_BANDS_MAX];
    uint64_t env_lo, env_span; /* every margin inside [env_lo, +span] */
};

/* The smallest k with k / s >= x (up) or the largest with k / s <= x;
 * false when x * s is not safely an exact integer range (the caller then
 * compares the doubles). */
static bool
s_kbound(double x, double s, bool up, int64_t *k)
{
    double y = x * s;

    if (isinf(x) && (x > 0) != up) {
        *k = up ? INT64_MIN : INT64_MAX;
        return true;
    }
    if (!(fabs(y) < 4503599627370496.0)) /* 2^52 */
        return false;
    int64_t c = (int64_t)(up ? ceil(y) : floor(y));
    for (int i = 0; i < 4; i++) {
        if (up && (double)c / s < x)
            c++;
        else if (up && (double)(c - 1) / s >= x)
            c--;
        else if (!up && (double)c / s > x)
            c--;
        else if (!up && (double)(c + 1) / s <= x)
            c++;
        else {
            *k = c;
            return true;
        }
    }
    return false;
}

static bool
s_kbands(const struct agg_chunk_bands *bd, double s, struct s_kbands *kb)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;

    for (size_t j = 0; j < bd->n; j++) {
        if (!s_kbound(bd->lo[j], s, true, &kb->lo[j]) ||
            !s_kbound(bd->hi[j], s, false, &kb->hi[j]) ||
            !s_kbound(bd->mlo[j], s, true, &kb->mlo[j]) ||
            !s_kbound(bd->mhi[j], s, false, &kb->mhi[j]))
            return false;
        lo = kb->mlo[j] < lo ? kb->mlo[j] : lo;
        hi = kb->mhi[j] > hi ? kb->mhi[j] : hi;
    }
    if (lo > hi) { /* no band can hold a k: an envelope of k = 1 only,
                      which no band takes either */
        lo = 1;
        hi = 1;
    }
    kb->env_lo = (uint64_t)lo;
    kb->env_span = (uint64_t)hi - (uint64_t)lo;
    return true;
}

static void
s_band_push(struct agg_chunk_bands *bd, size_t j, double v)
{
    if (bd->nvals[j] == bd->cap[j]) {
        bd->cap[j] = bd->cap[j] ? 2 * bd->cap[j] : 1024;
        bd->vals[j] = xrealloc(bd->vals[j], bd->cap[j] * sizeof(double));
    }
    bd->vals[j][bd->nvals[j]++] = v;
}

/* A value near a band's bound: edge() says where it belongs. */
static void
s_band_edge(struct agg_chunk_bands *bd, double v)
{
    int w = bd->edge(bd->arg, v);

    if (w >= 0 && (size_t)w < bd->n)
        s_band_push(bd, (size_t)w, v);
}

static void
s_band_value(struct agg_chunk_bands *bd, double v)
{
    for (size_t j = 0; j < bd->n; j++)
        if (v >= bd->lo[j] && v <= bd->hi[j]) {
            s_band_push(bd, j, v);
            return;
        }
    for (size_t j = 0; j < bd->n; j++)
        if (v >= bd->mlo[j] && v <= bd->mhi[j]) {
            s_band_edge(bd, v);
            return;
        }
}

static void
s_band_k(struct agg_chunk_bands *bd, const struct s_kbands *kb, int64_t k,
         double scale)
{
    for (size_t j = 0; j < bd->n; j++)
        if (k >= kb->lo[j] && k <= kb->hi[j]) {
            s_band_push(bd, j, (double)k / scale);
            return;
        }
    for (size_t j = 0; j < bd->n; j++)
        if (k >= kb->mlo[j] && k <= kb->mhi[j]) {
            s_band_edge(bd, (double)k / scale);
            return;
        }
}

#define S_TAB_MAX (1u << 20) /* a band table's bytes, at most */

/* The table of k to band for d decimals (agg_chunk_bands.tab), or NULL
 * when the bands span too many k. */
static const unsigned char *
s_ktab(struct agg_chunk_bands *bd, unsigned d, const struct s_kbands *kb)
{
    if (bd->tdone[d])
        return bd->tab[d];
    bd->tdone[d] = true;
    if (kb->env_span >= S_TAB_MAX)
        return NULL;
    size_t n = (size_t)kb->env_span + 1;
    unsigned char *t = xcalloc(n, 1);
    for (size_t j = 0; j < bd->n; j++)
        for (int64_t k = kb->mlo[j]; k <= kb->mhi[j]; k++)
            t[(uint64_t)k - kb->env_lo] = 255;
    for (size_t j = 0; j < bd->n; j++) /* sure ones over the margins */
        for (int64_t k = kb->lo[j]; k <= kb->hi[j]; k++)
            t[(uint64_t)k - kb->env_lo] = (unsigned char)(j + 1);
    bd->tab[d] = t;
    bd->tlo[d] = (int64_t)kb->env_lo;
    bd->tn[d] = n;
    return t;
}

/* A k whose table entry is e (nonzero). */
static void
s_band_tab(struct agg_chunk_bands *bd, unsigned e, int64_t k, double scale)
{
    if (e != 255)
        s_band_push(bd, e - 1, (double)k / scale);
    else
        s_band_edge(bd, (double)k / scale);
}

void
agg_chunk_bands_free(struct agg_chunk_bands *bd)
{
    for (size_t j = 0; j < AGG_CHUNK_BANDS_MAX; j++)
        free(bd->vals[j]);
    for (size_t d = 0; d <= AGG_CHUNK_DEC_MAX; d++)
        free(bd->tab[d]);
    free(bd->raw);
    free(bd->ts);
    memset(bd, 0, sizeof *bd);
}

/* The values of points [ia, ib) of a raw body whose timestamps end at
 * off; false when corrupt (s_decode_raw would return 0). */
static bool
s_pick_values(const unsigned char *p, size_t len, size_t off, size_t n,
              size_t ia, size_t ib, struct agg_chunk_bands *bd)
{
    uint64_t x, k = 0;
    int enc = p[0];
    struct s_kbands kb;

    if (enc == AGG_CHUNK_XOR) {
        uint64_t pb = 0;
        double v;
        if (len - off != 8 * n)
            return false;
        for (size_t i = 0; i < ib; i++) {
            uint64_t w = 0;
            for (int plane = 0; plane < 8; plane++)
                w = w << 8 | p[off + (size_t)plane * n + i];
            pb ^= w;
            memcpy(&v, &pb, sizeof pb);
            if (i >= ia)
                s_band_value(bd, v);
        }
        return true;
    }
    if (enc != AGG_CHUNK_SCALED && enc != AGG_CHUNK_SCALED_MA)
        return false;
    size_t hdr = enc == AGG_CHUNK_SCALED_MA ? 2 : 1;
    if (len - off < hdr || p[off] > AGG_CHUNK_DEC_MAX ||
        (enc == AGG_CHUNK_SCALED_MA && p[off + 1] > S_THETA_MAX))
        return false;
    double scale = s_pow10[p[off]];
    int theta = enc == AGG_CHUNK_SCALED_MA ? p[off + 1] : 0;
    bool ints = s_kbands(bd, scale, &kb);
    const unsigned char *tab = ints ? s_ktab(bd, p[off], &kb) : NULL;
    size_t tn = tab ? bd->tn[p[off]] : 0;
    uint64_t tlo = tab ? (uint64_t)bd->tlo[p[off]] : 0;
    int64_t r = 0;
    off += hdr;
    /* As s_decode_raw: format 3 adds plain deltas (theta 0 and no
     * residual bound there), scaled_ma starts from k0 and subtracts what
     * the previous residual predicts. */
    if (enc == AGG_CHUNK_SCALED_MA && tab && ia == 0 && ib == n) {
        /* The common case, a whole chunk of the current encoding: one
         * table look-up a value. */
        if (!s_get_uvar1(p, len, &off, &x))
            return false;
        k = s_unzz(x);
        for (size_t i = 0;; i++) {
            uint64_t o = k - tlo;
            if (o < tn && tab[o])
                s_band_tab(bd, tab[o], (int64_t)k, scale);
            if (i + 1 == n)
                break;
            int64_t pred = s_pred(theta, r);
            if (!s_get_uvar1(p, len, &off, &x))
                return false;
            r = (int64_t)s_unzz(x);
            if (r > S_RESID_MAX || r < -S_RESID_MAX)
                return false;
            k += (uint64_t)r - (uint64_t)pred;
        }
        return off == len;
    }
    for (size_t i = 0; i < n; i++) {
        if (!s_get_uvar1(p, len, &off, &x))
            return false;
        if (enc == AGG_CHUNK_SCALED) {
            k += s_unzz(x);
        } else if (i == 0) {
            k = s_unzz(x);
        } else {
            int64_t pred = s_pred(theta, r);
            r = (int64_t)s_unzz(x);
            if (r > S_RESID_MAX || r < -S_RESID_MAX)
                return false;
            k += (uint64_t)r - (uint64_t)pred;
        }
        if (i < ia || i >= ib)
            continue;
        if (!ints)
            s_band_value(bd, (double)(int64_t)k / scale);
        else if (k - kb.env_lo <= kb.env_span)
            s_band_k(bd, &kb, (int64_t)k, scale);
    }
    return off == len;
}

void
agg_chunk_pick_values(struct agg_chunk_bands *bd, const double *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s_band_value(bd, v[i]);
}

size_t
agg_chunk_pick(agg_chunk_dctx_t *dctx, const unsigned char *buf, size_t len,
               int64_t a, int64_t b, struct agg_chunk_bands *bd)
{
    uint64_t n, rawlen;
    int flags;
    size_t off = s_header(buf, len, &n, &rawlen, &flags), ia = 0, ib;
    const unsigned char *raw = buf + off;

    if (off == 0)
        return SIZE_MAX;
    if (flags & S_FLAG_ZSTD) {
        if (bd->rawcap < rawlen) {
            bd->rawcap = (size_t)rawlen;
            bd->raw = xrealloc(bd->raw, bd->rawcap);
        }
        size_t got = dctx ? ZSTD_decompressDCtx(dctx, bd->raw, rawlen,
                                                buf + off, len - off)
                          : ZSTD_decompress(bd->raw, rawlen, buf + off,
                                            len - off);
        if (ZSTD_isError(got) || got != rawlen)
            return SIZE_MAX;
        raw = bd->raw;
    } else if (len - off != rawlen) {
        return SIZE_MAX;
    }
    off = 1;
    ib = (size_t)n;
    if (a == INT64_MIN && b == INT64_MAX) {
        if (!s_skip_uvars(raw, (size_t)rawlen, (size_t)n, &off))
            return SIZE_MAX;
    } else {
        if (bd->tscap < n) {
            bd->tscap = (size_t)n;
            bd->ts = xrealloc(bd->ts, bd->tscap * sizeof *bd->ts);
        }
        if (!s_decode_ts(raw, (size_t)rawlen, (size_t)n, bd->ts, &off))
            return SIZE_MAX;
        while (ia < n && bd->ts[ia] < a) /* ascending: at most 2 a query */
            ia++;
        for (ib = ia; ib < n && bd->ts[ib] < b;)
            ib++;
    }
    if (!s_pick_values(raw, (size_t)rawlen, off, (size_t)n, ia, ib, bd))
        return SIZE_MAX;
    return ib - ia;
}

static int
s_test_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* agg_chunk_pick's edge() in the test: the band whose margin holds v. */
static int
s_test_edge(void *arg, double v)
{
    const struct agg_chunk_bands *bd = arg;

    for (size_t j = 0; j < bd->n; j++)
        if (v >= bd->mlo[j] && v <= bd->mhi[j])
            return (int)j;
    return -1;
}

/* agg_chunk_pick against agg_chunk_decode: for bands around three ranges
 * of the values (margins of 0 and of 1e-9 relative, some wider: the
 * values in a margin go to edge()), the whole chunk and a part, the same
 * values in the same order, bit for bit; a corrupt chunk SIZE_MAX. */
static void
s_pick_check(const unsigned char *buf, size_t len)
{
    size_t n = agg_chunk_count(buf, len), got;
    int64_t *ts = xmalloc((n ? n : 1) * sizeof *ts);
    double *v = xmalloc((n ? n : 1) * sizeof *v), *srt;
    struct agg_chunk_bands bd = {0};

    bd.edge = s_test_edge;
    bd.arg = &bd;
    if (n == 0 || agg_chunk_decode(buf, len, ts, v, n) != n) {
        bd.n = 1;
        bd.lo[0] = bd.mlo[0] = -INFINITY;
        bd.hi[0] = bd.mhi[0] = INFINITY;
        assert(agg_chunk_pick(NULL, buf, len, INT64_MIN, INT64_MAX, &bd) ==
               SIZE_MAX);
        goto out;
    }
    srt = xmalloc(n * sizeof *srt);
    memcpy(srt, v, n * sizeof *srt);
    qsort(srt, n, sizeof *srt, s_test_cmp);
    bd.n = 0; /* disjoint bands, as agg_chunk_pick wants them */
    for (size_t j = 0; j < 3; j++) {
        double lo = srt[(2 * j + 0) * (n - 1) / 6];
        double hi = srt[(2 * j + 1) * (n - 1) / 6];
        double m = j == 1 ? 1e-9 * fabs(lo) : j == 2 ? 0.05 : 0;
        if (bd.n > 0 && !(lo > bd.mhi[bd.n - 1]))
            continue;
        bd.mlo[bd.n] = lo;
        bd.mhi[bd.n] = hi;
        bd.lo[bd.n] = lo + m;
        bd.hi[bd.n] = hi - m;
        if (!(bd.lo[bd.n] <= bd.hi[bd.n]))
            bd.lo[bd.n] = bd.hi[bd.n] = lo;
        bd.n++;
    }
    free(srt);
    for (int part = 0; part < 2; part++) {
        int64_t a = part ? ts[n / 3] : INT64_MIN;
        int64_t b = part ? ts[2 * n / 3] + (n > 1 ? 0 : 1) : INT64_MAX;
        size_t want = 0;
        for (size_t j = 0; j < bd.n; j++)
            bd.nvals[j] = 0;
        got = agg_chunk_pick(NULL, buf, len, a, b, &bd);
        size_t k[AGG_CHUNK_BANDS_MAX] = {0};
        for (size_t i = 0; i < n; i++) {
            if (ts[i] < a || ts[i] >= b)
                continue;
            want++;
            int j = s_test_edge(&bd, v[i]);
            if (j < 0)
                continue;
            assert(k[j] < bd.nvals[j]);
            assert(s_bits(bd.vals[j][k[j]++]) == s_bits(v[i]));
        }
        assert(got == want);
        for (size_t j = 0; j < bd.n; j++)
            assert(k[j] == bd.nvals[j]);
    }
out:
    agg_chunk_bands_free(&bd);
    free(ts);
    free(v);
}

/* Round trip n points and return the encoded size. */
static size_t
s_round_trip(const int64_t *ts, const double *v, size_t n, int want_enc)
{
    unsigned char *buf;
    size_t len = agg_chunk_encode(ts, v, n, &buf);
    int64_t *t2 = xmalloc(n * sizeof *t2);
    double *v2 = xmalloc(n * sizeof *v2);

    assert(agg_chunk_count(buf, len) == n);
    assert(agg_chunk_encoding(buf, len) == want_enc);
    assert(agg_chunk_decode(buf, len, t2, v2, n) == n);
    assert(memcmp(ts, t2, n * sizeof *ts) == 0);
    assert(memcmp(v, v2, n * sizeof *v) == 0); /* bit-identical */
    s_pick_check(buf, len);
    assert(agg_chunk_decode(buf, len, t2, v2, n - 1) == 0 || n == 0);
    /* Every truncation and a flipped byte anywhere: an error, never a
     * crash or an overrun (ASan watches). */
    for (size_t cut = 0; cut < len; cut += 1 + len / 64) {
        assert(agg_chunk_decode(buf, cut, t2, v2, n) == 0);
        s_pick_check(buf, cut);
    }
    /* A kept zstd context, through those errors, still decodes exactly. */
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    for (size_t i = 0; i < len; i += 1 + len / 32) {
        buf[i] ^= 0x5a;
        (void)agg_chunk_decode(buf, len, t2, v2, n);
        (void)agg_chunk_decode_with(dctx, buf, len, t2, v2, n);
        s_pick_check(buf, len); /* the same values, or SIZE_MAX */
        buf[i] ^= 0x5a;
    }
    memset(v2, 0, n * sizeof *v2);
    assert(agg_chunk_decode_with(dctx, buf, len, t2, v2, n) == n);
    assert(memcmp(ts, t2, n * sizeof *ts) == 0 && memcmp(v, v2, n * sizeof *v) == 0);
    ZSTD_freeDCtx(dctx);
    free(buf);
    free(t2);
    free(v2);
    return len;
}

void
agg_chunk_test(bool verbose)
{
    enum { N = 2000 };
    int64_t *ts = xmalloc(N * sizeof *ts);
    double *v = xmalloc(N * sizeof *v);
    unsigned seed = 1;
    double level = 21.0;
    size_t len;

    /* s_pred is the floor of the division, as the format says. */
    for (int theta = 0; theta <= S_THETA_MAX; theta++)
        for (int64_t r = -40000; r <= 40000; r += 1 + (r > -50 && r < 50 ? 0 : 6)) {
            int64_t x = theta * r + 8;
            assert(s_pred(theta, r) == (x >= 0 ? x / 16 : -((-x + 15) / 16)));
            int64_t big = (r < 0 ? -S_RESID_MAX : S_RESID_MAX) + r / 4000;
            x = theta * big + 8;
            assert(s_pred(theta, big) == (x >= 0 ? x / 16 : -((-x + 15) / 16)));
        }
    /* A sensor: 10 s cadence, 2-decimal random walk. */
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        level += ((int)(seed >> 16) % 15 - 7) / 100.0;
        ts[i] = 1704067200000000000LL + (int64_t)i * 10000000000LL;
        v[i] = round(level * 100) / 100;
    }
    len = s_round_trip(ts, v, N, AGG_CHUNK_SCALED_MA);
    if (verbose)
        printf("2-decimal walk: %.3f bytes/point\n", (double)len / N);
    assert(len < N); /* under a byte a point */
    /* A walk with measurement noise (as gen.py makes them): theta takes
     * bytes off plain deltas. */
    {
        unsigned char *b0, *b1;
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            level += ((int)(seed >> 16) % 5 - 2) / 100.0;
            seed = seed * 1103515245u + 12345u;
            v[i] = round((level + ((int)(seed >> 16) % 21 - 10) / 100.0) * 100) / 100;
        }
        size_t l0 = s_encode(ts, v, N, 0, &b0);
        len = s_round_trip(ts, v, N, AGG_CHUNK_SCALED_MA);
        assert(agg_chunk_encode(ts, v, N, &b1) == len);
        if (verbose)
            printf("2-decimal walk with noise: %.3f bytes/point, %.3f with "
                   "plain deltas\n", (double)len / N, (double)l0 / N);
        assert(len < l0 * 0.97);
        free(b0);
        free(b1);
    }
    /* Huge scaled values, deltas near 2^54 back and forth (theta at its
     * largest): exact, and no overflow (UBSan watches). */
    for (int i = 0; i < N; i++)
        v[i] = (i % 2 ? 1 : -1) * 4503599627370495.0;
    s_round_trip(ts, v, N, AGG_CHUNK_SCALED_MA);
    /* A chunk of format 3 (plain deltas, encoding 0) still reads. */
    {
        static const unsigned char old[] = {0xC1, 0, 2, 7, AGG_CHUNK_SCALED,
                                            10, 4, 2, 0xAC, 0x02, 49};
        int64_t t2[2];
        double v2[2];
        assert(agg_chunk_decode(old, sizeof old, t2, v2, 2) == 2);
        assert(t2[0] == 5 && t2[1] == 7 && v2[0] == 1.5 && v2[1] == 1.25);
        assert(agg_chunk_encoding(old, sizeof old) == AGG_CHUNK_SCALED);
        s_pick_check(old, sizeof old);
    }
    /* Jittered, out-of-cadence timestamps; negative values; -0.0 and
     * full-precision doubles need the XOR encoding. */
    for (int i = 0; i < N; i++) {
        seed = seed * 1103515245u + 12345u;
        ts[i] = (i ? ts[i - 1] : -5) + 1 + (int64_t)(seed >> 20);
        v[i] = sin(i * 0.01) * 1e6 / 3.0;
    }
    len = s_round_trip(ts, v, N, AGG_CHUNK_XOR);
    if (verbose)
        printf("full doubles: %.3f bytes/point\n", (double)len / N);
    v[0] = -0.0;
    v[1] = 1e300;
    v[2] = -4.9e-324;
    s_round_trip(ts, v, 3, AGG_CHUNK_XOR);
    /* Integers and extreme timestamps. */
    for (int i = 0; i < N; i++) {
        v[i] = (double)(i % 7 - 3);
        ts[i] = INT64_MIN + (int64_t)i * (INT64_MAX / N);
    }
    s_round_trip(ts, v, N, AGG_CHUNK_SCALED_MA);
    v[0] = 1;
    ts[0] = 0;
    s_round_trip(ts, v, 1, AGG_CHUNK_SCALED_MA);
    v[0] = 0.1 + 0.2; /* 0.30000000000000004 is not 3 / 10 */
    s_round_trip(ts, v, 1, AGG_CHUNK_XOR);
    v[0] = 123456.789;
    s_round_trip(ts, v, 1, AGG_CHUNK_SCALED_MA);
    free(ts);
    free(v);
    TEST_OK("agg_chunk");
}
