/* Prefill GEMM on Hopper's asynchronous warpgroup MMA (wgmma), FP8 weights:
 *
 *   y[m][r] = sum_k x[m][k] * code[r][k] * scale[r/128][k/128]
 *
 * Same numerics as the mma.sync kernel in gemm.cu ("exact weight-only"): each
 * E4M3 code is converted exactly to FP16 in registers, x is rounded once to
 * FP16, the products are summed in FP32 and the block scale is applied to the
 * FP32 accumulators once per 128-wide K block. gemm.cu calls this path for FP8
 * weights with K % 128 == 0 (the 12B's shapes) and keeps mma.sync for the rest
 * (BF16, small test models); G4_GEMM=mma forces mma.sync everywhere.
 *
 * Roles: weight rows are wgmma's M side (64 rows per warpgroup, A operand from
 * registers), tokens are its N side (BT = 24..208 tokens, B operand in shared
 * memory), so a tile follows the prompt length in steps of 8 (145 tokens run as
 * one 152-token tile, 5 % padding).
 *
 * CTA: 288 threads. Warps 0-7 are two consumer warpgroups; warpgroup w owns the
 * 64-row "segment" w of the CTA's 128 rows (plain GEMM: the two halves of one
 * 128-row block; GeGLU: rows r0..r0+63 of gate and the same rows of up, so the
 * epilogue forms gelu(gate) * up through shared memory). A 64-row segment lies
 * inside one 128-row scale block, so each warpgroup sees one scale per K block.
 * Warp 8 is the producer: one lane issues the bulk tensor copies (TMA).
 *
 * Pipeline: STAGES slots of 64 k each (as many as fit in 227 KB, at most 8),
 * a "full" mbarrier per slot (the copies complete it by byte count) and an
 * "empty" one (each consumer warp arrives once its wgmmas that read the slot
 * have completed). A slot holds
 *   - weights: 2 segments x 64 rows x 64 bytes, copied with the 64-byte
 *     swizzle (16-byte chunk c of row r at c ^ ((r >> 1) & 3)), so that the
 *     32-bit fragment loads below are free of bank conflicts;
 *   - activations: BT rows x 64 FP16 (128 bytes), 128-byte swizzle (chunk c of
 *     row r at c ^ (r & 7)): wgmma's canonical K-major layout, read through a
 *     descriptor (stride 1024 bytes per 8 rows; +32 bytes per k16 step).
 * Rows past N, tokens past M and nothing else are zero-filled by the copy
 * engine; a segment entirely past N is not loaded and not computed.
 *
 * Weights into registers: per k16 step a thread needs the A fragment of rows
 * g and g + 8 of its warp's 16 rows at k = {2t, 2t+1, 2t+8, 2t+9}. The
 * activations are stored K-permuted instead (the x -> FP16 pre-pass writes
 * physical k = 4t + i of each 16-group at logical position {2t, 2t+1, 2t+8,
 * 2t+9}[i]), so a thread's 4 codes of a row are one aligned 32-bit word: one
 * shared load and two cvt.rn.f16x2.e4m3x2 per 4 codes. The same permutation
 * applies to both operands of every product, so the dot products are exact
 * sums over the same pairs.
 *
 * Scales: like gemm.cu, the accumulators hold sum_kb P_kb * s_kb / s_cur and
 * are multiplied by s_cur / s_new when the K block's scale changes (after
 * waiting for the wgmmas in flight); the epilogue multiplies by s_cur. Blocks
 * with scale 0 are skipped.
 *
 * The wgmmas of one stage (4 x m64nBTk16) form one commit group; a warpgroup
 * lets one group stay in flight while it converts the next stage's weights.
 * With 288 threads ptxas caps a thread at 168 registers: BT = 224 already made
 * it serialize the wgmmas (C7512, "insufficient register resources"), hence
 * BT <= 208 (162 registers).
 *
 * Tile and split choice: pick_tiles (a wave-aware cost model; G4_GEMM_TILE
 * overrides it). Split K over gridDim.z when the tiles alone leave SMs idle (N = 3840), with
 * the partial sums in a scratch [split][M][cols] and a reduction kernel that
 * adds them in a fixed order (and applies GeGLU if asked).
 *
 * Expected speed (predicted, not yet measured; H100 at the measured 792 TFLOP/s
 * dense FP16, 6.0 per SM): M = 145, N = 15360, K = 3840 is 120 CTAs of 128 rows
 * x 152 tokens (91 % of the SMs, 95 % of the tokens useful), 25 us of tensor
 * time per CTA at the full rate; with the per-K-block drains, the pre-pass and
 * the epilogue about 35-43 us, 400-500 TFLOP/s (mma.sync: 79 us). GeGLU (240
 * CTAs, two waves) about twice that; down (split 4 + reduction) 40-45 us; the
 * small q/k/v/o calls (4.6 GFLOP) 12-16 us, dominated by the fixed costs.
 * If it falls short, the suspects: the drain at every K block (G4_GEMM=wgmma1,
 * the stagger, against the default shows what it buys: measured -2-3 %), L2 -> SM bandwidth for the
 * activation tiles (each CTA reads BT x 128 bytes per 64 k against 8 KB of
 * weights; TMA multicast over a cluster of two row tiles would halve it), and
 * the 12 idle SMs at M = 145.
 *
 * All kernels here are launched with programmatic dependent launch: the GEMM's
 * producer starts streaming weights while the x -> FP16 pre-pass still runs,
 * and waits (griddepcontrol.wait) before its first activation copy.
 * Scratch (FP16 x, split-K partials) is process-wide and grows on demand
 * (stream synchronized first): not thread-safe, and the first call for a
 * shape must run outside graph capture. */
#include <cuda.h>
#include <cudaTypedefs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/async_copy.cuh"
#include "cuda/common.cuh"
#include "cuda/gemm_common.cuh"
#include "cuda/gemm_wgmma.h"
#include "cuda/kernels.h"
#include "cuda/wgmma_ops.cuh"

#define WG_THREADS 288          /* 2 consumer warpgroups + 1 producer warp */
#define WG_BK 64                /* k per stage */
#define WG_W_STAGE (128 * WG_BK) /* weight bytes per stage */
#define WG_SMEM_LIMIT (227 * 1024)

enum { WG_PLAIN = 0, WG_GEGLU = 1 };

template <int BT>
struct wg_cfg {
    static constexpr int STAGE = WG_W_STAGE + BT * WG_BK * 2;
    static constexpr int FIT = (WG_SMEM_LIMIT - 1024 - 256) / STAGE;
    static constexpr int STAGES = FIT > 8 ? 8 : FIT;
    static constexpr int SMEM = STAGES * STAGE + 1024; /* + slack to align the base to 1024 */
    static_assert(STAGES >= 3, "pipeline too shallow");
    static_assert(STAGES * STAGE >= BT * 256, "GeGLU exchange must fit");
};

struct wg_params {
    CUtensorMap tm_w[2];  /* segment s: [rows][K] codes, box 64 k x 64 rows, 64-byte swizzle */
    CUtensorMap tm_x;     /* [M][K] FP16 (K-permuted), box 64 k x BT tokens, 128-byte swizzle */
    const float *scales[2];
    float *out[2];        /* segment s writes out[s][m * ld + row] (+ split * split_stride) */
    int row0[2], row_step[2]; /* first row of segment s in row tile t: row0 + t * row_step */
    int rows, ld, M, kblocks;
    int kb_base, kb_rem;  /* split z gets kb_base + (z < kb_rem) K blocks */
    int stagger;          /* 1: warpgroup 1 starts one K block after warpgroup 0 */
    int tiled;            /* weights in 16-row tiles (kernels.h): tm_w are 4-D maps, box = 4 tiles x one 1 KB chunk */
    size_t split_stride;
};

/* ---------------- PTX wrappers ---------------- */

__device__ __forceinline__ void tma_2d(uint32_t dst, const CUtensorMap *map, int c0, int c1, uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}
__device__ __forceinline__ void tma_4d(uint32_t dst, const CUtensorMap *map, int c0, int c1, int c2, int c3,
                                       uint32_t bar) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], "
        "[%6];\n" ::"r"(dst),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
        : "memory");
}
/* 64 rows x 64 k of weights from row r, column k: row-major (64-byte swizzle) or 4 tiles' chunks (128-byte swizzle). */
__device__ __forceinline__ void tma_weights(uint32_t dst, const CUtensorMap *map, bool tiled, int k, int r,
                                            uint32_t bar) {
    if (tiled) tma_4d(dst, map, 0, 0, k / 64, r / 16, bar);
    else tma_2d(dst, map, k, r, bar);
}
__device__ __forceinline__ void tma_prefetch_map(const CUtensorMap *map) {
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Pins the accumulators after a wait: the compiler must not move their uses above it. */
template <int N>
__device__ __forceinline__ void fence_regs(float *r) {
#pragma unroll
    for (int i = 0; i < N; i++) asm volatile("" : "+f"(r[i])::"memory");
}
__device__ __forceinline__ uint32_t wg_lds32(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(a));
    return v;
}
/* Four E4M3 codes -> (c0, c1) and (c2, c3) as FP16 pairs (exact). */
__device__ __forceinline__ void wg_e4m3x4(uint32_t w, uint32_t &lo, uint32_t &hi) {
    asm("{\n\t.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, l;\n\tcvt.rn.f16x2.e4m3x2 %1, h;\n\t}\n"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
}
/* Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart. */
__device__ __forceinline__ uint64_t desc_sw128(uint32_t saddr) {
    return (uint64_t)((saddr & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) |
           ((uint64_t)1 << 62);
}
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, 256;\n" ::: "memory"); }
__device__ __forceinline__ void stagger_arrive() { asm volatile("bar.arrive 2, 256;\n" ::: "memory"); }
__device__ __forceinline__ void stagger_wait() { asm volatile("bar.sync 2, 256;\n" ::: "memory"); }

/* ---------------- kernels ---------------- */

template <int BT, int EPI>
__global__ void __launch_bounds__(WG_THREADS, 1) wg_gemm_kernel(const __grid_constant__ wg_params p) {
    constexpr int STAGES = wg_cfg<BT>::STAGES, STAGE = wg_cfg<BT>::STAGE;
    extern __shared__ uint8_t smem_raw[];
    __shared__ __align__(8) uint64_t bars[2 * STAGES];
    const uint32_t raw = g4k_smem_u32(smem_raw);
    const uint32_t base = (raw + 1023u) & ~1023u; /* the swizzle patterns repeat every 1024 bytes */
    const uint32_t full0 = g4k_smem_u32(bars), empty0 = full0 + 8 * STAGES;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int tok0 = blockIdx.x * BT, tile = blockIdx.y, split = blockIdx.z;
    const int kb_begin = split * p.kb_base + min(split, p.kb_rem);
    const int kb_end = kb_begin + p.kb_base + (split < p.kb_rem ? 1 : 0);
    const int n_it = 2 * (kb_end - kb_begin); /* 64-wide stages */

    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) {
            mbar_init(full0 + 8 * s, 1);
            mbar_init(empty0 + 8 * s, 8);
        }
        mbar_init_fence();
    }
    __syncthreads();

    if (warp == 8) { /* ---- producer ---- */
        if (lane == 0) {
            const int r0 = p.row0[0] + tile * p.row_step[0], r1 = p.row0[1] + tile * p.row_step[1];
            const bool a0 = r0 < p.rows, a1 = r1 < p.rows;
            const uint32_t bytes = (a0 ? 4096u : 0u) + (a1 ? 4096u : 0u) + BT * WG_BK * 2;
            tma_prefetch_map(&p.tm_w[0]);
            tma_prefetch_map(&p.tm_w[1]);
            tma_prefetch_map(&p.tm_x);
            const int pre = n_it < STAGES ? n_it : STAGES;
            /* weights do not depend on the previous kernel: start them before waiting for it */
            for (int it = 0; it < pre; it++) {
                const uint32_t st = base + it * STAGE, bar = full0 + 8 * it;
                const int k = (2 * kb_begin + it) * WG_BK;
                mbar_expect_tx(bar, bytes);
                if (a0) tma_weights(st, &p.tm_w[0], p.tiled, k, r0, bar);
                if (a1) tma_weights(st + 4096, &p.tm_w[1], p.tiled, k, r1, bar);
            }
            g4k_wait_inputs();
            for (int it = 0; it < pre; it++)
                tma_2d(base + it * STAGE + WG_W_STAGE, &p.tm_x, (2 * kb_begin + it) * WG_BK, tok0, full0 + 8 * it);
            for (int it = pre; it < n_it; it++) {
                const int slot = it % STAGES;
                const uint32_t st = base + slot * STAGE, bar = full0 + 8 * slot;
                const int k = (2 * kb_begin + it) * WG_BK;
                mbar_wait(empty0 + 8 * slot, ((it / STAGES) - 1) & 1);
                mbar_expect_tx(bar, bytes);
                if (a0) tma_weights(st, &p.tm_w[0], p.tiled, k, r0, bar);
                if (a1) tma_weights(st + 4096, &p.tm_w[1], p.tiled, k, r1, bar);
                tma_2d(st + WG_W_STAGE, &p.tm_x, k, tok0, bar);
            }
        }
        return;
    }

    /* ---- consumers: warpgroup wg computes segment wg; warp wq of it rows 16 wq .. 16 wq + 15 ---- */
    const int wg = warp >> 2, wq = warp & 3, g = lane >> 2, t = lane & 3;
    const int seg_row = p.row0[wg] + tile * p.row_step[wg];
    const bool active = seg_row < p.rows;
    const float *srow = p.scales[wg] + (size_t)(active ? seg_row >> 7 : 0) * p.kblocks;
    /* Row-major slot: row g at (16 wq + g) * 64, row g + 8 512 bytes on, 16-byte chunk j at j ^ swz.
     * Tiled slot: warp wq's tile is 1 KB at wq * 1024; 128-byte line g holds row g's 16 bytes of
     * k16 step j as chunk 2j and row g + 8's as chunk 2j + 1, each at chunk ^ g (128-byte swizzle).
     * Either way the 32 threads' words fall in 32 different banks. */
    const uint32_t w_off = p.tiled ? wg * 4096 + wq * 1024 + g * 128 + 4 * t : wg * 4096 + (16 * wq + g) * 64 + 4 * t;
    const uint32_t swz = (g >> 1) & 3; /* row-major: same for rows g and g + 8 */

    float acc[BT / 2];
#pragma unroll
    for (int i = 0; i < BT / 2; i++) acc[i] = 0.0f;
    float s_cur = 0.0f;

    /* One 64-wide stage: wait for its data, convert this thread's weight fragments,
     * issue 4 wgmmas, and release the previous stage once its wgmmas are done. */
    auto stage = [&](int it, bool mma) {
        const int slot = it % STAGES;
        mbar_wait(full0 + 8 * slot, (it / STAGES) & 1);
        if (mma) {
            const uint32_t sw = base + slot * STAGE + w_off, sx = base + slot * STAGE + WG_W_STAGE;
            uint32_t a[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const uint32_t lo = p.tiled ? sw + (((2 * j) ^ g) << 4) : sw + ((j ^ swz) << 4);
                const uint32_t hi = p.tiled ? sw + (((2 * j + 1) ^ g) << 4) : lo + 512;
                wg_e4m3x4(wg_lds32(lo), a[j][0], a[j][2]);
                wg_e4m3x4(wg_lds32(hi), a[j][1], a[j][3]);
            }
            wgmma_fence();
#pragma unroll
            for (int j = 0; j < 4; j++) wgmma_rs<BT>(acc, a[j], desc_sw128(sx + 32 * j));
            wgmma_commit();
            wgmma_wait<1>();
        } else {
            wgmma_wait<0>();
        }
        if (it > 0 && lane == 0) mbar_arrive(empty0 + 8 * ((it - 1) % STAGES));
    };

    /* Stagger: each warpgroup drains its wgmmas at every K block (to rescale), and both
     * consume the same stages; with warpgroup 1 one K block behind, one of them has
     * wgmmas queued while the other drains. */
    if (p.stagger && wg == 1) stagger_wait();
    float s_next = active ? __ldg(srow + kb_begin) : 0.0f;
    for (int kb = kb_begin; kb < kb_end; kb++) {
        if (p.stagger && wg == 0 && kb == kb_begin + 1) stagger_arrive();
        const float s = s_next;
        if (active && kb + 1 < kb_end) s_next = __ldg(srow + kb + 1);
        const bool mma = s != 0.0f;
        if (mma && s != s_cur) {
            wgmma_wait<0>();
            fence_regs<BT / 2>(acc);
            const float r = s_cur / s;
#pragma unroll
            for (int i = 0; i < BT / 2; i++) acc[i] *= r;
            s_cur = s;
        }
        const int it = 2 * (kb - kb_begin);
        stage(it, mma);
        stage(it + 1, mma);
    }
    if (p.stagger && wg == 0 && kb_end == kb_begin + 1) stagger_arrive();
    wgmma_wait<0>();
    fence_regs<BT / 2>(acc);

    /* ---- epilogue: accumulator i = 4 j + e holds row 16 wq + g + 8 (e >> 1), token 8 j + 2 t + (e & 1) ---- */
    g4k_wait_inputs(); /* an earlier kernel may still read y (programmatic launch) */
    const int row_b = seg_row + 16 * wq + g, tok_b = tok0 + 2 * t;
    if (EPI == WG_GEGLU) {
        consumers_sync(); /* both warpgroups are done with the pipeline's shared memory */
        float *xch = reinterpret_cast<float *>(smem_raw + (base - raw));
        const int ct = tid & 127;
        if (wg == 1) {
#pragma unroll
            for (int i = 0; i < BT / 2; i++) xch[i * 128 + ct] = acc[i] * s_cur;
        }
        consumers_sync();
        if (wg == 1 || !active) return;
#pragma unroll
        for (int i = 0; i < BT / 2; i++) {
            const int row = row_b + 8 * ((i & 3) >> 1), m = tok_b + 8 * (i >> 2) + (i & 1);
            if (row < p.rows && m < p.M)
                p.out[0][(size_t)m * p.ld + row] = g4k_gelu_tanh(acc[i] * s_cur) * xch[i * 128 + ct];
        }
        return;
    }
    if (!active) return;
    float *out = p.out[wg] + (size_t)split * p.split_stride;
#pragma unroll
    for (int i = 0; i < BT / 2; i++) {
        const int row = row_b + 8 * ((i & 3) >> 1), m = tok_b + 8 * (i >> 2) + (i & 1);
        if (row < p.rows && m < p.M) out[(size_t)m * p.ld + row] = acc[i] * s_cur;
    }
}

/* xh[m][16 j + perm(i)] = fp16(clamp(x[m][16 j + i], +-65504)) with perm(4 t + i') = {2t, 2t+1, 2t+8, 2t+9}[i']
 * (NaN stays NaN). K % 16 == 0, x 16-byte aligned. */
__global__ void wg_x_to_f16(__half *xh, const float *x, int M, int K) {
    g4k_wait_inputs();
    g4k_allow_next();
    const size_t groups = (size_t)M * (K / 16);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < groups; i += (size_t)gridDim.x * blockDim.x) {
        const float4 *src = reinterpret_cast<const float4 *>(x + i * 16);
        float f[16];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            const float4 v = src[q];
            f[4 * q] = v.x, f[4 * q + 1] = v.y, f[4 * q + 2] = v.z, f[4 * q + 3] = v.w;
        }
#pragma unroll
        for (int q = 0; q < 16; q++) f[q] = f[q] > 65504.0f ? 65504.0f : (f[q] < -65504.0f ? -65504.0f : f[q]);
        /* logical order: x0 x1 x4 x5 x8 x9 x12 x13 | x2 x3 x6 x7 x10 x11 x14 x15 */
        __half2 h[8];
#pragma unroll
        for (int q = 0; q < 4; q++) {
            h[q] = __floats2half2_rn(f[4 * q], f[4 * q + 1]);
            h[4 + q] = __floats2half2_rn(f[4 * q + 2], f[4 * q + 3]);
        }
        uint4 *dst = reinterpret_cast<uint4 *>(xh + i * 16);
        dst[0] = *reinterpret_cast<const uint4 *>(&h[0]);
        dst[1] = *reinterpret_cast<const uint4 *>(&h[4]);
    }
}

/* ---------------- host side ---------------- */

static g4k_scratch g_xh, g_ws; /* x in FP16; split-K partial sums */
static PFN_cuTensorMapEncodeTiled_v12000 g_encode;

void g4k_gemm_wgmma_release(void) {
    cudaDeviceSynchronize();
    g4k_scratch_free(&g_xh);
    g4k_scratch_free(&g_ws);
}

/* 2-D tensor map: rows of `inner` elements, `row_bytes` apart. */
static int make_map(CUtensorMap *m, CUtensorMapDataType dt, const void *ptr, uint64_t inner, uint64_t outer,
                    uint64_t row_bytes, uint32_t box_inner, uint32_t box_outer, CUtensorMapSwizzle sw) {
    const cuuint64_t dims[2] = {inner, outer};
    const cuuint64_t strides[1] = {row_bytes};
    const cuuint32_t box[2] = {box_inner, box_outer};
    const cuuint32_t es[2] = {1, 1};
    const CUresult r = g_encode(m, dt, 2, const_cast<void *>(ptr), dims, strides, box, es, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                sw, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "g4k_gemm (wgmma): cuTensorMapEncodeTiled failed (%d)\n", (int)r);
        return -1;
    }
    return 0;
}

/* 4-D map over tiled codes (kernels.h): 128-byte lines x 8 per chunk x K/64 chunks per tile x N/16 tiles;
 * a box is 4 tiles' chunks of one k-step (64 rows x 64 k, 4 KB), 128-byte swizzle. */
static int make_map_tiled(CUtensorMap *m, const void *ptr, uint64_t K, uint64_t N) {
    const cuuint64_t dims[4] = {128, 8, K / 64, N / 16};
    const cuuint64_t strides[3] = {128, 1024, K / 64 * 1024};
    const cuuint32_t box[4] = {128, 8, 1, 4};
    const cuuint32_t es[4] = {1, 1, 1, 1};
    const CUresult r = g_encode(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, 4, const_cast<void *>(ptr), dims, strides, box, es,
                                CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        fprintf(stderr, "g4k_gemm (wgmma): cuTensorMapEncodeTiled (tiled weights) failed (%d)\n", (int)r);
        return -1;
    }
    return 0;
}

static int make_weight_map(CUtensorMap *m, const g4_dmatrix *w) {
    if (w->tiled) return make_map_tiled(m, w->data, w->cols, w->rows);
    return make_map(m, CU_TENSOR_MAP_DATA_TYPE_UINT8, w->data, w->cols, w->rows, w->cols, 64, 64,
                    CU_TENSOR_MAP_SWIZZLE_64B);
}

/* launch 0: only raise the kernel's shared-memory limit (first use; before anything is queued) */
template <int BT, int EPI>
static cudaError_t wg_launch(const wg_params &p, dim3 grid, cudaStream_t s, bool launch) {
    constexpr int smem = wg_cfg<BT>::SMEM;
    static bool attr_set = false; /* per instantiation */
    if (!attr_set) {
        const cudaError_t e =
            cudaFuncSetAttribute(wg_gemm_kernel<BT, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        attr_set = true;
    }
    if (!launch) return cudaSuccess;
    g4k_launch(wg_gemm_kernel<BT, EPI>, grid, dim3(WG_THREADS), smem, s, p);
    return cudaGetLastError();
}

template <int EPI>
static cudaError_t wg_launch_bt(int bt, const wg_params &p, dim3 grid, cudaStream_t s, bool launch) {
    switch (bt) {
    case 24: return wg_launch<24, EPI>(p, grid, s, launch);
    case 32: return wg_launch<32, EPI>(p, grid, s, launch);
    case 48: return wg_launch<48, EPI>(p, grid, s, launch);
    case 64: return wg_launch<64, EPI>(p, grid, s, launch);
    case 80: return wg_launch<80, EPI>(p, grid, s, launch);
    case 96: return wg_launch<96, EPI>(p, grid, s, launch);
    case 128: return wg_launch<128, EPI>(p, grid, s, launch);
    case 152: return wg_launch<152, EPI>(p, grid, s, launch);
    case 176: return wg_launch<176, EPI>(p, grid, s, launch);
    default: return wg_launch<208, EPI>(p, grid, s, launch);
    }
}

/* Blocks of wg_gemm_kernel<BT> that fit on one SM (shared memory and registers, as the runtime
 * counts them; asked once per BT). Tiles of up to 32 tokens should fit two; 48 misses by 256 bytes by
 * arithmetic (static shared memory and the 1 KB per block the runtime reserves). */
template <int BT>
static int wg_blocks_per_sm_bt() {
    static int n = 0;
    if (!n) {
        constexpr int smem = wg_cfg<BT>::SMEM;
        if (cudaFuncSetAttribute(wg_gemm_kernel<BT, WG_PLAIN>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) !=
                cudaSuccess ||
            cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, wg_gemm_kernel<BT, WG_PLAIN>, WG_THREADS, smem) !=
                cudaSuccess ||
            n < 1) {
            cudaGetLastError(); /* clear it: one block per SM is the safe assumption */
            n = 1;
        }
    }
    return n;
}

static int wg_blocks_per_sm(int bt) {
    switch (bt) {
    case 24: return wg_blocks_per_sm_bt<24>();
    case 32: return wg_blocks_per_sm_bt<32>();
    case 48: return wg_blocks_per_sm_bt<48>();
    case 64: return wg_blocks_per_sm_bt<64>();
    case 80: return wg_blocks_per_sm_bt<80>();
    case 96: return wg_blocks_per_sm_bt<96>();
    case 128: return wg_blocks_per_sm_bt<128>();
    case 152: return wg_blocks_per_sm_bt<152>();
    case 176: return wg_blocks_per_sm_bt<176>();
    default: return wg_blocks_per_sm_bt<208>();
    }
}

/* Token tile BT and K split: the least time in a model fitted to `gemm_check --sweep` on the H200
 * (session 5, M = 17, 32, 64, 145, 256, 512, 1024; perf log): a CTA takes 3.5 ns per (BT x blocks
 * sharing its SM + 64) x K block, plus 6 us; the CTAs run in waves of sms x the blocks an SM
 * holds (two for tiles of <= 32 tokens, so small prompts gain from more K splits); the time is
 * at least what streaming the weights once per token tile takes at 4.5 TB/s; a split adds a
 * reduction that reads the partials and writes y at ~4 TB/s. Where one tile holds every token
 * (M <= 208) only such tiles are considered: a second token tile streams the weights again.
 * Against the best of each sweep, the 48 layers' GEMMs lose <= 0.05 ms at every M (the previous model, one CTA per SM: 1.1 ms at 17, 1.5 ms at 32). Splits are those the
 * sweeps measured; G4_GEMM_TILE may still ask for any other up to 16. The sweeps are in
 * bench/gemm_sweeps/; tools/fit_gemm_tiles.py refits the constants from them (e.g. on an H100). */
static void pick_tiles(int M, int N, int row_tiles, int kblocks, bool geglu, int sms, int *bt_out, int *splits_out) {
    static const int bts[] = WGMMA_NS;
    static const int splits[] = {1, 2, 3, 4, 6, 8}; /* the ones the sweeps measured */
    const int widest = bts[sizeof bts / sizeof bts[0] - 1];
    const double weight_bytes = (double)N * kblocks * 128 * (geglu ? 2 : 1);
    double best = -1;
    for (int bt : bts) {
        if (M <= widest && bt < M) continue;
        const int token_tiles = (M + bt - 1) / bt, per_sm = wg_blocks_per_sm(bt);
        const long tiles = (long)token_tiles * row_tiles;
        for (int s : splits) {
            if (s > 1 && s > kblocks / 2) break;
            const int kbs = (kblocks + s - 1) / s;
            const long ctas = tiles * s, wave_need = (ctas + sms - 1) / sms;
            const int occ = per_sm < wave_need ? per_sm : (int)wave_need;
            const long waves = (ctas + (long)sms * occ - 1) / ((long)sms * occ);
            double ns = waves * (3.5 * ((double)bt * occ + 64) * kbs + 6000.0);
            const double stream = token_tiles * weight_bytes / 4500.0; /* bytes per ns at 4.5 TB/s */
            if (ns < stream) ns = stream;
            if (s > 1) ns += ((double)s * (geglu ? 2 : 1) + 1) * M * (double)N * 4 / 4000.0;
            if (best < 0 || ns < best) best = ns, *bt_out = bt, *splits_out = s;
        }
    }
}

int g4k_gemm_wgmma(const g4_dmatrix *w, const g4_dmatrix *up, float *y, const float *x, int M,
                              cudaStream_t s) {
    const int N = w->rows, K = w->cols;
    const bool geglu = up != nullptr;
    if (!w->fp8 || !w->scales || K % 128 != 0 || K <= 0 || N <= 0 || M <= 0) return 1;
    if (((uintptr_t)w->data & 15) || ((uintptr_t)x & 15)) return 1;
    if (geglu && (!up->fp8 || !up->scales || up->rows != N || up->cols != K || ((uintptr_t)up->data & 15) ||
                  up->tiled != w->tiled))
        return 1;
    if (w->tiled && N % 16) return 1;
    if (!g_encode) {
        void *fn = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess || !fn)
            return 1;
        g_encode = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
    }

    if (g4k_scratch_grow(&g_xh, (size_t)M * K * sizeof(__half), s, "g4k_gemm (wgmma)")) return -1;

    const int row_tiles = geglu ? (N + 63) / 64 : (N + 127) / 128;
    const int kblocks = K / 128;
    int bt = 152, splits = 1;
    pick_tiles(M, N, row_tiles, kblocks, geglu, g4k_sm_count(), &bt, &splits);
    {
        /* G4_GEMM_TILE=BT,SPLITS overrides the choice (tuning; gemm_check --sweep) */
        const char *env = getenv("G4_GEMM_TILE");
        int b = 0, z = 0;
        if (env && sscanf(env, "%d,%d", &b, &z) == 2 && z >= 1 && z <= 16 && (z == 1 || z <= kblocks / 2)) {
            static const int bts[] = WGMMA_NS;
            for (int v : bts)
                if (v == b) bt = b, splits = z;
        }
    }
    const int tok_tiles = (M + bt - 1) / bt;

    wg_params p;
    memset(&p, 0, sizeof p);
    p.rows = N, p.M = M, p.kblocks = kblocks;
    p.kb_base = kblocks / splits, p.kb_rem = kblocks % splits;
    {
        /* the warpgroup stagger is off by default: measured 2-3 % slower on the H100 (perf log,
         * 2026-11-28); G4_GEMM=wgmma1 turns it on to measure it again */
        const char *env = getenv("G4_GEMM");
        p.stagger = env && !strcmp(env, "wgmma1");
    }
    float *out = y;
    p.ld = N;
    if (splits > 1) {
        p.ld = geglu ? 2 * N : N;
        p.split_stride = (size_t)M * p.ld;
        if (g4k_scratch_grow(&g_ws, (size_t)splits * p.split_stride * sizeof(float), s, "g4k_gemm (wgmma)")) return -1;
        out = static_cast<float *>(g_ws.p);
    }
    const g4_dmatrix *m1 = geglu ? up : w;
    p.tiled = w->tiled;
    if (make_weight_map(&p.tm_w[0], w) || make_weight_map(&p.tm_w[1], m1) ||
        make_map(&p.tm_x, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, g_xh.p, K, M, (uint64_t)K * 2, 64, bt,
                 CU_TENSOR_MAP_SWIZZLE_128B))
        return 1; /* nothing launched yet: the caller falls back to mma.sync */
    p.scales[0] = w->scales, p.scales[1] = m1->scales;
    p.out[0] = out;
    p.out[1] = geglu ? out + (splits > 1 ? N : 0) : out;
    p.row0[0] = 0, p.row0[1] = geglu ? 0 : 64;
    p.row_step[0] = p.row_step[1] = geglu ? 64 : 128;

    const dim3 grid(tok_tiles, row_tiles, splits);
    const bool fused_geglu = geglu && splits == 1;
    cudaError_t e =
        fused_geglu ? wg_launch_bt<WG_GEGLU>(bt, p, grid, s, false) : wg_launch_bt<WG_PLAIN>(bt, p, grid, s, false);
    if (e != cudaSuccess) {
        fprintf(stderr, "g4k_gemm (wgmma): shared memory limit: %s (falling back to mma.sync)\n",
                cudaGetErrorString(e));
        cudaGetLastError(); /* clear it */
        return 1;
    }
    {
        const size_t groups = (size_t)M * K / 16;
        const int blocks = (int)((groups + 255) / 256 < 4096 ? (groups + 255) / 256 : 4096);
        g4k_launch(wg_x_to_f16, dim3(blocks), dim3(256), 0, s, static_cast<__half *>(g_xh.p), x, M, K);
    }
    e = fused_geglu ? wg_launch_bt<WG_GEGLU>(bt, p, grid, s, true) : wg_launch_bt<WG_PLAIN>(bt, p, grid, s, true);
    if (e != cudaSuccess) {
        fprintf(stderr, "g4k_gemm (wgmma): launch: %s\n", cudaGetErrorString(e));
        return -1;
    }
    if (splits > 1) {
        const size_t total = (size_t)M * N;
        const int blocks = (int)((total + 255) / 256 < 8192 ? (total + 255) / 256 : 8192);
        g4k_launch(splitk_reduce, dim3(blocks), dim3(256), 0, s, y, static_cast<const float *>(g_ws.p), M, N, p.ld,
                   splits, p.split_stride, geglu ? 1 : 0);
    }
    return 0;
}
