/*
 * agg_ckpt: aggd's checkpoint file, DIR/checkpoint. It says which state
 * the store files and the WAL together hold: every record in the first
 * chunk_len bytes of the chunk file and rollup_len bytes of the rollup
 * file (of the generations named) is durable, and replaying the WAL
 * from segment wal_seg on top of them gives the full store; the table of
 * applied seqs at that moment comes with it. Written to a temporary file,
 * fsync'd and renamed, so a crash leaves the old or the new one.
 *
 * It also carries the on-disk format version: a data directory written
 * by another format is refused at start with a clear message.
 */
#ifndef SP_AGG_CKPT_H
#define SP_AGG_CKPT_H

#include "aggd/agg_confirm.h"
#include "aggd/agg_store.h"

#include <stdbool.h>
#include <stdint.h>

/* Format 2 added the rollups file and file generations; 3 keeps minute
 * buckets on disk only where raw points are gone (rollup records carry
 * raw_from); 4 does so for hours and days too. A format 1 or 2 directory
 * is migrated: its chunks are read and every rollup rebuilt from them at
 * start (a format 2 rollup file is ignored); a format 3 one by dropping
 * the hour and day buckets of its rollup file that the chunks rebuild.
 * The next checkpoint writes 4. An aggd of format 3 refuses format 4
 * (it would not rebuild hours and days). */
#define AGG_FORMAT_VERSION 4

struct agg_ckpt {
    uint32_t format;             /* AGG_FORMAT_VERSION of the writer */
    uint64_t wal_seg;            /* first WAL segment to replay */
    struct agg_store_files files; /* durable store files */
};

/* Write the checkpoint of dir atomically. Returns 0 or -1 (logged). */
int agg_ckpt_write(const char *dir, const struct agg_ckpt *ck,
                   const agg_confirm_t *applied);
/* Read it: 0 and fills ck and applied; 1 when there is none yet (ck
 * zeroed); -1 (logged) when it is unreadable, corrupt or of another
 * format version. */
int agg_ckpt_read(const char *dir, struct agg_ckpt *ck, agg_confirm_t *applied);

/* Selftest. */
void agg_ckpt_test(bool verbose);

#endif
