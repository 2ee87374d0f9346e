/*
 * alert_file: load a rules file (see alert_file.h).
 */
#include "alertd/alert_file.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
s_free(alert_rule_t **rules, size_t n)
{
    for (size_t i = 0; i < n; i++)
        alert_rule_destroy(&rules[i]);
    free(rules);
}

int
alert_file_load(const char *path, alert_rule_t ***rules_p, size_t *n_p)
{
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, lineno = 0, n = 0, alloc = 0;
    ssize_t len;
    alert_rule_t **rules = NULL;
    int errors = 0;

    if (fp == NULL) {
        log_err("%s: %s", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) != -1) {
        struct alert_rule_error err;
        const char *p = line;
        alert_rule_t *r;

        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0' || *p == '#')
            continue;
        if (strlen(line) != (size_t)len) {
            log_err("%s:%zu: NUL byte in line", path, lineno);
            errors++;
            continue;
        }
        if ((r = alert_rule_parse_line(line, &err)) == NULL) {
            log_err("%s:%zu:%zu: %s", path, lineno, err.pos + 1, err.reason);
            errors++;
            continue;
        }
        for (size_t i = 0; i < n; i++)
            if (strcmp(alert_rule_name(rules[i]), alert_rule_name(r)) == 0) {
                log_err("%s:%zu: rule '%s' is defined twice", path, lineno,
                        alert_rule_name(r));
                errors++;
                alert_rule_destroy(&r);
                break;
            }
        if (r == NULL)
            continue;
        if (n == ALERT_FILE_RULES_MAX) {
            log_err("%s:%zu: more than %d rules", path, lineno,
                    ALERT_FILE_RULES_MAX);
            errors++;
            alert_rule_destroy(&r);
            break;
        }
        if (n == alloc) {
            alloc = alloc ? alloc * 2 : 16;
            rules = xrealloc(rules, alloc * sizeof *rules);
        }
        rules[n++] = r;
    }
    if (ferror(fp)) {
        log_err("%s: read: %s", path, strerror(errno));
        errors++;
    }
    fclose(fp);
    free(line);
    if (errors) {
        log_err("%s: %d error%s, rules not loaded", path, errors,
                errors == 1 ? "" : "s");
        s_free(rules, n);
        return -1;
    }
    *rules_p = rules ? rules : xcalloc(1, sizeof *rules);
    *n_p = n;
    return 0;
}

void
alert_file_test(bool verbose)
{
    char dir[] = "/tmp/alert_file_test.XXXXXX", path[128];
    alert_rule_t **rules;
    size_t n;
    FILE *fp;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/alertd.rules", dir);
    fp = fopen(path, "w");
    assert(fp);
    fputs("# sensorpipe rules\n"
          "\n"
          "high_temp: temperature > 30 for 1m severity critical\n"
          "   # indented comment\n"
          "High Humidity : humidity{room=a} >= 80\r\n",
          fp);
    fclose(fp);
    assert(alert_file_load(path, &rules, &n) == 0);
    assert(n == 2);
    TEST_STREQ(alert_rule_name(rules[0]), "high_temp");
    TEST_STREQ(alert_rule_name(rules[1]), "High Humidity");
    s_free(rules, n);

    /* Every error is found; nothing is loaded. */
    fp = fopen(path, "w");
    assert(fp);
    fputs("a: temperature > 30\n"
          "b: temperature >\n"
          "a: humidity > 1\n"
          "no rule here\n",
          fp);
    fclose(fp);
    rules = NULL;
    if (!verbose)
        log_set_level(LOG_LVL_CRIT);
    assert(alert_file_load(path, &rules, &n) == -1);
    assert(rules == NULL);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert(alert_file_load(path, &rules, &n) == -1);
    log_set_level(LOG_LVL_INFO);

    /* An empty file is a valid, empty rule set. */
    snprintf(path, sizeof path, "%s/empty", dir);
    fp = fopen(path, "w");
    assert(fp);
    fclose(fp);
    assert(alert_file_load(path, &rules, &n) == 0 && n == 0);
    s_free(rules, n);
    unlink(path);
    snprintf(path, sizeof path, "%s/alertd.rules", dir);
    unlink(path);
    assert(rmdir(dir) == 0); /* the scratch directory is left empty */
    TEST_OK("alert_file");
}
