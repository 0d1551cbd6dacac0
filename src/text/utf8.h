/* UTF-8 validation, repair, decoding and encoding (utf8_cp_*: jansson, linked
 * statically, already exports utf8_encode), for the tokenizer,
 * detokenizer, tokenizer.json reader and chat template. */
#ifndef G4_TEXT_UTF8_H
#define G4_TEXT_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* The code point at s, which must be valid UTF-8 (jansson strings are);
 * *adv gets its length in bytes. */
uint32_t utf8_cp_decode(const char *s, size_t *adv);

/* Writes cp (at most U+10FFFF) as UTF-8 to out; returns the byte count (1-4). */
size_t utf8_cp_encode(uint32_t cp, char out[4]);

#endif
