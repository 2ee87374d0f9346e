/*
 * daemon: shared start-up, signals, readiness (see daemon.h).
 */
#include "common/daemon.h"
#include "common/log.h"
#include "common/reload.h"
#include "common/sdnotify.h"
#include "common/sig.h"
#include "common/test.h"

#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <mosquitto.h>
#include <signal.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

/* Free heap kept for reuse instead of returned to the kernel. */
#define DAEMON_TRIM_KEEP (16 << 20)

static int s_sigfd = -1; /* made by daemon_setup before any thread */

int
daemon_setup(const char *ident, const struct cfg_opt *tab, size_t n,
             void *conf, int argc, char **argv, struct cfg_cli *cli)
{
    int rc;

    log_init(ident, LOG_LVL_INFO);
    /* Batches are decoded into fresh buffers of a few hundred KiB each
     * time; glibc's default would hand the heap top back to the kernel
     * after each one and fault the pages in again for the next (a quarter
     * of aggd's CPU in a profile). Keep up to DAEMON_TRIM_KEEP free. */
    mallopt(M_TRIM_THRESHOLD, DAEMON_TRIM_KEEP);
    mallopt(M_MMAP_THRESHOLD, DAEMON_TRIM_KEEP / 2);
    /* Block the signals before any thread exists (CZMQ and libzmq start
     * threads), or the kernel may hand SIGTERM to a thread that does not
     * block it and the default action kills the process. */
    if (s_sigfd == -1 && (s_sigfd = sig_init()) == -1) {
        fprintf(stderr, "%s: cannot set up signals: %s\n", ident, strerror(errno));
        return 1;
    }
    rc = cfg_load(tab, n, conf, ident, argc, argv, cli);
    if (rc == CFG_EXIT)
        return 0;
    if (rc == CFG_ERROR) {
        fprintf(stderr, "%s: bad configuration, exiting\n", ident);
        return CFG_EX_CONFIG;
    }
    /* log-level is checked with -v too (-v then wins over it). */
    if (reload_log_level(tab, n, conf) == -1) {
        fprintf(stderr, "%s: log-level must be debug, info, warning, err or "
                        "crit\n", ident);
        return CFG_EX_CONFIG;
    }
    if (cli->verbose > 0)
        log_set_level(LOG_LVL_DEBUG);
    if (cli->check)
        return -1; /* daemon_start makes the daemon's own checks */
    reload_set_source(tab, n, cli->file); /* for SIGHUP (reload.h) */
    /* CZMQ must not install its own handlers or print to stdout. */
    zsys_handler_set(NULL);
    zsys_init();
    zsys_set_logstream(NULL);
    return -1;
}

int
daemon_start(struct daemon_proc *p, int argc, char **argv)
{
    int rc = daemon_setup(p->ident, p->opts, p->nopts, p->conf, argc, argv,
                          &p->cli);

    if (rc < 0 && p->check && p->check(p->conf) == -1) {
        fprintf(stderr, "%s: bad configuration, exiting\n", p->ident);
        rc = CFG_EX_CONFIG;
    }
    /* -n prints "configuration OK" only after the daemon's own checks
     * too: a value only the daemon knows is wrong fails -n as it would
     * fail the start. */
    if (rc < 0 && p->cli.check) {
        cfg_check_ok(p->opts, p->nopts, p->conf);
        rc = 0;
    }
    if (rc >= 0) {
        cfg_free(p->opts, p->nopts, p->conf);
        return rc;
    }
    if (!(p->quiet && p->quiet(p->conf)))
        log_info("starting version %s", SP_VERSION);
    /* A peer or a child that goes away must not kill us with SIGPIPE;
     * libraries with global state are set up once, before any thread. */
    signal(SIGPIPE, SIG_IGN);
    if (p->libs & DAEMON_LIB_CURL)
        curl_global_init(CURL_GLOBAL_DEFAULT);
    if (p->libs & DAEMON_LIB_MOSQUITTO)
        mosquitto_lib_init();
    if ((p->libs & DAEMON_LIB_SODIUM) && sodium_init() < 0)
        fatalx("libsodium cannot initialise");
    return -1;
}

int
daemon_exit(struct daemon_proc *p, int rc)
{
    bool quiet = p->quiet && p->quiet(p->conf);

    if (rc == DAEMON_CANNOT_START)
        log_warnx("cannot start");
    if (p->libs & DAEMON_LIB_MOSQUITTO)
        mosquitto_lib_cleanup();
    if (p->libs & DAEMON_LIB_CURL)
        curl_global_cleanup();
    cfg_free(p->opts, p->nopts, p->conf);
    zsys_shutdown();
    if (rc != DAEMON_CANNOT_START && !quiet)
        log_info("shutdown complete");
    return rc == 0 || rc == CFG_EX_CONFIG ? rc : 1;
}

struct s_sigctx {
    daemon_event_fn *fn;
    void *arg;
    int stops;
};

static struct s_sigctx s_ctx;

static int
s_on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    struct s_sigctx *ctx = arg;
    int sig;

    while ((sig = sig_read(item->fd)) > 0) {
        if (sig == SIGHUP) {
            log_info("SIGHUP: reloading");
            ctx->fn(DAEMON_EV_RELOAD, ctx->arg);
            continue;
        }
        if (++ctx->stops > 1) {
            log_warnx("second signal: exiting now without draining");
            _exit(1);
        }
        log_info("%s: draining and stopping", strsignal(sig));
        sdnotify_send("STOPPING=1");
        ctx->fn(DAEMON_EV_STOP, ctx->arg);
        return -1;
    }
    return 0;
}

static int
s_on_watchdog(zloop_t *loop, int timer_id, void *arg)
{
    sdnotify_send("WATCHDOG=1");
    return 0;
}

int
daemon_signals(zloop_t *loop, daemon_event_fn *fn, void *arg)
{
    int fd = s_sigfd != -1 ? s_sigfd : sig_init();
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};
    int64_t wd = sdnotify_watchdog_ns();

    if (fd == -1)
        return -1;
    s_sigfd = -1; /* the caller closes it now */
    s_ctx.fn = fn;
    s_ctx.arg = arg;
    s_ctx.stops = 0;
    item.fd = fd;
    if (zloop_poller(loop, &item, s_on_signal, &s_ctx) == -1) {
        close(fd);
        return -1;
    }
    /* Ping at half the interval systemd asked for. */
    if (wd > 0)
        zloop_timer(loop, (size_t)(wd / 2000000), 0, s_on_watchdog, NULL);
    return fd;
}

void
daemon_ready(const char *summary)
{
    log_info("ready: %s", summary);
    sdnotify_send("READY=1");
}

int
daemon_mkdirs(const char *path)
{
    char buf[1024];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) == -1 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) == -1 && errno != EEXIST)
        return -1;
    return 0;
}

void
daemon_test(bool verbose)
{
    char dir[] = "/tmp/daemon_test.XXXXXX", sub[128];
    assert(mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    assert(daemon_mkdirs(sub) == 0);
    assert(daemon_mkdirs(sub) == 0);
    assert(access(sub, W_OK) == 0);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    rmdir(sub);
    snprintf(sub, sizeof sub, "%s/a", dir);
    rmdir(sub);
    assert(rmdir(dir) == 0);
    (void)verbose;
    TEST_OK("daemon");
}
