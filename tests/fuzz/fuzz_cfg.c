/*
 * fuzz_cfg: libFuzzer target for configuration files (common/cfg.c), the
 * "key = value" parser every daemon uses for -f and SIGHUP reloads.
 *
 * The input is the file. It must load or be refused (errors with
 * file:line on stderr), never crash; a file that loads must dump (cfg_dump,
 * the -n output) to a file that loads again to the same values: the dump
 * is a faithful configuration file.
 */
#include "common/cfg.h"
#include "common/urlmask.h"

#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct s_conf {
    char *name;
    int64_t port;
    double ratio;
    bool flag;
    int64_t wait;
    char *secret;
};

static const struct cfg_opt s_tab[] = {
    {"name", CFG_STR, offsetof(struct s_conf, name), "x", 0, 0, 0, "a string"},
    {"port", CFG_INT, offsetof(struct s_conf, port), "1", -1, 65535, 0, "an int"},
    {"ratio", CFG_DOUBLE, offsetof(struct s_conf, ratio), "0.5", -1e9, 1e9,
     CFG_IMMUTABLE, "a double"},
    {"flag", CFG_BOOL, offsetof(struct s_conf, flag), "false", 0, 0, 0, "a bool"},
    {"wait", CFG_DURATION, offsetof(struct s_conf, wait), "2s", 0, 86400, 0,
     "a duration"},
    {"secret", CFG_STR, offsetof(struct s_conf, secret), "", 0, 0, CFG_SECRET,
     "a secret"},
};
#define S_N (sizeof s_tab / sizeof s_tab[0])

/* A memory file holding n bytes; its path in path. */
static int
s_memfile(const void *data, size_t n, char *path, size_t len)
{
    int fd = memfd_create("fuzz_cfg", 0);
    assert(fd >= 0);
    assert(write(fd, data, n) == (ssize_t)n);
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

static void
s_defaults(struct s_conf *c)
{
    char *argv[] = {"fuzz_cfg", NULL};
    struct cfg_cli cli;
    memset(c, 0, sizeof *c);
    assert(cfg_load(s_tab, S_N, c, "fuzzcfg", 1, argv, &cli) == CFG_OK);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct s_conf a, b;
    char path[64], path2[64];
    int fd, fd2;

    if (size > 1 << 16)
        return 0;
    s_defaults(&a);
    fd = s_memfile(data, size, path, sizeof path);
    if (cfg_load_file(s_tab, S_N, &a, path) == 0) {
        char *dump = NULL;
        size_t dlen = 0;
        FILE *fp = open_memstream(&dump, &dlen);
        cfg_dump(s_tab, S_N, &a, fp);
        fclose(fp);
        /* The secret is never printed, so it is left out of the reload. */
        const char *sl = strstr(dump, "\nsecret = ");
        assert(sl != NULL);
        assert(strncmp(sl, "\nsecret = (secret)\n", 19) == 0 ||
               strncmp(sl, "\nsecret = \n", 11) == 0);
        s_defaults(&b);
        fd2 = s_memfile(dump, dlen, path2, sizeof path2);
        if (cfg_load_file(s_tab, S_N, &b, path2) != 0) {
            fprintf(stderr, "dump does not load:\n%s", dump);
            abort();
        }
        /* A value loads back as printed: itself, or a URL with its
         * secrets masked. */
        char *m = a.name ? urlmask_print(a.name) : NULL;
        assert(m ? strcmp(m, b.name) == 0 : b.name == NULL);
        assert(m == NULL || strcmp(m, a.name) == 0 || strstr(m, "***"));
        free(m);
        assert(a.port == b.port && a.flag == b.flag && a.wait == b.wait);
        assert(a.ratio == b.ratio);
        close(fd2);
        free(dump);
        cfg_free(s_tab, S_N, &b);
    }
    close(fd);
    cfg_free(s_tab, S_N, &a);
    return 0;
}
