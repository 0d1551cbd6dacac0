/* The streaming detokenizer (see detok.h), and tok_decode on top of it, so
 * that a full decode and a streamed one cannot disagree. */
#include "text/detok.h"

#include <stdlib.h>
#include <string.h>

#include "text/utf8.h"

struct detok {
    const tok_tokenizer *tok;
    const tok_decoder_cfg *cfg;
    bool skip_special;
    int strip_left;       /* leading strip_char still to drop (Strip decoder) */
    unsigned char *run;   /* the held run of byte-fallback bytes */
    size_t n_run, cap_run;
    char *out;            /* text released by the current call */
    size_t n_out, cap_out;
};

static int grow(void *pp, size_t *cap, size_t need) {
    char **p = pp;
    if (need <= *cap) return 0;
    size_t cap2 = *cap ? *cap : 256;
    while (cap2 < need) cap2 *= 2;
    char *q = realloc(*p, cap2);
    if (!q) return -1;
    *p = q, *cap = cap2;
    return 0;
}

detok *detok_create(const tok_tokenizer *tok, bool skip_special) {
    detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->tok = tok;
    d->cfg = tok_decoder(tok);
    d->skip_special = skip_special;
    d->strip_left = d->cfg->strip_start;
    return d;
}

void detok_free(detok *d) {
    if (!d) return;
    free(d->run);
    free(d->out);
    free(d);
}

static int append(detok *d, const char *s, size_t n) {
    if (grow(&d->out, &d->cap_out, d->n_out + n + 1)) return -1;
    memcpy(d->out + d->n_out, s, n);
    d->n_out += n;
    d->out[d->n_out] = 0;
    return 0;
}

/* Appends released text, dropping what the Strip decoder removes from the
 * start of the whole text. */
static int release(detok *d, const char *s, size_t n) {
    size_t cl = strlen(d->cfg->strip_char);
    while (d->strip_left > 0 && n >= cl && cl && !memcmp(s, d->cfg->strip_char, cl))
        s += cl, n -= cl, d->strip_left--;
    if (n) d->strip_left = 0; /* Strip stops at the first other character */
    return append(d, s, n);
}

/* A piece with the decoder's Replace applied (e.g. "▁" -> " "). */
static int release_piece(detok *d, const char *p) {
    const char *from = d->cfg->replace_from, *to = d->cfg->replace_to;
    size_t fl = strlen(from), tl = strlen(to);
    if (!fl) return release(d, p, strlen(p));
    for (const char *hit; (hit = strstr(p, from)); p = hit + fl)
        if (release(d, p, (size_t)(hit - p)) || release(d, to, tl)) return -1;
    return release(d, p, strlen(p));
}

static int release_run(detok *d) {
    int rc = 0;
    if (utf8_valid((const char *)d->run, d->n_run)) rc = release(d, (const char *)d->run, d->n_run);
    else
        for (size_t i = 0; i < d->n_run && !rc; i++) rc = release(d, UTF8_REPLACEMENT, 3);
    d->n_run = 0;
    return rc;
}

static int feed_one(detok *d, int32_t id) {
    const char *piece = tok_id_to_piece(d->tok, id);
    if (!piece || (d->skip_special && tok_is_special(d->tok, id))) return 0;
    int b = tok_byte_value(d->tok, id);
    if (b >= 0) {
        if (grow(&d->run, &d->cap_run, d->n_run + 1)) return -1;
        d->run[d->n_run++] = (unsigned char)b;
        return 0;
    }
    return (d->n_run && release_run(d)) || release_piece(d, piece) ? -1 : 0;
}

static int begin(detok *d, const char **text, size_t *len) {
    d->n_out = 0;
    *text = "";
    *len = 0;
    return append(d, "", 0); /* makes out a valid empty string */
}

int detok_feed(detok *d, const int32_t *ids, size_t n, const char **text, size_t *len, g4_err *err) {
    if (begin(d, text, len)) return g4_errorf(err, "detok: out of memory");
    for (size_t i = 0; i < n; i++)
        if (feed_one(d, ids[i])) return g4_errorf(err, "detok: out of memory");
    *text = d->out, *len = d->n_out;
    return 0;
}

int detok_flush(detok *d, const char **text, size_t *len, g4_err *err) {
    if (begin(d, text, len) || (d->n_run && release_run(d))) return g4_errorf(err, "detok: out of memory");
    *text = d->out, *len = d->n_out;
    d->strip_left = d->cfg->strip_start;
    return 0;
}

char *tok_decode(const tok_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *len) {
    detok *d = detok_create(t, skip_special);
    const char *part, *tail;
    size_t n_part, n_tail;
    char *text = NULL;
    if (d && !detok_feed(d, ids, n, &part, &n_part, NULL)) {
        /* take the fed text over, since the flush reuses the output buffer */
        text = d->out, d->out = NULL, d->cap_out = 0;
        char *all = detok_flush(d, &tail, &n_tail, NULL) ? NULL : realloc(text, n_part + n_tail + 1);
        if (all) {
            memcpy(all + n_part, tail, n_tail + 1);
            if (len) *len = n_part + n_tail;
        } else {
            free(text);
        }
        text = all;
    }
    detok_free(d);
    return text;
}
