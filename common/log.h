/*
 * log: leveled logging to stderr, OpenBSD log.h in shape.
 *
 * One line per event, flushed. When stderr is the journal ($JOURNAL_STREAM
 * matches fstat(2) of fd 2) each line gets the sd-daemon "<N>" prefix;
 * otherwise "level: message". Every function preserves errno.
 */
#ifndef SP_LOG_H
#define SP_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level {
    LOG_LVL_CRIT = 2,
    LOG_LVL_ERR = 3,
    LOG_LVL_WARNING = 4,
    LOG_LVL_INFO = 6,
    LOG_LVL_DEBUG = 7
};

/* Set the ident (daemon name) and level. Can be called again. */
void log_init(const char *ident, int level);
/* Change the level (LOG_LVL_*). */
void log_set_level(int level);
/* Current level. */
int log_level(void);

/* Warning with ": strerror(errno)" appended. */
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Warning without errno. */
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Error: data was lost or dropped. */
void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Lifecycle events. */
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Per-message detail, off by default. */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Log at crit with strerror(errno) and exit(1). Startup only. */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/* Log at crit and exit(1). Startup only. */
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

/* Copy in to out (outlen > 0 bytes, always terminated) with every byte
 * that could forge or garble a log line written as \xNN: control bytes
 * (tab kept), DEL, and bytes that are not part of valid UTF-8. Every log
 * line goes through it, so text from the network (a topic, a device id, a
 * receiver's answer) cannot start a line of its own. Returns the length
 * written (cut at a whole character or escape when out is too small). */
size_t log_escape(char *out, size_t outlen, const char *in);
/* Selftest. */
void log_test(bool verbose);

#endif
