/*
 * dtoa: a fast writer of doubles for long JSON answers (aggd's interval
 * buckets), with the same text as strutil_dtoa_end.
 */
#ifndef SP_DTOA_H
#define SP_DTOA_H

#include <stdbool.h>

/* Bytes dtoa_end may touch at p (its text is at most 24 of them; it
 * writes whole 8- and 16-byte words past the end). */
#define DTOA_ROOM 48

/* Write v at p exactly as strutil_dtoa_end does (the shortest "%.Ng"
 * that reads back as v, "null" unless finite), without a NUL; returns
 * the end. The usual case, a non-integer with 1e-4 <= |v| < 1e15 (fixed
 * notation), takes one 64x64-bit product and no loop; the others go to
 * strutil_dtoa_end. p has room for DTOA_ROOM bytes. */
char *dtoa_end(double v, char *p);

/* Selftest: asserts on failure, prints " * dtoa: OK". */
void dtoa_test(bool verbose);

#endif
