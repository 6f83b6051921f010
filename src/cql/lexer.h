/*
 * Private to the CQL parser: the tokenizer. It turns query bytes into tokens on demand
 * (no allocation); keywords are recognized case-insensitively and reported on identifier
 * tokens, so the parser decides where an unreserved keyword may serve as a name.
 * Pure functions; any thread.
 */
#ifndef ILION_CQL_LEXER_H
#define ILION_CQL_LEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cql_tk {
    CQL_TK_EOF,
    CQL_TK_ERROR,    /* lexical error: see err */
    CQL_TK_IDENT,    /* unquoted name or keyword (kw != 0) */
    CQL_TK_QIDENT,   /* "Quoted Name" */
    CQL_TK_STRING,   /* 'x' */
    CQL_TK_PGSTRING, /* $$x$$ */
    CQL_TK_INTEGER,  /* digits (no sign: '-' is its own token) */
    CQL_TK_FLOAT,    /* digits with '.' and/or exponent */
    CQL_TK_UUID,
    CQL_TK_HEX,      /* 0x... */
    CQL_TK_LPAREN, CQL_TK_RPAREN, CQL_TK_LBRACE, CQL_TK_RBRACE, CQL_TK_LBRACKET, CQL_TK_RBRACKET,
    CQL_TK_COMMA, CQL_TK_SEMI, CQL_TK_DOT, CQL_TK_STAR, CQL_TK_COLON, CQL_TK_QMARK,
    CQL_TK_EQ, CQL_TK_NE, CQL_TK_LT, CQL_TK_LE, CQL_TK_GT, CQL_TK_GE,
    CQL_TK_PLUS, CQL_TK_MINUS, CQL_TK_PLUSEQ, CQL_TK_MINUSEQ,
};

enum cql_lex_err {
    CQL_LEXERR_NONE,
    CQL_LEXERR_CHAR,        /* a byte no token starts with */
    CQL_LEXERR_STRING,      /* unterminated '...' */
    CQL_LEXERR_PGSTRING,    /* unterminated $$...$$ */
    CQL_LEXERR_QIDENT,      /* unterminated or empty "..." */
    CQL_LEXERR_COMMENT,     /* unterminated comment */
};

/* Keywords: name, spelling, reserved (cannot be used as an unquoted identifier). */
#define CQL_KEYWORDS(X)                                                      \
    X(ADD, "add", 1) X(ALL, "all", 0) X(ALLOW, "allow", 1) X(ALTER, "alter", 1) \
    X(AND, "and", 1) X(APPLY, "apply", 1) X(AS, "as", 0) X(ASC, "asc", 1)      \
    X(AUTHORIZE, "authorize", 1) X(BATCH, "batch", 1) X(BEGIN, "begin", 1)     \
    X(BY, "by", 1) X(CLUSTERING, "clustering", 0) X(COLUMNFAMILY, "columnfamily", 1) \
    X(COMPACT, "compact", 0) X(CONTAINS, "contains", 0) X(COUNT, "count", 0)   \
    X(COUNTER, "counter", 0) X(CREATE, "create", 1) X(DEFAULT, "default", 0)   \
    X(DELETE, "delete", 1) X(DESC, "desc", 1) X(DESCRIBE, "describe", 1)       \
    X(DISTINCT, "distinct", 0) X(DROP, "drop", 1) X(ENTRIES, "entries", 1)     \
    X(EXECUTE, "execute", 1) X(EXISTS, "exists", 0) X(FALSE, "false", 1)       \
    X(FILTERING, "filtering", 0) X(FROM, "from", 1) X(FROZEN, "frozen", 0)     \
    X(FULL, "full", 1) X(GRANT, "grant", 1) X(IF, "if", 1) X(IN, "in", 1)      \
    X(INDEX, "index", 1) X(INFINITY, "infinity", 1) X(INSERT, "insert", 1)     \
    X(INTO, "into", 1) X(IS, "is", 1) X(JSON, "json", 0) X(KEY, "key", 0)      \
    X(KEYS, "keys", 0) X(KEYSPACE, "keyspace", 1) X(LIKE, "like", 0)           \
    X(LIMIT, "limit", 1) X(LOGGED, "logged", 0) X(MATERIALIZED, "materialized", 1) \
    X(MODIFY, "modify", 1) X(NAN, "nan", 1) X(NORECURSIVE, "norecursive", 1)   \
    X(NOT, "not", 1) X(NULL, "null", 1) X(OF, "of", 1) X(ON, "on", 1)          \
    X(OR, "or", 1) X(ORDER, "order", 1) X(PARTITION, "partition", 0)           \
    X(PER, "per", 0) X(PRIMARY, "primary", 1) X(RENAME, "rename", 1)           \
    X(REPLACE, "replace", 1) X(REVOKE, "revoke", 1) X(SCHEMA, "schema", 1)     \
    X(SELECT, "select", 1) X(SET, "set", 1) X(STATIC, "static", 0)             \
    X(STORAGE, "storage", 0) X(TABLE, "table", 1) X(TIMESTAMP, "timestamp", 0) \
    X(TO, "to", 1) X(TOKEN, "token", 1) X(TRUE, "true", 1)                     \
    X(TRUNCATE, "truncate", 1) X(TTL, "ttl", 0) X(UNLOGGED, "unlogged", 1)     \
    X(UNSET, "unset", 1) X(UPDATE, "update", 1) X(USE, "use", 1)               \
    X(USING, "using", 1) X(VALUES, "values", 0) X(VIEW, "view", 1)             \
    X(WHERE, "where", 1) X(WITH, "with", 1) X(WRITETIME, "writetime", 0)

enum cql_kw {
    CQL_KW_NONE_ = 0,
#define CQL_KW_ENUM(name, text, res) CQL_KW_##name,
    CQL_KEYWORDS(CQL_KW_ENUM)
#undef CQL_KW_ENUM
    CQL_KW_COUNT_
};

typedef struct cql_tok {
    uint8_t kind;     /* enum cql_tk */
    uint8_t kw;       /* enum cql_kw for CQL_TK_IDENT, else 0 */
    uint8_t err;      /* enum cql_lex_err for CQL_TK_ERROR */
    uint32_t pos;     /* byte offset of the first byte */
    uint32_t len;     /* raw length in bytes (quotes included) */
} cql_tok;

typedef struct cql_lexer {
    const char *q;
    uint32_t len;
    uint32_t off;
} cql_lexer;

/* len must be <= UINT32_MAX (the parser checks). */
void cql_lex_init(cql_lexer *lx, const char *q, uint32_t len);
/* The next token; after EOF or ERROR keeps returning the same. */
void cql_lex_next(cql_lexer *lx, cql_tok *t);
bool cql_kw_reserved(unsigned kw);
const char *cql_kw_text(unsigned kw);   /* lower-case spelling */

#endif
