/*
 * api_dash: dashboard page, assets and saved layouts (see api_dash.h).
 */
#include "apid/api_dash.h"
#include "apid/api_auth.h"
#include "common/cfg.h"
#include "common/series.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DASH_PREFIX "/api/dashboards"
#define DASH_NAME_MAX 64          /* bytes in a dashboard name */
#define DASH_BODY_MAX 262144      /* bytes in one layout */
#define DASH_ASSET_MAX 4194304    /* bytes in one served file */
#define DASH_DB_FILE "apid.db"
#define DASH_SYSTEM_WEB "/usr/share/sensorpipe/web"

struct api_dash {
    apid_t *apid;   /* owner */
    sqlite3 *db;    /* layouts */
    char *webroot;  /* directory of index.html and the assets */
};

/* --- store ---------------------------------------------------------------- */

static sqlite3 *
s_db_open(const char *datadir)
{
    sqlite3 *db = NULL;
    char *path;
    char *err = NULL;

    if (*datadir == '\0') {
        path = xstrdup(":memory:");
    } else {
        if (mkdir(datadir, 0750) == -1 && errno != EEXIST) {
            log_warn("apid: cannot create %s", datadir);
            return NULL;
        }
        path = xasprintf("%s/%s", datadir, DASH_DB_FILE);
    }
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        log_warnx("apid: cannot open %s: %s", path,
                  db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        free(path);
        return NULL;
    }
    free(path);
    sqlite3_busy_timeout(db, 1000);
    if (sqlite3_exec(db,
                     "CREATE TABLE IF NOT EXISTS dashboards ("
                     " name TEXT PRIMARY KEY, body TEXT NOT NULL,"
                     " updated INTEGER NOT NULL)",
                     NULL, NULL, &err) != SQLITE_OK) {
        log_warnx("apid: dashboard store: %s", err);
        sqlite3_free(err);
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* The layout stored under name, or NULL. Caller frees. */
static char *
s_db_get(sqlite3 *db, const char *name)
{
    sqlite3_stmt *st = NULL;
    char *out = NULL;

    if (sqlite3_prepare_v2(db, "SELECT body FROM dashboards WHERE name = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW)
        out = xstrdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return out;
}

static int
s_db_exec(sqlite3 *db, const char *sql, const char *name, const char *body)
{
    sqlite3_stmt *st = NULL;
    int rc;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        log_warnx("apid: dashboard store: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
    if (body) {
        sqlite3_bind_text(st, 2, body, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    }
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        log_warnx("apid: dashboard store: %s", sqlite3_errmsg(db));
        return -1;
    }
    return sqlite3_changes(db) > 0 ? 0 : 1;
}

/* The row name of a tenant's dashboard: the name itself for the default
 * tenant, "tenant/name" for another ('/' is never in a name, so tenants
 * cannot meet). Returns buf. */
static char *
s_row_name(const char *tenant, const char *name, char *buf, size_t len)
{
    if (strcmp(tenant, SERIES_TENANT_DEFAULT) == 0)
        snprintf(buf, len, "%s", name);
    else
        snprintf(buf, len, "%s/%s", tenant, name);
    return buf;
}

/* The dashboards of tenant, by name. */
static json_t *
s_db_list(sqlite3 *db, const char *tenant)
{
    sqlite3_stmt *st = NULL;
    json_t *arr = json_array();
    char prefix[DASH_NAME_MAX + 2];
    size_t pl;

    s_row_name(tenant, "", prefix, sizeof prefix);
    pl = strlen(prefix);
    if (sqlite3_prepare_v2(db, "SELECT name, updated FROM dashboards "
                               "ORDER BY name", -1, &st, NULL) != SQLITE_OK)
        return arr;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *row = (const char *)sqlite3_column_text(st, 0);
        if (strncmp(row, prefix, pl) != 0 || strchr(row + pl, '/'))
            continue;
        json_array_append_new(arr, json_pack(
            "{s:s, s:I}", "name", row + pl,
            "updated", (json_int_t)sqlite3_column_int64(st, 1)));
    }
    sqlite3_finalize(st);
    return arr;
}

/* --- assets ------------------------------------------------------------------ */

/* Is rel a safe path under the web root: [A-Za-z0-9._-] segments, no
 * empty, "." or ".." segment? */
static bool
s_asset_ok(const char *rel)
{
    const char *seg = rel;

    if (*rel == '\0' || strlen(rel) > 200)
        return false;
    for (const char *p = rel;; p++) {
        if (*p == '/' || *p == '\0') {
            size_t n = (size_t)(p - seg);
            if (n == 0 || (n == 1 && seg[0] == '.') ||
                (n == 2 && seg[0] == '.' && seg[1] == '.'))
                return false;
            if (*p == '\0')
                return true;
            seg = p + 1;
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || strchr("._-", *p))) {
            return false;
        }
    }
}

static const char *
s_mime(const char *rel)
{
    static const char *map[][2] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
    };
    const char *dot = strrchr(rel, '.');

    for (size_t i = 0; dot && i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(dot, map[i][0]))
            return map[i][1];
    return "application/octet-stream";
}

static void
s_serve(api_dash_t *self, http_req_t *req, const char *rel)
{
    char *path, *buf;
    FILE *f;
    long n;

    if (!s_asset_ok(rel)) {
        http_req_reply_error(req, 404, "not_found", "no such file", rel);
        return;
    }
    path = xasprintf("%s/%s", self->webroot, rel);
    f = fopen(path, "rb");
    free(path);
    if (f == NULL || fseek(f, 0, SEEK_END) == -1 || (n = ftell(f)) < 0 ||
        n > DASH_ASSET_MAX || fseek(f, 0, SEEK_SET) == -1) {
        if (f)
            fclose(f);
        http_req_reply_error(req, 404, "not_found", "no such file", rel);
        return;
    }
    buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        http_req_reply_error(req, 500, "internal", "cannot read the file", rel);
        return;
    }
    fclose(f);
    http_req_add_header(req, "Cache-Control", "no-cache");
    http_req_reply(req, 200, s_mime(rel), buf, (size_t)n);
}

/* The web root: the setting, else apid/web beside the binary's build
 * directory (a source tree), else the system location. Caller frees. */
static char *
s_find_webroot(const char *conf)
{
    char exe[PATH_MAX], *slash, *dir;
    ssize_t n;
    struct stat sb;

    if (conf && *conf)
        return xstrdup(conf);
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')))
            *slash = '\0';
        dir = xasprintf("%s/../apid/web", exe);
        if (stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode))
            return dir;
        free(dir);
    }
    return xstrdup(DASH_SYSTEM_WEB);
}

/* --- routes ----------------------------------------------------------------- */

static bool
s_name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > DASH_NAME_MAX)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || strchr("._-", *p)))
            return false;
    return true;
}

static void
s_put(api_dash_t *self, http_req_t *req, const char *row, const char *name)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    json_t *in;
    char *s;

    if (len > DASH_BODY_MAX) {
        http_req_reply_error(req, 413, "payload_too_large",
                             "a layout is at most 256 KiB", "body");
        return;
    }
    in = json_loadb(body, len, 0, &jerr);
    if (in == NULL || !json_is_object(in)) {
        char msg[200];
        snprintf(msg, sizeof msg, "malformed JSON: %.150s",
                 in ? "a layout must be an object" : jerr.text);
        json_decref(in);
        http_req_reply_error(req, 400, "invalid_body", msg, "body");
        return;
    }
    s = json_dumps(in, JSON_COMPACT);
    json_decref(in);
    if (s_db_exec(self->db,
                  "INSERT INTO dashboards (name, body, updated) VALUES (?, ?, ?)"
                  " ON CONFLICT(name) DO UPDATE SET body = excluded.body,"
                  " updated = excluded.updated",
                  row, s) == -1) {
        free(s);
        http_req_reply_error(req, 500, "internal", "cannot store the layout",
                             name);
        return;
    }
    free(s);
    http_req_reply_json(req, 200, json_pack("{s:s, s:b}", "name", name,
                                            "saved", 1));
}

static void
s_route_one(api_dash_t *self, http_req_t *req, const char *name)
{
    const char *m = http_req_method(req);
    char row[2 * DASH_NAME_MAX + 2];

    s_row_name(api_auth_tenant(req), name, row, sizeof row);
    if (!s_name_ok(name)) {
        http_req_reply_error(req, 400, "bad_request",
                             "a dashboard name is 1-64 of [A-Za-z0-9._-]",
                             "name");
    } else if (!strcmp(m, "GET")) {
        char *body = s_db_get(self->db, row);
        if (body == NULL) {
            http_req_reply_error(req, 404, "not_found", "no such dashboard",
                                 name);
            return;
        }
        size_t n = strlen(body);
        http_req_reply(req, 200, "application/json", body, n);
    } else if (!strcmp(m, "PUT")) {
        s_put(self, req, row, name);
    } else if (!strcmp(m, "DELETE")) {
        int rc = s_db_exec(self->db, "DELETE FROM dashboards WHERE name = ?",
                           row, NULL);
        if (rc == 0)
            http_req_reply_json(req, 200, json_pack("{s:s, s:b}", "name", name,
                                                    "deleted", 1));
        else
            http_req_reply_error(req, rc == 1 ? 404 : 500,
                                 rc == 1 ? "not_found" : "internal",
                                 rc == 1 ? "no such dashboard"
                                         : "cannot delete the layout",
                                 name);
    } else {
        http_req_add_header(req, "Allow", "GET, PUT, DELETE");
        http_req_reply_error(req, 405, "method_not_allowed",
                             "use GET, PUT or DELETE", http_req_path(req));
    }
}

int
api_dash_route(apid_t *apid, http_req_t *req)
{
    api_dash_t *self = apid_service(apid, "dash");
    const char *path = http_req_path(req);
    char *name;

    if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        if (apid_method(req, "GET"))
            s_serve(self, req, "index.html");
    } else if (!strcmp(path, "/api/openapi.json")) {
        if (apid_method(req, "GET"))
            s_serve(self, req, "openapi.json");
    } else if (!strncmp(path, "/web/", 5)) {
        if (apid_method(req, "GET"))
            s_serve(self, req, path + 5);
    } else if (!strcmp(path, DASH_PREFIX)) {
        if (apid_method(req, "GET"))
            http_req_reply_json(req, 200, json_pack(
                "{s:o}", "dashboards",
                s_db_list(self->db, api_auth_tenant(req))));
    } else if (!strncmp(path, DASH_PREFIX "/", sizeof DASH_PREFIX)) {
        name = apid_path_arg(path, DASH_PREFIX "/");
        s_route_one(self, req, name ? name : "");
        free(name);
    } else {
        return 0;
    }
    return 1;
}

/* --- lifecycle -------------------------------------------------------------- */

static api_dash_t *
s_new(apid_t *apid, const char *datadir, const char *webroot)
{
    api_dash_t *self = xcalloc(1, sizeof *self);

    self->apid = apid;
    if ((self->db = s_db_open(datadir)) == NULL) {
        free(self);
        return NULL;
    }
    self->webroot = s_find_webroot(webroot);
    /* A web root the user named must be a directory: a typo would
     * otherwise serve 404 for the dashboard with no word at start. */
    if (webroot && *webroot) {
        struct stat sb;
        int rc = stat(self->webroot, &sb), err = errno;
        if (rc == -1 || !S_ISDIR(sb.st_mode)) {
            char q[CFG_QUOTE_BUF];
            log_warnx("apid: --webroot '%s': %s",
                      cfg_quote(self->webroot, q, sizeof q),
                      rc == -1 ? strerror(err) : "not a directory");
            sqlite3_close(self->db);
            free(self->webroot);
            free(self);
            return NULL;
        }
    }
    return self;
}

void *
api_dash_create(apid_t *apid)
{
    const struct apid_conf *conf = apid_config(apid);
    api_dash_t *self = s_new(apid, conf->datadir ? conf->datadir : "",
                             conf->webroot);

    if (self)
        log_info("apid: dashboard from %s, layouts in %s", self->webroot,
                 conf->datadir && *conf->datadir ? conf->datadir : "memory");
    return self;
}

void
api_dash_destroy(void **state_p)
{
    api_dash_t *self;

    if (state_p == NULL || (self = *state_p) == NULL)
        return;
    sqlite3_close(self->db);
    free(self->webroot);
    free(self);
    *state_p = NULL;
}

void
api_dash_test(bool verbose)
{
    /* A web root named but missing is refused; an existing one serves. */
    int level = log_level();
    log_set_level(LOG_LVL_CRIT);
    assert(s_new(NULL, "", "/nonexistent") == NULL);
    assert(s_new(NULL, "", "/etc/hostname") == NULL);
    log_set_level(level);
    void *p = s_new(NULL, "", "/tmp");
    api_dash_t *self = p;
    char *s;

    assert(self);
    assert(s_db_get(self->db, "main") == NULL);
    assert(s_db_exec(self->db, "INSERT INTO dashboards (name, body, updated)"
                               " VALUES (?, ?, ?)", "main", "{\"a\":1}") == 0);
    s = s_db_get(self->db, "main");
    TEST_STREQ(s, "{\"a\":1}");
    free(s);
    assert(s_db_exec(self->db, "DELETE FROM dashboards WHERE name = ?", "main",
                     NULL) == 0);
    assert(s_db_exec(self->db, "DELETE FROM dashboards WHERE name = ?", "main",
                     NULL) == 1);
    api_dash_destroy(&p);
    assert(p == NULL);

    assert(s_asset_ok("index.html"));
    assert(s_asset_ok("vendor/uPlot.iife.min.js"));
    assert(!s_asset_ok("../etc/passwd"));
    assert(!s_asset_ok("vendor/../../x"));
    assert(!s_asset_ok("/etc/passwd"));
    assert(!s_asset_ok("a//b"));
    assert(!s_asset_ok("a%2e"));
    assert(s_name_ok("ops-floor_2.v1"));
    assert(!s_name_ok("a b"));
    TEST_STREQ(s_mime("x/app.js"), "text/javascript; charset=utf-8");
    (void)verbose;
    TEST_OK("api_dash");
}
