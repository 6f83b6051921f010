/*
 * Executor internals shared by exec*.c, stmt_*.c, result*.c, system_tables*.c, prepared*.c and
 * schema_*.c. Everything here runs on the event loop.
 */
#ifndef ILION_CQL_EXEC_INT_H
#define ILION_CQL_EXEC_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "ilion/coord/coord.h"
#include "ilion/cql/ast.h"
#include "ilion/cql/exec.h"
#include "ilion/schema/schema.h"
#include "ilion/storage/engine.h"
#include "ilion/util/arena.h"
#include "ilion/util/buf.h"

/* CQL error codes. */
#define CQLE_SERVER 0x0000
#define CQLE_PROTOCOL 0x000A
#define CQLE_UNAVAILABLE 0x1000
#define CQLE_WRITE_TIMEOUT 0x1100
#define CQLE_READ_TIMEOUT 0x1200
#define CQLE_SYNTAX 0x2000
#define CQLE_INVALID 0x2200
#define CQLE_CONFIG 0x2300
#define CQLE_ALREADY_EXISTS 0x2400
#define CQLE_UNPREPARED 0x2500

/* Storage table ids below this are the engine's own (schema persistence). */
#define EXEC_SCHEMA_TABLE_ID 1u
#define EXEC_FIRST_USER_TABLE_ID 0x100u

typedef struct prepared_cache prepared_cache;
typedef struct prepared_stmt prepared_stmt;
struct cql_schema_sync;

struct cql_executor {
    uv_loop_t *loop;
    coord *coord;
    storage_engine *engine;
    struct cluster *cluster;
    struct paxos *paxos;         /* NULL: conditional statements read-then-write on the loop */
    schema_catalog *cat;
    prepared_cache *prepared;
    char cluster_name[128];
    char listen_address[64];
    char rpc_address[64];
    uint16_t native_port;
    char data_center[64];
    char rack[64];
    uint8_t host_id[16];
    int64_t *tokens;
    uint32_t ntokens;
    uint64_t requests;
    int64_t schema_ts;           /* newest schema change timestamp (strictly increasing) */
    uint64_t schema_gen;         /* bumped by every catalog change */
    int32_t generation;          /* start time, system.local gossip_generation */
    struct cql_schema_sync *sync; /* schema propagation (schema_sync.c); NULL on one node */
    struct exec_req *req_pool;   /* finished requests kept for reuse (exec_req_free) */
    uint32_t req_pool_n;
};

struct cql_session {
    cql_executor *x;
    char ks[SCHEMA_NAME_MAX];
};

/* One request in flight: owns its arena (parse tree, values) and answers through cb. The
 * arena starts on EXEC_REQ_INLINE bytes allocated with the request, so a typical statement
 * needs no further malloc; finished requests are pooled by the executor. */
#define EXEC_REQ_INLINE 3072
typedef struct exec_req {
    cql_executor *x;
    cql_session *s;              /* keyspace names resolve against (EXECUTE: the prepared one) */
    cql_session *conn;           /* the connection's session (USE changes it) */
    cql_done_cb cb;
    void *arg;
    st_arena arena;
    cql_query_params params;     /* copy; values point into the caller's frame */
    const cql_value *values;     /* bound values of the current statement */
    uint16_t nvalues;
    bool is_prepared_exec;
    int64_t batch_ts;            /* BATCH: default timestamp, or INT64_MIN */
    uint16_t cl;
    uint64_t schema_gen;         /* catalog generation the request's pointers belong to */
    void *state;                 /* statement-specific continuation state */
    prepared_stmt *prep;         /* EXECUTE: the cached statement, held until the reply */
    prepared_stmt **preps;       /* BATCH: held cached statements (arena array) */
    uint16_t npreps;
    struct exec_req *pool_next;  /* in x->req_pool */
} exec_req;

/* Releases a finished request (its arena and held prepared statements) to the pool. */
void exec_req_free(exec_req *r);

/* After an asynchronous step: the table a request works on, looked up again by id when the
 * catalog changed meanwhile (a concurrent DDL, or one learnt from a peer, may have freed the
 * old definition); NULL when the table is gone. */
const schema_table *exec_table_again(exec_req *r, uint64_t id, const schema_table *t);

/* --- responses (result.c) ------------------------------------------------------------- */
void exec_reply(exec_req *r, cql_response *resp);           /* hands to cb, frees r */
void exec_error(exec_req *r, uint32_t code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void exec_error_coord(exec_req *r, const coord_error *e);
/* A coord_write_cb for statements that answer Void: arg is the exec_req. */
void exec_reply_coord_done(void *arg, const coord_error *e);
void exec_error_already_exists(exec_req *r, const char *ks, const char *table);
void exec_reply_void(exec_req *r);
void exec_reply_set_keyspace(exec_req *r, const char *ks);
/* change: "CREATED"/"DROPPED"; target: "KEYSPACE"/"TABLE"; table may be NULL. */
void exec_reply_schema_change(exec_req *r, const char *change, const char *target,
                              const char *ks, const char *table);
/* Hands over a finished RESULT body. */
void exec_reply_body(exec_req *r, buf *body);
/* Hands over a finished ERROR body (code + message + extra fields). */
void exec_reply_error_buf(exec_req *r, buf *body);

/* Result set builder (Rows). Columns described once, then rows of cells. */
typedef struct rs_col {
    const char *name;
    schema_type type;
} rs_col;

typedef struct result_set {
    const char *ks, *table;
    uint32_t ncols;
    rs_col *cols;                /* arena */
    bool no_metadata;            /* skip_metadata asked for */
    buf rows;
    uint32_t nrows;
    const uint8_t *paging;       /* arena; NULL: last page */
    uint32_t paging_len;
} result_set;

void rs_init(result_set *rs, const char *ks, const char *table, uint32_t ncols, rs_col *cols);
void rs_cell(result_set *rs, const void *v, int32_t len);   /* len < 0: null */
void rs_row_done(result_set *rs);
/* Writes the metadata part of a Rows result (flags, count, [paging], [specs]). */
void rs_write_metadata(buf *b, const char *ks, const char *table, uint32_t ncols,
                       const rs_col *cols, bool no_metadata, const uint8_t *paging,
                       uint32_t paging_len);
void exec_reply_rows(exec_req *r, result_set *rs);           /* frees rs->rows */
/* Result columns of a SELECT (PREPARE); answers the error itself and returns -1. */
int stmt_select_metadata(exec_req *r, const schema_table *t, const cql_select *s, rs_col **cols,
                         uint32_t *ncols);
void rs_free(result_set *rs);

/* --- schema (schema_store.c, schema_system.c) ----------------------------------------- */
int schema_store_load(cql_executor *x);
int schema_store_save_keyspace(cql_executor *x, const schema_keyspace *k);
int schema_store_drop_keyspace(cql_executor *x, const char *ks);
int schema_store_save_table(cql_executor *x, const schema_table *t);
int schema_store_drop_table(cql_executor *x, const char *ks, const char *table);
/* Rebuilds the catalog in place from the schema table, e.g. after rows from another node were
 * applied to it (schema propagation): keyspaces and tables that appeared are added and their
 * storage opened, those gone are removed and their storage dropped, changed ones replaced.
 * cb (may be NULL) hears each change ("CREATED"/"UPDATED"/"DROPPED", "KEYSPACE"/"TABLE",
 * ks, table or NULL). Unchanged definitions keep their addresses. Recomputes the version. */
typedef void (*schema_change_cb)(void *arg, const char *change, const char *target,
                                 const char *ks, const char *table);
int schema_store_reload(cql_executor *x, schema_change_cb cb, void *arg);
/* Appends a SCHEMA_CHANGE EVENT body (event type string first) to out. */
void exec_schema_event_body(buf *out, const char *change, const char *target, const char *ks,
                            const char *table);
/* Adds the virtual system and system_schema keyspaces to the catalog. */
int schema_system_define(schema_catalog *c);
/* Refreshes the schema version after a change (and tells the cluster). */
void exec_schema_changed(cql_executor *x);
/* Pushes a local schema change to the live peers (schema_sync.c); no-op while merging. */
void schema_sync_local_change(struct cql_schema_sync *s);
void exec_table_storage_options(const schema_table *t, storage_table_options *o);

/* --- statements ----------------------------------------------------------------------- */
/* Runs a parsed statement; answers through r. */
void exec_stmt(exec_req *r, cql_stmt *st);
void stmt_ddl(exec_req *r, cql_stmt *st);
void stmt_select(exec_req *r, cql_stmt *st);
void stmt_modify(exec_req *r, cql_stmt *st);
void stmt_batch(exec_req *r, cql_stmt **stmts, uint32_t n, uint8_t type);
/* Virtual (system) table SELECT. */
void system_tables_select(exec_req *r, const schema_table *t, const cql_select *sel);

/* Resolves a table name against the session keyspace; answers the error itself and returns
 * NULL when it does not exist. */
schema_table *exec_table(exec_req *r, const cql_qname *q);
const char *exec_ks_name(exec_req *r, const cql_qname *q); /* NULL after answering an error */
/* The keyspace of a table exec_table returned (remembered for prepared statements). */
const schema_keyspace *exec_table_keyspace(exec_req *r, const schema_table *t);

static inline bool exec_has_static(const schema_table *t) {
    for (uint16_t i = (uint16_t)(t->npk + t->nck); i < t->ncols; i++)
        if (t->cols[i].kind == SCHEMA_COL_STATIC) return true;
    return false;
}

/* --- values (stmt_values.c) ----------------------------------------------------------- */
/* A resolved value: data/len with len -1 null, -2 unset. */
typedef struct exec_val {
    const uint8_t *data;
    int32_t len;
} exec_val;

/* Several values of one column (EQ: one, IN: many). */
typedef struct exec_valist {
    uint32_t n;
    exec_val *v;
} exec_valist;

/* Values one WHERE relation (EQ or IN) gives column c; answers errors and returns -1. */
int exec_relation_values(exec_req *r, const schema_column *c, const cql_relation *w,
                         exec_valist *out);

/* Converts a term to a value of type t (literal, bind, null, function). On error answers r
 * (Invalid) and returns -1. `what` names the column for messages. */
int exec_term_value(exec_req *r, const cql_term *term, const schema_type *t, const char *what,
                    exec_val *out);
/* An int-valued term (LIMIT, TTL) / bigint (TIMESTAMP). -1 after answering an error. */
int exec_term_int(exec_req *r, const cql_term *term, const char *what, int64_t lo, int64_t hi,
                  int64_t *out);
/* Bind metadata type for a bind marker (PREPARE). */
bool exec_bind_type(const schema_table *t, const cql_bind *b, schema_type *out,
                    const char **name);

/* --- prepared statements (prepared.c) ------------------------------------------------- */
prepared_cache *prepared_cache_new(void);
void prepared_cache_free(prepared_cache *c);
void prepared_id(const char *ks, const char *q, size_t len, uint8_t id[16]);
int prepared_put(prepared_cache *c, const uint8_t id[16], const char *ks, const char *q,
                 size_t len);
/* Forgets every statement: after a table or keyspace is dropped, statements prepared against
 * it must not run against a new table of the same name with other columns; clients get
 * Unprepared and prepare again, learning the new metadata. */
void prepared_clear(prepared_cache *c);
/* Looks up; *q points into the cache (valid until the next put). */
bool prepared_get(prepared_cache *c, const uint8_t *id, size_t idlen, const char **ks,
                  const char **q, size_t *len);
/* Looks up an entry, or NULL. Borrowed: valid until the next put or clear, or for as long as
 * the caller holds a reference (prepared_ref, released with prepared_unref). */
prepared_stmt *prepared_find(prepared_cache *c, const uint8_t *id, size_t idlen);
void prepared_ref(prepared_stmt *e);
void prepared_unref(prepared_stmt *e);       /* NULL is a no-op */
const char *prepared_query(const prepared_stmt *e, size_t *len);
/* The session (keyspace it was prepared in) names resolve against; lives in the entry. */
cql_session *prepared_session(prepared_stmt *e, cql_executor *x);
/* The parsed statement, shared by every request running it: read-only. NULL when the cache
 * could not parse it (out of memory): parse prepared_query instead. */
cql_stmt *prepared_parsed(prepared_stmt *e);
/* The table (and its keyspace) the name q of the cached tree resolved to at catalog generation
 * gen, or NULL when not remembered for that name and generation. */
schema_table *prepared_table(const prepared_stmt *e, const void *q, uint64_t gen,
                             const schema_keyspace **k);
void prepared_table_remember(prepared_stmt *e, const void *q, uint64_t gen, schema_table *t,
                             const schema_keyspace *k);
/* The remembered keyspace of t at generation gen, or NULL. */
const schema_keyspace *prepared_table_keyspace(const prepared_stmt *e, const schema_table *t,
                                               uint64_t gen);

/* --- paging state (stmt_select.c) ----------------------------------------------------- */
typedef struct page_pos {
    uint32_t index;              /* IN-list partition index, or virtual row offset */
    const uint8_t *pk;           /* last partition touched (scan/IN); NULL at start */
    uint32_t pklen;
    const uint8_t *ck;           /* last row returned in that partition; NULL: none */
    uint32_t cklen;
    uint32_t remaining;          /* LIMIT rows left, UINT32_MAX: no limit */
    uint32_t ppl_done;           /* rows returned from partition pk so far */
    bool in_partition;           /* resume inside pk after ck */
} page_pos;

void page_pos_encode(const page_pos *p, buf *out);
int page_pos_decode(const uint8_t *d, size_t n, page_pos *p);

#endif
