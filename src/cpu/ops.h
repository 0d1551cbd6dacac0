/* The CPU reference kernels: plain loops, fp32 math, OpenMP across rows.
 * Each is the readable definition its CUDA counterpart is tested against. */
#ifndef G4_CPU_OPS_H
#define G4_CPU_OPS_H

#include "model/weights.h"

/* y[t][r] = sum_c x[t][c] * W[r][c] for t < n_tok: a [n_tok, W.cols] input
 * against W [rows, cols] (BF16, or FP8 dequantized block by block). */
void cpu_matmul(const g4_matrix *w, const float *x, int n_tok, float *y);

/* out = x * (mean(x^2) + eps)^-1/2 * w   (w NULL: no weight, the v_norm). */
void cpu_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotate-half RoPE on one head of head_dim values at position pos: slot i
 * (i < pairs) pairs dim i with i + head_dim/2 at angle pos * theta^(-2i/head_dim);
 * slots >= pairs are left alone (proportional RoPE, model.md §2.3). */
void cpu_rope(float *x, int head_dim, int pairs, float theta, int pos);

float cpu_gelu_tanh(float x);

#endif
