/* Whole small files (JSON configs) into memory. */
#ifndef G4_UTIL_FILE_H
#define G4_UTIL_FILE_H

#include <stddef.h>

/* The file's bytes plus a terminating NUL (malloc'd), its length in *len
 * (may be NULL); NULL if it cannot be read. */
char *g4_read_file(const char *path, size_t *len);

#endif
