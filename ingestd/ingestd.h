/*
 * ingestd: the front door for readings. It accepts request bodies from
 * apid (ROUTER, op "ingest"), on its own HTTP port (JSON forms and
 * InfluxDB line protocol) and on stdin; validates them (ingest_parse);
 * and hands accepted readings to aggd over one PUSH socket per lane
 * (lane = FNV-1a 64 of the series key modulo the lane count). When a
 * request is acknowledged only after its readings are in the spool and
 * fsync'd (group commit); batches stay spooled until aggd confirms them
 * and are resent when confirmations stall or after a restart. When the
 * unconfirmed spool passes --spool-max, writes get 503 + Retry-After:
 * backpressure instead of loss.
 */
#ifndef SP_INGESTD_H
#define SP_INGESTD_H

#include <stdbool.h>
#include <stdint.h>

struct ingestd_conf {
    char *rundir;     /* directory of the default ipc:// endpoints */
    char *id;         /* producer name, e.g. "ingestd.0" */
    int64_t lanes;    /* number of aggd lanes */
    char *down;       /* aggd PULL endpoint template ({lane} expands) */
    char *query;      /* ROUTER endpoint (bind) for apid */
    char *listen;     /* HTTP listen address */
    int64_t port;     /* HTTP port; 0 picks one, -1 disables HTTP */
    int64_t body_max; /* largest request body in bytes */
    int64_t hwm;      /* queue limit in batches per lane */
    int64_t drain;    /* ns allowed for draining at stop */
    char *spool;      /* spool directory; "" = ./var/spool/<id> */
    int64_t spool_max; /* unconfirmed bytes above which writes get 503 */
    int64_t segment;  /* spool segment size in bytes */
    char *confirm;    /* PULL endpoint (bind) for aggd's confirmations */
    int64_t resend;   /* ns without confirmation before resending */
    char *mqtt_host;  /* broker address */
    int64_t mqtt_port; /* broker port; 0 disables MQTT */
    char *mqtt_group; /* shared-subscription group; "" subscribes alone */
    char *mqtt_user;  /* broker username, or "" */
    char *mqtt_password; /* broker password (secret) */
    char *mqtt_spool; /* broker plugin's spool to read instead of subscribing */
    double rate;      /* HTTP requests/s per client (key or address); 0 off */
    double device_rate; /* MQTT messages/s per device; 0 off */
    double tenant_rate; /* readings/s per tenant (HTTP and MQTT); 0 off */
    int64_t tenant_series; /* distinct series per tenant; 0 off */
    char *quotas;     /* per-tenant values (common/quota.h); "" = none */
    char *keys;       /* API keys file (as apid's); "" = none */
    char *keys_db;    /* apid's devices.db for its API keys; "" = none */
    char *tls_cert;   /* PEM certificate chain: HTTPS on the own port; "" = HTTP */
    char *tls_key;    /* its private key */
    bool use_stdin;   /* filter mode: JSON lines in */
    bool use_stdout;  /* filter mode: normalised readings out */
};

typedef struct ingestd ingestd_t;

/* Bind and connect. Returns NULL (logged) on failure. */
ingestd_t *ingestd_new(const struct ingestd_conf *conf);
/* Run until SIGTERM (or end of stdin in filter mode). 0 on a clean stop. */
int ingestd_run(ingestd_t *self);
/* Destroy; NULL-safe. */
void ingestd_destroy(ingestd_t **self_p);

/* Selftest. */
void ingestd_test(bool verbose);

#endif
