/*
 * sensorpipectl: the state of every daemon and lane, asked directly over
 * each daemon's query socket with the rpc "status" op (so it works when
 * apid is down too): up or down, queue state (paused, stalls, pending),
 * readings, series, points, spool and WAL counters, whatever the daemon
 * reports. Exit status 0 when every lane answered, 1 when one did not,
 * 78 on bad options.
 *
 *   sensorpipectl [--rundir DIR] [--lanes N] [--json] [--timeout 2s]
 *                 [--ingestd EP] [--aggd TMPL] [--anomalyd TMPL] [--alertd TMPL]
 *   sensorpipectl --delete SERIES [--start TIME] [--end TIME] [...]
 *   sensorpipectl --backup DIR [...]
 *
 * With --delete it asks every aggd lane to delete the series (a key, bare
 * name or glob) or its points in [start, end), prints each lane's answer
 * and exits 0 when some lane deleted and none failed. With --backup each
 * aggd lane writes a consistent copy of its data directory, taken while it
 * runs, to DIR/aggd.LANE (restore: start that lane with --data on it);
 * exit 0 when every lane did.
 *
 * Settings also come from -f file and SENSORPIPECTL_* variables, like
 * the daemons' (cfg.h).
 */
#include "common/cfg.h"
#include "common/clock.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <errno.h>
#include <sys/stat.h>
#include <jansson.h>
#include <stddef.h>

struct ctl_conf {
    char *rundir;    /* directory of the default ipc:// endpoints */
    int64_t lanes;   /* lanes of aggd, anomalyd, alertd */
    int64_t timeout; /* ns to wait for all answers */
    bool json;       /* print JSON instead of the table */
    char *ingestd;   /* ingestd query endpoint; "" = default */
    char *aggd;      /* templates; "" = default */
    char *anomalyd;
    char *alertd;
    char *del;       /* series to delete, or "" */
    char *start;     /* range of the delete, "" = all time */
    char *end;
    char *backup;    /* directory for a backup of every aggd lane, or "" */
};

static const struct cfg_opt s_opts[] = {
    {"rundir", CFG_STR, offsetof(struct ctl_conf, rundir), "./var/run", 0, 0,
     0, "directory of the ipc:// endpoints"},
    {"lanes", CFG_INT, offsetof(struct ctl_conf, lanes), "1", 1, 1024, 0,
     "lanes of aggd, anomalyd and alertd"},
    {"timeout", CFG_DURATION, offsetof(struct ctl_conf, timeout), "2s", 0.01,
     600, 0, "how long to wait for the daemons"},
    {"json", CFG_BOOL, offsetof(struct ctl_conf, json), "false", 0, 0, 0,
     "print one JSON object instead of the table"},
    {"ingestd", CFG_STR, offsetof(struct ctl_conf, ingestd), "", 0, 0, 0,
     "ingestd query endpoint"},
    {"aggd", CFG_STR, offsetof(struct ctl_conf, aggd), "", 0, 0, 0,
     "aggd query endpoint template ({lane} expands)"},
    {"anomalyd", CFG_STR, offsetof(struct ctl_conf, anomalyd), "", 0, 0, 0,
     "anomalyd query endpoint template"},
    {"alertd", CFG_STR, offsetof(struct ctl_conf, alertd), "", 0, 0, 0,
     "alertd query endpoint template"},
    {"delete", CFG_STR, offsetof(struct ctl_conf, del), "", 0, 0, 0,
     "delete this series (key, name or glob) on every aggd lane"},
    {"start", CFG_STR, offsetof(struct ctl_conf, start), "", 0, 0, 0,
     "with --delete: inclusive start (RFC 3339, YYYY-MM-DD, epoch ms)"},
    {"end", CFG_STR, offsetof(struct ctl_conf, end), "", 0, 0, 0,
     "with --delete: exclusive end"},
    {"backup", CFG_STR, offsetof(struct ctl_conf, backup), "", 0, 0, 0,
     "back up every aggd lane into this directory (absolute path)"},
};
#define S_NOPTS (sizeof s_opts / sizeof s_opts[0])
#define S_DAEMONS 4

/* Counters shown first, in this order, when a daemon reports them. */
static const char *s_key[] = {
    "paused", "readings_in", "series", "points", "batches_in",
    "downstream_stalls", "pending", "spool_bytes", "spool_segments",
    "unconfirmed", "wal_bytes", "wal_lag", "anomalies_out", "alerts_firing",
    "refused", "bad_batches", NULL};

/* One daemon lane asked. */
struct s_target {
    const char *daemon; /* "aggd" */
    unsigned lane;      /* its lane */
    char ep[EP_MAX];    /* query endpoint */
    zsock_t *sock;      /* DEALER */
    int status;         /* answer status, 0 = none yet */
    json_t *body;       /* answer body */
};

static void
s_print_value(const json_t *v)
{
    char num[40];
    if (json_is_boolean(v))
        printf("%s", json_is_true(v) ? "yes" : "no");
    else if (json_is_number(v))
        printf("%s", strutil_dtoa(json_number_value(v), num, sizeof num));
    else if (json_is_string(v))
        printf("%s", json_string_value(v));
    else {
        char *s = mpjson_dumps((json_t *)v);
        printf("%s", s);
        free(s);
    }
}

static void
s_print_row(const struct s_target *t)
{
    const char *k;
    json_t *v;
    bool first = true;

    printf("%-9s %4u  %-4s ", t->daemon, t->lane, t->body ? "up" : "DOWN");
    if (t->body == NULL) {
        printf(" no answer from %s\n", t->ep);
        return;
    }
    for (int i = 0; s_key[i]; i++)
        if ((v = json_object_get(t->body, s_key[i]))) {
            printf("%s%s=", first ? " " : " ", s_key[i]);
            s_print_value(v);
            first = false;
        }
    json_object_foreach(t->body, k, v) {
        bool shown = !strcmp(k, "daemon") || !strcmp(k, "lane");
        for (int i = 0; s_key[i] && !shown; i++)
            shown = !strcmp(k, s_key[i]);
        if (shown || json_is_object(v) || json_is_array(v))
            continue;
        printf(" %s=", k);
        s_print_value(v);
    }
    printf("\n");
}

int
main(int argc, char **argv)
{
    struct ctl_conf conf = {0};
    struct cfg_cli cli;
    static const char *names[S_DAEMONS] = {"ingestd", "aggd", "anomalyd", "alertd"};
    struct s_target *t;
    size_t n = 0, answered = 0, up = 0, unusable = 0;
    zpoller_t *poller;
    int64_t deadline;
    int rc;

    log_init("sensorpipectl", LOG_LVL_WARNING);
    rc = cfg_load(s_opts, S_NOPTS, &conf, "sensorpipectl", argc, argv, &cli);
    if (rc != CFG_OK && rc != CFG_CHECK) {
        cfg_free(s_opts, S_NOPTS, &conf);
        return rc == CFG_EXIT ? 0 : CFG_EX_CONFIG;
    }
    json_t *del = NULL;
    if (*conf.del) {
        del = json_pack("{s:s, s:s}", "op", "delete", "series", conf.del);
        const char *when[2] = {conf.start, conf.end}, *name[2] = {"start", "end"};
        for (int i = 0; i < 2; i++) {
            int64_t ts;
            if (!*when[i])
                continue;
            if (clock_parse_time(when[i], &ts)) {
                char q[CFG_QUOTE_BUF];
                fprintf(stderr, "sensorpipectl: --%s: not a time: '%s'\n",
                        name[i], cfg_quote(when[i], q, sizeof q));
                json_decref(del);
                cfg_free(s_opts, S_NOPTS, &conf);
                return CFG_EX_CONFIG;
            }
            json_object_set_new(del, name[i], json_integer(ts));
        }
    }
    if (*conf.backup) {
        /* -n checks, but makes no directory. */
        if (del != NULL || conf.backup[0] != '/' ||
            (!cli.check && mkdir(conf.backup, 0755) == -1 && errno != EEXIST)) {
            char q[CFG_QUOTE_BUF];
            fprintf(stderr, "sensorpipectl: --backup needs an absolute "
                    "directory it can create (and no --delete): '%s'\n",
                    cfg_quote(conf.backup, q, sizeof q));
            json_decref(del);
            cfg_free(s_opts, S_NOPTS, &conf);
            return CFG_EX_CONFIG;
        }
        del = json_pack("{s:s}", "op", "backup");
    }
    if (cli.check) {
        cfg_check_ok(s_opts, S_NOPTS, &conf);
        json_decref(del);
        cfg_free(s_opts, S_NOPTS, &conf);
        return 0;
    }
    zsys_handler_set(NULL);
    zsys_init();
    zsys_set_logstream(NULL);
    const char *tmpl[S_DAEMONS] = {conf.ingestd, conf.aggd, conf.anomalyd, conf.alertd};
    t = xcalloc(1 + 3 * (size_t)conf.lanes, sizeof *t);
    poller = zpoller_new(NULL);
    for (int d = 0; d < S_DAEMONS; d++) {
        unsigned lanes = d == 0 ? 1 : (unsigned)conf.lanes;
        if (del && strcmp(names[d], "aggd") != 0)
            continue;
        char def[EP_MAX];
        const char *tm = *tmpl[d] ? tmpl[d]
                                  : ep_default(def, sizeof def, conf.rundir,
                                               names[d], "query");
        for (unsigned lane = 0; lane < lanes; lane++) {
            struct s_target *x = &t[n++];
            json_t *q = del ? json_deep_copy(del) : json_pack("{s:s}", "op", "status");
            if (*conf.backup) {
                char dir[EP_MAX + 32];
                snprintf(dir, sizeof dir, "%s/aggd.%u", conf.backup, lane);
                json_object_set_new(q, "dir", json_string(dir));
            }
            x->daemon = names[d];
            x->lane = lane;
            if (ep_expand(x->ep, sizeof x->ep, tm, lane) == NULL)
                snprintf(x->ep, sizeof x->ep, "(template too long)");
            x->sock = zsock_new(ZMQ_DEALER);
            zsock_set_linger(x->sock, 0);
            zsock_set_sndtimeo(x->sock, 0);
            if (ep_connect(x->sock, x->ep) == 0) {
                rpc_request_send(zsock_resolve(x->sock), (uint64_t)n, q);
            } else {
                /* A malformed or impossible endpoint (an ipc:// path over
                 * the 107 bytes of sun_path) is a bad option, not a
                 * daemon that is down. */
                char qe[CFG_QUOTE_BUF];
                fprintf(stderr, "sensorpipectl: %s lane %u: cannot connect "
                        "'%s': %s\n", x->daemon, lane,
                        cfg_quote(x->ep, qe, sizeof qe), strerror(errno));
                unusable++;
            }
            json_decref(q);
            zpoller_add(poller, x->sock);
        }
    }
    deadline = clock_mono_ns() + conf.timeout;
    while (answered < n && unusable == 0) {
        int64_t left = (deadline - clock_mono_ns()) / CLOCK_NS_PER_MS;
        zsock_t *which;
        uint64_t id;
        int status;
        json_t *body;
        if (left <= 0 || (which = zpoller_wait(poller, (int)left)) == NULL)
            break;
        for (size_t i = 0; i < n; i++) {
            if (t[i].sock != which)
                continue;
            if (rpc_reply_recv(zsock_resolve(which), &id, &status, &body) == -1)
                continue;
            if (t[i].body) { /* a duplicate: keep the first */
                json_decref(body);
                continue;
            }
            t[i].status = status;
            t[i].body = body;
            answered++;
            up += status == 200;
        }
    }
    if (del) {
        size_t deleted = 0, failed = 0;
        for (size_t i = 0; i < n; i++) {
            char *s = t[i].body ? mpjson_dumps(t[i].body) : NULL;
            printf("aggd %u: %d %s\n", t[i].lane, t[i].status,
                   s ? s : "no answer");
            free(s);
            deleted += t[i].status == 200;
            failed += t[i].status != 200 && t[i].status != 404;
        }
        up = deleted > 0 && failed == 0 ? n : 0;
        if (*conf.backup)
            up = deleted == n ? n : 0;
    } else if (conf.json) {
        json_t *o = json_object(), *lanes;
        for (size_t i = 0; i < n; i++) {
            json_t *e = t[i].body ? json_deep_copy(t[i].body) : json_object();
            json_object_set_new(e, "up", json_boolean(t[i].body != NULL));
            json_object_set_new(e, "lane", json_integer(t[i].lane));
            json_object_set_new(e, "endpoint", json_string(t[i].ep));
            if ((lanes = json_object_get(o, t[i].daemon)) == NULL)
                json_object_set_new(o, t[i].daemon, lanes = json_array());
            json_array_append_new(lanes, e);
        }
        char *s = mpjson_dumps(o);
        puts(s);
        free(s);
        json_decref(o);
    } else {
        printf("%-9s %4s  %-4s  %s\n", "DAEMON", "LANE", "STATE", "COUNTERS");
        for (size_t i = 0; i < n; i++)
            s_print_row(&t[i]);
        printf("%zu of %zu daemon lanes up\n", up, n);
    }
    for (size_t i = 0; i < n; i++) {
        json_decref(t[i].body);
        zsock_destroy(&t[i].sock);
    }
    free(t);
    json_decref(del);
    zpoller_destroy(&poller);
    cfg_free(s_opts, S_NOPTS, &conf);
    zsys_shutdown();
    return unusable ? CFG_EX_CONFIG : up == n ? 0 : 1;
}
