/*
 * Clocks. Wall time in microseconds (write timestamps) and seconds (TTL expiry, deletion
 * times), and a monotonic clock for intervals. Any thread.
 */
#ifndef ILION_UTIL_CLOCK_H
#define ILION_UTIL_CLOCK_H

#include <stdint.h>

int64_t clock_now_us(void);       /* CLOCK_REALTIME, µs since the epoch */
int32_t clock_now_s(void);        /* CLOCK_REALTIME, s since the epoch */
uint64_t clock_mono_ns(void);     /* CLOCK_MONOTONIC, ns */

#endif
