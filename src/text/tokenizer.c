/* The tokenizer (see tokenizer.h): loading a HF tokenizer.json with jansson,
 * then encoding. Decoding lives in detok.c.
 *
 * Layout: pieces live in one string pool; the model vocab (piece -> id) and
 * the BPE merges ((left id, right id) -> (rank, merged id)) are hash maps;
 * added tokens are a byte trie whose edges are a hash map keyed by
 * (node << 8 | byte). BPE merges a word with a min-heap of candidate pairs
 * ordered by (rank, position), the same order and the same stale-entry rule as
 * HF's word.rs, so the output is identical, not just equivalent. */
#include "text/tokenizer.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "text/hashmap.h"
#include "text/tok_json.h"
#include "text/utf8.h"

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

/* ---- loading --------------------------------------------------------------- */

static const char *pool_add(tok_tokenizer *t, const char *s, size_t n) {
    if (t->pool_used + n + 1 > t->pool_cap) return NULL;
    char *p = t->pool + t->pool_used;
    memcpy(p, s, n);
    p[n] = 0;
    t->pool_used += n + 1;
    return p;
}

/* Copies a JSON string into a small fixed buffer (patterns, decoder strings). */
static int copy_small(char *dst, size_t cap, size_t *len, json_t *s, const char *what, g4_err *err) {
    if (!json_is_string(s)) return g4_errorf(err, "%s: expected a string", what);
    size_t n = json_string_length(s);
    if (n >= cap) return g4_errorf(err, "%s: string too long (%zu bytes)", what, n);
    memcpy(dst, json_string_value(s), n + 1);
    if (len) *len = n;
    return 0;
}

/* A {"String": "..."} pattern; regex patterns are not supported. */
static int string_pattern(json_t *pat, char *dst, size_t cap, size_t *len, const char *what, g4_err *err) {
    json_t *s = json_object_get(pat, "String");
    if (!s) return g4_errorf(err, "%s: only String patterns are supported", what);
    return copy_small(dst, cap, len, s, what, err);
}

static bool is_true(json_t *o, const char *key) { return json_is_true(json_object_get(o, key)); }

static int byte_of_piece(const char *p, size_t n) {
    if (n != 6 || memcmp(p, "<0x", 3) || p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
              : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Sizes the id tables and the string pool from the vocab and added tokens. */
static int alloc_tables(tok_tokenizer *t, const tjs_doc *doc, json_t *added, g4_err *err) {
    size_t bytes = 0, i;
    int64_t max_id = -1;
    for (i = 0; i < doc->n_vocab; i++) {
        int64_t id = doc->vocab_id[i];
        if (id < 0 || id >= MAX_IDS) return g4_errorf(err, "model.vocab[\"%s\"]: bad id", doc->vocab_piece[i].s);
        if (id > max_id) max_id = id;
        bytes += doc->vocab_piece[i].len + 1;
    }
    json_t *v;
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        if (id < 0 || id >= MAX_IDS) return g4_errorf(err, "added_tokens[%zu]: bad id", i);
        if (id > max_id) max_id = id;
        bytes += json_string_length(json_object_get(v, "content")) + 1;
    }
    t->n_ids = (int32_t)(max_id + 1);
    t->pool_cap = bytes;
    t->pool = malloc(bytes ? bytes : 1);
    t->piece = calloc(t->n_ids + 1, sizeof *t->piece);
    t->piece_len = calloc(t->n_ids + 1, sizeof *t->piece_len);
    t->flags = calloc(t->n_ids + 1, 1);
    t->byte_val = malloc((t->n_ids + 1) * sizeof *t->byte_val);
    if (!t->pool || !t->piece || !t->piece_len || !t->flags || !t->byte_val || hm_str_init(&t->vocab, doc->n_vocab))
        return g4_errorf(err, "out of memory for %d ids", t->n_ids);
    return 0;
}

static int load_vocab(tok_tokenizer *t, const tjs_doc *doc, g4_err *err) {
    for (size_t i = 0; i < doc->n_vocab; i++) {
        int32_t id = (int32_t)doc->vocab_id[i];
        uint32_t n = doc->vocab_piece[i].len;
        const char *p = pool_add(t, doc->vocab_piece[i].s, n);
        if (t->piece[id]) return g4_errorf(err, "model.vocab: id %d given twice", id);
        t->piece[id] = p;
        t->piece_len[id] = n;
        hm_str_put(&t->vocab, p, n, id);
    }
    return 0;
}

/* One merge, either ["a", "b"] or "a b" (older files: one space). */
static int merge_parts(const tjs_doc *doc, size_t i, const char **a, size_t *na, const char **b, size_t *nb) {
    tjs_str x = doc->merge_a[i], y = doc->merge_b[i];
    if (y.s) {
        *a = x.s, *na = x.len, *b = y.s, *nb = y.len;
        return 0;
    }
    const char *sp = strchr(x.s, ' ');
    if (!sp || strchr(sp + 1, ' ')) return -1;
    *a = x.s, *na = (size_t)(sp - x.s), *b = sp + 1, *nb = x.len - *na - 1;
    return 0;
}

static int load_merges(tok_tokenizer *t, const tjs_doc *doc, g4_err *err) {
    size_t n = doc->n_merges;
    t->merged = malloc((n + 1) * sizeof *t->merged);
    if (!t->merged || hm_pair_init(&t->merges, n, (uint32_t)t->n_ids, (uint32_t)n + 1))
        return g4_errorf(err, "model.merges: out of memory or too many (%zu)", n);
    char cat[1024];
    for (size_t i = 0; i < n; i++) {
        const char *a, *b;
        size_t na, nb;
        if (merge_parts(doc, i, &a, &na, &b, &nb)) return g4_errorf(err, "model.merges[%zu]: malformed", i);
        if (na + nb > sizeof cat) return g4_errorf(err, "model.merges[%zu]: piece too long", i);
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int32_t ia = hm_str_get(&t->vocab, a, na), ib = hm_str_get(&t->vocab, b, nb);
        int32_t im = hm_str_get(&t->vocab, cat, na + nb);
        if (ia < 0 || ib < 0 || im < 0)
            return g4_errorf(err, "model.merges[%zu]: \"%.*s\" + \"%.*s\" not in the vocab", i, (int)na,
                             a, (int)nb, b);
        /* a later duplicate overwrites an earlier one, as in HF's HashMap collect */
        hm_pair_put(&t->merges, (uint32_t)ia, (uint32_t)ib, (uint32_t)i);
        t->merged[i] = im;
    }
    return 0;
}

static int load_model(tok_tokenizer *t, json_t *model, const tjs_doc *doc, g4_err *err) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE")) return g4_errorf(err, "model.type: only BPE is supported");
    json_t *drop = json_object_get(model, "dropout");
    if (drop && !json_is_null(drop)) return g4_errorf(err, "model.dropout: not supported");
    const char *affix[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const char *s = json_string_value(json_object_get(model, affix[i]));
        if (s && *s) return g4_errorf(err, "model.%s: not supported", affix[i]);
    }
    if (!doc->has_vocab || !doc->has_merges) return g4_errorf(err, "model.vocab or model.merges: missing");
    t->byte_fallback = is_true(model, "byte_fallback");
    t->fuse_unk = is_true(model, "fuse_unk");
    t->ignore_merges = is_true(model, "ignore_merges");
    if (load_vocab(t, doc, err) || load_merges(t, doc, err))
        return -1;
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = unk ? hm_str_get(&t->vocab, unk, strlen(unk)) : -1;
    return 0;
}

/* Builds the lookup tables that derive from the vocab. */
static void index_vocab(tok_tokenizer *t) {
    for (int c = 0; c < 128; c++) {
        char s = (char)c;
        t->ascii_id[c] = hm_str_get(&t->vocab, &s, 1);
    }
    char code[8];
    for (int b = 0; b < 256; b++) {
        snprintf(code, sizeof code, "<0x%02X>", b);
        t->byte_id[b] = hm_str_get(&t->vocab, code, 6);
    }
}

#define MARK "\xE2\x96\x81" /* U+2581 "▁", SentencePiece's space */

/* Finds every char that some piece has right before "▁"; -1 if there are
 * too many to be worth cutting words for. */
static int index_marks(tok_tokenizer *t) {
    if (hm_str_init(&t->before_mark, 64)) return -1;
    size_t n_other = 0;
    for (int32_t id = 0; id < t->n_ids; id++) {
        const char *p = t->piece[id];
        for (const char *hit = p ? strstr(p, MARK) : NULL; hit; hit = strstr(hit + 3, MARK)) {
            if (hit == p) continue;
            const char *c = hit - 1;
            while (c > p && ((unsigned char)*c & 0xC0) == 0x80) c--; /* back to the lead byte */
            size_t len = (size_t)(hit - c);
            if ((unsigned char)*c < 0x80) t->ascii_before_mark[(unsigned char)*c] = true;
            else if (len != 3 || memcmp(c, MARK, 3)) {
                if (++n_other > 32) return -1;
                hm_str_put(&t->before_mark, c, (uint32_t)len, 1);
            }
        }
    }
    return 0;
}

static int trie_insert(tok_tokenizer *t, const char *s, size_t n, int32_t id) {
    uint64_t node = 0, child;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = node << 8 | (unsigned char)s[i];
        if (!hm_u64_get(&t->trie, key, &child)) {
            child = t->trie_nodes++;
            hm_u64_put(&t->trie, key, child);
        }
        node = child;
    }
    t->trie_first[(unsigned char)s[0]] = true;
    t->trie_tok[node] = id;
    return 0;
}

static int load_added_token(tok_tokenizer *t, json_t *a, size_t i, g4_err *err) {
    json_t *content = json_object_get(a, "content");
    if (!json_is_string(content) || !json_string_length(content))
        return g4_errorf(err, "added_tokens[%zu]: missing content", i);
    const char *flags[] = {"lstrip", "rstrip", "single_word", "normalized"};
    for (int k = 0; k < 4; k++)
        if (is_true(a, flags[k])) return g4_errorf(err, "added_tokens[%zu]: %s=true is not supported", i, flags[k]);
    int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
    size_t n = json_string_length(content);
    /* HF's id_to_token asks the added vocabulary first, so its content wins */
    t->piece[id] = pool_add(t, json_string_value(content), n);
    t->piece_len[id] = (uint32_t)n;
    t->flags[id] |= TOKF_ADDED | (is_true(a, "special") ? TOKF_SPECIAL : 0);
    return trie_insert(t, t->piece[id], n, id);
}

static int load_added(tok_tokenizer *t, json_t *added, g4_err *err) {
    size_t bytes = 1, i;
    json_t *a;
    json_array_foreach(added, i, a) bytes += json_string_length(json_object_get(a, "content"));
    t->trie_tok = malloc(bytes * sizeof *t->trie_tok);
    if (!t->trie_tok || hm_u64_init(&t->trie, bytes)) return g4_errorf(err, "out of memory");
    for (size_t k = 0; k < bytes; k++) t->trie_tok[k] = -1;
    t->trie_nodes = 1; /* the root */
    json_array_foreach(added, i, a) if (load_added_token(t, a, i, err)) return -1;
    return 0;
}

static int load_norm_op(tok_tokenizer *t, json_t *n, g4_err *err) {
    const char *type = json_string_value(json_object_get(n, "type"));
    if (t->n_norm == MAX_NORM_OPS) return g4_errorf(err, "normalizer: too many steps");
    norm_op *op = &t->norm[t->n_norm++];
    if (type && !strcmp(type, "Replace")) {
        op->kind = NORM_REPLACE;
        if (string_pattern(json_object_get(n, "pattern"), op->from, sizeof op->from, &op->from_len,
                           "normalizer Replace.pattern", err))
            return -1;
        if (!op->from_len) return g4_errorf(err, "normalizer Replace.pattern: empty");
        return copy_small(op->to, sizeof op->to, &op->to_len, json_object_get(n, "content"),
                          "normalizer Replace.content", err);
    }
    if (type && !strcmp(type, "Prepend")) {
        op->kind = NORM_PREPEND;
        return copy_small(op->to, sizeof op->to, &op->to_len, json_object_get(n, "prepend"),
                          "normalizer Prepend.prepend", err);
    }
    return g4_errorf(err, "normalizer: type %s is not supported", type ? type : "(none)");
}

static int load_normalizer(tok_tokenizer *t, json_t *n, g4_err *err) {
    if (!n || json_is_null(n)) return 0;
    const char *type = json_string_value(json_object_get(n, "type"));
    if (!type || strcmp(type, "Sequence")) return load_norm_op(t, n, err);
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(n, "normalizers"), i, step) if (load_norm_op(t, step, err)) return -1;
    return 0;
}

static int load_pre_tokenizer(tok_tokenizer *t, json_t *p, g4_err *err) {
    if (!p || json_is_null(p)) return 0;
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type || strcmp(type, "Split"))
        return g4_errorf(err, "pre_tokenizer: type %s is not supported", type ? type : "(none)");
    if (is_true(p, "invert")) return g4_errorf(err, "pre_tokenizer Split.invert: not supported");
    if (string_pattern(json_object_get(p, "pattern"), t->split_pat, sizeof t->split_pat, &t->split_len,
                       "pre_tokenizer Split.pattern", err))
        return -1;
    const char *names[] = {"", "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext"};
    const char *b = json_string_value(json_object_get(p, "behavior"));
    for (int k = 1; k < 5 && b; k++)
        if (!strcmp(b, names[k])) t->split = k;
    if (!t->split || !t->split_len)
        return g4_errorf(err, "pre_tokenizer Split.behavior: %s is not supported", b ? b : "(none)");
    return 0;
}

static int load_decoder_step(tok_tokenizer *t, json_t *d, bool *fused, g4_err *err) {
    const char *type = json_string_value(json_object_get(d, "type"));
    tok_decoder_cfg *c = &t->dec;
    if (!type) return g4_errorf(err, "decoder: step without a type");
    if (!strcmp(type, "ByteFallback")) return c->byte_fallback = true, 0;
    if (!strcmp(type, "Fuse")) return *fused = true, 0;
    if (!strcmp(type, "Replace")) {
        if (c->replace_from[0]) return g4_errorf(err, "decoder: only one Replace is supported");
        return string_pattern(json_object_get(d, "pattern"), c->replace_from, sizeof c->replace_from, NULL,
                              "decoder Replace.pattern", err) ||
               copy_small(c->replace_to, sizeof c->replace_to, NULL, json_object_get(d, "content"),
                          "decoder Replace.content", err) ? -1 : 0;
    }
    if (!strcmp(type, "Strip")) {
        /* Strip after Fuse acts on the whole text; trailing strips would make
         * streaming hold text back, and no Gemma file uses them */
        if (!*fused || json_integer_value(json_object_get(d, "stop")))
            return g4_errorf(err, "decoder Strip: only after Fuse and with stop=0 is supported");
        c->strip_start = (int)json_integer_value(json_object_get(d, "start"));
        return copy_small(c->strip_char, sizeof c->strip_char, NULL, json_object_get(d, "content"),
                          "decoder Strip.content", err);
    }
    return g4_errorf(err, "decoder: type %s is not supported", type);
}

static int load_decoder(tok_tokenizer *t, json_t *d, g4_err *err) {
    if (!d || json_is_null(d)) return g4_errorf(err, "decoder: missing (not supported)");
    bool fused = false;
    const char *type = json_string_value(json_object_get(d, "type"));
    if (!type || strcmp(type, "Sequence")) return load_decoder_step(t, d, &fused, err);
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(d, "decoders"), i, step)
        if (load_decoder_step(t, step, &fused, err)) return -1;
    return 0;
}

/* BOS: the first special token of the post-processor's single template. */
static void load_bos(tok_tokenizer *t, json_t *post) {
    json_t *first = json_array_get(json_object_get(post, "single"), 0);
    const char *name = json_string_value(json_object_get(json_object_get(first, "SpecialToken"), "id"));
    json_t *ids = json_object_get(json_object_get(json_object_get(post, "special_tokens"), name ? name : ""), "ids");
    t->bos_id = json_is_integer(json_array_get(ids, 0)) ? (int32_t)json_integer_value(json_array_get(ids, 0))
                                                        : tok_piece_to_id(t, "<bos>");
}

static int load_json(tok_tokenizer *t, json_t *root, const tjs_doc *doc, g4_err *err) {
    json_t *model = json_object_get(root, "model"), *added = json_object_get(root, "added_tokens");
    if (!json_is_object(model)) return g4_errorf(err, "model: missing");
    if (added && !json_is_array(added)) return g4_errorf(err, "added_tokens: expected an array");
    if (alloc_tables(t, doc, added, err) || load_model(t, model, doc, err) ||
        load_added(t, added, err) || load_normalizer(t, json_object_get(root, "normalizer"), err) ||
        load_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), err) ||
        load_decoder(t, json_object_get(root, "decoder"), err))
        return -1;
    index_vocab(t);
    t->cut_words = !t->ignore_merges && index_marks(t) == 0;
    for (int32_t id = 0; id < t->n_ids; id++)
        t->byte_val[id] = t->dec.byte_fallback && t->piece[id] ? byte_of_piece(t->piece[id], t->piece_len[id]) : -1;
    load_bos(t, json_object_get(root, "post_processor"));
    return 0;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) != (size_t)n)
        free(buf), buf = NULL;
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* The vocab and merges go through the scanner (tok_json.h), the rest of the
 * document through jansson. */
static int load_file(tok_tokenizer *t, const char *path, g4_err *err) {
    size_t len;
    char *buf = read_file(path, &len);
    if (!buf) return g4_errorf(err, "cannot read");
    tjs_doc doc;
    json_error_t jerr;
    json_t *root = NULL;
    int rc = tjs_scan(buf, len, &doc, err);
    free(buf);
    if (rc == 0 && !(root = json_loadb(doc.rest, doc.rest_len, 0, &jerr)))
        rc = g4_errorf(err, "line %d: %s", jerr.line, jerr.text);
    if (rc == 0) rc = load_json(t, root, &doc, err);
    json_decref(root);
    tjs_free(&doc);
    return rc;
}

tok_tokenizer *tok_load(const char *path, g4_err *err) {
    static atomic_uint_fast64_t serials;
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (t) t->serial = atomic_fetch_add(&serials, 1) + 1;
    if (!t || load_file(t, path, err)) {
        if (!t) g4_errorf(err, "out of memory");
        g4_err_wrap(err, "%s", path);
        tok_free(t);
        return NULL;
    }
    return t;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    hm_str_free(&t->vocab);
    hm_pair_free(&t->merges);
    free(t->merged);
    hm_u64_free(&t->trie);
    hm_str_free(&t->before_mark);
    free(t->trie_tok);
    free(t->piece);
    free(t->piece_len);
    free(t->flags);
    free(t->byte_val);
    free(t->pool);
    free(t);
}

/* ---- lookups --------------------------------------------------------------- */

int32_t tok_vocab_size(const tok_tokenizer *t) { return t->n_ids; }

const char *tok_id_to_piece(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->piece[id] : NULL;
}

/* The added token spelled exactly s[0..n), or -1. */
static int32_t added_exact(const tok_tokenizer *t, const char *s, size_t n) {
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++)
        if (!hm_u64_get(&t->trie, node << 8 | (unsigned char)s[i], &node)) return -1;
    return n ? t->trie_tok[node] : -1;
}

int32_t tok_piece_to_id(const tok_tokenizer *t, const char *piece) {
    size_t n = strlen(piece);
    int32_t id = added_exact(t, piece, n);
    return id >= 0 ? id : hm_str_get(&t->vocab, piece, n);
}

bool tok_is_special(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->flags[id] & TOKF_SPECIAL);
}

int32_t tok_bos_id(const tok_tokenizer *t) { return t->bos_id; }

const tok_decoder_cfg *tok_decoder(const tok_tokenizer *t) { return &t->dec; }

int tok_byte_value(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->byte_val[id] : -1;
}

/* ---- encoding -------------------------------------------------------------- */

typedef struct {
    int32_t id;
    int32_t prev, next; /* -1 at the ends; a merged-away symbol has id -1 */
} bpe_sym;

typedef struct {
    uint32_t rank, pos;  /* pops in (rank, pos) order, as HF's Merge Ord */
    int32_t left, right; /* the pair's ids when queued */
} bpe_cand;

/* Per-call scratch, so a tokenizer can encode on several threads at once. */
typedef struct {
    int32_t *ids;
    size_t n_ids, cap_ids;
    bpe_sym *syms;
    size_t cap_syms;
    bpe_cand *heap;
    size_t n_heap, cap_heap;
    char *norm[2]; /* normalizer ping-pong buffers */
    size_t cap_norm[2];
} enc_ctx;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 64;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q) return -1;
    *p = q, *cap = cap2;
    return 0;
}

static int push_id(enc_ctx *c, int32_t id) {
    if (grow((void **)&c->ids, &c->cap_ids, c->n_ids + 1, sizeof *c->ids)) return -1;
    c->ids[c->n_ids++] = id;
    return 0;
}

static bool cand_less(bpe_cand a, bpe_cand b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

static void heap_push(enc_ctx *c, bpe_cand x) {
    size_t i = c->n_heap++;
    while (i > 0 && cand_less(x, c->heap[(i - 1) / 2])) {
        c->heap[i] = c->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    c->heap[i] = x;
}

static bpe_cand heap_pop(enc_ctx *c) {
    bpe_cand top = c->heap[0], x = c->heap[--c->n_heap];
    size_t i = 0, n = c->n_heap;
    for (;;) {
        size_t k = 2 * i + 1;
        if (k >= n) break;
        if (k + 1 < n && cand_less(c->heap[k + 1], c->heap[k])) k++;
        if (!cand_less(c->heap[k], x)) break;
        c->heap[i] = c->heap[k];
        i = k;
    }
    if (n) c->heap[i] = x;
    return top;
}

/* Queues the pair starting at symbol pos, if the merges know it. */
static void queue_pair(const tok_tokenizer *t, enc_ctx *c, int32_t pos) {
    int32_t next = c->syms[pos].next;
    if (next < 0) return;
    int32_t left = c->syms[pos].id, right = c->syms[next].id;
    int64_t rank = hm_pair_get(&t->merges, (uint32_t)left, (uint32_t)right);
    if (rank >= 0) heap_push(c, (bpe_cand){(uint32_t)rank, (uint32_t)pos, left, right});
}

static void add_sym(enc_ctx *c, size_t *n, int32_t id) {
    c->syms[*n] = (bpe_sym){id, (int32_t)*n - 1, (int32_t)*n + 1};
    (*n)++;
}

/* Splits a word into initial symbols: one per character found in the vocab,
 * else its bytes as <0xNN> (byte fallback), else <unk> (fused when fuse_unk),
 * following HF's BPE::merge_word. The word is valid UTF-8. */
static size_t initial_symbols(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n) {
    size_t n_sym = 0, bad;
    int32_t pending_unk = 0; /* an <unk> not yet added (HF fuses them) */
    for (size_t i = 0; i < n;) {
        unsigned char b = (unsigned char)w[i];
        size_t k = b < 0x80 ? 1 : utf8_next((const unsigned char *)w + i, n - i, &bad);
        int32_t id = b < 0x80 ? t->ascii_id[b] : hm_str_get(&t->vocab, w + i, k);
        bool bytes_ok = t->byte_fallback;
        for (size_t j = 0; j < k && id < 0 && bytes_ok; j++) bytes_ok = t->byte_id[(unsigned char)w[i + j]] >= 0;
        if (id >= 0) {
            if (pending_unk) add_sym(c, &n_sym, t->unk_id), pending_unk = 0;
            add_sym(c, &n_sym, id);
        } else if (bytes_ok) {
            for (size_t j = 0; j < k; j++) add_sym(c, &n_sym, t->byte_id[(unsigned char)w[i + j]]);
        } else if (t->unk_id >= 0) {
            if (pending_unk && !t->fuse_unk) add_sym(c, &n_sym, t->unk_id);
            pending_unk = 1;
        }
        i += k;
    }
    if (pending_unk) add_sym(c, &n_sym, t->unk_id);
    if (n_sym) c->syms[n_sym - 1].next = -1;
    return n_sym;
}

/* Merges the symbols, lowest rank first and leftmost among equal ranks (HF
 * word.rs merge_all). HF drops a queued candidate when the pair now at its
 * position does not merge into the same id; since a symbol only grows to the
 * right, that happens exactly when the pair's ids changed, which is cheaper
 * to test. */
static void merge_symbols(const tok_tokenizer *t, enc_ctx *c, size_t n_sym) {
    c->n_heap = 0;
    for (size_t i = 0; i + 1 < n_sym; i++) queue_pair(t, c, (int32_t)i);
    while (c->n_heap) {
        bpe_cand top = heap_pop(c);
        bpe_sym *s = &c->syms[top.pos];
        if (s->id != top.left || s->next < 0 || c->syms[s->next].id != top.right) continue;
        bpe_sym *r = &c->syms[s->next];
        s->id = t->merged[top.rank];
        s->next = r->next;
        r->id = -1;
        if (s->next >= 0) c->syms[s->next].prev = (int32_t)top.pos;
        if (s->prev >= 0) queue_pair(t, c, s->prev);
        queue_pair(t, c, (int32_t)top.pos);
    }
}

/* A per-thread cache of chunk -> ids, as HF caches words: chunks repeat
 * ("▁the", "▁of") and a hit skips BPE. Entries hold exact results, so the
 * cache changes nothing but speed; per thread, so it needs no lock. */
#define CACHE_SLOTS 16384
#define CACHE_TEXT 22
#define CACHE_IDS 8

typedef struct {
    uint64_t serial; /* the tokenizer's; 0 = empty */
    uint8_t len, n_ids;
    char text[CACHE_TEXT];
    int32_t ids[CACHE_IDS];
} cache_entry;

static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_init(void) { pthread_key_create(&cache_key, free); }

static cache_entry *cache_slot(const tok_tokenizer *t, const char *w, size_t n) {
    pthread_once(&cache_once, cache_init);
    cache_entry *cache = pthread_getspecific(cache_key);
    if (!cache && (cache = calloc(CACHE_SLOTS, sizeof *cache))) pthread_setspecific(cache_key, cache);
    if (!cache) return NULL;
    uint64_t h = t->serial * 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)w[i]) * 1099511628211ull;
    return &cache[(h ^ (h >> 32)) & (CACHE_SLOTS - 1)];
}

static int bpe_chunk_uncached(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n);

static int bpe_chunk(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n) {
    if (!n) return 0;
    cache_entry *e = n <= CACHE_TEXT ? cache_slot(t, w, n) : NULL;
    if (e && e->serial == t->serial && e->len == n && !memcmp(e->text, w, n)) {
        if (grow((void **)&c->ids, &c->cap_ids, c->n_ids + e->n_ids, sizeof *c->ids)) return -1;
        memcpy(c->ids + c->n_ids, e->ids, e->n_ids * sizeof *e->ids);
        c->n_ids += e->n_ids;
        return 0;
    }
    size_t first = c->n_ids;
    if (bpe_chunk_uncached(t, c, w, n)) return -1;
    if (e && c->n_ids - first <= CACHE_IDS) {
        e->serial = t->serial, e->len = (uint8_t)n, e->n_ids = (uint8_t)(c->n_ids - first);
        memcpy(e->text, w, n);
        memcpy(e->ids, c->ids + first, e->n_ids * sizeof *e->ids);
    }
    return 0;
}

static int bpe_chunk_uncached(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n) {
    if (t->ignore_merges) {
        int32_t id = hm_str_get(&t->vocab, w, n);
        if (id >= 0) return push_id(c, id);
    }
    /* a character gives at most 4 symbols (its bytes), so n symbols suffice;
     * each merge queues at most 2 candidates on top of the first n */
    if (grow((void **)&c->syms, &c->cap_syms, n, sizeof *c->syms) ||
        grow((void **)&c->heap, &c->cap_heap, 3 * n, sizeof *c->heap))
        return -1;
    size_t n_sym = initial_symbols(t, c, w, n);
    merge_symbols(t, c, n_sym);
    for (int32_t i = n_sym ? 0 : -1; i >= 0; i = c->syms[i].next)
        if (push_id(c, c->syms[i].id)) return -1;
    return 0;
}

/* True if BPE can never merge across w[at], a "▁" preceded by w[..at): the
 * char before it is a piece of its own (not bytes or <unk>) that no piece
 * has right before "▁", so no merge result can span the two. */
static bool can_cut(const tok_tokenizer *t, const char *w, size_t at) {
    size_t k = at - 1;
    while (k > 0 && ((unsigned char)w[k] & 0xC0) == 0x80) k--;
    unsigned char b = (unsigned char)w[k];
    if (b < 0x80) return t->ascii_id[b] >= 0 && !t->ascii_before_mark[b];
    size_t len = at - k;
    if (len == 3 && !memcmp(w + k, MARK, 3)) return false;
    return hm_str_get(&t->vocab, w + k, len) >= 0 && hm_str_get(&t->before_mark, w + k, len) < 0;
}

/* BPE on one pre-tokenized word. The Gemma pre-tokenizer leaves whole lines
 * as one word; cutting them before "▁" where no merge can cross (can_cut)
 * gives the same ids with a much smaller heap per chunk. */
static int bpe_word(const tok_tokenizer *t, enc_ctx *c, const char *w, size_t n) {
    if (!t->cut_words) return bpe_chunk(t, c, w, n);
    size_t start = 0;
    for (const char *hit = memmem(w, n, MARK, 3); hit; hit = memmem(hit + 3, n - (size_t)(hit + 3 - w), MARK, 3)) {
        size_t at = (size_t)(hit - w);
        if (at > start && can_cut(t, w, at)) {
            if (bpe_chunk(t, c, w + start, at - start)) return -1;
            start = at;
        }
    }
    return bpe_chunk(t, c, w + start, n - start);
}

/* The pre-tokenizer: Split on a literal pattern (empty pieces are dropped,
 * as HF does), or the whole segment as one word. */
static int pre_tokenize(const tok_tokenizer *t, enc_ctx *c, const char *s, size_t n) {
    if (t->split == SPLIT_NONE) return bpe_word(t, c, s, n);
    size_t start = 0, from = 0, pl = t->split_len; /* current piece; where to search */
    for (const char *hit; (hit = memmem(s + from, n - from, t->split_pat, pl));) {
        size_t at = (size_t)(hit - s), end = t->split == SPLIT_MERGED_PREV ? at + pl : at;
        if (bpe_word(t, c, s + start, end - start)) return -1;
        if (t->split == SPLIT_ISOLATED && bpe_word(t, c, hit, pl)) return -1;
        start = t->split == SPLIT_MERGED_NEXT ? at : at + pl;
        from = at + pl;
    }
    return bpe_word(t, c, s + start, n - start);
}

/* Applies one normalizer step from src into c->norm[k]. */
static int norm_step(const norm_op *op, enc_ctx *c, int k, const char *src, size_t n, size_t *out_n) {
    size_t bound = op->kind == NORM_PREPEND ? n + op->to_len : n * (op->to_len / op->from_len + 1);
    if (grow((void **)&c->norm[k], &c->cap_norm[k], bound + 1, 1)) return -1;
    char *dst = c->norm[k];
    size_t o = 0;
    if (op->kind == NORM_PREPEND) {
        if (n) memcpy(dst, op->to, op->to_len), o = op->to_len; /* HF prepends to non-empty text only */
        memcpy(dst + o, src, n);
        *out_n = o + n;
        return 0;
    }
    for (size_t i = 0; i < n;) {
        const char *hit = memmem(src + i, n - i, op->from, op->from_len);
        size_t at = hit ? (size_t)(hit - src) : n;
        memcpy(dst + o, src + i, at - i), o += at - i;
        if (!hit) break;
        memcpy(dst + o, op->to, op->to_len), o += op->to_len;
        i = at + op->from_len;
    }
    *out_n = o;
    return 0;
}

static int encode_segment(const tok_tokenizer *t, enc_ctx *c, const char *s, size_t n) {
    if (!n) return 0;
    for (int k = 0; k < t->n_norm; k++) {
        if (norm_step(&t->norm[k], c, k & 1, s, n, &n)) return -1;
        s = c->norm[k & 1];
    }
    return pre_tokenize(t, c, s, n);
}

/* Length of the longest added token at s[0..n), with its id in *id; 0 if none. */
static size_t match_added(const tok_tokenizer *t, const char *s, size_t n, int32_t *id) {
    uint64_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        if (!hm_u64_get(&t->trie, node << 8 | (unsigned char)s[i], &node)) break;
        if (t->trie_tok[node] >= 0) best = i + 1, *id = t->trie_tok[node];
    }
    return best;
}

/* Added tokens are matched leftmost-longest in the raw text (HF's
 * AddedVocabulary with non-normalized tokens); the rest is encoded. */
static int encode_text(const tok_tokenizer *t, enc_ctx *c, const char *s, size_t n) {
    size_t seg = 0;
    for (size_t i = 0; i < n;) {
        int32_t id;
        size_t k = t->trie_first[(unsigned char)s[i]] ? match_added(t, s + i, n - i, &id) : 0;
        if (!k) { i++; continue; }
        if (encode_segment(t, c, s + seg, i - seg) || push_id(c, id)) return -1;
        i += k;
        seg = i;
    }
    return encode_segment(t, c, s + seg, n - seg);
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, bool add_bos, int32_t **ids,
               size_t *n, g4_err *err) {
    if (add_bos && t->bos_id < 0) return g4_errorf(err, "tokenizer has no BOS token");
    char *fixed = NULL;
    if (!utf8_valid(text, len)) {
        if (!(fixed = utf8_repair(text, len, &len))) return g4_errorf(err, "out of memory");
        text = fixed;
    }
    enc_ctx c = {0};
    int rc = (add_bos ? push_id(&c, t->bos_id) : 0) || encode_text(t, &c, text, len);
    free(fixed);
    free(c.syms);
    free(c.heap);
    free(c.norm[0]);
    free(c.norm[1]);
    if (rc) {
        free(c.ids);
        return g4_errorf(err, "out of memory while encoding %zu bytes", len);
    }
    *ids = c.ids ? c.ids : malloc(sizeof(int32_t));
    *n = c.n_ids;
    return 0;
}
