/*
 * alert_sink_email: the "email" channel, through the local MTA's
 * sendmail(8) interface: "sendmail -i -- ADDRESS..." with a short message
 * (Subject "[sensorpipe] FIRING critical: rule scope", the alert as JSON
 * in the body, Auto-Submitted and an idempotency header) on stdin. Exit
 * status 0 means the MTA took it.
 */
#ifndef SP_ALERT_SINK_EMAIL_H
#define SP_ALERT_SINK_EMAIL_H

#include "alertd/alert_channel.h"

#include <stdbool.h>
#include <stddef.h>

/* The email channel's deliver function (alert_channel_sink_fn). */
int alert_sink_email_deliver(char *const *argv, size_t argc,
                             const struct alert_channel_env *env,
                             const struct alert_note *note, char *err,
                             size_t errlen);

/* Selftest: asserts on failure, prints " * alert_sink_email: OK". */
void alert_sink_email_test(bool verbose);

#endif
