/* Weight-only GEMV for decode (and small batches): y = x W^T with W in FP8
 * E4M3 128x128 blocks (or BF16), x fp32, fp32 accumulation. One warp per
 * output row; each lane streams 16-byte chunks of the row (16 FP8 codes, all
 * in one 128-wide scale block) with several loads in flight, dequantizes in
 * registers and multiplies by up to 8 token vectors at once, so the weights
 * are read once per step whatever the batch.
 *
 * Epilogues: plain (up to 3 matrices in one launch: q, k, v), GeGLU (a warp
 * computes row r of gate and of up against the same x), softcap (LM head).
 * CPU reference: cpu_matmul in src/cpu/ops.c. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"

enum { MODE_PLAIN = 0, MODE_GEGLU = 1, MODE_SOFTCAP = 2 };
#define UNROLL 4

struct gemv_mat {
    const uint8_t *w;
    const float *scales;
    int rows;
    float *y;
};

struct gemv_args {
    gemv_mat mat[3];
    int n_mats, cols, total_rows, M;
    const float *x;
    float cap;
};

/* acc[m] += W[row] . x[m] over the lane's share of the row. */
template <int M, bool FP8, bool VEC>
__device__ __forceinline__ void dot_row(const gemv_mat &mat, int row, int cols, const float *__restrict__ x,
                                        int lane, float acc[M]) {
    const int cblocks = (cols + 127) / 128;
    const float *srow = FP8 ? mat.scales + (size_t)(row / 128) * cblocks : nullptr;
    const size_t elem = FP8 ? 1 : 2;
    const uint8_t *wrow = mat.w + (size_t)row * cols * elem;
    if (VEC) {
        constexpr int PER = FP8 ? 16 : 8; /* elements per 16-byte chunk */
        const int nchunk = cols / PER;
        for (int c0 = lane; c0 < nchunk; c0 += 32 * UNROLL) {
            uint4 wv[UNROLL];
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                const int c = c0 + 32 * u;
                if (c < nchunk) wv[u] = g4k_ld_stream(wrow + (size_t)c * 16);
            }
#pragma unroll
            for (int u = 0; u < UNROLL; u++) {
                const int c = c0 + 32 * u;
                if (c >= nchunk) break;
                float wf[PER];
                const uint32_t words[4] = {wv[u].x, wv[u].y, wv[u].z, wv[u].w};
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
                const float s = FP8 ? __ldg(srow + (c * PER) / 128) : 1.0f;
#pragma unroll
                for (int m = 0; m < M; m++) {
                    const float4 *xp = reinterpret_cast<const float4 *>(x + (size_t)m * cols + (size_t)c * PER);
                    float part = 0.0f;
#pragma unroll
                    for (int k = 0; k < PER / 4; k++) {
                        const float4 xv = __ldg(xp + k);
                        part += wf[4 * k] * xv.x + wf[4 * k + 1] * xv.y + wf[4 * k + 2] * xv.z + wf[4 * k + 3] * xv.w;
                    }
                    acc[m] += FP8 ? (part * G4K_FP8_SCALE_BIAS) * s : part; /* bias first: no overflow */
                }
            }
        }
    } else { /* any width (small test models): one element per lane per step */
        for (int c = lane; c < cols; c += 32) {
            const float wv = FP8 ? g4k_fp8_to_f32(wrow[c]) * srow[c / 128]
                                 : g4k_bf16_to_f32(reinterpret_cast<const uint16_t *>(wrow)[c]);
#pragma unroll
            for (int m = 0; m < M; m++) acc[m] += wv * x[(size_t)m * cols + c];
        }
    }
}

template <int M, bool FP8, bool VEC, int MODE>
__global__ void __launch_bounds__(256) gemv_kernel(gemv_args a) {
    const int lane = threadIdx.x % 32;
    int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= a.total_rows) return;
    if (MODE == MODE_GEGLU) {
        float g[M] = {0}, u[M] = {0};
        dot_row<M, FP8, VEC>(a.mat[0], row, a.cols, a.x, lane, g);
        dot_row<M, FP8, VEC>(a.mat[1], row, a.cols, a.x, lane, u);
#pragma unroll
        for (int m = 0; m < M; m++) {
            const float gs = g4k_warp_sum(g[m]), us = g4k_warp_sum(u[m]);
            if (lane == 0) a.mat[0].y[(size_t)m * a.mat[0].rows + row] = g4k_gelu_tanh(gs) * us;
        }
        return;
    }
    /* which matrix: constant indices only, so the parameters stay out of local memory */
    gemv_mat mat = a.mat[0];
    if (a.n_mats > 1 && row >= a.mat[0].rows) {
        row -= a.mat[0].rows;
        mat = a.mat[1];
        if (a.n_mats > 2 && row >= a.mat[1].rows) {
            row -= a.mat[1].rows;
            mat = a.mat[2];
        }
    }
    float acc[M] = {0};
    dot_row<M, FP8, VEC>(mat, row, a.cols, a.x, lane, acc);
#pragma unroll
    for (int m = 0; m < M; m++) {
        float v = g4k_warp_sum(acc[m]);
        if (MODE == MODE_SOFTCAP && a.cap > 0.0f) v = a.cap * tanhf(v / a.cap);
        if (lane == 0) mat.y[(size_t)m * mat.rows + row] = v;
    }
}

template <int M, int MODE>
static void launch_m(const gemv_args &a, bool fp8, bool vec, cudaStream_t s) {
    const int warps = 8, blocks = (a.total_rows + warps - 1) / warps;
    if (fp8 && vec) gemv_kernel<M, true, true, MODE><<<blocks, 32 * warps, 0, s>>>(a);
    else if (fp8) gemv_kernel<M, true, false, MODE><<<blocks, 32 * warps, 0, s>>>(a);
    else if (vec) gemv_kernel<M, false, true, MODE><<<blocks, 32 * warps, 0, s>>>(a);
    else gemv_kernel<M, false, false, MODE><<<blocks, 32 * warps, 0, s>>>(a);
}

template <int MODE>
static void launch(const gemv_args &a, bool fp8, cudaStream_t s) {
    /* 16-byte chunks need rows that start 16-byte aligned */
    const bool vec = fp8 ? a.cols % 16 == 0 : a.cols % 8 == 0;
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

static gemv_mat to_mat(const g4_dmatrix *m, float *y) {
    gemv_mat g = {static_cast<const uint8_t *>(m->data), m->scales, m->rows, y};
    return g;
}

extern "C" void g4k_gemv(const g4_dmatrix *w, float *const *y, int n_mats, const float *x, int M, g4_stream s) {
    gemv_args a = {};
    a.n_mats = n_mats, a.cols = w[0].cols, a.M = M, a.x = x;
    for (int i = 0; i < n_mats; i++) {
        a.mat[i] = to_mat(&w[i], y[i]);
        a.total_rows += w[i].rows;
    }
    launch<MODE_PLAIN>(a, w[0].fp8, s);
}

extern "C" void g4k_gemv_geglu(const g4_dmatrix *gate, const g4_dmatrix *up, float *y, const float *x, int M,
                               g4_stream s) {
    gemv_args a = {};
    a.n_mats = 2, a.cols = gate->cols, a.M = M, a.x = x, a.total_rows = gate->rows;
    a.mat[0] = to_mat(gate, y);
    a.mat[1] = to_mat(up, nullptr);
    launch<MODE_GEGLU>(a, gate->fp8, s);
}

extern "C" void g4k_lm_head(float *logits, const float *x, const uint16_t *E, int M, int vocab, int n, float cap,
                            g4_stream s) {
    gemv_args a = {};
    a.n_mats = 1, a.cols = n, a.M = M, a.x = x, a.total_rows = vocab, a.cap = cap;
    gemv_mat g = {reinterpret_cast<const uint8_t *>(E), nullptr, vocab, logits};
    a.mat[0] = g;
    launch<MODE_SOFTCAP>(a, false, s);
}
