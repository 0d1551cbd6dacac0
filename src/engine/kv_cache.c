/* CPU KV cache (see kv_cache.h). */
#include "engine/kv_cache.h"

#include <stdlib.h>
#include <string.h>

#include "util/numerics.h"

static size_t elem_size(g4_kv_dtype d) { return d == G4_KV_F32 ? 4 : d == G4_KV_BF16 ? 2 : 1; }

g4_kv_cache *g4_kv_create(const g4_config *cfg, g4_kv_dtype dtype, int n_seqs, int max_context,
                          const float *k_scales, const float *v_scales, g4_err *err) {
    g4_kv_cache *kv = calloc(1, sizeof *kv);
    kv->dtype = dtype;
    kv->n_layers = cfg->n_layers;
    kv->n_seqs = n_seqs;
    kv->max_context = max_context;
    kv->row_len = malloc(sizeof(int) * cfg->n_layers);
    kv->k_scale = malloc(sizeof(float) * cfg->n_layers);
    kv->v_scale = malloc(sizeof(float) * cfg->n_layers);
    kv->k = calloc((size_t)n_seqs * cfg->n_layers, sizeof(void *));
    kv->v = calloc((size_t)n_seqs * cfg->n_layers, sizeof(void *));
    for (int l = 0; l < cfg->n_layers; l++) {
        kv->row_len[l] = g4_layer_kv_dim(cfg, l);
        /* scales only mean something for an FP8 cache (sglang PR #18396) */
        kv->k_scale[l] = dtype == G4_KV_FP8 && k_scales ? k_scales[l] : 1.0f;
        kv->v_scale[l] = dtype == G4_KV_FP8 && v_scales ? v_scales[l] : 1.0f;
    }
    for (int s = 0; s < n_seqs; s++) {
        for (int l = 0; l < cfg->n_layers; l++) {
            size_t bytes = (size_t)max_context * kv->row_len[l] * elem_size(dtype);
            kv->k[s * kv->n_layers + l] = malloc(bytes);
            kv->v[s * kv->n_layers + l] = malloc(bytes);
            if (!kv->k[s * kv->n_layers + l] || !kv->v[s * kv->n_layers + l]) {
                g4_kv_free(kv);
                g4_errorf(err, "out of memory for a KV cache of %d sequences x %d tokens", n_seqs, max_context);
                return NULL;
            }
        }
    }
    return kv;
}

void g4_kv_free(g4_kv_cache *kv) {
    if (!kv) return;
    for (int i = 0; i < kv->n_seqs * kv->n_layers; i++) {
        free(kv->k[i]);
        free(kv->v[i]);
    }
    free(kv->k);
    free(kv->v);
    free(kv->row_len);
    free(kv->k_scale);
    free(kv->v_scale);
    free(kv);
}

static void store_row(g4_kv_dtype dtype, void *base, size_t row, int n, const float *x, float scale) {
    if (dtype == G4_KV_F32) {
        memcpy((float *)base + row * n, x, sizeof(float) * n);
    } else if (dtype == G4_KV_BF16) {
        g4_bf16 *dst = (g4_bf16 *)base + row * n;
        for (int i = 0; i < n; i++) dst[i] = g4_f32_to_bf16(x[i]);
    } else {
        uint8_t *dst = (uint8_t *)base + row * n;
        for (int i = 0; i < n; i++) dst[i] = g4_f32_to_fp8(x[i] / scale);
    }
}

static void load_row(g4_kv_dtype dtype, const void *base, size_t row, int n, float *out, float scale) {
    if (dtype == G4_KV_F32) {
        memcpy(out, (const float *)base + row * n, sizeof(float) * n);
    } else if (dtype == G4_KV_BF16) {
        const g4_bf16 *src = (const g4_bf16 *)base + row * n;
        for (int i = 0; i < n; i++) out[i] = g4_bf16_to_f32(src[i]);
    } else {
        const uint8_t *src = (const uint8_t *)base + row * n;
        for (int i = 0; i < n; i++) out[i] = g4_fp8_to_f32(src[i]) * scale;
    }
}

void g4_kv_store(g4_kv_cache *kv, int seq, int layer, int pos, const float *k, const float *v) {
    int i = seq * kv->n_layers + layer, n = kv->row_len[layer];
    store_row(kv->dtype, kv->k[i], (size_t)pos, n, k, kv->k_scale[layer]);
    store_row(kv->dtype, kv->v[i], (size_t)pos, n, v, kv->v_scale[layer]);
}

void g4_kv_load_k(const g4_kv_cache *kv, int seq, int layer, int pos, float *out) {
    load_row(kv->dtype, kv->k[seq * kv->n_layers + layer], (size_t)pos, kv->row_len[layer], out, kv->k_scale[layer]);
}

void g4_kv_load_v(const g4_kv_cache *kv, int seq, int layer, int pos, float *out) {
    load_row(kv->dtype, kv->v[seq * kv->n_layers + layer], (size_t)pos, kv->row_len[layer], out, kv->v_scale[layer]);
}

const char *g4_kv_dtype_name(g4_kv_dtype d) { return d == G4_KV_F32 ? "f32" : d == G4_KV_BF16 ? "bf16" : "fp8"; }

int g4_kv_dtype_parse(const char *name, g4_kv_dtype *out) {
    if (!strcmp(name, "f32")) *out = G4_KV_F32;
    else if (!strcmp(name, "bf16")) *out = G4_KV_BF16;
    else if (!strcmp(name, "fp8") || !strcmp(name, "fp8_e4m3")) *out = G4_KV_FP8;
    else return -1;
    return 0;
}
