/*
 * http: libmicrohttpd driven from a zloop (epoll mode, no threads), so a
 * daemon's HTTP handlers run on its one loop like every other event.
 *
 * The handler is called once per request with the whole body read (up to
 * body_max bytes; larger bodies get 413 without being read). It replies
 * at once with http_req_reply*, or calls http_req_suspend and replies
 * later from another loop event (apid waits on a backend that way).
 */
#ifndef SP_HTTP_H
#define SP_HTTP_H

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* Largest PEM file read for TLS. */
#define HTTP_PEM_MAX (1 << 20)
#include <sys/types.h>

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;
typedef void(http_handler_fn)(http_req_t *req, void *arg);

/* Listen on addr:port (port 0 picks a free one). Returns NULL (logged)
 * when it cannot bind. */
http_server_t *http_server_new(zloop_t *loop, const char *addr, int port,
                               size_t body_max, http_handler_fn *fn,
                               void *arg);
/* The same over HTTPS (libmicrohttpd with GnuTLS) with the PEM
 * certificate chain and private key in these files; NULL (logged) when
 * they cannot be read or do not match. cert_file NULL or "" is plain
 * HTTP. */
http_server_t *http_server_new_tls(zloop_t *loop, const char *addr, int port,
                                   size_t body_max, const char *cert_file,
                                   const char *key_file, http_handler_fn *fn,
                                   void *arg);
/* Does the server speak TLS? */
bool http_server_tls(const http_server_t *self);
/* Stop listening and close every connection; NULL-safe. */
void http_server_destroy(http_server_t **self_p);
/* Change the largest body read from now on (SIGHUP reloads). */
void http_server_set_body_max(http_server_t *self, size_t body_max);
/* The port actually bound. */
int http_server_port(const http_server_t *self);
/* Requests answered so far, by status class (index 2..5). */
unsigned long long http_server_count(const http_server_t *self, int cls);

/* Request accessors; strings are borrowed until the reply. */
const char *http_req_method(const http_req_t *req);
const char *http_req_path(const http_req_t *req);
/* A query-string argument, URL-decoded, or NULL. */
const char *http_req_arg(const http_req_t *req, const char *name);
/* Call fn for each query-string argument. */
void http_req_args(const http_req_t *req,
                   void (*fn)(void *arg, const char *k, const char *v),
                   void *arg);
/* The client's address ("127.0.0.1") into buf. Returns buf. */
char *http_req_peer(const http_req_t *req, char *buf, size_t len);
/* A request header, or NULL. */
const char *http_req_header(const http_req_t *req, const char *name);
/* The body (NUL-terminated copy, may hold NULs) and its length. */
const char *http_req_body(const http_req_t *req, size_t *len);
/* Attach the application's data to the request (apid: who is asking);
 * free_fn (may be NULL) runs on it when the request ends or when other
 * data replaces it. */
void http_req_set_user(http_req_t *req, void *user, void (*free_fn)(void *));
/* The data attached with http_req_set_user, or NULL. */
void *http_req_user(const http_req_t *req);

/* Reply with a body (taken, free()d by us). Works once per request. */
void http_req_reply(http_req_t *req, int status, const char *content_type,
                    char *body, size_t len);
/* Reply with len bytes of JSON text at body and a newline, without
 * copying it: done(cls) runs once MHD is done with body (or at once when
 * the request already has a reply or the response cannot be made). */
void http_req_reply_ref(http_req_t *req, int status, const char *content_type,
                        const char *body, size_t len, void (*done)(void *),
                        void *cls);
/* The same for a body in n pieces (their bytes one after the other, then
 * a newline): for an answer that arrived in parts (rpc.h). */
struct http_piece {
    const char *p;
    size_t len;
};
void http_req_reply_refv(http_req_t *req, int status, const char *content_type,
                         const struct http_piece *pieces, size_t n,
                         void (*done)(void *), void *cls);
/* Reply with JSON (reference stolen), printed with shortest doubles. */
void http_req_reply_json(http_req_t *req, int status, json_t *body);
/* Reply with SPEC's error shape. */
void http_req_reply_error(http_req_t *req, int status, const char *code,
                          const char *message, const char *where);
/* Add a header to the coming reply (e.g. Retry-After). */
void http_req_add_header(http_req_t *req, const char *name,
                         const char *value);
/* Keep the request open; reply later with http_req_reply*. */
void http_req_suspend(http_req_t *req);

/* Streamed replies (exports): the body is pulled from a producer piece
 * by piece and sent with chunked encoding, so a large answer never sits
 * in memory whole. fn fills up to max bytes of buf and returns how many
 * (> 0), HTTP_STREAM_WAIT when nothing is ready yet (the connection
 * sleeps until http_stream_wake), HTTP_STREAM_END after the last byte,
 * or HTTP_STREAM_ABORT to cut the connection (the client sees a chunked
 * body without its end). done runs exactly once, when the server is
 * finished with the stream (sent, client gone, or server stopping);
 * after it the producer must not touch the stream again. */
typedef struct http_stream http_stream_t;
typedef ssize_t(http_stream_fn)(void *arg, char *buf, size_t max);
typedef void(http_stream_done_fn)(void *arg);
#define HTTP_STREAM_WAIT 0
#define HTTP_STREAM_END (-1)
#define HTTP_STREAM_ABORT (-2)
/* Reply status with a streamed body; works once per request. Returns the
 * stream (owned by the server) for http_stream_wake. */
http_stream_t *http_req_stream(http_req_t *req, int status,
                               const char *content_type, http_stream_fn *fn,
                               http_stream_done_fn *done, void *arg);
/* The producer has bytes (or its end) again: pull from fn. fn and done
 * may run before this returns, so call it last. */
void http_stream_wake(http_stream_t *s);

/* Protocol upgrade (WebSocket). The socket handed over by a 101 reply. */
typedef struct http_upgrade http_upgrade_t;
/* Called once the 101 has gone out. user is the request's
 * http_req_user (valid only during the call: copy what is needed). fd
 * is the connection's socket, set non-blocking; read and write it but
 * never close it. extra holds bytes the client sent past its request
 * (treat them as read from fd, they are valid only during the call). The
 * callee owns up and must end the connection with http_upgrade_close,
 * also before the server goes. */
typedef void(http_upgrade_fn)(void *arg, const void *user, int fd,
                              const char *extra, size_t extra_len,
                              http_upgrade_t *up);
/* Reply 101 Switching Protocols with the headers added so far (the caller
 * adds Upgrade, Connection and the protocol's own), then call fn. The
 * request is gone by the time fn runs. Works once per request. */
void http_req_upgrade(http_req_t *req, http_upgrade_fn *fn, void *arg);
/* Close an upgraded connection; NULL-safe, sets *up_p to NULL. */
void http_upgrade_close(http_upgrade_t **up_p);

/* Selftest. */
void http_test(bool verbose);

#endif
