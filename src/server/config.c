/* cassandra.yaml parsing: see include/ilion/server/config.h. */
#include "ilion/server/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "ilion/cluster/tokens.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

void server_config_default(server_config *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->cluster_name, sizeof c->cluster_name, "Test Cluster");
    c->num_tokens = 16;
    snprintf(c->partitioner, sizeof c->partitioner, "org.apache.cassandra.dht.Murmur3Partitioner");
    snprintf(c->listen_address, sizeof c->listen_address, "127.0.0.1");
    snprintf(c->rpc_address, sizeof c->rpc_address, "127.0.0.1");
    c->native_transport_port = 9042;
    c->storage_port = 7000;
    c->start_native_transport = true;
    c->native_transport_max_frame_size_in_mb = 16;
    c->admin_http_port = 0;
    snprintf(c->seed_provider_class, sizeof c->seed_provider_class,
             "org.apache.cassandra.locator.SimpleSeedProvider");
    c->nseeds = 1;
    snprintf(c->seeds[0], sizeof c->seeds[0], "127.0.0.1");
    c->ndata_dirs = 1;
    snprintf(c->data_file_directories[0], sizeof c->data_file_directories[0], "./.data/node1/data");
    snprintf(c->commitlog_directory, sizeof c->commitlog_directory, "./.data/node1/commitlog");
    snprintf(c->hints_directory, sizeof c->hints_directory, "./.data/node1/hints");
    snprintf(c->saved_caches_directory, sizeof c->saved_caches_directory, "./.data/node1/saved_caches");
    c->commitlog_sync = STORAGE_SYNC_PERIODIC;
    c->commitlog_sync_period_in_ms = 10000;
    c->commitlog_sync_group_window_in_ms = 15;
    c->commitlog_segment_size_in_mb = 32;
    c->commitlog_total_space_in_mb = 8192;
    c->memtable_heap_space_in_mb = 0;
    c->file_cache_size_in_mb = 256;
    c->memtable_flush_writers = 1;
    c->concurrent_compactors = 1;
    c->compaction_throughput_mb_per_sec = 64;
    c->commit_failure_policy = STORAGE_POLICY_STOP;
    c->disk_failure_policy = STORAGE_POLICY_STOP;
    snprintf(c->endpoint_snitch, sizeof c->endpoint_snitch, "SimpleSnitch");
    c->phi_convict_threshold = 8.0;
    c->read_request_timeout_in_ms = 5000;
    c->write_request_timeout_in_ms = 2000;
    c->range_request_timeout_in_ms = 10000;
    c->cas_contention_timeout_in_ms = 1000;
    c->truncate_request_timeout_in_ms = 60000;
    c->request_timeout_in_ms = 10000;
    c->hinted_handoff_enabled = true;
    c->max_hint_window_in_ms = 10800000;
}

enum kind { K_TOKENS, K_STR, K_PATH, K_U32, K_PORT, K_DOUBLE, K_BOOL, K_SYNC, K_COMMIT_POLICY,
            K_DISK_POLICY, K_DIRS, K_SEEDS, K_PARTITIONER, K_IGNORED };

typedef struct key_def {
    const char *name;
    enum kind kind;
    size_t off;
    double min, max;
} key_def;

#define F(field) offsetof(server_config, field)
static const key_def keys[] = {
    {"cluster_name", K_STR, F(cluster_name), 0, 0},
    {"num_tokens", K_U32, F(num_tokens), 1, 1024},
    {"initial_token", K_TOKENS, F(initial_token), 0, 0},
    {"partitioner", K_PARTITIONER, F(partitioner), 0, 0},
    {"listen_address", K_STR, F(listen_address), 0, 0},
    {"rpc_address", K_STR, F(rpc_address), 0, 0},
    {"native_transport_port", K_PORT, F(native_transport_port), 0, 65535},
    {"storage_port", K_PORT, F(storage_port), 0, 65535},
    {"start_native_transport", K_BOOL, F(start_native_transport), 0, 0},
    {"native_transport_max_frame_size_in_mb", K_U32, F(native_transport_max_frame_size_in_mb), 1,
     256},
    {"admin_http_port", K_PORT, F(admin_http_port), 0, 65535},
    {"seed_provider", K_SEEDS, 0, 0, 0},
    {"data_file_directories", K_DIRS, 0, 0, 0},
    {"commitlog_directory", K_PATH, F(commitlog_directory), 0, 0},
    {"hints_directory", K_PATH, F(hints_directory), 0, 0},
    {"saved_caches_directory", K_PATH, F(saved_caches_directory), 0, 0},
    {"commitlog_sync", K_SYNC, F(commitlog_sync), 0, 0},
    {"commitlog_sync_period_in_ms", K_U32, F(commitlog_sync_period_in_ms), 1, 3600000},
    {"commitlog_sync_group_window_in_ms", K_U32, F(commitlog_sync_group_window_in_ms), 1, 60000},
    {"commitlog_segment_size_in_mb", K_U32, F(commitlog_segment_size_in_mb), 1, 1024},
    {"commitlog_total_space_in_mb", K_U32, F(commitlog_total_space_in_mb), 1, 1 << 24},
    {"memtable_heap_space_in_mb", K_U32, F(memtable_heap_space_in_mb), 0, 1 << 20},
    {"file_cache_size_in_mb", K_U32, F(file_cache_size_in_mb), 0, 1 << 20},
    {"memtable_flush_writers", K_U32, F(memtable_flush_writers), 1, 64},
    {"concurrent_compactors", K_U32, F(concurrent_compactors), 1, 64},
    {"compaction_throughput_mb_per_sec", K_U32, F(compaction_throughput_mb_per_sec), 0, 1 << 20},
    {"commit_failure_policy", K_COMMIT_POLICY, F(commit_failure_policy), 0, 0},
    {"disk_failure_policy", K_DISK_POLICY, F(disk_failure_policy), 0, 0},
    {"endpoint_snitch", K_STR, F(endpoint_snitch), 0, 0},
    {"phi_convict_threshold", K_DOUBLE, F(phi_convict_threshold), 5, 16},
    {"read_request_timeout_in_ms", K_U32, F(read_request_timeout_in_ms), 1, 3600000},
    {"write_request_timeout_in_ms", K_U32, F(write_request_timeout_in_ms), 1, 3600000},
    {"range_request_timeout_in_ms", K_U32, F(range_request_timeout_in_ms), 1, 3600000},
    {"cas_contention_timeout_in_ms", K_U32, F(cas_contention_timeout_in_ms), 1, 3600000},
    {"truncate_request_timeout_in_ms", K_U32, F(truncate_request_timeout_in_ms), 1, 3600000},
    {"request_timeout_in_ms", K_U32, F(request_timeout_in_ms), 1, 3600000},
    {"hinted_handoff_enabled", K_BOOL, F(hinted_handoff_enabled), 0, 0},
    {"max_hint_window_in_ms", K_U32, F(max_hint_window_in_ms), 0, 4294967295.0},
};
#undef F

typedef struct pctx {
    yaml_document_t *doc;
    server_config *c;
    char *err;
    size_t errlen;
} pctx;

static int fail(pctx *p, const char *key, const yaml_node_t *n, const char *what) {
    if (n && n->type == YAML_SCALAR_NODE)
        snprintf(p->err, p->errlen, "invalid value for '%s' (line %zu): %s, got '%s'", key,
                 n->start_mark.line + 1, what, (const char *)n->data.scalar.value);
    else
        snprintf(p->err, p->errlen, "invalid value for '%s'%s%s", key, what ? ": " : "",
                 what ? what : "");
    return ILION_EINVALID;
}

/* A YAML null: `key:`, `key: ~`, `key: null` keep the default, as Cassandra does. */
static bool is_null(const yaml_node_t *n) {
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *v = (const char *)n->data.scalar.value;
    return v[0] == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 || strcmp(v, "Null") == 0 ||
           strcmp(v, "NULL") == 0;
}

static int get_scalar(pctx *p, const char *key, const yaml_node_t *n, const char **out) {
    if (n->type != YAML_SCALAR_NODE) return fail(p, key, n, "expected a single value");
    *out = (const char *)n->data.scalar.value;
    return 0;
}

static int copy_str(pctx *p, const char *key, const char *v, char *dst, size_t cap) {
    size_t n = strlen(v);
    if (n >= cap) {
        snprintf(p->err, p->errlen, "invalid value for '%s': longer than %zu characters", key,
                 cap - 1);
        return ILION_EINVALID;
    }
    memcpy(dst, v, n + 1);
    return 0;
}

static int parse_u64(const char *v, double min, double max, uint64_t *out) {
    if (!*v || *v == '-' || *v == '+') return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || *end) return -1;
    if ((double)x < min || (double)x > max) return -1;
    *out = x;
    return 0;
}

static int parse_bool(const char *v, bool *out) {
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) *out = true;
    else if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) *out = false;
    else return -1;
    return 0;
}

static yaml_node_t *node(pctx *p, int idx) { return yaml_document_get_node(p->doc, idx); }

static int parse_dirs(pctx *p, const char *key, yaml_node_t *n) {
    server_config *c = p->c;
    if (n->type == YAML_SCALAR_NODE) {   /* a single directory written without a list */
        c->ndata_dirs = 1;
        return copy_str(p, key, (const char *)n->data.scalar.value, c->data_file_directories[0],
                        SERVER_CONFIG_PATH_MAX);
    }
    if (n->type != YAML_SEQUENCE_NODE) return fail(p, key, n, "expected a list of directories");
    uint32_t k = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = node(p, *it);
        const char *v = NULL;
        if (!e || get_scalar(p, key, e, &v)) return fail(p, key, NULL, "expected directory names");
        if (!*v) return fail(p, key, e, "empty directory name");
        if (k == SERVER_CONFIG_MAX_DIRS) return fail(p, key, e, "too many directories (max 8)");
        int r = copy_str(p, key, v, c->data_file_directories[k], SERVER_CONFIG_PATH_MAX);
        if (r) return r;
        k++;
    }
    if (k == 0) return fail(p, key, NULL, "at least one directory is needed");
    c->ndata_dirs = k;
    return 0;
}

/* Splits "a, b,c" into c->seeds. */
static int set_seeds(pctx *p, const char *key, const char *v) {
    server_config *c = p->c;
    uint32_t k = 0;
    const char *s = v;
    while (*s) {
        while (*s == ' ' || *s == ',' || *s == '\t') s++;
        if (!*s) break;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) t--;
        size_t n = (size_t)(t - s);
        if (k == SERVER_CONFIG_MAX_SEEDS) return fail(p, key, NULL, "too many seeds (max 32)");
        if (n >= SERVER_CONFIG_NAME_MAX) return fail(p, key, NULL, "seed address too long");
        memcpy(c->seeds[k], s, n);
        c->seeds[k][n] = 0;
        k++;
        s = e;
    }
    c->nseeds = k;
    return 0;
}

/* Cassandra's nested form:
 *   seed_provider:
 *     - class_name: org.apache.cassandra.locator.SimpleSeedProvider
 *       parameters:
 *         - seeds: "127.0.0.1,127.0.0.2" */
static int parse_seed_provider(pctx *p, const char *key, yaml_node_t *n) {
    if (n->type != YAML_SEQUENCE_NODE || n->data.sequence.items.top == n->data.sequence.items.start)
        return fail(p, key, NULL, "expected a list with one '- class_name: ...' entry");
    yaml_node_t *m = node(p, *n->data.sequence.items.start);
    if (!m || m->type != YAML_MAPPING_NODE)
        return fail(p, key, NULL, "expected '- class_name: ...' with 'parameters'");
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
        if (!k || !v || k->type != YAML_SCALAR_NODE) continue;
        const char *kn = (const char *)k->data.scalar.value;
        if (!strcmp(kn, "class_name")) {
            const char *s = NULL;
            int r = get_scalar(p, "seed_provider.class_name", v, &s);
            if (r) return r;
            r = copy_str(p, "seed_provider.class_name", s, p->c->seed_provider_class,
                         SERVER_CONFIG_NAME_MAX);
            if (r) return r;
        } else if (!strcmp(kn, "parameters")) {
            if (v->type != YAML_SEQUENCE_NODE)
                return fail(p, "seed_provider.parameters", NULL, "expected a list ('- seeds: ...')");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *pm = node(p, *it);
                if (!pm || pm->type != YAML_MAPPING_NODE)
                    return fail(p, "seed_provider.parameters", NULL, "expected '- seeds: ...'");
                for (yaml_node_pair_t *q = pm->data.mapping.pairs.start;
                     q < pm->data.mapping.pairs.top; q++) {
                    yaml_node_t *qk = node(p, q->key), *qv = node(p, q->value);
                    if (!qk || !qv || qk->type != YAML_SCALAR_NODE) continue;
                    if (!strcmp((const char *)qk->data.scalar.value, "seeds")) {
                        const char *s = NULL;
                        int r = get_scalar(p, "seed_provider.parameters.seeds", qv, &s);
                        if (r) return r;
                        r = set_seeds(p, "seed_provider.parameters.seeds", s);
                        if (r) return r;
                    } else {
                        LOG_WARN("config", "unknown key 'seed_provider.parameters.%s' ignored",
                                 (const char *)qk->data.scalar.value);
                        p->c->unknown_keys++;
                    }
                }
            }
        } else {
            LOG_WARN("config", "unknown key 'seed_provider.%s' ignored", kn);
            p->c->unknown_keys++;
        }
    }
    return 0;
}

static int apply(pctx *p, const key_def *d, yaml_node_t *n) {
    server_config *c = p->c;
    char *base = (char *)c;
    const char *v = NULL;
    uint64_t u;
    int r;
    if (is_null(n)) return 0;
    switch (d->kind) {
    case K_DIRS: return parse_dirs(p, d->name, n);
    case K_SEEDS: return parse_seed_provider(p, d->name, n);
    default: break;
    }
    if ((r = get_scalar(p, d->name, n, &v))) return r;
    switch (d->kind) {
    case K_STR:
        if (!*v) return fail(p, d->name, n, "must not be empty");
        return copy_str(p, d->name, v, base + d->off, SERVER_CONFIG_NAME_MAX);
    case K_PATH:
        return copy_str(p, d->name, v, base + d->off, SERVER_CONFIG_PATH_MAX);
    case K_TOKENS: {
        int64_t *t = malloc(sizeof(int64_t) * TOKENS_MAX);
        uint32_t nt = 0;
        int bad = !t || tokens_parse_text(v, t, TOKENS_MAX, &nt) || nt == 0 ||
                  tokens_normalize(t, nt);
        free(t);
        if (bad) return fail(p, d->name, n, "expected distinct comma-separated Murmur3 tokens");
        return copy_str(p, d->name, v, base + d->off, sizeof c->initial_token);
    }
    case K_PARTITIONER:
        if (strcmp(v, "org.apache.cassandra.dht.Murmur3Partitioner") &&
            strcmp(v, "Murmur3Partitioner"))
            return fail(p, d->name, n, "only org.apache.cassandra.dht.Murmur3Partitioner is supported");
        return copy_str(p, d->name, v, base + d->off, SERVER_CONFIG_NAME_MAX);
    case K_U32:
        if (parse_u64(v, d->min, d->max, &u)) {
            char what[96];
            snprintf(what, sizeof what, "expected an integer in [%.0f, %.0f]", d->min, d->max);
            return fail(p, d->name, n, what);
        }
        *(uint32_t *)(base + d->off) = (uint32_t)u;
        return 0;
    case K_PORT:
        if (parse_u64(v, 0, 65535, &u)) return fail(p, d->name, n, "expected a port number (0-65535)");
        *(uint16_t *)(base + d->off) = (uint16_t)u;
        return 0;
    case K_DOUBLE: {
        char *end;
        errno = 0;
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x) || x < d->min || x > d->max) {
            char what[96];
            snprintf(what, sizeof what, "expected a number in [%g, %g]", d->min, d->max);
            return fail(p, d->name, n, what);
        }
        *(double *)(base + d->off) = x;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(v, (bool *)(base + d->off))) return fail(p, d->name, n, "expected true or false");
        return 0;
    case K_SYNC: {
        enum storage_sync_mode *m = (enum storage_sync_mode *)(base + d->off);
        if (!strcmp(v, "periodic")) *m = STORAGE_SYNC_PERIODIC;
        else if (!strcmp(v, "batch")) *m = STORAGE_SYNC_BATCH;
        else if (!strcmp(v, "group")) *m = STORAGE_SYNC_GROUP;
        else return fail(p, d->name, n, "expected periodic, batch or group");
        return 0;
    }
    case K_COMMIT_POLICY:
    case K_DISK_POLICY: {
        enum storage_failure_policy *m = (enum storage_failure_policy *)(base + d->off);
        if (!strcmp(v, "stop")) *m = STORAGE_POLICY_STOP;
        else if (!strcmp(v, "die")) *m = STORAGE_POLICY_DIE;
        else if (!strcmp(v, "ignore")) *m = STORAGE_POLICY_IGNORE;
        else return fail(p, d->name, n, "expected stop, die or ignore");
        return 0;
    }
    default:
        return 0;
    }
}

int server_config_parse(const char *text, size_t len, server_config *c, char *err,
                        size_t errlen) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (errlen) err[0] = 0;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(err, errlen, "YAML error at line %zu, column %zu: %s",
                 parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                 parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        return ILION_EINVALID;
    }
    pctx p = {&doc, c, err, errlen};
    int rc = 0;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && !is_null(root)) {
        if (root->type != YAML_MAPPING_NODE) {
            snprintf(err, errlen, "the configuration must be a mapping of keys to values");
            rc = ILION_EINVALID;
        }
        for (yaml_node_pair_t *pr = rc ? NULL : root->data.mapping.pairs.start;
             pr && pr < root->data.mapping.pairs.top && rc == 0; pr++) {
            yaml_node_t *k = node(&p, pr->key), *v = node(&p, pr->value);
            if (!k || !v || k->type != YAML_SCALAR_NODE) {
                snprintf(err, errlen, "configuration keys must be plain names");
                rc = ILION_EINVALID;
                break;
            }
            const char *name = (const char *)k->data.scalar.value;
            const key_def *d = NULL;
            for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
                if (!strcmp(keys[i].name, name)) d = &keys[i];
            if (!d) {
                LOG_WARN("config", "unknown key '%s' (line %zu) ignored", name,
                         k->start_mark.line + 1);
                c->unknown_keys++;
                continue;
            }
            rc = apply(&p, d, v);
        }
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int server_config_load(const char *path, server_config *c, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    for (;;) {
        if (!text) {
            fclose(f);
            snprintf(err, errlen, "out of memory reading %s", path);
            return -ENOMEM;
        }
        len += fread(text + len, 1, cap - len, f);
        if (len < cap) break;
        if (cap >= 64u * 1024 * 1024) {
            free(text);
            fclose(f);
            snprintf(err, errlen, "%s is too large for a configuration file", path);
            return ILION_ETOOBIG;
        }
        cap *= 2;
        char *n = realloc(text, cap);
        if (!n) free(text);
        text = n;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) {
        free(text);
        snprintf(err, errlen, "cannot read %s", path);
        return -EIO;
    }
    char msg[512];
    int rc = server_config_parse(text, len, c, msg, sizeof msg);
    free(text);
    if (rc) snprintf(err, errlen, "%s: %s", path, msg);
    return rc;
}
