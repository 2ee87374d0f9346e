/*
 * dev_store: the device registry, its append-only event log and the API
 * keys, in one SQLite file (<datadir>/devices.db, WAL mode, schema version
 * in PRAGMA user_version).
 *
 * Every change to a device is an event appended to its log; in the same
 * transaction dev_state folds the event into the stored state, which is
 * what reads and list filters use. The log is append-only (triggers refuse
 * UPDATE, and DELETE of anything but a heartbeat: of a run of heartbeats
 * only the first and the last are kept). Everything is scoped by tenant: a device of another
 * tenant is simply not found.
 *
 * Blocking: calls run on apid's loop. Each is one short transaction on a
 * local file with prepared statements (list filters are prepared per call),
 * synchronous=NORMAL in WAL mode, so a call costs microseconds to a
 * millisecond; a fleet of millions would move this into a zactor.
 */
#ifndef SP_DEV_STORE_H
#define SP_DEV_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dev_store dev_store_t;

/* Why an append failed, for callers that map it to a status. */
enum dev_store_err {
    DEV_STORE_OK = 0,
    DEV_STORE_ENOTFOUND, /* no such device in this tenant */
    DEV_STORE_EEXISTS,   /* provisioning an id that exists, not decommissioned */
    DEV_STORE_EINVALID,  /* an event does not apply (reason in *why) */
    DEV_STORE_EDB        /* SQLite failed (logged) */
};

/* List filters; NULL fields do not filter. */
struct dev_filter {
    const char *type;     /* exact type */
    const char *status;   /* exact status; NULL hides decommissioned */
    const char *tag;      /* has this tag */
    const char *group;    /* in this group */
    json_t *metadata;     /* {key: string value} exact matches, borrowed */
    const char *online;   /* "true" or "false" */
};

/* Open or create the store at path (":memory:" for none). Returns NULL
 * (logged) when the file cannot be opened or its schema is newer than
 * this code. */
dev_store_t *dev_store_new(const char *path);
/* Close; NULL-safe. */
void dev_store_destroy(dev_store_t **self_p);

/* Append events (array of {"type": kind, "data": {...}}) to device id of
 * tenant, all at time ts, in one transaction; "provisioned" first creates
 * the device. On DEV_STORE_OK *state_p (when not NULL) gets the new state
 * (caller owns). *why gets a static reason for EINVALID. */
enum dev_store_err dev_store_append(dev_store_t *self, const char *tenant,
                                    const char *id, json_t *events,
                                    int64_t ts, json_t **state_p,
                                    const char **why);
/* Called after every committed append with the device's state before
 * (NULL when the append provisioned it) and after (both borrowed), and
 * the events' time: the hook that streams presence changes. */
typedef void dev_store_observer_fn(void *arg, const char *tenant,
                                   const char *id, const json_t *before,
                                   const json_t *after, int64_t ts);
/* Set (or with NULL clear) the one observer. */
void dev_store_observe(dev_store_t *self, dev_store_observer_fn *fn, void *arg);
/* The sqlite3 handle (borrowed), for modules with their own tables in
 * the same file (dev_jobs). */
void *dev_store_db(dev_store_t *self);
/* The stored state, or NULL when unknown. Caller owns. */
json_t *dev_store_get(dev_store_t *self, const char *tenant, const char *id);
/* The state rebuilt by replaying the whole log, or NULL when unknown.
 * Caller owns. */
json_t *dev_store_replay(dev_store_t *self, const char *tenant, const char *id);
/* Events with seq > after, at most limit, oldest first, as
 * [{seq, type, ts, data}]; NULL when the device is unknown. Caller owns. */
json_t *dev_store_events(dev_store_t *self, const char *tenant,
                         const char *id, int64_t after, int64_t limit);
/* States matching f, ordered by id, after skipping offset; *total gets
 * the number matching. NULL on a database error. Caller owns. */
json_t *dev_store_list(dev_store_t *self, const char *tenant,
                       const struct dev_filter *f, int64_t limit,
                       int64_t offset, int64_t *total);

/* Devices online whose lastSeen is before the time before (ns), at most
 * limit, as [[tenant, id], ...]; NULL on a database error. Caller owns. */
json_t *dev_store_stale(dev_store_t *self, int64_t before, int64_t limit);

/* Set (hash non-NULL) or clear the MQTT credential of a device. 0 or -1. */
int dev_store_set_cred(dev_store_t *self, const char *tenant, const char *id,
                       const char *user, const char *hash);
/* Call fn for every live credential (user, its hash, tenant, device id);
 * 0 or -1. */
int dev_store_creds(dev_store_t *self,
                    void (*fn)(void *arg, const char *user, const char *hash,
                               const char *tenant, const char *id),
                    void *arg);

/* Store an API key by its hash. 0, or -1 (logged, or a duplicate). */
int dev_store_key_add(dev_store_t *self, const char *hash, const char *name,
                      const char *tenant, const char *role);
/* The key with this hash as {name, tenant, role}, or NULL. Caller owns. */
json_t *dev_store_key_find(dev_store_t *self, const char *hash);
/* Number of stored keys. */
int64_t dev_store_key_count(dev_store_t *self);

/* How deep j nests (a scalar is 0), counted up to limit + 1. */
int dev_store_json_depth(const json_t *j, int limit);
/* Selftest. */
void dev_store_test(bool verbose);

#endif
