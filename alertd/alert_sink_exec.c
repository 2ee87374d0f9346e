/*
 * alert_sink_exec: run a command for a notification (see the header).
 */
#include "alertd/alert_sink_exec.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Most entries of the inherited environment passed on. */
#define S_ENV_MAX 512

/* Wait for pid until deadline (monotonic ns). Returns the wait status,
 * or -1 after killing it at the deadline. */
static int
s_wait(pid_t pid, int64_t deadline)
{
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r == -1 && errno != EINTR)
            return -1;
        if (clock_mono_ns() >= deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
                ;
            return -1;
        }
        usleep(5000);
    }
}

int
alert_sink_exec_spawn(char *const *argv, char *const *envp, const char *data,
                      size_t len, int64_t timeout, char *err, size_t errlen)
{
    int in[2], status, rc = -1;
    posix_spawn_file_actions_t fa;
    char *env[S_ENV_MAX + 16];
    size_t ne = 0;
    pid_t pid;
    int64_t deadline = clock_mono_ns() + timeout;

    for (char **e = environ; e && *e && ne < S_ENV_MAX; e++)
        env[ne++] = *e;
    for (char *const *e = envp; e && *e && ne < S_ENV_MAX + 15; e++)
        env[ne++] = *e;
    env[ne] = NULL;
    if (pipe2(in, O_CLOEXEC) == -1) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int e = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    close(in[0]);
    if (e != 0) {
        snprintf(err, errlen, "%s: %s", argv[0], strerror(e));
        close(in[1]);
        return -1;
    }
    /* Feed stdin without blocking past the deadline; a command that does
     * not read it is not an error. SIGPIPE is blocked in this thread
     * while writing, and one our write raised is consumed, so this works
     * whatever the process does with SIGPIPE. */
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    size_t off = 0;
    while (off < len) {
        struct pollfd pfd = {in[1], POLLOUT, 0};
        int64_t left = (deadline - clock_mono_ns()) / CLOCK_NS_PER_MS;
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            break;
        ssize_t w = write(in[1], data + off, len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(in[1]);
    sigset_t pending;
    if (!sigismember(&old_set, SIGPIPE) && sigpending(&pending) == 0 &&
        sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    status = s_wait(pid, deadline);
    if (status == -1)
        snprintf(err, errlen, "%s: killed after the timeout", argv[0]);
    else if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        rc = 0;
    else if (WIFEXITED(status))
        snprintf(err, errlen, "%s: exit status %d", argv[0],
                 WEXITSTATUS(status));
    else
        snprintf(err, errlen, "%s: killed by signal %d", argv[0],
                 WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    return rc;
}

int
alert_sink_exec_deliver(char *const *argv, size_t argc,
                        const struct alert_channel_env *env,
                        const struct alert_note *note, char *err,
                        size_t errlen)
{
    char *envp[6];
    int rc;

    envp[0] = xasprintf("ALERT_RULE=%s", note->rule);
    envp[1] = xasprintf("ALERT_SCOPE=%s", note->scope);
    envp[2] = xasprintf("ALERT_STATE=%s", note->state);
    envp[3] = xasprintf("ALERT_SEVERITY=%s", note->severity);
    envp[4] = xasprintf("ALERT_IDEMPOTENCY_KEY=%s", note->idem_key);
    envp[5] = NULL;
    rc = alert_sink_exec_spawn(argv, envp, note->body, strlen(note->body),
                               env->timeout, err, errlen);
    for (int i = 0; i < 5; i++)
        free(envp[i]);
    (void)argc;
    return rc;
}

void
alert_sink_exec_test(bool verbose)
{
    char dir[] = "/tmp/alert_sink_exec.XXXXXX", out[128], err[256];
    struct alert_channel_env env = {0};
    struct alert_note note = {"{\"rule\":\"hot\"}", "k1", "hot", "t{d=1}",
                              "firing", "critical", NULL};
    FILE *fp;

    assert(mkdtemp(dir));
    snprintf(out, sizeof out, "%s/out", dir);
    env.timeout = 5 * CLOCK_NS_PER_S;
    /* The body arrives on stdin, the variables in the environment, and
     * an argument with a blank stays one argument (no shell). */
    char script[] = "cat > \"$1\"; echo \"$ALERT_RULE $ALERT_STATE "
                    "$ALERT_SEVERITY $ALERT_IDEMPOTENCY_KEY $ALERT_SCOPE\" "
                    ">> \"$1\"; echo \"$2\" >> \"$1\"";
    char *argv[] = {"/bin/sh", "-c", script, "sh", out, "a b; rm -rf /", NULL};
    assert(alert_sink_exec_deliver(argv, 6, &env, &note, err, sizeof err) ==
           0);
    char buf[256] = {0};
    fp = fopen(out, "r");
    assert(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    TEST_STREQ(buf, "{\"rule\":\"hot\"}hot firing critical k1 t{d=1}\n"
                    "a b; rm -rf /\n");
    /* Failures: a non-zero exit, a missing program, a timeout. */
    char *fail[] = {"/bin/sh", "-c", "exit 3", NULL};
    assert(alert_sink_exec_deliver(fail, 3, &env, &note, err, sizeof err) ==
           -1);
    assert(strstr(err, "exit status 3"));
    char *missing[] = {"/nonexistent/page", NULL};
    assert(alert_sink_exec_deliver(missing, 1, &env, &note, err,
                                   sizeof err) == -1);
    assert(strstr(err, "No such file"));
    env.timeout = 200 * CLOCK_NS_PER_MS;
    char *slow[] = {"/bin/sleep", "10", NULL};
    int64_t t0 = clock_mono_ns();
    assert(alert_sink_exec_deliver(slow, 2, &env, &note, err, sizeof err) ==
           -1);
    assert(strstr(err, "timeout"));
    assert(clock_mono_ns() - t0 < 3 * CLOCK_NS_PER_S);
    /* A command that ignores stdin still succeeds, and a large body to
     * a command that exits at once does not kill us with SIGPIPE (the
     * selftest does not ignore it). */
    char *quiet[] = {"/bin/true", NULL};
    assert(alert_sink_exec_deliver(quiet, 1, &env, &note, err, sizeof err) ==
           0);
    char *big = xmalloc(1 << 20);
    memset(big, 'x', (1 << 20) - 1);
    big[(1 << 20) - 1] = '\0';
    struct alert_note bignote = note;
    bignote.body = big;
    env.timeout = 5 * CLOCK_NS_PER_S;
    for (int i = 0; i < 5; i++)
        assert(alert_sink_exec_deliver(quiet, 1, &env, &bignote, err,
                                       sizeof err) == 0);
    free(big);
    unlink(out);
    assert(rmdir(dir) == 0);
    if (verbose)
        printf("alert_sink_exec: last error: %s\n", err);
    TEST_OK("alert_sink_exec");
}
