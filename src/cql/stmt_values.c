/* Statement terms → serialized values: literals, bind markers, null, and the few functions
 * that produce values (now(), uuid(), currenttimestamp(), totimestamp(now()), ...). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/util/clock.h"

/* Per thread: one executor per event loop thread. */
static _Thread_local uint64_t rng_state;

static uint64_t rnd64(void) {
    if (!rng_state) rng_state = (uint64_t)clock_mono_ns() ^ ((uint64_t)clock_now_us() << 17) ^ 0x9E3779B97F4A7C15ULL;
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Version 1 UUID; strictly increasing timestamps within the process. */
static void make_timeuuid(uint8_t u[16]) {
    static _Thread_local uint64_t last, node;
    uint64_t t = (uint64_t)clock_now_us() * 10 + 0x01B21DD213814000ULL;
    if (t <= last) t = last + 1;
    last = t;
    if (!node) node = (rnd64() & 0xFFFFFFFFFFFFULL) | 0x010000000000ULL; /* multicast bit: random node */
    uint64_t msb = ((t & 0xFFFFFFFFULL) << 32) | (((t >> 32) & 0xFFFF) << 16) | 0x1000 | ((t >> 48) & 0x0FFF);
    uint64_t lsb = 0x8000000000000000ULL | ((rnd64() & 0x3FFF) << 48) | node;
    be64_put(u, msb);
    be64_put(u + 8, lsb);
}

static void make_uuid4(uint8_t u[16]) {
    be64_put(u, rnd64());
    be64_put(u + 8, rnd64());
    u[6] = (uint8_t)((u[6] & 0x0F) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3F) | 0x80);
}

static int set_out(exec_req *r, const void *p, size_t n, exec_val *out) {
    uint8_t *d = arena_alloc(&r->arena, n ? n : 1);
    if (!d) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    if (n) memcpy(d, p, n);
    out->data = d;
    out->len = (int32_t)n;
    return 0;
}

static const cql_value *find_bind(exec_req *r, const cql_term *term, const char *what) {
    if (r->nvalues && r->values[0].name) {
        const char *name = term->u.bind.name.s ? term->u.bind.name.s : what;
        for (uint16_t i = 0; i < r->nvalues; i++)
            if (r->values[i].name && name && strlen(name) == r->values[i].name_len &&
                strncasecmp(r->values[i].name, name, r->values[i].name_len) == 0)
                return &r->values[i];
        exec_error(r, CQLE_INVALID, "No value bound for the variable named %s", name ? name : "?");
        return NULL;
    }
    if (term->u.bind.index >= r->nvalues) {
        exec_error(r, CQLE_INVALID,
                   "There were more bind markers in the query than values given (%u values); "
                   "no value for marker %u (%s)", r->nvalues, term->u.bind.index, what);
        return NULL;
    }
    return &r->values[term->u.bind.index];
}

static int func_value(exec_req *r, const cql_term *term, const schema_type *t, const char *what,
                      exec_val *out) {
    const char *fn = term->u.func.name.s ? term->u.func.name.s : "";
    uint8_t u[16], b8[8], b4[4];
    bool ts_of_now = (strcmp(fn, "totimestamp") == 0 || strcmp(fn, "tounixtimestamp") == 0) &&
                     term->u.func.nargs == 1 && term->u.func.args[0]->kind == CQL_TERM_FUNC &&
                     term->u.func.args[0]->u.func.name.s &&
                     strcmp(term->u.func.args[0]->u.func.name.s, "now") == 0;
    if ((strcmp(fn, "now") == 0 || strcmp(fn, "currenttimeuuid") == 0) && term->u.func.nargs == 0 &&
        (t->id == SCHEMA_T_TIMEUUID || t->id == SCHEMA_T_UUID)) {
        make_timeuuid(u);
        return set_out(r, u, 16, out);
    }
    if (strcmp(fn, "uuid") == 0 && term->u.func.nargs == 0 && t->id == SCHEMA_T_UUID) {
        make_uuid4(u);
        return set_out(r, u, 16, out);
    }
    if (((strcmp(fn, "currenttimestamp") == 0 && term->u.func.nargs == 0) || ts_of_now) &&
        (t->id == SCHEMA_T_TIMESTAMP || (ts_of_now && t->id == SCHEMA_T_BIGINT))) {
        be64_put(b8, (uint64_t)(clock_now_us() / 1000));
        return set_out(r, b8, 8, out);
    }
    if (((strcmp(fn, "currentdate") == 0 && term->u.func.nargs == 0) ||
         (strcmp(fn, "todate") == 0 && ts_of_now)) && t->id == SCHEMA_T_DATE) {
        int64_t days = clock_now_us() / 86400000000LL;
        be32_put(b4, (uint32_t)(days + ((int64_t)1 << 31)));
        return set_out(r, b4, 4, out);
    }
    char tn[64];
    schema_type_name(t, tn, sizeof tn);
    exec_error(r, CQLE_INVALID, "Function %s(...) cannot be used as a value of type %s for %s "
               "(supported: now(), uuid(), currenttimestamp(), currentdate(), totimestamp(now()))",
               fn, tn, what);
    return -1;
}

typedef struct elem {
    exec_val k, v;
    uint32_t idx;   /* position written: ties keep it, so a later duplicate wins */
} elem;

static _Thread_local const schema_type *sort_type; /* qsort has no context argument */

static int elem_cmp(const void *a, const void *b) {
    const elem *x = a, *y = b;
    int c = schema_value_compare(sort_type, x->k.data, (size_t)x->k.len, y->k.data, (size_t)y->k.len);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* Sorts (sets, maps; later duplicates win) and serializes collection elements. */
static int serialize_elems(exec_req *r, const schema_type *t, elem *e, uint32_t n, exec_val *out) {
    bool is_map = t->id == SCHEMA_T_MAP;
    schema_type kt = SCHEMA_TYPE(t->sub[0]);
    if (t->id != SCHEMA_T_LIST && n > 1) {
        for (uint32_t i = 0; i < n; i++) e[i].idx = i;
        sort_type = &kt;
        qsort(e, n, sizeof *e, elem_cmp);
        uint32_t m = 1;
        for (uint32_t i = 1; i < n; i++) {
            if (schema_value_compare(&kt, e[i].k.data, (size_t)e[i].k.len, e[m - 1].k.data, (size_t)e[m - 1].k.len) == 0)
                e[m - 1] = e[i]; /* a repeated key: the later one wins */
            else
                e[m++] = e[i];
        }
        n = m;
    }
    buf b;
    buf_init(&b);
    buf_u32(&b, n);
    for (uint32_t i = 0; i < n; i++) {
        buf_u32(&b, (uint32_t)e[i].k.len);
        buf_put(&b, e[i].k.data, (size_t)e[i].k.len);
        if (is_map) {
            buf_u32(&b, (uint32_t)e[i].v.len);
            buf_put(&b, e[i].v.data, (size_t)e[i].v.len);
        }
    }
    int rc = b.oom ? -1 : set_out(r, b.data, b.len, out);
    if (b.oom) exec_error(r, CQLE_SERVER, "out of memory");
    buf_free(&b);
    return rc;
}

/* A bound set or map value in Cassandra's stored form: sorted, without duplicates. */
static int normalize_bound(exec_req *r, const schema_type *t, exec_val *v) {
    rd rr;
    rd_init(&rr, v->data, (size_t)v->len);
    uint32_t n;
    if (rd_u32(&rr, &n)) return 0; /* validated before: cannot happen */
    elem *e = arena_alloc(&r->arena, (n ? n : 1) * sizeof *e);
    if (!e) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint32_t l;
        if (rd_u32(&rr, &l) || rd_bytes(&rr, l, &e[i].k.data)) return 0;
        e[i].k.len = (int32_t)l;
        if (t->id == SCHEMA_T_MAP) {
            if (rd_u32(&rr, &l) || rd_bytes(&rr, l, &e[i].v.data)) return 0;
            e[i].v.len = (int32_t)l;
        }
    }
    if (n == 0 && !t->frozen) {
        v->data = NULL;
        v->len = -1;
        return 0;
    }
    return serialize_elems(r, t, e, n, v);
}

/* [a, b] / {a, b} / {k: v} literal → serialized collection (sets and maps sorted by element /
 * key with duplicates dropped, as Cassandra stores them). An empty non-frozen collection is
 * null, as in Cassandra. */
static int collection_value(exec_req *r, const cql_term *term, const schema_type *t,
                            const char *what, exec_val *out) {
    bool is_map = t->id == SCHEMA_T_MAP;
    uint32_t n = term->u.coll.n;
    bool shape_ok = (t->id == SCHEMA_T_LIST && term->kind == CQL_TERM_LIST) ||
                    (t->id == SCHEMA_T_SET && (term->kind == CQL_TERM_SET || (term->kind == CQL_TERM_MAP && n == 0))) ||
                    (is_map && term->kind == CQL_TERM_MAP);
    if (!shape_ok) {
        char tn[64];
        schema_type_name(t, tn, sizeof tn);
        exec_error(r, CQLE_INVALID, "Invalid %s literal for %s of type %s",
                   term->kind == CQL_TERM_LIST ? "list" : term->kind == CQL_TERM_SET ? "set" : "map", what, tn);
        return -1;
    }
    if (n == 0 && !t->frozen) {
        out->data = NULL;
        out->len = -1;
        return 0;
    }
    elem *e = arena_alloc(&r->arena, (n ? n : 1) * sizeof *e);
    if (!e) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return -1;
    }
    schema_type kt = SCHEMA_TYPE(t->sub[0]), vt = SCHEMA_TYPE(t->sub[1]);
    for (uint32_t i = 0; i < n; i++) {
        if (exec_term_value(r, term->u.coll.items[i], &kt, what, &e[i].k)) return -1;
        if (is_map && exec_term_value(r, term->u.coll.values[i], &vt, what, &e[i].v)) return -1;
        if (e[i].k.len < 0 || (is_map && e[i].v.len < 0)) {
            exec_error(r, CQLE_INVALID, "null or unset values are not allowed inside collections (%s)", what);
            return -1;
        }
    }
    return serialize_elems(r, t, e, n, out);
}

int exec_term_value(exec_req *r, const cql_term *term, const schema_type *t, const char *what,
                    exec_val *out) {
    char err[256];
    enum schema_lit_kind k;
    const char *text = term->text.s ? term->text.s : "";
    size_t n = term->text.len;
    switch (term->kind) {
    case CQL_TERM_NULL: out->data = NULL; out->len = -1; return 0;
    case CQL_TERM_BIND: {
        const cql_value *v = find_bind(r, term, what);
        if (!v) return -1;
        out->data = v->data;
        out->len = v->len;
        if (v->len >= 0 && schema_value_validate(t, v->data ? v->data : (const uint8_t *)"", (size_t)v->len, err, sizeof err)) {
            exec_error(r, CQLE_INVALID, "Invalid value for %s: %s", what, err);
            return -1;
        }
        if (v->len < -2) {
            exec_error(r, CQLE_INVALID, "Invalid length %d for the value of %s", v->len, what);
            return -1;
        }
        if (v->len >= 0 && (t->id == SCHEMA_T_SET || t->id == SCHEMA_T_MAP)) return normalize_bound(r, t, out);
        return 0;
    }
    case CQL_TERM_FUNC: return func_value(r, term, t, what, out);
    case CQL_TERM_STRING: k = SCHEMA_LIT_STRING; break;
    case CQL_TERM_INTEGER: k = SCHEMA_LIT_INTEGER; break;
    case CQL_TERM_FLOAT: k = SCHEMA_LIT_FLOAT; break;
    case CQL_TERM_NAN: k = SCHEMA_LIT_FLOAT; text = "NaN"; n = 3; break;
    case CQL_TERM_INFINITY:
        k = SCHEMA_LIT_FLOAT;
        text = term->u.f < 0 ? "-Infinity" : "Infinity";
        n = strlen(text);
        break;
    case CQL_TERM_BOOL: k = SCHEMA_LIT_BOOLEAN; text = term->u.b ? "true" : "false"; n = strlen(text); break;
    case CQL_TERM_UUID: k = SCHEMA_LIT_UUID; break;
    case CQL_TERM_BLOB:
        if (t->id == SCHEMA_T_BLOB || t->id == SCHEMA_T_CUSTOM)
            return set_out(r, term->u.blob.data, term->u.blob.len, out);
        k = SCHEMA_LIT_HEX;
        break;
    case CQL_TERM_LIST: case CQL_TERM_SET: case CQL_TERM_MAP:
        if (schema_type_is_collection(t)) return collection_value(r, term, t, what, out);
        /* fall through */
    default: {
        char tn[64];
        schema_type_name(t, tn, sizeof tn);
        exec_error(r, CQLE_INVALID, "Invalid collection or tuple literal for %s of type %s", what, tn);
        return -1;
    }
    }
    buf b;
    buf_init(&b);
    if (schema_literal_convert(t, k, text, n, &b, err, sizeof err)) {
        buf_free(&b);
        exec_error(r, CQLE_INVALID, "%s for %s", err, what);
        return -1;
    }
    int rc = set_out(r, b.data, b.len, out);
    buf_free(&b);
    return rc;
}

int exec_term_int(exec_req *r, const cql_term *term, const char *what, int64_t lo, int64_t hi,
                  int64_t *out) {
    int64_t v;
    if (term->kind == CQL_TERM_INTEGER && !term->u.i.overflow) {
        v = term->u.i.v;
    } else if (term->kind == CQL_TERM_BIND) {
        const cql_value *cv = find_bind(r, term, what);
        if (!cv) return -1;
        if (cv->len < 0) return 1;   /* null / unset: the default applies */
        if (cv->len == 4) v = (int32_t)be32_get(cv->data);
        else if (cv->len == 8) v = (int64_t)be64_get(cv->data);
        else {
            exec_error(r, CQLE_INVALID, "Invalid %d-byte value for %s (expected an int or bigint)", cv->len, what);
            return -1;
        }
    } else {
        exec_error(r, CQLE_INVALID, "Invalid value for %s: an integer is required", what);
        return -1;
    }
    if (v < lo || v > hi) {
        exec_error(r, CQLE_INVALID, "%s value %lld is out of range [%lld, %lld]", what, (long long)v,
                   (long long)lo, (long long)hi);
        return -1;
    }
    *out = v;
    return 0;
}

bool exec_bind_type(const schema_table *t, const cql_bind *b, schema_type *out,
                    const char **name) {
    const schema_column *c = b->column.s ? schema_column_get(t, b->column.s) : NULL;
    *name = b->name.s ? b->name.s : (c ? c->name : "?");
    switch (b->role) {
    case CQL_BIND_VALUE: case CQL_BIND_FUNC_ARG: case CQL_BIND_OTHER:
    case CQL_BIND_ELEMENT: case CQL_BIND_KEY:
        if (!c) return false;
        *out = c->type;
        return true;
    case CQL_BIND_IN_LIST:
        if (!c || schema_type_is_collection(&c->type)) return false;
        memset(out, 0, sizeof *out);
        out->id = SCHEMA_T_LIST;
        out->sub[0] = c->type.id;
        if (!b->name.s) *name = "in_values";
        return true;
    case CQL_BIND_TOKEN:
        *out = SCHEMA_TYPE(SCHEMA_T_BIGINT);
        if (!b->name.s) *name = "partition key token";
        return true;
    case CQL_BIND_TTL:
        *out = SCHEMA_TYPE(SCHEMA_T_INT);
        if (!b->name.s) *name = "[ttl]";
        return true;
    case CQL_BIND_TIMESTAMP:
        *out = SCHEMA_TYPE(SCHEMA_T_BIGINT);
        if (!b->name.s) *name = "[timestamp]";
        return true;
    case CQL_BIND_LIMIT:
        *out = SCHEMA_TYPE(SCHEMA_T_INT);
        if (!b->name.s) *name = "[limit]";
        return true;
    case CQL_BIND_PER_PARTITION_LIMIT:
        *out = SCHEMA_TYPE(SCHEMA_T_INT);
        if (!b->name.s) *name = "[per_partition_limit]";
        return true;
    }
    return false;
}
