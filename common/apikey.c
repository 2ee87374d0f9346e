/*
 * apikey: hashed API keys from a file and apid's database (see apikey.h).
 */
#include "common/apikey.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static const char *const s_roles[] = {NULL, "reader", "writer", "admin"};

struct apikey {
    json_t *file;   /* hash -> {name, tenant, role} from the file */
    char *db_path;  /* apid's devices.db, or NULL */
    sqlite3 *db;    /* opened read-only once it exists */
};

const char *
apikey_credential(const char *h, const char *p, char *buf, size_t len)
{
    const char *v = p;
    size_t n, bin;
    char *colon;

    if (h && !strncasecmp(h, "Basic ", 6)) {
        v = h + 6 + strspn(h + 6, " ");
        n = strlen(v);
        while (n > 0 && v[n - 1] == ' ')
            n--;
        if (len == 0 ||
            sodium_base642bin((unsigned char *)buf, len - 1, v, n, NULL, &bin, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            memchr(buf, '\0', bin))
            return NULL;
        n = bin;
        buf[n] = '\0';
        if ((colon = strchr(buf, ':')) == NULL)
            return NULL;
        memmove(buf, colon + 1, strlen(colon + 1) + 1);
        return buf;
    }
    if (h && !strncasecmp(h, "Bearer ", 7))
        v = h + 7 + strspn(h + 7, " ");
    else if (h && !strncasecmp(h, "Token ", 6))
        v = h + 6 + strspn(h + 6, " ");
    else if (h)
        return NULL;
    if (v == NULL || (n = strlen(v)) >= len)
        return NULL;
    memcpy(buf, v, n + 1);
    return buf;
}

void
apikey_hash(const char *key, size_t len, char out[APIKEY_HASH_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(h, (const unsigned char *)key, len);
    sodium_bin2hex(out, APIKEY_HASH_HEX, h, sizeof h);
}

int
apikey_role(const char *name)
{
    for (int r = 1; r <= 3; r++)
        if (name && !strcmp(name, s_roles[r]))
            return r;
    return 0;
}

/* [A-Za-z0-9_.-]{1,64}, the names of keys and tenants. */
static bool
s_name_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n <= 64 &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                     "0123456789_.-") == n;
}

json_t *
apikey_parse_line(char *line, char hash[APIKEY_HASH_HEX], const char **why)
{
    char *f[5], *save = NULL;
    int n = 0;

    for (char *t = strtok_r(line, " \t\r\n", &save); t && n < 5;
         t = strtok_r(NULL, " \t\r\n", &save))
        f[n++] = t;
    if (n != 4)
        return *why = "want: name tenant role sha256:HEX", NULL;
    if (!s_name_ok(f[0]) || !s_name_ok(f[1]))
        return *why = "name and tenant must be [A-Za-z0-9_.-]", NULL;
    if (apikey_role(f[2]) == 0)
        return *why = "role must be reader, writer or admin", NULL;
    if (strncmp(f[3], "sha256:", 7) || strlen(f[3] + 7) != APIKEY_HASH_HEX - 1 ||
        strspn(f[3] + 7, "0123456789abcdef") != APIKEY_HASH_HEX - 1)
        return *why = "hash must be sha256: and 64 lower-case hex digits", NULL;
    memcpy(hash, f[3] + 7, APIKEY_HASH_HEX);
    return json_pack("{s:s, s:s, s:s}", "name", f[0], "tenant", f[1], "role", f[2]);
}

static int
s_load(apikey_t *self, const char *path)
{
    FILE *fp = fopen(path, "r");
    char line[512], hash[APIKEY_HASH_HEX];
    int lineno = 0, errors = 0;

    if (fp == NULL) {
        log_warn("apikey: cannot open keys file %s", path);
        return -1;
    }
    while (fgets(line, sizeof line, fp)) {
        const char *why;
        json_t *k;
        lineno++;
        if (line[strspn(line, " \t\r\n")] == '\0' || line[strspn(line, " \t")] == '#')
            continue;
        if ((k = apikey_parse_line(line, hash, &why)) == NULL) {
            log_warnx("apikey: %s:%d: %s", path, lineno, why);
            errors++;
            continue;
        }
        json_object_set_new(self->file, hash, k);
    }
    fclose(fp);
    return errors ? -1 : 0;
}

apikey_t *
apikey_new(const char *file, const char *db)
{
    apikey_t *self = xcalloc(1, sizeof *self);

    self->file = json_object();
    if (db && *db)
        self->db_path = xstrdup(db);
    if (file && *file && s_load(self, file)) {
        apikey_destroy(&self);
        return NULL;
    }
    return self;
}

void
apikey_destroy(apikey_t **self_p)
{
    apikey_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    json_decref(self->file);
    sqlite3_close(self->db);
    free(self->db_path);
    free(self);
    *self_p = NULL;
}

size_t
apikey_file_count(const apikey_t *self)
{
    return json_object_size(self->file);
}

json_t *
apikey_find_hash(apikey_t *self, const char *hash)
{
    sqlite3_stmt *st = NULL;
    json_t *k = json_object_get(self->file, hash);

    if (k)
        return json_incref(k);
    if (self->db_path == NULL)
        return NULL;
    if (self->db == NULL &&
        sqlite3_open_v2(self->db_path, &self->db, SQLITE_OPEN_READONLY, NULL) !=
            SQLITE_OK) {
        sqlite3_close(self->db); /* not there yet: apid makes it */
        self->db = NULL;
        return NULL;
    }
    sqlite3_busy_timeout(self->db, 100);
    if (sqlite3_prepare_v2(self->db, "SELECT name, tenant, role FROM api_keys"
                                     " WHERE hash = ?", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    sqlite3_bind_text(st, 1, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        k = json_pack("{s:s, s:s, s:s}", "name",
                      (const char *)sqlite3_column_text(st, 0), "tenant",
                      (const char *)sqlite3_column_text(st, 1), "role",
                      (const char *)sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    return k;
}

json_t *
apikey_find(apikey_t *self, const char *key)
{
    char hash[APIKEY_HASH_HEX];

    apikey_hash(key, strlen(key), hash);
    return apikey_find_hash(self, hash);
}

void
apikey_test(bool verbose)
{
    char line[200], hash[APIKEY_HASH_HEX], want[APIKEY_HASH_HEX];
    char dir[] = "/tmp/apikey_test.XXXXXX", path[128], db[128];
    const char *why;
    json_t *k;
    apikey_t *ks;
    sqlite3 *h;
    FILE *fp;

    assert(sodium_init() >= 0);
    apikey_hash("abc", 3, hash);
    TEST_STREQ(hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    memcpy(want, hash, sizeof want);
    snprintf(line, sizeof line, "ops acme admin sha256:%s\n", want);
    k = apikey_parse_line(line, hash, &why);
    assert(k && !strcmp(hash, want));
    TEST_STREQ(json_string_value(json_object_get(k, "role")), "admin");
    json_decref(k);
    snprintf(line, sizeof line, "ops acme root sha256:%s", want);
    assert(apikey_parse_line(line, hash, &why) == NULL);
    snprintf(line, sizeof line, "ops acme reader sha256:ABC");
    assert(apikey_parse_line(line, hash, &why) == NULL);
    snprintf(line, sizeof line, "ops a/b reader sha256:%s", want);
    assert(apikey_parse_line(line, hash, &why) == NULL);
    assert(apikey_role("writer") == 2 && apikey_role("x") == 0);
    {
        char buf[64];
        /* Bearer, Token (any case), Basic with the key as the password
         * (base64 of "telegraf:k3y" and of ":k3y"), else p. */
        TEST_STREQ(apikey_credential("Bearer  k3y", "no", buf, sizeof buf), "k3y");
        TEST_STREQ(apikey_credential("token k3y", NULL, buf, sizeof buf), "k3y");
        TEST_STREQ(apikey_credential("Basic dGVsZWdyYWY6azN5", "no", buf, sizeof buf), "k3y");
        TEST_STREQ(apikey_credential("basic  OmszeQ== ", NULL, buf, sizeof buf), "k3y");
        TEST_STREQ(apikey_credential(NULL, "k3y", buf, sizeof buf), "k3y");
        assert(apikey_credential(NULL, NULL, buf, sizeof buf) == NULL);
        assert(apikey_credential("Digest x", "k3y", buf, sizeof buf) == NULL);
        assert(apikey_credential("Basic azN5", NULL, buf, sizeof buf) == NULL); /* no ':' */
        assert(apikey_credential("Basic !!!!", NULL, buf, sizeof buf) == NULL);
        assert(apikey_credential("Basic OmszeQ", NULL, buf, sizeof buf) == NULL); /* unpadded */
        assert(apikey_credential("Basic OmsAeQ==", NULL, buf, sizeof buf) == NULL); /* a NUL */
        assert(apikey_credential("Bearer k3y", NULL, buf, 3) == NULL);
        TEST_STREQ(apikey_credential("Bearer k3y", NULL, buf, 4), "k3y");
    }

    /* A file and a database that appears later. */
    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/keys", dir);
    snprintf(db, sizeof db, "%s/devices.db", dir);
    fp = fopen(path, "w");
    fprintf(fp, "# comment\nops acme writer sha256:%s\n", want);
    fclose(fp);
    ks = apikey_new(path, db);
    assert(ks && apikey_file_count(ks) == 1);
    k = apikey_find(ks, "abc");
    TEST_STREQ(json_string_value(json_object_get(k, "tenant")), "acme");
    json_decref(k);
    assert(apikey_find(ks, "abd") == NULL);
    assert(sqlite3_open(db, &h) == SQLITE_OK);
    assert(sqlite3_exec(h, "CREATE TABLE api_keys (hash TEXT PRIMARY KEY, name TEXT,"
                           " tenant TEXT, role TEXT, created INTEGER)",
                        NULL, NULL, NULL) == SQLITE_OK);
    apikey_hash("abd", 3, hash);
    snprintf(line, sizeof line, "INSERT INTO api_keys VALUES ('%s', 'ci', 'globex',"
             " 'reader', 0)", hash);
    assert(sqlite3_exec(h, line, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(h);
    k = apikey_find(ks, "abd");
    TEST_STREQ(json_string_value(json_object_get(k, "tenant")), "globex");
    json_decref(k);
    apikey_destroy(&ks);
    fp = fopen(path, "w");
    fprintf(fp, "ops acme boss sha256:%s\n", want);
    fclose(fp);
    int level = log_level();
    if (!verbose)
        log_set_level(LOG_LVL_CRIT);
    assert(apikey_new(path, "") == NULL);
    log_set_level(level);
    unlink(path);
    unlink(db);
    rmdir(dir);
    TEST_OK("apikey");
}
