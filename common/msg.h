/*
 * msg: encode and decode the batches of schema.h to and from msgpack, and
 * send or receive them on ZeroMQ sockets.
 *
 * A msg_batch_t holds an envelope and items of one type whose strings live
 * in one arena, so a batch of thousands of readings is two allocations.
 */
#ifndef SP_MSG_H
#define SP_MSG_H

#include "common/schema.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct msg_batch msg_batch_t;

enum msg_err {
    MSG_OK = 0,
    MSG_ETRUNC,   /* not msgpack, or truncated */
    MSG_EVERSION, /* unknown major version */
    MSG_ETYPE,    /* a field has the wrong type or the type is unknown */
    MSG_EFIELD    /* a required field is missing or out of range */
};

/* Create an empty batch of a type. Cannot fail. Caller destroys. */
msg_batch_t *msg_batch_new(int type);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void msg_batch_destroy(msg_batch_t **self_p);
/* Forget the items, keep the capacity and the envelope. */
void msg_batch_reset(msg_batch_t *self);

/* Envelope access. */
struct msg_envelope *msg_batch_env(msg_batch_t *self);
/* Number of items. */
size_t msg_batch_size(const msg_batch_t *self);
/* Item type (enum msg_type). */
int msg_batch_type(const msg_batch_t *self);

/* Make room for items more items and bytes more arena bytes. */
void msg_batch_reserve(msg_batch_t *self, size_t items, size_t bytes);
/* Add a reading (copies key into the series table unless it is there). */
void msg_batch_add_reading(msg_batch_t *self, const char *key, int64_t ts,
                           double value);

/* The series table of a readings batch: each distinct key once, indexed
 * 0, 1, ... in order of first use; readings refer to it, and it travels
 * as the batch's "keys" (PROTOCOL.md). Index of key[0..len), added when
 * new. Cannot fail. */
uint32_t msg_batch_series_add(msg_batch_t *self, const char *key, size_t len);
/* The same when the caller holds strutil_fnv1a64(key, len) (the lane
 * hash) already, as hash: the key is not hashed again. */
uint32_t msg_batch_series_add_hashed(msg_batch_t *self, const char *key,
                                     size_t len, uint64_t hash);
/* Add a reading of a series from msg_batch_series_add. */
void msg_batch_add_point(msg_batch_t *self, uint32_t series, int64_t ts,
                         double value);
/* Number of series in the table. */
size_t msg_batch_nseries(const msg_batch_t *self);
/* Key of series i (below msg_batch_nseries); borrowed like
 * msg_batch_str. */
const char *msg_batch_series_key(const msg_batch_t *self, uint32_t i);
/* Lane of series i among n lanes: series_lane() of its key, without
 * hashing it again. */
unsigned msg_batch_series_lane(const msg_batch_t *self, uint32_t i,
                               unsigned n);
/* Split the readings of src by lane into dst[0..n) (each reset first,
 * envelopes kept): every series is hashed once, not every reading. */
void msg_batch_split(const msg_batch_t *src, msg_batch_t **dst, unsigned n);
/* Add an anomaly event (copies strings); alarm: the novelty alarm. */
void msg_batch_add_anomaly(msg_batch_t *self, const char *key, int64_t ts,
                           double value, double stat, double score,
                           const char *method, bool alarm);
/* Add an alert event (copies strings). */
void msg_batch_add_alert(msg_batch_t *self, const char *rule, const char *key,
                         const char *state, const char *severity, int64_t ts,
                         double value);

/* Add a forecast of n points (2 .. MSG_FORECAST_POINTS, asserted) at
 * ts + i * step (copies key and the arrays). */
void msg_batch_add_forecast(msg_batch_t *self, const char *key, int64_t ts,
                            int64_t step, size_t n, const double *value,
                            const double *lower, const double *upper);

/* Add a confirmation (copies producer). */
void msg_batch_add_confirm(msg_batch_t *self, const char *producer,
                           uint32_t lane, uint64_t seq);

/* Borrowed item i; valid until the batch changes. NULL when out of range
 * or of another type. */
const struct msg_reading *msg_batch_reading(const msg_batch_t *self, size_t i);
/* All readings of a readings batch, msg_batch_size of them (NULL for
 * another type); valid until the batch changes. */
const struct msg_reading *msg_batch_readings(const msg_batch_t *self);
const struct msg_anomaly *msg_batch_anomaly(const msg_batch_t *self, size_t i);
const struct msg_alert *msg_batch_alert(const msg_batch_t *self, size_t i);
const struct msg_confirm *msg_batch_confirm(const msg_batch_t *self, size_t i);
const struct msg_forecast *msg_batch_forecast(const msg_batch_t *self,
                                              size_t i);
/* String at an arena offset from one of the items above. */
const char *msg_batch_str(const msg_batch_t *self, uint32_t off);

/* Encode to msgpack; caller owns *data (free()). Cannot fail. */
void msg_batch_encode(const msg_batch_t *self, char **data, size_t *len);
/* Decode msgpack into a new batch. Returns MSG_OK and sets *out, or an
 * error (and *out NULL). Never trusts the input. */
int msg_batch_decode(const void *data, size_t len, msg_batch_t **out);
/* msg_batch_decode into self, whatever it held, reusing its memory.
 * When a readings frame names the same series, in the same order, as
 * the table self holds (each batch of a producer mostly does), the table
 * is kept as it is instead of being built again. On an error self is
 * left empty (still usable). */
int msg_batch_decode_into(msg_batch_t *self, const void *data, size_t len);
/* Check that a msgpack buffer holds one well-formed object whose declared
 * container sizes fit in the bytes present and whose nesting is at most
 * 64 deep. msgpack-c allocates a container's full declared size before
 * reading it, so every decoder of outside bytes calls this first. */
bool msg_sane(const void *data, size_t len);
/* Static description of an enum msg_err. */
const char *msg_strerror(int err);
/* Topic frame for a type ("readings", ...). */
const char *msg_topic(int type);

/* Send as [topic][msgpack] on sock. flags: 0 or ZMQ_DONTWAIT. Returns 0, or
 * -1 (errno EAGAIN when DONTWAIT and the queue is full). */
int msg_batch_send(const msg_batch_t *self, void *sock, int flags);
/* Receive one [topic][msgpack] message and decode it. Returns MSG_OK and
 * sets *out, or an error code; -1 when nothing could be read. */
int msg_batch_recv(void *sock, msg_batch_t **out);

/* Selftest: asserts on failure, prints " * msg: OK". */
void msg_test(bool verbose);

#endif
