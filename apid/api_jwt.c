/*
 * api_jwt: bearer JWTs verified with libjwt (see api_jwt.h). libjwt
 * checks signatures; OpenSSL (libjwt's own backend) turns a JWK's
 * numbers into the PEM that libjwt takes.
 */
#include "apid/api_jwt.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_PART_MAX 16384 /* decoded header or payload bytes */
#define S_KID_MAX 128
#define S_RSA_MIN_BITS 2048

enum s_kty { S_KTY_OCT = 1, S_KTY_RSA, S_KTY_EC };

/* The algorithms accepted, with the key each needs. */
static const struct {
    const char *name;
    jwt_alg_t alg;
    enum s_kty kty;
    const char *crv; /* JWK curve of an EC key */
} s_algs[] = {
    {"HS256", JWT_ALG_HS256, S_KTY_OCT, NULL},
    {"RS256", JWT_ALG_RS256, S_KTY_RSA, NULL},
    {"RS384", JWT_ALG_RS384, S_KTY_RSA, NULL},
    {"RS512", JWT_ALG_RS512, S_KTY_RSA, NULL},
    {"ES256", JWT_ALG_ES256, S_KTY_EC, "P-256"},
    {"ES384", JWT_ALG_ES384, S_KTY_EC, "P-384"},
};
#define S_NALGS (sizeof s_algs / sizeof s_algs[0])

/* The EC curves, by JWK name and OpenSSL group name, with their size. */
static const struct {
    const char *jwk, *group;
    size_t bytes;
} s_curves[] = {
    {"P-256", "prime256v1", 32},
    {"P-384", "secp384r1", 48},
};
#define S_NCURVES (sizeof s_curves / sizeof s_curves[0])

struct s_key {
    char kid[S_KID_MAX + 1]; /* "" when the JWK has none */
    enum s_kty kty;
    const char *crv;         /* s_curves[].jwk of an EC key */
    const char *alg;         /* the JWK's "alg", or NULL = any that fits */
    char *pem;               /* public key as PEM, for libjwt */
};

struct api_jwt_keys {
    struct s_key *k;
    size_t n;
};

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

/* Decode base64url s[0..len) into out (max bytes). Returns the length or -1. */
static long
s_b64(const char *s, size_t len, unsigned char *out, size_t max)
{
    size_t n;

    if (sodium_base642bin(out, max, s, len, NULL, &n, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0)
        return -1;
    return (long)n;
}

/* The JSON object of base64url s[0..len), or NULL. Caller decrefs. */
static json_t *
s_b64_json(const char *s, size_t len)
{
    unsigned char *buf = xmalloc(S_PART_MAX);
    long n = s_b64(s, len, buf, S_PART_MAX);
    json_t *j = n < 0 ? NULL : json_loadb((const char *)buf, (size_t)n, 0, NULL);

    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* --- keys ------------------------------------------------------------------ */

/* PEM (SubjectPublicKeyInfo) of pkey. Caller frees. */
static char *
s_pem(EVP_PKEY *pkey)
{
    BIO *m = BIO_new(BIO_s_mem());
    char *data, *out = NULL;
    long n;

    if (m && PEM_write_bio_PUBKEY(m, pkey) == 1 && (n = BIO_get_mem_data(m, &data)) > 0) {
        out = xmalloc((size_t)n + 1);
        memcpy(out, data, (size_t)n);
        out[n] = '\0';
    }
    BIO_free(m);
    return out;
}

/* Big-endian bytes of a base64url JWK member into a BIGNUM, or NULL. */
static BIGNUM *
s_bn(const json_t *jwk, const char *member)
{
    const char *s = json_string_value(json_object_get(jwk, member));
    unsigned char buf[1024];
    long n;

    if (s == NULL || (n = s_b64(s, strlen(s), buf, sizeof buf)) <= 0)
        return NULL;
    return BN_bin2bn(buf, (int)n, NULL);
}

/* A public key from OpenSSL parameters, or NULL. */
static EVP_PKEY *
s_fromdata(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pkey = NULL;

    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
        pkey = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pkey;
}

/* The public key of an RSA JWK (n, e), or NULL. */
static EVP_PKEY *
s_jwk_rsa(const json_t *jwk)
{
    BIGNUM *n = s_bn(jwk, "n"), *e = s_bn(jwk, "e");
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pkey = NULL;

    if (n && e && bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
        pkey = s_fromdata("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(n);
    BN_free(e);
    return pkey;
}

/* The public key of an EC JWK (crv, x, y), or NULL; *crv its curve. */
static EVP_PKEY *
s_jwk_ec(const json_t *jwk, const char **crv)
{
    const char *c = json_string_value(json_object_get(jwk, "crv"));
    const char *x = json_string_value(json_object_get(jwk, "x"));
    const char *y = json_string_value(json_object_get(jwk, "y"));
    unsigned char pt[1 + 2 * 66];
    OSSL_PARAM_BLD *bld;
    EVP_PKEY *pkey = NULL;
    size_t i;

    for (i = 0; c && i < S_NCURVES; i++)
        if (!strcmp(c, s_curves[i].jwk))
            break;
    if (c == NULL || i == S_NCURVES || x == NULL || y == NULL)
        return NULL;
    /* The uncompressed point 04 || X || Y, each coordinate full width. */
    pt[0] = 4;
    if (s_b64(x, strlen(x), pt + 1, s_curves[i].bytes) != (long)s_curves[i].bytes ||
        s_b64(y, strlen(y), pt + 1 + s_curves[i].bytes, s_curves[i].bytes) !=
            (long)s_curves[i].bytes)
        return NULL;
    if ((bld = OSSL_PARAM_BLD_new()) &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                        s_curves[i].group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt,
                                         1 + 2 * s_curves[i].bytes))
        pkey = s_fromdata("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    *crv = s_curves[i].jwk;
    return pkey;
}

/* Type and curve of a key OpenSSL holds; 0 when unusable. */
static enum s_kty
s_kty_of(EVP_PKEY *pkey, const char **crv)
{
    char group[64];

    *crv = NULL;
    if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA)
        return EVP_PKEY_get_bits(pkey) >= S_RSA_MIN_BITS ? S_KTY_RSA : 0;
    if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_EC ||
        EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                       sizeof group, NULL) != 1)
        return 0;
    for (size_t i = 0; i < S_NCURVES; i++)
        if (!strcmp(group, s_curves[i].group)) {
            *crv = s_curves[i].jwk;
            return S_KTY_EC;
        }
    return 0;
}

/* Add pkey (consumed) as a key named kid with the JWK's alg (or NULL). */
static void
s_add(api_jwt_keys_t *self, EVP_PKEY *pkey, const char *kid, const char *alg)
{
    struct s_key k = {0};

    if (pkey == NULL || (k.kty = s_kty_of(pkey, &k.crv)) == 0 ||
        (k.pem = s_pem(pkey)) == NULL) {
        EVP_PKEY_free(pkey);
        return;
    }
    EVP_PKEY_free(pkey);
    snprintf(k.kid, sizeof k.kid, "%s", kid ? kid : "");
    for (size_t i = 0; alg && i < S_NALGS; i++)
        if (!strcmp(alg, s_algs[i].name))
            k.alg = s_algs[i].name;
    self->k = xrealloc(self->k, (self->n + 1) * sizeof *self->k);
    self->k[self->n++] = k;
}

api_jwt_keys_t *
api_jwt_keys_parse(const char *text, size_t len, char *err, size_t errlen)
{
    api_jwt_keys_t *self = xcalloc(1, sizeof *self);
    json_error_t je;
    json_t *doc, *keys, *jwk;
    size_t i;

    if (len > 10 && !strncmp(text, "-----BEGIN", 10)) {
        BIO *m = BIO_new_mem_buf(text, (int)len);
        s_add(self, m ? PEM_read_bio_PUBKEY(m, NULL, NULL, NULL) : NULL, NULL, NULL);
        BIO_free(m);
        if (self->n == 0)
            snprintf(err, errlen, "not a PEM public key (RSA of at least %d "
                     "bits, or EC P-256/P-384)", S_RSA_MIN_BITS);
    } else if ((doc = json_loadb(text, len, 0, &je)) == NULL) {
        snprintf(err, errlen, "not JSON: %s at line %d", je.text, je.line);
    } else {
        keys = json_object_get(doc, "keys");
        json_array_foreach(keys, i, jwk) {
            const char *kty = json_string_value(json_object_get(jwk, "kty"));
            const char *use = json_string_value(json_object_get(jwk, "use"));
            const char *kid = json_string_value(json_object_get(jwk, "kid"));
            const char *alg = json_string_value(json_object_get(jwk, "alg"));
            const char *crv = NULL;
            if (kty == NULL || (use && strcmp(use, "sig")) ||
                (kid && strlen(kid) > S_KID_MAX))
                continue;
            if (!strcmp(kty, "RSA"))
                s_add(self, s_jwk_rsa(jwk), kid, alg);
            else if (!strcmp(kty, "EC"))
                s_add(self, s_jwk_ec(jwk, &crv), kid, alg);
        }
        if (self->n == 0)
            snprintf(err, errlen, "%s", json_is_array(keys)
                                            ? "no usable signing key in \"keys\" "
                                              "(RSA >= 2048 bits, EC P-256/P-384)"
                                            : "not a JWKS: no \"keys\" array");
        json_decref(doc);
    }
    if (self->n == 0)
        api_jwt_keys_destroy(&self);
    return self;
}

api_jwt_keys_t *
api_jwt_keys_load(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n;
    api_jwt_keys_t *k;

    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    buf = xmalloc(1 << 20);
    n = fread(buf, 1, (1 << 20) - 1, f);
    fclose(f);
    buf[n] = '\0';
    k = api_jwt_keys_parse(buf, n, err, errlen);
    free(buf);
    return k;
}

size_t
api_jwt_keys_count(const api_jwt_keys_t *self)
{
    return self ? self->n : 0;
}

void
api_jwt_keys_destroy(api_jwt_keys_t **self_p)
{
    api_jwt_keys_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    for (size_t i = 0; i < self->n; i++)
        free(self->k[i].pem);
    free(self->k);
    free(self);
    *self_p = NULL;
}

/* --- verification ---------------------------------------------------------- */

#define S_FAIL(r, m)            \
    do {                        \
        err->reason = (r);      \
        err->message = (m);     \
        goto out;               \
    } while (0)

/* The key that verifies a token of algorithm a with kid (NULL = none). */
static const struct s_key *
s_pick(const api_jwt_keys_t *keys, size_t a, const char *kid, struct api_jwt_err *err)
{
    const struct s_key *found = NULL;
    size_t fits = 0;

    for (size_t i = 0; keys && i < keys->n; i++) {
        const struct s_key *k = &keys->k[i];
        if (kid && strcmp(k->kid, kid))
            continue;
        if (k->kty != s_algs[a].kty || (k->crv && strcmp(k->crv, s_algs[a].crv)) ||
            (k->alg && strcmp(k->alg, s_algs[a].name))) {
            if (kid) {
                err->reason = "wrong_key_type";
                err->message = "the key the token names (kid) is not for its algorithm";
                return NULL;
            }
            continue;
        }
        found = k;
        fits++;
    }
    if (fits == 1)
        return found;
    err->reason = kid ? "unknown_kid" : "no_kid";
    err->message = kid ? "no configured key has the token's key id (kid)"
                   : fits ? "the token names no key (kid) and several keys fit"
                          : "no configured key fits the token's algorithm";
    return NULL;
}

/* The value at a dotted path of claims ("realm_access.roles"), or NULL. */
static json_t *
s_claim(json_t *claims, const char *path)
{
    char part[128];
    const char *dot;

    while ((dot = strchr(path, '.')) && claims) {
        snprintf(part, sizeof part, "%.*s", (int)(dot - path), path);
        claims = json_object_get(claims, part);
        path = dot + 1;
    }
    return json_object_get(claims, path);
}

/* Copy a claim that must be a short name of [A-Za-z0-9_.@-]. */
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

/* The role claim: a name, or an array of names of which the highest of
 * reader < writer < admin counts (others are ignored); reader when
 * absent or when the array names none of them. */
static int
s_role(json_t *v, char *out)
{
    static const char *const order[] = {"reader", "writer", "admin"};
    int best = 0;
    json_t *e;
    size_t i;

    if (v == NULL || json_is_null(v)) {
        strcpy(out, "reader");
        return 0;
    }
    if (json_is_string(v))
        return s_name(json_string_value(v), out);
    if (!json_is_array(v))
        return -1;
    json_array_foreach(v, i, e)
        for (int r = 0; r < 3; r++)
            if (json_is_string(e) && !strcmp(json_string_value(e), order[r]) && r > best)
                best = r;
    strcpy(out, order[best]);
    return 0;
}

/* Is audience "aud" (a string) or among it (an array)? */
static bool
s_audience(json_t *aud, const char *audience)
{
    json_t *e;
    size_t i;

    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    json_array_foreach(aud, i, e)
        if (json_is_string(e) && strcmp(json_string_value(e), audience) == 0)
            return true;
    return false;
}

int
api_jwt_verify(const char *token, const struct api_jwt_conf *conf, int64_t now,
               struct api_jwt_claims *out, struct api_jwt_err *err)
{
    const char *d1 = strchr(token, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
    json_t *head = NULL, *claims = NULL, *v;
    const char *alg, *kid;
    const unsigned char *key;
    jwt_t *jwt = NULL;
    size_t a, klen;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (d2 == NULL || (head = s_b64_json(token, (size_t)(d1 - token))) == NULL ||
        (claims = s_b64_json(d1 + 1, (size_t)(d2 - d1 - 1))) == NULL)
        S_FAIL("malformed", "not a JWT: header or claims are not base64url JSON objects");
    alg = json_string_value(json_object_get(head, "alg"));
    for (a = 0; alg && a < S_NALGS; a++)
        if (!strcmp(alg, s_algs[a].name))
            break;
    if (alg == NULL || a == S_NALGS)
        S_FAIL("unsupported_alg", "the token's algorithm is not accepted "
                                  "(HS256, RS256/384/512, ES256/384)");
    v = json_object_get(head, "kid");
    if (v && !json_is_string(v))
        S_FAIL("malformed", "the token's key id (kid) is not a string");
    kid = json_string_value(v);
    if (s_algs[a].kty == S_KTY_OCT) {
        if (conf->secret_len == 0)
            S_FAIL("unsupported_alg", "HS256 tokens are not accepted here (no --jwt-secret)");
        key = conf->secret;
        klen = conf->secret_len;
    } else {
        const struct s_key *k;
        if (api_jwt_keys_count(conf->keys) == 0)
            S_FAIL("unsupported_alg", "tokens signed with public keys are not "
                                      "accepted here (no --jwt-keys)");
        if ((k = s_pick(conf->keys, a, kid, err)) == NULL)
            goto out;
        key = (const unsigned char *)k->pem;
        klen = strlen(k->pem);
    }
    if (jwt_decode(&jwt, token, key, (int)klen) != 0 || jwt == NULL ||
        jwt_get_alg(jwt) != s_algs[a].alg)
        S_FAIL("bad_signature", "the token's signature does not verify");
    v = json_object_get(claims, "exp");
    if (!json_is_integer(v) && !json_is_real(v))
        S_FAIL("no_expiry", "the token has no expiry (exp)");
    if (json_number_value(v) <= (double)now)
        S_FAIL("expired", "the token has expired");
    v = json_object_get(claims, "nbf");
    if (v && (!json_is_number(v) || json_number_value(v) > (double)now))
        S_FAIL("not_yet_valid", "the token is not valid yet (nbf)");
    if (conf->issuer && *conf->issuer &&
        (!json_is_string(v = json_object_get(claims, "iss")) ||
         strcmp(json_string_value(v), conf->issuer)))
        S_FAIL("bad_issuer", "the token is from another issuer (iss)");
    if (conf->audience && *conf->audience &&
        !s_audience(json_object_get(claims, "aud"), conf->audience))
        S_FAIL("bad_audience", "the token is for another audience (aud)");
    if (s_name(json_string_value(s_claim(claims, conf->tenant_claim
                                                     ? conf->tenant_claim
                                                     : "tenant")),
               out->tenant))
        S_FAIL("bad_tenant", "the token names no valid tenant");
    if (s_role(s_claim(claims, conf->role_claim ? conf->role_claim : "role"), out->role))
        S_FAIL("bad_role", "the token's role is not a name");
    if ((v = json_object_get(claims, "sub")) && s_name(json_string_value(v), out->sub))
        S_FAIL("bad_subject", "the token's subject is not a short name");
    rc = 0;
out:
    if (rc != 0)
        memset(out, 0, sizeof *out);
    jwt_free(jwt);
    json_decref(head);
    json_decref(claims);
    return rc;
}

/* --- selftest -------------------------------------------------------------- */

/* A token signed with key (len bytes) by alg, with kid when not NULL.
 * Caller frees. */
static char *
s_test_token(const void *key, size_t len, jwt_alg_t alg, const char *kid,
             const char *grants)
{
    jwt_t *jwt;
    char *s;

    assert(jwt_new(&jwt) == 0);
    assert(jwt_add_grants_json(jwt, grants) == 0);
    if (kid)
        assert(jwt_add_header(jwt, "kid", kid) == 0);
    assert(jwt_set_alg(jwt, alg, alg == JWT_ALG_NONE ? NULL : key,
                       alg == JWT_ALG_NONE ? 0 : (int)len) == 0);
    s = jwt_encode_str(jwt);
    jwt_free(jwt);
    return s;
}

/* A new private key as PEM ("RSA" or "EC"), and its public half as a JWK
 * member list in *jwk. Caller frees both. */
static char *
s_test_keypair(const char *type, char **jwk)
{
    EVP_PKEY *p = !strcmp(type, "RSA") ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                                       : EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    BIO *m = BIO_new(BIO_s_mem());
    char *data, *pem, a[1024], b[1024];
    unsigned char raw[600];
    BIGNUM *n = NULL, *e = NULL;
    long len;

    assert(p && m && PEM_write_bio_PrivateKey(m, p, NULL, NULL, 0, NULL, NULL) == 1);
    len = BIO_get_mem_data(m, &data);
    pem = xmalloc((size_t)len + 1);
    memcpy(pem, data, (size_t)len);
    pem[len] = '\0';
    if (!strcmp(type, "RSA")) {
        assert(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
        assert(EVP_PKEY_get_bn_param(p, OSSL_PKEY_PARAM_RSA_E, &e) == 1);
        sodium_bin2base64(a, sizeof a, raw, (size_t)BN_bn2bin(n, raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_bin2base64(b, sizeof b, raw, (size_t)BN_bn2bin(e, raw),
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        *jwk = xasprintf("\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"", a, b);
    } else {
        size_t pl;
        assert(EVP_PKEY_get_octet_string_param(p, OSSL_PKEY_PARAM_PUB_KEY, raw,
                                               sizeof raw, &pl) == 1 && pl == 65);
        sodium_bin2base64(a, sizeof a, raw + 1, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        sodium_bin2base64(b, sizeof b, raw + 33, 32, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        *jwk = xasprintf("\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"%s\",\"y\":\"%s\"",
                         a, b);
    }
    BN_free(n);
    BN_free(e);
    BIO_free(m);
    EVP_PKEY_free(p);
    return pem;
}

void
api_jwt_test(bool verbose)
{
    const char *hs = "0123456789abcdef0123456789abcdef";
    char *rsa_jwk, *ec_jwk, *other_jwk, *jwks, err[256];
    char *rsa = s_test_keypair("RSA", &rsa_jwk);
    char *ec = s_test_keypair("EC", &ec_jwk);
    char *other = s_test_keypair("RSA", &other_jwk);
    api_jwt_keys_t *keys;
    struct api_jwt_claims c;
    struct api_jwt_err e;
    char *t;

    jwks = xasprintf("{\"keys\":[{%s,\"kid\":\"r1\",\"use\":\"sig\"},"
                           "{%s,\"kid\":\"e1\"},{%s,\"kid\":\"enc\",\"use\":\"enc\"},"
                           "{\"kty\":\"oct\",\"k\":\"AAAA\"}]}",
                     rsa_jwk, ec_jwk, other_jwk);
    keys = api_jwt_keys_parse(jwks, strlen(jwks), err, sizeof err);
    assert(keys && api_jwt_keys_count(keys) == 2); /* enc and oct skipped */
    struct api_jwt_conf conf = {
        .secret = (const unsigned char *)hs, .secret_len = 32, .keys = keys,
        .issuer = "https://idp.example", .audience = "sensorpipe",
        .tenant_claim = "org.tenant", .role_claim = "roles",
    };
    const char *ok = "{\"org\":{\"tenant\":\"acme\"},\"roles\":[\"x\",\"writer\"],"
                     "\"sub\":\"ci\",\"exp\":2000,\"iss\":\"https://idp.example\","
                     "\"aud\":[\"x\",\"sensorpipe\"]}";
    struct {
        const char *signer; /* PEM or HS secret */
        jwt_alg_t alg;
        const char *kid, *grants, *want; /* want: NULL = valid, else the reason */
    } cases[] = {
        {rsa, JWT_ALG_RS256, "r1", ok, NULL},
        {ec, JWT_ALG_ES256, "e1", ok, NULL},
        {hs, JWT_ALG_HS256, NULL, ok, NULL},
        {rsa, JWT_ALG_RS256, "e1", ok, "wrong_key_type"},
        {rsa, JWT_ALG_RS256, "nope", ok, "unknown_kid"},
        {rsa, JWT_ALG_RS256, NULL, ok, NULL}, /* the only RSA key */
        {other, JWT_ALG_RS256, "r1", ok, "bad_signature"},
        {other, JWT_ALG_RS256, "enc", ok, "unknown_kid"},
        {ec, JWT_ALG_ES256, "r1", ok, "wrong_key_type"},
        {hs, JWT_ALG_HS512, NULL, ok, "unsupported_alg"},
        {NULL, JWT_ALG_NONE, NULL, ok, "unsupported_alg"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"org\":{\"tenant\":\"acme\"},\"exp\":999,\"iss\":\"https://idp.example\","
         "\"aud\":\"sensorpipe\"}", "expired"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"org\":{\"tenant\":\"acme\"},\"exp\":2000,\"iss\":\"https://idp.example\","
         "\"aud\":\"other\"}", "bad_audience"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"org\":{\"tenant\":\"acme\"},\"exp\":2000,\"iss\":\"https://evil\","
         "\"aud\":\"sensorpipe\"}", "bad_issuer"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"org\":{\"tenant\":\"acme\"},\"iss\":\"https://idp.example\","
         "\"aud\":\"sensorpipe\"}", "no_expiry"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"org\":{\"tenant\":\"acme\"},\"exp\":2000,\"nbf\":1500,"
         "\"iss\":\"https://idp.example\",\"aud\":\"sensorpipe\"}", "not_yet_valid"},
        {rsa, JWT_ALG_RS256, "r1",
         "{\"tenant\":\"acme\",\"exp\":2000,\"iss\":\"https://idp.example\","
         "\"aud\":\"sensorpipe\"}", "bad_tenant"},
    };

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        t = s_test_token(cases[i].signer, cases[i].signer ? strlen(cases[i].signer) : 0,
                         cases[i].alg, cases[i].kid, cases[i].grants);
        assert(t && api_jwt_is_token(t));
        int rc = api_jwt_verify(t, &conf, 1000, &c, &e);
        if (verbose)
            printf("   case %zu: %d %s\n", i, rc, rc ? e.reason : c.tenant);
        if (cases[i].want == NULL) {
            assert(rc == 0);
            TEST_STREQ(c.tenant, "acme");
            TEST_STREQ(c.role, "writer");
            TEST_STREQ(c.sub, "ci");
        } else {
            assert(rc == -1);
            TEST_STREQ(e.reason, cases[i].want);
        }
        free(t);
    }
    /* A changed signature fails it. */
    t = s_test_token(rsa, strlen(rsa), JWT_ALG_RS256, "r1", ok);
    char *sig = strrchr(t, '.') + 20;
    *sig = *sig == 'A' ? 'B' : 'A';
    assert(api_jwt_verify(t, &conf, 1000, &c, &e) == -1);
    TEST_STREQ(e.reason, "bad_signature");
    free(t);
    /* Without claim settings: "tenant", "role" (reader when absent). */
    conf.tenant_claim = conf.role_claim = NULL;
    conf.issuer = "";
    t = s_test_token(hs, 32, JWT_ALG_HS256, NULL,
                     "{\"tenant\":\"acme\",\"exp\":2000,\"aud\":\"sensorpipe\"}");
    assert(api_jwt_verify(t, &conf, 1000, &c, &e) == 0);
    TEST_STREQ(c.role, "reader");
    free(t);
    /* HS256 is refused without a secret, RS256 without keys. */
    conf.secret_len = 0;
    t = s_test_token(hs, 32, JWT_ALG_HS256, NULL,
                     "{\"tenant\":\"acme\",\"exp\":2000,\"aud\":\"sensorpipe\"}");
    assert(api_jwt_verify(t, &conf, 1000, &c, &e) == -1);
    TEST_STREQ(e.reason, "unsupported_alg");
    free(t);
    /* A PEM public key works as a set of one. */
    api_jwt_keys_t *pem = api_jwt_keys_parse(keys->k[0].pem, strlen(keys->k[0].pem),
                                             err, sizeof err);
    assert(pem && api_jwt_keys_count(pem) == 1 && pem->k[0].kty == S_KTY_RSA);
    conf.keys = pem;
    t = s_test_token(rsa, strlen(rsa), JWT_ALG_RS256, NULL,
                     "{\"tenant\":\"acme\",\"exp\":2000,\"aud\":\"sensorpipe\"}");
    assert(api_jwt_verify(t, &conf, 1000, &c, &e) == 0);
    free(t);
    api_jwt_keys_destroy(&pem);
    /* Bad key documents say why. */
    assert(api_jwt_keys_parse("{\"x\":1}", 7, err, sizeof err) == NULL);
    assert(strstr(err, "no \"keys\""));
    const char *small = "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}]}";
    assert(api_jwt_keys_parse(small, strlen(small), err, sizeof err) == NULL);
    const char *junk = "-----BEGIN PUBLIC KEY-----\nxx\n";
    assert(api_jwt_keys_parse(junk, strlen(junk), err, sizeof err) == NULL);
    assert(!api_jwt_is_token("sp_abc"));
    assert(!api_jwt_is_token("eyJ.a"));
    assert(api_jwt_verify("eyJ.x.y", &conf, 1000, &c, &e) == -1);
    TEST_STREQ(e.reason, "malformed");
    api_jwt_keys_destroy(&keys);
    free(jwks);
    free(rsa);
    free(ec);
    free(other);
    free(rsa_jwk);
    free(ec_jwk);
    free(other_jwk);
    TEST_OK("api_jwt");
}
