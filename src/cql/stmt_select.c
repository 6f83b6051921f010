/* SELECT on user tables, the execution half: single partitions read with the planned clustering
 * slice, or a scan of all partitions in token order; rows are filtered, projected and paged
 * (paging state: stmt_select_common.c). Planning: stmt_select_where.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/paxos/paxos.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"
#include "stmt_select_plan.h"

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
    if (!p) { /* nothing (left) in this partition: it is finished */
        s->pos.ck = NULL;
        s->pos.cklen = 0;
        s->pos.ppl_done = 0;
        s->pos.in_partition = false;
        return;
    }
    const schema_table *t = s->t;
    const st_cell **cells = arena_alloc(&r->arena, t->ncols * sizeof *cells);
    uint32_t ppl_done = resuming ? s->pos.ppl_done : 0;
    s->pos.in_partition = false; /* set again only if this page stops inside the partition */
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
    s->k = exec_table_keyspace(r, t);
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

/* SERIAL / LOCAL_SERIAL: a Paxos round on the partition (with an empty proposal) before the
 * quorum read, so that a value some earlier proposer left accepted is committed or discarded
 * first and the read is linearizable with conditional updates (CASSANDRA-12126). */
static void serial_done(void *arg, const paxos_outcome *o) {
    exec_req *r = arg;
    sel *s = r->state;
    if (!still_there(r, s)) {
        /* reported by sel_continue */
    } else if (o->err) {
        s->err = 1;
        memset(&s->cerr, 0, sizeof s->cerr);
        s->cerr.cl = o->cl;
        s->cerr.required = o->required;
        s->cerr.alive = o->alive;
        s->cerr.received = o->received;
        s->cerr.blockfor = o->blockfor;
        s->cerr.code = o->err == ILION_EUNAVAILABLE ? CQLE_UNAVAILABLE : o->err == ILION_ETIMEOUT ? CQLE_READ_TIMEOUT : CQLE_SERVER;
        snprintf(s->cerr.message, sizeof s->cerr.message, "SERIAL read: %s", ilion_strerror(o->err));
    }
    s->completed = true;
    if (!s->in_issue) sel_continue(r);
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
            if (r->x->paxos && (r->cl == COORD_CL_SERIAL || r->cl == COORD_CL_LOCAL_SERIAL) &&
                s->serial_round != s->pos.index + 1) {
                s->serial_round = s->pos.index + 1;
                rc = paxos_cas(r->x->paxos, &s->k->repl, s->t->id, pk->data, (uint32_t)pk->len, NULL, r->cl,
                               COORD_CL_QUORUM, NULL, serial_done, r);
            } else {
                resume_slice(s, &sl);
                rc = coord_read(r->x->coord, &s->k->repl, s->t->id, pk->data, (uint32_t)pk->len, &sl,
                                (enum coord_cl)r->cl, read_done, r);
            }
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

void select_run(exec_req *r) { sel_continue(r); }
