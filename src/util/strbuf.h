/* A growable byte string for building output (prompts, JSON text).
 * Bytes may include NUL; data is always NUL-terminated after a successful
 * append. An allocation failure sets `oom` and makes later appends no-ops,
 * so builders check once at the end instead of after every append. */
#ifndef G4_UTIL_STRBUF_H
#define G4_UTIL_STRBUF_H

#include <stddef.h>

typedef struct {
    char *data;  /* NULL until the first append */
    size_t len;  /* bytes used, not counting the terminating NUL */
    size_t cap;  /* bytes allocated */
    int oom;     /* set once an allocation failed */
} strbuf;

#define STRBUF_INIT {NULL, 0, 0, 0}

void sb_add(strbuf *sb, const char *s, size_t n);
void sb_adds(strbuf *sb, const char *s); /* NUL-terminated */
void sb_addc(strbuf *sb, char c);
void sb_printf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Hands the bytes to the caller (free() them; never NULL unless oom) and
 * resets sb to empty. */
char *sb_take(strbuf *sb, size_t *len);
void sb_free(strbuf *sb);

#endif
