/*
 * agg_store: in-memory store of readings (see agg_store.h).
 *
 * Appends in time order are O(1); a late point costs a binary search and
 * a memmove within its series, which is fine for the foundation and is
 * what the chunked engine of issue 4 will replace.
 */
#include "aggd/agg_store.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <czmq.h>

struct s_series {
    char *key;   /* canonical key (owned) */
    int64_t *ts; /* ascending timestamps */
    double *v;   /* values */
    size_t n;    /* points */
    size_t cap;  /* allocated points */
};

struct agg_store {
    zhashx_t *series; /* key -> struct s_series */
    size_t points;    /* total points */
};

static void
s_series_free(void **item)
{
    struct s_series *s = *item;
    if (s) {
        free(s->key);
        free(s->ts);
        free(s->v);
        free(s);
        *item = NULL;
    }
}

agg_store_t *
agg_store_new(void)
{
    agg_store_t *self = xcalloc(1, sizeof *self);
    self->series = zhashx_new();
    zhashx_set_destructor(self->series, s_series_free);
    return self;
}

void
agg_store_destroy(agg_store_t **self_p)
{
    if (self_p && *self_p) {
        zhashx_destroy(&(*self_p)->series);
        free(*self_p);
        *self_p = NULL;
    }
}

/* First index with ts[i] >= t. */
static size_t
s_lower(const int64_t *ts, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ts[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int
agg_store_put(agg_store_t *self, const char *key, int64_t ts, double v)
{
    struct s_series *s = zhashx_lookup(self->series, key);
    size_t i;

    if (s == NULL) {
        s = xcalloc(1, sizeof *s);
        s->key = xstrdup(key);
        zhashx_insert(self->series, key, s);
    }
    if (s->n > 0 && ts <= s->ts[s->n - 1]) {
        i = s_lower(s->ts, s->n, ts);
        if (i < s->n && s->ts[i] == ts) {
            s->v[i] = v;
            return 0;
        }
    } else {
        i = s->n;
    }
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->ts = xrealloc(s->ts, s->cap * sizeof *s->ts);
        s->v = xrealloc(s->v, s->cap * sizeof *s->v);
    }
    if (i < s->n) {
        memmove(s->ts + i + 1, s->ts + i, (s->n - i) * sizeof *s->ts);
        memmove(s->v + i + 1, s->v + i, (s->n - i) * sizeof *s->v);
    }
    s->ts[i] = ts;
    s->v[i] = v;
    s->n++;
    self->points++;
    return 1;
}

size_t
agg_store_series(const agg_store_t *self)
{
    return zhashx_size(self->series);
}

size_t
agg_store_points(const agg_store_t *self)
{
    return self->points;
}

size_t
agg_store_select(agg_store_t *self, const char *sel,
                 const struct series_tag *filters, size_t nfilters,
                 int64_t start, int64_t end, struct agg_view **views)
{
    size_t n = 0, cap = 0;
    struct agg_view *out = NULL;
    struct s_series *exact = NULL;

    *views = NULL;
    /* An exact key with no filters is one lookup; anything else scans. */
    if (nfilters == 0 && (exact = zhashx_lookup(self->series, sel)) == NULL &&
        strchr(sel, '{'))
        return 0;
    for (struct s_series *s = exact ? exact : zhashx_first(self->series); s;
         s = exact ? NULL : zhashx_next(self->series)) {
        if (!exact && !series_match(s->key, sel, filters, nfilters))
            continue;
        size_t a = s_lower(s->ts, s->n, start);
        size_t b = end == INT64_MAX ? s->n : s_lower(s->ts, s->n, end);
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            out = xrealloc(out, cap * sizeof *out);
        }
        out[n].key = s->key;
        out[n].ts = s->ts + a;
        out[n].v = s->v + a;
        out[n].n = b > a ? b - a : 0;
        n++;
    }
    *views = out;
    return n;
}

void
agg_store_test(bool verbose)
{
    agg_store_t *st = agg_store_new();
    struct agg_view *v;
    struct series_tag f[] = {{"device", "b"}};

    assert(agg_store_put(st, "t", 10, 1.0) == 1);
    assert(agg_store_put(st, "t", 30, 3.0) == 1);
    assert(agg_store_put(st, "t", 20, 2.0) == 1); /* late point */
    assert(agg_store_put(st, "t", 20, 2.5) == 0); /* duplicate overwrites */
    assert(agg_store_put(st, "x{device=a}", 5, 9) == 1);
    assert(agg_store_put(st, "x{device=b}", 5, 8) == 1);
    assert(agg_store_points(st) == 5 && agg_store_series(st) == 3);
    assert(agg_store_select(st, "t", NULL, 0, 0, INT64_MAX, &v) == 1);
    assert(v[0].n == 3 && v[0].ts[1] == 20 && v[0].v[1] == 2.5);
    free(v);
    assert(agg_store_select(st, "t", NULL, 0, 20, 30, &v) == 1);
    assert(v[0].n == 1 && v[0].v[0] == 2.5); /* end is exclusive */
    free(v);
    assert(agg_store_select(st, "x", NULL, 0, 0, INT64_MAX, &v) == 2);
    free(v);
    assert(agg_store_select(st, "x", f, 1, 0, INT64_MAX, &v) == 1);
    assert(v[0].v[0] == 8);
    free(v);
    assert(agg_store_select(st, "nope", NULL, 0, 0, INT64_MAX, &v) == 0);
    assert(v == NULL);
    agg_store_destroy(&st);
    assert(st == NULL);
    (void)verbose;
    TEST_OK("agg_store");
}
