/*
 * alertd: main. Configuration, then the server object (alertd.c).
 */
#include "alertd/alertd.h"
#include "common/daemon.h"
#include "common/log.h"

#include <stddef.h>
#include <string.h>

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct alertd_conf, rundir), "./var/run", 0,
     0, CFG_IMMUTABLE, "directory of the ipc:// endpoints"},
    {"lane", CFG_INT, offsetof(struct alertd_conf, lane), "0", 0, 1023,
     CFG_IMMUTABLE, "lane served by this process"},
    {"in", CFG_STR, offsetof(struct alertd_conf, in), "", 0, 0, CFG_IMMUTABLE,
     "PULL endpoint for readings and anomalies ({lane} expands)"},
    {"query", CFG_STR, offsetof(struct alertd_conf, query), "", 0, 0,
     CFG_IMMUTABLE, "ROUTER endpoint for queries"},
    {"pub", CFG_STR, offsetof(struct alertd_conf, pub), "", 0, 0,
     CFG_IMMUTABLE, "PUB endpoint for alert events"},
    {"rules", CFG_STR, offsetof(struct alertd_conf, rules), "", 0, 0, 0,
     "rules file, one 'name: condition' per line (SIGHUP reloads)"},
    {"hwm", CFG_INT, offsetof(struct alertd_conf, hwm), "1000", 1, 1000000,
     CFG_IMMUTABLE, "queue limit in batches per socket"},
    {"window-points", CFG_INT, offsetof(struct alertd_conf, window_points),
     "10000", 1, 10000000, CFG_IMMUTABLE,
     "most points kept per series for window functions"},
    {"max-series", CFG_INT, offsetof(struct alertd_conf, max_series),
     "1000000", 1, 100000000, CFG_IMMUTABLE, "most series tracked"},
    {"drain", CFG_DURATION, offsetof(struct alertd_conf, drain), "2s", 0, 600,
     0, "time allowed to drain at stop"},
    {"db", CFG_STR, offsetof(struct alertd_conf, db), "", 0, 0, CFG_IMMUTABLE,
     "SQLite file of alerts, history, silences, outbox (\"\" = none)"},
    {"webhook-secret", CFG_STR, offsetof(struct alertd_conf, webhook_secret),
     "", 0, 0, CFG_SECRET | CFG_IMMUTABLE,
     "HMAC-SHA256 key signing webhook bodies"},
    {"mqtt-host", CFG_STR, offsetof(struct alertd_conf, mqtt_host),
     "127.0.0.1", 0, 0, CFG_IMMUTABLE, "broker of mqtt channels"},
    {"mqtt-port", CFG_INT, offsetof(struct alertd_conf, mqtt_port), "1883", 1,
     65535, CFG_IMMUTABLE, "port of that broker"},
    {"sendmail", CFG_STR, offsetof(struct alertd_conf, sendmail),
     "/usr/sbin/sendmail", 0, 0, CFG_IMMUTABLE,
     "sendmail(8) program of email channels"},
    {"notify-timeout", CFG_DURATION,
     offsetof(struct alertd_conf, notify_timeout), "10s", 0.001, 600,
     CFG_IMMUTABLE, "time allowed per delivery attempt"},
    {"retry-base", CFG_DURATION, offsetof(struct alertd_conf, retry_base),
     "1s", 0.001, 3600, CFG_IMMUTABLE, "first retry delay, doubling"},
    {"retry-max", CFG_DURATION, offsetof(struct alertd_conf, retry_max), "5m",
     0.001, 86400, CFG_IMMUTABLE, "longest retry delay"},
    {"max-attempts", CFG_INT, offsetof(struct alertd_conf, max_attempts),
     "20", 1, 1000, CFG_IMMUTABLE, "delivery attempts before giving up"},
    {"ctl", CFG_STR, offsetof(struct alertd_conf, ctl), "", 0, 0, 0,
     "client: send this JSON query to the running alertd, print the reply"},
    {"stdin", CFG_BOOL, offsetof(struct alertd_conf, use_stdin), "false", 0, 0,
     0, "filter mode: read JSON-line readings on stdin"},
    {"stdout", CFG_BOOL, offsetof(struct alertd_conf, use_stdout), "false", 0,
     0, 0, "filter mode: write JSON-line alert events on stdout"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

static int
s_check(const void *conf)
{
    return alertd_conf_check(conf);
}

/* A --ctl command prints its answer and nothing else. */
static bool
s_quiet(const void *conf)
{
    const char *ctl = ((const struct alertd_conf *)conf)->ctl;
    return ctl && *ctl;
}

int
main(int argc, char **argv)
{
    struct alertd_conf conf = {0};
    struct daemon_proc p = {
        .ident = "alertd", .opts = s_opts, .nopts = S_NOPTS, .conf = &conf,
        .libs = DAEMON_LIB_CURL | DAEMON_LIB_MOSQUITTO | DAEMON_LIB_SODIUM,
        .check = s_check, .quiet = s_quiet,
    };
    alertd_t *alertd;
    int rc = daemon_start(&p, argc, argv);

    if (rc >= 0)
        return rc;
    if (conf.ctl && *conf.ctl) {
        rc = alertd_ctl(&conf, conf.ctl);
        daemon_exit(&p, 0);
        return rc;
    }
    if ((alertd = alertd_new(&conf)) == NULL) {
        rc = DAEMON_CANNOT_START;
    } else {
        rc = alertd_run(alertd);
        alertd_destroy(&alertd);
    }
    if (conf.webhook_secret)
        explicit_bzero(conf.webhook_secret, strlen(conf.webhook_secret));
    return daemon_exit(&p, rc);
}
