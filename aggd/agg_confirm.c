/*
 * agg_confirm: the table of applied batch sequences (see agg_confirm.h).
 * A handful of producers times lanes: a zhashx keyed "lane/producer".
 */
#include "aggd/agg_confirm.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

struct s_entry {
    char producer[64]; /* sender name */
    uint32_t lane;     /* its lane */
    uint64_t seq;      /* highest contiguous seq applied */
    int64_t active;    /* mono ns of its last batch */
};

struct agg_confirm {
    zhashx_t *map;         /* "lane/producer" -> struct s_entry */
    uint64_t forgotten;    /* idle entries given up for new producers */
    char last_forgotten[96]; /* key of the last of them */
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
s_put(agg_confirm_t *self, const char *producer, uint32_t lane, uint64_t seq,
      int64_t active)
{
    char key[96];
    struct s_entry *e = xcalloc(1, sizeof *e);

    snprintf(e->producer, sizeof e->producer, "%s", producer);
    e->lane = lane;
    e->seq = seq;
    e->active = active;
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
        s_put(copy, e->producer, e->lane, e->seq, e->active);
    copy->forgotten = self->forgotten;
    memcpy(copy->last_forgotten, self->last_forgotten,
           sizeof copy->last_forgotten);
    return copy;
}

/* Forget the entry idle longest if it has been idle AGG_CONFIRM_IDLE_NS
 * at now. A scan of at most AGG_CONFIRM_MAX entries, only for a new
 * producer while the table is full. Returns whether one went. */
static bool
s_forget_idle(agg_confirm_t *self, int64_t now)
{
    zhashx_t *map = self->map;
    struct s_entry *oldest = NULL;
    char key[96];

    for (struct s_entry *e = zhashx_first(map); e; e = zhashx_next(map))
        if (oldest == NULL || e->active < oldest->active)
            oldest = e;
    if (oldest == NULL || now - oldest->active < AGG_CONFIRM_IDLE_NS)
        return false;
    s_key(key, sizeof key, oldest->producer, oldest->lane);
    memcpy(self->last_forgotten, key, sizeof key);
    zhashx_delete(map, key);
    self->forgotten++;
    return true;
}

enum agg_confirm_verdict
agg_confirm_accept(agg_confirm_t *self, const char *producer, uint32_t lane,
                   uint64_t seq, int64_t now, bool grow,
                   const uint64_t *acked)
{
    char key[96];
    struct s_entry *e;

    s_key(key, sizeof key, producer, lane);
    if ((e = zhashx_lookup(self->map, key)) == NULL) {
        if (!grow && zhashx_size(self->map) >= AGG_CONFIRM_MAX &&
            !s_forget_idle(self, now))
            return AGG_CONFIRM_FULL;
        if (acked == NULL) {
            s_put(self, producer, lane, seq, now);
            return AGG_CONFIRM_NEXT;
        }
        e = s_put(self, producer, lane, *acked, now);
    } else if (acked && *acked > e->seq) {
        e->seq = *acked;
    }
    if (now > e->active)
        e->active = now;
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

uint64_t
agg_confirm_forgotten(const agg_confirm_t *self, const char **last)
{
    if (last)
        *last = self->last_forgotten;
    return self->forgotten;
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
    int64_t now = clock_mono_ns();

    if (msg_batch_type(b) != MSG_TYPE_CONFIRM)
        return -1;
    for (size_t i = 0; i < msg_batch_size(b); i++) {
        const struct msg_confirm *c = msg_batch_confirm(b, i);
        s_put(self, msg_batch_str(b, c->producer_off), c->lane, c->seq, now);
    }
    return 0;
}

void
agg_confirm_test(bool verbose)
{
    agg_confirm_t *t = agg_confirm_new(), *copy;
    msg_batch_t *b;
    const int64_t HOUR = AGG_CONFIRM_IDLE_NS;
    int64_t T0 = 1000;
    const char *last;

    /* The first batch of a producer starts its entry. */
    assert(agg_confirm_accept(t, "ingestd.0", 0, 5, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 6, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 6, T0, false, NULL) == AGG_CONFIRM_DUP);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 2, T0, false, NULL) == AGG_CONFIRM_DUP);
    /* 7 died in a queue: 8 is applied but the entry stays at 6. */
    assert(agg_confirm_accept(t, "ingestd.0", 0, 8, T0, false, NULL) == AGG_CONFIRM_GAP);
    assert(agg_confirm_seq(t, "ingestd.0", 0) == 6);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 7, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 8, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "ingestd.1", 0, 1, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(t) == 2 && agg_confirm_seq(t, "x", 0) == 0);
    /* With the producer's confirmed seq: a new producer whose batches
     * 4 and 5 died in a queue is not confirmed past them by 6 ... */
    uint64_t acked = 3;
    assert(agg_confirm_accept(t, "ingestd.2", 0, 6, T0, false, &acked) ==
           AGG_CONFIRM_GAP);
    assert(agg_confirm_seq(t, "ingestd.2", 0) == 3);
    assert(agg_confirm_accept(t, "ingestd.2", 0, 3, T0, false, &acked) ==
           AGG_CONFIRM_DUP);
    assert(agg_confirm_accept(t, "ingestd.2", 0, 4, T0, false, &acked) ==
           AGG_CONFIRM_NEXT);
    /* ... and an entry behind it (a backup restored) moves up to it. */
    acked = 40;
    assert(agg_confirm_accept(t, "ingestd.2", 0, 41, T0, false, &acked) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_seq(t, "ingestd.2", 0) == 41);
    acked = 30; /* a resend made before: no step back */
    assert(agg_confirm_accept(t, "ingestd.2", 0, 42, T0, false, &acked) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_seq(t, "ingestd.2", 0) == 42);
    zhashx_delete(t->map, "0/ingestd.2");
    copy = agg_confirm_dup(t);
    assert(agg_confirm_accept(t, "ingestd.1", 0, 2, T0, false, NULL) == AGG_CONFIRM_NEXT);
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
        assert(agg_confirm_accept(t, p, 0, 1, T0 + 1, false, NULL) ==
               AGG_CONFIRM_NEXT);
    }
    assert(agg_confirm_accept(t, "one.more", 0, 1, T0, false, NULL) == AGG_CONFIRM_FULL);
    assert(agg_confirm_accept(t, "ingestd.0", 1, 1, T0, false, NULL) == AGG_CONFIRM_FULL);
    assert(agg_confirm_accept(t, "ingestd.0", 0, 9, T0, false, NULL) == AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(t) == AGG_CONFIRM_MAX);
    /* The WAL's replay adds beyond the bound what the live run added. */
    copy = agg_confirm_dup(t);
    assert(agg_confirm_accept(copy, "one.more", 0, 4, T0, true, NULL) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(copy) == AGG_CONFIRM_MAX + 1);
    agg_confirm_destroy(&copy);
    /* A new producer takes the place of the entry idle longest
     * (ingestd.1, last active at T0), and only of it, once that one has
     * been idle an hour; then the entries idle longest go first, and
     * ingestd.0, active since, outlives them. */
    assert(agg_confirm_accept(t, "ingestd.0", 0, 10, T0 + HOUR - 1, false, NULL) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "made.up.0", 0, 2, T0 + 2, false, NULL) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_accept(t, "one.more", 0, 1, T0 + HOUR - 1, false, NULL) ==
           AGG_CONFIRM_FULL);
    assert(agg_confirm_forgotten(t, NULL) == 0);
    assert(agg_confirm_accept(t, "one.more", 0, 7, T0 + HOUR, false, NULL) ==
           AGG_CONFIRM_NEXT);
    assert(agg_confirm_size(t) == AGG_CONFIRM_MAX);
    assert(agg_confirm_forgotten(t, &last) == 1 && strcmp(last, "0/ingestd.1") == 0);
    assert(agg_confirm_seq(t, "ingestd.1", 0) == 0);
    assert(agg_confirm_seq(t, "one.more", 0) == 7);
    for (int i = 0; i < AGG_CONFIRM_MAX - 2; i++) {
        char p[32];
        snprintf(p, sizeof p, "newer.%d", i);
        assert(agg_confirm_accept(t, p, 0, 1, T0 + 2 * HOUR, false, NULL) ==
               AGG_CONFIRM_NEXT);
    }
    assert(agg_confirm_forgotten(t, NULL) == AGG_CONFIRM_MAX - 1);
    assert(agg_confirm_seq(t, "ingestd.0", 0) == 10);
    assert(agg_confirm_seq(t, "made.up.0", 0) == 0);
    /* Entries read from a checkpoint are active from then on. */
    b = agg_confirm_batch(t, "aggd.0", 0);
    copy = agg_confirm_new();
    assert(agg_confirm_load(copy, b) == 0);
    msg_batch_destroy(&b);
    T0 = clock_mono_ns();
    assert(agg_confirm_accept(copy, "one.more.time", 0, 1, T0 + HOUR / 2,
                              false, NULL) == AGG_CONFIRM_FULL);
    assert(agg_confirm_accept(copy, "one.more.time", 0, 1, T0 + 2 * HOUR,
                              false, NULL) == AGG_CONFIRM_NEXT);
    agg_confirm_destroy(&copy);
    agg_confirm_destroy(&t);
    assert(t == NULL);
    (void)verbose;
    TEST_OK("agg_confirm");
}
