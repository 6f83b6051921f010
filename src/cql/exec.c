/* The executor: sessions, QUERY / PREPARE / EXECUTE / BATCH entry points, statement dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/cluster/cluster.h"
#include "ilion/cql/schema_sync.h"
#include "ilion/cql/wire.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

static void copy_str(char *dst, size_t cap, const char *s) { snprintf(dst, cap, "%s", s ? s : ""); }

int cql_executor_create(const cql_executor_options *o, cql_executor **out) {
    if (!o || !o->engine || !o->coord) return ILION_EINVALID;
    cql_executor *x = calloc(1, sizeof *x);
    if (!x) return -ENOMEM;
    x->loop = o->loop;
    x->coord = o->coord;
    x->paxos = o->paxos;
    x->engine = o->engine;
    x->cluster = o->cluster;
    copy_str(x->cluster_name, sizeof x->cluster_name, o->cluster_name ? o->cluster_name : "Test Cluster");
    copy_str(x->listen_address, sizeof x->listen_address, o->listen_address ? o->listen_address : "127.0.0.1");
    copy_str(x->rpc_address, sizeof x->rpc_address, o->rpc_address ? o->rpc_address : x->listen_address);
    x->native_port = o->native_port ? o->native_port : 9042;
    x->generation = clock_now_s();
    copy_str(x->data_center, sizeof x->data_center, o->data_center ? o->data_center : "datacenter1");
    copy_str(x->rack, sizeof x->rack, o->rack ? o->rack : "rack1");
    if (o->host_id) memcpy(x->host_id, o->host_id, 16);
    if (o->ntokens) {
        x->tokens = malloc(o->ntokens * sizeof *x->tokens);
        if (!x->tokens) goto oom;
        memcpy(x->tokens, o->tokens, o->ntokens * sizeof *x->tokens);
        x->ntokens = o->ntokens;
    }
    x->cat = schema_catalog_new();
    x->prepared = prepared_cache_new();
    if (!x->cat || !x->prepared) goto oom;
    int rc = schema_system_define(x->cat);
    if (rc == 0) rc = schema_store_load(x);
    if (rc) {
        LOG_ERROR("cql", "loading the schema failed: %s", ilion_strerror(rc));
        cql_executor_destroy(x);
        return rc;
    }
    coord_set_local_dc(x->coord, x->data_center);
    exec_schema_changed(x);
    *out = x;
    return 0;
oom:
    cql_executor_destroy(x);
    return -ENOMEM;
}

void cql_executor_destroy(cql_executor *x) {
    if (!x) return;
    if (x->sync) cql_schema_sync_detach(x->sync);
    schema_catalog_free(x->cat);
    prepared_cache_free(x->prepared);
    while (x->req_pool) {
        exec_req *r = x->req_pool;
        x->req_pool = r->pool_next;
        free(r);
    }
    free(x->tokens);
    free(x);
}

void exec_schema_changed(cql_executor *x) {
    x->schema_gen++;
    schema_catalog_update_version(x->cat);
    if (x->cluster) {
        const uint8_t *u = x->cat->version;
        char text[40];
        snprintf(text, sizeof text,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
                 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        cluster_set_schema_version(x->cluster, text);
        if (x->sync) schema_sync_local_change(x->sync);
    }
}

cql_session *cql_session_new(cql_executor *x) {
    cql_session *s = calloc(1, sizeof *s);
    if (s) s->x = x;
    return s;
}

void cql_session_free(cql_session *s) { free(s); }

/* Requests kept for reuse: enough for the requests a loop iteration finishes, bounded so an
 * idle node does not hold much (each is sizeof(exec_req) + EXEC_REQ_INLINE bytes). */
#define EXEC_REQ_POOL_MAX 512

void exec_req_free(exec_req *r) {
    cql_executor *x = r->x;
    prepared_unref(r->prep);
    for (uint16_t i = 0; i < r->npreps; i++) prepared_unref(r->preps[i]);
    arena_free(&r->arena);
    if (x->req_pool_n < EXEC_REQ_POOL_MAX) {
        r->pool_next = x->req_pool;
        x->req_pool = r;
        x->req_pool_n++;
    } else {
        free(r);
    }
}

static exec_req *req_new(cql_executor *x, cql_session *s, cql_done_cb cb, void *arg,
                         const cql_query_params *p) {
    exec_req *r = x->req_pool;
    if (r) {
        x->req_pool = r->pool_next;
        x->req_pool_n--;
    } else {
        r = malloc(sizeof *r + EXEC_REQ_INLINE);
        if (!r) return NULL;
    }
    memset(r, 0, sizeof *r);
    r->x = x;
    r->s = s;
    r->conn = s;
    r->cb = cb;
    r->arg = arg;
    arena_init_buf(&r->arena, r + 1, EXEC_REQ_INLINE);
    if (p) {
        r->params = *p;
        r->values = p->values;
        r->nvalues = p->nvalues;
        r->cl = p->consistency;
    } else {
        r->params.page_size = -1;
        r->params.default_timestamp = INT64_MIN;
        r->cl = COORD_CL_ONE;
    }
    r->batch_ts = INT64_MIN;
    r->schema_gen = x->schema_gen;
    x->requests++;
    return r;
}

const schema_table *exec_table_again(exec_req *r, uint64_t id, const schema_table *t) {
    if (r->schema_gen == r->x->schema_gen) return t;
    r->schema_gen = r->x->schema_gen;
    return schema_table_by_id(r->x->cat, id);
}

/* Parses q into the request's arena; answers the error itself and returns NULL on failure. */
static cql_stmt *parse(exec_req *r, const char *q, size_t len) {
    cql_stmt *st = NULL;
    cql_parse_error pe;
    memset(&pe, 0, sizeof pe);
    int rc = cql_parse(q, len, &r->arena, &st, &pe);
    if (rc == 0 && st) return st;
    if (rc == -12) exec_error(r, CQLE_SERVER, "out of memory parsing the statement");
    else if (pe.code == CQL_ERR_INVALID) exec_error(r, CQLE_INVALID, "%s", pe.msg[0] ? pe.msg : "invalid statement");
    else exec_error(r, CQLE_SYNTAX, "%s", pe.msg[0] ? pe.msg : "syntax error");
    return NULL;
}

const char *exec_ks_name(exec_req *r, const cql_qname *q) {
    if (q->ks.s && q->ks.len) return q->ks.s;
    if (r->s && r->s->ks[0]) return r->s->ks;
    exec_error(r, CQLE_INVALID,
               "No keyspace has been specified. USE a keyspace, or explicitly specify keyspace.tablename");
    return NULL;
}

schema_table *exec_table(exec_req *r, const cql_qname *q) {
    if (r->prep) {
        schema_table *t = prepared_table(r->prep, q, r->x->schema_gen, NULL);
        if (t) return t;
    }
    const char *ks = exec_ks_name(r, q);
    if (!ks) return NULL;
    if (!schema_keyspace_get(r->x->cat, ks)) {
        if (strcmp(ks, "system_virtual_schema") == 0 || strcmp(ks, "system_views") == 0)
            exec_error(r, CQLE_INVALID, "Keyspace %s does not exist (virtual tables are not supported)", ks);
        else
            exec_error(r, CQLE_INVALID, "Keyspace %s does not exist", ks);
        return NULL;
    }
    schema_table *t = schema_table_get(r->x->cat, ks, q->name.s ? q->name.s : "");
    if (!t) exec_error(r, CQLE_INVALID, "unconfigured table %s", q->name.s ? q->name.s : "");
    else if (r->prep && prepared_parsed(r->prep))
        prepared_table_remember(r->prep, q, r->x->schema_gen, t, schema_keyspace_get(r->x->cat, t->ks));
    return t;
}

const schema_keyspace *exec_table_keyspace(exec_req *r, const schema_table *t) {
    if (r->prep) {
        const schema_keyspace *k = prepared_table_keyspace(r->prep, t, r->x->schema_gen);
        if (k) return k;
    }
    return schema_keyspace_get(r->x->cat, t->ks);
}

void exec_stmt(exec_req *r, cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_SELECT: stmt_select(r, st); return;
    case CQL_STMT_INSERT: case CQL_STMT_UPDATE: case CQL_STMT_DELETE: stmt_modify(r, st); return;
    case CQL_STMT_BATCH:
        if (st->u.batch.using.timestamp) {
            int64_t ts;
            if (exec_term_int(r, st->u.batch.using.timestamp, "USING TIMESTAMP", INT64_MIN + 1,
                              INT64_MAX, &ts))
                return;
            r->batch_ts = ts;
        }
        stmt_batch(r, st->u.batch.stmts, st->u.batch.nstmts, (uint8_t)st->u.batch.type);
        return;
    default: stmt_ddl(r, st); return;
    }
}

int cql_exec_query(cql_executor *x, cql_session *s, const char *query, size_t len,
                   const cql_query_params *p, cql_done_cb cb, void *arg) {
    if (!x || !query || !cb) return ILION_EINVALID;
    exec_req *r = req_new(x, s, cb, arg, p);
    if (!r) return -ENOMEM;
    cql_stmt *st = parse(r, query, len);
    if (!st) return 0;
    exec_stmt(r, st);
    return 0;
}

/* --- PREPARE ------------------------------------------------------------------------- */

static const schema_table *stmt_table(exec_req *r, cql_stmt *st) {
    const cql_qname *q = NULL;
    switch (st->kind) {
    case CQL_STMT_SELECT: q = &st->u.select.table; break;
    case CQL_STMT_INSERT: q = &st->u.insert.table; break;
    case CQL_STMT_UPDATE: q = &st->u.update.table; break;
    case CQL_STMT_DELETE: q = &st->u.del.table; break;
    case CQL_STMT_BATCH:
        if (st->u.batch.nstmts) return stmt_table(r, st->u.batch.stmts[0]);
        return NULL;
    default: return NULL;
    }
    const char *ks = q->ks.s && q->ks.len ? q->ks.s : (r->s ? r->s->ks : "");
    return schema_table_get(r->x->cat, ks, q->name.s ? q->name.s : "");
}

static bool stmt_is_conditional(const cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_INSERT: return st->u.insert.if_not_exists;
    case CQL_STMT_UPDATE: return st->u.update.if_exists || st->u.update.nif;
    case CQL_STMT_DELETE: return st->u.del.if_exists || st->u.del.nif;
    default: return false;
    }
}

static bool column_known(exec_req *r, const schema_table *t, const cql_str *c) {
    if (!c->s || schema_column_index(t, c->s) >= 0) return true;
    exec_error(r, CQLE_INVALID, "Undefined column name %s", c->s);
    return false;
}

static bool relations_known(exec_req *r, const schema_table *t, const cql_relation *w, uint32_t n) {
    for (uint32_t i = 0; i < n; i++) {
        if (w[i].lhs == CQL_LHS_COLUMN && !column_known(r, t, &w[i].column)) return false;
        for (uint32_t k = 0; k < w[i].ncols; k++)
            if (!column_known(r, t, &w[i].cols[k])) return false;
    }
    return true;
}

/* PREPARE reports unknown columns at once, as Cassandra does, rather than at EXECUTE. */
static bool columns_exist(exec_req *r, const schema_table *t, const cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_SELECT: return relations_known(r, t, st->u.select.where, st->u.select.nwhere);
    case CQL_STMT_INSERT:
        for (uint32_t i = 0; i < st->u.insert.ncols; i++)
            if (!column_known(r, t, &st->u.insert.cols[i])) return false;
        return true;
    case CQL_STMT_UPDATE:
        for (uint32_t i = 0; i < st->u.update.nset; i++)
            if (!column_known(r, t, &st->u.update.set[i].column)) return false;
        return relations_known(r, t, st->u.update.where, st->u.update.nwhere) &&
               relations_known(r, t, st->u.update.ifs, st->u.update.nif);
    case CQL_STMT_DELETE:
        for (uint32_t i = 0; i < st->u.del.ncols; i++)
            if (!column_known(r, t, &st->u.del.cols[i].column)) return false;
        return relations_known(r, t, st->u.del.where, st->u.del.nwhere) &&
               relations_known(r, t, st->u.del.ifs, st->u.del.nif);
    default: return true;
    }
}

int cql_exec_prepare(cql_executor *x, cql_session *s, const char *query, size_t len,
                     cql_done_cb cb, void *arg) {
    if (!x || !query || !cb) return ILION_EINVALID;
    exec_req *r = req_new(x, s, cb, arg, NULL);
    if (!r) return -ENOMEM;
    cql_stmt *st = parse(r, query, len);
    if (!st) return 0;
    const schema_table *t = stmt_table(r, st);
    bool needs_table = st->kind == CQL_STMT_SELECT || st->kind == CQL_STMT_INSERT ||
                       st->kind == CQL_STMT_UPDATE || st->kind == CQL_STMT_DELETE;
    if (needs_table && !t) {
        const cql_qname *q = st->kind == CQL_STMT_SELECT ? &st->u.select.table
                           : st->kind == CQL_STMT_INSERT ? &st->u.insert.table
                           : st->kind == CQL_STMT_UPDATE ? &st->u.update.table : &st->u.del.table;
        exec_table(r, q); /* answers the precise error */
        return 0;
    }
    if (t && st->kind != CQL_STMT_BATCH && !columns_exist(r, t, st)) return 0;
    rs_col *rcols = NULL;
    uint32_t nrcols = 0;
    if (st->kind == CQL_STMT_SELECT && stmt_select_metadata(r, t, &st->u.select, &rcols, &nrcols))
        return 0;
    uint8_t id[16];
    prepared_id(s ? s->ks : "", query, len, id);
    if (prepared_put(x->prepared, id, s ? s->ks : "", query, len)) {
        exec_error(r, CQLE_SERVER, "out of memory caching the prepared statement");
        return 0;
    }
    buf b;
    buf_init(&b);
    buf_u32(&b, 4);
    cqlw_short_bytes(&b, id, 16);
    /* bind metadata */
    uint32_t nb = st->nbinds;
    buf_u32(&b, t ? 0x01 : 0x00);
    buf_u32(&b, nb);
    int32_t pkidx[64];
    uint32_t npk = 0;
    if (t && st->kind != CQL_STMT_BATCH && t->npk <= 64) {
        for (uint16_t k = 0; k < t->npk; k++) {
            pkidx[k] = -1;
            for (uint32_t i = 0; i < nb; i++)
                if (st->binds[i].role == CQL_BIND_VALUE && st->binds[i].column.s &&
                    strcmp(st->binds[i].column.s, t->cols[k].name) == 0) {
                    pkidx[k] = (int32_t)i;
                    break;
                }
        }
        npk = t->npk;
        for (uint16_t k = 0; k < t->npk; k++)
            if (pkidx[k] < 0) npk = 0;
    }
    buf_u32(&b, npk);
    for (uint32_t k = 0; k < npk; k++) buf_u16(&b, (uint16_t)pkidx[k]);
    if (t) {
        cqlw_string(&b, t->ks);
        cqlw_string(&b, t->name);
    }
    for (uint32_t i = 0; i < nb; i++) {
        schema_type ty;
        const char *name = "?";
        const schema_table *bt = t;
        if (st->kind == CQL_STMT_BATCH) {
            /* the bind's own child statement decides the table */
            for (uint32_t c = 0; c < st->u.batch.nstmts; c++) {
                cql_stmt *ch = st->u.batch.stmts[c];
                if (ch->nbinds && &st->binds[i] >= ch->binds && &st->binds[i] < ch->binds + ch->nbinds)
                    bt = stmt_table(r, ch);
            }
        }
        if (!bt || !exec_bind_type(bt, &st->binds[i], &ty, &name)) {
            buf_free(&b);
            exec_error(r, CQLE_INVALID, "Cannot determine the type of bind variable %u", i);
            return 0;
        }
        if (!t) {
            cqlw_string(&b, bt->ks);
            cqlw_string(&b, bt->name);
        }
        cqlw_string(&b, name);
        schema_type_write_option(&ty, &b);
    }
    /* result metadata */
    if (st->kind == CQL_STMT_SELECT && !stmt_is_conditional(st))
        rs_write_metadata(&b, t->ks, t->name, nrcols, rcols, false, NULL, 0);
    else
        rs_write_metadata(&b, "", "", 0, NULL, true, NULL, 0);
    exec_reply_body(r, &b);
    return 0;
}

int cql_exec_execute(cql_executor *x, cql_session *s, const uint8_t *id, size_t idlen,
                     const cql_query_params *p, cql_done_cb cb, void *arg) {
    if (!x || !id || !cb) return ILION_EINVALID;
    exec_req *r = req_new(x, s, cb, arg, p);
    if (!r) return -ENOMEM;
    prepared_stmt *e = prepared_find(x->prepared, id, idlen);
    if (!e) {
        buf b;
        buf_init(&b);
        char hex[40] = "";
        for (size_t i = 0; i < idlen && i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", id[i]);
        char msg[400];
        snprintf(msg, sizeof msg, "Prepared query with ID %s not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)", hex);
        cqlw_error(&b, CQLE_UNPREPARED, msg);
        cqlw_short_bytes(&b, id, (uint16_t)(idlen > 0xFFFF ? 0xFFFF : idlen));
        exec_reply_error_buf(r, &b);
        return 0;
    }
    /* Held until the reply: the tree and the session below live in the entry, and a DROP or
     * an eviction meanwhile must not free them under an asynchronous step. */
    prepared_ref(e);
    r->prep = e;
    /* The statement resolves names against the keyspace it was prepared in. */
    r->s = prepared_session(e, x);
    r->is_prepared_exec = true;
    cql_stmt *st = prepared_parsed(e);
    if (!st) {
        size_t len;
        const char *q = prepared_query(e, &len);
        st = parse(r, q, len);
        if (!st) return 0;
    }
    exec_stmt(r, st);
    return 0;
}

int cql_exec_batch(cql_executor *x, cql_session *s, const cql_batch *b, cql_done_cb cb, void *arg) {
    if (!x || !b || !cb) return ILION_EINVALID;
    cql_query_params p;
    memset(&p, 0, sizeof p);
    p.consistency = b->consistency;
    p.serial_consistency = b->serial_consistency;
    p.default_timestamp = b->default_timestamp;
    p.page_size = -1;
    exec_req *r = req_new(x, s, cb, arg, &p);
    if (!r) return -ENOMEM;
    r->batch_ts = b->default_timestamp;
    cql_stmt **stmts = arena_alloc(&r->arena, (b->nentries ? b->nentries : 1) * sizeof *stmts);
    const cql_value **vals = arena_alloc(&r->arena, (b->nentries ? b->nentries : 1) * sizeof *vals);
    uint16_t *nvals = arena_alloc(&r->arena, (b->nentries ? b->nentries : 1) * sizeof *nvals);
    r->preps = arena_alloc(&r->arena, (b->nentries ? b->nentries : 1) * sizeof *r->preps);
    if (!stmts || !vals || !nvals || !r->preps) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return 0;
    }
    for (uint16_t i = 0; i < b->nentries; i++) {
        const cql_batch_entry *e = &b->entries[i];
        const char *q = (const char *)e->query_or_id;
        size_t len = e->len;
        cql_stmt *st = NULL;
        if (e->prepared) {
            prepared_stmt *pe = prepared_find(x->prepared, e->query_or_id, e->len);
            if (!pe) {
                buf eb;
                buf_init(&eb);
                cqlw_error(&eb, CQLE_UNPREPARED, "Prepared statement in BATCH not found; prepare it again");
                cqlw_short_bytes(&eb, e->query_or_id, (uint16_t)(e->len > 0xFFFF ? 0xFFFF : e->len));
                exec_reply_error_buf(r, &eb);
                return 0;
            }
            /* Held until the reply (the batch runs the shared tree). */
            prepared_ref(pe);
            r->preps[r->npreps++] = pe;
            st = prepared_parsed(pe);
            if (!st) q = prepared_query(pe, &len);
        }
        if (!st) st = parse(r, q, len);
        if (!st) return 0;
        if (st->kind != CQL_STMT_INSERT && st->kind != CQL_STMT_UPDATE && st->kind != CQL_STMT_DELETE) {
            exec_error(r, CQLE_INVALID, "Only INSERT, UPDATE and DELETE statements are allowed in a BATCH (entry %u is %s)",
                       i, cql_stmt_kind_name(st->kind));
            return 0;
        }
        stmts[i] = st;
        vals[i] = e->values;
        nvals[i] = e->nvalues;
    }
    r->state = vals;
    r->nvalues = 0;
    r->values = NULL;
    /* stmt_batch picks each entry's own values from r->state/nvals. */
    void **pair = arena_alloc(&r->arena, 2 * sizeof *pair);
    if (!pair) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return 0;
    }
    pair[0] = vals;
    pair[1] = nvals;
    r->state = pair;
    stmt_batch(r, stmts, b->nentries, b->type);
    return 0;
}
