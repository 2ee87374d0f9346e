/*
 * alert_channel: where notifications go. A channel is declared in the
 * rules file,
 *
 *   channel ops: webhook http://127.0.0.1:9000/hook
 *   channel page: exec /usr/local/bin/page --urgent
 *   channel bus: mqtt alerts/{severity}/{rule}
 *   channel mail: email ops@example.com oncall@example.com
 *
 * and named by rules ("notify ops, bus"). Arguments are words separated
 * by blanks; a word in double quotes may hold blanks (\" and \\ escape).
 * Each type is one sink file with one deliver function (alert_sink_*.c),
 * chosen here by name. Delivery blocks, so it runs only in the notify
 * actor's thread (alert_notify.c), never in the daemon's loop.
 */
#ifndef SP_ALERT_CHANNEL_H
#define SP_ALERT_CHANNEL_H

#include "alertd/alert_rule.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Most arguments of a channel. */
#define ALERT_CHANNEL_ARGS_MAX 32

typedef struct alert_channel alert_channel_t;

/* What every delivery may need, from alertd's configuration. */
struct alert_channel_env {
    const char *webhook_secret; /* HMAC-SHA256 key; NULL or "": unsigned */
    int64_t timeout;            /* per delivery attempt, ns */
    const char *mqtt_host;      /* broker for mqtt channels */
    int mqtt_port;              /* its port */
    const char *sendmail;       /* sendmail(8) path for email channels */
};

/* One notification. Every pointer is borrowed. */
struct alert_note {
    const char *body;     /* the alert as JSON */
    const char *idem_key; /* stable idempotency key */
    const char *rule;     /* rule name */
    const char *scope;    /* alert scope */
    const char *state;    /* "firing" or "resolved" */
    const char *severity; /* severity */
    const char *tenant;   /* tenant of the alert's series; NULL = default */
};

/* The deliver function of a channel type (alert_sink_<type>.c): argv
 * holds the channel's argc arguments. Returns 0 when the receiver took
 * the notification, or -1 with a reason in err. */
typedef int(alert_channel_sink_fn)(char *const *argv, size_t argc,
                                   const struct alert_channel_env *env,
                                   const struct alert_note *note, char *err,
                                   size_t errlen);

/* Parse a declaration without the leading "channel" word:
 * "NAME: TYPE ARG...". Returns a new channel, or NULL with *err (pos is
 * an offset into text). */
alert_channel_t *alert_channel_parse(const char *text,
                                     struct alert_rule_error *err);
/* Copy (for the notify thread). Caller destroys. */
alert_channel_t *alert_channel_dup(const alert_channel_t *self);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void alert_channel_destroy(alert_channel_t **self_p);

/* Borrowed name, type ("webhook", ...) and arguments. */
const char *alert_channel_name(const alert_channel_t *self);
const char *alert_channel_type(const alert_channel_t *self);
size_t alert_channel_argc(const alert_channel_t *self);
const char *alert_channel_arg(const alert_channel_t *self, size_t i);

/* Deliver one notification. Returns 0 when the receiver took it, or -1
 * with a reason in err (the caller retries later). Blocks up to
 * env->timeout. */
int alert_channel_deliver(const alert_channel_t *self,
                          const struct alert_channel_env *env,
                          const struct alert_note *note, char *err,
                          size_t errlen);

/* Selftest: asserts on failure, prints " * alert_channel: OK". */
void alert_channel_test(bool verbose);

#endif
