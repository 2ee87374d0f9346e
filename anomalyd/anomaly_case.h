/*
 * anomaly_case: load a labelled series from a CSV file, for golden-case
 * selftests (tests/cases/anomaly/) and the NAB harness.
 *
 * Format: a header line, then "timestamp,value[,label]" per line. The
 * timestamp is RFC 3339, "YYYY-MM-DD HH:MM:SS" (UTC, as NAB writes it) or
 * epoch milliseconds; an empty value or "nan" is a gap (NAN); label is 1
 * where a detector should fire and 0 elsewhere (default 0).
 */
#ifndef SP_ANOMALY_CASE_H
#define SP_ANOMALY_CASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Plain data: a loaded case. */
struct anomaly_case {
    size_t n;       /* readings */
    int64_t *ts;    /* timestamps, ns since epoch */
    double *value;  /* values; NAN for a gap */
    uint8_t *label; /* 1 inside an expected anomaly */
};

/* Load a case. Returns the case (caller destroys), or NULL with a warning
 * logged when the file cannot be read or a line is malformed. */
struct anomaly_case *anomaly_case_load(const char *path);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void anomaly_case_destroy(struct anomaly_case **self_p);
/* Parse a timestamp as the loader does: RFC 3339 with or without a zone
 * (UTC assumed), a bare date, or epoch milliseconds. Returns 0 or -1. */
int anomaly_case_parse_ts(const char *s, int64_t *ts);

/* The series the detectors' selftests use for a level far from the
 * first value: v[0] = 0 (a power-up reading), then 1.6e7 plus uniform
 * noise of +-0.05, the same every time. */
void anomaly_case_far(double *v, size_t n);

/* Selftest: asserts on failure, prints " * anomaly_case: OK". */
void anomaly_case_test(bool verbose);

#endif
