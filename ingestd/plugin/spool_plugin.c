/*
 * spool_plugin: a mosquitto 2.0 plugin that appends every PUBLISH on
 * devices/+/telemetry and tenants/+/devices/+/telemetry to a spool file before the broker acknowledges it
 * (MOSQ_EVT_MESSAGE runs before the PUBACK). ingestd reads the files
 * (ingest_mqspool.c). Kept tiny on purpose: the broker's single thread is
 * the MQTT ceiling.
 *
 *   plugin /usr/local/lib/sensorpipe/sensorpipe_spool.so
 *   plugin_opt_spool_dir /var/lib/sensorpipe/mqspool
 *   plugin_opt_sync tick          # tick (default), always or none
 *   plugin_opt_segment_size 16777216
 *
 * A message too big for a record (MQSPOOL_RECORD_MAX, 16 MiB of topic and
 * payload) is refused, not acknowledged: the broker drops the device's
 * connection, and the plugin publishes payload_too_large on the device's
 * errors topic.
 *
 * sync=tick: a thread of the plugin fdatasyncs every SYNC_TICK_MS (100
 * ms) while there are new records, so a power loss can lose what was
 * acknowledged in the last 100 ms or so; a crash of any process loses
 * nothing. sync=always: fdatasync before every PUBACK (nothing lost on
 * power loss, at a throughput cost).
 *
 * Why a thread: mosquitto 2.0 calls MOSQ_EVT_TICK on every turn of its
 * loop, not on a timer. Syncing there meant an fdatasync after nearly
 * every batch of messages, each one stopping the broker's only thread
 * (every client's PUBACK) for as long as the disk took. The thread syncs
 * a dup() of the file descriptor, so the broker may close or roll the
 * file meanwhile; it never touches the broker's data. A roll (every
 * segment_size bytes) hands the old file's last fdatasync and the
 * directory fsync for the new file to the thread as well.
 */
#include "ingestd/mqspool.h"
#include "common/crc.h"
#include "common/topic.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

int mosquitto_plugin_version(int n, const int *versions);
int mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **ud,
                          struct mosquitto_opt *opts, int n);
int mosquitto_plugin_cleanup(void *ud, struct mosquitto_opt *opts, int n);

enum s_sync { SYNC_NONE, SYNC_TICK, SYNC_ALWAYS };

#define SYNC_TICK_MS 100

struct s_plugin {
    mosquitto_plugin_id_t *id; /* broker's handle */
    char dir[512];             /* spool directory */
    int fd;                    /* current file, or -1 */
    uint64_t seg;              /* its number */
    size_t size;               /* its bytes */
    size_t segment_max;        /* roll threshold */
    int sync;                  /* enum s_sync */
    bool dirty;                /* syncer told in this turn of the loop */
    unsigned long long records, failures;
    unsigned long long too_big;  /* messages refused as too big */
    pthread_t syncer;          /* sync=tick: the thread that fdatasyncs */
    bool syncer_running;       /* it was started */
    pthread_mutex_t mu;        /* guards the fields below */
    pthread_cond_t wake;       /* signalled at cleanup */
    int sync_fd;               /* dup of the file to sync next, or -1 */
    bool sync_dirty;           /* records written since the thread's sync */
    int retire_fd;             /* a rolled file to sync and close, or -1 */
    bool dir_dirty;            /* a new file's entry to make durable */
    bool stop;                 /* cleanup asks the thread to end */
};

static struct s_plugin s_p;

/* Make the spool directory's entries durable. */
static void
s_sync_dir(const struct s_plugin *p)
{
    int dfd = open(p->dir, O_RDONLY | O_DIRECTORY);
    if (dfd != -1) {
        fsync(dfd);
        close(dfd);
    }
}

/* Roll to the next file. With the sync thread, the old file's last
 * fdatasync and the directory's fsync for the new entry are its work on
 * its next tick, not the broker's (they took the broker's only thread
 * for as long as the disk did, every 16 MiB); without it they run here. */
static int
s_open_next(struct s_plugin *p)
{
    char path[640];
    int late = -1; /* a rolled file the thread has not taken yet */

    if (p->fd != -1 && p->syncer_running) {
        pthread_mutex_lock(&p->mu);
        late = p->retire_fd;
        p->retire_fd = p->fd;
        pthread_mutex_unlock(&p->mu);
        if (late != -1) { /* two rolls within a tick: sync that one here */
            fdatasync(late);
            close(late);
        }
    } else if (p->fd != -1) {
        fdatasync(p->fd);
        close(p->fd);
    }
    p->fd = -1;
    p->seg++;
    snprintf(path, sizeof path, "%s/" MQSPOOL_PREFIX "%016" PRIu64 MQSPOOL_SUFFIX,
             p->dir, p->seg);
    p->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    p->size = 0;
    if (p->fd == -1) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sensorpipe spool: cannot create %s: %s",
                             path, strerror(errno));
        return -1;
    }
    if (p->syncer_running) {
        int nfd = dup(p->fd), old;
        pthread_mutex_lock(&p->mu);
        old = p->sync_fd;
        p->sync_fd = nfd;
        p->dir_dirty = true;
        pthread_mutex_unlock(&p->mu);
        if (old != -1)
            close(old);
    } else {
        s_sync_dir(p);
    }
    return 0;
}

/* sync=tick: every SYNC_TICK_MS, fdatasync the current file if records
 * were written since the last time. Runs until cleanup. */
static void *
s_syncer(void *arg)
{
    struct s_plugin *p = arg;
    struct timespec at;

    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        clock_gettime(CLOCK_REALTIME, &at);
        at.tv_nsec += SYNC_TICK_MS * 1000000L;
        if (at.tv_nsec >= 1000000000L) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->wake, &p->mu, &at);
        if (p->retire_fd != -1 || p->dir_dirty) {
            int fd = p->retire_fd;
            bool dir = p->dir_dirty;
            p->retire_fd = -1;
            p->dir_dirty = false;
            pthread_mutex_unlock(&p->mu);
            if (fd != -1) {
                fdatasync(fd);
                close(fd);
            }
            if (dir)
                s_sync_dir(p);
            pthread_mutex_lock(&p->mu);
        }
        if (p->sync_dirty && p->sync_fd != -1) {
            int fd = dup(p->sync_fd);
            p->sync_dirty = false;
            pthread_mutex_unlock(&p->mu);
            if (fd != -1) {
                fdatasync(fd);
                close(fd);
            }
            pthread_mutex_lock(&p->mu);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void
s_put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

/* A telemetry message too big for a spool record: refused, not
 * acknowledged (the broker drops the device's connection), and said so on
 * the device's errors topic and in the broker's log. Acknowledging it
 * would lose it without a word. */
static int
s_too_big(struct s_plugin *p, const struct mosquitto_evt_message *m, size_t len)
{
    char topic[600], body[200];
    size_t tl = strlen(m->topic), cut = tl - strlen("telemetry");

    p->too_big++;
    if (cut < sizeof topic - sizeof "errors") {
        memcpy(topic, m->topic, cut);
        memcpy(topic + cut, "errors", sizeof "errors");
        snprintf(body, sizeof body,
                 "{\"error\":{\"code\":\"payload_too_large\",\"message\":"
                 "\"a telemetry message holds at most %u bytes of topic and "
                 "payload; this one has %zu\",\"where\":\"payload\"}}",
                 MQSPOOL_RECORD_MAX, len);
        mosquitto_broker_publish_copy(NULL, topic, (int)strlen(body), body, 0,
                                      false, NULL);
    }
    if (p->too_big % 1000 == 1)
        mosquitto_log_printf(MOSQ_LOG_WARNING,
                             "sensorpipe spool: refused a %zu-byte message on %s "
                             "(limit %u; %llu so far)", len, m->topic,
                             MQSPOOL_RECORD_MAX, p->too_big);
    return MOSQ_ERR_PAYLOAD_SIZE;
}

static int
s_on_message(int event, void *event_data, void *ud)
{
    struct s_plugin *p = ud;
    struct mosquitto_evt_message *m = event_data;
    unsigned char hdr[MQSPOOL_HDR];
    size_t tl, len;
    struct iovec iov[3];
    struct timespec ts;
    int64_t ms;
    uint32_t crc;
    ssize_t n;

    if (m->topic == NULL || !topic_is_telemetry(m->topic))
        return MOSQ_ERR_SUCCESS;
    tl = strlen(m->topic);
    len = tl + m->payloadlen;
    if (len > MQSPOOL_RECORD_MAX || tl > 0xffff)
        return s_too_big(p, m, len);
    if (p->fd == -1 || p->size + MQSPOOL_HDR + len > p->segment_max)
        if (s_open_next(p) == -1)
            goto fail;
    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    crc = crc_32c(crc_32c(0, m->topic, tl), m->payload, m->payloadlen);
    s_put32(hdr, MQSPOOL_MAGIC);
    s_put32(hdr + 4, (uint32_t)len);
    hdr[8] = (unsigned char)tl;
    hdr[9] = (unsigned char)(tl >> 8);
    hdr[10] = m->qos;
    hdr[11] = 0;
    s_put32(hdr + 12, crc);
    memcpy(hdr + 16, &ms, sizeof ms);
    iov[0].iov_base = hdr;
    iov[0].iov_len = MQSPOOL_HDR;
    iov[1].iov_base = m->topic;
    iov[1].iov_len = tl;
    iov[2].iov_base = m->payload;
    iov[2].iov_len = m->payloadlen;
    n = writev(p->fd, iov, m->payloadlen ? 3 : 2);
    if (n != (ssize_t)(MQSPOOL_HDR + len)) {
        if (n > 0 && ftruncate(p->fd, (off_t)p->size) == -1)
            close(p->fd), p->fd = -1;
        goto fail;
    }
    p->size += (size_t)n;
    p->records++;
    if (p->sync == SYNC_ALWAYS && fdatasync(p->fd) == -1)
        goto fail;
    if (p->syncer_running && !p->dirty) {
        /* Once per tick of the broker's loop, not per message. */
        pthread_mutex_lock(&p->mu);
        p->sync_dirty = true;
        pthread_mutex_unlock(&p->mu);
    }
    p->dirty = true;
    return MOSQ_ERR_SUCCESS;
fail:
    /* Not stored, so not acknowledged: the broker drops the message and
     * the device, seeing no PUBACK, sends it again. */
    if (p->failures++ % 1000 == 0)
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "sensorpipe spool: cannot store a message (%s); "
                             "refusing it (%llu so far)", strerror(errno),
                             p->failures);
    return MOSQ_ERR_NOMEM;
}

/* The broker's loop turned: the next message marks the syncer's work
 * again (one lock per turn instead of one per message). */
static int
s_on_tick(int event, void *event_data, void *ud)
{
    struct s_plugin *p = ud;
    p->dirty = false;
    return MOSQ_ERR_SUCCESS;
}

int
mosquitto_plugin_version(int n, const int *versions)
{
    for (int i = 0; i < n; i++)
        if (versions[i] == 5)
            return 5;
    return -1;
}

int
mosquitto_plugin_init(mosquitto_plugin_id_t *id, void **ud,
                      struct mosquitto_opt *opts, int n)
{
    struct s_plugin *p = &s_p;
    DIR *d;
    struct dirent *e;

    memset(p, 0, sizeof *p);
    p->id = id;
    p->fd = -1;
    p->sync_fd = -1;
    p->retire_fd = -1;
    p->sync = SYNC_TICK;
    p->segment_max = 16u << 20;
    for (int i = 0; i < n; i++) {
        if (!strcmp(opts[i].key, "spool_dir"))
            snprintf(p->dir, sizeof p->dir, "%s", opts[i].value);
        else if (!strcmp(opts[i].key, "sync"))
            p->sync = !strcmp(opts[i].value, "always") ? SYNC_ALWAYS
                      : !strcmp(opts[i].value, "none") ? SYNC_NONE
                                                       : SYNC_TICK;
        else if (!strcmp(opts[i].key, "segment_size"))
            p->segment_max = strtoull(opts[i].value, NULL, 10);
    }
    if (p->dir[0] == '\0') {
        mosquitto_log_printf(MOSQ_LOG_ERR,
                             "sensorpipe spool: plugin_opt_spool_dir is required");
        return MOSQ_ERR_INVAL;
    }
    if (p->segment_max < 4096)
        p->segment_max = 4096;
    mkdir(p->dir, 0755);
    /* Continue numbering after the newest file; never append to a file a
     * crash may have cut short. */
    if ((d = opendir(p->dir)) == NULL) {
        mosquitto_log_printf(MOSQ_LOG_ERR, "sensorpipe spool: cannot open %s: %s",
                             p->dir, strerror(errno));
        return MOSQ_ERR_INVAL;
    }
    while ((e = readdir(d))) {
        unsigned long long s;
        if (sscanf(e->d_name, MQSPOOL_PREFIX "%llu", &s) == 1 && s > p->seg)
            p->seg = s;
    }
    closedir(d);
    if (p->sync == SYNC_TICK) {
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->wake, NULL);
        if (pthread_create(&p->syncer, NULL, s_syncer, p) != 0) {
            mosquitto_log_printf(MOSQ_LOG_ERR,
                                 "sensorpipe spool: cannot start the sync thread");
            return MOSQ_ERR_NOMEM;
        }
        p->syncer_running = true;
    }
    *ud = p;
    mosquitto_callback_register(id, MOSQ_EVT_MESSAGE, s_on_message, NULL, p);
    mosquitto_callback_register(id, MOSQ_EVT_TICK, s_on_tick, NULL, p);
    mosquitto_log_printf(MOSQ_LOG_INFO, "sensorpipe spool: writing to %s (sync=%s)",
                         p->dir, p->sync == SYNC_ALWAYS ? "always"
                                 : p->sync == SYNC_NONE ? "none" : "tick");
    return MOSQ_ERR_SUCCESS;
}

int
mosquitto_plugin_cleanup(void *ud, struct mosquitto_opt *opts, int n)
{
    struct s_plugin *p = ud;
    mosquitto_callback_unregister(p->id, MOSQ_EVT_MESSAGE, s_on_message, NULL);
    mosquitto_callback_unregister(p->id, MOSQ_EVT_TICK, s_on_tick, NULL);
    if (p->syncer_running) {
        pthread_mutex_lock(&p->mu);
        p->stop = true;
        pthread_cond_signal(&p->wake);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->syncer, NULL);
        p->syncer_running = false;
        if (p->sync_fd != -1)
            close(p->sync_fd);
        p->sync_fd = -1;
        if (p->retire_fd != -1) {
            fdatasync(p->retire_fd);
            close(p->retire_fd);
        }
        p->retire_fd = -1;
        if (p->dir_dirty)
            s_sync_dir(p);
    }
    if (p->fd != -1) {
        fdatasync(p->fd);
        close(p->fd);
        p->fd = -1;
    }
    return MOSQ_ERR_SUCCESS;
}
