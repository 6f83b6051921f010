/*
 * Commit log: each segment file is preallocated and memory-mapped (MAP_SHARED); appenders copy
 * framed records straight into the mapping under one mutex, so a record is in the kernel's page
 * cache — and survives a crash of the process — as soon as commitlog_append returns. The sync
 * thread (or a batch-mode waiter) fdatasyncs the segments for durability against OS crashes,
 * prepares the next segment file ahead of need and recycles discarded ones.
 * Byte format: docs/commitlog-format.md.
 */
#include "ilion/storage/commitlog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ilion/util/buf.h"
#include "ilion/util/crc32c.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

#define CL_MAGIC "ILCL"
#define CL_VERSION 1u
#define CL_HDR 32u             /* segment header bytes */
#define CL_REC_OVERHEAD 12u    /* length, length CRC, payload CRC */
#define CL_END_MARK 8u         /* a zero length with its CRC */
#define CL_MAX_FREE 8u         /* files kept in the free pool */
#define CL_MIN_SEGMENT 4096u
#define CL_MAX_SEGMENT 0xFFFFFFFFull
#define CL_CYCLE_SEGS 8u       /* closed segments synced per cycle at most */

#define MOD "commitlog"

/* An open segment file and its mapping (segsize bytes). */
typedef struct cl_seg {
    uint32_t id;
    int fd;
    uint8_t *map;
} cl_seg;

struct commitlog {
    char *dir;
    int dirfd;
    enum storage_sync_mode mode;
    uint32_t period_ms, window_ms;
    uint64_t segsize;
    int (*sync_fn)(void *arg, int fd);
    void *sync_fn_arg;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* sync thread waits for work */
    pthread_cond_t synced_cv;  /* commitlog_wait waits for syncs */

    /* appender state (mu) */
    uint32_t cur_seg, cur_off, cur_mask;
    cl_seg cur;                /* map is NULL until the first record of cur_seg */
    cl_seg next;               /* a pooled file mapped ahead of need by the sync thread, or map NULL */
    bool next_recycled;
    char next_path[4096];      /* its pool name */
    cl_seg *closed; size_t nclosed, capclosed;  /* rolled past, not yet synced and unmapped */
    bool dir_dirty;            /* a segment file was created or renamed since the last dir fsync */
    bool kicked;               /* the sync thread was signalled for the data now pending */
    bool closing;

    /* sync state (mu; synced_pos and failed also read with atomics) */
    uint64_t synced_pos;
    bool failed;
    int fail_err;
    bool io_busy;              /* a thread is syncing (the sync thread or a leader) */
    uint32_t nwaiters;         /* threads in commitlog_wait */

    /* segments (mu) */
    uint32_t *live; size_t nlive, caplive;    /* ascending ids not yet recycled */
    uint32_t *freeids; size_t nfree, capfree; /* CommitLog-free-<id>.log files */
    uint32_t *spares; size_t nspare, capspare; /* CommitLog-spare-<n>.log: zero-filled ahead */
    uint32_t next_spare;
    bool spare_disabled;       /* preparing spares failed once; new segments are made on demand */
    uint32_t discard_upto;     /* segments with id < this may be recycled */
    uint32_t closed_below;     /* segments with id < this are synced, unmapped and closed */

    storage_sync_cb cb;
    void *cb_arg;
    commitlog_stats st;

    /* sync thread only: a spare being zero-filled between jobs */
    int spare_fd;
    uint32_t spare_n;
    uint64_t spare_pos;

    pthread_t thr;
    bool thr_started;
};
/* ---- format helpers ---------------------------------------------------------------- */

static uint32_t crc(const void *p, size_t n) { return crc32c(0, p, n); }

static uint32_t seg_mask(uint32_t segid) {
    uint8_t b[8];
    memcpy(b, CL_MAGIC, 4);
    be32_put(b + 4, segid);
    return crc(b, 8);
}

static void header_encode(uint8_t h[CL_HDR], uint32_t segid, uint64_t segsize) {
    memset(h, 0, CL_HDR);
    memcpy(h, CL_MAGIC, 4);
    be32_put(h + 4, CL_VERSION);
    be64_put(h + 8, segid);
    be64_put(h + 16, segsize);
    be32_put(h + 28, crc(h, 28));
}

/* 0, or ILION_EFORMAT for a well-formed header of another version, ILION_ECORRUPT otherwise. */
static int header_decode(const uint8_t *h, size_t n, uint64_t *segid, uint64_t *segsize) {
    if (n < CL_HDR || memcmp(h, CL_MAGIC, 4) != 0) return ILION_ECORRUPT;
    if (be32_get(h + 28) != crc(h, 28)) return ILION_ECORRUPT;
    if (be32_get(h + 4) != CL_VERSION) return ILION_EFORMAT;
    *segid = be64_get(h + 8);
    *segsize = be64_get(h + 16);
    if (*segsize < CL_MIN_SEGMENT || *segsize > CL_MAX_SEGMENT) return ILION_ECORRUPT;
    return 0;
}

static void seg_path(char *out, size_t n, const char *dir, uint32_t id) {
    snprintf(out, n, "%s/CommitLog-%u-%u.log", dir, CL_VERSION, id);
}
static void free_path(char *out, size_t n, const char *dir, uint32_t id) {
    snprintf(out, n, "%s/CommitLog-free-%u.log", dir, id);
}
static void spare_path(char *out, size_t n, const char *dir, uint32_t sn) {
    snprintf(out, n, "%s/CommitLog-spare-%u.log", dir, sn);
}

/* Parses "<prefix><decimal id>.log" strictly. */
static bool parse_name(const char *name, const char *prefix, uint32_t *id) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return false;
    const char *p = name + pl;
    uint64_t v = 0;
    int digits = 0;
    while (*p >= '0' && *p <= '9') {
        v = v * 10 + (uint64_t)(*p - '0');
        if (v > UINT32_MAX || ++digits > 10) return false;
        p++;
    }
    if (digits == 0 || strcmp(p, ".log") != 0) return false;
    *id = (uint32_t)v;
    return true;
}

static int do_fsync(commitlog *cl, int fd) {
    int rc;
    if (cl->sync_fn) rc = cl->sync_fn(cl->sync_fn_arg, fd);
    else rc = fdatasync(fd) == 0 ? 0 : -errno;
    pthread_mutex_lock(&cl->mu);
    cl->st.syncs++;
    pthread_mutex_unlock(&cl->mu);
    return rc;
}

static int pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static int fsync_dir(commitlog *cl) { return fsync(cl->dirfd) == 0 ? 0 : -errno; }

static int ids_push(uint32_t **a, size_t *n, size_t *cap, uint32_t id) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        uint32_t *na = realloc(*a, nc * sizeof *na);
        if (!na) return -ENOMEM;
        *a = na;
        *cap = nc;
    }
    (*a)[(*n)++] = id;
    return 0;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- recycling ----------------------------------------------------------------------- */

/* Called with mu held; drops it around file operations. */
static void recycle_eligible(commitlog *cl) {
    uint32_t limit = cl->discard_upto < cl->closed_below ? cl->discard_upto : cl->closed_below;
    size_t k = 0;
    while (k < cl->nlive && cl->live[k] < limit && cl->live[k] != cl->cur_seg) k++;
    if (k == 0) return;
    uint32_t *victims = malloc(k * sizeof *victims);
    if (!victims) return;  /* retried at the next discard or segment switch */
    memcpy(victims, cl->live, k * sizeof *victims);
    memmove(cl->live, cl->live + k, (cl->nlive - k) * sizeof *cl->live);
    cl->nlive -= k;
    size_t room = cl->nfree < CL_MAX_FREE ? CL_MAX_FREE - cl->nfree : 0;
    pthread_mutex_unlock(&cl->mu);

    char from[4096], to[4096];
    size_t nkept = 0;
    for (size_t i = 0; i < k; i++) {
        seg_path(from, sizeof from, cl->dir, victims[i]);
        /* Keep the newest files: they are the ones most likely still in the page cache. */
        if (k - i <= room) {
            free_path(to, sizeof to, cl->dir, victims[i]);
            if (rename(from, to) == 0) {
                victims[nkept++] = victims[i];
                continue;
            }
            LOG_WARN(MOD, "recycling %s: %s", from, strerror(errno));
        }
        if (unlink(from) != 0 && errno != ENOENT) LOG_WARN(MOD, "removing %s: %s", from, strerror(errno));
    }
    int rc = fsync_dir(cl);
    if (rc) LOG_WARN(MOD, "fsync of %s: %s", cl->dir, ilion_strerror(rc));

    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < nkept; i++)
        if (ids_push(&cl->freeids, &cl->nfree, &cl->capfree, victims[i]) != 0) break;
    free(victims);
}

/* ---- the sync thread ------------------------------------------------------------------ */

static void latch_failure(commitlog *cl, int err, const char *what) {
    /* mu held */
    if (!cl->failed) {
        LOG_ERROR(MOD, "%s failed in %s: %s; the commit log accepts no more writes", what, cl->dir,
                  ilion_strerror(err));
        cl->fail_err = err;
        __atomic_store_n(&cl->failed, true, __ATOMIC_RELEASE);
    }
    pthread_cond_broadcast(&cl->synced_cv);
}

static uint64_t cur_pos(const commitlog *cl) { return (uint64_t)cl->cur_seg << 32 | cl->cur_off; }

/* Something appended is not yet covered by a sync (mu held). Never after a failure: nothing
 * will be synced again (closed segments left then are unmapped at close). */
static bool pending(const commitlog *cl) {
    return !cl->failed && (cl->nclosed > 0 || (cl->cur.map && cur_pos(cl) > cl->synced_pos));
}

static void seg_unmap(commitlog *cl, cl_seg *s) {
    if (s->map) munmap(s->map, (size_t)cl->segsize);
    if (s->fd >= 0) close(s->fd);
    s->map = NULL;
    s->fd = -1;
}

/* Maps a whole segment file read-write and shared: stores into the mapping are stores into the
 * page cache, so they outlive the process. NULL on failure (errno set). */
static uint8_t *seg_map(commitlog *cl, int fd) {
    void *m = mmap(NULL, (size_t)cl->segsize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    return m == MAP_FAILED ? NULL : m;
}

static void abs_deadline(struct timespec *ts, uint64_t ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

static bool ts_passed(const struct timespec *d) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > d->tv_sec || (now.tv_sec == d->tv_sec && now.tv_nsec >= d->tv_nsec);
}

/* One sync of everything appended so far: segments rolled past are fdatasynced (oldest first),
 * unmapped and closed, the directory is fsynced if a segment file was created or renamed, and
 * with do_sync the current segment is fdatasynced and the synced position advanced. Called with
 * mu held and io_busy clear by the sync thread or, in batch mode, by a thread in commitlog_wait
 * (leader-based group commit). Returns with mu held. */
static void run_cycle(commitlog *cl, bool do_sync) {
    cl_seg old[CL_CYCLE_SEGS];
    size_t nold = cl->nclosed < CL_CYCLE_SEGS ? cl->nclosed : CL_CYCLE_SEGS;
    if (nold) memcpy(old, cl->closed, nold * sizeof *old);
    bool partial = nold < cl->nclosed;
    cl_seg cur = cl->cur;
    /* appends after this point are not covered; they stay pending */
    uint64_t target = partial ? (uint64_t)old[nold - 1].id << 32 | UINT32_MAX : cur_pos(cl);
    bool cur_dirty = !partial && cur.map && target > cl->synced_pos;
    bool dird = cl->dir_dirty;
    cl->dir_dirty = false;
    cl->kicked = false;
    bool failed = cl->failed;
    cl->io_busy = true;
    pthread_mutex_unlock(&cl->mu);

    int rc = 0;
    for (size_t i = 0; i < nold; i++) {
        if (!failed && !rc) rc = do_fsync(cl, old[i].fd);
        seg_unmap(cl, &old[i]);
    }
    if (!failed && !rc && dird) rc = fsync_dir(cl);
    if (!failed && !rc && do_sync && cur_dirty) rc = do_fsync(cl, cur.fd);

    pthread_mutex_lock(&cl->mu);
    if (nold) {
        memmove(cl->closed, cl->closed + nold, (cl->nclosed - nold) * sizeof *cl->closed);
        cl->nclosed -= nold;
        if (old[nold - 1].id + 1 > cl->closed_below) cl->closed_below = old[nold - 1].id + 1;
        recycle_eligible(cl);
    }
    if (rc && dird) cl->dir_dirty = true;
    bool notify = false;
    if (rc) {
        latch_failure(cl, rc, "commit log fsync");
        notify = true;
    } else if ((do_sync || partial) && !failed) {
        if (target > cl->synced_pos) __atomic_store_n(&cl->synced_pos, target, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&cl->synced_cv);
        notify = do_sync;
    }
    if (notify && cl->cb) {
        /* still holding the I/O turn, so callbacks come one at a time, in order */
        storage_sync_cb cb = cl->cb;
        void *cb_arg = cl->cb_arg;
        uint64_t sp = cl->synced_pos;
        int err = cl->failed ? ILION_ESYNCFAILED : 0;
        pthread_mutex_unlock(&cl->mu);
        cb(cb_arg, sp, err);
        pthread_mutex_lock(&cl->mu);
    }
    cl->io_busy = false;
    pthread_cond_broadcast(&cl->synced_cv);   /* a waiter may take the next turn */
    if (pending(cl) && cl->nwaiters == 0) pthread_cond_signal(&cl->work_cv);
}

static bool want_spare(commitlog *cl) {
    return cl->spare_fd >= 0 ||
           (cl->nfree == 0 && cl->nspare == 0 && !cl->spare_disabled && !cl->closing && !cl->failed);
}

/* Zero-fills 1 MiB of the next spare segment (so that switching segments costs a rename, not
 * a 32 MiB write); called with mu held when the sync thread has nothing else to do. */
static void spare_step(commitlog *cl) {
    char path[4096];
    if (cl->spare_fd < 0) {
        cl->spare_n = cl->next_spare++;
        pthread_mutex_unlock(&cl->mu);
        spare_path(path, sizeof path, cl->dir, cl->spare_n);
        cl->spare_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cl->spare_pos = 0;
        if (cl->spare_fd < 0) {
            LOG_WARN(MOD, "creating %s: %s; segments will be made on demand", path, strerror(errno));
            pthread_mutex_lock(&cl->mu);
            cl->spare_disabled = true;
            return;
        }
    } else {
        pthread_mutex_unlock(&cl->mu);
        spare_path(path, sizeof path, cl->dir, cl->spare_n);
    }
    static const uint8_t zeros[65536];
    int rc = 0;
    for (int i = 0; i < 16 && !rc && cl->spare_pos < cl->segsize; i++) {
        uint64_t left = cl->segsize - cl->spare_pos;
        size_t n = left < sizeof zeros ? (size_t)left : sizeof zeros;
        rc = pwrite_all(cl->spare_fd, zeros, n, cl->spare_pos);
        cl->spare_pos += n;
    }
    bool done = !rc && cl->spare_pos >= cl->segsize;
    if (done && fdatasync(cl->spare_fd) != 0) rc = -errno;
    if (rc || done) {
        close(cl->spare_fd);
        cl->spare_fd = -1;
    }
    if (rc) {
        LOG_WARN(MOD, "preparing %s: %s; segments will be made on demand", path, ilion_strerror(rc));
        unlink(path);
    }
    pthread_mutex_lock(&cl->mu);
    if (rc) cl->spare_disabled = true;
    if (done) {
        if (ids_push(&cl->spares, &cl->nspare, &cl->capspare, cl->spare_n) == 0) cl->st.segments_created++;
        else cl->spare_disabled = true;
    }
}

static bool want_next(commitlog *cl) {
    return !cl->next.map && !cl->closing && !cl->failed && (cl->nfree > 0 || cl->nspare > 0);
}

/* Maps a pooled file (recycled or spare) ahead of need, so that the appender that rolls to a
 * new segment only renames it and writes the header. Pages are read into the page cache here
 * (MADV_POPULATE_READ) rather than by faults under the append lock. mu held; dropped. */
static void prepare_next(commitlog *cl) {
    bool recycled = cl->nfree > 0;
    uint32_t pid = recycled ? cl->freeids[--cl->nfree] : cl->spares[--cl->nspare];
    pthread_mutex_unlock(&cl->mu);
    char path[4096];
    if (recycled) free_path(path, sizeof path, cl->dir, pid);
    else spare_path(path, sizeof path, cl->dir, pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat sb;
    uint8_t *map = NULL;
    if (fd >= 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == cl->segsize) map = seg_map(cl, fd);
#ifdef MADV_POPULATE_READ
    /* a read error surfaces here as an error, not as SIGBUS in an appender */
    if (map && madvise(map, (size_t)cl->segsize, MADV_POPULATE_READ) != 0 && errno != EINVAL) {
        LOG_WARN(MOD, "reading %s: %s; not reused", path, strerror(errno));
        munmap(map, (size_t)cl->segsize);
        map = NULL;
    }
#endif
    if (!map) {   /* unreadable, or another size (an interrupted spare, a changed setting) */
        if (fd >= 0) close(fd);
        unlink(path);
        pthread_mutex_lock(&cl->mu);
        return;
    }
    pthread_mutex_lock(&cl->mu);
    if (cl->next.map || cl->closing || cl->failed) {   /* not needed after all: back to the pool */
        munmap(map, (size_t)cl->segsize);
        close(fd);
        if (recycled) ids_push(&cl->freeids, &cl->nfree, &cl->capfree, pid);
        else ids_push(&cl->spares, &cl->nspare, &cl->capspare, pid);
        return;
    }
    cl->next = (cl_seg){0, fd, map};
    cl->next_recycled = recycled;
    snprintf(cl->next_path, sizeof cl->next_path, "%s", path);
}

static void *sync_main(void *arg) {
    commitlog *cl = arg;
    struct timespec next_sync;
    abs_deadline(&next_sync, cl->period_ms);

    pthread_mutex_lock(&cl->mu);
    for (;;) {
        if (want_next(cl)) { prepare_next(cl); continue; }
        if (cl->io_busy) {
            if (want_spare(cl)) { spare_step(cl); continue; }
            /* a waiter is syncing (batch mode); it signals when it is done */
            struct timespec d;
            abs_deadline(&d, 2);
            pthread_cond_timedwait(&cl->work_cv, &cl->mu, &d);
            continue;
        }
        bool leaders = cl->mode == STORAGE_SYNC_BATCH && cl->nwaiters > 0 && !cl->closing;
        if (cl->nclosed > 0 && !leaders) {
            /* a segment was rolled past: sync it now, so that an earlier segment is durable
             * before much of a later one is */
            run_cycle(cl, cl->mode != STORAGE_SYNC_PERIODIC);
            continue;
        }
        bool do_sync;
        if (cl->mode == STORAGE_SYNC_PERIODIC) {
            bool sync_due = ts_passed(&next_sync);
            if (cl->closing) {
                if (!pending(cl) || cl->failed) break;
                sync_due = true;
            } else if (!sync_due) {
                if (want_spare(cl)) { spare_step(cl); continue; }
                pthread_cond_timedwait(&cl->work_cv, &cl->mu, &next_sync);
                continue;
            }
            abs_deadline(&next_sync, cl->period_ms);
            do_sync = true;
        } else {
            if (!pending(cl)) {
                if (cl->closing) break;
                if (want_spare(cl)) { spare_step(cl); continue; }
                pthread_cond_wait(&cl->work_cv, &cl->mu);
                continue;
            }
            if (leaders) {
                if (want_spare(cl)) { spare_step(cl); continue; }
                /* threads blocked in commitlog_wait lead the syncs; stay out of their way but
                 * look again soon in case they all leave */
                struct timespec d;
                abs_deadline(&d, 2);
                pthread_cond_timedwait(&cl->work_cv, &cl->mu, &d);
                continue;
            }
            if (cl->mode == STORAGE_SYNC_GROUP && !cl->closing) {
                struct timespec d;
                abs_deadline(&d, cl->window_ms);
                while (!cl->closing && !ts_passed(&d))
                    if (pthread_cond_timedwait(&cl->work_cv, &cl->mu, &d) == ETIMEDOUT) break;
                if (cl->io_busy) continue;
            }
            do_sync = true;
        }
        run_cycle(cl, do_sync);
        if (cl->failed && cl->closing) break;
    }
    pthread_mutex_unlock(&cl->mu);
    if (cl->spare_fd >= 0) {   /* half-filled: not worth keeping */
        char path[4096];
        spare_path(path, sizeof path, cl->dir, cl->spare_n);
        close(cl->spare_fd);
        cl->spare_fd = -1;
        unlink(path);
    }
    return NULL;
}
/* ---- appending ------------------------------------------------------------------------ */

static int closed_reserve(commitlog *cl) {
    if (cl->nclosed < cl->capclosed) return 0;
    size_t nc = cl->capclosed ? cl->capclosed * 2 : 8;
    cl_seg *na = realloc(cl->closed, nc * sizeof *na);
    if (!na) return -ENOMEM;
    cl->closed = na;
    cl->capclosed = nc;
    return 0;
}

/* A file for segment `id` under its live name, mapped: the prepared pooled file renamed, else
 * another pooled file, else a new one allocated on the spot (fallocate, so that a full disk is an error here rather than
 * SIGBUS on a store into the mapping later). mu held. */
static int seg_obtain(commitlog *cl, uint32_t id, cl_seg *out) {
    char path[4096];
    seg_path(path, sizeof path, cl->dir, id);
    if (cl->next.map) {
        cl_seg n = cl->next;
        cl->next.map = NULL;
        cl->next.fd = -1;
        if (rename(cl->next_path, path) == 0) {
            if (cl->next_recycled) cl->st.segments_recycled++;
            n.id = id;
            *out = n;
            return 0;
        }
        LOG_WARN(MOD, "reusing %s: %s", cl->next_path, strerror(errno));
        seg_unmap(cl, &n);
        unlink(cl->next_path);
    }
    /* The sync thread has not mapped one yet: take a pooled file directly rather than
     * allocating more disk (its pages are then read by faults, under the lock). */
    while (cl->nfree > 0 || cl->nspare > 0) {
        bool recycled = cl->nfree > 0;
        char from[4096];
        if (recycled) free_path(from, sizeof from, cl->dir, cl->freeids[--cl->nfree]);
        else spare_path(from, sizeof from, cl->dir, cl->spares[--cl->nspare]);
        if (rename(from, path) != 0) {
            LOG_WARN(MOD, "reusing %s: %s", from, strerror(errno));
            unlink(from);
            continue;
        }
        int fd = open(path, O_RDWR | O_CLOEXEC);
        struct stat sb;
        uint8_t *map = NULL;
        if (fd >= 0 && fstat(fd, &sb) == 0 && (uint64_t)sb.st_size == cl->segsize) map = seg_map(cl, fd);
        if (map) {
            if (recycled) cl->st.segments_recycled++;
            *out = (cl_seg){id, fd, map};
            return 0;
        }
        if (fd >= 0) close(fd);   /* another size: made anew below under the same name */
        break;
    }
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = posix_fallocate(fd, 0, (off_t)cl->segsize);
    uint8_t *map = rc ? NULL : seg_map(cl, fd);
    if (!rc && !map) rc = errno;
    if (rc) {
        close(fd);
        unlink(path);
        LOG_ERROR(MOD, "creating %s: %s", path, strerror(rc));
        return -rc;
    }
    cl->st.segments_created++;
    *out = (cl_seg){id, fd, map};
    return 0;
}

/* Moves appends to a new segment (the first one, or the one after a full segment); mu held.
 * The order makes every prefix of it a valid log if the process dies in between: the end
 * marker closes the old segment before the new file takes its name, and a new file whose
 * header is not yet written is recognized at replay and returned to the pool. */
static int roll(commitlog *cl) {
    bool first = cl->cur.map == NULL;
    if (!first && cl->cur_seg == UINT32_MAX) return ILION_ETOOBIG;
    uint32_t id = first ? cl->cur_seg : cl->cur_seg + 1;
    int rc = first ? 0 : closed_reserve(cl);
    if (!rc && !first && cl->nlive == cl->caplive) {
        rc = ids_push(&cl->live, &cl->nlive, &cl->caplive, id);   /* grow now, cannot fail later */
        if (!rc) cl->nlive--;
    }
    if (rc) return rc;
    if (!first && cl->segsize - cl->cur_off >= CL_END_MARK) {
        uint8_t *p = cl->cur.map + cl->cur_off;
        be32_put(p, 0);
        be32_put(p + 4, crc(p, 4) ^ cl->cur_mask);
        cl->st.writes++;
        cl->st.bytes_written += CL_END_MARK;
    }
    cl_seg ns;
    rc = seg_obtain(cl, id, &ns);
    if (rc) return rc;
    header_encode(ns.map, id, cl->segsize);
    if (!first) {
        cl->closed[cl->nclosed++] = cl->cur;
        ids_push(&cl->live, &cl->nlive, &cl->caplive, id);
    }
    cl->cur = ns;
    cl->cur_seg = id;
    cl->cur_off = CL_HDR;
    cl->cur_mask = seg_mask(id);
    cl->dir_dirty = true;
    pthread_cond_signal(&cl->work_cv);   /* sync the old segment, prepare the next file */
    return 0;
}

int commitlog_append(commitlog *cl, const void *payload, size_t len, uint64_t *pos) {
    if (len == 0) return ILION_EINVALID;   /* a zero length marks the end of a segment */
    if (len > cl->segsize - CL_HDR - CL_REC_OVERHEAD) return ILION_ETOOBIG;
    uint8_t lenb[4];
    be32_put(lenb, (uint32_t)len);
    uint32_t lcrc = crc(lenb, 4), pcrc = crc(payload, len);
    size_t need = CL_REC_OVERHEAD + len;

    pthread_mutex_lock(&cl->mu);
    if (cl->failed || cl->closing) {
        pthread_mutex_unlock(&cl->mu);
        return cl->failed ? ILION_ESYNCFAILED : ILION_ECLOSED;
    }
    if (!cl->cur.map || cl->cur_off + need > cl->segsize) {
        int rc = roll(cl);
        if (rc) {
            pthread_mutex_unlock(&cl->mu);
            return rc;
        }
    }
    /* straight into the page cache: from here on the record outlives this process */
    uint8_t *p = cl->cur.map + cl->cur_off;
    memcpy(p, lenb, 4);
    be32_put(p + 4, lcrc ^ cl->cur_mask);
    memcpy(p + 8, payload, len);
    be32_put(p + 8 + len, pcrc ^ cl->cur_mask);
    cl->cur_off += (uint32_t)need;
    cl->st.appends++;
    cl->st.writes++;
    cl->st.bytes_written += need;
    *pos = cur_pos(cl);
    if (cl->mode != STORAGE_SYNC_PERIODIC && !cl->kicked) {
        cl->kicked = true;
        pthread_cond_signal(&cl->work_cv);
    }
    pthread_mutex_unlock(&cl->mu);
    return 0;
}

bool commitlog_is_synced(commitlog *cl, uint64_t pos) {
    if (__atomic_load_n(&cl->failed, __ATOMIC_ACQUIRE)) return false;
    if (cl->mode == STORAGE_SYNC_PERIODIC) return true;
    return __atomic_load_n(&cl->synced_pos, __ATOMIC_ACQUIRE) >= pos;
}

int commitlog_wait(commitlog *cl, uint64_t pos) {
    if (cl->mode == STORAGE_SYNC_PERIODIC)
        return __atomic_load_n(&cl->failed, __ATOMIC_ACQUIRE) ? ILION_ESYNCFAILED : 0;
    pthread_mutex_lock(&cl->mu);
    cl->nwaiters++;
    while (!cl->failed && cl->synced_pos < pos && cl->thr_started) {
        if (cl->mode == STORAGE_SYNC_BATCH && !cl->io_busy && pending(cl)) {
            run_cycle(cl, true);
            continue;
        }
        if (cl->closing && !pending(cl) && !cl->io_busy) break;
        pthread_cond_wait(&cl->synced_cv, &cl->mu);
    }
    if (--cl->nwaiters == 0 && pending(cl) && !cl->io_busy) pthread_cond_signal(&cl->work_cv);
    int rc = cl->failed ? ILION_ESYNCFAILED : cl->synced_pos >= pos ? 0 : ILION_ECLOSED;
    pthread_mutex_unlock(&cl->mu);
    return rc;
}
void commitlog_set_sync_callback(commitlog *cl, storage_sync_cb cb, void *arg) {
    pthread_mutex_lock(&cl->mu);
    cl->cb = cb;
    cl->cb_arg = arg;
    pthread_mutex_unlock(&cl->mu);
}

uint64_t commitlog_position(commitlog *cl) {
    pthread_mutex_lock(&cl->mu);
    uint64_t p = (uint64_t)cl->cur_seg << 32 | cl->cur_off;
    pthread_mutex_unlock(&cl->mu);
    return p;
}

void commitlog_discard_before(commitlog *cl, uint64_t pos) {
    uint32_t id = (uint32_t)(pos >> 32);
    pthread_mutex_lock(&cl->mu);
    if (id > cl->cur_seg) id = cl->cur_seg;
    if (id > cl->discard_upto) cl->discard_upto = id;
    recycle_eligible(cl);
    pthread_mutex_unlock(&cl->mu);
}

uint64_t commitlog_active_bytes(commitlog *cl) {
    pthread_mutex_lock(&cl->mu);
    uint64_t n = 0;
    for (size_t i = 0; i < cl->nlive; i++) {
        uint32_t id = cl->live[i];
        if (id < cl->discard_upto) continue;
        n += id == cl->cur_seg ? cl->cur_off : cl->segsize;
    }
    pthread_mutex_unlock(&cl->mu);
    return n;
}

void commitlog_stats_get(commitlog *cl, commitlog_stats *s) {
    pthread_mutex_lock(&cl->mu);
    *s = cl->st;
    s->segments_live = cl->nlive;
    s->free_segments = cl->nfree;
    pthread_mutex_unlock(&cl->mu);
}

/* ---- replay --------------------------------------------------------------------------- */

/* True when some complete, valid record of this segment starts at or after `from`: then the
 * damage before it is in the middle of the log, not a torn tail. */
static bool valid_record_after(const uint8_t *b, size_t lim, size_t from, uint32_t mask) {
    for (size_t o = from; o + CL_REC_OVERHEAD <= lim; o++) {
        uint32_t len = be32_get(b + o);
        if (len == 0 || len > lim - o - CL_REC_OVERHEAD) continue;
        if (be32_get(b + o + 4) != (crc(b + o, 4) ^ mask)) continue;
        if (be32_get(b + o + 8 + len) == (crc(b + o + 8, len) ^ mask)) return true;
    }
    return false;
}

enum seg_state { SEG_CLEAN, SEG_TORN, SEG_NOHEADER };

typedef struct replay_ctx {
    uint64_t replay_from;
    commitlog_replay_cb cb;
    void *arg;
} replay_ctx;

/* Replays one segment file. *end gets the offset just past its last good record. */
static int replay_segment(const char *path, uint32_t id, bool is_last, const replay_ctx *rc_,
                          enum seg_state *state, uint32_t *end, uint64_t *file_segsize) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = -errno;
        LOG_ERROR(MOD, "opening %s: %s", path, strerror(-e));
        return e;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    uint8_t h[CL_HDR];
    size_t fsize = (size_t)sb.st_size;
    ssize_t hn = fsize >= CL_HDR ? pread(fd, h, CL_HDR, 0) : 0;
    uint64_t hid = 0, hsize = 0;
    int hrc = hn == (ssize_t)CL_HDR ? header_decode(h, CL_HDR, &hid, &hsize) : ILION_ECORRUPT;
    if (hrc == ILION_EFORMAT) {
        close(fd);
        LOG_ERROR(MOD, "%s: unsupported commit log version %u", path, be32_get(h + 4));
        return ILION_EFORMAT;
    }
    if (hrc == 0 && hid != id) hrc = ILION_ECORRUPT;
    size_t lim = fsize;
    if (hrc == 0 && hsize < lim) lim = (size_t)hsize;
    uint8_t *b = NULL;
    if (lim > 0) {
        b = malloc(lim);
        if (!b) { close(fd); return -ENOMEM; }
        size_t got = 0;
        while (got < lim) {
            ssize_t r = pread(fd, b + got, lim - got, (off_t)got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                int e = r < 0 ? -errno : ILION_ETRUNCATED;
                free(b);
                close(fd);
                LOG_ERROR(MOD, "reading %s: %s", path, ilion_strerror(e));
                return e;
            }
            got += (size_t)r;
        }
    }
    close(fd);
    uint32_t mask = seg_mask(id);
    *file_segsize = hsize;
    *end = CL_HDR;
    if (hrc != 0) {
        /* A last segment whose header never reached the disk was being activated; anything
         * else without a valid header is damage. */
        if (is_last && !valid_record_after(b, lim, CL_HDR, mask)) {
            free(b);
            *state = SEG_NOHEADER;
            return 0;
        }
        free(b);
        LOG_ERROR(MOD, "corrupt commit log segment header in %s at offset 0", path);
        return ILION_ECORRUPT;
    }

    size_t off = CL_HDR;
    const char *why = NULL;
    int rc = 0;
    *state = SEG_CLEAN;
    for (;;) {
        if (off + CL_END_MARK > lim) {
            if (off + CL_END_MARK > hsize) break;      /* segment full */
            why = "segment file shorter than its header says";
            break;
        }
        uint32_t len = be32_get(b + off);
        if (be32_get(b + off + 4) != (crc(b + off, 4) ^ mask)) { why = "bad length checksum"; break; }
        if (len == 0) break;                              /* end-of-segment marker */
        if ((uint64_t)len + CL_REC_OVERHEAD > lim - off) {
            why = (uint64_t)off + len + CL_REC_OVERHEAD <= hsize ? "record cut short"
                                                                : "record length past segment end";
            break;
        }
        if (be32_get(b + off + 8 + len) != (crc(b + off + 8, len) ^ mask)) {
            why = "bad payload checksum";
            break;
        }
        uint64_t pos = (uint64_t)id << 32 | (off + CL_REC_OVERHEAD + len);
        if (pos > rc_->replay_from && rc_->cb) {
            rc = rc_->cb(rc_->arg, b + off + 8, len, pos);
            if (rc) break;
        }
        off += CL_REC_OVERHEAD + len;
    }
    *end = (uint32_t)off;
    if (!rc && why) {
        if (is_last && !valid_record_after(b, lim, off + 1, mask)) {
            *state = SEG_TORN;
            LOG_INFO(MOD, "end of commit log in %s at offset %zu (%s: torn last record)", path, off, why);
        } else {
            LOG_ERROR(MOD, "corrupt commit log record in %s at offset %zu: %s", path, off, why);
            rc = ILION_ECORRUPT;
        }
    }
    free(b);
    return rc;
}

/* Marks the end of the last replayed segment so it reads as complete once it is no longer the
 * last one. */
static int seal_segment(commitlog *cl, const char *path, uint32_t id, uint32_t end, uint64_t hsize) {
    if ((uint64_t)end + CL_END_MARK > hsize) return 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint8_t m[CL_END_MARK];
    be32_put(m, 0);
    be32_put(m + 4, crc(m, 4) ^ seg_mask(id));
    int rc = pwrite_all(fd, m, sizeof m, end);
    if (!rc) rc = do_fsync(cl, fd);
    close(fd);
    return rc;
}

static void cl_free(commitlog *cl) {
    if (!cl) return;
    if (cl->dirfd >= 0) close(cl->dirfd);
    seg_unmap(cl, &cl->cur);
    seg_unmap(cl, &cl->next);   /* still under its pool name */
    for (size_t i = 0; i < cl->nclosed; i++) seg_unmap(cl, &cl->closed[i]);
    free(cl->closed);
    free(cl->live);
    free(cl->freeids);
    free(cl->spares);
    free(cl->dir);
    pthread_mutex_destroy(&cl->mu);
    pthread_cond_destroy(&cl->work_cv);
    pthread_cond_destroy(&cl->synced_cv);
    free(cl);
}
static int scan_dir(commitlog *cl, uint32_t **segs, size_t *nsegs, uint32_t *maxid) {
    DIR *d = opendir(cl->dir);
    if (!d) return -errno;
    size_t cap = 0;
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(d)) != NULL) {
        uint32_t id;
        char pfx[32];
        snprintf(pfx, sizeof pfx, "CommitLog-%u-", CL_VERSION);
        if (parse_name(de->d_name, pfx, &id)) {
            rc = ids_push(segs, nsegs, &cap, id);
        } else if (parse_name(de->d_name, "CommitLog-free-", &id)) {
            rc = ids_push(&cl->freeids, &cl->nfree, &cl->capfree, id);
        } else if (parse_name(de->d_name, "CommitLog-spare-", &id)) {
            /* zero-filled ahead of use; its number is not a segment id */
            rc = ids_push(&cl->spares, &cl->nspare, &cl->capspare, id);
            if (id >= cl->next_spare) cl->next_spare = id + 1;
            continue;
        } else if (strncmp(de->d_name, "CommitLog-", 10) == 0 && de->d_name[10] >= '0' &&
                   de->d_name[10] <= '9') {
            LOG_ERROR(MOD, "%s/%s: commit log segment of an unsupported version", cl->dir, de->d_name);
            rc = ILION_EFORMAT;
        } else {
            continue;
        }
        if (!rc && id > *maxid) *maxid = id;
    }
    closedir(d);
    if (!rc && *nsegs > 1) qsort(*segs, *nsegs, sizeof **segs, cmp_u32);
    return rc;
}

int commitlog_open(const commitlog_options *o, uint64_t replay_from, commitlog_replay_cb cb,
                   void *arg, commitlog **out) {
    *out = NULL;
    if (!o || !o->dir) return ILION_EINVALID;
    uint64_t segsize = o->segment_size ? o->segment_size : 32ull << 20;
    if (segsize < CL_MIN_SEGMENT || segsize > CL_MAX_SEGMENT) return ILION_EINVALID;
    if (mkdir(o->dir, 0755) != 0 && errno != EEXIST) return -errno;

    commitlog *cl = calloc(1, sizeof *cl);
    if (!cl) return -ENOMEM;
    cl->cur.fd = cl->next.fd = -1;
    cl->dirfd = -1;
    cl->spare_fd = -1;
    pthread_mutex_init(&cl->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cl->work_cv, &ca);
    pthread_cond_init(&cl->synced_cv, &ca);
    pthread_condattr_destroy(&ca);
    cl->dir = strdup(o->dir);
    cl->mode = o->sync_mode;
    cl->period_ms = o->sync_period_ms ? o->sync_period_ms : 10000;
    cl->window_ms = o->group_window_ms ? o->group_window_ms : 15;
    cl->segsize = segsize;
    cl->sync_fn = o->sync_fn;
    cl->sync_fn_arg = o->sync_fn_arg;
    if (!cl->dir) { cl_free(cl); return -ENOMEM; }
    cl->dirfd = open(cl->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cl->dirfd < 0) { int e = -errno; cl_free(cl); return e; }

    uint32_t *segs = NULL;
    size_t nsegs = 0;
    uint32_t maxid = 0;
    int rc = scan_dir(cl, &segs, &nsegs, &maxid);
    uint32_t skip_below = (uint32_t)(replay_from >> 32);
    replay_ctx rctx = {replay_from, cb, arg};
    char path[4096];
    for (size_t i = 0; !rc && i < nsegs; i++) {
        uint32_t id = segs[i];
        seg_path(path, sizeof path, cl->dir, id);
        if (id < skip_below) {
            rc = ids_push(&cl->live, &cl->nlive, &cl->caplive, id);  /* recycled below */
            continue;
        }
        bool last = i + 1 == nsegs;
        enum seg_state state = SEG_CLEAN;
        uint32_t end = CL_HDR;
        uint64_t hsize = 0;
        rc = replay_segment(path, id, last, &rctx, &state, &end, &hsize);
        if (rc) break;
        if (state == SEG_NOHEADER) {
            char fp[4096];
            free_path(fp, sizeof fp, cl->dir, id);
            if (rename(path, fp) == 0) rc = ids_push(&cl->freeids, &cl->nfree, &cl->capfree, id);
            else rc = -errno;
            if (!rc) rc = fsync_dir(cl);
            continue;
        }
        if (last) rc = seal_segment(cl, path, id, end, hsize);
        if (!rc) rc = ids_push(&cl->live, &cl->nlive, &cl->caplive, id);
    }
    free(segs);
    if (rc) { cl_free(cl); return rc; }

    if (skip_below > maxid) maxid = skip_below;
    if (maxid == UINT32_MAX) { cl_free(cl); return ILION_ETOOBIG; }
    cl->cur_seg = maxid + 1;
    cl->cur_off = CL_HDR;
    cl->cur_mask = seg_mask(cl->cur_seg);
    cl->closed_below = cl->cur_seg;
    cl->discard_upto = skip_below;
    cl->synced_pos = (uint64_t)cl->cur_seg << 32 | CL_HDR;
    rc = ids_push(&cl->live, &cl->nlive, &cl->caplive, cl->cur_seg);
    if (rc) { cl_free(cl); return rc; }
    pthread_mutex_lock(&cl->mu);
    recycle_eligible(cl);
    pthread_mutex_unlock(&cl->mu);

    if ((rc = pthread_create(&cl->thr, NULL, sync_main, cl)) != 0) { cl_free(cl); return -rc; }
    cl->thr_started = true;
    *out = cl;
    return 0;
}

void commitlog_close(commitlog *cl) {
    if (!cl) return;
    pthread_mutex_lock(&cl->mu);
    cl->closing = true;
    pthread_cond_broadcast(&cl->work_cv);
    pthread_mutex_unlock(&cl->mu);
    if (cl->thr_started) pthread_join(cl->thr, NULL);
    /* A clean end: mark where the records stop, so the next replay sees an end marker rather
     * than what looks like a torn record. */
    if (!cl->failed && cl->cur.map && (uint64_t)cl->cur_off + CL_END_MARK <= cl->segsize) {
        uint8_t *m = cl->cur.map + cl->cur_off;
        be32_put(m, 0);
        be32_put(m + 4, crc(m, 4) ^ cl->cur_mask);
        int rc = do_fsync(cl, cl->cur.fd);
        if (rc) LOG_WARN(MOD, "marking the end of %s: %s", cl->dir, ilion_strerror(rc));
    }
    cl_free(cl);
}
