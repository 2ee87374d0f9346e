/*
 * rpc: request/reply between apid (DEALER) and each daemon's query socket
 * (ROUTER). A request is [id][msgpack map with "op"], a reply is
 * [id][msgpack map {"status": http-status, "body": value}], so a daemon
 * answers in HTTP terms and apid relays without knowing every query.
 * Errors follow SPEC's shape: {"error": {"code", "message", "where"}}.
 *
 * A long answer may travel as JSON text instead: [id][msgpack map
 * {"status": s, "json": "<the body as JSON text>"}]. A daemon answers so
 * only when the request says "text": true (apid does when it will hand
 * the body to an HTTP client unchanged), which saves building, packing,
 * unpacking and printing a tree of tens of thousands of nodes. A text
 * made in pieces (aggd prints a large answer on two threads) may come as
 * several frames: [id][{"status": s, "json": "<first piece>", "frames":
 * n}][piece]...[piece], n more frames of text that continue the JSON, so
 * that no one copies the pieces together before the HTTP client's socket.
 * When the request lent a slot of shared memory ("shm": {"name", "off",
 * "len", "until"}, arena.h), parts of the text may stay there: the map
 * then has "shm": [part, ...], one entry per part after the first, nil
 * for the next frame or [offset, length] in the slot, and "frames"
 * counts the nils.
 */
#ifndef SP_RPC_H
#define SP_RPC_H

#include <stdbool.h>

#include <czmq.h>
#include <jansson.h>
#include <stdint.h>

/* Build {"error": {...}}. Caller owns the result. */
json_t *rpc_error(const char *code, const char *message, const char *where);

/* Send a request with id on a DEALER. Returns 0 or -1 (EAGAIN when full). */
int rpc_request_send(void *dealer, uint64_t id, const json_t *req);
/* Read one request on a ROUTER. Returns the request (caller decrefs) and
 * sets *envelope to the routing frames to answer with (caller passes it to
 * rpc_reply_send), or NULL for a malformed request (already answered with
 * 400 when possible). */
json_t *rpc_request_recv(void *router, zmsg_t **envelope);
/* Answer a request: takes *envelope and the body reference (steals). */
int rpc_reply_send(void *router, zmsg_t **envelope, int status, json_t *body);
/* Answer with a body that is already JSON text (len bytes, borrowed).
 * Takes *envelope. Returns 0 or -1. */
int rpc_reply_send_text(void *router, zmsg_t **envelope, int status,
                        const char *json, size_t len);
/* Bytes a text reply's buffer keeps free before its JSON, for the
 * reply's msgpack head (rpc_reply_send_owned). */
#define RPC_TEXT_HEAD 40
/* Answer with the JSON text at buf + RPC_TEXT_HEAD (len bytes from buf,
 * len >= RPC_TEXT_HEAD; the first RPC_TEXT_HEAD are scratch) without
 * copying it: the head is written into the scratch bytes and the buffer
 * becomes the reply's frame. Takes *envelope and buf (malloc'd; freed
 * once sent, maybe by ZeroMQ's I/O thread, or on failure). Returns 0 or
 * -1. */
int rpc_reply_send_owned(void *router, zmsg_t **envelope, int status,
                         char *buf, size_t len);
/* The same for a text in n buffers one after the other: bufs[0] as buf
 * above (len >= RPC_TEXT_HEAD, scratch first), then bufs[1..n-1], all
 * their len bytes text. Takes *envelope and every buffer (their p, which
 * it sets NULL). Returns 0 or -1. */
struct strbuf;
int rpc_reply_send_frames(void *router, zmsg_t **envelope, int status,
                          struct strbuf *bufs, size_t n);
/* The same, where the request lent a region of shared memory (arena.h;
 * lent_len bytes at lent, NULL for none): buffers inside it (bufs[1..],
 * never bufs[0]) stay there and the reply names them by offset and
 * length ("shm"), the others go as frames. Takes *envelope and the
 * buffers outside the region. Returns 0 or -1. */
int rpc_reply_send_parts(void *router, zmsg_t **envelope, int status,
                         struct strbuf *bufs, size_t n, const char *lent,
                         size_t lent_len);
/* Read a reply on a DEALER: sets *id, *status and *body (caller decrefs);
 * a body sent as text is parsed. Returns 0, or -1 for a malformed reply
 * (text that is not JSON included). */
int rpc_reply_recv(void *dealer, uint64_t *id, int *status, json_t **body);
/* Like rpc_reply_recv, but a body sent as text is not parsed: then *text
 * (caller frees, NUL-terminated) and *len are set and *body is NULL;
 * otherwise *text is NULL. */
int rpc_reply_recv_text(void *dealer, uint64_t *id, int *status,
                        json_t **body, char **text, size_t *len);

/* Like rpc_reply_recv_text, without copying the text: *text (not
 * NUL-terminated, len bytes) points into the received message, which
 * *msg then holds (caller zmsg_destroys it when done with the text);
 * otherwise *text and *msg are NULL. *frames is the number of frames of
 * text that continue it, the message's last ones (0 mostly). */
int rpc_reply_recv_ref(void *dealer, uint64_t *id, int *status,
                       json_t **body, const char **text, size_t *len,
                       zmsg_t **msg, size_t *frames);
/* A reply's text in order: its first piece (text, len, as
 * rpc_reply_recv_ref gave them), then the frames and the ranges of the
 * region the request lent (lent_len bytes at lent, or NULL) that continue
 * it. Sets *pieces (caller frees) and returns how many, or 0 when the
 * reply names a range outside the region. */
struct rpc_piece {
    const char *p;
    size_t len;
};
size_t rpc_reply_pieces(zmsg_t *msg, const char *text, size_t len,
                        const char *lent, size_t lent_len,
                        struct rpc_piece **pieces);
/* All of them as one NUL-terminated string (caller frees), or NULL as
 * rpc_reply_pieces; *len is in: the first piece's, out: the whole's. */
char *rpc_reply_text_join(zmsg_t *msg, const char *text, size_t *len,
                          const char *lent, size_t lent_len);

/* Selftest: asserts on failure, prints " * rpc: OK". */
void rpc_test(bool verbose);

#endif
