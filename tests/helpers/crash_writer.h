/* Shared by the crash-test child (crash_writer.c) and its checker
 * (tests/unit/test_storage_commitlog_crash.c): values derived from keys, and the options both
 * sides open the data with. */
#ifndef ILION_TESTS_CRASH_WRITER_H
#define ILION_TESTS_CRASH_WRITER_H

#include <stdint.h>
#include <string.h>

#include "ilion/storage/commitlog.h"
#include "ilion/storage/engine.h"

#define CRASH_WRITER_TABLE 0x1234u
#define CRASH_WRITER_MAX_VALUE 300u

/* Fills out (CRASH_WRITER_MAX_VALUE bytes) with key's value; returns its length (>= 1). */
static inline uint32_t crash_writer_value(uint64_t key, uint8_t *out) {
    uint32_t len = 1 + (uint32_t)((key * 2654435761u) % (CRASH_WRITER_MAX_VALUE - 1));
    uint64_t x = key * 0x9E3779B97F4A7C15ull + 1;
    for (uint32_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out[i] = (uint8_t)x;
    }
    return len;
}

/* "batch" or "periodic" (the crash writer's last argument). */
static inline enum storage_sync_mode crash_writer_mode(const char *s) {
    return s && strcmp(s, "periodic") == 0 ? STORAGE_SYNC_PERIODIC : STORAGE_SYNC_BATCH;
}

/* Small segments and memtables so that runs roll segments, flush, discard and recycle. */
static inline void crash_writer_engine_options(storage_options *o, const char *data, const char *cl,
                                               enum storage_sync_mode mode) {
    storage_options_default(o);
    o->data_dir = data;
    o->commitlog_dir = cl;
    o->sync_mode = mode;
    o->segment_size = 128u << 10;
    o->memtable_space = 256u << 10;
    o->commitlog_total_space = 512u << 10;
}

static inline void crash_writer_log_options(commitlog_options *o, const char *dir,
                                            enum storage_sync_mode mode) {
    memset(o, 0, sizeof *o);
    o->dir = dir;
    o->sync_mode = mode;
    o->segment_size = 64u << 10;
}

#endif
