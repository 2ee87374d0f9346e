/*
 * api_tenant: every question apid asks the chain is scoped to the tenant
 * of the request (docs/DEVICES.md, "Tenant isolation").
 *
 * The tenant is an implicit tag of every series (common/series.h): ingestd
 * stamps tenant=T into the keys of a tenant's readings, and a series of
 * the default tenant has no tenant tag. So a tenant's data is exactly the
 * series whose tenant tag says so, and apid narrows every query with one
 * more tag filter: {tenant: T}, or {tenant: ""} (tag absent) for the
 * default tenant. aggd and anomalyd need not know about tenants at all;
 * a selection that reaches into another tenant matches nothing and is 404,
 * as an unknown series is, so nothing tells a caller what exists elsewhere.
 * Answers that are not selected by series (alerts) are filtered here;
 * alertd keeps the rules a tenant makes as that tenant's.
 */
#ifndef SP_API_TENANT_H
#define SP_API_TENANT_H

#include <jansson.h>
#include <stdbool.h>

/* Scope a query to backend (enum apid_backend) to tenant: ingestd and
 * alertd get "tenant" (ingestd stamps it into keys; alertd keeps rules
 * per tenant); a query to aggd or anomalyd with "series" gets the tenant
 * tag filter, and an exact key ("name{k=v}") the tenant tag itself.
 * Returns 0, or -1 when the query itself names another tenant's data (a
 * tenant tag filter or key of another tenant): answer 404. */
int api_tenant_scope(const char *tenant, int backend, json_t *query);
/* Does the series key belong to tenant? */
bool api_tenant_owns(const char *tenant, const char *key);
/* Does an item (an alert, an anomaly) belong to tenant? Judged by its
 * "series" key, else its "scope" (the tag set of a multi-series alert). */
bool api_tenant_owns_item(const char *tenant, const json_t *item);
/* Keep only the items of an array that belong to tenant; returns how
 * many were removed. */
size_t api_tenant_filter(const char *tenant, json_t *items);

/* Selftest. */
void api_tenant_test(bool verbose);

#endif
