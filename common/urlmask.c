/*
 * urlmask: URLs without their secrets, for logs (see urlmask.h).
 */
#include "common/urlmask.h"
#include "common/strbuf.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Query parameters whose value is a secret. */
static const char *const s_secret[] = {
    "p", "password", "pass", "pwd", "token", "access_token", "key", "api_key",
    "apikey", "secret", "auth", "sig", "signature",
};

static bool
s_is_secret(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof s_secret / sizeof s_secret[0]; i++)
        if (strlen(s_secret[i]) == len && !strncasecmp(name, s_secret[i], len))
            return true;
    return false;
}

bool
urlmask_is_url(const char *s)
{
    const char *p = s ? strstr(s, "://") : NULL;
    return p && p > s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "0123456789+.-") == (size_t)(p - s);
}

/* url with its secrets masked (caller frees); url itself, verbatim, when
 * there was nothing to mask (libcurl's normal form would add a "/" and
 * change escapes); NULL when libcurl cannot parse it. */
static char *
s_mask(const char *url)
{
    CURLU *u = curl_url();
    char *query = NULL, *pw = NULL, *out = NULL, *masked = NULL, *r = NULL;
    bool changed = false;

    if (u == NULL || curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK)
        goto done;
    if (curl_url_get(u, CURLUPART_PASSWORD, &pw, 0) == CURLUE_OK) {
        if (curl_url_set(u, CURLUPART_PASSWORD, "***", 0) != CURLUE_OK)
            goto done;
        changed = true;
    }
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query) {
        struct strbuf b = {0};
        for (char *save = NULL, *kv = strtok_r(query, "&", &save); kv;
             kv = strtok_r(NULL, "&", &save)) {
            size_t nlen = strcspn(kv, "=");
            if (b.len)
                strbuf_cat(&b, "&");
            if (kv[nlen] == '=' && s_is_secret(kv, nlen)) {
                strbuf_add(&b, kv, nlen);
                strbuf_cat(&b, "=***");
                changed = true;
            } else {
                strbuf_cat(&b, kv);
            }
        }
        masked = b.p ? b.p : xstrdup("");
        if (curl_url_set(u, CURLUPART_QUERY, masked, 0) != CURLUE_OK)
            goto done;
    }
    if (!changed)
        r = xstrdup(url);
    else if (curl_url_get(u, CURLUPART_URL, &out, 0) == CURLUE_OK)
        r = xstrdup(out);
done:
    curl_free(out);
    curl_free(query);
    curl_free(pw);
    free(masked);
    curl_url_cleanup(u);
    return r;
}

char *
urlmask(const char *url)
{
    char *r = s_mask(url);
    return r ? r : xstrdup("(not a URL)");
}

char *
urlmask_print(const char *s)
{
    char *r = urlmask_is_url(s) ? s_mask(s) : NULL;
    return r ? r : xstrdup(s);
}

char *
urlmask_origin(const char *url)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *r;

    if (u && curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        r = xasprintf("%s://%s%s%s/...", scheme, host, port ? ":" : "", port ? port : "");
    } else {
        r = xstrdup("(not a URL)");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return r;
}

void
urlmask_test(bool verbose)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"http://127.0.0.1:8086/write?db=sp&u=ops&p=s3cret&precision=ns",
         "http://127.0.0.1:8086/write?db=sp&u=ops&p=***&precision=ns"},
        {"https://bob:hunter2@ch.example:8443/?query=INSERT&password=x&user=bob",
         "https://bob:***@ch.example:8443/?query=INSERT&password=***&user=bob"},
        {"http://h/write?db=a&token=abc&TOKEN=def",
         "http://h/write?db=a&token=***&TOKEN=***"},
        {"http://h:9000/plain", "http://h:9000/plain"},
        {"http://alice@h/x", "http://alice@h/x"},
        {"not a url at all", "(not a URL)"},
        /* Nothing to mask: verbatim, not libcurl's normal form. */
        {"tcp://127.0.0.1:5555", "tcp://127.0.0.1:5555"},
        {"HTTP://h/a%7eb?x=1", "HTTP://h/a%7eb?x=1"},
    };
    char *m;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        m = urlmask(cases[i].in);
        if (verbose)
            printf("   %s -> %s\n", cases[i].in, m);
        TEST_STREQ(m, cases[i].want);
        free(m);
    }
    m = urlmask_origin("https://u:p@hooks.example.com/services/T0/B0/SECRET?x=1");
    TEST_STREQ(m, "https://hooks.example.com/...");
    free(m);
    m = urlmask_origin("http://127.0.0.1:9/hook");
    TEST_STREQ(m, "http://127.0.0.1:9/...");
    free(m);
    /* Printed configuration: verbatim unless there is a secret (the
     * fuzz_cfg round trip found "spa://v{{{" printed as "(not a URL)"). */
    static const char *const verbatim[] = {"spa://v{{{{{{{{{do(or", "ipc://./var/run/x.in",
                                           "/var/lib/x", "tcp://127.0.0.1:5555"};
    for (size_t i = 0; i < sizeof verbatim / sizeof verbatim[0]; i++) {
        m = urlmask_print(verbatim[i]);
        TEST_STREQ(m, verbatim[i]);
        free(m);
    }
    m = urlmask_print("http://u:pw@h:1/x");
    TEST_STREQ(m, "http://u:***@h:1/x");
    free(m);
    assert(urlmask_is_url("https://x") && urlmask_is_url("tcp://127.0.0.1:5555"));
    assert(!urlmask_is_url("/var/lib/x") && !urlmask_is_url("://x") &&
           !urlmask_is_url("a b://x") && !urlmask_is_url(NULL));
    TEST_OK("urlmask");
}
