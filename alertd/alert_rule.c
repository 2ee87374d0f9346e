/*
 * alert_rule: parser and evaluator of alertd's rule language (grammar in
 * alert_rule.h and alertd.8).
 *
 * The lexer produces one token of lookahead; the parser is one function
 * per grammar level and builds nodes in a flat array owned by the rule
 * (children are indices), so a rule is freed in a handful of calls and a
 * parse error leaks nothing. Types are checked while parsing: a
 * comparison takes numbers and gives a truth value, "and"/"or"/"not" take
 * truth values, and the condition must be a truth value.
 */
#include "alertd/alert_rule.h"
#include "common/clock.h"
#include "common/series.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest rule name. */
#define S_NAME_MAX 128
/* Longest function name token ("count", "p999", "time_to"). */
#define S_FNAME_MAX 8
/* Prefix of device attributes in a rule. */
#define S_DEVICE_PREFIX "device."

enum s_tok_kind {
    T_EOF,
    T_NUM,
    T_DUR,
    T_NAME,
    T_STR,
    T_LP,
    T_RP,
    T_COMMA,
    T_PLUS,
    T_MINUS,
    T_STAR,
    T_SLASH,
    T_LT,
    T_LE,
    T_GT,
    T_GE,
    T_EQ,
    T_NE,
    T_BANG,
    T_ANDAND,
    T_OROR
};

enum s_node_kind {
    N_NUM,
    N_REF, /* a metric, possibly through a function */
    N_NEG,
    N_ADD,
    N_SUB,
    N_MUL,
    N_DIV,
    N_LT,
    N_LE,
    N_GT,
    N_GE,
    N_EQ,
    N_NE,
    N_NOT,
    N_AND,
    N_OR,
    N_NODATA, /* nodata(metric, window): age above the window */
    N_ATTR    /* device.NAME: ref indexes the rule's attrs */
};

/* Binding strength of each node kind, for the formatter. */
enum s_prec {
    P_OR = 1,
    P_AND,
    P_NOT,
    P_CMP,
    P_SUM,
    P_PROD,
    P_NEG,
    P_ATOM
};

struct s_token {
    enum s_tok_kind kind; /* what it is */
    size_t pos;           /* byte offset in the text */
    size_t len;           /* bytes of source text */
    double num;           /* T_NUM value */
    int64_t dur;          /* T_DUR value, ns */
    char str[SERIES_NAME_MAX + 1]; /* T_NAME or decoded T_STR text */
    size_t sel_pos;       /* offset of a "{...}" selector right after */
    size_t sel_len;       /* its length including braces, 0 when none */
};

struct s_ref {
    char *name;          /* metric name or glob */
    bool glob;           /* name contains '*' or '?' */
    char *sel;           /* selector text "{k=v,...}" as written, or NULL */
    char *fbuf;          /* storage of the filter strings */
    struct series_tag filters[SERIES_TAGS_MAX]; /* parsed selector */
    size_t nfilters;     /* number of filters */
};

struct s_node {
    enum s_node_kind kind;  /* operator or leaf kind */
    bool isbool;            /* yields a truth value (else a number) */
    int a, b;               /* children (indices), -1 when absent */
    double num;             /* N_NUM value (a duration: seconds, and
                               window holds it in ns for the formatter) */
    int ref;                /* N_REF: index into refs */
    enum alert_fn fn;       /* N_REF: function */
    int64_t window;         /* N_REF: window ns (0: latest) */
    double q;               /* N_REF: quantile of pNN */
    char fname[S_FNAME_MAX]; /* N_REF: function name as written, or "" */
};

struct s_sev {
    const char *name; /* static severity name */
    int64_t after;    /* firing duration from which it applies, ns */
};

struct alert_rule {
    char *name;                 /* rule name */
    char *text;                 /* condition text as given */
    struct s_node *nodes;       /* node arena */
    size_t nnodes, cap;         /* used and allocated nodes */
    struct s_ref refs[ALERT_RULE_REFS_MAX]; /* distinct metric references */
    size_t nrefs;               /* used refs */
    bool single;                /* every ref names the same metric */
    int cond;                   /* root of the condition */
    int clear;                  /* root of "clear when", or -1 */
    int64_t for_ns;             /* "for" duration, 0 when absent */
    struct s_sev sev[ALERT_RULE_SEV_MAX]; /* severity steps, ascending */
    size_t nsev;                /* used steps (>= 1) */
    int64_t sev_back;           /* de-escalate after this long below the
                                   condition, ns (0: never) */
    int64_t max_window;         /* longest window read */
    bool deadman;               /* reads age() or nodata() */
    char *notify[ALERT_RULE_NOTIFY_MAX]; /* channel names to notify */
    size_t nnotify;             /* used */
    int64_t throttle;           /* least time between notifications, ns */
    char *escalate;             /* channel for unacknowledged alerts */
    char *inhibitor;            /* rule whose firing alerts mute ours */
    char *inhibit_on[ALERT_RULE_INHIBIT_TAGS_MAX]; /* tags that must match */
    size_t ninhibit_on;         /* used */
    int64_t escalate_after;     /* firing this long unacknowledged, ns */
    char *tenant;               /* tag filter value of alert_rule_set_tenant */
    bool group;                 /* notifications are grouped */
    int64_t group_within;       /* window of a group, ns */
    char *group_by[ALERT_RULE_GROUP_TAGS_MAX]; /* tags of the group key */
    size_t ngroup_by;           /* used */
    char *attrs[ALERT_RULE_ATTRS_MAX]; /* device attribute names */
    size_t nattrs;              /* used */
};

struct s_parser {
    const char *text;      /* condition text */
    size_t len;            /* its length */
    size_t pos;            /* lexer position */
    struct s_token tok;    /* current token */
    alert_rule_t *rule;    /* rule being built */
    struct alert_rule_error *err; /* where the first error goes */
    bool failed;           /* an error was recorded */
    int depth;             /* recursion depth */
};

static const char *s_severities[] = {"info", "warning", "error", "critical"};

static const char *s_keywords[] = {
    "and",   "or",    "not",    "for",      "clear",   "when",
    "severity", "after", "notify", "throttle", "escalate", "inhibited",
    "by", "on", "group", "within"};

static const struct {
    const char *name;
    enum alert_fn fn;
} s_fns[] = {
    {"avg", ALERT_FN_AVG},     {"min", ALERT_FN_MIN},
    {"max", ALERT_FN_MAX},     {"sum", ALERT_FN_SUM},
    {"count", ALERT_FN_COUNT}, {"std", ALERT_FN_STD},
    {"rate", ALERT_FN_RATE},   {"delta", ALERT_FN_DELTA},
    {"anomaly", ALERT_FN_ANOMALY}, {"age", ALERT_FN_AGE},
    {"nodata", ALERT_FN_AGE},  {"time_to", ALERT_FN_TIME_TO},
    {"alarm", ALERT_FN_ALARM},
};

/* --------------------------------------------------------------------- */
/* Errors and lexer */

static void s_error(struct s_parser *p, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
s_error(struct s_parser *p, size_t pos, const char *fmt, ...)
{
    va_list ap;

    if (p->failed)
        return;
    p->failed = true;
    p->err->pos = pos;
    va_start(ap, fmt);
    vsnprintf(p->err->reason, sizeof p->err->reason, fmt, ap);
    va_end(ap);
}

static bool
s_is_keyword(const char *s)
{
    for (size_t i = 0; i < sizeof s_keywords / sizeof s_keywords[0]; i++)
        if (strcmp(s, s_keywords[i]) == 0)
            return true;
    return false;
}

static bool
s_name_start(int c)
{
    return isalpha(c) || c == '_';
}

static bool
s_name_char(int c)
{
    return isalnum(c) || c == '_' || c == '.';
}

/* A "{...}" selector directly after a metric token belongs to it. */
static void
s_lex_selector(struct s_parser *p)
{
    size_t start = p->pos;

    if (p->pos >= p->len || p->text[p->pos] != '{')
        return;
    while (p->pos < p->len && p->text[p->pos] != '}')
        p->pos++;
    if (p->pos >= p->len) {
        s_error(p, start, "unterminated '{' tag selector");
        return;
    }
    p->pos++;
    p->tok.sel_pos = start;
    p->tok.sel_len = p->pos - start;
}

static void
s_lex_number(struct s_parser *p)
{
    const char *s = p->text;
    size_t i = p->pos, start = p->pos;
    bool real = false;
    char buf[64];

    while (i < p->len && isdigit((unsigned char)s[i]))
        i++;
    if (i < p->len && s[i] == '.') {
        real = true;
        i++;
        if (i >= p->len || !isdigit((unsigned char)s[i])) {
            s_error(p, start, "malformed number");
            return;
        }
        while (i < p->len && isdigit((unsigned char)s[i]))
            i++;
    }
    if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->len && (s[j] == '+' || s[j] == '-'))
            j++;
        if (j < p->len && isdigit((unsigned char)s[j])) {
            real = true;
            i = j;
            while (i < p->len && isdigit((unsigned char)s[i]))
                i++;
        }
    }
    if (i < p->len && isalpha((unsigned char)s[i])) {
        /* A duration: an integer and a unit, "5m", "250ms". */
        while (i < p->len && isalpha((unsigned char)s[i]))
            i++;
        if (real || i - start >= sizeof buf) {
            s_error(p, start, "malformed duration");
            return;
        }
        memcpy(buf, s + start, i - start);
        buf[i - start] = '\0';
        if (clock_parse_duration_ms(buf, &p->tok.dur) < 0) {
            /* Rules count time in milliseconds, as readings do; say
             * which of the three ways the duration failed. */
            int64_t ns;
            if (clock_parse_duration(buf, &ns) == 0)
                s_error(p, start,
                        "duration '%s' is not whole milliseconds", buf);
            else if (strspn(buf, "0") > 0 &&
                     isalpha((unsigned char)buf[strspn(buf, "0")]))
                s_error(p, start,
                        "duration '%s' must be more than zero (leave out "
                        "'for' to fire at once)",
                        buf);
            else
                s_error(p, start,
                        "malformed duration '%s' (want e.g. 30s, 5m, 1h, "
                        "1d)",
                        buf);
            return;
        }
        p->tok.kind = T_DUR;
        p->pos = i;
        return;
    }
    if (i - start >= sizeof buf) {
        s_error(p, start, "number too long");
        return;
    }
    memcpy(buf, s + start, i - start);
    buf[i - start] = '\0';
    if (strutil_tod(buf, &p->tok.num) < 0) {
        s_error(p, start, "number out of range");
        return;
    }
    p->tok.kind = T_NUM;
    p->pos = i;
}

static void
s_lex_string(struct s_parser *p)
{
    size_t start = p->pos, n = 0;
    const char *why;

    p->pos++; /* opening quote */
    for (;;) {
        if (p->pos >= p->len) {
            s_error(p, start, "unterminated string");
            return;
        }
        char c = p->text[p->pos++];
        if (c == '"')
            break;
        if (c == '\\') {
            if (p->pos >= p->len ||
                (p->text[p->pos] != '"' && p->text[p->pos] != '\\')) {
                s_error(p, p->pos - 1, "unknown escape (only \\\" and \\\\)");
                return;
            }
            c = p->text[p->pos++];
        }
        if (n >= SERIES_NAME_MAX) {
            s_error(p, start, "metric name longer than %d bytes",
                    SERIES_NAME_MAX);
            return;
        }
        p->tok.str[n++] = c;
    }
    p->tok.str[n] = '\0';
    if ((why = series_name_check(p->tok.str, n)) != NULL) {
        s_error(p, start, "metric name %s", why);
        return;
    }
    p->tok.kind = T_STR;
    s_lex_selector(p);
}

/* Advance to the next token. On a lexical error p->failed is set and the
 * token is T_EOF, so every parse loop ends. */
static void
s_next(struct s_parser *p)
{
    const char *s = p->text;

    while (p->pos < p->len && isspace((unsigned char)s[p->pos]))
        p->pos++;
    memset(&p->tok, 0, offsetof(struct s_token, str));
    p->tok.str[0] = '\0';
    p->tok.sel_len = 0;
    p->tok.pos = p->pos;
    p->tok.kind = T_EOF;
    if (p->failed || p->pos >= p->len)
        return;

    int c = (unsigned char)s[p->pos];
    int d = p->pos + 1 < p->len ? (unsigned char)s[p->pos + 1] : 0;
    if (isdigit(c)) {
        s_lex_number(p);
    } else if (c == '.' && isdigit(d)) {
        s_error(p, p->pos, "malformed number (write 0.5, not .5)");
    } else if (s_name_start(c)) {
        size_t start = p->pos;
        while (p->pos < p->len && s_name_char((unsigned char)s[p->pos]))
            p->pos++;
        if (p->pos - start > SERIES_NAME_MAX) {
            s_error(p, start, "name longer than %d bytes", SERIES_NAME_MAX);
        } else {
            memcpy(p->tok.str, s + start, p->pos - start);
            p->tok.str[p->pos - start] = '\0';
            p->tok.kind = T_NAME;
            s_lex_selector(p);
        }
    } else if (c == '"') {
        s_lex_string(p);
    } else {
        static const struct {
            const char *op;
            enum s_tok_kind kind;
        } ops[] = {
            {"<=", T_LE}, {">=", T_GE},   {"==", T_EQ},    {"!=", T_NE},
            {"&&", T_ANDAND}, {"||", T_OROR}, {"<", T_LT},  {">", T_GT},
            {"(", T_LP},  {")", T_RP},    {",", T_COMMA},  {"+", T_PLUS},
            {"-", T_MINUS}, {"*", T_STAR}, {"/", T_SLASH}, {"!", T_BANG},
        };
        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
            size_t n = strlen(ops[i].op);
            if (p->pos + n <= p->len && memcmp(s + p->pos, ops[i].op, n) == 0) {
                p->tok.kind = ops[i].kind;
                p->pos += n;
                p->tok.len = n;
                return;
            }
        }
        if (c == '=')
            s_error(p, p->pos, "unexpected '=' (did you mean '=='?)");
        else if (isprint(c))
            s_error(p, p->pos, "unexpected character '%c'", c);
        else
            s_error(p, p->pos, "unexpected byte 0x%02x", c);
    }
    if (p->failed)
        p->tok.kind = T_EOF;
    p->tok.len = p->pos - p->tok.pos;
}

static bool
s_is_word(const struct s_parser *p, const char *word)
{
    return p->tok.kind == T_NAME && p->tok.sel_len == 0 &&
           strcmp(p->tok.str, word) == 0;
}

/* Describe the current token for an error message. */
static const char *
s_tok_desc(const struct s_parser *p, char *buf, size_t len)
{
    if (p->tok.kind == T_EOF)
        return "end of rule";
    size_t n = p->tok.len < 24 ? p->tok.len : 24;
    snprintf(buf, len, "'%.*s'", (int)n, p->text + p->tok.pos);
    return buf;
}

/* --------------------------------------------------------------------- */
/* Parser */

static int
s_node_new(struct s_parser *p, enum s_node_kind kind, bool isbool, int a,
           int b)
{
    alert_rule_t *r = p->rule;

    if (r->nnodes == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->nodes = xrealloc(r->nodes, r->cap * sizeof *r->nodes);
    }
    struct s_node *n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->isbool = isbool;
    n->a = a;
    n->b = b;
    n->ref = -1;
    return (int)r->nnodes++;
}

/* Parse the selector of the current token into ref filters. */
static int
s_parse_selector(struct s_parser *p, struct s_ref *ref)
{
    const char *sel = p->text + p->tok.sel_pos + 1;
    size_t n = p->tok.sel_len - 2;
    char *q;

    ref->sel = xstrndup(p->text + p->tok.sel_pos, p->tok.sel_len);
    ref->fbuf = xstrndup(sel, n);
    if (n == 0) {
        s_error(p, p->tok.sel_pos, "empty tag selector");
        return -1;
    }
    q = ref->fbuf;
    for (;;) {
        char *comma = strchr(q, ',');
        char *eq = strchr(q, '=');
        const char *why;
        size_t at = p->tok.sel_pos + 1 + (size_t)(q - ref->fbuf);

        if (comma)
            *comma = '\0';
        if (eq == NULL || (comma && eq > comma)) {
            s_error(p, at, "tag selector wants key=value");
            return -1;
        }
        *eq = '\0';
        if ((why = series_tag_key_check(q)) != NULL) {
            s_error(p, at, "%s", why);
            return -1;
        }
        if ((why = series_tag_value_check(eq + 1)) != NULL) {
            s_error(p, at, "%s", why);
            return -1;
        }
        if (ref->nfilters == SERIES_TAGS_MAX) {
            s_error(p, at, "more than %d tags in a selector", SERIES_TAGS_MAX);
            return -1;
        }
        for (size_t i = 0; i < ref->nfilters; i++)
            if (strcmp(ref->filters[i].key, q) == 0) {
                s_error(p, at, "tag '%s' repeats in the selector", q);
                return -1;
            }
        ref->filters[ref->nfilters].key = q;
        ref->filters[ref->nfilters].value = eq + 1;
        ref->nfilters++;
        if (comma == NULL)
            break;
        q = comma + 1;
    }
    return 0;
}

/* The current token is a metric (NAME or STR): find or add its ref and
 * consume it. Returns the ref index or -1. */
static int
s_parse_metric(struct s_parser *p)
{
    alert_rule_t *r = p->rule;
    char desc[40];

    if (p->tok.kind == T_NAME && s_is_keyword(p->tok.str)) {
        s_error(p, p->tok.pos,
                "'%s' is a keyword; quote a metric of that name", p->tok.str);
        return -1;
    }
    if (p->tok.kind != T_NAME && p->tok.kind != T_STR) {
        s_error(p, p->tok.pos, "expected a metric name, found %s",
                s_tok_desc(p, desc, sizeof desc));
        return -1;
    }
    for (size_t i = 0; i < r->nrefs; i++) {
        const struct s_ref *o = &r->refs[i];
        size_t sl = o->sel ? strlen(o->sel) : 0;
        if (strcmp(o->name, p->tok.str) == 0 && sl == p->tok.sel_len &&
            (sl == 0 || memcmp(o->sel, p->text + p->tok.sel_pos, sl) == 0)) {
            s_next(p);
            return (int)i;
        }
    }
    if (r->nrefs == ALERT_RULE_REFS_MAX) {
        s_error(p, p->tok.pos, "more than %d distinct metrics in a rule",
                ALERT_RULE_REFS_MAX);
        return -1;
    }
    struct s_ref *ref = &r->refs[r->nrefs++];
    memset(ref, 0, sizeof *ref);
    ref->name = xstrdup(p->tok.str);
    ref->glob = strpbrk(ref->name, "*?") != NULL;
    if (p->tok.sel_len && s_parse_selector(p, ref) < 0)
        return -1;
    s_next(p);
    return (int)(r->nrefs - 1);
}

static int s_parse_or(struct s_parser *p);

static bool
s_want_num(struct s_parser *p, int n, size_t pos)
{
    if (n < 0)
        return false;
    if (p->rule->nodes[n].isbool) {
        s_error(p, pos, "expected a number, found a condition");
        return false;
    }
    return true;
}

static bool
s_want_bool(struct s_parser *p, int n, size_t pos)
{
    if (n < 0)
        return false;
    if (!p->rule->nodes[n].isbool) {
        s_error(p, pos,
                "expected a condition (a comparison such as x > 30), "
                "found a number");
        return false;
    }
    return true;
}

static bool
s_expect(struct s_parser *p, enum s_tok_kind kind, const char *what)
{
    char desc[40];

    if (p->tok.kind != kind) {
        s_error(p, p->tok.pos, "expected %s, found %s", what,
                s_tok_desc(p, desc, sizeof desc));
        return false;
    }
    s_next(p);
    return true;
}

/* FN "(" metric "," DURATION ")" or anomaly|alarm "(" metric ["," DURATION]
 * ")" */
static int
s_parse_call(struct s_parser *p)
{
    char fname[SERIES_NAME_MAX + 1];
    size_t pos = p->tok.pos;
    enum alert_fn fn = ALERT_FN_MAX_;
    double q = 0;
    int64_t window = 0;

    strcpy(fname, p->tok.str);
    for (size_t i = 0; i < sizeof s_fns / sizeof s_fns[0]; i++)
        if (strcmp(fname, s_fns[i].name) == 0)
            fn = s_fns[i].fn;
    if (fn == ALERT_FN_MAX_ && fname[0] == 'p' &&
        (strlen(fname) == 3 || strlen(fname) == 4) &&
        strspn(fname + 1, "0123456789") == strlen(fname) - 1) {
        fn = ALERT_FN_QUANTILE;
        q = atof(fname + 1) / (strlen(fname) == 3 ? 100.0 : 1000.0);
    }
    if (fn == ALERT_FN_MAX_) {
        s_error(p, pos,
                "unknown function '%s' (avg, min, max, sum, count, std, "
                "rate, delta, pNN, anomaly, alarm, age, nodata, time_to)",
                fname);
        return -1;
    }
    s_next(p); /* name */
    s_next(p); /* "(" */
    int ref = s_parse_metric(p);
    if (ref < 0)
        return -1;
    bool nodata = strcmp(fname, "nodata") == 0;
    if (fn == ALERT_FN_TIME_TO) {
        /* time_to(metric, [-]T [, window | forecast]) */
        bool neg = false;
        if (!s_expect(p, T_COMMA, "',' and a threshold"))
            return -1;
        if (p->tok.kind == T_MINUS) {
            neg = true;
            s_next(p);
        }
        if (p->tok.kind != T_NUM) {
            char desc[40];
            s_error(p, p->tok.pos, "expected a threshold number, found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
        q = neg ? -p->tok.num : p->tok.num;
        s_next(p);
        window = ALERT_RULE_TIME_TO_WINDOW_NS;
        if (p->tok.kind != T_COMMA)
            goto close; /* else the window follows, as for avg() */
        s_next(p);
        if (p->tok.kind == T_NAME && p->tok.sel_len == 0 &&
            strcmp(p->tok.str, "forecast") == 0) {
            fn = ALERT_FN_FORECAST_TO;
            window = 0;
            s_next(p);
            goto close;
        }
        goto duration;
    }
    if (((fn == ALERT_FN_ANOMALY || fn == ALERT_FN_ALARM) &&
         p->tok.kind == T_RP) ||
        (fn == ALERT_FN_AGE && !nodata)) {
        window = 0;
    } else {
        if (!s_expect(p, T_COMMA, "',' and a window such as 5m"))
            return -1;
    duration:
        if (p->tok.kind != T_DUR) {
            char desc[40];
            s_error(p, p->tok.pos, "expected a window duration, found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
        window = p->tok.dur;
        if (window > ALERT_RULE_WINDOW_MAX_NS) {
            s_error(p, p->tok.pos, "window longer than 7d");
            return -1;
        }
        s_next(p);
    }
close:
    if (!s_expect(p, T_RP, "')'"))
        return -1;
    if (fn == ALERT_FN_AGE)
        p->rule->deadman = true;
    int n = s_node_new(p, nodata ? N_NODATA : N_REF, nodata, -1, -1);
    struct s_node *node = &p->rule->nodes[n];
    node->ref = ref;
    node->fn = fn;
    node->window = window;
    node->q = q;
    /* A known function name: at most "count" or "p999". */
    size_t fl = strlen(fname);
    assert(fl < sizeof node->fname);
    memcpy(node->fname, fname, fl + 1);
    if (window > p->rule->max_window && !nodata)
        p->rule->max_window = window;
    return n;
}

/* device.NAME: a numeric attribute of the series' device. */
static int
s_parse_attr(struct s_parser *p)
{
    const char *a = p->tok.str + strlen(S_DEVICE_PREFIX);
    alert_rule_t *r = p->rule;
    size_t k;

    if (series_tag_key_check(a)) {
        s_error(p, p->tok.pos, "expected device.NAME with NAME like "
                "[A-Za-z_][A-Za-z0-9_]* (quote a metric whose name starts "
                "with \"device.\")");
        return -1;
    }
    for (k = 0; k < r->nattrs; k++)
        if (strcmp(r->attrs[k], a) == 0)
            break;
    if (k == r->nattrs) {
        if (r->nattrs == ALERT_RULE_ATTRS_MAX) {
            s_error(p, p->tok.pos, "more than %d device attributes",
                    ALERT_RULE_ATTRS_MAX);
            return -1;
        }
        r->attrs[r->nattrs++] = xstrdup(a);
    }
    int n = s_node_new(p, N_ATTR, false, -1, -1);
    r->nodes[n].ref = (int)k;
    s_next(p);
    return n;
}

static int
s_parse_primary(struct s_parser *p)
{
    char desc[40];
    int n;

    switch (p->tok.kind) {
    case T_NUM:
        n = s_node_new(p, N_NUM, false, -1, -1);
        p->rule->nodes[n].num = p->tok.num;
        s_next(p);
        return n;
    case T_LP: {
        size_t pos = p->tok.pos;
        s_next(p);
        n = s_parse_or(p);
        if (n < 0)
            return -1;
        if (p->tok.kind != T_RP) {
            s_error(p, p->tok.kind == T_EOF ? pos : p->tok.pos,
                    p->tok.kind == T_EOF ? "unbalanced '('"
                                         : "expected ')', found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
        s_next(p);
        return n;
    }
    case T_NAME: {
        /* A name directly followed by "(" is a function call. */
        size_t after = p->pos;
        while (after < p->len && isspace((unsigned char)p->text[after]))
            after++;
        if (p->tok.sel_len == 0 && after < p->len && p->text[after] == '(')
            return s_parse_call(p);
        if (p->tok.sel_len == 0 &&
            strncmp(p->tok.str, S_DEVICE_PREFIX, strlen(S_DEVICE_PREFIX)) == 0)
            return s_parse_attr(p);
    }
        /* FALLTHROUGH */
    case T_STR: {
        int ref = s_parse_metric(p);
        if (ref < 0)
            return -1;
        n = s_node_new(p, N_REF, false, -1, -1);
        p->rule->nodes[n].ref = ref;
        p->rule->nodes[n].fn = ALERT_FN_LAST;
        return n;
    }
    case T_DUR:
        /* A duration in an expression is a number of seconds. */
        n = s_node_new(p, N_NUM, false, -1, -1);
        p->rule->nodes[n].num = (double)p->tok.dur / CLOCK_NS_PER_S;
        p->rule->nodes[n].window = p->tok.dur;
        s_next(p);
        return n;
    default:
        s_error(p, p->tok.pos, "expected a number, metric or '(', found %s",
                s_tok_desc(p, desc, sizeof desc));
        return -1;
    }
}

static int
s_parse_unary(struct s_parser *p)
{
    int n;

    if (++p->depth > ALERT_RULE_DEPTH_MAX) {
        s_error(p, p->tok.pos, "nested deeper than %d", ALERT_RULE_DEPTH_MAX);
        return -1;
    }
    if (p->tok.kind == T_MINUS) {
        size_t pos = p->tok.pos;
        s_next(p);
        int a = s_parse_unary(p);
        if (!s_want_num(p, a, pos))
            return -1;
        n = s_node_new(p, N_NEG, false, a, -1);
    } else {
        n = s_parse_primary(p);
    }
    p->depth--;
    return n;
}

static int
s_parse_prod(struct s_parser *p)
{
    int a = s_parse_unary(p);

    while (a >= 0 && (p->tok.kind == T_STAR || p->tok.kind == T_SLASH)) {
        enum s_node_kind k = p->tok.kind == T_STAR ? N_MUL : N_DIV;
        size_t pos = p->tok.pos;
        if (!s_want_num(p, a, pos))
            return -1;
        s_next(p);
        int b = s_parse_unary(p);
        if (!s_want_num(p, b, pos))
            return -1;
        a = s_node_new(p, k, false, a, b);
    }
    return a;
}

static int
s_parse_sum(struct s_parser *p)
{
    int a = s_parse_prod(p);

    while (a >= 0 && (p->tok.kind == T_PLUS || p->tok.kind == T_MINUS)) {
        enum s_node_kind k = p->tok.kind == T_PLUS ? N_ADD : N_SUB;
        size_t pos = p->tok.pos;
        if (!s_want_num(p, a, pos))
            return -1;
        s_next(p);
        int b = s_parse_prod(p);
        if (!s_want_num(p, b, pos))
            return -1;
        a = s_node_new(p, k, false, a, b);
    }
    return a;
}

static bool
s_cmp_kind(enum s_tok_kind t, enum s_node_kind *k)
{
    switch (t) {
    case T_LT: *k = N_LT; return true;
    case T_LE: *k = N_LE; return true;
    case T_GT: *k = N_GT; return true;
    case T_GE: *k = N_GE; return true;
    case T_EQ: *k = N_EQ; return true;
    case T_NE: *k = N_NE; return true;
    default: return false;
    }
}

static int
s_parse_cmp(struct s_parser *p)
{
    enum s_node_kind k;
    int a = s_parse_sum(p);

    if (a < 0 || !s_cmp_kind(p->tok.kind, &k))
        return a;
    size_t pos = p->tok.pos;
    enum s_node_kind op = k;
    if (!s_want_num(p, a, pos))
        return -1;
    s_next(p);
    int b = s_parse_sum(p);
    if (!s_want_num(p, b, pos))
        return -1;
    if (s_cmp_kind(p->tok.kind, &k)) {
        s_error(p, p->tok.pos, "comparisons do not chain; join them with 'and'");
        return -1;
    }
    return s_node_new(p, op, true, a, b);
}

static int
s_parse_not(struct s_parser *p)
{
    int n;

    if (++p->depth > ALERT_RULE_DEPTH_MAX) {
        s_error(p, p->tok.pos, "nested deeper than %d", ALERT_RULE_DEPTH_MAX);
        return -1;
    }
    if (p->tok.kind == T_BANG || s_is_word(p, "not")) {
        size_t pos = p->tok.pos;
        s_next(p);
        int a = s_parse_not(p);
        if (!s_want_bool(p, a, pos))
            return -1;
        n = s_node_new(p, N_NOT, true, a, -1);
    } else {
        n = s_parse_cmp(p);
    }
    p->depth--;
    return n;
}

static int
s_parse_and(struct s_parser *p)
{
    int a = s_parse_not(p);

    while (a >= 0 && (p->tok.kind == T_ANDAND || s_is_word(p, "and"))) {
        size_t pos = p->tok.pos;
        if (!s_want_bool(p, a, pos))
            return -1;
        s_next(p);
        int b = s_parse_not(p);
        if (!s_want_bool(p, b, pos))
            return -1;
        a = s_node_new(p, N_AND, true, a, b);
    }
    return a;
}

static int
s_parse_or(struct s_parser *p)
{
    int a;

    if (++p->depth > ALERT_RULE_DEPTH_MAX) {
        s_error(p, p->tok.pos, "nested deeper than %d", ALERT_RULE_DEPTH_MAX);
        return -1;
    }
    a = s_parse_and(p);
    while (a >= 0 && (p->tok.kind == T_OROR || s_is_word(p, "or"))) {
        size_t pos = p->tok.pos;
        if (!s_want_bool(p, a, pos))
            return -1;
        s_next(p);
        int b = s_parse_and(p);
        if (!s_want_bool(p, b, pos))
            return -1;
        a = s_node_new(p, N_OR, true, a, b);
    }
    p->depth--;
    return a;
}

/* An expression that must be a condition. */
static int
s_parse_condition(struct s_parser *p)
{
    size_t pos = p->tok.pos;
    int n = s_parse_or(p);

    if (!s_want_bool(p, n, pos))
        return -1;
    return n;
}

static const char *
s_severity_static(const char *s)
{
    for (size_t i = 0; i < sizeof s_severities / sizeof s_severities[0]; i++)
        if (strcmp(s, s_severities[i]) == 0)
            return s_severities[i];
    return NULL;
}

static int
s_parse_severity(struct s_parser *p)
{
    alert_rule_t *r = p->rule;
    char desc[40];

    for (;;) {
        const char *sev = NULL;
        if (r->nsev > 1 && s_is_word(p, "back")) {
            /* ", back after D": de-escalation to the first step. */
            s_next(p);
            if (!s_is_word(p, "after")) {
                s_error(p, p->tok.pos, "expected 'after DURATION' after "
                                       "'back'");
                return -1;
            }
            s_next(p);
            if (p->tok.kind != T_DUR || p->tok.dur <= 0) {
                s_error(p, p->tok.pos, "expected a duration after 'after'");
                return -1;
            }
            r->sev_back = p->tok.dur;
            s_next(p);
            return 0;
        }
        if (p->tok.kind == T_NAME && p->tok.sel_len == 0)
            sev = s_severity_static(p->tok.str);
        if (sev == NULL) {
            s_error(p, p->tok.pos,
                    "expected a severity (info, warning, error, critical), "
                    "found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
        if (r->nsev == ALERT_RULE_SEV_MAX) {
            s_error(p, p->tok.pos, "more than %d severity steps",
                    ALERT_RULE_SEV_MAX);
            return -1;
        }
        size_t pos = p->tok.pos;
        s_next(p);
        int64_t after = 0;
        if (s_is_word(p, "after")) {
            s_next(p);
            if (p->tok.kind != T_DUR) {
                s_error(p, p->tok.pos, "expected a duration after 'after'");
                return -1;
            }
            after = p->tok.dur;
            s_next(p);
        } else if (r->nsev > 0) {
            s_error(p, p->tok.pos,
                    "a later severity step needs 'after DURATION'");
            return -1;
        }
        if (r->nsev > 0 && after <= r->sev[r->nsev - 1].after) {
            s_error(p, pos, "severity steps must have increasing 'after'");
            return -1;
        }
        r->sev[r->nsev].name = sev;
        r->sev[r->nsev].after = after;
        r->nsev++;
        if (p->tok.kind != T_COMMA)
            return 0;
        s_next(p);
    }
}

/* A channel name: a plain name, not a keyword. */
static int
s_parse_channel(struct s_parser *p, char **out)
{
    char desc[40];

    if (p->tok.kind != T_NAME || p->tok.sel_len ||
        s_is_keyword(p->tok.str)) {
        s_error(p, p->tok.pos, "expected a channel name, found %s",
                s_tok_desc(p, desc, sizeof desc));
        return -1;
    }
    if (strlen(p->tok.str) > ALERT_RULE_CHANNEL_NAME_MAX) {
        s_error(p, p->tok.pos, "channel name longer than %d bytes",
                ALERT_RULE_CHANNEL_NAME_MAX);
        return -1;
    }
    *out = xstrdup(p->tok.str);
    s_next(p);
    return 0;
}

/* TAG {"," TAG}: tag keys appended to out, *n of max used. */
static int
s_parse_tags(struct s_parser *p, char **out, size_t *n, size_t max)
{
    char desc[40];

    for (;;) {
        if (p->tok.kind != T_NAME || p->tok.sel_len ||
            s_is_keyword(p->tok.str) || series_tag_key_check(p->tok.str)) {
            s_error(p, p->tok.pos, "expected a tag key, found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
        if (*n == max) {
            s_error(p, p->tok.pos, "more than %zu tags", max);
            return -1;
        }
        out[(*n)++] = xstrdup(p->tok.str);
        s_next(p);
        if (p->tok.kind != T_COMMA)
            return 0;
        s_next(p);
    }
}

/* "group" ["by" TAG {"," TAG}] ["within" DURATION] */
static int
s_parse_group(struct s_parser *p)
{
    alert_rule_t *r = p->rule;

    if (r->group) {
        s_error(p, p->tok.pos, "duplicate 'group' clause");
        return -1;
    }
    r->group = true;
    r->group_within = ALERT_RULE_GROUP_WITHIN_NS;
    s_next(p);
    if (s_is_word(p, "by")) {
        s_next(p);
        if (s_parse_tags(p, r->group_by, &r->ngroup_by,
                         ALERT_RULE_GROUP_TAGS_MAX) < 0)
            return -1;
    }
    if (s_is_word(p, "within")) {
        s_next(p);
        if (p->tok.kind != T_DUR || p->tok.dur <= 0) {
            s_error(p, p->tok.pos, "expected a duration after 'within'");
            return -1;
        }
        r->group_within = p->tok.dur;
        s_next(p);
    }
    return 0;
}

static int
s_parse_rule(struct s_parser *p)
{
    alert_rule_t *r = p->rule;
    bool seen_for = false, seen_sev = false;
    char desc[40];

    s_next(p);
    if (p->tok.kind == T_EOF && !p->failed) {
        s_error(p, 0, "empty condition");
        return -1;
    }
    r->cond = s_parse_condition(p);
    if (r->cond < 0)
        return -1;
    while (!p->failed && p->tok.kind != T_EOF) {
        size_t pos = p->tok.pos;
        if (s_is_word(p, "for")) {
            if (seen_for) {
                s_error(p, pos, "duplicate 'for' clause");
                return -1;
            }
            seen_for = true;
            s_next(p);
            if (p->tok.kind != T_DUR) {
                s_error(p, p->tok.pos, "expected a duration after 'for', "
                                       "found %s",
                        s_tok_desc(p, desc, sizeof desc));
                return -1;
            }
            r->for_ns = p->tok.dur;
            s_next(p);
        } else if (s_is_word(p, "clear")) {
            if (r->clear >= 0) {
                s_error(p, pos, "duplicate 'clear when' clause");
                return -1;
            }
            s_next(p);
            if (!s_is_word(p, "when")) {
                s_error(p, p->tok.pos, "expected 'when' after 'clear'");
                return -1;
            }
            s_next(p);
            r->clear = s_parse_condition(p);
            if (r->clear < 0)
                return -1;
        } else if (s_is_word(p, "severity")) {
            if (seen_sev) {
                s_error(p, pos, "duplicate 'severity' clause");
                return -1;
            }
            seen_sev = true;
            s_next(p);
            if (s_parse_severity(p) < 0)
                return -1;
        } else if (s_is_word(p, "notify")) {
            if (r->nnotify) {
                s_error(p, pos, "duplicate 'notify' clause");
                return -1;
            }
            s_next(p);
            for (;;) {
                if (s_parse_channel(p, &r->notify[r->nnotify]) < 0)
                    return -1;
                for (size_t i = 0; i < r->nnotify; i++)
                    if (!strcmp(r->notify[i], r->notify[r->nnotify])) {
                        s_error(p, pos, "channel '%s' named twice",
                                r->notify[i]);
                        r->nnotify++;
                        return -1;
                    }
                if (++r->nnotify == ALERT_RULE_NOTIFY_MAX &&
                    p->tok.kind == T_COMMA) {
                    s_error(p, p->tok.pos, "more than %d channels",
                            ALERT_RULE_NOTIFY_MAX);
                    return -1;
                }
                if (p->tok.kind != T_COMMA)
                    break;
                s_next(p);
            }
        } else if (s_is_word(p, "throttle")) {
            if (r->throttle) {
                s_error(p, pos, "duplicate 'throttle' clause");
                return -1;
            }
            s_next(p);
            if (p->tok.kind != T_DUR) {
                s_error(p, p->tok.pos, "expected a duration after 'throttle'");
                return -1;
            }
            r->throttle = p->tok.dur;
            s_next(p);
        } else if (s_is_word(p, "inhibited")) {
            if (r->inhibitor) {
                s_error(p, pos, "duplicate 'inhibited by' clause");
                return -1;
            }
            s_next(p);
            if (!s_is_word(p, "by")) {
                s_error(p, p->tok.pos, "expected 'by' after 'inhibited'");
                return -1;
            }
            s_next(p);
            if ((p->tok.kind != T_NAME && p->tok.kind != T_STR) ||
                p->tok.sel_len || s_is_keyword(p->tok.str)) {
                s_error(p, p->tok.pos, "expected a rule name, found %s",
                        s_tok_desc(p, desc, sizeof desc));
                return -1;
            }
            r->inhibitor = xstrdup(p->tok.str);
            s_next(p);
            if (s_is_word(p, "on")) {
                s_next(p);
                if (s_parse_tags(p, r->inhibit_on, &r->ninhibit_on,
                                 ALERT_RULE_INHIBIT_TAGS_MAX) < 0)
                    return -1;
            }
        } else if (s_is_word(p, "group")) {
            if (s_parse_group(p) < 0)
                return -1;
        } else if (s_is_word(p, "escalate")) {
            if (r->escalate) {
                s_error(p, pos, "duplicate 'escalate' clause");
                return -1;
            }
            s_next(p);
            if (s_parse_channel(p, &r->escalate) < 0)
                return -1;
            if (!s_is_word(p, "after")) {
                s_error(p, p->tok.pos, "expected 'after DURATION'");
                return -1;
            }
            s_next(p);
            if (p->tok.kind != T_DUR) {
                s_error(p, p->tok.pos, "expected a duration after 'after'");
                return -1;
            }
            r->escalate_after = p->tok.dur;
            s_next(p);
        } else {
            s_error(p, pos,
                    "expected an operator or a clause (for, clear when, "
                    "severity, notify, throttle, escalate, inhibited by, "
                    "group), "
                    "found %s",
                    s_tok_desc(p, desc, sizeof desc));
            return -1;
        }
    }
    if (p->failed)
        return -1;
    /* Scope: one metric, or several joined on their tags. */
    r->single = true;
    for (size_t i = 1; i < r->nrefs; i++)
        if (strcmp(r->refs[i].name, r->refs[0].name) != 0)
            r->single = false;
    if (!r->single)
        for (size_t i = 0; i < r->nrefs; i++)
            if (r->refs[i].glob) {
                s_error(p, 0, "a glob metric (\"%s\") must be the only "
                              "metric of its rule",
                        r->refs[i].name);
                return -1;
            }
    if (r->nsev == 0) {
        r->sev[0].name = "warning";
        r->sev[0].after = 0;
        r->nsev = 1;
    }
    return 0;
}

alert_rule_t *
alert_rule_new(const char *name, const char *text,
               struct alert_rule_error *err)
{
    struct s_parser p;
    size_t tl = strlen(text);

    memset(err, 0, sizeof *err);
    if (name == NULL || *name == '\0' || strlen(name) > S_NAME_MAX) {
        snprintf(err->reason, sizeof err->reason,
                 "rule name must be 1 to %d bytes", S_NAME_MAX);
        return NULL;
    }
    for (const char *c = name; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) {
            snprintf(err->reason, sizeof err->reason,
                     "rule name contains a control character");
            return NULL;
        }
    if (!strutil_utf8_valid(name, strlen(name))) {
        snprintf(err->reason, sizeof err->reason,
                 "rule name is not valid UTF-8");
        return NULL;
    }
    /* The limit is on the canonical text (below), which may be longer
     * or shorter than what was written; this only bounds the work. */
    if (tl > 4 * ALERT_RULE_TEXT_MAX) {
        snprintf(err->reason, sizeof err->reason,
                 "condition longer than %d bytes", ALERT_RULE_TEXT_MAX);
        return NULL;
    }
    memset(&p, 0, sizeof p);
    p.text = text;
    p.len = tl;
    p.err = err;
    p.rule = xcalloc(1, sizeof *p.rule);
    p.rule->name = xstrdup(name);
    p.rule->text = xstrdup(text);
    p.rule->clear = -1;
    p.rule->cond = -1;
    if (s_parse_rule(&p) < 0 || p.failed) {
        if (!p.failed)
            s_error(&p, p.tok.pos, "invalid rule");
        alert_rule_destroy(&p.rule);
        return NULL;
    }
    /* Measured on the canonical text, so that the canonical text of a
     * rule taken is always taken again (fuzz_rule found 3,300 bytes
     * whose canonical text, with its spaces, was 4,261 bytes). */
    char *canon = alert_rule_format(p.rule);
    size_t cl = strlen(canon);
    free(canon);
    if (cl > ALERT_RULE_TEXT_MAX) {
        snprintf(err->reason, sizeof err->reason,
                 "condition longer than %d bytes (%zu in canonical form)",
                 ALERT_RULE_TEXT_MAX, cl);
        alert_rule_destroy(&p.rule);
        return NULL;
    }
    return p.rule;
}

void
alert_rule_destroy(alert_rule_t **self_p)
{
    alert_rule_t *self;

    if (self_p == NULL || *self_p == NULL)
        return;
    self = *self_p;
    for (size_t i = 0; i < self->nrefs; i++) {
        free(self->refs[i].name);
        free(self->refs[i].sel);
        free(self->refs[i].fbuf);
    }
    for (size_t i = 0; i < self->nnotify; i++)
        free(self->notify[i]);
    free(self->escalate);
    free(self->inhibitor);
    for (size_t i = 0; i < self->ninhibit_on; i++)
        free(self->inhibit_on[i]);
    for (size_t i = 0; i < self->nattrs; i++)
        free(self->attrs[i]);
    for (size_t i = 0; i < self->ngroup_by; i++)
        free(self->group_by[i]);
    free(self->nodes);
    free(self->name);
    free(self->text);
    free(self->tenant);
    free(self);
    *self_p = NULL;
}

alert_rule_t *
alert_rule_parse_line(const char *line, struct alert_rule_error *err)
{
    const char *colon = strchr(line, ':');
    const char *b = line, *e;
    char name[S_NAME_MAX + 1];
    alert_rule_t *r;

    memset(err, 0, sizeof *err);
    if (colon == NULL) {
        err->pos = 0;
        snprintf(err->reason, sizeof err->reason,
                 "expected 'name: condition'");
        return NULL;
    }
    while (b < colon && isspace((unsigned char)*b))
        b++;
    e = colon;
    while (e > b && isspace((unsigned char)e[-1]))
        e--;
    if (e == b || (size_t)(e - b) > S_NAME_MAX) {
        err->pos = (size_t)(b - line);
        snprintf(err->reason, sizeof err->reason,
                 "rule name must be 1 to %d bytes", S_NAME_MAX);
        return NULL;
    }
    memcpy(name, b, (size_t)(e - b));
    name[e - b] = '\0';
    const char *cond = colon + 1;
    while (isspace((unsigned char)*cond))
        cond++;
    r = alert_rule_new(name, cond, err);
    if (r == NULL)
        err->pos += (size_t)(cond - line);
    return r;
}

/* --------------------------------------------------------------------- */
/* Accessors */

const char *
alert_rule_name(const alert_rule_t *self)
{
    return self->name;
}

const char *
alert_rule_text(const alert_rule_t *self)
{
    return self->text;
}

int64_t
alert_rule_for(const alert_rule_t *self)
{
    return self->for_ns;
}

bool
alert_rule_has_clear(const alert_rule_t *self)
{
    return self->clear >= 0;
}

const char *
alert_rule_severity(const alert_rule_t *self, int64_t firing_ns)
{
    const char *s = self->sev[0].name;

    for (size_t i = 1; i < self->nsev; i++)
        if (firing_ns >= self->sev[i].after)
            s = self->sev[i].name;
    return s;
}

size_t
alert_rule_severity_steps(const alert_rule_t *self)
{
    return self->nsev;
}

int64_t
alert_rule_severity_after(const alert_rule_t *self, size_t i)
{
    return i < self->nsev ? self->sev[i].after : 0;
}

int64_t
alert_rule_max_window(const alert_rule_t *self)
{
    return self->max_window;
}

size_t
alert_rule_notify_count(const alert_rule_t *self)
{
    return self->nnotify;
}

const char *
alert_rule_notify(const alert_rule_t *self, size_t i)
{
    return i < self->nnotify ? self->notify[i] : NULL;
}

int
alert_rule_add_notify(alert_rule_t *self, const char *channel)
{
    if (self->nnotify == ALERT_RULE_NOTIFY_MAX)
        return -1;
    for (size_t i = 0; i < self->nnotify; i++)
        if (strcmp(self->notify[i], channel) == 0)
            return -1;
    self->notify[self->nnotify++] = xstrdup(channel);
    return 0;
}

int
alert_rule_set_tenant(alert_rule_t *self, const char *tenant)
{
    if (self->tenant)
        return -1;
    for (size_t i = 0; i < self->nrefs; i++)
        if (self->refs[i].nfilters == SERIES_TAGS_MAX)
            return -1;
    free(self->tenant);
    self->tenant = xstrdup(strcmp(tenant, SERIES_TENANT_DEFAULT) ? tenant : "");
    for (size_t i = 0; i < self->nrefs; i++) {
        struct s_ref *ref = &self->refs[i];
        ref->filters[ref->nfilters].key = SERIES_TENANT_TAG;
        ref->filters[ref->nfilters].value = self->tenant;
        ref->nfilters++;
    }
    return 0;
}

int64_t
alert_rule_throttle(const alert_rule_t *self)
{
    return self->throttle;
}

const char *
alert_rule_escalate(const alert_rule_t *self, int64_t *after)
{
    if (after)
        *after = self->escalate_after;
    return self->escalate;
}

const char *
alert_rule_inhibitor(const alert_rule_t *self)
{
    return self->inhibitor;
}

const char *
alert_rule_inhibit_on(const alert_rule_t *self, size_t i)
{
    return i < self->ninhibit_on ? self->inhibit_on[i] : NULL;
}

bool
alert_rule_is_deadman(const alert_rule_t *self)
{
    return self->deadman;
}

bool
alert_rule_severity_valid(const char *s)
{
    return s_severity_static(s) != NULL;
}

const char *
alert_rule_metric(const alert_rule_t *self, size_t k)
{
    return k < self->nrefs ? self->refs[k].name : NULL;
}

int64_t
alert_rule_severity_back(const alert_rule_t *self)
{
    return self->sev_back;
}

bool
alert_rule_group(const alert_rule_t *self, int64_t *within)
{
    if (within)
        *within = self->group_within;
    return self->group;
}

const char *
alert_rule_group_by(const alert_rule_t *self, size_t i)
{
    return i < self->ngroup_by ? self->group_by[i] : NULL;
}

bool
alert_rule_metric_tag(const alert_rule_t *self, size_t k, const char **tkey,
                      const char **tval)
{
    const struct s_ref *ref;
    bool found = false;

    if (k >= self->nrefs)
        return false;
    ref = &self->refs[k];
    for (size_t i = 0; i < ref->nfilters; i++) {
        if (ref->filters[i].value[0] == '\0')
            continue; /* "tag absent" cannot be looked up */
        if (!found || strcmp(*tkey, SERIES_TENANT_TAG) == 0) {
            *tkey = ref->filters[i].key;
            *tval = ref->filters[i].value;
            found = true;
        }
    }
    return found;
}

bool
alert_rule_matches(const alert_rule_t *self, const char *key)
{
    for (size_t i = 0; i < self->nrefs; i++)
        if (series_match(key, self->refs[i].name, self->refs[i].filters,
                         self->refs[i].nfilters))
            return true;
    return false;
}

char *
alert_rule_scope(const alert_rule_t *self, const char *key, char *buf,
                 size_t len)
{
    const char *tags = strchr(key, '{');
    int n;

    if (self->single)
        n = snprintf(buf, len, "%s", key);
    else
        n = snprintf(buf, len, "%s", tags ? tags : "{}");
    return n < 0 || (size_t)n >= len ? NULL : buf;
}

/* --------------------------------------------------------------------- */
/* Evaluator */

/* Value of a metric reference node for the series env->key. */
static double
s_ref_value(const alert_rule_t *r, const struct s_node *node,
            const struct alert_rule_env *env)
{
    const struct s_ref *ref = &r->refs[node->ref];
    char key[SERIES_KEY_MAX];
    const char *k = env->key;

    if (!r->single) {
        /* Join on the tags of the triggering series. */
        const char *tags = strchr(env->key, '{');
        int len = snprintf(key, sizeof key, "%s%s", ref->name,
                           tags ? tags : "");
        if (len < 0 || (size_t)len >= sizeof key)
            return NAN;
        k = key;
    }
    if (!series_match(k, ref->name, ref->filters, ref->nfilters))
        return NAN;
    return env->value(env->arg, k, node->fn,
                      node->kind == N_NODATA ? 0 : node->window, node->q,
                      env->now);
}

static double
s_eval_num(const alert_rule_t *r, int n, const struct alert_rule_env *env)
{
    const struct s_node *node = &r->nodes[n];

    switch (node->kind) {
    case N_NUM:
        return node->num;
    case N_REF:
        return s_ref_value(r, node, env);
    case N_ATTR:
        return env->attr ? env->attr(env->attr_arg, env->key,
                                     r->attrs[node->ref])
                         : NAN;
    case N_NEG:
        return -s_eval_num(r, node->a, env);
    case N_ADD:
        return s_eval_num(r, node->a, env) + s_eval_num(r, node->b, env);
    case N_SUB:
        return s_eval_num(r, node->a, env) - s_eval_num(r, node->b, env);
    case N_MUL:
        return s_eval_num(r, node->a, env) * s_eval_num(r, node->b, env);
    case N_DIV: {
        double d = s_eval_num(r, node->b, env);
        if (d == 0)
            return NAN;
        return s_eval_num(r, node->a, env) / d;
    }
    default:
        break;
    }
    assert(!"s_eval_num: not a number node");
    return NAN;
}

static enum alert_truth
s_eval_bool(const alert_rule_t *r, int n, const struct alert_rule_env *env)
{
    const struct s_node *node = &r->nodes[n];
    enum alert_truth a, b;

    switch (node->kind) {
    case N_NOT:
        a = s_eval_bool(r, node->a, env);
        return a == ALERT_UNKNOWN ? ALERT_UNKNOWN
                                  : a == ALERT_TRUE ? ALERT_FALSE : ALERT_TRUE;
    case N_AND:
        a = s_eval_bool(r, node->a, env);
        if (a == ALERT_FALSE)
            return ALERT_FALSE;
        b = s_eval_bool(r, node->b, env);
        if (b == ALERT_FALSE)
            return ALERT_FALSE;
        return a == ALERT_TRUE && b == ALERT_TRUE ? ALERT_TRUE : ALERT_UNKNOWN;
    case N_NODATA: {
        double age = s_ref_value(r, node, env);
        if (isnan(age))
            return ALERT_UNKNOWN;
        return age * CLOCK_NS_PER_S > (double)node->window ? ALERT_TRUE
                                                           : ALERT_FALSE;
    }
    case N_OR:
        a = s_eval_bool(r, node->a, env);
        if (a == ALERT_TRUE)
            return ALERT_TRUE;
        b = s_eval_bool(r, node->b, env);
        if (b == ALERT_TRUE)
            return ALERT_TRUE;
        return a == ALERT_FALSE && b == ALERT_FALSE ? ALERT_FALSE
                                                    : ALERT_UNKNOWN;
    default:
        break;
    }
    double x = s_eval_num(r, node->a, env), y = s_eval_num(r, node->b, env);
    if (isnan(x) || isnan(y))
        return ALERT_UNKNOWN;
    bool t;
    switch (node->kind) {
    case N_LT: t = x < y; break;
    case N_LE: t = x <= y; break;
    case N_GT: t = x > y; break;
    case N_GE: t = x >= y; break;
    case N_EQ: t = x == y; break;
    case N_NE: t = x != y; break;
    default:
        assert(!"s_eval_bool: not a condition node");
        return ALERT_UNKNOWN;
    }
    return t ? ALERT_TRUE : ALERT_FALSE;
}

enum alert_truth
alert_rule_eval(const alert_rule_t *self, enum alert_rule_expr which,
                const struct alert_rule_env *env)
{
    int root = which == ALERT_RULE_CLEAR ? self->clear : self->cond;

    if (root < 0)
        return ALERT_UNKNOWN;
    return s_eval_bool(self, root, env);
}

/* --------------------------------------------------------------------- */
/* Formatter */

static void
s_fmt_duration(FILE *fp, int64_t ns)
{
    static const struct {
        const char *unit;
        int64_t ns;
    } units[] = {
        {"w", 7 * 86400 * CLOCK_NS_PER_S}, {"d", 86400 * CLOCK_NS_PER_S},
        {"h", 3600 * CLOCK_NS_PER_S},      {"m", 60 * CLOCK_NS_PER_S},
        {"s", CLOCK_NS_PER_S},             {"ms", CLOCK_NS_PER_MS},
    };

    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (ns % units[i].ns == 0) {
            fprintf(fp, "%lld%s", (long long)(ns / units[i].ns),
                    units[i].unit);
            return;
        }
    /* The lexer takes only durations of whole milliseconds. */
    assert(!"s_fmt_duration: not a whole number of milliseconds");
}

static void
s_fmt_metric(FILE *fp, const struct s_ref *ref)
{
    const char *n = ref->name;
    bool plain = s_name_start((unsigned char)n[0]) && !s_is_keyword(n) &&
                 strncmp(n, S_DEVICE_PREFIX, strlen(S_DEVICE_PREFIX)) != 0;

    for (const char *c = n; plain && *c; c++)
        if (!s_name_char((unsigned char)*c))
            plain = false;
    if (plain) {
        fputs(n, fp);
    } else {
        fputc('"', fp);
        for (const char *c = n; *c; c++) {
            if (*c == '"' || *c == '\\')
                fputc('\\', fp);
            fputc(*c, fp);
        }
        fputc('"', fp);
    }
    if (ref->sel)
        fputs(ref->sel, fp);
}

static enum s_prec
s_prec_of(const struct s_node *n)
{
    switch (n->kind) {
    case N_OR: return P_OR;
    case N_AND: return P_AND;
    case N_NOT: return P_NOT;
    case N_LT: case N_LE: case N_GT: case N_GE: case N_EQ: case N_NE:
        return P_CMP;
    case N_ADD: case N_SUB: return P_SUM;
    case N_MUL: case N_DIV: return P_PROD;
    case N_NEG: return P_NEG;
    default: return P_ATOM;
    }
}

static void
s_fmt_node(FILE *fp, const alert_rule_t *r, int n, int min_prec)
{
    static const char *ops[] = {
        [N_ADD] = " + ", [N_SUB] = " - ",   [N_MUL] = " * ",
        [N_DIV] = " / ", [N_LT] = " < ",    [N_LE] = " <= ",
        [N_GT] = " > ",  [N_GE] = " >= ",   [N_EQ] = " == ",
        [N_NE] = " != ", [N_AND] = " and ", [N_OR] = " or ",
    };
    const struct s_node *node = &r->nodes[n];
    int prec = (int)s_prec_of(node);
    bool paren = prec < min_prec;
    char num[40];

    if (paren)
        fputc('(', fp);
    switch (node->kind) {
    case N_NUM:
        if (node->window)
            s_fmt_duration(fp, node->window);
        else
            fputs(strutil_dtoa(node->num, num, sizeof num), fp);
        break;
    case N_ATTR:
        fprintf(fp, "%s%s", S_DEVICE_PREFIX, r->attrs[node->ref]);
        break;
    case N_REF:
    case N_NODATA:
        if (node->fname[0]) {
            fprintf(fp, "%s(", node->fname);
            s_fmt_metric(fp, &r->refs[node->ref]);
            if (node->fn == ALERT_FN_TIME_TO ||
                node->fn == ALERT_FN_FORECAST_TO)
                fprintf(fp, ", %s", strutil_dtoa(node->q, num, sizeof num));
            if (node->fn == ALERT_FN_FORECAST_TO)
                fputs(", forecast", fp);
            if (node->window) {
                fputs(", ", fp);
                s_fmt_duration(fp, node->window);
            }
            fputc(')', fp);
        } else {
            s_fmt_metric(fp, &r->refs[node->ref]);
        }
        break;
    case N_NEG:
        fputc('-', fp);
        s_fmt_node(fp, r, node->a, P_NEG);
        break;
    case N_NOT:
        fputs("not ", fp);
        s_fmt_node(fp, r, node->a, P_NOT);
        break;
    case N_LT: case N_LE: case N_GT: case N_GE: case N_EQ: case N_NE:
        /* Comparisons do not chain: both sides bind tighter. */
        s_fmt_node(fp, r, node->a, prec + 1);
        fputs(ops[node->kind], fp);
        s_fmt_node(fp, r, node->b, prec + 1);
        break;
    default:
        /* Left-associative binary operators. */
        s_fmt_node(fp, r, node->a, prec);
        fputs(ops[node->kind], fp);
        s_fmt_node(fp, r, node->b, prec + 1);
        break;
    }
    if (paren)
        fputc(')', fp);
}

char *
alert_rule_format(const alert_rule_t *self)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    if (fp == NULL)
        abort(); /* out of memory, as xalloc would */
    s_fmt_node(fp, self, self->cond, P_OR);
    if (self->for_ns) {
        fputs(" for ", fp);
        s_fmt_duration(fp, self->for_ns);
    }
    if (self->clear >= 0) {
        fputs(" clear when ", fp);
        s_fmt_node(fp, self, self->clear, P_OR);
    }
    fprintf(fp, " severity %s", self->sev[0].name);
    if (self->sev[0].after) {
        fputs(" after ", fp);
        s_fmt_duration(fp, self->sev[0].after);
    }
    for (size_t i = 1; i < self->nsev; i++) {
        fprintf(fp, ", %s after ", self->sev[i].name);
        s_fmt_duration(fp, self->sev[i].after);
    }
    if (self->sev_back) {
        fputs(", back after ", fp);
        s_fmt_duration(fp, self->sev_back);
    }
    for (size_t i = 0; i < self->nnotify; i++)
        fprintf(fp, "%s%s", i ? ", " : " notify ", self->notify[i]);
    if (self->throttle) {
        fputs(" throttle ", fp);
        s_fmt_duration(fp, self->throttle);
    }
    if (self->escalate) {
        fprintf(fp, " escalate %s after ", self->escalate);
        s_fmt_duration(fp, self->escalate_after);
    }
    if (self->inhibitor) {
        struct s_ref named = {0};
        named.name = self->inhibitor;
        fputs(" inhibited by ", fp);
        s_fmt_metric(fp, &named);
        for (size_t i = 0; i < self->ninhibit_on; i++)
            fprintf(fp, "%s%s", i ? ", " : " on ", self->inhibit_on[i]);
    }
    if (self->group) {
        fputs(" group", fp);
        for (size_t i = 0; i < self->ngroup_by; i++)
            fprintf(fp, "%s%s", i ? ", " : " by ", self->group_by[i]);
        fputs(" within ", fp);
        s_fmt_duration(fp, self->group_within);
    }
    fclose(fp);
    return buf;
}

/* --------------------------------------------------------------------- */
/* Selftest */

/* A value source for the test: "temperature{device=s1}" is 35 with
 * avg 25 and std 2 over any window; "humidity{device=s1}" is 85;
 * "temperature{device=s2}" is 20; anything else is unknown. */
static double
s_test_value(void *arg, const char *key, enum alert_fn fn, int64_t window,
             double q, int64_t now)
{
    int *calls = arg;

    (*calls)++;
    if (strcmp(key, "temperature{device=s1}") == 0) {
        switch (fn) {
        case ALERT_FN_LAST: return 35;
        case ALERT_FN_AVG: return 25;
        case ALERT_FN_STD: return 2;
        case ALERT_FN_QUANTILE: return q * 100;
        case ALERT_FN_ANOMALY: return window ? 0.5 : 0.95;
        case ALERT_FN_ALARM: return window ? 1 : 0;
        case ALERT_FN_AGE: return 90;
        default: return NAN;
        }
    }
    if (strcmp(key, "humidity{device=s1}") == 0)
        return fn == ALERT_FN_LAST ? 85 : NAN;
    if (strcmp(key, "temperature{device=s2}") == 0)
        return fn == ALERT_FN_LAST            ? 20
               : fn == ALERT_FN_TIME_TO       ? 7200
               : fn == ALERT_FN_FORECAST_TO ? 1800
                                              : NAN;
    return NAN;
}

/* Device attributes for the test: s1 has max_temp 30, s2 max_temp 40. */
static double
s_test_attr(void *arg, const char *key, const char *name)
{
    (void)arg;
    if (strcmp(name, "max_temp") != 0)
        return NAN;
    if (strstr(key, "device=s1"))
        return 30;
    return strstr(key, "device=s2") ? 40 : NAN;
}

static enum alert_truth
s_test_eval(const char *text, const char *key)
{
    struct alert_rule_error err;
    int calls = 0;
    alert_rule_t *r = alert_rule_new("t", text, &err);
    struct alert_rule_env env = {s_test_value, &calls, key, 0, s_test_attr,
                                 NULL};

    if (r == NULL)
        fprintf(stderr, "alert_rule: '%s': %zu: %s\n", text, err.pos,
                err.reason);
    assert(r);
    enum alert_truth t = alert_rule_eval(r, ALERT_RULE_COND, &env);
    alert_rule_destroy(&r);
    return t;
}

/* Assert text fails to parse at pos with a reason containing want. */
static void
s_test_bad(const char *text, size_t pos, const char *want, bool verbose)
{
    struct alert_rule_error err;
    alert_rule_t *r = alert_rule_new("t", text, &err);

    if (verbose || r || err.pos != pos || !strstr(err.reason, want))
        fprintf(stderr, "  '%s' -> %zu: %s\n", text, err.pos,
                err.reason);
    assert(r == NULL);
    assert(err.pos == pos);
    assert(strstr(err.reason, want));
}

/* Assert the canonical form of text, and that it is a fixed point. */
static void
s_test_format(const char *text, const char *want)
{
    struct alert_rule_error err;
    alert_rule_t *r = alert_rule_new("t", text, &err);

    assert(r);
    char *f = alert_rule_format(r);
    if (strcmp(f, want) != 0)
        fprintf(stderr, "  format '%s' -> '%s', want '%s'\n", text, f,
                want);
    TEST_STREQ(f, want);
    alert_rule_t *r2 = alert_rule_new("t", f, &err);
    assert(r2);
    char *f2 = alert_rule_format(r2);
    TEST_STREQ(f, f2);
    free(f);
    free(f2);
    alert_rule_destroy(&r);
    alert_rule_destroy(&r2);
}

void
alert_rule_test(bool verbose)
{
    struct alert_rule_error err;
    const char *s1 = "temperature{device=s1}";
    char scope[SERIES_KEY_MAX];

    /* Comparisons over current values. */
    assert(s_test_eval("temperature > 30", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature > 30", "temperature{device=s2}") ==
           ALERT_FALSE);
    assert(s_test_eval("temperature >= 35 && temperature <= 35", s1) ==
           ALERT_TRUE);
    assert(s_test_eval("temperature == 35", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature != 35", s1) == ALERT_FALSE);
    /* Precedence: * before +, and before or. */
    assert(s_test_eval("temperature > 2 + 3 * 10", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature > (2 + 3) * 10", s1) == ALERT_FALSE);
    assert(s_test_eval("temperature < 0 and temperature > 0 or "
                       "temperature > 1", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature - 5 - 10 == 20", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature / 5 / 7 == 1", s1) == ALERT_TRUE);
    assert(s_test_eval("-temperature < -30", s1) == ALERT_TRUE);
    /* The seed's statistical rule: 35 > 25 + 3 * 2. */
    assert(s_test_eval("temperature > avg(temperature, 1h) + 3 * "
                       "std(temperature, 1h)", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature > avg(temperature, 1h) + 6 * "
                       "std(temperature, 1h)", s1) == ALERT_FALSE);
    assert(s_test_eval("p95(temperature, 5m) == 95", s1) == ALERT_TRUE);
    assert(s_test_eval("p999(temperature, 5m) > 99.8", s1) == ALERT_TRUE);
    assert(s_test_eval("anomaly(temperature) > 0.9", s1) == ALERT_TRUE);
    assert(s_test_eval("anomaly(temperature, 10m) > 0.9", s1) == ALERT_FALSE);
    /* The novelty alarm: 1 over the window here, 0 for the latest. */
    assert(s_test_eval("alarm(temperature, 1h) == 1", s1) == ALERT_TRUE);
    assert(s_test_eval("alarm(temperature) == 1", s1) == ALERT_FALSE);
    assert(s_test_eval("alarm(humidity) == 1", s1) == ALERT_UNKNOWN);
    /* Deadman: seconds since the latest reading. */
    assert(s_test_eval("nodata(temperature, 1m)", s1) == ALERT_TRUE);
    assert(s_test_eval("nodata(temperature, 2m)", s1) == ALERT_FALSE);
    assert(s_test_eval("age(temperature) > 89", s1) == ALERT_TRUE);
    assert(s_test_eval("nodata(humidity, 1m)", s1) == ALERT_UNKNOWN);
    /* Unknown data: no fire, Kleene logic. */
    assert(s_test_eval("rate(temperature, 5m) > 1", s1) == ALERT_UNKNOWN);
    assert(s_test_eval("not (rate(temperature, 5m) > 1)", s1) ==
           ALERT_UNKNOWN);
    assert(s_test_eval("rate(temperature, 5m) > 1 and temperature < 0", s1) ==
           ALERT_FALSE);
    assert(s_test_eval("rate(temperature, 5m) > 1 or temperature > 0", s1) ==
           ALERT_TRUE);
    assert(s_test_eval("temperature / 0 > 1", s1) == ALERT_UNKNOWN);
    assert(s_test_eval("!(temperature > 30)", s1) == ALERT_FALSE);
    /* Several metrics join on the tags of the triggering series. */
    assert(s_test_eval("temperature > 30 and humidity > 80", s1) ==
           ALERT_TRUE);
    assert(s_test_eval("temperature > 30 and humidity > 80",
                       "humidity{device=s1}") == ALERT_TRUE);
    assert(s_test_eval("temperature > 30 and humidity > 90", s1) ==
           ALERT_FALSE);
    /* Selectors and globs. */
    assert(s_test_eval("temperature{device=s1} > 30", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature{device=s2} > 30", s1) == ALERT_UNKNOWN);
    assert(s_test_eval("\"temp*\" > 30", s1) == ALERT_TRUE);
    /* Per-device thresholds: 35 > 30 for s1, 20 < 40 for s2, unknown
     * without the attribute. */
    assert(s_test_eval("temperature > device.max_temp", s1) == ALERT_TRUE);
    assert(s_test_eval("temperature > device.max_temp",
                       "temperature{device=s2}") == ALERT_FALSE);
    assert(s_test_eval("temperature > device.min_temp", s1) ==
           ALERT_UNKNOWN);
    assert(s_test_eval("temperature > device.max_temp - 10 and "
                       "temperature < device.max_temp * 2", s1) ==
           ALERT_TRUE);
    /* Durations in expressions are seconds; time_to from the trend. */
    assert(s_test_eval("age(temperature) > 1m", s1) == ALERT_TRUE);
    assert(s_test_eval("age(temperature) > 2m", s1) == ALERT_FALSE);
    assert(s_test_eval("time_to(temperature, 90) < 3h",
                       "temperature{device=s2}") == ALERT_TRUE);
    assert(s_test_eval("time_to(temperature, 90) < 1h",
                       "temperature{device=s2}") == ALERT_FALSE);
    /* time_to(..., forecast) asks for anomalyd's forecast, not the line. */
    assert(s_test_eval("time_to(temperature, 90, forecast) < 1h",
                       "temperature{device=s2}") == ALERT_TRUE);
    assert(s_test_eval("time_to(temperature, 90, forecast) < 20m",
                       "temperature{device=s2}") == ALERT_FALSE);

    alert_rule_t *r = alert_rule_new(
        "hot", "temperature > 30 and humidity > 80 for 5m clear when "
               "temperature < 28 severity warning, critical after 10m",
        &err);
    assert(r);
    TEST_STREQ(alert_rule_name(r), "hot");
    assert(alert_rule_for(r) == 300 * CLOCK_NS_PER_S);
    assert(alert_rule_has_clear(r));
    TEST_STREQ(alert_rule_severity(r, 0), "warning");
    TEST_STREQ(alert_rule_severity(r, 600 * CLOCK_NS_PER_S), "critical");
    assert(alert_rule_severity_steps(r) == 2);
    assert(alert_rule_matches(r, "humidity{device=s9}"));
    assert(!alert_rule_matches(r, "pressure{device=s9}"));
    TEST_STREQ(alert_rule_scope(r, s1, scope, sizeof scope), "{device=s1}");
    TEST_STREQ(alert_rule_scope(r, "temperature", scope, sizeof scope), "{}");
    int calls = 0;
    struct alert_rule_env env = {s_test_value, &calls, s1, 0, NULL, NULL};
    assert(alert_rule_eval(r, ALERT_RULE_CLEAR, &env) == ALERT_FALSE);
    alert_rule_destroy(&r);
    alert_rule_destroy(&r);

    r = alert_rule_parse_line("  high_temp : temperature > 30 for 1m "
                              "severity critical", &err);
    assert(r);
    TEST_STREQ(alert_rule_name(r), "high_temp");
    TEST_STREQ(alert_rule_text(r), "temperature > 30 for 1m severity critical");
    TEST_STREQ(alert_rule_severity(r, 0), "critical");
    assert(alert_rule_max_window(r) == 0);
    TEST_STREQ(alert_rule_scope(r, s1, scope, sizeof scope), s1);
    assert(alert_rule_matches(r, "temperature"));
    assert(!alert_rule_matches(r, "temperature2{device=s1}"));
    assert(alert_rule_matches(r, "temperature{tenant=acme}"));
    /* Confined to a tenant: its series only. */
    assert(alert_rule_set_tenant(r, "acme") == 0);
    assert(alert_rule_set_tenant(r, "acme") == -1);
    assert(alert_rule_matches(r, "temperature{device=s1,tenant=acme}"));
    assert(!alert_rule_matches(r, "temperature{device=s1}"));
    assert(!alert_rule_matches(r, "temperature{tenant=globex}"));
    alert_rule_destroy(&r);
    r = alert_rule_parse_line("t: temperature{device=s1} > 1", &err);
    assert(r && alert_rule_set_tenant(r, "default") == 0);
    assert(alert_rule_matches(r, "temperature{device=s1}"));
    assert(!alert_rule_matches(r, "temperature{device=s1,tenant=acme}"));
    alert_rule_destroy(&r);
    assert(alert_rule_parse_line("no colon here", &err) == NULL);
    assert(alert_rule_parse_line("x: temperature >", &err) == NULL);
    assert(err.pos == 16);

    /* Errors carry a position and a reason. */
    s_test_bad("", 0, "empty", verbose);
    s_test_bad("temperature", 0, "expected a condition", verbose);
    s_test_bad("temperature > ", 14, "expected a number", verbose);
    s_test_bad("temperature > 30 30", 17, "expected an operator", verbose);
    s_test_bad("temperature = 30", 12, "did you mean '=='", verbose);
    s_test_bad("1 < temperature < 3", 16, "do not chain", verbose);
    s_test_bad("avg(temperature) > 3", 15, "window", verbose);
    s_test_bad("avg(temperature, 5) > 3", 17, "window duration", verbose);
    s_test_bad("avg(temperature, 5parsecs) > 3", 17, "malformed duration",
               verbose);
    s_test_bad("median(temperature, 5m) > 3", 0, "unknown function", verbose);
    s_test_bad("(temperature > 3", 0, "unbalanced", verbose);
    s_test_bad("temperature > 3 for", 19, "duration after 'for'", verbose);
    s_test_bad("temperature > 3 for 1m for 2m", 23, "duplicate", verbose);
    s_test_bad("temperature > 3 severity loud", 25, "expected a severity",
               verbose);
    s_test_bad("temperature > 3 severity critical, warning", 42,
               "needs 'after", verbose);
    s_test_bad("temperature > 3 clear temperature < 2", 22, "'when'",
               verbose);
    s_test_bad("(temperature > 3) + 1 > 2", 18, "expected a number", verbose);
    s_test_bad("temperature > 3 and 4", 16, "expected a condition", verbose);
    s_test_bad("temperature{device} > 3", 12, "key=value", verbose);
    s_test_bad("temperature{device=s1 > 3", 11, "unterminated", verbose);
    s_test_bad("\"temp*\" > 3 and humidity > 2", 0, "glob", verbose);
    s_test_bad("for > 3", 0, "keyword", verbose);
    s_test_bad("temperature > 3 $", 16, "unexpected character", verbose);
    s_test_bad("temperature > 1e999", 14, "out of range", verbose);
    s_test_bad("temperature > device.max.temp", 14, "device.NAME", verbose);
    s_test_bad("t > 1 group by", 14, "tag key", verbose);
    s_test_bad("t > 1 severity warning, back after 1m", 24,
               "expected a severity", verbose);
    s_test_bad("t > 1 severity info, error after 1m, back 1m", 42,
               "'after DURATION'", verbose);
    s_test_bad("t > 1 group within x", 19, "duration after 'within'",
               verbose);
    s_test_bad("t > 1 group group", 12, "duplicate 'group'", verbose);
    s_test_bad("temperature > device.", 14, "device.NAME", verbose);
    s_test_bad("time_to(temperature) < 1h", 19, "threshold", verbose);
    s_test_bad("time_to(temperature, x) < 1h", 21, "threshold number",
               verbose);
    s_test_bad("time_to(temperature, 9, soon) < 1h", 24, "window duration",
               verbose);
    s_test_bad("time_to(temperature, 9, forecast, 1h) < 1h", 32, "')'",
               verbose);
    s_test_bad("time_to(temperature, 9, 8d) < 1h", 24, "longer than 7d",
               verbose);
    s_test_bad("avg(temperature, 8d) > 1", 17, "longer than 7d", verbose);
    s_test_bad("temperature > .5", 14, "malformed number", verbose);
    s_test_bad("temperature > 1 for 500us", 20, "whole milliseconds", verbose);
    s_test_bad("temperature > 1 for 1500us", 20, "whole milliseconds", verbose);
    s_test_bad("temperature > 1 for 0s", 20, "more than zero", verbose);
    s_test_bad("temperature > 1 for 00m", 20, "more than zero", verbose);
    s_test_bad("temperature > 1 for 5parsecs", 20, "malformed duration",
               verbose);

    /* The length limit is on the canonical text, so that a rule taken
     * is taken again from its canonical text (fuzz_rule). */
    {
        size_t cap = 4 * ALERT_RULE_TEXT_MAX + 2, n = 0;
        char *t = xmalloc(cap + 16), *f;
        alert_rule_t *lr;

        /* Written long, canonical short: taken. */
        n = (size_t)snprintf(t, cap, "x");
        memset(t + n, ' ', 3 * ALERT_RULE_TEXT_MAX);
        strcpy(t + n + 3 * ALERT_RULE_TEXT_MAX, "> 1");
        assert((lr = alert_rule_new("t", t, &err)) != NULL);
        alert_rule_destroy(&lr);
        /* Written in 3,003 bytes, canonical 6,020: refused. */
        for (n = 0; n < 1000; n++)
            memcpy(t + 3 * n, "1-1", 3);
        strcpy(t + 3 * n, ">1");
        assert(alert_rule_new("t", t, &err) == NULL);
        assert(strstr(err.reason, "in canonical form"));
        /* Canonical just under the limit: taken, and so is its canonical
         * text, to the same text. */
        for (n = 0; n < 500; n++)
            memcpy(t + 3 * n, "1-1", 3);
        strcpy(t + 3 * n, ">1");
        assert((lr = alert_rule_new("t", t, &err)) != NULL);
        f = alert_rule_format(lr);
        assert(strlen(f) <= ALERT_RULE_TEXT_MAX);
        alert_rule_destroy(&lr);
        assert((lr = alert_rule_new("t", f, &err)) != NULL);
        alert_rule_destroy(&lr);
        free(f);
        /* Past four times the limit as written: refused unparsed. */
        memset(t, ' ', cap);
        t[0] = 'x';
        strcpy(t + cap - 3, ">1");
        assert(alert_rule_new("t", t, &err) == NULL);
        assert(strstr(err.reason, "longer than") &&
               !strstr(err.reason, "canonical"));
        free(t);
    }

    /* Nesting is bounded, so the parser's stack is too. */
    char deep[2 * ALERT_RULE_DEPTH_MAX + 64];
    size_t k = 0;
    for (int i = 0; i < ALERT_RULE_DEPTH_MAX + 1; i++)
        deep[k++] = '(';
    strcpy(deep + k, "x > 1");
    assert(alert_rule_new("t", deep, &err) == NULL);
    assert(strstr(err.reason, "nested deeper"));
    k = 0;
    for (int i = 0; i < ALERT_RULE_DEPTH_MAX / 4; i++)
        deep[k++] = '(';
    strcpy(deep + k, "x > 1");
    k = strlen(deep);
    for (int i = 0; i < ALERT_RULE_DEPTH_MAX / 4; i++)
        deep[k++] = ')';
    deep[k] = '\0';
    r = alert_rule_new("t", deep, &err);
    assert(r);
    alert_rule_destroy(&r);

    /* The canonical form has minimal parentheses and reparses to itself. */
    s_test_format("temperature>30", "temperature > 30 severity warning");
    s_test_format("t > 30 clear when t < 28 severity warning, critical after "
                  "10m, back after 2m",
                  "t > 30 clear when t < 28 severity warning, critical after "
                  "10m, back after 2m");
    s_test_format("t > 1 group by site, line",
                  "t > 1 severity warning group by site, line within 1m");
    s_test_format("t > 1 group within 5m notify ops",
                  "t > 1 severity warning notify ops group within 5m");
    s_test_format("temperature>device.max_temp+1",
                  "temperature > device.max_temp + 1 severity warning");
    s_test_format("time_to(bearing,90)<24h and age(x)>=90s",
                  "time_to(bearing, 90, 1h) < 1d and age(x) >= 90s "
                  "severity warning");
    s_test_format("time_to(bearing,90,forecast)<24h",
                  "time_to(bearing, 90, forecast) < 1d severity warning");
    s_test_format("time_to(t,-5.5,30m)<1d",
                  "time_to(t, -5.5, 30m) < 1d severity warning");
    s_test_format("\"device.temp\" > 1", "\"device.temp\" > 1 severity warning");
    s_test_format("(a + b) * c - (d - e) > -f for 300s",
                  "(a + b) * c - (d - e) > -f for 5m severity warning");
    s_test_format("a > 1 && (b > 2 || c > 3) || !(d < 4)",
                  "a > 1 and (b > 2 or c > 3) or not d < 4 severity warning");
    s_test_format("\"for\" > 0.1 severity info after 1m, critical after 2h",
                  "\"for\" > 0.1 severity info after 1m, critical after 2h");
    s_test_format("p95(api.latency{host=a-1}, 90s) > 250 clear when "
                  "anomaly(x) < 0.5",
                  "p95(api.latency{host=a-1}, 90s) > 250 clear when "
                  "anomaly(x) < 0.5 severity warning");
    s_test_format("a / (b / c) > 1e21", "a / (b / c) > 1e+21 severity warning");
    s_test_format("alarm(x)==1 or alarm(y,600s)>0",
                  "alarm(x) == 1 or alarm(y, 10m) > 0 severity warning");
    s_test_bad("alarm(x, 5) > 0", 9, "window duration", verbose);
    s_test_format("nodata(x{d=1},300s)or age(y)>=2",
                  "nodata(x{d=1}, 5m) or age(y) >= 2 severity warning");
    r = alert_rule_new("t", "nodata(x, 5m)", &err);
    assert(r && alert_rule_is_deadman(r) && alert_rule_max_window(r) == 0);
    alert_rule_destroy(&r);
    r = alert_rule_new("t", "avg(x, 5m) > 1", &err);
    assert(r && !alert_rule_is_deadman(r));
    alert_rule_destroy(&r);
    s_test_bad("age(x, 5m) > 1", 5, "expected ')'", verbose);
    s_test_bad("x > 1 notify", 12, "channel name", verbose);
    s_test_bad("x > 1 notify a, a", 6, "named twice", verbose);
    s_test_bad("x > 1 escalate pager", 20, "'after", verbose);
    s_test_bad("x > 1 throttle 5", 15, "duration after 'throttle'", verbose);
    s_test_bad("notify > 1", 0, "keyword", verbose);
    s_test_bad("x > 1 inhibited gw", 16, "'by'", verbose);
    s_test_bad("x > 1 inhibited by gw on \"x\"", 25, "tag key", verbose);
    s_test_format("x > 1 inhibited by \"gateway down\" on site,zone",
                  "x > 1 severity warning inhibited by \"gateway down\" on "
                  "site, zone");
    s_test_format("x > 1 inhibited by gw_down",
                  "x > 1 severity warning inhibited by gw_down");
    r = alert_rule_new("t", "x > 1 inhibited by gw on site", &err);
    assert(r);
    TEST_STREQ(alert_rule_inhibitor(r), "gw");
    TEST_STREQ(alert_rule_inhibit_on(r, 0), "site");
    assert(alert_rule_inhibit_on(r, 1) == NULL);
    alert_rule_destroy(&r);
    s_test_format("x > 1 escalate pager after 15m notify ops,mail throttle 600s",
                  "x > 1 severity warning notify ops, mail throttle 10m "
                  "escalate pager after 15m");
    r = alert_rule_new("t", "x > 1 notify ops, mail throttle 1m escalate "
                            "pager after 15m", &err);
    assert(r && alert_rule_notify_count(r) == 2);
    TEST_STREQ(alert_rule_notify(r, 1), "mail");
    assert(alert_rule_notify(r, 2) == NULL);
    assert(alert_rule_throttle(r) == 60 * CLOCK_NS_PER_S);
    int64_t after;
    TEST_STREQ(alert_rule_escalate(r, &after), "pager");
    assert(after == 15 * 60 * CLOCK_NS_PER_S);
    alert_rule_destroy(&r);
    s_test_bad("nodata(x) or x > 1", 8, "window", verbose);
    if (verbose)
        printf("alert_rule: parser and evaluator exercised\n");
    TEST_OK("alert_rule");
}
