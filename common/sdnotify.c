/*
 * sdnotify: readiness and watchdog for systemd (see sdnotify.h).
 */
#include "common/sdnotify.h"
#include "common/test.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int
sdnotify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t plen;
    int fd, rc;

    if (path == NULL || *path == '\0')
        return 0;
    plen = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof sa.sun_path)
        return -1;
    memcpy(sa.sun_path, path, plen);
    if (sa.sun_path[0] == '@')
        sa.sun_path[0] = '\0'; /* abstract namespace */
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) == -1)
        return -1;
    rc = (int)sendto(fd, state, strlen(state), MSG_NOSIGNAL,
                     (struct sockaddr *)&sa,
                     (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen));
    close(fd);
    return rc < 0 ? -1 : 0;
}

int64_t
sdnotify_watchdog_ns(void)
{
    const char *u = getenv("WATCHDOG_USEC");
    long long v;
    if (u == NULL)
        return 0;
    v = atoll(u); /* systemd writes a plain decimal; 0 on garbage is fine */
    return v > 0 ? v * 1000 : 0;
}

void
sdnotify_test(bool verbose)
{
    char dir[] = "/tmp/sdnotify.XXXXXX", path[64], buf[32];
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd;
    ssize_t n;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/notify", dir);
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    assert(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    setenv("NOTIFY_SOCKET", path, 1);
    assert(sdnotify_send("READY=1") == 0);
    n = recv(fd, buf, sizeof buf - 1, 0);
    assert(n == 7);
    buf[n] = '\0';
    TEST_STREQ(buf, "READY=1");
    unsetenv("NOTIFY_SOCKET");
    assert(sdnotify_send("READY=1") == 0);
    close(fd);
    unlink(path);
    rmdir(dir);
    (void)verbose;
    TEST_OK("sdnotify");
}
