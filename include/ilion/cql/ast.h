/*
 * The CQL language front end: a hand-written tokenizer and recursive-descent parser that turn
 * one CQL statement (the text of a QUERY, PREPARE or BATCH entry) into the syntax tree below.
 * The parser checks syntax only; names are not resolved against the schema (the executor
 * does that), except for what the grammar itself decides (e.g. INSERT column/value counts).
 *
 * Memory: every node, string and array of a parsed statement lives in the caller's arena;
 * nothing else is allocated, nothing needs freeing but the arena. Strings in the tree are
 * NUL-terminated copies (identifiers already case-folded, string literals already unescaped),
 * so the tree does not point into the query text and outlives it.
 *
 * Threads: pure functions over caller-owned memory; any thread (the event loop in practice).
 * Accepted grammar: docs/cql.md.
 */
#ifndef ILION_CQL_AST_H
#define ILION_CQL_AST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/util/arena.h"

/* A NUL-terminated arena string with its length (len excludes the NUL). String literals may
 * contain NUL bytes, so use len for them. s == NULL means "absent". */
typedef struct cql_str {
    const char *s;
    uint32_t len;
} cql_str;

/* ---- types (CREATE TABLE column types) ---------------------------------------------------
 * kind is the native protocol type option id, so the executor can write metadata directly.
 * text and varchar are the same type (0x0D); `is_text` remembers which was written. */
enum cql_type_kind {
    CQL_TYPE_CUSTOM = 0x00,
    CQL_TYPE_ASCII = 0x01,
    CQL_TYPE_BIGINT = 0x02,
    CQL_TYPE_BLOB = 0x03,
    CQL_TYPE_BOOLEAN = 0x04,
    CQL_TYPE_COUNTER = 0x05,
    CQL_TYPE_DECIMAL = 0x06,
    CQL_TYPE_DOUBLE = 0x07,
    CQL_TYPE_FLOAT = 0x08,
    CQL_TYPE_INT = 0x09,
    CQL_TYPE_TIMESTAMP = 0x0B,
    CQL_TYPE_UUID = 0x0C,
    CQL_TYPE_VARCHAR = 0x0D,
    CQL_TYPE_VARINT = 0x0E,
    CQL_TYPE_TIMEUUID = 0x0F,
    CQL_TYPE_INET = 0x10,
    CQL_TYPE_DATE = 0x11,
    CQL_TYPE_TIME = 0x12,
    CQL_TYPE_SMALLINT = 0x13,
    CQL_TYPE_TINYINT = 0x14,
    CQL_TYPE_DURATION = 0x15,
    CQL_TYPE_LIST = 0x20,
    CQL_TYPE_MAP = 0x21,
    CQL_TYPE_SET = 0x22,
    CQL_TYPE_UDT = 0x30,   /* a user type name we do not know: `name` holds it */
    CQL_TYPE_TUPLE = 0x31,
};

typedef struct cql_type {
    enum cql_type_kind kind;
    bool frozen;                 /* written inside frozen<...> */
    bool is_text;                /* VARCHAR written as `text` */
    uint32_t nparams;            /* list/set: 1, map: 2 (key, value), tuple: n, else 0 */
    struct cql_type **params;
    cql_str name;                /* UDT / custom ('...') type name, else absent */
} cql_type;

/* ---- terms (values in the statement) ------------------------------------------------------ */
enum cql_term_kind {
    CQL_TERM_STRING,     /* 'text' or $$text$$: text = unescaped contents */
    CQL_TERM_INTEGER,    /* -?[0-9]+: text = digits as written (with '-'), i = value if !overflow */
    CQL_TERM_FLOAT,      /* 1.5, -2e10: text as written, f = value */
    CQL_TERM_NAN,        /* NaN: f = NAN */
    CQL_TERM_INFINITY,   /* Infinity / -Infinity: f = +-INFINITY */
    CQL_TERM_BOOL,       /* true / false: b */
    CQL_TERM_UUID,       /* 8-4-4-4-12 hex: uuid (16 bytes), text as written */
    CQL_TERM_BLOB,       /* 0x..: blob (decoded bytes), text = the hex digits */
    CQL_TERM_NULL,       /* null */
    CQL_TERM_BIND,       /* ? or :name: bind (index into the statement's binds) */
    CQL_TERM_FUNC,       /* now(), uuid(), toTimestamp(now()), token(...), ...: func */
    CQL_TERM_LIST,       /* [a, b]: coll.items */
    CQL_TERM_SET,        /* {a, b}: coll.items ({} alone is an empty MAP, as in Cassandra) */
    CQL_TERM_MAP,        /* {k: v, ...}: coll.items = keys, coll.values = values */
    CQL_TERM_TUPLE,      /* (a, b) as a value: coll.items */
};

typedef struct cql_term {
    enum cql_term_kind kind;
    uint32_t pos;                /* byte offset of the term in the query text */
    cql_str text;                /* see the kinds above; absent for non-literals */
    union {
        struct { int64_t v; bool overflow; } i;      /* overflow: does not fit int64 (varint) */
        double f;
        bool b;
        uint8_t uuid[16];
        struct { const uint8_t *data; uint32_t len; } blob;
        struct { uint32_t index; cql_str name; } bind; /* name absent for `?` */
        struct {
            cql_str name;                            /* lower-cased unless quoted */
            bool star;                               /* count(*) */
            uint32_t nargs;
            struct cql_term **args;
        } func;
        struct {
            uint32_t n;
            struct cql_term **items;
            struct cql_term **values;                /* maps only */
        } coll;
    } u;
} cql_term;

/* ---- bind markers -------------------------------------------------------------------------
 * Every `?` / `:name` in the statement, in order of appearance (positional numbering), with
 * what it binds to, so PREPARE can describe the variables. In a BATCH the numbering runs across
 * all child statements; each child's binds points into the batch's array. */
enum cql_bind_role {
    CQL_BIND_VALUE,          /* a value of `column` (INSERT value, SET a = ?, WHERE a = ?, IF a = ?) */
    CQL_BIND_IN_LIST,        /* `column IN ?`: a list of the column's type
                                ((c1, c2) IN ?: column absent, a list of tuples) */
    CQL_BIND_ELEMENT,        /* SET m[k] = ? / IF m[k] = ?: an element value of collection `column` */
    CQL_BIND_KEY,            /* m[?] (SET, DELETE, IF): a key/index of collection `column` */
    CQL_BIND_TOKEN,          /* token(a, b) > ?: bigint "partition key token" */
    CQL_BIND_TTL,            /* USING TTL ?: int "[ttl]" */
    CQL_BIND_TIMESTAMP,      /* USING TIMESTAMP ?: bigint "[timestamp]" */
    CQL_BIND_LIMIT,          /* LIMIT ?: int "[limit]" */
    CQL_BIND_PER_PARTITION_LIMIT, /* PER PARTITION LIMIT ?: int "[per_partition_limit]" */
    CQL_BIND_FUNC_ARG,       /* an argument of a function call: `column` is the column the
                                call's result is compared with / assigned to (may be absent) */
    CQL_BIND_OTHER,          /* anywhere else: collection literal items (column = the column
                                the literal is for), (c1, c2) > ? (column absent), selectors,
                                CONTAINS values */
};

typedef struct cql_bind {
    enum cql_bind_role role;
    cql_str name;            /* :name (lower-cased unless quoted), absent for `?` */
    cql_str column;          /* the column it binds to (see roles), may be absent */
    cql_term *term;          /* the CQL_TERM_BIND node */
} cql_bind;

/* ---- names ------------------------------------------------------------------------------- */
typedef struct cql_qname {
    cql_str ks;              /* absent: the session's keyspace */
    cql_str name;
} cql_qname;

/* ---- WHERE relations and IF conditions ----------------------------------------------------- */
enum cql_op {
    CQL_OP_EQ, CQL_OP_NE, CQL_OP_LT, CQL_OP_LE, CQL_OP_GT, CQL_OP_GE,
    CQL_OP_IN, CQL_OP_CONTAINS, CQL_OP_CONTAINS_KEY, CQL_OP_LIKE,
};

enum cql_lhs_kind {
    CQL_LHS_COLUMN,          /* col op term (or col[elem] op term in IF conditions) */
    CQL_LHS_TOKEN,           /* token(c1, c2, ...) op term: cols */
    CQL_LHS_TUPLE,           /* (c1, c2) op (v1, v2) / IN ((..), (..)) / op ?: cols */
};

typedef struct cql_relation {
    enum cql_lhs_kind lhs;
    cql_str column;          /* CQL_LHS_COLUMN */
    cql_term *elem;          /* IF m[k] = v: the k term, else NULL */
    uint32_t ncols;          /* CQL_LHS_TOKEN / CQL_LHS_TUPLE */
    cql_str *cols;
    enum cql_op op;
    cql_term *value;         /* the right side; for IN: NULL when `in` is used, or a bind (IN ?) */
    uint32_t nin;            /* IN (t1, t2, ...): may be 0 for IN () */
    cql_term **in;
    uint32_t pos;            /* byte offset of the relation */
} cql_relation;

/* ---- SELECT ----------------------------------------------------------------------------- */
enum cql_sel_kind {
    CQL_SEL_COLUMN,          /* column */
    CQL_SEL_WRITETIME,       /* writetime(column) */
    CQL_SEL_TTL,             /* ttl(column) */
    CQL_SEL_TOKEN,           /* token(c1, ...): args are CQL_SEL_COLUMN selectors */
    CQL_SEL_COUNT,           /* count(*) / count(1) (column absent) or count(column) */
    CQL_SEL_FUNC,            /* any other function: name, args */
    CQL_SEL_TERM,            /* a literal or bind used as a selector: term */
};

typedef struct cql_selector {
    enum cql_sel_kind kind;
    cql_str column;          /* COLUMN, WRITETIME, TTL, COUNT(col) */
    cql_str func;            /* FUNC (lower-cased unless quoted); also "token"/"count"/... */
    uint32_t nargs;          /* TOKEN, FUNC */
    struct cql_selector **args;
    cql_term *term;          /* TERM */
    cql_str alias;           /* AS alias, absent when none */
    cql_str text;            /* the selector as written, for the result column name when no
                                alias ("count", "writetime(v)", "system.token(k)" are the
                                executor's business; this is the raw source text) */
} cql_selector;

typedef struct cql_ordering {
    cql_str column;
    bool desc;
} cql_ordering;

typedef struct cql_select {
    cql_qname table;
    bool distinct;
    bool json;               /* SELECT JSON ... (parsed; executor may refuse) */
    bool star;               /* SELECT *: nsel == 0 */
    uint32_t nsel;
    cql_selector *sel;
    uint32_t nwhere;
    cql_relation *where;
    uint32_t norder;
    cql_ordering *order;
    cql_term *per_partition_limit; /* NULL when absent; integer or bind */
    cql_term *limit;               /* NULL when absent; integer or bind */
    bool allow_filtering;
} cql_select;

/* ---- modifications ----------------------------------------------------------------------- */
typedef struct cql_using {
    cql_term *ttl;           /* NULL when absent; integer or bind */
    cql_term *timestamp;     /* NULL when absent; integer or bind */
} cql_using;

typedef struct cql_insert {
    cql_qname table;
    uint32_t ncols;          /* == number of values (checked by the parser) */
    cql_str *cols;
    cql_term **values;
    bool json;               /* INSERT INTO t JSON '...': values[0] is the JSON term, ncols 0 */
    bool if_not_exists;
    cql_using using;
} cql_insert;

enum cql_assign_op {
    CQL_ASSIGN_SET,          /* c = v */
    CQL_ASSIGN_ADD,          /* c = c + v, c += v (counters, collections) */
    CQL_ASSIGN_SUB,          /* c = c - v, c -= v */
    CQL_ASSIGN_PREPEND,      /* c = v + c (lists) */
    CQL_ASSIGN_ELEM,         /* c[k] = v: key */
};

typedef struct cql_assignment {
    cql_str column;
    enum cql_assign_op op;
    cql_term *key;           /* CQL_ASSIGN_ELEM */
    cql_term *value;
} cql_assignment;

typedef struct cql_update {
    cql_qname table;
    cql_using using;
    uint32_t nset;
    cql_assignment *set;
    uint32_t nwhere;
    cql_relation *where;
    bool if_exists;
    uint32_t nif;            /* IF c = v AND ... (nif > 0 excludes if_exists) */
    cql_relation *ifs;
} cql_update;

typedef struct cql_deletion {
    cql_str column;
    cql_term *elem;          /* DELETE m[k] ...: k, else NULL */
} cql_deletion;

typedef struct cql_delete {
    cql_qname table;
    uint32_t ncols;          /* 0: the whole row(s) */
    cql_deletion *cols;
    cql_using using;         /* only timestamp is allowed (TTL is a syntax error) */
    uint32_t nwhere;
    cql_relation *where;
    bool if_exists;
    uint32_t nif;
    cql_relation *ifs;
} cql_delete;

enum cql_batch_type { CQL_BATCH_LOGGED = 0, CQL_BATCH_UNLOGGED = 1, CQL_BATCH_COUNTER = 2 };

struct cql_stmt;
typedef struct cql_batch_stmt {
    enum cql_batch_type type;   /* same numbering as the BATCH frame */
    cql_using using;            /* USING TIMESTAMP only */
    uint32_t nstmts;            /* INSERT / UPDATE / DELETE only */
    struct cql_stmt **stmts;
} cql_batch_stmt;

/* ---- DDL --------------------------------------------------------------------------------- */
/* WITH name = value AND ...: every option kept generically, in order; value is a term
 * (string, number, boolean, map). Look them up with cql_option_get. */
typedef struct cql_option {
    cql_str name;               /* lower-cased */
    cql_term *value;
    uint32_t pos;
} cql_option;

typedef struct cql_keyspace_stmt {  /* CREATE / ALTER / DROP KEYSPACE */
    cql_str name;
    bool if_not_exists;         /* CREATE ... IF NOT EXISTS */
    bool if_exists;             /* DROP ... IF EXISTS */
    uint32_t nopts;             /* replication = {...}, durable_writes = bool */
    cql_option *opts;
} cql_keyspace_stmt;

typedef struct cql_column_def {
    cql_str name;
    cql_type *type;
    bool is_static;
} cql_column_def;

typedef struct cql_create_table {
    cql_qname table;
    bool if_not_exists;
    uint32_t ncols;
    cql_column_def *cols;
    uint32_t npk;               /* partition key columns, in order (>= 1, checked) */
    cql_str *pk;
    uint32_t nck;               /* clustering columns, in order */
    cql_str *ck;
    uint32_t norder;            /* WITH CLUSTERING ORDER BY (c DESC, ...) */
    cql_ordering *order;
    bool compact_storage;
    uint32_t nopts;             /* every other WITH option */
    cql_option *opts;
} cql_create_table;

typedef struct cql_table_ref {  /* DROP TABLE [IF EXISTS] t, TRUNCATE [TABLE] t */
    cql_qname table;
    bool if_exists;
} cql_table_ref;

/* ---- the statement ----------------------------------------------------------------------- */
enum cql_stmt_kind {
    CQL_STMT_SELECT,
    CQL_STMT_INSERT,
    CQL_STMT_UPDATE,
    CQL_STMT_DELETE,
    CQL_STMT_BATCH,
    CQL_STMT_USE,
    CQL_STMT_CREATE_KEYSPACE,
    CQL_STMT_ALTER_KEYSPACE,
    CQL_STMT_DROP_KEYSPACE,
    CQL_STMT_CREATE_TABLE,
    CQL_STMT_DROP_TABLE,
    CQL_STMT_TRUNCATE,
};

typedef struct cql_stmt {
    enum cql_stmt_kind kind;
    uint32_t nbinds;            /* bind markers of this statement, in order */
    cql_bind *binds;
    union {
        cql_select select;
        cql_insert insert;
        cql_update update;
        cql_delete del;
        cql_batch_stmt batch;
        cql_str use;            /* USE ks */
        cql_keyspace_stmt keyspace;
        cql_create_table create_table;
        cql_table_ref drop_table;
        cql_table_ref truncate;
    } u;
} cql_stmt;

/* ---- parsing ----------------------------------------------------------------------------- */
/* Error codes are native protocol error codes, so the executor can answer directly. */
#define CQL_ERR_SYNTAX 0x2000
#define CQL_ERR_INVALID 0x2200

typedef struct cql_parse_error {
    uint32_t code;              /* CQL_ERR_SYNTAX or CQL_ERR_INVALID */
    uint32_t pos;               /* byte offset of the offending token */
    uint32_t line;              /* 1-based */
    uint32_t col;               /* 0-based character position in the line, as Cassandra */
    char msg[256];              /* "line 1:9 mismatched input 'FORM' expecting FROM", ... */
} cql_parse_error;

/* Deepest nesting of collections, function calls, tuples and types the parser accepts. */
#define CQL_MAX_DEPTH 32

/* Parses exactly one statement (an optional trailing ';', comments and whitespace allowed).
 * 0: *out set, allocated in `arena`. ILION_EINVALID: a syntax or grammar error described in
 * *err (err may be NULL). -ENOMEM: the arena ran out. Never reads outside q[0..len), q need
 * not be NUL-terminated, any bytes are accepted as input. */
int cql_parse(const char *q, size_t len, st_arena *arena, cql_stmt **out, cql_parse_error *err);

/* The value of option `name` (lower-case), or NULL. */
const cql_term *cql_option_get(const cql_option *opts, uint32_t n, const char *name);
/* In a CQL_TERM_MAP with string keys, the value for key `key` (exact match), or NULL. */
const cql_term *cql_map_get(const cql_term *map, const char *key);
/* "SELECT", "INSERT", ...: for logs and errors. Static storage. */
const char *cql_stmt_kind_name(enum cql_stmt_kind k);

#endif
