/* Errors are values: library code fills a g4_err and returns -1 (or NULL);
 * only the CLI decides to print and exit. A message names the file, tensor,
 * field or request at fault. */
#ifndef G4_UTIL_ERR_H
#define G4_UTIL_ERR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    char msg[1024];
} g4_err;

/* Sets err->msg (if err is not NULL) and returns -1, so callers can write
 * `return g4_errorf(err, "...")`. */
int g4_errorf(g4_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with more context: "ctx: old message". */
int g4_err_wrap(g4_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif

#endif
