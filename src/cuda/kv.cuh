/* Device helpers shared by the attention kernels: reading and writing KV-cache
 * elements of each cache dtype, and the row a position lives at. */
#ifndef G4_CUDA_KV_CUH
#define G4_CUDA_KV_CUH

#include "cuda/common.cuh"
#include "cuda/kernels.h"

/* The cache row of position p: p itself, or p % ring for a sliding-window ring. */
__device__ __forceinline__ int kv_row(const g4k_attn &a, int p) { return a.ring ? p % a.ring : p; }

template <int DT>
__device__ __forceinline__ float kv_at(const void *cache, size_t i, float scale) {
    if (DT == G4K_KV_F32) return static_cast<const float *>(cache)[i];
    if (DT == G4K_KV_BF16) return g4k_bf16_to_f32(static_cast<const uint16_t *>(cache)[i]);
    return g4k_fp8_to_f32(static_cast<const uint8_t *>(cache)[i]) * scale;
}

/* Store x at cache element i and return what a later read of it gives back
 * (the value rounded through the cache dtype), as the CPU's store + load. */
__device__ __forceinline__ float kv_store(void *cache, g4k_kv_dtype dt, size_t i, float x, float scale, bool write) {
    if (dt == G4K_KV_F32) {
        if (write) static_cast<float *>(cache)[i] = x;
        return x;
    }
    if (dt == G4K_KV_BF16) {
        const uint16_t b = g4k_f32_to_bf16(x);
        if (write) static_cast<uint16_t *>(cache)[i] = b;
        return g4k_bf16_to_f32(b);
    }
    const uint8_t c = g4k_f32_to_fp8(x / scale);
    if (write) static_cast<uint8_t *>(cache)[i] = c;
    return g4k_fp8_to_f32(c) * scale;
}

/* BYTES of one lane's slice of a K or V row, loaded with 4/8/16-byte vector loads. */
template <int BYTES>
struct raw_slice {
    uint32_t w[BYTES / 4];
};

template <int BYTES>
__device__ __forceinline__ raw_slice<BYTES> load_slice(const void *p) {
    raw_slice<BYTES> r;
    if (BYTES % 16 == 0) {
#pragma unroll
        for (int i = 0; i < BYTES / 16; i++) {
            const uint4 v = __ldg(static_cast<const uint4 *>(p) + i);
            r.w[4 * i] = v.x, r.w[4 * i + 1] = v.y, r.w[4 * i + 2] = v.z, r.w[4 * i + 3] = v.w;
        }
    } else if (BYTES % 8 == 0) {
#pragma unroll
        for (int i = 0; i < BYTES / 8; i++) {
            const uint2 v = __ldg(static_cast<const uint2 *>(p) + i);
            r.w[2 * i] = v.x, r.w[2 * i + 1] = v.y;
        }
    } else {
#pragma unroll
        for (int i = 0; i < BYTES / 4; i++) r.w[i] = __ldg(static_cast<const uint32_t *>(p) + i);
    }
    return r;
}

/* DPL cache elements (raw) -> floats, FP8 times its scale. */
template <int DT, int DPL, int BYTES>
__device__ __forceinline__ void decode_slice(const raw_slice<BYTES> &r, float scale, float *out) {
    if (DT == G4K_KV_FP8) {
#pragma unroll
        for (int i = 0; i < DPL / 4; i++) g4k_fp8x4_to_f32(r.w[i], out + 4 * i);
#pragma unroll
        for (int i = 0; i < DPL; i++) out[i] *= scale;
    } else if (DT == G4K_KV_BF16) {
#pragma unroll
        for (int i = 0; i < DPL / 2; i++) {
            out[2 * i] = __uint_as_float(r.w[i] << 16);
            out[2 * i + 1] = __uint_as_float(r.w[i] & 0xffff0000u);
        }
    } else {
#pragma unroll
        for (int i = 0; i < DPL; i++) out[i] = __uint_as_float(r.w[i]);
    }
}

/* 1 / sqrt(mean(x^2) + eps) of one row held by a warp (lane i has x[i], x[i+32], ...). */
__device__ __forceinline__ float warp_rms_inv(float ss, int n, float eps) {
    return 1.0f / sqrtf(g4k_warp_sum(ss) / n + eps);
}

/* RoPE angle of frequency slot i at position pos, as cpu_rope computes it. */
__device__ __forceinline__ void rope_sincos(int i, int hd, float theta, int pos, float *sn, float *cs) {
    const float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)hd);
    sincosf((float)pos * inv_freq, sn, cs);
}

#endif
