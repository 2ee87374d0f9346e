/*
 * strutil: small string helpers (see strutil.h).
 */
#include "common/strutil.h"
#include "common/test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *
strutil_dtoa(double v, char *buf, size_t len)
{
    if (!isfinite(v)) {
        snprintf(buf, len, "null");
        return buf;
    }
    /* Integers print as integers ("50", not "5e+01"). */
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, len, "%.0f", v);
        return buf;
    }
    /* The shortest %.Ng that round-trips; 17 always does. */
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    return buf;
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
    errno = 0;
    v = strtod(s, &end);
    if (errno || *end != '\0' || !isfinite(v))
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
        /* Fast path: eight ASCII bytes without NUL at a time. */
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

void
strutil_test(bool verbose)
{
    char buf[40];
    long long ll;
    double d;

    TEST_STREQ(strutil_dtoa(23.6, buf, sizeof buf), "23.6");
    TEST_STREQ(strutil_dtoa((23.5 + 23.7) / 2, buf, sizeof buf), "23.6");
    TEST_STREQ(strutil_dtoa(0.1 + 0.2, buf, sizeof buf), "0.30000000000000004");
    TEST_STREQ(strutil_dtoa(2.0, buf, sizeof buf), "2");
    TEST_STREQ(strutil_dtoa(50, buf, sizeof buf), "50");
    TEST_STREQ(strutil_dtoa(-0.5, buf, sizeof buf), "-0.5");
    TEST_STREQ(strutil_dtoa(1e300, buf, sizeof buf), "1e+300");
    TEST_STREQ(strutil_dtoa(NAN, buf, sizeof buf), "null");
    assert(strutil_fnv1a64("", 0) == 0xcbf29ce484222325ULL);
    assert(strutil_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL);
    assert(strutil_toll("42", 0, 100, &ll) == 0 && ll == 42);
    assert(strutil_toll("420", 0, 100, &ll) == -1);
    assert(strutil_toll("4x", 0, 100, &ll) == -1);
    assert(strutil_tod("3.5", &d) == 0 && d == 3.5);
    assert(strutil_tod("nan", &d) == -1);
    assert(strutil_utf8_valid("caf\xc3\xa9", 5));
    assert(!strutil_utf8_valid("caf\xc3", 4));
    assert(!strutil_utf8_valid("\xff", 1));
    assert(!strutil_utf8_valid("\xed\xa0\x80", 3));
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
