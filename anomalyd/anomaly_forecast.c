/*
 * anomaly_forecast: Holt-Winters forecast with intervals (see
 * anomaly_forecast.h).
 *
 * Level and trend come from an exponentially weighted least-squares line
 * through the deseasonalised readings (weights decay with time, not with
 * the number of readings, so the model means the same at any sampling
 * rate and after gaps). Holt's smoothing was tried first: with weights
 * slow enough not to follow a daily cycle it lagged and overshot a plain
 * linear trend for days. The sums are kept relative to the latest reading
 * so they stay well conditioned.
 */
#include "anomalyd/anomaly_forecast.h"

#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_BINS 288
#define S_DAY_NS (86400LL * CLOCK_NS_PER_S)
/* Time constant of the weighted regression, seconds (12 h: long enough
 * that a daily cycle's swing does not read as a trend once the season is
 * learnt), and the weight of a day's visit of a season bin, spread over
 * the readings of one visit. */
#define S_TAU 43200.0
#define S_GAMMA_DAY 0.4
#define S_GAMMA_READING(f)                                                     \
    (1 -                                                                       \
     pow(1 - S_GAMMA_DAY, 1 / fmax(1.0, (double)(S_DAY_NS / S_BINS) / 1e9 /    \
                                            fmax((f)->step_s, 1e-9))))
#define S_VAR_ALPHA 0.01  /* residual variance */
#define S_STEP_ALPHA 0.05 /* typical step */

struct anomaly_forecast {
    double s0, s1, s2;     /* exponentially weighted sums of 1, t, t^2 */
    double sy, sty;        /* ... of y and t y (t in s, 0 = last reading) */
    double var;            /* one-step residual variance */
    double step_s;         /* typical gap between readings, seconds */
    int64_t last;          /* last reading, ns */
    int64_t first;         /* first reading, ns */
    size_t count;          /* readings learnt */
    double season[S_BINS]; /* daily seasonal terms */
    uint16_t seen[S_BINS]; /* days each bin was learnt (saturating) */
    uint8_t day[S_BINS];   /* day number (mod 256) a bin was last learnt */
};

anomaly_forecast_t *
anomaly_forecast_new(void)
{
    return xcalloc(1, sizeof(anomaly_forecast_t));
}

void
anomaly_forecast_destroy(anomaly_forecast_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

static size_t
s_bin(int64_t ts)
{
    int64_t r = ts % S_DAY_NS;
    if (r < 0)
        r += S_DAY_NS;
    return (size_t)(r / (S_DAY_NS / S_BINS));
}

static double
s_season(const anomaly_forecast_t *self, int64_t ts)
{
    size_t b = s_bin(ts);
    return self->seen[b] ? self->season[b] : 0;
}

/* Slope (per second) and level now of the weighted regression. */
static void
s_line(const anomaly_forecast_t *self, double *slope, double *level)
{
    double den = self->s0 * self->s2 - self->s1 * self->s1;
    *slope = den > 1e-9 * self->s0 * self->s2
                 ? (self->s0 * self->sty - self->s1 * self->sy) / den
                 : 0;
    *level = self->s0 > 0 ? (self->sy - *slope * self->s1) / self->s0 : 0;
}

/* a - b in seconds; timestamps far apart (any int64 nanoseconds come in
 * through filter mode) do not overflow the subtraction. */
static double
s_secs(int64_t a, int64_t b)
{
    int64_t d;

    if (__builtin_sub_overflow(a, b, &d))
        return ((double)a - (double)b) / 1e9;
    return (double)d / 1e9;
}

void
anomaly_forecast_update(anomaly_forecast_t *self, int64_t ts, double value)
{
    if (!isfinite(value) || (self->count && ts <= self->last))
        return;
    size_t b = s_bin(ts);
    double dt = self->count ? s_secs(ts, self->last) : 0;
    if (self->count == 1)
        self->step_s = dt;
    else if (self->count > 1)
        self->step_s += S_STEP_ALPHA * (dt - self->step_s);
    if (self->count == 0)
        self->first = ts;

    /* One-step error of the forecast made before this reading. */
    if (self->count >= 2) {
        double slope, level;
        s_line(self, &slope, &level);
        double err = value - (level + slope * dt + s_season(self, ts));
        double a = fmax(S_VAR_ALPHA, 1.0 / (double)self->count);
        self->var = (1 - a) * (self->var + a * err * err);
    }
    /* Move the origin to this reading and decay the sums. */
    double d = exp(-dt / S_TAU);
    self->s2 = d * (self->s2 - 2 * dt * self->s1 + dt * dt * self->s0);
    self->s1 = d * (self->s1 - dt * self->s0);
    self->sty = d * (self->sty - dt * self->sy);
    self->s0 *= d;
    self->sy *= d;
    double y = value - s_season(self, ts);
    self->s0 += 1;
    self->sy += y;

    /* The first day only learns the line; the season starts on the
     * second day from what the line does not explain. */
    int64_t since;
    if (__builtin_sub_overflow(ts, self->first, &since) || since >= S_DAY_NS) {
        double slope, level;
        s_line(self, &slope, &level);
        double resid = value - level;
        uint8_t dayno = (uint8_t)(ts / S_DAY_NS);
        if (!self->seen[b])
            self->season[b] = resid;
        else
            self->season[b] +=
                S_GAMMA_READING(self) * (resid - self->season[b]);
        if (!self->seen[b] || self->day[b] != dayno) {
            if (self->seen[b] < UINT16_MAX)
                self->seen[b]++;
            self->day[b] = dayno;
        }
    }
    self->last = ts;
    self->count++;
}

bool
anomaly_forecast_ready(const anomaly_forecast_t *self)
{
    return self->count >= ANOMALY_FORECAST_MIN_COUNT && self->step_s > 0;
}

int64_t
anomaly_forecast_last(const anomaly_forecast_t *self)
{
    return self->last;
}

double
anomaly_forecast_trend_per_hour(const anomaly_forecast_t *self)
{
    double slope, level;
    s_line(self, &slope, &level);
    return slope * 3600;
}

int
anomaly_forecast_at(const anomaly_forecast_t *self, int64_t ts,
                    struct anomaly_forecast_point *out)
{
    if (!anomaly_forecast_ready(self))
        return -1;
    double slope, level;
    s_line(self, &slope, &level);
    double dt = s_secs(ts, self->last);
    /* Regression prediction variance: sigma^2 (1 + 1/n + (t - mean)^2 /
     * Sxx), with the weighted sums standing in for n and Sxx. */
    double mean = self->s1 / self->s0;
    double sxx = fmax(self->s2 - self->s1 * mean, 1e-9);
    double var =
        self->var * (1 + 1 / self->s0 + (dt - mean) * (dt - mean) / sxx);
    double sd = sqrt(fmax(0, var));
    out->ts = ts;
    out->value = level + slope * dt + s_season(self, ts);
    out->lower = out->value - ANOMALY_FORECAST_Z80 * sd;
    out->upper = out->value + ANOMALY_FORECAST_Z80 * sd;
    return 0;
}

int
anomaly_forecast_crossing(const anomaly_forecast_t *self, double threshold,
                          int64_t horizon_ns,
                          struct anomaly_forecast_crossing *out)
{
    if (!anomaly_forecast_ready(self))
        return -1;
    memset(out, 0, sizeof *out);
    out->late = INT64_MAX;
    double slope, level;
    s_line(self, &slope, &level);
    bool up = threshold >= level;
    bool early = false, mean = false, late = false;
    if (horizon_ns > INT64_MAX - self->last)
        horizon_ns = INT64_MAX - self->last; /* no overflow past 2262 */
    int64_t step = horizon_ns / ANOMALY_FORECAST_SCAN;
    if (step < 1)
        step = 1;
    for (int64_t k = 1; k <= ANOMALY_FORECAST_SCAN; k++) {
        int64_t t = self->last + k * step;
        struct anomaly_forecast_point p;
        anomaly_forecast_at(self, t, &p);
        double near = up ? p.upper : p.lower, far = up ? p.lower : p.upper;
        bool cn = up ? near >= threshold : near <= threshold;
        bool cm = up ? p.value >= threshold : p.value <= threshold;
        bool cf = up ? far >= threshold : far <= threshold;
        if (cn && !early) {
            early = true;
            out->early = t;
        }
        if (cm && !mean) {
            mean = true;
            out->at = t;
        }
        if (cf && !late) {
            late = true;
            out->late = t;
            break;
        }
    }
    out->found = mean;
    return 0;
}

void
anomaly_forecast_prefetch(const anomaly_forecast_t *self, int64_t ts)
{
    size_t b = s_bin(ts);
    __builtin_prefetch(self, 1);
    __builtin_prefetch(&self->season[b], 1);
    __builtin_prefetch(&self->seen[b], 1);
    __builtin_prefetch(&self->day[b], 1);
}

size_t
anomaly_forecast_state_size(const anomaly_forecast_t *self)
{
    return sizeof *self;
}

void
anomaly_forecast_test(bool verbose)
{
    const int64_t t0 = 1704067200LL * CLOCK_NS_PER_S;
    const int64_t step = 300 * CLOCK_NS_PER_S;
    anomaly_forecast_t *f = anomaly_forecast_new();
    struct anomaly_forecast_point p;
    assert(anomaly_forecast_at(f, t0, &p) == -1);

    /* A bearing warming by 0.5 per hour with a little noise: the trend is
     * learnt and the crossing of 90 is predicted where the line crosses. */
    unsigned x = 1;
    double v = 0;
    for (int i = 0; i < 2000; i++) {
        x = x * 1103515245 + 12345;
        double noise = ((double)(x >> 16) / 65536.0 - 0.5) * 0.2;
        v = 40 + 0.5 * (i * 300.0 / 3600) + noise;
        anomaly_forecast_update(f, t0 + i * step, v);
    }
    anomaly_forecast_update(f, t0, 1e9); /* out of order: ignored */
    assert(anomaly_forecast_ready(f));
    double tr = anomaly_forecast_trend_per_hour(f);
    if (verbose)
        printf("   trend %.3f per hour (true 0.5)\n", tr);
    TEST_NEAR(tr, 0.5, 0.05);
    /* Now about 40 + 0.5 * 166.6 = 123.3; 130 is about 13.3 h away. */
    struct anomaly_forecast_crossing c;
    assert(anomaly_forecast_crossing(f, 130, 7 * 24 * 3600 * CLOCK_NS_PER_S,
                                     &c) == 0);
    assert(c.found);
    double hours = (double)(c.at - anomaly_forecast_last(f)) / 3.6e12;
    double eh = (double)(c.early - anomaly_forecast_last(f)) / 3.6e12;
    double lh = (double)(c.late - anomaly_forecast_last(f)) / 3.6e12;
    if (verbose)
        printf("   level %.2f trend %.3f/h: crosses 130 in %.1f h "
               "(80 %%: %.1f to %.1f h)\n",
               v, tr, hours, eh, lh);
    TEST_NEAR(hours, (130 - v) / 0.5, 2.0);
    assert(eh <= hours && hours <= lh);
    /* Intervals widen with the horizon. */
    struct anomaly_forecast_point p1, p2;
    anomaly_forecast_at(f, anomaly_forecast_last(f) + step, &p1);
    anomaly_forecast_at(f, anomaly_forecast_last(f) + 100 * step, &p2);
    assert(p2.upper - p2.lower > p1.upper - p1.lower);
    assert(p1.lower < p1.value && p1.value < p1.upper);
    /* A threshold far away is not crossed within a day. */
    assert(anomaly_forecast_crossing(f, 1e6, 24 * 3600 * CLOCK_NS_PER_S, &c) ==
           0);
    assert(!c.found);
    assert(anomaly_forecast_state_size(f) < 16384);
    anomaly_forecast_destroy(&f);
    anomaly_forecast_destroy(&f);

    /* A daily cycle is forecast a day ahead. */
    f = anomaly_forecast_new();
    for (int i = 0; i < 288 * 5; i++)
        anomaly_forecast_update(f, t0 + i * step,
                                50 + 10 * sin(2 * M_PI * (i % 288) / 288.0));
    anomaly_forecast_at(f, t0 + (288 * 5 + 72) * step, &p); /* 6 a.m. */
    if (verbose)
        printf("   daily cycle: 06:00 forecast %.2f (true 60)\n", p.value);
    TEST_NEAR(p.value, 60, 1.0);
    anomaly_forecast_destroy(&f);

    /* Timestamps from the ends of the range (the fuzzer's, through filter
     * mode): the differences do not overflow (UBSan), the sums stay
     * finite or the reading is simply not learnt from. */
    f = anomaly_forecast_new();
    const int64_t far[] = {-2537568000000000000LL, -1, 7772777777772000000LL,
                           INT64_MAX};
    for (size_t i = 0; i < sizeof far / sizeof far[0]; i++)
        anomaly_forecast_update(f, far[i], (double)i);
    assert(anomaly_forecast_last(f) == INT64_MAX);
    anomaly_forecast_at(f, INT64_MAX, &p);
    anomaly_forecast_destroy(&f);
    TEST_OK("anomaly_forecast");
}
