/* Byte-comparable encoding of clustering components; the scheme is in
 * docs/clustering-encoding.md. Every component is self-delimiting (fixed width or terminated),
 * so a concatenation of components orders component by component and a prefix orders first. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bignum.h"
#include "ilion/schema/types.h"
#include "ilion/util/err.h"

/* Escaped byte strings: 0x00 → 0x00 0xFF, end → 0x00 0x01 (sorts before any continuation). */
static void enc_bytes(const uint8_t *v, size_t len, buf *out) {
    size_t s = 0;
    for (size_t i = 0; i < len; i++) {
        if (v[i] == 0) {
            buf_put(out, v + s, i - s);
            buf_u8(out, 0x00);
            buf_u8(out, 0xFF);
            s = i + 1;
        }
    }
    buf_put(out, v + s, len - s);
    buf_u8(out, 0x00);
    buf_u8(out, 0x01);
}

static void flip_sign(const uint8_t *v, size_t len, buf *out) {
    size_t at = out->len;
    buf_put(out, v, len);
    if (!out->oom && len) out->data[at] ^= 0x80;
}

static void enc_float(const uint8_t *v, size_t len, buf *out) {
    size_t at = out->len;
    buf_put(out, v, len);
    if (out->oom) return;
    if (v[0] & 0x80)
        for (size_t i = 0; i < len; i++) out->data[at + i] = (uint8_t)~out->data[at + i];
    else
        out->data[at] ^= 0x80;
}

static void enc_uuid(const uint8_t *v, buf *out) {
    uint64_t msb = be64_get(v);
    unsigned ver = (unsigned)(msb >> 12) & 0xF;
    buf_u8(out, (uint8_t)ver);
    if (ver == 1) {
        uint64_t ts = ((msb & 0x0FFF) << 48) | (((msb >> 16) & 0xFFFF) << 32) | (msb >> 32);
        buf_u64(out, ts);
        for (int i = 8; i < 16; i++) buf_u8(out, v[i] ^ 0x80);
    } else {
        buf_put(out, v, 16);
    }
}

static void enc_varint(const uint8_t *v, size_t len, buf *out) {
    size_t off = bignum_minimal_offset(v, len);
    uint32_t l = (uint32_t)(len - off);
    if (v[0] & 0x80) {
        buf_u8(out, 0x00);
        buf_u32(out, ~l);
    } else {
        buf_u8(out, 0x01);
        buf_u32(out, l);
    }
    buf_put(out, v + off, l);
}

static int enc_decimal(const uint8_t *v, size_t len, buf *out) {
    int32_t scale = (int32_t)be32_get(v);
    buf d;
    buf_init(&d);
    bool neg = false;
    if (bignum_to_decimal(v + 4, len - 4, &neg, &d) || d.oom) {
        buf_free(&d);
        return ILION_EINVALID;
    }
    size_t n = d.len;
    while (n > 1 && d.data[n - 1] == '0') n--;
    if (n == 1 && d.data[0] == '0') {
        buf_u8(out, 0x01);
        buf_free(&d);
        return 0;
    }
    /* value = 0.D * 10^E with E = digits - scale (before stripping trailing zeros). */
    int64_t e = (int64_t)d.len - scale;
    size_t at = out->len;
    buf_u8(out, neg ? 0x00 : 0x02);
    buf_u64(out, (uint64_t)e ^ 0x8000000000000000ULL);
    for (size_t i = 0; i < n; i++) buf_u8(out, (uint8_t)(d.data[i] - '0' + 1));
    buf_u8(out, 0x00);
    if (neg && !out->oom)
        for (size_t i = at + 1; i < out->len; i++) out->data[i] = (uint8_t)~out->data[i];
    buf_free(&d);
    return 0;
}

int schema_ck_encode(const schema_type *t, bool desc, const uint8_t *v, size_t len, buf *out) {
    char err[8];
    if (schema_type_is_collection(t) || schema_value_validate(t, v, len, err, sizeof err))
        return ILION_EINVALID;
    size_t at = out->len;
    int rc = 0;
    switch (t->id) {
    case SCHEMA_T_BOOLEAN: buf_u8(out, v[0] ? 1 : 0); break;
    case SCHEMA_T_TINYINT: case SCHEMA_T_SMALLINT: case SCHEMA_T_INT: case SCHEMA_T_BIGINT:
    case SCHEMA_T_COUNTER: case SCHEMA_T_TIMESTAMP: case SCHEMA_T_TIME:
        flip_sign(v, len, out);
        break;
    case SCHEMA_T_DATE: buf_put(out, v, len); break;
    case SCHEMA_T_FLOAT: case SCHEMA_T_DOUBLE: enc_float(v, len, out); break;
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID: enc_uuid(v, out); break;
    case SCHEMA_T_INET:
        buf_u8(out, (uint8_t)len);
        buf_put(out, v, len);
        break;
    case SCHEMA_T_VARINT: enc_varint(v, len, out); break;
    case SCHEMA_T_DECIMAL: rc = enc_decimal(v, len, out); break;
    default: enc_bytes(v, len, out); break;
    }
    if (rc) {
        out->len = at;
        return rc;
    }
    if (out->oom) return -ENOMEM;
    if (desc)
        for (size_t i = at; i < out->len; i++) out->data[i] = (uint8_t)~out->data[i];
    return 0;
}

/* --- decoding: reads through an inverting view when desc ------------------------------- */

typedef struct crd {
    rd *r;
    uint8_t x; /* 0x00 or 0xFF */
} crd;

static int c_u8(crd *c, uint8_t *b) {
    if (rd_u8(c->r, b)) return -1;
    *b ^= c->x;
    return 0;
}

static int c_take(crd *c, size_t n, uint8_t *dst) {
    const uint8_t *p;
    if (rd_bytes(c->r, n, &p)) return -1;
    for (size_t i = 0; i < n; i++) dst[i] = p[i] ^ c->x;
    return 0;
}

static int dec_bytes(crd *c, buf *out) {
    for (;;) {
        uint8_t b;
        if (c_u8(c, &b)) return ILION_ECORRUPT;
        if (b != 0) {
            buf_u8(out, b);
            continue;
        }
        if (c_u8(c, &b)) return ILION_ECORRUPT;
        if (b == 0x01) return 0;
        if (b != 0xFF) return ILION_ECORRUPT;
        buf_u8(out, 0);
    }
}

static int dec_decimal(crd *c, buf *out) {
    uint8_t sign;
    if (c_u8(c, &sign) || sign > 2) return ILION_ECORRUPT;
    if (sign == 1) {
        uint8_t z[5] = {0, 0, 0, 0, 0};
        buf_put(out, z, 5);
        return 0;
    }
    uint8_t x = sign == 0 ? 0xFF : 0x00;
    uint8_t eb[8];
    if (c_take(c, 8, eb)) return ILION_ECORRUPT;
    for (int i = 0; i < 8; i++) eb[i] ^= x;
    int64_t e = (int64_t)(be64_get(eb) ^ 0x8000000000000000ULL);
    buf digits;
    buf_init(&digits);
    int rc = ILION_ECORRUPT;
    for (;;) {
        uint8_t b;
        if (c_u8(c, &b)) goto out;
        b ^= x;
        if (b == 0) break;
        if (b > 10 || digits.len >= BIGNUM_MAX_BYTES * 2) goto out;
        buf_u8(&digits, (uint8_t)('0' + b - 1));
    }
    if (digits.len == 0 || digits.oom) goto out;
    int64_t scale = (int64_t)digits.len - e;
    if (scale < INT32_MIN || scale > INT32_MAX) goto out;
    buf_u32(out, (uint32_t)(int32_t)scale);
    if (bignum_from_decimal((const char *)digits.data, digits.len, sign == 0, out)) goto out;
    rc = 0;
out:
    buf_free(&digits);
    return rc;
}

int schema_ck_decode(const schema_type *t, bool desc, rd *r, buf *out) {
    crd c = {r, desc ? 0xFF : 0x00};
    uint8_t tmp[17];
    switch (t->id) {
    case SCHEMA_T_BOOLEAN:
        if (c_u8(&c, tmp) || tmp[0] > 1) return ILION_ECORRUPT;
        buf_u8(out, tmp[0]);
        return 0;
    case SCHEMA_T_TINYINT: case SCHEMA_T_SMALLINT: case SCHEMA_T_INT: case SCHEMA_T_BIGINT:
    case SCHEMA_T_COUNTER: case SCHEMA_T_TIMESTAMP: case SCHEMA_T_TIME: case SCHEMA_T_DATE:
    case SCHEMA_T_FLOAT: case SCHEMA_T_DOUBLE: {
        int n = t->id == SCHEMA_T_TINYINT ? 1 : t->id == SCHEMA_T_SMALLINT ? 2
              : (t->id == SCHEMA_T_INT || t->id == SCHEMA_T_DATE || t->id == SCHEMA_T_FLOAT) ? 4 : 8;
        if (c_take(&c, (size_t)n, tmp)) return ILION_ECORRUPT;
        if (t->id == SCHEMA_T_FLOAT || t->id == SCHEMA_T_DOUBLE) {
            if (tmp[0] & 0x80) tmp[0] ^= 0x80;
            else for (int i = 0; i < n; i++) tmp[i] = (uint8_t)~tmp[i];
        } else if (t->id != SCHEMA_T_DATE) {
            tmp[0] ^= 0x80;
        }
        buf_put(out, tmp, (size_t)n);
        return 0;
    }
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID: {
        if (c_take(&c, 17, tmp) || tmp[0] > 15) return ILION_ECORRUPT;
        uint8_t u[16];
        if (tmp[0] == 1) {
            uint64_t ts = be64_get(tmp + 1);
            if (ts >> 60) return ILION_ECORRUPT;
            uint64_t msb = ((ts & 0xFFFFFFFFULL) << 32) | (((ts >> 32) & 0xFFFF) << 16) |
                           (1ULL << 12) | ((ts >> 48) & 0x0FFF);
            be64_put(u, msb);
            for (int i = 0; i < 8; i++) u[8 + i] = tmp[9 + i] ^ 0x80;
        } else {
            memcpy(u, tmp + 1, 16);
            if ((u[6] >> 4) != tmp[0]) return ILION_ECORRUPT;
        }
        buf_put(out, u, 16);
        return 0;
    }
    case SCHEMA_T_INET: {
        uint8_t l;
        if (c_u8(&c, &l) || (l != 4 && l != 16) || c_take(&c, l, tmp)) return ILION_ECORRUPT;
        buf_put(out, tmp, l);
        return 0;
    }
    case SCHEMA_T_VARINT: {
        uint8_t s, lb[4];
        if (c_u8(&c, &s) || s > 1 || c_take(&c, 4, lb)) return ILION_ECORRUPT;
        uint32_t l = be32_get(lb);
        if (s == 0) l = ~l;
        if (l == 0 || l > BIGNUM_MAX_BYTES || rd_left(r) < l) return ILION_ECORRUPT;
        size_t at = out->len;
        const uint8_t *p;
        rd_bytes(r, l, &p);
        buf_put(out, p, l);
        if (out->oom) return -ENOMEM;
        if (desc) for (size_t i = at; i < out->len; i++) out->data[i] = (uint8_t)~out->data[i];
        if ((out->data[at] >> 7) != (s == 0)) return ILION_ECORRUPT;
        return 0;
    }
    case SCHEMA_T_DECIMAL: return dec_decimal(&c, out);
    case SCHEMA_T_LIST: case SCHEMA_T_SET: case SCHEMA_T_MAP: return ILION_ECORRUPT;
    default: return dec_bytes(&c, out);
    }
}

int schema_value_compare(const schema_type *t, const uint8_t *a, size_t alen, const uint8_t *b,
                         size_t blen) {
    buf ea, eb;
    buf_init(&ea);
    buf_init(&eb);
    int ra = schema_ck_encode(t, false, a, alen, &ea);
    int rb = schema_ck_encode(t, false, b, blen, &eb);
    int c;
    if (ra || rb) {
        if (!ra) c = -1;
        else if (!rb) c = 1;
        else {
            size_t m = alen < blen ? alen : blen;
            c = m ? memcmp(a, b, m) : 0;
            if (c == 0) c = (alen > blen) - (alen < blen);
        }
    } else {
        size_t m = ea.len < eb.len ? ea.len : eb.len;
        c = m ? memcmp(ea.data, eb.data, m) : 0;
        if (c == 0) c = (ea.len > eb.len) - (ea.len < eb.len);
    }
    buf_free(&ea);
    buf_free(&eb);
    return c < 0 ? -1 : c > 0;
}

bool schema_prefix_successor(const uint8_t *p, size_t len, buf *out) {
    size_t n = len;
    while (n > 0 && p[n - 1] == 0xFF) n--;
    if (n == 0) return false;
    buf_put(out, p, n);
    if (!out->oom) out->data[out->len - 1]++;
    return true;
}

void schema_routing_key(const uint8_t *const *vals, const uint32_t *lens, size_t n, buf *out) {
    if (n == 1) {
        buf_put(out, vals[0], lens[0]);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        buf_u16(out, (uint16_t)lens[i]);
        buf_put(out, vals[i], lens[i]);
        buf_u8(out, 0);
    }
}

int schema_routing_key_split(const uint8_t *key, size_t len, size_t n, const uint8_t **vals,
                             uint32_t *lens) {
    if (n == 1) {
        vals[0] = key;
        lens[0] = (uint32_t)len;
        return 0;
    }
    rd r;
    rd_init(&r, key, len);
    for (size_t i = 0; i < n; i++) {
        uint16_t l;
        uint8_t z;
        if (rd_u16(&r, &l) || rd_bytes(&r, l, &vals[i]) || rd_u8(&r, &z) || z != 0)
            return ILION_ECORRUPT;
        lens[i] = l;
    }
    return rd_left(&r) ? ILION_ECORRUPT : 0;
}
