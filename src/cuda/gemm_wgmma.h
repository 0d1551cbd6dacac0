/* Internal to the prefill GEMM (gemm.cu): the Hopper wgmma path (gemm_wgmma.cu). */
#ifndef G4_CUDA_GEMM_WGMMA_H
#define G4_CUDA_GEMM_WGMMA_H

#include <cuda_runtime.h>

#include "cuda/kernels.h"

/* up == NULL: y = x W^T, else y = gelu(x W^T) * (x up^T). Returns 0 when it ran,
 * 1 when the shape is not for this path (BF16, K % 128 != 0, rows not 16-byte
 * aligned) and the caller must use the mma.sync kernel; -1 on a CUDA error. */
int g4k_gemm_wgmma(const g4_dmatrix *w, const g4_dmatrix *up, float *y, const float *x, int M, cudaStream_t s);

/* Frees its scratch. */
void g4k_gemm_wgmma_release(void);

#endif
