/*
 * Node configuration: cassandra.yaml with Cassandra 4.0 key names, parsed with libyaml.
 * Unknown keys are logged as warnings and ignored (so a real cassandra.yaml loads); a value
 * that does not fit its key stops start-up with a message naming the key. The defaults are the
 * ones cassandra.yaml.sample at the repository root documents.
 *
 * Threads: any thread; the functions share no state.
 */
#ifndef ILION_SERVER_CONFIG_H
#define ILION_SERVER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ilion/storage/engine.h"

#define SERVER_CONFIG_PATH_MAX 1024
#define SERVER_CONFIG_NAME_MAX 256
#define SERVER_CONFIG_MAX_DIRS 8
#define SERVER_CONFIG_MAX_SEEDS 32

typedef struct server_config {
    char cluster_name[SERVER_CONFIG_NAME_MAX];
    uint32_t num_tokens;
    char initial_token[4096];                 /* "t1,t2,..." used on first start; "" = random */
    char partitioner[SERVER_CONFIG_NAME_MAX];
    char listen_address[SERVER_CONFIG_NAME_MAX];
    char rpc_address[SERVER_CONFIG_NAME_MAX];
    uint16_t native_transport_port;
    uint16_t storage_port;
    bool start_native_transport;
    uint32_t native_transport_max_frame_size_in_mb;
    uint16_t admin_http_port;                 /* 0: no admin HTTP endpoint */

    char seed_provider_class[SERVER_CONFIG_NAME_MAX];
    uint32_t nseeds;
    char seeds[SERVER_CONFIG_MAX_SEEDS][SERVER_CONFIG_NAME_MAX];

    uint32_t ndata_dirs;
    char data_file_directories[SERVER_CONFIG_MAX_DIRS][SERVER_CONFIG_PATH_MAX];
    char commitlog_directory[SERVER_CONFIG_PATH_MAX];
    char hints_directory[SERVER_CONFIG_PATH_MAX];
    char saved_caches_directory[SERVER_CONFIG_PATH_MAX];

    enum storage_sync_mode commitlog_sync;
    uint32_t commitlog_sync_period_in_ms;
    uint32_t commitlog_sync_group_window_in_ms;
    uint32_t commitlog_segment_size_in_mb;
    uint32_t commitlog_total_space_in_mb;
    uint32_t memtable_heap_space_in_mb;
    uint32_t file_cache_size_in_mb;            /* SSTable block cache, default 256; 0 disables */
    uint32_t memtable_flush_writers;
    uint32_t concurrent_compactors;
    uint32_t compaction_throughput_mb_per_sec; /* 0 = unthrottled */
    enum storage_failure_policy commit_failure_policy;
    enum storage_failure_policy disk_failure_policy;

    char endpoint_snitch[SERVER_CONFIG_NAME_MAX];
    double phi_convict_threshold;
    uint32_t read_request_timeout_in_ms;
    uint32_t write_request_timeout_in_ms;
    uint32_t range_request_timeout_in_ms;
    uint32_t cas_contention_timeout_in_ms;
    uint32_t truncate_request_timeout_in_ms;
    uint32_t request_timeout_in_ms;
    bool hinted_handoff_enabled;
    uint32_t max_hint_window_in_ms;

    uint32_t unknown_keys;                     /* how many keys were warned about */
} server_config;

/* The defaults (the values cassandra.yaml.sample documents). */
void server_config_default(server_config *c);

/* Parses YAML text over c (start from server_config_default). Returns 0, or a negative error
 * with a message naming the key (or the YAML position) in err. */
int server_config_parse(const char *text, size_t len, server_config *c, char *err,
                        size_t errlen);
/* Reads and parses the file at path. */
int server_config_load(const char *path, server_config *c, char *err, size_t errlen);

/* The storage engine options the configuration implies (pointers into c). */
void server_config_storage_options(const server_config *c, storage_options *o);

#endif
