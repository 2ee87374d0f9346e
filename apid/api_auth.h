/*
 * api_auth: API keys with a tenant and a role, checked on every request
 * but /health, with a rate limit per key.
 *
 * Keys come from the --keys file (lines "name tenant role sha256:HEX",
 * the key itself never on disk) and from POST /api/keys (admin; the key
 * is shown once, stored as its SHA-256: keys are 256 random bits, so a
 * fast hash is enough and lets a request find its key by index). While no
 * key exists at all, auth is off and every request acts as the admin of
 * tenant "default" (make run on loopback); the first key turns it on.
 *
 * Roles: reader may GET, writer may also change, admin may also manage
 * keys and users. A request is accepted with "Authorization: Bearer
 * <key>" (or "Token <key>", or the "p" query parameter: what InfluxDB
 * clients send), "Authorization: Bearer <JWT>" (HS256 with --jwt-secret,
 * api_jwt.h; tenant and role from its claims), or a session cookie
 * (api_users.h). Auth is on once a key or a user exists or a JWT secret
 * is set. Missing or bad credentials get 401, a role too weak 403, a
 * credential over its rate 429 with Retry-After. Keys, tokens and
 * passwords are never logged; keys are wiped from memory after hashing.
 */
#ifndef SP_API_AUTH_H
#define SP_API_AUTH_H

#include "apid/apid.h"

enum api_auth_role {
    API_AUTH_READER = 1,
    API_AUTH_WRITER = 2,
    API_AUTH_ADMIN = 3
};

/* Service state (s_services[] in apid.c); needs the "devices" service. */
void *api_auth_create(apid_t *apid);
void api_auth_destroy(void **state_p);

/* The hook in apid's dispatch: check the request's key. Returns 1 when it
 * replied (401, 403, 429), 0 to go on, with the principal (tenant and
 * role) attached to the request for as long as it lives, also while it
 * waits on a backend. */
int api_auth_check(apid_t *apid, http_req_t *req);
/* Tenant of a request ("default" while auth is off, or before the
 * check). Valid while the request lives. */
const char *api_auth_tenant(const http_req_t *req);
/* The same from the principal an upgrade callback gets (its user). */
const char *api_auth_user_tenant(const void *user);
/* Role of a request (enum api_auth_role; admin while auth is off, 0 on
 * an open path). */
int api_auth_role(const http_req_t *req);
/* The role named ("reader", "writer", "admin"), or 0. */
int api_auth_role_of(const char *name);
/* Who the request acts as: {tenant, role, who, via} (caller owns). */
json_t *api_auth_whoami(const http_req_t *req);
/* Routes /api/keys (POST creates a key in the caller's tenant). Returns 1
 * when it handled the request. */
int api_auth_route(apid_t *apid, http_req_t *req);

/* Selftest. */
void api_auth_test(bool verbose);

#endif
