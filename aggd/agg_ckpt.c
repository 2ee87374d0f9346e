/*
 * agg_ckpt: the checkpoint file (see agg_ckpt.h).
 *
 * Layout: "SPK1", format (u32 LE), wal_seg (u64 LE), chunk_len (u64 LE),
 * chunk_gen, rollup_gen and rollup_len (u64 LE, format 2 on), length
 * of the table (u32 LE), the table as a msgpack confirm batch, CRC-32C of
 * everything before it (u32 LE).
 */
#include "aggd/agg_ckpt.h"
#include "common/crc.h"
#include "common/le.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_MAGIC "SPK1"
#define S_FIXED1 28 /* format 1: magic, format, wal_seg, chunk_len, table length */
#define S_FIXED 52  /* format 2: and chunk_gen, rollup_gen, rollup_len */
#define S_TABLE_MAX (16u << 20)

int
agg_ckpt_write(const char *dir, const struct agg_ckpt *ck,
               const agg_confirm_t *applied)
{
    msg_batch_t *b = agg_confirm_batch(applied, "aggd", 0);
    char *table, *tmp = xasprintf("%s/checkpoint.tmp", dir),
                 *path = xasprintf("%s/checkpoint", dir);
    size_t tlen, len;
    unsigned char *buf;
    int fd = -1, dfd = -1, rc = -1;

    msg_batch_encode(b, &table, &tlen);
    msg_batch_destroy(&b);
    len = S_FIXED + tlen + 4;
    buf = xmalloc(len);
    memcpy(buf, S_MAGIC, 4);
    le_put(buf + 4, ck->format, 4);
    le_put(buf + 8, ck->wal_seg, 8);
    le_put(buf + 16, ck->files.chunk_len, 8);
    le_put(buf + 24, ck->files.chunk_gen, 8);
    le_put(buf + 32, ck->files.rollup_gen, 8);
    le_put(buf + 40, ck->files.rollup_len, 8);
    le_put(buf + 48, tlen, 4);
    memcpy(buf + S_FIXED, table, tlen);
    le_put(buf + S_FIXED + tlen, crc_32c(0, buf, S_FIXED + tlen), 4);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1 || write(fd, buf, len) != (ssize_t)len || fsync(fd) == -1) {
        log_warn("agg_ckpt: cannot write %s", tmp);
        goto done;
    }
    if (rename(tmp, path) == -1) {
        log_warn("agg_ckpt: cannot rename %s", tmp);
        goto done;
    }
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd == -1 || fsync(dfd) == -1) {
        log_warn("agg_ckpt: cannot fsync %s", dir);
        goto done;
    }
    rc = 0;
done:
    if (fd != -1)
        close(fd);
    if (dfd != -1)
        close(dfd);
    free(buf);
    free(table);
    free(tmp);
    free(path);
    return rc;
}

int
agg_ckpt_read(const char *dir, struct agg_ckpt *ck, agg_confirm_t *applied)
{
    char *path = xasprintf("%s/checkpoint", dir);
    unsigned char *buf = NULL;
    struct stat st;
    msg_batch_t *b = NULL;
    int fd, rc = -1;

    memset(ck, 0, sizeof *ck);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
        rc = errno == ENOENT ? 1 : -1;
        if (rc == -1)
            log_warn("agg_ckpt: cannot open %s", path);
        goto done;
    }
    if (fstat(fd, &st) == -1 || st.st_size < S_FIXED1 + 4 ||
        st.st_size > S_FIXED + 4 + S_TABLE_MAX) {
        log_warnx("agg_ckpt: %s: bad size", path);
        goto done;
    }
    buf = xmalloc((size_t)st.st_size);
    if (read(fd, buf, (size_t)st.st_size) != st.st_size) {
        log_warn("agg_ckpt: cannot read %s", path);
        goto done;
    }
    size_t len = (size_t)st.st_size, fixed;
    ck->format = (uint32_t)le_get(buf + 4, 4);
    fixed = ck->format == 1 ? S_FIXED1 : S_FIXED;
    size_t tlen = len >= fixed + 4 ? (size_t)le_get(buf + fixed - 4, 4) : 0;
    if (memcmp(buf, S_MAGIC, 4) != 0 || len < fixed + 4 ||
        tlen != len - fixed - 4 ||
        crc_32c(0, buf, len - 4) != (uint32_t)le_get(buf + len - 4, 4)) {
        log_warnx("agg_ckpt: %s is corrupt (bad magic, length or checksum)",
                  path);
        goto done;
    }
    if (ck->format < 1 || ck->format > AGG_FORMAT_VERSION) {
        log_warnx("agg_ckpt: %s is on-disk format %u; this aggd reads "
                  "formats 1 to %u only; refusing to start (use the aggd "
                  "that wrote it, or move the directory away)",
                  dir, ck->format, AGG_FORMAT_VERSION);
        goto done;
    }
    ck->wal_seg = le_get(buf + 8, 8);
    ck->files.chunk_len = le_get(buf + 16, 8);
    if (ck->format >= 2)
        ck->files.chunk_gen = le_get(buf + 24, 8);
    if (ck->format >= 3) {
        ck->files.rollup_gen = le_get(buf + 32, 8);
        ck->files.rollup_len = le_get(buf + 40, 8);
    }
    if (ck->format < AGG_FORMAT_VERSION)
        log_info("agg_ckpt: %s is format %u: migrating (%s; the next "
                 "checkpoint writes format %u)", dir, ck->format,
                 ck->format < 3 ? "rollups are rebuilt from the chunks"
                                : "hour and day rollups the chunks hold are "
                                  "rebuilt from them",
                 AGG_FORMAT_VERSION);
    if (msg_batch_decode(buf + fixed, tlen, &b) != MSG_OK ||
        agg_confirm_load(applied, b) == -1) {
        log_warnx("agg_ckpt: %s: bad table of applied batches", path);
        goto done;
    }
    rc = 0;
done:
    if (fd != -1)
        close(fd);
    msg_batch_destroy(&b);
    free(buf);
    free(path);
    return rc;
}

void
agg_ckpt_test(bool verbose)
{
    char dir[] = "/tmp/agg_ckpt_test.XXXXXX", path[64];
    agg_confirm_t *t = agg_confirm_new(), *back = agg_confirm_new();
    struct agg_ckpt ck = {AGG_FORMAT_VERSION, 7, {3, 12345, 4, 999}}, got;
    int fd;

    assert(mkdtemp(dir));
    assert(agg_ckpt_read(dir, &got, back) == 1);
    agg_confirm_accept(t, "ingestd.0", 2, 99, 0, false, NULL);
    assert(agg_ckpt_write(dir, &ck, t) == 0);
    assert(agg_ckpt_read(dir, &got, back) == 0);
    assert(got.wal_seg == 7 && got.files.chunk_len == 12345);
    assert(got.files.chunk_gen == 3 && got.files.rollup_gen == 4 &&
           got.files.rollup_len == 999);
    assert(agg_confirm_seq(back, "ingestd.0", 2) == 99);
    /* Another format version is refused; so is a flipped byte. */
    ck.format = AGG_FORMAT_VERSION + 1;
    assert(agg_ckpt_write(dir, &ck, t) == 0);
    assert(agg_ckpt_read(dir, &got, back) == -1);
    ck.format = AGG_FORMAT_VERSION;
    assert(agg_ckpt_write(dir, &ck, t) == 0);
    snprintf(path, sizeof path, "%s/checkpoint", dir);
    fd = open(path, O_WRONLY);
    assert(fd >= 0 && pwrite(fd, "\x7f", 1, 9) == 1);
    close(fd);
    assert(agg_ckpt_read(dir, &got, back) == -1);
    unlink(path);
    assert(rmdir(dir) == 0);
    agg_confirm_destroy(&t);
    agg_confirm_destroy(&back);
    (void)verbose;
    TEST_OK("agg_ckpt");
}
