/*
 * anomaly_case: labelled CSV series for tests and evaluation (see
 * anomaly_case.h).
 */
#include "anomalyd/anomaly_case.h"

#include "common/clock.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Longest timestamp text we try to complete with a zone. */
#define S_TS_MAX 64

void
anomaly_case_far(double *v, size_t n)
{
    unsigned x = 7;

    for (size_t i = 0; i < n; i++) {
        x = x * 1103515245 + 12345;
        v[i] = i ? 1.6e7 + ((double)(x >> 16) / 65536.0 - 0.5) * 0.1 : 0;
    }
}

int
anomaly_case_parse_ts(const char *s, int64_t *ts)
{
    if (clock_parse_time(s, ts) == 0)
        return 0;
    /* NAB writes UTC without a zone: try again with one. */
    char buf[S_TS_MAX];
    if (snprintf(buf, sizeof buf, "%sZ", s) >= (int)sizeof buf)
        return -1;
    return clock_parse_rfc3339(buf, ts);
}

static char *
s_trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\r' || s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    return s;
}

struct anomaly_case *
anomaly_case_load(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (!fp) {
        log_warn("anomaly_case: %s", path);
        return NULL;
    }
    struct anomaly_case *self = xcalloc(1, sizeof *self);
    size_t cap = 0, lineno = 0;
    char *line = NULL;
    size_t linecap = 0;
    while (getline(&line, &linecap, fp) > 0) {
        lineno++;
        char *l = s_trim(line);
        if (lineno == 1 || *l == '\0' || *l == '#')
            continue;
        char *f[3] = {l, NULL, NULL};
        for (int k = 1; k < 3; k++) {
            char *c = f[k - 1] ? strchr(f[k - 1], ',') : NULL;
            if (c) {
                *c = '\0';
                f[k] = s_trim(c + 1);
            }
        }
        if (!f[1]) {
            log_warnx("anomaly_case: %s:%zu: expected timestamp,value", path,
                      lineno);
            goto fail;
        }
        if (self->n == cap) {
            cap = cap ? cap * 2 : 1024;
            self->ts = xrealloc(self->ts, cap * sizeof *self->ts);
            self->value = xrealloc(self->value, cap * sizeof *self->value);
            self->label = xrealloc(self->label, cap * sizeof *self->label);
        }
        double v = NAN;
        if (*f[1] != '\0' && strcasecmp(f[1], "nan") != 0 &&
            strutil_tod(f[1], &v) != 0) {
            log_warnx("anomaly_case: %s:%zu: bad value", path, lineno);
            goto fail;
        }
        if (anomaly_case_parse_ts(s_trim(f[0]), &self->ts[self->n]) != 0) {
            log_warnx("anomaly_case: %s:%zu: bad timestamp", path, lineno);
            goto fail;
        }
        self->value[self->n] = v;
        self->label[self->n] = f[2] && !strcmp(f[2], "1");
        self->n++;
    }
    free(line);
    fclose(fp);
    return self;
fail:
    free(line);
    fclose(fp);
    anomaly_case_destroy(&self);
    return NULL;
}

void
anomaly_case_destroy(struct anomaly_case **self_p)
{
    if (!self_p || !*self_p)
        return;
    struct anomaly_case *self = *self_p;
    xfree(&self->ts);
    xfree(&self->value);
    xfree(&self->label);
    free(self);
    *self_p = NULL;
}

void
anomaly_case_test(bool verbose)
{
    int64_t ts;
    assert(anomaly_case_parse_ts("2013-12-02 21:15:00", &ts) == 0);
    assert(ts == 1386018900LL * CLOCK_NS_PER_S);
    assert(anomaly_case_parse_ts("2013-12-02T21:15:00Z", &ts) == 0);
    assert(ts == 1386018900LL * CLOCK_NS_PER_S);
    assert(anomaly_case_parse_ts("1386018900000", &ts) == 0);
    assert(ts == 1386018900LL * CLOCK_NS_PER_S);
    assert(anomaly_case_parse_ts("yesterday", &ts) == -1);

    struct anomaly_case *c = anomaly_case_load("tests/cases/anomaly/gaps.csv");
    assert(c && c->n > 100);
    size_t gaps = 0;
    for (size_t i = 0; i < c->n; i++)
        gaps += isnan(c->value[i]);
    if (verbose)
        printf("   gaps.csv: %zu readings, %zu gaps\n", c->n, gaps);
    assert(gaps > 0);
    anomaly_case_destroy(&c);
    anomaly_case_destroy(&c);
    assert(anomaly_case_load("tests/cases/anomaly/missing.csv") == NULL);
    TEST_OK("anomaly_case");
}
