/*
 * dtoa: a fast writer of doubles (see dtoa.h).
 *
 * Doubles print as the shortest "%.Ng" that reads back as the same
 * double (strutil_dtoa_end). For a non-integer a = |v| = m / 2^sh with
 * 1e-4 <= a < 1e15 that is fixed notation with 15, 16 or 17 significant
 * digits (at most one 15-digit number lies within a's rounding interval,
 * so when the 15-digit rounding reads back it is the shortest form, with
 * trailing zeros). All three roundings come from one exact product
 * m 10^dd (dd = 16 - floor(log10 a) <= 20 decimals, below 2^120): its
 * integer part q is the 17-digit floor, and the rounding interval of a,
 * in the same units, comes from the same product; the shortest is
 * chosen by masks, not branches. The 17 digits are written eight at a
 * time in a 64-bit word (two multiplications a step, no division), or
 * sixteen at a time in SSE2 lanes; the trailing zeros are counted from
 * them.
 * Everything else (integers, other magnitudes, NaN, a rounding that
 * carries into an 18th digit) goes to strutil_dtoa_end.
 */
#include "common/dtoa.h"
#include "common/strutil.h"
#include "common/test.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define S_E8 100000000ULL
#define S_E16 10000000000000000ULL
#define S_E17 100000000000000000ULL

#define S_ASCII 0x3030303030303030ULL /* '0' in every byte */

/* 10^i, 0 <= i <= 19. */
static const uint64_t s_pow10[20] = {1ULL,
                                     10ULL,
                                     100ULL,
                                     1000ULL,
                                     10000ULL,
                                     100000ULL,
                                     1000000ULL,
                                     10000000ULL,
                                     100000000ULL,
                                     1000000000ULL,
                                     10000000000ULL,
                                     100000000000ULL,
                                     1000000000000ULL,
                                     10000000000000ULL,
                                     100000000000000ULL,
                                     1000000000000000ULL,
                                     10000000000000000ULL,
                                     100000000000000000ULL,
                                     1000000000000000000ULL,
                                     10000000000000000000ULL};

/* 10^i as a 128-bit integer, 0 <= i <= 38. */
static inline unsigned __int128
s_p10(int i)
{
    if (i <= 19)
        return s_pow10[i];
    return (unsigned __int128)s_pow10[i - 19] * s_pow10[19];
}

/* The eight decimal digits of x < 10^8 as byte values 0..9 of a word,
 * the most significant digit in its lowest byte (first in memory on a
 * little-endian machine). Four-digit halves in 32-bit lanes, split into
 * two-digit 16-bit lanes (x / 100 is x 10486 / 2^20 for x < 10^4), then
 * into digits (x / 10 is x 103 / 2^10 for x < 100); no lane carries into
 * the next. */
static inline uint64_t
s_eight(uint32_t x)
{
    uint64_t v = (x / 10000) | ((uint64_t)(x % 10000) << 32);
    uint64_t h = ((v * 10486) >> 20) & 0x0000007F0000007FULL;

    v = h | ((v - h * 100) << 16);
    h = ((v * 103) >> 10) & 0x000F000F000F000FULL;
    return h | ((v - h * 10) << 8);
}

/* The 16 decimal digits of hi and lo (each < 10^8, hi's first) as text
 * at p (16 bytes, no NUL); returns how many of them are trailing zeros
 * (0 to 16). With SSE2 both numbers go through the steps of s_eight at
 * once, in 128-bit lanes: four-digit halves (x / 10^4 is x 3518437209 /
 * 2^45 for x < 10^8), two-digit 16-bit lanes (x / 100 is x 5243 / 2^19
 * for x < 10^4), digits (x / 10 is x 6554 / 2^16 for x < 100); about
 * half the instructions of two s_eight (18.5 against 23 ns a mean of the
 * 5-minute answer). */
static inline int
s_sixteen(uint32_t hi, uint32_t lo, char *p)
{
#ifdef __SSE2__
    __m128i v = _mm_set_epi64x(lo, hi);
    __m128i h4 =
        _mm_srli_epi64(_mm_mul_epu32(v, _mm_set1_epi32((int)3518437209u)), 45);
    __m128i l4 = _mm_sub_epi32(v, _mm_mul_epu32(h4, _mm_set1_epi32(10000)));
    /* 32-bit lanes < 10^4: hi's halves, lo's halves */
    __m128i t = _mm_or_si128(h4, _mm_slli_epi64(l4, 32));
    __m128i h2 = _mm_srli_epi16(_mm_mulhi_epu16(t, _mm_set1_epi16(5243)), 3);
    __m128i l2 = _mm_sub_epi16(t, _mm_mullo_epi16(h2, _mm_set1_epi16(100)));
    /* 16-bit lanes < 100, in the order of the text */
    __m128i u = _mm_or_si128(h2, _mm_slli_epi32(l2, 16));
    __m128i h1 = _mm_mulhi_epu16(u, _mm_set1_epi16(6554));
    __m128i l1 = _mm_sub_epi16(u, _mm_mullo_epi16(h1, _mm_set1_epi16(10)));
    __m128i dg = _mm_or_si128(h1, _mm_slli_epi16(l1, 8)); /* digits */
    unsigned zero = (unsigned)_mm_movemask_epi8(
        _mm_cmpeq_epi8(dg, _mm_setzero_si128())); /* bit i: digit i is 0 */

    _mm_storeu_si128((__m128i *)(void *)p,
                     _mm_add_epi8(dg, _mm_set1_epi8('0')));
    /* the zero digits from the last one back: leading zeros of the
     * nonzero ones' bits moved to the top (16 when all are zero) */
    return __builtin_clz((~zero << 16) | 0x8000);
#else
    uint64_t wh = s_eight(hi), wl = s_eight(lo), w;

    w = wh + S_ASCII;
    memcpy(p, &w, 8);
    w = wl + S_ASCII;
    memcpy(p + 8, &w, 8);
    return lo ? __builtin_clzll(wl) / 8
              : 8 + (hi ? __builtin_clzll(wh) / 8 : 8);
#endif
}

/* The shortest of the 15-, 16- and 17-digit roundings of a = m / 2^sh
 * that reads back as a, as a 17-digit integer x (trailing zeros where
 * digits were dropped): a 10^dd = num / 2^sh, q = floor of that
 * (10^16 <= q < 10^17), p10 = 10^dd. Each rounding is half to even, as
 * printf rounds the exact value; it reads back when it lies within a's
 * rounding interval: half an ulp of a (p10 in units of 2^-sh of q's
 * last digit) on each side, a quarter below when a is a power of two
 * (the gap below is half as wide there), the ends included when m is
 * even (strtod rounds ties to even). At most one 15-digit number lies
 * in that interval (it is narrower than 10^-15 of a), so when the
 * 15-digit rounding reads back it is the shortest form. */

/* For sh <= 56 (a >= 1/8) everything fits 64 bits (100 2^sh < 2^63,
 * p10 < 2^61). One try: the rounding of q / D (D = 100, 10, 1) with r
 * the part of a below q's last digit in units of 2^-sh (u of them a
 * digit); *ok all ones when it lies within the interval, "2 dist <=
 * lim" for a rounding up (lim_up) or down (lim_dn), else 0. Inlined with
 * a constant D, so no division; selections by mask, not by branch: which
 * rounding is the shortest is random from value to value, and the
 * branches of the conditional form were mispredicted often enough to
 * cost a third of the printer's time (30 -> 23 ns a mean of the
 * 5-minute answer: docs/BENCHMARKS.md, ninth session). */
static inline __attribute__((always_inline)) uint64_t
s_try(uint64_t q, uint64_t r, int sh, uint64_t D, uint64_t lim_up,
      uint64_t lim_dn, uint64_t *ok)
{
    uint64_t k = q / D, pos = ((q - k * D) << sh) | r; /* a above k D */
    uint64_t du = D << sh;
    /* up: past the half, or at it with k odd */
    uint64_t up = 2 * pos + (k & 1) > du;
    uint64_t m = 0 - up; /* all ones when rounding up */
    uint64_t dist = pos ^ ((pos ^ (du - pos)) & m);
    uint64_t lim = lim_dn ^ ((lim_dn ^ lim_up) & m);

    *ok = 0 - (uint64_t)(2 * dist <= lim);
    return (k + up) * D;
}

static inline uint64_t
s_round64(uint64_t m, int sh, uint64_t p10, uint64_t q, uint64_t low)
{
    uint64_t u = 1ULL << sh, r = low & (u - 1), odd = m & 1;
    uint64_t lim_up = p10 - odd;
    uint64_t lim_dn = (m == (1ULL << 52) ? p10 / 2 : p10) - odd;
    uint64_t ok15, ok16;
    uint64_t x15 = s_try(q, r, sh, 100, lim_up, lim_dn, &ok15);
    uint64_t x16 = s_try(q, r, sh, 10, lim_up, lim_dn, &ok16);
    /* The 17-digit rounding always reads back (it is within half a unit
     * of its last digit, half an ulp is at least 10^16 / 2^54 = 0.55 of
     * them), so it needs no check. */
    uint64_t x17 = q + (2 * r + (q & 1) > u);
    uint64_t x = x17 ^ ((x17 ^ x16) & ok16);

    return x ^ ((x ^ x15) & ok15);
}

/* The same in 128 bits, for 1e-4 <= a < 1/8 (3 <= sh <= 66 in all). */
static uint64_t
s_round128(uint64_t m, int sh, unsigned __int128 p10, uint64_t q,
           unsigned __int128 num)
{
    /* The interval in units of 10^-dd 2^-(sh+2): (4m - 2 or 4m - 1)
     * 10^dd to (4m + 2) 10^dd; [ilo, ihi] are the 17-digit integers
     * inside it. */
    unsigned __int128 n4 = num << 2;
    unsigned __int128 lo = n4 - (m == (1ULL << 52) ? p10 : 2 * p10);
    unsigned __int128 hi = n4 + 2 * p10;
    unsigned __int128 mask = ((unsigned __int128)1 << (sh + 2)) - 1;
    bool odd = m & 1;
    uint64_t ilo = (uint64_t)(lo >> (sh + 2)) + ((lo & mask) != 0 || odd);
    uint64_t ihi = (uint64_t)(hi >> (sh + 2)) - ((hi & mask) == 0 && odd);
    unsigned __int128 rem = num & (((unsigned __int128)1 << sh) - 1);
    unsigned __int128 half = (unsigned __int128)1 << (sh - 1);
    bool tail = rem != 0;

    uint64_t k = q / 100, r = q % 100, x;
    k += r > 50 || (r == 50 && (tail || (k & 1)));
    x = k * 100;
    if (x >= ilo && x <= ihi)
        return x;
    k = q / 10;
    r = q % 10;
    k += r > 5 || (r == 5 && (tail || (k & 1)));
    x = k * 10;
    if (x >= ilo && x <= ihi)
        return x;
    x = q + (rem > half || (rem == half && (q & 1)));
    return x >= ilo && x <= ihi ? x : 0;
}

char *
dtoa_end(double v, char *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    double a = fabs(v);
    uint64_t bits;

    if (!(a >= 1e-4 && a < 1e15) || (double)(int64_t)a == a)
        return strutil_dtoa_end(v, p);
    memcpy(&bits, &a, sizeof bits);
    int e2 = (int)(bits >> 52) - 1022; /* 2^(e2-1) <= a < 2^e2 */
    uint64_t m = (bits & ((1ULL << 52) - 1)) | (1ULL << 52);
    int sh = 53 - e2; /* a = m / 2^sh, 3 <= sh <= 66 */
    /* floor(log10 a) is floor((e2 - 1) log10 2) or one more (78913 /
     * 2^18 is log10 2 close enough for -13 <= e2 <= 50; the selftest
     * tries both sides of every power of ten in the range). */
    int l10 = (int)(((int64_t)(e2 - 1) * 78913) >> 18);
    int dd = 16 - l10;
    unsigned __int128 num = (unsigned __int128)m * s_p10(dd);
    uint64_t q = (uint64_t)(num >> sh);
    if (q >= S_E17) { /* a >= 10^(l10 + 1) */
        l10++;
        dd--;
        num = (unsigned __int128)m * s_p10(dd);
        q = (uint64_t)(num >> sh);
    }
    uint64_t x = sh <= 56 ? s_round64(m, sh, s_pow10[dd], q, (uint64_t)num)
                          : s_round128(m, sh, s_p10(dd), q, num);
    if (x == 0)
        return strutil_dtoa_end(v, p); /* cannot happen */
    if (x >= S_E17)
        return strutil_dtoa_end(v, p); /* 9.99...95 up to 10: rare */

    /* The 17 digits of x at d, zeros after them, and how many of them
     * are trailing zeros. */
    uint64_t top = x / S_E8;
    uint32_t lo8 = (uint32_t)(x - top * S_E8);
    uint32_t first = (uint32_t)(top / S_E8);
    uint32_t mid8 = (uint32_t)(top - first * S_E8);
    char d[40];
    d[0] = (char)('0' + first);
    int ndig = 17 - s_sixteen(mid8, lo8, d + 1);
    memcpy(d + 17, "0000000000000000", 16); /* fixed moves, no call */
    memcpy(d + 24, "0000000000000000", 16);

    int ni = l10 + 1;
    if (l10 >= 0 && ndig <= ni)
        return strutil_dtoa_end(v, p); /* an integer: cannot happen */
    if (signbit(v))
        *p++ = '-';
    if (l10 >= 0) { /* l10 + 1 integer digits, '.', the others */
        memcpy(p, d, 16);
        p[ni] = '.';
        memcpy(p + ni + 1, d + ni, 16);
        return p + ndig + 1;
    }
    /* "0.", -l10 - 1 <= 3 zeros, the digits */
    int z = -l10 - 1;
    memcpy(p, "0.000000", 8);
    memcpy(p + 2 + z, d, 24);
    return p + 2 + z + ndig;
#else
    return strutil_dtoa_end(v, p);
#endif
}

/* v through dtoa_end: the same text as strutil_dtoa_end, at most 24
 * bytes, nothing written past DTOA_ROOM, and it reads back as v. Every
 * check_ref-th value is also checked against the shortest "%.Ng" found
 * with snprintf and strtod. */
static void
s_test_one(double v, bool check_ref)
{
    char fast[DTOA_ROOM + 8], want[40];

    memset(fast, 'x', sizeof fast);
    char *end = dtoa_end(v, fast);
    size_t n = (size_t)(end - fast);
    assert(n >= 1 && n <= 24);
    for (size_t i = DTOA_ROOM; i < sizeof fast; i++)
        assert(fast[i] == 'x');
    *end = '\0';
    strutil_dtoa_end(v, want);
    if (strcmp(fast, want) != 0) {
        fprintf(stderr, "dtoa: %.17g: %s, want %s\n", v, fast, want);
        abort();
    }
    if (!isfinite(v))
        return;
    double back = strtod(fast, NULL);
    assert(back == v && signbit(back) == signbit(v));
    if (!check_ref)
        return;
    char ref[40];
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(ref, sizeof ref, "%.0f", v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(ref, sizeof ref, "%.*g", prec, v);
            if (strtod(ref, NULL) == v)
                break;
        }
    }
    TEST_STREQ(fast, ref);
}

void
dtoa_test(bool verbose)
{
    uint64_t x = 7;
    size_t n = 0;

    /* The digit words and the 16 digits against plain division. */
    for (uint32_t i = 0; i < 100000000; i += 9973) {
        uint64_t w = s_eight(i);
        for (int j = 7; j >= 0; j--)
            assert((w >> (8 * (7 - j)) & 0xff) ==
                   i / (uint32_t)s_pow10[j] % 10);
        uint32_t lo = (99999999 - i) / 10 * (i % 3 == 0 ? 10 : 1);
        uint32_t hi = i % 7 == 0 ? i / 1000 * 1000 : i;
        for (int z = 0; z < 3; z++) {
            char got[17], want[24];
            uint32_t h = z == 2 ? hi / 100 * 100 : hi, l = z ? 0 : lo;
            int tz = s_sixteen(h, l, got), wz = 0;
            snprintf(want, sizeof want, "%08u%08u", (unsigned)h, (unsigned)l);
            assert(memcmp(got, want, 16) == 0);
            while (wz < 16 && want[15 - wz] == '0')
                wz++;
            assert(tz == wz);
        }
    }
    char all[17];
    assert(s_sixteen(0, 0, all) == 16 &&
           memcmp(all, "0000000000000000", 16) == 0);
    assert(s_sixteen(99999999, 99999999, all) == 0);
    assert(s_sixteen(10000000, 0, all) == 15);
    assert(s_eight(99999999) == 0x0909090909090909ULL && s_eight(0) == 0);

    /* Edge cases: each side of the fast range, powers of ten and of two
     * and their neighbours, ties, integers, signs, subnormals, huge. */
    static const double edge[] = {0.0,
                                  -0.0,
                                  0.1,
                                  0.2,
                                  0.3,
                                  0.1 + 0.2,
                                  1.0 / 3,
                                  2.0 / 3,
                                  -1.0 / 3,
                                  1e-4,
                                  9.999999999999999e-5,
                                  1.0000000000000001e-4,
                                  1e15,
                                  999999999999999.9,
                                  999999999999999.8,
                                  99999999999999.99,
                                  0.5,
                                  1.5,
                                  2.5,
                                  -2.5,
                                  23.6,
                                  (23.5 + 23.7) / 2,
                                  9.9999999999999995,
                                  9.999999999999998,
                                  0.9999999999999999,
                                  5e-324,
                                  2.2250738585072014e-308,
                                  1e300,
                                  -1e300,
                                  DBL_MAX,
                                  123456789012345.6,
                                  4503599627370495.5,
                                  0.00012345678901234567,
                                  1e-5,
                                  1e16,
                                  50,
                                  -7,
                                  NAN,
                                  INFINITY,
                                  -INFINITY};
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++, n++)
        s_test_one(edge[i], true);
    for (int e = -330; e <= 310; e++) {
        double p = pow(10, e);
        s_test_one(p, true);
        s_test_one(nextafter(p, 0), true);
        s_test_one(nextafter(p, INFINITY), true);
        s_test_one(-p, false);
        n += 4;
    }
    for (int e = -1074; e <= 1023; e++) {
        double p = ldexp(1, e);
        s_test_one(p, e % 7 == 0);
        s_test_one(nextafter(p, 0), false);
        s_test_one(nextafter(p, INFINITY), false);
        s_test_one(p * 1.5, false); /* a tie at 17 digits, once exact */
        n += 4;
    }

    /* Random bit patterns over every exponent, random doubles in the
     * fast range, and means of 30 two-decimal sensor values (what aggd
     * prints by the thousand), with a fixed LCG. */
    for (int i = 0; i < 300000; i++, n += 3) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        double d;
        uint64_t b = x;
        memcpy(&d, &b, sizeof d);
        s_test_one(d, i % 64 == 0);
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        d = ldexp((double)(x >> 11) / 9007199254740992.0, (int)(x % 64) - 14);
        s_test_one(i & 1 ? -d : d, i % 64 == 1);
        double s = 0;
        for (int j = 0; j < 30; j++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            s += (double)((int64_t)(x >> 40) % 10000) / 100;
        }
        s_test_one(s / 30, i % 64 == 2);
    }

    /* Doubles nearest to random 15- and 16-digit decimals, and their
     * neighbours: the 15- and 16-digit roundings at the ends of the
     * interval that reads back (the masks of s_try). */
    for (int i = 0; i < 100000; i++, n += 3) {
        char dec[48];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int nd = 15 + (int)(x >> 63);
        uint64_t digits = (x >> 8) % s_pow10[nd - 1] + s_pow10[nd - 1];
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        snprintf(dec, sizeof dec, "%" PRIu64 "e%d", digits,
                 (int)(x % 20) - nd - 3);
        double d = strtod(dec, NULL);
        s_test_one(d, i % 64 == 3);
        s_test_one(nextafter(d, 0), false);
        s_test_one(nextafter(d, INFINITY), false);
    }
    if (verbose)
        printf("dtoa: %zu values\n", n);
    TEST_OK("dtoa");
}
