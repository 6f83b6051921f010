/*
 * Internode messaging: TCP connections between nodes on storage_port, a handshake that
 * carries the messaging version, cluster name, host id and listen address (a peer of another
 * cluster is refused and both sides log it), framed messages (length + CRC32), one verb table,
 * and request/response correlation by message id with a per-request timeout.
 *
 * Connections follow Cassandra's layout: each node opens its own outbound connections (one for
 * gossip verbs, one for everything else, per peer) and only writes to them; it only reads from
 * the connections peers opened to it. A response travels on the responder's outbound
 * connection to the requester's listen address. Outbound connections are opened when there is
 * something to send and re-opened with exponential backoff after a failure.
 *
 * Payloads are opaque bytes here; their owners (gossip, coordinator, schema, hints) encode them.
 * The wire format is docs/internode-protocol.md.
 *
 * Threads: everything runs on the libuv loop passed to net_create; callbacks run on that loop.
 * A call that returns an error never calls its callback.
 */
#ifndef ILION_NET_MESSAGING_H
#define ILION_NET_MESSAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "ilion/util/buf.h"

/* ---- endpoint addresses ---------------------------------------------------------------- */

/* An endpoint: IP address and port (all nodes normally share storage_port). Plain data,
 * compare with net_addr_cmp (never memcmp a struct with padding). */
typedef struct net_addr {
    uint8_t family;   /* 4 or 6; 0 = unset */
    uint8_t ip[16];   /* 4 bytes used for IPv4 */
    uint16_t port;
} net_addr;

#define NET_ADDR_STRLEN 64  /* enough for "[v6]:port" */

/* Parses a numeric IPv4/IPv6 address (no names) with the given port. 0 or ILION_EINVALID. */
int net_addr_parse(const char *ip, uint16_t port, net_addr *out);
/* "1.2.3.4:7000" or "[::1]:7000"; returns out. */
const char *net_addr_str(const net_addr *a, char *out, size_t outlen);
/* Address only, no port ("1.2.3.4"). */
const char *net_addr_ip_str(const net_addr *a, char *out, size_t outlen);
int net_addr_cmp(const net_addr *a, const net_addr *b);
static inline bool net_addr_eq(const net_addr *a, const net_addr *b) { return net_addr_cmp(a, b) == 0; }
uint64_t net_addr_hash(const net_addr *a);
/* Wire form (docs/internode-protocol.md): family u8 (4|6), 4 or 16 address bytes, port u16. */
void net_addr_encode(buf *b, const net_addr *a);
int net_addr_decode(rd *r, net_addr *a);   /* ILION_ETRUNCATED / ILION_ECORRUPT on bad input */

/* ---- verbs ------------------------------------------------------------------------------- */

/* Verb ids are part of the wire format: append only, never renumber. */
enum net_verb {
    NET_VERB_NONE = 0,
    NET_VERB_GOSSIP_SYN = 1,
    NET_VERB_GOSSIP_ACK = 2,
    NET_VERB_GOSSIP_ACK2 = 3,
    NET_VERB_GOSSIP_SHUTDOWN = 4,
    NET_VERB_ECHO = 5,
    NET_VERB_MUTATION = 10,
    NET_VERB_MUTATION_RSP = 11,
    NET_VERB_READ = 12,
    NET_VERB_READ_RSP = 13,
    NET_VERB_RANGE_READ = 14,
    NET_VERB_RANGE_READ_RSP = 15,
    NET_VERB_SCHEMA_PULL = 20,
    NET_VERB_SCHEMA_PUSH = 21,
    NET_VERB_SCHEMA_VERSION = 22,
    NET_VERB_HINT = 30,
    NET_VERB_HINT_RSP = 31,
    NET_VERB_PAXOS_PREPARE = 40,
    NET_VERB_PAXOS_PREPARE_RSP = 41,
    NET_VERB_PAXOS_PROPOSE = 42,
    NET_VERB_PAXOS_PROPOSE_RSP = 43,
    NET_VERB_PAXOS_COMMIT = 44,
    NET_VERB_PAXOS_COMMIT_RSP = 45,
    NET_VERB_TRUNCATE = 50,
    NET_VERB_TRUNCATE_RSP = 51,
    NET_VERB_STREAM = 60,
    NET_VERB_STREAM_RSP = 61,
    NET_VERB_FAILURE_RSP = 99,   /* a handler's error answer: payload = i32 error code */
    NET_VERB_MAX = 128
};

/* Name for logs ("GOSSIP_SYN"), "UNKNOWN" for unassigned ids. */
const char *net_verb_name(uint8_t verb);
/* Gossip verbs travel on the gossip connection, everything else on the data connection. */
bool net_verb_is_gossip(uint8_t verb);

/* ---- the messaging service --------------------------------------------------------------- */

typedef struct net_service net_service;

#define NET_MESSAGING_VERSION 1
#define NET_DEFAULT_MAX_MESSAGE (16u << 20)

typedef struct net_options {
    const char *cluster_name;     /* required; compared byte for byte in the handshake */
    net_addr listen;              /* listen address (not 0.0.0.0/::: peers answer to it) and
                                     storage_port (port 0: ephemeral, tests) */
    uint8_t host_id[16];
    uint32_t max_message_size;    /* default NET_DEFAULT_MAX_MESSAGE; larger frames close the connection */
    uint32_t backoff_initial_ms;  /* default 100 */
    uint32_t backoff_max_ms;      /* default 10000 */
    uint32_t connect_timeout_ms;  /* default 2000 (connect + handshake) */
    uint32_t max_queued_bytes;    /* per peer connection while not connected; default 64 MiB */
} net_options;

void net_options_default(net_options *o);

/* Creates the service on loop and starts listening. *out is owned by the caller
 * (net_destroy). Returns -errno from bind/listen (e.g. -EADDRINUSE). */
int net_create(uv_loop_t *loop, const net_options *o, net_service **out);

/* Closes every connection and the listener, fails pending requests with ILION_ECLOSED (their
 * callbacks run before this returns), and frees the service once libuv has closed the handles:
 * keep running the loop afterwards. */
void net_destroy(net_service *ns);

/* The address actually bound (the port is filled in when options asked for port 0). */
const net_addr *net_local_addr(const net_service *ns);

/* Identity of an incoming message, valid during the handler call (copy what you keep). */
typedef struct net_msg {
    net_addr from;          /* the sender's listen address, from its handshake */
    uint8_t from_host_id[16];
    uint8_t verb;
    uint64_t id;            /* correlation id chosen by the sender */
    bool expects_reply;     /* sent with net_request (false for net_send) */
} net_msg;

typedef void (*net_handler)(void *arg, net_service *ns, const net_msg *m, const uint8_t *payload,
                            size_t len);

/* Registers the handler for verb (one per verb; replaces any earlier one; NULL removes).
 * Messages for a verb without a handler are counted and dropped. */
int net_register(net_service *ns, uint8_t verb, net_handler h, void *arg);

/* Response callback: err 0 with the payload (valid during the call), or err < 0 and no
 * payload: ILION_ETIMEOUT (no answer in time), ILION_EUNAVAILABLE (the peer was marked down
 * meanwhile), -ECONNREFUSED (the peer refused our handshake), ILION_ECLOSED (service destroyed),
 * or the i32 code a handler answered with net_respond_error. */
typedef void (*net_response_cb)(void *arg, int err, uint8_t verb, const uint8_t *payload, size_t len);

/* Sends a request and calls cb exactly once. Fails at once with ILION_EUNAVAILABLE when `to`
 * is marked down, ILION_ETOOBIG over the size limit, ILION_EINVALID for a bad verb.
 * The payload is copied before return. *id_out (may be NULL) gets the message id. */
int net_request(net_service *ns, const net_addr *to, uint8_t verb, const void *payload, size_t len,
                uint32_t timeout_ms, net_response_cb cb, void *arg, uint64_t *id_out);

/* One-way message (gossip, hints without acknowledgement). Dropped silently if it cannot be
 * delivered; fails at once only for bad arguments or a size over the limit. Not refused for
 * down peers: gossip must reach them to notice they are back. */
int net_send(net_service *ns, const net_addr *to, uint8_t verb, const void *payload, size_t len);

/* Answers the request m (inside its handler or later, with a copy of m). A no-op returning 0 if
 * m did not expect a reply. */
int net_respond(net_service *ns, const net_msg *m, uint8_t verb, const void *payload, size_t len);
/* Answers with an error: the requester's callback gets err = code (negative). */
int net_respond_error(net_service *ns, const net_msg *m, int code);

/* Cancels a pending request; its callback is not called. 0, or ILION_ENOTFOUND if it already
 * completed. */
int net_cancel(net_service *ns, uint64_t id);

/* The failure detector's verdict, fed by cluster/: requests to a down peer fail at once, and
 * marking a peer down fails its pending requests with ILION_EUNAVAILABLE (callbacks run before
 * this returns). Marking up resets the reconnect backoff. */
void net_set_peer_down(net_service *ns, const net_addr *peer, bool down);
bool net_peer_is_down(const net_service *ns, const net_addr *peer);

/* Called once per peer connection refused because of a cluster name mismatch, on either side
 * (tests, metrics). */
typedef void (*net_refused_cb)(void *arg, const net_addr *peer, const char *their_cluster);
void net_set_refused_cb(net_service *ns, net_refused_cb cb, void *arg);

typedef struct net_stats {
    uint64_t sent_msgs, recv_msgs, sent_bytes, recv_bytes;
    uint64_t requests, responses, timeouts, dropped_no_handler, dropped_queue_full;
    uint64_t handshakes_ok, handshakes_refused, bad_frames, connects, connect_failures;
    uint32_t pending;
} net_stats;
void net_get_stats(const net_service *ns, net_stats *out);

#endif
