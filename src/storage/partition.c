/* The shared partition structure: building, reconciling, encoding. Format in
 * docs/sstable-format.md ("partition encoding"). */
#include <errno.h>
#include "ilion/storage/partition.h"

#include <string.h>

#include "ilion/util/err.h"
#include "ilion/util/murmur3.h"

int st_key_compare(int64_t ta, const uint8_t *ka, uint32_t la, int64_t tb, const uint8_t *kb,
                   uint32_t lb) {
    if (ta != tb) return ta < tb ? -1 : 1;
    uint32_t n = la < lb ? la : lb;
    int c = n ? memcmp(ka, kb, n) : 0;
    if (c) return c;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

int st_ck_compare(const uint8_t *a, uint32_t la, const uint8_t *b, uint32_t lb) {
    uint32_t n = la < lb ? la : lb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c) return c;
    return la < lb ? -1 : la > lb ? 1 : 0;
}

st_deletion st_deletion_max(st_deletion x, st_deletion y) {
    if (x.ts != y.ts) return x.ts > y.ts ? x : y;
    return x.local_time >= y.local_time ? x : y;
}

static const st_deletion no_del = {ST_NO_TIMESTAMP, 0};
static const st_liveness no_marker = {ST_NO_TIMESTAMP, 0, ST_NO_EXPIRY};

/* --- building ------------------------------------------------------------------------ */

st_partition *st_partition_new(st_arena *a, uint64_t table_id, const void *pk, uint32_t pklen) {
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->table_id = table_id;
    p->pk = arena_dup(a, pk, pklen);
    if (!p->pk) return NULL;
    p->pklen = pklen;
    p->token = murmur3_token(pk, pklen);
    p->del = no_del;
    return p;
}

static void row_init(st_row *r) {
    memset(r, 0, sizeof *r);
    r->marker = no_marker;
    r->del = no_del;
}

st_row *st_partition_row(st_arena *a, st_partition *p, const void *ck, uint32_t cklen) {
    /* Fast path: rows usually arrive in order. */
    uint32_t lo = 0, hi = p->nrows;
    if (p->nrows) {
        int c = st_ck_compare(p->rows[p->nrows - 1].ck, p->rows[p->nrows - 1].cklen, ck, cklen);
        if (c == 0) return &p->rows[p->nrows - 1];
        if (c < 0) lo = p->nrows;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = st_ck_compare(p->rows[mid].ck, p->rows[mid].cklen, ck, cklen);
        if (c == 0) return &p->rows[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    if (p->nrows + 1 > p->rows_cap) {
        uint32_t cap = p->nrows < 4 ? 4 : p->nrows * 2;
        st_row *nr = arena_alloc(a, sizeof *nr * cap);
        if (!nr) return NULL;
        if (p->nrows) memcpy(nr, p->rows, sizeof *nr * p->nrows);
        p->rows = nr;
        p->rows_cap = cap;
    }
    const uint8_t *ckc = arena_dup(a, ck, cklen);
    if (!ckc) return NULL;
    memmove(&p->rows[lo + 1], &p->rows[lo], sizeof(st_row) * (p->nrows - lo));
    st_row *r = &p->rows[lo];
    row_init(r);
    r->ck = ckc;
    r->cklen = cklen;
    p->nrows++;
    return r;
}

int st_row_set_cell(st_arena *a, st_row *r, uint16_t col, int64_t ts, int32_t ttl, int32_t now_s,
                    const void *value, uint32_t len) {
    uint32_t lo = 0, hi = r->ncells;
    if (r->ncells && r->cells[r->ncells - 1].col < col) lo = r->ncells;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->cells[mid].col < col) lo = mid + 1;
        else hi = mid;
    }
    st_cell *c;
    if (lo < r->ncells && r->cells[lo].col == col) {
        c = &r->cells[lo];
    } else {
        if (r->ncells + 1 > r->cells_cap) {
            uint32_t cap = r->ncells < 4 ? 4 : r->ncells * 2;
            st_cell *nc = arena_alloc(a, sizeof *nc * cap);
            if (!nc) return -ENOMEM;
            if (r->ncells) memcpy(nc, r->cells, sizeof *nc * r->ncells);
            r->cells = nc;
            r->cells_cap = cap;
        }
        memmove(&r->cells[lo + 1], &r->cells[lo], sizeof(st_cell) * (r->ncells - lo));
        r->ncells++;
        c = &r->cells[lo];
    }
    memset(c, 0, sizeof *c);
    c->col = col;
    c->ts = ts;
    if (!value) {
        c->flags = ST_CELL_TOMBSTONE;
        c->expiry = now_s;
        return 0;
    }
    c->ttl = ttl > 0 ? ttl : 0;
    c->expiry = ttl > 0 ? now_s + ttl : ST_NO_EXPIRY;
    c->value = arena_dup(a, value, len);
    if (!c->value) return -ENOMEM;
    c->len = len;
    return 0;
}

/* --- reconciling --------------------------------------------------------------------- */

int st_cell_compare(const st_cell *a, const st_cell *b) {
    if (a->ts != b->ts) return a->ts > b->ts ? 1 : -1;
    bool ta = a->flags & ST_CELL_TOMBSTONE, tb = b->flags & ST_CELL_TOMBSTONE;
    if (ta != tb) return ta ? 1 : -1;
    if (!ta) {
        int c = st_ck_compare(a->value, a->len, b->value, b->len);
        if (c) return c > 0 ? 1 : -1;
    }
    if (a->expiry != b->expiry) return a->expiry > b->expiry ? 1 : -1;
    if (a->ttl != b->ttl) return a->ttl > b->ttl ? 1 : -1;
    return 0;
}

bool st_cell_live(const st_cell *c, int32_t now_s) {
    if (c->flags & ST_CELL_TOMBSTONE) return false;
    return c->expiry == ST_NO_EXPIRY || now_s < c->expiry;
}

bool st_row_live(const st_row *r, const st_deletion *pdel, int32_t now_s) {
    int64_t dts = r->del.ts;
    if (pdel && pdel->ts > dts) dts = pdel->ts;
    if (r->marker.ts != ST_NO_TIMESTAMP && r->marker.ts > dts &&
        (r->marker.expiry == ST_NO_EXPIRY || now_s < r->marker.expiry))
        return true;
    for (uint32_t i = 0; i < r->ncells; i++)
        if (r->cells[i].ts > dts && st_cell_live(&r->cells[i], now_s)) return true;
    return false;
}

static st_liveness marker_max(st_liveness x, st_liveness y) {
    if (x.ts != y.ts) return x.ts > y.ts ? x : y;
    if (x.expiry != y.expiry) return x.expiry > y.expiry ? x : y;
    return x.ttl >= y.ttl ? x : y;
}

int st_row_merge(st_arena *a, const st_row *x, const st_row *y, st_row *out) {
    row_init(out);
    out->ck = x->ck;
    out->cklen = x->cklen;
    out->marker = marker_max(x->marker, y->marker);
    out->del = st_deletion_max(x->del, y->del);
    uint32_t n = x->ncells + y->ncells;
    st_cell *cells = n ? arena_alloc(a, sizeof *cells * n) : NULL;
    if (n && !cells) return -ENOMEM;
    uint32_t i = 0, j = 0, k = 0;
    while (i < x->ncells || j < y->ncells) {
        if (j >= y->ncells || (i < x->ncells && x->cells[i].col < y->cells[j].col)) {
            cells[k++] = x->cells[i++];
        } else if (i >= x->ncells || y->cells[j].col < x->cells[i].col) {
            cells[k++] = y->cells[j++];
        } else {
            cells[k++] = st_cell_compare(&x->cells[i], &y->cells[j]) >= 0 ? x->cells[i] : y->cells[j];
            i++;
            j++;
        }
    }
    out->cells = cells;
    out->ncells = k;
    out->cells_cap = 0;
    return 0;
}

st_partition *st_partition_merge(st_arena *a, const st_partition *x, const st_partition *y) {
    if (!x && !y) return NULL;
    const st_partition *src = x ? x : y;
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->table_id = src->table_id;
    p->token = src->token;
    p->pk = src->pk;
    p->pklen = src->pklen;
    if (!x || !y) {
        p->del = src->del;
        p->nrows = src->nrows;
        p->rows = src->rows;
        return p;
    }
    p->del = st_deletion_max(x->del, y->del);
    uint32_t n = x->nrows + y->nrows;
    st_row *rows = n ? arena_alloc(a, sizeof *rows * n) : NULL;
    if (n && !rows) return NULL;
    uint32_t i = 0, j = 0, k = 0;
    while (i < x->nrows || j < y->nrows) {
        int c;
        if (i >= x->nrows) c = 1;
        else if (j >= y->nrows) c = -1;
        else c = st_ck_compare(x->rows[i].ck, x->rows[i].cklen, y->rows[j].ck, y->rows[j].cklen);
        if (c < 0) rows[k++] = x->rows[i++];
        else if (c > 0) rows[k++] = y->rows[j++];
        else {
            if (st_row_merge(a, &x->rows[i], &y->rows[j], &rows[k]) != 0) return NULL;
            k++;
            i++;
            j++;
        }
    }
    p->rows = rows;
    p->nrows = k;
    return p;
}

st_partition *st_partition_copy(st_arena *a, const st_partition *src) {
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return NULL;
    *p = *src;
    p->rows_cap = 0;
    p->pk = arena_dup(a, src->pk, src->pklen);
    p->rows = src->nrows ? arena_alloc(a, sizeof(st_row) * src->nrows) : NULL;
    if (!p->pk || (src->nrows && !p->rows)) return NULL;
    for (uint32_t i = 0; i < src->nrows; i++) {
        const st_row *sr = &src->rows[i];
        st_row *r = &p->rows[i];
        *r = *sr;
        r->cells_cap = 0;
        r->ck = arena_dup(a, sr->ck, sr->cklen);
        r->cells = sr->ncells ? arena_alloc(a, sizeof(st_cell) * sr->ncells) : NULL;
        if (!r->ck || (sr->ncells && !r->cells)) return NULL;
        for (uint32_t j = 0; j < sr->ncells; j++) {
            r->cells[j] = sr->cells[j];
            if (sr->cells[j].value) {
                r->cells[j].value = arena_dup(a, sr->cells[j].value, sr->cells[j].len);
                if (!r->cells[j].value) return NULL;
            }
        }
    }
    return p;
}

/* --- encoding ------------------------------------------------------------------------ */

enum {
    ROW_HAS_MARKER = 1,
    ROW_HAS_DEL = 2,
    ROW_MARKER_TTL = 4,
};
enum { CELL_TOMB = 1, CELL_TTL = 2 };

static inline void put_i64(buf *b, int64_t v) { buf_u64(b, (uint64_t)v); }
static inline void put_i32(buf *b, int32_t v) { buf_u32(b, (uint32_t)v); }

void st_row_encode(const st_row *r, buf *out) {
    uint8_t tmp[32];
    buf_varint(out, r->cklen);
    buf_put(out, r->ck, r->cklen);
    uint8_t f = 0;
    if (r->marker.ts != ST_NO_TIMESTAMP) {
        f |= ROW_HAS_MARKER;
        if (r->marker.ttl || r->marker.expiry != ST_NO_EXPIRY) f |= ROW_MARKER_TTL;
    }
    if (r->del.ts != ST_NO_TIMESTAMP) f |= ROW_HAS_DEL;
    buf_u8(out, f);
    if (f & ROW_HAS_MARKER) {
        put_i64(out, r->marker.ts);
        if (f & ROW_MARKER_TTL) {
            put_i32(out, r->marker.ttl);
            put_i32(out, r->marker.expiry);
        }
    }
    if (f & ROW_HAS_DEL) {
        put_i64(out, r->del.ts);
        put_i32(out, r->del.local_time);
    }
    buf_varint(out, r->ncells);
    for (uint32_t i = 0; i < r->ncells; i++) {
        const st_cell *c = &r->cells[i];
        size_t n = 0;
        /* col varint (<= 3 bytes) */
        uint32_t col = c->col;
        while (col >= 0x80) {
            tmp[n++] = (uint8_t)(col | 0x80);
            col >>= 7;
        }
        tmp[n++] = (uint8_t)col;
        uint8_t cf = 0;
        if (c->flags & ST_CELL_TOMBSTONE) cf = CELL_TOMB;
        else if (c->ttl || c->expiry != ST_NO_EXPIRY) cf = CELL_TTL;
        tmp[n++] = cf;
        be64_put(tmp + n, (uint64_t)c->ts);
        n += 8;
        if (cf == CELL_TOMB) {
            be32_put(tmp + n, (uint32_t)c->expiry);
            n += 4;
            buf_put(out, tmp, n);
            continue;
        }
        if (cf == CELL_TTL) {
            be32_put(tmp + n, (uint32_t)c->ttl);
            be32_put(tmp + n + 4, (uint32_t)c->expiry);
            n += 8;
        }
        uint32_t len = c->len;
        while (len >= 0x80) {
            tmp[n++] = (uint8_t)(len | 0x80);
            len >>= 7;
        }
        tmp[n++] = (uint8_t)len;
        buf_put(out, tmp, n);
        buf_put(out, c->value, c->len);
    }
}

void st_partition_encode(const st_partition *p, buf *out) {
    buf_u8(out, ST_PARTITION_FORMAT);
    buf_u64(out, p->table_id);
    buf_varint(out, p->pklen);
    buf_put(out, p->pk, p->pklen);
    if (p->del.ts != ST_NO_TIMESTAMP) {
        buf_u8(out, 1);
        put_i64(out, p->del.ts);
        put_i32(out, p->del.local_time);
    } else {
        buf_u8(out, 0);
    }
    buf_varint(out, p->nrows);
    for (uint32_t i = 0; i < p->nrows; i++) st_row_encode(&p->rows[i], out);
}

#define RD(x)                                 \
    do {                                      \
        if ((x) != 0) return ILION_ETRUNCATED; \
    } while (0)

static int rd_len(rd *r, uint32_t *out) {
    uint64_t v;
    RD(rd_varint(r, &v));
    if (v > rd_left(r)) return ILION_ETRUNCATED;
    *out = (uint32_t)v;
    return 0;
}

static int rd_i64(rd *r, int64_t *v) {
    uint64_t u;
    if (rd_u64(r, &u)) return -1;
    *v = (int64_t)u;
    return 0;
}
static int rd_i32(rd *r, int32_t *v) {
    uint32_t u;
    if (rd_u32(r, &u)) return -1;
    *v = (int32_t)u;
    return 0;
}

int st_row_decode(st_arena *a, rd *r, st_row *out) {
    row_init(out);
    int rc = rd_len(r, &out->cklen);
    if (rc) return rc;
    RD(rd_bytes(r, out->cklen, &out->ck));
    uint8_t f;
    RD(rd_u8(r, &f));
    if (f & ~(ROW_HAS_MARKER | ROW_HAS_DEL | ROW_MARKER_TTL)) return ILION_ECORRUPT;
    if (f & ROW_HAS_MARKER) {
        RD(rd_i64(r, &out->marker.ts));
        if (out->marker.ts == ST_NO_TIMESTAMP) return ILION_ECORRUPT;
        if (f & ROW_MARKER_TTL) {
            RD(rd_i32(r, &out->marker.ttl));
            RD(rd_i32(r, &out->marker.expiry));
        }
    } else if (f & ROW_MARKER_TTL) {
        return ILION_ECORRUPT;
    }
    if (f & ROW_HAS_DEL) {
        RD(rd_i64(r, &out->del.ts));
        RD(rd_i32(r, &out->del.local_time));
        if (out->del.ts == ST_NO_TIMESTAMP) return ILION_ECORRUPT;
    }
    uint64_t n;
    RD(rd_varint(r, &n));
    /* Each cell takes at least 11 bytes: never allocate from an untrusted count. */
    if (n > rd_left(r) / 11) return ILION_ETRUNCATED;
    out->ncells = (uint32_t)n;
    out->cells = n ? arena_alloc(a, sizeof(st_cell) * n) : NULL;
    if (n && !out->cells) return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        st_cell *c = &out->cells[i];
        memset(c, 0, sizeof *c);
        uint64_t col;
        RD(rd_varint(r, &col));
        if (col > UINT16_MAX) return ILION_ECORRUPT;
        if (i && col <= out->cells[i - 1].col) return ILION_ECORRUPT;
        c->col = (uint16_t)col;
        uint8_t cf;
        RD(rd_u8(r, &cf));
        RD(rd_i64(r, &c->ts));
        if (cf == CELL_TOMB) {
            c->flags = ST_CELL_TOMBSTONE;
            RD(rd_i32(r, &c->expiry));
            continue;
        }
        if (cf == CELL_TTL) {
            RD(rd_i32(r, &c->ttl));
            RD(rd_i32(r, &c->expiry));
        } else if (cf == 0) {
            c->expiry = ST_NO_EXPIRY;
        } else {
            return ILION_ECORRUPT;
        }
        rc = rd_len(r, &c->len);
        if (rc) return rc;
        RD(rd_bytes(r, c->len, &c->value));
    }
    return 0;
}

int st_partition_decode(st_arena *a, const uint8_t *data, size_t len, st_partition **out) {
    rd r;
    rd_init(&r, data, len);
    uint8_t v;
    RD(rd_u8(&r, &v));
    if (v != ST_PARTITION_FORMAT) return ILION_ECORRUPT;
    st_partition *p = arena_alloc(a, sizeof *p);
    if (!p) return -ENOMEM;
    memset(p, 0, sizeof *p);
    RD(rd_u64(&r, &p->table_id));
    int rc = rd_len(&r, &p->pklen);
    if (rc) return rc;
    RD(rd_bytes(&r, p->pklen, &p->pk));
    p->token = murmur3_token(p->pk, p->pklen);
    uint8_t f;
    RD(rd_u8(&r, &f));
    p->del = no_del;
    if (f == 1) {
        RD(rd_i64(&r, &p->del.ts));
        RD(rd_i32(&r, &p->del.local_time));
        if (p->del.ts == ST_NO_TIMESTAMP) return ILION_ECORRUPT;
    } else if (f != 0) {
        return ILION_ECORRUPT;
    }
    uint64_t n;
    RD(rd_varint(&r, &n));
    if (n > rd_left(&r) / 3) return ILION_ETRUNCATED;
    p->nrows = (uint32_t)n;
    p->rows = n ? arena_alloc(a, sizeof(st_row) * n) : NULL;
    if (n && !p->rows) return -ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        rc = st_row_decode(a, &r, &p->rows[i]);
        if (rc) return rc;
        if (i && st_ck_compare(p->rows[i - 1].ck, p->rows[i - 1].cklen, p->rows[i].ck,
                               p->rows[i].cklen) >= 0)
            return ILION_ECORRUPT;
    }
    if (rd_left(&r) != 0) return ILION_ECORRUPT;
    *out = p;
    return 0;
}

size_t st_partition_size(const st_partition *p) {
    size_t n = sizeof *p + p->pklen;
    for (uint32_t i = 0; i < p->nrows; i++) {
        const st_row *r = &p->rows[i];
        n += sizeof *r + r->cklen;
        for (uint32_t j = 0; j < r->ncells; j++) n += sizeof(st_cell) + r->cells[j].len;
    }
    return n;
}
