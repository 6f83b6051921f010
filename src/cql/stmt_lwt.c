/* Conditional statements (INSERT IF NOT EXISTS, UPDATE/DELETE IF EXISTS or IF conditions).
 * With a paxos service (the node always has one) they run as a Paxos round (paxos_cas): the
 * condition is evaluated on the data read at the promise quorum, and the round completes even
 * when it fails. Without one (tests of the executor alone) they are evaluated read-then-write
 * on the loop, which is only correct on a single node. Answers follow Cassandra's `[applied]`
 * convention. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/paxos/paxos.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"
#include "stmt_modify.h"


static void lwt_reply(exec_req *r, lwt *l) {
    const schema_table *t = l->t;
    uint32_t n = 1;
    uint16_t *cols = arena_alloc(&r->arena, (t->ncols + 1) * sizeof *cols);
    if (!l->applied && l->row_exists) {
        if (l->if_not_exists || l->if_exists) {
            for (uint16_t i = 0; i < t->ncols; i++) cols[n++ - 1] = i;
        } else {
            for (uint32_t i = 0; i < l->nif; i++) {
                int ci = schema_column_index(t, l->ifs[i].column.s);
                bool dup = false;
                for (uint32_t j = 0; j + 1 < n; j++) dup |= cols[j] == ci;
                if (!dup && ci >= 0) cols[n++ - 1] = (uint16_t)ci;
            }
        }
    }
    rs_col *rc = arena_alloc(&r->arena, n * sizeof *rc);
    rc[0].name = "[applied]";
    rc[0].type = SCHEMA_TYPE(SCHEMA_T_BOOLEAN);
    for (uint32_t i = 1; i < n; i++) {
        rc[i].name = t->cols[cols[i - 1]].name;
        rc[i].type = t->cols[cols[i - 1]].type;
    }
    result_set rs;
    rs_init(&rs, t->ks, t->name, n, rc);
    uint8_t b = l->applied;
    rs_cell(&rs, &b, 1);
    for (uint32_t i = 1; i < n; i++) rs_cell(&rs, l->cur[cols[i - 1]].data, l->cur[cols[i - 1]].len);
    rs_row_done(&rs);
    exec_reply_rows(r, &rs);
}

/* The table may have been dropped or replaced during a read or write in flight. */
static bool lwt_still_there(exec_req *r, lwt *l) {
    const schema_table *t = exec_table_again(r, l->tid, l->t);
    if (!t) {
        exec_error(r, CQLE_INVALID, "The table was dropped while the statement ran");
        return false;
    }
    l->t = t;
    l->k = schema_keyspace_get(r->x->cat, t->ks);
    return true;
}

static void lwt_written(void *arg, const coord_error *e) {
    exec_req *r = arg;
    if (e) {
        exec_error_coord(r, e);
        return;
    }
    if (!lwt_still_there(r, r->state)) return;
    lwt_reply(r, r->state);
}

static bool cond_holds(const schema_column *c, const exec_val *cur, enum cql_op op, const exec_val *v) {
    if (op == CQL_OP_EQ || op == CQL_OP_NE) {
        bool eq;
        if (cur->len < 0 || v->len < 0) eq = cur->len < 0 && v->len < 0;
        else eq = schema_value_compare(&c->type, cur->data, (size_t)cur->len, v->data, (size_t)v->len) == 0;
        return op == CQL_OP_EQ ? eq : !eq;
    }
    if (cur->len < 0 || v->len < 0) return false;
    int cmp = schema_value_compare(&c->type, cur->data, (size_t)cur->len, v->data, (size_t)v->len);
    switch (op) {
    case CQL_OP_LT: return cmp < 0;
    case CQL_OP_LE: return cmp <= 0;
    case CQL_OP_GT: return cmp > 0;
    case CQL_OP_GE: return cmp >= 0;
    default: return false;
    }
}

/* Fills l->cur from the partition read (only the target row), decoding key columns. */
static void lwt_current(exec_req *r, lwt *l, const st_partition *p) {
    const schema_table *t = l->t;
    l->cur = arena_alloc(&r->arena, t->ncols * sizeof *l->cur);
    for (uint16_t i = 0; i < t->ncols; i++) l->cur[i].len = -1;
    l->row_exists = false;
    if (!p) return;
    int32_t now = clock_now_s();
    const st_row *row = NULL;
    for (uint32_t i = 0; i < p->nrows; i++)
        if (p->rows[i].cklen == (uint32_t)l->ck.len && (l->ck.len == 0 || memcmp(p->rows[i].ck, l->ck.data, (size_t)l->ck.len) == 0))
            row = &p->rows[i];
    if (!row || !st_row_live(row, &p->del, now)) return;
    l->row_exists = true;
    const uint8_t *pv[SCHEMA_MAX_COLUMNS];
    uint32_t pl[SCHEMA_MAX_COLUMNS];
    if (schema_routing_key_split(p->pk, p->pklen, t->npk, pv, pl) == 0)
        for (uint16_t i = 0; i < t->npk; i++) {
            l->cur[i].data = pv[i];
            l->cur[i].len = (int32_t)pl[i];
        }
    rd rr;
    rd_init(&rr, row->ck, row->cklen);
    for (uint16_t i = 0; i < t->nck; i++) {
        buf b;
        buf_init(&b);
        const schema_column *c = &t->cols[t->npk + i];
        if (schema_ck_decode(&c->type, c->desc, &rr, &b) == 0) {
            l->cur[t->npk + i].data = arena_dup(&r->arena, b.len ? b.data : (const uint8_t *)"", b.len ? b.len : 1);
            l->cur[t->npk + i].len = (int32_t)b.len;
        }
        buf_free(&b);
    }
    int64_t dts = row->del.ts > p->del.ts ? row->del.ts : p->del.ts;
    for (uint32_t j = 0; j < row->ncells; j++) {
        const st_cell *c = &row->cells[j];
        if (c->col >= t->ncols || c->ts <= dts || !st_cell_live(c, now)) continue;
        for (uint16_t i = (uint16_t)(t->npk + t->nck); i < t->ncols; i++)
            if (t->cols[i].id == c->col) {
                l->cur[i].data = c->value;
                l->cur[i].len = (int32_t)c->len;
            }
    }
    /* values point into p, which dies after the read callback: copy them */
    for (uint16_t i = 0; i < t->ncols; i++)
        if (l->cur[i].len >= 0) {
            l->cur[i].data = arena_dup(&r->arena, l->cur[i].len ? l->cur[i].data : (const uint8_t *)"", l->cur[i].len ? (size_t)l->cur[i].len : 1);
        }
}

static bool lwt_evaluate(exec_req *r, lwt *l, const st_partition *p);

static void lwt_read_done(void *arg, const coord_error *e, const st_partition *p) {
    exec_req *r = arg;
    lwt *l = r->state;
    if (e) {
        exec_error_coord(r, e);
        return;
    }
    if (!lwt_still_there(r, l)) return;
    bool ok = lwt_evaluate(r, l, p);
    l->applied = ok;
    if (!ok) {
        lwt_reply(r, l);
        return;
    }
    int rc = coord_write(r->x->coord, &l->k->repl, l->ml.v, l->ml.n, (enum coord_cl)r->cl, COORD_WT_CAS,
                         lwt_written, r);
    if (rc) exec_error(r, CQLE_SERVER, "write failed (%d)", rc);
}

/* Paxos: the condition on the data of the promise quorum; may run once per ballot. */
static int lwt_paxos_cond(void *arg, const st_partition *cur, st_arena *a, st_partition **m) {
    exec_req *r = arg;
    lwt *l = r->state;
    (void)a;
    /* a DDL may have freed the definition while the round was in flight */
    const schema_table *t = exec_table_again(r, l->tid, l->t);
    if (!t) return ILION_ENOTFOUND;
    l->t = t;
    l->applied = lwt_evaluate(r, l, cur);
    *m = l->applied && l->ml.n ? l->ml.v[0] : NULL;  /* paxos copies it */
    return 0;
}

static void lwt_paxos_done(void *arg, const paxos_outcome *o) {
    exec_req *r = arg;
    lwt *l = r->state;
    if (o->err == ILION_ENOTFOUND && !lwt_still_there(r, l)) return;
    if (o->err) {
        coord_error e;
        memset(&e, 0, sizeof e);
        e.cl = o->cl;
        if (o->err == ILION_EUNAVAILABLE) {
            e.code = CQLE_UNAVAILABLE;
            e.required = o->required;
            e.alive = o->alive;
            snprintf(e.message, sizeof e.message, "Cannot achieve consistency level for LWT: %d replicas required, %d alive",
                     o->required, o->alive);
        } else if (o->err == ILION_ETIMEOUT) {
            e.code = CQLE_WRITE_TIMEOUT;
            e.received = o->received;
            e.blockfor = o->blockfor;
            e.write_type = o->commit_phase ? COORD_WT_SIMPLE : COORD_WT_CAS;
            snprintf(e.message, sizeof e.message, "Operation timed out - received only %d responses (CAS: outcome unknown)",
                     o->received);
        } else {
            e.code = CQLE_SERVER;
            snprintf(e.message, sizeof e.message, "LWT failed: %s", ilion_strerror(o->err));
        }
        exec_error_coord(r, &e);
        return;
    }
    if (!lwt_still_there(r, l)) return;
    l->applied = o->applied;
    lwt_reply(r, l);
}

static void lwt_run_paxos(exec_req *r, lwt *l, const storage_slice *sl) {
    if (l->ml.n > 1) {
        exec_error(r, CQLE_INVALID, "IF conditions apply to a single partition");
        return;
    }
    uint16_t scl = r->params.serial_consistency == COORD_CL_LOCAL_SERIAL ? PAXOS_CL_LOCAL_SERIAL : PAXOS_CL_SERIAL;
    int rc = paxos_cas(r->x->paxos, &l->k->repl, l->t->id, l->pk.data, (uint32_t)l->pk.len, sl, scl, r->cl,
                       lwt_paxos_cond, lwt_paxos_done, r);
    if (rc) exec_error(r, CQLE_SERVER, "LWT failed (%s)", ilion_strerror(rc));
}

/* Fills l->cur from p and tells whether the statement's condition holds. */
static bool lwt_evaluate(exec_req *r, lwt *l, const st_partition *p) {
    lwt_current(r, l, p);
    const schema_table *t = l->t;
    bool ok;
    if (l->if_not_exists) ok = !l->row_exists;
    else if (l->if_exists) ok = l->row_exists;
    else {
        ok = true;
        for (uint32_t i = 0; i < l->nif && ok; i++) {
            int ci = schema_column_index(t, l->ifs[i].column.s);
            const schema_column *c = &t->cols[ci];
            if (l->ifs[i].op == CQL_OP_IN) {
                bool any = false;
                for (uint32_t k = 0; k < l->ifin[i].n; k++)
                    any |= cond_holds(c, &l->cur[ci], CQL_OP_EQ, &l->ifin[i].v[k]);
                ok = any;
            } else {
                ok = cond_holds(c, &l->cur[ci], l->ifs[i].op, &l->ifvals[i]);
            }
        }
    }
    return ok;
}

void modify_run_conditional(exec_req *r, cql_stmt *st) {
    lwt *l = arena_alloc(&r->arena, sizeof *l);
    if (!l) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    memset(l, 0, sizeof *l);
    if (modify_build(r, st, &l->ml, l, &l->t)) return;
    l->tid = l->t->id;
    l->k = schema_keyspace_get(r->x->cat, l->t->ks);
    if (st->kind == CQL_STMT_UPDATE) {
        l->if_exists = st->u.update.if_exists;
        l->nif = st->u.update.nif;
        l->ifs = st->u.update.ifs;
    } else if (st->kind == CQL_STMT_DELETE) {
        l->if_exists = st->u.del.if_exists;
        l->nif = st->u.del.nif;
        l->ifs = st->u.del.ifs;
    }
    l->ifvals = arena_alloc(&r->arena, (l->nif ? l->nif : 1) * sizeof *l->ifvals);
    l->ifin = arena_alloc(&r->arena, (l->nif ? l->nif : 1) * sizeof *l->ifin);
    for (uint32_t i = 0; i < l->nif; i++) {
        const cql_relation *c = &l->ifs[i];
        int ci = c->lhs == CQL_LHS_COLUMN ? schema_column_index(l->t, c->column.s ? c->column.s : "") : -1;
        if (ci < 0 || c->elem) {
            exec_error(r, CQLE_INVALID, "Unknown or unsupported column in IF condition: %s", c->column.s ? c->column.s : "?");
            return;
        }
        if (ci < l->t->npk + l->t->nck) {
            exec_error(r, CQLE_INVALID, "PRIMARY KEY column '%s' cannot have IF conditions", l->t->cols[ci].name);
            return;
        }
        if (l->t->cols[ci].kind == SCHEMA_COL_STATIC) {
            exec_error(r, CQLE_INVALID, "IF conditions on static columns are not supported (%s)", l->t->cols[ci].name);
            return;
        }
        if (c->op == CQL_OP_IN) {
            if (exec_relation_values(r, &l->t->cols[ci], c, &l->ifin[i])) return;
        } else if (c->op == CQL_OP_EQ || c->op == CQL_OP_NE || c->op == CQL_OP_LT || c->op == CQL_OP_LE ||
                   c->op == CQL_OP_GT || c->op == CQL_OP_GE) {
            if (exec_term_value(r, c->value, &l->t->cols[ci].type, l->t->cols[ci].name, &l->ifvals[i])) return;
        } else {
            exec_error(r, CQLE_INVALID, "Unsupported operator in IF condition on %s", l->t->cols[ci].name);
            return;
        }
    }
    r->state = l;
    storage_slice sl;
    memset(&sl, 0, sizeof sl);
    if (l->ck.len > 0) {
        sl.start = l->ck.data;
        sl.start_len = (uint32_t)l->ck.len;
        sl.start_incl = true;
        sl.end = l->ck.data;
        sl.end_len = (uint32_t)l->ck.len;
        sl.end_incl = true;
    }
    if (r->x->paxos) {
        lwt_run_paxos(r, l, l->ck.len > 0 ? &sl : NULL);
        return;
    }
    enum coord_cl scl = r->params.serial_consistency == COORD_CL_LOCAL_SERIAL ? COORD_CL_LOCAL_SERIAL : COORD_CL_SERIAL;
    int rc = coord_read(r->x->coord, &l->k->repl, l->t->id, l->pk.data, (uint32_t)l->pk.len,
                        l->ck.len > 0 ? &sl : NULL, scl, lwt_read_done, r);
    if (rc) exec_error(r, CQLE_SERVER, "read failed (%d)", rc);
}
