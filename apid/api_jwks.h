/*
 * api_jwks: an OpenID Connect provider's keys fetched from its URL with
 * libcurl and cached in a file (--jwt-keys-url, --jwt-keys).
 *
 * The URL is the provider's jwks_uri, or its discovery document
 * (".../.well-known/openid-configuration"), whose "jwks_uri" is then
 * fetched. A fetched key set is checked (api_jwt_keys_parse) and, when
 * usable and different, written to the cache file atomically (tmp +
 * rename); api_auth reloads that file when its mtime changes, as it does
 * for a file the operator maintains. So a failed fetch never removes
 * keys, and a restart starts from the cache without the network.
 *
 * Fetches run on a thread of their own (apid's loop never waits on the
 * network): every period, and soon after api_jwks_poke (a token named an
 * unknown kid: the provider may have rotated), at most once per 10 s.
 * When the cache file does not exist yet, the first fetch happens before
 * api_jwks_new returns (bounded by the 10 s timeout).
 */
#ifndef SP_API_JWKS_H
#define SP_API_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct api_jwks api_jwks_t;

/* Start fetching url into cache every period_ns. NULL with err when the
 * cache does not exist and the first fetch fails. */
api_jwks_t *api_jwks_new(const char *url, const char *cache, int64_t period_ns,
                         char *err, size_t errlen);
/* Fetch again soon (rate-limited). NULL-safe; thread-safe. */
void api_jwks_poke(api_jwks_t *self);
/* Stop the thread; NULL-safe. */
void api_jwks_destroy(api_jwks_t **self_p);

/* Selftest. */
void api_jwks_test(bool verbose);

#endif
