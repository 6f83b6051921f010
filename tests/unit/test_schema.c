#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/schema/md5.h"
#include "ilion/schema/schema.h"
#include "ilion/schema/types.h"
#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void hex(const uint8_t *p, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

Test(schema, md5_vectors) {
    uint8_t d[16];
    char h[33];
    schema_md5("", 0, d);
    hex(d, 16, h);
    cr_assert_str_eq(h, "d41d8cd98f00b204e9800998ecf8427e");
    schema_md5("abc", 3, d);
    hex(d, 16, h);
    cr_assert_str_eq(h, "900150983cd24fb0d6963f7d28e17f72");
    const char *q = "12345678901234567890123456789012345678901234567890123456789012345678901234567890";
    schema_md5(q, strlen(q), d);
    hex(d, 16, h);
    cr_assert_str_eq(h, "57edf4a22be3c955ac49da2e2107b67a");
}

Test(schema, type_names) {
    schema_type t;
    char n[64];
    cr_assert_eq(schema_type_parse("TEXT", 4, &t), 0);
    cr_assert_eq(t.id, SCHEMA_T_VARCHAR);
    cr_assert_eq(schema_type_parse("map<text, int>", 14, &t), 0);
    schema_type_name(&t, n, sizeof n);
    cr_assert_str_eq(n, "map<text, int>");
    cr_assert_eq(schema_type_parse("frozen<set<text>>", 17, &t), 0);
    schema_type_name(&t, n, sizeof n);
    cr_assert_str_eq(n, "frozen<set<text>>");
    cr_assert_eq(schema_type_parse("nosuch", 6, &t), ILION_EINVALID);
    cr_assert_eq(schema_type_parse("list<int", 8, &t), ILION_EINVALID);
}

Test(schema, validation) {
    char err[128];
    schema_type t = SCHEMA_TYPE(SCHEMA_T_INT);
    uint8_t v[4] = {0, 0, 0, 1};
    cr_assert_eq(schema_value_validate(&t, v, 4, err, sizeof err), 0);
    cr_assert_eq(schema_value_validate(&t, v, 3, err, sizeof err), ILION_EINVALID);
    cr_assert(strstr(err, "Expected 4 byte int"), "%s", err);
    t = SCHEMA_TYPE(SCHEMA_T_VARCHAR);
    cr_assert_eq(schema_value_validate(&t, (const uint8_t *)"\xc3\x28", 2, err, sizeof err), ILION_EINVALID);
    cr_assert_eq(schema_value_validate(&t, (const uint8_t *)"h\xc3\xa9", 3, err, sizeof err), 0);
    t = SCHEMA_TYPE(SCHEMA_T_ASCII);
    cr_assert_eq(schema_value_validate(&t, (const uint8_t *)"h\xc3\xa9", 3, err, sizeof err), ILION_EINVALID);
}

static void lit(uint8_t id, enum schema_lit_kind k, const char *s, const char *want_fmt) {
    schema_type t = SCHEMA_TYPE(id);
    buf b, f;
    buf_init(&b);
    buf_init(&f);
    char err[128] = "";
    cr_assert_eq(schema_literal_convert(&t, k, s, strlen(s), &b, err, sizeof err), 0, "%s: %s", s, err);
    schema_value_format(&t, b.data, b.len, &f);
    buf_u8(&f, 0);
    cr_assert_str_eq((char *)f.data, want_fmt);
    buf_free(&b);
    buf_free(&f);
}

Test(schema, literals) {
    lit(SCHEMA_T_INT, SCHEMA_LIT_INTEGER, "-42", "-42");
    lit(SCHEMA_T_BIGINT, SCHEMA_LIT_INTEGER, "9223372036854775807", "9223372036854775807");
    lit(SCHEMA_T_VARINT, SCHEMA_LIT_INTEGER, "-123456789012345678901234567890", "-123456789012345678901234567890");
    lit(SCHEMA_T_VARINT, SCHEMA_LIT_INTEGER, "128", "128");
    lit(SCHEMA_T_DECIMAL, SCHEMA_LIT_FLOAT, "-3.14159", "-3.14159");
    lit(SCHEMA_T_DECIMAL, SCHEMA_LIT_FLOAT, "0.001", "0.001");
    lit(SCHEMA_T_VARCHAR, SCHEMA_LIT_STRING, "it's", "'it''s'");
    lit(SCHEMA_T_BOOLEAN, SCHEMA_LIT_BOOLEAN, "true", "true");
    lit(SCHEMA_T_BLOB, SCHEMA_LIT_HEX, "0xCAFE", "0xcafe");
    lit(SCHEMA_T_UUID, SCHEMA_LIT_UUID, "550e8400-e29b-41d4-a716-446655440000", "550e8400-e29b-41d4-a716-446655440000");
    lit(SCHEMA_T_INET, SCHEMA_LIT_STRING, "127.0.0.1", "'127.0.0.1'");
    lit(SCHEMA_T_INET, SCHEMA_LIT_STRING, "::1", "'0:0:0:0:0:0:0:1'");
    lit(SCHEMA_T_TIMESTAMP, SCHEMA_LIT_STRING, "1970-01-02 00:00:01+0000", "86401000");
    lit(SCHEMA_T_TIMESTAMP, SCHEMA_LIT_STRING, "2011-02-03T04:05:00.123Z", "1296705900123");
    lit(SCHEMA_T_DATE, SCHEMA_LIT_STRING, "1970-01-02", "1");
    lit(SCHEMA_T_TIME, SCHEMA_LIT_STRING, "00:00:01.5", "1500000000");
    schema_type t = SCHEMA_TYPE(SCHEMA_T_INT);
    buf b;
    buf_init(&b);
    char err[128];
    cr_assert_eq(schema_literal_convert(&t, SCHEMA_LIT_INTEGER, "3000000000", 10, &b, err, sizeof err), ILION_EINVALID);
    cr_assert_eq(schema_literal_convert(&t, SCHEMA_LIT_STRING, "abc", 3, &b, err, sizeof err), ILION_EINVALID);
    cr_assert(strstr(err, "Invalid STRING constant (abc) for type int"), "%s", err);
    t = SCHEMA_TYPE(SCHEMA_T_TIMEUUID);
    cr_assert_eq(schema_literal_convert(&t, SCHEMA_LIT_UUID, "550e8400-e29b-41d4-a716-446655440000", 36, &b, err, sizeof err), ILION_EINVALID);
    buf_free(&b);
}

/* A random valid value of type id, serialized. */
static size_t random_value(uint8_t id, uint8_t *v) {
    uint64_t r = rnd();
    switch (id) {
    case SCHEMA_T_INT: case SCHEMA_T_FLOAT: case SCHEMA_T_DATE: be32_put(v, (uint32_t)r); 
        if (id == SCHEMA_T_FLOAT && isnan(({float f; uint32_t b = be32_get(v); memcpy(&f, &b, 4); f;}))) be32_put(v, 0);
        return 4;
    case SCHEMA_T_BIGINT: case SCHEMA_T_TIMESTAMP: be64_put(v, r); return 8;
    case SCHEMA_T_DOUBLE: {
        double d = ((double)(int64_t)r) / (double)(1 + (rnd() % 100000));
        if (rnd() % 8 == 0) d = ldexp(d, (int)(rnd() % 200) - 100);
        uint64_t b;
        memcpy(&b, &d, 8);
        be64_put(v, b);
        return 8;
    }
    case SCHEMA_T_SMALLINT: be16_put(v, (uint16_t)r); return 2;
    case SCHEMA_T_TINYINT: v[0] = (uint8_t)r; return 1;
    case SCHEMA_T_TIME: be64_put(v, r % 86400000000000ULL); return 8;
    case SCHEMA_T_BOOLEAN: v[0] = r & 1; return 1;
    case SCHEMA_T_VARINT: case SCHEMA_T_DECIMAL: {
        size_t off = id == SCHEMA_T_DECIMAL ? 4 : 0;
        if (off) be32_put(v, (uint32_t)((int32_t)(rnd() % 21) - 10));
        size_t n = 1 + rnd() % 12;
        for (size_t i = 0; i < n; i++) v[off + i] = (uint8_t)(rnd() % 4 == 0 ? (rnd() & 1 ? 0 : 0xFF) : rnd());
        return off + n;
    }
    case SCHEMA_T_UUID: case SCHEMA_T_TIMEUUID:
        be64_put(v, r);
        be64_put(v + 8, rnd());
        v[6] = (uint8_t)((v[6] & 0x0F) | (id == SCHEMA_T_TIMEUUID || (rnd() & 1) ? 0x10 : 0x40));
        return 16;
    case SCHEMA_T_INET: {
        size_t n = rnd() & 1 ? 4 : 16;
        for (size_t i = 0; i < n; i++) v[i] = (uint8_t)rnd();
        return n;
    }
    default: {
        size_t n = rnd() % 6;
        for (size_t i = 0; i < n; i++) v[i] = (uint8_t)(rnd() % 4 == 0 ? 0 : (id == SCHEMA_T_BLOB ? "ab\x01\xff" : "ab\x01\x7f")[rnd() % 4]);
        return n;
    }
    }
}

/* Reference order, independent of the encoding. */
static int ref_cmp(uint8_t id, const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
    switch (id) {
    case SCHEMA_T_INT: { int32_t x = (int32_t)be32_get(a), y = (int32_t)be32_get(b); return (x > y) - (x < y); }
    case SCHEMA_T_BIGINT: case SCHEMA_T_TIMESTAMP: case SCHEMA_T_TIME: {
        int64_t x = (int64_t)be64_get(a), y = (int64_t)be64_get(b); return (x > y) - (x < y); }
    case SCHEMA_T_SMALLINT: { int16_t x = (int16_t)be16_get(a), y = (int16_t)be16_get(b); return (x > y) - (x < y); }
    case SCHEMA_T_TINYINT: { int8_t x = (int8_t)a[0], y = (int8_t)b[0]; return (x > y) - (x < y); }
    case SCHEMA_T_DATE: { uint32_t x = be32_get(a), y = be32_get(b); return (x > y) - (x < y); }
    case SCHEMA_T_BOOLEAN: return (a[0] > b[0]) - (a[0] < b[0]);
    case SCHEMA_T_DOUBLE: {
        uint64_t ua = be64_get(a), ub = be64_get(b); double x, y; memcpy(&x, &ua, 8); memcpy(&y, &ub, 8);
        if (x == y) return signbit(y) - signbit(x) ? (signbit(x) ? -1 : 1) : 0;
        return (x > y) - (x < y); }
    case SCHEMA_T_FLOAT: {
        uint32_t ua = be32_get(a), ub = be32_get(b); float x, y; memcpy(&x, &ua, 4); memcpy(&y, &ub, 4);
        if (x == y) return signbit(y) - signbit(x) ? (signbit(x) ? -1 : 1) : 0;
        return (x > y) - (x < y); }
    case SCHEMA_T_VARINT: case SCHEMA_T_DECIMAL: {
        /* Compare as long double: exact enough for <= 12-byte values when they differ by more
           than rounding; equal-looking values are skipped by the caller. */
        size_t off = id == SCHEMA_T_DECIMAL ? 4 : 0;
        long double x = 0, y = 0;
        for (size_t i = off; i < al; i++) x = x * 256 + a[i];
        if (a[off] & 0x80) x -= powl(256, (long double)(al - off));
        for (size_t i = off; i < bl; i++) y = y * 256 + b[i];
        if (b[off] & 0x80) y -= powl(256, (long double)(bl - off));
        if (off) { x *= powl(10, -(long double)(int32_t)be32_get(a)); y *= powl(10, -(long double)(int32_t)be32_get(b)); }
        if (x == y) return 0;
        if (fabsl(x - y) <= fabsl(x) * 1e-15L) return 2; /* too close to judge */
        return (x > y) - (x < y);
    }
    case SCHEMA_T_INET:
        if (al != bl) return al < bl ? -1 : 1;
        return memcmp(a, b, al) < 0 ? -1 : memcmp(a, b, al) > 0;
    default: {
        size_t m = al < bl ? al : bl;
        int c = m ? memcmp(a, b, m) : 0;
        if (c) return c < 0 ? -1 : 1;
        return (al > bl) - (al < bl);
    }
    }
}

static int bytes_cmp(const buf *a, const buf *b) {
    size_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(a->data, b->data, m) : 0;
    if (c) return c < 0 ? -1 : 1;
    return (a->len > b->len) - (a->len < b->len);
}

Test(schema, clustering_order_random) {
    const uint8_t ids[] = {SCHEMA_T_INT, SCHEMA_T_BIGINT, SCHEMA_T_SMALLINT, SCHEMA_T_TINYINT,
                           SCHEMA_T_DATE, SCHEMA_T_TIME, SCHEMA_T_TIMESTAMP, SCHEMA_T_BOOLEAN,
                           SCHEMA_T_DOUBLE, SCHEMA_T_FLOAT, SCHEMA_T_VARINT, SCHEMA_T_DECIMAL,
                           SCHEMA_T_VARCHAR, SCHEMA_T_BLOB, SCHEMA_T_INET, SCHEMA_T_UUID,
                           SCHEMA_T_TIMEUUID};
    for (size_t k = 0; k < sizeof ids; k++) {
        schema_type t = SCHEMA_TYPE(ids[k]);
        for (int it = 0; it < 2000; it++) {
            uint8_t a[32], b[32];
            size_t al = random_value(ids[k], a), bl = random_value(ids[k], b);
            for (int desc = 0; desc < 2; desc++) {
                buf ea, eb;
                buf_init(&ea);
                buf_init(&eb);
                cr_assert_eq(schema_ck_encode(&t, desc, a, al, &ea), 0, "type %d", ids[k]);
                cr_assert_eq(schema_ck_encode(&t, desc, b, bl, &eb), 0);
                int want = ids[k] == SCHEMA_T_UUID || ids[k] == SCHEMA_T_TIMEUUID ? 2 : ref_cmp(ids[k], a, al, b, bl);
                int got = bytes_cmp(&ea, &eb);
                if (want != 2) cr_assert_eq(got, desc ? -want : want, "type 0x%x desc %d iter %d", ids[k], desc, it);
                /* round trip: decode and re-encode gives the same bytes */
                rd r;
                rd_init(&r, ea.data, ea.len);
                buf dv, e2;
                buf_init(&dv);
                buf_init(&e2);
                cr_assert_eq(schema_ck_decode(&t, desc, &r, &dv), 0, "type 0x%x", ids[k]);
                cr_assert_eq(rd_left(&r), 0);
                cr_assert_eq(schema_ck_encode(&t, desc, dv.data, dv.len, &e2), 0);
                cr_assert_eq(bytes_cmp(&ea, &e2), 0, "type 0x%x round trip", ids[k]);
                if (ids[k] != SCHEMA_T_VARINT && ids[k] != SCHEMA_T_DECIMAL) {
                    cr_assert_eq(dv.len, al);
                    if (ids[k] != SCHEMA_T_BOOLEAN) cr_assert(al == 0 || memcmp(dv.data, a, al) == 0);
                }
                buf_free(&ea); buf_free(&eb); buf_free(&dv); buf_free(&e2);
            }
        }
    }
}

Test(schema, timeuuid_orders_by_time) {
    schema_type t = SCHEMA_TYPE(SCHEMA_T_TIMEUUID);
    for (int it = 0; it < 500; it++) {
        uint64_t t1 = rnd() >> 4, t2 = rnd() >> 4;
        uint8_t a[16], b[16];
        uint64_t m1 = ((t1 & 0xFFFFFFFF) << 32) | (((t1 >> 32) & 0xFFFF) << 16) | 0x1000 | (t1 >> 48);
        uint64_t m2 = ((t2 & 0xFFFFFFFF) << 32) | (((t2 >> 32) & 0xFFFF) << 16) | 0x1000 | (t2 >> 48);
        be64_put(a, m1); be64_put(a + 8, rnd());
        be64_put(b, m2); be64_put(b + 8, rnd());
        int c = schema_value_compare(&t, a, 16, b, 16);
        if (t1 != t2) cr_assert_eq(c, t1 < t2 ? -1 : 1);
    }
}

Test(schema, composite_prefix_and_successor) {
    schema_type tt = SCHEMA_TYPE(SCHEMA_T_VARCHAR), ti = SCHEMA_TYPE(SCHEMA_T_INT);
    uint8_t one[4] = {0, 0, 0, 1}, neg[4] = {0xFF, 0xFF, 0xFF, 0xFF};
    buf p, k1, k2, k3, s;
    buf_init(&p); buf_init(&k1); buf_init(&k2); buf_init(&k3); buf_init(&s);
    schema_ck_encode(&tt, false, (const uint8_t *)"ab", 2, &p);
    schema_ck_encode(&tt, false, (const uint8_t *)"ab", 2, &k1);
    schema_ck_encode(&ti, false, neg, 4, &k1);
    schema_ck_encode(&tt, false, (const uint8_t *)"ab", 2, &k2);
    schema_ck_encode(&ti, false, one, 4, &k2);
    schema_ck_encode(&tt, false, (const uint8_t *)"ab\0", 3, &k3);
    schema_ck_encode(&ti, false, neg, 4, &k3);
    cr_assert_lt(bytes_cmp(&p, &k1), 0);  /* a prefix orders first */
    cr_assert_lt(bytes_cmp(&k1, &k2), 0); /* -1 < 1 in the second component */
    cr_assert_lt(bytes_cmp(&k2, &k3), 0); /* "ab" < "ab\0" whatever follows */
    cr_assert(schema_prefix_successor(p.data, p.len, &s));
    cr_assert_gt(bytes_cmp(&s, &k2), 0);
    cr_assert_lt(bytes_cmp(&s, &k3), 0);
    uint8_t ff[2] = {0xFF, 0xFF};
    buf_reset(&s);
    cr_assert(!schema_prefix_successor(ff, 2, &s));
    buf_free(&p); buf_free(&k1); buf_free(&k2); buf_free(&k3); buf_free(&s);
}

Test(schema, decode_garbage_never_crashes) {
    const uint8_t ids[] = {SCHEMA_T_INT, SCHEMA_T_VARINT, SCHEMA_T_DECIMAL, SCHEMA_T_VARCHAR,
                           SCHEMA_T_UUID, SCHEMA_T_INET, SCHEMA_T_DOUBLE};
    for (int it = 0; it < 5000; it++) {
        uint8_t g[24];
        size_t n = rnd() % sizeof g;
        for (size_t i = 0; i < n; i++) g[i] = (uint8_t)rnd();
        schema_type t = SCHEMA_TYPE(ids[it % sizeof ids]);
        rd r;
        rd_init(&r, g, n);
        buf o;
        buf_init(&o);
        (void)schema_ck_decode(&t, it & 1, &r, &o);
        buf_free(&o);
        schema_table *tb = NULL;
        if (schema_table_decode(g, n, &tb) == 0) schema_table_free(tb);
    }
}

Test(schema, routing_keys_and_tokens) {
    uint8_t i1[4] = {0, 0, 0, 1};
    const uint8_t *vals[2] = {(const uint8_t *)"a", i1};
    uint32_t lens[2] = {1, 4};
    buf b;
    buf_init(&b);
    schema_routing_key(vals, lens, 2, &b);
    cr_assert_eq(b.len, 3u + 1 + 6 + 1);
    cr_assert_eq(murmur3_token(b.data, b.len), 8247712171917364652LL);
    const uint8_t *sv[2];
    uint32_t sl[2];
    cr_assert_eq(schema_routing_key_split(b.data, b.len, 2, sv, sl), 0);
    cr_assert_eq(sl[0], 1);
    cr_assert_eq(sl[1], 4);
    cr_assert_eq(memcmp(sv[1], i1, 4), 0);
    cr_assert_eq(schema_routing_key_split(b.data, b.len - 1, 2, sv, sl), ILION_ECORRUPT);
    buf_reset(&b);
    schema_routing_key(vals + 1, lens + 1, 1, &b);
    cr_assert_eq(murmur3_token(b.data, b.len), -4069959284402364209LL);
    buf_free(&b);
}

Test(schema, catalog_roundtrip_and_version) {
    schema_catalog *c = schema_catalog_new();
    schema_keyspace *k = calloc(1, sizeof *k);
    strcpy(k->name, "ks");
    k->repl.cls = SCHEMA_REPL_NTS;
    k->repl.ndcs = 1;
    strcpy(k->repl.dcs[0].name, "dc1");
    k->repl.dcs[0].rf = 3;
    cr_assert_eq(schema_keyspace_add(c, k), 0);
    schema_catalog_update_version(c);
    uint8_t v1[16];
    memcpy(v1, c->version, 16);
    schema_table *t = schema_table_alloc(3);
    strcpy(t->ks, "ks");
    strcpy(t->name, "t");
    t->id = 77;
    t->npk = 1;
    t->nck = 1;
    strcpy(t->cols[0].name, "k");
    t->cols[0].type = SCHEMA_TYPE(SCHEMA_T_INT);
    strcpy(t->cols[1].name, "c");
    t->cols[1].kind = SCHEMA_COL_CLUSTERING;
    t->cols[1].desc = true;
    t->cols[1].id = 1;
    t->cols[1].type = SCHEMA_TYPE(SCHEMA_T_VARCHAR);
    strcpy(t->cols[2].name, "v");
    t->cols[2].kind = SCHEMA_COL_REGULAR;
    t->cols[2].id = 2;
    t->cols[2].type = SCHEMA_TYPE(SCHEMA_T_MAP);
    t->cols[2].type.sub[0] = SCHEMA_T_VARCHAR;
    t->cols[2].type.sub[1] = SCHEMA_T_INT;
    cr_assert_eq(schema_table_add(c, t), 0);
    schema_catalog_update_version(c);
    cr_assert_neq(memcmp(v1, c->version, 16), 0);
    cr_assert_eq(c->version[6] >> 4, 3);
    buf b;
    buf_init(&b);
    schema_table_encode(t, &b);
    schema_table *t2;
    cr_assert_eq(schema_table_decode(b.data, b.len, &t2), 0);
    cr_assert_str_eq(t2->cols[1].name, "c");
    cr_assert(t2->cols[1].desc);
    cr_assert_eq(t2->cols[2].type.sub[1], SCHEMA_T_INT);
    cr_assert_eq(t2->id, 77);
    for (size_t cut = 0; cut < b.len; cut++) cr_assert_eq(schema_table_decode(b.data, cut, &t2 /*unused*/) , ILION_ECORRUPT);
    buf_reset(&b);
    schema_keyspace_encode(k, &b);
    schema_keyspace *k2;
    cr_assert_eq(schema_keyspace_decode(b.data, b.len, &k2), 0);
    cr_assert_eq(k2->repl.dcs[0].rf, 3);
    schema_keyspace_free(k2);
    buf_free(&b);
    cr_assert_eq(schema_table_add(c, t2), ILION_EEXISTS);
    schema_table_free(t2);
    cr_assert_eq(schema_table_remove(c, "ks", "t"), 0);
    cr_assert_null(schema_table_get(c, "ks", "t"));
    schema_catalog_free(c);
}
