/*
 * dev_creds: per-device MQTT credentials for mosquitto (see dev_creds.h).
 */
#include "apid/dev_creds.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEV_CREDS_SALT 12       /* bytes, as mosquitto_passwd */
#define DEV_CREDS_DK 64         /* SHA-512 output */
#define DEV_CREDS_ITER 1000     /* PBKDF2 rounds; the broker pays them per CONNECT */
#define DEV_CREDS_PW_BYTES 24   /* 192 random bits -> 32 base64url characters */

char *
dev_creds_password(void)
{
    unsigned char raw[DEV_CREDS_PW_BYTES];
    size_t n = sodium_base64_ENCODED_LEN(sizeof raw,
                                         sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    char *pw = xmalloc(n);

    randombytes_buf(raw, sizeof raw);
    sodium_bin2base64(pw, n, raw, sizeof raw, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(raw, sizeof raw);
    return pw;
}

void
dev_creds_free(char **s_p)
{
    if (s_p == NULL || *s_p == NULL)
        return;
    sodium_memzero(*s_p, strlen(*s_p));
    free(*s_p);
    *s_p = NULL;
}

/* PBKDF2-HMAC-SHA512 (RFC 8018) for dk of DEV_CREDS_DK bytes: one block. */
static void
s_pbkdf2(const char *pw, const unsigned char *salt, size_t slen, int iter,
         unsigned char dk[DEV_CREDS_DK])
{
    crypto_auth_hmacsha512_state base, st;
    unsigned char u[crypto_auth_hmacsha512_BYTES];
    const unsigned char one[4] = {0, 0, 0, 1};

    crypto_auth_hmacsha512_init(&base, (const unsigned char *)pw, strlen(pw));
    st = base;
    crypto_auth_hmacsha512_update(&st, salt, slen);
    crypto_auth_hmacsha512_update(&st, one, sizeof one);
    crypto_auth_hmacsha512_final(&st, u);
    memcpy(dk, u, DEV_CREDS_DK);
    for (int i = 1; i < iter; i++) {
        st = base;
        crypto_auth_hmacsha512_update(&st, u, sizeof u);
        crypto_auth_hmacsha512_final(&st, u);
        for (int j = 0; j < DEV_CREDS_DK; j++)
            dk[j] ^= u[j];
    }
    sodium_memzero(&base, sizeof base);
    sodium_memzero(&st, sizeof st);
    sodium_memzero(u, sizeof u);
}

static char *
s_hash(const char *pw, const unsigned char *salt, size_t slen, int iter)
{
    unsigned char dk[DEV_CREDS_DK];
    char s64[64], d64[128];

    s_pbkdf2(pw, salt, slen, iter, dk);
    sodium_bin2base64(s64, sizeof s64, salt, slen, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(d64, sizeof d64, dk, sizeof dk, sodium_base64_VARIANT_ORIGINAL);
    sodium_memzero(dk, sizeof dk);
    return xasprintf("$7$%d$%s$%s", iter, s64, d64);
}

char *
dev_creds_hash(const char *password)
{
    unsigned char salt[DEV_CREDS_SALT];

    randombytes_buf(salt, sizeof salt);
    return s_hash(password, salt, sizeof salt, DEV_CREDS_ITER);
}

bool
dev_creds_verify(const char *password, const char *hash)
{
    unsigned char salt[64];
    size_t slen;
    long long iter;
    char *copy, *f[4], *save = NULL, *again;
    int n = 0;
    bool ok = false;

    if (strncmp(hash, "$7$", 3))
        return false;
    copy = xstrdup(hash + 3);
    for (char *t = strtok_r(copy, "$", &save); t && n < 4; t = strtok_r(NULL, "$", &save))
        f[n++] = t;
    if (n == 3 && !strutil_toll(f[0], 1, 10000000, &iter) &&
        !sodium_base642bin(salt, sizeof salt, f[1], strlen(f[1]), NULL, &slen,
                           NULL, sodium_base64_VARIANT_ORIGINAL)) {
        again = s_hash(password, salt, slen, (int)iter);
        ok = strlen(again) == strlen(hash) &&
             sodium_memcmp(again, hash, strlen(hash)) == 0;
        free(again);
    }
    free(copy);
    return ok;
}

char *
dev_creds_user(const char *tenant, const char *id, char *buf, size_t len)
{
    if (!strcmp(tenant, DEV_CREDS_TENANT_DEFAULT))
        snprintf(buf, len, "%s", id);
    else
        snprintf(buf, len, "%s@%s", id, tenant);
    return buf;
}

char *
dev_creds_prefix(const char *tenant, const char *id, char *buf, size_t len)
{
    if (!strcmp(tenant, DEV_CREDS_TENANT_DEFAULT))
        snprintf(buf, len, "devices/%s", id);
    else
        snprintf(buf, len, "tenants/%s/devices/%s", tenant, id);
    return buf;
}

/* The users of dir/passwd.static ("user:hash" lines), as the keys of a
 * JSON object. */
static json_t *
s_static_users(const char *dir)
{
    char *path = xasprintf("%s/passwd.static", dir), *line = NULL, *colon;
    FILE *in = fopen(path, "r");
    json_t *set = json_object();
    size_t cap = 0;

    free(path);
    if (in == NULL)
        return set;
    while (getline(&line, &cap, in) != -1) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || (colon = strchr(line, ':')) == NULL)
            continue;
        *colon = '\0';
        json_object_set_new(set, line, json_true());
    }
    free(line);
    fclose(in);
    return set;
}

bool
dev_creds_reserved(const char *dir, const char *user)
{
    json_t *set = s_static_users(dir);
    bool taken = json_object_get(set, user) != NULL;

    json_decref(set);
    return taken;
}

struct s_out {
    FILE *pw;       /* passwd being written */
    FILE *acl;      /* acl being written */
    json_t *statics; /* users of passwd.static */
};

static void
s_emit(void *arg, const char *user, const char *hash, const char *tenant,
       const char *id)
{
    struct s_out *o = arg;
    char prefix[256];

    /* mosquitto keeps the last line of a user: a device named like a
     * service account would take it over (its ACL, its password). */
    if (json_object_get(o->statics, user)) {
        log_warnx("dev_creds: device %s/%s is left out of the broker's files: "
                  "%s is a user of passwd.static", tenant, id, user);
        return;
    }
    dev_creds_prefix(tenant, id, prefix, sizeof prefix);
    fprintf(o->pw, "%s:%s\n", user, hash);
    fprintf(o->acl, "\nuser %s\ntopic write %s/#\ntopic read %s/commands/#\n"
                    "topic read %s/shadow/#\n", user, prefix, prefix, prefix);
}

/* Copy dir/name.static into fp when it exists. */
static void
s_copy_static(FILE *fp, const char *dir, const char *name)
{
    char *path = xasprintf("%s/%s.static", dir, name), buf[4096];
    FILE *in = fopen(path, "r");
    size_t n;

    free(path);
    if (in == NULL)
        return;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        fwrite(buf, 1, n, fp);
    fclose(in);
    fputc('\n', fp);
}

static FILE *
s_open_tmp(const char *dir, const char *name)
{
    char *path = xasprintf("%s/.%s.tmp", dir, name);
    /* 0644: the broker drops to its own user before it reads the files;
     * they hold only salted hashes. */
    FILE *fp = fopen(path, "w");

    if (fp == NULL)
        log_warn("dev_creds: %s", path);
    else
        fchmod(fileno(fp), 0644);
    free(path);
    return fp;
}

static int
s_commit(FILE *fp, const char *dir, const char *name)
{
    char *tmp = xasprintf("%s/.%s.tmp", dir, name);
    char *path = xasprintf("%s/%s", dir, name);
    int rc = 0;

    if (fflush(fp) || fsync(fileno(fp)) || fclose(fp) || rename(tmp, path)) {
        log_warn("dev_creds: cannot write %s", path);
        unlink(tmp);
        rc = -1;
    }
    free(tmp);
    free(path);
    return rc;
}

int
dev_creds_write(dev_store_t *store, const char *dir)
{
    struct s_out o = {s_open_tmp(dir, "passwd"), s_open_tmp(dir, "acl"), NULL};
    int rc;

    if (o.pw == NULL || o.acl == NULL) {
        if (o.pw)
            fclose(o.pw);
        if (o.acl)
            fclose(o.acl);
        return -1;
    }
    s_copy_static(o.pw, dir, "passwd");
    s_copy_static(o.acl, dir, "acl");
    fprintf(o.acl, "# written by apid from the device registry\n");
    o.statics = s_static_users(dir);
    rc = dev_store_creds(store, s_emit, &o);
    json_decref(o.statics);
    if (s_commit(o.pw, dir, "passwd"))
        rc = -1;
    if (s_commit(o.acl, dir, "acl"))
        rc = -1;
    return rc;
}

int
dev_creds_reload(const char *pidfile)
{
    FILE *fp;
    char line[32] = "";
    long long pid;

    if (pidfile == NULL || *pidfile == '\0')
        return 0;
    if ((fp = fopen(pidfile, "r")) == NULL) {
        log_warn("dev_creds: cannot read broker pid file %s", pidfile);
        return -1;
    }
    if (fgets(line, sizeof line, fp) == NULL)
        line[0] = '\0';
    fclose(fp);
    line[strcspn(line, "\r\n")] = '\0';
    if (strutil_toll(line, 2, INT32_MAX, &pid)) {
        log_warnx("dev_creds: no pid in %s", pidfile);
        return -1;
    }
    if (kill((pid_t)pid, SIGHUP) == -1) {
        log_warn("dev_creds: cannot signal broker %lld", pid);
        return -1;
    }
    log_debug("dev_creds: broker %lld reloads credentials", pid);
    return 0;
}

void
dev_creds_test(bool verbose)
{
    /* PBKDF2-HMAC-SHA512 vector ("password", "salt", 1 round). */
    static const unsigned char want[8] = {0x86, 0x7f, 0x70, 0xcf, 0x1a, 0xde, 0x02, 0xcf};
    unsigned char dk[DEV_CREDS_DK];
    char *pw, *h, buf[128];

    assert(sodium_init() >= 0);
    s_pbkdf2("password", (const unsigned char *)"salt", 4, 1, dk);
    assert(memcmp(dk, want, sizeof want) == 0);

    pw = dev_creds_password();
    assert(strlen(pw) == 32);
    h = dev_creds_hash(pw);
    assert(strncmp(h, "$7$1000$", 8) == 0);
    assert(dev_creds_verify(pw, h));
    assert(!dev_creds_verify("wrong", h));
    assert(!dev_creds_verify(pw, "$6$abc"));
    free(h);
    dev_creds_free(&pw);
    assert(pw == NULL);
    dev_creds_free(&pw);

    TEST_STREQ(dev_creds_user("default", "s1", buf, sizeof buf), "s1");
    TEST_STREQ(dev_creds_user("acme", "s1", buf, sizeof buf), "s1@acme");
    TEST_STREQ(dev_creds_prefix("acme", "s1", buf, sizeof buf),
               "tenants/acme/devices/s1");
    {
        char dir[] = "/tmp/dev_creds.XXXXXX", *path;
        FILE *fp;

        assert(mkdtemp(dir));
        assert(!dev_creds_reserved(dir, "svc")); /* no passwd.static */
        path = xasprintf("%s/passwd.static", dir);
        assert((fp = fopen(path, "w")));
        fputs("# services\nsvc:$7$101$x$y\r\ningest@acme:$7$101$x$y\nnocolon\n", fp);
        fclose(fp);
        assert(dev_creds_reserved(dir, "svc"));
        assert(dev_creds_reserved(dir, "ingest@acme"));
        assert(!dev_creds_reserved(dir, "sv"));
        assert(!dev_creds_reserved(dir, "svc2"));
        assert(!dev_creds_reserved(dir, "nocolon"));
        assert(!dev_creds_reserved(dir, "# services"));
        {
            /* A device "svc" registered before apid refused the name is
             * left out of the files the broker reads. */
            dev_store_t *st = dev_store_new(":memory:");
            json_t *evs = json_loads("[{\"type\":\"provisioned\",\"data\":"
                                     "{\"deviceId\":\"svc\",\"type\":\"t\"}}]", 0, NULL);
            json_t *evs2 = json_loads("[{\"type\":\"provisioned\",\"data\":"
                                      "{\"deviceId\":\"s1\",\"type\":\"t\"}}]", 0, NULL);
            const char *why;
            char *text = xasprintf("%s/passwd", dir), got[256] = "";
            size_t n;

            assert(dev_store_append(st, "default", "svc", evs, 0, NULL, &why) == DEV_STORE_OK);
            assert(dev_store_append(st, "default", "s1", evs2, 0, NULL, &why) == DEV_STORE_OK);
            json_decref(evs2);
            assert(dev_store_set_cred(st, "default", "svc", "svc", "$7$1$dev$dev") == 0);
            assert(dev_store_set_cred(st, "default", "s1", "s1", "$7$1$s1$s1") == 0);
            assert(dev_creds_write(st, dir) == 0);
            assert((fp = fopen(text, "r")));
            n = fread(got, 1, sizeof got - 1, fp);
            got[n] = '\0';
            fclose(fp);
            assert(strstr(got, "svc:$7$101$x$y") && !strstr(got, "$dev$") &&
                   strstr(got, "s1:$7$1$s1$s1"));
            unlink(text);
            free(text);
            text = xasprintf("%s/acl", dir);
            unlink(text);
            free(text);
            json_decref(evs);
            dev_store_destroy(&st);
        }
        unlink(path);
        free(path);
        rmdir(dir);
    }
    assert(dev_creds_reload("") == 0);
    (void)verbose;
    TEST_OK("dev_creds");
}
