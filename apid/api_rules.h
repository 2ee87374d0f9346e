/*
 * api_rules: the rules API, relayed to alertd, which validates, stores
 * (its SQLite file) and applies every change at once:
 *
 *   GET    /api/rules                   list (file and API rules)
 *   POST   /api/rules                   create; the seed body verbatim
 *   GET    /api/rules/{id}              one rule ({id} is its name)
 *   PUT    /api/rules/{id}              change name, condition, actions
 *                                       or enabled (fields absent keep
 *                                       their value)
 *   DELETE /api/rules/{id}              delete
 *   POST   /api/rules/{id}/enable       enabled = true
 *   POST   /api/rules/{id}/disable      enabled = false
 *
 * Writes go to every alertd lane (each evaluates the rules on its own
 * series and keeps its own copy); reads to lane 0.
 *
 * The service "rules" also keeps alertd's copy of the device metadata
 * that rules read as device.NAME (temperature > device.max_temp) in step
 * with the registry (dev_store): every API_RULES_SYNC_MS it compares each
 * device's event counter (seq) with what every alertd lane acknowledged,
 * and pushes the metadata of the devices that changed (and the ids of
 * those gone or decommissioned) with the "devices" query, on DEALER
 * sockets of its own. A lane whose answer carries a new generation (a
 * restarted alertd) gets everything again. Design caveat: the comparison
 * reads the (tenant, id, seq) of every device each time, O(devices) every
 * two seconds (about a millisecond for 10,000 devices); device ids are
 * taken without their tenant, as series tags carry no tenant yet.
 */
#ifndef SP_API_RULES_H
#define SP_API_RULES_H

#include "apid/apid.h"

#include <stdbool.h>

/* Period of the device metadata sync. */
#define API_RULES_SYNC_MS 2000

/* The sync service (apid_service "rules"). */
void *api_rules_create(apid_t *apid);
void api_rules_destroy(void **state_p);

/* Route /api/rules and /api/rules/...; 1 when handled. */
int api_rules_route(apid_t *apid, http_req_t *req);

/* Selftest: path parsing. */
void api_rules_test(bool verbose);

#endif
