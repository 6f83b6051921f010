/* libFuzzer target: the input becomes a commit log segment file (and, when it is long enough,
 * its first bytes choose whether a valid header is put in front, so the record parser is
 * reached often); the log is opened and replayed. Any input must give 0, ILION_ECORRUPT or
 * ILION_EFORMAT — never a crash, a hang or a leak. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ilion/storage/commitlog.h"
#include "ilion/util/buf.h"
#include "ilion/util/crc32c.h"
#include "ilion/util/err.h"
#include "ilion/util/log.h"

static char g_dir[64];

static void clear_dir(void) {
    DIR *d = opendir(g_dir);
    if (!d) return;
    struct dirent *de;
    char p[256];
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, de->d_name);
        unlink(p);
    }
    closedir(d);
}

static int no_sync(void *arg, int fd) {
    (void)arg;
    (void)fd;
    return 0;
}

static int count_cb(void *arg, const uint8_t *payload, size_t len, uint64_t pos) {
    (void)pos;
    uint64_t *n = arg;
    /* touch every byte so ASan sees out-of-bounds payloads */
    uint8_t x = 0;
    for (size_t i = 0; i < len; i++) x ^= payload[i];
    *n += x + 1;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_dir[0]) {
        snprintf(g_dir, sizeof g_dir, "/tmp/ilion-fuzz-cl-%d", (int)getpid());
        mkdir(g_dir, 0755);
        log_set_level(LOG_LEVEL_ERROR + 1);
    }
    if (size > (1u << 20)) return 0;
    clear_dir();
    const uint32_t id = 5;
    uint8_t *img = malloc(size + 32);
    if (!img) return 0;
    size_t n = size;
    if (size > 0 && (data[0] & 1)) {
        /* valid header for segment 5 with a size taken from the input, then the rest */
        uint64_t segsize = 4096 + (size > 1 ? data[1] * 64u : 0);
        memcpy(img, "ILCL", 4);
        be32_put(img + 4, 1);
        be64_put(img + 8, id);
        be64_put(img + 16, segsize);
        be32_put(img + 24, 0);
        be32_put(img + 28, crc32c(0, img, 28));
        memcpy(img + 32, data + 1, size - 1);
        n = size + 31;
    } else {
        memcpy(img, data, size);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/CommitLog-1-%u.log", g_dir, id);
    FILE *f = fopen(path, "wb");
    if (!f) { free(img); return 0; }
    fwrite(img, 1, n, f);
    fclose(f);
    free(img);

    commitlog_options o = {0};
    o.dir = g_dir;
    o.sync_mode = STORAGE_SYNC_BATCH;
    o.segment_size = 8192;
    o.sync_fn = no_sync;
    commitlog *cl = NULL;
    uint64_t cnt = 0;
    int rc = commitlog_open(&o, 0, count_cb, &cnt, &cl);
    if (rc != 0 && rc != ILION_ECORRUPT && rc != ILION_EFORMAT) abort();
    if (cl) {
        /* a replayed log must take new records and replay them back */
        uint64_t pos;
        if (commitlog_append(cl, "x", 1, &pos) != 0) abort();
        if (commitlog_wait(cl, pos) != 0) abort();
        commitlog_close(cl);
        cl = NULL;
        uint64_t cnt2 = 0;
        rc = commitlog_open(&o, 0, count_cb, &cnt2, &cl);
        if (rc != 0) abort();   /* after sealing, the old segment must read cleanly */
        commitlog_close(cl);
    }
    return 0;
}
