/* The KV cache of the CPU reference backend: for each sequence slot and
 * layer, K and V rows of n_kv_heads * head_dim values, one row per position,
 * stored as F32 (the exact reference), BF16, or FP8 E4M3 with the layer's
 * scale (stored = e4m3(x / scale), read = value * scale; checkpoint-format.md §4).
 *
 * Rows are addressed through kv_row(), so that pages can replace the
 * contiguous per-sequence arrays later without touching the forward pass. */
#ifndef G4_ENGINE_KV_CACHE_H
#define G4_ENGINE_KV_CACHE_H

#include <stdint.h>

#include "model/config.h"
#include "util/err.h"

typedef enum { G4_KV_F32, G4_KV_BF16, G4_KV_FP8 } g4_kv_dtype;

typedef struct {
    g4_kv_dtype dtype;
    int n_layers, n_seqs, max_context;
    int *row_len;           /* [n_layers] values per row: n_kv_heads * head_dim */
    float *k_scale, *v_scale; /* [n_layers]; 1.0 unless FP8 with checkpoint scales */
    void **k, **v;          /* [n_seqs * n_layers] -> [max_context][row_len] */
} g4_kv_cache;

g4_kv_cache *g4_kv_create(const g4_config *cfg, g4_kv_dtype dtype, int n_seqs, int max_context,
                          const float *k_scales, const float *v_scales, g4_err *err);
void g4_kv_free(g4_kv_cache *kv);

/* Stores one position's K and V rows (row_len values each). */
void g4_kv_store(g4_kv_cache *kv, int seq, int layer, int pos, const float *k, const float *v);
/* Reads them back as fp32 (what attention sees). */
void g4_kv_load_k(const g4_kv_cache *kv, int seq, int layer, int pos, float *out);
void g4_kv_load_v(const g4_kv_cache *kv, int seq, int layer, int pos, float *out);

const char *g4_kv_dtype_name(g4_kv_dtype dtype);
int g4_kv_dtype_parse(const char *name, g4_kv_dtype *out); /* "f32", "bf16", "fp8" */

#endif
