/*
 * fuzz_prom_ql: libFuzzer target for apid's PromQL subset (prom_ql.c),
 * the parser behind /api/v1/query and /api/v1/query_range.
 *
 * Any query must parse or be refused with a reason; one that parses is
 * asked everything apid asks of it (selector checks, window, name glob)
 * and evaluated, instant and over a range, against a few series with
 * ordinary, repeated, huge and negative values: an answer or a reason,
 * never a crash.
 */
#include "apid/prom_ql.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const double s_t[] = {0, 15, 30, 45, 60, 75, 90, 300, 301, 1000};
static const double s_v1[] = {1, 2, 3, 2, 1, 0, 5, 5, 5, 7};
static const double s_v2[] = {-1e308, 1e308, 0, -0.0, 3, 3, 3, 1e-308, 2, 1};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256], *q, *glob;
    prom_expr_t *e;
    struct prom_series s[3];
    json_t *out;

    if (size > 4096)
        return 0;
    q = malloc(size + 1);
    memcpy(q, data, size);
    q[size] = '\0';
    err[0] = '\0';
    e = prom_ql_parse(q, err, sizeof err);
    if (e == NULL) {
        assert(err[0] != '\0');
        free(q);
        return 0;
    }
    s[0].labels = prom_ql_labels("machine.temp{device=a,room=x}");
    s[1].labels = prom_ql_labels("machine.temp{device=b}");
    s[2].labels = prom_ql_labels("up");
    for (int i = 0; i < 3; i++) {
        s[i].t = s_t;
        s[i].v = i == 1 ? s_v2 : s_v1;
        s[i].n = sizeof s_t / sizeof s_t[0];
        assert(s[i].labels != NULL);
        if (prom_ql_is_selector(e))
            (void)prom_ql_matches(e, s[i].labels);
    }
    (void)prom_ql_window(e);
    glob = prom_ql_name_glob(e);
    assert(glob && *glob);
    free(glob);
    out = prom_ql_eval(e, s, 3, 1000, err, sizeof err);
    json_decref(out);
    out = prom_ql_eval_range(e, s, 3, 0, 1000, 100, err, sizeof err);
    json_decref(out);
    for (int i = 0; i < 3; i++)
        json_decref(s[i].labels);
    prom_ql_destroy(&e);
    assert(e == NULL);
    free(q);
    return 0;
}
