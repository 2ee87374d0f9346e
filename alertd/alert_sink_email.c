/*
 * alert_sink_email: mail through sendmail(8) (see the header).
 */
#include "alertd/alert_sink_email.h"
#include "alertd/alert_sink_exec.h"
#include "common/clock.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int
alert_sink_email_deliver(char *const *argv, size_t argc,
                         const struct alert_channel_env *env,
                         const struct alert_note *note, char *err,
                         size_t errlen)
{
    char **cmd = xcalloc(argc + 4, sizeof *cmd);
    char *msg = NULL, state[16];
    size_t len = 0, n = 0;
    FILE *fp = open_memstream(&msg, &len);
    int rc;

    if (fp == NULL)
        abort(); /* out of memory, as xalloc would */
    snprintf(state, sizeof state, "%s", note->state);
    for (char *c = state; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    fprintf(fp, "To: ");
    for (size_t i = 0; i < argc; i++)
        fprintf(fp, "%s%s", i ? ", " : "", argv[i]);
    /* Rule names and scopes have no control characters (the parser and
     * series_name_check refuse them), so they cannot break the header. */
    fprintf(fp,
            "\nSubject: [sensorpipe] %s %s: %s %s\n"
            "Auto-Submitted: auto-generated\n"
            "X-Sensorpipe-Idempotency-Key: %s\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n%s\n",
            state, note->severity, note->rule, note->scope, note->idem_key,
            note->body);
    fclose(fp);
    cmd[n++] = (char *)(env->sendmail && *env->sendmail
                            ? env->sendmail
                            : "/usr/sbin/sendmail");
    cmd[n++] = "-i";
    cmd[n++] = "--";
    for (size_t i = 0; i < argc; i++)
        cmd[n++] = argv[i];
    cmd[n] = NULL;
    rc = alert_sink_exec_spawn(cmd, NULL, msg, len, env->timeout, err,
                               errlen);
    free(msg);
    free(cmd);
    return rc;
}

void
alert_sink_email_test(bool verbose)
{
    char dir[] = "/tmp/alert_sink_email.XXXXXX", path[128], out[128];
    char err[256], buf[1024] = {0};
    struct alert_channel_env env = {0};
    struct alert_note note = {"{\"rule\":\"hot\"}", "k1", "hot", "t{d=1}",
                              "firing", "critical", NULL};
    char *rcpt[] = {"ops@example.com", "oncall@example.com", NULL};
    FILE *fp;

    assert(mkdtemp(dir));
    /* A fake sendmail that records its arguments and the message. */
    snprintf(path, sizeof path, "%s/sendmail", dir);
    snprintf(out, sizeof out, "%s/mail", dir);
    fp = fopen(path, "w");
    assert(fp);
    fprintf(fp, "#!/bin/sh\necho \"$*\" > %s\ncat >> %s\n", out, out);
    fclose(fp);
    assert(chmod(path, 0755) == 0);
    env.sendmail = path;
    env.timeout = 5 * CLOCK_NS_PER_S;
    assert(alert_sink_email_deliver(rcpt, 2, &env, &note, err, sizeof err) ==
           0);
    fp = fopen(out, "r");
    assert(fp);
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    if (verbose)
        printf("%s", buf);
    TEST_STREQ(buf, "-i -- ops@example.com oncall@example.com\n"
                    "To: ops@example.com, oncall@example.com\n"
                    "Subject: [sensorpipe] FIRING critical: hot t{d=1}\n"
                    "Auto-Submitted: auto-generated\n"
                    "X-Sensorpipe-Idempotency-Key: k1\n"
                    "Content-Type: text/plain; charset=utf-8\n"
                    "\n{\"rule\":\"hot\"}\n");
    /* An MTA that refuses: the delivery fails and will be retried. */
    fp = fopen(path, "w");
    fprintf(fp, "#!/bin/sh\nexit 75\n");
    fclose(fp);
    assert(alert_sink_email_deliver(rcpt, 1, &env, &note, err, sizeof err) ==
           -1);
    assert(strstr(err, "exit status 75"));
    unlink(out);
    unlink(path);
    assert(rmdir(dir) == 0);
    TEST_OK("alert_sink_email");
}
