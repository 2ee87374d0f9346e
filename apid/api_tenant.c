/*
 * api_tenant: tenant scoping of queries and answers (see api_tenant.h).
 */
#include "apid/api_tenant.h"
#include "apid/apid.h"
#include "common/series.h"
#include "common/test.h"

#include <string.h>

/* The value the tenant tag filter takes for tenant: "" (absent) for the
 * default tenant. */
static const char *
s_filter_value(const char *tenant)
{
    return strcmp(tenant, SERIES_TENANT_DEFAULT) ? tenant : "";
}

int
api_tenant_scope(const char *tenant, int backend, json_t *query)
{
    const char *sel = json_string_value(json_object_get(query, "series"));
    const char *want = s_filter_value(tenant);
    json_t *tags = json_object_get(query, "tags"), *given;
    char key[SERIES_KEY_MAX];

    if (backend == APID_BK_INGESTD || backend == APID_BK_ALERTD) {
        json_object_set_new(query, "tenant", json_string(tenant));
        return 0;
    }
    if (sel == NULL)
        return 0;
    if (!json_is_object(tags)) {
        tags = json_object();
        json_object_set_new(query, "tags", tags);
    }
    /* A filter on the tenant tag may only name the caller's own tenant. */
    given = json_object_get(tags, SERIES_TENANT_TAG);
    if (given && (!json_is_string(given) ||
                  strcmp(json_string_value(given), want) != 0))
        return -1;
    json_object_set_new(tags, SERIES_TENANT_TAG, json_string(want));
    /* An exact key names the tenant tag as the stored key does. A key
     * that already carries one is left as it is: the filter decides. */
    if (strchr(sel, '{') && strlen(sel) < sizeof key) {
        memcpy(key, sel, strlen(sel) + 1);
        if (series_key_stamp(key, sizeof key, tenant) >= 0)
            json_object_set_new(query, "series", json_string(key));
    }
    return 0;
}

bool
api_tenant_owns(const char *tenant, const char *key)
{
    char buf[SERIES_NAME_MAX + 1];
    return key && strcmp(series_tenant(key, buf, sizeof buf), tenant) == 0;
}

bool
api_tenant_owns_item(const char *tenant, const json_t *item)
{
    const json_t *k = json_object_get(item, "series");

    if (!json_is_string(k))
        k = json_object_get(item, "scope");
    return api_tenant_owns(tenant, json_string_value(k));
}

size_t
api_tenant_filter(const char *tenant, json_t *items)
{
    size_t removed = 0;

    for (size_t i = 0; i < json_array_size(items);) {
        if (api_tenant_owns_item(tenant, json_array_get(items, i))) {
            i++;
            continue;
        }
        json_array_remove(items, i);
        removed++;
    }
    return removed;
}

void
api_tenant_test(bool verbose)
{
    json_t *q = json_pack("{s:s, s:s}", "op", "stats", "series", "t");
    json_t *items;

    /* The default tenant: its series are those without the tag. */
    assert(api_tenant_scope("default", APID_BK_AGGD, q) == 0);
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(q, "tags"), "tenant")), "");
    TEST_STREQ(json_string_value(json_object_get(q, "series")), "t");
    json_decref(q);
    /* Another tenant: the filter, and its tag in an exact key. */
    q = json_pack("{s:s, s:s, s:{s:s}}", "op", "stats", "series",
                  "t{device=s1}", "tags", "device", "s1");
    assert(api_tenant_scope("acme", APID_BK_AGGD, q) == 0);
    TEST_STREQ(json_string_value(json_object_get(q, "series")),
               "t{device=s1,tenant=acme}");
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(q, "tags"), "tenant")), "acme");
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(q, "tags"), "device")), "s1");
    json_decref(q);
    /* Naming another tenant is refused, naming one's own is fine. */
    q = json_pack("{s:s, s:{s:s}}", "series", "t", "tags", "tenant", "globex");
    assert(api_tenant_scope("acme", APID_BK_AGGD, q) == -1);
    json_decref(q);
    q = json_pack("{s:s, s:{s:s}}", "series", "t", "tags", "tenant", "acme");
    assert(api_tenant_scope("acme", APID_BK_AGGD, q) == 0);
    assert(api_tenant_scope("default", APID_BK_AGGD, q) == -1);
    json_decref(q);
    /* A key of another tenant stays as given; the filter makes it 404. */
    q = json_pack("{s:s}", "series", "t{tenant=globex}");
    assert(api_tenant_scope("acme", APID_BK_AGGD, q) == 0);
    TEST_STREQ(json_string_value(json_object_get(q, "series")),
               "t{tenant=globex}");
    json_decref(q);
    /* Ingest carries the tenant; queries without a series are left. */
    q = json_pack("{s:s}", "op", "ingest");
    assert(api_tenant_scope("acme", APID_BK_INGESTD, q) == 0);
    TEST_STREQ(json_string_value(json_object_get(q, "tenant")), "acme");
    json_decref(q);
    q = json_pack("{s:s}", "op", "rules");
    assert(api_tenant_scope("acme", APID_BK_ALERTD, q) == 0);
    TEST_STREQ(json_string_value(json_object_get(q, "tenant")), "acme");
    json_decref(q);
    q = json_pack("{s:s}", "op", "status");
    assert(api_tenant_scope("acme", APID_BK_AGGD, q) == 0 &&
           json_object_size(q) == 1);
    json_decref(q);
    items = json_pack("[{s:s}, {s:s}, {s:s}, {s:n}, {s:n, s:s}]", "series",
                      "t", "series", "t{tenant=acme}", "series",
                      "t{a=1,tenant=acme}", "series", "series", "scope",
                      "{device=s1,tenant=acme}");
    assert(api_tenant_filter("acme", items) == 2);
    assert(json_array_size(items) == 3);
    assert(api_tenant_owns("default", "t{a=1}"));
    assert(!api_tenant_owns("default", "t{tenant=acme}"));
    json_decref(items);
    (void)verbose;
    TEST_OK("api_tenant");
}
