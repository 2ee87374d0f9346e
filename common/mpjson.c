/*
 * mpjson: msgpack <-> jansson, and a shortest-double JSON printer.
 */
#include "common/mpjson.h"
#include "common/dtoa.h"
#include "common/msg.h"
#include "common/strbuf.h"
#include "common/strutil.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <msgpack.h>
#include <stdint.h>
#include <string.h>

static void
s_pack(msgpack_packer *pk, const json_t *j)
{
    if (j == NULL) { /* a json_pack that failed: nil, never a crash */
        msgpack_pack_nil(pk);
        return;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        msgpack_pack_map(pk, json_object_size(j));
        json_object_foreach((json_t *)j, k, v) {
            size_t n = strlen(k);
            msgpack_pack_str(pk, n);
            msgpack_pack_str_body(pk, k, n);
            s_pack(pk, v);
        }
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        msgpack_pack_array(pk, json_array_size(j));
        json_array_foreach(j, i, v) s_pack(pk, v);
        break;
    }
    case JSON_STRING: {
        size_t n = json_string_length(j);
        msgpack_pack_str(pk, n);
        msgpack_pack_str_body(pk, json_string_value(j), n);
        break;
    }
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(j));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(j));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
        break;
    }
}

void
mpjson_pack(const json_t *j, char **data, size_t *len)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    s_pack(&pk, j);
    *data = sb.data;
    *len = sb.size;
}

static json_t *
s_unpack(const msgpack_object *o, int depth)
{
    json_t *j;

    if (depth > MPJSON_DEPTH_MAX)
        return NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: return json_null();
    case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX)
            return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
    case MSGPACK_OBJECT_BIN:
        if (!strutil_utf8_valid(o->via.str.ptr, o->via.str.size))
            return NULL;
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
        j = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            json_t *v = s_unpack(&o->via.array.ptr[i], depth + 1);
            if (v == NULL) {
                json_decref(j);
                return NULL;
            }
            json_array_append_new(j, v);
        }
        return j;
    case MSGPACK_OBJECT_MAP:
        j = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            json_t *v;
            char *key;
            if (k->type != MSGPACK_OBJECT_STR ||
                !strutil_utf8_valid(k->via.str.ptr, k->via.str.size)) {
                json_decref(j);
                return NULL;
            }
            v = s_unpack(&o->via.map.ptr[i].val, depth + 1);
            if (v == NULL) {
                json_decref(j);
                return NULL;
            }
            key = xstrndup(k->via.str.ptr, k->via.str.size);
            json_object_set_new(j, key, v);
            free(key);
        }
        return j;
    default:
        return NULL;
    }
}

json_t *
mpjson_unpack_object(const msgpack_object *o)
{
    return s_unpack(o, 0);
}

json_t *
mpjson_unpack(const void *data, size_t len)
{
    msgpack_unpacked up;
    size_t off = 0;
    json_t *j = NULL;

    if (!msg_sane(data, len))
        return NULL;
    msgpack_unpacked_init(&up);
    if (msgpack_unpack_next(&up, data, len, &off) == MSGPACK_UNPACK_SUCCESS)
        j = s_unpack(&up.data, 0);
    msgpack_unpacked_destroy(&up);
    return j;
}

static void
s_put(struct strbuf *b, const char *s, size_t n)
{
    strbuf_add(b, s, n);
}

static void
s_putstr(struct strbuf *b, const char *s, size_t n)
{
    size_t run = 0; /* start of the bytes not written yet */

    s_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c != '"' && c != '\\' && c >= 0x20)
            continue;
        s_put(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            s_put(b, esc, 2);
        } else {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            s_put(b, esc, 6);
        }
    }
    s_put(b, s + run, n - run);
    s_put(b, "\"", 1);
}

static void
s_dump(struct strbuf *b, const json_t *j)
{
    char num[DTOA_ROOM];

    if (j == NULL) { /* as in s_pack */
        s_put(b, "null", 4);
        return;
    }
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *v;
        int first = 1;
        s_put(b, "{", 1);
        json_object_foreach((json_t *)j, k, v) {
            if (!first)
                s_put(b, ",", 1);
            first = 0;
            s_putstr(b, k, strlen(k));
            s_put(b, ":", 1);
            s_dump(b, v);
        }
        s_put(b, "}", 1);
        break;
    }
    case JSON_ARRAY: {
        size_t i;
        json_t *v;
        s_put(b, "[", 1);
        json_array_foreach(j, i, v) {
            if (i)
                s_put(b, ",", 1);
            s_dump(b, v);
        }
        s_put(b, "]", 1);
        break;
    }
    case JSON_STRING:
        s_putstr(b, json_string_value(j), json_string_length(j));
        break;
    case JSON_INTEGER: { /* as "%" JSON_INTEGER_FORMAT prints it */
        json_int_t v = json_integer_value(j);
        char *p = num;
        if (v < 0)
            *p++ = '-';
        p = strutil_utoa(v < 0 ? -(uint64_t)v : (uint64_t)v, p);
        s_put(b, num, (size_t)(p - num));
        break;
    }
    case JSON_REAL: /* what strutil_dtoa prints, faster for long answers */
        s_put(b, num, (size_t)(dtoa_end(json_real_value(j), num) - num));
        break;
    case JSON_TRUE: s_put(b, "true", 4); break;
    case JSON_FALSE: s_put(b, "false", 5); break;
    default: s_put(b, "null", 4); break;
    }
}

void
mpjson_dump(struct strbuf *b, const json_t *j)
{
    s_dump(b, j);
}

void
mpjson_put_string(struct strbuf *b, const char *s, size_t n)
{
    s_putstr(b, s, n);
}

char *
mpjson_dumps(const json_t *j)
{
    struct strbuf b = {NULL, 0, 0};
    s_put(&b, "", 0);
    s_dump(&b, j);
    return b.p;
}

/* Bytes of the UTF-8 sequence a lead byte c starts (1-4), 0 if none. */
static size_t
s_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : c < 0xc2 ? 0 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf5 ? 4 : 0;
}

json_t *
mpjson_string_lossy(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    struct strbuf b = {NULL, 0, 0};
    json_t *j;

    if (strutil_utf8_valid(s ? s : "", n))
        return json_stringn_nocheck(s ? s : "", n);
    for (size_t i = 0; i < n;) {
        size_t k = s_utf8_len((unsigned char)s[i]);
        if (k > 0 && i + k <= n && strutil_utf8_valid(s + i, k)) {
            s_put(&b, s + i, k);
            i += k;
        } else {
            s_put(&b, "\xef\xbf\xbd", 3);
            i++;
        }
    }
    j = json_stringn_nocheck(b.p, b.len);
    free(b.p);
    return j;
}

void
mpjson_test(bool verbose)
{
    json_t *j = json_pack("{s:f, s:i, s:s, s:[b,n], s:{s:f}}", "mean", 23.6,
                          "count", 2, "name", "t\"\n", "arr", 1, "o", "x",
                          (23.5 + 23.7) / 2);
    char *data, *s;
    size_t len;
    json_t *back;

    s = mpjson_dumps(j);
    TEST_STREQ(s, "{\"mean\":23.6,\"count\":2,\"name\":\"t\\\"\\u000a\","
                  "\"arr\":[true,null],\"o\":{\"x\":23.6}}");
    /* Integers of every sign and size, reals long and short. */
    json_t *nums = json_pack("[I,I,I,I,I,f,f,f,f]", (json_int_t)0,
                             (json_int_t)-5, (json_int_t)9007199254740993LL,
                             (json_int_t)INT64_MIN, (json_int_t)INT64_MAX,
                             0.1 + 0.2, -1e300, 12.345666666666666, 50.0);
    char *ns = mpjson_dumps(nums);
    TEST_STREQ(ns, "[0,-5,9007199254740993,-9223372036854775808,"
                   "9223372036854775807,0.30000000000000004,-1e+300,"
                   "12.345666666666666,50]");
    free(ns);
    json_decref(nums);
    /* Our output is valid JSON that reads back the same. */
    back = json_loads(s, 0, NULL);
    assert(back && json_equal(back, j));
    json_decref(back);
    free(s);
    mpjson_pack(j, &data, &len);
    back = mpjson_unpack(data, len);
    assert(back && json_equal(back, j));
    json_decref(back);
    for (size_t cut = 0; cut < len; cut++)
        assert(mpjson_unpack(data, cut) == NULL);
    free(data);
    json_decref(j);
    /* NULL (a json_pack that failed) packs and prints as null. */
    char *nul = mpjson_dumps(NULL);
    TEST_STREQ(nul, "null");
    free(nul);
    mpjson_pack(NULL, &data, &len);
    assert(len == 1 && (unsigned char)data[0] == 0xc0);
    free(data);
    /* Deep nesting is refused. */
    char deep[64];
    memset(deep, 0x91, sizeof deep); /* fixarray of 1, nested */
    deep[63] = (char)0xc0;
    assert(mpjson_unpack(deep, sizeof deep) == NULL);
    /* Client text that is not UTF-8 still makes a string: a lone lead
     * byte, a sequence cut short, a surrogate, 0xff; valid text is kept. */
    static const struct {
        const char *in, *out;
    } lossy[] = {{"caf\xc3\xa9", "caf\xc3\xa9"},
                 {"unexpected '\xc3'", "unexpected '\xef\xbf\xbd'"},
                 {"\xe6\xbc", "\xef\xbf\xbd\xef\xbf\xbd"},
                 {"a\xed\xa0\x80" "b", "a\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" "b"},
                 {"\xff\xf0\x9f\x98\x80", "\xef\xbf\xbd\xf0\x9f\x98\x80"},
                 {"", ""}};
    for (size_t i = 0; i < sizeof lossy / sizeof lossy[0]; i++) {
        json_t *l = mpjson_string_lossy(lossy[i].in);
        assert(l != NULL);
        TEST_STREQ(json_string_value(l), lossy[i].out);
        json_decref(l);
    }
    json_t *l0 = mpjson_string_lossy(NULL);
    TEST_STREQ(json_string_value(l0), "");
    json_decref(l0);
    (void)verbose;
    TEST_OK("mpjson");
}
