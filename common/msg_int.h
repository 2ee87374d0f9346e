/*
 * msg_int: the insides of a batch, shared by msg.c (the batch) and
 * msg_codec.c (its msgpack form). Nothing outside the msg module includes
 * this; everyone else uses msg.h.
 */
#ifndef SP_MSG_INT_H
#define SP_MSG_INT_H

#include "common/keytab.h"
#include "common/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct msg_batch {
    struct msg_envelope env; /* envelope */
    void *items;             /* array of the type's item struct */
    size_t n;                /* items in use */
    size_t cap;              /* items allocated */
    char *arena;             /* NUL-terminated strings of all items */
    size_t alen;             /* arena bytes in use */
    size_t acap;             /* arena bytes allocated */
    keytab_t *series;        /* readings: distinct keys (NULL until used) */
    uint32_t *series_off;    /* arena offset of each series key */
    size_t capseries;        /* entries allocated in series_off */
};

/* msg.c */
/* Copy s[0..len) and a NUL into the arena; its offset. */
uint32_t msg__str(msg_batch_t *self, const char *s, size_t len);
/* Room for one more item of the batch's type; the item (uninitialised). */
void *msg__item(msg_batch_t *self);

/* msg_codec.c */
/* Selftest of the msgpack form: asserts on failure. */
void msg_codec_test(bool verbose);

#endif
