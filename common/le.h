/*
 * le: little-endian integers in on-disk records (WAL, chunks, rollups,
 * checkpoints), so a data directory reads the same on any host.
 */
#ifndef SP_LE_H
#define SP_LE_H

#include <stdint.h>
#include <string.h>

/* Store the low `bytes` bytes of v at p, least significant first. */
static inline void
le_put(unsigned char *p, uint64_t v, int bytes)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    /* The host's order already: one store once inlined (the loop below
     * cost ingestd's encoder ~100 instructions a 20-byte point). */
    memcpy(p, &v, (size_t)bytes);
#else
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
#endif
}

/* Read `bytes` bytes at p, least significant first. */
static inline uint64_t
le_get(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(&v, p, (size_t)bytes);
#else
    for (int i = bytes - 1; i >= 0; i--)
        v = v << 8 | p[i];
#endif
    return v;
}

/* A double by its bits. */
static inline void
le_put_double(unsigned char *p, double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    le_put(p, u, 8);
}

static inline double
le_get_double(const unsigned char *p)
{
    uint64_t u = le_get(p, 8);
    double d;
    memcpy(&d, &u, sizeof d);
    return d;
}

#endif
