/*
 * alert_devices: the device metadata that rules read as device.NAME
 * ("temperature > device.max_temp"). The registry lives in apid
 * (DESIGN.md: apid owns devices); apid pushes each device's metadata to
 * every alertd lane when it changes, with the "devices" query, and
 * alertd keeps a copy in its SQLite file (table device_meta), so a
 * restarted alertd has its thresholds before apid pushes again.
 *
 * The query: {"op": "devices", "devices": [{"id": ID, "metadata":
 * {...}}, ...], "removed": [ID, ...], "full": bool}; "full" replaces the
 * whole set (devices not listed are forgotten). The answer is {"devices":
 * count, "generation": G}: G is new with every alertd process, so apid
 * sees a restart (of a lane whose file may be new) and pushes everything
 * again.
 */
#ifndef SP_ALERT_DEVICES_H
#define SP_ALERT_DEVICES_H

#include "alertd/alert_engine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct sqlite3;

/* Most devices in one query. */
#define ALERT_DEVICES_BATCH_MAX 100000

typedef struct alert_devices alert_devices_t;

/* Load the stored metadata into engine (borrowed, as is db; db may be
 * NULL: memory only). Returns NULL (logged) when the table cannot be
 * read. Caller destroys. */
alert_devices_t *alert_devices_new(struct sqlite3 *db, alert_engine_t *engine);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void alert_devices_destroy(alert_devices_t **self_p);
/* Answer a "devices" query: 200, or 400 with nothing changed when any
 * entry is malformed; 500 when the store fails. Sets *body. */
int alert_devices_answer(alert_devices_t *self, const json_t *req,
                         json_t **body);

/* Selftest: asserts on failure, prints " * alert_devices: OK". */
void alert_devices_test(bool verbose);

#endif
