/*
 * bench/ingest/parse.c: CPU per point of ingestd's line-protocol parse
 * and the batch's encoding, as ingestd does them for each request
 * (ingest_parse_lp with a cache kept across bodies, msg_batch_encode),
 * on the bench's bodies, without the network, the spool or aggd
 * (docs/BENCHMARKS.md, eighth session).
 *
 *   make all && cc -O2 -I. -o /tmp/lpparse bench/ingest/parse.c \
 *       -Wl,--start-group build/libingestd.a build/libcommon.a \
 *       -Wl,--end-group -lczmq -lzmq -lmsgpackc -ljansson -lmosquitto \
 *       -lm -lpthread
 *   /tmp/lpparse [DIR] [BODIES] [ROUNDS]
 *
 * DIR holds the bench's bNNNNNN.lp bodies (default
 * /tmp/sp-bench/data-1000x10000/main, made by bench/run.sh), BODIES of
 * them (400: 2 M points) are read into memory and parsed ROUNDS times
 * (4); each round prints the CPU time (getrusage, user + system) per
 * point. The first round also fills the series cache. Build it against
 * two trees' libraries to compare them. Bounded: BODIES x ROUNDS parses.
 */
#include "ingestd/ingest_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static double
s_cpu(void)
{
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return (double)r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 +
           (double)r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6;
}

int
main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/sp-bench/data-1000x10000/main";
    int nb = argc > 2 ? atoi(argv[2]) : 400, rounds = argc > 3 ? atoi(argv[3]) : 4;
    char **body = calloc((size_t)(nb > 0 ? nb : 1), sizeof *body);
    size_t *len = calloc((size_t)(nb > 0 ? nb : 1), sizeof *len);
    ingest_lp_cache_t *cache = ingest_lp_cache_new();
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);

    for (int i = 0; i < nb; i++) {
        char path[4096];
        FILE *f;
        long n;
        snprintf(path, sizeof path, "%s/b%06d.lp", dir, i);
        if ((f = fopen(path, "rb")) == NULL || fseek(f, 0, SEEK_END) ||
            (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
            perror(path);
            return 1;
        }
        len[i] = (size_t)n;
        body[i] = malloc(len[i] ? len[i] : 1);
        if (fread(body[i], 1, len[i], f) != len[i]) {
            perror(path);
            return 1;
        }
        fclose(f);
    }
    for (int r = 0; r < rounds; r++) {
        double t0 = s_cpu();
        size_t points = 0;
        for (int i = 0; i < nb; i++) {
            struct ingest_report rep;
            char *data;
            size_t dlen;
            msg_batch_reset(b);
            ingest_parse_lp(cache, body[i], len[i], 1800000000000000000LL,
                            1000000000LL, NULL, b, &rep);
            points += rep.accepted;
            ingest_parse_report_clear(&rep);
            msg_batch_encode(b, &data, &dlen);
            free(data);
        }
        printf("round %d: %.1f ns CPU a point (%zu points)\n", r + 1,
               (s_cpu() - t0) * 1e9 / (double)(points ? points : 1), points);
    }
    for (int i = 0; i < nb; i++)
        free(body[i]);
    free(body);
    free(len);
    msg_batch_destroy(&b);
    ingest_lp_cache_destroy(&cache);
    return 0;
}
