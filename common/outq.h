/*
 * outq: batches on their way down the chain, with backpressure.
 *
 * A daemon in the middle of the chain (aggd, anomalyd) must not read more
 * than its downstream takes: when the PUSH socket's queue is full the batch
 * waits here, the PULL reader is switched off (so the queue upstream fills
 * and backpressure travels back to ingestd's spool), and a timer retries
 * until everything went; then reading resumes. Order is kept.
 */
#ifndef SP_OUTQ_H
#define SP_OUTQ_H

#include "common/msg.h"

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct outq outq_t;

/* who: our name in logs; peer: the daemon downstream. push may be NULL
 * (no downstream: batches are dropped). The reader (pull, on_pull, arg) is
 * registered with loop by outq_start and switched off and on by the queue. */
outq_t *outq_new(zloop_t *loop, zsock_t *push, zsock_t *pull,
                 zloop_reader_fn *on_pull, void *arg, const char *who,
                 const char *peer);
void outq_destroy(outq_t **self_p);

/* Register the PULL reader. */
void outq_start(outq_t *self);

/* Queue the batch (taken) and send what can be sent. Returns 0 when the
 * queue is empty again, -1 when the peer is full (reading is paused and a
 * retry timer armed). */
int outq_send(outq_t *self, msg_batch_t **b_p);
/* outq_send, except that a batch which goes out at once (the queue was
 * empty and the peer took it, or there is no peer) stays in *b_p for
 * the caller to decode the next one into; *b_p is NULL when the queue
 * kept it. */
int outq_send_back(outq_t *self, msg_batch_t **b_p);

/* Batches and readings still queued; times the peer was found full. */
size_t outq_batches(const outq_t *self);
size_t outq_readings(const outq_t *self);
uint64_t outq_stalls(const outq_t *self);
bool outq_paused(const outq_t *self);

/* Hold intake (true): the reader stays off whatever the queue, until
 * released (false), when it resumes unless the queue still waits on the
 * peer. aggd holds while its disk is below the floor. */
void outq_hold(outq_t *self, bool hold);

/* At stop: keep trying until empty or until the monotonic deadline.
 * Logs what is left. Returns the batches left. */
size_t outq_drain(outq_t *self, int64_t deadline_ns);

void outq_test(bool verbose);

#endif
