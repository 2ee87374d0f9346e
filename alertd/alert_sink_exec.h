/*
 * alert_sink_exec: the "exec" channel. Runs a command without a shell:
 * argv as declared, the alert as JSON on stdin, ALERT_RULE, ALERT_SCOPE,
 * ALERT_STATE, ALERT_SEVERITY and ALERT_IDEMPOTENCY_KEY in the
 * environment, stdout discarded, stderr inherited (the daemon's log).
 * Exit status 0 within the timeout is success; past the timeout the
 * command is killed and the delivery retried.
 */
#ifndef SP_ALERT_SINK_EXEC_H
#define SP_ALERT_SINK_EXEC_H

#include "alertd/alert_channel.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The exec channel's deliver function (alert_channel_sink_fn). */
int alert_sink_exec_deliver(char *const *argv, size_t argc,
                            const struct alert_channel_env *env,
                            const struct alert_note *note, char *err,
                            size_t errlen);

/* Run argv (argv[0] an absolute path) with data on stdin and the extra
 * environment entries envp (NULL-terminated, may be NULL) within timeout
 * ns. Returns 0 when it exits 0, else -1 with a reason in err. Shared
 * with the email channel. */
int alert_sink_exec_spawn(char *const *argv, char *const *envp,
                          const char *data, size_t len, int64_t timeout,
                          char *err, size_t errlen);

/* Selftest: asserts on failure, prints " * alert_sink_exec: OK". */
void alert_sink_exec_test(bool verbose);

#endif
