/*
 * log: leveled logging to stderr (see log.h).
 */
#include "common/log.h"

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

static void
s_vlog(int level, const char *errstr, const char *fmt, va_list ap)
{
    char buf[2048];
    int saved = errno;

    if (level > s_level) {
        errno = saved;
        return;
    }
    vsnprintf(buf, sizeof buf, fmt, ap);
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
