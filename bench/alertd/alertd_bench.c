/*
 * alertd_bench: drive one alertd with readings at a fixed rate and
 * measure the time from sending a breaching reading to receiving its
 * "firing" event on alertd's PUB socket.
 *
 * Series are "temperature{device=dN}" for N < --series; bench/alertd/
 * run.sh gives alertd one rule per device ("rN: temperature{device=dN} >
 * 100"). Readings go round-robin over the series, --batch per batch, one
 * batch every batch/rate seconds; reading g (counting from 0) has the
 * event time t0 + g * 1e9 / rate, so an event's timestamp says which batch
 * carried its reading, and that batch's send time is the start of the
 * latency. Each series breaches (150) for --period/2 of its readings and
 * is normal (20) for the other half, with phases spread over the series,
 * so firings (and resolutions) arrive at a steady rate.
 *
 * Prints one JSON line: readings sent, achieved rate, firing events
 * seen, latency p50/p99/max in ms. Usage:
 *   alertd_bench --in EP --pub EP [--series n] [--rate r] [--seconds s]
 *                [--batch b] [--period p]
 */
#include "common/clock.h"
#include "common/msg.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct s_opts {
    const char *in;   /* alertd's PULL endpoint */
    const char *pub;  /* alertd's PUB endpoint */
    long series;      /* number of series */
    long rate;        /* readings per second */
    double seconds;   /* run time */
    long batch;       /* readings per batch */
    long period;      /* readings of a series per breach cycle */
};

static int
s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double
s_pct(const double *v, size_t n, double q)
{
    if (n == 0)
        return NAN;
    size_t i = (size_t)ceil(q * (double)n) - 1;
    return v[i < n ? i : n - 1];
}

/* Take every alerts batch waiting on sub; record firing latencies. */
static void
s_drain(zsock_t *sub, const struct s_opts *o, int64_t t0,
        const int64_t *sent_at, long nbatches, double **lat, size_t *n,
        size_t *cap, long *resolved)
{
    msg_batch_t *b = NULL;

    while (zsock_events(sub) & ZMQ_POLLIN) {
        if (msg_batch_recv(zsock_resolve(sub), &b) != MSG_OK)
            continue;
        int64_t now = clock_mono_ns();
        for (size_t i = 0; i < msg_batch_size(b); i++) {
            const struct msg_alert *a = msg_batch_alert(b, i);
            if (strcmp(msg_batch_str(b, a->state_off), "firing") != 0) {
                (*resolved)++;
                continue;
            }
            long g = (long)((a->ts - t0) / (CLOCK_NS_PER_S / o->rate));
            long k = g / o->batch;
            if (k < 0 || k >= nbatches || sent_at[k] == 0)
                continue;
            if (*n == *cap) {
                *cap = *cap ? *cap * 2 : 4096;
                *lat = xrealloc(*lat, *cap * sizeof **lat);
            }
            (*lat)[(*n)++] = (double)(now - sent_at[k]) / CLOCK_NS_PER_MS;
        }
        msg_batch_destroy(&b);
    }
}

int
main(int argc, char **argv)
{
    struct s_opts o = {NULL, NULL, 10000, 100000, 30, 1000, 200};
    char key[64];

    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--in")) o.in = v;
        else if (!strcmp(k, "--pub")) o.pub = v;
        else if (!strcmp(k, "--series")) o.series = atol(v);
        else if (!strcmp(k, "--rate")) o.rate = atol(v);
        else if (!strcmp(k, "--seconds")) o.seconds = atof(v);
        else if (!strcmp(k, "--batch")) o.batch = atol(v);
        else if (!strcmp(k, "--period")) o.period = atol(v);
        else {
            fprintf(stderr, "alertd_bench: unknown option %s\n", k);
            return 2;
        }
    }
    if (!o.in || !o.pub || o.series < 1 || o.rate < 1 || o.batch < 1 ||
        o.period < 2 || o.seconds <= 0) {
        fprintf(stderr, "usage: alertd_bench --in EP --pub EP [--series n] "
                        "[--rate r] [--seconds s] [--batch b] [--period p]\n");
        return 2;
    }
    zsys_init();
    zsock_t *push = zsock_new(ZMQ_PUSH), *sub = zsock_new(ZMQ_SUB);
    zsock_set_sndhwm(push, 100);
    zsock_set_rcvhwm(sub, 0);
    zsock_set_subscribe(sub, "");
    if (zsock_connect(push, "%s", o.in) || zsock_connect(sub, "%s", o.pub)) {
        fprintf(stderr, "alertd_bench: cannot connect\n");
        return 1;
    }
    zclock_sleep(300); /* the SUB joins before the first event */
    long nbatches = (long)(o.seconds * (double)o.rate) / o.batch;
    int64_t *sent_at = xcalloc((size_t)nbatches + 1, sizeof *sent_at);
    int64_t t0 = clock_now_ns(), step = CLOCK_NS_PER_S / o.rate;
    int64_t start = clock_mono_ns(), pace = (int64_t)o.batch * step;
    double *lat = NULL;
    size_t nlat = 0, cap = 0;
    long resolved = 0, g = 0;
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);

    snprintf(msg_batch_env(b)->producer, sizeof msg_batch_env(b)->producer,
             "bench.0");
    for (long k = 0; k < nbatches; k++) {
        msg_batch_reset(b);
        msg_batch_env(b)->seq = (uint64_t)k + 1;
        for (long j = 0; j < o.batch; j++, g++) {
            long s = g % o.series, c = g / o.series;
            /* Phase spread over the series: series s breaches in the
             * second half of its cycle, shifted by s. */
            bool hot = (c + s) % o.period >= o.period / 2;
            snprintf(key, sizeof key, "temperature{device=d%ld}", s);
            msg_batch_add_reading(b, key, t0 + g * step, hot ? 150 : 20);
        }
        /* Pace: batch k leaves at start + k * pace. */
        int64_t due = start + k * pace;
        while (clock_mono_ns() < due) {
            zpoller_t *p = zpoller_new(sub, NULL);
            int ms = (int)((due - clock_mono_ns()) / CLOCK_NS_PER_MS);
            zpoller_wait(p, ms > 0 ? ms : 0);
            zpoller_destroy(&p);
            s_drain(sub, &o, t0, sent_at, nbatches, &lat, &nlat, &cap,
                    &resolved);
        }
        sent_at[k] = clock_mono_ns();
        msg_batch_env(b)->ts = clock_now_ns();
        msg_batch_send(b, zsock_resolve(push), 0); /* blocks when full */
        s_drain(sub, &o, t0, sent_at, nbatches, &lat, &nlat, &cap, &resolved);
    }
    double elapsed = (double)(clock_mono_ns() - start) / CLOCK_NS_PER_S;
    /* Collect the events of the last batches. */
    int64_t end = clock_mono_ns() + 2 * CLOCK_NS_PER_S;
    while (clock_mono_ns() < end) {
        zclock_sleep(20);
        s_drain(sub, &o, t0, sent_at, nbatches, &lat, &nlat, &cap, &resolved);
    }
    qsort(lat, nlat, sizeof *lat, s_cmp);
    printf("{\"series\":%ld,\"readings\":%ld,\"seconds\":%.2f,"
           "\"rate\":%.0f,\"firing\":%zu,\"resolved\":%ld,"
           "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}\n",
           o.series, g, elapsed, (double)g / elapsed, nlat, resolved,
           s_pct(lat, nlat, 0.5), s_pct(lat, nlat, 0.99),
           nlat ? lat[nlat - 1] : NAN);
    msg_batch_destroy(&b);
    free(lat);
    free(sent_at);
    zsock_destroy(&push);
    zsock_destroy(&sub);
    return 0;
}
