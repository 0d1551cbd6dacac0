/* Attention over the KV cache, decode and prefill alike: one block per
 * (query token, query head). Scale 1.0; key s is visible from the query at
 * position t iff s <= t and, on sliding layers, s > t - window (model.md §2.5).
 * CPU reference: attention() in src/cpu/forward.c.
 *
 * Fast path (head_dim a multiple of 32, as in the 12B): each warp takes every
 * n_warps-th key and keeps an online softmax (running max, sum and output) in
 * registers, each lane owning head_dim/32 contiguous dimensions; K and V rows
 * of KEYS_IN_FLIGHT keys are loaded before they are used, so the warp waits on
 * memory once per group, not once per key. The warps' partial results are
 * merged through shared memory at the end.
 * Generic path (any head_dim, small test models): scores in shared memory.
 * Not yet split across blocks: a long context uses few blocks per step. */
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
    g4k_wait_inputs();
    g4k_allow_next();
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


/* ------------------------------------------------------------ fast path */

#define FAST_WARPS 16
#define KEYS_IN_FLIGHT 4

/* BYTES of one lane's slice of a K or V row, loaded with 8/16-byte vector loads. */
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
    } else {
#pragma unroll
        for (int i = 0; i < BYTES / 8; i++) {
            const uint2 v = __ldg(static_cast<const uint2 *>(p) + i);
            r.w[2 * i] = v.x, r.w[2 * i + 1] = v.y;
        }
    }
    return r;
}

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

template <int DT, int DPL>
__global__ void __launch_bounds__(FAST_WARPS * 32) attention_fast(g4k_attn a, const float *q, float *o, const int *pos0) {
    constexpr int ELEM = DT == G4K_KV_F32 ? 4 : DT == G4K_KV_BF16 ? 2 : 1, BYTES = DPL * ELEM;
    __shared__ float part_m[FAST_WARPS], part_l[FAST_WARPS];
    extern __shared__ float part_o[]; /* [FAST_WARPS][head_dim] */
    g4k_wait_inputs();
    g4k_allow_next();
    const int m = blockIdx.x, h = blockIdx.y, hd = a.head_dim, pos = *pos0 + m;
    const int kvh = h / (a.n_heads / a.n_kv_heads), kv_dim = a.n_kv_heads * hd, q_dim = a.n_heads * hd;
    const int first = a.window && pos - a.window + 1 > 0 ? pos - a.window + 1 : 0, n = pos - first + 1;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    float qr[DPL], acc[DPL];
    const float *qrow = q + (size_t)m * q_dim + h * hd + lane * DPL;
#pragma unroll
    for (int i = 0; i < DPL; i++) qr[i] = qrow[i], acc[i] = 0.0f;
    float run_max = -INFINITY, run_sum = 0.0f;
    const char *kbase = static_cast<const char *>(a.k_cache) + ((size_t)first * kv_dim + kvh * hd + lane * DPL) * ELEM;
    const char *vbase = static_cast<const char *>(a.v_cache) + ((size_t)first * kv_dim + kvh * hd + lane * DPL) * ELEM;
    const size_t row_bytes = (size_t)kv_dim * ELEM;
    for (int j0 = warp; j0 < n; j0 += FAST_WARPS * KEYS_IN_FLIGHT) {
        raw_slice<BYTES> kr[KEYS_IN_FLIGHT], vr[KEYS_IN_FLIGHT];
#pragma unroll
        for (int u = 0; u < KEYS_IN_FLIGHT; u++) { /* issue every load of the group first */
            const int j = j0 + u * FAST_WARPS;
            if (j < n) kr[u] = load_slice<BYTES>(kbase + j * row_bytes), vr[u] = load_slice<BYTES>(vbase + j * row_bytes);
        }
#pragma unroll
        for (int u = 0; u < KEYS_IN_FLIGHT; u++) {
            if (j0 + u * FAST_WARPS >= n) break;
            float kf[DPL], vf[DPL];
            decode_slice<DT, DPL, BYTES>(kr[u], a.k_scale, kf);
            float dot = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++) dot += qr[i] * kf[i];
            dot = g4k_warp_sum(dot);
            const float new_max = fmaxf(run_max, dot);
            const float rescale = expf(run_max - new_max), p = expf(dot - new_max);
            decode_slice<DT, DPL, BYTES>(vr[u], a.v_scale, vf);
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[i] = acc[i] * rescale + p * vf[i];
            run_sum = run_sum * rescale + p;
            run_max = new_max;
        }
    }
    /* merge the warps' partial softmaxes */
    if (lane == 0) part_m[warp] = run_max, part_l[warp] = run_sum;
#pragma unroll
    for (int i = 0; i < DPL; i++) part_o[warp * hd + lane * DPL + i] = acc[i];
    __syncthreads();
    float gmax = -INFINITY;
    for (int w = 0; w < FAST_WARPS; w++) gmax = fmaxf(gmax, part_m[w]);
    float total = 0.0f;
    for (int w = 0; w < FAST_WARPS; w++)
        if (part_m[w] > -INFINITY) total += part_l[w] * expf(part_m[w] - gmax);
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float v = 0.0f;
        for (int w = 0; w < FAST_WARPS; w++)
            if (part_m[w] > -INFINITY) v += part_o[w * hd + d] * expf(part_m[w] - gmax);
        o[(size_t)m * q_dim + h * hd + d] = v / total;
    }
}

template <int DT, int DPL>
static void launch_fast(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    const size_t smem = sizeof(float) * FAST_WARPS * a->head_dim; /* 32 KB at head_dim 512 */
    g4k_launch(attention_fast<DT, DPL>, dim3(M, a->n_heads), FAST_WARPS * 32, smem, s, *a, q, o, pos0);
}

template <int DT>
static bool try_fast(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    switch (a->head_dim) {
    case 128: launch_fast<DT, 4>(a, q, o, pos0, M, s); return true;
    case 256: launch_fast<DT, 8>(a, q, o, pos0, M, s); return true;
    case 512: launch_fast<DT, 16>(a, q, o, pos0, M, s); return true;
    default: return false; /* DT == F32 with DPL 4 is 16 bytes: fine; other widths take the generic path */
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
    const bool fast = a->kv_dtype == G4K_KV_F32    ? try_fast<G4K_KV_F32>(a, q, o, pos0, M, s)
                      : a->kv_dtype == G4K_KV_BF16 ? try_fast<G4K_KV_BF16>(a, q, o, pos0, M, s)
                                                   : try_fast<G4K_KV_FP8>(a, q, o, pos0, M, s);
    if (fast) return;
    switch (a->kv_dtype) {
    case G4K_KV_F32:
        reserve_smem<G4K_KV_F32>(smem);
        g4k_launch(attention_kernel<G4K_KV_F32>, grid, ATTN_THREADS, smem, s, *a, q, o, pos0);
        break;
    case G4K_KV_BF16:
        reserve_smem<G4K_KV_BF16>(smem);
        g4k_launch(attention_kernel<G4K_KV_BF16>, grid, ATTN_THREADS, smem, s, *a, q, o, pos0);
        break;
    default:
        reserve_smem<G4K_KV_FP8>(smem);
        g4k_launch(attention_kernel<G4K_KV_FP8>, grid, ATTN_THREADS, smem, s, *a, q, o, pos0);
    }
}
