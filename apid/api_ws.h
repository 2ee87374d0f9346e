/*
 * api_ws: WebSocket live streams at /api/v1/stream (wslay over
 * libmicrohttpd's upgrade, driven from apid's loop).
 *
 * A client sends a filter as a text frame
 *   {"op":"subscribe","series":"temp*","device":"s1","tags":{"k":"v"},
 *    "kinds":["readings","anomalies","alerts","status"]}
 * and receives JSON text messages of the matching items:
 *   {"seq":7,"type":"readings","items":[{"series":..,"timestamp":..,
 *    "value":..}, ...]}
 * one per upstream batch while apid keeps up, and one for all the
 * batches read in one go when it falls behind (each item's JSON is built
 * once, whatever the number of clients).
 * seq counts the messages sent to that client, so a client sees a gap
 * (type "gap" names upstream batches lost before apid). Errors in a filter
 * answer {"type":"error","error":{code,message,where}} and keep the
 * connection. A client whose queue grows over ws-queue-max bytes is closed
 * with 1008 and the reason; one silent for three ping intervals is closed
 * as half-open. GET /api/v1/stream/stats gives the counters.
 */
#ifndef SP_API_WS_H
#define SP_API_WS_H

#include "apid/apid.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct api_ws api_ws_t;

/* Service hooks (apid.c s_services[]): SUB sockets, epoll, timer. */
void *api_ws_create(apid_t *apid);
/* Close every client and socket; NULL-safe. */
void api_ws_destroy(void **state_p);
/* Route /api/v1/stream and /api/v1/stream/stats; 1 when handled. */
int api_ws_route(apid_t *apid, http_req_t *req);
/* A device's registry state changed (dev_store's observer, through
 * api_devices): send a "status" item to the clients of tenant whose
 * filter wants it when presence (online, offline) or lifecycle
 * (registered, activated, decommissioned) changed. NULL-safe. */
void api_ws_device_status(api_ws_t *self, const char *tenant, const char *id,
                          const json_t *before, const json_t *after, int64_t ts);
/* Connected clients (for /metrics). */
size_t api_ws_clients(const api_ws_t *self);
/* The counters of GET /api/v1/stream/stats (also on /metrics); an empty
 * object for NULL. Caller owns. */
json_t *api_ws_stats(const api_ws_t *self);

/* Check one client text message as the stream does (valid UTF-8, a JSON
 * object, op "unsubscribe" or "subscribe" with a valid filter), and with
 * a filter whether it matches the series key (of tenant). Returns 0 when
 * the stream would accept it, -1 when it would answer an error. Pure, for
 * fuzzing (tests/fuzz/fuzz_ws.c). */
int api_ws_message_check(const char *msg, size_t len, const char *tenant,
                         const char *key, bool *match);

/* Selftest: handshake key and filter parsing. */
void api_ws_test(bool verbose);

#endif
