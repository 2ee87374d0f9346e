/*
 * api_jwt: JSON Web Tokens as bearer credentials (RFC 7519), verified
 * with libjwt. Only HS256 with the configured secret is accepted (a token
 * saying "none" or another algorithm is refused, so no algorithm
 * confusion); "exp" is required and must lie ahead, "nbf" when present
 * must have passed, and with an audience configured "aud" (a string or
 * an array) must hold it. The principal comes from the claims: "tenant"
 * (required, [A-Za-z0-9_.-]), "role" (reader, writer or admin; reader
 * when absent) and "sub" (who, for rate limits and logs).
 */
#ifndef SP_API_JWT_H
#define SP_API_JWT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define API_JWT_NAME_MAX 64

/* What a valid token says. */
struct api_jwt_claims {
    char tenant[API_JWT_NAME_MAX + 1]; /* "tenant" claim */
    char role[API_JWT_NAME_MAX + 1];   /* "role" claim, "reader" by default */
    char sub[API_JWT_NAME_MAX + 1];    /* "sub" claim, "" when absent */
};

/* Does the credential look like a JWT (three base64url parts)? */
bool api_jwt_is_token(const char *s);
/* Verify token with secret (len bytes) at now (seconds since the epoch),
 * requiring audience in "aud" when audience is not empty. Returns 0 with
 * *out filled, or -1 with *why a static reason (never the token). */
int api_jwt_verify(const char *token, const unsigned char *secret, size_t len,
                   const char *audience, int64_t now, struct api_jwt_claims *out,
                   const char **why);

/* Selftest. */
void api_jwt_test(bool verbose);

#endif
