/*
 * ingest_quota: ingestd's per-tenant limits on ingest rate and on the
 * number of series, with per-tenant values from the quota file
 * (common/quota.h) over --tenant-rate and --tenant-series.
 *
 * Both are checked on a whole request (HTTP) or message (MQTT) before
 * anything of it is spooled or acknowledged, so a writer learns of the
 * refusal in the answer (MQTT: on its errors topic).
 *
 * Series: ingestd keeps the set of series keys it has accepted per
 * tenant that has a series limit, in memory and appended to
 * <spool>/series.quota (one "tenant<TAB>key" line per new series; read
 * back at start, so a restart does not forget). A batch that would take
 * its tenant past the limit with keys not in the set is refused whole;
 * writes to series already there always pass. This is ingestd's view,
 * not aggd's: a series deleted through the API or dropped by retention
 * still counts (prune the file and restart to free it), and with
 * several ingestd processes each counts what it has seen, so a tenant
 * whose writers reach K processes may create up to K times its limit.
 * Lanes do not matter: one ingestd sees every lane's series.
 */
#ifndef SP_INGEST_QUOTA_H
#define SP_INGEST_QUOTA_H

#include "common/msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ingest_quota ingest_quota_t;

/* Why a batch was refused. */
struct ingest_quota_refusal {
    int status;          /* 403 series, 429 rate, 413 more than the burst */
    const char *where;   /* "series" or "rate" */
    char message[256];   /* for the writer (names the limit) */
    int retry_after;     /* seconds, for 429/413 */
};

/* Limits from file ("" = none) over rate (readings/s) and series (keys)
 * for every tenant; state is the series file ("" = memory only). NULL
 * with err when the quota file or the state cannot be read. */
ingest_quota_t *ingest_quota_new(const char *file, double rate, int64_t series,
                                 const char *state, char *err, size_t errlen);
/* NULL-safe. */
void ingest_quota_destroy(ingest_quota_t **self_p);
/* New command-line values (SIGHUP). */
void ingest_quota_set(ingest_quota_t *self, double rate, int64_t series);
/* Does any tenant have a limit (else the checks can be skipped)? */
bool ingest_quota_on(ingest_quota_t *self);
/* Count batch b of tenant at monotonic now_ns: 0 when it may pass (its
 * new series are then recorded and its readings taken from the rate),
 * else -1 with *r filled and nothing counted. */
int ingest_quota_take(ingest_quota_t *self, const char *tenant, const msg_batch_t *b,
                      int64_t now_ns, struct ingest_quota_refusal *r);
/* Series recorded for tenant (those with a series limit only). */
size_t ingest_quota_series(const ingest_quota_t *self, const char *tenant);

/* Selftest. */
void ingest_quota_test(bool verbose);

#endif
