/*
 * alertd: the alerting daemon of one lane. It pulls readings and anomaly
 * batches from anomalyd, evaluates the rules of its rules file on them
 * (alert_engine), logs every alert state change at info level and
 * publishes it as an alerts batch, and answers "alerts", "rules", "stats"
 * and "status" queries on a ROUTER socket. SIGHUP reloads the rules file
 * atomically. In filter mode (--stdin --stdout) it reads JSON-line
 * readings and writes JSON-line alert events.
 *
 * With a database (--db) it also keeps every alert and its history in
 * SQLite (alert_store), answers ack, resolve and silence requests, and
 * queues notifications for the channels of each rule in a durable outbox
 * that a notify actor delivers (alert_notify).
 */
#ifndef SP_ALERTD_H
#define SP_ALERTD_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct alertd_conf {
    char *rundir;          /* directory of the default ipc:// endpoints */
    int64_t lane;          /* this process' lane */
    char *in;              /* PULL endpoint template (bind); "" = default */
    char *query;           /* ROUTER endpoint template (bind); "" = default */
    char *pub;             /* PUB endpoint template (bind); "" = default */
    char *rules;           /* rules file; "" = none */
    int64_t hwm;           /* queue limit in batches on every socket */
    int64_t window_points; /* most points kept per series */
    int64_t max_series;    /* most series tracked */
    int64_t drain;         /* ns allowed for draining at stop */
    char *db;              /* SQLite file; "" = no store, no notifications */
    char *webhook_secret;  /* HMAC key of webhook signatures (secret) */
    char *mqtt_host;       /* broker of mqtt channels */
    int64_t mqtt_port;     /* its port */
    char *sendmail;        /* sendmail(8) of email channels */
    int64_t notify_timeout; /* per delivery attempt, ns */
    int64_t retry_base;    /* first retry delay, ns */
    int64_t retry_max;     /* longest retry delay, ns */
    int64_t max_attempts;  /* delivery attempts before giving up */
    char *ctl;             /* client mode: one query (JSON) to send */
    bool use_stdin;        /* filter mode: JSON-line readings in */
    bool use_stdout;       /* filter mode: JSON-line alert events out */
};

typedef struct alertd alertd_t;

/* Check what cannot be checked by the config table: the rules file
 * parses, --stdin and --stdout go together. Prints every error. Returns 0
 * or -1 (exit 78). */
int alertd_conf_check(const struct alertd_conf *conf);
/* Load the rules, bind every socket. Returns NULL (logged) on failure. */
alertd_t *alertd_new(const struct alertd_conf *conf);
/* Run the loop until SIGTERM/SIGINT (or end of input in filter mode).
 * Returns 0 on a clean stop. */
int alertd_run(alertd_t *self);
/* Filter mode on explicit streams: JSON lines in, events out. Returns 0. */
int alertd_filter(alertd_t *self, FILE *in, FILE *out);
/* Reload the rules file; on any error keep the current rules. Returns 0
 * or -1 (logged). */
int alertd_reload(alertd_t *self);
/* Destroy; NULL-safe; sets *self_p NULL. */
void alertd_destroy(alertd_t **self_p);
/* Client mode (--ctl JSON): send one query to the running alertd of
 * conf's lane, print the reply body as JSON on stdout. Returns the exit
 * status: 0 for a 2xx reply, 1 otherwise (reason on stderr). */
int alertd_ctl(const struct alertd_conf *conf, const char *query);

/* Selftest: asserts on failure, prints " * alertd: OK". */
void alertd_test(bool verbose);

#endif
