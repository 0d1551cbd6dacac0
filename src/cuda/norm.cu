/* Row-wise kernels of the forward pass: embedding, RMSNorm, the sandwich-norm
 * residual update (one block per row), and the per-head q/k/v post-processing
 * (norms, RoPE, the KV-cache write; one warp per head). CPU references:
 * cpu_rmsnorm, cpu_rope and the loops of src/cpu/forward.c. */
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/kv.cuh"
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

/* h += rms(y; w_post); h *= scalar; out = rms(h; w_next). y is read into h
 * first, so h and out may not alias y. */
__global__ void residual_norm_kernel(float *h, float *y, int parts, const float *w_post, float scalar, float *out,
                                     const float *w_next, int n, float eps) {
    __shared__ float red[32];
    g4k_wait_inputs();
    g4k_allow_next();
    float *hr = h + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    const size_t part_stride = (size_t)gridDim.x * n;
    for (int p = 1; p < parts; p++) /* add the split-K parts into part 0 */
        for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] += yr[p * part_stride + i];
    __syncthreads();
    const float inv = rms_inv(yr, n, eps, red);
    for (int i = threadIdx.x; i < n; i += blockDim.x) hr[i] = (hr[i] + yr[i] * inv * w_post[i]) * scalar;
    if (!w_next) return;
    __syncthreads();
    const float inv2 = rms_inv(hr, n, eps, red);
    float *orow = out + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) orow[i] = hr[i] * inv2 * w_next[i];
}

/* The same with float4 accesses and the row held in registers between the
 * two reductions (n % 4 == 0, n <= 4 * RES_VEC * 512), for PARTS split-K parts
 * of y: one load of y and h, one store of h and out. Decode runs this 96 times
 * a step on one block each, so its latency, not its bytes, is what counts:
 * every load of y and h goes out before any is used (indices clamped into the
 * row instead of branched around, so nothing splits the loads into rounds; a
 * per-element loop had put 4 dependent L2 round trips on the chain). */
#define RES_VEC 4
template <int PARTS>
__global__ void __launch_bounds__(512) residual_norm_vec(float *h, const float *y, const float *w_post, float scalar,
                                                          float *out, const float *w_next, int n, float eps) {
    __shared__ float red[32];
    G4K_TRACE(G4K_TR_RESID, w_post);
    const int n4 = n / 4;
    int idx[RES_VEC]; /* this thread's float4s, clamped into the row; valid(k): threadIdx.x + k * blockDim.x < n4 */
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) idx[k] = min((int)(threadIdx.x + k * blockDim.x), n4 - 1);
    auto valid = [&](int k) { return (int)(threadIdx.x + k * blockDim.x) < n4; };
    /* the norm weights do not depend on the previous kernel: load them while it drains */
    float4 wpv[RES_VEC], wnv[RES_VEC];
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        wpv[k] = reinterpret_cast<const float4 *>(w_post)[idx[k]];
        wnv[k] = w_next ? reinterpret_cast<const float4 *>(w_next)[idx[k]] : wpv[k];
    }
    g4k_wait_inputs();
    G4K_TRACE_WAITED();
    g4k_allow_next();
    float4 *hr = reinterpret_cast<float4 *>(h + (size_t)blockIdx.x * n);
    const float4 *yr = reinterpret_cast<const float4 *>(y + (size_t)blockIdx.x * n);
    const size_t part4 = (size_t)gridDim.x * n4; /* float4s from one split-K part to the next */
    float4 yv[RES_VEC][PARTS], hv[RES_VEC];
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        hv[k] = hr[idx[k]];
#pragma unroll
        for (int p = 0; p < PARTS; p++) yv[k][p] = yr[p * part4 + idx[k]];
    }
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
#pragma unroll
        for (int p = 1; p < PARTS; p++)
            yv[k][0].x += yv[k][p].x, yv[k][0].y += yv[k][p].y, yv[k][0].z += yv[k][p].z, yv[k][0].w += yv[k][p].w;
        const float4 v = yv[k][0];
        if (valid(k)) ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
    }
    const float inv = 1.0f / sqrtf(g4k_block_sum(ss, red) / n + eps);
    float ss2 = 0.0f;
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const float4 w = wpv[k], v = yv[k][0];
        hv[k].x = (hv[k].x + v.x * inv * w.x) * scalar;
        hv[k].y = (hv[k].y + v.y * inv * w.y) * scalar;
        hv[k].z = (hv[k].z + v.z * inv * w.z) * scalar;
        hv[k].w = (hv[k].w + v.w * inv * w.w) * scalar;
        if (valid(k)) {
            hr[idx[k]] = hv[k];
            ss2 += hv[k].x * hv[k].x + hv[k].y * hv[k].y + hv[k].z * hv[k].z + hv[k].w * hv[k].w;
        }
    }
    if (!w_next) return;
    const float inv2 = 1.0f / sqrtf(g4k_block_sum(ss2, red) / n + eps);
    float4 *orow = reinterpret_cast<float4 *>(out + (size_t)blockIdx.x * n);
#pragma unroll
    for (int k = 0; k < RES_VEC; k++) {
        const float4 w = wnv[k];
        if (valid(k))
            orow[idx[k]] = make_float4(hv[k].x * inv2 * w.x, hv[k].y * inv2 * w.y, hv[k].z * inv2 * w.z, hv[k].w * inv2 * w.w);
    }
}

extern "C" void g4k_residual_norm(float *h, const float *y, int parts, const float *w_post, float scalar, float *out,
                                  const float *w_next, int M, int n, float eps, g4_stream s) {
    int threads = (n / 4 + RES_VEC - 1) / RES_VEC;
    threads = threads < 32 ? 32 : (threads + 31) / 32 * 32;
    const bool vec = n % 4 == 0 && n <= 4 * RES_VEC * 512;
    if (vec && parts == 1) {
        g4k_launch(residual_norm_vec<1>, M, threads, 0, s, h, y, w_post, scalar, out, w_next, n, eps);
    } else if (vec && parts == 4) { /* the CUDA-core GEMV's split-K parts (cuda_forward.c's SPLITS) */
        g4k_launch(residual_norm_vec<4>, M, threads, 0, s, h, y, w_post, scalar, out, w_next, n, eps);
    } else {
        g4k_launch(residual_norm_kernel, M, ROW_THREADS, 0, s, h, const_cast<float *>(y), parts, w_post, scalar, out,
                   w_next, n, eps);
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
