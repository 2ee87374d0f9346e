/*
 * ingest_lp: InfluxDB line protocol (POST /write, /api/v2/write) to
 * readings.
 *
 *   measurement[,tag=value...] field=value[,field=value...] [timestamp]
 *
 * Each field becomes the series "measurement.field{tags}" ("measurement"
 * alone for the field "value"), tags sorted (series.h). A line is taken
 * whole or refused whole. A body repeats its series, so each series
 * section is parsed and checked once per body and the lines after it
 * find it by its raw bytes.
 */
#ifndef SP_INGEST_LP_H
#define SP_INGEST_LP_H

#include "common/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Called for each refused line: its index among the non-empty,
 * non-comment lines, and a static reason. */
typedef void(ingest_lp_reject_fn)(size_t index, const char *why, void *arg);

/* Parse body; the readings of every valid line go into batch (a readings
 * batch). prec is ns per timestamp unit; now bounds future timestamps
 * and stands in for a missing one; tenant is stamped into every key
 * (ingest_parse_stamp). Returns the readings added. Cannot fail. */
size_t ingest_lp_parse(const char *body, size_t len, int64_t now, int64_t prec,
                       const char *tenant, msg_batch_t *batch,
                       ingest_lp_reject_fn *reject, void *arg);

/* Selftest. */
void ingest_lp_test(bool verbose);

#endif
