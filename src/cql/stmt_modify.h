/* Mutation building shared by stmt_modify.c (INSERT/UPDATE/DELETE/BATCH) and stmt_lwt.c
 * (conditional statements). Internal to cql/; the event loop only. */
#ifndef ILION_CQL_STMT_MODIFY_H
#define ILION_CQL_STMT_MODIFY_H

#include "exec_int.h"

typedef struct mut_list {
    st_partition **v;
    size_t n, cap;
} mut_list;

/* What a conditional statement needs besides its mutations (stmt_lwt.c). */
typedef struct lwt {
    const schema_table *t;
    uint64_t tid;            /* to look the table up again after asynchronous steps */
    const schema_keyspace *k;
    exec_val pk, ck;
    bool if_not_exists, if_exists;
    uint32_t nif;
    const cql_relation *ifs;
    exec_val *ifvals;        /* converted condition values (IN: first of each list) */
    exec_valist *ifin;
    mut_list ml;
    enum coord_write_type wt;
    bool applied;
    /* current row (for the not-applied answer) */
    exec_val *cur;           /* per column */
    bool row_exists;
} lwt;

int modify_ml_add(exec_req *r, mut_list *ml, st_partition *p);
/* Builds st's mutations into ml; with l non-NULL also records the single row a conditional
 * statement targets. Answers errors and returns -1. *tout: the table. */
int modify_build(exec_req *r, cql_stmt *st, mut_list *ml, lwt *l, const schema_table **tout);
bool modify_is_conditional(const cql_stmt *st);
/* Read, check the condition, write (stmt_lwt.c). */
void modify_run_conditional(exec_req *r, cql_stmt *st);

#endif
