/* Selection, filters, limits and the paging state, shared by user and system table SELECTs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stmt_select_plan.h"

static char *arena_printf(exec_req *r, const char *fmt, const char *a) {
    size_t n = strlen(fmt) + strlen(a) + 1;
    char *s = arena_alloc(&r->arena, n);
    if (s) snprintf(s, n, fmt, a);
    return s;
}

int select_selection(exec_req *r, const schema_table *t, const cql_select *s, selection *out) {
    memset(out, 0, sizeof *out);
    if (s->json) {
        exec_error(r, CQLE_INVALID, "SELECT JSON is not supported");
        return -1;
    }
    uint32_t n = s->star || s->nsel == 0 ? t->ncols : s->nsel;
    out->items = arena_alloc(&r->arena, (n ? n : 1) * sizeof *out->items);
    out->cols = arena_alloc(&r->arena, (n ? n : 1) * sizeof *out->cols);
    if (!out->items || !out->cols) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    out->n = n;
    if (s->star || s->nsel == 0) {
        for (uint16_t i = 0; i < t->ncols; i++) {
            out->items[i].kind = SELK_COL;
            out->items[i].col = i;
            out->cols[i].name = t->cols[i].name;
            out->cols[i].type = t->cols[i].type;
        }
        return 0;
    }
    for (uint32_t i = 0; i < s->nsel; i++) {
        const cql_selector *sel = &s->sel[i];
        selitem *it = &out->items[i];
        rs_col *c = &out->cols[i];
        const char *cn = sel->column.s ? sel->column.s : "";
        int ci = -1;
        switch (sel->kind) {
        case CQL_SEL_COLUMN:
        case CQL_SEL_WRITETIME:
        case CQL_SEL_TTL:
            ci = schema_column_index(t, cn);
            if (ci < 0) {
                exec_error(r, CQLE_INVALID, "Undefined column name %s in selection clause", cn);
                return -1;
            }
            it->col = ci;
            if (sel->kind == CQL_SEL_COLUMN) {
                it->kind = SELK_COL;
                c->name = t->cols[ci].name;
                c->type = t->cols[ci].type;
            } else {
                if (ci < t->npk + t->nck || t->is_virtual) {
                    exec_error(r, CQLE_INVALID, "Cannot use selection function %s on PRIMARY KEY part %s",
                               sel->kind == CQL_SEL_WRITETIME ? "writeTime" : "ttl", cn);
                    return -1;
                }
                it->kind = sel->kind == CQL_SEL_WRITETIME ? SELK_WRITETIME : SELK_TTL;
                c->name = arena_printf(r, sel->kind == CQL_SEL_WRITETIME ? "writetime(%s)" : "ttl(%s)", cn);
                c->type = SCHEMA_TYPE(sel->kind == CQL_SEL_WRITETIME ? SCHEMA_T_BIGINT : SCHEMA_T_INT);
            }
            break;
        case CQL_SEL_TOKEN: {
            if (sel->nargs != t->npk) goto bad_token;
            for (uint32_t k = 0; k < sel->nargs; k++)
                if (sel->args[k]->kind != CQL_SEL_COLUMN || !sel->args[k]->column.s ||
                    strcmp(sel->args[k]->column.s, t->cols[k].name) != 0)
                    goto bad_token;
            it->kind = SELK_TOKEN;
            char *nm = arena_alloc(&r->arena, 16 + SCHEMA_COLUMN_NAME_MAX * (t->npk + 1));
            if (!nm) {
                exec_error(r, CQLE_SERVER, "out of memory");
                return -1;
            }
            strcpy(nm, "system.token(");
            for (uint16_t k = 0; k < t->npk; k++) {
                if (k) strcat(nm, ", ");
                strcat(nm, t->cols[k].name);
            }
            strcat(nm, ")");
            c->name = nm;
            c->type = SCHEMA_TYPE(SCHEMA_T_BIGINT);
            break;
        bad_token:
            exec_error(r, CQLE_INVALID, "token() takes the partition key columns of %s in order", t->name);
            return -1;
        }
        case CQL_SEL_COUNT:
            if (s->nsel != 1) {
                exec_error(r, CQLE_INVALID, "count() can only be combined with nothing else in the selection here");
                return -1;
            }
            if (sel->column.s && schema_column_index(t, sel->column.s) < 0) {
                exec_error(r, CQLE_INVALID, "Undefined column name %s in selection clause", sel->column.s);
                return -1;
            }
            it->kind = SELK_COUNT;
            it->col = sel->column.s ? schema_column_index(t, sel->column.s) : -1;
            c->name = "count";
            c->type = SCHEMA_TYPE(SCHEMA_T_BIGINT);
            out->count = true;
            break;
        default:
            exec_error(r, CQLE_INVALID, "Unsupported selector %s (supported: columns, *, writetime(), ttl(), token(), count(*))",
                       sel->text.s ? sel->text.s : "");
            return -1;
        }
        if (sel->alias.s) c->name = sel->alias.s;
    }
    return 0;
}

int select_filter(exec_req *r, const schema_table *t, int ci, const cql_relation *w, filt *out) {
    memset(out, 0, sizeof *out);
    out->col = ci;
    out->op = w->op;
    const schema_column *c = &t->cols[ci];
    switch (w->op) {
    case CQL_OP_EQ: case CQL_OP_NE: case CQL_OP_LT: case CQL_OP_LE: case CQL_OP_GT: case CQL_OP_GE:
        if (exec_term_value(r, w->value, &c->type, c->name, &out->v)) return -1;
        if (out->v.len == -2) {
            exec_error(r, CQLE_INVALID, "Invalid unset value for column %s", c->name);
            return -1;
        }
        if (out->v.len == -1 && w->op != CQL_OP_EQ && w->op != CQL_OP_NE) {
            exec_error(r, CQLE_INVALID, "Invalid null value for column %s", c->name);
            return -1;
        }
        return 0;
    case CQL_OP_IN: {
        exec_valist kv;
        if (exec_relation_values(r, c, w, &kv)) return -1;
        out->nin = kv.n;
        out->in = kv.v;
        return 0;
    }
    case CQL_OP_CONTAINS: case CQL_OP_CONTAINS_KEY: {
        if (!schema_type_is_collection(&c->type) || (w->op == CQL_OP_CONTAINS_KEY && c->type.id != SCHEMA_T_MAP)) {
            exec_error(r, CQLE_INVALID, "Cannot use %s on non-%s column %s",
                       w->op == CQL_OP_CONTAINS ? "CONTAINS" : "CONTAINS KEY",
                       w->op == CQL_OP_CONTAINS ? "collection" : "map", c->name);
            return -1;
        }
        /* a map's values for CONTAINS, its keys for CONTAINS KEY, the elements otherwise */
        schema_type et = SCHEMA_TYPE(c->type.id == SCHEMA_T_MAP && w->op == CQL_OP_CONTAINS ? c->type.sub[1] : c->type.sub[0]);
        if (exec_term_value(r, w->value, &et, c->name, &out->v)) return -1;
        if (out->v.len < 0) {
            exec_error(r, CQLE_INVALID, "Invalid null value for %s on %s", w->op == CQL_OP_CONTAINS ? "CONTAINS" : "CONTAINS KEY", c->name);
            return -1;
        }
        return 0;
    }
    default:
        exec_error(r, CQLE_INVALID, "Unsupported operator on column %s (LIKE is not supported)", c->name);
        return -1;
    }
}

/* Does the serialized collection v hold e (as a key when keys, else as an element/value)? */
static bool collection_holds(const schema_type *t, const exec_val *v, const exec_val *e, bool keys) {
    rd r;
    rd_init(&r, v->data, (size_t)v->len);
    uint32_t n;
    if (rd_u32(&r, &n)) return false;
    bool map = t->id == SCHEMA_T_MAP;
    schema_type kt = SCHEMA_TYPE(t->sub[0]), vt = SCHEMA_TYPE(t->sub[1]);
    for (uint32_t i = 0; i < n; i++) {
        uint32_t kl, vl = 0;
        const uint8_t *kp, *vp = NULL;
        if (rd_u32(&r, &kl) || (int32_t)kl < 0 || rd_bytes(&r, kl, &kp)) return false;
        if (map && (rd_u32(&r, &vl) || (int32_t)vl < 0 || rd_bytes(&r, vl, &vp))) return false;
        if (map && !keys) {
            if (schema_value_compare(&vt, vp, vl, e->data, (size_t)e->len) == 0) return true;
        } else if (schema_value_compare(&kt, kp, kl, e->data, (size_t)e->len) == 0) {
            return true;
        }
    }
    return false;
}

bool select_filter_match(const schema_table *t, const filt *f, const exec_val *v) {
    const schema_type *ty = &t->cols[f->col].type;
    if (f->op == CQL_OP_CONTAINS || f->op == CQL_OP_CONTAINS_KEY)
        return v->len > 0 && collection_holds(ty, v, &f->v, f->op == CQL_OP_CONTAINS_KEY);
    if (f->op == CQL_OP_IN) {
        if (v->len < 0) return false;
        for (uint32_t i = 0; i < f->nin; i++)
            if (f->in[i].len >= 0 &&
                schema_value_compare(ty, v->data, (size_t)v->len, f->in[i].data, (size_t)f->in[i].len) == 0)
                return true;
        return false;
    }
    if (v->len < 0 || f->v.len < 0) {
        bool eq = v->len < 0 && f->v.len < 0;
        return f->op == CQL_OP_EQ ? eq : f->op == CQL_OP_NE ? !eq : false;
    }
    int c = schema_value_compare(ty, v->data, (size_t)v->len, f->v.data, (size_t)f->v.len);
    switch (f->op) {
    case CQL_OP_EQ: return c == 0;
    case CQL_OP_NE: return c != 0;
    case CQL_OP_LT: return c < 0;
    case CQL_OP_LE: return c <= 0;
    case CQL_OP_GT: return c > 0;
    case CQL_OP_GE: return c >= 0;
    default: return false;
    }
}

int select_limits(exec_req *r, const cql_select *s, uint32_t *limit, uint32_t *ppl) {
    *limit = *ppl = UINT32_MAX;
    int64_t v;
    int rc;
    if (s->limit) {
        rc = exec_term_int(r, s->limit, "LIMIT", 1, INT32_MAX, &v);
        if (rc < 0) return -1;
        if (rc == 0) *limit = (uint32_t)v;
    }
    if (s->per_partition_limit) {
        rc = exec_term_int(r, s->per_partition_limit, "PER PARTITION LIMIT", 1, INT32_MAX, &v);
        if (rc < 0) return -1;
        if (rc == 0) *ppl = (uint32_t)v;
    }
    return 0;
}

/* Paging state, version 1: u8 1 | u32 index | u16 pklen pk | u16 cklen ck | u32 remaining |
 * u32 ppl_done | u8 flags (1: resume inside pk after ck) | u32 check (sum of the above bytes,
 * so a paging state from another query shape is at least likely to be refused). */
void page_pos_encode(const page_pos *p, buf *out) {
    size_t at = out->len;
    buf_u8(out, 1);
    buf_u32(out, p->index);
    buf_u16(out, (uint16_t)p->pklen);
    buf_put(out, p->pk, p->pklen);
    buf_u16(out, (uint16_t)p->cklen);
    buf_put(out, p->ck, p->cklen);
    buf_u32(out, p->remaining);
    buf_u32(out, p->ppl_done);
    buf_u8(out, p->in_partition ? 1 : 0);
    uint32_t sum = 0x1F1F;
    if (!out->oom)
        for (size_t i = at; i < out->len; i++) sum = sum * 31 + out->data[i];
    buf_u32(out, sum);
}

int page_pos_decode(const uint8_t *d, size_t n, page_pos *p) {
    rd r;
    rd_init(&r, d, n);
    uint8_t v, fl;
    uint16_t pl, cl;
    memset(p, 0, sizeof *p);
    if (rd_u8(&r, &v) || v != 1 || rd_u32(&r, &p->index) || rd_u16(&r, &pl) ||
        rd_bytes(&r, pl, &p->pk) || rd_u16(&r, &cl) || rd_bytes(&r, cl, &p->ck) ||
        rd_u32(&r, &p->remaining) || rd_u32(&r, &p->ppl_done) || rd_u8(&r, &fl))
        return -1;
    size_t body = n - rd_left(&r);
    uint32_t sum = 0x1F1F, want;
    for (size_t i = 0; i < body; i++) sum = sum * 31 + d[i];
    if (rd_u32(&r, &want) || want != sum || rd_left(&r)) return -1;
    p->pklen = pl;
    p->cklen = cl;
    if (!pl) p->pk = NULL;
    if (!cl) p->ck = NULL;
    p->in_partition = fl & 1;
    return 0;
}
