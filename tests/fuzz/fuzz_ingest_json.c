/*
 * fuzz_ingest_json: every JSON ingest form (ingest, record, JSON lines)
 * on arbitrary bytes. The parser must never crash, leak or accept a
 * reading that is not finite.
 */
#include "ingestd/ingest_parse.h"

#include <assert.h>
#include <math.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static const int forms[] = {INGEST_FORM_INGEST, INGEST_FORM_RECORD,
                                INGEST_FORM_LINES};
    for (size_t f = 0; f < 3; f++) {
        msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
        struct ingest_report r;
        json_t *reply;
        ingest_parse(forms[f], (const char *)data, size, 1700000000000000000LL,
                     1, "acme", b, &r);
        assert(r.accepted == msg_batch_size(b));
        for (size_t i = 0; i < msg_batch_size(b); i++)
            assert(isfinite(msg_batch_reading(b, i)->value));
        ingest_parse_reply(forms[f], &r, &reply);
        json_decref(reply);
        ingest_parse_report_clear(&r);
        msg_batch_destroy(&b);
    }
    return 0;
}
