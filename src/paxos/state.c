/* The replica state store: an append-only log of full per-key states (CRC-framed), loaded into
 * a hash map at start; the last record for a key wins. Rewritten (temp → fsync → rename →
 * fsync dir) when it has grown well past the live state. Promised and committed ballots are
 * never dropped; an accepted proposal is dropped once a commit at or above it is known. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ilion/util/crc32c.h"
#include "ilion/util/err.h"
#include "ilion/util/fileio.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"
#include "paxos_int.h"

static uint64_t key_hash(uint64_t table_id, const void *pk, uint32_t pklen) {
    uint64_t h[2];
    murmur3_x64_128(pk, pklen, table_id, h);
    return h[0] ^ (h[1] * 31);
}

static size_t entry_rec_size(const px_entry *e) {
    return 8 + 1 + 8 + 4 + e->pklen + 48 + 8 + (e->proposal ? e->proposal_len : 0) + (e->cvalue ? e->cvalue_len : 0);
}

static int grow(px_store *s) {
    size_t nb = s->nbuckets ? s->nbuckets * 2 : 1024;
    px_entry **b = calloc(nb, sizeof *b);
    if (!b) return -ENOMEM;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (px_entry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            e->next = b[e->hash & (nb - 1)];
            b[e->hash & (nb - 1)] = e;
        }
    free(s->buckets);
    s->buckets = b;
    s->nbuckets = nb;
    return 0;
}

px_entry *pxs_find(px_store *s, uint64_t table_id, const void *pk, uint32_t pklen, bool create) {
    uint64_t h = key_hash(table_id, pk, pklen);
    if (s->nbuckets)
        for (px_entry *e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->next)
            if (e->hash == h && e->table_id == table_id && e->pklen == pklen && memcmp(e->pk, pk, pklen) == 0)
                return e;
    if (!create) return NULL;
    if (s->count + 1 > s->nbuckets && grow(s)) return NULL;
    px_entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->pk = malloc(pklen ? pklen : 1);
    if (!e->pk) {
        free(e);
        return NULL;
    }
    memcpy(e->pk, pk, pklen);
    e->pklen = pklen;
    e->table_id = table_id;
    e->hash = h;
    e->promised = s->floor;
    e->next = s->buckets[h & (s->nbuckets - 1)];
    s->buckets[h & (s->nbuckets - 1)] = e;
    s->count++;
    s->live_bytes += entry_rec_size(e);
    return e;
}

static void encode_entry(const px_entry *e, buf *out) {
    size_t off = out->len;
    buf_u32(out, 0);
    buf_u32(out, 0);
    buf_u8(out, 1); /* record type: full state of one key */
    buf_u64(out, e->table_id);
    buf_u32(out, e->pklen);
    buf_put(out, e->pk, e->pklen);
    buf_put(out, e->promised.b, 16);
    buf_put(out, e->accepted.b, 16);
    buf_put(out, e->committed.b, 16);
    uint32_t pl = e->proposal ? e->proposal_len : 0;
    buf_u32(out, e->proposal ? pl : UINT32_MAX);
    if (e->proposal) buf_put(out, e->proposal, pl);
    buf_u32(out, e->cvalue ? e->cvalue_len : UINT32_MAX);
    if (e->cvalue) buf_put(out, e->cvalue, e->cvalue_len);
    if (out->oom) return;
    uint32_t blen = (uint32_t)(out->len - off - 8);
    buf_patch_u32(out, off, blen);
    uint32_t crc = crc32c(0, out->data + off, 4);
    crc = crc32c(crc, out->data + off + 8, blen);
    buf_patch_u32(out, off + 4, crc);
}

void pxs_record(px_store *s, const px_entry *e) {
    size_t before = s->pending.len;
    encode_entry(e, &s->pending);
    s->log_bytes += s->pending.len - before;
}

static void raise_floor(px_store *s, const paxos_ballot *b) {
    if (paxos_ballot_cmp(b, &s->floor) > 0) s->floor = *b;
}

void pxs_snapshot(px_store *s, buf *out, int64_t prune_before_us) {
    for (size_t i = 0; i < s->nbuckets; i++)
        for (px_entry **pp = &s->buckets[i], *e; (e = *pp);) {
            if (!e->proposal && paxos_ballot_us(&e->promised) < prune_before_us &&
                paxos_ballot_us(&e->accepted) < prune_before_us && paxos_ballot_us(&e->committed) < prune_before_us) {
                raise_floor(s, &e->promised);
                raise_floor(s, &e->committed);
                *pp = e->next;
                s->count--;
                free(e->pk);
                free(e->cvalue);
                free(e);
                continue;
            }
            pp = &e->next;
        }
    size_t off = out->len;
    buf_u32(out, 0);
    buf_u32(out, 0);
    buf_u8(out, 2); /* record type: the floor */
    buf_put(out, s->floor.b, 16);
    if (!out->oom) {
        buf_patch_u32(out, off, 17);
        buf_patch_u32(out, off + 4, crc32c(crc32c(0, out->data + off, 4), out->data + off + 8, 17));
    }
    uint64_t live = out->len - off;
    for (size_t i = 0; i < s->nbuckets; i++)
        for (px_entry *e = s->buckets[i]; e; e = e->next) {
            size_t before = out->len;
            encode_entry(e, out);
            live += out->len - before;
        }
    s->live_bytes = live;
    s->log_bytes = live + 8;
}

/* Applies one decoded record body. */
static int load_record(px_store *s, const uint8_t *p, size_t n) {
    rd r;
    rd_init(&r, p, n);
    uint8_t type;
    uint64_t tid;
    uint32_t pklen, pl;
    const uint8_t *pk, *pb, *prop = NULL, *cv = NULL;
    uint32_t cl;
    if (rd_u8(&r, &type)) return ILION_ECORRUPT;
    if (type == 2) {
        paxos_ballot f;
        const uint8_t *fb;
        if (rd_bytes(&r, 16, &fb) || rd_left(&r)) return ILION_ECORRUPT;
        memcpy(f.b, fb, 16);
        raise_floor(s, &f);
        return 0;
    }
    if (type != 1 || rd_u64(&r, &tid) || rd_u32(&r, &pklen) ||
        rd_bytes(&r, pklen, &pk) || rd_bytes(&r, 48, &pb) || rd_u32(&r, &pl))
        return ILION_ECORRUPT;
    if (pl != UINT32_MAX && rd_bytes(&r, pl, &prop)) return ILION_ECORRUPT;
    if (rd_u32(&r, &cl) || (cl != UINT32_MAX && rd_bytes(&r, cl, &cv))) return ILION_ECORRUPT;
    if (rd_left(&r)) return ILION_ECORRUPT;
    px_entry *e = pxs_find(s, tid, pk, pklen, true);
    if (!e) return -ENOMEM;
    memcpy(e->promised.b, pb, 16);
    memcpy(e->accepted.b, pb + 16, 16);
    memcpy(e->committed.b, pb + 32, 16);
    free(e->proposal);
    e->proposal = NULL;
    e->proposal_len = 0;
    if (prop) {
        e->proposal = malloc(pl ? pl : 1);
        if (!e->proposal) return -ENOMEM;
        memcpy(e->proposal, prop, pl);
        e->proposal_len = pl;
    }
    free(e->cvalue);
    e->cvalue = NULL;
    e->cvalue_len = 0;
    if (cv) {
        e->cvalue = malloc(cl ? cl : 1);
        if (!e->cvalue) return -ENOMEM;
        memcpy(e->cvalue, cv, cl);
        e->cvalue_len = cl;
    }
    return 0;
}

static int write_header(int fd) {
    uint8_t h[8];
    be32_put(h, PXS_MAGIC);
    be32_put(h + 4, PXS_FORMAT);
    return file_write_full(fd, h, 8);
}

int pxs_open(px_store *s, const char *data_dir) {
    memset(s, 0, sizeof *s);
    s->fd = -1;
    buf_init(&s->pending);
    snprintf(s->dir, sizeof s->dir, "%s/paxos", data_dir);
    snprintf(s->path, sizeof s->path, "%s/paxos.log", s->dir);
    int rc = file_mkdirs(s->dir);
    if (rc) return rc;
    if (grow(s)) return -ENOMEM;
    uint8_t *data = NULL;
    size_t len = 0;
    rc = file_read_all(s->path, (size_t)1 << 34, &data, &len);
    if (rc == -ENOENT) {
        len = 0;
        data = NULL;
    } else if (rc) {
        return rc;
    }
    size_t good = 0;
    if (len >= 8) {
        if (be32_get(data) != PXS_MAGIC || be32_get(data + 4) != PXS_FORMAT) {
            LOG_ERROR("paxos", "%s: not a paxos state log of format %u", s->path, PXS_FORMAT);
            free(data);
            return ILION_EFORMAT;
        }
        size_t off = 8;
        good = 8;
        while (off + 8 <= len) {
            uint32_t blen = be32_get(data + off), crc = be32_get(data + off + 4);
            if (blen > PXS_MAX_RECORD || off + 8 + blen > len) break; /* torn tail */
            uint32_t c = crc32c(crc32c(0, data + off, 4), data + off + 8, blen);
            if (c != crc) {
                if (off + 8 + blen == len) break; /* the last record, torn while written */
                LOG_ERROR("paxos", "%s: checksum mismatch in record at offset %zu", s->path, off);
                free(data);
                return ILION_ECORRUPT;
            }
            rc = load_record(s, data + off + 8, blen);
            if (rc) {
                LOG_ERROR("paxos", "%s: bad record at offset %zu", s->path, off);
                free(data);
                return rc;
            }
            off += 8 + blen;
            good = off;
        }
        if (good < len) LOG_WARN("paxos", "%s: torn tail of %zu bytes dropped", s->path, len - good);
    }
    free(data);
    if (good < 8) {
        /* New (or header torn): start a fresh file durably. */
        buf empty;
        buf_init(&empty);
        rc = pxs_write(s, NULL, 0, true, true);
        buf_free(&empty);
        if (rc) return rc;
        s->log_bytes = 8;
        return 0;
    }
    s->fd = open(s->path, O_WRONLY | O_CLOEXEC);
    if (s->fd < 0) return -errno;
    if (ftruncate(s->fd, (off_t)good) || lseek(s->fd, 0, SEEK_END) < 0) {
        rc = -errno;
        close(s->fd);
        s->fd = -1;
        return rc;
    }
    s->log_bytes = good;
    return 0;
}

int pxs_write(px_store *s, const uint8_t *data, size_t len, bool rewrite, bool do_sync) {
    if (!rewrite) {
        if (s->fd < 0) return ILION_ECLOSED;
        int rc = len ? file_write_full(s->fd, data, len) : 0;
        if (!rc && do_sync && fdatasync(s->fd)) rc = -errno;
        return rc;
    }
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", s->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return -errno;
    int rc = write_header(fd);
    if (!rc && len) rc = file_write_full(fd, data, len);
    if (!rc && fsync(fd)) rc = -errno;
    if (!rc && rename(tmp, s->path)) rc = -errno;
    if (!rc) rc = file_fsync_dir(s->dir);
    if (rc) {
        close(fd);
        unlink(tmp);
        return rc;
    }
    if (s->fd >= 0) close(s->fd);
    s->fd = fd;
    return 0;
}

void pxs_close(px_store *s) {
    for (size_t i = 0; i < s->nbuckets; i++)
        for (px_entry *e = s->buckets[i], *n; e; e = n) {
            n = e->next;
            free(e->pk);
            free(e->proposal);
            free(e->cvalue);
            free(e);
        }
    free(s->buckets);
    s->buckets = NULL;
    s->nbuckets = s->count = 0;
    buf_free(&s->pending);
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
}
