/* The CQL client library (tools/cqlclient): body encoders, response decoders on valid,
 * truncated and random input, lz4 framing, and a connection against an in-process fake server
 * (handshake with lz4, many streams answered out of order, timeouts, connection loss). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../tools/cqlclient/codec.c"
#include "../../tools/cqlclient/conn.c"

/* ---------------- encoders ---------------- */

Test(cqlc_codec, query_body_layout) {
    buf b;
    buf_init(&b);
    cqlc_value vals[2] = {{"ab", 2}, {NULL, -1}};
    cqlc_params p;
    cqlc_params_init(&p, CQLC_QUORUM);
    p.values = vals;
    p.nvalues = 2;
    p.page_size = 100;
    p.timestamp = 7;
    size_t start = cqlc_frame_begin(&b, 0, 5, CQLC_OP_QUERY);
    cqlc_body_query(&b, "SELECT 1", 8, &p);
    cqlc_frame_end(&b, start);
    static const uint8_t want[] = {
        0x04, 0x00, 0x00, 0x05, 0x07, 0, 0, 0, 39,       /* header, body 39 bytes */
        0, 0, 0, 8, 'S', 'E', 'L', 'E', 'C', 'T', ' ', '1', /* [long string] */
        0x00, 0x04,                                       /* QUORUM */
        0x25,                                             /* values | page size | timestamp */
        0x00, 0x02, 0, 0, 0, 2, 'a', 'b', 0xff, 0xff, 0xff, 0xff,
        0, 0, 0, 100,
        0, 0, 0, 0, 0, 0, 0, 7,
    };
    cr_assert_eq(b.len, sizeof want);
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0);
    buf_free(&b);
}

Test(cqlc_codec, serial_consistency_flag) {
    buf b;
    buf_init(&b);
    cqlc_params p;
    cqlc_params_init(&p, CQLC_QUORUM);
    p.serial_consistency = CQLC_LOCAL_SERIAL;
    p.timestamp = 9;
    uint8_t id[2] = {7, 8};
    cqlc_value v = {"k", 1};
    p.values = &v;
    p.nvalues = 1;
    cqlc_body_execute(&b, id, 2, &p);
    /* id, QUORUM, flags values|serial|timestamp, 1 value, serial level, then the timestamp
     * (spec order: values, page size, paging state, serial consistency, timestamp) */
    static const uint8_t want[] = {0, 2, 7, 8, 0, 4, 0x31, 0, 1, 0, 0, 0, 1, 'k',
                                   0, 9, 0, 0, 0, 0, 0, 0, 0, 9};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0);
    buf_reset(&b);
    cqlc_params_init(&p, CQLC_ONE);
    cqlc_body_execute(&b, id, 2, &p);
    cr_assert_eq(b.len, 7);
    cr_expect_eq(b.data[6], 0, "no serial level unless asked for");
    buf_free(&b);
}

static void put_str(buf *b, const char *s);

Test(cqlc_codec, write_timeout_fields) {
    buf b;
    buf_init(&b);
    buf_u32(&b, 0x1100);
    put_str(&b, "Operation timed out");
    buf_u16(&b, CQLC_SERIAL);
    buf_u32(&b, 1);
    buf_u32(&b, 2);
    put_str(&b, "CAS");
    st_arena a;
    arena_init(&a);
    cqlc_result r;
    cr_assert_eq(cqlc_decode_response(CQLC_OP_ERROR, 0, b.data, b.len, &a, &r), 0);
    cr_expect_eq(r.err_code, 0x1100);
    cr_expect_eq(r.err_cl, CQLC_SERIAL);
    cr_expect_eq(r.err_received, 1);
    cr_expect_eq(r.err_blockfor, 2);
    cr_assert_not_null(r.err_write_type);
    cr_expect_str_eq(r.err_write_type, "CAS");
    /* Cut anywhere in the extras: code and message still decode, the extras stay unset. */
    size_t full = b.len;
    for (size_t cut = 4 + 2 + 19; cut < full; cut++) {
        cr_assert_eq(cqlc_decode_response(CQLC_OP_ERROR, 0, b.data, cut, &a, &r), 0, "cut %zu", cut);
        cr_expect_str_eq(r.err_msg, "Operation timed out");
        cr_expect_null(r.err_write_type, "cut %zu", cut);
        cr_expect_eq(r.err_cl, 0xffff, "cut %zu", cut);
    }
    /* Unavailable: cl, required, alive */
    buf_reset(&b);
    buf_u32(&b, 0x1000);
    put_str(&b, "no");
    buf_u16(&b, CQLC_QUORUM);
    buf_u32(&b, 2);
    buf_u32(&b, 1);
    cr_assert_eq(cqlc_decode_response(CQLC_OP_ERROR, 0, b.data, b.len, &a, &r), 0);
    cr_expect_eq(r.err_cl, CQLC_QUORUM);
    cr_expect_eq(r.err_blockfor, 2);
    cr_expect_eq(r.err_received, 1);
    arena_free(&a);
    buf_free(&b);
}

Test(cqlc_codec, execute_and_startup_bodies) {
    buf b;
    buf_init(&b);
    cqlc_params p;
    cqlc_params_init(&p, CQLC_ONE);
    p.skip_metadata = true;
    uint8_t id[3] = {1, 2, 3};
    cqlc_body_execute(&b, id, 3, &p);
    static const uint8_t want[] = {0, 3, 1, 2, 3, 0, 1, 0x02};
    cr_assert_eq(b.len, sizeof want);
    cr_assert_eq(memcmp(b.data, want, sizeof want), 0);
    buf_reset(&b);
    cqlc_body_startup(&b, "lz4");
    cr_assert_eq(be16_get(b.data), 2);
    cr_assert(memmem(b.data, b.len, "CQL_VERSION", 11) != NULL);
    cr_assert(memmem(b.data, b.len, "3.0.0", 5) != NULL);
    cr_assert(memmem(b.data, b.len, "COMPRESSION", 11) != NULL);
    buf_free(&b);
}

Test(cqlc_codec, consistency_names) {
    cr_expect_eq(cqlc_consistency_parse("quorum"), 4);
    cr_expect_eq(cqlc_consistency_parse("LOCAL_ONE"), 10);
    cr_expect_eq(cqlc_consistency_parse("MOST"), -1);
    cr_expect_str_eq(cqlc_consistency_name(5), "ALL");
}

/* ---------------- decoders ---------------- */

static void put_str(buf *b, const char *s) { cqlc_put_string(b, s, strlen(s)); }

/* RESULT Rows: ks.t (key blob, tokens set<text>) with 2 rows, global table spec. */
static void make_rows(buf *b) {
    buf_u32(b, 2);             /* Rows */
    buf_u32(b, 0x01);          /* global spec */
    buf_u32(b, 2);
    put_str(b, "ks");
    put_str(b, "t");
    put_str(b, "key");
    buf_u16(b, CQLC_T_BLOB);
    put_str(b, "tokens");
    buf_u16(b, CQLC_T_SET);
    buf_u16(b, CQLC_T_VARCHAR);
    buf_u32(b, 2);             /* rows */
    buf_u32(b, 1);
    buf_u8(b, 0xAA);
    /* set<text> {"-5", "17"} */
    buf_u32(b, 4 + 4 + 2 + 4 + 2);
    buf_u32(b, 2);
    buf_u32(b, 2);
    buf_put(b, "-5", 2);
    buf_u32(b, 2);
    buf_put(b, "17", 2);
    buf_u32(b, (uint32_t)-1);  /* null */
    buf_u32(b, 0);             /* empty set */
}

Test(cqlc_codec, rows_decode) {
    buf b;
    buf_init(&b);
    make_rows(&b);
    st_arena a;
    arena_init(&a);
    cqlc_result r;
    cr_assert_eq(cqlc_decode_response(CQLC_OP_RESULT, 0, b.data, b.len, &a, &r), 0);
    cr_assert_eq(r.kind, CQLC_KIND_ROWS);
    cr_assert_eq(r.meta.ncols, 2);
    cr_assert_eq(r.nrows, 2);
    cr_expect_str_eq(r.meta.cols[1].name, "tokens");
    cr_expect_str_eq(r.meta.cols[1].keyspace, "ks");
    cr_expect_eq(r.meta.cols[1].type, CQLC_T_SET);
    cr_expect_eq(r.meta.cols[1].sub[0], CQLC_T_VARCHAR);
    cr_expect_eq(cqlc_result_column(&r, "tokens"), 1);
    cr_expect_eq(cqlc_result_column(&r, "nope"), -1);
    cr_expect_eq(r.cells[0].len, 1);
    cr_expect_eq(r.cells[0].data[0], 0xAA);
    cr_expect_eq(r.cells[2].len, -1);
    size_t pos = 0;
    const uint8_t *e;
    int32_t el;
    cr_assert_eq(cqlc_cell_collection_next(&r.cells[1], &pos, &e, &el), 1);
    cr_expect(el == 2 && !memcmp(e, "-5", 2));
    cr_assert_eq(cqlc_cell_collection_next(&r.cells[1], &pos, &e, &el), 1);
    cr_expect(el == 2 && !memcmp(e, "17", 2));
    cr_assert_eq(cqlc_cell_collection_next(&r.cells[1], &pos, &e, &el), 0);
    arena_free(&a);
    buf_free(&b);
}

static void make_prepared(buf *b) {
    buf_u32(b, 4);
    buf_u16(b, 4);
    buf_put(b, "\x01\x02\x03\x04", 4);
    buf_u32(b, 0x01);           /* bind metadata: global spec */
    buf_u32(b, 2);
    buf_u32(b, 1);              /* one pk column */
    buf_u16(b, 0);
    put_str(b, "ks");
    put_str(b, "t");
    put_str(b, "key");
    buf_u16(b, CQLC_T_BLOB);
    put_str(b, "v");
    buf_u16(b, CQLC_T_MAP);
    buf_u16(b, CQLC_T_INT);
    buf_u16(b, CQLC_T_CUSTOM);
    put_str(b, "org.example.T");
    buf_u32(b, 0x04);           /* result metadata: no metadata */
    buf_u32(b, 3);
}

Test(cqlc_codec, prepared_decode) {
    buf b;
    buf_init(&b);
    make_prepared(&b);
    st_arena a;
    arena_init(&a);
    cqlc_result r;
    cr_assert_eq(cqlc_decode_response(CQLC_OP_RESULT, 0, b.data, b.len, &a, &r), 0);
    cr_assert_eq(r.kind, CQLC_KIND_PREPARED);
    cr_expect_eq(r.prepared_id_len, 4);
    cr_expect_eq(r.npk, 1);
    cr_expect_eq(r.pk_index[0], 0);
    cr_expect_eq(r.bind.ncols, 2);
    cr_expect_eq(r.bind.cols[1].type, CQLC_T_MAP);
    cr_expect_eq(r.bind.cols[1].sub[0], CQLC_T_INT);
    cr_expect_eq(r.bind.cols[1].sub[1], CQLC_T_CUSTOM);
    cr_expect(r.meta.no_metadata);
    cr_expect_eq(r.meta.ncols, 3);
    arena_free(&a);
    buf_free(&b);
}

Test(cqlc_codec, error_supported_and_warnings) {
    buf b;
    buf_init(&b);
    buf_u16(&b, 1);
    put_str(&b, "careful");
    buf_u32(&b, 0x2200);
    put_str(&b, "unconfigured table x");
    st_arena a;
    arena_init(&a);
    cqlc_result r;
    cr_assert_eq(cqlc_decode_response(CQLC_OP_ERROR, CQLC_FLAG_WARNING, b.data, b.len, &a, &r), 0);
    cr_expect_eq(r.kind, CQLC_KIND_ERROR);
    cr_expect_eq(r.err_code, 0x2200);
    cr_expect_str_eq(r.err_msg, "unconfigured table x");
    cr_expect_eq(r.nwarnings, 1);
    cr_expect_str_eq(r.warnings[0], "careful");
    cr_expect_str_eq(cqlc_error_name(0x2200), "Invalid");
    buf_reset(&b);
    buf_u16(&b, 2);
    put_str(&b, "COMPRESSION");
    buf_u16(&b, 2);
    put_str(&b, "snappy");
    put_str(&b, "lz4");
    put_str(&b, "CQL_VERSION");
    buf_u16(&b, 1);
    put_str(&b, "3.4.5");
    cr_assert_eq(cqlc_decode_response(CQLC_OP_SUPPORTED, 0, b.data, b.len, &a, &r), 0);
    cr_assert_eq(r.nsupported, 3);
    cr_expect_str_eq(r.supported[1], "COMPRESSION=lz4");
    cr_expect_str_eq(r.supported[2], "CQL_VERSION=3.4.5");
    arena_free(&a);
    buf_free(&b);
}

/* Every truncation of a valid body, and random bodies, decode to an error or a result without
 * reading out of bounds (ASan builds check the "without"). */
Test(cqlc_codec, truncated_and_random_input_is_safe) {
    buf b;
    buf_init(&b);
    st_arena a;
    arena_init(&a);
    cqlc_result r;
    void (*makers[])(buf *) = {make_rows, make_prepared};
    for (size_t m = 0; m < 2; m++) {
        buf_reset(&b);
        makers[m](&b);
        for (size_t n = 0; n < b.len; n++) {
            uint8_t *copy = malloc(n ? n : 1);
            memcpy(copy, b.data, n);
            int rc = cqlc_decode_response(CQLC_OP_RESULT, 0, copy, n, &a, &r);
            /* A rows body cut after the row count can be valid; earlier cuts cannot. */
            if (m == 1) cr_expect_lt(rc, 0, "prepared body cut at %zu decoded", n);
            free(copy);
            arena_reset(&a);
        }
    }
    uint64_t s = 1;
    uint8_t junk[256];
    for (int i = 0; i < 20000; i++) {
        size_t n = (size_t)(i % 256);
        for (size_t j = 0; j < n; j++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            junk[j] = (uint8_t)(s >> 56);
            /* Keep counts small now and then so decoding gets deep. */
            if ((s >> 20) % 4 == 0) junk[j] &= 0x03;
        }
        if (n >= 4 && i % 2) be32_put(junk, (uint32_t)(i / 2 % 6));
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, junk, n);
        uint8_t op = (uint8_t)(i % 3 == 0 ? CQLC_OP_RESULT : i % 3 == 1 ? CQLC_OP_ERROR : CQLC_OP_SUPPORTED);
        (void)cqlc_decode_response(op, (uint8_t)(i % 16), copy, n, &a, &r);
        free(copy);
        arena_reset(&a);
    }
    arena_free(&a);
    buf_free(&b);
}

Test(cqlc_codec, lz4_round_trip_and_corruption) {
    buf in, z, out;
    buf_init(&in);
    buf_init(&z);
    buf_init(&out);
    for (int i = 0; i < 5000; i++) buf_u32(&in, (uint32_t)(i % 97));
    cr_assert_eq(cqlc_lz4_compress(in.data, in.len, &z), 0);
    cr_assert_lt(z.len, in.len);
    cr_assert_eq(cqlc_lz4_decompress(z.data, z.len, CQLC_MAX_BODY, &out), 0);
    cr_assert_eq(out.len, in.len);
    cr_assert_eq(memcmp(out.data, in.data, in.len), 0);
    /* Claimed length above the limit, short input, garbage block. */
    cr_expect_lt(cqlc_lz4_decompress(z.data, z.len, 100, &out), 0);
    cr_expect_lt(cqlc_lz4_decompress(z.data, 3, CQLC_MAX_BODY, &out), 0);
    z.data[z.len / 2] ^= 0xff;
    z.data[5] = 0xff;
    int rc = cqlc_lz4_decompress(z.data, z.len, CQLC_MAX_BODY, &out);
    cr_expect(rc < 0 || memcmp(out.data, in.data, in.len) != 0);
    be32_put(z.data, 0x7fffffff);
    cr_expect_lt(cqlc_lz4_decompress(z.data, z.len, CQLC_MAX_BODY, &out), 0);
    buf_free(&in);
    buf_free(&z);
    buf_free(&out);
}

Test(cqlc_codec, header_checks) {
    uint8_t h[9] = {0x84, 0, 0, 7, CQLC_OP_RESULT, 0, 0, 0, 10};
    cqlc_header hd;
    cr_assert_eq(cqlc_header_decode(h, 1000, &hd), 0);
    cr_expect_eq(hd.stream, 7);
    cr_expect_eq(hd.length, 10);
    h[0] = 0x83;
    cr_expect_lt(cqlc_header_decode(h, 1000, &hd), 0);
    h[0] = 0x84;
    be32_put(h + 5, 2000);
    cr_expect_lt(cqlc_header_decode(h, 1000, &hd), 0);
}

static const char *fmt1(uint16_t type, uint16_t s0, uint16_t s1, const void *p, int32_t n) {
    static char out[256];
    uint16_t sub[2] = {s0, s1};
    cqlc_cell c = {p, n};
    cqlc_cell_format(type, sub, &c, out, sizeof out);
    return out;
}

Test(cqlc_codec, cell_format) {
    cr_expect_str_eq(fmt1(CQLC_T_INT, 0, 0, "\xff\xff\xff\xfe", 4), "-2");
    cr_expect_str_eq(fmt1(CQLC_T_BIGINT, 0, 0, "\0\0\0\0\0\0\x01\0", 8), "256");
    cr_expect_str_eq(fmt1(CQLC_T_VARCHAR, 0, 0, "it's", 4), "'it''s'");
    cr_expect_str_eq(fmt1(CQLC_T_BLOB, 0, 0, "\x01\xab", 2), "0x01ab");
    cr_expect_str_eq(fmt1(CQLC_T_BOOLEAN, 0, 0, "\x01", 1), "true");
    cr_expect_str_eq(fmt1(CQLC_T_INET, 0, 0, "\x7f\0\0\x01", 4), "'127.0.0.1'");
    cr_expect_str_eq(fmt1(CQLC_T_UUID, 0, 0, "\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x02\x03\x04\x05\x06\x07\x08", 16),
                     "12345678-9abc-def0-0102-030405060708");
    cr_expect_str_eq(fmt1(CQLC_T_DOUBLE, 0, 0, "\x3f\xf8\0\0\0\0\0\0", 8), "1.5");
    cr_expect_str_eq(fmt1(CQLC_T_DATE, 0, 0, "\x80\0\0\x01", 4), "1");
    cr_expect_str_eq(fmt1(CQLC_T_INT, 0, 0, NULL, -1), "null");
    /* set<text> {'a', 'bc'}, map<int, text> {1: 'x'}, list<int> with a null */
    cr_expect_str_eq(fmt1(CQLC_T_SET, CQLC_T_VARCHAR, 0, "\0\0\0\x02\0\0\0\x01" "a\0\0\0\x02" "bc", 15),
                     "{'a', 'bc'}");
    cr_expect_str_eq(fmt1(CQLC_T_MAP, CQLC_T_INT, CQLC_T_VARCHAR,
                          "\0\0\0\x01\0\0\0\x04\0\0\0\x01\0\0\0\x01x", 17), "{1: 'x'}");
    cr_expect_str_eq(fmt1(CQLC_T_LIST, CQLC_T_INT, 0, "\0\0\0\x01\xff\xff\xff\xff", 8), "[null]");
    /* Wrong lengths fall back to hex and report an error. */
    uint16_t none[2] = {0, 0};
    char out[64];
    cqlc_cell bad = {(const uint8_t *)"\x01\x02\x03", 3};
    cr_expect_lt(cqlc_cell_format(CQLC_T_INT, none, &bad, out, sizeof out), 0);
    cr_expect_str_eq(out, "0x010203");
    cqlc_cell badset = {(const uint8_t *)"\0\0\0\x05\0\0\0\x01" "a", 9};
    uint16_t st[2] = {CQLC_T_VARCHAR, 0};
    cr_expect_lt(cqlc_cell_format(CQLC_T_SET, st, &badset, out, sizeof out), 0);
    /* Truncation keeps the buffer terminated and says so. */
    static uint8_t big[1000];
    memset(big, 0xaa, sizeof big);
    cqlc_cell bc = {big, sizeof big};
    char small[16];
    int n = cqlc_cell_format(CQLC_T_BLOB, none, &bc, small, sizeof small);
    cr_expect_lt(n, (int)sizeof small);
    cr_expect_eq(strlen(small), (size_t)n);
    cr_expect(strstr(small, "...") != NULL, "%s", small);
    /* Random bytes under every type never overrun. */
    uint64_t x = 7;
    for (int i = 0; i < 20000; i++) {
        uint8_t junk[40];
        size_t len = (size_t)(i % 40);
        for (size_t j = 0; j < len; j++) {
            x = x * 6364136223846793005ull + 1;
            junk[j] = (uint8_t)(x >> 59); /* small values make plausible lengths */
        }
        uint8_t *copy = malloc(len ? len : 1);
        memcpy(copy, junk, len);
        uint16_t sub[2] = {(uint16_t)(i % 0x15), (uint16_t)((i / 3) % 0x15)};
        cqlc_cell c = {copy, (int32_t)len};
        char o2[48];
        (void)cqlc_cell_format((uint16_t)(i % 3 == 0 ? CQLC_T_MAP : i % 3 == 1 ? CQLC_T_LIST : i % 0x15),
                               sub, &c, o2, sizeof o2);
        cr_assert_lt(strlen(o2), sizeof o2);
        free(copy);
    }
}

/* ---------------- connection against a fake server ---------------- */

/* The fake server answers OPTIONS (SUPPORTED with lz4), STARTUP (READY; lz4 from then on when
 * asked), and QUERY with a one-cell Rows result echoing the query text. Answers to all the
 * frames of one read are sent in reverse order, to check stream matching. Queries starting
 * with "silent" are not answered; "bye" closes the connection. */
typedef struct fake {
    uv_tcp_t listener;
    uv_tcp_t client;
    bool accepted;
    bool lz4;
    buf in;
    int queries;
} fake;

typedef struct fwrite_req {
    uv_write_t w;
    uint8_t *data;
} fwrite_req;

static void fake_on_written(uv_write_t *w, int status) {
    fwrite_req *r = (fwrite_req *)w;
    free(r->data);
    free(r);
}

static void fake_send(fake *f, buf *frames) {
    if (!frames->len) return;
    fwrite_req *r = malloc(sizeof *r);
    size_t len;
    r->data = buf_steal(frames, &len);
    uv_buf_t ub = uv_buf_init((char *)r->data, (unsigned)len);
    if (uv_write(&r->w, (uv_stream_t *)&f->client, &ub, 1, fake_on_written) < 0) {
        free(r->data);
        free(r);
    }
}

static void fake_answer(fake *f, buf *out, int16_t stream, uint8_t op, const buf *body) {
    bool z = f->lz4 && op != CQLC_OP_READY && op != CQLC_OP_SUPPORTED;
    size_t start = cqlc_frame_begin(out, z ? CQLC_FLAG_COMPRESSED : 0, stream, op);
    out->data[start] = 0x84;
    if (z) cqlc_lz4_compress(body->data, body->len, out);
    else buf_put(out, body->data, body->len);
    cqlc_frame_end(out, start);
}

static void fake_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    b->base = malloc(65536);
    b->len = 65536;
}

static void fake_closed(uv_handle_t *h) {}

static void fake_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    fake *f = st->data;
    if (nread < 0) {
        free(b->base);
        if (!uv_is_closing((uv_handle_t *)st)) uv_close((uv_handle_t *)st, fake_closed);
        return;
    }
    buf_put(&f->in, b->base, (size_t)nread);
    free(b->base);
    /* Collect the answers of up to 512 frames, then send them newest first; repeat. */
    static buf answers[512];
    bool bye = false;
    size_t off = 0;
    for (;;) {
    int nans = 0;
    size_t round_start = off;
    while (f->in.len - off >= 9 && nans < 510) {
        uint32_t len = be32_get(f->in.data + off + 5);
        if (f->in.len - off - 9 < len) break;
        uint8_t flags = f->in.data[off + 1];
        int16_t stream = (int16_t)be16_get(f->in.data + off + 2);
        uint8_t op = f->in.data[off + 4];
        const uint8_t *body = f->in.data + off + 9;
        buf plain;
        buf_init(&plain);
        if (flags & CQLC_FLAG_COMPRESSED) cr_assert_eq(cqlc_lz4_decompress(body, len, CQLC_MAX_BODY, &plain), 0);
        else buf_put(&plain, body, len);
        off += 9 + len;
        buf resp;
        buf_init(&resp);
        buf_init(&answers[nans]);
        if (op == CQLC_OP_OPTIONS) {
            buf_u16(&resp, 1);
            put_str(&resp, "COMPRESSION");
            buf_u16(&resp, 1);
            put_str(&resp, "lz4");
            fake_answer(f, &answers[nans++], stream, CQLC_OP_SUPPORTED, &resp);
        } else if (op == CQLC_OP_STARTUP) {
            f->lz4 = memmem(plain.data, plain.len, "lz4", 3) != NULL;
            fake_answer(f, &answers[nans++], stream, CQLC_OP_READY, &resp);
        } else if (op == CQLC_OP_REGISTER) {
            fake_answer(f, &answers[nans++], stream, CQLC_OP_READY, &resp);
        } else if (op == CQLC_OP_QUERY) {
            uint32_t qlen = be32_get(plain.data);
            const char *q = (const char *)plain.data + 4;
            f->queries++;
            if (qlen >= 5 && !memcmp(q, "event", 5)) {
                /* A pushed event on stream -1; answers leave newest first, so it follows the
                 * answer to this query. */
                buf ev;
                buf_init(&ev);
                put_str(&ev, "SCHEMA_CHANGE");
                put_str(&ev, "CREATED");
                put_str(&ev, "KEYSPACE");
                put_str(&ev, "ks1");
                buf_init(&answers[nans]);
                fake_answer(f, &answers[nans++], -1, CQLC_OP_EVENT, &ev);
                buf_free(&ev);
                buf_init(&answers[nans]);
            }
            if (qlen >= 3 && !memcmp(q, "bye", 3)) bye = true;
            if (qlen >= 6 && !memcmp(q, "silent", 6)) {
                buf_free(&answers[nans]);
            } else {
                buf_u32(&resp, 2);
                buf_u32(&resp, 0x01);
                buf_u32(&resp, 1);
                put_str(&resp, "ks");
                put_str(&resp, "t");
                put_str(&resp, "q");
                buf_u16(&resp, CQLC_T_VARCHAR);
                buf_u32(&resp, 1);
                buf_u32(&resp, qlen);
                buf_put(&resp, q, qlen);
                fake_answer(f, &answers[nans++], stream, CQLC_OP_RESULT, &resp);
            }
        } else {
            buf_u32(&resp, 0x000A);
            put_str(&resp, "unexpected opcode");
            fake_answer(f, &answers[nans++], stream, CQLC_OP_ERROR, &resp);
        }
        buf_free(&resp);
        buf_free(&plain);
    }
    buf all;
    buf_init(&all);
    for (int i = nans - 1; i >= 0; i--) {
        buf_put(&all, answers[i].data, answers[i].len);
        buf_free(&answers[i]);
    }
    fake_send(f, &all);
    buf_free(&all);
    if (off == round_start) break;
    }
    memmove(f->in.data, f->in.data + off, f->in.len - off);
    f->in.len -= off;
    if (bye && !uv_is_closing((uv_handle_t *)st)) uv_close((uv_handle_t *)st, fake_closed);
}

static void fake_on_conn(uv_stream_t *l, int status) {
    fake *f = l->data;
    cr_assert_eq(status, 0);
    uv_tcp_init(l->loop, &f->client);
    f->client.data = f;
    cr_assert_eq(uv_accept(l, (uv_stream_t *)&f->client), 0);
    f->accepted = true;
    uv_read_start((uv_stream_t *)&f->client, fake_alloc, fake_read);
}

static int fake_start(uv_loop_t *loop, fake *f) {
    memset(f, 0, sizeof *f);
    buf_init(&f->in);
    uv_tcp_init(loop, &f->listener);
    f->listener.data = f;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    cr_assert_eq(uv_tcp_bind(&f->listener, (struct sockaddr *)&sa, 0), 0);
    cr_assert_eq(uv_listen((uv_stream_t *)&f->listener, 16, fake_on_conn), 0);
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&f->listener, (struct sockaddr *)&bound, &len);
    return ntohs(bound.sin_port);
}

static void fake_stop(fake *f) {
    uv_close((uv_handle_t *)&f->listener, fake_closed);
    if (f->accepted && !uv_is_closing((uv_handle_t *)&f->client))
        uv_close((uv_handle_t *)&f->client, fake_closed);
    buf_free(&f->in);
}

typedef struct tstate {
    int connected;
    int answered;
    int mismatched;
    int timeouts;
    int closed_errors;
    int closes;
    char expect[2000][32];
} tstate;

static tstate ts;

static void t_connected(cqlc_conn *c, int status, void *arg) {
    cr_assert_eq(status, 0, "handshake failed: %d", status);
    ts.connected++;
}

static void t_answer(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    int i = (int)(intptr_t)arg;
    if (status == ILION_ETIMEOUT) {
        ts.timeouts++;
        return;
    }
    if (status == ILION_ECLOSED) {
        ts.closed_errors++;
        return;
    }
    cr_assert_eq(status, 0);
    cr_assert_eq(res->kind, CQLC_KIND_ROWS);
    cr_assert_eq(res->nrows, 1);
    const cqlc_cell *cell = &res->cells[0];
    if ((size_t)cell->len != strlen(ts.expect[i]) || memcmp(cell->data, ts.expect[i], (size_t)cell->len))
        ts.mismatched++;
    ts.answered++;
}

static void t_closed(cqlc_conn *c, void *arg) { ts.closes++; }

static void run_until(uv_loop_t *loop, int *counter, int want, int max_ms) {
    uint64_t deadline = uv_now(loop) + (uint64_t)max_ms;
    while (*counter < want && uv_now(loop) < deadline) uv_run(loop, UV_RUN_ONCE);
}

static void many_streams(bool lz4) {
    memset(&ts, 0, sizeof ts);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fake f;
    int port = fake_start(&loop, &f);
    cqlc_conn *c;
    cqlc_conn_opts o = {.host = "127.0.0.1", .port = port, .lz4 = lz4, .timeout_ms = 5000};
    cr_assert_eq(cqlc_conn_open(&loop, &o, t_connected, NULL, &c), 0);
    run_until(&loop, &ts.connected, 1, 5000);
    cr_assert_eq(ts.connected, 1);
    cr_assert(cqlc_conn_ready(c));
    cr_assert_eq(cqlc_conn_compressed(c), lz4);
    cqlc_params p;
    cqlc_params_init(&p, CQLC_ONE);
    for (int i = 0; i < 2000; i++) {
        snprintf(ts.expect[i], sizeof ts.expect[i], "query number %d", i);
        cr_assert_eq(cqlc_query(c, ts.expect[i], &p, t_answer, (void *)(intptr_t)i), 0);
    }
    cr_assert_eq(cqlc_conn_inflight(c), 2000);
    run_until(&loop, &ts.answered, 2000, 10000);
    cr_expect_eq(ts.answered, 2000);
    cr_expect_eq(ts.mismatched, 0);
    cr_expect_eq(cqlc_conn_inflight(c), 0);
    cr_expect_eq(f.queries, 2000);
    cqlc_conn_close(c, t_closed, NULL);
    fake_stop(&f);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(ts.closes, 1);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(cqlc_conn, many_streams_out_of_order) { many_streams(false); }
Test(cqlc_conn, many_streams_lz4) { many_streams(true); }

Test(cqlc_conn, timeout_then_connection_loss) {
    memset(&ts, 0, sizeof ts);
    uv_loop_t loop;
    uv_loop_init(&loop);
    fake f;
    int port = fake_start(&loop, &f);
    cqlc_conn *c;
    cqlc_conn_opts o = {.host = "127.0.0.1", .port = port, .timeout_ms = 200};
    cr_assert_eq(cqlc_conn_open(&loop, &o, t_connected, NULL, &c), 0);
    run_until(&loop, &ts.connected, 1, 5000);
    cqlc_params p;
    cqlc_params_init(&p, CQLC_ONE);
    snprintf(ts.expect[0], 32, "silent please");
    cr_assert_eq(cqlc_query(c, ts.expect[0], &p, t_answer, (void *)0), 0);
    run_until(&loop, &ts.timeouts, 1, 3000);
    cr_expect_eq(ts.timeouts, 1);
    cr_expect_eq(cqlc_conn_inflight(c), 0);
    /* Three queries wait silently, then "bye" makes the server hang up: all fail as closed. */
    for (int i = 1; i <= 3; i++) {
        snprintf(ts.expect[i], 32, "silent %d", i);
        cr_assert_eq(cqlc_query(c, ts.expect[i], &p, t_answer, (void *)(intptr_t)i), 0);
    }
    o.timeout_ms = 0;
    snprintf(ts.expect[4], 32, "bye");
    cr_assert_eq(cqlc_query(c, ts.expect[4], &p, t_answer, (void *)4), 0);
    run_until(&loop, &ts.closed_errors, 3, 3000);
    cr_expect_eq(ts.closed_errors + ts.answered, 4, "closed %d answered %d", ts.closed_errors, ts.answered);
    cr_expect_geq(ts.closed_errors, 3);
    cr_expect(!cqlc_conn_ready(c));
    cr_expect_eq(cqlc_query(c, "after", &p, t_answer, NULL), ILION_ECLOSED);
    cqlc_conn_close(c, t_closed, NULL);
    fake_stop(&f);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(ts.closes, 1);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

static int events, registered;
static char event_type[64];
static size_t event_len;

static void t_event(cqlc_conn *c, const char *type, const uint8_t *body, size_t len, void *arg) {
    snprintf(event_type, sizeof event_type, "%s", type);
    event_len = len;
    events++;
}

static void t_registered(cqlc_conn *c, int status, const cqlc_result *res, void *arg) {
    cr_assert_eq(status, 0);
    cr_assert_eq(res->kind, CQLC_KIND_READY);
    registered++;
}

Test(cqlc_conn, register_and_events) {
    for (int lz = 0; lz < 2; lz++) {
        memset(&ts, 0, sizeof ts);
        events = registered = 0;
        uv_loop_t loop;
        uv_loop_init(&loop);
        fake f;
        int port = fake_start(&loop, &f);
        cqlc_conn *c;
        cqlc_conn_opts o = {.host = "127.0.0.1", .port = port, .lz4 = lz};
        cr_assert_eq(cqlc_conn_open(&loop, &o, t_connected, NULL, &c), 0);
        run_until(&loop, &ts.connected, 1, 5000);
        cqlc_conn_on_event(c, t_event, NULL);
        const char *types[] = {"SCHEMA_CHANGE", "STATUS_CHANGE"};
        cr_assert_eq(cqlc_register(c, types, 2, t_registered, NULL), 0);
        run_until(&loop, &registered, 1, 3000);
        cr_assert_eq(registered, 1);
        cqlc_params p;
        cqlc_params_init(&p, CQLC_ONE);
        snprintf(ts.expect[0], 32, "event please");
        cr_assert_eq(cqlc_query(c, ts.expect[0], &p, t_answer, (void *)0), 0);
        run_until(&loop, &ts.answered, 1, 3000);
        cr_expect_eq(ts.answered, 1);
        cr_expect_eq(ts.mismatched, 0);
        cr_expect_eq(events, 1);
        cr_expect_str_eq(event_type, "SCHEMA_CHANGE");
        cr_expect_eq(event_len, 2 + 7 + 2 + 8 + 2 + 3);
        cqlc_conn_close(c, NULL, NULL);
        fake_stop(&f);
        uv_run(&loop, UV_RUN_DEFAULT);
        cr_expect_eq(uv_loop_close(&loop), 0);
    }
}

static int refused;
static void t_refused(cqlc_conn *c, int status, void *arg) {
    cr_expect_lt(status, 0);
    refused++;
}

Test(cqlc_conn, refused_connection_reports_once) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    /* Find a free port by binding and closing. */
    fake f;
    int port = fake_start(&loop, &f);
    fake_stop(&f);
    uv_run(&loop, UV_RUN_DEFAULT);
    cqlc_conn *c;
    cqlc_conn_opts o = {.host = "127.0.0.1", .port = port};
    refused = 0;
    cr_assert_eq(cqlc_conn_open(&loop, &o, t_refused, NULL, &c), 0);
    run_until(&loop, &refused, 1, 3000);
    cr_expect_eq(refused, 1);
    cqlc_conn_close(c, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(refused, 1);
    cr_expect_eq(uv_loop_close(&loop), 0);
    cqlc_conn_opts bad = {.host = "not-an-address"};
    cr_expect_eq(cqlc_conn_open(&loop, &bad, t_refused, NULL, &c), ILION_EINVALID);
}
