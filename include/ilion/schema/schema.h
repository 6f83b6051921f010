/*
 * Keyspace and table definitions and the in-memory catalog that holds them: columns with
 * their uint16 ids, kinds and types, the table's uint64 storage id, table options, and the
 * schema version (a UUID derived from the catalog's content). Also the versioned binary
 * encoding of definitions the executor persists in the engine (docs/schema-format.md).
 *
 * Threads: a catalog belongs to the event loop; the encode/decode functions are pure.
 */
#ifndef ILION_SCHEMA_SCHEMA_H
#define ILION_SCHEMA_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/schema/replication.h"
#include "ilion/schema/types.h"
#include "ilion/util/buf.h"

#define SCHEMA_COLUMN_NAME_MAX 128
#define SCHEMA_MAX_COLUMNS 1024

enum schema_col_kind { SCHEMA_COL_PARTITION_KEY, SCHEMA_COL_CLUSTERING, SCHEMA_COL_REGULAR,
                       SCHEMA_COL_STATIC };

typedef struct schema_column {
    char name[SCHEMA_COLUMN_NAME_MAX];
    uint16_t id;          /* cell column id in storage; stable for the table's life */
    uint8_t kind;         /* enum schema_col_kind */
    uint16_t position;    /* index within the partition or clustering key; 0 otherwise */
    schema_type type;
    bool desc;            /* clustering order DESC */
} schema_column;

typedef struct schema_table_params {
    double bloom_filter_fp_chance;       /* 0.01 */
    int32_t gc_grace_seconds;            /* 864000 */
    int32_t default_time_to_live;        /* 0 */
    double crc_check_chance;             /* 1.0 */
    int32_t memtable_flush_period_in_ms; /* 0 */
    uint32_t chunk_length_in_kb;         /* 16 */
    uint32_t min_threshold, max_threshold; /* 4, 32 */
    char comment[256];
    char compression_class[128];         /* "" = compression disabled */
    char compaction_class[128];
    char speculative_retry[32];          /* "99p" */
} schema_table_params;

typedef struct schema_table {
    char ks[SCHEMA_NAME_MAX];
    char name[SCHEMA_NAME_MAX];
    uint64_t id;          /* storage table id */
    uint8_t uuid[16];     /* system_schema.tables.id */
    uint16_t ncols;
    uint16_t npk, nck;    /* cols[0..npk) partition key, then nck clustering columns, in order;
                             then the other columns by name */
    schema_column *cols;
    schema_table_params params;
    bool is_virtual;      /* served from live state (system tables), not the engine */
} schema_table;

typedef struct schema_keyspace {
    char name[SCHEMA_NAME_MAX];
    bool durable_writes;
    bool is_system;       /* system, system_schema: not droppable, LocalStrategy */
    schema_replication repl;
    size_t ntables;
    schema_table **tables; /* sorted by name; owned */
} schema_keyspace;

typedef struct schema_catalog {
    size_t nks;
    schema_keyspace **ks;  /* sorted by name; owned */
    uint8_t version[16];   /* UUID v3 of the canonical encoding of user keyspaces */
} schema_catalog;

void schema_table_params_default(schema_table_params *p);

/* Allocation: everything returned here is owned by the catalog once added. */
schema_catalog *schema_catalog_new(void);
void schema_catalog_free(schema_catalog *c);
schema_table *schema_table_alloc(uint16_t ncols);   /* zeroed, params defaulted; NULL on OOM */
void schema_table_free(schema_table *t);
void schema_keyspace_free(schema_keyspace *k);

schema_keyspace *schema_keyspace_get(const schema_catalog *c, const char *name);
schema_table *schema_table_get(const schema_catalog *c, const char *ks, const char *name);
schema_table *schema_table_by_id(const schema_catalog *c, uint64_t id);
const schema_column *schema_column_get(const schema_table *t, const char *name);
int schema_column_index(const schema_table *t, const char *name); /* -1 when absent */

/* Adds (taking ownership) — ILION_EEXISTS when the name is taken, ILION_ENOTFOUND when the
 * table's keyspace is missing. Remove frees. The version is not recomputed here. */
int schema_keyspace_add(schema_catalog *c, schema_keyspace *k);
int schema_keyspace_remove(schema_catalog *c, const char *name);
int schema_table_add(schema_catalog *c, schema_table *t);
int schema_table_remove(schema_catalog *c, const char *ks, const char *name);

/* Recomputes c->version from the user keyspaces and tables. */
void schema_catalog_update_version(schema_catalog *c);

/* Binary definitions (version 1). Decoders take untrusted bytes: ILION_ECORRUPT on any
 * malformed input, *out malloc'd (free with the matching _free). */
void schema_keyspace_encode(const schema_keyspace *k, buf *out);
int schema_keyspace_decode(const uint8_t *p, size_t n, schema_keyspace **out);
void schema_table_encode(const schema_table *t, buf *out);
int schema_table_decode(const uint8_t *p, size_t n, schema_table **out);

#endif
