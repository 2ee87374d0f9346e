/*
 * urlmask: a URL fit for logs. An engine's URL may carry credentials
 * (https://user:PASS@host/..., InfluxDB 1's ?u=..&p=PASS, ClickHouse's
 * ?password=PASS, a ?token=): the password of the user info and the
 * values of query parameters that name a secret become "***". Parsed
 * with libcurl's URL API.
 */
#ifndef SP_URLMASK_H
#define SP_URLMASK_H

#include <stdbool.h>

/* The masked form of url (caller frees): url itself when it has nothing
 * to mask; "(not a URL)" when libcurl cannot parse it. Cannot fail. */
char *urlmask(const char *url);
/* For printed configuration (caller frees): s verbatim unless it is a URL
 * with something to mask, so a printed value loads back the same. */
char *urlmask_print(const char *s);
/* Only "scheme://host[:port]/..." of url (caller frees): for URLs whose
 * path itself may be the secret (a chat service's incoming webhook). */
char *urlmask_origin(const char *url);
/* Does s look like a URL (scheme "://")? */
bool urlmask_is_url(const char *s);

/* Selftest. */
void urlmask_test(bool verbose);

#endif
