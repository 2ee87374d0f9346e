/*
 * topic: device topics with and without a tenant (see topic.h).
 */
#include "common/topic.h"
#include "common/series.h"
#include "common/test.h"

#include <stdio.h>
#include <string.h>

/* Copy the segment at p (up to the next '/') into out; returns the
 * position after its '/', or NULL when it is empty, too long or last. */
static const char *
s_segment(const char *p, char *out)
{
    const char *slash = strchr(p, '/');
    size_t n;

    if (slash == NULL || slash == p || (n = (size_t)(slash - p)) > TOPIC_ID_MAX)
        return NULL;
    memcpy(out, p, n);
    out[n] = '\0';
    return slash + 1;
}

int
topic_parse(const char *topic, struct topic_device *out)
{
    const char *p = topic;

    snprintf(out->tenant, sizeof out->tenant, "%s", SERIES_TENANT_DEFAULT);
    if (strncmp(p, "tenants/", 8) == 0) {
        if ((p = s_segment(p + 8, out->tenant)) == NULL ||
            strcmp(out->tenant, SERIES_TENANT_DEFAULT) == 0)
            return -1;
    }
    if (strncmp(p, "devices/", 8) != 0 ||
        (p = s_segment(p + 8, out->device)) == NULL || *p == '\0')
        return -1;
    out->rest = p;
    return 0;
}

bool
topic_is_telemetry(const char *topic)
{
    struct topic_device d;
    return topic_parse(topic, &d) == 0 && strcmp(d.rest, "telemetry") == 0;
}

char *
topic_prefix(const char *tenant, const char *device, char *buf, size_t len)
{
    if (tenant == NULL || strcmp(tenant, SERIES_TENANT_DEFAULT) == 0)
        snprintf(buf, len, "devices/%s", device);
    else
        snprintf(buf, len, "tenants/%s/devices/%s", tenant, device);
    return buf;
}

void
topic_test(bool verbose)
{
    struct topic_device d;
    char buf[64];

    assert(topic_parse("devices/s1/telemetry", &d) == 0);
    TEST_STREQ(d.tenant, "default");
    TEST_STREQ(d.device, "s1");
    TEST_STREQ(d.rest, "telemetry");
    assert(topic_parse("tenants/acme/devices/s1/jobs/7", &d) == 0);
    TEST_STREQ(d.tenant, "acme");
    TEST_STREQ(d.device, "s1");
    TEST_STREQ(d.rest, "jobs/7");
    assert(topic_parse("tenants/default/devices/s1/telemetry", &d) == -1);
    assert(topic_parse("tenants//devices/s1/telemetry", &d) == -1);
    assert(topic_parse("tenants/acme/s1/telemetry", &d) == -1);
    assert(topic_parse("devices/s1", &d) == -1);
    assert(topic_parse("devices/s1/", &d) == -1);
    assert(topic_parse("devices//telemetry", &d) == -1);
    assert(topic_parse("other/s1/telemetry", &d) == -1);
    assert(topic_is_telemetry("devices/s1/telemetry"));
    assert(topic_is_telemetry("tenants/a/devices/s1/telemetry"));
    assert(!topic_is_telemetry("tenants/a/devices/s1/telemetry/x"));
    assert(!topic_is_telemetry("devices/s1/errors"));
    TEST_STREQ(topic_prefix("default", "s1", buf, sizeof buf), "devices/s1");
    TEST_STREQ(topic_prefix("acme", "s1", buf, sizeof buf),
               "tenants/acme/devices/s1");
    (void)verbose;
    TEST_OK("topic");
}
