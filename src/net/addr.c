#include "ilion/net/messaging.h"
#include "ilion/util/err.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

int net_addr_parse(const char *ip, uint16_t port, net_addr *out) {
    memset(out, 0, sizeof *out);
    if (!ip) return ILION_EINVALID;
    if (inet_pton(AF_INET, ip, out->ip) == 1) {
        out->family = 4;
    } else if (inet_pton(AF_INET6, ip, out->ip) == 1) {
        out->family = 6;
    } else {
        return ILION_EINVALID;
    }
    out->port = port;
    return 0;
}

const char *net_addr_ip_str(const net_addr *a, char *out, size_t outlen) {
    if (outlen == 0) return out;
    out[0] = 0;
    if (a->family == 4) {
        inet_ntop(AF_INET, a->ip, out, (socklen_t)outlen);
    } else if (a->family == 6) {
        inet_ntop(AF_INET6, a->ip, out, (socklen_t)outlen);
    } else {
        snprintf(out, outlen, "?");
    }
    return out;
}

const char *net_addr_str(const net_addr *a, char *out, size_t outlen) {
    char ip[INET6_ADDRSTRLEN + 1];
    net_addr_ip_str(a, ip, sizeof ip);
    if (a->family == 6) {
        snprintf(out, outlen, "[%s]:%u", ip, a->port);
    } else {
        snprintf(out, outlen, "%s:%u", ip, a->port);
    }
    return out;
}

static size_t addr_iplen(const net_addr *a) { return a->family == 6 ? 16 : a->family == 4 ? 4 : 0; }

int net_addr_cmp(const net_addr *a, const net_addr *b) {
    if (a->family != b->family) return a->family < b->family ? -1 : 1;
    int c = memcmp(a->ip, b->ip, addr_iplen(a));
    if (c) return c < 0 ? -1 : 1;
    if (a->port != b->port) return a->port < b->port ? -1 : 1;
    return 0;
}

uint64_t net_addr_hash(const net_addr *a) {
    uint64_t h = 1469598103934665603ull ^ a->family;
    for (size_t i = 0; i < addr_iplen(a); i++) h = (h ^ a->ip[i]) * 1099511628211ull;
    h = (h ^ (a->port & 0xff)) * 1099511628211ull;
    h = (h ^ (a->port >> 8)) * 1099511628211ull;
    return h;
}

const char *net_verb_name(uint8_t verb) {
    switch (verb) {
#define V(n) case NET_VERB_##n: return #n;
        V(GOSSIP_SYN) V(GOSSIP_ACK) V(GOSSIP_ACK2) V(GOSSIP_SHUTDOWN) V(ECHO)
        V(MUTATION) V(MUTATION_RSP) V(READ) V(READ_RSP) V(RANGE_READ) V(RANGE_READ_RSP)
        V(SCHEMA_PULL) V(SCHEMA_PUSH) V(SCHEMA_VERSION) V(HINT) V(HINT_RSP)
        V(PAXOS_PREPARE) V(PAXOS_PREPARE_RSP) V(PAXOS_PROPOSE) V(PAXOS_PROPOSE_RSP)
        V(PAXOS_COMMIT) V(PAXOS_COMMIT_RSP) V(TRUNCATE) V(TRUNCATE_RSP) V(STREAM) V(STREAM_RSP)
        V(FAILURE_RSP)
#undef V
    default: return "UNKNOWN";
    }
}

bool net_verb_is_gossip(uint8_t verb) {
    return verb == NET_VERB_GOSSIP_SYN || verb == NET_VERB_GOSSIP_ACK || verb == NET_VERB_GOSSIP_ACK2 ||
           verb == NET_VERB_GOSSIP_SHUTDOWN || verb == NET_VERB_ECHO;
}

void net_addr_encode(buf *b, const net_addr *a) {
    buf_u8(b, a->family);
    buf_put(b, a->ip, a->family == 6 ? 16 : 4);
    buf_u16(b, a->port);
}

int net_addr_decode(rd *r, net_addr *a) {
    memset(a, 0, sizeof *a);
    const uint8_t *p;
    if (rd_u8(r, &a->family) < 0) return ILION_ETRUNCATED;
    if (a->family != 4 && a->family != 6) return ILION_ECORRUPT;
    if (rd_bytes(r, a->family == 6 ? 16 : 4, &p) < 0) return ILION_ETRUNCATED;
    memcpy(a->ip, p, a->family == 6 ? 16 : 4);
    if (rd_u16(r, &a->port) < 0) return ILION_ETRUNCATED;
    return 0;
}
