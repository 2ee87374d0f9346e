/*
 * mpjson: convert between msgpack and jansson values, and print JSON with
 * the shortest round-trip form of every double.
 *
 * Queries between daemons are msgpack maps; the reply bodies are built as
 * jansson trees, so apid relays them to HTTP clients without knowing each
 * query's shape. jansson prints doubles with "%.17g" (23.600000000000001),
 * so mpjson_dumps walks the tree itself (SPEC: shortest form).
 */
#ifndef SP_MPJSON_H
#define SP_MPJSON_H

#include <stdbool.h>

#include <jansson.h>
#include <stddef.h>

struct msgpack_object;
struct strbuf;

/* Deepest nesting accepted from the wire. */
#define MPJSON_DEPTH_MAX 32

/* Pack a jansson value as msgpack; caller owns *data (free()). NULL (a
 * json_pack that failed) packs as nil and prints as null below. */
void mpjson_pack(const json_t *j, char **data, size_t *len);
/* Unpack msgpack into a new jansson value (caller decrefs), or NULL when
 * the input is malformed, too deep, or has non-string map keys. Binary
 * strings become JSON strings only when valid UTF-8. */
json_t *mpjson_unpack(const void *data, size_t len);
/* The same for a value msgpack-c already unpacked (the caller checked
 * the bytes with msg_sane). */
json_t *mpjson_unpack_object(const struct msgpack_object *o);
/* Serialise compactly with shortest doubles; caller frees. Never fails;
 * NaN/inf print as null. */
char *mpjson_dumps(const json_t *j);
/* Append j to b as mpjson_dumps prints it. Cannot fail. */
void mpjson_dump(struct strbuf *b, const json_t *j);
/* Append n bytes of s as a JSON string (quoted, escaped). Cannot fail. */
void mpjson_put_string(struct strbuf *b, const char *s, size_t n);

/* A JSON string of s with every byte that is not part of valid UTF-8
 * replaced by U+FFFD, so text quoted from a client (a truncated or
 * malformed name in an error message) can always be put in a reply.
 * Never NULL; s NULL gives "". */
json_t *mpjson_string_lossy(const char *s);

/* Selftest: asserts on failure, prints " * mpjson: OK". */
void mpjson_test(bool verbose);

#endif
