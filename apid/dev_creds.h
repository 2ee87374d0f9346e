/*
 * dev_creds: per-device MQTT credentials enforced by mosquitto.
 *
 * A device's password is random, shown once at registration and stored
 * only as mosquitto's own PBKDF2-HMAC-SHA512 hash ("$7$iter$salt$hash",
 * the mosquitto_passwd format, computed with libsodium's HMAC). apid
 * writes the broker's password file and ACL file from the registry and
 * sends SIGHUP to the broker, which reloads both.
 *
 * User names and topics: a device of the default tenant is user "{id}"
 * and owns "devices/{id}/#" (the seed topic); a device of tenant t is user
 * "{id}@{t}" and owns "tenants/{t}/devices/{id}/#", so two tenants never
 * share a topic. A device may write only below its own prefix and read
 * only its commands and shadow ("<prefix>/commands/#",
 * "<prefix>/shadow/#"). The optional files passwd.static and acl.static in
 * the same directory (service accounts such as ingestd's, written with
 * mosquitto_passwd) are copied at the head of the generated files.
 */
#ifndef SP_DEV_CREDS_H
#define SP_DEV_CREDS_H

#include "apid/dev_store.h"

#include <stdbool.h>
#include <stddef.h>

#define DEV_CREDS_TENANT_DEFAULT "default"

/* A new random password (32 URL-safe characters). Caller wipes
 * (dev_creds_free) and frees. */
char *dev_creds_password(void);
/* Wipe and free a secret; NULL-safe, sets *s_p NULL. */
void dev_creds_free(char **s_p);
/* The mosquitto_passwd hash of password. Caller frees. */
char *dev_creds_hash(const char *password);
/* True when password matches a "$7$" hash. */
bool dev_creds_verify(const char *password, const char *hash);
/* The MQTT user name of a device into buf; returns buf. */
char *dev_creds_user(const char *tenant, const char *id, char *buf, size_t len);
/* The topic prefix a device owns into buf; returns buf. */
char *dev_creds_prefix(const char *tenant, const char *id, char *buf, size_t len);
/* Is user a user of dir/passwd.static (a service account)? A device
 * must not get that name: mosquitto keeps a user's last line, so the
 * device's password and ACL would replace the account's. */
bool dev_creds_reserved(const char *dir, const char *user);
/* Rewrite dir/passwd and dir/acl from the store (atomic rename each); a
 * device whose user is in dir/passwd.static is left out (logged).
 * 0 or -1 (logged). */
int dev_creds_write(dev_store_t *store, const char *dir);
/* SIGHUP the broker whose pid is in pidfile ("" = none). 0 or -1
 * (logged). */
int dev_creds_reload(const char *pidfile);

/* Selftest. */
void dev_creds_test(bool verbose);

#endif
