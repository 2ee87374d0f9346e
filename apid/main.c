/*
 * apid: main. Configuration, then the server object (apid.c).
 */
#include "apid/apid.h"
#include "common/daemon.h"
#include "common/log.h"

#include <stddef.h>

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct apid_conf, rundir), "./var/run", 0, 0,
     CFG_IMMUTABLE, "directory of the ipc:// endpoints"},
    {"listen", CFG_STR, offsetof(struct apid_conf, listen), "127.0.0.1", 0, 0,
     CFG_IMMUTABLE, "HTTP listen address"},
    {"port", CFG_INT, offsetof(struct apid_conf, port), "3000", 0, 65535,
     CFG_IMMUTABLE, "HTTP port (0 picks a free one)"},
    {"lanes", CFG_INT, offsetof(struct apid_conf, lanes), "1", 1, 1024,
     CFG_IMMUTABLE, "lanes of the chain: queries go to every lane and merge"},
    {"log-level", CFG_STR, offsetof(struct apid_conf, log_level), "", 0, 0, 0,
     "debug, info, warning, err or crit (SIGHUP changes it)"},
    {"timeout", CFG_DURATION, offsetof(struct apid_conf, timeout), "5s", 0.01,
     600, 0, "how long to wait for a daemon before 503"},
    {"reply-arena", CFG_INT, offsetof(struct apid_conf, reply_arena), "32", 0,
     4096, CFG_IMMUTABLE, "MiB of shared memory lent to daemons on this host "
     "for large answers (4 slots); 0 = every answer through ZeroMQ"},
    {"body-max", CFG_INT, offsetof(struct apid_conf, body_max), "33554432",
     1024, 1073741824, 0, "largest request body in bytes"},
    {"ingestd", CFG_STR, offsetof(struct apid_conf, ingestd), "", 0, 0,
     CFG_IMMUTABLE, "ingestd query endpoint"},
    {"aggd", CFG_STR, offsetof(struct apid_conf, aggd), "", 0, 0,
     CFG_IMMUTABLE, "aggd query endpoint template ({lane} expands)"},
    {"anomalyd", CFG_STR, offsetof(struct apid_conf, anomalyd), "", 0, 0,
     CFG_IMMUTABLE, "anomalyd query endpoint template"},
    {"alertd", CFG_STR, offsetof(struct apid_conf, alertd), "", 0, 0,
     CFG_IMMUTABLE, "alertd query endpoint template"},
    {"datadir", CFG_STR, offsetof(struct apid_conf, datadir), "./var/apid", 0,
     0, CFG_IMMUTABLE, "apid's data directory (dashboards, devices.db); \"\" keeps them in memory"},
    {"webroot", CFG_STR, offsetof(struct apid_conf, webroot), "", 0, 0,
     CFG_IMMUTABLE, "directory of the dashboard files; empty finds apid/web beside the binary"},
    {"ws-ping", CFG_DURATION, offsetof(struct apid_conf, ws_ping), "15s", 0.05,
     3600, 0, "WebSocket ping interval; a client silent for 3 is dropped"},
    {"ws-queue-max", CFG_INT, offsetof(struct apid_conf, ws_queue_max),
     "4194304", 4096, 1073741824, 0,
     "bytes queued to one WebSocket client before it is dropped as slow"},
    {"keys", CFG_STR, offsetof(struct apid_conf, keys), "", 0, 0,
     CFG_IMMUTABLE, "file of API keys \"name tenant role sha256:HEX\"; any key turns auth on"},
    {"key-rate", CFG_DOUBLE, offsetof(struct apid_conf, key_rate), "50", 0.001,
     1e6, CFG_IMMUTABLE, "requests per second allowed per API key"},
    {"key-burst", CFG_INT, offsetof(struct apid_conf, key_burst), "100", 1,
     1000000, CFG_IMMUTABLE, "requests an API key may send in a burst"},
    {"mqtt-auth", CFG_STR, offsetof(struct apid_conf, mqtt_auth), "", 0, 0,
     CFG_IMMUTABLE, "directory where apid writes mosquitto's passwd and acl; \"\" = no device credentials"},
    {"mqtt-pidfile", CFG_STR, offsetof(struct apid_conf, mqtt_pidfile), "", 0,
     0, CFG_IMMUTABLE, "pid file of the mosquitto that reads them (SIGHUP on change)"},
    {"mqtt-host", CFG_STR, offsetof(struct apid_conf, mqtt_host), "", 0, 0,
     CFG_IMMUTABLE, "broker for device commands and job progress; \"\" = no batch jobs"},
    {"mqtt-port", CFG_INT, offsetof(struct apid_conf, mqtt_port), "1883", 1, 65535,
     CFG_IMMUTABLE, "broker port"},
    {"mqtt-user", CFG_STR, offsetof(struct apid_conf, mqtt_user), "", 0, 0,
     CFG_IMMUTABLE, "apid's MQTT user (\"\" = anonymous)"},
    {"mqtt-password", CFG_STR, offsetof(struct apid_conf, mqtt_password), "", 0, 0,
     CFG_IMMUTABLE | CFG_SECRET, "apid's MQTT password"},
    {"mqtt-outbox-max", CFG_INT, offsetof(struct apid_conf, mqtt_outbox_max), "10000", 0,
     10000000, CFG_IMMUTABLE, "commands and shadow deltas kept in devices.db while the "
     "broker is away, at most (the oldest dropped first); 0 = none kept"},
    {"mqtt-outbox-max-age", CFG_DURATION, offsetof(struct apid_conf, mqtt_outbox_max_age),
     "1d", 1, 86400 * 30, CFG_IMMUTABLE, "a kept message older than this is dropped unsent"},
    {"device-offline-after", CFG_STR, offsetof(struct apid_conf, device_offline_after), "",
     0, 0, CFG_IMMUTABLE, "a device online without a heartbeat (or status online) for this "
     "long is marked offline (30s, 5m); \"\" = never, only its last will or status"},
    {"job-timeout", CFG_DURATION, offsetof(struct apid_conf, job_timeout), "10m", 1,
     86400 * 7, CFG_IMMUTABLE, "how long a batch job waits for its devices"},
    {"jwt-secret", CFG_STR, offsetof(struct apid_conf, jwt_secret), "", 0, 0,
     CFG_IMMUTABLE | CFG_SECRET, "HS256 key of bearer JWTs (tenant and role from their claims); \"\" = no JWTs"},
    {"jwt-audience", CFG_STR, offsetof(struct apid_conf, jwt_audience), "", 0,
     0, CFG_IMMUTABLE, "the \"aud\" a JWT must carry; \"\" = not checked"},
    {"jwt-keys", CFG_STR, offsetof(struct apid_conf, jwt_keys), "", 0, 0,
     CFG_IMMUTABLE, "JWKS file (or PEM public key) of an OAuth 2.0 / OpenID provider: RS256/ES256 JWTs; re-read when it changes; \"\" = none"},
    {"jwt-keys-url", CFG_STR, offsetof(struct apid_conf, jwt_keys_url), "", 0, 0,
     CFG_IMMUTABLE, "the provider's jwks_uri or .well-known/openid-configuration: fetched with libcurl into --jwt-keys (default <datadir>/jwks.json); \"\" = none"},
    {"jwt-keys-refresh", CFG_DURATION, offsetof(struct apid_conf, jwt_keys_refresh),
     "10m", 10, 86400, CFG_IMMUTABLE, "how often --jwt-keys-url is fetched (also soon after a token names an unknown kid)"},
    {"jwt-issuer", CFG_STR, offsetof(struct apid_conf, jwt_issuer), "", 0, 0,
     CFG_IMMUTABLE, "the \"iss\" a JWT must carry; \"\" = not checked"},
    {"jwt-tenant-claim", CFG_STR, offsetof(struct apid_conf, jwt_tenant_claim),
     "tenant", 0, 0, CFG_IMMUTABLE, "JWT claim (dotted path) that names the tenant"},
    {"jwt-role-claim", CFG_STR, offsetof(struct apid_conf, jwt_role_claim), "role",
     0, 0, CFG_IMMUTABLE, "JWT claim (dotted path): reader|writer|admin, or an array of names of which the highest counts"},
    {"tls-cert", CFG_STR, offsetof(struct apid_conf, tls_cert), "", 0, 0,
     CFG_IMMUTABLE, "PEM certificate chain: serve HTTPS (and wss://); \"\" = plain HTTP"},
    {"tls-key", CFG_STR, offsetof(struct apid_conf, tls_key), "", 0, 0,
     CFG_IMMUTABLE, "PEM private key of --tls-cert"},
    {"tenant-devices", CFG_INT, offsetof(struct apid_conf, tenant_devices), "0",
     0, 100000000, 0, "devices a tenant may register (not decommissioned); 0 = no limit"},
    {"quotas", CFG_STR, offsetof(struct apid_conf, quotas), "", 0, 0, CFG_IMMUTABLE,
     "JSON file of per-tenant quotas (devices here; ingestd: rate, series) over "
     "--tenant-devices; re-read when it changes"},
    {"warm-ms", CFG_INT, offsetof(struct apid_conf, warm_ms), "0", 0, 60000,
     CFG_IMMUTABLE, "keep every CPU busy (SCHED_IDLE spinners) this many ms "
     "after each request, for latency on VMs whose idle vCPUs wake slowly; "
     "0 = off"},
    {"session-ttl", CFG_DURATION, offsetof(struct apid_conf, session_ttl), "12h",
     1, 86400 * 30, CFG_IMMUTABLE, "how long a dashboard login lasts"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])

int
main(int argc, char **argv)
{
    struct apid_conf conf = {0};
    struct daemon_proc p = {
        .ident = "apid", .opts = s_opts, .nopts = S_NOPTS, .conf = &conf,
        .libs = DAEMON_LIB_MOSQUITTO | DAEMON_LIB_CURL,
    };
    apid_t *apid;
    int rc = daemon_start(&p, argc, argv);

    if (rc >= 0)
        return rc;
    if ((apid = apid_new(&conf)) == NULL)
        return daemon_exit(&p, DAEMON_CANNOT_START);
    rc = apid_run(apid);
    apid_destroy(&apid);
    return daemon_exit(&p, rc);
}
