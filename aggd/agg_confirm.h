/*
 * agg_confirm: per (producer, lane), the highest contiguous batch seq
 * aggd has applied (docs/PROTOCOL.md, "Confirmations and resends").
 *
 * A batch whose seq is the next one advances its entry; one at or below
 * it is a resend of something already applied (skip it); one beyond it
 * follows a gap (batches lost in a receive queue when aggd died): apply
 * it, since writes are idempotent, but do not advance, so ingestd resends
 * the gap and what follows. An unknown producer's entry starts at the
 * confirmed seq its batch carries (acked, below); a batch without it
 * starts the entry at its own seq, which loses batches that died in a
 * receive queue before it when the producer was new.
 *
 * The table is bounded (AGG_CONFIRM_MAX). When it is full, a new
 * producer takes the place of the entry that has been idle longest, if
 * that one has been idle AGG_CONFIRM_IDLE_NS: a producer that comes back
 * after it was forgotten starts a new entry like any new one (at its
 * acked), and a batch of it applied again (a resend whose confirmation it never got)
 * writes the same points again, which overwrite (no reading doubles).
 */
#ifndef SP_AGG_CONFIRM_H
#define SP_AGG_CONFIRM_H

#include "common/msg.h"

#include <stdbool.h>
#include <stdint.h>

/* Entries (producer, lane) a table starts, at most: anything may connect
 * to aggd's PULL, and every entry is copied at each group commit and
 * sent to ingestd in every confirmation (40,000 made-up producers cost
 * an ASan aggd 4.6 s of CPU and ingestd 1.8 s per 200 batches). A
 * producer is an ingestd (one entry per lane it sends this aggd), so
 * 1,024 leave room for many hosts. */
#define AGG_CONFIRM_MAX 1024
/* How long an entry must have seen no batch before a new producer may
 * take its place in a full table: an hour (a live ingestd sends at least
 * a batch of its own readings or a resend well within it). Entries read
 * from a checkpoint count as active at the time they are read. */
#define AGG_CONFIRM_IDLE_NS (3600LL * 1000000000LL)

typedef struct agg_confirm agg_confirm_t;

enum agg_confirm_verdict {
    AGG_CONFIRM_NEXT, /* applied in order: the entry advanced */
    AGG_CONFIRM_DUP,  /* at or below the entry: already applied */
    AGG_CONFIRM_GAP,  /* beyond the next seq: apply, do not advance */
    AGG_CONFIRM_FULL  /* a new producer, AGG_CONFIRM_MAX entries held and
                         none idle AGG_CONFIRM_IDLE_NS: refuse the batch
                         (it stays unconfirmed) */
};

/* Create an empty table. Cannot fail. */
agg_confirm_t *agg_confirm_new(void);
/* Destroy; NULL-safe; sets *self_p NULL. */
void agg_confirm_destroy(agg_confirm_t **self_p);
/* A copy of the table. Caller destroys. */
agg_confirm_t *agg_confirm_dup(const agg_confirm_t *self);

/* Classify a batch that arrives at now (monotonic ns), mark its entry
 * active, and advance it for NEXT (or start it, for a new producer while
 * the table has room or an idle entry to forget). With grow (the WAL's
 * replay, which must apply every batch the live run applied, whatever
 * the live run forgot) a new producer is added even beyond
 * AGG_CONFIRM_MAX. acked, when the batch carries it, is the producer's
 * confirmed seq when it made the batch: every batch up to it was
 * confirmed by this aggd (or by this data directory before it was
 * restored from a backup, or before its entry was forgotten) and will
 * not come again. A new entry starts there, and an entry behind it
 * moves up to it; so the first batch seen after a gap (its
 * predecessors died in a receive queue) is a GAP even from a producer
 * seen for the first time, and a producer whose seqs went on past a
 * restored backup is confirmed again. Without acked (older producers),
 * a new entry starts at the first seq seen. */
enum agg_confirm_verdict agg_confirm_accept(agg_confirm_t *self,
                                            const char *producer,
                                            uint32_t lane, uint64_t seq,
                                            int64_t now, bool grow,
                                            const uint64_t *acked);
/* Entries forgotten for new producers so far, and the "lane/producer" of
 * the last one ("" before the first). */
uint64_t agg_confirm_forgotten(const agg_confirm_t *self, const char **last);
/* Highest contiguous seq of (producer, lane), 0 when unknown. */
uint64_t agg_confirm_seq(const agg_confirm_t *self, const char *producer,
                         uint32_t lane);
/* Number of entries. */
size_t agg_confirm_size(const agg_confirm_t *self);
/* A MSG_TYPE_CONFIRM batch holding every entry, its envelope from
 * producer (e.g. "aggd.0") and lane. Caller destroys. */
msg_batch_t *agg_confirm_batch(const agg_confirm_t *self, const char *producer,
                               uint32_t lane);
/* Set entries from a MSG_TYPE_CONFIRM batch (a checkpoint), active as of
 * now (clock_mono_ns). Returns 0, or -1 when it is of another type. */
int agg_confirm_load(agg_confirm_t *self, msg_batch_t *b);

/* Selftest. */
void agg_confirm_test(bool verbose);

#endif
