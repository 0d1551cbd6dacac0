/* The model's blueprint, read from a HF checkpoint's config.json (and
 * generation_config.json, hf_quant_config.json). Everything that depends on
 * the model's size derives from this struct: the same code runs a 2-layer test
 * model and the 12B. Accepts `gemma4_unified` (nested text_config) and
 * `gemma4_unified_assistant` (the MTP drafter). */
#ifndef G4_MODEL_CONFIG_H
#define G4_MODEL_CONFIG_H

#include <stdbool.h>

#include "util/err.h"

#define G4_MAX_LAYERS 256
#define G4_MAX_EOS 8

typedef enum { G4_ATTN_SLIDING, G4_ATTN_FULL } g4_attn_kind;
typedef enum { G4_ROPE_DEFAULT, G4_ROPE_PROPORTIONAL } g4_rope_kind;

typedef struct {
    g4_attn_kind kind;
    int head_dim;          /* 256 sliding, 512 full (12B) */
    int n_kv_heads;        /* 8 sliding, 1 full (12B) */
    bool k_eq_v;           /* no v_proj: V is the raw k_proj output (full layers) */
    g4_rope_kind rope;
    float rope_theta;      /* 1e4 sliding, 1e6 full */
    int rope_pairs;        /* rotated frequency slots i < rope_pairs pair dim i with i+head_dim/2 */
    int window;            /* sliding: key s visible from t iff t-window < s <= t; 0 = causal only */
} g4_layer_geom;

typedef enum {
    G4_QUANT_NONE,         /* plain BF16 (or F32) weights */
    G4_QUANT_MODELOPT_FP8_PB_WO, /* `weight` F8_E4M3 + `weight_scale` F32 [R,1,C,1] or [R,C] */
    G4_QUANT_HF_FP8_BLOCK, /* `weight` F8_E4M3 + `weight_scale_inv` F32 [R,C] */
} g4_quant_kind;

typedef struct {
    char model_type[64];   /* "gemma4_unified" or "gemma4_unified_assistant" */
    char text_model_type[64];
    /* text stack */
    int vocab_size;        /* 262144 */
    int hidden;            /* 3840 */
    int ffn;               /* 15360 (GeGLU, gelu-tanh) */
    int n_layers;          /* 48 */
    int n_heads;           /* 16 query heads on every layer */
    float rms_eps;         /* 1e-6 */
    float final_softcap;   /* 30; 0 = none (assistant) */
    int sliding_window;    /* 1024 */
    int max_position;
    bool tie_embeddings;
    g4_layer_geom layer[G4_MAX_LAYERS];
    /* tokens */
    int bos_id, pad_id;
    int eos_ids[G4_MAX_EOS];      /* stop ids: generation_config.json wins over config.json */
    int n_eos;
    int image_token_id, audio_token_id, video_token_id;
    int boi_token_id, eoi_token_id, boa_token_id, eoa_token_id;
    /* quantization */
    g4_quant_kind quant;
    int quant_block[2];    /* [128, 128] */
    bool kv_cache_fp8;     /* checkpoint asks for an FP8 KV cache */
    char quant_producer[128];
    /* multimodal embedders (encoder-free; 0 when the config has none) */
    int vision_patch_dim;  /* 6912 = model_patch_size^2 * 3 */
    int vision_posemb;     /* 1120 position-embedding rows */
    int audio_dim;         /* 640 samples per audio soft token */
    /* assistant (MTP drafter) */
    int backbone_hidden;   /* 3840; 0 for the target model */
    int n_kv_shared_layers;
} g4_config;

/* Reads DIR/config.json plus DIR/generation_config.json and
 * DIR/hf_quant_config.json when present. Errors name the file and field. */
int g4_config_load(const char *dir, g4_config *cfg, g4_err *err);

/* Parses config.json text (`where` names it in errors). Stop ids from
 * config.json only. */
int g4_config_parse(const char *json_text, const char *where, g4_config *cfg, g4_err *err);

static inline int g4_layer_q_dim(const g4_config *c, int l) { return c->n_heads * c->layer[l].head_dim; }
static inline int g4_layer_kv_dim(const g4_config *c, int l) {
    return c->layer[l].n_kv_heads * c->layer[l].head_dim;
}
static inline bool g4_config_is_assistant(const g4_config *c) { return c->backbone_hidden > 0; }

#endif
