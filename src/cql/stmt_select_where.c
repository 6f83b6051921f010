/* SELECT on user tables, the planning half: the selection, the partitions to read (= / IN on
 * the partition key, else a scan with optional token() bounds), the clustering slice in the
 * byte-comparable encoding (= prefix, then one range, or a multi-column relation), filters for
 * the rest (ALLOW FILTERING where Cassandra asks for it), ORDER BY, limits and the paging
 * position. Execution: stmt_select.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/clock.h"
#include "ilion/util/murmur3.h"
#include "stmt_select_plan.h"

/* --- planning ----------------------------------------------------------------------------- */

static int add_filter(exec_req *r, sel *s, int ci, const cql_relation *w) {
    filt *nf = arena_alloc(&r->arena, (s->nfilt + 1) * sizeof *nf);
    if (!nf) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    if (s->nfilt) memcpy(nf, s->filts, s->nfilt * sizeof *nf);
    s->filts = nf;
    if (select_filter(r, s->t, ci, w, &s->filts[s->nfilt])) return -1;
    s->nfilt++;
    return 0;
}

/* Values of a (c1, c2, ...) relation's right side: a tuple literal or a bound tuple value.
 * Answers errors and returns -1. */
static int tuple_values(exec_req *r, const schema_table *t, const cql_relation *w, exec_val **out) {
    exec_val *v = arena_alloc(&r->arena, w->ncols * sizeof *v);
    if (!v) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    const cql_term *val = w->value;
    if (val && val->kind == CQL_TERM_TUPLE) {
        if (val->u.coll.n != w->ncols) {
            exec_error(r, CQLE_INVALID, "Expected %u elements in the tuple, got %u", w->ncols, val->u.coll.n);
            return -1;
        }
        for (uint32_t k = 0; k < w->ncols; k++) {
            const schema_column *col = &t->cols[t->npk + k];
            if (exec_term_value(r, val->u.coll.items[k], &col->type, col->name, &v[k])) return -1;
        }
    } else if (val && val->kind == CQL_TERM_BIND) {
        schema_type bt = SCHEMA_TYPE(SCHEMA_T_BLOB);
        exec_val tv;
        if (exec_term_value(r, val, &bt, "tuple", &tv)) return -1;
        rd rr;
        rd_init(&rr, tv.data, tv.len > 0 ? (size_t)tv.len : 0);
        for (uint32_t k = 0; k < w->ncols; k++) {
            uint32_t l;
            char err[200];
            const schema_column *col = &t->cols[t->npk + k];
            if (tv.len < 0 || rd_u32(&rr, &l) || (int32_t)l < 0 || rd_bytes(&rr, l, &v[k].data)) {
                exec_error(r, CQLE_INVALID, "Invalid tuple value bound for (%s, ...)", t->cols[t->npk].name);
                return -1;
            }
            v[k].len = (int32_t)l;
            if (schema_value_validate(&col->type, v[k].data, l, err, sizeof err)) {
                exec_error(r, CQLE_INVALID, "Invalid value for %s: %s", col->name, err);
                return -1;
            }
        }
    } else {
        exec_error(r, CQLE_INVALID, "Multi-column relations need a tuple of values on the right");
        return -1;
    }
    for (uint32_t k = 0; k < w->ncols; k++)
        if (v[k].len < 0) {
            exec_error(r, CQLE_INVALID, "Invalid null value in tuple for %s", t->cols[t->npk + k].name);
            return -1;
        }
    *out = v;
    return 0;
}

static int pk_ring_cmp(const void *a, const void *b) {
    const exec_val *x = a, *y = b;
    return st_key_compare(murmur3_token(x->data, (size_t)x->len), x->data, (uint32_t)x->len,
                          murmur3_token(y->data, (size_t)y->len), y->data, (uint32_t)y->len);
}

static const uint8_t *bdup(exec_req *r, const buf *b) {
    return arena_dup(&r->arena, b->len ? b->data : (const uint8_t *)"", b->len ? b->len : 1);
}

int stmt_select_metadata(exec_req *r, const schema_table *t, const cql_select *s, rs_col **cols,
                         uint32_t *ncols) {
    selection sc;
    if (select_selection(r, t, s, &sc)) return -1;
    *cols = sc.cols;
    *ncols = sc.n;
    return 0;
}

void stmt_select(exec_req *r, cql_stmt *st) {
    const cql_select *q = &st->u.select;
    schema_table *t = exec_table(r, &q->table);
    if (!t) return;
    if (t->is_virtual) {
        system_tables_select(r, t, q);
        return;
    }
    sel *s = arena_alloc(&r->arena, sizeof *s);
    if (!s) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    memset(s, 0, sizeof *s);
    s->t = t;
    s->tid = t->id;
    s->k = exec_table_keyspace(r, t);
    s->now = clock_now_s();
    s->tmin = INT64_MIN;
    s->tmax = INT64_MAX;
    buf_init(&s->ckbuf);
    if (select_selection(r, t, q, &s->selc)) return;
    if (select_limits(r, q, &s->limit, &s->ppl)) return;
    s->distinct = q->distinct;
    s->statics = exec_has_static(t);
    if (s->distinct)
        for (uint32_t i = 0; i < s->selc.n; i++)
            if (s->selc.items[i].kind == SELK_COL
                    ? s->selc.items[i].col >= t->npk && t->cols[s->selc.items[i].col].kind != SCHEMA_COL_STATIC
                    : s->selc.items[i].kind != SELK_TOKEN) {
                exec_error(r, CQLE_INVALID, "SELECT DISTINCT queries must only request partition key columns and/or static columns (not %s)", s->selc.cols[i].name);
                return;
            }
    s->vals = arena_alloc(&r->arena, t->ncols * sizeof *s->vals);
    uint16_t nk = (uint16_t)(t->npk + t->nck);
    exec_valist *kv = arena_alloc(&r->arena, (nk ? nk : 1) * sizeof *kv);
    const cql_relation **lo = arena_alloc(&r->arena, (nk ? nk : 1) * sizeof *lo);
    const cql_relation **hi = arena_alloc(&r->arena, (nk ? nk : 1) * sizeof *hi);
    if (!s->vals || !kv || !lo || !hi) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    memset(kv, 0, nk * sizeof *kv);
    memset(lo, 0, nk * sizeof *lo);
    memset(hi, 0, nk * sizeof *hi);
    bool need_filtering = false, token_restricted = false;
    const cql_relation *tup_eq = NULL, *tup_lo = NULL, *tup_hi = NULL;
    for (uint32_t i = 0; i < q->nwhere; i++) {
        const cql_relation *w = &q->where[i];
        if (w->lhs == CQL_LHS_TOKEN) {
            if (w->ncols != t->npk) goto bad_token;
            for (uint32_t k = 0; k < w->ncols; k++)
                if (!w->cols[k].s || strcmp(w->cols[k].s, t->cols[k].name) != 0) goto bad_token;
            int64_t v;
            schema_type bt = SCHEMA_TYPE(SCHEMA_T_BIGINT);
            exec_val tv;
            if (exec_term_value(r, w->value, &bt, "partition key token", &tv)) return;
            if (tv.len != 8) {
                exec_error(r, CQLE_INVALID, "Invalid null value for partition key token");
                return;
            }
            v = (int64_t)be64_get(tv.data);
            switch (w->op) {
            case CQL_OP_GT: if (v == INT64_MAX) s->done = true; else if (v + 1 > s->tmin) s->tmin = v + 1; break;
            case CQL_OP_GE: if (v > s->tmin) s->tmin = v; break;
            case CQL_OP_LT: if (v == INT64_MIN) s->done = true; else if (v - 1 < s->tmax) s->tmax = v - 1; break;
            case CQL_OP_LE: if (v < s->tmax) s->tmax = v; break;
            case CQL_OP_EQ: if (v > s->tmin) s->tmin = v; if (v < s->tmax) s->tmax = v; break;
            default: goto bad_token;
            }
            token_restricted = true;
            continue;
        bad_token:
            exec_error(r, CQLE_INVALID, "The token() function must be applied to all partition key components in order, with =, <, <=, > or >=");
            return;
        }
        if (w->lhs == CQL_LHS_TUPLE) {
            if (w->ncols == 0 || w->ncols > t->nck) goto bad_tuple;
            for (uint32_t k = 0; k < w->ncols; k++)
                if (!w->cols[k].s || strcmp(w->cols[k].s, t->cols[t->npk + k].name) != 0 ||
                    t->cols[t->npk + k].desc != t->cols[t->npk].desc)
                    goto bad_tuple;
            const cql_relation **slot = w->op == CQL_OP_EQ ? &tup_eq
                                      : (w->op == CQL_OP_GT || w->op == CQL_OP_GE) ? &tup_lo
                                      : (w->op == CQL_OP_LT || w->op == CQL_OP_LE) ? &tup_hi : NULL;
            if (!slot || *slot) goto bad_tuple;
            *slot = w;
            continue;
        bad_tuple:
            exec_error(r, CQLE_INVALID, "Multi-column relations must name the clustering columns in order from the first, all with the same clustering order, once each, with =, <, <=, > or >= (IN on tuples is not supported)");
            return;
        }
        int ci = schema_column_index(t, w->column.s ? w->column.s : "");
        if (ci < 0) {
            exec_error(r, CQLE_INVALID, "Undefined column name %s", w->column.s ? w->column.s : "");
            return;
        }
        if (ci < nk && (w->op == CQL_OP_EQ || w->op == CQL_OP_IN) && !kv[ci].v && !lo[ci] && !hi[ci]) {
            if (exec_relation_values(r, &t->cols[ci], w, &kv[ci])) return;
            for (uint32_t k = 0; k < kv[ci].n; k++)
                if (kv[ci].v[k].len < 0) {
                    exec_error(r, CQLE_INVALID, "Invalid %s value for column %s", kv[ci].v[k].len == -1 ? "null" : "unset", t->cols[ci].name);
                    return;
                }
            continue;
        }
        if (ci >= t->npk && ci < nk && !kv[ci].v) {
            if ((w->op == CQL_OP_GT || w->op == CQL_OP_GE) && !lo[ci]) { lo[ci] = w; continue; }
            if ((w->op == CQL_OP_LT || w->op == CQL_OP_LE) && !hi[ci]) { hi[ci] = w; continue; }
        }
        if (ci < t->npk) need_filtering = true;
        if (ci >= nk) need_filtering = true;
        if (add_filter(r, s, ci, w)) return;
    }
    /* Partition key: all components by = / IN, or a scan. */
    bool pk_full = true, pk_any = false;
    for (uint16_t i = 0; i < t->npk; i++) {
        if (kv[i].v) pk_any = true;
        else pk_full = false;
    }
    if (pk_full && token_restricted) {
        exec_error(r, CQLE_INVALID, "Partition key restrictions cannot be combined with token() restrictions");
        return;
    }
    if (!pk_full) {
        s->scan = true;
        if (pk_any) {
            need_filtering = true;
            for (uint16_t i = 0; i < t->npk; i++)
                if (kv[i].v) {
                    cql_relation fake;
                    memset(&fake, 0, sizeof fake);
                    filt *nf = arena_alloc(&r->arena, (s->nfilt + 1) * sizeof *nf);
                    if (!nf) { exec_error(r, CQLE_SERVER, "out of memory"); return; }
                    if (s->nfilt) memcpy(nf, s->filts, s->nfilt * sizeof *nf);
                    s->filts = nf;
                    memset(&nf[s->nfilt], 0, sizeof *nf);
                    nf[s->nfilt].col = i;
                    nf[s->nfilt].op = CQL_OP_IN;
                    nf[s->nfilt].nin = kv[i].n;
                    nf[s->nfilt].in = kv[i].v;
                    s->nfilt++;
                    (void)fake;
                }
        }
    } else {
        /* routing keys (cartesian product of IN lists) */
        uint64_t total = 1;
        for (uint16_t i = 0; i < t->npk; i++) total *= kv[i].n;
        if (total > 10000) {
            exec_error(r, CQLE_INVALID, "IN restrictions select more than 10000 partitions");
            return;
        }
        s->npk = (uint32_t)total;
        s->pks = arena_alloc(&r->arena, (total ? total : 1) * sizeof *s->pks);
        uint32_t idx[SCHEMA_MAX_COLUMNS];
        memset(idx, 0, sizeof idx[0] * t->npk);
        buf b;
        buf_init(&b);
        const uint8_t *vv[SCHEMA_MAX_COLUMNS];
        uint32_t ll[SCHEMA_MAX_COLUMNS];
        for (uint64_t n = 0; n < total; n++) {
            buf_reset(&b);
            for (uint16_t i = 0; i < t->npk; i++) {
                vv[i] = kv[i].v[idx[i]].data ? kv[i].v[idx[i]].data : (const uint8_t *)"";
                ll[i] = (uint32_t)kv[i].v[idx[i]].len;
            }
            schema_routing_key(vv, ll, t->npk, &b);
            s->pks[n].data = bdup(r, &b);
            s->pks[n].len = (int32_t)b.len;
            for (int i = t->npk - 1; i >= 0; i--) {
                if (++idx[i] < kv[i].n) break;
                idx[i] = 0;
            }
        }
        buf_free(&b);
        /* Partitions in ring order (token, key), each once, whatever the IN lists repeat. */
        if (s->npk > 1) {
            qsort(s->pks, s->npk, sizeof *s->pks, pk_ring_cmp);
            uint32_t m = 1;
            for (uint32_t i = 1; i < s->npk; i++)
                if (pk_ring_cmp(&s->pks[i], &s->pks[m - 1]) != 0) s->pks[m++] = s->pks[i];
            s->npk = m;
        }
    }
    /* Multi-column relations on the clustering key stand alone. */
    if (tup_eq || tup_lo || tup_hi) {
        for (uint16_t i = 0; i < t->nck; i++)
            if (kv[t->npk + i].v || lo[t->npk + i] || hi[t->npk + i]) {
                exec_error(r, CQLE_INVALID, "Clustering columns cannot be restricted by both single-column and multi-column relations");
                return;
            }
        if (tup_eq && (tup_lo || tup_hi)) {
            exec_error(r, CQLE_INVALID, "A multi-column equality cannot be combined with a multi-column range");
            return;
        }
        if (tup_eq) {
            /* (c1, c2) = (a, b) is c1 = a AND c2 = b */
            exec_val *vals;
            if (tuple_values(r, t, tup_eq, &vals)) return;
            for (uint32_t k = 0; k < tup_eq->ncols; k++) {
                kv[t->npk + k].n = 1;
                kv[t->npk + k].v = &vals[k];
            }
        }
    }
    /* Clustering: = prefix, then one range, the rest filtered. */
    bool ck_restricted = false;
    buf pre;
    buf_init(&pre);
    uint16_t c = 0;
    while (c < t->nck && kv[t->npk + c].v && kv[t->npk + c].n == 1) {
        const schema_column *col = &t->cols[t->npk + c];
        const exec_val *v = &kv[t->npk + c].v[0];
        if (schema_ck_encode(&col->type, col->desc, v->data ? v->data : (const uint8_t *)"", (size_t)v->len, &pre)) {
            buf_free(&pre);
            exec_error(r, CQLE_INVALID, "Invalid value for clustering column %s", col->name);
            return;
        }
        c++;
    }
    buf sb, eb;
    buf_init(&sb);
    buf_init(&eb);
    bool has_s = false, has_e = false, s_incl = true, e_incl = false;
    if (pre.len) {
        buf_put(&sb, pre.data, pre.len);
        has_s = true;
        has_e = schema_prefix_successor(pre.data, pre.len, &eb);
    }
    if (tup_lo || tup_hi) {
        /* The tuple's bytes compare like the tuple (same order for every component). */
        ck_restricted = true;
        bool desc = t->cols[t->npk].desc;
        for (int side = 0; side < 2; side++) {
            const cql_relation *w = side == 0 ? tup_lo : tup_hi;
            if (!w) continue;
            exec_val *vals;
            if (tuple_values(r, t, w, &vals)) goto out;
            buf bound;
            buf_init(&bound);
            for (uint32_t k = 0; k < w->ncols; k++) {
                const schema_column *col = &t->cols[t->npk + k];
                schema_ck_encode(&col->type, col->desc, vals[k].data ? vals[k].data : (const uint8_t *)"", (size_t)vals[k].len, &bound);
            }
            bool incl = w->op == CQL_OP_GE || w->op == CQL_OP_LE;
            if ((side == 0) != desc) {
                buf_reset(&sb);
                if (incl) {
                    buf_put(&sb, bound.data, bound.len);
                    has_s = true;
                } else if (!(has_s = schema_prefix_successor(bound.data, bound.len, &sb))) {
                    s->done = true;
                }
            } else {
                buf_reset(&eb);
                if (incl) has_e = schema_prefix_successor(bound.data, bound.len, &eb);
                else {
                    buf_put(&eb, bound.data, bound.len);
                    has_e = true;
                }
            }
            buf_free(&bound);
        }
        c = t->nck; /* every clustering column is handled */
    }
    bool chain = c < t->nck && kv[t->npk + c].v != NULL;
    if (!tup_lo && !tup_hi) ck_restricted = c > 0;
    if (c < t->nck && (lo[t->npk + c] || hi[t->npk + c])) {
        chain = false;
        ck_restricted = true;
        const schema_column *col = &t->cols[t->npk + c];
        for (int side = 0; side < 2; side++) {
            const cql_relation *w = side == 0 ? lo[t->npk + c] : hi[t->npk + c];
            if (!w) continue;
            exec_val v;
            if (exec_term_value(r, w->value, &col->type, col->name, &v)) goto out;
            if (v.len < 0) {
                exec_error(r, CQLE_INVALID, "Invalid null value for clustering column %s", col->name);
                goto out;
            }
            buf bound;
            buf_init(&bound);
            buf_put(&bound, pre.data, pre.len);
            if (schema_ck_encode(&col->type, col->desc, v.data ? v.data : (const uint8_t *)"", (size_t)v.len, &bound)) {
                buf_free(&bound);
                exec_error(r, CQLE_INVALID, "Invalid value for clustering column %s", col->name);
                goto out;
            }
            bool lower = side == 0;               /* value-wise lower bound */
            bool incl = w->op == CQL_OP_GE || w->op == CQL_OP_LE;
            bool bytes_lower = lower != col->desc; /* DESC flips which byte bound it is */
            if (bytes_lower) {
                buf_reset(&sb);
                if (incl) {
                    buf_put(&sb, bound.data, bound.len);
                    has_s = true;
                } else {
                    has_s = schema_prefix_successor(bound.data, bound.len, &sb);
                    if (!has_s) s->done = true; /* nothing sorts above the bound */
                }
                s_incl = true;
            } else {
                buf_reset(&eb);
                if (incl) {
                    has_e = schema_prefix_successor(bound.data, bound.len, &eb);
                } else {
                    buf_put(&eb, bound.data, bound.len);
                    has_e = true;
                }
                e_incl = false;
            }
            buf_free(&bound);
        }
        c++;
    }
    for (uint16_t i = c; i < t->nck; i++) {
        /* Restrictions on later clustering columns are filtered: = / IN ones need no ALLOW
         * FILTERING while every earlier clustering column has = / IN too. */
        int ci = t->npk + i;
        if (!kv[ci].v) chain = false;
        if (kv[ci].v) {
            filt *nf = arena_alloc(&r->arena, (s->nfilt + 1) * sizeof *nf);
            if (!nf) { exec_error(r, CQLE_SERVER, "out of memory"); goto out; }
            if (s->nfilt) memcpy(nf, s->filts, s->nfilt * sizeof *nf);
            s->filts = nf;
            memset(&nf[s->nfilt], 0, sizeof *nf);
            nf[s->nfilt].col = ci;
            nf[s->nfilt].op = CQL_OP_IN;
            nf[s->nfilt].nin = kv[ci].n;
            nf[s->nfilt].in = kv[ci].v;
            s->nfilt++;
            if (!chain) need_filtering = true;
        }
        for (int side = 0; side < 2; side++) {
            const cql_relation *w = side == 0 ? lo[ci] : hi[ci];
            if (w) {
                need_filtering = true;
                chain = false;
                if (add_filter(r, s, ci, w)) goto out;
            }
        }
    }
    if (has_s) {
        s->slice.start = bdup(r, &sb);
        s->slice.start_len = (uint32_t)sb.len;
        s->slice.start_incl = s_incl;
    }
    if (has_e) {
        s->slice.end = bdup(r, &eb);
        s->slice.end_len = (uint32_t)eb.len;
        s->slice.end_incl = e_incl;
    }
    buf_free(&pre);
    buf_free(&sb);
    buf_free(&eb);
    /* Clustering restrictions on a scan read every partition. */
    if (s->scan && ck_restricted) need_filtering = true;
    if (need_filtering && !q->allow_filtering) {
        exec_error(r, CQLE_INVALID, "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING");
        return;
    }
    s->filtering = s->nfilt > 0;
    /* ORDER BY */
    if (q->norder) {
        if (s->scan) {
            exec_error(r, CQLE_INVALID, "ORDER BY is only supported when the partition key is restricted by an EQ or an IN.");
            return;
        }
        for (uint32_t i = 0; i < q->norder; i++) {
            const char *cn = q->order[i].column.s ? q->order[i].column.s : "";
            if (i >= t->nck || strcmp(cn, t->cols[t->npk + i].name) != 0) {
                exec_error(r, CQLE_INVALID, "Order by currently only supports the ordering of columns following their declared order in the PRIMARY KEY (%s)", cn);
                return;
            }
            bool rev = q->order[i].desc != t->cols[t->npk + i].desc;
            if (i == 0) s->reversed = rev;
            else if (rev != s->reversed) {
                exec_error(r, CQLE_INVALID, "Unsupported order by relation: the ordering of %s must be the same as, or the reverse of, the declared clustering order", cn);
                return;
            }
        }
    }
    /* paging */
    s->page_size = r->params.page_size > 0 && !s->selc.count ? (uint32_t)r->params.page_size : UINT32_MAX;
    s->pos.remaining = s->selc.count ? UINT32_MAX : s->limit;
    if (s->distinct) s->ppl = 1;
    if (r->params.paging_state && r->params.paging_state_len > 0 && !s->selc.count) {
        if (page_pos_decode(r->params.paging_state, (size_t)r->params.paging_state_len, &s->pos)) {
            exec_error(r, CQLE_PROTOCOL, "Invalid paging state");
            return;
        }
    }
    rs_init(&s->rs, t->ks, t->name, s->selc.n, s->selc.cols);
    s->rs.no_metadata = r->params.skip_metadata;
    r->state = s;
    select_run(r);
    return;
out:
    buf_free(&pre);
    buf_free(&sb);
    buf_free(&eb);
}
