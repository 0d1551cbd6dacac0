/* Building a tokenizer from a HF tokenizer.json (see tokenizer.h for the
 * supported subset): model.vocab and model.merges through the scanner in
 * tok_json.c, everything else through jansson. Each part of the file has its
 * load_* function; an error names the field. */
#include <errno.h>
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"
#include "text/tok_json.h"
#include "text/utf8.h"
#include "util/file.h"

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


/* The vocab and merges go through the scanner (tok_json.h), the rest of the
 * document through jansson. */
static int load_file(tok_tokenizer *t, const char *path, g4_err *err) {
    size_t len;
    errno = 0;
    char *buf = g4_read_file(path, &len);
    if (!buf) return g4_errorf(err, "cannot read: %s", errno ? strerror(errno) : "short read");
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
