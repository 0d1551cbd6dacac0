/* Decode GEMV on tensor cores: y = x W^T for 1-4 tokens per launch, W FP8
 * E4M3 in 128x128 blocks (or BF16), row-major or in 16-row tiles (kernels.h),
 * fp32 accumulation, the weights read once per step. CPU reference:
 * cpu_matmul (src/cpu/ops.c); checked by tests/gpu/gemv_check.cu, timed by
 * tests/gpu/gemv_bench.cu.
 *
 * Tensor cores for a memory-bound product: the CUDA-core GEMV (gemv.cu)
 * spends ~3 instructions per weight byte (dequantize, FMA, reductions); this
 * one ~0.9. That alone did not make it faster on row-major weights (perf log,
 * session 3): what limits both there is DRAM locality, 16 rows read side by
 * side. With tiled weights a warp's share is one contiguous run, and the
 * step's projections stream at ~83 % of a plain read. A warp owns a tile of 16 rows;
 * a lane loads 16 bytes of row g and of row g + 8 (g = lane / 4) per k-step,
 * converts them to FP16 pairs (one cvt per two codes; E4M3 is exact in FP16)
 * and feeds them straight to mma.sync m16n8k16 as the A fragment. A dot
 * product does not care in which order it visits k, so each lane's 16
 * contiguous codes become its k-slots {2t, 2t+1, 2t+8, 2t+9} (t = lane % 4)
 * of four MMAs, and the B fragment carries x at the same columns. That is
 * ~0.9 instructions per byte, no shuffles, and the rows' sums come out of the
 * MMA already reduced over the warp.
 *
 * Precision: the MMA's 8 B columns hold x split into FP16 parts, x = hi + lo
 * (column 2m: hi of token m, 2m + 1: lo), so the products keep ~22 bits of x;
 * x is clamped to +-65504 first, as the prefill GEMM does (gemm.cu). BF16
 * weights (the LM head) take BF16 MMAs with x = hi + mid + lo in BF16
 * (columns 4m..4m+2; ~24 bits, no range limit). Products are exact and
 * summed in fp32; the 128x128 block scale multiplies each k-step's fp32
 * partial sum, as the CPU applies it per element (same value up to fp32
 * rounding order).
 *
 * Work: warps = tiles x kpw; the kpw warps of a tile split its columns and
 * add up in shared memory, so small matrices (o, down: 240 tiles) still put
 * ~16 warps on every SM, without split-K partials in global memory. Each
 * warp keeps P k-steps of loads in flight (issued before the PDL wait for
 * its first tile), and the block stages x once, split into parts, in shared
 * memory; each FP8 warp keeps its tile's block scales there too. */
#include <stdlib.h>
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/gemv_tc.h"
#include "cuda/trace.cuh"

#define TC_WARPS 8 /* warps per block */

struct tc_args {
    gemv_mat mat[3];
    int n_mats;
    int cols, M;
    int n_tiles;   /* 16-row tiles over all matrices (GeGLU: over gate; up is paired) */
    int kpw;       /* warps per tile (1, 2, 4, 8): the tile's k-steps split between them */
    int xs_stride; /* 16-bit elements per shared x row (cols + 8: rows start in other banks) */
    const float *x;
    float cap;
    int tiled;     /* the matrices' layout: 1 = 16-row tiles (kernels.h), 0 = row-major */
};

template <bool FP8, int MODE>
struct tc_cfg {
    static constexpr int NA = MODE == G4K_TC_GEGLU ? 2 : 1; /* A tiles per warp (gate and up) */
    static constexpr int P = NA == 2 ? 4 : 8;                /* k-steps of loads in flight per warp */
    static constexpr int STEP_COLS = FP8 ? 64 : 32;          /* 16 bytes per lane per row */
    static constexpr int XPARTS = FP8 ? 2 : 3;               /* parts of x kept in shared memory */
};

/* 128-column blocks of a row: the block scales of one tile (FP8). */
__host__ __device__ __forceinline__ int tc_scale_blocks(int cols) { return (cols + 127) / 128; }

/* One warp's rows: the pointers already at lane (g, t)'s first bytes. */
struct tc_job {
    const uint8_t *lo[2], *hi[2]; /* row g and row g + 8 of each A tile */
    const float *sc[2];           /* the tile's row of block scales (FP8) */
    float *y;                     /* the output matrix (GeGLU: gate's) */
    int row, rows;                /* first row of the tile in it, and its rows */
};

__device__ __forceinline__ tc_job tc_find(const tc_args &a, int tile, int g, int t, bool fp8, int n_a) {
    int row = tile * 16, mi = 0;
    if (a.n_mats > 1 && row >= a.mat[0].rows) { /* constant indices: the parameters stay out of local memory */
        row -= a.mat[0].rows, mi = 1;
        if (a.n_mats > 2 && row >= a.mat[1].rows) row -= a.mat[1].rows, mi = 2;
    }
    const gemv_mat &m = mi == 0 ? a.mat[0] : mi == 1 ? a.mat[1] : a.mat[2];
    const size_t rowbytes = (size_t)a.cols * (fp8 ? 1 : 2);
    const size_t nbc = tc_scale_blocks(a.cols);
    tc_job j;
    j.y = m.y, j.row = row, j.rows = m.rows;
    for (int i = 0; i < n_a; i++) { /* GeGLU: gate (mat 0) and up (mat 1) at the same rows */
        const gemv_mat &mm = i == 0 ? m : a.mat[1];
        if (a.tiled) { /* the tile's 16 rows are one run of 1 KB chunks; lane 4g + t's 32 bytes in each */
            j.lo[i] = mm.w + (size_t)row * rowbytes + (g * 4 + t) * 32;
            j.hi[i] = j.lo[i] + 16;
        } else {
            j.lo[i] = mm.w + (size_t)(row + g) * rowbytes + 16 * t;
            j.hi[i] = j.lo[i] + 8 * rowbytes;
        }
        j.sc[i] = fp8 ? mm.scales + (size_t)(row / 128) * nbc : nullptr;
    }
    return j;
}

__device__ __forceinline__ void mma_f16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Two E4M3 codes (the low 16 bits) -> an FP16 pair, exactly. */
__device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t v) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)(v & 0xffffu), __NV_E4M3);
    return (uint32_t)h.x | ((uint32_t)h.y << 16);
}

__device__ __forceinline__ uint32_t word(const uint4 &v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

/* One k-step of one A tile: acc += W[16 rows][step's columns] . B.
 * FP8: word j of a row's 16 bytes is columns 16t + 4j .. + 3 -> MMA j;
 * BF16: words 2j, 2j + 1 are columns 8t + 4j .. + 3 -> MMA j. */
template <bool FP8>
__device__ __forceinline__ void tc_step(float acc[4], const uint4 &lo, const uint4 &hi, const uint4 xb[2], float scale) {
    if (FP8) {
        float part[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const uint32_t wl = word(lo, j), wh = word(hi, j);
            const uint32_t af[4] = {e4m3x2_to_f16x2(wl), e4m3x2_to_f16x2(wh), e4m3x2_to_f16x2(wl >> 16),
                                    e4m3x2_to_f16x2(wh >> 16)};
            mma_f16(part, af, word(xb[j / 2], 2 * (j % 2)), word(xb[j / 2], 2 * (j % 2) + 1));
        }
#pragma unroll
        for (int i = 0; i < 4; i++) acc[i] += part[i] * scale;
    } else {
#pragma unroll
        for (int j = 0; j < 2; j++) {
            const uint32_t af[4] = {word(lo, 2 * j), word(hi, 2 * j), word(lo, 2 * j + 1), word(hi, 2 * j + 1)};
            mma_bf16(acc, af, word(xb[0], 2 * j), word(xb[0], 2 * j + 1));
        }
    }
}

/* x[m][c] (fp32, global) -> shared parts: FP8 path rows 2m (hi), 2m + 1 (lo)
 * in FP16; BF16 path rows 3m..3m+2 (hi, mid, lo) in BF16. */
template <bool FP8>
__device__ __forceinline__ void tc_store_x(const tc_args &a, uint16_t *xs, int i, float4 v4) {
    constexpr int parts = FP8 ? 2 : 3;
    const int m = i / (a.cols / 4), c = (i % (a.cols / 4)) * 4;
    const float v[4] = {v4.x, v4.y, v4.z, v4.w};
    uint16_t p[parts][4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        if (FP8) {
            const float f = fminf(fmaxf(v[k], -65504.0f), 65504.0f); /* NaN stays NaN */
            const __half h = __float2half_rn(f), l = __float2half_rn(f - __half2float(h));
            p[0][k] = __half_as_ushort(h), p[1][k] = __half_as_ushort(l);
        } else {
            const __nv_bfloat16 h = __float2bfloat16_rn(v[k]);
            const float r = v[k] - __bfloat162float(h);
            const __nv_bfloat16 md = __float2bfloat16_rn(r), l = __float2bfloat16_rn(r - __bfloat162float(md));
            p[0][k] = __bfloat16_as_ushort(h), p[1][k] = __bfloat16_as_ushort(md);
            p[parts - 1][k] = __bfloat16_as_ushort(l);
        }
    }
#pragma unroll
    for (int q = 0; q < parts; q++) {
        const uint2 packed = make_uint2(p[q][0] | ((uint32_t)p[q][1] << 16), p[q][2] | ((uint32_t)p[q][3] << 16));
        *reinterpret_cast<uint2 *>(xs + (size_t)(m * parts + q) * a.xs_stride + c) = packed;
    }
}

/* x[m][c] (fp32, global) -> shared parts: FP8 path rows 2m (hi), 2m + 1 (lo)
 * in FP16; BF16 path rows 3m..3m+2 (hi, mid, lo) in BF16. Eight loads per
 * thread go out before any is used: x comes from L2 and this is on the
 * critical path after the PDL wait. */
template <bool FP8>
__device__ void tc_stage_x(const tc_args &a, uint16_t *xs) {
    constexpr int B = 8;
    const int quads = a.M * a.cols / 4;
    const float4 *x4 = reinterpret_cast<const float4 *>(a.x);
    for (int i0 = threadIdx.x; i0 < quads; i0 += B * blockDim.x) {
        float4 v[B];
#pragma unroll
        for (int u = 0; u < B; u++)
            if (i0 + u * (int)blockDim.x < quads) v[u] = x4[i0 + u * blockDim.x];
#pragma unroll
        for (int u = 0; u < B; u++)
            if (i0 + u * (int)blockDim.x < quads) tc_store_x<FP8>(a, xs, i0 + u * blockDim.x, v[u]);
    }
}

__device__ __forceinline__ float tc_epilogue(float v, float up, int mode, float cap) {
    if (mode == G4K_TC_GEGLU) return g4k_gelu_tanh(v) * up;
    if (mode == G4K_TC_SOFTCAP) return cap * tanhf(v / cap);
    return v;
}

/* Lane (g, t)'s B fragment of k-step s from the shared x parts (zero where the
 * lane's column holds no token: xrow < 0). */
template <bool FP8>
__device__ __forceinline__ void tc_x_fragment(const tc_args &a, const uint16_t *xs, int xrow, int s, int t, uint4 (&xb)[2]) {
    constexpr int step_cols = tc_cfg<FP8, G4K_TC_PLAIN>::STEP_COLS;
    xb[0] = xb[1] = make_uint4(0, 0, 0, 0);
    if (xrow < 0) return;
    const uint4 *p = reinterpret_cast<const uint4 *>(xs + (size_t)xrow * a.xs_stride + s * step_cols + (FP8 ? 16 : 8) * t);
    xb[0] = p[0];
    if (FP8) xb[1] = p[1];
}

/* A warp's MMA accumulators -> the sums of its rows: lane (g, t) holds rows g
 * and g + 8 at B columns 2t, 2t + 1 (BF16: token t / 2's parts at 2t..2t+3,
 * added over the lane pair). */
template <bool FP8, int NA>
__device__ __forceinline__ void tc_sums(const float (&acc)[NA][4], float (&v)[NA][2]) {
#pragma unroll
    for (int i = 0; i < NA; i++) {
        v[i][0] = acc[i][0] + acc[i][1], v[i][1] = acc[i][2] + acc[i][3];
        if (!FP8) v[i][0] += __shfl_xor_sync(0xffffffffu, v[i][0], 1), v[i][1] += __shfl_xor_sync(0xffffffffu, v[i][1], 1);
    }
}

/* Writes the outputs of a block's tiles of one group (every thread of the
 * block calls it). kpw == 1: each warp writes its tile's rows; else the kpw warps of a tile
 * add up their sums in shared memory (red) first. */
template <bool FP8, int MODE, int NA>
__device__ __forceinline__ void tc_write(const tc_args &a, float *red, const tc_job &cur, int group, int tile,
                                         const float (&v)[NA][2]) {
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int token = FP8 ? t : t / 2;
    const bool holds = token < a.M && (FP8 || t % 2 == 0);
    if (a.kpw == 1) {
        if (tile < a.n_tiles && holds)
#pragma unroll
            for (int h = 0; h < 2; h++)
                cur.y[(size_t)token * cur.rows + cur.row + g + 8 * h] = tc_epilogue(v[0][h], v[NA - 1][h], MODE, a.cap);
        return;
    }
    const int tiles_per_block = TC_WARPS / a.kpw;
    if (holds)
#pragma unroll
        for (int i = 0; i < NA; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) red[((warp * NA + i) * 16 + g + 8 * h) * a.M + token] = v[i][h];
    __syncthreads();
    for (int o = threadIdx.x; o < tiles_per_block * 16 * a.M; o += blockDim.x) {
        const int ot = o / (16 * a.M), r = (o / a.M) % 16, m = o % a.M, otile = group * tiles_per_block + ot;
        if (otile >= a.n_tiles) continue;
        float sum[NA] = {};
        for (int p = 0; p < a.kpw; p++)
#pragma unroll
            for (int i = 0; i < NA; i++) sum[i] += red[(((ot * a.kpw + p) * NA + i) * 16 + r) * a.M + m];
        const tc_job oj = tc_find(a, otile, 0, 0, FP8, 0);
        oj.y[(size_t)m * oj.rows + oj.row + r] = tc_epilogue(sum[0], sum[NA - 1], MODE, a.cap);
    }
    __syncthreads();
}

#ifdef G4_TRACE
static_assert(G4K_TC_PLAIN == 0 && G4K_TC_GEGLU == 1 && G4K_TC_SOFTCAP == 2, "G4K_TR_GEMV + MODE names the kind");
#endif

template <bool FP8, int MODE>
__global__ void __launch_bounds__(32 * TC_WARPS, 2) gemv_tc_kernel(tc_args a) {
    using C = tc_cfg<FP8, MODE>;
    constexpr int NA = C::NA, P = C::P;
    G4K_TRACE(G4K_TR_GEMV + MODE, a.mat[0].w);
    extern __shared__ uint4 smem4[];
    uint16_t *xs = reinterpret_cast<uint16_t *>(smem4);
    float *red = reinterpret_cast<float *>(xs + (size_t)C::XPARTS * a.M * a.xs_stride); /* [warp][NA][16][M] */
    const int nbc = tc_scale_blocks(a.cols);
    float *scales = red + TC_WARPS * NA * 16 * a.M + (size_t)(threadIdx.x / 32) * NA * nbc; /* this warp's [NA][nbc] */

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    const int tiles_per_block = TC_WARPS / a.kpw, part = warp % a.kpw, tib = warp / a.kpw;
    const int n_groups = (a.n_tiles + tiles_per_block - 1) / tiles_per_block;
    const int n_steps = a.cols / C::STEP_COLS;
    const int s_begin = part * n_steps / a.kpw, s_end = (part + 1) * n_steps / a.kpw;
    /* this lane's B column: which shared x row, or none (zero) */
    int xrow = -1;
    if (FP8 && g < 2 * a.M) xrow = g;
    if (!FP8 && g / 4 < a.M && g % 4 < 3) xrow = (g / 4) * 3 + g % 4;

    uint4 buf[P][NA][2];
    const int stride = a.tiled ? 1024 : 64; /* bytes from one k-step to the next */
    const uint64_t evict_first = g4k_l2_evict_first(); /* weights: L2 is for what is read again */
    auto load = [&](const tc_job &j, int slot, int s) {
#pragma unroll
        for (int i = 0; i < NA; i++) {
            buf[slot][i][0] = g4k_ld_stream_policy(j.lo[i] + (size_t)s * stride, evict_first);
            buf[slot][i][1] = g4k_ld_stream_policy(j.hi[i] + (size_t)s * stride, evict_first);
        }
    };
    auto prologue = [&](const tc_job &j) {
#pragma unroll
        for (int u = 0; u < P; u++)
            if (s_begin + u < s_end) load(j, u, s_begin + u);
    };
    /* FP8: the tile's row of block scales, into L1 before the PDL wait (storing it to shared
     * memory there would hold the warp until it lands, which can be after the previous kernel
     * ends), then into this warp's copy in shared memory after the wait. The k-step loop reads
     * it there: with a global load in the loop, ncu found the warps stalled at the scale's
     * multiply-add for its round trip in ~19 % of samples (perf log, session 13). */
    auto prefetch_scales = [&](const tc_job &j) {
        if (!FP8) return;
#pragma unroll
        for (int i = 0; i < NA; i++)
            for (int c = lane * 32; c < nbc; c += 32 * 32) g4k_prefetch_l1(j.sc[i] + c);
    };
    auto stage_scales = [&](const tc_job &j) {
        if (!FP8) return;
        __syncwarp(); /* the warp is done reading the previous tile's */
#pragma unroll
        for (int i = 0; i < NA; i++)
            for (int c = lane; c < nbc; c += 32) scales[i * nbc + c] = __ldg(j.sc[i] + c);
        __syncwarp();
    };

    int group = blockIdx.x, tile = group * tiles_per_block + tib;
    tc_job job = tc_find(a, tile < a.n_tiles ? tile : 0, g, t, FP8, NA);
    if (tile < a.n_tiles) prologue(job), prefetch_scales(job); /* weights do not depend on the previous kernel */
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next(); /* the grid is resident: the next kernel only gets what this one frees */
    if (tile < a.n_tiles) stage_scales(job);
    tc_stage_x<FP8>(a, xs);
    __syncthreads();

    for (; group < n_groups; group += gridDim.x) {
        tile = group * tiles_per_block + tib;
        float acc[NA][4] = {};
        if (tile < a.n_tiles) {
            for (int s0 = s_begin; s0 < s_end; s0 += P) {
#pragma unroll
                for (int u = 0; u < P; u++) {
                    const int s = s0 + u;
                    if (s >= s_end) break;
                    uint4 xb[2];
                    tc_x_fragment<FP8>(a, xs, xrow, s, t, xb);
#pragma unroll
                    for (int i = 0; i < NA; i++)
                        tc_step<FP8>(acc[i], buf[u][i][0], buf[u][i][1], xb, FP8 ? scales[i * nbc + s / 2] : 1.0f);
                    if (s + P < s_end) load(job, u, s + P);
                }
            }
        }
        float v[NA][2];
        tc_sums<FP8, NA>(acc, v);
        const tc_job cur = job;
        /* the next tile's first loads go out before this one's outputs are written */
        const int next_group = group + gridDim.x, next_tile = next_group * tiles_per_block + tib;
        if (next_group < n_groups && next_tile < a.n_tiles) {
            job = tc_find(a, next_tile, g, t, FP8, NA);
            prologue(job);
            stage_scales(job);
        }
        tc_write<FP8, MODE, NA>(a, red, cur, group, tile, v);
    }
}

static bool tc_disabled(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("G4_GEMV");
        v = e && !strcmp(e, "simt");
    }
    return v;
}

/* Warps per tile: enough warps for ~2 blocks of 8 on every SM, while each
 * keeps at least P k-steps to stream. */
static int pick_kpw(int n_tiles, int n_steps, int P) {
    const int target = 2 * TC_WARPS * g4k_sm_count() * 7 / 8;
    int kpw = 1;
    while (kpw < TC_WARPS && n_tiles * kpw < target && n_steps / (2 * kpw) >= P) kpw *= 2;
    return kpw;
}

template <bool FP8, int MODE>
static int launch_tc(tc_args &a, cudaStream_t s) {
    using C = tc_cfg<FP8, MODE>;
    auto kernel = gemv_tc_kernel<FP8, MODE>;
    const int n_steps = a.cols / C::STEP_COLS;
    a.kpw = pick_kpw(a.n_tiles, n_steps, C::P);
    a.xs_stride = a.cols + 8;
    const size_t smem = (size_t)C::XPARTS * a.M * a.xs_stride * 2 + (size_t)TC_WARPS * C::NA * 16 * a.M * 4 +
                        (FP8 ? (size_t)TC_WARPS * C::NA * tc_scale_blocks(a.cols) * 4 : 0);
    if (smem > 200 * 1024) return 1;
    static size_t smem_set = 48 * 1024;
    if (smem > smem_set) {
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem) != cudaSuccess)
            return 1;
        smem_set = smem;
    }
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, 32 * TC_WARPS, smem) != cudaSuccess ||
        per_sm < 1)
        return 1;
    const int tiles_per_block = TC_WARPS / a.kpw, groups = (a.n_tiles + tiles_per_block - 1) / tiles_per_block;
    if (per_sm > 2) per_sm = 2; /* 2 x 8 warps were faster than 1 x 8 (perf log) */
    const int resident = per_sm * g4k_sm_count();
    g4k_launch(kernel, dim3(groups < resident ? groups : resident), dim3(32 * TC_WARPS), smem, s, a);
    return 0;
}

static int launch_mode(tc_args &a, bool fp8, g4k_tc_mode mode, cudaStream_t s) {
    switch (mode) {
    case G4K_TC_GEGLU: return fp8 ? launch_tc<true, G4K_TC_GEGLU>(a, s) : launch_tc<false, G4K_TC_GEGLU>(a, s);
    case G4K_TC_SOFTCAP: return fp8 ? launch_tc<true, G4K_TC_SOFTCAP>(a, s) : launch_tc<false, G4K_TC_SOFTCAP>(a, s);
    default: return fp8 ? launch_tc<true, G4K_TC_PLAIN>(a, s) : launch_tc<false, G4K_TC_PLAIN>(a, s);
    }
}

/* Tokens per launch: what the B columns hold (4 FP8 / 2 BF16), and x's parts within shared memory. */
static int tokens_per_pass(bool fp8, int cols) {
    const int per_token = (fp8 ? 2 : 3) * (cols + 8) * 2, fit = 160 * 1024 / per_token, most = fp8 ? 4 : 2;
    return fit < most ? fit : most;
}

int g4k_gemv_tc(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4k_tc_mode mode,
                float cap, cudaStream_t s) {
    const bool fp8 = w[0].fp8, tiled = w[0].tiled;
    const int per_pass = tokens_per_pass(fp8, w[0].cols);
    /* row-major matrices have the CUDA-core kernels to fall back on; tiled ones take passes of tokens */
    if (tc_disabled() && !tiled) return 1;
    if (M < 1 || per_pass < 1 || (M > per_pass && !tiled) || n_mats < 1 || n_mats > 3) return 1;
    if (w[0].cols % (fp8 ? 64 : 32) != 0) return 1;
    if (mode == G4K_TC_SOFTCAP && !(cap > 0.0f)) mode = G4K_TC_PLAIN;
    tc_args a = {};
    a.n_mats = n_mats, a.cols = w[0].cols, a.cap = cap, a.tiled = tiled;
    int rows = 0;
    for (int i = 0; i < n_mats; i++) {
        if (w[i].rows % 16 || w[i].fp8 != w[0].fp8 || w[i].cols != w[0].cols || w[i].tiled != w[0].tiled)
            return 1;
        a.mat[i] = {static_cast<const uint8_t *>(w[i].data), w[i].scales, w[i].rows, y[i]};
        rows += w[i].rows;
    }
    if (mode == G4K_TC_GEGLU) { /* tiles over gate; up rides along */
        if (n_mats != 2 || w[1].rows != w[0].rows) return 1;
        rows = w[0].rows;
    }
    a.n_tiles = rows / 16;
    for (int m0 = 0; m0 < M; m0 += per_pass) {
        tc_args pass = a;
        pass.M = M - m0 < per_pass ? M - m0 : per_pass;
        pass.x = x + (size_t)m0 * a.cols;
        for (int i = 0; i < n_mats; i++)
            if (pass.mat[i].y) pass.mat[i].y += (size_t)m0 * w[i].rows;
        if (launch_mode(pass, fp8, mode, s)) return m0 ? -1 : 1;
    }
    return 0;
}
