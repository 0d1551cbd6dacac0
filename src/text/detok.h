/* The streaming detokenizer: token ids in, one at a time or several, text
 * out, where every piece of text returned is complete, valid UTF-8 and the
 * concatenation of all pieces (feeds, then the flush) equals tok_decode of
 * all the ids fed, byte for byte.
 *
 * What it holds back: a run of byte-fallback tokens <0xNN>. HF's ByteFallback
 * decodes a run as UTF-8 only if the whole run is valid, else as one U+FFFD
 * per byte, so a run is released when a non-byte token ends it (or at the
 * flush); a skipped special token does not end a run, as in tok_decode. All
 * other pieces are released at once. The leading-space rule (a decoder Strip
 * after Fuse, as some SentencePiece-style files declare) is applied to the
 * start of the whole stream, as the full decode does.
 *
 * Not thread-safe per detok; one detok per sequence. */
#ifndef G4_TEXT_DETOK_H
#define G4_TEXT_DETOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tokenizer.h"
#include "util/err.h"

typedef struct detok detok;

/* skip_special drops special tokens (false keeps "<|channel>" etc. for the
 * reasoning and tool-call parsers). The tokenizer must outlive the detok.
 * NULL if out of memory. */
detok *detok_create(const tok_tokenizer *tok, bool skip_special);
void detok_free(detok *d);

/* Feeds ids[0..n). *text gets the newly completed text (NUL-terminated,
 * possibly empty, owned by d, valid until the next call on d) and *len its
 * length. Returns 0, or -1 if out of memory. */
int detok_feed(detok *d, const int32_t *ids, size_t n, const char **text, size_t *len, g4_err *err);

/* Ends the stream: releases a held byte run (as U+FFFD per byte if it is not
 * valid UTF-8). The detok is then ready for a new stream. */
int detok_flush(detok *d, const char **text, size_t *len, g4_err *err);

#endif
