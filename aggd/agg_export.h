/*
 * agg_export: aggd's export of readings to an outside engine, for storage
 * beyond one machine's disk: InfluxDB's line protocol (POST /write) or
 * ClickHouse's HTTP insert (JSONEachRow).
 *
 * A zactor thread reads aggd's own write-ahead log (agg_wal_reader) from
 * a durable cursor (DATA/export.cursor: "segment offset", written with
 * fsync and rename after the engine answered 2xx), converts each batch
 * and POSTs it with libcurl. While the engine is down it retries the
 * same records with a backoff (0.5 s doubling to 30 s), so nothing is
 * skipped; aggd keeps every WAL segment from the cursor's on
 * (agg_export_keep_seg), so the log grows on disk meanwhile. A crash
 * re-sends at most what came after the cursor; both engines keep one
 * point per (series, timestamp), so a repeat changes nothing in
 * InfluxDB, and ClickHouse gets it twice unless its table deduplicates
 * (ReplacingMergeTree, docs/ARCHITECTURE.md).
 *
 * Only readings are exported, not aggd's rollups (the engine rolls up its
 * own). The loop thread never blocks: the actor reports its cursor and
 * counters on its pipe.
 */
#ifndef SP_AGG_EXPORT_H
#define SP_AGG_EXPORT_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum agg_export_format { AGG_EXPORT_INFLUX, AGG_EXPORT_CLICKHOUSE };

typedef struct agg_export agg_export_t;

/* Parse a format name ("influx", "clickhouse"). Returns the format, or -1
 * for an unknown name. */
int agg_export_format(const char *name);

/* The WAL segment of the cursor saved in cursor_path (0 when none): open
 * the WAL keeping segments from it (agg_wal_open_keep). */
uint64_t agg_export_saved_seg(const char *cursor_path);
/* Start exporting the WAL in waldir to url; the cursor lives in
 * cursor_path. Returns NULL (logged) when the thread cannot start. */
agg_export_t *agg_export_new(const char *url, int format, const char *waldir,
                             const char *cursor_path);
/* Stop the thread (it finishes a POST in flight, at most its 10 s
 * timeout) and free; NULL-safe; sets *self_p NULL. */
void agg_export_destroy(agg_export_t **self_p);
/* The socket to poll for the thread's reports (zloop_reader). */
zsock_t *agg_export_sock(agg_export_t *self);
/* Read one report (after agg_export_sock polled readable). 0, or -1 when
 * the message was not a report. */
int agg_export_recv(agg_export_t *self);
/* The oldest WAL segment the export still needs: drop only before it. */
uint64_t agg_export_keep_seg(const agg_export_t *self);
/* Add the counters to a status object: export_readings, export_posts,
 * export_failures, export_rejected, export_segment, export_offset. */
void agg_export_status(const agg_export_t *self, json_t *status);

struct strbuf;
/* Convert one readings batch (a WAL record) to the engine's body,
 * appended to out. Returns the number of readings, or -1 when the record
 * is not a readings batch. */
int agg_export_body(int format, const void *record, size_t len,
                    struct strbuf *out);

/* Selftest. */
void agg_export_test(bool verbose);

#endif
