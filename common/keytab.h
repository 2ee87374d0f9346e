/*
 * keytab: a table of distinct byte strings, each with a small dense index
 * (0, 1, 2, ... in order of first appearance) and its FNV-1a 64 hash.
 *
 * Batches use it as their series table (one key string per series, not
 * one per reading) and ingestd's line-protocol parser as its cache of
 * series sections already parsed. Open addressing on a hash the caller
 * chooses: batches use FNV-1a 64, the lane hash (series.h), so the lane
 * of a key is keytab_hash() without hashing again.
 */
#ifndef SP_KEYTAB_H
#define SP_KEYTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct keytab keytab_t;

/* Create an empty table. Cannot fail. Caller destroys. */
keytab_t *keytab_new(void);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void keytab_destroy(keytab_t **self_p);
/* Forget every key, keep the memory. */
void keytab_reset(keytab_t *self);

/* Index of the bytes s[0..len), adding a copy when they are new (then
 * *added is set when added is not NULL). hash is the caller's hash of
 * the bytes, the same function for every add to one table (keytab_add
 * uses strutil_fnv1a64). Cannot fail. */
uint32_t keytab_add_hashed(keytab_t *self, const char *s, size_t len,
                           uint64_t hash, bool *added);
/* The same with strutil_fnv1a64, the lane hash. */
uint32_t keytab_add(keytab_t *self, const char *s, size_t len, bool *added);
/* Number of keys. */
size_t keytab_size(const keytab_t *self);
/* Key i, NUL-terminated; borrowed until the next add or reset. i must be
 * below keytab_size(). */
const char *keytab_str(const keytab_t *self, uint32_t i);
/* Length of key i. */
size_t keytab_len(const keytab_t *self, uint32_t i);
/* The hash key i was added with. */
uint64_t keytab_hash(const keytab_t *self, uint32_t i);

/* Selftest. */
void keytab_test(bool verbose);

#endif
