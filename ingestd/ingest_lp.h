/*
 * ingest_lp: InfluxDB line protocol (POST /write, /api/v2/write) to
 * readings.
 *
 *   measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * Each field becomes the series "measurement.field{tags}" ("measurement"
 * alone for the field "value"), tags sorted (series.h). A line is taken
 * whole or refused whole. Bodies repeat their series, so each series
 * section is parsed and checked once while a cache (kept across bodies
 * of one tenant) holds it, and the lines after it find it by its raw
 * bytes.
 */
#ifndef SP_INGEST_LP_H
#define SP_INGEST_LP_H

#include "common/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The series sections seen, with their keys; a cache may be used for
 * any bodies, one parse at a time (a body of another tenant empties it).
 * Its memory is bounded: past 32,768 sections or 8 MiB of keys it starts
 * over at the next body. */
typedef struct ingest_lp_cache ingest_lp_cache_t;

/* Create an empty cache. Cannot fail. Caller destroys. */
ingest_lp_cache_t *ingest_lp_cache_new(void);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void ingest_lp_cache_destroy(ingest_lp_cache_t **self_p);
/* Sections held. */
size_t ingest_lp_cache_size(const ingest_lp_cache_t *self);

/* Called for each refused line: its index among the non-empty,
 * non-comment lines, and a static reason. */
typedef void(ingest_lp_reject_fn)(size_t index, const char *why, void *arg);

/* Parse body with cache (NULL: one for this body only); the readings of
 * every valid line go into batch (a readings batch). The result does not
 * depend on what the cache held. prec is ns per timestamp unit; now bounds future timestamps
 * and stands in for a missing one; tenant is stamped into every key
 * (ingest_parse_stamp). Returns the readings added. Cannot fail. */
size_t ingest_lp_parse(ingest_lp_cache_t *cache, const char *body, size_t len,
                       int64_t now, int64_t prec, const char *tenant,
                       msg_batch_t *batch, ingest_lp_reject_fn *reject,
                       void *arg);

/* Whether lines of the common shape take the quick reader (the
 * default) or all the general parse; the readings and refusals are the
 * same either way. For tests and fuzzing; not thread-safe. */
void ingest_lp_set_fast(bool on);

/* Selftest. */
void ingest_lp_test(bool verbose);

#endif
