/*
 * outq: batches on their way down the chain, with backpressure (outq.h).
 */
#include "common/outq.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/ratelimit.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define S_RETRY_MS 5

struct outq {
    zloop_t *loop;
    zsock_t *push; /* NULL: nowhere to send */
    zsock_t *pull;
    zloop_reader_fn *on_pull;
    void *arg;
    zlist_t *queue;  /* msg_batch_t *, oldest first */
    size_t readings; /* readings in queue */
    bool reading;    /* PULL reader registered */
    bool held;       /* intake held by the owner (outq_hold) */
    bool retrying;   /* retry timer armed */
    uint64_t stalls;
    struct ratelimit rl;
    char who[32], peer[32];
};

outq_t *
outq_new(zloop_t *loop, zsock_t *push, zsock_t *pull, zloop_reader_fn *on_pull,
         void *arg, const char *who, const char *peer)
{
    outq_t *self = xcalloc(1, sizeof *self);

    self->loop = loop;
    self->push = push;
    self->pull = pull;
    self->on_pull = on_pull;
    self->arg = arg;
    self->queue = zlist_new();
    snprintf(self->who, sizeof self->who, "%s", who);
    snprintf(self->peer, sizeof self->peer, "%s", peer);
    return self;
}

void
outq_destroy(outq_t **self_p)
{
    outq_t *self = *self_p;
    msg_batch_t *b;

    if (self == NULL)
        return;
    while ((b = zlist_pop(self->queue)))
        msg_batch_destroy(&b);
    zlist_destroy(&self->queue);
    free(self);
    *self_p = NULL;
}

void
outq_start(outq_t *self)
{
    if (!self->reading && !self->held && self->pull) {
        zloop_reader(self->loop, self->pull, self->on_pull, self->arg);
        self->reading = true;
    }
}

/* Send in order; 0 when all went, -1 when the peer's queue is full. */
static int
s_flush(outq_t *self)
{
    msg_batch_t *b;

    while ((b = zlist_first(self->queue))) {
        if (self->push &&
            msg_batch_send(b, zsock_resolve(self->push), ZMQ_DONTWAIT) == -1) {
            if (errno != EAGAIN)
                log_warn("%s: send to %s", self->who, self->peer);
            if (ratelimit_complain(&self->rl))
                log_warnx("%s: %s is not taking batches; pausing intake",
                          self->who, self->peer);
            return -1;
        }
        zlist_pop(self->queue);
        self->readings -= msg_batch_size(b);
        msg_batch_destroy(&b);
    }
    if (ratelimit_release(&self->rl))
        log_info("%s: %s caught up; resuming intake", self->who, self->peer);
    return 0;
}

static int
s_on_retry(zloop_t *loop, int timer_id, void *arg)
{
    outq_t *self = arg;

    if (s_flush(self) == 0) {
        zloop_timer_end(loop, timer_id);
        self->retrying = false;
        outq_start(self);
    }
    return 0;
}

int
outq_send(outq_t *self, msg_batch_t **b_p)
{
    self->readings += msg_batch_size(*b_p);
    zlist_append(self->queue, *b_p);
    *b_p = NULL;
    if (s_flush(self) == 0)
        return 0;
    if (!self->retrying)
        self->stalls++; /* once per episode, not per batch queued in it */
    if (self->reading) {
        zloop_reader_end(self->loop, self->pull);
        self->reading = false;
    }
    if (!self->retrying) {
        zloop_timer(self->loop, S_RETRY_MS, 0, s_on_retry, self);
        self->retrying = true;
    }
    return -1;
}

int
outq_send_back(outq_t *self, msg_batch_t **b_p)
{
    if (zlist_size(self->queue) == 0 &&
        (self->push == NULL ||
         msg_batch_send(*b_p, zsock_resolve(self->push), ZMQ_DONTWAIT) == 0))
        return 0;
    return outq_send(self, b_p);
}

size_t
outq_batches(const outq_t *self)
{
    return zlist_size(self->queue);
}

size_t
outq_readings(const outq_t *self)
{
    return self->readings;
}

uint64_t
outq_stalls(const outq_t *self)
{
    return self->stalls;
}

bool
outq_paused(const outq_t *self)
{
    return !self->reading;
}

void
outq_hold(outq_t *self, bool hold)
{
    self->held = hold;
    if (hold && self->reading) {
        zloop_reader_end(self->loop, self->pull);
        self->reading = false;
    } else if (!hold && zlist_size(self->queue) == 0) {
        outq_start(self);
    }
}

size_t
outq_drain(outq_t *self, int64_t deadline_ns)
{
    while (zlist_size(self->queue) && s_flush(self) == -1 &&
           clock_mono_ns() < deadline_ns)
        zclock_sleep(S_RETRY_MS);
    if (zlist_size(self->queue))
        log_err("%s: stopped with %zu batches (%zu readings) not handed to %s",
                self->who, zlist_size(self->queue), self->readings, self->peer);
    return zlist_size(self->queue);
}

/* Selftest: a PUSH whose peer does not read fills up; the queue pauses the
 * reader, keeps order, and resumes once the peer reads again. */
struct s_test {
    uint64_t next; /* seq expected next */
    int got;
};

static int
s_test_pull(zloop_t *loop, zsock_t *sock, void *arg)
{
    return 0;
}

static int
s_test_recv(zloop_t *loop, zsock_t *sock, void *arg)
{
    struct s_test *t = arg;
    msg_batch_t *b = NULL;

    if (msg_batch_recv(zsock_resolve(sock), &b) == MSG_OK) {
        assert(msg_batch_env(b)->seq == t->next);
        t->next++;
        t->got++;
        msg_batch_destroy(&b);
    }
    return 0;
}

static int
s_test_stop(zloop_t *loop, int timer_id, void *arg)
{
    return -1;
}

void
outq_test(bool verbose)
{
    char ep[128];
    zloop_t *loop = zloop_new();
    zsock_t *push, *pull, *in;
    struct s_test t = {1, 0};
    outq_t *q;
    msg_batch_t *b;
    int sent = 0, rc = 0;

    printf(" * outq: ");
    snprintf(ep, sizeof ep, "inproc://outq-test-%d", (int)getpid());
    push = zsock_new(ZMQ_PUSH);
    zsock_set_sndhwm(push, 1);
    assert(zsock_bind(push, "%s", ep) == 0);
    pull = zsock_new(ZMQ_PULL);
    zsock_set_rcvhwm(pull, 1);
    assert(zsock_connect(pull, "%s", ep) == 0);
    in = zsock_new(ZMQ_PULL);
    q = outq_new(loop, push, in, s_test_pull, NULL, "test", "peer");
    outq_start(q);
    assert(!outq_paused(q));
    /* The peer does not read: a few batches fit, then the queue holds. */
    for (int i = 0; i < 1000 && rc == 0; i++) {
        b = msg_batch_new(MSG_TYPE_READINGS);
        msg_batch_env(b)->seq = (uint64_t)i + 1;
        msg_batch_add_reading(b, "t", i, i);
        msg_batch_add_reading(b, "u", i, i);
        /* What goes out at once comes back for reuse (the peer has it
         * encoded); what is queued is the queue's. */
        rc = i % 2 ? outq_send(q, &b) : outq_send_back(q, &b);
        assert(i % 2 ? b == NULL : (b != NULL) == (rc == 0));
        msg_batch_destroy(&b);
        sent++;
    }
    assert(rc == -1 && outq_paused(q) && outq_stalls(q) == 1);
    assert(sent < 1000 && outq_batches(q) == 1 && outq_readings(q) == 2);
    /* One more while paused queues behind it, in order. */
    b = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_env(b)->seq = (uint64_t)++sent;
    assert(outq_send_back(q, &b) == -1 && b == NULL && outq_batches(q) == 2);
    /* The peer reads: the retry timer hands everything over, in order, and
     * the reader is back. */
    zloop_reader(loop, pull, s_test_recv, &t);
    zloop_timer(loop, 300, 1, s_test_stop, NULL);
    zloop_start(loop);
    assert(t.got == sent && outq_batches(q) == 0 && outq_readings(q) == 0);
    assert(!outq_paused(q));
    /* A queue with no downstream drops what it gets. */
    outq_destroy(&q);
    q = outq_new(loop, NULL, NULL, s_test_pull, NULL, "test", "none");
    b = msg_batch_new(MSG_TYPE_READINGS);
    assert(outq_send(q, &b) == 0 && outq_batches(q) == 0 && b == NULL);
    b = msg_batch_new(MSG_TYPE_READINGS);
    assert(outq_send_back(q, &b) == 0 && outq_batches(q) == 0 && b != NULL);
    msg_batch_destroy(&b);
    assert(outq_drain(q, clock_mono_ns()) == 0);
    outq_destroy(&q);
    zsock_destroy(&pull);
    zsock_destroy(&in);
    zsock_destroy(&push);
    zloop_destroy(&loop);
    if (verbose)
        printf("(%d batches) ", sent);
    printf("OK\n");
}
