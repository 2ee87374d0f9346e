/*
 * test: helpers for module selftests ("x_test(bool verbose)").
 *
 * Selftests assert on failure (they are the usage example of the module)
 * and print " * name: OK" when done.
 */
#ifndef SP_TEST_H
#define SP_TEST_H

#include <assert.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Assert two doubles are within eps of each other. */
#define TEST_NEAR(a, b, eps) assert(fabs((double)(a) - (double)(b)) <= (eps))
/* Assert two strings are equal. */
#define TEST_STREQ(a, b) assert(strcmp((a), (b)) == 0)
/* Print the selftest banner. */
#define TEST_OK(name) printf(" * %s: OK\n", (name))

#endif
