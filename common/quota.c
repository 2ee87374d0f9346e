/*
 * quota: per-tenant limits from a JSON file (see quota.h).
 */
#include "common/quota.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define QUOTA_CHECK_NS (5 * CLOCK_NS_PER_S)

static const char *const s_kinds[] = {"devices", "series", "rate"};

struct quota {
    char *path;             /* "" = no file */
    json_t *doc;            /* the file in force ({} without one) */
    struct timespec mtime;  /* of the file loaded */
    int64_t checked_ns;     /* last look at the file */
};

/* One {"kind": n, ...} object; "" when fine, else what is wrong. */
static const char *
s_check_limits(json_t *o)
{
    const char *k;
    json_t *v;

    if (!json_is_object(o))
        return "limits must be an object like {\"series\": 100}";
    json_object_foreach(o, k, v) {
        size_t i;
        for (i = 0; i < sizeof s_kinds / sizeof s_kinds[0]; i++)
            if (!strcmp(k, s_kinds[i]))
                break;
        if (i == sizeof s_kinds / sizeof s_kinds[0])
            return "unknown kind of limit (devices, series or rate)";
        if (!json_is_number(v) || json_number_value(v) < 0)
            return "a limit must be a number >= 0";
    }
    return "";
}

/* Parse and check the file; NULL with err on any mistake. */
static json_t *
s_load(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je), *t, *v;
    const char *key, *why = "";

    if (doc == NULL) {
        snprintf(err, errlen, "%s: %s (line %d)", path, je.text, je.line);
        return NULL;
    }
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "default") && strcmp(key, "tenants"))
            why = "unknown member (want \"default\" and \"tenants\")";
        else if (!strcmp(key, "default"))
            why = s_check_limits(v);
        else if (!json_is_object(v))
            why = "\"tenants\" must be an object of tenant names";
        if (*why) {
            snprintf(err, errlen, "%s: \"%s\": %s", path, key, why);
            json_decref(doc);
            return NULL;
        }
    }
    json_object_foreach(json_object_get(doc, "tenants"), key, t) {
        if (*key == '\0' || strlen(key) > 64 ||
            strspn(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                        "0123456789_.@-") != strlen(key))
            why = "not a tenant name (1..64 of [A-Za-z0-9_.@-])";
        else
            why = s_check_limits(t);
        if (*why) {
            snprintf(err, errlen, "%s: tenant \"%s\": %s", path, key, why);
            json_decref(doc);
            return NULL;
        }
    }
    return doc;
}

quota_t *
quota_new(const char *path, char *err, size_t errlen)
{
    quota_t *self = xcalloc(1, sizeof *self);
    struct stat st;

    self->path = xstrdup(path ? path : "");
    if (*self->path == '\0') {
        self->doc = json_object();
        return self;
    }
    if (stat(self->path, &st) == 0)
        self->mtime = st.st_mtim;
    if ((self->doc = s_load(self->path, err, errlen)) == NULL)
        quota_destroy(&self);
    return self;
}

void
quota_destroy(quota_t **self_p)
{
    quota_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    json_decref(self->doc);
    free(self->path);
    free(self);
    *self_p = NULL;
}

int
quota_refresh(quota_t *self, int64_t now_ns)
{
    struct stat st;
    char err[512];
    json_t *doc;

    if (*self->path == '\0' || now_ns - self->checked_ns < QUOTA_CHECK_NS)
        return 0;
    self->checked_ns = now_ns;
    if (stat(self->path, &st) != 0 || (st.st_mtim.tv_sec == self->mtime.tv_sec &&
                                       st.st_mtim.tv_nsec == self->mtime.tv_nsec))
        return 0;
    self->mtime = st.st_mtim;
    if ((doc = s_load(self->path, err, sizeof err)) == NULL) {
        log_warnx("quotas: %s; keeping the limits in force", err);
        return 0;
    }
    json_decref(self->doc);
    self->doc = doc;
    log_info("quotas: %s re-read", self->path);
    return 1;
}

double
quota_limit(const quota_t *self, const char *tenant, const char *kind,
            double fallback)
{
    json_t *v = json_object_get(json_object_get(json_object_get(self->doc, "tenants"),
                                                tenant),
                                kind);

    if (v == NULL)
        v = json_object_get(json_object_get(self->doc, "default"), kind);
    return v ? json_number_value(v) : fallback;
}

bool
quota_any(const quota_t *self, const char *kind, double fallback)
{
    const char *key;
    json_t *t;

    if (quota_limit(self, "", kind, fallback) > 0)
        return true;
    json_object_foreach(json_object_get(self->doc, "tenants"), key, t)
        if (json_number_value(json_object_get(t, kind)) > 0)
            return true;
    return false;
}

void
quota_test(bool verbose)
{
    char path[] = "/tmp/quota-test-XXXXXX", err[512];
    int fd = mkstemp(path);
    quota_t *q;
    struct {
        const char *text;
        const char *want_err; /* NULL = loads */
    } bad[] = {
        {"{\"default\": {\"series\": 5}, \"tenants\": {\"acme\": {\"rate\": 2}}}", NULL},
        {"{\"default\": {\"serie\": 5}}", "unknown kind"},
        {"{\"tenants\": {\"acme\": {\"series\": -1}}}", ">= 0"},
        {"{\"tenants\": {\"a b\": {\"series\": 1}}}", "not a tenant name"},
        {"{\"tenant\": {}}", "unknown member"},
        {"{\"default\": 3}", "must be an object"},
        {"{not json", "line 1"},
    };

    assert(fd >= 0);
    close(fd);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i].text, f);
        fclose(f);
        *err = '\0';
        q = quota_new(path, err, sizeof err);
        if (verbose)
            printf("   %s -> %s\n", bad[i].text, q ? "ok" : err);
        assert((q != NULL) == (bad[i].want_err == NULL));
        if (bad[i].want_err)
            assert(strstr(err, bad[i].want_err));
        quota_destroy(&q);
    }
    FILE *f = fopen(path, "w");
    fputs("{\"default\": {\"series\": 5, \"rate\": 0},"
          " \"tenants\": {\"acme\": {\"series\": 2}, \"globex\": {\"devices\": 7}}}", f);
    fclose(f);
    q = quota_new(path, err, sizeof err);
    assert(q);
    TEST_NEAR(quota_limit(q, "acme", "series", 100), 2, 0);
    TEST_NEAR(quota_limit(q, "globex", "series", 100), 5, 0);  /* file default */
    TEST_NEAR(quota_limit(q, "globex", "devices", 3), 7, 0);
    TEST_NEAR(quota_limit(q, "acme", "devices", 3), 3, 0);     /* fallback */
    TEST_NEAR(quota_limit(q, "acme", "rate", 50), 0, 0);       /* default 0 = off */
    assert(quota_any(q, "devices", 0) && quota_any(q, "series", 0));
    assert(!quota_any(q, "rate", 0));
    /* A changed file is seen at the next look; a broken one is not taken. */
    f = fopen(path, "w");
    fputs("{\"tenants\": {\"acme\": {\"series\": 9}}}", f);
    fclose(f);
    struct timespec ts[2] = {{0, UTIME_NOW}, {12345, 0}};
    assert(utimensat(AT_FDCWD, path, ts, 0) == 0);
    assert(quota_refresh(q, QUOTA_CHECK_NS * 2) == 1);
    TEST_NEAR(quota_limit(q, "acme", "series", 100), 9, 0);
    TEST_NEAR(quota_limit(q, "globex", "series", 100), 100, 0);
    assert(quota_refresh(q, QUOTA_CHECK_NS * 2 + 1) == 0); /* not yet again */
    f = fopen(path, "w");
    fputs("{\"tenants\": {\"acme\": {\"series\": \"x\"}}}", f);
    fclose(f);
    ts[1].tv_sec = 23456;
    assert(utimensat(AT_FDCWD, path, ts, 0) == 0);
    assert(quota_refresh(q, QUOTA_CHECK_NS * 4) == 0);
    TEST_NEAR(quota_limit(q, "acme", "series", 100), 9, 0);
    quota_destroy(&q);
    unlink(path);
    q = quota_new("", err, sizeof err);
    assert(q && quota_limit(q, "acme", "rate", 4) == 4 && !quota_any(q, "rate", 0));
    assert(quota_refresh(q, QUOTA_CHECK_NS * 9) == 0);
    quota_destroy(&q);
    TEST_OK("quota");
}
