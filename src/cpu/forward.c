/* The Gemma 4 text forward pass, step by step as model.md §2 writes it.
 * Activations are [n_tok][width] fp32 arrays; weights are BF16 or FP8
 * dequantized on the fly (cpu_matmul). */
#include "cpu/forward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/ops.h"
#include "util/numerics.h"

typedef struct {
    int n;                          /* tokens in this call */
    float *h;                       /* [n][hidden] residual stream */
    float *x;                       /* [n][max(hidden, ffn)] normed input / scratch */
    float *q, *k, *v;               /* [n][q_dim], [n][kv_dim] (largest layer) */
    float *attn;                    /* [n][q_dim] attention output before o_proj */
    float *proj;                    /* [n][hidden] o_proj / down_proj output */
    float *gate, *up;               /* [n][ffn] */
} activations;

static int max_q_dim(const g4_config *c) {
    int m = 0;
    for (int l = 0; l < c->n_layers; l++) m = g4_layer_q_dim(c, l) > m ? g4_layer_q_dim(c, l) : m;
    return m;
}

static int max_kv_dim(const g4_config *c) {
    int m = 0;
    for (int l = 0; l < c->n_layers; l++) m = g4_layer_kv_dim(c, l) > m ? g4_layer_kv_dim(c, l) : m;
    return m;
}

static int act_alloc(activations *a, const g4_config *c, int n) {
    size_t wide = (size_t)(c->hidden > c->ffn ? c->hidden : c->ffn);
    a->n = n;
    a->h = malloc(sizeof(float) * n * c->hidden);
    a->x = malloc(sizeof(float) * n * wide);
    a->q = malloc(sizeof(float) * n * max_q_dim(c));
    a->attn = malloc(sizeof(float) * n * max_q_dim(c));
    a->k = malloc(sizeof(float) * n * max_kv_dim(c));
    a->v = malloc(sizeof(float) * n * max_kv_dim(c));
    a->proj = malloc(sizeof(float) * n * c->hidden);
    a->gate = malloc(sizeof(float) * n * c->ffn);
    a->up = malloc(sizeof(float) * n * c->ffn);
    return a->h && a->x && a->q && a->attn && a->k && a->v && a->proj && a->gate && a->up ? 0 : -1;
}

static void act_free(activations *a) {
    free(a->h), free(a->x), free(a->q), free(a->attn), free(a->k), free(a->v);
    free(a->proj), free(a->gate), free(a->up);
}

/* §2.2: h0 = E[token] * bf16(sqrt(hidden)) (62.0 for the 12B, as HF rounds it). */
static void embed(const g4_weights *w, const int32_t *tokens, int n, float *h) {
    const int d = w->cfg.hidden;
    const float scale = g4_round_bf16(sqrtf((float)d));
    const g4_bf16 *table = w->embed.data;
    for (int t = 0; t < n; t++)
        for (int i = 0; i < d; i++) h[(size_t)t * d + i] = g4_bf16_to_f32(table[(size_t)tokens[t] * d + i]) * scale;
}

/* q, k, v for every token: projections, per-head norms, RoPE (§2.4). */
static void qkv(const g4_weights *w, int l, int pos0, activations *a) {
    const g4_config *c = &w->cfg;
    const g4_layer_geom *g = &c->layer[l];
    const g4_layer_weights *lw = &w->layers[l];
    const int hd = g->head_dim, q_dim = g4_layer_q_dim(c, l), kv_dim = g4_layer_kv_dim(c, l);
    cpu_matmul(&lw->q, a->x, a->n, a->q);
    cpu_matmul(&lw->k, a->x, a->n, a->k);
    if (g->k_eq_v) memcpy(a->v, a->k, sizeof(float) * a->n * kv_dim); /* V is the raw k_proj output */
    else cpu_matmul(&lw->v, a->x, a->n, a->v);
    for (int t = 0; t < a->n; t++) {
        for (int hq = 0; hq < c->n_heads; hq++) {
            float *q = a->q + (size_t)t * q_dim + hq * hd;
            cpu_rmsnorm(q, q, lw->q_norm, hd, c->rms_eps);
            cpu_rope(q, hd, g->rope_pairs, g->rope_theta, pos0 + t);
        }
        for (int hk = 0; hk < g->n_kv_heads; hk++) {
            float *k = a->k + (size_t)t * kv_dim + hk * hd, *v = a->v + (size_t)t * kv_dim + hk * hd;
            cpu_rmsnorm(k, k, lw->k_norm, hd, c->rms_eps);
            cpu_rope(k, hd, g->rope_pairs, g->rope_theta, pos0 + t);
            cpu_rmsnorm(v, v, NULL, hd, c->rms_eps); /* weightless v_norm, every layer */
        }
    }
}

/* §2.4-2.5: scale 1.0; query t sees key s iff s <= t, and on sliding layers
 * also s > t - window. One (token, head) pair per iteration. */
static void attention(const g4_weights *w, const g4_kv_cache *kv, int seq, int l, int pos0, activations *a) {
    const g4_config *c = &w->cfg;
    const g4_layer_geom *g = &c->layer[l];
    const int hd = g->head_dim, q_dim = g4_layer_q_dim(c, l), kv_dim = g4_layer_kv_dim(c, l);
    const int group = c->n_heads / g->n_kv_heads;
#pragma omp parallel
    {
        int span = pos0 + a->n;
        float *scores = malloc(sizeof(float) * span), *row = malloc(sizeof(float) * kv_dim);
#pragma omp for collapse(2) schedule(dynamic)
        for (int t = 0; t < a->n; t++) {
            for (int hq = 0; hq < c->n_heads; hq++) {
                const int pos = pos0 + t, kvh = hq / group;
                const int first = g->window && pos - g->window + 1 > 0 ? pos - g->window + 1 : 0;
                const float *q = a->q + (size_t)t * q_dim + hq * hd;
                float max = -INFINITY;
                for (int s = first; s <= pos; s++) {
                    g4_kv_load_k(kv, seq, l, s, row);
                    float dotp = 0.0f;
                    for (int i = 0; i < hd; i++) dotp += q[i] * row[kvh * hd + i];
                    scores[s] = dotp;
                    max = dotp > max ? dotp : max;
                }
                float sum = 0.0f;
                for (int s = first; s <= pos; s++) sum += scores[s] = expf(scores[s] - max);
                float *o = a->attn + (size_t)t * q_dim + hq * hd;
                memset(o, 0, sizeof(float) * hd);
                for (int s = first; s <= pos; s++) {
                    g4_kv_load_v(kv, seq, l, s, row);
                    const float p = scores[s] / sum;
                    for (int i = 0; i < hd; i++) o[i] += p * row[kvh * hd + i];
                }
            }
        }
        free(scores);
        free(row);
    }
}

/* h += rms(y; norm) for every token (the sandwich norms' residual add). */
static void add_normed(const g4_config *c, float *h, const float *y, const float *norm, int n) {
    float *tmp = malloc(sizeof(float) * c->hidden);
    for (int t = 0; t < n; t++) {
        cpu_rmsnorm(tmp, y + (size_t)t * c->hidden, norm, c->hidden, c->rms_eps);
        for (int i = 0; i < c->hidden; i++) h[(size_t)t * c->hidden + i] += tmp[i];
    }
    free(tmp);
}

static void norm_rows(const g4_config *c, float *out, const float *h, const float *norm, int n) {
    for (int t = 0; t < n; t++)
        cpu_rmsnorm(out + (size_t)t * c->hidden, h + (size_t)t * c->hidden, norm, c->hidden, c->rms_eps);
}

static void mlp(const g4_weights *w, int l, activations *a) {
    const g4_config *c = &w->cfg;
    const g4_layer_weights *lw = &w->layers[l];
    norm_rows(c, a->x, a->h, lw->pre_ffn_norm, a->n);
    cpu_matmul(&lw->gate, a->x, a->n, a->gate);
    cpu_matmul(&lw->up, a->x, a->n, a->up);
    for (size_t i = 0; i < (size_t)a->n * c->ffn; i++) a->gate[i] = cpu_gelu_tanh(a->gate[i]) * a->up[i];
    cpu_matmul(&lw->down, a->gate, a->n, a->proj);
    add_normed(c, a->h, a->proj, lw->post_ffn_norm, a->n);
}

static void decoder_layer(const g4_weights *w, g4_kv_cache *kv, int seq, int l, int pos0, activations *a) {
    const g4_config *c = &w->cfg;
    const g4_layer_weights *lw = &w->layers[l];
    const int kv_dim = g4_layer_kv_dim(c, l);
    norm_rows(c, a->x, a->h, lw->input_norm, a->n);
    qkv(w, l, pos0, a);
    for (int t = 0; t < a->n; t++)
        g4_kv_store(kv, seq, l, pos0 + t, a->k + (size_t)t * kv_dim, a->v + (size_t)t * kv_dim);
    attention(w, kv, seq, l, pos0, a);
    cpu_matmul(&lw->o, a->attn, a->n, a->proj);
    add_normed(c, a->h, a->proj, lw->post_attn_norm, a->n);
    mlp(w, l, a);
    for (size_t i = 0; i < (size_t)a->n * c->hidden; i++) a->h[i] *= lw->layer_scalar; /* whole residual */
}

/* §2.6: final norm, tied head, softcap. */
static void logits_for(const g4_weights *w, const float *h_row, float *normed, float *out) {
    const g4_config *c = &w->cfg;
    cpu_rmsnorm(normed, h_row, w->final_norm, c->hidden, c->rms_eps);
    cpu_matmul(&w->embed, normed, 1, out);
    if (c->final_softcap > 0)
        for (int i = 0; i < c->vocab_size; i++) out[i] = c->final_softcap * tanhf(out[i] / c->final_softcap);
}

int cpu_forward(const g4_weights *w, g4_kv_cache *kv, int seq, int pos0, const int32_t *tokens, int n,
                bool all_logits, float *logits, g4_err *err) {
    const g4_config *c = &w->cfg;
    if (n <= 0) return g4_errorf(err, "forward of %d tokens", n);
    if (pos0 + n > kv->max_context)
        return g4_errorf(err, "sequence would reach %d tokens; the context limit is %d", pos0 + n, kv->max_context);
    for (int t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return g4_errorf(err, "token id %d is outside the vocabulary (0..%d)", tokens[t], c->vocab_size - 1);
    activations a;
    if (act_alloc(&a, c, n)) {
        act_free(&a);
        return g4_errorf(err, "out of memory for activations of %d tokens", n);
    }
    embed(w, tokens, n, a.h);
    for (int l = 0; l < c->n_layers; l++) decoder_layer(w, kv, seq, l, pos0, &a);
    for (int t = all_logits ? 0 : n - 1, row = 0; t < n; t++, row++)
        logits_for(w, a.h + (size_t)t * c->hidden, a.x, logits + (size_t)row * c->vocab_size);
    act_free(&a);
    return 0;
}
