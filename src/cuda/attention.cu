/* Attention over the KV cache, decode and prefill alike: one block per
 * (query token, query head). Scale 1.0; key s is visible from the query at
 * position t iff s <= t and, on sliding layers, s > t - window (model.md §2.5).
 * Scores live in shared memory; a warp computes one key's dot product.
 * CPU reference: attention() in src/cpu/forward.c.
 * Not yet split across the context: long contexts use few blocks per step. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"

#define ATTN_THREADS 256

template <int DT>
__device__ __forceinline__ float kv_at(const void *cache, size_t i, float scale) {
    if (DT == G4K_KV_F32) return static_cast<const float *>(cache)[i];
    if (DT == G4K_KV_BF16) return g4k_bf16_to_f32(static_cast<const uint16_t *>(cache)[i]);
    return g4k_fp8_to_f32(static_cast<const uint8_t *>(cache)[i]) * scale;
}

template <int DT>
__global__ void __launch_bounds__(ATTN_THREADS) attention_kernel(g4k_attn a, const float *q, float *o, const int *pos0) {
    extern __shared__ float sm[];
    __shared__ float red[32];
    const int m = blockIdx.x, h = blockIdx.y, hd = a.head_dim, pos = *pos0 + m;
    const int kvh = h / (a.n_heads / a.n_kv_heads), kv_dim = a.n_kv_heads * hd, q_dim = a.n_heads * hd;
    const int first = a.window && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0, n = pos - first + 1;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, n_warps = blockDim.x / 32;
    float *qs = sm, *scores = sm + hd;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[(size_t)m * q_dim + h * hd + d];
    __syncthreads();

    float local_max = -INFINITY;
    for (int j = warp; j < n; j += n_warps) {
        const size_t row = (size_t)(first + j) * kv_dim + kvh * hd;
        float dot = 0.0f;
        for (int d = lane; d < hd; d += 32) dot += qs[d] * kv_at<DT>(a.k_cache, row + d, a.k_scale);
        dot = g4k_warp_sum(dot);
        if (lane == 0) scores[j] = dot;
        local_max = fmaxf(local_max, dot);
    }
    /* block max: lanes of each warp agree; reduce across warps */
    __syncthreads();
    if (lane == 0) red[warp] = local_max;
    __syncthreads();
    float mx = -INFINITY;
    for (int w = 0; w < n_warps; w++) mx = fmaxf(mx, red[w]);
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < n; j += blockDim.x) sum += scores[j] = expf(scores[j] - mx);
    sum = g4k_block_sum(sum, red);
    const float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float acc = 0.0f;
        for (int j = 0; j < n; j++)
            acc += scores[j] * kv_at<DT>(a.v_cache, (size_t)(first + j) * kv_dim + kvh * hd + d, a.v_scale);
        o[(size_t)m * q_dim + h * hd + d] = acc * inv;
    }
}

/* Raises a kernel's dynamic shared-memory limit once (not during graph capture:
 * the first call comes from an ordinary forward). */
template <int DT>
static void reserve_smem(size_t smem) {
    static size_t reserved = 48 * 1024;
    if (smem > reserved) {
        cudaFuncSetAttribute(attention_kernel<DT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        reserved = smem;
    }
}

extern "C" void g4k_attention(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, int max_context,
                              g4_stream s) {
    const size_t smem = sizeof(float) * (a->head_dim + max_context);
    const dim3 grid(M, a->n_heads);
    switch (a->kv_dtype) {
    case G4K_KV_F32:
        reserve_smem<G4K_KV_F32>(smem);
        attention_kernel<G4K_KV_F32><<<grid, ATTN_THREADS, smem, s>>>(*a, q, o, pos0);
        break;
    case G4K_KV_BF16:
        reserve_smem<G4K_KV_BF16>(smem);
        attention_kernel<G4K_KV_BF16><<<grid, ATTN_THREADS, smem, s>>>(*a, q, o, pos0);
        break;
    default:
        reserve_smem<G4K_KV_FP8>(smem);
        attention_kernel<G4K_KV_FP8><<<grid, ATTN_THREADS, smem, s>>>(*a, q, o, pos0);
    }
}
