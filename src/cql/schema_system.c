/* Definitions of the virtual system tables (system.local, system.peers, system.peers_v2,
 * system_schema.*) with the column types stock drivers check (notes/driver-compat.md). Their
 * rows come from live state in system_tables.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/schema/md5.h"

typedef struct col_spec {
    const char *name;
    const char *type;
    char kind; /* 'p' partition key, 'c' clustering, 'r' regular */
} col_spec;

#define END {NULL, NULL, 0}

static const col_spec local_cols[] = {
    {"key", "text", 'p'}, {"bootstrapped", "text", 'r'}, {"broadcast_address", "inet", 'r'},
    {"broadcast_port", "int", 'r'}, {"cluster_name", "text", 'r'}, {"cql_version", "text", 'r'},
    {"data_center", "text", 'r'}, {"gossip_generation", "int", 'r'}, {"host_id", "uuid", 'r'},
    {"listen_address", "inet", 'r'}, {"listen_port", "int", 'r'},
    {"native_protocol_version", "text", 'r'}, {"partitioner", "text", 'r'}, {"rack", "text", 'r'},
    {"release_version", "text", 'r'}, {"rpc_address", "inet", 'r'}, {"rpc_port", "int", 'r'},
    {"schema_version", "uuid", 'r'}, {"tokens", "set<text>", 'r'}, END};

static const col_spec peers_cols[] = {
    {"peer", "inet", 'p'}, {"data_center", "text", 'r'}, {"host_id", "uuid", 'r'},
    {"preferred_ip", "inet", 'r'}, {"rack", "text", 'r'}, {"release_version", "text", 'r'},
    {"rpc_address", "inet", 'r'}, {"schema_version", "uuid", 'r'}, {"tokens", "set<text>", 'r'},
    END};

static const col_spec peers_v2_cols[] = {
    {"peer", "inet", 'p'}, {"peer_port", "int", 'c'}, {"data_center", "text", 'r'},
    {"host_id", "uuid", 'r'}, {"native_address", "inet", 'r'}, {"native_port", "int", 'r'},
    {"preferred_ip", "inet", 'r'}, {"preferred_port", "int", 'r'}, {"rack", "text", 'r'},
    {"release_version", "text", 'r'}, {"schema_version", "uuid", 'r'},
    {"tokens", "set<text>", 'r'}, END};

static const col_spec keyspaces_cols[] = {
    {"keyspace_name", "text", 'p'}, {"durable_writes", "boolean", 'r'},
    {"replication", "frozen<map<text, text>>", 'r'}, END};

static const col_spec tables_cols[] = {
    {"keyspace_name", "text", 'p'}, {"table_name", "text", 'c'},
    {"bloom_filter_fp_chance", "double", 'r'}, {"caching", "frozen<map<text, text>>", 'r'},
    {"cdc", "boolean", 'r'}, {"comment", "text", 'r'},
    {"compaction", "frozen<map<text, text>>", 'r'}, {"compression", "frozen<map<text, text>>", 'r'},
    {"crc_check_chance", "double", 'r'}, {"dclocal_read_repair_chance", "double", 'r'},
    {"default_time_to_live", "int", 'r'}, {"extensions", "frozen<map<text, blob>>", 'r'},
    {"flags", "frozen<set<text>>", 'r'}, {"gc_grace_seconds", "int", 'r'}, {"id", "uuid", 'r'},
    {"max_index_interval", "int", 'r'}, {"memtable_flush_period_in_ms", "int", 'r'},
    {"min_index_interval", "int", 'r'}, {"read_repair_chance", "double", 'r'},
    {"speculative_retry", "text", 'r'}, END};

static const col_spec columns_cols[] = {
    {"keyspace_name", "text", 'p'}, {"table_name", "text", 'c'}, {"column_name", "text", 'c'},
    {"clustering_order", "text", 'r'}, {"column_name_bytes", "blob", 'r'}, {"kind", "text", 'r'},
    {"position", "int", 'r'}, {"type", "text", 'r'}, END};

static const col_spec types_cols[] = {
    {"keyspace_name", "text", 'p'}, {"type_name", "text", 'c'},
    {"field_names", "frozen<list<text>>", 'r'}, {"field_types", "frozen<list<text>>", 'r'}, END};

static const col_spec functions_cols[] = {
    {"keyspace_name", "text", 'p'}, {"function_name", "text", 'c'},
    {"argument_types", "frozen<list<text>>", 'c'}, {"argument_names", "frozen<list<text>>", 'r'},
    {"body", "text", 'r'}, {"called_on_null_input", "boolean", 'r'}, {"language", "text", 'r'},
    {"return_type", "text", 'r'}, END};

static const col_spec aggregates_cols[] = {
    {"keyspace_name", "text", 'p'}, {"aggregate_name", "text", 'c'},
    {"argument_types", "frozen<list<text>>", 'c'}, {"final_func", "text", 'r'},
    {"initcond", "text", 'r'}, {"return_type", "text", 'r'}, {"state_func", "text", 'r'},
    {"state_type", "text", 'r'}, END};

static const col_spec triggers_cols[] = {
    {"keyspace_name", "text", 'p'}, {"table_name", "text", 'c'}, {"trigger_name", "text", 'c'},
    {"options", "frozen<map<text, text>>", 'r'}, END};

static const col_spec indexes_cols[] = {
    {"keyspace_name", "text", 'p'}, {"table_name", "text", 'c'}, {"index_name", "text", 'c'},
    {"kind", "text", 'r'}, {"options", "frozen<map<text, text>>", 'r'}, END};

static const col_spec views_cols[] = {
    {"keyspace_name", "text", 'p'}, {"view_name", "text", 'c'}, {"base_table_id", "uuid", 'r'},
    {"base_table_name", "text", 'r'}, {"bloom_filter_fp_chance", "double", 'r'},
    {"caching", "frozen<map<text, text>>", 'r'}, {"comment", "text", 'r'},
    {"compaction", "frozen<map<text, text>>", 'r'}, {"compression", "frozen<map<text, text>>", 'r'},
    {"crc_check_chance", "double", 'r'}, {"default_time_to_live", "int", 'r'},
    {"gc_grace_seconds", "int", 'r'}, {"id", "uuid", 'r'}, {"include_all_columns", "boolean", 'r'},
    {"speculative_retry", "text", 'r'}, {"where_clause", "text", 'r'}, END};

static const col_spec dropped_cols[] = {
    {"keyspace_name", "text", 'p'}, {"table_name", "text", 'c'}, {"column_name", "text", 'c'},
    {"dropped_time", "timestamp", 'r'}, {"kind", "text", 'r'}, {"type", "text", 'r'}, END};

static const struct {
    const char *ks, *name;
    const col_spec *cols;
} system_tables[] = {
    {"system", "local", local_cols},
    {"system", "peers", peers_cols},
    {"system", "peers_v2", peers_v2_cols},
    {"system_schema", "keyspaces", keyspaces_cols},
    {"system_schema", "tables", tables_cols},
    {"system_schema", "columns", columns_cols},
    {"system_schema", "types", types_cols},
    {"system_schema", "functions", functions_cols},
    {"system_schema", "aggregates", aggregates_cols},
    {"system_schema", "triggers", triggers_cols},
    {"system_schema", "indexes", indexes_cols},
    {"system_schema", "views", views_cols},
    {"system_schema", "dropped_columns", dropped_cols},
};

static schema_table *define(const char *ks, const char *name, const col_spec *spec) {
    uint16_t n = 0;
    while (spec[n].name) n++;
    schema_table *t = schema_table_alloc(n);
    if (!t) return NULL;
    snprintf(t->ks, sizeof t->ks, "%s", ks);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->is_virtual = true;
    char full[160];
    snprintf(full, sizeof full, "%s.%s", ks, name);
    schema_uuid_v3(full, strlen(full), t->uuid);
    t->params.gc_grace_seconds = 0;
    uint16_t pkpos = 0, ckpos = 0;
    for (uint16_t i = 0; i < n; i++) {
        schema_column *c = &t->cols[i];
        snprintf(c->name, sizeof c->name, "%s", spec[i].name);
        c->id = i;
        if (schema_type_parse(spec[i].type, strlen(spec[i].type), &c->type)) {
            schema_table_free(t);
            return NULL;
        }
        if (spec[i].kind == 'p') {
            c->kind = SCHEMA_COL_PARTITION_KEY;
            c->position = pkpos++;
        } else if (spec[i].kind == 'c') {
            c->kind = SCHEMA_COL_CLUSTERING;
            c->position = ckpos++;
        } else {
            c->kind = SCHEMA_COL_REGULAR;
        }
    }
    t->npk = pkpos;
    t->nck = ckpos;
    return t;
}

int schema_system_define(schema_catalog *c) {
    const char *kss[] = {"system", "system_schema"};
    for (size_t i = 0; i < 2; i++) {
        schema_keyspace *k = calloc(1, sizeof *k);
        if (!k) return -ENOMEM;
        snprintf(k->name, sizeof k->name, "%s", kss[i]);
        k->durable_writes = true;
        k->is_system = true;
        k->repl.cls = SCHEMA_REPL_LOCAL;
        int rc = schema_keyspace_add(c, k);
        if (rc) {
            schema_keyspace_free(k);
            return rc;
        }
    }
    for (size_t i = 0; i < sizeof system_tables / sizeof system_tables[0]; i++) {
        schema_table *t = define(system_tables[i].ks, system_tables[i].name, system_tables[i].cols);
        if (!t) return -ENOMEM;
        int rc = schema_table_add(c, t);
        if (rc) {
            schema_table_free(t);
            return rc;
        }
    }
    return 0;
}
