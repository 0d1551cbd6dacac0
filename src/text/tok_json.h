/* A strict scanner for the two large members of a tokenizer.json:
 * model.vocab ({"piece": id, ...}) and model.merges ([["a", "b"], ...] or
 * ["a b", ...]). Together they are ~800k strings; jansson, which builds a
 * node and an allocation for each, takes ~1 s on them, the whole load-time
 * budget. Everything else in the file is still parsed by jansson: the scanner
 * hands back the document with these two members emptied ("vocab": {},
 * "merges": []), so only their contents are read here. What it reads must be
 * valid JSON (escapes, control characters and UTF-8 are checked; "\u0000" is
 * refused as jansson refuses it); an error names the byte offset. */
#ifndef G4_TEXT_TOK_JSON_H
#define G4_TEXT_TOK_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct {
    const char *s; /* NUL-terminated, in tjs_doc.strings */
    uint32_t len;
} tjs_str;

typedef struct {
    char *strings;        /* every decoded string */
    bool has_vocab, has_merges;
    tjs_str *vocab_piece; /* vocab entries in file order */
    int64_t *vocab_id;
    size_t n_vocab;
    tjs_str *merge_a, *merge_b; /* merges in file order; for "a b" strings, b is
                                   NULL-s and a the whole string (split by caller) */
    size_t n_merges;
    char *rest;           /* the document with both members emptied */
    size_t rest_len;
} tjs_doc;

/* Scans buf[0..len). Returns 0, or -1 with err naming the offset. */
int tjs_scan(const char *buf, size_t len, tjs_doc *doc, g4_err *err);
void tjs_free(tjs_doc *doc);

#endif
