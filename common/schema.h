/*
 * schema: the one wire contract between sensorpipe daemons.
 *
 * Every message on a PUSH/PULL or PUB/SUB hop is two frames:
 *   1. a short topic frame naming the type ("readings", "anomalies", ...),
 *      so SUB sockets can filter by prefix;
 *   2. one msgpack map: the envelope {type, v, producer, lane, seq, ts}
 *      plus the body under a key per type (see msg.h).
 * Queries (DEALER -> ROUTER) are [request id][msgpack map] with the reply
 * [request id][msgpack map {status, body}] (PROTOCOL.md).
 *
 * COMPATIBILITY NOTES
 * - Unknown map keys are ignored by decoders, so a field may be added
 *   without a version bump.
 * - Any change to the meaning or type of an existing field bumps
 *   MSG_VERSION; decoders reject a version they do not know and count it.
 * - Version 2: readings travel as one binary "points" field (20 bytes a
 *   reading) instead of an "items" array; decoders still read version 1
 *   (spools, WALs and tools that write the older form).
 */
#ifndef SP_SCHEMA_H
#define SP_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MSG_VERSION 2     /* written */
#define MSG_VERSION_MIN 1 /* oldest still read */

enum msg_type {
    MSG_TYPE_NONE = 0,
    MSG_TYPE_READINGS = 1,  /* ingestd -> aggd -> anomalyd -> alertd; PUB */
    MSG_TYPE_ANOMALIES = 2, /* anomalyd -> alertd; PUB */
    MSG_TYPE_ALERTS = 3,    /* alertd PUB */
    MSG_TYPE_CONFIRM = 4,   /* aggd -> ingestd: highest durable seq */
    MSG_TYPE_FORECASTS = 5, /* anomalyd -> alertd; PUB */
    MSG_TYPE_MAX
};

/* The timestamps a batch may carry (readings, anomalies, alerts, every
 * point of a forecast): from the epoch to MSG_TS_MAX, four years short
 * of where int64 nanoseconds end (2262), so the daemons add days,
 * windows and horizons to them without overflow. ingestd accepts
 * nothing outside (before 1970, or more than a year ahead); a decoder
 * refuses a batch holding one (MSG_EFIELD), whoever sent it. */
#define MSG_TS_MAX (INT64_MAX - 4LL * 366 * 86400 * 1000000000LL)

/* The envelope every batch carries (DESIGN.md "Messages"). */
struct msg_envelope {
    int type;             /* enum msg_type */
    int version;          /* MSG_VERSION of the producer */
    char producer[64];    /* stable sender name, e.g. "ingestd.0" */
    uint32_t lane;        /* lane the batch travels */
    uint64_t seq;         /* per (producer, lane) batch counter */
    int64_t ts;           /* send time, ns since epoch */
    uint64_t acked;       /* readings: the producer's confirmed seq on this
                             lane when it made the batch (PROTOCOL.md,
                             "Confirmations and resends") */
    bool has_acked;       /* acked was sent (ingestd since 2026-11) */
    bool companion;       /* readings: an anomalies batch of these readings
                             follows at seq + 1 (anomalyd; PROTOCOL.md) */
};

/* One reading. The series key lives in the owning batch's key arena,
 * once per series: readings of one series share key_off and series. */
struct msg_reading {
    uint32_t key_off; /* offset of the NUL-terminated key in the arena */
    uint32_t series;  /* index in the batch's series table (msg.h) */
    int64_t ts;       /* ns since epoch */
    double value;     /* finite */
};

/* One anomaly event. */
struct msg_anomaly {
    uint32_t key_off; /* series key in the arena */
    int64_t ts;       /* ns since epoch of the reading */
    double value;     /* the reading's value */
    double stat;      /* the detector's own statistic (z for zscore) */
    double score;     /* normalised score in [0,1] */
    uint32_t method_off; /* detector name in the arena */
    bool alarm;          /* anomalyd's novelty alarm (false from producers
                            before it: their items have 6 elements) */
};

/* Points a forecast carries at most. */
#define MSG_FORECAST_POINTS 25

/* One forecast of a series: its expected value with the 80 % prediction
 * interval at ts + i * step for i in [0, n), made by anomalyd's
 * forecaster (trend plus daily season) right after the reading at ts. */
struct msg_forecast {
    uint32_t key_off; /* series key in the arena */
    int64_t ts;       /* ns since epoch of the last reading learnt */
    int64_t step;     /* ns between points, > 0 */
    uint32_t n;       /* points, 2 .. MSG_FORECAST_POINTS */
    double value[MSG_FORECAST_POINTS]; /* expected value */
    double lower[MSG_FORECAST_POINTS]; /* 80 % interval */
    double upper[MSG_FORECAST_POINTS];
};

/* One alert event. */
struct msg_alert {
    uint32_t rule_off;    /* rule name in the arena */
    uint32_t key_off;     /* series key in the arena */
    uint32_t state_off;   /* "firing" or "resolved" */
    uint32_t severity_off; /* "warning", "critical", ... */
    int64_t ts;           /* ns since epoch of the reading that changed it */
    double value;         /* value that changed the state */
};

/* One confirmation: the sending aggd lane has made durable (WAL fsync)
 * every batch of producer on this lane up to and including seq. aggd
 * sends them after each group commit and once a second as a heartbeat;
 * ingestd deletes spool segments up to them and resends what follows. */
struct msg_confirm {
    uint32_t producer_off; /* producer name in the arena, e.g. "ingestd.0" */
    uint32_t lane;         /* lane of the batches confirmed */
    uint64_t seq;          /* highest durable seq of that producer/lane */
};

#endif
