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
    int64_t lanes;    /* lanes of the chain, as in ingestd */
    int64_t timeout;  /* ns to wait for a backend */
    int64_t reply_arena; /* MiB of shared memory lent for large answers; 0 = none */
    int64_t body_max; /* largest request body in bytes */
    char *log_level;  /* debug, info, warning, err or crit; "" = by -v */
    char *ingestd;    /* ingestd query endpoint; "" = default */
    char *aggd;       /* aggd query endpoint template; "" = default */
    char *anomalyd;   /* anomalyd query endpoint template; "" = default */
    char *alertd;     /* alertd query endpoint template; "" = default */
    char *datadir;    /* apid's own data (dashboards, devices, keys); "" = in memory */
    char *webroot;    /* dashboard files; "" = found beside the binary */
    int64_t ws_ping;  /* ns between WebSocket pings */
    int64_t ws_queue_max; /* bytes queued to one client before it is dropped */
    char *keys;       /* file of API keys (hashed); "" = none */
    double key_rate;  /* requests per second per API key */
    int64_t key_burst; /* requests a key may send at once */
    char *mqtt_auth;  /* directory of mosquitto's passwd and acl; "" = off */
    char *mqtt_pidfile; /* pid file of that mosquitto (SIGHUP on change) */
    char *mqtt_host;  /* broker for device commands and job progress; "" = none */
    int64_t mqtt_port; /* its port */
    char *mqtt_user;  /* apid's MQTT user ("" = anonymous) */
    char *mqtt_password; /* its password (secret) */
    int64_t mqtt_outbox_max; /* messages kept for the broker at most; 0 = no outbox */
    int64_t mqtt_outbox_max_age; /* ns a kept message may wait */
    int64_t job_timeout; /* ns a batch job waits for its devices */
    char *device_offline_after; /* duration of silence that makes an online
                                 * device offline; "" = never */
    char *jwt_secret; /* HS256 key of bearer JWTs (secret); "" = no JWTs */
    char *jwt_audience; /* required "aud" of JWTs; "" = not checked */
    char *jwt_keys;   /* JWKS or PEM of an OIDC provider's keys; "" = none */
    char *jwt_issuer; /* required "iss" of JWTs; "" = not checked */
    char *jwt_keys_url; /* jwks_uri or discovery URL fetched into jwt_keys */
    int64_t jwt_keys_refresh; /* ns between fetches of jwt_keys_url */
    char *jwt_tenant_claim; /* claim (dotted path) naming the tenant */
    char *jwt_role_claim;   /* claim (dotted path) naming the role(s) */
    int64_t session_ttl; /* ns a dashboard login lasts */
    int64_t tenant_devices; /* devices per tenant (not decommissioned); 0 = any */
    char *quotas;     /* per-tenant quotas file (common/quota.h); "" = none */
    char *tls_cert;   /* PEM certificate chain: HTTPS; "" = plain HTTP */
    char *tls_key;    /* its private key */
    int64_t warm_ms;  /* CPUs kept spinning this long after a request; 0 = off */
};

typedef struct apid apid_t;

#include "common/http.h"

#include <jansson.h>

/* The daemons apid asks. */
enum apid_backend {
    APID_BK_INGESTD,
    APID_BK_AGGD,
    APID_BK_ANOMALYD,
    APID_BK_ALERTD,
    APID_BK_MAX
};

/* Listen and connect. Returns NULL (logged) on failure. */
apid_t *apid_new(const struct apid_conf *conf);
/* Run until SIGTERM. 0 on a clean stop. */
int apid_run(apid_t *self);
/* Destroy; NULL-safe. */
void apid_destroy(apid_t **self_p);

/* For route modules (api_*.c). Each module exports one
 * "int api_x_route(apid_t *, http_req_t *)" that returns 1 when it handled
 * the request, and is listed in s_modules[] in apid.c. */

/* Ask a backend and relay its {status, body} answer to req; 503 with
 * Retry-After when it does not answer in time (and Retry-After on a 429
 * whose error says "retry_after"). Steals query. */
void apid_relay(apid_t *self, http_req_t *req, int backend, json_t *query);
/* Called with a backend's answer (status and body, reference stolen), or
 * 503 and an error body when it does not answer in time or apid stops.
 * It must reply to req, or ask again only after a 200. */
typedef void(apid_answer_fn)(apid_t *self, http_req_t *req, int status,
                             json_t *body, void *arg);
/* Ask a backend and hand its answer to fn instead of relaying it (for
 * routes that compute on the answer). Steals query. req may be NULL for a
 * module's own question once its reply has started (a streamed export's
 * next page); fn then gets NULL, and a 503 when apid stops. A question
 * with a request is scoped to its tenant (api_tenant.h); one without is
 * not, so it may only name keys that a scoped answer gave. */
void apid_ask(apid_t *self, http_req_t *req, int backend, json_t *query,
              apid_answer_fn *fn, void *arg);
/* Copy start/end (any accepted time form, to ns) and tag.k=v filters from
 * the query string into q. Returns 0, or -1 after replying 400. */
int apid_range_args(http_req_t *req, json_t *q);
/* Set q's "limit" from ?limit= (1..100000). Returns 0, or -1 after
 * answering 400 (q is the caller's to free). */
int apid_limit_arg(http_req_t *req, json_t *q);
/* The URL-decoded remainder of path after prefix, without '/'; NULL when
 * empty or malformed. Caller frees. */
char *apid_path_arg(const char *path, const char *prefix);
/* The "percentiles" query parameter ("50,90,p99.9"): a JSON array of
 * numbers in [0, 100], or NULL when any item is not one. Caller decrefs. */
json_t *apid_percentiles_arg(const char *s);
/* True when the method is want; else replies 405 with Allow. */
bool apid_method(http_req_t *req, const char *want);
/* The configuration in force. */
const struct apid_conf *apid_config(const apid_t *self);
/* The loop (for modules with their own timers or sockets). */
zloop_t *apid_loop(apid_t *self);

/* Module state that lives as long as apid (sockets, stores, upgraded
 * connections), listed in s_services[] in apid.c. create runs after the
 * HTTP server is up and returns the state (NULL = failed, apid does not
 * start); destroy runs before the HTTP server goes. */
struct apid_service {
    const char *name;                /* looked up by apid_service() */
    void *(*create)(apid_t *self);   /* returns the state */
    void (*destroy)(void **state_p); /* NULL-safe, sets *state_p NULL */
};
/* The state of a service by name, or NULL. */
void *apid_service(apid_t *self, const char *name);

/* Selftest. */
void apid_test(bool verbose);

#endif
