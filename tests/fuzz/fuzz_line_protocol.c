/*
 * fuzz_line_protocol: InfluxDB line protocol on arbitrary bytes.
 */
#include "ingestd/ingest_parse.h"

#include <assert.h>
#include <math.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    struct ingest_report r;
    json_t *reply;

    ingest_parse(INGEST_FORM_WRITE, (const char *)data, size,
                 1700000000000000000LL, 1000000000LL, "acme", b, &r);
    assert(r.accepted == msg_batch_size(b));
    for (size_t i = 0; i < msg_batch_size(b); i++)
        assert(isfinite(msg_batch_reading(b, i)->value));
    ingest_parse_reply(INGEST_FORM_WRITE, &r, &reply);
    json_decref(reply);
    ingest_parse_report_clear(&r);
    msg_batch_destroy(&b);
    return 0;
}
