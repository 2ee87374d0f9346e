/*
 * fuzz_mqtt_payload: an MQTT telemetry payload (JSON, a JSON array or
 * msgpack) on arbitrary bytes. The parser must never crash or leak, must
 * either refuse the payload with a reason or account for every reading,
 * and must never accept a reading that is not finite.
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

    ingest_parse_mqtt("acme", "sensor-1", data, size, 1700000000000000000LL, b, &r);
    assert(r.accepted == msg_batch_size(b));
    assert(r.fatal_field == NULL || (r.fatal_reason && *r.fatal_reason));
    for (size_t i = 0; i < msg_batch_size(b); i++)
        assert(isfinite(msg_batch_reading(b, i)->value));
    ingest_parse_report_clear(&r);
    msg_batch_destroy(&b);
    return 0;
}
