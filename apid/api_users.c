/*
 * api_users: dashboard users, logins and session cookies (see
 * api_users.h).
 */
#include "apid/api_users.h"
#include "apid/api_auth.h"
#include "apid/api_devices.h"
#include "apid/dev_store.h"
#include "common/bucket.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#define S_HASH_HEX (crypto_hash_sha256_BYTES * 2 + 1)
#define S_TOKEN_BYTES 32     /* 256 random bits per session */
#define S_TOKEN_MAX 64       /* base64url of them, with room */
#define S_NAME_MAX 64        /* bytes in a user name */
#define S_PASSWORD_MIN 8     /* shortest password accepted */
#define S_PASSWORD_MAX 1024  /* longest */
#define S_LOGIN_RATE 0.1     /* login attempts a second per address and user */
#define S_LOGIN_BURST 5.0    /* at once */

enum s_stmt {
    ST_USER_ADD,
    ST_USER_GET,
    ST_USER_LIST,
    ST_USER_DEL,
    ST_USER_COUNT,
    ST_SESS_ADD,
    ST_SESS_FIND,
    ST_SESS_DEL,
    ST_SESS_PURGE,
    ST_MAX
};

static const char *const s_sql[ST_MAX] = {
    [ST_USER_ADD] = "INSERT INTO users (name, tenant, role, hash, created)"
                    " VALUES (?, ?, ?, ?, ?)",
    [ST_USER_GET] = "SELECT tenant, role, hash FROM users WHERE name = ?",
    [ST_USER_LIST] = "SELECT name, role, created FROM users WHERE tenant = ?"
                     " ORDER BY name",
    [ST_USER_DEL] = "DELETE FROM users WHERE name = ? AND tenant = ?",
    [ST_USER_COUNT] = "SELECT count(*) FROM users",
    [ST_SESS_ADD] = "INSERT INTO sessions (hash, user, created, expires)"
                    " VALUES (?, ?, ?, ?)",
    [ST_SESS_FIND] = "SELECT u.name, u.tenant, u.role FROM sessions s"
                     " JOIN users u ON u.name = s.user"
                     " WHERE s.hash = ? AND s.expires > ?",
    [ST_SESS_DEL] = "DELETE FROM sessions WHERE hash = ?",
    [ST_SESS_PURGE] = "DELETE FROM sessions WHERE expires <= ?",
};

struct api_users {
    apid_t *apid;               /* borrowed */
    sqlite3 *db;                /* the devices store's connection */
    sqlite3_stmt *st[ST_MAX];   /* prepared once */
    bool any;                   /* a user exists */
    bucket_t *logins;           /* login attempts per address and user */
    char dummy[crypto_pwhash_STRBYTES]; /* verified for unknown names */
};

static sqlite3_stmt *
s_st(struct api_users *self, int i)
{
    sqlite3_reset(self->st[i]);
    sqlite3_clear_bindings(self->st[i]);
    return self->st[i];
}

/* Hex SHA-256 of a session token. */
static void
s_token_hash(const char *token, char out[S_HASH_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    sodium_bin2hex(out, S_HASH_HEX, h, sizeof h);
}

static bool
s_name_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > 0 && n <= S_NAME_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_.@-") == n;
}

static int64_t
s_count(struct api_users *self)
{
    sqlite3_stmt *st = s_st(self, ST_USER_COUNT);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_reset(st);
    return n;
}

void *
api_users_create(apid_t *apid)
{
    struct api_users *self = xcalloc(1, sizeof *self);

    self->apid = apid;
    self->db = dev_store_db(api_devices_store(apid));
    for (int i = 0; i < ST_MAX; i++)
        if (sqlite3_prepare_v2(self->db, s_sql[i], -1, &self->st[i], NULL) !=
            SQLITE_OK) {
            log_warnx("users: %s", sqlite3_errmsg(self->db));
            void *p = self;
            api_users_destroy(&p);
            return NULL;
        }
    self->any = s_count(self) > 0;
    self->logins = bucket_new(S_LOGIN_RATE, S_LOGIN_BURST);
    /* A hash to verify against when the name is unknown, so a login takes
     * as long whether or not the user exists. */
    if (crypto_pwhash_str(self->dummy, "not a password", 14,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        log_warnx("users: cannot hash (out of memory?)");
        void *p = self;
        api_users_destroy(&p);
        return NULL;
    }
    return self;
}

void
api_users_destroy(void **state_p)
{
    struct api_users *self;

    if (state_p == NULL || (self = *state_p) == NULL)
        return;
    for (int i = 0; i < ST_MAX; i++)
        sqlite3_finalize(self->st[i]);
    bucket_destroy(&self->logins);
    free(self);
    *state_p = NULL;
}

bool
api_users_any(apid_t *apid)
{
    struct api_users *self = apid_service(apid, "users");
    return self && self->any;
}

bool
api_users_open_path(const char *path)
{
    return !strcmp(path, "/api/login") || !strcmp(path, "/api/logout") ||
           !strcmp(path, "/") ||
           !strcmp(path, "/index.html") || !strncmp(path, "/web/", 5);
}

/* The value of cookie name in a Cookie header into out. 0 or -1. */
static int
s_cookie(const char *header, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);

    for (const char *p = header; p && *p;) {
        p += strspn(p, " ;");
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = strcspn(p + nl + 1, ";");
            if (vl == 0 || vl >= len)
                return -1;
            memcpy(out, p + nl + 1, vl);
            out[vl] = '\0';
            return 0;
        }
        p = strchr(p, ';');
    }
    return -1;
}

json_t *
api_users_session(apid_t *apid, http_req_t *req)
{
    struct api_users *self = apid_service(apid, "users");
    const char *h = http_req_header(req, "Cookie");
    char token[S_TOKEN_MAX + 1], hash[S_HASH_HEX];
    sqlite3_stmt *st;
    json_t *out = NULL;

    if (self == NULL || h == NULL ||
        s_cookie(h, API_USERS_COOKIE, token, sizeof token))
        return NULL;
    s_token_hash(token, hash);
    sodium_memzero(token, sizeof token);
    st = s_st(self, ST_SESS_FIND);
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, clock_now_ns());
    if (sqlite3_step(st) == SQLITE_ROW)
        out = json_pack("{s:s, s:s, s:s}", "user",
                        (const char *)sqlite3_column_text(st, 0), "tenant",
                        (const char *)sqlite3_column_text(st, 1), "role",
                        (const char *)sqlite3_column_text(st, 2));
    sqlite3_reset(st);
    return out;
}

/* Run a prepared write; 0, or -1 (logged). */
static int
s_done(struct api_users *self, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    if (rc == SQLITE_DONE)
        return 0;
    if (rc != SQLITE_CONSTRAINT)
        log_warnx("users: %s", sqlite3_errmsg(self->db));
    return -1;
}

/* The request body as an object with string fields; NULL after 400. */
static json_t *
s_body(http_req_t *req, const char *want)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *in = json_loadb(body, len, 0, NULL);

    if (json_is_object(in))
        return in;
    json_decref(in);
    http_req_reply_error(req, 400, "invalid_body", want, "body");
    return NULL;
}

static void
s_cookie_header(struct api_users *self, http_req_t *req, const char *token,
                int64_t max_age)
{
    const char *cert = apid_config(self->apid)->tls_cert;
    char v[S_TOKEN_MAX + 128];

    /* Over HTTPS the cookie never travels in clear ("Secure"). */
    snprintf(v, sizeof v, "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%lld%s",
             API_USERS_COOKIE, token, (long long)max_age,
             cert && *cert ? "; Secure" : "");
    http_req_add_header(req, "Set-Cookie", v);
}

static void
s_login(struct api_users *self, http_req_t *req)
{
    const struct apid_conf *conf = apid_config(self->apid);
    json_t *in;
    const char *user, *pw, *hash = self->dummy;
    char peer[64], wait[16], token[S_TOKEN_MAX + 1], th[S_HASH_HEX];
    char who[64 + S_NAME_MAX + 2];
    char tenant[S_NAME_MAX + 1] = "", role[16] = "", stored[crypto_pwhash_STRBYTES];
    unsigned char raw[S_TOKEN_BYTES];
    int retry, ok;
    int64_t now = clock_now_ns();
    sqlite3_stmt *st;

    if (!apid_method(req, "POST"))
        return;
    if ((in = s_body(req, "want {\"user\": name, \"password\": string}")) == NULL)
        return;
    user = json_string_value(json_object_get(in, "user"));
    pw = json_string_value(json_object_get(in, "password"));
    if (!s_name_ok(user) || pw == NULL) {
        json_decref(in);
        http_req_reply_error(req, 400, "invalid_body",
                             "want {\"user\": name, \"password\": string}", "body");
        return;
    }
    /* Guessing one user's password from one address is slowed down before
     * any hash is computed. */
    snprintf(who, sizeof who, "%s/%s", http_req_peer(req, peer, sizeof peer), user);
    if ((retry = bucket_take(self->logins, who, 1, clock_mono_ns()))) {
        json_decref(in);
        snprintf(wait, sizeof wait, "%d", retry);
        http_req_add_header(req, "Retry-After", wait);
        http_req_reply_error(req, 429, "rate_limited",
                             "too many login attempts for this user from this "
                             "address", "login");
        return;
    }
    st = s_st(self, ST_USER_GET);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(tenant, sizeof tenant, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(role, sizeof role, "%s", (const char *)sqlite3_column_text(st, 1));
        snprintf(stored, sizeof stored, "%s", (const char *)sqlite3_column_text(st, 2));
        hash = stored;
    }
    sqlite3_reset(st);
    ok = crypto_pwhash_str_verify(hash, pw, strlen(pw)) == 0 && hash == stored;
    if (!ok) {
        /* An unknown name is not logged: it is often a password typed
         * into the wrong field. */
        if (hash == stored)
            log_info("users: failed login for \"%s\" from %s", user, peer);
        else
            log_info("users: failed login for an unknown user name from %s", peer);
        json_decref(in);
        http_req_reply_error(req, 401, "unauthorized", "wrong user or password",
                             "login");
        return;
    }
    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(token, sizeof token, raw, sizeof raw,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    s_token_hash(token, th);
    sqlite3_exec(self->db, "BEGIN", NULL, NULL, NULL);
    st = s_st(self, ST_SESS_PURGE);
    sqlite3_bind_int64(st, 1, now);
    s_done(self, st);
    st = s_st(self, ST_SESS_ADD);
    sqlite3_bind_text(st, 1, th, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now + conf->session_ttl);
    if (s_done(self, st)) {
        sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
        sodium_memzero(token, sizeof token);
        json_decref(in);
        http_req_reply_error(req, 500, "internal", "cannot store the session", "login");
        return;
    }
    sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL);
    s_cookie_header(self, req, token, conf->session_ttl / CLOCK_NS_PER_S);
    sodium_memzero(token, sizeof token);
    log_info("users: \"%s\" (%s, %s) logged in from %s", user, tenant, role, peer);
    char exp[40];
    http_req_reply_json(req, 200, json_pack(
        "{s:s, s:s, s:s, s:s}", "user", user, "tenant", tenant, "role", role,
        "expires", clock_format(now + conf->session_ttl, exp, sizeof exp)));
    json_decref(in);
}

static void
s_logout(struct api_users *self, http_req_t *req)
{
    const char *h = http_req_header(req, "Cookie");
    char token[S_TOKEN_MAX + 1], th[S_HASH_HEX];
    sqlite3_stmt *st;

    if (!apid_method(req, "POST"))
        return;
    if (h && s_cookie(h, API_USERS_COOKIE, token, sizeof token) == 0) {
        s_token_hash(token, th);
        sodium_memzero(token, sizeof token);
        st = s_st(self, ST_SESS_DEL);
        sqlite3_bind_text(st, 1, th, -1, SQLITE_STATIC);
        s_done(self, st);
    }
    s_cookie_header(self, req, "", 0);
    http_req_reply_json(req, 200, json_pack("{s:b}", "logged_out", 1));
}

static void
s_user_add(struct api_users *self, http_req_t *req)
{
    json_t *in = s_body(req, "want {\"user\", \"password\", \"role\"}");
    const char *user, *pw, *role, *tenant = api_auth_tenant(req);
    char hash[crypto_pwhash_STRBYTES];
    sqlite3_stmt *st;
    size_t pl;

    if (in == NULL)
        return;
    user = json_string_value(json_object_get(in, "user"));
    pw = json_string_value(json_object_get(in, "password"));
    role = json_string_value(json_object_get(in, "role"));
    pl = pw ? strlen(pw) : 0;
    if (!s_name_ok(user) || pl < S_PASSWORD_MIN || pl > S_PASSWORD_MAX ||
        api_auth_role_of(role) == 0) {
        const char *where = !s_name_ok(user)               ? "user"
                            : api_auth_role_of(role) == 0 ? "role"
                                                          : "password";
        http_req_reply_error(req, 400, "invalid_body",
                             "want {\"user\": [A-Za-z0-9_.@-]{1,64}, \"password\": "
                             "8 to 1024 bytes, \"role\": reader|writer|admin}",
                             where);
        json_decref(in);
        return;
    }
    if (crypto_pwhash_str(hash, pw, pl, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        json_decref(in);
        http_req_reply_error(req, 500, "internal", "cannot hash the password",
                             "password");
        return;
    }
    st = s_st(self, ST_USER_ADD);
    sqlite3_bind_text(st, 1, user, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, tenant, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, role, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, clock_now_ns());
    if (s_done(self, st)) {
        json_decref(in);
        http_req_reply_error(req, 409, "conflict", "this user name is taken", "user");
        return;
    }
    if (!self->any)
        log_info("users: first user created; credentials are now required");
    self->any = true;
    log_info("users: \"%s\" (%s, %s) created", user, tenant, role);
    http_req_reply_json(req, 201, json_pack("{s:s, s:s, s:s}", "user", user,
                                            "tenant", tenant, "role", role));
    json_decref(in);
}

static void
s_users(struct api_users *self, http_req_t *req)
{
    sqlite3_stmt *st = s_st(self, ST_USER_LIST);
    json_t *arr = json_array();
    char t[40];

    sqlite3_bind_text(st, 1, api_auth_tenant(req), -1, SQLITE_TRANSIENT);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(arr, json_pack(
            "{s:s, s:s, s:s}", "user", (const char *)sqlite3_column_text(st, 0),
            "role", (const char *)sqlite3_column_text(st, 1), "created",
            clock_format(sqlite3_column_int64(st, 2), t, sizeof t)));
    sqlite3_reset(st);
    http_req_reply_json(req, 200, json_pack("{s:o}", "users", arr));
}

static void
s_user_del(struct api_users *self, http_req_t *req, const char *name)
{
    sqlite3_stmt *st = s_st(self, ST_USER_DEL);

    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, api_auth_tenant(req), -1, SQLITE_TRANSIENT);
    if (s_done(self, st) || sqlite3_changes(self->db) == 0) {
        http_req_reply_error(req, 404, "not_found", "no such user", "user");
        return;
    }
    self->any = s_count(self) > 0;
    log_info("users: \"%s\" (%s) deleted with its sessions", name,
             api_auth_tenant(req));
    http_req_reply_json(req, 200, json_pack("{s:s, s:b}", "user", name,
                                            "deleted", 1));
}

int
api_users_route(apid_t *apid, http_req_t *req)
{
    struct api_users *self = apid_service(apid, "users");
    const char *path = http_req_path(req), *m = http_req_method(req);
    char *name;

    if (!strcmp(path, "/api/login")) {
        s_login(self, req);
    } else if (!strcmp(path, "/api/logout")) {
        s_logout(self, req);
    } else if (!strcmp(path, "/api/me")) {
        if (apid_method(req, "GET"))
            http_req_reply_json(req, 200, api_auth_whoami(req));
    } else if (!strcmp(path, "/api/users")) {
        if (!strcmp(m, "GET"))
            s_users(self, req);
        else if (apid_method(req, "POST"))
            s_user_add(self, req);
    } else if ((name = apid_path_arg(path, "/api/users/"))) {
        if (apid_method(req, "DELETE"))
            s_user_del(self, req, name);
        free(name);
    } else if (!strncmp(path, "/api/users/", 11)) {
        http_req_reply_error(req, 404, "not_found", "use /api/users/{name}", path);
    } else {
        return 0;
    }
    return 1;
}

void
api_users_test(bool verbose)
{
    char v[S_TOKEN_MAX + 1];

    assert(s_cookie("a=1; sp_session=abc; b=2", "sp_session", v, sizeof v) == 0);
    TEST_STREQ(v, "abc");
    assert(s_cookie("sp_session=xyz", "sp_session", v, sizeof v) == 0);
    TEST_STREQ(v, "xyz");
    assert(s_cookie("xsp_session=1; sp_sessionx=2", "sp_session", v, sizeof v) == -1);
    assert(s_cookie("sp_session=", "sp_session", v, sizeof v) == -1);
    assert(s_cookie("", "sp_session", v, sizeof v) == -1);
    assert(s_name_ok("alice@acme") && !s_name_ok("a b") && !s_name_ok(""));
    assert(api_users_open_path("/api/login") && api_users_open_path("/web/app.js"));
    assert(api_users_open_path("/api/logout") && !api_users_open_path("/api/me"));
    assert(!api_users_open_path("/api/users") && !api_users_open_path("/webx"));
    (void)verbose;
    TEST_OK("api_users");
}
