/*
 * api_fleet: the fleet overview and the reports of the dashboard.
 *
 *   GET /api/fleet                          overview of a window
 *   GET /api/reports/device-performance     per device: registry state and
 *                                           metadata, readings, series,
 *                                           last reading, anomalies
 *   GET /api/reports/anomaly-summary        anomalies by severity, method
 *                                           and series
 *   GET /api/reports/fleet-health           online/offline/silent devices,
 *                                           firing alerts, a verdict
 *
 * All take start and end (any accepted time form; default the last 24 h,
 * or window=DURATION back from now). apid gathers in turn aggd's series
 * listing of the range (points per series), anomalyd's anomalies with a
 * normalised score of at least API_FLEET_MIN_SCORE, alertd's alerts and
 * the device registry, all scoped to the caller's tenant; a backend that
 * fails answers for the whole request (503), one that knows no series
 * counts as empty. Alerts are alertd's current ones, whatever the range.
 *
 * Severity of an anomaly, from its score: critical >= 0.9, warning
 * >= 0.7, info below. A series belongs to the device of its "device" tag.
 */
#ifndef SP_API_FLEET_H
#define SP_API_FLEET_H

#include "apid/apid.h"

#include <stdbool.h>

#define API_FLEET_MIN_SCORE 0.5

/* Route /api/fleet and /api/reports/...; 1 when handled. */
int api_fleet_route(apid_t *apid, http_req_t *req);

/* Selftest: the reports from fixed inputs. */
void api_fleet_test(bool verbose);

#endif
