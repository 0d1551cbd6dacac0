/* Row-wise kernels of the forward pass: embedding, RMSNorm, the sandwich-norm
 * residual update (one block per row), and the per-head q/k/v post-processing
 * (norms, RoPE, the KV-cache write; one warp per head). CPU references:
 * cpu_rmsnorm, cpu_rope and the loops of src/cpu/forward.c. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/kv.cuh"
#include "cuda/residual.cuh"
#include "cuda/trace.cuh"

#define ROW_THREADS 256

/* 1 / sqrt(mean(x^2) + eps) of one row, every thread gets it. */
__device__ float rms_inv(const float *x, int n, float eps, float *red) {
    float ss = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += x[i] * x[i];
    ss = g4k_block_sum(ss, red);
    return 1.0f / sqrtf(ss / n + eps);
}

__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, int n, float eps) {
    __shared__ float red[32];
    G4K_TRACE(G4K_TR_NORM, w);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    const float *xr = x + (size_t)blockIdx.x * n;
    float *orow = out + (size_t)blockIdx.x * n;
    const float inv = rms_inv(xr, n, eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = xr[i] * inv * (w ? w[i] : 1.0f);
}

extern "C" void g4k_rmsnorm(float *out, const float *x, const float *w, int M, int n, float eps, g4_stream s) {
    g4k_launch(rmsnorm_kernel, M, ROW_THREADS, 0, s, out, x, w, n, eps);
}

/* The residual step (kernels.h) of one row per block, any n: y's parts are
 * added into part 0 first, so y must be writable (it is scratch). */
__global__ void residual_norm_kernel(g4k_residual r, int n) {
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    const size_t row = (size_t)blockIdx.x * n;
    const float *hin = r.h_in + row;
    float *hout = r.h_out + row, *yr = const_cast<float *>(r.y) + row;
    const size_t part_stride = (size_t)gridDim.x * n;
    for (int p = 1; p < r.parts; p++) /* add the split-K parts into part 0 */
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] += yr[p * part_stride + i];
    __syncthreads();
    const float inv = rms_inv(yr, n, r.eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) hout[i] = (hin[i] + yr[i] * inv * r.w_post[i]) * r.scalar;
    if (!r.w_next) return;
    __syncthreads();
    const float inv2 = rms_inv(hout, n, r.eps, red);
    float *orow = r.x_out + row;
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = hout[i] * inv2 * r.w_next[i];
}

/* The same with float4 accesses and the row held in registers between the
 * two reductions (resid_row), for PARTS split-K parts of y and n % 4 == 0,
 * n <= 4 * RES_VEC * blockDim.x: one load of y, h and the weights, one store
 * of h_out and x_out. Decode's last residual step runs this on one block, so
 * its latency, not its bytes, is what counts (resid_row). */
#define RES_VEC 4
#define RES_MAX_THREADS 512
template <int PARTS>
__global__ void __launch_bounds__(RES_MAX_THREADS) residual_norm_vec(g4k_residual r, int n) {
    __shared__ float red[32];
    G4K_TRACE(G4K_TR_RESID, r.w_post);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    const size_t row = (size_t)blockIdx.x * n;
    float4 x[RES_VEC];
    resid_row<RES_VEC, PARTS>(r.y + row, (size_t)gridDim.x * n, r.h_in + row, r.h_out + row, r.w_post, r.w_next,
                              r.scalar, n, r.eps, red, x);
    if (!r.w_next) return;
    float4 *orow = reinterpret_cast<float4 *>(r.x_out + row);
#pragma unroll
    for (int k = 0; k < RES_VEC; k++)
        if (resid_slot(k, n / 4)) orow[threadIdx.x + k * blockDim.x] = x[k];
}

extern "C" void g4k_residual_norm(const g4k_residual *r, int M, int n, g4_stream s) {
    int threads = (n / 4 + RES_VEC - 1) / RES_VEC;
    threads = threads < 32 ? 32 : (threads + 31) / 32 * 32;
    const bool vec = n % 4 == 0 && threads <= RES_MAX_THREADS;
    if (vec && r->parts == 1) {
        g4k_launch(residual_norm_vec<1>, M, threads, 0, s, *r, n);
    } else if (vec && r->parts == 4) { /* the CUDA-core GEMV's split-K parts (cuda_forward.c's SPLITS) */
        g4k_launch(residual_norm_vec<4>, M, threads, 0, s, *r, n);
    } else {
        g4k_launch(residual_norm_kernel, M, ROW_THREADS, 0, s, *r, n);
    }
}

__global__ void embed_kernel(float *h, const uint16_t *E, const int32_t *tokens, int n, int tiled, float scale) {
    G4K_TRACE(G4K_TR_EMBED, E);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    const int tok = tokens[blockIdx.x];
    const uint8_t *bytes = reinterpret_cast<const uint8_t *>(E);
    float *hr = h + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const size_t at = tiled ? G4K_TILED_OFFSET(tok, 2 * i, 2 * n) : ((size_t)tok * n + i) * 2;
        hr[i] = g4k_bf16_to_f32(*reinterpret_cast<const uint16_t *>(bytes + at)) * scale;
    }
}

extern "C" void g4k_embed(float *h, const g4_dmatrix *E, const int32_t *tokens, int M, float scale, g4_stream s) {
    g4k_launch(embed_kernel, M, ROW_THREADS, 0, s, h, static_cast<const uint16_t *>(E->data), tokens, E->cols,
               E->tiled, scale);
}

/* ------------------------------------------------------------ q/k/v heads */

/* One warp per (token, head): a query head (RMSNorm with q_norm, RoPE, into
 * q_out) or a KV head (k: RMSNorm with k_norm and RoPE; v: weightless RMSNorm;
 * both into the cache). Lane l holds elements l + 32e of each half of the head
 * (E = ceil(hd / 64) per half), so the warp's loads are contiguous and the
 * rotate-half pairs (i, i + hd/2) sit in one lane; the norm is a warp sum, no
 * block barrier. The prefill ran one block per head before (9-12 us per layer
 * at 145 tokens, perf log); it reads the fused q/k/v GEMM's output in place,
 * which also drops the column split that copied it into q, k and v. */
template <int E>
struct head_vals {
    float lo[E], hi[E]; /* elements lane + 32e and hd/2 + lane + 32e */
};

template <int E>
__device__ __forceinline__ head_vals<E> load_head(const float *x, int half) {
    head_vals<E> v;
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int i = threadIdx.x % 32 + 32 * e;
        v.lo[e] = i < half ? x[i] : 0.0f;
        v.hi[e] = i < half ? x[half + i] : 0.0f;
    }
    return v;
}

/* x = rms(x; w) (w NULL: weightless), then RoPE over the first `pairs` slots,
 * the formulas of the CPU's cpu_rmsnorm and cpu_rope. */
template <int E>
__device__ __forceinline__ void norm_rope(head_vals<E> &v, const float *w, int hd, int pairs, float theta, int pos,
                                          float eps) {
    const int half = hd / 2;
    float ss = 0.0f;
#pragma unroll
    for (int e = 0; e < E; e++) ss += v.lo[e] * v.lo[e] + v.hi[e] * v.hi[e];
    const float inv = warp_rms_inv(ss, hd, eps);
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int i = threadIdx.x % 32 + 32 * e;
        if (i >= half) continue;
        float a = v.lo[e] * inv * (w ? w[i] : 1.0f), b = v.hi[e] * inv * (w ? w[half + i] : 1.0f);
        if (i < pairs) {
            float sn, cs;
            rope_sincos(i, hd, theta, pos, &sn, &cs);
            const float ra = a * cs - b * sn, rb = b * cs + a * sn;
            a = ra, b = rb;
        }
        v.lo[e] = a, v.hi[e] = b;
    }
}

template <int E>
__device__ __forceinline__ void store_head(float *x, const head_vals<E> &v, int half) {
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int i = threadIdx.x % 32 + 32 * e;
        if (i < half) x[i] = v.lo[e], x[half + i] = v.hi[e];
    }
}

template <int E>
__device__ __forceinline__ void store_head_kv(void *cache, const g4k_attn &a, size_t off, const head_vals<E> &v,
                                              int half, float scale) {
#pragma unroll
    for (int e = 0; e < E; e++) {
        const int i = threadIdx.x % 32 + 32 * e;
        if (i < half)
            kv_store(cache, a.kv_dtype, off + i, v.lo[e], scale, true),
                kv_store(cache, a.kv_dtype, off + half + i, v.hi[e], scale, true);
    }
}

#define POST_WARPS 8

template <int E>
__global__ void __launch_bounds__(32 * POST_WARPS) qkv_post_kernel(g4k_attn a, g4k_qkv_in in, float *q_out,
                                                                   const float *q_norm, const float *k_norm,
                                                                   const int *pos0, int M) {
    g4k_wait_inputs();
    g4k_allow_next();
    const int heads = a.n_heads + a.n_kv_heads, item = blockIdx.x * POST_WARPS + threadIdx.x / 32;
    if (item >= M * heads) return;
    const int m = item / heads, head = item % heads, hd = a.head_dim, half = hd / 2, pos = *pos0 + m;
    if (head < a.n_heads) {
        head_vals<E> q = load_head<E>(in.q + (size_t)m * in.ld_q + head * hd, half);
        norm_rope<E>(q, q_norm, hd, a.rope_pairs, a.rope_theta, pos, a.eps);
        store_head<E>(q_out + ((size_t)m * a.n_heads + head) * hd, q, half);
        return;
    }
    const int j = head - a.n_heads;
    head_vals<E> k = load_head<E>(in.k + (size_t)m * in.ld_k + j * hd, half);
    head_vals<E> v = load_head<E>(in.v + (size_t)m * in.ld_v + j * hd, half);
    norm_rope<E>(k, k_norm, hd, a.rope_pairs, a.rope_theta, pos, a.eps);
    norm_rope<E>(v, nullptr, hd, 0, 1.0f, pos, a.eps); /* weightless v_norm, no RoPE */
    const size_t off = (size_t)kv_row(a, pos) * a.n_kv_heads * hd + (size_t)j * hd;
    store_head_kv<E>(a.k_cache, a, off, k, half, a.k_scale);
    store_head_kv<E>(a.v_cache, a, off, v, half, a.v_scale);
}

extern "C" int g4k_qkv_post(const g4k_attn *a, const g4k_qkv_in *in, float *q_out, const float *q_norm,
                            const float *k_norm, const int *pos0, int M, g4_stream s) {
    const int hd = a->head_dim, items = M * (a->n_heads + a->n_kv_heads);
    const dim3 grid((items + POST_WARPS - 1) / POST_WARPS), block(32 * POST_WARPS);
    if (hd <= 0 || hd % 2 || hd > G4K_MAX_HEAD_DIM || M <= 0) return -1;
    if (hd <= 64) g4k_launch(qkv_post_kernel<1>, grid, block, 0, s, *a, *in, q_out, q_norm, k_norm, pos0, M);
    else if (hd <= 128) g4k_launch(qkv_post_kernel<2>, grid, block, 0, s, *a, *in, q_out, q_norm, k_norm, pos0, M);
    else if (hd <= 256) g4k_launch(qkv_post_kernel<4>, grid, block, 0, s, *a, *in, q_out, q_norm, k_norm, pos0, M);
    else if (hd <= 512) g4k_launch(qkv_post_kernel<8>, grid, block, 0, s, *a, *in, q_out, q_norm, k_norm, pos0, M);
    else g4k_launch(qkv_post_kernel<16>, grid, block, 0, s, *a, *in, q_out, q_norm, k_norm, pos0, M);
    return 0;
}

__global__ void record_advance_kernel(int *pos, const int32_t *token, int32_t *hist) {
    G4K_TRACE(G4K_TR_ADVANCE, hist);
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    hist[*pos + 1] = *token;
    *pos += 1;
}

extern "C" void g4k_record_advance(int *pos, const int32_t *token, int32_t *hist, g4_stream s) {
    g4k_launch(record_advance_kernel, 1, 1, 0, s, pos, token, hist);
}
