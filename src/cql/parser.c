/*
 * Recursive-descent CQL parser over the tokenizer in lexer.c. Errors unwind with longjmp
 * (nothing to clean up: all memory is the caller's arena), which keeps every rule a plain
 * function that returns its node. Grammar: docs/cql.md.
 */
#include "ilion/cql/ast.h"

#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/err.h"
#include "lexer.h"

#define LA_MAX 4u          /* lookahead ring size (the grammar needs 3) */
#define MAX_BINDS 65535u   /* the protocol counts variables in a [short] */
#define TOKDESC_MAX 48

typedef struct vec {
    void *v;
    uint32_t n, cap;
} vec;

typedef struct P {
    const char *q;
    uint32_t len;
    st_arena *a;
    cql_lexer lx;
    cql_tok la[LA_MAX];
    unsigned head, nla;
    uint32_t prev_end;        /* end offset of the last consumed token */
    int depth;
    bool no_binds;            /* inside DDL property values */
    vec binds;                /* cql_bind */
    cql_parse_error *err;
    int rc;
    jmp_buf jb;
} P;

/* ---- memory ------------------------------------------------------------------------------ */

static _Noreturn void fail_nomem(P *p) {
    p->rc = -ENOMEM;
    longjmp(p->jb, 1);
}

static void *zalloc(P *p, size_t n) {
    void *m = arena_alloc(p->a, n);
    if (!m) fail_nomem(p);
    memset(m, 0, n);
    return m;
}
#define ZNEW(p, T) ((T *)zalloc((p), sizeof(T)))

static void *vec_push(P *p, vec *v, size_t elsz) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        void *m = arena_alloc(p->a, (size_t)cap * elsz);
        if (!m) fail_nomem(p);
        if (v->n) memcpy(m, v->v, (size_t)v->n * elsz);
        v->v = m;
        v->cap = cap;
    }
    void *slot = (char *)v->v + (size_t)v->n * elsz;
    memset(slot, 0, elsz);
    v->n++;
    return slot;
}
#define VPUSH(p, vp, T) ((T *)vec_push((p), (vp), sizeof(T)))

static cql_str mkstr(P *p, const char *s, uint32_t n) {
    char *d = arena_alloc(p->a, (size_t)n + 1);
    if (!d) fail_nomem(p);
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return (cql_str){d, n};
}

/* ---- tokens ------------------------------------------------------------------------------ */

static const cql_tok *peek(P *p, unsigned k) {
    while (p->nla <= k) {
        cql_lex_next(&p->lx, &p->la[(p->head + p->nla) % LA_MAX]);
        p->nla++;
    }
    return &p->la[(p->head + k) % LA_MAX];
}

static cql_tok next(P *p) {
    cql_tok t = *peek(p, 0);
    if (t.kind != CQL_TK_EOF && t.kind != CQL_TK_ERROR) {
        p->head = (p->head + 1) % LA_MAX;
        p->nla--;
        p->prev_end = t.pos + t.len;
    }
    return t;
}

static bool is_kw(const cql_tok *t, unsigned kw) { return t->kind == CQL_TK_IDENT && t->kw == kw; }
static bool peek_kw(P *p, unsigned k, unsigned kw) { return is_kw(peek(p, k), kw); }
static bool peek_is(P *p, unsigned k, unsigned kind) { return peek(p, k)->kind == kind; }

static bool is_name_tok(const cql_tok *t) {
    return t->kind == CQL_TK_QIDENT || (t->kind == CQL_TK_IDENT && !cql_kw_reserved(t->kw));
}

/* ---- errors ------------------------------------------------------------------------------ */

static void tok_desc(P *p, const cql_tok *t, char *out, size_t cap) {
    if (t->kind == CQL_TK_EOF) {
        snprintf(out, cap, "<EOF>");
        return;
    }
    size_t o = 0;
    uint32_t n = t->len;
    for (uint32_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p->q[t->pos + i];
        if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            snprintf(out + o, cap - o, "\\x%02x", c);
            o += 4;
        }
    }
    out[o] = 0;
}

static void line_col(const char *q, uint32_t pos, uint32_t *line, uint32_t *col) {
    uint32_t l = 1, c = 0;
    for (uint32_t i = 0; i < pos; i++) {
        unsigned char ch = (unsigned char)q[i];
        if (ch == '\n') {
            l++;
            c = 0;
        } else if ((ch & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static _Noreturn void failv(P *p, uint32_t code, uint32_t pos, const char *fmt, va_list ap) {
    if (p->err) {
        cql_parse_error *e = p->err;
        e->code = code;
        e->pos = pos;
        line_col(p->q, pos, &e->line, &e->col);
        int o = 0;
        if (code == CQL_ERR_SYNTAX) o = snprintf(e->msg, sizeof e->msg, "line %u:%u ", e->line, e->col);
        if (o < 0) o = 0;
        vsnprintf(e->msg + o, sizeof e->msg - (size_t)o, fmt, ap);
    }
    p->rc = ILION_EINVALID;
    longjmp(p->jb, 1);
}

static _Noreturn __attribute__((format(printf, 4, 5))) void fail(P *p, uint32_t code, uint32_t pos,
                                                                  const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    failv(p, code, pos, fmt, ap);
}

static _Noreturn void lex_fail(P *p, const cql_tok *t) {
    switch (t->err) {
    case CQL_LEXERR_STRING:
        fail(p, CQL_ERR_SYNTAX, t->pos, "mismatched character '<EOF>' expecting '''");
    case CQL_LEXERR_PGSTRING:
        fail(p, CQL_ERR_SYNTAX, t->pos, "mismatched character '<EOF>' expecting '$'");
    case CQL_LEXERR_COMMENT:
        fail(p, CQL_ERR_SYNTAX, t->pos, "mismatched character '<EOF>' expecting '*'");
    case CQL_LEXERR_QIDENT:
        if (t->len == 2) fail(p, CQL_ERR_SYNTAX, t->pos, "no viable alternative at input '\"\"'");
        fail(p, CQL_ERR_SYNTAX, t->pos, "mismatched character '<EOF>' expecting '\"'");
    default: {
        char d[TOKDESC_MAX];
        cql_tok one = *t;
        one.len = 1;
        tok_desc(p, &one, d, sizeof d);
        fail(p, CQL_ERR_SYNTAX, t->pos, "no viable alternative at character '%s'", d);
    }
    }
}

static _Noreturn void mismatched(P *p, const cql_tok *t, const char *expecting) {
    if (t->kind == CQL_TK_ERROR) lex_fail(p, t);
    char d[TOKDESC_MAX];
    tok_desc(p, t, d, sizeof d);
    fail(p, CQL_ERR_SYNTAX, t->pos, "mismatched input '%s' expecting %s", d, expecting);
}

static _Noreturn void noviable(P *p, const cql_tok *t) {
    if (t->kind == CQL_TK_ERROR) lex_fail(p, t);
    char d[TOKDESC_MAX];
    tok_desc(p, t, d, sizeof d);
    fail(p, CQL_ERR_SYNTAX, t->pos, "no viable alternative at input '%s'", d);
}

static void enter(P *p) {
    if (++p->depth > CQL_MAX_DEPTH) {
        const cql_tok *t = peek(p, 0);
        fail(p, CQL_ERR_SYNTAX, t->pos, "statement nested too deeply (more than %d levels)",
             CQL_MAX_DEPTH);
    }
}
static void leave(P *p) { p->depth--; }

static bool accept(P *p, unsigned kind) {
    if (peek(p, 0)->kind == kind) {
        next(p);
        return true;
    }
    return false;
}

static const char *tk_text(unsigned kind) {
    switch (kind) {
    case CQL_TK_LPAREN: return "'('";
    case CQL_TK_RPAREN: return "')'";
    case CQL_TK_LBRACE: return "'{'";
    case CQL_TK_RBRACE: return "'}'";
    case CQL_TK_LBRACKET: return "'['";
    case CQL_TK_RBRACKET: return "']'";
    case CQL_TK_COMMA: return "','";
    case CQL_TK_SEMI: return "';'";
    case CQL_TK_DOT: return "'.'";
    case CQL_TK_STAR: return "'*'";
    case CQL_TK_COLON: return "':'";
    case CQL_TK_EQ: return "'='";
    case CQL_TK_LT: return "'<'";
    case CQL_TK_GT: return "'>'";
    case CQL_TK_EOF: return "EOF";
    case CQL_TK_INTEGER: return "INTEGER";
    default: return "token";
    }
}

static void expect(P *p, unsigned kind) {
    if (!accept(p, kind)) mismatched(p, peek(p, 0), tk_text(kind));
}

static bool accept_kw(P *p, unsigned kw) {
    if (peek_kw(p, 0, kw)) {
        next(p);
        return true;
    }
    return false;
}

static void expect_kw(P *p, unsigned kw) {
    if (!accept_kw(p, kw)) {
        char up[24];
        const char *s = cql_kw_text(kw);
        size_t i = 0;
        for (; s[i] && i + 1 < sizeof up; i++) up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
        up[i] = 0;
        mismatched(p, peek(p, 0), up);
    }
}

/* ---- names ------------------------------------------------------------------------------- */

/* The identifier in token t: unquoted lower-cased, quoted with "" unescaped. */
static cql_str tok_name(P *p, const cql_tok *t) {
    const char *s = p->q + t->pos;
    if (t->kind == CQL_TK_QIDENT) {
        char *d = arena_alloc(p->a, t->len);
        if (!d) fail_nomem(p);
        uint32_t o = 0;
        for (uint32_t i = 1; i + 1 < t->len; i++) {
            d[o++] = s[i];
            if (s[i] == '"') i++;
        }
        d[o] = 0;
        return (cql_str){d, o};
    }
    char *d = arena_alloc(p->a, (size_t)t->len + 1);
    if (!d) fail_nomem(p);
    for (uint32_t i = 0; i < t->len; i++) {
        char c = s[i];
        d[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    d[t->len] = 0;
    return (cql_str){d, t->len};
}

static cql_str ident(P *p) {
    const cql_tok *t = peek(p, 0);
    if (!is_name_tok(t)) {
        if (t->kind == CQL_TK_IDENT || t->kind == CQL_TK_EOF || t->kind == CQL_TK_ERROR)
            noviable(p, t);
        mismatched(p, t, "IDENT");
    }
    cql_tok c = next(p);
    return tok_name(p, &c);
}

static cql_qname qname(P *p) {
    cql_qname n = {0};
    n.name = ident(p);
    if (accept(p, CQL_TK_DOT)) {
        n.ks = n.name;
        n.name = ident(p);
    }
    return n;
}

static bool str_eq(cql_str a, cql_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.s, b.s, a.len) == 0);
}

/* ---- terms ------------------------------------------------------------------------------- */

static cql_term *new_term(P *p, enum cql_term_kind k, uint32_t pos) {
    cql_term *t = ZNEW(p, cql_term);
    t->kind = k;
    t->pos = pos;
    return t;
}

static cql_term *make_bind(P *p, uint32_t pos, cql_str name, cql_str col, int role) {
    if (p->no_binds) fail(p, CQL_ERR_SYNTAX, pos, "bind variables are not allowed here");
    if (p->binds.n >= MAX_BINDS)
        fail(p, CQL_ERR_INVALID, pos, "Too many markers(?). %u markers exceed the allowed maximum of %u",
             p->binds.n + 1, MAX_BINDS);
    cql_term *t = new_term(p, CQL_TERM_BIND, pos);
    t->u.bind.index = p->binds.n;
    t->u.bind.name = name;
    cql_bind *b = VPUSH(p, &p->binds, cql_bind);
    b->role = (enum cql_bind_role)role;
    b->name = name;
    b->column = col;
    b->term = t;
    return t;
}

/* ? or :name at the current token, else NULL. */
static cql_term *try_bind(P *p, cql_str col, int role) {
    const cql_tok *t = peek(p, 0);
    if (t->kind == CQL_TK_QMARK) {
        next(p);
        return make_bind(p, t->pos, (cql_str){0}, col, role);
    }
    if (t->kind == CQL_TK_COLON) {
        uint32_t pos = t->pos;
        next(p);
        cql_str name = ident(p);
        return make_bind(p, pos, name, col, role);
    }
    return NULL;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return c - 'A' + 10;
}

static cql_term *string_term(P *p, const cql_tok *t) {
    cql_term *r = new_term(p, CQL_TERM_STRING, t->pos);
    const char *s = p->q + t->pos;
    if (t->kind == CQL_TK_PGSTRING) {
        r->text = mkstr(p, s + 2, t->len - 4);
        return r;
    }
    char *d = arena_alloc(p->a, t->len);
    if (!d) fail_nomem(p);
    uint32_t o = 0;
    for (uint32_t i = 1; i + 1 < t->len; i++) {
        d[o++] = s[i];
        if (s[i] == '\'') i++;
    }
    d[o] = 0;
    r->text = (cql_str){d, o};
    return r;
}

/* A numeric literal: INTEGER or FLOAT token, negated when neg. */
static cql_term *number_term(P *p, const cql_tok *t, bool neg, uint32_t pos) {
    const char *s = p->q + t->pos;
    char *d = arena_alloc(p->a, (size_t)t->len + 2);
    if (!d) fail_nomem(p);
    uint32_t o = 0;
    if (neg) d[o++] = '-';
    memcpy(d + o, s, t->len);
    o += t->len;
    d[o] = 0;
    cql_term *r;
    if (t->kind == CQL_TK_INTEGER) {
        r = new_term(p, CQL_TERM_INTEGER, pos);
        uint64_t v = 0;
        bool over = false;
        uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        for (uint32_t i = 0; i < t->len; i++) {
            unsigned dg = (unsigned)(s[i] - '0');
            if (v > (limit - dg) / 10) {
                over = true;
                break;
            }
            v = v * 10 + dg;
        }
        r->u.i.overflow = over;
        if (!over) r->u.i.v = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    } else {
        r = new_term(p, CQL_TERM_FLOAT, pos);
        r->u.f = strtod(d, NULL);
    }
    r->text = (cql_str){d, o};
    return r;
}

static cql_term *parse_term(P *p, cql_str col, int role);

/* name '(' args ')' where the name token is at peek(0) and '(' at peek(1). */
static cql_term *func_term(P *p, cql_str col) {
    cql_tok nt = next(p);
    cql_term *r = new_term(p, CQL_TERM_FUNC, nt.pos);
    r->u.func.name = tok_name(p, &nt);
    expect(p, CQL_TK_LPAREN);
    if (accept(p, CQL_TK_STAR)) {
        r->u.func.star = true;
    } else if (!peek_is(p, 0, CQL_TK_RPAREN)) {
        vec args = {0};
        do {
            *VPUSH(p, &args, cql_term *) = parse_term(p, col, CQL_BIND_FUNC_ARG);
        } while (accept(p, CQL_TK_COMMA));
        r->u.func.nargs = args.n;
        r->u.func.args = args.v;
    }
    expect(p, CQL_TK_RPAREN);
    return r;
}

static cql_term *collection_term(P *p, cql_str col) {
    cql_tok open = next(p);
    cql_term *r;
    vec items = {0}, values = {0};
    if (open.kind == CQL_TK_LBRACKET) {
        r = new_term(p, CQL_TERM_LIST, open.pos);
        if (!peek_is(p, 0, CQL_TK_RBRACKET)) {
            do *VPUSH(p, &items, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
            while (accept(p, CQL_TK_COMMA));
        }
        expect(p, CQL_TK_RBRACKET);
    } else if (open.kind == CQL_TK_LPAREN) {
        r = new_term(p, CQL_TERM_TUPLE, open.pos);
        do *VPUSH(p, &items, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
        while (accept(p, CQL_TK_COMMA));
        expect(p, CQL_TK_RPAREN);
    } else {
        r = new_term(p, CQL_TERM_MAP, open.pos);
        if (!peek_is(p, 0, CQL_TK_RBRACE)) {
            *VPUSH(p, &items, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
            if (accept(p, CQL_TK_COLON)) {
                *VPUSH(p, &values, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
                while (accept(p, CQL_TK_COMMA)) {
                    *VPUSH(p, &items, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
                    expect(p, CQL_TK_COLON);
                    *VPUSH(p, &values, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
                }
            } else {
                r->kind = CQL_TERM_SET;
                while (accept(p, CQL_TK_COMMA))
                    *VPUSH(p, &items, cql_term *) = parse_term(p, col, CQL_BIND_OTHER);
            }
        }
        expect(p, CQL_TK_RBRACE);
    }
    r->u.coll.n = items.n;
    r->u.coll.items = items.v;
    r->u.coll.values = values.v;
    return r;
}

static cql_term *parse_term(P *p, cql_str col, int role) {
    enter(p);
    cql_term *r = try_bind(p, col, role);
    if (r) {
        leave(p);
        return r;
    }
    const cql_tok *tp = peek(p, 0);
    cql_tok t = *tp;
    switch (t.kind) {
    case CQL_TK_STRING:
    case CQL_TK_PGSTRING:
        next(p);
        r = string_term(p, &t);
        break;
    case CQL_TK_INTEGER:
    case CQL_TK_FLOAT:
        next(p);
        r = number_term(p, &t, false, t.pos);
        break;
    case CQL_TK_MINUS: {
        const cql_tok *n = peek(p, 1);
        if (n->kind == CQL_TK_INTEGER || n->kind == CQL_TK_FLOAT) {
            next(p);
            cql_tok nt = next(p);
            r = number_term(p, &nt, true, t.pos);
        } else if (is_kw(n, CQL_KW_NAN) || is_kw(n, CQL_KW_INFINITY)) {
            next(p);
            cql_tok nt = next(p);
            bool inf = nt.kw == CQL_KW_INFINITY;
            r = new_term(p, inf ? CQL_TERM_INFINITY : CQL_TERM_NAN, t.pos);
            r->u.f = inf ? -INFINITY : NAN;
            r->text = mkstr(p, inf ? "-Infinity" : "NaN", inf ? 9 : 3);
        } else {
            noviable(p, n);
        }
        break;
    }
    case CQL_TK_UUID: {
        next(p);
        r = new_term(p, CQL_TERM_UUID, t.pos);
        const char *s = p->q + t.pos;
        int o = 0;
        for (int i = 0; i < 36; i++) {
            if (s[i] == '-') continue;
            int hi = hexval(s[i]), lo = hexval(s[i + 1]);
            r->u.uuid[o++] = (uint8_t)(hi << 4 | lo);
            i++;
        }
        r->text = mkstr(p, s, 36);
        break;
    }
    case CQL_TK_HEX: {
        next(p);
        uint32_t nd = t.len - 2;
        const char *s = p->q + t.pos + 2;
        if (nd % 2) fail(p, CQL_ERR_INVALID, t.pos, "Invalid hex literal %.*s: an odd number of hex digits",
                         (int)(t.len > 40 ? 40 : t.len), p->q + t.pos);
        r = new_term(p, CQL_TERM_BLOB, t.pos);
        uint8_t *d = arena_alloc(p->a, nd / 2 + 1);
        if (!d) fail_nomem(p);
        for (uint32_t i = 0; i < nd / 2; i++) d[i] = (uint8_t)(hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]));
        r->u.blob.data = d;
        r->u.blob.len = nd / 2;
        r->text = mkstr(p, s, nd);
        break;
    }
    case CQL_TK_LBRACKET:
    case CQL_TK_LBRACE:
    case CQL_TK_LPAREN:
        r = collection_term(p, col);
        break;
    case CQL_TK_IDENT:
        switch (t.kw) {
        case CQL_KW_TRUE:
        case CQL_KW_FALSE:
            next(p);
            r = new_term(p, CQL_TERM_BOOL, t.pos);
            r->u.b = t.kw == CQL_KW_TRUE;
            r->text = mkstr(p, t.kw == CQL_KW_TRUE ? "true" : "false", t.kw == CQL_KW_TRUE ? 4 : 5);
            goto done;
        case CQL_KW_NULL:
            next(p);
            r = new_term(p, CQL_TERM_NULL, t.pos);
            goto done;
        case CQL_KW_NAN:
            next(p);
            r = new_term(p, CQL_TERM_NAN, t.pos);
            r->u.f = NAN;
            r->text = mkstr(p, "NaN", 3);
            goto done;
        case CQL_KW_INFINITY:
            next(p);
            r = new_term(p, CQL_TERM_INFINITY, t.pos);
            r->u.f = INFINITY;
            r->text = mkstr(p, "Infinity", 8);
            goto done;
        case CQL_KW_TOKEN:
            if (peek_is(p, 1, CQL_TK_LPAREN)) goto func;
            noviable(p, tp);
        default:
            break;
        }
        /* fall through */
    case CQL_TK_QIDENT:
        if (is_name_tok(tp) && peek_is(p, 1, CQL_TK_LPAREN)) {
        func:
            if (p->no_binds) noviable(p, tp);
            r = func_term(p, col);
            break;
        }
        noviable(p, tp);
    default:
        noviable(p, tp);
    }
done:
    leave(p);
    return r;
}

/* LIMIT / TTL / TIMESTAMP values: an integer literal or a bind marker. */
static cql_term *int_or_bind(P *p, int role) {
    cql_term *r = try_bind(p, (cql_str){0}, role);
    if (r) return r;
    const cql_tok *t = peek(p, 0);
    if (t->kind == CQL_TK_INTEGER) {
        cql_tok c = next(p);
        return number_term(p, &c, false, c.pos);
    }
    if (t->kind == CQL_TK_MINUS && peek_is(p, 1, CQL_TK_INTEGER)) {
        uint32_t pos = t->pos;
        next(p);
        cql_tok c = next(p);
        return number_term(p, &c, true, pos);
    }
    mismatched(p, t, "INTEGER");
}

/* ---- types ------------------------------------------------------------------------------- */

static const struct {
    const char *name;
    enum cql_type_kind kind;
} native_types[] = {
    {"ascii", CQL_TYPE_ASCII},       {"bigint", CQL_TYPE_BIGINT},     {"blob", CQL_TYPE_BLOB},
    {"boolean", CQL_TYPE_BOOLEAN},   {"counter", CQL_TYPE_COUNTER},   {"date", CQL_TYPE_DATE},
    {"decimal", CQL_TYPE_DECIMAL},   {"double", CQL_TYPE_DOUBLE},     {"duration", CQL_TYPE_DURATION},
    {"float", CQL_TYPE_FLOAT},       {"inet", CQL_TYPE_INET},         {"int", CQL_TYPE_INT},
    {"smallint", CQL_TYPE_SMALLINT}, {"text", CQL_TYPE_VARCHAR},      {"time", CQL_TYPE_TIME},
    {"timestamp", CQL_TYPE_TIMESTAMP}, {"timeuuid", CQL_TYPE_TIMEUUID}, {"tinyint", CQL_TYPE_TINYINT},
    {"uuid", CQL_TYPE_UUID},         {"varchar", CQL_TYPE_VARCHAR},   {"varint", CQL_TYPE_VARINT},
};

static cql_type *parse_type(P *p);

static void type_params(P *p, cql_type *ty, uint32_t min, uint32_t max) {
    expect(p, CQL_TK_LT);
    vec ps = {0};
    do *VPUSH(p, &ps, cql_type *) = parse_type(p);
    while (ps.n < max && accept(p, CQL_TK_COMMA));
    if (ps.n < min) mismatched(p, peek(p, 0), "','");
    expect(p, CQL_TK_GT);
    ty->nparams = ps.n;
    ty->params = ps.v;
}

static cql_type *parse_type(P *p) {
    enter(p);
    const cql_tok *tp = peek(p, 0);
    cql_type *ty = ZNEW(p, cql_type);
    if (tp->kind == CQL_TK_STRING) {
        cql_tok t = next(p);
        ty->kind = CQL_TYPE_CUSTOM;
        ty->name = string_term(p, &t)->text;
        leave(p);
        return ty;
    }
    if (is_kw(tp, CQL_KW_SET) && peek_is(p, 1, CQL_TK_LT)) { /* `set` is reserved elsewhere */
        next(p);
        ty->kind = CQL_TYPE_SET;
        type_params(p, ty, 1, 1);
        leave(p);
        return ty;
    }
    if (!is_name_tok(tp)) noviable(p, tp);
    cql_tok t = next(p);
    cql_str name = tok_name(p, &t);
    if (t.kind == CQL_TK_IDENT) {
        for (size_t i = 0; i < sizeof native_types / sizeof native_types[0]; i++) {
            if (strcmp(name.s, native_types[i].name) == 0) {
                ty->kind = native_types[i].kind;
                ty->is_text = strcmp(name.s, "text") == 0;
                leave(p);
                return ty;
            }
        }
        if (strcmp(name.s, "list") == 0 && peek_is(p, 0, CQL_TK_LT)) {
            ty->kind = CQL_TYPE_LIST;
            type_params(p, ty, 1, 1);
        } else if (strcmp(name.s, "set") == 0 && peek_is(p, 0, CQL_TK_LT)) {
            ty->kind = CQL_TYPE_SET;
            type_params(p, ty, 1, 1);
        } else if (strcmp(name.s, "map") == 0 && peek_is(p, 0, CQL_TK_LT)) {
            ty->kind = CQL_TYPE_MAP;
            type_params(p, ty, 2, 2);
        } else if (strcmp(name.s, "tuple") == 0 && peek_is(p, 0, CQL_TK_LT)) {
            ty->kind = CQL_TYPE_TUPLE;
            type_params(p, ty, 1, UINT32_MAX);
        } else if (t.kw == CQL_KW_FROZEN) {
            expect(p, CQL_TK_LT);
            cql_type *in = parse_type(p);
            expect(p, CQL_TK_GT);
            in->frozen = true;
            leave(p);
            return in;
        } else {
            ty->kind = CQL_TYPE_UDT;
            ty->name = name;
            if (accept(p, CQL_TK_DOT)) ty->name = ident(p); /* ks.udt: keep the type's name */
        }
    } else {
        ty->kind = CQL_TYPE_UDT;
        ty->name = name;
    }
    leave(p);
    return ty;
}

/* ---- relations and conditions ------------------------------------------------------------ */

static bool rel_op(P *p, enum cql_op *op, bool allow_ne) {
    switch (peek(p, 0)->kind) {
    case CQL_TK_EQ: *op = CQL_OP_EQ; break;
    case CQL_TK_LT: *op = CQL_OP_LT; break;
    case CQL_TK_LE: *op = CQL_OP_LE; break;
    case CQL_TK_GT: *op = CQL_OP_GT; break;
    case CQL_TK_GE: *op = CQL_OP_GE; break;
    case CQL_TK_NE:
        if (!allow_ne) return false;
        *op = CQL_OP_NE;
        break;
    default: return false;
    }
    next(p);
    return true;
}

static void in_values(P *p, cql_relation *r, cql_str col) {
    r->op = CQL_OP_IN;
    cql_term *b = try_bind(p, col, CQL_BIND_IN_LIST);
    if (b) {
        r->value = b;
        return;
    }
    expect(p, CQL_TK_LPAREN);
    vec in = {0};
    if (!peek_is(p, 0, CQL_TK_RPAREN)) {
        do *VPUSH(p, &in, cql_term *) = parse_term(p, col, CQL_BIND_VALUE);
        while (accept(p, CQL_TK_COMMA));
    }
    expect(p, CQL_TK_RPAREN);
    r->nin = in.n;
    r->in = in.v;
}

static void name_list(P *p, uint32_t *n, cql_str **out) {
    vec v = {0};
    expect(p, CQL_TK_LPAREN);
    do *VPUSH(p, &v, cql_str) = ident(p);
    while (accept(p, CQL_TK_COMMA));
    expect(p, CQL_TK_RPAREN);
    *n = v.n;
    *out = v.v;
}

static void parse_relation(P *p, cql_relation *r) {
    const cql_tok *t = peek(p, 0);
    r->pos = t->pos;
    if (is_kw(t, CQL_KW_TOKEN) && peek_is(p, 1, CQL_TK_LPAREN)) {
        next(p);
        r->lhs = CQL_LHS_TOKEN;
        name_list(p, &r->ncols, &r->cols);
        if (!rel_op(p, &r->op, false)) noviable(p, peek(p, 0));
        r->value = parse_term(p, (cql_str){0}, CQL_BIND_TOKEN);
        return;
    }
    if (t->kind == CQL_TK_LPAREN) {
        r->lhs = CQL_LHS_TUPLE;
        name_list(p, &r->ncols, &r->cols);
        if (accept_kw(p, CQL_KW_IN)) {
            in_values(p, r, (cql_str){0});
            return;
        }
        if (!rel_op(p, &r->op, false)) noviable(p, peek(p, 0));
        cql_term *b = try_bind(p, (cql_str){0}, CQL_BIND_OTHER);
        if (b) {
            r->value = b;
            return;
        }
        /* (a, b) > (?, ?): each marker binds to its column */
        const cql_tok *o = peek(p, 0);
        if (o->kind != CQL_TK_LPAREN) noviable(p, o);
        cql_term *tu = new_term(p, CQL_TERM_TUPLE, o->pos);
        next(p);
        vec items = {0};
        do {
            cql_str c = items.n < r->ncols ? r->cols[items.n] : (cql_str){0};
            *VPUSH(p, &items, cql_term *) = parse_term(p, c, CQL_BIND_VALUE);
        } while (accept(p, CQL_TK_COMMA));
        expect(p, CQL_TK_RPAREN);
        tu->u.coll.n = items.n;
        tu->u.coll.items = items.v;
        r->value = tu;
        return;
    }
    r->lhs = CQL_LHS_COLUMN;
    r->column = ident(p);
    if (accept_kw(p, CQL_KW_IN)) {
        in_values(p, r, r->column);
        return;
    }
    if (accept_kw(p, CQL_KW_CONTAINS)) {
        r->op = accept_kw(p, CQL_KW_KEY) ? CQL_OP_CONTAINS_KEY : CQL_OP_CONTAINS;
        r->value = parse_term(p, r->column, CQL_BIND_OTHER);
        return;
    }
    if (accept_kw(p, CQL_KW_LIKE)) {
        r->op = CQL_OP_LIKE;
        r->value = parse_term(p, r->column, CQL_BIND_VALUE);
        return;
    }
    if (!rel_op(p, &r->op, true)) noviable(p, peek(p, 0));
    r->value = parse_term(p, r->column, CQL_BIND_VALUE);
}

static void where_clause(P *p, uint32_t *n, cql_relation **out) {
    expect_kw(p, CQL_KW_WHERE);
    vec v = {0};
    do parse_relation(p, VPUSH(p, &v, cql_relation));
    while (accept_kw(p, CQL_KW_AND));
    *n = v.n;
    *out = v.v;
}

/* IF EXISTS | IF cond AND ... (after UPDATE / DELETE's WHERE) */
static void if_clause(P *p, bool *if_exists, uint32_t *n, cql_relation **out) {
    if (!accept_kw(p, CQL_KW_IF)) return;
    if (peek_kw(p, 0, CQL_KW_EXISTS) && !peek_is(p, 1, CQL_TK_EQ) && !peek_is(p, 1, CQL_TK_LBRACKET) &&
        !peek_kw(p, 1, CQL_KW_IN) && !peek_is(p, 1, CQL_TK_NE) && !peek_is(p, 1, CQL_TK_LT) &&
        !peek_is(p, 1, CQL_TK_GT) && !peek_is(p, 1, CQL_TK_LE) && !peek_is(p, 1, CQL_TK_GE)) {
        next(p);
        *if_exists = true;
        return;
    }
    vec v = {0};
    do {
        cql_relation *r = VPUSH(p, &v, cql_relation);
        r->pos = peek(p, 0)->pos;
        r->lhs = CQL_LHS_COLUMN;
        r->column = ident(p);
        int role = CQL_BIND_VALUE;
        if (accept(p, CQL_TK_LBRACKET)) {
            r->elem = parse_term(p, r->column, CQL_BIND_KEY);
            expect(p, CQL_TK_RBRACKET);
            role = CQL_BIND_ELEMENT;
        }
        if (accept_kw(p, CQL_KW_IN)) {
            in_values(p, r, r->column);
            continue;
        }
        if (!rel_op(p, &r->op, true)) noviable(p, peek(p, 0));
        r->value = parse_term(p, r->column, role);
    } while (accept_kw(p, CQL_KW_AND));
    *n = v.n;
    *out = v.v;
}

/* USING TTL x AND TIMESTAMP y (either order, each at most once). */
static void using_clause(P *p, cql_using *u, bool allow_ttl) {
    if (!accept_kw(p, CQL_KW_USING)) return;
    do {
        const cql_tok *t = peek(p, 0);
        if (allow_ttl && is_kw(t, CQL_KW_TTL) && !u->ttl) {
            next(p);
            u->ttl = int_or_bind(p, CQL_BIND_TTL);
        } else if (is_kw(t, CQL_KW_TIMESTAMP) && !u->timestamp) {
            next(p);
            u->timestamp = int_or_bind(p, CQL_BIND_TIMESTAMP);
        } else if (!allow_ttl || u->ttl) {
            mismatched(p, t, "TIMESTAMP");
        } else {
            noviable(p, t);
        }
    } while (accept_kw(p, CQL_KW_AND));
}

/* ---- SELECT ------------------------------------------------------------------------------ */

static void parse_selector(P *p, cql_selector *s, bool top);

static cql_selector *selector_args(P *p, cql_selector *s) {
    vec args = {0};
    if (!peek_is(p, 0, CQL_TK_RPAREN)) {
        do parse_selector(p, *VPUSH(p, &args, cql_selector *) = ZNEW(p, cql_selector), false);
        while (accept(p, CQL_TK_COMMA));
    }
    expect(p, CQL_TK_RPAREN);
    s->nargs = args.n;
    s->args = args.v;
    return s;
}

static void parse_selector(P *p, cql_selector *s, bool top) {
    enter(p);
    const cql_tok *tp = peek(p, 0);
    uint32_t start = tp->pos;
    if ((is_name_tok(tp) || is_kw(tp, CQL_KW_TOKEN)) && peek_is(p, 1, CQL_TK_LPAREN)) {
        cql_tok nt = next(p);
        next(p);
        s->func = tok_name(p, &nt);
        unsigned kw = nt.kind == CQL_TK_IDENT ? nt.kw : 0;
        if (kw == CQL_KW_WRITETIME || kw == CQL_KW_TTL) {
            s->kind = kw == CQL_KW_TTL ? CQL_SEL_TTL : CQL_SEL_WRITETIME;
            s->column = ident(p);
            expect(p, CQL_TK_RPAREN);
        } else if (kw == CQL_KW_COUNT) {
            s->kind = CQL_SEL_COUNT;
            if (!accept(p, CQL_TK_STAR)) {
                cql_selector *a = ZNEW(p, cql_selector);
                parse_selector(p, a, false);
                if (a->kind == CQL_SEL_COLUMN) {
                    s->column = a->column;
                } else if (!(a->kind == CQL_SEL_TERM && a->term->kind == CQL_TERM_INTEGER)) {
                    s->kind = CQL_SEL_FUNC;
                    s->nargs = 1;
                    s->args = zalloc(p, sizeof(cql_selector *));
                    s->args[0] = a;
                }
            }
            expect(p, CQL_TK_RPAREN);
        } else {
            s->kind = kw == CQL_KW_TOKEN ? CQL_SEL_TOKEN : CQL_SEL_FUNC;
            selector_args(p, s);
        }
    } else if (is_name_tok(tp) && !is_kw(tp, CQL_KW_TRUE) && !is_kw(tp, CQL_KW_FALSE)) {
        cql_tok nt = next(p);
        s->kind = CQL_SEL_COLUMN;
        s->column = tok_name(p, &nt);
    } else {
        s->kind = CQL_SEL_TERM;
        s->term = parse_term(p, (cql_str){0}, CQL_BIND_OTHER);
    }
    s->text = mkstr(p, p->q + start, p->prev_end - start);
    if (top && accept_kw(p, CQL_KW_AS)) s->alias = ident(p);
    leave(p);
}

/* DISTINCT / JSON are unreserved: a modifier only when a selection follows. */
static bool modifier(P *p, unsigned kw) {
    if (!peek_kw(p, 0, kw)) return false;
    const cql_tok *n = peek(p, 1);
    if (is_kw(n, CQL_KW_FROM) || is_kw(n, CQL_KW_AS) || n->kind == CQL_TK_COMMA || n->kind == CQL_TK_LPAREN)
        return false;
    next(p);
    return true;
}

static void parse_select(P *p, cql_stmt *st) {
    cql_select *s = &st->u.select;
    st->kind = CQL_STMT_SELECT;
    expect_kw(p, CQL_KW_SELECT);
    s->json = modifier(p, CQL_KW_JSON);
    s->distinct = modifier(p, CQL_KW_DISTINCT);
    if (accept(p, CQL_TK_STAR)) {
        s->star = true;
    } else {
        vec v = {0};
        do parse_selector(p, VPUSH(p, &v, cql_selector), true);
        while (accept(p, CQL_TK_COMMA));
        s->nsel = v.n;
        s->sel = v.v;
    }
    expect_kw(p, CQL_KW_FROM);
    s->table = qname(p);
    if (peek_kw(p, 0, CQL_KW_WHERE)) where_clause(p, &s->nwhere, &s->where);
    if (accept_kw(p, CQL_KW_ORDER)) {
        expect_kw(p, CQL_KW_BY);
        vec v = {0};
        do {
            cql_ordering *o = VPUSH(p, &v, cql_ordering);
            o->column = ident(p);
            if (accept_kw(p, CQL_KW_DESC)) o->desc = true;
            else accept_kw(p, CQL_KW_ASC);
        } while (accept(p, CQL_TK_COMMA));
        s->norder = v.n;
        s->order = v.v;
    }
    if (peek_kw(p, 0, CQL_KW_PER) && peek_kw(p, 1, CQL_KW_PARTITION)) {
        next(p);
        next(p);
        expect_kw(p, CQL_KW_LIMIT);
        s->per_partition_limit = int_or_bind(p, CQL_BIND_PER_PARTITION_LIMIT);
    }
    if (accept_kw(p, CQL_KW_LIMIT)) s->limit = int_or_bind(p, CQL_BIND_LIMIT);
    if (accept_kw(p, CQL_KW_ALLOW)) {
        expect_kw(p, CQL_KW_FILTERING);
        s->allow_filtering = true;
    }
}

/* ---- INSERT / UPDATE / DELETE / BATCH ---------------------------------------------------- */

static void if_not_exists(P *p, bool *flag) {
    if (peek_kw(p, 0, CQL_KW_IF)) {
        next(p);
        expect_kw(p, CQL_KW_NOT);
        expect_kw(p, CQL_KW_EXISTS);
        *flag = true;
    }
}

static void if_exists(P *p, bool *flag) {
    if (peek_kw(p, 0, CQL_KW_IF)) {
        next(p);
        expect_kw(p, CQL_KW_EXISTS);
        *flag = true;
    }
}

static void parse_insert(P *p, cql_stmt *st) {
    cql_insert *s = &st->u.insert;
    st->kind = CQL_STMT_INSERT;
    expect_kw(p, CQL_KW_INSERT);
    expect_kw(p, CQL_KW_INTO);
    s->table = qname(p);
    if (peek_kw(p, 0, CQL_KW_JSON)) {
        next(p);
        s->json = true;
        s->values = zalloc(p, sizeof(cql_term *));
        s->values[0] = parse_term(p, mkstr(p, "[json]", 6), CQL_BIND_VALUE);
        if (accept_kw(p, CQL_KW_DEFAULT)) {
            if (!accept_kw(p, CQL_KW_NULL) && !accept_kw(p, CQL_KW_UNSET)) noviable(p, peek(p, 0));
        }
    } else {
        name_list(p, &s->ncols, &s->cols);
        const cql_tok *vt = peek(p, 0);
        uint32_t vpos = vt->pos;
        expect_kw(p, CQL_KW_VALUES);
        expect(p, CQL_TK_LPAREN);
        vec v = {0};
        do {
            cql_str col = v.n < s->ncols ? s->cols[v.n] : (cql_str){0};
            *VPUSH(p, &v, cql_term *) = parse_term(p, col, CQL_BIND_VALUE);
        } while (accept(p, CQL_TK_COMMA));
        expect(p, CQL_TK_RPAREN);
        if (v.n != s->ncols) fail(p, CQL_ERR_INVALID, vpos, "Unmatched column names/values");
        s->values = v.v;
    }
    if_not_exists(p, &s->if_not_exists);
    using_clause(p, &s->using, true);
}

static void parse_assignment(P *p, cql_assignment *a) {
    const cql_tok *ct = peek(p, 0);
    uint32_t cpos = ct->pos;
    a->column = ident(p);
    if (accept(p, CQL_TK_LBRACKET)) {
        a->op = CQL_ASSIGN_ELEM;
        a->key = parse_term(p, a->column, CQL_BIND_KEY);
        expect(p, CQL_TK_RBRACKET);
        expect(p, CQL_TK_EQ);
        a->value = parse_term(p, a->column, CQL_BIND_ELEMENT);
        return;
    }
    if (accept(p, CQL_TK_PLUSEQ)) {
        a->op = CQL_ASSIGN_ADD;
        a->value = parse_term(p, a->column, CQL_BIND_VALUE);
        return;
    }
    if (accept(p, CQL_TK_MINUSEQ)) {
        a->op = CQL_ASSIGN_SUB;
        a->value = parse_term(p, a->column, CQL_BIND_VALUE);
        return;
    }
    expect(p, CQL_TK_EQ);
    const cql_tok *t = peek(p, 0);
    unsigned k1 = peek(p, 1)->kind;
    if (is_name_tok(t) && !is_kw(t, CQL_KW_TRUE) && !is_kw(t, CQL_KW_FALSE) &&
        (k1 == CQL_TK_PLUS || k1 == CQL_TK_MINUS)) {
        cql_tok nt = next(p);
        cql_str other = tok_name(p, &nt);
        if (!str_eq(other, a->column))
            fail(p, CQL_ERR_INVALID, cpos, "Only expressions of the form X = <value> + X are supported.");
        a->op = next(p).kind == CQL_TK_PLUS ? CQL_ASSIGN_ADD : CQL_ASSIGN_SUB;
        a->value = parse_term(p, a->column, CQL_BIND_VALUE);
        return;
    }
    a->op = CQL_ASSIGN_SET;
    a->value = parse_term(p, a->column, CQL_BIND_VALUE);
    if (accept(p, CQL_TK_PLUS)) {
        cql_str other = ident(p);
        if (!str_eq(other, a->column))
            fail(p, CQL_ERR_INVALID, cpos, "Only expressions of the form X = <value> + X are supported.");
        a->op = CQL_ASSIGN_PREPEND;
    }
}

static void parse_update(P *p, cql_stmt *st) {
    cql_update *s = &st->u.update;
    st->kind = CQL_STMT_UPDATE;
    expect_kw(p, CQL_KW_UPDATE);
    s->table = qname(p);
    using_clause(p, &s->using, true);
    expect_kw(p, CQL_KW_SET);
    vec v = {0};
    do parse_assignment(p, VPUSH(p, &v, cql_assignment));
    while (accept(p, CQL_TK_COMMA));
    s->nset = v.n;
    s->set = v.v;
    where_clause(p, &s->nwhere, &s->where);
    if_clause(p, &s->if_exists, &s->nif, &s->ifs);
}

static void parse_delete(P *p, cql_stmt *st) {
    cql_delete *s = &st->u.del;
    st->kind = CQL_STMT_DELETE;
    expect_kw(p, CQL_KW_DELETE);
    if (!peek_kw(p, 0, CQL_KW_FROM)) {
        vec v = {0};
        do {
            cql_deletion *d = VPUSH(p, &v, cql_deletion);
            d->column = ident(p);
            if (accept(p, CQL_TK_LBRACKET)) {
                d->elem = parse_term(p, d->column, CQL_BIND_KEY);
                expect(p, CQL_TK_RBRACKET);
            }
        } while (accept(p, CQL_TK_COMMA));
        s->ncols = v.n;
        s->cols = v.v;
    }
    expect_kw(p, CQL_KW_FROM);
    s->table = qname(p);
    using_clause(p, &s->using, false);
    where_clause(p, &s->nwhere, &s->where);
    if_clause(p, &s->if_exists, &s->nif, &s->ifs);
}

static void parse_batch(P *p, cql_stmt *st, vec *firsts) {
    cql_batch_stmt *b = &st->u.batch;
    st->kind = CQL_STMT_BATCH;
    expect_kw(p, CQL_KW_BEGIN);
    if (accept_kw(p, CQL_KW_UNLOGGED)) b->type = CQL_BATCH_UNLOGGED;
    else if (accept_kw(p, CQL_KW_COUNTER)) b->type = CQL_BATCH_COUNTER;
    else if (accept_kw(p, CQL_KW_LOGGED)) b->type = CQL_BATCH_LOGGED;
    expect_kw(p, CQL_KW_BATCH);
    using_clause(p, &b->using, false);
    vec v = {0};
    for (;;) {
        const cql_tok *t = peek(p, 0);
        cql_stmt *c;
        uint32_t first = p->binds.n;
        if (is_kw(t, CQL_KW_INSERT)) parse_insert(p, c = ZNEW(p, cql_stmt));
        else if (is_kw(t, CQL_KW_UPDATE)) parse_update(p, c = ZNEW(p, cql_stmt));
        else if (is_kw(t, CQL_KW_DELETE)) parse_delete(p, c = ZNEW(p, cql_stmt));
        else if (is_kw(t, CQL_KW_APPLY)) break;
        else noviable(p, t);
        c->nbinds = p->binds.n - first;
        *VPUSH(p, &v, cql_stmt *) = c;
        *VPUSH(p, firsts, uint32_t) = first;
        accept(p, CQL_TK_SEMI);
    }
    expect_kw(p, CQL_KW_APPLY);
    expect_kw(p, CQL_KW_BATCH);
    b->nstmts = v.n;
    b->stmts = v.v;
}

/* ---- DDL --------------------------------------------------------------------------------- */

/* ---- name checks: O(n log n), so a statement with 100k names stays cheap ----------------- */

typedef struct named {
    cql_str name;
    uint32_t idx;
} named;

static int named_cmp(const void *a, const void *b) {
    const named *x = a, *y = b;
    uint32_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
    int c = n ? memcmp(x->name.s, y->name.s, n) : 0;
    if (c) return c;
    if (x->name.len != y->name.len) return x->name.len < y->name.len ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* The n names at base, base + stride, ... (each a cql_str at offset 0), sorted. */
static named *sorted_names(P *p, const void *base, size_t stride, uint32_t n) {
    named *v = zalloc(p, (size_t)(n ? n : 1) * sizeof *v);
    for (uint32_t i = 0; i < n; i++) {
        v[i].name = *(const cql_str *)((const char *)base + (size_t)i * stride);
        v[i].idx = i;
    }
    if (n > 1) qsort(v, n, sizeof *v, named_cmp);
    return v;
}

/* Index of the first name (in list order) equal to an earlier one, or -1. */
static int64_t first_dup(P *p, const void *base, size_t stride, uint32_t n) {
    named *v = sorted_names(p, base, stride, n);
    int64_t best = -1;
    for (uint32_t i = 1; i < n; i++)
        if (str_eq(v[i - 1].name, v[i].name) && (best < 0 || v[i].idx < best)) best = v[i].idx;
    return best;
}

/* Index of name s in a sorted_names array, or -1. */
static int64_t find_name(const named *v, uint32_t n, cql_str s) {
    uint32_t lo = 0, hi = n;
    named key = {s, 0};
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (named_cmp(&v[mid], &key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && str_eq(v[lo].name, s) ? (int64_t)v[lo].idx : -1;
}

static void property(P *p, vec *opts) {
    const cql_tok *t = peek(p, 0);
    uint32_t pos = t->pos;
    cql_str name = ident(p);
    expect(p, CQL_TK_EQ);
    cql_option *o = VPUSH(p, opts, cql_option);
    o->name = name;
    o->pos = pos;
    p->no_binds = true;
    o->value = parse_term(p, (cql_str){0}, CQL_BIND_OTHER);
    p->no_binds = false;
}

static void check_properties(P *p, const vec *opts) {
    int64_t d = first_dup(p, opts->v, sizeof(cql_option), opts->n);
    if (d >= 0) {
        const cql_option *o = &((const cql_option *)opts->v)[d];
        fail(p, CQL_ERR_SYNTAX, o->pos, "Multiple definition for property '%s'", o->name.s);
    }
}

static void properties(P *p, uint32_t *n, cql_option **out) {
    vec v = {0};
    do property(p, &v);
    while (accept_kw(p, CQL_KW_AND));
    check_properties(p, &v);
    *n = v.n;
    *out = v.v;
}

static bool accept_keyspace(P *p) { return accept_kw(p, CQL_KW_KEYSPACE) || accept_kw(p, CQL_KW_SCHEMA); }
static bool accept_table(P *p) { return accept_kw(p, CQL_KW_TABLE) || accept_kw(p, CQL_KW_COLUMNFAMILY); }

static void table_body(P *p, cql_create_table *t) {
    vec cols = {0}, cpos = {0}, pk = {0}, ck = {0};
    int npkdefs = 0;
    uint32_t pkpos = 0;
    expect(p, CQL_TK_LPAREN);
    do {
        if (peek_is(p, 0, CQL_TK_RPAREN) && cols.n > 0) break; /* trailing comma */
        const cql_tok *tp = peek(p, 0);
        if (is_kw(tp, CQL_KW_PRIMARY)) {
            pkpos = tp->pos;
            next(p);
            expect_kw(p, CQL_KW_KEY);
            npkdefs++;
            pk.n = ck.n = 0;
            expect(p, CQL_TK_LPAREN);
            if (accept(p, CQL_TK_LPAREN)) {
                do *VPUSH(p, &pk, cql_str) = ident(p);
                while (accept(p, CQL_TK_COMMA));
                expect(p, CQL_TK_RPAREN);
            } else {
                *VPUSH(p, &pk, cql_str) = ident(p);
            }
            while (accept(p, CQL_TK_COMMA)) *VPUSH(p, &ck, cql_str) = ident(p);
            expect(p, CQL_TK_RPAREN);
            continue;
        }
        *VPUSH(p, &cpos, uint32_t) = tp->pos;
        cql_column_def *c = VPUSH(p, &cols, cql_column_def);
        c->name = ident(p);
        c->type = parse_type(p);
        if (accept_kw(p, CQL_KW_STATIC)) c->is_static = true;
        if (peek_kw(p, 0, CQL_KW_PRIMARY)) {
            pkpos = peek(p, 0)->pos;
            next(p);
            expect_kw(p, CQL_KW_KEY);
            npkdefs++;
            pk.n = ck.n = 0;
            *VPUSH(p, &pk, cql_str) = c->name;
        }
    } while (accept(p, CQL_TK_COMMA));
    expect(p, CQL_TK_RPAREN);
    t->ncols = cols.n;
    t->cols = cols.v;
    if (npkdefs == 0) fail(p, CQL_ERR_INVALID, p->prev_end, "No PRIMARY KEY specifed (exactly one required)");
    if (npkdefs > 1) fail(p, CQL_ERR_INVALID, pkpos, "Multiple PRIMARY KEYs specifed (exactly one required)");
    t->npk = pk.n;
    t->pk = pk.v;
    t->nck = ck.n;
    t->ck = ck.v;
    int64_t d = first_dup(p, t->cols, sizeof(cql_column_def), t->ncols);
    if (d >= 0)
        fail(p, CQL_ERR_INVALID, ((uint32_t *)cpos.v)[d], "Multiple definition of identifier %s", t->cols[d].name.s);
    uint32_t nkey = pk.n + ck.n;
    cql_str *key = zalloc(p, (size_t)nkey * sizeof *key);
    memcpy(key, pk.v, (size_t)pk.n * sizeof *key);
    if (ck.n) memcpy(key + pk.n, ck.v, (size_t)ck.n * sizeof *key);
    named *sorted = sorted_names(p, t->cols, sizeof(cql_column_def), t->ncols);
    for (uint32_t i = 0; i < nkey; i++) {
        int64_t ci = find_name(sorted, t->ncols, key[i]);
        if (ci < 0) fail(p, CQL_ERR_INVALID, pkpos, "Unknown definition %s referenced in PRIMARY KEY", key[i].s);
        if (t->cols[ci].is_static)
            fail(p, CQL_ERR_INVALID, pkpos, "Static column %s cannot be part of the PRIMARY KEY", key[i].s);
    }
    d = first_dup(p, key, sizeof *key, nkey);
    if (d >= 0) fail(p, CQL_ERR_INVALID, pkpos, "Duplicate definition for %s in PRIMARY KEY", key[d].s);
}

static void table_options(P *p, cql_create_table *t) {
    vec opts = {0}, ord = {0};
    do {
        const cql_tok *tp = peek(p, 0);
        if (is_kw(tp, CQL_KW_CLUSTERING) && peek_kw(p, 1, CQL_KW_ORDER)) {
            uint32_t pos = tp->pos;
            next(p);
            next(p);
            expect_kw(p, CQL_KW_BY);
            if (ord.n) fail(p, CQL_ERR_SYNTAX, pos, "Multiple definition for property 'clustering order'");
            expect(p, CQL_TK_LPAREN);
            do {
                const cql_tok *ct = peek(p, 0);
                uint32_t cpos = ct->pos;
                cql_ordering *o = VPUSH(p, &ord, cql_ordering);
                o->column = ident(p);
                if (accept_kw(p, CQL_KW_DESC)) o->desc = true;
                else accept_kw(p, CQL_KW_ASC);
                uint32_t k = ord.n - 1;
                if (k >= t->nck || !str_eq(t->ck[k], o->column)) {
                    bool is_ck = false;
                    for (uint32_t j = 0; j < t->nck; j++) is_ck |= str_eq(t->ck[j], o->column);
                    fail(p, CQL_ERR_INVALID, cpos, is_ck ?
                         "The order of columns in the CLUSTERING ORDER directive must be the one of the clustering key (%s)" :
                         "Only clustering key columns can be defined in CLUSTERING ORDER directive (%s)",
                         o->column.s);
                }
            } while (accept(p, CQL_TK_COMMA));
            expect(p, CQL_TK_RPAREN);
        } else if (is_kw(tp, CQL_KW_COMPACT) && peek_kw(p, 1, CQL_KW_STORAGE)) {
            next(p);
            next(p);
            t->compact_storage = true;
        } else {
            property(p, &opts);
        }
    } while (accept_kw(p, CQL_KW_AND));
    check_properties(p, &opts);
    t->nopts = opts.n;
    t->opts = opts.v;
    t->norder = ord.n;
    t->order = ord.v;
}

static void parse_create(P *p, cql_stmt *st) {
    expect_kw(p, CQL_KW_CREATE);
    if (accept_keyspace(p)) {
        st->kind = CQL_STMT_CREATE_KEYSPACE;
        cql_keyspace_stmt *k = &st->u.keyspace;
        if_not_exists(p, &k->if_not_exists);
        k->name = ident(p);
        expect_kw(p, CQL_KW_WITH);
        properties(p, &k->nopts, &k->opts);
    } else if (accept_table(p)) {
        st->kind = CQL_STMT_CREATE_TABLE;
        cql_create_table *t = &st->u.create_table;
        if_not_exists(p, &t->if_not_exists);
        t->table = qname(p);
        table_body(p, t);
        if (accept_kw(p, CQL_KW_WITH)) table_options(p, t);
    } else {
        noviable(p, peek(p, 0));
    }
}

static void parse_alter(P *p, cql_stmt *st) {
    expect_kw(p, CQL_KW_ALTER);
    if (!accept_keyspace(p)) noviable(p, peek(p, 0));
    st->kind = CQL_STMT_ALTER_KEYSPACE;
    cql_keyspace_stmt *k = &st->u.keyspace;
    k->name = ident(p);
    expect_kw(p, CQL_KW_WITH);
    properties(p, &k->nopts, &k->opts);
}

static void parse_drop(P *p, cql_stmt *st) {
    expect_kw(p, CQL_KW_DROP);
    if (accept_keyspace(p)) {
        st->kind = CQL_STMT_DROP_KEYSPACE;
        if_exists(p, &st->u.keyspace.if_exists);
        st->u.keyspace.name = ident(p);
    } else if (accept_table(p)) {
        st->kind = CQL_STMT_DROP_TABLE;
        if_exists(p, &st->u.drop_table.if_exists);
        st->u.drop_table.table = qname(p);
    } else {
        noviable(p, peek(p, 0));
    }
}

/* ---- entry ------------------------------------------------------------------------------- */

static cql_stmt *parse_statement(P *p, vec *firsts) {
    cql_stmt *st = ZNEW(p, cql_stmt);
    const cql_tok *t = peek(p, 0);
    switch (t->kind == CQL_TK_IDENT ? t->kw : 0) {
    case CQL_KW_SELECT: parse_select(p, st); break;
    case CQL_KW_INSERT: parse_insert(p, st); break;
    case CQL_KW_UPDATE: parse_update(p, st); break;
    case CQL_KW_DELETE: parse_delete(p, st); break;
    case CQL_KW_BEGIN: parse_batch(p, st, firsts); break;
    case CQL_KW_USE:
        next(p);
        st->kind = CQL_STMT_USE;
        st->u.use = ident(p);
        break;
    case CQL_KW_CREATE: parse_create(p, st); break;
    case CQL_KW_ALTER: parse_alter(p, st); break;
    case CQL_KW_DROP: parse_drop(p, st); break;
    case CQL_KW_TRUNCATE:
        next(p);
        st->kind = CQL_STMT_TRUNCATE;
        accept_table(p);
        st->u.truncate.table = qname(p);
        break;
    default: noviable(p, t);
    }
    return st;
}

/* Separate from cql_parse so that no local of the caller is live across setjmp. */
static int parse_guarded(P *p, cql_stmt **out) {
    vec firsts = {0};
    if (setjmp(p->jb)) return p->rc;
    cql_stmt *st = parse_statement(p, &firsts);
    accept(p, CQL_TK_SEMI);
    const cql_tok *t = peek(p, 0);
    if (t->kind != CQL_TK_EOF) mismatched(p, t, "EOF");
    st->nbinds = p->binds.n;
    st->binds = p->binds.v;
    if (st->kind == CQL_STMT_BATCH) {
        for (uint32_t i = 0; i < st->u.batch.nstmts; i++) {
            cql_stmt *c = st->u.batch.stmts[i];
            c->binds = c->nbinds ? st->binds + ((uint32_t *)firsts.v)[i] : NULL;
        }
    }
    *out = st;
    return 0;
}

int cql_parse(const char *q, size_t len, st_arena *arena, cql_stmt **out, cql_parse_error *err) {
    P p;
    memset(&p, 0, sizeof p);
    if (err) memset(err, 0, sizeof *err);
    *out = NULL;
    if (len > UINT32_MAX - 8) {
        if (err) {
            err->code = CQL_ERR_INVALID;
            snprintf(err->msg, sizeof err->msg, "query too large (%zu bytes)", len);
        }
        return ILION_EINVALID;
    }
    if (!q) q = "";
    p.q = q;
    p.len = (uint32_t)len;
    p.a = arena;
    p.err = err;
    cql_lex_init(&p.lx, q, (uint32_t)len);
    return parse_guarded(&p, out);
}

const cql_term *cql_option_get(const cql_option *opts, uint32_t n, const char *name) {
    for (uint32_t i = 0; i < n; i++)
        if (strcmp(opts[i].name.s, name) == 0) return opts[i].value;
    return NULL;
}

const cql_term *cql_map_get(const cql_term *map, const char *key) {
    if (!map || map->kind != CQL_TERM_MAP) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->u.coll.n; i++) {
        const cql_term *k = map->u.coll.items[i];
        if (k->kind == CQL_TERM_STRING && k->text.len == kl && memcmp(k->text.s, key, kl) == 0)
            return map->u.coll.values[i];
    }
    return NULL;
}

const char *cql_stmt_kind_name(enum cql_stmt_kind k) {
    switch (k) {
    case CQL_STMT_SELECT: return "SELECT";
    case CQL_STMT_INSERT: return "INSERT";
    case CQL_STMT_UPDATE: return "UPDATE";
    case CQL_STMT_DELETE: return "DELETE";
    case CQL_STMT_BATCH: return "BATCH";
    case CQL_STMT_USE: return "USE";
    case CQL_STMT_CREATE_KEYSPACE: return "CREATE KEYSPACE";
    case CQL_STMT_ALTER_KEYSPACE: return "ALTER KEYSPACE";
    case CQL_STMT_DROP_KEYSPACE: return "DROP KEYSPACE";
    case CQL_STMT_CREATE_TABLE: return "CREATE TABLE";
    case CQL_STMT_DROP_TABLE: return "DROP TABLE";
    case CQL_STMT_TRUNCATE: return "TRUNCATE";
    }
    return "?";
}
