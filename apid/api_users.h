/*
 * api_users: people who log in to the dashboard, with session cookies.
 *
 *   POST /api/login  {"user", "password"}   -> 200 {user, tenant, role,
 *        expires} and Set-Cookie: sp_session=...; Path=/; HttpOnly;
 *        SameSite=Strict; Max-Age=<--session-ttl>; 401 for a wrong name
 *        or password (the same answer for both), 429 when one address
 *        tries one user more than 5 times at once, then once in 10 s
 *   POST /api/logout                        -> the session ends now
 *   GET  /api/me                            -> who the request acts as
 *   GET, POST /api/users, DELETE /api/users/{name}   (admin, own tenant)
 *
 * Passwords are kept as libsodium crypto_pwhash_str (Argon2id, the
 * interactive limits: about 64 MiB and a few tens of ms on apid's loop
 * per login, which is why logins are rate limited). A session is 256
 * random bits shown once in the cookie; SQLite keeps its SHA-256 with the
 * user and the expiry, so a stolen database holds no usable session.
 * Sessions end at logout, at expiry (fixed, from login) and when the
 * user is deleted. Browsers cannot set headers on a WebSocket; the cookie
 * goes with the upgrade request, so the dashboard's streams use it too.
 */
#ifndef SP_API_USERS_H
#define SP_API_USERS_H

#include "apid/apid.h"

#define API_USERS_COOKIE "sp_session"

/* Service state (s_services[]); needs the "devices" service. */
void *api_users_create(apid_t *apid);
void api_users_destroy(void **state_p);

/* Does any user exist (the first one turns authentication on)? */
bool api_users_any(apid_t *apid);
/* The live session the request's cookie names, as {user, tenant, role}
 * (caller owns), or NULL. */
json_t *api_users_session(apid_t *apid, http_req_t *req);
/* Paths served without credentials: /api/login, /api/logout (it ends
 * only the session its cookie names) and the dashboard's static files
 * (the page asks for a login when the API answers 401). */
bool api_users_open_path(const char *path);
/* Routes /api/login, /api/logout, /api/me and /api/users...; 1 when
 * handled. */
int api_users_route(apid_t *apid, http_req_t *req);

/* Selftest. */
void api_users_test(bool verbose);

#endif
