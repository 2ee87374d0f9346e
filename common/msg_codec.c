/*
 * msg_codec: batches to and from msgpack (msg_batch_encode,
 * msg_batch_decode, msg_sane of msg.h); the batch itself is msg.c.
 */
#include "common/msg.h"
#include "common/clock.h"
#include "common/keytab.h"
#include "common/le.h"
#include "common/msg_int.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <math.h>
#include <msgpack.h>
#include <string.h>

/* Largest batch a decoder accepts, so a hostile frame cannot make us
 * allocate without bound. */
#define MSG_ITEMS_MAX (1u << 22)
/* A reading in a "points" field: series index (u32), ts (i64), value
 * (f64), little-endian. */
#define MSG_POINT_BYTES 20

static void
s_pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* The readings as one bin of MSG_POINT_BYTES each, written in place at
 * the end of sb: no per-reading msgpack calls. */
static void
s_pack_points(const msg_batch_t *self, msgpack_sbuffer *sb,
              msgpack_packer *pk)
{
    size_t bytes = self->n * MSG_POINT_BYTES;
    unsigned char *p;

    msgpack_pack_bin(pk, bytes);
    if (sb->alloc - sb->size < bytes) {
        sb->alloc = sb->size + bytes;
        sb->data = xrealloc(sb->data, sb->alloc);
    }
    p = (unsigned char *)sb->data + sb->size;
    for (size_t i = 0; i < self->n; i++, p += MSG_POINT_BYTES) {
        const struct msg_reading *r = msg_batch_reading(self, i);
        le_put(p, r->series, 4);
        le_put(p + 4, (uint64_t)r->ts, 8);
        le_put_double(p + 12, r->value);
    }
    sb->size += bytes;
}

void
msg_batch_encode(const msg_batch_t *self, char **data, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    const struct msg_envelope *e = &self->env;

    msgpack_sbuffer_init(&sb);
    /* Size the buffer once: the strings plus about 24 bytes an item. */
    sb.alloc = self->alen + self->n * 24 + 256;
    sb.data = xmalloc(sb.alloc);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bool acked = e->type == MSG_TYPE_READINGS && e->has_acked;
    bool comp = e->type == MSG_TYPE_READINGS && e->companion;
    msgpack_pack_map(&pk, (e->type == MSG_TYPE_READINGS ? 8 : 7) + acked + comp);
    s_pack_str(&pk, "type");
    msgpack_pack_int(&pk, e->type);
    s_pack_str(&pk, "v");
    msgpack_pack_int(&pk, e->version);
    s_pack_str(&pk, "producer");
    s_pack_str(&pk, e->producer);
    s_pack_str(&pk, "lane");
    msgpack_pack_uint32(&pk, e->lane);
    s_pack_str(&pk, "seq");
    msgpack_pack_uint64(&pk, e->seq);
    s_pack_str(&pk, "ts");
    msgpack_pack_int64(&pk, e->ts);
    if (acked) {
        s_pack_str(&pk, "acked");
        msgpack_pack_uint64(&pk, e->acked);
    }
    if (comp) {
        s_pack_str(&pk, "companion");
        msgpack_pack_true(&pk);
    }
    if (e->type == MSG_TYPE_READINGS) {
        /* The series table: items name a series by its index. */
        size_t ns = msg_batch_nseries(self);
        s_pack_str(&pk, "keys");
        msgpack_pack_array(&pk, ns);
        for (uint32_t i = 0; i < ns; i++) {
            size_t kl = keytab_len(self->series, i);
            msgpack_pack_str(&pk, kl);
            msgpack_pack_str_body(&pk, keytab_str(self->series, i), kl);
        }
    }
    if (e->type == MSG_TYPE_READINGS) {
        s_pack_str(&pk, "points");
        s_pack_points(self, &sb, &pk);
        goto done;
    }
    s_pack_str(&pk, "items");
    msgpack_pack_array(&pk, self->n);
    for (size_t i = 0; i < self->n; i++) {
        if (e->type == MSG_TYPE_ANOMALIES) {
            const struct msg_anomaly *a = msg_batch_anomaly(self, i);
            msgpack_pack_array(&pk, 7);
            s_pack_str(&pk, msg_batch_str(self, a->key_off));
            msgpack_pack_int64(&pk, a->ts);
            msgpack_pack_double(&pk, a->value);
            msgpack_pack_double(&pk, a->stat);
            msgpack_pack_double(&pk, a->score);
            s_pack_str(&pk, msg_batch_str(self, a->method_off));
            if (a->alarm)
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
        } else if (e->type == MSG_TYPE_ALERTS) {
            const struct msg_alert *a = msg_batch_alert(self, i);
            msgpack_pack_array(&pk, 6);
            s_pack_str(&pk, msg_batch_str(self, a->rule_off));
            s_pack_str(&pk, msg_batch_str(self, a->key_off));
            s_pack_str(&pk, msg_batch_str(self, a->state_off));
            s_pack_str(&pk, msg_batch_str(self, a->severity_off));
            msgpack_pack_int64(&pk, a->ts);
            msgpack_pack_double(&pk, a->value);
        } else if (e->type == MSG_TYPE_CONFIRM) {
            const struct msg_confirm *c = msg_batch_confirm(self, i);
            msgpack_pack_array(&pk, 3);
            s_pack_str(&pk, msg_batch_str(self, c->producer_off));
            msgpack_pack_uint32(&pk, c->lane);
            msgpack_pack_uint64(&pk, c->seq);
        } else if (e->type == MSG_TYPE_FORECASTS) {
            const struct msg_forecast *f = msg_batch_forecast(self, i);
            const double *arr[3] = {f->value, f->lower, f->upper};
            msgpack_pack_array(&pk, 6);
            s_pack_str(&pk, msg_batch_str(self, f->key_off));
            msgpack_pack_int64(&pk, f->ts);
            msgpack_pack_int64(&pk, f->step);
            for (int a = 0; a < 3; a++) {
                msgpack_pack_array(&pk, f->n);
                for (uint32_t j = 0; j < f->n; j++)
                    msgpack_pack_double(&pk, arr[a][j]);
            }
        } else {
            msgpack_pack_nil(&pk);
        }
    }
done:
    *data = sb.data; /* ownership passes to the caller */
    *len = sb.size;
}

static bool
s_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (o->via.u64 > INT64_MAX)
            return false;
        *v = (int64_t)o->via.u64;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return true;
    }
    return false;
}

static bool
s_num(const msgpack_object *o, double *v)
{
    int64_t i;
    if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32) {
        *v = o->via.f64;
        return true;
    }
    if (s_int(o, &i)) {
        *v = (double)i;
        return true;
    }
    return false;
}

static bool
s_strobj(const msgpack_object *o, const char **s, size_t *n)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return false;
    *s = o->via.str.ptr;
    *n = o->via.str.size;
    /* Strings travel NUL-terminated in the arena; an embedded NUL would
     * truncate them silently, so refuse it. */
    return *n == 0 || memchr(*s, 0, *n) == NULL;
}

static bool
s_keyis(const msgpack_object *k, const char *name)
{
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* A timestamp a batch may carry (schema.h MSG_TS_MAX). */
static bool
s_ts_ok(int64_t ts)
{
    return ts >= 0 && ts <= MSG_TS_MAX;
}

/* A forecast item: [key, ts, step, [value...], [lower...], [upper...]],
 * the three arrays of one length in [2, MSG_FORECAST_POINTS], finite. */
static int
s_decode_forecast(msg_batch_t *b, const msgpack_object *it)
{
    const msgpack_object *f = it->via.array.ptr;
    const char *key;
    size_t kl;
    int64_t ts, step;
    double v[3][MSG_FORECAST_POINTS];
    uint32_t n;

    if (it->via.array.size < 6 || !s_strobj(&f[0], &key, &kl) ||
        !s_int(&f[1], &ts) || !s_int(&f[2], &step))
        return MSG_ETYPE;
    for (int a = 0; a < 3; a++)
        if (f[3 + a].type != MSGPACK_OBJECT_ARRAY)
            return MSG_ETYPE;
    n = f[3].via.array.size;
    if (kl == 0 || step <= 0 || n < 2 || n > MSG_FORECAST_POINTS ||
        f[4].via.array.size != n || f[5].via.array.size != n ||
        !s_ts_ok(ts) || step > (MSG_TS_MAX - ts) / (int64_t)(n - 1))
        return MSG_EFIELD;
    for (int a = 0; a < 3; a++)
        for (uint32_t j = 0; j < n; j++) {
            if (!s_num(&f[3 + a].via.array.ptr[j], &v[a][j]))
                return MSG_ETYPE;
            if (!isfinite(v[a][j]))
                return MSG_EFIELD;
        }
    uint32_t k = msg__str(b, key, kl);
    struct msg_forecast *fc = msg__item(b);
    fc->key_off = k;
    fc->ts = ts;
    fc->step = step;
    fc->n = n;
    memcpy(fc->value, v[0], n * sizeof v[0][0]);
    memcpy(fc->lower, v[1], n * sizeof v[1][0]);
    memcpy(fc->upper, v[2], n * sizeof v[2][0]);
    return MSG_OK;
}

/* A readings item names its series by an index into the batch's "keys"
 * (wire[] maps it to ours; NULL: it is ours) or, as version 1 producers
 * before the series table did, by the key itself. */
static int
s_decode_item(msg_batch_t *b, const msgpack_object *it, const uint32_t *wire,
              size_t nwire)
{
    const msgpack_object *f;
    const char *s[4];
    size_t sl[4];
    int64_t ts;
    double d[3];

    if (it->type != MSGPACK_OBJECT_ARRAY)
        return MSG_ETYPE;
    f = it->via.array.ptr;
    switch (b->env.type) {
    case MSG_TYPE_READINGS: {
        uint32_t series;
        if (it->via.array.size < 3 || !s_int(&f[1], &ts) || !s_num(&f[2], &d[0]))
            return MSG_ETYPE;
        if (f[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            if (f[0].via.u64 >= nwire)
                return MSG_EFIELD;
            series = wire ? wire[f[0].via.u64] : (uint32_t)f[0].via.u64;
        } else if (s_strobj(&f[0], &s[0], &sl[0])) {
            if (sl[0] == 0)
                return MSG_EFIELD;
            series = msg_batch_series_add(b, s[0], sl[0]);
        } else {
            return MSG_ETYPE;
        }
        if (!isfinite(d[0]) || !s_ts_ok(ts))
            return MSG_EFIELD;
        msg_batch_add_point(b, series, ts, d[0]);
        return MSG_OK;
    }
    case MSG_TYPE_ANOMALIES:
        /* The 7th element, the novelty alarm, is optional: producers
         * before it send 6. */
        if (it->via.array.size < 6 || !s_strobj(&f[0], &s[0], &sl[0]) ||
            !s_int(&f[1], &ts) || !s_num(&f[2], &d[0]) ||
            !s_num(&f[3], &d[1]) || !s_num(&f[4], &d[2]) ||
            !s_strobj(&f[5], &s[1], &sl[1]) ||
            (it->via.array.size > 6 && f[6].type != MSGPACK_OBJECT_BOOLEAN))
            return MSG_ETYPE;
        if (!s_ts_ok(ts))
            return MSG_EFIELD;
        {
            uint32_t k = msg__str(b, s[0], sl[0]);
            uint32_t m = msg__str(b, s[1], sl[1]);
            struct msg_anomaly *a = msg__item(b);
            a->key_off = k;
            a->ts = ts;
            a->value = d[0];
            a->stat = d[1];
            a->score = d[2];
            a->method_off = m;
            a->alarm = it->via.array.size > 6 && f[6].via.boolean;
        }
        return MSG_OK;
    case MSG_TYPE_ALERTS:
        if (it->via.array.size < 6)
            return MSG_ETYPE;
        for (int i = 0; i < 4; i++)
            if (!s_strobj(&f[i], &s[i], &sl[i]))
                return MSG_ETYPE;
        if (!s_int(&f[4], &ts) || !s_num(&f[5], &d[0]))
            return MSG_ETYPE;
        if (!s_ts_ok(ts))
            return MSG_EFIELD;
        {
            uint32_t o[4];
            for (int i = 0; i < 4; i++)
                o[i] = msg__str(b, s[i], sl[i]);
            struct msg_alert *a = msg__item(b);
            a->rule_off = o[0];
            a->key_off = o[1];
            a->state_off = o[2];
            a->severity_off = o[3];
            a->ts = ts;
            a->value = d[0];
        }
        return MSG_OK;
    case MSG_TYPE_CONFIRM:
        if (it->via.array.size < 3 || !s_strobj(&f[0], &s[0], &sl[0]) ||
            !s_int(&f[1], &ts) || ts < 0 || ts > UINT32_MAX ||
            f[2].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return MSG_ETYPE;
        {
            uint32_t po = msg__str(b, s[0], sl[0]);
            struct msg_confirm *c = msg__item(b);
            c->producer_off = po;
            c->lane = (uint32_t)ts;
            c->seq = f[2].via.u64;
        }
        return MSG_OK;
    case MSG_TYPE_FORECASTS:
        return s_decode_forecast(b, it);
    default:
        return MSG_OK; /* items of types without a body are ignored */
    }
}

/* The "points" bin of a version 2 readings batch: every series index
 * within the "keys" table (wire[] maps it to ours, NULL: the same
 * index), every value finite. Written straight into the items (room was
 * reserved): this loop runs for every reading aggd takes. */
static int
s_decode_points(msg_batch_t *b, const msgpack_object *points,
                const uint32_t *wire, size_t nwire)
{
    const unsigned char *p = (const unsigned char *)points->via.bin.ptr;
    size_t n = points->via.bin.size / MSG_POINT_BYTES;
    struct msg_reading *r;

    if (n == 0) /* items may still be NULL: no arithmetic on it */
        return MSG_OK;
    r = (struct msg_reading *)b->items + b->n;
    assert(b->n + n <= b->cap);
    for (size_t i = 0; i < n; i++, p += MSG_POINT_BYTES, r++) {
        uint32_t series = (uint32_t)le_get(p, 4);
        double v = le_get_double(p + 12);
        uint64_t ts = le_get(p + 4, 8);
        if (series >= nwire || !isfinite(v) || ts > (uint64_t)MSG_TS_MAX)
            return MSG_EFIELD;
        series = wire ? wire[series] : series;
        r->key_off = b->series_off[series];
        r->series = series;
        r->ts = (int64_t)ts;
        r->value = v;
    }
    b->n += n;
    return MSG_OK;
}

static uint64_t
s_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

bool
msg_sane(const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    uint64_t stack[64]; /* items still expected at each open level */
    int depth = 0;
    uint64_t todo = 1;

    while (todo > 0 || depth > 0) {
        if (todo == 0) {
            todo = stack[--depth];
            continue;
        }
        if (p >= end)
            return false;
        unsigned c = *p++;
        uint64_t skip = 0, items = 0;
        int hdr = 0;
        todo--;
        if (c <= 0x7f || c >= 0xe0 || (c >= 0xc0 && c <= 0xc3))
            continue;
        if (c >= 0xa0 && c <= 0xbf)
            skip = c & 0x1f;
        else if (c >= 0x90 && c <= 0x9f)
            items = c & 0x0f;
        else if (c >= 0x80 && c <= 0x8f)
            items = 2 * (uint64_t)(c & 0x0f);
        else
            switch (c) {
            case 0xcc: case 0xd0: skip = 1; break;
            case 0xcd: case 0xd1: skip = 2; break;
            case 0xca: case 0xce: case 0xd2: skip = 4; break;
            case 0xcb: case 0xcf: case 0xd3: skip = 8; break;
            case 0xd4: skip = 2; break;
            case 0xd5: skip = 3; break;
            case 0xd6: skip = 5; break;
            case 0xd7: skip = 9; break;
            case 0xd8: skip = 17; break;
            case 0xc4: case 0xd9: hdr = 1; break;
            case 0xc5: case 0xda: hdr = 2; break;
            case 0xc6: case 0xdb: hdr = 4; break;
            case 0xc7: hdr = 1; skip = 1; break;
            case 0xc8: hdr = 2; skip = 1; break;
            case 0xc9: hdr = 4; skip = 1; break;
            case 0xdc: case 0xde: hdr = -2; break;
            case 0xdd: case 0xdf: hdr = -4; break;
            default: return false;
            }
        if (hdr) {
            int n = hdr < 0 ? -hdr : hdr;
            if ((size_t)(end - p) < (size_t)n)
                return false;
            uint64_t v = s_be(p, n);
            p += n;
            if (hdr > 0)
                skip += v;
            else
                items = (c == 0xde || c == 0xdf) ? 2 * v : v;
        }
        if (skip > (uint64_t)(end - p))
            return false;
        p += skip;
        if (items) {
            /* Every item needs at least one byte. */
            if (items > (uint64_t)(end - p) || depth == 64)
                return false;
            stack[depth++] = todo;
            todo = items;
        }
    }
    return true;
}

/* Does b's series table hold exactly the strings of keys, in order?
 * Then the frame's indexes are b's own and the table can stay. */
static bool
s_same_keys(const msg_batch_t *b, const msgpack_object *keys)
{
    size_t n = keys->via.array.size;

    if (b->series == NULL || keytab_size(b->series) != n)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *k = &keys->via.array.ptr[i];
        if (k->type != MSGPACK_OBJECT_STR ||
            k->via.str.size != keytab_len(b->series, i) ||
            memcmp(k->via.str.ptr, keytab_str(b->series, i), k->via.str.size))
            return false;
    }
    return true;
}

int
msg_batch_decode(const void *data, size_t len, msg_batch_t **out)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_NONE);
    int err = msg_batch_decode_into(b, data, len);

    if (err != MSG_OK)
        msg_batch_destroy(&b);
    *out = b;
    return err;
}

int
msg_batch_decode_into(msg_batch_t *b, const void *data, size_t len)
{
    msgpack_unpacked up;
    msgpack_unpack_return ret;
    size_t off = 0;
    int err = MSG_OK, was = b->env.type;
    const msgpack_object *items = NULL, *keys = NULL, *points = NULL;
    uint32_t *wire = NULL;
    size_t nwire;
    int64_t v;

    b->n = 0;
    memset(&b->env, 0, sizeof b->env);
    b->env.type = MSG_TYPE_NONE;
    b->env.version = -1;
    if (!msg_sane(data, len)) {
        msg_batch_reset(b);
        b->cap = 0;
        return MSG_ETRUNC;
    }
    msgpack_unpacked_init(&up);
    ret = msgpack_unpack_next(&up, data, len, &off);
    if (ret != MSGPACK_UNPACK_SUCCESS) {
        err = MSG_ETRUNC;
        goto done;
    }
    if (up.data.type != MSGPACK_OBJECT_MAP) {
        err = MSG_ETYPE;
        goto done;
    }
    for (uint32_t i = 0; i < up.data.via.map.size; i++) {
        const msgpack_object *k = &up.data.via.map.ptr[i].key;
        const msgpack_object *val = &up.data.via.map.ptr[i].val;
        if (s_keyis(k, "type")) {
            if (!s_int(val, &v) || v <= MSG_TYPE_NONE || v >= MSG_TYPE_MAX) {
                err = MSG_ETYPE;
                goto done;
            }
            b->env.type = (int)v;
        } else if (s_keyis(k, "v")) {
            if (!s_int(val, &v)) {
                err = MSG_ETYPE;
                goto done;
            }
            b->env.version = (int)(v > 1000 ? 1000 : v);
        } else if (s_keyis(k, "producer")) {
            const char *s;
            size_t n;
            if (!s_strobj(val, &s, &n)) {
                err = MSG_ETYPE;
                goto done;
            }
            if (n >= sizeof b->env.producer)
                n = sizeof b->env.producer - 1;
            if (n > 0)
                memcpy(b->env.producer, s, n);
            b->env.producer[n] = '\0';
        } else if (s_keyis(k, "lane")) {
            if (!s_int(val, &v) || v < 0 || v > UINT32_MAX) {
                err = MSG_EFIELD;
                goto done;
            }
            b->env.lane = (uint32_t)v;
        } else if (s_keyis(k, "seq")) {
            if (val->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                err = MSG_EFIELD;
                goto done;
            }
            b->env.seq = val->via.u64;
        } else if (s_keyis(k, "acked")) {
            if (val->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
                err = MSG_EFIELD;
                goto done;
            }
            b->env.acked = val->via.u64;
            b->env.has_acked = true;
        } else if (s_keyis(k, "companion")) {
            if (val->type != MSGPACK_OBJECT_BOOLEAN) {
                err = MSG_EFIELD;
                goto done;
            }
            b->env.companion = val->via.boolean;
        } else if (s_keyis(k, "ts")) {
            if (!s_int(val, &b->env.ts)) {
                err = MSG_ETYPE;
                goto done;
            }
        } else if (s_keyis(k, "items")) {
            if (val->type != MSGPACK_OBJECT_ARRAY ||
                val->via.array.size > MSG_ITEMS_MAX) {
                err = MSG_ETYPE;
                goto done;
            }
            items = val;
        } else if (s_keyis(k, "points")) {
            if (val->type != MSGPACK_OBJECT_BIN ||
                val->via.bin.size % MSG_POINT_BYTES != 0 ||
                val->via.bin.size / MSG_POINT_BYTES > MSG_ITEMS_MAX) {
                err = MSG_ETYPE;
                goto done;
            }
            points = val;
        } else if (s_keyis(k, "keys")) {
            if (val->type != MSGPACK_OBJECT_ARRAY ||
                val->via.array.size > MSG_ITEMS_MAX) {
                err = MSG_ETYPE;
                goto done;
            }
            keys = val;
        }
    }
    if (b->env.type == MSG_TYPE_NONE) {
        err = MSG_EFIELD;
        goto done;
    }
    if (b->env.version < MSG_VERSION_MIN || b->env.version > MSG_VERSION) {
        err = MSG_EVERSION;
        goto done;
    }
    b->env.version = MSG_VERSION; /* re-encoded in this version's form */
    if (points && (items || b->env.type != MSG_TYPE_READINGS)) {
        err = MSG_EFIELD;
        goto done;
    }
    if (b->env.type != was)
        b->cap = 0; /* counted in items of the old type */
    nwire = keys ? keys->via.array.size : 0;
    /* The table b holds stays when the frame names the same series, and
     * the frame's indexes are then its own (wire NULL); otherwise it is
     * built again, wire[] mapping the frame's indexes to it. */
    if (!keys || b->env.type != MSG_TYPE_READINGS || !s_same_keys(b, keys))
        msg_batch_reset(b);
    if (items || points) /* strings take fewer bytes than the frame holds */
        msg_batch_reserve(b, items ? items->via.array.size
                                   : points->via.bin.size / MSG_POINT_BYTES,
                          len);
    if (keys && b->env.type == MSG_TYPE_READINGS && msg_batch_nseries(b) == 0) {
        wire = xmalloc((nwire + 1) * sizeof *wire);
        for (uint32_t i = 0; i < nwire; i++) {
            const char *s;
            size_t n;
            if (!s_strobj(&keys->via.array.ptr[i], &s, &n) || n == 0) {
                err = MSG_EFIELD;
                goto done;
            }
            wire[i] = msg_batch_series_add(b, s, n);
        }
    }
    if (b->env.type != MSG_TYPE_READINGS)
        nwire = 0;
    for (uint32_t i = 0; items && i < items->via.array.size; i++) {
        err = s_decode_item(b, &items->via.array.ptr[i], wire, nwire);
        if (err != MSG_OK)
            goto done;
    }
    if (points)
        err = s_decode_points(b, points, wire, nwire);
done:
    free(wire);
    msgpack_unpacked_destroy(&up);
    if (err != MSG_OK) {
        msg_batch_reset(b);
        b->cap = 0; /* the type may change before the next decode */
    }
    return err;
}

/* Test helper: start a hand-made batch of type with nitems items and no
 * series table (the caller packs the items). */
static void
s_test_head(msgpack_packer *pk, int type, uint32_t nitems)
{
    msgpack_pack_map(pk, 3);
    s_pack_str(pk, "type");
    msgpack_pack_int(pk, type);
    s_pack_str(pk, "v");
    msgpack_pack_int(pk, MSG_VERSION_MIN);
    s_pack_str(pk, "items");
    msgpack_pack_array(pk, nitems);
}

/* Test helper: one point's 20 bytes as the "points" bin holds them. */
static void
s_test_point(unsigned char *pt, uint32_t series, int64_t ts, double v)
{
    le_put(pt, series, 4);
    le_put(pt + 4, (uint64_t)ts, 8);
    le_put_double(pt + 12, v);
}

/* Test helper: a readings batch's map up to the body of its "points" bin
 * of len bytes, with version v and the n keys in table order. */
static void
s_test_keyed(msgpack_packer *pk, int v, const char *const *keys, size_t n,
            size_t len)
{
    msgpack_pack_map(pk, 4);
    s_pack_str(pk, "type");
    msgpack_pack_int(pk, MSG_TYPE_READINGS);
    s_pack_str(pk, "v");
    msgpack_pack_int(pk, v);
    s_pack_str(pk, "keys");
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++)
        s_pack_str(pk, keys[i]);
    s_pack_str(pk, "points");
    msgpack_pack_bin(pk, len);
}

/* Test helper: decode a version 2 readings batch with keys {"a"} and a
 * "points" bin of len bytes holding one reading (series, ts, value). */
static int
s_test_points(size_t len, uint32_t series, int64_t ts, double v,
              msg_batch_t **out)
{
    static const char *const a[] = {"a"};
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char pt[MSG_POINT_BYTES + 1] = {0};
    int rc;

    s_test_point(pt, series, ts, v);
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    s_test_keyed(&pk, 2, a, 1, len);
    msgpack_pack_bin_body(&pk, pt, len);
    rc = msg_batch_decode(sb.data, sb.size, out);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

/* Test helper: encode a readings batch of the keys (n of them, in
 * table order; a repeated key is sent twice, as a hostile or old producer
 * might) with one point per key at ts i, value i + base. */
static void
s_test_frame(const char *const *keys, size_t n, double base, char **data,
             size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    unsigned char pt[MSG_POINT_BYTES];

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    s_test_keyed(&pk, MSG_VERSION, keys, n, n * MSG_POINT_BYTES);
    for (size_t i = 0; i < n; i++) {
        s_test_point(pt, (uint32_t)i, (int64_t)i, (double)i + base);
        msgpack_pack_bin_body(&pk, pt, sizeof pt);
    }
    *data = sb.data;
    *len = sb.size;
}

/* Test helper: decode the frame of keys both into the reused batch d and
 * into a fresh one; both must say the same, reading for reading. */
static void
s_test_into(msg_batch_t *d, const char *const *keys, size_t n, double base,
            size_t nseries)
{
    char *data;
    size_t len;
    msg_batch_t *f = NULL;

    s_test_frame(keys, n, base, &data, &len);
    assert(msg_batch_decode_into(d, data, len) == MSG_OK);
    assert(msg_batch_decode(data, len, &f) == MSG_OK);
    assert(msg_batch_size(d) == n && msg_batch_size(f) == n);
    assert(msg_batch_nseries(d) == nseries && msg_batch_nseries(f) == nseries);
    for (size_t i = 0; i < n; i++) {
        const struct msg_reading *r = &msg_batch_readings(d)[i];
        TEST_STREQ(msg_batch_str(d, r->key_off), keys[i]);
        TEST_STREQ(msg_batch_series_key(d, r->series), keys[i]);
        assert(r->series == msg_batch_reading(f, i)->series);
        assert(r->ts == (int64_t)i && r->value == (double)i + base);
    }
    msg_batch_destroy(&f);
    free(data);
}

/* msg_batch_decode_into: one batch decoded into again and again, as aggd
 * does, keeps its series table while the keys stay the same and builds
 * it anew when they change (order, count, a duplicate), after an error
 * and after a batch of another type. */
static void
s_test_decode_into(void)
{
    const char *ab[] = {"a", "b{k=v}"}, *ba[] = {"b{k=v}", "a"},
               *abc[] = {"a", "b{k=v}", "c"}, *aa[] = {"a", "a"};
    msg_batch_t *d = msg_batch_new(MSG_TYPE_NONE), *x;
    char *data;
    size_t len;

    s_test_into(d, ab, 2, 0, 2);
    s_test_into(d, ab, 2, 10, 2); /* the same table: kept */
    s_test_into(d, ba, 2, 20, 2);
    s_test_into(d, abc, 3, 30, 3);
    s_test_into(d, ab, 2, 40, 2);
    s_test_into(d, aa, 2, 50, 1); /* two indexes, one series */
    s_test_into(d, aa, 1, 60, 1);
    s_test_frame(ab, 2, 0, &data, &len);
    assert(msg_batch_decode_into(d, data, len - 1) == MSG_ETRUNC);
    assert(msg_batch_size(d) == 0 && msg_batch_nseries(d) == 0);
    free(data);
    s_test_into(d, ab, 2, 70, 2);
    x = msg_batch_new(MSG_TYPE_ALERTS);
    msg_batch_add_alert(x, "hot", "temperature", "firing", "warning", 1, 31);
    msg_batch_encode(x, &data, &len);
    assert(msg_batch_decode_into(d, data, len) == MSG_OK);
    assert(msg_batch_type(d) == MSG_TYPE_ALERTS && msg_batch_size(d) == 1);
    assert(msg_batch_nseries(d) == 0 && msg_batch_readings(d) == NULL);
    TEST_STREQ(msg_batch_str(d, msg_batch_alert(d, 0)->rule_off), "hot");
    free(data);
    msg_batch_destroy(&x);
    s_test_into(d, abc, 3, 80, 3);
    msg_batch_destroy(&d);
}

void
msg_codec_test(bool verbose)
{
    msg_batch_t *b = msg_batch_new(MSG_TYPE_READINGS), *d = NULL;
    char *data;
    size_t len;

    snprintf(msg_batch_env(b)->producer, 64, "ingestd.0");
    msg_batch_env(b)->seq = 7;
    msg_batch_env(b)->lane = 2;
    msg_batch_env(b)->ts = clock_now_ns();
    for (int i = 0; i < 1000; i++)
        msg_batch_add_reading(b, i % 2 ? "temperature{device=s1}" : "x", i,
                              i * 0.5);
    msg_batch_encode(b, &data, &len);
    assert(msg_batch_decode(data, len, &d) == MSG_OK);
    assert(msg_batch_size(d) == 1000);
    assert(msg_batch_env(d)->seq == 7 && msg_batch_env(d)->lane == 2);
    assert(!msg_batch_env(d)->has_acked && msg_batch_env(d)->acked == 0);
    TEST_STREQ(msg_batch_env(d)->producer, "ingestd.0");
    {
        /* The producer's confirmed seq rides along when it is set. */
        char *a;
        size_t alen;
        msg_batch_t *x = NULL;
        msg_batch_env(b)->acked = 5;
        msg_batch_env(b)->has_acked = true;
        msg_batch_encode(b, &a, &alen);
        assert(msg_batch_decode(a, alen, &x) == MSG_OK);
        assert(msg_batch_env(x)->has_acked && msg_batch_env(x)->acked == 5 &&
               msg_batch_env(x)->seq == 7 && msg_batch_size(x) == 1000);
        /* decode_into forgets it for a batch without. */
        assert(msg_batch_decode_into(x, data, len) == MSG_OK &&
               !msg_batch_env(x)->has_acked);
        msg_batch_destroy(&x);
        free(a);
        msg_batch_env(b)->has_acked = false;
        /* So does the companion mark of a readings batch. */
        msg_batch_env(b)->companion = true;
        msg_batch_encode(b, &a, &alen);
        assert(msg_batch_decode(a, alen, &x) == MSG_OK &&
               msg_batch_env(x)->companion && !msg_batch_env(x)->has_acked);
        assert(msg_batch_decode_into(x, data, len) == MSG_OK &&
               !msg_batch_env(x)->companion);
        msg_batch_destroy(&x);
        free(a);
        msg_batch_env(b)->companion = false;
    }
    const struct msg_reading *r = msg_batch_reading(d, 999);
    TEST_STREQ(msg_batch_str(d, r->key_off), "temperature{device=s1}");
    assert(r->ts == 999 && r->value == 499.5);
    assert(msg_batch_anomaly(d, 0) == NULL);
    msg_batch_destroy(&d);
    /* Every truncation of a valid frame is refused, never crashes. */
    for (size_t cut = 0; cut < len; cut += 1 + cut / 8) {
        assert(msg_batch_decode(data, cut, &d) != MSG_OK);
        assert(d == NULL);
    }
    free(data);
    msg_batch_destroy(&b);

    /* The form without a series table ([key, ts, value] items) still
     * decodes: WALs and spools written before it hold it. An index past
     * the table is refused. */
    {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        s_test_head(&pk, MSG_TYPE_READINGS, 2);
        for (int i = 0; i < 2; i++) {
            msgpack_pack_array(&pk, 3);
            s_pack_str(&pk, "old{k=v}");
            msgpack_pack_int64(&pk, i);
            msgpack_pack_double(&pk, 1.5);
        }
        assert(msg_batch_decode(sb.data, sb.size, &d) == MSG_OK);
        assert(msg_batch_size(d) == 2 && msg_batch_nseries(d) == 1);
        TEST_STREQ(msg_batch_str(d, msg_batch_reading(d, 1)->key_off), "old{k=v}");
        msg_batch_destroy(&d);
        msgpack_sbuffer_clear(&sb);
        msgpack_pack_map(&pk, 4);
        s_pack_str(&pk, "type");
        msgpack_pack_int(&pk, MSG_TYPE_READINGS);
        s_pack_str(&pk, "v");
        msgpack_pack_int(&pk, MSG_VERSION_MIN);
        s_pack_str(&pk, "keys");
        msgpack_pack_array(&pk, 1);
        s_pack_str(&pk, "a");
        s_pack_str(&pk, "items");
        msgpack_pack_array(&pk, 1);
        msgpack_pack_array(&pk, 3);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_int64(&pk, 1);
        msgpack_pack_double(&pk, 1.5);
        assert(msg_batch_decode(sb.data, sb.size, &d) == MSG_EFIELD);
        assert(d == NULL);
        msgpack_sbuffer_destroy(&sb);
    }
    /* Version 2 "points": exact round trip of the largest ts; an index
     * past the table, a NaN, a ts before the epoch or past MSG_TS_MAX
     * (aggd's day arithmetic overflowed on INT64_MAX) or a bin not of
     * whole readings is refused. */
    assert(s_test_points(MSG_POINT_BYTES, 0, MSG_TS_MAX, 22.25, &d) == MSG_OK);
    assert(msg_batch_size(d) == 1 && msg_batch_reading(d, 0)->ts == MSG_TS_MAX);
    assert(msg_batch_reading(d, 0)->value == 22.25);
    TEST_STREQ(msg_batch_series_key(d, msg_batch_reading(d, 0)->series), "a");
    msg_batch_destroy(&d);
    assert(s_test_points(MSG_POINT_BYTES, 1, 1, 1.0, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES, 0, 1, NAN, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES, 0, -1, 1.0, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES, 0, INT64_MIN, 1.0, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES, 0, MSG_TS_MAX + 1, 1.0, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES, 0, INT64_MAX, 1.0, &d) == MSG_EFIELD);
    assert(s_test_points(MSG_POINT_BYTES + 1, 0, 1, 1.0, &d) == MSG_ETYPE);
    assert(s_test_points(MSG_POINT_BYTES - 1, 0, 1, 1.0, &d) == MSG_ETYPE);
    assert(s_test_points(0, 0, 1, 1.0, &d) == MSG_OK && msg_batch_size(d) == 0);
    msg_batch_destroy(&d);
    s_test_decode_into();

    b = msg_batch_new(MSG_TYPE_ANOMALIES);
    msg_batch_add_anomaly(b, "k", 5, 100, 7.5, 0.99, "zscore", false);
    msg_batch_add_anomaly(b, "k", 6, 90, 0, 0.3, "ensemble", true);
    msg_batch_encode(b, &data, &len);
    assert(msg_batch_decode(data, len, &d) == MSG_OK);
    TEST_STREQ(msg_batch_str(d, msg_batch_anomaly(d, 0)->method_off), "zscore");
    assert(!msg_batch_anomaly(d, 0)->alarm && msg_batch_anomaly(d, 1)->alarm);
    assert(msg_batch_anomaly(d, 1)->ts == 6 &&
           msg_batch_anomaly(d, 1)->score == 0.3);
    free(data);
    msg_batch_destroy(&d);
    msg_batch_destroy(&b);
    /* An item of 6 elements (producers before the alarm) decodes with no
     * alarm; a 7th element that is not a boolean refuses the batch. */
    for (int form = 0; form < 4; form++) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        s_test_head(&pk, MSG_TYPE_ANOMALIES, 1);
        msgpack_pack_array(&pk, form == 0 ? 6 : 7);
        s_pack_str(&pk, "k");
        msgpack_pack_int64(&pk, 5);
        msgpack_pack_double(&pk, 100);
        msgpack_pack_double(&pk, 7.5);
        msgpack_pack_double(&pk, 0.99);
        s_pack_str(&pk, "zscore");
        if (form == 1)
            msgpack_pack_true(&pk);
        else if (form == 2)
            msgpack_pack_int(&pk, 1);
        else if (form == 3)
            msgpack_pack_nil(&pk);
        int rc = msg_batch_decode(sb.data, sb.size, &d);
        if (form >= 2) {
            assert(rc == MSG_ETYPE && d == NULL);
        } else {
            assert(rc == MSG_OK && msg_batch_size(d) == 1);
            assert(msg_batch_anomaly(d, 0)->alarm == (form == 1));
            assert(msg_batch_anomaly(d, 0)->score == 0.99);
            msg_batch_destroy(&d);
        }
        msgpack_sbuffer_destroy(&sb);
    }

    b = msg_batch_new(MSG_TYPE_ALERTS);
    msg_batch_add_alert(b, "hot", "temperature", "firing", "warning", 1, 31);
    msg_batch_env(b)->version = MSG_VERSION + 1;
    msg_batch_encode(b, &data, &len);
    assert(msg_batch_decode(data, len, &d) == MSG_EVERSION);
    free(data);
    msg_batch_env(b)->version = MSG_VERSION_MIN - 1;
    msg_batch_encode(b, &data, &len);
    assert(msg_batch_decode(data, len, &d) == MSG_EVERSION);
    free(data);
    msg_batch_destroy(&b);
    assert(msg_batch_decode("\xc1", 1, &d) != MSG_OK);
    /* A tiny frame declaring a huge array is refused before msgpack-c
     * would allocate for it. */
    assert(!msg_sane("\xdd\x7f\xff\xff\xff\x00", 6));
    assert(!msg_sane("\xdb\x7f\xff\xff\xff", 5));
    assert(msg_sane("\x92\x01\xa1x", 4));
    assert(!msg_sane("\x92\x01", 2));

    /* Forecasts round-trip point for point; a bad step, a length
     * mismatch or a NaN point is refused. */
    {
        double fv[3] = {1, 2.5, 4}, lo[3] = {0, 1, 2}, hi[3] = {2, 4, 6};
        b = msg_batch_new(MSG_TYPE_FORECASTS);
        msg_batch_add_forecast(b, "bearing", 7, 3600, 3, fv, lo, hi);
        msg_batch_encode(b, &data, &len);
        assert(msg_batch_decode(data, len, &d) == MSG_OK);
        const struct msg_forecast *fc = msg_batch_forecast(d, 0);
        assert(fc && fc->ts == 7 && fc->step == 3600 && fc->n == 3);
        assert(fc->value[1] == 2.5 && fc->lower[2] == 2 && fc->upper[0] == 2);
        TEST_STREQ(msg_batch_str(d, fc->key_off), "bearing");
        assert(msg_batch_forecast(d, 1) == NULL);
        assert(msg_batch_anomaly(d, 0) == NULL);
        TEST_STREQ(msg_topic(MSG_TYPE_FORECASTS), "forecasts");
        free(data);
        msg_batch_destroy(&d);
        msg_batch_destroy(&b);
        for (int bad = 0; bad < 5; bad++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            s_test_head(&pk, MSG_TYPE_FORECASTS, 1);
            msgpack_pack_array(&pk, 6);
            s_pack_str(&pk, "k");
            /* 3: the last point past MSG_TS_MAX; 4: before the epoch */
            msgpack_pack_int64(&pk, bad == 3 ? MSG_TS_MAX - 30 : bad == 4 ? -1 : 1);
            msgpack_pack_int64(&pk, bad == 0 ? 0 : 60);
            for (int a = 0; a < 3; a++) {
                unsigned m = bad == 1 && a == 2 ? 3 : 2;
                msgpack_pack_array(&pk, m);
                for (unsigned j = 0; j < m; j++)
                    msgpack_pack_double(&pk, bad == 2 && j ? NAN : 1.0);
            }
            assert(msg_batch_decode(sb.data, sb.size, &d) == MSG_EFIELD);
            assert(d == NULL);
            msgpack_sbuffer_destroy(&sb);
        }
    }

    b = msg_batch_new(MSG_TYPE_CONFIRM);
    msg_batch_add_confirm(b, "ingestd.0", 3, 1234567890123ULL);
    msg_batch_encode(b, &data, &len);
    assert(msg_batch_decode(data, len, &d) == MSG_OK);
    assert(msg_batch_confirm(d, 0)->seq == 1234567890123ULL);
    assert(msg_batch_confirm(d, 0)->lane == 3);
    TEST_STREQ(msg_batch_str(d, msg_batch_confirm(d, 0)->producer_off), "ingestd.0");
    free(data);
    msg_batch_destroy(&d);
    msg_batch_destroy(&b);
    (void)verbose;
    TEST_OK("msg_codec");
}
