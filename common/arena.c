/*
 * arena: shared memory apid lends for large answers (see arena.h).
 */
#include "common/arena.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/test.h"
#include "common/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_LENT INT64_MAX /* a slot's state while lent out */

struct arena {
    char name[ARENA_NAME_MAX];
    char *base;
    size_t size, slot;
    size_t nslots;
    int64_t *state; /* per slot: S_LENT, or free from that monotonic ns */
};

/* "/sensorpipe-apid.<pid>.<hex>": the pid, or 0 when name is not one. */
static long
s_name_pid(const char *name)
{
    size_t n = strlen(ARENA_PREFIX);
    char *end;
    long pid;

    if (strncmp(name, ARENA_PREFIX, n) != 0)
        return 0;
    pid = strtol(name + n, &end, 10);
    if (pid <= 0 || *end != '.' || end[1] == '\0' ||
        strspn(end + 1, "0123456789abcdef") != strlen(end + 1) ||
        strlen(name) >= ARENA_NAME_MAX)
        return 0;
    return pid;
}

size_t
arena_sweep(void)
{
    DIR *d = opendir("/dev/shm");
    struct dirent *e;
    size_t n = 0;
    char name[ARENA_NAME_MAX + 1];

    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (snprintf(name, sizeof name, "/%s", e->d_name) >= (int)sizeof name)
            continue;
        long pid = s_name_pid(name);
        if (pid > 0 && kill((pid_t)pid, 0) == -1 && errno == ESRCH &&
            shm_unlink(name) == 0) {
            log_info("arena: removed %s, left by an apid that is gone", name);
            n++;
        }
    }
    closedir(d);
    return n;
}

arena_t *
arena_new(size_t slots, size_t slot_bytes)
{
    static unsigned seq;
    long page = sysconf(_SC_PAGESIZE);
    arena_t *self;
    int fd;

    if (slots == 0 || slot_bytes == 0)
        return NULL;
    arena_sweep();
    self = xcalloc(1, sizeof *self);
    self->slot = (slot_bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    self->nslots = slots;
    self->size = self->slot * slots;
    /* The pid (for arena_sweep) and a part no earlier apid of the same pid
     * had, so a daemon's mapping of an old arena never passes for this. */
    snprintf(self->name, sizeof self->name, "%s%ld.%llx%x", ARENA_PREFIX,
             (long)getpid(), (unsigned long long)clock_mono_ns(), seq++);
    fd = shm_open(self->name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd == -1) {
        log_warn("arena: shm_open %s (large answers travel through ZeroMQ)",
                 self->name);
        free(self);
        return NULL;
    }
    if (ftruncate(fd, (off_t)self->size) == -1 ||
        (self->base = mmap(NULL, self->size, PROT_READ | PROT_WRITE,
                           MAP_SHARED, fd, 0)) == MAP_FAILED) {
        log_warn("arena: %s of %zu bytes (large answers travel through "
                 "ZeroMQ)", self->name, self->size);
        close(fd);
        shm_unlink(self->name);
        free(self);
        return NULL;
    }
    close(fd);
    self->state = xcalloc(slots, sizeof *self->state);
    return self;
}

void
arena_destroy(arena_t **pself)
{
    arena_t *self = *pself;

    if (self == NULL)
        return;
    munmap(self->base, self->size);
    shm_unlink(self->name);
    free(self->state);
    free(self);
    *pself = NULL;
}

const char *
arena_name(const arena_t *self)
{
    return self->name;
}

const char *
arena_base(const arena_t *self)
{
    return self->base;
}

size_t
arena_size(const arena_t *self)
{
    return self->size;
}

int
arena_take(arena_t *self, int64_t now_ns, size_t *off, size_t *len)
{
    for (size_t i = 0; i < self->nslots; i++)
        if (self->state[i] <= now_ns) {
            self->state[i] = S_LENT;
            *off = i * self->slot;
            *len = self->slot;
            return 0;
        }
    return -1;
}

void
arena_give(arena_t *self, size_t off, int64_t not_before_ns)
{
    size_t i = off / self->slot;

    assert(off % self->slot == 0 && i < self->nslots &&
           self->state[i] == S_LENT);
    self->state[i] = not_before_ns;
}

size_t
arena_busy(const arena_t *self, int64_t now_ns)
{
    size_t n = 0;

    for (size_t i = 0; i < self->nslots; i++)
        n += self->state[i] > now_ns;
    return n;
}

/* --- the borrower's side ----------------------------------------------- */

#define S_MAPS 4 /* arenas mapped at once: one per apid on this host */

struct s_map {
    char name[ARENA_NAME_MAX];
    char *base;     /* NULL: could not be mapped (said once) */
    size_t size;
    int fd;         /* kept, to see when the object is unlinked */
    uint64_t used;  /* the tick of its last use */
};

struct arena_maps {
    struct s_map m[S_MAPS];
    uint64_t tick;
};

arena_maps_t *
arena_maps_new(void)
{
    return xcalloc(1, sizeof(arena_maps_t));
}

static void
s_unmap(struct s_map *m)
{
    if (m->base)
        munmap(m->base, m->size);
    if (m->fd > 0)
        close(m->fd);
    memset(m, 0, sizeof *m);
}

/* An arena whose apid is gone (it unlinks its object when it stops, the
 * next apid when it crashed) need not stay mapped. */
static bool
s_gone(const struct s_map *m)
{
    struct stat st;

    return m->name[0] && m->fd > 0 && fstat(m->fd, &st) == 0 &&
           st.st_nlink == 0;
}

void
arena_maps_destroy(arena_maps_t **pself)
{
    if (*pself == NULL)
        return;
    for (size_t i = 0; i < S_MAPS; i++)
        s_unmap(&(*pself)->m[i]);
    free(*pself);
    *pself = NULL;
}

/* Map the arena called name into m (m->base stays NULL on failure). */
static void
s_map(struct s_map *m, const char *name)
{
    struct stat st;
    int fd = shm_open(name, O_RDWR, 0);

    snprintf(m->name, sizeof m->name, "%s", name);
    m->fd = -1;
    if (fd == -1) {
        log_warn("arena: cannot open %s (answers to it travel through "
                 "ZeroMQ)", name);
        return;
    }
    if (fstat(fd, &st) == -1 || st.st_size <= 0 ||
        (m->base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE,
                        MAP_SHARED, fd, 0)) == MAP_FAILED) {
        log_warn("arena: cannot map %s", name);
        m->base = NULL;
        close(fd);
        return;
    }
    m->size = (size_t)st.st_size;
    m->fd = fd;
}

char *
arena_maps_get(arena_maps_t *self, const char *name, size_t off, size_t len)
{
    struct s_map *m = NULL, *lru = &self->m[0];

    if (name == NULL || s_name_pid(name) == 0)
        return NULL;
    for (size_t i = 0; i < S_MAPS && m == NULL; i++)
        if (strcmp(self->m[i].name, name) == 0)
            m = &self->m[i];
    if (m == NULL) { /* a new apid, most likely: forget those gone */
        for (size_t i = 0; i < S_MAPS; i++)
            if (s_gone(&self->m[i]))
                s_unmap(&self->m[i]);
        for (size_t i = 0; i < S_MAPS; i++)
            if (self->m[i].used < lru->used)
                lru = &self->m[i];
        s_unmap(lru); /* empty, or the least used */
        m = lru;
        s_map(m, name);
    }
    m->used = ++self->tick;
    if (m->base == NULL || off > m->size || len > m->size - off)
        return NULL;
    return m->base + off;
}

void
arena_test(bool verbose)
{
    int64_t now = clock_mono_ns();
    arena_t *a = arena_new(3, 5000), *b;
    arena_maps_t *maps = arena_maps_new();
    size_t off[3], len, o;
    char *p, name[ARENA_NAME_MAX];

    (void)verbose;
    if (a == NULL) { /* no /dev/shm here: nothing to test */
        arena_maps_destroy(&maps);
        printf(" * arena: skipped (no shared memory)\n");
        return;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    assert(arena_size(a) == 3 * ((5000 + page - 1) / page * page));
    assert(s_name_pid(arena_name(a)) == (long)getpid());
    assert(s_name_pid("/sensorpipe-apid.12") == 0);
    assert(s_name_pid("/sensorpipe-apid.12.x") == 0);
    assert(s_name_pid("/other.12.ab") == 0);
    /* Slots: three, then none; one back at once, one after a grace. */
    for (int i = 0; i < 3; i++) {
        assert(arena_take(a, now, &off[i], &len) == 0);
        assert(off[i] == (size_t)i * len);
    }
    assert(arena_take(a, now, &o, &len) == -1 && arena_busy(a, now) == 3);
    arena_give(a, off[1], 0);
    arena_give(a, off[2], now + 1000);
    assert(arena_busy(a, now) == 2);
    assert(arena_take(a, now, &o, &len) == 0 && o == off[1]);
    assert(arena_take(a, now, &o, &len) == -1);
    assert(arena_take(a, now + 1000, &o, &len) == 0 && o == off[2]);
    /* The borrower writes, the lender reads. */
    p = arena_maps_get(maps, arena_name(a), off[1], len);
    assert(p != NULL);
    memcpy(p, "hello", 5);
    assert(memcmp(arena_base(a) + off[1], "hello", 5) == 0);
    assert(arena_maps_get(maps, arena_name(a), arena_size(a), 1) == NULL);
    assert(arena_maps_get(maps, arena_name(a), 1, arena_size(a)) == NULL);
    assert(arena_maps_get(maps, arena_name(a), 0, SIZE_MAX) == NULL);
    assert(arena_maps_get(maps, "/etc/passwd", 0, 1) == NULL);
    /* A second arena of the same process has another name. */
    b = arena_new(1, 1);
    assert(b && strcmp(arena_name(a), arena_name(b)) != 0);
    assert(arena_maps_get(maps, arena_name(b), 0, 1) != NULL);
    snprintf(name, sizeof name, "%s", arena_name(b));
    arena_destroy(&b);
    assert(b == NULL);
    /* Gone: the borrower unmaps it when it meets a new name; a fresh
     * borrower cannot open it. */
    assert(s_gone(&maps->m[1]) && !s_gone(&maps->m[0]));
    assert(arena_maps_get(maps, "/sensorpipe-apid.1.ab", 0, 1) == NULL);
    assert(maps->m[1].base == NULL && maps->m[0].base != NULL);
    arena_maps_t *fresh = arena_maps_new();
    assert(arena_maps_get(fresh, name, 0, 1) == NULL);
    arena_maps_destroy(&fresh);
    /* Sweep removes a gone apid's arena and leaves live ones alone. */
    pid_t dead = fork();
    if (dead == 0)
        _exit(0);
    assert(dead > 0 && waitpid(dead, NULL, 0) == dead);
    snprintf(name, sizeof name, "%s%ld.1", ARENA_PREFIX, (long)dead);
    int fd = shm_open(name, O_RDWR | O_CREAT, 0600);
    assert(fd >= 0);
    close(fd);
    assert(arena_sweep() >= 1);
    assert(shm_open(name, O_RDWR, 0) == -1 && errno == ENOENT);
    assert(arena_maps_get(maps, arena_name(a), 0, 1) != NULL);
    arena_maps_destroy(&maps);
    arena_destroy(&a);
    arena_destroy(&a);
    printf(" * arena: OK\n");
}
