/*
 * CRC-32C (Castagnoli, polynomial 0x82F63B78 reflected), as used by iSCSI, ext4 and
 * LevelDB/RocksDB block trailers. Uses the SSE4.2 crc32 instruction when the CPU has it,
 * a table otherwise; both give the same values. Pure function; any thread.
 */
#ifndef ILION_UTIL_CRC32C_H
#define ILION_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* crc32c(0, "123456789", 9) == 0xE3069283. Pass a previous result to continue. */
uint32_t crc32c(uint32_t crc, const void *data, size_t len);

#endif
