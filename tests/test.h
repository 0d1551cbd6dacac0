/* A minimal test harness: each tests/test_*.c is one executable with a list of
 * test functions. CHECK records a failure and carries on; each test function
 * passes if it recorded none. The summary line "N passed, N failed" is what
 * tests/run.sh adds up. */
#ifndef G4_TEST_H
#define G4_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int t_failures; /* failures in the current test function */

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "  FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                        \
    } while (0)

#define CHECKF(cond, ...)                                                        \
    do {                                                                         \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);    \
            fprintf(stderr, __VA_ARGS__);                                        \
            fputc('\n', stderr);                                                 \
        }                                                                        \
    } while (0)

/* Stops the current test function (e.g. a fixture failed to load). */
#define REQUIRE(cond)                                                            \
    do {                                                                         \
        if (!(cond)) {                                                           \
            t_failures++;                                                        \
            fprintf(stderr, "  FAIL %s:%d: %s (stopping this test)\n", __FILE__, \
                    __LINE__, #cond);                                            \
            return;                                                              \
        }                                                                        \
    } while (0)

/* The larger of a running worst error and a new one, where a NaN counts as the largest and stays: kept
 * with `r > worst ? r : worst`, a NaN error was dropped, and a check of worst < tolerance passed on NaN
 * logits. */
static inline double t_worse(double worst, double r) { return r > worst || isnan(r) ? r : worst; }

typedef struct {
    const char *name;
    void (*fn)(void);
} t_case;

#define TEST_CASE(fn) {#fn, fn}

/* Runs the cases, prints one line each and the summary; returns the exit code.
 * G4_TEST_FILTER=substring runs only matching cases. */
int t_run(const char *suite, const t_case *cases, int n);

/* The engine device the tests use: G4_TEST_DEVICE=cuda (make test-gpu on a
 * GPU machine) or the CPU by default. Returns a g4_device. */
int t_device(void);

/* Directory of the committed fixtures (tests/fixtures, or $G4_FIXTURES). */
const char *t_fixture_dir(void);
/* A fresh scratch directory under tests/tmp for this suite. */
const char *t_tmp_dir(const char *suite);

#define TEST_MAIN(suite, ...)                                                    \
    int main(void) {                                                             \
        static const t_case cases[] = {__VA_ARGS__};                             \
        return t_run(suite, cases, (int)(sizeof cases / sizeof cases[0]));       \
    }

#endif
