/*
 * File helpers for durable, crash-safe files: full reads/writes that retry short transfers,
 * write-temp → fsync → rename → fsync-dir publication, directory creation and removal.
 * Every failure is -errno. Stateless; any thread.
 */
#ifndef ILION_UTIL_FILEIO_H
#define ILION_UTIL_FILEIO_H

#include <stddef.h>
#include <stdint.h>

int file_write_full(int fd, const void *p, size_t n);
/* Reads exactly n bytes at off; -EIO ("short") when the file ends first. */
int file_pread_full(int fd, void *p, size_t n, uint64_t off);
int file_fsync_dir(const char *dir);
/* Writes dir/name durably: dir/name.tmp written and fsynced, renamed, dir fsynced. */
int file_write_atomic(const char *dir, const char *name, const void *p, size_t n);
/* Reads a whole file (at most max bytes, else -EFBIG); *out is malloc'd (free() it). */
int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len);
/* mkdir -p (mode 0755). */
int file_mkdirs(const char *path);
/* Removes a directory and the regular files in it (one level, as table dirs are). */
int file_remove_dir(const char *path);

#endif
