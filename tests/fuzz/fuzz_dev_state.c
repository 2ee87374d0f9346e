/*
 * fuzz_dev_state: arbitrary event logs folded into a device state, and
 * arbitrary desired/reported documents into a shadow delta. Nothing may
 * crash or leak; a fold that succeeds yields a state whose version counts
 * the events applied, and replaying the accepted events gives the same
 * state.
 */
#include "apid/dev_shadow.h"
#include "apid/dev_state.h"
#include "common/log.h"

#include <assert.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    json_t *in = json_loadb((const char *)data, size, 0, NULL), *ev;
    json_t *st = NULL, *again = NULL, *ok = json_array();
    const char *why;
    size_t i;
    int64_t n = 0;

    log_init("fuzz", LOG_LVL_CRIT);
    json_array_foreach(in, i, ev) {
        const char *kind = json_string_value(json_object_get(ev, "type"));
        json_t *d = json_object_get(ev, "data");
        if (kind && dev_state_apply(&st, kind, d, (int64_t)i * 1000, &why) == 0) {
            n += strcmp(kind, DEV_EV_HEARTBEAT) != 0; /* no new version */
            json_array_append(ok, ev);
            json_object_set_new(ev, "ts", json_integer((json_int_t)i * 1000));
        }
    }
    if (st)
        assert(json_integer_value(json_object_get(st, "version")) == n);
    json_array_foreach(ok, i, ev)
        assert(dev_state_apply(&again, json_string_value(json_object_get(ev, "type")),
                               json_object_get(ev, "data"),
                               json_integer_value(json_object_get(ev, "ts")), &why) == 0);
    assert((st == NULL && again == NULL) || json_equal(st, again));
    if (json_is_object(in)) {
        json_t *delta = dev_shadow_delta(json_object_get(in, "desired"),
                                         json_object_get(in, "reported"));
        json_decref(delta);
    }
    json_decref(again);
    json_decref(st);
    json_decref(ok);
    json_decref(in);
    return 0;
}
