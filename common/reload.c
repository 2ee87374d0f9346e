/*
 * reload: SIGHUP configuration reloads (see reload.h).
 */
#include "common/reload.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A reloaded configuration: the table it follows, then the struct. */
struct s_hdr {
    const struct cfg_opt *tab; /* table describing the struct */
    size_t n;                  /* entries in tab */
    max_align_t align[];       /* the configuration struct follows */
};

/* Where the running configuration came from; one per process, set once at
 * start-up before the loop runs (daemon_setup). */
static struct {
    const struct cfg_opt *tab;
    size_t n;
    const char *path;
} s_source;

void
reload_set_source(const struct cfg_opt *tab, size_t n, const char *path)
{
    s_source.tab = tab;
    s_source.n = n;
    s_source.path = path;
}

const char *
reload_path(void)
{
    return s_source.path;
}

static void *
s_field(const void *conf, const struct cfg_opt *o)
{
    return (char *)conf + o->offset;
}

static bool
s_same(const struct cfg_opt *o, const void *a, const void *b)
{
    const void *x = s_field(a, o), *y = s_field(b, o);
    const char *s, *t;

    switch (o->type) {
    case CFG_INT:
    case CFG_DURATION: return *(const int64_t *)x == *(const int64_t *)y;
    case CFG_DOUBLE: return *(const double *)x == *(const double *)y;
    case CFG_BOOL: return *(const bool *)x == *(const bool *)y;
    case CFG_STR:
        s = *(char *const *)x;
        t = *(char *const *)y;
        return strcmp(s ? s : "", t ? t : "") == 0;
    }
    return true;
}

static const char *
s_text(const struct cfg_opt *o, const void *conf, char *buf, size_t len)
{
    const void *p = s_field(conf, o);
    const char *s;

    if (o->flags & CFG_SECRET)
        return "(secret)";
    switch (o->type) {
    case CFG_INT: snprintf(buf, len, "%lld", (long long)*(const int64_t *)p); break;
    case CFG_DURATION:
        snprintf(buf, len, "%.3fs", (double)*(const int64_t *)p / CLOCK_NS_PER_S);
        break;
    case CFG_DOUBLE: strutil_dtoa(*(const double *)p, buf, len); break;
    case CFG_BOOL: snprintf(buf, len, "%s", *(const bool *)p ? "true" : "false"); break;
    case CFG_STR:
        s = *(char *const *)p;
        snprintf(buf, len, "%s", s ? s : "");
        break;
    }
    return buf;
}

/* The level named by conf's "log-level": 1 and *level set, 0 when there
 * is no such setting or it is empty, -1 for an unknown name. */
static int
s_level_of(const struct cfg_opt *tab, size_t n, const void *conf, int *level)
{
    static const struct {
        const char *name;
        int level;
    } levels[] = {{"debug", LOG_LVL_DEBUG}, {"info", LOG_LVL_INFO},
                  {"warning", LOG_LVL_WARNING}, {"err", LOG_LVL_ERR},
                  {"crit", LOG_LVL_CRIT}};
    const char *v = NULL;

    for (size_t i = 0; i < n; i++)
        if (strcmp(tab[i].name, "log-level") == 0 && tab[i].type == CFG_STR)
            v = *(char *const *)s_field(conf, &tab[i]);
    if (v == NULL || *v == '\0')
        return 0;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(v, levels[i].name) == 0) {
            *level = levels[i].level;
            return 1;
        }
    return -1;
}

int
reload_log_level(const struct cfg_opt *tab, size_t n, const void *conf)
{
    int level, rc = s_level_of(tab, n, conf, &level);

    if (rc == 1)
        log_set_level(level);
    return rc == -1 ? -1 : 0;
}

void *
reload_conf_from(const struct cfg_opt *tab, size_t n, const void *cur,
                 size_t size, const char *path)
{
    struct s_hdr *h;
    void *c;
    size_t changed = 0, restart = 0;
    char a[256], b[256];
    int level;

    if (path == NULL) {
        log_warnx("reload: no configuration file (-f or the _CONFIG variable); "
                "nothing to reload");
        return NULL;
    }
    h = xcalloc(1, sizeof *h + size);
    h->tab = tab;
    h->n = n;
    c = h->align;
    memcpy(c, cur, size);
    /* The copy owns its strings, as cfg_load_file replaces them. */
    for (size_t i = 0; i < n; i++)
        if (tab[i].type == CFG_STR) {
            char **p = s_field(c, &tab[i]);
            *p = *p ? xstrdup(*p) : NULL;
        }
    if (cfg_load_file(tab, n, c, path) == -1) {
        log_err("reload: %s has errors; keeping the running configuration",
                path);
        reload_free(&c);
        return NULL;
    }
    if (s_level_of(tab, n, c, &level) == -1) {
        log_err("reload: %s: log-level must be debug, info, warning, err or "
                "crit; keeping the running configuration", path);
        reload_free(&c);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const struct cfg_opt *o = &tab[i];
        if (s_same(o, cur, c))
            continue;
        s_text(o, cur, a, sizeof a);
        s_text(o, c, b, sizeof b);
        if (o->flags & CFG_IMMUTABLE) {
            log_warnx("reload: %s %s -> %s requires restart; keeping %s",
                      o->name, a, b, a);
            if (o->type == CFG_STR) {
                char **p = s_field(c, o);
                char *const *q = s_field(cur, o);
                free(*p);
                *p = *q ? xstrdup(*q) : NULL;
            } else {
                memcpy(s_field(c, o), s_field(cur, o),
                       o->type == CFG_BOOL ? sizeof(bool) : sizeof(int64_t));
            }
            restart++;
            continue;
        }
        log_info("reload: %s %s -> %s", o->name, a, b);
        changed++;
    }
    log_info("reload: %s: %zu setting%s reloaded, %zu need%s a restart", path,
             changed, changed == 1 ? "" : "s", restart, restart == 1 ? "s" : "");
    reload_log_level(tab, n, c); /* last, so the lines above are seen */
    return c;
}

void *
reload_conf(const void *cur, size_t size)
{
    if (s_source.tab == NULL) {
        log_err("reload: no configuration table registered");
        return NULL;
    }
    return reload_conf_from(s_source.tab, s_source.n, cur, size, s_source.path);
}

void
reload_free(void **conf_p)
{
    struct s_hdr *h;

    if (conf_p == NULL || *conf_p == NULL)
        return;
    h = (struct s_hdr *)((char *)*conf_p - offsetof(struct s_hdr, align));
    cfg_free(h->tab, h->n, *conf_p);
    free(h);
    *conf_p = NULL;
}

struct s_test_conf {
    int64_t port;
    int64_t timeout;
    double threshold;
    bool flag;
    char *dir;
    char *name;
    char *level;
};

void
reload_test(bool verbose)
{
    static const struct cfg_opt tab[] = {
        {"port", CFG_INT, offsetof(struct s_test_conf, port), "1", 0, 65535,
         CFG_IMMUTABLE, "port"},
        {"timeout", CFG_DURATION, offsetof(struct s_test_conf, timeout), "5s",
         0, 600, 0, "timeout"},
        {"threshold", CFG_DOUBLE, offsetof(struct s_test_conf, threshold), "3",
         0, 100, 0, "threshold"},
        {"flag", CFG_BOOL, offsetof(struct s_test_conf, flag), "false", 0, 0,
         0, "flag"},
        {"dir", CFG_STR, offsetof(struct s_test_conf, dir), "/a", 0, 0,
         CFG_IMMUTABLE, "dir"},
        {"name", CFG_STR, offsetof(struct s_test_conf, name), "x", 0, 0, 0,
         "name"},
        {"log-level", CFG_STR, offsetof(struct s_test_conf, level), "", 0, 0,
         0, "log level"},
    };
    size_t n = sizeof tab / sizeof tab[0];
    char path[] = "/tmp/reload_test.XXXXXX";
    int fd = mkstemp(path);
    struct s_test_conf cur = {3000, 5 * CLOCK_NS_PER_S, 3.0, false, NULL, NULL,
                              NULL},
                       *c;
    int level = log_level();
    FILE *fp;

    assert(fd >= 0);
    cur.dir = xstrdup("/a");
    cur.name = xstrdup("x");
    fp = fdopen(fd, "w");
    fprintf(fp, "port = 4000\ntimeout = 2s\nthreshold = 4.5\nflag = true\n"
                "dir = /b\nname = y\n");
    fclose(fp);
    /* Live settings change, immutable ones keep their running values. */
    c = reload_conf_from(tab, n, &cur, sizeof cur, path);
    assert(c);
    assert(c->port == 3000 && c->timeout == 2 * CLOCK_NS_PER_S);
    assert(c->threshold == 4.5 && c->flag);
    TEST_STREQ(c->dir, "/a");
    TEST_STREQ(c->name, "y");
    assert(c->dir != cur.dir); /* the copy owns its strings */
    TEST_STREQ(cur.name, "x");
    assert(cur.timeout == 5 * CLOCK_NS_PER_S);
    reload_free((void **)&c);
    assert(c == NULL);
    reload_free((void **)&c);
    /* A file with an error changes nothing. */
    fp = fopen(path, "w");
    fprintf(fp, "timeout = 1s\nthreshold = 400\n");
    fclose(fp);
    assert(reload_conf_from(tab, n, &cur, sizeof cur, path) == NULL);
    assert(reload_conf_from(tab, n, &cur, sizeof cur, NULL) == NULL);
    /* The registered source is what reload_conf reads. */
    fp = fopen(path, "w");
    fprintf(fp, "name = z\n");
    fclose(fp);
    reload_set_source(tab, n, path);
    TEST_STREQ(reload_path(), path);
    c = reload_conf(&cur, sizeof cur);
    assert(c && strcmp(c->name, "z") == 0 && c->threshold == 3.0);
    reload_free((void **)&c);
    /* The log level changes live; an unknown one is refused. */
    fp = fopen(path, "w");
    fprintf(fp, "log-level = err\n");
    fclose(fp);
    c = reload_conf(&cur, sizeof cur);
    assert(c && log_level() == LOG_LVL_ERR);
    reload_free((void **)&c);
    fp = fopen(path, "w");
    fprintf(fp, "log-level = loud\n");
    fclose(fp);
    assert(reload_conf(&cur, sizeof cur) == NULL && log_level() == LOG_LVL_ERR);
    log_set_level(level);
    reload_set_source(NULL, 0, NULL);
    assert(reload_conf(&cur, sizeof cur) == NULL);
    unlink(path);
    free(cur.dir);
    free(cur.name);
    (void)verbose;
    TEST_OK("reload");
}
