/* libFuzzer target for the CQL lexer/parser: any bytes must give a statement or a clean
 * error, never a crash or an out-of-bounds read. The whole tree is walked so that a dangling
 * or half-built node is caught by ASan, and the bind list is checked against the tree. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/cql/ast.h"
#include "ilion/util/err.h"

static volatile uint64_t sink;

static void touch_str(cql_str s) {
    if (s.s) sink += (unsigned char)s.s[s.len] + s.len; /* the NUL terminator is readable */
}

static void walk_term(const cql_term *t, uint32_t *nbind) {
    if (!t) return;
    touch_str(t->text);
    switch (t->kind) {
    case CQL_TERM_BIND:
        (*nbind)++;
        touch_str(t->u.bind.name);
        break;
    case CQL_TERM_FUNC:
        touch_str(t->u.func.name);
        for (uint32_t i = 0; i < t->u.func.nargs; i++) walk_term(t->u.func.args[i], nbind);
        break;
    case CQL_TERM_LIST:
    case CQL_TERM_SET:
    case CQL_TERM_TUPLE:
    case CQL_TERM_MAP:
        for (uint32_t i = 0; i < t->u.coll.n; i++) {
            walk_term(t->u.coll.items[i], nbind);
            if (t->kind == CQL_TERM_MAP) walk_term(t->u.coll.values[i], nbind);
        }
        break;
    case CQL_TERM_BLOB:
        for (uint32_t i = 0; i < t->u.blob.len; i++) sink += t->u.blob.data[i];
        break;
    default:
        break;
    }
}

static void walk_type(const cql_type *t) {
    touch_str(t->name);
    for (uint32_t i = 0; i < t->nparams; i++) walk_type(t->params[i]);
}

static void walk_rels(const cql_relation *r, uint32_t n, uint32_t *nb) {
    for (uint32_t i = 0; i < n; i++) {
        touch_str(r[i].column);
        for (uint32_t j = 0; j < r[i].ncols; j++) touch_str(r[i].cols[j]);
        walk_term(r[i].elem, nb);
        walk_term(r[i].value, nb);
        for (uint32_t j = 0; j < r[i].nin; j++) walk_term(r[i].in[j], nb);
    }
}

static void walk_sel(const cql_selector *s, uint32_t *nb) {
    touch_str(s->column);
    touch_str(s->func);
    touch_str(s->alias);
    touch_str(s->text);
    walk_term(s->term, nb);
    for (uint32_t i = 0; i < s->nargs; i++) walk_sel(s->args[i], nb);
}

static void walk_opts(const cql_option *o, uint32_t n, uint32_t *nb) {
    for (uint32_t i = 0; i < n; i++) {
        touch_str(o[i].name);
        walk_term(o[i].value, nb);
    }
}

static void walk_stmt(const cql_stmt *st, uint32_t *nb) {
    switch (st->kind) {
    case CQL_STMT_SELECT: {
        const cql_select *s = &st->u.select;
        for (uint32_t i = 0; i < s->nsel; i++) walk_sel(&s->sel[i], nb);
        walk_rels(s->where, s->nwhere, nb);
        for (uint32_t i = 0; i < s->norder; i++) touch_str(s->order[i].column);
        walk_term(s->per_partition_limit, nb);
        walk_term(s->limit, nb);
        break;
    }
    case CQL_STMT_INSERT: {
        const cql_insert *s = &st->u.insert;
        for (uint32_t i = 0; i < s->ncols; i++) touch_str(s->cols[i]);
        for (uint32_t i = 0; i < (s->json ? 1 : s->ncols); i++) walk_term(s->values[i], nb);
        walk_term(s->using.ttl, nb);
        walk_term(s->using.timestamp, nb);
        break;
    }
    case CQL_STMT_UPDATE: {
        const cql_update *s = &st->u.update;
        walk_term(s->using.ttl, nb);
        walk_term(s->using.timestamp, nb);
        for (uint32_t i = 0; i < s->nset; i++) {
            touch_str(s->set[i].column);
            walk_term(s->set[i].key, nb);
            walk_term(s->set[i].value, nb);
        }
        walk_rels(s->where, s->nwhere, nb);
        walk_rels(s->ifs, s->nif, nb);
        break;
    }
    case CQL_STMT_DELETE: {
        const cql_delete *s = &st->u.del;
        for (uint32_t i = 0; i < s->ncols; i++) walk_term(s->cols[i].elem, nb);
        walk_term(s->using.timestamp, nb);
        walk_rels(s->where, s->nwhere, nb);
        walk_rels(s->ifs, s->nif, nb);
        break;
    }
    case CQL_STMT_BATCH:
        walk_term(st->u.batch.using.timestamp, nb);
        for (uint32_t i = 0; i < st->u.batch.nstmts; i++) walk_stmt(st->u.batch.stmts[i], nb);
        break;
    case CQL_STMT_USE:
        touch_str(st->u.use);
        break;
    case CQL_STMT_CREATE_KEYSPACE:
    case CQL_STMT_ALTER_KEYSPACE:
    case CQL_STMT_DROP_KEYSPACE:
        touch_str(st->u.keyspace.name);
        walk_opts(st->u.keyspace.opts, st->u.keyspace.nopts, nb);
        break;
    case CQL_STMT_CREATE_TABLE: {
        const cql_create_table *t = &st->u.create_table;
        for (uint32_t i = 0; i < t->ncols; i++) {
            touch_str(t->cols[i].name);
            walk_type(t->cols[i].type);
        }
        for (uint32_t i = 0; i < t->npk; i++) touch_str(t->pk[i]);
        for (uint32_t i = 0; i < t->nck; i++) touch_str(t->ck[i]);
        for (uint32_t i = 0; i < t->norder; i++) touch_str(t->order[i].column);
        walk_opts(t->opts, t->nopts, nb);
        break;
    }
    case CQL_STMT_DROP_TABLE:
    case CQL_STMT_TRUNCATE:
        touch_str(st->u.drop_table.table.name);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy of exactly `size` bytes so ASan flags any read past the input. */
    char *q = malloc(size ? size : 1);
    if (!q) return 0;
    if (size) memcpy(q, data, size);
    st_arena a;
    arena_init(&a);
    cql_stmt *st = NULL;
    cql_parse_error e;
    int rc = cql_parse(q, size, &a, &st, &e);
    if (rc == 0) {
        uint32_t nb = 0;
        walk_stmt(st, &nb);
        if (nb != st->nbinds) abort();
        for (uint32_t i = 0; i < st->nbinds; i++)
            if (st->binds[i].term->kind != CQL_TERM_BIND || st->binds[i].term->u.bind.index != i) abort();
    } else {
        if (rc != ILION_EINVALID || st != NULL) abort();
        if (e.msg[0] == 0 || e.pos > size) abort();
        if (e.code != CQL_ERR_SYNTAX && e.code != CQL_ERR_INVALID) abort();
        if (strnlen(e.msg, sizeof e.msg) == sizeof e.msg) abort();
    }
    arena_free(&a);
    free(q);
    return 0;
}
