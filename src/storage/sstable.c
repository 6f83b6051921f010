/* SSTable writer and reader; format in docs/sstable-format.md. */
#include "ilion/storage/sstable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lz4.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ilion/storage/blockcache.h"
#include "ilion/util/bloom.h"
#include "ilion/util/crc32c.h"
#include "ilion/util/err.h"
#include "ilion/util/fileio.h"
#include "ilion/util/log.h"
#include "ilion/util/murmur3.h"

#define MOD "sstable"
#define SST_MAGIC 0x494C494F4E535354ULL /* "ILIONSST" */
#define FOOTER_SIZE 80
#define BLOCK_HDR 9                     /* u8 compression, u32 plain length, u32 stored length */
#define BLOCK_TRAILER 4                 /* u32 crc */
#define MAX_BLOCK_PLAIN ((uint32_t)LZ4_MAX_INPUT_SIZE) /* a block holds at least one row, of any size */

enum { COMP_NONE = 0, COMP_LZ4 = 1, COMP_DEFLATE = 2 };
enum { CHUNK_START = 1, CHUNK_CONT = 2 };

static uint32_t crc32_of(const void *p, size_t n) { return crc32c(0, p, n); }

sst_keyhash sst_hash_key(const uint8_t *pk, uint32_t pklen) {
    uint64_t h[2];
    murmur3_x64_128(pk, pklen, 0, h);
    return (sst_keyhash){h[0], h[1]};
}

/* ===================================================================== writer ======== */

struct sst_writer {
    char dir[PATH_MAX];
    char tmp[PATH_MAX];
    char fin[PATH_MAX];
    int fd;
    uint64_t gen;
    storage_table_options opt;
    uint64_t off;          /* bytes written to the data section */
    buf blk;               /* current block, uncompressed */
    buf out;               /* compressed block staging */
    buf index;
    uint32_t nblocks;
    /* First chunk of the current block (for its index entry). */
    bool blk_has_first;
    int64_t first_token;
    buf first_key;
    bool first_cont;
    buf first_ck;          /* clustering key of the block's first row (lets slices skip blocks) */
    bool need_first_ck;
    bloom filter;
    sst_stats st;
    int err;
};

static void stats_ts(sst_stats *st, int64_t ts) {
    if (ts == ST_NO_TIMESTAMP) return;
    if (ts < st->min_ts) st->min_ts = ts;
    if (ts > st->max_ts) st->max_ts = ts;
}

int sst_writer_open(const char *dir, uint64_t gen, uint64_t table_id,
                    const storage_table_options *o, uint64_t expected_partitions,
                    sst_writer **out) {
    sst_writer *w = calloc(1, sizeof *w);
    if (!w) return -ENOMEM;
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    snprintf(w->tmp, sizeof w->tmp, "%s/%llu.sst.tmp", dir, (unsigned long long)gen);
    snprintf(w->fin, sizeof w->fin, "%s/%llu.sst", dir, (unsigned long long)gen);
    w->gen = gen;
    if (o) w->opt = *o;
    else storage_table_options_default(&w->opt);
    if (w->opt.block_size < 256) w->opt.block_size = 256;
    if (w->opt.block_size > (16u << 20)) w->opt.block_size = 16u << 20;
    buf_init(&w->blk);
    buf_init(&w->out);
    buf_init(&w->index);
    buf_init(&w->first_key);
    buf_init(&w->first_ck);
    int rc = bloom_init(&w->filter, expected_partitions, w->opt.bloom_fp_chance);
    if (rc) {
        free(w);
        return rc;
    }
    w->st.table_id = table_id;
    w->st.min_ts = INT64_MAX;
    w->st.max_ts = INT64_MIN;
    w->st.min_token = INT64_MAX;
    w->st.max_token = INT64_MIN;
    w->st.max_local_deletion_time = INT32_MIN;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        rc = -errno;
        bloom_free(&w->filter);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

uint64_t sst_writer_partitions(const sst_writer *w) { return w->st.partitions; }

static int flush_block(sst_writer *w) {
    if (w->blk.len == 0) return 0;
    if (w->blk.oom) return -ENOMEM;
    size_t plain = w->blk.len;
    if (plain > MAX_BLOCK_PLAIN) return ILION_ETOOBIG;
    uint8_t comp = COMP_NONE;
    buf_reset(&w->out);
    if (buf_reserve(&w->out, BLOCK_HDR + BLOCK_TRAILER + plain + (size_t)LZ4_compressBound((int)plain) +
                                 (size_t)compressBound((uLong)plain)) != 0)
        return -ENOMEM;
    uint8_t *payload = w->out.data + BLOCK_HDR;
    size_t stored = 0;
    if (w->opt.compression == STORAGE_COMPRESS_LZ4) {
        int n = LZ4_compress_default((const char *)w->blk.data, (char *)payload, (int)plain,
                                     LZ4_compressBound((int)plain));
        if (n > 0 && (size_t)n < plain) {
            comp = COMP_LZ4;
            stored = (size_t)n;
        }
    } else if (w->opt.compression == STORAGE_COMPRESS_DEFLATE) {
        uLongf dl = compressBound((uLong)plain);
        if (compress2(payload, &dl, w->blk.data, (uLong)plain, 1) == Z_OK && dl < plain) {
            comp = COMP_DEFLATE;
            stored = dl;
        }
    }
    if (comp == COMP_NONE) {
        memcpy(payload, w->blk.data, plain);
        stored = plain;
    }
    w->out.data[0] = comp;
    be32_put(w->out.data + 1, (uint32_t)plain);
    be32_put(w->out.data + 5, (uint32_t)stored);
    be32_put(w->out.data + BLOCK_HDR + stored, crc32_of(w->out.data, BLOCK_HDR + stored));
    size_t total = BLOCK_HDR + stored + BLOCK_TRAILER;
    int rc = file_write_full(w->fd, w->out.data, total);
    if (rc) return rc;
    /* Index entry: first key of the block, continuation flag, offset, length. */
    buf_u64(&w->index, (uint64_t)w->first_token);
    buf_varint(&w->index, w->first_key.len);
    buf_put(&w->index, w->first_key.data, w->first_key.len);
    buf_u8(&w->index, w->first_cont ? 1 : 0);
    buf_varint(&w->index, w->first_ck.len);
    buf_put(&w->index, w->first_ck.data, w->first_ck.len);
    buf_u64(&w->index, w->off);
    buf_u32(&w->index, (uint32_t)total);
    if (w->index.oom) return -ENOMEM;
    w->off += total;
    w->nblocks++;
    buf_reset(&w->blk);
    w->blk_has_first = false;
    return 0;
}

/* Starts a chunk of partition p in the current block; returns the offset of its nrows field. */
static size_t start_chunk(sst_writer *w, const st_partition *p, int kind) {
    if (!w->blk_has_first) {
        w->blk_has_first = true;
        w->first_token = p->token;
        buf_reset(&w->first_key);
        buf_put(&w->first_key, p->pk, p->pklen);
        w->first_cont = kind == CHUNK_CONT;
        buf_reset(&w->first_ck);
        w->need_first_ck = true;
    }
    buf_u8(&w->blk, (uint8_t)kind);
    buf_u64(&w->blk, (uint64_t)p->token);
    buf_varint(&w->blk, p->pklen);
    buf_put(&w->blk, p->pk, p->pklen);
    if (p->del.ts != ST_NO_TIMESTAMP) {
        buf_u8(&w->blk, 1);
        buf_u64(&w->blk, (uint64_t)p->del.ts);
        buf_u32(&w->blk, (uint32_t)p->del.local_time);
    } else {
        buf_u8(&w->blk, 0);
    }
    size_t at = w->blk.len;
    buf_u32(&w->blk, 0); /* nrows */
    buf_u32(&w->blk, 0); /* bytes of rows */
    return at;
}

static void end_chunk(sst_writer *w, size_t at, uint32_t nrows) {
    buf_patch_u32(&w->blk, at, nrows);
    buf_patch_u32(&w->blk, at + 4, (uint32_t)(w->blk.len - at - 8));
}

int sst_writer_add(sst_writer *w, const st_partition *p) {
    if (w->err) return w->err;
    sst_keyhash h = sst_hash_key(p->pk, p->pklen);
    bloom_add(&w->filter, h.h1, h.h2);
    sst_stats *st = &w->st;
    st->partitions++;
    if (p->token < st->min_token) st->min_token = p->token;
    if (p->token > st->max_token) st->max_token = p->token;
    if (p->del.ts != ST_NO_TIMESTAMP) {
        stats_ts(st, p->del.ts);
        st->tombstones++;
        if (p->del.local_time > st->max_local_deletion_time) st->max_local_deletion_time = p->del.local_time;
    }
    if (w->blk.len >= w->opt.block_size) {
        int rc = flush_block(w);
        if (rc) return w->err = rc;
    }
    size_t at = start_chunk(w, p, CHUNK_START);
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->nrows; i++) {
        const st_row *r = &p->rows[i];
        st->rows++;
        stats_ts(st, r->marker.ts);
        if (r->del.ts != ST_NO_TIMESTAMP) {
            stats_ts(st, r->del.ts);
            st->tombstones++;
            if (r->del.local_time > st->max_local_deletion_time) st->max_local_deletion_time = r->del.local_time;
        }
        for (uint32_t j = 0; j < r->ncells; j++) {
            const st_cell *c = &r->cells[j];
            st->cells++;
            stats_ts(st, c->ts);
            if (c->flags & ST_CELL_TOMBSTONE) {
                st->tombstones++;
                if (c->expiry > st->max_local_deletion_time) st->max_local_deletion_time = c->expiry;
            } else if (c->expiry != ST_NO_EXPIRY && c->expiry - c->ttl > st->max_local_deletion_time) {
                st->max_local_deletion_time = c->expiry - c->ttl;
            }
        }
        if (w->need_first_ck) {
            buf_put(&w->first_ck, r->ck, r->cklen);
            w->need_first_ck = false;
        }
        st_row_encode(r, &w->blk);
        n++;
        if (w->blk.len >= w->opt.block_size && i + 1 < p->nrows) {
            end_chunk(w, at, n);
            int rc = flush_block(w);
            if (rc) return w->err = rc;
            at = start_chunk(w, p, CHUNK_CONT);
            n = 0;
        }
    }
    end_chunk(w, at, n);
    if (w->blk.oom) return w->err = -ENOMEM;
    return 0;
}

static void encode_stats(const sst_stats *st, buf *b) {
    buf_u8(b, 1);
    buf_u64(b, st->table_id);
    buf_u64(b, (uint64_t)st->min_ts);
    buf_u64(b, (uint64_t)st->max_ts);
    buf_u64(b, (uint64_t)st->min_token);
    buf_u64(b, (uint64_t)st->max_token);
    buf_u64(b, st->partitions);
    buf_u64(b, st->rows);
    buf_u64(b, st->cells);
    buf_u64(b, st->tombstones);
    buf_u32(b, (uint32_t)st->max_local_deletion_time);
    buf_u64(b, st->commitlog_pos);
    buf_u64(b, st->data_bytes);
    buf_u32(b, st->nreplaces);
    for (uint32_t i = 0; i < st->nreplaces; i++) buf_u64(b, st->replaces[i]);
}

static int decode_stats(sst_stats *st, const uint8_t *p, size_t n) {
    rd r;
    rd_init(&r, p, n);
    uint8_t v;
    uint32_t u32;
    memset(st, 0, sizeof *st);
    if (rd_u8(&r, &v) || v != 1) return ILION_ECORRUPT;
    uint64_t f[12];
    for (int i = 0; i < 9; i++)
        if (rd_u64(&r, &f[i])) return ILION_ECORRUPT;
    if (rd_u32(&r, &u32)) return ILION_ECORRUPT;
    if (rd_u64(&r, &f[9]) || rd_u64(&r, &f[10])) return ILION_ECORRUPT;
    st->table_id = f[0];
    st->min_ts = (int64_t)f[1];
    st->max_ts = (int64_t)f[2];
    st->min_token = (int64_t)f[3];
    st->max_token = (int64_t)f[4];
    st->partitions = f[5];
    st->rows = f[6];
    st->cells = f[7];
    st->tombstones = f[8];
    st->max_local_deletion_time = (int32_t)u32;
    st->commitlog_pos = f[9];
    st->data_bytes = f[10];
    if (rd_u32(&r, &st->nreplaces) || st->nreplaces > SST_MAX_REPLACES) return ILION_ECORRUPT;
    for (uint32_t i = 0; i < st->nreplaces; i++)
        if (rd_u64(&r, &st->replaces[i])) return ILION_ECORRUPT;
    return rd_left(&r) == 0 ? 0 : ILION_ECORRUPT;
}

static int write_section(sst_writer *w, const buf *b, uint8_t *toc) {
    if (b->oom) return -ENOMEM;
    be64_put(toc, w->off);
    be64_put(toc + 8, b->len);
    be32_put(toc + 16, crc32_of(b->data, b->len));
    int rc = b->len ? file_write_full(w->fd, b->data, b->len) : 0;
    w->off += b->len;
    return rc;
}

static void writer_free(sst_writer *w) {
    if (w->fd >= 0) close(w->fd);
    buf_free(&w->blk);
    buf_free(&w->out);
    buf_free(&w->index);
    buf_free(&w->first_key);
    buf_free(&w->first_ck);
    bloom_free(&w->filter);
    free(w);
}

void sst_writer_abort(sst_writer *w) {
    if (!w) return;
    unlink(w->tmp);
    writer_free(w);
}

int sst_writer_finish(sst_writer *w, uint64_t commitlog_pos, const uint64_t *replaces,
                      uint32_t nreplaces) {
    int rc = w->err;
    if (!rc) rc = flush_block(w);
    if (rc) {
        sst_writer_abort(w);
        return rc;
    }
    w->st.commitlog_pos = commitlog_pos;
    w->st.data_bytes = w->off;
    if (nreplaces > SST_MAX_REPLACES) nreplaces = SST_MAX_REPLACES;
    w->st.nreplaces = nreplaces;
    if (nreplaces) memcpy(w->st.replaces, replaces, nreplaces * sizeof *replaces);
    if (w->st.partitions == 0) {
        w->st.min_token = w->st.max_token = 0;
    }
    uint8_t footer[FOOTER_SIZE];
    memset(footer, 0, sizeof footer);
    be64_put(footer, SST_MAGIC);
    be32_put(footer + 8, SST_FORMAT_VERSION);
    be32_put(footer + 12, 0);
    buf idx, flt, sts;
    buf_init(&idx);
    buf_init(&flt);
    buf_init(&sts);
    buf_u32(&idx, w->nblocks);
    buf_put(&idx, w->index.data, w->index.len);
    bloom_encode(&w->filter, &flt);
    encode_stats(&w->st, &sts);
    rc = write_section(w, &idx, footer + 16);
    if (!rc) rc = write_section(w, &flt, footer + 36);
    if (!rc) rc = write_section(w, &sts, footer + 56);
    buf_free(&idx);
    buf_free(&flt);
    buf_free(&sts);
    if (!rc) {
        be32_put(footer + 76, crc32_of(footer, 76));
        rc = file_write_full(w->fd, footer, sizeof footer);
    }
    if (!rc && fdatasync(w->fd) != 0) rc = -errno;
    if (!rc) {
        close(w->fd);
        w->fd = -1;
        if (rename(w->tmp, w->fin) != 0) rc = -errno;
    }
    if (!rc) rc = file_fsync_dir(w->dir);
    if (rc) {
        LOG_ERROR(MOD, "writing %s failed: %s", w->fin, ilion_strerror(rc));
        sst_writer_abort(w);
        return rc;
    }
    writer_free(w);
    return 0;
}

/* ===================================================================== reader ======== */

typedef struct idx_entry {
    int64_t token;
    const uint8_t *pk;
    uint32_t pklen;
    uint8_t cont;
    const uint8_t *ck;     /* first row's clustering key */
    uint32_t cklen;
    uint64_t off;
    uint32_t len;
} idx_entry;

struct sstable {
    atomic_int refs;
    atomic_bool obsolete;
    char path[PATH_MAX];
    int fd;
    uint64_t gen;
    uint64_t file_bytes;
    uint8_t *index_raw;
    idx_entry *idx;
    uint32_t nblocks;
    bloom filter;
    sst_stats st;
    sst_block_cache *cache;    /* verified plain blocks for point reads; NULL: none */
    uint64_t cache_id;
};

static int sst_fail(const sstable *s, int err, uint64_t off, const char *what) {
    LOG_ERROR(MOD, "%s: %s at offset %llu (%s)", s->path, what, (unsigned long long)off,
              ilion_strerror(err));
    return err;
}

static int read_section(sstable *s, const uint8_t *toc, uint64_t limit, uint8_t **out,
                        size_t *len, const char *what) {
    uint64_t off = be64_get(toc), n = be64_get(toc + 8);
    uint32_t crc = be32_get(toc + 16);
    if (off > limit || n > limit - off || n > (1ULL << 32))
        return sst_fail(s, ILION_ECORRUPT, s->file_bytes - FOOTER_SIZE, "section bounds in footer");
    uint8_t *d = malloc(n ? n : 1);
    if (!d) return -ENOMEM;
    int rc = file_pread_full(s->fd, d, n, off);
    if (rc) {
        free(d);
        return sst_fail(s, rc == -EIO ? ILION_ETRUNCATED : rc, off, what);
    }
    if (crc32_of(d, n) != crc) {
        free(d);
        char msg[64];
        snprintf(msg, sizeof msg, "%s checksum mismatch", what);
        return sst_fail(s, ILION_ECHECKSUM, off, msg);
    }
    *out = d;
    *len = n;
    return 0;
}

static void sstable_free(sstable *s) {
    /* A closed file's blocks are never looked up again and age out of the LRU: erasing them
     * here would walk the whole cache on whatever thread drops the last reference (the event
     * loop, after a compaction). */
    if (s->cache) sst_block_cache_unref(s->cache);
    if (s->fd >= 0) close(s->fd);
    free(s->index_raw);
    free(s->idx);
    bloom_free(&s->filter);
    free(s);
}

int sstable_open(const char *dir, uint64_t gen, sstable **out) {
    sstable *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    atomic_init(&s->refs, 1);
    snprintf(s->path, sizeof s->path, "%s/%llu.sst", dir, (unsigned long long)gen);
    s->gen = gen;
    s->fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (s->fd < 0) {
        int e = -errno;
        free(s);
        return e;
    }
    struct stat sb;
    int rc = 0;
    if (fstat(s->fd, &sb) != 0) {
        rc = -errno;
        goto fail;
    }
    s->file_bytes = (uint64_t)sb.st_size;
    if (s->file_bytes < FOOTER_SIZE) {
        rc = sst_fail(s, ILION_ECORRUPT, 0, "file shorter than its footer");
        goto fail;
    }
    uint8_t footer[FOOTER_SIZE];
    uint64_t foff = s->file_bytes - FOOTER_SIZE;
    rc = file_pread_full(s->fd, footer, FOOTER_SIZE, foff);
    if (rc) goto fail;
    if (be64_get(footer) != SST_MAGIC) {
        rc = sst_fail(s, ILION_ECORRUPT, foff, "bad magic in footer");
        goto fail;
    }
    if (be32_get(footer + 76) != crc32_of(footer, 76)) {
        rc = sst_fail(s, ILION_ECHECKSUM, foff, "footer checksum mismatch");
        goto fail;
    }
    if (be32_get(footer + 8) != SST_FORMAT_VERSION) {
        rc = sst_fail(s, ILION_EFORMAT, foff + 8, "unsupported format version");
        goto fail;
    }
    uint8_t *flt = NULL, *sts = NULL;
    size_t ilen, flen, slen;
    rc = read_section(s, footer + 16, foff, &s->index_raw, &ilen, "index");
    if (rc) goto fail;
    rc = read_section(s, footer + 36, foff, &flt, &flen, "filter");
    if (rc) goto fail;
    rc = bloom_decode(&s->filter, flt, flen);
    free(flt);
    if (rc) {
        rc = sst_fail(s, rc, be64_get(footer + 36), "filter malformed");
        goto fail;
    }
    rc = read_section(s, footer + 56, foff, &sts, &slen, "statistics");
    if (rc) goto fail;
    rc = decode_stats(&s->st, sts, slen);
    free(sts);
    if (rc) {
        rc = sst_fail(s, rc, be64_get(footer + 56), "statistics malformed");
        goto fail;
    }
    /* Parse the index; every entry must point inside the data section, in key order. */
    uint64_t data_end = be64_get(footer + 16);
    uint64_t ioff = be64_get(footer + 16);
    rd r;
    rd_init(&r, s->index_raw, ilen);
    uint32_t nb;
    if (rd_u32(&r, &nb) || nb > ilen / 15) {
        rc = sst_fail(s, ILION_ECORRUPT, ioff, "index block count");
        goto fail;
    }
    s->idx = calloc(nb ? nb : 1, sizeof *s->idx);
    if (!s->idx) {
        rc = -ENOMEM;
        goto fail;
    }
    uint64_t expect_off = 0;
    for (uint32_t i = 0; i < nb; i++) {
        idx_entry *e = &s->idx[i];
        uint64_t t, kl, cl;
        if (rd_u64(&r, &t) || rd_varint(&r, &kl) || kl > rd_left(&r) ||
            rd_bytes(&r, (size_t)kl, &e->pk) || rd_u8(&r, &e->cont) || e->cont > 1 ||
            rd_varint(&r, &cl) || cl > rd_left(&r) || rd_bytes(&r, (size_t)cl, &e->ck) ||
            rd_u64(&r, &e->off) || rd_u32(&r, &e->len) || e->off != expect_off ||
            e->len < BLOCK_HDR + BLOCK_TRAILER || e->off + e->len > data_end) {
            rc = sst_fail(s, ILION_ECORRUPT, ioff + (uint64_t)(r.p - s->index_raw), "index entry");
            goto fail;
        }
        e->token = (int64_t)t;
        e->pklen = (uint32_t)kl;
        e->cklen = (uint32_t)cl;
        expect_off = e->off + e->len;
        if (i && st_key_compare(s->idx[i - 1].token, s->idx[i - 1].pk, s->idx[i - 1].pklen,
                                e->token, e->pk, e->pklen) > 0) {
            rc = sst_fail(s, ILION_ECORRUPT, ioff, "index out of order");
            goto fail;
        }
    }
    if (expect_off != data_end || rd_left(&r) != 0) {
        rc = sst_fail(s, ILION_ECORRUPT, ioff, "index does not cover the data section");
        goto fail;
    }
    s->nblocks = nb;
    *out = s;
    return 0;
fail:
    sstable_free(s);
    return rc;
}

void sstable_ref(sstable *s) { atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed); }

void sstable_unref(sstable *s) {
    if (!s) return;
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1) {
        if (atomic_load(&s->obsolete)) unlink(s->path);
        sstable_free(s);
    }
}

void sstable_mark_obsolete(sstable *s) { atomic_store(&s->obsolete, true); }

void sstable_set_block_cache(sstable *s, sst_block_cache *c) {
    if (s->cache || !c) return;
    sst_block_cache_ref(c);
    s->cache = c;
    s->cache_id = sst_block_cache_new_file_id();
}
uint64_t sstable_generation(const sstable *s) { return s->gen; }
const sst_stats *sstable_stats(const sstable *s) { return &s->st; }
uint64_t sstable_file_bytes(const sstable *s) { return s->file_bytes; }
const char *sstable_path(const sstable *s) { return s->path; }

bool sstable_may_contain(const sstable *s, int64_t token, sst_keyhash h) {
    if (s->st.partitions == 0) return false;
    if (token < s->st.min_token || token > s->st.max_token) return false;
    return bloom_may_contain(&s->filter, h.h1, h.h2);
}

/* --- blocks ------------------------------------------------------------------------- */

typedef struct scratch {
    buf raw;
    buf plain;
} scratch;

/* Reads block bi, checks its CRC and decompresses it into sc->plain. */
static int read_block(sstable *s, uint32_t bi, scratch *sc) {
    const idx_entry *e = &s->idx[bi];
    buf_reset(&sc->raw);
    if (buf_reserve(&sc->raw, e->len) != 0) return -ENOMEM;
    int rc = file_pread_full(s->fd, sc->raw.data, e->len, e->off);
    if (rc) return sst_fail(s, rc == -EIO ? ILION_ETRUNCATED : rc, e->off, "reading data block");
    const uint8_t *b = sc->raw.data;
    uint32_t plain = be32_get(b + 1), stored = be32_get(b + 5);
    if ((uint64_t)stored + BLOCK_HDR + BLOCK_TRAILER != e->len)
        return sst_fail(s, ILION_ECORRUPT, e->off, "data block length disagrees with index");
    if (be32_get(b + BLOCK_HDR + stored) != crc32_of(b, BLOCK_HDR + stored))
        return sst_fail(s, ILION_ECHECKSUM, e->off, "data block checksum mismatch");
    if (plain > MAX_BLOCK_PLAIN) return sst_fail(s, ILION_ECORRUPT, e->off, "data block too large");
    buf_reset(&sc->plain);
    if (buf_reserve(&sc->plain, plain ? plain : 1) != 0) return -ENOMEM;
    switch (b[0]) {
    case COMP_NONE:
        if (stored != plain) return sst_fail(s, ILION_ECORRUPT, e->off, "data block sizes");
        memcpy(sc->plain.data, b + BLOCK_HDR, plain);
        break;
    case COMP_LZ4: {
        int n = LZ4_decompress_safe((const char *)b + BLOCK_HDR, (char *)sc->plain.data, (int)stored,
                                    (int)plain);
        if (n < 0 || (uint32_t)n != plain)
            return sst_fail(s, ILION_ECORRUPT, e->off, "lz4 block does not decompress");
        break;
    }
    case COMP_DEFLATE: {
        uLongf dl = plain;
        if (uncompress(sc->plain.data, &dl, b + BLOCK_HDR, stored) != Z_OK || dl != plain)
            return sst_fail(s, ILION_ECORRUPT, e->off, "deflate block does not decompress");
        break;
    }
    default:
        return sst_fail(s, ILION_ECORRUPT, e->off, "unknown block compression");
    }
    sc->plain.len = plain;
    return 0;
}

/* Block bi's verified plain bytes, from the cache when it holds them, else read (and then
 * cached). *held (maybe NULL) must be released once the bytes are no longer used. */
static int fetch_block(sstable *s, uint32_t bi, scratch *sc, const sst_cached_block **held,
                       const uint8_t **data, uint32_t *len) {
    *held = NULL;
    if (s->cache) {
        const sst_cached_block *cb = sst_block_cache_lookup(s->cache, s->cache_id, bi);
        if (cb) {
            *held = cb;
            *data = cb->data;
            *len = cb->len;
            return 0;
        }
    }
    int rc = read_block(s, bi, sc);
    if (rc) return rc;
    /* Only after read_block verified the CRC (and the block decompressed) may it be cached. */
    if (s->cache)
        sst_block_cache_release(sst_block_cache_insert(s->cache, s->cache_id, bi, sc->plain.data,
                                                       (uint32_t)sc->plain.len));
    *data = sc->plain.data;
    *len = (uint32_t)sc->plain.len;
    return 0;
}

typedef struct chunk {
    uint8_t kind;
    int64_t token;
    const uint8_t *pk;
    uint32_t pklen;
    st_deletion del;
    uint32_t nrows;
    const uint8_t *rows;
    uint32_t rows_len;
} chunk;

static int parse_chunk(rd *r, chunk *c) {
    uint64_t t, kl;
    uint8_t hd;
    if (rd_u8(r, &c->kind) || (c->kind != CHUNK_START && c->kind != CHUNK_CONT)) return ILION_ECORRUPT;
    if (rd_u64(r, &t) || rd_varint(r, &kl) || kl > rd_left(r) || rd_bytes(r, (size_t)kl, &c->pk) ||
        rd_u8(r, &hd) || hd > 1)
        return ILION_ECORRUPT;
    c->token = (int64_t)t;
    c->pklen = (uint32_t)kl;
    c->del.ts = ST_NO_TIMESTAMP;
    c->del.local_time = 0;
    if (hd) {
        uint64_t ts;
        uint32_t lt;
        if (rd_u64(r, &ts) || rd_u32(r, &lt) || (int64_t)ts == ST_NO_TIMESTAMP) return ILION_ECORRUPT;
        c->del.ts = (int64_t)ts;
        c->del.local_time = (int32_t)lt;
    }
    if (rd_u32(r, &c->nrows) || rd_u32(r, &c->rows_len) || c->rows_len > rd_left(r) ||
        rd_bytes(r, c->rows_len, &c->rows))
        return ILION_ECORRUPT;
    return 0;
}

/* Appends the rows of chunk c that fall in slice to p (arena a; pointers into the block). */
static int chunk_rows(st_arena *a, const chunk *c, const storage_slice *slice, st_partition *p) {
    if (c->nrows > c->rows_len / 3) return ILION_ECORRUPT;
    if (!c->nrows) return 0;
    uint32_t need = p->nrows + c->nrows;
    if (need > p->rows_cap) {
        uint32_t cap = need < 4 ? 4 : need * 2;
        st_row *nr = arena_alloc(a, sizeof *nr * cap);
        if (!nr) return -ENOMEM;
        if (p->nrows) memcpy(nr, p->rows, sizeof *nr * p->nrows);
        p->rows = nr;
        p->rows_cap = cap;
    }
    rd r;
    rd_init(&r, c->rows, c->rows_len);
    for (uint32_t i = 0; i < c->nrows; i++) {
        st_row *row = &p->rows[p->nrows];
        int rc = st_row_decode(a, &r, row);
        if (rc) return ILION_ECORRUPT;
        if (p->nrows && st_ck_compare(p->rows[p->nrows - 1].ck, p->rows[p->nrows - 1].cklen,
                                      row->ck, row->cklen) >= 0) {
            /* Rows must ascend; a row rejected by the slice is not kept but still ordered. */
            return ILION_ECORRUPT;
        }
        if (storage_slice_contains(slice, row->ck, row->cklen)) p->nrows++;
    }
    if (rd_left(&r) != 0) return ILION_ECORRUPT;
    return 0;
}

/* Copies the key (when copy_pk) and the clustering keys and values of rows [from, nrows) of p
 * (arrays already in a) into a, so p no longer points at the block. */
static int relocate_from(st_arena *a, st_partition *p, uint32_t from, bool copy_pk) {
    if (copy_pk) {
        const uint8_t *k = arena_dup(a, p->pk, p->pklen);
        if (!k && p->pklen) return -ENOMEM;
        p->pk = k ? k : (const uint8_t *)"";
    }
    size_t total = 0;
    for (uint32_t i = from; i < p->nrows; i++) {
        st_row *r = &p->rows[i];
        total += r->cklen;
        for (uint32_t j = 0; j < r->ncells; j++) total += r->cells[j].len;
    }
    uint8_t *mem = total ? arena_alloc(a, total) : NULL;
    if (total && !mem) return -ENOMEM;
    for (uint32_t i = from; i < p->nrows; i++) {
        st_row *r = &p->rows[i];
        if (r->cklen) {
            memcpy(mem, r->ck, r->cklen);
            r->ck = mem;
            mem += r->cklen;
        }
        for (uint32_t j = 0; j < r->ncells; j++) {
            st_cell *c = &r->cells[j];
            if (!c->value) continue;
            if (c->len) {
                memcpy(mem, c->value, c->len);
                c->value = mem;
                mem += c->len;
            } else {
                c->value = (const uint8_t *)"";
            }
        }
    }
    return 0;
}

static int relocate(st_arena *a, st_partition *p) { return relocate_from(a, p, 0, true); }

static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_destroy(void *p) {
    scratch *sc = p;
    buf_free(&sc->raw);
    buf_free(&sc->plain);
    free(sc);
}
static void scratch_init(void) { pthread_key_create(&scratch_key, scratch_destroy); }

static scratch *thread_scratch(void) {
    pthread_once(&scratch_once, scratch_init);
    scratch *sc = pthread_getspecific(scratch_key);
    if (!sc) {
        sc = calloc(1, sizeof *sc);
        if (!sc) return NULL;
        pthread_setspecific(scratch_key, sc);
    }
    return sc;
}

static inline bool is_cont_of(const idx_entry *e, int64_t token, const uint8_t *pk, uint32_t pklen) {
    return e->cont && e->token == token && e->pklen == pklen && memcmp(e->pk, pk, pklen) == 0;
}

/* First block that may hold key (token, pk): see docs/sstable-format.md ("lookup"). */
static int64_t find_start_block(const sstable *s, int64_t token, const uint8_t *pk, uint32_t pklen,
                                bool *exact) {
    uint32_t lo = 0, hi = s->nblocks;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const idx_entry *e = &s->idx[mid];
        if (st_key_compare(e->token, e->pk, e->pklen, token, pk, pklen) < 0) lo = mid + 1;
        else hi = mid;
    }
    *exact = false;
    if (lo < s->nblocks && !s->idx[lo].cont &&
        st_key_compare(s->idx[lo].token, s->idx[lo].pk, s->idx[lo].pklen, token, pk, pklen) == 0) {
        *exact = true;
        return lo;
    }
    return (int64_t)lo - 1;
}

int sstable_get(sstable *s, int64_t token, const uint8_t *pk, uint32_t pklen,
                const storage_slice *slice, st_arena *a, st_partition **out) {
    *out = NULL;
    if (s->nblocks == 0 || token < s->st.min_token || token > s->st.max_token) return 0;
    bool exact;
    int64_t bi = find_start_block(s, token, pk, pklen, &exact);
    if (bi < 0) return 0;
    scratch *sc = thread_scratch();
    if (!sc) return -ENOMEM;
    /* A wide partition spans continuation blocks; their first clustering keys let a slice skip
     * the blocks entirely before its start (continuation chunks repeat the partition header). */
    if (slice && slice->start) {
        while ((uint32_t)bi + 1 < s->nblocks && is_cont_of(&s->idx[bi + 1], token, pk, pklen) &&
               st_ck_compare(s->idx[bi + 1].ck, s->idx[bi + 1].cklen, slice->start, slice->start_len) <= 0)
            bi++;
    }
    st_partition *p = NULL;
    uint32_t moved = 0;        /* rows of p already copied out of their block */
    int rc = 0;
    for (uint32_t b = (uint32_t)bi; b < s->nblocks; b++) {
        if (b > (uint32_t)bi && !is_cont_of(&s->idx[b], token, pk, pklen)) break;
        if (b > (uint32_t)bi && slice && slice->end) {
            int c = st_ck_compare(s->idx[b].ck, s->idx[b].cklen, slice->end, slice->end_len);
            if (c > 0 || (c == 0 && !slice->end_incl)) break;
        }
        const sst_cached_block *held;
        const uint8_t *bdata;
        uint32_t blen;
        rc = fetch_block(s, b, sc, &held, &bdata, &blen);
        if (rc) return rc;
        rd r;
        rd_init(&r, bdata, blen);
        bool done = false;
        while (rd_left(&r)) {
            chunk c;
            if (parse_chunk(&r, &c)) {
                rc = sst_fail(s, ILION_ECORRUPT, s->idx[b].off, "malformed chunk in data block");
                break;
            }
            int cmp = st_key_compare(c.token, c.pk, c.pklen, token, pk, pklen);
            if (cmp < 0) {
                if (p) {
                    rc = sst_fail(s, ILION_ECORRUPT, s->idx[b].off, "chunk out of order");
                    break;
                }
                continue;
            }
            if (cmp > 0) {
                done = true;
                break;
            }
            if (!p) {
                p = arena_alloc(a, sizeof *p);
                const uint8_t *k = p ? arena_dup(a, c.pk, c.pklen) : NULL;
                if (!p || (!k && c.pklen)) {
                    rc = -ENOMEM;
                    break;
                }
                memset(p, 0, sizeof *p);
                p->table_id = s->st.table_id;
                p->token = c.token;
                p->pk = k ? k : (const uint8_t *)"";
                p->pklen = c.pklen;
                p->del = c.del;
            }
            rc = chunk_rows(a, &c, slice, p);
            if (rc) {
                rc = sst_fail(s, rc, s->idx[b].off, "malformed rows in data block");
                break;
            }
        }
        /* Rows point into the block, which is released (or overwritten) next. */
        if (!rc && p) {
            rc = relocate_from(a, p, moved, false);
            moved = p->nrows;
        }
        sst_block_cache_release(held);
        if (rc) return rc;
        /* The partition ended this block: continue only into a continuation block. */
        if (done || !p) break;
    }
    if (p) p->rows_cap = 0;
    *out = p;
    return 0;
}

/* --- iterator ----------------------------------------------------------------------- */

enum bound_mode { BOUND_NONE, BOUND_GT_KEY, BOUND_GE_KEY, BOUND_GT_TOKEN, BOUND_GE_TOKEN };

struct sst_iter {
    sstable *s;
    uint32_t next_block;
    scratch sc;
    rd r;                  /* position inside sc.plain */
    bool loaded;
    enum bound_mode mode;
    int64_t token;
    uint8_t *pk;
    uint32_t pklen;
};

int sst_iter_new(sstable *s, int64_t token, const uint8_t *pk, uint32_t pklen, bool inclusive,
                 sst_iter **out) {
    sst_iter *it = calloc(1, sizeof *it);
    if (!it) return -ENOMEM;
    sstable_ref(s);
    it->s = s;
    if (!pk && token == INT64_MIN) {
        it->mode = BOUND_NONE;
    } else {
        it->token = token;
        if (pk) {
            it->pk = malloc(pklen ? pklen : 1);
            if (!it->pk) {
                sst_iter_free(it);
                return -ENOMEM;
            }
            memcpy(it->pk, pk, pklen);
            it->pklen = pklen;
            it->mode = inclusive ? BOUND_GE_KEY : BOUND_GT_KEY;
        } else {
            it->mode = inclusive ? BOUND_GE_TOKEN : BOUND_GT_TOKEN;
        }
        bool exact;
        int64_t bi = find_start_block(s, token, pk ? pk : (const uint8_t *)"", pk ? pklen : 0, &exact);
        it->next_block = bi < 0 ? 0 : (uint32_t)bi;
    }
    *out = it;
    return 0;
}

void sst_iter_free(sst_iter *it) {
    if (!it) return;
    buf_free(&it->sc.raw);
    buf_free(&it->sc.plain);
    free(it->pk);
    sstable_unref(it->s);
    free(it);
}

static bool past_bound(const sst_iter *it, const chunk *c) {
    switch (it->mode) {
    case BOUND_NONE: return true;
    case BOUND_GT_TOKEN: return c->token > it->token;
    case BOUND_GE_TOKEN: return c->token >= it->token;
    case BOUND_GT_KEY: return st_key_compare(c->token, c->pk, c->pklen, it->token, it->pk, it->pklen) > 0;
    case BOUND_GE_KEY: return st_key_compare(c->token, c->pk, c->pklen, it->token, it->pk, it->pklen) >= 0;
    }
    return true;
}

/* Loads the next block; 0 at end (returns 0 and sets *ok false). */
static int iter_load(sst_iter *it, bool *ok) {
    *ok = false;
    if (it->next_block >= it->s->nblocks) return 0;
    int rc = read_block(it->s, it->next_block, &it->sc);
    if (rc) return rc;
    it->next_block++;
    rd_init(&it->r, it->sc.plain.data, it->sc.plain.len);
    it->loaded = true;
    *ok = true;
    return 0;
}

int sst_iter_next(sst_iter *it, st_arena *a, st_partition **out) {
    sstable *s = it->s;
    st_partition *p = NULL;
    for (;;) {
        if (!it->loaded || rd_left(&it->r) == 0) {
            if (p) {
                /* Does the partition continue in the next block? */
                if (it->next_block >= s->nblocks) break;
                const idx_entry *e = &s->idx[it->next_block];
                if (!(e->cont && e->token == p->token && e->pklen == p->pklen &&
                      memcmp(e->pk, p->pk, p->pklen) == 0))
                    break;
            }
            bool ok;
            int rc = iter_load(it, &ok);
            if (rc) return rc;
            if (!ok) break;
            continue;
        }
        const uint8_t *save = it->r.p;
        chunk c;
        uint64_t boff = s->idx[it->next_block - 1].off;
        if (parse_chunk(&it->r, &c)) return sst_fail(s, ILION_ECORRUPT, boff, "malformed chunk in data block");
        if (p) {
            if (st_key_compare(c.token, c.pk, c.pklen, p->token, p->pk, p->pklen) != 0) {
                it->r.p = save; /* next partition: leave it for the next call */
                break;
            }
            if (c.kind != CHUNK_CONT) return sst_fail(s, ILION_ECORRUPT, boff, "repeated partition");
        } else {
            if (!past_bound(it, &c)) continue;
            if (c.kind == CHUNK_CONT && it->mode == BOUND_NONE)
                return sst_fail(s, ILION_ECORRUPT, boff, "continuation without start");
            p = arena_alloc(a, sizeof *p);
            if (!p) return -ENOMEM;
            memset(p, 0, sizeof *p);
            p->table_id = s->st.table_id;
            p->token = c.token;
            p->pk = c.pk;
            p->pklen = c.pklen;
            p->del = c.del;
        }
        int rc = chunk_rows(a, &c, NULL, p);
        if (rc) return sst_fail(s, rc, boff, "malformed rows in data block");
        /* Rows point into the block buffer, which the next load replaces: copy now. */
        rc = relocate(a, p);
        if (rc) return rc;
    }
    if (!p) return 0;
    p->rows_cap = 0;
    *out = p;
    return 1;
}
