/*
 * xalloc: allocation that aborts on failure (Redis zmalloc_oom style).
 *
 * Callers never check for NULL. Sizes that come off the wire must be
 * bounded before they reach these functions.
 */
#ifndef SP_XALLOC_H
#define SP_XALLOC_H

#include <stddef.h>

/* Never returns NULL; aborts with "out of memory" instead. */
void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* Duplicate a NUL-terminated string; caller owns the result. */
char *xstrdup(const char *s);
/* Duplicate n bytes and terminate with NUL; caller owns the result. */
char *xstrndup(const char *s, size_t n);
/* asprintf that aborts on failure; caller owns the result. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Free *p and set it to NULL. NULL-safe. */
void xfree(void *p_ptr);

#endif
