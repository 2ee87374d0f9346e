/*
 * ingest_lp: InfluxDB line protocol bodies to readings (see
 * ingest_lp.h).
 */
#include "ingestd/ingest_lp.h"
#include "ingestd/ingest_parse.h"
#include "common/clock.h"
#include "common/keytab.h"
#include "common/reading.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy an escaped line-protocol token up to an unescaped stop character
 * (one of at most two); *olen (unless NULL) gets the bytes copied.
 * Returns the length consumed or -1. */
static long
s_token_n(const char *p, const char *end, const char *stop, char *out,
          size_t outlen, size_t *olen)
{
    size_t k = 0;
    const char *s = p;
    char s0 = stop[0], s1 = stop[1] ? stop[1] : stop[0];

    while (s < end && *s != s0 && *s != s1) {
        if (*s == '\\' && s + 1 < end)
            s++;
        if (k + 1 >= outlen)
            return -1;
        out[k++] = *s++;
    }
    out[k] = '\0';
    if (olen)
        *olen = k;
    return (long)(s - p);
}

static long
s_token(const char *p, const char *end, const char *stop, char *out,
        size_t outlen)
{
    return s_token_n(p, end, stop, out, outlen, NULL);
}

/* Line protocol bodies repeat their series: every series section
 * ("measurement,k=v,...") is parsed, checked and turned into its key
 * once per body; the lines after it find it in this cache by the raw
 * bytes, and the key of each of its fields in a small memo. */
#define LP_MEMO 4
#define LP_FIELD_MAX 32

struct s_lpseries {
    const char *why;        /* static reason when the section is bad */
    uint32_t meas, tags;    /* offsets in the cache arena */
    uint32_t meas_len;      /* measurement bytes */
    uint32_t tags_len;      /* "{k=v,...}" bytes, or 0 without tags */
    struct {
        char field[LP_FIELD_MAX]; /* field key */
        uint32_t flen;            /* its length */
        uint32_t series;          /* the batch's series of meas.field */
    } memo[LP_MEMO];
    unsigned nmemo;         /* memo entries used (round robin past LP_MEMO) */
};

struct s_lpcache {
    const char *tenant;     /* stamped into every key, or NULL */
    keytab_t *raw;          /* raw series sections seen in this body */
    struct s_lpseries *e;   /* one entry per raw section, same index */
    size_t cap;             /* entries allocated */
    char *arena;            /* measurements and tag parts */
    size_t alen, acap;      /* arena bytes used, allocated */
};

static uint32_t
s_lp_str(struct s_lpcache *c, const char *s, size_t len)
{
    uint32_t off = (uint32_t)c->alen;
    if (c->alen + len + 1 > c->acap) {
        c->acap = (c->alen + len + 1) * 2;
        c->arena = xrealloc(c->arena, c->acap);
    }
    memcpy(c->arena + c->alen, s, len);
    c->arena[c->alen + len] = '\0';
    c->alen += len + 1;
    return off;
}

/* Parse and check a series section p..end (no unescaped space inside)
 * into e, with the tenant's tag stamped into its tags. */
static void
s_lp_series(struct s_lpcache *c, const char *p, const char *end,
            const char *tenant, struct s_lpseries *e)
{
    char meas[SERIES_NAME_MAX + 1], key[SERIES_KEY_MAX];
    char tk[SERIES_TAGS_MAX][SERIES_NAME_MAX + 1];
    char tv[SERIES_TAGS_MAX][SERIES_NAME_MAX + 1];
    struct series_tag tags[SERIES_TAGS_MAX];
    size_t nt = 0, ml;
    long n;
    int kl = 0;

    memset(e, 0, sizeof *e);
    if ((n = s_token(p, end, ", ", meas, sizeof meas)) <= 0) {
        e->why = "missing measurement";
        return;
    }
    p += n;
    while (p < end && *p == ',') {
        if (nt == SERIES_TAGS_MAX) {
            e->why = "more than 32 tags";
            return;
        }
        p++;
        if ((n = s_token(p, end, "=", tk[nt], sizeof tk[nt])) <= 0 ||
            p + n >= end) {
            e->why = "bad tag key";
            return;
        }
        p += n + 1;
        if ((n = s_token(p, end, ", ", tv[nt], sizeof tv[nt])) <= 0) {
            e->why = "bad tag value";
            return;
        }
        p += n;
        if ((e->why = series_tag_key_check(tk[nt])) ||
            (e->why = series_tag_value_check(tv[nt])))
            return;
        tags[nt].key = tk[nt];
        tags[nt].value = tv[nt];
        nt++;
    }
    ml = strlen(meas);
    if (p < end)
        e->why = "missing fields";
    else if ((e->why = series_name_check(meas, ml)) == NULL &&
             (kl = series_key_build(meas, tags, nt, key, sizeof key)) < 0)
        e->why = "series key too long or a tag repeats";
    else if (e->why == NULL &&
             (e->why = ingest_parse_stamp(key, sizeof key, tenant)) == NULL)
        kl = (int)strlen(key); /* the name part is unchanged */
    if (e->why)
        return;
    e->meas = s_lp_str(c, meas, ml);
    e->meas_len = (uint32_t)ml;
    e->tags = s_lp_str(c, key + ml, (size_t)kl - ml);
    e->tags_len = (uint32_t)((size_t)kl - ml);
}

/* The cached entry of the series section at p (which ends at the first
 * unescaped space); *after is set past it. */
static const struct s_lpseries *
s_lp_lookup(struct s_lpcache *c, const char *p, const char *end,
            const char **after)
{
    const char *s = p;
    bool added;
    uint32_t i;

    while (s < end && *s != ' ') {
        if (*s == '\\' && s + 1 < end)
            s++;
        s++;
    }
    *after = s;
    i = keytab_add_hashed(c->raw, p, (size_t)(s - p),
                          strutil_hash64(p, (size_t)(s - p)), &added);
    if (added) {
        if (i == c->cap) {
            c->cap = c->cap ? c->cap * 2 : 64;
            c->e = xrealloc(c->e, c->cap * sizeof *c->e);
        }
        s_lp_series(c, p, s, c->tenant, &c->e[i]);
    }
    return &c->e[i];
}

/* The key of field fk (fl bytes) of series e into key (SERIES_KEY_MAX);
 * its length, or -1 with *why set. */
static int
s_lp_key(const struct s_lpcache *c, const struct s_lpseries *e,
         const char *fk, size_t fl, char *key, const char **why)
{
    size_t ml = e->meas_len, n = ml;

    memcpy(key, c->arena + e->meas, ml);
    if (fl != 5 || memcmp(fk, "value", 5) != 0) {
        if (ml + 1 + fl > SERIES_NAME_MAX) {
            *why = "longer than 256 bytes";
            return -1;
        }
        key[n++] = '.';
        memcpy(key + n, fk, fl);
        n += fl;
        if ((*why = series_name_check(key, n)))
            return -1;
    }
    if (n + e->tags_len + 1 > SERIES_KEY_MAX) {
        *why = "series key too long or a tag repeats";
        return -1;
    }
    memcpy(key + n, c->arena + e->tags, e->tags_len);
    n += e->tags_len;
    key[n] = '\0';
    return (int)n;
}

/* The memo slot of field fk (fl bytes) in e, or -1. */
static int
s_lp_memo(const struct s_lpseries *e, const char *fk, size_t fl)
{
    unsigned n = e->nmemo < LP_MEMO ? e->nmemo : LP_MEMO;
    for (unsigned i = 0; i < n; i++)
        if (e->memo[i].flen == fl && memcmp(e->memo[i].field, fk, fl) == 0)
            return (int)i;
    return -1;
}

/* A field value: a decimal with at most 15 significant digits and no
 * exponent is m / 10^k with both exact, so the one rounding of the
 * division gives what strtod gives; anything else goes to strtod. */
static int
s_lp_number(const char *s, size_t n, double *out)
{
    static const double pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,
                                   1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                   1e12, 1e13, 1e14, 1e15, 1e16, 1e17,
                                   1e18, 1e19, 1e20, 1e21, 1e22};
    uint64_t m = 0;
    size_t i = 0, digits = 0, frac = 0;
    bool neg = false, dot = false, any = false;

    if (i < n && (s[i] == '-' || s[i] == '+'))
        neg = s[i++] == '-';
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= '0' && ch <= '9') {
            any = true;
            if (m > 0 || ch != '0')
                digits++;
            if (digits > 15)
                return strutil_tod(s, out);
            m = m * 10 + (ch - '0');
            frac += dot;
        } else if (ch == '.' && !dot) {
            dot = true;
        } else {
            return strutil_tod(s, out);
        }
    }
    if (!any || frac >= sizeof pow10 / sizeof pow10[0])
        return strutil_tod(s, out);
    *out = (double)m / pow10[frac];
    if (neg)
        *out = -*out;
    return 0;
}

/* A timestamp: up to 18 digits in the fast loop; longer ones go to
 * strtoll. */
static int
s_lp_int(const char *s, long long *out)
{
    const char *p = s + (*s == '-');
    long long v = 0;
    size_t i;

    /* 18 digits < 10^18 < 2^63 cannot overflow; 19 can (10^19 - 1 >
     * 2^63 - 1), so a 19th digit leaves p[i] != '\0' and strtoll decides. */
    for (i = 0; i < 18 && p[i] >= '0' && p[i] <= '9'; i++)
        v = v * 10 + (p[i] - '0');
    if (i == 0 || p[i] != '\0')
        return strutil_toll(s, LLONG_MIN, LLONG_MAX, out);
    *out = *s == '-' ? -v : v;
    return 0;
}

/* The number in val (vl bytes, NUL-terminated). */
static const char *
s_lp_value(char *val, size_t vl, double *v)
{
    if (val[0] == '"')
        return "string fields are not numeric readings";
    if (isalpha((unsigned char)val[0])) {
        if (!strcmp(val, "t") || !strcmp(val, "T") || !strcmp(val, "true") ||
            !strcmp(val, "True") || !strcmp(val, "TRUE")) {
            *v = 1;
            return NULL;
        }
        if (!strcmp(val, "f") || !strcmp(val, "F") || !strcmp(val, "false") ||
            !strcmp(val, "False") || !strcmp(val, "FALSE")) {
            *v = 0;
            return NULL;
        }
    }
    if (vl > 1 && (val[vl - 1] == 'i' || val[vl - 1] == 'u'))
        val[--vl] = '\0';
    if (s_lp_number(val, vl, v))
        return "field value is not a finite number";
    return NULL;
}

/* One line: measurement[,k=v...] f=v[,f=v...] [timestamp] */
static const char *
s_write_line(struct s_lpcache *c, const char *p, const char *end, int64_t now,
             int64_t prec, msg_batch_t *b, size_t *added)
{
    char fk[32][SERIES_NAME_MAX + 1];
    size_t fl[32];
    double fv[32];
    int memo[32];
    size_t nf = 0;
    long n;
    int64_t ts = now;
    const char *why;
    char key[SERIES_KEY_MAX];
    struct s_lpseries *e = (struct s_lpseries *)s_lp_lookup(c, p, end, &p);

    if (e->why)
        return e->why;
    if (p >= end)
        return "missing fields";
    while (p < end && *p == ' ')
        p++;
    for (;;) {
        char val[64];
        size_t vl;
        if (nf == 32)
            return "more than 32 fields";
        if ((n = s_token_n(p, end, "=", fk[nf], sizeof fk[nf], &fl[nf])) <= 0 ||
            p + n >= end)
            return "bad field key";
        p += n + 1;
        if ((n = s_token_n(p, end, ", ", val, sizeof val, &vl)) <= 0)
            return "bad field value";
        p += n;
        if ((why = s_lp_value(val, vl, &fv[nf])))
            return why;
        nf++;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        break;
    }
    while (p < end && *p == ' ')
        p++;
    if (p < end) {
        char tsb[32];
        long long t;
        if ((n = s_token(p, end, " ", tsb, sizeof tsb)) <= 0 || s_lp_int(tsb, &t))
            return "bad timestamp";
        if (t > INT64_MAX / prec || t < INT64_MIN / prec)
            return "timestamp out of range";
        ts = (int64_t)t * prec;
        p += n;
        while (p < end && *p == ' ')
            p++;
        if (p < end)
            return "trailing characters after the timestamp";
    }
    if (ts < 0)
        return "timestamp before 1970";
    if (ts > now + READING_FUTURE_MAX_NS)
        return "timestamp more than a year in the future";
    /* Check every field's series before adding any, so a bad line adds
     * nothing. */
    for (size_t i = 0; i < nf; i++)
        if ((memo[i] = s_lp_memo(e, fk[i], fl[i])) < 0 &&
            s_lp_key(c, e, fk[i], fl[i], key, &why) < 0)
            return why;
    for (size_t i = 0; i < nf; i++) {
        uint32_t series;
        if (memo[i] >= 0) {
            series = e->memo[memo[i]].series;
        } else {
            int kl = s_lp_key(c, e, fk[i], fl[i], key, &why);
            series = msg_batch_series_add(b, key, (size_t)kl);
            if (fl[i] < LP_FIELD_MAX) { /* longer ones: no memo */
                unsigned slot = e->nmemo++ % LP_MEMO;
                memcpy(e->memo[slot].field, fk[i], fl[i] + 1);
                e->memo[slot].flen = (uint32_t)fl[i];
                e->memo[slot].series = series;
            }
        }
        msg_batch_add_point(b, series, ts, fv[i]);
    }
    *added = nf;
    return NULL;
}

size_t
ingest_lp_parse(const char *body, size_t len, int64_t now, int64_t prec,
                const char *tenant, msg_batch_t *b, ingest_lp_reject_fn *reject,
                void *arg)
{
    size_t accepted = 0;
    size_t start = 0, index = 0;
    /* One pass over a valid body instead of one per line. */
    bool utf8 = strutil_utf8_valid(body, len);
    struct s_lpcache c = {tenant, keytab_new(), NULL, 0, NULL, 0, 0};

    while (start < len) {
        const char *nl = memchr(body + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - body) : len;
        const char *p = body + start, *e = body + end;
        while (p < e && isspace((unsigned char)*p))
            p++;
        while (e > p && isspace((unsigned char)e[-1]))
            e--;
        if (p < e && *p != '#') {
            size_t added = 0;
            const char *why;
            if (!utf8 && !strutil_utf8_valid(p, (size_t)(e - p)))
                why = "line is not valid UTF-8";
            else
                why = s_write_line(&c, p, e, now, prec, b, &added);
            if (why)
                reject(index, why, arg);
            else
                accepted += added;
            index++;
        }
        start = end + 1;
    }
    keytab_destroy(&c.raw);
    free(c.e);
    free(c.arena);
    return accepted;
}

static void
s_count_reject(size_t index, const char *why, void *arg)
{
    (*(size_t *)arg)++;
}

void
ingest_lp_test(bool verbose)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    int64_t now = clock_now_ns();
    size_t rejected = 0;

    /* Repeated series sections come from the cache: the same keys, one
     * table entry per series; a bad section is refused each time; fields
     * beyond the memo and long field keys still get their own series. */
    msg_batch_reset(b);
    const char *rep = "m,b=2,a=1 value=1 1\n"
                      "m,b=2,a=1 f1=1,f2=2,f3=3,f4=4,f5=5 2\n"
                      "m,a=1,b=2 value=3 3\n"
                      "m,b=2,a=1 f5=6,f1=7 4\n"
                      "m\\ x,a=1 value=-0.5 5\n"
                      "m,a={x} value=1 6\n"
                      "m,a={x} value=1 7\n"
                      "m,a=1 a_field_key_longer_than_the_memo_holds=8 8\n"
                      "m,a=1 a_field_key_longer_than_the_memo_holds=9 9\n"
                      "m,b=2,a=1 value=1 -\n";
    assert(ingest_lp_parse(rep, strlen(rep), now, 1, NULL, b, s_count_reject,
                           &rejected) == 12);
    assert(rejected == 3);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off), "m{a=1,b=2}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 5)->key_off), "m.f5{a=1,b=2}");
    assert(msg_batch_reading(b, 6)->series == msg_batch_reading(b, 0)->series);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 7)->key_off), "m.f5{a=1,b=2}");
    assert(msg_batch_reading(b, 7)->value == 6 && msg_batch_reading(b, 7)->ts == 4);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 8)->key_off), "m.f1{a=1,b=2}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 9)->key_off), "m x{a=1}");
    assert(signbit(msg_batch_reading(b, 9)->value));
    assert(msg_batch_reading(b, 11)->series == msg_batch_reading(b, 10)->series);
    assert(msg_batch_nseries(b) == 8);
    /* A tenant is stamped into every key, cached or not; client data
     * naming one is refused every time. */
    msg_batch_reset(b);
    rejected = 0;
    const char *ten = "m,b=2 value=1 1\nm,b=2 f=2 2\nm value=3 3\n"
                      "m," SERIES_TENANT_TAG "=x value=4 4\n"
                      "m," SERIES_TENANT_TAG "=x value=5 5\n";
    assert(ingest_lp_parse(ten, strlen(ten), now, 1, "acme", b, s_count_reject,
                           &rejected) == 3);
    assert(rejected == 2);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off),
               "m{b=2," SERIES_TENANT_TAG "=acme}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 1)->key_off),
               "m.f{b=2," SERIES_TENANT_TAG "=acme}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 2)->key_off),
               "m{" SERIES_TENANT_TAG "=acme}");
    /* Timestamps: 18 digits in the fast loop, 19 by strtoll up to
     * INT64_MAX, beyond it refused (a 19-digit overflow in the fast loop
     * was found by fuzz_line_protocol). "now" as late as it can be, so
     * the future bound lets INT64_MAX through. */
    msg_batch_reset(b);
    rejected = 0;
    const char *tss = "m value=1 999999999999999999\n"
                      "m value=2 9223372036854775807\n"
                      "m value=3 9999999999999999999\n"
                      "m value=4 -999999999999999999\n";
    assert(ingest_lp_parse(tss, strlen(tss), INT64_MAX - READING_FUTURE_MAX_NS,
                           1, NULL, b, s_count_reject, &rejected) == 2);
    assert(rejected == 2);
    assert(msg_batch_reading(b, 0)->ts == 999999999999999999LL);
    assert(msg_batch_reading(b, 1)->ts == INT64_MAX);
    /* Field values: the fast decimal path agrees with strtod to the bit. */
    for (int i = 0; i < 20000; i++) {
        char v[64];
        double fast, slow;
        unsigned long long m = ((unsigned long long)rand() << 31 | (unsigned)rand()) %
                               1000000000000000ULL;
        int frac = rand() % 17;
        snprintf(v, sizeof v, "%s%llu", i % 3 ? "" : "-", m);
        if (frac > 0 && strlen(v) > (size_t)frac + 1) {
            size_t l = strlen(v);
            memmove(v + l - frac + 1, v + l - frac, (size_t)frac + 1);
            v[l - frac] = '.';
        }
        assert(s_lp_number(v, strlen(v), &fast) == 0);
        assert(strutil_tod(v, &slow) == 0);
        assert(memcmp(&fast, &slow, sizeof fast) == 0);
    }
    {
        double d;
        assert(s_lp_number("1e3", 3, &d) == 0 && d == 1000);
        assert(s_lp_number(".", 1, &d) == -1);
        assert(s_lp_number("1.2.3", 5, &d) == -1);
        assert(s_lp_number("12345678901234567", 17, &d) == 0 &&
               d == 12345678901234567.0);
    }
    msg_batch_destroy(&b);
    (void)verbose;
    TEST_OK("ingest_lp");
}
