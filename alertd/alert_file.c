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

void
alert_file_free(struct alert_file *f)
{
    for (size_t i = 0; i < f->nrules; i++)
        alert_rule_destroy(&f->rules[i]);
    for (size_t i = 0; i < f->nchannels; i++)
        alert_channel_destroy(&f->channels[i]);
    free(f->rules);
    free(f->channels);
    memset(f, 0, sizeof *f);
}

alert_channel_t *
alert_file_channel(const struct alert_file *f, const char *name)
{
    for (size_t i = 0; i < f->nchannels; i++)
        if (f->channels[i] && !strcmp(alert_channel_name(f->channels[i]), name))
            return f->channels[i];
    return NULL;
}

static void
s_push(void ***arr, size_t *n, void *item)
{
    /* Grow by doubling: the count is a power of two when full. */
    if ((*n & (*n - 1)) == 0)
        *arr = xrealloc(*arr, (*n ? *n * 2 : 1) * sizeof **arr);
    (*arr)[(*n)++] = item;
}

/* A channel declaration starts with the word "channel". */
static bool
s_is_channel(const char *p)
{
    return strncmp(p, "channel", 7) == 0 && isspace((unsigned char)p[7]);
}

int
alert_file_load(const char *path, struct alert_file *out)
{
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    struct alert_file f = {0};
    size_t *rule_line = NULL, nlines = 0;
    int errors = 0;

    memset(out, 0, sizeof *out);
    if (fp == NULL) {
        log_err("%s: %s", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) != -1) {
        struct alert_rule_error err;
        const char *p = line;

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
        if (f.nrules + f.nchannels == ALERT_FILE_RULES_MAX) {
            log_err("%s:%zu: more than %d rules and channels", path, lineno,
                    ALERT_FILE_RULES_MAX);
            errors++;
            break;
        }
        if (s_is_channel(p)) {
            const char *decl = p + 8;
            alert_channel_t *c = alert_channel_parse(decl, &err);
            if (c == NULL) {
                log_err("%s:%zu:%zu: %s", path, lineno,
                        (size_t)(decl - line) + err.pos + 1, err.reason);
                errors++;
            } else if (alert_file_channel(&f, alert_channel_name(c))) {
                log_err("%s:%zu: channel '%s' is declared twice", path,
                        lineno, alert_channel_name(c));
                errors++;
                alert_channel_destroy(&c);
            } else {
                s_push((void ***)&f.channels, &f.nchannels, c);
            }
            continue;
        }
        alert_rule_t *r = alert_rule_parse_line(line, &err);
        if (r == NULL) {
            log_err("%s:%zu:%zu: %s", path, lineno, err.pos + 1, err.reason);
            errors++;
            continue;
        }
        for (size_t i = 0; i < f.nrules; i++)
            if (strcmp(alert_rule_name(f.rules[i]), alert_rule_name(r)) == 0) {
                log_err("%s:%zu: rule '%s' is defined twice", path, lineno,
                        alert_rule_name(r));
                errors++;
                alert_rule_destroy(&r);
                break;
            }
        if (r == NULL)
            continue;
        s_push((void ***)&f.rules, &f.nrules, r);
        rule_line = xrealloc(rule_line, ++nlines * sizeof *rule_line);
        rule_line[nlines - 1] = lineno;
    }
    if (ferror(fp)) {
        log_err("%s: read: %s", path, strerror(errno));
        errors++;
    }
    fclose(fp);
    free(line);
    /* Channels may be declared after the rules that use them. */
    for (size_t i = 0; i < f.nrules; i++) {
        const char *ch;
        for (size_t k = 0; (ch = alert_rule_notify(f.rules[i], k)); k++)
            if (!alert_file_channel(&f, ch)) {
                log_err("%s:%zu: rule '%s' notifies undeclared channel '%s'",
                        path, rule_line[i], alert_rule_name(f.rules[i]), ch);
                errors++;
            }
        const char *inh = alert_rule_inhibitor(f.rules[i]);
        bool known = false;
        for (size_t k = 0; inh && k < f.nrules; k++)
            known |= strcmp(alert_rule_name(f.rules[k]), inh) == 0;
        if (inh && (!known || strcmp(inh, alert_rule_name(f.rules[i])) == 0)) {
            log_err("%s:%zu: rule '%s' is inhibited by %s rule '%s'", path,
                    rule_line[i], alert_rule_name(f.rules[i]),
                    known ? "itself, not another" : "an undefined", inh);
            errors++;
        }
        if ((ch = alert_rule_escalate(f.rules[i], NULL)) &&
            !alert_file_channel(&f, ch)) {
            log_err("%s:%zu: rule '%s' escalates to undeclared channel '%s'",
                    path, rule_line[i], alert_rule_name(f.rules[i]), ch);
            errors++;
        }
    }
    free(rule_line);
    if (errors) {
        log_err("%s: %d error%s, rules not loaded", path, errors,
                errors == 1 ? "" : "s");
        alert_file_free(&f);
        return -1;
    }
    *out = f;
    return 0;
}

void
alert_file_test(bool verbose)
{
    char dir[] = "/tmp/alert_file_test.XXXXXX", path[128];
    struct alert_file f;
    FILE *fp;

    assert(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/alertd.rules", dir);
    fp = fopen(path, "w");
    assert(fp);
    fputs("# sensorpipe rules\n"
          "\n"
          "high_temp: temperature > 30 for 1m severity critical notify ops\n"
          "   # indented comment\n"
          "High Humidity : humidity{room=a} >= 80\r\n"
          "channel ops: webhook http://127.0.0.1:9/hook\n",
          fp);
    fclose(fp);
    assert(alert_file_load(path, &f) == 0);
    assert(f.nrules == 2 && f.nchannels == 1);
    TEST_STREQ(alert_rule_name(f.rules[0]), "high_temp");
    TEST_STREQ(alert_rule_name(f.rules[1]), "High Humidity");
    assert(alert_file_channel(&f, "ops"));
    assert(!alert_file_channel(&f, "pager"));
    alert_file_free(&f);
    alert_file_free(&f);

    /* Every error is found; nothing is loaded. */
    fp = fopen(path, "w");
    assert(fp);
    fputs("a: temperature > 30\n"
          "b: temperature >\n"
          "a: humidity > 1\n"
          "no rule here\n"
          "c: x > 1 notify nobody\n"
          "d: x > 1 inhibited by nosuchrule\n"
          "channel ops: fax 123\n"
          "channel dup: mqtt\n"
          "channel dup: mqtt\n",
          fp);
    fclose(fp);
    if (!verbose)
        log_set_level(LOG_LVL_CRIT);
    assert(alert_file_load(path, &f) == -1);
    assert(f.rules == NULL && f.nrules == 0);
    snprintf(path, sizeof path, "%s/missing", dir);
    assert(alert_file_load(path, &f) == -1);
    log_set_level(LOG_LVL_INFO);

    /* An empty file is a valid, empty rule set. */
    snprintf(path, sizeof path, "%s/empty", dir);
    fp = fopen(path, "w");
    assert(fp);
    fclose(fp);
    assert(alert_file_load(path, &f) == 0 && f.nrules == 0);
    alert_file_free(&f);
    unlink(path);
    snprintf(path, sizeof path, "%s/alertd.rules", dir);
    unlink(path);
    assert(rmdir(dir) == 0); /* the scratch directory is left empty */
    TEST_OK("alert_file");
}
