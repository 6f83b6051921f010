/*
 * Snitch: the local node's data center and rack, GossipingPropertyFileSnitch style. The
 * local values come from cassandra-rackdc.properties ("dc=..." and "rack=..."; '#' and '!'
 * comments, '=' or ':' separators); other nodes' come from gossip (DC and RACK states).
 * Pure functions; any thread.
 */
#ifndef ILION_CLUSTER_SNITCH_H
#define ILION_CLUSTER_SNITCH_H

#include <stddef.h>

#define SNITCH_DEFAULT_DC "datacenter1"
#define SNITCH_DEFAULT_RACK "rack1"
#define SNITCH_NAME_MAX 64

typedef struct snitch_info {
    char dc[SNITCH_NAME_MAX];          /* as written in the file, without dc_suffix */
    char rack[SNITCH_NAME_MAX];
    char dc_suffix[SNITCH_NAME_MAX];   /* the node's DC name is dc followed by dc_suffix */
    int prefer_local;
} snitch_info;

void snitch_defaults(snitch_info *s);
/* Parses the properties text; unknown keys are ignored. Starts from the defaults.
 * 0, or ILION_EINVALID for a value longer than SNITCH_NAME_MAX-1 or an empty dc/rack. */
int snitch_parse(const char *text, size_t len, snitch_info *out);
/* Reads and parses the file; a missing file gives the defaults and -ENOENT. */
int snitch_load(const char *path, snitch_info *out);

#endif
