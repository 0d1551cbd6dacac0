/* The tokenizer (see tokenizer.h): lookups and encoding. Loading is in
 * tok_load.c, decoding in detok.c.
 *
 * Layout (tok_internal.h): pieces live in one string pool; the model vocab
 * (piece -> id) is a hash map, the BPE merges a packed (left, right) -> rank
 * map; added tokens are a byte trie whose edges are a hash map keyed by
 * (node << 8 | byte). BPE merges a word with a min-heap of candidate pairs
 * ordered by (rank, position), the order of HF's word.rs, so the output is
 * identical, not just equivalent. Two shortcuts keep it fast and change no
 * id: words are cut where no merge can cross (bpe_word), and chunks are
 * cached per thread (bpe_chunk). */
#include "text/tokenizer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "text/tok_internal.h"
#include "text/utf8.h"

/* ---- lookups --------------------------------------------------------------- */

int32_t tok_vocab_size(const tok_tokenizer *t) { return t->n_ids; }

const char *tok_id_to_piece(const tok_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids ? t->piece[id] : NULL;
}

int32_t tok_added_exact(const tok_tokenizer *t, const char *s, size_t n) {
    uint64_t node = 0;
    for (size_t i = 0; i < n; i++)
        if (!hm_u64_get(&t->trie, node << 8 | (unsigned char)s[i], &node)) return -1;
    return n ? t->trie_tok[node] : -1;
}

int32_t tok_piece_to_id(const tok_tokenizer *t, const char *piece) {
    size_t n = strlen(piece);
    int32_t id = tok_added_exact(t, piece, n);
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
    /* a symbol covers at least one byte, so n symbols suffice; the heap
     * starts with at most n - 1 pairs and each merge pops one and queues at
     * most two, so it never holds more than 2n */
    if (grow((void **)&c->syms, &c->cap_syms, n, sizeof *c->syms) ||
        grow((void **)&c->heap, &c->cap_heap, 2 * n, sizeof *c->heap))
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
