/* Rows of the virtual system tables, built from live state at each query: system.local from
 * the executor options and the schema version, system.peers / peers_v2 (empty: one node), and
 * system_schema.* from the catalog. WHERE relations are applied as filters, then the usual
 * selection, LIMIT and paging (the paging position is a row offset). */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cluster/cluster.h"
#include "ilion/util/clock.h"
#include "stmt_select_plan.h"

typedef struct vrows {
    exec_req *r;
    const schema_table *t;
    uint32_t n, cap;
    exec_val **rows;
    exec_val *cur;
} vrows;

static exec_val *row_new(vrows *v) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 16;
        exec_val **nr = arena_alloc(&v->r->arena, cap * sizeof *nr);
        if (!nr) return NULL;
        if (v->n) memcpy(nr, v->rows, v->n * sizeof *nr);
        v->rows = nr;
        v->cap = cap;
    }
    exec_val *row = arena_alloc(&v->r->arena, v->t->ncols * sizeof *row);
    if (!row) return NULL;
    for (uint16_t i = 0; i < v->t->ncols; i++) {
        row[i].data = NULL;
        row[i].len = -1;
    }
    v->rows[v->n++] = row;
    v->cur = row;
    return row;
}

static void put(vrows *v, const char *col, const void *p, size_t n) {
    int ci = schema_column_index(v->t, col);
    if (ci < 0 || !v->cur) return;
    uint8_t *d = arena_dup(&v->r->arena, n ? p : "", n ? n : 1);
    if (!d) return;
    v->cur[ci].data = d;
    v->cur[ci].len = (int32_t)n;
}

static void put_text(vrows *v, const char *col, const char *s) { put(v, col, s, strlen(s)); }

static void put_int(vrows *v, const char *col, int32_t x) {
    uint8_t b[4];
    be32_put(b, (uint32_t)x);
    put(v, col, b, 4);
}

static void put_double(vrows *v, const char *col, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    uint8_t b[8];
    be64_put(b, u);
    put(v, col, b, 8);
}

static void put_bool(vrows *v, const char *col, bool x) {
    uint8_t b = x;
    put(v, col, &b, 1);
}

static void put_inet(vrows *v, const char *col, const char *addr) {
    uint8_t a[16];
    if (inet_pton(AF_INET, addr, a) == 1) put(v, col, a, 4);
    else if (inet_pton(AF_INET6, addr, a) == 1) put(v, col, a, 16);
}

/* Serialized collection from pairs (map) or items (set/list). */
static void put_coll(vrows *v, const char *col, const char *const *items, uint32_t n, bool map) {
    buf b;
    buf_init(&b);
    buf_u32(&b, n);
    for (uint32_t i = 0; i < n * (map ? 2 : 1); i++) {
        buf_u32(&b, (uint32_t)strlen(items[i]));
        buf_put(&b, items[i], strlen(items[i]));
    }
    if (!b.oom) put(v, col, b.data, b.len);
    buf_free(&b);
}

static void rows_local(vrows *v, cql_executor *x) {
    if (!row_new(v)) return;
    put_text(v, "key", "local");
    put_text(v, "bootstrapped", "COMPLETED");
    put_inet(v, "broadcast_address", x->listen_address);
    put_int(v, "broadcast_port", 7000);
    put_text(v, "cluster_name", x->cluster_name);
    put_text(v, "cql_version", "3.4.5");
    put_text(v, "data_center", x->data_center);
    put_int(v, "gossip_generation", x->generation);
    put(v, "host_id", x->host_id, 16);
    put_inet(v, "listen_address", x->listen_address);
    put_int(v, "listen_port", 7000);
    put_text(v, "native_protocol_version", "4");
    put_text(v, "partitioner", "org.apache.cassandra.dht.Murmur3Partitioner");
    put_text(v, "rack", x->rack);
    put_text(v, "release_version", "4.0.11");
    put_inet(v, "rpc_address", x->rpc_address);
    put_int(v, "rpc_port", x->native_port);
    put(v, "schema_version", x->cat->version, 16);
    uint32_t n = x->ntokens ? x->ntokens : 1;
    char **toks = arena_alloc(&v->r->arena, n * sizeof *toks);
    if (!toks) return;
    for (uint32_t i = 0; i < n; i++) {
        toks[i] = arena_alloc(&v->r->arena, 24);
        if (!toks[i]) return;
        /* Without tokens from the ring this node owns everything: one token at the minimum. */
        snprintf(toks[i], 24, "%lld", x->ntokens ? (long long)x->tokens[i] : (long long)INT64_MIN);
    }
    put_coll(v, "tokens", (const char *const *)toks, n, false);
}

static void repl_map(vrows *v, const schema_keyspace *k) {
    const char *items[2 * (SCHEMA_MAX_DCS + 1)];
    char rfs[SCHEMA_MAX_DCS + 1][16];
    uint32_t n = 1;
    items[0] = "class";
    switch (k->repl.cls) {
    case SCHEMA_REPL_SIMPLE:
        items[1] = "org.apache.cassandra.locator.SimpleStrategy";
        items[2] = "replication_factor";
        snprintf(rfs[0], sizeof rfs[0], "%u", k->repl.rf);
        items[3] = rfs[0];
        n = 2;
        break;
    case SCHEMA_REPL_NTS:
        items[1] = "org.apache.cassandra.locator.NetworkTopologyStrategy";
        for (uint32_t i = 0; i < k->repl.ndcs && i < SCHEMA_MAX_DCS; i++) {
            snprintf(rfs[i], sizeof rfs[i], "%u", k->repl.dcs[i].rf);
            items[2 * n] = k->repl.dcs[i].name;
            items[2 * n + 1] = rfs[i];
            n++;
        }
        break;
    default: items[1] = "org.apache.cassandra.locator.LocalStrategy"; break;
    }
    put_coll(v, "replication", items, n, true);
}

static void rows_keyspaces(vrows *v, cql_executor *x) {
    for (size_t i = 0; i < x->cat->nks; i++) {
        const schema_keyspace *k = x->cat->ks[i];
        if (!row_new(v)) return;
        put_text(v, "keyspace_name", k->name);
        put_bool(v, "durable_writes", k->durable_writes);
        repl_map(v, k);
    }
}

static void rows_tables(vrows *v, cql_executor *x) {
    for (size_t i = 0; i < x->cat->nks; i++)
        for (size_t j = 0; j < x->cat->ks[i]->ntables; j++) {
            const schema_table *t = x->cat->ks[i]->tables[j];
            const schema_table_params *p = &t->params;
            if (!row_new(v)) return;
            put_text(v, "keyspace_name", t->ks);
            put_text(v, "table_name", t->name);
            put_double(v, "bloom_filter_fp_chance", p->bloom_filter_fp_chance);
            const char *caching[] = {"keys", "ALL", "rows_per_partition", "NONE"};
            put_coll(v, "caching", caching, 2, true);
            put_bool(v, "cdc", false);
            put_text(v, "comment", p->comment);
            char mn[16], mx[16], ck[16];
            snprintf(mn, sizeof mn, "%u", p->min_threshold);
            snprintf(mx, sizeof mx, "%u", p->max_threshold);
            const char *comp[] = {"class", p->compaction_class, "max_threshold", mx, "min_threshold", mn};
            put_coll(v, "compaction", comp, 3, true);
            snprintf(ck, sizeof ck, "%u", p->chunk_length_in_kb);
            if (p->compression_class[0]) {
                const char *cz[] = {"chunk_length_in_kb", ck, "class", p->compression_class};
                put_coll(v, "compression", cz, 2, true);
            } else {
                const char *cz[] = {"enabled", "false"};
                put_coll(v, "compression", cz, 1, true);
            }
            put_double(v, "crc_check_chance", p->crc_check_chance);
            put_double(v, "dclocal_read_repair_chance", 0.0);
            put_int(v, "default_time_to_live", p->default_time_to_live);
            put_coll(v, "extensions", NULL, 0, true);
            const char *flags[] = {"compound"};
            put_coll(v, "flags", flags, 1, false);
            put_int(v, "gc_grace_seconds", p->gc_grace_seconds);
            put(v, "id", t->uuid, 16);
            put_int(v, "max_index_interval", 2048);
            put_int(v, "memtable_flush_period_in_ms", p->memtable_flush_period_in_ms);
            put_int(v, "min_index_interval", 128);
            put_double(v, "read_repair_chance", 0.0);
            put_text(v, "speculative_retry", p->speculative_retry);
        }
}

static void rows_columns(vrows *v, cql_executor *x) {
    static const char *kinds[] = {"partition_key", "clustering", "regular", "static"};
    for (size_t i = 0; i < x->cat->nks; i++)
        for (size_t j = 0; j < x->cat->ks[i]->ntables; j++) {
            const schema_table *t = x->cat->ks[i]->tables[j];
            for (uint16_t c = 0; c < t->ncols; c++) {
                const schema_column *col = &t->cols[c];
                if (!row_new(v)) return;
                put_text(v, "keyspace_name", t->ks);
                put_text(v, "table_name", t->name);
                put_text(v, "column_name", col->name);
                put_text(v, "clustering_order", col->kind == SCHEMA_COL_CLUSTERING ? (col->desc ? "desc" : "asc") : "none");
                put(v, "column_name_bytes", col->name, strlen(col->name));
                put_text(v, "kind", kinds[col->kind < 4 ? col->kind : 2]);
                put_int(v, "position", col->kind == SCHEMA_COL_PARTITION_KEY || col->kind == SCHEMA_COL_CLUSTERING ? col->position : -1);
                char tn[96];
                schema_type_name(&col->type, tn, sizeof tn);
                put_text(v, "type", tn);
            }
        }
}

static void put_uuid_text(vrows *v, const char *col, const char *text) {
    schema_type ut = SCHEMA_TYPE(SCHEMA_T_UUID);
    buf b;
    buf_init(&b);
    char err[8];
    if (schema_literal_convert(&ut, SCHEMA_LIT_STRING, text, strlen(text), &b, err, sizeof err) == 0)
        put(v, col, b.data, b.len);
    buf_free(&b);
}

/* Peers as gossip knows them, those with host id, dc, rack, rpc address and tokens. */
static void rows_peers(vrows *v, cql_executor *x, bool v2) {
    if (!x->cluster) return;
    size_t n = cluster_peer_count(x->cluster);
    for (size_t i = 0; i < n; i++) {
        cluster_peer p;
        if (cluster_peer_get(x->cluster, i, &p)) continue;
        /* Drivers reject (and the Python driver warns about) a row without these; a node not
         * fully known yet is left out until gossip brings the rest (admin status shows it). */
        if (!p.has_host_id || !p.dc[0] || !p.rack[0] || !p.rpc_address[0] || !p.ntokens) continue;
        if (!row_new(v)) return;
        char ip[NET_ADDR_STRLEN];
        net_addr_ip_str(&p.addr, ip, sizeof ip);
        put_inet(v, "peer", ip);
        if (v2) put_int(v, "peer_port", p.addr.port);
        if (p.dc[0]) put_text(v, "data_center", p.dc);
        if (p.rack[0]) put_text(v, "rack", p.rack);
        if (p.has_host_id) put(v, "host_id", p.host_id, 16);
        if (p.release_version[0]) put_text(v, "release_version", p.release_version);
        if (p.schema_version[0]) put_uuid_text(v, "schema_version", p.schema_version);
        if (p.rpc_address[0]) {
            put_inet(v, v2 ? "native_address" : "rpc_address", p.rpc_address);
            if (v2) put_int(v, "native_port", p.native_port ? p.native_port : x->native_port);
        }
        if (p.ntokens) {
            char **toks = arena_alloc(&v->r->arena, p.ntokens * sizeof *toks);
            if (!toks) return;
            for (uint32_t k = 0; k < p.ntokens; k++) {
                toks[k] = arena_alloc(&v->r->arena, 24);
                if (!toks[k]) return;
                snprintf(toks[k], 24, "%lld", (long long)p.tokens[k]);
            }
            put_coll(v, "tokens", (const char *const *)toks, p.ntokens, false);
        }
    }
}

static void build_rows(vrows *v, cql_executor *x) {
    const schema_table *t = v->t;
    if (strcmp(t->ks, "system") == 0) {
        if (strcmp(t->name, "local") == 0) rows_local(v, x);
        else if (strcmp(t->name, "peers") == 0) rows_peers(v, x, false);
        else if (strcmp(t->name, "peers_v2") == 0) rows_peers(v, x, true);
        return;
    }
    if (strcmp(t->name, "keyspaces") == 0) rows_keyspaces(v, x);
    else if (strcmp(t->name, "tables") == 0) rows_tables(v, x);
    else if (strcmp(t->name, "columns") == 0) rows_columns(v, x);
    /* types, functions, aggregates, triggers, indexes, views, dropped_columns: none exist */
}

void system_tables_select(exec_req *r, const schema_table *t, const cql_select *q) {
    selection sc;
    if (select_selection(r, t, q, &sc)) return;
    uint32_t limit, ppl;
    if (select_limits(r, q, &limit, &ppl)) return;
    for (uint32_t i = 0; i < sc.n; i++)
        if (sc.items[i].kind != SELK_COL && sc.items[i].kind != SELK_COUNT) {
            exec_error(r, CQLE_INVALID, "Only columns and count(*) can be selected from system tables");
            return;
        }
    filt *filts = arena_alloc(&r->arena, (q->nwhere ? q->nwhere : 1) * sizeof *filts);
    if (!filts) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < q->nwhere; i++) {
        const cql_relation *w = &q->where[i];
        int ci = w->lhs == CQL_LHS_COLUMN ? schema_column_index(t, w->column.s ? w->column.s : "") : -1;
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s (only column relations are supported on system tables)",
                       w->column.s ? w->column.s : "");
            return;
        }
        if (select_filter(r, t, ci, w, &filts[i])) return;
    }
    vrows v = {.r = r, .t = t};
    build_rows(&v, r->x);
    page_pos pos;
    memset(&pos, 0, sizeof pos);
    pos.remaining = limit;
    if (r->params.paging_state && r->params.paging_state_len > 0 && !sc.count &&
        page_pos_decode(r->params.paging_state, (size_t)r->params.paging_state_len, &pos)) {
        exec_error(r, CQLE_PROTOCOL, "Invalid paging state");
        return;
    }
    uint32_t page = r->params.page_size > 0 && !sc.count ? (uint32_t)r->params.page_size : UINT32_MAX;
    result_set rs;
    rs_init(&rs, t->ks, t->name, sc.n, sc.cols);
    rs.no_metadata = r->params.skip_metadata;
    uint64_t count = 0;
    uint32_t i = pos.index, emitted = 0;
    bool more = false;
    for (; i < v.n; i++) {
        exec_val *row = v.rows[i];
        bool ok = true;
        for (uint32_t f = 0; f < q->nwhere && ok; f++) ok = select_filter_match(t, &filts[f], &row[filts[f].col]);
        if (!ok) continue;
        if (pos.remaining == 0) break;
        if (emitted == page) {
            more = true;
            break;
        }
        if (sc.count) count++;
        else {
            for (uint32_t c = 0; c < sc.n; c++) rs_cell(&rs, row[sc.items[c].col].data, row[sc.items[c].col].len);
            rs_row_done(&rs);
            emitted++;
        }
        if (pos.remaining != UINT32_MAX) pos.remaining--;
    }
    if (sc.count) {
        uint8_t b[8];
        be64_put(b, count);
        rs_cell(&rs, b, 8);
        rs_row_done(&rs);
    } else if (more) {
        pos.index = i;
        buf pb;
        buf_init(&pb);
        page_pos_encode(&pos, &pb);
        rs.paging = arena_dup(&r->arena, pb.data, pb.len);
        rs.paging_len = (uint32_t)pb.len;
        buf_free(&pb);
    }
    exec_reply_rows(r, &rs);
}
