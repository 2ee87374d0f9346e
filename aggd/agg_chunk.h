/*
 * agg_chunk: the encoding of an immutable chunk of one series' points.
 *
 * Timestamps: first value, first delta, then deltas of deltas, zigzag
 * varints (a steady 10 s cadence costs about nothing after compression).
 * Values, chosen per chunk: when every value is exactly k / 10^d for some
 * d <= AGG_CHUNK_DEC_MAX (sensor readings with few decimals), the integers
 * k as zigzag varint deltas, each less a fraction theta / 16 of the
 * previous residual (measurement noise on a random walk makes successive
 * deltas anticorrelated: theta, chosen per chunk from their lag-1
 * correlation, takes about 4 % off the bytes); otherwise the XOR of each double with the
 * previous one (as in Gorilla), its bytes transposed so the general
 * compressor sees the slowly changing sign/exponent bytes together. Then
 * zstd over the whole. Decoding gives back the exact bits written.
 */
#ifndef SP_AGG_CHUNK_H
#define SP_AGG_CHUNK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGG_CHUNK_DEC_MAX 9        /* most decimals of the scaled encoding */
#define AGG_CHUNK_POINTS_MAX 65536 /* points per chunk, at most */

enum agg_chunk_enc {
    AGG_CHUNK_SCALED = 0,   /* k / 10^d integers, delta + zigzag (read
                               only: format 3 and before) */
    AGG_CHUNK_XOR = 1,      /* XORed doubles, bytes transposed */
    AGG_CHUNK_SCALED_MA = 2 /* k / 10^d integers, delta less theta/16 of
                               the previous residual, zigzag */
};

/* Encode n points (1 <= n <= AGG_CHUNK_POINTS_MAX, ts strictly
 * ascending). Returns the size and sets *out (caller frees). Cannot fail. */
size_t agg_chunk_encode(const int64_t *ts, const double *v, size_t n,
                        unsigned char **out);
/* Number of points of an encoded chunk, or 0 when the header is bad. */
size_t agg_chunk_count(const unsigned char *buf, size_t len);
/* Value encoding chosen for a chunk (enum agg_chunk_enc), or -1. */
int agg_chunk_encoding(const unsigned char *buf, size_t len);
/* Decode into ts and v (room for agg_chunk_count points each). Returns
 * the number of points, or 0 when the chunk is corrupt (never reads or
 * writes out of bounds, whatever the input). */
size_t agg_chunk_decode(const unsigned char *buf, size_t len, int64_t *ts,
                        double *v, size_t cap);
/* The same with a zstd decompression context the caller keeps (NULL:
 * one made for the call): zstd allocates and frees about 100 KB for each
 * context, which cost as much as decoding a chunk. */
typedef struct ZSTD_DCtx_s agg_chunk_dctx_t;
size_t agg_chunk_decode_with(agg_chunk_dctx_t *dctx, const unsigned char *buf,
                             size_t len, int64_t *ts, double *v, size_t cap);

/* Values of a chunk picked by value, for exact percentiles: band j holds
 * the values v with lo[j] <= v <= hi[j]; a value outside every such band
 * but inside some [mlo[j], mhi[j]] (a margin around the band, as wide or
 * wider) is given to edge(arg, v), which returns its band or -1. Picked
 * values are appended to vals[j] (grown as needed). The rest is scratch
 * kept between calls; agg_chunk_bands_free frees it all. */
#define AGG_CHUNK_BANDS_MAX 64
struct agg_chunk_bands {
    size_t n; /* bands */
    double lo[AGG_CHUNK_BANDS_MAX], hi[AGG_CHUNK_BANDS_MAX];
    double mlo[AGG_CHUNK_BANDS_MAX], mhi[AGG_CHUNK_BANDS_MAX];
    int (*edge)(void *arg, double v);
    void *arg;
    double *vals[AGG_CHUNK_BANDS_MAX];
    size_t nvals[AGG_CHUNK_BANDS_MAX], cap[AGG_CHUNK_BANDS_MAX];
    unsigned char *raw; /* scratch: the decompressed body */
    size_t rawcap;
    int64_t *ts; /* scratch: timestamps of a chunk read in part */
    size_t tscap;
    /* Per decimals of scaled chunks: a table from k - tlo to 1 + band,
     * 0 (none) or 255 (a margin), built at the first such chunk. */
    unsigned char *tab[AGG_CHUNK_DEC_MAX + 1];
    int64_t tlo[AGG_CHUNK_DEC_MAX + 1];
    size_t tn[AGG_CHUNK_DEC_MAX + 1];
    bool tdone[AGG_CHUNK_DEC_MAX + 1];
};
/* Free what agg_chunk_pick allocated in bd (values, scratch, tables). */
void agg_chunk_bands_free(struct agg_chunk_bands *bd);
/* Pick the values of the points with a <= ts < b (a = INT64_MIN and b =
 * INT64_MAX: the whole chunk, whose timestamps are then skipped, not
 * decoded). Returns the number of points in [a, b), or SIZE_MAX when the
 * chunk is corrupt (agg_chunk_decode would return 0). The values are the
 * ones agg_chunk_decode gives, bit for bit. */
size_t agg_chunk_pick(agg_chunk_dctx_t *dctx, const unsigned char *buf,
                      size_t len, int64_t a, int64_t b,
                      struct agg_chunk_bands *bd);

/* Pick among n decoded values (the head's) as agg_chunk_pick does. */
void agg_chunk_pick_values(struct agg_chunk_bands *bd, const double *v,
                           size_t n);

/* Selftest. */
void agg_chunk_test(bool verbose);

#endif
