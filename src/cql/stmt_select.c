/* SELECT on user tables: single partitions (partition key = / IN) read with a clustering slice,
 * or a scan of all partitions in token order (optionally within token() bounds); rows are
 * filtered, projected and paged. Paging state: stmt_select_common.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/clock.h"
#include "ilion/util/murmur3.h"
#include "stmt_select_plan.h"

typedef struct sel {
    const schema_table *t;
    const schema_keyspace *k;
    selection selc;
    /* partitions */
    bool scan;
    uint32_t npk;
    exec_val *pks;
    int64_t tmin, tmax;         /* scan token bounds, inclusive */
    /* clustering slice */
    storage_slice slice;
    bool reversed;
    bool distinct;
    bool statics;               /* the table has static columns */
    uint32_t nfilt;
    filt *filts;
    bool filtering;             /* filters present: no limit pushdown */
    uint32_t limit, ppl;
    uint32_t page_size;         /* UINT32_MAX: no paging */
    /* progress */
    page_pos pos;
    uint32_t rows_in_page;
    uint64_t count;
    bool done;                  /* no more rows at all */
    bool page_full;
    bool in_issue, completed;
    int phase;                  /* scan: 0 resume read, 1 scan */
    result_set rs;
    int32_t now;
    exec_val *vals;             /* per column, for the current row */
    buf ckbuf;
    int err;                    /* 1 coord error in cerr, 2 corrupt key, 3 table dropped */
    uint64_t tid;
    coord_error cerr;
} sel;

static void sel_continue(exec_req *r);

/* Copies bytes into the request arena (paging positions outlive partition buffers). */
static const uint8_t *keep(exec_req *r, const uint8_t *p, uint32_t n) {
    return n ? arena_dup(&r->arena, p, n) : NULL;
}

/* Fills s->vals for row (key columns decoded, regular cells live at now). */
static void cells_into(sel *s, const st_partition *p, const st_row *row, const st_cell **cells) {
    const schema_table *t = s->t;
    int64_t dts = row->del.ts > p->del.ts ? row->del.ts : p->del.ts;
    uint16_t first = (uint16_t)(t->npk + t->nck);
    for (uint32_t j = 0; j < row->ncells; j++) {
        const st_cell *c = &row->cells[j];
        if (c->ts <= dts || !st_cell_live(c, s->now)) continue;
        /* ids of non-key columns are their indexes */
        if (c->col >= first && c->col < t->ncols && t->cols[c->col].id == c->col) {
            s->vals[c->col].data = c->value;
            s->vals[c->col].len = (int32_t)c->len;
            cells[c->col] = c;
        }
    }
}

/* Fills s->vals for row (NULL: a partition with only static values): key columns decoded,
 * cells live at now, static columns from srow. */
static int row_values(sel *s, const st_partition *p, const st_row *row, const st_row *srow,
                      const st_cell **cells) {
    const schema_table *t = s->t;
    for (uint16_t i = 0; i < t->ncols; i++) {
        s->vals[i].len = -1;
        s->vals[i].data = NULL;
        cells[i] = NULL;
    }
    const uint8_t *pv[SCHEMA_MAX_COLUMNS];
    uint32_t pl[SCHEMA_MAX_COLUMNS];
    if (schema_routing_key_split(p->pk, p->pklen, t->npk, pv, pl)) return -1;
    for (uint16_t i = 0; i < t->npk; i++) {
        s->vals[i].data = pv[i];
        s->vals[i].len = (int32_t)pl[i];
    }
    if (srow) cells_into(s, p, srow, cells);
    if (!row) return 0;
    buf_reset(&s->ckbuf);
    size_t offs[SCHEMA_MAX_COLUMNS + 1];
    rd rr;
    rd_init(&rr, row->ck, row->cklen);
    for (uint16_t i = 0; i < t->nck; i++) {
        const schema_column *c = &t->cols[t->npk + i];
        offs[i] = s->ckbuf.len;
        if (schema_ck_decode(&c->type, c->desc, &rr, &s->ckbuf)) return -1;
    }
    offs[t->nck] = s->ckbuf.len;
    if (s->ckbuf.oom) return -1;
    for (uint16_t i = 0; i < t->nck; i++) {
        s->vals[t->npk + i].data = s->ckbuf.data ? s->ckbuf.data + offs[i] : (const uint8_t *)"";
        s->vals[t->npk + i].len = (int32_t)(offs[i + 1] - offs[i]);
    }
    cells_into(s, p, row, cells);
    return 0;
}

static void emit(sel *s, const st_partition *p, const st_cell **cells) {
    for (uint32_t i = 0; i < s->selc.n; i++) {
        const selitem *it = &s->selc.items[i];
        uint8_t b[8];
        switch (it->kind) {
        case SELK_COL: rs_cell(&s->rs, s->vals[it->col].data, s->vals[it->col].len); break;
        case SELK_WRITETIME:
            if (cells[it->col]) {
                be64_put(b, (uint64_t)cells[it->col]->ts);
                rs_cell(&s->rs, b, 8);
            } else rs_cell(&s->rs, NULL, -1);
            break;
        case SELK_TTL:
            if (cells[it->col] && cells[it->col]->ttl > 0 && cells[it->col]->expiry != ST_NO_EXPIRY) {
                int32_t left = cells[it->col]->expiry - s->now;
                be32_put(b, (uint32_t)(left > 0 ? left : 0));
                rs_cell(&s->rs, b, 4);
            } else rs_cell(&s->rs, NULL, -1);
            break;
        case SELK_TOKEN:
            be64_put(b, (uint64_t)p->token);
            rs_cell(&s->rs, b, 8);
            break;
        case SELK_COUNT: break;
        }
    }
    rs_row_done(&s->rs);
}

static int ck_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl) {
    return st_ck_compare(a, al, b, bl);
}

enum { ROW_SKIPPED, ROW_TAKEN, ROW_STOP };

/* Filters, counts or emits one row (NULL: the static-only row of a partition). */
static int take_row(exec_req *r, sel *s, const st_partition *p, const st_row *row,
                    const st_row *srow, const st_cell **cells, uint32_t *ppl_done) {
    const schema_table *t = s->t;
    if (row_values(s, p, row, srow, cells)) {
        s->err = 2;
        s->done = true;
        return ROW_STOP;
    }
    for (uint32_t f = 0; f < s->nfilt; f++)
        if (!select_filter_match(t, &s->filts[f], &s->vals[s->filts[f].col])) return ROW_SKIPPED;
    (*ppl_done)++;
    if (s->selc.count) {
        s->count++;
    } else {
        emit(s, p, cells);
        s->rows_in_page++;
    }
    if (s->pos.remaining != UINT32_MAX && --s->pos.remaining == 0) {
        s->done = true;
        return ROW_STOP;
    }
    if (!s->selc.count && s->rows_in_page >= s->page_size) {
        s->page_full = true;
        if (!row || s->distinct || *ppl_done >= s->ppl) return ROW_STOP; /* partition finished */
        s->pos.pk = keep(r, p->pk, p->pklen);
        s->pos.pklen = p->pklen;
        s->pos.ck = keep(r, row->ck, row->cklen);
        s->pos.cklen = row->cklen;
        s->pos.ppl_done = *ppl_done;
        s->pos.in_partition = true;
        return ROW_STOP;
    }
    return ROW_TAKEN;
}

static bool row_has_live_cells(const sel *s, const st_partition *p, const st_row *row) {
    int64_t dts = row->del.ts > p->del.ts ? row->del.ts : p->del.ts;
    for (uint32_t j = 0; j < row->ncells; j++)
        if (row->cells[j].ts > dts && st_cell_live(&row->cells[j], s->now)) return true;
    return false;
}

/* Processes one partition's rows. after_ck: resume strictly after this ck (in read order). */
static void process_partition(exec_req *r, sel *s, const st_partition *p, const uint8_t *after_ck,
                              uint32_t after_len, bool resuming) {
    if (!p) return;
    const schema_table *t = s->t;
    const st_cell **cells = arena_alloc(&r->arena, t->ncols * sizeof *cells);
    uint32_t ppl_done = resuming ? s->pos.ppl_done : 0;
    /* Static values live in the row with the empty clustering key, which sorts first. */
    const st_row *srow = t->nck && p->nrows && p->rows[0].cklen == 0 ? &p->rows[0] : NULL;
    bool any = false;
    for (uint32_t k = 0; k < p->nrows && !s->done && !s->page_full; k++) {
        const st_row *row = &p->rows[s->reversed ? p->nrows - 1 - k : k];
        if (row == srow) continue;
        if (!storage_slice_contains(&s->slice, row->ck, row->cklen)) continue;
        if (after_ck || (resuming && after_len == 0 && t->nck == 0)) {
            int c = ck_cmp(row->ck, row->cklen, after_ck ? after_ck : (const uint8_t *)"", after_len);
            if (s->reversed ? c >= 0 : c <= 0) continue;
        }
        if (!st_row_live(row, &p->del, s->now)) continue;
        if (ppl_done >= s->ppl) break;
        int rc = take_row(r, s, p, row, srow, cells, &ppl_done);
        if (rc == ROW_TAKEN || rc == ROW_STOP) any = true;
        if (rc == ROW_STOP) {
            if (s->err || s->pos.in_partition) return;
            break;
        }
        if (s->distinct && rc == ROW_TAKEN) break;
    }
    /* A partition with static values but no rows still shows as one row (without clustering
     * restrictions), as in Cassandra. */
    if (!any && srow && !resuming && !s->done && !s->page_full && !s->slice.start && !s->slice.end &&
        ppl_done < s->ppl && row_has_live_cells(s, p, srow)) {
        if (take_row(r, s, p, NULL, srow, cells, &ppl_done) == ROW_STOP && s->err) return;
    }
    s->pos.pk = keep(r, p->pk, p->pklen);
    s->pos.pklen = p->pklen;
    s->pos.ck = NULL;
    s->pos.cklen = 0;
    s->pos.ppl_done = 0;
    s->pos.in_partition = false;
}

static void finish(exec_req *r, sel *s) {
    if (s->selc.count) {
        uint8_t b[8];
        be64_put(b, s->count);
        rs_cell(&s->rs, b, 8);
        rs_row_done(&s->rs);
    } else if (s->page_full && !s->done) {
        buf pb;
        buf_init(&pb);
        page_pos_encode(&s->pos, &pb);
        s->rs.paging = keep(r, pb.data, (uint32_t)pb.len);
        s->rs.paging_len = (uint32_t)pb.len;
        buf_free(&pb);
    }
    buf_free(&s->ckbuf);
    exec_reply_rows(r, &s->rs);
}

/* The table may have been dropped or replaced while a read was in flight. */
static bool still_there(exec_req *r, sel *s) {
    const schema_table *t = exec_table_again(r, s->tid, s->t);
    if (!t) {
        s->err = 3;
        s->done = true;
        return false;
    }
    s->t = t;
    s->k = schema_keyspace_get(r->x->cat, t->ks);
    return true;
}

static void read_done(void *arg, const coord_error *e, const st_partition *p) {
    exec_req *r = arg;
    sel *s = r->state;
    if (!still_there(r, s)) {
        /* reported by sel_continue */
    } else if (e) {
        s->err = 1;
        s->cerr = *e;
    } else {
        bool resuming = s->pos.in_partition;
        process_partition(r, s, p, resuming ? s->pos.ck : NULL, resuming ? s->pos.cklen : 0, resuming);
    }
    if (!s->scan && !s->pos.in_partition) s->pos.index++;
    if (s->scan) s->phase = 1;
    s->completed = true;
    if (!s->in_issue) sel_continue(r);
}

static int scan_part(void *arg, const st_partition *p) {
    exec_req *r = arg;
    sel *s = r->state;
    if (!still_there(r, s)) return 1;
    if (p->token < s->tmin) return 0;
    if (p->token > s->tmax) {
        s->done = true;
        return 1;
    }
    process_partition(r, s, p, NULL, 0, false);
    return s->err || s->done || s->page_full;
}

static void scan_done(void *arg, const coord_error *e) {
    exec_req *r = arg;
    sel *s = r->state;
    if (e && !s->err) {
        s->err = 1;
        s->cerr = *e;
    }
    if (!s->page_full) s->done = true;
    s->completed = true;
    if (!s->in_issue) sel_continue(r);
}

static storage_slice resume_slice(sel *s, storage_slice *tmp) {
    *tmp = s->slice;
    if (s->pos.in_partition && s->pos.ck) {
        if (!s->reversed) {
            tmp->start = s->pos.ck;
            tmp->start_len = s->pos.cklen;
            tmp->start_incl = false;
        } else {
            tmp->end = s->pos.ck;
            tmp->end_len = s->pos.cklen;
            tmp->end_incl = false;
        }
    }
    /* Rows are filtered and reversed here; the engine gets a plain forward slice. */
    tmp->reversed = false;
    tmp->limit = 0;
    if (s->statics) { /* the static row sorts before every bound: read from the start */
        tmp->start = NULL;
        tmp->start_len = 0;
        return *tmp;
    }
    if (!s->filtering && !s->reversed && !s->selc.count) {
        uint64_t want = s->page_size - s->rows_in_page;
        if (s->pos.remaining < want) want = s->pos.remaining;
        if (s->ppl != UINT32_MAX && s->ppl < want) want = s->ppl;
        if (!s->distinct && want < UINT32_MAX - 1) tmp->limit = (uint32_t)want + 1;
    }
    return *tmp;
}

static void sel_continue(exec_req *r) {
    sel *s = r->state;
    for (;;) {
        if (s->err) {
            buf_free(&s->ckbuf);
            rs_free(&s->rs);
            if (s->err == 1) exec_error_coord(r, &s->cerr);
            else if (s->err == 3) exec_error(r, CQLE_INVALID, "The table was dropped while the query ran");
            else exec_error(r, CQLE_SERVER, "corrupt clustering key in %s.%s", s->t->ks, s->t->name);
            return;
        }
        if (s->done || s->page_full) break;
        s->in_issue = true;
        s->completed = false;
        int rc;
        storage_slice sl;
        if (!s->scan) {
            if (s->pos.index >= s->npk) {
                s->done = true;
                s->in_issue = false;
                break;
            }
            const exec_val *pk = &s->pks[s->pos.index];
            resume_slice(s, &sl);
            rc = coord_read(r->x->coord, &s->k->repl, s->t->id, pk->data, (uint32_t)pk->len, &sl,
                            (enum coord_cl)r->cl, read_done, r);
        } else if (s->phase == 0 && s->pos.in_partition && s->pos.pk) {
            resume_slice(s, &sl);
            rc = coord_read(r->x->coord, &s->k->repl, s->t->id, s->pos.pk, s->pos.pklen, &sl,
                            (enum coord_cl)r->cl, read_done, r);
        } else {
            s->phase = 1;
            int64_t st = s->tmin;
            const uint8_t *spk = NULL;
            uint32_t spklen = 0;
            if (s->pos.pk) {
                st = murmur3_token(s->pos.pk, s->pos.pklen);
                spk = s->pos.pk;
                spklen = s->pos.pklen;
            } else if (st != INT64_MIN) {
                st = st - 1;
                spk = (const uint8_t *)"";
            }
            rc = coord_scan(r->x->coord, &s->k->repl, s->t->id, st, spk, spklen, 0,
                            (enum coord_cl)r->cl, scan_part, scan_done, r);
        }
        s->in_issue = false;
        if (rc) {
            buf_free(&s->ckbuf);
            rs_free(&s->rs);
            exec_error(r, CQLE_SERVER, "read failed: %d", rc);
            return;
        }
        if (!s->completed) return; /* the callback continues */
    }
    finish(r, s);
}

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
    s->k = schema_keyspace_get(r->x->cat, t->ks);
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
    sel_continue(r);
    return;
out:
    buf_free(&pre);
    buf_free(&sb);
    buf_free(&eb);
}
