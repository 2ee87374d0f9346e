/*
 * ingest_quota: ingestd's per-tenant rate and series limits (see
 * ingest_quota.h).
 */
#include "ingestd/ingest_quota.h"
#include "common/bucket.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/quota.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define S_BURST_S 2.0 /* a tenant may send 2 s of its rate at once */

struct s_tenant {
    double rate;      /* rate of bucket */
    bucket_t *bucket; /* the tenant's token bucket, or NULL */
    zhashx_t *series; /* keys accepted (a set) */
};

struct ingest_quota {
    quota_t *file;     /* per-tenant values */
    double rate;       /* --tenant-rate */
    int64_t series;    /* --tenant-series */
    zhashx_t *tenants; /* name -> struct s_tenant */
    FILE *state;       /* series.quota, appended; NULL = memory only */
    int on;            /* any limit set: 1, 0, or -1 = to be worked out */
};

static void
s_tenant_free(void **p)
{
    struct s_tenant *t = *p;

    if (t) {
        bucket_destroy(&t->bucket);
        zhashx_destroy(&t->series);
        free(t);
        *p = NULL;
    }
}

static struct s_tenant *
s_tenant(ingest_quota_t *self, const char *name)
{
    struct s_tenant *t = zhashx_lookup(self->tenants, name);

    if (t == NULL) {
        t = xcalloc(1, sizeof *t);
        t->series = zhashx_new();
        zhashx_insert(self->tenants, name, t);
    }
    return t;
}

/* Read back the series accepted before a restart. */
static int
s_state_load(ingest_quota_t *self, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *line = NULL, *tab;
    size_t cap = 0, n = 0;
    ssize_t len;

    if (f == NULL)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "cannot read %s: %s",
                                               path, strerror(errno)), -1);
    while ((len = getline(&line, &cap, f)) > 0) {
        if (line[len - 1] != '\n' || (tab = strchr(line, '\t')) == NULL)
            continue; /* a line cut by a crash */
        line[len - 1] = '\0';
        *tab = '\0';
        zhashx_insert(s_tenant(self, line)->series, tab + 1, (void *)1);
        n++;
    }
    free(line);
    fclose(f);
    if (n)
        log_info("quotas: %zu series of %zu tenants from %s", n,
                 zhashx_size(self->tenants), path);
    return 0;
}

ingest_quota_t *
ingest_quota_new(const char *file, double rate, int64_t series, const char *state,
                 char *err, size_t errlen)
{
    ingest_quota_t *self = xcalloc(1, sizeof *self);

    self->rate = rate;
    self->series = series;
    self->on = -1;
    self->tenants = zhashx_new();
    zhashx_set_destructor(self->tenants, s_tenant_free);
    if ((self->file = quota_new(file, err, errlen)) == NULL)
        goto fail;
    if (state && *state) {
        if (s_state_load(self, state, err, errlen) == -1)
            goto fail;
        if ((self->state = fopen(state, "a")) == NULL) {
            snprintf(err, errlen, "cannot append to %s: %s", state, strerror(errno));
            goto fail;
        }
    }
    return self;
fail:
    ingest_quota_destroy(&self);
    return NULL;
}

void
ingest_quota_destroy(ingest_quota_t **self_p)
{
    ingest_quota_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    if (self->state)
        fclose(self->state);
    zhashx_destroy(&self->tenants);
    quota_destroy(&self->file);
    free(self);
    *self_p = NULL;
}

void
ingest_quota_set(ingest_quota_t *self, double rate, int64_t series)
{
    self->rate = rate;
    self->series = series;
    self->on = -1;
}

bool
ingest_quota_on(ingest_quota_t *self)
{
    if (self == NULL)
        return false;
    /* Asked for every MQTT message: worked out again only when the file
     * or the flags change. */
    if (quota_refresh(self->file, clock_mono_ns()) == 1)
        self->on = -1;
    if (self->on < 0)
        self->on = quota_any(self->file, "rate", self->rate) ||
                   quota_any(self->file, "series", (double)self->series);
    return self->on == 1;
}

/* The keys of b that tenant t has not written yet (a new list, NULL when
 * none). */
static zlistx_t *
s_new_series(struct s_tenant *t, const msg_batch_t *b)
{
    zlistx_t *fresh = NULL;

    for (uint32_t i = 0; i < (uint32_t)msg_batch_nseries(b); i++) {
        const char *k = msg_batch_series_key(b, i);
        if (zhashx_lookup(t->series, k))
            continue;
        if (fresh == NULL)
            fresh = zlistx_new();
        zlistx_add_end(fresh, (void *)k);
    }
    return fresh;
}

int
ingest_quota_take(ingest_quota_t *self, const char *tenant, const msg_batch_t *b,
                  int64_t now_ns, struct ingest_quota_refusal *r)
{
    double series, rate, n = (double)msg_batch_size(b);
    struct s_tenant *t;
    zlistx_t *fresh = NULL;
    size_t have;

    memset(r, 0, sizeof *r);
    if (self == NULL)
        return 0;
    if (quota_refresh(self->file, now_ns) == 1)
        self->on = -1;
    series = quota_limit(self->file, tenant, "series", (double)self->series);
    rate = quota_limit(self->file, tenant, "rate", self->rate);
    memset(r, 0, sizeof *r);
    if (n == 0 || (series <= 0 && rate <= 0))
        return 0;
    t = s_tenant(self, tenant);
    have = zhashx_size(t->series);
    fresh = series > 0 ? s_new_series(t, b) : NULL;
    if (fresh && (double)(have + zlistx_size(fresh)) > series) {
        r->status = 403;
        r->where = "series";
        snprintf(r->message, sizeof r->message,
                 "the tenant's series quota is %.0f and it has %zu; this write "
                 "would add %zu new series (writes to existing series pass)",
                 series, have, zlistx_size(fresh));
        zlistx_destroy(&fresh);
        return -1;
    }
    if (rate > 0) {
        if (t->bucket == NULL || t->rate != rate) {
            bucket_destroy(&t->bucket);
            t->bucket = bucket_new(rate, rate * S_BURST_S);
            t->rate = rate;
        }
        r->retry_after = n > rate * S_BURST_S ? -1
                                              : bucket_take(t->bucket, tenant, n, now_ns);
        if (r->retry_after != 0) {
            r->status = r->retry_after < 0 ? 413 : 429;
            r->where = "rate";
            snprintf(r->message, sizeof r->message, r->retry_after < 0
                         ? "more readings in one request than the tenant's burst "
                           "(2 s of its rate quota, %.6g readings/s)"
                         : "the tenant is over its ingest rate quota (%.6g "
                           "readings/s); retry after the given seconds", rate);
            if (r->retry_after < 0)
                r->retry_after = 1;
            zlistx_destroy(&fresh);
            return -1;
        }
    }
    for (const char *k = fresh ? zlistx_first(fresh) : NULL; k; k = zlistx_next(fresh)) {
        zhashx_insert(t->series, k, (void *)1);
        if (self->state)
            fprintf(self->state, "%s\t%s\n", tenant, k);
    }
    if (fresh && self->state && fflush(self->state) != 0)
        log_warn("quotas: cannot append to the series file");
    zlistx_destroy(&fresh);
    return 0;
}

size_t
ingest_quota_series(const ingest_quota_t *self, const char *tenant)
{
    struct s_tenant *t = zhashx_lookup(self->tenants, tenant);
    return t ? zhashx_size(t->series) : 0;
}

static msg_batch_t *
s_test_batch(const char *const *keys, size_t n)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);

    for (size_t i = 0; i < n; i++)
        msg_batch_add_reading(b, keys[i], (int64_t)i, 1.0);
    return b;
}

void
ingest_quota_test(bool verbose)
{
    char dir[] = "/tmp/ingest-quota-XXXXXX", file[64], state[64], err[256];
    const char *ab[] = {"a{tenant=acme}", "b{tenant=acme}", "a{tenant=acme}"};
    const char *c[] = {"c{tenant=acme}"};
    const char *g[] = {"a{tenant=globex}", "b{tenant=globex}", "c{tenant=globex}"};
    struct ingest_quota_refusal r;
    ingest_quota_t *q;
    msg_batch_t *b1 = s_test_batch(ab, 3), *b2 = s_test_batch(c, 1), *b3 = s_test_batch(g, 3);
    FILE *f;

    assert(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/quotas.json", dir);
    snprintf(state, sizeof state, "%s/series.quota", dir);
    f = fopen(file, "w");
    fputs("{\"tenants\": {\"acme\": {\"series\": 2, \"rate\": 4}}}", f);
    fclose(f);
    q = ingest_quota_new(file, 0, 0, state, err, sizeof err);
    assert(q && ingest_quota_on(q));
    /* acme: two series, then a third is refused (403) while writes to the
     * two pass; globex has no limit. */
    assert(ingest_quota_take(q, "acme", b1, 0, &r) == 0);
    assert(ingest_quota_series(q, "acme") == 2);
    assert(ingest_quota_take(q, "acme", b2, 0, &r) == -1);
    assert(r.status == 403 && !strcmp(r.where, "series"));
    if (verbose)
        printf("   %s\n", r.message);
    assert(strstr(r.message, "quota is 2"));
    assert(ingest_quota_take(q, "globex", b3, 0, &r) == 0);
    /* Rate 4/s, burst 8: 3 already taken, 3 more pass, then 429. */
    assert(ingest_quota_take(q, "acme", b1, 0, &r) == 0);
    assert(ingest_quota_take(q, "acme", b1, 0, &r) == -1 && r.status == 429 &&
           r.retry_after >= 1 && !strcmp(r.where, "rate"));
    assert(ingest_quota_take(q, "acme", b1, CLOCK_NS_PER_S, &r) == 0);
    ingest_quota_destroy(&q);
    /* A restart remembers acme's series. */
    q = ingest_quota_new(file, 0, 0, state, err, sizeof err);
    assert(q && ingest_quota_series(q, "acme") == 2);
    assert(ingest_quota_take(q, "acme", b2, 0, &r) == -1 && r.status == 403);
    /* The command-line value applies to tenants the file does not name. */
    ingest_quota_set(q, 0, 1);
    assert(ingest_quota_on(q));
    assert(ingest_quota_take(q, "initech", b1, 0, &r) == -1 && r.status == 403);
    assert(ingest_quota_take(q, "initech", b2, 0, &r) == 0);
    ingest_quota_destroy(&q);
    /* More than the burst at once is 413. */
    q = ingest_quota_new("", 0, 0, "", err, sizeof err);
    assert(q && !ingest_quota_on(q));
    ingest_quota_set(q, 1, 0);
    assert(ingest_quota_on(q));
    ingest_quota_destroy(&q);
    q = ingest_quota_new("", 1, 0, "", err, sizeof err);
    assert(q && ingest_quota_take(q, "acme", b1, 0, &r) == -1 && r.status == 413);
    ingest_quota_destroy(&q);
    assert(ingest_quota_new("/nonexistent/q.json", 0, 0, "", err, sizeof err) == NULL);
    msg_batch_destroy(&b1);
    msg_batch_destroy(&b2);
    msg_batch_destroy(&b3);
    unlink(file);
    unlink(state);
    rmdir(dir);
    TEST_OK("ingest_quota");
}
