/* Device pieces shared by the decode GEMV kernels on tensor cores: one
 * launch per projection (gemv_tc.cu) and a layer's projections chained in one
 * persistent launch (gemv_chain.cu). gemv_tc.cu's header comment explains the
 * fragment layout and the precision. */
#ifndef G4_CUDA_GEMV_TC_CUH
#define G4_CUDA_GEMV_TC_CUH

#include "cuda/common.cuh"
#include "cuda/gemv_tc.h"

#define TC_WARPS 8 /* warps per block */

/* The matrices of one GEMV (up to 3 with the same cols and layout: q, k, v;
 * GeGLU: gate and up), as both the per-launch and the chained kernel take them. */
struct tc_mats {
    gemv_mat mat[3];
    int n_mats;
    int cols;
    int tiled; /* the matrices' layout: 1 = 16-row tiles (kernels.h), 0 = row-major */
};

template <bool FP8, int MODE>
struct tc_cfg {
    static constexpr int NA = MODE == G4K_TC_GEGLU ? 2 : 1; /* A tiles per warp (gate and up) */
    static constexpr int P = NA == 2 ? 4 : 8;                /* k-steps of loads in flight per warp */
    static constexpr int STEP_COLS = FP8 ? 64 : 32;          /* 16 bytes per lane per row */
    static constexpr int BPT = FP8 ? 2 : 4;                  /* B columns per token */
    static constexpr int XPARTS = FP8 ? 2 : 3;               /* parts of x kept in shared memory */
};

/* One warp's rows: the pointers already at lane (g, t)'s first bytes. */
struct tc_job {
    const uint8_t *lo[2], *hi[2]; /* row g and row g + 8 of each A tile */
    const float *sc[2];           /* the tile's row of block scales (FP8) */
    float *y;                     /* the output matrix (GeGLU: gate's) */
    int row, rows;                /* first row of the tile in it, and its rows */
};

__device__ __forceinline__ tc_job tc_find(const tc_mats &a, int tile, int g, int t, bool fp8, int n_a) {
    int row = tile * 16, mi = 0;
    if (a.n_mats > 1 && row >= a.mat[0].rows) { /* constant indices: the parameters stay out of local memory */
        row -= a.mat[0].rows, mi = 1;
        if (a.n_mats > 2 && row >= a.mat[1].rows) row -= a.mat[1].rows, mi = 2;
    }
    const gemv_mat &m = mi == 0 ? a.mat[0] : mi == 1 ? a.mat[1] : a.mat[2];
    const size_t rowbytes = (size_t)a.cols * (fp8 ? 1 : 2);
    const size_t nbc = (size_t)(a.cols + 127) / 128;
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
__device__ __forceinline__ void tc_store_x(int cols, int xs_stride, uint16_t *xs, int i, float4 v4) {
    constexpr int parts = FP8 ? 2 : 3;
    const int m = i / (cols / 4), c = (i % (cols / 4)) * 4;
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
        *reinterpret_cast<uint2 *>(xs + (size_t)(m * parts + q) * xs_stride + c) = packed;
    }
}

/* x[m][c] (fp32, global) -> shared parts: FP8 path rows 2m (hi), 2m + 1 (lo)
 * in FP16; BF16 path rows 3m..3m+2 (hi, mid, lo) in BF16. Eight loads
 * per thread go out before any is used: x comes from L2 and this is on the
 * critical path after the PDL wait. */
template <bool FP8>
__device__ void tc_stage_x(const float *x, int M, int cols, int xs_stride, uint16_t *xs) {
    constexpr int B = 8;
    const int quads = M * cols / 4;
    const float4 *x4 = reinterpret_cast<const float4 *>(x);
    for (int i0 = threadIdx.x; i0 < quads; i0 += B * blockDim.x) {
        float4 v[B];
#pragma unroll
        for (int u = 0; u < B; u++)
            if (i0 + u * (int)blockDim.x < quads) v[u] = __ldcg(x4 + i0 + u * blockDim.x); /* L2: another block may have written it */
#pragma unroll
        for (int u = 0; u < B; u++)
            if (i0 + u * (int)blockDim.x < quads) tc_store_x<FP8>(cols, xs_stride, xs, i0 + u * blockDim.x, v[u]);
    }
}

__device__ __forceinline__ float tc_epilogue(float v, float up, int mode, float cap) {
    if (mode == G4K_TC_GEGLU) return g4k_gelu_tanh(v) * up;
    if (mode == G4K_TC_SOFTCAP) return cap * tanhf(v / cap);
    return v;
}

/* Warps per tile: enough warps for ~2 blocks of 8 on every SM, while each
 * keeps at least P k-steps to stream. */
static inline int tc_pick_kpw(int n_tiles, int n_steps, int P) {
    const int target = 2 * TC_WARPS * g4k_sm_count() * 7 / 8;
    int kpw = 1;
    while (kpw < TC_WARPS && n_tiles * kpw < target && n_steps / (2 * kpw) >= P) kpw *= 2;
    return kpw;
}

#endif
