/*
 * The data model shared by every layer: a partition update (a "mutation") and a read result
 * are the same structure — a partition key, an optional partition tombstone and rows ordered
 * by clustering key, each row with an optional row marker (liveness from INSERT), an optional
 * row tombstone and cells ordered by column id. The storage engine, the coordinator (replica
 * responses, read repair), internode messages and the commit log all use this one structure
 * and its one encoding, and reconcile with one merge function.
 *
 * Keys are opaque bytes here: the partition key is the serialized routing key (what Murmur3
 * hashes); the clustering key is the byte-comparable encoding made by schema/, ordered with
 * memcmp. Columns are small integer ids assigned by schema/.
 *
 * Memory: structures built by the functions here live in a `st_arena` the caller owns; nothing
 * is freed piecewise. Pure functions, any thread.
 */
#ifndef ILION_STORAGE_PARTITION_H
#define ILION_STORAGE_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/util/arena.h"
#include "ilion/util/buf.h"

#define ST_NO_TIMESTAMP INT64_MIN
#define ST_NO_EXPIRY INT32_MAX

/* A deletion: everything written at or before `ts` is shadowed. ts == ST_NO_TIMESTAMP: none. */
typedef struct st_deletion {
    int64_t ts;            /* µs */
    int32_t local_time;    /* s since epoch when deleted; drives gc_grace_seconds purging */
} st_deletion;

/* Row liveness (the "row marker" an INSERT writes, so a row with only null columns exists). */
typedef struct st_liveness {
    int64_t ts;            /* ST_NO_TIMESTAMP: no marker */
    int32_t ttl;           /* s, 0 = none */
    int32_t expiry;        /* s since epoch, ST_NO_EXPIRY = never */
} st_liveness;

enum { ST_CELL_TOMBSTONE = 1 };

typedef struct st_cell {
    uint16_t col;
    uint8_t flags;         /* ST_CELL_TOMBSTONE */
    int64_t ts;            /* µs */
    int32_t ttl;           /* s, 0 = none */
    int32_t expiry;        /* live cell: s since epoch or ST_NO_EXPIRY; tombstone: local deletion time */
    const uint8_t *value;  /* NULL for tombstones; an empty value has len 0 and non-NULL */
    uint32_t len;
} st_cell;

typedef struct st_row {
    const uint8_t *ck;     /* byte-comparable clustering key; len 0 for tables without one */
    uint32_t cklen;
    st_liveness marker;
    st_deletion del;
    uint32_t ncells;
    st_cell *cells;        /* ordered by col, at most one per col */
    uint32_t cells_cap;    /* capacity of cells when built by st_row_set_cell; 0 = exactly ncells */
} st_row;

typedef struct st_partition {
    uint64_t table_id;
    int64_t token;
    const uint8_t *pk;
    uint32_t pklen;
    st_deletion del;       /* partition tombstone */
    uint32_t nrows;
    st_row *rows;          /* ordered by ck (memcmp, shorter prefix first) */
    uint32_t rows_cap;     /* capacity of rows when built by st_partition_row; 0 = exactly nrows */
} st_partition;

/* --- building (the statement layer builds mutations this way) -------------------------- */

/* Starts an empty partition; pk is copied into the arena and the token computed. */
st_partition *st_partition_new(st_arena *a, uint64_t table_id, const void *pk, uint32_t pklen);
/* Returns the row for ck, adding it in order if absent (ck copied). NULL on OOM. */
st_row *st_partition_row(st_arena *a, st_partition *p, const void *ck, uint32_t cklen);
/* Sets/overwrites the cell for col in r (value copied). value == NULL makes a tombstone. */
int st_row_set_cell(st_arena *a, st_row *r, uint16_t col, int64_t ts, int32_t ttl, int32_t now_s,
                    const void *value, uint32_t len);

/* --- reconciling ----------------------------------------------------------------------- */

/* Cassandra's rule: higher ts wins; on a tie a tombstone wins, then the greater value. */
int st_cell_compare(const st_cell *a, const st_cell *b); /* >0: a wins, <0: b wins, 0 equal */
/* Merges b into a (same table and key), result in arena a. Neither input is modified. */
st_partition *st_partition_merge(st_arena *a, const st_partition *x, const st_partition *y);
/* True when the cell is live at now_s (not a tombstone, not expired). */
bool st_cell_live(const st_cell *c, int32_t now_s);
/* True when the row has a live marker or a live cell not shadowed by deletions. */
bool st_row_live(const st_row *r, const st_deletion *pdel, int32_t now_s);

/* --- encoding (commit log records, internode messages, memtable and SSTable rows) ------- */

/* Appends the versioned encoding of p to out (see docs/sstable-format.md, "partition"). */
void st_partition_encode(const st_partition *p, buf *out);
/* Decodes untrusted bytes; pointers into `data` are kept, so data must outlive *out.
 * Returns 0, or ILION_ECORRUPT/ILION_ETRUNCATED without crashing on any input. */
int st_partition_decode(st_arena *a, const uint8_t *data, size_t len, st_partition **out);

/* Size in bytes the partition occupies (for memtable accounting and paging). */
size_t st_partition_size(const st_partition *p);

/* --- helpers shared with the storage engine -------------------------------------------- */

/* Version byte written first by st_partition_encode. */
#define ST_PARTITION_FORMAT 1

/* Orders partitions by (token, key): <0, 0, >0. */
int st_key_compare(int64_t ta, const uint8_t *ka, uint32_t la, int64_t tb, const uint8_t *kb,
                   uint32_t lb);
/* Orders clustering keys: memcmp, shorter prefix first. */
int st_ck_compare(const uint8_t *a, uint32_t la, const uint8_t *b, uint32_t lb);
/* One row in the partition encoding (no version byte); used by SSTable data blocks. */
void st_row_encode(const st_row *r, buf *out);
/* Decodes one row from r; pointers into the input are kept. ILION_ECORRUPT/ETRUNCATED. */
int st_row_decode(st_arena *a, rd *r, st_row *out);
/* Merges two rows with the same ck into out (arena a); inputs unchanged. */
int st_row_merge(st_arena *a, const st_row *x, const st_row *y, st_row *out);
/* Newer of two deletions (higher ts; tie: later local_time). */
st_deletion st_deletion_max(st_deletion x, st_deletion y);
/* Deep copy of p into arena a (keys and values copied). NULL on OOM. */
st_partition *st_partition_copy(st_arena *a, const st_partition *p);

#endif
