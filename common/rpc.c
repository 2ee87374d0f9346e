/*
 * rpc: query request/reply framing (see rpc.h).
 */
#include "common/rpc.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/test.h"

#include <string.h>

json_t *
rpc_error(const char *code, const char *message, const char *where)
{
    return json_pack("{s:{s:s, s:s, s:s}}", "error", "code", code, "message",
                     message, "where", where ? where : "");
}

int
rpc_request_send(void *dealer, uint64_t id, const json_t *req)
{
    char *data;
    size_t len;
    int rc;
    void *h = zsock_resolve(dealer);

    mpjson_pack(req, &data, &len);
    rc = zmq_send(h, &id, sizeof id, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0)
        rc = zmq_send(h, data, len, ZMQ_DONTWAIT);
    free(data);
    return rc < 0 ? -1 : 0;
}

json_t *
rpc_request_recv(void *router, zmsg_t **envelope)
{
    zmsg_t *m = zmsg_recv(router);
    zframe_t *body;
    json_t *req;

    *envelope = NULL;
    if (m == NULL)
        return NULL;
    if (zmsg_size(m) < 3) {
        log_warnx("rpc: dropped request with %zu frames", zmsg_size(m));
        zmsg_destroy(&m);
        return NULL;
    }
    body = zmsg_last(m);
    req = mpjson_unpack(zframe_data(body), zframe_size(body));
    zmsg_remove(m, body);
    zframe_destroy(&body);
    *envelope = m;
    if (req == NULL || !json_is_object(req) ||
        !json_is_string(json_object_get(req, "op"))) {
        json_decref(req);
        rpc_reply_send(router, envelope, 400,
                       rpc_error("bad_request", "malformed query", "rpc"));
        return NULL;
    }
    return req;
}

int
rpc_reply_send(void *router, zmsg_t **envelope, int status, json_t *body)
{
    json_t *r = json_pack("{s:i, s:o}", "status", status, "body",
                          body ? body : json_null());
    char *data;
    size_t len;
    int rc;

    mpjson_pack(r, &data, &len);
    json_decref(r);
    zmsg_addmem(*envelope, data, len);
    free(data);
    rc = zmsg_send(envelope, router);
    zmsg_destroy(envelope);
    return rc;
}

int
rpc_reply_recv(void *dealer, uint64_t *id, int *status, json_t **body)
{
    zmsg_t *m = zmsg_recv(dealer);
    zframe_t *f;
    json_t *r = NULL;
    int rc = -1;

    *body = NULL;
    if (m == NULL)
        return -1;
    if (zmsg_size(m) != 2)
        goto done;
    f = zmsg_first(m);
    if (zframe_size(f) != sizeof *id)
        goto done;
    memcpy(id, zframe_data(f), sizeof *id);
    f = zmsg_next(m);
    r = mpjson_unpack(zframe_data(f), zframe_size(f));
    if (r == NULL || !json_is_integer(json_object_get(r, "status")))
        goto done;
    *status = (int)json_integer_value(json_object_get(r, "status"));
    *body = json_incref(json_object_get(r, "body"));
    rc = 0;
done:
    json_decref(r);
    zmsg_destroy(&m);
    return rc;
}

void
rpc_test(bool verbose)
{
    zsock_t *router = zsock_new_router("inproc://rpc_test");
    zsock_t *dealer = zsock_new_dealer("inproc://rpc_test");
    json_t *req = json_pack("{s:s, s:s}", "op", "stats", "series", "x");
    zmsg_t *env;
    uint64_t id;
    int status;
    json_t *body;

    assert(rpc_request_send(dealer, 42, req) == 0);
    json_decref(req);
    req = rpc_request_recv(router, &env);
    assert(req && env);
    TEST_STREQ(json_string_value(json_object_get(req, "op")), "stats");
    json_decref(req);
    assert(rpc_reply_send(router, &env, 404,
                          rpc_error("not_found", "no such series", "x")) == 0);
    assert(env == NULL);
    assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
    assert(id == 42 && status == 404);
    TEST_STREQ(json_string_value(json_object_get(
                   json_object_get(body, "error"), "code")), "not_found");
    json_decref(body);

    /* A request without "op" is answered with 400. */
    req = json_pack("{s:i}", "x", 1);
    assert(rpc_request_send(dealer, 7, req) == 0);
    json_decref(req);
    assert(rpc_request_recv(router, &env) == NULL);
    assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
    assert(id == 7 && status == 400);
    json_decref(body);
    zsock_destroy(&dealer);
    zsock_destroy(&router);
    (void)verbose;
    TEST_OK("rpc");
}
