/*
 * quota: per-tenant limits from a JSON file shared by apid and ingestd
 * (--quotas FILE):
 *
 *   {"default": {"devices": 1000, "series": 10000, "rate": 5000},
 *    "tenants": {"acme": {"series": 50, "rate": 100},
 *                "globex": {"devices": 0}}}
 *
 * Kinds: "devices" (apid: devices not decommissioned), "series" (ingestd:
 * distinct series keys), "rate" (ingestd: readings per second, bursts of
 * 2 s). A tenant's own value wins, then the file's "default", then the
 * daemon's command-line value (--tenant-devices, --tenant-series,
 * --tenant-rate); 0 is no limit. Unknown kinds, negative values and bad
 * tenant names are errors, so a typo does not silently lift a limit. The
 * file is looked at (mtime) at most every 5 s and re-read when it
 * changed; a broken new file keeps the limits in force (logged).
 */
#ifndef SP_QUOTA_H
#define SP_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct quota quota_t;

/* Load path ("" = no file: every limit is the fallback). NULL with a
 * reason in err (errlen bytes) when the file cannot be used. */
quota_t *quota_new(const char *path, char *err, size_t errlen);
/* NULL-safe; sets *self_p to NULL. */
void quota_destroy(quota_t **self_p);
/* Re-read the file when it changed, looked at once per 5 s of now_ns
 * (monotonic). Returns 1 when new limits are in force, else 0. */
int quota_refresh(quota_t *self, int64_t now_ns);
/* The limit of kind for tenant (see above); 0 = none. */
double quota_limit(const quota_t *self, const char *tenant, const char *kind,
                   double fallback);
/* Does the file set kind above 0 anywhere (or is fallback above 0)? */
bool quota_any(const quota_t *self, const char *kind, double fallback);

/* Selftest. */
void quota_test(bool verbose);

#endif
