/*
 * api_jwt: bearer JWTs verified with libjwt (see api_jwt.h).
 */
#include "apid/api_jwt.h"
#include "common/test.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool
api_jwt_is_token(const char *s)
{
    int dots = 0;

    if (strncmp(s, "eyJ", 3) != 0)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return false;
    }
    return dots == 2;
}

/* Copy a claim that must be a short name of [A-Za-z0-9_.-]. */
static int
s_name(const char *v, char *out)
{
    size_t n = v ? strlen(v) : 0;

    if (n == 0 || n > API_JWT_NAME_MAX ||
        strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789_.-@") != n)
        return -1;
    memcpy(out, v, n + 1);
    return 0;
}

/* Is audience among the token's "aud" (a string or an array)? */
static bool
s_audience(jwt_t *jwt, const char *audience)
{
    const char *one = jwt_get_grant(jwt, "aud");
    char *js;
    json_t *j, *e;
    size_t i;
    bool found = false;

    if (one)
        return strcmp(one, audience) == 0;
    if ((js = jwt_get_grants_json(jwt, "aud")) == NULL)
        return false;
    j = json_loads(js, JSON_DECODE_ANY, NULL);
    free(js);
    json_array_foreach(j, i, e)
        if (json_is_string(e) && strcmp(json_string_value(e), audience) == 0)
            found = true;
    json_decref(j);
    return found;
}

int
api_jwt_verify(const char *token, const unsigned char *secret, size_t len,
               const char *audience, int64_t now, struct api_jwt_claims *out,
               const char **why)
{
    jwt_t *jwt = NULL;
    long exp, nbf;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (len == 0) {
        *why = "no JWT secret is configured";
        return -1;
    }
    if (jwt_decode(&jwt, token, secret, (int)len) != 0 || jwt == NULL) {
        *why = "malformed token or bad signature";
        return -1;
    }
    if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
        *why = "only HS256 tokens are accepted";
        goto out;
    }
    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    if (errno != 0) {
        *why = "the token has no expiry (exp)";
        goto out;
    }
    if (exp <= now) {
        *why = "the token has expired";
        goto out;
    }
    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    if (errno == 0 && nbf > now) {
        *why = "the token is not valid yet (nbf)";
        goto out;
    }
    if (audience && *audience && !s_audience(jwt, audience)) {
        *why = "the token is for another audience (aud)";
        goto out;
    }
    if (s_name(jwt_get_grant(jwt, "tenant"), out->tenant)) {
        *why = "the token names no valid tenant";
        goto out;
    }
    if (jwt_get_grant(jwt, "role") == NULL)
        snprintf(out->role, sizeof out->role, "reader");
    else if (s_name(jwt_get_grant(jwt, "role"), out->role)) {
        *why = "the token's role is not a name";
        goto out;
    }
    if (jwt_get_grant(jwt, "sub") && s_name(jwt_get_grant(jwt, "sub"), out->sub)) {
        *why = "the token's subject is not a short name";
        goto out;
    }
    rc = 0;
out:
    jwt_free(jwt);
    return rc;
}

/* A token signed with key (HS256 unless alg says otherwise). Caller frees. */
static char *
s_test_token(const char *key, jwt_alg_t alg, const char *grants)
{
    jwt_t *jwt;
    char *s;

    assert(jwt_new(&jwt) == 0);
    assert(jwt_add_grants_json(jwt, grants) == 0);
    assert(jwt_set_alg(jwt, alg, alg == JWT_ALG_NONE ? NULL
                                 : (const unsigned char *)key,
                       alg == JWT_ALG_NONE ? 0 : (int)strlen(key)) == 0);
    s = jwt_encode_str(jwt);
    jwt_free(jwt);
    return s;
}

void
api_jwt_test(bool verbose)
{
    const unsigned char *key = (const unsigned char *)"0123456789abcdef0123456789abcdef";
    struct api_jwt_claims c;
    const char *why;
    char *t;
    struct {
        jwt_alg_t alg;
        const char *signer; /* key the token is signed with */
        const char *grants;
        const char *aud;    /* required audience */
        int want;
    } cases[] = {
        {JWT_ALG_HS256, (const char *)key,
         "{\"tenant\":\"acme\",\"role\":\"writer\",\"sub\":\"ci\",\"exp\":2000,"
         "\"aud\":\"sensorpipe\"}", "sensorpipe", 0},
        {JWT_ALG_HS256, (const char *)key,
         "{\"tenant\":\"acme\",\"exp\":2000,\"aud\":[\"x\",\"sensorpipe\"]}",
         "sensorpipe", 0},
        {JWT_ALG_HS256, (const char *)key,
         "{\"tenant\":\"acme\",\"exp\":2000,\"aud\":\"other\"}", "sensorpipe", -1},
        {JWT_ALG_HS256, (const char *)key, "{\"tenant\":\"acme\",\"exp\":999}", "", -1},
        {JWT_ALG_HS256, (const char *)key, "{\"tenant\":\"acme\"}", "", -1},
        {JWT_ALG_HS256, (const char *)key,
         "{\"tenant\":\"acme\",\"exp\":2000,\"nbf\":1500}", "", -1},
        {JWT_ALG_HS256, (const char *)key, "{\"tenant\":\"a/b\",\"exp\":2000}", "", -1},
        {JWT_ALG_HS256, "another key, 32 bytes long......",
         "{\"tenant\":\"acme\",\"exp\":2000}", "", -1},
        {JWT_ALG_HS512, (const char *)key, "{\"tenant\":\"acme\",\"exp\":2000}", "", -1},
        {JWT_ALG_NONE, NULL, "{\"tenant\":\"acme\",\"exp\":2000}", "", -1},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = s_test_token(cases[i].signer, cases[i].alg, cases[i].grants);
        assert(t && api_jwt_is_token(t));
        int rc = api_jwt_verify(t, key, 32, cases[i].aud, 1000, &c, &why);
        if (verbose)
            printf("   case %zu: %d %s\n", i, rc, rc ? why : c.tenant);
        assert(rc == cases[i].want);
        if (i == 0) {
            TEST_STREQ(c.tenant, "acme");
            TEST_STREQ(c.role, "writer");
            TEST_STREQ(c.sub, "ci");
        }
        if (i == 1)
            TEST_STREQ(c.role, "reader");
        free(t);
    }
    assert(!api_jwt_is_token("sp_abc"));
    assert(!api_jwt_is_token("eyJ.a"));
    assert(api_jwt_verify("eyJ.x.y", key, 32, "", 1000, &c, &why) == -1);
    TEST_OK("api_jwt");
}
