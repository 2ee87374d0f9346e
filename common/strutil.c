/*
 * strutil: small string helpers (see strutil.h).
 */
#include "common/strutil.h"
#include "common/test.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exact powers of ten as doubles (10^22 is the last one). */
static const double s_p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
#define S_FAST_DIGITS 15 /* decimal digits any double holds exactly */
#define S_FAST_MAX 1e15  /* integers below it have at most 15 digits */

/* Copy n <= 32 bytes with two overlapping fixed-size moves, which the
 * compiler inlines (a memcpy of a variable length is a libc call, about
 * a third of printing a 17-digit number). */
static inline void
s_copy(char *d, const char *s, size_t n)
{
    if (n >= 16) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else {
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
    }
}

/* Write the non-negative integer m with k decimals ("123", 2 -> "1.23",
 * 5, 3 -> "0.005"); m has no trailing zero when k > 0. Returns the end. */
static char *
s_fixed(char *p, uint64_t m, int k)
{
    static const char pairs[201] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    char tmp[24], *t = tmp + sizeof tmp;
    int n;
    uint32_t r;

    /* Eight digits a 64-bit division, from the right, each eight as four
     * independent pairs in 32 bits; then two digits a division. */
    while (m >= 100000000) {
        uint32_t e = (uint32_t)(m % 100000000), h = e / 10000, l = e % 10000;
        m /= 100000000;
        t -= 8;
        memcpy(t, pairs + 2 * (h / 100), 2);
        memcpy(t + 2, pairs + 2 * (h % 100), 2);
        memcpy(t + 4, pairs + 2 * (l / 100), 2);
        memcpy(t + 6, pairs + 2 * (l % 100), 2);
    }
    for (r = (uint32_t)m; r >= 100; r /= 100) {
        t -= 2;
        memcpy(t, pairs + 2 * (r % 100), 2);
    }
    if (r >= 10) {
        t -= 2;
        memcpy(t, pairs + 2 * r, 2);
    } else {
        *--t = (char)('0' + r);
    }
    n = (int)(tmp + sizeof tmp - t);
    if (k == 0) {
        s_copy(p, t, (size_t)n);
        p[n] = '\0';
        return p + n;
    }
    if (n <= k) { /* "0." and leading zeros of the fraction */
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)(k - n));
        p += k - n;
        s_copy(p, t, (size_t)n);
        p[n] = '\0';
        return p + n;
    }
    s_copy(p, t, (size_t)(n - k));
    p += n - k;
    *p++ = '.';
    s_copy(p, t + n - k, (size_t)k);
    p[k] = '\0';
    return p + k;
}

/* Write m / 10^k (m without trailing zero) in %g's exponent form:
 * 123, 8 -> "1.23e-06". Returns the end. */
static char *
s_expo(char *p, uint64_t m, int k)
{
    char *start = p;
    p = s_fixed(p, m, 0);
    size_t n = (size_t)(p - start);
    int x = (int)n - 1 - k;
    if (n > 1) {
        memmove(start + 2, start + 1, n - 1);
        start[1] = '.';
        p++;
    }
    *p++ = 'e';
    *p++ = x < 0 ? '-' : '+';
    x = abs(x);
    if (x >= 100)
        *p++ = (char)('0' + x / 100);
    *p++ = (char)('0' + x / 10 % 10);
    *p++ = (char)('0' + x % 10);
    *p = '\0';
    return p;
}

/* The shortest "%.Ng" of v when it has at most S_FAST_DIGITS significant
 * digits and 1e-7 <= |v| < 1e15, found with integer arithmetic: the
 * smallest k such that the integer m = round(|v| 10^k) gives back |v| as
 * m / 10^k. Both that division (10^k is exact up to 10^22) and strtod of
 * the printed text are correctly rounded, so they agree; and with at most
 * 15 digits the k-decimal number within v's rounding interval is unique,
 * so it is the one %.Ng prints. %g's choice of notation follows: fixed
 * from 1e-4 on (a non-integer there never has an exponent >= its digit
 * count), exponent below. Returns buf, or NULL outside the fast case. */
static char *
s_dtoa_fast(double v, char *buf, size_t len)
{
    double a = fabs(v);
    if (len < 32 || !(a >= 1e-7 && a < S_FAST_MAX))
        return NULL;
    for (int k = 1; k <= 22; k++) {
        double m = nearbyint(a * s_p10[k]);
        if (m >= S_FAST_MAX)
            break; /* more than S_FAST_DIGITS digits */
        if (m / s_p10[k] != a)
            continue;
        char *p = buf;
        if (signbit(v))
            *p++ = '-';
        return a >= 1e-4 ? s_fixed(p, (uint64_t)m, k)
                         : s_expo(p, (uint64_t)m, k);
    }
    return NULL;
}

/* 10^i as an integer, 0 <= i <= 21. */
static unsigned __int128
s_p10_int(int i)
{
    static const uint64_t p[] = {
        1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL,
        10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL,
        100000000000ULL, 1000000000000ULL, 10000000000000ULL,
        100000000000000ULL, 1000000000000000ULL, 10000000000000000ULL,
        100000000000000000ULL, 1000000000000000000ULL,
        10000000000000000000ULL};
    return i < 20 ? p[i] : (unsigned __int128)p[19] * s_p10_int(i - 19);
}

/* The N-digit rounding (N = 17, 16, 15 for D = 1, 10, 100) of a =
 * m / 2^sh from its 17-digit floor q = floor(a 10^dd) (q < 10^17): q / D
 * rounded half to even as glibc's printf rounds the exact value (the
 * nested floor is exact; the part dropped is above one half when q mod D
 * is, or equal to it and the remainder of q, rtail, is not 0; exactly
 * one half is a tie). rcmp compares that remainder with one half for
 * D = 1 (-1, 0, 1). Sets *k and returns true when k D lies within
 * [ilo, ihi], the 17-digit integers that read back as a. */
static bool
s_round_trips(uint64_t q, bool rtail, int rcmp, uint64_t D, uint64_t ilo,
              uint64_t ihi, uint64_t *k)
{
    uint64_t kk = q / D, r = q % D;
    int c = D == 1 ? rcmp : r * 2 > D ? 1 : r * 2 < D ? -1 : rtail ? 1 : 0;

    if (c > 0 || (c == 0 && (kk & 1)))
        kk++;
    if (kk * D < ilo || kk * D > ihi)
        return false;
    *k = kk;
    return true;
}

/* Is a (= m / 2^sh) >= 10^j, for -5 <= j <= 15? Exact. */
static bool
s_ge_p10(double a, uint64_t m, int sh, int j)
{
    if (j >= 0)
        return a >= s_p10[j];
    return (unsigned __int128)m * s_p10_int(-j) >= ((unsigned __int128)1 << sh);
}

/* The shortest %.Ng of a non-integer v with 1e-4 <= |v| < 1e15 (fixed
 * notation, as %g prints it there; means of sensor values print like
 * this, mostly with 16 or 17 digits, where the bisection over snprintf
 * and strtod below costs microseconds): one 128-bit product gives the
 * 17-digit rounding, and the 16- and 15-digit ones come from it. Returns
 * the end of the text at buf, or NULL when v is outside that case (then
 * s_dtoa_fast or the slower search decides). */
static char *
s_dtoa_wide(double v, char *buf, size_t len)
{
    typedef unsigned __int128 u128;
    double a = fabs(v);
    int e2, l10, d;
    uint64_t m, k = 0;

    if (len < 32 || !(a >= 1e-4 && a < S_FAST_MAX))
        return NULL;
    /* a is normal here: its mantissa with the hidden bit, and frexp's
     * exponent. */
    memcpy(&m, &a, sizeof m);
    e2 = (int)(m >> 52) - 1022;
    m = (m & ((1ULL << 52) - 1)) | (1ULL << 52);
    int sh = 53 - e2; /* a = m / 2^sh, 3 <= sh <= 67 */
    /* 2^(e2-1) <= a < 2^e2: floor(log10 a) is floor((e2 - 1) log10 2)
     * or one more (78913 / 2^18 is log10 2 to 6 digits, exact enough for
     * these exponents); settle it exactly. */
    l10 = (int)(((int64_t)(e2 - 1) * 78913) >> 18);
    while (!s_ge_p10(a, m, sh, l10))
        l10--;
    while (s_ge_p10(a, m, sh, l10 + 1))
        l10++;
    /* 17 digits: dd = 16 - l10 <= 20 decimals, 10^dd < 2^67. a's
     * rounding interval is (lo, hi) / (4 10^dd 2^sh): its lower half is
     * narrower at a power of two, and its ends count when m is even
     * (strtod rounds ties to even). [ilo, ihi] are the 17-digit
     * integers X with X / 10^dd inside. Products stay below 2^127. */
    int dd = 16 - l10, s2 = sh + 2;
    u128 p10 = s_p10_int(dd), num = (u128)m * p10;
    uint64_t q = (uint64_t)(num >> sh); /* 10^16 <= q < 10^17 */
    u128 rem = num & (((u128)1 << sh) - 1), half = (u128)1 << (sh - 1);
    u128 lo = ((u128)4 * m - (m == (1ULL << 52) ? 1 : 2)) * p10;
    u128 hi = ((u128)4 * m + 2) * p10, mask = ((u128)1 << s2) - 1;
    bool even = (m & 1) == 0;
    uint64_t ilo = (uint64_t)(lo >> s2) + ((lo & mask) || !even);
    uint64_t ihi = (uint64_t)(hi >> s2) - (!(hi & mask) && !even);
    int rcmp = rem > half ? 1 : rem < half ? -1 : 0;

    /* At most one 15-digit number lies in the interval (it is narrower
     * than 10^-15 of a), so when the 15-digit rounding reads back, it
     * is the shortest form with its trailing zeros. */
    if (s_round_trips(q, rem != 0, rcmp, 100, ilo, ihi, &k))
        d = dd - 2;
    else if (s_round_trips(q, rem != 0, rcmp, 10, ilo, ihi, &k))
        d = dd - 1;
    else if (s_round_trips(q, rem != 0, rcmp, 1, ilo, ihi, &k))
        d = dd;
    else
        return NULL; /* cannot happen: 17 digits always round-trip */
    while (d > 0 && k % 10 == 0) {
        k /= 10;
        d--;
    }
    char *p = buf;
    if (signbit(v))
        *p++ = '-';
    return s_fixed(p, k, d);
}

char *
strutil_utoa(uint64_t v, char *p)
{
    return s_fixed(p, v, 0);
}

char *
strutil_dtoa_end(double v, char *buf)
{
    char *end;

    if (!isfinite(v)) {
        memcpy(buf, "null", 5);
        return buf + 4;
    }
    /* Integers print as integers ("50", not "5e+01"); below 10^15 a
     * truncation to int64_t is exact, and cheaper than floor(). */
    if (fabs(v) < S_FAST_MAX && (double)(int64_t)v == v) {
        char *p = buf;
        if (signbit(v))
            *p++ = '-'; /* "-0" as %.0f prints it */
        return s_fixed(p, (uint64_t)fabs(v), 0);
    }
    if ((end = s_dtoa_wide(v, buf, 32)) || (end = s_dtoa_fast(v, buf, 32)))
        return end;
    /* The shortest %.Ng that round-trips, bisected: whether %.Ng reads
     * back to v is monotonic in N (the N+1-digit rounding is at least as
     * close as the N-digit one), and 17 always does. */
    char tmp[320]; /* what gcc allows %.*g of a double, fits 24 here */
    int lo = 1, hi = 17;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        snprintf(tmp, sizeof tmp, "%.*g", mid, v);
        if (strtod(tmp, NULL) == v)
            hi = mid;
        else
            lo = mid + 1;
    }
    size_t n = (size_t)snprintf(tmp, sizeof tmp, "%.*g", hi, v);
    memcpy(buf, tmp, n + 1);
    return buf + n;
}

char *
strutil_dtoa(double v, char *buf, size_t len)
{
    char tmp[32];

    if (len >= 32) {
        strutil_dtoa_end(v, buf);
        return buf;
    }
    size_t n = (size_t)(strutil_dtoa_end(v, tmp) - tmp);
    if (len > 0) { /* cut to len - 1 bytes, as snprintf would */
        n = n < len - 1 ? n : len - 1;
        memcpy(buf, tmp, n);
        buf[n] = '\0';
    }
    return buf;
}

/* The plain decimals most readings are ("-12.345", at most 15 digits,
 * no exponent) as m / 10^k, which is correctly rounded and so equals
 * strtod's result (Clinger's fast path). 0 with *out set, or -1 when s
 * is not such a decimal (the caller falls back to strtod). */
static int
s_tod_fast(const char *s, double *out)
{
    const char *p = s, *digits0;
    bool neg = *p == '-';
    uint64_t m = 0;
    int sig = 0, k = -1; /* significant digits; decimals (-1: no '.') */

    if (neg)
        p++;
    digits0 = p;
    for (;; p++) {
        if (*p >= '0' && *p <= '9') {
            m = m * 10 + (uint64_t)(*p - '0');
            sig += m != 0;
            k += k >= 0;
        } else if (*p == '.' && k < 0)
            k = 0;
        else
            break;
        if (sig > S_FAST_DIGITS || k > 22)
            return -1;
    }
    if (*p != '\0' || p - digits0 < (k >= 0 ? 2 : 1))
        return -1; /* not a plain decimal, or "", "-", "." */
    double v = (double)m;
    if (k > 0)
        v /= s_p10[k];
    *out = neg ? -v : v;
    return 0;
}

uint64_t
strutil_fnv1a64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t
strutil_hash64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ n, w;

    for (; n >= 8; b += 8, n -= 8) {
        memcpy(&w, b, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    if (n > 0)
        memcpy(&w, b, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 29);
}

int
strutil_toll(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;

    if (s == NULL || *s == '\0')
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int
strutil_tod(const char *s, double *out)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0')
        return -1;
    if (s_tod_fast(s, out) == 0)
        return 0;
    errno = 0;
    v = strtod(s, &end);
    /* ERANGE also marks an underflow: a subnormal or zero result is the
     * double the text rounds to (as jansson takes it in JSON), not an
     * error. An overflow is HUGE_VAL, refused as not finite. */
    if ((errno && !(errno == ERANGE && fabs(v) <= DBL_MIN)) || *end != '\0' ||
        !isfinite(v))
        return -1;
    *out = v;
    return 0;
}

bool
strutil_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned c;
        size_t need;
        unsigned min;
        /* Fast path: 32, then eight ASCII bytes without NUL at a time. */
        while (i + 32 <= n) {
            uint64_t w[4], z = 0;
            memcpy(w, p + i, 32);
            for (int k = 0; k < 4; k++)
                z |= w[k] | ((w[k] - 0x0101010101010101ULL) & ~w[k]);
            if (z & 0x8080808080808080ULL)
                break;
            i += 32;
        }
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if ((w & 0x8080808080808080ULL) ||
                ((w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL))
                break;
            i += 8;
        }
        if (i >= n)
            break;
        c = p[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1; min = 0x80; c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2; min = 0x800; c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3; min = 0x10000; c &= 0x07;
        } else {
            return false;
        }
        if (i + need >= n)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

bool
strutil_glob(const char *pat, const char *s)
{
    const char *star = NULL, *ss = NULL;

    while (*s) {
        if (*pat == '?' || *pat == *s) {
            pat++;
            s++;
        } else if (*pat == '*') {
            star = pat++;
            ss = s;
        } else if (star) {
            pat = star + 1;
            s = ++ss;
        } else {
            return false;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static int
s_hex(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int
strutil_urldecode(char *s, bool plus)
{
    char *w = s;
    for (char *r = s; *r; r++) {
        if (*r == '%') {
            int hi = s_hex((unsigned char)r[1]), lo;
            if (hi < 0 || (lo = s_hex((unsigned char)r[2])) < 0)
                return -1;
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else if (plus && *r == '+') {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return 0;
}

/* The reference both fast paths must agree with: the shortest "%.Ng"
 * found by trying every N, and strtod. */
static void
s_test_one(double v)
{
    char fast[40], ref[40];
    double back;

    char *end = strutil_dtoa_end(v, fast);
    assert(end == fast + strlen(fast));
    if (v == floor(v) && fabs(v) < S_FAST_MAX)
        snprintf(ref, sizeof ref, "%.0f", v);
    else
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(ref, sizeof ref, "%.*g", prec, v);
            if (strtod(ref, NULL) == v)
                break;
        }
    TEST_STREQ(fast, ref);
    for (int k = 0; k <= 12 && fabs(v) < 1e12; k += 3) {
        char txt[64];
        snprintf(txt, sizeof txt, "%.*f", k, v);
        double want = strtod(txt, NULL);
        assert(strutil_tod(txt, &back) == 0);
        assert(back == want && signbit(back) == signbit(want));
    }
    assert(strutil_tod(ref, &back) == 0);
    assert(back == v && signbit(back) == signbit(v));
}

static void
s_test_numbers(bool verbose)
{
    static const char *plain[] = {"0",       "-0",     "0.1",    "-.5",
                                  "5.",      "007.50", "1e3",    "0x10",
                                  "123456789012345", "1234567890123456",
                                  "0.000000000000000000000001", "9007199254740993",
                                  "-", ".", "", "1.2.3", " 1", "1 ", "inf"};
    double d, r;
    /* The fast path accepts exactly what strtod accepts whole. */
    for (size_t i = 0; i < sizeof plain / sizeof *plain; i++) {
        char *end;
        r = strtod(plain[i], &end);
        bool ok = *plain[i] && *end == '\0' && isfinite(r);
        assert(strutil_tod(plain[i], &d) == (ok ? 0 : -1));
        assert(!ok || (d == r && signbit(d) == signbit(r)));
    }
    /* Values of every magnitude and digit count, with a fixed LCG. */
    uint64_t x = 42;
    size_t n = 0;
    for (int e = -12; e <= 17; e++)
        for (int digits = 1; digits <= 17; digits++)
            for (int i = 0; i < 40; i++, n++) {
                x = x * 6364136223846793005ULL + 1442695040888963407ULL;
                double m = (double)(x >> 11) / 9007199254740992.0;
                char txt[40];
                snprintf(txt, sizeof txt, "%.*e", digits - 1, m * 10);
                double v = strtod(txt, NULL) * pow(10, e);
                s_test_one(i & 1 ? -v : v);
                s_test_one(strtod(txt, NULL) * (i & 1 ? -1 : 1));
            }
    s_test_one(0.1 + 0.2);
    s_test_one(5e-324);
    s_test_one(-0.0);
    s_test_one(0.0001);
    s_test_one(1e-6);
    s_test_one(-2.5e-7);
    s_test_one(9.999999e-5);
    s_test_one(0.00009999999999999999);
    s_test_one(9.9999999999999995);
    s_test_one(999999999999999.9);
    /* Means and products of sensor values: mostly 16 and 17 digits. */
    for (int i = 0; i < 50000; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double a = (double)(x >> 40 & 0xffff) / 100, b = (double)(x >> 20 & 0xfff);
        s_test_one(a / (b + 1) * pow(10, (int)(x % 19) - 4));
        s_test_one((a + b / 100) / 30);
        n++;
    }
    /* Any bit pattern: every exponent, subnormals; NaN and infinities
     * are "null" (and strutil_dtoa truncates to a short buffer). */
    for (int i = 0; i < 20000; i++, n++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t bits = x ^ (x >> 29);
        double any;
        memcpy(&any, &bits, sizeof any);
        if (isfinite(any))
            s_test_one(any);
    }
    char nb[40], small[4];
    TEST_STREQ(strutil_dtoa_end(INFINITY, nb) - 4, "null");
    TEST_STREQ(strutil_dtoa(-INFINITY, nb, sizeof nb), "null");
    TEST_STREQ(strutil_dtoa(-NAN, nb, sizeof nb), "null");
    TEST_STREQ(strutil_dtoa(123.25, small, sizeof small), "123");
    s_test_one(0.30000000000000004);
    s_test_one(1e-4 * (1 + DBL_EPSILON));
    s_test_one(4503599627370495.5 / 16); /* below a power of two */
    s_test_one(0.125 + DBL_EPSILON / 8);
    if (verbose)
        printf("   dtoa/tod agree with snprintf/strtod on %zu values\n", n * 2);
}

void
strutil_test(bool verbose)
{
    char buf[40];
    long long ll;
    double d;

    TEST_STREQ(strutil_dtoa(23.6, buf, sizeof buf), "23.6");
    assert(strutil_utoa(18446744073709551615ULL, buf) == buf + 20);
    TEST_STREQ(buf, "18446744073709551615");
    assert(strutil_utoa(0, buf) == buf + 1 && !strcmp(buf, "0"));
    TEST_STREQ(strutil_dtoa((23.5 + 23.7) / 2, buf, sizeof buf), "23.6");
    TEST_STREQ(strutil_dtoa(0.1 + 0.2, buf, sizeof buf), "0.30000000000000004");
    TEST_STREQ(strutil_dtoa(2.0, buf, sizeof buf), "2");
    TEST_STREQ(strutil_dtoa(50, buf, sizeof buf), "50");
    TEST_STREQ(strutil_dtoa(-0.5, buf, sizeof buf), "-0.5");
    TEST_STREQ(strutil_dtoa(1e300, buf, sizeof buf), "1e+300");
    TEST_STREQ(strutil_dtoa(NAN, buf, sizeof buf), "null");
    assert(strutil_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    assert(strutil_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert(strutil_hash64("abcdefghi", 9) != strutil_hash64("abcdefgh", 8));
    assert(strutil_hash64("a", 1) != strutil_hash64("b", 1));
    assert(strutil_toll("42", 0, 100, &ll) == 0 && ll == 42);
    assert(strutil_toll("420", 0, 100, &ll) == -1);
    assert(strutil_toll("4x", 0, 100, &ll) == -1);
    assert(strutil_tod("3.5", &d) == 0 && d == 3.5);
    assert(strutil_tod("nan", &d) == -1);
    /* Underflow is no error: subnormals and what rounds to zero. */
    assert(strutil_tod("5e-324", &d) == 0 && d == 5e-324);
    assert(strutil_tod("-1e-400", &d) == 0 && d == 0 && signbit(d));
    assert(strutil_tod("1e999", &d) == -1);
    s_test_numbers(verbose);
    assert(strutil_utf8_valid("caf\xc3\xa9", 5));
    assert(!strutil_utf8_valid("caf\xc3", 4));
    assert(!strutil_utf8_valid("\xff", 1));
    assert(!strutil_utf8_valid("\xed\xa0\x80", 3));
    {
        /* Long runs (the 32- and 8-byte steps) with one odd byte at
         * every place. */
        char l[100];
        memset(l, 'a', sizeof l);
        assert(strutil_utf8_valid(l, sizeof l));
        for (size_t i = 0; i < sizeof l; i++) {
            l[i] = '\0';
            assert(!strutil_utf8_valid(l, sizeof l));
            l[i] = '\xff';
            assert(!strutil_utf8_valid(l, sizeof l));
            if (i + 1 < sizeof l) {
                l[i] = '\xc3';
                l[i + 1] = '\xa9';
                assert(strutil_utf8_valid(l, sizeof l));
                l[i + 1] = 'a';
            }
            l[i] = 'a';
        }
    }
    assert(strutil_glob("temp_sensor_*", "temp_sensor_001"));
    assert(!strutil_glob("temp_sensor_?", "temp_sensor_001"));
    assert(strutil_glob("*", ""));
    char u[] = "temperature%7Bdevice%3Dsensor-001%7D+x";
    assert(strutil_urldecode(u, true) == 0);
    TEST_STREQ(u, "temperature{device=sensor-001} x");
    char bad[] = "%zz";
    assert(strutil_urldecode(bad, false) == -1);
    (void)verbose;
    TEST_OK("strutil");
}
