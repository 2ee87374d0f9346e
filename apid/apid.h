/*
 * apid: the one front door on port 3000. It serves the seed API over
 * HTTP (libmicrohttpd in the loop, common/http.h) and answers each route
 * by asking the daemon that owns the data over its query socket
 * (DEALER -> ROUTER, common/rpc.h): ingest bodies go to ingestd, stats
 * and aggregation to aggd, anomalies to anomalyd, alerts and rules to
 * alertd. A backend that does not answer in time gives 503 with
 * Retry-After.
 */
#ifndef SP_APID_H
#define SP_APID_H

#include <stdbool.h>
#include <stdint.h>

struct apid_conf {
    char *rundir;     /* directory of the default ipc:// endpoints */
    char *listen;     /* HTTP listen address */
    int64_t port;     /* HTTP port (0 picks one) */
    int64_t lanes;    /* lanes of the chain (1 for now) */
    int64_t timeout;  /* ns to wait for a backend */
    int64_t body_max; /* largest request body in bytes */
    char *ingestd;    /* ingestd query endpoint; "" = default */
    char *aggd;       /* aggd query endpoint template; "" = default */
    char *anomalyd;   /* anomalyd query endpoint template; "" = default */
    char *alertd;     /* alertd query endpoint template; "" = default */
};

typedef struct apid apid_t;

/* Listen and connect. Returns NULL (logged) on failure. */
apid_t *apid_new(const struct apid_conf *conf);
/* Run until SIGTERM. 0 on a clean stop. */
int apid_run(apid_t *self);
/* Destroy; NULL-safe. */
void apid_destroy(apid_t **self_p);

/* Selftest. */
void apid_test(bool verbose);

#endif
