/*
 * strbuf: a growable, always NUL-terminated byte buffer for building
 * messages (JSON, CSV, WebSocket payloads). Plain data: zero-initialise
 * it, append, take .p and .len, strbuf_free when done.
 */
#ifndef SP_STRBUF_H
#define SP_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *p;    /* bytes, NUL-terminated once anything was added */
    size_t len; /* bytes used, without the NUL */
    size_t cap; /* bytes allocated */
};

/* Append n bytes of s (may hold NULs). Cannot fail (aborts on OOM). */
void strbuf_add(struct strbuf *b, const void *s, size_t n);
/* Make room for n more bytes and the NUL (b->p + b->len may then be
 * written up to n bytes, b->len advanced by what was written). */
void strbuf_reserve(struct strbuf *b, size_t n);
/* Append a NUL-terminated string. */
void strbuf_cat(struct strbuf *b, const char *s);
/* Forget the contents, keep the memory. */
void strbuf_reset(struct strbuf *b);
/* Free the memory and zero b; NULL-safe. */
void strbuf_free(struct strbuf *b);

/* Selftest. */
void strbuf_test(bool verbose);

#endif
