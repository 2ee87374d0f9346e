/*
 * ep: endpoint naming (see ep.h).
 */
#include "common/ep.h"
#include "common/log.h"
#include "common/test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
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
ep_limit(zsock_t *s)
{
    int type = zsock_type(s);

    zsock_set_maxmsgsize(
        s, type == ZMQ_PUB || type == ZMQ_XPUB ? EP_SUB_MAX : (int)EP_MSG_MAX);
}

static int
s_never(zloop_t *loop, zsock_t *sock, void *arg)
{
    (void)loop;
    (void)arg;
    zmsg_t *m = zmsg_recv(sock); /* not on a PUB; drop what comes */
    zmsg_destroy(&m);
    return 0;
}

int
ep_watch_pub(zloop_t *loop, zsock_t *pub)
{
    return zloop_reader(loop, pub, s_never, NULL);
}

/* The port of a tcp:// endpoint is in range: digits, 1..65535, or for a
 * bind also 0 or "*". Other transports are libzmq's to check. */
static bool
s_port_ok(const char *ep, bool bind)
{
    const char *p;
    long port = 0;

    if (strncmp(ep, "tcp://", 6) != 0)
        return true;
    if ((p = strrchr(ep + 6, ':')) == NULL)
        return false;
    p++;
    if (bind && strcmp(p, "*") == 0)
        return true;
    if (*p == '\0' || strspn(p, "0123456789") != strlen(p) || strlen(p) > 5)
        return false;
    port = strtol(p, NULL, 10);
    return port <= 65535 && (port > 0 || bind);
}

int
ep_bind(zsock_t *s, const char *ep)
{
    if (!s_port_ok(ep, true)) {
        errno = EINVAL;
        return -1;
    }
    return zsock_bind(s, "%s", ep) == -1 ? -1 : 0;
}

int
ep_connect(zsock_t *s, const char *ep)
{
    if (!s_port_ok(ep, false)) {
        errno = EINVAL;
        return -1;
    }
    return zsock_connect(s, "%s", ep);
}

zsock_t *
ep_socket(int type, const char *tmpl, const char *rundir, const char *daemon,
          const char *what, unsigned lane, bool bind, int64_t hwm)
{
    char t[EP_MAX], ep[EP_MAX];
    zsock_t *s;

    if (tmpl == NULL || *tmpl == '\0')
        tmpl = ep_default(t, sizeof t, rundir, daemon, what);
    if (ep_expand(ep, sizeof ep, tmpl, lane) == NULL) {
        log_warnx("%s: endpoint template too long: %s", daemon, tmpl);
        return NULL;
    }
    s = zsock_new(type);
    zsock_set_sndhwm(s, (int)hwm);
    zsock_set_rcvhwm(s, (int)hwm);
    zsock_set_linger(s, 1000);
    if (bind)
        ep_limit(s);
    if ((bind ? ep_bind(s, ep) : ep_connect(s, ep)) == -1) {
        log_warn("%s: cannot %s %s", daemon, bind ? "bind" : "connect", ep);
        zsock_destroy(&s);
        return NULL;
    }
    log_debug("%s: %s %s", daemon, bind ? "bound" : "connected", ep);
    return s;
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
    /* A tcp:// port out of range is refused at once (libzmq connected
     * :99999 to port 34463). */
    zsock_t *sx = zsock_new(ZMQ_PUSH);
    static const char *badport[] = {"tcp://127.0.0.1:99999", "tcp://127.0.0.1:65536",
                                    "tcp://127.0.0.1:", "tcp://127.0.0.1:-1",
                                    "tcp://127.0.0.1:0", "tcp://127.0.0.1:x1",
                                    "tcp://127.0.0.1", "tcp://127.0.0.1:*"};
    for (size_t i = 0; i < sizeof badport / sizeof badport[0]; i++) {
        errno = 0;
        assert(ep_connect(sx, badport[i]) == -1 && errno == EINVAL);
    }
    assert(ep_bind(sx, "tcp://127.0.0.1:99999") == -1 && errno == EINVAL);
    assert(ep_connect(sx, "tcp://127.0.0.1:65535") == 0);
    assert(ep_connect(sx, "tcp://[::1]:7001") == 0);
    assert(ep_bind(sx, "tcp://127.0.0.1:*") == 0);
    zsock_destroy(&sx);
    zsock_t *sa = ep_socket(ZMQ_PULL, "inproc://ep_test.{lane}", "", "t", "in",
                           2, true, 10);
    zsock_t *sb = ep_socket(ZMQ_PUSH, "inproc://ep_test.2", "", "t", "in", 0,
                           false, 10);
    assert(sa && sb);
    /* A bound socket refuses what no daemon sends: a peer's frame that
     * declares 2^63 bytes must not become libzmq's malloc. */
    assert(zsock_maxmsgsize(sa) == EP_MSG_MAX && zsock_maxmsgsize(sb) == -1);
    zsock_t *pub =
        ep_socket(ZMQ_PUB, "inproc://ep_test.pub", "", "t", "pub", 0, true, 10);
    assert(pub && zsock_maxmsgsize(pub) == EP_SUB_MAX);
    zsock_destroy(&pub);
    zstr_send(sb, "x");
    char *got = zstr_recv(sa);
    TEST_STREQ(got, "x");
    zstr_free(&got);
    zsock_destroy(&sb);
    zsock_destroy(&sa);
    (void)verbose;
    TEST_OK("ep");
}
