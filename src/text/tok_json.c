/* The tokenizer.json scanner for model.vocab and model.merges (see tok_json.h). */
#include "text/tok_json.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

typedef struct {
    const char *buf, *end;
    char *out;       /* next free byte in doc->strings */
    g4_err *err;
} scanner;

static const char *ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    return p;
}

static const char *fail(scanner *s, const char *p, const char *what) {
    g4_errorf(s->err, "byte %zu: %s", (size_t)(p - s->buf), what);
    return NULL;
}

static int hex4(const char *p, const char *end) {
    int v = 0;
    for (int i = 0; i < 4; i++) {
        if (p + i >= end) return -1;
        char c = p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}


/* A \uXXXX escape at p (at the backslash), surrogate pairs joined. */
static const char *unicode_escape(scanner *s, const char *p, char **o) {
    int cp = hex4(p + 2, s->end);
    if (cp < 0) return fail(s, p, "bad \\u escape");
    p += 6;
    if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(s, p, "lone low surrogate");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int lo = p + 1 < s->end && p[0] == '\\' && p[1] == 'u' ? hex4(p + 2, s->end) : -1;
        if (lo < 0xDC00 || lo > 0xDFFF) return fail(s, p, "lone high surrogate");
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        p += 6;
    }
    if (cp == 0) return fail(s, p, "\\u0000 in a string");
    *o += utf8_cp_encode((uint32_t)cp, *o);
    return p;
}

/* Decodes the string at p (its opening quote) into s->out. A JSON string
 * never decodes longer than its source, so strings fits in the input size. */
static const char *string(scanner *s, const char *p, tjs_str *str) {
    if (p >= s->end || *p != '"') return fail(s, p, "expected a string");
    char *o = s->out;
    size_t bad;
    for (p++; p < s->end;) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *o = 0;
            *str = (tjs_str){s->out, (uint32_t)(o - s->out)};
            s->out = o + 1;
            return p + 1;
        }
        if (c < 0x20) return fail(s, p, "control character in a string");
        if (c == '\\') {
            const char *esc = "\"\\/bfnrt", *val = "\"\\/\b\f\n\r\t", *k = p + 1 < s->end ? strchr(esc, p[1]) : NULL;
            if (k && p[1]) *o++ = val[k - esc], p += 2;
            else if (p + 1 < s->end && p[1] == 'u') { if (!(p = unicode_escape(s, p, &o))) return NULL; }
            else return fail(s, p, "bad escape");
            continue;
        }
        size_t n = c < 0x80 ? 1 : utf8_next((const unsigned char *)p, (size_t)(s->end - p), &bad);
        if (!n) return fail(s, p, "invalid UTF-8");
        memcpy(o, p, n), o += n, p += n;
    }
    return fail(s, p, "unterminated string");
}

/* Skips any value without decoding it (jansson checks these parts later). */
static const char *skip_value(scanner *s, const char *p) {
    int depth = 0;
    do {
        if (p >= s->end) return fail(s, p, "unexpected end");
        char c = *p;
        if (c == '"') {
            for (p++; p < s->end && *p != '"'; p++)
                if (*p == '\\') p++;
            if (p >= s->end) return fail(s, p, "unterminated string");
            p++;
        } else if (c == '{' || c == '[') depth++, p++;
        else if (c == '}' || c == ']') depth--, p++;
        else if (depth == 0) {
            while (p < s->end && !strchr(",}] \t\r\n", *p)) p++;
        } else p++;
    } while (depth > 0);
    return depth < 0 ? fail(s, p, "unbalanced brackets") : p;
}

static bool raw_key_is(const char *p, const char *q, const char *name) {
    size_t n = strlen(name);
    return (size_t)(q - p) == n + 2 && !memcmp(p + 1, name, n);
}

typedef struct {
    const char *vocab, *vocab_end, *merges, *merges_end;
} extents;

/* Walks an object's members; in "model" (when model is true) it records where
 * vocab and merges lie, at the top level it descends into "model". */
static const char *members(scanner *s, const char *p, bool model, extents *x) {
    if (*(p = ws(p, s->end)) != '{') return fail(s, p, "expected an object");
    for (p = ws(p + 1, s->end); p < s->end && *p != '}';) {
        const char *key = p;
        if (!(p = skip_value(s, p)) || *key != '"') return fail(s, key, "expected a key");
        const char *key_end = p;
        if (*(p = ws(p, s->end)) != ':') return fail(s, p, "expected ':'");
        const char *v = ws(p + 1, s->end);
        if (!model && raw_key_is(key, key_end, "model") && *v == '{') p = members(s, v, true, x);
        else p = skip_value(s, v);
        if (!p) return NULL;
        if (model && raw_key_is(key, key_end, "vocab")) x->vocab = v, x->vocab_end = p;
        if (model && raw_key_is(key, key_end, "merges")) x->merges = v, x->merges_end = p;
        p = ws(p, s->end);
        if (*p == ',') p = ws(p + 1, s->end);
        else if (*p != '}') return fail(s, p, "expected ',' or '}'");
    }
    return p < s->end ? p + 1 : fail(s, p, "unterminated object");
}

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap * 2 : 1024;
    while (cap2 < need) cap2 *= 2;
    void *q = realloc(*p, cap2 * elem);
    if (!q) return -1;
    *p = q, *cap = cap2;
    return 0;
}

/* After an element: ',' and more, or the closing bracket. 1 more, 0 done. */
static int next_elem(scanner *s, const char **pp, char close) {
    const char *p = ws(*pp, s->end);
    if (p < s->end && *p == ',') return *pp = ws(p + 1, s->end), 1;
    if (p < s->end && *p == close) return *pp = p + 1, 0;
    fail(s, p, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    return -1;
}

static const char *integer(scanner *s, const char *p, int64_t *v) {
    const char *q = p + (p < s->end && *p == '-');
    *v = 0;
    if (q >= s->end || *q < '0' || *q > '9') return fail(s, p, "expected an integer");
    for (; q < s->end && *q >= '0' && *q <= '9'; q++) {
        if (*v > (INT64_MAX - 9) / 10) return fail(s, p, "integer too large");
        *v = *v * 10 + (*q - '0');
    }
    if (q < s->end && (*q == '.' || *q == 'e' || *q == 'E')) return fail(s, p, "expected an integer");
    if (*p == '-') *v = -*v;
    return q;
}

static int vocab(scanner *s, const char *p, tjs_doc *d) {
    size_t cap = 0, cap_id = 0;
    int more = *(p = ws(p + 1, s->end)) == '}' ? (p++, 0) : 1;
    while (more == 1) {
        if (grow((void **)&d->vocab_piece, &cap, d->n_vocab + 1, sizeof *d->vocab_piece) ||
            grow((void **)&d->vocab_id, &cap_id, d->n_vocab + 1, sizeof *d->vocab_id))
            return g4_errorf(s->err, "out of memory");
        if (!(p = string(s, p, &d->vocab_piece[d->n_vocab]))) return -1;
        if (*(p = ws(p, s->end)) != ':') return fail(s, p, "expected ':'"), -1;
        if (!(p = integer(s, ws(p + 1, s->end), &d->vocab_id[d->n_vocab++]))) return -1;
        more = next_elem(s, &p, '}');
    }
    return more;
}

/* One merge: ["a", "b"], or "a b" (left whole in a, b.s NULL). */
static const char *merge(scanner *s, const char *p, tjs_str *a, tjs_str *b) {
    if (*p == '"') return b->s = NULL, string(s, p, a);
    if (*p != '[') return fail(s, p, "expected a merge");
    if (!(p = string(s, ws(p + 1, s->end), a))) return NULL;
    if (*(p = ws(p, s->end)) != ',') return fail(s, p, "expected ','");
    if (!(p = string(s, ws(p + 1, s->end), b))) return NULL;
    if (*(p = ws(p, s->end)) != ']') return fail(s, p, "a merge has two parts");
    return p + 1;
}

static int merges(scanner *s, const char *p, tjs_doc *d) {
    size_t cap = 0, cap_b = 0;
    int more = *(p = ws(p + 1, s->end)) == ']' ? (p++, 0) : 1;
    while (more == 1) {
        if (grow((void **)&d->merge_a, &cap, d->n_merges + 1, sizeof *d->merge_a) ||
            grow((void **)&d->merge_b, &cap_b, d->n_merges + 1, sizeof *d->merge_b))
            return g4_errorf(s->err, "out of memory");
        if (!(p = merge(s, p, &d->merge_a[d->n_merges], &d->merge_b[d->n_merges]))) return -1;
        d->n_merges++;
        more = next_elem(s, &p, ']');
    }
    return more;
}

/* The document with [a, a_end) replaced by ea and [b, b_end) by eb (a < b). */
static int cut_out(tjs_doc *d, const char *buf, size_t len, const char *a, const char *a_end, const char *ea,
                   const char *b, const char *b_end, const char *eb) {
    if (!(d->rest = malloc(len + 5))) return -1;
    char *o = d->rest;
    size_t k = (size_t)(a - buf);
    memcpy(o, buf, k), o += k;
    memcpy(o, ea, 2), o += 2;
    memcpy(o, a_end, (size_t)(b - a_end)), o += b - a_end;
    memcpy(o, eb, 2), o += 2;
    k = (size_t)(buf + len - b_end);
    memcpy(o, b_end, k), o += k;
    *o = 0;
    d->rest_len = (size_t)(o - d->rest);
    return 0;
}

int tjs_scan(const char *buf, size_t len, tjs_doc *doc, g4_err *err) {
    memset(doc, 0, sizeof *doc);
    scanner s = {buf, buf + len, NULL, err};
    extents x = {0};
    if (!members(&s, buf, false, &x)) return -1;
    if (!x.vocab || !x.merges) {
        /* nothing to scan: jansson reads it all (and reports what is missing) */
        if (!(doc->rest = malloc(len + 1))) return g4_errorf(err, "out of memory");
        memcpy(doc->rest, buf, len), doc->rest[len] = 0, doc->rest_len = len;
        return 0;
    }
    if (*x.vocab != '{' || *x.merges != '[') return g4_errorf(err, "model.vocab or model.merges: wrong type");
    if (!(doc->strings = malloc(len + 1))) return g4_errorf(err, "out of memory");
    s.out = doc->strings;
    doc->has_vocab = doc->has_merges = true;
    if (vocab(&s, x.vocab, doc) || merges(&s, x.merges, doc)) return g4_err_wrap(err, "model.vocab/merges");
    bool vocab_first = x.vocab < x.merges;
    int rc = vocab_first ? cut_out(doc, buf, len, x.vocab, x.vocab_end, "{}", x.merges, x.merges_end, "[]")
                         : cut_out(doc, buf, len, x.merges, x.merges_end, "[]", x.vocab, x.vocab_end, "{}");
    return rc ? g4_errorf(err, "out of memory") : 0;
}

void tjs_free(tjs_doc *doc) {
    free(doc->strings);
    free(doc->vocab_piece);
    free(doc->vocab_id);
    free(doc->merge_a);
    free(doc->merge_b);
    free(doc->rest);
    memset(doc, 0, sizeof *doc);
}
