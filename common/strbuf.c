/*
 * strbuf: growable byte buffer (see strbuf.h).
 */
#include "common/strbuf.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

void
strbuf_reserve(struct strbuf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
}

void
strbuf_add(struct strbuf *b, const void *s, size_t n)
{
    strbuf_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void
strbuf_cat(struct strbuf *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void
strbuf_reset(struct strbuf *b)
{
    b->len = 0;
    if (b->p)
        b->p[0] = '\0';
}

void
strbuf_free(struct strbuf *b)
{
    if (b == NULL)
        return;
    free(b->p);
    memset(b, 0, sizeof *b);
}

void
strbuf_test(bool verbose)
{
    struct strbuf b = {0};

    strbuf_cat(&b, "ab");
    strbuf_add(&b, "c\0d", 3);
    assert(b.len == 5 && memcmp(b.p, "abc\0d", 6) == 0);
    strbuf_reset(&b);
    assert(b.len == 0 && b.p[0] == '\0' && b.cap >= 6);
    strbuf_reserve(&b, 100);
    assert(b.cap >= 101 && b.len == 0);
    for (int i = 0; i < 1000; i++)
        strbuf_cat(&b, "xy");
    assert(b.len == 2000 && strlen(b.p) == 2000);
    strbuf_free(&b);
    assert(b.p == NULL && b.len == 0 && b.cap == 0);
    strbuf_free(NULL);
    (void)verbose;
    TEST_OK("strbuf");
}
