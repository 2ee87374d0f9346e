/*
 * api_alerts: single alerts and acknowledgement (see api_alerts.h).
 */
#include "apid/api_alerts.h"
#include "apid/api_auth.h"
#include "apid/api_tenant.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <limits.h>
#include <string.h>

#define ALERTS_PREFIX "/api/alerts/"
#define ALERTS_BY_MAX 128 /* bytes in "by" */

/* Split an alert path, with or without /ack: the id (> 0) and whether
 * /ack follows. Returns -1 when the path is not of that shape. */
static int
s_parse(const char *path, long long *id, bool *ack)
{
    char num[24];
    const char *p = path + strlen(ALERTS_PREFIX);
    size_t n = strcspn(p, "/");

    if (strncmp(path, ALERTS_PREFIX, strlen(ALERTS_PREFIX)) || n == 0 ||
        n >= sizeof num)
        return -1;
    memcpy(num, p, n);
    num[n] = '\0';
    if (strutil_toll(num, 1, LLONG_MAX, id))
        return -1;
    if (p[n] == '\0')
        *ack = false;
    else if (!strcmp(p + n, "/ack"))
        *ack = true;
    else
        return -1;
    return 0;
}

/* alertd's answer about one alert: shown, or acknowledged (arg is then
 * the "ack" query), only when the alert belongs to the caller's tenant;
 * another tenant's alert is as unknown as a missing one. */
static void
s_on_alert(apid_t *apid, http_req_t *req, int status, json_t *body,
           void *arg)
{
    json_t *ack = arg;

    if (status == 200 && !api_tenant_owns_item(api_auth_tenant(req), body)) {
        json_decref(body);
        json_decref(ack);
        http_req_reply_error(req, 404, "not_found", "no such alert", "id");
        return;
    }
    if (status == 200 && ack) {
        json_decref(body);
        apid_relay(apid, req, APID_BK_ALERTD, ack);
        return;
    }
    json_decref(ack);
    http_req_reply_json(req, status, body);
}

int
api_alerts_route(apid_t *apid, http_req_t *req)
{
    const char *path = http_req_path(req);
    long long id;
    bool ack;
    json_t *q, *in = NULL, *by;
    size_t len;
    const char *body;

    if (strncmp(path, ALERTS_PREFIX, strlen(ALERTS_PREFIX)))
        return 0;
    if (s_parse(path, &id, &ack)) {
        http_req_reply_error(req, 404, "not_found",
                             "use /api/alerts/{id} or /api/alerts/{id}/ack",
                             path);
        return 1;
    }
    if (!apid_method(req, ack ? "POST" : "GET"))
        return 1;
    q = json_pack("{s:s, s:I}", "op", "ack", "id", (json_int_t)id);
    body = http_req_body(req, &len);
    if (ack && len > 0) {
        in = json_loadb(body, len, 0, NULL);
        by = json_object_get(in, "by");
        if (!json_is_object(in) || (by && (!json_is_string(by) ||
                                           json_string_length(by) == 0 ||
                                           json_string_length(by) > ALERTS_BY_MAX))) {
            json_decref(in);
            json_decref(q);
            http_req_reply_error(req, 400, "invalid_body",
                                 "body is {\"by\": \"who\"} (optional)", "by");
            return 1;
        }
        if (by)
            json_object_set(q, "by", by);
        json_decref(in);
    }
    /* First whose alert it is, then (for /ack) the acknowledgement. */
    if (!ack) {
        json_decref(q);
        q = NULL;
    }
    apid_ask(apid, req, APID_BK_ALERTD,
             json_pack("{s:s, s:I}", "op", "alert", "id", (json_int_t)id),
             s_on_alert, q);
    return 1;
}

void
api_alerts_test(bool verbose)
{
    long long id;
    bool ack;

    assert(s_parse("/api/alerts/12", &id, &ack) == 0 && id == 12 && !ack);
    assert(s_parse("/api/alerts/7/ack", &id, &ack) == 0 && id == 7 && ack);
    assert(s_parse("/api/alerts/0", &id, &ack) == -1);
    assert(s_parse("/api/alerts/x/ack", &id, &ack) == -1);
    assert(s_parse("/api/alerts/3/nack", &id, &ack) == -1);
    assert(s_parse("/api/alerts/", &id, &ack) == -1);
    (void)verbose;
    TEST_OK("api_alerts");
}
