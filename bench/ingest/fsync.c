/*
 * bench/ingest/fsync.c: what an fdatasync of the spool costs on this
 * disk (docs/BENCHMARKS.md, seventh session).
 *
 *   cc -O2 -pthread -o /tmp/fsync bench/ingest/fsync.c
 *   /tmp/fsync DIR [bytes] [count]      (DIR on the disk to measure)
 *
 * 1. append vs overwrite: count writes of bytes, each followed by
 *    fdatasync, alternating between a file that grows (the spool today:
 *    each fsync also writes the inode and the block allocation) and one
 *    whose blocks were written and synced before (a pre-written
 *    segment: data only). Wall time per fdatasync (p10/p50/p90) and CPU
 *    per write + fdatasync.
 * 2. two writers, each write + fdatasync on its own open file of one
 *    file (ingest_spool_pipeline(2)), against the same with the
 *    fdatasyncs one at a time: fsyncs a second and the mean wait.
 * Bounded: count (default 400) per part; the files are removed.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double
now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static double
cpu_ms(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (r.ru_stime.tv_sec + r.ru_utime.tv_sec) * 1e3 +
           (r.ru_stime.tv_usec + r.ru_utime.tv_usec) / 1e3;
}

static int
cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static size_t chunk = 128000;
static int count = 400;
static char path2[1024];
static int serial;
static double wait_ms[2];
static pthread_mutex_t wmu = PTHREAD_MUTEX_INITIALIZER, smu = PTHREAD_MUTEX_INITIALIZER;

static void *
writer(void *arg)
{
    long id = (long)arg;
    int fd = open(path2, O_WRONLY | O_APPEND);
    char *b = malloc(chunk);
    double sum = 0;

    memset(b, 'y', chunk);
    for (int i = 0; i < count / 2; i++) {
        pthread_mutex_lock(&wmu);
        if (write(fd, b, chunk) != (ssize_t)chunk)
            abort();
        pthread_mutex_unlock(&wmu);
        double t = now_ms();
        if (serial)
            pthread_mutex_lock(&smu);
        fdatasync(fd);
        if (serial)
            pthread_mutex_unlock(&smu);
        sum += now_ms() - t;
        usleep(300); /* the next request's parse */
    }
    wait_ms[id] = sum / (count / 2);
    free(b);
    close(fd);
    return NULL;
}

int
main(int argc, char **argv)
{
    char pa[1024], po[1024];

    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [bytes] [count]\n", argv[0]);
        return 2;
    }
    if (argc > 2)
        chunk = strtoul(argv[2], NULL, 10);
    if (argc > 3)
        count = atoi(argv[3]);
    if (chunk == 0 || count < 2 || count > 100000)
        return 2;
    snprintf(pa, sizeof pa, "%s/fsync-bench.append", argv[1]);
    snprintf(po, sizeof po, "%s/fsync-bench.overwrite", argv[1]);
    snprintf(path2, sizeof path2, "%s/fsync-bench.two", argv[1]);

    int fa = open(pa, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    int fo = open(po, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    char *buf = calloc(1, chunk > (1 << 20) ? chunk : (1 << 20));
    if (fa == -1 || fo == -1 || buf == NULL)
        return 1;
    for (size_t done = 0; done < chunk * (size_t)count + chunk; done += 1 << 20)
        if (write(fo, buf, 1 << 20) != 1 << 20)
            return 1;
    fdatasync(fo);
    lseek(fo, 0, SEEK_SET);
    memset(buf, 'x', chunk);
    double *ta = malloc(count * sizeof *ta), *to = malloc(count * sizeof *to);
    double ca = 0, co = 0;
    for (int i = 0; i < count; i++)
        for (int k = 0; k < 2; k++) {
            int app = (i + k) & 1, fd = app ? fa : fo;
            double c0 = cpu_ms();
            if (write(fd, buf, chunk) != (ssize_t)chunk)
                return 1;
            double t0 = now_ms();
            fdatasync(fd);
            double d = now_ms() - t0, c = cpu_ms() - c0;
            if (app) {
                ta[i] = d;
                ca += c;
            } else {
                to[i] = d;
                co += c;
            }
        }
    qsort(ta, count, sizeof *ta, cmp);
    qsort(to, count, sizeof *to, cmp);
    printf("append    fdatasync p10 %.3f p50 %.3f p90 %.3f ms, cpu %.3f ms a write+sync\n",
           ta[count / 10], ta[count / 2], ta[count * 9 / 10], ca / count);
    printf("overwrite fdatasync p10 %.3f p50 %.3f p90 %.3f ms, cpu %.3f ms a write+sync\n",
           to[count / 10], to[count / 2], to[count * 9 / 10], co / count);
    close(fa);
    close(fo);
    unlink(pa);
    unlink(po);
    free(ta);
    free(to);
    free(buf);

    for (serial = 0; serial < 2; serial++) {
        int fd = open(path2, O_CREAT | O_TRUNC | O_WRONLY, 0600);
        pthread_t t[2];
        if (fd == -1)
            return 1;
        close(fd);
        double t0 = now_ms();
        for (long i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, writer, (void *)i);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        printf("two writers, fdatasyncs %s: %.0f a second, mean wait %.3f ms\n",
               serial ? "one at a time" : "concurrent  ",
               (count / 2 * 2) / ((now_ms() - t0) / 1e3), (wait_ms[0] + wait_ms[1]) / 2);
        unlink(path2);
    }
    return 0;
}
