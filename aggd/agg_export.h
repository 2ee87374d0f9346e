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
 * A second exporter (--export-rollup-url, its own cursor
 * DATA/export-rollups.cursor) sends minute rollups instead: it reads the
 * same WAL, sums each series' readings per minute (count, sum, min, max,
 * first, last) and sends a minute once it is closed, when a reading
 * AGG_EXPORT_GRACE past its end has come (the watermark), or when the WAL
 * has been quiet for --export-rollup-idle (10 s) and the minute ended
 * AGG_EXPORT_GRACE ago by the wall clock (a series that stopped, or
 * old data loaded). InfluxDB gets measurement NAME_1m with those
 * fields (count an integer) at the minute's start; ClickHouse rows
 * {series, name, tags, ts, count, sum, min, max, first, last}. Its cursor
 * is the record that opened the oldest open minute, plus the watermark:
 * from there the same minutes open again after a crash or a failed POST,
 * and the ones already sent count their readings as late, so a minute is
 * sent once with all its readings, or again the same (InfluxDB keeps
 * one). A reading that comes after its minute closed is exported as a
 * reading but not in a rollup (export_rollup_late counts them; aggd(8)
 * says how to recompute such a minute from the readings). Hours and days
 * are not exported: they compose exactly from the minutes in the engine,
 * and closing them here would hold the cursor, so the WAL, back a day.
 *
 * The loop thread never blocks: the actor reports its cursor and
 * counters on its pipe.
 */
#ifndef SP_AGG_EXPORT_H
#define SP_AGG_EXPORT_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

enum agg_export_format { AGG_EXPORT_INFLUX, AGG_EXPORT_CLICKHOUSE };

#define AGG_EXPORT_GRACE (60 * 1000000000LL) /* minutes close this late */
#define AGG_EXPORT_ROLLUP_SUFFIX "_1m"      /* InfluxDB measurement suffix */

typedef struct agg_export agg_export_t;

/* Parse a format name ("influx", "clickhouse"). Returns the format, or -1
 * for an unknown name. */
int agg_export_format(const char *name);

/* The WAL segment of the cursor saved in cursor_path (0 when none): open
 * the WAL keeping segments from it (agg_wal_open_keep). */
uint64_t agg_export_saved_seg(const char *cursor_path);
/* Start exporting the WAL in waldir to url, its readings or (rollups)
 * its minute rollups, closed after idle ns of quiet WAL; the cursor lives
 * in cursor_path. Returns NULL (logged) when the thread cannot start. */
agg_export_t *agg_export_new(const char *url, int format, bool rollups,
                             int64_t idle, const char *waldir,
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
 * export_failures, export_rejected, export_segment, export_offset; for
 * rollups export_rollup_minutes, _posts, _failures, _rejected, _late,
 * _segment, _offset. */
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
