/*
 * keytab: distinct byte strings with dense indexes (see keytab.h).
 */
#include "common/keytab.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct s_key {
    uint64_t hash; /* FNV-1a 64 of the bytes */
    uint32_t off;  /* offset in the arena */
    uint32_t len;  /* bytes, without the NUL */
};

struct keytab {
    struct s_key *keys; /* keys in index order */
    size_t n, cap;      /* keys used, allocated */
    uint32_t *slots;    /* index + 1 per slot, 0 when empty */
    size_t nslots;      /* a power of two, at least twice n (0 at first) */
    char *arena;        /* the NUL-terminated bytes of every key */
    size_t alen, acap;  /* arena bytes used, allocated */
};

keytab_t *
keytab_new(void)
{
    return xcalloc(1, sizeof(keytab_t));
}

void
keytab_destroy(keytab_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->keys);
        free((*self_p)->slots);
        free((*self_p)->arena);
        free(*self_p);
        *self_p = NULL;
    }
}

void
keytab_reset(keytab_t *self)
{
    if (self->n > 0 && self->slots)
        memset(self->slots, 0, self->nslots * sizeof *self->slots);
    self->n = 0;
    self->alen = 0;
}

static void
s_rehash(keytab_t *self, size_t nslots)
{
    free(self->slots);
    self->slots = xcalloc(nslots, sizeof *self->slots);
    self->nslots = nslots;
    for (size_t i = 0; i < self->n; i++) {
        size_t s = self->keys[i].hash & (nslots - 1);
        while (self->slots[s])
            s = (s + 1) & (nslots - 1);
        self->slots[s] = (uint32_t)i + 1;
    }
}

uint32_t
keytab_add_hashed(keytab_t *self, const char *s, size_t len, uint64_t hash,
                  bool *added)
{
    size_t slot;
    struct s_key *k;

    if (added)
        *added = false;
    if (self->nslots == 0)
        s_rehash(self, 64);
    slot = hash & (self->nslots - 1);
    while (self->slots[slot]) {
        k = &self->keys[self->slots[slot] - 1];
        if (k->hash == hash && k->len == len &&
            memcmp(self->arena + k->off, s, len) == 0)
            return self->slots[slot] - 1;
        slot = (slot + 1) & (self->nslots - 1);
    }
    if (self->n == self->cap) {
        self->cap = self->cap ? self->cap * 2 : 64;
        self->keys = xrealloc(self->keys, self->cap * sizeof *self->keys);
    }
    if (self->alen + len + 1 > self->acap) {
        self->acap = (self->alen + len + 1) * 2;
        self->arena = xrealloc(self->arena, self->acap);
    }
    if (len > 0)
        memcpy(self->arena + self->alen, s, len);
    self->arena[self->alen + len] = '\0';
    k = &self->keys[self->n];
    k->hash = hash;
    k->off = (uint32_t)self->alen;
    k->len = (uint32_t)len;
    self->alen += len + 1;
    self->slots[slot] = (uint32_t)++self->n;
    if (added)
        *added = true;
    if (self->n * 2 > self->nslots)
        s_rehash(self, self->nslots * 2);
    return (uint32_t)self->n - 1;
}

uint32_t
keytab_add(keytab_t *self, const char *s, size_t len, bool *added)
{
    return keytab_add_hashed(self, s, len, strutil_fnv1a64(s, len), added);
}

size_t
keytab_size(const keytab_t *self)
{
    return self->n;
}

const char *
keytab_str(const keytab_t *self, uint32_t i)
{
    assert(i < self->n);
    return self->arena + self->keys[i].off;
}

size_t
keytab_len(const keytab_t *self, uint32_t i)
{
    assert(i < self->n);
    return self->keys[i].len;
}

uint64_t
keytab_hash(const keytab_t *self, uint32_t i)
{
    assert(i < self->n);
    return self->keys[i].hash;
}

void
keytab_test(bool verbose)
{
    keytab_t *t = keytab_new();
    char buf[32];
    bool added;

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 5000; i++) {
            int len = snprintf(buf, sizeof buf, "k%d", i);
            assert(keytab_add(t, buf, (size_t)len, &added) == (uint32_t)i);
            assert(added);
        }
        for (int i = 4999; i >= 0; i--) {
            int len = snprintf(buf, sizeof buf, "k%d", i);
            assert(keytab_add(t, buf, (size_t)len, &added) == (uint32_t)i);
            assert(!added);
            TEST_STREQ(keytab_str(t, (uint32_t)i), buf);
            assert(keytab_len(t, (uint32_t)i) == (size_t)len);
            assert(keytab_hash(t, (uint32_t)i) == strutil_fnv1a64(buf, (size_t)len));
        }
        assert(keytab_size(t) == 5000);
        keytab_reset(t);
        assert(keytab_size(t) == 0);
    }
    /* The empty string and bytes that differ only in length are keys. */
    assert(keytab_add(t, "", 0, NULL) == 0);
    assert(keytab_add(t, "ab", 1, NULL) == 1);
    assert(keytab_add(t, "ab", 2, NULL) == 2);
    assert(keytab_add(t, "a", 1, NULL) == 1);
    keytab_destroy(&t);
    keytab_destroy(&t);
    assert(t == NULL);
    (void)verbose;
    TEST_OK("keytab");
}
