/* Progress lines for long jobs (quantize, synth): rewritten in place on a
 * terminal, one line per tenth of the work otherwise (logs stay short). */
#ifndef G4_UTIL_PROGRESS_H
#define G4_UTIL_PROGRESS_H

typedef struct {
    double start;     /* monotonic seconds */
    int last_tenth;
} g4_progress;

void g4_progress_start(g4_progress *p);
void g4_progress_step(g4_progress *p, int done, int total, const char *what);
void g4_progress_end(g4_progress *p, int total);
double g4_now(void); /* monotonic seconds */

#endif
