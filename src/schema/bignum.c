#include "bignum.h"

#include <stdlib.h>
#include <string.h>

size_t bignum_minimal_offset(const uint8_t *v, size_t len) {
    size_t i = 0;
    while (i + 1 < len && ((v[i] == 0x00 && !(v[i + 1] & 0x80)) ||
                           (v[i] == 0xFF && (v[i + 1] & 0x80))))
        i++;
    return i;
}

int bignum_to_decimal(const uint8_t *v, size_t len, bool *neg, buf *out) {
    if (len == 0 || len > BIGNUM_MAX_BYTES) return -1;
    uint8_t *mag = malloc(len);
    char *dig = malloc(len * 3 + 2);
    if (!mag || !dig) {
        free(mag);
        free(dig);
        return -1;
    }
    memcpy(mag, v, len);
    *neg = (v[0] & 0x80) != 0;
    if (*neg) { /* magnitude = ~v + 1 */
        for (size_t i = 0; i < len; i++) mag[i] = (uint8_t)~mag[i];
        for (size_t i = len; i-- > 0;)
            if (++mag[i] != 0) break;
    }
    size_t nd = 0, start = 0;
    for (;;) {
        while (start < len && mag[start] == 0) start++;
        if (start == len) break;
        uint32_t rem = 0;
        for (size_t i = start; i < len; i++) {
            uint32_t cur = (rem << 8) | mag[i];
            mag[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
        }
        dig[nd++] = (char)('0' + rem);
    }
    if (nd == 0) dig[nd++] = '0';
    for (size_t i = 0; i < nd / 2; i++) {
        char t = dig[i];
        dig[i] = dig[nd - 1 - i];
        dig[nd - 1 - i] = t;
    }
    buf_put(out, dig, nd);
    free(mag);
    free(dig);
    return 0;
}

int bignum_from_decimal(const char *digits, size_t n, bool neg, buf *out) {
    if (n == 0 || n > BIGNUM_MAX_BYTES * 2) return -1;
    size_t cap = n / 2 + 2;
    uint8_t *mag = calloc(cap, 1); /* big-endian, mag[cap-1] least significant */
    if (!mag) return -1;
    for (size_t k = 0; k < n; k++) {
        if (digits[k] < '0' || digits[k] > '9') {
            free(mag);
            return -1;
        }
        uint32_t carry = (uint32_t)(digits[k] - '0');
        for (size_t i = cap; i-- > 0;) {
            uint32_t cur = mag[i] * 10u + carry;
            mag[i] = (uint8_t)cur;
            carry = cur >> 8;
        }
    }
    if (neg) {
        for (size_t i = 0; i < cap; i++) mag[i] = (uint8_t)~mag[i];
        for (size_t i = cap; i-- > 0;)
            if (++mag[i] != 0) break;
    }
    size_t off = bignum_minimal_offset(mag, cap);
    buf_put(out, mag + off, cap - off);
    free(mag);
    return 0;
}
