/* The residual step of one token row as block-wide device code, shared by
 * the standalone kernel (norm.cu) and the decode GEMVs that run it in their
 * prologue (gemv_tc.cu): h_out = (h_in + rms(y; w_post)) * scalar, then
 * x = rms(h_out; w_next). CPU reference: the residual loop of
 * src/cpu/forward.c. */
#ifndef G4_CUDA_RESIDUAL_CUH
#define G4_CUDA_RESIDUAL_CUH

#include "cuda/common.cuh"
#include "cuda/kernels.h"

/* One row (n floats, n % 4 == 0, n / 4 <= VEC * blockDim.x), every thread of
 * the block calling: thread j holds the row's float4s j + k * blockDim.x
 * (k < VEC; resid_slot says which exist). y holds PARTS split-K partial sums,
 * part p at y + p * part_stride floats. h_out (NULL: not written) may equal
 * h_in. On return x[k] = rms(h_out; w_next) at the thread's slots (w_next
 * NULL: h_out). red: 32 shared floats.
 * Latency is what counts here (it is on the critical path of every layer):
 * every load of y, h and w_post goes out in one round (indices clamped into
 * the row instead of branched around: a branch per slot made it four rounds),
 * and w_next's loads go out before the second reduction, which hides them.
 * The weights stay out of shared memory on purpose: the GEMVs that run this
 * in their prologue (gemv_tc.cu) must keep the plain GEMV's shared-memory
 * size, or the PDL wait returns ~2-3 us late (perf log, session 9). */
__device__ __forceinline__ bool resid_slot(int k, int n4) { return (int)(threadIdx.x + k * blockDim.x) < n4; }

template <int VEC, int PARTS>
__device__ __forceinline__ void resid_row(const float *y, size_t part_stride, const float *h_in, float *h_out,
                                          const float *w_post, const float *w_next, float scalar, int n, float eps,
                                          float *red, float4 (&x)[VEC]) {
    const int n4 = n / 4;
    int idx[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) idx[k] = min((int)(threadIdx.x + k * blockDim.x), n4 - 1);
    const float4 *y4 = reinterpret_cast<const float4 *>(y), *h4 = reinterpret_cast<const float4 *>(h_in);
    const float4 *wp4 = reinterpret_cast<const float4 *>(w_post), *wn4 = reinterpret_cast<const float4 *>(w_next);
    const size_t part4 = part_stride / 4;
    float4 yv[VEC][PARTS], hv[VEC], wv[VEC];
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        hv[k] = h4[idx[k]];
        wv[k] = wp4[idx[k]];
#pragma unroll
        for (int p = 0; p < PARTS; p++) yv[k][p] = y4[p * part4 + idx[k]];
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < VEC; k++) {
#pragma unroll
        for (int p = 1; p < PARTS; p++)
            yv[k][0].x += yv[k][p].x, yv[k][0].y += yv[k][p].y, yv[k][0].z += yv[k][p].z, yv[k][0].w += yv[k][p].w;
        const float4 v = yv[k][0];
        if (resid_slot(k, n4)) ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red) / n + eps);
    float ss2 = 0.0f;
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        const float4 w = wv[k], v = yv[k][0];
        hv[k].x = (hv[k].x + v.x * inv * w.x) * scalar;
        hv[k].y = (hv[k].y + v.y * inv * w.y) * scalar;
        hv[k].z = (hv[k].z + v.z * inv * w.z) * scalar;
        hv[k].w = (hv[k].w + v.w * inv * w.w) * scalar;
        if (resid_slot(k, n4)) {
            if (h_out) reinterpret_cast<float4 *>(h_out)[idx[k]] = hv[k];
            ss2 += hv[k].x * hv[k].x + hv[k].y * hv[k].y + hv[k].z * hv[k].z + hv[k].w * hv[k].w;
        }
    }
    if (!w_next) {
#pragma unroll
        for (int k = 0; k < VEC; k++) x[k] = hv[k];
        return;
    }
#pragma unroll
    for (int k = 0; k < VEC; k++) wv[k] = wn4[idx[k]];
    const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red) / n + eps);
#pragma unroll
    for (int k = 0; k < VEC; k++) {
        const float4 w = wv[k];
        x[k] = make_float4(hv[k].x * inv2 * w.x, hv[k].y * inv2 * w.y, hv[k].z * inv2 * w.z, hv[k].w * inv2 * w.w);
    }
}

#endif
