/*
 * fuzz_line_protocol: InfluxDB line protocol on arbitrary bytes, parsed
 * without a cache and with one kept across inputs (as ingestd keeps it
 * across requests): both must give the same readings and refusals; and
 * with the quick reader of common lines off, with its own cache kept
 * across inputs: the same readings and refusals again, and the same
 * encoded batch as the cached parse with it on.
 */
#include "ingestd/ingest_parse.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    static ingest_lp_cache_t *cache, *cslow;
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_t *bc = msg_batch_new(MSG_TYPE_READINGS);
    msg_batch_t *bs = msg_batch_new(MSG_TYPE_READINGS);
    struct ingest_report r, rc, rs;
    json_t *reply;
    char *dc, *ds;
    size_t lc, ls;

    if (cache == NULL) {
        cache = ingest_lp_cache_new();
        cslow = ingest_lp_cache_new();
    }
    ingest_parse(INGEST_FORM_WRITE, (const char *)data, size,
                 1700000000000000000LL, 1000000000LL, "acme", b, &r);
    assert(r.accepted == msg_batch_size(b));
    for (size_t i = 0; i < msg_batch_size(b); i++)
        assert(isfinite(msg_batch_reading(b, i)->value));
    ingest_parse_lp(cache, (const char *)data, size, 1700000000000000000LL,
                    1000000000LL, "acme", bc, &rc);
    assert(rc.accepted == r.accepted && rc.rejected == r.rejected);
    assert(msg_batch_size(bc) == msg_batch_size(b));
    for (size_t i = 0; i < msg_batch_size(b); i++) {
        const struct msg_reading *x = msg_batch_reading(b, i),
                                 *y = msg_batch_reading(bc, i);
        assert(!strcmp(msg_batch_str(b, x->key_off),
                       msg_batch_str(bc, y->key_off)));
        assert(x->ts == y->ts && !memcmp(&x->value, &y->value, sizeof x->value));
    }
    ingest_lp_set_fast(false);
    ingest_parse_lp(cslow, (const char *)data, size, 1700000000000000000LL,
                    1000000000LL, "acme", bs, &rs);
    ingest_lp_set_fast(true);
    assert(rs.accepted == r.accepted && rs.rejected == r.rejected);
    assert((r.errors == NULL) == (rs.errors == NULL) &&
           (r.errors == NULL || json_equal(r.errors, rs.errors)));
    msg_batch_encode(bc, &dc, &lc);
    msg_batch_encode(bs, &ds, &ls);
    assert(lc == ls && memcmp(dc, ds, lc) == 0);
    free(dc);
    free(ds);
    ingest_parse_reply(INGEST_FORM_WRITE, &r, &reply);
    json_decref(reply);
    ingest_parse_report_clear(&r);
    ingest_parse_report_clear(&rc);
    ingest_parse_report_clear(&rs);
    msg_batch_destroy(&b);
    msg_batch_destroy(&bc);
    msg_batch_destroy(&bs);
    return 0;
}
