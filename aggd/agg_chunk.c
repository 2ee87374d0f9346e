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

/* floor((theta * r + 8) / 16): what the previous residual r predicts. */
static int64_t
s_pred(int theta, int64_t r)
{
    int64_t x = theta * r + 8;
    return x >= 0 ? x / 16 : -((-x + 15) / 16);
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

static size_t
s_decode_raw(const unsigned char *p, size_t len, size_t n, int64_t *ts,
             double *v)
{
    size_t off = 1;
    uint64_t x, prev = 0, pd = 0;
    int enc = p[0];

    for (size_t i = 0; i < n; i++) {
        if (!s_get_uvar(p, len, &off, &x))
            return 0;
        x = s_unzz(x);
        if (i == 0)
            prev = x;
        else if (i == 1)
            prev += (pd = x);
        else
            prev += (pd += x);
        ts[i] = (int64_t)prev;
    }
    if (enc == AGG_CHUNK_SCALED) {
        uint64_t k = 0;
        if (off >= len || p[off] > AGG_CHUNK_DEC_MAX)
            return 0;
        double scale = s_pow10[p[off++]];
        for (size_t i = 0; i < n; i++) {
            if (!s_get_uvar(p, len, &off, &x))
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
            if (!s_get_uvar(p, len, &off, &x))
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
    assert(agg_chunk_decode(buf, len, t2, v2, n - 1) == 0 || n == 0);
    /* Every truncation and a flipped byte anywhere: an error, never a
     * crash or an overrun (ASan watches). */
    for (size_t cut = 0; cut < len; cut += 1 + len / 64)
        assert(agg_chunk_decode(buf, cut, t2, v2, n) == 0);
    /* A kept zstd context, through those errors, still decodes exactly. */
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    for (size_t i = 0; i < len; i += 1 + len / 32) {
        buf[i] ^= 0x5a;
        (void)agg_chunk_decode(buf, len, t2, v2, n);
        (void)agg_chunk_decode_with(dctx, buf, len, t2, v2, n);
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
