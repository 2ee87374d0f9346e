/*
 * bench/aggregate_reply.c: time of aggd's work for the 5-minute mean
 * over the 1 M-point series (agg_interval_reply into a text buffer, as
 * aggd answers apid), in process, on a copy of a loaded aggd data
 * directory: no ZeroMQ, no other thread, so two trees' libraries can be
 * compared at the level of a tenth of a millisecond on a shared machine
 * (docs/BENCHMARKS.md, ninth session).
 *
 *   make all && cc -O2 -I. -o /tmp/aggreply bench/aggregate_reply.c \
 *       -Wl,--start-group build/libaggd.a build/libcommon.a \
 *       -Wl,--end-group -lczmq -lzmq -lmsgpackc -ljansson -lzstd -lz \
 *       -lm -lpthread
 *   cp -a /tmp/sp-bench/aggregate-cpu-data /tmp/aggdata
 *   /tmp/aggreply /tmp/aggdata [CALLS] [OUT|-] [pool|steps|evict|pool,evict]
 *
 * The data directory is what bench/aggregate_cpu.py keeps (aggd's data
 * after gen.py's dev_big was loaded and aggd stopped); it is opened from
 * its checkpoint and not written. CALLS (200) timed calls after 5
 * untimed; prints the fastest and the median call; OUT gets the last
 * answer's text (to cmp against another build's). One thread unless
 * "pool": then with aggd's worker (agg_pool), as aggd runs it. "steps"
 * times agg_rollup_sum_steps alone over the same 33,334 intervals;
 * "evict" writes 16 MB between calls (the caches as cold as in aggd,
 * where apid and the client copy the answer between requests). Large
 * blocks are kept by malloc between calls (as in aggd after its first
 * requests), so page faults do not count.
 */
#include "aggd/agg_ckpt.h"
#include "aggd/agg_confirm.h"
#include "aggd/agg_interval.h"
#include "aggd/agg_pool.h"
#include "aggd/agg_query.h"
#include "aggd/agg_rollup.h"
#include "aggd/agg_store.h"

#include <jansson.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_KEY "sensor{id=dev_big}"
#define S_START 1704067200000000000LL /* gen.py's first time stamp, ns */
#define S_STEP 300000000000LL         /* 5 minutes, ns */
#define S_N 33334                     /* intervals of the answer */

static double
s_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int
s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* agg_rollup_sum_steps over the answer's intervals, n times. */
static int
s_steps(agg_store_t *st, int n, double *t)
{
    const agg_rollup_t *r = agg_store_rollup(st, S_KEY);
    uint64_t *count = calloc(S_N, sizeof *count), total = 0;
    double *sum = calloc(S_N, sizeof *sum);

    if (r == NULL || count == NULL || sum == NULL) {
        fprintf(stderr, "no series %s\n", S_KEY);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        memset(count, 0, S_N * sizeof *count);
        memset(sum, 0, S_N * sizeof *sum);
        double t0 = s_now();
        agg_rollup_sum_steps(r, AGG_ROLLUP_MINUTE, S_START, S_STEP, S_N, count,
                             sum);
        t[i] = s_now() - t0;
    }
    for (size_t j = 0; j < S_N; j++)
        total += count[j];
    qsort(t, (size_t)n, sizeof *t, s_cmp);
    printf("agg_rollup_sum_steps: fastest %.3f ms, median %.3f ms; %llu "
           "points\n",
           t[0] / 1e6, t[n / 2] / 1e6, (unsigned long long)total);
    free(count);
    free(sum);
    return 0;
}

/* agg_interval_reply n times (one thread, or with aggd's worker when
 * use_pool); the last answer's text to out unless NULL. */
/* Bytes written between calls with "evict": about what the other
 * processes of a request through apid touch meanwhile (apid's and the
 * client's copies of the 2.5 MB answer, the kernel's socket buffers), so
 * the caches are as cold as aggd finds them. */
#define S_EVICT (16 << 20)

static int
s_reply(agg_store_t *st, int n, double *t, const char *out, bool use_pool,
        bool evict)
{
    agg_pool_t *pool = NULL;
    char *junk = evict ? malloc(S_EVICT) : NULL;
    struct agg_text text = {.base = 0};
    int rc = 0;

    if (use_pool) {
        if ((pool = agg_pool_new()) == NULL)
            return 1;
        agg_store_set_pool(st, pool);
    }
    json_t *req =
        json_pack("{s:s, s:s, s:s, s:s, s:b}", "op", "aggregate", "series",
                  S_KEY, "interval", "5min", "aggregation", "mean", "text", 1);
    for (int i = 0; i < n + 5 && rc == 0; i++) {
        json_t *body = NULL;
        agg_text_free(&text);
        memset(&text, 0, sizeof text);
        if (junk)
            memset(junk, i, S_EVICT);
        double t0 = s_now();
        int code = agg_interval_reply(st, req, &body, &text);
        double dt = s_now() - t0;
        json_decref(body);
        if (code != 200) {
            fprintf(stderr, "status %d\n", code);
            rc = 1;
        }
        if (i >= 5)
            t[i - 5] = dt;
    }
    json_decref(req);
    if (rc == 0) {
        qsort(t, (size_t)n, sizeof *t, s_cmp);
        printf("agg_interval_reply%s%s: fastest %.3f ms, median %.3f ms; "
               "%zu bytes\n", use_pool ? " (worker)" : "",
               evict ? " (caches evicted)" : "", t[0] / 1e6, t[n / 2] / 1e6,
               agg_text_len(&text));
    }
    if (rc == 0 && out) {
        char *all = agg_text_join(&text);
        FILE *f = fopen(out, "wb");
        if (f == NULL || fwrite(all, 1, strlen(all), f) != strlen(all))
            rc = 1;
        if (f)
            fclose(f);
        free(all);
    }
    agg_text_free(&text);
    agg_store_set_pool(st, NULL);
    agg_pool_destroy(&pool);
    free(junk);
    return rc;
}

int
main(int argc, char **argv)
{
    int n = argc > 2 ? atoi(argv[2]) : 200, rc;
    const char *out = argc > 3 && strcmp(argv[3], "-") != 0 ? argv[3] : NULL;
    const char *mode = argc > 4 ? argv[4] : "";
    struct agg_ckpt ck;
    agg_confirm_t *applied = agg_confirm_new();

    if (argc < 2 || n < 1 || n > 100000) {
        fprintf(stderr, "usage: %s DATADIR [CALLS] [OUT|-] "
                "[pool|steps|evict|pool,evict]\n",
                argv[0]);
        return 2;
    }
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    if (agg_ckpt_read(argv[1], &ck, applied) != 0) {
        fprintf(stderr, "%s: no checkpoint\n", argv[1]);
        return 1;
    }
    agg_store_t *st = agg_store_open(argv[1], &ck.files);
    double *t = malloc((size_t)n * sizeof *t);
    if (st == NULL || t == NULL)
        return 1;
    if (strcmp(mode, "steps") == 0)
        rc = s_steps(st, n, t);
    else
        rc = s_reply(st, n, t, out, strstr(mode, "pool") != NULL,
                     strstr(mode, "evict") != NULL);
    free(t);
    agg_store_destroy(&st);
    agg_confirm_destroy(&applied);
    return rc;
}
