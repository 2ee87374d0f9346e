/*
 * dev_state: a device's current state as a fold over its lifecycle events.
 *
 * The event log (dev_store) is the truth; the state is what replaying it
 * gives, so the same function builds the stored projection on every append
 * and rebuilds it from scratch when asked (GET /api/devices/{id}?replay=1).
 * Pure: no I/O, no clock; the event carries its own time.
 *
 * State (JSON object): deviceId, type, status (provisioned, active,
 * decommissioned), online, metadata {}, tags [], groups [], sensors [],
 * firmware, lastSeen, createdAt, updatedAt, version (events applied).
 */
#ifndef SP_DEV_STATE_H
#define SP_DEV_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* Largest device id, tag, group or tenant name in bytes. */
#define DEV_NAME_MAX 64
/* Levels a device's state may nest (metadata, sensors, ...): SQLite's JSON
 * functions, which the registry's lists and filters run over every state
 * of a tenant, refuse a document deeper than their limit (2000 in 3.40,
 * 1000 from 3.45), and one such device failed every list of its tenant. */
#define DEV_STATE_DEPTH_MAX 64

/* Event kinds, as stored and shown. */
#define DEV_EV_PROVISIONED "provisioned"
#define DEV_EV_ACTIVATED "activated"
#define DEV_EV_UPDATED "updated"
#define DEV_EV_LOCATION "location_updated"
#define DEV_EV_SENSOR_ADDED "sensor_added"
#define DEV_EV_SENSOR_REMOVED "sensor_removed"
#define DEV_EV_FIRMWARE "firmware_updated"
#define DEV_EV_HEARTBEAT "heartbeat"
#define DEV_EV_ONLINE "online"
#define DEV_EV_OFFLINE "offline"
#define DEV_EV_DECOMMISSIONED "decommissioned"

/* True for a usable device id, tag or group: 1..64 bytes of
 * [A-Za-z0-9_.-], so it is safe in an MQTT topic, a mosquitto user name
 * and an ACL line. */
bool dev_state_name_ok(const char *s);

/* Apply one event (kind, data, ts in ns) to *state_p. *state_p is NULL
 * before the first event, which must be "provisioned". After
 * "decommissioned" only "provisioned" applies (the id registered again):
 * a fresh state whose version goes on from the old one. Returns 0, or -1
 * with a reason in why (static string) when the event does not apply
 * (unknown kind, bad data, anything else after decommissioning); *state_p
 * is then unchanged. Does not take data. */
int dev_state_apply(json_t **state_p, const char *kind, json_t *data,
                    int64_t ts, const char **why);

/* Selftest. */
void dev_state_test(bool verbose);

#endif
