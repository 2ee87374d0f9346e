/*
 * fuzz_msg: msgpack frames between daemons (batches and rpc bodies).
 * Decoding hostile frames must never crash; what decodes must re-encode
 * and decode to the same batch.
 */
#include "common/mpjson.h"
#include "common/msg.h"

#include <assert.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    msg_batch_t *b = NULL, *b2 = NULL;
    json_t *j;

    if (msg_batch_decode(data, size, &b) == MSG_OK) {
        char *enc;
        size_t len;
        msg_batch_encode(b, &enc, &len);
        assert(msg_batch_decode(enc, len, &b2) == MSG_OK);
        assert(msg_batch_size(b2) == msg_batch_size(b));
        free(enc);
        msg_batch_destroy(&b2);
        msg_batch_destroy(&b);
    }
    assert(b == NULL);
    j = mpjson_unpack(data, size);
    if (j) {
        char *s = mpjson_dumps(j);
        free(s);
        json_decref(j);
    }
    return 0;
}
