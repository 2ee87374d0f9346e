/*
 * bucket: token-bucket rate limits keyed by a string (an API key, a
 * client address, a device id). Each key refills at rate tokens per
 * second up to burst. Idle, full buckets are forgotten so the table stays
 * as small as the set of active senders.
 */
#ifndef SP_BUCKET_H
#define SP_BUCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bucket bucket_t;

/* rate <= 0 disables limiting (every take succeeds). Cannot fail. */
bucket_t *bucket_new(double rate, double burst);
/* NULL-safe. */
void bucket_destroy(bucket_t **self_p);
/* Take n tokens for key at monotonic time now_ns. Returns 0 when allowed,
 * else the whole seconds to wait before n tokens are there (>= 1), for
 * Retry-After. */
int bucket_take(bucket_t *self, const char *key, double n, int64_t now_ns);
/* Keys tracked now. */
size_t bucket_size(const bucket_t *self);

/* Selftest. */
void bucket_test(bool verbose);

#endif
