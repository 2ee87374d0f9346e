/*
 * http: libmicrohttpd in external epoll mode inside a zloop (see http.h).
 */
#include "common/http.h"
#include "common/log.h"
#include "common/mpjson.h"
#include "common/rpc.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>

#define HTTP_TICK_MS 200
#define HTTP_HEADERS_MAX 4
#define HTTP_STREAM_BLOCK (32 * 1024) /* bytes asked of a producer at once */

/* Largest body buffer allocated from Content-Length before the bytes
 * arrive. */
#define HTTP_PREALLOC_MAX (8u << 20)

/* Memory of a connection (libmicrohttpd's pool: headers, then the read
 * buffer, about half of it). The default 32 KiB reads a body 16 KiB at
 * a time: a 200 KB line-protocol write took 14 reads, each one more
 * turn of the loop (epoll_wait, zmq_poll). libmicrohttpd zeroes the
 * whole pool after every request (MHD_pool_reset), so a kept-alive
 * connection holds all of it resident: at 256 KiB, 150 device
 * connections cost 38 MB. 64 KiB reads a large write in a few reads,
 * ingest CPU per point as with 256 (docs/BENCHMARKS.md, eleventh
 * session), and tests/integration/01-ingest-conn-memory.py holds it. */
#define HTTP_POOL (64u << 10)

struct http_server {
    struct MHD_Daemon *mhd;   /* the libmicrohttpd daemon */
    zloop_t *loop;            /* borrowed loop */
    int timer;                /* housekeeping timer id */
    int epoll_fd;             /* MHD's epoll fd, polled by the loop */
    int port;                 /* bound port */
    size_t body_max;          /* largest body read */
    http_handler_fn *fn;      /* request handler */
    void *arg;                /* handler argument */
    unsigned long long count[6]; /* replies by status class */
    bool again;               /* a catch-up run is scheduled */
    char *tls_cert;           /* PEM certificate chain, or NULL (plain HTTP) */
    char *tls_key;            /* PEM private key (wiped at destroy) */
};

struct http_req {
    http_server_t *server;             /* owner */
    struct MHD_Connection *conn;       /* libmicrohttpd connection */
    const char *method;                /* borrowed from MHD */
    const char *path;                  /* borrowed from MHD */
    char *body;                        /* request body (owned) */
    size_t len, cap;                   /* body bytes, allocated */
    bool too_big;                      /* discard the body: over body_max, or refused before it */
    bool handled;                      /* handler already called */
    bool suspended;                    /* waiting for a late reply */
    struct MHD_Response *resp;         /* reply ready to queue */
    int status;                        /* reply status */
    char *hname[HTTP_HEADERS_MAX];     /* extra reply headers */
    char *hvalue[HTTP_HEADERS_MAX];
    int nheaders;
    http_upgrade_fn *up_fn;            /* set by http_req_upgrade */
    void *up_arg;                      /* its argument */
    void *user;                        /* http_req_set_user */
    void (*user_free)(void *);         /* its destructor, or NULL */
};

struct http_stream {
    http_server_t *server;       /* owner */
    struct MHD_Connection *conn; /* the connection it answers */
    http_stream_fn *fn;          /* producer */
    http_stream_done_fn *done;   /* told once when the server is done */
    void *arg;                   /* their argument */
    bool waiting;                /* suspended until http_stream_wake */
};

struct http_upgrade {
    struct MHD_UpgradeResponseHandle *urh; /* MHD's handle of the socket */
};

static void s_run(http_server_t *self);

/* Free the server's memory (the daemon is stopped or never started). */
static void
s_free(http_server_t *self)
{
    if (self->tls_key)
        explicit_bzero(self->tls_key, strlen(self->tls_key));
    free(self->tls_key);
    free(self->tls_cert);
    free(self);
}
static void s_run_soon(http_server_t *self);
static int s_on_again(zloop_t *loop, int timer_id, void *arg);

static enum MHD_Result
s_queue(http_req_t *req)
{
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)req->status,
                                           req->resp);
    MHD_destroy_response(req->resp);
    req->resp = NULL;
    return r;
}

/* MHD_KeyValueIterator: stop at the first query argument whose name or
 * value is not UTF-8; *cls gets its name ("query" when the name is the
 * bad part). */
static enum MHD_Result
s_arg_utf8(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    const char **bad = cls;

    (void)kind;
    if (!strutil_utf8_valid(k, strlen(k))) {
        *bad = "query";
        return MHD_NO;
    }
    if (v && !strutil_utf8_valid(v, strlen(v))) {
        *bad = k;
        return MHD_NO;
    }
    return MHD_YES;
}

/* Names, keys and tags are UTF-8 (SPEC), and the routes put path
 * segments and arguments into JSON and msgpack strings: a URL that
 * decodes to other bytes is refused here, once, with where it was. */
static const char *
s_url_not_utf8(struct MHD_Connection *conn, const char *url)
{
    const char *bad = NULL;

    if (!strutil_utf8_valid(url, strlen(url)))
        return "path";
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, s_arg_utf8, &bad);
    return bad;
}

static enum MHD_Result
s_access(void *cls, struct MHD_Connection *conn, const char *url,
         const char *method, const char *version, const char *upload,
         size_t *upload_size, void **con_cls)
{
    http_server_t *self = cls;
    http_req_t *req = *con_cls;

    if (req == NULL) {
        const char *cl;
        req = xcalloc(1, sizeof *req);
        req->server = self;
        req->conn = conn;
        req->method = method;
        req->path = url;
        *con_cls = req;
        cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > self->body_max) {
            /* Refuse before reading a byte of the body. */
            req->too_big = true;
            http_req_reply_error(req, 413, "payload_too_large",
                                 "request body over the limit", "body");
            return s_queue(req);
        }
        const char *bad = s_url_not_utf8(conn, url);
        if (bad != NULL) {
            req->too_big = true; /* the body, if any, is not read */
            http_req_reply_error(req, 400, "bad_request",
                                 "the URL decodes to bytes that are not UTF-8", bad);
            return s_queue(req);
        }
        /* One buffer of the announced size, no regrowth; bodies that
         * only announce a large size grow as they arrive. */
        if (cl && (req->cap = strtoull(cl, NULL, 10) + 1) > 1) {
            if (req->cap > HTTP_PREALLOC_MAX)
                req->cap = HTTP_PREALLOC_MAX;
            req->body = xmalloc(req->cap);
            req->body[0] = '\0';
        } else {
            req->cap = 0;
        }
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!req->too_big && req->len + *upload_size > self->body_max) {
            req->too_big = true;
            xfree(&req->body);
            req->len = 0;
        }
        if (!req->too_big) {
            if (req->len + *upload_size + 1 > req->cap) {
                req->cap = (req->len + *upload_size + 1) * 2;
                if (req->cap > self->body_max + 1)
                    req->cap = self->body_max + 1;
                req->body = xrealloc(req->body, req->cap);
            }
            memcpy(req->body + req->len, upload, *upload_size);
            req->len += *upload_size;
            req->body[req->len] = '\0';
        }
        /* An oversized chunked body is read and discarded; the 413 goes
         * out at its end (MHD takes a reply only between uploads). */
        *upload_size = 0;
        return MHD_YES;
    }
    if (req->resp)
        return s_queue(req);
    if (req->suspended)
        return MHD_YES;
    if (req->too_big) {
        char msg[96];
        snprintf(msg, sizeof msg, "request body over the limit of %zu bytes",
                 self->body_max);
        http_req_reply_error(req, 413, "payload_too_large", msg, "body");
        return s_queue(req);
    }
    if (!req->handled) {
        req->handled = true;
        if (req->body == NULL) {
            req->body = xstrdup("");
            req->len = 0;
        }
        self->fn(req, self->arg);
    }
    if (req->resp)
        return s_queue(req);
    if (req->suspended) {
        MHD_suspend_connection(conn);
        return MHD_YES;
    }
    http_req_reply_error(req, 500, "internal", "no reply was produced", req->path);
    return s_queue(req);
}

static void
s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
            enum MHD_RequestTerminationCode toe)
{
    http_req_t *req = *con_cls;
    if (req == NULL)
        return;
    if (req->resp)
        MHD_destroy_response(req->resp);
    for (int i = 0; i < req->nheaders; i++) {
        free(req->hname[i]);
        free(req->hvalue[i]);
    }
    free(req->body);
    if (req->user_free)
        req->user_free(req->user);
    free(req);
    *con_cls = NULL;
}

static void
s_run(http_server_t *self)
{
    MHD_UNSIGNED_LONG_LONG t;

    /* MHD's epoll is edge-triggered and one MHD_run reads only what fits
     * its connection buffer, so a large body can sit unread with no new
     * event to wake us. Run again while MHD says work is pending (timeout
     * 0), and leave the rest to a 1 ms timer so other events get a turn. */
    for (int i = 0; i < 64; i++) {
        MHD_run(self->mhd);
        if (MHD_get_timeout(self->mhd, &t) != MHD_YES || t > 0)
            return;
    }
    s_run_soon(self);
}

static int
s_on_again(zloop_t *loop, int timer_id, void *arg)
{
    http_server_t *self = arg;
    self->again = false;
    s_run(self);
    return 0;
}

static int
s_on_epoll(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    s_run(arg);
    return 0;
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    s_run(arg);
    return 0;
}

static void
s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    vsnprintf(buf, sizeof buf, fmt, ap);
    buf[strcspn(buf, "\n")] = '\0';
    log_debug("http: %s", buf);
}

http_server_t *
http_server_new(zloop_t *loop, const char *addr, int port, size_t body_max,
                http_handler_fn *fn, void *arg)
{
    return http_server_new_tls(loop, addr, port, body_max, NULL, NULL, fn, arg);
}

/* A whole (small) PEM file, or NULL (logged). Caller frees. */
static char *
s_read_pem(const char *path)
{
    FILE *fp = fopen(path, "r");
    char *buf = NULL;
    size_t cap = 0, n = 0, got;

    if (fp == NULL) {
        log_warn("http: cannot open %s", path);
        return NULL;
    }
    do {
        if (n + 4096 > cap)
            buf = xrealloc(buf, cap = cap * 2 + 4096);
        got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
    } while (got > 0 && n < HTTP_PEM_MAX);
    fclose(fp);
    buf[n] = '\0';
    if (n == 0 || n >= HTTP_PEM_MAX || strstr(buf, "-----BEGIN ") == NULL) {
        log_warnx("http: %s is not a PEM file", path);
        free(buf);
        return NULL;
    }
    return buf;
}

http_server_t *
http_server_new_tls(zloop_t *loop, const char *addr, int port, size_t body_max,
                    const char *cert_file, const char *key_file,
                    http_handler_fn *fn, void *arg)
{
    http_server_t *self = xcalloc(1, sizeof *self);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    struct sockaddr *sa;
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_ALLOW_UPGRADE | MHD_USE_ERROR_LOG;
    const union MHD_DaemonInfo *info;
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};
    struct MHD_OptionItem tls[3] = {{MHD_OPTION_END, 0, NULL},
                                    {MHD_OPTION_END, 0, NULL},
                                    {MHD_OPTION_END, 0, NULL}};

    self->loop = loop;
    self->fn = fn;
    self->arg = arg;
    self->body_max = body_max;
    if (cert_file && *cert_file) {
        if ((self->tls_cert = s_read_pem(cert_file)) == NULL ||
            (self->tls_key = s_read_pem(key_file ? key_file : "")) == NULL) {
            free(self->tls_cert);
            free(self);
            return NULL;
        }
        flags |= MHD_USE_TLS;
        tls[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, self->tls_key};
        tls[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, self->tls_cert};
    }
    if (inet_pton(AF_INET, addr, &sin.sin_addr) == 1) {
        sin.sin_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&sin;
    } else if (inet_pton(AF_INET6, addr, &sin6.sin6_addr) == 1) {
        sin6.sin6_port = htons((uint16_t)port);
        sa = (struct sockaddr *)&sin6;
        flags |= MHD_USE_IPv6;
    } else {
        log_warnx("http: not an IP address: %s", addr);
        s_free(self);
        return NULL;
    }
    self->mhd = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, s_access, self,
        MHD_OPTION_SOCK_ADDR, sa, MHD_OPTION_NOTIFY_COMPLETED, s_completed,
        self, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)10000,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)HTTP_POOL,
        MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self, MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (self->mhd == NULL) {
        log_warnx("http: cannot listen on %s:%d%s", addr, port,
                  self->tls_cert ? " with TLS (is the key the certificate's?)" : "");
        s_free(self);
        return NULL;
    }
    info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : port;
    info = MHD_get_daemon_info(self->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    self->epoll_fd = info->epoll_fd;
    item.fd = self->epoll_fd;
    zloop_poller(loop, &item, s_on_epoll, self);
    self->timer = zloop_timer(loop, HTTP_TICK_MS, 0, s_on_tick, self);
    return self;
}

void
http_server_destroy(http_server_t **self_p)
{
    http_server_t *self;
    zmq_pollitem_t item = {NULL, 0, ZMQ_POLLIN, 0};

    if (self_p == NULL || (self = *self_p) == NULL)
        return;
    item.fd = self->epoll_fd;
    zloop_poller_end(self->loop, &item);
    zloop_timer_end(self->loop, self->timer);
    MHD_stop_daemon(self->mhd);
    s_free(self);
    *self_p = NULL;
}

bool
http_server_tls(const http_server_t *self)
{
    return self->tls_cert != NULL;
}

void
http_server_set_body_max(http_server_t *self, size_t body_max)
{
    self->body_max = body_max;
}

int
http_server_port(const http_server_t *self)
{
    return self->port;
}

unsigned long long
http_server_count(const http_server_t *self, int cls)
{
    return cls >= 0 && cls < 6 ? self->count[cls] : 0;
}

const char *
http_req_method(const http_req_t *req)
{
    return req->method;
}

const char *
http_req_path(const http_req_t *req)
{
    return req->path;
}

const char *
http_req_arg(const http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct s_args_ctx {
    void (*fn)(void *, const char *, const char *);
    void *arg;
};

static enum MHD_Result
s_arg_iter(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    struct s_args_ctx *c = cls;
    c->fn(c->arg, k, v ? v : "");
    return MHD_YES;
}

void
http_req_args(const http_req_t *req,
              void (*fn)(void *arg, const char *k, const char *v), void *arg)
{
    struct s_args_ctx c = {fn, arg};
    MHD_get_connection_values(req->conn, MHD_GET_ARGUMENT_KIND, s_arg_iter, &c);
}

char *
http_req_peer(const http_req_t *req, char *buf, size_t len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(buf, len, "?");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, buf,
                  (socklen_t)len);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, buf,
                  (socklen_t)len);
    return buf;
}

const char *
http_req_header(const http_req_t *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *
http_req_body(const http_req_t *req, size_t *len)
{
    *len = req->len;
    return req->body ? req->body : "";
}

void
http_req_add_header(http_req_t *req, const char *name, const char *value)
{
    if (req->nheaders == HTTP_HEADERS_MAX)
        return;
    req->hname[req->nheaders] = xstrdup(name);
    req->hvalue[req->nheaders] = xstrdup(value);
    req->nheaders++;
}

/* Run MHD from the loop soon rather than now (the caller is not ready
 * to be called back). */
static void
s_run_soon(http_server_t *self)
{
    if (!self->again) {
        self->again = true;
        zloop_timer(self->loop, 1, 1, s_on_again, self);
    }
}

/* Make resp the reply of req (queued by s_access, at once or on resume).
 * A stream's reply is sent from the loop's next turn, so its producer
 * is never called back before http_req_stream returns. */
static void
s_set_reply(http_req_t *req, int status, const char *content_type,
            struct MHD_Response *resp, bool later)
{
    req->resp = resp;
    MHD_add_response_header(req->resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type);
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(req->resp, req->hname[i], req->hvalue[i]);
    req->status = status;
    if (status / 100 < 6)
        req->server->count[status / 100]++;
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
        if (later)
            s_run_soon(req->server);
        else
            s_run(req->server);
    }
}

void
http_req_reply(http_req_t *req, int status, const char *content_type,
               char *body, size_t len)
{
    if (req->resp) {
        free(body);
        return;
    }
    s_set_reply(req, status, content_type,
                MHD_create_response_from_buffer(len, body,
                                                MHD_RESPMEM_MUST_FREE),
                false);
}

void
http_req_reply_refv(http_req_t *req, int status, const char *content_type,
                    const struct http_piece *pieces, size_t n,
                    void (*done)(void *), void *cls)
{
    /* The pieces as they are, then a newline (as http_req_reply_json
     * ends), without copying any (MHD copies the array, not the bytes). */
    struct MHD_IoVec *iov;
    struct MHD_Response *resp;

    if (req->resp) {
        done(cls);
        return;
    }
    iov = xcalloc(n + 1, sizeof *iov);
    for (size_t i = 0; i < n; i++)
        iov[i] = (struct MHD_IoVec){pieces[i].p, pieces[i].len};
    iov[n] = (struct MHD_IoVec){"\n", 1};
    resp = n + 1 > UINT_MAX ? NULL
                            : MHD_create_response_from_iovec(
                                  iov, (unsigned)(n + 1), done, cls);
    free(iov);
    if (resp == NULL) {
        done(cls);
        http_req_reply_error(req, 500, "internal", "response too large",
                             "body");
        return;
    }
    s_set_reply(req, status, content_type, resp, false);
}

void
http_req_reply_ref(http_req_t *req, int status, const char *content_type,
                   const char *body, size_t len, void (*done)(void *),
                   void *cls)
{
    const struct http_piece one = {body, len};

    http_req_reply_refv(req, status, content_type, &one, 1, done, cls);
}

/* MHD asks for the next piece of a streamed body. With nothing ready the
 * connection is suspended (MHD allows that from a content reader) so the
 * loop does not spin on it; http_stream_wake resumes it. */
static ssize_t
s_stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    http_stream_t *s = cls;
    ssize_t n = s->fn(s->arg, buf, max);

    (void)pos;
    if (n == HTTP_STREAM_WAIT) {
        s->waiting = true;
        MHD_suspend_connection(s->conn);
        return 0;
    }
    if (n == HTTP_STREAM_END)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (n < 0)
        return MHD_CONTENT_READER_END_WITH_ERROR;
    return n;
}

static void
s_stream_free(void *cls)
{
    http_stream_t *s = cls;
    s->done(s->arg);
    free(s);
}

http_stream_t *
http_req_stream(http_req_t *req, int status, const char *content_type,
                http_stream_fn *fn, http_stream_done_fn *done, void *arg)
{
    http_stream_t *s;

    if (req->resp)
        return NULL;
    s = xcalloc(1, sizeof *s);
    s->server = req->server;
    s->conn = req->conn;
    s->fn = fn;
    s->done = done;
    s->arg = arg;
    s_set_reply(req, status, content_type,
                MHD_create_response_from_callback(MHD_SIZE_UNKNOWN,
                                                  HTTP_STREAM_BLOCK,
                                                  s_stream_read, s,
                                                  s_stream_free),
                true);
    return s;
}

void
http_stream_wake(http_stream_t *s)
{
    if (s == NULL || !s->waiting)
        return;
    s->waiting = false;
    MHD_resume_connection(s->conn);
    s_run(s->server);
}

void
http_req_reply_json(http_req_t *req, int status, json_t *body)
{
    char *s;
    size_t n;

    /* json_pack returns NULL when a string in it is not UTF-8: a bug in
     * the caller, but one that must cost the client a 500, not apid. */
    if (body == NULL) {
        log_err("http: %s %s: reply body could not be built (status %d)",
                req->method, req->path, status);
        status = 500;
        body = rpc_error("internal", "the reply could not be built", "server");
    }
    s = mpjson_dumps(body);
    n = strlen(s);
    /* A trailing newline makes curl output and shell pipelines tidy. */
    s = xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = '\0';
    json_decref(body);
    http_req_reply(req, status, "application/json", s, n + 1);
}

void
http_req_reply_error(http_req_t *req, int status, const char *code,
                     const char *message, const char *where)
{
    http_req_reply_json(req, status, rpc_error(code, message, where));
}

void
http_req_set_user(http_req_t *req, void *user, void (*free_fn)(void *))
{
    if (req->user_free && req->user != user)
        req->user_free(req->user);
    req->user = user;
    req->user_free = free_fn;
}

void *
http_req_user(const http_req_t *req)
{
    return req->user;
}

void
http_req_suspend(http_req_t *req)
{
    req->suspended = true;
}

/* MHD hands over the socket once the 101 is out; req is still ours here
 * (MHD passes the con_cls it was given). */
static void
s_upgraded(void *cls, struct MHD_Connection *conn, void *con_cls,
           const char *extra, size_t extra_len, MHD_socket sock,
           struct MHD_UpgradeResponseHandle *urh)
{
    http_req_t *req = con_cls;
    http_upgrade_t *up = xcalloc(1, sizeof *up);
    int fl = fcntl(sock, F_GETFL);

    if (fl != -1)
        fcntl(sock, F_SETFL, fl | O_NONBLOCK);
    up->urh = urh;
    req->up_fn(req->up_arg, req->user, sock, extra, extra_len, up);
}

void
http_req_upgrade(http_req_t *req, http_upgrade_fn *fn, void *arg)
{
    if (req->resp)
        return;
    req->up_fn = fn;
    req->up_arg = arg;
    req->resp = MHD_create_response_for_upgrade(s_upgraded, req->server);
    for (int i = 0; i < req->nheaders; i++)
        MHD_add_response_header(req->resp, req->hname[i], req->hvalue[i]);
    req->status = MHD_HTTP_SWITCHING_PROTOCOLS;
    req->server->count[1]++;
}

void
http_upgrade_close(http_upgrade_t **up_p)
{
    http_upgrade_t *up;

    if (up_p == NULL || (up = *up_p) == NULL)
        return;
    MHD_upgrade_action(up->urh, MHD_UPGRADE_ACTION_CLOSE);
    free(up);
    *up_p = NULL;
}

/* Selftest: binding and refusing; requests over real sockets are covered
 * by the integration tests (tests/integration/01-*, 05-*). */
static void
s_test_handler(http_req_t *req, void *arg)
{
    size_t len;
    const char *body = http_req_body(req, &len);
    if (strcmp(http_req_path(req), "/echo") == 0)
        http_req_reply(req, 200, "text/plain", xstrndup(body, len), len);
    else
        http_req_reply_error(req, 404, "not_found", "no such route",
                             http_req_path(req));
}

void
http_test(bool verbose)
{
    zloop_t *loop = zloop_new();
    http_server_t *s = http_server_new(loop, "127.0.0.1", 0, 1024,
                                       s_test_handler, NULL);
    assert(s && http_server_port(s) > 0);
    http_server_destroy(&s);
    assert(s == NULL);
    assert(http_server_new(loop, "not-an-ip", 0, 1024, s_test_handler, NULL) ==
           NULL);
    zloop_destroy(&loop);
    (void)verbose;
    TEST_OK("http");
}
