/* Prefill GEMM (M > 8 tokens) with the weights kept FP8 (or BF16) in HBM:
 * the entry points and the mma.sync kernel. For FP8 weights with K % 128 == 0
 * (the 12B's shapes) gemm_run hands over to the Hopper wgmma kernel in
 * gemm_wgmma.cu (same numerics); this kernel serves BF16 and odd shapes, and
 * every shape under G4_GEMM=mma.
 *
 *   y[m][r] = sum_k x[m][k] * code[r][k] * scale[r/128][k/128]
 *
 * on tensor cores (mma.sync m16n8k16, FP16 inputs, FP32 accumulation).
 *
 * Numerics ("exact weight-only"): every E4M3 code is exactly an FP16 value, so
 * the weight side is exact; the block scale is applied per 128-wide K block to
 * the FP32 accumulators (see "scales" below), never to the FP16 operands. The
 * only rounding beyond FP32 accumulation is x -> FP16 (11 significant bits,
 * unit roundoff 2^-11, about 2e-4 rms relative per element), done once per call
 * by a small pre-pass (x_to_f16) that also clamps to +-65504 and zero-pads K to
 * a multiple of 64. Expected ||y - ref|| / ||ref|| ~ 2e-4 on random data.
 * BF16 weights (g4_dmatrix.fp8 == 0) are converted to FP16 in registers: exact
 * for |w| in [6.1e-5, 65504]; smaller values become FP16 subnormals (absolute
 * error <= 3e-8), larger ones would overflow (never seen in LLM weights).
 *
 * Roles: the weight rows are the MMA "M" side (m16 = 16 weight rows) and the
 * tokens are the MMA "N" side (n8 = 8 tokens), so the token tile can follow M
 * in steps of 16 (BT = 32, 64, 128 or 160 tokens; 145 tokens fit one 160 tile).
 *
 * CTA: 256 threads = 8 warps as 4 (weight rows) x 2 (tokens); CTA tile is
 * 128 weight rows x BT tokens, warp tile 32 rows x BT/2 tokens (2 x NT8 MMA
 * tiles). The 128 weight rows are two 64-row "segments": for a plain GEMM the
 * two halves of a 128-row block of one matrix; for GeGLU, rows r0..r0+63 of
 * gate and the same rows of up, so that gelu(gate)*up is formed in the
 * epilogue through shared memory (no scratch, no extra launch). A 64-row
 * segment starting at a multiple of 64 lies inside one 128-row scale block, so
 * each warp sees one scale per 128-wide K block (warp-uniform).
 *
 * K loop: 64-wide stages, STAGES-deep cp.async pipeline (16-byte copies, zero
 * fill for rows past N / tokens past M / k past K), one __syncthreads per
 * stage. The weight codes are converted to FP16 in registers right before the
 * MMA (cvt.rn.f16x2.e4m3x2, one instruction per 2 codes); each code is
 * converted by the 2 warps that share its rows, i.e. 4 conversions per
 * 2*NT8 MMAs per thread.
 *
 * K permutation: a dot product does not care about the order of k, so within
 * each 16-wide k group thread t of a quad takes the physical k = 4t..4t+3 as
 * the MMA's logical k = {2t, 2t+1, 2t+8, 2t+9}. Then one 32-bit shared load
 * gives a thread the 4 codes of a weight row (-> a0/a2 or a1/a3 after two
 * conversions) and one 64-bit shared load gives the 4 activations of a token
 * (-> b0/b1) with no shuffling.
 *
 * Swizzles (bank-conflict-free shared loads, cp.async writes 16-byte chunks):
 * - FP8 weights: a stage row is 64 bytes = 4 chunks of 16 (one k16 group
 *   each); chunk c of row r is stored at c ^ ((r >> 1) & 3). A warp's 32-bit
 *   load touches rows g = 0..7, group j: (r & 1, j ^ ((r >> 1) & 3)) are 8
 *   distinct 16-byte slots of a 128-byte line.
 * - FP16 activations (and BF16 weights): a stage row is 128 bytes = 4 k16
 *   groups of 32 bytes; group j of row r is stored at j ^ (r & 3). A 64-bit
 *   load is served per half warp (rows g = 0..3 or 4..7): 4 distinct 32-byte
 *   slots.
 *
 * Scales: the accumulators hold sum_kb P_kb * s_kb / s_cur, where s_cur is the
 * scale of the latest K block; when the block changes, acc *= s_cur / s_new
 * (one FMUL per accumulator per 128 K, same cost as DeepGEMM's two-level
 * promotion, but half the accumulator registers). The epilogue multiplies by
 * s_cur. A block whose scale is 0 contributes exactly 0 and is skipped. Each
 * rescale adds one FP32 rounding (<= 120 of them at K = 15360: < 1e-5).
 *
 * Split K: when the tiles alone do not fill the GPU (e.g. N = 3840 at M = 145:
 * 30 CTAs), the K blocks are split over gridDim.z; partial results go to a
 * scratch [split][M][cols] and a small kernel sums them in a fixed order
 * (deterministic) and applies GeGLU if asked.
 *
 * Expected speed (not yet measured; H100, mma.sync reaches roughly 60% of the
 * 989 TFLOP/s dense FP16 peak): M = 145, N = 15360, K = 3840 runs as 120 CTAs
 * of 128 rows x 160 tokens (one wave on 132 SMs, 91% of tokens useful), about
 * 45 us -> 300-400 TFLOP/s effective; M = 1024 (BT = 128, 2 CTAs per SM, 3.6
 * waves) similar or better; N = 3840, K = 15360 at M = 145 splits K in 4
 * (+~5 us for the partials). Weight traffic stays under half of HBM bandwidth.
 * If it falls short: F2FP (FP8 -> FP16) throughput and the single-CTA-per-SM
 * latency at BT = 160 are the first suspects; the next step is wgmma with the
 * converted weights as the register A operand (m64nBTk16, BT up to 256 tokens).
 *
 * Scratch buffers (FP16 copy of x, split-K partials) are process-wide and grow
 * on demand with cudaMalloc after synchronizing the stream: the launchers are
 * not thread-safe, not for concurrent streams, and a call that must grow a
 * buffer cannot be captured in a CUDA graph (call once outside capture first).
 */
#include <stdio.h>

#include <stdlib.h>
#include <string.h>

#include "cuda/common.cuh"
#include "cuda/gemm_common.cuh"
#include "cuda/gemm_wgmma.h"
#include "cuda/kernels.h"

#define GEMM_THREADS 256
#define GEMM_BK 64          /* k per pipeline stage */
#define GEMM_ROWS 128       /* weight rows per CTA (two 64-row segments) */

enum { EPI_PLAIN = 0, EPI_GEGLU = 1 };

struct gemm_seg {
    const uint8_t *w;       /* [rows][K] codes (1 byte) or BF16 (2 bytes) */
    const float *scales;    /* FP8: [ceil(rows/128)][kblocks] */
    int rows;               /* valid rows of the matrix */
    int row0;               /* first row of this segment in the CTA's row tile 0 */
    int row_step;           /* row0 of tile t = row0 + t * row_step */
    float *out;             /* out[m * ld + row] */
    int ld;
};

struct gemm_params {
    gemm_seg seg[2];
    const __half *xh;       /* [M][Kp] FP16, zero beyond K */
    int M, K, Kp, kblocks;
    int kb_per_split_base, kb_split_rem; /* split s gets base + (s < rem) blocks */
    size_t split_stride;    /* floats between split partial outputs */
};

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/* 16-byte async copy global -> shared; bytes < 16 zero-fill the rest (0: all zeros). */
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

__device__ __forceinline__ uint32_t lds32(uint32_t a) {
    uint32_t v;
    asm volatile("ld.shared.b32 %0, [%1];\n" : "=r"(v) : "r"(a));
    return v;
}
__device__ __forceinline__ void lds64(uint32_t a, uint32_t &v0, uint32_t &v1) {
    asm volatile("ld.shared.v2.b32 {%0, %1}, [%2];\n" : "=r"(v0), "=r"(v1) : "r"(a));
}

/* Four E4M3 codes -> (c0, c1) and (c2, c3) as FP16 pairs (exact). */
__device__ __forceinline__ void e4m3x4_to_f16x2x2(uint32_t w, uint32_t &lo, uint32_t &hi) {
    asm("{\n\t.reg .b16 l, h;\n\tmov.b32 {l, h}, %2;\n\t"
        "cvt.rn.f16x2.e4m3x2 %0, l;\n\tcvt.rn.f16x2.e4m3x2 %1, h;\n\t}\n"
        : "=r"(lo), "=r"(hi)
        : "r"(w));
}

/* Two BF16 -> two FP16 (through FP32; round to nearest). */
__device__ __forceinline__ uint32_t bf16x2_to_f16x2(uint32_t w) {
    const float a = __uint_as_float(w << 16), b = __uint_as_float(w & 0xffff0000u);
    uint32_t r;
    asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(b), "f"(a)); /* hi = b, lo = a */
    return r;
}

__device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* Pipeline depth: 4 stages when two CTAs share an SM (<= 128 registers and
 * <= ~113 KB each: FP8 with BT <= 128), else as many as fit in ~200 KB (max 8):
 * with one CTA per SM, deeper prefetch is what hides the HBM latency. */
template <int NT8, int WB>
struct gemm_cfg {
    static constexpr int STAGE = 128 * 64 * WB + 16 * NT8 * 64 * 2;
    static constexpr int MINB = (NT8 <= 8 && WB == 1) ? 2 : 1;
    static constexpr int STAGES = MINB == 2 ? 4 : (200 * 1024 / STAGE > 8 ? 8 : 200 * 1024 / STAGE);
    static constexpr int SMEM = STAGES * STAGE;
};

/* NT8: n8 token tiles per warp (BT = 16 * NT8). WB: weight bytes (1 FP8, 2 BF16).
 * ALIGNED: rows of W start 16-byte aligned (K * WB % 16 == 0) so cp.async can
 * copy them; otherwise the weights are loaded synchronously (tiny test models). */
template <int NT8, int WB, bool ALIGNED, int EPI>
__global__ void __launch_bounds__(GEMM_THREADS, (gemm_cfg<NT8, WB>::MINB)) gemm_kernel(const gemm_params p) {
    constexpr int BT = 16 * NT8;
    constexpr int W_ROW = GEMM_BK * WB;            /* bytes per weight row per stage */
    constexpr int W_STAGE = GEMM_ROWS * W_ROW;
    constexpr int X_STAGE = BT * GEMM_BK * 2;
    constexpr int STAGE = W_STAGE + X_STAGE;
    constexpr int GEMM_STAGES = gemm_cfg<NT8, WB>::STAGES;
    static_assert(STAGE == gemm_cfg<NT8, WB>::STAGE, "stage size");
    extern __shared__ __align__(128) uint8_t smem[];

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int wm = warp & 3, wt = warp >> 2;       /* warp: rows wm*32.., tokens wt*BT/2.. */
    const int tok0 = blockIdx.x * BT;
    const int tile = blockIdx.y;

    /* this split's K range, in 128-wide blocks */
    const int split = blockIdx.z;
    const int kb_begin = split * p.kb_per_split_base + min(split, p.kb_split_rem);
    const int kb_end = kb_begin + p.kb_per_split_base + (split < p.kb_split_rem ? 1 : 0);
    const int k_begin = kb_begin * 128;
    const int k_end = min(kb_end * 128, p.K);
    const int n_it = (k_end - k_begin + GEMM_BK - 1) / GEMM_BK;

    const uint32_t sbase = smem_u32(smem);

    /* ---- loader: stage slot <- k0 .. k0+63 ----
     * Thread tid copies weight chunks c = tid + 256 i (row c / WCH, chunk c % WCH)
     * and activation chunks c = tid + 256 i (row c / 8, chunk c % 8). The chunk
     * column and the swizzle bits depend on tid only, so the source pointers,
     * destination offsets and row checks are computed once, here. */
    constexpr int WCH = W_ROW / 16;                  /* 16-byte chunks per weight row: 4 (FP8) or 8 (BF16) */
    constexpr int WI = GEMM_ROWS * WCH / GEMM_THREADS; /* weight chunks per thread: 2 or 4 */
    constexpr int XI = (BT * 8 + GEMM_THREADS - 1) / GEMM_THREADS;
    const uint8_t *w_src[WI];
    uint32_t w_ok = 0;                               /* bit i: row of chunk i is < rows */
    const int w_ch = tid % WCH, w_r0 = tid / WCH;
    const uint32_t w_dst0 = w_r0 * W_ROW +
                            (WB == 1 ? ((w_ch ^ ((w_r0 >> 1) & 3)) << 4)
                                     : ((((w_ch >> 1) ^ (w_r0 & 3)) << 1 | (w_ch & 1)) << 4));
#pragma unroll
    for (int i = 0; i < WI; i++) {
        const int r = w_r0 + i * (GEMM_THREADS / WCH); /* same (r >> 1) & 3 and r & 3 as w_r0 */
        const gemm_seg &sg = p.seg[(i * (GEMM_THREADS / WCH)) / 64]; /* = r >> 6, known at compile time */
        const int grow = sg.row0 + tile * sg.row_step + (r & 63);
        if (grow < sg.rows) w_ok |= 1u << i;
        w_src[i] = sg.w + ((size_t)(grow < sg.rows ? grow : 0) * p.K + w_ch * (16 / WB)) * WB;
    }
    const int x_r0 = tid >> 3, x_ch = tid & 7;
    const uint32_t x_dst0 = W_STAGE + x_r0 * 128 + ((((x_ch >> 1) ^ (x_r0 & 3)) << 1 | (x_ch & 1)) << 4);
    const __half *x_src0 = p.xh + (size_t)(tok0 + x_r0) * p.Kp + x_ch * 8;
    const int x_rows = p.M - tok0 - x_r0;            /* chunk i is valid if 32 i < x_rows */

    auto load_stage = [&](int slot, int k0) {
        const uint32_t sdst = sbase + slot * STAGE;
#pragma unroll
        for (int i = 0; i < WI; i++) {
            const uint32_t dst = sdst + w_dst0 + i * (GEMM_THREADS / WCH) * W_ROW;
            const int kc = k0 + w_ch * (16 / WB);    /* first k of the chunk */
            const uint8_t *src = w_src[i] + (size_t)k0 * WB;
            const bool row_ok = (w_ok >> i) & 1;
            if (ALIGNED) {
                const bool ok = row_ok && kc < k_end; /* K % (16/WB) == 0: whole chunk in or out */
                cp_async16(dst, ok ? src : w_src[i], ok ? 16 : 0);
            } else { /* rows not 16-byte aligned: synchronous byte loads */
                uint32_t v[4] = {0, 0, 0, 0};
                if (row_ok) {
                    uint8_t *vb = reinterpret_cast<uint8_t *>(v);
                    const int n = min(16, (k_end - kc) * WB);
                    for (int b = 0; b < n; b++) vb[b] = __ldg(src + b);
                }
                asm volatile("st.shared.v4.b32 [%0], {%1,%2,%3,%4};\n" ::"r"(dst), "r"(v[0]), "r"(v[1]), "r"(v[2]),
                             "r"(v[3]));
            }
        }
        /* activations: BT rows x 128 bytes; Kp % 64 == 0 so a valid row is always in bounds */
#pragma unroll
        for (int i = 0; i < XI; i++) {
            if ((BT * 8) % GEMM_THREADS != 0 && tid + i * GEMM_THREADS >= BT * 8) break;
            const uint32_t dst = sdst + x_dst0 + i * 32 * 128;
            const bool ok = 32 * i < x_rows;
            const __half *src = x_src0 + (size_t)i * 32 * p.Kp + k0;
            cp_async16(dst, ok ? (const void *)src : (const void *)p.xh, ok ? 16 : 0);
        }
    };

    /* warp's segment: rows wm*32 .. +31 lie in segment wm >> 1 */
    const gemm_seg &seg = p.seg[wm >> 1];
    const int seg_row = seg.row0 + tile * seg.row_step; /* global row of the segment's first row */
    const bool seg_active = seg_row < seg.rows;
    const float *srow = (WB == 1 && seg_active) ? seg.scales + (size_t)(seg_row / 128) * p.kblocks : nullptr;

    float acc[2][NT8][4];
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int n = 0; n < NT8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][n][e] = 0.0f;
    float s_cur = WB == 1 ? 0.0f : 1.0f;
    bool skip = !seg_active;

    /* per-thread shared offsets (the swizzle terms depend only on g) */
    uint32_t w_off[2], x_off[NT8];
#pragma unroll
    for (int i = 0; i < 2; i++) w_off[i] = (wm * 32 + i * 16 + g) * W_ROW + (WB == 1 ? 4 * t : 8 * t);
#pragma unroll
    for (int n = 0; n < NT8; n++) x_off[n] = (wt * (BT / 2) + n * 8 + g) * 128 + 8 * t;
    const int wsw = WB == 1 ? ((g >> 1) & 3) : (g & 3); /* same for rows g and g + 8 */
    const int xsw = g & 3;

#pragma unroll
    for (int s = 0; s < GEMM_STAGES - 1; s++) {
        if (s < n_it) load_stage(s, k_begin + s * GEMM_BK);
        cp_async_commit();
    }
    float s_next = (WB == 1 && seg_active) ? __ldg(srow + kb_begin) : 1.0f;

    for (int it = 0; it < n_it; it++) {
        cp_async_wait<GEMM_STAGES - 2>();
        __syncthreads(); /* stage `it` visible to all; slot of stage it-1 free for reuse */
        {
            const int nx = it + GEMM_STAGES - 1;
            if (nx < n_it) load_stage(nx % GEMM_STAGES, k_begin + nx * GEMM_BK);
            cp_async_commit();
        }
        const int k0 = k_begin + it * GEMM_BK;
        if (WB == 1 && seg_active && (k0 & 127) == 0) { /* new 128-wide K block */
            const float s = s_next;
            const int kb = k0 >> 7;
            if (kb + 1 < kb_end) s_next = __ldg(srow + kb + 1);
            skip = s == 0.0f;
            if (!skip && s != s_cur) {
                const float r = s_cur / s;
#pragma unroll
                for (int i = 0; i < 2; i++)
#pragma unroll
                    for (int n = 0; n < NT8; n++)
#pragma unroll
                        for (int e = 0; e < 4; e++) acc[i][n][e] *= r;
                s_cur = s;
            }
        }
        if (skip) continue;
        const uint32_t wst = sbase + (it % GEMM_STAGES) * STAGE;
        const uint32_t xst = wst + W_STAGE;
#pragma unroll
        for (int j = 0; j < GEMM_BK / 16; j++) {
            uint32_t a[2][4];
#pragma unroll
            for (int i = 0; i < 2; i++) {
                if (WB == 1) {
                    const uint32_t base = wst + w_off[i] + ((j ^ wsw) << 4);
                    const uint32_t lo = lds32(base), hi = lds32(base + 8 * W_ROW); /* rows g, g+8 */
                    e4m3x4_to_f16x2x2(lo, a[i][0], a[i][2]);
                    e4m3x4_to_f16x2x2(hi, a[i][1], a[i][3]);
                } else {
                    const uint32_t base = wst + w_off[i] + ((j ^ wsw) << 5);
                    uint32_t l0, l1, h0, h1;
                    lds64(base, l0, l1);
                    lds64(base + 8 * W_ROW, h0, h1);
                    a[i][0] = bf16x2_to_f16x2(l0), a[i][2] = bf16x2_to_f16x2(l1);
                    a[i][1] = bf16x2_to_f16x2(h0), a[i][3] = bf16x2_to_f16x2(h1);
                }
            }
#pragma unroll
            for (int n = 0; n < NT8; n++) {
                uint32_t b0, b1;
                lds64(xst + x_off[n] + ((j ^ xsw) << 5), b0, b1);
                mma16816(acc[0][n], a[0], b0, b1);
                mma16816(acc[1][n], a[1], b0, b1);
            }
        }
    }

    /* ---- epilogue ---- */
    const int row_l = (wm & 1) * 32 + g; /* row within the segment, + i*16 (+8) */
    if (EPI == EPI_GEGLU) {
        /* up warps (wm 2, 3) hand their scaled results to the gate warps (wm 0, 1) with the same lane layout */
        cp_async_wait<0>();
        __syncthreads();
        float *xch = reinterpret_cast<float *>(smem);
        const int pair = (wm & 1) * 2 + wt; /* 0..3 */
        if (wm >= 2) {
#pragma unroll
            for (int i = 0; i < 2; i++)
#pragma unroll
                for (int n = 0; n < NT8; n++)
#pragma unroll
                    for (int e = 0; e < 4; e++) xch[(((i * NT8 + n) * 4 + e) * 4 + pair) * 32 + lane] = acc[i][n][e] * s_cur;
        }
        __syncthreads();
        if (wm >= 2 || !seg_active) return;
#pragma unroll
        for (int i = 0; i < 2; i++)
#pragma unroll
            for (int n = 0; n < NT8; n++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int row = seg_row + row_l + i * 16 + (e >> 1) * 8;
                    const int m = tok0 + wt * (BT / 2) + n * 8 + 2 * t + (e & 1);
                    if (row < seg.rows && m < p.M) {
                        const float u = xch[(((i * NT8 + n) * 4 + e) * 4 + pair) * 32 + lane];
                        seg.out[(size_t)m * seg.ld + row] = g4k_gelu_tanh(acc[i][n][e] * s_cur) * u;
                    }
                }
        return;
    }
    if (!seg_active) return;
    float *out = seg.out + (size_t)split * p.split_stride;
#pragma unroll
    for (int i = 0; i < 2; i++)
#pragma unroll
        for (int n = 0; n < NT8; n++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int row = seg_row + row_l + i * 16 + (e >> 1) * 8;
                const int m = tok0 + wt * (BT / 2) + n * 8 + 2 * t + (e & 1);
                if (row < seg.rows && m < p.M) out[(size_t)m * seg.ld + row] = acc[i][n][e] * s_cur;
            }
}

/* xh[m][k] = fp16(clamp(x[m][k], +-65504)) for k < K, 0 for K <= k < Kp (NaN stays NaN). */
__global__ void x_to_f16(__half *xh, const float *x, int M, int K, int Kp) {
    const size_t total = (size_t)M * (Kp / 2);
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        const int m = (int)(i / (Kp / 2)), k = (int)(i % (Kp / 2)) * 2;
        float v[2];
#pragma unroll
        for (int e = 0; e < 2; e++) {
            float f = k + e < K ? x[(size_t)m * K + k + e] : 0.0f;
            f = f > 65504.0f ? 65504.0f : (f < -65504.0f ? -65504.0f : f);
            v[e] = f;
        }
        reinterpret_cast<__half2 *>(xh)[i] = __floats2half2_rn(v[0], v[1]);
    }
}

/* ---------------- host side ---------------- */

static g4k_scratch g_xh, g_ws; /* x in FP16; split-K partial sums */

/* Frees the scratch (the CUDA backend calls it when it is freed). */
extern "C" void g4k_gemm_release(void) {
    g4k_gemm_wgmma_release();
    cudaDeviceSynchronize();
    g4k_scratch_free(&g_xh);
    g4k_scratch_free(&g_ws);
}

template <int NT8, int WB, bool AL, int EPI>
static void launch_t(const gemm_params &p, dim3 grid, cudaStream_t s) {
    constexpr int smem = gemm_cfg<NT8, WB>::SMEM;
    static_assert(EPI != EPI_GEGLU || smem >= 2 * NT8 * 4 * 4 * 32 * 4, "GeGLU exchange must fit");
    static bool attr_set = false; /* per instantiation */
    if (!attr_set) {
        cudaFuncSetAttribute(gemm_kernel<NT8, WB, AL, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        attr_set = true;
    }
    gemm_kernel<NT8, WB, AL, EPI><<<grid, GEMM_THREADS, smem, s>>>(p);
}

template <int WB, bool AL, int EPI>
static void launch_nt(int nt8, const gemm_params &p, dim3 grid, cudaStream_t s) {
    switch (nt8) {
    case 2: launch_t<2, WB, AL, EPI>(p, grid, s); break;
    case 4: launch_t<4, WB, AL, EPI>(p, grid, s); break;
    case 8: launch_t<8, WB, AL, EPI>(p, grid, s); break;
    default: launch_t<10, WB, AL, EPI>(p, grid, s); break;
    }
}

/* gate == NULL: plain y = x W^T; else GeGLU with W = gate, U = up. */
static void gemm_run(const g4_dmatrix *w, const g4_dmatrix *up, float *y, const float *x, int M, cudaStream_t s) {
    if (M <= 0 || w->rows <= 0) return;
    /* G4_GEMM=mma: this file's mma.sync kernel for every shape (else wgmma where it applies); read on
     * every call so that a benchmark can compare both in one process */
    const char *env = getenv("G4_GEMM");
    /* tiled weights (kernels.h) are the wgmma kernel's alone, whatever G4_GEMM says */
    const bool tiled = w->tiled;
    if ((tiled || !(env && !strcmp(env, "mma"))) && g4k_gemm_wgmma(w, up, y, x, M, s) <= 0) return;
    if (tiled) {
        fprintf(stderr, "g4k_gemm: tiled %d x %d matrix refused by the wgmma kernel; not computed\n", w->rows, w->cols);
        return;
    }
    const int N = w->rows, K = w->cols, WB = w->fp8 ? 1 : 2;
    const bool geglu = up != nullptr;
    const int Kp = (K + 63) / 64 * 64;
    if (g4k_scratch_grow(&g_xh, (size_t)M * Kp * sizeof(__half), s, "g4k_gemm")) return;
    {
        const size_t pairs = (size_t)M * Kp / 2;
        const int blocks = (int)((pairs + 255) / 256 < 4096 ? (pairs + 255) / 256 : 4096);
        x_to_f16<<<blocks, 256, 0, s>>>(static_cast<__half *>(g_xh.p), x, M, K, Kp);
    }
    /* token tile: the fewest padded tokens, larger tile on ties */
    const bool aligned = (K * WB) % 16 == 0;
    static const int nts[4] = {10, 8, 4, 2};
    int nt8 = 4;
    if (aligned) {
        long best = -1;
        for (int i = 0; i < 4; i++) {
            const int bt = 16 * nts[i];
            const long pad = (long)(M + bt - 1) / bt * bt;
            if (best < 0 || pad < best) best = pad, nt8 = nts[i];
        }
    }
    const int BT = 16 * nt8;
    const int tok_tiles = (M + BT - 1) / BT;
    const int row_tiles = geglu ? (N + 63) / 64 : (N + 127) / 128;
    const int kblocks = (K + 127) / 128;
    /* split K when the tiles leave most SMs idle; each split keeps >= 2 K blocks */
    const int tiles = tok_tiles * row_tiles;
    int splits = 1;
    if (tiles * 2 <= g4k_sm_count()) {
        splits = g4k_sm_count() / tiles;
        if (splits > kblocks / 2) splits = kblocks / 2;
        if (splits > 16) splits = 16;
        if (splits < 1) splits = 1;
    }
    gemm_params p = {};
    p.xh = static_cast<const __half *>(g_xh.p);
    p.M = M, p.K = K, p.Kp = Kp, p.kblocks = kblocks;
    p.kb_per_split_base = kblocks / splits, p.kb_split_rem = kblocks % splits;
    float *out = y;
    int ld = N;
    if (splits > 1) {
        ld = geglu ? 2 * N : N;
        p.split_stride = (size_t)M * ld;
        if (g4k_scratch_grow(&g_ws, (size_t)splits * p.split_stride * sizeof(float), s, "g4k_gemm")) return;
        out = static_cast<float *>(g_ws.p);
    }
    const g4_dmatrix *m1 = geglu ? up : w;
    p.seg[0] = {static_cast<const uint8_t *>(w->data), w->scales, N, 0, geglu ? 64 : 128, out, ld};
    p.seg[1] = {static_cast<const uint8_t *>(m1->data), m1->scales, N, geglu ? 0 : 64, geglu ? 64 : 128,
                geglu ? out + (splits > 1 ? N : 0) : out, ld};
    const dim3 grid(tok_tiles, row_tiles, splits);
    const bool fused_geglu = geglu && splits == 1;
    if (WB == 1) {
        if (aligned) fused_geglu ? launch_nt<1, true, EPI_GEGLU>(nt8, p, grid, s) : launch_nt<1, true, EPI_PLAIN>(nt8, p, grid, s);
        else fused_geglu ? launch_t<4, 1, false, EPI_GEGLU>(p, grid, s) : launch_t<4, 1, false, EPI_PLAIN>(p, grid, s);
    } else {
        if (aligned) fused_geglu ? launch_nt<2, true, EPI_GEGLU>(nt8, p, grid, s) : launch_nt<2, true, EPI_PLAIN>(nt8, p, grid, s);
        else fused_geglu ? launch_t<4, 2, false, EPI_GEGLU>(p, grid, s) : launch_t<4, 2, false, EPI_PLAIN>(p, grid, s);
    }
    if (splits > 1) {
        const size_t total = (size_t)M * N;
        const int blocks = (int)((total + 255) / 256 < 8192 ? (total + 255) / 256 : 8192);
        splitk_reduce<<<blocks, 256, 0, s>>>(y, static_cast<const float *>(g_ws.p), M, N, ld, splits, p.split_stride,
                                             geglu ? 1 : 0);
    }
}

extern "C" void g4k_gemm(const g4_dmatrix *w, float *y, const float *x, int M, g4_stream s) {
    gemm_run(w, nullptr, y, x, M, reinterpret_cast<cudaStream_t>(s));
}

extern "C" void g4k_gemm_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                               g4_stream s) {
    gemm_run(gate, up, y, x, M, reinterpret_cast<cudaStream_t>(s));
}
