/*
 * agg_confirm: the table of applied batch sequences (see agg_confirm.h).
 * A handful of producers times lanes: a zhashx keyed "lane/producer".
 */
#include "aggd/agg_confirm.h"
#include "common/test.h"
#include "common/xalloc.h"

struct s_entry {
    char producer[64]; /* sender name */
    uint32_t lane;     /* its lane */
    uint64_t seq;      /* highest contiguous seq applied */
};

struct agg_confirm {
    zhashx_t *map; /* "lane/producer" -> struct s_entry */
};

static void
s_entry_free(void **item)
{
    xfree(item);
}

agg_confirm_t *
agg_confirm_new(void)
{
    agg_confirm_t *self = xcalloc(1, sizeof *self);
    self->map = zhashx_new();
    zhashx_set_destructor(self->map, s_entry_free);
    return self;
}

void
agg_confirm_destroy(agg_confirm_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->map);
        free(*self_p);
        *self_p = NULL;
    }
}

static void
s_key(char *buf, size_t len, const char *producer, uint32_t lane)
{
    snprintf(buf, len, "%u/%s", lane, producer);
}

static struct s_entry *
s_put(agg_confirm_t *self, const char *producer, uint32_t lane, uint64_t seq)
{
    char key[96];
    struct s_entry *e = xcalloc(1, sizeof *e);

    snprintf(e->producer, sizeof e->producer, "%s", producer);
    e->lane = lane;
    e->seq = seq;
    s_key(key, sizeof key, e->producer, lane);
    zhashx_update(self->map, key, e);
    return e;
}

agg_confirm_t *
agg_confirm_dup(const agg_confirm_t *self)
{
    agg_confirm_t *copy = agg_confirm_new();
    zhashx_t *map = self->map;

    for (struct s_entry *e = zhashx_first(map); e; e = zhashx_next(map))
        s_put(copy, e->producer, e->lane, e->seq);
    return copy;
}

enum agg_confirm_verdict
agg_confirm_accept(agg_confirm_t *self, const char *producer, uint32_t lane,
                   uint64_t seq)
{
    char key[96];
    struct s_entry *e;

    s_key(key, sizeof key, producer, lane);
    if ((e = zhashx_lookup(self->map, key)) == NULL) {
        if (zhashx_size(self->map) >= AGG_CONFIRM_MAX)
            return AGG_CONFIRM_FULL;
        s_put(self, producer, lane, seq);
        return AGG_CONFIRM_NEXT;
    }
    if (seq <= e->seq)
        return AGG_CONFIRM_DUP;
    if (seq != e->seq + 1)
        return AGG_CONFIRM_GAP;
    e->seq = seq;
    return AGG_CONFIRM_NEXT;
}

uint64_t
agg_confirm_seq(const agg_confirm_t *self, const char *producer, uint32_t lane)
{
    char key[96];
    struct s_entry *e;

    s_key(key, sizeof key, producer, lane);
    e = zhashx_lookup(self->map, key);
    return e ? e->seq : 0;
}

size_t
agg_confirm_size(const agg_confirm_t *self)
{
    return zhashx_size(self->map);
}

msg_batch_t *
agg_confirm_batch(const agg_confirm_t *self, const char *producer,
                  uint32_t lane)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_CONFIRM);
    struct msg_envelope *env = msg_batch_env(b);
    zhashx_t *map = self->map;

    snprintf(env->producer, sizeof env->producer, "%s", producer);
    env->lane = lane;
    for (struct s_entry *e = zhashx_first(map); e; e = zhashx_next(map))
        msg_batch_add_confirm(b, e->producer, e->lane, e->seq);
    return b;
}

int
agg_confirm_load(agg_confirm_t *self, msg_batch_t *b)
{
    if (msg_batch_type(b) != MSG_TYPE_CONFIRM)
        return -1;
    for (size_t i = 0; i < msg_batch_size(b); i++) {
        const struct msg_confirm *c = msg_batch_confirm(b, i);
        s_put(self, msg_batch_str(b, c->producer_off), c->lane, c->seq);
    }
    return 0;
}

void
agg_confirm_test(bool verbose)
{
    agg_confirm_t *t = agg_confirm_new(), *copy;
    msg_batch_t *b;

    /* The first batch of a producer starts its entry. */
    assert(agg_confirm_accept(t, "ingestd.0", 0, 5) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 6) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 6) == AGG_CONFIRM_DUP);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 2) == AGG_CONFIRM_DUP);
    /* 7 died in a queue: 8 is applied but the entry stays at 6. */
    assert(agg_confirm_accept(t, "ingestd.0", 0, 8) == AGG_CONFIRM_GAP);
    assert(agg_confirm_seq(t, "ingestd.0", 0) == 6);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 7) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 8) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.1", 0, 1) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(t) == 2 && agg_confirm_seq(t, "x", 0) == 0);
    copy = agg_confirm_dup(t);
    assert(agg_confirm_accept(t, "ingestd.1", 0, 2) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_seq(copy, "ingestd.1", 0) == 1);
    /* Through a batch and back, as a checkpoint holds it. */
    b = agg_confirm_batch(t, "aggd.0", 0);
    assert(msg_batch_size(b) == 2);
    agg_confirm_destroy(&copy);
    copy = agg_confirm_new();
    assert(agg_confirm_load(copy, b) == 0);
    assert(agg_confirm_seq(copy, "ingestd.0", 0) == 8);
    assert(agg_confirm_seq(copy, "ingestd.1", 0) == 2);
    msg_batch_destroy(&b);
    agg_confirm_destroy(&copy);
    /* A full table refuses new producers, not the ones it holds. */
    for (int i = 0; agg_confirm_size(t) < AGG_CONFIRM_MAX; i++) {
        char p[32];
        snprintf(p, sizeof p, "made.up.%d", i);
        assert(agg_confirm_accept(t, p, 0, 1) == AGG_CONFIRM_NEXT);
    }
    assert(agg_confirm_accept(t, "one.more", 0, 1) == AGG_CONFIRM_FULL);
    assert(agg_confirm_accept(t, "ingestd.0", 1, 1) == AGG_CONFIRM_FULL);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 9) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(t) == AGG_CONFIRM_MAX);
    agg_confirm_destroy(&t);
    assert(t == NULL);
    (void)verbose;
    TEST_OK("agg_confirm");
}
