/* SHA-256 (FIPS 180-4), for recognising known files such as chat templates. */
#ifndef G4_UTIL_SHA256_H
#define G4_UTIL_SHA256_H

#include <stddef.h>
#include <stdint.h>

void g4_sha256(const void *data, size_t len, uint8_t out[32]);
/* Lower-case hex digest, NUL-terminated. */
void g4_sha256_hex(const void *data, size_t len, char out[65]);

#endif
