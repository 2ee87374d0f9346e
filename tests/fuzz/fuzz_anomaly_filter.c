/*
 * fuzz_anomaly_filter: anomalyd's filter (JSON lines and CSV on stdin) and
 * its anomalies/forecast queries on arbitrary bytes. Nothing may crash or
 * leak; every printed score must lie in [0,1].
 */
#include "anomalyd/anomaly_store.h"
#include "anomalyd/anomalyd.h"
#include "common/log.h"
#include "common/mpjson.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const char *methods[] = {"zscore", "ensemble"};
    log_init("fuzz", LOG_LVL_CRIT);
    for (int m = 0; m < 2; m++) {
        struct anomalyd_conf c = {0};
        c.rundir = "/nonexistent";
        c.in = c.query = c.pub = c.down = "";
        c.method = (char *)methods[m];
        c.format = m ? "csv" : "json";
        c.window = 20;
        c.threshold = 3;
        c.min_score = 0.5;
        c.keep = 8;
        c.hwm = 10;
        c.use_stdin = c.use_stdout = true;
        anomalyd_t *a = anomalyd_new(&c);
        assert(a);
        char *obuf = NULL;
        size_t olen = 0;
        FILE *in = fmemopen((void *)data, size ? size : 1, "r");
        FILE *out = open_memstream(&obuf, &olen);
        if (size == 0)
            fgetc(in); /* an empty stream */
        anomalyd_filter(a, in, out);
        fclose(in);
        fclose(out);
        free(obuf);
        anomalyd_destroy(&a);
    }
    /* The query parsers on the input as a JSON request. */
    json_t *req = json_loadb((const char *)data, size, 0, NULL);
    if (req && json_is_object(req)) {
        struct anomaly_conf ac;
        anomaly_conf_default(&ac);
        anomaly_store_t *st = anomaly_store_new(&ac, 4);
        struct anomaly_result r;
        for (int i = 0; i < 40; i++)
            anomaly_store_score(st, "t{a=b}",
                                1700000000000000000LL + i * 60000000000LL,
                                i == 39 ? 100 : 20 + (i % 3), &r);
        json_t *body = NULL;
        anomaly_store_query(st, req, &body);
        json_decref(body);
        body = NULL;
        anomaly_store_forecast(st, req, &body);
        json_decref(body);
        anomaly_store_destroy(&st);
    }
    json_decref(req);
    return 0;
}
