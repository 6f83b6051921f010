#include <criterion/criterion.h>
#include <stdint.h>

#include "ilion/util/buf.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

/* Vectors from ../shared/notes/driver-compat.md (Cassandra's Murmur3Partitioner). */
Test(murmur3, cassandra_vectors) {
    uint8_t i1[] = {0, 0, 0, 1}, i0[] = {0, 0, 0, 0}, im1[] = {0xff, 0xff, 0xff, 0xff};
    uint8_t i42[] = {0, 0, 0, 42}, b1[] = {0, 0, 0, 0, 0, 0, 0, 1};
    uint8_t x80[] = {0x80, 0x80, 0x80, 0x80, 0x80};
    uint8_t ff17[17];
    memset(ff17, 0xff, sizeof ff17);
    uint8_t comp[] = {0, 1, 'a', 0, 0, 4, 0, 0, 0, 1, 0};
    cr_assert_eq(murmur3_token(i1, 4), -4069959284402364209LL);
    cr_assert_eq(murmur3_token(i0, 4), -3485513579396041028LL);
    cr_assert_eq(murmur3_token(im1, 4), 7297452126230313552LL);
    cr_assert_eq(murmur3_token(i42, 4), -7160136740246525330LL);
    cr_assert_eq(murmur3_token(b1, 8), 6292367497774912474LL);
    cr_assert_eq(murmur3_token("key", 3), -6847573755651342660LL);
    cr_assert_eq(murmur3_token(x80, 5), -5942897619821749794LL);
    cr_assert_eq(murmur3_token(ff17, 17), -4128212798341382003LL);
    cr_assert_eq(murmur3_token(comp, sizeof comp), 8247712171917364652LL);
}

Test(buf, roundtrip_and_bounds) {
    buf b;
    buf_init(&b);
    buf_u8(&b, 7);
    buf_u16(&b, 0xBEEF);
    buf_u32(&b, 0xDEADBEEF);
    buf_u64(&b, 0x0102030405060708ULL);
    buf_varint(&b, 300);
    rd r;
    rd_init(&r, b.data, b.len);
    uint8_t a; uint16_t c; uint32_t d; uint64_t e, f;
    cr_assert_eq(rd_u8(&r, &a), 0); cr_assert_eq(a, 7);
    cr_assert_eq(rd_u16(&r, &c), 0); cr_assert_eq(c, 0xBEEF);
    cr_assert_eq(rd_u32(&r, &d), 0); cr_assert_eq(d, 0xDEADBEEF);
    cr_assert_eq(rd_u64(&r, &e), 0); cr_assert_eq(e, 0x0102030405060708ULL);
    cr_assert_eq(rd_varint(&r, &f), 0); cr_assert_eq(f, 300);
    cr_assert_eq(rd_u8(&r, &a), -1, "reading past the end must fail");
    buf_free(&b);
}

Test(err, messages) {
    cr_assert_str_eq(ilion_strerror(ILION_ECORRUPT), "data corruption detected");
    cr_assert_str_eq(ilion_strerror(-2), "No such file or directory");
    cr_assert_str_eq(ilion_strerror(0), "success");
}
