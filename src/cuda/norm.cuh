/* The residual update of one row, shared by the residual-norm kernel
 * (norm.cu) and the decode GEMV that finishes with it (gemv.cu). */
#ifndef G4_CUDA_NORM_CUH
#define G4_CUDA_NORM_CUH

#include "cuda/common.cuh"

#define G4K_RES_VEC 4 /* float4s per thread: rows up to 16 * blockDim.x floats */

/* h += rms(y; w_post) (y: the sum of `parts` split-K partial rows, part_stride
 * floats apart); h *= scalar; out = rms(h; w_next) (w_next NULL: no out).
 * n % 4 == 0 and n <= 16 * blockDim.x. The row is held in registers between the
 * two reductions: one load of y and h, one store of h and out. y is read
 * through L2 (__ldcg): other blocks of the same grid may have written it. */
__device__ __forceinline__ void g4k_residual_norm_row(float *h, const float *y, size_t part_stride, int parts,
                                                      const float *w_post, float scalar, float *out,
                                                      const float *w_next, int n, float eps, float *red32) {
    const int n4 = n / 4;
    float4 *hr = reinterpret_cast<float4 *>(h);
    const float4 *yr = reinterpret_cast<const float4 *>(y);
    const float4 *wp = reinterpret_cast<const float4 *>(w_post);
    float4 yv[G4K_RES_VEC], hv[G4K_RES_VEC];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < G4K_RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            yv[k] = __ldcg(yr + i), hv[k] = hr[i];
            for (int p = 1; p < parts; p++) { /* split-K parts */
                const float4 t = __ldcg(yr + p * part_stride / 4 + i);
                yv[k].x += t.x, yv[k].y += t.y, yv[k].z += t.z, yv[k].w += t.w;
            }
            ss += yv[k].x * yv[k].x + yv[k].y * yv[k].y + yv[k].z * yv[k].z + yv[k].w * yv[k].w;
        }
    }
    const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red32) / n + eps);
    float ss2 = 0.0f;
#pragma unroll
    for (int k = 0; k < G4K_RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            const float4 w = wp[i];
            hv[k].x = (hv[k].x + yv[k].x * inv * w.x) * scalar;
            hv[k].y = (hv[k].y + yv[k].y * inv * w.y) * scalar;
            hv[k].z = (hv[k].z + yv[k].z * inv * w.z) * scalar;
            hv[k].w = (hv[k].w + yv[k].w * inv * w.w) * scalar;
            hr[i] = hv[k];
            ss2 += hv[k].x * hv[k].x + hv[k].y * hv[k].y + hv[k].z * hv[k].z + hv[k].w * hv[k].w;
        }
    }
    if (!w_next) return;
    const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red32) / n + eps);
    float4 *orow = reinterpret_cast<float4 *>(out);
    const float4 *wn = reinterpret_cast<const float4 *>(w_next);
#pragma unroll
    for (int k = 0; k < G4K_RES_VEC; k++) {
        const int i = threadIdx.x + k * blockDim.x;
        if (i < n4) {
            const float4 w = wn[i];
            orow[i] = make_float4(hv[k].x * inv2 * w.x, hv[k].y * inv2 * w.y, hv[k].z * inv2 * w.z, hv[k].w * inv2 * w.w);
        }
    }
}

#endif
