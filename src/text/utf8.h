/* UTF-8 validation and repair, as the tokenizer and detokenizer need them. */
#ifndef G4_TEXT_UTF8_H
#define G4_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#define UTF8_REPLACEMENT "\xEF\xBF\xBD" /* U+FFFD */

/* Length (1-4) of the valid UTF-8 character at s[0..n), or 0 if s starts an
 * invalid sequence; then *bad is the number of bytes one U+FFFD replaces (the
 * Unicode "maximal subpart", as TextDecoder and node's Buffer decode it).
 * n must be > 0. */
size_t utf8_next(const unsigned char *s, size_t n, size_t *bad);

bool utf8_valid(const char *s, size_t n);

/* A malloc'd, NUL-terminated copy of s with each maximal invalid subpart
 * replaced by U+FFFD; *out_len gets its length. NULL if out of memory. */
char *utf8_repair(const char *s, size_t n, size_t *out_len);

#endif
