/*
 * alertd: main. Configuration, then the server object (alertd.c).
 */
#include "alertd/alertd.h"
#include "common/daemon.h"
#include "common/log.h"

#include <stddef.h>

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
    {"stdin", CFG_BOOL, offsetof(struct alertd_conf, use_stdin), "false", 0, 0,
     0, "filter mode: read JSON-line readings on stdin"},
    {"stdout", CFG_BOOL, offsetof(struct alertd_conf, use_stdout), "false", 0,
     0, 0, "filter mode: write JSON-line alert events on stdout"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

int
main(int argc, char **argv)
{
    struct alertd_conf conf = {0};
    struct cfg_cli cli;
    alertd_t *alertd;
    int rc = daemon_setup("alertd", s_opts, S_NOPTS, &conf, argc, argv, &cli);

    if (rc >= 0) {
        cfg_free(s_opts, S_NOPTS, &conf);
        return rc;
    }
    if (alertd_conf_check(&conf) == -1) {
        cfg_free(s_opts, S_NOPTS, &conf);
        fprintf(stderr, "alertd: bad configuration, exiting\n");
        return CFG_EX_CONFIG;
    }
    log_info("starting version %s", SP_VERSION);
    if ((alertd = alertd_new(&conf)) == NULL) {
        cfg_free(s_opts, S_NOPTS, &conf);
        log_warnx("cannot start");
        return 1;
    }
    rc = alertd_run(alertd);
    alertd_destroy(&alertd);
    cfg_free(s_opts, S_NOPTS, &conf);
    zsys_shutdown();
    log_info("shutdown complete");
    return rc == 0 ? 0 : 1;
}
