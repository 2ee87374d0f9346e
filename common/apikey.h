/*
 * apikey: API keys as apid issues them and every HTTP door checks them
 * (apid on 3000, ingestd on 8086). A key is 256 random bits; only its
 * hex SHA-256 is kept: in a keys file, one "name tenant role sha256:HEX"
 * per line, and in apid's devices.db (table api_keys, made with POST
 * /api/keys). Keys are long and random, so a fast hash lets a request
 * find its key by index.
 */
#ifndef SP_APIKEY_H
#define SP_APIKEY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define APIKEY_HASH_HEX 65 /* 64 hex digits and a NUL */

typedef struct apikey apikey_t;

/* Room for a credential (a key, or a JWT through apid). */
#define APIKEY_CRED_MAX 8192

/* The credential a request carries, copied into buf (len bytes): the
 * Authorization value after "Bearer " or "Token " (any case; spaces
 * after it skipped); the password of "Basic base64(user:password)", as
 * InfluxDB 1 clients (Telegraf, influxdb-python) and InfluxDB 2's v1
 * API send a key, the user not looked at; without an Authorization
 * header, p (the "p" parameter, InfluxDB 1's u and p). NULL when there
 * is none: another scheme, a Basic value that is not base64 of
 * "user:password" (or holds a NUL), or one longer than buf. */
const char *apikey_credential(const char *authorization, const char *p, char *buf,
                              size_t len);
/* Hex SHA-256 of a key into out. Cannot fail. */
void apikey_hash(const char *key, size_t len, char out[APIKEY_HASH_HEX]);
/* The role named ("reader" 1, "writer" 2, "admin" 3), or 0. */
int apikey_role(const char *name);
/* Parse "name tenant role sha256:HEX" (line is cut up): the record
 * {name, tenant, role} (caller owns) with its hash in hash, or NULL with
 * *why a static reason. */
json_t *apikey_parse_line(char *line, char hash[APIKEY_HASH_HEX],
                          const char **why);

/* A key set: the keys file (may be "" for none) and, read-only, the
 * api_keys table of the SQLite file db ("" for none; it may appear
 * later: apid creates it). Returns NULL (logged with file and line) when
 * the keys file cannot be read or has a bad line. */
apikey_t *apikey_new(const char *file, const char *db);
/* NULL-safe. */
void apikey_destroy(apikey_t **self_p);
/* Keys in the file. */
size_t apikey_file_count(const apikey_t *self);
/* The record {name, tenant, role} of key (caller owns), or NULL. */
json_t *apikey_find(apikey_t *self, const char *key);
/* The same by hash. */
json_t *apikey_find_hash(apikey_t *self, const char *hash);

/* Selftest. */
void apikey_test(bool verbose);

#endif
