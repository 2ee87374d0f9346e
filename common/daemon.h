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
 * "log-level" setting if the table has one). Returns -1 to run on, or the
 * exit status to exit with now (0 after --help, -V, -n; 78 on bad config). */
int daemon_setup(const char *ident, const struct cfg_opt *tab, size_t n,
                 void *conf, int argc, char **argv, struct cfg_cli *cli);

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
