/*
 * anomaly_hst: half-space trees (see anomaly_hst.h).
 *
 * Trees are complete binary trees stored as arrays (children of n are
 * 2n+1 and 2n+2). Following the paper, each tree gets a random work
 * space around [0,1]^d and splits each node's range in half on a random
 * dimension. The scoring walk stops at the first node whose reference
 * mass is below S_SIZE_LIMIT or at the leaves, adding mass * 2^depth.
 */
#include "anomalyd/anomaly_hst.h"
#include "anomalyd/anomaly_case.h"

#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define S_NODES ((1 << (ANOMALY_HST_DEPTH + 1)) - 1)
#define S_INNER ((1 << ANOMALY_HST_DEPTH) - 1)
#define S_SIZE_LIMIT 4
/* Squash: z of +-S_SPAN maps to the edges of [0,1]. */
#define S_SPAN 6.0
/* Weight of a reading in the feature standardisers. */
#define S_NORM_ALPHA 0.01
/* Weight of a reading in the short moving level. */
#define S_SHORT_LAMBDA 0.3
#define S_SEED 0x5eed5eedULL

/* Shared tree shape: split dimension and value of every inner node. */
static struct {
    bool ready;
    uint8_t dim[ANOMALY_HST_TREES][S_INNER];
    double split[ANOMALY_HST_TREES][S_INNER];
} s_shape;

/* Running mean and variance of one feature. */
struct s_norm {
    double mean, var;
};

struct anomaly_hst {
    uint16_t ref[ANOMALY_HST_TREES][S_NODES]; /* previous window's mass */
    uint16_t lat[ANOMALY_HST_TREES][S_NODES]; /* current window's mass */
    struct s_norm norm[ANOMALY_HST_FEATURES]; /* feature standardisers */
    double prev;                              /* previous reading */
    double shortlvl;                          /* short moving level */
    size_t count;                             /* readings learnt */
    size_t inwin; /* readings in the current window */
    bool has_ref; /* a full reference window exists */
};

static uint64_t
s_rand(uint64_t *st)
{
    /* xorshift64*: deterministic, good enough for tree shapes. */
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return *st * 2685821657736338717ULL;
}

static double
s_unif(uint64_t *st)
{
    return (double)(s_rand(st) >> 11) / 9007199254740992.0;
}

static void
s_build_shape(void)
{
    uint64_t st = S_SEED;
    for (int t = 0; t < ANOMALY_HST_TREES; t++) {
        double lo[S_NODES][ANOMALY_HST_FEATURES];
        double hi[S_NODES][ANOMALY_HST_FEATURES];
        for (int d = 0; d < ANOMALY_HST_FEATURES; d++) {
            double s = s_unif(&st);
            double w = 2 * fmax(s, 1 - s);
            lo[0][d] = s - w;
            hi[0][d] = s + w;
        }
        for (int n = 0; n < S_INNER; n++) {
            int d = (int)(s_rand(&st) % ANOMALY_HST_FEATURES);
            double mid = (lo[n][d] + hi[n][d]) / 2;
            s_shape.dim[t][n] = (uint8_t)d;
            s_shape.split[t][n] = mid;
            for (int c = 1; c <= 2; c++) {
                memcpy(lo[2 * n + c], lo[n], sizeof lo[n]);
                memcpy(hi[2 * n + c], hi[n], sizeof hi[n]);
            }
            hi[2 * n + 1][d] = mid;
            lo[2 * n + 2][d] = mid;
        }
    }
    s_shape.ready = true;
}

anomaly_hst_t *
anomaly_hst_new(void)
{
    if (!s_shape.ready)
        s_build_shape();
    return xcalloc(1, sizeof(anomaly_hst_t));
}

void
anomaly_hst_destroy(anomaly_hst_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

/* Standardise v with n (using weight a for learning) and squash to [0,1]. */
static double
s_feature(struct s_norm *n, double v, double a, bool learn)
{
    double sd = sqrt(n->var);
    double z = sd > 1e-12 * fmax(1, fabs(n->mean)) ? (v - n->mean) / sd
               : v == n->mean                      ? 0
               : v > n->mean                       ? S_SPAN
                                                   : -S_SPAN;
    if (learn) {
        double d = v - n->mean;
        n->mean += a * d;
        n->var = (1 - a) * (n->var + a * d * d);
    }
    return fmin(1, fmax(0, 0.5 + z / (2 * S_SPAN)));
}

double
anomaly_hst_update(anomaly_hst_t *self, double value)
{
    assert(self);
    if (!isfinite(value))
        return NAN;
    if (self->count == 0) {
        self->prev = self->shortlvl = value;
        for (int d = 0; d < ANOMALY_HST_FEATURES; d++)
            self->norm[d].mean = d == 1 ? 0 : value;
    }
    self->count++;
    double a = fmax(S_NORM_ALPHA, 1.0 / (double)self->count);
    self->shortlvl += S_SHORT_LAMBDA * (value - self->shortlvl);
    double x[ANOMALY_HST_FEATURES];
    x[0] = s_feature(&self->norm[0], value, a, true);
    x[1] = s_feature(&self->norm[1], value - self->prev, a, true);
    x[2] = s_feature(&self->norm[2], self->shortlvl, a, true);
    self->prev = value;

    double score = 0;
    for (int t = 0; t < ANOMALY_HST_TREES; t++) {
        int n = 0, depth = 0;
        bool scored = false;
        for (;;) {
            if (!scored && self->has_ref &&
                (self->ref[t][n] < S_SIZE_LIMIT ||
                 depth == ANOMALY_HST_DEPTH)) {
                score += (double)self->ref[t][n] * (double)(1 << depth);
                scored = true;
            }
            if (self->lat[t][n] < UINT16_MAX)
                self->lat[t][n]++;
            if (depth == ANOMALY_HST_DEPTH)
                break;
            n = x[s_shape.dim[t][n]] < s_shape.split[t][n] ? 2 * n + 1
                                                           : 2 * n + 2;
            depth++;
        }
    }
    double stat = NAN;
    if (self->has_ref) {
        /* A typical reading's score is about trees * window (the mass
         * halves while the weight doubles at each level). */
        double typical = (double)ANOMALY_HST_TREES * ANOMALY_HST_WINDOW;
        stat = fmax(0, log2(typical / (score + 1)));
    }
    if (++self->inwin == ANOMALY_HST_WINDOW) {
        memcpy(self->ref, self->lat, sizeof self->ref);
        memset(self->lat, 0, sizeof self->lat);
        self->inwin = 0;
        self->has_ref = true;
    }
    return stat;
}

size_t
anomaly_hst_state_size(const anomaly_hst_t *self)
{
    return sizeof *self;
}

void
anomaly_hst_test(bool verbose)
{
    /* Golden spike and step: the isolation statistic at the anomaly is
     * well above anything before it. */
    const char *cases[] = {"spike", "step", "gaps"};
    for (int k = 0; k < 3; k++) {
        char path[128];
        snprintf(path, sizeof path, "tests/cases/anomaly/%s.csv", cases[k]);
        struct anomaly_case *c = anomaly_case_load(path);
        assert(c);
        anomaly_hst_t *h = anomaly_hst_new();
        double in = 0, before = 0;
        bool seen = false;
        for (size_t i = 0; i < c->n; i++) {
            double v = anomaly_hst_update(h, c->value[i]);
            seen = seen || c->label[i];
            if (isnan(v))
                continue;
            if (c->label[i])
                in = fmax(in, v);
            else if (!seen)
                before = fmax(before, v);
        }
        if (verbose)
            printf("   %s: before %.2f at %.2f\n", cases[k], before, in);
        assert(in > before + 1);
        assert(anomaly_hst_state_size(h) < 16384);
        anomaly_hst_destroy(&h);
        anomaly_hst_destroy(&h);
        anomaly_case_destroy(&c);
    }
    TEST_OK("anomaly_hst");
}
