/*
 * api_export: streamed exports of raw points as CSV or NDJSON.
 *
 *   GET /api/v1/export/{series}?format=csv|ndjson&start=&end=&tag.k=v
 *   GET /api/telemetry/{deviceId}?format=csv (api_telemetry.c)
 *
 * The body goes out with chunked encoding while apid pages through aggd,
 * one series at a time in key order and one page of at most
 * API_EXPORT_PAGE points at a time, so memory stays the same whatever
 * the range holds. A series is exported up to the last point it had when
 * the export began. Without a format, /api/v1/export answers one JSON
 * document as before (api_seed.c, at most 100,000 points).
 *
 * Paging: the first page of a series asks for [start, end) and learns
 * how much time API_EXPORT_PAGE points span; later pages ask for a time
 * window of about that span (aggd decodes only the chunks a window
 * touches), shrinking it when a page comes back full and widening it
 * when one comes back sparse. The cursor is the exact nanosecond of the
 * last point sent (aggd's "ns"), so nothing is skipped or repeated.
 */
#ifndef SP_API_EXPORT_H
#define SP_API_EXPORT_H

#include "apid/apid.h"

#define API_EXPORT_PAGE 5000

enum api_export_format {
    API_EXPORT_CSV,   /* series,timestamp,value with a header line */
    API_EXPORT_NDJSON /* one {"series","timestamp","value"} per line */
};

/* Start a streamed export of the series matching sel with the filters
 * and range of q ({start, end, tags}, as apid_range_args fills it; q
 * is stolen). Replies to req: an error (404 naming where, or sel when
 * where is NULL, when nothing matches) or the stream. Cannot fail. */
void api_export_start(apid_t *apid, http_req_t *req, const char *sel,
                      json_t *q, enum api_export_format fmt,
                      const char *where);
/* The format named by ?format= (csv, ndjson); -1 for json or none. Replies
 * 400 and returns -2 for anything else. */
int api_export_format(http_req_t *req);

/* Selftest: CSV and NDJSON lines, window sizing. */
void api_export_test(bool verbose);

#endif
