/*
 * sig: signals as loop events. SIGTERM, SIGINT and SIGHUP are blocked and
 * read through a signalfd that the daemon registers with its zloop;
 * SIGPIPE is ignored; CZMQ's own SIGINT/SIGTERM handler is disabled.
 */
#ifndef SP_SIG_H
#define SP_SIG_H

#include <stdbool.h>

/* Block the signals and return a signalfd, or -1 (errno set). Call before
 * any thread starts so every thread inherits the mask. */
int sig_init(void);
/* Read one pending signal from fd: its number, or 0 when none. */
int sig_read(int fd);

/* Selftest: asserts on failure, prints " * sig: OK". */
void sig_test(bool verbose);

#endif
