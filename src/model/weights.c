/* Checkpoint -> g4_weights (see weights.h). */
#include "model/weights.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/manifest.h"

static void *own(g4_weights *w, void *p) {
    w->owned = realloc(w->owned, sizeof *w->owned * (w->n_owned + 1));
    w->owned[w->n_owned++] = p;
    return p;
}

static const st_tensor *need(const g4_weights *w, const char *name, g4_err *err) {
    const st_tensor *t = st_model_find(w->ckpt, name);
    if (!t) g4_errorf(err, "%s: tensor '%s' is missing", w->ckpt->dir, name);
    return t;
}

static int check_shape(const st_tensor *t, int ndim, const int64_t *shape, g4_err *err) {
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++) ok = t->shape[i] == shape[i];
    if (ok) return 0;
    char have[96] = "", want[96] = "";
    for (int i = 0; i < t->ndim; i++) snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", i ? "," : "", (long long)t->shape[i]);
    for (int i = 0; i < ndim; i++) snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? "," : "", (long long)shape[i]);
    return g4_errorf(err, "%s: tensor '%s' has shape [%s] but config.json implies [%s]", t->file_path, t->name, have, want);
}

/* Any float-valued tensor (BF16, F16 not needed, F32) -> owned fp32 copy. */
static float *to_f32(g4_weights *w, const st_tensor *t, g4_err *err) {
    uint64_t n = st_numel(t);
    float *out = own(w, malloc(sizeof(float) * (n ? n : 1)));
    if (t->dtype == ST_BF16) {
        for (uint64_t i = 0; i < n; i++) {
            g4_bf16 h;
            memcpy(&h, (const char *)t->data + 2 * i, 2);
            out[i] = g4_bf16_to_f32(h);
        }
    } else if (t->dtype == ST_F32) {
        memcpy(out, t->data, n * sizeof(float));
    } else {
        g4_errorf(err, "%s: tensor '%s' is %s; expected BF16 or F32", t->file_path, t->name, st_dtype_name(t->dtype));
        return NULL;
    }
    return out;
}

static float *load_vector(g4_weights *w, const char *name, int64_t len, g4_err *err) {
    const st_tensor *t = need(w, name, err);
    if (!t || check_shape(t, 1, &len, err)) return NULL;
    return to_f32(w, t, err);
}

/* ------------------------------------------------------------ linear weights */

static int fp8_scales(g4_weights *w, g4_matrix *m, const st_tensor *t, g4_err *err) {
    char name[160];
    const st_tensor *s = NULL;
    size_t stem = strlen(t->name) - strlen("weight");
    const char *suffixes[] = {"weight_scale", "weight_scale_inv"};
    for (int i = 0; i < 2 && !s; i++) {
        snprintf(name, sizeof name, "%.*s%s", (int)stem, t->name, suffixes[i]);
        s = st_model_find(w->ckpt, name);
    }
    if (!s)
        return g4_errorf(err, "%s: FP8 tensor '%s' has no '%.*sweight_scale' (or _inv)", t->file_path, t->name,
                         (int)stem, t->name);
    int64_t R = g4_qblocks(m->rows), C = g4_qblocks(m->cols);
    int64_t shape4[4] = {R, 1, C, 1}, shape2[2] = {R, C};
    if (check_shape(s, s->ndim == 4 ? 4 : 2, s->ndim == 4 ? shape4 : shape2, err)) return -1;
    float *scales = to_f32(w, s, err);
    if (!scales) return -1;
    for (int64_t i = 0; i < R * C; i++)
        if (!(scales[i] >= 0.0f) || isinf(scales[i]))
            return g4_errorf(err, "%s: tensor '%s': block scale %lld is %g", s->file_path, s->name, (long long)i, scales[i]);
    m->scales = scales;
    return 0;
}

static int repair_nan_bytes(g4_weights *w, const st_tensor *t, g4_matrix *m, g4_err *err) {
    const uint8_t *codes = t->data;
    uint64_t n = st_numel(t), bad = 0;
    /* every weight byte is looked at once at start-up: spread it over the cores */
#pragma omp parallel for reduction(+ : bad) schedule(static) if (n > (1u << 22))
    for (uint64_t i = 0; i < n; i++) bad += (codes[i] & 0x7f) == 0x7f;
    if (!bad) return 0;
    uint8_t *writable = st_tensor_make_writable(t, err);
    if (!writable) return -1;
    g4_fp8_repair_nan(writable, n);
    w->repairs = realloc(w->repairs, sizeof *w->repairs * (w->n_repairs + 1));
    g4_nan_repair *r = &w->repairs[w->n_repairs++];
    snprintf(r->name, sizeof r->name, "%s", t->name);
    r->count = bad;
    m->data = writable;
    return 0;
}

static int quantize_at_load(g4_weights *w, g4_matrix *m, const st_tensor *t, g4_calib calib) {
    uint8_t *codes = own(w, malloc((size_t)m->rows * m->cols));
    float *scales = own(w, malloc(sizeof(float) * g4_qblocks(m->rows) * g4_qblocks(m->cols)));
    g4_quantize_bf16(m->data, m->rows, m->cols, calib, codes, scales); /* m->data: aligned even if t->data is not */
    m->format = G4_MAT_FP8_BLOCK;
    m->data = codes;
    m->scales = scales;
    return 0;
}

static int load_matrix(g4_weights *w, g4_matrix *m, const char *name, int64_t rows, int64_t cols,
                       const g4_load_opts *opts, g4_err *err) {
    const st_tensor *t = need(w, name, err);
    int64_t shape[2] = {rows, cols};
    if (!t || check_shape(t, 2, shape, err)) return -1;
    memset(m, 0, sizeof *m);
    m->rows = (int)rows;
    m->cols = (int)cols;
    m->name = t->name;
    m->data = t->data;
    if (t->dtype == ST_F8_E4M3) {
        m->format = G4_MAT_FP8_BLOCK;
        return fp8_scales(w, m, t, err) || repair_nan_bytes(w, t, m, err) ? -1 : 0;
    }
    if (t->dtype != ST_BF16)
        return g4_errorf(err, "%s: tensor '%s' is %s; linear weights must be BF16 or F8_E4M3", t->file_path, t->name,
                         st_dtype_name(t->dtype));
    m->format = G4_MAT_BF16;
    if ((uintptr_t)t->data % 2) { /* odd offset after an odd-sized FP8 tensor: copy to keep loads aligned */
        void *copy = own(w, malloc(st_nbytes(t)));
        memcpy(copy, t->data, st_nbytes(t));
        m->data = copy;
    }
    return opts && opts->quantize_bf16 ? quantize_at_load(w, m, t, opts->calib) : 0;
}

uint64_t g4_matrix_bytes(const g4_matrix *m) {
    if (!m->data) return 0;
    if (m->format == G4_MAT_BF16) return 2ull * m->rows * m->cols;
    return (uint64_t)m->rows * m->cols + 4ull * g4_qblocks(m->rows) * g4_qblocks(m->cols);
}

/* ------------------------------------------------------------ scalars */

static int load_scalar(g4_weights *w, const char *name, float *out, bool required, g4_err *err) {
    const st_tensor *t = st_model_find(w->ckpt, name);
    if (!t) return required ? g4_errorf(err, "%s: tensor '%s' is missing", w->ckpt->dir, name) : 1;
    if (st_numel(t) != 1) return g4_errorf(err, "%s: tensor '%s' should hold one value", t->file_path, name);
    float *v = to_f32(w, t, err);
    if (!v) return -1;
    *out = v[0];
    return 0;
}

/* KV-cache scales (checkpoint-format.md §4): used when positive and finite;
 * one present is copied to the other; none gives 1.0. */
static int load_kv_scales(g4_weights *w, const char *prefix, g4_layer_weights *lw, g4_err *err) {
    char name[192];
    float k = -1.0f, v = -1.0f;
    snprintf(name, sizeof name, "%sself_attn.k_proj.k_scale", prefix);
    if (load_scalar(w, name, &k, false, err) < 0) return -1;
    snprintf(name, sizeof name, "%sself_attn.v_proj.v_scale", prefix);
    if (load_scalar(w, name, &v, false, err) < 0) return -1;
    bool k_ok = k > 0.0f && isfinite(k), v_ok = v > 0.0f && isfinite(v);
    lw->k_scale = k_ok ? k : (v_ok ? v : 1.0f);
    lw->v_scale = v_ok ? v : (k_ok ? k : 1.0f);
    return 0;
}

/* ------------------------------------------------------------ layers */

static int load_layer(g4_weights *w, int l, const g4_load_opts *opts, g4_err *err) {
    const g4_config *c = &w->cfg;
    const g4_layer_geom *g = &c->layer[l];
    g4_layer_weights *lw = &w->layers[l];
    char p[160], n[224];
    snprintf(p, sizeof p, "%slayers.%d.", g4_text_prefix(c), l);
    int64_t h = c->hidden, q = g4_layer_q_dim(c, l), kv = g4_layer_kv_dim(c, l);
    bool kv_shared = g4_config_is_assistant(c) && l >= c->n_layers - c->n_kv_shared_layers;
#define MAT(field, suffix, rows, cols) \
    (snprintf(n, sizeof n, "%s%s", p, suffix), load_matrix(w, &lw->field, n, rows, cols, opts, err))
#define VEC(field, suffix, len) \
    (snprintf(n, sizeof n, "%s%s", p, suffix), !(lw->field = load_vector(w, n, len, err)))
    if (MAT(q, "self_attn.q_proj.weight", q, h) || MAT(o, "self_attn.o_proj.weight", h, q) ||
        MAT(gate, "mlp.gate_proj.weight", c->ffn, h) || MAT(up, "mlp.up_proj.weight", c->ffn, h) ||
        MAT(down, "mlp.down_proj.weight", h, c->ffn) || VEC(q_norm, "self_attn.q_norm.weight", g->head_dim) ||
        VEC(input_norm, "input_layernorm.weight", h) || VEC(post_attn_norm, "post_attention_layernorm.weight", h) ||
        VEC(pre_ffn_norm, "pre_feedforward_layernorm.weight", h) ||
        VEC(post_ffn_norm, "post_feedforward_layernorm.weight", h))
        return -1;
    if (!kv_shared && (MAT(k, "self_attn.k_proj.weight", kv, h) || VEC(k_norm, "self_attn.k_norm.weight", g->head_dim)))
        return -1;
    if (!kv_shared && !g->k_eq_v && MAT(v, "self_attn.v_proj.weight", kv, h)) return -1;
#undef MAT
#undef VEC
    snprintf(n, sizeof n, "%slayer_scalar", p);
    if (load_scalar(w, n, &lw->layer_scalar, true, err)) return -1;
    return load_kv_scales(w, p, lw, err);
}

static int load_all(g4_weights *w, const g4_load_opts *opts, g4_err *err) {
    const g4_config *c = &w->cfg;
    char n[192];
    snprintf(n, sizeof n, "%sembed_tokens.weight", g4_text_prefix(c));
    if (load_matrix(w, &w->embed, n, c->vocab_size, c->hidden, NULL, err)) return -1;
    if (w->embed.format != G4_MAT_BF16)
        return g4_errorf(err, "%s: '%s' must be BF16 (the tied LM head)", w->ckpt->dir, n);
    snprintf(n, sizeof n, "%snorm.weight", g4_text_prefix(c));
    if (!(w->final_norm = load_vector(w, n, c->hidden, err))) return -1;
    w->layers = own(w, calloc(c->n_layers, sizeof *w->layers));
    for (int l = 0; l < c->n_layers; l++)
        if (load_layer(w, l, opts, err)) return -1;
    return 0;
}

g4_weights *g4_weights_load(const char *dir, const g4_load_opts *opts, g4_err *err) {
    g4_weights *w = calloc(1, sizeof *w);
    if (g4_config_load(dir, &w->cfg, err) || !(w->ckpt = st_model_open(dir, err)) || load_all(w, opts, err)) {
        g4_weights_free(w);
        return NULL;
    }
    return w;
}

void g4_weights_free(g4_weights *w) {
    if (!w) return;
    for (int i = 0; i < w->n_owned; i++) free(w->owned[i]);
    free(w->owned);
    free(w->repairs);
    st_model_close(w->ckpt);
    free(w);
}
