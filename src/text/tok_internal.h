/* The tokenizer's insides, shared by tok_load.c (building it from a
 * tokenizer.json) and tokenizer.c (lookups and encoding). Not a public API. */
#ifndef G4_TEXT_TOK_INTERNAL_H
#define G4_TEXT_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/hashmap.h"
#include "text/tokenizer.h"

#define MARK "\xE2\x96\x81" /* U+2581 "▁", SentencePiece's space */

enum { TOKF_ADDED = 1, TOKF_SPECIAL = 2 };
enum { NORM_REPLACE, NORM_PREPEND };
enum { SPLIT_NONE, SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT };

#define MAX_NORM_OPS 8
#define MAX_IDS (1 << 24) /* refuse absurd ids rather than allocate for them */

typedef struct {
    int kind;
    char from[32], to[32]; /* Replace: from -> to; Prepend: to */
    size_t from_len, to_len;
} norm_op;

struct tok_tokenizer {
    uint64_t serial;      /* unique per load: keys the per-thread chunk cache */
    int32_t n_ids;        /* ids are 0..n_ids-1 */
    const char **piece;   /* id -> piece in pool, NULL for a hole */
    uint32_t *piece_len;
    uint8_t *flags;       /* TOKF_* */
    int16_t *byte_val;    /* id -> byte for <0xNN> pieces, else -1 */
    char *pool;
    size_t pool_used, pool_cap;

    hm_str vocab;         /* model vocab: piece -> id */
    hm_pair merges;       /* (left, right) -> rank */
    int32_t *merged;      /* rank -> the merged id */
    int32_t ascii_id[128];/* vocab id of each one-byte piece, -1 if absent */
    int32_t byte_id[256]; /* id of <0xNN>, -1 if absent */
    int32_t unk_id, bos_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    bool cut_words;       /* see bpe_word */

    /* chars that some piece has right before "▁": BPE never merges across
     * "c▁" for any other c, so a word can be cut there (see bpe_word) */
    bool ascii_before_mark[128];
    hm_str before_mark;   /* the non-ASCII ones */

    hm_u64 trie;          /* added tokens: (node << 8 | byte) -> child node */
    int32_t *trie_tok;    /* node -> id of the added token ending there, or -1 */
    size_t trie_nodes;
    bool trie_first[256]; /* bytes that can start an added token */

    norm_op norm[MAX_NORM_OPS];
    int n_norm;
    int split;            /* SPLIT_* */
    char split_pat[32];
    size_t split_len;
    tok_decoder_cfg dec;
};

/* The added token spelled exactly s[0..n), or -1. */
int32_t tok_added_exact(const tok_tokenizer *t, const char *s, size_t n);

#endif
