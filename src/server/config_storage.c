/* cassandra.yaml keys to storage engine options; apart from config.c so the configuration
 * parser links without the engine. */
#include "ilion/server/config.h"

void server_config_storage_options(const server_config *c, storage_options *o) {
    storage_options_default(o);
    o->data_dir = c->data_file_directories[0];
    o->commitlog_dir = c->commitlog_directory;
    o->sync_mode = c->commitlog_sync;
    o->sync_period_ms = c->commitlog_sync_period_in_ms;
    o->group_window_ms = c->commitlog_sync_group_window_in_ms;
    o->segment_size = (uint64_t)c->commitlog_segment_size_in_mb << 20;
    o->commitlog_total_space = (uint64_t)c->commitlog_total_space_in_mb << 20;
    if (c->memtable_heap_space_in_mb) o->memtable_space = (uint64_t)c->memtable_heap_space_in_mb << 20;
    o->commit_failure_policy = c->commit_failure_policy;
    o->disk_failure_policy = c->disk_failure_policy;
    o->flush_threads = c->memtable_flush_writers;
    o->compaction_threads = c->concurrent_compactors;
    o->block_cache_bytes = (uint64_t)c->file_cache_size_in_mb << 20;
}
