/*
 * A keyspace's replication settings, as given in CREATE KEYSPACE ... WITH replication = {...}.
 * Plain data; any thread.
 */
#ifndef ILION_SCHEMA_REPLICATION_H
#define ILION_SCHEMA_REPLICATION_H

#include <stdint.h>

#define SCHEMA_MAX_DCS 8
#define SCHEMA_NAME_MAX 64

enum schema_repl_class { SCHEMA_REPL_SIMPLE, SCHEMA_REPL_NTS, SCHEMA_REPL_LOCAL /* system keyspaces */ };

typedef struct schema_replication {
    enum schema_repl_class cls;
    uint32_t rf;                       /* SimpleStrategy */
    uint32_t ndcs;                     /* NetworkTopologyStrategy */
    struct {
        char name[SCHEMA_NAME_MAX];
        uint32_t rf;
    } dcs[SCHEMA_MAX_DCS];
} schema_replication;

#endif
