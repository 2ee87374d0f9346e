/*
 * dev_jobs: batch jobs over devices (POST /api/devices/batch), kept in
 * the registry's SQLite file: a job names an operation and its params,
 * and holds one row per target device that moves queued -> in_progress ->
 * succeeded | failed, or timed_out at the job's deadline, or cancelled,
 * or removed when the device is decommissioned (dev_store's schema 6
 * trigger, in the transaction of the event: no entry outlives the
 * registration it was made for). The job is in_progress until no device
 * is queued or in progress, then completed (or cancelled). Calls are
 * short statements on apid's loop.
 */
#ifndef SP_DEV_JOBS_H
#define SP_DEV_JOBS_H

#include "apid/dev_store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct dev_jobs dev_jobs_t;

/* Prepare the statements on store's file. NULL (logged) on failure. */
dev_jobs_t *dev_jobs_new(dev_store_t *store);
void dev_jobs_destroy(dev_jobs_t **self_p);

/* Create a job over devices (array of ids), all queued, in one
 * transaction. Returns the new job id (caller frees) or NULL. */
char *dev_jobs_create(dev_jobs_t *self, const char *tenant, const char *operation,
                      json_t *params, json_t *filter, json_t *devices,
                      int64_t now, int64_t deadline);
/* A device's report on a job: status in_progress, succeeded or failed
 * (anything else, or NULL, changes nothing), progress 0..100 or -1 when
 * the report has none, message or NULL. A succeeded device is at 100;
 * without a progress or a message the row keeps the one it had (a last
 * "succeeded" showed 0 %, and a "failed" without words lost the reason
 * an earlier report gave). Returns 1 when it changed the device's row,
 * 0 when the job, device or transition does not exist (late, unknown,
 * or finished), with the reason in why (when not NULL), and counted as
 * the job's ignoredReports when the job is one of tenant's; -1 on error.
 * On 1 *job_p (when not NULL) gets {operation, params} (caller owns). */
int dev_jobs_report(dev_jobs_t *self, const char *tenant, const char *job,
                    const char *device, const char *status, int progress,
                    const char *message, int64_t now, json_t **job_p, char *why,
                    size_t whylen);
/* The job with counts per state, ignoredReports, and its devices (those
 * in state when not NULL); NULL when unknown in this tenant. Caller owns. */
json_t *dev_jobs_get(dev_jobs_t *self, const char *tenant, const char *job,
                     const char *state);
/* Jobs of a tenant, newest first, without their devices. Caller owns. */
json_t *dev_jobs_list(dev_jobs_t *self, const char *tenant);
/* Cancel: queued and in-progress devices become cancelled. Returns the
 * ids of the devices cancelled (caller owns), or NULL when unknown. */
json_t *dev_jobs_cancel(dev_jobs_t *self, const char *tenant, const char *job,
                        int64_t now);
/* Ids of the jobs under way in which device of tenant has an entry
 * queued or in progress (caller owns). */
json_t *dev_jobs_open_of(dev_jobs_t *self, const char *tenant, const char *device);
/* Time out what is past its deadline and complete finished jobs.
 * Returns the number of device rows timed out. */
int dev_jobs_expire(dev_jobs_t *self, int64_t now);

/* Selftest. */
void dev_jobs_test(bool verbose);

#endif
