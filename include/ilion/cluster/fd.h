/*
 * Phi-accrual failure detector (Hayashibara et al. 2004) in Cassandra's variant: the arrival
 * intervals of a node's heartbeats are assumed exponentially distributed, so
 *     phi(t) = (t - last_arrival) / mean_interval / ln(10),
 * over a sliding window of the last `window` intervals. Intervals longer than max_interval are
 * not recorded (a pause must not teach the detector that silence is normal); the window starts
 * with one initial interval (2 x gossip interval) so that a node seen once is not convicted
 * too early. A node is convicted when phi exceeds phi_convict_threshold (default 8: about 18.4
 * intervals of silence). Time is passed in by the caller, so tests are deterministic.
 * Not synchronized: one thread (the event loop).
 */
#ifndef ILION_CLUSTER_FD_H
#define ILION_CLUSTER_FD_H

#include <stdbool.h>
#include <stdint.h>

#define FD_DEFAULT_WINDOW 1000
#define FD_DEFAULT_PHI 8.0

typedef struct fd_window {
    uint32_t *intervals;    /* ring buffer, ms */
    uint32_t cap, n, head;
    uint64_t sum;
    uint64_t last_ms;
    bool has_last;
    uint32_t initial_ms, max_interval_ms;
} fd_window;

/* 0 or -ENOMEM. */
int fd_window_init(fd_window *w, uint32_t window, uint32_t initial_ms, uint32_t max_interval_ms);
void fd_window_free(fd_window *w);
/* A heartbeat arrived at now_ms. */
void fd_report(fd_window *w, uint64_t now_ms);
/* phi at now_ms; 0 before the first report. */
double fd_phi(const fd_window *w, uint64_t now_ms);
double fd_mean_ms(const fd_window *w);
static inline bool fd_convicted(const fd_window *w, uint64_t now_ms, double threshold) {
    return fd_phi(w, now_ms) > threshold;
}

#endif
