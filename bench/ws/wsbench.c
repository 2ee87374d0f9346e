/*
 * wsbench: WebSocket fan-out load in C, so the measuring side costs
 * little of the machine it shares with apid (bench/ws/run.py drives it).
 *
 *   wsbench API_PORT INGEST_PORT CLIENTS RATE SECONDS
 *
 * Opens CLIENTS WebSocket connections to apid's /api/v1/stream (wslay
 * client contexts, one epoll loop), each subscribed to the readings of
 * one device (bench{device=dN}), then a writer thread posts RATE
 * readings/s to ingestd as line protocol (libcurl, keep-alive) spread
 * over the devices, each stamped with its send time. Every item received
 * gives lag = receive time - its timestamp (milliseconds, as apid prints
 * them). Prints one JSON object with counts, lag percentiles and the CPU
 * this process used.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <wslay/wslay.h>

#define BATCH 2000          /* readings per HTTP write */
#define LINE_MAX_LEN 64     /* bytes of one line protocol line */
#define DRAIN_S 2.0         /* seconds to wait for stragglers */

struct client {
    int fd;                       /* socket */
    wslay_event_context_ptr ctx;  /* framing */
    struct bench *b;              /* owner */
    bool subscribed;              /* the answer to the subscribe came */
};

struct bench {
    int api_port, ingest_port, nclients;
    double rate, seconds;
    struct client *clients;
    double *lags;                 /* seconds, one per item received */
    size_t nlags, caplags;
    size_t items, messages, gaps_msgs;
    atomic_size_t written;        /* readings ingestd acknowledged */
    atomic_bool writing;          /* writer still running */
    size_t subscribed;
};

static double
s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds since the epoch of apid's "2024-01-01T00:00:00.000Z". */
static double
s_ts(const char *s)
{
    struct tm tm = {0};
    int ms = 0;

    if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year,
                            &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                            &tm.tm_sec, &ms) != 7)
        return 0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1e3;
}

static ssize_t
s_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
          void *arg)
{
    struct client *c = arg;
    ssize_t r = recv(c->fd, buf, len, 0);

    (void)flags;
    if (r > 0)
        return r;
    if (r == -1 && (errno == EAGAIN || errno == EINTR))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t
s_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
          int flags, void *arg)
{
    struct client *c = arg;
    ssize_t r = send(c->fd, data, len, MSG_NOSIGNAL);

    (void)flags;
    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EINTR)
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static int
s_genmask_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, void *arg)
{
    (void)ctx;
    (void)arg;
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)rand();
    return 0;
}

static void
s_msg_cb(wslay_event_context_ptr ctx,
         const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct client *c = user;
    struct bench *b = c->b;
    double now = s_now();
    json_t *m, *items, *it;
    const char *type;
    size_t i;

    (void)ctx;
    if (arg->opcode != WSLAY_TEXT_FRAME)
        return;
    m = json_loadb((const char *)arg->msg, arg->msg_length, 0, NULL);
    type = json_string_value(json_object_get(m, "type"));
    b->messages++;
    if (type && !strcmp(type, "subscribed")) {
        c->subscribed = true;
        b->subscribed++;
    } else if (type && !strcmp(type, "gap")) {
        b->gaps_msgs++;
    }
    items = json_object_get(m, "items");
    json_array_foreach(items, i, it) {
        double v = s_ts(json_string_value(json_object_get(it, "timestamp")));
        if (b->nlags == b->caplags) {
            b->caplags = b->caplags ? b->caplags * 2 : 1 << 16;
            b->lags = realloc(b->lags, b->caplags * sizeof *b->lags);
            if (b->lags == NULL)
                abort();
        }
        b->lags[b->nlags++] = now - v;
        b->items++;
    }
    json_decref(m);
}

/* Connect, upgrade and subscribe client i (blocking until upgraded). */
static int
s_connect(struct bench *b, int i)
{
    struct client *c = &b->clients[i];
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)b->api_port)};
    struct wslay_event_callbacks cbs = {s_recv_cb, s_send_cb, s_genmask_cb,
                                        NULL, NULL, NULL, s_msg_cb};
    char req[512], resp[1024], sub[160];
    size_t got = 0;
    int one = 1;

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->b = b;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd == -1 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa)) {
        perror("wsbench: connect");
        return -1;
    }
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    snprintf(req, sizeof req,
             "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n");
    if (send(c->fd, req, strlen(req), 0) != (ssize_t)strlen(req))
        return -1;
    /* Read the 101 byte by byte so no frame byte is taken with it. */
    while (got < sizeof resp - 1) {
        if (recv(c->fd, resp + got, 1, 0) != 1)
            return -1;
        got++;
        if (got >= 4 && !memcmp(resp + got - 4, "\r\n\r\n", 4))
            break;
    }
    resp[got] = '\0';
    if (strncmp(resp, "HTTP/1.1 101", 12)) {
        fprintf(stderr, "wsbench: no upgrade: %.80s\n", resp);
        return -1;
    }
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    wslay_event_context_client_init(&c->ctx, &cbs, c);
    snprintf(sub, sizeof sub,
             "{\"op\":\"subscribe\",\"series\":\"bench\",\"device\":\"d%d\","
             "\"kinds\":[\"readings\"]}", i);
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)sub,
                                strlen(sub)};
    wslay_event_queue_msg(c->ctx, &m);
    wslay_event_send(c->ctx);
    return 0;
}

static size_t
s_discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return size * n;
}

static void *
s_writer(void *arg)
{
    struct bench *b = arg;
    CURL *curl = curl_easy_init();
    char url[96], *body = malloc((size_t)BATCH * LINE_MAX_LEN);
    double t0 = s_now(), next = t0, per = BATCH / b->rate;
    int dev = 0;
    long code = 0;

    snprintf(url, sizeof url, "http://127.0.0.1:%d/write", b->ingest_port);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, s_discard);
    while (s_now() < t0 + b->seconds) {
        size_t len = 0;
        double now = s_now();
        for (int i = 0; i < BATCH; i++) {
            /* A reading as sensors send them; its timestamp is the send
             * time, which the clients subtract from their clock. */
            len += (size_t)snprintf(body + len, LINE_MAX_LEN,
                                    "bench,device=d%d value=%.1f %lld\n", dev,
                                    20 + (dev % 100) / 10.0,
                                    (long long)(now * 1e9));
            dev = (dev + 1) % b->nclients;
        }
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)len);
        if (curl_easy_perform(curl) == CURLE_OK &&
            curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code) ==
                CURLE_OK &&
            code == 204)
            atomic_fetch_add(&b->written, BATCH);
        next += per;
        double delay = next - s_now();
        if (delay > 0) {
            struct timespec ts = {(time_t)delay,
                                  (long)((delay - (time_t)delay) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    curl_easy_cleanup(curl);
    free(body);
    atomic_store(&b->writing, false);
    return NULL;
}

/* Run the clients' loop until deadline (or while the writer runs and then
 * DRAIN_S more when deadline is 0). */
static void
s_loop(struct bench *b, int ep, double until, bool drain_after_writer)
{
    struct epoll_event ev[256];
    double drain_at = 0;

    for (;;) {
        double now = s_now();
        if (until && now >= until)
            return;
        if (drain_after_writer && !atomic_load(&b->writing)) {
            if (drain_at == 0)
                drain_at = now + DRAIN_S;
            else if (now >= drain_at)
                return;
        }
        int n = epoll_wait(ep, ev, 256, 50);
        for (int i = 0; i < n; i++) {
            struct client *c = ev[i].data.ptr;
            if (wslay_event_recv(c->ctx) != 0 || wslay_event_send(c->ctx) != 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
        }
    }
}

static int
s_cmp(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int
main(int argc, char **argv)
{
    struct bench b = {0};
    pthread_t th;
    int ep;
    double t0, elapsed;

    if (argc != 6) {
        fprintf(stderr, "usage: wsbench API_PORT INGEST_PORT CLIENTS RATE "
                        "SECONDS\n");
        return 64;
    }
    b.api_port = (int)strtol(argv[1], NULL, 10);
    b.ingest_port = (int)strtol(argv[2], NULL, 10);
    b.nclients = (int)strtol(argv[3], NULL, 10);
    b.rate = strtod(argv[4], NULL);
    b.seconds = strtod(argv[5], NULL);
    if (b.nclients < 1 || b.rate <= 0 || b.seconds <= 0)
        return 64;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    b.clients = calloc((size_t)b.nclients, sizeof *b.clients);
    ep = epoll_create1(0);
    for (int i = 0; i < b.nclients; i++) {
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &b.clients[i]};
        if (s_connect(&b, i))
            return 1;
        epoll_ctl(ep, EPOLL_CTL_ADD, b.clients[i].fd, &e);
    }
    /* Wait until every subscription is confirmed. */
    for (int k = 0; k < 200 && b.subscribed < (size_t)b.nclients; k++)
        s_loop(&b, ep, s_now() + 0.05, false);
    if (b.subscribed < (size_t)b.nclients) {
        fprintf(stderr, "wsbench: only %zu of %d subscribed\n", b.subscribed,
                b.nclients);
        return 1;
    }
    b.nlags = b.items = 0;
    atomic_store(&b.writing, true);
    t0 = s_now();
    pthread_create(&th, NULL, s_writer, &b);
    s_loop(&b, ep, 0, true);
    pthread_join(th, NULL);
    elapsed = s_now() - t0 - DRAIN_S;
    qsort(b.lags, b.nlags, sizeof *b.lags, s_cmp);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
#define Q(f) (b.nlags ? b.lags[(size_t)((f) * (double)(b.nlags - 1))] * 1e3 : -1)
    printf("{\"clients\": %d, \"target_rate\": %.0f, \"seconds\": %.1f, "
           "\"written\": %zu, \"written_per_s\": %.0f, \"delivered\": %zu, "
           "\"messages\": %zu, \"gap_messages\": %zu, \"lag_ms_p50\": %.1f, "
           "\"lag_ms_p90\": %.1f, \"lag_ms_p99\": %.1f, \"lag_ms_max\": %.1f, "
           "\"wsbench_cpu_s\": %.2f}\n",
           b.nclients, b.rate, b.seconds, atomic_load(&b.written),
           (double)atomic_load(&b.written) / elapsed, b.items, b.messages,
           b.gaps_msgs, Q(0.5), Q(0.9), Q(0.99), Q(1.0),
           (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
    for (int i = 0; i < b.nclients; i++) {
        wslay_event_context_free(b.clients[i].ctx);
        close(b.clients[i].fd);
    }
    free(b.clients);
    free(b.lags);
    close(ep);
    curl_global_cleanup();
    return 0;
}
