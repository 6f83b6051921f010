/* SELECT plan shared by stmt_select*.c and system_tables.c: the selection (what each result
 * column is) and filters evaluated row by row. Internal to cql/; the event loop only. */
#ifndef ILION_CQL_STMT_SELECT_PLAN_H
#define ILION_CQL_STMT_SELECT_PLAN_H

#include "exec_int.h"

enum selk { SELK_COL, SELK_WRITETIME, SELK_TTL, SELK_TOKEN, SELK_COUNT };

typedef struct selitem {
    enum selk kind;
    int col;               /* column index (SELK_COL, WRITETIME, TTL) */
} selitem;

typedef struct selection {
    uint32_t n;
    selitem *items;
    rs_col *cols;
    bool count;            /* count(*) / count(col): one bigint row */
} selection;

/* Builds the selection for t; answers errors and returns -1. */
int select_selection(exec_req *r, const schema_table *t, const cql_select *s, selection *out);

typedef struct filt {
    int col;
    enum cql_op op;
    exec_val v;
    uint32_t nin;
    exec_val *in;
} filt;

/* Converts one relation into a filter on column ci; answers errors and returns -1. */
int select_filter(exec_req *r, const schema_table *t, int ci, const cql_relation *w, filt *out);
/* Does value v (len -1: null) pass f? */
bool select_filter_match(const schema_table *t, const filt *f, const exec_val *v);

/* A planned SELECT on a user table and its progress (stmt_select_where.c plans it,
 * stmt_select.c runs it). Lives in the request arena. */
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
    uint32_t serial_round;      /* SERIAL: pks index + 1 whose Paxos round ran */
    int phase;                  /* scan: 0 resume read, 1 scan */
    result_set rs;
    int32_t now;
    exec_val *vals;             /* per column, for the current row */
    buf ckbuf;
    int err;                    /* 1 coord error in cerr, 2 corrupt key, 3 table dropped */
    uint64_t tid;
    coord_error cerr;
} sel;

/* Runs the planned SELECT in r->state: reads, filters, pages, answers. */
void select_run(exec_req *r);

/* LIMIT / PER PARTITION LIMIT values (UINT32_MAX: none); answers errors and returns -1. */
int select_limits(exec_req *r, const cql_select *s, uint32_t *limit, uint32_t *ppl);

#endif
