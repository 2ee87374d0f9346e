/*
 * ingest_spool: ingestd's durable spool. Every accepted batch is appended
 * (checksummed record) and fsync'd before the sender is acknowledged;
 * records stay until aggd confirms their lane's seq, and are resent from
 * here after a restart or when confirmations stall.
 *
 * An index of the unconfirmed records stays in memory, and a copy of
 * each batch appended until it is first handed out (at most 2 MiB of
 * them); a resend, a recovered batch or one past that bound is read back
 * from its segment (and its checksum checked again), so a backlog costs
 * disk (up to --spool-max), not memory.
 *
 * Files: DIR/seg-NNNNNNNNNNNNNNNN.spool, appended in order and rolled at
 * the segment size. Record: magic "SPL1", payload length, lane, CRC-32C
 * (of lane, seq and payload), seq, then the msgpack batch. A torn or
 * corrupt record found at start is truncated away and logged, never
 * resent. A fully confirmed segment is deleted, except one holding the
 * newest record of some lane, which keeps that lane's last seq across a
 * restart (so seq never goes back, also on a lane that went quiet while
 * others wrote on).
 */
#ifndef SP_INGEST_SPOOL_H
#define SP_INGEST_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <czmq.h>

typedef struct ingest_spool ingest_spool_t;

/* Called for each unconfirmed record of a lane, in seq order, with the
 * batch (valid during the call): the bytes appended until a call for it
 * returns true (sent), later ones (and after a restart) as read back
 * from disk, or data NULL when it could not be read back or failed its
 * checksum (logged and counted: that batch is lost); returns false to
 * stop there. */
typedef bool(ingest_spool_fn)(unsigned lane, uint64_t seq, const void *data,
                              size_t len, void *arg);

/* Open (creating dir) and recover. Returns NULL (logged) on failure. */
ingest_spool_t *ingest_spool_open(const char *dir, unsigned lanes,
                                  size_t segment_max);
/* Close; NULL-safe. Nothing is lost: records stay on disk. */
void ingest_spool_destroy(ingest_spool_t **self_p);
/* The next seq to use on lane (last seq found + 1). */
uint64_t ingest_spool_next_seq(ingest_spool_t *self, unsigned lane);
/* Append a batch (not durable until ingest_spool_sync); the spool keeps
 * no copy of data. 0 or -1 (logged; e.g. disk full: the caller refuses
 * the write). */
int ingest_spool_append(ingest_spool_t *self, unsigned lane, uint64_t seq,
                        const void *data, size_t len);
/* The same, taking data (malloc'd): the spool keeps it as the copy for
 * the record's first send, or frees it (also on failure), so a batch
 * just encoded is not copied again. */
int ingest_spool_append_take(ingest_spool_t *self, unsigned lane, uint64_t seq,
                             void *data, size_t len);
/* Logical bytes appended since open, and the part a finished fsync
 * covers; a request is durable once durable >= the written position
 * taken after its append. */
uint64_t ingest_spool_written(const ingest_spool_t *self);
uint64_t ingest_spool_durable(const ingest_spool_t *self);
/* Group commit off the loop: ask an fsync thread to make everything
 * written so far durable. true when a request was sent; false when as
 * many as allowed are in flight or nothing is new since the last one
 * asked for (ask again after ingest_spool_sync_done). */
bool ingest_spool_sync_start(ingest_spool_t *self);
/* Allow n fsyncs in flight at once (1, the default, or 2): a second one
 * starts for what was written while the first runs, and the first of
 * them to end covers everything written before it started (each thread
 * fsyncs its own open file of the segment, so a write error reaches
 * both). The disk then serves both at once (1.4-1.6x the fsyncs a
 * second of one at a time, when other work kept it busy). */
void ingest_spool_pipeline(ingest_spool_t *self, unsigned n);
/* Is an fsync in flight? */
bool ingest_spool_sync_busy(const ingest_spool_t *self);
/* The sockets that report a finished fsync (zloop_reader), i below
 * INGEST_SPOOL_SYNCERS. */
#define INGEST_SPOOL_SYNCERS 2
zsock_t *ingest_spool_sock(ingest_spool_t *self, unsigned i);
/* Does the fsync thread of sock have an fsync in flight? */
bool ingest_spool_sync_waits(ingest_spool_t *self, zsock_t *sock);
/* Read the report on sock: 0 with *pos the position now durable, or -1
 * (logged) when the fsync failed or none was in flight there (*pos: the
 * position it would have covered). */
int ingest_spool_sync_done(ingest_spool_t *self, zsock_t *sock, uint64_t *pos);
/* fsync what was appended, on the calling thread, after any fsync in
 * flight. 0 or -1 (logged). */
int ingest_spool_sync(ingest_spool_t *self);
/* Everything on lane up to seq is durable downstream: forget it and delete
 * segments that hold nothing unconfirmed. */
void ingest_spool_confirm(ingest_spool_t *self, unsigned lane, uint64_t seq);
/* Call fn, in seq order, for the unconfirmed records of lane with a seq
 * above after that are durable (a record not yet covered by an fsync is
 * never sent downstream: after a crash its seq could name another
 * batch) and inside the window: the first max_n unconfirmed records of
 * the lane, and of them only as many as hold max_bytes of payload (the
 * first unconfirmed one always fits). Stops when fn returns false. */
void ingest_spool_foreach(ingest_spool_t *self, unsigned lane, uint64_t after,
                          uint64_t max_n, uint64_t max_bytes,
                          ingest_spool_fn *fn, void *arg);
/* Highest confirmed seq of lane (0 when none). */
uint64_t ingest_spool_confirmed(const ingest_spool_t *self, unsigned lane);
/* Unconfirmed records and their payload bytes, over all lanes. */
size_t ingest_spool_records(const ingest_spool_t *self);
size_t ingest_spool_bytes(const ingest_spool_t *self);
/* Records that could not be read back (see ingest_spool_fn). */
unsigned long long ingest_spool_unreadable(const ingest_spool_t *self);
/* Segment files on disk. */
size_t ingest_spool_segments(const ingest_spool_t *self);

/* Selftest. */
void ingest_spool_test(bool verbose);

#endif
