/*
 * alert_sink_webhook: the "webhook" channel. POSTs the alert JSON with
 * libcurl to the channel's URL with
 *
 *   Content-Type: application/json
 *   Idempotency-Key: <key>            the same on every retry and restart
 *   X-Sensorpipe-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 *
 * (the signature only when a secret is configured). A 2xx answer is
 * success; anything else, or no answer within the timeout, is retried
 * by the notify actor with exponential backoff. curl_global_init and
 * sodium_init (HMAC from libsodium) are called once in main.c.
 */
#ifndef SP_ALERT_SINK_WEBHOOK_H
#define SP_ALERT_SINK_WEBHOOK_H

#include "alertd/alert_channel.h"

#include <stdbool.h>
#include <stddef.h>

/* The webhook channel's deliver function (alert_channel_sink_fn). */
int alert_sink_webhook_deliver(char *const *argv, size_t argc,
                               const struct alert_channel_env *env,
                               const struct alert_note *note, char *err,
                               size_t errlen);

/* HMAC-SHA256 of len bytes of data under key, as 64 lower-case hex
 * digits and a NUL into hex (>= 65 bytes). Cannot fail. */
void alert_sink_webhook_sign(const char *key, const char *data, size_t len,
                             char *hex);

/* Selftest: asserts on failure, prints " * alert_sink_webhook: OK". */
void alert_sink_webhook_test(bool verbose);

#endif
