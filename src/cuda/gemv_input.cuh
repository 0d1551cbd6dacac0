/* The input vector of a decode GEMV, made in the block's shared memory:
 * copied from x, or computed from the pending residual update (kernels.h,
 * g4k_gemv_input), which removes a norm kernel between two projections.
 * Every block of the GEMV recomputes the update (a few KB from L2); block 0
 * stores the new h. Same operation order as residual_norm_vec (norm.cu). */
#ifndef G4_CUDA_GEMV_INPUT_CUH
#define G4_CUDA_GEMV_INPUT_CUH

#include "cuda/common.cuh"
#include "cuda/kernels.h"

/* x is read by 16-float chunks as four 16-byte pieces; piece k of chunk c
 * lives at slot k ^ ((c >> 1) & 3), so that the 8 lanes of a quarter-warp
 * reading piece k of chunks c..c+7 (64 bytes apart) hit 8 different bank
 * groups instead of colliding 4 ways. */
__device__ __forceinline__ int g4k_x_slot(int c, int k) { return c * 4 + (k ^ ((c >> 1) & 3)); }

/* Rows [m][0, n) of the input into xs (row stride ld floats), in plain order. */
template <int M>
__device__ void g4k_gemv_input_linear(const g4k_gemv_input &in, int n, float *xs, int ld, float *red32) {
    if (!in.h_in) {
        for (int m = 0; m < M; m++)
            for (int c = threadIdx.x; c < n; c += blockDim.x) xs[(size_t)m * ld + c] = in.x[(size_t)m * n + c];
        return;
    }
    const size_t part_stride = (size_t)M * n;
    for (int m = 0; m < M; m++) {
        float *x = xs + (size_t)m * ld;
        const float *y = in.y + (size_t)m * n, *h = in.h_in + (size_t)m * n;
        float ss = 0.0f;
        for (int c = threadIdx.x; c < n; c += blockDim.x) {
            float v = y[c];
            for (int p = 1; p < in.parts; p++) v += y[p * part_stride + c];
            x[c] = v, ss += v * v;
        }
        const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red32) / n + in.eps);
        float ss2 = 0.0f;
        for (int c = threadIdx.x; c < n; c += blockDim.x) {
            const float hv = (h[c] + x[c] * inv * in.w_post[c]) * in.scalar;
            x[c] = hv, ss2 += hv * hv;
            if (blockIdx.x == 0 && blockIdx.y == 0) in.h_out[(size_t)m * n + c] = hv;
        }
        const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red32) / n + in.eps);
        for (int c = threadIdx.x; c < n; c += blockDim.x) x[c] = x[c] * inv2 * in.w_next[c];
    }
}

/* The same, then permuted into the swizzled order (g4k_x_slot); n % 16 == 0,
 * ld % 16 == 0. Ends with the block synchronized. */
template <int M>
__device__ void g4k_gemv_input_swizzled(const g4k_gemv_input &in, int n, float *xs, int ld, float *red32) {
    g4k_gemv_input_linear<M>(in, n, xs, ld, red32);
    __syncthreads();
    float4 *x4 = reinterpret_cast<float4 *>(xs);
    const int per_row = n / 16;
    for (int i = threadIdx.x; i < M * per_row; i += blockDim.x) { /* whole chunks per thread: in place */
        const int m = i / per_row, c = i % per_row;
        float4 *chunk = x4 + (size_t)m * ld / 4 + (size_t)c * 4, *base = x4 + (size_t)m * ld / 4;
        float4 v[4];
        for (int k = 0; k < 4; k++) v[k] = chunk[k];
        for (int k = 0; k < 4; k++) base[g4k_x_slot(c, k)] = v[k];
    }
    __syncthreads();
}

#endif
