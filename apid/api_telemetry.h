/*
 * api_telemetry: GET /api/telemetry/{deviceId}?start=&end=&metric=&limit=
 * (the seed form): the points of metric{device=deviceId}, or of every
 * metric of the device without metric=, from aggd. format=csv streams
 * "series,timestamp,value" lines of the whole range (api_export.h)
 * instead of JSON.
 */
#ifndef SP_API_TELEMETRY_H
#define SP_API_TELEMETRY_H

#include "apid/apid.h"

#include <stdbool.h>

/* Route /api/telemetry/{deviceId}; 1 when handled. */
int api_telemetry_route(apid_t *apid, http_req_t *req);

#endif
