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
 */
#ifndef SP_API_RULES_H
#define SP_API_RULES_H

#include "apid/apid.h"

#include <stdbool.h>

/* Route /api/rules and /api/rules/...; 1 when handled. */
int api_rules_route(apid_t *apid, http_req_t *req);

/* Selftest: path parsing. */
void api_rules_test(bool verbose);

#endif
