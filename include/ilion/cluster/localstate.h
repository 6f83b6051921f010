/*
 * The node's own persistent identity: host id, tokens and the last gossip generation, kept in
 * <data_dir>/system/local.state so a restart keeps its host id and place in the ring and
 * announces a newer generation. Written to a temporary file, fsynced, renamed, directory
 * fsynced. Format (version 1) in docs/internode-protocol.md. Called at start-up, any thread.
 */
#ifndef ILION_CLUSTER_LOCALSTATE_H
#define ILION_CLUSTER_LOCALSTATE_H

#include <stdint.h>

#include "ilion/cluster/tokens.h"

typedef struct localstate {
    uint8_t host_id[16];
    int32_t generation;
    uint32_t ntokens;
    int64_t tokens[TOKENS_MAX];
    char cluster_name[128];
} localstate;

/* 0, -ENOENT when there is no state yet, ILION_ECORRUPT/ILION_ECHECKSUM/ILION_EFORMAT. */
int localstate_load(const char *data_dir, localstate *out);
/* Creates data_dir/system as needed. 0 or -errno. */
int localstate_save(const char *data_dir, const localstate *s);

#endif
