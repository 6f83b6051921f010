#include "ilion/cluster/localstate.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "ilion/util/buf.h"
#include "ilion/util/err.h"

#define LS_MAGIC 0x494c4c53u  /* "ILLS" */
#define LS_VERSION 1
#define LS_MAX_FILE (64u << 10)

static int sys_dir(const char *data_dir, char *out, size_t n) {
    int k = snprintf(out, n, "%s/system", data_dir);
    return k < 0 || (size_t)k >= n ? ILION_EINVALID : 0;
}

static int mkdir_p(const char *path) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return ILION_EINVALID;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST) return -errno;
    return 0;
}

int localstate_load(const char *data_dir, localstate *out) {
    char dir[PATH_MAX], path[PATH_MAX + 32];
    int rc = sys_dir(data_dir, dir, sizeof dir);
    if (rc < 0) return rc;
    snprintf(path, sizeof path, "%s/local.state", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    uint8_t *data = malloc(LS_MAX_FILE);
    if (!data) {
        close(fd);
        return -ENOMEM;
    }
    size_t n = 0;
    for (;;) {
        ssize_t k = read(fd, data + n, LS_MAX_FILE - n);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            break;
        }
        if (k == 0) break;
        n += (size_t)k;
        if (n == LS_MAX_FILE) {
            rc = ILION_ETOOBIG;
            break;
        }
    }
    close(fd);
    if (rc == 0) {
        rc = ILION_ECORRUPT;
        memset(out, 0, sizeof *out);
        rd r;
        uint32_t magic, ver, crc;
        uint16_t nl;
        uint32_t gen;
        const uint8_t *p;
        if (n < 4) {
            rc = ILION_ETRUNCATED;
        } else if (be32_get(data + n - 4) != (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)(n - 4))) {
            rc = ILION_ECHECKSUM;
        } else {
            rd_init(&r, data, n - 4);
            (void)crc;
            if (rd_u32(&r, &magic) == 0 && magic == LS_MAGIC && rd_u32(&r, &ver) == 0) {
                if (ver != LS_VERSION) {
                    rc = ILION_EFORMAT;
                } else if (rd_bytes(&r, 16, &p) == 0 && (memcpy(out->host_id, p, 16), 1) &&
                           rd_u32(&r, &gen) == 0 && rd_u16(&r, &nl) == 0 &&
                           nl < sizeof out->cluster_name && rd_bytes(&r, nl, &p) == 0) {
                    out->generation = (int32_t)gen;
                    memcpy(out->cluster_name, p, nl);
                    out->cluster_name[nl] = 0;
                    if (tokens_parse(r.p, rd_left(&r), out->tokens, TOKENS_MAX, &out->ntokens) == 0) rc = 0;
                }
            }
        }
    }
    free(data);
    return rc;
}

int localstate_save(const char *data_dir, const localstate *s) {
    char dir[PATH_MAX], path[PATH_MAX + 32], tmp[PATH_MAX + 32];
    int rc = sys_dir(data_dir, dir, sizeof dir);
    if (rc < 0) return rc;
    rc = mkdir_p(dir);
    if (rc < 0) return rc;
    snprintf(path, sizeof path, "%s/local.state", dir);
    snprintf(tmp, sizeof tmp, "%s/local.state.tmp", dir);
    buf b;
    buf_init(&b);
    buf_u32(&b, LS_MAGIC);
    buf_u32(&b, LS_VERSION);
    buf_put(&b, s->host_id, 16);
    buf_u32(&b, (uint32_t)s->generation);
    size_t nl = strnlen(s->cluster_name, sizeof s->cluster_name);
    buf_u16(&b, (uint16_t)nl);
    buf_put(&b, s->cluster_name, nl);
    tokens_serialize(s->tokens, s->ntokens, &b);
    buf_u32(&b, (uint32_t)crc32(crc32(0L, Z_NULL, 0), b.data, (uInt)b.len));
    if (b.oom) {
        buf_free(&b);
        return -ENOMEM;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        buf_free(&b);
        return rc;
    }
    size_t off = 0;
    while (off < b.len) {
        ssize_t k = write(fd, b.data + off, b.len - off);
        if (k < 0) {
            if (errno == EINTR) continue;
            rc = -errno;
            break;
        }
        off += (size_t)k;
    }
    if (rc == 0 && fsync(fd) < 0) rc = -errno;
    close(fd);
    buf_free(&b);
    if (rc == 0 && rename(tmp, path) < 0) rc = -errno;
    if (rc == 0) {
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) return -errno;
        if (fsync(dfd) < 0) rc = -errno;
        close(dfd);
    } else {
        unlink(tmp);
    }
    return rc;
}
