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
 *
 * Every write also updates the series' rollups (agg_rollup): minute, hour
 * and day buckets. At each sync the buckets changed since the previous
 * one are appended to the rollup file (DIR/rollups.G.dat, records like the
 * chunks'); after retention dropped chunks or buckets, the sync writes a
 * new generation G+1 of the file concerned instead, and agg_store_cleanup
 * deletes the older generations once the checkpoint names the new one.
 */
#ifndef SP_AGG_STORE_H
#define SP_AGG_STORE_H

#include "aggd/agg_chunk.h"
#include "aggd/agg_rollup.h"
#include "common/series.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGG_STORE_CHUNK_POINTS 2048 /* a head is sealed at this size */
/* Chunk compaction (at a sync, see s_compact_run in agg_store.c): runs
 * of adjacent small chunks of one series (time-ordered, none
 * overlapping) are merged into one chunk of at most this many points,
 * once they hold half of them or are AGG_STORE_COMPACT_RUN chunks long
 * (checkpoints seal a slow series' head into tiny chunks). On the
 * benchmark's data zstd codes a 10,000-point chunk in 0.627 bytes a
 * point, 2,048-point ones in 0.671, and one record's header and key
 * replace several. The merge and the new chunk file are made on a
 * thread of their own from a snapshot of the chunk lists; a later sync
 * switches over to them (agg_store.c s_compact_start, s_compact_reap). */
#define AGG_STORE_COMPACT_POINTS 16384
#define AGG_STORE_COMPACT_RUN 16
/* Points a compaction at a clean stop encodes again, at most (about
 * 25 ns each). */
#define AGG_STORE_COMPACT_ALL_MAX (32u << 20)

typedef struct agg_store agg_store_t;

/* A borrowed view of one series' points in a range, valid until the next
 * write to the store or the next agg_store_select. */
struct agg_view {
    const char *key;   /* canonical series key */
    const int64_t *ts; /* timestamps, ascending, unique */
    const double *v;   /* values */
    size_t n;          /* points in the view */
};

/* The store's files as a checkpoint records them. */
struct agg_store_files {
    uint64_t chunk_gen;  /* chunk file generation (0: DIR/chunks.dat) */
    uint64_t chunk_len;  /* its durable bytes */
    uint64_t rollup_gen; /* rollup file generation (0: none yet) */
    uint64_t rollup_len; /* its durable bytes */
};

/* Create an empty in-memory store. Cannot fail. */
agg_store_t *agg_store_new(void);
/* Open a store on dir: cut the chunk and rollup files named by files to
 * the lengths given (what the last checkpoint covered; later writes are
 * rebuilt by the WAL replay), then load every record. A record that fails
 * its checksum inside that length is corruption: logged, and the file cut
 * there. Without a rollup file (rollup_gen 0: a new or format 1
 * directory) the rollups are rebuilt from the chunks. Returns NULL
 * (logged) when a file cannot be used. */
agg_store_t *agg_store_open(const char *dir, const struct agg_store_files *files);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_store_destroy(agg_store_t **self_p);
/* The thread that queries share large answers' work with (agg_pool.h;
 * borrowed, NULL: none, the default). */
struct agg_pool;
void agg_store_set_pool(agg_store_t *self, struct agg_pool *pool);
struct agg_pool *agg_store_pool(const agg_store_t *self);
/* Write a point. Returns 1 when it is new, 0 when it overwrote a point at
 * the same timestamp. A chunk that cannot be written to disk is kept in
 * memory and the failure logged; agg_store_sync then fails. */
int agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v);
/* Write n points of one series, in order (a later point at the same
 * timestamp overwrites an earlier one), as n agg_store_put calls would,
 * but with one lookup of the key. Returns how many were new. */
size_t agg_store_put_run(agg_store_t *self, const char *key, const int64_t *ts,
                         const double *v, size_t n);
/* agg_store_put_run, remembering the series under slot (modulo a few
 * thousand): a caller whose runs of one key come with the same slot each
 * time (aggd: the index in a batch's series table) skips the hash lookup
 * when the key there is the same. */
size_t agg_store_put_run_slot(agg_store_t *self, size_t slot, const char *key,
                              const int64_t *ts, const double *v, size_t n);
/* A hint before agg_store_put_run_slot of slot: start loading what it
 * will write, so the memory loads of several series overlap. Stage 0
 * (called 3 slots ahead) fetches the series, 1 (2 ahead) its key, its
 * head's end and rollups, 2 (1 ahead) the rollups' newest buckets.
 * Changes nothing. */
void agg_store_prefetch_slot(const agg_store_t *self, size_t slot, int stage);
/* Number of series. */
size_t agg_store_series(const agg_store_t *self);
/* Number of distinct points over all series. */
size_t agg_store_points(const agg_store_t *self);
/* Number of sealed chunks, and their encoded bytes. */
size_t agg_store_chunks(const agg_store_t *self);
uint64_t agg_store_chunk_bytes(const agg_store_t *self);
/* Points still in heads (not sealed). */
size_t agg_store_head_points(const agg_store_t *self);
/* Read-path work on late points, for /stats: groups of overlapping
 * chunks resealed and the points they held, and the points reads merged
 * with a head that overlaps the chunks (late points not sealed yet). */
uint64_t agg_store_reseals(const agg_store_t *self);
uint64_t agg_store_reseal_points(const agg_store_t *self);
uint64_t agg_store_head_merge_points(const agg_store_t *self);
/* Compaction work since open: chunks merged away (a run of k chunks
 * merged into one counts k - 1), and whole chunk file rewrites it caused. */
uint64_t agg_store_compacted_chunks(const agg_store_t *self);
uint64_t agg_store_compactions(const agg_store_t *self);
/* Milliseconds the last compaction took, and the longest the calling
 * thread (aggd's loop) was held by one compaction step since open. */
int64_t agg_store_compact_ms(const agg_store_t *self);
int64_t agg_store_compact_loop_max_ms(const agg_store_t *self);
/* Is a compaction running on its thread (the next syncs switch over to
 * it once done)? How many were dropped because the chunk file was
 * rewritten meanwhile (retention, a delete) or theirs failed? */
bool agg_store_compacting(const agg_store_t *self);
/* Has the running compaction finished, waiting for a sync to switch
 * over (aggd's heartbeat then checkpoints at once)? */
bool agg_store_compact_done(const agg_store_t *self);
uint64_t agg_store_compact_dropped(const agg_store_t *self);
/* Have the next sync (the checkpoint of a clean stop) also merge the
 * small chunks after a big one, each run into one chunk. */
void agg_store_compact_all(agg_store_t *self);
/* Collect views of every series matching sel/filters (series_match) with
 * points in [start, end). Returns the number of matching series (even when
 * a view holds no point) and sets *views (caller frees the array only),
 * or 0 and NULL when nothing matches. */
size_t agg_store_select(agg_store_t *self, const char *sel,
                        const struct series_tag *filters, size_t nfilters,
                        int64_t start, int64_t end, struct agg_view **views);

/* The points of series key in [start, end) as stored, without a view:
 * chunk() for each sealed chunk that overlaps the range (its encoded
 * bytes, points and time bounds; decode with agg_chunk_* and dctx), then
 * head() for the unsealed points in the range, if any. Chunks come in
 * time order and overlap neither one another nor the head's points;
 * where the head overlaps chunks (late points not sealed yet), those
 * chunks and the head are merged as agg_store_select does and given to
 * head() instead. A callback that returns nonzero stops the visit.
 * Returns -1 when the series is unknown, 1 when a callback stopped the
 * visit, else 0. */
typedef int (*agg_store_chunk_fn)(void *arg, agg_chunk_dctx_t *dctx,
                                  const unsigned char *data, size_t len,
                                  size_t n, int64_t tmin, int64_t tmax);
typedef int (*agg_store_head_fn)(void *arg, const int64_t *ts,
                                 const double *v, size_t n);
int agg_store_visit(agg_store_t *self, const char *key, int64_t start,
                    int64_t end, agg_store_chunk_fn chunk,
                    agg_store_head_fn head, void *arg);

/* Keys of the series matching sel/filters (series_match), borrowed until
 * the next write; returns their number and sets *keys (caller frees the
 * array only), or 0 and NULL. Decodes nothing. */
size_t agg_store_keys(agg_store_t *self, const char *sel,
                      const struct series_tag *filters, size_t nfilters,
                      const char ***keys);
/* Summarise series key over [start, end): whole day, hour and minute
 * buckets from the rollups where they fit, raw points for the rest at the
 * edges; the sketch goes to sk unless NULL. Invalidates earlier views.
 * Returns -1 when the series is unknown, else 0. */
int agg_store_summarize(agg_store_t *self, const char *key, int64_t start,
                        int64_t end, struct agg_rsum *sum, agg_sketch_t *sk);
/* Raw points of series key in [start, end), counted from chunk bounds (an
 * upper bound: a chunk that crosses an edge counts whole); SIZE_MAX when
 * retention dropped raw points of the range (only rollups hold it). */
size_t agg_store_raw_estimate(agg_store_t *self, const char *key,
                              int64_t start, int64_t end);
/* Do the rollups of series key over [start, end) hold exactly its raw
 * points there (the same count, min, max, first, last and sketch counts;
 * sums and M2 up to rounding)? False when retention dropped raw points
 * or rollup buckets of the range, or an overwrite or a delete there could
 * not recompute a bucket's extremes from raw points. */
bool agg_store_rollups_exact(agg_store_t *self, const char *key,
                             int64_t start, int64_t end);
/* The rollups of series key (borrowed until the next write), or NULL. */
const agg_rollup_t *agg_store_rollup(agg_store_t *self, const char *key);
/* Time covered by the rollups of key: false when it has none. */
bool agg_store_span(agg_store_t *self, const char *key, int64_t *first,
                    int64_t *end);

/* Retention: drop the raw points before raw_before (whole chunks, and
 * the first part of a chunk that straddles it), and
 * the buckets of each rollup tier that end before tier_before[tier]
 * (INT64_MIN keeps everything). The next sync writes new file
 * generations. Returns the number of chunks dropped. */
size_t agg_store_expire(agg_store_t *self, int64_t raw_before,
                        const int64_t tier_before[AGG_ROLLUP_TIERS]);
/* Delete the points of series key in [start, end); the whole series when
 * the range is everything. Rollup buckets inside the range go; those that
 * straddle an edge are recomputed from the raw points when the store
 * still has all of that day's, else they keep the deleted points (logged
 * by the caller through the return). The next sync writes new file
 * generations. Returns the number of points deleted, or -1 when the
 * series is unknown; sets *partial when some straddling bucket could not
 * be recomputed. */
long long agg_store_delete(agg_store_t *self, const char *key, int64_t start,
                           int64_t end, bool *partial);
/* Rollup buckets of a tier over all series, and their bytes in memory. */
size_t agg_store_rollup_buckets(const agg_store_t *self, int tier);
size_t agg_store_rollup_bytes(const agg_store_t *self);

/* Seal every non-empty head (a checkpoint). The chunk records go to the
 * file in writes of a MiB. */
void agg_store_seal_all(agg_store_t *self);
/* Nanoseconds the last agg_store_seal_all spent in write(2). */
int64_t agg_store_seal_write_ns(const agg_store_t *self);
/* After a failed write (every later one is refused): forget the failure
 * and write whole new generations of the chunk and rollup files from
 * memory at the next agg_store_sync, so nothing the failed writes cut
 * back is missing (aggd's mending of a full disk). */
void agg_store_retry(agg_store_t *self);
/* Write the changed rollups (or new generations, after retention) and
 * fsync the files. Returns 0 and fills *files with what is durable, or -1
 * (logged) after any write or fsync failure. An in-memory store answers 0
 * and zeros. */
int agg_store_sync(agg_store_t *self, struct agg_store_files *files);
/* agg_store_sync but for its fdatasyncs, which the caller runs on
 * another thread (aggd's checkpoint): fills *files with what is durable
 * once *cfd and *rfd (duplicates of the chunk and rollup files'
 * descriptors, -1 for an in-memory store; the caller closes them) are
 * fdatasync'd. Records appended later go after files' lengths, and the
 * file generations change only at the next sync, so the caller may keep
 * writing meanwhile. Returns 0 or -1 (logged). */
int agg_store_sync_write(agg_store_t *self, struct agg_store_files *files,
                         int *cfd, int *rfd);
/* Those fdatasyncs failed: the files' pages may be lost, so every later
 * write is refused until agg_store_retry. */
void agg_store_sync_failed(agg_store_t *self);
/* The files in use and the bytes written to them so far (durable or
 * not): the disk usage by kind. */
void agg_store_written(const agg_store_t *self, struct agg_store_files *files);
/* Copy the durable prefix of the store's files (what the last sync
 * returned in files) into the directory dst, under the same names, and
 * fsync them: with a checkpoint naming files, dst is a data directory as
 * of that sync. Returns 0 or -1 (logged). */
int agg_store_backup(const agg_store_t *self, const char *dst,
                     const struct agg_store_files *files);
/* Delete files of generations other than those in use; call once a
 * checkpoint names them. */
void agg_store_cleanup(agg_store_t *self);

/* Selftest. */
void agg_store_test(bool verbose);

#endif
