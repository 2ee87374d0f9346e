/*
 * api_jwt: JSON Web Tokens as bearer credentials (RFC 7519), verified
 * with libjwt: HS256 with a shared secret, or RS256/384/512 and
 * ES256/384 with an OAuth 2.0 / OpenID Connect provider's public keys,
 * loaded from a JWKS file (RFC 7517, {"keys": [...]}, as served at the
 * provider's jwks_uri) or from one PEM public key.
 *
 * The header is read first (base64url by libsodium, JSON by jansson) and
 * decides which key verifies: its "alg" must be one of the above and fit
 * the key's type (an RSA key never verifies an HS256 token, so no
 * algorithm confusion; "none" is refused), and its "kid" selects the key
 * (without a kid, the only key of that type). "exp" is required and must
 * lie ahead, "nbf" when present must have passed; with an issuer
 * configured "iss" must equal it, with an audience "aud" (a string or an
 * array) must hold it. The principal comes from the claims: the tenant
 * claim (required, [A-Za-z0-9_.@-]), the role claim (reader, writer or
 * admin, or an array of role names of which the highest counts; reader
 * when absent) and "sub" (who, for rate limits and logs). Claim names may
 * be dotted paths into nested objects ("realm_access.roles").
 */
#ifndef SP_API_JWT_H
#define SP_API_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_JWT_NAME_MAX 64

/* What a valid token says. */
struct api_jwt_claims {
    char tenant[API_JWT_NAME_MAX + 1]; /* tenant claim */
    char role[API_JWT_NAME_MAX + 1];   /* role claim, "reader" by default */
    char sub[API_JWT_NAME_MAX + 1];    /* "sub" claim, "" when absent */
};

/* Why a token was refused: reason is a short code for programs
 * ("expired", "bad_audience", "unknown_kid", "bad_signature", ...),
 * message a sentence for people. Both static; never the token. */
struct api_jwt_err {
    const char *reason;
    const char *message;
};

/* A provider's public keys. */
typedef struct api_jwt_keys api_jwt_keys_t;

/* What to accept. */
struct api_jwt_conf {
    const unsigned char *secret; /* HS256 key, or NULL */
    size_t secret_len;           /* its length; 0 = no HS256 */
    const api_jwt_keys_t *keys;  /* RS/ES keys, or NULL */
    const char *issuer;          /* required "iss"; NULL or "" = any */
    const char *audience;        /* required in "aud"; NULL or "" = any */
    const char *tenant_claim;    /* NULL = "tenant" */
    const char *role_claim;      /* NULL = "role" */
};

/* Does the credential look like a JWT (three base64url parts)? */
bool api_jwt_is_token(const char *s);
/* Verify token at now (seconds since the epoch). Returns 0 with *out
 * filled, or -1 with *err set. */
int api_jwt_verify(const char *token, const struct api_jwt_conf *conf,
                   int64_t now, struct api_jwt_claims *out,
                   struct api_jwt_err *err);

/* Load the keys of a JWKS document (JSON text) or of one PEM public key
 * (text starting "-----BEGIN"). Keys that are not for signatures, of
 * another type, or RSA under 2048 bits are skipped. NULL with a reason
 * in err (errlen bytes) when no usable key is there. */
api_jwt_keys_t *api_jwt_keys_parse(const char *text, size_t len, char *err,
                                   size_t errlen);
/* The same from a file. */
api_jwt_keys_t *api_jwt_keys_load(const char *path, char *err, size_t errlen);
/* Number of usable keys. */
size_t api_jwt_keys_count(const api_jwt_keys_t *self);
/* NULL-safe; sets *self_p to NULL. */
void api_jwt_keys_destroy(api_jwt_keys_t **self_p);

/* Selftest. */
void api_jwt_test(bool verbose);

#endif
