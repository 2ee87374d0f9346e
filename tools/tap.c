/*
 * tap: subscribe to any sensorpipe PUB endpoint and print its traffic as
 * JSON lines, one per reading, anomaly or alert. A jump in a producer's
 * sequence number (a slow subscriber misses messages on PUB/SUB) is
 * reported on stderr.
 *
 *   tap [-n count] [-s series-glob] [-t topic] endpoint ...
 */
#include "common/cfg.h"
#include "common/clock.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sig.h"
#include "common/strutil.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <getopt.h>
#include <jansson.h>
#include <unistd.h>

#define TAP_EX_USAGE 64

static void
s_usage(FILE *fp)
{
    fprintf(fp, "usage: tap [-h] [-n count] [-s series-glob] [-t topic] "
                "endpoint ...\n"
                "  -n count   stop after printing count items\n"
                "  -s glob    only series whose key matches the glob\n"
                "  -t topic   only this topic prefix (readings, anomalies, "
                "alerts)\n"
                "  -h, --help this text\n"
                "  e.g. tap ipc://./var/run/aggd.0.pub\n");
}

/* The option getopt stopped at: a letter (-x, also inside -abx), or a
 * long option, which is the whole argument. */
static const char *
s_opt(char **argv, char *buf, size_t len)
{
    if (optopt) {
        snprintf(buf, len, "-%c", optopt);
        return buf;
    }
    return argv[optind - 1];
}

/* A usage error: one line naming what was wrong, exit 64 (EX_USAGE). */
static int
s_bad(const char *what, const char *arg)
{
    char q[CFG_QUOTE_BUF];
    fprintf(stderr, "tap: %s '%s' (see tap --help)\n", what,
            cfg_quote(arg, q, sizeof q));
    return TAP_EX_USAGE;
}

static void
s_str(const char *k, const char *v)
{
    json_t *j = json_string(v);
    char *s = json_dumps(j, JSON_ENCODE_ANY);
    printf("\"%s\":%s", k, s);
    free(s);
    json_decref(j);
}

int
main(int argc, char **argv)
{
    long long count = -1, printed = 0;
    const char *glob = NULL, *topic = "";
    zsock_t *sub;
    int c, sigfd;
    zhashx_t *seqs;

    char opt[3];
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};

    opterr = 0; /* our own one-line errors, which name the option */
    while ((c = getopt_long(argc, argv, ":hn:s:t:", longopts, NULL)) != -1) {
        switch (c) {
        case 'n':
            if (strutil_toll(optarg, 1, LLONG_MAX, &count))
                return s_bad("-n: not a count from 1:", optarg);
            break;
        case 's': glob = optarg; break;
        case 't': topic = optarg; break;
        case 'h': s_usage(stdout); return 0;
        case ':': return s_bad("option needs a value:", s_opt(argv, opt, sizeof opt));
        default: return s_bad("unknown option", s_opt(argv, opt, sizeof opt));
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "tap: no endpoint to subscribe to (see tap --help)\n");
        return TAP_EX_USAGE;
    }
    log_init("tap", LOG_LVL_INFO);
    zsys_handler_set(NULL);
    sigfd = sig_init();
    zsys_init();
    zsys_set_logstream(NULL);
    sub = zsock_new(ZMQ_SUB);
    zsock_set_subscribe(sub, topic);
    for (int i = optind; i < argc; i++)
        if (ep_connect(sub, argv[i]) == -1) {
            char q[CFG_QUOTE_BUF];
            fprintf(stderr, "tap: cannot connect '%s': %s\n",
                    cfg_quote(argv[i], q, sizeof q), strerror(errno));
            zsock_destroy(&sub);
            return 1;
        }
    seqs = zhashx_new();
    zpoller_t *poller = zpoller_new(sub, NULL);
    while (count < 0 || printed < count) {
        if (sig_read(sigfd) > 0)
            break;
        if (zpoller_wait(poller, 200) == NULL)
            continue;
        msg_batch_t *b = NULL;
        int rc = msg_batch_recv(sub, &b);
        if (rc != MSG_OK) {
            if (rc != -1)
                fprintf(stderr, "tap: bad message: %s\n", msg_strerror(rc));
            continue;
        }
        struct msg_envelope *e = msg_batch_env(b);
        char key[96];
        snprintf(key, sizeof key, "%s/%u", e->producer, e->lane);
        uint64_t last = (uint64_t)(uintptr_t)zhashx_lookup(seqs, key);
        if (last && e->seq != last + 1)
            fprintf(stderr, "tap: gap producer=%s lane=%u missed=%lld\n",
                    e->producer, e->lane, (long long)(e->seq - last - 1));
        zhashx_update(seqs, key, (void *)(uintptr_t)e->seq);
        for (size_t i = 0; i < msg_batch_size(b) && (count < 0 || printed < count); i++) {
            char ts[40], v[40], st[40], sc[40];
            const char *series;
            if (msg_batch_type(b) == MSG_TYPE_READINGS) {
                const struct msg_reading *r = msg_batch_reading(b, i);
                series = msg_batch_str(b, r->key_off);
                if (glob && !strutil_glob(glob, series))
                    continue;
                printf("{\"type\":\"reading\",");
                s_str("series", series);
                printf(",\"timestamp\":\"%s\",\"value\":%s",
                       clock_format(r->ts, ts, sizeof ts),
                       strutil_dtoa(r->value, v, sizeof v));
            } else if (msg_batch_type(b) == MSG_TYPE_ANOMALIES) {
                const struct msg_anomaly *a = msg_batch_anomaly(b, i);
                series = msg_batch_str(b, a->key_off);
                if (glob && !strutil_glob(glob, series))
                    continue;
                printf("{\"type\":\"anomaly\",");
                s_str("series", series);
                printf(",\"timestamp\":\"%s\",\"value\":%s,\"stat\":%s,\"score\":%s,",
                       clock_format(a->ts, ts, sizeof ts),
                       strutil_dtoa(a->value, v, sizeof v),
                       strutil_dtoa(a->stat, st, sizeof st),
                       strutil_dtoa(a->score, sc, sizeof sc));
                s_str("method", msg_batch_str(b, a->method_off));
                printf(",\"alarm\":%s", a->alarm ? "true" : "false");
            } else if (msg_batch_type(b) == MSG_TYPE_ALERTS) {
                const struct msg_alert *a = msg_batch_alert(b, i);
                series = msg_batch_str(b, a->key_off);
                if (glob && !strutil_glob(glob, series))
                    continue;
                printf("{\"type\":\"alert\",");
                s_str("rule", msg_batch_str(b, a->rule_off));
                printf(",");
                s_str("series", series);
                printf(",");
                s_str("state", msg_batch_str(b, a->state_off));
                printf(",");
                s_str("severity", msg_batch_str(b, a->severity_off));
                printf(",\"timestamp\":\"%s\",\"value\":%s",
                       clock_format(a->ts, ts, sizeof ts),
                       strutil_dtoa(a->value, v, sizeof v));
            } else if (msg_batch_type(b) == MSG_TYPE_FORECASTS) {
                const struct msg_forecast *f = msg_batch_forecast(b, i);
                series = msg_batch_str(b, f->key_off);
                if (glob && !strutil_glob(glob, series))
                    continue;
                printf("{\"type\":\"forecast\",");
                s_str("series", series);
                printf(",\"timestamp\":\"%s\",\"step_s\":%s,\"value\":[",
                       clock_format(f->ts, ts, sizeof ts),
                       strutil_dtoa((double)f->step / CLOCK_NS_PER_S, st,
                                    sizeof st));
                const double *arr[3] = {f->value, f->lower, f->upper};
                for (int k = 0; k < 3; k++) {
                    if (k)
                        printf("],\"%s\":[", k == 1 ? "lower" : "upper");
                    for (uint32_t j = 0; j < f->n; j++)
                        printf("%s%s", j ? "," : "",
                               strutil_dtoa(arr[k][j], v, sizeof v));
                }
                printf("]");
            } else {
                continue;
            }
            printf(",\"producer\":\"%s\",\"lane\":%u,\"seq\":%llu}\n", e->producer,
                   e->lane, (unsigned long long)e->seq);
            printed++;
        }
        fflush(stdout);
        msg_batch_destroy(&b);
    }
    zpoller_destroy(&poller);
    zhashx_destroy(&seqs);
    zsock_destroy(&sub);
    close(sigfd);
    zsys_shutdown();
    return 0;
}
