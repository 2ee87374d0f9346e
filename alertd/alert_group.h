/*
 * alert_group: grouped notifications. A rule with a "group" clause
 *
 *   hot: temperature > 30 notify ops group by site within 5m
 *
 * does not notify each alert change on its own: the changes of its alerts
 * whose scopes have the same values of the "by" tags (the group key;
 * without "by", all the rule's alerts) wait in the group, and when the
 * group's window ends, "within" after its first change, each channel gets
 * one notification listing them all:
 *
 *   {"rule": "hot", "scope": "group:site=a", "state": "group",
 *    "group": {"rule": "hot", "key": {"site": "a"}}, "count": 3,
 *    "firing": 2, "resolved": 1, "alerts": [<one body per change>], ...}
 *
 * The next change opens a new window, so a group is notified at most once
 * per window however many of its devices flap. Waiting changes are rows
 * of the group_pending table, written in the transaction that records
 * the alert change and turned into outbox rows (and deleted) in one
 * transaction, so a kill -9 neither loses nor doubles a group
 * notification; its idempotency key is derived from the group and its
 * first row.
 */
#ifndef SP_ALERT_GROUP_H
#define SP_ALERT_GROUP_H

#include "alertd/alert_rule.h"
#include "alertd/alert_store.h"

#include <stdbool.h>
#include <stdint.h>

/* Create the table when missing. 0 or -1 (logged). */
int alert_group_init(alert_store_t *store);
/* Add the notification body of alert id's change at ts (event time) to
 * the group of rule r for scope; the group's window ends at ts + within
 * when this is its first waiting change. Runs inside the caller's
 * transaction. 0 or -1 (logged). */
int alert_group_add(alert_store_t *store, const alert_rule_t *r, int64_t id,
                    const char *scope, int64_t ts, const char *body);
/* Queue one notification per channel for every group whose window ended
 * at or before now (INT64_MAX: all of them). Runs inside the caller's
 * transaction. Returns the number of groups queued, or -1 (logged). */
int alert_group_flush(alert_store_t *store, int64_t now);
/* Changes waiting in groups. */
int64_t alert_group_waiting(alert_store_t *store);

/* Selftest: asserts on failure, prints " * alert_group: OK". */
void alert_group_test(bool verbose);

#endif
