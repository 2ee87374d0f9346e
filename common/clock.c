/*
 * clock: time parsing and formatting (see clock.h).
 */
#include "common/clock.h"
#include "common/test.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t
clock_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

int64_t
clock_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

/* Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). Valid for any year in int range. */
static int64_t
s_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static int
s_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int
s_days_in_month(int y, int m)
{
    static const int dm[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return dm[m - 1];
}

int
clock_parse_rfc3339(const char *s, int64_t *ts_ns)
{
    const char *p = s;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac = 0, off = 0;

    if (s_digits(&p, 4, &y) || *p++ != '-' || s_digits(&p, 2, &mo) ||
        *p++ != '-' || s_digits(&p, 2, &d))
        return -1;
    if (mo < 1 || mo > 12 || d < 1 || d > s_days_in_month(y, mo))
        return -1;
    if (*p == '\0')
        goto done;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return -1;
    p++;
    if (s_digits(&p, 2, &h) || *p++ != ':' || s_digits(&p, 2, &mi) ||
        *p++ != ':' || s_digits(&p, 2, &sec))
        return -1;
    if (h > 23 || mi > 59 || sec > 60)
        return -1;
    if (*p == '.') {
        int64_t scale = CLOCK_NS_PER_S / 10;
        p++;
        if (!isdigit((unsigned char)*p))
            return -1;
        while (isdigit((unsigned char)*p)) {
            frac += (*p - '0') * scale;
            scale /= 10;
            p++;
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om;
        p++;
        if (s_digits(&p, 2, &oh) || *p++ != ':' || s_digits(&p, 2, &om) ||
            oh > 23 || om > 59)
            return -1;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -1;
    }
    if (*p != '\0')
        return -1;
done:;
    int64_t secs = s_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
                   h * 3600 + mi * 60 + sec - off;
    /* int64 ns covers 1677..2262. */
    if (secs > INT64_MAX / CLOCK_NS_PER_S - 1 ||
        secs < INT64_MIN / CLOCK_NS_PER_S + 1)
        return -1;
    *ts_ns = secs * CLOCK_NS_PER_S + frac;
    return 0;
}

int
clock_parse_time(const char *s, int64_t *ts_ns)
{
    char *end;
    long long ms;

    if (s == NULL || *s == '\0')
        return -1;
    if (strchr(s, '-') == NULL || (s[0] == '-' && strchr(s + 1, '-') == NULL)) {
        errno = 0;
        ms = strtoll(s, &end, 10);
        if (errno || *end != '\0' || ms > INT64_MAX / CLOCK_NS_PER_MS ||
            ms < INT64_MIN / CLOCK_NS_PER_MS)
            return -1;
        *ts_ns = ms * CLOCK_NS_PER_MS;
        return 0;
    }
    return clock_parse_rfc3339(s, ts_ns);
}

/* Through gmtime_r and snprintf: any year, and the reference the fast
 * path is tested against. */
static char *
s_format_slow(int64_t ts_ns, char *buf, size_t len)
{
    int64_t secs = ts_ns / CLOCK_NS_PER_S;
    int64_t ns = ts_ns % CLOCK_NS_PER_S;
    struct tm tm;
    time_t t;

    if (ns < 0) {
        ns += CLOCK_NS_PER_S;
        secs--;
    }
    t = (time_t)secs;
    gmtime_r(&t, &tm);
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)(ns / CLOCK_NS_PER_MS));
    return buf;
}

/* Without gmtime_r and snprintf (the anomalyd filter and the JSON
 * writers print one per reading) for years 0..9999; days to civil date
 * after Howard Hinnant's algorithm. */
char *
clock_format(int64_t ts_ns, char *buf, size_t len)
{
    int64_t secs = ts_ns / CLOCK_NS_PER_S, ns = ts_ns % CLOCK_NS_PER_S;
    if (ns < 0) {
        ns += CLOCK_NS_PER_S;
        secs--;
    }
    int64_t days = secs / 86400, sod = secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400, doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    if (y < 0 || y > 9999 || len < 25)
        return s_format_slow(ts_ns, buf, len);
    int f[] = {(int)y,
               (int)m,
               (int)d,
               (int)(sod / 3600),
               (int)(sod / 60 % 60),
               (int)(sod % 60),
               (int)(ns / CLOCK_NS_PER_MS)};
    char *p = buf;
    p[0] = (char)('0' + f[0] / 1000);
    p[1] = (char)('0' + f[0] / 100 % 10);
    p[2] = (char)('0' + f[0] / 10 % 10);
    p[3] = (char)('0' + f[0] % 10);
    p += 4;
    static const char sep[] = "--T::";
    for (int i = 1; i < 6; i++) {
        *p++ = sep[i - 1];
        *p++ = (char)('0' + f[i] / 10);
        *p++ = (char)('0' + f[i] % 10);
    }
    *p++ = '.';
    *p++ = (char)('0' + f[6] / 100);
    *p++ = (char)('0' + f[6] / 10 % 10);
    *p++ = (char)('0' + f[6] % 10);
    *p++ = 'Z';
    *p = '\0';
    return buf;
}

int
clock_parse_duration(const char *s, int64_t *ns)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {
        {"ns", 1},                   {"us", 1000},
        {"ms", CLOCK_NS_PER_MS},     {"s", CLOCK_NS_PER_S},
        {"sec", CLOCK_NS_PER_S},     {"m", 60 * CLOCK_NS_PER_S},
        {"min", 60 * CLOCK_NS_PER_S}, {"h", 3600 * CLOCK_NS_PER_S},
        {"d", 86400 * CLOCK_NS_PER_S}, {"w", 7 * 86400 * CLOCK_NS_PER_S},
    };
    int64_t total = 0;

    /* One or more NUMBER UNIT terms, as Go and Prometheus write them:
     * 30s, 1.5h, 1h30m, 250ms, 500us, 20ns. The number is decimal with an optional
     * fraction, summed exactly in nanoseconds (a fraction finer than a
     * nanosecond is cut). */
    if (s == NULL || *s == '\0')
        return -1;
    while (*s) {
        int64_t whole = 0, frac = 0, scale = 1, unit = 0;
        bool digits = false;
        size_t len = 0;

        for (; isdigit((unsigned char)*s); s++, digits = true) {
            if (whole > (INT64_MAX - 9) / 10)
                return -1;
            whole = whole * 10 + (*s - '0');
        }
        if (*s == '.')
            for (s++; isdigit((unsigned char)*s); s++, digits = true)
                if (scale <= INT64_MAX / 100) { /* 17 digits are plenty */
                    frac = frac * 10 + (*s - '0');
                    scale *= 10;
                }
        if (!digits)
            return -1;
        while (isalpha((unsigned char)s[len]))
            len++;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
            if (strlen(units[i].unit) == len &&
                strncmp(s, units[i].unit, len) == 0)
                unit = units[i].ns;
        if (unit == 0 || whole > INT64_MAX / unit)
            return -1;
        s += len;
        /* frac / scale < 1, so frac * (unit / scale) stays below unit;
         * the product is formed without overflow in 128 bits. */
        int64_t part = whole * unit +
                       (int64_t)((__int128)frac * unit / scale);
        if (part > INT64_MAX - total)
            return -1;
        total += part;
    }
    if (total <= 0)
        return -1;
    *ns = total;
    return 0;
}

int
clock_parse_duration_ms(const char *s, int64_t *ns)
{
    return clock_parse_duration(s, ns) == 0 && *ns % CLOCK_NS_PER_MS == 0
               ? 0 : -1;
}

void
clock_test(bool verbose)
{
    int64_t t;
    char buf[40];

    assert(clock_parse_rfc3339("2024-01-01T00:00:00Z", &t) == 0);
    assert(t == 1704067200LL * CLOCK_NS_PER_S);
    TEST_STREQ(clock_format(t, buf, sizeof buf), "2024-01-01T00:00:00.000Z");
    /* The fast path prints what gmtime_r and snprintf print. */
    for (int64_t u = -3000000000LL * CLOCK_NS_PER_S;
         u < 7000000000LL * CLOCK_NS_PER_S; u += 86399123456789LL) {
        char slow[40];
        TEST_STREQ(clock_format(u, buf, sizeof buf),
                   s_format_slow(u, slow, sizeof slow));
    }
    assert(clock_parse_rfc3339("2024-01-01T01:00:00.5+01:00", &t) == 0);
    assert(t == 1704067200LL * CLOCK_NS_PER_S + 500 * CLOCK_NS_PER_MS);
    assert(clock_parse_rfc3339("2024-01-01", &t) == 0);
    assert(t == 1704067200LL * CLOCK_NS_PER_S);
    assert(clock_parse_rfc3339("1969-12-31T23:59:59.250Z", &t) == 0);
    assert(t == -750 * CLOCK_NS_PER_MS);
    TEST_STREQ(clock_format(t, buf, sizeof buf), "1969-12-31T23:59:59.250Z");
    assert(clock_parse_rfc3339("2024-02-30T00:00:00Z", &t) == -1);
    assert(clock_parse_rfc3339("2024-01-01T00:00:00", &t) == -1);
    assert(clock_parse_rfc3339("2024-01-01T25:00:00Z", &t) == -1);
    assert(clock_parse_rfc3339("garbage", &t) == -1);
    assert(clock_parse_rfc3339("9999-01-01T00:00:00Z", &t) == -1);
    assert(clock_parse_time("1634567890000", &t) == 0);
    assert(t == 1634567890000LL * CLOCK_NS_PER_MS);
    assert(clock_parse_time("2024-01-31", &t) == 0);
    assert(clock_parse_time("12x", &t) == -1);
    assert(clock_parse_duration("5min", &t) == 0 && t == 300 * CLOCK_NS_PER_S);
    assert(clock_parse_duration_ms("1.5s", &t) == 0 && t == 1500 * CLOCK_NS_PER_MS);
    assert(clock_parse_duration_ms("1ms", &t) == 0 && t == CLOCK_NS_PER_MS);
    assert(clock_parse_duration_ms("1500us", &t) == -1);
    assert(clock_parse_duration_ms(".5ms", &t) == -1);
    assert(clock_parse_duration_ms("x", &t) == -1);
    assert(clock_parse_duration("5m", &t) == 0 && t == 300 * CLOCK_NS_PER_S);
    assert(clock_parse_duration("30s", &t) == 0 && t == 30 * CLOCK_NS_PER_S);
    assert(clock_parse_duration("1d", &t) == 0);
    assert(clock_parse_duration("1w", &t) == 0);
    assert(clock_parse_duration("0s", &t) == -1);
    assert(clock_parse_duration("5 min", &t) == -1);
    assert(clock_parse_duration("5parsecs", &t) == -1);
    /* Fractions and compound terms, as in Go and Prometheus. */
    assert(clock_parse_duration("1.5h", &t) == 0 && t == 5400 * CLOCK_NS_PER_S);
    assert(clock_parse_duration("0.2s", &t) == 0 && t == 200 * CLOCK_NS_PER_MS);
    assert(clock_parse_duration("1h30m", &t) == 0 && t == 5400 * CLOCK_NS_PER_S);
    assert(clock_parse_duration("2d12h", &t) == 0 && t == 60 * 3600 * CLOCK_NS_PER_S);
    assert(clock_parse_duration("1m30s250ms", &t) == 0 &&
           t == 90 * CLOCK_NS_PER_S + 250 * CLOCK_NS_PER_MS);
    assert(clock_parse_duration(".5s", &t) == 0 && t == 500 * CLOCK_NS_PER_MS);
    assert(clock_parse_duration("0.0000000001s", &t) == -1); /* under 1 ns */
    assert(clock_parse_duration("0.000000001s", &t) == 0 && t == 1);
    assert(clock_parse_duration("1.s", &t) == 0 && t == CLOCK_NS_PER_S);
    assert(clock_parse_duration(".50ms", &t) == 0 && t == 500000);
    assert(clock_parse_duration("500us", &t) == 0 && t == 500000);
    assert(clock_parse_duration("1ms20ns", &t) == 0 && t == 1000020);
    assert(clock_parse_duration("0.5ns", &t) == -1);
    assert(clock_parse_duration("", &t) == -1);
    assert(clock_parse_duration(".s", &t) == -1);
    assert(clock_parse_duration("5", &t) == -1);
    assert(clock_parse_duration("1h30", &t) == -1);
    assert(clock_parse_duration("-5s", &t) == -1);
    assert(clock_parse_duration("1e3s", &t) == -1);
    assert(clock_parse_duration("5mm", &t) == -1);
    assert(clock_parse_duration("1h 30m", &t) == -1);
    assert(clock_parse_duration("106751d", &t) == 0);
    assert(clock_parse_duration("106752d", &t) == -1);          /* > INT64_MAX ns */
    assert(clock_parse_duration("106751d23h", &t) == 0);
    assert(clock_parse_duration("106751d24h", &t) == -1);
    assert(clock_parse_duration("99999999999999999999s", &t) == -1);
    assert(clock_now_ns() > 1704067200LL * CLOCK_NS_PER_S);
    if (verbose)
        printf("clock: now %s\n", clock_format(clock_now_ns(), buf, sizeof buf));
    TEST_OK("clock");
}
