/* Synthetic checkpoints (see synth.h). */
#include "model/synth.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/config_json.h"
#include "model/manifest.h"
#include "model/modelopt.h"
#include "model/quant.h"
#include "model/safetensors.h"
#include "util/numerics.h"
#include "util/progress.h"

#define SHARD_BYTES 5000000000ull /* transformers' "5GB" */

/* ------------------------------------------------------------ presets */

static void set_geometry(g4_config *c, int sliding_hd, int sliding_kv, int full_hd, int window) {
    for (int l = 0; l < c->n_layers; l++) {
        g4_layer_geom *g = &c->layer[l];
        bool full = c->layer[l].kind == G4_ATTN_FULL;
        g->head_dim = full ? full_hd : sliding_hd;
        g->n_kv_heads = full ? 1 : sliding_kv;
        g->k_eq_v = full;
        g->rope = full ? G4_ROPE_PROPORTIONAL : G4_ROPE_DEFAULT;
        g->rope_theta = full ? 1e6f : 1e4f;
        g->rope_pairs = full ? full_hd / 8 : sliding_hd / 2; /* partial_rotary_factor 0.25 */
        g->window = full ? 0 : window;
    }
    c->sliding_window = window;
}

static void common_tokens(g4_config *c) {
    c->bos_id = 2;
    c->pad_id = 0;
    c->eos_ids[0] = 1, c->eos_ids[1] = 106;
    c->n_eos = 2;
    c->image_token_id = 258880, c->audio_token_id = 258881, c->video_token_id = 258884;
    c->boi_token_id = 255999, c->eoi_token_id = 258882, c->boa_token_id = 256000, c->eoa_token_id = 258883;
    c->quant_block[0] = c->quant_block[1] = 128;
}

int g4_synth_preset(const char *name, g4_config *c, g4_err *err) {
    memset(c, 0, sizeof *c);
    common_tokens(c);
    c->rms_eps = 1e-6f;
    c->vocab_size = 262144;
    c->tie_embeddings = true;
    c->max_position = 262144;
    if (!strcmp(name, "12b") || !strcmp(name, "tiny")) {
        bool big = !strcmp(name, "12b");
        snprintf(c->model_type, sizeof c->model_type, "gemma4_unified");
        c->hidden = big ? 3840 : 256;
        c->ffn = big ? 15360 : 1024;
        c->n_layers = big ? 48 : 6;
        c->n_heads = big ? 16 : 4;
        c->final_softcap = 30.0f;
        for (int l = 0; l < c->n_layers; l++) c->layer[l].kind = (l + 1) % 6 == 0 ? G4_ATTN_FULL : G4_ATTN_SLIDING;
        set_geometry(c, big ? 256 : 64, big ? 8 : 2, big ? 512 : 128, big ? 1024 : 128);
        c->vision_patch_dim = 6912;
        c->vision_posemb = 1120;
        c->audio_dim = 640;
        return 0;
    }
    if (!strcmp(name, "assistant-12b")) {
        snprintf(c->model_type, sizeof c->model_type, "gemma4_unified_assistant");
        c->hidden = 1024;
        c->ffn = 8192;
        c->n_layers = 4;
        c->n_heads = 16;
        c->n_kv_shared_layers = 4;
        c->backbone_hidden = 3840;
        for (int l = 0; l < 4; l++) c->layer[l].kind = l == 3 ? G4_ATTN_FULL : G4_ATTN_SLIDING;
        set_geometry(c, 256, 8, 512, 1024);
        return 0;
    }
    return g4_errorf(err, "unknown preset '%s' (tiny, 12b, assistant-12b, or a config.json path)", name);
}

/* ------------------------------------------------------------ random values */

static inline uint64_t mix64(uint64_t x) { /* splitmix64 finalizer */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Approximately N(0,1): four 16-bit uniforms (Irwin-Hall), from one hash. */
static inline float gauss(uint64_t h) {
    float s = (float)(h & 0xffff) + (float)((h >> 16) & 0xffff) + (float)((h >> 32) & 0xffff) + (float)(h >> 48);
    return (s / 65536.0f - 2.0f) * 1.7320508f;
}

static inline float uniform(uint64_t h) { return (float)(h >> 40) / 16777216.0f; }

/* Value of element i of a tensor: the block's magnitude varies like a trained
 * model's (log-normal across 128x128 blocks), one element in 1024 is an outlier. */
static float synth_value(const g4_manifest_entry *e, uint64_t key, uint64_t i, int64_t cols) {
    uint64_t h = mix64(key ^ (i * 0xd1342543de82ef95ull));
    switch (e->role) {
    case G4_T_NORM: return 0.3f + 1.7f * uniform(h);
    case G4_T_SCALAR: return 0.2f + 0.7f * uniform(h);
    case G4_T_EMBED: {
        float row_scale = 0.5f + uniform(mix64(key + i / (uint64_t)cols));
        return 0.03f * row_scale * gauss(h);
    }
    default: {
        uint64_t block = (i / (uint64_t)cols / 128) * 1000003ull + (i % (uint64_t)cols) / 128;
        float block_std = 0.02f * exp2f(0.7f * gauss(mix64(key ^ block)));
        float v = block_std * gauss(h);
        if ((h & 0x3ff) == 0x155) v *= 6.0f;
        return v;
    }
    }
}

static void fill_bf16(const g4_manifest_entry *e, uint64_t key, g4_bf16 *out, uint64_t n) {
    int64_t cols = e->ndim >= 2 ? e->shape[e->ndim - 1] : 1;
#pragma omp parallel for schedule(static)
    for (uint64_t i = 0; i < n; i++) {
        g4_bf16 b = g4_f32_to_bf16(synth_value(e, key, i, cols));
        if ((b & 0x7fff) == 0) b |= 0x3c00; /* never a zero: zeros run faster than real data */
        out[i] = b;
    }
}

/* ------------------------------------------------------------ writing */

static uint64_t numel(const g4_manifest_entry *e) {
    uint64_t n = 1;
    for (int d = 0; d < e->ndim; d++) n *= (uint64_t)e->shape[d];
    return n;
}

static bool quantized(const g4_manifest_entry *e, g4_synth_dtype dtype) {
    return dtype == G4_SYNTH_FP8 && e->role == G4_T_LINEAR;
}

static int declare_tensors(st_writer *w, const g4_manifest_entry *m, int n, g4_synth_dtype dtype, g4_err *err) {
    for (int i = 0; i < n; i++) {
        if (!quantized(&m[i], dtype)) {
            if (st_writer_add(w, m[i].name, ST_BF16, m[i].ndim, m[i].shape, err)) return -1;
            continue;
        }
        if (g4_modelopt_declare_linear(w, m[i].name, m[i].shape, err)) return -1;
    }
    return 0;
}

static int write_tensor(st_writer *w, const g4_manifest_entry *e, uint64_t key, g4_synth_dtype dtype, g4_err *err) {
    uint64_t n = numel(e);
    g4_bf16 *values = malloc(n * sizeof *values);
    if (!values) return g4_errorf(err, "out of memory for tensor '%s'", e->name);
    fill_bf16(e, key, values, n);
    int rc;
    if (!quantized(e, dtype)) {
        rc = st_writer_write(w, e->name, values, err);
    } else {
        rc = g4_modelopt_write_linear(w, e->name, values, (int)e->shape[0], (int)e->shape[1], G4_CALIB_MAX, err);
    }
    free(values);
    return rc;
}

static int write_json_side_files(const g4_config *cfg, g4_synth_dtype dtype, const char *dir, g4_err *err) {
    json_t *config = g4_config_to_json(cfg);
    int rc = dtype == G4_SYNTH_FP8
                 ? g4_modelopt_write_metadata(dir, config, true, cfg->vision_patch_dim || cfg->audio_dim, err)
                 : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!rc) rc = g4_write_json_file(path, config, err);
    json_decref(config);
    if (rc || g4_config_is_assistant(cfg)) return rc;
    json_t *gen = json_pack("{s:i, s:i, s:[i,i,i], s:[i,i], s:b, s:f, s:i, s:f, s:s}", "bos_token_id", cfg->bos_id,
                            "pad_token_id", cfg->pad_id, "eos_token_id", 1, 106, 50, "suppress_tokens",
                            cfg->eoa_token_id, cfg->eoi_token_id, "do_sample", 1, "temperature", 1.0, "top_k", 64,
                            "top_p", 0.95, "transformers_version", "5.17.0");
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    rc = g4_write_json_file(path, gen, err);
    json_decref(gen);
    return rc;
}

int g4_synth_write(const g4_config *cfg, g4_synth_dtype dtype, uint64_t seed, const char *dir, int progress,
                   g4_err *err) {
    g4_manifest_entry *m;
    int n = g4_manifest_build(cfg, dtype == G4_SYNTH_FP8 ? G4_MM_NAMES_TRANSFORMERS : G4_MM_NAMES_ORIGINAL, &m);
    st_writer *w = st_writer_create(dir, err);
    int rc = w ? 0 : -1;
    if (!rc) rc = write_json_side_files(cfg, dtype, dir, err);
    if (!rc) rc = declare_tensors(w, m, n, dtype, err);
    if (!rc) rc = st_writer_begin(w, SHARD_BYTES, err);
    g4_progress pr;
    g4_progress_start(&pr);
    for (int i = 0; i < n && !rc; i++) {
        rc = write_tensor(w, &m[i], mix64(seed * 0x2545f4914f6cdd1dull + (uint64_t)i), dtype, err);
        if (progress) g4_progress_step(&pr, i + 1, n, m[i].name);
    }
    if (progress && !rc) g4_progress_end(&pr, n);
    if (!rc) rc = st_writer_finish(w, err);
    st_writer_free(w);
    free(m);
    return rc;
}
