/* The tokenizer: a HF tokenizer.json (the Gemma kind: BPE with byte fallback)
 * loaded into hash maps, with encoding and decoding that match HF `tokenizers`
 * id for id.
 *
 * Supported subset of tokenizer.json (anything else is a load error naming it):
 *   normalizer     null | Replace(String) | Prepend | Sequence of those
 *   pre_tokenizer  null | Split(String, MergedWithPrevious|MergedWithNext|Isolated|Removed)
 *   model          BPE (byte_fallback, fuse_unk, ignore_merges; merges as
 *                  "a b" strings or [a, b] pairs); no dropout, no subword affixes
 *   added_tokens   normalized=false, lstrip/rstrip/single_word false
 *   decoder        Sequence of Replace(String), ByteFallback, Fuse, Strip(start only)
 *   post_processor used only for the BOS id (TemplateProcessing)
 *
 * Encoding: added tokens (special or not) are matched in the raw text first,
 * leftmost-longest, as HF does by default; the text between them is normalized,
 * pre-tokenized and BPE-merged. Invalid UTF-8 input is handled as HF's node
 * binding sees it: node decodes bytes to a JS string with each maximal invalid
 * subpart replaced by U+FFFD, so tok_encode does the same before encoding.
 *
 * Decoding follows the declared decoder chain; in particular a run of
 * consecutive byte tokens <0xNN> becomes its UTF-8 text if the whole run is
 * valid UTF-8, and otherwise one U+FFFD per byte (HF ByteFallback).
 *
 * A loaded tokenizer is immutable: every function here is safe to call from
 * several threads at once. */
#ifndef G4_TEXT_TOKENIZER_H
#define G4_TEXT_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct tok_tokenizer tok_tokenizer;

/* Loads path (a tokenizer.json). NULL on failure, with err naming the field. */
tok_tokenizer *tok_load(const char *path, g4_err *err);
void tok_free(tok_tokenizer *t);

/* Encodes text[0..len) (any bytes; see above for invalid UTF-8). *ids gets a
 * malloc'd array the caller frees, *n its length. With add_bos the BOS id
 * (from the post_processor, else "<bos>") comes first. Returns 0 or -1. */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **ids,
               size_t *n, g4_err *err);

/* The text of ids (malloc'd, NUL-terminated, valid UTF-8; caller frees), or
 * NULL if out of memory; *len (if len is not NULL) gets its length, which
 * counts any NUL bytes inside (<0x00> decodes to one). Ids outside the
 * vocabulary are skipped, as HF does; with skip_special, so are the special
 * tokens. Implemented in detok.c, so that full and streaming decoding are one
 * code path. */
char *tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len);

/* Ids run from 0 to tok_vocab_size() - 1 (there may be holes). */
int32_t tok_vocab_size(const tok_tokenizer *t);
/* The piece of id as stored (e.g. "▁world", "<0x0A>", "<|turn>"), or NULL. */
const char *tok_id_to_piece(const tok_tokenizer *t, int32_t id);
/* The id of a piece (added tokens first, then the model vocab), or -1. */
int32_t tok_piece_to_id(const tok_tokenizer *t, const char *piece);
/* True for added tokens marked "special" (what skip_special skips). */
bool tok_is_special(const tok_tokenizer *t, int32_t id);
/* The BOS id, or -1 if the file declares none. */
int32_t tok_bos_id(const tok_tokenizer *t);

/* The decoder chain, for the streaming detokenizer (detok.h). */
typedef struct {
    char replace_from[16], replace_to[16]; /* Replace, per piece; "" if none */
    bool byte_fallback;                    /* ByteFallback */
    int strip_start;                       /* Strip after Fuse: at most this many */
    char strip_char[8];                    /* leading strip_char are removed */
} tok_decoder_cfg;

const tok_decoder_cfg *tok_decoder(const tok_tokenizer *t);
/* The byte a <0xNN> piece stands for (0-255) if the decoder has ByteFallback,
 * else -1. */
int tok_byte_value(const tok_tokenizer *t, int32_t id);

#endif
