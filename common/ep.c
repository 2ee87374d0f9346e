/*
 * ep: endpoint naming (see ep.h).
 */
#include "common/ep.h"
#include "common/test.h"

#include <stdio.h>
#include <string.h>

char *
ep_default(char *buf, size_t len, const char *rundir, const char *daemon,
           const char *what)
{
    if (strcmp(daemon, "ingestd") == 0)
        snprintf(buf, len, "ipc://%s/%s.%s", rundir, daemon, what);
    else
        snprintf(buf, len, "ipc://%s/%s.{lane}.%s", rundir, daemon, what);
    return buf;
}

char *
ep_expand(char *buf, size_t len, const char *tmpl, unsigned lane)
{
    const char *p = strstr(tmpl, "{lane}");
    int n;

    if (p == NULL)
        n = snprintf(buf, len, "%s", tmpl);
    else
        n = snprintf(buf, len, "%.*s%u%s", (int)(p - tmpl), tmpl, lane, p + 6);
    return n < 0 || (size_t)n >= len ? NULL : buf;
}

void
ep_test(bool verbose)
{
    char t[EP_MAX], b[EP_MAX];
    ep_default(t, sizeof t, "/run/sp", "aggd", "in");
    TEST_STREQ(t, "ipc:///run/sp/aggd.{lane}.in");
    TEST_STREQ(ep_expand(b, sizeof b, t, 3), "ipc:///run/sp/aggd.3.in");
    TEST_STREQ(ep_expand(b, sizeof b, "tcp://127.0.0.1:700{lane}", 1),
               "tcp://127.0.0.1:7001");
    assert(ep_expand(b, 5, t, 3) == NULL);
    ep_default(t, sizeof t, "/run/sp", "ingestd", "query");
    TEST_STREQ(t, "ipc:///run/sp/ingestd.query");
    (void)verbose;
    TEST_OK("ep");
}
