/*
 * ingest_mqspool: ingestd's reader of the broker plugin's spool
 * (mqspool.h). It reads complete, checksummed records after a cursor;
 * the cursor is made durable (cursor file, fsync, rename) only after the
 * readings were committed to ingestd's own spool, and at most every
 * 100 ms (ingestd's flush timer), so a crash anywhere
 * re-reads rather than loses (aggd's idempotent writes absorb the
 * repeats). Files wholly behind the durable cursor are deleted.
 *
 * The cursor's fdatasync runs on a thread (common/fsyncer), not on
 * ingestd's loop: ingest_mqspool_commit writes the new cursor file and
 * starts the fsync; when ingest_mqspool_sock reports it done,
 * ingest_mqspool_commit_done renames it into place. Until then the old
 * cursor stands, which only means re-reading more after a crash.
 */
#ifndef SP_INGEST_MQSPOOL_H
#define SP_INGEST_MQSPOOL_H

#include "ingestd/ingest_mqtt.h"

#include <czmq.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingest_mqspool ingest_mqspool_t;

/* Open the plugin's directory; the cursor lives in cursor_path. Returns
 * NULL (logged) when the directory cannot be read. */
ingest_mqspool_t *ingest_mqspool_new(const char *dir, const char *cursor_path);
/* NULL-safe. */
void ingest_mqspool_destroy(ingest_mqspool_t **self_p);
/* Read up to max new telemetry records, calling fn for each. Returns the
 * number read. */
size_t ingest_mqspool_read(ingest_mqspool_t *self, size_t max,
                           ingest_mqtt_fn *fn, void *arg);
/* Everything read so far has been handed to ingestd's spool: it becomes
 * durable at the next commit. */
void ingest_mqspool_mark(ingest_mqspool_t *self);
/* What was read since the last mark could not be spooled (a full disk):
 * the next read starts at the mark again, so nothing the broker
 * acknowledged is skipped. Can't fail. */
void ingest_mqspool_rewind(ingest_mqspool_t *self);
/* ingestd's spool fsync starts (off the loop): the marked position is
 * what it will cover. Can't fail. */
void ingest_mqspool_syncing(ingest_mqspool_t *self);
/* That fsync is done: the position taken by the last
 * ingest_mqspool_syncing is durable in ingestd's spool, and the next
 * commit may save it. Can't fail. */
void ingest_mqspool_durable(ingest_mqspool_t *self);
/* Start saving the durable position as the cursor: write the new cursor
 * file and hand its fdatasync to the thread. Nothing to do when the
 * position has not moved or a save is in flight. A cursor saved late only
 * means re-reading more after a crash. 0 or -1 (logged). */
int ingest_mqspool_commit(ingest_mqspool_t *self);
/* The socket that reports the cursor's fsync done (zloop_reader). */
zsock_t *ingest_mqspool_sock(ingest_mqspool_t *self);
/* Is a save in flight? */
bool ingest_mqspool_commit_busy(const ingest_mqspool_t *self);
/* Finish the save in flight (waits for the thread if it is still
 * syncing): rename the synced file into place and delete the plugin's
 * files behind the cursor. 0 (also when none was in flight) or -1
 * (logged; the old cursor stands). */
int ingest_mqspool_commit_done(ingest_mqspool_t *self);
/* Save the durable position now, on the calling thread (at stop). 0 or
 * -1 (logged). */
int ingest_mqspool_save(ingest_mqspool_t *self);
/* Records read and records skipped as torn or corrupt. */
unsigned long long ingest_mqspool_records(const ingest_mqspool_t *self);
unsigned long long ingest_mqspool_skipped(const ingest_mqspool_t *self);

/* Selftest. */
void ingest_mqspool_test(bool verbose);

#endif
