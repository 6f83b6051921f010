/* INSERT, UPDATE, DELETE and BATCH: statements become st_partition mutations written through
 * one coord_write. Conditional statements: stmt_lwt.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stmt_modify.h"
#include "ilion/util/clock.h"


typedef exec_valist keyvals;

/* A statement's targets: partition keys and (encoded) clustering keys. */
typedef struct targets {
    uint32_t npk;
    exec_val *pks;          /* routing keys */
    uint32_t nck;           /* 0 with ck_given false: the whole partition */
    exec_val *cks;
    bool ck_given;
} targets;

int modify_ml_add(exec_req *r, mut_list *ml, st_partition *p) {
    if (ml->n == ml->cap) {
        size_t cap = ml->cap ? ml->cap * 2 : 8;
        st_partition **v = arena_alloc(&r->arena, cap * sizeof *v);
        if (!v) return -1;
        if (ml->n) memcpy(v, ml->v, ml->n * sizeof *v);
        ml->v = v;
        ml->cap = cap;
    }
    ml->v[ml->n++] = p;
    return 0;
}

/* Values of an IN list given as one bound list value. */
static int split_list(exec_req *r, const exec_val *lv, const schema_type *t, const char *what,
                      keyvals *out) {
    rd rr;
    rd_init(&rr, lv->data, (size_t)lv->len);
    uint32_t n;
    if (rd_u32(&rr, &n) || n > 65535) goto bad;
    out->v = arena_alloc(&r->arena, (n ? n : 1) * sizeof *out->v);
    if (!out->v) goto bad;
    out->n = n;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l;
        const uint8_t *p;
        if (rd_u32(&rr, &l) || (int32_t)l < 0 || rd_bytes(&rr, l, &p)) goto bad;
        char err[200];
        if (schema_value_validate(t, p, l, err, sizeof err)) {
            exec_error(r, CQLE_INVALID, "Invalid IN value for %s: %s", what, err);
            return -1;
        }
        out->v[i].data = p;
        out->v[i].len = (int32_t)l;
    }
    return 0;
bad:
    exec_error(r, CQLE_INVALID, "Invalid list value bound for IN on %s", what);
    return -1;
}

int exec_relation_values(exec_req *r, const schema_column *c, const cql_relation *w, keyvals *out) {
    if (w->op == CQL_OP_EQ) {
        out->n = 1;
        out->v = arena_alloc(&r->arena, sizeof *out->v);
        if (!out->v) {
            exec_error(r, CQLE_SERVER, "out of memory");
            return -1;
        }
        return exec_term_value(r, w->value, &c->type, c->name, &out->v[0]);
    }
    if (w->op != CQL_OP_IN) {
        exec_error(r, CQLE_INVALID, "Only EQ and IN relations are supported here (column %s)", c->name);
        return -1;
    }
    if (w->value) { /* IN ? */
        schema_type lt = {.id = SCHEMA_T_LIST, .sub = {c->type.id, 0}};
        exec_val lv;
        if (exec_term_value(r, w->value, &lt, c->name, &lv)) return -1;
        if (lv.len < 0) {
            exec_error(r, CQLE_INVALID, "Invalid null value for IN on %s", c->name);
            return -1;
        }
        return split_list(r, &lv, &c->type, c->name, out);
    }
    out->n = w->nin;
    out->v = arena_alloc(&r->arena, (w->nin ? w->nin : 1) * sizeof *out->v);
    if (!out->v) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < w->nin; i++)
        if (exec_term_value(r, w->in[i], &c->type, c->name, &out->v[i])) return -1;
    return 0;
}

/* Cartesian product of per-column values into keys: routing keys (pk) or encoded cks. */
static int product(exec_req *r, const schema_table *t, uint16_t first, uint16_t n, keyvals *kv,
                   bool ck, exec_val **out, uint32_t *nout) {
    uint64_t total = 1;
    for (uint16_t i = 0; i < n; i++) {
        total *= kv[i].n;
        if (total > 10000) {
            exec_error(r, CQLE_INVALID, "IN restrictions select more than 10000 keys");
            return -1;
        }
    }
    *nout = (uint32_t)total;
    *out = arena_alloc(&r->arena, (total ? total : 1) * sizeof **out);
    if (!*out) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    uint32_t idx[SCHEMA_MAX_COLUMNS];
    memset(idx, 0, sizeof(uint32_t) * n);
    const uint8_t *vals[SCHEMA_MAX_COLUMNS];
    uint32_t lens[SCHEMA_MAX_COLUMNS];
    buf b;
    buf_init(&b);
    for (uint64_t k = 0; k < total; k++) {
        buf_reset(&b);
        for (uint16_t i = 0; i < n; i++) {
            const schema_column *c = &t->cols[first + i];
            const exec_val *v = &kv[i].v[idx[i]];
            if (v->len < 0) {
                buf_free(&b);
                exec_error(r, CQLE_INVALID, "Invalid %s value for %s key part %s",
                           v->len == -1 ? "null" : "unset", ck ? "clustering" : "partition", c->name);
                return -1;
            }
            if (!ck && v->len > 65535) {
                buf_free(&b);
                exec_error(r, CQLE_INVALID, "Key length of %d is longer than maximum of 65535", v->len);
                return -1;
            }
            if (ck) {
                if (schema_ck_encode(&c->type, c->desc, v->data ? v->data : (const uint8_t *)"", (size_t)v->len, &b)) {
                    buf_free(&b);
                    exec_error(r, CQLE_INVALID, "Invalid value for clustering column %s", c->name);
                    return -1;
                }
            } else {
                vals[i] = v->data ? v->data : (const uint8_t *)"";
                lens[i] = (uint32_t)v->len;
            }
        }
        if (!ck) schema_routing_key(vals, lens, n, &b);
        if (b.oom) {
            buf_free(&b);
            exec_error(r, CQLE_SERVER, "out of memory");
            return -1;
        }
        if (!ck && b.len > 65535) {
            buf_free(&b);
            exec_error(r, CQLE_INVALID, "Partition key of %zu bytes is longer than maximum of 65535", b.len);
            return -1;
        }
        uint8_t *d = arena_dup(&r->arena, b.len ? b.data : (const uint8_t *)"", b.len ? b.len : 1);
        (*out)[k].data = d;
        (*out)[k].len = (int32_t)b.len;
        for (int i = n - 1; i >= 0; i--) {
            if (++idx[i] < kv[i].n) break;
            idx[i] = 0;
        }
    }
    buf_free(&b);
    return 0;
}

/* WHERE of UPDATE / DELETE → targets. */
static int where_targets(exec_req *r, const schema_table *t, const cql_relation *w, uint32_t nw,
                         bool need_ck, targets *out) {
    uint16_t nk = (uint16_t)(t->npk + t->nck);
    keyvals *kv = arena_alloc(&r->arena, (nk ? nk : 1) * sizeof *kv);
    if (!kv) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    memset(kv, 0, nk * sizeof *kv);
    bool *seen = arena_alloc(&r->arena, nk ? nk : 1);
    memset(seen, 0, nk ? nk : 1);
    for (uint32_t i = 0; i < nw; i++) {
        if (w[i].lhs != CQL_LHS_COLUMN) {
            exec_error(r, CQLE_INVALID, "Only column = value and column IN (...) relations are supported in the WHERE clause of a modification");
            return -1;
        }
        int ci = schema_column_index(t, w[i].column.s ? w[i].column.s : "");
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s", w[i].column.s ? w[i].column.s : "");
            return -1;
        }
        if (ci >= nk) {
            exec_error(r, CQLE_INVALID, "Non PRIMARY KEY columns found in where clause: %s", t->cols[ci].name);
            return -1;
        }
        if (seen[ci]) {
            exec_error(r, CQLE_INVALID, "%s cannot be restricted by more than one relation if it includes an Equal", t->cols[ci].name);
            return -1;
        }
        seen[ci] = true;
        if (exec_relation_values(r, &t->cols[ci], &w[i], &kv[ci])) return -1;
    }
    for (uint16_t i = 0; i < t->npk; i++)
        if (!seen[i]) {
            exec_error(r, CQLE_INVALID, "Some partition key parts are missing: %s", t->cols[i].name);
            return -1;
        }
    uint16_t nckset = 0;
    while (nckset < t->nck && seen[t->npk + nckset]) nckset++;
    for (uint16_t i = nckset; i < t->nck; i++)
        if (seen[t->npk + i]) {
            exec_error(r, CQLE_INVALID, "PRIMARY KEY column \"%s\" cannot be restricted as preceding column \"%s\" is not restricted",
                       t->cols[t->npk + i].name, t->cols[t->npk + nckset].name);
            return -1;
        }
    if (nckset < t->nck && (need_ck || nckset > 0)) {
        if (need_ck)
            exec_error(r, CQLE_INVALID, "Some clustering keys are missing: %s", t->cols[t->npk + nckset].name);
        else
            exec_error(r, CQLE_INVALID, "Range deletions (a prefix of the clustering key) are not supported; give every clustering column (missing %s) or none",
                       t->cols[t->npk + nckset].name);
        return -1;
    }
    if (product(r, t, 0, t->npk, kv, false, &out->pks, &out->npk)) return -1;
    out->ck_given = t->nck == 0 || nckset == t->nck;
    if (out->ck_given) {
        if (product(r, t, t->npk, t->nck, kv + t->npk, true, &out->cks, &out->nck)) return -1;
    } else {
        out->nck = 0;
    }
    return 0;
}

typedef struct wopts {
    int64_t ts;
    int32_t ttl;
    int32_t now;
} wopts;

static int using_opts(exec_req *r, const schema_table *t, const cql_using *u, wopts *o) {
    o->now = clock_now_s();
    if (u->timestamp) {
        int64_t v;
        int rc = exec_term_int(r, u->timestamp, "USING TIMESTAMP", INT64_MIN + 1, INT64_MAX, &v);
        if (rc < 0) return -1;
        if (rc == 0) {
            o->ts = v;
            goto ttl;
        }
    }
    if (r->batch_ts != INT64_MIN) o->ts = r->batch_ts;
    else if (r->params.default_timestamp != INT64_MIN) o->ts = r->params.default_timestamp;
    else o->ts = clock_now_us();
ttl:
    o->ttl = t->params.default_time_to_live;
    if (u->ttl) {
        int64_t v;
        int rc = exec_term_int(r, u->ttl, "TTL", 0, 630720000, &v);
        if (rc < 0) return -1;
        if (rc == 0) o->ttl = (int32_t)v;
    }
    return 0;
}

/* --- building mutations --------------------------------------------------------------------- */

static st_partition *part_for(exec_req *r, mut_list *ml, const schema_table *t, const exec_val *pk) {
    st_partition *p = st_partition_new(&r->arena, t->id, pk->data, (uint32_t)pk->len);
    if (!p || modify_ml_add(r, ml, p)) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return NULL;
    }
    return p;
}

static int set_cell(exec_req *r, st_row *row, const schema_column *c, const wopts *o, const exec_val *v) {
    if (v->len == -2) return 0; /* unset: leave the column alone */
    int rc = st_row_set_cell(&r->arena, row, c->id, o->ts, v->len < 0 ? 0 : o->ttl, o->now,
                             v->len < 0 ? NULL : (v->data ? v->data : (const uint8_t *)""),
                             v->len < 0 ? 0 : (uint32_t)v->len);
    if (rc) exec_error(r, CQLE_SERVER, "out of memory");
    return rc;
}

static void set_marker(st_row *row, const wopts *o) {
    row->marker.ts = o->ts;
    row->marker.ttl = o->ttl;
    row->marker.expiry = o->ttl ? o->now + o->ttl : ST_NO_EXPIRY;
}

static int build_insert(exec_req *r, const schema_table *t, const cql_insert *in, mut_list *ml,
                        lwt *l) {
    if (in->json) {
        exec_error(r, CQLE_INVALID, "INSERT JSON is not supported");
        return -1;
    }
    wopts o;
    if (using_opts(r, t, &in->using, &o)) return -1;
    exec_val *vals = arena_alloc(&r->arena, t->ncols * sizeof *vals);
    bool *given = arena_alloc(&r->arena, t->ncols);
    if (!vals || !given) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    memset(given, 0, t->ncols);
    for (uint32_t i = 0; i < in->ncols; i++) {
        int ci = schema_column_index(t, in->cols[i].s ? in->cols[i].s : "");
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s", in->cols[i].s ? in->cols[i].s : "");
            return -1;
        }
        if (given[ci]) {
            exec_error(r, CQLE_INVALID, "Multiple definitions found for column %s", t->cols[ci].name);
            return -1;
        }
        given[ci] = true;
        if (exec_term_value(r, in->values[i], &t->cols[ci].type, t->cols[ci].name, &vals[ci])) return -1;
    }
    /* Without clustering values an INSERT may only set static columns. */
    bool ck_missing = false, any_regular = false, any_static = false;
    for (uint16_t i = t->npk; i < t->npk + t->nck; i++) ck_missing |= !given[i];
    for (uint16_t i = (uint16_t)(t->npk + t->nck); i < t->ncols; i++)
        if (given[i]) {
            any_static |= t->cols[i].kind == SCHEMA_COL_STATIC;
            any_regular |= t->cols[i].kind != SCHEMA_COL_STATIC;
        }
    bool static_only = ck_missing && any_static && !any_regular && !in->if_not_exists;
    for (uint16_t i = 0; i < t->npk + t->nck; i++)
        if (!given[i] && (i < t->npk || !static_only)) {
            exec_error(r, CQLE_INVALID, "Some %s are missing: %s",
                       i < t->npk ? "partition key parts" : "clustering keys", t->cols[i].name);
            return -1;
        }
    keyvals kv[SCHEMA_MAX_COLUMNS];
    for (uint16_t i = 0; i < t->npk + t->nck; i++) {
        kv[i].n = 1;
        kv[i].v = &vals[i];
    }
    exec_val *pk, *ck = NULL;
    uint32_t n1, n2;
    if (product(r, t, 0, t->npk, kv, false, &pk, &n1)) return -1;
    if (!static_only && product(r, t, t->npk, t->nck, kv + t->npk, true, &ck, &n2)) return -1;
    st_partition *p = part_for(r, ml, t, &pk[0]);
    if (!p) return -1;
    st_row *srow = NULL, *row = NULL;
    if (any_static && !(srow = st_partition_row(&r->arena, p, "", 0))) goto oom;
    if (!static_only) {
        if (!(row = st_partition_row(&r->arena, p, ck[0].data, (uint32_t)ck[0].len))) goto oom;
        set_marker(row, &o);
    }
    for (uint16_t i = (uint16_t)(t->npk + t->nck); i < t->ncols; i++)
        if (given[i] && set_cell(r, t->cols[i].kind == SCHEMA_COL_STATIC ? srow : row, &t->cols[i], &o, &vals[i]))
            return -1;
    if (l) {
        l->pk = pk[0];
        l->ck = ck[0];
        l->if_not_exists = in->if_not_exists;
    }
    return 0;
oom:
    exec_error(r, CQLE_SERVER, "out of memory");
    return -1;
}

static int build_update(exec_req *r, const schema_table *t, const cql_update *up, mut_list *ml,
                        targets *tg) {
    wopts o;
    if (using_opts(r, t, &up->using, &o)) return -1;
    bool all_static = up->nset > 0, any_static = false;
    for (uint32_t i = 0; i < up->nset; i++) {
        const schema_column *c = schema_column_get(t, up->set[i].column.s ? up->set[i].column.s : "");
        bool st = c && c->kind == SCHEMA_COL_STATIC;
        all_static &= st;
        any_static |= st;
    }
    if (where_targets(r, t, up->where, up->nwhere, !all_static, tg)) return -1;
    if (all_static && t->nck && tg->ck_given) {
        exec_error(r, CQLE_INVALID, "Invalid restrictions on clustering columns since the UPDATE statement modifies only static columns");
        return -1;
    }
    exec_val *vals = arena_alloc(&r->arena, (up->nset ? up->nset : 1) * sizeof *vals);
    int *cis = arena_alloc(&r->arena, (up->nset ? up->nset : 1) * sizeof *cis);
    if (!vals || !cis) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < up->nset; i++) {
        const cql_assignment *a = &up->set[i];
        int ci = schema_column_index(t, a->column.s ? a->column.s : "");
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s", a->column.s ? a->column.s : "");
            return -1;
        }
        if (ci < t->npk + t->nck) {
            exec_error(r, CQLE_INVALID, "PRIMARY KEY part %s found in SET part", t->cols[ci].name);
            return -1;
        }
        if (a->op != CQL_ASSIGN_SET) {
            exec_error(r, CQLE_INVALID, "Invalid operation on column %s: only col = value is supported (no counters or collections)", t->cols[ci].name);
            return -1;
        }
        cis[i] = ci;
        if (exec_term_value(r, a->value, &t->cols[ci].type, t->cols[ci].name, &vals[i])) return -1;
    }
    for (uint32_t k = 0; k < tg->npk; k++) {
        st_partition *p = part_for(r, ml, t, &tg->pks[k]);
        if (!p) return -1;
        if (any_static) {
            st_row *srow = st_partition_row(&r->arena, p, "", 0);
            if (!srow) {
                exec_error(r, CQLE_SERVER, "out of memory");
                return -1;
            }
            for (uint32_t i = 0; i < up->nset; i++)
                if (t->cols[cis[i]].kind == SCHEMA_COL_STATIC && set_cell(r, srow, &t->cols[cis[i]], &o, &vals[i]))
                    return -1;
        }
        for (uint32_t j = 0; j < tg->nck && !all_static; j++) {
            st_row *row = st_partition_row(&r->arena, p, tg->cks[j].data, (uint32_t)tg->cks[j].len);
            if (!row) {
                exec_error(r, CQLE_SERVER, "out of memory");
                return -1;
            }
            for (uint32_t i = 0; i < up->nset; i++)
                if (t->cols[cis[i]].kind != SCHEMA_COL_STATIC && set_cell(r, row, &t->cols[cis[i]], &o, &vals[i]))
                    return -1;
        }
    }
    return 0;
}

static int build_delete(exec_req *r, const schema_table *t, const cql_delete *d, mut_list *ml,
                        targets *tg) {
    wopts o;
    if (using_opts(r, t, &d->using, &o)) return -1;
    if (where_targets(r, t, d->where, d->nwhere, false, tg)) return -1;
    int *cis = arena_alloc(&r->arena, (d->ncols ? d->ncols : 1) * sizeof *cis);
    for (uint32_t i = 0; i < d->ncols; i++) {
        int ci = schema_column_index(t, d->cols[i].column.s ? d->cols[i].column.s : "");
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s", d->cols[i].column.s ? d->cols[i].column.s : "");
            return -1;
        }
        if (ci < t->npk + t->nck) {
            exec_error(r, CQLE_INVALID, "Invalid identifier %s for deletion (should not be a PRIMARY KEY part)", t->cols[ci].name);
            return -1;
        }
        if (d->cols[i].elem) {
            exec_error(r, CQLE_INVALID, "Element deletion is not supported (column %s is not a collection)", t->cols[ci].name);
            return -1;
        }
        cis[i] = ci;
    }
    bool any_regular = false, any_static = false;
    for (uint32_t i = 0; i < d->ncols; i++) {
        any_static |= t->cols[cis[i]].kind == SCHEMA_COL_STATIC;
        any_regular |= t->cols[cis[i]].kind != SCHEMA_COL_STATIC;
    }
    if (any_regular && !tg->ck_given) {
        exec_error(r, CQLE_INVALID, "Column deletions need every clustering column in the WHERE clause");
        return -1;
    }
    exec_val null = {NULL, -1};
    for (uint32_t k = 0; k < tg->npk; k++) {
        st_partition *p = part_for(r, ml, t, &tg->pks[k]);
        if (!p) return -1;
        if (any_static) {
            st_row *srow = st_partition_row(&r->arena, p, "", 0);
            if (!srow) {
                exec_error(r, CQLE_SERVER, "out of memory");
                return -1;
            }
            for (uint32_t i = 0; i < d->ncols; i++)
                if (t->cols[cis[i]].kind == SCHEMA_COL_STATIC && set_cell(r, srow, &t->cols[cis[i]], &o, &null))
                    return -1;
            if (!any_regular) continue;
        }
        if (!tg->ck_given) {
            p->del.ts = o.ts;
            p->del.local_time = o.now;
            continue;
        }
        for (uint32_t j = 0; j < tg->nck; j++) {
            st_row *row = st_partition_row(&r->arena, p, tg->cks[j].data, (uint32_t)tg->cks[j].len);
            if (!row) {
                exec_error(r, CQLE_SERVER, "out of memory");
                return -1;
            }
            if (d->ncols == 0) {
                row->del.ts = o.ts;
                row->del.local_time = o.now;
            } else {
                for (uint32_t i = 0; i < d->ncols; i++)
                    if (t->cols[cis[i]].kind != SCHEMA_COL_STATIC && set_cell(r, row, &t->cols[cis[i]], &o, &null))
                        return -1;
            }
        }
    }
    return 0;
}

static const cql_qname *stmt_qname(const cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_INSERT: return &st->u.insert.table;
    case CQL_STMT_UPDATE: return &st->u.update.table;
    default: return &st->u.del.table;
    }
}

/* Builds st's mutations into ml. With l non-NULL, records what a conditional statement needs. */
int modify_build(exec_req *r, cql_stmt *st, mut_list *ml, lwt *l, const schema_table **tout) {
    schema_table *t = exec_table(r, stmt_qname(st));
    if (!t) return -1;
    if (t->is_virtual) {
        exec_error(r, CQLE_INVALID, "%s.%s is a system table and cannot be modified", t->ks, t->name);
        return -1;
    }
    *tout = t;
    targets tg;
    memset(&tg, 0, sizeof tg);
    int rc;
    switch (st->kind) {
    case CQL_STMT_INSERT: return build_insert(r, t, &st->u.insert, ml, l);
    case CQL_STMT_UPDATE: rc = build_update(r, t, &st->u.update, ml, &tg); break;
    default: rc = build_delete(r, t, &st->u.del, ml, &tg); break;
    }
    if (rc || !l) return rc;
    if (tg.npk != 1 || (t->nck && (!tg.ck_given || tg.nck != 1))) {
        exec_error(r, CQLE_INVALID, "Conditional updates need exactly one row: IN and clustering ranges are not supported with IF");
        return -1;
    }
    l->pk = tg.pks[0];
    if (tg.nck) l->ck = tg.cks[0];
    else l->ck.data = (const uint8_t *)"", l->ck.len = 0;
    return 0;
}

bool modify_is_conditional(const cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_INSERT: return st->u.insert.if_not_exists;
    case CQL_STMT_UPDATE: return st->u.update.if_exists || st->u.update.nif;
    case CQL_STMT_DELETE: return st->u.del.if_exists || st->u.del.nif;
    default: return false;
    }
}

void stmt_modify(exec_req *r, cql_stmt *st) {
    if (modify_is_conditional(st)) {
        modify_run_conditional(r, st);
        return;
    }
    mut_list ml = {0};
    const schema_table *t;
    if (modify_build(r, st, &ml, NULL, &t)) return;
    const schema_keyspace *k = exec_table_keyspace(r, t);
    int rc = coord_write(r->x->coord, &k->repl, ml.v, ml.n, (enum coord_cl)r->cl, COORD_WT_SIMPLE,
                         exec_reply_coord_done, r);
    if (rc) exec_error(r, CQLE_SERVER, "write failed (%d)", rc);
}

void stmt_batch(exec_req *r, cql_stmt **stmts, uint32_t n, uint8_t type) {
    if (type == CQL_BATCH_COUNTER) {
        exec_error(r, CQLE_INVALID, "Counter batches are not supported");
        return;
    }
    /* Protocol BATCH: each entry has its own values (r->state = {values[], nvalues[]}). */
    void **pair = r->state;
    if (r->batch_ts == INT64_MIN) r->batch_ts = clock_now_us();
    mut_list ml = {0};
    const schema_keyspace *k = NULL;
    for (uint32_t i = 0; i < n; i++) {
        if (modify_is_conditional(stmts[i])) {
            exec_error(r, CQLE_INVALID, "Conditional statements in a BATCH are not supported");
            return;
        }
        if (pair) {
            r->values = ((const cql_value **)pair[0])[i];
            r->nvalues = ((uint16_t *)pair[1])[i];
        }
        const schema_table *t;
        if (modify_build(r, stmts[i], &ml, NULL, &t)) return;
        const schema_keyspace *tk = schema_keyspace_get(r->x->cat, t->ks);
        if (!k) k = tk;
        else if (k != tk && (tk->repl.rf > k->repl.rf || tk->repl.ndcs > k->repl.ndcs)) k = tk;
    }
    if (!k) {
        exec_reply_void(r);
        return;
    }
    int rc = coord_write(r->x->coord, &k->repl, ml.v, ml.n, (enum coord_cl)r->cl,
                         type == CQL_BATCH_UNLOGGED ? COORD_WT_UNLOGGED_BATCH : COORD_WT_BATCH,
                         exec_reply_coord_done, r);
    if (rc) exec_error(r, CQLE_SERVER, "write failed (%d)", rc);
}
