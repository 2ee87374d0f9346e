/*
 * fuzz_rule: libFuzzer target for alertd's rule parser (alert_rule.c).
 *
 * Any input must parse or fail with a position inside the text; a rule
 * that parses must format to a canonical text that parses again to the
 * same canonical text, and must evaluate without crashing against a value
 * source that answers numbers, NaN and infinities.
 */
#include "alertd/alert_rule.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static double
s_value(void *arg, const char *key, enum alert_fn fn, int64_t window,
        double q, int64_t now)
{
    static const double vals[] = {0, 1, -1, 30, NAN, INFINITY, -INFINITY,
                                  1e308, 0.5};
    uint64_t qbits;

    /* q may be any double (time_to's threshold is negative or huge):
     * mix its bits, never convert it. */
    memcpy(&qbits, &q, sizeof qbits);
    size_t h = strlen(key) + (size_t)fn * 7 + (size_t)(window % 13) +
               (size_t)(qbits % 97) + *(size_t *)arg;
    return vals[h % (sizeof vals / sizeof vals[0])];
}

/* Device attributes, as arbitrary as the values. */
static double
s_attr(void *arg, const char *key, const char *name)
{
    return s_value(arg, key, ALERT_FN_LAST, (int64_t)strlen(name), 0, 0);
}

static void
s_check(alert_rule_t *r, const char *text)
{
    struct alert_rule_error err;
    size_t salt = 0;
    char scope[1024];

    char *f = alert_rule_format(r);
    alert_rule_t *r2 = alert_rule_new(alert_rule_name(r), f, &err);
    assert(r2 != NULL);
    char *f2 = alert_rule_format(r2);
    assert(strcmp(f, f2) == 0);
    free(f2);
    alert_rule_destroy(&r2);
    free(f);

    const char *keys[] = {"temperature", "temperature{device=s1}",
                          "humidity{device=s1,room=a}", "x"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        for (salt = 0; salt < 3; salt++) {
            struct alert_rule_env env = {s_value, &salt, keys[i], 0,
                                         s_attr, &salt};
            enum alert_truth t = alert_rule_eval(r, ALERT_RULE_COND, &env);
            assert(t == ALERT_TRUE || t == ALERT_FALSE || t == ALERT_UNKNOWN);
            t = alert_rule_eval(r, ALERT_RULE_CLEAR, &env);
            assert(t == ALERT_TRUE || t == ALERT_FALSE || t == ALERT_UNKNOWN);
        }
        (void)alert_rule_matches(r, keys[i]);
        (void)alert_rule_scope(r, keys[i], scope, sizeof scope);
    }
    (void)alert_rule_severity(r, INT64_MAX);
    (void)text;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct alert_rule_error err;
    char *text;
    alert_rule_t *r;

    if (size > ALERT_RULE_TEXT_MAX + 64)
        return 0;
    text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';

    r = alert_rule_new("fuzz", text, &err);
    if (r) {
        s_check(r, text);
        alert_rule_destroy(&r);
    } else {
        assert(err.pos <= strlen(text));
        assert(err.reason[0] != '\0');
    }
    r = alert_rule_parse_line(text, &err);
    if (r) {
        s_check(r, text);
        alert_rule_destroy(&r);
    } else {
        assert(err.pos <= strlen(text));
        assert(err.reason[0] != '\0');
    }
    free(text);
    return 0;
}
