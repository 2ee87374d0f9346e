/*
 * cfg: table-driven configuration (see cfg.h).
 */
#include "common/cfg.h"
#include "common/clock.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/urlmask.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Compare option names treating '-' and '_' alike. */
static bool
s_name_eq(const char *a, const char *b, size_t blen)
{
    size_t i;
    for (i = 0; i < blen && a[i]; i++) {
        char x = a[i] == '_' ? '-' : a[i], y = b[i] == '_' ? '-' : b[i];
        if (x != y)
            return false;
    }
    return i == blen && a[i] == '\0';
}

static const struct cfg_opt *
s_find(const struct cfg_opt *tab, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (s_name_eq(tab[i].name, name, len))
            return &tab[i];
    return NULL;
}

/* Set one option from its text form. Returns NULL or a reason. */
static const char *
s_set(const struct cfg_opt *o, void *conf, const char *val)
{
    char *p = (char *)conf + o->offset;
    long long ll;
    double d;
    int64_t ns;

    switch (o->type) {
    case CFG_INT:
        if (strutil_toll(val, (long long)o->min, (long long)o->max, &ll))
            return "not an integer in range";
        *(int64_t *)p = ll;
        return NULL;
    case CFG_DOUBLE:
        if (strutil_tod(val, &d) || d < o->min || d > o->max)
            return "not a number in range";
        *(double *)p = d;
        return NULL;
    case CFG_DURATION:
        if (clock_parse_duration(val, &ns) ||
            (double)ns / 1e9 < o->min || (double)ns / 1e9 > o->max)
            return "not a duration in range (like 30s, 1.5h, 1h30m)";
        *(int64_t *)p = ns;
        return NULL;
    case CFG_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "1") ||
            !strcmp(val, "on"))
            *(bool *)p = true;
        else if (!strcmp(val, "false") || !strcmp(val, "no") ||
                 !strcmp(val, "0") || !strcmp(val, "off"))
            *(bool *)p = false;
        else
            return "not a boolean (true/false)";
        return NULL;
    case CFG_STR:
        if (o->flags & CFG_SECRET && *(char **)p)
            explicit_bzero(*(char **)p, strlen(*(char **)p));
        free(*(char **)p);
        *(char **)p = xstrdup(val);
        return NULL;
    }
    return "unknown type";
}

static char *
s_trim(char *s)
{
    char *e;
    while (isspace((unsigned char)*s))
        s++;
    e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

int
cfg_load_file(const struct cfg_opt *tab, size_t n, void *conf,
              const char *path)
{
    FILE *fp = fopen(path, "r");
    char line[4096];
    int lineno = 0, errors = 0;

    if (fp == NULL) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof line, fp)) {
        char *s, *eq, *key, *val, *hash;
        const struct cfg_opt *o;
        const char *why;

        lineno++;
        if ((hash = strchr(line, '#')))
            *hash = '\0';
        s = s_trim(line);
        if (*s == '\0')
            continue;
        if ((eq = strchr(s, '=')) == NULL) {
            fprintf(stderr, "%s:%d: expected 'key = value'\n", path, lineno);
            errors++;
            continue;
        }
        *eq = '\0';
        key = s_trim(s);
        val = s_trim(eq + 1);
        if (val[0] == '"' && strlen(val) >= 2 && val[strlen(val) - 1] == '"') {
            val[strlen(val) - 1] = '\0';
            val++;
        }
        if ((o = s_find(tab, n, key, strlen(key))) == NULL) {
            fprintf(stderr, "%s:%d: unknown setting '%s'\n", path, lineno, key);
            errors++;
            continue;
        }
        if ((why = s_set(o, conf, val))) {
            fprintf(stderr, "%s:%d: %s: %s\n", path, lineno, key, why);
            errors++;
        }
    }
    fclose(fp);
    return errors ? -1 : 0;
}

static void
s_envname(const char *ident, const char *name, char *out, size_t len)
{
    size_t k = 0;
    for (const char *p = ident; *p && k + 1 < len; p++)
        out[k++] = (char)toupper((unsigned char)*p);
    if (k + 1 < len)
        out[k++] = '_';
    for (const char *p = name; *p && k + 1 < len; p++)
        out[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[k] = '\0';
}

int
cfg_load(const struct cfg_opt *tab, size_t n, void *conf, const char *ident,
         int argc, char **argv, struct cfg_cli *cli)
{
    int errors = 0;
    bool check = false;
    char envname[128];

    memset(cli, 0, sizeof *cli);
    for (size_t i = 0; i < n; i++)
        if (tab[i].def && s_set(&tab[i], conf, tab[i].def))
            fprintf(stderr, "%s: bad built-in default for %s\n", ident,
                    tab[i].name);
    /* First pass: the common flags, so the file is known before the rest. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cfg_usage(tab, n, ident, stdout);
            return CFG_EXIT;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            printf("%s %s\n", ident, SP_VERSION);
            return CFG_EXIT;
        } else if (!strcmp(a, "-n")) {
            check = true;
        } else if (a[0] == '-' && a[1] == 'v' && strspn(a + 1, "v") == strlen(a + 1)) {
            cli->verbose += (int)strlen(a + 1);
        } else if (!strcmp(a, "-f")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "%s: -f needs a file\n", ident);
                return CFG_ERROR;
            }
            cli->file = argv[++i];
        } else if (!strncmp(a, "--", 2)) {
            const char *name = a + 2, *eq = strchr(name, '=');
            const struct cfg_opt *o =
                s_find(tab, n, name, eq ? (size_t)(eq - name) : strlen(name));
            if (o == NULL) {
                fprintf(stderr, "%s: unknown option '%s' (see --help)\n", ident, a);
                errors++;
            } else if (!eq && o->type != CFG_BOOL) {
                i++; /* skip its value in this pass */
            }
        } else {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n",
                    ident, a);
            errors++;
        }
    }
    if (errors)
        return CFG_ERROR;
    s_envname(ident, "config", envname, sizeof envname);
    if (cli->file == NULL && getenv(envname))
        cli->file = getenv(envname);
    if (cli->file && cfg_load_file(tab, n, conf, cli->file))
        errors++;
    for (size_t i = 0; i < n; i++) {
        const char *v, *why;
        s_envname(ident, tab[i].name, envname, sizeof envname);
        if ((v = getenv(envname)) && (why = s_set(&tab[i], conf, v))) {
            fprintf(stderr, "%s: environment %s: %s\n", ident, envname, why);
            errors++;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *val, *why;
        const struct cfg_opt *o;
        if (!strcmp(a, "-f")) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2))
            continue;
        name = a + 2;
        eq = strchr(name, '=');
        o = s_find(tab, n, name, eq ? (size_t)(eq - name) : strlen(name));
        if (eq)
            val = eq + 1;
        else if (o->type == CFG_BOOL)
            val = "true";
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fprintf(stderr, "%s: %s needs a value\n", ident, a);
            errors++;
            continue;
        }
        if ((why = s_set(o, conf, val))) {
            fprintf(stderr, "%s: --%s: %s\n", ident, o->name, why);
            errors++;
        }
    }
    if (errors)
        return CFG_ERROR;
    if (check) {
        cfg_dump(tab, n, conf, stdout);
        printf("configuration OK\n");
        return CFG_EXIT;
    }
    return CFG_OK;
}

void
cfg_free(const struct cfg_opt *tab, size_t n, void *conf)
{
    for (size_t i = 0; i < n; i++) {
        if (tab[i].type == CFG_STR) {
            char **p = (char **)((char *)conf + tab[i].offset);
            if (*p && (tab[i].flags & CFG_SECRET))
                explicit_bzero(*p, strlen(*p));
            xfree(p);
        }
    }
}

/* A string as the file parser reads it back: in quotes when it begins or
 * ends with blanks (which the parser trims) or is itself in quotes (of
 * which the parser takes one pair off). */
static void
s_print_str(const char *s, FILE *fp)
{
    size_t len = strlen(s);
    bool quote = len > 0 && (isspace((unsigned char)s[0]) ||
                             isspace((unsigned char)s[len - 1]) ||
                             (len >= 2 && s[0] == '"' && s[len - 1] == '"'));

    if (quote)
        fputc('"', fp);
    fputs(s, fp);
    if (quote)
        fputc('"', fp);
}

static void
s_print_value(const struct cfg_opt *o, const void *conf, FILE *fp)
{
    const char *p = (const char *)conf + o->offset;
    char buf[40];

    if (o->flags & CFG_SECRET) {
        fputs(*(char *const *)p ? "(secret)" : "", fp);
        return;
    }
    if (o->type == CFG_STR && urlmask_is_url(*(char *const *)p)) {
        char *m = urlmask_print(*(char *const *)p); /* a URL's password stays out */
        s_print_str(m, fp);
        free(m);
        return;
    }
    switch (o->type) {
    case CFG_INT: fprintf(fp, "%lld", (long long)*(const int64_t *)p); break;
    case CFG_DOUBLE:
        fputs(strutil_dtoa(*(const double *)p, buf, sizeof buf), fp);
        break;
    case CFG_DURATION: {
        int64_t ns = *(const int64_t *)p;
        /* Exact, so that the dump reads back to the same value. */
        if (ns % CLOCK_NS_PER_S == 0)
            fprintf(fp, "%llds", (long long)(ns / CLOCK_NS_PER_S));
        else if (ns % CLOCK_NS_PER_MS == 0)
            fprintf(fp, "%lldms", (long long)(ns / CLOCK_NS_PER_MS));
        else if (ns % 1000 == 0)
            fprintf(fp, "%lldus", (long long)(ns / 1000));
        else
            fprintf(fp, "%lldns", (long long)ns);
        break;
    }
    case CFG_BOOL: fputs(*(const bool *)p ? "true" : "false", fp); break;
    case CFG_STR: s_print_str(*(char *const *)p ? *(char *const *)p : "", fp); break;
    }
}

void
cfg_dump(const struct cfg_opt *tab, size_t n, const void *conf, FILE *fp)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(fp, "%s = ", tab[i].name);
        s_print_value(&tab[i], conf, fp);
        fputc('\n', fp);
    }
}

void
cfg_usage(const struct cfg_opt *tab, size_t n, const char *ident, FILE *fp)
{
    char envname[128];

    fprintf(fp, "usage: %s [-hnVv] [-f file] [--option value ...]\n\n", ident);
    fprintf(fp, "  -f file      read settings from file (key = value)\n"
                "  -n           check the configuration, print it, exit\n"
                "  -v           more verbose (repeat for debug)\n"
                "  -V           print the version\n"
                "  -h, --help   this text\n\noptions (flag, environment, default):\n");
    for (size_t i = 0; i < n; i++) {
        s_envname(ident, tab[i].name, envname, sizeof envname);
        fprintf(fp, "  --%-20s %s\n  %-22s $%s, default: %s\n", tab[i].name,
                tab[i].help, "", envname, tab[i].def ? tab[i].def : "(none)");
    }
    fprintf(fp, "\nPrecedence: defaults < file < environment < flags.\n");
}

struct s_test_conf {
    int64_t port;
    double thr;
    char *name;
    char *secret;
    bool on;
    int64_t win;
};

void
cfg_test(bool verbose)
{
    static const struct cfg_opt tab[] = {
        {"port", CFG_INT, offsetof(struct s_test_conf, port), "3000", 1, 65535, 0, "port"},
        {"threshold", CFG_DOUBLE, offsetof(struct s_test_conf, thr), "3.0", 0, 100, 0, "z"},
        {"name", CFG_STR, offsetof(struct s_test_conf, name), "x", 0, 0, 0, "name"},
        {"secret", CFG_STR, offsetof(struct s_test_conf, secret), NULL, 0, 0, CFG_SECRET, "s"},
        {"stdin", CFG_BOOL, offsetof(struct s_test_conf, on), "false", 0, 0, 0, "filter"},
        {"window", CFG_DURATION, offsetof(struct s_test_conf, win), "5m", 1, 86400, 0, "w"},
    };
    size_t n = sizeof tab / sizeof tab[0];
    struct s_test_conf c = {0};
    struct cfg_cli cli;
    char path[] = "/tmp/cfg_test.XXXXXX";
    int fd = mkstemp(path);
    FILE *fp = fdopen(fd, "w");

    fprintf(fp, "# a comment\nport = 4000\nname = \"from file\"\nsecret=hunter2\n");
    fclose(fp);
    setenv("CFGTEST_PORT", "5000", 1);
    char *argv1[] = {"t", "-f", path, "-vv", "--threshold", "2.5", "--stdin",
                     "--window=30s", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 8, argv1, &cli) == CFG_OK);
    assert(c.port == 5000); /* environment beats the file */
    assert(c.thr == 2.5 && c.on && c.win == 30 * CLOCK_NS_PER_S);
    TEST_STREQ(c.name, "from file");
    TEST_STREQ(c.secret, "hunter2");
    assert(cli.verbose == 2);
    char *argv2[] = {"t", "--port", "5001", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 3, argv2, &cli) == CFG_OK);
    assert(c.port == 5001); /* the flag beats the environment */
    unsetenv("CFGTEST_PORT");
    fp = fopen(path, "w");
    fprintf(fp, "port = 99999\nnope = 1\nwindow = soon\n");
    fclose(fp);
    /* Expected errors go to /dev/null unless verbose. */
    int saved = dup(2), devnull = open("/dev/null", O_WRONLY);
    if (!verbose)
        dup2(devnull, 2);
    char *argv3[] = {"t", "-f", path, NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 3, argv3, &cli) == CFG_ERROR);
    char *argv4[] = {"t", "--bogus", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 2, argv4, &cli) == CFG_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    /* A dumped string loads back as itself, also one in quotes or with
     * blanks at its ends (fuzz_cfg found '""""' coming back as '""'). */
    static const char *names[] = {"plain", "\"\"\"\"", "\"quoted\"", " lead",
                                  "trail ", "\"", "a \"b\" c", ""};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct s_test_conf d = {0};
        free(c.name);
        c.name = xstrdup(names[i]);
        fp = fopen(path, "w");
        cfg_dump(tab, n, &c, fp);
        fclose(fp);
        assert(cfg_load_file(tab, n, &d, path) == 0);
        TEST_STREQ(d.name, names[i]);
        cfg_free(tab, n, &d);
    }
    /* So does a duration that is not whole seconds or milliseconds
     * (fuzz_cfg: ".50ms" was dumped as "0ms"). */
    static const int64_t wins[] = {2 * CLOCK_NS_PER_S, 1500 * CLOCK_NS_PER_MS,
                                   1000500000, 1000000001};
    for (size_t i = 0; i < sizeof wins / sizeof wins[0]; i++) {
        struct s_test_conf d = {0};
        c.win = wins[i];
        fp = fopen(path, "w");
        cfg_dump(tab, n, &c, fp);
        fclose(fp);
        assert(cfg_load_file(tab, n, &d, path) == 0);
        assert(d.win == wins[i]);
        cfg_free(tab, n, &d);
    }
    unlink(path);
    cfg_free(tab, n, &c);
    assert(c.name == NULL && c.secret == NULL);
    TEST_OK("cfg");
}
