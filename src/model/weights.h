/* Weights in memory, by role, for every backend: loaded from a checkpoint
 * directory (ModelOpt fp8_pb_wo, HF block FP8, or plain BF16) with the real
 * tensor names. FP8 weights stay FP8: a matrix is codes + one fp32 scale per
 * 128x128 block, pointing into the mapped file. */
#ifndef G4_MODEL_WEIGHTS_H
#define G4_MODEL_WEIGHTS_H

#include <stdbool.h>
#include <stdint.h>

#include "model/config.h"
#include "model/quant.h"
#include "model/safetensors.h"

typedef enum { G4_MAT_BF16, G4_MAT_FP8_BLOCK } g4_mat_format;

typedef struct {
    g4_mat_format format;
    int rows, cols;          /* PyTorch [out, in]: y = x . W^T */
    const void *data;        /* row-major BF16 values or E4M3 codes */
    const float *scales;     /* FP8: [g4_qblocks(rows)][g4_qblocks(cols)]; the scale multiplies */
    const char *name;        /* tensor name, for messages */
} g4_matrix;

typedef struct {
    g4_matrix q, k, v, o;    /* v.data == NULL on K==V layers: V is the raw k_proj output */
    g4_matrix gate, up, down;
    float *q_norm, *k_norm;  /* [head_dim] */
    float *input_norm, *post_attn_norm, *pre_ffn_norm, *post_ffn_norm; /* [hidden] */
    float layer_scalar;
    float k_scale, v_scale;  /* FP8 KV cache: stored = fp8(x / scale); 1.0 when the checkpoint has none */
} g4_layer_weights;

typedef struct {
    char name[128];
    uint64_t count;
} g4_nan_repair;

typedef struct {
    g4_config cfg;
    st_model *ckpt;
    g4_matrix embed;         /* [vocab, hidden] BF16, also the tied LM head */
    float *final_norm;       /* [hidden] */
    g4_layer_weights *layers;
    g4_nan_repair *repairs;  /* FP8 tensors whose NaN bytes were set to +-448 */
    int n_repairs;
    void **owned;            /* buffers this struct allocated */
    int n_owned;
} g4_weights;

typedef struct {
    bool quantize_bf16;      /* quantize BF16 linear weights to fp8_pb_wo while loading */
    g4_calib calib;          /* for quantize_bf16 */
} g4_load_opts;

/* Loads DIR (config.json + safetensors). Errors name the file and tensor:
 * missing tensor, shape that disagrees with config.json, unsupported dtype. */
g4_weights *g4_weights_load(const char *dir, const g4_load_opts *opts, g4_err *err);
void g4_weights_free(g4_weights *w);

/* Bytes a matrix occupies (codes + scales, or BF16 values). */
uint64_t g4_matrix_bytes(const g4_matrix *m);

#endif
