#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/schema/md5.h"
#include "ilion/schema/schema.h"
#include "ilion/util/err.h"

void schema_table_params_default(schema_table_params *p) {
    memset(p, 0, sizeof *p);
    p->bloom_filter_fp_chance = 0.01;
    p->gc_grace_seconds = 864000;
    p->crc_check_chance = 1.0;
    p->chunk_length_in_kb = 4; /* 4 KiB blocks: point reads measured faster (docs/sstable-format.md §5) */
    p->min_threshold = 4;
    p->max_threshold = 32;
    strcpy(p->compression_class, "org.apache.cassandra.io.compress.LZ4Compressor");
    strcpy(p->compaction_class, "org.apache.cassandra.db.compaction.SizeTieredCompactionStrategy");
    strcpy(p->speculative_retry, "99p");
}

schema_catalog *schema_catalog_new(void) { return calloc(1, sizeof(schema_catalog)); }

void schema_table_free(schema_table *t) {
    if (!t) return;
    free(t->cols);
    free(t);
}

void schema_keyspace_free(schema_keyspace *k) {
    if (!k) return;
    for (size_t i = 0; i < k->ntables; i++) schema_table_free(k->tables[i]);
    free(k->tables);
    free(k);
}

void schema_catalog_free(schema_catalog *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nks; i++) schema_keyspace_free(c->ks[i]);
    free(c->ks);
    free(c);
}

schema_table *schema_table_alloc(uint16_t ncols) {
    schema_table *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->cols = calloc(ncols ? ncols : 1, sizeof *t->cols);
    if (!t->cols) {
        free(t);
        return NULL;
    }
    t->ncols = ncols;
    schema_table_params_default(&t->params);
    return t;
}

/* Binary search over a name-sorted array of pointers whose first field is the name. */
static size_t ks_pos(const schema_catalog *c, const char *name, bool *found) {
    size_t lo = 0, hi = c->nks;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(c->ks[mid]->name, name);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = false;
    return lo;
}

static size_t tbl_pos(const schema_keyspace *k, const char *name, bool *found) {
    size_t lo = 0, hi = k->ntables;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(k->tables[mid]->name, name);
        if (r == 0) {
            *found = true;
            return mid;
        }
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    *found = false;
    return lo;
}

schema_keyspace *schema_keyspace_get(const schema_catalog *c, const char *name) {
    bool f;
    size_t i = ks_pos(c, name, &f);
    return f ? c->ks[i] : NULL;
}

schema_table *schema_table_get(const schema_catalog *c, const char *ks, const char *name) {
    schema_keyspace *k = schema_keyspace_get(c, ks);
    if (!k) return NULL;
    bool f;
    size_t i = tbl_pos(k, name, &f);
    return f ? k->tables[i] : NULL;
}

schema_table *schema_table_by_id(const schema_catalog *c, uint64_t id) {
    for (size_t i = 0; i < c->nks; i++)
        for (size_t j = 0; j < c->ks[i]->ntables; j++)
            if (c->ks[i]->tables[j]->id == id) return c->ks[i]->tables[j];
    return NULL;
}

int schema_column_index(const schema_table *t, const char *name) {
    for (uint16_t i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0) return i;
    return -1;
}

const schema_column *schema_column_get(const schema_table *t, const char *name) {
    int i = schema_column_index(t, name);
    return i < 0 ? NULL : &t->cols[i];
}

static int insert_ptr(void ***arr, size_t *n, size_t pos, void *p) {
    void **a = realloc(*arr, (*n + 1) * sizeof *a);
    if (!a) return -ENOMEM;
    memmove(a + pos + 1, a + pos, (*n - pos) * sizeof *a);
    a[pos] = p;
    *arr = a;
    (*n)++;
    return 0;
}

int schema_keyspace_add(schema_catalog *c, schema_keyspace *k) {
    bool f;
    size_t i = ks_pos(c, k->name, &f);
    if (f) return ILION_EEXISTS;
    return insert_ptr((void ***)&c->ks, &c->nks, i, k);
}

int schema_keyspace_remove(schema_catalog *c, const char *name) {
    bool f;
    size_t i = ks_pos(c, name, &f);
    if (!f) return ILION_ENOTFOUND;
    schema_keyspace_free(c->ks[i]);
    memmove(c->ks + i, c->ks + i + 1, (c->nks - i - 1) * sizeof *c->ks);
    c->nks--;
    return 0;
}

int schema_table_add(schema_catalog *c, schema_table *t) {
    schema_keyspace *k = schema_keyspace_get(c, t->ks);
    if (!k) return ILION_ENOTFOUND;
    bool f;
    size_t i = tbl_pos(k, t->name, &f);
    if (f) return ILION_EEXISTS;
    return insert_ptr((void ***)&k->tables, &k->ntables, i, t);
}

int schema_table_remove(schema_catalog *c, const char *ks, const char *name) {
    schema_keyspace *k = schema_keyspace_get(c, ks);
    if (!k) return ILION_ENOTFOUND;
    bool f;
    size_t i = tbl_pos(k, name, &f);
    if (!f) return ILION_ENOTFOUND;
    schema_table_free(k->tables[i]);
    memmove(k->tables + i, k->tables + i + 1, (k->ntables - i - 1) * sizeof *k->tables);
    k->ntables--;
    return 0;
}

void schema_catalog_update_version(schema_catalog *c) {
    schema_md5_ctx m;
    schema_md5_init(&m);
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < c->nks; i++) {
        const schema_keyspace *k = c->ks[i];
        if (k->is_system) continue;
        buf_reset(&b);
        schema_keyspace_encode(k, &b);
        for (size_t j = 0; j < k->ntables; j++) schema_table_encode(k->tables[j], &b);
        if (b.len) schema_md5_update(&m, b.data, b.len);
    }
    buf_free(&b);
    uint8_t d[16];
    schema_md5_final(&m, d);
    d[6] = (uint8_t)((d[6] & 0x0F) | 0x30);
    d[8] = (uint8_t)((d[8] & 0x3F) | 0x80);
    memcpy(c->version, d, 16);
}

/* --- binary definitions ---------------------------------------------------------------- */

#define SCHEMA_DEF_VERSION 1

static void put_name(buf *b, const char *s) {
    size_t n = strlen(s);
    buf_u16(b, (uint16_t)n);
    buf_put(b, s, n);
}

static int get_name(rd *r, char *dst, size_t cap) {
    uint16_t n;
    const uint8_t *p;
    if (rd_u16(r, &n) || n >= cap || rd_bytes(r, n, &p)) return -1;
    memcpy(dst, p, n);
    dst[n] = 0;
    if (memchr(dst, 0, n)) return -1;
    return 0;
}

static void put_double(buf *b, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    buf_u64(b, u);
}

static int get_double(rd *r, double *d) {
    uint64_t u;
    if (rd_u64(r, &u)) return -1;
    memcpy(d, &u, 8);
    return 0;
}

void schema_keyspace_encode(const schema_keyspace *k, buf *out) {
    buf_u8(out, SCHEMA_DEF_VERSION);
    put_name(out, k->name);
    buf_u8(out, k->durable_writes);
    buf_u8(out, (uint8_t)k->repl.cls);
    buf_u32(out, k->repl.rf);
    buf_u32(out, k->repl.ndcs);
    for (uint32_t i = 0; i < k->repl.ndcs && i < SCHEMA_MAX_DCS; i++) {
        put_name(out, k->repl.dcs[i].name);
        buf_u32(out, k->repl.dcs[i].rf);
    }
}

int schema_keyspace_decode(const uint8_t *p, size_t n, schema_keyspace **out) {
    rd r;
    rd_init(&r, p, n);
    schema_keyspace *k = calloc(1, sizeof *k);
    if (!k) return -ENOMEM;
    uint8_t v, dw, cls;
    if (rd_u8(&r, &v) || v != SCHEMA_DEF_VERSION || get_name(&r, k->name, sizeof k->name) ||
        rd_u8(&r, &dw) || rd_u8(&r, &cls) || cls > SCHEMA_REPL_LOCAL || rd_u32(&r, &k->repl.rf) ||
        rd_u32(&r, &k->repl.ndcs) || k->repl.ndcs > SCHEMA_MAX_DCS)
        goto bad;
    k->durable_writes = dw != 0;
    k->repl.cls = (enum schema_repl_class)cls;
    for (uint32_t i = 0; i < k->repl.ndcs; i++)
        if (get_name(&r, k->repl.dcs[i].name, sizeof k->repl.dcs[i].name) ||
            rd_u32(&r, &k->repl.dcs[i].rf))
            goto bad;
    if (rd_left(&r) || !k->name[0]) goto bad;
    *out = k;
    return 0;
bad:
    free(k);
    return ILION_ECORRUPT;
}

void schema_table_encode(const schema_table *t, buf *out) {
    buf_u8(out, SCHEMA_DEF_VERSION);
    put_name(out, t->ks);
    put_name(out, t->name);
    buf_u64(out, t->id);
    buf_put(out, t->uuid, 16);
    buf_u16(out, t->ncols);
    buf_u16(out, t->npk);
    buf_u16(out, t->nck);
    for (uint16_t i = 0; i < t->ncols; i++) {
        const schema_column *c = &t->cols[i];
        put_name(out, c->name);
        buf_u16(out, c->id);
        buf_u8(out, c->kind);
        buf_u16(out, c->position);
        buf_u8(out, c->type.id);
        buf_u8(out, c->type.sub[0]);
        buf_u8(out, c->type.sub[1]);
        buf_u8(out, c->type.frozen);
        buf_u8(out, c->desc);
    }
    const schema_table_params *p = &t->params;
    put_double(out, p->bloom_filter_fp_chance);
    buf_u32(out, (uint32_t)p->gc_grace_seconds);
    buf_u32(out, (uint32_t)p->default_time_to_live);
    put_double(out, p->crc_check_chance);
    buf_u32(out, (uint32_t)p->memtable_flush_period_in_ms);
    buf_u32(out, p->chunk_length_in_kb);
    buf_u32(out, p->min_threshold);
    buf_u32(out, p->max_threshold);
    put_name(out, p->comment);
    put_name(out, p->compression_class);
    put_name(out, p->compaction_class);
    put_name(out, p->speculative_retry);
}

int schema_table_decode(const uint8_t *data, size_t n, schema_table **out) {
    rd r;
    rd_init(&r, data, n);
    uint8_t v;
    uint16_t ncols;
    char ks[SCHEMA_NAME_MAX], name[SCHEMA_NAME_MAX];
    uint64_t id;
    const uint8_t *uuid;
    if (rd_u8(&r, &v) || v != SCHEMA_DEF_VERSION || get_name(&r, ks, sizeof ks) ||
        get_name(&r, name, sizeof name) || rd_u64(&r, &id) || rd_bytes(&r, 16, &uuid) ||
        rd_u16(&r, &ncols) || ncols == 0 || ncols > SCHEMA_MAX_COLUMNS)
        return ILION_ECORRUPT;
    schema_table *t = schema_table_alloc(ncols);
    if (!t) return -ENOMEM;
    memcpy(t->ks, ks, sizeof ks);
    memcpy(t->name, name, sizeof name);
    t->id = id;
    memcpy(t->uuid, uuid, 16);
    if (rd_u16(&r, &t->npk) || rd_u16(&r, &t->nck) || t->npk == 0 ||
        (uint32_t)t->npk + t->nck > ncols)
        goto bad;
    for (uint16_t i = 0; i < ncols; i++) {
        schema_column *c = &t->cols[i];
        uint8_t fz, desc;
        if (get_name(&r, c->name, sizeof c->name) || rd_u16(&r, &c->id) || rd_u8(&r, &c->kind) ||
            rd_u16(&r, &c->position) || rd_u8(&r, &c->type.id) || rd_u8(&r, &c->type.sub[0]) ||
            rd_u8(&r, &c->type.sub[1]) || rd_u8(&r, &fz) || rd_u8(&r, &desc) ||
            c->kind > SCHEMA_COL_STATIC)
            goto bad;
        c->type.frozen = fz != 0;
        c->desc = desc != 0;
        uint8_t want = i < t->npk ? SCHEMA_COL_PARTITION_KEY
                     : i < t->npk + t->nck ? SCHEMA_COL_CLUSTERING : c->kind;
        if (c->kind != want || (want != SCHEMA_COL_PARTITION_KEY && want != SCHEMA_COL_CLUSTERING &&
                                c->kind != SCHEMA_COL_REGULAR && c->kind != SCHEMA_COL_STATIC))
            goto bad;
    }
    schema_table_params *p = &t->params;
    uint32_t u1, u2, u3;
    if (get_double(&r, &p->bloom_filter_fp_chance) || rd_u32(&r, &u1) || rd_u32(&r, &u2) ||
        get_double(&r, &p->crc_check_chance) || rd_u32(&r, &u3) ||
        rd_u32(&r, &p->chunk_length_in_kb) || rd_u32(&r, &p->min_threshold) ||
        rd_u32(&r, &p->max_threshold) || get_name(&r, p->comment, sizeof p->comment) ||
        get_name(&r, p->compression_class, sizeof p->compression_class) ||
        get_name(&r, p->compaction_class, sizeof p->compaction_class) ||
        get_name(&r, p->speculative_retry, sizeof p->speculative_retry) || rd_left(&r))
        goto bad;
    p->gc_grace_seconds = (int32_t)u1;
    p->default_time_to_live = (int32_t)u2;
    p->memtable_flush_period_in_ms = (int32_t)u3;
    *out = t;
    return 0;
bad:
    schema_table_free(t);
    return ILION_ECORRUPT;
}
