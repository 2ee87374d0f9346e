/*
 * fuzz_ws: libFuzzer target for what a WebSocket client sends apid
 * (api_ws.c): the input is the raw byte stream of a connection after the
 * upgrade. wslay, set up as apid sets it up (server side, so frames must
 * be masked), reads it as frames; every complete text message goes
 * through api_ws_message_check, the check apid applies to a subscription
 * message (UTF-8, JSON object, op, filter fields, tags, kinds), and a
 * subscription that is accepted is matched against a few series keys.
 */
#include "apid/api_ws.h"

#include <assert.h>
#include <stdint.h>
#include <string.h>
#include <wslay/wslay.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct s_in {
    const uint8_t *p; /* bytes not read yet */
    size_t n;
    size_t messages;  /* text messages checked */
};

static ssize_t
s_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
       void *arg)
{
    struct s_in *in = arg;
    size_t n = in->n < len ? in->n : len;

    (void)flags;
    if (n == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    memcpy(buf, in->p, n);
    in->p += n;
    in->n -= n;
    return (ssize_t)n;
}

static ssize_t
s_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
       int flags, void *arg)
{
    (void)ctx;
    (void)data;
    (void)flags;
    (void)arg;
    return (ssize_t)len; /* answers (pongs, closes) go nowhere */
}

static void
s_on_msg(wslay_event_context_ptr ctx,
         const struct wslay_event_on_msg_recv_arg *m, void *arg)
{
    static const char *keys[] = {"temperature{device=s1}", "temp{device=s1,room=a}",
                                 "x", "temperature{device=s1,tenant=t1}"};
    struct s_in *in = arg;
    bool match;

    (void)ctx;
    if (m->opcode != WSLAY_TEXT_FRAME)
        return;
    in->messages++;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        int rc = api_ws_message_check((const char *)m->msg, m->msg_length,
                                      i == 3 ? "t1" : "", keys[i], &match);
        assert(rc == 0 || !match);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wslay_event_callbacks cb = {s_recv, s_send, NULL, NULL, NULL, NULL,
                                       s_on_msg};
    wslay_event_context_ptr ctx;
    struct s_in in = {data, size, 0};

    if (size > 1 << 18)
        return 0;
    /* The bare message too, so the corpus also grows on message text
     * without having to find the framing first. */
    {
        bool match;
        (void)api_ws_message_check((const char *)data, size, "", "x", &match);
    }
    assert(wslay_event_context_server_init(&ctx, &cb, &in) == 0);
    wslay_event_config_set_max_recv_msg_length(ctx, 64 * 1024);
    for (int i = 0; i < 64 && in.n > 0 && wslay_event_want_read(ctx); i++)
        if (wslay_event_recv(ctx) != 0)
            break;
    wslay_event_context_free(ctx);
    return 0;
}
