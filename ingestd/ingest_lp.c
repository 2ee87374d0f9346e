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

/* The bytes that end an unescaped run of s_token_at: bit 1 for "=",
 * bit 2 for ", ", and the backslash for both. */
#define LP_STOP_EQ 1
#define LP_STOP_COMMA_SPACE 2
static const unsigned char s_stops[256] = {
    ['='] = LP_STOP_EQ, [','] = LP_STOP_COMMA_SPACE, [' '] = LP_STOP_COMMA_SPACE,
    ['\\'] = LP_STOP_EQ | LP_STOP_COMMA_SPACE};

/* The token at p as s_token_n takes it with stop ("=" for LP_STOP_EQ,
 * ", " for LP_STOP_COMMA_SPACE), read in place when it holds no escape
 * (*tok points into the body), else unescaped into buf: *tok and *tlen
 * are its bytes (not NUL-terminated). The same length limit as
 * s_token_n into buf. Returns the length consumed or -1. */
static long
s_token_at(const char *p, const char *end, unsigned stop, char *buf,
           size_t buflen, const char **tok, size_t *tlen)
{
    const char *s = p;

    while (s < end && !(s_stops[(unsigned char)*s] & stop))
        s++;
    if (s < end && *s == '\\') {
        *tok = buf;
        return s_token_n(p, end, stop == LP_STOP_EQ ? "=" : ", ", buf, buflen,
                         tlen);
    }
    if ((size_t)(s - p) + 1 > buflen)
        return -1;
    *tok = p;
    *tlen = (size_t)(s - p);
    return (long)(s - p);
}

static long
s_token(const char *p, const char *end, const char *stop, char *out,
        size_t outlen)
{
    return s_token_n(p, end, stop, out, outlen, NULL);
}

/* Line protocol bodies repeat their series, and so do the bodies after
 * them: every series section ("measurement,k=v,...") is parsed, checked
 * and turned into its key once while the cache holds it (across
 * requests of one tenant); the lines after it find it by its raw bytes,
 * and the key of each of its fields in a small memo that also remembers
 * the key's series in the batch being filled. Clients send their series
 * in a steady order, so the section that followed a section last time
 * is tried first, by one comparison instead of a hash lookup. */
#define LP_MEMO 4
#define LP_FIELD_MAX 32
#define LP_NONE UINT32_MAX
/* Past these the cache starts over at the next body (bounded memory). */
#define LP_CACHE_SECTIONS 32768
#define LP_CACHE_ARENA (8u << 20)

struct s_lpmemo {
    uint64_t hash;          /* strutil_fnv1a64 of the key (the batch's hash) */
    uint32_t field, flen;   /* field key bytes, in the arena */
    uint32_t key, klen;     /* its series key, in the arena */
    uint32_t gen, series;   /* the key's series in the batch of parse gen */
    bool plain;             /* the field key was read in place (no escape) */
};

struct s_lpseries {
    const char *why;        /* static reason when the section is bad */
    uint32_t raw, raw_len;  /* the section's bytes, in the arena */
    uint32_t meas, tags;    /* offsets in the cache arena */
    uint32_t meas_len;      /* measurement bytes */
    uint32_t tags_len;      /* "{k=v,...}" bytes, or 0 without tags */
    uint32_t next;          /* the section after this one last time */
    unsigned nmemo;         /* memo entries used (round robin past LP_MEMO) */
    struct s_lpmemo memo[LP_MEMO];
};

struct ingest_lp_cache {
    char *tenant;           /* stamped into every key (owned), or NULL */
    keytab_t *raw;          /* raw series sections seen */
    struct s_lpseries *e;   /* one entry per raw section, same index */
    size_t cap;             /* entries allocated */
    char *arena;            /* measurements, tag parts, fields, keys */
    size_t alen, acap;      /* arena bytes used, allocated */
    uint32_t gen;           /* parses so far (memo series validity) */
    uint32_t prev;          /* the previous line's section, or LP_NONE */
};

ingest_lp_cache_t *
ingest_lp_cache_new(void)
{
    ingest_lp_cache_t *self = xcalloc(1, sizeof *self);
    self->raw = keytab_new();
    self->prev = LP_NONE;
    return self;
}

void
ingest_lp_cache_destroy(ingest_lp_cache_t **self_p)
{
    ingest_lp_cache_t *self = *self_p;
    if (self == NULL)
        return;
    keytab_destroy(&self->raw);
    free(self->tenant);
    free(self->e);
    free(self->arena);
    free(self);
    *self_p = NULL;
}

size_t
ingest_lp_cache_size(const ingest_lp_cache_t *self)
{
    return keytab_size(self->raw);
}

/* Forget every section, keep the memory. */
static void
s_lp_reset(ingest_lp_cache_t *c)
{
    keytab_reset(c->raw);
    c->alen = 0;
    c->prev = LP_NONE;
}

/* Start a parse for tenant: a cache of another tenant (or grown past
 * its bounds) starts over. */
static void
s_lp_begin(ingest_lp_cache_t *c, const char *tenant)
{
    bool same = c->tenant == NULL ? tenant == NULL
                                  : tenant != NULL && !strcmp(c->tenant, tenant);
    if (!same) {
        free(c->tenant);
        c->tenant = tenant ? xstrdup(tenant) : NULL;
        s_lp_reset(c);
    } else if (keytab_size(c->raw) > LP_CACHE_SECTIONS ||
               c->alen > LP_CACHE_ARENA) {
        s_lp_reset(c);
    }
    if (++c->gen == 0) { /* wrapped: no memo may look current */
        s_lp_reset(c);
        c->gen = 1;
    }
}

static uint32_t
s_lp_str(ingest_lp_cache_t *c, const char *s, size_t len)
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
s_lp_series(ingest_lp_cache_t *c, const char *p, const char *end,
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
    e->next = LP_NONE;
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

/* Whether the n bytes at a and at b are the same (both readable),
 * eight at a time: the lengths here are a few dozen bytes, where a call
 * to memcmp costs more than the comparison. */
static inline bool
s_lp_eq(const char *a, const char *b, size_t n)
{
    uint64_t x, y;
    uint32_t u, w;

    if (n >= 8) { /* eight at a time, the last eight overlapping */
        const char *al = a + n - 8, *bl = b + n - 8;
        for (; a < al; a += 8, b += 8) {
            memcpy(&x, a, 8);
            memcpy(&y, b, 8);
            if (x != y)
                return false;
        }
        memcpy(&x, al, 8);
        memcpy(&y, bl, 8);
        return x == y;
    }
    if (n >= 4) { /* the first four and the last four, overlapping */
        memcpy(&u, a, 4);
        memcpy(&w, b, 4);
        if (u != w)
            return false;
        memcpy(&u, a + n - 4, 4);
        memcpy(&w, b + n - 4, 4);
        return u == w;
    }
    for (; n > 0; a++, b++, n--)
        if (*a != *b)
            return false;
    return true;
}

/* The index of the cached entry of the series section at p (which
 * ends at the first unescaped space); *after is set past it. */
static uint32_t
s_lp_lookup(ingest_lp_cache_t *c, const char *p, const char *end,
            const char **after)
{
    const char *s = p;
    bool added;
    uint32_t i;

    /* The section that followed the previous one last time: its bytes
     * were ended by a space then, so the same bytes and a space are the
     * same section. */
    if (c->prev != LP_NONE && (i = c->e[c->prev].next) != LP_NONE) {
        size_t n = c->e[i].raw_len;
        if ((size_t)(end - p) > n && p[n] == ' ' &&
            s_lp_eq(p, c->arena + c->e[i].raw, n)) {
            *after = p + n;
            c->prev = i;
            return i;
        }
    }
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
        c->e[i].raw = s_lp_str(c, p, (size_t)(s - p));
        c->e[i].raw_len = (uint32_t)(s - p);
    }
    /* Only a section ended by a space is predicted (one ended by the
     * line's end may hold a trailing backslash). */
    if (s < end) {
        if (c->prev != LP_NONE)
            c->e[c->prev].next = i;
        c->prev = i;
    } else {
        c->prev = LP_NONE;
    }
    return i;
}

/* The key of field fk (fl bytes) of series e into key (SERIES_KEY_MAX);
 * its length, or -1 with *why set. */
static int
s_lp_key(const ingest_lp_cache_t *c, const struct s_lpseries *e,
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
s_lp_memo(const ingest_lp_cache_t *c, const struct s_lpseries *e,
          const char *fk, size_t fl)
{
    unsigned n = e->nmemo < LP_MEMO ? e->nmemo : LP_MEMO;
    for (unsigned i = 0; i < n; i++)
        if (e->memo[i].flen == fl &&
            memcmp(c->arena + e->memo[i].field, fk, fl) == 0)
            return (int)i;
    return -1;
}

/* strtod on the n bytes at s (at most 63, else refused). */
static int
s_lp_tod(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return strutil_tod(buf, out);
}

/* Exact powers of ten as doubles (10^22 is the last). */
static const double s_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The plain decimal at p ("[+-]digits[.digits]", at least one digit)
 * when its digits as an integer m are at most 2^53 and it has at most
 * 22 decimals: m and 10^k are then exact doubles, so the one rounding of
 * m / 10^k is strtod's (Clinger's fast path). Returns the bytes it
 * takes with *out set, or 0 (nothing set) when p holds no such decimal;
 * what follows is the caller's to check. */
static size_t
s_lp_decimal(const char *p, const char *end, double *out)
{
    const char *s = p, *d0;
    uint64_t m = 0;
    size_t nd, nf = 0;
    bool neg = false;
    double v;

    if (s < end && (*s == '-' || *s == '+'))
        neg = *s++ == '-';
    d0 = s;
    /* 19 digits fit in 64 bits; past that m wraps (unsigned) and the
     * count refuses it. */
    while (s < end && (unsigned)(*s - '0') < 10)
        m = m * 10 + (uint64_t)(*s++ - '0');
    nd = (size_t)(s - d0);
    if (s < end && *s == '.') {
        const char *f0 = ++s;
        while (s < end && (unsigned)(*s - '0') < 10)
            m = m * 10 + (uint64_t)(*s++ - '0');
        nf = (size_t)(s - f0);
        nd += nf;
    }
    if (nd == 0 || nd > 19 || m > (UINT64_C(1) << 53) ||
        nf >= sizeof s_pow10 / sizeof s_pow10[0])
        return 0;
    v = (double)m / s_pow10[nf];
    *out = neg ? -v : v;
    return (size_t)(s - p);
}

/* A field value: a plain decimal by s_lp_decimal, anything else by
 * strtod (exponents, more digits, and the refusals). */
static int
s_lp_number(const char *s, size_t n, double *out)
{
    if (n > 0 && s_lp_decimal(s, s + n, out) == n)
        return 0;
    return s_lp_tod(s, n, out);
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

/* Whether the vl bytes at val are the word w. */
static bool
s_lp_is(const char *val, size_t vl, const char *w)
{
    return strlen(w) == vl && memcmp(val, w, vl) == 0;
}

/* The number in val (vl bytes). */
static const char *
s_lp_value(const char *val, size_t vl, double *v)
{
    if (val[0] == '"')
        return "string fields are not numeric readings";
    if (isalpha((unsigned char)val[0])) {
        if (s_lp_is(val, vl, "t") || s_lp_is(val, vl, "T") ||
            s_lp_is(val, vl, "true") || s_lp_is(val, vl, "True") ||
            s_lp_is(val, vl, "TRUE")) {
            *v = 1;
            return NULL;
        }
        if (s_lp_is(val, vl, "f") || s_lp_is(val, vl, "F") ||
            s_lp_is(val, vl, "false") || s_lp_is(val, vl, "False") ||
            s_lp_is(val, vl, "FALSE")) {
            *v = 0;
            return NULL;
        }
    }
    if (vl > 1 && (val[vl - 1] == 'i' || val[vl - 1] == 'u'))
        vl--;
    if (s_lp_number(val, vl, v))
        return "field value is not a finite number";
    return NULL;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LP_SWAR 1
/* Bit 7 set in the bytes of x (eight bytes, little-endian) that are not
 * digits: exact up to the first such byte, which is all its callers
 * look at (adding 6 to a byte of 0xFA or more carries into the next). */
static inline uint64_t
s_lp_nondigits(uint64_t x)
{
    /* A byte is a digit when its high nibble is 3 and adding 6 leaves
     * it 3 (0x30..0x39). */
    uint64_t hi = (x & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u;
    uint64_t lo =
        ((x + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u;
    uint64_t bad = hi | lo; /* non-zero bytes: not a digit */
    return (((bad & 0x7F7F7F7F7F7F7F7Fu) + 0x7F7F7F7F7F7F7F7Fu) | bad) &
           0x8080808080808080u;
}

/* Eight digits (little-endian x) as a number (simdjson's
 * parse_eight_digits_unrolled). */
static inline uint64_t
s_lp_8digits(uint64_t x)
{
    x -= 0x3030303030303030u;
    x = x * 10 + (x >> 8);
    x = ((x & 0x000000FF000000FFu) * (100 + (UINT64_C(1000000) << 32)) +
         ((x >> 16) & 0x000000FF000000FFu) * (1 + (UINT64_C(10000) << 32))) >>
        32;
    return (uint32_t)x;
}
#endif

/* The timestamp at p when it is digits (up to 18, optionally after '-')
 * ended by a space or the line's end: the length taken, or -1. */
static inline long
s_lp_ts_digits(const char *p, const char *end, long long *t)
{
    const char *s = p + (p < end && *p == '-'), *q = s;
    const char *lim = end - s > 18 ? s + 18 : end;
    long long v = 0;

#ifdef LP_SWAR
    /* Eight bytes at a time while they are all digits. */
    while (lim - q >= 8) {
        uint64_t x;
        memcpy(&x, q, 8);
        if (s_lp_nondigits(x) != 0)
            break;
        v = v * 100000000 + (long long)s_lp_8digits(x);
        q += 8;
    }
#endif
    while (q < lim && (unsigned)(*q - '0') < 10)
        v = v * 10 + (*q++ - '0');
    if (q > s && (q == end || *q == ' ')) {
        *t = s == p ? v : -v;
        return (long)(q - p);
    }
    return -1;
}

/* The timestamp at p: s_lp_ts_digits, else a token by s_lp_int.
 * Returns the length consumed, or -1. */
static long
s_lp_ts(const char *p, const char *end, long long *t)
{
    char tsb[32];
    long n;

    if ((n = s_lp_ts_digits(p, end, t)) >= 0)
        return n;
    if ((n = s_token(p, end, " ", tsb, sizeof tsb)) <= 0 || s_lp_int(tsb, t))
        return -1;
    return n;
}

/* What every line of a parse shares. */
struct s_lpctx {
    int64_t now;          /* bounds future timestamps, stands in for none */
    int64_t prec;         /* ns per timestamp unit */
    long long tmax, tmin; /* timestamps whose ns fit in 64 bits */
    msg_batch_t *b;       /* the readings go here */
    /* The last timestamp s_lp_fast read: its bytes (in the body) and
     * value. Lines of a batch mostly share theirs. */
    const char *tsp;
    long tsn;
    long long tsv;
};

/* Field keys a line may have for s_lp_fast. */
#define LP_FAST_FIELDS 32

/* ingest_lp_set_fast. */
static bool s_lp_fast_on = true;

void
ingest_lp_set_fast(bool on)
{
    s_lp_fast_on = on;
}

/* The fields and timestamp of a line (p just past its series section
 * e) when they are the common case: every field key one of e's memo
 * holds, read in place (no escape), every value a plain decimal
 * (s_lp_decimal) ended by ',', ' ' or the line's end, and the timestamp
 * absent or digits (s_lp_ts_digits) within range. Then the readings are
 * added, *added set and it returns true. Anything else returns false
 * having added nothing, and s_write_line's general parse takes the line
 * (and says what is wrong, if anything): what this takes, that parse
 * takes the same way, to the same series and value bits. */
static bool
s_lp_fast(ingest_lp_cache_t *c, struct s_lpseries *e, const char *p,
          const char *end, struct s_lpctx *x, size_t *added)
{
    struct s_lpmemo *fm[LP_FAST_FIELDS];
    double fv[LP_FAST_FIELDS];
    unsigned nm = e->nmemo < LP_MEMO ? e->nmemo : LP_MEMO;
    size_t nf = 0, k;
    int64_t ts = x->now;

    if (p >= end || *p != ' ')
        return false;
    while (p < end && *p == ' ')
        p++;
    for (;;) {
        struct s_lpmemo *m = NULL;
        if (nf == LP_FAST_FIELDS)
            return false;
        for (unsigned i = 0; i < nm; i++) {
            struct s_lpmemo *t = &e->memo[i];
            if (t->plain && (size_t)(end - p) > t->flen && p[t->flen] == '=' &&
                s_lp_eq(p, c->arena + t->field, t->flen)) {
                m = t;
                break;
            }
        }
        if (m == NULL)
            return false;
        p += m->flen + 1;
        if ((k = s_lp_decimal(p, end, &fv[nf])) == 0)
            return false;
        p += k;
        fm[nf++] = m;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        if (p < end && *p != ' ')
            return false;
        break;
    }
    while (p < end && *p == ' ')
        p++;
    if (p < end) {
        long long t;
        long n = x->tsn;
        if (n > 0 && end - p >= n && (p + n == end || p[n] == ' ') &&
            s_lp_eq(p, x->tsp, (size_t)n)) {
            t = x->tsv; /* the same bytes as the last line's */
        } else if ((n = s_lp_ts_digits(p, end, &t)) > 0) {
            x->tsp = p;
            x->tsn = n;
            x->tsv = t;
        }
        if (n < 0 || t > x->tmax || t < x->tmin)
            return false;
        p += n;
        while (p < end && *p == ' ')
            p++;
        if (p < end)
            return false;
        ts = (int64_t)t * x->prec;
    }
    if (ts < 0 || ts > x->now + READING_FUTURE_MAX_NS)
        return false;
    for (size_t i = 0; i < nf; i++)
        if (fm[i]->gen != c->gen) { /* the first in this batch */
            fm[i]->series = msg_batch_series_add_hashed(
                x->b, c->arena + fm[i]->key, fm[i]->klen, fm[i]->hash);
            fm[i]->gen = c->gen;
        }
    for (size_t i = 0; i < nf; i++)
        msg_batch_add_point(x->b, fm[i]->series, ts, fv[i]);
    *added = nf;
    return true;
}

/* One line: measurement[,k=v...] f=v[,f=v...] [timestamp] */
static const char *
s_write_line(ingest_lp_cache_t *c, const char *p, const char *end,
             struct s_lpctx *x, size_t *added)
{
    msg_batch_t *b = x->b;
    char fkb[32][SERIES_NAME_MAX + 1]; /* unescaped field keys */
    const char *fk[32];
    size_t fl[32];
    double fv[32];
    int memo[32];
    uint32_t series[32];
    size_t nf = 0;
    long n;
    int64_t ts = x->now;
    const char *why;
    char key[SERIES_KEY_MAX];
    uint32_t ei = s_lp_lookup(c, p, end, &p); /* may move c->e */
    struct s_lpseries *e = &c->e[ei];

    if (e->why)
        return e->why;
    if (s_lp_fast_on && s_lp_fast(c, e, p, end, x, added))
        return NULL;
    if (p >= end)
        return "missing fields";
    while (p < end && *p == ' ')
        p++;
    for (;;) {
        char valb[64];
        const char *val;
        size_t vl;
        if (nf == 32)
            return "more than 32 fields";
        if ((n = s_token_at(p, end, LP_STOP_EQ, fkb[nf], sizeof fkb[nf],
                            &fk[nf], &fl[nf])) <= 0 ||
            p + n >= end)
            return "bad field key";
        p += n + 1;
        if ((n = s_token_at(p, end, LP_STOP_COMMA_SPACE, valb, sizeof valb,
                            &val, &vl)) <= 0)
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
        long long t;
        if ((n = s_lp_ts(p, end, &t)) < 0)
            return "bad timestamp";
        if (t > x->tmax || t < x->tmin)
            return "timestamp out of range";
        ts = (int64_t)t * x->prec;
        p += n;
        while (p < end && *p == ' ')
            p++;
        if (p < end)
            return "trailing characters after the timestamp";
    }
    if (ts < 0)
        return "timestamp before 1970";
    if (ts > x->now + READING_FUTURE_MAX_NS)
        return "timestamp more than a year in the future";
    /* Check every field's series before adding any, so a bad line adds
     * nothing. */
    for (size_t i = 0; i < nf; i++)
        if ((memo[i] = s_lp_memo(c, e, fk[i], fl[i])) < 0 &&
            s_lp_key(c, e, fk[i], fl[i], key, &why) < 0)
            return why;
    /* The memo's series first: a miss below takes a memo slot round
     * robin, which may be the one a later field of this line found. */
    for (size_t i = 0; i < nf; i++) {
        struct s_lpmemo *m = memo[i] >= 0 ? &e->memo[memo[i]] : NULL;
        if (m && m->gen != c->gen) { /* the first in this batch */
            m->series = msg_batch_series_add_hashed(b, c->arena + m->key,
                                                    m->klen, m->hash);
            m->gen = c->gen;
        }
        series[i] = m ? m->series : UINT32_MAX;
    }
    for (size_t i = 0; i < nf; i++) {
        struct s_lpmemo *m;
        uint64_t h;
        int kl;
        if (series[i] != UINT32_MAX)
            continue;
        kl = s_lp_key(c, e, fk[i], fl[i], key, &why);
        h = strutil_fnv1a64(key, (size_t)kl);
        series[i] = msg_batch_series_add_hashed(b, key, (size_t)kl, h);
        if (fl[i] >= LP_FIELD_MAX) /* longer ones: no memo */
            continue;
        m = &e->memo[e->nmemo++ % LP_MEMO];
        m->field = s_lp_str(c, fk[i], fl[i]);
        m->flen = (uint32_t)fl[i];
        m->key = s_lp_str(c, key, (size_t)kl);
        m->klen = (uint32_t)kl;
        m->hash = h;
        m->plain = fk[i] != fkb[i];
        m->gen = c->gen;
        m->series = series[i];
    }
    for (size_t i = 0; i < nf; i++)
        msg_batch_add_point(b, series[i], ts, fv[i]);
    *added = nf;
    return NULL;
}

/* isspace() of the "C" locale (the daemons never set another), inline. */
static inline bool
s_lp_space(char ch)
{
    return ch == ' ' || (unsigned)(ch - '\t') <= '\r' - '\t';
}

size_t
ingest_lp_parse(ingest_lp_cache_t *cache, const char *body, size_t len,
                int64_t now, int64_t prec, const char *tenant, msg_batch_t *b,
                ingest_lp_reject_fn *reject, void *arg)
{
    size_t accepted = 0;
    size_t start = 0, index = 0;
    /* One pass over a valid body instead of one per line. */
    bool utf8 = strutil_utf8_valid(body, len);
    ingest_lp_cache_t *c = cache ? cache : ingest_lp_cache_new();
    struct s_lpctx x = {.now = now,
                        .prec = prec,
                        .tmax = INT64_MAX / prec,
                        .tmin = INT64_MIN / prec,
                        .b = b};

    s_lp_begin(c, tenant);
    while (start < len) {
        const char *nl = memchr(body + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - body) : len;
        const char *p = body + start, *e = body + end;
        while (p < e && s_lp_space(*p))
            p++;
        while (e > p && s_lp_space(e[-1]))
            e--;
        if (p < e && *p != '#') {
            size_t added = 0;
            const char *why;
            if (!utf8 && !strutil_utf8_valid(p, (size_t)(e - p)))
                why = "line is not valid UTF-8";
            else
                why = s_write_line(c, p, e, &x, &added);
            if (why)
                reject(index, why, arg);
            else
                accepted += added;
            index++;
        }
        start = end + 1;
    }
    if (c != cache)
        ingest_lp_cache_destroy(&c);
    return accepted;
}

static void
s_count_reject(size_t index, const char *why, void *arg)
{
    (*(size_t *)arg)++;
}

/* Whether a and b hold the same readings: keys, timestamps, value bits. */
static bool
s_same(const msg_batch_t *a, const msg_batch_t *b)
{
    if (msg_batch_size(a) != msg_batch_size(b))
        return false;
    for (size_t i = 0; i < msg_batch_size(a); i++) {
        const struct msg_reading *x = msg_batch_reading(a, i),
                                 *y = msg_batch_reading(b, i);
        if (strcmp(msg_batch_str(a, x->key_off), msg_batch_str(b, y->key_off)) ||
            x->ts != y->ts || memcmp(&x->value, &y->value, sizeof x->value))
            return false;
    }
    return true;
}

/* Parse body with cache and without into fresh batches: the same readings
 * and refusals. */
static void
s_test_cached(ingest_lp_cache_t *c, const char *body, const char *tenant)
{
    msg_batch_t *one = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_t *cached = msg_batch_new(MSG_TYPE_READINGS);
    size_t r1 = 0, r2 = 0, n1, n2;

    n1 = ingest_lp_parse(NULL, body, strlen(body), 1000, 1, tenant, one,
                         s_count_reject, &r1);
    n2 = ingest_lp_parse(c, body, strlen(body), 1000, 1, tenant, cached,
                         s_count_reject, &r2);
    assert(n1 == n2 && r1 == r2);
    assert(s_same(one, cached));
    msg_batch_destroy(&one);
    msg_batch_destroy(&cached);
}

/* A small xorshift for the randomised checks (repeatable). */
static uint64_t
s_test_rand(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return *st;
}

/* s_lp_number on v against strtod: the same refusal, the same bits;
 * s_lp_decimal, when it takes all of v, gives strtod's bits too. */
static void
s_test_number(const char *v)
{
    size_t n = strlen(v);
    double fast = 0, slow = 0, d = 0;
    int rf = s_lp_number(v, n, &fast), rs = strutil_tod(v, &slow);

    assert(rf == rs);
    assert(rf != 0 || memcmp(&fast, &slow, sizeof fast) == 0);
    if (n > 0 && s_lp_decimal(v, v + n, &d) == n) {
        double ref = strtod(v, NULL);
        assert(memcmp(&d, &ref, sizeof d) == 0);
    }
}

/* A random decimal-looking string into v (64 bytes): sign, leading
 * zeros, up to 21 integer digits, a point, up to 25 decimals, now and
 * then an exponent or a stray byte. */
static void
s_test_decimal_str(uint64_t *st, char *v)
{
    static const char odd[] = "eE.+-xi \\,";
    uint64_t r = s_test_rand(st);
    size_t k = 0, ni = r % 22, nf = (r >> 8) % 26, nz = (r >> 16) % 4;

    if ((r >> 20) % 4 == 0)
        v[k++] = (r >> 22) % 2 ? '-' : '+';
    if ((r >> 24) % 3 == 0)
        for (size_t i = 0; i < nz; i++)
            v[k++] = '0';
    for (size_t i = 0; i < ni; i++)
        v[k++] = (char)('0' + s_test_rand(st) % 10);
    if ((r >> 27) % 4 != 0) {
        v[k++] = '.';
        if ((r >> 30) % 3 == 0)
            for (size_t i = 0; i < nz; i++)
                v[k++] = '0';
        for (size_t i = 0; i < nf; i++)
            v[k++] = (char)('0' + s_test_rand(st) % 10);
    }
    if ((r >> 33) % 16 == 0)
        k += (size_t)sprintf(v + k, "e%d", (int)((r >> 37) % 40) - 20);
    if ((r >> 44) % 32 == 0)
        v[(r >> 50) % (k + 1)] = odd[(r >> 56) % (sizeof odd - 1)];
    v[k] = '\0';
}

/* A random index below n, small ones more often (the min of two). */
static size_t
s_test_skew(uint64_t *st, size_t n)
{
    size_t a = (size_t)(s_test_rand(st) % n), b = (size_t)(s_test_rand(st) % n);
    return a < b ? a : b;
}

/* One random line-protocol line into w: sections out of a few (some
 * escaped, some bad), fields out of a few (escaped ones whose raw bytes
 * read another way, more than the memo holds), values of every kind,
 * timestamps of every kind, stray spaces; the common shapes more often.
 * Returns the bytes written (at most 1,000). */
static size_t
s_test_line(uint64_t *st, char *w)
{
    static const char *sect[] = {"m,d=1",     "n,a=1,b=2", "m",         "m,d=2",
                                 "n,b=2,a=1", "m\\ x,d=1", "m,d=a\\ b", "m,d={",
                                 "q,d=1",     "m,d=1,d=2", ",d=1",      "m,d="};
    static const char *field[] = {"value", "v\\=x",   "v=x",  "f1", "t",
                                  "a\\ b", "a b",     "f2",   "f3", "f4",
                                  "f5",    "value\\", "v\\,x"};
    static const char *val[] = {"1",  "-0", "+2.5",  "0.001", "1e3", "12i",
                                "7u", "t",  "FALSE", "\"s\"", "nan", "inf",
                                "1.", ".5", "-.",    "",      "x",   "1.2.3"};
    static const char *ts[] = {"",
                               " 1700000000",
                               " -1",
                               " 0",
                               " -0",
                               " 1700000000  ",
                               " 9223372036854775807",
                               " 99999999999999999999",
                               " 17x",
                               " 1 2",
                               " 1700000000000000000",
                               " 12345678",
                               " 99999999999",
                               " 999999999999999999",
                               " -9999999999",
                               " 1800000000"};
    uint64_t r = s_test_rand(st);
    char *p = w;
    size_t nf = 1 + ((r >> 8) % 4 ? (r >> 10) % 2 : (r >> 12) % 6);

    if (r % 4) { /* tame: mostly what the quick reader takes */
        /* "a\\\\b" is the field a\b, "a\\b" the field ab: the quick
         * reader may not take the second for the first. */
        static const char *tf[] = {"value", "value",  "value", "f1", "f1",
                                   "v\\=x", "a\\\\b", "a\\b",  "ab"};
        static const char *tts[] = {
            "",    " 1700000000",  " 1700000001 ", " 1800000000",
            " -1", " 17000000001", " 170000000",   " 1700000000x"};
        p += sprintf(p, "%s ", sect[(r >> 1) % 4]);
        for (size_t i = 0; i < nf; i++) {
            uint64_t q = s_test_rand(st);
            p += sprintf(p, "%s%s=%s%u.%02u", i ? "," : "", tf[q % 9],
                         q >> 8 & 1 ? "-" : "", (unsigned)(q >> 9) % 100,
                         (unsigned)(q >> 20) % 100);
        }
        p += sprintf(p, "%s\n", tts[(r >> 40) % 8]);
        return (size_t)(p - w);
    }

    p += sprintf(p, "%s%s", sect[s_test_skew(st, sizeof sect / sizeof sect[0])],
                 (r >> 4) % 16 == 0 ? "  " : " ");
    for (size_t i = 0; i < nf; i++) {
        uint64_t q = s_test_rand(st);
        char num[64];
        const char *v = val[(q >> 8) % (sizeof val / sizeof val[0])];
        if ((q >> 16) % 4 != 0) {
            s_test_decimal_str(st, num);
            v = num;
        }
        p += sprintf(p, "%s%s=%s", i ? "," : "",
                     field[s_test_skew(st, sizeof field / sizeof field[0])], v);
    }
    p += sprintf(p, "%s", ts[s_test_skew(st, sizeof ts / sizeof ts[0])]);
    *p++ = '\n';
    return (size_t)(p - w);
}

/* The refusals of a parse, in order, as text. */
struct s_test_rej {
    char buf[1 << 16];
    size_t len;
};

static void
s_test_rej(size_t index, const char *why, void *arg)
{
    struct s_test_rej *r = arg;
    int n = snprintf(r->buf + r->len, sizeof r->buf - r->len, "%zu %s\n", index,
                     why);
    if (n > 0 && (size_t)n < sizeof r->buf - r->len)
        r->len += (size_t)n;
}

/* body parsed with the quick reader and without, each with a cache
 * (kept across calls, one per reader) and with none: the same readings
 * (keys, timestamps, value bits) and refusals, and between the two
 * readers the same encoded batch. */
static void
s_test_fast_same(ingest_lp_cache_t *cfast, ingest_lp_cache_t *cslow,
                 const char *body, size_t len, int64_t now, int64_t prec)
{
    msg_batch_t *b[4];
    struct s_test_rej *rej = xcalloc(4, sizeof *rej);
    char *data[4];
    size_t dlen[4], n[4];

    for (int i = 0; i < 4; i++) {
        b[i] = msg_batch_new(MSG_TYPE_READINGS);
        ingest_lp_set_fast(i % 2 == 0);
        n[i] = ingest_lp_parse(i < 2    ? NULL
                               : i == 2 ? cfast
                                        : cslow,
                               body, len, now, prec, "acme", b[i], s_test_rej,
                               &rej[i]);
        msg_batch_encode(b[i], &data[i], &dlen[i]);
    }
    ingest_lp_set_fast(true);
    for (int i = 1; i < 4; i++) {
        assert(n[i] == n[0] && msg_batch_size(b[i]) == msg_batch_size(b[0]));
        assert(msg_batch_nseries(b[i]) == msg_batch_nseries(b[0]));
        /* Exact bytes between the two readers with the same cache
         * state; the series table's order may differ with the cache
         * (a field the memo holds is added before one it does not), the
         * readings may not. */
        assert(dlen[i] == dlen[i & 2] &&
               memcmp(data[i], data[i & 2], dlen[i]) == 0);
        assert(s_same(b[i], b[0]));
        assert(rej[i].len == rej[0].len &&
               memcmp(rej[i].buf, rej[0].buf, rej[0].len) == 0);
    }
    for (int i = 0; i < 4; i++) {
        free(data[i]);
        msg_batch_destroy(&b[i]);
    }
    free(rej);
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
                      "m,b=2,a=1 value=1 -\n"
                      "m,b=2,a=1 f6=1,f3=2 10\n";
    assert(ingest_lp_parse(NULL, rep, strlen(rep), now, 1, NULL, b, s_count_reject,
                           &rejected) == 14);
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
    /* f6 took f3's memo slot (round robin) while f3 had found it: f3
     * still gets its own series. */
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 12)->key_off), "m.f6{a=1,b=2}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 13)->key_off), "m.f3{a=1,b=2}");
    assert(msg_batch_nseries(b) == 9);
    /* A tenant is stamped into every key, cached or not; client data
     * naming one is refused every time. */
    msg_batch_reset(b);
    rejected = 0;
    const char *ten = "m,b=2 value=1 1\nm,b=2 f=2 2\nm value=3 3\n"
                      "m," SERIES_TENANT_TAG "=x value=4 4\n"
                      "m," SERIES_TENANT_TAG "=x value=5 5\n";
    assert(ingest_lp_parse(NULL, ten, strlen(ten), now, 1, "acme", b, s_count_reject,
                           &rejected) == 3);
    assert(rejected == 2);
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 0)->key_off),
               "m{b=2," SERIES_TENANT_TAG "=acme}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 1)->key_off),
               "m.f{b=2," SERIES_TENANT_TAG "=acme}");
    TEST_STREQ(msg_batch_str(b, msg_batch_reading(b, 2)->key_off),
               "m{" SERIES_TENANT_TAG "=acme}");
    /* A cache kept across bodies gives what a fresh one gives: series
     * in order (predicted), out of order, a new field, a bad section, a
     * trailing backslash (never predicted: "m\\ x" is another section
     * than "m\\"), escapes, another tenant (the cache starts over). */
    {
        ingest_lp_cache_t *c = ingest_lp_cache_new();
        const char *bodies[] = {
            "a,d=1 value=1 1\nb,d=2 value=2 2\nc,d=3 value=3 3\n",
            "a,d=1 value=4 4\nb,d=2 value=5 5\nc,d=3 value=6 6\n",
            "c,d=3 value=7 7\na,d=1 f=8,value=9 8\nb,d=2 value=1 9\n",
            "a,d=1 value=1 1\nm\\\na,d=1 value=2 2\nm\\ x=3 3\n",
            "a,d=1 value=1 1\nm\\ x=3 3\na,d=1 value=1 1\nm\\\n",
            "a\\,d=1 v\\=x=1,value=2i 4\nb,d={ value=1\na,d=1 value=t -5\n",
            "a,d=1 value=1 1\na,d=1 value=1 1\nb,d=2 value=2 2\n"};
        for (int round = 0; round < 2; round++)
            for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
                s_test_cached(c, bodies[i], round ? "acme" : NULL);
        assert(ingest_lp_cache_size(c) > 0);
        /* Past its bound the cache starts over at the next body. */
        size_t cap = 40000 * 24;
        char *big = xmalloc(cap), *w = big;
        for (int i = 0; i < 40000; i++)
            w += sprintf(w, "s,i=%d value=1 1\n", i);
        s_test_cached(c, big, "acme");
        assert(ingest_lp_cache_size(c) >= 40000);
        s_test_cached(c, bodies[0], "acme");
        assert(ingest_lp_cache_size(c) == 3);
        free(big);
        ingest_lp_cache_destroy(&c);
        ingest_lp_cache_destroy(&c); /* NULL-safe */
    }
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
    assert(ingest_lp_parse(NULL, tss, strlen(tss), INT64_MAX - READING_FUTURE_MAX_NS,
                           1, NULL, b, s_count_reject, &rejected) == 2);
    assert(rejected == 2);
    assert(msg_batch_reading(b, 0)->ts == 999999999999999999LL);
    assert(msg_batch_reading(b, 1)->ts == INT64_MAX);
    /* Field values: the plain-decimal path agrees with strtod to the
     * bit, and refuses what strutil_tod refuses: edges, then a million
     * random decimal-looking strings. */
    {
        static const char *edge[] = {"0",
                                     "-0",
                                     "+0",
                                     "0.",
                                     ".0",
                                     "-.0",
                                     ".",
                                     "-",
                                     "+",
                                     "",
                                     "-.",
                                     "+.",
                                     "26.50",
                                     "-12.345",
                                     "1.",
                                     ".5",
                                     "00000000000000000000001",
                                     "9007199254740992",
                                     "9007199254740993",
                                     "-9007199254740993",
                                     "900719925474099.3",
                                     "9007199254740.9925",
                                     "0.9007199254740993",
                                     "1234567890123456789",
                                     "12345678901234567890",
                                     "18446744073709551615",
                                     "18446744073709551616",
                                     "99999999999999999999",
                                     "0.1",
                                     "0.2",
                                     "0.3",
                                     "1.7976931348623157",
                                     "0.0000000000000000000001",
                                     "0.00000000000000000000001",
                                     "1000000000000000000000.0",
                                     "10000000000000000000000",
                                     "4503599627370497.5",
                                     "2.2250738585072014",
                                     "5e-324",
                                     "1e308",
                                     "1e309",
                                     "0x10",
                                     "1e3",
                                     "1E3",
                                     "1.5e-3",
                                     "inf",
                                     "nan",
                                     "1.2.3",
                                     "--1",
                                     "+-1",
                                     "1-",
                                     "1 ",
                                     " 1",
                                     "1,",
                                     "12345678.12345678",
                                     "0.000000000000000000000000000001"};
        uint64_t st = 0x9E3779B97F4A7C15u;
        double d;
        char v[64];
        for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
            s_test_number(edge[i]);
        for (int i = 0; i < 1000000; i++) {
            s_test_decimal_str(&st, v);
            s_test_number(v);
        }
        /* Plain random values of a few decimals, the common case. */
        for (int i = 0; i < 200000; i++) {
            uint64_t r = s_test_rand(&st);
            snprintf(v, sizeof v, "%s%llu.%0*llu", r % 3 ? "" : "-",
                     (unsigned long long)(r >> 20) % 100000, (int)(r % 7) + 1,
                     (unsigned long long)(r >> 40) % 10000000 %
                         (unsigned long long)s_pow10[r % 7 + 1]);
            s_test_number(v);
        }
        assert(s_lp_number("1e3", 3, &d) == 0 && d == 1000);
        assert(s_lp_number(".", 1, &d) == -1);
        assert(s_lp_number("1.2.3", 5, &d) == -1);
        assert(s_lp_number("12345678901234567", 17, &d) == 0 &&
               d == 12345678901234567.0);
        {
            static const char d1[] = "26.50 1", d2[] = "9007199254740993";
            assert(s_lp_decimal(d1, d1 + 7, &d) == 5 && d == 26.5);
            assert(s_lp_decimal(d2, d2 + 16, &d) == 0);
        }
    }
    /* Timestamps in eight-digit steps: every length, every bad byte
     * place. */
    {
        char t[32];
        long long v;
        for (int len = 1; len <= 20; len++) {
            for (int i = 0; i < len; i++)
                t[i] = (char)('1' + (i * 7) % 9);
            t[len] = '\0';
            long n = s_lp_ts_digits(t, t + len, &v);
            if (len <= 18) {
                assert(n == len && v == strtoll(t, NULL, 10));
            } else {
                assert(n == -1);
            }
            for (int bad = 0; bad < len; bad++) {
                char c = t[bad];
                t[bad] = bad % 2 ? ':' : '/'; /* the bytes around '0'..'9' */
                assert(s_lp_ts_digits(t, t + len, &v) == -1);
                t[bad] = ' ';
                n = s_lp_ts_digits(t, t + len, &v);
                assert(bad == 0 || bad > 18 ? n == -1 : n == bad);
                t[bad] = c;
            }
        }
    }
    /* s_lp_eq: every length up to 40, a difference at every place. */
    {
        char a1[40], a2[40];
        for (size_t i = 0; i < sizeof a1; i++)
            a1[i] = a2[i] = (char)('a' + i % 26);
        for (size_t n = 0; n <= sizeof a1; n++) {
            assert(s_lp_eq(a1, a2, n));
            for (size_t i = 0; i < n; i++) {
                a2[i] = '#';
                assert(!s_lp_eq(a1, a2, n));
                assert(s_lp_eq(a1, a2, i));
                a2[i] = a1[i];
            }
        }
    }
    /* Against the byte loop: random runs of digits, spaces, signs and
     * other bytes, at every offset into a larger buffer. */
    {
        uint64_t st = 777;
        char t[48];
        for (int i = 0; i < 300000; i++) {
            uint64_t r = s_test_rand(&st);
            size_t len = r % 40, off = (r >> 8) % 8;
            for (size_t j = 0; j < sizeof t; j++) {
                uint64_t q = s_test_rand(&st) % 64;
                t[j] = q < 52   ? (char)('0' + q % 10)
                       : q < 56 ? ' '
                       : q < 58 ? '-'
                       : q < 60 ? '/'
                       : q < 62 ? ':'
                                : (char)(0x80 | q);
            }
            const char *p = t + off, *end = p + len;
            const char *sd = p + (p < end && *p == '-'), *q = sd;
            const char *lim = end - sd > 18 ? sd + 18 : end;
            long long v = 0, got = 0;
            long want = -1;
            while (q < lim && (unsigned)(*q - '0') < 10)
                v = v * 10 + (*q++ - '0');
            if (q > sd && (q == end || *q == ' '))
                want = (long)(q - p);
            assert(s_lp_ts_digits(p, end, &got) == want);
            assert(want < 0 || got == (sd == p ? v : -v));
        }
    }
    /* The quick reader against the general parse: random bodies of
     * every line shape, with and without caches kept across bodies. */
    {
        uint64_t st = 12345;
        ingest_lp_cache_t *cf = ingest_lp_cache_new(),
                          *cs = ingest_lp_cache_new();
        char *body = xmalloc(300 * 1000);
        for (int round = 0; round < 400; round++) {
            size_t len = 0, lines = 1 + s_test_rand(&st) % 300;
            for (size_t i = 0; i < lines; i++)
                len += s_test_line(&st, body + len);
            s_test_fast_same(cf, cs, body, len, 1700000000000000000LL,
                             round % 3 ? 1000000000LL : 1);
        }
        /* By hand: what a quick reader that checked less would take
         * (a value ended by another byte, 33 fields of one memo). */
        {
            static const char *hand[] = {
                "m value=1 1\nm value=1.5-0\nm value=2i 2\nm value=3 4 5\n"
                "m value=4\\ 1\nm value=5\tm\nm  value=6  7  \nm value=7,\n",
                "m,d=1 value=1 1\nm,d=1 value=2,value=3 2\nm,d=1 value=1e1 "
                "3\n"};
            char *w = body;
            for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++)
                s_test_fast_same(cf, cs, hand[i], strlen(hand[i]),
                                 1700000000000000000LL, 1);
            for (int k = 0; k < 2; k++) {
                w += sprintf(w, "m value=1");
                for (int i = 0; i < 32; i++)
                    w += sprintf(w, ",value=%d", i);
                w += sprintf(w, " 1\n");
            }
            s_test_fast_same(cf, cs, body, (size_t)(w - body),
                             1700000000000000000LL, 1);
        }
        /* The bench's own shape, repeated (every line quick). */
        size_t len = 0;
        for (int k = 0; k < 5; k++)
            for (int i = 0; i < 200; i++)
                len += (size_t)sprintf(
                    body + len,
                    "sensor,id=dev_%05d value=%d.%02d 17040672%02d\n", i,
                    i % 40, (i * 37) % 100, k);
        s_test_fast_same(cf, cs, body, len, 1700000000000000000LL,
                         1000000000LL);
        free(body);
        ingest_lp_cache_destroy(&cf);
        ingest_lp_cache_destroy(&cs);
    }
    msg_batch_destroy(&b);
    (void)verbose;
    TEST_OK("ingest_lp");
}
