/* Internal to the decode GEMV (gemv.cu): the tensor-core path (gemv_tc.cu). */
#ifndef G4_CUDA_GEMV_TC_H
#define G4_CUDA_GEMV_TC_H

#include <cuda_runtime.h>

#include "cuda/kernels.h"

/* The epilogue of a GEMV launch (both kernels, gemv.cu and gemv_tc.cu). */
typedef enum { G4K_TC_PLAIN = 0, G4K_TC_GEGLU = 1, G4K_TC_SOFTCAP = 2 } g4k_tc_mode;

/* One matrix of a GEMV launch, as both kernels take it: codes (or BF16),
 * block scales, rows, and where its outputs go. */
struct gemv_mat {
    const uint8_t *w;
    const float *scales;
    int rows;
    float *y;
};

/* y_i[m][r] = sum_c x[m][c] W_i[r][c] (PLAIN, up to 3 matrices of the same
 * cols and layout), gelu(x gate^T) * (x up^T) (GEGLU: w[0] gate, w[1] up,
 * y[0] out), or cap * tanh((x W^T) / cap) (SOFTCAP, cap > 0). Whole sums: no
 * split-K parts. Tiled matrices (kernels.h) take any M, in launches of up to
 * 4 (FP8) or 2 (BF16) tokens, as many as x's parts fit in shared memory.
 * Returns 0 when it ran, 1 when the shape is not for this path (the caller
 * uses the CUDA-core kernels, which read row-major only): for row-major
 * matrices M above what one launch takes, G4_GEMV=simt; for any matrix rows
 * not a multiple of 16 or cols not a multiple of 64 (FP8) or 32 (BF16). -1
 * when a later launch of several failed after the first ran. */
int g4k_gemv_tc(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4k_tc_mode mode, float cap,
                cudaStream_t s);

#endif
