/*
 * api_rules: rules CRUD relayed to alertd (see api_rules.h).
 */
#include "apid/api_rules.h"
#include "apid/api_devices.h"
#include "apid/dev_creds.h"
#include "apid/dev_state.h"
#include "common/clock.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <sqlite3.h>
#include <string.h>

#define RULES_PATH "/api/rules"
#define RULES_PREFIX "/api/rules/"

/* What a path under /api/rules/ asks for. */
enum s_verb {
    V_RULE,    /* /api/rules/{id} */
    V_ENABLE,  /* /api/rules/{id}/enable */
    V_DISABLE  /* /api/rules/{id}/disable */
};

/* Split a path under RULES_PREFIX ({id}, {id}/enable, {id}/disable):
 * the URL-decoded id (caller frees) and the verb. NULL when the path is
 * not of that shape. */
static char *
s_parse(const char *path, enum s_verb *verb)
{
    const char *p = path + strlen(RULES_PREFIX);
    size_t n = strcspn(p, "/");
    char *id;

    if (strncmp(path, RULES_PREFIX, strlen(RULES_PREFIX)) || n == 0)
        return NULL;
    if (p[n] == '\0')
        *verb = V_RULE;
    else if (!strcmp(p + n, "/enable"))
        *verb = V_ENABLE;
    else if (!strcmp(p + n, "/disable"))
        *verb = V_DISABLE;
    else
        return NULL;
    id = xstrndup(p, n);
    if (strutil_urldecode(id, false) == -1 || *id == '\0' ||
        strchr(id, '/')) {
        free(id);
        return NULL;
    }
    return id;
}

/* True when the method is one of "GET POST ..." (space-separated);
 * else replies 405 with Allow. */
static bool
s_method(http_req_t *req, const char *allow)
{
    const char *m = http_req_method(req);
    size_t n = strlen(m);

    for (const char *a = allow; *a; a += strcspn(a, " "), a += *a == ' ')
        if (strncmp(a, m, n) == 0 && (a[n] == ' ' || a[n] == '\0'))
            return true;
    char hdr[64], msg[80];
    snprintf(hdr, sizeof hdr, "%s", allow);
    for (char *c = hdr; *c; c++)
        if (*c == ' ')
            *c = ',';
    snprintf(msg, sizeof msg, "use %s", allow);
    http_req_add_header(req, "Allow", hdr);
    http_req_reply_error(req, 405, "method_not_allowed", msg,
                         http_req_path(req));
    return false;
}

/* The request body as a JSON object, or NULL after replying 400. */
static json_t *
s_body(http_req_t *req)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    json_error_t jerr;
    json_t *in = len ? json_loadb(body, len, 0, &jerr) : NULL;
    char where[48];

    if (json_is_object(in))
        return in;
    if (in == NULL && len) {
        snprintf(where, sizeof where, "body:%d", jerr.position);
        http_req_reply_error(req, 400, "invalid_json", jerr.text, where);
    } else {
        http_req_reply_error(req, 400, "invalid_body",
                             "the body is a JSON object: {\"name\", "
                             "\"condition\", \"actions\", \"enabled\"}",
                             "body");
    }
    json_decref(in);
    return NULL;
}

static void
s_route_rule(apid_t *apid, http_req_t *req, const char *id, enum s_verb verb)
{
    const char *m = http_req_method(req);
    json_t *in;

    if (verb != V_RULE) {
        if (s_method(req, "POST"))
            apid_relay(apid, req, APID_BK_ALERTD,
                       json_pack("{s:s, s:s, s:{s:b}}", "op", "rule_update",
                                 "name", id, "rule", "enabled",
                                 verb == V_ENABLE));
        return;
    }
    if (!s_method(req, "GET PUT PATCH DELETE"))
        return;
    if (!strcmp(m, "GET") || !strcmp(m, "DELETE")) {
        apid_relay(apid, req, APID_BK_ALERTD,
                   json_pack("{s:s, s:s}", "op",
                             m[0] == 'G' ? "rule" : "rule_delete", "name", id));
        return;
    }
    if ((in = s_body(req)) != NULL)
        apid_relay(apid, req, APID_BK_ALERTD,
                   json_pack("{s:s, s:s, s:o}", "op", "rule_update", "name",
                             id, "rule", in));
}

int
api_rules_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req);
    enum s_verb verb;
    char *id;
    json_t *in;

    if (!strcmp(path, RULES_PATH)) {
        if (!s_method(req, "GET POST"))
            return 1;
        if (!strcmp(http_req_method(req), "GET"))
            apid_relay(apid, req, APID_BK_ALERTD,
                       json_pack("{s:s}", "op", "rules"));
        else if ((in = s_body(req)) != NULL)
            apid_relay(apid, req, APID_BK_ALERTD,
                       json_pack("{s:s, s:o}", "op", "rule_create", "rule",
                                 in));
        return 1;
    }
    if (strncmp(path, RULES_PREFIX, strlen(RULES_PREFIX)))
        return 0;
    if ((id = s_parse(path, &verb)) == NULL) {
        http_req_reply_error(req, 404, "not_found",
                             "use /api/rules/{id}, /api/rules/{id}/enable or "
                             "/api/rules/{id}/disable",
                             path);
        return 1;
    }
    s_route_rule(apid, req, id, verb);
    free(id);
    return 1;
}

/* --- device metadata for alertd ----------------------------------------- */

/* Time a lane has to answer a push. */
#define S_ANSWER_NS (5LL * CLOCK_NS_PER_S)

struct s_lane {
    struct api_rules *rs; /* back pointer for the reader */
    zsock_t *sock;        /* DEALER to the lane's query socket */
    uint64_t waiting;     /* id of the push in flight, 0 = answered */
    bool ok;              /* answered 200 in this round */
    char gen[24];         /* alertd generation seen last */
};

struct api_rules {
    apid_t *apid;         /* the server */
    struct s_lane *lanes; /* one per alertd lane */
    unsigned n;           /* how many */
    zhashx_t *acked;      /* "id[@tenant]" -> "tenant/seq" every lane holds */
    zhashx_t *target;     /* the same for the round in flight */
    bool full;            /* the next round pushes everything */
    bool need_full;       /* a lane restarted during this round */
    bool busy;            /* a round is in flight */
    int64_t deadline;     /* monotonic ns when it gives up */
    uint64_t next_id;     /* request ids */
    int timer;            /* zloop timer id */
};

/* The metadata of a device to push, or NULL when it is decommissioned
 * or gone (pushed as removed). Caller decrefs. */
static json_t *
s_metadata(dev_store_t *store, const char *tenant, const char *id)
{
    json_t *st = dev_store_get(store, tenant, id), *m = NULL;
    const char *status = json_string_value(json_object_get(st, "status"));

    if (st && (status == NULL || strcmp(status, "decommissioned")))
        m = json_incref(json_object_get(st, "metadata"));
    json_decref(st);
    return json_is_object(m) ? m : (json_decref(m), NULL);
}

/* Build this round's push from the registry: target gets every device's
 * "tenant/seq", the request the ones that differ from acked. */
static json_t *
s_changes(struct api_rules *rs, dev_store_t *store)
{
    sqlite3 *db = dev_store_db(store);
    sqlite3_stmt *st = NULL;
    json_t *devs = json_array(), *gone = json_array();

    zhashx_purge(rs->target);
    if (sqlite3_prepare_v2(db, "SELECT tenant, id, seq FROM devices", -1, &st,
                           NULL) != SQLITE_OK) {
        log_warnx("api_rules: cannot read the device registry: %s",
                  sqlite3_errmsg(db));
    } else {
        while (sqlite3_step(st) == SQLITE_ROW) {
            const char *tenant = (const char *)sqlite3_column_text(st, 0);
            const char *dev = (const char *)sqlite3_column_text(st, 1);
            char id[2 * DEV_NAME_MAX + 2];
            /* alertd knows a device of a tenant as "id@tenant". */
            dev_creds_user(tenant, dev, id, sizeof id);
            char *v = xasprintf("%s/%lld", tenant,
                                (long long)sqlite3_column_int64(st, 2));
            const char *was = zhashx_lookup(rs->acked, id);
            if (rs->full || was == NULL || strcmp(was, v)) {
                json_t *m = s_metadata(store, tenant, dev);
                if (m)
                    json_array_append_new(devs, json_pack("{s:s, s:o}", "id",
                                                          id, "metadata", m));
                else if (was || rs->full)
                    json_array_append_new(gone, json_string(id));
            }
            zhashx_update(rs->target, id, v);
        }
    }
    sqlite3_finalize(st);
    for (const char *v = zhashx_first(rs->acked); v;
         v = zhashx_next(rs->acked))
        if (!zhashx_lookup(rs->target, zhashx_cursor(rs->acked)))
            json_array_append_new(
                gone, json_string(zhashx_cursor(rs->acked)));
    return json_pack("{s:s, s:o, s:o, s:b}", "op", "devices", "devices", devs,
                     "removed", gone, "full", rs->full);
}

/* Every lane answered, or the round timed out: commit or retry. */
static void
s_round_end(struct api_rules *rs, bool timed_out)
{
    bool all = !timed_out;

    for (unsigned i = 0; i < rs->n; i++) {
        all = all && rs->lanes[i].ok;
        rs->lanes[i].waiting = 0;
    }
    if (all) {
        zhashx_t *t = rs->acked;
        rs->acked = rs->target;
        rs->target = t;
        rs->full = rs->need_full;
    }
    rs->busy = false;
}

static int
s_on_answer(zloop_t *loop, zsock_t *sock, void *arg)
{
    struct s_lane *l = arg;
    struct api_rules *rs = l->rs;
    uint64_t id;
    int status;
    json_t *body = NULL;
    const char *gen;

    if (rpc_reply_recv(zsock_resolve(sock), &id, &status, &body) == -1)
        return 0;
    if (rs->busy && id == l->waiting) {
        l->waiting = 0;
        l->ok = status == 200;
        gen = json_string_value(json_object_get(body, "generation"));
        if (l->ok && gen) {
            if (l->gen[0] && strcmp(l->gen, gen))
                rs->need_full = true; /* it restarted: push all again */
            snprintf(l->gen, sizeof l->gen, "%s", gen);
        }
        bool done = true;
        for (unsigned i = 0; i < rs->n; i++)
            done = done && rs->lanes[i].waiting == 0;
        if (done)
            s_round_end(rs, false);
    }
    json_decref(body);
    return 0;
}

static int
s_on_sync(zloop_t *loop, int timer_id, void *arg)
{
    struct api_rules *rs = arg;
    dev_store_t *store = api_devices_store(rs->apid);
    json_t *req;

    if (rs->busy && clock_mono_ns() < rs->deadline)
        return 0;
    if (rs->busy)
        s_round_end(rs, true);
    if (store == NULL)
        return 0;
    req = s_changes(rs, store);
    rs->need_full = false;
    rs->busy = true;
    rs->deadline = clock_mono_ns() + S_ANSWER_NS;
    for (unsigned i = 0; i < rs->n; i++) {
        struct s_lane *l = &rs->lanes[i];
        l->ok = false;
        l->waiting = ++rs->next_id;
        /* A lane that is not connected refuses at once (ZMQ_IMMEDIATE):
         * the round fails and the next one tries again. */
        if (rpc_request_send(zsock_resolve(l->sock), l->waiting, req) == -1)
            l->waiting = 0;
    }
    json_decref(req);
    bool done = true;
    for (unsigned i = 0; i < rs->n; i++)
        done = done && rs->lanes[i].waiting == 0;
    if (done)
        s_round_end(rs, false);
    return 0;
}

void *
api_rules_create(apid_t *apid)
{
    const struct apid_conf *c = apid_config(apid);
    struct api_rules *rs = xcalloc(1, sizeof *rs);
    char t[EP_MAX], ep[EP_MAX];
    const char *tmpl = c->alertd;

    if (tmpl == NULL || *tmpl == '\0')
        tmpl = ep_default(t, sizeof t, c->rundir, "alertd", "query");
    rs->apid = apid;
    rs->n = (unsigned)c->lanes;
    rs->lanes = xcalloc(rs->n, sizeof *rs->lanes);
    rs->acked = zhashx_new();
    rs->target = zhashx_new();
    zhashx_set_destructor(rs->acked, (zhashx_destructor_fn *)zstr_free);
    zhashx_set_destructor(rs->target, (zhashx_destructor_fn *)zstr_free);
    rs->full = true;
    for (unsigned i = 0; i < rs->n; i++) {
        struct s_lane *l = &rs->lanes[i];
        l->rs = rs;
        l->sock = zsock_new(ZMQ_DEALER);
        zsock_set_linger(l->sock, 0);
        zsock_set_immediate(l->sock, 1);
        if (ep_expand(ep, sizeof ep, tmpl, i) == NULL ||
            ep_connect(l->sock, ep) == -1) {
            log_warnx("api_rules: cannot connect alertd lane %u (%s)", i, tmpl);
            api_rules_destroy((void **)&rs);
            return NULL;
        }
        zloop_reader(apid_loop(apid), l->sock, s_on_answer, l);
    }
    rs->timer = zloop_timer(apid_loop(apid), API_RULES_SYNC_MS, 0, s_on_sync,
                            rs);
    return rs;
}

void
api_rules_destroy(void **state_p)
{
    struct api_rules *rs = state_p ? *state_p : NULL;

    if (rs == NULL)
        return;
    if (rs->timer > 0)
        zloop_timer_end(apid_loop(rs->apid), rs->timer);
    for (unsigned i = 0; i < rs->n; i++) {
        if (rs->lanes[i].sock)
            zloop_reader_end(apid_loop(rs->apid), rs->lanes[i].sock);
        zsock_destroy(&rs->lanes[i].sock);
    }
    free(rs->lanes);
    zhashx_destroy(&rs->acked);
    zhashx_destroy(&rs->target);
    free(rs);
    *state_p = NULL;
}

void
api_rules_test(bool verbose)
{
    enum s_verb v;
    char *id;

    id = s_parse("/api/rules/High%20Temperature%20Alert", &v);
    TEST_STREQ(id, "High Temperature Alert");
    assert(v == V_RULE);
    free(id);
    id = s_parse("/api/rules/hot/disable", &v);
    TEST_STREQ(id, "hot");
    assert(v == V_DISABLE);
    free(id);
    id = s_parse("/api/rules/hot/enable", &v);
    assert(id && v == V_ENABLE);
    free(id);
    assert(s_parse("/api/rules/", &v) == NULL);
    assert(s_parse("/api/rules/a/b", &v) == NULL);
    assert(s_parse("/api/rules/a%2Fb", &v) == NULL);
    assert(s_parse("/api/rules//enable", &v) == NULL);
    (void)verbose;
    TEST_OK("api_rules");
}
