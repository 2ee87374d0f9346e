/*
 * aggd: the time-series store daemon of one lane. It pulls readings
 * batches from ingestd, applies them to the store idempotently on
 * (series, timestamp), forwards them to anomalyd (PUSH, with
 * backpressure: while anomalyd's queue is full aggd stops reading), and
 * publishes them for live views. It answers queries on a ROUTER socket.
 *
 * Durability: every applied batch goes to the write-ahead log (agg_wal)
 * first; after each group commit (fsync off the loop thread) and once a
 * second, aggd PUSHes a confirm batch with the highest contiguous seq per
 * (producer, lane) it made durable (agg_confirm) to ingestd. At start it
 * replays the log, so a kill -9 loses nothing it confirmed.
 */
#ifndef SP_AGGD_H
#define SP_AGGD_H

#include <stdbool.h>
#include <stdint.h>

struct aggd_conf {
    char *rundir;    /* directory of the default ipc:// endpoints */
    int64_t lane;    /* this process' lane */
    char *in;        /* PULL endpoint template (bind); "" = default */
    char *query;     /* ROUTER endpoint template (bind); "" = default */
    char *pub;       /* PUB endpoint template (bind); "" = default */
    char *down;      /* PUSH endpoint template (connect) to anomalyd;
                        "" = default, "none" = do not forward */
    char *confirm;   /* PUSH endpoint (connect) for confirmations to
                        ingestd; "" = ipc://RUNDIR/ingestd.confirm,
                        "none" = do not confirm */
    char *data;      /* data directory ({lane} expands) */
    int64_t ckpt_mb; /* checkpoint after this many MiB of WAL */
    int64_t ckpt_every; /* ns between checkpoints when anything changed */
    int64_t keep_raw;    /* days raw chunks are kept; 0 = forever */
    int64_t keep_minute; /* days minute rollups are kept; 0 = forever */
    int64_t keep_hour;   /* days hour rollups are kept; 0 = forever */
    int64_t keep_day;    /* days day rollups are kept; 0 = forever */
    int64_t compact_every; /* ns between retention passes */
    char *export_url;   /* engine insert URL for agg_export, "" = none */
    char *export_format; /* "influx" or "clickhouse" */
    char *export_rollup_url; /* engine URL for minute rollups, "" = none */
    int64_t export_rollup_idle; /* ns of quiet WAL that closes old minutes */
    int64_t disk_floor_mb; /* stop taking readings below this much free
                              space on the data disk; 0 = never */
    int64_t hwm;     /* queue limit in batches on every socket */
    int64_t query_threads; /* 2: large answers share a worker thread */
    int64_t drain;   /* ns allowed for draining at stop */
    bool use_stdin;  /* filter mode: JSON lines in */
    bool use_stdout; /* filter mode: stats out */
};

typedef struct aggd aggd_t;

/* Bind and connect every socket. Returns NULL (logged) on failure. */
aggd_t *aggd_new(const struct aggd_conf *conf);
/* Run the loop until SIGTERM/SIGINT. Returns 0 on a clean stop. */
int aggd_run(aggd_t *self);
/* Destroy; NULL-safe; sets *self_p NULL. */
void aggd_destroy(aggd_t **self_p);

/* Selftest. */
void aggd_test(bool verbose);

#endif
