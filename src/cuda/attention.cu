/* Attention over the KV cache for q already post-processed and the new K/V
 * rows already in the cache (g4k_qkv_post). Scale 1.0; key s is visible from
 * the query at position t iff s <= t and, on sliding layers, s > t - window
 * (model.md §2.5). Position s lives at cache row s, or s % ring for a
 * sliding-window ring. CPU reference: attention() in src/cpu/forward.c.
 * Decode with the post-processing fused in and split over the keys:
 * attention_decode.cu.
 *
 * Prefill (M > 8, head_dim a multiple of 64): the tiled kernel below.
 * Small M, one block per (query token, query head). Fast path (head_dim 128,
 * 256 or 512): each warp takes every n_warps-th key and keeps an online
 * softmax (running max, sum and output) in registers, each lane owning
 * head_dim/32 contiguous dimensions; K and V rows of KEYS_IN_FLIGHT keys are
 * loaded before they are used, so the warp waits on memory once per group, not
 * once per key. The warps' partial results are merged through shared memory.
 * Generic path (any head_dim, small test models): scores in shared memory. */
#include <assert.h>

#include "cuda/kv.cuh"

#define ATTN_THREADS 256

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
        const size_t row = (size_t)kv_row(a, first + j) * kv_dim + kvh * hd;
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
            acc += scores[j] * kv_at<DT>(a.v_cache, (size_t)kv_row(a, first + j) * kv_dim + kvh * hd + d, a.v_scale);
        o[(size_t)m * q_dim + h * hd + d] = acc * inv;
    }
}


/* ------------------------------------------------------------ fast path */

#define FAST_WARPS 16
#define KEYS_IN_FLIGHT 4

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
    const char *kbase = static_cast<const char *>(a.k_cache) + (size_t)(kvh * hd + lane * DPL) * ELEM;
    const char *vbase = static_cast<const char *>(a.v_cache) + (size_t)(kvh * hd + lane * DPL) * ELEM;
    const size_t row_bytes = (size_t)kv_dim * ELEM;
    for (int j0 = warp; j0 < n; j0 += FAST_WARPS * KEYS_IN_FLIGHT) {
        raw_slice<BYTES> kr[KEYS_IN_FLIGHT], vr[KEYS_IN_FLIGHT];
#pragma unroll
        for (int u = 0; u < KEYS_IN_FLIGHT; u++) { /* issue every load of the group first */
            const int j = j0 + u * FAST_WARPS;
            if (j < n) {
                const size_t row = (size_t)kv_row(a, first + j) * row_bytes;
                kr[u] = load_slice<BYTES>(kbase + row), vr[u] = load_slice<BYTES>(vbase + row);
            }
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

/* ------------------------------------------------------------ prefill: tiled, flash-style */

/* One block per (tile of BQ = 16 * RA query tokens, q head), 256 threads as a
 * 16 x 16 grid (ty, tx). The block's queries go to shared memory once; the
 * keys they see ([first query - window + 1, last query], tiles wholly outside
 * the window never visited) come in tiles of PF_BK rows of K, then of V,
 * converted to fp32 in shared memory. Thread (ty, tx) owns query rows
 * ty + 16 a (a < RA): scores against keys tx and tx + 16 of the tile, and the
 * output dims c * 64 + tx * 4 + [0, 4) (c < NC = head_dim / 64) of its rows,
 * with the online softmax's max and sum per row in registers (the 16 lanes of
 * a row agree through shuffles). fp32 SIMT throughout (no tensor cores). */
#define PF_BK 32
#define PF_THREADS 256

/* Rows [kt, kt + PF_BK) of a cache into sm[PF_BK][pitch] as fp32; keys past kend are zeros. */
template <int HD>
__device__ __forceinline__ void pf_load_tile(const g4k_attn &a, const void *cache, float scale, int kvh, int kt,
                                             int kend, float *sm, int pitch) {
    const int kv_dim = a.n_kv_heads * HD;
    for (int i = threadIdx.x; i < PF_BK * HD / 4; i += PF_THREADS) {
        const int j = i / (HD / 4), d = (i % (HD / 4)) * 4, p = kt + j;
        float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (p <= kend) {
            const size_t off = (size_t)kv_row(a, p) * kv_dim + kvh * HD + d;
            if (a.kv_dtype == G4K_KV_F32) {
                f = __ldg(reinterpret_cast<const float4 *>(static_cast<const float *>(cache) + off));
            } else if (a.kv_dtype == G4K_KV_BF16) {
                const uint2 w = __ldg(reinterpret_cast<const uint2 *>(static_cast<const uint16_t *>(cache) + off));
                f = make_float4(__uint_as_float(w.x << 16), __uint_as_float(w.x & 0xffff0000u),
                                __uint_as_float(w.y << 16), __uint_as_float(w.y & 0xffff0000u));
            } else {
                float t[4];
                g4k_fp8x4_to_f32(__ldg(reinterpret_cast<const uint32_t *>(static_cast<const uint8_t *>(cache) + off)), t);
                f = make_float4(t[0] * scale, t[1] * scale, t[2] * scale, t[3] * scale);
            }
        }
        *reinterpret_cast<float4 *>(sm + j * pitch + d) = f;
    }
}

template <int NC, int RA>
__global__ void __launch_bounds__(PF_THREADS) attention_prefill(g4k_attn a, const float *q, float *o, const int *pos0p,
                                                                int M) {
    constexpr int HD = NC * 64, BQ = 16 * RA, PITCH = HD + 4, PPITCH = PF_BK + 1;
    extern __shared__ float sm[];
    float *qs = sm, *kvs = qs + BQ * PITCH, *ps = kvs + PF_BK * PITCH;
    g4k_wait_inputs();
    g4k_allow_next();
    const int tile = gridDim.x - 1 - blockIdx.x; /* the longest tiles (last queries) first */
    const int h = blockIdx.y, kvh = h / (a.n_heads / a.n_kv_heads);
    const int q_dim = a.n_heads * HD, t0 = tile * BQ, pos0 = *pos0p;
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    const int n_rows = M - t0 < BQ ? M - t0 : BQ;
    for (int i = threadIdx.x; i < BQ * HD / 4; i += PF_THREADS) {
        const int r = i / (HD / 4), d = (i % (HD / 4)) * 4;
        float4 f = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        if (r < n_rows) f = *reinterpret_cast<const float4 *>(q + (size_t)(t0 + r) * q_dim + h * HD + d);
        *reinterpret_cast<float4 *>(qs + r * PITCH + d) = f;
    }
    const int qfirst = pos0 + t0, kend = pos0 + t0 + n_rows - 1; /* the last query sees up to itself */
    const int kstart = a.window && qfirst - a.window + 1 > 0 ? qfirst - a.window + 1 : 0;
    int qpos[RA];
    float rm[RA], rl[RA], acc[RA][NC][4];
#pragma unroll
    for (int r = 0; r < RA; r++) {
        qpos[r] = ty + 16 * r < n_rows ? pos0 + t0 + ty + 16 * r : -1;
        rm[r] = -INFINITY, rl[r] = 0.0f;
#pragma unroll
        for (int c = 0; c < NC; c++) acc[r][c][0] = acc[r][c][1] = acc[r][c][2] = acc[r][c][3] = 0.0f;
    }
    for (int kt = kstart; kt <= kend; kt += PF_BK) {
        __syncthreads(); /* q stored (first tile); the last tile's V no longer read */
        pf_load_tile<HD>(a, a.k_cache, a.k_scale, kvh, kt, kend, kvs, PITCH);
        __syncthreads();
        float s[RA][2];
#pragma unroll
        for (int r = 0; r < RA; r++) s[r][0] = s[r][1] = 0.0f;
        for (int d = 0; d < HD; d += 4) {
            const float4 k0 = *reinterpret_cast<const float4 *>(kvs + tx * PITCH + d);
            const float4 k1 = *reinterpret_cast<const float4 *>(kvs + (tx + 16) * PITCH + d);
#pragma unroll
            for (int r = 0; r < RA; r++) {
                const float4 qv = *reinterpret_cast<const float4 *>(qs + (ty + 16 * r) * PITCH + d);
                s[r][0] += qv.x * k0.x + qv.y * k0.y + qv.z * k0.z + qv.w * k0.w;
                s[r][1] += qv.x * k1.x + qv.y * k1.y + qv.z * k1.z + qv.w * k1.w;
            }
        }
#pragma unroll
        for (int r = 0; r < RA; r++) {
            float mx = -INFINITY;
#pragma unroll
            for (int b = 0; b < 2; b++) {
                const int p = kt + tx + 16 * b;
                const bool visible = p <= qpos[r] && (!a.window || p > qpos[r] - a.window);
                if (!visible) s[r][b] = -INFINITY;
                mx = fmaxf(mx, s[r][b]);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float nm = fmaxf(rm[r], mx);
            float sc = 1.0f, p0 = 0.0f, p1 = 0.0f;
            if (nm > -INFINITY) { /* else nothing visible yet: the row stays empty */
                sc = expf(rm[r] - nm);
                p0 = expf(s[r][0] - nm), p1 = expf(s[r][1] - nm);
            }
            float sum = p0 + p1;
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
            rl[r] = rl[r] * sc + sum;
            rm[r] = nm;
#pragma unroll
            for (int c = 0; c < NC; c++) acc[r][c][0] *= sc, acc[r][c][1] *= sc, acc[r][c][2] *= sc, acc[r][c][3] *= sc;
            ps[(ty + 16 * r) * PPITCH + tx] = p0;
            ps[(ty + 16 * r) * PPITCH + tx + 16] = p1;
        }
        __syncthreads(); /* K read, P written */
        pf_load_tile<HD>(a, a.v_cache, a.v_scale, kvh, kt, kend, kvs, PITCH);
        __syncthreads();
        for (int j = 0; j < PF_BK; j++) {
            float pr[RA];
#pragma unroll
            for (int r = 0; r < RA; r++) pr[r] = ps[(ty + 16 * r) * PPITCH + j];
#pragma unroll
            for (int c = 0; c < NC; c++) {
                const float4 vv = *reinterpret_cast<const float4 *>(kvs + j * PITCH + c * 64 + tx * 4);
#pragma unroll
                for (int r = 0; r < RA; r++) {
                    acc[r][c][0] += pr[r] * vv.x, acc[r][c][1] += pr[r] * vv.y;
                    acc[r][c][2] += pr[r] * vv.z, acc[r][c][3] += pr[r] * vv.w;
                }
            }
        }
    }
#pragma unroll
    for (int r = 0; r < RA; r++) {
        if (qpos[r] < 0) continue;
        const float inv = 1.0f / rl[r];
        float *orow = o + (size_t)(t0 + ty + 16 * r) * q_dim + h * HD + tx * 4;
#pragma unroll
        for (int c = 0; c < NC; c++)
            *reinterpret_cast<float4 *>(orow + c * 64) =
                make_float4(acc[r][c][0] * inv, acc[r][c][1] * inv, acc[r][c][2] * inv, acc[r][c][3] * inv);
    }
}

static int device_sms() {
    static int n = 0;
    if (!n) {
        int dev = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 132;
    }
    return n;
}

template <int NC, int RA>
static void launch_prefill(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    constexpr int HD = NC * 64, BQ = 16 * RA;
    const size_t smem = sizeof(float) * ((size_t)(BQ + PF_BK) * (HD + 4) + (size_t)BQ * (PF_BK + 1));
    static bool raised = false;
    if (!raised) {
        cudaFuncSetAttribute(attention_prefill<NC, RA>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        raised = true;
    }
    g4k_launch(attention_prefill<NC, RA>, dim3((M + BQ - 1) / BQ, a->n_heads), PF_THREADS, smem, s, *a, q, o, pos0, M);
}

/* Rows per thread: as many as the accumulators allow (RA * head_dim / 16 <= 64
 * registers), fewer while that leaves SMs idle. */
template <int NC>
static void prefill_ra(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    int ra = NC >= 8 ? 2 : 4;
    while (ra > 1 && (long)((M + 16 * ra - 1) / (16 * ra)) * a->n_heads < device_sms()) ra /= 2;
    if (ra == 4) launch_prefill<NC, (NC >= 8 ? 2 : 4)>(a, q, o, pos0, M, s);
    else if (ra == 2) launch_prefill<NC, 2>(a, q, o, pos0, M, s);
    else launch_prefill<NC, 1>(a, q, o, pos0, M, s);
}

static bool try_prefill(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    if (M <= 8) return false;
    switch (a->head_dim) {
    case 64: prefill_ra<1>(a, q, o, pos0, M, s); return true;
    case 128: prefill_ra<2>(a, q, o, pos0, M, s); return true;
    case 256: prefill_ra<4>(a, q, o, pos0, M, s); return true;
    case 512: prefill_ra<8>(a, q, o, pos0, M, s); return true;
    default: return false;
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
    assert(!a->ring || (a->window > 0 && a->ring >= a->window + M - 1)); /* the ring contract (kernels.h) */
    const size_t smem = sizeof(float) * (a->head_dim + max_context);
    const dim3 grid(M, a->n_heads);
    if (try_prefill(a, q, o, pos0, M, s)) return;
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
