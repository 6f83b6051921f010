/* Native protocol v4 frame and body codecs for the client: pure functions, no I/O. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lz4.h>

#include "cqlclient.h"
#include "ilion/util/err.h"

static const char *const cl_names[] = {
    "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM",
    "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
};

int cqlc_consistency_parse(const char *name) {
    for (size_t i = 0; i < sizeof cl_names / sizeof cl_names[0]; i++)
        if (strcasecmp(name, cl_names[i]) == 0) return (int)i;
    return -1;
}

const char *cqlc_consistency_name(int cl) {
    if (cl < 0 || (size_t)cl >= sizeof cl_names / sizeof cl_names[0]) return "?";
    return cl_names[cl];
}

/* ---- writers ---- */

size_t cqlc_frame_begin(buf *b, uint8_t flags, int16_t stream, uint8_t opcode) {
    size_t start = b->len;
    buf_u8(b, CQLC_VERSION);
    buf_u8(b, flags);
    buf_u16(b, (uint16_t)stream);
    buf_u8(b, opcode);
    buf_u32(b, 0);
    return start;
}

void cqlc_frame_end(buf *b, size_t start) {
    if (b->oom) return;
    buf_patch_u32(b, start + 5, (uint32_t)(b->len - start - CQLC_HEADER_LEN));
}

void cqlc_put_string(buf *b, const char *s, size_t n) {
    if (n > UINT16_MAX) n = UINT16_MAX;
    buf_u16(b, (uint16_t)n);
    buf_put(b, s, n);
}

void cqlc_put_long_string(buf *b, const char *s, size_t n) {
    buf_u32(b, (uint32_t)n);
    buf_put(b, s, n);
}

void cqlc_put_value(buf *b, const cqlc_value *v) {
    if (v->len < 0) {
        buf_u32(b, (uint32_t)v->len);
        return;
    }
    buf_u32(b, (uint32_t)v->len);
    buf_put(b, v->data, (size_t)v->len);
}

void cqlc_put_string_map(buf *b, const char *const *kv, size_t npairs) {
    buf_u16(b, (uint16_t)npairs);
    for (size_t i = 0; i < 2 * npairs; i++) cqlc_put_string(b, kv[i], strlen(kv[i]));
}

void cqlc_params_init(cqlc_params *p, uint16_t consistency) {
    memset(p, 0, sizeof *p);
    p->consistency = consistency;
    p->timestamp = INT64_MIN;
}

static void put_params(buf *b, const cqlc_params *p) {
    uint8_t flags = 0;
    if (p->nvalues) flags |= 0x01;
    if (p->skip_metadata) flags |= 0x02;
    if (p->page_size > 0) flags |= 0x04;
    if (p->paging_state) flags |= 0x08;
    if (p->serial_consistency) flags |= 0x10;
    if (p->timestamp != INT64_MIN) flags |= 0x20;
    buf_u16(b, p->consistency);
    buf_u8(b, flags);
    if (p->nvalues) {
        buf_u16(b, p->nvalues);
        for (uint16_t i = 0; i < p->nvalues; i++) cqlc_put_value(b, &p->values[i]);
    }
    if (p->page_size > 0) buf_u32(b, (uint32_t)p->page_size);
    if (p->paging_state) {
        buf_u32(b, (uint32_t)p->paging_state_len);
        buf_put(b, p->paging_state, (size_t)p->paging_state_len);
    }
    if (p->serial_consistency) buf_u16(b, p->serial_consistency);
    if (p->timestamp != INT64_MIN) buf_u64(b, (uint64_t)p->timestamp);
}

void cqlc_body_startup(buf *b, const char *compression) {
    if (compression) {
        const char *kv[] = {"CQL_VERSION", "3.0.0", "COMPRESSION", compression};
        cqlc_put_string_map(b, kv, 2);
    } else {
        const char *kv[] = {"CQL_VERSION", "3.0.0"};
        cqlc_put_string_map(b, kv, 1);
    }
}

void cqlc_body_query(buf *b, const char *cql, size_t len, const cqlc_params *p) {
    cqlc_put_long_string(b, cql, len);
    put_params(b, p);
}

void cqlc_body_prepare(buf *b, const char *cql, size_t len) {
    cqlc_put_long_string(b, cql, len);
}

void cqlc_body_execute(buf *b, const uint8_t *id, uint16_t idlen, const cqlc_params *p) {
    buf_u16(b, idlen);
    buf_put(b, id, idlen);
    put_params(b, p);
}

/* ---- header and compression ---- */

int cqlc_header_decode(const uint8_t *p, uint32_t max_body, cqlc_header *h) {
    h->version = p[0];
    h->flags = p[1];
    h->stream = (int16_t)be16_get(p + 2);
    h->opcode = p[4];
    h->length = be32_get(p + 5);
    if (h->version != (0x80 | CQLC_VERSION)) return ILION_EPROTOCOL;
    if (h->length > max_body) return ILION_ETOOBIG;
    return 0;
}

int cqlc_lz4_compress(const uint8_t *in, size_t n, buf *out) {
    if (n > (size_t)LZ4_MAX_INPUT_SIZE) return ILION_ETOOBIG;
    int bound = LZ4_compressBound((int)n);
    if (buf_reserve(out, 4 + (size_t)bound) < 0) return -ENOMEM;
    buf_u32(out, (uint32_t)n);
    int z = LZ4_compress_default((const char *)in, (char *)out->data + out->len, (int)n, bound);
    if (z <= 0 && n > 0) return ILION_EINVALID;
    out->len += (size_t)z;
    return 0;
}

int cqlc_lz4_decompress(const uint8_t *in, size_t n, uint32_t max, buf *out) {
    buf_reset(out);
    if (n < 4) return ILION_ETRUNCATED;
    uint32_t ulen = be32_get(in);
    if (ulen > max || ulen > (uint32_t)LZ4_MAX_INPUT_SIZE) return ILION_ETOOBIG;
    if (n - 4 > (size_t)INT_MAX) return ILION_ETOOBIG;
    if (buf_reserve(out, ulen ? ulen : 1) < 0) return -ENOMEM;
    if (ulen == 0) return n == 4 || (n == 5 && in[4] == 0) ? 0 : ILION_ECORRUPT;
    int got = LZ4_decompress_safe((const char *)in + 4, (char *)out->data, (int)(n - 4),
                                  (int)ulen);
    if (got < 0 || (uint32_t)got != ulen) return ILION_ECORRUPT;
    out->len = ulen;
    return 0;
}

/* ---- readers ---- */

static int get_i32(rd *r, int32_t *v) {
    uint32_t u;
    if (rd_u32(r, &u) < 0) return -1;
    *v = (int32_t)u;
    return 0;
}

/* [string] copied NUL-terminated into the arena. */
static int get_cstring(rd *r, st_arena *a, const char **out) {
    uint16_t n;
    const uint8_t *p;
    if (rd_u16(r, &n) < 0 || rd_bytes(r, n, &p) < 0) return -1;
    char *s = arena_alloc(a, (size_t)n + 1);
    if (!s) return -1;
    memcpy(s, p, n);
    s[n] = 0;
    *out = s;
    return 0;
}

static int skip_string(rd *r) {
    uint16_t n;
    const uint8_t *p;
    return rd_u16(r, &n) < 0 || rd_bytes(r, n, &p) < 0 ? -1 : 0;
}

/* Reads a type [option], remembering up to two element ids; nested types are walked with a
 * depth bound so hostile input cannot recurse without limit. */
static int get_option(rd *r, uint16_t *id, uint16_t sub[2], int depth) {
    uint16_t t, s0 = 0, s1 = 0;
    if (depth > 16 || rd_u16(r, &t) < 0) return -1;
    switch (t) {
    case CQLC_T_CUSTOM:
        if (skip_string(r) < 0) return -1;
        break;
    case CQLC_T_LIST:
    case CQLC_T_SET:
        if (get_option(r, &s0, NULL, depth + 1) < 0) return -1;
        break;
    case CQLC_T_MAP:
        if (get_option(r, &s0, NULL, depth + 1) < 0 || get_option(r, &s1, NULL, depth + 1) < 0)
            return -1;
        break;
    case CQLC_T_UDT: {
        uint16_t n;
        if (skip_string(r) < 0 || skip_string(r) < 0 || rd_u16(r, &n) < 0) return -1;
        for (uint16_t i = 0; i < n; i++) {
            uint16_t x;
            if (skip_string(r) < 0 || get_option(r, &x, NULL, depth + 1) < 0) return -1;
        }
        break;
    }
    case CQLC_T_TUPLE: {
        uint16_t n;
        if (rd_u16(r, &n) < 0) return -1;
        for (uint16_t i = 0; i < n; i++) {
            uint16_t x;
            if (get_option(r, &x, NULL, depth + 1) < 0) return -1;
        }
        break;
    }
    default:
        if (t > CQLC_T_TINYINT) return -1;
        break;
    }
    *id = t;
    if (sub) {
        sub[0] = s0;
        sub[1] = s1;
    }
    return 0;
}

/* Column specs after flags/count (and, for bind metadata, the pk indexes). */
static int get_col_specs(rd *r, st_arena *a, cqlc_metadata *m) {
    const char *gks = NULL, *gtab = NULL;
    if (m->flags & 0x01) {
        if (get_cstring(r, a, &gks) < 0 || get_cstring(r, a, &gtab) < 0) return -1;
    }
    /* Each spec takes at least 4 bytes; refuse counts the body cannot hold before allocating. */
    if ((size_t)m->ncols > rd_left(r) / 4 + 1) return -1;
    m->cols = arena_alloc(a, sizeof(cqlc_column) * ((size_t)m->ncols + 1));
    if (!m->cols) return -1;
    for (int32_t i = 0; i < m->ncols; i++) {
        cqlc_column *c = &m->cols[i];
        if (gks) {
            c->keyspace = gks;
            c->table = gtab;
        } else if (get_cstring(r, a, &c->keyspace) < 0 || get_cstring(r, a, &c->table) < 0) {
            return -1;
        }
        if (get_cstring(r, a, &c->name) < 0 || get_option(r, &c->type, c->sub, 0) < 0)
            return -1;
    }
    return 0;
}

static int get_rows_metadata(rd *r, st_arena *a, cqlc_metadata *m) {
    memset(m, 0, sizeof *m);
    if (get_i32(r, &m->flags) < 0 || get_i32(r, &m->ncols) < 0) return -1;
    if (m->ncols < 0) return -1;
    if (m->flags & 0x02) {
        if (get_i32(r, &m->paging_state_len) < 0) return -1;
        if (m->paging_state_len >= 0) {
            if (rd_bytes(r, (size_t)m->paging_state_len, &m->paging_state) < 0) return -1;
        } else {
            m->paging_state_len = 0;
        }
    }
    if (m->flags & 0x04) {
        m->no_metadata = true;
        return 0;
    }
    return get_col_specs(r, a, m);
}

static int decode_rows(rd *r, st_arena *a, cqlc_result *res) {
    if (get_rows_metadata(r, a, &res->meta) < 0) return -1;
    if (get_i32(r, &res->nrows) < 0 || res->nrows < 0) return -1;
    uint64_t ncells = (uint64_t)res->nrows * (uint64_t)res->meta.ncols;
    /* Every cell takes at least its 4-byte length. */
    if (ncells > rd_left(r) / 4) return -1;
    res->cells = arena_alloc(a, sizeof(cqlc_cell) * (size_t)(ncells ? ncells : 1));
    if (!res->cells) return -1;
    for (uint64_t i = 0; i < ncells; i++) {
        int32_t n;
        if (get_i32(r, &n) < 0) return -1;
        if (n < 0) {
            res->cells[i].data = NULL;
            res->cells[i].len = -1;
            continue;
        }
        if (rd_bytes(r, (size_t)n, &res->cells[i].data) < 0) return -1;
        res->cells[i].len = n;
    }
    return 0;
}

static int decode_prepared(rd *r, st_arena *a, cqlc_result *res) {
    const uint8_t *id;
    uint16_t idlen;
    if (rd_u16(r, &idlen) < 0 || rd_bytes(r, idlen, &id) < 0) return -1;
    res->prepared_id = id;
    res->prepared_id_len = idlen;
    cqlc_metadata *m = &res->bind;
    memset(m, 0, sizeof *m);
    if (get_i32(r, &m->flags) < 0 || get_i32(r, &m->ncols) < 0 || m->ncols < 0) return -1;
    if (get_i32(r, &res->npk) < 0 || res->npk < 0 || (size_t)res->npk > rd_left(r) / 2)
        return -1;
    res->pk_index = arena_alloc(a, sizeof(uint16_t) * ((size_t)res->npk + 1));
    if (!res->pk_index) return -1;
    for (int32_t i = 0; i < res->npk; i++)
        if (rd_u16(r, &res->pk_index[i]) < 0) return -1;
    if (get_col_specs(r, a, m) < 0) return -1;
    return get_rows_metadata(r, a, &res->meta);
}

static int decode_error(rd *r, st_arena *a, cqlc_result *res) {
    if (rd_u32(r, &res->err_code) < 0) return -1;
    if (get_cstring(r, a, &res->err_msg) < 0) return -1;
    res->err_cl = 0xffff;
    /* The code-specific fields (§8 of the spec) are optional to us: a body that ends after the
     * message, or whose extras are cut short, still decodes (code and message are what
     * matter); the fields are set only when complete. */
    uint16_t cl;
    int32_t a1, a2, nfail;
    const char *wt = NULL;
    switch (res->err_code) {
    case 0x1000: /* Unavailable: cl, required, alive */
        if (rd_u16(r, &cl) < 0 || get_i32(r, &a1) < 0 || get_i32(r, &a2) < 0) return 0;
        res->err_cl = cl;
        res->err_blockfor = a1;
        res->err_received = a2;
        return 0;
    case 0x1200: /* ReadTimeout: cl, received, blockfor, data_present */
    case 0x1100: /* WriteTimeout: cl, received, blockfor, write_type */
    case 0x1500: /* WriteFailure: cl, received, blockfor, numfailures, write_type */
        if (rd_u16(r, &cl) < 0 || get_i32(r, &a1) < 0 || get_i32(r, &a2) < 0) return 0;
        if (res->err_code == 0x1500 && get_i32(r, &nfail) < 0) return 0;
        if (res->err_code != 0x1200 && get_cstring(r, a, &wt) < 0) return 0;
        res->err_cl = cl;
        res->err_received = a1;
        res->err_blockfor = a2;
        res->err_write_type = wt;
        return 0;
    default:
        return 0;
    }
}

static int decode_supported(rd *r, st_arena *a, cqlc_result *res) {
    uint16_t nkeys;
    if (rd_u16(r, &nkeys) < 0) return -1;
    size_t cap = 16, n = 0;
    const char **list = arena_alloc(a, cap * sizeof(char *));
    if (!list) return -1;
    for (uint16_t i = 0; i < nkeys; i++) {
        const char *key;
        uint16_t nvals;
        if (get_cstring(r, a, &key) < 0 || rd_u16(r, &nvals) < 0) return -1;
        for (uint16_t j = 0; j < nvals; j++) {
            const char *val;
            if (get_cstring(r, a, &val) < 0) return -1;
            if (n == cap) {
                const char **bigger = arena_alloc(a, 2 * cap * sizeof(char *));
                if (!bigger) return -1;
                memcpy(bigger, list, cap * sizeof(char *));
                list = bigger;
                cap *= 2;
            }
            size_t kl = strlen(key), vl = strlen(val);
            char *kv = arena_alloc(a, kl + vl + 2);
            if (!kv) return -1;
            memcpy(kv, key, kl);
            kv[kl] = '=';
            memcpy(kv + kl + 1, val, vl + 1);
            list[n++] = kv;
        }
    }
    res->supported = list;
    res->nsupported = (int)n;
    return 0;
}

int cqlc_decode_response(uint8_t opcode, uint8_t flags, const uint8_t *body, size_t len,
                         st_arena *arena, cqlc_result *res) {
    memset(res, 0, sizeof *res);
    res->opcode = opcode;
    rd r;
    rd_init(&r, body, len);
    if (flags & CQLC_FLAG_TRACING) {
        const uint8_t *p;
        if (rd_bytes(&r, 16, &p) < 0) return ILION_EPROTOCOL;
    }
    if (flags & CQLC_FLAG_WARNING) {
        uint16_t n;
        if (rd_u16(&r, &n) < 0 || n > rd_left(&r) / 2) return ILION_EPROTOCOL;
        res->warnings = arena_alloc(arena, sizeof(char *) * ((size_t)n + 1));
        if (!res->warnings) return -ENOMEM;
        for (uint16_t i = 0; i < n; i++)
            if (get_cstring(&r, arena, &res->warnings[i]) < 0) return ILION_EPROTOCOL;
        res->nwarnings = n;
    }
    if (flags & CQLC_FLAG_CUSTOM_PAYLOAD) {
        uint16_t n;
        if (rd_u16(&r, &n) < 0) return ILION_EPROTOCOL;
        for (uint16_t i = 0; i < n; i++) {
            int32_t bl;
            const uint8_t *p;
            if (skip_string(&r) < 0 || get_i32(&r, &bl) < 0) return ILION_EPROTOCOL;
            if (bl > 0 && rd_bytes(&r, (size_t)bl, &p) < 0) return ILION_EPROTOCOL;
        }
    }
    int rc = 0;
    switch (opcode) {
    case CQLC_OP_ERROR:
        res->kind = CQLC_KIND_ERROR;
        rc = decode_error(&r, arena, res);
        break;
    case CQLC_OP_READY:
        res->kind = CQLC_KIND_READY;
        break;
    case CQLC_OP_AUTHENTICATE:
        res->kind = CQLC_KIND_AUTHENTICATE;
        break;
    case CQLC_OP_SUPPORTED:
        res->kind = CQLC_KIND_SUPPORTED;
        rc = decode_supported(&r, arena, res);
        break;
    case CQLC_OP_RESULT: {
        int32_t kind;
        if (get_i32(&r, &kind) < 0) return ILION_EPROTOCOL;
        res->kind = kind;
        switch (kind) {
        case CQLC_KIND_VOID:
            break;
        case CQLC_KIND_ROWS:
            rc = decode_rows(&r, arena, res);
            break;
        case CQLC_KIND_SET_KEYSPACE:
            rc = get_cstring(&r, arena, &res->keyspace);
            break;
        case CQLC_KIND_PREPARED:
            rc = decode_prepared(&r, arena, res);
            break;
        case CQLC_KIND_SCHEMA_CHANGE:
            /* change type, target, options: callers only need to know it happened. */
            break;
        default:
            return ILION_EPROTOCOL;
        }
        break;
    }
    default:
        res->kind = CQLC_KIND_OTHER;
        break;
    }
    return rc < 0 ? ILION_EPROTOCOL : 0;
}

/* ---- cells ---- */

int cqlc_cell_int(const cqlc_cell *c, int32_t *v) {
    if (c->len != 4) return ILION_EINVALID;
    *v = (int32_t)be32_get(c->data);
    return 0;
}

int cqlc_cell_bigint(const cqlc_cell *c, int64_t *v) {
    if (c->len != 8) return ILION_EINVALID;
    *v = (int64_t)be64_get(c->data);
    return 0;
}

int cqlc_cell_inet(const cqlc_cell *c, char *out, size_t outlen) {
    if (c->len == 4) return inet_ntop(AF_INET, c->data, out, (socklen_t)outlen) ? 0 : -errno;
    if (c->len == 16) return inet_ntop(AF_INET6, c->data, out, (socklen_t)outlen) ? 0 : -errno;
    return ILION_EINVALID;
}

int cqlc_cell_text(const cqlc_cell *c, char *out, size_t outlen) {
    if (outlen == 0) return ILION_EINVALID;
    if (c->len < 0) {
        out[0] = 0;
        return ILION_EINVALID;
    }
    size_t n = (size_t)c->len < outlen - 1 ? (size_t)c->len : outlen - 1;
    memcpy(out, c->data, n);
    out[n] = 0;
    return 0;
}

int cqlc_cell_collection_next(const cqlc_cell *c, size_t *pos, const uint8_t **elem,
                              int32_t *elen) {
    if (c->len < 0) return 0;
    size_t len = (size_t)c->len;
    if (len < 4) return ILION_ETRUNCATED;
    uint32_t n = be32_get(c->data);
    size_t off = *pos ? *pos : 4;
    /* *pos encodes the byte offset; the element count bounds nothing we need beyond it. */
    (void)n;
    if (off >= len) return 0;
    if (len - off < 4) return ILION_ETRUNCATED;
    int32_t el = (int32_t)be32_get(c->data + off);
    off += 4;
    if (el < 0) {
        *elem = NULL;
        *elen = -1;
    } else {
        if ((size_t)el > len - off) return ILION_ETRUNCATED;
        *elem = c->data + off;
        *elen = el;
        off += (size_t)el;
    }
    *pos = off;
    return 1;
}

int cqlc_result_column(const cqlc_result *r, const char *name) {
    if (r->meta.no_metadata || !r->meta.cols) return -1;
    for (int32_t i = 0; i < r->meta.ncols; i++)
        if (strcmp(r->meta.cols[i].name, name) == 0) return i;
    return -1;
}

const char *cqlc_error_name(uint32_t code) {
    switch (code) {
    case 0x0000: return "ServerError";
    case 0x000A: return "ProtocolError";
    case 0x0100: return "BadCredentials";
    case 0x1000: return "Unavailable";
    case 0x1001: return "Overloaded";
    case 0x1002: return "IsBootstrapping";
    case 0x1003: return "TruncateError";
    case 0x1100: return "WriteTimeout";
    case 0x1200: return "ReadTimeout";
    case 0x1300: return "ReadFailure";
    case 0x1400: return "FunctionFailure";
    case 0x1500: return "WriteFailure";
    case 0x2000: return "SyntaxError";
    case 0x2100: return "Unauthorized";
    case 0x2200: return "Invalid";
    case 0x2300: return "ConfigError";
    case 0x2400: return "AlreadyExists";
    case 0x2500: return "Unprepared";
    default: return "Unknown";
    }
}

/* ---- formatting ---- */

typedef struct fmt {
    char *out;
    size_t cap, len;
    bool cut;
} fmt;

static void fmt_put(fmt *f, const char *s, size_t n) {
    if (f->cut) return;
    if (f->len + n + 4 > f->cap) {
        size_t room = f->cap > f->len + 4 ? f->cap - f->len - 4 : 0;
        memcpy(f->out + f->len, s, room < n ? room : n);
        f->len += room < n ? room : n;
        memcpy(f->out + f->len, "...", 3);
        f->len += 3;
        f->cut = true;
        return;
    }
    memcpy(f->out + f->len, s, n);
    f->len += n;
}

static void fmt_str(fmt *f, const char *s) { fmt_put(f, s, strlen(s)); }

static void fmt_printf(fmt *f, const char *spec, ...) __attribute__((format(printf, 2, 3)));
static void fmt_printf(fmt *f, const char *spec, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, spec);
    int n = vsnprintf(tmp, sizeof tmp, spec, ap);
    va_end(ap);
    if (n > 0) fmt_put(f, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void fmt_hex(fmt *f, const uint8_t *p, size_t n) {
    static const char hx[] = "0123456789abcdef";
    fmt_str(f, "0x");
    for (size_t i = 0; i < n && !f->cut; i++) {
        char two[2] = {hx[p[i] >> 4], hx[p[i] & 15]};
        fmt_put(f, two, 2);
    }
}

/* One value of a simple type; -1 when the length does not fit the type. */
static int fmt_simple(fmt *f, uint16_t type, const uint8_t *p, int32_t n) {
    if (n < 0) {
        fmt_str(f, "null");
        return 0;
    }
    size_t len = (size_t)n;
    switch (type) {
    case CQLC_T_ASCII:
    case CQLC_T_VARCHAR:
        fmt_str(f, "'");
        for (size_t i = 0; i < len && !f->cut; i++) {
            if (p[i] == '\'') fmt_put(f, "''", 2);
            else fmt_put(f, (const char *)p + i, 1);
        }
        fmt_str(f, "'");
        return 0;
    case CQLC_T_BOOLEAN:
        if (len != 1) return -1;
        fmt_str(f, p[0] ? "true" : "false");
        return 0;
    case CQLC_T_INT:
    case CQLC_T_DATE:
        if (len != 4) return -1;
        if (type == CQLC_T_DATE) fmt_printf(f, "%lld", (long long)be32_get(p) - (1LL << 31));
        else fmt_printf(f, "%d", (int32_t)be32_get(p));
        return 0;
    case CQLC_T_BIGINT:
    case CQLC_T_COUNTER:
    case CQLC_T_TIMESTAMP:
    case CQLC_T_TIME:
        if (len != 8) return -1;
        fmt_printf(f, "%lld", (long long)(int64_t)be64_get(p));
        return 0;
    case CQLC_T_SMALLINT:
        if (len != 2) return -1;
        fmt_printf(f, "%d", (int16_t)be16_get(p));
        return 0;
    case CQLC_T_TINYINT:
        if (len != 1) return -1;
        fmt_printf(f, "%d", (int8_t)p[0]);
        return 0;
    case CQLC_T_DOUBLE: {
        if (len != 8) return -1;
        uint64_t u = be64_get(p);
        double d;
        memcpy(&d, &u, 8);
        fmt_printf(f, "%.17g", d);
        return 0;
    }
    case CQLC_T_FLOAT: {
        if (len != 4) return -1;
        uint32_t u = be32_get(p);
        float x;
        memcpy(&x, &u, 4);
        fmt_printf(f, "%.9g", (double)x);
        return 0;
    }
    case CQLC_T_UUID:
    case CQLC_T_TIMEUUID:
        if (len != 16) return -1;
        fmt_printf(f, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", p[0],
                   p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13],
                   p[14], p[15]);
        return 0;
    case CQLC_T_INET: {
        char a[64];
        cqlc_cell c = {p, n};
        if (cqlc_cell_inet(&c, a, sizeof a) < 0) return -1;
        fmt_printf(f, "'%s'", a);
        return 0;
    }
    default: /* blob, varint, decimal, custom, nested: the bytes */
        fmt_hex(f, p, len);
        return 0;
    }
}

static bool is_simple(uint16_t t) { return t <= CQLC_T_TINYINT; }

int cqlc_cell_format(uint16_t type, const uint16_t sub[2], const cqlc_cell *c, char *out,
                     size_t outlen) {
    if (outlen < 8) return ILION_EINVALID;
    fmt f = {out, outlen, 0, false};
    int rc = 0;
    if (c->len >= 0 && (type == CQLC_T_LIST || type == CQLC_T_SET || type == CQLC_T_MAP) && sub &&
        is_simple(sub[0]) && (type != CQLC_T_MAP || is_simple(sub[1]))) {
        /* [int n] then n elements (maps: 2n), each [int len][bytes] */
        rd r;
        rd_init(&r, c->data, (size_t)c->len);
        uint32_t n;
        if (rd_u32(&r, &n) < 0) {
            rc = -1;
        } else {
            fmt_str(&f, type == CQLC_T_LIST ? "[" : "{");
            for (uint32_t i = 0; i < n && rc == 0 && !f.cut; i++) {
                if (i) fmt_str(&f, ", ");
                for (int part = 0; part < (type == CQLC_T_MAP ? 2 : 1) && rc == 0; part++) {
                    uint32_t el;
                    const uint8_t *ep = NULL;
                    if (rd_u32(&r, &el) < 0) {
                        rc = -1;
                        break;
                    }
                    if ((int32_t)el >= 0 && rd_bytes(&r, el, &ep) < 0) {
                        rc = -1;
                        break;
                    }
                    if (part) fmt_str(&f, ": ");
                    rc = fmt_simple(&f, sub[part], ep, (int32_t)el);
                }
            }
            fmt_str(&f, type == CQLC_T_LIST ? "]" : "}");
            if (rc == 0 && !f.cut && rd_left(&r) != 0) rc = -1;
        }
    } else {
        rc = fmt_simple(&f, type, c->data, c->len);
    }
    if (rc < 0) {
        f.len = 0;
        f.cut = false;
        fmt_hex(&f, c->data, c->len > 0 ? (size_t)c->len : 0);
    }
    out[f.len] = 0;
    return rc < 0 ? ILION_EINVALID : (int)f.len;
}
