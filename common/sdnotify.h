/*
 * sdnotify: the sd_notify protocol without libsystemd: one datagram to
 * $NOTIFY_SOCKET. Does nothing when the variable is unset (runit).
 */
#ifndef SP_SDNOTIFY_H
#define SP_SDNOTIFY_H

#include <stdbool.h>

#include <stdint.h>

/* Send a state string such as "READY=1" or "STATUS=replaying". Returns 0
 * (also when not under systemd) or -1. */
int sdnotify_send(const char *state);
/* Watchdog interval from $WATCHDOG_USEC in ns, or 0 when not requested. */
int64_t sdnotify_watchdog_ns(void);

/* Selftest: asserts on failure, prints " * sdnotify: OK". */
void sdnotify_test(bool verbose);

#endif
