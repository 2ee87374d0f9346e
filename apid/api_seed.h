/*
 * api_seed: the seed API routes (SPEC.md), answered by the daemons that
 * own the data.
 */
#ifndef SP_API_SEED_H
#define SP_API_SEED_H

#include "apid/apid.h"

/* Handle req when it is a seed route: returns 1, else 0. */
int api_seed_route(apid_t *self, http_req_t *req);

#endif
