/*
 * rpc: query request/reply framing (see rpc.h).
 */
#include "common/rpc.h"
#include "common/strbuf.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/msg.h"
#include "common/ratelimit.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <assert.h>
#include <msgpack.h>
#include <string.h>

json_t *
rpc_error(const char *code, const char *message, const char *where)
{
    /* The message and where often quote the client's input: never let
     * bytes that are not UTF-8 make the error itself fail. */
    return json_pack("{s:{s:o, s:o, s:o}}", "error", "code", mpjson_string_lossy(code),
                     "message", mpjson_string_lossy(message), "where",
                     mpjson_string_lossy(where));
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

/* Requests dropped for their frames, and the complaints about them:
 * anything may connect to a daemon's ROUTER, so one line now and then,
 * not one a message. */
static uint64_t s_dropped;
static struct ratelimit s_rl_dropped;

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
        s_dropped++;
        if (ratelimit_complain(&s_rl_dropped))
            log_warnx("rpc: dropped a request of %zu frames (%llu so far)",
                      zmsg_size(m), (unsigned long long)s_dropped);
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

/* ZeroMQ is done with a reply buffer (maybe in its I/O thread). */
static void
s_free_buf(void *data, void *hint)
{
    (void)data;
    free(hint);
}

/* Write the reply map's head just before the text at buf + RPC_TEXT_HEAD
 * and return where the message starts (at most 33 bytes of head: map,
 * status, json and its str32 head, frames). */
static size_t
s_text_head(char *buf, size_t len, int status, size_t frames)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    size_t off;

    assert(len >= RPC_TEXT_HEAD && frames <= UINT32_MAX);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, frames ? 3 : 2);
    msgpack_pack_str_with_body(&pk, "status", 6);
    msgpack_pack_int(&pk, status);
    if (frames) {
        msgpack_pack_str_with_body(&pk, "frames", 6);
        msgpack_pack_uint32(&pk, (uint32_t)frames);
    }
    msgpack_pack_str_with_body(&pk, "json", 4);
    msgpack_pack_str(&pk, len - RPC_TEXT_HEAD);
    assert(sb.size <= RPC_TEXT_HEAD);
    off = RPC_TEXT_HEAD - sb.size;
    memcpy(buf + off, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return off;
}

/* Send buf from off as one frame without a copy: ZeroMQ frees buf once
 * it is written (s_free_buf), or we do on failure. */
static int
s_send_buf(void *h, char *buf, size_t off, size_t len, int flags)
{
    zmq_msg_t msg;

    zmq_msg_init_data(&msg, buf + off, len - off, s_free_buf, buf);
    if (zmq_msg_send(&msg, h, flags) < 0) {
        zmq_msg_close(&msg); /* frees buf */
        return -1;
    }
    return 0;
}

/* The routing frames of a reply (more to follow); takes *envelope. */
static int
s_send_envelope(void *h, zmsg_t **envelope)
{
    int rc = 0;

    for (zframe_t *f = zmsg_first(*envelope); f && rc >= 0;
         f = zmsg_next(*envelope))
        rc = zmq_send(h, zframe_data(f), zframe_size(f), ZMQ_SNDMORE);
    zmsg_destroy(envelope);
    return rc;
}

int
rpc_reply_send_frames(void *router, zmsg_t **envelope, int status,
                      struct strbuf *bufs, size_t n)
{
    void *h = zsock_resolve(router);
    size_t off = s_text_head(bufs[0].p, bufs[0].len, status, n - 1);
    /* The routing frames, then the buffers themselves as the last frames. */
    int rc = s_send_envelope(h, envelope);
    for (size_t i = 0; i < n; i++) {
        char *p = bufs[i].p;
        bufs[i].p = NULL;
        if (rc >= 0)
            rc = s_send_buf(h, p, i ? 0 : off, bufs[i].len,
                            i + 1 < n ? ZMQ_SNDMORE : 0);
        else
            free(p);
    }
    return rc < 0 ? -1 : 0;
}

/* Whether p lies in the lent region (len bytes at lent, or NULL). */
static bool
s_in_lent(const char *p, const char *lent, size_t len)
{
    return lent && p >= lent && p < lent + len;
}

/* The reply map of a text with parts in a lent region: the first piece
 * copied in (it is the answer's head, a few hundred bytes), "frames" the
 * parts that follow as frames, "shm" every part in order: nil for the
 * next frame, [offset, length] in the region for the others. */
static void
s_parts_head(msgpack_sbuffer *sb, int status, const struct strbuf *bufs,
             size_t n, const char *lent, size_t lent_len, size_t frames)
{
    msgpack_packer pk;

    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "status", 6);
    msgpack_pack_int(&pk, status);
    msgpack_pack_str_with_body(&pk, "frames", 6);
    msgpack_pack_uint64(&pk, frames);
    msgpack_pack_str_with_body(&pk, "shm", 3);
    msgpack_pack_array(&pk, (uint32_t)(n - 1));
    for (size_t i = 1; i < n; i++) {
        if (!s_in_lent(bufs[i].p, lent, lent_len)) {
            msgpack_pack_nil(&pk);
            continue;
        }
        msgpack_pack_array(&pk, 2);
        msgpack_pack_uint64(&pk, (uint64_t)(bufs[i].p - lent));
        msgpack_pack_uint64(&pk, bufs[i].len);
    }
    msgpack_pack_str_with_body(&pk, "json", 4);
    msgpack_pack_str_with_body(&pk, bufs[0].p + RPC_TEXT_HEAD,
                               bufs[0].len - RPC_TEXT_HEAD);
}

int
rpc_reply_send_parts(void *router, zmsg_t **envelope, int status,
                     struct strbuf *bufs, size_t n, const char *lent,
                     size_t lent_len)
{
    void *h = zsock_resolve(router);
    size_t frames = 0, in_lent = 0;
    msgpack_sbuffer sb;
    int rc = 0;

    for (size_t i = 1; i < n; i++) {
        bool in = s_in_lent(bufs[i].p, lent, lent_len);
        assert(!in || bufs[i].p + bufs[i].len <= lent + lent_len);
        in_lent += in;
        frames += !in;
    }
    if (in_lent == 0)
        return rpc_reply_send_frames(router, envelope, status, bufs, n);
    assert(n <= UINT32_MAX && bufs[0].len >= RPC_TEXT_HEAD &&
           !s_in_lent(bufs[0].p, lent, lent_len));
    msgpack_sbuffer_init(&sb);
    s_parts_head(&sb, status, bufs, n, lent, lent_len, frames);
    rc = s_send_envelope(h, envelope);
    if (rc >= 0)
        rc = zmq_send(h, sb.data, sb.size, frames ? ZMQ_SNDMORE : 0);
    msgpack_sbuffer_destroy(&sb);
    free(bufs[0].p);
    bufs[0].p = NULL;
    for (size_t i = 1; i < n; i++) {
        char *p = bufs[i].p;
        bufs[i].p = NULL;
        if (s_in_lent(p, lent, lent_len))
            continue; /* the lender's */
        if (rc >= 0)
            rc = s_send_buf(h, p, 0, bufs[i].len, --frames ? ZMQ_SNDMORE : 0);
        else
            free(p);
    }
    return rc < 0 ? -1 : 0;
}

int
rpc_reply_send_owned(void *router, zmsg_t **envelope, int status, char *buf,
                     size_t len)
{
    struct strbuf one = {buf, len, len};

    return rpc_reply_send_frames(router, envelope, status, &one, 1);
}

int
rpc_reply_send_text(void *router, zmsg_t **envelope, int status,
                    const char *json, size_t len)
{
    char *buf = xmalloc(RPC_TEXT_HEAD + len);

    memcpy(buf + RPC_TEXT_HEAD, json, len); /* the one copy */
    return rpc_reply_send_owned(router, envelope, status, buf,
                                RPC_TEXT_HEAD + len);
}

/* Pick status, body and text (pointing into o's buffer) out of a reply
 * map. Returns 0 or -1. */
static int
s_reply_parse(const msgpack_object *o, int *status, json_t **body,
              const char **text, size_t *len, size_t *frames)
{
    bool have_status = false;
    size_t shm_frames = SIZE_MAX; /* the nils of "shm", when there is one */

    if (o->type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        const msgpack_object *v = &o->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return -1;
        if (k->via.str.size == 6 && !memcmp(k->via.str.ptr, "status", 6)) {
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 > 999)
                return -1;
            *status = (int)v->via.u64;
            have_status = true;
        } else if (k->via.str.size == 4 && !memcmp(k->via.str.ptr, "body", 4)) {
            json_decref(*body);
            if ((*body = mpjson_unpack_object(v)) == NULL)
                return -1;
        } else if (k->via.str.size == 4 && !memcmp(k->via.str.ptr, "json", 4)) {
            if (v->type != MSGPACK_OBJECT_STR || *text)
                return -1;
            *text = v->via.str.ptr;
            *len = v->via.str.size;
        } else if (k->via.str.size == 6 && !memcmp(k->via.str.ptr, "frames", 6)) {
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                v->via.u64 > UINT32_MAX)
                return -1;
            *frames = (size_t)v->via.u64;
        } else if (k->via.str.size == 3 && !memcmp(k->via.str.ptr, "shm", 3)) {
            /* Parts of the text: nil (the next frame) or [offset, length]
             * in the region the request lent (rpc_reply_pieces). */
            if (v->type != MSGPACK_OBJECT_ARRAY)
                return -1;
            shm_frames = 0;
            for (uint32_t j = 0; j < v->via.array.size; j++) {
                const msgpack_object *e = &v->via.array.ptr[j];
                if (e->type == MSGPACK_OBJECT_NIL) {
                    shm_frames++;
                    continue;
                }
                if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
                    e->via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
                    e->via.array.ptr[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                    return -1;
            }
        }
    }
    /* Only text goes on in frames; "shm" accounts for every frame. */
    if (shm_frames != SIZE_MAX && shm_frames != *frames)
        return -1;
    return have_status && (*text || *frames == 0) &&
                   (*text || shm_frames == SIZE_MAX) ? 0 : -1;
}

int
rpc_reply_recv_ref(void *dealer, uint64_t *id, int *status, json_t **body,
                   const char **text, size_t *len, zmsg_t **msg,
                   size_t *frames)
{
    zmsg_t *m = zmsg_recv(dealer);
    zframe_t *f;
    msgpack_unpacked up;
    size_t off = 0;
    int rc = -1;

    *body = NULL;
    *text = NULL;
    *len = 0;
    *msg = NULL;
    *frames = 0;
    if (m == NULL)
        return -1;
    msgpack_unpacked_init(&up);
    if (zmsg_size(m) < 2)
        goto done;
    f = zmsg_first(m);
    if (zframe_size(f) != sizeof *id)
        goto done;
    memcpy(id, zframe_data(f), sizeof *id);
    f = zmsg_next(m);
    if (!msg_sane(zframe_data(f), zframe_size(f)) ||
        msgpack_unpack_next(&up, (const char *)zframe_data(f), zframe_size(f),
                            &off) != MSGPACK_UNPACK_SUCCESS)
        goto done;
    rc = s_reply_parse(&up.data, status, body, text, len, frames);
    if (rc == 0 && zmsg_size(m) - 2 != *frames)
        rc = -1;
    /* msgpack_unpack_next refers to the frame for strings: the text
     * lives as long as the message. */
    if (rc == 0 && *text &&
        (*text < (const char *)zframe_data(f) ||
         *text + *len > (const char *)zframe_data(f) + zframe_size(f)))
        rc = -1;
    if (rc == 0 && *body == NULL && *text == NULL)
        *body = json_null();
done:
    if (rc == -1 || *text) {
        json_decref(*body);
        *body = NULL;
    }
    if (rc == 0 && *text) {
        *msg = m;
        m = NULL;
    } else {
        *text = NULL;
        *len = 0;
        *frames = 0;
    }
    msgpack_unpacked_destroy(&up);
    zmsg_destroy(&m);
    return rc;
}

/* The "shm" array of a reply's map, or NULL (the map is known sane). */
static const msgpack_object *
s_shm_parts(const msgpack_object *o)
{
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->via.str.size == 3 && !memcmp(k->via.str.ptr, "shm", 3))
            return &o->via.map.ptr[i].val;
    }
    return NULL;
}

size_t
rpc_reply_pieces(zmsg_t *msg, const char *text, size_t len,
                 const char *lent, size_t lent_len, struct rpc_piece **out)
{
    zframe_t *head, *f;
    msgpack_unpacked up;
    const msgpack_object *shm;
    struct rpc_piece *pc;
    size_t off = 0, n = 1;

    zmsg_first(msg);
    head = zmsg_next(msg);
    msgpack_unpacked_init(&up);
    /* rpc_reply_recv_ref read this map already: it unpacks. */
    if (msgpack_unpack_next(&up, (const char *)zframe_data(head),
                            zframe_size(head), &off) != MSGPACK_UNPACK_SUCCESS) {
        msgpack_unpacked_destroy(&up);
        return 0;
    }
    shm = s_shm_parts(&up.data);
    n += shm ? shm->via.array.size : zmsg_size(msg) - 2;
    pc = xcalloc(n, sizeof *pc);
    pc[0] = (struct rpc_piece){text, len};
    f = zmsg_next(msg);
    for (size_t i = 1; i < n; i++) {
        const msgpack_object *e = shm ? &shm->via.array.ptr[i - 1] : NULL;
        if (e == NULL || e->type == MSGPACK_OBJECT_NIL) {
            assert(f); /* rpc_reply_recv_ref counted them */
            pc[i] = (struct rpc_piece){(const char *)zframe_data(f),
                                       zframe_size(f)};
            f = zmsg_next(msg);
            continue;
        }
        uint64_t o = e->via.array.ptr[0].via.u64, l = e->via.array.ptr[1].via.u64;
        if (lent == NULL || o > lent_len || l > lent_len - o) {
            free(pc);
            msgpack_unpacked_destroy(&up);
            return 0;
        }
        pc[i] = (struct rpc_piece){lent + o, (size_t)l};
    }
    msgpack_unpacked_destroy(&up);
    *out = pc;
    return n;
}

char *
rpc_reply_text_join(zmsg_t *msg, const char *text, size_t *len,
                    const char *lent, size_t lent_len)
{
    struct strbuf all = {NULL, 0, 0};
    struct rpc_piece *pc;
    size_t n = rpc_reply_pieces(msg, text, *len, lent, lent_len, &pc), sum = 0;

    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++)
        sum += pc[i].len;
    strbuf_reserve(&all, sum);
    for (size_t i = 0; i < n; i++)
        strbuf_add(&all, pc[i].p, pc[i].len);
    free(pc);
    *len = all.len;
    return all.p;
}

int
rpc_reply_recv_text(void *dealer, uint64_t *id, int *status, json_t **body,
                    char **text, size_t *len)
{
    const char *ref;
    zmsg_t *m;
    size_t frames;
    int rc = rpc_reply_recv_ref(dealer, id, status, body, &ref, len, &m,
                                &frames);

    *text = NULL;
    if (rc == 0 && ref && (*text = rpc_reply_text_join(m, ref, len, NULL,
                                                       0)) == NULL)
        rc = -1; /* parts in a region it was not lent */
    zmsg_destroy(&m);
    return rc;
}

int
rpc_reply_recv(void *dealer, uint64_t *id, int *status, json_t **body)
{
    char *text;
    size_t len;
    json_error_t err;

    if (rpc_reply_recv_text(dealer, id, status, body, &text, &len) == -1)
        return -1;
    if (text == NULL)
        return 0;
    *body = json_loadb(text, len, JSON_DECODE_ANY, &err);
    free(text);
    return *body ? 0 : -1;
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

    /* Too few frames: dropped, counted, complained about once. */
    uint64_t dropped = s_dropped;
    for (int i = 0; i < 3; i++) {
        zstr_send(dealer, "lone frame");
        assert(rpc_request_recv(router, &env) == NULL && env == NULL);
    }
    assert(s_dropped == dropped + 3 && s_rl_dropped.suppressed >= 2);

    /* A body sent as text: kept as text, or parsed, as asked. */
    char *text;
    size_t len;
    const char *json = "{\"count\":2,\"mean\":23.6}";
    req = json_pack("{s:s, s:b}", "op", "aggregate", "text", 1);
    for (int parse = 0; parse < 2; parse++) {
        assert(rpc_request_send(dealer, 9, req) == 0);
        json_decref(rpc_request_recv(router, &env));
        assert(rpc_reply_send_text(router, &env, 200, json, strlen(json)) == 0);
        if (parse) {
            assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
            assert(json_integer_value(json_object_get(body, "count")) == 2);
            assert(json_real_value(json_object_get(body, "mean")) == 23.6);
            json_decref(body);
            continue;
        }
        assert(rpc_reply_recv_text(dealer, &id, &status, &body, &text, &len) == 0);
        assert(id == 9 && status == 200 && body == NULL && len == strlen(json));
        TEST_STREQ(text, json);
        free(text);
    }
    /* Without a copy (rpc_reply_send_owned): every length class of the
     * msgpack string head (fixstr, str8, str16, str32), any status, the
     * text byte for byte. */
    static const size_t sizes[] = {2, 31, 32, 255, 256, 65535, 65536,
                                   3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t n = sizes[i];
        char *buf = xmalloc(RPC_TEXT_HEAD + n + 1), *want;
        buf[RPC_TEXT_HEAD] = '[';
        for (size_t j = 1; j + 1 < n; j++)
            buf[RPC_TEXT_HEAD + j] = j % 2 ? '1' : ',';
        buf[RPC_TEXT_HEAD + n - 1] = ']';
        if (n > 2) /* "[1,...,1]" or "[1,...,11]": JSON */
            buf[RPC_TEXT_HEAD + n - 2] = '1';
        want = xstrndup(buf + RPC_TEXT_HEAD, n);
        assert(rpc_request_send(dealer, 100 + i, req) == 0);
        json_decref(rpc_request_recv(router, &env));
        assert(rpc_reply_send_owned(router, &env, i ? 200 : 413, buf,
                                    RPC_TEXT_HEAD + n) == 0 && env == NULL);
        if (i % 2) { /* kept in the message, not copied */
            const char *ref;
            zmsg_t *m;
            size_t frames;
            assert(rpc_reply_recv_ref(dealer, &id, &status, &body, &ref,
                                      &len, &m, &frames) == 0 && m &&
                   body == NULL && frames == 0);
            zframe_t *f = zmsg_last(m);
            assert(ref >= (const char *)zframe_data(f) &&
                   ref + len == (const char *)zframe_data(f) + zframe_size(f));
            assert(len == n && memcmp(ref, want, n) == 0);
            zmsg_destroy(&m);
        } else {
            assert(rpc_reply_recv_text(dealer, &id, &status, &body, &text,
                                       &len) == 0 && body == NULL);
            assert(len == n && memcmp(text, want, n) == 0);
            free(text);
        }
        assert(id == 100 + i && status == (i ? 200 : 413));
        /* and parsed, when asked so */
        buf = xmalloc(RPC_TEXT_HEAD + n);
        memcpy(buf + RPC_TEXT_HEAD, want, n);
        assert(rpc_request_send(dealer, 200 + i, req) == 0);
        json_decref(rpc_request_recv(router, &env));
        assert(rpc_reply_send_owned(router, &env, 200, buf,
                                    RPC_TEXT_HEAD + n) == 0);
        assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
        assert(id == 200 + i && json_is_array(body) &&
               json_array_size(body) == (n - 1) / 2);
        json_decref(body);
        free(want);
    }
    /* In several frames (rpc_reply_send_frames): kept apart without a
     * copy, or put together, or parsed; an empty piece too. */
    static const char *pieces[] = {"[1,", "22,3", "", "3]"};
    for (int how = 0; how < 3; how++) {
        struct strbuf bufs[4];
        memset(bufs, 0, sizeof bufs);
        strbuf_reserve(&bufs[0], RPC_TEXT_HEAD);
        bufs[0].len = RPC_TEXT_HEAD;
        for (size_t i = 0; i < 4; i++) {
            strbuf_reserve(&bufs[i], 1);
            strbuf_add(&bufs[i], pieces[i], strlen(pieces[i]));
        }
        assert(rpc_request_send(dealer, 300 + how, req) == 0);
        json_decref(rpc_request_recv(router, &env));
        assert(rpc_reply_send_frames(router, &env, 201, bufs, 4) == 0 &&
               env == NULL && bufs[0].p == NULL && bufs[3].p == NULL);
        if (how == 0) {
            const char *ref;
            zmsg_t *m;
            size_t frames;
            assert(rpc_reply_recv_ref(dealer, &id, &status, &body, &ref, &len,
                                      &m, &frames) == 0);
            assert(id == 300 && status == 201 && frames == 3 && len == 3 &&
                   memcmp(ref, "[1,", 3) == 0 && zmsg_size(m) == 5);
            char *last = zframe_strdup(zmsg_last(m));
            TEST_STREQ(last, "3]");
            free(last);
            zmsg_destroy(&m);
        } else if (how == 1) {
            assert(rpc_reply_recv_text(dealer, &id, &status, &body, &text,
                                       &len) == 0);
            assert(id == 301 && len == 9);
            TEST_STREQ(text, "[1,22,33]");
            free(text);
        } else {
            assert(rpc_reply_recv(dealer, &id, &status, &body) == 0);
            assert(json_array_size(body) == 3 &&
                   json_integer_value(json_array_get(body, 2)) == 33);
            json_decref(body);
        }
    }
    /* Parts in a lent region (rpc_reply_send_parts): the middle two stay
     * in it, the last goes as a frame; read back with the region, without
     * one (unusable), and with one too small (a range outside it). */
    char region[64];
    memcpy(region + 8, "22,", 3);
    memcpy(region + 20, "3", 1);
    for (int how = 0; how < 3; how++) {
        struct strbuf bufs[4] = {{NULL, 0, 0}, {region + 8, 3, 3},
                                 {region + 20, 1, 1}, {NULL, 0, 0}};
        strbuf_reserve(&bufs[0], RPC_TEXT_HEAD);
        bufs[0].len = RPC_TEXT_HEAD;
        strbuf_add(&bufs[0], "[1,", 3);
        strbuf_add(&bufs[3], "3]", 2);
        assert(rpc_request_send(dealer, 400 + how, req) == 0);
        json_decref(rpc_request_recv(router, &env));
        assert(rpc_reply_send_parts(router, &env, 200, bufs, 4, region,
                                    sizeof region) == 0 && env == NULL &&
               bufs[0].p == NULL && bufs[1].p == NULL && bufs[3].p == NULL);
        if (how == 1) { /* no region: not to be had as text */
            assert(rpc_reply_recv_text(dealer, &id, &status, &body, &text,
                                       &len) == -1 && text == NULL);
            continue;
        }
        const char *ref;
        zmsg_t *m;
        size_t frames;
        struct rpc_piece *pc;
        assert(rpc_reply_recv_ref(dealer, &id, &status, &body, &ref, &len,
                                  &m, &frames) == 0);
        assert(id == 400 + (uint64_t)how && frames == 1 && zmsg_size(m) == 3);
        if (how == 2) { /* 20 bytes lent: [20, 1] lies outside */
            assert(rpc_reply_pieces(m, ref, len, region, 20, &pc) == 0);
            assert(rpc_reply_text_join(m, ref, &len, region, 20) == NULL);
            zmsg_destroy(&m);
            continue;
        }
        assert(rpc_reply_pieces(m, ref, len, region, sizeof region, &pc) == 4);
        assert(pc[1].p == region + 8 && pc[2].p == region + 20 &&
               pc[3].len == 2 && memcmp(pc[3].p, "3]", 2) == 0);
        free(pc);
        text = rpc_reply_text_join(m, ref, &len, region, sizeof region);
        TEST_STREQ(text, "[1,22,33]");
        assert(len == 9);
        free(text);
        zmsg_destroy(&m);
    }
    json_decref(req);
    /* Text that is not JSON is a malformed reply. */
    req = json_pack("{s:s}", "op", "x");
    assert(rpc_request_send(dealer, 10, req) == 0);
    json_decref(req);
    json_decref(rpc_request_recv(router, &env));
    assert(rpc_reply_send_text(router, &env, 200, "{\"a\":", 5) == 0);
    assert(rpc_reply_recv(dealer, &id, &status, &body) == -1 && body == NULL);

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
