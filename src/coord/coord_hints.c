/* Hinted handoff. A write that a replica missed (it was down, or did not answer in time) is
 * kept in hints_directory/<target host id>.hints, an append-only file of CRC-framed records
 * (format in docs/internode-protocol.md, "Hints"), fsynced before an ANY write counts it, else
 * with the next periodic check (Cassandra also flushes hints periodically). Every
 * hint_check_interval_ms the files whose target the failure detector sees up are replayed in
 * order, one HINT request (of up to 128 records) at a time; the file is deleted once all of it is acknowledged.
 * Hints older than max_hint_window_ms are dropped instead of replayed.
 * The fsyncs run on the loop: hints are written only while a replica is down or slow. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "coord_int.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/fileio.h"
#include "ilion/util/log.h"

#define HINT_MAX_RECORD (64u << 20)
#define HINT_MAX_REFUSALS 30
#define HINT_BATCH_RECORDS 128
#define HINT_BATCH_BYTES (1u << 20)

typedef struct hint_file {
    struct hint_file *next;
    coord *c;
    uint8_t host_id[16];
    int fd;                  /* -1: no file (everything delivered) */
    uint64_t size;           /* bytes of complete records */
    uint64_t delivered;      /* records before this offset are acknowledged (or dropped) */
    uint64_t pending;        /* records not yet delivered */
    bool delivering;
    bool dirty;              /* appended since the last fsync */
    uint32_t refusals;       /* error answers to the record at `delivered` */
    uint64_t msg_id;
    uint64_t rec_end;        /* end of the records in flight */
    uint32_t rec_count;      /* and their number */
} hint_file;

struct coord_hints {
    hint_file *files;
    bool timer_on;
};

static uint32_t crc_of(const void *p, size_t n) {
    return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
}

static void hex_id(const uint8_t id[16], char out[33]) {
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void file_path(const coord *c, const uint8_t id[16], char *out, size_t n) {
    char h[33];
    hex_id(id, h);
    snprintf(out, n, "%s/%s.hints", c->hints_dir, h);
}

bool coord_hints_enabled(const coord *c) {
    return c->hints && c->hints_dir && c->opt.hinted_handoff_enabled;
}

/* Reads the record at off: 0 with the body in *body (malloc'd) and *end, 1 at a clean end,
 * ILION_ETRUNCATED for a torn record, ILION_ECHECKSUM/ECORRUPT for a damaged one. */
static int read_record(int fd, uint64_t off, uint64_t limit, uint8_t **body, uint32_t *blen,
                       uint64_t *end) {
    *body = NULL;
    if (off >= limit) return 1;
    uint8_t h[8];
    if (limit - off < 8 || file_pread_full(fd, h, 8, off)) return ILION_ETRUNCATED;
    uint32_t len = be32_get(h);
    if (crc_of(h, 4) != be32_get(h + 4)) return ILION_ECHECKSUM;
    if (len < 8 || len > HINT_MAX_RECORD) return ILION_ECORRUPT;
    if (limit - off - 8 < (uint64_t)len + 4) return ILION_ETRUNCATED;
    uint8_t *b = malloc((size_t)len + 4);
    if (!b) return -ENOMEM;
    if (file_pread_full(fd, b, (size_t)len + 4, off + 8)) {
        free(b);
        return ILION_ETRUNCATED;
    }
    if (crc_of(b, len) != be32_get(b + len)) {
        free(b);
        return ILION_ECHECKSUM;
    }
    *body = b;
    *blen = len;
    *end = off + 8 + len + 4;
    return 0;
}

static hint_file *file_find(coord *c, const uint8_t id[16], bool create) {
    for (hint_file *f = c->hints->files; f; f = f->next)
        if (memcmp(f->host_id, id, 16) == 0) return f;
    if (!create) return NULL;
    hint_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    f->c = c;
    memcpy(f->host_id, id, 16);
    f->fd = -1;
    f->next = c->hints->files;
    c->hints->files = f;
    return f;
}

/* Opens an existing file at start-up: complete records are kept, a torn tail is cut off, a
 * damaged record ends the usable part (reported). */
static void file_load(coord *c, const char *name, const uint8_t id[16]) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", c->hints_dir, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        LOG_WARN("coord", "hint file %s: %s", path, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st)) {
        close(fd);
        return;
    }
    uint64_t off = 0, n = 0;
    for (;;) {
        uint8_t *b;
        uint32_t len;
        uint64_t end;
        int rc = read_record(fd, off, (uint64_t)st.st_size, &b, &len, &end);
        if (rc == 1) break;
        if (rc) {
            if (rc != ILION_ETRUNCATED)
                LOG_WARN("coord", "hint file %s: damaged record at offset %llu (%s); later hints lost",
                         path, (unsigned long long)off, ilion_strerror(rc));
            if (ftruncate(fd, (off_t)off) == 0) fdatasync(fd);
            break;
        }
        free(b);
        off = end;
        n++;
    }
    if (n == 0) {
        close(fd);
        unlink(path);
        return;
    }
    hint_file *f = file_find(c, id, true);
    if (!f) {
        close(fd);
        return;
    }
    f->fd = fd;
    f->size = off;
    f->delivered = 0;
    f->pending = n;
    c->stats.hints_pending += n;
    LOG_INFO("coord", "%llu hints kept for %s", (unsigned long long)n, name);
}

static bool target_of(coord *c, const uint8_t id[16], net_addr *out) {
    const ring *rg = cluster_ring(c->cluster);
    for (uint32_t i = 0; i < ring_endpoint_count(rg); i++) {
        const ring_endpoint *ep = ring_endpoint_at(rg, i);
        if (memcmp(ep->host_id, id, 16) == 0) {
            *out = ep->addr;
            return true;
        }
    }
    return false;
}

static void file_done(hint_file *f) {
    coord *c = f->c;
    char path[4096];
    file_path(c, f->host_id, path, sizeof path);
    close(f->fd);
    f->fd = -1;
    unlink(path);
    file_fsync_dir(c->hints_dir);
    c->stats.hints_pending -= f->pending;
    f->pending = 0;
    f->size = f->delivered = 0;
}

static void deliver_next(hint_file *f);

static void hint_answered(void *arg, int err, uint8_t verb, const uint8_t *p, size_t len) {
    hint_file *f = arg;
    f->delivering = false;
    if (err) {
        bool transient = err == ILION_ETIMEOUT || err == ILION_EUNAVAILABLE || err == ILION_ECLOSED ||
                         err == -ECONNREFUSED || err == ILION_EOVERLOADED;
        /* The target refused the record (a table it does not know yet, or no more): retried
         * at the next checks, dropped after HINT_MAX_REFUSALS so later hints still go. */
        if (transient || ++f->refusals < HINT_MAX_REFUSALS) {
            LOG_DEBUG("coord", "hint delivery paused: %s", ilion_strerror(err));
            return; /* the next check retries from the same record */
        }
        char h[33];
        hex_id(f->host_id, h);
        LOG_WARN("coord", "hint for %s dropped after %u refusals: %s", h, f->refusals, ilion_strerror(err));
        f->c->stats.hints_dropped += f->rec_count;
    } else {
        f->c->stats.hints_delivered += f->rec_count;
    }
    f->refusals = 0;
    f->delivered = f->rec_end;
    f->pending -= f->rec_count;
    f->c->stats.hints_pending -= f->rec_count;
    deliver_next(f);
}

static void deliver_next(hint_file *f) {
    coord *c = f->c;
    net_addr to;
    while (f->fd >= 0 && !f->delivering) {
        if (f->delivered >= f->size) {
            file_done(f);
            return;
        }
        bool up = target_of(c, f->host_id, &to) && cluster_is_alive(c->cluster, &to);
        uint8_t *b;
        uint32_t len;
        uint64_t end;
        int rc = read_record(f->fd, f->delivered, f->size, &b, &len, &end);
        if (rc) {
            char h[33];
            hex_id(f->host_id, h);
            LOG_WARN("coord", "hints for %s: unreadable record at offset %llu (%s); rest dropped", h,
                     (unsigned long long)f->delivered, ilion_strerror(rc));
            c->stats.hints_dropped += f->pending;
            f->delivered = f->size;
            continue;
        }
        int64_t created = (int64_t)be64_get(b);
        int64_t age = clock_now_us() / 1000 - created;
        if (age > (int64_t)c->opt.max_hint_window_ms) {
            free(b);
            f->delivered = end;
            f->pending--;
            c->stats.hints_pending--;
            c->stats.hints_dropped++;
            continue;
        }
        if (!up) {
            /* Expired records went above, also for a node that left the ring for good. */
            free(b);
            return;
        }
        /* Following records go in the same HINT message (one round trip and one sync on the
         * target for many hints), except while the target refuses: then one at a time. */
        buf m;
        buf_init(&m);
        uint32_t nparts = 0, nrec = 0;
        bool ok = len - 8 >= 5 && b[8] == COORD_MSG_VERSION;
        if (ok) {
            coord_message_begin(&m, 0);
            nparts = be32_get(b + 9);
            buf_put(&m, b + 13, len - 13);
        } else {
            buf_put(&m, b + 8, len - 8); /* sent alone: the target refuses it */
        }
        nrec = 1;
        free(b);
        while (ok && f->refusals == 0 && nrec < HINT_BATCH_RECORDS && m.len < HINT_BATCH_BYTES) {
            uint64_t e2;
            if (read_record(f->fd, end, f->size, &b, &len, &e2)) break;
            bool fits = len - 8 >= 5 && b[8] == COORD_MSG_VERSION &&
                        clock_now_us() / 1000 - (int64_t)be64_get(b) <= (int64_t)c->opt.max_hint_window_ms;
            if (fits) {
                nparts += be32_get(b + 9);
                buf_put(&m, b + 13, len - 13);
                nrec++;
                end = e2;
            }
            free(b);
            if (!fits) break;
        }
        if (ok) buf_patch_u32(&m, 1, nparts);
        f->rec_end = end;
        f->rec_count = nrec;
        f->delivering = true;
        rc = m.oom ? -ENOMEM
                   : net_request(c->ns, &to, NET_VERB_HINT, m.data, m.len, c->opt.write_request_timeout_ms,
                                 hint_answered, f, &f->msg_id);
        buf_free(&m);
        if (rc) f->delivering = false;
        return;
    }
}

static void on_tick(uv_timer_t *t) {
    coord *c = t->data;
    for (hint_file *f = c->hints->files; f; f = f->next) {
        if (f->fd >= 0 && f->dirty) {
            if (fdatasync(f->fd)) LOG_ERROR("coord", "hint file sync failed: %s", strerror(errno));
            f->dirty = false;
        }
        if (f->fd >= 0 && !f->delivering) deliver_next(f); /* also drops expired hints */
    }
}

int coord_hints_store(coord *c, const net_addr *target, const uint8_t *msg, size_t len, bool sync) {
    if (!coord_hints_enabled(c)) return ILION_EINVALID;
    const ring_endpoint *ep = ring_find(cluster_ring(c->cluster), target);
    if (!ep || len + 8 > HINT_MAX_RECORD) return ILION_EINVALID;
    hint_file *f = file_find(c, ep->host_id, true);
    if (!f) return -ENOMEM;
    if (f->fd < 0) {
        char path[4096];
        file_path(c, f->host_id, path, sizeof path);
        f->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (f->fd < 0) {
            int e = -errno;
            LOG_ERROR("coord", "hint file %s: %s", path, strerror(errno));
            return e;
        }
        f->size = f->delivered = 0;
        file_fsync_dir(c->hints_dir);
    }
    size_t rl = 8 + 8 + len + 4;
    uint8_t *r = malloc(rl);
    if (!r) return -ENOMEM;
    be32_put(r, (uint32_t)(8 + len));
    be32_put(r + 4, crc_of(r, 4));
    be64_put(r + 8, (uint64_t)(clock_now_us() / 1000));
    memcpy(r + 16, msg, len);
    be32_put(r + 16 + len, crc_of(r + 8, 8 + len));
    int rc = 0;
    errno = 0;
    if (pwrite(f->fd, r, rl, (off_t)f->size) != (ssize_t)rl) rc = errno ? -errno : -EIO;
    else if (sync && fdatasync(f->fd)) rc = -errno;
    free(r);
    if (rc) {
        LOG_ERROR("coord", "writing a hint failed: %s", ilion_strerror(rc));
        return rc;
    }
    f->size += rl;
    f->dirty = !sync;
    f->pending++;
    c->stats.hints_pending++;
    c->stats.hints_written++;
    return 0;
}

int coord_hints_open(coord *c) {
    c->hints = calloc(1, sizeof *c->hints);
    if (!c->hints) return -ENOMEM;
    if (!c->hints_dir) return 0;
    int rc = file_mkdirs(c->hints_dir);
    if (rc) return rc;
    DIR *d = opendir(c->hints_dir);
    if (!d) return -errno;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n != 32 + 6 || strcmp(de->d_name + 32, ".hints") != 0) continue;
        uint8_t id[16];
        bool ok = true;
        for (int i = 0; i < 16 && ok; i++) {
            unsigned v;
            char two[3] = {de->d_name[2 * i], de->d_name[2 * i + 1], 0};
            if (sscanf(two, "%2x", &v) != 1) ok = false;
            id[i] = (uint8_t)v;
        }
        if (ok) file_load(c, de->d_name, id);
    }
    closedir(d);
    uv_timer_init(c->loop, &c->hint_timer);
    c->hint_timer.data = c;
    c->open_handles++;
    c->hints->timer_on = true;
    uv_timer_start(&c->hint_timer, on_tick, c->opt.hint_check_interval_ms, c->opt.hint_check_interval_ms);
    return 0;
}

void coord_hints_close(coord *c) {
    if (!c->hints) return;
    hint_file *f = c->hints->files;
    while (f) {
        hint_file *nx = f->next;
        if (f->delivering) net_cancel(c->ns, f->msg_id);
        if (f->fd >= 0 && f->dirty) fdatasync(f->fd);
        if (f->fd >= 0) close(f->fd);
        free(f);
        f = nx;
    }
    if (c->hints->timer_on) uv_close((uv_handle_t *)&c->hint_timer, coord_handle_closed);
    free(c->hints);
    c->hints = NULL;
}
