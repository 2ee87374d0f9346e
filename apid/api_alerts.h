/*
 * api_alerts: one alert and its acknowledgement, relayed to alertd:
 * GET /api/alerts/{id}, POST /api/alerts/{id}/ack (body {"by": "..."}
 * optional). The list, GET /api/alerts, is api_seed's.
 */
#ifndef SP_API_ALERTS_H
#define SP_API_ALERTS_H

#include "apid/apid.h"

#include <stdbool.h>

/* Route /api/alerts/{id}[/ack]; 1 when handled. */
int api_alerts_route(apid_t *apid, http_req_t *req);

/* Selftest: path parsing. */
void api_alerts_test(bool verbose);

#endif
