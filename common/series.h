/*
 * series: the reading model's naming. A series is a metric name plus tags;
 * its canonical key is "name{k1=v1,k2=v2}" with tags sorted by key, or just
 * "name" without tags (SPEC.md, API conventions). The lane of a series is
 * FNV-1a 64 of the key modulo the lane count (DESIGN.md).
 */
#ifndef SP_SERIES_H
#define SP_SERIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIES_NAME_MAX 256
#define SERIES_TAGS_MAX 32
#define SERIES_KEY_MAX 1024

/* The tenant is an implicit tag (SPEC.md): a series of tenant "acme"
 * carries tenant=acme in its key, a series of the default tenant carries
 * no tenant tag at all (so single-tenant keys stay what the seed shows).
 * Readers never choose the tag: ingestd stamps it from the credentials
 * and refuses it in client data, apid adds it to every query. */
#define SERIES_TENANT_TAG "tenant"
#define SERIES_TENANT_DEFAULT "default"

struct series_tag {
    const char *key;   /* tag key, [A-Za-z_][A-Za-z0-9_]* */
    const char *value; /* tag value, UTF-8 */
};

/* Check a metric name: non-empty, valid UTF-8, at most SERIES_NAME_MAX
 * bytes, no control characters and none of "{},=". Returns NULL when
 * valid, else a static reason. */
const char *series_name_check(const char *name, size_t len);
/* Check a tag key. NULL when valid, else a static reason. */
const char *series_tag_key_check(const char *key);
/* Check a tag value (same rules as a name). NULL or a static reason. */
const char *series_tag_value_check(const char *value);

/* Build the canonical key from a valid name and tags (sorted here; the
 * array is reordered). Returns the length written into out (NUL
 * terminated) or -1 when it would not fit in outlen bytes or a tag key
 * repeats. */
int series_key_build(const char *name, struct series_tag *tags, size_t ntags,
                     char *out, size_t outlen);

/* Split a canonical key: copies the name into name (namelen bytes) and
 * returns the number of tags (up to max) pointing into tagbuf, a copy of
 * the tag section. Returns -1 for a malformed key. */
int series_key_parse(const char *key, char *name, size_t namelen,
                     char *tagbuf, size_t tagbuflen, struct series_tag *tags,
                     size_t max);

/* The tenant of a key: the value of its tenant tag copied into buf, or
 * SERIES_TENANT_DEFAULT when it has none (or the value does not fit).
 * Returns buf or the static default; cannot fail. */
const char *series_tenant(const char *key, char *buf, size_t len);
/* Stamp tenant into the canonical key in place (keylen bytes of room):
 * the default tenant (or NULL) leaves the key unchanged, another inserts
 * tenant=T in sorted position. Returns the new length, -1 when it would
 * not fit, -2 when the key already carries a tenant tag (client data
 * may not name one). */
int series_key_stamp(char *key, size_t keylen, const char *tenant);

/* Lane of a series key among n lanes (n >= 1). */
unsigned series_lane(const char *key, size_t keylen, unsigned n);
/* The same from the key's strutil_fnv1a64 hash, for callers that hold it
 * (keytab). */
unsigned series_lane_hash(uint64_t hash, unsigned n);

/* Does key match a selector? sel is a canonical key (exact), a bare name
 * (any tags) or a glob over names ("temp_*"); filters are tags that must
 * be present with these values, and a filter with an empty value (which
 * no tag can have) requires the tag to be absent: {tenant=""} selects
 * the default tenant's series. */
bool series_match(const char *key, const char *sel,
                  const struct series_tag *filters, size_t nfilters);

/* Selftest: asserts on failure, prints " * series: OK". */
void series_test(bool verbose);

#endif
