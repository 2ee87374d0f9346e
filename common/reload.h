/*
 * reload: SIGHUP reloads of a daemon's configuration, atomic in the
 * relayd way (STYLE.md 33): the file is parsed over a copy of the running
 * configuration, so the running one is untouched until the daemon swaps.
 * Settings marked CFG_IMMUTABLE keep their running value and a change to
 * one is logged "requires restart"; every live change is logged, so the
 * log says exactly what was reloaded.
 *
 *   struct aggd_conf *c = reload_conf(self->conf, sizeof *c);
 *   if (c == NULL)
 *       return;                        (errors logged; old config kept)
 *   ... validate, then apply the live fields and keep c ...
 *   reload_free(&old);
 */
#ifndef SP_RELOAD_H
#define SP_RELOAD_H

#include "common/cfg.h"

#include <stdbool.h>
#include <stddef.h>

/* Remember where the configuration came from (daemon_setup calls this):
 * the table, its size and the -f file (or NULL; borrowed, must outlive
 * the process's use of reload_conf). */
void reload_set_source(const struct cfg_opt *tab, size_t n, const char *path);
/* The configuration file in force, or NULL when there is none. */
const char *reload_path(void);

/* Reload the remembered file over a copy of cur (size bytes, the struct
 * the table describes). Returns the new configuration (caller frees it
 * with reload_free) or NULL, logged at err level, when there is no file or
 * it has errors; cur is never changed. */
void *reload_conf(const void *cur, size_t size);
/* The same with an explicit table and file. */
void *reload_conf_from(const struct cfg_opt *tab, size_t n, const void *cur,
                       size_t size, const char *path);
/* Free a configuration returned by reload_conf; NULL-safe, nulls *conf_p. */
void reload_free(void **conf_p);

/* Apply the "log-level" setting of conf (debug, info, warning, err,
 * crit) when tab has one and it is set. Returns 0 (applied, or no such
 * setting) or -1 for a name it does not know (nothing changed). */
int reload_log_level(const struct cfg_opt *tab, size_t n, const void *conf);

/* Selftest: asserts on failure, prints " * reload: OK". */
void reload_test(bool verbose);

#endif
