/*
 * clock: time in sensorpipe. Timestamps are int64 nanoseconds since the
 * Unix epoch (UTC). Parses RFC 3339, YYYY-MM-DD and epoch milliseconds;
 * formats RFC 3339 UTC with milliseconds; parses durations.
 */
#ifndef SP_CLOCK_H
#define SP_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CLOCK_NS_PER_MS 1000000LL
#define CLOCK_NS_PER_S 1000000000LL
/* Largest timestamp we accept: year 2262 is where int64 ns ends. */
#define CLOCK_TS_MAX INT64_MAX
#define CLOCK_TS_MIN INT64_MIN

/* Wall clock now, in ns. Cannot fail. */
int64_t clock_now_ns(void);
/* Monotonic clock in ns. Cannot fail. */
int64_t clock_mono_ns(void);

/* Parse RFC 3339 ("2024-01-01T00:00:00Z", fractions, offsets) or a bare
 * date "2024-01-01" (midnight UTC). Returns 0 and sets *ts_ns, or -1. */
int clock_parse_rfc3339(const char *s, int64_t *ts_ns);
/* Parse a query-parameter time: RFC 3339, YYYY-MM-DD, or integer epoch
 * milliseconds. Returns 0 or -1. */
int clock_parse_time(const char *s, int64_t *ts_ns);
/* Format ts as "2024-01-01T00:00:00.000Z" into buf (>= 32 bytes).
 * Returns buf. */
char *clock_format(int64_t ts_ns, char *buf, size_t len);

/* Parse a duration "30s", "5m", "5min", "1h", "1d", "1w", "250ms".
 * Returns 0 and sets *ns (> 0), or -1. */
int clock_parse_duration(const char *s, int64_t *ns);
/* The same for a duration of whole milliseconds (where time is counted
 * in milliseconds, as readings' timestamps are): "1.5s" is one, "500us"
 * is not. Returns 0 and sets *ns, or -1 (*ns then unspecified). */
int clock_parse_duration_ms(const char *s, int64_t *ns);

/* Selftest: asserts on failure, prints " * clock: OK". */
void clock_test(bool verbose);

#endif
