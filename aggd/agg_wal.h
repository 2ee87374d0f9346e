/*
 * agg_wal: aggd's write-ahead log. Every applied batch is appended as one
 * checksummed record to the current segment file (DIR/NNNNNNNNNNNNNNNN.wal)
 * with write(2); a zactor thread fsyncs on request, so one fdatasync
 * covers every record written since the previous one (group commit) and
 * the loop thread never blocks on the disk.
 *
 * Record: magic "SPW1" (4 bytes), payload length (u32 LE), CRC-32C of the
 * length bytes and the payload (u32 LE), then the payload. A record that
 * is short or fails its checksum ends the log: replay truncates the
 * segment there (a torn or corrupt tail), logs it, and never applies it.
 */
#ifndef SP_AGG_WAL_H
#define SP_AGG_WAL_H

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGG_WAL_RECORD_MAX (256u << 20) /* bytes of payload, at most */

typedef struct agg_wal agg_wal_t;

/* Called for each intact record during replay; payload is borrowed. */
typedef void(agg_wal_replay_fn)(const void *payload, size_t len, void *arg);

/* Open the log in dir (created if missing): replay every segment numbered
 * from_seg or later through fn in order, truncate a bad tail, delete any
 * segment after a bad record, then start a new segment. Returns NULL
 * (logged) when the directory or a segment cannot be used. */
agg_wal_t *agg_wal_open(const char *dir, uint64_t from_seg,
                        agg_wal_replay_fn *fn, void *arg);
/* The same, but segments numbered keep_seg up to from_seg are kept on
 * disk (not replayed) for a reader that has not finished them (aggd's
 * exporter); keep_seg >= from_seg is agg_wal_open. */
agg_wal_t *agg_wal_open_keep(const char *dir, uint64_t from_seg, uint64_t keep_seg,
                             agg_wal_replay_fn *fn, void *arg);
/* Wait for an fsync in flight, stop the fsync thread, close; NULL-safe;
 * sets *self_p NULL. Does not fsync what was written since. */
void agg_wal_destroy(agg_wal_t **self_p);

/* Append one record (write(2), no fsync). Returns 0, or -1 (logged) when
 * the write failed; the segment is then cut back to its last good end. */
int agg_wal_append(agg_wal_t *self, const void *payload, size_t len);
/* Bytes appended since open (a logical position, never decreases). */
uint64_t agg_wal_written(const agg_wal_t *self);
/* Bytes known durable (the position the last finished fsync covered). */
uint64_t agg_wal_durable(const agg_wal_t *self);
/* Number of the segment being written. */
uint64_t agg_wal_segment(const agg_wal_t *self);
/* Total bytes of segment files on disk. */
uint64_t agg_wal_disk_bytes(const agg_wal_t *self);
/* Records appended since open. */
uint64_t agg_wal_records(const agg_wal_t *self);

/* Ask the fsync thread to make everything written so far durable. Returns
 * true when a request was sent, false when one is still in flight or
 * nothing is new (ask again when agg_wal_sync_done reports). */
bool agg_wal_sync_start(agg_wal_t *self);
/* Is an fsync in flight? */
bool agg_wal_sync_busy(const agg_wal_t *self);
/* The socket to poll for the fsync thread's answers (zloop_reader). */
zsock_t *agg_wal_sock(agg_wal_t *self);
/* Read one answer from agg_wal_sock. Returns 0 and advances
 * agg_wal_durable, or -1 (logged) when the fsync failed: the data is then
 * not durable and the caller must stop confirming. Returns 1 when the
 * answer covered only the segment before a rotation
 * (agg_wal_rotate_nowait) and the rest of the request is now in flight:
 * the request is not done yet (wait for the next answer). */
int agg_wal_sync_done(agg_wal_t *self);
/* fsync now, on the calling thread, after any request in flight. Returns
 * 0 or -1 (logged). */
int agg_wal_sync(agg_wal_t *self);

/* Make everything durable, then start a new segment and return its
 * number, or -1 as a uint64_t on failure (logged). Segments before it can
 * be dropped once a checkpoint covers them. */
uint64_t agg_wal_rotate(agg_wal_t *self);
/* Start a new segment and return its number (or -1 as a uint64_t,
 * logged) without waiting for the disk: the segment before is kept open
 * until an fsync covers its end, and agg_wal_durable does not pass that
 * end before (the next agg_wal_sync_start fsyncs it, then the new one).
 * Segments before the new one can be dropped once a checkpoint covers
 * them (aggd's checkpoint made durable on its thread). */
uint64_t agg_wal_rotate_nowait(agg_wal_t *self);
/* Would agg_wal_rotate_nowait not wait (fewer than the most segments are
 * waiting for their fsync)? */
bool agg_wal_rotate_ready(const agg_wal_t *self);
/* Delete every segment numbered below seg. Returns 0 or -1 (logged). */
int agg_wal_drop_before(agg_wal_t *self, uint64_t seg);

/* A reader of the log in dir that never writes (aggd's exporter): it
 * starts at (seg, off), or at the oldest segment when that one is gone. */
typedef struct agg_wal_reader agg_wal_reader_t;
/* Can't fail (a missing directory reads as empty). */
agg_wal_reader_t *agg_wal_reader_new(const char *dir, uint64_t seg, uint64_t off);
/* NULL-safe; sets *self_p NULL. */
void agg_wal_reader_destroy(agg_wal_reader_t **self_p);
/* The next intact record: returns 1 with *payload (borrowed until the
 * next call) and *len, 0 when there is none yet. A short or bad record
 * is waited on while its segment is the newest (the writer may be
 * finishing it) and skipped once a newer segment exists (a torn tail the
 * writer's replay cut off). */
int agg_wal_reader_next(agg_wal_reader_t *self, const void **payload, size_t *len);
/* The position after the last record returned. */
void agg_wal_reader_pos(const agg_wal_reader_t *self, uint64_t *seg, uint64_t *off);

/* Selftest. */
void agg_wal_test(bool verbose);

#endif
