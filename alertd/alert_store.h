/*
 * alert_store: alertd's SQLite file (DESIGN.md: alertd owns alerts,
 * silences and the notification outbox). It keeps
 *
 *   alerts         one row per alert instance (rule, scope, since): state
 *                  pending, firing, acknowledged or resolved, with fired,
 *                  acknowledged and resolved times; resolved rows are the
 *                  history
 *   alert_history  every transition of every alert
 *   silences       (rule glob, scope glob, from, until, comment)
 *   outbox         one row per notification to deliver, with its
 *                  idempotency key (unique), attempts, next attempt time,
 *                  status (queued, sent, failed) and last error
 *
 * The daemon's loop writes (one transaction per input batch, so a batch
 * of changes costs one fsync); the notify actor's thread has its own
 * connection to the same file and only touches outbox rows. WAL mode lets
 * both work at once. State changes are rare (never once per reading), so
 * the writes stay in the loop; design caveat: a slow disk stalls the loop
 * for the fsync of each batch that changed an alert.
 */
#ifndef SP_ALERT_STORE_H
#define SP_ALERT_STORE_H

#include "alertd/alert_engine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct alert_store alert_store_t;

/* One open alert, for restoring the engine at start. Borrowed strings. */
struct alert_store_open {
    int64_t id;           /* row id */
    const char *rule;     /* rule name */
    const char *scope;    /* alert scope */
    const char *series;   /* latest series */
    const char *state;    /* "pending", "firing" or "acknowledged" */
    const char *severity; /* current severity */
    int64_t since;        /* became active, ns */
    int64_t fired;        /* became firing, ns (0 when pending) */
    double value;         /* latest value */
};

typedef void(alert_store_open_fn)(const struct alert_store_open *a,
                                  void *arg);

/* Open or create the database (schema included). Returns NULL (logged)
 * on failure. busy: ms to wait for the other connection's lock. */
alert_store_t *alert_store_new(const char *path, int busy_ms);
/* Close; NULL-safe; sets *self_p to NULL. */
void alert_store_destroy(alert_store_t **self_p);
/* The raw connection, for the outbox functions of alert_notify.c that
 * run on their own connection. Borrowed. */
struct sqlite3 *alert_store_db(alert_store_t *self);

/* Group writes: begin and commit a transaction. 0 or -1 (logged). */
int alert_store_begin(alert_store_t *self);
int alert_store_commit(alert_store_t *self);

/* Record a state change of the engine. Returns the alert's row id, or -1
 * (logged). A "pending" or first "firing" of a (rule, scope) without an
 * open row opens one. */
int64_t alert_store_event(alert_store_t *self, const struct alert_event *ev);
/* Add a note to an alert's history ("silenced by 3", "throttled",
 * "escalated to pager"). 0 or -1. */
int alert_store_note(alert_store_t *self, int64_t id, int64_t ts,
                     const char *note);
/* Time the alert was last notified (0: never); set it. */
int64_t alert_store_notified(alert_store_t *self, int64_t id);
int alert_store_set_notified(alert_store_t *self, int64_t id, int64_t ts);
/* Queue a notification; a repeated idempotency key is ignored. Returns 1
 * when queued, 0 when the key was already there, -1 on error. */
int alert_store_enqueue(alert_store_t *self, int64_t id, const char *channel,
                        const char *key, const char *body, int64_t now);

/* Acknowledge an active alert. 0, or -1 when there is no such active
 * alert (nothing changed). */
int alert_store_ack(alert_store_t *self, int64_t id, const char *by,
                    int64_t now);
/* Rule and scope of an active alert (caller frees both), or -1. */
int alert_store_lookup(alert_store_t *self, int64_t id, char **rule,
                       char **scope);

/* Silences. Add returns the new id (or -1); remove returns 0 or -1. */
int64_t alert_store_silence_add(alert_store_t *self, const char *rule,
                                const char *scope, int64_t from,
                                int64_t until, const char *comment);
int alert_store_silence_remove(alert_store_t *self, int64_t id);
/* Id of a silence matching rule and scope at time now, or 0. */
int64_t alert_store_silenced(alert_store_t *self, const char *rule,
                             const char *scope, int64_t now);
/* Silences not yet expired at now, as a JSON array (caller decrefs). */
json_t *alert_store_silences(alert_store_t *self, int64_t now);

/* Alerts as a JSON array (caller decrefs): the active ones, or with all
 * the resolved ones too (newest first, at most limit). */
json_t *alert_store_alerts(alert_store_t *self, bool all, int64_t limit);
/* One alert with its history and its deliveries, or NULL. */
json_t *alert_store_alert(alert_store_t *self, int64_t id);
/* Call fn for every active alert. */
void alert_store_foreach_open(alert_store_t *self, alert_store_open_fn *fn,
                              void *arg);
/* Active, firing, unacknowledged alerts of rule fired at or before
 * fired_before and not yet escalated: call fn for each. */
void alert_store_foreach_unacked(alert_store_t *self, const char *rule,
                                 int64_t fired_before,
                                 alert_store_open_fn *fn, void *arg);
/* Id of a firing (or acknowledged) alert of rule whose scope has the
 * same value as scope for each of the ntags tags (all of them present),
 * or 0. The inhibition check. */
int64_t alert_store_inhibitor(alert_store_t *self, const char *rule,
                              const char *scope, const char *const *tags,
                              size_t ntags);
/* Value of tag in a scope or series key ("n{a=1,b=2}", "{a=1}"): a
 * pointer into scope and its length, or NULL when absent. */
const char *alert_store_scope_tag(const char *scope, const char *tag,
                                  size_t *len);
/* Mark an alert escalated. 0 or -1. */
int alert_store_set_escalated(alert_store_t *self, int64_t id, int64_t ts);

/* Outbox counters by status ("queued", "sent", "failed"). */
int64_t alert_store_outbox_count(alert_store_t *self, const char *status);

/* Selftest: asserts on failure, prints " * alert_store: OK". */
void alert_store_test(bool verbose);

#endif
