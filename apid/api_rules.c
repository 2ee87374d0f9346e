/*
 * api_rules: rules CRUD relayed to alertd (see api_rules.h).
 */
#include "apid/api_rules.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

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
