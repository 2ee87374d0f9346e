/*
 * alert_rule: the rule language of alertd. A recursive-descent parser that
 * turns a condition such as
 *
 *   temperature > avg(temperature, 1h) + 3 * std(temperature, 1h) for 5m
 *       clear when temperature < 28 severity warning, critical after 10m
 *
 * into a small tree, and an evaluator that walks the tree against a
 * caller-supplied value source. No user text is ever evaluated any other
 * way. The grammar is in alertd.8 (RULE LANGUAGE); in short:
 *
 *   condition := expr clause*
 *   clause    := "for" DURATION | "clear" "when" expr
 *              | "severity" SEV ["after" DURATION] {"," SEV "after" DURATION}
 *                ["," "back" "after" DURATION]
 *              | "notify" CHANNEL {"," CHANNEL} | "throttle" DURATION
 *              | "escalate" CHANNEL "after" DURATION
 *              | "inhibited" "by" RULE ["on" TAG {"," TAG}]
 *              | "group" ["by" TAG {"," TAG}] ["within" DURATION]
 *   expr      := and {("or" | "||") and}
 *   and       := not {("and" | "&&") not}
 *   not       := ("not" | "!") not | cmp
 *   cmp       := sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum]
 *   sum       := prod {("+" | "-") prod}
 *   prod      := unary {("*" | "/") unary}
 *   unary     := "-" unary | primary
 *   primary   := NUMBER | DURATION | metric | "device." ATTR
 *              | FN "(" metric "," DURATION ")"
 *              | ("anomaly" | "alarm") "(" metric ["," DURATION] ")"
 *              | "age" "(" metric ")"
 *              | "nodata" "(" metric "," DURATION ")"
 *              | "time_to" "(" metric "," ["-"] NUMBER
 *                          ["," (DURATION | "forecast")] ")"
 *              | "(" expr ")"
 *   metric    := (NAME | STRING) ["{" key "=" value {"," key "=" value} "}"]
 *   FN        := avg | min | max | sum | count | std | rate | delta | pNN
 *
 * A DURATION in an expression is a number of seconds ("age(x) > 5m",
 * "time_to(x, 90) < 24h"). time_to(x, T, forecast) reads anomalyd's
 * forecast events (trend plus daily season) instead of fitting a line to
 * the last hour of readings. device.NAME is the numeric attribute NAME of
 * the metadata of the series' device (its "device" tag), so one rule
 * serves a fleet whose limits differ ("temperature > device.max_temp");
 * a metric whose name starts with "device." is written quoted.
 *
 * Truth is three-valued: a comparison with an unknown operand (no data
 * yet, std of one point, division by zero) is unknown, and "and", "or"
 * and "not" follow Kleene logic, so a rule never fires on missing data.
 *
 * Scope: a metric in a rule names series by name (a quoted name may be a
 * glob such as "temp_*"), optionally filtered by tags. Every series that
 * matches is evaluated on its own. When a rule names one metric the alert
 * scope is the series key ("temperature{device=s1}"); when it names
 * several ("temperature > 30 and humidity > 80") they are joined on equal
 * tags and the scope is the tag set ("{device=s1}").
 */
#ifndef SP_ALERT_RULE_H
#define SP_ALERT_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest rule text accepted, in its canonical form (alert_rule_format);
 * the text as written may be up to four times as long. */
#define ALERT_RULE_TEXT_MAX 4096
/* Deepest nesting of parentheses and operators. */
#define ALERT_RULE_DEPTH_MAX 64
/* Most distinct metric references in one rule. */
#define ALERT_RULE_REFS_MAX 16
/* Most severity steps in one rule. */
#define ALERT_RULE_SEV_MAX 4
/* Most channels in a "notify" clause. */
#define ALERT_RULE_NOTIFY_MAX 8
/* Most tags of an "inhibited by ... on" clause. */
#define ALERT_RULE_INHIBIT_TAGS_MAX 8
/* Longest channel name. */
#define ALERT_RULE_CHANNEL_NAME_MAX 64
/* Window of time_to(x, T) when none is given. */
#define ALERT_RULE_TIME_TO_WINDOW_NS (3600LL * 1000000000LL)
/* Most tags of a "group by" clause. */
#define ALERT_RULE_GROUP_TAGS_MAX 8
/* Window of a group when "within" is not given. */
#define ALERT_RULE_GROUP_WITHIN_NS (60LL * 1000000000LL)
/* Most distinct device attributes (device.NAME) in one rule. */
#define ALERT_RULE_ATTRS_MAX 8
/* Longest window accepted in a function (windows are kept in memory). */
#define ALERT_RULE_WINDOW_MAX_NS (7LL * 86400 * 1000000000LL)

typedef struct alert_rule alert_rule_t;

/* Functions a rule can ask of a series (the value source implements
 * them over the points of the window ending at the evaluation time). */
enum alert_fn {
    ALERT_FN_LAST = 0, /* latest value */
    ALERT_FN_AVG,
    ALERT_FN_MIN,
    ALERT_FN_MAX,
    ALERT_FN_SUM,
    ALERT_FN_COUNT,
    ALERT_FN_STD,      /* sample standard deviation, unknown below 2 */
    ALERT_FN_QUANTILE, /* pNN: linear between closest ranks (numpy) */
    ALERT_FN_RATE,     /* (last - first) / seconds between them */
    ALERT_FN_DELTA,    /* last - first */
    ALERT_FN_ANOMALY,  /* latest anomaly score in [0,1]; window: max */
    ALERT_FN_AGE,      /* seconds from the latest reading to now */
    ALERT_FN_TIME_TO,  /* seconds until the window's least-squares line
                          reaches q: INFINITY when it moves away or is
                          flat, 0 when it is at q now */
    ALERT_FN_FORECAST_TO, /* time_to(x, q, forecast): seconds until the
                          latest forecast event of anomalyd for the
                          series reaches q (same conventions; INFINITY
                          beyond its horizon, unknown without one) */
    ALERT_FN_ALARM,    /* 1 when the latest anomaly event had anomalyd's
                          novelty alarm, else 0; window: any event in it */
    ALERT_FN_MAX_
};

/* Truth values of a condition. */
enum alert_truth {
    ALERT_FALSE = 0,
    ALERT_TRUE = 1,
    ALERT_UNKNOWN = 2
};

/* Which expression of a rule to evaluate. */
enum alert_rule_expr {
    ALERT_RULE_COND = 0, /* the condition */
    ALERT_RULE_CLEAR     /* the "clear when" expression, if any */
};

/* Where and why a parse failed. pos is a byte offset into the text. */
struct alert_rule_error {
    size_t pos;        /* offset of the offending token */
    char reason[160];  /* human-readable reason */
};

/* The value source of one evaluation. */
struct alert_rule_env {
    /* Value of fn over series key within the window (0 = latest only)
     * ending at now; q is the quantile for ALERT_FN_QUANTILE. Returns NAN
     * when unknown. */
    double (*value)(void *arg, const char *key, enum alert_fn fn,
                    int64_t window_ns, double q, int64_t now);
    void *arg;       /* passed to value */
    const char *key; /* series key that triggered this evaluation */
    int64_t now;     /* evaluation time, ns (event time of the reading) */
    /* Attribute name of the device of series key (device.max_temp: the
     * metadata of the series' "device" tag), or NAN when unknown. NULL:
     * every attribute is unknown. */
    double (*attr)(void *arg, const char *key, const char *name);
    void *attr_arg;  /* passed to attr */
};

/* Parse a condition with its clauses. Returns a new rule (caller
 * destroys), or NULL with *err filled in. name must be non-empty. */
alert_rule_t *alert_rule_new(const char *name, const char *text,
                             struct alert_rule_error *err);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void alert_rule_destroy(alert_rule_t **self_p);

/* Parse a rules-file line "name: condition". Returns a new rule, or NULL
 * with *err (pos is an offset into line). */
alert_rule_t *alert_rule_parse_line(const char *line,
                                    struct alert_rule_error *err);

/* Borrowed name and source text of the condition. */
const char *alert_rule_name(const alert_rule_t *self);
const char *alert_rule_text(const alert_rule_t *self);
/* The "for" duration in ns (0 when absent). */
int64_t alert_rule_for(const alert_rule_t *self);
/* Has a "clear when" expression. */
bool alert_rule_has_clear(const alert_rule_t *self);
/* Severity after having fired for firing_ns (the last step whose "after"
 * is <= firing_ns). Borrowed static string. */
const char *alert_rule_severity(const alert_rule_t *self, int64_t firing_ns);
/* De-escalation ("severity warning, critical after 10m, back after
 * 2m"): a firing alert that has been below its condition (not cleared,
 * under a "clear when") for this long, ns, goes back to the first step;
 * 0 when the rule has none. */
int64_t alert_rule_severity_back(const alert_rule_t *self);
/* Number of severity steps and the "after" of step i (for scheduling). */
size_t alert_rule_severity_steps(const alert_rule_t *self);
int64_t alert_rule_severity_after(const alert_rule_t *self, size_t i);
/* Channels of the "notify" clause: how many, and the i-th name (NULL
 * past the end; borrowed). */
size_t alert_rule_notify_count(const alert_rule_t *self);
const char *alert_rule_notify(const alert_rule_t *self, size_t i);
/* Add a channel to notify, as a "notify" clause would (for rules made
 * through the API, whose actions become channels). Returns 0, or -1 when
 * the rule already notifies it or has ALERT_RULE_NOTIFY_MAX channels. */
int alert_rule_add_notify(alert_rule_t *self, const char *channel);
/* Confine the rule to one tenant's series: every metric reference also
 * requires the series' tenant tag to be tenant, or absent for the
 * default tenant (common/series.h). Rules made by a tenant through the
 * API are confined; the rules file's rules are the operator's and see
 * every tenant. Returns 0, or -1 when a reference has no room for
 * another tag filter or the rule is confined already (then the rule is
 * unchanged). */
int alert_rule_set_tenant(alert_rule_t *self, const char *tenant);
/* Least time between two notifications of one alert, ns (0: none). */
int64_t alert_rule_throttle(const alert_rule_t *self);
/* Channel to notify when the alert has fired for *after ns without an
 * acknowledgement, or NULL. after may be NULL. */
const char *alert_rule_escalate(const alert_rule_t *self, int64_t *after);
/* Rule whose firing alerts mute this rule's notifications ("inhibited
 * by gw_down on site"), or NULL; and the i-th tag whose values must be
 * equal in both scopes (NULL past the end). Borrowed. */
const char *alert_rule_inhibitor(const alert_rule_t *self);
const char *alert_rule_inhibit_on(const alert_rule_t *self, size_t i);
/* Does the rule group its notifications ("group by site within 5m")?
 * *within (may be NULL) gets the window. The i-th tag of the group key,
 * or NULL past the end (none: all the rule's alerts are one group).
 * Borrowed. */
bool alert_rule_group(const alert_rule_t *self, int64_t *within);
const char *alert_rule_group_by(const alert_rule_t *self, size_t i);
/* Does the rule read age() or nodata()? Such a rule can become true
 * while no reading arrives (a deadman), so it is also evaluated on a
 * clock tick (alert_engine_tick). */
bool alert_rule_is_deadman(const alert_rule_t *self);
/* Longest window any function of the rule reads, ns (0 when none). */
int64_t alert_rule_max_window(const alert_rule_t *self);
/* Name (or glob) of the k-th distinct metric the rule references, or
 * NULL past the last. Borrowed. */
const char *alert_rule_metric(const alert_rule_t *self, size_t k);
/* A tag the k-th metric reference requires (its selector), for
 * indexing rules by name and tag: sets *tkey and *tval and returns true,
 * or false when the reference has no selector with a value. A tag other
 * than the tenant's is preferred (it tells series apart). Borrowed. */
bool alert_rule_metric_tag(const alert_rule_t *self, size_t k,
                           const char **tkey, const char **tval);
/* Does any metric reference of the rule match this series key? */
bool alert_rule_matches(const alert_rule_t *self, const char *key);
/* Write the alert scope of a matching series key into buf (see the
 * header comment). Returns buf, or NULL when it does not fit. */
char *alert_rule_scope(const alert_rule_t *self, const char *key, char *buf,
                       size_t len);
/* Evaluate the condition or the clear expression (ALERT_UNKNOWN when the
 * rule has none) for the series env->key. */
enum alert_truth alert_rule_eval(const alert_rule_t *self,
                                 enum alert_rule_expr which,
                                 const struct alert_rule_env *env);
/* Canonical text of the parsed rule (condition and clauses) with
 * minimal parentheses; parsing it again gives the same canonical text.
 * Caller frees. */
char *alert_rule_format(const alert_rule_t *self);

/* Is s a known severity name? */
bool alert_rule_severity_valid(const char *s);

/* Selftest: asserts on failure, prints " * alert_rule: OK". */
void alert_rule_test(bool verbose);

#endif
