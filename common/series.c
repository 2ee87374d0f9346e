/*
 * series: canonical series keys, validation, lanes, matching.
 */
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
s_text_check(const char *s, size_t len, const char *what_empty)
{
    if (len == 0)
        return what_empty;
    if (len > SERIES_NAME_MAX)
        return "longer than 256 bytes";
    if (!strutil_utf8_valid(s, len))
        return "not valid UTF-8";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return "contains a control character";
        if (c == '{' || c == '}' || c == ',' || c == '=')
            return "contains one of the reserved characters {},=";
    }
    return NULL;
}

const char *
series_name_check(const char *name, size_t len)
{
    return s_text_check(name, len, "is empty");
}

const char *
series_tag_key_check(const char *key)
{
    if (!(isalpha((unsigned char)key[0]) || key[0] == '_'))
        return "tag key must match [A-Za-z_][A-Za-z0-9_]*";
    for (const char *p = key; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_'))
            return "tag key must match [A-Za-z_][A-Za-z0-9_]*";
    if (strlen(key) > SERIES_NAME_MAX)
        return "tag key longer than 256 bytes";
    return NULL;
}

const char *
series_tag_value_check(const char *value)
{
    return s_text_check(value, strlen(value), "tag value is empty");
}

static int
s_tag_cmp(const void *a, const void *b)
{
    return strcmp(((const struct series_tag *)a)->key,
                  ((const struct series_tag *)b)->key);
}

int
series_key_build(const char *name, struct series_tag *tags, size_t ntags,
                 char *out, size_t outlen)
{
    size_t n = strlen(name);

    /* memcpy rather than snprintf: this runs once per reading ingested. */
    if (ntags > 1)
        qsort(tags, ntags, sizeof tags[0], s_tag_cmp);
    if (n + 1 > outlen)
        return -1;
    memcpy(out, name, n);
    for (size_t i = 0; i < ntags; i++) {
        size_t kl = strlen(tags[i].key), vl = strlen(tags[i].value);
        if (i > 0 && strcmp(tags[i].key, tags[i - 1].key) == 0)
            return -1;
        if (n + kl + vl + 3 > outlen) /* sep, '=', and '}' or NUL */
            return -1;
        out[n++] = i == 0 ? '{' : ',';
        memcpy(out + n, tags[i].key, kl);
        n += kl;
        out[n++] = '=';
        memcpy(out + n, tags[i].value, vl);
        n += vl;
    }
    if (ntags > 0) {
        if (n + 2 > outlen)
            return -1;
        out[n++] = '}';
    }
    out[n] = '\0';
    return (int)n;
}

int
series_key_parse(const char *key, char *name, size_t namelen, char *tagbuf,
                 size_t tagbuflen, struct series_tag *tags, size_t max)
{
    const char *brace = strchr(key, '{');
    size_t nl = brace ? (size_t)(brace - key) : strlen(key);
    size_t tl;
    int nt = 0;

    if (nl == 0 || nl >= namelen)
        return -1;
    memcpy(name, key, nl);
    name[nl] = '\0';
    if (brace == NULL)
        return 0;
    tl = strlen(brace + 1);
    if (tl < 1 || brace[tl] != '}' || tl >= tagbuflen)
        return -1;
    memcpy(tagbuf, brace + 1, tl - 1);
    tagbuf[tl - 1] = '\0';
    for (char *p = tagbuf, *next; p; p = next) {
        char *eq;
        next = strchr(p, ',');
        if (next)
            *next++ = '\0';
        eq = strchr(p, '=');
        if (eq == NULL || eq == p || (size_t)nt >= max)
            return -1;
        *eq = '\0';
        tags[nt].key = p;
        tags[nt].value = eq + 1;
        nt++;
    }
    return nt;
}

/* The value of tag k in key (not NUL-terminated, length in *vlen), or
 * NULL when the key has no such tag. */
static const char *
s_tag_value(const char *key, const char *k, size_t *vlen)
{
    const char *p = strchr(key, '{');
    size_t kl = strlen(k);

    while (p && *p) {
        p++; /* past '{' or ',' */
        if (strncmp(p, k, kl) == 0 && p[kl] == '=') {
            *vlen = strcspn(p + kl + 1, ",}");
            return p + kl + 1;
        }
        p = strchr(p, ',');
    }
    return NULL;
}

const char *
series_tenant(const char *key, char *buf, size_t len)
{
    size_t vl;
    const char *v = s_tag_value(key, SERIES_TENANT_TAG, &vl);

    if (v == NULL || vl == 0 || vl >= len)
        return SERIES_TENANT_DEFAULT;
    memcpy(buf, v, vl);
    buf[vl] = '\0';
    return buf;
}

/* strcmp of the tag key that starts at p (ends at '=') against k. */
static int
s_tag_key_cmp(const char *p, const char *k)
{
    size_t pl = strcspn(p, "="), kl = strlen(k);
    int c = strncmp(p, k, pl < kl ? pl : kl);

    if (c != 0)
        return c;
    return pl < kl ? -1 : pl > kl;
}

int
series_key_stamp(char *key, size_t keylen, const char *tenant)
{
    size_t n = strlen(key), tl, vl, add, at;
    const char *brace = strchr(key, '{');
    char open, close;

    if (s_tag_value(key, SERIES_TENANT_TAG, &vl))
        return -2;
    if (tenant == NULL || strcmp(tenant, SERIES_TENANT_DEFAULT) == 0)
        return (int)n;
    tl = strlen(tenant);
    /* Insert "{tenant=T}" after a bare name, "tenant=T," before the first
     * tag whose key sorts after it, or ",tenant=T" before the final '}'. */
    if (brace == NULL) {
        at = n, open = '{', close = '}';
    } else {
        at = n - 1, open = ',', close = '\0';
        for (const char *p = brace; p && *p; p = strchr(p, ',')) {
            p++; /* past '{' or ',' */
            if (s_tag_key_cmp(p, SERIES_TENANT_TAG) > 0) {
                at = (size_t)(p - key), open = '\0', close = ',';
                break;
            }
        }
    }
    add = (open != '\0') + sizeof SERIES_TENANT_TAG + tl + (close != '\0');
    if (n + add + 1 > keylen)
        return -1;
    memmove(key + at + add, key + at, n - at + 1);
    if (open)
        key[at++] = open;
    memcpy(key + at, SERIES_TENANT_TAG "=", sizeof SERIES_TENANT_TAG);
    at += sizeof SERIES_TENANT_TAG;
    memcpy(key + at, tenant, tl);
    at += tl;
    if (close)
        key[at] = close;
    return (int)(n + add);
}

unsigned
series_lane(const char *key, size_t keylen, unsigned n)
{
    if (n <= 1)
        return 0;
    return series_lane_hash(strutil_fnv1a64(key, keylen), n);
}

unsigned
series_lane_hash(uint64_t hash, unsigned n)
{
    return n <= 1 ? 0 : (unsigned)(hash % n);
}

/* Find "k=v" as a whole tag inside the tag section of key. */
static bool
s_has_tag(const char *key, const struct series_tag *t)
{
    const char *p = strchr(key, '{');
    size_t kl = strlen(t->key), vl = strlen(t->value);

    while (p && *p) {
        p++; /* past '{' or ',' */
        if (strncmp(p, t->key, kl) == 0 && p[kl] == '=' &&
            strncmp(p + kl + 1, t->value, vl) == 0 &&
            (p[kl + 1 + vl] == ',' || p[kl + 1 + vl] == '}'))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

bool
series_match(const char *key, const char *sel,
             const struct series_tag *filters, size_t nfilters)
{
    const char *brace = strchr(key, '{');
    size_t nl = brace ? (size_t)(brace - key) : strlen(key);
    char name[SERIES_NAME_MAX + 1];

    if (strcmp(key, sel) != 0) {
        if (strchr(sel, '{'))
            return false;
        if (nl > SERIES_NAME_MAX)
            return false;
        memcpy(name, key, nl);
        name[nl] = '\0';
        if (strchr(sel, '*') || strchr(sel, '?')) {
            if (!strutil_glob(sel, name))
                return false;
        } else if (strcmp(sel, name) != 0) {
            return false;
        }
    }
    for (size_t i = 0; i < nfilters; i++) {
        size_t vl;
        if (filters[i].value[0] == '\0') {
            if (s_tag_value(key, filters[i].key, &vl))
                return false;
        } else if (!s_has_tag(key, &filters[i])) {
            return false;
        }
    }
    return true;
}

void
series_test(bool verbose)
{
    char key[SERIES_KEY_MAX], name[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
    struct series_tag tags[] = {{"location", "warehouse-a"}, {"device", "s1"}};
    struct series_tag parsed[4];
    struct series_tag f[] = {{"device", "s1"}};
    struct series_tag g[] = {{"device", "s"}};

    assert(series_key_build("temperature", tags, 2, key, sizeof key) > 0);
    TEST_STREQ(key, "temperature{device=s1,location=warehouse-a}");
    assert(series_key_build("api.latency", NULL, 0, key, sizeof key) == 11);
    TEST_STREQ(key, "api.latency");
    assert(series_key_build("x", tags, 2, key, 10) == -1);
    struct series_tag dup[] = {{"a", "1"}, {"a", "2"}};
    assert(series_key_build("x", dup, 2, key, sizeof key) == -1);
    assert(series_name_check("temp_sensor_001", 15) == NULL);
    assert(series_name_check("", 0) != NULL);
    assert(series_name_check("a{b", 3) != NULL);
    assert(series_name_check("\xff", 1) != NULL);
    assert(series_tag_key_check("device") == NULL);
    assert(series_tag_key_check("1x") != NULL);
    assert(series_tag_key_check("a-b") != NULL);
    assert(series_key_parse("temperature{device=s1,location=w}", name,
                            sizeof name, tb, sizeof tb, parsed, 4) == 2);
    TEST_STREQ(name, "temperature");
    TEST_STREQ(parsed[1].key, "location");
    TEST_STREQ(parsed[1].value, "w");
    assert(series_key_parse("plain", name, sizeof name, tb, sizeof tb, parsed,
                            4) == 0);
    assert(series_key_parse("bad{x}", name, sizeof name, tb, sizeof tb,
                            parsed, 4) == -1);
    assert(series_lane("abc", 3, 1) == 0);
    assert(series_lane("abc", 3, 4) == strutil_fnv1a64("abc", 3) % 4);
    assert(series_match("temperature{device=s1}", "temperature", NULL, 0));
    assert(series_match("temperature{device=s1}", "temperature", f, 1));
    assert(!series_match("temperature{device=s10}", "temperature", f, 1));
    assert(!series_match("temperature{device=s1}", "temperature", g, 1));
    assert(series_match("temp_sensor_001", "temp_sensor_*", NULL, 0));
    assert(series_match("temperature{device=s1}", "temperature{device=s1}",
                        NULL, 0));
    assert(!series_match("temperature{device=s1}", "temperature{device=s2}",
                         NULL, 0));
    assert(!series_match("temperature2", "temperature", NULL, 0));

    /* Tenants: stamped in sorted position, refused when given, absent for
     * the default tenant, selected with an empty filter. */
    struct series_tag def[] = {{"tenant", ""}}, acme[] = {{"tenant", "acme"}};
    snprintf(key, sizeof key, "temperature");
    assert(series_key_stamp(key, sizeof key, "acme") == 24);
    TEST_STREQ(key, "temperature{tenant=acme}");
    snprintf(key, sizeof key, "temperature{device=s1}");
    assert(series_key_stamp(key, sizeof key, "acme") == 34);
    TEST_STREQ(key, "temperature{device=s1,tenant=acme}");
    snprintf(key, sizeof key, "t{a=1,zone=b}");
    assert(series_key_stamp(key, sizeof key, "acme") > 0);
    TEST_STREQ(key, "t{a=1,tenant=acme,zone=b}");
    snprintf(key, sizeof key, "t{tenantx=1,z=2}");
    assert(series_key_stamp(key, sizeof key, "b") > 0);
    TEST_STREQ(key, "t{tenant=b,tenantx=1,z=2}");
    snprintf(key, sizeof key, "t{tenan=1}");
    assert(series_key_stamp(key, sizeof key, "b") > 0);
    TEST_STREQ(key, "t{tenan=1,tenant=b}");
    snprintf(key, sizeof key, "t{a=1}");
    assert(series_key_stamp(key, sizeof key, "default") == 6);
    assert(series_key_stamp(key, sizeof key, NULL) == 6);
    TEST_STREQ(key, "t{a=1}");
    assert(series_key_stamp(key, 10, "acme") == -1);
    TEST_STREQ(key, "t{a=1}");
    snprintf(key, sizeof key, "t{a=1,tenant=x}");
    assert(series_key_stamp(key, sizeof key, "acme") == -2);
    assert(series_key_stamp(key, sizeof key, "default") == -2);
    {
        /* The stamp equals building the key with the tag from scratch. */
        struct series_tag three[] = {{"zone", "z"}, {"tenant", "acme"},
                                     {"device", "d"}};
        char built[SERIES_KEY_MAX];
        series_key_build("m", three, 3, built, sizeof built);
        snprintf(key, sizeof key, "m{device=d,zone=z}");
        series_key_stamp(key, sizeof key, "acme");
        TEST_STREQ(key, built);
    }
    TEST_STREQ(series_tenant("t{a=1,tenant=acme}", name, sizeof name), "acme");
    TEST_STREQ(series_tenant("t{a=1}", name, sizeof name), "default");
    TEST_STREQ(series_tenant("t", name, sizeof name), "default");
    TEST_STREQ(series_tenant("t{tenant=acme}", name, 3), "default");
    assert(series_match("t{a=1}", "t", def, 1));
    assert(!series_match("t{a=1,tenant=acme}", "t", def, 1));
    assert(series_match("t{a=1,tenant=acme}", "t", acme, 1));
    assert(!series_match("t{a=1}", "t", acme, 1));
    assert(!series_match("t{tenant=acme2}", "t", acme, 1));
    assert(!series_match("t{tenant=acme}", "t{tenant=acme}", def, 1));
    (void)verbose;
    TEST_OK("series");
}
