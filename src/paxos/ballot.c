/* Ballots are version 1 UUIDs whose timestamp counts whole microseconds, so that a commit's
 * write timestamp (the ballot's µs) is strictly increasing along the ballots a node makes. */
#include <string.h>

#include "ilion/paxos/paxos.h"

/* 100 ns intervals between 1582-10-15 and 1970-01-01. */
#define PAXOS_UUID_EPOCH_OFFSET 0x01B21DD213814000LL

static uint64_t ballot_ts100(const paxos_ballot *a) {
    const uint8_t *b = a->b;
    uint64_t low = ((uint64_t)b[0] << 24) | ((uint64_t)b[1] << 16) | ((uint64_t)b[2] << 8) | b[3];
    uint64_t mid = ((uint64_t)b[4] << 8) | b[5];
    uint64_t hi = ((uint64_t)(b[6] & 0x0f) << 8) | b[7];
    return (hi << 48) | (mid << 32) | low;
}

int paxos_ballot_cmp(const paxos_ballot *a, const paxos_ballot *b) {
    uint64_t ta = ballot_ts100(a), tb = ballot_ts100(b);
    if (ta != tb) return ta < tb ? -1 : 1;
    int c = memcmp(a->b + 8, b->b + 8, 8);
    if (c) return c < 0 ? -1 : 1;
    c = memcmp(a->b, b->b, 8);
    return c < 0 ? -1 : c > 0;
}

bool paxos_ballot_is_none(const paxos_ballot *a) {
    static const uint8_t zero[16];
    return memcmp(a->b, zero, 16) == 0;
}

int64_t paxos_ballot_us(const paxos_ballot *a) {
    if (paxos_ballot_is_none(a)) return INT64_MIN;
    return ((int64_t)ballot_ts100(a) - PAXOS_UUID_EPOCH_OFFSET) / 10;
}

void paxos_ballot_gen_init(paxos_ballot_gen *g, const uint8_t node[6], uint16_t clock_seq) {
    g->last_us = INT64_MIN;
    memcpy(g->node, node, 6);
    g->node[0] |= 0x01;  /* multicast bit: not a real MAC (RFC 4122 §4.5) */
    g->clock_seq = clock_seq & 0x3fff;
}

void paxos_ballot_observe(paxos_ballot_gen *g, const paxos_ballot *seen) {
    int64_t us = paxos_ballot_us(seen);
    if (us > g->last_us) g->last_us = us;
}

void paxos_ballot_next(paxos_ballot_gen *g, int64_t now_us, paxos_ballot *out) {
    int64_t us = now_us;
    if (g->last_us != INT64_MIN && us <= g->last_us) us = g->last_us + 1;
    if (us < 0) us = 0;
    g->last_us = us;
    uint64_t t = (uint64_t)us * 10 + (uint64_t)PAXOS_UUID_EPOCH_OFFSET;
    uint8_t *b = out->b;
    b[0] = (uint8_t)(t >> 24); b[1] = (uint8_t)(t >> 16); b[2] = (uint8_t)(t >> 8); b[3] = (uint8_t)t;
    b[4] = (uint8_t)(t >> 40); b[5] = (uint8_t)(t >> 32);
    b[6] = (uint8_t)(0x10 | ((t >> 56) & 0x0f)); b[7] = (uint8_t)(t >> 48);
    b[8] = (uint8_t)(0x80 | ((g->clock_seq >> 8) & 0x3f)); b[9] = (uint8_t)g->clock_seq;
    memcpy(b + 10, g->node, 6);
}
