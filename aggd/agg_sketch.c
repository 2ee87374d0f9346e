/*
 * agg_sketch: DDSketch (see agg_sketch.h). Each store is a dense array of
 * counts over a contiguous range of bucket indices, grown at either end;
 * sensor data spans a few hundred buckets at 1 %.
 */
#include "aggd/agg_sketch.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct s_store {
    uint64_t *counts; /* counts[i] is bucket offset + i */
    int32_t offset;   /* index of counts[0] */
    size_t n;         /* buckets held */
};

struct agg_sketch {
    struct s_store pos;   /* values > 0 */
    struct s_store neg;   /* values < 0, by their absolute value */
    uint64_t zeros;       /* values == 0 */
    uint64_t count;       /* all values */
    double gamma;         /* (1 + alpha) / (1 - alpha) */
};

agg_sketch_t *
agg_sketch_new(void)
{
    agg_sketch_t *self = xcalloc(1, sizeof *self);
    self->gamma = (1 + AGG_SKETCH_ALPHA) / (1 - AGG_SKETCH_ALPHA);
    return self;
}

void
agg_sketch_destroy(agg_sketch_t **self_p)
{
    if (self_p && *self_p) {
        free((*self_p)->pos.counts);
        free((*self_p)->neg.counts);
        free(*self_p);
        *self_p = NULL;
    }
}

/* Make room for index i and return its counter. */
static uint64_t *
s_slot(struct s_store *s, int32_t i)
{
    if (s->n == 0) {
        s->counts = xcalloc(1, sizeof *s->counts);
        s->offset = i;
        s->n = 1;
    } else if (i < s->offset) {
        size_t grow = (size_t)(s->offset - i);
        s->counts = xrealloc(s->counts, (s->n + grow) * sizeof *s->counts);
        memmove(s->counts + grow, s->counts, s->n * sizeof *s->counts);
        memset(s->counts, 0, grow * sizeof *s->counts);
        s->n += grow;
        s->offset = i;
    } else if ((size_t)(i - s->offset) >= s->n) {
        size_t want = (size_t)(i - s->offset) + 1;
        s->counts = xrealloc(s->counts, want * sizeof *s->counts);
        memset(s->counts + s->n, 0, (want - s->n) * sizeof *s->counts);
        s->n = want;
    }
    return &s->counts[i - s->offset];
}

/* ln(gamma) for alpha = 0.01, as a constant so that every sketch and
 * every rollup bucket (agg_rollup) maps a value to the same index; the
 * selftest checks it against the formula. */
#define S_LN_GAMMA 0.020000666706669435

int32_t
agg_sketch_index(double v)
{
    return (int32_t)ceil(log(v) / S_LN_GAMMA);
}

/* agg_sketch_index_near: for index k, the doubles in [s_near_lo[k],
 * s_near_hi[k]] lie at least 1e-9 (relative) inside the bucket's bounds
 * gamma^(k-1) and gamma^k. Their log is then 5e-8 of an index step or
 * more from an integer, and log's and the division's rounding (1e-12 of a
 * step at most for indices within S_NEAR_MAX) cannot move it across: the
 * ceil is k, as agg_sketch_index computes it. Values nearer a bound, or
 * outside the table, take the logarithm. */
#define S_NEAR_MAX 2048 /* indices -S_NEAR_MAX .. S_NEAR_MAX - 1 */
#define S_NEAR_MARGIN 1e-9
static double s_near_lo[2 * S_NEAR_MAX], s_near_hi[2 * S_NEAR_MAX];
static pthread_once_t s_near_once = PTHREAD_ONCE_INIT;
static int s_near_ready; /* read without the once: set after the tables */

static void
s_near_init(void)
{
    for (int k = -S_NEAR_MAX; k < S_NEAR_MAX; k++) {
        s_near_lo[k + S_NEAR_MAX] = exp((k - 1) * S_LN_GAMMA) * (1 + S_NEAR_MARGIN);
        s_near_hi[k + S_NEAR_MAX] = exp(k * S_LN_GAMMA) * (1 - S_NEAR_MARGIN);
    }
    __atomic_store_n(&s_near_ready, 1, __ATOMIC_RELEASE);
}

int32_t
agg_sketch_index_near(double v, int32_t *hint)
{
    int32_t k = *hint;

    if (!__atomic_load_n(&s_near_ready, __ATOMIC_ACQUIRE))
        pthread_once(&s_near_once, s_near_init);
    for (int d = 0; d < 3; d++) { /* k, then k + 1, then k - 1 */
        int64_t j = (int64_t)k + (d == 1) - (d == 2); /* k may be extreme */
        if (j >= -S_NEAR_MAX && j < S_NEAR_MAX &&
            v >= s_near_lo[j + S_NEAR_MAX] && v <= s_near_hi[j + S_NEAR_MAX])
            return *hint = (int32_t)j;
    }
    return *hint = agg_sketch_index(v);
}

void
agg_sketch_add_index(agg_sketch_t *self, int sign, int32_t i, uint64_t count)
{
    if (sign > 0)
        *s_slot(&self->pos, i) += count;
    else if (sign < 0)
        *s_slot(&self->neg, i) += count;
    else
        self->zeros += count;
    self->count += count;
}

void
agg_sketch_add(agg_sketch_t *self, double v)
{
    if (!isfinite(v))
        return;
    if (v > 0)
        (*s_slot(&self->pos, agg_sketch_index(v)))++;
    else if (v < 0)
        (*s_slot(&self->neg, agg_sketch_index(-v)))++;
    else
        self->zeros++;
    self->count++;
}

static void
s_store_merge(struct s_store *a, const struct s_store *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->counts[i])
            *s_slot(a, b->offset + (int32_t)i) += b->counts[i];
}

void
agg_sketch_merge(agg_sketch_t *self, const agg_sketch_t *other)
{
    s_store_merge(&self->pos, &other->pos);
    s_store_merge(&self->neg, &other->neg);
    self->zeros += other->zeros;
    self->count += other->count;
}

uint64_t
agg_sketch_count(const agg_sketch_t *self)
{
    return self->count;
}

/* The midpoint of bucket i in the relative sense: within alpha of every
 * value the bucket holds. */
static double
s_value(const agg_sketch_t *self, int32_t i)
{
    return 2 * pow(self->gamma, i) / (self->gamma + 1);
}

double
agg_sketch_quantile(const agg_sketch_t *self, double q)
{
    uint64_t rank, seen = 0;

    if (self->count == 0 || !(q >= 0 && q <= 1))
        return NAN;
    rank = (uint64_t)floor(q * (double)(self->count - 1));
    for (size_t k = self->neg.n; k-- > 0;) {
        seen += self->neg.counts[k];
        if (seen > rank)
            return -s_value(self, self->neg.offset + (int32_t)k);
    }
    seen += self->zeros;
    if (seen > rank)
        return 0;
    for (size_t k = 0; k < self->pos.n; k++) {
        seen += self->pos.counts[k];
        if (seen > rank)
            return s_value(self, self->pos.offset + (int32_t)k);
    }
    return s_value(self, self->pos.offset + (int32_t)self->pos.n - 1);
}

size_t
agg_sketch_bytes(const agg_sketch_t *self)
{
    return sizeof *self + (self->pos.n + self->neg.n) * sizeof(uint64_t);
}

/* [first non-zero index, its count, ..., last non-zero count], or NULL. */
static json_t *
s_store_json(const struct s_store *s)
{
    size_t a = 0, z = s->n;
    json_t *arr;

    while (a < z && s->counts[a] == 0)
        a++;
    while (z > a && s->counts[z - 1] == 0)
        z--;
    if (a == z)
        return NULL;
    arr = json_array();
    json_array_append_new(arr, json_integer(s->offset + (int32_t)a));
    for (size_t i = a; i < z; i++)
        json_array_append_new(arr, json_integer((json_int_t)s->counts[i]));
    return arr;
}

json_t *
agg_sketch_to_json(const agg_sketch_t *self)
{
    json_t *o = json_object(), *p = s_store_json(&self->pos),
           *n = s_store_json(&self->neg);

    json_object_set_new(o, "zeros", json_integer((json_int_t)self->zeros));
    if (p)
        json_object_set_new(o, "pos", p);
    if (n)
        json_object_set_new(o, "neg", n);
    return o;
}

/* A store's array is valid: an index whose run stays in the range of
 * indices a double can have, then non-negative integer counts. */
static bool
s_store_json_ok(const json_t *a)
{
    json_int_t first;

    if (a == NULL)
        return true;
    if (!json_is_array(a) || json_array_size(a) < 2 ||
        json_array_size(a) > AGG_SKETCH_JSON_MAX + 1 ||
        !json_is_integer(json_array_get(a, 0)))
        return false;
    first = json_integer_value(json_array_get(a, 0));
    if (first < -AGG_SKETCH_JSON_MAX ||
        first + (json_int_t)json_array_size(a) > AGG_SKETCH_JSON_MAX)
        return false;
    for (size_t i = 1; i < json_array_size(a); i++)
        if (!json_is_integer(json_array_get(a, i)) ||
            json_integer_value(json_array_get(a, i)) < 0)
            return false;
    return true;
}

int
agg_sketch_merge_json(agg_sketch_t *self, const json_t *j)
{
    const json_t *z = json_object_get(j, "zeros");
    const char *names[] = {"pos", "neg"};

    if (!json_is_object(j) || !json_is_integer(z) || json_integer_value(z) < 0 ||
        !s_store_json_ok(json_object_get(j, "pos")) ||
        !s_store_json_ok(json_object_get(j, "neg")))
        return -1;
    agg_sketch_add_index(self, 0, 0, (uint64_t)json_integer_value(z));
    for (int s = 0; s < 2; s++) {
        const json_t *a = json_object_get(j, names[s]);
        int32_t first = (int32_t)json_integer_value(json_array_get(a, 0));
        for (size_t i = 1; i < json_array_size(a); i++) {
            json_int_t c = json_integer_value(json_array_get(a, i));
            if (c > 0)
                agg_sketch_add_index(self, s ? -1 : 1, first + (int32_t)i - 1,
                                     (uint64_t)c);
        }
    }
    return 0;
}

/* Two sketches answer every quantile alike. */
static void
s_test_same(const agg_sketch_t *a, const agg_sketch_t *b)
{
    assert(a->count == b->count);
    for (int q = 0; q <= 1000; q++) {
        double x = agg_sketch_quantile(a, q / 1000.0),
               y = agg_sketch_quantile(b, q / 1000.0);
        assert(x == y || (isnan(x) && isnan(y)));
    }
}

/* JSON round trip and the merge of lanes: four sketches of a split
 * multiset, each through JSON and merged, answer as the sketch of the
 * whole does, bit for bit; malformed forms are refused untouched. */
static void
s_test_json(void)
{
    agg_sketch_t *whole = agg_sketch_new(), *part[4], *merged = agg_sketch_new();
    static const char *bad[] = {
        "[]", "{}", "{\"zeros\": -1}", "{\"zeros\": 0, \"pos\": [3]}",
        "{\"zeros\": 0, \"pos\": [1, -2]}", "{\"zeros\": 0, \"neg\": [1, 2.5]}",
        "{\"zeros\": 0, \"pos\": [99999999, 1]}", "{\"zeros\": 0, \"pos\": {}}"};

    for (int i = 0; i < 4; i++)
        part[i] = agg_sketch_new();
    for (int i = 0; i < 5000; i++) {
        double v = (i % 7 == 0) ? 0 : sin(i * 0.37) * pow(10, (i % 9) - 4);
        agg_sketch_add(whole, v);
        agg_sketch_add(part[(i * 2654435761u) % 4], v);
    }
    for (int i = 0; i < 4; i++) {
        json_t *j = agg_sketch_to_json(part[i]);
        char *txt = json_dumps(j, JSON_COMPACT);
        json_t *back = json_loads(txt, 0, NULL);
        assert(agg_sketch_merge_json(merged, back) == 0);
        json_decref(back);
        json_decref(j);
        free(txt);
        agg_sketch_destroy(&part[i]);
    }
    s_test_same(whole, merged);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], 0, NULL);
        assert(j && agg_sketch_merge_json(merged, j) == -1);
        json_decref(j);
    }
    s_test_same(whole, merged);
    /* The empty sketch is {"zeros": 0}. */
    agg_sketch_t *empty = agg_sketch_new();
    json_t *e = agg_sketch_to_json(empty);
    char *txt = json_dumps(e, JSON_COMPACT);
    TEST_STREQ(txt, "{\"zeros\":0}");
    free(txt);
    json_decref(e);
    agg_sketch_destroy(&empty);
    agg_sketch_destroy(&whole);
    agg_sketch_destroy(&merged);
}

static int
s_dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* 1 M values of three shapes, added to two sketches that are then merged:
 * every quantile within 1 % of the exact value of its rank. */
void
agg_sketch_test(bool verbose)
{
    enum { N = 1000000 };
    static const double qs[] = {0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1};
    double *v = xmalloc(N * sizeof *v), worst = 0;
    uint64_t seed = 42;

    /* agg_sketch_index_near agrees with agg_sketch_index: random walks
     * (the hint mostly right), jumps, and values a few ulps either side
     * of every bucket bound the table covers and beyond it. */
    {
        int32_t hint = 0;
        double x = 25;
        for (int i = 0; i < N; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            double u = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
            x = i % 1000 == 0 ? exp((u - 0.5) * 200) : fabs(x + (u - 0.5) * x / 20);
            assert(agg_sketch_index_near(x, &hint) == agg_sketch_index(x));
        }
        for (int k = -S_NEAR_MAX - 5; k < S_NEAR_MAX + 5; k++) {
            double bound = exp(k * S_LN_GAMMA), y = bound;
            for (int s = 0; s < 4; s++)
                y = nextafter(y, 0);
            for (int s = 0; s < 8; s++, y = nextafter(y, INFINITY)) {
                int32_t h1 = k, h2 = k + 1, h3 = k - 1;
                int32_t want = agg_sketch_index(y);
                assert(agg_sketch_index_near(y, &h1) == want);
                assert(agg_sketch_index_near(y, &h2) == want);
                assert(agg_sketch_index_near(y, &h3) == want);
            }
        }
        /* Hints at the ends of the index range (what a subnormal or an
         * infinity leaves behind) are tried without overflowing. */
        int32_t lo = INT32_MIN, hi = INT32_MAX;
        assert(agg_sketch_index_near(25.0, &lo) == agg_sketch_index(25.0));
        assert(agg_sketch_index_near(25.0, &hi) == agg_sketch_index(25.0));
    }
    for (int shape = 0; shape < 3; shape++) {
        agg_sketch_t *a = agg_sketch_new(), *b = agg_sketch_new();
        for (int i = 0; i < N; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            double u = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            double u2 = ((double)(seed >> 11) + 0.5) / 9007199254740992.0;
            double g = sqrt(-2 * log(u)) * cos(2 * M_PI * u2);
            v[i] = shape == 0 ? u * 100                /* uniform */
                   : shape == 1 ? exp(3 * g)           /* heavy tail */
                                : round(g * 500) / 100; /* 2 decimals, +-, 0 */
            agg_sketch_add(i % 2 ? a : b, v[i]);
        }
        agg_sketch_merge(a, b);
        assert(agg_sketch_count(a) == N);
        qsort(v, N, sizeof *v, s_dcmp);
        for (size_t k = 0; k < sizeof qs / sizeof qs[0]; k++) {
            double exact = v[(size_t)floor(qs[k] * (N - 1))];
            double est = agg_sketch_quantile(a, qs[k]);
            double err = exact == 0 ? fabs(est) : fabs(est - exact) / fabs(exact);
            if (err > worst)
                worst = err;
            assert(err <= AGG_SKETCH_ALPHA + 1e-12);
        }
        if (verbose)
            printf("shape %d: %zu bytes\n", shape, agg_sketch_bytes(a));
        agg_sketch_destroy(&a);
        agg_sketch_destroy(&b);
    }
    if (verbose)
        printf("worst relative error %.5f\n", worst);
    agg_sketch_t *e = agg_sketch_new();
    TEST_NEAR(log(e->gamma), S_LN_GAMMA, 1e-17);
    assert(isnan(agg_sketch_quantile(e, 0.5)));
    agg_sketch_destroy(&e);
    free(v);
    s_test_json();
    TEST_OK("agg_sketch");
}
