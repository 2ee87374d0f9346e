/*
 * aggd: main. Configuration, then the server object (aggd.c).
 */
#include "aggd/aggd.h"
#include "aggd/agg_export.h"
#include "common/daemon.h"
#include "common/log.h"

#include <stddef.h>

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct aggd_conf, rundir), "./var/run", 0, 0,
     CFG_IMMUTABLE, "directory of the ipc:// endpoints"},
    {"lane", CFG_INT, offsetof(struct aggd_conf, lane), "0", 0, 1023,
     CFG_IMMUTABLE, "lane served by this process"},
    {"in", CFG_STR, offsetof(struct aggd_conf, in), "", 0, 0, CFG_IMMUTABLE,
     "PULL endpoint for readings ({lane} expands)"},
    {"query", CFG_STR, offsetof(struct aggd_conf, query), "", 0, 0,
     CFG_IMMUTABLE, "ROUTER endpoint for queries"},
    {"pub", CFG_STR, offsetof(struct aggd_conf, pub), "", 0, 0, CFG_IMMUTABLE,
     "PUB endpoint for live readings"},
    {"down", CFG_STR, offsetof(struct aggd_conf, down), "", 0, 0,
     CFG_IMMUTABLE, "anomalyd PUSH endpoint, or none"},
    {"confirm", CFG_STR, offsetof(struct aggd_conf, confirm), "", 0, 0,
     CFG_IMMUTABLE, "ingestd confirm PUSH endpoint, or none"},
    {"data", CFG_STR, offsetof(struct aggd_conf, data), "./var/data/aggd.{lane}",
     0, 0, CFG_IMMUTABLE, "data directory ({lane} expands)"},
    {"checkpoint-mb", CFG_INT, offsetof(struct aggd_conf, ckpt_mb), "64", 1,
     65536, 0, "seal heads and trim the WAL after this many MiB of it"},
    {"checkpoint-every", CFG_DURATION, offsetof(struct aggd_conf, ckpt_every),
     "5m", 1, 86400, 0, "checkpoint at least this often when data came in"},
    {"retention-raw", CFG_INT, offsetof(struct aggd_conf, keep_raw), "0", 0,
     1000000, 0, "days raw points are kept (0 = forever)"},
    {"retention-minute", CFG_INT, offsetof(struct aggd_conf, keep_minute), "0",
     0, 1000000, 0, "days minute rollups are kept (0 = forever)"},
    {"retention-hour", CFG_INT, offsetof(struct aggd_conf, keep_hour), "0", 0,
     1000000, 0, "days hour rollups are kept (0 = forever)"},
    {"retention-day", CFG_INT, offsetof(struct aggd_conf, keep_day), "0", 0,
     1000000, 0, "days day rollups are kept (0 = forever)"},
    {"compact-every", CFG_DURATION, offsetof(struct aggd_conf, compact_every),
     "1h", 1, 86400, 0, "how often retention drops expired chunks and rollups"},
    {"export-url", CFG_STR, offsetof(struct aggd_conf, export_url), "", 0, 0,
     CFG_IMMUTABLE, "export readings to this engine URL (InfluxDB /write?db=.. "
     "or ClickHouse /?query=INSERT..FORMAT JSONEachRow), \"\" = none"},
    {"export-rollup-url", CFG_STR, offsetof(struct aggd_conf, export_rollup_url),
     "", 0, 0, CFG_IMMUTABLE, "export closed minute rollups to this engine URL "
     "(the same InfluxDB URL, or a ClickHouse INSERT into a rollup table), "
     "\"\" = none"},
    {"export-rollup-idle", CFG_DURATION, offsetof(struct aggd_conf, export_rollup_idle),
     "10s", 0.1, 3600, CFG_IMMUTABLE, "a WAL quiet this long closes the minutes "
     "that ended a minute ago (wall clock) for the rollup export"},
    {"export-format", CFG_STR, offsetof(struct aggd_conf, export_format),
     "influx", 0, 0, CFG_IMMUTABLE, "body of the export: influx or clickhouse"},
    {"disk-floor-mb", CFG_INT, offsetof(struct aggd_conf, disk_floor_mb), "16",
     0, 1000000, 0, "stop taking readings while the data disk has less free "
     "space (MiB; 0 = never)"},
    {"hwm", CFG_INT, offsetof(struct aggd_conf, hwm), "1000", 1, 1000000,
     CFG_IMMUTABLE, "queue limit in batches per socket"},
    {"query-threads", CFG_INT, offsetof(struct aggd_conf, query_threads), "2",
     1, 2, CFG_IMMUTABLE, "threads a large aggregation uses: 2 = the loop and "
     "a worker, 1 = the loop alone"},
    {"drain", CFG_DURATION, offsetof(struct aggd_conf, drain), "2s", 0, 600, 0,
     "time allowed to drain at stop"},
    {"stdin", CFG_BOOL, offsetof(struct aggd_conf, use_stdin), "false", 0, 0,
     0, "filter mode: read JSON-line readings on stdin"},
    {"stdout", CFG_BOOL, offsetof(struct aggd_conf, use_stdout), "false", 0, 0,
     0, "filter mode: print per-series stats on stdout at end of input"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

static int
s_check(const void *arg)
{
    const struct aggd_conf *c = arg;

    if (agg_export_format(c->export_format) == -1) {
        char q[CFG_QUOTE_BUF];
        log_warnx("export-format must be influx or clickhouse, not '%s'",
                  cfg_quote(c->export_format, q, sizeof q));
        return -1;
    }
    return 0;
}

int
main(int argc, char **argv)
{
    struct aggd_conf conf = {0};
    struct daemon_proc p = {
        .ident = "aggd", .opts = s_opts, .nopts = S_NOPTS, .conf = &conf,
        .check = s_check, .libs = DAEMON_LIB_CURL,
    };
    aggd_t *aggd;
    int rc = daemon_start(&p, argc, argv);

    if (rc >= 0)
        return rc;
    if ((aggd = aggd_new(&conf)) == NULL)
        return daemon_exit(&p, DAEMON_CANNOT_START);
    rc = aggd_run(aggd);
    aggd_destroy(&aggd);
    return daemon_exit(&p, rc);
}
