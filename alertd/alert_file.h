/*
 * alert_file: the rules file of alertd ("--rules FILE", alertd.8 RULES
 * FILE). One rule per line, "name: condition", or a channel declaration
 * "channel NAME: TYPE ARG..." (alert_channel.h); blank lines and lines
 * whose first non-blank character is '#' are ignored. Every channel a
 * rule notifies must be declared in the file. Every error is reported
 * as "file:line:column: reason", all of them, before the file is refused,
 * so a reload either applies the whole file or nothing.
 */
#ifndef SP_ALERT_FILE_H
#define SP_ALERT_FILE_H

#include "alertd/alert_channel.h"
#include "alertd/alert_rule.h"

#include <stdbool.h>
#include <stddef.h>

/* Most rules in one file. */
#define ALERT_FILE_RULES_MAX 100000

/* The contents of a rules file. */
struct alert_file {
    alert_rule_t **rules;          /* rules, in file order */
    size_t nrules;                 /* how many */
    alert_channel_t **channels;    /* declared channels */
    size_t nchannels;              /* how many */
};

/* Parse the file into *out. Returns 0, or -1 after logging every error
 * at err level (and *out empty). Free with alert_file_free. */
int alert_file_load(const char *path, struct alert_file *out);
/* Destroy what is left in f (entries already taken may be NULL) and
 * empty it. */
void alert_file_free(struct alert_file *f);
/* Find a channel by name in f, or NULL. Borrowed. */
alert_channel_t *alert_file_channel(const struct alert_file *f,
                                    const char *name);

/* Selftest: asserts on failure, prints " * alert_file: OK". */
void alert_file_test(bool verbose);

#endif
