/*
 * alert_ruleset: the rules alertd evaluates, from two sources.
 *
 *   - The rules file (--rules, alert_file.h): configuration as code,
 *     replaced as a whole on SIGHUP, read-only through the API.
 *   - Rules made through the API (POST /api/rules, seed body
 *     {"name", "condition", "actions"}), kept in the "rules" table of
 *     alertd's SQLite file, so they survive a restart, and applied to the
 *     running engine at once.
 *
 * An API rule's actions become channels of their own
 * ({"type":"webhook","url":...} is a webhook channel named
 * "api_<hash of the rule name>.<i>"); {"type":"channel","name":"ops"}
 * notifies a channel declared in the rules file. exec is refused: a REST
 * client must not choose commands for alertd to run (declare an exec
 * channel in the file and name it instead).
 *
 * A bad rule is refused with the parser's reason and position, in the
 * error shape of SPEC.md. A file rule and an API rule never share a
 * name: the API refuses the name, and when a reloaded file takes a name
 * an API rule has, the file's rule wins and the API rule is skipped (and
 * listed as "shadowed").
 */
#ifndef SP_ALERT_RULESET_H
#define SP_ALERT_RULESET_H

#include "alertd/alert_channel.h"
#include "alertd/alert_file.h"
#include "alertd/alert_rule.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sqlite3;

typedef struct alert_ruleset alert_ruleset_t;

/* A rule set. With db (borrowed; the store's connection), API rules are
 * loaded from and saved to its "rules" table (created when missing);
 * without, the API answers 409. A stored rule that no longer parses is
 * logged and skipped. Returns NULL (logged) when the table cannot be
 * read. Caller destroys. */
alert_ruleset_t *alert_ruleset_new(struct sqlite3 *db);
/* Destroy; NULL-safe; sets *self_p to NULL. */
void alert_ruleset_destroy(alert_ruleset_t **self_p);

/* Replace the file's rules and channels with those of f (f keeps its
 * entries; they are copied). Cannot fail. */
void alert_ruleset_set_file(alert_ruleset_t *self, const struct alert_file *f);

/* The rules to evaluate (enabled ones, file rules first) and every
 * channel they may notify, as new objects the caller owns: *rules is an
 * array of the return value's length (alert_engine_set_rules takes the
 * rules), *channels an array of *nch. Free both arrays with free() after
 * handing the objects on. */
size_t alert_ruleset_build(alert_ruleset_t *self, alert_rule_t ***rules,
                           alert_channel_t ***channels, size_t *nch);

/* Answer a rules query: "rules" (list), "rule" (one, by "name"),
 * "rule_create" ("rule": the POST body), "rule_update" ("name" and
 * "rule": the fields to change), "rule_delete" ("name") and "rule_check"
 * (validate "name" and "condition" without saving). With "tenant" (apid
 * sends the caller's), a query sees only that tenant's API rules (and
 * the file's rules for the default tenant; another's rule is 404), and a
 * rule it creates is that tenant's and evaluated on its series only
 * (alert_rule_set_tenant). Rule names are unique across tenants. Returns the HTTP
 * status with *body set, or 0 when op is none of these. *changed is set
 * when the set changed (the caller rebuilds the engine). now is the
 * wall clock, ns. */
int alert_ruleset_answer(alert_ruleset_t *self, const char *op,
                         const json_t *req, int64_t now, json_t **body,
                         bool *changed);

/* Number of rules (file and API, enabled or not). */
size_t alert_ruleset_size(const alert_ruleset_t *self);

/* Selftest: asserts on failure, prints " * alert_ruleset: OK". */
void alert_ruleset_test(bool verbose);

#endif
