/*
 * cfg: table-driven configuration (Redis static_configs[] in spirit).
 *
 * A daemon declares one array of struct cfg_opt describing every setting;
 * cfg_load derives from it the defaults, the "key = value" file parser
 * (with file:line errors), environment overrides (<IDENT>_<NAME>, e.g.
 * APID_PORT), long flags (--port 3000), range checks, --help and the -n
 * dump with secrets redacted. Precedence: defaults < file < environment <
 * flags. Common flags: -f file, -n (check), -v (repeatable), -V, -h/--help.
 */
#ifndef SP_CFG_H
#define SP_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum cfg_type {
    CFG_INT,      /* int64_t */
    CFG_DOUBLE,   /* double */
    CFG_STR,      /* char *, owned by the conf, freed by cfg_free */
    CFG_BOOL,     /* bool; as a flag "--x" means true */
    CFG_DURATION  /* int64_t nanoseconds, written "30s", "5m", "1h" */
};

#define CFG_SECRET 0x1    /* never printed */
#define CFG_IMMUTABLE 0x2 /* a change on reload needs a restart */

struct cfg_opt {
    const char *name;  /* long flag and file key ("api-port"/"api_port") */
    enum cfg_type type;
    size_t offset;     /* offsetof(struct <d>_conf, field) */
    const char *def;   /* default, written as in the file; NULL for none */
    double min, max;   /* range for numbers (durations in seconds) */
    int flags;         /* CFG_SECRET, CFG_IMMUTABLE */
    const char *help;  /* one line for --help */
};

enum cfg_result {
    CFG_OK = 0,       /* run */
    CFG_EXIT = 1,     /* help or version printed: exit 0 */
    CFG_ERROR = 2,    /* errors printed: exit 78 (EX_CONFIG) */
    CFG_CHECK = 3     /* -n: the table's checks passed; the caller makes
                         its own, then calls cfg_check_ok and exits 0, or
                         prints its errors and exits 78 */
};

#define CFG_EX_CONFIG 78

/* What the common flags said. */
struct cfg_cli {
    int verbose;        /* count of -v */
    const char *file;   /* -f argument or NULL (borrowed from argv/env) */
    bool check;         /* -n was given (cfg_load returned CFG_CHECK) */
};

/* Fill conf from the table, a file, the environment and argv. Prints
 * errors (all of them, with file:line; each one line that quotes the bad
 * flag, variable or key and value) to stderr. */
int cfg_load(const struct cfg_opt *tab, size_t n, void *conf,
             const char *ident, int argc, char **argv, struct cfg_cli *cli);
/* Load only from a file over the current values (for SIGHUP reloads on a
 * copy). Returns 0, or -1 with errors printed. */
int cfg_load_file(const struct cfg_opt *tab, size_t n, void *conf,
                  const char *path);
/* The text a user gave, fit to quote in a one-line error printed on
 * stderr before logging starts: its first CFG_QUOTE_MAX bytes escaped as
 * log_escape does (control bytes and bytes outside valid UTF-8 as \xNN),
 * then "..." if it was longer. Returns buf, which should hold
 * CFG_QUOTE_BUF bytes (shorter ones cut sooner). Cannot fail. */
#define CFG_QUOTE_MAX 64
#define CFG_QUOTE_BUF (CFG_QUOTE_MAX * 4 + 8)
const char *cfg_quote(const char *s, char *buf, size_t len);
/* The end of -n once every check passed: print the configuration (as
 * cfg_dump) and "configuration OK" on stdout. */
void cfg_check_ok(const struct cfg_opt *tab, size_t n, const void *conf);
/* Free every CFG_STR of conf. */
void cfg_free(const struct cfg_opt *tab, size_t n, void *conf);
/* Print usage generated from the table. */
void cfg_usage(const struct cfg_opt *tab, size_t n, const char *ident,
               FILE *fp);
/* Print the configuration as a file would hold it, secrets redacted. */
void cfg_dump(const struct cfg_opt *tab, size_t n, const void *conf,
              FILE *fp);

/* Selftest: asserts on failure, prints " * cfg: OK". */
void cfg_test(bool verbose);

#endif
