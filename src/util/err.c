/* Error messages as values (see err.h). */
#include "util/err.h"

#include <stdio.h>
#include <string.h>

int g4_errorf(g4_err *err, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

int g4_err_wrap(g4_err *err, const char *fmt, ...) {
    if (err) {
        char prefix[512], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* truncation of very long messages is acceptable */
        int n = snprintf(err->msg, sizeof err->msg, "%s: ", prefix);
        if (n > 0 && (size_t)n < sizeof err->msg)
            memcpy(err->msg + n, old, strnlen(old, sizeof err->msg - n - 1) + 1),
                err->msg[sizeof err->msg - 1] = 0;
    }
    return -1;
}
