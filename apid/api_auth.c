/*
 * api_auth: API keys, tenants, roles and per-key rate limits (see
 * api_auth.h).
 */
#include "apid/api_auth.h"
#include "apid/api_devices.h"
#include "apid/api_jwks.h"
#include "apid/api_jwt.h"
#include "apid/api_users.h"
#include "apid/dev_creds.h"
#include "apid/dev_state.h"
#include "apid/dev_store.h"
#include "common/apikey.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <sodium.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#define S_HASH_HEX APIKEY_HASH_HEX
#define S_KEY_BYTES 32 /* 256 random bits per key */
#define S_KEY_PREFIX "sp_"

static const char *const s_role_name[] = {NULL, "reader", "writer", "admin"};

/* A token bucket per key. */
struct s_bucket {
    double tokens; /* requests available now */
    int64_t at;    /* monotonic ns of the last refill */
};

/* Who a request acts for; attached to the request (http_req_user). */
struct s_principal {
    char tenant[DEV_NAME_MAX + 1]; /* its tenant */
    int role;                      /* enum api_auth_role */
    char who[DEV_NAME_MAX + 1];    /* key name, user or token subject */
    const char *via;               /* "key", "jwt", "session" or "open" */
};

struct api_auth {
    apid_t *apid;              /* borrowed */
    dev_store_t *store;        /* borrowed from the devices service */
    apikey_t *file_keys;       /* the --keys file */
    zhashx_t *buckets;         /* hash -> struct s_bucket */
    bool on;                   /* any key exists */
    api_jwt_keys_t *jwks;      /* --jwt-keys, or NULL */
    char *jwks_path;           /* that file ("" = none) */
    api_jwks_t *fetcher;       /* --jwt-keys-url into jwks_path, or NULL */
    struct timespec jwks_mtime; /* of the file loaded */
    int64_t jwks_checked;      /* monotonic ns of the last stat */
};

#define S_JWKS_CHECK_NS (5 * CLOCK_NS_PER_S)

/* (Re)load --jwt-keys when the file changed (looked at once per 5 s, so
 * a provider's key rotation is seen without a restart). A bad new file
 * keeps the keys in force. Returns -1 only when nothing could be loaded
 * at start. */
static int
s_jwks_refresh(struct api_auth *self, const char *path, bool start)
{
    struct stat st;
    api_jwt_keys_t *k;
    char err[256];

    if (*path == '\0')
        return 0;
    if (!start && clock_mono_ns() - self->jwks_checked < S_JWKS_CHECK_NS)
        return 0;
    self->jwks_checked = clock_mono_ns();
    if (stat(path, &st) != 0) {
        if (start)
            log_warn("auth: --jwt-keys %s", path);
        return start ? -1 : 0; /* gone for now: keep the keys in force */
    }
    if (!start && st.st_mtim.tv_sec == self->jwks_mtime.tv_sec &&
        st.st_mtim.tv_nsec == self->jwks_mtime.tv_nsec)
        return 0;
    if ((k = api_jwt_keys_load(path, err, sizeof err)) == NULL) {
        if (start)
            log_warnx("auth: --jwt-keys %s: %s", path, err);
        else
            log_warnx("auth: --jwt-keys %s: %s; keeping the %zu keys in force",
                      path, err, api_jwt_keys_count(self->jwks));
        self->jwks_mtime = st.st_mtim; /* complain once per change */
        return start ? -1 : 0;
    }
    api_jwt_keys_destroy(&self->jwks);
    self->jwks = k;
    self->jwks_mtime = st.st_mtim;
    log_info("auth: %zu JWT signing keys from %s", api_jwt_keys_count(k), path);
    return 0;
}

static int
s_role(const char *name)
{
    return apikey_role(name);
}

/* Take one request from a bucket. Returns 0, or the seconds to wait. */
static int
s_bucket_take(struct s_bucket *b, int64_t now, double rate, double burst)
{
    b->tokens += (double)(now - b->at) / CLOCK_NS_PER_S * rate;
    if (b->tokens > burst)
        b->tokens = burst;
    b->at = now;
    if (b->tokens >= 1.0) {
        b->tokens -= 1.0;
        return 0;
    }
    return (int)ceil((1.0 - b->tokens) / rate);
}

static void
s_bucket_free(void **p)
{
    free(*p);
    *p = NULL;
}

void *
api_auth_create(apid_t *apid)
{
    struct api_auth *self = xcalloc(1, sizeof *self);
    const struct apid_conf *conf = apid_config(apid);

    self->apid = apid;
    self->store = api_devices_store(apid);
    self->buckets = zhashx_new();
    zhashx_set_destructor(self->buckets, s_bucket_free);
    if (*conf->jwt_keys_url) {
        char err[512];
        const char *dir = *conf->datadir ? conf->datadir : ".";
        self->jwks_path = *conf->jwt_keys ? xstrdup(conf->jwt_keys)
                                          : xasprintf("%s/jwks.json", dir);
        if ((self->fetcher = api_jwks_new(conf->jwt_keys_url, self->jwks_path,
                                          conf->jwt_keys_refresh, err, sizeof err)) == NULL)
            log_warnx("auth: --jwt-keys-url: %s", err);
    } else {
        self->jwks_path = xstrdup(conf->jwt_keys);
    }
    if ((self->file_keys = apikey_new(conf->keys, NULL)) == NULL ||
        (*conf->jwt_keys_url && self->fetcher == NULL) ||
        s_jwks_refresh(self, self->jwks_path, true) == -1) {
        void *p = self;
        api_auth_destroy(&p);
        return NULL;
    }
    self->on = apikey_file_count(self->file_keys) > 0 ||
               dev_store_key_count(self->store) > 0;
    log_info("auth: %s (%zu keys from file)",
             self->on ? "API keys required" : "off until a key exists",
             apikey_file_count(self->file_keys));
    return self;
}

void
api_auth_destroy(void **state_p)
{
    struct api_auth *self;

    if (state_p == NULL || (self = *state_p) == NULL)
        return;
    apikey_destroy(&self->file_keys);
    api_jwks_destroy(&self->fetcher);
    api_jwt_keys_destroy(&self->jwks);
    free(self->jwks_path);
    zhashx_destroy(&self->buckets);
    free(self);
    *state_p = NULL;
}

/* The credential the request carries (apikey_credential: Bearer, Token,
 * Basic with the key as the password, else the "p" parameter of InfluxDB
 * 1 clients) in buf, or NULL. */
static const char *
s_credential(http_req_t *req, char *buf, size_t len)
{
    return apikey_credential(http_req_header(req, "Authorization"), http_req_arg(req, "p"),
                             buf, len);
}

/* The API key's record {name, tenant, role} (caller owns), or NULL. */
static json_t *
s_find_key(struct api_auth *self, const char *cred, char hash[S_HASH_HEX])
{
    json_t *k;

    apikey_hash(cred, strlen(cred), hash);
    if ((k = apikey_find_hash(self->file_keys, hash)))
        return k;
    return dev_store_key_find(self->store, hash);
}

/* Is any kind of JWT accepted? */
static bool
s_jwt_on(const struct apid_conf *conf)
{
    return *conf->jwt_secret || *conf->jwt_keys || *conf->jwt_keys_url;
}

/* Who asks, as {tenant, role, who, via} (caller owns), from a JWT, an API
 * key or a session cookie; NULL with *why (and for a JWT *reason) when
 * none is valid. *bucket is the rate-limit key of the principal. */
static json_t *
s_principal_of(struct api_auth *self, apid_t *apid, http_req_t *req,
               char *bucket, size_t blen, const char **why, const char **reason)
{
    const struct apid_conf *conf = apid_config(apid);
    char buf[APIKEY_CRED_MAX];
    const char *cred = s_credential(req, buf, sizeof buf);
    char hash[S_HASH_HEX];
    json_t *k;

    *why = "a valid API key, token or session is required "
           "(Authorization: Bearer <key or JWT>, or log in)";
    *reason = NULL;
    if (cred && s_jwt_on(conf) && api_jwt_is_token(cred)) {
        struct api_jwt_claims c;
        struct api_jwt_err e;
        struct api_jwt_conf jc = {
            .secret = (const unsigned char *)conf->jwt_secret,
            .secret_len = strlen(conf->jwt_secret),
            .issuer = conf->jwt_issuer, .audience = conf->jwt_audience,
            .tenant_claim = conf->jwt_tenant_claim, .role_claim = conf->jwt_role_claim,
        };
        s_jwks_refresh(self, self->jwks_path, false);
        jc.keys = self->jwks;
        if (api_jwt_verify(cred, &jc, clock_now_ns() / CLOCK_NS_PER_S, &c, &e)) {
            if (!strcmp(e.reason, "unknown_kid"))
                api_jwks_poke(self->fetcher); /* the provider may have rotated */
            *why = e.message;
            *reason = e.reason;
            return NULL;
        }
        snprintf(bucket, blen, "j:%s/%s", c.tenant, c.sub);
        return json_pack("{s:s, s:s, s:s, s:s}", "tenant", c.tenant, "role",
                         c.role, "who", *c.sub ? c.sub : "jwt", "via", "jwt");
    }
    if (cred) {
        if ((k = s_find_key(self, cred, hash)) == NULL)
            return NULL;
        snprintf(bucket, blen, "k:%s", hash);
        json_object_set(k, "who", json_object_get(k, "name"));
        json_object_set_new(k, "via", json_string("key"));
        return k;
    }
    if ((k = api_users_session(apid, req)) != NULL) {
        snprintf(bucket, blen, "u:%s", json_string_value(json_object_get(k, "user")));
        json_object_set(k, "who", json_object_get(k, "user"));
        json_object_set_new(k, "via", json_string("session"));
        return k;
    }
    return NULL;
}

static int
s_needed_role(http_req_t *req)
{
    const char *m = http_req_method(req), *p = http_req_path(req);

    if (!strncmp(p, "/api/keys", 9) || !strncmp(p, "/api/users", 10))
        return API_AUTH_ADMIN;
    if (!strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS"))
        return API_AUTH_READER;
    return API_AUTH_WRITER;
}

/* Attach a principal to req. */
static void
s_attach(http_req_t *req, const char *tenant, int role, const char *who,
         const char *via)
{
    struct s_principal *p = xcalloc(1, sizeof *p);

    snprintf(p->tenant, sizeof p->tenant, "%s", tenant);
    snprintf(p->who, sizeof p->who, "%s", who);
    p->role = role;
    p->via = via;
    http_req_set_user(req, p, free);
}

int
api_auth_check(apid_t *apid, http_req_t *req)
{
    struct api_auth *self = apid_service(apid, "auth");
    const struct apid_conf *conf = apid_config(apid);
    char bucket[S_HASH_HEX + 80], wait[16];
    const char *why, *reason, *via;
    struct s_bucket *b;
    json_t *k;
    int retry, role;

    if (!self->on && !api_users_any(apid) && !s_jwt_on(conf)) {
        s_attach(req, DEV_CREDS_TENANT_DEFAULT, API_AUTH_ADMIN, "anyone", "open");
        return 0;
    }
    if (api_users_open_path(http_req_path(req)))
        return 0;
    if ((k = s_principal_of(self, apid, req, bucket, sizeof bucket, &why,
                            &reason)) == NULL) {
        json_t *body = rpc_error("unauthorized", why, "Authorization");
        if (reason) /* a JWT's: "expired", "bad_audience", "unknown_kid", ... */
            json_object_set_new(json_object_get(body, "error"), "reason",
                                json_string(reason));
        http_req_add_header(req, "WWW-Authenticate",
                            reason ? "Bearer realm=\"sensorpipe\", error=\"invalid_token\""
                                   : "Bearer realm=\"sensorpipe\"");
        http_req_reply_json(req, 401, body);
        return 1;
    }
    if ((b = zhashx_lookup(self->buckets, bucket)) == NULL) {
        b = xcalloc(1, sizeof *b);
        b->tokens = (double)conf->key_burst;
        b->at = clock_mono_ns();
        zhashx_insert(self->buckets, bucket, b);
    }
    if ((retry = s_bucket_take(b, clock_mono_ns(), conf->key_rate,
                               (double)conf->key_burst))) {
        json_decref(k);
        snprintf(wait, sizeof wait, "%d", retry);
        http_req_add_header(req, "Retry-After", wait);
        http_req_reply_error(req, 429, "rate_limited",
                             "too many requests for this credential", "Authorization");
        return 1;
    }
    role = s_role(json_string_value(json_object_get(k, "role")));
    if (role < s_needed_role(req)) {
        json_decref(k);
        http_req_reply_error(req, 403, "forbidden",
                             "this credential's role may not do that", "Authorization");
        return 1;
    }
    via = json_string_value(json_object_get(k, "via"));
    s_attach(req, json_string_value(json_object_get(k, "tenant")), role,
             json_string_value(json_object_get(k, "who")),
             !strcmp(via, "jwt") ? "jwt" : !strcmp(via, "key") ? "key" : "session");
    json_decref(k);
    return 0;
}

int
api_auth_role_of(const char *name)
{
    return s_role(name);
}

json_t *
api_auth_whoami(const http_req_t *req)
{
    const struct s_principal *p = http_req_user(req);

    if (p == NULL)
        return json_pack("{s:n}", "tenant");
    return json_pack("{s:s, s:s, s:s, s:s}", "tenant", p->tenant, "role",
                     p->role ? s_role_name[p->role] : "none", "who", p->who,
                     "via", p->via);
}

const char *
api_auth_user_tenant(const void *user)
{
    const struct s_principal *p = user;
    return p ? p->tenant : DEV_CREDS_TENANT_DEFAULT;
}

const char *
api_auth_tenant(const http_req_t *req)
{
    return api_auth_user_tenant(http_req_user(req));
}

int
api_auth_role(const http_req_t *req)
{
    const struct s_principal *p = http_req_user(req);
    return p ? p->role : 0;
}

/* POST /api/keys {"name", "role"}: a new key in the caller's tenant. */
static void
s_key_create(struct api_auth *self, http_req_t *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_t *in = json_loadb(body, len, 0, NULL), *out;
    const char *name = json_string_value(json_object_get(in, "name"));
    const char *role = json_string_value(json_object_get(in, "role"));
    unsigned char raw[S_KEY_BYTES];
    char key[sizeof S_KEY_PREFIX + 64], hash[S_HASH_HEX];

    if (!dev_state_name_ok(name) || s_role(role) == 0) {
        json_decref(in);
        http_req_reply_error(req, 400, "bad_request",
                             "want {\"name\": [A-Za-z0-9_.-]+, \"role\": reader|writer|admin}",
                             "body");
        return;
    }
    randombytes_buf(raw, sizeof raw);
    memcpy(key, S_KEY_PREFIX, sizeof S_KEY_PREFIX - 1);
    sodium_bin2base64(key + sizeof S_KEY_PREFIX - 1, sizeof key - (sizeof S_KEY_PREFIX - 1),
                      raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    apikey_hash(key, strlen(key), hash);
    if (dev_store_key_add(self->store, hash, name, api_auth_tenant(req), role)) {
        sodium_memzero(key, sizeof key);
        json_decref(in);
        http_req_reply_error(req, 500, "internal", "cannot store the key", "keys");
        return;
    }
    if (!self->on)
        log_info("auth: first API key created; keys are now required");
    self->on = true;
    log_info("auth: key \"%s\" (%s, %s) created", name, api_auth_tenant(req),
             role);
    out = json_pack("{s:s, s:s, s:s, s:s, s:s}", "name", name, "tenant",
                    api_auth_tenant(req), "role", role, "key", key, "note",
                    "the key is shown once; only its hash is kept");
    sodium_memzero(key, sizeof key);
    json_decref(in);
    http_req_reply_json(req, 201, out);
}

int
api_auth_route(apid_t *apid, http_req_t *req)
{
    struct api_auth *self = apid_service(apid, "auth");

    if (strcmp(http_req_path(req), "/api/keys"))
        return 0;
    if (apid_method(req, "POST"))
        s_key_create(self, req);
    return 1;
}

void
api_auth_test(bool verbose)
{
    struct s_bucket b = {2.0, 0};

    /* Two at once, then one per 1/rate seconds. */
    assert(s_bucket_take(&b, 0, 1.0, 2.0) == 0);
    assert(s_bucket_take(&b, 0, 1.0, 2.0) == 0);
    assert(s_bucket_take(&b, 0, 1.0, 2.0) == 1);
    assert(s_bucket_take(&b, CLOCK_NS_PER_S / 2, 1.0, 2.0) == 1);
    assert(s_bucket_take(&b, CLOCK_NS_PER_S, 1.0, 2.0) == 0);
    assert(s_bucket_take(&b, 100 * CLOCK_NS_PER_S, 0.1, 2.0) == 0);
    assert(s_bucket_take(&b, 100 * CLOCK_NS_PER_S, 0.1, 2.0) == 0);
    assert(s_bucket_take(&b, 100 * CLOCK_NS_PER_S, 0.1, 2.0) == 10);
    assert(s_role("writer") == API_AUTH_WRITER && s_role("x") == 0);
    (void)verbose;
    TEST_OK("api_auth");
}
