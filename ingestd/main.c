/*
 * ingestd: main. Configuration, then the server object (ingestd.c).
 */
#include "ingestd/ingestd.h"
#include "common/daemon.h"
#include "common/log.h"


#include <stddef.h>

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct ingestd_conf, rundir), "./var/run", 0,
     0, CFG_IMMUTABLE, "directory of the ipc:// endpoints"},
    {"id", CFG_STR, offsetof(struct ingestd_conf, id), "ingestd.0", 0, 0,
     CFG_IMMUTABLE, "producer name in batch envelopes (unique per process)"},
    {"lanes", CFG_INT, offsetof(struct ingestd_conf, lanes), "1", 1, 1024,
     CFG_IMMUTABLE, "number of aggd lanes"},
    {"down", CFG_STR, offsetof(struct ingestd_conf, down), "", 0, 0,
     CFG_IMMUTABLE, "aggd PULL endpoint template ({lane} expands)"},
    {"query", CFG_STR, offsetof(struct ingestd_conf, query), "", 0, 0,
     CFG_IMMUTABLE, "ROUTER endpoint for apid's ingest requests"},
    {"listen", CFG_STR, offsetof(struct ingestd_conf, listen), "127.0.0.1", 0,
     0, CFG_IMMUTABLE, "HTTP listen address"},
    {"port", CFG_INT, offsetof(struct ingestd_conf, port), "8086", -1, 65535,
     CFG_IMMUTABLE, "HTTP port (line protocol and JSON); -1 disables"},
    {"body-max", CFG_INT, offsetof(struct ingestd_conf, body_max), "33554432",
     1024, 1073741824, 0, "largest request body in bytes"},
    {"hwm", CFG_INT, offsetof(struct ingestd_conf, hwm), "1000", 1, 1000000,
     CFG_IMMUTABLE, "queue limit in batches per lane"},
    {"drain", CFG_DURATION, offsetof(struct ingestd_conf, drain), "2s", 0, 600,
     0, "time allowed to drain at stop"},
    {"spool", CFG_STR, offsetof(struct ingestd_conf, spool), "", 0, 0,
     CFG_IMMUTABLE, "spool directory (default ./var/spool/<id>)"},
    {"spool-max", CFG_INT, offsetof(struct ingestd_conf, spool_max),
     "268435456", 1024, 1e12, 0,
     "unconfirmed spool bytes above which writes get 503"},
    {"segment", CFG_INT, offsetof(struct ingestd_conf, segment), "16777216",
     4096, 1073741824, 0, "spool segment size in bytes"},
    {"confirm", CFG_STR, offsetof(struct ingestd_conf, confirm), "", 0, 0,
     CFG_IMMUTABLE, "PULL endpoint for aggd's confirmations"},
    {"resend-after", CFG_DURATION, offsetof(struct ingestd_conf, resend), "3s",
     0.1, 3600, 0, "time without confirmation before resending"},
    {"mqtt-host", CFG_STR, offsetof(struct ingestd_conf, mqtt_host),
     "127.0.0.1", 0, 0, CFG_IMMUTABLE, "MQTT broker address"},
    {"mqtt-port", CFG_INT, offsetof(struct ingestd_conf, mqtt_port), "1883", 0,
     65535, CFG_IMMUTABLE, "MQTT broker port; 0 disables MQTT ingest"},
    {"mqtt-group", CFG_STR, offsetof(struct ingestd_conf, mqtt_group),
     "ingestd", 0, 0, CFG_IMMUTABLE,
     "shared subscription group ($share/<group>/devices/+/telemetry)"},
    {"mqtt-user", CFG_STR, offsetof(struct ingestd_conf, mqtt_user), "", 0, 0,
     CFG_IMMUTABLE, "MQTT username"},
    {"mqtt-password", CFG_STR, offsetof(struct ingestd_conf, mqtt_password),
     "", 0, 0, CFG_IMMUTABLE | CFG_SECRET, "MQTT password"},
    {"mqtt-spool", CFG_STR, offsetof(struct ingestd_conf, mqtt_spool), "", 0,
     0, CFG_IMMUTABLE,
     "read MQTT readings from the broker plugin's spool in this directory"},
    {"rate-limit", CFG_DOUBLE, offsetof(struct ingestd_conf, rate), "0", 0, 1e9,
     0, "HTTP requests per second per client (API key or address), 0 = off; "
        "bursts of 2 s are allowed; over it: 429 with Retry-After"},
    {"device-rate", CFG_DOUBLE, offsetof(struct ingestd_conf, device_rate), "0",
     0, 1e9, 0, "MQTT messages per second per device, 0 = off; over it the "
                "message is refused and reported on devices/{id}/errors"},
    {"tenant-rate", CFG_DOUBLE, offsetof(struct ingestd_conf, tenant_rate), "0",
     0, 1e12, 0, "readings per second per tenant over HTTP and MQTT, 0 = off; "
                 "bursts of 2 s; over it: 429 quota_exceeded (MQTT: the error topic)"},
    {"tenant-series", CFG_INT, offsetof(struct ingestd_conf, tenant_series), "0",
     0, 1000000000, 0, "distinct series per tenant, 0 = off; a write adding one more "
                       "is refused whole: 403 quota_exceeded (MQTT: the error topic)"},
    {"quotas", CFG_STR, offsetof(struct ingestd_conf, quotas), "", 0, 0,
     CFG_IMMUTABLE, "JSON file of per-tenant quotas (rate, series; apid: devices) "
                    "over the --tenant-* values; re-read when it changes"},
    {"keys", CFG_STR, offsetof(struct ingestd_conf, keys), "", 0, 0,
     CFG_IMMUTABLE, "API keys file (apid's format); with keys, writes on the own port "
                    "need one and go to its tenant"},
    {"tls-cert", CFG_STR, offsetof(struct ingestd_conf, tls_cert), "", 0, 0,
     CFG_IMMUTABLE, "PEM certificate chain: the own port speaks HTTPS; \"\" = plain HTTP"},
    {"tls-key", CFG_STR, offsetof(struct ingestd_conf, tls_key), "", 0, 0,
     CFG_IMMUTABLE, "PEM private key of --tls-cert"},
    {"keys-db", CFG_STR, offsetof(struct ingestd_conf, keys_db), "", 0, 0,
     CFG_IMMUTABLE, "apid's devices.db, read-only, for the keys made with POST /api/keys"},
    {"stdin", CFG_BOOL, offsetof(struct ingestd_conf, use_stdin), "false", 0, 0,
     0, "filter mode: read JSON-line readings on stdin"},
    {"stdout", CFG_BOOL, offsetof(struct ingestd_conf, use_stdout), "false", 0,
     0, 0, "filter mode: print normalised readings instead of sending them"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

/* Filter mode keeps stderr for errors only. */
static bool
s_quiet(const void *conf)
{
    return ((const struct ingestd_conf *)conf)->use_stdin;
}

int
main(int argc, char **argv)
{
    struct ingestd_conf conf = {0};
    struct daemon_proc p = {
        .ident = "ingestd", .opts = s_opts, .nopts = S_NOPTS, .conf = &conf,
        .libs = DAEMON_LIB_MOSQUITTO, .quiet = s_quiet,
    };
    ingestd_t *d;
    int rc = daemon_start(&p, argc, argv);

    if (rc >= 0)
        return rc;
    if ((d = ingestd_new(&conf)) == NULL)
        return daemon_exit(&p, DAEMON_CANNOT_START);
    rc = ingestd_run(d);
    ingestd_destroy(&d);
    return daemon_exit(&p, rc);
}
