/*
 * CQL types: names and native-protocol type option ids, validation of serialized values,
 * conversion of CQL literals to serialized values, text rendering, and the byte-comparable
 * encoding of clustering key components (docs/clustering-encoding.md) so rows are ordered with
 * memcmp. Collections (list/set/map of scalars) exist for system tables' result metadata and
 * values. Pure functions; any thread.
 */
#ifndef ILION_SCHEMA_TYPES_H
#define ILION_SCHEMA_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/util/buf.h"

/* Native protocol v4 type option ids. */
enum schema_type_id {
    SCHEMA_T_CUSTOM = 0x00, SCHEMA_T_ASCII = 0x01, SCHEMA_T_BIGINT = 0x02, SCHEMA_T_BLOB = 0x03,
    SCHEMA_T_BOOLEAN = 0x04, SCHEMA_T_COUNTER = 0x05, SCHEMA_T_DECIMAL = 0x06,
    SCHEMA_T_DOUBLE = 0x07, SCHEMA_T_FLOAT = 0x08, SCHEMA_T_INT = 0x09, SCHEMA_T_TIMESTAMP = 0x0B,
    SCHEMA_T_UUID = 0x0C, SCHEMA_T_VARCHAR = 0x0D, SCHEMA_T_VARINT = 0x0E,
    SCHEMA_T_TIMEUUID = 0x0F, SCHEMA_T_INET = 0x10, SCHEMA_T_DATE = 0x11, SCHEMA_T_TIME = 0x12,
    SCHEMA_T_SMALLINT = 0x13, SCHEMA_T_TINYINT = 0x14, SCHEMA_T_LIST = 0x20, SCHEMA_T_MAP = 0x21,
    SCHEMA_T_SET = 0x22
};

/* A type: a scalar, or a collection whose element types (sub[0], and sub[1] for a map's
 * values) are scalars. */
typedef struct schema_type {
    uint8_t id;
    uint8_t sub[2];
    bool frozen;
} schema_type;

#define SCHEMA_TYPE(x) ((schema_type){.id = (x)})

bool schema_type_is_collection(const schema_type *t);
/* Parses "int", "text", "varchar", "map<text, text>", "frozen<set<int>>" ... (case-insensitive).
 * 0 or ILION_EINVALID. */
int schema_type_parse(const char *name, size_t n, schema_type *out);
/* CQL name as system_schema.columns shows it ("text", "map<text, text>"). Never fails;
 * truncates to cap. */
void schema_type_name(const schema_type *t, char *out, size_t cap);
/* Appends the RESULT metadata [option] for the type. */
void schema_type_write_option(const schema_type *t, buf *out);

/* Checks a serialized value of type t (a non-null, set value). 0, or ILION_EINVALID with a
 * message such as "Expected 4 or 0 byte int (3)" in err. */
int schema_value_validate(const schema_type *t, const uint8_t *v, size_t len, char *err,
                          size_t errlen);

/* CQL literal kinds as the parser reports them. */
enum schema_lit_kind {
    SCHEMA_LIT_STRING,    /* 'quoted' (text without the quotes, '' already unescaped) */
    SCHEMA_LIT_INTEGER,   /* -?[0-9]+ */
    SCHEMA_LIT_FLOAT,     /* 1.5, -2e10, NaN, Infinity */
    SCHEMA_LIT_UUID,      /* unquoted 8-4-4-4-12 hex */
    SCHEMA_LIT_BOOLEAN,   /* true / false */
    SCHEMA_LIT_HEX        /* 0x... */
};

/* Appends the serialized value of the literal as type t to out. 0, or ILION_EINVALID with a
 * message in err ("Invalid INTEGER constant (abc) for \"k\" of type int" style, without the
 * column name, which the caller adds). */
int schema_literal_convert(const schema_type *t, enum schema_lit_kind kind, const char *text,
                           size_t n, buf *out, char *err, size_t errlen);

/* Appends a human-readable rendering of a serialized value (CQL literal syntax). */
void schema_value_format(const schema_type *t, const uint8_t *v, size_t len, buf *out);

/* --- byte-comparable encoding -------------------------------------------------------- */

/* Appends the byte-comparable encoding of one clustering component; desc inverts it so memcmp
 * gives descending order. 0, or ILION_EINVALID for a value that fails validation. */
int schema_ck_encode(const schema_type *t, bool desc, const uint8_t *v, size_t len, buf *out);
/* Reads one component from r (untrusted) and appends its serialized value to out.
 * 0, or ILION_ECORRUPT. Decimals come back normalized (1.50 → 1.5), varints minimal. */
int schema_ck_decode(const schema_type *t, bool desc, rd *r, buf *out);
/* Orders two serialized values of type t the way CQL does (<0, 0, >0). Invalid values order
 * after valid ones, by bytes. */
int schema_value_compare(const schema_type *t, const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen);
/* The smallest byte string greater than every string that starts with p (for exclusive slice
 * bounds on a prefix). Returns false when none exists (p is all 0xFF): the bound is open. */
bool schema_prefix_successor(const uint8_t *p, size_t len, buf *out);

/* --- partition keys ------------------------------------------------------------------- */

/* Routing key: one component is its value; several are, each, u16 length + bytes + 0x00. */
void schema_routing_key(const uint8_t *const *vals, const uint32_t *lens, size_t n, buf *out);
/* Splits a routing key into n components (pointers into key). 0 or ILION_ECORRUPT. */
int schema_routing_key_split(const uint8_t *key, size_t len, size_t n, const uint8_t **vals,
                             uint32_t *lens);

#endif
