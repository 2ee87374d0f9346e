/*
 * fsyncer: fdatasync(2) on a thread of its own (see fsyncer.h).
 */
#include "common/fsyncer.h"
#include "common/test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

static void
s_actor(zsock_t *pipe, void *arg)
{
    sigset_t all;

    /* The thread may start before the daemon blocks its signals; it must
     * never be the one SIGTERM is delivered to. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    (void)arg;
    zsock_signal(pipe, 0);
    for (;;) {
        char *cmd = NULL;
        int fd = -1;
        uint64_t pos = 0;
        if (zsock_recv(pipe, "si8", &cmd, &fd, &pos) == -1)
            break;
        bool term = cmd == NULL || strcmp(cmd, "$TERM") == 0;
        bool full = cmd && strcmp(cmd, "FSYNC") == 0;
        zstr_free(&cmd);
        if (term)
            break;
        int err = (full ? fsync(fd) : fdatasync(fd)) == 0 ? 0 : errno;
        zsock_send(pipe, "i8", err, pos);
    }
}

zactor_t *
fsyncer_new(void)
{
    return zactor_new(s_actor, NULL);
}

void
fsyncer_start(zactor_t *self, int fd, uint64_t pos)
{
    zsock_send(self, "si8", "SYNC", fd, pos);
}

void
fsyncer_start_full(zactor_t *self, int fd, uint64_t pos)
{
    zsock_send(self, "si8", "FSYNC", fd, pos);
}

int
fsyncer_done(zactor_t *self, uint64_t *pos)
{
    int err = 0;

    if (zsock_recv(self, "i8", &err, pos) == -1)
        return -1;
    return err;
}

void
fsyncer_test(bool verbose)
{
    char path[] = "/tmp/sp-fsyncer.XXXXXX";
    int fd = mkstemp(path);
    uint64_t pos = 0;

    (void)verbose;
    printf(" * fsyncer: ");
    assert(fd != -1);
    unlink(path);
    zactor_t *s = fsyncer_new();
    assert(s);
    assert(write(fd, "x", 1) == 1);
    fsyncer_start(s, fd, 7);
    assert(fsyncer_done(s, &pos) == 0);
    assert(pos == 7);
    /* A descriptor fdatasync refuses: the errno comes back, and the
     * position with it. */
    fsyncer_start(s, -1, 9);
    assert(fsyncer_done(s, &pos) == EBADF);
    assert(pos == 9);
    zactor_destroy(&s);
    close(fd);
    printf("OK\n");
}
