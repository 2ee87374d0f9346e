/*
 * reading: one reading as JSON, the form shared by stdin filters, the
 * /api/v1/record body and tap output:
 *   {"series": "name{k=v}" | "name": "n", "tags": {...},
 *    "timestamp": RFC 3339 | epoch ms, "value": 23.5}
 * Validation follows SPEC's API conventions and names the bad field.
 */
#ifndef SP_READING_H
#define SP_READING_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Timestamps more than this far ahead of now are refused. */
#define READING_FUTURE_MAX_NS (366LL * 86400 * 1000000000LL)

/* A rejected field and why; both static strings. */
struct reading_err {
    const char *field;
    const char *reason;
};

/* Parse a timestamp value (string RFC 3339 or integer epoch ms; absent
 * means now). Returns 0, or -1 and sets err. */
int reading_ts(const json_t *j, int64_t now, int64_t *ts,
               struct reading_err *err);
/* Parse a value (a finite JSON number). Returns 0 or -1 and sets err. */
int reading_value(const json_t *j, double *v, struct reading_err *err);
/* Parse a whole reading object into key (canonical), ts, value. Accepts
 * "series" (a canonical key) or "name" plus optional "tags". Returns 0,
 * or -1 and sets err. */
int reading_parse(const json_t *obj, int64_t now, char *key, size_t keylen,
                  int64_t *ts, double *v, struct reading_err *err);
/* Build a canonical key from a name and an optional tags object.
 * Returns 0 or -1 and sets err. */
int reading_key(const char *name, const json_t *tags, char *key,
                size_t keylen, struct reading_err *err);

/* Selftest. */
void reading_test(bool verbose);

#endif
