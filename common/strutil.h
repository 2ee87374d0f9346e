/*
 * strutil: small string helpers shared by every daemon.
 */
#ifndef SP_STRUTIL_H
#define SP_STRUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Format v in the shortest form that reads back to the same double
 * ("23.6", not "23.600000000000001"). buf >= 32 bytes. Returns buf.
 * NaN and infinities print as "null" (JSON has no spelling for them). */
char *strutil_dtoa(double v, char *buf, size_t len);
/* The same at buf (room for 32 bytes), without a length check: returns
 * the position of the NUL, for writers that go on from there. */
char *strutil_dtoa_end(double v, char *buf);
/* Write v in decimal at p (room for 21 bytes) and a NUL; returns the
 * position of the NUL. */
char *strutil_utoa(uint64_t v, char *p);
/* FNV-1a 64 of n bytes. */
uint64_t strutil_fnv1a64(const void *p, size_t n);
/* Checked integer parse of the whole string within [min, max] (strtonum).
 * Returns 0 or -1. */
/* A fast 64-bit hash of n bytes for hash tables (eight bytes a step);
 * not the lane hash, which stays strutil_fnv1a64. */
uint64_t strutil_hash64(const void *p, size_t n);
int strutil_toll(const char *s, long long min, long long max, long long *out);
/* Checked double parse of the whole string (finite only; an underflow
 * gives the subnormal or zero strtod rounds to). 0 or -1. */
int strutil_tod(const char *s, double *out);
/* True when s (n bytes) is valid UTF-8 without NUL bytes. */
bool strutil_utf8_valid(const char *s, size_t n);
/* Glob match with '*' and '?' (no classes). */
bool strutil_glob(const char *pattern, const char *s);
/* Decode %XX and '+' (when plus is true) in place. Returns 0, or -1 on a
 * malformed escape. */
int strutil_urldecode(char *s, bool plus);

/* Selftest: asserts on failure, prints " * strutil: OK". */
void strutil_test(bool verbose);

#endif
