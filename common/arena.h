/*
 * arena: shared memory that apid lends to the daemons it asks on the same
 * host, so that a large answer is printed there and never travels
 * through ZeroMQ (docs/PROTOCOL.md, "Replies in apid's arena").
 *
 * apid owns the arena: a POSIX shared-memory object
 * /sensorpipe-apid.<pid> cut into equal slots. It lends one slot with a
 * request ({"shm": {"name", "off", "len", "until"}}), gets it back when
 * the HTTP client has the answer, or, when the request timed out, only
 * after a grace period: the daemon starts writing only before "until",
 * and writing a slot takes milliseconds.
 *
 * The daemon (aggd) maps each arena it is lent once (arena_maps) and
 * writes into the slot; its reply names the ranges it wrote (rpc.h).
 */
#ifndef SP_ARENA_H
#define SP_ARENA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARENA_PREFIX "/sensorpipe-apid."
#define ARENA_NAME_MAX 64

/* --- the lender's side (apid) ---------------------------------------- */

typedef struct arena arena_t;

/* Create an arena of slots x slot_bytes (slot_bytes rounded up to pages).
 * First removes the arenas of apids that are gone (a crash leaves its
 * object behind). Returns NULL, logged, when shared memory is not to be
 * had (then answers travel through ZeroMQ as before). */
arena_t *arena_new(size_t slots, size_t slot_bytes);
/* Unmap and unlink. NULL-safe. */
void arena_destroy(arena_t **self);
const char *arena_name(const arena_t *self);
const char *arena_base(const arena_t *self);
size_t arena_size(const arena_t *self);
/* Take a free slot: its offset and length in the arena. Returns 0, or -1
 * when every slot is lent out (the request goes without one). */
int arena_take(arena_t *self, int64_t now_ns, size_t *off, size_t *len);
/* Give the slot at off back, to be lent again from not_before_ns
 * (monotonic; 0 = at once). */
void arena_give(arena_t *self, size_t off, int64_t not_before_ns);
/* Slots lent out or waiting out their grace now. */
size_t arena_busy(const arena_t *self, int64_t now_ns);
/* Unlink the objects of apids that no longer run. Returns how many. */
size_t arena_sweep(void);

/* --- the borrower's side (aggd) -------------------------------------- */

typedef struct arena_maps arena_maps_t;

arena_maps_t *arena_maps_new(void);
void arena_maps_destroy(arena_maps_t **self);
/* The len bytes at off of the arena called name, mapped on first use
 * (a few arenas stay mapped, the least used unmapped first). Returns
 * NULL when the name is not an arena's, it cannot be opened, or
 * [off, off + len) is not inside it (logged once per arena). */
char *arena_maps_get(arena_maps_t *self, const char *name, size_t off,
                     size_t len);

/* Selftest. */
void arena_test(bool verbose);

#endif
