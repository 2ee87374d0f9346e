/*
 * alert_ruleset: file rules and API rules, validation, persistence (see
 * alert_ruleset.h).
 *
 * Rules are kept as their source (name, condition text, actions) and
 * parsed again when the engine's set is built: a parsed rule is handed
 * to the engine, which owns it, and parsing is cheap next to a CRUD
 * request (10,000 rules parse in a few milliseconds). Each request that
 * changes a rule is one SQLite transaction before the answer goes out,
 * so a 201 means the rule survives a kill -9.
 */
#include "alertd/alert_ruleset.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Most rules (file and API together). */
#define S_RULES_MAX ALERT_FILE_RULES_MAX
/* Longest channel argument built from an action (a URL, a topic). */
#define S_ARG_MAX 2048

static const char *s_schema =
    "CREATE TABLE IF NOT EXISTS rules ("
    " name TEXT PRIMARY KEY, condition TEXT NOT NULL,"
    " actions TEXT NOT NULL, enabled INTEGER NOT NULL,"
    " created INTEGER NOT NULL, updated INTEGER NOT NULL,"
    " tenant TEXT NOT NULL DEFAULT '" SERIES_TENANT_DEFAULT "')";
/* Tables made before rules had a tenant get the column (an error when
 * it exists already is expected and ignored). */
static const char *s_migrate_tenant =
    "ALTER TABLE rules ADD COLUMN tenant TEXT NOT NULL DEFAULT '"
    SERIES_TENANT_DEFAULT "'";

/* One rule as its source. */
struct s_rule {
    char *name;      /* rule name, unique in the set */
    char *cond;      /* condition text with its clauses */
    json_t *actions; /* API rules: the actions array (owned); else NULL */
    bool enabled;    /* evaluated */
    bool api;        /* made through the API (else from the file) */
    int64_t created; /* API rules: wall clock, ns */
    int64_t updated; /* API rules: wall clock, ns */
    char *tenant;    /* API rules: whose rule (its series only); file: NULL */
};

struct alert_ruleset {
    struct sqlite3 *db;          /* the store's connection, or NULL */
    struct s_rule **v;           /* file rules in file order, then API
                                    rules in creation order */
    size_t n;                    /* entries in v */
    alert_channel_t **fch;       /* channels of the file (copies) */
    size_t nfch;                 /* how many */
};

static void
s_rule_free(struct s_rule **rp)
{
    struct s_rule *r = *rp;

    if (r == NULL)
        return;
    free(r->name);
    free(r->cond);
    free(r->tenant);
    json_decref(r->actions);
    free(r);
    *rp = NULL;
}

static struct s_rule *
s_find(const alert_ruleset_t *self, const char *name, bool api)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i]->api == api && strcmp(self->v[i]->name, name) == 0)
            return self->v[i];
    return NULL;
}

static void
s_append(alert_ruleset_t *self, struct s_rule *r)
{
    self->v = xrealloc(self->v, (self->n + 1) * sizeof *self->v);
    self->v[self->n++] = r;
}

static void
s_remove(alert_ruleset_t *self, struct s_rule *r)
{
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i] == r) {
            memmove(&self->v[i], &self->v[i + 1],
                    (self->n - i - 1) * sizeof *self->v);
            self->n--;
            s_rule_free(&r);
            return;
        }
}

static alert_channel_t *
s_file_channel(const alert_ruleset_t *self, const char *name)
{
    for (size_t i = 0; i < self->nfch; i++)
        if (strcmp(alert_channel_name(self->fch[i]), name) == 0)
            return self->fch[i];
    return NULL;
}

/* --------------------------------------------------------------------- */
/* Actions: the seed's "actions" array as channels */

/* A validation failure: code, reason and where, for the 400 body. */
struct s_fail {
    const char *code;  /* error code */
    char reason[200];  /* message */
    char where[64];    /* field */
    long position;     /* condition column (1-based), or 0 */
};

static void s_failf(struct s_fail *f, const char *code, const char *where,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void
s_failf(struct s_fail *f, const char *code, const char *where,
        const char *fmt, ...)
{
    va_list ap;

    f->code = code;
    snprintf(f->where, sizeof f->where, "%s", where);
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof f->reason, fmt, ap);
    va_end(ap);
}

/* Append a word to a channel declaration, quoted (\" and \\ escaped). */
static void
s_word(char *buf, size_t len, const char *w)
{
    size_t n = strlen(buf);

    if (n + 3 >= len)
        return;
    buf[n++] = ' ';
    buf[n++] = '"';
    for (; *w && n + 3 < len; w++) {
        if (*w == '"' || *w == '\\')
            buf[n++] = '\\';
        buf[n++] = *w;
    }
    buf[n++] = '"';
    buf[n] = '\0';
}

/* The name of action i of rule: "api_" and FNV-1a 64 of the rule name. */
static void
s_channel_name(const char *rule, size_t i, char *buf, size_t len)
{
    snprintf(buf, len, "api_%016llx.%zu",
             (unsigned long long)strutil_fnv1a64(rule, strlen(rule)), i);
}

/* A string field of an action within bounds, or NULL. */
static const char *
s_action_str(const json_t *a, const char *key)
{
    const char *s = json_string_value(json_object_get(a, key));
    return s && *s && strlen(s) < S_ARG_MAX - 8 ? s : NULL;
}

/* Turn action i into a channel (*ch, caller destroys) or the name of a
 * file channel (*named, borrowed). Returns 0 or -1 with *f. */
static int
s_action(const alert_ruleset_t *self, const char *rule, size_t i,
         const json_t *a, alert_channel_t **ch, const char **named,
         struct s_fail *f)
{
    char where[32], decl[S_ARG_MAX + 128], name[48];
    const char *type = json_string_value(json_object_get(a, "type"));
    const char *key, *s;
    json_t *v;
    struct alert_rule_error err;

    *ch = NULL;
    *named = NULL;
    snprintf(where, sizeof where, "actions[%zu]", i);
    if (!json_is_object(a) || type == NULL) {
        s_failf(f, "bad_action", where, "an action is an object with a "
                                        "\"type\" (webhook, mqtt, email, "
                                        "channel)");
        return -1;
    }
    if (strcmp(type, "exec") == 0) {
        s_failf(f, "bad_action", where, "exec is not accepted through the "
                "API: declare an exec channel in the rules file and use "
                "{\"type\":\"channel\",\"name\":...}");
        return -1;
    }
    json_object_foreach((json_t *)a, key, v) {
        if (strcmp(key, "type") && strcmp(key, "url") && strcmp(key, "topic") &&
            strcmp(key, "to") && strcmp(key, "name")) {
            s_failf(f, "bad_action", where, "unknown field '%s' (type, url, "
                                            "topic, to, name)", key);
            return -1;
        }
    }
    s_channel_name(rule, i, name, sizeof name);
    snprintf(decl, sizeof decl, "%s: %s", name, type);
    if (strcmp(type, "webhook") == 0) {
        if ((s = s_action_str(a, "url")) == NULL) {
            s_failf(f, "bad_action", where, "a webhook action needs a \"url\"");
            return -1;
        }
        s_word(decl, sizeof decl, s);
    } else if (strcmp(type, "mqtt") == 0) {
        if (json_object_get(a, "topic")) {
            if ((s = s_action_str(a, "topic")) == NULL) {
                s_failf(f, "bad_action", where, "\"topic\" is a string");
                return -1;
            }
            s_word(decl, sizeof decl, s);
        }
    } else if (strcmp(type, "email") == 0) {
        json_t *to = json_object_get(a, "to"), *e;
        size_t k;
        if (json_is_string(to)) {
            s_word(decl, sizeof decl, json_string_value(to));
        } else if (json_is_array(to) && json_array_size(to) > 0 &&
                   json_array_size(to) <= ALERT_CHANNEL_ARGS_MAX) {
            json_array_foreach(to, k, e) {
                if (!json_is_string(e)) {
                    s_failf(f, "bad_action", where, "\"to\" holds addresses");
                    return -1;
                }
                s_word(decl, sizeof decl, json_string_value(e));
            }
        } else {
            s_failf(f, "bad_action", where, "an email action needs \"to\": "
                                            "an address or a list of them");
            return -1;
        }
    } else if (strcmp(type, "channel") == 0) {
        if ((s = s_action_str(a, "name")) == NULL ||
            (*named = s, s_file_channel(self, s) == NULL)) {
            s_failf(f, "bad_action", where, "no channel '%s' is declared in "
                    "the rules file", s ? s : "");
            return -1;
        }
        return 0;
    } else {
        s_failf(f, "bad_action", where, "unknown action type '%s' (webhook, "
                "mqtt, email, channel)", type);
        return -1;
    }
    if ((*ch = alert_channel_parse(decl, &err)) == NULL) {
        s_failf(f, "bad_action", where, "%s", err.reason);
        return -1;
    }
    return 0;
}

/* Parse rule r with its actions: the rule (caller destroys) and its
 * action channels appended to *ch, counted in *nch (when ch is not
 * NULL). Returns
 * NULL with *f. */
static alert_rule_t *
s_compile(const alert_ruleset_t *self, const struct s_rule *r,
          alert_channel_t ***ch, size_t *nch, struct s_fail *f)
{
    struct alert_rule_error err;
    alert_rule_t *rule = alert_rule_new(r->name, r->cond, &err);
    size_t i;
    json_t *a;

    if (rule && r->tenant && alert_rule_set_tenant(rule, r->tenant) == -1) {
        alert_rule_destroy(&rule);
        s_failf(f, "bad_rule", "condition", "a metric reference has too many "
                "tag filters to add the tenant's");
        return NULL;
    }
    if (rule == NULL) {
        bool cond = strncmp(err.reason, "rule name", 9) != 0;
        s_failf(f, "bad_rule", "", "%s", err.reason);
        if (cond) {
            f->position = (long)err.pos + 1;
            snprintf(f->where, sizeof f->where, "condition:%ld", f->position);
        } else {
            snprintf(f->where, sizeof f->where, "name");
        }
        return NULL;
    }
    json_array_foreach(r->actions, i, a) {
        alert_channel_t *c;
        const char *named;
        char cname[48];
        if (s_action(self, r->name, i, a, &c, &named, f) == -1)
            goto fail;
        if (c)
            s_channel_name(r->name, i, cname, sizeof cname);
        if (alert_rule_add_notify(rule, c ? cname : named) == -1) {
            alert_channel_destroy(&c);
            s_failf(f, "bad_action", "actions", "more than %d channels, or "
                    "one named twice", ALERT_RULE_NOTIFY_MAX);
            goto fail;
        }
        if (c && ch) {
            *ch = xrealloc(*ch, (*nch + 1) * sizeof **ch);
            (*ch)[(*nch)++] = c;
        } else {
            alert_channel_destroy(&c);
        }
    }
    /* Every channel of a "notify" or "escalate" clause must exist. */
    for (i = 0; i < alert_rule_notify_count(rule); i++) {
        const char *cn = alert_rule_notify(rule, i);
        if (strncmp(cn, "api_", 4) && s_file_channel(self, cn) == NULL) {
            s_failf(f, "bad_rule", "condition", "notify: no channel '%s' is "
                    "declared in the rules file", cn);
            goto fail;
        }
    }
    const char *esc = alert_rule_escalate(rule, NULL);
    if (esc && s_file_channel(self, esc) == NULL) {
        s_failf(f, "bad_rule", "condition", "escalate: no channel '%s' is "
                "declared in the rules file", esc);
        goto fail;
    }
    return rule;
fail:
    alert_rule_destroy(&rule);
    return NULL;
}

/* --------------------------------------------------------------------- */
/* Storage */

static int
s_db_put(alert_ruleset_t *self, const struct s_rule *r, const char *old)
{
    sqlite3_stmt *st = NULL;
    char *acts = json_dumps(r->actions, JSON_COMPACT);
    int rc = -1;

    if (sqlite3_exec(self->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    if (old) {
        if (sqlite3_prepare_v2(self->db, "DELETE FROM rules WHERE name = ?", -1,
                               &st, NULL) != SQLITE_OK)
            goto rollback;
        sqlite3_bind_text(st, 1, old, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto rollback;
        sqlite3_finalize(st);
        st = NULL;
    }
    if (sqlite3_prepare_v2(self->db,
                           "INSERT OR REPLACE INTO rules (name, condition, "
                           "actions, enabled, created, updated, tenant) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK)
        goto rollback;
    sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, r->cond, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, acts, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, r->enabled);
    sqlite3_bind_int64(st, 5, r->created);
    sqlite3_bind_int64(st, 6, r->updated);
    sqlite3_bind_text(st, 7, r->tenant, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        goto rollback;
    if (sqlite3_exec(self->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
        rc = 0;
    goto out;
rollback:
    sqlite3_exec(self->db, "ROLLBACK", NULL, NULL, NULL);
out:
    if (rc == -1)
        log_warnx("alert_ruleset: cannot save rule '%s': %s", r->name,
                  sqlite3_errmsg(self->db));
    sqlite3_finalize(st);
    free(acts);
    return rc;
}

static int
s_db_delete(alert_ruleset_t *self, const char *name)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;

    if (sqlite3_prepare_v2(self->db, "DELETE FROM rules WHERE name = ?", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    }
    if (rc == -1)
        log_warnx("alert_ruleset: cannot delete rule '%s': %s", name,
                  sqlite3_errmsg(self->db));
    sqlite3_finalize(st);
    return rc;
}

static int
s_db_load(alert_ruleset_t *self)
{
    sqlite3_stmt *st = NULL;
    int rc;

    rc = sqlite3_exec(self->db, s_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_exec(self->db, s_migrate_tenant, NULL, NULL, NULL);
        rc = sqlite3_prepare_v2(self->db,
                                "SELECT name, condition, actions, enabled,"
                                " created, updated, tenant FROM rules"
                                " ORDER BY created, name",
                                -1, &st, NULL);
    }
    if (rc != SQLITE_OK) {
        log_warnx("alert_ruleset: cannot read the rules table: %s",
                  sqlite3_errmsg(self->db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *acts = (const char *)sqlite3_column_text(st, 2);
        struct s_rule *r = xcalloc(1, sizeof *r);
        r->name = xstrdup((const char *)sqlite3_column_text(st, 0));
        r->cond = xstrdup((const char *)sqlite3_column_text(st, 1));
        r->actions = json_loads(acts ? acts : "[]", 0, NULL);
        if (!json_is_array(r->actions)) {
            json_decref(r->actions);
            r->actions = json_array();
        }
        r->enabled = sqlite3_column_int(st, 3) != 0;
        r->api = true;
        r->created = sqlite3_column_int64(st, 4);
        r->updated = sqlite3_column_int64(st, 5);
        r->tenant = xstrdup((const char *)sqlite3_column_text(st, 6));
        s_append(self, r);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* --------------------------------------------------------------------- */
/* Life cycle and build */

alert_ruleset_t *
alert_ruleset_new(struct sqlite3 *db)
{
    alert_ruleset_t *self = xcalloc(1, sizeof *self);

    self->db = db;
    if (db && s_db_load(self) == -1) {
        alert_ruleset_destroy(&self);
        return NULL;
    }
    return self;
}

static void
s_clear_file(alert_ruleset_t *self)
{
    size_t k = 0;

    for (size_t i = 0; i < self->n; i++) {
        if (self->v[i]->api)
            self->v[k++] = self->v[i];
        else
            s_rule_free(&self->v[i]);
    }
    self->n = k;
    for (size_t i = 0; i < self->nfch; i++)
        alert_channel_destroy(&self->fch[i]);
    free(self->fch);
    self->fch = NULL;
    self->nfch = 0;
}

void
alert_ruleset_destroy(alert_ruleset_t **self_p)
{
    alert_ruleset_t *self;

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    s_clear_file(self);
    for (size_t i = 0; i < self->n; i++)
        s_rule_free(&self->v[i]);
    free(self->v);
    free(self);
    *self_p = NULL;
}

void
alert_ruleset_set_file(alert_ruleset_t *self, const struct alert_file *f)
{
    struct s_rule **v = xcalloc(f->nrules + self->n + 1, sizeof *v);
    size_t n = 0;

    s_clear_file(self);
    for (size_t i = 0; i < f->nrules; i++) {
        struct s_rule *r = xcalloc(1, sizeof *r);
        r->name = xstrdup(alert_rule_name(f->rules[i]));
        r->cond = xstrdup(alert_rule_text(f->rules[i]));
        r->enabled = true;
        v[n++] = r;
    }
    if (self->n)
        memcpy(v + n, self->v, self->n * sizeof *v);
    free(self->v);
    self->v = v;
    self->n += n;
    self->fch = xcalloc(f->nchannels + 1, sizeof *self->fch);
    for (size_t i = 0; i < f->nchannels; i++)
        self->fch[self->nfch++] = alert_channel_dup(f->channels[i]);
}

/* An API rule that a file rule of the same name hides. */
static bool
s_shadowed(const alert_ruleset_t *self, const struct s_rule *r)
{
    return r->api && s_find(self, r->name, false) != NULL;
}

size_t
alert_ruleset_build(alert_ruleset_t *self, alert_rule_t ***rules,
                    alert_channel_t ***channels, size_t *nch)
{
    size_t n = 0;
    struct s_fail f;

    *rules = xcalloc(self->n + 1, sizeof **rules);
    *channels = xcalloc(self->nfch + 1, sizeof **channels);
    for (*nch = 0; *nch < self->nfch; (*nch)++)
        (*channels)[*nch] = alert_channel_dup(self->fch[*nch]);
    for (size_t i = 0; i < self->n; i++) {
        const struct s_rule *r = self->v[i];
        if (!r->enabled)
            continue;
        if (s_shadowed(self, r)) {
            log_warnx("alert_ruleset: API rule '%s' is shadowed by the rules "
                      "file's rule of that name", r->name);
            continue;
        }
        memset(&f, 0, sizeof f);
        alert_rule_t *rule = s_compile(self, r, channels, nch, &f);
        if (rule == NULL) {
            /* A stored rule may name a channel a reloaded file dropped. */
            log_warnx("alert_ruleset: rule '%s' skipped: %s: %s", r->name,
                      f.where, f.reason);
            continue;
        }
        (*rules)[n++] = rule;
    }
    return n;
}

size_t
alert_ruleset_size(const alert_ruleset_t *self)
{
    return self->n;
}

/* --------------------------------------------------------------------- */
/* Queries */

static json_t *
s_time(int64_t ts)
{
    char buf[40];
    return json_string(clock_format(ts, buf, sizeof buf));
}

static json_t *
s_rule_json(const alert_ruleset_t *self, const struct s_rule *r)
{
    struct alert_rule_error err;
    alert_rule_t *p = alert_rule_new(r->name, r->cond, &err);
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:s}", "id", r->name, "name",
                          r->name, "condition", r->cond, "enabled",
                          r->enabled, "source", r->api ? "api" : "file");

    if (r->api) {
        json_object_set(o, "actions", r->actions);
        json_object_set_new(o, "tenant", json_string(r->tenant));
        json_object_set_new(o, "created", s_time(r->created));
        json_object_set_new(o, "updated", s_time(r->updated));
        if (s_shadowed(self, r))
            json_object_set_new(o, "shadowed", json_true());
    }
    if (p) {
        char *canon = alert_rule_format(p);
        json_t *sev = json_array();
        for (size_t k = 0; k < alert_rule_severity_steps(p); k++) {
            int64_t after = alert_rule_severity_after(p, k);
            json_array_append_new(
                sev, json_pack("{s:s, s:f}", "severity",
                               alert_rule_severity(p, after), "after_seconds",
                               (double)after / CLOCK_NS_PER_S));
        }
        json_object_set_new(o, "canonical", json_string(canon));
        json_object_set_new(o, "for_seconds",
                            json_real((double)alert_rule_for(p) /
                                      CLOCK_NS_PER_S));
        json_object_set_new(o, "has_clear",
                            json_boolean(alert_rule_has_clear(p)));
        json_object_set_new(o, "severity", sev);
        free(canon);
        alert_rule_destroy(&p);
    }
    return o;
}

static json_t *
s_fail_body(const struct s_fail *f)
{
    json_t *b = rpc_error(f->code, f->reason, f->where);
    if (f->position > 0)
        json_object_set_new(json_object_get(b, "error"), "position",
                            json_integer(f->position));
    return b;
}

/* Check the fields of a POST or PUT body into r (which holds the current
 * values for an update). Returns 0 or -1 with *f. */
static int
s_fields(const json_t *in, struct s_rule *r, struct s_fail *f)
{
    const char *key;
    json_t *v;

    if (!json_is_object(in)) {
        s_failf(f, "invalid_body", "rule", "the body is a JSON object with "
                "name, condition, actions, enabled");
        return -1;
    }
    json_object_foreach((json_t *)in, key, v) {
        if (strcmp(key, "name") == 0 || strcmp(key, "condition") == 0) {
            if (!json_is_string(v)) {
                s_failf(f, "invalid_body", key, "%s is a string", key);
                return -1;
            }
            char **dst = key[0] == 'n' ? &r->name : &r->cond;
            free(*dst);
            *dst = xstrdup(json_string_value(v));
        } else if (strcmp(key, "actions") == 0) {
            if (!json_is_array(v)) {
                s_failf(f, "invalid_body", key, "actions is an array");
                return -1;
            }
            json_decref(r->actions);
            r->actions = json_deep_copy(v);
        } else if (strcmp(key, "enabled") == 0) {
            if (!json_is_boolean(v)) {
                s_failf(f, "invalid_body", key, "enabled is true or false");
                return -1;
            }
            r->enabled = json_is_true(v);
        } else if (strcmp(key, "id") && strcmp(key, "source") &&
                   strcmp(key, "canonical") && strcmp(key, "created") &&
                   strcmp(key, "updated")) {
            /* Read-only fields of a GET may come back in a PUT. */
            s_failf(f, "invalid_body", key, "unknown field '%s' (name, "
                    "condition, actions, enabled)", key);
            return -1;
        }
    }
    if (r->name == NULL || r->cond == NULL) {
        s_failf(f, "invalid_body", r->name ? "condition" : "name",
                "name and condition are required");
        return -1;
    }
    if (strchr(r->name, '/')) {
        s_failf(f, "bad_rule", "name", "a rule name made through the API "
                "has no '/' (it is part of the URL)");
        return -1;
    }
    return 0;
}

/* Validate r as a whole (name, condition, actions). */
static int
s_validate(const alert_ruleset_t *self, const struct s_rule *r,
           struct s_fail *f)
{
    alert_rule_t *rule = s_compile(self, r, NULL, NULL, f);

    if (rule == NULL)
        return -1;
    alert_rule_destroy(&rule);
    return 0;
}

static int
s_create(alert_ruleset_t *self, const json_t *in, const char *tenant,
         int64_t now, json_t **body, bool *changed)
{
    struct s_rule *r = xcalloc(1, sizeof *r);
    struct s_fail f = {0};

    r->api = r->enabled = true;
    r->tenant = xstrdup(tenant ? tenant : SERIES_TENANT_DEFAULT);
    r->actions = json_array();
    r->created = r->updated = now;
    if (s_fields(in, r, &f) == -1 || s_validate(self, r, &f) == -1) {
        s_rule_free(&r);
        *body = s_fail_body(&f);
        return 400;
    }
    if (s_find(self, r->name, true) || s_find(self, r->name, false)) {
        *body = rpc_error("conflict", s_find(self, r->name, false)
                                          ? "a rule of the rules file has "
                                            "this name"
                                          : "a rule with this name exists "
                                            "(PUT /api/rules/{id} changes it)",
                          "name");
        s_rule_free(&r);
        return 409;
    }
    if (self->n >= S_RULES_MAX) {
        s_rule_free(&r);
        *body = rpc_error("too_many_rules", "the rule set is full", "name");
        return 409;
    }
    if (s_db_put(self, r, NULL) == -1) {
        s_rule_free(&r);
        *body = rpc_error("store_failed", "cannot save the rule", "db");
        return 500;
    }
    s_append(self, r);
    log_info("rule created: name=%s condition=%s", r->name, r->cond);
    *changed = true;
    *body = s_rule_json(self, r);
    return 201;
}

static int
s_update(alert_ruleset_t *self, struct s_rule *cur, const json_t *in,
         int64_t now, json_t **body, bool *changed)
{
    struct s_rule *r = xcalloc(1, sizeof *r);
    struct s_fail f = {0};

    r->api = true;
    r->tenant = xstrdup(cur->tenant);
    r->name = xstrdup(cur->name);
    r->cond = xstrdup(cur->cond);
    r->actions = json_deep_copy(cur->actions);
    r->enabled = cur->enabled;
    r->created = cur->created;
    r->updated = now;
    if (s_fields(in, r, &f) == -1 || s_validate(self, r, &f) == -1) {
        s_rule_free(&r);
        *body = s_fail_body(&f);
        return 400;
    }
    if (strcmp(r->name, cur->name) &&
        (s_find(self, r->name, true) || s_find(self, r->name, false))) {
        s_rule_free(&r);
        *body = rpc_error("conflict", "a rule with the new name exists",
                          "name");
        return 409;
    }
    if (s_db_put(self, r, strcmp(r->name, cur->name) ? cur->name : NULL) ==
        -1) {
        s_rule_free(&r);
        *body = rpc_error("store_failed", "cannot save the rule", "db");
        return 500;
    }
    /* Keep the creation order: replace in place. */
    for (size_t i = 0; i < self->n; i++)
        if (self->v[i] == cur)
            self->v[i] = r;
    log_info("rule updated: name=%s%s%s enabled=%s condition=%s", r->name,
             strcmp(r->name, cur->name) ? " was=" : "",
             strcmp(r->name, cur->name) ? cur->name : "",
             r->enabled ? "yes" : "no", r->cond);
    s_rule_free(&cur);
    *changed = true;
    *body = s_rule_json(self, r);
    return 200;
}

/* May a query of tenant (NULL: the operator's own tools) see rule r? A
 * tenant sees its API rules; the rules file's rules are the operator's
 * and shown to the default tenant. */
static bool
s_visible(const struct s_rule *r, const char *tenant)
{
    if (tenant == NULL)
        return true;
    return strcmp(r->api ? r->tenant : SERIES_TENANT_DEFAULT, tenant) == 0;
}

int
alert_ruleset_answer(alert_ruleset_t *self, const char *op,
                     const json_t *req, int64_t now, json_t **body,
                     bool *changed)
{
    const char *name = json_string_value(json_object_get(req, "name"));
    const char *tenant = json_string_value(json_object_get(req, "tenant"));
    const json_t *in = json_object_get(req, "rule");
    struct s_rule *r;

    *changed = false;
    if (strcmp(op, "rules") == 0) {
        json_t *arr = json_array();
        for (size_t i = 0; i < self->n; i++)
            if (s_visible(self->v[i], tenant))
                json_array_append_new(arr, s_rule_json(self, self->v[i]));
        *body = json_pack("{s:o}", "rules", arr);
        return 200;
    }
    if (strcmp(op, "rule_check") == 0) {
        struct s_rule tmp = {0};
        struct s_fail f = {0};
        tmp.name = (char *)name;
        tmp.cond = (char *)json_string_value(json_object_get(req, "condition"));
        tmp.actions = json_object_get(req, "actions");
        if (tmp.name == NULL || tmp.cond == NULL) {
            *body = rpc_error("bad_request", "name and condition are required "
                              "strings", name ? "condition" : "name");
            return 400;
        }
        if (s_validate(self, &tmp, &f) == -1) {
            *body = s_fail_body(&f);
            return 400;
        }
        *body = s_rule_json(self, &tmp);
        json_object_del(*body, "source");
        json_object_del(*body, "enabled");
        return 200;
    }
    if (strcmp(op, "rule") && strcmp(op, "rule_create") &&
        strcmp(op, "rule_update") && strcmp(op, "rule_delete"))
        return 0;
    if (strcmp(op, "rule") && self->db == NULL) {
        *body = rpc_error("no_store", "alertd runs without a database (--db); "
                          "rules come from the rules file only", op);
        return 409;
    }
    if (strcmp(op, "rule_create") == 0)
        return s_create(self, in, tenant, now, body, changed);
    if (name == NULL) {
        *body = rpc_error("bad_request", "name is required", "name");
        return 400;
    }
    r = s_find(self, name, true);
    if ((r && !s_visible(r, tenant)) ||
        (!r && s_find(self, name, false) &&
         !s_visible(s_find(self, name, false), tenant))) {
        *body = rpc_error("not_found", "no such rule", "name");
        return 404;
    }
    if (r == NULL) {
        if (s_find(self, name, false) && strcmp(op, "rule") == 0) {
            *body = s_rule_json(self, s_find(self, name, false));
            return 200;
        }
        if (s_find(self, name, false)) {
            *body = rpc_error("read_only", "this rule comes from the rules "
                              "file; edit the file and reload", "name");
            return 409;
        }
        *body = rpc_error("not_found", "no such rule", "name");
        return 404;
    }
    if (strcmp(op, "rule") == 0) {
        *body = s_rule_json(self, r);
        return 200;
    }
    if (strcmp(op, "rule_update") == 0)
        return s_update(self, r, in, now, body, changed);
    if (s_db_delete(self, r->name) == -1) {
        *body = rpc_error("store_failed", "cannot delete the rule", "db");
        return 500;
    }
    log_info("rule deleted: name=%s", r->name);
    *body = json_pack("{s:s, s:b}", "id", r->name, "deleted", 1);
    s_remove(self, r);
    *changed = true;
    return 200;
}

/* --------------------------------------------------------------------- */
/* Selftest */

static int
s_test_ask(alert_ruleset_t *rs, const char *json, json_t **body,
           bool *changed)
{
    json_t *req = json_loads(json, 0, NULL);
    int st;

    assert(req);
    st = alert_ruleset_answer(rs, json_string_value(json_object_get(req, "op")),
                              req, 1000 * CLOCK_NS_PER_S, body, changed);
    json_decref(req);
    return st;
}

void
alert_ruleset_test(bool verbose)
{
    char dir[] = "/tmp/alert_ruleset_test.XXXXXX", path[128], rpath[128];
    struct sqlite3 *db;
    alert_ruleset_t *rs;
    json_t *body;
    bool changed;
    alert_rule_t **rules;
    alert_channel_t **ch;
    size_t n, nch;
    struct alert_file f;
    FILE *fp;

    assert(mkdtemp(dir));
    if (!verbose)
        log_set_level(LOG_LVL_WARNING);
    snprintf(path, sizeof path, "%s/alertd.db", dir);
    snprintf(rpath, sizeof rpath, "%s/alertd.rules", dir);
    fp = fopen(rpath, "w");
    fputs("channel ops: webhook http://127.0.0.1:1/hook\n"
          "hot: temperature > 30 notify ops\n", fp);
    fclose(fp);
    assert(alert_file_load(rpath, &f) == 0);
    assert(sqlite3_open(path, &db) == SQLITE_OK);
    rs = alert_ruleset_new(db);
    assert(rs);
    alert_ruleset_set_file(rs, &f);
    alert_file_free(&f);

    /* The seed body, verbatim: 201, and its webhook is a channel. */
    assert(s_test_ask(rs, "{\"op\":\"rule_create\",\"rule\":{\"name\":"
                          "\"High Temperature Alert\",\"condition\":"
                          "\"temperature > 30\",\"actions\":[{\"type\":"
                          "\"webhook\",\"url\":\"http://127.0.0.1:9/x\"}]}}",
                      &body, &changed) == 201 && changed);
    TEST_STREQ(json_string_value(json_object_get(body, "canonical")),
               "temperature > 30 severity warning");
    json_decref(body);
    n = alert_ruleset_build(rs, &rules, &ch, &nch);
    assert(n == 2 && nch == 2);
    TEST_STREQ(alert_rule_name(rules[1]), "High Temperature Alert");
    assert(alert_rule_notify_count(rules[1]) == 1);
    TEST_STREQ(alert_rule_notify(rules[1], 0), alert_channel_name(ch[1]));
    TEST_STREQ(alert_channel_type(ch[1]), "webhook");
    TEST_STREQ(alert_channel_arg(ch[1], 0), "http://127.0.0.1:9/x");
    /* A rule made without a tenant is the default tenant's: its series
     * only; the file's rule sees every tenant. */
    assert(alert_rule_matches(rules[1], "temperature{device=s1}"));
    assert(!alert_rule_matches(rules[1], "temperature{tenant=acme}"));
    assert(alert_rule_matches(rules[0], "temperature{tenant=acme}"));
    for (size_t i = 0; i < n; i++)
        alert_rule_destroy(&rules[i]);
    for (size_t i = 0; i < nch; i++)
        alert_channel_destroy(&ch[i]);
    free(rules);
    free(ch);

    /* Tenants: acme's rule is acme's alone, to see and to evaluate. */
    assert(s_test_ask(rs, "{\"op\":\"rule_create\",\"tenant\":\"acme\","
                          "\"rule\":{\"name\":\"acme hot\",\"condition\":"
                          "\"temperature > 40\"}}", &body, &changed) == 201);
    TEST_STREQ(json_string_value(json_object_get(body, "tenant")), "acme");
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"rules\",\"tenant\":\"globex\"}", &body,
                      &changed) == 200);
    assert(json_array_size(json_object_get(body, "rules")) == 0);
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"rules\",\"tenant\":\"acme\"}", &body,
                      &changed) == 200);
    assert(json_array_size(json_object_get(body, "rules")) == 1);
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"rules\",\"tenant\":\"default\"}", &body,
                      &changed) == 200);
    assert(json_array_size(json_object_get(body, "rules")) == 2);
    json_decref(body);
    for (int i = 0; i < 3; i++) {
        static const char *ops[] = {"rule", "rule_delete", "rule_update"};
        char q[160];
        snprintf(q, sizeof q, "{\"op\":\"%s\",\"tenant\":\"globex\","
                 "\"name\":\"acme hot\",\"rule\":{\"enabled\":false}}", ops[i]);
        assert(s_test_ask(rs, q, &body, &changed) == 404 && !changed);
        json_decref(body);
    }
    n = alert_ruleset_build(rs, &rules, &ch, &nch);
    assert(n == 3);
    TEST_STREQ(alert_rule_name(rules[2]), "acme hot");
    assert(alert_rule_matches(rules[2], "temperature{tenant=acme}"));
    assert(!alert_rule_matches(rules[2], "temperature"));
    for (size_t i = 0; i < n; i++)
        alert_rule_destroy(&rules[i]);
    for (size_t i = 0; i < nch; i++)
        alert_channel_destroy(&ch[i]);
    free(rules);
    free(ch);
    assert(s_test_ask(rs, "{\"op\":\"rule_delete\",\"tenant\":\"acme\","
                          "\"name\":\"acme hot\"}", &body, &changed) == 200);
    json_decref(body);

    /* A bad condition: 400 with the parser's position and reason. */
    assert(s_test_ask(rs, "{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\","
                          "\"condition\":\"temperature >> 30\"}}",
                      &body, &changed) == 400 && !changed);
    json_t *e = json_object_get(body, "error");
    TEST_STREQ(json_string_value(json_object_get(e, "code")), "bad_rule");
    TEST_STREQ(json_string_value(json_object_get(e, "where")), "condition:14");
    assert(json_integer_value(json_object_get(e, "position")) == 14);
    json_decref(body);
    /* Bad actions, unknown fields, exec, conflicts, read-only file rules. */
    const char *bad[][2] = {
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"condition\":\"x>1"
         "\",\"actions\":[{\"type\":\"webhook\",\"url\":\"ftp://h\"}]}}",
         "400 actions[0]"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"condition\":\"x>1"
         "\",\"actions\":[{\"type\":\"exec\"}]}}", "400 actions[0]"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"condition\":\"x>1"
         "\",\"actions\":[{\"type\":\"channel\",\"name\":\"nope\"}]}}",
         "400 actions[0]"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"condition\":\"x>1"
         " notify nope\"}}", "400 condition"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"condition\":1}}",
         "400 condition"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"b\",\"cond\":\"x\"}}",
         "400 cond"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"a/b\",\"condition\":"
         "\"x>1\"}}", "400 name"},
        {"{\"op\":\"rule_create\",\"rule\":{\"name\":\"hot\",\"condition\":"
         "\"x>1\"}}", "409 name"},
        {"{\"op\":\"rule_update\",\"name\":\"hot\",\"rule\":{}}", "409 name"},
        {"{\"op\":\"rule_delete\",\"name\":\"nope\"}", "404 name"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char got[80];
        int st = s_test_ask(rs, bad[i][0], &body, &changed);
        e = json_object_get(body, "error");
        snprintf(got, sizeof got, "%d %s", st,
                 json_string_value(json_object_get(e, "where")));
        if (verbose)
            printf("  %s: %s\n", got,
                   json_string_value(json_object_get(e, "message")));
        TEST_STREQ(got, bad[i][1]);
        assert(!changed);
        json_decref(body);
    }

    /* Update: disable, then rename; the change is stored. */
    assert(s_test_ask(rs, "{\"op\":\"rule_update\",\"name\":\"High Temperature"
                          " Alert\",\"rule\":{\"enabled\":false}}",
                      &body, &changed) == 200 && changed);
    json_decref(body);
    n = alert_ruleset_build(rs, &rules, &ch, &nch);
    assert(n == 1);
    alert_rule_destroy(&rules[0]);
    for (size_t i = 0; i < nch; i++)
        alert_channel_destroy(&ch[i]);
    free(rules);
    free(ch);
    assert(s_test_ask(rs, "{\"op\":\"rule_update\",\"name\":\"High Temperature"
                          " Alert\",\"rule\":{\"name\":\"warm\",\"condition\":"
                          "\"temperature > 25 for 1m\",\"enabled\":true}}",
                      &body, &changed) == 200);
    json_decref(body);
    alert_ruleset_destroy(&rs);

    /* After a restart the stored rule is back, with its actions. */
    rs = alert_ruleset_new(db);
    assert(alert_ruleset_size(rs) == 1);
    assert(s_test_ask(rs, "{\"op\":\"rule\",\"name\":\"warm\"}", &body,
                      &changed) == 200);
    TEST_STREQ(json_string_value(json_object_get(body, "condition")),
               "temperature > 25 for 1m");
    assert(json_array_size(json_object_get(body, "actions")) == 1);
    assert(json_is_true(json_object_get(body, "enabled")));
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"rule_delete\",\"name\":\"warm\"}", &body,
                      &changed) == 200 && changed);
    json_decref(body);
    alert_ruleset_destroy(&rs);
    rs = alert_ruleset_new(db);
    assert(alert_ruleset_size(rs) == 0);
    alert_ruleset_destroy(&rs);
    alert_ruleset_destroy(&rs);
    sqlite3_close(db);

    /* Without a database the API is refused, the check still answers. */
    rs = alert_ruleset_new(NULL);
    assert(s_test_ask(rs, "{\"op\":\"rule_create\",\"rule\":{}}", &body,
                      &changed) == 409);
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"rule_check\",\"name\":\"a\","
                          "\"condition\":\"x > 1\"}", &body, &changed) == 200);
    json_decref(body);
    assert(s_test_ask(rs, "{\"op\":\"stats\"}", &body, &changed) == 0);
    alert_ruleset_destroy(&rs);
    unlink(path);
    unlink(rpath);
    zsys_dir_delete("%s", dir);
    log_set_level(LOG_LVL_INFO);
    TEST_OK("alert_ruleset");
}
