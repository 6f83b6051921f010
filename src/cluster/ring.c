#include "ilion/cluster/ring.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ilion/util/err.h"

typedef struct ep_slot {
    ring_endpoint info;
    int64_t *tokens;       /* sorted */
    uint32_t dc;           /* index into dcs */
    uint32_t rack;         /* index of (dc, rack) pair */
} ep_slot;

struct ring {
    ep_slot *eps;
    uint32_t neps, epcap;
    int64_t *tok;          /* all tokens, ascending */
    uint32_t *owner;       /* endpoint index per token */
    uint32_t ntok;
    /* Topology, recomputed on every change. */
    char (*dcs)[RING_NAME_MAX];
    uint32_t ndcs;
    uint32_t *dc_nodes;    /* endpoints per dc */
    uint32_t *dc_racks;    /* distinct racks per dc */
    uint32_t nracks;
    net_addr local;
    bool has_local;
    uint64_t version;
};

int ring_create(ring **out) {
    ring *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    *out = r;
    return 0;
}

void ring_destroy(ring *r) {
    if (!r) return;
    for (uint32_t i = 0; i < r->neps; i++) free(r->eps[i].tokens);
    free(r->eps);
    free(r->tok);
    free(r->owner);
    free(r->dcs);
    free(r->dc_nodes);
    free(r->dc_racks);
    free(r);
}

typedef struct tok_own {
    int64_t t;
    uint32_t o;
} tok_own;

static int cmp_tok_own(const void *a, const void *b) {
    int64_t x = ((const tok_own *)a)->t, y = ((const tok_own *)b)->t;
    return x < y ? -1 : x > y;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int rebuild(ring *r) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < r->neps; i++) n += r->eps[i].info.ntokens;
    tok_own *all = malloc((n ? n : 1) * sizeof *all);
    int64_t *tok = malloc((n ? n : 1) * sizeof *tok);
    uint32_t *owner = malloc((n ? n : 1) * sizeof *owner);
    char(*dcs)[RING_NAME_MAX] = calloc(r->neps ? r->neps : 1, sizeof *dcs);
    uint32_t *dc_nodes = calloc(r->neps ? r->neps : 1, sizeof *dc_nodes);
    uint32_t *dc_racks = calloc(r->neps ? r->neps : 1, sizeof *dc_racks);
    if (!all || !tok || !owner || !dcs || !dc_nodes || !dc_racks) {
        free(all); free(tok); free(owner); free(dcs); free(dc_nodes); free(dc_racks);
        return -ENOMEM;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < r->neps; i++)
        for (uint32_t j = 0; j < r->eps[i].info.ntokens; j++) all[k++] = (tok_own){r->eps[i].tokens[j], i};
    qsort(all, n, sizeof *all, cmp_tok_own);
    for (uint32_t i = 0; i < n; i++) {
        tok[i] = all[i].t;
        owner[i] = all[i].o;
    }
    free(all);
    /* Data centers and racks: small numbers, linear searches are fine. */
    uint32_t ndcs = 0, nracks = 0;
    for (uint32_t i = 0; i < r->neps; i++) {
        ep_slot *e = &r->eps[i];
        uint32_t d = 0;
        while (d < ndcs && strcmp(dcs[d], e->info.dc) != 0) d++;
        if (d == ndcs) snprintf(dcs[ndcs++], RING_NAME_MAX, "%s", e->info.dc);
        e->dc = d;
        dc_nodes[d]++;
        uint32_t j = 0;
        for (; j < i; j++)
            if (r->eps[j].dc == d && strcmp(r->eps[j].info.rack, e->info.rack) == 0) break;
        if (j < i) {
            e->rack = r->eps[j].rack;
        } else {
            e->rack = nracks++;
            dc_racks[d]++;
        }
    }
    free(r->tok); free(r->owner); free(r->dcs); free(r->dc_nodes); free(r->dc_racks);
    r->tok = tok;
    r->owner = owner;
    r->ntok = n;
    r->dcs = dcs;
    r->ndcs = ndcs;
    r->dc_nodes = dc_nodes;
    r->dc_racks = dc_racks;
    r->nracks = nracks;
    r->version++;
    return 0;
}

static int find_slot(const ring *r, const net_addr *ep) {
    for (uint32_t i = 0; i < r->neps; i++)
        if (net_addr_eq(&r->eps[i].info.addr, ep)) return (int)i;
    return -1;
}

int ring_set_endpoint(ring *r, const net_addr *ep, const uint8_t host_id[16], const char *dc,
                      const char *rack, const int64_t *tokens, uint32_t ntokens) {
    if (!dc || !rack || strlen(dc) >= RING_NAME_MAX || strlen(rack) >= RING_NAME_MAX)
        return ILION_EINVALID;
    int64_t *copy = malloc((ntokens ? ntokens : 1) * sizeof *copy);
    if (!copy) return -ENOMEM;
    if (ntokens) memcpy(copy, tokens, ntokens * sizeof *copy);
    qsort(copy, ntokens, sizeof *copy, cmp_i64);
    uint32_t u = 0;
    for (uint32_t i = 0; i < ntokens; i++)
        if (u == 0 || copy[u - 1] != copy[i]) copy[u++] = copy[i];
    ntokens = u;
    int s = find_slot(r, ep);
    if (s < 0) {
        if (r->neps == r->epcap) {
            uint32_t nc = r->epcap ? r->epcap * 2 : 8;
            ep_slot *ne = realloc(r->eps, nc * sizeof *ne);
            if (!ne) {
                free(copy);
                return -ENOMEM;
            }
            r->eps = ne;
            r->epcap = nc;
        }
        s = (int)r->neps++;
        memset(&r->eps[s], 0, sizeof r->eps[s]);
    }
    ep_slot *e = &r->eps[s];
    free(e->tokens);
    e->tokens = copy;
    e->info.addr = *ep;
    if (host_id) memcpy(e->info.host_id, host_id, 16);
    snprintf(e->info.dc, sizeof e->info.dc, "%s", dc);
    snprintf(e->info.rack, sizeof e->info.rack, "%s", rack);
    e->info.ntokens = ntokens;
    /* A token claimed here leaves its previous owner. */
    for (uint32_t i = 0; i < r->neps; i++) {
        if ((int)i == s) continue;
        ep_slot *o = &r->eps[i];
        uint32_t w = 0;
        for (uint32_t j = 0; j < o->info.ntokens; j++)
            if (!bsearch(&o->tokens[j], copy, ntokens, sizeof *copy, cmp_i64)) o->tokens[w++] = o->tokens[j];
        o->info.ntokens = w;
    }
    return rebuild(r);
}

int ring_remove_endpoint(ring *r, const net_addr *ep) {
    int s = find_slot(r, ep);
    if (s < 0) return ILION_ENOTFOUND;
    free(r->eps[s].tokens);
    memmove(&r->eps[s], &r->eps[s + 1], (r->neps - (uint32_t)s - 1) * sizeof *r->eps);
    r->neps--;
    return rebuild(r);
}

void ring_set_local(ring *r, const net_addr *ep) {
    r->local = *ep;
    r->has_local = true;
    r->version++;
}

uint64_t ring_version(const ring *r) { return r->version; }
uint32_t ring_endpoint_count(const ring *r) { return r->neps; }
const ring_endpoint *ring_endpoint_at(const ring *r, uint32_t i) { return i < r->neps ? &r->eps[i].info : NULL; }
const ring_endpoint *ring_find(const ring *r, const net_addr *ep) {
    int s = find_slot(r, ep);
    return s < 0 ? NULL : &r->eps[s].info;
}
uint32_t ring_token_count(const ring *r) { return r->ntok; }
int64_t ring_token_at(const ring *r, uint32_t i) { return r->tok[i]; }
const ring_endpoint *ring_token_owner(const ring *r, uint32_t i) { return &r->eps[r->owner[i]].info; }

uint32_t ring_first_index(const ring *r, int64_t token) {
    uint32_t lo = 0, hi = r->ntok;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (r->tok[mid] < token) lo = mid + 1; else hi = mid;
    }
    return lo == r->ntok ? 0 : lo;
}

static bool already(const net_addr *out, size_t n, const net_addr *a) {
    for (size_t i = 0; i < n; i++)
        if (net_addr_eq(&out[i], a)) return true;
    return false;
}

typedef struct dc_want {
    uint32_t dc;
    int64_t rf_left;
    int64_t rack_repeats;
    uint32_t *seen;
    uint32_t nseen;
} dc_want;

int ring_replicas(const ring *r, const schema_replication *repl, int64_t token, net_addr *out, size_t max) {
    if (repl->cls == SCHEMA_REPL_LOCAL) {
        if (!r->has_local || max == 0) return 0;
        out[0] = r->local;
        return 1;
    }
    if (r->ntok == 0 || max == 0) return 0;
    uint32_t start = ring_first_index(r, token);
    size_t n = 0;
    if (repl->cls == SCHEMA_REPL_SIMPLE) {
        size_t want = repl->rf < max ? repl->rf : max;
        for (uint32_t k = 0; k < r->ntok && n < want; k++) {
            const net_addr *a = &r->eps[r->owner[(start + k) % r->ntok]].info.addr;
            if (!already(out, n, a)) out[n++] = *a;
        }
        return (int)n;
    }
    if (repl->cls != SCHEMA_REPL_NTS || repl->ndcs > SCHEMA_MAX_DCS) return ILION_EINVALID;
    /* Cassandra's NetworkTopologyStrategy: per DC, take endpoints in ring order from racks not
     * yet used; accept a rack twice only while the DC has fewer racks than its RF. */
    dc_want w[SCHEMA_MAX_DCS];
    uint32_t nw = 0, pending = 0;
    uint32_t seen_store[SCHEMA_MAX_DCS][64];
    for (uint32_t i = 0; i < repl->ndcs; i++) {
        uint32_t d = 0;
        while (d < r->ndcs && strcmp(r->dcs[d], repl->dcs[i].name) != 0) d++;
        if (d == r->ndcs || repl->dcs[i].rf == 0) continue;
        dc_want *x = &w[nw++];
        x->dc = d;
        x->rf_left = repl->dcs[i].rf < r->dc_nodes[d] ? repl->dcs[i].rf : r->dc_nodes[d];
        x->rack_repeats = (int64_t)repl->dcs[i].rf - r->dc_racks[d];
        x->seen = seen_store[nw - 1];
        x->nseen = 0;
        pending += x->rf_left > 0;
    }
    for (uint32_t k = 0; k < r->ntok && pending && n < max; k++) {
        const ep_slot *e = &r->eps[r->owner[(start + k) % r->ntok]];
        dc_want *x = NULL;
        for (uint32_t i = 0; i < nw; i++)
            if (w[i].dc == e->dc) x = &w[i];
        if (!x || x->rf_left <= 0 || already(out, n, &e->info.addr)) continue;
        bool new_rack = true;
        for (uint32_t i = 0; i < x->nseen; i++)
            if (x->seen[i] == e->rack) new_rack = false;
        if (new_rack) {
            if (x->nseen < 64) x->seen[x->nseen++] = e->rack;
        } else {
            if (x->rack_repeats <= 0) continue;
            x->rack_repeats--;
        }
        out[n++] = e->info.addr;
        if (--x->rf_left == 0) pending--;
    }
    return (int)n;
}

void ring_ownership(const ring *r, double *out) {
    for (uint32_t i = 0; i < r->neps; i++) out[i] = 0;
    if (r->ntok == 0) return;
    if (r->ntok == 1) {
        out[r->owner[0]] = 1.0;
        return;
    }
    const double full = 18446744073709551616.0; /* 2^64 */
    for (uint32_t i = 0; i < r->ntok; i++) {
        uint64_t prev = (uint64_t)r->tok[i == 0 ? r->ntok - 1 : i - 1];
        uint64_t span = (uint64_t)r->tok[i] - prev;  /* wraps correctly for i == 0 */
        out[r->owner[i]] += (double)span / full;
    }
}
