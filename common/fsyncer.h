/*
 * fsyncer: a thread that runs fdatasync(2) on request, so a daemon's loop
 * keeps working while the disk makes its group commit durable (aggd's
 * WAL, ingestd's spool). A zactor, as Zyre's node actor: the loop sends
 * "SYNC fd pos" and reads back "err pos" on the actor's socket
 * (zloop_reader). The thread touches nothing but the descriptor, which
 * the caller keeps open until the answer is in; pos is the caller's
 * logical position that the fsync covers, handed back unchanged.
 */
#ifndef SP_FSYNCER_H
#define SP_FSYNCER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

/* Start the thread (signals blocked in it). */
zactor_t *fsyncer_new(void);
/* Ask for fdatasync(fd); one request in flight at a time. */
void fsyncer_start(zactor_t *self, int fd, uint64_t pos);
/* The same with fsync(2): a directory, after a file was created in it. */
void fsyncer_start_full(zactor_t *self, int fd, uint64_t pos);
/* Read the answer: 0 with *pos set, an errno value when fdatasync failed
 * (*pos set too), or -1 when the thread did not answer (interrupted). */
int fsyncer_done(zactor_t *self, uint64_t *pos);

/* Selftest. */
void fsyncer_test(bool verbose);

#endif
