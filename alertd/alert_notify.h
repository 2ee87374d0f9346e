/*
 * alert_notify: the notification actor. It delivers the outbox rows of
 * alertd's SQLite file (alert_store.h) through their channels, in its
 * own thread (a zactor with its own database connection), so a slow
 * webhook never blocks the daemon's loop. The loop queues rows in the
 * same transaction that records the alert change, then wakes the actor.
 *
 * Delivery is at least once: a row is marked sent only after the
 * receiver took it, so a kill -9 between the two delivers it again after
 * the restart, with the same idempotency key (receivers dedupe on it). A
 * failed attempt is retried after retry-base, doubling up to retry-max,
 * until max-attempts; then the row is "failed" (visible per alert). Rows
 * queued before a restart are picked up at start.
 */
#ifndef SP_ALERT_NOTIFY_H
#define SP_ALERT_NOTIFY_H

#include "alertd/alert_channel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct alert_notify alert_notify_t;

struct alert_notify_conf {
    const char *db;               /* database file */
    struct alert_channel_env env; /* what deliveries need */
    int64_t retry_base;           /* first retry delay, ns */
    int64_t retry_max;            /* longest retry delay, ns */
    int64_t max_attempts;         /* attempts before "failed" */
};

/* Start the actor. Copies conf and the channels. Returns NULL (logged)
 * when the database cannot be opened. */
alert_notify_t *alert_notify_new(const struct alert_notify_conf *conf,
                                 alert_channel_t *const *channels, size_t n);
/* Stop the actor (an attempt in progress finishes first, bounded by the
 * timeout); NULL-safe; sets *self_p to NULL. */
void alert_notify_destroy(alert_notify_t **self_p);
/* Tell the actor new rows are queued. */
void alert_notify_wake(alert_notify_t *self);
/* Replace the channels (after a reload). Copies them. */
void alert_notify_set_channels(alert_notify_t *self,
                               alert_channel_t *const *channels, size_t n);
/* Rows delivered and attempts failed so far (for stats). */
uint64_t alert_notify_sent(alert_notify_t *self);
uint64_t alert_notify_failures(alert_notify_t *self);

/* The idempotency key of a notification: "sp-" and 32 hex digits of
 * SHA-256 over rule, scope, since, state, severity and channel, so the
 * same notification always gets the same key. buf >= 36 bytes. */
char *alert_notify_key(const char *rule, const char *scope, int64_t since,
                       const char *state, const char *severity,
                       const char *channel, char *buf, size_t len);

/* Selftest: asserts on failure, prints " * alert_notify: OK". */
void alert_notify_test(bool verbose);

#endif
