/*
 * log: leveled logging to stderr (see log.h).
 */
#include "common/log.h"
#include "common/strutil.h"
#include "common/test.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *s_ident = "sensorpipe";
static int s_level = LOG_LVL_INFO;
static bool s_journal;

static bool
s_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(2, &st) == -1)
        return false;
    return (unsigned long long)st.st_dev == dev &&
           (unsigned long long)st.st_ino == ino;
}

void
log_init(const char *ident, int level)
{
    s_ident = ident;
    s_level = level;
    s_journal = s_stderr_is_journal();
}

void
log_set_level(int level)
{
    s_level = level;
}

int
log_level(void)
{
    return s_level;
}

static const char *
s_name(int level)
{
    switch (level) {
    case LOG_LVL_CRIT: return "crit";
    case LOG_LVL_ERR: return "err";
    case LOG_LVL_WARNING: return "warning";
    case LOG_LVL_INFO: return "info";
    default: return "debug";
    }
}

/* Bytes of the UTF-8 character that starts at p (at most n bytes there),
 * or 0 when it is not one. */
static size_t
s_utf8_len(const unsigned char *p, size_t n)
{
    size_t len = p[0] < 0x80            ? 1
                 : (p[0] & 0xe0) == 0xc0 ? 2
                 : (p[0] & 0xf0) == 0xe0 ? 3
                 : (p[0] & 0xf8) == 0xf0 ? 4
                                         : 0;

    return len && len <= n && strutil_utf8_valid((const char *)p, len) ? len
                                                                      : 0;
}

size_t
log_escape(char *out, size_t outlen, const char *in)
{
    const unsigned char *p = (const unsigned char *)in;
    size_t n = strlen(in), o = 0;

    while (n > 0) {
        size_t len = s_utf8_len(p, n);
        bool esc = len == 0 || (len == 1 && ((*p < 0x20 && *p != '\t') ||
                                             *p == 0x7f));
        size_t need = esc ? 4 : len;

        if (o + need >= outlen)
            break;
        if (esc) {
            snprintf(out + o, 5, "\\x%02x", *p);
            len = 1;
        } else {
            memcpy(out + o, p, len);
        }
        o += need;
        p += len;
        n -= len;
    }
    out[o] = '\0';
    return o;
}

static void
s_vlog(int level, const char *errstr, const char *fmt, va_list ap)
{
    char raw[2048], buf[sizeof raw * 4];
    int saved = errno;

    if (level > s_level) {
        errno = saved;
        return;
    }
    vsnprintf(raw, sizeof raw, fmt, ap);
    log_escape(buf, sizeof buf, raw);
    if (s_journal)
        fprintf(stderr, "<%d>%s%s%s\n", level, buf, errstr ? ": " : "",
                errstr ? errstr : "");
    else
        fprintf(stderr, "%s: %s: %s%s%s\n", s_ident, s_name(level), buf,
                errstr ? ": " : "", errstr ? errstr : "");
    fflush(stderr);
    errno = saved;
}

#define S_LOGFN(fn, lvl, witherr)                                  \
    void fn(const char *fmt, ...)                                  \
    {                                                              \
        va_list ap;                                                \
        int e = errno;                                             \
        va_start(ap, fmt);                                         \
        s_vlog(lvl, (witherr) ? strerror(e) : NULL, fmt, ap);      \
        va_end(ap);                                                \
        errno = e;                                                 \
    }

S_LOGFN(log_warn, LOG_LVL_WARNING, 1)
S_LOGFN(log_warnx, LOG_LVL_WARNING, 0)
S_LOGFN(log_err, LOG_LVL_ERR, 0)
S_LOGFN(log_info, LOG_LVL_INFO, 0)
S_LOGFN(log_debug, LOG_LVL_DEBUG, 0)

void
fatal(const char *fmt, ...)
{
    va_list ap;
    int e = errno;

    va_start(ap, fmt);
    s_vlog(LOG_LVL_CRIT, strerror(e), fmt, ap);
    va_end(ap);
    exit(1);
}

void
fatalx(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    s_vlog(LOG_LVL_CRIT, NULL, fmt, ap);
    va_end(ap);
    exit(1);
}

/* --------------------------------------------------------------------- */

void
log_test(bool verbose)
{
    char out[64];

    assert(log_escape(out, sizeof out, "plain text\tand a tab") == 20);
    TEST_STREQ(out, "plain text\tand a tab");
    log_escape(out, sizeof out, "a\nb: forged\r\x1b[31m\x7f");
    TEST_STREQ(out, "a\\x0ab: forged\\x0d\\x1b[31m\\x7f");
    /* Valid UTF-8 stays; a lone byte, a cut or an overlong form does not. */
    log_escape(out, sizeof out, "23.5 \xc2\xb0" "C \xff\xe2\x82 \xc0\xaf");
    TEST_STREQ(out, "23.5 \xc2\xb0" "C \\xff\\xe2\\x82 \\xc0\\xaf");
    /* Too small: cut before an escape or a character, never inside. */
    assert(log_escape(out, 6, "ab\ncd") == 2);
    TEST_STREQ(out, "ab");
    assert(log_escape(out, 4, "a\xc2\xb0" "b") == 3);
    TEST_STREQ(out, "a\xc2\xb0");
    assert(log_escape(out, 1, "abc") == 0 && out[0] == '\0');
    if (verbose)
        printf("   escaped: %s\n", out);
    TEST_OK("log");
}
