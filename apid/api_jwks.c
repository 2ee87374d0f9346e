/*
 * api_jwks: a provider's keys fetched from its URL and cached in a file
 * (see api_jwks.h).
 */
#include "apid/api_jwks.h"
#include "apid/api_jwt.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/strbuf.h"
#include "common/test.h"
#include "common/urlmask.h"
#include "common/xalloc.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_TIMEOUT_MS 10000
#define S_BODY_MAX (1 << 20)
#define S_POKE_GAP_NS (10 * CLOCK_NS_PER_S)
#define S_STEP_MS 100

struct api_jwks {
    char *url;          /* jwks_uri or discovery document */
    char *url_log;      /* url for logs */
    char *cache;        /* the file api_auth reads */
    int64_t period_ns;  /* between fetches */
    pthread_t thread;   /* the fetcher */
    bool started;       /* thread runs */
    atomic_bool stop;   /* ask the thread to end */
    atomic_bool poked;  /* fetch soon */
};

static size_t
s_on_body(char *p, size_t size, size_t n, void *arg)
{
    struct strbuf *b = arg;

    if (b->len + size * n > S_BODY_MAX)
        return 0; /* too large: curl fails the transfer */
    strbuf_add(b, p, size * n);
    return size * n;
}

/* GET url into *body (caller frees .p). 0, or -1 with err. */
static int
s_get(const char *url, struct strbuf *body, char *err, size_t errlen)
{
    CURL *c = curl_easy_init();
    CURLcode cc;
    long status = 0;

    if (c == NULL) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -1;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)S_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* we run in a thread */
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "sensorpipe-apid");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    cc = curl_easy_perform(c);
    if (cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    if (cc != CURLE_OK || status != 200) {
        char *o = urlmask(url);
        if (cc != CURLE_OK)
            snprintf(err, errlen, "%s: %s", o, curl_easy_strerror(cc));
        else
            snprintf(err, errlen, "%s: HTTP %ld", o, status);
        free(o);
        return -1;
    }
    return 0;
}

/* The jwks_uri of a discovery document, or NULL when text is not one.
 * Caller frees. */
static char *
s_jwks_uri(const char *text, size_t len)
{
    json_t *j = json_loadb(text, len, 0, NULL);
    const char *u = json_string_value(json_object_get(j, "jwks_uri"));
    char *r = u && json_object_get(j, "keys") == NULL ? xstrdup(u) : NULL;

    json_decref(j);
    return r;
}

/* Is the file's content exactly text? */
static bool
s_same(const char *path, const char *text, size_t len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    bool same;

    if (f == NULL)
        return false;
    buf = xmalloc(len + 1);
    n = fread(buf, 1, len + 1, f);
    fclose(f);
    same = n == len && memcmp(buf, text, len) == 0;
    free(buf);
    return same;
}

/* Write text to path atomically (tmp, fsync, rename). */
static int
s_write(const char *path, const char *text, size_t len, char *err, size_t errlen)
{
    char *tmp = xasprintf("%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644), rc = -1;

    if (fd >= 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 &&
        close(fd) == 0) {
        fd = -1;
        rc = rename(tmp, path);
    }
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        unlink(tmp);
    }
    free(tmp);
    return rc;
}

/* One fetch: the key set (through the discovery document when url is
 * one), checked, into the cache when it changed. 1 when the cache was
 * rewritten, 0 when unchanged, -1 with err. */
static int
s_fetch(const char *url, const char *cache, char *err, size_t errlen)
{
    struct strbuf body = {0};
    char *uri = NULL, kerr[256];
    api_jwt_keys_t *k;
    int rc = -1;

    if (s_get(url, &body, err, errlen))
        goto out;
    if ((uri = s_jwks_uri(body.p, body.len)) != NULL) {
        strbuf_reset(&body);
        if (s_get(uri, &body, err, errlen))
            goto out;
    }
    if ((k = api_jwt_keys_parse(body.p ? body.p : "", body.len, kerr, sizeof kerr)) == NULL) {
        snprintf(err, errlen, "the fetched key set is not usable: %s", kerr);
        goto out;
    }
    api_jwt_keys_destroy(&k);
    if (s_same(cache, body.p, body.len))
        rc = 0;
    else
        rc = s_write(cache, body.p, body.len, err, errlen) == 0 ? 1 : -1;
out:
    free(uri);
    strbuf_free(&body);
    return rc;
}

static void *
s_run(void *arg)
{
    api_jwks_t *self = arg;
    int64_t next = clock_mono_ns() + self->period_ns, last = clock_mono_ns();
    char err[512];

    while (!atomic_load(&self->stop)) {
        int64_t now = clock_mono_ns();
        bool poked = atomic_load(&self->poked) && now - last >= S_POKE_GAP_NS;
        if (now < next && !poked) {
            usleep(S_STEP_MS * 1000);
            continue;
        }
        atomic_store(&self->poked, false);
        last = now;
        next = now + self->period_ns;
        switch (s_fetch(self->url, self->cache, err, sizeof err)) {
        case 1:
            log_info("auth: new JWT keys from %s", self->url_log);
            break;
        case -1:
            log_warnx("auth: JWT keys: %s; keeping the cached ones", err);
            break;
        }
    }
    return NULL;
}

api_jwks_t *
api_jwks_new(const char *url, const char *cache, int64_t period_ns, char *err,
             size_t errlen)
{
    api_jwks_t *self = xcalloc(1, sizeof *self);

    self->url = xstrdup(url);
    self->url_log = urlmask(url);
    self->cache = xstrdup(cache);
    self->period_ns = period_ns;
    atomic_init(&self->stop, false);
    atomic_init(&self->poked, false);
    if (access(cache, F_OK) != 0) {
        if (s_fetch(url, cache, err, errlen) < 0)
            goto fail;
        log_info("auth: JWT keys fetched from %s into %s", self->url_log, cache);
    }
    if (pthread_create(&self->thread, NULL, s_run, self) != 0) {
        snprintf(err, errlen, "cannot start the JWT key fetcher");
        goto fail;
    }
    self->started = true;
    return self;
fail:
    api_jwks_destroy(&self);
    return NULL;
}

void
api_jwks_poke(api_jwks_t *self)
{
    if (self)
        atomic_store(&self->poked, true);
}

void
api_jwks_destroy(api_jwks_t **self_p)
{
    api_jwks_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->started) {
        atomic_store(&self->stop, true);
        pthread_join(self->thread, NULL);
    }
    free(self->url);
    free(self->url_log);
    free(self->cache);
    free(self);
    *self_p = NULL;
}

void
api_jwks_test(bool verbose)
{
    char dir[] = "/tmp/api_jwks.XXXXXX", path[64], *u, err[256];
    const char *disc = "{\"issuer\":\"https://idp\",\"jwks_uri\":\"https://idp/certs\"}";

    u = s_jwks_uri(disc, strlen(disc));
    TEST_STREQ(u, "https://idp/certs");
    free(u);
    assert(s_jwks_uri("{\"keys\":[]}", 11) == NULL);
    assert(s_jwks_uri("nope", 4) == NULL);
    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/jwks.json", dir);
    assert(!s_same(path, "x", 1));
    assert(s_write(path, "{\"keys\":[]}", 11, err, sizeof err) == 0);
    assert(s_same(path, "{\"keys\":[]}", 11) && !s_same(path, "{\"keys\":[ ]}", 12));
    /* Nothing listens on port 1: the first fetch fails, nothing is made. */
    unlink(path);
    assert(api_jwks_new("http://127.0.0.1:1/certs", path, CLOCK_NS_PER_S, err,
                        sizeof err) == NULL);
    if (verbose)
        printf("   %s\n", err);
    assert(strstr(err, "127.0.0.1:1") && access(path, F_OK) != 0);
    rmdir(dir);
    TEST_OK("api_jwks");
}
