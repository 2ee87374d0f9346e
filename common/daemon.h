/*
 * daemon: the start-up and shutdown steps every sensorpipe daemon shares,
 * so each main.c stays a thin list of calls: parse the configuration
 * (cfg), set up logging, turn signals into a loop event, report readiness
 * to systemd, and feed its watchdog from the loop.
 */
#ifndef SP_DAEMON_H
#define SP_DAEMON_H

#include "common/cfg.h"

#include <czmq.h>
#include <stdbool.h>

/* Parse the configuration and initialise logging (level from -v and the
 * "log-level" setting if the table has one). Returns -1 to run on (with
 * -n too: cli->check is set, and the caller makes its own checks, then
 * prints with cfg_check_ok), or the exit status to exit with now (0 after
 * --help, -V; 78 on bad config). */
int daemon_setup(const char *ident, const struct cfg_opt *tab, size_t n,
                 void *conf, int argc, char **argv, struct cfg_cli *cli);

/* The life of a daemon process around its server object. main() fills
 * one, calls daemon_start, then its own x_new/x_run/x_destroy, and returns
 * daemon_exit: the shared steps (configuration, logging, global library
 * state, "starting"/"shutdown complete", freeing the configuration) live
 * here once, the typed calls stay in main.c where they can be read. */
#define DAEMON_LIB_MOSQUITTO 1u /* mosquitto_lib_init / _cleanup */
#define DAEMON_LIB_CURL 2u      /* curl_global_init / _cleanup */
#define DAEMON_LIB_SODIUM 4u    /* sodium_init */
#define DAEMON_CANNOT_START (-1) /* daemon_exit: x_new failed */
struct daemon_proc {
    const char *ident;
    const struct cfg_opt *opts;
    size_t nopts;
    void *conf;                         /* zeroed struct the table fills */
    unsigned libs;                      /* DAEMON_LIB_* */
    int (*check)(const void *conf);     /* optional: -1 = bad config (78) */
    bool (*quiet)(const void *conf);    /* optional: no start/stop lines */
    struct cfg_cli cli;                 /* filled by daemon_start */
};

/* daemon_setup, the check, then (unless quiet) "starting version", SIGPIPE
 * ignored, and the global state of the libraries asked for. Returns -1 to
 * go on, or the exit status to return from main now (the configuration is
 * freed then). */
int daemon_start(struct daemon_proc *p, int argc, char **argv);

/* Undo daemon_start and turn the server's result into an exit status:
 * DAEMON_CANNOT_START logs "cannot start" and gives 1, CFG_EX_CONFIG is
 * kept, any other non-zero gives 1. */
int daemon_exit(struct daemon_proc *p, int rc);

/* Signal events delivered to the daemon from its loop. */
enum daemon_event {
    DAEMON_EV_STOP,  /* SIGTERM or SIGINT: drain and stop */
    DAEMON_EV_RELOAD /* SIGHUP: reload configuration */
};
typedef void(daemon_event_fn)(enum daemon_event ev, void *arg);

/* Block signals, create the signalfd and register it with loop, plus a
 * watchdog timer when $WATCHDOG_USEC asks for one. On SIGTERM/SIGINT the
 * handler is called and the loop stops; a second one exits at once.
 * Returns the signalfd (close it at exit) or -1. */
int daemon_signals(zloop_t *loop, daemon_event_fn *fn, void *arg);

/* Log "ready" with a summary and send READY=1 to systemd. */
void daemon_ready(const char *summary);

/* Create the directory and its parents (mkdir -p). Returns 0 or -1. */
int daemon_mkdirs(const char *path);

/* Selftest. */
void daemon_test(bool verbose);

#endif
