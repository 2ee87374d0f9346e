/*
 * api_ws: WebSocket live streams (see api_ws.h).
 *
 * Upgraded sockets live in one epoll set of our own, polled by apid's
 * zloop, so a client is one epoll entry and closing one never leaves a
 * stale poll item behind. A closed client is unlinked at once and freed
 * on the next tick, after any event batch that may still name it.
 */
#include "apid/api_ws.h"
#include "apid/api_auth.h"
#include "apid/api_tenant.h"
#include "common/clock.h"
#include "common/ep.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/series.h"
#include "common/strbuf.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#define WS_PATH "/api/v1/stream"
#define WS_STATS_PATH "/api/v1/stream/stats"
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_KEY_LEN 24             /* base64 of a 16-byte nonce */
#define WS_MSG_MAX 65536          /* largest message a client may send */
#define WS_TAGS_MAX 16            /* tag filters per subscription */
#define WS_EVENTS_MAX 64          /* epoll events handled per wakeup */
#define WS_TICK_MS 100            /* pings, deadlines, freeing */
#define WS_CLOSE_GRACE_NS 2000000000LL /* wait for a close handshake */
#define WS_SILENT_PINGS 3         /* silent ping intervals before a drop */
#define WS_SUB_HWM 100000         /* batches queued per SUB socket */
#define WS_SUB_BURST 64           /* batches read per SUB wakeup */

/* Close codes of RFC 6455, section 7.4.1. */
#define WS_CLOSE_AWAY 1001
#define WS_CLOSE_UNSUPPORTED 1003
#define WS_CLOSE_BAD_DATA 1007
#define WS_CLOSE_POLICY 1008

/* The kinds before WK_UPSTREAM come from a PUB socket per kind; status
 * comes from apid's own device registry (api_ws_device_status). */
enum s_kind { WK_READINGS, WK_ANOMALIES, WK_ALERTS, WK_STATUS, WK_MAX };
#define WK_UPSTREAM WK_STATUS
static const char *s_kind_name[WK_MAX] = {"readings", "anomalies", "alerts",
                                          "status"};
static const char *s_kind_daemon[WK_UPSTREAM] = {"aggd", "anomalyd", "alertd"};
static const int s_kind_type[WK_UPSTREAM] = {MSG_TYPE_READINGS, MSG_TYPE_ANOMALIES,
                                             MSG_TYPE_ALERTS};

struct s_filter {
    char *tenant;                         /* only this tenant's series */
    char *series;                         /* selector: key, name or glob */
    struct series_tag tags[WS_TAGS_MAX];  /* strings owned (xstrdup) */
    size_t ntags;                         /* tags used */
    unsigned kinds;                       /* bit per enum s_kind */
};

struct s_client {
    api_ws_t *ws;                 /* owner */
    uint64_t id;                  /* for log lines */
    int fd;                       /* upgraded socket (MHD closes it) */
    http_upgrade_t *up;           /* MHD's handle, closed on kill */
    wslay_event_context_ptr ctx;  /* framing state */
    char *extra;                  /* bytes MHD read past the request */
    size_t extra_len, extra_off;  /* their length and how much is used */
    struct s_filter filter;       /* current subscription */
    bool subscribed;              /* filter is set */
    uint64_t seq;                 /* messages sent so far */
    int64_t last_rx;              /* mono ns of the last frame received */
    int64_t close_by;             /* mono ns to give up on a close; 0 open */
    uint32_t events;              /* epoll events registered */
    char *tenant;                 /* tenant of the upgrade request */
    bool draining;                /* close sent, reading until the peer's EOF */
    bool dead;                    /* killed; freed at the next tick */
    struct s_client *next;        /* list link */
    struct strbuf out;             /* message being built from a batch */
    size_t out_n;                 /* items in it */
    const char *dev;              /* device of the filter, or NULL */
    struct s_client *dev_next;    /* next subscriber of that device */
};

/* The JSON of a batch's items, each built once when a client first
 * wants it, in one buffer. */
struct s_items {
    struct strbuf json; /* every item built so far, back to back */
    size_t *off;        /* item i at json.p + off[i] - 1; 0 = not built */
    size_t *len;        /* and its length */
};

struct api_ws {
    apid_t *apid;                 /* owner */
    const struct apid_conf *conf; /* borrowed configuration */
    zloop_t *loop;                /* apid's loop */
    int epfd;                     /* epoll set of the clients */
    int timer;                    /* tick timer id */
    zsock_t *sub[WK_UPSTREAM];    /* SUB to every lane's PUB, per kind */
    bool topic_on[WK_UPSTREAM];   /* SUB subscribed to the kind's topic */
    size_t nwant[WK_MAX];         /* clients subscribed to a kind */
    struct s_client *clients;     /* live clients */
    struct s_client *graveyard;   /* killed, to free at the next tick */
    size_t nclients;              /* live clients */
    int64_t next_ping;            /* mono ns of the next ping round */
    zhashx_t *seqs;               /* last upstream seq per producer/lane */
    zhashx_t *bydev;              /* device -> its subscribers (chain) */
    uint64_t next_id;             /* client id counter */
    uint64_t accepted;            /* upgrades done */
    uint64_t dropped_slow;        /* closed for a full queue */
    uint64_t dropped_silent;      /* closed as half-open */
    uint64_t bad_requests;        /* filters or frames refused */
    uint64_t messages;            /* messages queued to clients */
    uint64_t items;               /* items in them */
    uint64_t gaps;                /* upstream batches lost before apid */
};

/* --- buffers ------------------------------------------------------------ */

/* Append s as a JSON string. Keys are valid UTF-8 (checked at ingest);
 * only quotes, backslashes and control bytes need escaping. */
static void
s_buf_str(struct strbuf *b, const char *s)
{
    strbuf_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        char esc[8];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            strbuf_add(b, esc, 2);
        } else if (ch < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", ch);
            strbuf_add(b, esc, 6);
        } else {
            strbuf_add(b, p, 1);
        }
    }
    strbuf_add(b, "\"", 1);
}

static void
s_buf_num(struct strbuf *b, double v)
{
    char num[40];
    strbuf_cat(b, strutil_dtoa(v, num, sizeof num));
}

static void
s_buf_time(struct strbuf *b, int64_t ts)
{
    char t[40];
    strbuf_add(b, "\"", 1);
    strbuf_cat(b, clock_format(ts, t, sizeof t));
    strbuf_add(b, "\"", 1);
}

/* --- filters ------------------------------------------------------------ */

static void
s_filter_clear(struct s_filter *f)
{
    xfree(&f->tenant);
    xfree(&f->series);
    for (size_t i = 0; i < f->ntags; i++) {
        free((char *)f->tags[i].key);
        free((char *)f->tags[i].value);
    }
    f->ntags = 0;
    f->kinds = 0;
}

static int
s_filter_tag(struct s_filter *f, const char *k, json_t *v, const char **why)
{
    if (!json_is_string(v)) {
        *why = "tag values must be strings";
        return -1;
    }
    if ((*why = series_tag_key_check(k)) ||
        (*why = series_tag_value_check(json_string_value(v))))
        return -1;
    if (f->ntags == WS_TAGS_MAX) {
        *why = "too many tag filters";
        return -1;
    }
    f->tags[f->ntags].key = xstrdup(k);
    f->tags[f->ntags].value = xstrdup(json_string_value(v));
    f->ntags++;
    return 0;
}

/* Parse a subscribe request of a client of tenant into f. Returns 0, or
 * -1 with *where naming the offending field and *why the reason (both
 * static or borrowed from in, valid while in lives). */
static int
s_filter_parse(json_t *in, const char *tenant, struct s_filter *f,
               const char **where, const char **why)
{
    const char *k;
    json_t *v;

    memset(f, 0, sizeof *f);
    f->tenant = xstrdup(tenant);
    json_object_foreach(in, k, v) {
        *where = k;
        if (!strcmp(k, "op") || !strcmp(k, "id")) {
            continue;
        } else if (!strcmp(k, "series")) {
            if (!json_is_string(v) || json_string_length(v) == 0 ||
                json_string_length(v) >= SERIES_KEY_MAX) {
                *why = "series must be a non-empty key, name or glob";
                goto fail;
            }
            free(f->series);
            f->series = xstrdup(json_string_value(v));
        } else if (!strcmp(k, "device")) {
            if (s_filter_tag(f, "device", v, why))
                goto fail;
        } else if (!strcmp(k, "tags")) {
            const char *tk;
            json_t *tv;
            if (!json_is_object(v)) {
                *why = "tags must be an object of strings";
                goto fail;
            }
            json_object_foreach(v, tk, tv)
                if (s_filter_tag(f, tk, tv, why))
                    goto fail;
        } else if (!strcmp(k, "kinds")) {
            size_t i;
            json_t *e;
            if (!json_is_array(v) || json_array_size(v) == 0) {
                *why = "kinds must be a non-empty array";
                goto fail;
            }
            json_array_foreach(v, i, e) {
                int kind;
                for (kind = 0; kind < WK_MAX; kind++)
                    if (json_is_string(e) &&
                        !strcmp(json_string_value(e), s_kind_name[kind]))
                        break;
                if (kind == WK_MAX) {
                    *why = "unknown kind (readings, anomalies, alerts, status)";
                    goto fail;
                }
                f->kinds |= 1u << kind;
            }
        } else {
            *why = "unknown filter field";
            goto fail;
        }
    }
    if (f->series == NULL)
        f->series = xstrdup("*");
    if (strchr(f->series, '{')) {
        /* An exact key names the tenant tag as the stored key does. */
        char key[SERIES_KEY_MAX];
        snprintf(key, sizeof key, "%s", f->series);
        if (series_key_stamp(key, sizeof key, tenant) > 0) {
            free(f->series);
            f->series = xstrdup(key);
        }
    }
    if (f->kinds == 0)
        f->kinds = (1u << WK_MAX) - 1;
    return 0;
fail:
    s_filter_clear(f);
    return -1;
}

static bool
s_filter_match(const struct s_filter *f, const char *key)
{
    return series_match(key, f->series, f->tags, f->ntags) &&
           api_tenant_owns(f->tenant, key);
}

/* --- clients ------------------------------------------------------------ */

static void s_kill(struct s_client *c, const char *why);

static void
s_sub_update(api_ws_t *self)
{
    for (int k = 0; k < WK_UPSTREAM; k++) {
        bool want = self->nwant[k] > 0;
        if (want == self->topic_on[k])
            continue;
        if (want)
            zsock_set_subscribe(self->sub[k], msg_topic(s_kind_type[k]));
        else
            zsock_set_unsubscribe(self->sub[k], msg_topic(s_kind_type[k]));
        self->topic_on[k] = want;
        /* Sequences seen before a pause say nothing about gaps after. */
        zhashx_purge(self->seqs);
    }
}

static void
s_want(api_ws_t *self, unsigned kinds, int delta)
{
    for (int k = 0; k < WK_MAX; k++)
        if (kinds & (1u << k))
            self->nwant[k] += (size_t)delta;
    s_sub_update(self);
}

/* The device a filter names (tag "device"), or NULL. */
static const char *
s_filter_device(const struct s_filter *f)
{
    for (size_t i = 0; i < f->ntags; i++)
        if (!strcmp(f->tags[i].key, "device"))
            return f->tags[i].value;
    return NULL;
}

/* Start (on) or stop counting c as a subscriber: the kinds wanted
 * upstream, and the device index that finds a one-device subscriber
 * per item without matching every client against every item. */
static void
s_subscribed(struct s_client *c, bool on)
{
    api_ws_t *self = c->ws;
    struct s_client *head;

    s_want(self, c->filter.kinds, on ? +1 : -1);
    c->subscribed = on;
    if (on)
        c->dev = s_filter_device(&c->filter);
    if (c->dev == NULL)
        return;
    head = zhashx_lookup(self->bydev, c->dev);
    if (on) {
        c->dev_next = head;
        zhashx_update(self->bydev, c->dev, c);
    } else if (head == c) {
        if (c->dev_next)
            zhashx_update(self->bydev, c->dev, c->dev_next);
        else
            zhashx_delete(self->bydev, c->dev);
    } else {
        while (head && head->dev_next != c)
            head = head->dev_next;
        if (head)
            head->dev_next = c->dev_next;
    }
    if (!on)
        c->dev = NULL;
}

/* Register the events wslay wants; kill the client when it wants none
 * (the close handshake is over). */
static void
s_update(struct s_client *c)
{
    uint32_t ev;

    if (c->dead || c->draining)
        return;
    if (!wslay_event_want_read(c->ctx) && !wslay_event_want_write(c->ctx)) {
        if (wslay_event_get_close_received(c->ctx)) {
            s_kill(c, NULL);
            return;
        }
        /* We closed first and stopped reading: closing the socket with
         * unread bytes would send a reset that may destroy our close
         * frame before the client reads it, so half-close and discard
         * what still comes until the client's end or the grace. */
        shutdown(c->fd, SHUT_WR);
        c->draining = true;
        if (c->close_by == 0)
            c->close_by = clock_mono_ns() + WS_CLOSE_GRACE_NS;
        ev = EPOLLIN;
    } else {
        ev = EPOLLIN | (wslay_event_want_write(c->ctx) ? EPOLLOUT : 0u);
    }
    if (ev != c->events) {
        struct epoll_event e = {.events = ev, .data.ptr = c};
        c->events = ev;
        epoll_ctl(c->ws->epfd, EPOLL_CTL_MOD, c->fd, &e);
    }
}

static void
s_flush(struct s_client *c)
{
    if (c->dead || c->draining)
        return;
    if (wslay_event_send(c->ctx) != 0)
        s_kill(c, "send failed");
    else
        s_update(c);
}

static void
s_queue_text(struct s_client *c, const char *s, size_t len)
{
    struct wslay_event_msg m = {WSLAY_TEXT_FRAME, (const uint8_t *)s, len};

    if (c->dead || c->close_by)
        return;
    if (wslay_event_queue_msg(c->ctx, &m) != 0)
        return;
    c->seq++;
    c->ws->messages++;
}

/* Start the close handshake with a reason; hard close after a grace. */
static void
s_close(struct s_client *c, uint16_t code, const char *reason)
{
    if (c->dead || c->close_by)
        return;
    log_info("apid: ws client=%llu closing: %s",
             (unsigned long long)c->id, reason);
    wslay_event_queue_close(c->ctx, code, (const uint8_t *)reason,
                            strlen(reason));
    c->close_by = clock_mono_ns() + WS_CLOSE_GRACE_NS;
}

static void
s_reply_error(struct s_client *c, const char *code, const char *message,
              const char *where)
{
    struct strbuf b = {0};
    char num[24];

    c->ws->bad_requests++;
    snprintf(num, sizeof num, "%llu", (unsigned long long)c->seq + 1);
    strbuf_cat(&b, "{\"seq\":");
    strbuf_cat(&b, num);
    strbuf_cat(&b, ",\"type\":\"error\",\"error\":{\"code\":");
    s_buf_str(&b, code);
    strbuf_cat(&b, ",\"message\":");
    s_buf_str(&b, message);
    strbuf_cat(&b, ",\"where\":");
    s_buf_str(&b, where);
    strbuf_cat(&b, "}}");
    s_queue_text(c, b.p, b.len);
    free(b.p);
}

static void
s_subscribe(struct s_client *c, json_t *in)
{
    struct s_filter f;
    const char *where = "body", *why = NULL;
    json_t *echo;
    char *s;

    if (s_filter_parse(in, c->tenant, &f, &where, &why)) {
        char msg[160];
        snprintf(msg, sizeof msg, "%s: %.60s", why, where);
        s_reply_error(c, "bad_filter", msg, where);
        return;
    }
    if (c->subscribed) {
        s_subscribed(c, false);
        s_filter_clear(&c->filter);
    }
    c->filter = f;
    s_subscribed(c, true);
    echo = json_pack("{s:I, s:s, s:s, s:o}", "seq", (json_int_t)c->seq + 1,
                     "type", "subscribed", "series", f.series, "kinds",
                     json_array());
    for (int k = 0; k < WK_MAX; k++)
        if (f.kinds & (1u << k))
            json_array_append_new(json_object_get(echo, "kinds"),
                                  json_string(s_kind_name[k]));
    if (f.ntags) {
        json_t *tags = json_object();
        for (size_t i = 0; i < f.ntags; i++)
            json_object_set_new(tags, f.tags[i].key,
                                json_string(f.tags[i].value));
        json_object_set_new(echo, "tags", tags);
    }
    s = json_dumps(echo, JSON_COMPACT);
    s_queue_text(c, s, strlen(s));
    free(s);
    json_decref(echo);
}

static void
s_on_text(struct s_client *c, const char *msg, size_t len)
{
    json_error_t jerr;
    json_t *in;
    const char *op;

    if (!strutil_utf8_valid(msg, len)) {
        c->ws->bad_requests++;
        s_close(c, WS_CLOSE_BAD_DATA, "text frame is not valid UTF-8");
        return;
    }
    in = json_loadb(msg, len, 0, &jerr);
    if (in == NULL || !json_is_object(in)) {
        char why[200];
        snprintf(why, sizeof why, "malformed JSON: %.150s",
                 in ? "must be an object" : jerr.text);
        s_reply_error(c, "bad_request", why, "body");
        json_decref(in);
        return;
    }
    op = json_string_value(json_object_get(in, "op"));
    if (op && !strcmp(op, "subscribe")) {
        s_subscribe(c, in);
    } else if (op && !strcmp(op, "unsubscribe")) {
        if (c->subscribed) {
            s_subscribed(c, false);
            s_filter_clear(&c->filter);
        }
    } else {
        s_reply_error(c, "bad_request", "op must be subscribe or unsubscribe",
                      "op");
    }
    json_decref(in);
}

int
api_ws_message_check(const char *msg, size_t len, const char *tenant,
                     const char *key, bool *match)
{
    struct s_filter f;
    const char *where = "body", *why = NULL, *op;
    json_error_t jerr;
    json_t *in;
    int rc = -1;

    *match = false;
    if (!strutil_utf8_valid(msg, len))
        return -1;
    if ((in = json_loadb(msg, len, 0, &jerr)) == NULL || !json_is_object(in)) {
        json_decref(in);
        return -1;
    }
    op = json_string_value(json_object_get(in, "op"));
    if (op && !strcmp(op, "unsubscribe")) {
        rc = 0;
    } else if (op && !strcmp(op, "subscribe") &&
               s_filter_parse(in, tenant, &f, &where, &why) == 0) {
        *match = s_filter_match(&f, key);
        s_filter_clear(&f);
        rc = 0;
    }
    json_decref(in);
    return rc;
}

static ssize_t
s_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
          void *arg)
{
    struct s_client *c = arg;
    ssize_t r;

    if (c->extra_off < c->extra_len) {
        size_t n = c->extra_len - c->extra_off;
        if (n > len)
            n = len;
        memcpy(buf, c->extra + c->extra_off, n);
        c->extra_off += n;
        return (ssize_t)n;
    }
    r = recv(c->fd, buf, len, 0);
    if (r > 0)
        return r;
    if (r == -1 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static ssize_t
s_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len,
          int flags, void *arg)
{
    struct s_client *c = arg;
    ssize_t r = send(c->fd, data, len, MSG_NOSIGNAL);

    if (r >= 0)
        return r;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
    else
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
    return -1;
}

static void
s_msg_cb(wslay_event_context_ptr ctx,
         const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    struct s_client *c = user;

    c->last_rx = clock_mono_ns();
    if (arg->opcode == WSLAY_TEXT_FRAME) {
        s_on_text(c, (const char *)arg->msg, arg->msg_length);
    } else if (arg->opcode == WSLAY_BINARY_FRAME) {
        c->ws->bad_requests++;
        s_close(c, WS_CLOSE_UNSUPPORTED, "binary frames are not accepted");
    }
    /* Pings are answered and closes echoed by wslay itself. */
}

static void
s_client_free(struct s_client *c)
{
    wslay_event_context_free(c->ctx);
    s_filter_clear(&c->filter);
    free(c->tenant);
    free(c->out.p);
    free(c->extra);
    free(c);
}

/* Unlink, stop polling and close now; the memory goes at the next tick. */
static void
s_kill(struct s_client *c, const char *why)
{
    api_ws_t *self = c->ws;
    struct s_client **pp = &self->clients;

    if (c->dead)
        return;
    if (why)
        log_info("apid: ws client=%llu closed: %s", (unsigned long long)c->id,
                 why);
    c->dead = true;
    if (c->subscribed)
        s_subscribed(c, false);
    epoll_ctl(self->epfd, EPOLL_CTL_DEL, c->fd, NULL);
    http_upgrade_close(&c->up);
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    self->nclients--;
    c->next = self->graveyard;
    self->graveyard = c;
}

/* Discard input of a draining client; kill it at its end. */
static void
s_drain(struct s_client *c)
{
    char junk[4096];
    ssize_t r;

    while ((r = recv(c->fd, junk, sizeof junk, 0)) > 0)
        ;
    if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        s_kill(c, NULL);
}

static void
s_io(struct s_client *c, uint32_t revents)
{
    if (c->dead)
        return;
    if (c->draining) {
        s_drain(c);
        return;
    }
    if ((revents & (EPOLLIN | EPOLLERR | EPOLLHUP)) &&
        wslay_event_want_read(c->ctx) && wslay_event_recv(c->ctx) != 0) {
        s_kill(c, "connection lost");
        return;
    }
    if ((revents & (EPOLLERR | EPOLLHUP)) && !wslay_event_want_read(c->ctx)) {
        s_kill(c, "connection lost");
        return;
    }
    s_flush(c);
}

static void
s_on_upgrade(void *arg, const void *user, int fd, const char *extra,
             size_t extra_len, http_upgrade_t *up)
{
    api_ws_t *self = arg;
    struct s_client *c = xcalloc(1, sizeof *c);
    struct wslay_event_callbacks cbs = {s_recv_cb, s_send_cb, NULL, NULL,
                                        NULL, NULL, s_msg_cb};
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    int one = 1;

    /* A live stream writes small frames as they come: without TCP_NODELAY
     * Nagle holds a frame until the previous one is acknowledged, and the
     * peer's delayed ACK makes that up to 40 ms. (Fails harmlessly on a
     * non-TCP socket.) */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->ws = self;
    c->id = ++self->next_id;
    c->tenant = xstrdup(api_auth_user_tenant(user));
    c->fd = fd;
    c->up = up;
    c->last_rx = clock_mono_ns();
    if (extra_len) {
        c->extra = xmalloc(extra_len);
        memcpy(c->extra, extra, extra_len);
        c->extra_len = extra_len;
    }
    if (wslay_event_context_server_init(&c->ctx, &cbs, c) != 0) {
        log_warnx("apid: ws: cannot create a wslay context");
        http_upgrade_close(&c->up);
        free(c->extra);
        free(c);
        return;
    }
    wslay_event_config_set_max_recv_msg_length(c->ctx, WS_MSG_MAX);
    c->events = EPOLLIN;
    e.data.ptr = c;
    if (epoll_ctl(self->epfd, EPOLL_CTL_ADD, fd, &e) == -1) {
        log_warn("apid: ws: epoll_ctl");
        http_upgrade_close(&c->up);
        s_client_free(c);
        return;
    }
    c->next = self->clients;
    self->clients = c;
    self->nclients++;
    self->accepted++;
    log_debug("apid: ws client=%llu connected", (unsigned long long)c->id);
    if (c->extra_len)
        s_io(c, EPOLLIN);
}

static int
s_on_epoll(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    api_ws_t *self = arg;
    struct epoll_event ev[WS_EVENTS_MAX];
    int n = epoll_wait(self->epfd, ev, WS_EVENTS_MAX, 0);

    for (int i = 0; i < n; i++)
        s_io(ev[i].data.ptr, ev[i].events);
    return 0;
}

/* --- upstream batches ----------------------------------------------------- */

/* The JSON object of item i of batch b. */
static void
s_item_json(msg_batch_t *b, size_t i, struct strbuf *o)
{
    if (msg_batch_type(b) == MSG_TYPE_READINGS) {
        const struct msg_reading *r = msg_batch_reading(b, i);
        strbuf_cat(o, "{\"series\":");
        s_buf_str(o, msg_batch_str(b, r->key_off));
        strbuf_cat(o, ",\"timestamp\":");
        s_buf_time(o, r->ts);
        strbuf_cat(o, ",\"value\":");
        s_buf_num(o, r->value);
    } else if (msg_batch_type(b) == MSG_TYPE_ANOMALIES) {
        const struct msg_anomaly *a = msg_batch_anomaly(b, i);
        strbuf_cat(o, "{\"series\":");
        s_buf_str(o, msg_batch_str(b, a->key_off));
        strbuf_cat(o, ",\"timestamp\":");
        s_buf_time(o, a->ts);
        strbuf_cat(o, ",\"value\":");
        s_buf_num(o, a->value);
        strbuf_cat(o, ",\"stat\":");
        s_buf_num(o, a->stat);
        strbuf_cat(o, ",\"score\":");
        s_buf_num(o, a->score);
        strbuf_cat(o, ",\"method\":");
        s_buf_str(o, msg_batch_str(b, a->method_off));
        strbuf_cat(o, a->alarm ? ",\"alarm\":true" : ",\"alarm\":false");
    } else {
        const struct msg_alert *a = msg_batch_alert(b, i);
        strbuf_cat(o, "{\"rule\":");
        s_buf_str(o, msg_batch_str(b, a->rule_off));
        strbuf_cat(o, ",\"series\":");
        s_buf_str(o, msg_batch_str(b, a->key_off));
        strbuf_cat(o, ",\"state\":");
        s_buf_str(o, msg_batch_str(b, a->state_off));
        strbuf_cat(o, ",\"severity\":");
        s_buf_str(o, msg_batch_str(b, a->severity_off));
        strbuf_cat(o, ",\"timestamp\":");
        s_buf_time(o, a->ts);
        strbuf_cat(o, ",\"value\":");
        s_buf_num(o, a->value);
    }
    strbuf_cat(o, "}");
}

static const char *
s_item_key(msg_batch_t *b, size_t i)
{
    switch (msg_batch_type(b)) {
    case MSG_TYPE_READINGS:
        return msg_batch_str(b, msg_batch_reading(b, i)->key_off);
    case MSG_TYPE_ANOMALIES:
        return msg_batch_str(b, msg_batch_anomaly(b, i)->key_off);
    default:
        return msg_batch_str(b, msg_batch_alert(b, i)->key_off);
    }
}

/* Slow means the client has not taken what was queued before this
 * batch; one large batch alone never counts against it. Closes it and
 * returns true when so. */
static bool
s_too_slow(struct s_client *c)
{
    size_t queued = wslay_event_get_queued_msg_length(c->ctx);
    char why[96];

    if (queued <= (size_t)c->ws->conf->ws_queue_max)
        return false;
    snprintf(why, sizeof why, "slow consumer: %zu bytes queued", queued);
    c->ws->dropped_slow++;
    s_close(c, WS_CLOSE_POLICY, why);
    s_flush(c);
    return true;
}

/* Add one item's JSON to the message of a kind being built for c. */
static void
s_append_json(struct s_client *c, int kind, const char *json, size_t len)
{
    char num[24];

    if (c->out_n++ == 0) {
        snprintf(num, sizeof num, "%llu", (unsigned long long)c->seq + 1);
        strbuf_cat(&c->out, "{\"seq\":");
        strbuf_cat(&c->out, num);
        strbuf_cat(&c->out, ",\"type\":\"");
        strbuf_cat(&c->out, s_kind_name[kind]);
        strbuf_cat(&c->out, "\",\"items\":[");
    } else {
        strbuf_add(&c->out, ",", 1);
    }
    strbuf_add(&c->out, json, len);
}

/* Add item i of b to the message being built for c. */
static void
s_append(struct s_client *c, int kind, msg_batch_t *b, size_t i,
         struct s_items *items)
{
    if (items->off[i] == 0) {
        size_t at = items->json.len;
        s_item_json(b, i, &items->json);
        items->off[i] = at + 1;
        items->len[i] = items->json.len - at;
    }
    s_append_json(c, kind, items->json.p + items->off[i] - 1, items->len[i]);
}

/* Queue what s_append built for c, if anything. */
static void
s_finish(struct s_client *c)
{
    if (c->out_n == 0)
        return;
    strbuf_cat(&c->out, "]}");
    s_queue_text(c, c->out.p, c->out.len);
    c->ws->items += c->out_n;
    c->out.len = 0;
    c->out_n = 0;
    s_flush(c);
}

/* The device tag of a canonical key, or NULL (*len set). */
static const char *
s_key_device(const char *key, size_t *len)
{
    const char *p = strchr(key, '{');

    while (p && *p && *p != '}') {
        p++;
        if (!strncmp(p, "device=", 7)) {
            p += 7;
            *len = strcspn(p, ",}");
            return p;
        }
        p += strcspn(p, ",}");
    }
    return NULL;
}

/* Gather one batch's items for its subscribers. Those of one device are
 * found per item through the device index (a thousand one-device
 * dashboards cost one lookup per reading, not a thousand matches); the
 * others match every item. */
static void
s_dispatch(api_ws_t *self, int kind, msg_batch_t *b, struct s_items *items)
{
    struct s_client *c, *chain = NULL;
    size_t n = msg_batch_size(b), len, have = 0;
    char dev[SERIES_KEY_MAX];
    unsigned bit = 1u << kind;

    for (size_t i = 0; i < n && zhashx_size(self->bydev); i++) {
        const char *key = s_item_key(b, i), *d;
        if ((d = s_key_device(key, &len)) == NULL || len >= sizeof dev)
            continue;
        /* Batches run by device often: look up only when it changes. */
        if (len != have || memcmp(dev, d, len)) {
            memcpy(dev, d, len);
            dev[len] = '\0';
            have = len;
            chain = zhashx_lookup(self->bydev, dev);
        }
        for (c = chain; c; c = c->dev_next)
            if (!c->close_by && (c->filter.kinds & bit) &&
                s_filter_match(&c->filter, key))
                s_append(c, kind, b, i, items);
    }
    for (c = self->clients; c; c = c->next) {
        if (c->dev || !c->subscribed || c->close_by || !(c->filter.kinds & bit))
            continue;
        for (size_t i = 0; i < n; i++)
            if (s_filter_match(&c->filter, s_item_key(b, i)))
                s_append(c, kind, b, i, items);
    }
}

/* Send every client what the batches dispatched since the last call
 * gathered for it: one message and one write per client, however many
 * batches that was. A slow client's share is dropped with it. */
static void
s_finish_all(api_ws_t *self)
{
    for (struct s_client *c = self->clients, *next; c; c = next) {
        next = c->next;
        if (c->out_n == 0)
            continue;
        if (s_too_slow(c)) {
            strbuf_reset(&c->out);
            c->out_n = 0;
            continue;
        }
        s_finish(c);
    }
}

/* Tell the clients of a kind that upstream batches were lost. */
static void
s_gap(api_ws_t *self, int kind, const char *producer, uint64_t missed)
{
    for (struct s_client *c = self->clients, *next; c; c = next) {
        next = c->next;
        if (!c->subscribed || !(c->filter.kinds & (1u << kind)))
            continue;
        char *s = xasprintf("{\"seq\":%llu,\"type\":\"gap\",\"kind\":\"%s\","
                            "\"producer\":\"%s\",\"missed\":%llu}",
                            (unsigned long long)c->seq + 1, s_kind_name[kind],
                            producer, (unsigned long long)missed);
        s_queue_text(c, s, strlen(s));
        free(s);
        s_flush(c);
    }
}

static void
s_track_seq(api_ws_t *self, int kind, msg_batch_t *b)
{
    struct msg_envelope *e = msg_batch_env(b);
    char key[96];
    uint64_t last;

    snprintf(key, sizeof key, "%.64s/%u", e->producer, e->lane);
    last = (uint64_t)(uintptr_t)zhashx_lookup(self->seqs, key);
    if (last && e->seq > last + 1) {
        s_finish_all(self); /* what came before the gap goes first */
        self->gaps += e->seq - last - 1;
        s_gap(self, kind, e->producer, e->seq - last - 1);
    }
    zhashx_update(self->seqs, key, (void *)(uintptr_t)e->seq);
}

static int
s_on_sub(zloop_t *loop, zsock_t *sock, void *arg)
{
    api_ws_t *self = arg;
    int kind;

    for (kind = 0; kind < WK_UPSTREAM && self->sub[kind] != sock; kind++)
        ;
    size_t nb = 0;               /* batches dispatched, not yet sent */
    struct s_items items = {0};  /* one batch's items, as JSON */

    for (int burst = 0; burst < WS_SUB_BURST && kind < WK_UPSTREAM; burst++) {
        msg_batch_t *b = NULL;
        int rc;

        if (burst > 0 && !(zsock_events(sock) & ZMQ_POLLIN))
            break;
        rc = msg_batch_recv(zsock_resolve(sock), &b);
        if (rc != MSG_OK) {
            if (rc != -1)
                log_debug("apid: ws: bad upstream batch: %s", msg_strerror(rc));
            break;
        }
        if (msg_batch_type(b) != s_kind_type[kind]) {
            msg_batch_destroy(&b);
            continue;
        }
        /* anomalyd numbers its readings and anomalies batches from one
         * counter and publishes only the anomalies, so its PUB sequence
         * has holes by design; gaps are told for aggd and alertd. */
        if (kind != WK_ANOMALIES)
            s_track_seq(self, kind, b);
        items.off = xcalloc(msg_batch_size(b) + 1, sizeof *items.off);
        items.len = xcalloc(msg_batch_size(b) + 1, sizeof *items.len);
        strbuf_reset(&items.json);
        s_dispatch(self, kind, b, &items);
        nb++;
        xfree(&items.off);
        xfree(&items.len);
        msg_batch_destroy(&b);
    }
    /* A client gets one message per burst: when apid falls behind, the
     * batches waiting in the SUB queue are read together and each client
     * costs one write for all of them rather than one per batch. */
    if (nb)
        s_finish_all(self);
    strbuf_free(&items.json);
    return 0;
}

/* --- device status ---------------------------------------------------------- */

/* What a registry change means to a status subscriber, or NULL when it
 * changes neither presence nor lifecycle (a sensor added, a heartbeat of
 * a device already online). */
static const char *
s_status_event(const json_t *before, const json_t *after)
{
    const char *sb, *sa;
    bool ob, oa;

    sb = json_string_value(json_object_get(before, "status"));
    sa = json_string_value(json_object_get(after, "status"));
    /* A decommissioned id registered again is a new device. */
    if (before == NULL || (sb && !strcmp(sb, "decommissioned") && sa &&
                           strcmp(sa, "decommissioned")))
        return "registered";
    ob = json_is_true(json_object_get(before, "online"));
    oa = json_is_true(json_object_get(after, "online"));
    if (sa && !strcmp(sa, "decommissioned") && (sb == NULL || strcmp(sb, sa)))
        return "decommissioned";
    if (ob != oa)
        return oa ? "online" : "offline";
    if (sa && (sb == NULL || strcmp(sb, sa)))
        return !strcmp(sa, "active") ? "activated" : sa;
    return NULL;
}

/* Does the name array arr hold s? */
static bool
s_names_have(const json_t *arr, const char *s)
{
    size_t i;
    json_t *e;

    json_array_foreach(arr, i, e)
        if (json_is_string(e) && !strcmp(json_string_value(e), s))
            return true;
    return false;
}

/* A status filter: the client's tenant only; tag "device" is the id,
 * "tag" and "group" one of the device's tags or groups, "type" its type,
 * any other key a metadata value. The series selector does not apply. */
static bool
s_status_match(const struct s_filter *f, const char *tenant, const char *id,
               const json_t *st)
{
    if (strcmp(f->tenant, tenant))
        return false;
    for (size_t i = 0; i < f->ntags; i++) {
        const char *k = f->tags[i].key, *v = f->tags[i].value, *have;
        if (!strcmp(k, "device"))
            have = id;
        else if (!strcmp(k, "tag") || !strcmp(k, "group"))
            have = s_names_have(json_object_get(st, !strcmp(k, "tag") ? "tags" : "groups"), v)
                       ? v : NULL;
        else if (!strcmp(k, "type"))
            have = json_string_value(json_object_get(st, "type"));
        else
            have = json_string_value(json_object_get(json_object_get(st, "metadata"), k));
        if (have == NULL || strcmp(have, v))
            return false;
    }
    return true;
}

void
api_ws_device_status(api_ws_t *self, const char *tenant, const char *id,
                     const json_t *before, const json_t *after, int64_t ts)
{
    const char *event;
    json_t *item;
    char *json = NULL, t[40];
    size_t len = 0;

    if (self == NULL || self->nwant[WK_STATUS] == 0 ||
        (event = s_status_event(before, after)) == NULL)
        return;
    for (struct s_client *c = self->clients, *next; c; c = next) {
        next = c->next;
        if (!c->subscribed || c->close_by || !(c->filter.kinds & (1u << WK_STATUS)) ||
            !s_status_match(&c->filter, tenant, id, after) || s_too_slow(c))
            continue;
        if (json == NULL) {
            item = json_pack("{s:s, s:s, s:O, s:O, s:O, s:O, s:O, s:O, s:s}",
                             "device", id, "event", event,
                             "online", json_object_get(after, "online"),
                             "status", json_object_get(after, "status"),
                             "type", json_object_get(after, "type"),
                             "tags", json_object_get(after, "tags"),
                             "groups", json_object_get(after, "groups"),
                             "lastSeen", json_object_get(after, "lastSeen"),
                             "timestamp", clock_format(ts, t, sizeof t));
            json = item ? json_dumps(item, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
            json_decref(item);
            if (json == NULL)
                return;
            len = strlen(json);
        }
        s_append_json(c, WK_STATUS, json, len);
        s_finish(c);
    }
    free(json);
}

/* --- housekeeping ---------------------------------------------------------- */

static void
s_bury(api_ws_t *self)
{
    while (self->graveyard) {
        struct s_client *c = self->graveyard;
        self->graveyard = c->next;
        s_client_free(c);
    }
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    api_ws_t *self = arg;
    int64_t now = clock_mono_ns();
    bool ping = now >= self->next_ping;
    int64_t silent = self->conf->ws_ping * WS_SILENT_PINGS;

    /* Free only what was killed before this tick: no event batch can
     * still hold those pointers. */
    s_bury(self);
    if (ping)
        self->next_ping = now + self->conf->ws_ping;
    for (struct s_client *c = self->clients, *next; c; c = next) {
        next = c->next;
        if (c->close_by && now >= c->close_by) {
            s_kill(c, "no close handshake in time");
        } else if (now - c->last_rx > silent && !c->close_by) {
            self->dropped_silent++;
            s_kill(c, "half-open: no frame for three ping intervals");
        } else if (ping && !c->close_by) {
            struct wslay_event_msg m = {WSLAY_PING, NULL, 0};
            wslay_event_queue_msg(c->ctx, &m);
            s_flush(c);
        }
    }
    return 0;
}

/* --- HTTP side ------------------------------------------------------------- */

/* Sec-WebSocket-Accept for a key (RFC 6455 section 4.2.2). Caller frees. */
static char *
s_accept_key(const char *key)
{
    zdigest_t *d = zdigest_new();
    zarmour_t *a = zarmour_new();
    char *out;

    zdigest_update(d, (const byte *)key, strlen(key));
    zdigest_update(d, (const byte *)WS_GUID, strlen(WS_GUID));
    zarmour_set_mode(a, ZARMOUR_MODE_BASE64_STD);
    zarmour_set_pad(a, true);
    zarmour_set_line_breaks(a, false);
    out = zarmour_encode(a, zdigest_data(d), zdigest_size(d));
    zarmour_destroy(&a);
    zdigest_destroy(&d);
    return out;
}

/* Does a comma-separated header value hold token (any case)? */
static bool
s_has_token(const char *value, const char *token)
{
    size_t n = strlen(token);

    for (const char *p = value; p && *p;) {
        p += strspn(p, " \t,");
        if (strncasecmp(p, token, n) == 0 && strchr(" \t,", p[n]))
            return true;
        p = strchr(p, ',');
    }
    return false;
}

static void
s_route_upgrade(api_ws_t *self, http_req_t *req)
{
    const char *up = http_req_header(req, "Upgrade");
    const char *conn = http_req_header(req, "Connection");
    const char *key = http_req_header(req, "Sec-WebSocket-Key");
    const char *ver = http_req_header(req, "Sec-WebSocket-Version");
    char *accept;

    if (up == NULL || !s_has_token(up, "websocket") || conn == NULL ||
        !s_has_token(conn, "upgrade")) {
        http_req_add_header(req, "Upgrade", "websocket");
        http_req_reply_error(req, 426, "upgrade_required",
                             "this is a WebSocket endpoint", "Upgrade");
        return;
    }
    if (ver == NULL || strcmp(ver, "13") != 0) {
        http_req_add_header(req, "Sec-WebSocket-Version", "13");
        http_req_reply_error(req, 426, "upgrade_required",
                             "WebSocket version 13 only",
                             "Sec-WebSocket-Version");
        return;
    }
    if (key == NULL || strlen(key) != WS_KEY_LEN) {
        http_req_reply_error(req, 400, "bad_request",
                             "Sec-WebSocket-Key must be 16 bytes in base64",
                             "Sec-WebSocket-Key");
        return;
    }
    accept = s_accept_key(key);
    http_req_add_header(req, "Upgrade", "websocket");
    http_req_add_header(req, "Connection", "Upgrade");
    http_req_add_header(req, "Sec-WebSocket-Accept", accept);
    free(accept);
    http_req_upgrade(req, s_on_upgrade, self);
}

size_t
api_ws_clients(const api_ws_t *self)
{
    return self->nclients;
}

json_t *
api_ws_stats(const api_ws_t *self)
{
    size_t subscribed = 0;

    if (self == NULL)
        return json_object();
    for (struct s_client *c = self->clients; c; c = c->next)
        subscribed += c->subscribed;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
                     "clients", (json_int_t)self->nclients,
                     "subscribed", (json_int_t)subscribed,
                     "accepted", (json_int_t)self->accepted,
                     "dropped_slow", (json_int_t)self->dropped_slow,
                     "dropped_silent", (json_int_t)self->dropped_silent,
                     "bad_requests", (json_int_t)self->bad_requests,
                     "messages", (json_int_t)self->messages,
                     "items", (json_int_t)self->items,
                     "upstream_gaps", (json_int_t)self->gaps);
}

int
api_ws_route(apid_t *apid, http_req_t *req)
{
    api_ws_t *self = apid_service(apid, "ws");
    const char *path = http_req_path(req);

    if (!strcmp(path, WS_PATH)) {
        if (apid_method(req, "GET"))
            s_route_upgrade(self, req);
        return 1;
    }
    if (!strcmp(path, WS_STATS_PATH)) {
        if (apid_method(req, "GET"))
            http_req_reply_json(req, 200, api_ws_stats(self));
        return 1;
    }
    return 0;
}

/* --- lifecycle ------------------------------------------------------------- */

void *
api_ws_create(apid_t *apid)
{
    api_ws_t *self = xcalloc(1, sizeof *self);
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};

    self->apid = apid;
    self->conf = apid_config(apid);
    self->loop = apid_loop(apid);
    self->seqs = zhashx_new();
    self->bydev = zhashx_new();
    self->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (self->epfd == -1) {
        log_warn("apid: ws: epoll_create1");
        zhashx_destroy(&self->seqs);
        zhashx_destroy(&self->bydev);
        free(self);
        return NULL;
    }
    for (int k = 0; k < WK_UPSTREAM; k++) {
        char t[EP_MAX], ep[EP_MAX];
        ep_default(t, sizeof t, self->conf->rundir, s_kind_daemon[k], "pub");
        self->sub[k] = zsock_new(ZMQ_SUB);
        zsock_set_rcvhwm(self->sub[k], WS_SUB_HWM);
        for (unsigned lane = 0; lane < (unsigned)self->conf->lanes; lane++) {
            ep_expand(ep, sizeof ep, t, lane);
            if (ep_connect(self->sub[k], ep) == -1)
                log_warn("apid: ws: cannot connect %s", ep);
        }
        zloop_reader(self->loop, self->sub[k], s_on_sub, self);
    }
    item.fd = self->epfd;
    zloop_poller(self->loop, &item, s_on_epoll, self);
    self->timer = zloop_timer(self->loop, WS_TICK_MS, 0, s_on_tick, self);
    self->next_ping = clock_mono_ns() + self->conf->ws_ping;
    return self;
}

void
api_ws_destroy(void **state_p)
{
    api_ws_t *self;
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};

    if (state_p == NULL || (self = *state_p) == NULL)
        return;
    /* Say goodbye where the socket takes it at once, then close. */
    while (self->clients) {
        struct s_client *c = self->clients;
        if (!c->close_by) {
            wslay_event_queue_close(c->ctx, WS_CLOSE_AWAY,
                                    (const uint8_t *)"apid is stopping", 16);
            wslay_event_send(c->ctx);
        }
        s_kill(c, NULL);
    }
    s_bury(self);
    item.fd = self->epfd;
    zloop_poller_end(self->loop, &item);
    zloop_timer_end(self->loop, self->timer);
    for (int k = 0; k < WK_UPSTREAM; k++) {
        zloop_reader_end(self->loop, self->sub[k]);
        zsock_destroy(&self->sub[k]);
    }
    close(self->epfd);
    zhashx_destroy(&self->seqs);
    zhashx_destroy(&self->bydev);
    free(self);
    *state_p = NULL;
}

void
api_ws_test(bool verbose)
{
    struct s_filter f;
    const char *where = NULL, *why = NULL;
    json_t *in;
    char *k;

    /* The example of RFC 6455 section 1.3. */
    k = s_accept_key("dGhlIHNhbXBsZSBub25jZQ==");
    TEST_STREQ(k, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    free(k);
    assert(s_has_token("keep-alive, Upgrade", "upgrade"));
    assert(!s_has_token("keep-alive, Upgraded", "upgrade"));

    in = json_pack("{s:s, s:s, s:s, s:[s,s]}", "op", "subscribe", "series",
                   "temp*", "device", "s1", "kinds", "readings", "alerts");
    assert(s_filter_parse(in, "default", &f, &where, &why) == 0);
    assert(f.kinds == ((1u << WK_READINGS) | (1u << WK_ALERTS)));
    assert(s_filter_match(&f, "temperature{device=s1}"));
    assert(!s_filter_match(&f, "temperature{device=s2}"));
    assert(!s_filter_match(&f, "humidity{device=s1}"));
    assert(!s_filter_match(&f, "temperature{device=s1,tenant=acme}"));
    s_filter_clear(&f);
    assert(s_filter_parse(in, "acme", &f, &where, &why) == 0);
    assert(s_filter_match(&f, "temperature{device=s1,tenant=acme}"));
    assert(!s_filter_match(&f, "temperature{device=s1}"));
    assert(!s_filter_match(&f, "temperature{device=s1,tenant=acme2}"));
    s_filter_clear(&f);
    json_decref(in);
    in = json_pack("{s:s, s:s}", "op", "subscribe", "series", "t{device=s1}");
    assert(s_filter_parse(in, "acme", &f, &where, &why) == 0);
    assert(s_filter_match(&f, "t{device=s1,tenant=acme}"));
    assert(!s_filter_match(&f, "t{device=s1}"));
    s_filter_clear(&f);
    json_decref(in);

    in = json_pack("{s:s, s:s}", "op", "subscribe", "colour", "red");
    assert(s_filter_parse(in, "default", &f, &where, &why) == -1);
    TEST_STREQ(where, "colour");
    json_decref(in);
    in = json_pack("{s:[s]}", "kinds", "gossip");
    assert(s_filter_parse(in, "default", &f, &where, &why) == -1);
    TEST_STREQ(where, "kinds");
    json_decref(in);
    in = json_pack("{s:{s:s}}", "tags", "1bad", "x");
    assert(s_filter_parse(in, "default", &f, &where, &why) == -1);
    json_decref(in);

    /* Status: what a registry change means, and whom it goes to. */
    json_t *b4 = json_pack("{s:s, s:b, s:s, s:[s], s:[s], s:{s:s}}", "status", "active",
                           "online", 1, "type", "thermo", "tags", "floor2",
                           "groups", "g1", "metadata", "location", "wh-a");
    json_t *af = json_deep_copy(b4);
    assert(s_status_event(b4, af) == NULL);
    TEST_STREQ(s_status_event(NULL, af), "registered");
    json_object_set_new(af, "online", json_false());
    TEST_STREQ(s_status_event(b4, af), "offline");
    TEST_STREQ(s_status_event(af, b4), "online");
    json_object_set_new(af, "status", json_string("decommissioned"));
    TEST_STREQ(s_status_event(b4, af), "decommissioned");
    json_object_set_new(b4, "status", json_string("provisioned"));
    json_object_set_new(b4, "online", json_false());
    json_object_set_new(af, "status", json_string("active"));
    TEST_STREQ(s_status_event(b4, af), "activated");
    /* A decommissioned id registered again (it said "provisioned"). */
    json_object_set_new(b4, "status", json_string("decommissioned"));
    json_object_set_new(af, "status", json_string("provisioned"));
    json_object_set_new(af, "online", json_false());
    TEST_STREQ(s_status_event(b4, af), "registered");
    json_object_set_new(af, "status", json_string("active"));
    in = json_pack("{s:s, s:{s:s, s:s, s:s}}", "device", "d1", "tags",
                   "tag", "floor2", "group", "g1", "location", "wh-a");
    assert(s_filter_parse(in, "acme", &f, &where, &why) == 0);
    assert(s_status_match(&f, "acme", "d1", af));
    assert(!s_status_match(&f, "globex", "d1", af)); /* another tenant */
    assert(!s_status_match(&f, "acme", "d2", af));
    json_object_set_new(json_object_get(af, "metadata"), "location", json_string("wh-b"));
    assert(!s_status_match(&f, "acme", "d1", af));
    s_filter_clear(&f);
    json_decref(in);
    json_decref(b4);
    json_decref(af);

    size_t len;
    const char *d = s_key_device("t{a=1,device=s12,z=2}", &len);
    assert(d && len == 3 && !strncmp(d, "s12", 3));
    d = s_key_device("t{device=s1}", &len);
    assert(d && len == 2);
    assert(s_key_device("t{xdevice=s1}", &len) == NULL);
    assert(s_key_device("device", &len) == NULL);

    struct strbuf b = {0};
    s_buf_str(&b, "a\"b\\c\n");
    TEST_STREQ(b.p, "\"a\\\"b\\\\c\\u000a\"");
    free(b.p);
    (void)verbose;
    TEST_OK("api_ws");
}
