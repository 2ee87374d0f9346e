/*
 * selftest: runs every module's x_test(bool verbose).
 *
 *   selftest            run all
 *   selftest -l         list them
 *   selftest -t name    run one (repeatable)
 *   selftest -v         verbose
 *
 * The list is generated at build time from the sources (selftest_list.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <czmq.h>

#define SELFTEST(name) void name##_test(bool verbose);
#include "selftest_list.h"
#undef SELFTEST

static const struct {
    const char *name;
    void (*fn)(bool);
} s_tests[] = {
#define SELFTEST(name) {#name, name##_test},
#include "selftest_list.h"
#undef SELFTEST
};

int
main(int argc, char **argv)
{
    bool verbose = false, any = false;
    size_t n = sizeof s_tests / sizeof s_tests[0];

    zsys_init();
    zsys_set_logstream(NULL);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-v"))
            verbose = true;
        else if (!strcmp(argv[i], "-l")) {
            for (size_t k = 0; k < n; k++)
                printf("%s\n", s_tests[k].name);
            return 0;
        }
    }
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            const char *want = argv[++i];
            size_t k;
            for (k = 0; k < n; k++)
                if (!strcmp(s_tests[k].name, want))
                    break;
            if (k == n) {
                fprintf(stderr, "selftest: no test '%s' (see -l)\n", want);
                return 2;
            }
            s_tests[k].fn(verbose);
            any = true;
        }
    }
    if (!any)
        for (size_t k = 0; k < n; k++)
            s_tests[k].fn(verbose);
    zsys_shutdown();
    return 0;
}
