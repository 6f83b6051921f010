/* DDL: CREATE/ALTER/DROP KEYSPACE, CREATE/DROP TABLE, USE, TRUNCATE. Every change is persisted
 * (schema_store.c) before the catalog changes and the client hears of it. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_int.h"
#include "ilion/schema/md5.h"
#include "ilion/util/clock.h"
#include "ilion/util/err.h"

#define CQLE_UNAUTHORIZED 0x2100

static bool valid_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 48) return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_') return false;
    return true;
}

static const char *term_text(const cql_term *t) { return t && t->text.s ? t->text.s : ""; }

/* Numeric option value (number literal or numeric string). */
static bool term_number(const cql_term *t, double *out) {
    if (!t) return false;
    if (t->kind == CQL_TERM_INTEGER) { *out = (double)t->u.i.v; return !t->u.i.overflow; }
    if (t->kind == CQL_TERM_FLOAT) { *out = t->u.f; return true; }
    if (t->kind == CQL_TERM_STRING && t->text.s) {
        char *end;
        errno = 0;
        double d = strtod(t->text.s, &end);
        if (errno || end == t->text.s || *end) return false;
        *out = d;
        return true;
    }
    return false;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Fills repl from WITH replication = {...}; answers the error and returns -1. */
static int parse_replication(exec_req *r, const cql_term *m, const char *dc, schema_replication *repl) {
    memset(repl, 0, sizeof *repl);
    if (!m || m->kind != CQL_TERM_MAP) {
        exec_error(r, CQLE_CONFIG, "Missing mandatory option 'replication' (a map with a 'class')");
        return -1;
    }
    const char *cls = term_text(cql_map_get(m, "class"));
    if (ends_with(cls, "SimpleStrategy")) {
        repl->cls = SCHEMA_REPL_SIMPLE;
        double rf;
        if (!term_number(cql_map_get(m, "replication_factor"), &rf) || rf < 0 || rf > 100 || rf != (int)rf) {
            exec_error(r, CQLE_CONFIG, "SimpleStrategy requires a 'replication_factor' option (a whole number, 0 to 100)");
            return -1;
        }
        repl->rf = (uint32_t)rf;
        for (uint32_t i = 0; i < m->u.coll.n; i++) {
            const char *k = term_text(m->u.coll.items[i]);
            if (strcmp(k, "class") && strcmp(k, "replication_factor")) {
                exec_error(r, CQLE_CONFIG, "Unrecognized strategy option {%s} passed to SimpleStrategy", k);
                return -1;
            }
        }
        return 0;
    }
    if (ends_with(cls, "NetworkTopologyStrategy")) {
        repl->cls = SCHEMA_REPL_NTS;
        for (uint32_t i = 0; i < m->u.coll.n; i++) {
            const char *k = term_text(m->u.coll.items[i]);
            if (strcmp(k, "class") == 0) continue;
            double rf;
            if (!term_number(m->u.coll.values[i], &rf) || rf < 0 || rf > 100 || rf != (int)rf) {
                exec_error(r, CQLE_CONFIG, "Replication factor for '%s' must be a whole number, 0 to 100", k);
                return -1;
            }
            /* replication_factor: the default for every DC, i.e. this node's */
            const char *name = strcmp(k, "replication_factor") == 0 ? dc : k;
            if (repl->ndcs >= SCHEMA_MAX_DCS || strlen(name) >= SCHEMA_NAME_MAX) {
                exec_error(r, CQLE_CONFIG, "Too many data centers or data center name too long: '%s'", name);
                return -1;
            }
            uint32_t j;
            for (j = 0; j < repl->ndcs; j++)
                if (strcmp(repl->dcs[j].name, name) == 0) break;
            if (j == repl->ndcs) repl->ndcs++;
            snprintf(repl->dcs[j].name, sizeof repl->dcs[j].name, "%s", name);
            repl->dcs[j].rf = (uint32_t)rf;
        }
        return 0;
    }
    exec_error(r, CQLE_CONFIG, "Unable to find replication strategy class '%s' (use SimpleStrategy or NetworkTopologyStrategy)",
               cls[0] ? cls : "(missing)");
    return -1;
}

static void create_keyspace(exec_req *r, const cql_keyspace_stmt *ks, bool alter) {
    cql_executor *x = r->x;
    const char *name = ks->name.s ? ks->name.s : "";
    if (!valid_name(name)) {
        exec_error(r, CQLE_INVALID, "Keyspace name must not be empty, more than 48 characters long, or contain non-alphanumeric-underscore characters (got \"%s\")", name);
        return;
    }
    schema_keyspace *old = schema_keyspace_get(x->cat, name);
    if (old && !alter) {
        if (ks->if_not_exists) exec_reply_void(r);
        else exec_error_already_exists(r, name, "");
        return;
    }
    if (alter && !old) {
        exec_error(r, CQLE_CONFIG, "Cannot alter non existing keyspace '%s'", name);
        return;
    }
    if (old && old->is_system) {
        exec_error(r, CQLE_UNAUTHORIZED, "Cannot alter system keyspace %s", name);
        return;
    }
    schema_keyspace *k = calloc(1, sizeof *k);
    if (!k) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    snprintf(k->name, sizeof k->name, "%s", name);
    k->durable_writes = old ? old->durable_writes : true;
    const cql_term *repl = cql_option_get(ks->opts, ks->nopts, "replication");
    if (repl || !alter) {
        if (parse_replication(r, repl, x->data_center, &k->repl)) {
            free(k);
            return;
        }
    } else {
        k->repl = old->repl;
    }
    for (uint32_t i = 0; i < ks->nopts; i++) {
        const char *on = ks->opts[i].name.s ? ks->opts[i].name.s : "";
        if (strcmp(on, "replication") == 0) continue;
        if (strcmp(on, "durable_writes") == 0) {
            const cql_term *v = ks->opts[i].value;
            if (v->kind == CQL_TERM_BOOL) k->durable_writes = v->u.b;
            else if (v->kind == CQL_TERM_STRING && strcasecmp(term_text(v), "true") == 0) k->durable_writes = true;
            else if (v->kind == CQL_TERM_STRING && strcasecmp(term_text(v), "false") == 0) k->durable_writes = false;
            else {
                free(k);
                exec_error(r, CQLE_SYNTAX, "Invalid value for durable_writes: a boolean is required");
                return;
            }
            continue;
        }
        free(k);
        exec_error(r, CQLE_SYNTAX, "Unknown property '%s'", on);
        return;
    }
    int rc = schema_store_save_keyspace(x, k);
    if (rc) {
        free(k);
        exec_error(r, CQLE_SERVER, "Could not persist the keyspace: %s", ilion_strerror(rc));
        return;
    }
    if (old) {
        old->repl = k->repl;
        old->durable_writes = k->durable_writes;
        free(k);
    } else if (schema_keyspace_add(x->cat, k)) {
        free(k);
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    exec_schema_changed(x);
    exec_reply_schema_change(r, alter ? "UPDATED" : "CREATED", "KEYSPACE", name, NULL);
}

static void drop_keyspace(exec_req *r, const cql_keyspace_stmt *ks) {
    cql_executor *x = r->x;
    const char *name = ks->name.s ? ks->name.s : "";
    schema_keyspace *k = schema_keyspace_get(x->cat, name);
    if (!k) {
        if (ks->if_exists) exec_reply_void(r);
        else exec_error(r, CQLE_CONFIG, "Cannot drop non existing keyspace '%s'.", name);
        return;
    }
    if (k->is_system) {
        exec_error(r, CQLE_UNAUTHORIZED, "Cannot drop system keyspace %s", name);
        return;
    }
    int rc = schema_store_drop_keyspace(x, name);
    if (rc) {
        exec_error(r, CQLE_SERVER, "Could not persist the keyspace drop: %s", ilion_strerror(rc));
        return;
    }
    for (size_t i = 0; i < k->ntables; i++) storage_table_drop(x->engine, k->tables[i]->id);
    char saved[SCHEMA_NAME_MAX];
    snprintf(saved, sizeof saved, "%s", name);
    schema_keyspace_remove(x->cat, saved);
    prepared_clear(x->prepared);
    exec_schema_changed(x);
    exec_reply_schema_change(r, "DROPPED", "KEYSPACE", saved, NULL);
}

static int cmp_col_name(const void *a, const void *b) {
    return strcmp(((const schema_column *)a)->name, ((const schema_column *)b)->name);
}

/* Applies WITH options to params; answers errors and returns -1. */
static int table_options(exec_req *r, const cql_create_table *ct, schema_table_params *p) {
    for (uint32_t i = 0; i < ct->nopts; i++) {
        const char *on = ct->opts[i].name.s ? ct->opts[i].name.s : "";
        const cql_term *v = ct->opts[i].value;
        double d;
        if (strcmp(on, "bloom_filter_fp_chance") == 0) {
            if (!term_number(v, &d) || d <= 0 || d > 1) {
                exec_error(r, CQLE_CONFIG, "bloom_filter_fp_chance must be larger than 0 and at most 1.0 (got %s)", term_text(v));
                return -1;
            }
            p->bloom_filter_fp_chance = d;
        } else if (strcmp(on, "gc_grace_seconds") == 0) {
            if (!term_number(v, &d) || d < 0 || d > INT32_MAX || d != (int64_t)d) {
                exec_error(r, CQLE_CONFIG, "gc_grace_seconds must be a whole number >= 0 (got %s)", term_text(v));
                return -1;
            }
            p->gc_grace_seconds = (int32_t)d;
        } else if (strcmp(on, "default_time_to_live") == 0) {
            if (!term_number(v, &d) || d < 0 || d > 630720000 || d != (int64_t)d) {
                exec_error(r, CQLE_CONFIG, "default_time_to_live must be a whole number of seconds from 0 to 630720000 (got %s)", term_text(v));
                return -1;
            }
            p->default_time_to_live = (int32_t)d;
        } else if (strcmp(on, "crc_check_chance") == 0) {
            if (!term_number(v, &d) || d < 0 || d > 1) {
                exec_error(r, CQLE_CONFIG, "crc_check_chance must be between 0.0 and 1.0");
                return -1;
            }
            p->crc_check_chance = d;
        } else if (strcmp(on, "memtable_flush_period_in_ms") == 0) {
            if (!term_number(v, &d) || d < 0 || d > INT32_MAX) {
                exec_error(r, CQLE_CONFIG, "memtable_flush_period_in_ms must be a whole number >= 0");
                return -1;
            }
            p->memtable_flush_period_in_ms = (int32_t)d;
        } else if (strcmp(on, "comment") == 0) {
            snprintf(p->comment, sizeof p->comment, "%s", term_text(v));
        } else if (strcmp(on, "speculative_retry") == 0) {
            snprintf(p->speculative_retry, sizeof p->speculative_retry, "%s", term_text(v));
        } else if (strcmp(on, "compression") == 0) {
            if (v->kind != CQL_TERM_MAP) {
                exec_error(r, CQLE_CONFIG, "compression must be a map, e.g. {'class': 'LZ4Compressor'}");
                return -1;
            }
            const cql_term *en = cql_map_get(v, "enabled");
            const cql_term *cls = cql_map_get(v, "class");
            if (!cls) cls = cql_map_get(v, "sstable_compression");
            bool disabled = (en && strcasecmp(term_text(en), "false") == 0) ||
                            (en && en->kind == CQL_TERM_BOOL && !en->u.b) ||
                            (cls && term_text(cls)[0] == 0);
            if (disabled) {
                p->compression_class[0] = 0;
            } else if (cls) {
                const char *c = term_text(cls);
                if (ends_with(c, "LZ4Compressor"))
                    snprintf(p->compression_class, sizeof p->compression_class, "org.apache.cassandra.io.compress.LZ4Compressor");
                else if (ends_with(c, "DeflateCompressor"))
                    snprintf(p->compression_class, sizeof p->compression_class, "org.apache.cassandra.io.compress.DeflateCompressor");
                else {
                    exec_error(r, CQLE_CONFIG, "Unsupported compression class '%s' (LZ4Compressor and DeflateCompressor are supported)", c);
                    return -1;
                }
            }
            const cql_term *ch = cql_map_get(v, "chunk_length_in_kb");
            if (!ch) ch = cql_map_get(v, "chunk_length_kb");
            if (ch) {
                if (!term_number(ch, &d) || d < 1 || d > 65536 || ((int)d & ((int)d - 1))) {
                    exec_error(r, CQLE_CONFIG, "chunk_length_in_kb must be a power of 2 between 1 and 65536");
                    return -1;
                }
                p->chunk_length_in_kb = (uint32_t)d;
            }
        } else if (strcmp(on, "compaction") == 0) {
            if (v->kind != CQL_TERM_MAP) {
                exec_error(r, CQLE_CONFIG, "compaction must be a map, e.g. {'class': 'SizeTieredCompactionStrategy'}");
                return -1;
            }
            const char *c = term_text(cql_map_get(v, "class"));
            if (c[0] && !ends_with(c, "SizeTieredCompactionStrategy")) {
                exec_error(r, CQLE_CONFIG, "Unsupported compaction strategy '%s' (only SizeTieredCompactionStrategy)", c);
                return -1;
            }
            const cql_term *mn = cql_map_get(v, "min_threshold"), *mx = cql_map_get(v, "max_threshold");
            if (mn) {
                if (!term_number(mn, &d) || d < 2 || d > 1000) {
                    exec_error(r, CQLE_CONFIG, "min_threshold must be a whole number from 2 to 1000");
                    return -1;
                }
                p->min_threshold = (uint32_t)d;
            }
            if (mx) {
                if (!term_number(mx, &d) || d < 2 || d > 1000) {
                    exec_error(r, CQLE_CONFIG, "max_threshold must be a whole number from 2 to 1000");
                    return -1;
                }
                p->max_threshold = (uint32_t)d;
            }
            if (p->min_threshold > p->max_threshold) {
                exec_error(r, CQLE_CONFIG, "min_threshold (%u) cannot be greater than max_threshold (%u)", p->min_threshold, p->max_threshold);
                return -1;
            }
        } else if (strcmp(on, "caching") == 0 || strcmp(on, "read_repair_chance") == 0 ||
                   strcmp(on, "dclocal_read_repair_chance") == 0 || strcmp(on, "min_index_interval") == 0 ||
                   strcmp(on, "max_index_interval") == 0 || strcmp(on, "cdc") == 0 ||
                   strcmp(on, "extensions") == 0 || strcmp(on, "read_repair") == 0 ||
                   strcmp(on, "additional_write_policy") == 0) {
            /* accepted for compatibility; no effect here */
        } else {
            exec_error(r, CQLE_SYNTAX, "Unknown property '%s'", on);
            return -1;
        }
    }
    return 0;
}

static bool scalar_kind(enum cql_type_kind k) {
    return k != CQL_TYPE_CUSTOM && k != CQL_TYPE_COUNTER && k != CQL_TYPE_DURATION && k < CQL_TYPE_LIST;
}

/* Column type from the parsed type: scalars, and lists/sets/maps of scalars (stored as one
 * value: writes replace the whole collection). Answers errors and returns -1. */
static int column_type(exec_req *r, const cql_type *ty, const char *cn, schema_type *out) {
    memset(out, 0, sizeof *out);
    if (scalar_kind(ty->kind)) {
        out->id = (uint8_t)ty->kind;
        return 0;
    }
    if ((ty->kind == CQL_TYPE_LIST || ty->kind == CQL_TYPE_SET || ty->kind == CQL_TYPE_MAP) &&
        ty->nparams == (ty->kind == CQL_TYPE_MAP ? 2u : 1u)) {
        bool ok = true;
        for (uint32_t k = 0; k < ty->nparams; k++) ok = ok && scalar_kind(ty->params[k]->kind);
        if (ok) {
            out->id = (uint8_t)ty->kind;
            out->frozen = ty->frozen;
            for (uint32_t k = 0; k < ty->nparams; k++) out->sub[k] = (uint8_t)ty->params[k]->kind;
            return 0;
        }
    }
    exec_error(r, CQLE_INVALID, "Unsupported type for column %s (supported: scalar types and list/set/map of scalar types; not counters, duration, tuples, user types, custom types or nested collections)", cn);
    return -1;
}

static uint64_t new_table_id(cql_executor *x, uint8_t uuid[16], const char *ks, const char *name) {
    for (uint32_t attempt = 0;; attempt++) {
        char seed[256];
        snprintf(seed, sizeof seed, "%s.%s/%lld/%u", ks, name, (long long)clock_now_us(), attempt);
        schema_md5(seed, strlen(seed), uuid);
        uuid[6] = (uint8_t)((uuid[6] & 0x0F) | 0x40);
        uuid[8] = (uint8_t)((uuid[8] & 0x3F) | 0x80);
        uint64_t id = be64_get(uuid) & 0x7FFFFFFFFFFFFFFFULL;
        if (id < EXEC_FIRST_USER_TABLE_ID) continue;
        if (schema_table_by_id(x->cat, id) || storage_table_exists(x->engine, id)) continue;
        return id;
    }
}

static void create_table(exec_req *r, const cql_create_table *ct) {
    cql_executor *x = r->x;
    const char *ksn = exec_ks_name(r, &ct->table);
    if (!ksn) return;
    schema_keyspace *k = schema_keyspace_get(x->cat, ksn);
    if (!k) {
        exec_error(r, CQLE_INVALID, "Keyspace '%s' doesn't exist", ksn);
        return;
    }
    if (k->is_system) {
        exec_error(r, CQLE_UNAUTHORIZED, "Cannot create tables in system keyspace %s", ksn);
        return;
    }
    const char *name = ct->table.name.s ? ct->table.name.s : "";
    if (!valid_name(name)) {
        exec_error(r, CQLE_INVALID, "Table name must not be empty, more than 48 characters long, or contain non-alphanumeric-underscore characters (got \"%s\")", name);
        return;
    }
    if (schema_table_get(x->cat, ksn, name)) {
        if (ct->if_not_exists) exec_reply_void(r);
        else exec_error_already_exists(r, ksn, name);
        return;
    }
    if (ct->compact_storage) {
        exec_error(r, CQLE_INVALID, "COMPACT STORAGE tables are not supported");
        return;
    }
    if (ct->ncols == 0 || ct->ncols > SCHEMA_MAX_COLUMNS) {
        exec_error(r, CQLE_INVALID, "A table needs 1 to %d columns", SCHEMA_MAX_COLUMNS);
        return;
    }
    schema_table *t = schema_table_alloc((uint16_t)ct->ncols);
    if (!t) {
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    snprintf(t->ks, sizeof t->ks, "%s", ksn);
    snprintf(t->name, sizeof t->name, "%s", name);
    /* columns as declared, then reordered: partition key, clustering, the rest by name */
    schema_column *tmp = calloc(ct->ncols, sizeof *tmp);
    if (!tmp) {
        schema_table_free(t);
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    for (uint32_t i = 0; i < ct->ncols; i++) {
        const cql_column_def *d = &ct->cols[i];
        const char *cn = d->name.s ? d->name.s : "";
        if (!cn[0] || strlen(cn) >= SCHEMA_COLUMN_NAME_MAX) {
            exec_error(r, CQLE_INVALID, "Invalid column name \"%s\"", cn);
            goto fail;
        }
        for (uint32_t j = 0; j < i; j++)
            if (strcmp(tmp[j].name, cn) == 0) {
                exec_error(r, CQLE_INVALID, "Multiple definition of identifier %s", cn);
                goto fail;
            }
        snprintf(tmp[i].name, sizeof tmp[i].name, "%s", cn);
        if (column_type(r, d->type, cn, &tmp[i].type)) goto fail;
        tmp[i].kind = d->is_static ? SCHEMA_COL_STATIC : SCHEMA_COL_REGULAR;
    }
    uint32_t at = 0;
    for (uint32_t pass = 0; pass < 2; pass++) {
        uint32_t n = pass == 0 ? ct->npk : ct->nck;
        const cql_str *names = pass == 0 ? ct->pk : ct->ck;
        for (uint32_t i = 0; i < n; i++) {
            uint32_t j;
            for (j = 0; j < ct->ncols; j++)
                if (strcmp(tmp[j].name, names[i].s ? names[i].s : "") == 0) break;
            if (j == ct->ncols) {
                exec_error(r, CQLE_INVALID, "Unknown definition %s referenced in PRIMARY KEY", names[i].s ? names[i].s : "");
                goto fail;
            }
            if (tmp[j].kind == SCHEMA_COL_STATIC) {
                exec_error(r, CQLE_INVALID, "Static column %s cannot be part of the PRIMARY KEY", tmp[j].name);
                goto fail;
            }
            if (tmp[j].kind != SCHEMA_COL_REGULAR) {
                exec_error(r, CQLE_INVALID, "Column %s appears twice in PRIMARY KEY", tmp[j].name);
                goto fail;
            }
            if (schema_type_is_collection(&tmp[j].type)) {
                exec_error(r, CQLE_INVALID, "Invalid collection type for PRIMARY KEY component %s", tmp[j].name);
                goto fail;
            }
            tmp[j].kind = pass == 0 ? SCHEMA_COL_PARTITION_KEY : SCHEMA_COL_CLUSTERING;
            tmp[j].position = (uint16_t)i;
            t->cols[at++] = tmp[j];
        }
    }
    if (ct->npk == 0) {
        exec_error(r, CQLE_INVALID, "No PRIMARY KEY specified for table %s (exactly one required)", name);
        goto fail;
    }
    t->npk = (uint16_t)ct->npk;
    t->nck = (uint16_t)ct->nck;
    /* static columns (by name), then regular columns (by name) */
    for (int kind = SCHEMA_COL_STATIC; kind >= SCHEMA_COL_REGULAR; kind--) {
        uint32_t rest = at;
        for (uint32_t j = 0; j < ct->ncols; j++)
            if (tmp[j].kind == kind) t->cols[at++] = tmp[j];
        qsort(t->cols + rest, at - rest, sizeof *t->cols, cmp_col_name);
        if (kind == SCHEMA_COL_STATIC && at > rest && ct->nck == 0) {
            exec_error(r, CQLE_INVALID, "Static columns are only useful (and thus allowed) if the table has at least one clustering column");
            goto fail;
        }
    }
    for (uint16_t i = 0; i < t->ncols; i++) t->cols[i].id = i;
    for (uint32_t i = 0; i < ct->norder; i++) {
        const char *cn = ct->order[i].column.s ? ct->order[i].column.s : "";
        if (i >= t->nck || strcmp(t->cols[t->npk + i].name, cn) != 0) {
            exec_error(r, CQLE_INVALID, "CLUSTERING ORDER BY must list the clustering columns in their declared order (%s is not clustering column %u)", cn, i + 1);
            goto fail;
        }
        t->cols[t->npk + i].desc = ct->order[i].desc;
    }
    if (table_options(r, ct, &t->params)) goto fail;
    free(tmp);
    tmp = NULL;
    t->id = new_table_id(x, t->uuid, ksn, name);
    storage_table_options so;
    exec_table_storage_options(t, &so);
    int rc = storage_table_create(x->engine, t->id, &so);
    if (rc == 0) rc = schema_store_save_table(x, t);
    if (rc) {
        storage_table_drop(x->engine, t->id);
        schema_table_free(t);
        exec_error(r, CQLE_SERVER, "Could not create the table: %s", ilion_strerror(rc));
        return;
    }
    char ksc[SCHEMA_NAME_MAX], tc[SCHEMA_NAME_MAX];
    snprintf(ksc, sizeof ksc, "%s", ksn);
    snprintf(tc, sizeof tc, "%s", name);
    if (schema_table_add(x->cat, t)) {
        schema_table_free(t);
        exec_error(r, CQLE_SERVER, "out of memory");
        return;
    }
    exec_schema_changed(x);
    exec_reply_schema_change(r, "CREATED", "TABLE", ksc, tc);
    return;
fail:
    free(tmp);
    schema_table_free(t);
}

static void drop_table(exec_req *r, const cql_table_ref *tr) {
    cql_executor *x = r->x;
    const char *ksn = exec_ks_name(r, &tr->table);
    if (!ksn) return;
    const char *name = tr->table.name.s ? tr->table.name.s : "";
    schema_keyspace *k = schema_keyspace_get(x->cat, ksn);
    schema_table *t = schema_table_get(x->cat, ksn, name);
    if (!t) {
        if (tr->if_exists) exec_reply_void(r);
        else if (!k) exec_error(r, CQLE_CONFIG, "Keyspace '%s' doesn't exist", ksn);
        else exec_error(r, CQLE_CONFIG, "Table '%s.%s' doesn't exist", ksn, name);
        return;
    }
    if (k->is_system) {
        exec_error(r, CQLE_UNAUTHORIZED, "Cannot drop tables of system keyspace %s", ksn);
        return;
    }
    char ksc[SCHEMA_NAME_MAX], tc[SCHEMA_NAME_MAX];
    snprintf(ksc, sizeof ksc, "%s", ksn);
    snprintf(tc, sizeof tc, "%s", name);
    int rc = schema_store_drop_table(x, ksc, tc);
    if (rc) {
        exec_error(r, CQLE_SERVER, "Could not persist the table drop: %s", ilion_strerror(rc));
        return;
    }
    storage_table_drop(x->engine, t->id);
    schema_table_remove(x->cat, ksc, tc);
    prepared_clear(x->prepared);
    exec_schema_changed(x);
    exec_reply_schema_change(r, "DROPPED", "TABLE", ksc, tc);
}

static void use_keyspace(exec_req *r, const cql_str *ks) {
    const char *name = ks->s ? ks->s : "";
    if (!schema_keyspace_get(r->x->cat, name)) {
        exec_error(r, CQLE_INVALID, "Keyspace '%s' does not exist", name);
        return;
    }
    /* EXECUTE: r->s is the prepared entry's own keyspace, shared by its executions. */
    if (r->s && !r->is_prepared_exec) snprintf(r->s->ks, sizeof r->s->ks, "%s", name);
    if (r->conn && r->conn != r->s) snprintf(r->conn->ks, sizeof r->conn->ks, "%s", name);
    exec_reply_set_keyspace(r, name);
}

static void truncate_table(exec_req *r, const cql_table_ref *tr) {
    schema_table *t = exec_table(r, &tr->table);
    if (!t) return;
    if (t->is_virtual) {
        exec_error(r, CQLE_INVALID, "Cannot truncate system table %s.%s", t->ks, t->name);
        return;
    }
    /* Every node empties the table (all must be up), not only this one: a replica that kept
     * its data would bring it back through read repair. */
    int rc = coord_truncate(r->x->coord, t->id, exec_reply_coord_done, r);
    if (rc) exec_error(r, CQLE_SERVER, "Truncate of %s.%s failed: %s", t->ks, t->name, ilion_strerror(rc));
}

void stmt_ddl(exec_req *r, cql_stmt *st) {
    switch (st->kind) {
    case CQL_STMT_USE: use_keyspace(r, &st->u.use); return;
    case CQL_STMT_CREATE_KEYSPACE: create_keyspace(r, &st->u.keyspace, false); return;
    case CQL_STMT_ALTER_KEYSPACE: create_keyspace(r, &st->u.keyspace, true); return;
    case CQL_STMT_DROP_KEYSPACE: drop_keyspace(r, &st->u.keyspace); return;
    case CQL_STMT_CREATE_TABLE: create_table(r, &st->u.create_table); return;
    case CQL_STMT_DROP_TABLE: drop_table(r, &st->u.drop_table); return;
    case CQL_STMT_TRUNCATE: truncate_table(r, &st->u.truncate); return;
    default: exec_error(r, CQLE_INVALID, "Statement %s is not supported", cql_stmt_kind_name(st->kind));
    }
}
