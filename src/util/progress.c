/* Progress reporting on stderr (see progress.h). */
#include "util/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double g4_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

void g4_progress_start(g4_progress *p) {
    p->start = g4_now();
    p->last_tenth = 0;
}

void g4_progress_step(g4_progress *p, int done, int total, const char *what) {
    double t = g4_now() - p->start;
    if (isatty(2)) {
        fprintf(stderr, "\r[%d/%d] %6.1f s  %-72.72s", done, total, t, what);
        return;
    }
    int tenth = total ? done * 10 / total : 10;
    if (tenth > p->last_tenth) {
        fprintf(stderr, "[%d/%d] %.1f s  %s\n", done, total, t, what);
        p->last_tenth = tenth;
    }
}

void g4_progress_end(g4_progress *p, int total) {
    if (isatty(2)) fputc('\n', stderr);
    fprintf(stderr, "done: %d tensors in %.1f s\n", total, g4_now() - p->start);
}
