/*
 * Project error codes. Functions return int: 0 on success, a negative value on failure.
 * OS failures are -errno; project failures are the negative ILION_E* codes below, which lie
 * far below any errno. Any thread may call ilion_strerror.
 */
#ifndef ILION_UTIL_ERR_H
#define ILION_UTIL_ERR_H

#define ILION_ERRORS(X)                                                        \
    X(CORRUPT,     "data corruption detected")                                 \
    X(CHECKSUM,    "checksum mismatch")                                        \
    X(FORMAT,      "unknown or unsupported format version")                    \
    X(NOTFOUND,    "not found")                                                \
    X(EXISTS,      "already exists")                                           \
    X(INVALID,     "invalid argument")                                         \
    X(TRUNCATED,   "truncated input")                                          \
    X(TOOBIG,      "value too large")                                          \
    X(SYNCFAILED,  "commit log sync failed; writes are no longer accepted")    \
    X(CLOSED,      "already closed")                                           \
    X(TIMEOUT,     "timed out")                                                \
    X(UNAVAILABLE, "not enough replicas available")                            \
    X(OVERLOADED,  "overloaded")                                               \
    X(PROTOCOL,    "protocol error")

enum {
    ILION_E_BASE = -10000,
#define ILION_ERR_ENUM(name, msg) ILION_E##name,
    ILION_ERRORS(ILION_ERR_ENUM)
#undef ILION_ERR_ENUM
    ILION_E_LAST
};

/* Message for a 0, -errno or ILION_E* value; never NULL, static storage. */
const char *ilion_strerror(int err);

#endif
