/*
 * dev_shadow: a device's shadow, desired and reported state with a version
 * each, in the registry's SQLite file. The delta is what desired holds
 * that reported does not (yet): apid publishes it on
 * "<prefix>/shadow/delta" when desired changes, and a device's report on
 * "<prefix>/shadow/reported" that matches clears it. Both sides change
 * by JSON merge patch (RFC 7386: null deletes a key).
 */
#ifndef SP_DEV_SHADOW_H
#define SP_DEV_SHADOW_H

#include "apid/dev_store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* {deviceId, desired, reported, delta, version: {desired, reported},
 * updatedAt}, or NULL when the device is unknown in tenant. Caller owns. */
json_t *dev_shadow_get(dev_store_t *store, const char *tenant, const char *id);
/* Bytes a side may take as compact JSON: each change parses, merges and
 * writes the whole side on apid's loop, so a device adding keys report
 * after report made every report slower (50 reports of 1,000 new keys:
 * 12.5 s of apid's CPU under ASan, growing with the square). */
#define DEV_SHADOW_SIDE_MAX 65536
/* Merge patch into side ("desired" or "reported") and bump its version.
 * Returns the new shadow (as dev_shadow_get), or NULL when the device is
 * unknown, decommissioned, or patch is not an object; or NULL with *why
 * set when the side would be larger than DEV_SHADOW_SIDE_MAX (nothing
 * changes). Caller owns. */
json_t *dev_shadow_patch(dev_store_t *store, const char *tenant, const char *id,
                         const char *side, json_t *patch, int64_t now, const char **why);
/* What desired holds that reported does not. Caller owns. */
json_t *dev_shadow_delta(json_t *desired, json_t *reported);

/* Selftest. */
void dev_shadow_test(bool verbose);

#endif
