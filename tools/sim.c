/*
 * sensorpipe-sim: a fleet of simulated MQTT devices.
 *
 * Each device is its own libmosquitto client (client id sim-RUN-N) that
 * publishes QoS 1 telemetry to devices/{deviceId}/telemetry in the seed
 * format {"timestamp":ms,"metrics":{"temperature":t,"humidity":h}}, or an
 * array of such objects with --batch. One event loop per process drives
 * every client of that process through mosquitto_socket(),
 * mosquitto_loop_read/write/misc() and mosquitto_want_write(), so a process
 * holds thousands of devices; --procs K forks K workers (each client needs
 * 3 file descriptors and the open-file limit is per process) and the parent
 * sums their progress, prints a line every second, and writes the
 * per-device report.
 *
 * The loop is epoll rather than poll(2): poll costs O(clients) in the
 * kernel on every wake-up, and with 5,000 clients per worker and a PUBACK
 * arriving every fraction of a millisecond that is the core the broker
 * needs. Due publishes are found by a scan at most once per --tick.
 *
 * Signals: a device's temperature follows a daily cycle (--period), slow
 * mean-reverting drift and Gaussian noise; humidity moves against the
 * temperature cycle. --faults P starts a fault (spike, step or stuck
 * value) on a reading with probability P; each fault is written to the
 * --labels file as a JSON line {device, metric, start, end, kind} with
 * start and end the epoch-millisecond timestamps of the first and last
 * affected reading.
 *
 * Timestamps are the wall clock in ms, made strictly increasing per
 * device so that no two readings of a series share one (aggd keys writes
 * by series and timestamp, so equal timestamps would collapse).
 */
#include "common/cfg.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/sig.h"
#include "common/strutil.h"
#include "common/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <mosquitto.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIM_FDS_PER_CLIENT 3       /* socket + libmosquitto's socketpair */
#define SIM_FDS_SPARE 64           /* stdio, epoll, pipes, labels file */
#define SIM_DEVICES_MAX 1000000    /* bound on --devices */
#define SIM_PROCS_MAX 64           /* bound on --procs */
#define SIM_BATCH_MAX 1000         /* readings per message */
#define SIM_READING_MAX 96         /* bytes of one JSON reading, generous */
#define SIM_PREFIX_MAX 64          /* bytes of the device id prefix */
#define SIM_ID_MAX 96              /* bytes of a device or client id */
#define SIM_RING 32                /* send times kept per device (latency) */
#define SIM_HIST_N 1024            /* latency histogram buckets */
#define SIM_HIST_BASE 1.02         /* bucket i holds [1.02^i, 1.02^(i+1)) us */
#define SIM_PROGRESS_NS (250 * CLOCK_NS_PER_MS) /* worker -> parent */
#define SIM_MISC_NS CLOCK_NS_PER_S /* mosquitto_loop_misc per client */
#define SIM_CONNECT_TIMEOUT_NS (10 * CLOCK_NS_PER_S)
#define SIM_BACKOFF_MIN_MS 100
#define SIM_BACKOFF_MAX_MS 5000
#define SIM_DISCONNECT_NS (2 * CLOCK_NS_PER_S) /* wait for clean closes */
#define SIM_EVENTS 256             /* epoll events per wait */
#define SIM_LOG_BURST 5            /* warnings logged per worker; the rest
                                      are only counted */
#define SIM_EX_USAGE 64
#define SIM_EX_CONFIG 78

/* Options; plain data, filled by s_parse and read-only afterwards. */
struct sim_conf {
    const char *host;       /* broker host, loopback unless allow_remote */
    int port;               /* broker port */
    bool allow_remote;      /* accept a non-loopback broker */
    long long devices;      /* total devices */
    double rate;            /* messages per second per device */
    int64_t duration;       /* publishing window, ns */
    int64_t wait_connected; /* hold publishing until all are connected,
                               at most this long, ns; 0 = do not wait */
    long long count;        /* messages per device, 0 = no limit */
    long long batch;        /* readings per message; 0 = single object */
    long long procs;        /* worker processes; 0 = as many as needed */
    long long connects;     /* connects in flight per process */
    long long qos;          /* MQTT QoS of publishes */
    long long keepalive;    /* MQTT keepalive, s */
    int64_t drain;          /* wait for outstanding acks at the end, ns */
    int64_t tick;           /* publish scan period, ns */
    int64_t period;         /* daily cycle length, ns */
    double faults;          /* fault probability per reading */
    long long fault_len;    /* mean readings of a step or stuck fault */
    unsigned long long seed; /* signal and fault randomness */
    char run[32];           /* run id in client ids */
    const char *prefix;     /* device id prefix, NULL = "sim-RUN-" */
    const char *username;   /* MQTT username, or NULL */
    const char *labels;     /* fault label file, or NULL */
    const char *report;     /* per-device JSON report, or NULL */
    bool quiet;             /* no progress lines */
};

/* Counters a worker reports to the parent. */
struct sim_counts {
    uint64_t connected;   /* clients connected now */
    uint64_t ever;        /* clients that connected at least once */
    uint64_t sent;        /* messages handed to libmosquitto */
    uint64_t acked;       /* PUBACKs (QoS 1), written (QoS 0) */
    uint64_t readings;    /* readings inside acked messages */
    uint64_t errors;      /* failed connects, lost connections, publishes */
    uint64_t skipped;     /* publishes due while disconnected */
    uint64_t reconnects;  /* successful connects after the first */
    uint64_t faults;      /* faults injected */
    uint64_t unacked_at_loss; /* unacked when a connection dropped; the
                                 library resends them after reconnecting */
};

enum sim_rec_kind {
    SIM_REC_PROGRESS = 1, /* c holds the worker's totals */
    SIM_REC_DEVICE,       /* idx, v[0] sent, v[1] acked */
    SIM_REC_HIST,         /* idx bucket, v[0] count */
    SIM_REC_DONE          /* c holds the final totals */
};

/* One fixed-size record on a worker's pipe (< PIPE_BUF, written whole). */
struct sim_rec {
    uint32_t kind;        /* enum sim_rec_kind */
    uint32_t idx;         /* device number or histogram bucket */
    uint64_t v[2];        /* by kind */
    struct sim_counts c;  /* by kind */
};

enum sim_state {
    SIM_WAIT,       /* not connected; connect at retry_at */
    SIM_CONNECTING, /* TCP connect or CONNACK pending */
    SIM_CONNECTED,  /* CONNACK accepted */
    SIM_CLOSING,    /* DISCONNECT sent at the end */
    SIM_CLOSED      /* done */
};

enum sim_fault_kind { SIM_FAULT_NONE, SIM_FAULT_SPIKE, SIM_FAULT_STEP,
                      SIM_FAULT_STUCK };
static const char *const s_fault_names[] = {"none", "spike", "step", "stuck"};
static const char *const s_metric_names[] = {"temperature", "humidity"};

typedef struct sim_worker sim_worker_t;

/* One simulated device. */
struct sim_dev {
    struct mosquitto *mosq;  /* its MQTT client */
    sim_worker_t *w;         /* owning worker */
    unsigned idx;            /* global device number */
    char *id;                /* device id */
    char *topic;             /* devices/{id}/telemetry */
    enum sim_state state;    /* connection state */
    bool started;            /* mosquitto_connect_async done once */
    bool ever;               /* connected at least once */
    int reg_fd;              /* fd registered with epoll, or -1 */
    bool reg_out;            /* EPOLLOUT in the registration */
    int backoff_ms;          /* next reconnect delay */
    int64_t retry_at;        /* mono ns of the next connect attempt */
    int64_t connect_at;      /* mono ns the pending connect started */
    int64_t next_pub;        /* mono ns of the next publish; 0 = unset */
    int64_t next_misc;       /* mono ns of the next loop_misc */
    int64_t last_ts;         /* last timestamp sent, epoch ms */
    uint64_t sent;           /* messages sent */
    uint64_t acked;          /* messages acknowledged */
    uint64_t rng;            /* xorshift state */
    double t_base;           /* mean temperature */
    double t_amp;            /* daily amplitude */
    double phase;            /* daily phase, radians */
    double t_noise;          /* temperature noise sigma */
    double drift;            /* current drift, degrees */
    double h_base;           /* mean humidity */
    double h_k;              /* humidity change per degree */
    double h_noise;          /* humidity noise sigma */
    int64_t last_sig;        /* timestamp of the last reading, ms */
    enum sim_fault_kind fault; /* active fault */
    int fault_metric;        /* metric index of the active fault */
    long fault_left;         /* readings left in the active fault */
    double fault_val;        /* offset (step) or frozen value (stuck) */
    int64_t fault_start;     /* first affected timestamp, ms */
    int64_t fault_end;       /* last affected timestamp, ms */
    double last_val[2];      /* last values sent, per metric */
    int ring_head;           /* oldest entry in ring */
    int ring_len;            /* entries in ring */
    int ring_mid[SIM_RING];  /* message ids in flight */
    int64_t ring_t[SIM_RING]; /* their send times, mono ns */
};

/* A worker process: a slice of the fleet and its event loop. */
struct sim_worker {
    const struct sim_conf *conf; /* options */
    struct sim_dev *devs;        /* devices [first, first + n) */
    size_t n;                    /* number of devices */
    int epfd;                    /* epoll over the client sockets */
    int sigfd;                   /* signalfd */
    int out;                     /* pipe to the parent */
    int labels;                  /* label file, or -1 */
    char *buf;                   /* payload buffer */
    size_t buf_len;              /* its size */
    struct sim_counts c;         /* totals */
    long connecting;             /* connects in flight */
    size_t cursor;               /* devices below it have been started */
    long warned;                 /* warnings logged so far */
    bool publishing;             /* inside the publishing window */
    bool connecting_ok;          /* before the end: connect and reconnect */
    int ctl;                     /* parent's "go" pipe, or -1 */
    int64_t start;               /* mono ns at start */
    int64_t now;                 /* mono ns of this iteration */
    uint64_t hist[SIM_HIST_N];   /* publish-to-ack latency */
};

static void
s_usage(FILE *f)
{
    fprintf(f,
        "usage: sensorpipe-sim [-hq] [-H host] [-p port] [-n devices] "
        "[-r rate]\n"
        "         [-d duration] [-c count] [-b batch] [-P procs] "
        "[-C connects]\n"
        "         [-W wait] [--qos 0|1|2] [--keepalive s] "
        "[--drain duration]\n"
        "         [--tick duration] [--period duration] [--faults p] "
        "[--fault-len n]\n"
        "         [--labels file] "
        "[--report file] [--seed n] [--run id] [--prefix p]\n"
        "         [--username u] [--allow-remote]\n"
        "  -H, --host HOST       broker (127.0.0.1; loopback only unless "
        "--allow-remote)\n"
        "  -p, --port PORT       broker port (1883)\n"
        "  -n, --devices N       devices, one MQTT connection each (10)\n"
        "  -r, --rate R          messages per second per device (1)\n"
        "  -d, --duration D      publishing window, e.g. 10s, 5m (10s)\n"
        "  -c, --count N         at most N messages per device (no limit)\n"
        "  -b, --batch K         K readings per message, as a JSON array\n"
        "  -P, --procs K         worker processes (as many as the open-file "
        "limit needs)\n"
        "  -C, --connects N      connects in flight per process (25)\n"
        "  -W, --wait-connected D  publish only once every device is "
        "connected\n"
        "                        (waiting at most D)\n"
        "      --qos Q           publish QoS (1)\n"
        "      --keepalive S     MQTT keepalive in seconds (60)\n"
        "      --drain D         wait this long for outstanding acks (10s)\n"
        "      --tick D          publish scan period (1ms)\n"
        "      --period D        length of the temperature cycle (1d)\n"
        "      --faults P        probability a reading starts a fault (0)\n"
        "      --fault-len N     mean readings of a step or stuck fault "
        "(30)\n"
        "      --labels FILE     write injected faults as JSON lines\n"
        "      --report FILE     write per-device sent/acked counts as "
        "JSON\n"
        "      --seed N          randomness of signals and faults (1)\n"
        "      --run ID          run id in client ids sim-ID-N (random)\n"
        "      --prefix P        device ids are P plus the number "
        "(sim-ID-)\n"
        "      --username U      MQTT username; password from "
        "$SENSORPIPE_SIM_PASSWORD\n"
        "  -q, --quiet           no progress line every second\n"
        "  -h, --help            this help\n");
}

/* ---------------------------------------------------------------------
 * Randomness and signals
 */

static uint64_t
s_splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double
s_uniform(uint64_t *rng)
{
    return (double)(s_splitmix(rng) >> 11) * (1.0 / 9007199254740992.0);
}

static double
s_gauss(uint64_t *rng)
{
    double u = s_uniform(rng), v = s_uniform(rng);
    if (u < 1e-300)
        u = 1e-300;
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

static double
s_round2(double v)
{
    return round(v * 100.0) / 100.0;
}

/* Draw a device's signal parameters from the seed and its number, so a
 * device looks the same in every run with the same seed. */
static void
s_dev_signal_init(struct sim_dev *d, unsigned long long seed)
{
    d->rng = seed * 0x9e3779b97f4a7c15ULL ^ ((uint64_t)d->idx + 1) * 0xd1b54a32d192ed03ULL;
    d->t_base = 18.0 + 8.0 * s_uniform(&d->rng);
    d->t_amp = 2.0 + 4.0 * s_uniform(&d->rng);
    d->phase = 2.0 * M_PI * s_uniform(&d->rng);
    d->t_noise = 0.05 + 0.2 * s_uniform(&d->rng);
    d->h_base = 45.0 + 25.0 * s_uniform(&d->rng);
    d->h_k = 1.5 + 2.0 * s_uniform(&d->rng);
    d->h_noise = 0.3 + 0.7 * s_uniform(&d->rng);
}

static void
s_label_write(sim_worker_t *w, struct sim_dev *d)
{
    char line[SIM_ID_MAX + 160];
    int n;

    if (w->labels < 0)
        return;
    n = snprintf(line, sizeof line,
                 "{\"device\":\"%s\",\"metric\":\"%s\",\"start\":%lld,"
                 "\"end\":%lld,\"kind\":\"%s\"}\n",
                 d->id, s_metric_names[d->fault_metric],
                 (long long)d->fault_start, (long long)d->fault_end,
                 s_fault_names[d->fault]);
    /* One write per line on an O_APPEND file keeps the lines of several
     * workers whole. */
    if (write(w->labels, line, (size_t)n) != n)
        log_warn("%s: labels", __func__);
}

/* Compute the two metrics of the reading at ts (epoch ms), applying and
 * advancing the device's fault. */
static void
s_dev_reading(sim_worker_t *w, struct sim_dev *d, int64_t ts, double v[2])
{
    const struct sim_conf *conf = w->conf;
    double dt = d->last_sig ? (double)(ts - d->last_sig) / 1000.0 : 0.0;
    double period_s = (double)conf->period / CLOCK_NS_PER_S;
    double cycle, noise_t;

    d->last_sig = ts;
    /* Ornstein-Uhlenbeck drift: sigma 0.01 per sqrt(s), mean reversion
     * over about six hours, so it wanders without running away. */
    d->drift += -d->drift * dt / 21600.0 + 0.01 * sqrt(dt) * s_gauss(&d->rng);
    cycle = d->t_amp * sin(2.0 * M_PI * fmod((double)ts / 1000.0, period_s) /
                           period_s + d->phase);
    noise_t = d->t_noise * s_gauss(&d->rng);
    v[0] = d->t_base + cycle + d->drift + noise_t;
    v[1] = d->h_base - d->h_k * cycle + d->h_noise * s_gauss(&d->rng);

    if (d->fault == SIM_FAULT_NONE && conf->faults > 0 &&
        s_uniform(&d->rng) < conf->faults) {
        d->fault = (enum sim_fault_kind)(1 + s_splitmix(&d->rng) % 3);
        d->fault_metric = (int)(s_splitmix(&d->rng) % 2);
        d->fault_start = ts;
        double sign = s_uniform(&d->rng) < 0.5 ? -1.0 : 1.0;
        double scale = d->fault_metric == 0 ? 1.0 : 2.5;
        switch (d->fault) {
        case SIM_FAULT_SPIKE:
            d->fault_left = 1;
            d->fault_val = sign * scale * (8.0 + 7.0 * s_uniform(&d->rng));
            break;
        case SIM_FAULT_STEP:
            d->fault_left = conf->fault_len / 2 + 1 +
                            (long)(s_splitmix(&d->rng) % (uint64_t)conf->fault_len);
            d->fault_val = sign * scale * (3.0 + 3.0 * s_uniform(&d->rng));
            break;
        case SIM_FAULT_STUCK:
            d->fault_left = conf->fault_len / 2 + 1 +
                            (long)(s_splitmix(&d->rng) % (uint64_t)conf->fault_len);
            d->fault_val = d->last_val[d->fault_metric] != 0
                               ? d->last_val[d->fault_metric]
                               : v[d->fault_metric];
            break;
        default:
            abort();
        }
        w->c.faults++;
    }
    if (d->fault != SIM_FAULT_NONE) {
        if (d->fault == SIM_FAULT_STUCK)
            v[d->fault_metric] = d->fault_val;
        else
            v[d->fault_metric] += d->fault_val;
        d->fault_end = ts;
        if (--d->fault_left == 0) {
            s_label_write(w, d);
            d->fault = SIM_FAULT_NONE;
        }
    }
    v[0] = s_round2(v[0]);
    v[1] = s_round2(fmin(100.0, fmax(0.0, v[1])));
    d->last_val[0] = v[0];
    d->last_val[1] = v[1];
}

/* Build one message's payload into w->buf; returns its length. The
 * readings of a batch are spread over one message interval, oldest
 * first, ending now. */
static size_t
s_dev_payload(sim_worker_t *w, struct sim_dev *d)
{
    const struct sim_conf *conf = w->conf;
    long long k = conf->batch ? conf->batch : 1;
    int64_t now_ms = clock_now_ns() / CLOCK_NS_PER_MS;
    double step_ms = 1000.0 / conf->rate / (double)k;
    size_t len = 0;

    if (conf->batch)
        w->buf[len++] = '[';
    for (long long j = 0; j < k; j++) {
        int64_t ts = now_ms - (int64_t)((double)(k - 1 - j) * step_ms);
        double v[2];
        char a[40], b[40];
        if (ts <= d->last_ts)
            ts = d->last_ts + 1;
        d->last_ts = ts;
        s_dev_reading(w, d, ts, v);
        len += (size_t)snprintf(w->buf + len, w->buf_len - len,
                                "%s{\"timestamp\":%lld,\"metrics\":"
                                "{\"temperature\":%s,\"humidity\":%s}}",
                                j ? "," : "", (long long)ts,
                                strutil_dtoa(v[0], a, sizeof a),
                                strutil_dtoa(v[1], b, sizeof b));
    }
    if (conf->batch)
        w->buf[len++] = ']';
    w->buf[len] = '\0';
    return len;
}

/* ---------------------------------------------------------------------
 * Latency histogram
 */

static int
s_hist_bucket(int64_t ns)
{
    double us = (double)ns / 1000.0;
    if (us < 1.0)
        return 0;
    int i = (int)(log(us) / log(SIM_HIST_BASE)) + 1;
    return i >= SIM_HIST_N ? SIM_HIST_N - 1 : i;
}

/* Upper bound of bucket i in ms. */
static double
s_hist_ms(int i)
{
    return pow(SIM_HIST_BASE, (double)i) / 1000.0;
}

static double
s_hist_quantile(const uint64_t *h, double q)
{
    uint64_t total = 0, acc = 0;
    for (int i = 0; i < SIM_HIST_N; i++)
        total += h[i];
    if (total == 0)
        return NAN;
    uint64_t want = (uint64_t)ceil(q * (double)total);
    if (want == 0)
        want = 1;
    for (int i = 0; i < SIM_HIST_N; i++) {
        acc += h[i];
        if (acc >= want)
            return s_hist_ms(i);
    }
    return s_hist_ms(SIM_HIST_N - 1);
}

/* ---------------------------------------------------------------------
 * Worker: the devices of one process and their event loop
 */

static void
s_dev_register(sim_worker_t *w, struct sim_dev *d)
{
    int fd = d->mosq ? mosquitto_socket(d->mosq) : -1;
    bool out = fd >= 0 && mosquitto_want_write(d->mosq);
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0u),
                             .data.ptr = d};

    if (fd < 0) {
        /* libmosquitto closed the socket; the kernel dropped it from the
         * epoll set. Never EPOLL_CTL_DEL a stale number: another client
         * may own it by now. */
        d->reg_fd = -1;
        return;
    }
    if (fd == d->reg_fd && out == d->reg_out)
        return;
    if (fd == d->reg_fd) {
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev) == -1 && errno == ENOENT)
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev);
    } else if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) == -1 &&
               errno == EEXIST) {
        epoll_ctl(w->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    d->reg_fd = fd;
    d->reg_out = out;
}

/* True while this worker may still log a warning: a broker restart
 * disconnects every device at once, and thousands of identical lines
 * would bury the one that matters. The counters keep the full story. */
static bool
s_may_warn(sim_worker_t *w)
{
    if (w->warned == SIM_LOG_BURST)
        log_warnx("worker %d: further connection problems are counted, "
                  "not logged", (int)getpid());
    return w->warned++ < SIM_LOG_BURST;
}

static void
s_dev_backoff(sim_worker_t *w, struct sim_dev *d)
{
    int ms = d->backoff_ms;
    d->retry_at = w->now + (int64_t)(ms / 2 + (int)(s_splitmix(&d->rng) % (uint64_t)(ms / 2 + 1))) *
                               CLOCK_NS_PER_MS;
    d->backoff_ms = ms * 2 > SIM_BACKOFF_MAX_MS ? SIM_BACKOFF_MAX_MS : ms * 2;
    d->state = SIM_WAIT;
}

static void
s_on_connect(struct mosquitto *mosq, void *arg, int rc)
{
    struct sim_dev *d = arg;
    sim_worker_t *w = d->w;

    if (d->state != SIM_CONNECTING)
        return;
    w->connecting--;
    if (rc != 0) {
        if (s_may_warn(w))
            log_warnx("%s: %s: connection refused: %s", __func__, d->id,
                      mosquitto_connack_string(rc));
        w->c.errors++;
        s_dev_backoff(w, d);
        return;
    }
    d->state = SIM_CONNECTED;
    d->backoff_ms = SIM_BACKOFF_MIN_MS;
    w->c.connected++;
    if (!d->ever) {
        d->ever = true;
        w->c.ever++;
    } else {
        w->c.reconnects++;
    }
    if (d->next_pub == 0 && w->publishing) {
        /* Spread the fleet's publishes evenly over one interval. */
        d->next_pub = w->now + (int64_t)(s_uniform(&d->rng) * (double)CLOCK_NS_PER_S /
                                         w->conf->rate);
    }
}

static void
s_on_disconnect(struct mosquitto *mosq, void *arg, int rc)
{
    struct sim_dev *d = arg;
    sim_worker_t *w = d->w;

    switch (d->state) {
    case SIM_CONNECTED:
        w->c.connected--;
        w->c.errors++;
        w->c.unacked_at_loss += d->sent - d->acked;
        if (s_may_warn(w))
            log_warnx("%s: %s: connection lost: %s", __func__, d->id,
                      mosquitto_strerror(rc));
        s_dev_backoff(w, d);
        break;
    case SIM_CONNECTING:
        w->connecting--;
        w->c.errors++;
        s_dev_backoff(w, d);
        break;
    case SIM_CLOSING:
        d->state = SIM_CLOSED;
        break;
    default:
        break;
    }
}

static void
s_on_publish(struct mosquitto *mosq, void *arg, int mid)
{
    struct sim_dev *d = arg;
    sim_worker_t *w = d->w;

    d->acked++;
    w->c.acked++;
    w->c.readings += (uint64_t)(w->conf->batch ? w->conf->batch : 1);
    /* Acks come back in order on one connection; drop entries older than
     * this mid (their acks were counted but their times are lost only if
     * the ring overflowed). */
    while (d->ring_len > 0) {
        int i = d->ring_head;
        d->ring_head = (d->ring_head + 1) % SIM_RING;
        d->ring_len--;
        if (d->ring_mid[i] == mid) {
            w->hist[s_hist_bucket(clock_mono_ns() - d->ring_t[i])]++;
            break;
        }
    }
}

static void
s_dev_publish(sim_worker_t *w, struct sim_dev *d)
{
    const struct sim_conf *conf = w->conf;
    size_t len = s_dev_payload(w, d);
    int mid = 0;
    int rc = mosquitto_publish(d->mosq, &mid, d->topic, (int)len, w->buf,
                               (int)conf->qos, false);
    int64_t t = clock_mono_ns();

    /* With QoS > 0 libmosquitto keeps the message whenever it gave it a
     * mid, even when the immediate write failed; it resends after the
     * reconnect, so it counts as sent and its ack will come. */
    if (rc == MOSQ_ERR_SUCCESS ||
        (conf->qos > 0 && mid != 0 &&
         (rc == MOSQ_ERR_CONN_LOST || rc == MOSQ_ERR_ERRNO ||
          rc == MOSQ_ERR_NO_CONN))) {
        d->sent++;
        w->c.sent++;
        /* QoS 0 has no ack: on_publish ran inside the write already. */
        if (conf->qos == 0)
            return;
        if (d->ring_len == SIM_RING) {
            d->ring_head = (d->ring_head + 1) % SIM_RING;
            d->ring_len--;
        }
        int i = (d->ring_head + d->ring_len) % SIM_RING;
        d->ring_mid[i] = mid;
        d->ring_t[i] = t;
        d->ring_len++;
    } else {
        w->c.errors++;
        if (s_may_warn(w))
            log_warnx("%s: %s: %s", __func__, d->id, mosquitto_strerror(rc));
    }
    if (rc != MOSQ_ERR_SUCCESS && d->mosq &&
        mosquitto_socket(d->mosq) < 0 && d->state == SIM_CONNECTED)
        s_on_disconnect(d->mosq, d, rc);
}

static void
s_dev_connect(sim_worker_t *w, struct sim_dev *d)
{
    const struct sim_conf *conf = w->conf;
    int rc;

    if (d->started) {
        rc = mosquitto_reconnect_async(d->mosq);
    } else {
        rc = mosquitto_connect_async(d->mosq, conf->host, conf->port,
                                     (int)conf->keepalive);
        d->started = true;
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        w->c.errors++;
        log_debug("%s: %s: %s", __func__, d->id,
                  rc == MOSQ_ERR_ERRNO ? strerror(errno)
                                       : mosquitto_strerror(rc));
        s_dev_backoff(w, d);
        return;
    }
    d->state = SIM_CONNECTING;
    d->connect_at = w->now;
    d->next_misc = w->now + SIM_MISC_NS;
    w->connecting++;
}

static void
s_dev_event(sim_worker_t *w, struct sim_dev *d, uint32_t events)
{
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        mosquitto_loop_read(d->mosq, 1);
    if ((events & EPOLLOUT) && mosquitto_socket(d->mosq) >= 0)
        mosquitto_loop_write(d->mosq, 1);
    s_dev_register(w, d);
}

/* Connects, due publishes and keepalives, once per tick. */
static void
s_worker_scan(sim_worker_t *w, int64_t end)
{
    const struct sim_conf *conf = w->conf;
    int64_t interval = (int64_t)((double)CLOCK_NS_PER_S / conf->rate);

    for (size_t i = 0; i < w->n; i++) {
        struct sim_dev *d = &w->devs[i];
        bool acted = false;
        switch (d->state) {
        case SIM_WAIT:
            /* After the window, reconnect only devices whose unacked
             * messages libmosquitto will resend. */
            if (d->retry_at <= w->now && w->connecting < conf->connects &&
                (w->connecting_ok ||
                 (d->started && d->sent > d->acked))) {
                s_dev_connect(w, d);
                acted = true;
            }
            if (d->next_pub && w->publishing) {
                /* Publishes due while disconnected are skipped, not
                 * queued: a device that cannot reach the broker misses
                 * them. libmosquitto still resends what it holds. */
                while (d->next_pub <= w->now && d->next_pub < end &&
                       (conf->count == 0 ||
                        d->sent < (uint64_t)conf->count)) {
                    w->c.skipped++;
                    d->next_pub += interval;
                }
            }
            break;
        case SIM_CONNECTING:
            if (w->now - d->connect_at > SIM_CONNECT_TIMEOUT_NS) {
                log_debug("%s: %s: connect timed out", __func__, d->id);
                w->connecting--;
                w->c.errors++;
                s_dev_backoff(w, d);
                break;
            }
            if (d->next_misc <= w->now) {
                mosquitto_loop_misc(d->mosq);
                d->next_misc = w->now + SIM_MISC_NS;
                acted = true;
            }
            break;
        case SIM_CONNECTED:
            if (w->publishing && d->next_pub <= w->now && d->next_pub < end &&
                (conf->count == 0 || d->sent < (uint64_t)conf->count)) {
                s_dev_publish(w, d);
                acted = true;
                d->next_pub += interval;
                /* A device that fell more than one interval behind (a
                 * stalled loop) does not burst to catch up. */
                if (d->next_pub < w->now)
                    d->next_pub = w->now + interval;
            }
            if (d->state == SIM_CONNECTED && d->next_misc <= w->now) {
                mosquitto_loop_misc(d->mosq);
                d->next_misc = w->now + SIM_MISC_NS;
                acted = true;
            }
            break;
        case SIM_CLOSING:
        case SIM_CLOSED:
            break;
        }
        /* Only a call into libmosquitto can change what a client waits
         * for; the rest of the fleet keeps its registration. */
        if (acted)
            s_dev_register(w, d);
    }
}

static void
s_worker_send(sim_worker_t *w, const struct sim_rec *r)
{
    const char *p = (const char *)r;
    size_t left = sizeof *r;
    while (left > 0) {
        ssize_t n = write(w->out, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_warn("%s: pipe to parent", __func__);
            return;
        }
        p += n;
        left -= (size_t)n;
    }
}

static void
s_worker_progress(sim_worker_t *w, enum sim_rec_kind kind)
{
    struct sim_rec r = {.kind = kind, .c = w->c};
    s_worker_send(w, &r);
}

static bool
s_worker_all_done(sim_worker_t *w)
{
    const struct sim_conf *conf = w->conf;
    if (conf->count == 0)
        return false;
    for (size_t i = 0; i < w->n; i++)
        if (w->devs[i].sent < (uint64_t)conf->count)
            return false;
    return true;
}

/* Start first connects as soon as earlier ones finish, without waiting
 * for the next scan: the in-flight bound, not the tick, paces them. */
static void
s_worker_connect_more(sim_worker_t *w)
{
    while (w->cursor < w->n && w->connecting < w->conf->connects &&
           w->connecting_ok) {
        struct sim_dev *d = &w->devs[w->cursor++];
        if (!d->started && d->state == SIM_WAIT) {
            s_dev_connect(w, d);
            s_dev_register(w, d);
        }
    }
}

/* Wait for events until deadline (mono ns) or the next scan. */
static void
s_worker_wait(sim_worker_t *w, int64_t until)
{
    struct epoll_event ev[SIM_EVENTS];
    int64_t now = clock_mono_ns();
    int timeout = until > now ? (int)((until - now + 999999) / 1000000) : 0;
    int n = epoll_wait(w->epfd, ev, SIM_EVENTS, timeout);

    w->now = clock_mono_ns();
    for (int i = 0; i < n; i++) {
        if (ev[i].data.ptr == NULL || ev[i].data.ptr == w)
            continue; /* the signalfd and the go pipe: polled by the caller */
        s_dev_event(w, ev[i].data.ptr, ev[i].events);
    }
    s_worker_connect_more(w);
}

enum sim_phase {
    SIM_PH_RAMP,  /* connecting, waiting for the parent's go */
    SIM_PH_RUN,   /* publishing window */
    SIM_PH_DRAIN, /* waiting for outstanding acks */
    SIM_PH_CLOSE, /* disconnecting */
    SIM_PH_END
};

/* True when the parent said go (a byte on the control pipe) or is gone. */
static bool
s_worker_go(sim_worker_t *w)
{
    char c;
    ssize_t n = read(w->ctl, &c, 1);
    return n == 1 || n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

/* Open the publishing window now; each device's first publish falls at
 * a random point of its first interval so the fleet does not burst. */
static int64_t
s_worker_open(sim_worker_t *w)
{
    double interval = (double)CLOCK_NS_PER_S / w->conf->rate;
    w->start = w->now;
    w->publishing = true;
    for (size_t i = 0; i < w->n; i++) {
        struct sim_dev *d = &w->devs[i];
        d->next_pub = w->start + (int64_t)(s_uniform(&d->rng) * interval);
    }
    return w->start + w->conf->duration;
}

static int
s_worker_run(sim_worker_t *w)
{
    const struct sim_conf *conf = w->conf;
    int64_t end = INT64_MAX;
    int64_t next_scan = w->start, next_progress = w->start + SIM_PROGRESS_NS;
    int64_t deadline = 0;
    enum sim_phase phase = SIM_PH_RAMP;
    struct epoll_event sev = {.events = EPOLLIN, .data.ptr = NULL};
    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = w};

    epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->sigfd, &sev);
    w->connecting_ok = true;
    if (w->ctl >= 0) {
        epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->ctl, &cev);
    } else {
        phase = SIM_PH_RUN;
        end = s_worker_open(w);
    }
    while (phase != SIM_PH_END) {
        s_worker_wait(w, next_scan < next_progress ? next_scan : next_progress);
        if (phase == SIM_PH_RAMP && s_worker_go(w)) {
            phase = SIM_PH_RUN;
            end = s_worker_open(w);
            epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->ctl, NULL);
        }
        int sig = sig_read(w->sigfd);
        if (sig == SIGTERM || sig == SIGINT) {
            if (phase == SIM_PH_RUN || phase == SIM_PH_RAMP) {
                log_debug("stopping on signal %d", sig);
                phase = SIM_PH_DRAIN;
                w->publishing = w->connecting_ok = false;
                deadline = w->now + conf->drain;
            } else {
                deadline = w->now; /* a second signal skips the wait */
            }
        }
        if (w->now >= next_scan) {
            s_worker_scan(w, end);
            next_scan = w->now + conf->tick;
        }
        if (w->now >= next_progress) {
            s_worker_progress(w, SIM_REC_PROGRESS);
            next_progress = w->now + SIM_PROGRESS_NS;
        }
        if (phase == SIM_PH_RUN &&
            (w->now >= end || s_worker_all_done(w))) {
            phase = SIM_PH_DRAIN;
            w->publishing = w->connecting_ok = false;
            deadline = w->now + conf->drain;
        }
        if (phase == SIM_PH_DRAIN &&
            (w->c.acked >= w->c.sent || w->now >= deadline)) {
            phase = SIM_PH_CLOSE;
            deadline = w->now + SIM_DISCONNECT_NS;
            for (size_t i = 0; i < w->n; i++) {
                struct sim_dev *d = &w->devs[i];
                if (d->state == SIM_CONNECTED) {
                    w->c.connected--;
                    d->state = SIM_CLOSING;
                    if (mosquitto_disconnect(d->mosq) != MOSQ_ERR_SUCCESS)
                        d->state = SIM_CLOSED;
                } else {
                    if (d->state == SIM_CONNECTING)
                        w->connecting--;
                    d->state = SIM_CLOSED;
                }
                s_dev_register(w, d);
            }
        }
        if (phase == SIM_PH_CLOSE) {
            bool open = false;
            for (size_t i = 0; i < w->n && !open; i++)
                open = w->devs[i].state == SIM_CLOSING;
            if (!open || w->now >= deadline)
                phase = SIM_PH_END;
        }
    }
    return 0;
}

static sim_worker_t *
s_worker_new(const struct sim_conf *conf, size_t first, size_t n, int out,
             int ctl, int sigfd)
{
    sim_worker_t *w = xcalloc(1, sizeof *w);
    long long k = conf->batch ? conf->batch : 1;

    w->conf = conf;
    w->n = n;
    w->out = out;
    w->ctl = ctl;
    w->sigfd = sigfd;
    w->labels = -1;
    w->buf_len = (size_t)k * SIM_READING_MAX + 16;
    w->buf = xmalloc(w->buf_len);
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd == -1)
        fatal("epoll_create1");
    if (conf->labels) {
        w->labels = open(conf->labels, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (w->labels == -1)
            fatal("open %s", conf->labels);
    }
    w->devs = xcalloc(n, sizeof *w->devs);
    for (size_t i = 0; i < n; i++) {
        struct sim_dev *d = &w->devs[i];
        char cid[SIM_ID_MAX];
        d->w = w;
        d->idx = (unsigned)(first + i);
        d->reg_fd = -1;
        d->backoff_ms = SIM_BACKOFF_MIN_MS;
        if (conf->prefix)
            d->id = xasprintf("%s%05u", conf->prefix, d->idx);
        else
            d->id = xasprintf("sim-%s-%05u", conf->run, d->idx);
        d->topic = xasprintf("devices/%s/telemetry", d->id);
        snprintf(cid, sizeof cid, "sim-%s-%u", conf->run, d->idx);
        s_dev_signal_init(d, conf->seed);
        d->mosq = mosquitto_new(cid, true, d);
        if (d->mosq == NULL)
            fatal("mosquitto_new");
        mosquitto_int_option(d->mosq, MOSQ_OPT_TCP_NODELAY, 1);
        mosquitto_connect_callback_set(d->mosq, s_on_connect);
        mosquitto_disconnect_callback_set(d->mosq, s_on_disconnect);
        mosquitto_publish_callback_set(d->mosq, s_on_publish);
        if (conf->username) {
            const char *pw = getenv("SENSORPIPE_SIM_PASSWORD");
            mosquitto_username_pw_set(d->mosq, conf->username, pw);
        }
    }
    /* The publishing window starts once every client exists: creating
     * thousands takes a noticeable fraction of a second. */
    w->start = w->now = clock_mono_ns();
    for (size_t i = 0; i < n; i++)
        w->devs[i].retry_at = w->start;
    return w;
}

static void
s_worker_destroy(sim_worker_t **self_p)
{
    sim_worker_t *w = *self_p;
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n; i++) {
        struct sim_dev *d = &w->devs[i];
        if (d->fault != SIM_FAULT_NONE)
            s_label_write(w, d); /* cut short by the end of the run */
        mosquitto_destroy(d->mosq);
        free(d->id);
        free(d->topic);
    }
    free(w->devs);
    free(w->buf);
    if (w->labels >= 0)
        close(w->labels);
    close(w->epfd);
    free(w);
    *self_p = NULL;
}

/* The body of one worker process. */
static int
s_worker_main(const struct sim_conf *conf, size_t first, size_t n, int out,
              int ctl, int sigfd)
{
    sim_worker_t *w = s_worker_new(conf, first, n, out, ctl, sigfd);
    int rc = s_worker_run(w);

    for (size_t i = 0; i < w->n; i++) {
        struct sim_rec r = {.kind = SIM_REC_DEVICE,
                            .idx = w->devs[i].idx,
                            .v = {w->devs[i].sent, w->devs[i].acked}};
        s_worker_send(w, &r);
    }
    for (int i = 0; i < SIM_HIST_N; i++) {
        if (w->hist[i] == 0)
            continue;
        struct sim_rec r = {.kind = SIM_REC_HIST, .idx = (uint32_t)i,
                            .v = {w->hist[i], 0}};
        s_worker_send(w, &r);
    }
    s_worker_progress(w, SIM_REC_DONE);
    s_worker_destroy(&w);
    return rc;
}

/* ---------------------------------------------------------------------
 * Parent: workers, progress, summary, report
 */

struct sim_child {
    pid_t pid;              /* worker process */
    int fd;                 /* read end of its pipe, -1 at EOF */
    int ctl;                /* write end of its go pipe, or -1 */
    size_t have;            /* bytes of a partial record in buf */
    char buf[sizeof(struct sim_rec)]; /* partial record */
    struct sim_counts c;    /* its latest totals */
    bool done;              /* SIM_REC_DONE received */
};

static void
s_counts_add(struct sim_counts *a, const struct sim_counts *b)
{
    a->connected += b->connected;
    a->ever += b->ever;
    a->sent += b->sent;
    a->acked += b->acked;
    a->readings += b->readings;
    a->errors += b->errors;
    a->skipped += b->skipped;
    a->reconnects += b->reconnects;
    a->faults += b->faults;
    a->unacked_at_loss += b->unacked_at_loss;
}

static void
s_child_record(struct sim_child *ch, const struct sim_rec *r, uint64_t *sent,
               uint64_t *acked, uint64_t *hist, size_t ndev)
{
    switch (r->kind) {
    case SIM_REC_PROGRESS:
        ch->c = r->c;
        break;
    case SIM_REC_DONE:
        ch->c = r->c;
        ch->done = true;
        break;
    case SIM_REC_DEVICE:
        if (r->idx < ndev) {
            sent[r->idx] = r->v[0];
            acked[r->idx] = r->v[1];
        }
        break;
    case SIM_REC_HIST:
        if (r->idx < SIM_HIST_N)
            hist[r->idx] += r->v[0];
        break;
    default:
        log_warnx("%s: unknown record %u from worker %d", __func__, r->kind,
                  (int)ch->pid);
    }
}

static int
s_write_report(const struct sim_conf *conf, const struct sim_counts *t,
               const uint64_t *sent, const uint64_t *acked, double secs,
               const uint64_t *hist)
{
    char *tmp = xasprintf("%s.tmp", conf->report);
    FILE *f = fopen(tmp, "w");
    char p50[40], p99[40], a[40];
    int rc = -1;

    if (f == NULL) {
        log_warn("%s: %s", __func__, tmp);
        free(tmp);
        return -1;
    }
    double q50 = s_hist_quantile(hist, 0.5), q99 = s_hist_quantile(hist, 0.99);
    fprintf(f,
            "{\"run\":\"%s\",\"devices\":%lld,\"qos\":%lld,"
            "\"readings_per_message\":%lld,\"metrics\":[\"temperature\","
            "\"humidity\"],\"seconds\":%s,\"sent\":%llu,\"acked\":%llu,"
            "\"readings\":%llu,\"errors\":%llu,\"skipped\":%llu,"
            "\"reconnects\":%llu,\"unacked_at_loss\":%llu,"
            "\"faults\":%llu,\"ack_ms_p50\":%s,"
            "\"ack_ms_p99\":%s,\"per_device\":[",
            conf->run, conf->devices, conf->qos,
            conf->batch ? conf->batch : 1, strutil_dtoa(secs, a, sizeof a),
            (unsigned long long)t->sent, (unsigned long long)t->acked,
            (unsigned long long)t->readings, (unsigned long long)t->errors,
            (unsigned long long)t->skipped,
            (unsigned long long)t->reconnects,
            (unsigned long long)t->unacked_at_loss,
            (unsigned long long)t->faults,
            strutil_dtoa(q50, p50, sizeof p50),
            strutil_dtoa(q99, p99, sizeof p99));
    for (long long i = 0; i < conf->devices; i++) {
        if (conf->prefix)
            fprintf(f, "%s\n{\"device\":\"%s%05lld\"", i ? "," : "",
                    conf->prefix, i);
        else
            fprintf(f, "%s\n{\"device\":\"sim-%s-%05lld\"", i ? "," : "",
                    conf->run, i);
        fprintf(f, ",\"sent\":%llu,\"acked\":%llu}",
                (unsigned long long)sent[i], (unsigned long long)acked[i]);
    }
    fprintf(f, "]}\n");
    if (fflush(f) == 0 && ferror(f) == 0 && rename(tmp, conf->report) == 0)
        rc = 0;
    else
        log_warn("%s: %s", __func__, conf->report);
    fclose(f);
    free(tmp);
    return rc;
}

static void
s_progress_line(const struct sim_conf *conf, double secs,
                const struct sim_counts *t, const struct sim_counts *prev,
                double dt)
{
    fprintf(stderr,
            "sensorpipe-sim: %5.1fs connected %llu/%lld sent %llu (%.0f/s) acked %llu "
            "(%.0f/s) inflight %llu errors %llu skipped %llu\n",
            secs, (unsigned long long)t->connected, conf->devices,
            (unsigned long long)t->sent,
            dt > 0 ? (double)(t->sent - prev->sent) / dt : 0.0,
            (unsigned long long)t->acked,
            dt > 0 ? (double)(t->acked - prev->acked) / dt : 0.0,
            (unsigned long long)(t->sent - t->acked),
            (unsigned long long)t->errors, (unsigned long long)t->skipped);
}

static int
s_parent(const struct sim_conf *conf, int sigfd)
{
    size_t k = (size_t)conf->procs, ndev = (size_t)conf->devices;
    struct sim_child *ch = xcalloc(k, sizeof *ch);
    uint64_t *sent = xcalloc(ndev, sizeof *sent);
    uint64_t *acked = xcalloc(ndev, sizeof *acked);
    uint64_t *hist = xcalloc(SIM_HIST_N, sizeof *hist);
    struct pollfd *pfd = xcalloc(k + 1, sizeof *pfd);
    struct sim_counts t = {0}, prev = {0};
    int64_t start = clock_mono_ns(), last = start;
    int64_t next_line = start + CLOCK_NS_PER_S;
    int status = 0, signals = 0;
    size_t open_pipes = 0;
    bool go = conf->wait_connected == 0;

    for (size_t i = 0; i < k; i++) {
        int p[2], c[2] = {-1, -1};
        size_t first = ndev * i / k, last_dev = ndev * (i + 1) / k;
        if (pipe2(p, O_CLOEXEC) == -1)
            fatal("pipe");
        if (!go && pipe2(c, O_CLOEXEC) == -1)
            fatal("pipe");
        if (c[0] >= 0)
            fcntl(c[0], F_SETFL, O_NONBLOCK);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == -1)
            fatal("fork");
        if (pid == 0) {
            /* The worker dies with the parent, so a killed run leaves no
             * orphans connected to the broker. */
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() == 1)
                _exit(1);
            close(p[0]);
            if (c[1] >= 0)
                close(c[1]);
            for (size_t j = 0; j < i; j++) {
                close(ch[j].fd);
                if (ch[j].ctl >= 0)
                    close(ch[j].ctl);
            }
            free(ch);
            free(sent);
            free(acked);
            free(hist);
            free(pfd);
            int rc = s_worker_main(conf, first, last_dev - first, p[1], c[0],
                                   sigfd);
            close(p[1]);
            if (c[0] >= 0)
                close(c[0]);
            close(sigfd);
            mosquitto_lib_cleanup();
            exit(rc);
        }
        close(p[1]);
        if (c[0] >= 0)
            close(c[0]);
        ch[i].pid = pid;
        ch[i].fd = p[0];
        ch[i].ctl = c[1];
        open_pipes++;
    }

    while (open_pipes > 0) {
        for (size_t i = 0; i < k; i++) {
            pfd[i].fd = ch[i].fd;
            pfd[i].events = POLLIN;
        }
        pfd[k].fd = sigfd;
        pfd[k].events = POLLIN;
        int64_t now = clock_mono_ns();
        int timeout = next_line > now ? (int)((next_line - now) / CLOCK_NS_PER_MS) + 1 : 0;
        if (poll(pfd, k + 1, timeout) == -1 && errno != EINTR)
            fatal("poll");
        if (pfd[k].revents & POLLIN) {
            int sig;
            while ((sig = sig_read(sigfd)) > 0) {
                if (sig != SIGTERM && sig != SIGINT)
                    continue;
                signals++;
                for (size_t i = 0; i < k; i++)
                    if (ch[i].fd >= 0)
                        kill(ch[i].pid, SIGTERM);
            }
        }
        for (size_t i = 0; i < k; i++) {
            if (ch[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char buf[64 * sizeof(struct sim_rec)];
            memcpy(buf, ch[i].buf, ch[i].have);
            ssize_t n = read(ch[i].fd, buf + ch[i].have, sizeof buf - ch[i].have);
            if (n <= 0) {
                if (n < 0 && errno == EINTR)
                    continue;
                close(ch[i].fd);
                ch[i].fd = -1;
                open_pipes--;
                continue;
            }
            size_t total = ch[i].have + (size_t)n, off = 0;
            while (total - off >= sizeof(struct sim_rec)) {
                struct sim_rec r;
                memcpy(&r, buf + off, sizeof r);
                s_child_record(&ch[i], &r, sent, acked, hist, ndev);
                off += sizeof r;
            }
            ch[i].have = total - off;
            memcpy(ch[i].buf, buf + off, ch[i].have);
        }
        now = clock_mono_ns();
        if (!go) {
            /* --wait-connected: every worker opens its publishing window
             * when the whole fleet is connected (or the wait is over). */
            uint64_t ever = 0;
            for (size_t i = 0; i < k; i++)
                ever += ch[i].c.ever;
            if (ever == ndev || now - start >= conf->wait_connected ||
                signals > 0) {
                log_info("%llu of %zu devices connected after %.2fs; "
                         "publishing", (unsigned long long)ever, ndev,
                         (double)(now - start) / CLOCK_NS_PER_S);
                for (size_t i = 0; i < k; i++) {
                    if (write(ch[i].ctl, "g", 1) != 1)
                        log_warn("go to worker %d", (int)ch[i].pid);
                    close(ch[i].ctl);
                    ch[i].ctl = -1;
                }
                go = true;
            }
        }
        if (now >= next_line) {
            memset(&t, 0, sizeof t);
            for (size_t i = 0; i < k; i++)
                s_counts_add(&t, &ch[i].c);
            if (!conf->quiet)
                s_progress_line(conf, (double)(now - start) / CLOCK_NS_PER_S,
                                &t, &prev,
                                (double)(now - last) / CLOCK_NS_PER_S);
            prev = t;
            last = now;
            next_line += CLOCK_NS_PER_S;
            if (next_line < now)
                next_line = now + CLOCK_NS_PER_S;
        }
    }
    for (size_t i = 0; i < k; i++) {
        int ws;
        while (waitpid(ch[i].pid, &ws, 0) == -1 && errno == EINTR)
            ;
        if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0 || !ch[i].done) {
            log_warnx("worker %d failed (%s %d)", (int)ch[i].pid,
                      WIFEXITED(ws) ? "exit" : "signal",
                      WIFEXITED(ws) ? WEXITSTATUS(ws) : WTERMSIG(ws));
            status = 1;
        }
    }

    double secs = (double)(clock_mono_ns() - start) / CLOCK_NS_PER_S;
    memset(&t, 0, sizeof t);
    for (size_t i = 0; i < k; i++)
        s_counts_add(&t, &ch[i].c);
    double q50 = s_hist_quantile(hist, 0.5), q99 = s_hist_quantile(hist, 0.99);
    fprintf(stderr,
            "sensorpipe-sim: done in %.2fs: devices %lld (connected at least once %llu, "
            "reconnects %llu, unacked at a loss %llu), sent %llu, "
            "acked %llu, unacked %llu, "
            "readings %llu, errors %llu, skipped %llu, faults %llu, "
            "%.0f msg/s, ack latency p50 %.2f ms p99 %.2f ms\n",
            secs, conf->devices, (unsigned long long)t.ever,
            (unsigned long long)t.reconnects,
            (unsigned long long)t.unacked_at_loss, (unsigned long long)t.sent,
            (unsigned long long)t.acked,
            (unsigned long long)(t.sent - t.acked),
            (unsigned long long)t.readings, (unsigned long long)t.errors,
            (unsigned long long)t.skipped, (unsigned long long)t.faults,
            secs > 0 ? (double)t.acked / secs : 0.0, q50, q99);
    if (conf->report &&
        s_write_report(conf, &t, sent, acked, secs, hist) == -1)
        status = 1;
    if (t.acked != t.sent || t.ever != (uint64_t)conf->devices)
        status = status ? status : 1;
    free(ch);
    free(sent);
    free(acked);
    free(hist);
    free(pfd);
    return status;
}

/* ---------------------------------------------------------------------
 * Options
 */

/* True when every address host resolves to is a loopback address. */
static bool
s_is_loopback(const char *host)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
    bool ok = true;

    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return false;
    for (ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *s = (const void *)ai->ai_addr;
            if ((ntohl(s->sin_addr.s_addr) >> 24) != 127)
                ok = false;
        } else if (ai->ai_family == AF_INET6) {
            const struct sockaddr_in6 *s = (const void *)ai->ai_addr;
            const uint8_t *b = s->sin6_addr.s6_addr;
            if (!IN6_IS_ADDR_LOOPBACK(&s->sin6_addr) &&
                !(IN6_IS_ADDR_V4MAPPED(&s->sin6_addr) && b[12] == 127))
                ok = false;
        } else {
            ok = false;
        }
    }
    freeaddrinfo(res);
    return ok;
}

static bool
s_id_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              (*s >= '0' && *s <= '9') || *s == '-' || *s == '_' ||
              *s == '.' || *s == ':'))
            return false;
    return true;
}

enum {
    OPT_QOS = 256, OPT_KEEPALIVE, OPT_DRAIN, OPT_TICK, OPT_PERIOD,
    OPT_FAULTS, OPT_FAULT_LEN, OPT_LABELS, OPT_REPORT, OPT_SEED, OPT_RUN,
    OPT_PREFIX, OPT_USERNAME, OPT_ALLOW_REMOTE
};

static const struct option s_longopts[] = {
    {"host", required_argument, NULL, 'H'},
    {"port", required_argument, NULL, 'p'},
    {"devices", required_argument, NULL, 'n'},
    {"rate", required_argument, NULL, 'r'},
    {"duration", required_argument, NULL, 'd'},
    {"count", required_argument, NULL, 'c'},
    {"batch", required_argument, NULL, 'b'},
    {"procs", required_argument, NULL, 'P'},
    {"connects", required_argument, NULL, 'C'},
    {"wait-connected", required_argument, NULL, 'W'},
    {"quiet", no_argument, NULL, 'q'},
    {"help", no_argument, NULL, 'h'},
    {"qos", required_argument, NULL, OPT_QOS},
    {"keepalive", required_argument, NULL, OPT_KEEPALIVE},
    {"drain", required_argument, NULL, OPT_DRAIN},
    {"tick", required_argument, NULL, OPT_TICK},
    {"period", required_argument, NULL, OPT_PERIOD},
    {"faults", required_argument, NULL, OPT_FAULTS},
    {"fault-len", required_argument, NULL, OPT_FAULT_LEN},
    {"labels", required_argument, NULL, OPT_LABELS},
    {"report", required_argument, NULL, OPT_REPORT},
    {"seed", required_argument, NULL, OPT_SEED},
    {"run", required_argument, NULL, OPT_RUN},
    {"prefix", required_argument, NULL, OPT_PREFIX},
    {"username", required_argument, NULL, OPT_USERNAME},
    {"allow-remote", no_argument, NULL, OPT_ALLOW_REMOTE},
    {NULL, 0, NULL, 0}};

static int
s_bad(const char *opt, const char *val)
{
    char q[CFG_QUOTE_BUF];
    fprintf(stderr, "sensorpipe-sim: invalid %s: '%s'\n", opt,
            cfg_quote(val, q, sizeof q));
    return SIM_EX_USAGE;
}

/* getopt stopped at an option it does not know or that lacks its value:
 * one line naming it (a letter, also inside -abx, or the long option). */
static int
s_bad_opt(const char *what, char **argv)
{
    char q[CFG_QUOTE_BUF], letter[3] = {'-', (char)optopt, '\0'};
    fprintf(stderr, "sensorpipe-sim: %s '%s' (see --help)\n", what,
            optopt ? letter : cfg_quote(argv[optind - 1], q, sizeof q));
    return SIM_EX_USAGE;
}

/* Parse argv into conf. Returns -1 to run, or the exit status. */
static int
s_parse(struct sim_conf *conf, int argc, char **argv)
{
    long long ll;
    int c;

    *conf = (struct sim_conf){.host = "127.0.0.1",
                              .port = 1883,
                              .devices = 10,
                              .rate = 1.0,
                              .duration = 10 * CLOCK_NS_PER_S,
                              .connects = 25,
                              .qos = 1,
                              .keepalive = 60,
                              .drain = 10 * CLOCK_NS_PER_S,
                              .tick = CLOCK_NS_PER_MS,
                              .period = 86400 * CLOCK_NS_PER_S,
                              .fault_len = 30,
                              .seed = 1};
    snprintf(conf->run, sizeof conf->run, "%x",
             (unsigned)((uint64_t)clock_now_ns() / 1000 ^ (uint64_t)getpid() << 16) &
                 0xffffffu);
    opterr = 0; /* our own one-line errors, which name the option */
    while ((c = getopt_long(argc, argv, ":H:p:n:r:d:c:b:P:C:W:qh", s_longopts,
                            NULL)) != -1) {
        switch (c) {
        case 'H': conf->host = optarg; break;
        case 'p':
            if (strutil_toll(optarg, 1, 65535, &ll))
                return s_bad("--port", optarg);
            conf->port = (int)ll;
            break;
        case 'n':
            if (strutil_toll(optarg, 1, SIM_DEVICES_MAX, &conf->devices))
                return s_bad("--devices", optarg);
            break;
        case 'r':
            if (strutil_tod(optarg, &conf->rate) || conf->rate <= 0 ||
                conf->rate > 1000)
                return s_bad("--rate (0 < r <= 1000)", optarg);
            break;
        case 'd':
            if (clock_parse_duration(optarg, &conf->duration) ||
                conf->duration > 7 * 86400 * CLOCK_NS_PER_S)
                return s_bad("--duration (up to 7d)", optarg);
            break;
        case 'c':
            if (strutil_toll(optarg, 1, LLONG_MAX, &conf->count))
                return s_bad("--count", optarg);
            break;
        case 'b':
            if (strutil_toll(optarg, 1, SIM_BATCH_MAX, &conf->batch))
                return s_bad("--batch (1..1000)", optarg);
            break;
        case 'P':
            if (strutil_toll(optarg, 1, SIM_PROCS_MAX, &conf->procs))
                return s_bad("--procs (1..64)", optarg);
            break;
        case 'C':
            if (strutil_toll(optarg, 1, 10000, &conf->connects))
                return s_bad("--connects", optarg);
            break;
        case 'W':
            if (clock_parse_duration(optarg, &conf->wait_connected) ||
                conf->wait_connected > 3600 * CLOCK_NS_PER_S)
                return s_bad("--wait-connected (up to 1h)", optarg);
            break;
        case 'q': conf->quiet = true; break;
        case 'h': s_usage(stdout); return 0;
        case OPT_QOS:
            if (strutil_toll(optarg, 0, 2, &conf->qos))
                return s_bad("--qos", optarg);
            break;
        case OPT_KEEPALIVE:
            if (strutil_toll(optarg, 5, 65535, &conf->keepalive))
                return s_bad("--keepalive (5..65535)", optarg);
            break;
        case OPT_DRAIN:
            if (clock_parse_duration(optarg, &conf->drain))
                return s_bad("--drain", optarg);
            break;
        case OPT_TICK:
            if (clock_parse_duration(optarg, &conf->tick) ||
                conf->tick > CLOCK_NS_PER_S)
                return s_bad("--tick (up to 1s)", optarg);
            break;
        case OPT_PERIOD:
            if (clock_parse_duration(optarg, &conf->period))
                return s_bad("--period", optarg);
            break;
        case OPT_FAULTS:
            if (strutil_tod(optarg, &conf->faults) || conf->faults < 0 ||
                conf->faults > 1)
                return s_bad("--faults (0..1)", optarg);
            break;
        case OPT_FAULT_LEN:
            if (strutil_toll(optarg, 1, 1000000, &conf->fault_len))
                return s_bad("--fault-len", optarg);
            break;
        case OPT_LABELS: conf->labels = optarg; break;
        case OPT_REPORT: conf->report = optarg; break;
        case OPT_SEED:
            if (strutil_toll(optarg, 0, LLONG_MAX, &ll))
                return s_bad("--seed", optarg);
            conf->seed = (unsigned long long)ll;
            break;
        case OPT_RUN:
            if (strlen(optarg) >= sizeof conf->run || !*optarg ||
                !s_id_ok(optarg))
                return s_bad("--run ([A-Za-z0-9_.:-], up to 31)", optarg);
            snprintf(conf->run, sizeof conf->run, "%s", optarg);
            break;
        case OPT_PREFIX:
            if (strlen(optarg) >= SIM_PREFIX_MAX || !s_id_ok(optarg))
                return s_bad("--prefix ([A-Za-z0-9_.:-], up to 63)", optarg);
            conf->prefix = optarg;
            break;
        case OPT_USERNAME: conf->username = optarg; break;
        case OPT_ALLOW_REMOTE: conf->allow_remote = true; break;
        case ':': return s_bad_opt("option needs a value:", argv);
        default: return s_bad_opt("unknown option", argv);
        }
    }
    if (optind != argc) {
        char q[CFG_QUOTE_BUF];
        fprintf(stderr, "sensorpipe-sim: unexpected argument '%s' (see --help)\n",
                cfg_quote(argv[optind], q, sizeof q));
        return SIM_EX_USAGE;
    }
    if (!conf->allow_remote && !s_is_loopback(conf->host)) {
        char q[CFG_QUOTE_BUF];
        fprintf(stderr, "sensorpipe-sim: --host '%s' is not a loopback "
                        "address; pass --allow-remote to use it\n",
                cfg_quote(conf->host, q, sizeof q));
        return SIM_EX_USAGE;
    }

    /* Each client holds SIM_FDS_PER_CLIENT descriptors; spread the fleet
     * over as many processes as the open-file limit requires. */
    struct rlimit rl;
    long long per = 5000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        long long fit = ((long long)rl.rlim_cur - SIM_FDS_SPARE) /
                        SIM_FDS_PER_CLIENT;
        if (fit < 1)
            fit = 1;
        if (fit < per)
            per = fit;
    }
    if (conf->procs == 0)
        conf->procs = (conf->devices + per - 1) / per;
    if (conf->procs > conf->devices)
        conf->procs = conf->devices;
    if (conf->procs > SIM_PROCS_MAX) {
        fprintf(stderr, "sensorpipe-sim: %lld devices need more than %d "
                        "processes\n", conf->devices, SIM_PROCS_MAX);
        return SIM_EX_USAGE;
    }
    if ((conf->devices + conf->procs - 1) / conf->procs >
        (long long)(rl.rlim_cur - SIM_FDS_SPARE) / SIM_FDS_PER_CLIENT) {
        fprintf(stderr, "sensorpipe-sim: %lld devices in %lld processes "
                        "exceed the open-file limit %llu; raise --procs\n",
                conf->devices, conf->procs, (unsigned long long)rl.rlim_cur);
        return SIM_EX_USAGE;
    }
    return -1;
}

int
main(int argc, char **argv)
{
    struct sim_conf conf;
    int rc, sigfd;

    log_init("sensorpipe-sim", LOG_LVL_INFO);
    if ((rc = s_parse(&conf, argc, argv)) >= 0)
        return rc;
    if (conf.labels) {
        /* Truncate once here; the workers append. */
        int fd = open(conf.labels, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0644);
        if (fd == -1) {
            log_warn("--labels %s", conf.labels);
            return SIM_EX_CONFIG;
        }
        close(fd);
    }
    if (conf.report) {
        /* The report is written at the end of the run: find out now,
         * not after it, that it cannot be. */
        char *tmp = xasprintf("%s.tmp", conf.report);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (fd == -1) {
            log_warn("--report %s", tmp);
            free(tmp);
            return SIM_EX_CONFIG;
        }
        close(fd);
        unlink(tmp);
        free(tmp);
    }
    sigfd = sig_init();
    if (sigfd == -1)
        fatal("signalfd");
    mosquitto_lib_init();
    log_info("run %s: %lld devices in %lld process%s to %s:%d, %g msg/s "
             "each, QoS %lld, %s",
             conf.run, conf.devices, conf.procs, conf.procs > 1 ? "es" : "",
             conf.host, conf.port, conf.rate, conf.qos,
             conf.batch ? "batch form" : "single readings");
    rc = s_parent(&conf, sigfd);
    mosquitto_lib_cleanup();
    close(sigfd);
    return rc;
}
