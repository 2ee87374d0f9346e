/*
 * sig: signalfd plumbing (see sig.h).
 */
#include "common/sig.h"
#include "common/test.h"

#include <czmq.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int
sig_init(void)
{
    sigset_t set;

    zsys_handler_set(NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    if (sigprocmask(SIG_BLOCK, &set, NULL) == -1)
        return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int
sig_read(int fd)
{
    struct signalfd_siginfo si;
    if (read(fd, &si, sizeof si) != (ssize_t)sizeof si)
        return 0;
    return (int)si.ssi_signo;
}

void
sig_test(bool verbose)
{
    int fd = sig_init();
    assert(fd >= 0);
    assert(sig_read(fd) == 0);
    kill(getpid(), SIGHUP);
    assert(sig_read(fd) == SIGHUP);
    close(fd);
    (void)verbose;
    TEST_OK("sig");
}
