/*
 * api_devices: the device fleet routes (/api/devices...) over the
 * registry and event log in SQLite (dev_store), with per-device MQTT
 * credentials written for mosquitto (dev_creds).
 *
 *   POST   /api/devices/register          provision (seed body); 201 with
 *                                         the MQTT credentials, shown once
 *   GET    /api/devices                   list: type, status, tag, group,
 *                                         online, metadata.K=V; limit, offset
 *   GET    /api/devices/{id}              state (?replay=1 rebuilds it
 *                                         from the event log)
 *   PATCH  /api/devices/{id}              type, metadata (merge patch),
 *                                         tags, groups, firmware,
 *                                         status "active"
 *   DELETE /api/devices/{id}              decommission (log kept,
 *                                         credentials revoked)
 *   GET    /api/devices/{id}/events       the lifecycle log (after, limit)
 *   POST   /api/devices/{id}/events       {"type": heartbeat|online|offline}
 *   POST   /api/devices/{id}/sensors      add or replace a sensor
 *   DELETE /api/devices/{id}/sensors/{n}  remove a sensor
 *   POST   /api/devices/{id}/credentials  issue a new MQTT password
 *   POST   /api/devices/batch             a job over a filter (not of
 *                                         decommissioned devices)
 *   GET    /api/jobs[/{id}], POST /api/jobs/{id}/cancel
 *
 * Every route is scoped to the caller's tenant (api_auth): another
 * tenant's device is 404, as if it did not exist.
 */
#ifndef SP_API_DEVICES_H
#define SP_API_DEVICES_H

#include "apid/apid.h"
#include "apid/dev_outbox.h"
#include "apid/dev_store.h"

/* apid's MQTT client and its outbox, for /stats and /metrics. */
struct api_devices_mqtt {
    bool enabled;      /* --mqtt-host set */
    bool connected;    /* to the broker, now */
    int64_t unacked;   /* QoS 1 handed to libmosquitto, no PUBACK yet */
    struct dev_outbox_stats outbox; /* zeros without an outbox */
};

/* Service state (s_services[] in apid.c): opens <datadir>/devices.db. */
void *api_devices_create(apid_t *apid);
void api_devices_destroy(void **state_p);
/* The registry (borrowed), for other modules. */
dev_store_t *api_devices_store(apid_t *apid);
/* Job progress reports heard on MQTT since start: those that changed a
 * device's entry, and those ignored (late, of an entry that is over, of
 * an unknown job, without a valid status). Zeros without the service. */
void api_devices_job_reports(apid_t *apid, uint64_t *applied, uint64_t *ignored);
/* The MQTT client's state and its outbox's counters; zeros without
 * --mqtt-host or the service. */
void api_devices_mqtt_stats(apid_t *apid, struct api_devices_mqtt *st);
/* Handle req when it is a device or key route: returns 1, else 0. */
int api_devices_route(apid_t *apid, http_req_t *req);

/* Selftest. */
void api_devices_test(bool verbose);

#endif
