/*
 * agg_query: aggd's answers to rpc queries (common/rpc.h), computed from
 * the store. Ops: "stats", "aggregate", "series", "points", "latest".
 * Every request names "series" (canonical key, bare name or glob) with
 * optional "tags" {k: v}, "start" and "end" (ns; end exclusive).
 */
#ifndef SP_AGG_QUERY_H
#define SP_AGG_QUERY_H

#include "aggd/agg_store.h"

#include <jansson.h>
#include <stdbool.h>

/* Answer req from store: returns the HTTP-style status and sets *body
 * (caller owns). Never fails on bad input: that is a 400 body. */
int agg_query_answer(agg_store_t *store, const json_t *req, json_t **body);

/* Selftest. */
void agg_query_test(bool verbose);

#endif
