/*
 * prom_ql: parser and evaluator of the PromQL subset (see prom_ql.h).
 *
 * The parser is recursive descent over the query string; the evaluator
 * walks the tree once per evaluation time. Instant vectors carry their
 * labels as jansson objects, which keeps grouping and output simple; the
 * API answers dashboards and tools, not a TSDB-sized fleet.
 */
#include "apid/prom_ql.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PQ_DEPTH_MAX 64     /* nesting of the expression */
#define PQ_LABELS_MAX 32    /* labels in a by/without list */
#define PQ_MATCHERS_MAX 32  /* matchers in a selector */
#define PQ_STEPS_MAX 11000  /* points in a range answer, as Prometheus */

enum pq_kind { PN_NUM, PN_SEL, PN_FUNC, PN_AGG, PN_BIN, PN_NEG };
enum pq_mop { PM_EQ, PM_NE, PM_RE, PM_NRE };
enum pq_fn {
    PF_RATE, PF_INCREASE, PF_AVG_OT, PF_MIN_OT, PF_MAX_OT, PF_SUM_OT,
    PF_COUNT_OT, PF_LAST_OT, PF_STDDEV_OT, PF_QUANTILE_OT, PF_ABS, PF_MAX
};
enum pq_agg { PA_SUM, PA_AVG, PA_MIN, PA_MAX, PA_COUNT, PA_MAX_ };

static const char *s_fn_name[PF_MAX] = {
    "rate", "increase", "avg_over_time", "min_over_time", "max_over_time",
    "sum_over_time", "count_over_time", "last_over_time", "stddev_over_time",
    "quantile_over_time", "abs"};
static const char *s_agg_name[PA_MAX_] = {"sum", "avg", "min", "max", "count"};

struct pq_matcher {
    char *name;     /* label */
    int op;         /* enum pq_mop */
    char *value;    /* string or regex source */
    regex_t re;     /* compiled, anchored (PM_RE, PM_NRE) */
};

struct prom_expr {
    int kind;                    /* enum pq_kind */
    double num;                  /* PN_NUM */
    struct pq_matcher *m;        /* PN_SEL matchers */
    size_t nm;
    double range;                /* PN_SEL: seconds, 0 = instant */
    int fn;                      /* PN_FUNC: enum pq_fn */
    int agg;                     /* PN_AGG: enum pq_agg */
    char **by;                   /* PN_AGG grouping labels */
    size_t nby;
    bool without;                /* PN_AGG: by means without */
    char op;                     /* PN_BIN: + - * / */
    struct prom_expr *a, *b;     /* operands or arguments */
};

/* --- parsing ---------------------------------------------------------- */

struct s_p {
    const char *s;  /* query */
    size_t i;       /* position */
    int depth;      /* nesting */
    char *err;      /* reason buffer */
    size_t errlen;
    bool failed;
};

static void s_fail(struct s_p *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
s_fail(struct s_p *p, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (p->failed)
        return;
    p->failed = true;
    va_start(ap, fmt);
    n = vsnprintf(p->err, p->errlen, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < p->errlen)
        snprintf(p->err + n, p->errlen - (size_t)n, " at char %zu", p->i + 1);
}

static void
s_ws(struct s_p *p)
{
    while (isspace((unsigned char)p->s[p->i]))
        p->i++;
}

static bool
s_eat(struct s_p *p, const char *tok)
{
    size_t n = strlen(tok);
    s_ws(p);
    if (strncmp(p->s + p->i, tok, n) != 0)
        return false;
    p->i += n;
    return true;
}

static void
s_expect(struct s_p *p, const char *tok)
{
    if (!s_eat(p, tok))
        s_fail(p, "expected \"%s\"", tok);
}

static bool
s_ident_char(char c, bool first)
{
    return isalpha((unsigned char)c) || c == '_' || c == ':' ||
           (!first && isdigit((unsigned char)c));
}

/* An identifier, or NULL. Caller frees. */
static char *
s_ident(struct s_p *p)
{
    size_t start;
    s_ws(p);
    start = p->i;
    if (!s_ident_char(p->s[p->i], true))
        return NULL;
    while (s_ident_char(p->s[p->i], false))
        p->i++;
    return xstrndup(p->s + start, p->i - start);
}

static char *
s_string(struct s_p *p)
{
    char q, *out;
    size_t n = 0;

    s_ws(p);
    q = p->s[p->i];
    if (q != '"' && q != '\'') {
        s_fail(p, "expected a quoted string");
        return NULL;
    }
    out = xmalloc(strlen(p->s + p->i) + 1);
    for (p->i++; p->s[p->i] && p->s[p->i] != q; p->i++) {
        char c = p->s[p->i];
        if (c == '\\' && p->s[p->i + 1]) {
            c = p->s[++p->i];
            c = c == 'n' ? '\n' : c == 't' ? '\t' : c;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    if (p->s[p->i] != q) {
        s_fail(p, "unterminated string");
        free(out);
        return NULL;
    }
    p->i++;
    return out;
}

/* A duration such as 5m, 1h30m or 90s, in seconds; -1 when malformed. */
static double
s_duration(struct s_p *p)
{
    static const struct { const char *u; double s; } units[] = {
        {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400},
        {"w", 604800}, {"y", 31536000}};
    double total = 0;
    bool any = false;

    s_ws(p);
    while (isdigit((unsigned char)p->s[p->i])) {
        char *end;
        double n = strtod(p->s + p->i, &end);
        size_t u;
        p->i = (size_t)(end - p->s);
        for (u = 0; u < sizeof units / sizeof units[0]; u++)
            if (!strncmp(p->s + p->i, units[u].u, strlen(units[u].u)) &&
                !(units[u].u[0] == 'm' && units[u].u[1] == '\0' &&
                  p->s[p->i + 1] == 's'))
                break;
        if (u == sizeof units / sizeof units[0])
            return -1;
        p->i += strlen(units[u].u);
        total += n * units[u].s;
        any = true;
    }
    return any && total > 0 ? total : -1;
}

static struct prom_expr *s_expr(struct s_p *p);

static struct prom_expr *
s_node(int kind)
{
    struct prom_expr *e = xcalloc(1, sizeof *e);
    e->kind = kind;
    return e;
}

/* glibc's regcomp takes time exponential in stacked repetitions
 * ("z*****...", found by fuzz_prom_ql: seconds for 90 stars, a client
 * could stall apid's loop). Refuse what RE2, Prometheus' engine, refuses
 * too (a repetition of a repetition) and bound length and nesting.
 * Returns NULL when acceptable, else a reason. */
#define PQ_RE_MAX 512
#define PQ_RE_DEPTH 8
static const char *
s_re_check(const char *re)
{
    bool quant = false, in_bracket = false;
    int depth = 0;

    if (strlen(re) > PQ_RE_MAX)
        return "regular expression longer than 512 bytes";
    for (const char *c = re; *c; c++) {
        if (in_bracket) {
            if (*c == ']')
                in_bracket = false;
            continue;
        }
        bool q = false;
        switch (*c) {
        case '\\':
            if (c[1])
                c++;
            break;
        case '[':
            in_bracket = true;
            if (c[1] == '^')
                c++;
            if (c[1] == ']')
                c++; /* a leading ] is a member */
            break;
        case '(':
            if (++depth > PQ_RE_DEPTH)
                return "regular expression nested too deep";
            break;
        case ')':
            depth--;
            break;
        case '*': case '+': case '?': case '{':
            if (quant)
                return "bad repetition operator";
            q = true;
            if (*c == '{')
                while (c[1] && c[1] != '}')
                    c++;
            break;
        default:
            break;
        }
        quant = q;
    }
    return NULL;
}

static void
s_add_matcher(struct prom_expr *e, char *name, int op, char *value,
              struct s_p *p)
{
    struct pq_matcher *m;

    if (e->nm == PQ_MATCHERS_MAX) {
        s_fail(p, "too many label matchers");
        free(name);
        free(value);
        return;
    }
    e->m = xrealloc(e->m, (e->nm + 1) * sizeof *e->m);
    m = &e->m[e->nm];
    m->name = name;
    m->op = op;
    m->value = value;
    if (op == PM_RE || op == PM_NRE) {
        const char *why = s_re_check(value);
        if (why) {
            s_fail(p, "%s: \"%.60s\"", why, value);
            free(name);
            free(value);
            return;
        }
        char *src = xasprintf("^(%s)$", value);
        int rc = regcomp(&m->re, src, REG_EXTENDED | REG_NOSUB);
        free(src);
        if (rc != 0) {
            s_fail(p, "bad regular expression \"%.60s\"", value);
            free(name);
            free(value);
            return;
        }
    }
    e->nm++;
}

static void
s_matchers(struct s_p *p, struct prom_expr *e)
{
    if (s_eat(p, "}"))
        return;
    do {
        char *name = s_ident(p), *value;
        int op;
        if (name == NULL) {
            s_fail(p, "expected a label name");
            return;
        }
        if (s_eat(p, "=~"))
            op = PM_RE;
        else if (s_eat(p, "!~"))
            op = PM_NRE;
        else if (s_eat(p, "!="))
            op = PM_NE;
        else if (s_eat(p, "="))
            op = PM_EQ;
        else {
            free(name);
            s_fail(p, "expected =, !=, =~ or !~");
            return;
        }
        if ((value = s_string(p)) == NULL) {
            free(name);
            return;
        }
        s_add_matcher(e, name, op, value, p);
    } while (!p->failed && s_eat(p, ",") && !s_eat(p, "}") );
    if (!p->failed && p->s[p->i - 1] != '}')
        s_expect(p, "}");
}

static struct prom_expr *
s_selector(struct s_p *p, char *name)
{
    struct prom_expr *e = s_node(PN_SEL);

    if (name)
        s_add_matcher(e, xstrdup("__name__"), PM_EQ, name, p);
    if (s_eat(p, "{"))
        s_matchers(p, e);
    if (e->nm == 0 && !p->failed)
        s_fail(p, "a selector needs a name or a matcher");
    if (!p->failed && s_eat(p, "[")) {
        if ((e->range = s_duration(p)) < 0)
            s_fail(p, "bad range duration");
        s_expect(p, "]");
    }
    return e;
}

static void
s_grouping(struct s_p *p, struct prom_expr *e)
{
    s_ws(p);
    if (s_eat(p, "without"))
        e->without = true;
    else if (!s_eat(p, "by"))
        return;
    s_expect(p, "(");
    if (s_eat(p, ")"))
        return;
    do {
        char *l = s_ident(p);
        if (l == NULL || e->nby == PQ_LABELS_MAX) {
            free(l);
            s_fail(p, "expected a label name in by/without");
            return;
        }
        e->by = xrealloc(e->by, (e->nby + 1) * sizeof *e->by);
        e->by[e->nby++] = l;
    } while (s_eat(p, ","));
    s_expect(p, ")");
}

static struct prom_expr *
s_call(struct s_p *p, char *name)
{
    struct prom_expr *e;
    int fn;

    for (int a = 0; a < PA_MAX_; a++) {
        if (strcmp(name, s_agg_name[a]) != 0)
            continue;
        free(name);
        e = s_node(PN_AGG);
        e->agg = a;
        s_grouping(p, e);
        s_expect(p, "(");
        if (!p->failed)
            e->a = s_expr(p);
        s_expect(p, ")");
        if (e->nby == 0 && !e->without)
            s_grouping(p, e);
        return e;
    }
    for (fn = 0; fn < PF_MAX && strcmp(name, s_fn_name[fn]); fn++)
        ;
    if (fn == PF_MAX) {
        s_fail(p, "unknown function \"%.40s\"", name);
        free(name);
        return NULL;
    }
    free(name);
    e = s_node(PN_FUNC);
    e->fn = fn;
    s_expect(p, "(");
    if (!p->failed && fn == PF_QUANTILE_OT) {
        e->b = s_expr(p);
        s_expect(p, ",");
    }
    if (!p->failed)
        e->a = s_expr(p);
    s_expect(p, ")");
    if (!p->failed && fn != PF_ABS &&
        (e->a == NULL || e->a->kind != PN_SEL || e->a->range == 0))
        s_fail(p, "%s needs a range selector such as x[5m]", s_fn_name[fn]);
    if (!p->failed && fn == PF_QUANTILE_OT && e->b->kind != PN_NUM)
        s_fail(p, "quantile_over_time needs a number first");
    return e;
}

static struct prom_expr *
s_primary(struct s_p *p)
{
    char *name;
    char c;

    s_ws(p);
    c = p->s[p->i];
    if (isdigit((unsigned char)c) || c == '.') {
        struct prom_expr *e = s_node(PN_NUM);
        char *end;
        e->num = strtod(p->s + p->i, &end);
        if (end == p->s + p->i)
            s_fail(p, "bad number");
        p->i = (size_t)(end - p->s);
        return e;
    }
    if (s_eat(p, "(")) {
        struct prom_expr *e = s_expr(p);
        s_expect(p, ")");
        return e;
    }
    if (c == '{')
        return s_selector(p, NULL);
    if ((name = s_ident(p)) == NULL) {
        s_fail(p, c ? "unexpected character '%c'" : "unexpected end%c", c);
        return NULL;
    }
    if (!strcmp(name, "NaN") || !strcmp(name, "Inf")) {
        struct prom_expr *e = s_node(PN_NUM);
        e->num = name[0] == 'N' ? NAN : INFINITY;
        free(name);
        return e;
    }
    s_ws(p);
    if (p->s[p->i] == '(' || ((!strcmp(name, "sum") || !strcmp(name, "avg") ||
                               !strcmp(name, "min") || !strcmp(name, "max") ||
                               !strcmp(name, "count")) &&
                              (!strncmp(p->s + p->i, "by", 2) ||
                               !strncmp(p->s + p->i, "without", 7))))
        return s_call(p, name);
    return s_selector(p, name);
}

static struct prom_expr *
s_unary(struct s_p *p)
{
    if (++p->depth > PQ_DEPTH_MAX) {
        s_fail(p, "expression nested too deeply");
        return NULL;
    }
    if (s_eat(p, "-")) {
        struct prom_expr *e = s_node(PN_NEG);
        e->a = s_unary(p);
        p->depth--;
        return e;
    }
    s_eat(p, "+");
    struct prom_expr *e = s_primary(p);
    p->depth--;
    return e;
}

static struct prom_expr *
s_binary(struct s_p *p, int level)
{
    const char *ops = level ? "*/" : "+-";
    struct prom_expr *l = level ? s_unary(p) : s_binary(p, 1);

    while (!p->failed) {
        s_ws(p);
        char c = p->s[p->i];
        if (c == '\0' || !strchr(ops, c))
            break;
        p->i++;
        struct prom_expr *e = s_node(PN_BIN);
        e->op = c;
        e->a = l;
        e->b = level ? s_unary(p) : s_binary(p, 1);
        l = e;
    }
    return l;
}

static struct prom_expr *
s_expr(struct s_p *p)
{
    return s_binary(p, 0);
}

void
prom_ql_destroy(prom_expr_t **self_p)
{
    prom_expr_t *e;

    if (self_p == NULL || (e = *self_p) == NULL)
        return;
    for (size_t i = 0; i < e->nm; i++) {
        if (e->m[i].op == PM_RE || e->m[i].op == PM_NRE)
            regfree(&e->m[i].re);
        free(e->m[i].name);
        free(e->m[i].value);
    }
    free(e->m);
    for (size_t i = 0; i < e->nby; i++)
        free(e->by[i]);
    free(e->by);
    prom_ql_destroy(&e->a);
    prom_ql_destroy(&e->b);
    free(e);
    *self_p = NULL;
}

prom_expr_t *
prom_ql_parse(const char *query, char *err, size_t errlen)
{
    struct s_p p = {query, 0, 0, err, errlen, false};
    prom_expr_t *e = s_expr(&p);

    s_ws(&p);
    if (!p.failed && p.s[p.i] != '\0')
        s_fail(&p, "unexpected \"%.20s\"", p.s + p.i);
    if (!p.failed && e == NULL)
        s_fail(&p, "empty query");
    if (p.failed) {
        prom_ql_destroy(&e);
        return NULL;
    }
    return e;
}

bool
prom_ql_is_selector(const prom_expr_t *self)
{
    return self->kind == PN_SEL && self->range == 0;
}

bool
prom_ql_matches(const prom_expr_t *self, json_t *labels)
{
    for (size_t i = 0; i < self->nm; i++) {
        const struct pq_matcher *m = &self->m[i];
        const char *v = json_string_value(json_object_get(labels, m->name));
        bool ok;
        if (v == NULL)
            v = "";
        if (m->op == PM_EQ || m->op == PM_NE)
            ok = strcmp(v, m->value) == 0;
        else
            ok = regexec(&m->re, v, 0, NULL, 0) == 0;
        if (ok != (m->op == PM_EQ || m->op == PM_RE))
            return false;
    }
    return true;
}

double
prom_ql_window(const prom_expr_t *self)
{
    double w = 0, x;

    if (self == NULL)
        return 0;
    if (self->kind == PN_SEL)
        return self->range > 0 ? self->range : PROM_QL_LOOKBACK;
    if ((x = prom_ql_window(self->a)) > w)
        w = x;
    if ((x = prom_ql_window(self->b)) > w)
        w = x;
    return w;
}

/* The __name__ equality of every selector, if they all share one. */
static int
s_common_name(const prom_expr_t *e, const char **name)
{
    if (e == NULL)
        return 0;
    if (e->kind == PN_SEL) {
        const char *n = NULL;
        for (size_t i = 0; i < e->nm; i++)
            if (e->m[i].op == PM_EQ && !strcmp(e->m[i].name, "__name__"))
                n = e->m[i].value;
        if (n == NULL || (*name && strcmp(*name, n)))
            return -1;
        *name = n;
        return 0;
    }
    return s_common_name(e->a, name) || s_common_name(e->b, name) ? -1 : 0;
}

char *
prom_ql_name_glob(const prom_expr_t *self)
{
    const char *name = NULL;
    char *g;

    if (s_common_name(self, &name) || name == NULL)
        return xstrdup("*");
    /* Any character that became '_' may have been another one. */
    g = xstrdup(name);
    for (char *c = g; *c; c++)
        if (*c == '_')
            *c = '?';
    return g;
}

json_t *
prom_ql_labels(const char *key)
{
    char name[SERIES_NAME_MAX + 1], tb[SERIES_KEY_MAX];
    struct series_tag tags[SERIES_TAGS_MAX];
    int n = series_key_parse(key, name, sizeof name, tb, sizeof tb, tags,
                             SERIES_TAGS_MAX);
    json_t *l;

    if (n < 0)
        return NULL;
    for (char *c = name; *c; c++)
        if (!s_ident_char(*c, c == name))
            *c = '_';
    l = json_pack("{s:s}", "__name__", name);
    for (int i = 0; i < n; i++)
        json_object_set_new(l, tags[i].key, json_string(tags[i].value));
    return l;
}

/* --- evaluation --------------------------------------------------------- */

enum { PV_SCALAR, PV_VECTOR };

struct s_val {
    int type;       /* PV_SCALAR or PV_VECTOR */
    double s;       /* scalar */
    size_t n, cap;  /* vector elements */
    json_t **l;     /* labels (owned references) */
    double *v;      /* values */
};

struct s_ctx {
    const struct prom_series *s; /* series */
    size_t ns;
    double t;                    /* evaluation time */
    char *err;
    size_t errlen;
};

static void
s_val_add(struct s_val *x, json_t *labels, double v)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 8;
        x->l = xrealloc(x->l, x->cap * sizeof *x->l);
        x->v = xrealloc(x->v, x->cap * sizeof *x->v);
    }
    x->l[x->n] = labels;
    x->v[x->n++] = v;
}

static void
s_val_free(struct s_val *x)
{
    for (size_t i = 0; i < x->n; i++)
        json_decref(x->l[i]);
    free(x->l);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static json_t *
s_drop_name(json_t *labels)
{
    json_t *c = json_copy(labels);
    json_object_del(c, "__name__");
    return c;
}

/* Points of series i in (from, to]: first index and count. */
static size_t
s_window(const struct prom_series *s, double from, double to, size_t *first)
{
    size_t lo = 0, hi = s->n, k;

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->t[mid] <= from)
            lo = mid + 1;
        else
            hi = mid;
    }
    *first = lo;
    for (k = lo; k < s->n && s->t[k] <= to; k++)
        ;
    return k - lo;
}

static int
s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Prometheus' extrapolated increase over a window (rate and increase). */
static double
s_increase(const double *t, const double *v, size_t n, double from, double to)
{
    double inc = 0, sampled, avg, start_gap, end_gap, ext;

    for (size_t i = 1; i < n; i++)
        inc += v[i] >= v[i - 1] ? v[i] - v[i - 1] : v[i];
    sampled = t[n - 1] - t[0];
    avg = sampled / (double)(n - 1);
    start_gap = t[0] - from;
    end_gap = to - t[n - 1];
    if (inc > 0 && v[0] >= 0) {
        double zero = sampled * (v[0] / inc);
        if (zero < start_gap)
            start_gap = zero;
    }
    ext = sampled;
    ext += start_gap < avg * 1.1 ? start_gap : avg / 2;
    ext += end_gap < avg * 1.1 ? end_gap : avg / 2;
    return sampled > 0 ? inc * ext / sampled : 0;
}

static bool
s_range_fn(int fn, double q, const double *t, const double *v, size_t n,
           double from, double to, double *out)
{
    double acc = 0, m;

    if (n == 0 || ((fn == PF_RATE || fn == PF_INCREASE) && n < 2))
        return false;
    switch (fn) {
    case PF_RATE:
        *out = s_increase(t, v, n, from, to) / (to - from);
        return true;
    case PF_INCREASE:
        *out = s_increase(t, v, n, from, to);
        return true;
    case PF_COUNT_OT:
        *out = (double)n;
        return true;
    case PF_LAST_OT:
        *out = v[n - 1];
        return true;
    case PF_MIN_OT:
    case PF_MAX_OT:
        m = v[0];
        for (size_t i = 1; i < n; i++)
            if (fn == PF_MIN_OT ? v[i] < m : v[i] > m)
                m = v[i];
        *out = m;
        return true;
    case PF_STDDEV_OT: {
        double mean = 0, m2 = 0;
        for (size_t i = 0; i < n; i++) {
            double d = v[i] - mean;
            mean += d / (double)(i + 1);
            m2 += d * (v[i] - mean);
        }
        *out = sqrt(m2 / (double)n); /* population, as Prometheus */
        return true;
    }
    case PF_QUANTILE_OT: {
        double *c = xmalloc(n * sizeof *c), rank;
        size_t lo;
        memcpy(c, v, n * sizeof *c);
        qsort(c, n, sizeof *c, s_cmp_double);
        if (isnan(q)) { /* as Prometheus: NaN, -Inf below 0, +Inf above 1 */
            *out = NAN;
        } else if (q < 0 || q > 1) {
            *out = q < 0 ? -INFINITY : INFINITY;
        } else {
            rank = q * (double)(n - 1);
            lo = (size_t)rank;
            *out = lo + 1 < n ? c[lo] + (c[lo + 1] - c[lo]) * (rank - (double)lo)
                              : c[lo];
        }
        free(c);
        return true;
    }
    default:
        for (size_t i = 0; i < n; i++)
            acc += v[i];
        *out = fn == PF_SUM_OT ? acc : acc / (double)n;
        return true;
    }
}

static int s_eval(const prom_expr_t *e, struct s_ctx *c, struct s_val *out);

static int
s_eval_sel(const prom_expr_t *e, struct s_ctx *c, struct s_val *out)
{
    out->type = PV_VECTOR;
    for (size_t i = 0; i < c->ns; i++) {
        const struct prom_series *s = &c->s[i];
        size_t first, n;
        if (!prom_ql_matches(e, s->labels))
            continue;
        n = s_window(s, c->t - PROM_QL_LOOKBACK, c->t, &first);
        if (n)
            s_val_add(out, json_incref(s->labels), s->v[first + n - 1]);
    }
    return 0;
}

static int
s_eval_func(const prom_expr_t *e, struct s_ctx *c, struct s_val *out)
{
    double from = c->t - (e->a ? e->a->range : 0), q = e->b ? e->b->num : 0;

    if (e->fn == PF_ABS) {
        if (s_eval(e->a, c, out))
            return -1;
        if (out->type == PV_SCALAR) {
            out->s = fabs(out->s);
            return 0;
        }
        for (size_t i = 0; i < out->n; i++) {
            json_t *l = s_drop_name(out->l[i]);
            json_decref(out->l[i]);
            out->l[i] = l;
            out->v[i] = fabs(out->v[i]);
        }
        return 0;
    }
    out->type = PV_VECTOR;
    for (size_t i = 0; i < c->ns; i++) {
        const struct prom_series *s = &c->s[i];
        size_t first, n;
        double v;
        if (!prom_ql_matches(e->a, s->labels))
            continue;
        n = s_window(s, from, c->t, &first);
        if (s_range_fn(e->fn, q, s->t + first, s->v + first, n, from, c->t,
                       &v))
            s_val_add(out, s_drop_name(s->labels), v);
    }
    return 0;
}

static bool
s_in(char **list, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(list[i], k))
            return true;
    return false;
}

static int
s_eval_agg(const prom_expr_t *e, struct s_ctx *c, struct s_val *out)
{
    struct s_val in = {0};
    double *acc, *cnt;
    char **keys;

    if (s_eval(e->a, c, &in))
        return -1;
    out->type = PV_VECTOR;
    if (in.type != PV_VECTOR) {
        snprintf(c->err, c->errlen, "%s needs a vector", s_agg_name[e->agg]);
        s_val_free(&in);
        return -1;
    }
    acc = xcalloc(in.n + 1, sizeof *acc);
    cnt = xcalloc(in.n + 1, sizeof *cnt);
    keys = xcalloc(in.n + 1, sizeof *keys);
    for (size_t i = 0; i < in.n; i++) {
        json_t *g = json_object();
        const char *k;
        json_t *v;
        size_t j;
        char *key;
        json_object_foreach(in.l[i], k, v) {
            bool listed = s_in(e->by, e->nby, k);
            if (e->without ? (!listed && strcmp(k, "__name__")) : listed)
                json_object_set(g, k, v);
        }
        key = json_dumps(g, JSON_COMPACT | JSON_SORT_KEYS);
        for (j = 0; j < out->n && strcmp(keys[j], key); j++)
            ;
        if (j == out->n) {
            keys[j] = key;
            s_val_add(out, g, in.v[i]);
            acc[j] = in.v[i];
            cnt[j] = 1;
            continue;
        }
        free(key);
        json_decref(g);
        cnt[j]++;
        if (e->agg == PA_MIN ? in.v[i] < acc[j]
                             : e->agg == PA_MAX ? in.v[i] > acc[j] : false)
            acc[j] = in.v[i];
        else if (e->agg == PA_SUM || e->agg == PA_AVG)
            acc[j] += in.v[i];
    }
    for (size_t j = 0; j < out->n; j++) {
        out->v[j] = e->agg == PA_COUNT ? cnt[j]
                    : e->agg == PA_AVG ? acc[j] / cnt[j] : acc[j];
        free(keys[j]);
    }
    free(keys);
    free(acc);
    free(cnt);
    s_val_free(&in);
    return 0;
}

static double
s_arith(char op, double a, double b)
{
    switch (op) {
    case '+': return a + b;
    case '-': return a - b;
    case '*': return a * b;
    default: return a / b;
    }
}

static int
s_eval_bin(const prom_expr_t *e, struct s_ctx *c, struct s_val *out)
{
    struct s_val l = {0}, r = {0};
    int rc = 0;

    if (s_eval(e->a, c, &l) || s_eval(e->b, c, &r)) {
        s_val_free(&l);
        s_val_free(&r);
        return -1;
    }
    if (l.type == PV_SCALAR && r.type == PV_SCALAR) {
        out->type = PV_SCALAR;
        out->s = s_arith(e->op, l.s, r.s);
    } else if (l.type == PV_SCALAR || r.type == PV_SCALAR) {
        struct s_val *v = l.type == PV_VECTOR ? &l : &r;
        out->type = PV_VECTOR;
        for (size_t i = 0; i < v->n; i++)
            s_val_add(out, s_drop_name(v->l[i]),
                      l.type == PV_VECTOR ? s_arith(e->op, l.v[i], r.s)
                                          : s_arith(e->op, l.s, r.v[i]));
    } else {
        out->type = PV_VECTOR;
        for (size_t i = 0; i < l.n; i++) {
            json_t *a = s_drop_name(l.l[i]);
            for (size_t j = 0; j < r.n; j++) {
                json_t *b = s_drop_name(r.l[j]);
                bool eq = json_equal(a, b);
                json_decref(b);
                if (eq) {
                    s_val_add(out, json_incref(a),
                              s_arith(e->op, l.v[i], r.v[j]));
                    break;
                }
            }
            json_decref(a);
        }
    }
    s_val_free(&l);
    s_val_free(&r);
    return rc;
}

static int
s_eval(const prom_expr_t *e, struct s_ctx *c, struct s_val *out)
{
    memset(out, 0, sizeof *out);
    switch (e->kind) {
    case PN_NUM:
        out->type = PV_SCALAR;
        out->s = e->num;
        return 0;
    case PN_SEL:
        if (e->range > 0) {
            snprintf(c->err, c->errlen,
                     "a range selector must be the argument of a function");
            return -1;
        }
        return s_eval_sel(e, c, out);
    case PN_FUNC:
        return s_eval_func(e, c, out);
    case PN_AGG:
        return s_eval_agg(e, c, out);
    case PN_NEG:
        if (s_eval(e->a, c, out))
            return -1;
        out->s = -out->s;
        for (size_t i = 0; i < out->n; i++) {
            json_t *l = s_drop_name(out->l[i]);
            json_decref(out->l[i]);
            out->l[i] = l;
            out->v[i] = -out->v[i];
        }
        return 0;
    default:
        return s_eval_bin(e, c, out);
    }
}

/* A sample value as Prometheus prints it: a string. */
static json_t *
s_num(double v)
{
    char b[40];
    if (isnan(v))
        return json_string("NaN");
    if (isinf(v))
        return json_string(v > 0 ? "+Inf" : "-Inf");
    return json_string(strutil_dtoa(v, b, sizeof b));
}

static json_t *
s_pair(double t, double v)
{
    return json_pack("[f, o]", t, s_num(v));
}

json_t *
prom_ql_eval(const prom_expr_t *self, const struct prom_series *s, size_t ns,
             double t, char *err, size_t errlen)
{
    struct s_ctx c = {s, ns, t, err, errlen};
    struct s_val v;
    json_t *res;

    if (self->kind == PN_SEL && self->range > 0) {
        res = json_array();
        for (size_t i = 0; i < ns; i++) {
            size_t first, n;
            json_t *vals;
            if (!prom_ql_matches(self, s[i].labels))
                continue;
            n = s_window(&s[i], t - self->range, t, &first);
            if (n == 0)
                continue;
            vals = json_array();
            for (size_t k = first; k < first + n; k++)
                json_array_append_new(vals, s_pair(s[i].t[k], s[i].v[k]));
            json_array_append_new(res, json_pack("{s:O, s:o}", "metric",
                                                 s[i].labels, "values", vals));
        }
        return json_pack("{s:s, s:o}", "resultType", "matrix", "result", res);
    }
    if (s_eval(self, &c, &v))
        return NULL;
    if (v.type == PV_SCALAR)
        return json_pack("{s:s, s:o}", "resultType", "scalar", "result",
                         s_pair(t, v.s));
    res = json_array();
    for (size_t i = 0; i < v.n; i++)
        json_array_append_new(res, json_pack("{s:O, s:o}", "metric", v.l[i],
                                             "value", s_pair(t, v.v[i])));
    s_val_free(&v);
    return json_pack("{s:s, s:o}", "resultType", "vector", "result", res);
}

json_t *
prom_ql_eval_range(const prom_expr_t *self, const struct prom_series *s,
                   size_t ns, double start, double end, double step,
                   char *err, size_t errlen)
{
    json_t *res, *index;

    if (step <= 0 || end < start || (end - start) / step > PQ_STEPS_MAX) {
        snprintf(err, errlen, "step must be positive and give at most %d "
                              "points", PQ_STEPS_MAX);
        return NULL;
    }
    if (self->kind == PN_SEL && self->range > 0) {
        snprintf(err, errlen, "a range query needs an instant expression");
        return NULL;
    }
    res = json_array();
    index = json_object();
    for (double t = start; t <= end; t += step) {
        struct s_ctx c = {s, ns, t, err, errlen};
        struct s_val v;
        if (s_eval(self, &c, &v)) {
            json_decref(res);
            json_decref(index);
            return NULL;
        }
        if (v.type == PV_SCALAR)
            s_val_add(&v, json_object(), v.s);
        for (size_t i = 0; i < v.n; i++) {
            char *key = json_dumps(v.l[i], JSON_COMPACT | JSON_SORT_KEYS);
            json_t *row = json_object_get(index, key);
            if (row == NULL) {
                row = json_pack("{s:O, s:[]}", "metric", v.l[i], "values");
                json_array_append_new(res, row);
                json_object_set(index, key, row);
            }
            json_array_append_new(json_object_get(row, "values"),
                                  s_pair(t, v.v[i]));
            free(key);
        }
        s_val_free(&v);
    }
    json_decref(index);
    return json_pack("{s:s, s:o}", "resultType", "matrix", "result", res);
}

/* --- selftest ------------------------------------------------------------ */

static json_t *
s_test_eval(const char *q, const struct prom_series *s, size_t ns, double t)
{
    char err[200];
    prom_expr_t *e = prom_ql_parse(q, err, sizeof err);
    json_t *r;

    if (e == NULL) {
        fprintf(stderr, "parse %s: %s\n", q, err);
        assert(0);
    }
    r = prom_ql_eval(e, s, ns, t, err, sizeof err);
    prom_ql_destroy(&e);
    assert(r);
    return r;
}

static double
s_first_value(json_t *r)
{
    json_t *res = json_object_get(r, "result");
    json_t *val = json_is_array(json_array_get(res, 0))
                      ? res : json_object_get(json_array_get(res, 0), "value");
    if (!strcmp(json_string_value(json_object_get(r, "resultType")), "scalar"))
        val = res;
    return strtod(json_string_value(json_array_get(val, 1)), NULL);
}

void
prom_ql_test(bool verbose)
{
    double t[10], a[10], b[10];
    struct prom_series s[2];
    char err[200];
    json_t *r;

    for (int i = 0; i < 10; i++) {
        t[i] = 1000 + 10 * i;
        a[i] = 100 + 5 * i;          /* a counter: +0.5/s */
        b[i] = i % 2 ? 20 : 10;
    }
    s[0] = (struct prom_series){prom_ql_labels("req.count{job=api}"), t, a, 10};
    s[1] = (struct prom_series){prom_ql_labels("temp{job=db,room=a}"), t, b, 10};
    TEST_STREQ(json_string_value(json_object_get(s[0].labels, "__name__")),
               "req_count");

    /* Instant queries with one value to check: query, time, want, slack. */
    static const struct {
        const char *q;
        double t, want, eps;
    } one[] = {
        {"1 + 2 * 3", 1090, 7, 1e-12},
        {"-(4 - 6) / 4", 1090, 0.5, 1e-12},
        {"req_count", 1090, 145, 1e-12},
        {"rate(req_count{job=\"api\"}[90s])", 1090, 0.5, 1e-9},
        {"increase(req_count[1m])", 1090, 30, 1e-9},
        {"avg_over_time(temp[100s])", 1090, 15, 1e-12},
        {"quantile_over_time(0.5, temp{room=~\"a|b\"}[100s])", 1090, 15,
         1e-12},
        {"sum({__name__=~\"temp|req_count\"}) * 2", 1090, (145 + 20) * 2,
         1e-12},
        {"max without (room) (temp)", 1085, 10, 1e-12},
    };
    for (size_t i = 0; i < sizeof one / sizeof one[0]; i++) {
        r = s_test_eval(one[i].q, s, 2, one[i].t);
        double v = s_first_value(r);
        if (fabs(v - one[i].want) > one[i].eps)
            fprintf(stderr, "%s = %.17g, want %.17g\n", one[i].q, v,
                    one[i].want);
        TEST_NEAR(v, one[i].want, one[i].eps);
        json_decref(r);
    }
    /* A quantile outside [0, 1] as Prometheus: +Inf above 1, NaN for NaN
     * (fuzz_prom_ql found NaN cast to an index). */
    r = s_test_eval("quantile_over_time(NaN, temp[100s])", s, 2, 1090);
    assert(isnan(s_first_value(r)));
    json_decref(r);
    r = s_test_eval("quantile_over_time(2, temp[100s])", s, 2, 1090);
    assert(isinf(s_first_value(r)) && s_first_value(r) > 0);
    json_decref(r);
    r = s_test_eval("count by (job) ({job=~\".+\"})", s, 2, 1090);
    assert(json_array_size(json_object_get(r, "result")) == 2);
    json_decref(r);
    r = s_test_eval("temp[25s]", s, 2, 1090);
    TEST_STREQ(json_string_value(json_object_get(r, "resultType")), "matrix");
    json_decref(r);

    static const char *bad[] = {"", "rate(temp)", "temp{a=}", "1 +", "foo(x)",
                                "temp[5x]", "{a=~\"(\"}", "sum(", "{}",
                                "{a=~\"z***\"}", "{a=~\"(a+)?{2}*\"}",
                                "{a=~\"((((((((((a))))))))))\"}",
                                ("((((((((((((((((((((((((((((((((((((((((((("
                                 "((((((((((((((((((((((((((1")};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        prom_expr_t *e = prom_ql_parse(bad[i], err, sizeof err);
        if (e)
            fprintf(stderr, "parsed bad query %s\n", bad[i]);
        assert(e == NULL);
    }
    /* Repetitions inside brackets, escaped and one after a group are fine. */
    static const char *good_re[] = {"{a=~\"[*+]+\"}", "{a=~\"x\\\\*+\"}",
                                    "{a=~\"(ab)*c{1,3}\"}", "{a=~\"[]*]*\"}"};
    for (size_t i = 0; i < sizeof good_re / sizeof good_re[0]; i++) {
        prom_expr_t *g = prom_ql_parse(good_re[i], err, sizeof err);
        if (g == NULL)
            fprintf(stderr, "refused %s: %s\n", good_re[i], err);
        assert(g != NULL);
        prom_ql_destroy(&g);
    }
    prom_expr_t *e = prom_ql_parse("rate(req_count[5m]) + temp", err, sizeof err);
    char *g = prom_ql_name_glob(e);
    TEST_STREQ(g, "*");
    free(g);
    TEST_NEAR(prom_ql_window(e), 300, 0);
    prom_ql_destroy(&e);
    e = prom_ql_parse("sum by (job) (rate(req_count[10m]))", err, sizeof err);
    g = prom_ql_name_glob(e);
    TEST_STREQ(g, "req?count");
    free(g);
    r = prom_ql_eval_range(e, s, 2, 1000, 1090, 30, err, sizeof err);
    assert(r && json_array_size(json_object_get(r, "result")) == 1);
    json_decref(r);
    prom_ql_destroy(&e);
    json_decref(s[0].labels);
    json_decref(s[1].labels);
    (void)verbose;
    TEST_OK("prom_ql");
}
