/* The harness behind tests/test.h. */
#include "test.h"

#include <sys/stat.h>
#include <time.h>

int t_failures;

int t_run(const char *suite, const t_case *cases, int n) {
    const char *filter = getenv("G4_TEST_FILTER");
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        if (filter && !strstr(cases[i].name, filter)) continue;
        t_failures = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        cases[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (t_failures == 0) {
            passed++;
            printf("ok   %s.%s (%.0f ms)\n", suite, cases[i].name, ms);
        } else {
            failed++;
            printf("FAIL %s.%s (%d checks failed)\n", suite, cases[i].name, t_failures);
        }
        fflush(stdout);
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

int t_device(void) {
    const char *d = getenv("G4_TEST_DEVICE");
    return d && !strcmp(d, "cuda") ? 1 : 0; /* G4_DEVICE_CUDA : G4_DEVICE_CPU */
}

const char *t_fixture_dir(void) {
    const char *dir = getenv("G4_FIXTURES");
    return dir ? dir : "tests/fixtures";
}

const char *t_tmp_dir(const char *suite) {
    static char path[512];
    snprintf(path, sizeof path, "tests/tmp/%s", suite);
    mkdir("tests", 0755);
    mkdir("tests/tmp", 0755);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", path, path);
    if (system(cmd) != 0) fprintf(stderr, "cannot make %s\n", path);
    return path;
}
