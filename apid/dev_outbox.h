/*
 * dev_outbox: apid's durable MQTT outbox, a table of the registry's
 * SQLite file (mqtt_outbox, dev_store's schema 7). A command or shadow
 * delta that cannot be handed to libmosquitto (apid is not connected to
 * the broker) is queued here, survives a restart of apid, and is sent in
 * the order it was queued once the connection is back (dev_mqtt's tick).
 *
 * Bounded: at most max_rows messages (the oldest dropped and counted,
 * with a rate-limited warning), none older than max_age (expired when
 * looked at: by dev_outbox_expire and by the flush, counted and noted).
 * Calls are short statements on apid's loop.
 */
#ifndef SP_DEV_OUTBOX_H
#define SP_DEV_OUTBOX_H

#include "apid/dev_store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dev_outbox dev_outbox_t;

/* What the outbox did since it was opened, and what it holds now. */
struct dev_outbox_stats {
    int64_t depth;    /* messages waiting now */
    uint64_t queued;  /* messages queued */
    uint64_t sent;    /* handed to libmosquitto by a flush */
    uint64_t dropped; /* the oldest, dropped for a newer one (max_rows) */
    uint64_t expired; /* dropped for being older than max_age */
    uint64_t
        refused; /* dropped because the client refused the message itself */
};

/* What a flush's send function says of one message. */
enum dev_outbox_send {
    DEV_OUTBOX_SENT = 0,  /* handed over: delete it, go on */
    DEV_OUTBOX_RETRY = 1, /* not now (not connected): keep it, stop */
    DEV_OUTBOX_REFUSED =
        2 /* never (the message itself is refused): delete it, count it */
};
typedef enum dev_outbox_send dev_outbox_send_fn(void *arg, const char *topic,
                                                const void *payload, size_t len,
                                                int qos);

/* The outbox in store's file (borrowed; it must outlive the outbox),
 * holding at most max_rows (>= 1) messages of at most max_age ns (> 0).
 * Logs how many wait from before. NULL (logged) on a database error. */
dev_outbox_t *dev_outbox_new(dev_store_t *store, int64_t max_rows,
                             int64_t max_age);
/* Free; the messages stay in the file. NULL-safe. */
void dev_outbox_destroy(dev_outbox_t **self_p);

/* Queue a message for device id of tenant at wall time now (ns); when
 * the outbox is full the oldest are dropped first. 0, or -1 (logged)
 * when it could not be stored. */
int dev_outbox_push(dev_outbox_t *self, const char *tenant, const char *id,
                    const char *topic, const void *payload, size_t len, int qos,
                    int64_t now);
/* Send up to limit messages, oldest first, through fn (expired ones are
 * dropped instead). Returns the number handed over, or -1 (logged) on a
 * database error. A message fn accepted and whose delete then failed is
 * sent again by a later flush (at least once). */
int64_t dev_outbox_flush(dev_outbox_t *self, int64_t now, int64_t limit,
                         dev_outbox_send_fn *fn, void *arg);
/* Drop the messages older than max_age at now; returns how many. */
int64_t dev_outbox_expire(dev_outbox_t *self, int64_t now);
/* Messages waiting (0 for NULL). */
int64_t dev_outbox_size(const dev_outbox_t *self);
/* Counters and depth (zeros for NULL). */
void dev_outbox_stats(const dev_outbox_t *self, struct dev_outbox_stats *st);

/* Selftest. */
void dev_outbox_test(bool verbose);

#endif
