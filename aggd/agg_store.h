/*
 * agg_store: where aggd keeps readings. Per series, a head of recent
 * points (a sorted array in memory) is sealed into immutable compressed
 * chunks (agg_chunk) of up to AGG_STORE_CHUNK_POINTS points. A store opened
 * on a directory appends every sealed chunk to DIR/chunks.dat (records
 * checksummed like the WAL's) and loads them back at open; the head lives
 * only in memory and in aggd's WAL until a checkpoint seals it.
 *
 * A write on an existing (series, ts) overwrites, also when the point is
 * late and already sealed: the late point goes to the head, chunks sealed
 * later win over earlier ones, and reads merge overlapping chunks.
 */
#ifndef SP_AGG_STORE_H
#define SP_AGG_STORE_H

#include "common/series.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGG_STORE_CHUNK_POINTS 2048 /* a head is sealed at this size */

typedef struct agg_store agg_store_t;

/* A borrowed view of one series' points in a range, valid until the next
 * write to the store or the next agg_store_select. */
struct agg_view {
    const char *key;   /* canonical series key */
    const int64_t *ts; /* timestamps, ascending, unique */
    const double *v;   /* values */
    size_t n;          /* points in the view */
};

/* Create an empty in-memory store. Cannot fail. */
agg_store_t *agg_store_new(void);
/* Open a store on dir: cut DIR/chunks.dat to its first valid_len bytes
 * (what the last checkpoint covered; later chunks are rebuilt by the WAL
 * replay), then load every chunk. A record that fails its checksum inside
 * that length is corruption: logged, and the file cut there. Returns NULL
 * (logged) when the file cannot be used. */
agg_store_t *agg_store_open(const char *dir, uint64_t valid_len);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_store_destroy(agg_store_t **self_p);
/* Write a point. Returns 1 when it is new, 0 when it overwrote a point at
 * the same timestamp. A chunk that cannot be written to disk is kept in
 * memory and the failure logged; agg_store_sync then fails. */
int agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v);
/* Number of series. */
size_t agg_store_series(const agg_store_t *self);
/* Number of distinct points over all series. */
size_t agg_store_points(const agg_store_t *self);
/* Number of sealed chunks, and their encoded bytes. */
size_t agg_store_chunks(const agg_store_t *self);
uint64_t agg_store_chunk_bytes(const agg_store_t *self);
/* Points still in heads (not sealed). */
size_t agg_store_head_points(const agg_store_t *self);
/* Collect views of every series matching sel/filters (series_match) with
 * points in [start, end). Returns the number of matching series (even when
 * a view holds no point) and sets *views (caller frees the array only),
 * or 0 and NULL when nothing matches. */
size_t agg_store_select(agg_store_t *self, const char *sel,
                        const struct series_tag *filters, size_t nfilters,
                        int64_t start, int64_t end, struct agg_view **views);

/* Seal every non-empty head (a checkpoint). */
void agg_store_seal_all(agg_store_t *self);
/* fsync the chunk file. Returns 0 and sets *len to the durable length of
 * the file, or -1 (logged) after any write or fsync failure. An in-memory
 * store answers 0 and 0. */
int agg_store_sync(agg_store_t *self, uint64_t *len);

/* Selftest. */
void agg_store_test(bool verbose);

#endif
