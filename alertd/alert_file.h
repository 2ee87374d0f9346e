/*
 * alert_file: the rules file of alertd ("--rules FILE", alertd.8 RULES
 * FILE). One rule per line, "name: condition"; blank lines and lines whose
 * first non-blank character is '#' are ignored. Every error is reported
 * as "file:line:column: reason", all of them, before the file is refused,
 * so a reload either applies the whole file or nothing.
 */
#ifndef SP_ALERT_FILE_H
#define SP_ALERT_FILE_H

#include "alertd/alert_rule.h"

#include <stdbool.h>
#include <stddef.h>

/* Most rules in one file. */
#define ALERT_FILE_RULES_MAX 100000

/* Parse the file. On success returns 0 and sets *rules to a new array of
 * *n new rules (caller destroys each and frees the array). On failure
 * returns -1, logs each error at err level and sets nothing. */
int alert_file_load(const char *path, alert_rule_t ***rules, size_t *n);

/* Selftest: asserts on failure, prints " * alert_file: OK". */
void alert_file_test(bool verbose);

#endif
