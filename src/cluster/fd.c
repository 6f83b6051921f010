#include "ilion/cluster/fd.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int fd_window_init(fd_window *w, uint32_t window, uint32_t initial_ms, uint32_t max_interval_ms) {
    memset(w, 0, sizeof *w);
    w->cap = window ? window : FD_DEFAULT_WINDOW;
    w->intervals = calloc(w->cap, sizeof *w->intervals);
    if (!w->intervals) return -ENOMEM;
    w->initial_ms = initial_ms ? initial_ms : 2000;
    w->max_interval_ms = max_interval_ms ? max_interval_ms : w->initial_ms;
    return 0;
}

void fd_window_free(fd_window *w) {
    free(w->intervals);
    w->intervals = NULL;
}

static void add_interval(fd_window *w, uint32_t v) {
    if (w->n == w->cap) {
        w->sum -= w->intervals[w->head];
        w->intervals[w->head] = v;
        w->head = (w->head + 1) % w->cap;
    } else {
        w->intervals[(w->head + w->n) % w->cap] = v;
        w->n++;
    }
    w->sum += v;
}

void fd_report(fd_window *w, uint64_t now_ms) {
    if (!w->has_last) {
        /* Err high at first: a false "up" is corrected by waiting; a false "down" flaps. */
        add_interval(w, w->initial_ms);
    } else if (now_ms >= w->last_ms) {
        uint64_t d = now_ms - w->last_ms;
        if (d <= w->max_interval_ms && d > 0) add_interval(w, (uint32_t)d);
    }
    w->last_ms = now_ms;
    w->has_last = true;
}

double fd_mean_ms(const fd_window *w) { return w->n ? (double)w->sum / w->n : (double)w->initial_ms; }

double fd_phi(const fd_window *w, uint64_t now_ms) {
    if (!w->has_last || now_ms <= w->last_ms) return 0.0;
    double mean = fd_mean_ms(w);
    if (mean <= 0) mean = 1;
    return (double)(now_ms - w->last_ms) / mean / M_LN10;
}
