/* Weight-only GEMV for decode (and small batches): y = x W^T with W in FP8
 * E4M3 128x128 blocks (or BF16), x fp32, fp32 accumulation. One warp per
 * output row; each lane streams 16-byte chunks of the row (16 FP8 codes, all
 * in one 128-wide scale block) with several loads in flight, dequantizes in
 * registers and multiplies by up to 8 token vectors at once, so the weights
 * are read once per step whatever the batch.
 *
 * Epilogues: plain (up to 3 matrices in one launch: q, k, v), GeGLU (a warp
 * computes row r of gate and of up against the same x), softcap (LM head).
 * The entry points first try the tensor-core GEMV (gemv_tc.cu), which takes
 * the decode shapes; these kernels serve the rest (M > 4, odd widths).
 * CPU reference: cpu_matmul in src/cpu/ops.c. */
#include <stdio.h>

#include "cuda/common.cuh"
#include "cuda/gemv_tc.h"
#include "cuda/kernels.h"

enum { MODE_PLAIN = G4K_TC_PLAIN, MODE_GEGLU = G4K_TC_GEGLU, MODE_SOFTCAP = G4K_TC_SOFTCAP };

struct gemv_args {
    gemv_mat mat[3];
    int n_mats, cols, total_rows, M;
    int splits;      /* split-K: the columns in `splits` parts, partial sums to y + part * M * rows */
    const float *x;
    float cap;
};

/* Rows per warp on the vector path. Each lane's x values are loaded once per
 * chunk and used for all of them: the x loads (64 bytes per lane per chunk,
 * strided across the warp) otherwise cost more L1 wavefronts than the
 * weights bring bytes, and the GEMV stalls at half the HBM rate. */
#define VEC_ROWS 4

/* acc[r][m] += W_r . x[m] for NR rows whose start pointers are given, over the
 * lane's share of the columns (16-byte chunks: 16 FP8 codes or 8 BF16). */
/* x in shared memory (decode, FP8): the chunk's four 16-byte pieces are
 * stored with piece k at slot k ^ ((c >> 1) & 3), so that the 8 lanes of a
 * quarter-warp reading piece k of chunks c..c+7 hit 8 different bank groups
 * (unswizzled, lanes 64 bytes apart collide 4 ways). Global x loads with the
 * same pattern cost 4x the L1 wavefronts of the weight bytes they serve. */
__device__ __forceinline__ int sx_slot(int c, int k) { return c * 4 + (k ^ ((c >> 1) & 3)); }

/* SX: x is the block's shared copy of columns [chunk_base*16, ...), swizzled. */
template <int M, int NR, bool FP8, bool SX = false>
__device__ __forceinline__ void dot_rows_vec(const uint8_t *const wrow[NR], const float *const srow[NR], int cols,
                                             int chunk_begin, int nchunk, const float *__restrict__ x, int lane,
                                             float acc[NR][M], int sx_chunks = 0) {
    constexpr int PER = FP8 ? 16 : 8;
    constexpr int UN = NR >= 8 ? 1 : 8 / NR; /* about 8 chunks of loads in flight per lane */
    for (int c0 = chunk_begin + lane; c0 < nchunk; c0 += 32 * UN) {
        uint4 wv[UN][NR];
#pragma unroll
        for (int u = 0; u < UN; u++) {
            const int c = c0 + 32 * u;
#pragma unroll
            for (int r = 0; r < NR; r++)
                if (c < nchunk) wv[u][r] = g4k_ld_stream(wrow[r] + (size_t)c * 16);
        }
#pragma unroll
        for (int u = 0; u < UN; u++) {
            const int c = c0 + 32 * u;
            if (c >= nchunk) break;
#pragma unroll
            for (int m = 0; m < M; m++) {
                float xv[PER];
                const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)m * cols + (size_t)c * PER);
                const float4 *xs = reinterpret_cast<const float4 *>(x) + (size_t)m * sx_chunks * 4;
#pragma unroll
                for (int k = 0; k < PER / 4; k++) {
                    const float4 t = SX ? xs[sx_slot(c - chunk_begin, k)] : __ldg(xp + k);
                    xv[4 * k] = t.x, xv[4 * k + 1] = t.y, xv[4 * k + 2] = t.z, xv[4 * k + 3] = t.w;
                }
#pragma unroll
                for (int r = 0; r < NR; r++) {
                    const uint32_t words[4] = {wv[u][r].x, wv[u][r].y, wv[u][r].z, wv[u][r].w};
                    float wf[PER];
                    if (FP8) { /* values x 2^-120; the biased scale puts it back */
#pragma unroll
                        for (int k = 0; k < 4; k++) g4k_fp8x4_to_f32_biased(words[k], wf + 4 * k);
                    } else {
#pragma unroll
                        for (int k = 0; k < 4; k++) {
                            wf[2 * k] = __uint_as_float(words[k] << 16);
                            wf[2 * k + 1] = __uint_as_float(words[k] & 0xffff0000u);
                        }
                    }
                    float part = 0.0f;
#pragma unroll
                    for (int k = 0; k < PER; k++) part += wf[k] * xv[k];
                    /* bias first, then the block scale: no overflow */
                    acc[r][m] += FP8 ? (part * G4K_FP8_SCALE_BIAS) * __ldg(srow[r] + (c * PER) / 128) : part;
                }
            }
        }
    }
}

/* Any width (small test models): one element per lane per step, one row. */
template <int M, bool FP8>
__device__ __forceinline__ void dot_row_any(const uint8_t *wrow, const float *srow, int cols, const float *__restrict__ x,
                                            int lane, float acc[M]) {
    for (int c = lane; c < cols; c += 32) {
        const float wv = FP8 ? g4k_fp8_to_f32(wrow[c]) * srow[c / 128]
                             : g4k_bf16_to_f32(reinterpret_cast<const uint16_t *>(wrow)[c]);
#pragma unroll
        for (int m = 0; m < M; m++) acc[m] += wv * x[(size_t)m * cols + c];
    }
}

__device__ __forceinline__ const uint8_t *row_ptr(const gemv_mat &mat, int row, int cols, bool fp8) {
    return mat.w + (size_t)row * cols * (fp8 ? 1 : 2);
}

__device__ __forceinline__ const float *scale_row(const gemv_mat &mat, int row, int cols, bool fp8) {
    return fp8 ? mat.scales + (size_t)(row / 128) * ((cols + 127) / 128) : nullptr;
}

/* Before waiting for the previous kernel: pull this warp's first rows (their
 * columns [c_begin, c_end) in 16-byte chunks) toward L2, so that the stream is
 * already running when x arrives. */
template <int NR>
__device__ __forceinline__ void prefetch_rows(const uint8_t *const w[NR], int c_begin, int c_end, int lane) {
#pragma unroll
    for (int r = 0; r < NR; r++)
        for (int c = c_begin + lane; c < c_end; c += 32) g4k_prefetch_l2(w[r] + (size_t)c * 16);
}

/* Which matrix a global row falls in: constant indices only, so the
 * parameters stay out of local memory. */
__device__ __forceinline__ gemv_mat pick_mat(const gemv_args &a, int &row) {
    gemv_mat mat = a.mat[0];
    if (a.n_mats > 1 && row >= a.mat[0].rows) {
        row -= a.mat[0].rows;
        mat = a.mat[1];
        if (a.n_mats > 2 && row >= a.mat[1].rows) {
            row -= a.mat[1].rows;
            mat = a.mat[2];
        }
    }
    return mat;
}

__device__ __forceinline__ float epilogue(float v, int mode, float cap) {
    return mode == MODE_SOFTCAP && cap > 0.0f ? cap * tanhf(v / cap) : v;
}

/* One warp per VEC_ROWS rows (R = VEC_ROWS) or per row (R = 1, any width). */
template <int M, bool FP8, bool VEC, int MODE>
__global__ void __launch_bounds__(256) gemv_kernel(gemv_args a) {
    /* GeGLU warps take VEC_ROWS / 2 row pairs: 4 rows of loads, like the others */
    constexpr int R = VEC ? (MODE == MODE_GEGLU ? VEC_ROWS / 2 : VEC_ROWS) : 1;
    const int lane = threadIdx.x % 32;
    int row = (blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32) * R;
    if (row >= a.total_rows) return;
    if (MODE == MODE_GEGLU) { /* rows row..row+R-1 of gate and of up */
        constexpr int NR = 2 * R;
        float acc[NR][M] = {};
        if (VEC) {
            const uint8_t *w[NR];
            const float *sc[NR];
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const gemv_mat &mat = r < R ? a.mat[0] : a.mat[1];
                w[r] = row_ptr(mat, row + r % R, a.cols, FP8), sc[r] = scale_row(mat, row + r % R, a.cols, FP8);
            }
            prefetch_rows<NR>(w, 0, a.cols / (FP8 ? 16 : 8), lane);
            g4k_wait_inputs();
            dot_rows_vec<M, NR, FP8>(w, sc, a.cols, 0, a.cols / (FP8 ? 16 : 8), a.x, lane, acc);
        } else {
            g4k_wait_inputs();
            dot_row_any<M, FP8>(row_ptr(a.mat[0], row, a.cols, FP8), scale_row(a.mat[0], row, a.cols, FP8), a.cols, a.x,
                                lane, acc[0]);
            dot_row_any<M, FP8>(row_ptr(a.mat[1], row, a.cols, FP8), scale_row(a.mat[1], row, a.cols, FP8), a.cols, a.x,
                                lane, acc[NR - 1]);
        }
        g4k_allow_next();
#pragma unroll
        for (int r = 0; r < R; r++)
#pragma unroll
            for (int m = 0; m < M; m++) {
                const float g = g4k_warp_sum(acc[r][m]), u = g4k_warp_sum(acc[r + R][m]);
                if (lane == 0) a.mat[0].y[(size_t)m * a.mat[0].rows + row + r] = g4k_gelu_tanh(g) * u;
            }
        return;
    }
    /* split-K: blockIdx.y picks a part of the columns (whole 128-wide scale blocks) */
    const int nchunk_all = a.cols / (FP8 ? 16 : 8);
    const int per_part = ((nchunk_all + a.splits - 1) / a.splits + 7) / 8 * 8; /* whole scale blocks */
    const int chunk_begin = blockIdx.y * per_part;
    const int chunk_end = chunk_begin + per_part < nchunk_all ? chunk_begin + per_part : nchunk_all;
    gemv_mat mat = pick_mat(a, row); /* R divides every matrix's rows, so a warp stays in one */
    mat.y += (size_t)blockIdx.y * a.M * mat.rows;
    float acc[R][M] = {};
    if (VEC) {
        const uint8_t *w[R];
        const float *sc[R];
#pragma unroll
        for (int r = 0; r < R; r++) w[r] = row_ptr(mat, row + r, a.cols, FP8), sc[r] = scale_row(mat, row + r, a.cols, FP8);
        prefetch_rows<R>(w, chunk_begin, chunk_end, lane);
        g4k_wait_inputs();
        dot_rows_vec<M, R, FP8>(w, sc, a.cols, chunk_begin, chunk_end, a.x, lane, acc);
    } else {
        g4k_wait_inputs();
        dot_row_any<M, FP8>(row_ptr(mat, row, a.cols, FP8), scale_row(mat, row, a.cols, FP8), a.cols, a.x, lane, acc[0]);
    }
    g4k_allow_next();
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int m = 0; m < M; m++) {
            const float v = epilogue(g4k_warp_sum(acc[r][m]), MODE, a.cap);
            if (lane == 0) mat.y[(size_t)m * mat.rows + row + r] = v;
        }
}

/* Decode (M <= 2 tokens), FP8: the block first copies x (its split's columns)
 * into shared memory, swizzled, then its warps walk row groups in a grid-stride
 * loop, so x is loaded once per block instead of once per warp from L1. */
/* Two resident blocks per SM (128 registers): 3 per SM (80 registers) and 4
 * (64, spilling) were slower on the H100 (perf log, 2026-11-27). */
template <int M, int MODE>
__global__ void __launch_bounds__(256, 2) gemv_sx_kernel(gemv_args a) {
    extern __shared__ float4 sx4[];
    constexpr int R = MODE == MODE_GEGLU ? VEC_ROWS / 2 : VEC_ROWS;
    const int nchunk_all = a.cols / 16;
    const int per_part = ((nchunk_all + a.splits - 1) / a.splits + 7) / 8 * 8; /* whole scale blocks */
    const int chunk_begin = blockIdx.y * per_part;
    const int chunk_end = chunk_begin + per_part < nchunk_all ? chunk_begin + per_part : nchunk_all;
    const int n_groups0 = a.total_rows / R, g0 = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (g0 < n_groups0) { /* the first row group of this warp, before the wait */
        int row0 = g0 * R;
        const uint8_t *w0[MODE == MODE_GEGLU ? 2 * R : R];
        if (MODE == MODE_GEGLU) {
            for (int r = 0; r < 2 * R; r++) w0[r] = row_ptr(r < R ? a.mat[0] : a.mat[1], row0 + r % R, a.cols, true);
            prefetch_rows<MODE == MODE_GEGLU ? 2 * R : R>(w0, chunk_begin, chunk_end, threadIdx.x % 32);
        } else {
            const gemv_mat mat0 = pick_mat(a, row0);
            for (int r = 0; r < R; r++) w0[r] = row_ptr(mat0, row0 + r, a.cols, true);
            prefetch_rows<MODE == MODE_GEGLU ? 2 * R : R>(w0, chunk_begin, chunk_end, threadIdx.x % 32);
        }
    }
    g4k_wait_inputs();
    g4k_allow_next(); /* all blocks are resident: the next kernel can only use what they free */
    const float4 *x4 = reinterpret_cast<const float4 *>(a.x);
    for (int m = 0; m < M; m++)
        for (int p = threadIdx.x; p < (chunk_end - chunk_begin) * 4; p += blockDim.x)
            sx4[m * per_part * 4 + sx_slot(p / 4, p % 4)] = x4[(size_t)m * a.cols / 4 + (size_t)(chunk_begin + p / 4) * 4 + p % 4];
    __syncthreads();
    const float *sx = reinterpret_cast<const float *>(sx4);
    const int lane = threadIdx.x % 32, warps = blockDim.x / 32, n_groups = a.total_rows / R;
    for (int g = blockIdx.x * warps + threadIdx.x / 32; g < n_groups; g += gridDim.x * warps) {
        int row = g * R;
        if (MODE == MODE_GEGLU) { /* rows row..row+R-1 of gate and of up; never split */
            float acc[2 * R][M] = {};
            const uint8_t *w[2 * R];
            const float *sc[2 * R];
#pragma unroll
            for (int r = 0; r < 2 * R; r++) {
                const gemv_mat &mat = r < R ? a.mat[0] : a.mat[1];
                w[r] = row_ptr(mat, row + r % R, a.cols, true), sc[r] = scale_row(mat, row + r % R, a.cols, true);
            }
            dot_rows_vec<M, 2 * R, true, true>(w, sc, a.cols, chunk_begin, chunk_end, sx, lane, acc, per_part);
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int m = 0; m < M; m++) {
                    const float gs = g4k_warp_sum(acc[r][m]), us = g4k_warp_sum(acc[r + R][m]);
                    if (lane == 0) a.mat[0].y[(size_t)m * a.mat[0].rows + row + r] = g4k_gelu_tanh(gs) * us;
                }
        } else {
            gemv_mat mat = pick_mat(a, row);
            mat.y += (size_t)blockIdx.y * a.M * mat.rows;
            float acc[R][M] = {};
            const uint8_t *w[R];
            const float *sc[R];
#pragma unroll
            for (int r = 0; r < R; r++) w[r] = row_ptr(mat, row + r, a.cols, true), sc[r] = scale_row(mat, row + r, a.cols, true);
            dot_rows_vec<M, R, true, true>(w, sc, a.cols, chunk_begin, chunk_end, sx, lane, acc, per_part);
#pragma unroll
            for (int r = 0; r < R; r++)
#pragma unroll
                for (int m = 0; m < M; m++) {
                    const float v = g4k_warp_sum(acc[r][m]);
                    if (lane == 0) mat.y[(size_t)m * mat.rows + row + r] = v;
                }
        }
    }
}

/* The shared-x kernel when it applies: FP8 rows on the vector path, 1-2 tokens,
 * x within the default 48 KB of shared memory. Returns false otherwise. */
template <int MODE>
static bool launch_sx(const gemv_args &a, cudaStream_t s) {
    if (MODE == MODE_SOFTCAP || a.M > 2) return false;
    const int nchunk_all = a.cols / 16, per_part = ((nchunk_all + a.splits - 1) / a.splits + 7) / 8 * 8;
    const size_t smem = (size_t)a.M * per_part * 64;
    if (smem > 48 * 1024) return false;
    const int rows_per_warp = MODE == MODE_GEGLU ? VEC_ROWS / 2 : VEC_ROWS, warps = 8;
    int bx = 2 * g4k_sm_count() / a.splits; /* every block resident at once */
    const int needed = (a.total_rows / rows_per_warp + warps - 1) / warps;
    bx = bx < 1 ? 1 : bx > needed ? needed : bx;
    const dim3 grid(bx, a.splits);
    if (a.M == 1) g4k_launch(gemv_sx_kernel<1, MODE>, grid, 32 * warps, smem, s, a);
    else g4k_launch(gemv_sx_kernel<2, MODE>, grid, 32 * warps, smem, s, a);
    return true;
}

template <int M, int MODE>
static void launch_m(const gemv_args &a, bool fp8, bool vec, cudaStream_t s) {
    const int warps = 8, rows_per_warp = vec ? (MODE == MODE_GEGLU ? VEC_ROWS / 2 : VEC_ROWS) : 1;
    const dim3 blocks((a.total_rows / rows_per_warp + warps - 1) / warps, a.splits);
    if (fp8 && vec) g4k_launch(gemv_kernel<M, true, true, MODE>, blocks, 32 * warps, 0, s, a);
    else if (fp8) g4k_launch(gemv_kernel<M, true, false, MODE>, blocks, 32 * warps, 0, s, a);
    else if (vec) g4k_launch(gemv_kernel<M, false, true, MODE>, blocks, 32 * warps, 0, s, a);
    else g4k_launch(gemv_kernel<M, false, false, MODE>, blocks, 32 * warps, 0, s, a);
}

template <int MODE>
static void launch(const gemv_args &a, bool fp8, cudaStream_t s) {
    /* 16-byte chunks need rows that start 16-byte aligned; a warp's rows must
     * lie in one matrix */
    bool vec = fp8 ? a.cols % 16 == 0 : a.cols % 8 == 0;
    for (int i = 0; i < a.n_mats; i++) vec = vec && a.mat[i].rows % VEC_ROWS == 0;
    if (fp8 && vec && launch_sx<MODE>(a, s)) return;
    if (!vec && a.splits > 1) { /* the any-width path has no split: do it whole into part 0, zero the rest */
        gemv_args whole = a;
        whole.splits = 1;
        for (int p = 1; p < a.splits; p++)
            cudaMemsetAsync(a.mat[0].y + (size_t)p * a.M * a.mat[0].rows, 0, sizeof(float) * a.M * a.mat[0].rows, s);
        launch<MODE>(whole, fp8, s);
        return;
    }
    switch (a.M) {
    case 1: launch_m<1, MODE>(a, fp8, vec, s); break;
    case 2: launch_m<2, MODE>(a, fp8, vec, s); break;
    case 3: launch_m<3, MODE>(a, fp8, vec, s); break;
    case 4: launch_m<4, MODE>(a, fp8, vec, s); break;
    case 5: launch_m<5, MODE>(a, fp8, vec, s); break;
    case 6: launch_m<6, MODE>(a, fp8, vec, s); break;
    case 7: launch_m<7, MODE>(a, fp8, vec, s); break;
    default: launch_m<8, MODE>(a, fp8, vec, s); break;
    }
}

/* These kernels read row-major codes only; the tensor-core path takes every
 * tiled matrix, so getting here with one is a bug worth a loud message. */
static bool tiled_refused(const g4_dmatrix *w, const char *who) {
    if (!w->tiled) return false;
    fprintf(stderr, "%s: tiled %d x %d matrix refused by the tensor-core GEMV; not computed\n", who, w->rows, w->cols);
    return true;
}

static gemv_mat to_mat(const g4_dmatrix *m, float *y) {
    gemv_mat g = {static_cast<const uint8_t *>(m->data), m->scales, m->rows, y};
    return g;
}

extern "C" void g4k_gemv(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4_stream s) {
    g4k_gemv_split(w, y, n_mats, x, M, 1, s);
}

extern "C" int g4k_gemv_split(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, int splits,
                              g4_stream s) {
    if (g4k_gemv_tc(w, y, n_mats, x, M, G4K_TC_PLAIN, 0.0f, s) == 0 || tiled_refused(w, "g4k_gemv")) return 1;
    gemv_args a = {};
    a.n_mats = n_mats, a.cols = w[0].cols, a.M = M, a.x = x, a.splits = splits;
    for (int i = 0; i < n_mats; i++) {
        a.mat[i] = to_mat(&w[i], y[i]);
        a.total_rows += w[i].rows;
    }
    launch<MODE_PLAIN>(a, w[0].fp8, s);
    return splits;
}

extern "C" void g4k_gemv_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                               g4_stream s) {
    const g4_dmatrix gu[2] = {*gate, *up};
    float *const ys[2] = {y, nullptr};
    if (g4k_gemv_tc(gu, ys, 2, x, M, G4K_TC_GEGLU, 0.0f, s) == 0 || tiled_refused(gu, "g4k_gemv_geglu")) return;
    gemv_args a = {};
    a.n_mats = 2, a.cols = gate->cols, a.M = M, a.x = x, a.total_rows = gate->rows, a.splits = 1;
    a.mat[0] = to_mat(gate, y);
    a.mat[1] = to_mat(up, nullptr);
    launch<MODE_GEGLU>(a, gate->fp8, s);
}

extern "C" void g4k_lm_head(float *logits, const float *x, const g4_dmatrix *E, int M, float cap, g4_stream s) {
    float *const ys[1] = {logits};
    if (g4k_gemv_tc(E, ys, 1, x, M, G4K_TC_SOFTCAP, cap, s) == 0 || tiled_refused(E, "g4k_lm_head")) return;
    const int vocab = E->rows, n = E->cols;
    gemv_args a = {};
    a.n_mats = 1, a.cols = n, a.M = M, a.x = x, a.total_rows = vocab, a.cap = cap, a.splits = 1;
    gemv_mat g = {static_cast<const uint8_t *>(E->data), nullptr, vocab, logits};
    a.mat[0] = g;
    launch<MODE_SOFTCAP>(a, false, s);
}
