/* Schema persistence in the engine's own table (id EXEC_SCHEMA_TABLE_ID): one partition per
 * keyspace (key = keyspace name); the row with an empty clustering key holds the keyspace
 * definition, a row per table (clustering key = table name) holds the table definition, in
 * column 0, encoded by schema_{keyspace,table}_encode. Drops are row / partition tombstones.
 * Every change is flushed before the DDL is acknowledged, whatever the commit log mode.
 * Format: docs/schema-format.md. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

/* Strictly increasing timestamps, so a DROP then CREATE in one microsecond still orders. */
static int64_t next_ts(cql_executor *x) {
    int64_t now = clock_now_us();
    if (now <= x->schema_ts) now = x->schema_ts + 1;
    x->schema_ts = now;
    return now;
}

typedef struct load_ctx {
    cql_executor *x;
    schema_catalog *cat;     /* where definitions go */
    bool create_storage;     /* open each table's storage as it is loaded */
    int err;
} load_ctx;

static int load_partition(void *arg, const st_partition *p) {
    load_ctx *lc = arg;
    int32_t now = clock_now_s();
    for (uint32_t i = 0; i < p->nrows; i++) {
        const st_row *r = &p->rows[i];
        if (!st_row_live(r, &p->del, now)) continue;
        const st_cell *c = NULL;
        for (uint32_t j = 0; j < r->ncells; j++)
            if (r->cells[j].col == 0 && st_cell_live(&r->cells[j], now) &&
                r->cells[j].ts > r->del.ts && r->cells[j].ts > p->del.ts)
                c = &r->cells[j];
        if (!c) continue;
        if (c->ts > lc->x->schema_ts) lc->x->schema_ts = c->ts;
        if (r->cklen == 0) {
            schema_keyspace *k;
            if (schema_keyspace_decode(c->value, c->len, &k)) {
                LOG_ERROR("schema", "corrupt keyspace definition for '%.*s'; skipped",
                          (int)p->pklen, (const char *)p->pk);
                continue;
            }
            if (schema_keyspace_add(lc->cat, k)) schema_keyspace_free(k);
        } else {
            schema_table *t;
            if (schema_table_decode(c->value, c->len, &t)) {
                LOG_ERROR("schema", "corrupt table definition '%.*s' in keyspace '%.*s'; skipped",
                          (int)r->cklen, (const char *)r->ck, (int)p->pklen, (const char *)p->pk);
                continue;
            }
            if (schema_table_add(lc->cat, t)) {
                LOG_ERROR("schema", "table %s.%s without keyspace; skipped", t->ks, t->name);
                schema_table_free(t);
                continue;
            }
            if (!lc->create_storage) continue;
            storage_table_options so;
            exec_table_storage_options(t, &so);
            int rc = storage_table_create(lc->x->engine, t->id, &so);
            if (rc) LOG_ERROR("schema", "opening storage of %s.%s: %s", t->ks, t->name, ilion_strerror(rc));
        }
    }
    return 0;
}

int schema_store_load(cql_executor *x) {
    storage_table_options so;
    storage_table_options_default(&so);
    int rc = storage_table_create(x->engine, EXEC_SCHEMA_TABLE_ID, &so);
    if (rc) return rc;
    load_ctx lc = {x, x->cat, true, 0};
    rc = storage_scan(x->engine, EXEC_SCHEMA_TABLE_ID, INT64_MIN, NULL, 0, INT64_MAX, 0,
                      clock_now_s(), load_partition, &lc);
    return rc < 0 ? rc : lc.err;
}

/* Applies one change to the schema table and makes it durable. */
static int store(cql_executor *x, const char *ks, const char *table, const buf *def, bool drop) {
    st_arena a;
    arena_init(&a);
    int rc = -ENOMEM;
    int64_t ts = next_ts(x);
    int32_t now = clock_now_s();
    st_partition *p = st_partition_new(&a, EXEC_SCHEMA_TABLE_ID, ks, (uint32_t)strlen(ks));
    if (!p) goto out;
    if (drop && !table) {
        p->del.ts = ts;
        p->del.local_time = now;
    } else {
        st_row *r = st_partition_row(&a, p, table ? table : "", table ? (uint32_t)strlen(table) : 0);
        if (!r) goto out;
        if (drop) {
            r->del.ts = ts;
            r->del.local_time = now;
        } else {
            r->marker.ts = ts;
            r->marker.ttl = 0;
            r->marker.expiry = ST_NO_EXPIRY;
            rc = st_row_set_cell(&a, r, 0, ts, 0, now, def->data, (uint32_t)def->len);
            if (rc) goto out;
        }
    }
    uint64_t pos;
    rc = storage_apply(x->engine, p, &pos);
    if (rc == 0) rc = storage_wait_synced(x->engine, pos);
    if (rc == 0) rc = storage_flush(x->engine, EXEC_SCHEMA_TABLE_ID, true);
out:
    arena_free(&a);
    if (rc) LOG_ERROR("schema", "persisting schema change failed: %s", ilion_strerror(rc));
    return rc;
}

int schema_store_save_keyspace(cql_executor *x, const schema_keyspace *k) {
    buf b;
    buf_init(&b);
    schema_keyspace_encode(k, &b);
    int rc = b.oom ? -12 : store(x, k->name, NULL, &b, false);
    buf_free(&b);
    return rc;
}

int schema_store_drop_keyspace(cql_executor *x, const char *ks) { return store(x, ks, NULL, NULL, true); }

int schema_store_save_table(cql_executor *x, const schema_table *t) {
    buf b;
    buf_init(&b);
    schema_table_encode(t, &b);
    int rc = b.oom ? -12 : store(x, t->ks, t->name, &b, false);
    buf_free(&b);
    return rc;
}

int schema_store_drop_table(cql_executor *x, const char *ks, const char *table) {
    return store(x, ks, table, NULL, true);
}

void exec_table_storage_options(const schema_table *t, storage_table_options *o) {
    storage_table_options_default(o);
    const char *cc = t->params.compression_class;
    if (!cc[0]) o->compression = STORAGE_COMPRESS_NONE;
    else if (strstr(cc, "Deflate")) o->compression = STORAGE_COMPRESS_DEFLATE;
    else o->compression = STORAGE_COMPRESS_LZ4;
    if (t->params.chunk_length_in_kb) o->block_size = t->params.chunk_length_in_kb * 1024;
    o->bloom_fp_chance = t->params.bloom_filter_fp_chance;
    o->gc_grace_seconds = t->params.gc_grace_seconds;
    o->compaction_min_threshold = t->params.min_threshold;
    o->compaction_max_threshold = t->params.max_threshold;
}

static bool same_table(const schema_table *a, const schema_table *b) {
    buf x, y;
    buf_init(&x);
    buf_init(&y);
    schema_table_encode(a, &x);
    schema_table_encode(b, &y);
    bool same = x.len == y.len && !x.oom && !y.oom && memcmp(x.data, y.data, x.len) == 0;
    buf_free(&x);
    buf_free(&y);
    return same;
}

static void open_storage(cql_executor *x, const schema_table *t) {
    storage_table_options so;
    exec_table_storage_options(t, &so);
    int rc = storage_table_create(x->engine, t->id, &so);
    if (rc) LOG_ERROR("schema", "opening storage of %s.%s: %s", t->ks, t->name, ilion_strerror(rc));
}

int schema_store_reload(cql_executor *x, schema_change_cb cb, void *arg) {
    schema_catalog *nc = schema_catalog_new();
    if (!nc) return -ENOMEM;
    load_ctx lc = {x, nc, false, 0};
    int rc = storage_scan(x->engine, EXEC_SCHEMA_TABLE_ID, INT64_MIN, NULL, 0, INT64_MAX, 0,
                          clock_now_s(), load_partition, &lc);
    if (rc < 0 || lc.err) {
        schema_catalog_free(nc);
        return rc < 0 ? rc : lc.err;
    }
    schema_catalog *cat = x->cat;
    bool dropped = false; /* or replaced: prepared statements must be prepared again */
    /* Keyspaces that are gone. Names are copied: removal frees them. */
    for (size_t i = cat->nks; i-- > 0;) {
        schema_keyspace *k = cat->ks[i];
        if (k->is_system || schema_keyspace_get(nc, k->name)) continue;
        char name[SCHEMA_NAME_MAX];
        snprintf(name, sizeof name, "%s", k->name);
        for (size_t j = 0; j < k->ntables; j++) storage_table_drop(x->engine, k->tables[j]->id);
        schema_keyspace_remove(cat, name);
        dropped = true;
        if (cb) cb(arg, "DROPPED", "KEYSPACE", name, NULL);
    }
    for (size_t i = 0; i < nc->nks; i++) {
        schema_keyspace *nk = nc->ks[i];
        schema_keyspace *ok = schema_keyspace_get(cat, nk->name);
        if (ok && ok->is_system) continue; /* a user keyspace cannot shadow a system one */
        if (!ok) {
            nc->ks[i] = NULL; /* moved */
            if (schema_keyspace_add(cat, nk)) {
                schema_keyspace_free(nk);
                continue;
            }
            if (cb) cb(arg, "CREATED", "KEYSPACE", nk->name, NULL);
            for (size_t j = 0; j < nk->ntables; j++) {
                open_storage(x, nk->tables[j]);
                if (cb) cb(arg, "CREATED", "TABLE", nk->name, nk->tables[j]->name);
            }
            continue;
        }
        if (ok->durable_writes != nk->durable_writes || memcmp(&ok->repl, &nk->repl, sizeof ok->repl) != 0) {
            ok->durable_writes = nk->durable_writes;
            ok->repl = nk->repl;
            if (cb) cb(arg, "UPDATED", "KEYSPACE", ok->name, NULL);
        }
        for (size_t j = ok->ntables; j-- > 0;) {
            schema_table *t = ok->tables[j];
            bool found = false;
            for (size_t m = 0; m < nk->ntables && !found; m++) found = strcmp(nk->tables[m]->name, t->name) == 0;
            if (found) continue;
            char tn[SCHEMA_NAME_MAX];
            snprintf(tn, sizeof tn, "%s", t->name);
            storage_table_drop(x->engine, t->id);
            schema_table_remove(cat, ok->name, tn);
            dropped = true;
            if (cb) cb(arg, "DROPPED", "TABLE", ok->name, tn);
        }
        for (size_t m = 0; m < nk->ntables; m++) {
            schema_table *t = nk->tables[m];
            schema_table *old = schema_table_get(cat, ok->name, t->name);
            if (old && same_table(old, t)) continue;
            nk->tables[m] = NULL; /* moved */
            const char *change = "CREATED";
            if (old) {
                change = "UPDATED";
                if (old->id != t->id) {
                    storage_table_drop(x->engine, old->id);
                    dropped = true;
                }
                schema_table_remove(cat, ok->name, t->name);
            }
            if (schema_table_add(cat, t)) {
                schema_table_free(t);
                continue;
            }
            open_storage(x, t);
            if (cb) cb(arg, change, "TABLE", ok->name, t->name);
        }
    }
    schema_catalog_free(nc);
    if (dropped) prepared_clear(x->prepared);
    exec_schema_changed(x);
    return 0;
}
