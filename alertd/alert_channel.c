/*
 * alert_channel: channel declarations and dispatch to the sinks (see
 * alert_channel.h).
 */
#include "alertd/alert_channel.h"
#include "alertd/alert_sink_email.h"
#include "alertd/alert_sink_exec.h"
#include "alertd/alert_sink_mqtt.h"
#include "alertd/alert_sink_webhook.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *type;  /* channel type */
    size_t min, max;   /* number of arguments */
    alert_channel_sink_fn *fn; /* deliver function */
} s_types[] = {
    {"webhook", 1, 1, alert_sink_webhook_deliver},
    {"exec", 1, ALERT_CHANNEL_ARGS_MAX, alert_sink_exec_deliver},
    {"mqtt", 0, 1, alert_sink_mqtt_deliver},
    {"email", 1, ALERT_CHANNEL_ARGS_MAX, alert_sink_email_deliver},
};

struct alert_channel {
    char *name;  /* channel name */
    size_t type; /* index into s_types */
    char **argv; /* arguments, NULL-terminated */
    size_t argc; /* number of arguments */
};

static void
s_err(struct alert_rule_error *err, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_err(struct alert_rule_error *err, size_t pos, const char *fmt, ...)
{
    va_list ap;

    err->pos = pos;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
}

/* Split words; a double-quoted word may hold blanks. Returns the count
 * or -1 with *err. */
static int
s_words(const char *text, size_t base, char **out, size_t max,
        struct alert_rule_error *err)
{
    const char *p = text;
    size_t n = 0;

    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            return (int)n;
        if (n == max) {
            s_err(err, base + (size_t)(p - text), "more than %zu arguments",
                  max);
            goto fail;
        }
        size_t start = (size_t)(p - text);
        char *w = xmalloc(strlen(p) + 1), *q = w;
        if (*p == '"') {
            p++;
            while (*p && *p != '"') {
                if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
                    p++;
                *q++ = *p++;
            }
            if (*p != '"') {
                free(w);
                s_err(err, base + start, "unterminated string");
                goto fail;
            }
            p++;
        } else {
            while (*p && !isspace((unsigned char)*p))
                *q++ = *p++;
        }
        *q = '\0';
        for (q = w; *q; q++)
            if ((unsigned char)*q < 0x20 || *q == 0x7f) {
                free(w);
                s_err(err, base + start, "control character in an argument");
                goto fail;
            }
        out[n++] = w;
    }
fail:
    for (size_t i = 0; i < n; i++)
        free(out[i]);
    return -1;
}

/* Does libcurl, which delivers the webhook, take url, with a host? */
static bool
s_url_ok(const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL;
    bool ok = u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
              curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host;

    curl_free(host);
    curl_url_cleanup(u);
    return ok;
}

/* Check the arguments of a type. NULL when fine, else a reason. */
static const char *
s_check(const char *type, char **argv, size_t argc)
{
    if (strcmp(type, "webhook") == 0 && strncmp(argv[0], "http://", 7) != 0 &&
        strncmp(argv[0], "https://", 8) != 0)
        return "a webhook URL starts with http:// or https://";
    /* "http://" or "http://[::1" passed the prefix, and every delivery
     * then failed in curl, retried until given up. */
    if (strcmp(type, "webhook") == 0 && !s_url_ok(argv[0]))
        return "a webhook URL libcurl cannot parse, or without a host";
    if (strcmp(type, "exec") == 0 && argv[0][0] != '/')
        return "exec wants an absolute path (no shell, no $PATH search)";
    if (strcmp(type, "mqtt") == 0 && argc == 1 &&
        (argv[0][0] == '\0' || strpbrk(argv[0], "+#")))
        return "an mqtt topic is not empty and has no wildcards";
    if (strcmp(type, "email") == 0)
        for (size_t i = 0; i < argc; i++)
            if (argv[i][0] == '-' || !strchr(argv[i], '@') ||
                strpbrk(argv[i], " ,<>\"'"))
                return "email wants plain addresses (user@host)";
    return NULL;
}

alert_channel_t *
alert_channel_parse(const char *text, struct alert_rule_error *err)
{
    const char *colon = strchr(text, ':'), *b = text, *e;
    char *words[ALERT_CHANNEL_ARGS_MAX + 1];
    int n;
    size_t t;

    memset(err, 0, sizeof *err);
    if (colon == NULL) {
        s_err(err, 0, "expected 'channel NAME: TYPE ARG...'");
        return NULL;
    }
    while (b < colon && isspace((unsigned char)*b))
        b++;
    e = colon;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    if (e == b || (size_t)(e - b) > ALERT_RULE_CHANNEL_NAME_MAX ||
        !(isalpha((unsigned char)*b) || *b == '_')) {
        s_err(err, (size_t)(b - text), "channel name must match "
                                       "[A-Za-z_][A-Za-z0-9_.]*");
        return NULL;
    }
    for (const char *c = b; c < e; c++)
        if (!(isalnum((unsigned char)*c) || *c == '_' || *c == '.')) {
            s_err(err, (size_t)(c - text), "channel name must match "
                                           "[A-Za-z_][A-Za-z0-9_.]*");
            return NULL;
        }
    n = s_words(colon + 1, (size_t)(colon + 1 - text), words,
                ALERT_CHANNEL_ARGS_MAX + 1, err);
    if (n < 0)
        return NULL;
    if (n == 0) {
        s_err(err, (size_t)(colon + 1 - text),
              "expected a channel type (webhook, exec, mqtt, email)");
        return NULL;
    }
    for (t = 0; t < sizeof s_types / sizeof s_types[0]; t++)
        if (strcmp(words[0], s_types[t].type) == 0)
            break;
    const char *why = NULL;
    if (t == sizeof s_types / sizeof s_types[0])
        why = "unknown channel type (webhook, exec, mqtt, email)";
    else if ((size_t)n - 1 < s_types[t].min || (size_t)n - 1 > s_types[t].max)
        why = "wrong number of arguments for this channel type";
    else if ((size_t)n > 1)
        why = s_check(words[0], words + 1, (size_t)n - 1);
    if (why) {
        s_err(err, (size_t)(colon + 1 - text), "%s: %s", words[0], why);
        for (int i = 0; i < n; i++)
            free(words[i]);
        return NULL;
    }
    alert_channel_t *self = xcalloc(1, sizeof *self);
    self->name = xstrndup(b, (size_t)(e - b));
    self->type = t;
    self->argc = (size_t)n - 1;
    self->argv = xcalloc(self->argc + 1, sizeof *self->argv);
    for (size_t i = 0; i < self->argc; i++)
        self->argv[i] = words[i + 1];
    free(words[0]);
    return self;
}

alert_channel_t *
alert_channel_dup(const alert_channel_t *self)
{
    alert_channel_t *c = xcalloc(1, sizeof *c);

    c->name = xstrdup(self->name);
    c->type = self->type;
    c->argc = self->argc;
    c->argv = xcalloc(c->argc + 1, sizeof *c->argv);
    for (size_t i = 0; i < c->argc; i++)
        c->argv[i] = xstrdup(self->argv[i]);
    return c;
}

void
alert_channel_destroy(alert_channel_t **self_p)
{
    alert_channel_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (size_t i = 0; i < self->argc; i++)
        free(self->argv[i]);
    free(self->argv);
    free(self->name);
    free(self);
    *self_p = NULL;
}

const char *
alert_channel_name(const alert_channel_t *self)
{
    return self->name;
}

const char *
alert_channel_type(const alert_channel_t *self)
{
    return s_types[self->type].type;
}

size_t
alert_channel_argc(const alert_channel_t *self)
{
    return self->argc;
}

const char *
alert_channel_arg(const alert_channel_t *self, size_t i)
{
    return i < self->argc ? self->argv[i] : NULL;
}

int
alert_channel_deliver(const alert_channel_t *self,
                      const struct alert_channel_env *env,
                      const struct alert_note *note, char *err,
                      size_t errlen)
{
    err[0] = '\0';
    return s_types[self->type].fn(self->argv, self->argc, env, note, err,
                                  errlen);
}

void
alert_channel_test(bool verbose)
{
    struct alert_rule_error err;
    alert_channel_t *c, *d;

    c = alert_channel_parse(" ops : webhook http://127.0.0.1:9000/hook",
                            &err);
    assert(c);
    TEST_STREQ(alert_channel_name(c), "ops");
    TEST_STREQ(alert_channel_type(c), "webhook");
    assert(alert_channel_argc(c) == 1);
    TEST_STREQ(alert_channel_arg(c, 0), "http://127.0.0.1:9000/hook");
    d = alert_channel_dup(c);
    alert_channel_destroy(&c);
    TEST_STREQ(alert_channel_arg(d, 0), "http://127.0.0.1:9000/hook");
    alert_channel_destroy(&d);
    alert_channel_destroy(&d);

    c = alert_channel_parse("page: exec /usr/bin/logger -t \"sp alert\" "
                            "\"say \\\"hi\\\"\"", &err);
    assert(c && alert_channel_argc(c) == 4);
    TEST_STREQ(alert_channel_arg(c, 2), "sp alert");
    TEST_STREQ(alert_channel_arg(c, 3), "say \"hi\"");
    assert(alert_channel_arg(c, 4) == NULL);
    alert_channel_destroy(&c);
    c = alert_channel_parse("bus: mqtt", &err);
    assert(c && alert_channel_argc(c) == 0);
    alert_channel_destroy(&c);

    /* Refusals name the position and the reason. */
    assert(alert_channel_parse("ops webhook http://x", &err) == NULL);
    assert(alert_channel_parse("9ops: webhook http://x", &err) == NULL);
    assert(alert_channel_parse("ops: pager x", &err) == NULL);
    assert(strstr(err.reason, "unknown channel type") && err.pos == 4);
    assert(alert_channel_parse("ops: webhook ftp://x", &err) == NULL);
    assert(strstr(err.reason, "http://"));
    assert(alert_channel_parse("ops: webhook http://", &err) == NULL);
    assert(strstr(err.reason, "cannot parse"));
    assert(alert_channel_parse("ops: webhook http://[::1", &err) == NULL);
    assert(alert_channel_parse("ops: webhook \"http://a b/\"", &err) == NULL);
    c = alert_channel_parse("ops: webhook http://[::1]:9/x?k=v", &err);
    assert(c);
    alert_channel_destroy(&c);
    assert(alert_channel_parse("ops: webhook", &err) == NULL);
    assert(strstr(err.reason, "number of arguments"));
    assert(alert_channel_parse("ops: exec page.sh", &err) == NULL);
    assert(strstr(err.reason, "absolute path"));
    assert(alert_channel_parse("ops: exec /bin/x \"open", &err) == NULL);
    assert(strstr(err.reason, "unterminated") && err.pos == 17);
    assert(alert_channel_parse("ops: mqtt alerts/#", &err) == NULL);
    assert(alert_channel_parse("ops: email -oQ/tmp@x", &err) == NULL);
    assert(alert_channel_parse("ops:", &err) == NULL);
    if (verbose)
        printf("alert_channel: last refusal: %s\n", err.reason);
    TEST_OK("alert_channel");
}
