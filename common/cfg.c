/*
 * cfg: table-driven configuration (see cfg.h).
 */
#include "common/cfg.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/urlmask.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

const char *
cfg_quote(const char *s, char *buf, size_t len)
{
    char cut[CFG_QUOTE_MAX + 1];
    size_t o;

    snprintf(cut, sizeof cut, "%s", s);
    o = log_escape(buf, len, cut);
    if (strlen(s) > CFG_QUOTE_MAX && o + 4 <= len)
        memcpy(buf + o, "...", 4);
    return buf;
}

/* A zero duration ("0", "0s", "0ms", "0h0m"), which clock_parse_duration
 * refuses: a 1ns term in front of it sums to exactly 1ns. */
static bool
s_zero_duration(const char *val)
{
    char buf[128];
    int64_t ns;

    if (*val == '\0')
        return false; /* "1ns" alone is 1ns too */
    if (!strcmp(val, "0"))
        return true;
    if (snprintf(buf, sizeof buf, "1ns%s", val) >= (int)sizeof buf)
        return false;
    return clock_parse_duration(buf, &ns) == 0 && ns == 1;
}

/* Set one option from its text form. Returns 0, or -1 with the reason,
 * which quotes the value and gives the range, in why. */
static int
s_set(const struct cfg_opt *o, void *conf, const char *val, char *why,
      size_t len)
{
    char *p = (char *)conf + o->offset;
    char q[CFG_QUOTE_BUF];
    long long ll;
    double d;
    int64_t ns;

    switch (o->type) {
    case CFG_INT:
        if (strutil_toll(val, (long long)o->min, (long long)o->max, &ll)) {
            snprintf(why, len, "'%s' is not an integer in %lld..%lld",
                     cfg_quote(val, q, sizeof q), (long long)o->min,
                     (long long)o->max);
            return -1;
        }
        *(int64_t *)p = ll;
        return 0;
    case CFG_DOUBLE:
        if (strutil_tod(val, &d) || d < o->min || d > o->max) {
            snprintf(why, len, "'%s' is not a number in %g..%g",
                     cfg_quote(val, q, sizeof q), o->min, o->max);
            return -1;
        }
        *(double *)p = d;
        return 0;
    case CFG_DURATION:
        if (o->min <= 0 && s_zero_duration(val))
            ns = 0;
        else if (clock_parse_duration(val, &ns) ||
                 (double)ns / 1e9 < o->min || (double)ns / 1e9 > o->max) {
            snprintf(why, len, "'%s' is not a duration in %gs..%gs (like "
                     "30s, 1.5h, 1h30m)", cfg_quote(val, q, sizeof q), o->min,
                     o->max);
            return -1;
        }
        *(int64_t *)p = ns;
        return 0;
    case CFG_BOOL:
        if (!strcmp(val, "true") || !strcmp(val, "yes") || !strcmp(val, "1") ||
            !strcmp(val, "on"))
            *(bool *)p = true;
        else if (!strcmp(val, "false") || !strcmp(val, "no") ||
                 !strcmp(val, "0") || !strcmp(val, "off"))
            *(bool *)p = false;
        else {
            snprintf(why, len, "'%s' is not a boolean (true/false, yes/no, "
                     "on/off, 1/0)", cfg_quote(val, q, sizeof q));
            return -1;
        }
        return 0;
    case CFG_STR:
        if (o->flags & CFG_SECRET && *(char **)p)
            explicit_bzero(*(char **)p, strlen(*(char **)p));
        free(*(char **)p);
        *(char **)p = xstrdup(val);
        return 0;
    }
    snprintf(why, len, "unknown type");
    return -1;
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
    char *line = NULL, q[CFG_QUOTE_BUF], why[512];
    size_t cap = 0;
    ssize_t len;
    int lineno = 0, errors = 0;
    struct stat st;

    cfg_quote(path, q, sizeof q);
    if (fp == NULL) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", q,
                strerror(errno));
        return -1;
    }
    /* fopen opens a directory for reading, and then reads nothing. */
    if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", q,
                strerror(EISDIR));
        fclose(fp);
        return -1;
    }
    /* getline, not a fixed buffer: a long value (a URL, a key) is one
     * line, never cut into two. */
    while ((len = getline(&line, &cap, fp)) != -1) {
        char *s, *eq, *key, *val, *hash;
        const struct cfg_opt *o;

        lineno++;
        if (memchr(line, '\0', (size_t)len)) {
            fprintf(stderr, "%s:%d: NUL byte in the line\n", q, lineno);
            errors++;
            continue;
        }
        if ((hash = strchr(line, '#')))
            *hash = '\0';
        s = s_trim(line);
        if (*s == '\0')
            continue;
        if ((eq = strchr(s, '=')) == NULL) {
            fprintf(stderr, "%s:%d: expected 'key = value'\n", q, lineno);
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
            char k[CFG_QUOTE_BUF];
            fprintf(stderr, "%s:%d: unknown setting '%s'\n", q, lineno,
                    cfg_quote(key, k, sizeof k));
            errors++;
            continue;
        }
        if (s_set(o, conf, val, why, sizeof why)) {
            fprintf(stderr, "%s:%d: %s: %s\n", q, lineno, o->name, why);
            errors++;
        }
    }
    if (ferror(fp)) {
        fprintf(stderr, "%s: cannot read configuration: %s\n", q,
                strerror(errno));
        errors++;
    }
    free(line);
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
    char envname[128], q[CFG_QUOTE_BUF], why[512];

    memset(cli, 0, sizeof *cli);
    for (size_t i = 0; i < n; i++)
        if (tab[i].def && s_set(&tab[i], conf, tab[i].def, why, sizeof why))
            fprintf(stderr, "%s: bad built-in default for %s: %s\n", ident,
                    tab[i].name, why);
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
                fprintf(stderr, "%s: unknown option '%s' (see --help)\n",
                        ident, cfg_quote(a, q, sizeof q));
                errors++;
            } else if (!eq && o->type != CFG_BOOL) {
                i++; /* skip its value in this pass */
            }
        } else {
            fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n",
                    ident, cfg_quote(a, q, sizeof q));
            errors++;
        }
    }
    if (errors)
        return CFG_ERROR;
    s_envname(ident, "config", envname, sizeof envname);
    if (cli->file == NULL && getenv(envname))
        cli->file = getenv(envname);
    if (cli->file && *cli->file == '\0') {
        fprintf(stderr, "%s: -f or %s: the file name is empty\n", ident,
                envname);
        errors++;
    } else if (cli->file && cfg_load_file(tab, n, conf, cli->file)) {
        errors++;
    }
    for (size_t i = 0; i < n; i++) {
        const char *v;
        s_envname(ident, tab[i].name, envname, sizeof envname);
        if ((v = getenv(envname)) && s_set(&tab[i], conf, v, why, sizeof why)) {
            fprintf(stderr, "%s: environment %s: %s\n", ident, envname, why);
            errors++;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *val;
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
            fprintf(stderr, "%s: %s needs a value\n", ident,
                    cfg_quote(a, q, sizeof q));
            errors++;
            continue;
        }
        if (s_set(o, conf, val, why, sizeof why)) {
            fprintf(stderr, "%s: --%s: %s\n", ident, o->name, why);
            errors++;
        }
    }
    if (errors)
        return CFG_ERROR;
    cli->check = check;
    return check ? CFG_CHECK : CFG_OK;
}

void
cfg_check_ok(const struct cfg_opt *tab, size_t n, const void *conf)
{
    cfg_dump(tab, n, conf, stdout);
    printf("configuration OK\n");
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
    /* Every error is one line that quotes what was wrong: the value and
     * the range, a flag with a newline in it escaped. */
    char errpath[] = "/tmp/cfg_test_err.XXXXXX";
    int errfd = mkstemp(errpath);
    fflush(stderr);
    dup2(errfd, 2);
    setenv("CFGTEST_THRESHOLD", "1e999", 1);
    char *argv5[] = {"t", "--port", "abc", "--window=0s", "--stdin=maybe", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 5, argv5, &cli) == CFG_ERROR);
    unsetenv("CFGTEST_THRESHOLD");
    char *argv6[] = {"t", "--x\ny\xff", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 2, argv6, &cli) == CFG_ERROR);
    char *argv7[] = {"t", "-f", "", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 3, argv7, &cli) == CFG_ERROR);
    /* A directory is not a configuration file (fopen opens one). */
    char *argv8[] = {"t", "-f", "/tmp", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 3, argv8, &cli) == CFG_ERROR);
    /* A NUL byte does not end a line's value unseen. */
    fp = fopen(path, "w");
    fprintf(fp, "port = 4000");
    fputc('\0', fp);
    fprintf(fp, "junk\n");
    fclose(fp);
    assert(cfg_load_file(tab, n, &c, path) == -1);
    fflush(stderr);
    char err[4096] = {0};
    assert(pread(errfd, err, sizeof err - 1, 0) > 0);
    close(errfd);
    unlink(errpath);
    if (verbose)
        fputs(err, stdout);
    assert(strstr(err, "cfgtest: --port: 'abc' is not an integer in 1..65535\n"));
    assert(strstr(err, "cfgtest: --window: '0s' is not a duration in 1s..86400s"));
    assert(strstr(err, "cfgtest: --stdin: 'maybe' is not a boolean"));
    assert(strstr(err, "cfgtest: environment CFGTEST_THRESHOLD: '1e999' is not "
                       "a number in 0..100\n"));
    assert(strstr(err, "cfgtest: unknown option '--x\\x0ay\\xff' (see --help)\n"));
    assert(strstr(err, "cfgtest: -f or CFGTEST_CONFIG: the file name is empty\n"));
    assert(strstr(err, "/tmp: cannot read configuration: Is a directory\n"));
    assert(strstr(err, ":1: NUL byte in the line\n"));
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    /* -n leaves the last word to the caller (the daemon's own checks). */
    char *argv9[] = {"t", "-n", NULL};
    assert(cfg_load(tab, n, &c, "cfgtest", 2, argv9, &cli) == CFG_CHECK);
    assert(cli.check);
    /* A zero duration where the range starts at 0 (a drain of 0s). */
    static const struct cfg_opt zero[] = {
        {"drain", CFG_DURATION, offsetof(struct s_test_conf, win), "2s", 0, 600, 0, "d"},
    };
    static const char *zeros[] = {"0", "0s", "0ms", "0h0m", "0.0s"};
    char *argv11[] = {"t", "--drain=", NULL}; /* empty is not zero */
    saved = dup(2);
    devnull = open("/dev/null", O_WRONLY);
    if (!verbose)
        dup2(devnull, 2);
    assert(cfg_load(zero, 1, &c, "cfgtest", 2, argv11, &cli) == CFG_ERROR);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(devnull);
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++) {
        char arg[32];
        snprintf(arg, sizeof arg, "--drain=%s", zeros[i]);
        char *argv10[] = {"t", arg, NULL};
        assert(cfg_load(zero, 1, &c, "cfgtest", 2, argv10, &cli) == CFG_OK);
        assert(c.win == 0);
    }
    c.win = 30 * CLOCK_NS_PER_S;
    /* A value longer than any line buffer is one value, not two lines. */
    fp = fopen(path, "w");
    fprintf(fp, "name = ");
    for (int i = 0; i < 10000; i++)
        fputc('a' + i % 26, fp);
    fprintf(fp, "\nport = 4001\n");
    fclose(fp);
    assert(cfg_load_file(tab, n, &c, path) == 0);
    assert(strlen(c.name) == 10000 && c.name[9999] == 'a' + 9999 % 26);
    assert(c.port == 4001);
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
