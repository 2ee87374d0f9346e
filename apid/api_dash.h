/*
 * api_dash: the dashboard. GET / and /web/... serve the page and its
 * vendored assets from the web root (apid/web in the source tree);
 * /api/dashboards/{name} stores layouts (JSON objects) in SQLite under
 * the data directory, or in memory when none is set.
 */
#ifndef SP_API_DASH_H
#define SP_API_DASH_H

#include "apid/apid.h"

#include <stdbool.h>

typedef struct api_dash api_dash_t;

/* Service hooks (apid.c s_services[]): open the store, find the web
 * root. NULL (logged) when the data directory cannot be used. */
void *api_dash_create(apid_t *apid);
/* Close the store; NULL-safe. */
void api_dash_destroy(void **state_p);
/* Route /, /web/... and /api/dashboards...; 1 when handled. */
int api_dash_route(apid_t *apid, http_req_t *req);

/* Selftest: store round trip in memory, asset path checks. */
void api_dash_test(bool verbose);

#endif
