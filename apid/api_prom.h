/*
 * api_prom: the Prometheus HTTP query API on apid, so Grafana and promtool
 * work unchanged: /api/v1/query, /api/v1/query_range, /api/v1/series (when
 * match[] is given; without it api_seed's listing answers),
 * /api/v1/labels, /api/v1/label/{name}/values, /api/v1/status/buildinfo
 * and an empty /api/v1/metadata. GET or form-encoded POST. Points come
 * from aggd; the PromQL subset is prom_ql.h's.
 */
#ifndef SP_API_PROM_H
#define SP_API_PROM_H

#include "apid/apid.h"

#include <stdbool.h>

/* Route the Prometheus API; 1 when handled. */
int api_prom_route(apid_t *apid, http_req_t *req);

/* Selftest: argument parsing. */
void api_prom_test(bool verbose);

#endif
