/* Attention over the KV cache for q already post-processed and the new K/V
 * rows already in the cache (g4k_qkv_post). Scale 1.0; key s is visible from
 * the query at position t iff s <= t and, on sliding layers, s > t - window
 * (model.md §2.5). Position s lives at cache row s, or s % ring for a
 * sliding-window ring. CPU reference: attention() in src/cpu/forward.c.
 * Decode with the post-processing fused in and split over the keys:
 * attention_decode.cu.
 *
 * Prefill (M > 8): head_dim 128, 256 or 512 with a BF16 or FP8 cache on tensor
 * cores (mma.sync, FP16 operands, fp32 softmax; attention_prefill_tc); an F32
 * cache, head_dim 64, or G4_PREFILL_ATTN=simt: the fp32 SIMT tiled kernel
 * (attention_prefill). See prefill_use_tc.
 * Small M, one block per (query token, query head). Fast path (head_dim 128,
 * 256 or 512): each warp takes every n_warps-th key and keeps an online
 * softmax (running max, sum and output) in registers, each lane owning
 * head_dim/32 contiguous dimensions; K and V rows of KEYS_IN_FLIGHT keys are
 * loaded before they are used, so the warp waits on memory once per group, not
 * once per key. The warps' partial results are merged through shared memory.
 * Generic path (any head_dim, small test models): scores in shared memory. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

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
    while (ra > 1 && (long)((M + 16 * ra - 1) / (16 * ra)) * a->n_heads < g4k_sm_count()) ra /= 2;
    if (ra == 4) launch_prefill<NC, (NC >= 8 ? 2 : 4)>(a, q, o, pos0, M, s);
    else if (ra == 2) launch_prefill<NC, 2>(a, q, o, pos0, M, s);
    else launch_prefill<NC, 1>(a, q, o, pos0, M, s);
}

/* ------------------------------------------------------------ prefill: tensor cores */

/* Flash-attention-2 style on mma.sync m16n8k16 (FP16 operands, fp32
 * accumulation). The rows of a query tile are (token, q head) pairs of one KV
 * head's group, token-major (row R: token R / G, head kvh * G + R % G, G =
 * n_heads / n_kv_heads), so the q heads that share a KV head share its K/V
 * tiles: 2M rows per KV head on the 12B's sliding layers, 16M on its full
 * layers. One block per (64-row tile, KV head, slice of DCH output dims), in
 * TC_KG = 2 key groups of TC_WARPS warps: warp w of either group owns rows
 * 16w..16w+15, group g takes the key tiles g, g + 2, ... into K/V buffers of
 * its own, and group 1 hands its running max, sum and output to group 0 at
 * the end (a row's chain of tiles half as long: at 145 tokens the 48 layers'
 * attention went from 1.29 to 1.00 ms, perf log session 5). Per tile of TC_BK keys: K rows
 * (all head_dim) and V rows (the block's DCH dims) are converted to FP16 in
 * shared memory (FP8 codes as they are, exact in FP16: the K scale multiplies
 * the fp32 scores and the V scale the output), S = Q K^T by MMA from Q in
 * shared memory, the online softmax in fp32 registers (the row's max and sum
 * shared by the 4 lanes of a quad), P rounded to FP16 as the A operand of
 * O += P V. Tiles wholly outside the window are never visited; a warp skips
 * the MMAs of a tile none of its rows can see. With an FP8 cache and 128-wide
 * slices (short prompts, where each block's tiles run one after another on an
 * SM of its own) the next tile's loads are issued before this tile's MMAs.
 * DCH < head_dim recomputes S once per slice: it is taken only when the
 * grid would otherwise leave SMs idle (short prompts), or for head_dim 512,
 * whose 512 fp32 accumulators per row would not fit in registers.
 * Error: q goes in as two FP16 parts (hi + lo, two MMAs each: q to ~2^-22), BF16
 * and FP8 K and V are exact in FP16 (|x| < 65504), so scores are as good as
 * fp32's; what remains is P rounded to FP16 (2^-12 relative): max|o - ref| ~3e-4
 * at attention_check's scales (an fp64 model of it gives 2-4e-4). An F32 cache's
 * K and V would be rounded too (~3e-3): it stays on the SIMT kernel unless
 * G4_PREFILL_ATTN=tc. Cache values must fit FP16. */
#define TC_WARPS 4
#define TC_BQ (16 * TC_WARPS)
#define TC_BK 32
#define TC_THREADS (32 * TC_WARPS) /* per key group */
#define TC_KG 2                     /* key groups per block */
#define TC_LOG2E 1.4426950408889634f

/* Offset in halves of the 16-byte chunk c of row r in a tile of rows of W
 * halves, chunks XOR-swizzled by r % 8 so that the 8 row addresses of an
 * ldmatrix hit distinct banks (W >= 64). */
__device__ __forceinline__ int tc_swz(int r, int c, int W) { return r * W + ((c ^ (r & 7)) << 3); }

__device__ __forceinline__ uint32_t tc_h2(float lo, float hi) {
    __half2 h = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&h);
}

__device__ __forceinline__ void tc_ldsm(uint32_t addr, uint32_t *r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

__device__ __forceinline__ void tc_ldsm_t(uint32_t addr, uint32_t *r) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr)
                 : "memory");
}

/* c += a (16x16, row) * b (16x8, col), FP16 in, fp32 accumulate. */
__device__ __forceinline__ void tc_mma(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float tc_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* 8 cache elements (FP8 codes, BF16 or fp32) -> 8 FP16 values as a uint4. */
__device__ __forceinline__ uint4 tc_fp8x8(uint2 w) {
    uint4 r;
    __half2_raw h;
    h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w.x & 0xffffu), __NV_E4M3), r.x = h.x | ((uint32_t)h.y << 16);
    h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w.x >> 16), __NV_E4M3), r.y = h.x | ((uint32_t)h.y << 16);
    h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w.y & 0xffffu), __NV_E4M3), r.z = h.x | ((uint32_t)h.y << 16);
    h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(w.y >> 16), __NV_E4M3), r.w = h.x | ((uint32_t)h.y << 16);
    return r;
}
__device__ __forceinline__ uint32_t tc_bf16x2(uint32_t w) {
    return tc_h2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
__device__ __forceinline__ uint4 tc_bf16x8(uint4 w) {
    return make_uint4(tc_bf16x2(w.x), tc_bf16x2(w.y), tc_bf16x2(w.z), tc_bf16x2(w.w));
}
__device__ __forceinline__ uint4 tc_f32x8(float4 a, float4 b) {
    return make_uint4(tc_h2(a.x, a.y), tc_h2(a.z, a.w), tc_h2(b.x, b.y), tc_h2(b.z, b.w));
}
/* x = hi + lo, both FP16: hi = fp16(x), lo = fp16(x - hi) (x to ~2^-22 relative). */
__device__ __forceinline__ void tc_split2(float x, float y, uint32_t &hi, uint32_t &lo) {
    const __half2 h = __floats2half2_rn(x, y);
    const float2 f = __half22float2(h);
    hi = *reinterpret_cast<const uint32_t *>(&h), lo = tc_h2(x - f.x, y - f.y);
}
__device__ __forceinline__ void tc_split8(float4 a, float4 b, uint4 &hi, uint4 &lo) {
    tc_split2(a.x, a.y, hi.x, lo.x), tc_split2(a.z, a.w, hi.y, lo.y);
    tc_split2(b.x, b.y, hi.z, lo.z), tc_split2(b.z, b.w, hi.w, lo.w);
}

/* FP8 rows of positions [kt, kt + TC_BK), elements [col0, col0 + W) of each, into
 * this thread's registers (8 codes per chunk; positions past kend are zeros)... */
template <int HD, int W>
__device__ __forceinline__ void tc_fetch_fp8(const g4k_attn &a, const void *cache, int col0, int kt, int kend,
                                             uint2 (&raw)[TC_BK * W / 8 / TC_THREADS], int tid) {
    constexpr int CPR = W / 8, N = TC_BK * CPR / TC_THREADS;
    const size_t kv_dim = (size_t)a.n_kv_heads * HD;
    const uint8_t *base = static_cast<const uint8_t *>(cache) + col0;
#pragma unroll
    for (int u = 0; u < N; u++) {
        const int i = tid + u * TC_THREADS, p = kt + i / CPR;
        raw[u] = p <= kend ? __ldg(reinterpret_cast<const uint2 *>(base + kv_row(a, p) * kv_dim + (i % CPR) * 8))
                           : make_uint2(0, 0);
    }
}

/* ... and from there into dst[TC_BK][W] as FP16 (swizzled). */
template <int W>
__device__ __forceinline__ void tc_store_fp8(const uint2 (&raw)[TC_BK * W / 8 / TC_THREADS], __half *dst, int tid) {
    constexpr int CPR = W / 8, N = TC_BK * CPR / TC_THREADS;
#pragma unroll
    for (int u = 0; u < N; u++) {
        const int i = tid + u * TC_THREADS;
        *reinterpret_cast<uint4 *>(dst + tc_swz(i / CPR, i % CPR, W)) = tc_fp8x8(raw[u]);
    }
}

/* Cache rows of positions [kt, kt + TC_BK), elements [col0, col0 + W) of each,
 * into dst[TC_BK][W] (FP16, swizzled); positions past kend are zeros. The
 * thread's loads are all issued before the first conversion (in groups that
 * keep ~32 registers of raw data). */
template <int HD, int W>
__device__ __forceinline__ void tc_load_tile(const g4k_attn &a, const void *cache, int col0, int kt, int kend,
                                             __half *dst, int tid) {
    constexpr int CPR = W / 8, N = TC_BK * CPR / TC_THREADS;
    static_assert(TC_BK * CPR % TC_THREADS == 0, "tile chunks per thread");
    const size_t kv_dim = (size_t)a.n_kv_heads * HD;
    if (a.kv_dtype == G4K_KV_FP8) { /* N <= 16: 32 registers */
        uint2 raw[N];
        tc_fetch_fp8<HD, W>(a, cache, col0, kt, kend, raw, tid);
        tc_store_fp8<W>(raw, dst, tid);
    } else if (a.kv_dtype == G4K_KV_BF16) {
        const uint16_t *base = static_cast<const uint16_t *>(cache) + col0;
        constexpr int U = N < 8 ? N : 8;
#pragma unroll
        for (int u0 = 0; u0 < N; u0 += U) {
            uint4 raw[U];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = tid + (u0 + u) * TC_THREADS, p = kt + i / CPR;
                raw[u] = p <= kend ? __ldg(reinterpret_cast<const uint4 *>(base + kv_row(a, p) * kv_dim + (i % CPR) * 8))
                                   : make_uint4(0, 0, 0, 0);
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = tid + (u0 + u) * TC_THREADS;
                *reinterpret_cast<uint4 *>(dst + tc_swz(i / CPR, i % CPR, W)) = tc_bf16x8(raw[u]);
            }
        }
    } else {
        const float *base = static_cast<const float *>(cache) + col0;
        constexpr int U = N < 4 ? N : 4;
#pragma unroll
        for (int u0 = 0; u0 < N; u0 += U) {
            float4 raw[U][2];
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = tid + (u0 + u) * TC_THREADS, p = kt + i / CPR;
                if (p <= kend) {
                    const float4 *src = reinterpret_cast<const float4 *>(base + kv_row(a, p) * kv_dim + (i % CPR) * 8);
                    raw[u][0] = __ldg(src), raw[u][1] = __ldg(src + 1);
                } else {
                    raw[u][0] = raw[u][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                }
            }
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int i = tid + (u0 + u) * TC_THREADS;
                *reinterpret_cast<uint4 *>(dst + tc_swz(i / CPR, i % CPR, W)) = tc_f32x8(raw[u][0], raw[u][1]);
            }
        }
    }
}

/* Bytes of shared memory: Q (hi and lo parts), each key group's K and V tiles;
 * at the end the same space carries group 1's softmax state and output to group 0. */
template <int HD, int DCH>
constexpr size_t tc_smem_bytes() {
    constexpr size_t tiles = sizeof(__half) * ((size_t)2 * TC_BQ * HD + (size_t)TC_KG * TC_BK * (HD + DCH));
    constexpr size_t xch = sizeof(float) * TC_THREADS * (DCH / 8 * 4 + 4);
    return tiles > xch ? tiles : xch;
}

template <int HD, int DCH>
__global__ void __launch_bounds__(TC_THREADS *TC_KG) attention_prefill_tc(g4k_attn a, const float *q, float *o,
                                                                          const int *pos0p, int M) {
    constexpr int NS = TC_BK / 8, NO = DCH / 8, SPLIT = DCH <= 128 ? 2 : 1;
    static_assert(HD % 64 == 0 && DCH % 64 == 0 && HD % DCH == 0, "tile widths");
    static_assert(TC_KG == 2, "the final merge takes two key groups");
    extern __shared__ uint4 tc_smem[];
    /* key group kg (warps 4kg..4kg+3) takes key tiles kg, kg + 2, ... into its own K/V
     * buffers: each query row's work in two chains half as long, merged at the end */
    const int kg = threadIdx.x / TC_THREADS, tid = threadIdx.x % TC_THREADS;
    __half *qs = reinterpret_cast<__half *>(tc_smem), *qls = qs + TC_BQ * HD;
    __half *ks = qls + TC_BQ * HD + (size_t)kg * TC_BK * (HD + DCH), *vs = ks + TC_BK * HD;
    g4k_wait_inputs();
    g4k_allow_next();
    const int G = a.n_heads / a.n_kv_heads, kvh = blockIdx.x / (HD / DCH), dc = blockIdx.x % (HD / DCH);
    const int row0 = (gridDim.y - 1 - blockIdx.y) * TC_BQ; /* the longest tiles (last queries) first */
    const int rows = M * G, q_dim = a.n_heads * HD, pos0 = *pos0p;
    const int warp = tid / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;

    for (int i = threadIdx.x; i < TC_BQ * HD / 8; i += TC_THREADS * TC_KG) {
        const int r = i / (HD / 8), c = i % (HD / 8), R = row0 + r;
        uint4 hi = make_uint4(0, 0, 0, 0), lo = hi;
        if (R < rows) {
            const float4 *src = reinterpret_cast<const float4 *>(q + (size_t)(R / G) * q_dim + (kvh * G + R % G) * HD + c * 8);
            tc_split8(src[0], src[1], hi, lo);
        }
        *reinterpret_cast<uint4 *>(qs + tc_swz(r, c, HD)) = hi;
        *reinterpret_cast<uint4 *>(qls + tc_swz(r, c, HD)) = lo;
    }
    /* the keys the block sees: [its first query - window + 1, its last query] */
    const int last_row = row0 + TC_BQ - 1 < rows - 1 ? row0 + TC_BQ - 1 : rows - 1;
    const int kend = pos0 + last_row / G, qfirst = pos0 + row0 / G;
    const int kstart = a.window && qfirst - a.window + 1 > 0 ? qfirst - a.window + 1 : 0;
    /* this warp's rows and the positions of this lane's two rows (g, g + 8); -1: past the last row */
    const int wr0 = row0 + 16 * warp, wr1 = wr0 + 15 < rows - 1 ? wr0 + 15 : rows - 1;
    const int wpos_lo = pos0 + wr0 / G, wpos_hi = pos0 + wr1 / G;
    int qpos[2];
#pragma unroll
    for (int hr = 0; hr < 2; hr++) qpos[hr] = wr0 + g + 8 * hr < rows ? pos0 + (wr0 + g + 8 * hr) / G : -1;
    const float s_scale = (a.kv_dtype == G4K_KV_FP8 ? a.k_scale : 1.0f) * TC_LOG2E; /* scores in log2 units */

    float acc[NO][4], rm[2] = {-INFINITY, -INFINITY}, rl[2] = {0.0f, 0.0f};
#pragma unroll
    for (int n = 0; n < NO; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
    /* ldmatrix row addresses: Q (A operand), K (B, keys as rows), V (B, transposed) */
    const uint32_t qs_a = (uint32_t)__cvta_generic_to_shared(qs), ks_a = (uint32_t)__cvta_generic_to_shared(ks);
    const uint32_t qls_a = (uint32_t)__cvta_generic_to_shared(qls);
    const uint32_t vs_a = (uint32_t)__cvta_generic_to_shared(vs);
    const int q_r = 16 * warp + lane % 16, q_c = lane / 16;
    const int k_r = lane % 8 + 8 * (lane / 16), k_c = (lane / 8) % 2;
    const int v_r = lane % 8 + 8 * ((lane / 8) % 2), v_c = lane / 16;

    /* One tile of keys [kt, kt + TC_BK), K and V in shared memory: S, softmax, O += P V. */
    auto tile = [&](int kt) {
        if (wr0 >= rows || kt > wpos_hi || (a.window && kt + TC_BK - 1 <= wpos_lo - a.window)) return;
        /* S in SPLIT independent partial sums over the head dim: shorter chains of dependent MMAs */
        float sp[SPLIT][NS][4];
#pragma unroll
        for (int h = 0; h < SPLIT; h++)
#pragma unroll
            for (int j = 0; j < NS; j++) sp[h][j][0] = sp[h][j][1] = sp[h][j][2] = sp[h][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) {
            uint32_t qa[4], qla[4];
            tc_ldsm(qs_a + 2 * tc_swz(q_r, 2 * kk + q_c, HD), qa);
            tc_ldsm(qls_a + 2 * tc_swz(q_r, 2 * kk + q_c, HD), qla);
#pragma unroll
            for (int j = 0; j < NS; j += 2) {
                uint32_t kb[4];
                tc_ldsm(ks_a + 2 * tc_swz(8 * j + k_r, 2 * kk + k_c, HD), kb);
                tc_mma(sp[kk % SPLIT][j], qa, kb[0], kb[1]);
                tc_mma(sp[kk % SPLIT][j + 1], qa, kb[2], kb[3]);
                tc_mma(sp[kk % SPLIT][j], qla, kb[0], kb[1]);
                tc_mma(sp[kk % SPLIT][j + 1], qla, kb[2], kb[3]);
            }
        }
        float s[NS][4];
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[j][e] = sp[0][j][e];
#pragma unroll
                for (int h = 1; h < SPLIT; h++) s[j][e] += sp[h][j][e];
            }
        /* mask, online softmax (lane holds rows g (e < 2) and g + 8, keys kt + 8j + 2 t4 + e % 2) */
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int p = kt + 8 * j + 2 * t4 + (e & 1), qp = qpos[e >> 1];
                const bool visible = p <= qp && (!a.window || p > qp - a.window);
                s[j][e] = visible ? s[j][e] * s_scale : -INFINITY;
                mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
            }
        float sc[2], base[2];
#pragma unroll
        for (int hr = 0; hr < 2; hr++) {
            mx[hr] = fmaxf(mx[hr], __shfl_xor_sync(0xffffffffu, mx[hr], 1));
            mx[hr] = fmaxf(mx[hr], __shfl_xor_sync(0xffffffffu, mx[hr], 2));
            const float nm = fmaxf(rm[hr], mx[hr]);
            sc[hr] = nm == -INFINITY ? 1.0f : tc_exp2(rm[hr] - nm); /* nothing visible yet: stay empty */
            base[hr] = nm == -INFINITY ? 0.0f : nm;
            rm[hr] = nm;
            rl[hr] *= sc[hr];
        }
#pragma unroll
        for (int j = 0; j < NS; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                s[j][e] = tc_exp2(s[j][e] - base[e >> 1]);
                rl[e >> 1] += s[j][e];
            }
#pragma unroll
        for (int n = 0; n < NO; n++) acc[n][0] *= sc[0], acc[n][1] *= sc[0], acc[n][2] *= sc[1], acc[n][3] *= sc[1];
#pragma unroll
        for (int kk = 0; kk < TC_BK / 16; kk++) {
            const uint32_t pa[4] = {tc_h2(s[2 * kk][0], s[2 * kk][1]), tc_h2(s[2 * kk][2], s[2 * kk][3]),
                                    tc_h2(s[2 * kk + 1][0], s[2 * kk + 1][1]), tc_h2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
            for (int n = 0; n < NO; n += 2) {
                uint32_t vb[4];
                tc_ldsm_t(vs_a + 2 * tc_swz(16 * kk + v_r, n + v_c, DCH), vb);
                tc_mma(acc[n], pa, vb[0], vb[1]);
                tc_mma(acc[n + 1], pa, vb[2], vb[3]);
            }
        }
    };

    __syncthreads(); /* Q stored */
    /* both groups run the same number of rounds (the last one may be past kend for group 1:
     * zeros loaded, every warp skips it), so that one block barrier serves both */
    const int kfirst = kstart + kg * TC_BK, kstep = TC_KG * TC_BK;
    const int rounds = (kend - kstart + kstep) / kstep;
    const int klast = kstart + (rounds - 1) * kstep + kg * TC_BK;
    if (DCH == 128 && a.kv_dtype == G4K_KV_FP8) {
        /* short prompts (128-wide slices leave registers to spare), FP8 cache: the next
         * tile's loads are in flight while this one is computed */
        uint2 rk[TC_BK * HD / 8 / TC_THREADS], rv[TC_BK * DCH / 8 / TC_THREADS];
        tc_fetch_fp8<HD, HD>(a, a.k_cache, kvh * HD, kfirst, kend, rk, tid);
        tc_fetch_fp8<HD, DCH>(a, a.v_cache, kvh * HD + dc * DCH, kfirst, kend, rv, tid);
        for (int kt = kfirst; kt <= klast; kt += kstep) {
            __syncthreads(); /* the last tile's K and V no longer read */
            tc_store_fp8<HD>(rk, ks, tid);
            tc_store_fp8<DCH>(rv, vs, tid);
            __syncthreads();
            if (kt + kstep <= kend) {
                tc_fetch_fp8<HD, HD>(a, a.k_cache, kvh * HD, kt + kstep, kend, rk, tid);
                tc_fetch_fp8<HD, DCH>(a, a.v_cache, kvh * HD + dc * DCH, kt + kstep, kend, rv, tid);
            }
            tile(kt);
        }
    } else {
        for (int kt = kfirst; kt <= klast; kt += kstep) {
            __syncthreads(); /* the last tile's K and V no longer read */
            tc_load_tile<HD, HD>(a, a.k_cache, kvh * HD, kt, kend, ks, tid);
            tc_load_tile<HD, DCH>(a, a.v_cache, kvh * HD + dc * DCH, kt, kend, vs, tid);
            __syncthreads();
            tile(kt);
        }
    }
    /* group 1 hands its running max, sum and output to group 0 (same warp, same lane:
     * the same rows and columns), which rescales both to the larger max and adds */
    __syncthreads(); /* every group is done with Q, K and V: the space is free */
    float *xch = reinterpret_cast<float *>(tc_smem) + (size_t)tid * (NO * 4 + 4);
    if (kg == 1) {
#pragma unroll
        for (int n = 0; n < NO; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) xch[n * 4 + e] = acc[n][e];
        xch[NO * 4] = rm[0], xch[NO * 4 + 1] = rm[1], xch[NO * 4 + 2] = rl[0], xch[NO * 4 + 3] = rl[1];
    }
    __syncthreads();
    if (kg == 1) return;
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        const float pm = xch[NO * 4 + hr], pl = xch[NO * 4 + 2 + hr], m = fmaxf(rm[hr], pm);
        if (m == -INFINITY) continue; /* neither group saw a key: a row past the last */
        const float f0 = tc_exp2(rm[hr] - m), f1 = tc_exp2(pm - m); /* exp2(-inf) = 0 */
        rl[hr] = rl[hr] * f0 + pl * f1;
#pragma unroll
        for (int n = 0; n < NO; n++)
#pragma unroll
            for (int e = 2 * hr; e < 2 * hr + 2; e++) acc[n][e] = acc[n][e] * f0 + xch[n * 4 + e] * f1;
    }
    const float v_scale = a.kv_dtype == G4K_KV_FP8 ? a.v_scale : 1.0f;
#pragma unroll
    for (int hr = 0; hr < 2; hr++) {
        rl[hr] += __shfl_xor_sync(0xffffffffu, rl[hr], 1);
        rl[hr] += __shfl_xor_sync(0xffffffffu, rl[hr], 2);
        if (qpos[hr] < 0) continue;
        const int R = wr0 + g + 8 * hr;
        const float inv = v_scale / rl[hr];
        float *orow = o + (size_t)(R / G) * q_dim + (kvh * G + R % G) * HD + dc * DCH + 2 * t4;
#pragma unroll
        for (int n = 0; n < NO; n++)
            *reinterpret_cast<float2 *>(orow + 8 * n) = make_float2(acc[n][2 * hr] * inv, acc[n][2 * hr + 1] * inv);
    }
}

template <int HD, int DCH>
static void launch_prefill_tc(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    constexpr size_t smem = tc_smem_bytes<HD, DCH>();
    static_assert(smem <= 227 * 1024, "prefill attention tiles exceed shared memory");
    static bool raised = false;
    if (!raised) {
        cudaFuncSetAttribute(attention_prefill_tc<HD, DCH>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        raised = true;
    }
    const int tiles = (M * (a->n_heads / a->n_kv_heads) + TC_BQ - 1) / TC_BQ;
    g4k_launch(attention_prefill_tc<HD, DCH>, dim3(a->n_kv_heads * (HD / DCH), tiles), TC_THREADS * TC_KG, smem, s,
               *a, q, o, pos0, M);
}

/* Output slices: head_dim 512 always in two (or four); 256 whole unless that
 * leaves SMs idle. */
template <int HD>
static void prefill_tc(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    const long tiles = (M * (long)(a->n_heads / a->n_kv_heads) + TC_BQ - 1) / TC_BQ;
    const bool few = tiles * a->n_kv_heads * (HD > 256 ? HD / 256 : 1) < g4k_sm_count();
    if constexpr (HD == 128) {
        launch_prefill_tc<HD, 128>(a, q, o, pos0, M, s);
    } else {
        if (few) launch_prefill_tc<HD, 128>(a, q, o, pos0, M, s);
        else launch_prefill_tc<HD, 256>(a, q, o, pos0, M, s);
    }
}

/* Whether the tensor-core kernel takes this call. Not for an F32 cache (the exact
 * configuration: its K rounded to FP16 would put scores off by ~1e-3 and max|o - ref|
 * at ~3e-3; G4_PREFILL_ATTN=tc takes it there too, to measure). G4_PREFILL_ATTN=simt:
 * the fp32 tiled kernel for every head dim (to compare); so too with G4_EXACT_PREFILL=1,
 * the forward pass's fp32 prefill (cuda_forward.c) that tests compare with the CPU
 * token for token. Read on every call: tests switch them within one process. */
static bool prefill_use_tc(const g4k_attn *a) {
    const char *e = getenv("G4_PREFILL_ATTN"), *exact = getenv("G4_EXACT_PREFILL");
    if ((e && !strcmp(e, "simt")) || (exact && atoi(exact))) return false;
    return a->kv_dtype != G4K_KV_F32 || (e && !strcmp(e, "tc"));
}

static bool try_prefill(const g4k_attn *a, const float *q, float *o, const int *pos0, int M, cudaStream_t s) {
    if (M <= 8) return false;
    if (prefill_use_tc(a) && a->n_heads % a->n_kv_heads == 0) {
        switch (a->head_dim) {
        case 128: prefill_tc<128>(a, q, o, pos0, M, s); return true;
        case 256: prefill_tc<256>(a, q, o, pos0, M, s); return true;
        case 512: prefill_tc<512>(a, q, o, pos0, M, s); return true;
        default: break;
        }
    }
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
