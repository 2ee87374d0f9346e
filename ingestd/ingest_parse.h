/*
 * ingest_parse: turn request bodies into validated readings.
 *
 * Forms (SPEC.md): "ingest" {"sensor_id", "datapoints": [{timestamp,
 * value}]}, "record" {"data": [{name, value, timestamp, tags}]},
 * "lines" (JSON lines, one reading object each, or whole ingest/record
 * bodies), and "write" (InfluxDB line protocol, with a precision).
 * Valid points are kept even when others are rejected; the reply says
 * which were rejected and why.
 */
#ifndef SP_INGEST_PARSE_H
#define SP_INGEST_PARSE_H

#include "common/msg.h"
#include "ingestd/ingest_lp.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Errors listed in a reply at most; the counts stay exact. */
#define INGEST_ERRORS_MAX 100

enum ingest_form {
    INGEST_FORM_INGEST, /* POST /api/v1/ingest */
    INGEST_FORM_RECORD, /* POST /api/v1/record */
    INGEST_FORM_LINES,  /* stdin JSON lines */
    INGEST_FORM_WRITE   /* POST /write, /api/v2/write: line protocol */
};

/* What a parse produced: the accepted readings went into the batch. */
struct ingest_report {
    size_t accepted;  /* readings added to the batch */
    size_t rejected;  /* readings refused */
    json_t *errors;   /* [{"index","field","reason"}] (owned), may be NULL */
    const char *fatal_field;  /* set when the body as a whole is bad */
    const char *fatal_reason; /* static text */
    char fatal_buf[160];      /* storage when the reason is built */
};

/* Map a route name ("ingest", "record", "write", "lines") to a form;
 * -1 when unknown. */
int ingest_parse_form(const char *name);
/* Parse a body of the given form; readings are appended to batch.
 * precision_ns applies to line protocol timestamps (1 for ns). tenant is
 * the one the sender authenticated as: stamped into every key as the
 * implicit tag (series_key_stamp), and a reading that names the tag
 * itself is refused; NULL marks a trusted source (stdin) whose keys are
 * taken as given. Never fails: the report says what happened. Caller
 * frees report->errors via ingest_parse_report_clear. */
void ingest_parse(int form, const char *body, size_t len, int64_t now,
                  int64_t precision_ns, const char *tenant, msg_batch_t *batch,
                  struct ingest_report *report);
/* ingest_parse of line protocol (INGEST_FORM_WRITE) with a series cache
 * kept across bodies (ingest_lp.h; NULL: none). */
void ingest_parse_lp(ingest_lp_cache_t *cache, const char *body, size_t len,
                     int64_t now, int64_t precision_ns, const char *tenant,
                     msg_batch_t *batch, struct ingest_report *report);
/* Parse an MQTT telemetry payload of a device of tenant (from
 * [tenants/{t}/]devices/{id}/telemetry): {"timestamp": epoch-ms or RFC
 * 3339, "metrics": {"temperature": 22.5}}, an array of such objects, or
 * the same as msgpack. Each metric becomes the series metric{device=id}
 * (plus tenant=t for a tenant other than the default). Never fails: the
 * report says what happened. */
void ingest_parse_mqtt(const char *tenant, const char *device,
                       const void *payload, size_t len, int64_t now,
                       msg_batch_t *batch, struct ingest_report *report);
/* Stamp the tenant into a finished key (tenant NULL: a trusted source,
 * keys as given; see series_key_stamp). Returns NULL, or a static reason
 * the key is refused. */
const char *ingest_parse_stamp(char *key, size_t keylen, const char *tenant);
/* Release what a report owns. */
void ingest_parse_report_clear(struct ingest_report *report);
/* The HTTP status and JSON reply for a report (SPEC "Responses");
 * caller owns the reply. */
int ingest_parse_reply(int form, const struct ingest_report *report,
                       json_t **reply);
/* Parse a precision name ("ns", "u", "us", "ms", "s", "m", "h") into ns
 * per unit; -1 when unknown. */
int64_t ingest_parse_precision(const char *name);

/* Selftest. */
void ingest_parse_test(bool verbose);

#endif
