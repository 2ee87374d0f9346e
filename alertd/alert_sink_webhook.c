/*
 * alert_sink_webhook: POST an alert to a URL (see the header).
 */
#include "alertd/alert_sink_webhook.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/urlmask.h"
#include "common/xalloc.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sodium.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Bytes of a response body kept for the error message. */
#define S_REPLY_MAX 200

struct s_reply {
    char text[S_REPLY_MAX + 1]; /* start of the response body */
    size_t len;                 /* bytes kept */
};

void
alert_sink_webhook_sign(const char *key, const char *data, size_t len,
                        char *hex)
{
    unsigned char md[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_state st;

    /* The multi-part form takes a key of any length (RFC 2104). */
    crypto_auth_hmacsha256_init(&st, (const unsigned char *)key,
                                strlen(key));
    crypto_auth_hmacsha256_update(&st, (const unsigned char *)data, len);
    crypto_auth_hmacsha256_final(&st, md);
    sodium_memzero(&st, sizeof st);
    sodium_bin2hex(hex, 2 * sizeof md + 1, md, sizeof md);
}

/* The start of the receiver's answer, kept for the error message. */
static size_t
s_on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct s_reply *r = arg;
    size_t n = size * nmemb, room = S_REPLY_MAX - r->len;

    memcpy(r->text + r->len, ptr, n < room ? n : room);
    r->len += n < room ? n : room;
    r->text[r->len] = '\0';
    return n;
}

int
alert_sink_webhook_deliver(char *const *argv, size_t argc,
                           const struct alert_channel_env *env,
                           const struct alert_note *note, char *err,
                           size_t errlen)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct s_reply reply = {{0}, 0};
    char line[256], sig[65];
    long status = 0;
    CURLcode cc;
    int rc = -1;

    if (c == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -1;
    }
    h = curl_slist_append(h, "Content-Type: application/json");
    snprintf(line, sizeof line, "Idempotency-Key: %s", note->idem_key);
    h = curl_slist_append(h, line);
    if (env->webhook_secret && *env->webhook_secret) {
        alert_sink_webhook_sign(env->webhook_secret, note->body,
                                strlen(note->body), sig);
        snprintf(line, sizeof line, "X-Sensorpipe-Signature: sha256=%s", sig);
        h = curl_slist_append(h, line);
    }
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(c, CURLOPT_URL, argv[0]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, note->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(note->body));
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sensorpipe-alertd");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     (long)(env->timeout / CLOCK_NS_PER_MS));
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run in a thread */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &reply);
    cc = curl_easy_perform(c);
    /* The reason names the receiver by its origin only: a webhook's path
     * or query is often its secret, and the reason goes to the log. */
    if (cc != CURLE_OK) {
        char *o = urlmask_origin(argv[0]);
        snprintf(err, errlen, "%s: %s", o, curl_easy_strerror(cc));
        free(o);
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            rc = 0;
        } else {
            /* The error goes to the log and to the outbox (last_error,
             * served as JSON): escaped like a log line, so a receiver can
             * neither forge lines nor store bytes that are not UTF-8. */
            char *o = urlmask_origin(argv[0]), text[4 * S_REPLY_MAX + 1];
            log_escape(text, sizeof text, reply.text);
            snprintf(err, errlen, "%s: HTTP %ld %s", o, status, text);
            free(o);
        }
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    (void)argc;
    return rc;
}

/* --------------------------------------------------------------------- */
/* Selftest: a one-shot HTTP receiver on a loopback socket. It reads one
 * request (headers and a Content-Length body) and answers a fixed status;
 * test code only, the daemon never parses HTTP. */

struct s_receiver {
    int fd;            /* listening socket */
    int status;        /* status to answer */
    char req[4096];    /* the request received */
};

static void *
s_receive(void *arg)
{
    struct s_receiver *r = arg;
    int c = accept(r->fd, NULL, NULL);
    size_t n = 0;

    if (c == -1)
        return NULL;
    for (;;) {
        ssize_t k = read(c, r->req + n, sizeof r->req - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        r->req[n] = '\0';
        char *end = strstr(r->req, "\r\n\r\n");
        char *cl = strstr(r->req, "Content-Length: ");
        if (end && cl &&
            n >= (size_t)(end + 4 - r->req) + (size_t)atoi(cl + 16))
            break;
    }
    char resp[128];
    int len = snprintf(resp, sizeof resp,
                       "HTTP/1.1 %d X\r\nContent-Length: 4\r\n"
                       "Connection: close\r\n\r\nnope",
                       r->status);
    if (write(c, resp, (size_t)len) < 0)
        r->status = -1;
    close(c);
    return NULL;
}

static int
s_listen(int *port)
{
    struct sockaddr_in a = {0};
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert(bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    assert(listen(fd, 4) == 0);
    assert(getsockname(fd, (struct sockaddr *)&a, &al) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

void
alert_sink_webhook_test(bool verbose)
{
    char hex[65], url[64], err[256], want[128];
    struct alert_channel_env env = {"s3cret", 5 * CLOCK_NS_PER_S, NULL, 0,
                                    NULL};
    const char *body = "{\"rule\":\"hot\",\"state\":\"firing\"}";
    struct alert_note note = {body, "hot-1704067200000-firing-critical",
                              "hot", "t", "firing", "critical", NULL};
    struct s_receiver r;
    pthread_t th;
    int port;

    assert(sodium_init() >= 0);
    /* RFC 4231 test case 2. */
    alert_sink_webhook_sign("Jefe", "what do ya want for nothing?", 28, hex);
    TEST_STREQ(hex, "5bdcc146bf60754e6a042426089575c7"
                    "5a003f089d2739839dec58b964ec3843");

    curl_global_init(CURL_GLOBAL_DEFAULT);
    memset(&r, 0, sizeof r);
    r.fd = s_listen(&port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    char *argv[] = {url, NULL};
    /* 200: delivered, with the key and a signature the receiver can
     * check. */
    r.status = 200;
    assert(pthread_create(&th, NULL, s_receive, &r) == 0);
    assert(alert_sink_webhook_deliver(argv, 1, &env, &note, err,
                                      sizeof err) == 0);
    pthread_join(th, NULL);
    if (verbose)
        printf("%s\n", r.req);
    assert(strncmp(r.req, "POST /hook HTTP/1.1\r\n", 21) == 0);
    assert(strstr(r.req, "\r\nIdempotency-Key: "
                         "hot-1704067200000-firing-critical\r\n"));
    assert(strstr(r.req, "\r\nContent-Type: application/json\r\n"));
    alert_sink_webhook_sign("s3cret", body, strlen(body), hex);
    snprintf(want, sizeof want, "\r\nX-Sensorpipe-Signature: sha256=%s\r\n",
             hex);
    assert(strstr(r.req, want));
    assert(strstr(r.req, body));
    /* 500: not delivered, the reason names the status. */
    r.status = 500;
    assert(pthread_create(&th, NULL, s_receive, &r) == 0);
    assert(alert_sink_webhook_deliver(argv, 1, &env, &note, err,
                                      sizeof err) == -1);
    pthread_join(th, NULL);
    assert(strstr(err, "HTTP 500 nope"));
    assert(!strstr(err, "/hook")); /* the path may be the secret: not logged */
    close(r.fd);
    /* Nobody listening: not delivered. */
    assert(alert_sink_webhook_deliver(argv, 1, &env, &note, err,
                                      sizeof err) == -1);
    assert(strstr(err, "127.0.0.1"));
    /* Without a secret there is no signature header. */
    env.webhook_secret = NULL;
    r.fd = s_listen(&port);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    r.status = 204;
    assert(pthread_create(&th, NULL, s_receive, &r) == 0);
    assert(alert_sink_webhook_deliver(argv, 1, &env, &note, err,
                                      sizeof err) == 0);
    pthread_join(th, NULL);
    assert(!strstr(r.req, "X-Sensorpipe-Signature"));
    close(r.fd);
    curl_global_cleanup();
    TEST_OK("alert_sink_webhook");
}
