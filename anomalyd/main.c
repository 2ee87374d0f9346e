/*
 * anomalyd: main. Configuration, then the server object (anomalyd.c).
 */
#include "anomalyd/anomalyd.h"
#include "common/daemon.h"
#include "common/log.h"

#include <stddef.h>

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct anomalyd_conf, rundir), "./var/run", 0,
     0, CFG_IMMUTABLE, "directory of the ipc:// endpoints"},
    {"lane", CFG_INT, offsetof(struct anomalyd_conf, lane), "0", 0, 1023,
     CFG_IMMUTABLE, "lane served by this process"},
    {"in", CFG_STR, offsetof(struct anomalyd_conf, in), "", 0, 0, CFG_IMMUTABLE,
     "PULL endpoint for readings ({lane} expands)"},
    {"query", CFG_STR, offsetof(struct anomalyd_conf, query), "", 0, 0,
     CFG_IMMUTABLE, "ROUTER endpoint for queries"},
    {"pub", CFG_STR, offsetof(struct anomalyd_conf, pub), "", 0, 0,
     CFG_IMMUTABLE, "PUB endpoint for live anomalies"},
    {"down", CFG_STR, offsetof(struct anomalyd_conf, down), "", 0, 0,
     CFG_IMMUTABLE, "alertd PUSH endpoint, or none"},
    {"method", CFG_STR, offsetof(struct anomalyd_conf, method), "ensemble", 0,
     0, CFG_IMMUTABLE,
     "detector: zscore mad ewma seasonal weekly cusum hst vol range level "
     "ensemble ensemble-all"},
    {"window", CFG_INT, offsetof(struct anomalyd_conf, window), "200", 3, 1024,
     CFG_IMMUTABLE, "rolling z-score window, readings"},
    {"threshold", CFG_DOUBLE, offsetof(struct anomalyd_conf, threshold), "3", 0,
     1e6, 0, "|z| of an anomaly (z-score method, query default)"},
    {"min-score", CFG_DOUBLE, offsetof(struct anomalyd_conf, min_score), "0.5",
     0, 1, 0, "score from which a reading is an anomaly event"},
    {"keep", CFG_INT, offsetof(struct anomalyd_conf, keep), "256", 1, 65536,
     CFG_IMMUTABLE, "scored readings kept per series for queries"},
    {"hwm", CFG_INT, offsetof(struct anomalyd_conf, hwm), "1000", 1, 1000000,
     CFG_IMMUTABLE, "queue limit in batches per socket"},
    {"drain", CFG_DURATION, offsetof(struct anomalyd_conf, drain), "2s", 0, 600,
     0, "time allowed to drain at stop"},
    {"forecast-every", CFG_DURATION,
     offsetof(struct anomalyd_conf, forecast_every), "5m", 0, 30 * 86400,
     CFG_IMMUTABLE, "data time between forecast events of a series, 0 = none"},
    {"forecast-horizon", CFG_DURATION,
     offsetof(struct anomalyd_conf, forecast_horizon), "24h", 60, 30 * 86400,
     CFG_IMMUTABLE, "how far a forecast event looks ahead"},
    {"stdin", CFG_BOOL, offsetof(struct anomalyd_conf, use_stdin), "false", 0,
     0, 0, "filter mode: read readings (JSON lines or CSV) on stdin"},
    {"stdout", CFG_BOOL, offsetof(struct anomalyd_conf, use_stdout), "false", 0,
     0, 0, "filter mode: write one scored line per reading on stdout"},
    {"format", CFG_STR, offsetof(struct anomalyd_conf, format), "json", 0, 0, 0,
     "filter output: json or csv"},
    {"alarm-column", CFG_BOOL, offsetof(struct anomalyd_conf, alarm_column),
     "false", 0, 0, 0, "filter CSV output: add the novelty alarm column (0/1)"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

static int
s_check(const void *conf)
{
    return anomalyd_conf_check(conf);
}

/* Filter mode keeps stderr for errors only. */
static bool
s_quiet(const void *conf)
{
    return ((const struct anomalyd_conf *)conf)->use_stdin;
}

int
main(int argc, char **argv)
{
    struct anomalyd_conf conf = {0};
    struct daemon_proc p = {
        .ident = "anomalyd", .opts = s_opts, .nopts = S_NOPTS, .conf = &conf,
        .check = s_check, .quiet = s_quiet,
    };
    anomalyd_t *anomalyd;
    int rc = daemon_start(&p, argc, argv);

    if (rc >= 0)
        return rc;
    if ((anomalyd = anomalyd_new(&conf)) == NULL)
        return daemon_exit(&p, DAEMON_CANNOT_START);
    anomalyd_set_reload(anomalyd, s_opts, S_NOPTS, p.cli.file);
    rc = anomalyd_run(anomalyd);
    anomalyd_destroy(&anomalyd);
    return daemon_exit(&p, rc);
}
